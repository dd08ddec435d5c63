//! `consumerOffset.json` and `delayOffset.json`: consumer groups' committed offsets and the
//! schedule service's progress per delay level.
//!
//! Java writes both with fastjson's bare integer keys (`{0:1190}`); [`super::parse_json`]
//! accepts them and serde writes quoted ones. What it leaves out: RocketMQ's derived members
//! (`groupTopicMap`, pull and reset offsets), which it recomputes or keeps only in memory.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{null_as_default, ConfigFile, DataVersion};

/// Separates topic and group in [`ConsumerOffsetTable`] keys (`topic@group`).
pub const TOPIC_GROUP_SEPARATOR: char = '@';

/// `config/consumerOffset.json`: `topic@group` → queue id → next offset to consume.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ConsumerOffsetTable {
    #[serde(deserialize_with = "null_as_default")]
    pub offset_table: BTreeMap<String, BTreeMap<i32, i64>>,
    #[serde(deserialize_with = "null_as_default")]
    pub data_version: DataVersion,
}

impl ConfigFile for ConsumerOffsetTable {
    const FILE_NAME: &'static str = "consumerOffset.json";
}

impl ConsumerOffsetTable {
    /// The `topic@group` key.
    pub fn key(topic: &str, group: &str) -> String {
        format!("{topic}{TOPIC_GROUP_SEPARATOR}{group}")
    }

    /// Records `group`'s committed offset for one queue, bumping the data version.
    pub fn commit_offset(
        &mut self,
        topic: &str,
        group: &str,
        queue_id: i32,
        offset: i64,
        now_ms: u64,
    ) {
        self.offset_table
            .entry(Self::key(topic, group))
            .or_default()
            .insert(queue_id, offset);
        self.data_version.next_version(now_ms);
    }

    /// `group`'s committed offset for one queue.
    pub fn query_offset(&self, topic: &str, group: &str, queue_id: i32) -> Option<i64> {
        self.offset_table
            .get(&Self::key(topic, group))?
            .get(&queue_id)
            .copied()
    }

    /// Every queue's committed offset of `group` on `topic`.
    pub fn queue_offsets(&self, topic: &str, group: &str) -> Option<&BTreeMap<i32, i64>> {
        self.offset_table.get(&Self::key(topic, group))
    }

    /// Forgets every offset of `group` (all topics); returns whether any existed.
    pub fn remove_group(&mut self, group: &str, now_ms: u64) -> bool {
        let before = self.offset_table.len();
        self.offset_table
            .retain(|key, _| split_key(key).is_none_or(|(_, g)| g != group));
        let changed = self.offset_table.len() != before;
        if changed {
            self.data_version.next_version(now_ms);
        }
        changed
    }

    /// Forgets every offset on `topic` (all groups); returns whether any existed.
    pub fn remove_topic(&mut self, topic: &str, now_ms: u64) -> bool {
        let before = self.offset_table.len();
        self.offset_table
            .retain(|key, _| split_key(key).is_none_or(|(t, _)| t != topic));
        let changed = self.offset_table.len() != before;
        if changed {
            self.data_version.next_version(now_ms);
        }
        changed
    }

    /// (topic, group) of every entry.
    pub fn topic_groups(&self) -> impl Iterator<Item = (&str, &str)> {
        self.offset_table.keys().filter_map(|k| split_key(k))
    }
}

/// Splits `topic@group` at the first `@` (topic names cannot contain one).
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    key.split_once(TOPIC_GROUP_SEPARATOR)
}

/// `config/delayOffset.json`: delay level → offset in `SCHEDULE_TOPIC_XXXX` queue
/// `level - 1` that the schedule service has delivered up to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DelayOffsetTable {
    #[serde(deserialize_with = "null_as_default")]
    pub offset_table: BTreeMap<i32, i64>,
    #[serde(deserialize_with = "null_as_default")]
    pub data_version: DataVersion,
}

impl ConfigFile for DelayOffsetTable {
    const FILE_NAME: &'static str = "delayOffset.json";
}

impl DelayOffsetTable {
    pub fn offset(&self, level: i32) -> Option<i64> {
        self.offset_table.get(&level).copied()
    }

    /// Records a level's progress, bumping the data version.
    pub fn set_offset(&mut self, level: i32, offset: i64, now_ms: u64) {
        self.offset_table.insert(level, offset);
        self.data_version.next_version(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{load, persist};
    use super::*;
    use crate::storage::{MemStorage, Storage};

    #[test]
    fn offsets_by_topic_and_group() {
        let mut t = ConsumerOffsetTable::default();
        t.commit_offset("A", "g1", 0, 5, 1);
        t.commit_offset("A", "g1", 1, 7, 2);
        t.commit_offset("B", "g1", 0, 1, 3);
        t.commit_offset("A", "g2", 0, 9, 4);
        assert_eq!(t.query_offset("A", "g1", 1), Some(7));
        assert_eq!(t.query_offset("A", "g1", 2), None);
        assert_eq!(t.queue_offsets("A", "g1").map(BTreeMap::len), Some(2));
        assert_eq!(t.data_version.counter, 4);
        let pairs: Vec<_> = t.topic_groups().collect();
        assert_eq!(pairs, vec![("A", "g1"), ("A", "g2"), ("B", "g1")]);
        assert!(t.remove_group("g1", 5));
        assert!(!t.remove_group("g1", 6));
        assert!(t.remove_topic("A", 7));
        assert!(t.offset_table.is_empty());
        assert_eq!(t.data_version.counter, 6);
    }

    #[test]
    fn written_with_quoted_keys_and_read_back() {
        let s = MemStorage::new();
        let mut t = ConsumerOffsetTable::default();
        t.commit_offset("TopicTest", "cg1", 3, 1190, 1);
        persist(&s, &t).unwrap();
        let len = s.len("config/consumerOffset.json").unwrap().unwrap();
        let text = s.read_at("config/consumerOffset.json", 0, len).unwrap();
        let text = std::str::from_utf8(&text).unwrap();
        assert!(text.contains("\"TopicTest@cg1\""), "{text}");
        assert!(text.contains("\"3\": 1190"), "{text}");
        assert_eq!(load::<ConsumerOffsetTable, _>(&s).unwrap(), Some(t));

        let mut d = DelayOffsetTable::default();
        d.set_offset(1, 0, 5);
        d.set_offset(2, 37, 6);
        persist(&s, &d).unwrap();
        assert_eq!(load::<DelayOffsetTable, _>(&s).unwrap(), Some(d));
    }
}
