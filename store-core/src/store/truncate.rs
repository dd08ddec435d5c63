//! Controller mode's store side: the epoch file the store keeps beside its commit log, and
//! [`MessageStore::truncate_to`], with which a slave cuts a tail that diverged from its new
//! master (RocketMQ's `truncateFiles` and `truncateDirtyFiles`, and the epoch file's
//! `truncateSuffixByOffset` that follows them).
//!
//! Cutting is ordered so that a crash after any step recovers to a valid store whose commit
//! log is either the old log or its prefix up to the cut:
//! 1. the checkpoint's durable and dispatched offsets come down to the cut (and the confirm
//!    offset with them): recovery then walks from there and never takes the old tail for
//!    durable data it must find again;
//! 2. consume-queue units of records at or past the cut go (zeroed and synced);
//! 3. index entries pointing at or past the cut go (the index's own rebuild);
//! 4. the commit log is zeroed from the cut to its old end and later segments are deleted,
//!    newest first, preallocated ones included (recovery's own truncation);
//! 5. epoch entries starting at or past the cut go.
//!
//! A crash before step 4 completes leaves the old records in place; recovery re-dispatches them
//! to the queues and the index from the lowered checkpoint, and the epoch file still describes
//! them. After step 4 the log ends at the cut; epoch entries past it are dropped at open
//! (entries starting beyond the log's end describe nothing). Cutting the epoch file first
//! instead would let a crash leave diverged records attributed to an older epoch, which the
//! next consistent point would take for agreed data.
//!
//! Left out: deciding where to cut (the HA layer, with [`crate::epoch::EpochFile::consistent_point`]).

use crate::commit_log::{parse_segment_name, segment_name, COMMIT_LOG_DIR};
use crate::consume_queue::ConsumeQueueError;
use crate::epoch::{EpochError, EpochFile};
use crate::format::record::{self, CrcCheck, SlotKind, BLANK_RECORD_LEN};
use crate::index::IndexError;
use crate::status::NotWritable;
use crate::storage::{Storage, StorageError};

use super::MessageStore;

/// Why [`MessageStore::truncate_to`] or an epoch change refused or failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TruncateError {
    /// No record or blank marker starts at `offset`: cutting there would leave half a record.
    #[error("commit-log offset {offset} is not a record boundary: {reason}")]
    NotRecordBoundary { offset: u64, reason: String },
    /// The offset lies in segments already deleted by retention.
    #[error("commit-log offset {offset} is below the oldest stored offset {min_offset}")]
    BelowMinOffset { offset: u64, min_offset: u64 },
    /// The store takes no changes (failed I/O or shut down). Nothing was changed.
    #[error("store not writable: {0}")]
    NotWritable(NotWritable),
    /// An epoch entry was refused (stale or out of order). Nothing was changed.
    #[error("epoch file: {0}")]
    Epoch(EpochError),
    /// A write failed part way; the store now refuses writes until reopened (style E5), and
    /// the next open recovers a valid prefix.
    #[error("truncation failed: {0}")]
    Failed(String),
}

impl From<StorageError> for TruncateError {
    fn from(e: StorageError) -> TruncateError {
        TruncateError::Failed(e.to_string())
    }
}

impl From<ConsumeQueueError> for TruncateError {
    fn from(e: ConsumeQueueError) -> TruncateError {
        TruncateError::Failed(format!("consume queue: {e}"))
    }
}

impl From<IndexError> for TruncateError {
    fn from(e: IndexError) -> TruncateError {
        TruncateError::Failed(format!("index: {e}"))
    }
}

impl<S: Storage + Clone> MessageStore<S> {
    /// The epoch file's entries (controller mode; empty otherwise).
    #[must_use]
    pub fn epochs(&self) -> &EpochFile {
        &self.epochs
    }

    /// Records that `epoch` starts at commit-log offset `start_offset` and writes the epoch
    /// file: a new master passes its [`MessageStore::commit_log_max_offset`], a slave the
    /// start its master announces for data of a new epoch. Returns whether an entry was added
    /// (re-recording the newest epoch adds nothing).
    ///
    /// # Errors
    /// `TruncateError::Epoch` for a stale epoch or a start behind the newest entry's (nothing
    /// changes); `Failed` if the file cannot be written (the store then refuses writes).
    pub fn append_epoch(&mut self, epoch: u32, start_offset: u64) -> Result<bool, TruncateError> {
        self.check_changeable()?;
        match self.epochs.append(&self.storage, epoch, start_offset) {
            Ok(added) => {
                if added {
                    tracing::info!(epoch, start_offset, "epoch recorded");
                }
                Ok(added)
            }
            Err(EpochError::Storage(e)) => Err(self.truncate_failed("epoch file write", &e)),
            Err(e) => Err(TruncateError::Epoch(e)),
        }
    }

    /// Cuts the commit log back to `offset` (a slave dropping a tail its new master does not
    /// have), with consume queues, index, checkpoint, confirm offset and epoch file following,
    /// in the crash-safe order of the module docs. An offset at or past the end cuts nothing
    /// but still drops epoch entries starting at or past it, as RocketMQ does after the
    /// handshake. Partial bytes of the master's stream are forgotten: replication resumes at
    /// the returned offset, the new end.
    ///
    /// A flush in flight when the cut happens is void: its completion is ignored and the next
    /// flush waits for it.
    ///
    /// # Errors
    /// `NotRecordBoundary` / `BelowMinOffset` (nothing changes); `NotWritable` when the store
    /// failed or shut down; `Failed` if a write failed part way (the store then refuses writes
    /// and the next open recovers a valid prefix).
    pub fn truncate_to(&mut self, offset: u64) -> Result<u64, TruncateError> {
        self.check_changeable()?;
        if offset < self.log.max_offset() {
            self.check_boundary(offset)?;
            let old_max = self.log.max_offset();
            if let Err(e) = self.cut(offset) {
                let reason = format!("truncation to {offset} failed: {e}");
                self.fail(reason.clone());
                return Err(TruncateError::Failed(reason));
            }
            tracing::warn!(
                from = old_max,
                to = offset,
                "commit log truncated to the consistent point"
            );
        }
        match self.epochs.truncate_suffix_from(&self.storage, offset) {
            Ok(0) => {}
            Ok(dropped) => tracing::info!(offset, dropped, "epoch entries past the cut dropped"),
            Err(EpochError::Storage(e)) => return Err(self.truncate_failed("epoch file write", &e)),
            Err(e) => return Err(TruncateError::Epoch(e)),
        }
        self.replica = super::replica::ReplicaStream::default();
        Ok(self.log.max_offset())
    }

    /// Refuses changes to a failed or shut-down store; a slave or a full disk may still cut.
    fn check_changeable(&self) -> Result<(), TruncateError> {
        match self.not_writable() {
            Some(reason @ (NotWritable::ShutDown | NotWritable::PreviousIo { .. })) => {
                Err(TruncateError::NotWritable(reason))
            }
            _ => Ok(()),
        }
    }

    fn truncate_failed(&mut self, what: &str, e: &StorageError) -> TruncateError {
        let reason = format!("{what} failed: {e}");
        self.fail(reason.clone());
        TruncateError::Failed(reason)
    }

    /// Whether a record or a segment-ending blank marker starts at `offset` (below the end).
    fn check_boundary(&self, offset: u64) -> Result<(), TruncateError> {
        let min_offset = self.log.min_offset();
        if offset < min_offset {
            return Err(TruncateError::BelowMinOffset { offset, min_offset });
        }
        let not_boundary = |reason: String| TruncateError::NotRecordBoundary { offset, reason };
        let head = self
            .log
            .read(&self.storage, offset, BLANK_RECORD_LEN as u64)?
            .ok_or_else(|| not_boundary("no whole slot header there".into()))?;
        let peek = record::peek(&head).ok_or_else(|| not_boundary("short header".into()))?;
        let size = self.log.segment_size();
        match peek.kind() {
            SlotKind::Blank => {
                let remaining = size - offset % size;
                if u64::try_from(peek.total_size).ok() == Some(remaining) {
                    Ok(())
                } else {
                    Err(not_boundary(format!(
                        "blank marker of {} bytes, {remaining} left in the segment",
                        peek.total_size
                    )))
                }
            }
            SlotKind::Message(_) => {
                let len = u64::try_from(peek.total_size)
                    .map_err(|_| not_boundary(format!("size {}", peek.total_size)))?;
                let bytes = self
                    .log
                    .read(&self.storage, offset, len)?
                    .ok_or_else(|| not_boundary(format!("record of {len} bytes overruns")))?;
                let (rec, _) = record::decode_with(&bytes, CrcCheck::Verify)
                    .map_err(|e| not_boundary(e.to_string()))?;
                if u64::try_from(rec.physical_offset).ok() == Some(offset) {
                    Ok(())
                } else {
                    Err(not_boundary(format!(
                        "a record there says it is at {}",
                        rec.physical_offset
                    )))
                }
            }
            SlotKind::Empty | SlotKind::Corrupt => {
                Err(not_boundary(format!("magic {:#x}", peek.magic)))
            }
        }
    }

    /// Steps 1 to 4 of the module docs, then the in-memory state.
    fn cut(&mut self, to: u64) -> Result<(), TruncateError> {
        let old_max = self.log.max_offset();
        let to_i64 = i64::try_from(to).unwrap_or(i64::MAX);
        // 1. Recovery must not expect anything at or past the cut to be durable or dispatched.
        let cp = &mut self.checkpoint;
        cp.physic_flushed_offset = cp.physic_flushed_offset.min(to);
        cp.logics_flushed_offset = cp.logics_flushed_offset.min(to);
        cp.index_flushed_offset = cp.index_flushed_offset.min(to);
        cp.confirm_phy_offset = cp.confirm_phy_offset.min(to);
        self.checkpoint.store(&self.storage)?;
        self.max_offset_at_checkpoint = self.max_offset_at_checkpoint.min(to);
        // A flush in flight may cover bytes past the cut and carry consume-queue marks past
        // it: its completion must not count.
        if let Some(up_to) = self.flush.in_flight() {
            self.stale_flush = Some(up_to);
        }
        self.flush.failed();
        self.flush.truncate(to);
        self.in_flight_dispatch = None;
        // 2. and 3.
        self.queues.truncate_beyond_phys(to_i64)?;
        if let Some(index) = &mut self.index {
            // With a clean shutdown's rules: only files holding entries at or past the cut
            // are rebuilt; empty files at the end are deleted.
            index.recover(to_i64, true)?;
        }
        // 4. Segments past the one holding the cut, newest first: ones created ahead of need
        // are not in the log's list, and leaving one would make a gap at the next open.
        let keep = self.log.segment_base(to);
        let last_listed = self.log.segments().next_back().unwrap_or(keep);
        let mut unlisted: Vec<u64> = self
            .storage
            .list(COMMIT_LOG_DIR)?
            .iter()
            .filter_map(|name| parse_segment_name(name))
            .filter(|&base| base > last_listed.max(keep))
            .collect();
        unlisted.sort_unstable();
        for base in unlisted.into_iter().rev() {
            self.storage.delete(&segment_name(base))?;
        }
        self.log.truncate(&self.storage, to, Some(old_max))?;
        // In-memory state that pointed past the cut.
        self.confirm_offset = self.confirm_offset.min(to);
        self.preallocate = None;
        self.preallocate_asked = None;
        if self.dispatch_pending_from.is_some_and(|from| from >= to) {
            self.dispatch_pending_from = None;
        }
        Ok(())
    }
}
