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

fn load_settings(conf: &ConfArgs) -> Result<Settings, NodeError> {
    let mut settings = Settings::default();
    let text = match &conf.config {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
        ),
        None => None,
    };
    settings.apply(text.as_deref(), &conf.set)?;
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
