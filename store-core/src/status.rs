//! What the store answers: RocketMQ's put and get statuses (`PutMessageStatus`,
//! `GetMessageStatus`, same names and order) and the result structs that carry them.
//!
//! Expected outcomes are statuses, not errors (style E2): a full disk is
//! `PutMessageStatus::ServiceNotAvailable` with a [`NotWritable`] reason, an empty queue is
//! `GetMessageStatus::NoMessageInQueue`. Mapping statuses to wire response codes is the broker's
//! business and is left out here.

use bytes::Bytes;
use core::net::SocketAddr;

use crate::format::msg_id::encode_offset_msg_id;

/// Outcome of a put, as RocketMQ's `PutMessageStatus` (same variants, same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PutMessageStatus {
    /// Appended. Under SYNC_FLUSH the reply still waits for `flush_needed` (see [`PutResult`]).
    PutOk,
    /// Appended, but the sync flush did not finish in time; the message is stored.
    FlushDiskTimeout,
    /// Appended, but the slave did not confirm in time; the message is stored.
    FlushSlaveTimeout,
    /// Appended, but no healthy slave is attached; the message is stored.
    SlaveNotAvailable,
    /// Not appended: the store does not take writes now; [`PutResult::refusal`] says why.
    ServiceNotAvailable,
    /// Not appended: the next commit-log segment could not be created.
    CreateMappedFileFailed,
    /// Not appended: the message breaks a limit (size, topic length, empty body).
    MessageIllegal,
    /// Not appended: the properties string is over 32767 bytes.
    PropertiesSizeExceeded,
    /// Not appended: the commit-log lock was held too long (never produced by this store,
    /// which has no lock; kept so the broker can map every Java status).
    OsPageCacheBusy,
    /// Not appended for a reason no other status names.
    UnknownError,
    /// Appended, but too few in-sync replicas confirmed.
    InSyncReplicasNotEnough,
    /// Not appended: forwarding to a remote broker failed.
    PutToRemoteBrokerFail,
    /// Not appended: too many light message queues.
    LmqConsumeQueueNumExceeded,
    /// Not appended: the timer wheel is flow controlled.
    WheelTimerFlowControl,
    /// Not appended: the timer message is illegal.
    WheelTimerMsgIllegal,
    /// Not appended: the timer wheel is disabled.
    WheelTimerNotEnable,
}

impl PutMessageStatus {
    /// The Java enum constant's name, as brokers print it in remarks and logs.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::PutOk => "PUT_OK",
            Self::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
            Self::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
            Self::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
            Self::ServiceNotAvailable => "SERVICE_NOT_AVAILABLE",
            Self::CreateMappedFileFailed => "CREATE_MAPPED_FILE_FAILED",
            Self::MessageIllegal => "MESSAGE_ILLEGAL",
            Self::PropertiesSizeExceeded => "PROPERTIES_SIZE_EXCEEDED",
            Self::OsPageCacheBusy => "OS_PAGE_CACHE_BUSY",
            Self::UnknownError => "UNKNOWN_ERROR",
            Self::InSyncReplicasNotEnough => "IN_SYNC_REPLICAS_NOT_ENOUGH",
            Self::PutToRemoteBrokerFail => "PUT_TO_REMOTE_BROKER_FAIL",
            Self::LmqConsumeQueueNumExceeded => "LMQ_CONSUME_QUEUE_NUM_EXCEEDED",
            Self::WheelTimerFlowControl => "WHEEL_TIMER_FLOW_CONTROL",
            Self::WheelTimerMsgIllegal => "WHEEL_TIMER_MSG_ILLEGAL",
            Self::WheelTimerNotEnable => "WHEEL_TIMER_NOT_ENABLE",
        }
    }

    /// Whether the message is in the commit log (RocketMQ's `PutMessageResult.isOk` plus the
    /// statuses that still count as stored).
    #[must_use]
    pub fn is_stored(self) -> bool {
        matches!(
            self,
            Self::PutOk
                | Self::FlushDiskTimeout
                | Self::FlushSlaveTimeout
                | Self::SlaveNotAvailable
                | Self::InSyncReplicasNotEnough
        )
    }
}

/// Why the store refuses writes (the reason behind `ServiceNotAvailable`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotWritable {
    /// Disk use is above `diskSpaceWarningLevelRatio`; writes resume once it falls back.
    #[error(
        "disk is {used_percent}% full, above the {limit_percent}% limit (diskSpaceWarningLevelRatio)"
    )]
    DiskFull {
        used_percent: u32,
        limit_percent: u32,
    },
    /// The device reported no space while creating a segment; writes resume once a
    /// segment fits again.
    #[error("no space left for a new commit-log segment: {detail}")]
    NoSpace { detail: String },
    /// A write or sync failed earlier; the store takes no writes until it is reopened.
    #[error("an earlier write or sync failed ({detail}); restart the store")]
    PreviousIo { detail: String },
    /// `shutdown` was called.
    #[error("the store is shut down")]
    ShutDown,
    /// The store belongs to a slave (`brokerRole=SLAVE`): it takes only the master's
    /// replicated bytes (`MessageStore::append_replicated`), never puts.
    #[error("message store is slave mode, so putMessage is forbidden")]
    SlaveMode,
}

/// Where one appended record went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Commit-log offset of the record's first byte.
    pub phys_offset: u64,
    /// Offset in its consume queue (0 for prepared and rollback transaction records).
    pub queue_offset: u64,
    /// TOTALSIZE of the record.
    pub wrote_bytes: u32,
    /// The record's store host, which with `phys_offset` makes the offset message id.
    pub store_host: SocketAddr,
    /// Store timestamp written into the record (the `now_ms` of the put).
    pub store_timestamp: u64,
}

impl AppendInfo {
    /// Offset message id: store host + `phys_offset` as 32 (IPv4) or 56 (IPv6) uppercase hex
    /// digits (§7.7). Computed on demand: the hex text costs more than the rest of an append.
    #[must_use]
    pub fn msg_id(&self) -> String {
        encode_offset_msg_id(
            self.store_host,
            i64::try_from(self.phys_offset).unwrap_or(i64::MAX),
        )
    }
}

/// Result of [`crate::store::MessageStore::put`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct PutResult {
    pub status: PutMessageStatus,
    /// Set when the record was appended.
    pub wrote: Option<AppendInfo>,
    /// Under SYNC_FLUSH: the commit-log offset that must be durable (`flushed_offset() >=`
    /// it) before the put may be acknowledged. `None` when nothing needs waiting for.
    pub flush_needed: Option<u64>,
    /// Why the store refused, for `ServiceNotAvailable`.
    pub refusal: Option<NotWritable>,
}

/// Result of [`crate::store::MessageStore::put_batch`]: one status for the whole batch, which
/// is appended entirely or not at all.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct BatchPutResult {
    pub status: PutMessageStatus,
    /// One entry per message, in order, when the batch was appended.
    pub wrote: Vec<AppendInfo>,
    /// As [`PutResult::flush_needed`], covering the whole batch.
    pub flush_needed: Option<u64>,
    pub refusal: Option<NotWritable>,
}

/// Outcome of a read, as RocketMQ's `GetMessageStatus` (same variants, same order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GetMessageStatus {
    /// At least one message is returned.
    Found,
    /// Entries were examined but the filter matched none.
    NoMatchedMessage,
    /// The commit-log data the queue points at has been deleted by retention.
    MessageWasRemoving,
    /// The consume-queue file for the offset is missing.
    OffsetFoundNull,
    /// The offset is beyond the queue's max offset.
    OffsetOverflowBadly,
    /// The offset equals the max offset: nothing new yet (long-poll candidate).
    OffsetOverflowOne,
    /// The offset is below the queue's min offset.
    OffsetTooSmall,
    /// The queue does not exist.
    NoMatchedLogicQueue,
    /// The queue exists but holds no message.
    NoMessageInQueue,
    /// A server-side offset reset is pending (not produced by the store itself).
    OffsetReset,
}

impl GetMessageStatus {
    /// The Java enum constant's name, which the broker puts in the pull response remark.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Found => "FOUND",
            Self::NoMatchedMessage => "NO_MATCHED_MESSAGE",
            Self::MessageWasRemoving => "MESSAGE_WAS_REMOVING",
            Self::OffsetFoundNull => "OFFSET_FOUND_NULL",
            Self::OffsetOverflowBadly => "OFFSET_OVERFLOW_BADLY",
            Self::OffsetOverflowOne => "OFFSET_OVERFLOW_ONE",
            Self::OffsetTooSmall => "OFFSET_TOO_SMALL",
            Self::NoMatchedLogicQueue => "NO_MATCHED_LOGIC_QUEUE",
            Self::NoMessageInQueue => "NO_MESSAGE_IN_QUEUE",
            Self::OffsetReset => "OFFSET_RESET",
        }
    }
}

/// Result of [`crate::store::MessageStore::get_messages`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct GetResult {
    pub status: GetMessageStatus,
    /// The stored records, each exactly as in the commit log (zero-copy views where the
    /// storage allows), in queue order.
    pub records: Vec<Bytes>,
    /// Queue offset of each entry in `records`.
    pub queue_offsets: Vec<u64>,
    /// Where the consumer should continue.
    pub next_begin_offset: u64,
    /// The queue's min offset (0 if the queue does not exist).
    pub min_offset: u64,
    /// The queue's max offset, one past the last entry (0 if the queue does not exist).
    pub max_offset: u64,
    /// Whether the reader is so far behind that it should read from a slave (RocketMQ's
    /// `suggestPullingFromSlave`: unread data above `accessMessageInMemoryMaxRatio` of RAM).
    pub suggest_pulling_from_slave: bool,
}

impl GetResult {
    /// Total bytes of the returned records.
    #[must_use]
    pub fn total_bytes(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }
}

/// Which side [`crate::store::MessageStore::offset_by_timestamp`] resolves ties to, as
/// RocketMQ's `BoundaryType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BoundaryType {
    /// The first offset whose store time is at or after the timestamp.
    #[default]
    Lower,
    /// The last offset whose store time is at or before the timestamp.
    Upper,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_java_constants() {
        assert_eq!(PutMessageStatus::PutOk.name(), "PUT_OK");
        assert_eq!(
            PutMessageStatus::ServiceNotAvailable.name(),
            "SERVICE_NOT_AVAILABLE"
        );
        assert_eq!(
            GetMessageStatus::OffsetOverflowOne.name(),
            "OFFSET_OVERFLOW_ONE"
        );
        assert_eq!(
            GetMessageStatus::NoMatchedLogicQueue.name(),
            "NO_MATCHED_LOGIC_QUEUE"
        );
    }

    #[test]
    fn stored_statuses() {
        assert!(PutMessageStatus::PutOk.is_stored());
        assert!(PutMessageStatus::FlushDiskTimeout.is_stored());
        assert!(!PutMessageStatus::ServiceNotAvailable.is_stored());
        assert!(!PutMessageStatus::MessageIllegal.is_stored());
    }

    #[test]
    fn refusal_reasons_read_clearly() {
        let reason = NotWritable::DiskFull {
            used_percent: 93,
            limit_percent: 90,
        };
        assert_eq!(
            reason.to_string(),
            "disk is 93% full, above the 90% limit (diskSpaceWarningLevelRatio)"
        );
    }
}
