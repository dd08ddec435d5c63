//! What the producer and consumer drivers share: a connection per server address, route look-up
//! over several name servers, the client's identity, and the error type of both.
//!
//! What it leaves out: reconnect back-off and name-server address discovery over HTTP; a dead
//! connection is dropped and the next request dials again.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto_core::body::TopicRouteData;
use proto_core::client::{parse_route, route_request, ResponseError};
use proto_core::{RemotingCommand, RequestCode};

use crate::client::{ClientError, RemotingClient};

/// Java's `clientCallbackExecutor`-less default for request timeouts (send timeout 3000 ms).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a producer or consumer operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MqClientError {
    #[error("no name server address in {0:?}")]
    NoNameServer(String),
    #[error(transparent)]
    Remoting(#[from] ClientError),
    #[error("{addr} answered: {source}")]
    Response {
        addr: String,
        #[source]
        source: ResponseError,
    },
    #[error("topic {topic} has no {kind} queue")]
    NoQueue { topic: String, kind: &'static str },
    #[error("broker {0} has no master address in the route")]
    NoMaster(String),
    #[error("send to {topic} failed after {attempts} attempts; last: {last}")]
    SendFailed {
        topic: String,
        attempts: u32,
        #[source]
        last: Box<MqClientError>,
    },
}

impl MqClientError {
    pub(crate) fn response(addr: &str) -> impl FnOnce(ResponseError) -> MqClientError + '_ {
        move |source| MqClientError::Response {
            addr: addr.to_string(),
            source,
        }
    }
}

/// Connections to name servers and brokers, keyed by address.
pub(crate) struct Peers {
    namesrv: Vec<String>,
    next_namesrv: AtomicUsize,
    conns: Mutex<HashMap<String, Arc<RemotingClient>>>,
    /// Set when a broker sends NOTIFY_CONSUMER_IDS_CHANGED on any connection.
    ids_changed: Arc<AtomicBool>,
}

impl Peers {
    /// `namesrv_addrs` is RocketMQ's `host:port;host:port` list.
    pub(crate) fn new(namesrv_addrs: &str) -> Result<Peers, MqClientError> {
        let namesrv: Vec<String> = namesrv_addrs
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_string)
            .collect();
        if namesrv.is_empty() {
            return Err(MqClientError::NoNameServer(namesrv_addrs.to_string()));
        }
        Ok(Peers {
            next_namesrv: AtomicUsize::new(random_u64() as usize % namesrv.len()),
            namesrv,
            conns: Mutex::default(),
            ids_changed: Arc::default(),
        })
    }

    /// The connection to `addr`, dialled on first use.
    pub(crate) async fn conn(&self, addr: &str) -> Result<Arc<RemotingClient>, ClientError> {
        if let Some(c) = lock(&self.conns).get(addr) {
            return Ok(c.clone());
        }
        let client = Arc::new(RemotingClient::connect(addr).await?);
        if let Some(mut requests) = client.take_server_requests() {
            let flag = self.ids_changed.clone();
            tokio::spawn(async move {
                while let Some(req) = requests.recv().await {
                    if req.code == RequestCode::NotifyConsumerIdsChanged.value() {
                        flag.store(true, Ordering::Release);
                    }
                }
            });
        }
        Ok(lock(&self.conns)
            .entry(addr.to_string())
            .or_insert(client)
            .clone())
    }

    /// Sends `cmd` to `addr` and waits; a failed connection is forgotten so the next call dials.
    pub(crate) async fn invoke(
        &self,
        addr: &str,
        cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let conn = self.conn(addr).await?;
        let result = conn.invoke(cmd, timeout).await;
        if let Err(ClientError::Closed(_)) = result {
            let mut conns = lock(&self.conns);
            if conns.get(addr).is_some_and(|c| Arc::ptr_eq(c, &conn)) {
                conns.remove(addr);
            }
        }
        result
    }

    /// Sends `cmd` to `addr` without waiting for an answer.
    pub(crate) async fn invoke_oneway(
        &self,
        addr: &str,
        cmd: RemotingCommand,
    ) -> Result<(), ClientError> {
        self.conn(addr).await?.invoke_oneway(cmd)
    }

    /// `topic`'s route from the name servers, starting at the next one in turn and trying each
    /// once; the last failure is returned if none answers with a route.
    pub(crate) async fn route(&self, topic: &str) -> Result<TopicRouteData, MqClientError> {
        let start = self.next_namesrv.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for i in 0..self.namesrv.len() {
            let addr = &self.namesrv[(start + i) % self.namesrv.len()];
            match self
                .invoke(addr, route_request(topic), REQUEST_TIMEOUT)
                .await
            {
                Ok(resp) => match parse_route(&resp) {
                    Ok(route) => return Ok(route),
                    Err(e) => last = Some(MqClientError::response(addr)(e)),
                },
                Err(e) => last = Some(e.into()),
            }
        }
        Err(last.unwrap_or_else(|| MqClientError::NoNameServer(String::new())))
    }

    /// True once since the last call if a broker said the group's membership changed.
    pub(crate) fn take_ids_changed(&self) -> bool {
        self.ids_changed.swap(false, Ordering::AcqRel)
    }
}

/// `ip@instance` as Java builds client ids; the instance is `pid#random` so that several
/// clients in one process (as in tests and `node bench`) stay apart.
pub(crate) fn client_id() -> String {
    format!(
        "{}@{}#{}",
        client_ip(),
        std::process::id(),
        random_u64() % 1_000_000_000
    )
}

/// The address put in client ids and message ids. Loopback: clients of this crate run next to
/// the broker in tests and benches, and nothing routes to it.
pub(crate) fn client_ip() -> IpAddr {
    IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// A random value from the standard library's per-process hash keys (no extra dependency).
pub(crate) fn random_u64() -> u64 {
    RandomState::new().hash_one(std::time::SystemTime::now())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_server_lists_split_on_semicolons() {
        let peers = Peers::new(" a:1; ;b:2;").unwrap();
        assert_eq!(peers.namesrv, ["a:1", "b:2"]);
        assert!(matches!(
            Peers::new(" ; "),
            Err(MqClientError::NoNameServer(_))
        ));
    }

    #[test]
    fn client_ids_differ_within_a_process() {
        let (a, b) = (client_id(), client_id());
        assert_ne!(a, b);
        assert!(a.starts_with("127.0.0.1@"), "{a}");
    }

    #[tokio::test]
    async fn routes_fail_over_and_report_the_last_error() {
        // Nothing listens on port 1 of loopback: both name servers refuse the connection.
        let peers = Peers::new("127.0.0.1:1;127.0.0.1:1").unwrap();
        let err = peers.route("T").await.unwrap_err();
        assert!(
            matches!(err, MqClientError::Remoting(ClientError::Connect { .. })),
            "{err}"
        );
    }
}
