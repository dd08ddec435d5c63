//! The election policy (RocketMQ's DefaultElectPolicy, in our words): who becomes master of a
//! broker set, given the brokers the leader saw alive and what their heartbeats reported.
//!
//! Pools are tried in turn: first the sync state set ∩ alive; then, only when unclean elections
//! are allowed, every registered broker that is alive. Within a pool: a still-alive old master
//! stays (unless an admin designates another); a designated broker is taken if it is in the pool
//! and nobody else is; otherwise the best candidate by highest epoch, then highest max offset,
//! then lowest election priority value, then lowest broker id (so the choice is deterministic).
//!
//! What it leaves out: liveness (the caller passes only alive candidates) and state changes
//! (`state.rs` applies the choice).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// A broker the leader saw alive, with what its last heartbeat said.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub broker_id: i64,
    /// The highest master epoch the broker's log holds.
    pub epoch: i32,
    pub max_offset: i64,
    /// Lower is preferred (Java's `electionPriority`).
    pub election_priority: i32,
}

/// The outcome of the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The current master is alive and stays.
    Keep(i64),
    /// Elect this broker.
    New(i64),
    /// Nobody is eligible.
    Nobody,
}

/// Picks the master; see the module docs. `requester` is the broker asking (or designated when
/// `designate`); on the first election of a set an alive requester is taken as is, as Java does,
/// because no broker of the set has served writes yet.
pub fn choose_master(
    alive: &[Candidate],
    sync_state_set: &BTreeSet<i64>,
    old_master: Option<i64>,
    requester: Option<i64>,
    designate: bool,
    first_election: bool,
    allow_unclean: bool,
) -> Choice {
    let is_alive = |id: i64| alive.iter().any(|c| c.broker_id == id);
    if first_election {
        if let Some(id) = requester.filter(|id| is_alive(*id)) {
            return Choice::New(id);
        }
    }
    let prefer = requester.filter(|_| designate);
    let in_sync: Vec<&Candidate> = alive
        .iter()
        .filter(|c| sync_state_set.contains(&c.broker_id))
        .collect();
    // A master asking for an election of its own set gives its place up: it restarted and may
    // have lost an unflushed tail its slaves hold (and its last heartbeat may still show the
    // offset from before the crash). Another in-sync broker takes over; the old master is
    // re-elected (new epoch) only when nobody else can.
    if let Some(leaving) = requester.filter(|r| !designate && old_master == Some(*r)) {
        let others: Vec<&Candidate> = in_sync
            .iter()
            .copied()
            .filter(|c| c.broker_id != leaving)
            .collect();
        if let Some(choice) = choose_in(&others, None, None) {
            return choice;
        }
        // Nobody else: it leads again, but under a new epoch, so its successor epoch starts
        // where its recovered log ends.
        if in_sync.iter().any(|c| c.broker_id == leaving) {
            return Choice::New(leaving);
        }
    }
    if let Some(choice) = choose_in(&in_sync, old_master, prefer) {
        return choice;
    }
    if allow_unclean {
        let everyone: Vec<&Candidate> = alive.iter().collect();
        if let Some(choice) = choose_in(&everyone, old_master, prefer) {
            return choice;
        }
    }
    Choice::Nobody
}

/// The choice within one pool, or `None` to try the next pool.
fn choose_in(pool: &[&Candidate], old_master: Option<i64>, prefer: Option<i64>) -> Option<Choice> {
    if pool.is_empty() {
        return None;
    }
    let contains = |id: i64| pool.iter().any(|c| c.broker_id == id);
    if let Some(old) = old_master.filter(|old| contains(*old)) {
        if prefer.is_none_or(|p| p == old) {
            return Some(Choice::Keep(old));
        }
    }
    if let Some(prefer) = prefer {
        return contains(prefer).then_some(Choice::New(prefer));
    }
    pool.iter()
        .min_by(|a, b| {
            b.epoch
                .cmp(&a.epoch)
                .then(b.max_offset.cmp(&a.max_offset))
                .then(a.election_priority.cmp(&b.election_priority))
                .then(a.broker_id.cmp(&b.broker_id))
        })
        .map(|best| Choice::New(best.broker_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(broker_id: i64, epoch: i32, max_offset: i64) -> Candidate {
        Candidate {
            broker_id,
            epoch,
            max_offset,
            election_priority: 0,
        }
    }

    fn set(ids: &[i64]) -> BTreeSet<i64> {
        ids.iter().copied().collect()
    }

    #[test]
    fn prefers_highest_epoch_then_offset_within_the_sync_state_set() {
        let alive = [
            cand(1, 2, 100),
            cand(2, 3, 50),
            cand(3, 3, 80),
            cand(4, 9, 999),
        ];
        let choice = choose_master(&alive, &set(&[1, 2, 3]), Some(9), None, false, false, false);
        // 4 has the best log but is not in sync: never chosen without unclean elections.
        assert_eq!(choice, Choice::New(3));
        let unclean = choose_master(&alive, &set(&[]), Some(9), None, false, false, true);
        assert_eq!(unclean, Choice::New(4));
        let clean = choose_master(&alive, &set(&[]), Some(9), None, false, false, false);
        assert_eq!(clean, Choice::Nobody);
    }

    #[test]
    fn ties_break_on_priority_then_id() {
        let mut a = cand(5, 1, 10);
        a.election_priority = 2;
        let b = cand(7, 1, 10);
        let c = cand(6, 1, 10);
        let alive = [a, b, c];
        let choice = choose_master(&alive, &set(&[5, 6, 7]), None, None, false, false, false);
        assert_eq!(choice, Choice::New(6));
    }

    #[test]
    fn a_master_asking_for_an_election_gives_its_place_to_another_in_sync_broker() {
        let alive = [cand(1, 1, 900), cand(2, 1, 500), cand(3, 1, 400)];
        let set = BTreeSet::from([1, 2, 3]);
        // Broker 1 is master and asks (it restarted): the best other in-sync broker wins,
        // even though 1's stale heartbeat shows the highest offset.
        assert_eq!(
            choose_master(&alive, &set, Some(1), Some(1), false, false, false),
            Choice::New(2)
        );
        // Alone in its set, it leads again under a new epoch.
        let alone = BTreeSet::from([1]);
        assert_eq!(
            choose_master(&alive, &alone, Some(1), Some(1), false, false, false),
            Choice::New(1)
        );
        // Another broker asking does not unseat an alive master.
        assert_eq!(
            choose_master(&alive, &set, Some(1), Some(2), false, false, false),
            Choice::Keep(1)
        );
    }

    #[test]
    fn an_alive_old_master_stays_unless_another_is_designated() {
        let alive = [cand(1, 1, 10), cand(2, 1, 10)];
        let isr = set(&[1, 2]);
        assert_eq!(
            choose_master(&alive, &isr, Some(1), Some(2), false, false, false),
            Choice::Keep(1)
        );
        assert_eq!(
            choose_master(&alive, &isr, Some(1), Some(2), true, false, false),
            Choice::New(2)
        );
        // A designated broker outside the pool means nobody, not the next best.
        assert_eq!(
            choose_master(&alive, &set(&[1]), None, Some(2), true, false, false),
            Choice::Nobody
        );
    }

    #[test]
    fn the_first_election_takes_an_alive_requester() {
        let alive = [cand(3, 0, 0)];
        assert_eq!(
            choose_master(&alive, &set(&[]), None, Some(3), false, true, false),
            Choice::New(3)
        );
        // A requester that is not alive is not taken.
        assert_eq!(
            choose_master(&alive, &set(&[]), None, Some(4), false, true, false),
            Choice::Nobody
        );
    }
}
