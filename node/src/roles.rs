//! Starting and stopping each role: bind its port, run it on the driver until shutdown, then
//! stop it cleanly. Everything protocol-shaped lives in `proto-core`.

use std::future::Future;
use std::net::SocketAddr;

use io_adapters::driver::{self, DriverConfig};
use proto_core::namesrv::{NameServer, NamesrvConfig};
use tokio::net::TcpListener;

use crate::config::ConfigError;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source} (is another process using the port?)")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("the broker role is not wired into this build yet; `node namesrv` is available")]
    BrokerUnavailable,
}

/// `node namesrv`.
pub async fn run_namesrv(
    listen: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let listener = bind(listen).await?;
    announce("name server", &listener);
    let machine = NameServer::new(NamesrvConfig::default());
    driver::run(machine, listener, DriverConfig::default(), shutdown).await;
    tracing::info!("name server stopped");
    Ok(())
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

/// Prints where a role listens: operators read it, and tests learn ephemeral ports from it.
pub(crate) fn announce(what: &str, listener: &TcpListener) {
    let addr = local_addr(listener);
    tracing::info!(%addr, "{what} listening");
    println!("{what} listening on {addr}");
}
