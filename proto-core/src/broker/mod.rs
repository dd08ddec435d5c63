//! The broker role: [`Broker`] answers producers, consumers and admin tools the way Apache
//! RocketMQ's broker does (protocol reference §8–§10, §15, §18), over a [`MessageStore`].
//!
//! Bookkeeping tables, each a plain struct fed with `now_ms`:
//! - `topic_config.rs`: topics, TBW102 and auto-creation ([`topic_config::TopicConfigTable`]);
//! - `consumer_manager.rs`, `producer_manager.rs`: client groups announced by heartbeats;
//! - `consumer_offset.rs`: committed consumer offsets;
//! - `subscription_group.rs`: consumer groups' broker-side settings;
//! - `queue_lock.rs`: orderly consumers' queue locks.
//!
//! Request handling, split by concern (Java's `*Processor` classes):
//! - `send.rs`: SEND_MESSAGE, SEND_MESSAGE_V2, SEND_BATCH_MESSAGE (§8);
//! - `send_back.rs`: CONSUMER_SEND_MSG_BACK, into `%RETRY%` or `%DLQ%` (§11.2);
//! - `transaction/`: half messages, END_TRANSACTION, back-checks (CHECK_TRANSACTION_STATE);
//! - `pull.rs` and `pull_hold.rs`: PULL_MESSAGE and long polling (§9);
//! - SQL92 filters and CHECK_CLIENT_CONFIG: `crate::filter`, applied in `pull.rs`;
//! - `offset.rs`: consumer offsets and queue offset look-ups (§6.4, §6.5, §10.3);
//! - `reset_offset.rs`: INVOKE_BROKER_TO_RESET_OFFSET and the reset notice to consumers;
//! - `client.rs`: heartbeats, unregistering, consumer lists, queue locks (§10);
//! - `admin.rs`: topic and group administration, statistics, message queries (§6.9, §6.10);
//! - `register.rs`: REGISTER_BROKER / UNREGISTER_BROKER to every name server (§18);
//! - `persist.rs`: the `config/*.json` files, written through the store's [`Storage`];
//! - `schedule.rs`: delay levels, `SCHEDULE_TOPIC_XXXX` and its delivery timer.
//! - `timer.rs`: timer messages (`TIMER_*` properties) through the timing wheel.
//!
//! - `replication.rs`: master/slave replication (`brokerRole`, SYNC_MASTER waiting for slave
//!   acks, a slave's copy of its master; the HA port itself is `io_adapters::ha`).
//! - `controller_client.rs`: controller mode (`enableControllerMode`): leader discovery,
//!   registration, heartbeats, role changes by master epoch, sync state set proposals.
//!
//! What it leaves out: POP, ACL.

pub mod consumer_manager;
pub mod consumer_offset;
pub mod producer_manager;
pub mod queue_lock;
pub mod schedule;
pub mod subscription_group;
pub mod topic_config;

mod admin;
mod auto_replication;
mod client;
mod controller_client;
mod offset;
mod persist;
mod pull;
mod pull_hold;
mod register;
mod replication;
mod reset_offset;
mod send;
mod send_back;
mod timer;

pub use auto_replication::AutoSlaveError;
pub use controller_client::{ControllerModeConfig, RoleNewsError};
pub use timer::TimerSettings;
mod transaction;

#[cfg(test)]
mod delay_tests;
#[cfg(test)]
mod offload_tests;
#[cfg(test)]
pub(crate) mod test_support;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod timer_tests;

use std::collections::{BTreeMap, VecDeque};

use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use store_core::format::msg_id::UniqKeyGenerator;
use store_core::recovery::RecoveryReport;
use store_core::storage::{Storage, StorageError};
use store_core::store::{MessageStore, OpenError, StoreConfig, StoreError};

use crate::body::PermName;
use crate::reply::{not_supported, or_system_error, respond};
use crate::role::{ConnId, Role, Transmit, Work, WorkDone};
use crate::{RemotingCommand, RequestCode, ResponseCode};

use consumer_manager::{ConsumerTable, CHANNEL_EXPIRY_MS, CHANNEL_SCAN_INTERVAL_MS};
use consumer_offset::{ConsumerOffsetTable, FLUSH_CONSUMER_OFFSET_INTERVAL_MS};
use producer_manager::ProducerTable;
use pull_hold::PullHold;
use queue_lock::QueueLockTable;
use subscription_group::SubscriptionGroupTable;
use topic_config::{TopicConfigTable, TopicTableSettings};

/// The broker's settings, with Java `BrokerConfig` / `MessageStoreConfig` names and defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct BrokerConfig {
    /// `brokerClusterName` (`DefaultCluster`).
    pub broker_cluster_name: String,
    /// `brokerName` (`broker-a`).
    pub broker_name: String,
    /// `brokerId`: 0 for a master.
    pub broker_id: i64,
    /// `brokerIP1`: the address advertised to name servers and written as store host.
    pub broker_ip1: String,
    /// `listenPort` (10911).
    pub listen_port: u16,
    /// `haListenPort` (10912), advertised as `haServerAddr`.
    pub ha_listen_port: u16,
    /// `namesrvAddr`, split on `;`: every name server registered with.
    pub namesrv_addrs: Vec<String>,
    /// `regionId` (`DefaultRegion`): the `MSG_REGION` of send responses.
    pub region_id: String,
    /// `traceOn` (true): the `TRACE_ON` of send responses.
    pub trace_on: bool,
    /// `autoCreateTopicEnable` (true).
    pub auto_create_topic_enable: bool,
    /// `autoCreateSubscriptionGroup` (true).
    pub auto_create_subscription_group: bool,
    /// `defaultTopicQueueNums` (8): queues of the TBW102 template.
    pub default_topic_queue_nums: i32,
    /// `brokerPermission` (6, read and write).
    pub broker_permission: i32,
    /// `registerNameServerPeriod` (30 000 ms, clamped to 10–60 s as Java does).
    pub register_name_server_period_ms: u64,
    /// `syncFlushTimeout` (5 000 ms): a SYNC_FLUSH send not synced by then is answered
    /// FLUSH_DISK_TIMEOUT.
    pub sync_flush_timeout_ms: u64,
    /// `longPollingEnable` (true): hold pulls for the client's suspend timeout.
    pub long_polling_enable: bool,
    /// `shortPollingTimeMills` (1 000 ms): the hold time without long polling.
    pub short_polling_time_ms: u64,
    /// Most pull requests held at once; beyond it a pull is answered PULL_NOT_FOUND at once.
    pub pull_hold_max: usize,
    /// `flushConsumerOffsetInterval` (5 000 ms): how often `config/*.json` are written.
    pub flush_consumer_offset_interval_ms: u64,
    /// `channelExpiredTimeout` (120 000 ms): clients silent this long are dropped.
    pub channel_expired_timeout_ms: u64,
    /// The local time zone's offset from UTC, for retention's `deleteWhen` hour.
    pub utc_offset_ms: i64,
    /// Seed of the generator that picks queues for `queueId < 0` sends (style T5).
    pub rng_seed: u64,
    /// The process id put into broker-made UNIQ_KEYs.
    pub pid: u32,
    /// `enablePropertyFilter` (false): serve SQL92 subscriptions (`crate::filter`); when off,
    /// their pulls and CHECK_CLIENT_CONFIG are answered SYSTEM_ERROR, as in Java.
    pub enable_property_filter: bool,
    /// `transactionTimeOut` (6 000 ms): a half message younger than this is not checked.
    pub transaction_timeout_ms: u64,
    /// `transactionCheckMax` (15): checks before a half message is discarded.
    pub transaction_check_max: u32,
    /// `transactionCheckInterval` (30 000 ms): how often unresolved halves are checked.
    pub transaction_check_interval_ms: u64,
    /// `rejectTransactionMessage` (false): refuse half messages with NO_PERMISSION.
    pub reject_transaction_message: bool,
    /// The message store's settings (`flushDiskType`, `maxMessageSize`, segment sizes...).
    pub store: StoreConfig,
    /// Replication: `brokerRole`, `haMasterAddress`, `haTransferBatchSize`...
    pub ha: crate::ha::HaConfig,
    /// Timer messages: `timerWheelEnable`, `timerPrecisionMs`, `timerMaxDelaySec`...
    pub timer: TimerSettings,
    /// Controller mode (on with `HaConfig::controller_mode`): `controllerAddr`, heartbeat and
    /// metadata periods (`controller_client.rs`).
    pub controller: ControllerModeConfig,
}

impl Default for BrokerConfig {
    fn default() -> BrokerConfig {
        BrokerConfig {
            broker_cluster_name: "DefaultCluster".to_string(),
            broker_name: "broker-a".to_string(),
            broker_id: 0,
            broker_ip1: "127.0.0.1".to_string(),
            listen_port: 10911,
            ha_listen_port: 10912,
            namesrv_addrs: Vec::new(),
            region_id: "DefaultRegion".to_string(),
            trace_on: true,
            auto_create_topic_enable: true,
            auto_create_subscription_group: true,
            default_topic_queue_nums: 8,
            broker_permission: PermName::PERM_READ | PermName::PERM_WRITE,
            register_name_server_period_ms: 30_000,
            sync_flush_timeout_ms: 5_000,
            long_polling_enable: true,
            short_polling_time_ms: 1_000,
            pull_hold_max: 10_000,
            flush_consumer_offset_interval_ms: FLUSH_CONSUMER_OFFSET_INTERVAL_MS,
            channel_expired_timeout_ms: CHANNEL_EXPIRY_MS,
            utc_offset_ms: 0,
            rng_seed: 0x5eed,
            pid: 0,
            enable_property_filter: false,
            transaction_timeout_ms: 6_000,
            transaction_check_max: 15,
            transaction_check_interval_ms: 30_000,
            reject_transaction_message: false,
            store: StoreConfig::default(),
            ha: crate::ha::HaConfig::default(),
            timer: TimerSettings::default(),
            controller: ControllerModeConfig::default(),
        }
    }
}

impl BrokerConfig {
    /// `brokerIP1:listenPort`, as registered and as clients connect.
    pub fn broker_addr(&self) -> String {
        format!("{}:{}", self.broker_ip1, self.listen_port)
    }

    /// The store host written into records and offset message ids. A `brokerIP1` that is not
    /// an IP literal (a host name) cannot go into the binary record; 127.0.0.1 stands in.
    pub fn store_host(&self) -> SocketAddr {
        let ip = self
            .broker_ip1
            .parse::<IpAddr>()
            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        SocketAddr::new(ip, self.listen_port)
    }
}

/// Why [`Broker::new`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerOpenError {
    #[error("message store: {0}")]
    Store(#[from] OpenError),
    /// A `config/*.json` file (and its backup) is unreadable.
    #[error("config: {0}")]
    Config(#[from] store_core::config::ConfigError),
    /// The timer store (`timerwheel`, `timerlog/`, `config/timercheck`) did not open.
    #[error("{0}")]
    Timer(#[from] store_core::timer::TimerError),
}

/// A RocketMQ broker (master), driven through [`Role`].
///
/// Calling protocol (see [`crate::role`]):
/// 1. [`Broker::new`] opens the store (recovering it) and loads `config/*.json`; then call
///    `handle_timeout` at once: it registers with every name server.
/// 2. Feed events: `handle_connected` (the peer address becomes the `bornHost` of messages sent
///    on that connection), `handle_command`, `handle_closed`, `handle_peer_failed`, and
///    `handle_timeout` once [`Role::next_timeout`] has passed.
/// 3. Call `handle_turn_end`: one store sync covers every append of the turn, and SYNC_FLUSH
///    send responses are released only then. After [`Role::offload_work`] the sync is not run
///    there but handed out by [`Role::poll_work`] (at most one in flight, appends continue),
///    and SYNC_FLUSH responses wait for its [`Role::handle_work_done`].
/// 4. Drain [`Role::poll_transmit`]: responses, NOTIFY_CONSUMER_IDS_CHANGED to group members,
///    REGISTER_BROKER requests to name servers (`Transmit::Request`), closes of idle clients.
/// 5. At the end, [`Broker::shutdown`], then drain `poll_transmit` once more (it queues
///    UNREGISTER_BROKER for every name server).
///
/// Oneway requests get no response. A request whose header is malformed gets SYSTEM_ERROR with
/// the header error as remark; an unknown code gets REQUEST_CODE_NOT_SUPPORTED. Nothing a peer
/// sends panics.
///
/// ```
/// use proto_core::broker::{Broker, BrokerConfig};
/// use proto_core::role::{ConnId, Role, Transmit};
/// use proto_core::{RemotingCommand, RequestCode, ResponseCode};
/// use store_core::flush::FlushDiskType;
/// use store_core::index::IndexConfig;
/// use store_core::storage::MemStorage;
///
/// let mut config = BrokerConfig {
///     namesrv_addrs: vec!["127.0.0.1:9876".into()],
///     ..BrokerConfig::default()
/// };
/// config.store.segment_size = 1 << 20;
/// config.store.index = IndexConfig { max_hash_slot_num: 64, max_index_num: 256 };
/// config.store.flush.flush_disk_type = FlushDiskType::SyncFlush;
/// let now = 1_700_000_000_000;
/// let (mut broker, _recovery) = Broker::new(config, MemStorage::new(), now).unwrap();
/// broker.handle_timeout(now); // registers with the name server
/// let Some(Transmit::Request { addr, cmd }) = broker.poll_transmit() else { panic!() };
/// assert_eq!((addr.as_str(), cmd.code), ("127.0.0.1:9876", RequestCode::RegisterBroker.value()));
///
/// let producer = ConnId(1);
/// broker.handle_connected(producer, "127.0.0.1:50000".parse().unwrap(), None, now);
/// let mut send = RemotingCommand::request(RequestCode::SendMessage.value(), 7);
/// for (k, v) in [("producerGroup", "pg"), ("topic", "Demo"), ("defaultTopic", "TBW102"),
///     ("defaultTopicQueueNums", "4"), ("queueId", "0"), ("sysFlag", "0"),
///     ("bornTimestamp", "1700000000000"), ("flag", "0")] {
///     send.ext_fields_mut().insert(k, v);
/// }
/// broker.handle_command(producer, send.with_body(&b"hello"[..]), now);
/// // SYNC_FLUSH: the reply waits for the turn's sync. (The new topic is registered at once.)
/// assert!(std::iter::from_fn(|| broker.poll_transmit())
///     .all(|t| matches!(t, Transmit::Request { .. })));
/// broker.handle_turn_end(now);
/// let Some(Transmit::Send { conn, cmd }) = broker.poll_transmit() else { panic!() };
/// assert_eq!((conn, cmd.opaque, cmd.code), (producer, 7, ResponseCode::Success.value()));
/// assert_eq!(cmd.ext("queueOffset"), Some("0"));
///
/// broker.shutdown(now + 1).unwrap(); // then drain: UNREGISTER_BROKER to the name server
/// assert!(matches!(broker.poll_transmit(), Some(Transmit::Request { .. })));
/// ```
#[derive(Debug)]
pub struct Broker<S: Storage + Clone> {
    config: BrokerConfig,
    store: MessageStore<S>,
    topics: TopicConfigTable,
    groups: SubscriptionGroupTable,
    consumers: ConsumerTable,
    producers: ProducerTable,
    offsets: ConsumerOffsetTable,
    locks: QueueLockTable,
    /// Delay levels: where each level's delivery stands.
    schedule: schedule::Schedule,
    /// Parked long polls.
    hold: PullHold,
    /// SYNC_FLUSH send responses waiting for the store's flushed offset (style S3).
    await_flush: VecDeque<AwaitFlush>,
    /// Connections that are open, with their peer address.
    conns: BTreeMap<ConnId, ConnInfo>,
    transmits: VecDeque<Transmit>,
    timers: [Option<u64>; Timer::COUNT],
    /// Opaque of the next request we send (NOTIFY_CONSUMER_IDS_CHANGED, REGISTER_BROKER).
    next_opaque: i32,
    /// Picks queues for `queueId < 0` sends.
    rng: SplitMix64,
    /// Makes UNIQ_KEYs for messages that arrive without one.
    uniq_keys: UniqKeyGenerator,
    /// Buffers the send path reuses from send to send (`send.rs`).
    send_scratch: send::SendScratch,
    /// Unresolved half messages (`transaction/`).
    transactions: transaction::TransactionTable,
    /// Check progress waiting for the commit log to be durable before it is saved.
    transaction_progress: Option<transaction::ProposedProgress>,
    shut_down: bool,
    /// Replication: role, slaves, SYNC_MASTER replies waiting for acks (`replication.rs`).
    ha: crate::ha::Replication<replication::HeldSend>,
    /// Timer messages (`timer.rs`).
    timer: timer::TimerService<S>,
    /// Controller mode: leader, registration, master epoch (`controller_client.rs`).
    controller: Option<controller_client::ControllerClient>,
    /// The driver runs store flushes off its core task (`Role::offload_work`).
    offload: bool,
    /// A store flush handed out as work, not yet taken by the driver.
    work: Option<Work>,
}

/// A SYNC_FLUSH send response held until the commit log is durable up to `after_sync`.
#[derive(Debug)]
struct AwaitFlush {
    conn: ConnId,
    response: RemotingCommand,
    after_sync: u64,
    deadline_ms: u64,
}

#[derive(Debug, Clone)]
struct ConnInfo {
    /// The peer address: `bornHost` of messages sent on this connection.
    remote: SocketAddr,
    /// The last heartbeat v2 fingerprint with subscriptions (§10.1).
    fingerprint: Option<i32>,
}

/// The broker's periodic jobs (style T3): each of RocketMQ's scheduled tasks is one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Timer {
    /// REGISTER_BROKER to every name server (`registerNameServerPeriod`).
    RegisterBroker,
    /// Write consumer offsets, topics and subscription groups when changed.
    PersistConfig,
    /// Drop clients silent for `channelExpiredTimeout`.
    ScanClients,
    /// Back-check unresolved transactions (`transactionCheckInterval`).
    CheckTransactions,
}

impl Timer {
    const COUNT: usize = 4;
    const ALL: [Timer; Timer::COUNT] = [
        Timer::RegisterBroker,
        Timer::PersistConfig,
        Timer::ScanClients,
        Timer::CheckTransactions,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

impl<S: Storage + Clone> Broker<S> {
    /// Opens the store on `storage` (recovering it) and loads `config/topics.json`,
    /// `config/consumerOffset.json` and `config/subscriptionGroup.json` when present.
    ///
    /// # Errors
    /// [`BrokerOpenError`]: the store did not open, or a config file is unreadable.
    pub fn new(
        config: BrokerConfig,
        storage: S,
        now_ms: u64,
    ) -> Result<(Broker<S>, RecoveryReport), BrokerOpenError> {
        let mut store_config = config.store.clone();
        // Controller mode: consumers read only what the whole sync state set holds (Java's
        // `readUnCommitted=false`), so no failover can take back a message already read.
        store_config.limit_reads_to_confirm_offset |= config.ha.controller_mode;
        let (mut store, report) = MessageStore::open(storage, store_config, now_ms)?;
        let ha = crate::ha::Replication::new(config.ha.clone());
        store.set_slave(!ha.role().is_master());
        let mut settings =
            TopicTableSettings::new(&config.broker_cluster_name, &config.broker_name);
        settings.auto_create_topic_enable = config.auto_create_topic_enable;
        settings.default_topic_queue_nums = config.default_topic_queue_nums;
        let mut topics = TopicConfigTable::new(settings, now_ms);
        let mut groups = SubscriptionGroupTable::new(config.auto_create_subscription_group, true);
        let mut offsets = ConsumerOffsetTable::new(false);
        persist::load_all(store.storage(), &mut topics, &mut groups, &mut offsets)?;
        let delay_offsets = persist::load_delay_offsets(store.storage())?;
        let schedule = schedule::Schedule::new(
            config.store.message_delay_level_ms.clone(),
            delay_offsets,
            &store,
            now_ms,
        );
        let uniq_keys = UniqKeyGenerator::new(config.store_host().ip(), config.pid, 0);
        let mut timers = [None; Timer::COUNT];
        timers[Timer::RegisterBroker.index()] = Some(now_ms);
        timers[Timer::PersistConfig.index()] =
            Some(now_ms + config.flush_consumer_offset_interval_ms);
        timers[Timer::ScanClients.index()] = Some(now_ms + CHANNEL_SCAN_INTERVAL_MS);
        timers[Timer::CheckTransactions.index()] =
            Some(now_ms + config.transaction_check_interval_ms.max(1));
        let timer = timer::TimerService::new(config.timer.clone(), now_ms);
        let controller = controller_client::ControllerClient::new(
            config.ha.controller_mode,
            &config.controller,
            now_ms,
        );
        let mut broker = Broker {
            consumers: ConsumerTable::new(config.channel_expired_timeout_ms),
            producers: ProducerTable::new(config.channel_expired_timeout_ms),
            hold: PullHold::new(config.pull_hold_max),
            rng: SplitMix64(config.rng_seed),
            config,
            store,
            topics,
            groups,
            offsets,
            locks: QueueLockTable::new(),
            schedule,
            await_flush: VecDeque::new(),
            conns: BTreeMap::new(),
            transmits: VecDeque::new(),
            timers,
            next_opaque: 0,
            uniq_keys,
            send_scratch: send::SendScratch::default(),
            transactions: transaction::TransactionTable::default(),
            transaction_progress: None,
            shut_down: false,
            ha,
            timer,
            controller,
            offload: false,
            work: None,
        };
        broker.start_controller_mode();
        broker.open_timer_if_used(now_ms)?;
        broker.recover_transactions(now_ms);
        Ok((broker, report))
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The message store, for inspection.
    pub fn store(&self) -> &MessageStore<S> {
        &self.store
    }

    /// The topic table, for inspection.
    pub fn topics(&self) -> &TopicConfigTable {
        &self.topics
    }

    /// Committed consumer offsets, for inspection.
    pub fn consumer_offsets(&self) -> &ConsumerOffsetTable {
        &self.offsets
    }

    /// Pull requests parked right now.
    pub fn held_pulls(&self) -> usize {
        self.hold.len()
    }

    /// Stops the broker: answers parked pulls, queues UNREGISTER_BROKER for every name
    /// server, syncs the store, writes `config/*.json`, then shuts the store down (checkpoint
    /// written, abort marker removed). Drain [`Role::poll_transmit`] afterwards. Later
    /// requests are answered SERVICE_NOT_AVAILABLE by the store.
    ///
    /// # Errors
    /// [`StoreError`] from the final flush; the abort marker then stays and the next start
    /// recovers as after a crash.
    pub fn shutdown(&mut self, now_ms: u64) -> Result<(), StoreError> {
        if self.shut_down {
            return Ok(());
        }
        self.shut_down = true;
        self.expire_held_pulls(u64::MAX, now_ms);
        self.release_all_replicas();
        self.unregister_all();
        let flushed = self.store.flush_all();
        self.flush_timer(now_ms);
        self.release_flushed(now_ms);
        self.persist_config(true);
        flushed?;
        self.store.shutdown()
    }

    /// Answers one request; `None` when the response is deferred (held pull, SYNC_FLUSH).
    /// `cmd` is mutable so a send can give its `extFields` buffers to the response.
    fn process(
        &mut self,
        conn: ConnId,
        cmd: &mut RemotingCommand,
        now_ms: u64,
    ) -> Option<RemotingCommand> {
        let code = RequestCode::from_value(cmd.code);
        let handled = match code {
            RequestCode::SendMessage
            | RequestCode::SendMessageV2
            | RequestCode::SendBatchMessage => return self.handle_send(conn, cmd, now_ms),
            RequestCode::PullMessage | RequestCode::LitePullMessage => {
                return self.handle_pull(conn, cmd, now_ms)
            }
            RequestCode::QueryConsumerOffset => self.query_consumer_offset(cmd),
            RequestCode::UpdateConsumerOffset => self.update_consumer_offset(cmd, now_ms),
            RequestCode::GetMaxOffset => self.max_offset(cmd),
            RequestCode::GetMinOffset => self.min_offset(cmd),
            RequestCode::SearchOffsetByTimestamp => self.search_offset(cmd),
            RequestCode::GetEarliestMsgStoretime => self.earliest_msg_store_time(cmd),
            RequestCode::HeartBeat => self.heartbeat(conn, cmd, now_ms),
            RequestCode::UnregisterClient => self.unregister_client(conn, cmd),
            RequestCode::GetConsumerListByGroup => self.consumer_list(cmd),
            RequestCode::ConsumerSendMsgBack => self.consumer_send_msg_back(cmd, now_ms),
            RequestCode::EndTransaction => return self.end_transaction(conn, cmd, now_ms),
            RequestCode::LockBatchMq => self.lock_batch(cmd, now_ms),
            RequestCode::UnlockBatchMq => self.unlock_batch(cmd),
            RequestCode::CheckClientConfig => {
                crate::filter::check_client_config(cmd, self.config.enable_property_filter)
            }
            RequestCode::InvokeBrokerToResetOffset => self.reset_offset(cmd, now_ms),
            RequestCode::NotifyBrokerRoleChanged => self.notify_broker_role_changed(cmd, now_ms),
            _ => match self.admin(cmd, code, now_ms) {
                Some(handled) => handled,
                None => Ok(not_supported(cmd)),
            },
        };
        Some(or_system_error(handled, conn, cmd))
    }

    /// Queues `response` for `conn` unless the request was oneway.
    fn respond(&mut self, conn: ConnId, request_oneway: bool, response: RemotingCommand) {
        respond(&mut self.transmits, conn, request_oneway, response);
    }

    fn next_opaque(&mut self) -> i32 {
        let opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        opaque
    }

    /// Starts the store's next flush request (one sync covers every append so far): hands it
    /// to the driver as work when it offloads, else runs it inline. Then releases the
    /// SYNC_FLUSH responses already durable and creates preallocated segments.
    fn flush_store(&mut self, now_ms: u64)
    where
        S: Send + 'static,
    {
        if self.offload {
            // The store hands out nothing while a request is in flight.
            if let Some(request) = self.store.poll_flush(now_ms) {
                let storage = self.store.storage().clone();
                self.work = Some(Work::new(move || WorkDone::Flush {
                    up_to: request.up_to,
                    result: request.run(&storage),
                }));
            }
        } else {
            while let Some(request) = self.store.poll_flush(now_ms) {
                let result = request.run(self.store.storage());
                if !self.flushed(request.up_to, result) {
                    break;
                }
            }
        }
        while let Some(segment) = self.store.poll_preallocate() {
            match self.store.storage().create(&segment.name, segment.len) {
                Ok(()) | Err(store_core::storage::StorageError::AlreadyExists { .. }) => {}
                Err(e) => {
                    tracing::warn!(segment = %segment.name, error = %e, "preallocation failed")
                }
            }
        }
        self.release_flushed(now_ms);
    }

    /// Reports a completed flush request to the store; false if it failed (the store then
    /// refuses writes).
    fn flushed(&mut self, up_to: u64, result: Result<(), StorageError>) -> bool {
        match result {
            Ok(()) => {
                self.store.handle_flushed(up_to);
                true
            }
            Err(e) => {
                self.store.handle_flush_failed(&e);
                false
            }
        }
    }

    /// Sends the held SYNC_FLUSH responses that are now durable, and answers
    /// FLUSH_DISK_TIMEOUT for those past their deadline (the message is stored either way).
    fn release_flushed(&mut self, now_ms: u64) {
        let flushed = self.store.flushed_offset();
        let mut waiting = VecDeque::with_capacity(self.await_flush.len());
        while let Some(mut held) = self.await_flush.pop_front() {
            if flushed >= held.after_sync {
                self.transmits.push_back(Transmit::Send {
                    conn: held.conn,
                    cmd: held.response,
                });
            } else if now_ms >= held.deadline_ms || self.shut_down {
                tracing::warn!(conn = ?held.conn, after_sync = held.after_sync, flushed, "sync flush timed out");
                held.response.code = ResponseCode::FlushDiskTimeout.value();
                self.transmits.push_back(Transmit::Send {
                    conn: held.conn,
                    cmd: held.response,
                });
            } else {
                waiting.push_back(held);
            }
        }
        self.await_flush = waiting;
    }

    fn on_timer(&mut self, timer: Timer, now_ms: u64) {
        match timer {
            Timer::RegisterBroker => {
                self.register_all();
                let period = self
                    .config
                    .register_name_server_period_ms
                    .clamp(10_000, 60_000);
                self.timers[timer.index()] = Some(now_ms + period);
            }
            Timer::PersistConfig => {
                self.persist_config(false);
                self.timers[timer.index()] =
                    Some(now_ms + self.config.flush_consumer_offset_interval_ms.max(1));
            }
            Timer::ScanClients => {
                self.scan_clients(now_ms);
                self.timers[timer.index()] = Some(now_ms + CHANNEL_SCAN_INTERVAL_MS);
            }
            Timer::CheckTransactions => {
                self.timers[timer.index()] = Some(self.check_transactions(now_ms));
            }
        }
    }

    /// Local hour of day for retention's `deleteWhen`.
    fn hour_of_day(&self, now_ms: u64) -> u8 {
        let local = i128::from(now_ms) + i128::from(self.config.utc_offset_ms);
        let hour = local.rem_euclid(86_400_000) / 3_600_000;
        u8::try_from(hour).unwrap_or(0)
    }

    /// After any request: changed tables are written, and a topic change registers with the
    /// name servers at once (§18.1).
    fn after_request(&mut self) {
        self.persist_tables(false);
        if self.topics.take_register_needed() {
            self.register_all();
        }
    }
}

impl<S: Storage + Clone + Send + 'static> Role for Broker<S> {
    fn handle_connected(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        dialled: Option<&str>,
        _now_ms: u64,
    ) {
        tracing::debug!(?conn, %remote, ?dialled, "connection opened");
        self.conns.insert(
            conn,
            ConnInfo {
                remote,
                fingerprint: None,
            },
        );
    }

    fn handle_command(&mut self, conn: ConnId, mut cmd: RemotingCommand, now_ms: u64) {
        if cmd.is_response() {
            self.handle_response(conn, &cmd, now_ms);
            self.after_request();
            return;
        }
        let oneway = cmd.is_oneway();
        if let Some(response) = self.process(conn, &mut cmd, now_ms) {
            self.respond(conn, oneway, response);
        }
        self.after_request();
    }

    fn handle_closed(&mut self, conn: ConnId, _now_ms: u64) {
        self.conns.remove(&conn);
        self.hold.remove_conn(conn);
        self.await_flush.retain(|held| held.conn != conn);
        self.ha.replicas.forget(|held| held.payload.conn != conn);
        self.client_closed(conn);
    }

    fn handle_peer_failed(&mut self, addr: &str, cmd: &RemotingCommand, now_ms: u64) {
        tracing::warn!(addr, code = cmd.code, "request to name server failed");
        self.controller_peer_failed(cmd, now_ms);
    }

    fn handle_timeout(&mut self, now_ms: u64) {
        if self.shut_down {
            return;
        }
        for timer in Timer::ALL {
            if self.timers[timer.index()].is_some_and(|at| now_ms >= at) {
                self.on_timer(timer, now_ms);
            }
        }
        // The schedule's wake time moves with every delayed put, so it is polled here like
        // the store's rather than kept in the fixed timer table.
        if self.schedule.next_wake().is_some_and(|at| now_ms >= at) {
            self.deliver_delayed(now_ms);
        }
        if self.store.poll_timeout().is_some_and(|at| now_ms >= at) {
            let hour = self.hour_of_day(now_ms);
            self.store.handle_timeout(now_ms, hour);
        }
        self.expire_held_pulls(now_ms, now_ms);
        self.flush_store(now_ms);
        self.replication_timeout(now_ms);
        self.controller_timeout(now_ms);
        self.run_timer(now_ms);
        self.after_request();
    }

    fn handle_turn_end(&mut self, now_ms: u64) {
        if self.shut_down {
            return;
        }
        self.flush_store(now_ms);
        self.release_replicated(now_ms);
        self.run_timer(now_ms);
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    fn offload_work(&mut self) {
        self.offload = true;
    }

    fn poll_work(&mut self) -> Option<Work> {
        self.work.take()
    }

    fn handle_work_done(&mut self, done: WorkDone, now_ms: u64) {
        match done {
            WorkDone::Flush { up_to, result } => {
                self.flushed(up_to, result);
            }
        }
        self.release_flushed(now_ms);
    }

    fn next_timeout(&self) -> Option<u64> {
        if self.shut_down {
            return None;
        }
        let timers = self.timers.iter().flatten().copied();
        let flush_deadlines = self.await_flush.iter().map(|held| held.deadline_ms);
        let replica_deadline = self.replication_deadline();
        timers
            .chain(self.store.poll_timeout())
            .chain(self.schedule.next_wake())
            .chain(self.timer.next_wake())
            .chain(self.hold.next_deadline())
            .chain(flush_deadlines)
            .chain(replica_deadline)
            .chain(self.controller_deadline())
            .min()
    }
}

/// A small seeded generator (SplitMix64) for queue selection; statistical quality is beside
/// the point, determinism under a seed is not (style T5).
#[derive(Clone, Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `[0, n)`; `n` must be positive.
    fn below(&mut self, n: i32) -> i32 {
        assert!(n > 0, "below() needs a positive bound");
        let n = u64::from(n.unsigned_abs());
        i32::try_from(self.next_u64() % n).unwrap_or(0)
    }
}
