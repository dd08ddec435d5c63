//! [`PullHold`]: parked long polls (Java `PullRequestHoldService`), keyed by topic and queue.
//!
//! A PULL_MESSAGE that finds nothing new and has the suspend flag is parked here instead of
//! answered. It leaves when a message that passes its filter arrives on its queue (the broker
//! re-runs it and answers), when its hold time passes (the broker re-runs it once more and
//! answers whatever that gives, normally PULL_NOT_FOUND), or when its connection closes
//! (dropped). The number parked is bounded (style S8); the broker answers at once when full.
//!
//! What it leaves out: executing requests, which is the broker's (`pull.rs`).

use std::collections::{BTreeMap, BTreeSet};

use super::pull::PullFilter;
use crate::header::PullMessageRequestHeader;
use crate::role::ConnId;
use crate::RemotingCommand;

/// One parked pull.
#[derive(Debug, Clone)]
pub(super) struct HeldPull {
    pub conn: ConnId,
    pub request: RemotingCommand,
    pub header: PullMessageRequestHeader,
    pub filter: PullFilter,
    /// When the hold time ends and the request is answered regardless.
    pub deadline_ms: u64,
}

/// Parked pulls, reachable by `(topic, queueId)` (for arrivals) and by deadline (for expiry).
///
/// Each pull gets an ascending sequence number when parked; both indexes hold those numbers,
/// so a queue's waiters are visited in arrival order and expiry reads only the pulls that are
/// due instead of scanning every parked one.
#[derive(Debug, Default)]
pub(super) struct PullHold {
    pulls: BTreeMap<u64, HeldPull>,
    queues: BTreeMap<(String, i32), BTreeSet<u64>>,
    deadlines: BTreeSet<(u64, u64)>,
    next_seq: u64,
    max: usize,
}

impl PullHold {
    pub fn new(max: usize) -> PullHold {
        PullHold {
            max,
            ..PullHold::default()
        }
    }

    pub fn len(&self) -> usize {
        self.pulls.len()
    }

    /// Parks `held`; gives it back when the bound is reached.
    pub fn park(&mut self, held: HeldPull) -> Result<(), Box<HeldPull>> {
        if self.pulls.len() >= self.max {
            return Err(Box::new(held));
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let key = (held.header.topic.clone(), held.header.queue_id);
        self.queues.entry(key).or_default().insert(seq);
        self.deadlines.insert((held.deadline_ms, seq));
        self.pulls.insert(seq, held);
        Ok(())
    }

    /// The queues with parked pulls, in key order.
    pub fn parked_queues(&self) -> Vec<(String, i32)> {
        self.queues.keys().cloned().collect()
    }

    /// A message arrived on `topic`/`queue_id`, whose max offset is now `max_offset`; its tag
    /// code is `tags_code` (`None`: unknown, e.g. a batch, which wakes every waiter). Takes the
    /// pulls waiting below `max_offset` whose filter accepts the code, in arrival order.
    pub fn take_woken(
        &mut self,
        topic: &str,
        queue_id: i32,
        max_offset: u64,
        tags_code: Option<i64>,
    ) -> Vec<HeldPull> {
        // Every put lands here; with nothing parked, skip building the owned key.
        if self.pulls.is_empty() {
            return Vec::new();
        }
        let key = (topic.to_string(), queue_id);
        let Some(seqs) = self.queues.get(&key) else {
            return Vec::new();
        };
        let due: Vec<u64> = seqs
            .iter()
            .copied()
            .filter(|seq| {
                self.pulls.get(seq).is_some_and(|held| {
                    let below =
                        u64::try_from(held.header.queue_offset).map_or(true, |o| o < max_offset);
                    below && tags_code.is_none_or(|code| held.filter.matches_code(code))
                })
            })
            .collect();
        due.into_iter().filter_map(|seq| self.take(seq)).collect()
    }

    /// Takes every pull whose deadline is at or before `now_ms`, earliest deadline first.
    pub fn take_expired(&mut self, now_ms: u64) -> Vec<HeldPull> {
        let due: Vec<u64> = self
            .deadlines
            .range(..=(now_ms, u64::MAX))
            .map(|&(_, seq)| seq)
            .collect();
        due.into_iter().filter_map(|seq| self.take(seq)).collect()
    }

    /// Drops the pulls of a closed connection.
    pub fn remove_conn(&mut self, conn: ConnId) {
        let gone: Vec<u64> = self
            .pulls
            .iter()
            .filter(|(_, held)| held.conn == conn)
            .map(|(&seq, _)| seq)
            .collect();
        for seq in gone {
            self.take(seq);
        }
    }

    /// The earliest deadline, if anything is parked.
    pub fn next_deadline(&self) -> Option<u64> {
        self.deadlines.first().map(|&(deadline_ms, _)| deadline_ms)
    }

    /// Removes pull `seq` from every index.
    fn take(&mut self, seq: u64) -> Option<HeldPull> {
        let held = self.pulls.remove(&seq)?;
        self.deadlines.remove(&(held.deadline_ms, seq));
        let key = (held.header.topic.clone(), held.header.queue_id);
        if let Some(seqs) = self.queues.get_mut(&key) {
            seqs.remove(&seq);
            if seqs.is_empty() {
                self.queues.remove(&key);
            }
        }
        Some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RequestCode;

    fn held(conn: u64, topic: &str, queue_id: i32, offset: i64, deadline_ms: u64) -> HeldPull {
        HeldPull {
            conn: ConnId(conn),
            request: RemotingCommand::request(RequestCode::PullMessage.value(), 1),
            header: PullMessageRequestHeader {
                consumer_group: "g".into(),
                topic: topic.into(),
                queue_id,
                queue_offset: offset,
                max_msg_nums: 32,
                sys_flag: 2,
                commit_offset: 0,
                suspend_timeout_millis: 15_000,
                subscription: None,
                sub_version: 0,
                expression_type: None,
                max_msg_bytes: None,
                request_source: None,
                proxy_froward_client_id: None,
            },
            filter: PullFilter::from_expression("TagA"),
            deadline_ms,
        }
    }

    #[test]
    fn arrivals_wake_matching_waiters_below_the_new_max() {
        let mut hold = PullHold::new(10);
        hold.park(held(1, "T", 0, 0, 100)).unwrap();
        hold.park(held(2, "T", 0, 5, 100)).unwrap();
        hold.park(held(3, "T", 1, 0, 100)).unwrap();
        let other_tag = store_core::format::tag::tag_hash_code("TagB");
        assert!(hold.take_woken("T", 0, 1, Some(other_tag)).is_empty());
        let tag_a = store_core::format::tag::tag_hash_code("TagA");
        let woken = hold.take_woken("T", 0, 1, Some(tag_a));
        assert_eq!(woken.len(), 1);
        assert_eq!(woken[0].conn, ConnId(1));
        assert_eq!(hold.len(), 2);
        assert_eq!(hold.take_woken("T", 0, 6, None).len(), 1);
        assert_eq!(hold.len(), 1);
    }

    fn conns(pulls: &[HeldPull]) -> Vec<u64> {
        pulls.iter().map(|held| held.conn.0).collect()
    }

    #[test]
    fn the_deadline_index_follows_every_way_out() {
        let mut hold = PullHold::new(10);
        hold.park(held(1, "T", 0, 0, 300)).unwrap();
        hold.park(held(2, "U", 1, 0, 100)).unwrap();
        hold.park(held(3, "T", 0, 0, 200)).unwrap();
        hold.park(held(4, "V", 2, 0, 200)).unwrap();
        hold.park(held(5, "T", 0, 0, 200)).unwrap();
        assert_eq!(hold.next_deadline(), Some(100));
        // A woken pull's deadline leaves with it.
        assert_eq!(conns(&hold.take_woken("U", 1, 1, None)), [2]);
        assert_eq!(hold.next_deadline(), Some(200));
        // So does a closed connection's.
        hold.remove_conn(ConnId(3));
        assert_eq!(hold.len(), 3);
        // Nothing is due before the earliest deadline.
        assert!(hold.take_expired(199).is_empty());
        // Expiry takes the due pulls of every queue, earliest deadline first, then in
        // arrival order, and leaves the rest.
        assert_eq!(conns(&hold.take_expired(250)), [4, 5]);
        assert_eq!(hold.next_deadline(), Some(300));
        assert_eq!(conns(&hold.take_woken("T", 0, 1, None)), [1]);
        assert_eq!((hold.len(), hold.next_deadline()), (0, None));
        // Same queue, woken in arrival order.
        hold.park(held(7, "T", 0, 0, 50)).unwrap();
        hold.park(held(6, "T", 0, 0, 10)).unwrap();
        assert_eq!(conns(&hold.take_woken("T", 0, 1, None)), [7, 6]);
    }

    #[test]
    fn bound_expiry_and_closed_connections() {
        let mut hold = PullHold::new(2);
        hold.park(held(1, "T", 0, 0, 100)).unwrap();
        hold.park(held(2, "T", 0, 0, 50)).unwrap();
        assert!(hold.park(held(3, "T", 0, 0, 10)).is_err());
        assert_eq!(hold.next_deadline(), Some(50));
        let expired = hold.take_expired(60);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].conn, ConnId(2));
        hold.remove_conn(ConnId(1));
        assert_eq!(hold.len(), 0);
        assert_eq!(hold.next_deadline(), None);
    }
}
