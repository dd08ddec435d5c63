//! [`MessageStore`]: the top-level message store (RocketMQ's `DefaultMessageStore`): commit
//! log, consume queues, index, checkpoint, abort marker, flush, retention and recovery behind
//! one sans-IO API over a [`Storage`].
//!
//! # Driving contract
//!
//! The store never blocks on time or runs threads; a driver (io-adapters, the simulator, a
//! test) feeds it and performs what it asks for:
//!
//! 1. [`MessageStore::open`] recovers the files and creates the `abort` marker. The
//!    [`RecoveryReport`] says what was found; the driver logs it with the time recovery took.
//! 2. Writes: [`MessageStore::put`] / [`MessageStore::put_batch`] append, dispatch to consume
//!    queue and index in the same call, and return RocketMQ's status. When the result carries
//!    `flush_needed: Some(x)` (SYNC_FLUSH, `WAIT` not `false`), the acknowledgement must wait
//!    until [`MessageStore::flushed_offset`] reaches `x`.
//! 3. After each batch of inputs, drain [`MessageStore::poll_flush`]: each
//!    [`FlushRequest`] is synced by the driver, on any task (the storage is a shared handle,
//!    appends may continue meanwhile), then reported with [`MessageStore::handle_flushed`] or
//!    [`MessageStore::handle_flush_failed`]. One request covers every append before it
//!    (group commit); there is at most one in flight. Once a second (by default) a request
//!    also carries the consume queues' and the index's new entries, and the index header and
//!    checkpoint to write after them; completing it only updates the store's bookkeeping, so
//!    no sync ever runs on the caller's task.
//! 4. Drain [`MessageStore::poll_preallocate`]: create the named segment ahead of need
//!    (`Storage::create`, ignoring `AlreadyExists`), preferably off the append path.
//! 5. Call [`MessageStore::handle_timeout`] at [`MessageStore::poll_timeout`] (early or repeated
//!    calls are harmless) and drain [`MessageStore::poll_flush`] again: the timeout checks disk
//!    use, resumes dispatch parked by a full disk and runs retention; the time itself makes
//!    async and consume-queue flushes due.
//! 6. [`MessageStore::shutdown`] syncs everything, writes the checkpoint and removes the
//!    abort marker. Dropping the store without it is a crash, and the next open recovers.
//!
//! ```
//! use store_core::storage::MemStorage;
//! use store_core::store::{MessageStore, StoreConfig};
//! use store_core::flush::FlushDiskType;
//! # use store_core::format::record::MessageRecord;
//! # let host: core::net::SocketAddr = "127.0.0.1:10911".parse().unwrap();
//! # let msg = MessageRecord { queue_id: 0, flag: 0, queue_offset: 0, physical_offset: 0,
//! #     sys_flag: 0, born_timestamp: 1, born_host: host, store_timestamp: 0, store_host: host,
//! #     reconsume_times: 0, prepared_transaction_offset: 0,
//! #     body: bytes::Bytes::from_static(b"hello"), topic: bytes::Bytes::from_static(b"T"),
//! #     properties: bytes::Bytes::new() };
//! let disk = MemStorage::new();
//! let mut config = StoreConfig::compact(64 * 1024);
//! config.flush.flush_disk_type = FlushDiskType::SyncFlush;
//! let (mut store, _report) = MessageStore::open(disk.clone(), config, 1_000).unwrap();
//! let put = store.put(&msg, 1_000);
//! assert!(put.status.is_stored());
//! let needed = put.flush_needed.unwrap();
//! // The driver: sync, then report; the reply to the producer is released afterwards.
//! while let Some(req) = store.poll_flush(1_000) {
//!     req.run(&disk).unwrap();
//!     store.handle_flushed(req.up_to);
//! }
//! assert!(store.flushed_offset() >= needed);
//! store.shutdown().unwrap();
//! ```
//!
//! Replication (`replica.rs`): a slave's store refuses puts ([`MessageStore::set_slave`]) and
//! takes the master's commit-log bytes through [`MessageStore::append_replicated`], which
//! dispatches them to consume queues and index like a put; a master reads what to send with
//! [`MessageStore::commit_log_data`].
//!
//! Controller mode (`truncate.rs`, `confirm.rs`): the store keeps the epoch file
//! ([`MessageStore::epochs`], [`MessageStore::append_epoch`]); a slave cuts a diverged tail with
//! [`MessageStore::truncate_to`]; [`MessageStore::set_confirm_offset`] bounds what reads return
//! when [`StoreConfig::limit_reads_to_confirm_offset`] is on.
//!
//! Left out: message validation that needs broker state (topic configs, permissions), the
//! replication protocol itself (proto-core), the timer wheel, and POP.

mod config;
mod confirm;
mod filter;
mod get;
mod put;
mod replica;
mod truncate;

pub use config::{StoreConfig, MAX_PULL_MSG_SIZE};
pub use filter::{AcceptAll, MessageFilter, TagCodeFilter};
pub use get::QueryResult;
pub use replica::{ReplicaAppend, ReplicaError};
pub use truncate::TruncateError;

use crate::checkpoint::{Checkpoint, CheckpointState, StoredCheckpoint};
use crate::commit_log::{
    peek_store_timestamp, segment_name, CommitLog, SegmentError, STORE_TIMESTAMP_PEEK_LEN,
};
use crate::consume_queue::{ConsumeQueueError, ConsumeQueues};
use crate::dispatch::DispatchTarget;
use crate::epoch::{EpochError, EpochFile};
use crate::flush::{DispatchMark, FlushRequest, FlushState, MetaGate};
use crate::index::{HeaderSnapshot, Index, IndexError};
use crate::recovery::{self, RecoveryError, RecoveryOptions, RecoveryReport};
use crate::retention::{self, SegmentAge};
use crate::status::NotWritable;
use crate::storage::{Storage, StorageError};

/// Name of the abort marker: present while a store is open, so its presence at open means the
/// previous run did not shut down cleanly.
pub const ABORT_FILE: &str = "abort";

/// Why [`MessageStore::open`] failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("commit log: {0}")]
    Segments(#[from] SegmentError),
    #[error("consume queue: {0}")]
    ConsumeQueue(#[from] ConsumeQueueError),
    #[error("index: {0}")]
    Index(#[from] IndexError),
    #[error("recovery: {0}")]
    Recovery(#[from] RecoveryError),
    #[error("epoch file: {0}")]
    Epoch(#[from] EpochError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a maintenance call ([`MessageStore::flush_all`], [`MessageStore::shutdown`]) failed.
/// After it the store refuses writes until reopened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("consume queue: {0}")]
    ConsumeQueue(#[from] ConsumeQueueError),
    #[error("index: {0}")]
    Index(#[from] IndexError),
}

/// A segment the store would like created ahead of need (see
/// [`MessageStore::poll_preallocate`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Preallocate {
    /// File name, `commitlog/<20 digits>`.
    pub name: String,
    /// File length: the segment size.
    pub len: u64,
}

/// The message store. See the module docs for the driving contract.
#[derive(Debug)]
pub struct MessageStore<S: Storage + Clone> {
    storage: S,
    config: StoreConfig,
    log: CommitLog,
    queues: ConsumeQueues<S>,
    /// `None` when `message_index_enable` is off.
    index: Option<Index<S>>,
    flush: FlushState,
    /// What the checkpoint file will say next time it is written. Its writes and the index's
    /// header writes share a gate with flush jobs (see `flush.rs`).
    checkpoint: StoredCheckpoint,
    /// Store timestamp of the newest record appended or recovered.
    last_store_timestamp: u64,
    /// `last_store_timestamp` when the in-flight flush request was issued.
    in_flight_store_timestamp: u64,
    /// The consume-queue part of the in-flight flush request, if it has one.
    in_flight_dispatch: Option<DispatchMark>,
    writable: WriteState,
    /// Reused encoding buffer for appends.
    encode_buf: Vec<u8>,
    /// When consume queues, index and checkpoint are next synced.
    next_cq_flush_ms: u64,
    /// When disk use and retention are next checked.
    next_clean_ms: u64,
    /// Disk use at the last check, percent.
    used_percent: Option<u32>,
    /// Next segment to preallocate, not yet handed out by `poll_preallocate`.
    preallocate: Option<u64>,
    /// Highest segment already asked for, so each is asked for once.
    preallocate_asked: Option<u64>,
    /// Commit-log max offset when the checkpoint was last stored by the timer, to size the
    /// next written-limit margin from the append rate.
    max_offset_at_checkpoint: u64,
    /// A full disk interrupted dispatch at this commit-log offset: records from here on are
    /// stored but not yet in their consume queues. Writes stay refused until a retry in
    /// `handle_timeout` catches up.
    dispatch_pending_from: Option<u64>,
    /// A slave's partial bytes from its master (see `replica`).
    replica: replica::ReplicaStream,
    /// Controller mode's epoch entries, mirrored in the epoch file (see `truncate`).
    epochs: EpochFile,
    /// Reads stop below it when the config says so (see `confirm`).
    confirm_offset: u64,
    /// `up_to` of a flush request voided by a truncation while in flight: its completion is
    /// ignored, and no new request starts before it arrives.
    stale_flush: Option<u64>,
}

/// Whether writes are accepted, and why not.
#[derive(Debug, Clone, Default)]
struct WriteState {
    /// A write or sync failed: refuse until reopened (style E5).
    failed: Option<String>,
    /// Disk over the ratio, or no space for a segment: refuse until space returns.
    disk_full: Option<NotWritable>,
    shut_down: bool,
    /// A slave's store: puts are refused, replicated bytes are taken (see `replica`).
    slave: bool,
}

impl<S: Storage + Clone> MessageStore<S> {
    /// Opens the store on `storage`, recovering it, and marks it running (abort marker).
    ///
    /// # Errors
    /// [`OpenError`]; a damaged commit log below its durable end is
    /// `OpenError::Recovery(RecoveryError::Corrupt { .. })`, naming file and offset.
    pub fn open(
        storage: S,
        config: StoreConfig,
        now_ms: u64,
    ) -> Result<(MessageStore<S>, RecoveryReport), OpenError> {
        assert!(
            config.segment_size >= 4096,
            "commit-log segments need at least a page"
        );
        assert!(
            config.segment_size <= i32::MAX as u64,
            "segments must fit i32 sizes"
        );
        let clean_shutdown = storage.len(ABORT_FILE)?.is_none();
        let checkpoint_state = Checkpoint::load(&storage)?;
        let mut log = CommitLog::load(&storage, config.segment_size)?;
        let mut queues = ConsumeQueues::open(storage.clone(), config.consume_queue)?;
        let mut index = if config.message_index_enable {
            Some(Index::open(storage.clone(), config.index)?)
        } else {
            None
        };
        let options = RecoveryOptions {
            clean_shutdown,
            check_crc: config.check_crc_on_recover,
            truncate_on_corruption: config.truncate_on_corruption,
            verify_segments: config.verify_segments_on_recovery,
            delay_levels_ms: &config.message_delay_level_ms,
            now_ms,
        };
        let (report, recovered) = recovery::recover(
            &storage,
            &mut log,
            &mut queues,
            index.as_mut(),
            checkpoint_state,
            options,
        )?;
        let end = log.max_offset();
        let mut epochs = EpochFile::load(&storage)?;
        // Entries starting past the end describe nothing: a crash lost the tail they started
        // in, or came in the middle of a truncation (see `truncate`).
        let dropped = epochs.truncate_suffix_from(&storage, end.saturating_add(1))?;
        if dropped > 0 {
            tracing::warn!(dropped, end, "epoch entries past the recovered end dropped");
        }
        let mut checkpoint = match checkpoint_state {
            CheckpointState::Valid(cp) | CheckpointState::Unverified(cp) => cp,
            CheckpointState::Missing => Checkpoint::default(),
        };
        // With nothing walked (a clean shutdown), the checkpoint remembers the newest record.
        let last_ts = if report.records_scanned > 0 {
            recovered.last_store_timestamp
        } else {
            checkpoint.physic_msg_timestamp
        };
        checkpoint.physic_flushed_offset = end;
        checkpoint.logics_flushed_offset = end;
        checkpoint.index_flushed_offset = end;
        checkpoint.physic_msg_timestamp = last_ts;
        checkpoint.logics_msg_timestamp = last_ts;
        checkpoint.index_msg_timestamp = last_ts;
        checkpoint.written_limit = end + written_margin(0, config.segment_size);
        checkpoint.confirm_phy_offset = checkpoint.confirm_phy_offset.min(end);
        let confirm_offset = checkpoint.confirm_phy_offset;
        checkpoint.store(&storage)?;
        match storage.create(ABORT_FILE, 0) {
            Ok(()) | Err(StorageError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let gate = MetaGate::default();
        if let Some(index) = &mut index {
            index.set_gate(gate.clone());
        }
        let mut store = MessageStore {
            storage,
            flush: FlushState::new(config.flush, end, now_ms),
            next_cq_flush_ms: now_ms + config.flush_consume_queue_interval_ms,
            next_clean_ms: now_ms,
            config,
            log,
            queues,
            index,
            checkpoint: StoredCheckpoint::new(checkpoint, gate),
            last_store_timestamp: last_ts,
            in_flight_store_timestamp: last_ts,
            in_flight_dispatch: None,
            writable: WriteState::default(),
            encode_buf: Vec::new(),
            used_percent: None,
            preallocate: None,
            preallocate_asked: None,
            dispatch_pending_from: None,
            max_offset_at_checkpoint: end,
            replica: replica::ReplicaStream::default(),
            epochs,
            confirm_offset,
            stale_flush: None,
        };
        store.check_disk();
        Ok((store, report))
    }

    /// The store's configuration.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// The storage handle the store works on.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// Oldest commit-log offset still stored.
    pub fn commit_log_min_offset(&self) -> u64 {
        self.log.min_offset()
    }

    /// One past the last commit-log byte written.
    pub fn commit_log_max_offset(&self) -> u64 {
        self.log.max_offset()
    }

    /// The commit log is durable below this offset.
    pub fn flushed_offset(&self) -> u64 {
        self.flush.flushed()
    }

    /// Why writes are refused right now, if they are.
    pub fn not_writable(&self) -> Option<NotWritable> {
        if self.writable.shut_down {
            return Some(NotWritable::ShutDown);
        }
        if let Some(detail) = &self.writable.failed {
            return Some(NotWritable::PreviousIo {
                detail: detail.clone(),
            });
        }
        if self.writable.slave {
            return Some(NotWritable::SlaveMode);
        }
        self.writable.disk_full.clone()
    }

    /// Disk use in percent at the last check, if one succeeded.
    pub fn disk_used_percent(&self) -> Option<u32> {
        self.used_percent
    }

    /// The next flush to perform, if one is due (see the driving contract). Marks it in
    /// flight: the driver must answer with `handle_flushed` or `handle_flush_failed`. Once per
    /// `flush_consume_queue_interval_ms` it also carries the consume queues' new units, so
    /// their syncs run on the driver's task too.
    pub fn poll_flush(&mut self, now_ms: u64) -> Option<FlushRequest> {
        if self.stale_flush.is_some() {
            return None;
        }
        let from = self.flush.flushed();
        let mut cq_due = now_ms >= self.next_cq_flush_ms;
        if cq_due && self.checkpoint_current() {
            // Idle: nothing new to sync or record since the last checkpoint.
            self.next_cq_flush_ms = now_ms + self.config.flush_consume_queue_interval_ms;
            cq_due = false;
        }
        let up_to = match self.flush.want(self.log.max_offset(), now_ms) {
            Some(up_to) => up_to,
            None if cq_due => self.flush.begin_without_log()?,
            None => return None,
        };
        self.in_flight_store_timestamp = self.last_store_timestamp;
        let mut ranges = self.log.sync_ranges(from, up_to);
        let dispatch = cq_due.then(|| {
            self.next_cq_flush_ms = now_ms + self.config.flush_consume_queue_interval_ms;
            let mut queues = Vec::new();
            for cq in self.queues.iter().filter(|cq| cq.unflushed_units() > 0) {
                let (cq_ranges, to) = cq.unflushed_ranges();
                ranges.extend(cq_ranges.into_iter().map(|r| (r.name, r.offset, r.len)));
                queues.push((cq.topic().to_string(), cq.queue_id(), to));
            }
            let index = self
                .index
                .as_ref()
                .and_then(|index| index.flush_plan(&mut ranges));
            self.dispatch_mark(queues, index, up_to)
        });
        self.in_flight_dispatch = dispatch.clone();
        Some(FlushRequest {
            up_to,
            ranges,
            dispatch,
        })
    }

    /// The consume-queue part of a request for `up_to`: what the checkpoint will say once the
    /// request's syncs succeeded, with the written limit raised ahead of the appends expected
    /// before the next one, so puts rarely have to store the checkpoint themselves.
    fn dispatch_mark(
        &self,
        queues: Vec<(String, i32, i64)>,
        index: Option<HeaderSnapshot>,
        up_to: u64,
    ) -> DispatchMark {
        let dispatched_to = self.dispatched_to();
        let ts = self.last_store_timestamp;
        let max = self.log.max_offset();
        let margin = written_margin(
            max - self.max_offset_at_checkpoint,
            self.config.segment_size,
        );
        let mut checkpoint = *self.checkpoint;
        checkpoint.physic_flushed_offset = up_to;
        checkpoint.physic_msg_timestamp = self.in_flight_store_timestamp;
        checkpoint.logics_flushed_offset = dispatched_to;
        checkpoint.logics_msg_timestamp = ts;
        checkpoint.index_flushed_offset = dispatched_to;
        checkpoint.index_msg_timestamp = ts;
        checkpoint.written_limit = checkpoint.written_limit.max(max + margin);
        let gate = self.checkpoint.gate().clone();
        DispatchMark {
            queues,
            dispatched_to,
            store_timestamp: ts,
            index,
            checkpoint,
            max_offset: max,
            generation: gate.generation(),
            gate,
        }
    }

    /// The flush request for `up_to` completed: the commit log is durable below it, the
    /// consume-queue units and index entries it carried are too, and so are its index header
    /// and checkpoint unless the store wrote metadata itself meanwhile. Bookkeeping only: no
    /// storage calls. A stale or unknown `up_to` is ignored.
    pub fn handle_flushed(&mut self, up_to: u64) {
        if self.stale_flush == Some(up_to) {
            self.stale_flush = None;
            return;
        }
        if !self.flush.flushed_to(up_to) {
            return;
        }
        self.checkpoint.physic_flushed_offset = up_to;
        self.checkpoint.physic_msg_timestamp = self.in_flight_store_timestamp;
        let Some(mark) = self.in_flight_dispatch.take() else {
            return;
        };
        for (topic, queue_id, to) in &mark.queues {
            if let Some(cq) = self.queues.get_mut(topic, *queue_id) {
                cq.mark_flushed(*to);
            }
        }
        self.checkpoint.logics_flushed_offset = mark.dispatched_to;
        self.checkpoint.logics_msg_timestamp = mark.store_timestamp;
        // The job wrote its metadata only if no store-side write came between (flush.rs).
        let written = mark.gate.generation() == mark.generation;
        if let (Some(index), Some((path, count, header))) = (&mut self.index, &mark.index) {
            index.flushed(path, *count, header, written);
        }
        if written {
            self.checkpoint.index_flushed_offset = mark.checkpoint.index_flushed_offset;
            self.checkpoint.index_msg_timestamp = mark.checkpoint.index_msg_timestamp;
            self.checkpoint.written_limit = self
                .checkpoint
                .written_limit
                .max(mark.checkpoint.written_limit);
            self.max_offset_at_checkpoint = mark.max_offset;
        }
    }

    /// The in-flight flush failed. Nothing more becomes durable; the store refuses writes
    /// until reopened (a failed fsync leaves the page cache in an unknown state).
    pub fn handle_flush_failed(&mut self, error: &StorageError) {
        // A voided request failing still means the device failed a sync.
        self.stale_flush = None;
        tracing::error!(%error, "commit-log flush failed; refusing writes until restart");
        self.flush.failed();
        self.in_flight_dispatch = None;
        self.fail(format!("flush failed: {error}"));
    }

    /// Next segment to create ahead of need, once per segment.
    pub fn poll_preallocate(&mut self) -> Option<Preallocate> {
        let base = self.preallocate.take()?;
        Some(Preallocate {
            name: segment_name(base),
            len: self.config.segment_size,
        })
    }

    /// When [`MessageStore::handle_timeout`] next has work.
    pub fn poll_timeout(&self) -> Option<u64> {
        let mut at = self.next_clean_ms;
        // While a flush is in flight, its completion (not a timer) makes the next one due.
        if self.flush.in_flight().is_none() {
            at = at.min(self.next_cq_flush_ms);
        }
        if let Some(flush_at) = self.flush.next_due_ms(self.log.max_offset()) {
            at = at.min(flush_at);
        }
        Some(at)
    }

    /// Feeds the passage of time: checks disk use, resumes dispatch parked by a full disk and
    /// runs retention (`hour_of_day`, local time 0..=23, picks the `deleteWhen`
    /// hour). Early or repeated calls do nothing harmful.
    pub fn handle_timeout(&mut self, now_ms: u64, hour_of_day: u8) {
        if now_ms >= self.next_clean_ms {
            self.next_clean_ms = now_ms + self.config.retention.clean_resource_interval_ms;
            self.retry_dispatch(now_ms);
            self.check_disk();
            if let Err(e) = self.run_retention(now_ms, hour_of_day) {
                tracing::error!(error = %e, "retention failed");
            }
        }
    }

    /// Deletes every consume queue of `topic` (DELETE_TOPIC_IN_BROKER). Its records stay in
    /// the commit log until retention removes them; the index may still find them by key.
    ///
    /// # Errors
    /// [`StoreError`] if a file cannot be deleted; some queues may be gone then.
    pub fn delete_topic(&mut self, topic: &str) -> Result<(), StoreError> {
        self.queues.remove_topic(topic)?;
        Ok(())
    }

    /// Syncs the whole commit log, consume queues and index, and writes the checkpoint,
    /// inline. For tests and shutdown; a live driver uses `poll_flush`.
    ///
    /// # Errors
    /// [`StoreError`]; the store then refuses writes until reopened.
    pub fn flush_all(&mut self) -> Result<(), StoreError> {
        let result = self.flush_all_inner();
        if let Err(e) = &result {
            self.fail(format!("flush failed: {e}"));
        }
        result
    }

    /// Flushes everything, writes the checkpoint and removes the abort marker, so the next
    /// open trusts the checkpoint. Writes are refused afterwards; reads still work.
    ///
    /// # Errors
    /// [`StoreError`]; the abort marker then stays, and the next open recovers as after a
    /// crash.
    pub fn shutdown(&mut self) -> Result<(), StoreError> {
        self.flush_all()?;
        self.storage.delete(ABORT_FILE)?;
        self.writable.shut_down = true;
        tracing::info!(
            max_offset = self.log.max_offset(),
            "message store shut down cleanly"
        );
        Ok(())
    }

    fn flush_all_inner(&mut self) -> Result<(), StoreError> {
        let up_to = self.log.max_offset();
        let from = self.flush.flushed();
        for (name, offset, len) in self.log.sync_ranges(from, up_to) {
            self.storage.sync(&name, offset, len)?;
        }
        self.flush.force_flushed(up_to);
        self.in_flight_dispatch = None;
        self.checkpoint.physic_flushed_offset = up_to;
        self.checkpoint.physic_msg_timestamp = self.last_store_timestamp;
        self.flush_dispatched()
    }

    /// Syncs consume queues and the index inline, records them in the checkpoint and writes
    /// it.
    fn flush_dispatched(&mut self) -> Result<(), StoreError> {
        let dispatched_to = self.dispatched_to();
        self.queues.flush()?;
        if let Some(index) = &mut self.index {
            index.flush()?;
        }
        self.checkpoint.logics_flushed_offset = dispatched_to;
        self.checkpoint.index_flushed_offset = dispatched_to;
        self.checkpoint.logics_msg_timestamp = self.last_store_timestamp;
        self.checkpoint.index_msg_timestamp = self.last_store_timestamp;
        // Raise the written limit ahead of the appends expected before the next checkpoint, so
        // puts rarely have to store the checkpoint themselves.
        let max = self.log.max_offset();
        let margin = written_margin(
            max - self.max_offset_at_checkpoint,
            self.config.segment_size,
        );
        self.checkpoint.written_limit = self.checkpoint.written_limit.max(max + margin);
        self.max_offset_at_checkpoint = max;
        self.checkpoint.store(&self.storage)?;
        Ok(())
    }

    /// Whether the checkpoint already says everything a consume-queue flush would.
    fn checkpoint_current(&self) -> bool {
        self.queues.unflushed_units() == 0
            && self.checkpoint.logics_flushed_offset == self.dispatched_to()
            && self.checkpoint.index_flushed_offset == self.dispatched_to()
            && self.checkpoint.physic_flushed_offset == self.flush.flushed()
            && self.checkpoint.written_limit >= self.log.max_offset()
    }

    /// Records below this offset are in their consume queues and the index: the write
    /// position, unless a full disk parked dispatch earlier.
    fn dispatched_to(&self) -> u64 {
        self.dispatch_pending_from.unwrap_or(self.log.max_offset())
    }

    /// Enters the failed state (style E5).
    fn fail(&mut self, detail: String) {
        if self.writable.failed.is_none() {
            tracing::error!(%detail, "message store refuses writes until restart");
            self.writable.failed = Some(detail);
        }
    }

    /// Re-dispatches the records a full disk kept out of their consume queues.
    fn retry_dispatch(&mut self, now_ms: u64) {
        let Some(from) = self.dispatch_pending_from else {
            return;
        };
        match recovery::redispatch(
            &self.storage,
            &self.log,
            from,
            DispatchTarget::Both,
            &mut self.queues,
            self.index.as_mut(),
            &self.config.message_delay_level_ms,
            now_ms,
        ) {
            Ok(records) => {
                tracing::info!(from, records, "dispatch caught up after a full disk");
                self.dispatch_pending_from = None;
            }
            Err(RecoveryError::Dispatch(e)) if e.is_no_space() => {
                tracing::warn!(from, "dispatch still blocked by a full disk");
            }
            Err(e) => self.fail(format!("re-dispatch failed: {e}")),
        }
    }

    /// Refreshes disk use and the disk-full refusal.
    fn check_disk(&mut self) {
        let space = match self.storage.space() {
            Ok(space) => space,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read disk space");
                return;
            }
        };
        let used = retention::percent(space.used_ratio());
        self.used_percent = Some(used);
        let limit = self.config.retention.disk_space_warning_level_ratio;
        if retention::refuse_writes(&self.config.retention, used) {
            if self.writable.disk_full.is_none() {
                tracing::warn!(used, limit, "disk full: refusing writes");
            }
            self.writable.disk_full = Some(NotWritable::DiskFull {
                used_percent: used,
                limit_percent: limit,
            });
        } else if self.writable.disk_full.is_some()
            && self.dispatch_pending_from.is_none()
            && space.free_bytes >= self.config.segment_size
        {
            tracing::info!(used, limit, "disk space back: accepting writes");
            self.writable.disk_full = None;
        }
    }

    /// Deletes expired (or, on a full disk, the oldest) segments, then moves the consume
    /// queues' and the index's minimum after them.
    fn run_retention(&mut self, now_ms: u64, hour_of_day: u8) -> Result<(), StoreError> {
        let ages = self.segment_ages()?;
        let used = self.used_percent.unwrap_or(0);
        let n =
            retention::segments_to_delete(&self.config.retention, &ages, now_ms, hour_of_day, used);
        if n == 0 {
            return Ok(());
        }
        let mut deleted = 0;
        for _ in 0..n {
            match self.log.delete_oldest(&self.storage)? {
                Some(base) => {
                    deleted += 1;
                    tracing::info!(segment = %segment_name(base), "retention deleted segment");
                }
                None => break,
            }
        }
        let min = self.log.min_offset();
        let min_i64 = i64::try_from(min).unwrap_or(i64::MAX);
        self.queues.set_min_phys(min_i64)?;
        if let Some(index) = &mut self.index {
            index.delete_below(min_i64)?;
        }
        match self.epochs.truncate_prefix_below(&self.storage, min) {
            Ok(_) => {}
            Err(EpochError::Storage(e)) => return Err(e.into()),
            Err(e) => tracing::warn!(error = %e, "epoch file prefix not truncated"),
        }
        if deleted > 0 {
            self.check_disk();
        }
        Ok(())
    }

    /// Ages of the segments entirely behind the write position, oldest first: each one's last
    /// write is taken as the store time of the next segment's first record.
    fn segment_ages(&self) -> Result<Vec<SegmentAge>, StorageError> {
        let size = self.log.segment_size();
        // Never a segment still being flushed: a sync in flight may cover it.
        let max = self.log.max_offset().min(self.flush.flushed());
        let mut ages = Vec::new();
        for base in self.log.segments() {
            if base + size > max {
                break;
            }
            let next_first = self
                .log
                .read(&self.storage, base + size, STORE_TIMESTAMP_PEEK_LEN)?
                .and_then(|head| peek_store_timestamp(&head));
            ages.push(SegmentAge {
                base,
                last_write_ms: next_first,
            });
        }
        Ok(ages)
    }
}

/// How far past the write position the checkpoint's written limit is set: twice what was
/// appended during the last checkpoint interval, at least 4 MiB, at most a segment. Recovery
/// zeroes up to the limit after a crash, so a tight limit keeps restarts quick.
fn written_margin(appended_last_interval: u64, segment_size: u64) -> u64 {
    appended_last_interval
        .saturating_mul(2)
        .clamp(MIN_WRITTEN_MARGIN.min(segment_size), segment_size)
}

/// Smallest written-limit margin.
const MIN_WRITTEN_MARGIN: u64 = 4 * 1024 * 1024;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod controller_tests;

#[cfg(test)]
mod flush_tests;
