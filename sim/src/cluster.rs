//! The simulated cluster: one name server node and broker nodes, each a madsim host running
//! the production driver (`io_adapters::driver::run`) over the real role machines. A broker's
//! disk is a [`SimDisk`] the harness keeps across kill and restart; a kill is followed by
//! `MemStorage::crash`, so the restarted broker recovers from synced bytes only. After every
//! recovery, before the broker serves, [`check_consume_queues`] walks its consume queues.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use io_adapters::clock;
use io_adapters::driver::{self, DriverConfig};
use madsim::net::NetSim;
use madsim::runtime::Handle;
use madsim::task::NodeId;
use proto_core::broker::{Broker, BrokerConfig};
use proto_core::namesrv::{NameServer, NamesrvConfig};
use store_core::consume_queue::ConsumeQueueConfig;
use store_core::flush::FlushDiskType;
use store_core::index::IndexConfig;
use tokio::net::TcpListener;

use crate::disk::SimDisk;
use crate::history::History;
use crate::options::{Options, Scenario};
use crate::recovery_check::check_consume_queues;
use crate::trace::Trace;

pub const NAMESRV_PORT: u16 = 9876;
pub const BROKER_PORT: u16 = 10911;

pub fn namesrv_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))
}

pub fn broker_ip(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 1, 1 + i as u8))
}

pub fn namesrv_addr() -> String {
    SocketAddr::new(namesrv_ip(), NAMESRV_PORT).to_string()
}

pub fn broker_addr(i: usize) -> String {
    SocketAddr::new(broker_ip(i), BROKER_PORT).to_string()
}

pub fn broker_name(i: usize) -> String {
    format!("broker-{}", (b'a' + i as u8) as char)
}

/// One broker host and its disk.
pub struct BrokerNode {
    pub id: NodeId,
    pub disk: SimDisk,
    /// What the operator sets before the next start: open with `truncate_on_corruption`.
    pub truncate_on_corruption: Arc<AtomicBool>,
    /// Why the last start failed, if it did (cleared by the next successful start).
    pub open_error: Arc<Mutex<Option<String>>>,
}

/// What a broker host's main needs besides its config.
#[derive(Clone)]
struct BrokerHost {
    disk: SimDisk,
    trace: Trace,
    history: History,
    truncate_on_corruption: Arc<AtomicBool>,
    open_error: Arc<Mutex<Option<String>>>,
}

/// The server side of a run.
pub struct Cluster {
    pub namesrv: NodeId,
    pub brokers: Vec<BrokerNode>,
    trace: Trace,
    history: History,
    tear: Option<u64>,
}

impl Cluster {
    pub fn start(opts: &Options, trace: &Trace, history: &History) -> Cluster {
        let handle = Handle::current();
        let ns_trace = trace.clone();
        let namesrv = handle
            .create_node()
            .name("namesrv")
            .ip(namesrv_ip())
            .init(move || {
                let trace = ns_trace.clone();
                async move {
                    let listener = match TcpListener::bind(("0.0.0.0", NAMESRV_PORT)).await {
                        Ok(l) => l,
                        Err(e) => return trace.event(format!("namesrv cannot bind: {e}")),
                    };
                    trace.event("namesrv up");
                    let machine = NameServer::new(NamesrvConfig::default());
                    driver::run(
                        machine,
                        listener,
                        DriverConfig::default(),
                        std::future::pending(),
                        |_, _| {},
                    )
                    .await;
                }
            })
            .build()
            .id();
        let brokers = (0..opts.brokers)
            .map(|i| {
                let disk = SimDisk::new(
                    opts.bug,
                    opts.slow_sync,
                    opts.seed ^ (0xD15C + i as u64),
                    trace.clone(),
                );
                let config = broker_config(opts, i);
                let host = BrokerHost {
                    disk: disk.clone(),
                    trace: trace.clone(),
                    history: history.clone(),
                    truncate_on_corruption: Arc::new(AtomicBool::new(false)),
                    open_error: Arc::new(Mutex::new(None)),
                };
                let node_host = host.clone();
                let id = handle
                    .create_node()
                    .name(broker_name(i))
                    .ip(broker_ip(i))
                    .init(move || run_broker(config.clone(), node_host.clone()))
                    .build()
                    .id();
                BrokerNode {
                    id,
                    disk,
                    truncate_on_corruption: host.truncate_on_corruption,
                    open_error: host.open_error,
                }
            })
            .collect();
        Cluster {
            namesrv,
            brokers,
            trace: trace.clone(),
            history: history.clone(),
            tear: opts.tear,
        }
    }

    /// kill -9 of broker `i`: its tasks vanish, then its disk loses what was not synced
    /// (tearing the last unsynced write of each file when the run says so).
    pub fn kill_broker(&self, i: usize) {
        let Some(b) = self.brokers.get(i) else { return };
        Handle::current().kill(b.id);
        self.history.killed(i);
        b.disk.mem.crash(self.tear);
        self.trace.event(format!(
            "KILL {} (crash, tear={:?}, {} bytes on disk)",
            broker_name(i),
            self.tear,
            b.disk.mem.used_bytes()
        ));
    }

    pub fn restart_broker(&self, i: usize) {
        let Some(b) = self.brokers.get(i) else { return };
        self.trace.event(format!("RESTART {}", broker_name(i)));
        Handle::current().restart(b.id);
    }

    /// Clogs (or unclogs) both directions between broker `i` and the name server.
    pub fn clog_namesrv_link(&self, i: usize, clog: bool) {
        let Some(b) = self.brokers.get(i) else { return };
        clog_link(b.id, self.namesrv, clog);
        clog_link(self.namesrv, b.id, clog);
        self.trace.event(format!(
            "{} {}<->namesrv",
            if clog { "CLOG" } else { "UNCLOG" },
            broker_name(i)
        ));
    }

    /// kill -9 of the name server: its routing table is gone; brokers re-register on their
    /// next 30 s beat.
    pub fn kill_namesrv(&self) {
        Handle::current().kill(self.namesrv);
        self.trace.event("KILL namesrv");
    }

    pub fn restart_namesrv(&self) {
        self.trace.event("RESTART namesrv");
        Handle::current().restart(self.namesrv);
    }

    /// Broker `i`'s last start failed with this error (it is waiting for an operator).
    pub fn open_error(&self, i: usize) -> Option<String> {
        let b = self.brokers.get(i)?;
        b.open_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The operator's answer to a refused start: allow truncating damaged data.
    pub fn set_truncate_on_corruption(&self, i: usize) {
        if let Some(b) = self.brokers.get(i) {
            b.truncate_on_corruption.store(true, Ordering::SeqCst);
            self.trace.event(format!(
                "OPERATOR {}: truncate_on_corruption=true",
                broker_name(i)
            ));
        }
    }
}

/// Clogs (or unclogs) the direction `from -> to`. Data on open connections waits; new
/// connections are refused at once.
pub fn clog_link(from: NodeId, to: NodeId, clog: bool) {
    let net = NetSim::current();
    if clog {
        net.clog_link(from, to);
    } else {
        net.unclog_link(from, to);
    }
}

/// Broker `i`'s config for `opts` (the HA set starts from it too).
pub fn broker_config(opts: &Options, i: usize) -> BrokerConfig {
    let mut config = BrokerConfig {
        broker_name: broker_name(i),
        broker_ip1: broker_ip(i).to_string(),
        listen_port: BROKER_PORT,
        namesrv_addrs: vec![namesrv_addr()],
        default_topic_queue_nums: opts.queues,
        rng_seed: opts.seed ^ (i as u64 + 1),
        pid: 1000 + i as u32,
        ..BrokerConfig::default()
    };
    config.store.segment_size = opts.segment_size;
    config.store.consume_queue = ConsumeQueueConfig { units_per_file: 64 };
    config.store.index = IndexConfig {
        max_hash_slot_num: 64,
        max_index_num: 256,
    };
    config.store.physical_memory_bytes = 64 << 20;
    if matches!(
        opts.scenario,
        Scenario::DelayTimerCrash | Scenario::RetryDlqCrash
    ) {
        // Short levels ("1s 2s 3s"), so delayed messages come due within the run.
        config.store.message_delay_level_ms = crate::scenarios::DELAY_LEVELS_MS.to_vec();
    }
    if opts.scenario == Scenario::TransactionCrash {
        // Back-checks within the run: halves older than 2 s checked every 3 s; enough checks
        // that producer and broker restarts never exhaust them.
        config.transaction_timeout_ms = 2_000;
        config.transaction_check_interval_ms = 3_000;
        config.transaction_check_max = 40;
    }
    if opts.disk_full.is_some() {
        config.store.retention.clean_file_forcibly_enable = false;
    }
    config.store.flush.flush_disk_type = if opts.sync_flush {
        FlushDiskType::SyncFlush
    } else {
        FlushDiskType::AsyncFlush
    };
    config
}

/// A broker host's main: open the store on the kept disk (recovering it), check what recovery
/// left, then serve.
async fn run_broker(mut config: BrokerConfig, host: BrokerHost) {
    let BrokerHost {
        disk,
        trace,
        history,
        truncate_on_corruption,
        open_error,
    } = host;
    let name = config.broker_name.clone();
    let listener = match TcpListener::bind(("0.0.0.0", config.listen_port)).await {
        Ok(l) => l,
        Err(e) => return trace.event(format!("{name} cannot bind: {e}")),
    };
    config.store.truncate_on_corruption = truncate_on_corruption.load(Ordering::SeqCst);
    let segment_size = config.store.segment_size;
    let (broker, report) = match Broker::new(config, disk.clone(), clock::now_ms()) {
        Ok(opened) => opened,
        Err(e) => {
            // Stays down until the scenario (the operator) acts; otherwise the liveness phase
            // fails with this line in the trace.
            trace.event(format!("BROKER OPEN FAILED {name}: {e}"));
            *open_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            return std::future::pending().await;
        }
    };
    *open_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
    trace.event(format!(
        "{name} up, clean_shutdown={} end_offset={} durable_offset={} stopped_at={:?}",
        report.clean_shutdown,
        report.end_offset,
        report.durable_offset,
        report.stopped_at.as_ref().map(ToString::to_string)
    ));
    for problem in check_consume_queues(&disk, segment_size, report.end_offset) {
        history.fail_liveness(format!("{name} after recovery: {problem}"));
    }
    // Never stopped cleanly: a kill is the only way down.
    driver::run(
        broker,
        listener,
        DriverConfig::default(),
        std::future::pending(),
        |_, _| {},
    )
    .await;
}

/// Sleeps `ms` of simulated time.
pub async fn sleep_ms(ms: u64) {
    madsim::time::sleep(Duration::from_millis(ms)).await;
}
