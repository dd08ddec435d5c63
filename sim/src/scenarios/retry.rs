//! `retry_dlq_crash`: a consumer (group `sim_retry_cg`) fails every message it reads and
//! hands it back with CONSUMER_SEND_MSG_BACK (delay level 1–3 of this scenario's "1s 2s 3s",
//! `maxReconsumeTimes` 2), reading `%RETRY%<group>` as well as the original topic, so each
//! message climbs the retry ladder until the broker puts it in `%DLQ%<group>`. The consumer
//! host is killed and restarted (its read positions, like committed offsets, are advanced
//! only after the send-back was answered) while brokers are killed -9 and restarted
//! (SYNC_FLUSH).
//!
//! Checked on every read of the retry and DLQ topics: the body is the one sent under its id,
//! `RETRY_TOPIC` names the original topic, the producer's properties came through. Checked
//! after the faults: every acknowledged message reaches the DLQ (nothing lost between the
//! original topic, the retry topic and the DLQ). Copies made twice (a send-back repeated
//! after a crash before its answer) are counted, not failed.
//!
//! Left out: the broker-chosen ladder (`delayLevel` 0, 10 s and up) and consumer groups'
//! rebalancing (one member here).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use madsim::runtime::Handle;
use proto_core::{RequestCode, ResponseCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_core::format::properties::{self, Properties};
use store_core::format::record::MessageRecord;

use super::{crash, Ctx};
use crate::cluster::{broker_addr, sleep_ms};
use crate::history::{body_id, History};
use crate::options::Options;
use crate::trace::Trace;
use crate::workload::{moved_cursor, pull_topic, request, send_v2_request, Connections, Pulled};

const RETRY_SRC_TOPIC: &str = "SimRetrySrcTopic";
const GROUP: &str = "sim_retry_cg";
const RETRY_TOPIC: &str = "%RETRY%sim_retry_cg";
const DLQ_TOPIC: &str = "%DLQ%sim_retry_cg";
const MAX_RECONSUME: i32 = 2;

#[derive(Default)]
struct Book {
    bodies: BTreeMap<String, Bytes>,
    acked: BTreeSet<String>,
    /// Copies read in the DLQ per id.
    in_dlq: BTreeMap<String, u32>,
    /// The consumer's positions (its committed offsets), kept across its restarts.
    cursors: BTreeMap<(usize, String, i32), i64>,
    send_backs: u64,
    dlq_duplicates: u64,
}

type Shared = super::Shared<Book>;

pub async fn retry_dlq_crash(ctx: &Ctx<'_>, rng: &mut StdRng) {
    let book = Shared::default();
    let producer = ctx
        .checker
        .spawn(produce(ctx.opts.clone(), book.clone(), ctx.trace.clone()));
    let (opts, cbook, history, trace) = (
        ctx.opts.clone(),
        book.clone(),
        ctx.history.clone(),
        ctx.trace.clone(),
    );
    let consumer = Handle::current()
        .create_node()
        .name("retry-consumer")
        .ip(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 2, 60)))
        .init(move || consume(opts.clone(), cbook.clone(), history.clone(), trace.clone()))
        .build();
    let consumer_kills = rng.gen_range(1..=3u32);
    let slot = ctx.opts.fault_phase_ms / u64::from(consumer_kills);
    let kill_task = {
        let id = consumer.id();
        let trace = ctx.trace.clone();
        let mut krng = StdRng::seed_from_u64(ctx.opts.seed ^ 0xC0DE);
        ctx.checker.spawn(async move {
            for _ in 0..consumer_kills {
                sleep_ms(krng.gen_range(0..slot.max(1))).await;
                trace.event("KILL retry-consumer");
                Handle::current().kill(id);
                sleep_ms(krng.gen_range(100..=2_000)).await;
                trace.event("RESTART retry-consumer");
                Handle::current().restart(id);
            }
        })
    };
    crash::kills(ctx, rng).await;
    for (what, task) in [("producer", producer), ("consumer kill", kill_task)] {
        if let Err(e) = task.await {
            ctx.history
                .fail_liveness(format!("retry {what} task failed: {e}"));
        }
    }
    let start = io_adapters::clock::now_ms();
    loop {
        let missing: Vec<String> = {
            let b = book.lock();
            b.acked
                .iter()
                .filter(|id| !b.in_dlq.contains_key(*id))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        if io_adapters::clock::now_ms() >= start + ctx.opts.liveness_ms {
            let first: Vec<&String> = missing.iter().take(5).collect();
            ctx.history.fail_liveness(format!(
                "{} acked messages never reached {DLQ_TOPIC} within {} ms of healing (first {first:?})",
                missing.len(),
                ctx.opts.liveness_ms
            ));
            break;
        }
        sleep_ms(500).await;
    }
    Handle::current().kill(consumer.id());
    let b = book.lock();
    ctx.trace.event(format!(
        "retry: sent {} acked {} in DLQ {} send-backs {} DLQ duplicates {}",
        b.bodies.len(),
        b.acked.len(),
        b.in_dlq.len(),
        b.send_backs,
        b.dlq_duplicates
    ));
}

async fn produce(opts: Options, book: Shared, trace: Trace) {
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x2E72);
    let mut conns = Connections::default();
    let n: u64 = rng.gen_range(15..=40);
    let gap = (2 * opts.fault_phase_ms / n).max(1);
    for seq in 0..n {
        let id = format!("r-{seq}");
        let broker = rng.gen_range(0..opts.brokers);
        let queue = rng.gen_range(0..opts.queues);
        let len = rng.gen_range(0..opts.body_len_max);
        let mut body = format!("{id}|").into_bytes();
        body.extend((0..len).map(|_| rng.gen_range(b' '..=b'~')));
        let body = Bytes::from(body);
        book.lock().bodies.insert(id.clone(), body.clone());
        let props = format!("KEYS\u{1}{id}\u{2}TAGS\u{1}sim\u{2}WAIT\u{1}true\u{2}");
        let cmd = send_v2_request(
            "sim_retry_pg",
            RETRY_SRC_TOPIC,
            opts.queues,
            queue,
            0,
            io_adapters::clock::now_ms(),
            &props,
        )
        .with_body(body);
        match conns.invoke(&broker_addr(broker), cmd).await {
            Ok(r) if r.code == ResponseCode::Success.value() => {
                trace.event(format!("retry ack {id} broker={broker}"));
                book.lock().acked.insert(id);
            }
            Ok(r) => trace.event(format!("retry refused {id} {} {:?}", r.code, r.remark)),
            Err(e) => {
                trace.event(format!("retry unknown {id}: {e}"));
                sleep_ms(100).await;
            }
        }
        sleep_ms(rng.gen_range(0..=gap)).await;
    }
}

/// One consumer incarnation: reads the original topic and the retry topic, sends every
/// message back; reads the DLQ and checks it.
async fn consume(opts: Options, book: Shared, history: History, trace: Trace) {
    trace.event("retry-consumer up");
    let mut conns = Connections::default();
    let mut rng = StdRng::seed_from_u64(opts.seed ^ io_adapters::clock::now_ms());
    let mut places: Vec<(usize, &str, i32)> = Vec::new();
    for b in 0..opts.brokers {
        places.extend((0..opts.queues).map(|q| (b, RETRY_SRC_TOPIC, q)));
        places.push((b, RETRY_TOPIC, 0));
        places.push((b, DLQ_TOPIC, 0));
    }
    loop {
        let mut idle = true;
        for &(broker, topic, queue) in &places {
            let key = (broker, topic.to_string(), queue);
            let cursor = book.lock().cursors.get(&key).copied().unwrap_or(0);
            match pull_topic(&mut conns, topic, broker, queue, cursor).await {
                Pulled::Records(records, next) => {
                    idle = false;
                    let mut done = cursor;
                    for rec in &records {
                        if topic == DLQ_TOPIC {
                            check_dlq(&book, &history, broker, rec);
                        } else {
                            check_body(&book, &history, topic, rec);
                            if !send_back(&mut conns, broker, rec, &mut rng, &trace).await {
                                break;
                            }
                            book.lock().send_backs += 1;
                        }
                        done = rec.queue_offset + 1;
                        // Advanced per message, as a consumer commits what it handled.
                        book.lock().cursors.insert(key.clone(), done);
                    }
                    if done == cursor + records.len() as i64 {
                        done = next.max(done);
                    }
                    book.lock().cursors.insert(key, done);
                }
                Pulled::Moved { next, max } => {
                    book.lock().cursors.insert(key, moved_cursor(next, max));
                }
                Pulled::Empty | Pulled::NoTopic | Pulled::Failed(_) => {}
            }
        }
        if idle {
            sleep_ms(50).await;
        }
    }
}

/// CONSUMER_SEND_MSG_BACK of `rec` to the broker it came from; true when answered SUCCESS.
async fn send_back(
    conns: &mut Connections,
    broker: usize,
    rec: &MessageRecord,
    rng: &mut StdRng,
    trace: &Trace,
) -> bool {
    let props = Properties::parse_bytes(&rec.properties);
    let origin_topic = props
        .get(properties::RETRY_TOPIC)
        .unwrap_or(RETRY_SRC_TOPIC)
        .to_string();
    let cmd = request(
        RequestCode::ConsumerSendMsgBack,
        &[
            ("offset", &rec.physical_offset.to_string()),
            ("group", GROUP),
            ("delayLevel", &rng.gen_range(1..=3).to_string()),
            ("originTopic", &origin_topic),
            ("unitMode", "false"),
            ("maxReconsumeTimes", &MAX_RECONSUME.to_string()),
        ],
    );
    match conns.invoke(&broker_addr(broker), cmd).await {
        Ok(r) if r.code == ResponseCode::Success.value() => true,
        Ok(r) => {
            trace.event(format!("send-back answered {} {:?}", r.code, r.remark));
            false
        }
        Err(e) => {
            trace.event(format!("send-back unknown: {e}"));
            false
        }
    }
}

fn check_body(
    book: &Shared,
    history: &History,
    topic: &str,
    rec: &MessageRecord,
) -> Option<String> {
    let at = format!("{topic} offset {}", rec.queue_offset);
    let Some(id) = body_id(&rec.body).map(str::to_string) else {
        history.violation(format!("{at}: body without an id"));
        return None;
    };
    let b = book.lock();
    match b.bodies.get(&id) {
        None => history.violation(format!("{at}: {id} was never sent")),
        Some(body) if *body != rec.body => {
            history.violation(format!("{at}: {id} body differs from what was sent"));
        }
        Some(_) => {}
    }
    let props = Properties::parse_bytes(&rec.properties);
    if props.get(properties::KEYS) != Some(id.as_str()) || props.get("TAGS") != Some("sim") {
        history.violation(format!("{at}: {id} lost its properties: {props:?}"));
    }
    if topic != RETRY_SRC_TOPIC && props.get(properties::RETRY_TOPIC) != Some(RETRY_SRC_TOPIC) {
        history.violation(format!(
            "{at}: {id} has RETRY_TOPIC {:?}",
            props.get(properties::RETRY_TOPIC)
        ));
    }
    Some(id)
}

fn check_dlq(book: &Shared, history: &History, broker: usize, rec: &MessageRecord) {
    let Some(id) = check_body(book, history, DLQ_TOPIC, rec) else {
        return;
    };
    if rec.reconsume_times < MAX_RECONSUME {
        history.violation(format!(
            "{DLQ_TOPIC} broker {broker}: {id} reached the DLQ after {} reconsumes (max {MAX_RECONSUME})",
            rec.reconsume_times
        ));
    }
    let mut b = book.lock();
    let n = b.in_dlq.entry(id).or_insert(0);
    *n += 1;
    if *n > 1 {
        b.dlq_duplicates += 1;
    }
}
