//! The read side: `get_messages` with RocketMQ's `DefaultMessageStore.getMessage` rules (status
//! per offset case, batch limits, tag filtering, `nextBeginOffset`), queue bounds, lookups by
//! time, by commit-log offset and by key.
//!
//! Records come back as [`Bytes`] straight from `Storage::read_at`: zero-copy views of the
//! mapped segments under the mmap storage.
//!
//! Left out: slave-specific offset corrections (`offsetCheckInSlave`; the store behaves as a
//! master), cold-data flow control and statistics.

use bytes::Bytes;

use crate::commit_log::{peek_store_timestamp, STORE_TIMESTAMP_PEEK_LEN};
use crate::consume_queue::{ConsumeQueue, CqUnit, TimestampBoundary, CQ_UNIT_SIZE};
use crate::format::record::{self, SlotKind, BLANK_RECORD_LEN};
use crate::status::{BoundaryType, GetMessageStatus, GetResult};
use crate::storage::Storage;

use super::{MessageFilter, MessageStore, MAX_PULL_MSG_SIZE};

/// Result of [`MessageStore::query_by_key`] (RocketMQ's `QueryMessageResult`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryResult {
    /// Matching records, newest first as the index chains them. Hash collisions are already
    /// filtered out: each record's topic and key match.
    pub records: Vec<Bytes>,
    /// Store time of the newest indexed record.
    pub index_last_update_timestamp: u64,
    /// Commit-log offset the index has covered.
    pub index_last_update_phy_offset: u64,
}

impl<S: Storage + Clone> MessageStore<S> {
    /// Reads up to `max_count` messages (and about `max_bytes`) of `topic`/`queue_id` from
    /// queue offset `offset`, keeping those `filter` accepts.
    pub fn get_messages<F: MessageFilter + ?Sized>(
        &self,
        topic: &str,
        queue_id: i32,
        offset: u64,
        max_count: u32,
        max_bytes: u64,
        filter: &F,
    ) -> GetResult {
        let mut result = GetResult {
            status: GetMessageStatus::NoMessageInQueue,
            records: Vec::new(),
            queue_offsets: Vec::new(),
            next_begin_offset: offset,
            min_offset: 0,
            max_offset: 0,
            suggest_pulling_from_slave: false,
        };
        let Some(cq) = self.queues.get(topic, queue_id) else {
            result.status = GetMessageStatus::NoMatchedLogicQueue;
            result.next_begin_offset = 0;
            return result;
        };
        let (min, max) = (to_u64(cq.min_offset()), to_u64(cq.max_offset()));
        // Below `max` when reads stop at the confirm offset (see `confirm`).
        let visible = self.visible_end(cq);
        result.min_offset = min;
        result.max_offset = visible;
        let (status, next) = if max == 0 {
            (GetMessageStatus::NoMessageInQueue, 0)
        } else if offset < min {
            (GetMessageStatus::OffsetTooSmall, min)
        } else if offset >= visible && offset <= max {
            // At the end, or at stored messages not yet confirmed: wait for more.
            (GetMessageStatus::OffsetOverflowOne, offset)
        } else if offset > max {
            (GetMessageStatus::OffsetOverflowBadly, visible)
        } else {
            return self.read_queue(cq, result, visible, max_count, max_bytes, filter);
        };
        result.status = status;
        result.next_begin_offset = next;
        result
    }

    /// The consume-queue walk of `get_messages`, for an offset inside `[min, end)`.
    fn read_queue<F: MessageFilter + ?Sized>(
        &self,
        cq: &ConsumeQueue<S>,
        mut result: GetResult,
        end: u64,
        max_count: u32,
        max_bytes: u64,
        filter: &F,
    ) -> GetResult {
        let offset = result.next_begin_offset;
        let max_offset_py = self.log.max_offset();
        let window = self.config.in_memory_window();
        let max_filter = self
            .config
            .max_filter_message_size
            .max(u64::from(max_count) * CQ_UNIT_SIZE);
        let max_pull = max_bytes.clamp(100, MAX_PULL_MSG_SIZE);
        let max_units = (max_filter / CQ_UNIT_SIZE).min(end.saturating_sub(offset));
        let units = match cq.read_range(to_i64(offset), max_units) {
            Ok(units) if !units.is_empty() => units,
            _ => {
                result.status = GetMessageStatus::OffsetFoundNull;
                result.next_begin_offset = self.next_cq_file_start(offset);
                return result;
            }
        };
        result.status = GetMessageStatus::NoMatchedMessage;
        let mut total: u64 = 0;
        let mut max_phys_pulling = 0;
        // After a unit pointing at deleted data, skip units until the next live segment.
        let mut skip_below: Option<u64> = None;
        for (queue_offset, unit) in (offset..).zip(units) {
            let phys = to_u64(unit.phys_offset);
            let size = u64::try_from(unit.size).unwrap_or(0);
            let in_memory = max_offset_py.saturating_sub(phys) <= window;
            let count = result.records.len() as u64;
            if self.batch_full(size, count, total, max_count, max_pull, in_memory)
                || total >= max_pull
            {
                break;
            }
            max_phys_pulling = phys;
            result.next_begin_offset = queue_offset + 1;
            if unit.is_blank() || skip_below.is_some_and(|s| phys < s) {
                continue;
            }
            if !filter.is_matched_by_consume_queue(unit.tags_code) {
                if total == 0 {
                    result.status = GetMessageStatus::NoMatchedMessage;
                }
                continue;
            }
            let record = match self.log.read(&self.storage, phys, size) {
                Ok(Some(record)) => record,
                _ => {
                    if total == 0 {
                        result.status = GetMessageStatus::MessageWasRemoving;
                    }
                    skip_below = Some(self.log.segment_base(phys) + self.log.segment_size());
                    continue;
                }
            };
            if !filter.is_matched_by_commit_log(&record) {
                if total == 0 {
                    result.status = GetMessageStatus::NoMatchedMessage;
                }
                continue;
            }
            total += size;
            result.records.push(record);
            result.queue_offsets.push(queue_offset);
            result.status = GetMessageStatus::Found;
            skip_below = None;
        }
        result.suggest_pulling_from_slave = max_offset_py.saturating_sub(max_phys_pulling) > window;
        result
    }

    /// RocketMQ's `isTheBatchFull`: the first message is always taken; then count, total
    /// size, and the in-memory or on-disk transfer limits.
    fn batch_full(
        &self,
        size: u64,
        count: u64,
        total: u64,
        max_count: u32,
        max_pull: u64,
        in_memory: bool,
    ) -> bool {
        if total == 0 || count == 0 {
            return false;
        }
        if count + 1 > u64::from(max_count) || total + size > max_pull {
            return true;
        }
        let (max_bytes, max_msgs) = if in_memory {
            (
                self.config.max_transfer_bytes_in_memory,
                self.config.max_transfer_count_in_memory,
            )
        } else {
            (
                self.config.max_transfer_bytes_on_disk,
                self.config.max_transfer_count_on_disk,
            )
        };
        total + size > max_bytes || count > u64::from(max_msgs).saturating_sub(1)
    }

    /// First queue offset of the consume-queue file after the one holding `offset`
    /// (RocketMQ's `rollNextFile`).
    fn next_cq_file_start(&self, offset: u64) -> u64 {
        let per_file = self.config.consume_queue.units_per_file;
        offset - offset % per_file + per_file
    }

    /// Smallest readable queue offset of `topic`/`queue_id` (0 if the queue does not exist).
    pub fn min_offset_in_queue(&self, topic: &str, queue_id: i32) -> u64 {
        self.queues
            .get(topic, queue_id)
            .map_or(0, |cq| to_u64(cq.min_offset()))
    }

    /// One past the newest queue offset of `topic`/`queue_id` (0 if the queue does not exist)
    /// that reads return: below the confirm offset when reads are limited to it.
    pub fn max_offset_in_queue(&self, topic: &str, queue_id: i32) -> u64 {
        self.queues
            .get(topic, queue_id)
            .map_or(0, |cq| self.visible_end(cq))
    }

    /// Every queue: `(topic, queue_id, min_offset, max_offset)`, by topic then queue id; the
    /// max offset as [`MessageStore::max_offset_in_queue`] reports it.
    pub fn queues(&self) -> Vec<(String, i32, u64, u64)> {
        self.queues
            .iter()
            .map(|cq| {
                (
                    cq.topic().to_string(),
                    cq.queue_id(),
                    to_u64(cq.min_offset()),
                    self.visible_end(cq),
                )
            })
            .collect()
    }

    /// The queue offset nearest `timestamp_ms` (RocketMQ's `getOffsetInQueueByTime`): with
    /// [`BoundaryType::Lower`] the first message stored at or after it (the max offset if
    /// none), with `Upper` the last stored at or before it.
    pub fn offset_by_timestamp(
        &self,
        topic: &str,
        queue_id: i32,
        timestamp_ms: u64,
        boundary: BoundaryType,
    ) -> u64 {
        let Some(cq) = self.queues.get(topic, queue_id) else {
            return 0;
        };
        let boundary = match boundary {
            BoundaryType::Lower => TimestampBoundary::Lower,
            BoundaryType::Upper => TimestampBoundary::Upper,
        };
        cq.offset_by_timestamp(to_i64(timestamp_ms), boundary, |_, unit| {
            self.unit_store_time(unit).map(to_i64)
        })
        .map_or(0, to_u64)
        // Never past what reads show (the confirm offset's limit).
        .min(self.visible_end(cq))
    }

    /// Store time of the oldest record in the commit log (`getEarliestMessageTime`).
    pub fn earliest_store_time(&self) -> Option<u64> {
        let min = self.log.min_offset();
        let head = self
            .log
            .read(&self.storage, min, STORE_TIMESTAMP_PEEK_LEN)
            .ok()
            .flatten()?;
        peek_store_timestamp(&head)
    }

    /// Store time of the oldest readable message of a queue.
    pub fn earliest_store_time_in_queue(&self, topic: &str, queue_id: i32) -> Option<u64> {
        let min = self.queues.get(topic, queue_id)?.min_offset();
        self.store_time_at(topic, queue_id, to_u64(min))
    }

    /// Store time of the message at `queue_offset` (`getMessageStoreTimeStamp`).
    pub fn store_time_at(&self, topic: &str, queue_id: i32, queue_offset: u64) -> Option<u64> {
        let unit = self
            .queues
            .get(topic, queue_id)?
            .get(to_i64(queue_offset))
            .ok()
            .flatten()?;
        self.unit_store_time(unit)
    }

    fn unit_store_time(&self, unit: CqUnit) -> Option<u64> {
        if unit.is_blank() {
            return None;
        }
        let head = self
            .log
            .read(
                &self.storage,
                to_u64(unit.phys_offset),
                STORE_TIMESTAMP_PEEK_LEN,
            )
            .ok()
            .flatten()?;
        peek_store_timestamp(&head)
    }

    /// The record stored at commit-log offset `phys` (VIEW_MESSAGE_BY_ID), if one starts there.
    pub fn lookup_by_offset(&self, phys: u64) -> Option<Bytes> {
        let head = self
            .log
            .read(&self.storage, phys, BLANK_RECORD_LEN as u64)
            .ok()
            .flatten()?;
        let peek = record::peek(&head)?;
        if !matches!(peek.kind(), SlotKind::Message(_)) {
            return None;
        }
        let size = u64::try_from(peek.total_size).ok()?;
        self.log.read(&self.storage, phys, size).ok().flatten()
    }

    /// Raw commit-log bytes from `offset` to the end of its segment or of the written data,
    /// whichever is first (`getCommitLogData`, for replication).
    pub fn commit_log_data(&self, offset: u64) -> Option<Bytes> {
        let segment_end = self.log.segment_base(offset) + self.log.segment_size();
        let end = segment_end.min(self.log.max_offset());
        if offset >= end {
            return None;
        }
        self.log
            .read(&self.storage, offset, end - offset)
            .ok()
            .flatten()
    }

    /// Messages of `topic` whose `KEYS` contain `key`, or whose `UNIQ_KEY` is `key`, stored
    /// between `begin_ms` and `end_ms`, at most `max_num` (QUERY_MESSAGE).
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin_ms: u64,
        end_ms: u64,
    ) -> QueryResult {
        let Some(index) = &self.index else {
            return QueryResult::default();
        };
        // Candidates: a storage error reading the index reads as "nothing found".
        let begin = i64::try_from(begin_ms).unwrap_or(i64::MAX);
        let end = i64::try_from(end_ms).unwrap_or(i64::MAX);
        let lookup = index
            .lookup(topic, key, max_num, begin, end)
            .unwrap_or_default();
        let mut out = QueryResult {
            index_last_update_timestamp: to_u64(lookup.last_update_timestamp),
            index_last_update_phy_offset: to_u64(lookup.last_update_phy_offset),
            records: Vec::new(),
        };
        for phys in lookup.phys_offsets {
            if out.records.len() >= max_num {
                break;
            }
            let Some(record) = self.lookup_by_offset(to_u64(phys)) else {
                continue;
            };
            if record_matches_key(&record, topic, key) {
                out.records.push(record);
            }
        }
        out
    }
}

/// Whether a stored record belongs to `topic` and carries `key` (in KEYS or as UNIQ_KEY): the
/// index stores hashes, and entries may outlive a truncation.
fn record_matches_key(record: &Bytes, topic: &str, key: &str) -> bool {
    let Ok((rec, _)) = record::decode_with(record, record::CrcCheck::Skip) else {
        return false;
    };
    if rec.topic_str() != Some(topic) {
        return false;
    }
    let props = &rec.properties;
    let is = |value: &[u8]| value == key.as_bytes();
    let uniq = crate::format::properties::find_property(props, crate::format::properties::UNIQ_KEY)
        .is_some_and(is);
    let keys = crate::format::properties::find_property(props, crate::format::properties::KEYS)
        .is_some_and(|keys| keys.split(|&b| b == b' ').any(is));
    uniq || keys
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
