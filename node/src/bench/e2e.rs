//! `node bench e2e`: the producer of `produce.rs` and the consumer of `consume.rs` at once,
//! against the same topic. The consumer long-polls (15 s hold, as Java's push consumer asks)
//! and records receipt time − born timestamp per message, both wall-clock milliseconds, so
//! the figures have 1 ms resolution.
//!
//! An existing topic is consumed from its current end (offsets taken before the first send);
//! a new one from offset 0, once the first send has created it. After the producer ends the
//! consumer keeps going until it has every acknowledged message or a grace period passes.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use super::consume::{drive, prepare, PullPlan};
use super::report::{Meter, Progress, Summary};
use super::{lookup_route, produce, BenchError, E2eArgs, From};

/// How long the broker may hold an empty pull (Java push consumer's suspend time).
const SUSPEND_MS: i64 = 15_000;
/// After the last send, the consumer waits at most this long for the rest.
const DRAIN_GRACE: Duration = Duration::from_secs(5);
/// Until the producer is done, the consumer's only bound.
const UNBOUNDED: Duration = Duration::from_secs(24 * 3600);

/// Runs both sides; returns the producer's and the consumer's summaries.
pub async fn run(args: E2eArgs) -> Result<(Summary, Summary), BenchError> {
    let produce_args = args.produce;
    let exists = lookup_route(&produce_args.namesrv, &produce_args.topic)
        .await?
        .is_some();
    let plan = Arc::new(PullPlan::new(
        produce_args.namesrv.clone(),
        produce_args.topic.clone(),
        args.group,
        if exists { From::Last } else { From::First },
        args.pull_batch,
        SUSPEND_MS,
        true,
        None,
        UNBOUNDED,
    ));
    let received = Arc::new(Meter::default());
    let sent = Arc::new(Meter::default());
    let _send_progress = Progress::start("Send", sent.clone());
    let _consume_progress = Progress::start("Consume", received.clone());

    // An existing topic: fix the start offsets before anything is sent.
    let ready = if exists {
        Some(prepare(&plan, &received).await?)
    } else {
        None
    };
    let consumer = {
        let plan = plan.clone();
        let received = received.clone();
        tokio::spawn(async move {
            let starts = match ready {
                Some(s) => s,
                None => prepare(&plan, &received).await?,
            };
            drive(plan, starts, received).await;
            Ok::<(), BenchError>(())
        })
    };

    let produced = produce::run_with(produce_args, sent.clone(), false).await;
    // Whatever happened, tell the consumer what to wait for and for how long.
    plan.want.store(sent.messages(), Ordering::Relaxed);
    let end = plan.start.elapsed() + DRAIN_GRACE;
    plan.deadline_ms
        .store(end.as_millis() as u64, Ordering::Relaxed);
    let (_, send_elapsed) = produced?;
    match consumer.await {
        Ok(result) => result?,
        Err(e) => return Err(BenchError::Option(format!("consumer task failed: {e}"))),
    }
    Ok((
        sent.summary("produce", send_elapsed),
        received.summary("e2e", plan.start.elapsed()),
    ))
}
