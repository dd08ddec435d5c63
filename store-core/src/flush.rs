//! When to sync the commit log: RocketMQ's ASYNC_FLUSH timer (`FlushRealTimeService`) and
//! SYNC_FLUSH group commit (`GroupCommitService`), as plain bookkeeping over offsets.
//!
//! The store asks [`FlushState::want`] after appends and timer ticks; when it answers with an
//! offset, the store hands a [`FlushRequest`] to the driver, which syncs on any task and reports
//! back with `handle_flushed`. At most one request is in flight; appends continue meanwhile and
//! the next request covers everything appended since (group commit: one sync, many appends).
//!
//! A request is self-contained, so the driver can run it on another thread: besides the
//! ranges to sync, once a second it carries the metadata writes that follow a consume-queue
//! flush (the index header and the checkpoint, with their content fixed when the request was
//! made), performed only after every sync succeeded, so the checkpoint never claims more than
//! is durable. Those writes pass a [`MetaGate`] shared with the store: a metadata write the
//! store made itself meanwhile (a raised written limit, a truncation, an index file sealed)
//! voids them, so an older snapshot never lands over a newer file.
//!
//! Left out: deciding what goes into a request (the store does) and the consume-queue timer.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::checkpoint::Checkpoint;
use crate::index::{HeaderSnapshot, INDEX_HEADER_SIZE};
use crate::storage::{Storage, StorageError};

/// RocketMQ's `FlushDiskType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlushDiskType {
    /// Acknowledge after the append; sync on a timer or once enough pages are dirty.
    #[default]
    AsyncFlush,
    /// Acknowledge (messages with `WAIT=true`) only once a sync covers the record.
    SyncFlush,
}

/// Thresholds of the async flush (RocketMQ's `flushIntervalCommitLog`,
/// `flushCommitLogLeastPages`, `flushCommitLogThoroughInterval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlushPolicy {
    pub flush_disk_type: FlushDiskType,
    /// How often the async flusher looks (500 ms).
    pub interval_ms: u64,
    /// Dirty 4 KiB pages needed before an ordinary async flush (4).
    pub least_pages: u64,
    /// After this long, flush whatever is dirty, even less than `least_pages` (10 s).
    pub thorough_interval_ms: u64,
}

impl Default for FlushPolicy {
    fn default() -> Self {
        FlushPolicy {
            flush_disk_type: FlushDiskType::AsyncFlush,
            interval_ms: 500,
            least_pages: 4,
            thorough_interval_ms: 10_000,
        }
    }
}

/// OS page size the `least_pages` threshold counts in.
pub const OS_PAGE_SIZE: u64 = 4096;

/// What to sync: the commit-log ranges between the flushed offset and `up_to`, and, when the
/// consume-queue timer is due, the consume-queue units and index entries written since their
/// last sync, followed by the index header and checkpoint writes.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct FlushRequest {
    /// Commit-log offset that is durable once every range is synced; pass it back to
    /// `handle_flushed`.
    pub up_to: u64,
    /// `(file name, offset in file, length)` to sync, in any order.
    pub ranges: Vec<(String, u64, u64)>,
    /// What the consume-queue part covers, for the store to record on completion.
    pub(crate) dispatch: Option<DispatchMark>,
}

/// The consume-queue part of a flush request: each queue's offset its ranges reach, the
/// commit-log offset below which every record was dispatched when the request was made, and
/// the metadata to write once the syncs succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DispatchMark {
    pub(crate) queues: Vec<(String, i32, i64)>,
    pub(crate) dispatched_to: u64,
    pub(crate) store_timestamp: u64,
    /// The newest index file's path, entry count and header when the request was made.
    pub(crate) index: Option<HeaderSnapshot>,
    /// What the checkpoint will say, written last.
    pub(crate) checkpoint: Checkpoint,
    /// Commit-log max offset when the request was made (sizes the next written-limit margin).
    pub(crate) max_offset: u64,
    pub(crate) gate: MetaGate,
    /// The gate's generation when the request was made: the metadata is written only if it
    /// still holds.
    pub(crate) generation: u64,
}

impl FlushRequest {
    /// Syncs every range, then writes and syncs the index header and the checkpoint the request
    /// carries (unless the store wrote newer metadata meanwhile). Drivers call this (on any
    /// task or thread, the storage is a shared handle) and report the result to the store.
    ///
    /// # Errors
    /// The first storage error; the store must then be told with `handle_flush_failed`.
    pub fn run<S: Storage>(&self, storage: &S) -> Result<(), StorageError> {
        self.ranges.iter().try_for_each(|(name, offset, len)| {
            match storage.sync(name, *offset, *len) {
                // A consume-queue file deleted since (topic deletion, retention) needs no sync;
                // commit-log segments are never deleted while a flush may cover them.
                Err(StorageError::NotFound { .. }) => Ok(()),
                other => other,
            }
        })?;
        let Some(mark) = &self.dispatch else {
            return Ok(());
        };
        mark.gate
            .write_if(mark.generation, || {
                if let Some((path, _, header)) = &mark.index {
                    match storage.write_at(path, 0, header) {
                        // Deleted by retention since: its entries are below the log's start.
                        Err(StorageError::NotFound { .. }) => {}
                        other => {
                            other?;
                            storage.sync(path, 0, INDEX_HEADER_SIZE)?;
                        }
                    }
                }
                mark.checkpoint.store(storage)
            })
            .unwrap_or(Ok(()))
    }
}

/// Orders metadata writes (checkpoint, index header) between the store's own task and a flush
/// job running elsewhere. Every write the store makes itself bumps the generation; a job writes
/// its snapshot only while the generation is the one it was made at, holding the lock while
/// it writes. So a job's snapshot never overwrites newer metadata, and a void snapshot only
/// means the checkpoint says less than it could (recovery then replays a little more).
#[derive(Debug, Clone, Default)]
pub struct MetaGate(Arc<Mutex<u64>>);

impl PartialEq for MetaGate {
    fn eq(&self, other: &MetaGate) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for MetaGate {}

impl MetaGate {
    fn lock(&self) -> MutexGuard<'_, u64> {
        // The guarded value is a counter: a panic while holding it leaves it consistent.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many store-side writes happened so far.
    pub(crate) fn generation(&self) -> u64 {
        *self.lock()
    }

    /// Runs a write the store makes itself (waiting for a job's write in progress), voiding
    /// the metadata of any job made before it.
    pub(crate) fn write<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut generation = self.lock();
        *generation += 1;
        f()
    }

    /// Runs a job's write if no store-side write happened since `generation`.
    fn write_if<T>(&self, generation: u64, f: impl FnOnce() -> T) -> Option<T> {
        let current = self.lock();
        (*current == generation).then(f)
    }
}

/// Flush progress of the commit log.
#[derive(Debug, Clone)]
pub struct FlushState {
    policy: FlushPolicy,
    /// Durable below this offset.
    flushed: u64,
    /// `up_to` of the request the driver is running.
    in_flight: Option<u64>,
    /// Highest offset a SYNC_FLUSH put is waiting for.
    wanted: u64,
    /// When the last flush request was issued, for the async timer.
    last_flush_ms: u64,
    /// When the last flush covered everything dirty at the time.
    last_thorough_ms: u64,
}

impl FlushState {
    /// Starts with everything below `flushed` durable (recovery syncs what it keeps).
    #[must_use]
    pub fn new(policy: FlushPolicy, flushed: u64, now_ms: u64) -> FlushState {
        FlushState {
            policy,
            flushed,
            in_flight: None,
            wanted: flushed,
            last_flush_ms: now_ms,
            last_thorough_ms: now_ms,
        }
    }

    /// Durable below this offset.
    #[must_use]
    pub fn flushed(&self) -> u64 {
        self.flushed
    }

    /// The in-flight request's `up_to`, if any.
    #[must_use]
    pub fn in_flight(&self) -> Option<u64> {
        self.in_flight
    }

    /// Records that a put needs `offset` durable before it is acknowledged.
    pub fn require(&mut self, offset: u64) {
        self.wanted = self.wanted.max(offset);
    }

    /// Whether anything waits for a sync (SYNC_FLUSH puts not yet covered).
    #[must_use]
    pub fn has_waiters(&self) -> bool {
        self.wanted > self.flushed
    }

    /// The offset to flush up to now, given the write position, or `None` if no flush is due
    /// (or one is in flight). Marks the returned offset as in flight.
    pub fn want(&mut self, write_offset: u64, now_ms: u64) -> Option<u64> {
        if self.in_flight.is_some() || write_offset <= self.flushed {
            return None;
        }
        let dirty = write_offset - self.flushed;
        let due = self.has_waiters()
            || match self.policy.flush_disk_type {
                // Group commit flushes at once; with no waiter (WAIT=false) the timer still
                // bounds how long data stays dirty.
                FlushDiskType::SyncFlush => now_ms >= self.last_flush_ms + self.policy.interval_ms,
                FlushDiskType::AsyncFlush => {
                    let thorough =
                        now_ms >= self.last_thorough_ms + self.policy.thorough_interval_ms;
                    let timer = now_ms >= self.last_flush_ms + self.policy.interval_ms;
                    thorough || (timer && dirty >= self.policy.least_pages * OS_PAGE_SIZE)
                }
            };
        if !due {
            return None;
        }
        self.in_flight = Some(write_offset);
        self.last_flush_ms = now_ms;
        self.last_thorough_ms = now_ms;
        Some(write_offset)
    }

    /// Marks a request for the already-flushed offset in flight (one that syncs only
    /// consume queues), unless one is in flight. Returns that offset.
    pub fn begin_without_log(&mut self) -> Option<u64> {
        if self.in_flight.is_some() {
            return None;
        }
        self.in_flight = Some(self.flushed);
        Some(self.flushed)
    }

    /// The request for `up_to` completed. Returns false (and changes nothing) if `up_to` is
    /// not the in-flight request's.
    pub fn flushed_to(&mut self, up_to: u64) -> bool {
        if self.in_flight != Some(up_to) {
            return false;
        }
        self.in_flight = None;
        assert!(up_to >= self.flushed, "flush cannot move backwards");
        self.flushed = up_to;
        true
    }

    /// The in-flight request failed; nothing became durable.
    pub fn failed(&mut self) {
        self.in_flight = None;
    }

    /// When [`FlushState::want`] may next say yes without new appends, for the store's timer.
    #[must_use]
    pub fn next_due_ms(&self, write_offset: u64) -> Option<u64> {
        if self.in_flight.is_some() || write_offset <= self.flushed {
            return None;
        }
        let timer = self.last_flush_ms + self.policy.interval_ms;
        Some(match self.policy.flush_disk_type {
            FlushDiskType::SyncFlush => timer,
            FlushDiskType::AsyncFlush => {
                let dirty = write_offset - self.flushed;
                let thorough = self.last_thorough_ms + self.policy.thorough_interval_ms;
                if dirty >= self.policy.least_pages * OS_PAGE_SIZE {
                    timer.min(thorough)
                } else {
                    thorough
                }
            }
        })
    }

    /// Everything below `up_to` was synced outside the request cycle (an inline flush); an
    /// in-flight request's later completion is then ignored.
    pub fn force_flushed(&mut self, up_to: u64) {
        self.in_flight = None;
        self.flushed = self.flushed.max(up_to);
    }

    /// Moves the flushed offset down after a truncation (recovery only).
    pub fn truncate(&mut self, end: u64) {
        self.flushed = self.flushed.min(end);
        self.wanted = self.wanted.min(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(kind: FlushDiskType) -> FlushPolicy {
        FlushPolicy {
            flush_disk_type: kind,
            ..FlushPolicy::default()
        }
    }

    #[test]
    fn group_commit_covers_every_append_before_it() {
        let mut f = FlushState::new(policy(FlushDiskType::SyncFlush), 0, 0);
        f.require(100);
        assert_eq!(f.want(100, 0), Some(100));
        // Appends continue while the sync runs; no second request meanwhile.
        f.require(250);
        assert_eq!(f.want(250, 1), None);
        assert!(f.flushed_to(100));
        assert_eq!(f.flushed(), 100);
        assert!(f.has_waiters());
        assert_eq!(f.want(300, 2), Some(300));
        assert!(!f.flushed_to(250), "a stale completion changes nothing");
        assert!(f.flushed_to(300));
        assert!(!f.has_waiters());
        assert_eq!(f.want(300, 3), None);
    }

    #[test]
    fn async_flush_waits_for_pages_or_the_thorough_interval() {
        let mut f = FlushState::new(policy(FlushDiskType::AsyncFlush), 0, 0);
        assert_eq!(f.want(1000, 100), None, "interval not reached");
        assert_eq!(f.want(1000, 600), None, "fewer than 4 dirty pages");
        assert_eq!(f.next_due_ms(1000), Some(10_000));
        assert_eq!(f.want(4 * 4096, 600), Some(4 * 4096));
        assert!(f.flushed_to(4 * 4096));
        assert_eq!(f.want(4 * 4096 + 10, 10_599), None);
        assert_eq!(f.want(4 * 4096 + 10, 10_600), Some(4 * 4096 + 10));
    }

    #[test]
    fn a_failed_sync_leaves_the_flushed_offset() {
        let mut f = FlushState::new(policy(FlushDiskType::SyncFlush), 10, 0);
        f.require(20);
        assert_eq!(f.want(20, 0), Some(20));
        f.failed();
        assert_eq!(f.flushed(), 10);
        assert_eq!(f.want(20, 0), Some(20));
    }
}
