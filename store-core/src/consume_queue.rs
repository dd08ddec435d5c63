//! Consume queues: per (topic, queueId) arrays of 20-byte units pointing into the commit log,
//! laid out as RocketMQ lays them out (§16.2 of the protocol reference).
//!
//! A queue lives in `consumequeue/<topic>/<queueId>/`, split into fixed-size files named by the
//! 20-digit decimal byte offset of their first unit in the queue's logical byte stream (unit `n`
//! lives at byte `n × 20`). A unit is `i64 commitLogOffset, i32 size, i64 tagsCode`, big-endian.
//! Files are created whole (zero-filled), so the first all-zero unit marks the end of data.
//!
//! Invariants this module keeps:
//! - units below [`ConsumeQueue::max_offset`] are on storage; every unit at or past it is zero,
//!   so reopening finds the same end (truncation zeroes what it drops and syncs the zeroes);
//! - units in `[min_offset, max_offset)` are readable; their commit-log offsets grow with the
//!   queue offset, except for blank units;
//! - a blank unit `(0, i32::MAX, 0)` stands for "no message here": RocketMQ writes them in front
//!   of a queue that starts in the middle of a file, and we also fill a gap in queue offsets with
//!   them. Readers skip them ([`CqUnit::is_blank`]).
//!
//! What it leaves out: when to flush (the store decides from [`ConsumeQueue::unflushed_units`]),
//! resolving store timestamps (the caller passes a closure), the ConsumeQueueExt files (disabled
//! by default in RocketMQ) and batch consume queues.

use std::collections::{BTreeMap, BTreeSet};

use crate::storage::{Storage, StorageError};

/// Bytes per consume-queue unit.
pub const CQ_UNIT_SIZE: u64 = 20;
const _: () = assert!(CQ_UNIT_SIZE == 20);
/// Units per file by default (`mappedFileSizeConsumeQueue` = 300 000 × 20 = 6 000 000 bytes).
pub const CQ_UNITS_PER_FILE_DEFAULT: u64 = 300_000;
const _: () = assert!(CQ_UNITS_PER_FILE_DEFAULT * CQ_UNIT_SIZE == 6_000_000);
/// The most units per file (files stay below 2 GiB, as RocketMQ's int-addressed files must).
pub const CQ_UNITS_PER_FILE_MAX: u64 = (i32::MAX as u64) / CQ_UNIT_SIZE;
/// Root directory of all consume queues, relative to the store root.
pub const CONSUME_QUEUE_DIR: &str = "consumequeue";

/// Sizing of consume-queue files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumeQueueConfig {
    /// Units per file; a file is `units_per_file × 20` bytes. Must be at least 1.
    pub units_per_file: u64,
}

impl Default for ConsumeQueueConfig {
    fn default() -> Self {
        ConsumeQueueConfig {
            units_per_file: CQ_UNITS_PER_FILE_DEFAULT,
        }
    }
}

impl ConsumeQueueConfig {
    /// Bytes per file.
    pub fn file_size(&self) -> u64 {
        self.units_per_file * CQ_UNIT_SIZE
    }
}

/// One consume-queue unit: where a message is in the commit log and its tag hash code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CqUnit {
    /// Commit-log offset of the record.
    pub phys_offset: i64,
    /// The record's TOTALSIZE.
    pub size: i32,
    /// Tag hash code (sign-extended `String.hashCode` of TAGS, 0 without tags), or the delivery
    /// time in `SCHEDULE_TOPIC_XXXX`.
    pub tags_code: i64,
}

impl CqUnit {
    /// The filler RocketMQ writes where a queue has no message (before a queue's first unit when
    /// it starts mid-file).
    pub const BLANK: CqUnit = CqUnit {
        phys_offset: 0,
        size: i32::MAX,
        tags_code: 0,
    };

    /// True for [`CqUnit::BLANK`]: a slot with no message behind it.
    pub fn is_blank(&self) -> bool {
        *self == CqUnit::BLANK
    }

    /// True if recovery counts this unit as written (RocketMQ: `offset >= 0 && size > 0`).
    /// Blank units are valid in this sense.
    pub fn is_valid(&self) -> bool {
        self.phys_offset >= 0 && self.size > 0
    }

    /// Commit-log offset just past the record.
    pub fn phys_end(&self) -> i64 {
        self.phys_offset.saturating_add(i64::from(self.size))
    }

    /// The 20 bytes of the unit, big-endian.
    pub fn encode(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[0..8].copy_from_slice(&self.phys_offset.to_be_bytes());
        out[8..12].copy_from_slice(&self.size.to_be_bytes());
        out[12..20].copy_from_slice(&self.tags_code.to_be_bytes());
        out
    }

    /// Decodes 20 bytes; every bit pattern is a unit (validity is [`CqUnit::is_valid`]).
    pub fn decode(bytes: &[u8; 20]) -> CqUnit {
        let [p0, p1, p2, p3, p4, p5, p6, p7, s0, s1, s2, s3, t0, t1, t2, t3, t4, t5, t6, t7] =
            *bytes;
        CqUnit {
            phys_offset: i64::from_be_bytes([p0, p1, p2, p3, p4, p5, p6, p7]),
            size: i32::from_be_bytes([s0, s1, s2, s3]),
            tags_code: i64::from_be_bytes([t0, t1, t2, t3, t4, t5, t6, t7]),
        }
    }
}

/// A byte range of one file to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRange {
    /// File name relative to the store root.
    pub name: String,
    pub offset: u64,
    pub len: u64,
}

/// What [`ConsumeQueue::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CqAppend {
    /// The unit was written; `blanks` blank units were written first to fill a gap.
    Appended { blanks: u64 },
    /// The same unit is already there, or its offset is below the queue's minimum (the unit
    /// expired): a re-dispatch after recovery, nothing written.
    AlreadyPresent,
}

/// Which side of a timestamp [`ConsumeQueue::offset_by_timestamp`] looks for (RocketMQ's
/// `BoundaryType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampBoundary {
    /// The first offset whose store time is at or after the timestamp.
    Lower,
    /// The last offset whose store time is at or before the timestamp.
    Upper,
}

/// Why a consume-queue operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumeQueueError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("consume queue files of {units_per_file} units: must be 1..={CQ_UNITS_PER_FILE_MAX}")]
    BadConfig { units_per_file: u64 },
    #[error("{topic:?}: not a usable topic directory name")]
    BadTopicName { topic: String },
    #[error("{dir}: {entry:?} is not a queue id")]
    BadQueueDir { dir: String, entry: String },
    #[error("{name}: file name is not a 20-digit offset")]
    BadFileName { name: String },
    #[error("{name}: starts at byte {start}, not a multiple of the file size {file_size}")]
    MisalignedFile {
        name: String,
        start: u64,
        file_size: u64,
    },
    #[error("{name}: {len} bytes, but consume-queue files are {expected} bytes")]
    BadFileSize {
        name: String,
        len: u64,
        expected: u64,
    },
    #[error("{topic}/{queue_id}: queue offset {queue_offset} is negative")]
    NegativeOffset {
        topic: String,
        queue_id: i32,
        queue_offset: i64,
    },
    #[error("{topic}/{queue_id}: unit {unit:?} has a negative offset or a non-positive size")]
    InvalidUnit {
        topic: String,
        queue_id: i32,
        unit: CqUnit,
    },
    /// A re-dispatch brought a different unit for an offset already written. After a crash
    /// this is how a torn newest unit shows (a write can land in part): the store truncates
    /// with [`ConsumeQueue::truncate_to_offset`] and appends again. Otherwise it is a bug.
    #[error("{topic}/{queue_id}: offset {queue_offset} holds {existing:?}, not {new:?}")]
    Conflict {
        topic: String,
        queue_id: i32,
        queue_offset: i64,
        existing: CqUnit,
        new: CqUnit,
    },
}

/// One logical queue of one topic.
///
/// Driving contract:
/// 1. [`ConsumeQueue::open`] recovers the queue from its files (scan from the third-last file,
///    stop at the first invalid unit, zero and drop what follows).
/// 2. During store recovery, call [`ConsumeQueue::truncate_beyond_phys`] with the recovered
///    commit-log end, then [`ConsumeQueue::set_min_phys`] with the commit log's min offset.
/// 3. The dispatcher calls [`ConsumeQueue::append`] for each record in commit-log order; repeats
///    of units already present are no-ops, so recovery may re-dispatch freely.
/// 4. Readers use [`ConsumeQueue::get`] / [`ConsumeQueue::read_range`] within
///    `[min_offset, max_offset)`.
/// 5. The store calls [`ConsumeQueue::flush`] when [`ConsumeQueue::unflushed_units`] is large
///    enough or on its timer; only flushed units survive a crash for sure.
/// 6. After commit-log retention, [`ConsumeQueue::set_min_phys`] moves the minimum and deletes
///    whole files below it.
#[derive(Debug)]
pub struct ConsumeQueue<S> {
    storage: S,
    topic: String,
    queue_id: i32,
    /// `consumequeue/<topic>/<queueId>`.
    dir: String,
    units_per_file: u64,
    /// First queue offset of each existing file.
    files: BTreeSet<i64>,
    min_offset: i64,
    max_offset: i64,
    /// Units below this are durable.
    flushed_offset: i64,
    /// `phys_end` of the last non-blank unit, 0 if none.
    max_phys_end: i64,
    /// The file last written to and its name: appends go to one file for ~300 000 units, so
    /// its name is formatted once instead of per unit. Never stale: a name depends only on
    /// the file's first unit.
    write_file: Option<(i64, String)>,
}

impl<S: Storage> ConsumeQueue<S> {
    /// Opens (recovering) the queue `topic`/`queue_id`; a queue without files opens empty and
    /// creates its first file on the first append.
    pub fn open(
        storage: S,
        topic: &str,
        queue_id: i32,
        cfg: ConsumeQueueConfig,
    ) -> Result<ConsumeQueue<S>, ConsumeQueueError> {
        if cfg.units_per_file < 1 || cfg.units_per_file > CQ_UNITS_PER_FILE_MAX {
            return Err(ConsumeQueueError::BadConfig {
                units_per_file: cfg.units_per_file,
            });
        }
        check_topic_dir_name(topic)?;
        let dir = format!("{CONSUME_QUEUE_DIR}/{topic}/{queue_id}");
        let mut cq = ConsumeQueue {
            storage,
            topic: topic.to_string(),
            queue_id,
            dir,
            units_per_file: cfg.units_per_file,
            files: BTreeSet::new(),
            min_offset: 0,
            max_offset: 0,
            flushed_offset: 0,
            max_phys_end: 0,
            write_file: None,
        };
        cq.load_files()?;
        cq.recover_end()?;
        cq.min_offset = cq.first_readable_offset()?;
        cq.max_phys_end = cq.scan_max_phys_end()?;
        Ok(cq)
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn queue_id(&self) -> i32 {
        self.queue_id
    }

    /// The smallest readable queue offset.
    pub fn min_offset(&self) -> i64 {
        self.min_offset
    }

    /// The number of units written, i.e. the offset the next unit gets.
    pub fn max_offset(&self) -> i64 {
        self.max_offset
    }

    /// Commit-log offset just past the record of the newest non-blank unit still in a file,
    /// expired or not (0 if there is none): where dispatch into this queue got to.
    pub fn max_phys_end(&self) -> i64 {
        self.max_phys_end
    }

    /// Units below this offset are durable.
    pub fn flushed_offset(&self) -> i64 {
        self.flushed_offset
    }

    /// Units written but not yet synced.
    pub fn unflushed_units(&self) -> u64 {
        (self.max_offset - self.flushed_offset).unsigned_abs()
    }

    /// Writes the unit for `queue_offset`.
    ///
    /// - Below `max_offset`: a no-op if the same unit is there (or the offset is below the
    ///   minimum), [`ConsumeQueueError::Conflict`] if a different one is.
    /// - Past `max_offset`: the gap is filled with blank units first; if the queue holds no
    ///   readable unit, it restarts at `queue_offset` instead (old files are deleted, the blanks
    ///   cover only the start of the new file, as RocketMQ does for a queue created mid-file).
    pub fn append(
        &mut self,
        queue_offset: i64,
        phys_offset: i64,
        size: i32,
        tags_code: i64,
    ) -> Result<CqAppend, ConsumeQueueError> {
        let unit = CqUnit {
            phys_offset,
            size,
            tags_code,
        };
        if queue_offset < 0 {
            return Err(self.negative(queue_offset));
        }
        if !unit.is_valid() || unit.is_blank() {
            return Err(ConsumeQueueError::InvalidUnit {
                topic: self.topic.clone(),
                queue_id: self.queue_id,
                unit,
            });
        }
        if queue_offset < self.max_offset {
            return self.check_present(queue_offset, unit);
        }
        let mut blanks = 0;
        if queue_offset > self.max_offset {
            blanks = self.fill_gap(queue_offset)?;
        }
        self.write_units(queue_offset, &[unit])?;
        self.max_offset = queue_offset + 1;
        self.max_phys_end = unit.phys_end();
        assert!(self.min_offset <= self.max_offset);
        Ok(CqAppend::Appended { blanks })
    }

    /// Appends `units` at `queue_offset` and the offsets after it with one storage write,
    /// when that is all [`ConsumeQueue::append`] would do for each: the run starts at
    /// `max_offset` and every unit is valid and not blank. Returns false, having done nothing,
    /// otherwise (the caller appends unit by unit). For a batch's records, which go to one
    /// queue back to back.
    ///
    /// # Errors
    /// The storage's.
    pub fn append_run(
        &mut self,
        queue_offset: i64,
        units: &[CqUnit],
    ) -> Result<bool, ConsumeQueueError> {
        let Some(last) = units.last() else {
            return Ok(true);
        };
        if queue_offset != self.max_offset
            || units.iter().any(|unit| !unit.is_valid() || unit.is_blank())
        {
            return Ok(false);
        }
        self.write_units(queue_offset, units)?;
        self.max_offset = queue_offset + i64::try_from(units.len()).unwrap_or(i64::MAX);
        self.max_phys_end = last.phys_end();
        Ok(true)
    }

    /// The unit at `queue_offset`, or `None` outside `[min_offset, max_offset)`. Blank units are
    /// returned as they are.
    pub fn get(&self, queue_offset: i64) -> Result<Option<CqUnit>, ConsumeQueueError> {
        Ok(self.read_range(queue_offset, 1)?.into_iter().next())
    }

    /// Up to `max_units` consecutive units from `from` (unit `i` of the result is at offset
    /// `from + i`), stopping at `max_offset`; empty if `from` is outside `[min_offset,
    /// max_offset)`. One storage read per file touched.
    pub fn read_range(&self, from: i64, max_units: u64) -> Result<Vec<CqUnit>, ConsumeQueueError> {
        if from < self.min_offset || from >= self.max_offset {
            return Ok(Vec::new());
        }
        let available = (self.max_offset - from).unsigned_abs();
        self.read_units(from, available.min(max_units))
    }

    /// Drops every unit whose record starts at or past `max_phys` (recovery: the commit log
    /// ends there). The dropped bytes are zeroed and synced so a later reopen agrees; files
    /// after the one holding the new end are deleted. Blank units never point anywhere and
    /// stay.
    pub fn truncate_beyond_phys(&mut self, max_phys: i64) -> Result<(), ConsumeQueueError> {
        let new_max = self.last_kept_offset(max_phys)?;
        if new_max == self.max_offset {
            return Ok(());
        }
        tracing::info!(
            topic = %self.topic, queue_id = self.queue_id, from = self.max_offset, to = new_max,
            max_phys, "truncating consume queue"
        );
        self.truncate_to_offset(new_max)
    }

    /// Drops every unit at or past `new_max` (which must not exceed `max_offset`), zeroing and
    /// syncing the dropped bytes and deleting the files after the one holding `new_max`. For recovery when the
    /// store finds the newest unit torn (it does not match its commit-log record, see
    /// [`ConsumeQueueError::Conflict`]); [`ConsumeQueue::truncate_beyond_phys`] covers the
    /// usual case.
    pub fn truncate_to_offset(&mut self, new_max: i64) -> Result<(), ConsumeQueueError> {
        assert!(
            new_max <= self.max_offset,
            "truncation cannot grow the queue"
        );
        assert!(new_max >= 0);
        // Zero the dropped units of the file that keeps some (later files go whole), so that a
        // reopen finds the same end; then sync the zeroes.
        // The file holding `new_max` stays even when it keeps no unit, so the queue's end
        // (its next offset) survives a restart.
        let end_file = self.file_of(new_max);
        if self.files.contains(&end_file) {
            let name = self.file_name(end_file);
            let start = (new_max - end_file).unsigned_abs();
            let stop = if self.max_offset - end_file >= self.units_per_file_i64() {
                self.units_per_file
            } else {
                (self.max_offset - end_file).unsigned_abs()
            };
            let len = (stop - start) * CQ_UNIT_SIZE;
            let zeros = vec![0u8; usize::try_from(len).unwrap_or(0)];
            self.storage.write_at(&name, start * CQ_UNIT_SIZE, &zeros)?;
            self.storage.sync(&name, start * CQ_UNIT_SIZE, len)?;
        }
        let doomed: Vec<i64> = self.files.range(end_file + 1..).copied().collect();
        for file in doomed.into_iter().rev() {
            self.storage.delete(&self.file_name(file))?;
            self.files.remove(&file);
        }
        self.max_offset = new_max;
        self.min_offset = self.min_offset.min(new_max);
        self.flushed_offset = self.flushed_offset.min(new_max);
        self.max_phys_end = self.scan_max_phys_end()?;
        Ok(())
    }

    /// Advances the minimum to the first unit whose record starts at or past `min_phys` (the
    /// commit log's new min offset after retention) and deletes files whose units all point
    /// below it. The newest file is always kept, so `max_offset` survives a restart. Returns
    /// the number of files deleted.
    pub fn set_min_phys(&mut self, min_phys: i64) -> Result<u64, ConsumeQueueError> {
        let deleted = self.delete_files_below(min_phys)?;
        if let Some(&first) = self.files.first() {
            self.min_offset = self.min_offset.max(first);
        }
        self.min_offset = self.min_offset.min(self.max_offset);
        let (low, high) = (self.min_offset, self.max_offset);
        let first_kept = self.partition(low, high, |_, unit| Ok(unit.phys_offset < min_phys))?;
        self.min_offset = self
            .next_non_blank(first_kept, high)?
            .map_or(high, |(at, _)| at);
        if deleted > 0 {
            self.max_phys_end = self.scan_max_phys_end()?;
        }
        Ok(deleted)
    }

    /// The queue offset nearest `timestamp_ms` on the `boundary` side, by binary search over
    /// `[min_offset, max_offset)`. `store_time(queue_offset, unit)` maps a unit to its record's
    /// store timestamp, or `None` if the record is gone (treated as older than any timestamp,
    /// as are blank units). Store times grow with the queue offset because both are assigned
    /// in commit-log order. With no unit on the wanted side the answer is `max_offset`
    /// (`Lower`) or `min_offset` (`Upper`).
    pub fn offset_by_timestamp(
        &self,
        timestamp_ms: i64,
        boundary: TimestampBoundary,
        mut store_time: impl FnMut(i64, CqUnit) -> Option<i64>,
    ) -> Result<i64, ConsumeQueueError> {
        // Partition point of "older than (Lower) / not newer than (Upper) the timestamp".
        let low = self.partition(self.min_offset, self.max_offset, |at, unit| {
            Ok(match (store_time(at, unit), boundary) {
                (None, _) => true,
                (Some(t), TimestampBoundary::Lower) => t < timestamp_ms,
                (Some(t), TimestampBoundary::Upper) => t <= timestamp_ms,
            })
        })?;
        Ok(match boundary {
            TimestampBoundary::Lower => low,
            TimestampBoundary::Upper if low > self.min_offset => low - 1,
            TimestampBoundary::Upper => self.min_offset,
        })
    }

    /// Syncs every unit written since the last flush.
    pub fn flush(&mut self) -> Result<(), ConsumeQueueError> {
        let (ranges, up_to) = self.unflushed_ranges();
        for range in &ranges {
            self.storage.sync(&range.name, range.offset, range.len)?;
        }
        self.mark_flushed(up_to);
        Ok(())
    }

    /// For a driver that syncs on its own: the byte ranges holding units not yet synced, and
    /// the offset to pass to [`ConsumeQueue::mark_flushed`] once they are. [`ConsumeQueue::flush`]
    /// does both in one call.
    pub fn unflushed_ranges(&self) -> (Vec<SyncRange>, i64) {
        let (from, to) = (self.flushed_offset, self.max_offset);
        let ranges = self
            .chunks(from, (to - from).unsigned_abs())
            .into_iter()
            .filter(|(file, _, _)| self.files.contains(file))
            .map(|(file, start, count)| SyncRange {
                name: self.file_name(file),
                offset: start * CQ_UNIT_SIZE,
                len: count * CQ_UNIT_SIZE,
            })
            .collect();
        (ranges, to)
    }

    /// Records that the ranges from [`ConsumeQueue::unflushed_ranges`] are synced up to queue
    /// offset `up_to`. An offset past a later truncation is clamped; a stale one is ignored.
    pub fn mark_flushed(&mut self, up_to: i64) {
        self.flushed_offset = self.flushed_offset.max(up_to.min(self.max_offset));
    }

    /// Deletes every file of the queue (topic deletion). The queue is empty afterwards.
    pub fn delete_all(&mut self) -> Result<(), ConsumeQueueError> {
        while let Some(file) = self.files.pop_last() {
            self.storage.delete(&self.file_name(file))?;
        }
        self.min_offset = 0;
        self.max_offset = 0;
        self.flushed_offset = 0;
        self.max_phys_end = 0;
        Ok(())
    }
}

/// Every consume queue of the store: topic → queueId → [`ConsumeQueue`].
#[derive(Debug)]
pub struct ConsumeQueues<S> {
    storage: S,
    cfg: ConsumeQueueConfig,
    queues: BTreeMap<String, BTreeMap<i32, ConsumeQueue<S>>>,
}

impl<S: Storage + Clone> ConsumeQueues<S> {
    /// Opens (recovering) every queue found under `consumequeue/`.
    pub fn open(
        storage: S,
        cfg: ConsumeQueueConfig,
    ) -> Result<ConsumeQueues<S>, ConsumeQueueError> {
        let mut queues: BTreeMap<String, BTreeMap<i32, ConsumeQueue<S>>> = BTreeMap::new();
        for topic in storage.list_dirs(CONSUME_QUEUE_DIR)? {
            let dir = format!("{CONSUME_QUEUE_DIR}/{topic}");
            for entry in storage.list_dirs(&dir)? {
                let queue_id =
                    parse_queue_id(&entry).ok_or_else(|| ConsumeQueueError::BadQueueDir {
                        dir: dir.clone(),
                        entry: entry.clone(),
                    })?;
                let cq = ConsumeQueue::open(storage.clone(), &topic, queue_id, cfg)?;
                queues
                    .entry(topic.clone())
                    .or_default()
                    .insert(queue_id, cq);
            }
        }
        Ok(ConsumeQueues {
            storage,
            cfg,
            queues,
        })
    }

    pub fn get(&self, topic: &str, queue_id: i32) -> Option<&ConsumeQueue<S>> {
        self.queues.get(topic)?.get(&queue_id)
    }

    pub fn get_mut(&mut self, topic: &str, queue_id: i32) -> Option<&mut ConsumeQueue<S>> {
        self.queues.get_mut(topic)?.get_mut(&queue_id)
    }

    /// The queue, opened empty if it does not exist yet (no file is created until the first
    /// append).
    pub fn get_or_create(
        &mut self,
        topic: &str,
        queue_id: i32,
    ) -> Result<&mut ConsumeQueue<S>, ConsumeQueueError> {
        let by_id = self.queues.entry(topic.to_string()).or_default();
        if let std::collections::btree_map::Entry::Vacant(slot) = by_id.entry(queue_id) {
            slot.insert(ConsumeQueue::open(
                self.storage.clone(),
                topic,
                queue_id,
                self.cfg,
            )?);
        }
        // The entry exists: it was there or has just been inserted.
        by_id
            .get_mut(&queue_id)
            .ok_or(ConsumeQueueError::BadTopicName {
                topic: topic.to_string(),
            })
    }

    /// Every queue, by topic then queue id.
    pub fn iter(&self) -> impl Iterator<Item = &ConsumeQueue<S>> {
        self.queues.values().flat_map(|by_id| by_id.values())
    }

    /// Every queue, mutably.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut ConsumeQueue<S>> {
        self.queues
            .values_mut()
            .flat_map(|by_id| by_id.values_mut())
    }

    /// The queues of one topic, by queue id.
    pub fn topic_queues(&self, topic: &str) -> impl Iterator<Item = &ConsumeQueue<S>> {
        self.queues.get(topic).into_iter().flat_map(|m| m.values())
    }

    /// [`ConsumeQueue::max_phys_end`] over all queues: how far dispatch got.
    pub fn max_phys_end(&self) -> i64 {
        self.iter()
            .map(ConsumeQueue::max_phys_end)
            .max()
            .unwrap_or(0)
    }

    /// [`ConsumeQueue::truncate_beyond_phys`] on every queue.
    pub fn truncate_beyond_phys(&mut self, max_phys: i64) -> Result<(), ConsumeQueueError> {
        self.iter_mut()
            .try_for_each(|cq| cq.truncate_beyond_phys(max_phys))
    }

    /// [`ConsumeQueue::set_min_phys`] on every queue; returns the files deleted.
    pub fn set_min_phys(&mut self, min_phys: i64) -> Result<u64, ConsumeQueueError> {
        self.iter_mut()
            .try_fold(0, |n, cq| Ok(n + cq.set_min_phys(min_phys)?))
    }

    /// Flushes every queue with unflushed units.
    pub fn flush(&mut self) -> Result<(), ConsumeQueueError> {
        self.iter_mut()
            .filter(|cq| cq.unflushed_units() > 0)
            .try_for_each(ConsumeQueue::flush)
    }

    /// Units written but not yet synced, over all queues.
    pub fn unflushed_units(&self) -> u64 {
        self.iter().map(ConsumeQueue::unflushed_units).sum()
    }

    /// Deletes the files of every queue of `topic` and forgets them.
    pub fn remove_topic(&mut self, topic: &str) -> Result<(), ConsumeQueueError> {
        if let Some(mut by_id) = self.queues.remove(topic) {
            for cq in by_id.values_mut() {
                cq.delete_all()?;
            }
        }
        Ok(())
    }
}

// Internals of one queue: files, chunks and recovery.
impl<S: Storage> ConsumeQueue<S> {
    fn file_name(&self, first_unit: i64) -> String {
        let byte_offset = first_unit.unsigned_abs() * CQ_UNIT_SIZE;
        format!("{}/{byte_offset:020}", self.dir)
    }

    fn file_of(&self, queue_offset: i64) -> i64 {
        let per_file = self.units_per_file_i64();
        queue_offset - queue_offset % per_file
    }

    fn units_per_file_i64(&self) -> i64 {
        i64::try_from(self.units_per_file).unwrap_or(i64::MAX)
    }

    /// Splits `count` units from `from` into (file first unit, unit index in file, count).
    fn chunks(&self, from: i64, count: u64) -> Vec<(i64, u64, u64)> {
        let mut out = Vec::new();
        let mut at = from;
        let mut left = count;
        while left > 0 {
            let file = self.file_of(at);
            let start = (at - file).unsigned_abs();
            let n = left.min(self.units_per_file - start);
            out.push((file, start, n));
            at += i64::try_from(n).unwrap_or(i64::MAX);
            left -= n;
        }
        out
    }

    fn load_files(&mut self) -> Result<(), ConsumeQueueError> {
        let file_size = self.units_per_file * CQ_UNIT_SIZE;
        for entry in self.storage.list(&self.dir)? {
            let name = format!("{}/{entry}", self.dir);
            let start = parse_file_offset(&entry)
                .ok_or_else(|| ConsumeQueueError::BadFileName { name: name.clone() })?;
            if start % file_size != 0 {
                return Err(ConsumeQueueError::MisalignedFile {
                    name,
                    start,
                    file_size,
                });
            }
            let len = self.storage.len(&name)?.unwrap_or(0);
            if len != file_size {
                return Err(ConsumeQueueError::BadFileSize {
                    name,
                    len,
                    expected: file_size,
                });
            }
            let first_unit = i64::try_from(start / CQ_UNIT_SIZE)
                .map_err(|_| ConsumeQueueError::BadFileName { name: name.clone() })?;
            self.files.insert(first_unit);
        }
        Ok(())
    }

    /// Finds the end of valid units (RocketMQ's scan from the third-last file), then zeroes
    /// anything left after it and deletes later files, so the end is where appends resume.
    fn recover_end(&mut self) -> Result<(), ConsumeQueueError> {
        let files: Vec<i64> = self.files.iter().copied().collect();
        if files.is_empty() {
            return Ok(());
        }
        // Files before the scanned ones are taken as full. If a crash left even the
        // third-last file without its first unit (tiny files, much unflushed data), step back
        // until a file starts with a valid unit.
        let mut start = files.len().saturating_sub(3);
        while start > 0 {
            let Some(&file) = files.get(start) else { break };
            let first = self.read_file_units(file, 0, 1)?;
            if first.first().is_some_and(CqUnit::is_valid) {
                break;
            }
            start -= 1;
        }
        let Some(&first_scanned) = files.get(start) else {
            return Ok(());
        };
        let mut end = first_scanned;
        for &file in files.iter().filter(|&&f| f >= first_scanned) {
            if file != end {
                break; // A missing file: the data cannot continue past the hole.
            }
            let units = self.read_file_units(file, 0, self.units_per_file)?;
            let valid = units.iter().take_while(|u| u.is_valid()).count();
            end = file + i64::try_from(valid).unwrap_or(i64::MAX);
            if (valid as u64) < self.units_per_file {
                break;
            }
        }
        self.max_offset = end;
        self.flushed_offset = end;
        self.min_offset = self.min_offset.min(end);
        self.drop_after(end)
    }

    /// Deletes files that start after the file holding unit `end` and zeroes (durably) any
    /// non-zero bytes after `end` in that file.
    fn drop_after(&mut self, end: i64) -> Result<(), ConsumeQueueError> {
        let end_file = self.file_of(end);
        let later: Vec<i64> = self.files.range(end_file + 1..).copied().collect();
        for file in later.into_iter().rev() {
            self.storage.delete(&self.file_name(file))?;
            self.files.remove(&file);
        }
        if !self.files.contains(&end_file) {
            return Ok(());
        }
        let start = (end - end_file).unsigned_abs();
        let name = self.file_name(end_file);
        let tail = self.storage.read_at(
            &name,
            start * CQ_UNIT_SIZE,
            (self.units_per_file - start) * CQ_UNIT_SIZE,
        )?;
        if let Some(last) = tail.iter().rposition(|&b| b != 0) {
            let len = u64::try_from(last + 1).unwrap_or(u64::MAX);
            self.storage
                .write_at(&name, start * CQ_UNIT_SIZE, &vec![0u8; last + 1])?;
            self.storage.sync(&name, start * CQ_UNIT_SIZE, len)?;
        }
        Ok(())
    }

    /// The first non-blank unit of the first file (blanks only precede a queue that started
    /// mid-file), or `max_offset`.
    fn first_readable_offset(&self) -> Result<i64, ConsumeQueueError> {
        let Some(&first) = self.files.first() else {
            return Ok(self.max_offset);
        };
        if first >= self.max_offset {
            return Ok(self.max_offset);
        }
        let count = self
            .units_per_file
            .min((self.max_offset - first).unsigned_abs());
        let units = self.read_file_units(first, 0, count)?;
        let blanks = units.iter().take_while(|u| u.is_blank()).count();
        Ok(first + i64::try_from(blanks).unwrap_or(i64::MAX))
    }

    /// `phys_end` of the newest non-blank unit still in a file (expired ones count: they say
    /// how far dispatch got), or 0.
    fn scan_max_phys_end(&self) -> Result<i64, ConsumeQueueError> {
        let low = self.files.first().copied().unwrap_or(self.max_offset);
        let mut end = self.max_offset;
        while end > low {
            let from = self.file_of(end - 1).max(low);
            let units = self.read_units(from, (end - from).unsigned_abs())?;
            if let Some(unit) = units.iter().rev().find(|u| !u.is_blank()) {
                return Ok(unit.phys_end());
            }
            end = from;
        }
        Ok(0)
    }

    /// The offset just past the last unit to keep when the commit log ends at `max_phys`:
    /// walk back from the end while units point at or past it.
    fn last_kept_offset(&self, max_phys: i64) -> Result<i64, ConsumeQueueError> {
        let mut end = self.max_offset;
        let low = self.files.first().copied().unwrap_or(self.max_offset);
        while end > low {
            let from = self.file_of(end - 1).max(low);
            let units = self.read_units(from, (end - from).unsigned_abs())?;
            let keep = units
                .iter()
                .rposition(|u| u.is_blank() || u.phys_offset < max_phys)
                .map_or(0, |i| i + 1);
            end = from + i64::try_from(keep).unwrap_or(i64::MAX);
            if keep > 0 {
                break;
            }
        }
        Ok(end)
    }

    fn delete_files_below(&mut self, min_phys: i64) -> Result<u64, ConsumeQueueError> {
        let mut deleted = 0;
        while self.files.len() > 1 {
            let Some(&first) = self.files.first() else {
                break;
            };
            let last_unit = first + self.units_per_file_i64() - 1;
            if last_unit >= self.max_offset {
                break;
            }
            // The file's newest real unit decides; usually that is its last unit, only a gap
            // of blanks makes us read the whole file.
            let mut units = self.read_file_units(first, self.units_per_file - 1, 1)?;
            if units.first().is_some_and(CqUnit::is_blank) {
                units = self.read_file_units(first, 0, self.units_per_file)?;
            }
            let newest = units.iter().rev().find(|u| !u.is_blank());
            if newest.is_some_and(|u| u.phys_offset >= min_phys) {
                break;
            }
            self.storage.delete(&self.file_name(first))?;
            self.files.remove(&first);
            deleted += 1;
        }
        Ok(deleted)
    }

    fn check_present(
        &self,
        queue_offset: i64,
        unit: CqUnit,
    ) -> Result<CqAppend, ConsumeQueueError> {
        if queue_offset < self.min_offset || !self.files.contains(&self.file_of(queue_offset)) {
            return Ok(CqAppend::AlreadyPresent);
        }
        let existing = self.unit_at(queue_offset)?;
        if existing == unit {
            Ok(CqAppend::AlreadyPresent)
        } else {
            Err(ConsumeQueueError::Conflict {
                topic: self.topic.clone(),
                queue_id: self.queue_id,
                queue_offset,
                existing,
                new: unit,
            })
        }
    }

    /// Makes `max_offset == queue_offset` by writing blank units; returns how many.
    fn fill_gap(&mut self, queue_offset: i64) -> Result<u64, ConsumeQueueError> {
        assert!(queue_offset > self.max_offset);
        // With nothing readable (min == max) the queue restarts like one created at
        // `queue_offset`: blanks only from the start of its file, older files deleted.
        let restart = self.min_offset == self.max_offset;
        let from = if restart {
            self.file_of(queue_offset)
        } else {
            tracing::warn!(
                topic = %self.topic, queue_id = self.queue_id, max = self.max_offset,
                queue_offset, "gap in consume queue offsets, filling with blank units"
            );
            // What is durable must stay a prefix (recovery stops at the first hole), so the
            // units before the blanks are synced before the blanks are.
            self.flush()?;
            self.max_offset
        };
        let count = (queue_offset - from).unsigned_abs();
        for (file, start, n) in self.chunks(from, count) {
            let blanks: Vec<u8> = (0..n).flat_map(|_| CqUnit::BLANK.encode()).collect();
            self.ensure_file(file)?;
            let name = self.file_name(file);
            self.storage
                .write_at(&name, start * CQ_UNIT_SIZE, &blanks)?;
            // Synced at once: a torn blank would read back as a unit pointing at offset 0 with
            // a made-up size. Gaps are rare (a queue starting mid-file, or a dispatch anomaly).
            self.storage
                .sync(&name, start * CQ_UNIT_SIZE, n * CQ_UNIT_SIZE)?;
        }
        if restart {
            // Only now that the new file holds its blanks durably do the old files go, so a
            // crash in between recovers the old end or the new one, never an empty queue.
            let stale: Vec<i64> = self.files.iter().copied().filter(|&f| f != from).collect();
            for file in stale {
                self.storage.delete(&self.file_name(file))?;
                self.files.remove(&file);
            }
            self.min_offset = queue_offset;
        }
        self.max_offset = queue_offset;
        self.flushed_offset = queue_offset;
        Ok(count)
    }

    fn ensure_file(&mut self, file: i64) -> Result<(), ConsumeQueueError> {
        if !self.files.contains(&file) {
            let size = self.units_per_file * CQ_UNIT_SIZE;
            self.storage.create(&self.file_name(file), size)?;
            self.files.insert(file);
        }
        Ok(())
    }

    fn write_units(&mut self, from: i64, units: &[CqUnit]) -> Result<(), ConsumeQueueError> {
        // The common case, one unit per dispatched record, encodes on the stack.
        let one: [u8; CQ_UNIT_SIZE as usize];
        let many: Vec<u8>;
        let bytes: &[u8] = if let [unit] = units {
            one = unit.encode();
            &one
        } else {
            many = units.iter().flat_map(CqUnit::encode).collect();
            &many
        };
        let mut done = 0usize;
        let mut at = from;
        let mut left = units.len() as u64;
        while left > 0 {
            let file = self.file_of(at);
            let start = (at - file).unsigned_abs();
            let n = left.min(self.units_per_file - start);
            self.ensure_file(file)?;
            if self.write_file.as_ref().is_none_or(|(f, _)| *f != file) {
                self.write_file = Some((file, self.file_name(file)));
            }
            let name = self
                .write_file
                .as_ref()
                .map_or("", |(_, name)| name.as_str());
            let len = usize::try_from(n * CQ_UNIT_SIZE).unwrap_or(usize::MAX);
            let part = bytes.get(done..done + len).unwrap_or_default();
            self.storage.write_at(name, start * CQ_UNIT_SIZE, part)?;
            done += len;
            at += i64::try_from(n).unwrap_or(i64::MAX);
            left -= n;
        }
        Ok(())
    }

    /// The first offset in `low..high` whose next non-blank unit (at or after it) is not
    /// `older`, or `high`. Non-blank units are ordered by commit-log offset (and store time), so
    /// `older` holds for a prefix of them; resolving blanks to the next real unit keeps the
    /// predicate monotone even across gaps filled with blanks.
    fn partition(
        &self,
        mut low: i64,
        mut high: i64,
        mut older: impl FnMut(i64, CqUnit) -> Result<bool, ConsumeQueueError>,
    ) -> Result<i64, ConsumeQueueError> {
        while low < high {
            let mid = low + (high - low) / 2;
            match self.next_non_blank(mid, high)? {
                Some((at, unit)) if older(at, unit)? => low = at + 1,
                _ => high = mid,
            }
        }
        Ok(low)
    }

    /// The first non-blank unit in `from..until`, reading a file chunk at a time.
    fn next_non_blank(
        &self,
        from: i64,
        until: i64,
    ) -> Result<Option<(i64, CqUnit)>, ConsumeQueueError> {
        let mut at = from;
        while at < until {
            let file_end = self.file_of(at) + self.units_per_file_i64();
            let count = (file_end.min(until) - at).unsigned_abs();
            let units = self.read_units(at, count)?;
            if let Some(i) = units.iter().position(|u| !u.is_blank()) {
                let found = at + i64::try_from(i).unwrap_or(i64::MAX);
                return Ok(units.get(i).map(|&u| (found, u)));
            }
            at += i64::try_from(count).unwrap_or(i64::MAX);
        }
        Ok(None)
    }

    fn unit_at(&self, queue_offset: i64) -> Result<CqUnit, ConsumeQueueError> {
        let units = self.read_units(queue_offset, 1)?;
        Ok(units.first().copied().unwrap_or(CqUnit::BLANK))
    }

    /// Reads `count` units from `from`; units of missing files read as blank.
    fn read_units(&self, from: i64, count: u64) -> Result<Vec<CqUnit>, ConsumeQueueError> {
        let mut out = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        for (file, start, n) in self.chunks(from, count) {
            if self.files.contains(&file) {
                out.extend(self.read_file_units(file, start, n)?);
            } else {
                out.extend((0..n).map(|_| CqUnit::BLANK));
            }
        }
        Ok(out)
    }

    fn read_file_units(
        &self,
        file: i64,
        start: u64,
        count: u64,
    ) -> Result<Vec<CqUnit>, ConsumeQueueError> {
        let bytes = self.storage.read_at(
            &self.file_name(file),
            start * CQ_UNIT_SIZE,
            count * CQ_UNIT_SIZE,
        )?;
        Ok(bytes
            .chunks_exact(20)
            .map_while(|chunk| <&[u8; 20]>::try_from(chunk).ok().map(CqUnit::decode))
            .collect())
    }

    fn negative(&self, queue_offset: i64) -> ConsumeQueueError {
        ConsumeQueueError::NegativeOffset {
            topic: self.topic.clone(),
            queue_id: self.queue_id,
            queue_offset,
        }
    }
}

fn check_topic_dir_name(topic: &str) -> Result<(), ConsumeQueueError> {
    if topic.is_empty() || topic == "." || topic == ".." || topic.contains('/') {
        return Err(ConsumeQueueError::BadTopicName {
            topic: topic.to_string(),
        });
    }
    Ok(())
}

fn parse_queue_id(entry: &str) -> Option<i32> {
    if entry.is_empty() || !entry.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    entry.parse().ok()
}

/// Parses a 20-digit decimal file name.
fn parse_file_offset(entry: &str) -> Option<u64> {
    if entry.len() != 20 || !entry.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    entry.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use proptest::prelude::*;

    fn cfg(units_per_file: u64) -> ConsumeQueueConfig {
        ConsumeQueueConfig { units_per_file }
    }

    fn unit(i: i64) -> CqUnit {
        CqUnit {
            phys_offset: i * 100,
            size: 100,
            tags_code: i % 7,
        }
    }

    fn put(cq: &mut ConsumeQueue<MemStorage>, offset: i64, u: CqUnit) -> CqAppend {
        cq.append(offset, u.phys_offset, u.size, u.tags_code)
            .unwrap()
    }

    #[test]
    fn unit_round_trips_and_layout_is_big_endian() {
        let u = CqUnit {
            phys_offset: 0x0102_0304_0506_0708,
            size: 0x0A0B_0C0D,
            tags_code: -2,
        };
        let bytes = u.encode();
        assert_eq!(&bytes[0..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[8..12], &[0x0A, 0x0B, 0x0C, 0x0D]);
        assert_eq!(
            &bytes[12..20],
            &[0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFE]
        );
        assert_eq!(CqUnit::decode(&bytes), u);
        assert!(!CqUnit::decode(&[0; 20]).is_valid());
        assert!(CqUnit::BLANK.is_valid());
    }

    #[test]
    fn spans_several_files_named_by_byte_offset() {
        let s = MemStorage::new();
        let mut cq = ConsumeQueue::open(s.clone(), "T", 3, cfg(4)).unwrap();
        for i in 0..10 {
            assert_eq!(put(&mut cq, i, unit(i)), CqAppend::Appended { blanks: 0 });
        }
        assert_eq!(
            s.list("consumequeue/T/3").unwrap(),
            vec![
                "00000000000000000000",
                "00000000000000000080",
                "00000000000000000160"
            ]
        );
        assert_eq!(
            s.len("consumequeue/T/3/00000000000000000080").unwrap(),
            Some(80)
        );
        let all = cq.read_range(0, 100).unwrap();
        assert_eq!(all, (0..10).map(unit).collect::<Vec<_>>());
        assert_eq!(
            cq.read_range(3, 3).unwrap(),
            vec![unit(3), unit(4), unit(5)]
        );
        assert_eq!(cq.get(9).unwrap(), Some(unit(9)));
        assert_eq!(cq.get(10).unwrap(), None);
        assert_eq!((cq.min_offset(), cq.max_offset()), (0, 10));
        assert_eq!(cq.max_phys_end(), 1000);

        cq.flush().unwrap();
        s.crash(None);
        let cq = ConsumeQueue::open(s.clone(), "T", 3, cfg(4)).unwrap();
        assert_eq!(cq.max_offset(), 10);
        assert_eq!(cq.read_range(0, 100).unwrap(), all);
    }

    #[test]
    fn re_dispatch_is_a_no_op_and_a_different_unit_is_a_conflict() {
        let s = MemStorage::new();
        let mut cq = ConsumeQueue::open(s, "T", 0, cfg(4)).unwrap();
        for i in 0..3 {
            put(&mut cq, i, unit(i));
        }
        assert_eq!(put(&mut cq, 1, unit(1)), CqAppend::AlreadyPresent);
        let err = cq.append(1, 5, 5, 5).unwrap_err();
        assert!(matches!(
            err,
            ConsumeQueueError::Conflict {
                queue_offset: 1,
                ..
            }
        ));
        assert!(matches!(
            cq.append(-1, 5, 5, 5),
            Err(ConsumeQueueError::NegativeOffset { .. })
        ));
        assert!(matches!(
            cq.append(3, 5, 0, 5),
            Err(ConsumeQueueError::InvalidUnit { .. })
        ));
        assert_eq!(cq.max_offset(), 3);
    }

    #[test]
    fn a_queue_starting_mid_file_gets_blanks_in_front_like_rocketmq() {
        let s = MemStorage::new();
        let mut cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(4)).unwrap();
        assert_eq!(put(&mut cq, 6, unit(6)), CqAppend::Appended { blanks: 2 });
        assert_eq!(
            s.list("consumequeue/T/0").unwrap(),
            vec!["00000000000000000080"]
        );
        assert_eq!((cq.min_offset(), cq.max_offset()), (6, 7));
        assert_eq!(cq.get(5).unwrap(), None);
        let raw = s
            .read_at("consumequeue/T/0/00000000000000000080", 0, 20)
            .unwrap();
        assert_eq!(CqUnit::decode(raw[..].try_into().unwrap()), CqUnit::BLANK);
        put(&mut cq, 7, unit(7));
        cq.flush().unwrap();
        let cq = ConsumeQueue::open(s, "T", 0, cfg(4)).unwrap();
        assert_eq!((cq.min_offset(), cq.max_offset()), (6, 8));
        assert_eq!(cq.max_phys_end(), 800);
    }

    #[test]
    fn a_gap_in_a_live_queue_is_filled_with_blanks_across_files() {
        let s = MemStorage::new();
        let mut cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(4)).unwrap();
        put(&mut cq, 0, unit(0));
        put(&mut cq, 1, unit(1));
        assert_eq!(put(&mut cq, 9, unit(9)), CqAppend::Appended { blanks: 7 });
        let got = cq.read_range(0, 100).unwrap();
        assert_eq!(got.len(), 10);
        assert!(got[2..9].iter().all(CqUnit::is_blank));
        assert_eq!(got[9], unit(9));
        cq.flush().unwrap();
        let reopened = ConsumeQueue::open(s, "T", 0, cfg(4)).unwrap();
        assert_eq!((reopened.min_offset(), reopened.max_offset()), (0, 10));
    }

    #[test]
    fn truncation_drops_units_at_or_past_the_commit_log_end_durably() {
        let s = MemStorage::new();
        let mut cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(4)).unwrap();
        for i in 0..10 {
            put(&mut cq, i, unit(i));
        }
        cq.flush().unwrap();
        // Records start at i*100: the commit log now ends at 550, so units 6.. go.
        cq.truncate_beyond_phys(550).unwrap();
        assert_eq!(cq.max_offset(), 6);
        assert_eq!(cq.max_phys_end(), 600);
        assert_eq!(s.list("consumequeue/T/0").unwrap().len(), 2);
        s.crash(None);
        let mut cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(4)).unwrap();
        assert_eq!(cq.max_offset(), 6);
        // Truncating at a file boundary keeps the (now empty) file that starts there, so the
        // end survives a restart even when no unit is left.
        cq.set_min_phys(400).unwrap();
        assert_eq!(s.list("consumequeue/T/0").unwrap().len(), 1);
        cq.truncate_beyond_phys(400).unwrap();
        assert_eq!((cq.min_offset(), cq.max_offset()), (4, 4));
        assert_eq!(
            s.list("consumequeue/T/0").unwrap(),
            vec!["00000000000000000080"]
        );
        let mut cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(4)).unwrap();
        assert_eq!((cq.min_offset(), cq.max_offset()), (4, 4));
        put(&mut cq, 4, unit(4));
        cq.truncate_beyond_phys(0).unwrap();
        assert_eq!((cq.min_offset(), cq.max_offset()), (4, 4));
        let s = MemStorage::new();
        let mut cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(4)).unwrap();
        // Appending again after truncation reuses the offsets.
        put(&mut cq, 0, unit(0));
        assert_eq!(cq.read_range(0, 5).unwrap(), vec![unit(0)]);
    }

    #[test]
    fn recovery_stops_at_the_first_invalid_unit_and_clears_stale_units() {
        let s = MemStorage::new();
        let mut cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(4)).unwrap();
        for i in 0..7 {
            put(&mut cq, i, unit(i));
        }
        cq.flush().unwrap();
        // Unit 5 is damaged (size 0) while unit 6 looks fine: recovery ends at 5 and unit 6 is
        // wiped so it cannot come back later.
        let name = "consumequeue/T/0/00000000000000000080";
        s.write_at(name, 20 + 8, &0i32.to_be_bytes()).unwrap();
        s.sync(name, 0, 80).unwrap();
        let mut cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(4)).unwrap();
        assert_eq!(cq.max_offset(), 5);
        put(&mut cq, 5, unit(5));
        cq.flush().unwrap();
        let cq = ConsumeQueue::open(s, "T", 0, cfg(4)).unwrap();
        assert_eq!(cq.max_offset(), 6);
    }

    #[test]
    fn unflushed_units_may_be_lost_but_flushed_ones_survive() {
        let s = MemStorage::new();
        let mut cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(4)).unwrap();
        for i in 0..5 {
            put(&mut cq, i, unit(i));
        }
        cq.flush().unwrap();
        assert_eq!(cq.unflushed_units(), 0);
        for i in 5..7 {
            put(&mut cq, i, unit(i));
        }
        assert_eq!(cq.unflushed_units(), 2);
        let (ranges, up_to) = cq.unflushed_ranges();
        assert_eq!(
            ranges,
            vec![SyncRange {
                name: "consumequeue/T/0/00000000000000000080".into(),
                offset: 20,
                len: 40
            },]
        );
        assert_eq!(up_to, 7);
        put(&mut cq, 7, unit(7));
        for r in &ranges {
            s.sync(&r.name, r.offset, r.len).unwrap();
        }
        cq.mark_flushed(up_to);
        assert_eq!(cq.unflushed_units(), 1);
        s.crash(None);
        let cq = ConsumeQueue::open(s, "T", 0, cfg(4)).unwrap();
        assert_eq!(cq.max_offset(), 7);
    }

    #[test]
    fn min_phys_moves_the_minimum_and_deletes_whole_files() {
        let s = MemStorage::new();
        let mut cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(4)).unwrap();
        for i in 0..10 {
            put(&mut cq, i, unit(i));
        }
        assert_eq!(cq.set_min_phys(450).unwrap(), 1);
        assert_eq!(cq.min_offset(), 5);
        assert_eq!(cq.get(4).unwrap(), None);
        assert_eq!(cq.read_range(0, 3).unwrap(), vec![]);
        assert_eq!(cq.get(5).unwrap(), Some(unit(5)));
        // Everything expired: the last file stays so the max offset survives a restart.
        assert_eq!(cq.set_min_phys(5000).unwrap(), 1);
        assert_eq!((cq.min_offset(), cq.max_offset()), (10, 10));
        assert_eq!(s.list("consumequeue/T/0").unwrap().len(), 1);
        cq.flush().unwrap();
        let mut cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(4)).unwrap();
        cq.set_min_phys(5000).unwrap();
        assert_eq!((cq.min_offset(), cq.max_offset()), (10, 10));
        // The next unit continues the offsets.
        put(&mut cq, 10, unit(10));
        assert_eq!(cq.read_range(10, 5).unwrap(), vec![unit(10)]);
        // An empty queue that skips ahead restarts at the new offset.
        cq.set_min_phys(10_000).unwrap();
        assert_eq!(put(&mut cq, 14, unit(14)), CqAppend::Appended { blanks: 2 });
        assert_eq!((cq.min_offset(), cq.max_offset()), (14, 15));
        assert_eq!(
            s.list("consumequeue/T/0").unwrap(),
            vec!["00000000000000000240"]
        );
        // Below the minimum, a re-dispatch is ignored.
        assert_eq!(put(&mut cq, 3, unit(3)), CqAppend::AlreadyPresent);
    }

    #[test]
    fn offset_by_timestamp_finds_both_boundaries() {
        let s = MemStorage::new();
        let mut cq = ConsumeQueue::open(s, "T", 0, cfg(3)).unwrap();
        // Store times: 10, 20, 20, 20, 30, 50 (offset i -> time table[i]).
        let times = [10, 20, 20, 20, 30, 50];
        for i in 0..6 {
            put(&mut cq, i, unit(i));
        }
        let time_of = |_: i64, u: CqUnit| times.get((u.phys_offset / 100) as usize).copied();
        let lower = |ts| {
            cq.offset_by_timestamp(ts, TimestampBoundary::Lower, time_of)
                .unwrap()
        };
        let upper = |ts| {
            cq.offset_by_timestamp(ts, TimestampBoundary::Upper, time_of)
                .unwrap()
        };
        assert_eq!((lower(20), upper(20)), (1, 3));
        assert_eq!((lower(25), upper(25)), (4, 3));
        assert_eq!((lower(5), upper(5)), (0, 0));
        assert_eq!((lower(60), upper(60)), (6, 5));
        // Records already gone from the commit log count as older than anything.
        let gone = |_: i64, u: CqUnit| {
            (u.phys_offset >= 200).then(|| times[(u.phys_offset / 100) as usize])
        };
        assert_eq!(
            cq.offset_by_timestamp(0, TimestampBoundary::Lower, gone)
                .unwrap(),
            2
        );
    }

    #[test]
    fn the_table_lists_queues_from_the_directory_tree() {
        let s = MemStorage::new();
        {
            let mut all = ConsumeQueues::open(s.clone(), cfg(4)).unwrap();
            for (topic, qid) in [("A", 0), ("A", 1), ("B", 7)] {
                let cq = all.get_or_create(topic, qid).unwrap();
                put(cq, 0, unit(qid.into()));
                put(cq, 1, unit(i64::from(qid) + 1));
            }
            all.get_or_create("Empty", 0).unwrap();
            assert_eq!(all.unflushed_units(), 6);
            all.flush().unwrap();
            assert_eq!(all.max_phys_end(), 900);
        }
        let mut all = ConsumeQueues::open(s.clone(), cfg(4)).unwrap();
        let listed: Vec<(String, i32, i64)> = all
            .iter()
            .map(|cq| (cq.topic().to_string(), cq.queue_id(), cq.max_offset()))
            .collect();
        assert_eq!(
            listed,
            vec![("A".into(), 0, 2), ("A".into(), 1, 2), ("B".into(), 7, 2)]
        );
        assert_eq!(all.topic_queues("A").count(), 2);
        assert_eq!(all.get("B", 7).unwrap().get(1).unwrap(), Some(unit(8)));
        all.truncate_beyond_phys(150).unwrap();
        assert_eq!(all.get("A", 0).unwrap().max_offset(), 2);
        assert_eq!(all.get("A", 1).unwrap().max_offset(), 1);
        assert_eq!(all.get("B", 7).unwrap().max_offset(), 0);
        all.remove_topic("A").unwrap();
        assert!(all.get("A", 0).is_none());
        // B lost all its units to the truncation but keeps its file (and so its end).
        assert_eq!(s.list_dirs("consumequeue").unwrap(), vec!["B"]);
        s.create("consumequeue/C/x/00000000000000000000", 80)
            .unwrap();
        assert!(matches!(
            ConsumeQueues::open(s, cfg(4)),
            Err(ConsumeQueueError::BadQueueDir { .. })
        ));
    }

    #[test]
    fn damaged_directories_are_reported_not_guessed() {
        assert!(matches!(
            ConsumeQueue::open(MemStorage::new(), "T", 0, cfg(0)),
            Err(ConsumeQueueError::BadConfig { .. })
        ));
        let s = MemStorage::new();
        s.create("consumequeue/T/0/00000000000000000080", 60)
            .unwrap();
        assert!(matches!(
            ConsumeQueue::open(s.clone(), "T", 0, cfg(4)),
            Err(ConsumeQueueError::BadFileSize { len: 60, .. })
        ));
        let s = MemStorage::new();
        s.create("consumequeue/T/0/00000000000000000020", 80)
            .unwrap();
        assert!(matches!(
            ConsumeQueue::open(s.clone(), "T", 0, cfg(4)),
            Err(ConsumeQueueError::MisalignedFile { .. })
        ));
        let s = MemStorage::new();
        s.create("consumequeue/T/0/junk", 80).unwrap();
        assert!(matches!(
            ConsumeQueue::open(s.clone(), "T", 0, cfg(4)),
            Err(ConsumeQueueError::BadFileName { .. })
        ));
        assert!(matches!(
            ConsumeQueue::open(s, "a/b", 0, cfg(4)),
            Err(ConsumeQueueError::BadTopicName { .. })
        ));
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Append the next unit, `skip` offsets past the end.
        Append {
            skip: u8,
        },
        /// Re-append an existing offset (index into the model, modulo).
        Repeat(usize),
        Flush,
        /// Truncate at a fraction of the model's phys range.
        Truncate(u8),
        /// Move the min phys to a fraction of the model's phys range.
        MinPhys(u8),
        Reopen,
        Crash(Option<u64>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => prop_oneof![9 => Just(0u8), 1 => 1u8..6].prop_map(|skip| Op::Append { skip }),
            1 => any::<usize>().prop_map(Op::Repeat),
            2 => Just(Op::Flush),
            1 => any::<u8>().prop_map(Op::Truncate),
            1 => any::<u8>().prop_map(Op::MinPhys),
            1 => Just(Op::Reopen),
            1 => proptest::option::of(any::<u64>()).prop_map(Op::Crash),
        ]
    }

    /// The model: `units[i]` is `Some(unit)`, or `None` for a blank (or a unit that is gone).
    #[derive(Default)]
    struct Model {
        units: Vec<Option<CqUnit>>,
        min: usize,
        flushed: usize,
        next_phys: i64,
        min_phys: i64,
    }

    impl Model {
        fn advance_min(&mut self, min_phys: i64) {
            self.min_phys = self.min_phys.max(min_phys);
            while self
                .units
                .get(self.min)
                .is_some_and(|u| u.is_none_or(|u| u.phys_offset < min_phys))
            {
                self.min += 1;
            }
        }

        fn truncate(&mut self, len: usize) {
            self.units.truncate(len);
            self.min = self.min.min(len);
            self.flushed = self.flushed.min(len);
        }

        /// What the store would pass as the commit log's min offset on restart.
        fn restart_min_phys(&self) -> i64 {
            self.units
                .get(self.min)
                .copied()
                .flatten()
                .map_or(self.next_phys, |u| u.phys_offset)
        }
    }

    fn check(cq: &ConsumeQueue<MemStorage>, m: &Model) -> Result<(), TestCaseError> {
        prop_assert_eq!(cq.max_offset() as usize, m.units.len());
        prop_assert_eq!(cq.min_offset() as usize, m.min);
        let got = cq.read_range(cq.min_offset(), u64::MAX).unwrap();
        let want: Vec<CqUnit> = m.units[m.min..]
            .iter()
            .map(|u| u.unwrap_or(CqUnit::BLANK))
            .collect();
        prop_assert_eq!(got, want);
        let first_file = cq.files.first().map_or(m.units.len(), |&f| f as usize);
        let want_end = m.units[first_file.min(m.units.len())..]
            .iter()
            .rev()
            .flatten()
            .next()
            .map_or(0, CqUnit::phys_end);
        prop_assert_eq!(cq.max_phys_end(), want_end);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]
        #[test]
        fn append_and_read_match_a_vec_model(
            units_per_file in 1u64..7,
            ops in proptest::collection::vec(op(), 1..80),
        ) {
            let upf = units_per_file as usize;
            let s = MemStorage::new();
            let mut cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(units_per_file)).unwrap();
            let mut m = Model::default();
            for op in ops {
                match op {
                    Op::Append { skip } => {
                        let at = m.units.len() + usize::from(skip);
                        let u = CqUnit { phys_offset: m.next_phys, size: 10, tags_code: at as i64 };
                        m.next_phys += 10;
                        let r = cq.append(at as i64, u.phys_offset, u.size, u.tags_code).unwrap();
                        let restart = m.min == m.units.len() && skip > 0;
                        let blanks = if restart { at % upf } else { usize::from(skip) };
                        prop_assert_eq!(r, CqAppend::Appended { blanks: blanks as u64 });
                        if restart {
                            // An empty queue restarts at the new offset, blanks from the start
                            // of its file, synced.
                            let from = at - at % upf;
                            m.units.truncate(from);
                            m.min = at;
                        }
                        if skip > 0 {
                            m.flushed = at;
                        }
                        m.units.resize(at, None);
                        m.units.push(Some(u));
                    }
                    Op::Repeat(i) => {
                        if m.units.len() > m.min {
                            let at = m.min + i % (m.units.len() - m.min);
                            if let Some(u) = m.units[at] {
                                let r = cq.append(at as i64, u.phys_offset, u.size, u.tags_code);
                                prop_assert_eq!(r, Ok(CqAppend::AlreadyPresent));
                            }
                        }
                    }
                    Op::Flush => {
                        cq.flush().unwrap();
                        m.flushed = m.units.len();
                    }
                    Op::Truncate(f) => {
                        // The commit log never ends below its own min offset.
                        let cut = (m.next_phys * i64::from(f) / 255).max(m.min_phys);
                        cq.truncate_beyond_phys(cut).unwrap();
                        let mut len = m.units.len();
                        while len > 0 && m.units[len - 1].is_some_and(|u| u.phys_offset >= cut) {
                            len -= 1;
                        }
                        m.truncate(len);
                    }
                    Op::MinPhys(f) => {
                        let min_phys = (m.next_phys * i64::from(f) / 255).max(m.min_phys);
                        cq.set_min_phys(min_phys).unwrap();
                        m.advance_min(min_phys);
                    }
                    Op::Reopen => {
                        cq.flush().unwrap();
                        m.flushed = m.units.len();
                        cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(units_per_file)).unwrap();
                        cq.set_min_phys(m.restart_min_phys()).unwrap();
                    }
                    Op::Crash(tear) => {
                        let min_phys = m.restart_min_phys();
                        s.crash(tear);
                        cq = ConsumeQueue::open(s.clone(), "T", 0, cfg(units_per_file)).unwrap();
                        // Flushed units survive; of the rest, a prefix may.
                        let max = cq.max_offset() as usize;
                        let flushed = m.flushed;
                        prop_assert!(max >= flushed, "lost flushed units: {} < {}", max, flushed);
                        prop_assert!(max <= m.units.len());
                        m.truncate(max);
                        m.flushed = max;
                        // Unflushed units may be torn. Recovery re-dispatches from a point
                        // before them; a mismatch truncates the queue there.
                        for at in flushed..max {
                            let Some(u) = m.units[at] else {
                                prop_assert_eq!(cq.read_units(at as i64, 1).unwrap(), vec![CqUnit::BLANK]);
                                continue;
                            };
                            match cq.append(at as i64, u.phys_offset, u.size, u.tags_code) {
                                Ok(r) => prop_assert_eq!(r, CqAppend::AlreadyPresent),
                                Err(ConsumeQueueError::Conflict { .. }) => {
                                    prop_assert!(tear.is_some(), "a unit changed without a torn write");
                                    cq.truncate_to_offset(at as i64).unwrap();
                                    m.truncate(at);
                                    break;
                                }
                                Err(e) => return Err(TestCaseError::fail(e.to_string())),
                            }
                        }
                        cq.set_min_phys(min_phys).unwrap();
                        m.advance_min(min_phys);
                    }
                }
                check(&cq, &m)?;
            }
        }
    }
}
