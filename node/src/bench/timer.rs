//! `node bench timer`: timer-message delivery lateness under send load. Senders offer
//! `--rate` messages per second of SEND_MESSAGE_V2 with `TIMER_DELIVER_MS` = send time + a delay
//! spread over `--delay-min-ms..=--delay-max-ms`; pullers long-poll every queue of the topic
//! from its end; for each delivered message, lateness = receipt time − its `TIMER_DELIVER_MS`.
//! The summary gives p50/p99/p99.9/max lateness, how many arrived early (must be none), and
//! how many acknowledged sends never arrived before the wait ended.
//!
//! Lateness includes the wheel's precision by design: a slot of `timerPrecisionMs` fires at its
//! end, so with 1 s slots a message is up to 1 s late even on an idle broker.
//!
//! What it leaves out: `TIMER_DELAY_SEC` sends (the intended time would be the broker's clock,
//! which a client cannot see), several brokers' clocks (one broker, or synchronised clocks, are
//! assumed), and retries of failed sends (counted).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hdrhistogram::Histogram;
use io_adapters::client::RemotingClient;
use proto_core::body::MessageQueue;
use proto_core::client::{
    get_max_offset_request, parse_max_offset, parse_pull, pull_request, send_message_v2_request,
    subscription, OutgoingMessage, PullArgs, TopicSubscribeInfo, DEFAULT_TOPIC,
};
use proto_core::ResponseCode;
use store_core::format::properties::{Properties, TIMER_DELIVER_MS};
use tokio::sync::Semaphore;

use super::{connect_all, lookup_route, now_ms, parse_duration, BenchError};

const TIMEOUT: Duration = Duration::from_secs(5);
/// The ext field SEND_MESSAGE_V2 carries the properties in.
const V2_PROPERTIES: &str = "i";

#[derive(Clone, Debug, Args)]
pub struct TimerArgs {
    #[arg(short = 'n', long = "namesrv")]
    pub namesrv: String,
    #[arg(short = 't', long, default_value = "BenchTimer")]
    pub topic: String,
    /// Offered send load, messages per second over all senders.
    #[arg(long, default_value_t = 10_000)]
    pub rate: u64,
    /// How long to send (`20s`, `1m`).
    #[arg(long, value_parser = parse_duration, default_value = "20s")]
    pub duration: Duration,
    #[arg(long, default_value_t = 2_000)]
    pub delay_min_ms: u64,
    #[arg(long, default_value_t = 5_000)]
    pub delay_max_ms: u64,
    /// Body size in bytes.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    /// Concurrent senders, one connection each.
    #[arg(long, default_value_t = 8)]
    pub senders: usize,
    /// Requests in flight per sender.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Print the summary as one JSON line.
    #[arg(long)]
    pub json: bool,
}

/// What a run measured.
#[derive(Debug)]
pub struct TimerSummary {
    pub acked: u64,
    pub send_failed: u64,
    pub received: u64,
    pub early: u64,
    /// Lateness in ms.
    pub lateness: Histogram<u64>,
    pub send_seconds: f64,
}

impl TimerSummary {
    pub fn text(&self) -> String {
        let q = |p: f64| self.lateness.value_at_quantile(p);
        format!(
            "timer: sent {} ok ({} failed) in {:.1}s = {:.0} msg/s; received {}; early {}; missing {}\n\
             lateness ms: p50 {} p90 {} p99 {} p99.9 {} max {} (mean {:.0})",
            self.acked,
            self.send_failed,
            self.send_seconds,
            self.acked as f64 / self.send_seconds.max(1e-9),
            self.received,
            self.early,
            self.acked.saturating_sub(self.received),
            q(0.5),
            q(0.9),
            q(0.99),
            q(0.999),
            self.lateness.max(),
            self.lateness.mean(),
        )
    }

    pub fn json(&self) -> String {
        let q = |p: f64| self.lateness.value_at_quantile(p);
        format!(
            "{{\"kind\":\"timer\",\"acked\":{},\"send_failed\":{},\"received\":{},\"early\":{},\"send_rate\":{:.0},\"lateness_ms_p50\":{},\"lateness_ms_p99\":{},\"lateness_ms_p999\":{},\"lateness_ms_max\":{}}}",
            self.acked,
            self.send_failed,
            self.received,
            self.early,
            self.acked as f64 / self.send_seconds.max(1e-9),
            q(0.5),
            q(0.99),
            q(0.999),
            self.lateness.max()
        )
    }
}

/// Shared counters of a run.
struct Tally {
    acked: AtomicU64,
    failed: AtomicU64,
    received: AtomicU64,
    early: AtomicU64,
    lateness: Mutex<Histogram<u64>>,
    stop: AtomicBool,
}

pub async fn run(args: TimerArgs) -> Result<TimerSummary, BenchError> {
    if args.delay_max_ms < args.delay_min_ms || args.rate == 0 || args.senders == 0 {
        return Err(BenchError::Option(
            "need --delay-min-ms <= --delay-max-ms, --rate > 0 and --senders > 0".into(),
        ));
    }
    let info = topic_queues(&args).await?;
    let queues: Vec<MessageQueue> = info.queues().to_vec();
    let conns = connect_all(info.master_addrs().map(str::to_string), args.senders).await?;
    let tally = Arc::new(Tally {
        acked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        received: AtomicU64::new(0),
        early: AtomicU64::new(0),
        lateness: Mutex::new(Histogram::new(3).map_err(|e| BenchError::Option(e.to_string()))?),
        stop: AtomicBool::new(false),
    });
    let mut pullers = Vec::new();
    for mq in &queues {
        let Some(conn) = info
            .master_addr(&mq.broker_name)
            .and_then(|a| conns.get(a))
            .and_then(|l| l.first())
        else {
            continue;
        };
        let resp = conn
            .invoke(get_max_offset_request(mq), TIMEOUT)
            .await
            .map_err(|source| BenchError::Broker {
                addr: conn.addr().to_string(),
                source,
            })?;
        let start = parse_max_offset(&resp).unwrap_or(0);
        pullers.push(tokio::spawn(pull(
            conn.clone(),
            mq.clone(),
            start,
            tally.clone(),
        )));
    }
    let started = Instant::now();
    let senders: Vec<_> = (0..args.senders)
        .map(|s| {
            let mq_conns: Vec<(MessageQueue, Arc<RemotingClient>)> = queues
                .iter()
                .filter_map(|mq| {
                    let list = conns.get(info.master_addr(&mq.broker_name)?)?;
                    Some((mq.clone(), list.get(s % list.len())?.clone()))
                })
                .collect();
            tokio::spawn(send_loop(args.clone(), s, mq_conns, started, tally.clone()))
        })
        .collect();
    for s in senders {
        let _ = s.await;
    }
    let send_seconds = started.elapsed().as_secs_f64();
    // Wait for the last deliveries: the longest delay, one slot, and slack.
    let deadline = Instant::now() + Duration::from_millis(args.delay_max_ms + 10_000);
    while Instant::now() < deadline
        && tally.received.load(Ordering::Relaxed) < tally.acked.load(Ordering::Relaxed)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tally.stop.store(true, Ordering::Relaxed);
    for p in pullers {
        p.abort();
    }
    let lateness = tally
        .lateness
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    Ok(TimerSummary {
        acked: tally.acked.load(Ordering::Relaxed),
        send_failed: tally.failed.load(Ordering::Relaxed),
        received: tally.received.load(Ordering::Relaxed),
        early: tally.early.load(Ordering::Relaxed),
        lateness,
        send_seconds,
    })
}

/// The topic's queues, creating the topic through TBW102 auto-creation if it has no route.
async fn topic_queues(args: &TimerArgs) -> Result<TopicSubscribeInfo, BenchError> {
    if let Some(route) = lookup_route(&args.namesrv, &args.topic).await? {
        return Ok(TopicSubscribeInfo::from_route(&args.topic, &route));
    }
    let template = lookup_route(&args.namesrv, DEFAULT_TOPIC)
        .await?
        .ok_or_else(|| BenchError::NoQueues(DEFAULT_TOPIC.to_string()))?;
    let template = TopicSubscribeInfo::from_route(DEFAULT_TOPIC, &template);
    let Some(addr) = template.master_addrs().next().map(str::to_string) else {
        return Err(BenchError::NoQueues(DEFAULT_TOPIC.to_string()));
    };
    let client = RemotingClient::connect(&addr)
        .await
        .map_err(|source| BenchError::Broker {
            addr: addr.clone(),
            source,
        })?;
    let mq = MessageQueue {
        broker_name: String::new(),
        queue_id: 0,
        topic: args.topic.clone(),
    };
    let msg = OutgoingMessage {
        topic: args.topic.clone(),
        body: Bytes::from_static(b"create"),
        ..OutgoingMessage::default()
    };
    let cmd = send_message_v2_request("bench_timer", &mq, &msg, "bench-create", now_ms());
    client
        .invoke(cmd, TIMEOUT)
        .await
        .map_err(|source| BenchError::Broker { addr, source })?;
    for _ in 0..100 {
        if let Some(route) = lookup_route(&args.namesrv, &args.topic).await? {
            return Ok(TopicSubscribeInfo::from_route(&args.topic, &route));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(BenchError::NoQueues(args.topic.clone()))
}

/// Sender `index`: its share of the offered rate, `window` requests in flight.
async fn send_loop(
    args: TimerArgs,
    index: usize,
    queues: Vec<(MessageQueue, Arc<RemotingClient>)>,
    started: Instant,
    tally: Arc<Tally>,
) {
    if queues.is_empty() {
        return;
    }
    let window = Arc::new(Semaphore::new(args.window.max(1)));
    let body = Bytes::from(vec![b't'; args.size]);
    let spread = args.delay_max_ms - args.delay_min_ms + 1;
    let senders = args.senders as u64;
    for k in 0u64.. {
        let slot = k * senders + index as u64;
        let at = Duration::from_nanos(slot.saturating_mul(1_000_000_000) / args.rate);
        if at >= args.duration {
            break;
        }
        tokio::time::sleep_until((started + at).into()).await;
        let Ok(permit) = window.clone().acquire_owned().await else {
            break;
        };
        let (mq, conn) = &queues[(slot as usize) % queues.len()];
        let delay = args.delay_min_ms + slot.wrapping_mul(7919) % spread;
        let deliver_ms = u64::try_from(now_ms()).unwrap_or(0) + delay;
        let msg = OutgoingMessage {
            topic: args.topic.clone(),
            body: body.clone(),
            ..OutgoingMessage::default()
        };
        let mut cmd =
            send_message_v2_request("bench_timer", mq, &msg, &format!("bt-{slot}"), now_ms());
        let mut props = Properties::parse(cmd.ext(V2_PROPERTIES).unwrap_or_default());
        props.insert(TIMER_DELIVER_MS, deliver_ms.to_string());
        cmd.ext_fields_mut().insert(V2_PROPERTIES, props.encode());
        let conn = conn.clone();
        let tally = tally.clone();
        tokio::spawn(async move {
            let ok = matches!(conn.invoke(cmd, TIMEOUT).await, Ok(r) if r.code == ResponseCode::Success.value());
            let counter = if ok { &tally.acked } else { &tally.failed };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }
    // Wait for the last answers.
    let _ = window.acquire_many(args.window.max(1) as u32).await;
}

/// Long-polls one queue, recording each timer message's lateness.
async fn pull(conn: Arc<RemotingClient>, mq: MessageQueue, start: i64, tally: Arc<Tally>) {
    let sub = subscription(&mq.topic, "*", 0);
    let mut offset = start;
    let mut local = Histogram::<u64>::new(3).ok();
    while !tally.stop.load(Ordering::Relaxed) {
        let cmd = pull_request(&PullArgs {
            group: "bench_timer_consumer",
            mq: &mq,
            subscription: &sub,
            queue_offset: offset,
            commit_offset: None,
            max_msg_nums: 32,
            suspend_timeout_ms: 1_000,
            with_subscription: true,
        });
        let Ok(resp) = conn.invoke(cmd, TIMEOUT).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(result) = parse_pull(&resp, &sub) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let arrived = u64::try_from(now_ms()).unwrap_or(0);
        offset = result.next_begin_offset.max(offset);
        let mut got = 0;
        for m in &result.messages {
            let props = Properties::parse_bytes(&m.properties);
            let Some(due) = props
                .get(TIMER_DELIVER_MS)
                .and_then(|v| v.parse::<u64>().ok())
            else {
                continue;
            };
            got += 1;
            if arrived < due {
                tally.early.fetch_add(1, Ordering::Relaxed);
            }
            if let Some(h) = local.as_mut() {
                let _ = h.record(arrived.saturating_sub(due));
            }
        }
        tally.received.fetch_add(got, Ordering::Relaxed);
        if let Some(h) = local.as_mut() {
            if !h.is_empty() {
                let _ = tally
                    .lateness
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .add(&*h);
                h.reset();
            }
        }
    }
}
