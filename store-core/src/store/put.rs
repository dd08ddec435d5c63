//! The write path: validate, assign queue offsets, place in the commit log, encode, write,
//! dispatch. RocketMQ's `CommitLog.asyncPutMessage(s)` without the lock (the store is a
//! single-owner state machine).
//!
//! Order of effects, so that an error leaves nothing half-done that matters (style S7):
//! everything that can be checked is checked before the first write; a blank marker or a new
//! segment written before a failure lie past the write position, invisible, and are simply
//! redone by the next put; a failed record write or dispatch puts the store in the failed
//! state (style E5), since the media may now hold part of a record.

use crate::dispatch::{DispatchError, DispatchRequest, DispatchTarget};
use crate::flush::FlushDiskType;
use crate::format::properties::{self, find_property, PROPERTY_SEPARATOR};
use crate::format::record::{MessageRecord, StoredAt, MAX_SHORT_FIELD_LEN, MAX_V1_TOPIC_LEN};
use crate::format::sys_flag::{self, TRANSACTION_PREPARED_TYPE, TRANSACTION_ROLLBACK_TYPE};
use crate::status::{AppendInfo, BatchPutResult, NotWritable, PutMessageStatus, PutResult};
use crate::storage::{Storage, StorageError};

use super::MessageStore;

/// Longest topic of any kind (`%RETRY%` and `%DLQ%` topics may pass 127).
const MAX_TOPIC_LEN: usize = 255;

/// A refused or failed put, before anything was appended or after a failure.
pub(super) struct Rejection {
    pub(super) status: PutMessageStatus,
    pub(super) refusal: Option<NotWritable>,
}

impl Rejection {
    fn status(status: PutMessageStatus) -> Rejection {
        Rejection {
            status,
            refusal: None,
        }
    }
}

impl<S: Storage + Clone> MessageStore<S> {
    /// Appends one message. The store fills in queue offset, physical offset and store
    /// timestamp (`now_ms`); every other field is stored as given (the broker has set store
    /// host, sys flag, properties...). See [`PutResult`] for the SYNC_FLUSH wait.
    pub fn put(&mut self, msg: &MessageRecord, now_ms: u64) -> PutResult {
        match self.append(std::slice::from_ref(msg), now_ms) {
            Ok((mut wrote, flush_needed)) => PutResult {
                status: PutMessageStatus::PutOk,
                wrote: wrote.pop(),
                flush_needed,
                refusal: None,
            },
            Err(r) => PutResult {
                status: r.status,
                wrote: None,
                flush_needed: None,
                refusal: r.refusal,
            },
        }
    }

    /// Appends several messages as one write into one segment, all or nothing (RocketMQ's
    /// `putMessages` for SEND_BATCH_MESSAGE). Each gets its own consecutive queue offset.
    pub fn put_batch(&mut self, msgs: &[MessageRecord], now_ms: u64) -> BatchPutResult {
        if msgs.is_empty() {
            return BatchPutResult {
                status: PutMessageStatus::MessageIllegal,
                wrote: Vec::new(),
                flush_needed: None,
                refusal: None,
            };
        }
        match self.append(msgs, now_ms) {
            Ok((wrote, flush_needed)) => BatchPutResult {
                status: PutMessageStatus::PutOk,
                wrote,
                flush_needed,
                refusal: None,
            },
            Err(r) => BatchPutResult {
                status: r.status,
                wrote: Vec::new(),
                flush_needed: None,
                refusal: r.refusal,
            },
        }
    }

    fn append(
        &mut self,
        msgs: &[MessageRecord],
        now_ms: u64,
    ) -> Result<(Vec<AppendInfo>, Option<u64>), Rejection> {
        if let Some(reason) = self.not_writable() {
            return Err(Rejection {
                status: PutMessageStatus::ServiceNotAvailable,
                refusal: Some(reason),
            });
        }
        // The first record's topic as text, checked once and reused below (a single put
        // would otherwise convert it three times).
        let mut first_topic = "";
        for (i, msg) in msgs.iter().enumerate() {
            let topic = self.check_message(msg).map_err(Rejection::status)?;
            if i == 0 {
                first_topic = topic;
            }
        }
        // `wrote` doubles as the placement of each record: the caller's records are encoded
        // and dispatched as they are, with queue offset, physical offset and store time taken
        // from here, so nothing is copied per message.
        let mut wrote = self.assign_queue_offsets(msgs, first_topic, now_ms)?;
        let total: u64 = wrote.iter().map(|w| u64::from(w.wrote_bytes)).sum();
        let placement = self
            .log
            .plan_append(total)
            .ok_or(Rejection::status(PutMessageStatus::MessageIllegal))?;
        let end = placement.offset + total;
        self.raise_written_limit(end)?;
        self.prepare_segment(placement.offset, placement.blank)?;
        self.encode_buf.clear();
        let mut at = placement.offset;
        for (msg, info) in msgs.iter().zip(&mut wrote) {
            info.phys_offset = at;
            let stored_at = stored_at(info);
            if needs_separator(&msg.properties) {
                with_separator(msg).encode_at_into(&stored_at, &mut self.encode_buf);
            } else {
                msg.encode_at_into(&stored_at, &mut self.encode_buf);
            }
            at += u64::from(info.wrote_bytes);
        }
        assert_eq!(self.encode_buf.len() as u64, total);
        if let Err(e) = self
            .log
            .write(&self.storage, placement.offset, &self.encode_buf)
        {
            return Err(self.write_failed("commit-log write", &e));
        }
        self.log.advance_to(end);
        self.last_store_timestamp = now_ms;
        if !self.dispatch_run(msgs, first_topic, &wrote, now_ms)? {
            for (i, (msg, info)) in msgs.iter().zip(&wrote).enumerate() {
                if self.dispatch_pending_from.is_some() {
                    // As in `dispatch_at`: the retry will bring the rest.
                    break;
                }
                let at = stored_at(info);
                let levels = &self.config.message_delay_level_ms;
                let req = match i {
                    0 => Ok(DispatchRequest::with_topic(
                        msg,
                        first_topic,
                        &at,
                        info.wrote_bytes,
                        levels,
                    )),
                    _ => DispatchRequest::stored_at(msg, &at, info.wrote_bytes, levels),
                };
                self.apply_dispatch(req, at.physical_offset, now_ms)?;
            }
        }
        self.note_preallocation();
        let sync_flush = self.config.flush.flush_disk_type == FlushDiskType::SyncFlush;
        if sync_flush {
            // WAIT=false sends are not held, but group commit still flushes them at once.
            self.flush.require(end);
        }
        let flush_needed = (sync_flush && msgs.iter().any(wait_store_msg_ok)).then_some(end);
        Ok((wrote, flush_needed))
    }

    /// The size and shape limits of §8 step 11. Returns the topic as text.
    fn check_message<'m>(&self, msg: &'m MessageRecord) -> Result<&'m str, PutMessageStatus> {
        let topic = msg.topic_str().ok_or(PutMessageStatus::MessageIllegal)?;
        let retry_or_dlq = topic.starts_with("%RETRY%") || topic.starts_with("%DLQ%");
        if topic.is_empty()
            || topic.contains('\0')
            || topic.len() > MAX_TOPIC_LEN
            || (topic.len() > MAX_V1_TOPIC_LEN && !retry_or_dlq)
        {
            return Err(PutMessageStatus::MessageIllegal);
        }
        if msg.body.len() > self.config.max_message_size as usize || msg.queue_id < 0 {
            return Err(PutMessageStatus::MessageIllegal);
        }
        let stored_len = msg.properties.len() + usize::from(needs_separator(&msg.properties));
        if stored_len > MAX_SHORT_FIELD_LEN {
            return Err(PutMessageStatus::PropertiesSizeExceeded);
        }
        msg.check_encodable()
            .map_err(|_| PutMessageStatus::MessageIllegal)?;
        Ok(topic)
    }

    /// Where each message goes, but for its physical offset (set once the log has placed
    /// them): queue offset, stored length (with the final property separator, see
    /// [`needs_separator`]) and store time. Prepared and rolled-back transaction records get
    /// queue offset 0 and no consume-queue slot. `first_topic` is the first record's topic.
    fn assign_queue_offsets(
        &mut self,
        msgs: &[MessageRecord],
        first_topic: &str,
        now_ms: u64,
    ) -> Result<Vec<AppendInfo>, Rejection> {
        // Next queue offset per (topic, queue) for batches; a single message needs no map.
        let mut next: Vec<((&[u8], i32), i64)> = Vec::new();
        let mut out = Vec::with_capacity(msgs.len());
        for (i, msg) in msgs.iter().enumerate() {
            let tran = sys_flag::transaction_type(msg.sys_flag);
            let queue_offset =
                if tran == TRANSACTION_PREPARED_TYPE || tran == TRANSACTION_ROLLBACK_TYPE {
                    0
                } else {
                    let key = (&msg.topic[..], msg.queue_id);
                    match next.iter_mut().find(|(k, _)| *k == key) {
                        Some((_, offset)) => {
                            *offset += 1;
                            *offset
                        }
                        None => {
                            let topic = match i {
                                0 => first_topic,
                                _ => msg.topic_str().unwrap_or_default(),
                            };
                            // Opening a queue creates no file; a name unfit for a directory fails.
                            let cq = match self.queues.get(topic, msg.queue_id) {
                                Some(cq) => cq,
                                None => self.queues.get_or_create(topic, msg.queue_id).map_err(
                                    |_| Rejection::status(PutMessageStatus::MessageIllegal),
                                )?,
                            };
                            let first = cq.max_offset();
                            if msgs.len() > 1 {
                                next.push((key, first));
                            }
                            first
                        }
                    }
                };
            let len = msg.encoded_len() + usize::from(needs_separator(&msg.properties));
            out.push(AppendInfo {
                phys_offset: 0,
                queue_offset: u64::try_from(queue_offset).unwrap_or(0),
                // check_message bounded the record to an i32 TOTALSIZE.
                wrote_bytes: u32::try_from(len).unwrap_or(u32::MAX),
                store_host: msg.store_host,
                store_timestamp: now_ms,
            });
        }
        Ok(out)
    }

    /// Before the first write past the checkpoint's written limit, raises the limit and
    /// stores the checkpoint: recovery relies on nothing past it ever having been written.
    pub(super) fn raise_written_limit(&mut self, end: u64) -> Result<(), Rejection> {
        if end <= self.checkpoint.written_limit {
            return Ok(());
        }
        // A generous step: this path syncs the checkpoint inline, and the timer normally
        // raises the limit ahead of the appends anyway.
        let step =
            (self.config.segment_size / 8).max(super::written_margin(0, self.config.segment_size));
        self.checkpoint.written_limit = end + step;
        self.checkpoint
            .store(&self.storage)
            .map_err(|e| self.write_failed("checkpoint write", &e))
    }

    /// Writes the blank marker ending the current segment if the placement needs one, and
    /// makes sure the target segment exists.
    pub(super) fn prepare_segment(
        &mut self,
        offset: u64,
        blank: Option<(u64, u32)>,
    ) -> Result<(), Rejection> {
        if let Some((at, covered)) = blank {
            if let Err(e) = self.log.write_blank(&self.storage, at, covered) {
                return Err(self.write_failed("blank marker write", &e));
            }
        }
        let base = self.log.segment_base(offset);
        match self.log.ensure_segment(&self.storage, base) {
            Ok(()) => Ok(()),
            Err(StorageError::NoSpace { name }) => {
                let reason = NotWritable::NoSpace {
                    detail: format!("{name} does not fit"),
                };
                tracing::warn!(%reason, "refusing writes until space returns");
                self.writable.disk_full = Some(reason.clone());
                Err(Rejection {
                    status: PutMessageStatus::ServiceNotAvailable,
                    refusal: Some(reason),
                })
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot create commit-log segment");
                Err(Rejection::status(PutMessageStatus::CreateMappedFileFailed))
            }
        }
    }

    /// Feeds one appended record to its consume queue and the index. A full disk does not
    /// fail the put (the record is stored): dispatch is parked, writes are refused, and
    /// `handle_timeout` retries once space returns.
    pub(super) fn dispatch(
        &mut self,
        rec: &MessageRecord,
        size: u32,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        self.dispatch_at(rec, &rec.stored_at(), size, now_ms)
    }

    /// [`Self::dispatch`] for `rec` stored at `at`.
    fn dispatch_at(
        &mut self,
        rec: &MessageRecord,
        at: &StoredAt,
        size: u32,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        if self.dispatch_pending_from.is_some() {
            // Records must reach their queues in order; the retry will bring this one too.
            return Ok(());
        }
        let req = DispatchRequest::stored_at(rec, at, size, &self.config.message_delay_level_ms);
        self.apply_dispatch(req, at.physical_offset, now_ms)
    }

    /// Applies `req`, the request of the record at `phys_offset`, to consume queue and index.
    fn apply_dispatch(
        &mut self,
        req: Result<DispatchRequest<'_>, DispatchError>,
        phys_offset: i64,
        now_ms: u64,
    ) -> Result<(), Rejection> {
        let dispatched = req.and_then(|req| {
            req.apply(
                DispatchTarget::Both,
                &mut self.queues,
                self.index.as_mut(),
                now_ms,
            )
        });
        self.dispatched(dispatched.map(|_| ()), phys_offset)
    }

    /// Acts on the outcome of dispatching the record at `phys_offset`.
    fn dispatched(
        &mut self,
        outcome: Result<(), DispatchError>,
        phys_offset: i64,
    ) -> Result<(), Rejection> {
        match outcome {
            Ok(()) => Ok(()),
            Err(e) if e.is_no_space() => {
                let reason = NotWritable::NoSpace {
                    detail: format!("dispatch of offset {phys_offset} blocked: {e}"),
                };
                tracing::warn!(%reason, "refusing writes until space returns");
                self.dispatch_pending_from = u64::try_from(phys_offset).ok();
                self.writable.disk_full = Some(reason);
                Ok(())
            }
            Err(e) => {
                self.fail(format!("dispatch failed: {e}"));
                Err(Rejection::status(PutMessageStatus::UnknownError))
            }
        }
    }

    /// Dispatches a batch bound for one queue, back to back at its end, with one
    /// consume-queue write for all its units, then indexes each record. Returns false,
    /// having done nothing, for anything else (one message, mixed queues, transaction
    /// records, a queue not at the run's start): the caller dispatches record by record.
    /// The outcome is what record-by-record dispatch gives; on a failure, the retry from
    /// the run's first record finds the units written so far already present.
    fn dispatch_run(
        &mut self,
        msgs: &[MessageRecord],
        topic: &str,
        wrote: &[AppendInfo],
        now_ms: u64,
    ) -> Result<bool, Rejection> {
        let (Some(first), Some(first_info)) = (msgs.first(), wrote.first()) else {
            return Ok(false);
        };
        if msgs.len() < 2 || self.dispatch_pending_from.is_some() {
            return Ok(false);
        }
        let mut requests = Vec::with_capacity(msgs.len());
        for (msg, info) in msgs.iter().zip(wrote) {
            let next = first_info.queue_offset + requests.len() as u64;
            if msg.topic != first.topic
                || msg.queue_id != first.queue_id
                || info.queue_offset != next
            {
                return Ok(false);
            }
            let levels = &self.config.message_delay_level_ms;
            let at = stored_at(info);
            let req = DispatchRequest::with_topic(msg, topic, &at, info.wrote_bytes, levels);
            if !req.goes_to_consume_queue() {
                return Ok(false);
            }
            requests.push(req);
        }
        let units: Vec<_> = requests.iter().map(DispatchRequest::cq_unit).collect();
        let start = i64::try_from(first_info.queue_offset).unwrap_or(i64::MAX);
        let Some(cq) = self.queues.get_mut(topic, first.queue_id) else {
            return Ok(false);
        };
        match cq.append_run(start, &units) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => {
                let phys = i64::try_from(first_info.phys_offset).unwrap_or(i64::MAX);
                return self.dispatched(Err(e.into()), phys).map(|()| true);
            }
        }
        let Some(index) = self.index.as_mut() else {
            return Ok(true);
        };
        let records: Vec<_> = requests.iter().map(DispatchRequest::index_record).collect();
        if let Err(e) = index.put_all(&records, now_ms) {
            // The retry starts at the record the index took last (it may lack some keys) or,
            // if it took none of these, at the run's first: records below the index's end
            // offset are in, and the retry skips them.
            let end = index.end_phy_offset();
            let phys = requests
                .iter()
                .map(|req| req.phys_offset)
                .find(|&phys| phys >= end)
                .unwrap_or(end);
            return self.dispatched(Err(e.into()), phys).map(|()| true);
        }
        Ok(true)
    }

    /// Once the segment being written passes the threshold, asks for the next one.
    pub(super) fn note_preallocation(&mut self) {
        let size = self.log.segment_size();
        let max = self.log.max_offset();
        let next = self.log.segment_base(max) + size;
        let filled = max % size;
        let due = filled * 100 >= size * u64::from(self.config.preallocate_at_percent);
        if due
            && self.preallocate_asked.is_none_or(|asked| asked < next)
            && !self.log.has_segment(next)
        {
            self.preallocate_asked = Some(next);
            self.preallocate = Some(next);
        }
    }

    pub(super) fn write_failed(&mut self, what: &str, e: &StorageError) -> Rejection {
        self.fail(format!("{what} failed: {e}"));
        Rejection::status(PutMessageStatus::UnknownError)
    }
}

/// The placement `info` describes.
fn stored_at(info: &AppendInfo) -> StoredAt {
    StoredAt {
        queue_offset: i64::try_from(info.queue_offset).unwrap_or(i64::MAX),
        physical_offset: i64::try_from(info.phys_offset).unwrap_or(i64::MAX),
        store_timestamp: i64::try_from(info.store_timestamp).unwrap_or(i64::MAX),
    }
}

/// `msg` with its properties ending in the pair separator. Stored properties always do, as
/// Java's `messageProperties2String` writes them: recovery relies on it to spot a record torn
/// inside its properties (see `recovery::fields_whole`).
fn with_separator(msg: &MessageRecord) -> MessageRecord {
    let mut props = Vec::with_capacity(msg.properties.len() + 1);
    props.extend_from_slice(&msg.properties);
    props.push(PROPERTY_SEPARATOR as u8);
    MessageRecord {
        properties: props.into(),
        ..msg.clone()
    }
}

/// Whether non-empty properties lack their final pair separator.
fn needs_separator(properties: &[u8]) -> bool {
    properties
        .last()
        .is_some_and(|&b| b != PROPERTY_SEPARATOR as u8)
}

/// RocketMQ's `isWaitStoreMsgOK`: true unless the `WAIT` property says `false`.
fn wait_store_msg_ok(msg: &MessageRecord) -> bool {
    find_property(&msg.properties, properties::WAIT) != Some(b"false")
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::consume_queue::ConsumeQueueConfig;
    use crate::storage::MemStorage;
    use crate::store::StoreConfig;

    fn msg(i: usize, queue_id: i32) -> MessageRecord {
        let props = format!(
            "TAGS\u{1}t{}\u{2}KEYS\u{1}k{i} x{i}\u{2}UNIQ_KEY\u{1}U{i}\u{2}",
            i % 3
        );
        crate::store::tests::msg("B", queue_id, format!("body {i}").as_bytes(), &props)
    }

    fn store(disk: &MemStorage) -> MessageStore<MemStorage> {
        let cfg = StoreConfig {
            // Small files, so the batch below spans two consume-queue files.
            consume_queue: ConsumeQueueConfig { units_per_file: 16 },
            ..StoreConfig::compact(1 << 20)
        };
        MessageStore::open(disk.clone(), cfg, 1_000).unwrap().0
    }

    /// Every file under `dir` (one level), with its bytes.
    fn files(disk: &MemStorage, dir: &str) -> Vec<(String, Bytes)> {
        let mut out = Vec::new();
        for name in disk.list(dir).unwrap() {
            let path = format!("{dir}/{name}");
            let len = disk.len(&path).unwrap().unwrap();
            out.push((path.clone(), disk.read_at(&path, 0, len).unwrap()));
        }
        out
    }

    #[test]
    fn a_batch_dispatches_exactly_what_one_put_per_record_does() {
        let (one_by_one, batched) = (MemStorage::new(), MemStorage::new());
        let (mut a, mut b) = (store(&one_by_one), store(&batched));
        // A record first, so the run starts mid-file and crosses into the next file.
        assert!(a.put(&msg(100, 0), 5).status.is_stored());
        assert!(b.put(&msg(100, 0), 5).status.is_stored());
        let batch: Vec<MessageRecord> = (0..20).map(|i| msg(i, 0)).collect();
        for m in &batch {
            assert!(a.put(m, 7).status.is_stored());
        }
        // Records of one batch, and of the single puts, differ only in physical layout of
        // the commit log (one write instead of twenty), which dispatch does not see.
        let put = b.put_batch(&batch, 7);
        assert!(put.status.is_stored());
        assert_eq!(b.max_offset_in_queue("B", 0), 21);
        for dir in ["consumequeue/B/0", "index"] {
            assert_eq!(files(&one_by_one, dir), files(&batched, dir), "{dir}");
        }
        let found = b.query_by_key("B", "x7", 10, 0, u64::MAX).records.len();
        assert_eq!(found, 1);
    }

    #[test]
    fn a_batch_over_several_queues_dispatches_record_by_record() {
        let (one_by_one, batched) = (MemStorage::new(), MemStorage::new());
        let (mut a, mut b) = (store(&one_by_one), store(&batched));
        let batch: Vec<MessageRecord> = (0..6).map(|i| msg(i, (i % 2) as i32)).collect();
        for m in &batch {
            assert!(a.put(m, 7).status.is_stored());
        }
        assert!(b.put_batch(&batch, 7).status.is_stored());
        for dir in ["consumequeue/B/0", "consumequeue/B/1", "index"] {
            assert_eq!(files(&one_by_one, dir), files(&batched, dir), "{dir}");
        }
    }
}
