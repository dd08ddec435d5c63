//! Crash recovery (§16.5): find where the valid commit log ends, cut everything after it, and
//! bring the consume queues and the index back in line with it.
//!
//! The steps, whatever the shutdown was:
//! 1. Start at the checkpoint's replay point: the commit-log offset below which the commit log,
//!    every consume-queue unit and every index entry were durable (a record boundary). Without
//!    a trustworthy checkpoint, start at the oldest segment.
//! 2. Walk the records from there: each must have a sane TOTALSIZE, a message magic, a body CRC
//!    that matches (with `check_crc_on_recover`), fields that add up to TOTALSIZE, its own
//!    offset in PHYSICALOFFSET, and room for a blank marker after it. A blank marker must cover
//!    exactly the rest of its segment. Valid records past the checkpoint's consume-queue mark
//!    are re-dispatched (idempotently) to their consume queue; the newest segments are walked
//!    and verified even below the replay point (`verify_segments`).
//! 3. The walk stops at the first slot that is zero (end of data) or invalid. If that is below
//!    the checkpoint's flushed offset, durable data is damaged or gone: the store refuses to
//!    open and names the file and offset, unless `truncate_on_corruption` is set. Otherwise it
//!    is the torn or unsynced tail of a crash and is dropped.
//! 4. Cut the log there: after a crash the rest of the segment is zeroed (so stale records can
//!    never be read back as new ones once the log grows over them again) and later segments
//!    are deleted. Consume-queue units pointing at or past the end are dropped, the queues'
//!    minimum follows the log's, the index recovers and catches up from where it is complete,
//!    and everything rebuilt is synced.
//!
//! Left out: the abort marker and writing the new checkpoint (the store does both once this
//! returns), and measuring time: the report carries the amounts, the driver the clock.

use bytes::Bytes;

use crate::checkpoint::{Checkpoint, CheckpointState};
use crate::commit_log::{segment_name, CommitLog};
use crate::consume_queue::{ConsumeQueueError, ConsumeQueues};
use crate::dispatch::{DispatchError, DispatchRequest, DispatchTarget};
use crate::format::properties;
use crate::format::record::{
    self, CrcCheck, MessageRecord, RecordError, SlotKind, BLANK_RECORD_LEN,
};
use crate::index::{Index, IndexError};
use crate::storage::{Storage, StorageError};

/// What recovery found and did; the driver logs it with the time it took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// No abort marker was found: the previous run shut down cleanly.
    pub clean_shutdown: bool,
    /// The checkpoint was present and verified.
    pub checkpoint_trusted: bool,
    /// Commit-log offset the walk started at.
    pub scan_from: u64,
    /// Where the valid commit log ends (the new write position).
    pub end_offset: u64,
    /// The checkpoint's durable offset (0 without a trusted checkpoint).
    pub durable_offset: u64,
    /// Oldest commit-log offset still stored.
    pub min_offset: u64,
    /// Commit-log bytes walked and validated.
    pub bytes_scanned: u64,
    /// Records walked and verified.
    pub records_scanned: u64,
    /// Of those, records re-dispatched to their consume queue (those past the checkpoint's
    /// consume-queue mark).
    pub records_redispatched: u64,
    /// Blank consume-queue units written to fill gaps (non-zero means units had been lost).
    pub cq_gap_units: u64,
    /// Where re-dispatch to the index started, if there is an index.
    pub index_redispatch_from: Option<u64>,
    /// Records walked again for the index.
    pub index_records: u64,
    /// Bytes of stale tail zeroed.
    pub bytes_zeroed: u64,
    /// Why the walk stopped before a zero slot, if it did: a torn tail, or (with
    /// `truncate_on_corruption`) damaged durable data that was cut off.
    pub stopped_at: Option<Corruption>,
}

/// An invalid slot in the commit log, located precisely.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file} at byte {file_offset} (commit-log offset {offset}): {reason}")]
pub struct Corruption {
    /// Segment file name.
    pub file: String,
    /// Byte offset inside the segment.
    pub file_offset: u64,
    /// Commit-log offset.
    pub offset: u64,
    pub reason: CorruptionReason,
}

/// What was wrong with a commit-log slot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptionReason {
    #[error("invalid record: {0}")]
    Record(RecordError),
    #[error("record claims physical offset {stored}")]
    WrongPhysicalOffset { stored: i64 },
    #[error("record of {len} bytes leaves no room for the segment's blank marker")]
    Overrun { len: u64 },
    #[error("blank marker covers {covered} bytes, the segment has {remaining} left")]
    BadBlank { covered: i64, remaining: u64 },
    #[error("zero bytes or a missing segment where durable data should be")]
    Missing,
    #[error("topic or properties cut short (zeros where the record's text should be)")]
    TornFields,
}

/// Why recovery refused to open the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    #[error(
        "commit log damaged below its durable end {durable_offset}: {corruption}; \
         set truncate_on_corruption to cut the log there (losing what follows)"
    )]
    Corrupt {
        corruption: Corruption,
        durable_offset: u64,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    ConsumeQueue(#[from] ConsumeQueueError),
    #[error("index: {0}")]
    Index(#[from] IndexError),
    #[error("dispatch: {0}")]
    Dispatch(#[from] DispatchError),
}

/// Recovery inputs besides the files.
#[derive(Debug, Clone, Copy)]
pub struct RecoveryOptions<'a> {
    pub clean_shutdown: bool,
    pub check_crc: bool,
    pub truncate_on_corruption: bool,
    /// Newest segments always walked and verified, even below the checkpoint's replay point
    /// (RocketMQ walks the last three after a clean shutdown).
    pub verify_segments: usize,
    pub delay_levels_ms: &'a [u64],
    /// Wall time at open, for naming any index file recovery starts.
    pub now_ms: u64,
}

/// What [`recover`] hands back besides the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Recovered {
    /// Store timestamp of the last valid record walked (0 if none was walked).
    pub last_store_timestamp: u64,
}

/// Runs recovery over the loaded commit log, consume queues and index. On success the log's
/// write position is the end of valid data and everything rebuilt is durable.
///
/// # Errors
/// [`RecoveryError::Corrupt`] for damaged durable data (see the module docs); storage errors.
pub fn recover<S: Storage + Clone>(
    storage: &S,
    log: &mut CommitLog,
    queues: &mut ConsumeQueues<S>,
    index: Option<&mut Index<S>>,
    checkpoint: CheckpointState,
    opts: RecoveryOptions<'_>,
) -> Result<(RecoveryReport, Recovered), RecoveryError> {
    let trusted = match checkpoint {
        CheckpointState::Valid(cp) => Some(cp),
        CheckpointState::Missing | CheckpointState::Unverified(_) => None,
    };
    let durable_offset = trusted.map_or(0, |cp| cp.physic_flushed_offset);
    let cq_replay_from = trusted.map_or(0, |cp| cp.logics_flushed_offset);
    let log_limit = log
        .segments()
        .next_back()
        .map_or(0, |last| last + log.segment_size());
    let segments = log.segments().len();
    let verify_from = if opts.verify_segments == 0 {
        log_limit
    } else {
        log.segments()
            .nth(segments.saturating_sub(opts.verify_segments))
            .unwrap_or(log_limit)
    };
    let scan_from = trusted
        .map_or(0, |cp: Checkpoint| cp.replay_from())
        .min(verify_from)
        .clamp(log.min_offset(), log_limit.max(log.min_offset()));
    let mut report = RecoveryReport {
        clean_shutdown: opts.clean_shutdown,
        checkpoint_trusted: trusted.is_some(),
        scan_from,
        durable_offset,
        ..RecoveryReport::default()
    };
    tracing::info!(
        clean_shutdown = opts.clean_shutdown,
        checkpoint_trusted = trusted.is_some(),
        scan_from,
        durable_offset,
        segments = log.segments().len(),
        "commit log recovery starting"
    );
    let mut walk = Walk::new(storage, log, opts.check_crc);
    let mut recovered = Recovered::default();
    let mut last_logged_segment = None;
    let mut pos = scan_from;
    let stop = loop {
        match walk.slot(pos)? {
            Slot::Record(rec, len) => {
                // Below the checkpoint's consume-queue mark the units are durable: verify only.
                if pos >= cq_replay_from {
                    let req = DispatchRequest::from_record(&rec, len, opts.delay_levels_ms)?;
                    report.cq_gap_units +=
                        req.apply(DispatchTarget::ConsumeQueue, queues, None, opts.now_ms)?;
                    report.records_redispatched += 1;
                }
                recovered.last_store_timestamp = u64::try_from(rec.store_timestamp).unwrap_or(0);
                report.records_scanned += 1;
                report.bytes_scanned += u64::from(len);
                pos += u64::from(len);
            }
            Slot::Blank(next) => {
                report.bytes_scanned += next - pos;
                pos = next;
            }
            Slot::End => break None,
            Slot::Invalid(reason) => break Some(reason),
        }
        let segment = log.segment_base(pos);
        if last_logged_segment != Some(segment) {
            last_logged_segment = Some(segment);
            tracing::info!(
                segment = %segment_name(segment), bytes_scanned = report.bytes_scanned,
                records = report.records_scanned, "recovery progress"
            );
        }
    };
    let end = pos;
    let stopped_at = stop.map(|reason| locate(log, end, reason));
    if end < durable_offset {
        let corruption = stopped_at
            .clone()
            .unwrap_or_else(|| locate(log, end, CorruptionReason::Missing));
        if !opts.truncate_on_corruption {
            tracing::error!(%corruption, durable_offset, "commit log damaged; refusing to start");
            return Err(RecoveryError::Corrupt {
                corruption,
                durable_offset,
            });
        }
        tracing::warn!(%corruption, durable_offset, "truncating damaged commit log as configured");
        report.stopped_at = Some(corruption);
    } else if let Some(torn) = stopped_at {
        tracing::warn!(%torn, "dropping the torn tail of the commit log");
        report.stopped_at = Some(torn);
    }
    // After a clean shutdown the tail was synced as zeros; only a crash can leave stale bytes.
    // Stale bytes can lie past the end only below the written limit the checkpoint promises
    // (the whole segment without a trusted checkpoint).
    let written_limit = trusted
        .map(|cp| cp.written_limit)
        .filter(|&limit| limit >= end)
        .unwrap_or(u64::MAX);
    let zero_to = (!opts.clean_shutdown || report.stopped_at.is_some()).then_some(written_limit);
    report.bytes_zeroed = log.truncate(storage, end, zero_to)?;
    // What was walked may still sit unsynced in the page cache (a process crash keeps it):
    // sync it before the new checkpoint calls it durable.
    for (name, offset, len) in log.sync_ranges(scan_from.min(durable_offset), end) {
        storage.sync(&name, offset, len)?;
    }
    queues.truncate_beyond_phys(to_i64(end))?;
    queues.set_min_phys(to_i64(log.min_offset()))?;
    queues.flush()?;
    if !opts.clean_shutdown {
        // Consume-queue and index files reopened after a process crash may hold units that
        // only ever reached the page cache; the checkpoint about to be written will call them
        // durable, so make them so. Syncing clean pages costs next to nothing.
        sync_tree(storage, crate::consume_queue::CONSUME_QUEUE_DIR)?;
        sync_tree(storage, crate::index::INDEX_DIR)?;
    }
    if let Some(index) = index {
        // The index recovers on its own terms, then catches up from where it (or the
        // checkpoint, which is written only after the index is flushed) says it is complete.
        let mut from = u64::try_from(index.recover(to_i64(end), opts.clean_shutdown)?).unwrap_or(0);
        if let Some(cp) = trusted {
            from = from.max(cp.index_flushed_offset.min(end));
        }
        let from = from.clamp(log.min_offset(), end.max(log.min_offset()));
        report.index_redispatch_from = Some(from);
        report.index_records = redispatch(
            storage,
            log,
            from,
            DispatchTarget::Index,
            queues,
            Some(&mut *index),
            opts.delay_levels_ms,
            opts.now_ms,
        )?;
        index.flush()?;
    }
    report.end_offset = end;
    report.min_offset = log.min_offset();
    tracing::info!(?report, "commit log recovery done");
    Ok((report, recovered))
}

/// Dispatches again, to `target`, every record from `from` (a record boundary) to the log's
/// write position: the index catching up in recovery, or dispatch resuming after a full disk.
/// Returns the records walked.
///
/// # Errors
/// The first dispatch or storage error; the caller may retry later from the same point.
#[allow(clippy::too_many_arguments)]
pub(crate) fn redispatch<S: Storage + Clone>(
    storage: &S,
    log: &CommitLog,
    from: u64,
    target: DispatchTarget,
    queues: &mut ConsumeQueues<S>,
    mut index: Option<&mut Index<S>>,
    delay_levels_ms: &[u64],
    now_ms: u64,
) -> Result<u64, RecoveryError> {
    let mut walk = Walk::new(storage, log, false);
    let mut pos = from;
    let mut records = 0;
    while pos < log.max_offset() {
        match walk.slot(pos)? {
            Slot::Record(rec, len) => {
                let req = DispatchRequest::from_record(&rec, len, delay_levels_ms)?;
                req.apply(target, queues, index.as_deref_mut(), now_ms)?;
                records += 1;
                pos += u64::from(len);
            }
            Slot::Blank(next) => pos = next,
            // Records below the write position are valid by construction (appended or
            // recovered); stopping early only leaves them undispatched.
            Slot::End | Slot::Invalid(_) => break,
        }
    }
    Ok(records)
}

/// Syncs every file under `dir`, recursively.
fn sync_tree<S: Storage>(storage: &S, dir: &str) -> Result<(), StorageError> {
    for name in storage.list(dir)? {
        let path = format!("{dir}/{name}");
        if let Some(len) = storage.len(&path)? {
            storage.sync(&path, 0, len)?;
        }
    }
    for sub in storage.list_dirs(dir)? {
        sync_tree(storage, &format!("{dir}/{sub}"))?;
    }
    Ok(())
}

fn to_i64(offset: u64) -> i64 {
    i64::try_from(offset).unwrap_or(i64::MAX)
}

/// BODYCRC covers only the body, so a write torn inside the topic or the properties can pass
/// it. The sizes catch a tear before the properties length; what is left is a tear inside the
/// topic or properties text, which leaves zeros where the store always writes text: topics
/// hold no NUL, and stored properties end with the pair separator (the store adds one).
fn fields_whole(rec: &MessageRecord) -> bool {
    !rec.topic.is_empty()
        && !rec.topic.contains(&0)
        && rec
            .properties
            .last()
            .is_none_or(|&b| b == properties::PROPERTY_SEPARATOR as u8)
}

fn locate(log: &CommitLog, offset: u64, reason: CorruptionReason) -> Corruption {
    let base = log.segment_base(offset);
    Corruption {
        file: segment_name(base),
        file_offset: offset - base,
        offset,
        reason,
    }
}

/// What a commit-log position holds.
enum Slot {
    /// A valid record of this many bytes.
    Record(MessageRecord, u32),
    /// A valid blank marker; the walk continues at this offset (the next segment).
    Blank(u64),
    /// Zero bytes, or no segment: the end of the data.
    End,
    Invalid(CorruptionReason),
}

/// Bytes read at a time while walking: large enough to amortise each storage read over many
/// records.
const WINDOW: u64 = 4 * 1024 * 1024;

/// A sequential reader over the commit log that keeps one window of bytes.
struct Walk<'a, S> {
    storage: &'a S,
    log: &'a CommitLog,
    check_crc: bool,
    window: Bytes,
    window_start: u64,
}

impl<'a, S: Storage> Walk<'a, S> {
    fn new(storage: &'a S, log: &'a CommitLog, check_crc: bool) -> Walk<'a, S> {
        Walk {
            storage,
            log,
            check_crc,
            window: Bytes::new(),
            window_start: 0,
        }
    }

    /// `len` bytes at `pos` (which must stay inside one segment), from the window if it holds
    /// them, else from a fresh window read at `pos`.
    fn bytes(&mut self, pos: u64, len: u64) -> Result<Option<Bytes>, StorageError> {
        let window_end = self.window_start + self.window.len() as u64;
        if pos < self.window_start || pos + len > window_end {
            match self.log.read_raw(self.storage, pos, len.max(WINDOW))? {
                Some(window) => {
                    self.window = window;
                    self.window_start = pos;
                }
                None => return Ok(None),
            }
        }
        let start = usize::try_from(pos - self.window_start).unwrap_or(usize::MAX);
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX));
        Ok((end <= self.window.len()).then(|| self.window.slice(start..end)))
    }

    fn slot(&mut self, pos: u64) -> Result<Slot, StorageError> {
        let base = self.log.segment_base(pos);
        let remaining = base + self.log.segment_size() - pos;
        let Some(head) = self.bytes(pos, BLANK_RECORD_LEN as u64)? else {
            // No segment here (the walk crossed a blank into a segment never created).
            return Ok(Slot::End);
        };
        let Some(peek) = record::peek(&head) else {
            return Ok(Slot::End);
        };
        let declared = i64::from(peek.total_size);
        match peek.kind() {
            SlotKind::Empty => Ok(Slot::End),
            SlotKind::Corrupt => Ok(Slot::Invalid(CorruptionReason::Record(
                RecordError::BadMagic { magic: peek.magic },
            ))),
            SlotKind::Blank if u64::try_from(declared).ok() == Some(remaining) => {
                Ok(Slot::Blank(pos + remaining))
            }
            SlotKind::Blank => Ok(Slot::Invalid(CorruptionReason::BadBlank {
                covered: declared,
                remaining,
            })),
            SlotKind::Message(_) => self.message(pos, declared, remaining),
        }
    }

    fn message(&mut self, pos: u64, declared: i64, remaining: u64) -> Result<Slot, StorageError> {
        let len = match u64::try_from(declared) {
            Ok(len)
                if len >= BLANK_RECORD_LEN as u64 && len + BLANK_RECORD_LEN as u64 <= remaining =>
            {
                len
            }
            Ok(len) => return Ok(Slot::Invalid(CorruptionReason::Overrun { len })),
            Err(_) => {
                return Ok(Slot::Invalid(CorruptionReason::Record(
                    RecordError::BadTotalSize {
                        total_size: i32::try_from(declared).unwrap_or(i32::MIN),
                    },
                )))
            }
        };
        let Some(bytes) = self.bytes(pos, len)? else {
            return Ok(Slot::Invalid(CorruptionReason::Overrun { len }));
        };
        let crc = if self.check_crc {
            CrcCheck::Verify
        } else {
            CrcCheck::Skip
        };
        match record::decode_with(&bytes, crc) {
            Err(e) => Ok(Slot::Invalid(CorruptionReason::Record(e))),
            Ok((rec, _)) if u64::try_from(rec.physical_offset).ok() != Some(pos) => {
                Ok(Slot::Invalid(CorruptionReason::WrongPhysicalOffset {
                    stored: rec.physical_offset,
                }))
            }
            Ok((rec, _)) if !fields_whole(&rec) => Ok(Slot::Invalid(CorruptionReason::TornFields)),
            // `len` fits a segment, and segments are far below 4 GiB.
            Ok((rec, n)) => Ok(Slot::Record(rec, u32::try_from(n).unwrap_or(u32::MAX))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commit_log::segment_name;
    use crate::consume_queue::ConsumeQueueConfig;
    use crate::format::record::blank_record;
    use crate::storage::MemStorage;
    use bytes::Bytes;

    const SEGMENT: u64 = 1024;

    fn record_at(offset: u64, body: &[u8]) -> Vec<u8> {
        let host = "10.0.0.1:10911".parse().unwrap();
        let rec = MessageRecord {
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            physical_offset: offset as i64,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: host,
            store_timestamp: 2,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::copy_from_slice(body),
            topic: Bytes::from_static(b"T"),
            properties: Bytes::from_static(b"K\x01v\x02"),
        };
        let mut out = Vec::new();
        rec.encode_into(&mut out);
        out
    }

    /// Lays `bytes` at the start of segment 0 (durably) and runs a crash recovery.
    fn recover_bytes(disk: &MemStorage, bytes: &[u8]) -> RecoveryReport {
        let name = segment_name(0);
        if disk.len(&name).unwrap().is_none() {
            disk.create(&name, SEGMENT).unwrap();
        }
        disk.write_at(&name, 0, bytes).unwrap();
        disk.sync(&name, 0, SEGMENT).unwrap();
        let mut log = CommitLog::load(disk, SEGMENT).unwrap();
        let mut queues =
            ConsumeQueues::open(disk.clone(), ConsumeQueueConfig { units_per_file: 8 }).unwrap();
        let opts = RecoveryOptions {
            clean_shutdown: false,
            check_crc: true,
            truncate_on_corruption: false,
            verify_segments: 1,
            delay_levels_ms: &[],
            now_ms: 0,
        };
        let (report, _) = recover(
            disk,
            &mut log,
            &mut queues,
            None,
            CheckpointState::Missing,
            opts,
        )
        .unwrap();
        report
    }

    #[test]
    fn a_record_at_the_wrong_offset_is_stale_not_valid() {
        let disk = MemStorage::new();
        let first = record_at(0, b"one");
        // A record that claims offset 0 but sits after the first one: stale data.
        let mut bytes = first.clone();
        bytes.extend(record_at(0, b"two"));
        let report = recover_bytes(&disk, &bytes);
        assert_eq!(report.end_offset, first.len() as u64);
        let stop = report.stopped_at.unwrap();
        assert_eq!(
            stop.reason,
            CorruptionReason::WrongPhysicalOffset { stored: 0 }
        );
        assert_eq!(
            (stop.file.as_str(), stop.file_offset),
            ("commitlog/00000000000000000000", first.len() as u64)
        );
        // The stale bytes were zeroed: they cannot come back.
        let tail = disk
            .read_at(&segment_name(0), first.len() as u64, 8)
            .unwrap();
        assert!(tail.iter().all(|&b| b == 0));
    }

    #[test]
    fn a_blank_marker_must_cover_exactly_the_rest_of_its_segment() {
        let disk = MemStorage::new();
        let first = record_at(0, b"one");
        let mut bytes = first.clone();
        bytes.extend(blank_record(16));
        let report = recover_bytes(&disk, &bytes);
        assert_eq!(report.end_offset, first.len() as u64);
        assert!(matches!(
            report.stopped_at.unwrap().reason,
            CorruptionReason::BadBlank { covered: 16, .. }
        ));
        // A proper one leads to the next segment, which does not exist: the log ends there.
        let disk = MemStorage::new();
        let mut bytes = first.clone();
        bytes.extend(blank_record((SEGMENT - first.len() as u64) as i32));
        let report = recover_bytes(&disk, &bytes);
        assert_eq!(report.end_offset, SEGMENT);
        assert_eq!(report.stopped_at, None);
    }

    #[test]
    fn without_a_checkpoint_everything_is_walked_and_nothing_is_called_durable() {
        let disk = MemStorage::new();
        let mut bytes = record_at(0, b"one");
        let second = bytes.len() as u64;
        bytes.extend(record_at(second, b"two"));
        let report = recover_bytes(&disk, &bytes);
        assert!(!report.checkpoint_trusted);
        assert_eq!((report.scan_from, report.durable_offset), (0, 0));
        assert_eq!(report.records_scanned, 2);
        assert_eq!(report.records_redispatched, 2);
        assert_eq!(report.end_offset, bytes.len() as u64);
    }
}
