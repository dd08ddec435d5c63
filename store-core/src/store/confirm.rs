//! The confirm offset: the commit-log offset below which every record is on every in-sync
//! replica (controller mode), and the read limit it sets.
//!
//! With [`super::StoreConfig::limit_reads_to_confirm_offset`] on (controller mode, RocketMQ's
//! `readUnCommitted=false`), reads never return a record whose commit-log end lies past
//! `min(confirm offset, commit-log end)`, so no consumer sees a message a failover could cut.
//! RocketMQ gets this by stopping its dispatch (reput) at the confirm offset, so its consume
//! queues hold only confirmed units; here dispatch stays inline with the append, and reads
//! stop at the last confirmed unit instead: each queue's visible end is found from its newest
//! units backwards (a gallop then a binary search, reading single units), so the cost grows
//! with the log of the unconfirmed units, and a queue whose newest unit is confirmed costs
//! nothing. [`MessageStore::max_offset_in_queue`], [`MessageStore::queues`] and
//! `get_messages` all report that visible end, as RocketMQ's `getMaxOffsetInQueue` reports its
//! confirmed-only queues.
//!
//! The master computes the offset from its replicas' acks, a slave takes its master's; both
//! hand it to [`MessageStore::set_confirm_offset`]. It is kept in the checkpoint's
//! `confirmPhyOffset` field and restored (capped at the recovered end) at open.
//!
//! Left out: computing the offset (the HA layer), and waking long-polling pulls when it moves
//! (the broker's, on the same path that sets it).

use crate::consume_queue::ConsumeQueue;
use crate::storage::Storage;

use super::MessageStore;

impl<S: Storage + Clone> MessageStore<S> {
    /// Sets the confirm offset. It may lie past this store's own end (a slave behind its
    /// master); reads stop at the smaller of the two. It may also move backwards (a new
    /// master's confirm offset after a failover).
    pub fn set_confirm_offset(&mut self, offset: u64) {
        self.confirm_offset = offset;
        self.checkpoint.confirm_phy_offset = offset;
    }

    /// The confirm offset last set (or restored at open), as set: not capped at the end.
    #[must_use]
    pub fn confirm_offset(&self) -> u64 {
        self.confirm_offset
    }

    /// Reads stop at records ending past this commit-log offset, when the limit is on.
    pub(super) fn read_limit(&self) -> Option<u64> {
        self.config
            .limit_reads_to_confirm_offset
            .then(|| self.confirm_offset.min(self.log.max_offset()))
    }

    /// One past the newest unit of `cq` whose record ends at or below the read limit: the
    /// queue's max offset as reads see it.
    pub(super) fn visible_end(&self, cq: &ConsumeQueue<S>) -> u64 {
        let max = cq.max_offset();
        let Some(limit) = self.read_limit() else {
            return to_u64(max);
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if cq.max_phys_end() <= limit {
            return to_u64(max);
        }
        // Units are in commit-log order, so "ends at or below the limit" holds for a prefix of
        // the queue. Blank units (filler before a queue's first message) point nowhere and
        // count as visible; a unit that cannot be read counts as not.
        let visible = |at: i64| match cq.get(at) {
            Ok(Some(unit)) => unit.is_blank() || unit.phys_end() <= limit,
            _ => false,
        };
        let min = cq.min_offset().min(max);
        // Gallop back from the end: [high, max) is known to be invisible.
        let mut high = max;
        let mut low = min;
        let mut step: i64 = 1;
        while high > min {
            let probe = high.saturating_sub(step).max(min);
            if visible(probe) {
                low = probe + 1;
                break;
            }
            high = probe;
            step = step.saturating_mul(2);
        }
        // Then bisect [low, high): low - 1 is visible (or low is the minimum).
        while low < high {
            let mid = low + (high - low) / 2;
            if visible(mid) {
                low = mid + 1;
            } else {
                high = mid;
            }
        }
        to_u64(low)
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}
