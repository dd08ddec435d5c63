//! The master's side of replication (RocketMQ's `DefaultHAService`, `HAConnection` and
//! `GroupTransferService`) as plain bookkeeping: which slaves are attached, what each has
//! acknowledged, where each one's transfer continues, and which SYNC_MASTER sends may now be
//! answered.
//!
//! Rules, as RocketMQ 4's default HA: a slave is *in sync* when it has reported and trails the
//! master by less than `haMaxGapNotInSync` bytes. A send that needs replica acks is refused the
//! wait at once (SLAVE_NOT_AVAILABLE, the message stays stored) when too few slaves are in
//! sync; otherwise it waits until enough slaves report an offset at or past its end, or until
//! its deadline (FLUSH_SLAVE_TIMEOUT).
//!
//! Controller mode (`enableControllerMode`, RocketMQ's `AutoSwitchHAService`) adds the sync
//! state set, kept by broker id (each slave names itself in its handshake): see
//! `sync_state.rs` for its rules (effective set, confirm offset, expand and shrink).

mod sync_state;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use core::net::SocketAddr;

/// A slave connection, numbered by the master. Never reused within a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SlaveId(pub u64);

/// Whether a send that needs replica acks may wait for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Enough slaves are in sync: hold the reply until they acknowledge.
    AwaitReplicaAck,
    /// Too few slaves are in sync: answer SLAVE_NOT_AVAILABLE now.
    SlaveNotAvailable,
    /// Controller mode: the sync state set is smaller than `minInSyncReplicas`; answer at once
    /// as Java's IN_SYNC_REPLICAS_NOT_ENOUGH (SYSTEM_ERROR, "in-sync replicas not enough").
    InSyncReplicasNotEnough,
}

/// Which acks release a held reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckRule {
    /// This many distinct slaves reported the offset (default HA).
    Slaves(usize),
    /// Every member of the effective sync state set but the master itself did
    /// (`allAckInSyncStateSet`).
    AllInSyncStateSet,
}

/// How a held send ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Enough slaves have it (and the local flush it waited for, if any, is done).
    Replicated,
    /// The deadline passed before enough slaves acknowledged: FLUSH_SLAVE_TIMEOUT.
    SlaveTimeout,
    /// Replicated, but the local SYNC_FLUSH did not finish by the deadline: FLUSH_DISK_TIMEOUT.
    FlushTimeout,
}

/// A held reply, released by acks or by its deadline.
#[derive(Debug, Clone)]
pub struct AwaitReplicaAck<T> {
    /// What the broker holds (the response and where it goes).
    pub payload: T,
    /// The send's end offset: enough slaves must report at least this.
    pub after_offset: u64,
    /// A SYNC_FLUSH send also waits for the local flush to reach this.
    pub after_sync: Option<u64>,
    pub deadline_ms: u64,
}

#[derive(Debug, Clone)]
struct Slave {
    remote: SocketAddr,
    /// The newest offset the slave reported: it holds the log below it.
    acked: Option<u64>,
    /// Where the next transfer to it starts; `None` until its first report.
    next_transfer: Option<u64>,
    last_report_ms: u64,
    /// Controller mode: the broker id its handshake named.
    broker_id: Option<u64>,
    /// The master's write position and the time when bytes last went out to it: a slave that
    /// acks that position was caught up then (Java's `lastMasterMaxOffset`).
    last_transfer: Option<(u64, u64)>,
}

/// One slave as seen from the master, for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaveStatus {
    pub id: SlaveId,
    pub remote: SocketAddr,
    pub acked: Option<u64>,
    pub last_report_ms: u64,
}

/// The master's replicas and the replies waiting for them.
#[derive(Debug)]
pub struct ReplicaSet<T> {
    slaves: BTreeMap<SlaveId, Slave>,
    next_id: u64,
    waiting: VecDeque<AwaitReplicaAck<T>>,
    /// Bound on held replies (style S8); past it a send is answered SLAVE_NOT_AVAILABLE.
    waiting_max: usize,
    /// Controller mode's sync state set and what it knows of each broker id.
    sync: sync_state::SyncState,
}

impl<T> ReplicaSet<T> {
    /// An empty set holding at most `waiting_max` replies.
    #[must_use]
    pub fn new(waiting_max: usize) -> ReplicaSet<T> {
        ReplicaSet {
            slaves: BTreeMap::new(),
            next_id: 0,
            waiting: VecDeque::new(),
            waiting_max,
            sync: sync_state::SyncState::default(),
        }
    }

    /// A slave connected from `remote`.
    pub fn connected(&mut self, remote: SocketAddr, now_ms: u64) -> SlaveId {
        self.next_id += 1;
        let id = SlaveId(self.next_id);
        self.slaves.insert(
            id,
            Slave {
                remote,
                acked: None,
                next_transfer: None,
                last_report_ms: now_ms,
                broker_id: None,
                last_transfer: None,
            },
        );
        id
    }

    /// The slave's connection closed.
    pub fn closed(&mut self, id: SlaveId) {
        if let Some(slave) = self.slaves.remove(&id) {
            if let (Some(broker_id), Some(acked)) = (slave.broker_id, slave.acked) {
                self.sync.departed(broker_id, acked);
            }
        }
    }

    /// Slaves attached now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.slaves.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.slaves.is_empty()
    }

    /// The slave reported `offset`. Its first report fixes where the transfer starts: there,
    /// or at `master_min` (the oldest byte the master still has) for an empty slave, so the
    /// slave copies all the master holds. Later reports only move its ack. `master_max` is the
    /// master's write position now: a slave at it (or at the position of the last transfer to
    /// it) counts as caught up for the sync state set.
    pub fn report(&mut self, id: SlaveId, offset: u64, master: (u64, u64), now_ms: u64) {
        let (master_min, master_max) = master;
        let Some(slave) = self.slaves.get_mut(&id) else {
            return;
        };
        slave.acked = Some(offset);
        slave.last_report_ms = now_ms;
        if slave.next_transfer.is_none() {
            slave.next_transfer = Some(if offset == 0 { master_min } else { offset });
        }
        if let Some(broker_id) = slave.broker_id {
            let caught_up = if offset >= master_max {
                Some(now_ms)
            } else {
                slave
                    .last_transfer
                    .filter(|&(max_then, _)| offset >= max_then)
                    .map(|(_, at_ms)| at_ms)
            };
            if let Some(at_ms) = caught_up {
                self.sync.caught_up(broker_id, at_ms);
            }
            // Java checks the join rule at each ack of a non-member
            // (`maybeExpandInSyncStateSet`); a member trivially meets it.
            if !self.sync.effective().contains(&broker_id)
                && offset >= self.confirm_offset(master_max)
                && offset >= self.sync.epoch_start()
            {
                self.sync.joinable(broker_id, now_ms);
            }
        }
    }

    /// Where the next transfer to `id` starts; `None` before its first report.
    #[must_use]
    pub fn transfer_from(&self, id: SlaveId) -> Option<u64> {
        self.slaves.get(&id)?.next_transfer
    }

    /// Bytes up to `to` went out to `id` at `now_ms`, when the master's write position was
    /// `master_max`.
    pub fn transferred(&mut self, id: SlaveId, to: u64, master_max: u64, now_ms: u64) {
        if let Some(slave) = self.slaves.get_mut(&id) {
            assert!(slave.next_transfer.is_some_and(|from| from <= to));
            slave.next_transfer = Some(to);
            slave.last_transfer = Some((master_max, now_ms));
        }
    }

    /// Slaves that have reported and trail `master_max` by less than `gap_max` bytes.
    #[must_use]
    pub fn in_sync(&self, master_max: u64, gap_max: u64) -> usize {
        self.slaves
            .values()
            .filter(|s| {
                s.acked
                    .is_some_and(|a| master_max.saturating_sub(a) < gap_max)
            })
            .count()
    }

    /// Whether a send ending at `master_max` may wait for `acks_needed` slave acks.
    #[must_use]
    pub fn admit(&self, acks_needed: usize, master_max: u64, gap_max: u64) -> Admission {
        if self.in_sync(master_max, gap_max) >= acks_needed && self.waiting.len() < self.waiting_max
        {
            Admission::AwaitReplicaAck
        } else {
            Admission::SlaveNotAvailable
        }
    }

    /// Holds a reply admitted by [`ReplicaSet::admit`].
    pub fn hold(&mut self, held: AwaitReplicaAck<T>) {
        self.waiting.push_back(held);
    }

    /// Replies held now.
    #[must_use]
    pub fn held(&self) -> usize {
        self.waiting.len()
    }

    /// Releases every held reply that the acks `rule` asks for acknowledged (and whose local
    /// flush is done by `flushed`), or whose deadline has passed, in the order they were held.
    pub fn release(&mut self, rule: AckRule, flushed: u64, now_ms: u64) -> Vec<(T, Outcome)> {
        let mut out = Vec::new();
        let mut keep = VecDeque::with_capacity(self.waiting.len());
        while let Some(held) = self.waiting.pop_front() {
            let acked = self.acked(rule, held.after_offset);
            let synced = held.after_sync.is_none_or(|to| flushed >= to);
            if acked && synced {
                out.push((held.payload, Outcome::Replicated));
            } else if now_ms >= held.deadline_ms {
                let outcome = if acked {
                    Outcome::FlushTimeout
                } else {
                    Outcome::SlaveTimeout
                };
                out.push((held.payload, outcome));
            } else {
                keep.push_back(held);
            }
        }
        self.waiting = keep;
        out
    }

    /// Drops held replies `keep` rejects (their connection closed).
    pub fn forget(&mut self, keep: impl FnMut(&AwaitReplicaAck<T>) -> bool) {
        self.waiting.retain(keep);
    }

    /// Every held reply, whatever its state (shutdown or a change of role): each ends as a
    /// slave timeout.
    pub fn release_all(&mut self) -> Vec<(T, Outcome)> {
        self.waiting
            .drain(..)
            .map(|held| (held.payload, Outcome::SlaveTimeout))
            .collect()
    }

    /// The earliest deadline of a held reply.
    #[must_use]
    pub fn next_deadline(&self) -> Option<u64> {
        self.waiting.iter().map(|held| held.deadline_ms).min()
    }

    /// The attached slaves.
    #[must_use]
    pub fn status(&self) -> Vec<SlaveStatus> {
        self.slaves
            .iter()
            .map(|(id, s)| SlaveStatus {
                id: *id,
                remote: s.remote,
                acked: s.acked,
                last_report_ms: s.last_report_ms,
            })
            .collect()
    }

    /// Whether the acks `rule` asks for reached `offset`.
    #[must_use]
    pub fn acked(&self, rule: AckRule, offset: u64) -> bool {
        match rule {
            AckRule::Slaves(needed) => self.acked_by(offset) >= needed,
            AckRule::AllInSyncStateSet => self.all_members_acked(offset),
        }
    }

    /// Slaves whose report is at or past `offset`.
    fn acked_by(&self, offset: u64) -> usize {
        self.slaves
            .values()
            .filter(|s| s.acked.is_some_and(|a| a >= offset))
            .count()
    }

    /// The newest ack of broker `broker_id`: its live connections' best, else what it had
    /// acked when its last connection closed while it was a member.
    fn broker_acked(&self, broker_id: u64) -> Option<u64> {
        self.slaves
            .values()
            .filter(|s| s.broker_id == Some(broker_id))
            .filter_map(|s| s.acked)
            .max()
            .or_else(|| self.sync.departed_ack(broker_id))
    }

    /// Whether broker `broker_id` has a live connection that reported.
    fn broker_connected(&self, broker_id: u64) -> bool {
        self.slaves
            .values()
            .any(|s| s.broker_id == Some(broker_id) && s.acked.is_some())
    }

    /// Broker ids of the live connections, with their acks.
    fn connected_brokers(&self) -> BTreeMap<u64, u64> {
        let mut out = BTreeMap::new();
        for s in self.slaves.values() {
            if let (Some(id), Some(acked)) = (s.broker_id, s.acked) {
                let best = out.entry(id).or_insert(acked);
                *best = (*best).max(acked);
            }
        }
        out
    }

    /// Members of the effective sync state set other than this master.
    fn other_members(&self) -> BTreeSet<u64> {
        let mut members = self.sync.effective();
        if let Some(me) = self.sync.self_id {
            members.remove(&me);
        }
        members
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GAP: u64 = 1000;

    fn remote() -> SocketAddr {
        "127.0.0.1:40000".parse().unwrap()
    }

    fn held(tag: u32, after_offset: u64, deadline_ms: u64) -> AwaitReplicaAck<u32> {
        AwaitReplicaAck {
            payload: tag,
            after_offset,
            after_sync: None,
            deadline_ms,
        }
    }

    #[test]
    fn an_empty_slave_starts_at_the_masters_oldest_byte_a_returning_one_where_it_was() {
        let mut set = ReplicaSet::<u32>::new(10);
        let fresh = set.connected(remote(), 0);
        let back = set.connected(remote(), 0);
        assert_eq!(
            set.transfer_from(fresh),
            None,
            "nothing before the first report"
        );
        set.report(fresh, 0, (4096, 0), 1);
        set.report(back, 9000, (4096, 0), 1);
        assert_eq!(set.transfer_from(fresh), Some(4096));
        assert_eq!(set.transfer_from(back), Some(9000));
        set.transferred(fresh, 5000, 5000, 1);
        // Later reports move the ack, not the transfer (it streams on without waiting).
        set.report(fresh, 4500, (4096, 0), 2);
        assert_eq!(set.transfer_from(fresh), Some(5000));
    }

    #[test]
    fn no_slave_or_a_slave_too_far_behind_means_slave_not_available() {
        let mut set = ReplicaSet::<u32>::new(10);
        assert_eq!(set.admit(1, 100, GAP), Admission::SlaveNotAvailable);
        let s = set.connected(remote(), 0);
        assert_eq!(
            set.admit(1, 100, GAP),
            Admission::SlaveNotAvailable,
            "not reported yet"
        );
        set.report(s, 0, (0, 0), 1);
        assert_eq!(set.admit(1, 999, GAP), Admission::AwaitReplicaAck);
        assert_eq!(
            set.admit(1, 1000, GAP),
            Admission::SlaveNotAvailable,
            "gap reached"
        );
        assert_eq!(
            set.admit(2, 10, GAP),
            Admission::SlaveNotAvailable,
            "two acks needed"
        );
        set.closed(s);
        assert_eq!(set.admit(1, 10, GAP), Admission::SlaveNotAvailable);
    }

    #[test]
    fn held_replies_leave_in_order_once_acked_and_time_out_as_slave_timeouts() {
        let mut set = ReplicaSet::<u32>::new(10);
        let s = set.connected(remote(), 0);
        set.report(s, 0, (0, 0), 0);
        set.hold(held(1, 100, 5_000));
        set.hold(held(2, 200, 5_000));
        set.hold(held(3, 300, 1_000));
        assert!(set.release(AckRule::Slaves(1), u64::MAX, 10).is_empty());
        set.report(s, 200, (0, 0), 20);
        assert_eq!(
            set.release(AckRule::Slaves(1), u64::MAX, 20),
            vec![(1, Outcome::Replicated), (2, Outcome::Replicated)]
        );
        assert_eq!(set.next_deadline(), Some(1_000));
        assert_eq!(
            set.release(AckRule::Slaves(1), u64::MAX, 1_000),
            vec![(3, Outcome::SlaveTimeout)]
        );
        assert_eq!(set.held(), 0);
    }

    #[test]
    fn a_sync_flush_send_also_waits_for_the_local_flush() {
        let mut set = ReplicaSet::<u32>::new(10);
        let s = set.connected(remote(), 0);
        set.report(s, 500, (0, 0), 0);
        set.hold(AwaitReplicaAck {
            payload: 7,
            after_offset: 100,
            after_sync: Some(100),
            deadline_ms: 50,
        });
        assert!(
            set.release(AckRule::Slaves(1), 99, 10).is_empty(),
            "replicated but not flushed"
        );
        assert_eq!(
            set.release(AckRule::Slaves(1), 99, 50),
            vec![(7, Outcome::FlushTimeout)]
        );
    }

    #[test]
    fn two_acks_need_two_distinct_slaves() {
        let mut set = ReplicaSet::<u32>::new(10);
        let a = set.connected(remote(), 0);
        let b = set.connected(remote(), 0);
        set.report(a, 0, (0, 0), 0);
        set.report(b, 0, (0, 0), 0);
        set.hold(held(1, 100, 5_000));
        set.report(a, 100, (0, 0), 1);
        set.report(a, 150, (0, 0), 2);
        assert!(set.release(AckRule::Slaves(2), u64::MAX, 3).is_empty());
        set.report(b, 100, (0, 0), 4);
        assert_eq!(
            set.release(AckRule::Slaves(2), u64::MAX, 4),
            vec![(1, Outcome::Replicated)]
        );
    }

    #[test]
    fn the_hold_is_bounded() {
        let mut set = ReplicaSet::<u32>::new(1);
        let s = set.connected(remote(), 0);
        set.report(s, 0, (0, 0), 0);
        assert_eq!(set.admit(1, 10, GAP), Admission::AwaitReplicaAck);
        set.hold(held(1, 10, 100));
        assert_eq!(set.admit(1, 10, GAP), Admission::SlaveNotAvailable);
        assert_eq!(set.release_all(), vec![(1, Outcome::SlaveTimeout)]);
    }
}
