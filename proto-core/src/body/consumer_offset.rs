//! [`ConsumerOffsetSerializeWrapper`]: committed consumer offsets, as GET_ALL_CONSUMER_OFFSET
//! returns them and as `consumerOffset.json` stores them (protocol reference §16.6).
//!
//! fastjson writes the inner map's Integer queue ids as bare numbers
//! (`{"TopicTest@cg1":{0:1190,1:1201}}`); they are read through `super::normalize` and written
//! quoted. What it leaves out: the file's persistence (`.bak` rotation) and the broker's offset
//! store.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lenient::or_default;
use super::topic_config::DataVersion;

/// Offsets per `topic@group`, then per queue id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsumerOffsetSerializeWrapper {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_version: Option<DataVersion>,
    /// `topic@group` -> queue id -> committed offset.
    #[serde(deserialize_with = "or_default")]
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
}

json_body!(ConsumerOffsetSerializeWrapper);

/// The separator between topic and group in `offset_table` keys.
pub const TOPIC_GROUP_SEPARATOR: char = '@';

impl ConsumerOffsetSerializeWrapper {
    /// The `offset_table` key for a topic and group.
    pub fn key(topic: &str, group: &str) -> String {
        format!("{topic}{TOPIC_GROUP_SEPARATOR}{group}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::strategy::consumer_offsets;
    use proptest::prelude::*;

    #[test]
    fn reads_the_documented_file() {
        // Protocol reference §16.6, as fastjson writes it (pretty-printed, integer keys bare).
        let json = concat!(
            "{\n\t\"offsetTable\":{\n\t\t\"TopicTest@cg1\":{0:1190,1:1201}\n\t},\n",
            "\t\"dataVersion\":{\"counter\":2,\"timestamp\":1}\n}\n",
        )
        .as_bytes();
        let wrapper = ConsumerOffsetSerializeWrapper::decode(json).unwrap();
        let key = ConsumerOffsetSerializeWrapper::key("TopicTest", "cg1");
        assert_eq!(
            wrapper.offset_table[&key],
            BTreeMap::from([(0, 1190), (1, 1201)])
        );
        assert_eq!(wrapper.data_version.map(|v| v.counter), Some(2));
        let text = String::from_utf8(wrapper.encode()).unwrap();
        assert!(
            text.contains(r#""TopicTest@cg1":{"0":1190,"1":1201}"#),
            "{text}"
        );
    }

    proptest! {
        #[test]
        fn round_trip(wrapper in consumer_offsets()) {
            let back = ConsumerOffsetSerializeWrapper::decode(&wrapper.encode()).unwrap();
            prop_assert_eq!(back, wrapper);
        }
    }
}
