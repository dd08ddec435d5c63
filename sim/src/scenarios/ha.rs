//! Replication scenarios: one broker set (master + slaves) instead of independent brokers, so
//! they run their own course (start, faults, checks) rather than `run.rs`'s phases.
//!
//! `ha_master_kill` (default HA, SYNC_MASTER): producers send with WAIT=true to the master;
//! at a random moment (in half the runs after cutting the master off from its slaves), right
//! after an acknowledgement arrives (or a second without one), the master is killed. Checked
//! then, over the slaves' disks (every byte written, synced or not: the slaves are alive):
//! - each slave's commit log is a prefix of the master's log as it was at the kill, slot for
//!   slot (same offsets, same bytes);
//! - read per queue from the longest slave, records have dense increasing queue offsets,
//!   bodies and properties byte-identical to what was sent (the history's read checks);
//! - every acknowledged message is there at the queue offset its ack named.
//!
//! Left out: failover (default HA has none: the master stays down; the controller scenarios
//! cover it) and slave kills.

use std::collections::BTreeMap;

use madsim::runtime::Handle;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_core::format::record::MessageRecord;

use crate::cluster::{clog_link, sleep_ms, Cluster};
use crate::ha_cluster::{read_log, replica_config, HaSet, Slot};
use crate::history::{body_id, History, TOPIC};
use crate::options::{Options, Scenario};
use crate::run::{client_ip, Outcome};
use crate::trace::Trace;
use crate::workload::produce;

/// Whether `scenario` is one of this module's (run by [`run`], not by `run.rs`'s phases).
pub fn owns(scenario: Scenario) -> bool {
    matches!(scenario, Scenario::HaMasterKill)
}

/// Runs one replication scenario inside the current madsim runtime.
pub async fn run(opts: Options, echo: bool) -> Outcome {
    println!("sim options: {opts}");
    let trace = Trace::new(echo);
    trace.event(format!("options {opts}"));
    let history = History::new(opts.replicas, opts.sync_flush, trace.clone());
    // The name server only: the brokers are the replicated set's.
    let namesrv_only = Options {
        brokers: 0,
        ..opts.clone()
    };
    let cluster = Cluster::start(&namesrv_only, &trace, &history);
    let set = HaSet::start(&opts, &trace, &history, |i| replica_config(&opts, i));
    // Registration and the slaves' first HA connections.
    sleep_ms(2_000).await;
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0xFA17);
    let producers = start_producers(&opts, &history, &trace);
    match opts.scenario {
        Scenario::HaMasterKill => master_kill(&opts, &set, &history, &trace, &mut rng).await,
        other => history.violation(format!("{} is not a replication scenario", other.name())),
    }
    let handle = Handle::current();
    for p in producers {
        handle.kill(p);
    }
    trace.event("end");
    let _ = cluster;
    Outcome::collect(opts, &trace, &history, None)
}

/// The producers of `opts` on their client hosts; they send to the master the route names.
fn start_producers(opts: &Options, history: &History, trace: &Trace) -> Vec<madsim::task::NodeId> {
    let handle = Handle::current();
    (0..opts.producers)
        .map(|p| {
            let node = handle
                .create_node()
                .name(format!("producer-{p}"))
                .ip(client_ip(1 + p as u8))
                .build();
            node.spawn(produce(p, opts.clone(), history.clone(), trace.clone()));
            node.id()
        })
        .collect()
}

/// Kills the master right after an acknowledgement at a random moment, then checks the
/// slaves against the master's log at the kill and against the acknowledgements.
async fn master_kill(
    opts: &Options,
    set: &HaSet,
    history: &History,
    trace: &Trace,
    rng: &mut StdRng,
) {
    sleep_ms(rng.gen_range(0..opts.fault_phase_ms)).await;
    let Some(master) = set.replicas.first() else {
        return;
    };
    // Half the runs first cut the master off from its slaves (a SYNC_MASTER must then stop
    // acknowledging), so a master that answers early is caught whatever the link latencies.
    let isolate = rng.gen_bool(0.5);
    if isolate {
        for slave in &set.replicas[1..] {
            clog_link(master.id, slave.id, true);
            clog_link(slave.id, master.id, true);
        }
        trace.event("CLOG master<->slaves");
    }
    // The most revealing moment: an answer has just arrived, its replication may not have.
    let acked = history.counts().acked;
    for _ in 0..1_000 {
        if history.counts().acked > acked {
            break;
        }
        sleep_ms(1).await;
    }
    let segment_size = opts.segment_size;
    let at_kill = read_log(&master.disk.mem, segment_size);
    set.kill(0);
    // Nothing can reach the slaves any more; let them finish appending what they hold.
    sleep_ms(2_000).await;
    let logs: Vec<Vec<(u64, Slot)>> = set.replicas[1..]
        .iter()
        .map(|r| read_log(&r.disk.mem, segment_size))
        .collect();
    trace.event(format!(
        "master log at kill: {} slots; slave logs: {:?} slots",
        at_kill.len(),
        logs.iter().map(Vec::len).collect::<Vec<_>>()
    ));
    for (s, log) in logs.iter().enumerate() {
        check_prefix(history, &format!("slave {}", s + 1), log, &at_kill);
    }
    // Each slave is a prefix of the master's log, so the longest holds what any holds.
    let Some(longest) = logs.iter().max_by_key(|l| l.len()) else {
        return;
    };
    let scan = read_queues(history, longest);
    check_acks_present(history, &scan, "surviving slave");
}

/// `log` must equal the first `log.len()` slots of `reference`.
pub fn check_prefix(history: &History, who: &str, log: &[(u64, Slot)], reference: &[(u64, Slot)]) {
    if log.len() > reference.len() {
        history.violation(format!(
            "{who} holds {} slots, more than the master's {}",
            log.len(),
            reference.len()
        ));
    }
    if let Some(((at, _), _)) = log
        .iter()
        .zip(reference)
        .find(|((a, x), (b, y))| a != b || x != y)
    {
        history.violation(format!(
            "{who} diverges from the master's log at commit-log offset {at}"
        ));
    }
}

/// Splits `log` into [`TOPIC`]'s queues, checks each as a read from offset 0 (attributed to
/// broker 0, which acknowledged everything), and returns the ids per (0, queue).
pub fn read_queues(history: &History, log: &[(u64, Slot)]) -> BTreeMap<(usize, i32), Vec<String>> {
    let mut queues: BTreeMap<i32, Vec<MessageRecord>> = BTreeMap::new();
    for (_, slot) in log {
        if let Slot::Message { record, .. } = slot {
            if &record.topic[..] == TOPIC.as_bytes() {
                queues
                    .entry(record.queue_id)
                    .or_default()
                    .push(MessageRecord::clone(record));
            }
        }
    }
    queues
        .into_iter()
        .map(|(queue, records)| {
            history.read(0, queue, 0, &records, false);
            let ids = records
                .iter()
                .map(|r| body_id(&r.body).unwrap_or("?").to_string())
                .collect();
            ((0, queue), ids)
        })
        .collect()
}

/// Every acknowledged message must be in `scan` at the queue offset its ack named.
pub fn check_acks_present(
    history: &History,
    scan: &BTreeMap<(usize, i32), Vec<String>>,
    where_: &str,
) {
    for ack in history.acks() {
        let present = scan
            .get(&(0, ack.queue))
            .and_then(|ids| usize::try_from(ack.offset).ok().and_then(|o| ids.get(o)))
            .is_some_and(|id| *id == ack.id);
        if !present {
            history.violation(format!(
                "acknowledged {} (queue {} offset {} commit-log {}) is not on the {where_}",
                ack.id, ack.queue, ack.offset, ack.phys
            ));
        }
    }
}
