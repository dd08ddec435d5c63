//! The simulated cluster: one name server node and broker nodes, each a madsim host running
//! the production driver (`io_adapters::driver::run`) over the real role machines. A broker's
//! disk is a [`SimDisk`] the harness keeps across kill and restart; a kill is followed by
//! `MemStorage::crash`, so the restarted broker recovers from synced bytes only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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
use crate::options::Options;
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
                let disk = SimDisk::new(opts.bug);
                let config = broker_config(opts, i);
                let node_disk = disk.clone();
                let node_trace = trace.clone();
                let id = handle
                    .create_node()
                    .name(broker_name(i))
                    .ip(broker_ip(i))
                    .init(move || run_broker(config.clone(), node_disk.clone(), node_trace.clone()))
                    .build()
                    .id();
                BrokerNode { id, disk }
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
        let net = NetSim::current();
        if clog {
            net.clog_link(b.id, self.namesrv);
            net.clog_link(self.namesrv, b.id);
        } else {
            net.unclog_link(b.id, self.namesrv);
            net.unclog_link(self.namesrv, b.id);
        }
        self.trace.event(format!(
            "{} {}<->namesrv",
            if clog { "CLOG" } else { "UNCLOG" },
            broker_name(i)
        ));
    }
}

fn broker_config(opts: &Options, i: usize) -> BrokerConfig {
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
    config.store.flush.flush_disk_type = if opts.sync_flush {
        FlushDiskType::SyncFlush
    } else {
        FlushDiskType::AsyncFlush
    };
    config
}

/// A broker host's main: open the store on the kept disk (recovering it), then serve.
async fn run_broker(config: BrokerConfig, disk: SimDisk, trace: Trace) {
    let name = config.broker_name.clone();
    let listener = match TcpListener::bind(("0.0.0.0", config.listen_port)).await {
        Ok(l) => l,
        Err(e) => return trace.event(format!("{name} cannot bind: {e}")),
    };
    let (broker, report) = match Broker::new(config, disk, clock::now_ms()) {
        Ok(opened) => opened,
        Err(e) => {
            // Stays down: the liveness phase then fails with this line in the trace.
            trace.event(format!("BROKER OPEN FAILED {name}: {e}"));
            return std::future::pending().await;
        }
    };
    trace.event(format!(
        "{name} up, clean_shutdown={} end_offset={} durable_offset={}",
        report.clean_shutdown, report.end_offset, report.durable_offset
    ));
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
