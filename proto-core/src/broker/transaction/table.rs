//! [`TransactionTable`]: which half messages are still unresolved, and how far the
//! transaction system group's progress offsets may move (Java keeps this as consumer offsets of
//! `CID_RMQ_SYS_TRANS` on the half and op topics, and rebuilds its `removeMap` from the op
//! topic on every check run; this table keeps it in memory and rebuilds it once, at start).
//!
//! Terms. A transaction starts as one half message, its *origin*, at some queue offset of
//! `RMQ_SYS_TRANS_HALF_TOPIC` queue 0. Each back-check re-appends a *copy* of it (a new queue
//! offset, `TRAN_PREPARED_QUEUE_OFFSET` naming the origin). The op record that ends a
//! transaction lists the queue offsets of every copy this table knows, so any of them, read
//! back after a restart, is seen as resolved.
//!
//! Progress (the invariants restart relies on):
//! - `half_progress` is the smallest *latest copy* of any pending transaction (or the half
//!   queue's end when none is pending): every pending transaction has a copy at or above it.
//! - `op_progress` is the first op record that still lists an offset at or above
//!   `half_progress`: every op record that resolves a copy a restart will read lies at or
//!   above it.
//!
//! Both only grow. What it leaves out: the Java op batching (`transactionOpBatchInterval`):
//! every resolution writes its own op record.

use std::collections::{BTreeMap, VecDeque};

/// One stored copy of a half message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HalfCopy {
    /// Queue offset in the half topic (`tranStateTableOffset`).
    pub queue_offset: u64,
    /// Commit-log offset (`commitLogOffset`).
    pub commit_log_offset: u64,
}

/// An unresolved transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    /// Every copy known, oldest first; the last is the one checked next.
    pub copies: Vec<HalfCopy>,
    /// `TRANSACTION_CHECK_TIMES` of the latest copy (`None` before the first check).
    pub check_times: Option<u32>,
    /// The producer's born time, which Java measures the transaction timeout from.
    pub born_timestamp_ms: i64,
    /// `CHECK_IMMUNITY_TIME_IN_SECONDS` turned into the wait before the first check.
    pub immunity_ms: u64,
    /// `PGROUP`: whose connections are asked.
    pub producer_group: String,
}

impl Pending {
    /// The copy the next check re-appends and names.
    pub fn latest(&self) -> HalfCopy {
        // A Pending is only ever built with one copy and copies are never removed.
        *self
            .copies
            .last()
            .expect("a pending transaction has a copy")
    }

    /// The op record body: the queue offset of `ended` (the copy the verdict named) and of
    /// every known copy, each followed by `,` (Java's `OFFSET_SEPARATOR`, which it also writes
    /// after the last one).
    pub fn op_body(&self, ended: u64) -> String {
        let mut offsets: Vec<u64> = self.copies.iter().map(|c| c.queue_offset).collect();
        if !offsets.contains(&ended) {
            offsets.push(ended);
            offsets.sort_unstable();
        }
        offsets.iter().map(|o| format!("{o},")).collect()
    }
}

/// Pending transactions by origin, plus the progress offsets (see the module doc).
#[derive(Clone, Debug, Default)]
pub struct TransactionTable {
    pending: BTreeMap<u64, Pending>,
    /// Op records not yet behind `half_progress`: (op queue offset, largest offset listed).
    ops: VecDeque<(u64, u64)>,
    /// The op queue's end as this table last saw it (where the next op record lands).
    op_end: u64,
    /// The half queue's end as this table last saw it.
    half_end: u64,
    /// Rotates which producer connection gets the next check.
    check_seq: usize,
}

impl TransactionTable {
    /// An empty table over half and op queues that end at `half_end` and `op_end`.
    pub fn new(half_end: u64, op_end: u64) -> TransactionTable {
        TransactionTable {
            half_end,
            op_end,
            ..TransactionTable::default()
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    /// The pending transaction started by the half at queue offset `origin`.
    pub fn get(&self, origin: u64) -> Option<&Pending> {
        self.pending.get(&origin)
    }

    /// Pending transactions in origin order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, &Pending)> {
        self.pending.iter().map(|(k, v)| (*k, v))
    }

    /// A half message was stored (a new transaction, or a copy read back at restart); `fresh`
    /// is the entry it would start, its one copy the half itself.
    pub fn note_half(&mut self, origin: u64, fresh: Pending) {
        let copy = fresh.latest();
        assert!(copy.queue_offset >= origin, "a copy follows its origin");
        self.half_end = self.half_end.max(copy.queue_offset + 1);
        match self.pending.get_mut(&origin) {
            Some(p) => {
                assert!(p.latest().queue_offset < copy.queue_offset);
                p.copies.push(copy);
                p.check_times = fresh.check_times;
            }
            None => {
                self.pending.insert(origin, fresh);
            }
        }
    }

    /// A check re-appended the transaction as `copy`, counting `check_times`.
    pub fn note_copy(&mut self, origin: u64, copy: HalfCopy, check_times: u32) {
        self.half_end = self.half_end.max(copy.queue_offset + 1);
        if let Some(p) = self.pending.get_mut(&origin) {
            assert!(p.latest().queue_offset < copy.queue_offset);
            p.copies.push(copy);
            p.check_times = Some(check_times);
        }
    }

    /// The transaction ended (committed, rolled back or discarded) and its op record went to
    /// op queue offset `op_offset`. Returns what it was.
    pub fn resolve(&mut self, origin: u64, op_offset: u64) -> Option<Pending> {
        let done = self.pending.remove(&origin)?;
        let listed_max = done.latest().queue_offset;
        self.note_op(op_offset, listed_max);
        Some(done)
    }

    /// Drops a transaction read back at restart that a later op record turned out to end.
    pub fn forget(&mut self, origin: u64) {
        self.pending.remove(&origin);
    }

    /// An op record at `op_offset` listing offsets up to `listed_max` exists (written now, or
    /// read back at restart).
    pub fn note_op(&mut self, op_offset: u64, listed_max: u64) {
        self.op_end = self.op_end.max(op_offset + 1);
        self.ops.push_back((op_offset, listed_max));
    }

    /// Where a restart must start reading the half queue.
    pub fn half_progress(&self) -> u64 {
        self.pending
            .values()
            .map(|p| p.latest().queue_offset)
            .min()
            .unwrap_or(self.half_end)
    }

    /// Where a restart must start reading the op queue; drops op records no restart needs.
    pub fn op_progress(&mut self) -> u64 {
        let half = self.half_progress();
        // Java's `calculateOpOffset`: only a leading run of finished op records is skipped.
        while self.ops.front().is_some_and(|&(_, listed)| listed < half) {
            self.ops.pop_front();
        }
        self.ops.front().map_or(self.op_end, |&(op, _)| op)
    }

    /// The next rotation number for picking a producer connection.
    pub fn next_check_seq(&mut self) -> usize {
        self.check_seq = self.check_seq.wrapping_add(1);
        self.check_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(q: u64) -> HalfCopy {
        HalfCopy {
            queue_offset: q,
            commit_log_offset: q * 100,
        }
    }

    fn fresh(q: u64) -> Pending {
        Pending {
            copies: vec![copy(q)],
            check_times: None,
            born_timestamp_ms: 0,
            immunity_ms: 6_000,
            producer_group: "pg".to_string(),
        }
    }

    #[test]
    fn progress_waits_for_the_oldest_pending_latest_copy() {
        let mut t = TransactionTable::new(0, 0);
        assert_eq!(t.half_progress(), 0);
        t.note_half(0, fresh(0));
        t.note_half(1, fresh(1));
        t.note_half(2, fresh(2));
        assert_eq!((t.half_progress(), t.op_progress()), (0, 0));
        // 1 resolves: nothing moves while 0 pends, and its op record is still needed.
        assert!(t.resolve(1, 0).is_some());
        assert_eq!((t.half_progress(), t.op_progress()), (0, 0));
        // 0 is checked: its copy lands at 3, so the half progress moves to 2.
        t.note_copy(0, copy(3), 1);
        assert_eq!(t.half_progress(), 2);
        assert_eq!(t.op_progress(), 1, "op 0 listed 1 < 2: done");
        // Ending 0 lists 0 and 3.
        let done = t.resolve(0, 1).unwrap();
        assert_eq!(done.op_body(3), "0,3,");
        assert_eq!(
            done.op_body(1),
            "0,1,3,",
            "a copy read back later is listed too"
        );
        assert_eq!(t.half_progress(), 2);
        assert_eq!(t.op_progress(), 1, "op 1 lists 3, above progress");
        assert!(t.resolve(2, 2).is_some());
        assert_eq!(t.half_progress(), 4);
        assert_eq!(t.op_progress(), 3);
        assert!(t.is_empty());
    }

    #[test]
    fn resolving_twice_finds_nothing_the_second_time() {
        let mut t = TransactionTable::new(5, 7);
        t.note_half(5, fresh(5));
        assert_eq!(t.len(), 1);
        assert!(t.resolve(5, 7).is_some());
        assert!(t.resolve(5, 8).is_none());
        assert_eq!(t.op_progress(), 8);
    }

    #[test]
    fn restart_reading_adds_copies_to_their_origin() {
        let mut t = TransactionTable::new(0, 0);
        t.note_half(4, fresh(4));
        let mut later = fresh(9);
        later.check_times = Some(2);
        t.note_half(4, later);
        let p = t.get(4).unwrap();
        assert_eq!(p.latest(), copy(9));
        assert_eq!(p.check_times, Some(2));
        assert_eq!(t.half_progress(), 9);
    }
}
