//! [`ConsumerTable`]: the consumer groups clients announce by HEART_BEAT (Java `ConsumerManager`
//! and `ConsumerGroupInfo`, protocol reference §10.1, §10.2): each group's live connections,
//! subscriptions, consume type, message model and consume-from-where.
//!
//! Every change of membership reports which connections to send NOTIFY_CONSUMER_IDS_CHANGED to,
//! so the broker only has to transmit. As in Java, a clustering group is notified when a
//! connection joins, leaves or closes, or when its set of subscribed topics changes (a newer
//! `subVersion` of the same topic replaces the subscription silently); broadcasting groups are
//! never notified, and register/unregister honour the group's
//! `notifyConsumerIdsChangedEnable` while connection loss ignores it.
//!
//! Departure from Java: the idle scan ([`ConsumerTable::scan_expired`]) also notifies the
//! remaining members (protocol reference §10.1); Java only closes the channel, which leaves the
//! others to notice at their next 20 s rebalance.
//!
//! What it leaves out: the compensation table for consumers without heartbeats (proxy, POP),
//! heartbeat v2 fingerprints (the broker's; see `register`'s `without_sub`). Each group keeps
//! the compiled SQL92 filters of its subscriptions (`crate::filter::register_filter`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};

use super::topic_config::retry_topic;
use crate::body::{
    Connection, ConsumeFromWhere, ConsumeType, ConsumerConnection, ConsumerData, MessageModel,
    SubscriptionData,
};
use crate::filter::{register_filter, ConsumerFilterData};
use crate::role::ConnId;
use crate::LanguageCode;

/// One client connection as a group member (Java `ClientChannelInfo`); producers use it too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientChannelInfo {
    pub conn: ConnId,
    pub client_id: String,
    /// From the heartbeat command's header.
    pub language: LanguageCode,
    /// The client's `MQVersion` ordinal, from the heartbeat command's header.
    pub version: i32,
    /// The last heartbeat on this connection.
    pub last_update_ms: u64,
}

impl ClientChannelInfo {
    /// A channel seen now; the broker builds one per HEART_BEAT from the command header and
    /// `HeartbeatData.clientID`.
    pub fn new(
        conn: ConnId,
        client_id: &str,
        language: LanguageCode,
        version: i32,
        now_ms: u64,
    ) -> ClientChannelInfo {
        ClientChannelInfo {
            conn,
            client_id: client_id.to_string(),
            language,
            version,
            last_update_ms: now_ms,
        }
    }

    /// The GET_*_CONNECTION_LIST entry; `client_addr` is the connection's peer `ip:port`.
    pub fn to_connection(&self, client_addr: String) -> Connection {
        Connection {
            client_addr,
            client_id: self.client_id.clone(),
            language: self.language,
            version: self.version,
        }
    }
}

/// One consumer group as the broker sees it.
#[derive(Clone, Debug)]
pub struct ConsumerGroupInfo {
    group_name: String,
    /// Topic -> the latest subscription any member sent.
    subscriptions: BTreeMap<String, SubscriptionData>,
    /// Topic -> the compiled filter of a non-TAG subscription (Java `ConsumerFilterManager`).
    filters: BTreeMap<String, ConsumerFilterData>,
    channels: BTreeMap<ConnId, ClientChannelInfo>,
    pub consume_type: ConsumeType,
    pub message_model: MessageModel,
    pub consume_from_where: ConsumeFromWhere,
    pub last_update_ms: u64,
}

impl ConsumerGroupInfo {
    pub fn group_name(&self) -> &str {
        &self.group_name
    }

    /// Members' client ids, in connection order (clients sort them before rebalancing).
    pub fn client_ids(&self) -> Vec<String> {
        self.channels
            .values()
            .map(|c| c.client_id.clone())
            .collect()
    }

    pub fn conns(&self) -> Vec<ConnId> {
        self.channels.keys().copied().collect()
    }

    pub fn channels(&self) -> impl Iterator<Item = &ClientChannelInfo> {
        self.channels.values()
    }

    pub fn subscriptions(&self) -> &BTreeMap<String, SubscriptionData> {
        &self.subscriptions
    }

    /// The ConsumerConnection body (GET_CONSUMER_CONNECTION_LIST); `addr_of` gives each
    /// connection's peer `ip:port`.
    pub fn to_consumer_connection(&self, addr_of: impl Fn(ConnId) -> String) -> ConsumerConnection {
        ConsumerConnection {
            connection_set: self
                .channels
                .values()
                .map(|c| c.to_connection(addr_of(c.conn)))
                .collect(),
            consume_from_where: self.consume_from_where,
            consume_type: self.consume_type,
            message_model: self.message_model,
            subscription_table: self.subscriptions.clone(),
        }
    }

    fn is_broadcasting(&self) -> bool {
        self.message_model == MessageModel::Broadcasting
    }

    /// Java `updateChannel`: true when the connection is new to the group.
    fn update_channel(
        &mut self,
        info: ClientChannelInfo,
        consumer: &ConsumerData,
        now_ms: u64,
    ) -> bool {
        self.consume_type = consumer.consume_type;
        self.message_model = consumer.message_model;
        self.consume_from_where = consumer.consume_from_where;
        self.last_update_ms = now_ms;
        match self.channels.get_mut(&info.conn) {
            None => {
                self.channels.insert(
                    info.conn,
                    ClientChannelInfo {
                        last_update_ms: now_ms,
                        ..info
                    },
                );
                true
            }
            Some(old) => {
                if old.client_id != info.client_id {
                    tracing::warn!(group = %self.group_name, old = %old.client_id, new = %info.client_id, "client id changed on a connection");
                    *old = info;
                }
                old.last_update_ms = now_ms;
                false
            }
        }
    }

    /// Java `updateSubscription`: the sent set replaces the table; true when a topic was added
    /// or dropped. A newer `subVersion` of a known topic replaces it without counting as a
    /// change, and an older one is ignored.
    fn update_subscriptions(&mut self, subs: &[SubscriptionData], now_ms: u64) -> bool {
        let mut changed = false;
        let mut sent = BTreeSet::new();
        for sub in subs {
            sent.insert(sub.topic.as_str());
            let mut filter = self.filters.remove(&sub.topic);
            register_filter(&mut filter, sub);
            if let Some(filter) = filter {
                self.filters.insert(sub.topic.clone(), filter);
            }
            match self.subscriptions.get_mut(&sub.topic) {
                None => {
                    self.subscriptions.insert(sub.topic.clone(), sub.clone());
                    changed = true;
                }
                Some(old) if sub.sub_version > old.sub_version => *old = sub.clone(),
                Some(_) => {}
            }
        }
        let before = self.subscriptions.len();
        self.subscriptions
            .retain(|topic, _| sent.contains(topic.as_str()));
        self.filters
            .retain(|topic, _| sent.contains(topic.as_str()));
        changed |= self.subscriptions.len() != before;
        self.last_update_ms = now_ms;
        changed
    }

    /// Who to notify after a change: everyone left, unless broadcasting.
    fn notify_list(&self) -> Vec<ConnId> {
        if self.is_broadcasting() {
            Vec::new()
        } else {
            self.conns()
        }
    }
}

/// What a registration changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// The connection joined the group.
    pub channel_added: bool,
    /// The group's set of subscribed topics changed.
    pub subscriptions_changed: bool,
    /// Send NOTIFY_CONSUMER_IDS_CHANGED (oneway, header `consumerGroup`) to these, the
    /// registering connection included, as Java does.
    pub notify: Vec<ConnId>,
}

/// Members a group lost to a closed or idle connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupChange {
    pub group: String,
    /// The channels removed; after an idle scan the broker closes their connections.
    pub removed: Vec<ClientChannelInfo>,
    /// Send NOTIFY_CONSUMER_IDS_CHANGED to these remaining members.
    pub notify: Vec<ConnId>,
}

/// Consumer group name -> group.
#[derive(Clone, Debug)]
pub struct ConsumerTable {
    groups: BTreeMap<String, ConsumerGroupInfo>,
    channel_expiry_ms: u64,
}

impl Default for ConsumerTable {
    fn default() -> ConsumerTable {
        ConsumerTable::new(CHANNEL_EXPIRY_MS)
    }
}

impl ConsumerTable {
    /// `channel_expiry_ms` is Java `channelExpiredTimeout` ([`CHANNEL_EXPIRY_MS`]).
    pub fn new(channel_expiry_ms: u64) -> ConsumerTable {
        ConsumerTable {
            groups: BTreeMap::new(),
            channel_expiry_ms,
        }
    }

    /// One ConsumerData of a HEART_BEAT. The broker first looks the group up in its
    /// subscription groups (skipping the group when none may be created) and creates its
    /// `%RETRY%` topic; `notify_enabled` is the group's `notifyConsumerIdsChangedEnable`.
    /// `without_sub` (heartbeat v2) keeps the previous subscriptions.
    pub fn register(
        &mut self,
        channel: ClientChannelInfo,
        consumer: &ConsumerData,
        without_sub: bool,
        notify_enabled: bool,
        now_ms: u64,
    ) -> RegisterOutcome {
        let group = self
            .groups
            .entry(consumer.group_name.clone())
            .or_insert_with(|| ConsumerGroupInfo {
                group_name: consumer.group_name.clone(),
                subscriptions: BTreeMap::new(),
                filters: BTreeMap::new(),
                channels: BTreeMap::new(),
                consume_type: consumer.consume_type,
                message_model: consumer.message_model,
                consume_from_where: consumer.consume_from_where,
                last_update_ms: now_ms,
            });
        let channel_added = group.update_channel(channel, consumer, now_ms);
        let subscriptions_changed =
            !without_sub && group.update_subscriptions(&consumer.subscription_data_set, now_ms);
        let notify = if (channel_added || subscriptions_changed) && notify_enabled {
            group.notify_list()
        } else {
            Vec::new()
        };
        RegisterOutcome {
            channel_added,
            subscriptions_changed,
            notify,
        }
    }

    /// UNREGISTER_CLIENT for a consumer group, on the connection it arrived on. Returns the
    /// members to notify (none if the connection was not a member, the group is broadcasting,
    /// `notify_enabled` is false, or nobody is left).
    pub fn unregister(&mut self, group: &str, conn: ConnId, notify_enabled: bool) -> Vec<ConnId> {
        let Some(info) = self.groups.get_mut(group) else {
            return Vec::new();
        };
        let removed = info.channels.remove(&conn).is_some();
        let notify = if removed && notify_enabled {
            info.notify_list()
        } else {
            Vec::new()
        };
        if info.channels.is_empty() {
            self.groups.remove(group);
        }
        notify
    }

    /// The connection closed: it leaves every group it was in.
    pub fn on_conn_closed(&mut self, conn: ConnId) -> Vec<GroupChange> {
        self.remove_channels(|c| c.conn == conn)
    }

    /// Java `scanNotActiveChannel` (every 10 s): removes channels without a heartbeat for more
    /// than the expiry. The broker closes the removed connections.
    pub fn scan_expired(&mut self, now_ms: u64) -> Vec<GroupChange> {
        let expiry = self.channel_expiry_ms;
        self.remove_channels(|c| now_ms.saturating_sub(c.last_update_ms) > expiry)
    }

    pub fn group(&self, group: &str) -> Option<&ConsumerGroupInfo> {
        self.groups.get(group)
    }

    /// All groups, by name.
    pub fn groups(&self) -> impl Iterator<Item = &ConsumerGroupInfo> {
        self.groups.values()
    }

    /// GET_CONSUMER_LIST_BY_GROUP: the members' client ids; empty when the group is unknown
    /// (the broker then answers SYSTEM_ERROR "no consumer for this group").
    pub fn consumer_ids(&self, group: &str) -> Vec<String> {
        self.groups
            .get(group)
            .map(ConsumerGroupInfo::client_ids)
            .unwrap_or_default()
    }

    /// The group's subscription to `topic`, for the pull path. A clustering group is always
    /// subscribed to its own `%RETRY%` topic with `*`, even when its client's heartbeat leaves
    /// that out; the made-up subscription's `subVersion` is `i64::MAX` so it is never older than
    /// the one a pull request carries.
    pub fn subscription(&self, group: &str, topic: &str) -> Option<Cow<'_, SubscriptionData>> {
        let info = self.groups.get(group)?;
        if let Some(sub) = info.subscriptions.get(topic) {
            return Some(Cow::Borrowed(sub));
        }
        if info.message_model == MessageModel::Clustering && topic == retry_topic(group) {
            return Some(Cow::Owned(SubscriptionData {
                topic: topic.to_string(),
                sub_string: SUB_ALL.to_string(),
                sub_version: i64::MAX,
                ..SubscriptionData::default()
            }));
        }
        None
    }

    /// The group's compiled filter for `topic`, when it subscribed with SQL92 and the expression
    /// compiled (Java `ConsumerFilterManager.get`).
    pub fn filter_data(&self, group: &str, topic: &str) -> Option<&ConsumerFilterData> {
        self.groups.get(group)?.filters.get(topic)
    }

    /// Groups subscribed to `topic` (Java `queryTopicConsumeByWho`).
    pub fn groups_of_topic(&self, topic: &str) -> BTreeSet<String> {
        self.groups
            .values()
            .filter(|g| g.subscriptions.contains_key(topic))
            .map(|g| g.group_name.clone())
            .collect()
    }

    /// A member's channel by client id.
    pub fn find_channel(&self, group: &str, client_id: &str) -> Option<&ClientChannelInfo> {
        self.groups
            .get(group)?
            .channels
            .values()
            .find(|c| c.client_id == client_id)
    }

    fn remove_channels(
        &mut self,
        mut doomed: impl FnMut(&ClientChannelInfo) -> bool,
    ) -> Vec<GroupChange> {
        let mut changes = Vec::new();
        for info in self.groups.values_mut() {
            let gone: Vec<ConnId> = info
                .channels
                .values()
                .filter(|c| doomed(c))
                .map(|c| c.conn)
                .collect();
            if gone.is_empty() {
                continue;
            }
            let removed = gone
                .iter()
                .filter_map(|conn| info.channels.remove(conn))
                .collect();
            tracing::info!(group = %info.group_name, ?gone, "consumer channels removed");
            changes.push(GroupChange {
                group: info.group_name.clone(),
                removed,
                notify: info.notify_list(),
            });
        }
        self.groups.retain(|_, info| !info.channels.is_empty());
        changes
    }
}

/// Java `channelExpiredTimeout`: a client silent this long is dropped.
pub const CHANNEL_EXPIRY_MS: u64 = 120_000;
/// How often the broker scans for idle clients.
pub const CHANNEL_SCAN_INTERVAL_MS: u64 = 10_000;
/// The subscription expression for every tag.
pub const SUB_ALL: &str = "*";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sub(topic: &str, version: i64) -> SubscriptionData {
        SubscriptionData {
            topic: topic.into(),
            sub_string: "*".into(),
            sub_version: version,
            ..SubscriptionData::default()
        }
    }

    fn consumer(group: &str, subs: Vec<SubscriptionData>) -> ConsumerData {
        ConsumerData {
            group_name: group.into(),
            subscription_data_set: subs,
            ..ConsumerData::default()
        }
    }

    fn channel(conn: u64, client: &str, now: u64) -> ClientChannelInfo {
        ClientChannelInfo::new(ConnId(conn), client, LanguageCode::Java, 479, now)
    }

    #[test]
    fn joining_and_subscription_changes_notify_everyone() {
        let mut t = ConsumerTable::default();
        let data = consumer("g", vec![sub("T", 1)]);
        let first = t.register(channel(1, "c1", 0), &data, false, true, 0);
        assert!(first.channel_added && first.subscriptions_changed);
        assert_eq!(first.notify, vec![ConnId(1)]);
        let second = t.register(channel(2, "c2", 0), &data, false, true, 0);
        assert_eq!(second.notify, vec![ConnId(1), ConnId(2)]);
        // A repeat heartbeat changes nothing.
        assert_eq!(
            t.register(channel(2, "c2", 5), &data, false, true, 5),
            RegisterOutcome::default()
        );
        // A newer subVersion replaces silently; a new topic notifies.
        let newer = consumer("g", vec![sub("T", 2)]);
        assert!(t
            .register(channel(1, "c1", 6), &newer, false, true, 6)
            .notify
            .is_empty());
        assert_eq!(t.subscription("g", "T").unwrap().sub_version, 2);
        let older = consumer("g", vec![sub("T", 1)]);
        t.register(channel(1, "c1", 6), &older, false, true, 6);
        assert_eq!(t.subscription("g", "T").unwrap().sub_version, 2);
        let more = consumer("g", vec![sub("T", 2), sub("U", 1)]);
        assert_eq!(
            t.register(channel(1, "c1", 7), &more, false, true, 7)
                .notify
                .len(),
            2
        );
        assert_eq!(t.groups_of_topic("U"), BTreeSet::from(["g".to_string()]));
        // withoutSub keeps the table.
        let empty = consumer("g", vec![]);
        assert!(
            !t.register(channel(1, "c1", 8), &empty, true, true, 8)
                .subscriptions_changed
        );
        assert!(t.subscription("g", "U").is_some());
        // Dropping a topic is a change.
        assert!(
            t.register(channel(1, "c1", 9), &empty, false, true, 9)
                .subscriptions_changed
        );
        assert!(t.subscription("g", "U").is_none());
        let mut ids = t.consumer_ids("g");
        ids.sort();
        assert_eq!(ids, vec!["c1", "c2"]);
    }

    #[test]
    fn notify_flag_and_broadcasting_silence_notices() {
        let mut t = ConsumerTable::default();
        let data = consumer("g", vec![sub("T", 1)]);
        assert!(t
            .register(channel(1, "c1", 0), &data, false, false, 0)
            .notify
            .is_empty());
        let mut bc = consumer("b", vec![sub("T", 1)]);
        bc.message_model = MessageModel::Broadcasting;
        let outcome = t.register(channel(1, "c1", 0), &bc, false, true, 0);
        assert!(outcome.channel_added && outcome.notify.is_empty());
        t.register(channel(2, "c2", 0), &bc, false, true, 0);
        let changes = t.on_conn_closed(ConnId(1));
        assert_eq!(changes.len(), 2);
        let b = changes.iter().find(|c| c.group == "b").unwrap();
        assert!(b.notify.is_empty());
        assert!(t.group("g").is_none());
    }

    #[test]
    fn unregister_close_and_expiry() {
        let mut t = ConsumerTable::default();
        let data = consumer("g", vec![sub("T", 1)]);
        t.register(channel(1, "c1", 0), &data, false, true, 0);
        t.register(channel(2, "c2", 0), &data, false, true, 0);
        t.register(channel(3, "c3", 0), &data, false, true, 0);
        assert_eq!(
            t.unregister("g", ConnId(1), true),
            vec![ConnId(2), ConnId(3)]
        );
        assert!(t.unregister("g", ConnId(1), true).is_empty());
        let closed = t.on_conn_closed(ConnId(2));
        assert_eq!(closed[0].removed[0].client_id, "c2");
        assert_eq!(closed[0].notify, vec![ConnId(3)]);
        t.register(channel(4, "c4", 100_000), &data, false, true, 100_000);
        assert!(t.scan_expired(CHANNEL_EXPIRY_MS).is_empty());
        let expired = t.scan_expired(CHANNEL_EXPIRY_MS + 1);
        assert_eq!(expired[0].removed[0].conn, ConnId(3));
        assert_eq!(expired[0].notify, vec![ConnId(4)]);
        assert_eq!(t.find_channel("g", "c4").map(|c| c.conn), Some(ConnId(4)));
        assert_eq!(t.unregister("g", ConnId(4), true), Vec::<ConnId>::new());
        assert!(t.group("g").is_none());
        assert!(t.consumer_ids("g").is_empty());
    }

    #[test]
    fn retry_subscription_is_implied_for_clustering() {
        let mut t = ConsumerTable::default();
        t.register(
            channel(1, "c1", 0),
            &consumer("g", vec![sub("T", 1)]),
            false,
            true,
            0,
        );
        let retry = t.subscription("g", "%RETRY%g").unwrap();
        assert_eq!(
            (retry.sub_string.as_str(), retry.sub_version),
            ("*", i64::MAX)
        );
        assert!(t.subscription("g", "%RETRY%h").is_none());
        let mut bc = consumer("b", vec![]);
        bc.message_model = MessageModel::Broadcasting;
        t.register(channel(1, "c1", 0), &bc, false, true, 0);
        assert!(t.subscription("b", "%RETRY%b").is_none());
        let body = t
            .group("g")
            .unwrap()
            .to_consumer_connection(|c| format!("10.0.0.1:{}", c.0));
        assert_eq!(body.connection_set[0].client_addr, "10.0.0.1:1");
        assert_eq!(body.subscription_table.len(), 1);
    }

    proptest! {
        /// Against a model of (group -> set of conns): membership always matches, and a notice
        /// goes out exactly when a clustering group's membership grows.
        #[test]
        fn membership_matches_a_model(ops in prop::collection::vec((0u8..3, 0u64..4, 0u8..2), 1..50)) {
            let mut t = ConsumerTable::default();
            let mut model: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
            for (kind, conn, group) in ops {
                let group = format!("g{group}");
                match kind {
                    0 => {
                        let out = t.register(channel(conn, &format!("c{conn}"), 0), &consumer(&group, vec![sub("T", 1)]), false, true, 0);
                        let added = model.entry(group.clone()).or_default().insert(conn);
                        prop_assert_eq!(out.channel_added, added);
                        prop_assert_eq!(!out.notify.is_empty(), out.channel_added || out.subscriptions_changed);
                    }
                    1 => {
                        let notify = t.unregister(&group, ConnId(conn), true);
                        let set = model.entry(group.clone()).or_default();
                        let removed = set.remove(&conn);
                        prop_assert_eq!(notify.len(), if removed { set.len() } else { 0 });
                    }
                    _ => {
                        t.on_conn_closed(ConnId(conn));
                        for set in model.values_mut() {
                            set.remove(&conn);
                        }
                    }
                }
                model.retain(|_, s| !s.is_empty());
                for (g, conns) in &model {
                    let got: BTreeSet<u64> = t.group(g).unwrap().conns().iter().map(|c| c.0).collect();
                    prop_assert_eq!(&got, conns);
                }
                prop_assert_eq!(t.groups().count(), model.len());
            }
        }
    }
}
