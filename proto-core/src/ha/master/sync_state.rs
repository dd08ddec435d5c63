//! Controller mode's sync state set (ISR) on the master (RocketMQ's `AutoSwitchHAService`):
//! which broker ids the controller committed, what this master proposed and has not yet seen
//! committed, each slave broker's acks and when it was last caught up.
//!
//! Rules (the safety argument of controller mode rests on them):
//! - the *effective* set is the committed set ∪ the proposal in flight: a member being added
//!   must ack too, and a member being removed is still waited for until the controller commits
//!   the smaller set (Java's `getSyncStateSet` during `isSynchronizingSyncStateSet`);
//! - the confirm offset is the smallest ack over the effective set (the master counts as its
//!   own write position); a member without a live connection counts with the ack it had when
//!   its connection closed, a member never heard from with 0 (Java freezes its confirm offset
//!   then; ours may only be lower, never higher);
//! - a slave may join when one of its acks was at or past the confirm offset of that moment
//!   and the start of the master's epoch (`maybeExpandInSyncStateSet`, checked at each ack as
//!   Java does), within the last `haMaxTimeSlaveNotCatchup`; a member leaves when it was not
//!   caught up within that time or has no connection (`maybeShrinkSyncStateSet`,
//!   `removeConnection`). As in Java the proposal follows the check, not atomically with it;
//!   from the proposal on, the joining slave holds the confirm offset back;
//! - `minInSyncReplicas` is compared with the larger of the committed and proposed sets, as
//!   Java's `inSyncReplicasNums`.
//!
//! Left out: `syncStateSetMaxSize` is ours (Java has no bound): past it no slave joins.

use std::collections::{BTreeMap, BTreeSet};

use super::{Admission, ReplicaSet, SlaveId};

/// The sync state set as this master knows it.
#[derive(Debug, Default)]
pub(super) struct SyncState {
    /// This broker's id (the master is always a member of its own set).
    pub(super) self_id: Option<u64>,
    committed: BTreeSet<u64>,
    epoch: u32,
    proposed: Option<BTreeSet<u64>>,
    /// When each slave broker last had everything the master had sent it.
    caught_up_ms: BTreeMap<u64, u64>,
    /// When each slave broker last met the join rule.
    joinable_ms: BTreeMap<u64, u64>,
    /// The ack of a member whose last connection closed, until it leaves the set.
    departed: BTreeMap<u64, u64>,
    /// Where the master's current epoch starts in the commit log.
    epoch_start: u64,
}

impl SyncState {
    /// Committed ∪ proposed.
    pub(super) fn effective(&self) -> BTreeSet<u64> {
        let mut set = self.committed.clone();
        if let Some(p) = &self.proposed {
            set.extend(p.iter().copied());
        }
        set
    }

    /// A member's connection closed with `acked`.
    pub(super) fn departed(&mut self, broker_id: u64, acked: u64) {
        if self.effective().contains(&broker_id) {
            self.departed.insert(broker_id, acked);
        }
    }

    pub(super) fn departed_ack(&self, broker_id: u64) -> Option<u64> {
        self.departed.get(&broker_id).copied()
    }

    /// Broker `broker_id` was caught up at `at_ms`.
    pub(super) fn caught_up(&mut self, broker_id: u64, at_ms: u64) {
        let t = self.caught_up_ms.entry(broker_id).or_insert(at_ms);
        *t = (*t).max(at_ms);
    }

    /// Broker `broker_id` met the join rule at `at_ms`.
    pub(super) fn joinable(&mut self, broker_id: u64, at_ms: u64) {
        let t = self.joinable_ms.entry(broker_id).or_insert(at_ms);
        *t = (*t).max(at_ms);
    }

    pub(super) fn epoch_start(&self) -> u64 {
        self.epoch_start
    }

    /// Forgets departed acks of brokers that are no longer members.
    fn prune(&mut self) {
        let members = self.effective();
        self.departed.retain(|id, _| members.contains(id));
    }
}

impl<T> ReplicaSet<T> {
    /// This master's broker id.
    pub fn set_self_broker_id(&mut self, id: u64) {
        self.sync.self_id = Some(id);
    }

    /// The broker id slave connection `slave` named in its handshake.
    pub fn set_slave_broker_id(&mut self, slave: SlaveId, broker_id: u64) {
        if let Some(s) = self.slaves.get_mut(&slave) {
            s.broker_id = Some(broker_id);
        }
    }

    /// Where the master's current epoch starts (a joining slave must hold at least that).
    pub fn set_epoch_start_offset(&mut self, offset: u64) {
        self.sync.epoch_start = offset;
    }

    /// The set the controller committed, with its epoch. Ends any proposal in flight (the
    /// controller answered it, or replaced it). An epoch older than the one held is ignored.
    pub fn set_sync_state_set(&mut self, set: BTreeSet<u64>, epoch: u32) {
        if epoch < self.sync.epoch {
            tracing::warn!(
                epoch,
                held = self.sync.epoch,
                "stale sync state set ignored"
            );
            return;
        }
        self.sync.committed = set;
        self.sync.epoch = epoch;
        self.sync.proposed = None;
        self.sync.prune();
    }

    /// A change sent to the controller and not yet committed: until then the effective set is
    /// the union of both.
    pub fn propose_sync_state_set(&mut self, set: BTreeSet<u64>) {
        self.sync.proposed = Some(set);
    }

    /// The controller refused the proposal: only the committed set counts again.
    pub fn clear_proposal(&mut self) {
        self.sync.proposed = None;
        self.sync.prune();
    }

    /// The committed set and its epoch.
    #[must_use]
    pub fn sync_state_set(&self) -> (&BTreeSet<u64>, u32) {
        (&self.sync.committed, self.sync.epoch)
    }

    /// The proposal in flight, if any.
    #[must_use]
    pub fn proposed_sync_state_set(&self) -> Option<&BTreeSet<u64>> {
        self.sync.proposed.as_ref()
    }

    /// Members counted against `minInSyncReplicas` (Java's `inSyncReplicasNums`).
    #[must_use]
    pub fn in_sync_replicas(&self) -> usize {
        let proposed = self.sync.proposed.as_ref().map_or(0, BTreeSet::len);
        self.sync.committed.len().max(proposed)
    }

    /// Whether a SYNC send may wait for the sync state set's acks.
    #[must_use]
    pub fn admit_in_sync_state_set(&self, min_in_sync_replicas: usize) -> Admission {
        if self.in_sync_replicas() < min_in_sync_replicas {
            Admission::InSyncReplicasNotEnough
        } else if self.waiting.len() >= self.waiting_max {
            Admission::SlaveNotAvailable
        } else {
            Admission::AwaitReplicaAck
        }
    }

    /// The smallest ack over the effective set, the master counting as `master_max`.
    #[must_use]
    pub fn confirm_offset(&self, master_max: u64) -> u64 {
        self.other_members()
            .into_iter()
            .map(|m| self.broker_acked(m).unwrap_or(0))
            .fold(master_max, u64::min)
    }

    /// Every member of the effective set but the master acked `offset`.
    pub(super) fn all_members_acked(&self, offset: u64) -> bool {
        self.other_members()
            .into_iter()
            .all(|m| self.broker_acked(m).is_some_and(|a| a >= offset))
    }

    /// The set to propose now, when it differs from the committed one: members not caught up
    /// within `not_catchup_ms` or without a connection leave, caught-up slaves join (up to
    /// `max_size` members, the master included). `None`: nothing to change.
    #[must_use]
    pub fn wanted_sync_state_set(
        &self,
        _master_max: u64,
        now_ms: u64,
        not_catchup_ms: u64,
        max_size: usize,
    ) -> Option<BTreeSet<u64>> {
        let me = self.sync.self_id;
        let within = |table: &BTreeMap<u64, u64>, id: &u64| {
            table
                .get(id)
                .is_some_and(|&at| now_ms.saturating_sub(at) <= not_catchup_ms)
        };
        let fresh = |id: &u64| within(&self.sync.caught_up_ms, id);
        let mut set: BTreeSet<u64> = self
            .sync
            .committed
            .iter()
            .copied()
            .filter(|id| Some(*id) == me || (self.broker_connected(*id) && fresh(id)))
            .collect();
        if let Some(me) = me {
            set.insert(me);
        }
        for id in self.connected_brokers().into_keys() {
            if set.len() >= max_size.max(1) {
                break;
            }
            if within(&self.sync.joinable_ms, &id) {
                set.insert(id);
            }
        }
        (set != self.sync.committed).then_some(set)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{AckRule, AwaitReplicaAck, Outcome};
    use super::*;

    const WINDOW: u64 = 15_000;
    const MASTER: u64 = 0;

    fn ids(v: &[u64]) -> BTreeSet<u64> {
        v.iter().copied().collect()
    }

    /// A master (id 0) with slaves of the given broker ids, all reported at 0.
    fn master(slaves: &[u64]) -> (ReplicaSet<u32>, Vec<SlaveId>) {
        let mut set = ReplicaSet::new(10);
        set.set_self_broker_id(MASTER);
        set.set_sync_state_set(ids(&[MASTER]), 1);
        let conns = slaves
            .iter()
            .map(|&b| {
                let c = set.connected("127.0.0.1:40000".parse().unwrap(), 0);
                set.set_slave_broker_id(c, b);
                set.report(c, 0, (0, 0), 0);
                c
            })
            .collect();
        (set, conns)
    }

    fn held(tag: u32, after_offset: u64) -> AwaitReplicaAck<u32> {
        AwaitReplicaAck {
            payload: tag,
            after_offset,
            after_sync: None,
            deadline_ms: 1_000,
        }
    }

    #[test]
    fn a_master_alone_confirms_its_own_write_position_and_acks_at_once() {
        let (set, _) = master(&[1]);
        assert_eq!(set.confirm_offset(500), 500);
        assert!(set.acked(AckRule::AllInSyncStateSet, 500));
    }

    #[test]
    fn a_member_being_added_must_ack_before_it_is_committed() {
        let (mut set, c) = master(&[1]);
        set.propose_sync_state_set(ids(&[MASTER, 1]));
        set.hold(held(1, 100));
        assert!(set
            .release(AckRule::AllInSyncStateSet, u64::MAX, 10)
            .is_empty());
        assert_eq!(set.confirm_offset(100), 0, "the proposed member holds it");
        set.report(c[0], 100, (0, 100), 20);
        assert_eq!(
            set.release(AckRule::AllInSyncStateSet, u64::MAX, 20),
            vec![(1, Outcome::Replicated)]
        );
        assert_eq!(set.confirm_offset(150), 100);
    }

    #[test]
    fn a_member_being_removed_is_required_until_the_controller_commits() {
        let (mut set, c) = master(&[1, 2]);
        set.set_sync_state_set(ids(&[MASTER, 1, 2]), 2);
        set.propose_sync_state_set(ids(&[MASTER, 1]));
        set.report(c[0], 100, (0, 100), 5);
        set.hold(held(1, 100));
        assert!(
            set.release(AckRule::AllInSyncStateSet, u64::MAX, 10)
                .is_empty(),
            "broker 2 is still a member"
        );
        set.set_sync_state_set(ids(&[MASTER, 1]), 3);
        assert_eq!(
            set.release(AckRule::AllInSyncStateSet, u64::MAX, 11),
            vec![(1, Outcome::Replicated)]
        );
        // A refused proposal leaves only the committed set.
        set.propose_sync_state_set(ids(&[MASTER, 1, 2]));
        assert_eq!(set.confirm_offset(100), 0);
        set.clear_proposal();
        assert_eq!(set.confirm_offset(100), 100);
        assert_eq!(set.sync_state_set(), (&ids(&[MASTER, 1]), 3));
        set.set_sync_state_set(ids(&[MASTER]), 2);
        assert_eq!(set.sync_state_set().1, 3, "an older epoch is ignored");
    }

    #[test]
    fn a_disconnected_member_holds_the_confirm_offset_at_its_last_ack() {
        let (mut set, c) = master(&[1]);
        set.set_sync_state_set(ids(&[MASTER, 1]), 2);
        set.report(c[0], 70, (0, 100), 1);
        set.closed(c[0]);
        assert_eq!(set.confirm_offset(100), 70);
        assert!(!set.acked(AckRule::AllInSyncStateSet, 71));
        // Once it leaves the set its ack is forgotten.
        set.set_sync_state_set(ids(&[MASTER]), 3);
        assert_eq!(set.confirm_offset(100), 100);
    }

    #[test]
    fn min_in_sync_replicas_counts_the_larger_of_committed_and_proposed() {
        let (mut set, _) = master(&[1]);
        assert_eq!(
            set.admit_in_sync_state_set(2),
            Admission::InSyncReplicasNotEnough
        );
        set.propose_sync_state_set(ids(&[MASTER, 1]));
        assert_eq!(set.admit_in_sync_state_set(2), Admission::AwaitReplicaAck);
        assert_eq!(set.admit_in_sync_state_set(1), Admission::AwaitReplicaAck);
    }

    #[test]
    fn a_slave_joins_once_an_ack_reached_the_confirm_offset_and_the_epoch_start() {
        let mut set = ReplicaSet::<u32>::new(10);
        set.set_self_broker_id(MASTER);
        set.set_sync_state_set(ids(&[MASTER]), 1);
        set.set_epoch_start_offset(50);
        let c: Vec<SlaveId> = [1, 2]
            .iter()
            .map(|&b| {
                let c = set.connected("127.0.0.1:40000".parse().unwrap(), 0);
                set.set_slave_broker_id(c, b);
                c
            })
            .collect();
        // At the master's write position, but before its epoch starts.
        set.report(c[0], 40, (0, 40), 10);
        assert_eq!(set.wanted_sync_state_set(40, 10, WINDOW, 3), None);
        // Alone, the master confirms its own write position: an ack must reach it.
        set.report(c[0], 100, (0, 120), 20);
        assert_eq!(set.wanted_sync_state_set(120, 20, WINDOW, 3), None);
        set.report(c[0], 120, (0, 120), 30);
        set.report(c[1], 60, (0, 120), 30);
        assert_eq!(
            set.wanted_sync_state_set(130, 40, WINDOW, 3),
            Some(ids(&[MASTER, 1])),
            "broker 1 reached the confirm offset; broker 2 did not"
        );
        assert_eq!(
            set.wanted_sync_state_set(130, 40, WINDOW, 1),
            None,
            "the size bound"
        );
        assert_eq!(
            set.wanted_sync_state_set(130, 30 + WINDOW + 1, WINDOW, 3),
            None,
            "an old check does not count"
        );
        set.set_sync_state_set(ids(&[MASTER, 1]), 2);
        // The confirm offset is now broker 1's ack (120): broker 2 needs at least that.
        set.report(c[1], 119, (0, 130), 50);
        assert_eq!(set.wanted_sync_state_set(130, 50, WINDOW, 3), None);
        set.report(c[1], 120, (0, 130), 60);
        assert_eq!(
            set.wanted_sync_state_set(130, 60, WINDOW, 3),
            Some(ids(&[MASTER, 1, 2]))
        );
    }

    #[test]
    fn a_member_leaves_when_not_caught_up_in_time_or_disconnected() {
        let (mut set, c) = master(&[1, 2]);
        set.set_sync_state_set(ids(&[MASTER, 1, 2]), 2);
        set.report(c[0], 100, (0, 100), 1_000);
        set.report(c[1], 100, (0, 100), 1_000);
        assert_eq!(
            set.wanted_sync_state_set(100, 1_000 + WINDOW, WINDOW, 3),
            None
        );
        // Broker 2 falls behind: the master keeps writing and it never acks the position.
        set.report(c[0], 300, (0, 300), 10_000);
        set.report(c[1], 150, (0, 300), 10_000);
        assert_eq!(
            set.wanted_sync_state_set(300, 1_000 + WINDOW + 1, WINDOW, 3),
            Some(ids(&[MASTER, 1]))
        );
        set.closed(c[0]);
        assert_eq!(
            set.wanted_sync_state_set(300, 10_001, WINDOW, 3),
            Some(ids(&[MASTER, 2])),
            "broker 1 has no connection; broker 2 still inside its window"
        );
    }
}
