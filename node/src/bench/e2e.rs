//! `node bench e2e`: the producer of `produce.rs` and the consumer of `consume.rs` at once,
//! against the same topic. The consumer long-polls (15 s hold, as Java's push consumer asks)
//! and records receipt time − born timestamp per message, both wall-clock milliseconds, so
//! the figures have 1 ms resolution.
//!
//! The timed sends start only once the consumer is in place: the topic exists (a new one is
//! first created by one untimed message, through TBW102 as any first send would), its queues'
//! current ends are taken as start offsets, and every queue has its connection. Without this,
//! a new topic's first few hundred milliseconds of messages waited for the consumer to find
//! the route (polled every 100 ms) and connect, which is the bench starting up, not the
//! broker's delivery latency: it made p99 of a 10 s run tens of milliseconds. After the
//! producer ends the consumer keeps going until it has every acknowledged message or a grace
//! period passes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::consume::{drive, prepare, PullPlan};
use super::report::{Meter, Progress, Summary};
use super::{lookup_route, produce, BenchError, E2eArgs, From, ProduceArgs};

/// How long the broker may hold an empty pull (Java push consumer's suspend time).
const SUSPEND_MS: i64 = 15_000;
/// After the last send, the consumer waits at most this long for the rest.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Until the producer is done, the consumer's only bound.
const UNBOUNDED: Duration = Duration::from_secs(24 * 3600);
/// How long the sends wait for the consumer's connections before starting anyway (a queue
/// that cannot connect is counted as failed pulls by the consumer).
const CONNECT_WAIT: Duration = Duration::from_secs(5);

/// Creates a missing topic the way its first send would (through TBW102), with one message
/// that is neither timed nor consumed: the consumer starts after it.
async fn create_topic(args: &ProduceArgs) -> Result<(), BenchError> {
    let one = ProduceArgs {
        threads: 1,
        count: Some(1),
        duration: None,
        batch: 1,
        async_send: false,
        oneway: false,
        rate: 0,
        ..args.clone()
    };
    let meter = Arc::new(Meter::default());
    produce::run_with(one, meter.clone(), false).await?;
    if meter.messages() == 0 {
        return Err(BenchError::NoQueues(args.topic.clone()));
    }
    Ok(())
}

/// Runs both sides; returns the producer's and the consumer's summaries.
pub async fn run(args: E2eArgs) -> Result<(Summary, Summary), BenchError> {
    let produce_args = args.produce;
    if lookup_route(&produce_args.namesrv, &produce_args.topic)
        .await?
        .is_none()
    {
        create_topic(&produce_args).await?;
    }
    let plan = Arc::new(PullPlan::new(
        produce_args.namesrv.clone(),
        produce_args.topic.clone(),
        args.group,
        From::Last,
        args.pull_batch,
        SUSPEND_MS,
        true,
        None,
        UNBOUNDED,
    ));
    let received = Arc::new(Meter::default());
    let sent = Arc::new(Meter::default());
    // Waits for the new topic's route, then fixes the start offsets before anything is timed.
    let starts = prepare(&plan, &received).await?;
    let queues = starts.len();
    let consumer = {
        let plan = plan.clone();
        let received = received.clone();
        tokio::spawn(async move { drive(plan, starts, received).await })
    };
    plan.wait_connected(queues, CONNECT_WAIT).await;
    let _send_progress = Progress::start("Send", sent.clone());
    let _consume_progress = Progress::start("Consume", received.clone());

    let produced = produce::run_with(produce_args, sent.clone(), false).await;
    // Whatever happened, tell the consumer what to wait for and for how long.
    plan.want.store(sent.messages(), Ordering::Relaxed);
    let end = plan.start.elapsed() + DRAIN_GRACE;
    plan.deadline_ms
        .store(end.as_millis() as u64, Ordering::Relaxed);
    let (_, send_elapsed) = produced?;
    if let Err(e) = consumer.await {
        return Err(BenchError::Option(format!("consumer task failed: {e}")));
    }
    Ok((
        sent.summary("produce", send_elapsed),
        received.summary("e2e", plan.start.elapsed()),
    ))
}
