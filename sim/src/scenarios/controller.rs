//! Controller-mode failover scenarios: three controllers (`run_controller` on the replicated
//! log), a name server and one broker set of three brokers in `enableControllerMode` with
//! SYNC sends acknowledged by the whole sync state set (`allAckInSyncStateSet`,
//! `minInSyncReplicas` 2). Producers follow the route to whichever broker is master; a
//! consumer tails the master.
//!
//! Faults, one scenario each: the master killed during sends (`ctrl_master_kill`); the master
//! cut off from the controllers and/or its slaves (`ctrl_partition`); the controller leader
//! killed (`ctrl_leader_loss`); random links among brokers and controllers clogged and
//! unclogged repeatedly (`ctrl_flapping`); the master cut off while clients still reach it
//! (so it appends a tail no slave acknowledges), killed, and restarted after a successor took
//! over (`ctrl_old_master_returns`).
//!
//! Checked:
//! - at every acknowledgement, which broker answered and the master epoch it held (its
//!   published (role, epoch), `ha_cluster::Published`): no two brokers acknowledge in one
//!   master epoch;
//! - every read the consumer makes is final: the record at a (queue, offset) never changes
//!   later, and a queue's cursor never has to move back (reads stop at the confirm offset, so a
//!   failover never truncates what was read);
//! - after healing and a quiet period: one master, every acknowledged message in its log at
//!   the commit-log offset its ack named, byte-identical, and every other live replica's log a
//!   prefix of the master's (a returned old master truncated its diverged tail);
//! - liveness: after healing, sends are acknowledged again.
//!
//! Failover time (master lost -> first SEND_OK from its successor, simulated ms) is printed in
//! the summary as `failover_ms=`, which `scripts/sim sweep` collects into p50/p99.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use madsim::runtime::Handle;
use madsim::task::NodeId;
use madsim::time::Instant;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use super::Shared;
use crate::cluster::{clog_link, sleep_ms, Cluster};
use crate::ha_cluster::{read_log, Controllers, HaSet, Slot, SET_NAME};
use crate::history::{body_id, History, TOPIC};
use crate::options::{Options, Scenario};
use crate::run::{client_ip, Outcome};
use crate::trace::Trace;
use crate::workload::{pull, route, send, Connections, Pulled, Sent};

/// What the controller scenarios record besides the history.
#[derive(Default)]
struct Book {
    /// Per master epoch, the broker that acknowledged in it (first one seen).
    epoch_owner: BTreeMap<u64, usize>,
    /// Acks: (simulated ms since start, broker, master epoch).
    acks: Vec<(u64, usize, u64)>,
    /// What the consumer read at each (queue, offset).
    reads: BTreeMap<(i32, i64), String>,
}

/// Whether `scenario` is a controller-mode one.
pub fn owns(scenario: Scenario) -> bool {
    matches!(
        scenario,
        Scenario::CtrlMasterKill
            | Scenario::CtrlPartition
            | Scenario::CtrlLeaderLoss
            | Scenario::CtrlFlapping
            | Scenario::CtrlOldMasterReturns
    )
}

/// Everything a fault phase works with.
struct World<'a> {
    opts: &'a Options,
    set: &'a HaSet,
    controllers: &'a Controllers,
    history: &'a History,
    trace: &'a Trace,
    book: Shared<Book>,
    start: Instant,
    /// When the master was lost (killed or cut off) and which one, for the failover time.
    lost: Shared<Option<(u64, usize, u64)>>,
    client_ids: Vec<NodeId>,
}

impl World<'_> {
    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The broker that publishes itself master with the highest epoch, among live ones.
    fn master(&self) -> Option<(usize, u64)> {
        (0..self.set.replicas.len())
            .filter_map(|i| {
                let p = self.set.published(i);
                (p.up && p.role.is_some_and(|r| r.is_master())).then_some((i, p.epoch))
            })
            .max_by_key(|&(_, e)| e)
    }

    /// Waits up to `ms` for a master; returns it.
    async fn await_master(&self, ms: u64) -> Option<(usize, u64)> {
        for _ in 0..ms / 100 {
            if let Some(m) = self.master() {
                return Some(m);
            }
            sleep_ms(100).await;
        }
        self.master()
    }

    fn note_loss(&self, broker: usize) {
        let epoch = self.set.published(broker).master_epoch.unwrap_or(0);
        *self.lost.lock() = Some((self.now(), broker, epoch));
        self.trace
            .event(format!("MASTER LOST {SET_NAME}-{broker} (epoch {epoch})"));
    }

    /// Clogs or unclogs both directions between node `a` and each of `others`.
    fn clog_between(&self, a: NodeId, others: &[NodeId], clog: bool) {
        for &b in others {
            clog_link(a, b, clog);
            clog_link(b, a, clog);
        }
    }

    fn broker_ids_except(&self, i: usize) -> Vec<NodeId> {
        self.set
            .replicas
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, r)| r.id)
            .collect()
    }
}

/// Runs one controller-mode scenario inside the current madsim runtime.
pub async fn run(opts: Options, echo: bool) -> Outcome {
    println!("sim options: {opts}");
    let trace = Trace::new(echo);
    trace.event(format!("options {opts}"));
    let start = Instant::now();
    let history = History::new(opts.replicas, true, trace.clone());
    let namesrv_only = Options {
        brokers: 0,
        ..opts.clone()
    };
    let cluster = Cluster::start(&namesrv_only, &trace, &history);
    let controllers = Controllers::start(&opts, &trace);
    let set = HaSet::start(&opts, &trace, &history, |i| {
        crate::ha_cluster::controller_mode_config(&opts, i)
    });
    let book: Shared<Book> = Shared::default();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = Handle::current();
    let mut client_ids = Vec::new();
    let mut world = World {
        opts: &opts,
        set: &set,
        controllers: &controllers,
        history: &history,
        trace: &trace,
        book: book.clone(),
        start,
        lost: Shared::default(),
        client_ids: Vec::new(),
    };
    let Some((first, epoch)) = world.await_master(30_000).await else {
        history.fail_liveness("no master elected within 30 s of start".into());
        return Outcome::collect(opts.clone(), &trace, &history, None);
    };
    trace.event(format!("first master {SET_NAME}-{first} epoch {epoch}"));
    for p in 0..opts.producers {
        let node = handle
            .create_node()
            .name(format!("producer-{p}"))
            .ip(client_ip(1 + p as u8))
            .build();
        node.spawn(produce(
            p,
            opts.clone(),
            history.clone(),
            trace.clone(),
            book.clone(),
            set.publications(),
            stop.clone(),
            start,
        ));
        client_ids.push(node.id());
    }
    let consumer = handle
        .create_node()
        .name("consumer")
        .ip(client_ip(100))
        .build();
    consumer.spawn(consume(
        opts.clone(),
        history.clone(),
        trace.clone(),
        book.clone(),
    ));
    client_ids.push(consumer.id());
    world.client_ids = client_ids.clone();

    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0xC7A1);
    // Faults only once sends are acknowledged (the sync state set has grown to
    // minInSyncReplicas), then after a random while.
    for _ in 0..300 {
        if !book.lock().acks.is_empty() {
            break;
        }
        sleep_ms(100).await;
    }
    if book.lock().acks.is_empty() {
        history.fail_liveness("no send acknowledged within 30 s of the first master".into());
    }
    trace.event("acks flowing; faults start");
    sleep_ms(rng.gen_range(0..=opts.fault_phase_ms)).await;
    match opts.scenario {
        Scenario::CtrlMasterKill => master_kill(&world, &mut rng).await,
        Scenario::CtrlPartition => partition(&world, &mut rng).await,
        Scenario::CtrlLeaderLoss => leader_loss(&world, &mut rng).await,
        Scenario::CtrlFlapping => flapping(&world, &mut rng).await,
        Scenario::CtrlOldMasterReturns => old_master_returns(&world, &mut rng).await,
        other => history.violation(format!("{} is not a controller scenario", other.name())),
    }
    trace.event("HEAL: faults off, liveness phase");

    // Liveness: a master again, and an acknowledgement from it.
    let healed_at = world.now();
    let mut live = false;
    for _ in 0..(opts.liveness_ms / 200) {
        let acked_since = book.lock().acks.iter().any(|&(t, _, _)| t > healed_at);
        if acked_since {
            live = true;
            break;
        }
        sleep_ms(200).await;
    }
    if !live {
        history.fail_liveness(format!(
            "no send acknowledged within {} ms of healing (master now {:?})",
            opts.liveness_ms,
            world.master()
        ));
    }
    stop.store(true, Ordering::SeqCst);
    // Quiet: in-flight sends end (3 s timeouts), slaves catch up and truncate.
    sleep_ms(5_000).await;
    final_checks(&world).await;
    for id in client_ids {
        handle.kill(id);
    }
    let failover = failover_ms(&world);
    trace.event("end");
    let _ = cluster;
    Outcome::collect(opts.clone(), &trace, &history, failover)
}

/// Master lost -> first acknowledgement by another broker in a newer epoch.
fn failover_ms(world: &World<'_>) -> Option<u64> {
    let (lost_at, old, old_epoch) = (*world.lost.lock())?;
    let book = world.book.lock();
    let first = book
        .acks
        .iter()
        .find(|&&(t, b, e)| t >= lost_at && b != old && e > old_epoch)?;
    let ms = first.0 - lost_at;
    world.trace.event(format!(
        "failover: {ms} ms from losing {SET_NAME}-{old} to the first SEND_OK from {SET_NAME}-{}",
        first.1
    ));
    Some(ms)
}

/// `ctrl_master_kill`: the master killed during sends, restarted after a while (it must come
/// back as a slave of its successor).
async fn master_kill(world: &World<'_>, rng: &mut StdRng) {
    let Some((m, _)) = world.master() else {
        return;
    };
    world.note_loss(m);
    world.set.kill(m);
    sleep_ms(rng.gen_range(world.opts.down_ms.0..=world.opts.down_ms.1)).await;
    world.set.restart(m);
}

/// `ctrl_partition`: the master cut off from the controllers, from its slaves, or both, for
/// `partition_ms`; clients still reach it.
async fn partition(world: &World<'_>, rng: &mut StdRng) {
    let Some((m, _)) = world.master() else {
        return;
    };
    let master_id = world.set.replicas[m].id;
    let (from_controllers, from_slaves) = match rng.gen_range(0..3) {
        0 => (true, false),
        1 => (false, true),
        _ => (true, true),
    };
    let controllers = world.controllers.ids();
    let slaves = world.broker_ids_except(m);
    world.trace.event(format!(
        "PARTITION {SET_NAME}-{m} from controllers: {from_controllers}, from slaves: {from_slaves}"
    ));
    if from_controllers {
        world.clog_between(master_id, &controllers, true);
        world.note_loss(m);
    }
    if from_slaves {
        world.clog_between(master_id, &slaves, true);
    }
    sleep_ms(world.opts.partition_ms).await;
    world.clog_between(master_id, &controllers, false);
    world.clog_between(master_id, &slaves, false);
    world.trace.event(format!("UNPARTITION {SET_NAME}-{m}"));
}

/// `ctrl_leader_loss`: the controller leader killed (in half the runs the broker master with
/// it), restarted after a while.
async fn leader_loss(world: &World<'_>, rng: &mut StdRng) {
    let leader = world.controllers.leader().await;
    let Some(c) = leader else {
        world
            .history
            .fail_liveness("no controller leader found".into());
        return;
    };
    world.controllers.kill(c);
    let also_master = rng.gen_bool(0.5);
    let master = world.master();
    if let (true, Some((m, _))) = (also_master, master) {
        world.note_loss(m);
        world.set.kill(m);
    }
    sleep_ms(rng.gen_range(world.opts.down_ms.0..=world.opts.down_ms.1)).await;
    world.controllers.restart(c);
    if let (true, Some((m, _))) = (also_master, master) {
        world.set.restart(m);
    }
}

/// `ctrl_flapping`: rounds of clogging random links among brokers and controllers, held
/// briefly, unclogged in another order.
async fn flapping(world: &World<'_>, rng: &mut StdRng) {
    let mut hosts: Vec<(NodeId, String)> = world
        .set
        .replicas
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id, format!("{SET_NAME}-{i}")))
        .collect();
    hosts.extend(
        world
            .controllers
            .ids()
            .into_iter()
            .enumerate()
            .map(|(i, id)| (id, format!("controller-{i}"))),
    );
    let mut links: Vec<(usize, usize)> = (0..hosts.len())
        .flat_map(|a| (0..hosts.len()).map(move |b| (a, b)))
        .filter(|(a, b)| a != b)
        .collect();
    for _ in 0..world.opts.rounds {
        links.shuffle(rng);
        let n = rng.gen_range(1..=links.len().min(6));
        let mut chosen: Vec<(usize, usize)> = links.iter().take(n).copied().collect();
        for &(a, b) in &chosen {
            clog_link(hosts[a].0, hosts[b].0, true);
            world
                .trace
                .event(format!("CLOG {}->{}", hosts[a].1, hosts[b].1));
        }
        sleep_ms(rng.gen_range(300..=world.opts.partition_ms.max(301))).await;
        let shift = rng.gen_range(0..chosen.len());
        chosen.rotate_left(shift);
        for &(a, b) in &chosen {
            clog_link(hosts[a].0, hosts[b].0, false);
            world
                .trace
                .event(format!("UNCLOG {}->{}", hosts[a].1, hosts[b].1));
            sleep_ms(rng.gen_range(0..=200)).await;
        }
        sleep_ms(rng.gen_range(0..=3_000)).await;
    }
}

/// `ctrl_old_master_returns`: the master cut off from controllers and slaves while clients
/// still reach it (it appends sends no slave acknowledges), then killed; once a successor
/// acknowledges, the old master restarts and must truncate its tail and follow.
async fn old_master_returns(world: &World<'_>, rng: &mut StdRng) {
    let Some((m, _)) = world.master() else {
        return;
    };
    let master_id = world.set.replicas[m].id;
    let mut others = world.controllers.ids();
    others.extend(world.broker_ids_except(m));
    world.clog_between(master_id, &others, true);
    world.trace.event(format!(
        "ISOLATE {SET_NAME}-{m} from controllers and slaves (clients still reach it)"
    ));
    world.note_loss(m);
    sleep_ms(rng.gen_range(1_000..=4_000)).await;
    world.set.kill(m);
    world.clog_between(master_id, &others, false);
    // Wait for the successor to acknowledge (bounded), then bring the old master back.
    let lost_at = world.now();
    for _ in 0..300 {
        let acked = world
            .book
            .lock()
            .acks
            .iter()
            .any(|&(t, b, _)| t > lost_at && b != m);
        if acked {
            break;
        }
        sleep_ms(100).await;
    }
    world.set.restart(m);
}

/// After the quiet period: one master; every ack in its log, byte-identical, at its place;
/// every other live replica a prefix of it (retried for a while: a returned old master
/// truncates and catches up asynchronously); every consumer read matches it.
async fn final_checks(world: &World<'_>) {
    let deadline = world.now() + 30_000;
    loop {
        match compare_replicas(world) {
            Ok((m, log)) => return check_master_log(world, m, &log),
            Err(problem) if world.now() >= deadline => {
                return world.history.violation(problem);
            }
            Err(_) => sleep_ms(1_000).await,
        }
    }
}

type Log = Vec<(u64, Slot)>;

/// The one live master and its log, if every other live replica's log is a prefix of it.
fn compare_replicas(world: &World<'_>) -> Result<(usize, Log), String> {
    let masters: Vec<usize> = (0..world.set.replicas.len())
        .filter(|&i| {
            let p = world.set.published(i);
            p.up && p.role.is_some_and(|r| r.is_master())
        })
        .collect();
    let [m] = masters[..] else {
        return Err(format!("after healing, live masters: {masters:?}"));
    };
    let segment_size = world.opts.segment_size;
    let master_log = read_log(&world.set.replicas[m].disk.mem, segment_size);
    for (i, r) in world.set.replicas.iter().enumerate() {
        if i == m || !world.set.published(i).up {
            continue;
        }
        let log = read_log(&r.disk.mem, segment_size);
        if log.len() > master_log.len() {
            return Err(format!(
                "{SET_NAME}-{i} holds {} slots, more than master {SET_NAME}-{m}'s {}",
                log.len(),
                master_log.len()
            ));
        }
        if let Some(((at, _), _)) = log
            .iter()
            .zip(&master_log)
            .find(|((a, x), (b, y))| a != b || x != y)
        {
            return Err(format!(
                "{SET_NAME}-{i} diverges from master {SET_NAME}-{m} at commit-log offset {at}"
            ));
        }
    }
    Ok((m, master_log))
}

/// Every ack in the master's log where it said; every consumer read there too.
fn check_master_log(world: &World<'_>, m: usize, log: &Log) {
    let history = world.history;
    let by_offset: BTreeMap<u64, &store_core::format::record::MessageRecord> = log
        .iter()
        .filter_map(|(at, slot)| match slot {
            Slot::Message { record, .. } => Some((*at, &**record)),
            Slot::Blank(_) => None,
        })
        .collect();
    let mut queues: BTreeMap<(i32, i64), String> = BTreeMap::new();
    for rec in by_offset.values() {
        if &rec.topic[..] == TOPIC.as_bytes() {
            let id = body_id(&rec.body).unwrap_or("?").to_string();
            queues.insert((rec.queue_id, rec.queue_offset), id);
        }
    }
    let acks = history.acks();
    let mut missing = 0;
    for ack in &acks {
        let found = u64::try_from(ack.phys)
            .ok()
            .and_then(|p| by_offset.get(&p).copied());
        let ok = found.is_some_and(|rec| {
            body_id(&rec.body) == Some(ack.id.as_str())
                && rec.queue_id == ack.queue
                && rec.queue_offset == ack.offset
                && history.body(&ack.id).is_some_and(|b| b == rec.body)
        });
        if !ok {
            missing += 1;
            if missing <= 5 {
                history.violation(format!(
                    "acknowledged {} (queue {} offset {} commit-log {}) is not in master {SET_NAME}-{m}'s log as sent",
                    ack.id, ack.queue, ack.offset, ack.phys
                ));
            }
        }
    }
    let reads = world.book.lock().reads.clone();
    for ((queue, offset), id) in &reads {
        if queues.get(&(*queue, *offset)) != Some(id) {
            history.violation(format!(
                "consumer read {id} at queue {queue} offset {offset}, but master {SET_NAME}-{m} holds {:?} there",
                queues.get(&(*queue, *offset))
            ));
        }
    }
    world.trace.event(format!(
        "final: master {SET_NAME}-{m}, {} slots, {} acks checked ({missing} missing), {} reads checked",
        log.len(),
        acks.len(),
        reads.len()
    ));
}

/// A producer: sends to the routed master until `stop`, looking the route up again after
/// every failure; records who acknowledged in which master epoch.
#[allow(clippy::too_many_arguments)]
async fn produce(
    p: usize,
    opts: Options,
    history: History,
    trace: Trace,
    book: Shared<Book>,
    published: Vec<Arc<std::sync::Mutex<crate::ha_cluster::Published>>>,
    stop: Arc<AtomicBool>,
    start: Instant,
) {
    let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_mul(31).wrapping_add(p as u64));
    let mut conns = Connections::default();
    let mut master: Option<usize> = None;
    let mut seq = 0u32;
    while !stop.load(Ordering::SeqCst) {
        if master.is_none() || seq.is_multiple_of(20) {
            master = match route(&mut conns, TOPIC).await {
                Ok(Some(b)) if !b.is_empty() => b.first().copied(),
                _ => match route(&mut conns, "TBW102").await {
                    Ok(Some(b)) => b.first().copied(),
                    _ => None,
                },
            };
        }
        let Some(broker) = master else {
            sleep_ms(200).await;
            continue;
        };
        let queue = rng.gen_range(0..opts.queues);
        let id = format!("p{p}-{seq}");
        seq += 1;
        let len = rng.gen_range(0..opts.body_len_max);
        let mut body = format!("{id}|").into_bytes();
        body.extend((0..len).map(|_| rng.gen_range(b' '..=b'~')));
        match send(&mut conns, &opts, &history, broker, queue, &id, body).await {
            Sent::Acked => {
                let state = published
                    .get(broker)
                    .map(|p| p.lock().unwrap_or_else(|e| e.into_inner()).clone())
                    .unwrap_or_default();
                let now = start.elapsed().as_millis() as u64;
                let Some(epoch) = state.master_epoch else {
                    history.violation(format!(
                        "{id} acknowledged by {SET_NAME}-{broker}, which never was master"
                    ));
                    continue;
                };
                let mut b = book.lock();
                b.acks.push((now, broker, epoch));
                let owner = *b.epoch_owner.entry(epoch).or_insert(broker);
                drop(b);
                if owner != broker {
                    history.violation(format!(
                        "{id} acknowledged by {SET_NAME}-{broker} in master epoch {epoch}, in which {SET_NAME}-{owner} acknowledged too"
                    ));
                }
            }
            Sent::Refused(_) | Sent::Unknown => {
                master = None;
                sleep_ms(100).await;
            }
        }
        sleep_ms(rng.gen_range(0..=opts.send_gap_ms)).await;
    }
    trace.event(format!("producer {p} stopped"));
}

/// The consumer: tails every queue of the routed master with private cursors; every record
/// read must stay where it was read, and no cursor may have to move back.
async fn consume(opts: Options, history: History, trace: Trace, book: Shared<Book>) {
    let mut conns = Connections::default();
    let mut cursors: BTreeMap<i32, i64> = BTreeMap::new();
    loop {
        let master = match route(&mut conns, TOPIC).await {
            Ok(Some(b)) => b.first().copied(),
            _ => None,
        };
        let Some(broker) = master else {
            sleep_ms(200).await;
            continue;
        };
        let mut idle = true;
        for queue in 0..opts.queues {
            let cursor = cursors.entry(queue).or_insert(0);
            match pull(&mut conns, broker, queue, *cursor).await {
                Pulled::Records(records, next) => {
                    idle = false;
                    let mut b = book.lock();
                    for (i, rec) in records.iter().enumerate() {
                        let at = *cursor + i as i64;
                        let id = body_id(&rec.body).unwrap_or("?").to_string();
                        if rec.queue_offset != at || rec.queue_id != queue {
                            history.violation(format!(
                                "{SET_NAME}-{broker} queue {queue}: asked from {cursor}, record {i} has queue {} offset {}",
                                rec.queue_id, rec.queue_offset
                            ));
                        }
                        if history.body(&id).is_none_or(|sent| sent != rec.body) {
                            history.violation(format!(
                                "{id} read from {SET_NAME}-{broker} differs from what was sent"
                            ));
                        }
                        if let Some(before) = b.reads.insert((queue, at), id.clone()) {
                            if before != id {
                                history.violation(format!(
                                    "queue {queue} offset {at}: read {before} earlier, now {id} from {SET_NAME}-{broker}"
                                ));
                            }
                        }
                    }
                    drop(b);
                    *cursor = next.max(*cursor + records.len() as i64);
                }
                Pulled::Moved { next, max } => {
                    if next < *cursor {
                        history.violation(format!(
                            "consumer cursor of queue {queue} moved back from {} to {next} by {SET_NAME}-{broker} (max {max})",
                            *cursor
                        ));
                    }
                    trace.event(format!(
                        "consumer queue {queue}: moved {} -> {next} (max {max}) by {SET_NAME}-{broker}",
                        *cursor
                    ));
                    // Follow the broker (a move back is reported once, not at every poll);
                    // re-reading below the old cursor is checked against the earlier reads.
                    *cursor = next.min(max).max(0);
                }
                Pulled::Empty | Pulled::NoTopic | Pulled::Failed(_) => {}
            }
        }
        if idle {
            sleep_ms(100).await;
        }
    }
}
