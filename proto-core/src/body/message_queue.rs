//! [`MessageQueue`] and the maps keyed by it, which fastjson writes with whole JSON objects as
//! keys (`{{"brokerName":"b","queueId":0,"topic":"T"}:{…}}`, protocol reference §13.1).
//!
//! Reading: [`super::normalize`] has turned each object key into a string holding the key's
//! compact JSON, and [`read_table`] parses that text back into a `MessageQueue`. A key that a
//! peer sent as a quoted string of the same JSON reads the same way.
//!
//! Writing: serde_json cannot write a non-string key, so the bodies holding such a map are
//! written with [`ObjectWriter`], which puts the map in fastjson's object-key form.
//!
//! What it leaves out: queue selection and sorting for rebalance (the derived order here is
//! Java's `MessageQueue.compareTo`, which callers may use).

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::lenient::or_default;
use super::write_json;

/// One queue of one topic on one broker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MessageQueue {
    #[serde(deserialize_with = "or_default")]
    pub broker_name: String,
    pub queue_id: i32,
    #[serde(deserialize_with = "or_default")]
    pub topic: String,
}

json_body!(MessageQueue);

impl Ord for MessageQueue {
    /// Java's order: topic, then broker name, then queue id (members are declared in fastjson's
    /// alphabetical order instead, so the derive would not do).
    fn cmp(&self, other: &MessageQueue) -> Ordering {
        (&self.topic, &self.broker_name, self.queue_id).cmp(&(
            &other.topic,
            &other.broker_name,
            other.queue_id,
        ))
    }
}

impl PartialOrd for MessageQueue {
    fn partial_cmp(&self, other: &MessageQueue) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Reads a normalized `MessageQueue`-keyed map (null reads as empty).
pub(crate) fn read_table<'de, D, V>(d: D) -> Result<BTreeMap<MessageQueue, V>, D::Error>
where
    D: Deserializer<'de>,
    V: Deserialize<'de>,
{
    d.deserialize_any(TableVisitor(PhantomData))
}

struct TableVisitor<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for TableVisitor<V> {
    type Value = BTreeMap<MessageQueue, V>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map keyed by MessageQueue objects")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut table = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let mq: MessageQueue = serde_json::from_str(&key).map_err(|e| {
                de::Error::custom(format_args!("map key {key:?} is not a MessageQueue: {e}"))
            })?;
            table.insert(mq, map.next_value()?);
        }
        Ok(table)
    }
}

/// Writes a JSON object member by member, in the order given; for bodies with a
/// `MessageQueue`-keyed map, which serde_json cannot write.
pub(crate) struct ObjectWriter {
    out: Vec<u8>,
}

impl ObjectWriter {
    pub(crate) fn new() -> ObjectWriter {
        ObjectWriter { out: vec![b'{'] }
    }

    /// A member with a standard JSON value.
    pub(crate) fn member<T: Serialize>(mut self, name: &str, value: &T) -> ObjectWriter {
        self.name(name);
        write_json(&mut self.out, value);
        self
    }

    /// A member holding a `MessageQueue`-keyed map, in fastjson's object-key form.
    pub(crate) fn table<V: Serialize>(
        mut self,
        name: &str,
        table: &BTreeMap<MessageQueue, V>,
    ) -> ObjectWriter {
        self.name(name);
        self.out.push(b'{');
        for (i, (mq, value)) in table.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            write_json(&mut self.out, mq);
            self.out.push(b':');
            write_json(&mut self.out, value);
        }
        self.out.push(b'}');
        self
    }

    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }

    fn name(&mut self, name: &str) {
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        write_json(&mut self.out, &name);
        self.out.push(b':');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::strategy::message_queue;
    use proptest::prelude::*;

    #[test]
    fn java_order_is_topic_broker_queue() {
        let mq = |t: &str, b: &str, q| MessageQueue {
            topic: t.into(),
            broker_name: b.into(),
            queue_id: q,
        };
        let mut queues = vec![
            mq("B", "a", 0),
            mq("A", "b", 1),
            mq("A", "b", 0),
            mq("A", "c", 0),
        ];
        queues.sort();
        assert_eq!(
            queues,
            vec![
                mq("A", "b", 0),
                mq("A", "b", 1),
                mq("A", "c", 0),
                mq("B", "a", 0)
            ]
        );
    }

    #[test]
    fn writes_fastjson_field_order() {
        let mq = MessageQueue {
            topic: "T".into(),
            broker_name: "broker-a".into(),
            queue_id: 0,
        };
        assert_eq!(
            mq.encode(),
            br#"{"brokerName":"broker-a","queueId":0,"topic":"T"}"#
        );
    }

    #[test]
    fn object_writer_writes_object_keys() {
        let mut table = BTreeMap::new();
        table.insert(
            MessageQueue {
                topic: "T".into(),
                broker_name: "b".into(),
                queue_id: 3,
            },
            7i64,
        );
        let text = ObjectWriter::new()
            .member("a", &1.5f64)
            .table("offsetTable", &table)
            .finish();
        assert_eq!(
            String::from_utf8(text).unwrap(),
            r#"{"a":1.5,"offsetTable":{{"brokerName":"b","queueId":3,"topic":"T"}:7}}"#
        );
    }

    proptest! {
        #[test]
        fn round_trip(mq in message_queue()) {
            prop_assert_eq!(MessageQueue::decode(&mq.encode()).unwrap(), mq);
        }
    }
}
