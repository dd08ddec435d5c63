//! Who is connected for a group (protocol reference §13.7): [`ConsumerConnection`]
//! (GET_CONSUMER_CONNECTION_LIST) and [`ProducerConnection`] (GET_PRODUCER_CONNECTION_LIST),
//! each a set of [`Connection`]s.
//!
//! What it leaves out: the broker's channel tables these are built from.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::heartbeat::{ConsumeFromWhere, ConsumeType, MessageModel, SubscriptionData};
use super::lenient::{language, or_default};
use crate::codec::command::LanguageCode;

/// One client channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Connection {
    /// The remote socket address, `ip:port`.
    #[serde(deserialize_with = "or_default")]
    pub client_addr: String,
    #[serde(deserialize_with = "or_default")]
    pub client_id: String,
    #[serde(with = "language")]
    pub language: LanguageCode,
    /// The client's `MQVersion` ordinal, from its request headers.
    pub version: i32,
}

/// A consumer group's connections and the subscriptions they declared.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsumerConnection {
    #[serde(deserialize_with = "or_default")]
    pub connection_set: Vec<Connection>,
    pub consume_from_where: ConsumeFromWhere,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    /// Topic -> subscription.
    #[serde(deserialize_with = "or_default")]
    pub subscription_table: BTreeMap<String, SubscriptionData>,
}

/// A producer group's connections.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ProducerConnection {
    #[serde(deserialize_with = "or_default")]
    pub connection_set: Vec<Connection>,
}

json_body!(ConsumerConnection, ProducerConnection);

impl Default for Connection {
    fn default() -> Connection {
        Connection {
            client_addr: String::new(),
            client_id: String::new(),
            language: LanguageCode::Java,
            version: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::strategy::{consumer_connection, producer_connection};
    use proptest::prelude::*;

    #[test]
    fn reads_the_documented_consumer_connection() {
        // Protocol reference §13.7.
        let json = br#"{"connectionSet":[{"clientAddr":"192.168.0.5:53412",
   "clientId":"192.168.0.5@31337#80123456789","language":"JAVA","version":479}],
 "consumeFromWhere":"CONSUME_FROM_LAST_OFFSET","consumeType":"CONSUME_PASSIVELY",
 "messageModel":"CLUSTERING",
 "subscriptionTable":{"TopicTest":{"classFilterMode":false,"codeSet":[],"expressionType":"TAG",
   "subString":"*","subVersion":1700000000000,"tagsSet":[],"topic":"TopicTest"}}}"#;
        let cc = ConsumerConnection::decode(json).unwrap();
        assert_eq!(cc.connection_set[0].language, LanguageCode::Java);
        assert_eq!(cc.connection_set[0].version, 479);
        assert_eq!(
            cc.subscription_table["TopicTest"].sub_version,
            1_700_000_000_000
        );
        let text = String::from_utf8(cc.encode()).unwrap();
        assert!(
            text.starts_with(r#"{"connectionSet":[{"clientAddr":"192.168.0.5:53412","#),
            "{text}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn consumer_round_trip(cc in consumer_connection()) {
            prop_assert_eq!(ConsumerConnection::decode(&cc.encode()).unwrap(), cc);
        }

        #[test]
        fn producer_round_trip(pc in producer_connection()) {
            prop_assert_eq!(ProducerConnection::decode(&pc.encode()).unwrap(), pc);
        }
    }
}
