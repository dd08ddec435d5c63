//! Typed request and response headers over a command's `extFields`.
//!
//! RocketMQ's Java classes (`*RequestHeader`, `*ResponseHeader`) turn each field into one
//! `extFields` entry keyed by the field name; [`CommandHeader`] does the same for our structs,
//! which keep those keys so a reader can hop to the Java class of the same name. Each struct is
//! declared as a table of rows by the `command_header!` macro (see `field.rs`), so the key, type
//! and required/optional choice of every field sit on one line.
//!
//! Decoding is stricter than Java's: a required field that is absent, or a number that does not
//! parse, is a [`HeaderError`] whose `Display` is the remark to send back. Java logs and skips
//! both. A command without any `extFields` map decodes as an empty map, so its required fields
//! are missing too. Keys a header does not name (`AccessKey`, `Signature`, `OnsChannel`, `ns`,
//! `nsd`, `bname`, `oway`, `lo`, ...) are ignored.
//!
//! What it leaves out: POP, ACL and static-topic headers, and the bodies (see
//! [`crate::body`]). LOCK_BATCH_MQ, UNLOCK_BATCH_MQ and HEART_BEAT requests have no header.
//!
//! # Files
//! - `send.rs`: SEND_MESSAGE in its V1 and V2 shapes, and the send response.
//! - `pull.rs`: PULL_MESSAGE request and response.
//! - `offset.rs`: consumer offsets and queue offset/time look-ups.
//! - `client.rs`: client registration, consumer lists, send-back, transactions, heartbeat keys.
//! - `query.rs`: QUERY_MESSAGE and VIEW_MESSAGE_BY_ID.
//! - `admin.rs`: topic and group administration on the broker.
//! - `namesrv.rs`: name-server requests and responses.
//! - `controller.rs`: controller-mode requests and responses (register, replica info, sync state
//!   set, elections, metadata, role-change notices).

#[macro_use]
mod field;

mod admin;
mod client;
mod controller;
mod namesrv;
mod offset;
mod pull;
mod query;
mod send;

#[cfg(test)]
mod testing;

pub use admin::{
    CreateTopicRequestHeader, DeleteTopicRequestHeader, GetConsumeStatsRequestHeader,
    GetConsumerConnectionListRequestHeader, GetTopicStatsInfoRequestHeader,
    ResetOffsetRequestHeader,
};
pub use client::{
    CheckTransactionStateRequestHeader, ConsumerSendMsgBackRequestHeader,
    EndTransactionRequestHeader, GetConsumerListByGroupRequestHeader,
    NotifyConsumerIdsChangedRequestHeader, UnregisterClientRequestHeader, IS_SUB_CHANGE,
    IS_SUPPORT_HEART_BEAT_V2,
};
pub use controller::{
    AlterSyncStateSetRequestHeader, AlterSyncStateSetResponseHeader, ElectMasterRequestHeader,
    ElectMasterResponseHeader, GetMetaDataResponseHeader, GetReplicaInfoRequestHeader,
    GetReplicaInfoResponseHeader, NotifyBrokerRoleChangedRequestHeader,
    RegisterBrokerToControllerRequestHeader, RegisterBrokerToControllerResponseHeader,
};
pub use namesrv::{
    AddWritePermOfBrokerRequestHeader, AddWritePermOfBrokerResponseHeader,
    BrokerHeartbeatRequestHeader, DeleteKVConfigRequestHeader, DeleteTopicFromNamesrvRequestHeader,
    GetBrokerMemberGroupRequestHeader, GetKVConfigRequestHeader, GetKVConfigResponseHeader,
    GetKVListByNamespaceRequestHeader, GetRouteInfoRequestHeader, GetTopicsByClusterRequestHeader,
    PutKVConfigRequestHeader, QueryDataVersionRequestHeader, QueryDataVersionResponseHeader,
    RegisterBrokerRequestHeader, RegisterBrokerResponseHeader, RegisterTopicRequestHeader,
    UnRegisterBrokerRequestHeader, WipeWritePermOfBrokerRequestHeader,
    WipeWritePermOfBrokerResponseHeader, ZONE_NAME,
};
pub use offset::{
    BoundaryType, GetEarliestMsgStoretimeRequestHeader, GetEarliestMsgStoretimeResponseHeader,
    GetMaxOffsetRequestHeader, GetMaxOffsetResponseHeader, GetMinOffsetRequestHeader,
    GetMinOffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    QueryConsumerOffsetResponseHeader, SearchOffsetRequestHeader, SearchOffsetResponseHeader,
    UpdateConsumerOffsetRequestHeader,
};
pub use pull::{PullMessageRequestHeader, PullMessageResponseHeader, PullSysFlag};
pub use query::{
    QueryMessageRequestHeader, QueryMessageResponseHeader, ViewMessageRequestHeader,
    UNIQUE_KEY_QUERY,
};
pub use send::{
    decode_send_header, decode_send_header_into, SendMessageRequestHeader,
    SendMessageResponseHeader, MSG_REGION, TRACE_ON,
};

use crate::codec::command::{ExtFields, RemotingCommand};

/// A typed view of a command's `extFields`.
///
/// `decode` then `encode` keeps every field the header names; `encode` then `decode` is the
/// identity (proptest checks this for every header).
pub trait CommandHeader: Sized {
    /// Every key the header reads, in declaration order.
    const FIELDS: &'static [FieldSpec];

    /// Reads the header, failing on the first required field that is absent or number that does
    /// not parse. Unknown keys are ignored.
    fn decode(fields: &ExtFields) -> Result<Self, HeaderError>;

    /// Writes every present field, replacing entries with the same key and leaving others alone
    /// (a send response also carries `MSG_REGION` and `TRACE_ON`).
    fn encode(&self, fields: &mut ExtFields);
}

/// Decodes `H` from `cmd`'s `extFields`; a command with no map reads as an empty one.
pub fn decode_header<H: CommandHeader>(cmd: &RemotingCommand) -> Result<H, HeaderError> {
    match &cmd.ext_fields {
        Some(fields) => H::decode(fields),
        None => H::decode(&ExtFields::new()),
    }
}

/// Encodes `header` into `cmd`'s `extFields`, creating the map if the command has none.
pub fn encode_header<H: CommandHeader>(cmd: &mut RemotingCommand, header: &H) {
    header.encode(cmd.ext_fields_mut());
}

/// One key of a header: what it is called, what it holds, and whether decoding needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldSpec {
    pub key: &'static str,
    pub ty: FieldType,
    /// Absent ⇒ [`HeaderError::MissingField`]. Optional fields either become `None` or take
    /// the default Java gives them.
    pub required: bool,
}

/// What an `extFields` value holds, as Java types it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// `String`: taken verbatim.
    Text,
    /// `int`/`Integer`: decimal `i32`.
    Int,
    /// `long`/`Long`: decimal `i64`.
    Long,
    /// `boolean`/`Boolean`: `"true"` (any case) or `"1"` is true, anything else false.
    Bool,
    /// `BoundaryType`: `"upper"` (any case) is upper, anything else lower.
    Boundary,
}

/// Why a header could not be read. `Display` gives the remark for the error response, in the
/// spirit of Java's `"the custom field <queueId> is null"`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    #[error("the custom field <{field}> is null")]
    MissingField { field: &'static str },
    /// `value` is the offending text, cut to [`BAD_VALUE_SHOWN_MAX`] bytes because it comes
    /// from the peer and ends up in the remark we send back.
    #[error("the custom field <{field}> is not a decimal number: {value:?}")]
    BadNumber { field: &'static str, value: String },
}

impl HeaderError {
    pub(crate) fn bad_number(field: &'static str, text: &str) -> HeaderError {
        let mut end = text.len().min(BAD_VALUE_SHOWN_MAX);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let shown = text.get(..end).unwrap_or_default();
        HeaderError::BadNumber {
            field,
            value: shown.to_owned(),
        }
    }

    /// The key of the field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            HeaderError::MissingField { field } | HeaderError::BadNumber { field, .. } => field,
        }
    }
}

/// The longest prefix of a malformed value that a [`HeaderError`] keeps.
pub const BAD_VALUE_SHOWN_MAX: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::code::RequestCode;

    #[test]
    fn errors_read_as_java_remarks() {
        let missing = HeaderError::MissingField { field: "queueId" };
        assert_eq!(missing.to_string(), "the custom field <queueId> is null");
        let bad = HeaderError::bad_number("queueOffset", "12a");
        assert_eq!(
            bad.to_string(),
            "the custom field <queueOffset> is not a decimal number: \"12a\""
        );
        assert_eq!(bad.field(), "queueOffset");
    }

    #[test]
    fn bad_values_are_cut_on_a_char_boundary() {
        let long = "é".repeat(100);
        let HeaderError::BadNumber { value, .. } = HeaderError::bad_number("k", &long) else {
            panic!("bad_number builds BadNumber");
        };
        assert!(value.len() <= BAD_VALUE_SHOWN_MAX);
        assert!(value.len() >= BAD_VALUE_SHOWN_MAX - 1);
        assert!(long.starts_with(&value));
    }

    #[test]
    fn a_command_without_ext_fields_reads_as_empty() {
        let cmd = RemotingCommand::request(RequestCode::GetMinOffset.value(), 1);
        assert_eq!(cmd.ext_fields, None);
        assert_eq!(
            decode_header::<GetMinOffsetRequestHeader>(&cmd),
            Err(HeaderError::MissingField { field: "topic" })
        );
    }

    #[test]
    fn encode_header_fills_the_command_and_keeps_other_keys() {
        let mut cmd = RemotingCommand::request(RequestCode::GetMinOffset.value(), 1);
        cmd.ext_fields_mut().insert("bname", "broker-a");
        let header = GetMinOffsetRequestHeader {
            topic: "T".to_owned(),
            queue_id: 3,
        };
        encode_header(&mut cmd, &header);
        assert_eq!(cmd.ext("topic"), Some("T"));
        assert_eq!(cmd.ext("queueId"), Some("3"));
        assert_eq!(cmd.ext("bname"), Some("broker-a"));
        assert_eq!(decode_header::<GetMinOffsetRequestHeader>(&cmd), Ok(header));
    }
}
