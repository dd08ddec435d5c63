//! Consumer group membership churn: members (the production `GroupConsumer`, one host each)
//! join, crash (kill -9: no commit, no goodbye) and leave (commit, close) while producers
//! send; the group rebalances through the broker's member list and its change notices.
//!
//! Checked (see `history.rs`): at-least-once for every surviving ack, over what members read;
//! no redelivery to the same member within one ownership of a queue; duplicates counted and
//! reported; and the group's committed offsets, polled from every broker by a watcher host,
//! never go backwards (nothing here resets them). The harness's own consumer does not run, so
//! the members must read everything. At least one member is alive after the churn.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use io_adapters::consumer::GroupConsumer;
use madsim::runtime::{Handle, NodeHandle};
use madsim::time::Instant;
use proto_core::body::{ConsumeFromWhere, MessageQueue};
use proto_core::client::{parse_query_consumer_offset, query_consumer_offset_request};
use rand::rngs::StdRng;
use rand::Rng;

use super::Ctx;
use crate::cluster::{broker_addr, broker_name, namesrv_addr, sleep_ms};
use crate::history::{History, TOPIC};
use crate::options::Options;
use crate::trace::Trace;
use crate::workload::Connections;

/// The group under test.
pub const GROUP: &str = "sim_churn_cg";

/// Most members alive at once.
const MAX_MEMBERS: usize = 4;

struct Member {
    node: NodeHandle,
    stop: Arc<AtomicBool>,
    name: String,
}

pub async fn churn(ctx: &Ctx<'_>, rng: &mut StdRng) {
    let Some((initial, events)) = ctx.opts.churn else {
        return;
    };
    let handle = Handle::current();
    let watcher = handle
        .create_node()
        .name("offset-watcher")
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 250)))
        .build();
    watcher.spawn(watch_offsets(ctx.opts.clone(), ctx.history.clone()));
    let mut started = 0usize;
    let mut members: Vec<Member> = Vec::new();
    for _ in 0..initial {
        members.push(start_member(ctx, &mut started));
    }
    let slot = ctx.opts.fault_phase_ms / u64::from(events.max(1));
    for _ in 0..events {
        sleep_ms(rng.gen_range(0..slot.max(1))).await;
        let action = if members.is_empty() {
            0
        } else if members.len() >= MAX_MEMBERS {
            rng.gen_range(1..3)
        } else {
            rng.gen_range(0..3)
        };
        match action {
            0 => members.push(start_member(ctx, &mut started)),
            1 => {
                let m = members.swap_remove(rng.gen_range(0..members.len()));
                ctx.trace.event(format!("CRASH member {}", m.name));
                handle.kill(m.node.id());
            }
            _ => {
                let m = members.swap_remove(rng.gen_range(0..members.len()));
                ctx.trace.event(format!("LEAVE member {}", m.name));
                m.stop.store(true, Ordering::SeqCst);
            }
        }
    }
    if members.is_empty() {
        members.push(start_member(ctx, &mut started));
    }
    ctx.trace.event(format!(
        "churn done: {} members stay: {:?}",
        members.len(),
        members.iter().map(|m| m.name.as_str()).collect::<Vec<_>>()
    ));
}

fn start_member(ctx: &Ctx<'_>, started: &mut usize) -> Member {
    let k = *started;
    *started += 1;
    let name = format!("m{k}");
    let node = Handle::current()
        .create_node()
        .name(format!("member-{k}"))
        .ip(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1 + (k % 200) as u8)))
        .build();
    let stop = Arc::new(AtomicBool::new(false));
    ctx.trace.event(format!("JOIN member {name}"));
    node.spawn(member(
        name.clone(),
        ctx.history.clone(),
        ctx.trace.clone(),
        stop.clone(),
    ));
    Member { node, stop, name }
}

fn broker_index(mq: &MessageQueue) -> Option<usize> {
    (0..8).find(|i| broker_name(*i) == mq.broker_name)
}

/// One member: join, then poll, heartbeat every 5 s and rebalance every 10 s until told to
/// leave (commit, then drop the connections) or killed.
async fn member(name: String, history: History, trace: Trace, stop: Arc<AtomicBool>) {
    let mut consumer = loop {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match GroupConsumer::start(
            &namesrv_addr(),
            GROUP,
            TOPIC,
            "*",
            ConsumeFromWhere::ConsumeFromFirstOffset,
        )
        .await
        {
            Ok(c) => break c,
            Err(e) => {
                trace.event(format!("member {name}: start failed: {e}"));
                sleep_ms(1_000).await;
            }
        }
    };
    // The id without its host and pid part: the pid differs between processes, and the trace
    // must not.
    let id = consumer.client_id();
    trace.event(format!(
        "member {name} is client …#{}",
        id.rsplit('#').next().unwrap_or(id)
    ));
    let mut owned = Ownerships::default();
    let mut last_beat = Instant::now();
    let mut last_rebalance = Instant::now();
    loop {
        if stop.load(Ordering::SeqCst) {
            let committed = consumer.commit().await;
            trace.event(format!("member {name} leaves (commit: {committed:?})"));
            return;
        }
        owned.track(consumer.assigned());
        if consumer.assigned().is_empty() {
            // Nothing to pull: poll would return at once, and simulated time must move.
            sleep_ms(500).await;
        }
        match consumer.poll(Duration::from_millis(1_000)).await {
            Ok(messages) => {
                let mut batches: BTreeMap<MessageQueue, Vec<_>> = BTreeMap::new();
                for (mq, rec) in messages {
                    batches.entry(mq).or_default().push(rec);
                }
                for (mq, records) in batches {
                    let Some(b) = broker_index(&mq) else { continue };
                    let ownership = owned.of(&mq);
                    history.group_read(&name, ownership, b, mq.queue_id, &records);
                }
            }
            Err(e) => {
                trace.event(format!("member {name}: poll failed: {e}"));
                sleep_ms(500).await;
            }
        }
        if last_beat.elapsed() >= Duration::from_secs(5) {
            last_beat = Instant::now();
            if let Err(e) = consumer.heartbeat().await {
                trace.event(format!("member {name}: heartbeat failed: {e}"));
            }
            if let Err(e) = consumer.commit().await {
                trace.event(format!("member {name}: commit failed: {e}"));
            }
        }
        if last_rebalance.elapsed() >= Duration::from_secs(10) {
            last_rebalance = Instant::now();
            match consumer.rebalance().await {
                Ok(()) => owned.track(consumer.assigned()),
                Err(e) => trace.event(format!("member {name}: rebalance failed: {e}")),
            }
        }
    }
}

/// Ownership numbers of a member's queues: a queue (re)acquired gets a new one.
#[derive(Default)]
struct Ownerships {
    owned: BTreeMap<MessageQueue, u64>,
    next: u64,
}

impl Ownerships {
    /// The member now owns exactly `assigned`.
    fn track(&mut self, assigned: Vec<MessageQueue>) {
        self.owned.retain(|mq, _| assigned.contains(mq));
        for mq in assigned {
            self.of(&mq);
        }
    }

    fn of(&mut self, mq: &MessageQueue) -> u64 {
        if let Some(&n) = self.owned.get(mq) {
            return n;
        }
        self.next += 1;
        self.owned.insert(mq.clone(), self.next);
        self.next
    }
}

/// Polls the group's committed offset of every queue of every broker, forever.
async fn watch_offsets(opts: Options, history: History) {
    let mut conns = Connections::default();
    loop {
        for b in 0..opts.brokers {
            for queue_id in 0..opts.queues {
                let mq = MessageQueue {
                    broker_name: broker_name(b),
                    queue_id,
                    topic: TOPIC.to_string(),
                };
                let Ok(resp) = conns
                    .invoke(&broker_addr(b), query_consumer_offset_request(GROUP, &mq))
                    .await
                else {
                    continue;
                };
                if let Ok(Some(offset)) = parse_query_consumer_offset(&resp) {
                    history.group_offset(b, queue_id, offset);
                }
            }
        }
        sleep_ms(300).await;
    }
}
