//! [`ConsumerOffsetTable`]: committed consumer offsets per `topic@group` and queue (Java
//! `ConsumerOffsetManager`, protocol reference §10.3), with the server-side reset offsets an
//! admin sets and the last pull offsets GET_CONSUME_STATS reports.
//!
//! Commits overwrite, lower values included, as Java does (a client that rewinds on purpose must
//! win); a lowered commit is logged and counted. QUERY_CONSUMER_OFFSET's answer depends on store
//! facts this table does not have, so [`ConsumerOffsetTable::query_for_client`] takes them as an
//! argument ([`QueueStart`]).
//!
//! It only keeps state: the broker persists [`ConsumerOffsetTable::to_persist`] to
//! `consumerOffset.json` when [`ConsumerOffsetTable::is_dirty`], every
//! [`FLUSH_CONSUMER_OFFSET_INTERVAL_MS`] and at shutdown. What it leaves out: static-topic offset
//! rewriting and the scan that drops offsets of unsubscribed topics.

use std::collections::{BTreeMap, BTreeSet};

use crate::body::{ConsumerOffsetSerializeWrapper, DataVersion};

/// Committed offsets, reset offsets and pull offsets, each keyed `topic@group` then queue id.
#[derive(Clone, Debug)]
pub struct ConsumerOffsetTable {
    offsets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// Offsets an admin reset to, served until the next pull takes them (Java
    /// `resetOffsetTable`, used when `useServerSideResetOffset`).
    resets: BTreeMap<String, BTreeMap<i32, i64>>,
    /// `nextBeginOffset` of each queue's last pull; never persisted.
    pulls: BTreeMap<String, BTreeMap<i32, i64>>,
    data_version: DataVersion,
    /// Commits since the last version bump; Java bumps every [`VERSION_STEP_COMMITS`].
    commits_since_bump: u64,
    /// Commits that set a queue below its previous value (allowed, but worth knowing).
    lowered_commits: u64,
    use_server_side_reset: bool,
    dirty: bool,
}

/// What the store knows about a queue's first message, for [`ConsumerOffsetTable::query_for_client`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueStart {
    /// The queue's min offset (Java `getMinOffsetInQueue`).
    pub min_offset: i64,
    /// The message at queue offset 0 is still in memory (Java `checkInMemByConsumeOffset(topic,
    /// queue, 0, 1)`); a consumer starting there does not read cold data.
    pub first_in_memory: bool,
}

/// QUERY_CONSUMER_OFFSET's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetQuery {
    /// SUCCESS with this offset.
    Found(i64),
    /// QUERY_NOT_FOUND: the client applies its consume-from-where policy.
    NotFound(NotFoundReason),
}

/// Why no offset was returned; each has the remark the broker sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotFoundReason {
    /// The request said `setZeroIfNotFound=false`.
    ZeroNotWanted,
    /// The queue no longer starts at offset 0 in memory, so 0 would be a guess.
    QueueStartUnavailable,
}

impl NotFoundReason {
    pub fn remark(self) -> &'static str {
        match self {
            NotFoundReason::ZeroNotWanted => {
                "no committed offset, and the request asked not to default to zero"
            }
            NotFoundReason::QueueStartUnavailable => {
                "no committed offset; this group may be starting for the first time"
            }
        }
    }
}

impl Default for ConsumerOffsetTable {
    fn default() -> ConsumerOffsetTable {
        ConsumerOffsetTable::new(true)
    }
}

impl ConsumerOffsetTable {
    /// An empty table; `use_server_side_reset` is Java `useServerSideResetOffset` (default true).
    pub fn new(use_server_side_reset: bool) -> ConsumerOffsetTable {
        ConsumerOffsetTable {
            offsets: BTreeMap::new(),
            resets: BTreeMap::new(),
            pulls: BTreeMap::new(),
            data_version: DataVersion::default(),
            commits_since_bump: 0,
            lowered_commits: 0,
            use_server_side_reset,
            dirty: false,
        }
    }

    /// Replaces the committed offsets with the persisted ones (Java's `decode`).
    pub fn load(&mut self, persisted: ConsumerOffsetSerializeWrapper) {
        self.offsets = persisted.offset_table;
        self.data_version = persisted.data_version.unwrap_or_default();
        self.dirty = false;
    }

    /// The `consumerOffset.json` content.
    pub fn to_persist(&self) -> ConsumerOffsetSerializeWrapper {
        ConsumerOffsetSerializeWrapper {
            data_version: Some(self.data_version),
            offset_table: self.offsets.clone(),
        }
    }

    /// Changed since the last [`ConsumerOffsetTable::mark_persisted`].
    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub fn mark_persisted(&mut self) {
        self.dirty = false;
    }

    pub fn data_version(&self) -> DataVersion {
        self.data_version
    }

    /// How many commits lowered a queue's offset since start.
    pub fn lowered_commits(&self) -> u64 {
        self.lowered_commits
    }

    /// UPDATE_CONSUMER_OFFSET (and a pull's commit flag): sets the offset, whatever it was.
    /// Returns the previous value.
    pub fn commit(
        &mut self,
        group: &str,
        topic: &str,
        queue_id: i32,
        offset: i64,
        now_ms: u64,
    ) -> Option<i64> {
        let key = ConsumerOffsetSerializeWrapper::key(topic, group);
        let previous = self
            .offsets
            .entry(key)
            .or_default()
            .insert(queue_id, offset);
        if let Some(previous) = previous.filter(|&p| offset < p) {
            self.lowered_commits += 1;
            tracing::debug!(
                group,
                topic,
                queue_id,
                previous,
                offset,
                "consumer offset moved back"
            );
        }
        self.commits_since_bump += 1;
        if self.commits_since_bump >= VERSION_STEP_COMMITS {
            self.commits_since_bump = 0;
            self.bump(now_ms);
        }
        self.dirty = true;
        previous
    }

    /// The committed offset, or the pending reset offset when server-side reset is on (Java
    /// `queryOffset`, `None` for its -1).
    pub fn query(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        let key = ConsumerOffsetSerializeWrapper::key(topic, group);
        if self.use_server_side_reset {
            if let Some(&reset) = self.resets.get(&key).and_then(|m| m.get(&queue_id)) {
                return Some(reset);
            }
        }
        self.offsets.get(&key)?.get(&queue_id).copied()
    }

    /// QUERY_CONSUMER_OFFSET (§10.3): a stored offset ≥ 0 is found; otherwise
    /// `set_zero_if_not_found == Some(false)` is not found; otherwise 0 when the queue still
    /// starts at 0 in memory; otherwise not found. A missing header field means "set zero".
    pub fn query_for_client(
        &self,
        group: &str,
        topic: &str,
        queue_id: i32,
        set_zero_if_not_found: Option<bool>,
        start: QueueStart,
    ) -> OffsetQuery {
        if let Some(offset) = self.query(group, topic, queue_id).filter(|&o| o >= 0) {
            return OffsetQuery::Found(offset);
        }
        if set_zero_if_not_found == Some(false) {
            OffsetQuery::NotFound(NotFoundReason::ZeroNotWanted)
        } else if start.min_offset <= 0 && start.first_in_memory {
            OffsetQuery::Found(0)
        } else {
            OffsetQuery::NotFound(NotFoundReason::QueueStartUnavailable)
        }
    }

    /// All committed offsets of a group on a topic.
    pub fn offsets(&self, group: &str, topic: &str) -> Option<&BTreeMap<i32, i64>> {
        self.offsets
            .get(&ConsumerOffsetSerializeWrapper::key(topic, group))
    }

    /// Admin reset (server-side): the queue answers `offset` to queries until a pull takes it
    /// with [`ConsumerOffsetTable::take_reset`], and the committed offset is overwritten too.
    /// Negative ids or offsets and empty names are ignored (returns false), as in Java.
    pub fn assign_reset(&mut self, group: &str, topic: &str, queue_id: i32, offset: i64) -> bool {
        if group.is_empty() || topic.is_empty() || queue_id < 0 || offset < 0 {
            return false;
        }
        let key = ConsumerOffsetSerializeWrapper::key(topic, group);
        self.resets
            .entry(key.clone())
            .or_default()
            .insert(queue_id, offset);
        self.offsets
            .entry(key)
            .or_default()
            .insert(queue_id, offset);
        self.dirty = true;
        true
    }

    /// A reset is pending: UPDATE_CONSUMER_OFFSET is then acknowledged but ignored, so a client
    /// still running cannot undo the reset.
    pub fn has_reset(&self, group: &str, topic: &str, queue_id: i32) -> bool {
        let key = ConsumerOffsetSerializeWrapper::key(topic, group);
        self.resets
            .get(&key)
            .is_some_and(|m| m.contains_key(&queue_id))
    }

    /// The pull path consumes a pending reset (Java `queryThenEraseResetOffset`).
    pub fn take_reset(&mut self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        let key = ConsumerOffsetSerializeWrapper::key(topic, group);
        let map = self.resets.get_mut(&key)?;
        let offset = map.remove(&queue_id);
        if map.is_empty() {
            self.resets.remove(&key);
        }
        offset
    }

    /// Records a pull's `nextBeginOffset` (for ConsumeStats' `pullOffset`).
    pub fn commit_pull(&mut self, group: &str, topic: &str, queue_id: i32, offset: i64) {
        let key = ConsumerOffsetSerializeWrapper::key(topic, group);
        self.pulls.entry(key).or_default().insert(queue_id, offset);
    }

    /// The last pull offset, else the committed one.
    pub fn query_pull(&self, group: &str, topic: &str, queue_id: i32) -> Option<i64> {
        let key = ConsumerOffsetSerializeWrapper::key(topic, group);
        match self.pulls.get(&key).and_then(|m| m.get(&queue_id)) {
            Some(&offset) => Some(offset),
            None => self.query(group, topic, queue_id),
        }
    }

    /// Topics a group has offsets for.
    pub fn topics_of_group(&self, group: &str) -> BTreeSet<String> {
        self.keys()
            .filter(|(_, g)| *g == group)
            .map(|(t, _)| t.to_string())
            .collect()
    }

    /// Groups with offsets on a topic.
    pub fn groups_of_topic(&self, topic: &str) -> BTreeSet<String> {
        self.keys()
            .filter(|(t, _)| *t == topic)
            .map(|(_, g)| g.to_string())
            .collect()
    }

    /// DELETE_SUBSCRIPTIONGROUP with offset cleaning: drops every table's entries of `group`.
    pub fn remove_group(&mut self, group: &str, now_ms: u64) {
        let before = self.offsets.len();
        for table in [&mut self.offsets, &mut self.resets, &mut self.pulls] {
            table.retain(|key, _| split_key(key).is_none_or(|(_, g)| g != group));
        }
        if self.offsets.len() != before {
            self.bump(now_ms);
        }
    }

    /// DELETE_TOPIC_IN_BROKER: drops every table's entries of `topic`.
    pub fn remove_topic(&mut self, topic: &str, now_ms: u64) {
        let before = self.offsets.len();
        for table in [&mut self.offsets, &mut self.resets, &mut self.pulls] {
            table.retain(|key, _| split_key(key).is_none_or(|(t, _)| t != topic));
        }
        if self.offsets.len() != before {
            self.bump(now_ms);
        }
    }

    fn keys(&self) -> impl Iterator<Item = (&str, &str)> {
        self.offsets.keys().filter_map(|k| split_key(k))
    }

    fn bump(&mut self, now_ms: u64) {
        self.data_version.counter += 1;
        self.data_version.timestamp = i64::try_from(now_ms).unwrap_or(i64::MAX);
        self.dirty = true;
    }
}

/// `topic@group` -> (topic, group). Java splits on every `@` and ignores keys that do not give
/// exactly two parts; topic and group names cannot contain `@`.
fn split_key(key: &str) -> Option<(&str, &str)> {
    let (topic, group) = key.split_once('@')?;
    (!group.contains('@')).then_some((topic, group))
}

/// How often the broker persists offsets (Java `flushConsumerOffsetInterval`).
pub const FLUSH_CONSUMER_OFFSET_INTERVAL_MS: u64 = 5_000;
/// Commits per data-version bump (Java `consumerOffsetUpdateVersionStep`).
pub const VERSION_STEP_COMMITS: u64 = 500;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WARM: QueueStart = QueueStart {
        min_offset: 0,
        first_in_memory: true,
    };

    #[test]
    fn commit_overwrites_and_counts_lowered() {
        let mut t = ConsumerOffsetTable::default();
        assert_eq!(t.commit("g", "T", 0, 10, 1), None);
        assert!(t.is_dirty());
        assert_eq!(t.commit("g", "T", 0, 5, 2), Some(10));
        assert_eq!(t.query("g", "T", 0), Some(5));
        assert_eq!(t.lowered_commits(), 1);
        assert_eq!(t.query("g", "T", 1), None);
        assert_eq!(t.query("other", "T", 0), None);
        t.mark_persisted();
        assert!(!t.is_dirty());
    }

    #[test]
    fn query_for_client_follows_the_rule() {
        let mut t = ConsumerOffsetTable::default();
        let cold = QueueStart {
            min_offset: 0,
            first_in_memory: false,
        };
        let moved = QueueStart {
            min_offset: 100,
            first_in_memory: true,
        };
        assert_eq!(
            t.query_for_client("g", "T", 0, None, WARM),
            OffsetQuery::Found(0)
        );
        assert_eq!(
            t.query_for_client("g", "T", 0, Some(true), WARM),
            OffsetQuery::Found(0)
        );
        assert_eq!(
            t.query_for_client("g", "T", 0, Some(false), WARM),
            OffsetQuery::NotFound(NotFoundReason::ZeroNotWanted)
        );
        assert_eq!(
            t.query_for_client("g", "T", 0, None, cold),
            OffsetQuery::NotFound(NotFoundReason::QueueStartUnavailable)
        );
        assert_eq!(
            t.query_for_client("g", "T", 0, None, moved),
            OffsetQuery::NotFound(NotFoundReason::QueueStartUnavailable)
        );
        // A negative stored offset counts as none.
        t.commit("g", "T", 0, -1, 0);
        assert_eq!(
            t.query_for_client("g", "T", 0, None, WARM),
            OffsetQuery::Found(0)
        );
        t.commit("g", "T", 0, 42, 0);
        assert_eq!(
            t.query_for_client("g", "T", 0, Some(false), moved),
            OffsetQuery::Found(42)
        );
    }

    #[test]
    fn server_side_reset_wins_until_taken() {
        let mut t = ConsumerOffsetTable::default();
        t.commit("g", "T", 0, 50, 0);
        assert!(t.assign_reset("g", "T", 0, 7));
        assert!(!t.assign_reset("g", "T", -1, 7));
        assert!(t.has_reset("g", "T", 0));
        assert_eq!(t.query("g", "T", 0), Some(7));
        assert_eq!(t.take_reset("g", "T", 0), Some(7));
        assert!(!t.has_reset("g", "T", 0));
        assert_eq!(t.query("g", "T", 0), Some(7));
        let mut off = ConsumerOffsetTable::new(false);
        off.commit("g", "T", 0, 50, 0);
        off.resets.entry("T@g".into()).or_default().insert(0, 1);
        assert_eq!(off.query("g", "T", 0), Some(50));
    }

    #[test]
    fn pull_offsets_fall_back_to_commits() {
        let mut t = ConsumerOffsetTable::default();
        t.commit("g", "T", 0, 3, 0);
        assert_eq!(t.query_pull("g", "T", 0), Some(3));
        t.commit_pull("g", "T", 0, 9);
        assert_eq!(t.query_pull("g", "T", 0), Some(9));
        assert!(!t.to_persist().encode().is_empty());
    }

    #[test]
    fn removal_by_group_and_topic() {
        let mut t = ConsumerOffsetTable::default();
        t.commit("g1", "T1", 0, 1, 0);
        t.commit("g1", "T2", 0, 1, 0);
        t.commit("g2", "T1", 0, 1, 0);
        assert_eq!(
            t.topics_of_group("g1"),
            BTreeSet::from(["T1".into(), "T2".into()])
        );
        assert_eq!(
            t.groups_of_topic("T1"),
            BTreeSet::from(["g1".into(), "g2".into()])
        );
        t.remove_group("g1", 5);
        assert_eq!(t.groups_of_topic("T1"), BTreeSet::from(["g2".into()]));
        assert_eq!(t.data_version().counter, 1);
        t.remove_topic("T1", 6);
        assert!(t.to_persist().offset_table.is_empty());
    }

    #[test]
    fn version_bumps_every_step() {
        let mut t = ConsumerOffsetTable::default();
        for i in 0..VERSION_STEP_COMMITS {
            t.commit("g", "T", 0, i as i64, 77);
        }
        assert_eq!(t.data_version().counter, 1);
        assert_eq!(t.data_version().timestamp, 77);
    }

    proptest! {
        #[test]
        fn persisted_form_round_trips(
            commits in prop::collection::vec(("[a-z]{1,3}", "[A-Z]{1,3}", 0i32..8, any::<i64>()), 0..40)
        ) {
            let mut t = ConsumerOffsetTable::default();
            for (group, topic, queue_id, offset) in &commits {
                t.commit(group, topic, *queue_id, *offset, 1);
            }
            let bytes = t.to_persist().encode();
            let mut back = ConsumerOffsetTable::default();
            back.load(ConsumerOffsetSerializeWrapper::decode(&bytes).unwrap());
            prop_assert_eq!(back.to_persist(), t.to_persist());
            for (group, topic, queue_id, _) in &commits {
                prop_assert_eq!(back.query(group, topic, *queue_id), t.query(group, topic, *queue_id));
            }
        }
    }
}
