//! `node bench produce`: `--threads` senders, each a tokio task, sending to the topic's queues
//! round-robin (sender i starts at queue i).
//!
//! Modes: sync (one request in flight per sender, RocketMQ's benchmark default: with the default
//! `--connections 1` the senders share one connection per broker as a RocketMQ client's threads
//! share its producer's, see `shared.rs`; with `--connections 0` each sender owns its
//! connections as [`Pipe`]s), `--async` (a window of `--window` requests in flight per sender),
//! `--oneway` (no answers; every `--window`-th send is acknowledged so the client's queue stays
//! bounded, since a connection answers in order of arrival); these two go through the shared
//! [`RemotingClient`]. `--batch K` sends SEND_BATCH_MESSAGE with K entries.
//!
//! A topic the name server does not know is created the way a client creates it: sends go to
//! TBW102's brokers with `defaultTopic=TBW102` and the broker makes the topic on first use.
//! What it leaves out: retries and broker fault avoidance; a failure is counted, not retried.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use proto_core::body::MessageQueue;
use proto_core::client::{
    send_message_v2_request, OutgoingMessage, TopicPublishInfo, DEFAULT_TOPIC,
    DEFAULT_TOPIC_QUEUE_NUMS,
};
use proto_core::header::SendMessageRequestHeader;
use proto_core::message::batch::{encode_batch, BatchEntry};
use proto_core::message::properties::{Properties, KEYS, TAGS, UNIQ_KEY, WAIT};
use proto_core::{RemotingCommand, RequestCode, ResponseCode};

use super::pipe::Pipe;
use super::report::{new_histogram, Meter, Progress, Summary};
use super::shared;
use super::template::Template;
use super::{
    client_error_kind, code_kind, connect_all, lookup_route, now_ms, response_kind, BenchError,
    ProduceArgs, DEFAULT_DURATION,
};

/// A run bounded by `--count` alone still ends, at the latest after this long.
const COUNT_ONLY_LIMIT: Duration = Duration::from_secs(24 * 3600);
/// How long to wait for a route to the topic or to TBW102.
const ROUTE_WAIT: Duration = Duration::from_secs(10);
/// The tag `--tags` puts on every message (RocketMQ's benchmark uses one tag too).
const BENCH_TAG: &str = "TagA";
/// The opaque of template requests: a pipe has one request in flight, so one value will do.
const TEMPLATE_OPAQUE: i32 = 1;

/// One queue and the master that takes its sends.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub mq: MessageQueue,
    pub addr: String,
}

/// What every sender reads.
pub(super) struct Plan {
    pub(super) args: ProduceArgs,
    pub(super) targets: Vec<Target>,
    /// Per target, the index of its broker address among the distinct ones (a sender's pipes
    /// are kept by this index: no hashing of addresses per message).
    pub(super) addr_slot: Vec<usize>,
    /// Distinct broker addresses.
    pub(super) addr_slots: usize,
    conns: std::collections::BTreeMap<String, Vec<Arc<RemotingClient>>>,
    body: Bytes,
    /// Messages claimed so far, against `--count`.
    issued: AtomicU64,
    /// Requests scheduled so far, for `--rate`.
    scheduled: AtomicU64,
    start: Instant,
    deadline: Instant,
    pub(super) timeout: Duration,
    pid: u32,
}

impl Plan {
    /// Claims the next request's messages: `None` once the count or the time is used up.
    pub(super) fn claim(&self) -> Option<u64> {
        if Instant::now() >= self.deadline {
            return None;
        }
        let batch = self.args.batch as u64;
        match self.args.count {
            None => Some(batch),
            Some(count) => {
                let before = self.issued.fetch_add(batch, Ordering::Relaxed);
                (before < count).then(|| batch.min(count - before))
            }
        }
    }

    /// Sync senders with a connection each own it as a [`Pipe`]: no shared client needed.
    fn uses_pipes(&self) -> bool {
        uses_pipes(&self.args)
    }

    /// With `--rate`, waits for this request's slot (see [`Plan::due`]).
    async fn pace(&self) {
        if let Some(due) = self.due() {
            tokio::time::sleep_until(due.into()).await;
        }
    }

    /// With `--rate`, when the next request may go: request k of `batch` messages is due
    /// k·batch/rate seconds after the start. `None` without `--rate`.
    pub(super) fn due(&self) -> Option<Instant> {
        if self.args.rate == 0 {
            return None;
        }
        let k = self.scheduled.fetch_add(1, Ordering::Relaxed);
        let due_ns =
            u128::from(k) * self.args.batch as u128 * 1_000_000_000 / u128::from(self.args.rate);
        Some(self.start + Duration::from_nanos(u64::try_from(due_ns).unwrap_or(u64::MAX)))
    }

    fn conn(&self, addr: &str, sender: usize) -> Option<Arc<RemotingClient>> {
        let list = self.conns.get(addr)?;
        list.get(sender % list.len().max(1)).cloned()
    }
}

/// Runs the producer to its end.
pub async fn run(args: ProduceArgs) -> Result<Summary, BenchError> {
    let (meter, elapsed) = run_with(args, Arc::new(Meter::default()), true).await?;
    Ok(meter.summary("produce", elapsed))
}

/// Runs the producer counting into `meter`; e2e shares this with its consumer. Returns the
/// meter and the time the sends took.
pub(crate) async fn run_with(
    args: ProduceArgs,
    meter: Arc<Meter>,
    progress: bool,
) -> Result<(Arc<Meter>, Duration), BenchError> {
    if args.threads == 0 || args.batch == 0 || args.window == 0 {
        return Err(BenchError::Option(
            "--threads, --batch and --window must be at least 1".to_string(),
        ));
    }
    let targets = resolve(&args.namesrv, &args.topic).await?;
    let per_addr = if args.connections == 0 {
        args.threads
    } else {
        args.connections
    };
    if uses_shared(&args) && args.threads > shared::MAX_SENDERS {
        return Err(BenchError::Option(format!(
            "--threads is at most {} with --connections >= 1",
            shared::MAX_SENDERS
        )));
    }
    let conns = if uses_pipes(&args) || uses_shared(&args) {
        std::collections::BTreeMap::new()
    } else {
        connect_all(targets.iter().map(|t| t.addr.clone()), per_addr).await?
    };
    let start = Instant::now();
    let deadline = start
        + match (args.duration, args.count) {
            (Some(d), _) => d,
            (None, Some(_)) => COUNT_ONLY_LIMIT,
            (None, None) => DEFAULT_DURATION,
        };
    let (addr_slot, addr_slots) = addr_slots(&targets);
    let plan = Arc::new(Plan {
        addr_slot,
        addr_slots,
        body: Bytes::from(vec![b'a'; args.size]),
        timeout: Duration::from_millis(args.timeout_ms),
        args,
        targets,
        conns,
        issued: AtomicU64::new(0),
        scheduled: AtomicU64::new(0),
        start,
        deadline,
        pid: std::process::id(),
    });
    let _progress = progress.then(|| Progress::start("Send", meter.clone()));
    // Plain handles rather than JoinSet, which the simulator's tokio lacks.
    let senders: Vec<_> = if uses_shared(&plan.args) {
        // Connection c carries senders c, c + N, c + 2N, ... (the shared client's round robin).
        let n = plan.args.connections.min(plan.args.threads);
        (0..n)
            .map(|c| {
                let members = (c..plan.args.threads).step_by(n).collect();
                tokio::spawn(shared::run(plan.clone(), meter.clone(), members))
            })
            .collect()
    } else {
        (0..plan.args.threads)
            .map(|i| tokio::spawn(sender(plan.clone(), meter.clone(), i)))
            .collect()
    };
    for s in senders {
        let _ = s.await;
    }
    Ok((meter, start.elapsed()))
}

/// The topic's send queues, or TBW102's (limited to the default queue count) when the topic
/// does not exist yet.
pub(crate) async fn resolve(namesrv: &str, topic: &str) -> Result<Vec<Target>, BenchError> {
    // A broker that just started may not have registered TBW102 yet: wait a little for it.
    let give_up = Instant::now() + ROUTE_WAIT;
    let (route, via_default) = loop {
        if let Some(route) = lookup_route(namesrv, topic).await? {
            break (route, false);
        }
        if let Some(route) = lookup_route(namesrv, DEFAULT_TOPIC).await? {
            break (route, true);
        }
        if Instant::now() >= give_up {
            return Err(BenchError::NoQueues(topic.to_string()));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let info = TopicPublishInfo::from_route(topic, &route, 0);
    let targets: Vec<Target> = info
        .queues()
        .iter()
        .filter(|mq| !via_default || mq.queue_id < DEFAULT_TOPIC_QUEUE_NUMS)
        .filter_map(|mq| {
            Some(Target {
                addr: info.master_addr(&mq.broker_name)?.to_string(),
                mq: mq.clone(),
            })
        })
        .collect();
    if targets.is_empty() {
        return Err(BenchError::NoQueues(topic.to_string()));
    }
    Ok(targets)
}

/// How one request ended: messages it carried, round trip, and the failure kind if any.
pub(super) type Outcome = (u64, u64, Result<(), String>);

async fn sender(plan: Arc<Plan>, meter: Arc<Meter>, index: usize) {
    let mut histogram = new_histogram();
    let mut seq: u64 = 0;
    let mut next_queue = index;
    // The async window, oldest first; waiting on the oldest keeps at most `window` in flight.
    let mut in_flight: std::collections::VecDeque<tokio::task::JoinHandle<Outcome>> =
        std::collections::VecDeque::new();
    let mut account = |(n, rt_us, result): Outcome| match result {
        Ok(()) => {
            meter.done(n, n * plan.args.size as u64);
            meter.latency(rt_us);
            histogram.saturating_record(rt_us);
        }
        Err(kind) => meter.failed(kind),
    };
    let mut requests: u64 = 0;
    // Per address slot: this sender's connection, once opened.
    let mut pipes: Vec<Option<Pipe>> = (0..plan.addr_slots).map(|_| None).collect();
    // Per target, once tried: the encoded request to patch, or `None` where it cannot be.
    let mut templates: Vec<Option<Option<Template>>> =
        (0..plan.targets.len()).map(|_| None).collect();
    while let Some(n) = plan.claim() {
        plan.pace().await;
        let target_index = next_queue % plan.targets.len();
        let Some(target) = plan.targets.get(target_index) else {
            break;
        };
        next_queue = next_queue.wrapping_add(1);
        if plan.uses_pipes() {
            let born = now_ms();
            let (Some(slot), Some(&addr_slot)) = (
                templates.get_mut(target_index),
                plan.addr_slot.get(target_index),
            ) else {
                break;
            };
            let filled = slot
                .get_or_insert_with(|| {
                    template(&plan, target, n, index, seq, born, TEMPLATE_OPAQUE)
                })
                .as_mut()
                .filter(|t| t.messages() as u64 == n)
                .and_then(|t| Some((t.opaque, t.fill(seq + 1, born)?)));
            let request = match filled {
                Some((opaque, frame)) => {
                    seq += n;
                    Request::Frame(frame, opaque)
                }
                None => Request::Cmd(build(&plan, target, n, index, &mut seq, born)),
            };
            let Some(pipe) = pipes.get_mut(addr_slot) else {
                break;
            };
            account(send_on_pipe(pipe, &target.addr, request, n, plan.timeout).await);
            continue;
        }
        let Some(conn) = plan.conn(&target.addr, index) else {
            break;
        };
        let cmd = build(&plan, target, n, index, &mut seq, now_ms());
        requests += 1;
        if plan.args.oneway && !requests.is_multiple_of(plan.args.window as u64) {
            match conn.invoke_oneway(cmd) {
                Ok(()) => meter.done(n, n * plan.args.size as u64),
                Err(e) => meter.failed(client_error_kind(&e)),
            }
        } else if plan.args.async_send {
            while in_flight.len() >= plan.args.window {
                if let Some(oldest) = in_flight.pop_front() {
                    if let Ok(outcome) = oldest.await {
                        account(outcome);
                    }
                }
            }
            let timeout = plan.timeout;
            in_flight.push_back(tokio::spawn(
                async move { send(&conn, cmd, n, timeout).await },
            ));
        } else {
            account(send(&conn, cmd, n, plan.timeout).await);
        }
    }
    for handle in in_flight {
        if let Ok(outcome) = handle.await {
            account(outcome);
        }
    }
    meter.merge(&histogram);
}

async fn send(conn: &RemotingClient, cmd: RemotingCommand, n: u64, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let result = match conn.invoke(cmd, timeout).await {
        Ok(resp) if ResponseCode::from_value(resp.code) == ResponseCode::Success => Ok(()),
        Ok(resp) => Err(response_kind(&resp)),
        Err(e) => Err(client_error_kind(&e)),
    };
    (n, start.elapsed().as_micros() as u64, result)
}

/// A request for a pipe: a command to encode, or a filled template and its opaque.
enum Request<'a> {
    Cmd(RemotingCommand),
    Frame(&'a [u8], i32),
}

/// The template for `n` messages to `target` from this sender, its sequence numbers following
/// `seq`, carrying `opaque`; `None` where requests cannot be patched (`--keys`).
pub(super) fn template(
    plan: &Plan,
    target: &Target,
    n: u64,
    sender: usize,
    seq: u64,
    born: i64,
    opaque: i32,
) -> Option<Template> {
    if plan.args.keys {
        return None;
    }
    let mut scratch = seq;
    let cmd = build(plan, target, n, sender, &mut scratch, born);
    let keys: Vec<String> = (seq + 1..=scratch)
        .map(|s| uniq_key(plan.pid, sender, s))
        .collect();
    Template::new(cmd, opaque, &keys, born)
}

/// One sync send on this sender's own connection to `addr`, opened on first use (and again
/// after a failure closed it).
async fn send_on_pipe(
    pipe: &mut Option<Pipe>,
    addr: &str,
    request: Request<'_>,
    n: u64,
    timeout: Duration,
) -> Outcome {
    let start = Instant::now();
    if pipe.is_none() {
        match Pipe::connect(addr).await {
            Ok(opened) => *pipe = Some(opened),
            Err(_) => return (n, 0, Err("connect".to_string())),
        }
    }
    let Some(open) = pipe.as_mut() else {
        return (n, 0, Err("connect".to_string()));
    };
    let answer = match request {
        Request::Cmd(cmd) => open.call(cmd, timeout).await.map(|resp| resp.code),
        Request::Frame(frame, opaque) => open
            .call_frame(frame, opaque, timeout)
            .await
            .map(|resp| resp.code),
    };
    let result = match answer {
        Ok(code) if ResponseCode::from_value(code) == ResponseCode::Success => Ok(()),
        Ok(code) => Err(code_kind(code)),
        Err(e) => {
            *pipe = None;
            Err(e.kind())
        }
    };
    (n, start.elapsed().as_micros() as u64, result)
}

/// For each target, the index of its address among the distinct addresses, and their number.
fn addr_slots(targets: &[Target]) -> (Vec<usize>, usize) {
    let mut distinct: Vec<&str> = Vec::new();
    let slots = targets
        .iter()
        .map(|t| match distinct.iter().position(|a| *a == t.addr) {
            Some(i) => i,
            None => {
                distinct.push(&t.addr);
                distinct.len() - 1
            }
        })
        .collect();
    (slots, distinct.len())
}

pub(crate) fn uses_pipes(args: &ProduceArgs) -> bool {
    !args.async_send && !args.oneway && args.connections == 0
}

/// Sync senders sharing `--connections` connections per broker (`shared.rs`).
pub(crate) fn uses_shared(args: &ProduceArgs) -> bool {
    !args.async_send && !args.oneway && args.connections > 0
}

/// A 32-hex-digit message id, unique per process, sender and sequence number (the shape of
/// Java's `UNIQ_KEY`).
fn uniq_key(pid: u32, sender: usize, seq: u64) -> String {
    format!("{pid:08X}{:04X}{seq:020X}", sender as u16)
}

/// The request for the next `n` messages to `target`.
pub(super) fn build(
    plan: &Plan,
    target: &Target,
    n: u64,
    sender: usize,
    seq: &mut u64,
    born: i64,
) -> RemotingCommand {
    let args = &plan.args;
    if args.batch <= 1 {
        *seq += 1;
        let msg = OutgoingMessage {
            topic: args.topic.clone(),
            body: plan.body.clone(),
            tags: args.tags.then(|| BENCH_TAG.to_string()),
            keys: if args.keys {
                vec![format!("{sender}-{seq}")]
            } else {
                Vec::new()
            },
            flag: 0,
        };
        let uniq = uniq_key(plan.pid, sender, *seq);
        return send_message_v2_request(&args.producer_group, &target.mq, &msg, &uniq, born);
    }
    let mut entries = Vec::with_capacity(n as usize);
    for _ in 0..n {
        *seq += 1;
        let mut props = Properties::new();
        props.insert(UNIQ_KEY, uniq_key(plan.pid, sender, *seq));
        if args.tags {
            props.insert(TAGS, BENCH_TAG);
        }
        if args.keys {
            props.insert(KEYS, format!("{sender}-{seq}"));
        }
        entries.push(BatchEntry {
            flag: 0,
            body: plan.body.clone(),
            properties: Bytes::from(props.encode().into_bytes()),
        });
    }
    let mut body = Vec::new();
    encode_batch(&entries, &mut body);
    let mut outer = Properties::new();
    outer.insert(WAIT, "true");
    let header = SendMessageRequestHeader {
        producer_group: args.producer_group.clone(),
        topic: target.mq.topic.clone(),
        default_topic: DEFAULT_TOPIC.to_string(),
        default_topic_queue_nums: DEFAULT_TOPIC_QUEUE_NUMS,
        queue_id: target.mq.queue_id,
        sys_flag: 0,
        born_timestamp: born,
        flag: 0,
        properties: Some(outer.encode()),
        reconsume_times: Some(0),
        unit_mode: Some(false),
        max_reconsume_times: None,
        batch: Some(true),
        broker_name: Some(target.mq.broker_name.clone()),
    };
    let code = RequestCode::SendBatchMessage;
    let mut cmd = RemotingCommand::request(code.value(), 0).with_body(Bytes::from(body));
    header.encode_for(code, cmd.ext_fields_mut());
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniq_keys_are_32_hex_digits_and_distinct() {
        let a = uniq_key(1234, 3, 1);
        let b = uniq_key(1234, 3, 2);
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_ne!(uniq_key(1234, 4, 1), a);
    }

    #[test]
    fn targets_on_one_broker_share_an_address_slot() {
        let target = |addr: &str, queue_id| Target {
            mq: MessageQueue {
                topic: "T".to_string(),
                broker_name: addr.to_string(),
                queue_id,
            },
            addr: addr.to_string(),
        };
        let targets = [
            target("a", 0),
            target("b", 0),
            target("a", 1),
            target("c", 0),
        ];
        assert_eq!(addr_slots(&targets), (vec![0, 1, 0, 2], 3));
    }
}
