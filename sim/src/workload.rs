//! The clients: producers that find brokers through the name server and send with
//! SEND_MESSAGE_V2 (failing over to the next broker on errors, never retrying a message), and a
//! consumer that pulls every queue of every broker and feeds what it reads to the checkers.
//! Written with `RemotingClient`, speaking what any RocketMQ client speaks.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use proto_core::body::TopicRouteData;
use proto_core::{RemotingCommand, RequestCode, ResponseCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_core::format::msg_id::decode_offset_msg_id;
use store_core::format::record::{decode_all, MessageRecord};

use crate::cluster::{broker_addr, namesrv_addr, sleep_ms};
use crate::history::{properties_for, Ack, History, TOPIC};
use crate::options::Options;
use crate::trace::Trace;

const RPC_TIMEOUT: Duration = Duration::from_secs(3);

pub fn request(code: RequestCode, fields: &[(&str, &str)]) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code.value(), 0);
    for (k, v) in fields {
        cmd.ext_fields_mut().insert(*k, *v);
    }
    cmd
}

/// A SEND_MESSAGE_V2 request of `producer_group` for `queue` (of `queues`) of `topic`: one
/// message, not a batch, never reconsumed, with `sys_flag`, born time `born_ms` and the
/// encoded `properties`. The caller adds the body.
pub fn send_v2_request(
    producer_group: &str,
    topic: &str,
    queues: i32,
    queue: i32,
    sys_flag: i32,
    born_ms: u64,
    properties: &str,
) -> RemotingCommand {
    request(
        RequestCode::SendMessageV2,
        &[
            ("a", producer_group),
            ("b", topic),
            ("c", "TBW102"),
            ("d", &queues.to_string()),
            ("e", &queue.to_string()),
            ("f", &sys_flag.to_string()),
            ("g", &born_ms.to_string()),
            ("h", "0"),
            ("i", properties),
            ("j", "0"),
            ("k", "false"),
            ("m", "false"),
        ],
    )
}

/// Connections by address, dropped on any error so the next use reconnects.
#[derive(Default)]
pub struct Connections {
    conns: BTreeMap<String, Arc<RemotingClient>>,
}

impl Connections {
    pub async fn invoke(
        &mut self,
        addr: &str,
        cmd: RemotingCommand,
    ) -> Result<RemotingCommand, String> {
        let client = match self.conns.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = Arc::new(
                    RemotingClient::connect(addr)
                        .await
                        .map_err(|e| e.to_string())?,
                );
                self.conns.insert(addr.to_string(), c.clone());
                c
            }
        };
        match client.invoke(cmd, RPC_TIMEOUT).await {
            Ok(resp) => Ok(resp),
            Err(e) => {
                self.conns.remove(addr);
                Err(e.to_string())
            }
        }
    }
}

/// The brokers (by index) the name server lists for `topic`, or `None` if it has no route.
pub async fn route(conns: &mut Connections, topic: &str) -> Result<Option<Vec<usize>>, String> {
    let resp = conns
        .invoke(
            &namesrv_addr(),
            request(RequestCode::GetRouteinfoByTopic, &[("topic", topic)]),
        )
        .await?;
    if resp.code != ResponseCode::Success.value() {
        return Ok(None);
    }
    let data = TopicRouteData::decode(&resp.body).map_err(|e| format!("route body: {e}"))?;
    let mut brokers: Vec<usize> = data
        .broker_datas
        .iter()
        .flat_map(|b| b.broker_addrs.get(&0))
        .filter_map(|addr| (0..8).find(|i| broker_addr(*i) == *addr))
        .collect();
    brokers.sort_unstable();
    Ok(Some(brokers))
}

/// One producer: `messages_per_producer` sends, each to the next broker in the route.
pub async fn produce(p: usize, opts: Options, history: History, trace: Trace) {
    let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_mul(31).wrapping_add(p as u64));
    let mut conns = Connections::default();
    let mut brokers: Vec<usize> = Vec::new();
    let mut next_broker = 0usize;
    for seq in 0..opts.messages_per_producer {
        if seq % 20 == 0 || brokers.is_empty() {
            // Real producers refresh routes every 30 s; often here, to follow faults quickly.
            let topic_route = route(&mut conns, TOPIC).await;
            let found = match topic_route {
                Ok(Some(b)) if !b.is_empty() => Ok(Some(b)),
                // Not created yet: the default topic's brokers auto-create it.
                Ok(_) => route(&mut conns, "TBW102").await,
                Err(e) => Err(e),
            };
            match found {
                Ok(Some(b)) if !b.is_empty() => brokers = b,
                Ok(_) => {}
                Err(e) => trace.event(format!("producer {p}: route lookup failed: {e}")),
            }
        }
        if brokers.is_empty() {
            sleep_ms(200).await;
            continue;
        }
        // Round robin over the routed brokers, as RocketMQ's default queue selection does.
        let broker = brokers[next_broker % brokers.len()];
        next_broker += 1;
        let queue = rng.gen_range(0..opts.queues);
        let id = format!("p{p}-{seq}");
        let len = rng.gen_range(0..opts.body_len_max);
        let mut body = format!("{id}|").into_bytes();
        body.extend((0..len).map(|_| rng.gen_range(b' '..=b'~')));
        if let Sent::Unknown = send(&mut conns, &opts, &history, broker, queue, &id, body).await {
            sleep_ms(100).await;
        }
        sleep_ms(rng.gen_range(0..=opts.send_gap_ms)).await;
    }
    trace.event(format!("producer {p} done"));
}

/// What a send was answered.
pub enum Sent {
    Acked,
    /// Refused with this response code.
    Refused(i32),
    /// No answer (timeout, connection lost): it may or may not be stored.
    Unknown,
}

/// Sends message `id` (body `body`, which must start with `id|`) to `queue` of `broker` with
/// SEND_MESSAGE_V2 and records the send and its answer in `history`.
pub async fn send(
    conns: &mut Connections,
    opts: &Options,
    history: &History,
    broker: usize,
    queue: i32,
    id: &str,
    body: Vec<u8>,
) -> Sent {
    let body = Bytes::from(body);
    history.sending(id, body.clone());
    let epoch = history.epoch(broker);
    let props = properties_for(id);
    let cmd = send_v2_request(
        "sim_pg",
        TOPIC,
        opts.queues,
        queue,
        0,
        1_700_000_000_000,
        &props,
    )
    .with_body(body);
    match conns.invoke(&broker_addr(broker), cmd).await {
        Ok(resp) if resp.code == ResponseCode::Success.value() => {
            let parsed = (
                resp.ext("queueId").and_then(|q| q.parse::<i32>().ok()),
                resp.ext("queueOffset").and_then(|o| o.parse::<i64>().ok()),
                resp.ext("msgId").and_then(|m| decode_offset_msg_id(m).ok()),
            );
            match parsed {
                (Some(queue), Some(offset), Some((_, phys))) => {
                    history.acked(Ack {
                        id: id.to_string(),
                        broker,
                        queue,
                        offset,
                        phys,
                        epoch,
                    });
                    Sent::Acked
                }
                _ => {
                    history.fail_liveness(format!("{id}: malformed send response {resp:?}"));
                    Sent::Unknown
                }
            }
        }
        Ok(resp) => {
            history.refused(id, resp.code, resp.remark.as_deref().unwrap_or(""));
            Sent::Refused(resp.code)
        }
        Err(e) => {
            history.unknown(id, &e);
            Sent::Unknown
        }
    }
}

/// Pulls `queue` of `broker` from `offset`: the records, and the next offset to ask for.
pub enum Pulled {
    Records(Vec<MessageRecord>, i64),
    /// Nothing new.
    Empty,
    /// The broker moved us: next offset and the queue's max offset.
    Moved {
        next: i64,
        max: i64,
    },
    /// The broker does not have the topic (no send reached it yet).
    NoTopic,
    Failed(String),
}

pub async fn pull(conns: &mut Connections, broker: usize, queue: i32, offset: i64) -> Pulled {
    pull_topic(conns, TOPIC, broker, queue, offset).await
}

/// [`pull`] of another topic.
pub async fn pull_topic(
    conns: &mut Connections,
    topic: &str,
    broker: usize,
    queue: i32,
    offset: i64,
) -> Pulled {
    let queue_text = queue.to_string();
    let offset_text = offset.to_string();
    let cmd = request(
        RequestCode::PullMessage,
        &[
            ("consumerGroup", "sim_cg"),
            ("topic", topic),
            ("queueId", &queue_text),
            ("queueOffset", &offset_text),
            ("maxMsgNums", "32"),
            ("sysFlag", "4"),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", "0"),
            ("subVersion", "0"),
            ("subscription", "*"),
            ("expressionType", "TAG"),
        ],
    );
    let resp = match conns.invoke(&broker_addr(broker), cmd).await {
        Ok(r) => r,
        Err(e) => return Pulled::Failed(e),
    };
    let next = resp
        .ext("nextBeginOffset")
        .and_then(|o| o.parse::<i64>().ok());
    let max = resp.ext("maxOffset").and_then(|o| o.parse::<i64>().ok());
    match ResponseCode::from_value(resp.code) {
        ResponseCode::Success => match decode_all(resp.body.clone()).collect::<Result<Vec<_>, _>>()
        {
            Ok(records) => Pulled::Records(records, next.unwrap_or(offset)),
            Err(e) => Pulled::Failed(format!("undecodable pull body: {e}")),
        },
        ResponseCode::PullOffsetMoved => Pulled::Moved {
            next: next.unwrap_or(0),
            max: max.unwrap_or(0),
        },
        ResponseCode::PullNotFound | ResponseCode::PullRetryImmediately => match (next, max) {
            // A queue that shrank under our cursor answers "not found" with a lower max.
            (Some(n), Some(m)) if n < offset => Pulled::Moved { next: n, max: m },
            _ => Pulled::Empty,
        },
        ResponseCode::TopicNotExist => Pulled::NoTopic,
        other => Pulled::Failed(format!("pull answered {other:?} {:?}", resp.remark)),
    }
}

/// The consumer: reads every (broker, queue) of [`TOPIC`], forever (the harness aborts it).
pub async fn consume(opts: Options, history: History) {
    tail_topic(
        &opts,
        TOPIC,
        |broker, queue, from, records| history.read(broker, queue, from, records, true),
        |broker, queue, cursor, _next, max| history.queue_shrank(broker, queue, cursor, max),
    )
    .await;
}

/// Round-robins over every (broker, queue) of `topic` with private cursors from offset 0,
/// forever (the harness aborts it), pausing 50 ms after a round that read nothing.
/// `on_records(broker, queue, from, records)` sees each batch read at `from`;
/// `on_moved(broker, queue, cursor, next, max)` hears that the broker moved the cursor (the
/// queue lost its unsynced tail), before the cursor goes to [`moved_cursor`].
pub async fn tail_topic(
    opts: &Options,
    topic: &str,
    mut on_records: impl FnMut(usize, i32, i64, &[MessageRecord]),
    mut on_moved: impl FnMut(usize, i32, i64, i64, i64),
) {
    let mut conns = Connections::default();
    let mut cursors: BTreeMap<(usize, i32), i64> = BTreeMap::new();
    loop {
        let mut idle = true;
        for broker in 0..opts.brokers {
            for queue in 0..opts.queues {
                let cursor = cursors.entry((broker, queue)).or_insert(0);
                match pull_topic(&mut conns, topic, broker, queue, *cursor).await {
                    Pulled::Records(records, next) => {
                        idle = false;
                        on_records(broker, queue, *cursor, &records);
                        *cursor = next.max(*cursor + records.len() as i64);
                    }
                    Pulled::Moved { next, max } => {
                        on_moved(broker, queue, *cursor, next, max);
                        *cursor = moved_cursor(next, max);
                    }
                    Pulled::Empty | Pulled::NoTopic | Pulled::Failed(_) => {}
                }
            }
        }
        if idle {
            sleep_ms(50).await;
        }
    }
}

/// Where a cursor goes when the broker answers "offset moved" with `next` and `max`.
pub fn moved_cursor(next: i64, max: i64) -> i64 {
    next.min(max).max(0)
}

/// Reads every queue from offset 0 to its end, checking as it goes. `None` if some broker did
/// not answer.
pub async fn scan_all(
    opts: &Options,
    history: &History,
) -> Option<BTreeMap<(usize, i32), Vec<String>>> {
    let mut conns = Connections::default();
    let mut scan = BTreeMap::new();
    for broker in 0..opts.brokers {
        for queue in 0..opts.queues {
            let mut ids = Vec::new();
            loop {
                let from = ids.len() as i64;
                match pull(&mut conns, broker, queue, from).await {
                    Pulled::Records(records, _) if !records.is_empty() => {
                        history.read(broker, queue, from, &records, false);
                        ids.extend(
                            records.iter().map(|r| {
                                crate::history::body_id(&r.body).unwrap_or("?").to_string()
                            }),
                        );
                    }
                    Pulled::Records(..) | Pulled::Empty | Pulled::NoTopic => break,
                    // An empty queue (topic not there) answers "moved" to 0.
                    Pulled::Moved { max, .. } if max <= from => break,
                    Pulled::Moved { next, max } => {
                        history.note(format!(
                            "scan broker={broker} queue={queue} at {from}: moved to {next}, max {max}"
                        ));
                        return None;
                    }
                    Pulled::Failed(e) => {
                        history.note(format!("scan broker={broker} queue={queue} at {from}: {e}"));
                        return None;
                    }
                }
            }
            scan.insert((broker, queue), ids);
        }
    }
    Some(scan)
}
