//! A slave's write path: the master's commit-log bytes, appended at the offsets the master
//! stored them at (RocketMQ's `appendToCommitLog` on the HA client side, followed by the reput
//! service's dispatch, here done in the same call).
//!
//! The master's bytes arrive cut anywhere (its batch size knows nothing of records); the store
//! keeps the partial tail and cuts whole slots: message records, and blank markers that end a
//! segment (the filler after a blank is skipped). Every slot of a batch is checked (length,
//! magic, body CRC, stored physical offset) before any of it is written (style S7). After the writes each record is dispatched to its consume
//! queue and the index exactly as a put would, so the slave's queues match the master's.
//!
//! Left out: truncating a slave that holds more than its master (`MessageStore::truncate_to`,
//! in `truncate.rs`), and the slave's own flush policy (the ordinary `poll_flush` applies).

use bytes::Bytes;

use crate::flush::FlushDiskType;
use crate::format::record::{self, CrcCheck, MessageRecord, SlotKind, BLANK_RECORD_LEN};
use crate::status::NotWritable;
use crate::storage::Storage;

use super::MessageStore;

/// What [`MessageStore::append_replicated`] stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaAppend {
    /// Message records appended (blank markers not counted).
    pub records: u64,
    /// The commit log's new write position: what the slave reports to its master.
    pub end: u64,
}

/// Why replicated bytes were not appended. Nothing was written unless the variant says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicaError {
    /// The store takes no writes (failed I/O, full disk, shut down).
    #[error("store not writable: {0}")]
    NotWritable(NotWritable),
    /// The bytes do not continue the log: the slave must report its offset again.
    #[error("replicated bytes start at {got}, the commit log ends at {expected}")]
    OffsetMismatch { expected: u64, got: u64 },
    /// A slot is not a valid record or blank marker at its place.
    #[error("invalid replicated slot at {offset}: {reason}")]
    InvalidSlot { offset: u64, reason: String },
    /// Writing failed part way; the store now refuses writes until reopened (style E5).
    #[error("replicated write failed: {0}")]
    WriteFailed(String),
}

/// One checked slot of the replicated bytes.
enum ReplicaSlot {
    /// A record at commit-log offset `at`, `len` bytes starting at `from` in the input.
    Record {
        at: u64,
        from: usize,
        len: u32,
        rec: Box<MessageRecord>,
    },
    /// A blank marker at `at` covering the `covered` bytes left in its segment.
    Blank { at: u64, covered: u32 },
}

/// The slave's position in the master's byte stream: bytes received but not yet appended
/// (a record cut by the master's batch size) wait here.
#[derive(Debug, Default)]
pub(super) struct ReplicaStream {
    /// Offset of the next byte expected from the master; `None` until the first bytes after
    /// open or [`MessageStore::replica_restart`] (then it is the commit log's write position).
    next: Option<u64>,
    /// Commit-log offset of `pending[0]`; never below the write position once trimmed.
    pending_start: u64,
    pending: Vec<u8>,
}

impl<S: Storage + Clone> MessageStore<S> {
    /// Puts the store in slave mode (puts refused with `NotWritable::SlaveMode`, replicated
    /// bytes taken) or back in master mode. The broker's role may change at runtime.
    pub fn set_slave(&mut self, slave: bool) {
        self.writable.slave = slave;
    }

    /// Whether the store is in slave mode.
    #[must_use]
    pub fn is_slave(&self) -> bool {
        self.writable.slave
    }

    /// Forgets any partial bytes of the master's stream (a new connection to a master): the
    /// next [`MessageStore::append_replicated`] must start at the returned offset, the commit
    /// log's write position, which is what the slave reports.
    pub fn replica_restart(&mut self) -> u64 {
        self.replica = ReplicaStream::default();
        self.log.max_offset()
    }

    /// Takes `data`, the master's commit-log bytes from `offset`, cut anywhere (RocketMQ's
    /// `appendToCommitLog`): every whole record is checked, written at its offset and
    /// dispatched; a record cut short waits for the rest; a blank marker ends its segment and
    /// the filler after it is skipped. A store with no segment yet may start at any segment
    /// boundary, so a slave can join a master whose oldest segments are gone.
    ///
    /// # Errors
    /// [`ReplicaError`]. Any error also forgets the partial bytes, as
    /// [`MessageStore::replica_restart`] does: the slave reconnects and reports `end` again.
    /// Only `WriteFailed` leaves anything written (and the store failed).
    pub fn append_replicated(
        &mut self,
        offset: u64,
        data: &[u8],
        now_ms: u64,
    ) -> Result<ReplicaAppend, ReplicaError> {
        let result = self.take_replicated(offset, data, now_ms);
        if result.is_err() {
            self.replica = ReplicaStream::default();
        }
        result
    }

    fn take_replicated(
        &mut self,
        offset: u64,
        data: &[u8],
        now_ms: u64,
    ) -> Result<ReplicaAppend, ReplicaError> {
        if let Some(reason) = self.not_writable() {
            if reason != NotWritable::SlaveMode {
                return Err(ReplicaError::NotWritable(reason));
            }
        }
        let size = self.log.segment_size();
        let expected = self.replica.next.unwrap_or(self.log.max_offset());
        // The offset comes from the master's frame: one whose bytes would run past the end of
        // the offset space cannot continue any log.
        let Some(end) = u64::try_from(data.len())
            .ok()
            .and_then(|len| offset.checked_add(len))
        else {
            return Err(ReplicaError::OffsetMismatch {
                expected,
                got: offset,
            });
        };
        if offset != expected {
            let fresh = self.log.segments().len() == 0
                && self.log.max_offset() == 0
                && self.replica.next.is_none();
            if !(fresh && offset.is_multiple_of(size)) {
                return Err(ReplicaError::OffsetMismatch {
                    expected,
                    got: offset,
                });
            }
            tracing::info!(offset, "empty slave store starts its copy mid-log");
            self.log.start_at(offset);
        }
        let mut stream = std::mem::take(&mut self.replica);
        if stream.next.is_none() {
            stream.pending_start = offset;
        }
        stream.pending.extend_from_slice(data);
        stream.next = Some(end);
        let mut records = 0;
        loop {
            self.trim_below_write_position(&mut stream);
            let whole = whole_slots(&stream.pending, stream.pending_start)?;
            if whole == 0 {
                break;
            }
            let slots = self.check_slots(stream.pending_start, &stream.pending[..whole])?;
            records += self.append_slots(&slots, &stream.pending[..whole], now_ms)?;
            stream.pending.drain(..whole);
            stream.pending_start += whole as u64;
        }
        if stream.pending.len() as u64 > size {
            return Err(ReplicaError::InvalidSlot {
                offset: stream.pending_start,
                reason: "more than a segment of bytes without a whole record".into(),
            });
        }
        self.replica = stream;
        Ok(ReplicaAppend {
            records,
            end: self.log.max_offset(),
        })
    }

    /// Drops pending bytes that lie below the write position: the filler after a blank marker.
    fn trim_below_write_position(&self, stream: &mut ReplicaStream) {
        let max = self.log.max_offset();
        if stream.pending_start < max {
            let skip = (max - stream.pending_start).min(stream.pending.len() as u64);
            // `skip` is at most `pending.len()`, a usize.
            stream.pending.drain(..usize::try_from(skip).unwrap_or(0));
            stream.pending_start += skip;
        }
    }

    /// Writes checked slots, then dispatches their records. Returns the records appended.
    fn append_slots(
        &mut self,
        slots: &[ReplicaSlot],
        data: &[u8],
        now_ms: u64,
    ) -> Result<u64, ReplicaError> {
        let Some(end) = slots.last().map(ReplicaSlot::end) else {
            return Ok(0);
        };
        self.raise_written_limit(end).map_err(written)?;
        let mut records = 0;
        for slot in slots {
            match slot {
                ReplicaSlot::Record { at, from, len, .. } => {
                    self.prepare_segment(*at, None).map_err(written)?;
                    let bytes = data.get(*from..*from + *len as usize).unwrap_or_default();
                    if let Err(e) = self.log.write(&self.storage, *at, bytes) {
                        return Err(written(self.write_failed("replicated write", &e)));
                    }
                    self.log.advance_to(at + u64::from(*len));
                    records += 1;
                }
                ReplicaSlot::Blank { at, covered } => {
                    if let Err(e) = self.log.write_blank(&self.storage, *at, *covered) {
                        return Err(written(self.write_failed("replicated blank", &e)));
                    }
                    self.log.advance_to(at + u64::from(*covered));
                }
            }
        }
        for slot in slots {
            if let ReplicaSlot::Record { len, rec, .. } = slot {
                self.dispatch(rec, *len, now_ms).map_err(written)?;
                self.last_store_timestamp = u64::try_from(rec.store_timestamp).unwrap_or(0);
            }
        }
        self.note_preallocation();
        if self.config.flush.flush_disk_type == FlushDiskType::SyncFlush {
            self.flush.require(end);
        }
        Ok(records)
    }

    /// Splits `data` into slots and checks each one against the place it goes to.
    fn check_slots(&self, offset: u64, data: &[u8]) -> Result<Vec<ReplicaSlot>, ReplicaError> {
        let size = self.log.segment_size();
        let mut slots = Vec::new();
        let mut at = offset;
        let mut from = 0usize;
        while from < data.len() {
            let invalid = |reason: String| ReplicaError::InvalidSlot { offset: at, reason };
            let rest = data.get(from..).unwrap_or_default();
            let peek = record::peek(rest).ok_or_else(|| invalid("partial slot header".into()))?;
            let remaining = size - at % size;
            match peek.kind() {
                SlotKind::Blank => {
                    if u64::try_from(peek.total_size).ok() != Some(remaining) {
                        return Err(invalid(format!(
                            "blank covers {} bytes, its segment has {remaining} left",
                            peek.total_size
                        )));
                    }
                    let covered = u32::try_from(remaining).map_err(|_| invalid("size".into()))?;
                    slots.push(ReplicaSlot::Blank { at, covered });
                    at += remaining;
                    from += BLANK_RECORD_LEN;
                }
                SlotKind::Message(_) => {
                    let len = usize::try_from(peek.total_size)
                        .ok()
                        .filter(|&len| len >= BLANK_RECORD_LEN && len <= rest.len())
                        .ok_or_else(|| invalid(format!("record of {} bytes", peek.total_size)))?;
                    if len as u64 + BLANK_RECORD_LEN as u64 > remaining {
                        return Err(invalid(format!(
                            "record of {len} bytes overruns its segment"
                        )));
                    }
                    let bytes = Bytes::copy_from_slice(rest.get(..len).unwrap_or_default());
                    let (rec, _) = record::decode_with(&bytes, CrcCheck::Verify)
                        .map_err(|e| invalid(e.to_string()))?;
                    if u64::try_from(rec.physical_offset).ok() != Some(at) {
                        return Err(invalid(format!(
                            "record says physical offset {}",
                            rec.physical_offset
                        )));
                    }
                    // `len` is at most a segment, and segments fit i32.
                    let len32 = u32::try_from(len).map_err(|_| invalid("size".into()))?;
                    slots.push(ReplicaSlot::Record {
                        at,
                        from,
                        len: len32,
                        rec: Box::new(rec),
                    });
                    at += len as u64;
                    from += len;
                }
                SlotKind::Empty | SlotKind::Corrupt => {
                    return Err(invalid(format!("magic {:#x}", peek.magic)));
                }
            }
        }
        Ok(slots)
    }
}

impl ReplicaSlot {
    /// One past the slot's last byte in the commit log.
    fn end(&self) -> u64 {
        match self {
            ReplicaSlot::Record { at, len, .. } => at + u64::from(*len),
            ReplicaSlot::Blank { at, covered } => at + u64::from(*covered),
        }
    }
}

/// How many leading bytes of `pending` (starting at commit-log offset `at`) form whole slots,
/// up to and including a blank marker. Only the slot headers are read here; `check_slots`
/// validates the records themselves.
fn whole_slots(pending: &[u8], mut at: u64) -> Result<usize, ReplicaError> {
    let mut from = 0usize;
    while let Some(peek) = pending.get(from..).and_then(record::peek) {
        let len = match peek.kind() {
            // The filler after a blank follows in the stream: stop, the caller skips it.
            SlotKind::Blank => return Ok(from + BLANK_RECORD_LEN),
            SlotKind::Message(_) => match usize::try_from(peek.total_size) {
                Ok(len) if len >= BLANK_RECORD_LEN => {
                    if from + len > pending.len() {
                        break;
                    }
                    at += len as u64;
                    len
                }
                _ => {
                    return Err(ReplicaError::InvalidSlot {
                        offset: at,
                        reason: format!("record of {} bytes", peek.total_size),
                    })
                }
            },
            SlotKind::Empty | SlotKind::Corrupt => {
                return Err(ReplicaError::InvalidSlot {
                    offset: at,
                    reason: format!("magic {:#x}", peek.magic),
                })
            }
        };
        from += len;
    }
    Ok(from)
}

/// A put-path rejection met while appending replicated bytes.
fn written(r: super::put::Rejection) -> ReplicaError {
    match r.refusal {
        Some(reason) => ReplicaError::NotWritable(reason),
        None => ReplicaError::WriteFailed(r.status.name().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use core::net::SocketAddr;

    use bytes::Bytes;

    use super::*;
    use crate::commit_log::segment_name;
    use crate::status::PutMessageStatus;
    use crate::storage::MemStorage;
    use crate::store::{AcceptAll, StoreConfig};

    const SEGMENT: u64 = 4096;

    fn config() -> StoreConfig {
        StoreConfig {
            consume_queue: crate::consume_queue::ConsumeQueueConfig { units_per_file: 16 },
            ..StoreConfig::compact(SEGMENT)
        }
    }

    fn open(disk: &MemStorage) -> MessageStore<MemStorage> {
        MessageStore::open(disk.clone(), config(), 1_000).unwrap().0
    }

    fn msg(topic: &str, queue_id: i32, body_len: usize, keys: &str) -> MessageRecord {
        let host: SocketAddr = "10.0.0.1:10911".parse().unwrap();
        MessageRecord {
            queue_id,
            flag: 0,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp: 1,
            born_host: "192.168.0.9:5555".parse().unwrap(),
            store_timestamp: 0,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::from(vec![b'x'; body_len]),
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            properties: Bytes::from(format!("KEYS\u{1}{keys}\u{2}TAGS\u{1}t{queue_id}\u{2}")),
        }
    }

    /// A master with `n` messages over two topics and three queues, crossing several segments.
    fn master_with(n: usize) -> MessageStore<MemStorage> {
        let mut master = open(&MemStorage::new());
        for i in 0..n {
            let topic = if i % 3 == 0 { "TopicB" } else { "TopicA" };
            let m = msg(topic, (i % 3) as i32, 40 + (i * 37) % 300, &format!("k{i}"));
            assert_eq!(
                master.put(&m, 2_000 + i as u64).status,
                PutMessageStatus::PutOk
            );
        }
        master
    }

    /// Streams the master's log from `from` to `slave` in chunks cut at the sizes `cuts`
    /// yields, as the HA transfer does (blank filler included).
    fn stream(
        master: &MessageStore<MemStorage>,
        slave: &mut MessageStore<MemStorage>,
        from: u64,
        mut cuts: impl FnMut() -> usize,
    ) -> ReplicaAppend {
        let mut at = from;
        let mut last = None;
        while let Some(data) = master.commit_log_data(at) {
            let n = cuts().clamp(1, data.len());
            last = Some(slave.append_replicated(at, &data[..n], 3_000).unwrap());
            at += n as u64;
        }
        last.unwrap()
    }

    /// Deterministic chunk sizes from 1 byte to a few records.
    fn cuts(seed: u64) -> impl FnMut() -> usize {
        let mut x = seed;
        move || {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            1 + (x >> 33) as usize % 900
        }
    }

    fn assert_same_log(master: &MessageStore<MemStorage>, slave: &MessageStore<MemStorage>) {
        assert_eq!(
            slave.commit_log_max_offset(),
            master.commit_log_max_offset()
        );
        let mut base = slave.commit_log_min_offset();
        while base < master.commit_log_max_offset() {
            let name = segment_name(base);
            let len = (master.commit_log_max_offset() - base).min(SEGMENT);
            let ours = slave.storage().read_at(&name, 0, len).unwrap();
            let theirs = master.storage().read_at(&name, 0, len).unwrap();
            assert!(ours == theirs, "segment {name} differs");
            base += SEGMENT;
        }
    }

    fn assert_same_queues(master: &MessageStore<MemStorage>, slave: &MessageStore<MemStorage>) {
        assert_eq!(slave.queues(), master.queues());
        for (topic, queue_id, min, _) in master.queues() {
            let theirs = master.get_messages(&topic, queue_id, min, 1000, u64::MAX, &AcceptAll);
            let ours = slave.get_messages(&topic, queue_id, min, 1000, u64::MAX, &AcceptAll);
            assert_eq!(ours.records, theirs.records, "{topic}/{queue_id}");
            assert_eq!(
                ours.queue_offsets, theirs.queue_offsets,
                "{topic}/{queue_id}"
            );
        }
    }

    #[test]
    fn a_slave_fed_the_masters_bytes_cut_anywhere_holds_the_same_log_and_queues() {
        let master = master_with(120);
        assert!(
            master.commit_log_max_offset() > 3 * SEGMENT,
            "crosses segments"
        );
        for seed in 1..4 {
            let mut slave = open(&MemStorage::new());
            slave.set_slave(true);
            let done = stream(&master, &mut slave, 0, cuts(seed));
            assert_eq!(done.end, master.commit_log_max_offset());
            assert_same_log(&master, &slave);
            assert_same_queues(&master, &slave);
            // The index was fed too: a key lookup finds the record on the slave.
            let found = slave.query_by_key("TopicA", "k7", 10, 0, u64::MAX);
            assert_eq!(found.records.len(), 1);
        }
    }

    #[test]
    fn a_slave_refuses_puts_until_it_becomes_master() {
        let mut slave = open(&MemStorage::new());
        slave.set_slave(true);
        let put = slave.put(&msg("T", 0, 10, "k"), 1_000);
        assert_eq!(put.status, PutMessageStatus::ServiceNotAvailable);
        assert_eq!(put.refusal, Some(NotWritable::SlaveMode));
        slave.set_slave(false);
        assert_eq!(
            slave.put(&msg("T", 0, 10, "k"), 1_000).status,
            PutMessageStatus::PutOk
        );
    }

    #[test]
    fn bytes_that_do_not_continue_the_log_are_refused_and_the_partial_tail_forgotten() {
        let master = master_with(30);
        let mut slave = open(&MemStorage::new());
        slave.set_slave(true);
        let data = master.commit_log_data(0).unwrap();
        // Half of the first record: kept pending, nothing appended yet.
        let first_len = record::peek(&data).unwrap().total_size as usize;
        let half = first_len / 2;
        let r = slave.append_replicated(0, &data[..half], 1).unwrap();
        assert_eq!((r.records, r.end), (0, 0));
        // A frame that skips ahead is refused.
        let err = slave.append_replicated(half as u64 + 5, &data[half + 5..], 1);
        assert_eq!(
            err,
            Err(ReplicaError::OffsetMismatch {
                expected: half as u64,
                got: half as u64 + 5
            })
        );
        // The error dropped the half record: the master restarts from what the slave reports.
        assert_eq!(slave.replica_restart(), 0);
        let r = slave.append_replicated(0, &data[..first_len], 1).unwrap();
        assert_eq!((r.records, r.end), (1, first_len as u64));
    }

    #[test]
    fn a_corrupt_record_is_refused_without_writing_anything() {
        let master = master_with(30);
        let mut slave = open(&MemStorage::new());
        slave.set_slave(true);
        let mut data = master.commit_log_data(0).unwrap().to_vec();
        let first_len = record::peek(&data).unwrap().total_size as usize;
        let second_len = record::peek(&data[first_len..]).unwrap().total_size as usize;
        // Flip a body byte of the second record: its CRC no longer matches.
        data[first_len + 110] ^= 0xff;
        let err = slave.append_replicated(0, &data[..first_len + second_len], 1);
        let at = first_len as u64;
        assert!(
            matches!(err, Err(ReplicaError::InvalidSlot { offset, .. }) if offset == at),
            "{err:?}"
        );
        assert_eq!(slave.commit_log_max_offset(), 0);
        assert!(slave.queues().is_empty());
    }

    #[test]
    fn an_offset_whose_bytes_would_pass_the_end_of_the_offset_space_is_refused() {
        let mut slave = open(&MemStorage::new());
        slave.set_slave(true);
        // A segment boundary, so a fresh slave would otherwise start its copy there.
        let last_boundary = u64::MAX - u64::MAX % SEGMENT;
        let err = slave.append_replicated(last_boundary, &[0u8; SEGMENT as usize], 1);
        assert!(
            matches!(err, Err(ReplicaError::OffsetMismatch { got, .. }) if got == last_boundary),
            "{err:?}"
        );
        assert_eq!(slave.commit_log_max_offset(), 0);
    }

    #[test]
    fn an_empty_slave_may_start_at_a_later_segment_boundary() {
        let master = master_with(120);
        let mut slave = open(&MemStorage::new());
        slave.set_slave(true);
        // Not a boundary: refused.
        assert!(slave.append_replicated(SEGMENT + 8, b"", 1).is_err());
        stream(&master, &mut slave, 2 * SEGMENT, cuts(9));
        assert_eq!(slave.commit_log_min_offset(), 2 * SEGMENT);
        assert_same_log(&master, &slave);
        // Queues start where the copy starts; the newest message reads the same on both.
        let (topic, queue_id, _, max) = master.queues()[0].clone();
        let theirs = master.get_messages(&topic, queue_id, max - 1, 1, u64::MAX, &AcceptAll);
        let ours = slave.get_messages(&topic, queue_id, max - 1, 1, u64::MAX, &AcceptAll);
        assert_eq!(ours.records, theirs.records);
    }

    #[test]
    fn a_slave_recovers_its_copy_after_a_crash_and_continues_from_its_end() {
        let master = master_with(120);
        let disk = MemStorage::new();
        let mut slave = open(&disk);
        slave.set_slave(true);
        // Copy a part, sync it as the flush would, then crash mid-record.
        let mut at = 0;
        while at < 2 * SEGMENT + 100 {
            let data = master.commit_log_data(at).unwrap();
            let n = data.len().min(333);
            slave.append_replicated(at, &data[..n], 1).unwrap();
            at += n as u64;
        }
        slave.flush_all().unwrap();
        let copied = slave.commit_log_max_offset();
        drop(slave);
        disk.crash(None);
        let mut slave = open(&disk);
        slave.set_slave(true);
        let from = slave.replica_restart();
        assert_eq!(from, copied);
        stream(&master, &mut slave, from, cuts(4));
        assert_same_log(&master, &slave);
        assert_same_queues(&master, &slave);
    }
}
