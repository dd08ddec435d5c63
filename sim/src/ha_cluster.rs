//! One replicated broker set on madsim hosts: brokers of one `brokerName` (master id 0, slaves
//! 1..), each running the production driver with the production HA adapter around it
//! (`io_adapters::ha::hooks`, `serve_master`, `run_slave`, as `node broker` wires them), on a
//! [`SimDisk`] kept across kill and restart. After every turn each broker publishes its
//! (role, epoch) here, so checkers can tell who was master of which epoch when it answered.
//!
//! Also the commit-log reader the replica checkers use: every record and blank of a disk's
//! commit log, read straight from its segments (what a slave holds is bytes at the master's
//! offsets, so two logs compare record by record).
//!
//! And the controller group of controller mode: `run_controller` hosts, each on a [`SimDisk`]
//! (the raft log and vote) kept across kill and restart.
//!
//! What it leaves out: the name server (the run starts it through `Cluster`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use io_adapters::clock;
use io_adapters::controller::run_controller;
use io_adapters::driver::{self, DriverConfig};
use io_adapters::raft::{parse_peers, ReplicatedConfig};
use madsim::runtime::{Handle, NodeHandle};
use madsim::task::NodeId;
use proto_core::broker::{Broker, BrokerConfig};
use proto_core::controller::{ControllerConfig, ControllerRole};
use proto_core::ha::{BrokerRole, HaView};
use proto_core::RequestCode;
use store_core::commit_log::{parse_segment_name, segment_name, COMMIT_LOG_DIR};
use store_core::format::record::{decode_with, peek, CrcCheck, MessageRecord, SlotKind};
use store_core::storage::{MemStorage, Storage};
use tokio::net::TcpListener;

use crate::cluster::{broker_config, broker_ip, BROKER_PORT};
use crate::disk::SimDisk;
use crate::history::History;
use crate::options::{Bug, Options};
use crate::recovery_check::check_consume_queues;
use crate::trace::Trace;
use crate::workload::{request, Connections};

/// The HA port of every broker (`listenPort + 1`, RocketMQ's default).
pub const HA_PORT: u16 = BROKER_PORT + 1;
/// The one broker set's name.
pub const SET_NAME: &str = "broker-a";

/// What a broker last published after a turn.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Published {
    pub role: Option<BrokerRole>,
    pub epoch: u64,
    pub max_offset: u64,
    /// The epoch of the last turn in which the broker was a master (what it answered sends
    /// under); kept across a change to slave.
    pub master_epoch: Option<u64>,
    /// Whether the broker's driver is running (false before its first turn and after a kill).
    pub up: bool,
}

/// One broker host of the set and its disk.
pub struct Replica {
    pub id: NodeId,
    pub disk: SimDisk,
    pub published: Arc<Mutex<Published>>,
}

/// The broker set.
pub struct HaSet {
    pub replicas: Vec<Replica>,
    trace: Trace,
    history: History,
}

/// How replica `i` is configured: the default HA (master 0 with fixed slaves).
pub fn replica_config(opts: &Options, i: usize) -> BrokerConfig {
    let mut config = broker_config(opts, i);
    config.broker_name = SET_NAME.to_string();
    config.broker_id = i as i64;
    config.ha_listen_port = HA_PORT;
    config.ha.role = match (i, opts.bug) {
        // The planted bug: the master answers before any slave has the message.
        (0, Some(Bug::AckBeforeReplica)) => BrokerRole::AsyncMaster,
        (0, _) => BrokerRole::SyncMaster,
        _ => BrokerRole::Slave,
    };
    if i != 0 {
        config.ha.ha_master_address = Some(format!("{}:{HA_PORT}", broker_ip(0)));
    }
    config.ha.in_sync_replicas = opts.in_sync_replicas;
    // Faster than the defaults (5 s / 20 s) so a dead link is noticed within a short run.
    config.ha.ha_send_heartbeat_interval_ms = 1_000;
    config.ha.ha_housekeeping_interval_ms = 5_000;
    config
}

impl HaSet {
    /// Starts `opts.replicas` brokers of one set, configured by `config(i)`.
    pub fn start(
        opts: &Options,
        trace: &Trace,
        history: &History,
        config: impl Fn(usize) -> BrokerConfig,
    ) -> HaSet {
        let handle = Handle::current();
        let replicas = (0..opts.replicas)
            .map(|i| {
                let disk = SimDisk::new(
                    opts.bug,
                    None,
                    opts.seed ^ (0xD15C + i as u64),
                    trace.clone(),
                );
                let published = Arc::new(Mutex::new(Published::default()));
                let host = Host {
                    index: i,
                    config: config(i),
                    disk: disk.clone(),
                    trace: trace.clone(),
                    history: history.clone(),
                    published: published.clone(),
                };
                let id = handle
                    .create_node()
                    .name(format!("{SET_NAME}-{i}"))
                    .ip(broker_ip(i))
                    .init(move || run_replica(host.clone()))
                    .build()
                    .id();
                Replica {
                    id,
                    disk,
                    published,
                }
            })
            .collect();
        HaSet {
            replicas,
            trace: trace.clone(),
            history: history.clone(),
        }
    }

    /// kill -9 of replica `i`; its disk keeps only synced bytes.
    pub fn kill(&self, i: usize) {
        let Some(r) = self.replicas.get(i) else {
            return;
        };
        Handle::current().kill(r.id);
        // A restart publishes again after its first turn; until then nothing is known.
        let mut p = lock(&r.published);
        p.up = false;
        p.role = None;
        drop(p);
        self.history.killed(i);
        r.disk.mem.crash(None);
        self.trace.event(format!(
            "KILL {SET_NAME}-{i} (crash, {} bytes on disk)",
            r.disk.mem.used_bytes()
        ));
    }

    pub fn restart(&self, i: usize) {
        let Some(r) = self.replicas.get(i) else {
            return;
        };
        self.trace.event(format!("RESTART {SET_NAME}-{i}"));
        Handle::current().restart(r.id);
    }

    /// Each replica's published state, for tasks on other hosts.
    pub fn publications(&self) -> Vec<Arc<Mutex<Published>>> {
        self.replicas.iter().map(|r| r.published.clone()).collect()
    }

    /// What replica `i` last published.
    pub fn published(&self, i: usize) -> Published {
        self.replicas
            .get(i)
            .map(|r| lock(&r.published).clone())
            .unwrap_or_default()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Clone)]
struct Host {
    /// The replica's place in the set (its host name's suffix).
    index: usize,
    config: BrokerConfig,
    disk: SimDisk,
    trace: Trace,
    history: History,
    published: Arc<Mutex<Published>>,
}

/// A replica host's main: open the store (recovering it), check the consume queues, then
/// serve with the HA adapter's tasks beside the driver.
async fn run_replica(host: Host) {
    let Host {
        index,
        config,
        disk,
        trace,
        history,
        published,
    } = host;
    let name = format!("{SET_NAME}-{index}");
    let (listener, ha_listener) = match (
        TcpListener::bind(("0.0.0.0", config.listen_port)).await,
        TcpListener::bind(("0.0.0.0", config.ha_listen_port)).await,
    ) {
        (Ok(l), Ok(h)) => (l, h),
        (Err(e), _) | (_, Err(e)) => return trace.event(format!("{name} cannot bind: {e}")),
    };
    let segment_size = config.store.segment_size;
    let (broker, report) = match Broker::new(config, disk.clone(), clock::now_ms()) {
        Ok(opened) => opened,
        Err(e) => {
            history.fail_liveness(format!("{name} cannot open its store: {e}"));
            return;
        }
    };
    trace.event(format!(
        "{name} up as {}, end_offset={} durable_offset={}",
        broker.ha_view().role.name(),
        report.end_offset,
        report.durable_offset
    ));
    for problem in check_consume_queues(&disk, segment_size, report.end_offset) {
        history.fail_liveness(format!("{name} after recovery: {problem}"));
    }
    let (mut hooks, ha) = io_adapters::ha::hooks(&broker);
    let mut ha_after_turn = hooks.after_turn;
    let mut last: Option<HaView> = None;
    hooks.after_turn = Box::new(move |broker: &Broker<SimDisk>| {
        ha_after_turn(broker);
        let view = broker.ha_view();
        if last.as_ref() != Some(&view) {
            let changed = last
                .as_ref()
                .is_none_or(|l| (l.role, l.epoch) != (view.role, view.epoch));
            if changed {
                trace.event(format!(
                    "{name} is {} epoch {}",
                    view.role.name(),
                    view.epoch
                ));
            }
            let mut p = lock(&published);
            p.master_epoch = if view.role.is_master() {
                Some(view.epoch)
            } else {
                p.master_epoch
            };
            p.role = Some(view.role);
            p.epoch = view.epoch;
            p.max_offset = view.max_offset;
            p.up = true;
            drop(p);
            last = Some(view);
        }
    });
    let ha_master = tokio::spawn(io_adapters::ha::serve_master(ha_listener, ha.clone()));
    let ha_slave = tokio::spawn(io_adapters::ha::run_slave(ha));
    // Never stopped cleanly: a kill is the only way down.
    driver::run_with(
        broker,
        listener,
        DriverConfig::default(),
        std::future::pending(),
        |_, _| {},
        hooks,
    )
    .await;
    ha_master.abort();
    ha_slave.abort();
}

/// One slot of a commit log: a message record (with its raw bytes) or a segment's blank tail.
#[derive(Clone, Debug, PartialEq)]
pub enum Slot {
    Message {
        raw: Bytes,
        record: Box<MessageRecord>,
    },
    Blank(u64),
}

/// Every slot of `mem`'s commit log from its first segment, by commit-log offset, up to the
/// first empty or undecodable slot (what recovery would keep, without CRC checks: the bytes
/// are compared, not trusted). Reads what is written, synced or not.
pub fn read_log(mem: &MemStorage, segment_size: u64) -> Vec<(u64, Slot)> {
    let mut bases: Vec<u64> = mem
        .list(COMMIT_LOG_DIR)
        .unwrap_or_default()
        .iter()
        .filter_map(|n| parse_segment_name(n))
        .collect();
    bases.sort_unstable();
    let mut slots = Vec::new();
    for base in bases {
        let Ok(bytes) = mem.read_at(&segment_name(base), 0, segment_size) else {
            return slots;
        };
        let mut pos = 0u64;
        loop {
            let Some(head) = bytes.get(pos as usize..).and_then(peek) else {
                return slots;
            };
            let Some(len) = u64::try_from(head.total_size).ok().filter(|l| *l > 0) else {
                return slots;
            };
            match head.kind() {
                SlotKind::Blank => {
                    slots.push((base + pos, Slot::Blank(len)));
                    break;
                }
                SlotKind::Message(_) => {
                    let raw = bytes.slice(pos as usize..((pos + len) as usize).min(bytes.len()));
                    let Ok((record, _)) = decode_with(&raw, CrcCheck::Skip) else {
                        return slots;
                    };
                    slots.push((
                        base + pos,
                        Slot::Message {
                            raw,
                            record: Box::new(record),
                        },
                    ));
                    pos += len;
                }
                SlotKind::Empty | SlotKind::Corrupt => return slots,
            }
        }
    }
    slots
}

/// The controllers' remoting port (`listenPort` of `node controller`) and raft port.
pub const CONTROLLER_PORT: u16 = 9878;
pub const CONTROLLER_RAFT_PORT: u16 = 9877;

pub fn controller_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1 + i as u8))
}

pub fn controller_addr(i: usize) -> String {
    SocketAddr::new(controller_ip(i), CONTROLLER_PORT).to_string()
}

/// `controllerDLegerPeers` of the group: `n0-ip:raftport;n1-...`.
pub fn controller_peers(n: usize) -> String {
    (0..n)
        .map(|i| format!("n{i}-{}:{CONTROLLER_RAFT_PORT}", controller_ip(i)))
        .collect::<Vec<_>>()
        .join(";")
}

/// How replica `i` is configured in controller mode: every member of the sync state set must
/// acknowledge a SYNC send, and at least `opts.in_sync_replicas` must be in it.
pub fn controller_mode_config(opts: &Options, i: usize) -> BrokerConfig {
    let mut config = replica_config(opts, i);
    // Controller-mode ids start at 1 (RocketMQ's controller hands out 1, 2, ...): id 0 is
    // what a master registers with at the name server, never a broker's own.
    config.broker_id = i as i64 + 1;
    config.ha.role = BrokerRole::SyncMaster;
    config.ha.ha_master_address = None;
    config.ha.controller_mode = true;
    // The planted bug: the master answers once stored locally (no replica needed).
    let bug = opts.bug == Some(Bug::AckBeforeReplica);
    config.ha.all_ack_in_sync_state_set = !bug;
    config.ha.min_in_sync_replicas = if bug { 1 } else { opts.in_sync_replicas };
    config.ha.in_sync_replicas = if bug { 1 } else { opts.in_sync_replicas };
    if bug {
        config.ha.role = BrokerRole::AsyncMaster;
    }
    config.controller.controller_addrs = (0..opts.controllers).map(controller_addr).collect();
    config
}

/// One controller host and its disk (the raft log and vote), kept across kill and restart.
pub struct ControllerNode {
    pub id: NodeId,
    pub disk: SimDisk,
}

/// The controller group, and a client host to ask it who leads.
pub struct Controllers {
    pub nodes: Vec<ControllerNode>,
    asker: NodeHandle,
    trace: Trace,
}

impl Controllers {
    pub fn start(opts: &Options, trace: &Trace) -> Controllers {
        let handle = Handle::current();
        let peers = controller_peers(opts.controllers);
        let nodes = (0..opts.controllers)
            .map(|i| {
                let disk = SimDisk::new(None, None, opts.seed ^ (0xC0DE + i as u64), trace.clone());
                let node_disk = disk.clone();
                let node_trace = trace.clone();
                let peers = peers.clone();
                let id = handle
                    .create_node()
                    .name(format!("controller-{i}"))
                    .ip(controller_ip(i))
                    .init(move || {
                        run_controller_host(i, peers.clone(), node_disk.clone(), node_trace.clone())
                    })
                    .build()
                    .id();
                ControllerNode { id, disk }
            })
            .collect();
        let asker = handle
            .create_node()
            .name("controller-asker")
            .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 201)))
            .build();
        Controllers {
            nodes,
            asker,
            trace: trace.clone(),
        }
    }

    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// kill -9 of controller `i`; its disk keeps only synced bytes.
    pub fn kill(&self, i: usize) {
        let Some(n) = self.nodes.get(i) else { return };
        Handle::current().kill(n.id);
        n.disk.mem.crash(None);
        self.trace.event(format!("KILL controller-{i}"));
    }

    pub fn restart(&self, i: usize) {
        let Some(n) = self.nodes.get(i) else { return };
        self.trace.event(format!("RESTART controller-{i}"));
        Handle::current().restart(n.id);
    }

    /// The controller that says it leads (CONTROLLER_GET_METADATA_INFO), asked in turn.
    pub async fn leader(&self) -> Option<usize> {
        let n = self.nodes.len();
        let found = self
            .asker
            .spawn(async move {
                let mut conns = Connections::default();
                for i in 0..n {
                    let cmd = request(RequestCode::ControllerGetMetadataInfo, &[]);
                    if let Ok(resp) = conns.invoke(&controller_addr(i), cmd).await {
                        if resp.ext("isLeader") == Some("true") {
                            return Some(i);
                        }
                    }
                }
                None
            })
            .await
            .ok()
            .flatten();
        self.trace.event(format!(
            "controller leader: {:?}",
            found.map(|i| format!("controller-{i}"))
        ));
        found
    }
}

/// The group name (`controllerDLegerGroup`).
const CONTROLLER_GROUP: &str = "sim-controllers";
/// The raft heartbeat `node controller` uses.
const CONTROLLER_RAFT_HEARTBEAT: Duration = Duration::from_millis(300);

/// A controller host's main: the production controller (`run_controller`) on its kept disk.
async fn run_controller_host(i: usize, peers_text: String, disk: SimDisk, trace: Trace) {
    let name = format!("controller-{i}");
    let peers = match parse_peers(&peers_text) {
        Ok(p) => p,
        Err(e) => return trace.event(format!("{name}: bad peers: {e}")),
    };
    let (remoting_listener, raft_listener) = match (
        TcpListener::bind(("0.0.0.0", CONTROLLER_PORT)).await,
        TcpListener::bind(("0.0.0.0", CONTROLLER_RAFT_PORT)).await,
    ) {
        (Ok(r), Ok(f)) => (r, f),
        (Err(e), _) | (_, Err(e)) => return trace.event(format!("{name} cannot bind: {e}")),
    };
    let role = ControllerRole::new(ControllerConfig {
        controller_dleger_group: CONTROLLER_GROUP.to_string(),
        controller_dleger_peers: peers_text.clone(),
        self_id: i as u64,
        remoting_addr: controller_addr(i),
        ..ControllerConfig::default()
    });
    let config = ReplicatedConfig {
        self_id: i as u64,
        peers,
        group: CONTROLLER_GROUP.to_string(),
        remoting_addr: controller_addr(i),
        raft_listener,
        remoting_listener,
        storage: Arc::new(disk),
        driver: DriverConfig::default(),
        heartbeat: CONTROLLER_RAFT_HEARTBEAT,
    };
    trace.event(format!("{name} up"));
    if let Err(e) = run_controller(role, config, std::future::pending()).await {
        trace.event(format!("{name} stopped: {e}"));
    }
}
