//! [`RouteTable`]: what a name server knows about brokers and topics (Java
//! `RouteInfoManager`, protocol reference §17).
//!
//! Five tables, all ordered maps so every listing and every scan is deterministic:
//! - topic -> broker name -> [`QueueData`] (`topicQueueTable`);
//! - broker name -> [`BrokerData`], the master and slave addresses (`brokerAddrTable`);
//! - cluster name -> broker names (`clusterAddrTable`);
//! - (cluster, broker address) -> [`BrokerLiveInfo`], when the broker last showed signs of life
//!   and on which connection (`brokerLiveTable`);
//! - (cluster, broker address) -> filter server addresses (`filterServerTable`);
//!
//! plus topic -> broker name -> static-topic mapping, carried into routes as received.
//!
//! Invariants kept between calls: every [`BrokerData`] holds at least one address; every
//! cluster's set of broker names is non-empty; every topic has at least one [`QueueData`].
//!
//! Time is an argument: liveness compares `now_ms` with the last refresh, and
//! [`RouteTable::scan_inactive`] hands back the connections to close instead of closing them.
//!
//! What it leaves out: NOTIFY_MIN_BROKER_ID_CHANGE (Java's `notifyMinBrokerIdChanged`, off by
//! default), the controller, and the asynchronous batching of unregistrations (they apply at
//! once here, which a requester cannot tell apart).

use std::collections::{BTreeMap, BTreeSet};

use crate::body::{
    BrokerData, BrokerMemberGroup, ClusterInfo, DataVersion, PermName, QueueData, TopicConfig,
    TopicConfigAndMappingSerializeWrapper, TopicList, TopicQueueMappingInfo, TopicRouteData,
};
use crate::header::UnRegisterBrokerRequestHeader;
use crate::role::ConnId;

/// How long a broker may stay silent before it is dropped, unless its registration says
/// otherwise (Java `DEFAULT_BROKER_CHANNEL_EXPIRED_TIME`).
pub const BROKER_CHANNEL_EXPIRED_MS_DEFAULT: u64 = 120_000;

/// The broker id of a master (Java `MixAll.MASTER_ID`).
pub const MASTER_ID: i64 = 0;

/// Topics of this prefix keep their real replica ids in routes, acting master or not (Java
/// `TopicValidator.SYNC_BROKER_MEMBER_GROUP_PREFIX`).
pub const SYNC_BROKER_MEMBER_GROUP_PREFIX: &str = "rmq_sys_SYNC_BROKER_MEMBER_";

/// One broker process as the liveness tables key it (Java `BrokerAddrInfo`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BrokerAddrInfo {
    pub cluster_name: String,
    /// `ip:port` clients connect to.
    pub broker_addr: String,
}

impl BrokerAddrInfo {
    pub fn new(cluster_name: &str, broker_addr: &str) -> BrokerAddrInfo {
        BrokerAddrInfo {
            cluster_name: cluster_name.to_owned(),
            broker_addr: broker_addr.to_owned(),
        }
    }
}

/// When a broker last showed signs of life, and what it registered (Java `BrokerLiveInfo`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerLiveInfo {
    /// Last REGISTER_BROKER, QUERY_DATA_VERSION or BROKER_HEARTBEAT, in wall-clock ms.
    pub last_update_ms: u64,
    /// Silence longer than this expires the broker.
    pub heartbeat_timeout_ms: u64,
    /// The topic-table version of the last registration.
    pub data_version: DataVersion,
    /// The connection the last registration came on; its close unregisters the broker.
    pub conn: ConnId,
    /// `ip:haPort` its slaves replicate from.
    pub ha_server_addr: String,
}

/// A decoded REGISTER_BROKER request: header, zone and body together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerRegistration {
    pub cluster_name: String,
    pub broker_addr: String,
    pub broker_name: String,
    /// 0 for a master, 1.. for slaves.
    pub broker_id: i64,
    pub ha_server_addr: String,
    /// The `__ZONE_NAME` extField.
    pub zone_name: Option<String>,
    /// `None` takes [`BROKER_CHANNEL_EXPIRED_MS_DEFAULT`].
    pub heartbeat_timeout_ms: Option<u64>,
    /// Present only from 5.x brokers; `None` marks an old broker, which never acts as master.
    pub enable_acting_master: Option<bool>,
    pub topics: TopicConfigAndMappingSerializeWrapper,
    /// `None` (bodies older than V3_0_11 have no list) leaves the filter servers alone.
    pub filter_server_list: Option<Vec<String>>,
    pub conn: ConnId,
}

/// What became of a registration. Java answers the first two SUCCESS and the last one
/// SYSTEM_ERROR "register broker failed".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// Recorded. A slave learns where its live master is.
    Registered {
        ha_server_addr: Option<String>,
        master_addr: Option<String>,
    },
    /// Another address holds this broker id with a newer controller epoch
    /// (`stateVersion`): nothing was recorded and the newcomer's liveness entry is dropped.
    StaleStateVersion,
    /// A single-topic (incremental) registration from a broker id not registered yet; the full
    /// registration must come first.
    IncrementalBeforeFull,
}

/// A broker expired by [`RouteTable::scan_inactive`], and the connection to close.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpiredBroker {
    pub broker: BrokerAddrInfo,
    pub conn: ConnId,
}

/// The name server's route state. See the module docs.
#[derive(Clone, Debug, Default)]
pub struct RouteTable {
    topic_queue_table: BTreeMap<String, BTreeMap<String, QueueData>>,
    broker_addr_table: BTreeMap<String, BrokerData>,
    cluster_addr_table: BTreeMap<String, BTreeSet<String>>,
    broker_live_table: BTreeMap<BrokerAddrInfo, BrokerLiveInfo>,
    filter_server_table: BTreeMap<BrokerAddrInfo, Vec<String>>,
    topic_queue_mapping_info_table: BTreeMap<String, BTreeMap<String, TopicQueueMappingInfo>>,
    /// Java `deleteTopicWithBrokerRegistration`: a master's registration removes its topics
    /// that the registration no longer lists.
    delete_topic_with_broker_registration: bool,
    /// Java `supportActingMaster`: routes present the lowest slave as master while a broker
    /// name has none.
    support_acting_master: bool,
}

impl RouteTable {
    pub fn new(delete_topic_with_broker_registration: bool, support_acting_master: bool) -> Self {
        RouteTable {
            delete_topic_with_broker_registration,
            support_acting_master,
            ..RouteTable::default()
        }
    }

    /// REGISTER_BROKER (§17.2). Checks come before any change, so a refused registration
    /// leaves the table as it was.
    pub fn register_broker(&mut self, reg: BrokerRegistration, now_ms: u64) -> RegisterOutcome {
        let key = BrokerAddrInfo::new(&reg.cluster_name, &reg.broker_addr);
        if self.is_stale_state_version(&reg) {
            tracing::warn!(
                ?key,
                broker_id = reg.broker_id,
                "registration older than the broker id's holder, ignored"
            );
            self.broker_live_table.remove(&key);
            return RegisterOutcome::StaleStateVersion;
        }
        let id_known = self
            .broker_addr_table
            .get(&reg.broker_name)
            .is_some_and(|data| data.broker_addrs.contains_key(&reg.broker_id));
        if !id_known && reg.topics.topic_config_table.len() == 1 {
            tracing::warn!(
                ?key,
                broker_id = reg.broker_id,
                "single-topic registration before a full one"
            );
            return RegisterOutcome::IncrementalBeforeFull;
        }

        let (register_first, is_prime_slave) = self.record_broker_addr(&reg);
        let acting_master = self.broker_acting_master(&reg.broker_name);
        if reg.broker_id == MASTER_ID || is_prime_slave {
            // The prime slave stands in for an absent master but must not take writes.
            self.update_topic_routes(&reg, &key, register_first, is_prime_slave && acting_master);
        }

        let heartbeat_timeout_ms = reg
            .heartbeat_timeout_ms
            .unwrap_or(BROKER_CHANNEL_EXPIRED_MS_DEFAULT);
        let live = BrokerLiveInfo {
            last_update_ms: now_ms,
            heartbeat_timeout_ms,
            data_version: reg.topics.data_version,
            conn: reg.conn,
            ha_server_addr: reg.ha_server_addr.clone(),
        };
        if self.broker_live_table.insert(key.clone(), live).is_none() {
            tracing::info!(?key, ha_server_addr = %reg.ha_server_addr, "new broker registered");
        }
        let outcome = self.master_of(&reg);
        match reg.filter_server_list {
            Some(list) if list.is_empty() => {
                self.filter_server_table.remove(&key);
            }
            Some(list) => {
                self.filter_server_table.insert(key, list);
            }
            None => {}
        }
        outcome
    }

    /// UNREGISTER_BROKER, expiry and connection loss (§17.3): drops the addresses, then the
    /// broker names left without any, then their queues.
    pub fn unregister_brokers(&mut self, requests: &[UnRegisterBrokerRequestHeader]) {
        let mut removed = BTreeSet::new();
        let mut reduced = BTreeSet::new();
        for request in requests {
            let key = BrokerAddrInfo::new(&request.cluster_name, &request.broker_addr);
            let was_live = self.broker_live_table.remove(&key).is_some();
            self.filter_server_table.remove(&key);
            let mut name_emptied = false;
            if let Some(data) = self.broker_addr_table.get_mut(&request.broker_name) {
                data.broker_addrs
                    .retain(|_, addr| *addr != request.broker_addr);
                name_emptied = data.broker_addrs.is_empty();
            }
            tracing::info!(?key, was_live, name_emptied, "unregister broker");
            if !name_emptied {
                reduced.insert(request.broker_name.clone());
                continue;
            }
            self.broker_addr_table.remove(&request.broker_name);
            if let Some(names) = self.cluster_addr_table.get_mut(&request.cluster_name) {
                names.remove(&request.broker_name);
                if names.is_empty() {
                    self.cluster_addr_table.remove(&request.cluster_name);
                }
            }
            removed.insert(request.broker_name.clone());
        }
        self.clean_topics(&removed, &reduced);
    }

    /// Refreshes a broker's liveness (QUERY_DATA_VERSION, BROKER_HEARTBEAT); unknown brokers
    /// are ignored.
    pub fn refresh(&mut self, cluster_name: &str, broker_addr: &str, now_ms: u64) {
        let key = BrokerAddrInfo::new(cluster_name, broker_addr);
        if let Some(live) = self.broker_live_table.get_mut(&key) {
            live.last_update_ms = now_ms;
        }
    }

    /// The topic-table version a broker last registered.
    pub fn data_version(&self, cluster_name: &str, broker_addr: &str) -> Option<&DataVersion> {
        let key = BrokerAddrInfo::new(cluster_name, broker_addr);
        self.broker_live_table
            .get(&key)
            .map(|live| &live.data_version)
    }

    /// Whether `offered` differs from what the broker last registered (an unknown broker or a
    /// missing version counts as changed).
    pub fn is_broker_topic_config_changed(
        &self,
        cluster_name: &str,
        broker_addr: &str,
        offered: Option<&DataVersion>,
    ) -> bool {
        match (self.data_version(cluster_name, broker_addr), offered) {
            (Some(held), Some(offered)) => held != offered,
            _ => true,
        }
    }

    /// Expires every broker silent for longer than its timeout at `now_ms` and returns them
    /// with the connections to close (Java `scanNotActiveBroker`). Expiry is strict: a broker
    /// last seen at `t` with timeout `d` is still alive at `t + d`.
    pub fn scan_inactive(&mut self, now_ms: u64) -> Vec<ExpiredBroker> {
        let expired: Vec<ExpiredBroker> = self
            .broker_live_table
            .iter()
            .filter(|(_, live)| {
                live.last_update_ms
                    .saturating_add(live.heartbeat_timeout_ms)
                    < now_ms
            })
            .map(|(broker, live)| ExpiredBroker {
                broker: broker.clone(),
                conn: live.conn,
            })
            .collect();
        for gone in &expired {
            tracing::warn!(broker = ?gone.broker, "broker channel expired");
            self.destroy(&gone.broker);
        }
        expired
    }

    /// Unregisters every broker whose last registration came on `conn`, which has closed
    /// (Java `onChannelDestroy`). Returns them.
    pub fn on_connection_closed(&mut self, conn: ConnId) -> Vec<BrokerAddrInfo> {
        let gone: Vec<BrokerAddrInfo> = self
            .broker_live_table
            .iter()
            .filter(|(_, live)| live.conn == conn)
            .map(|(broker, _)| broker.clone())
            .collect();
        for broker in &gone {
            tracing::info!(?broker, ?conn, "broker connection closed");
            self.destroy(broker);
        }
        gone
    }

    /// GET_ROUTEINFO_BY_TOPIC (§17.4): `None` if the topic has no queue on a known broker.
    /// `orderTopicConf` is left for the caller, who owns the KV store.
    pub fn topic_route(&self, topic: &str) -> Option<TopicRouteData> {
        let queues = self.topic_queue_table.get(topic)?;
        let mut route = TopicRouteData {
            queue_datas: queues.values().cloned().collect(),
            ..TopicRouteData::default()
        };
        for name in queues.keys() {
            let Some(data) = self.broker_addr_table.get(name) else {
                continue;
            };
            route.broker_datas.push(data.clone());
            for addr in data.broker_addrs.values() {
                let key = BrokerAddrInfo::new(&data.cluster, addr);
                if let Some(servers) = self.filter_server_table.get(&key) {
                    route
                        .filter_server_table
                        .insert(addr.clone(), servers.clone());
                }
            }
        }
        if route.broker_datas.is_empty() {
            return None;
        }
        route.topic_queue_mapping_by_broker =
            self.topic_queue_mapping_info_table.get(topic).cloned();
        if self.support_acting_master && !topic.starts_with(SYNC_BROKER_MEMBER_GROUP_PREFIX) {
            present_acting_masters(&mut route);
        }
        Some(route)
    }

    /// GET_BROKER_CLUSTER_INFO.
    pub fn cluster_info(&self) -> ClusterInfo {
        ClusterInfo {
            broker_addr_table: self.broker_addr_table.clone(),
            cluster_addr_table: self.cluster_addr_table.clone(),
        }
    }

    /// GET_ALL_TOPIC_LIST_FROM_NAMESERVER.
    pub fn all_topics(&self) -> TopicList {
        TopicList {
            broker_addr: None,
            topic_list: self.topic_queue_table.keys().cloned().collect(),
        }
    }

    /// GET_TOPICS_BY_CLUSTER: topics with queues on any broker of `cluster_name` (empty for an
    /// unknown cluster).
    pub fn topics_by_cluster(&self, cluster_name: &str) -> TopicList {
        let names = self.cluster_addr_table.get(cluster_name);
        let topic_list = self
            .topic_queue_table
            .iter()
            .filter(|(_, queues)| names.is_some_and(|n| n.iter().any(|b| queues.contains_key(b))))
            .map(|(topic, _)| topic.clone())
            .collect();
        TopicList {
            broker_addr: None,
            topic_list,
        }
    }

    /// GET_SYSTEM_TOPIC_LIST_FROM_NS: every cluster name and broker name (each doubles as a
    /// system topic), and one broker address to ask for the rest.
    pub fn system_topics(&self) -> TopicList {
        let mut topic_list = BTreeSet::new();
        for (cluster, names) in &self.cluster_addr_table {
            topic_list.insert(cluster.clone());
            topic_list.extend(names.iter().cloned());
        }
        let broker_addr = self
            .broker_addr_table
            .values()
            .find_map(|data| data.broker_addrs.values().next().cloned());
        TopicList {
            broker_addr,
            topic_list,
        }
    }

    /// GET_UNIT_TOPIC_LIST, GET_HAS_UNIT_SUB_TOPIC_LIST, GET_HAS_UNIT_SUB_UNUNIT_TOPIC_LIST:
    /// topics whose (first) queue data's `topicSysFlag` passes `keep`.
    pub fn topics_with_sys_flag(&self, keep: impl Fn(i32) -> bool) -> TopicList {
        let topic_list = self
            .topic_queue_table
            .iter()
            .filter(|(_, queues)| {
                queues
                    .values()
                    .next()
                    .is_some_and(|q| keep(q.topic_sys_flag))
            })
            .map(|(topic, _)| topic.clone())
            .collect();
        TopicList {
            broker_addr: None,
            topic_list,
        }
    }

    /// DELETE_TOPIC_IN_NAMESRV without a cluster.
    pub fn delete_topic(&mut self, topic: &str) {
        self.topic_queue_table.remove(topic);
    }

    /// DELETE_TOPIC_IN_NAMESRV with a cluster: only that cluster's brokers lose the topic.
    pub fn delete_topic_in_cluster(&mut self, topic: &str, cluster_name: &str) {
        let Some(names) = self.cluster_addr_table.get(cluster_name) else {
            return;
        };
        let Some(queues) = self.topic_queue_table.get_mut(topic) else {
            return;
        };
        queues.retain(|broker_name, _| !names.contains(broker_name));
        if queues.is_empty() {
            self.topic_queue_table.remove(topic);
        }
    }

    /// REGISTER_TOPIC_IN_NAMESRV: puts `queue_datas` under `topic`, replacing per broker name.
    /// Ignored whole if any names a broker that is not registered.
    pub fn register_topic(&mut self, topic: &str, queue_datas: Vec<QueueData>) {
        if queue_datas.is_empty() {
            return;
        }
        if let Some(unknown) = queue_datas
            .iter()
            .find(|q| !self.broker_addr_table.contains_key(&q.broker_name))
        {
            tracing::warn!(topic, broker_name = %unknown.broker_name, "register topic names an unknown broker");
            return;
        }
        let queues = self.topic_queue_table.entry(topic.to_owned()).or_default();
        for queue in queue_datas {
            queues.insert(queue.broker_name.clone(), queue);
        }
    }

    /// WIPE_WRITE_PERM_OF_BROKER: clears WRITE on every queue of `broker_name`; returns how
    /// many topics it touched.
    pub fn wipe_write_perm(&mut self, broker_name: &str) -> usize {
        self.update_perm(broker_name, |perm| perm & !PermName::PERM_WRITE)
    }

    /// ADD_WRITE_PERM_OF_BROKER: sets every queue of `broker_name` to read-write (6); returns
    /// how many topics it touched.
    pub fn add_write_perm(&mut self, broker_name: &str) -> usize {
        self.update_perm(broker_name, |_| PermName::PERM_READ | PermName::PERM_WRITE)
    }

    /// GET_BROKER_MEMBER_GROUP: the addresses of `broker_name` (none if unknown).
    pub fn broker_member_group(&self, cluster_name: &str, broker_name: &str) -> BrokerMemberGroup {
        BrokerMemberGroup {
            broker_addrs: self
                .broker_addr_table
                .get(broker_name)
                .map(|data| data.broker_addrs.clone())
                .unwrap_or_default(),
            broker_name: broker_name.to_owned(),
            cluster: cluster_name.to_owned(),
        }
    }

    /// The replicas of one broker name.
    pub fn broker_data(&self, broker_name: &str) -> Option<&BrokerData> {
        self.broker_addr_table.get(broker_name)
    }

    /// The liveness entry of one broker process.
    pub fn broker_live(&self, broker: &BrokerAddrInfo) -> Option<&BrokerLiveInfo> {
        self.broker_live_table.get(broker)
    }

    /// The queues of `topic` on `broker_name`.
    pub fn queue_data(&self, topic: &str, broker_name: &str) -> Option<&QueueData> {
        self.topic_queue_table.get(topic)?.get(broker_name)
    }

    /// Whether another address holds `reg`'s broker id with a newer `stateVersion` (a
    /// controller epoch) than the registration carries.
    fn is_stale_state_version(&self, reg: &BrokerRegistration) -> bool {
        let Some(held_addr) = self
            .broker_addr_table
            .get(&reg.broker_name)
            .and_then(|data| data.broker_addrs.get(&reg.broker_id))
        else {
            return false;
        };
        if *held_addr == reg.broker_addr {
            return false;
        }
        let held = BrokerAddrInfo::new(&reg.cluster_name, held_addr);
        self.broker_live_table.get(&held).is_some_and(|live| {
            live.data_version.state_version > reg.topics.data_version.state_version
        })
    }

    /// Records the cluster membership and the address under its id. Returns whether this is the
    /// address's first registration under that id, and whether the broker is the "prime slave"
    /// (a 5.x slave holding the lowest id while no master is registered).
    fn record_broker_addr(&mut self, reg: &BrokerRegistration) -> (bool, bool) {
        self.cluster_addr_table
            .entry(reg.cluster_name.clone())
            .or_default()
            .insert(reg.broker_name.clone());
        let mut register_first = false;
        let data = self
            .broker_addr_table
            .entry(reg.broker_name.clone())
            .or_insert_with(|| {
                register_first = true;
                BrokerData {
                    cluster: reg.cluster_name.clone(),
                    broker_name: reg.broker_name.clone(),
                    ..BrokerData::default()
                }
            });
        data.enable_acting_master = reg.enable_acting_master.unwrap_or(false);
        data.zone_name.clone_from(&reg.zone_name);
        // A slave promoted to master re-registers its address under id 0: one record per
        // address.
        data.broker_addrs
            .retain(|id, addr| *id == reg.broker_id || *addr != reg.broker_addr);
        let previous = data
            .broker_addrs
            .insert(reg.broker_id, reg.broker_addr.clone());
        register_first |= previous.is_none_or(|addr| addr.is_empty());
        let lowest = data.broker_addrs.keys().next().copied();
        let is_prime_slave = reg.enable_acting_master.is_some()
            && reg.broker_id != MASTER_ID
            && lowest == Some(reg.broker_id);
        assert!(!data.broker_addrs.is_empty());
        (register_first, is_prime_slave)
    }

    fn broker_acting_master(&self, broker_name: &str) -> bool {
        self.broker_addr_table
            .get(broker_name)
            .is_some_and(|data| data.enable_acting_master)
    }

    /// Writes the registration's topics into the queue table. A topic is rewritten on a first
    /// registration, when the broker's DataVersion changed, or when it has no queues for this
    /// broker yet. Runs before the liveness entry is replaced, which holds the old version.
    fn update_topic_routes(
        &mut self,
        reg: &BrokerRegistration,
        key: &BrokerAddrInfo,
        register_first: bool,
        wipe_write: bool,
    ) {
        let topics = &reg.topics;
        if self.delete_topic_with_broker_registration
            && topics.topic_queue_mapping_info_map.is_empty()
        {
            self.topic_queue_table.retain(|topic, queues| {
                if !topics.topic_config_table.contains_key(topic) {
                    queues.remove(&reg.broker_name);
                }
                !queues.is_empty()
            });
        }
        let version_changed = self.is_broker_topic_config_changed(
            &key.cluster_name,
            &key.broker_addr,
            Some(&topics.data_version),
        );
        for config in topics.topic_config_table.values() {
            let hosted = self
                .queue_data(&config.topic_name, &reg.broker_name)
                .is_some();
            if register_first || version_changed || !hosted {
                let mut perm = config.perm;
                if wipe_write {
                    perm &= !PermName::PERM_WRITE;
                }
                self.put_queue_data(&reg.broker_name, config, perm);
            }
        }
        if version_changed || register_first {
            for (topic, info) in &topics.topic_queue_mapping_info_map {
                self.topic_queue_mapping_info_table
                    .entry(topic.clone())
                    .or_default()
                    .insert(info.bname.clone(), info.clone());
            }
        }
    }

    fn put_queue_data(&mut self, broker_name: &str, config: &TopicConfig, perm: i32) {
        let queue = QueueData {
            broker_name: broker_name.to_owned(),
            perm,
            read_queue_nums: config.read_queue_nums,
            topic_sys_flag: config.topic_sys_flag,
            write_queue_nums: config.write_queue_nums,
        };
        let queues = self
            .topic_queue_table
            .entry(config.topic_name.clone())
            .or_default();
        match queues.get(broker_name) {
            Some(old) if *old == queue => return,
            Some(old) => {
                tracing::info!(topic = %config.topic_name, ?old, ?queue, "topic route changed");
            }
            None => tracing::info!(topic = %config.topic_name, ?queue, "new topic route"),
        }
        queues.insert(broker_name.to_owned(), queue);
    }

    /// Where a registering slave's master is, if the master is live.
    fn master_of(&self, reg: &BrokerRegistration) -> RegisterOutcome {
        let mut ha_server_addr = None;
        let mut master_addr = None;
        if reg.broker_id != MASTER_ID {
            let master = self
                .broker_addr_table
                .get(&reg.broker_name)
                .and_then(|data| data.broker_addrs.get(&MASTER_ID));
            if let Some(addr) = master {
                let key = BrokerAddrInfo::new(&reg.cluster_name, addr);
                if let Some(live) = self.broker_live_table.get(&key) {
                    ha_server_addr = Some(live.ha_server_addr.clone());
                    master_addr = Some(addr.clone());
                }
            }
        }
        RegisterOutcome::Registered {
            ha_server_addr,
            master_addr,
        }
    }

    /// Unregisters one broker process found by its liveness key. A key whose address no broker
    /// name holds any more (another address took its id) just loses its liveness entry; Java
    /// would keep that entry forever.
    fn destroy(&mut self, broker: &BrokerAddrInfo) {
        let identity = self
            .broker_addr_table
            .values()
            .filter(|data| data.cluster == broker.cluster_name)
            .find_map(|data| {
                data.broker_addrs
                    .iter()
                    .find(|(_, addr)| **addr == broker.broker_addr)
                    .map(|(id, _)| (data.broker_name.clone(), *id))
            });
        match identity {
            Some((broker_name, broker_id)) => {
                self.unregister_brokers(&[UnRegisterBrokerRequestHeader {
                    broker_name,
                    broker_addr: broker.broker_addr.clone(),
                    cluster_name: broker.cluster_name.clone(),
                    broker_id,
                }])
            }
            None => {
                self.broker_live_table.remove(broker);
                self.filter_server_table.remove(broker);
            }
        }
    }

    /// Drops the queues of broker names that lost their last address; for names that still
    /// have some but no master, under acting-master mode, clears WRITE on their queues.
    fn clean_topics(&mut self, removed: &BTreeSet<String>, reduced: &BTreeSet<String>) {
        let headless: BTreeSet<&String> = reduced
            .iter()
            .filter(|name| {
                self.broker_addr_table.get(*name).is_some_and(|data| {
                    data.enable_acting_master && !data.broker_addrs.contains_key(&MASTER_ID)
                })
            })
            .collect();
        self.topic_queue_table.retain(|_, queues| {
            queues.retain(|name, _| !removed.contains(name));
            for (name, queue) in queues.iter_mut() {
                if headless.contains(name) {
                    queue.perm &= !PermName::PERM_WRITE;
                }
            }
            !queues.is_empty()
        });
    }

    /// Checks the invariants the module docs promise; tests call it after every step.
    #[cfg(test)]
    pub(crate) fn assert_invariants(&self) {
        for data in self.broker_addr_table.values() {
            assert!(!data.broker_addrs.is_empty(), "{data:?}");
        }
        for names in self.cluster_addr_table.values() {
            assert!(!names.is_empty());
        }
        for queues in self.topic_queue_table.values() {
            assert!(!queues.is_empty());
        }
    }

    fn update_perm(&mut self, broker_name: &str, update: impl Fn(i32) -> i32) -> usize {
        let mut touched = 0;
        for queues in self.topic_queue_table.values_mut() {
            if let Some(queue) = queues.get_mut(broker_name) {
                queue.perm = update(queue.perm);
                touched += 1;
            }
        }
        touched
    }
}

/// With acting master on: where a broker name has no master and its queues lack WRITE, the
/// lowest slave is presented as id 0 so clients read from it as from a master.
fn present_acting_masters(route: &mut TopicRouteData) {
    let headless = |data: &BrokerData| {
        !data.broker_addrs.is_empty() && !data.broker_addrs.contains_key(&MASTER_ID)
    };
    if !route.broker_datas.iter().any(headless) {
        return;
    }
    for data in &mut route.broker_datas {
        if !headless(data) || !data.enable_acting_master {
            continue;
        }
        let read_only = route
            .queue_datas
            .iter()
            .find(|q| q.broker_name == data.broker_name)
            .is_some_and(|q| !PermName::is_writeable(q.perm));
        if read_only {
            if let Some((_, addr)) = data.broker_addrs.pop_first() {
                data.broker_addrs.insert(MASTER_ID, addr);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::TopicConfig;

    const CLUSTER: &str = "DefaultCluster";

    fn topic(name: &str, queues: i32, perm: i32) -> (String, TopicConfig) {
        let config = TopicConfig {
            topic_name: name.to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm,
            ..TopicConfig::default()
        };
        (name.to_owned(), config)
    }

    fn registration(broker_name: &str, id: i64, addr: &str, conn: u64) -> BrokerRegistration {
        let mut topics = TopicConfigAndMappingSerializeWrapper::default();
        topics
            .topic_config_table
            .extend([topic("TBW102", 8, 7), topic("TopicTest", 4, 6)]);
        topics.data_version = DataVersion {
            counter: 1,
            state_version: 0,
            timestamp: 1_000,
        };
        BrokerRegistration {
            cluster_name: CLUSTER.to_owned(),
            broker_addr: addr.to_owned(),
            broker_name: broker_name.to_owned(),
            broker_id: id,
            ha_server_addr: format!("{addr}-ha"),
            zone_name: None,
            heartbeat_timeout_ms: None,
            enable_acting_master: Some(false),
            topics,
            filter_server_list: Some(Vec::new()),
            conn: ConnId(conn),
        }
    }

    fn registered(outcome: RegisterOutcome) -> (Option<String>, Option<String>) {
        match outcome {
            RegisterOutcome::Registered {
                ha_server_addr,
                master_addr,
            } => (ha_server_addr, master_addr),
            other => panic!("not registered: {other:?}"),
        }
    }

    fn unregister(broker_name: &str, id: i64, addr: &str) -> UnRegisterBrokerRequestHeader {
        UnRegisterBrokerRequestHeader {
            broker_name: broker_name.to_owned(),
            broker_addr: addr.to_owned(),
            cluster_name: CLUSTER.to_owned(),
            broker_id: id,
        }
    }

    fn check_invariants(table: &RouteTable) {
        table.assert_invariants();
    }

    #[test]
    fn registration_creates_cluster_broker_queues_and_liveness() {
        let mut table = RouteTable::default();
        let master = registered(
            table.register_broker(registration("broker-a", 0, "10.0.0.1:10911", 1), 5_000),
        );
        assert_eq!(master, (None, None));
        check_invariants(&table);

        let route = table.topic_route("TopicTest").expect("route");
        assert_eq!(route.queue_datas.len(), 1);
        let queue = &route.queue_datas[0];
        assert_eq!(
            (
                queue.broker_name.as_str(),
                queue.read_queue_nums,
                queue.write_queue_nums,
                queue.perm
            ),
            ("broker-a", 4, 4, 6)
        );
        assert_eq!(
            route.broker_datas[0].broker_addrs,
            BTreeMap::from([(0, "10.0.0.1:10911".to_owned())])
        );
        assert_eq!(route.broker_datas[0].cluster, CLUSTER);
        assert_eq!(
            table.queue_data("TBW102", "broker-a").map(|q| q.perm),
            Some(7)
        );
        assert!(table.topic_route("Unknown").is_none());

        let info = table.cluster_info();
        assert_eq!(
            info.cluster_addr_table[CLUSTER],
            BTreeSet::from(["broker-a".to_owned()])
        );
        let live = table
            .broker_live(&BrokerAddrInfo::new(CLUSTER, "10.0.0.1:10911"))
            .expect("live");
        assert_eq!(live.last_update_ms, 5_000);
        assert_eq!(live.heartbeat_timeout_ms, BROKER_CHANNEL_EXPIRED_MS_DEFAULT);
        assert_eq!(live.conn, ConnId(1));
        assert_eq!(live.data_version.counter, 1);
    }

    #[test]
    fn reregistration_rewrites_topics_only_on_a_new_data_version() {
        let mut table = RouteTable::default();
        table.register_broker(registration("broker-a", 0, "a:1", 1), 0);

        // Same version, different queue count: the name server keeps what it has, as Java
        // trusts an unchanged DataVersion.
        let mut same = registration("broker-a", 0, "a:1", 1);
        same.topics
            .topic_config_table
            .insert("TopicTest".into(), topic("TopicTest", 8, 6).1);
        registered(table.register_broker(same, 10));
        assert_eq!(
            table
                .queue_data("TopicTest", "broker-a")
                .map(|q| q.read_queue_nums),
            Some(4)
        );
        // A topic this broker does not host yet is added even under the same version.
        let mut added = registration("broker-a", 0, "a:1", 1);
        added
            .topics
            .topic_config_table
            .extend([topic("Fresh", 2, 6)]);
        registered(table.register_broker(added, 20));
        assert_eq!(
            table
                .queue_data("Fresh", "broker-a")
                .map(|q| q.read_queue_nums),
            Some(2)
        );

        let mut newer = registration("broker-a", 0, "a:1", 1);
        newer.topics.data_version.counter = 2;
        newer
            .topics
            .topic_config_table
            .insert("TopicTest".into(), topic("TopicTest", 8, 6).1);
        registered(table.register_broker(newer, 30));
        assert_eq!(
            table
                .queue_data("TopicTest", "broker-a")
                .map(|q| q.read_queue_nums),
            Some(8)
        );
        let key = BrokerAddrInfo::new(CLUSTER, "a:1");
        assert_eq!(
            table
                .broker_live(&key)
                .map(|l| (l.last_update_ms, l.data_version.counter)),
            Some((30, 2))
        );
        // Topics missing from a registration stay (deleteTopicWithBrokerRegistration is off).
        assert!(table.queue_data("Fresh", "broker-a").is_some());
        check_invariants(&table);
    }

    #[test]
    fn delete_topic_with_broker_registration_drops_unlisted_topics() {
        let mut table = RouteTable::new(true, false);
        let mut first = registration("broker-a", 0, "a:1", 1);
        first.topics.topic_config_table.extend([topic("Old", 1, 6)]);
        table.register_broker(first, 0);
        assert!(table.queue_data("Old", "broker-a").is_some());
        table.register_broker(registration("broker-a", 0, "a:1", 1), 1);
        assert!(table.topic_route("Old").is_none());
        assert!(table.topic_route("TopicTest").is_some());
        check_invariants(&table);
    }

    #[test]
    fn incremental_registration_needs_a_full_one_first() {
        let mut table = RouteTable::default();
        let mut single = registration("broker-a", 0, "a:1", 1);
        single
            .topics
            .topic_config_table
            .retain(|name, _| name == "TopicTest");
        assert_eq!(
            table.register_broker(single.clone(), 0),
            RegisterOutcome::IncrementalBeforeFull
        );
        // Refused without a trace.
        assert!(table.cluster_info().broker_addr_table.is_empty());
        assert!(table.cluster_info().cluster_addr_table.is_empty());

        table.register_broker(registration("broker-a", 0, "a:1", 1), 0);
        single
            .topics
            .topic_config_table
            .insert("Incr".into(), topic("Incr", 2, 6).1);
        single.topics.topic_config_table.remove("TopicTest");
        single.topics.data_version.counter = 2;
        registered(table.register_broker(single, 1));
        assert!(table.queue_data("Incr", "broker-a").is_some());
    }

    #[test]
    fn stale_state_version_is_ignored_and_loses_liveness() {
        let mut table = RouteTable::default();
        let mut holder = registration("broker-a", 0, "a:1", 1);
        holder.topics.data_version.state_version = 5;
        table.register_broker(holder, 0);
        let mut newcomer = registration("broker-a", 0, "b:1", 2);
        newcomer.topics.data_version.state_version = 4;
        assert_eq!(
            table.register_broker(newcomer, 1),
            RegisterOutcome::StaleStateVersion
        );
        assert_eq!(
            table
                .broker_data("broker-a")
                .map(|d| d.broker_addrs[&0].clone()),
            Some("a:1".to_owned())
        );
        assert!(table
            .broker_live(&BrokerAddrInfo::new(CLUSTER, "b:1"))
            .is_none());
    }

    #[test]
    fn slaves_join_broker_data_and_learn_their_master() {
        let mut table = RouteTable::default();
        // A slave of an old (4.x) broker before its master: no master to report, and old
        // slaves never write routes.
        let mut old_slave = registration("broker-a", 1, "a:2", 2);
        old_slave.enable_acting_master = None;
        assert_eq!(
            registered(table.register_broker(old_slave, 0)),
            (None, None)
        );
        assert!(table.topic_route("TopicTest").is_none());
        // A 5.x slave holding the lowest id while no master is registered does ("prime
        // slave"); without acting master its perms stay as registered.
        let mut other = RouteTable::default();
        registered(other.register_broker(registration("broker-a", 1, "a:2", 2), 0));
        assert_eq!(
            other.queue_data("TopicTest", "broker-a").map(|q| q.perm),
            Some(6)
        );

        registered(table.register_broker(registration("broker-a", 0, "a:1", 1), 1));
        let slave = registered(table.register_broker(registration("broker-a", 1, "a:2", 2), 2));
        assert_eq!(slave, (Some("a:1-ha".to_owned()), Some("a:1".to_owned())));

        let route = table.topic_route("TopicTest").expect("route");
        assert_eq!(
            route.broker_datas[0].broker_addrs,
            BTreeMap::from([(0, "a:1".to_owned()), (1, "a:2".to_owned())])
        );
        // A slave promoted to master keeps one record per address.
        registered(table.register_broker(registration("broker-a", 0, "a:2", 2), 3));
        assert_eq!(
            table
                .broker_data("broker-a")
                .map(|d| d.broker_addrs.clone()),
            Some(BTreeMap::from([(0, "a:2".to_owned())]))
        );
        check_invariants(&table);
    }

    #[test]
    fn routes_merge_every_broker_name_hosting_the_topic() {
        let mut table = RouteTable::default();
        table.register_broker(registration("broker-a", 0, "a:1", 1), 0);
        table.register_broker(registration("broker-b", 0, "b:1", 2), 0);
        let mut c = registration("broker-c", 0, "c:1", 3);
        c.cluster_name = "Other".into();
        c.topics.topic_config_table.remove("TopicTest");
        c.topics.topic_config_table.extend([topic("OnlyC", 1, 6)]);
        table.register_broker(c, 0);

        let route = table.topic_route("TopicTest").expect("route");
        let names: Vec<_> = route
            .queue_datas
            .iter()
            .map(|q| q.broker_name.as_str())
            .collect();
        assert_eq!(names, ["broker-a", "broker-b"]);
        let names: Vec<_> = route
            .broker_datas
            .iter()
            .map(|b| b.broker_name.as_str())
            .collect();
        assert_eq!(names, ["broker-a", "broker-b"]);
        assert_eq!(
            table.topic_route("TBW102").map(|r| r.broker_datas.len()),
            Some(3)
        );

        let by_cluster = table.topics_by_cluster(CLUSTER).topic_list;
        assert_eq!(
            by_cluster,
            BTreeSet::from(["TBW102".to_owned(), "TopicTest".to_owned()])
        );
        assert_eq!(
            table.topics_by_cluster("Other").topic_list,
            BTreeSet::from(["OnlyC".to_owned(), "TBW102".to_owned()])
        );
        assert!(table.topics_by_cluster("None").topic_list.is_empty());
        let system = table.system_topics();
        assert_eq!(system.broker_addr.as_deref(), Some("a:1"));
        assert_eq!(system.topic_list.len(), 5);
        assert_eq!(table.all_topics().topic_list.len(), 3);
    }

    #[test]
    fn expiry_is_strictly_after_the_timeout() {
        let mut table = RouteTable::default();
        table.register_broker(registration("broker-a", 0, "a:1", 7), 1_000);
        let mut short = registration("broker-b", 0, "b:1", 8);
        short.heartbeat_timeout_ms = Some(10_000);
        table.register_broker(short, 1_000);

        assert_eq!(table.scan_inactive(11_000), vec![]);
        let gone = table.scan_inactive(11_001);
        assert_eq!(
            gone,
            vec![ExpiredBroker {
                broker: BrokerAddrInfo::new(CLUSTER, "b:1"),
                conn: ConnId(8)
            }]
        );

        // A heartbeat moves the deadline.
        table.refresh(CLUSTER, "a:1", 60_000);
        assert_eq!(table.scan_inactive(121_001), vec![]);
        assert_eq!(table.scan_inactive(180_000), vec![]);
        let gone = table.scan_inactive(180_001);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].conn, ConnId(7));
        assert!(table.topic_route("TopicTest").is_none());
        assert!(table.cluster_info().broker_addr_table.is_empty());
        assert!(table.cluster_info().cluster_addr_table.is_empty());
        assert!(table.all_topics().topic_list.is_empty());
    }

    #[test]
    fn expiry_of_the_default_timeout_is_at_exactly_120_s() {
        let mut table = RouteTable::default();
        table.register_broker(registration("broker-a", 0, "a:1", 7), 0);
        assert!(table.scan_inactive(120_000).is_empty());
        assert_eq!(table.scan_inactive(120_001).len(), 1);
    }

    #[test]
    fn closing_the_registration_connection_removes_only_that_broker() {
        let mut table = RouteTable::default();
        table.register_broker(registration("broker-a", 0, "a:1", 1), 0);
        table.register_broker(registration("broker-a", 1, "a:2", 2), 0);
        table.register_broker(registration("broker-b", 0, "b:1", 3), 0);

        assert!(table.on_connection_closed(ConnId(99)).is_empty());
        assert_eq!(
            table.on_connection_closed(ConnId(1)),
            vec![BrokerAddrInfo::new(CLUSTER, "a:1")]
        );
        // broker-a keeps its slave, so its queues stay.
        assert_eq!(
            table
                .broker_data("broker-a")
                .map(|d| d.broker_addrs.clone()),
            Some(BTreeMap::from([(1, "a:2".to_owned())]))
        );
        assert!(table.queue_data("TopicTest", "broker-a").is_some());
        table.on_connection_closed(ConnId(2));
        assert!(table.broker_data("broker-a").is_none());
        assert!(table.queue_data("TopicTest", "broker-a").is_none());
        assert!(table.queue_data("TopicTest", "broker-b").is_some());
        check_invariants(&table);
    }

    #[test]
    fn a_broker_that_reconnects_is_bound_to_its_new_connection() {
        let mut table = RouteTable::default();
        table.register_broker(registration("broker-a", 0, "a:1", 1), 0);
        table.register_broker(registration("broker-a", 0, "a:1", 2), 1);
        assert!(table.on_connection_closed(ConnId(1)).is_empty());
        assert!(table.topic_route("TopicTest").is_some());
    }

    #[test]
    fn unregister_removes_names_clusters_and_topics() {
        let mut table = RouteTable::default();
        table.register_broker(registration("broker-a", 0, "a:1", 1), 0);
        table.register_broker(registration("broker-b", 0, "b:1", 2), 0);
        table.unregister_brokers(&[unregister("broker-a", 0, "a:1")]);
        assert!(table.broker_data("broker-a").is_none());
        assert_eq!(
            table.topic_route("TopicTest").map(|r| r.queue_datas.len()),
            Some(1)
        );
        table.unregister_brokers(&[
            unregister("broker-b", 0, "b:1"),
            unregister("broker-x", 0, "x:1"),
        ]);
        assert!(table.all_topics().topic_list.is_empty());
        assert!(table.cluster_info().cluster_addr_table.is_empty());
        assert!(table
            .broker_live(&BrokerAddrInfo::new(CLUSTER, "b:1"))
            .is_none());
        check_invariants(&table);
    }

    #[test]
    fn wipe_and_add_write_perm_count_topics() {
        let mut table = RouteTable::default();
        table.register_broker(registration("broker-a", 0, "a:1", 1), 0);
        table.register_broker(registration("broker-b", 0, "b:1", 2), 0);
        assert_eq!(table.wipe_write_perm("broker-a"), 2);
        assert_eq!(
            table.queue_data("TopicTest", "broker-a").map(|q| q.perm),
            Some(4)
        );
        // TBW102 keeps READ and INHERIT.
        assert_eq!(
            table.queue_data("TBW102", "broker-a").map(|q| q.perm),
            Some(5)
        );
        assert_eq!(
            table.queue_data("TopicTest", "broker-b").map(|q| q.perm),
            Some(6)
        );
        assert_eq!(table.add_write_perm("broker-a"), 2);
        assert_eq!(
            table.queue_data("TBW102", "broker-a").map(|q| q.perm),
            Some(6)
        );
        assert_eq!(table.wipe_write_perm("nobody"), 0);
    }

    #[test]
    fn register_and_delete_topics() {
        let mut table = RouteTable::default();
        table.register_broker(registration("broker-a", 0, "a:1", 1), 0);
        let mut other = registration("broker-o", 0, "o:1", 2);
        other.cluster_name = "Other".into();
        table.register_broker(other, 0);
        let queue = |name: &str| QueueData {
            broker_name: name.to_owned(),
            perm: 6,
            read_queue_nums: 2,
            topic_sys_flag: 0,
            write_queue_nums: 2,
        };
        // One unknown broker name voids the whole call.
        table.register_topic("T", vec![queue("broker-a"), queue("ghost")]);
        assert!(table.topic_route("T").is_none());
        table.register_topic("T", vec![queue("broker-a"), queue("broker-o")]);
        assert_eq!(table.topic_route("T").map(|r| r.queue_datas.len()), Some(2));

        table.delete_topic_in_cluster("T", "Other");
        assert_eq!(table.topic_route("T").map(|r| r.queue_datas.len()), Some(1));
        table.delete_topic_in_cluster("T", "NoSuchCluster");
        table.delete_topic_in_cluster("T", CLUSTER);
        assert!(table.topic_route("T").is_none());
        table.delete_topic("TopicTest");
        assert!(table.topic_route("TopicTest").is_none());
        check_invariants(&table);
    }

    #[test]
    fn acting_master_presents_the_lowest_slave_as_master() {
        let mut table = RouteTable::new(false, true);
        let with_acting = |id, addr: &str, conn| {
            let mut reg = registration("broker-a", id, addr, conn);
            reg.enable_acting_master = Some(true);
            reg
        };
        table.register_broker(with_acting(0, "a:0", 1), 0);
        table.register_broker(with_acting(1, "a:1", 2), 0);
        table.register_broker(with_acting(2, "a:2", 3), 0);
        table.on_connection_closed(ConnId(1));
        // The master left: queues become read-only and slave 1 is shown as id 0.
        assert_eq!(
            table.queue_data("TopicTest", "broker-a").map(|q| q.perm),
            Some(4)
        );
        let route = table.topic_route("TopicTest").expect("route");
        assert_eq!(
            route.broker_datas[0].broker_addrs,
            BTreeMap::from([(0, "a:1".to_owned()), (2, "a:2".to_owned())])
        );
        let sync = format!("{SYNC_BROKER_MEMBER_GROUP_PREFIX}broker-a");
        table.register_topic(
            &sync,
            vec![QueueData {
                broker_name: "broker-a".into(),
                perm: 4,
                ..QueueData::default()
            }],
        );
        let route = table.topic_route(&sync).expect("route");
        assert!(!route.broker_datas[0].broker_addrs.contains_key(&0));
        // The prime slave's registration writes its topics without WRITE.
        let mut prime = with_acting(1, "a:1", 2);
        prime
            .topics
            .topic_config_table
            .extend([topic("Prime", 1, 6)]);
        prime.topics.data_version.counter = 9;
        table.register_broker(prime, 1);
        assert_eq!(
            table.queue_data("Prime", "broker-a").map(|q| q.perm),
            Some(4)
        );
    }

    #[test]
    fn filter_servers_follow_registrations_into_routes() {
        let mut table = RouteTable::default();
        let mut reg = registration("broker-a", 0, "a:1", 1);
        reg.filter_server_list = Some(vec!["f:1".into()]);
        table.register_broker(reg, 0);
        let route = table.topic_route("TopicTest").expect("route");
        assert_eq!(
            route.filter_server_table,
            BTreeMap::from([("a:1".to_owned(), vec!["f:1".to_owned()])])
        );
        // An old-format body (no list) leaves them; an empty list clears them.
        let mut old = registration("broker-a", 0, "a:1", 1);
        old.filter_server_list = None;
        table.register_broker(old, 1);
        assert_eq!(
            table
                .topic_route("TopicTest")
                .map(|r| r.filter_server_table.len()),
            Some(1)
        );
        table.register_broker(registration("broker-a", 0, "a:1", 1), 2);
        assert!(table
            .topic_route("TopicTest")
            .is_some_and(|r| r.filter_server_table.is_empty()));
    }

    #[test]
    fn member_group_and_unit_topic_lists() {
        let mut table = RouteTable::default();
        let mut reg = registration("broker-a", 0, "a:1", 1);
        reg.topics.topic_config_table.extend([topic("Unit", 1, 6)]);
        if let Some(config) = reg.topics.topic_config_table.get_mut("Unit") {
            config.topic_sys_flag = 1;
        }
        table.register_broker(reg, 0);
        table.register_broker(registration("broker-a", 1, "a:2", 2), 0);
        let group = table.broker_member_group(CLUSTER, "broker-a");
        assert_eq!(group.broker_addrs.len(), 2);
        assert_eq!(group.cluster, CLUSTER);
        assert!(table
            .broker_member_group(CLUSTER, "nobody")
            .broker_addrs
            .is_empty());
        let units = table.topics_with_sys_flag(|flag| flag & 1 == 1).topic_list;
        assert_eq!(units, BTreeSet::from(["Unit".to_owned()]));
    }
}
