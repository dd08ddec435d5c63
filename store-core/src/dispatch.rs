//! Dispatch: what a commit-log record contributes to the consume queues and the index
//! (RocketMQ's `DispatchRequest` and `CommitLogDispatcher`s), computed from the record alone so
//! that recovery re-dispatching a record produces exactly what the live append did.
//!
//! Left out: the consume-queue and index files themselves (`consume_queue`, `index`).

use crate::consume_queue::{ConsumeQueueError, ConsumeQueues, CqAppend, CqUnit};
use crate::format::properties::{self, find_properties};
use crate::format::record::{MessageRecord, StoredAt};
use crate::format::sys_flag::{self, TRANSACTION_PREPARED_TYPE, TRANSACTION_ROLLBACK_TYPE};
use crate::format::tag::java_hash_extend_utf8;
use crate::index::{Index, IndexError, IndexRecord};
use crate::storage::{Storage, StorageError};

/// The delay-level topic, whose consume-queue tag code is the delivery time.
pub const SCHEDULE_TOPIC: &str = "SCHEDULE_TOPIC_XXXX";

/// RocketMQ's default delay levels: `1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h`.
pub const DEFAULT_DELAY_LEVELS_MS: [u64; 18] = [
    1_000, 5_000, 10_000, 30_000, 60_000, 120_000, 180_000, 240_000, 300_000, 360_000, 420_000,
    480_000, 540_000, 600_000, 1_200_000, 1_800_000, 3_600_000, 7_200_000,
];

/// What one record contributes to consume queue and index; borrows from the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DispatchRequest<'a> {
    pub topic: &'a str,
    pub queue_id: i32,
    pub queue_offset: i64,
    pub phys_offset: i64,
    pub size: u32,
    pub tags_code: i64,
    pub store_timestamp: i64,
    pub sys_flag: i32,
    /// The raw `KEYS` property (space-separated keys), if any and UTF-8.
    pub keys: Option<&'a [u8]>,
    /// `UNIQ_KEY`, if any and UTF-8.
    pub uniq_key: Option<&'a [u8]>,
}

/// Why a record could not be dispatched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    #[error("record at {phys_offset}: topic is not UTF-8")]
    BadTopic { phys_offset: i64 },
    #[error("consume queue: {0}")]
    ConsumeQueue(#[from] ConsumeQueueError),
    #[error("index: {0}")]
    Index(#[from] IndexError),
}

impl DispatchError {
    /// The device was full: the record is fine, its dispatch can be retried once space
    /// returns.
    #[must_use]
    pub fn is_no_space(&self) -> bool {
        matches!(
            self,
            DispatchError::ConsumeQueue(ConsumeQueueError::Storage(StorageError::NoSpace { .. }))
                | DispatchError::Index(IndexError::Storage(StorageError::NoSpace { .. }))
        )
    }
}

/// Where a dispatch goes: recovery rebuilds consume queues and index in separate walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchTarget {
    ConsumeQueue,
    Index,
    Both,
}

impl<'a> DispatchRequest<'a> {
    /// Builds the request for `record`, stored with `size` bytes. `delay_levels_ms[l - 1]` is
    /// the delay of level `l` (for [`SCHEDULE_TOPIC`]).
    ///
    /// # Errors
    /// [`DispatchError::BadTopic`] for a topic that is not UTF-8 (never written by us).
    pub fn from_record(
        record: &'a MessageRecord,
        size: u32,
        delay_levels_ms: &[u64],
    ) -> Result<DispatchRequest<'a>, DispatchError> {
        Self::stored_at(record, &record.stored_at(), size, delay_levels_ms)
    }

    /// [`DispatchRequest::from_record`] for `record` stored at `at`, whatever its own
    /// placement fields say (the append path does not copy the caller's record to fill them).
    ///
    /// # Errors
    /// [`DispatchError::BadTopic`] for a topic that is not UTF-8 (never written by us).
    pub fn stored_at(
        record: &'a MessageRecord,
        at: &StoredAt,
        size: u32,
        delay_levels_ms: &[u64],
    ) -> Result<DispatchRequest<'a>, DispatchError> {
        let topic = record.topic_str().ok_or(DispatchError::BadTopic {
            phys_offset: at.physical_offset,
        })?;
        Ok(Self::with_topic(record, topic, at, size, delay_levels_ms))
    }

    /// [`DispatchRequest::stored_at`] for a record whose topic is `topic` (its bytes as
    /// text, which the caller already has: a batch's records share one).
    pub(crate) fn with_topic(
        record: &'a MessageRecord,
        topic: &'a str,
        at: &StoredAt,
        size: u32,
        delay_levels_ms: &[u64],
    ) -> DispatchRequest<'a> {
        debug_assert_eq!(topic.as_bytes(), &record.topic[..]);
        // One pass over the properties for the four keys dispatch reads. Values that are not
        // UTF-8 count as absent; they stay bytes, since most are ASCII and their users (the
        // tag and key hashes) read them as bytes anyway.
        let [tags, delay, keys, uniq_key] = find_properties(
            &record.properties,
            [
                properties::TAGS,
                properties::DELAY,
                properties::KEYS,
                properties::UNIQ_KEY,
            ],
        );
        let tags_code = if topic == SCHEDULE_TOPIC {
            let delay = delay.and_then(|v| core::str::from_utf8(v).ok());
            deliver_timestamp(delay, at.store_timestamp, delay_levels_ms)
        } else {
            // Java's `String.hashCode` of the tag, widened as RocketMQ stores it.
            tags.and_then(|tag| java_hash_extend_utf8(0, tag))
                .map_or(0, i64::from)
        };
        let utf8 = |v: &'a [u8]| (v.is_ascii() || core::str::from_utf8(v).is_ok()).then_some(v);
        DispatchRequest {
            topic,
            queue_id: record.queue_id,
            queue_offset: at.queue_offset,
            phys_offset: at.physical_offset,
            size,
            tags_code,
            store_timestamp: at.store_timestamp,
            sys_flag: record.sys_flag,
            keys: keys.and_then(utf8),
            uniq_key: uniq_key.and_then(utf8),
        }
    }

    /// Whether the record gets a consume-queue unit: not prepared or rolled-back
    /// transaction records.
    #[must_use]
    pub fn goes_to_consume_queue(&self) -> bool {
        let tran = sys_flag::transaction_type(self.sys_flag);
        tran != TRANSACTION_PREPARED_TYPE && tran != TRANSACTION_ROLLBACK_TYPE
    }

    /// Dispatches to `target`. Idempotent: what is already there changes nothing. Returns the
    /// blank consume-queue units written to fill a gap (0 unless units were lost).
    ///
    /// # Errors
    /// [`DispatchError`]; see [`DispatchError::is_no_space`].
    pub fn apply<S: Storage + Clone>(
        &self,
        target: DispatchTarget,
        queues: &mut ConsumeQueues<S>,
        index: Option<&mut Index<S>>,
        now_ms: u64,
    ) -> Result<u64, DispatchError> {
        let mut gaps = 0;
        if target != DispatchTarget::Index {
            gaps = self.write_consume_queue(queues)?;
        }
        if let (Some(index), true) = (index, target != DispatchTarget::ConsumeQueue) {
            index.put(&self.index_record(), now_ms)?;
        }
        Ok(gaps)
    }

    /// The record's consume-queue unit.
    #[must_use]
    pub fn cq_unit(&self) -> CqUnit {
        CqUnit {
            phys_offset: self.phys_offset,
            size: i32::try_from(self.size).unwrap_or(i32::MAX),
            tags_code: self.tags_code,
        }
    }

    /// The index's view of the record.
    #[must_use]
    pub fn index_record(&self) -> IndexRecord<'a> {
        IndexRecord {
            topic: self.topic,
            keys: self.keys,
            uniq_key: self.uniq_key,
            phys_offset: self.phys_offset,
            store_timestamp_ms: self.store_timestamp,
            sys_flag: self.sys_flag,
        }
    }

    /// Writes the consume-queue unit. A unit that conflicts with one already there (a torn or
    /// stale unit from before a crash) is replaced: the queue is cut at that offset first.
    fn write_consume_queue<S: Storage + Clone>(
        &self,
        queues: &mut ConsumeQueues<S>,
    ) -> Result<u64, ConsumeQueueError> {
        if !self.goes_to_consume_queue() {
            return Ok(0);
        }
        let unit = self.cq_unit();
        // Look the queue up without allocating; create it only the first time.
        let cq = match queues.get_mut(self.topic, self.queue_id) {
            Some(cq) => cq,
            None => queues.get_or_create(self.topic, self.queue_id)?,
        };
        let appended = match cq.append(
            self.queue_offset,
            unit.phys_offset,
            unit.size,
            unit.tags_code,
        ) {
            Err(ConsumeQueueError::Conflict { existing, .. }) => {
                tracing::warn!(
                    topic = self.topic,
                    queue_id = self.queue_id,
                    queue_offset = self.queue_offset,
                    ?existing,
                    phys = self.phys_offset,
                    "replacing a stale consume-queue unit"
                );
                cq.truncate_to_offset(self.queue_offset)?;
                cq.append(
                    self.queue_offset,
                    unit.phys_offset,
                    unit.size,
                    unit.tags_code,
                )?
            }
            other => other?,
        };
        Ok(match appended {
            CqAppend::Appended { blanks } => blanks,
            CqAppend::AlreadyPresent => 0,
        })
    }
}

/// RocketMQ's `computeDeliverTimestamp`: store time plus the level's delay, or plus 1 s for an
/// unknown level.
fn deliver_timestamp(delay: Option<&str>, store_timestamp: i64, delay_levels_ms: &[u64]) -> i64 {
    let delay_ms = delay
        .and_then(|d| d.trim().parse::<usize>().ok())
        .and_then(|level| level.checked_sub(1))
        .and_then(|i| delay_levels_ms.get(i).copied())
        .unwrap_or(1000);
    store_timestamp.saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use core::net::SocketAddr;

    fn record(topic: &str, props: &str, sys_flag: i32) -> MessageRecord {
        let host: SocketAddr = "127.0.0.1:10911".parse().unwrap();
        MessageRecord {
            queue_id: 3,
            flag: 0,
            queue_offset: 7,
            physical_offset: 1000,
            sys_flag,
            born_timestamp: 1,
            born_host: host,
            store_timestamp: 5000,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::from_static(b"b"),
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            properties: Bytes::copy_from_slice(props.as_bytes()),
        }
    }

    #[test]
    fn tags_keys_and_uniq_key_are_picked_up() {
        let r = record(
            "T",
            "TAGS\u{1}TagA\u{2}KEYS\u{1}k1  k2\u{2}UNIQ_KEY\u{1}U1\u{2}",
            0,
        );
        let d = DispatchRequest::from_record(&r, 120, &DEFAULT_DELAY_LEVELS_MS).unwrap();
        assert_eq!(d.tags_code, 2_598_919);
        assert_eq!(d.keys, Some(&b"k1  k2"[..]));
        assert_eq!(d.uniq_key, Some(&b"U1"[..]));
        assert_eq!((d.queue_offset, d.phys_offset, d.size), (7, 1000, 120));
        assert!(d.goes_to_consume_queue());
        assert_eq!(d.index_record().store_timestamp_ms, 5000);
    }

    #[test]
    fn values_that_are_not_utf8_count_as_absent() {
        let mut r = record("T", "", 0);
        r.properties =
            Bytes::from_static(b"TAGS\x01T\xff\x02KEYS\x01k\xfe\x02UNIQ_KEY\x01\xc3\x02");
        let d = DispatchRequest::from_record(&r, 1, &[]).unwrap();
        assert_eq!((d.tags_code, d.keys, d.uniq_key), (0, None, None));
        r.properties = Bytes::from("TAGS\u{1}é\u{2}KEYS\u{1}ключ\u{2}".as_bytes());
        let d = DispatchRequest::from_record(&r, 1, &[]).unwrap();
        assert_eq!(d.tags_code, 0xE9);
        assert_eq!(d.keys, Some("ключ".as_bytes()));
    }

    #[test]
    fn transaction_types_decide_what_gets_a_queue_unit() {
        let slot = |flag| {
            DispatchRequest::from_record(&record("T", "", flag), 1, &[])
                .unwrap()
                .goes_to_consume_queue()
        };
        assert!(!slot(TRANSACTION_PREPARED_TYPE));
        assert!(!slot(TRANSACTION_ROLLBACK_TYPE));
        assert!(slot(sys_flag::TRANSACTION_COMMIT_TYPE));
        assert!(slot(0));
    }

    #[test]
    fn schedule_topic_tag_code_is_the_delivery_time() {
        let r = record(SCHEDULE_TOPIC, "DELAY\u{1}3\u{2}", 0);
        let d = DispatchRequest::from_record(&r, 1, &DEFAULT_DELAY_LEVELS_MS).unwrap();
        assert_eq!(d.tags_code, 5000 + 10_000);
        let unknown = record(SCHEDULE_TOPIC, "DELAY\u{1}99\u{2}", 0);
        let d = DispatchRequest::from_record(&unknown, 1, &DEFAULT_DELAY_LEVELS_MS).unwrap();
        assert_eq!(d.tags_code, 6000);
    }

    #[test]
    fn a_topic_that_is_not_utf8_is_refused() {
        let mut r = record("T", "", 0);
        r.topic = Bytes::from_static(&[0xFF, 0xFE]);
        assert_eq!(
            DispatchRequest::from_record(&r, 1, &[]),
            Err(DispatchError::BadTopic { phys_offset: 1000 })
        );
    }
}
