//! JSON bodies with fastjson's quirks (protocol reference §13, §17, §18.2).
//!
//! Every body is a plain serde struct with `decode(&[u8]) -> Result<Self, BodyError>` and
//! `encode(&self) -> Vec<u8>`; [`RegisterBrokerBody`] takes a `compressed` flag as well, for its
//! zlib binary form.
//!
//! Reading is lenient, because Java, C++ and Rust peers each write bodies their own way:
//! - [`normalize`] first rewrites fastjson's non-string map keys (`{0:"…"}` and
//!   `{{"brokerName":…}:{…}}`) into JSON strings; standard JSON passes through borrowed;
//! - every member may be missing (the Java field initializer's value applies) or null (for
//!   collections and strings, read as empty), and unknown members are ignored;
//! - enums are read by name or by Java ordinal (the C++ client sends `"consumeType":1`), and
//!   `subVersion` as a number or a string.
//!
//! Writing is standard JSON with members in fastjson's (alphabetical) order, camelCase names as
//! in Java, null members omitted and numeric map keys quoted (`{"0":"…"}`, which fastjson reads
//! back as numbers). The exceptions are the maps keyed by [`MessageQueue`] (`ConsumeStats`,
//! `TopicStatsTable`, `ResetOffsetBody`): no standard form is known to be read by Java tools,
//! so they are written in fastjson's object-key form.
//!
//! What it leaves out: static-topic mapping logic (the mapping types are carried, not
//! interpreted), POP and ACL bodies, and the meaning of any body to the name server or broker.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Adds the `decode`/`encode` pair to standard-JSON bodies, so every body reads and writes the
/// same way.
macro_rules! json_body {
    ($($ty:ident),+ $(,)?) => {$(
        impl $ty {
            /// Decodes the body from a peer's bytes, fastjson quirks included.
            pub fn decode(bytes: &[u8]) -> Result<$ty, $crate::body::BodyError> {
                $crate::body::decode_json(bytes, stringify!($ty))
            }

            /// Encodes the body as standard JSON, members in fastjson's order.
            pub fn encode(&self) -> Vec<u8> {
                $crate::body::encode_json(self)
            }
        }
    )+};
}

mod connection;
mod consumer_offset;
mod controller;
mod heartbeat;
mod java_enum;
mod lenient;
mod lists;
mod message_queue;
mod normalize;
mod perm;
mod register;
mod route;
mod static_topic;
mod stats;
mod subscription_group;
mod topic_config;

#[cfg(test)]
mod strategy;
#[cfg(test)]
mod vectors;

pub use connection::{Connection, ConsumerConnection, ProducerConnection};
pub use consumer_offset::ConsumerOffsetSerializeWrapper;
pub use controller::{BrokerReplicasInfo, ReplicaIdentity, ReplicasInfo, SyncStateSet};
pub use heartbeat::{
    ConsumeFromWhere, ConsumeType, ConsumerData, HeartbeatData, MessageModel, ProducerData,
    SubscriptionData, EXPRESSION_TYPE_TAG,
};
pub use lists::{
    GetConsumerListByGroupResponseBody, GroupList, KVTable, LockBatchRequestBody,
    LockBatchResponseBody, TopicList, UnlockBatchRequestBody,
};
pub use message_queue::MessageQueue;
pub use normalize::{normalize, NESTING_MAX};
pub use perm::PermName;
pub use register::{RegisterBrokerBody, INFLATED_LEN_MAX};
pub use route::{
    BrokerData, BrokerMemberGroup, ClusterInfo, GetBrokerMemberGroupResponseBody, QueueData,
    TopicRouteData,
};
pub use static_topic::{LogicQueueMappingItem, TopicQueueMappingDetail, TopicQueueMappingInfo};
pub use stats::{ConsumeStats, OffsetWrapper, ResetOffsetBody, TopicOffset, TopicStatsTable};
pub use subscription_group::{
    CustomizedRetryPolicy, ExponentialRetryPolicy, GroupRetryPolicy, GroupRetryPolicyType,
    SimpleSubscriptionData, SubscriptionGroupConfig,
};
pub use topic_config::{
    DataVersion, TopicConfig, TopicConfigAndMappingSerializeWrapper, TopicConfigSerializeWrapper,
    TopicFilterType,
};

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BodyError {
    /// A byte that cannot start or continue the JSON structure at this point.
    #[error("unexpected byte {byte:#04x} at offset {offset}")]
    UnexpectedByte { offset: usize, byte: u8 },
    /// The text ends inside a value.
    #[error("JSON ends inside a value at offset {offset}")]
    UnexpectedEnd { offset: usize },
    /// Objects and arrays nest deeper than [`NESTING_MAX`].
    #[error("JSON nests deeper than {max} levels at offset {offset}")]
    TooDeep { offset: usize, max: usize },
    /// An object used as a map key holds another object used as a key; fastjson never writes
    /// that, and escaping it level by level could blow the text up.
    #[error("object key inside an object key at offset {offset}")]
    NestedObjectKey { offset: usize },
    /// Well-formed JSON that does not have the body's shape (wrong type, bad enum name, ...).
    #[error("{body} does not match its JSON shape: {source}")]
    Shape {
        body: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The compressed register body is not a whole zlib stream, or inflates past
    /// [`INFLATED_LEN_MAX`].
    #[error("compressed body does not inflate: {0}")]
    Inflate(#[source] crate::message::compress::CompressError),
    /// The inflated register body ends inside a section.
    #[error("compressed body ends inside {section}")]
    CompressedTruncated { section: &'static str },
    /// A negative length or count in the inflated register body.
    #[error("compressed body gives {section} the negative size {len}")]
    NegativeLength { section: &'static str, len: i32 },
    /// Bytes left over after the last section of the inflated register body.
    #[error("compressed body has {count} bytes after its last section")]
    CompressedTrailing { count: usize },
    /// A topic line of the compressed register body lacks a field or has a bad one.
    #[error("topic config line {line:?}: missing or bad {field}")]
    TopicConfigLine { field: &'static str, line: String },
}

/// Normalizes, then reads `bytes` as `T`; `body` names `T` in errors.
pub(crate) fn decode_json<T: DeserializeOwned>(
    bytes: &[u8],
    body: &'static str,
) -> Result<T, BodyError> {
    let json = normalize(bytes)?;
    serde_json::from_slice(&json).map_err(|source| BodyError::Shape { body, source })
}

pub(crate) fn encode_json<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    write_json(&mut out, value);
    out
}

pub(crate) fn write_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // serde_json fails only on an I/O error (none writing into a Vec), a map key that is not a
    // string or integer (body maps have only those) or an error raised by a hand-written
    // `Serialize` (body types have none that raise one). A failure here is a bug in this module.
    serde_json::to_writer(out, value).expect("body types always serialize to JSON");
}
