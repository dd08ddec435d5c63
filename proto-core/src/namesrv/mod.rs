//! The name server as a pure state machine: [`NameServer`] answers brokers, clients and admin
//! tools the way Apache RocketMQ's name server does (protocol reference §6.11, §17, §18).
//!
//! - `route_table.rs`: [`RouteTable`], brokers, topics and liveness (Java `RouteInfoManager`).
//! - `kv_config.rs`: [`KvConfig`], the namespaced key-value store (Java `KVConfigManager`).
//! - this file: the request dispatch (Java `DefaultRequestProcessor` and
//!   `ClientRequestProcessor`) and the broker-expiry timer.
//!
//! What it leaves out: KV persistence (`kvConfig.json`; the store is in memory, so a restart
//! forgets it), UPDATE_NAMESRV_CONFIG and GET_NAMESRV_CONFIG (answered "not supported"),
//! `needWaitForService`, NOTIFY_MIN_BROKER_ID_CHANGE, the controller, and the fastjson
//! bare-number route form for old clients (see [`NameServer`]).

mod kv_config;
mod route_table;

use std::collections::{BTreeSet, VecDeque};

use core::net::SocketAddr;

pub use kv_config::{KvConfig, NAMESPACE_ORDER_TOPIC_CONFIG};
pub use route_table::{
    BrokerAddrInfo, BrokerLiveInfo, BrokerRegistration, ExpiredBroker, RegisterOutcome, RouteTable,
    BROKER_CHANNEL_EXPIRED_MS_DEFAULT, MASTER_ID, SYNC_BROKER_MEMBER_GROUP_PREFIX,
};

use crate::body::{
    DataVersion, GetBrokerMemberGroupResponseBody, KVTable, RegisterBrokerBody,
    TopicConfigAndMappingSerializeWrapper, TopicConfigSerializeWrapper, TopicRouteData,
};
use crate::header::{
    decode_header, encode_header, AddWritePermOfBrokerRequestHeader,
    AddWritePermOfBrokerResponseHeader, BrokerHeartbeatRequestHeader, DeleteKVConfigRequestHeader,
    DeleteTopicFromNamesrvRequestHeader, GetBrokerMemberGroupRequestHeader,
    GetKVConfigRequestHeader, GetKVConfigResponseHeader, GetKVListByNamespaceRequestHeader,
    GetRouteInfoRequestHeader, GetTopicsByClusterRequestHeader, PutKVConfigRequestHeader,
    QueryDataVersionRequestHeader, QueryDataVersionResponseHeader, RegisterBrokerRequestHeader,
    RegisterBrokerResponseHeader, RegisterTopicRequestHeader, UnRegisterBrokerRequestHeader,
    WipeWritePermOfBrokerRequestHeader, WipeWritePermOfBrokerResponseHeader, ZONE_NAME,
};
use crate::message::record::body_crc;
use crate::reply::{
    body_error, not_supported, or_system_error, reply, respond, success, RequestError,
};
use crate::role::{ConnId, Role, Transmit};
use crate::{RemotingCommand, RequestCode, ResponseCode};

/// The name server's settings, with Java `NamesrvConfig`'s names and defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamesrvConfig {
    /// `orderMessageEnable` (false): routes carry `orderTopicConf` from the KV namespace
    /// `ORDER_TOPIC_CONFIG`.
    pub order_message_enable: bool,
    /// `returnOrderTopicConfigToBroker` (true): REGISTER_BROKER responses carry that namespace
    /// as a KVTable body, when it exists.
    pub return_order_topic_config_to_broker: bool,
    /// `scanNotActiveBrokerInterval` (5 000 ms): how often silent brokers are expired. Values
    /// below 1 ms count as 1 ms.
    pub scan_not_active_broker_interval_ms: u64,
    /// `supportActingMaster` (false): routes present the lowest slave as master while a broker
    /// name has none.
    pub support_acting_master: bool,
    /// `enableAllTopicList` (true): serve GET_ALL_TOPIC_LIST_FROM_NAMESERVER; otherwise answer
    /// SYSTEM_ERROR "disable".
    pub enable_all_topic_list: bool,
    /// `enableTopicList` (true): the same for GET_TOPICS_BY_CLUSTER and the unit topic lists.
    pub enable_topic_list: bool,
    /// `deleteTopicWithBrokerRegistration` (false): a master's registration removes its topics
    /// that the registration no longer lists.
    pub delete_topic_with_broker_registration: bool,
}

impl Default for NamesrvConfig {
    fn default() -> NamesrvConfig {
        NamesrvConfig {
            order_message_enable: false,
            return_order_topic_config_to_broker: true,
            scan_not_active_broker_interval_ms: 5_000,
            support_acting_master: false,
            enable_all_topic_list: true,
            enable_topic_list: true,
            delete_topic_with_broker_registration: false,
        }
    }
}

/// A RocketMQ name server, driven through [`Role`].
///
/// Calling protocol (see [`crate::role`]):
/// 1. feed events: `handle_connected`, `handle_command` (every request gets its response
///    queued at once, except oneway ones, which get none), `handle_closed` (a broker whose
///    last registration came on that connection is unregistered at once), and
///    `handle_timeout` when [`Role::next_timeout`] has passed (it expires brokers silent
///    for longer than their heartbeat timeout, 120 s by default, and queues a
///    [`Transmit::Close`] for each one's connection);
/// 2. drain [`Role::poll_transmit`] and perform each transmit;
/// 3. re-arm the timer from [`Role::next_timeout`]. Before the first `handle_timeout` it is
///    `Some(0)`: "now".
///
/// Responses echo the request's opaque, set the response flag and say language RUST and our
/// version. A request whose header lacks a field gets SYSTEM_ERROR with the header error as
/// remark; an unknown code gets REQUEST_CODE_NOT_SUPPORTED. Nothing a peer sends panics.
///
/// Routes are always written as standard JSON (`{"0":"…"}` broker ids). Java writes fastjson's
/// bare-number keys to requesters older than V4_9_4 that do not set `acceptStandardJsonOnly`,
/// but every fastjson version reads the quoted keys back as numbers (protocol reference
/// §13.1), so one form serves both.
///
/// ```
/// use core::net::SocketAddr;
/// use proto_core::header::{encode_header, RegisterBrokerRequestHeader};
/// use proto_core::namesrv::{NameServer, NamesrvConfig};
/// use proto_core::role::{ConnId, Role, Transmit};
/// use proto_core::{RemotingCommand, RequestCode, ResponseCode};
///
/// let mut namesrv = NameServer::new(NamesrvConfig::default());
/// let broker = ConnId(1);
/// let remote: SocketAddr = "127.0.0.1:50000".parse().unwrap();
/// namesrv.handle_connected(broker, remote, None, 1_000);
///
/// let mut register = RemotingCommand::request(RequestCode::RegisterBroker.value(), 7);
/// encode_header(&mut register, &RegisterBrokerRequestHeader {
///     broker_name: "broker-a".into(),
///     broker_addr: "127.0.0.1:10911".into(),
///     cluster_name: "DefaultCluster".into(),
///     ha_server_addr: "127.0.0.1:10912".into(),
///     broker_id: 0,
///     heartbeat_timeout_millis: None,
///     enable_acting_master: Some(false),
///     compressed: false,
///     body_crc32: 0,
/// });
/// namesrv.handle_command(broker, register, 1_000);
///
/// let Some(Transmit::Send { conn, cmd }) = namesrv.poll_transmit() else { panic!() };
/// assert_eq!((conn, cmd.opaque, cmd.code), (broker, 7, ResponseCode::Success.value()));
/// assert!(cmd.is_response());
/// assert!(namesrv.poll_transmit().is_none());
///
/// // No heartbeat for 120 s: the next scan drops the broker and closes its connection.
/// namesrv.handle_timeout(1_000);
/// namesrv.handle_timeout(121_001);
/// assert!(matches!(namesrv.poll_transmit(), Some(Transmit::Close { conn, .. }) if conn == broker));
/// assert!(namesrv.route_table().broker_data("broker-a").is_none());
/// ```
#[derive(Debug)]
pub struct NameServer {
    config: NamesrvConfig,
    routes: RouteTable,
    kv: KvConfig,
    /// Responses and closes, oldest first; the driver drains it every turn.
    transmits: VecDeque<Transmit>,
    /// When the next scan for silent brokers is due (0 until the first scan: at once).
    scan_due_ms: u64,
}

impl NameServer {
    pub fn new(config: NamesrvConfig) -> NameServer {
        let routes = RouteTable::new(
            config.delete_topic_with_broker_registration,
            config.support_acting_master,
        );
        NameServer {
            config,
            routes,
            kv: KvConfig::new(),
            transmits: VecDeque::new(),
            scan_due_ms: 0,
        }
    }

    pub fn config(&self) -> &NamesrvConfig {
        &self.config
    }

    /// Brokers, topics and liveness, for inspection.
    pub fn route_table(&self) -> &RouteTable {
        &self.routes
    }

    /// The KV config store, for inspection.
    pub fn kv_config(&self) -> &KvConfig {
        &self.kv
    }

    /// Answers one request. Handlers return `Err` only for undecodable input, which becomes
    /// SYSTEM_ERROR here.
    fn process(&mut self, conn: ConnId, cmd: &RemotingCommand, now_ms: u64) -> RemotingCommand {
        let handled = match RequestCode::from_value(cmd.code) {
            RequestCode::PutKvConfig => self.put_kv_config(cmd),
            RequestCode::GetKvConfig => self.get_kv_config(cmd),
            RequestCode::DeleteKvConfig => self.delete_kv_config(cmd),
            RequestCode::GetKvlistByNamespace => self.kv_list_by_namespace(cmd),
            RequestCode::QueryDataVersion => self.query_data_version(cmd, now_ms),
            RequestCode::RegisterBroker => self.register_broker(conn, cmd, now_ms),
            RequestCode::UnregisterBroker => self.unregister_broker(cmd),
            RequestCode::BrokerHeartbeat => self.broker_heartbeat(cmd, now_ms),
            RequestCode::GetBrokerMemberGroup => self.broker_member_group(cmd),
            RequestCode::GetRouteinfoByTopic => self.route_by_topic(cmd),
            RequestCode::GetBrokerClusterInfo => {
                Ok(success(cmd).with_body(self.routes.cluster_info().encode()))
            }
            RequestCode::WipeWritePermOfBroker => self.wipe_write_perm(cmd),
            RequestCode::AddWritePermOfBroker => self.add_write_perm(cmd),
            RequestCode::GetAllTopicListFromNameserver => Ok(self.all_topics(cmd)),
            RequestCode::DeleteTopicInNamesrv => self.delete_topic(cmd),
            RequestCode::RegisterTopicInNamesrv => self.register_topic(cmd),
            RequestCode::GetTopicsByCluster => self.topics_by_cluster(cmd),
            RequestCode::GetSystemTopicListFromNs => {
                Ok(success(cmd).with_body(self.routes.system_topics().encode()))
            }
            RequestCode::GetUnitTopicList => Ok(self.unit_topics(cmd, |f| f & SYS_FLAG_UNIT != 0)),
            RequestCode::GetHasUnitSubTopicList => {
                Ok(self.unit_topics(cmd, |f| f & SYS_FLAG_UNIT_SUB != 0))
            }
            RequestCode::GetHasUnitSubUnunitTopicList => Ok(self.unit_topics(cmd, |f| {
                f & SYS_FLAG_UNIT == 0 && f & SYS_FLAG_UNIT_SUB != 0
            })),
            _ => Ok(not_supported(cmd)),
        };
        or_system_error(handled, conn, cmd)
    }

    /// REGISTER_BROKER (§17.2).
    fn register_broker(
        &mut self,
        conn: ConnId,
        cmd: &RemotingCommand,
        now_ms: u64,
    ) -> Result<RemotingCommand, RequestError> {
        let header: RegisterBrokerRequestHeader = decode_header(cmd)?;
        if header.body_crc32 != 0 && body_crc(&cmd.body) != header.body_crc32 {
            tracing::warn!(?conn, broker_addr = %header.broker_addr, "register broker: crc32 not match");
            return Ok(reply(cmd, ResponseCode::SystemError, "crc32 not match"));
        }
        let (topics, filter_server_list) = registration_body(cmd, header.compressed)?;
        let registration = BrokerRegistration {
            cluster_name: header.cluster_name,
            broker_addr: header.broker_addr,
            broker_name: header.broker_name,
            broker_id: header.broker_id,
            ha_server_addr: header.ha_server_addr,
            zone_name: cmd.ext(ZONE_NAME).map(str::to_owned),
            // A negative timeout is nonsense; the default applies.
            heartbeat_timeout_ms: header
                .heartbeat_timeout_millis
                .and_then(|ms| u64::try_from(ms).ok()),
            enable_acting_master: header.enable_acting_master,
            topics,
            filter_server_list,
            conn,
        };
        let response_header = match self.routes.register_broker(registration, now_ms) {
            RegisterOutcome::Registered {
                ha_server_addr,
                master_addr,
            } => RegisterBrokerResponseHeader {
                ha_server_addr,
                master_addr,
            },
            // Java answers a silently ignored registration with SUCCESS and no master.
            RegisterOutcome::StaleStateVersion => RegisterBrokerResponseHeader {
                ha_server_addr: None,
                master_addr: None,
            },
            RegisterOutcome::IncrementalBeforeFull => {
                return Ok(reply(
                    cmd,
                    ResponseCode::SystemError,
                    "register broker failed",
                ));
            }
        };
        let mut response = success(cmd);
        encode_header(&mut response, &response_header);
        if self.config.return_order_topic_config_to_broker {
            if let Some(table) = self.kv.namespace(NAMESPACE_ORDER_TOPIC_CONFIG) {
                response.body = KVTable {
                    table: table.clone(),
                }
                .encode()
                .into();
            }
        }
        Ok(response)
    }

    fn unregister_broker(
        &mut self,
        cmd: &RemotingCommand,
    ) -> Result<RemotingCommand, RequestError> {
        let header: UnRegisterBrokerRequestHeader = decode_header(cmd)?;
        self.routes.unregister_brokers(&[header]);
        Ok(success(cmd))
    }

    fn broker_heartbeat(
        &mut self,
        cmd: &RemotingCommand,
        now_ms: u64,
    ) -> Result<RemotingCommand, RequestError> {
        let header: BrokerHeartbeatRequestHeader = decode_header(cmd)?;
        self.routes
            .refresh(&header.cluster_name, &header.broker_addr, now_ms);
        Ok(success(cmd))
    }

    /// QUERY_DATA_VERSION: whether the broker's topic table differs from what it registered;
    /// refreshes its liveness too.
    fn query_data_version(
        &mut self,
        cmd: &RemotingCommand,
        now_ms: u64,
    ) -> Result<RemotingCommand, RequestError> {
        let header: QueryDataVersionRequestHeader = decode_header(cmd)?;
        let offered = if cmd.body.is_empty() {
            None
        } else {
            Some(DataVersion::decode(&cmd.body).map_err(body_error("DataVersion"))?)
        };
        let (cluster, addr) = (&header.cluster_name, &header.broker_addr);
        let changed = self
            .routes
            .is_broker_topic_config_changed(cluster, addr, offered.as_ref());
        self.routes.refresh(cluster, addr, now_ms);
        let mut response = success(cmd);
        if let Some(held) = self.routes.data_version(cluster, addr) {
            response.body = held.encode().into();
        }
        encode_header(&mut response, &QueryDataVersionResponseHeader { changed });
        Ok(response)
    }

    /// GET_ROUTEINFO_BY_TOPIC (§17.4).
    fn route_by_topic(&self, cmd: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: GetRouteInfoRequestHeader = decode_header(cmd)?;
        let Some(mut route) = self.routes.topic_route(&header.topic) else {
            let remark = format!(
                "No topic route info in name server for the topic: {}{FAQ_SUGGESTION}",
                header.topic
            );
            return Ok(reply(cmd, ResponseCode::TopicNotExist, remark));
        };
        if self.config.order_message_enable {
            route.order_topic_conf = self
                .kv
                .get(NAMESPACE_ORDER_TOPIC_CONFIG, &header.topic)
                .map(str::to_owned);
        }
        Ok(success(cmd).with_body(route.encode()))
    }

    fn broker_member_group(&self, cmd: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: GetBrokerMemberGroupRequestHeader = decode_header(cmd)?;
        let group = self
            .routes
            .broker_member_group(&header.cluster_name, &header.broker_name);
        let body = GetBrokerMemberGroupResponseBody {
            broker_member_group: Some(group),
        };
        Ok(success(cmd).with_body(body.encode()))
    }

    fn wipe_write_perm(&mut self, cmd: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: WipeWritePermOfBrokerRequestHeader = decode_header(cmd)?;
        let touched = self.routes.wipe_write_perm(&header.broker_name);
        tracing::info!(broker_name = %header.broker_name, touched, "wipe write perm of broker");
        let mut response = success(cmd);
        let wipe_topic_count = count_i32(touched);
        encode_header(
            &mut response,
            &WipeWritePermOfBrokerResponseHeader { wipe_topic_count },
        );
        Ok(response)
    }

    fn add_write_perm(&mut self, cmd: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: AddWritePermOfBrokerRequestHeader = decode_header(cmd)?;
        let touched = self.routes.add_write_perm(&header.broker_name);
        tracing::info!(broker_name = %header.broker_name, touched, "add write perm of broker");
        let mut response = success(cmd);
        let add_topic_count = count_i32(touched);
        encode_header(
            &mut response,
            &AddWritePermOfBrokerResponseHeader { add_topic_count },
        );
        Ok(response)
    }

    fn all_topics(&self, cmd: &RemotingCommand) -> RemotingCommand {
        if !self.config.enable_all_topic_list {
            return reply(cmd, ResponseCode::SystemError, "disable");
        }
        success(cmd).with_body(self.routes.all_topics().encode())
    }

    fn topics_by_cluster(&self, cmd: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        if !self.config.enable_topic_list {
            return Ok(reply(cmd, ResponseCode::SystemError, "disable"));
        }
        let header: GetTopicsByClusterRequestHeader = decode_header(cmd)?;
        let topics = self.routes.topics_by_cluster(&header.cluster);
        Ok(success(cmd).with_body(topics.encode()))
    }

    fn unit_topics(&self, cmd: &RemotingCommand, keep: impl Fn(i32) -> bool) -> RemotingCommand {
        if !self.config.enable_topic_list {
            return reply(cmd, ResponseCode::SystemError, "disable");
        }
        success(cmd).with_body(self.routes.topics_with_sys_flag(keep).encode())
    }

    fn delete_topic(&mut self, cmd: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: DeleteTopicFromNamesrvRequestHeader = decode_header(cmd)?;
        match header.cluster_name.as_deref() {
            Some(cluster) if !cluster.is_empty() => {
                self.routes.delete_topic_in_cluster(&header.topic, cluster);
            }
            _ => self.routes.delete_topic(&header.topic),
        }
        Ok(success(cmd))
    }

    /// REGISTER_TOPIC_IN_NAMESRV: only the body's `queueDatas` count.
    fn register_topic(&mut self, cmd: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: RegisterTopicRequestHeader = decode_header(cmd)?;
        if !cmd.body.is_empty() {
            let route = TopicRouteData::decode(&cmd.body).map_err(body_error("TopicRouteData"))?;
            self.routes.register_topic(&header.topic, route.queue_datas);
        }
        Ok(success(cmd))
    }

    fn put_kv_config(&mut self, cmd: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: PutKVConfigRequestHeader = decode_header(cmd)?;
        self.kv.put(&header.namespace, &header.key, &header.value);
        Ok(success(cmd))
    }

    fn get_kv_config(&self, cmd: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: GetKVConfigRequestHeader = decode_header(cmd)?;
        let Some(value) = self.kv.get(&header.namespace, &header.key) else {
            let remark = format!(
                "No config item, Namespace: {} Key: {}",
                header.namespace, header.key
            );
            return Ok(reply(cmd, ResponseCode::QueryNotFound, remark));
        };
        let mut response = success(cmd);
        let value = Some(value.to_owned());
        encode_header(&mut response, &GetKVConfigResponseHeader { value });
        Ok(response)
    }

    fn delete_kv_config(&mut self, cmd: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: DeleteKVConfigRequestHeader = decode_header(cmd)?;
        self.kv.delete(&header.namespace, &header.key);
        Ok(success(cmd))
    }

    fn kv_list_by_namespace(&self, cmd: &RemotingCommand) -> Result<RemotingCommand, RequestError> {
        let header: GetKVListByNamespaceRequestHeader = decode_header(cmd)?;
        let Some(table) = self.kv.namespace(&header.namespace) else {
            let remark = format!("No config item, Namespace: {}", header.namespace);
            return Ok(reply(cmd, ResponseCode::QueryNotFound, remark));
        };
        let body = KVTable {
            table: table.clone(),
        };
        Ok(success(cmd).with_body(body.encode()))
    }
}

impl Role for NameServer {
    fn handle_connected(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        dialled: Option<&str>,
        _now_ms: u64,
    ) {
        tracing::debug!(?conn, %remote, ?dialled, "connection opened");
    }

    fn handle_command(&mut self, conn: ConnId, cmd: RemotingCommand, now_ms: u64) {
        if cmd.is_response() {
            // The name server sends no requests, so no response can be ours.
            tracing::debug!(?conn, opaque = cmd.opaque, "unexpected response dropped");
            return;
        }
        let response = self.process(conn, &cmd, now_ms);
        respond(&mut self.transmits, conn, cmd.is_oneway(), response);
    }

    fn handle_closed(&mut self, conn: ConnId, _now_ms: u64) {
        self.routes.on_connection_closed(conn);
    }

    fn handle_peer_failed(&mut self, addr: &str, cmd: &RemotingCommand, _now_ms: u64) {
        tracing::debug!(addr, code = cmd.code, "request to peer failed");
    }

    fn handle_timeout(&mut self, now_ms: u64) {
        if now_ms < self.scan_due_ms {
            return;
        }
        let expired = self.routes.scan_inactive(now_ms);
        // Several brokers may share a connection; close it once.
        let conns: BTreeSet<ConnId> = expired.iter().map(|gone| gone.conn).collect();
        for conn in conns {
            self.transmits.push_back(Transmit::Close {
                conn,
                reason: "broker expired: no heartbeat within its timeout".to_owned(),
            });
        }
        let interval_ms = self.config.scan_not_active_broker_interval_ms.max(1);
        self.scan_due_ms = now_ms.saturating_add(interval_ms);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn next_timeout(&self) -> Option<u64> {
        Some(self.scan_due_ms)
    }
}

/// The topic table and filter servers of a REGISTER_BROKER body. Senders from V3_0_11 on send
/// a RegisterBrokerBody (JSON or compressed); older ones a bare topic table and no filter
/// server list. An empty body is an empty table at DataVersion zero.
fn registration_body(
    cmd: &RemotingCommand,
    compressed: bool,
) -> Result<(TopicConfigAndMappingSerializeWrapper, Option<Vec<String>>), RequestError> {
    if cmd.version >= VERSION_REGISTER_BROKER_BODY {
        if cmd.body.is_empty() {
            return Ok((
                TopicConfigAndMappingSerializeWrapper::default(),
                Some(Vec::new()),
            ));
        }
        let body = RegisterBrokerBody::decode(&cmd.body, compressed)
            .map_err(body_error("RegisterBrokerBody"))?;
        return Ok((
            body.topic_config_serialize_wrapper,
            Some(body.filter_server_list),
        ));
    }
    if cmd.body.is_empty() {
        return Ok((TopicConfigAndMappingSerializeWrapper::default(), None));
    }
    let wrapper = TopicConfigSerializeWrapper::decode(&cmd.body)
        .map_err(body_error("TopicConfigSerializeWrapper"))?;
    Ok((wrapper.into(), None))
}

/// Topic counts go out as Java ints; a table past `i32::MAX` topics cannot exist in memory,
/// but saturating keeps the reply well-formed regardless.
fn count_i32(count: usize) -> i32 {
    i32::try_from(count).unwrap_or(i32::MAX)
}

/// MQVersion V3_0_11: the first sender version whose REGISTER_BROKER body is a
/// RegisterBrokerBody (§3.4).
const VERSION_REGISTER_BROKER_BODY: i32 = 37;

/// Java `TopicSysFlag` bits: unit topic, and topic with unit subscriptions.
const SYS_FLAG_UNIT: i32 = 1;
const SYS_FLAG_UNIT_SUB: i32 = 1 << 1;

/// Java `FAQUrl.suggestTodo(APPLY_TOPIC_URL)`, which ends the TOPIC_NOT_EXIST remark.
const FAQ_SUGGESTION: &str =
    "\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details.";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{BrokerMemberGroup, ClusterInfo, TopicConfig, TopicList};
    use crate::codec::command::{FLAG_ONEWAY, OUR_VERSION};
    use crate::LanguageCode;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    const BROKER: ConnId = ConnId(1);
    const CLIENT: ConnId = ConnId(2);

    fn request(code: RequestCode, opaque: i32, ext: &[(&str, &str)]) -> RemotingCommand {
        let mut cmd = RemotingCommand::request(code.value(), opaque);
        for (key, value) in ext {
            cmd.ext_fields_mut().insert(*key, *value);
        }
        cmd
    }

    /// A master's REGISTER_BROKER with a JSON body holding `topics` (name, queues, perm).
    fn register(broker_name: &str, addr: &str, topics: &[(&str, i32, i32)]) -> RemotingCommand {
        let mut body = RegisterBrokerBody::default();
        let wrapper = &mut body.topic_config_serialize_wrapper;
        wrapper.data_version.counter = 1;
        for (name, queues, perm) in topics {
            let config = TopicConfig {
                topic_name: (*name).to_owned(),
                read_queue_nums: *queues,
                write_queue_nums: *queues,
                perm: *perm,
                ..TopicConfig::default()
            };
            wrapper
                .topic_config_table
                .insert((*name).to_owned(), config);
        }
        let mut cmd = request(RequestCode::RegisterBroker, 1, &[]);
        encode_header(
            &mut cmd,
            &RegisterBrokerRequestHeader {
                broker_name: broker_name.to_owned(),
                broker_addr: addr.to_owned(),
                cluster_name: "DefaultCluster".to_owned(),
                ha_server_addr: format!("{addr}-ha"),
                broker_id: 0,
                heartbeat_timeout_millis: None,
                enable_acting_master: Some(false),
                compressed: false,
                body_crc32: 0,
            },
        );
        cmd.with_body(body.encode(false))
    }

    /// Feeds one command and returns the single response it produced.
    fn ask(
        namesrv: &mut NameServer,
        conn: ConnId,
        cmd: RemotingCommand,
        now_ms: u64,
    ) -> RemotingCommand {
        let opaque = cmd.opaque;
        namesrv.handle_command(conn, cmd, now_ms);
        let Some(Transmit::Send {
            conn: to,
            cmd: response,
        }) = namesrv.poll_transmit()
        else {
            panic!("no response");
        };
        assert!(
            namesrv.poll_transmit().is_none(),
            "one response per request"
        );
        assert_eq!(to, conn);
        assert_eq!(response.opaque, opaque);
        assert!(response.is_response());
        assert!(!response.is_oneway());
        assert_eq!(response.language, LanguageCode::Rust);
        assert_eq!(response.version, OUR_VERSION);
        response
    }

    /// A client's request at time 0, answered once.
    fn ask_client(
        namesrv: &mut NameServer,
        code: RequestCode,
        opaque: i32,
        ext: &[(&str, &str)],
    ) -> RemotingCommand {
        ask(namesrv, CLIENT, request(code, opaque, ext), 0)
    }

    /// The number of topics in a TopicList response body; `None` when it does not decode.
    fn topic_count(response: &RemotingCommand) -> Option<usize> {
        TopicList::decode(&response.body)
            .map(|t| t.topic_list.len())
            .ok()
    }

    /// The perm `broker-a` gives `topic` in the route table, if it serves it.
    fn perm_on_broker_a(namesrv: &NameServer, topic: &str) -> Option<i32> {
        namesrv
            .route_table()
            .queue_data(topic, "broker-a")
            .map(|q| q.perm)
    }

    fn registered_namesrv() -> NameServer {
        let mut namesrv = NameServer::new(NamesrvConfig::default());
        let cmd = register(
            "broker-a",
            "10.0.0.1:10911",
            &[("TBW102", 8, 7), ("TopicTest", 4, 6)],
        );
        let response = ask(&mut namesrv, BROKER, cmd, 1_000);
        assert_eq!(response.code, ResponseCode::Success.value());
        namesrv
    }

    /// Values for the keys name-server headers read: mostly ones that name the same broker,
    /// cluster and topic, so random requests also succeed and interact, plus garbage.
    fn ext_value() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("broker-a".to_owned()),
            Just("broker-b".to_owned()),
            Just("a:1".to_owned()),
            Just("b:1".to_owned()),
            Just("DefaultCluster".to_owned()),
            Just("0".to_owned()),
            Just("1".to_owned()),
            Just("-1".to_owned()),
            Just("true".to_owned()),
            Just("T".to_owned()),
            Just("TBW102".to_owned()),
            ".{0,6}",
        ]
    }

    fn ext_fields() -> impl Strategy<Value = Vec<(&'static str, String)>> {
        const KEYS: [&str; 16] = [
            "brokerName",
            "brokerAddr",
            "clusterName",
            "haServerAddr",
            "brokerId",
            "topic",
            "namespace",
            "key",
            "value",
            "cluster",
            "compressed",
            "bodyCrc32",
            "enableActingMaster",
            "heartbeatTimeoutMillis",
            "acceptStandardJsonOnly",
            ZONE_NAME,
        ];
        let random =
            || proptest::collection::vec((proptest::sample::select(&KEYS[..]), ext_value()), 0..12);
        // Half the time start from a header every name-server request accepts, so requests
        // register, look up and remove the same brokers and topics.
        let whole = |(name, addr, id): (&'static str, &'static str, &'static str)| {
            [
                ("brokerName", name),
                ("brokerAddr", addr),
                ("brokerId", id),
                ("clusterName", "DefaultCluster"),
                ("cluster", "DefaultCluster"),
                ("haServerAddr", "ha:1"),
                ("topic", "T"),
                ("namespace", "ns"),
                ("key", "k"),
                ("value", "v"),
            ]
            .map(|(key, value)| (key, value.to_owned()))
            .to_vec()
        };
        let broker = proptest::sample::select(vec![
            ("broker-a", "a:1", "0"),
            ("broker-a", "a:2", "1"),
            ("broker-b", "b:1", "0"),
        ]);
        prop_oneof![
            random(),
            (broker, random()).prop_map(move |(broker, extra)| [whole(broker), extra].concat()),
        ]
    }

    fn body() -> impl Strategy<Value = Vec<u8>> {
        let registration = register("x", "x:1", &[("T", 4, 6), ("TBW102", 8, 7)])
            .body
            .to_vec();
        let route = TopicRouteData {
            queue_datas: vec![crate::body::QueueData {
                broker_name: "broker-a".into(),
                perm: 6,
                ..Default::default()
            }],
            ..TopicRouteData::default()
        }
        .encode();
        let compressed = RegisterBrokerBody::decode(&registration, false)
            .map(|body| body.encode(true))
            .unwrap_or_default();
        prop_oneof![
            1 => Just(Vec::new()),
            3 => Just(registration),
            1 => Just(compressed),
            1 => Just(route),
            1 => Just(DataVersion::default().encode()),
            1 => proptest::collection::vec(any::<u8>(), 0..64),
        ]
    }

    /// Mostly name-server codes, registrations most of all so that there is state to query.
    fn code() -> impl Strategy<Value = i32> {
        let served = vec![
            100, 101, 102, 103, 104, 105, 106, 205, 206, 216, 217, 219, 224, 304, 311, 312, 313,
            322, 327, 901, 904,
        ];
        prop_oneof![
            3 => Just(RequestCode::RegisterBroker.value()),
            2 => Just(RequestCode::GetRouteinfoByTopic.value()),
            6 => proptest::sample::select(served),
            1 => any::<i32>(),
        ]
    }

    proptest! {
        /// Nothing a peer sends panics the name server; every two-way request gets exactly one
        /// response, oneway ones none; the route table keeps its invariants throughout.
        #[test]
        fn any_request_stream_is_answered_without_panics(
            ops in proptest::collection::vec(
                (code(), ext_fields(), body(), any::<bool>(), 0u64..3, 0u64..40_000, 0u8..10),
                1..24,
            )
        ) {
            let mut namesrv = NameServer::new(NamesrvConfig::default());
            let mut now_ms = 0;
            for (opaque, (code, ext, body, oneway, conn, dt, event)) in ops.into_iter().enumerate() {
                now_ms += dt;
                let conn = ConnId(conn);
                match event {
                    0 => namesrv.handle_closed(conn, now_ms),
                    1 => namesrv.handle_timeout(now_ms),
                    _ => {}
                }
                while let Some(transmit) = namesrv.poll_transmit() {
                    prop_assert!(matches!(transmit, Transmit::Close { .. }), "{transmit:?}");
                }
                let opaque = i32::try_from(opaque).unwrap_or(i32::MAX);
                let mut cmd = RemotingCommand::request(code, opaque).with_body(body);
                for (key, value) in ext {
                    cmd.ext_fields_mut().insert(key, value);
                }
                if oneway {
                    cmd.mark_oneway();
                }
                namesrv.handle_command(conn, cmd, now_ms);
                let sent: Vec<Transmit> = std::iter::from_fn(|| namesrv.poll_transmit()).collect();
                if oneway {
                    prop_assert!(sent.is_empty());
                } else {
                    prop_assert_eq!(sent.len(), 1);
                    let Some(Transmit::Send { conn: to, cmd: response }) = sent.first() else {
                        return Err(TestCaseError::fail("not a response"));
                    };
                    prop_assert_eq!(*to, conn);
                    prop_assert_eq!(response.opaque, opaque);
                    prop_assert!(response.is_response());
                }
                namesrv.route_table().assert_invariants();
            }
        }
    }

    #[test]
    fn unknown_codes_are_not_supported() {
        let mut namesrv = NameServer::new(NamesrvConfig::default());
        let response = ask_client(&mut namesrv, RequestCode::Unknown(99_999), 5, &[]);
        assert_eq!(response.code, ResponseCode::RequestCodeNotSupported.value());
        assert_eq!(
            response.remark.as_deref(),
            Some(" request type 99999 not supported")
        );
        // A broker-only code is not served by the name server either.
        let response = ask_client(&mut namesrv, RequestCode::SendMessage, 6, &[]);
        assert_eq!(
            response.remark.as_deref(),
            Some(" request type 10 not supported")
        );
    }

    #[test]
    fn header_errors_become_system_error_remarks() {
        let mut namesrv = NameServer::new(NamesrvConfig::default());
        let response = ask_client(&mut namesrv, RequestCode::GetRouteinfoByTopic, 1, &[]);
        assert_eq!(response.code, ResponseCode::SystemError.value());
        assert_eq!(
            response.remark.as_deref(),
            Some("the custom field <topic> is null")
        );

        let mut bad = register("broker-a", "a:1", &[]);
        bad.ext_fields_mut().insert("brokerId", "zero");
        let response = ask(&mut namesrv, BROKER, bad, 0);
        assert_eq!(response.code, ResponseCode::SystemError.value());
        assert_eq!(
            response.remark.as_deref(),
            Some("the custom field <brokerId> is not a decimal number: \"zero\"")
        );
        assert!(namesrv.route_table().broker_data("broker-a").is_none());
    }

    #[test]
    fn undecodable_bodies_become_system_errors() {
        let mut namesrv = NameServer::new(NamesrvConfig::default());
        let garbage =
            register("broker-a", "a:1", &[]).with_body(&b"{\"topicConfigSerializeWrapper\":7}"[..]);
        let response = ask(&mut namesrv, BROKER, garbage, 0);
        assert_eq!(response.code, ResponseCode::SystemError.value());
        let remark = response.remark.unwrap_or_default();
        assert!(
            remark.starts_with("Failed to decode RegisterBrokerBody: "),
            "{remark}"
        );
        assert!(namesrv.route_table().broker_data("broker-a").is_none());

        let cmd =
            request(RequestCode::RegisterTopicInNamesrv, 2, &[("topic", "T")]).with_body(&b"["[..]);
        assert_eq!(
            ask(&mut namesrv, BROKER, cmd, 0).code,
            ResponseCode::SystemError.value()
        );
    }

    #[test]
    fn body_crc_is_checked_when_given() {
        let mut namesrv = NameServer::new(NamesrvConfig::default());
        let mut cmd = register("broker-a", "a:1", &[("T", 1, 6), ("U", 1, 6)]);
        let crc = body_crc(&cmd.body);
        cmd.ext_fields_mut()
            .insert("bodyCrc32", (crc ^ 1).to_string());
        let response = ask(&mut namesrv, BROKER, cmd.clone(), 0);
        assert_eq!(response.code, ResponseCode::SystemError.value());
        assert_eq!(response.remark.as_deref(), Some("crc32 not match"));
        assert!(namesrv.route_table().broker_data("broker-a").is_none());

        cmd.ext_fields_mut().insert("bodyCrc32", crc.to_string());
        assert_eq!(
            ask(&mut namesrv, BROKER, cmd, 0).code,
            ResponseCode::Success.value()
        );
        assert!(namesrv.route_table().queue_data("T", "broker-a").is_some());
    }

    #[test]
    fn compressed_registrations_read_with_or_without_the_flag() {
        for flag in [true, false] {
            let mut namesrv = NameServer::new(NamesrvConfig::default());
            let json = register("broker-a", "a:1", &[("T", 3, 6), ("U", 1, 6)]);
            let body = RegisterBrokerBody::decode(&json.body, false).expect("json body");
            let mut cmd = json.with_body(body.encode(true));
            cmd.ext_fields_mut().insert("compressed", flag.to_string());
            let crc = body_crc(&cmd.body);
            cmd.ext_fields_mut().insert("bodyCrc32", crc.to_string());
            assert_eq!(
                ask(&mut namesrv, BROKER, cmd, 0).code,
                ResponseCode::Success.value()
            );
            let queue = namesrv.route_table().queue_data("T", "broker-a").cloned();
            assert_eq!(queue.map(|q| (q.read_queue_nums, q.perm)), Some((3, 6)));
        }
    }

    #[test]
    fn senders_before_v3_0_11_register_a_bare_topic_table() {
        let mut namesrv = NameServer::new(NamesrvConfig::default());
        let json = register("broker-a", "a:1", &[("Old", 2, 6), ("Older", 2, 6)]);
        let body = RegisterBrokerBody::decode(&json.body, false).expect("json body");
        let wrapper = TopicConfigSerializeWrapper {
            data_version: body.topic_config_serialize_wrapper.data_version,
            topic_config_table: body.topic_config_serialize_wrapper.topic_config_table,
        };
        let mut cmd = json.with_body(wrapper.encode());
        cmd.version = 36;
        assert_eq!(
            ask(&mut namesrv, BROKER, cmd, 0).code,
            ResponseCode::Success.value()
        );
        assert!(namesrv
            .route_table()
            .queue_data("Older", "broker-a")
            .is_some());

        // An empty body registers the broker with no topics.
        let mut empty = register("broker-e", "e:1", &[]).with_body(bytes::Bytes::new());
        empty.version = 36;
        assert_eq!(
            ask(&mut namesrv, BROKER, empty, 0).code,
            ResponseCode::Success.value()
        );
        assert!(namesrv.route_table().broker_data("broker-e").is_some());
    }

    #[test]
    fn single_topic_registration_before_a_full_one_fails() {
        let mut namesrv = NameServer::new(NamesrvConfig::default());
        let response = ask(
            &mut namesrv,
            BROKER,
            register("broker-a", "a:1", &[("T", 1, 6)]),
            0,
        );
        assert_eq!(response.code, ResponseCode::SystemError.value());
        assert_eq!(response.remark.as_deref(), Some("register broker failed"));
    }

    #[test]
    fn register_response_carries_master_and_order_topic_config() {
        let mut namesrv = registered_namesrv();
        let response = ask(
            &mut namesrv,
            BROKER,
            register("broker-a", "10.0.0.1:10911", &[]),
            2_000,
        );
        assert!(
            response.body.is_empty(),
            "no ORDER_TOPIC_CONFIG namespace yet"
        );
        assert_eq!(response.ext("masterAddr"), None);

        let put = request(
            RequestCode::PutKvConfig,
            3,
            &[
                ("namespace", NAMESPACE_ORDER_TOPIC_CONFIG),
                ("key", "TopicTest"),
                ("value", "broker-a:4"),
            ],
        );
        assert_eq!(
            ask(&mut namesrv, CLIENT, put, 2_000).code,
            ResponseCode::Success.value()
        );

        let mut slave = register("broker-a", "10.0.0.2:10911", &[]);
        slave.ext_fields_mut().insert("brokerId", "1");
        let response = ask(&mut namesrv, ConnId(3), slave, 2_000);
        assert_eq!(response.ext("masterAddr"), Some("10.0.0.1:10911"));
        assert_eq!(response.ext("haServerAddr"), Some("10.0.0.1:10911-ha"));
        let table = KVTable::decode(&response.body).expect("KVTable");
        assert_eq!(
            table.table.get("TopicTest").map(String::as_str),
            Some("broker-a:4")
        );
    }

    #[test]
    fn routes_answer_known_topics_and_refuse_unknown_ones() {
        let mut namesrv = registered_namesrv();
        let ask_route = |namesrv: &mut NameServer, topic: &str| {
            ask(
                namesrv,
                CLIENT,
                request(RequestCode::GetRouteinfoByTopic, 9, &[("topic", topic)]),
                2_000,
            )
        };
        let response = ask_route(&mut namesrv, "TopicTest");
        assert_eq!(response.code, ResponseCode::Success.value());
        assert_eq!(response.remark, None);
        let text = String::from_utf8(response.body.to_vec()).expect("UTF-8");
        assert!(
            text.contains(r#""brokerAddrs":{"0":"10.0.0.1:10911"}"#),
            "{text}"
        );
        let route = TopicRouteData::decode(&response.body).expect("route");
        assert_eq!(route.queue_datas.len(), 1);
        assert_eq!(route.order_topic_conf, None);

        let response = ask_route(&mut namesrv, "Nope");
        assert_eq!(response.code, ResponseCode::TopicNotExist.value());
        assert_eq!(
            response.remark.as_deref(),
            Some("No topic route info in name server for the topic: Nope\nSee https://rocketmq.apache.org/docs/bestPractice/06FAQ for further details.")
        );
        assert!(response.body.is_empty());
    }

    #[test]
    fn order_topic_conf_comes_from_kv_when_enabled() {
        for enabled in [false, true] {
            let config = NamesrvConfig {
                order_message_enable: enabled,
                ..NamesrvConfig::default()
            };
            let mut namesrv = NameServer::new(config);
            let cmd = register("broker-a", "a:1", &[("TBW102", 8, 7), ("TopicTest", 4, 6)]);
            ask(&mut namesrv, BROKER, cmd, 0);
            let put = [
                ("namespace", NAMESPACE_ORDER_TOPIC_CONFIG),
                ("key", "TopicTest"),
                ("value", "broker-a:4"),
            ];
            ask_client(&mut namesrv, RequestCode::PutKvConfig, 2, &put);
            let response = ask_client(
                &mut namesrv,
                RequestCode::GetRouteinfoByTopic,
                3,
                &[("topic", "TopicTest")],
            );
            let route = TopicRouteData::decode(&response.body).expect("route");
            let expected = enabled.then(|| "broker-a:4".to_owned());
            assert_eq!(route.order_topic_conf, expected);
        }
    }

    #[test]
    fn oneway_requests_are_processed_without_a_response() {
        let mut namesrv = NameServer::new(NamesrvConfig::default());
        let mut cmd = register("broker-a", "a:1", &[("A", 1, 6), ("B", 1, 6)]);
        cmd.flag |= FLAG_ONEWAY;
        namesrv.handle_command(BROKER, cmd, 0);
        assert!(namesrv.poll_transmit().is_none());
        assert!(namesrv.route_table().queue_data("A", "broker-a").is_some());
        // A failing oneway request gets nothing either.
        let mut bad = request(RequestCode::GetRouteinfoByTopic, 2, &[]);
        bad.flag |= FLAG_ONEWAY;
        namesrv.handle_command(CLIENT, bad, 0);
        assert!(namesrv.poll_transmit().is_none());
        // Nor does a stray response.
        let stray =
            RemotingCommand::response_to(&request(RequestCode::GetKvConfig, 3, &[]), 0, None);
        namesrv.handle_command(CLIENT, stray, 0);
        assert!(namesrv.poll_transmit().is_none());
    }

    #[test]
    fn kv_config_requests() {
        let mut namesrv = NameServer::new(NamesrvConfig::default());
        let key = [("namespace", "ns"), ("key", "k")];
        let response = ask_client(&mut namesrv, RequestCode::GetKvConfig, 1, &key);
        assert_eq!(response.code, ResponseCode::QueryNotFound.value());
        assert_eq!(
            response.remark.as_deref(),
            Some("No config item, Namespace: ns Key: k")
        );
        let response = ask_client(
            &mut namesrv,
            RequestCode::GetKvlistByNamespace,
            2,
            &[("namespace", "ns")],
        );
        assert_eq!(response.code, ResponseCode::QueryNotFound.value());
        assert_eq!(
            response.remark.as_deref(),
            Some("No config item, Namespace: ns")
        );

        let put = [("namespace", "ns"), ("key", "k"), ("value", "v")];
        ask_client(&mut namesrv, RequestCode::PutKvConfig, 3, &put);
        let response = ask_client(&mut namesrv, RequestCode::GetKvConfig, 4, &key);
        assert_eq!(response.code, ResponseCode::Success.value());
        assert_eq!(response.ext("value"), Some("v"));
        let response = ask_client(
            &mut namesrv,
            RequestCode::GetKvlistByNamespace,
            5,
            &[("namespace", "ns")],
        );
        let table = KVTable::decode(&response.body).expect("KVTable");
        assert_eq!(table.table.get("k").map(String::as_str), Some("v"));

        let response = ask_client(&mut namesrv, RequestCode::DeleteKvConfig, 6, &key);
        assert_eq!(response.code, ResponseCode::Success.value());
        let response = ask_client(&mut namesrv, RequestCode::GetKvConfig, 7, &key);
        assert_eq!(response.code, ResponseCode::QueryNotFound.value());
        // A PUT without its value is a header error.
        let response = ask_client(&mut namesrv, RequestCode::PutKvConfig, 8, &key);
        assert_eq!(
            response.remark.as_deref(),
            Some("the custom field <value> is null")
        );
    }

    #[test]
    fn query_data_version_compares_and_refreshes() {
        let mut namesrv = registered_namesrv();
        let ident = [
            ("brokerName", "broker-a"),
            ("brokerAddr", "10.0.0.1:10911"),
            ("clusterName", "DefaultCluster"),
            ("brokerId", "0"),
        ];
        let same = DataVersion {
            counter: 1,
            state_version: 0,
            timestamp: 0,
        };
        let cmd = request(RequestCode::QueryDataVersion, 1, &ident).with_body(same.encode());
        let response = ask(&mut namesrv, BROKER, cmd, 100_000);
        assert_eq!(response.ext("changed"), Some("false"));
        assert_eq!(DataVersion::decode(&response.body).ok(), Some(same));

        let newer = DataVersion { counter: 2, ..same };
        let cmd = request(RequestCode::QueryDataVersion, 2, &ident).with_body(newer.encode());
        assert_eq!(
            ask(&mut namesrv, BROKER, cmd, 100_000).ext("changed"),
            Some("true")
        );

        // The query counted as a sign of life: at 1 000 + 120 001 the broker is still there.
        namesrv.handle_timeout(121_001);
        assert!(namesrv.poll_transmit().is_none());
        assert!(namesrv.route_table().broker_data("broker-a").is_some());

        let unknown = [
            ("brokerAddr", "x:1"),
            ("brokerName", "x"),
            ("clusterName", "c"),
            ("brokerId", "0"),
        ];
        let cmd = request(RequestCode::QueryDataVersion, 3, &unknown).with_body(same.encode());
        let response = ask(&mut namesrv, BROKER, cmd, 0);
        assert_eq!(response.ext("changed"), Some("true"));
        assert!(response.body.is_empty());
    }

    #[test]
    fn heartbeats_keep_a_broker_alive_and_silence_expires_it() {
        let mut namesrv = registered_namesrv();
        assert_eq!(namesrv.next_timeout(), Some(0));
        namesrv.handle_timeout(1_000);
        assert_eq!(namesrv.next_timeout(), Some(6_000));
        // Early and repeated calls do nothing.
        namesrv.handle_timeout(5_999);
        assert_eq!(namesrv.next_timeout(), Some(6_000));

        let beat = [
            ("clusterName", "DefaultCluster"),
            ("brokerAddr", "10.0.0.1:10911"),
            ("brokerName", "broker-a"),
        ];
        let response = ask(
            &mut namesrv,
            BROKER,
            request(RequestCode::BrokerHeartbeat, 4, &beat),
            100_000,
        );
        assert_eq!(response.code, ResponseCode::Success.value());
        // Alive at exactly heartbeat + 120 s.
        namesrv.handle_timeout(220_000);
        assert!(namesrv.poll_transmit().is_none());
        assert!(namesrv.route_table().broker_data("broker-a").is_some());
        // Past it, but the next scan is not due until 225 000.
        namesrv.handle_timeout(220_001);
        assert!(namesrv.poll_transmit().is_none());
        assert_eq!(namesrv.next_timeout(), Some(225_000));
        namesrv.handle_timeout(225_000);
        let Some(Transmit::Close { conn, reason }) = namesrv.poll_transmit() else {
            panic!("expected a close");
        };
        assert_eq!(conn, BROKER);
        assert!(reason.contains("expired"), "{reason}");
        assert!(namesrv.poll_transmit().is_none());
        assert!(namesrv.route_table().broker_data("broker-a").is_none());
        // The driver then reports the close; nothing is left to remove.
        namesrv.handle_closed(BROKER, 225_000);
    }

    #[test]
    fn closing_the_broker_connection_unregisters_at_once() {
        let mut namesrv = registered_namesrv();
        namesrv.handle_closed(CLIENT, 1_500);
        assert!(namesrv.route_table().broker_data("broker-a").is_some());
        namesrv.handle_closed(BROKER, 1_500);
        assert!(namesrv.route_table().broker_data("broker-a").is_none());
        let response = ask(
            &mut namesrv,
            CLIENT,
            request(RequestCode::GetRouteinfoByTopic, 1, &[("topic", "TBW102")]),
            1_500,
        );
        assert_eq!(response.code, ResponseCode::TopicNotExist.value());
    }

    #[test]
    fn unregister_broker_request() {
        let mut namesrv = registered_namesrv();
        let ident = [
            ("brokerName", "broker-a"),
            ("brokerAddr", "10.0.0.1:10911"),
            ("clusterName", "DefaultCluster"),
            ("brokerId", "0"),
        ];
        let response = ask(
            &mut namesrv,
            BROKER,
            request(RequestCode::UnregisterBroker, 2, &ident),
            2_000,
        );
        assert_eq!(response.code, ResponseCode::Success.value());
        assert!(namesrv.route_table().broker_data("broker-a").is_none());
        assert!(namesrv.route_table().all_topics().topic_list.is_empty());
    }

    #[test]
    fn admin_queries() {
        let mut namesrv = registered_namesrv();
        let response = ask_client(&mut namesrv, RequestCode::GetBrokerClusterInfo, 1, &[]);
        let info = ClusterInfo::decode(&response.body).expect("cluster info");
        assert!(info.cluster_addr_table["DefaultCluster"].contains("broker-a"));

        let response = ask_client(
            &mut namesrv,
            RequestCode::GetAllTopicListFromNameserver,
            2,
            &[],
        );
        assert_eq!(topic_count(&response), Some(2));

        let response = ask_client(
            &mut namesrv,
            RequestCode::GetTopicsByCluster,
            3,
            &[("cluster", "DefaultCluster")],
        );
        assert_eq!(topic_count(&response), Some(2));

        let response = ask_client(&mut namesrv, RequestCode::GetSystemTopicListFromNs, 4, &[]);
        let system = TopicList::decode(&response.body).expect("topics");
        assert!(system.topic_list.contains("DefaultCluster"));
        assert!(system.topic_list.contains("broker-a"));
        assert_eq!(system.broker_addr.as_deref(), Some("10.0.0.1:10911"));

        let group = [
            ("clusterName", "DefaultCluster"),
            ("brokerName", "broker-a"),
        ];
        let response = ask_client(&mut namesrv, RequestCode::GetBrokerMemberGroup, 5, &group);
        let body = GetBrokerMemberGroupResponseBody::decode(&response.body).expect("group");
        let members = body
            .broker_member_group
            .map(|g: BrokerMemberGroup| g.broker_addrs);
        assert_eq!(members.map(|m| m.len()), Some(1));

        let response = ask_client(&mut namesrv, RequestCode::GetUnitTopicList, 6, &[]);
        assert_eq!(topic_count(&response), Some(0));
    }

    #[test]
    fn topic_lists_can_be_disabled() {
        let config = NamesrvConfig {
            enable_all_topic_list: false,
            enable_topic_list: false,
            ..NamesrvConfig::default()
        };
        let mut namesrv = NameServer::new(config);
        for code in [
            RequestCode::GetAllTopicListFromNameserver,
            RequestCode::GetTopicsByCluster,
            RequestCode::GetUnitTopicList,
            RequestCode::GetHasUnitSubTopicList,
            RequestCode::GetHasUnitSubUnunitTopicList,
        ] {
            let response = ask_client(&mut namesrv, code, 1, &[]);
            assert_eq!(response.code, ResponseCode::SystemError.value());
            assert_eq!(response.remark.as_deref(), Some("disable"));
        }
    }

    #[test]
    fn write_permission_and_topic_administration() {
        let mut namesrv = registered_namesrv();
        let name = [("brokerName", "broker-a")];
        let response = ask_client(&mut namesrv, RequestCode::WipeWritePermOfBroker, 1, &name);
        assert_eq!(response.ext("wipeTopicCount"), Some("2"));
        assert_eq!(perm_on_broker_a(&namesrv, "TopicTest"), Some(4));
        let response = ask_client(&mut namesrv, RequestCode::AddWritePermOfBroker, 2, &name);
        assert_eq!(response.ext("addTopicCount"), Some("2"));
        assert_eq!(perm_on_broker_a(&namesrv, "TopicTest"), Some(6));

        let route = TopicRouteData {
            queue_datas: vec![crate::body::QueueData {
                broker_name: "broker-a".into(),
                perm: 6,
                read_queue_nums: 2,
                topic_sys_flag: 0,
                write_queue_nums: 2,
            }],
            ..TopicRouteData::default()
        };
        let cmd = request(
            RequestCode::RegisterTopicInNamesrv,
            3,
            &[("topic", "Added")],
        )
        .with_body(route.encode());
        assert_eq!(
            ask(&mut namesrv, CLIENT, cmd, 0).code,
            ResponseCode::Success.value()
        );
        assert!(perm_on_broker_a(&namesrv, "Added").is_some());

        let other_cluster = [("topic", "Added"), ("clusterName", "Elsewhere")];
        ask_client(
            &mut namesrv,
            RequestCode::DeleteTopicInNamesrv,
            4,
            &other_cluster,
        );
        assert!(perm_on_broker_a(&namesrv, "Added").is_some());
        ask_client(
            &mut namesrv,
            RequestCode::DeleteTopicInNamesrv,
            5,
            &[("topic", "Added"), ("clusterName", "")],
        );
        assert!(perm_on_broker_a(&namesrv, "Added").is_none());
    }
}
