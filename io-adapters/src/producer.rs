//! A producer over [`RemotingClient`] connections, driving `proto_core::client`: it looks the
//! topic's route up on the name servers, picks a queue round-robin, sends SEND_MESSAGE_V2 to the
//! queue's master, and retries on another broker for the codes a Java producer retries (§5).
//!
//! What it leaves out: async and oneway sends, batches, compression, ordered queue selectors,
//! transactions, and periodic heartbeats (one producer heartbeat goes to each broker when first
//! used; brokers keep no producer state that sends need).
//!
//! [`RemotingClient`]: crate::client::RemotingClient

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;
use proto_core::body::TopicRouteData;
use proto_core::client::{
    heartbeat_request, parse_send, producer_heartbeat, send_message_v2_request, BrokerFaults,
    OutgoingMessage, ResponseError, SendResult, TopicPublishInfo, DEFAULT_TOPIC,
    DEFAULT_TOPIC_QUEUE_NUMS,
};
use proto_core::ResponseCode;
use store_core::format::msg_id::UniqKeyGenerator;

use crate::clock;
pub use crate::peers::MqClientError;
use crate::peers::{client_id, client_ip, random_u64, Peers, REQUEST_TIMEOUT};

/// Java's `retryTimesWhenSendFailed` (2) plus the first attempt.
const SEND_ATTEMPTS: u32 = 3;
/// Java's `pollNameServerInterval`: a cached route older than this is fetched again.
const ROUTE_TTL_MS: u64 = 30_000;
/// After a failed send, a route at least this old is fetched again before the next attempt:
/// when a master dies and the controller promotes a slave, the name server's route names the
/// new master within seconds, and waiting out [`ROUTE_TTL_MS`] would stall the producer. The
/// floor keeps a dead broker from turning every send into a name-server query.
const ROUTE_REFRESH_AFTER_FAILURE_MS: u64 = 1_000;

struct CachedRoute {
    info: TopicPublishInfo,
    fetched_ms: u64,
}

/// Sends messages of one producer group to whichever brokers host their topics.
pub struct Producer {
    peers: Peers,
    group: String,
    client_id: String,
    routes: Mutex<HashMap<String, CachedRoute>>,
    faults: Mutex<BrokerFaults>,
    uniq_keys: Mutex<UniqKeyGenerator>,
    /// Brokers that already got this producer's heartbeat.
    greeted: Mutex<HashSet<String>>,
}

impl Producer {
    /// A producer of `group` using the name servers in `namesrv_addrs` (`host:port;host:port`).
    /// Nothing is dialled until the first send.
    pub fn new(namesrv_addrs: &str, group: &str) -> Result<Producer, MqClientError> {
        let loader = random_u64() as i32;
        Ok(Producer {
            peers: Peers::new(namesrv_addrs)?,
            group: group.to_string(),
            client_id: client_id(),
            routes: Mutex::default(),
            faults: Mutex::default(),
            uniq_keys: Mutex::new(UniqKeyGenerator::new(
                client_ip(),
                std::process::id(),
                loader,
            )),
            greeted: Mutex::default(),
        })
    }

    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Sends one message with optional tag and keys (space-separated, as Java joins them).
    pub async fn send(
        &self,
        topic: &str,
        body: impl Into<Bytes>,
        tags: Option<&str>,
        keys: Option<&str>,
    ) -> Result<SendResult, MqClientError> {
        let msg = OutgoingMessage {
            topic: topic.to_string(),
            body: body.into(),
            tags: tags.map(str::to_string),
            keys: keys
                .map(|k| {
                    k.split(' ')
                        .filter(|k| !k.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            flag: 0,
        };
        self.send_message(&msg).await
    }

    /// Sends `msg`: up to three attempts, each on a queue of a broker other than the one that
    /// just failed; the `UNIQ_KEY` stays the same across attempts.
    pub async fn send_message(&self, msg: &OutgoingMessage) -> Result<SendResult, MqClientError> {
        let uniq_key = lock(&self.uniq_keys).next(clock::now_ms() as i64);
        let mut last_failed: Option<String> = None;
        let mut last_error = None;
        for _ in 0..SEND_ATTEMPTS {
            let (mq, addr) = self.select(&msg.topic, last_failed.as_deref()).await?;
            self.greet(&addr).await;
            let born_ms = clock::now_ms();
            let cmd = send_message_v2_request(&self.group, &mq, msg, &uniq_key, born_ms as i64);
            let started = Instant::now();
            let outcome = match self.peers.invoke(&addr, cmd, REQUEST_TIMEOUT).await {
                Ok(resp) => {
                    parse_send(&resp, &mq, &uniq_key).map_err(MqClientError::response(&addr))
                }
                Err(e) => Err(e.into()),
            };
            let latency_ms = started.elapsed().as_millis() as u64;
            let now_ms = clock::now_ms();
            match outcome {
                Ok(result) => {
                    lock(&self.faults).record(&mq.broker_name, latency_ms, false, now_ms);
                    return Ok(result);
                }
                Err(e) if retryable(&e) => {
                    tracing::debug!(broker = %mq.broker_name, error = %e, "send failed, retrying");
                    lock(&self.faults).record(&mq.broker_name, latency_ms, true, now_ms);
                    let mut routes = lock(&self.routes);
                    let stale = routes.get(&msg.topic).is_some_and(|r| {
                        now_ms.saturating_sub(r.fetched_ms) >= ROUTE_REFRESH_AFTER_FAILURE_MS
                    });
                    if topic_missing(&e) || stale {
                        routes.remove(&msg.topic);
                    }
                    drop(routes);
                    last_failed = Some(mq.broker_name);
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(MqClientError::SendFailed {
            topic: msg.topic.clone(),
            attempts: SEND_ATTEMPTS,
            last: Box::new(last_error.unwrap_or_else(|| MqClientError::NoQueue {
                topic: msg.topic.clone(),
                kind: "writable",
            })),
        })
    }

    /// The next queue of `topic` and its master address, fetching the route when unknown or
    /// stale.
    async fn select(
        &self,
        topic: &str,
        last_failed: Option<&str>,
    ) -> Result<(proto_core::body::MessageQueue, String), MqClientError> {
        let now_ms = clock::now_ms();
        let fresh = lock(&self.routes)
            .get(topic)
            .is_some_and(|r| now_ms.saturating_sub(r.fetched_ms) < ROUTE_TTL_MS);
        if !fresh {
            let info = self.publish_info(topic).await?;
            lock(&self.routes).insert(
                topic.to_string(),
                CachedRoute {
                    info,
                    fetched_ms: now_ms,
                },
            );
        }
        let faults = lock(&self.faults).clone();
        let mut routes = lock(&self.routes);
        let no_queue = || MqClientError::NoQueue {
            topic: topic.to_string(),
            kind: "writable",
        };
        let route = routes.get_mut(topic).ok_or_else(no_queue)?;
        let picked = route
            .info
            .select(last_failed, &faults, now_ms)
            .ok_or_else(no_queue)
            .and_then(|mq| match route.info.master_addr(&mq.broker_name) {
                Some(addr) => Ok((addr.to_string(), mq)),
                None => Err(MqClientError::NoMaster(mq.broker_name)),
            });
        match picked {
            Ok((addr, mq)) => Ok((mq, addr)),
            Err(e) => {
                // A route without a writable master (the master died, its successor has not
                // registered yet) is asked for again soon rather than kept for the whole TTL.
                if now_ms.saturating_sub(route.fetched_ms) >= ROUTE_REFRESH_AFTER_FAILURE_MS {
                    routes.remove(topic);
                }
                Err(e)
            }
        }
    }

    /// The topic's publish queues; for a topic the name servers do not know, the template
    /// topic's brokers with at most [`DEFAULT_TOPIC_QUEUE_NUMS`] queues each, as Java does so
    /// that the broker auto-creates it.
    async fn publish_info(&self, topic: &str) -> Result<TopicPublishInfo, MqClientError> {
        let seed = random_u64() as u32;
        match self.peers.route(topic).await {
            Ok(route) => Ok(TopicPublishInfo::from_route(topic, &route, seed)),
            Err(e) if topic_missing(&e) => {
                let template = self.peers.route(DEFAULT_TOPIC).await.map_err(|_| e)?;
                let route = TopicRouteData {
                    queue_datas: template
                        .queue_datas
                        .into_iter()
                        .map(|mut qd| {
                            qd.write_queue_nums = qd.write_queue_nums.min(DEFAULT_TOPIC_QUEUE_NUMS);
                            qd.read_queue_nums = qd.read_queue_nums.min(DEFAULT_TOPIC_QUEUE_NUMS);
                            qd
                        })
                        .collect(),
                    ..template
                };
                Ok(TopicPublishInfo::from_route(topic, &route, seed))
            }
            Err(e) => Err(e),
        }
    }

    /// Sends this producer's heartbeat the first time a broker is used.
    async fn greet(&self, addr: &str) {
        if !lock(&self.greeted).insert(addr.to_string()) {
            return;
        }
        let hb = heartbeat_request(&producer_heartbeat(&self.client_id, &self.group));
        if let Err(e) = self.peers.invoke_oneway(addr, hb).await {
            tracing::debug!(%addr, error = %e, "producer heartbeat not sent");
        }
    }
}

/// Connection failures and the Java retry set are worth another broker.
fn retryable(e: &MqClientError) -> bool {
    match e {
        MqClientError::Remoting(_) => true,
        MqClientError::Response { source, .. } => source.is_send_retryable(),
        _ => false,
    }
}

fn topic_missing(e: &MqClientError) -> bool {
    matches!(
        e,
        MqClientError::Response {
            source: ResponseError::Refused {
                code: ResponseCode::TopicNotExist,
                ..
            },
            ..
        }
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
