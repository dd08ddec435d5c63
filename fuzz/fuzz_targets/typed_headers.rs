#![no_main]
//! Runs every typed header decoder (`proto_core::header`) over one `extFields` map built from
//! arbitrary (key, value) pairs. Keys lean toward the names the headers read, and values toward
//! numbers and booleans, so decoders get past their first missing field. A decoder must never
//! panic; whatever it accepts must encode and decode back to the same value.
//!
//! It leaves out the JSON/binary header layer: `json_header` and `binary_header` fuzz that.

use std::fmt::Debug;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use proto_core::header::*;
use proto_core::ExtFields;

#[derive(Arbitrary, Debug)]
enum Key {
    /// Index into every key some header reads.
    Known(u16),
    Raw(String),
}

#[derive(Arbitrary, Debug)]
enum Value {
    Raw(String),
    Number(i64),
    Bool(bool),
    /// The C++ client's booleans.
    Digit(bool),
}

/// Calls `$then!` with the list of every header type that implements `CommandHeader`.
macro_rules! with_headers {
    ($then:ident) => {
        $then!(
            SendMessageResponseHeader,
            PullMessageRequestHeader,
            PullMessageResponseHeader,
            QueryConsumerOffsetRequestHeader,
            QueryConsumerOffsetResponseHeader,
            UpdateConsumerOffsetRequestHeader,
            GetMaxOffsetRequestHeader,
            GetMaxOffsetResponseHeader,
            GetMinOffsetRequestHeader,
            GetMinOffsetResponseHeader,
            SearchOffsetRequestHeader,
            SearchOffsetResponseHeader,
            GetEarliestMsgStoretimeRequestHeader,
            GetEarliestMsgStoretimeResponseHeader,
            UnregisterClientRequestHeader,
            GetConsumerListByGroupRequestHeader,
            NotifyConsumerIdsChangedRequestHeader,
            ConsumerSendMsgBackRequestHeader,
            EndTransactionRequestHeader,
            CheckTransactionStateRequestHeader,
            QueryMessageRequestHeader,
            QueryMessageResponseHeader,
            ViewMessageRequestHeader,
            CreateTopicRequestHeader,
            DeleteTopicRequestHeader,
            GetTopicStatsInfoRequestHeader,
            GetConsumeStatsRequestHeader,
            GetConsumerConnectionListRequestHeader,
            ResetOffsetRequestHeader,
            RegisterBrokerRequestHeader,
            RegisterBrokerResponseHeader,
            UnRegisterBrokerRequestHeader,
            BrokerHeartbeatRequestHeader,
            GetRouteInfoRequestHeader,
            QueryDataVersionRequestHeader,
            QueryDataVersionResponseHeader,
            GetTopicsByClusterRequestHeader,
            RegisterTopicRequestHeader,
            DeleteTopicFromNamesrvRequestHeader,
            WipeWritePermOfBrokerRequestHeader,
            WipeWritePermOfBrokerResponseHeader,
            AddWritePermOfBrokerRequestHeader,
            AddWritePermOfBrokerResponseHeader,
            PutKVConfigRequestHeader,
            GetKVConfigRequestHeader,
            GetKVConfigResponseHeader,
            DeleteKVConfigRequestHeader,
            GetKVListByNamespaceRequestHeader,
        )
    };
}

macro_rules! known_keys {
    ($($header:ident,)*) => {{
        let mut keys: Vec<&'static str> = Vec::new();
        $(keys.extend(<$header as CommandHeader>::FIELDS.iter().map(|f| f.key));)*
        keys.extend(SendMessageRequestHeader::FIELDS_V1.iter().map(|f| f.key));
        keys.extend(SendMessageRequestHeader::FIELDS_V2.iter().map(|f| f.key));
        keys
    }};
}

macro_rules! check_all {
    ($($header:ident,)*) => {
        |fields: &ExtFields| {
            $(check::<$header>(fields, <$header as CommandHeader>::decode, |h, f| h.encode(f));)*
            check(
                fields,
                SendMessageRequestHeader::decode_v1,
                SendMessageRequestHeader::encode_v1,
            );
            check(
                fields,
                SendMessageRequestHeader::decode_v2,
                SendMessageRequestHeader::encode_v2,
            );
        }
    };
}

/// Decodes; if that works, re-encodes both into a fresh map and over the original one, and
/// demands the same value back from each.
fn check<H: PartialEq + Debug>(
    fields: &ExtFields,
    decode: impl Fn(&ExtFields) -> Result<H, HeaderError>,
    encode: impl Fn(&H, &mut ExtFields),
) {
    let header = match decode(fields) {
        Ok(header) => header,
        Err(err) => {
            assert!(!err.to_string().is_empty());
            assert!(err.field().len() <= 40);
            return;
        }
    };
    let mut fresh = ExtFields::new();
    encode(&header, &mut fresh);
    assert_eq!(decode(&fresh).as_ref(), Ok(&header));
    let mut overwritten = fields.clone();
    encode(&header, &mut overwritten);
    assert_eq!(decode(&overwritten).as_ref(), Ok(&header));
}

fuzz_target!(|pairs: Vec<(Key, Value)>| {
    let keys = with_headers!(known_keys);
    let mut fields = ExtFields::new();
    for (key, value) in pairs.into_iter().take(64) {
        let key = match key {
            Key::Known(i) => keys[usize::from(i) % keys.len()].to_owned(),
            Key::Raw(raw) => raw,
        };
        let value = match value {
            Value::Raw(raw) => raw,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            Value::Digit(b) => u8::from(b).to_string(),
        };
        fields.insert(key, value);
    }
    let check_every_header = with_headers!(check_all);
    check_every_header(&fields);
});
