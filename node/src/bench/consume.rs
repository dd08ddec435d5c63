//! `node bench consume`: one task per readable queue of the topic, pulling with long polling and
//! the subscription in the request (so no heartbeat is needed), counting messages and body
//! bytes. Queues start at offset 0 (`--from first`) or at their current end (`--from last`).
//!
//! Each queue task pulls on a [`Pipe`] of its own (one pull in flight per queue), so no task
//! hand-offs sit between a pull and its answer.
//!
//! The latency it records is the pull round trip of pulls that found messages; e2e mode
//! records receipt time − born timestamp per message instead.
//! What it leaves out: rebalancing with other consumers, offset commits, tag filters.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use io_adapters::client::RemotingClient;
use proto_core::body::MessageQueue;
use proto_core::client::{
    get_max_offset_request, parse_max_offset, parse_pull, pull_request, subscription, PullArgs,
    PullStatus, TopicSubscribeInfo,
};
use tokio::sync::Notify;

use super::pipe::Pipe;
use super::report::{new_histogram, Meter, Progress, Summary};
use super::{
    connect_all, lookup_route, now_ms, response_kind, BenchError, ConsumeArgs, From,
    DEFAULT_DURATION,
};

/// A run bounded by `--count` alone still ends, at the latest after this long.
const COUNT_ONLY_LIMIT: Duration = Duration::from_secs(24 * 3600);
/// Pause after a failed pull or a missing route, so errors do not spin.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// Extra time a pull may take beyond the time the broker may hold it.
const PULL_SLACK: Duration = Duration::from_secs(5);
/// How often the supervisor checks whether the run is over.
const CHECK_EVERY: Duration = Duration::from_millis(20);
/// How often [`PullPlan::wait_connected`] looks again.
const CONNECT_POLL: Duration = Duration::from_millis(1);

/// What every queue task reads.
pub(crate) struct PullPlan {
    pub namesrv: String,
    pub topic: String,
    pub group: String,
    pub from: From,
    pub pull_batch: i32,
    pub suspend_ms: i64,
    /// Record born-to-receipt latency per message instead of the pull round trip.
    pub e2e: bool,
    pub start: Instant,
    /// Stop once the meter counts this many messages.
    pub want: AtomicU64,
    /// Stop this many milliseconds after `start`.
    pub deadline_ms: AtomicU64,
    finished: AtomicBool,
    wake: Notify,
    /// Queue tasks that have their connection (counted once each).
    connected: AtomicUsize,
}

impl PullPlan {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        namesrv: String,
        topic: String,
        group: String,
        from: From,
        pull_batch: i32,
        suspend_ms: i64,
        e2e: bool,
        want: Option<u64>,
        limit: Duration,
    ) -> PullPlan {
        PullPlan {
            namesrv,
            topic,
            group,
            from,
            pull_batch,
            suspend_ms,
            e2e,
            start: Instant::now(),
            want: AtomicU64::new(want.unwrap_or(u64::MAX)),
            deadline_ms: AtomicU64::new(limit.as_millis() as u64),
            finished: AtomicBool::new(false),
            wake: Notify::new(),
            connected: AtomicUsize::new(0),
        }
    }

    /// Waits until `queues` queue tasks have connected, or `limit` passes (e2e starts its
    /// sends then, so none waits for a connection that is still being made).
    pub async fn wait_connected(&self, queues: usize, limit: Duration) {
        let give_up = Instant::now() + limit;
        while self.connected.load(Ordering::Relaxed) < queues && Instant::now() < give_up {
            tokio::time::sleep(CONNECT_POLL).await;
        }
    }

    fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    /// Ends the run if the time or the count is reached; true when it is over.
    fn check(&self, meter: &Meter) -> bool {
        let over = self.start.elapsed().as_millis() as u64
            >= self.deadline_ms.load(Ordering::Relaxed)
            || meter.messages() >= self.want.load(Ordering::Relaxed);
        if over && !self.finished.swap(true, Ordering::Relaxed) {
            self.wake.notify_waiters();
        }
        over || self.is_finished()
    }
}

/// One queue, its master and where pulling starts.
pub(crate) struct QueueStart {
    mq: MessageQueue,
    conn: Arc<RemotingClient>,
    offset: i64,
}

/// Runs the consumer to its end.
pub async fn run(args: ConsumeArgs) -> Result<Summary, BenchError> {
    let limit = match (args.duration, args.count) {
        (Some(d), _) => d,
        (None, Some(_)) => COUNT_ONLY_LIMIT,
        (None, None) => DEFAULT_DURATION,
    };
    let plan = Arc::new(PullPlan::new(
        args.namesrv,
        args.topic,
        args.group,
        args.from,
        args.pull_batch,
        args.suspend_ms,
        false,
        args.count,
        limit,
    ));
    let meter = Arc::new(Meter::default());
    let _progress = Progress::start("Consume", meter.clone());
    let starts = prepare(&plan, &meter).await?;
    drive(plan.clone(), starts, meter.clone()).await;
    Ok(meter.summary("consume", plan.start.elapsed()))
}

/// Finds the topic's queues (waiting for its route while the run lasts) and their start
/// offsets.
pub(crate) async fn prepare(plan: &PullPlan, meter: &Meter) -> Result<Vec<QueueStart>, BenchError> {
    let route = loop {
        if let Some(route) = lookup_route(&plan.namesrv, &plan.topic).await? {
            break route;
        }
        if plan.check(meter) {
            return Ok(Vec::new());
        }
        tokio::time::sleep(RETRY_PAUSE).await;
    };
    let info = TopicSubscribeInfo::from_route(&plan.topic, &route);
    let conns = connect_all(info.master_addrs().map(str::to_string), 1).await?;
    let mut starts = Vec::new();
    for mq in info.queues() {
        let Some(conn) = info
            .master_addr(&mq.broker_name)
            .and_then(|a| conns.get(a))
            .and_then(|l| l.first())
        else {
            continue;
        };
        let offset = match plan.from {
            From::First => 0,
            From::Last => {
                let resp = conn
                    .invoke(get_max_offset_request(mq), PULL_SLACK)
                    .await
                    .map_err(|source| BenchError::Broker {
                        addr: conn.addr().to_string(),
                        source,
                    })?;
                parse_max_offset(&resp).map_err(|source| BenchError::Route {
                    topic: plan.topic.clone(),
                    source,
                })?
            }
        };
        starts.push(QueueStart {
            mq: mq.clone(),
            conn: conn.clone(),
            offset,
        });
    }
    if starts.is_empty() {
        return Err(BenchError::NoQueues(plan.topic.clone()));
    }
    Ok(starts)
}

/// Pulls every queue until the plan says stop.
pub(crate) async fn drive(plan: Arc<PullPlan>, starts: Vec<QueueStart>, meter: Arc<Meter>) {
    // Plain handles rather than JoinSet, which the simulator's tokio lacks.
    let tasks: Vec<_> = starts
        .into_iter()
        .map(|start| tokio::spawn(pull_queue(plan.clone(), start, meter.clone())))
        .collect();
    let supervisor = {
        let plan = plan.clone();
        let meter = meter.clone();
        tokio::spawn(async move {
            while !plan.check(&meter) {
                tokio::time::sleep(CHECK_EVERY).await;
            }
        })
    };
    for task in tasks {
        let _ = task.await;
    }
    supervisor.abort();
}

async fn pull_queue(plan: Arc<PullPlan>, start: QueueStart, meter: Arc<Meter>) {
    let sub = subscription(&plan.topic, "*", 0);
    let timeout = Duration::from_millis(plan.suspend_ms.max(0) as u64) + PULL_SLACK;
    let mut histogram = new_histogram();
    let mut offset = start.offset;
    let mut pipe: Option<Pipe> = None;
    let mut counted = false;
    while !plan.is_finished() {
        if pipe.is_none() {
            match Pipe::connect(start.conn.addr()).await {
                Ok(p) => {
                    pipe = Some(p);
                    if !counted {
                        counted = true;
                        plan.connected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(e) => {
                    meter.failed(e.kind());
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            }
        }
        let Some(conn) = pipe.as_mut() else {
            continue;
        };
        let cmd = pull_request(&PullArgs {
            group: &plan.group,
            mq: &start.mq,
            subscription: &sub,
            queue_offset: offset,
            commit_offset: None,
            max_msg_nums: plan.pull_batch,
            suspend_timeout_ms: plan.suspend_ms,
            with_subscription: true,
        });
        let sent = Instant::now();
        let woken = plan.wake.notified();
        let resp = tokio::select! {
            r = conn.call(cmd, timeout) => r,
            _ = woken => break,
        };
        let resp = match resp {
            Ok(resp) => resp,
            Err(e) => {
                pipe = None;
                meter.failed(e.kind());
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let result = match parse_pull(&resp, &sub) {
            Ok(r) => r,
            Err(_) => {
                meter.failed(format!("pull {}", response_kind(&resp)));
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        offset = result.next_begin_offset;
        if result.status != PullStatus::Found {
            continue;
        }
        let bytes: usize = result.messages.iter().map(|m| m.body.len()).sum();
        if plan.e2e {
            let now = now_ms();
            for m in &result.messages {
                let us = (now - m.born_timestamp).max(0) as u64 * 1000;
                meter.latency(us);
                histogram.saturating_record(us);
            }
        } else {
            let us = sent.elapsed().as_micros() as u64;
            meter.latency(us);
            histogram.saturating_record(us);
        }
        meter.done(result.messages.len() as u64, bytes as u64);
    }
    meter.merge(&histogram);
}
