//! `delay_timer_crash`: delay-level messages (`DELAY`, levels "1s 2s 3s" in this scenario's
//! broker config) and RocketMQ 5 timer messages (`TIMER_DELAY_SEC`, `TIMER_DELIVER_MS`) sent
//! to their own topic while brokers are killed -9 and restarted under SYNC_FLUSH.
//!
//! Checked on every read of the real topic, while the faults run: the body is byte-identical
//! to what was sent under its id, the producer's properties came through, and the read
//! happens no earlier than the message's due time (the simulated clock at the read against
//! the clock at the send; timer messages may come up to `timerPrecisionMs` early, since the
//! broker rounds the delivery time down to the wheel's precision, as RocketMQ documents; a
//! delay level is due a full level after the broker stored it, so it gets no allowance).
//! Checked after the faults: every acknowledged delayed or timer message is consumed from
//! its real topic within `liveness_ms`. A message consumed twice is counted, not failed:
//! around a crash the schedule may deliver again what it delivered but had not recorded.
//!
//! Left out: ordering between delayed messages (none is promised) and lateness bounds (a
//! benchmark measures those; here a message only has to arrive).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use io_adapters::clock;
use proto_core::ResponseCode;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_core::format::properties::{self, Properties};
use store_core::format::record::MessageRecord;

use super::{crash, Ctx};
use crate::cluster::{broker_addr, sleep_ms};
use crate::history::{body_id, History};
use crate::options::Options;
use crate::trace::Trace;
use crate::workload::{send_v2_request, tail_topic, Connections};

/// The topic delayed and timer messages are sent to.
pub const DELAY_TOPIC: &str = "SimDelayTopic";
/// The delay levels this scenario's brokers run with (`messageDelayLevel=1s 2s 3s`).
pub const DELAY_LEVELS_MS: [u64; 3] = [1_000, 2_000, 3_000];
/// `timerPrecisionMs` of the brokers (the default).
const TIMER_PRECISION_MS: u64 = 1_000;

/// What was sent under one id.
struct Expect {
    body: Bytes,
    /// Simulated time before the send was issued.
    born_ms: u64,
    /// Earliest allowed read time.
    due_ms: u64,
    kind: String,
}

#[derive(Default)]
struct Book {
    sent: BTreeMap<String, Expect>,
    acked: BTreeSet<String>,
    /// Reads per id.
    reads: BTreeMap<String, u32>,
    duplicates: u64,
    unknown: u64,
    refused: u64,
    /// Worst lateness seen (read time minus due time), for the summary.
    max_late_ms: u64,
}

type Shared = super::Shared<Book>;

/// Phase one: delayed producer and consumer running while `crash::kills` kills brokers.
pub async fn delay_timer_crash(ctx: &Ctx<'_>, rng: &mut StdRng) {
    let book = Shared::default();
    let producer = ctx.checker.spawn(produce_delayed(
        ctx.opts.clone(),
        book.clone(),
        ctx.trace.clone(),
    ));
    let consumer = ctx.checker.spawn(consume_delayed(
        ctx.opts.clone(),
        book.clone(),
        ctx.history.clone(),
    ));
    crash::kills(ctx, rng).await;
    if let Err(e) = producer.await {
        ctx.history
            .fail_liveness(format!("delayed producer task failed: {e}"));
    }
    // Faults are healed: every ack must now be consumed.
    let start = clock::now_ms();
    loop {
        let missing: Vec<String> = {
            let b = book.lock();
            b.acked
                .iter()
                .filter(|id| !b.reads.contains_key(*id))
                .cloned()
                .collect()
        };
        if missing.is_empty() {
            break;
        }
        if clock::now_ms() >= start + ctx.opts.liveness_ms {
            let first: Vec<&String> = missing.iter().take(5).collect();
            ctx.history.fail_liveness(format!(
                "{} acked delayed/timer messages not consumed from {DELAY_TOPIC} within {} ms of healing (first {first:?})",
                missing.len(),
                ctx.opts.liveness_ms
            ));
            break;
        }
        sleep_ms(500).await;
    }
    consumer.abort();
    let b = book.lock();
    ctx.trace.event(format!(
        "delayed: sent {} acked {} refused {} unknown {} consumed {} duplicates {} max lateness {} ms",
        b.sent.len(),
        b.acked.len(),
        b.refused,
        b.unknown,
        b.reads.len(),
        b.duplicates,
        b.max_late_ms
    ));
}

/// Sends delayed and timer messages over the fault phase, each to a random broker.
async fn produce_delayed(opts: Options, book: Shared, trace: Trace) {
    let mut rng = StdRng::seed_from_u64(opts.seed ^ 0xDE1A);
    let mut conns = Connections::default();
    let n: u64 = rng.gen_range(20..=60);
    let gap = (2 * opts.fault_phase_ms / n).max(1);
    for seq in 0..n {
        let id = format!("d-{seq}");
        let broker = rng.gen_range(0..opts.brokers);
        let queue = rng.gen_range(0..opts.queues);
        let born_ms = clock::now_ms();
        let mut props = format!("KEYS\u{1}{id}\u{2}TAGS\u{1}sim\u{2}WAIT\u{1}true\u{2}");
        let (kind, due_ms) = match rng.gen_range(0..3) {
            0 => {
                let level = rng.gen_range(1..=DELAY_LEVELS_MS.len());
                props.push_str(&format!("{}\u{1}{level}\u{2}", properties::DELAY));
                (
                    format!("level {level}"),
                    born_ms + DELAY_LEVELS_MS[level - 1],
                )
            }
            1 => {
                let secs = rng.gen_range(1..=5u64);
                props.push_str(&format!("{}\u{1}{secs}\u{2}", properties::TIMER_DELAY_SEC));
                (
                    format!("timer {secs} s"),
                    born_ms + secs * 1000 - TIMER_PRECISION_MS,
                )
            }
            _ => {
                let at = born_ms + rng.gen_range(1_500..=6_000);
                props.push_str(&format!("{}\u{1}{at}\u{2}", properties::TIMER_DELIVER_MS));
                (format!("timer at {at}"), at - TIMER_PRECISION_MS)
            }
        };
        let len = rng.gen_range(0..opts.body_len_max);
        let mut body = format!("{id}|").into_bytes();
        body.extend((0..len).map(|_| rng.gen_range(b' '..=b'~')));
        let body = Bytes::from(body);
        book.lock().sent.insert(
            id.clone(),
            Expect {
                body: body.clone(),
                born_ms,
                due_ms,
                kind: kind.clone(),
            },
        );
        let cmd = send_v2_request(
            "sim_delay_pg",
            DELAY_TOPIC,
            opts.queues,
            queue,
            0,
            born_ms,
            &props,
        )
        .with_body(body);
        match conns.invoke(&broker_addr(broker), cmd).await {
            Ok(resp) if resp.code == ResponseCode::Success.value() => {
                trace.event(format!("delayed ack {id} ({kind}) broker={broker}"));
                book.lock().acked.insert(id);
            }
            Ok(resp) => {
                trace.event(format!(
                    "delayed refused {id} code={} {:?}",
                    resp.code, resp.remark
                ));
                book.lock().refused += 1;
            }
            Err(e) => {
                trace.event(format!("delayed unknown {id}: {e}"));
                book.lock().unknown += 1;
                sleep_ms(100).await;
            }
        }
        sleep_ms(rng.gen_range(0..=gap)).await;
    }
    trace.event("delayed producer done");
}

/// Reads every queue of the delayed topic on every broker, checking each record.
async fn consume_delayed(opts: Options, book: Shared, history: History) {
    tail_topic(
        &opts,
        DELAY_TOPIC,
        |broker, queue, _from, records| {
            for rec in records {
                check_read(&book, &history, broker, queue, rec);
            }
        },
        |broker, queue, cursor, next, max| {
            // A delivery written but not synced before a kill is gone; the schedule delivers
            // it again at the same place.
            history.note(format!(
                "delayed topic broker={broker} queue={queue}: moved from {cursor} to {next} (max {max})"
            ));
        },
    )
    .await;
}

fn check_read(book: &Shared, history: &History, broker: usize, queue: i32, rec: &MessageRecord) {
    let now = clock::now_ms();
    let at = format!("broker {broker} queue {queue} offset {}", rec.queue_offset);
    let Some(id) = body_id(&rec.body).map(str::to_string) else {
        history.violation(format!("{DELAY_TOPIC} {at}: body without an id"));
        return;
    };
    let mut b = book.lock();
    let Some(expect) = b.sent.get(&id) else {
        history.violation(format!("{DELAY_TOPIC} {at}: {id} was never sent"));
        return;
    };
    if rec.body != expect.body {
        history.violation(format!(
            "{DELAY_TOPIC} {at}: {id} body differs from what was sent"
        ));
    }
    if &rec.topic[..] != DELAY_TOPIC.as_bytes() {
        history.violation(format!("{at}: {id} read on topic {:?}", rec.topic));
    }
    let props = Properties::parse_bytes(&rec.properties);
    if props.get(properties::KEYS) != Some(id.as_str()) || props.get("TAGS") != Some("sim") {
        history.violation(format!(
            "{DELAY_TOPIC} {at}: {id} lost its properties: {props:?}"
        ));
    }
    if now < expect.due_ms {
        history.violation(format!(
            "{DELAY_TOPIC} {at}: {id} ({}) read at {now}, sent at {}, due no earlier than {}",
            expect.kind, expect.born_ms, expect.due_ms
        ));
    }
    let late = now.saturating_sub(expect.due_ms);
    b.max_late_ms = b.max_late_ms.max(late);
    let n = b.reads.entry(id.clone()).or_insert(0);
    *n += 1;
    if *n > 1 {
        b.duplicates += 1;
        history.note(format!("delayed duplicate {id} at {at}"));
    }
}
