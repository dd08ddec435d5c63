//! Transactional messages (Java `TransactionalMessageServiceImpl`, `TransactionalMessageBridge`,
//! `EndTransactionProcessor`, `TransactionalMessageCheckService`).
//!
//! The life of a transaction:
//! 1. A send with `TRAN_MSG=true` is stored as a *half message* in `RMQ_SYS_TRANS_HALF_TOPIC`
//!    queue 0, its real topic and queue kept in `REAL_TOPIC` / `REAL_QID` and its sys flag's
//!    transaction bits cleared (Java `parseHalfMessageInner`). No consumer subscribes there.
//! 2. END_TRANSACTION (`end.rs`) commits it (the real message is stored in its topic, sys flag
//!    COMMIT, `preparedTransactionOffset` = the half's commit-log offset) or rolls it back;
//!    either way an op record (tag `d`, body = half queue offsets) goes to
//!    `RMQ_SYS_TRANS_OP_HALF_TOPIC` queue 0. A commit writes the real message and its op record
//!    as one batch, so they sit side by side in the commit log.
//! 3. Every `transactionCheckInterval` (`check.rs`), halves older than `transactionTimeOut`
//!    (or their `CHECK_IMMUNITY_TIME_IN_SECONDS`) are re-appended with
//!    `TRANSACTION_CHECK_TIMES` counted up and CHECK_TRANSACTION_STATE goes, oneway, to a live
//!    connection of the producer group; after `transactionCheckMax` checks the half is moved
//!    to `TRANS_CHECK_MAX_TIME_TOPIC` and ended with an op record.
//! 4. At start (`check.rs`, `recover_transactions`) the pending set is read back from the half
//!    and op queues from the progress offsets of group `CID_RMQ_SYS_TRANS`.
//!
//! Unlike Java, a transaction ends once: an END_TRANSACTION for a transaction that is no longer
//! pending (already committed, rolled back or discarded, through any of its copies) is answered
//! SUCCESS and changes nothing, so a duplicate commit never stores the message twice.
//!
//! What it leaves out: the op batching of `TransactionalOpBatchService`, `needSkip` (halves
//! older than the file reserved time), transaction metrics, slave-acting-master escape, and
//! the immunity put-back of halves that carry `CHECK_IMMUNITY_TIME_IN_SECONDS` (they simply
//! wait out their immunity).

mod check;
mod end;
pub mod table;

#[cfg(test)]
mod tests;

use bytes::Bytes;

use store_core::format::properties::{self, Properties};
use store_core::format::record::{decode_with, CrcCheck, MessageRecord};
use store_core::format::sys_flag::{with_transaction_type, TRANSACTION_NOT_TYPE};
use store_core::status::PutResult;
use store_core::storage::Storage;

use super::topic_config::{RMQ_SYS_TRANS_HALF_TOPIC, RMQ_SYS_TRANS_OP_HALF_TOPIC};
use super::Broker;
use table::{HalfCopy, Pending};

pub(super) use check::ProposedProgress;
pub(super) use table::TransactionTable;

/// The system consumer group whose offsets on the half and op topics are the check progress
/// (Java `MixAll.CID_SYS_RMQ_TRANS`).
pub const CID_SYS_RMQ_TRANS: &str = "CID_RMQ_SYS_TRANS";
/// Tag of op records (Java `TransactionalMessageUtil.REMOVE_TAG`).
pub const REMOVE_TAG: &str = "d";
/// Separator after each half offset in an op record body.
pub const OFFSET_SEPARATOR: char = ',';

/// Whether a send is a half message: `TRAN_MSG` is true, except for the retries of clients
/// before 4.6.1, which sent them with the flag still set and a delay level.
pub(super) fn is_prepared(props: &Properties, reconsume_times: i32) -> bool {
    let flagged = props
        .get(properties::TRAN_MSG)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let delayed = props
        .get(properties::DELAY)
        .and_then(|v| v.parse::<i32>().ok())
        .is_some_and(|level| level > 0);
    flagged && !(reconsume_times > 0 && delayed)
}

/// Turns a message bound for its real topic and queue into the half message stored instead
/// (Java `parseHalfMessageInner`); returns the properties it wrote.
fn into_half(record: &mut MessageRecord) -> Properties {
    let mut props = Properties::parse_bytes(&record.properties);
    if let Some(uniq) = props
        .get(properties::UNIQ_KEY)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
    {
        props.insert(properties::TRANSACTION_ID, uniq);
    }
    let real_topic = String::from_utf8_lossy(&record.topic).into_owned();
    props.insert(properties::REAL_TOPIC, real_topic);
    props.insert(properties::REAL_QID, record.queue_id.to_string());
    record.properties = Bytes::from(props.encode().into_bytes());
    record.sys_flag = with_transaction_type(record.sys_flag, TRANSACTION_NOT_TYPE);
    record.topic = Bytes::from_static(RMQ_SYS_TRANS_HALF_TOPIC.as_bytes());
    record.queue_id = 0;
    props
}

/// The queue offset of the transaction's first half: `TRAN_PREPARED_QUEUE_OFFSET` on a copy,
/// the half's own offset otherwise.
fn origin_of(props: &Properties, queue_offset: u64) -> u64 {
    props
        .get(properties::TRAN_PREPARED_QUEUE_OFFSET)
        .and_then(|v| v.parse::<u64>().ok())
        .filter(|&origin| origin <= queue_offset)
        .unwrap_or(queue_offset)
}

/// The wait before the first check: `CHECK_IMMUNITY_TIME_IN_SECONDS`, never less than the
/// transaction timeout (Java `TransactionalMessageUtil.getImmunityTime`).
fn immunity_ms(props: &Properties, timeout_ms: u64) -> u64 {
    props
        .get(properties::CHECK_IMMUNITY_TIME_IN_SECONDS)
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(timeout_ms, |s| s.saturating_mul(1000).max(timeout_ms))
}

/// A stored half message, decoded.
struct Half {
    record: MessageRecord,
    props: Properties,
    copy: HalfCopy,
    origin: u64,
}

impl Half {
    /// Decodes a stored record; `None` unless it is a half message.
    fn decode(bytes: &Bytes) -> Option<Half> {
        let (record, _) = decode_with(bytes, CrcCheck::Skip).ok()?;
        if record.topic_str() != Some(RMQ_SYS_TRANS_HALF_TOPIC) {
            return None;
        }
        let props = Properties::parse_bytes(&record.properties);
        let copy = HalfCopy {
            queue_offset: u64::try_from(record.queue_offset).ok()?,
            commit_log_offset: u64::try_from(record.physical_offset).ok()?,
        };
        let origin = origin_of(&props, copy.queue_offset);
        Some(Half {
            record,
            props,
            copy,
            origin,
        })
    }

    fn check_times(&self) -> Option<u32> {
        self.props
            .get(properties::TRANSACTION_CHECK_TIMES)
            .and_then(|v| v.parse().ok())
    }

    /// The table entry this half starts.
    fn pending(&self, timeout_ms: u64) -> Pending {
        Pending {
            copies: vec![self.copy],
            check_times: self.check_times(),
            born_timestamp_ms: self.record.born_timestamp,
            immunity_ms: immunity_ms(&self.props, timeout_ms),
            producer_group: self
                .props
                .get(properties::PGROUP)
                .unwrap_or_default()
                .to_string(),
        }
    }

    fn real_topic(&self) -> Option<&str> {
        self.props.get(properties::REAL_TOPIC)
    }

    fn real_queue_id(&self) -> Option<i32> {
        self.props
            .get(properties::REAL_QID)
            .and_then(|v| v.parse().ok())
    }
}

impl<S: Storage + Clone> Broker<S> {
    /// Stores `record` (built for its real topic and queue) as a half message and starts
    /// tracking it. The put result's queue offset is the half queue's, which the producer
    /// sends back as `tranStateTableOffset`.
    pub(super) fn put_half(&mut self, mut record: MessageRecord, now_ms: u64) -> PutResult {
        let props = into_half(&mut record);
        let put = self.store.put(&record, now_ms);
        if let Some(wrote) = put.wrote.as_ref().filter(|_| put.status.is_stored()) {
            let copy = HalfCopy {
                queue_offset: wrote.queue_offset,
                commit_log_offset: wrote.phys_offset,
            };
            let half = Half {
                origin: copy.queue_offset,
                record,
                props,
                copy,
            };
            let pending = half.pending(self.config.transaction_timeout_ms);
            self.transactions.note_half(half.origin, pending);
        }
        put
    }

    /// The half message stored at `commit_log_offset`, if that is one.
    fn half_at(&self, commit_log_offset: u64) -> Option<Half> {
        let bytes = self.store.lookup_by_offset(commit_log_offset)?;
        Half::decode(&bytes)
    }

    /// An op record ending the transaction whose known copies `body` lists (Java
    /// `makeOpMessageInner`: tag `d`, born and stored by this broker).
    fn op_record(&mut self, body: String, now_ms: u64) -> MessageRecord {
        let mut props = Properties::new();
        props.insert(properties::TAGS, REMOVE_TAG);
        props.insert(properties::WAIT, "false");
        let uniq = self
            .uniq_keys
            .next(i64::try_from(now_ms).unwrap_or(i64::MAX));
        props.insert(properties::UNIQ_KEY, uniq);
        let host = self.config.store_host();
        MessageRecord {
            queue_id: 0,
            flag: 0,
            queue_offset: 0,
            physical_offset: 0,
            sys_flag: 0,
            born_timestamp: i64::try_from(now_ms).unwrap_or(i64::MAX),
            born_host: host,
            store_timestamp: 0,
            store_host: host,
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: Bytes::from(body.into_bytes()),
            topic: Bytes::from_static(RMQ_SYS_TRANS_OP_HALF_TOPIC.as_bytes()),
            properties: Bytes::from(props.encode().into_bytes()),
        }
    }
}

/// The half queue offsets an op record body lists; junk entries are skipped (Java logs them).
fn parse_op_body(body: &[u8]) -> Vec<u64> {
    String::from_utf8_lossy(body)
        .split(OFFSET_SEPARATOR)
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}
