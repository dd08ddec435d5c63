//! Starting and stopping each role: bind its port, open its store, run it on the driver until
//! shutdown, then stop it cleanly. Everything protocol-shaped lives in `proto-core`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use io_adapters::driver::{self, DriverConfig};
use proto_core::namesrv::{NameServer, NamesrvConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::cli::ConfArgs;
use crate::config::{ConfigError, Settings};

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("data directory {dir}: {reason}")]
    DataDir { dir: String, reason: String },
    #[error("store at {dir} cannot start: {reason}")]
    Store { dir: String, reason: String },
}

/// `node namesrv`.
pub async fn run_namesrv(
    listen: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let listener = bind(listen).await?;
    announce("name server", &listener);
    driver::run(
        NameServer::new(NamesrvConfig::default()),
        listener,
        DriverConfig::default(),
        shutdown,
        |_, _| {},
    )
    .await;
    tracing::info!("name server stopped");
    Ok(())
}

/// `node broker`.
pub async fn run_broker(
    conf: ConfArgs,
    namesrv: Option<String>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let mut settings = load_settings(&conf)?;
    if let Some(n) = namesrv {
        settings.set("namesrvAddr", &n)?;
    }
    if settings.broker_ip1.is_none() {
        settings.broker_ip1 = Some(crate::net::first_non_loopback_ipv4().to_string());
    }
    crate::broker::run(settings, shutdown).await
}

/// `node standalone`: a name server and a broker in one process, the broker registered with
/// its neighbour over loopback exactly as it would be with a remote one.
pub async fn run_standalone(
    conf: ConfArgs,
    data_dir: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let mut settings = load_settings(&conf)?;
    // The data dir flag wins unless the config names a store explicitly via --set.
    if !conf.set.iter().any(|s| s.starts_with("storePathRootDir=")) {
        settings.store_path_root_dir = data_dir;
    }
    if settings.broker_ip1.is_none() {
        settings.broker_ip1 = Some("127.0.0.1".to_string());
    }
    let ns_listener = bind(&settings.namesrv_listen).await?;
    let ns_port = local_addr(&ns_listener).port();
    if settings.namesrv_addr.is_none() {
        settings.namesrv_addr = Some(format!("127.0.0.1:{ns_port}"));
    }
    announce("name server", &ns_listener);

    let (stop_tx, stop_rx) = watch::channel(false);
    let namesrv = tokio::spawn(driver::run(
        NameServer::new(NamesrvConfig::default()),
        ns_listener,
        DriverConfig::default(),
        stopped(stop_rx),
        |_, _| {},
    ));
    let result = crate::broker::run(settings, shutdown).await;
    // The broker has stopped and said goodbye to the name server; now the name server goes.
    let _ = stop_tx.send(true);
    let _ = namesrv.await;
    result
}

/// `node controller`: one controller of a RocketMQ 5 controller group. Brokers talk to its
/// remoting port (`listenPort`); the group's raft runs on this node's `controllerDLegerPeers`
/// address; the log lives in `controllerStorePath`.
pub async fn run_controller(
    conf: ConfArgs,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    use crate::config::controller::ControllerSettings;
    use io_adapters::raft::{parse_peers, peer_id, ReplicatedConfig};
    use proto_core::controller::{ControllerConfig, ControllerRole};

    let mut settings = ControllerSettings::default();
    settings.apply(read_config_file(&conf)?.as_deref(), &conf.set)?;
    let bad = |key: &str, value: &str, reason: String| {
        NodeError::Config(ConfigError::BadValue {
            key: key.to_string(),
            value: value.to_string(),
            reason,
        })
    };
    let peers = parse_peers(&settings.peers)
        .map_err(|e| bad("controllerDLegerPeers", &settings.peers, e.to_string()))?;
    let self_id = peer_id(&settings.self_id)
        .map_err(|e| bad("controllerDLegerSelfId", &settings.self_id, e.to_string()))?;
    let me = peers.iter().find(|p| p.id == self_id).ok_or_else(|| {
        bad(
            "controllerDLegerSelfId",
            &settings.self_id,
            "not one of controllerDLegerPeers".to_string(),
        )
    })?;
    let raft_listener = bind(&me.raft_addr).await?;
    let remoting_listener = bind(&format!(
        "{}:{}",
        settings.bind_address, settings.listen_port
    ))
    .await?;
    // Brokers reach us on the host of our raft address, at the remoting port.
    let host = me
        .raft_addr
        .rsplit_once(':')
        .map_or(me.raft_addr.as_str(), |(h, _)| h);
    let remoting_addr = format!("{host}:{}", local_addr(&remoting_listener).port());
    let storage =
        io_adapters::MmapStorage::open(&settings.store_path).map_err(|e| NodeError::DataDir {
            dir: settings.store_path.display().to_string(),
            reason: e.to_string(),
        })?;
    tracing::info!(raft = %me.raft_addr, group = %settings.group, "controller {} raft listening", settings.self_id);
    announce(
        &format!("controller {}", settings.self_id),
        &remoting_listener,
    );
    let role = ControllerRole::new(ControllerConfig {
        controller_dleger_group: settings.group.clone(),
        controller_dleger_peers: settings.peers.clone(),
        self_id,
        remoting_addr: remoting_addr.clone(),
        scan_not_active_broker_interval_ms: settings.scan_not_active_broker_interval_ms,
        enable_elect_unclean_master: settings.enable_elect_unclean_master,
        notify_broker_role_changed: settings.notify_broker_role_changed,
        controller_heart_beat_timeout_mills: settings.broker_heartbeat_timeout_ms,
    });
    let config = ReplicatedConfig {
        self_id,
        peers,
        group: settings.group.clone(),
        remoting_addr,
        raft_listener,
        remoting_listener,
        storage: std::sync::Arc::new(storage),
        driver: DriverConfig::default(),
        heartbeat: CONTROLLER_RAFT_HEARTBEAT,
    };
    io_adapters::controller::run_controller(role, config, shutdown)
        .await
        .map_err(|e| NodeError::Store {
            dir: settings.store_path.display().to_string(),
            reason: e.to_string(),
        })?;
    tracing::info!("controller stopped");
    Ok(())
}

/// Raft heartbeat of the controller group; a leader is replaced after 3-6 missed ones
/// (DLedger's defaults are 2 s heartbeats and a 3 s-ish election timeout; we fail over faster).
const CONTROLLER_RAFT_HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(300);

fn read_config_file(conf: &ConfArgs) -> Result<Option<String>, NodeError> {
    match &conf.config {
        Some(path) => Ok(Some(std::fs::read_to_string(path).map_err(|e| {
            ConfigError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            }
        })?)),
        None => Ok(None),
    }
}

fn load_settings(conf: &ConfArgs) -> Result<Settings, NodeError> {
    let mut settings = Settings::default();
    settings.apply(read_config_file(conf)?.as_deref(), &conf.set)?;
    Ok(settings)
}

pub(crate) async fn bind(addr: &str) -> Result<TcpListener, NodeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| NodeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

pub(crate) fn local_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

pub(crate) fn announce(what: &str, listener: &TcpListener) {
    let addr = local_addr(listener);
    tracing::info!(%addr, "{what} listening");
    println!("{what} listening on {addr}");
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
