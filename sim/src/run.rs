//! One run of one scenario: start the cluster and clients, apply the seed's faults while the
//! producers send (safety is checked on every read), heal everything, then require liveness:
//! every surviving acknowledged message consumed, every broker routable again, within
//! `liveness_ms` of simulated time.

use std::net::{IpAddr, Ipv4Addr};

use madsim::runtime::Handle;
use madsim::time::Instant;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::cluster::{sleep_ms, Cluster};
use crate::history::{Counts, History};
use crate::options::Options;
use crate::scenarios::{fault_phase, uses_plain_consumer, Ctx};
use crate::trace::Trace;
use crate::workload::{consume, produce, route, scan_all, Connections};

/// What a run found.
#[derive(Debug)]
pub struct Outcome {
    pub options: Options,
    pub trace_hash: u64,
    pub events: usize,
    pub violations: Vec<String>,
    pub counts: Counts,
    /// The last lines of the trace, for a failure report.
    pub trace_tail: Vec<String>,
    /// Failover scenarios: simulated ms from the master's loss to the first SEND_OK from its
    /// successor (`None` elsewhere, or when no successor answered).
    pub failover_ms: Option<u64>,
}

impl Outcome {
    /// What the run found, read off its trace and history once it has ended.
    pub fn collect(
        options: Options,
        trace: &Trace,
        history: &History,
        failover_ms: Option<u64>,
    ) -> Outcome {
        Outcome {
            options,
            trace_hash: trace.hash(),
            events: trace.len(),
            violations: history.violations(),
            counts: history.counts(),
            trace_tail: trace.tail(25),
            failover_ms,
        }
    }

    pub fn passed(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn summary(&self) -> String {
        let c = &self.counts;
        format!(
            "{} seed {}: {} — sent {} acked {} refused {} unknown {} read {} reread {} resets {} \
             lost(async, allowed) {} skipped(async reuse) {} lost(corrupt, allowed) {} duplicates {} offset regressions(rebalance) {} \
             events {} trace hash {:016x}{}",
            self.options.scenario.name(),
            self.options.seed,
            if self.passed() { "ok" } else { "FAILED" },
            c.sent,
            c.acked,
            c.refused,
            c.unknown,
            c.read,
            c.reread,
            c.resets,
            c.lost_async,
            c.skipped_async,
            c.lost_corrupt,
            c.duplicates,
            c.offset_regressions,
            self.events,
            self.trace_hash,
            self.failover_ms
                .map(|ms| format!(" failover_ms={ms}"))
                .unwrap_or_default()
        )
    }

    /// Violations, the trace tail and the exact replay command.
    pub fn failure_report(&self) -> String {
        let mut out = String::new();
        out.push_str(&self.summary());
        out.push_str("\nviolations:\n");
        for v in &self.violations {
            out.push_str(&format!("  {v}\n"));
        }
        out.push_str("last events:\n");
        for l in &self.trace_tail {
            out.push_str(&format!("  {l}\n"));
        }
        out.push_str(&format!("replay: {}\n", self.options.replay_command()));
        out
    }
}

/// The address of client host `last` (producers, consumers, checkers).
pub fn client_ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 2, last))
}

/// Runs `opts` inside the current madsim runtime; `echo` prints the trace as it happens.
pub async fn run(opts: Options, echo: bool) -> Outcome {
    if crate::scenarios::ha::owns(opts.scenario) {
        return crate::scenarios::ha::run(opts, echo).await;
    }
    if crate::scenarios::controller::owns(opts.scenario) {
        return crate::scenarios::controller::run(opts, echo).await;
    }
    println!("sim options: {opts}");
    let trace = Trace::new(echo);
    trace.event(format!("options {opts}"));
    let history = History::new(opts.brokers, opts.sync_flush, trace.clone());
    let cluster = Cluster::start(&opts, &trace, &history);
    let handle = Handle::current();
    // Brokers register at start; give them a moment as a real deployment would.
    sleep_ms(1_000).await;

    let producers: Vec<_> = (0..opts.producers)
        .map(|p| {
            let node = handle
                .create_node()
                .name(format!("producer-{p}"))
                .ip(client_ip(1 + p as u8))
                .build();
            let task = node.spawn(produce(p, opts.clone(), history.clone(), trace.clone()));
            (node.id(), task)
        })
        .collect();
    let producer_ids: Vec<_> = producers.iter().map(|(id, _)| *id).collect();
    let consumer = uses_plain_consumer(opts.scenario).then(|| {
        let node = handle
            .create_node()
            .name("consumer")
            .ip(client_ip(100))
            .build();
        node.spawn(consume(opts.clone(), history.clone()));
        node
    });
    let checker = handle
        .create_node()
        .name("checker")
        .ip(client_ip(200))
        .build();

    // Phase one: faults on.
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0xFA17);
    let mut clients = producer_ids;
    clients.extend(consumer.as_ref().map(|c| c.id()));
    let ctx = Ctx {
        opts: &opts,
        cluster: &cluster,
        history: &history,
        trace: &trace,
        checker: &checker,
        clients,
    };
    fault_phase(&ctx, &mut rng).await;
    for (_, p) in producers {
        if let Err(e) = p.await {
            history.fail_liveness(format!("producer task failed: {e}"));
        }
    }

    // Phase two: every fault is healed by now; require liveness.
    drop(ctx);
    trace.event("HEAL: faults off, liveness phase");
    let deadline = Instant::now() + std::time::Duration::from_millis(opts.liveness_ms);
    let live_opts = opts.clone();
    let live_history = history.clone();
    let live_trace = trace.clone();
    let liveness = checker.spawn(async move {
        let (opts, history, trace) = (live_opts, live_history, live_trace);
        let scan = loop {
            if let Some(scan) = scan_all(&opts, &history).await {
                break Some(scan);
            }
            if Instant::now() >= deadline {
                break None;
            }
            sleep_ms(500).await;
        };
        let Some(scan) = scan else {
            history.fail_liveness("some broker never answered a full scan after healing".into());
            return;
        };
        let sizes: Vec<usize> = scan.values().map(Vec::len).collect();
        trace.event(format!("final scan: queue lengths {sizes:?}"));
        let survivors = history.check_final(&scan);
        let mut conns = Connections::default();
        loop {
            let missing = history.unconsumed(&survivors, &scan);
            let routed = route(&mut conns, "TBW102").await;
            let all_routed = matches!(&routed, Ok(Some(b)) if b.len() == opts.brokers);
            if missing.is_empty() && all_routed {
                trace.event(format!(
                    "liveness: {} surviving acked messages consumed, all brokers routed",
                    survivors.len()
                ));
                return;
            }
            if Instant::now() >= deadline {
                let first: Vec<&String> = missing.iter().take(5).collect();
                history.fail_liveness(format!(
                    "{} acked messages not consumed within {} ms of healing (first {first:?}); route {routed:?}",
                    missing.len(),
                    opts.liveness_ms
                ));
                return;
            }
            sleep_ms(500).await;
        }
    });
    if let Err(e) = liveness.await {
        history.fail_liveness(format!("liveness task failed: {e}"));
    }
    if let Some(consumer) = consumer {
        handle.kill(consumer.id());
    }
    trace.event("end");
    let _ = cluster;
    Outcome::collect(opts, &trace, &history, None)
}
