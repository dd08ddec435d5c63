//! `transaction_crash`: transactional producers (group `sim_tx_pg`) send half messages, then
//! commit, roll back, or vanish before sending their decision; brokers are killed -9 and
//! restarted (SYNC_FLUSH) and the producer host itself is killed and restarted. The producer
//! records each transaction's decision before its half is sent (its "local transaction
//! table", kept across its restarts), and every incarnation answers CHECK_TRANSACTION_STATE
//! back-checks with the recorded decision, as an application's `checkLocalTransaction` does.
//!
//! Checked on every read of the transaction topic while the faults run: no rolled-back
//! transaction is ever visible; a committed one arrives byte-identical with its properties;
//! no transaction is visible at two places of the log at once (a double commit). Checked
//! after the faults, over full scans: every acknowledged half whose decision was commit is in
//! the topic exactly once (the back-check resolves those whose producer vanished), nothing
//! rolled back is there, and nothing is there twice.
//!
//! Left out: transactions discarded after `transactionCheckMax` (the producer always answers
//! here, so none should be) and the trace of discarded halves.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use madsim::runtime::Handle;
use proto_core::{RemotingCommand, RequestCode, ResponseCode};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_core::format::msg_id::decode_offset_msg_id;
use store_core::format::properties::{self, Properties};
use store_core::format::record::MessageRecord;
use store_core::format::sys_flag::{
    TRANSACTION_COMMIT_TYPE, TRANSACTION_PREPARED_TYPE, TRANSACTION_ROLLBACK_TYPE,
};

use super::{crash, Ctx};
use crate::cluster::{broker_addr, sleep_ms};
use crate::history::{body_id, History};
use crate::options::Options;
use crate::trace::Trace;
use crate::workload::{
    moved_cursor, pull_topic, request, send_v2_request, tail_topic, Connections, Pulled,
};

/// The topic transactional messages are sent to.
pub const TX_TOPIC: &str = "SimTxTopic";
const TX_GROUP: &str = "sim_tx_pg";
const RPC_TIMEOUT: Duration = Duration::from_secs(3);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Decision {
    Commit,
    Rollback,
}

struct Tx {
    body: Bytes,
    decision: Decision,
}

#[derive(Default)]
struct Book {
    /// The producer's local transaction table: every transaction whose half was sent.
    txs: BTreeMap<String, Tx>,
    /// Halves the broker acknowledged.
    acked: BTreeSet<String>,
    /// The next transaction number (kept across producer restarts).
    next_seq: u64,
    /// Where each id is visible now: (broker, queue, offset).
    seen_at: BTreeMap<String, BTreeSet<(usize, i32, i64)>>,
    ended: u64,
    vanished: u64,
    /// The producer vanished right after a half's ack: its host is to be killed now.
    crash_requested: bool,
    /// The scenario is done with producer kills.
    stop_kills: bool,
    /// An incarnation finished every transaction (and now only answers checks).
    producer_done: bool,
    checks_answered: u64,
}

type Shared = super::Shared<Book>;

/// Phase one: the transactional producer and a consumer run while brokers and the producer
/// host are killed and restarted; then the final checks.
pub async fn transaction_crash(ctx: &Ctx<'_>, rng: &mut StdRng) {
    let book = Shared::default();
    let total: u64 = rng.gen_range(20..=60);
    let (opts, trace) = (ctx.opts.clone(), ctx.trace.clone());
    let producer_book = book.clone();
    let producer = Handle::current()
        .create_node()
        .name("tx-producer")
        .ip(std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 2, 50)))
        .init(move || {
            produce_transactions(opts.clone(), producer_book.clone(), trace.clone(), total)
        })
        .build();
    let consumer = ctx.checker.spawn(consume_transactions(
        ctx.opts.clone(),
        book.clone(),
        ctx.history.clone(),
    ));
    // Producer host kills: when the producer vanishes after a half (it asks for it), and
    // at random times of the fault phase.
    let producer_kills = rng.gen_range(0..=2u32);
    let kill_task = {
        let id = producer.id();
        let trace = ctx.trace.clone();
        let book = book.clone();
        let mut prng = StdRng::seed_from_u64(ctx.opts.seed ^ 0x7E57);
        let mut random_kills: Vec<u64> = (0..producer_kills)
            .map(|_| prng.gen_range(0..ctx.opts.fault_phase_ms.max(1)))
            .collect();
        random_kills.sort_unstable();
        let started = io_adapters::clock::now_ms();
        ctx.checker.spawn(async move {
            loop {
                let (asked, stop) = {
                    let b = book.lock();
                    (b.crash_requested, b.stop_kills)
                };
                if stop {
                    return;
                }
                let due = random_kills
                    .first()
                    .is_some_and(|&t| io_adapters::clock::now_ms() >= started + t);
                if asked || due {
                    if due {
                        random_kills.remove(0);
                    }
                    trace.event(format!(
                        "KILL tx-producer ({})",
                        if asked {
                            "vanished after a half"
                        } else {
                            "random"
                        }
                    ));
                    Handle::current().kill(id);
                    sleep_ms(prng.gen_range(100..=2_000)).await;
                    book.lock().crash_requested = false;
                    trace.event("RESTART tx-producer");
                    Handle::current().restart(id);
                }
                sleep_ms(50).await;
            }
        })
    };
    crash::kills(ctx, rng).await;
    let start = io_adapters::clock::now_ms();
    // Wait for the producer to finish (its restarts resume from the recorded sequence).
    while {
        // Not `next_seq`: the last transaction may still vanish and need its kill.
        !book.lock().producer_done
    } {
        if io_adapters::clock::now_ms() >= start + ctx.opts.liveness_ms {
            ctx.history
                .fail_liveness("the transactional producer never finished".into());
            break;
        }
        sleep_ms(500).await;
    }
    book.lock().stop_kills = true;
    if let Err(e) = kill_task.await {
        ctx.history
            .fail_liveness(format!("producer kill task failed: {e}"));
    }
    // Final: full scans (from a client host) until every committed ack is there exactly
    // once, or the deadline.
    let (opts, final_book, history) = (ctx.opts.clone(), book.clone(), ctx.history.clone());
    let finals = ctx.checker.spawn(async move {
        loop {
            match final_check(&opts, &final_book, &history).await {
                Ok(()) => break,
                Err(why) if io_adapters::clock::now_ms() >= start + opts.liveness_ms => {
                    // For the report: which producer channels each broker would check.
                    let mut conns = Connections::default();
                    for broker in 0..opts.brokers {
                        let ask = request(
                            RequestCode::GetProducerConnectionList,
                            &[("producerGroup", TX_GROUP)],
                        );
                        let listed = conns
                            .invoke(&broker_addr(broker), ask)
                            .await
                            .map(|r| format!("{} {}", r.code, String::from_utf8_lossy(&r.body)));
                        history.note(format!("broker {broker} producer channels: {listed:?}"));
                    }
                    history.fail_liveness(format!(
                        "transactions not resolved within {} ms of healing: {why}",
                        opts.liveness_ms
                    ));
                    break;
                }
                Err(_) => sleep_ms(1_000).await,
            }
        }
    });
    if let Err(e) = finals.await {
        ctx.history
            .fail_liveness(format!("transaction final check failed: {e}"));
    }
    consumer.abort();
    Handle::current().kill(producer.id());
    let b = book.lock();
    ctx.trace.event(format!(
        "transactions: sent {} acked {} committed {} rolled back {} ended by the producer {} vanished before deciding {} checks answered {}",
        b.txs.len(),
        b.acked.len(),
        b.txs.values().filter(|t| t.decision == Decision::Commit).count(),
        b.txs.values().filter(|t| t.decision == Decision::Rollback).count(),
        b.ended,
        b.vanished,
        b.checks_answered
    ));
}

/// Scans the transaction topic on every broker: rolled-back or doubled ids are violations at
/// once; a missing committed ack is an error (the caller retries until its deadline).
async fn final_check(opts: &Options, book: &Shared, history: &History) -> Result<(), String> {
    let mut conns = Connections::default();
    let mut found: BTreeMap<String, u32> = BTreeMap::new();
    for broker in 0..opts.brokers {
        for queue in 0..opts.queues {
            let mut at = 0i64;
            loop {
                match pull_topic(&mut conns, TX_TOPIC, broker, queue, at).await {
                    Pulled::Records(records, _) if !records.is_empty() => {
                        for rec in &records {
                            if let Some(id) = body_id(&rec.body) {
                                *found.entry(id.to_string()).or_insert(0) += 1;
                            }
                        }
                        at += records.len() as i64;
                    }
                    Pulled::Records(..) | Pulled::Empty | Pulled::NoTopic => break,
                    Pulled::Moved { max, .. } if max <= at => break,
                    Pulled::Moved { next, max } => {
                        return Err(format!(
                            "scan broker={broker} queue={queue} at {at}: moved to {next}, max {max}"
                        ))
                    }
                    Pulled::Failed(e) => {
                        return Err(format!("scan broker={broker} queue={queue}: {e}"))
                    }
                }
            }
        }
    }
    let b = book.lock();
    for (id, n) in &found {
        match b.txs.get(id).map(|t| t.decision) {
            Some(Decision::Rollback) => {
                history.violation(format!(
                    "final scan: rolled-back transaction {id} is visible"
                ));
            }
            None => history.violation(format!("final scan: {id} was never sent")),
            Some(Decision::Commit) if *n > 1 => {
                history.violation(format!("final scan: {id} committed {n} times"));
            }
            Some(Decision::Commit) => {}
        }
    }
    let missing: Vec<&String> = b
        .acked
        .iter()
        .filter(|id| {
            b.txs.get(*id).map(|t| t.decision) == Some(Decision::Commit) && !found.contains_key(*id)
        })
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} committed acked transactions missing (first {:?})",
            missing.len(),
            missing.iter().take(5).collect::<Vec<_>>()
        ))
    }
}

/// The producer's connections; each new one registers the group with a heartbeat and gets a
/// task answering the broker's back-checks from the book.
#[derive(Default)]
struct TxConns {
    conns: BTreeMap<usize, Arc<RemotingClient>>,
    incarnation: u64,
}

impl TxConns {
    async fn get(
        &mut self,
        broker: usize,
        book: &Shared,
        trace: &Trace,
    ) -> Result<Arc<RemotingClient>, String> {
        if let Some(c) = self.conns.get(&broker) {
            return Ok(c.clone());
        }
        let client = Arc::new(
            RemotingClient::connect(&broker_addr(broker))
                .await
                .map_err(|e| e.to_string())?,
        );
        if let Some(mut requests) = client.take_server_requests() {
            let answering = Arc::downgrade(&client);
            let book = book.clone();
            let trace = trace.clone();
            madsim::task::spawn(async move {
                while let Some(cmd) = requests.recv().await {
                    let Some(client) = answering.upgrade() else {
                        return;
                    };
                    answer_check(&client, &cmd, &book, &trace);
                }
            });
        }
        self.incarnation += 1;
        let body = format!(
            r#"{{"clientID":"sim-tx-{}","consumerDataSet":[],"producerDataSet":[{{"groupName":"{TX_GROUP}"}}]}}"#,
            io_adapters::clock::now_ms()
        );
        let hb = RemotingCommand::request(RequestCode::HeartBeat.value(), 0)
            .with_body(body.into_bytes());
        match client.invoke(hb, RPC_TIMEOUT).await {
            Ok(r) if r.code == ResponseCode::Success.value() => {}
            Ok(r) => return Err(format!("heartbeat answered {} {:?}", r.code, r.remark)),
            Err(e) => return Err(e.to_string()),
        }
        self.conns.insert(broker, client.clone());
        Ok(client)
    }
}

/// A CHECK_TRANSACTION_STATE: answer END_TRANSACTION (oneway, from a check) with the
/// recorded decision.
fn answer_check(client: &RemotingClient, cmd: &RemotingCommand, book: &Shared, trace: &Trace) {
    if cmd.code != RequestCode::CheckTransactionState.value() {
        return;
    }
    let id = store_core::format::record::decode_all(cmd.body.clone())
        .next()
        .and_then(Result::ok)
        .and_then(|r| body_id(&r.body).map(str::to_string));
    let Some(id) = id else {
        trace.event(format!("tx check without a readable message: {cmd:?}"));
        return;
    };
    let decision = book.lock().txs.get(&id).map(|t| t.decision);
    let Some(decision) = decision else {
        trace.event(format!("tx check for {id}, which this producer never sent"));
        return;
    };
    let verdict = match decision {
        Decision::Commit => TRANSACTION_COMMIT_TYPE,
        Decision::Rollback => TRANSACTION_ROLLBACK_TYPE,
    };
    let field = |k: &str| cmd.ext(k).unwrap_or("").to_string();
    let end = request(
        RequestCode::EndTransaction,
        &[
            ("producerGroup", TX_GROUP),
            ("tranStateTableOffset", &field("tranStateTableOffset")),
            ("commitLogOffset", &field("commitLogOffset")),
            ("commitOrRollback", &verdict.to_string()),
            ("fromTransactionCheck", "true"),
            ("msgId", &field("msgId")),
            ("transactionId", &field("transactionId")),
        ],
    );
    trace.event(format!("tx check {id}: answered {decision:?}"));
    book.lock().checks_answered += 1;
    let _ = client.invoke_oneway(end);
}

/// One producer incarnation: resumes at the book's next transaction; keeps answering checks
/// (and heartbeating every broker) after its last transaction.
async fn produce_transactions(opts: Options, book: Shared, trace: Trace, total: u64) {
    let mut conns = TxConns::default();
    trace.event("tx-producer up");
    loop {
        let seq = {
            let mut b = book.lock();
            let s = b.next_seq;
            if s < total {
                b.next_seq += 1;
            }
            s
        };
        if seq >= total {
            break;
        }
        let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x7AC7 ^ seq);
        let id = format!("t-{seq}");
        let broker = rng.gen_range(0..opts.brokers);
        let queue = rng.gen_range(0..opts.queues);
        let decision = if rng.gen_bool(0.6) {
            Decision::Commit
        } else {
            Decision::Rollback
        };
        // Vanish before sending the decision: the back-check must resolve it.
        let vanish = rng.gen_bool(0.25);
        let len = rng.gen_range(0..opts.body_len_max);
        let mut body = format!("{id}|").into_bytes();
        body.extend((0..len).map(|_| rng.gen_range(b' '..=b'~')));
        let body = Bytes::from(body);
        book.lock().txs.insert(
            id.clone(),
            Tx {
                body: body.clone(),
                decision,
            },
        );
        let client = match conns.get(broker, &book, &trace).await {
            Ok(c) => c,
            Err(e) => {
                trace.event(format!("tx {id}: no connection: {e}"));
                conns.conns.remove(&broker);
                sleep_ms(200).await;
                continue;
            }
        };
        let props = format!(
            "KEYS\u{1}{id}\u{2}TAGS\u{1}sim\u{2}WAIT\u{1}true\u{2}TRAN_MSG\u{1}true\u{2}PGROUP\u{1}{TX_GROUP}\u{2}UNIQ_KEY\u{1}SIMTX{seq:016X}\u{2}"
        );
        let cmd = send_v2_request(
            TX_GROUP,
            TX_TOPIC,
            opts.queues,
            queue,
            TRANSACTION_PREPARED_TYPE,
            io_adapters::clock::now_ms(),
            &props,
        )
        .with_body(body);
        let resp = match client.invoke(cmd, RPC_TIMEOUT).await {
            Ok(r) if r.code == ResponseCode::Success.value() => r,
            Ok(r) => {
                trace.event(format!("tx {id}: half refused {} {:?}", r.code, r.remark));
                continue;
            }
            Err(e) => {
                trace.event(format!("tx {id}: half unknown: {e}"));
                conns.conns.remove(&broker);
                continue;
            }
        };
        let queue_offset = resp.ext("queueOffset").unwrap_or("0").to_string();
        let phys = resp
            .ext("msgId")
            .and_then(|m| decode_offset_msg_id(m).ok())
            .map(|(_, p)| p);
        let tx_id = resp.ext("transactionId").unwrap_or("").to_string();
        book.lock().acked.insert(id.clone());
        trace.event(format!(
            "tx {id}: half acked broker={broker}, decision {decision:?}{}",
            if vanish { ", vanishing" } else { "" }
        ));
        if vanish {
            // The producer crashes before sending its decision: its host is killed, its
            // connections vanish, and the next incarnation answers the back-check.
            {
                let mut b = book.lock();
                b.vanished += 1;
                b.crash_requested = true;
            }
            return std::future::pending().await;
        }
        let Some(phys) = phys else {
            trace.event(format!("tx {id}: no offset message id in {resp:?}"));
            continue;
        };
        let verdict = match decision {
            Decision::Commit => TRANSACTION_COMMIT_TYPE,
            Decision::Rollback => TRANSACTION_ROLLBACK_TYPE,
        };
        let end = request(
            RequestCode::EndTransaction,
            &[
                ("producerGroup", TX_GROUP),
                ("tranStateTableOffset", &queue_offset),
                ("commitLogOffset", &phys.to_string()),
                ("commitOrRollback", &verdict.to_string()),
                ("fromTransactionCheck", "false"),
                ("msgId", &tx_id),
                ("transactionId", &tx_id),
            ],
        );
        if client.invoke_oneway(end).is_ok() {
            book.lock().ended += 1;
        }
        sleep_ms(rng.gen_range(0..=(2 * opts.fault_phase_ms / total).max(1))).await;
    }
    book.lock().producer_done = true;
    trace.event("tx-producer done; answering checks");
    // Keep heartbeating so every broker knows a live channel of the group.
    loop {
        for broker in 0..opts.brokers {
            let beat = async {
                let c = conns.get(broker, &book, &trace).await?;
                let body = format!(
                    r#"{{"clientID":"sim-tx","consumerDataSet":[],"producerDataSet":[{{"groupName":"{TX_GROUP}"}}]}}"#
                );
                let hb = RemotingCommand::request(RequestCode::HeartBeat.value(), 0)
                    .with_body(body.into_bytes());
                c.invoke(hb, RPC_TIMEOUT).await.map_err(|e| e.to_string())
            };
            match beat.await {
                Ok(r) if r.code == ResponseCode::Success.value() => {}
                other => {
                    trace.event(format!("tx heartbeat to broker {broker}: {other:?}"));
                    conns.conns.remove(&broker);
                }
            }
        }
        sleep_ms(1_000).await;
    }
}

/// Reads the transaction topic on every broker, checking each record.
async fn consume_transactions(opts: Options, book: Shared, history: History) {
    tail_topic(
        &opts,
        TX_TOPIC,
        |broker, queue, _from, records| {
            for rec in records {
                check_read(&book, &history, broker, queue, rec);
            }
        },
        |broker, queue, cursor, next, max| {
            // The queue lost an unsynced tail in a kill: what we saw there is gone.
            let from = moved_cursor(next, max);
            history.note(format!(
                "tx topic broker={broker} queue={queue}: moved from {cursor} to {from}"
            ));
            for places in book.lock().seen_at.values_mut() {
                places.retain(|&(b, q, o)| !(b == broker && q == queue && o >= from));
            }
        },
    )
    .await;
}

fn check_read(book: &Shared, history: &History, broker: usize, queue: i32, rec: &MessageRecord) {
    let at = format!("broker {broker} queue {queue} offset {}", rec.queue_offset);
    let Some(id) = body_id(&rec.body).map(str::to_string) else {
        history.violation(format!("{TX_TOPIC} {at}: body without an id"));
        return;
    };
    let mut b = book.lock();
    let Some(tx) = b.txs.get(&id) else {
        history.violation(format!("{TX_TOPIC} {at}: {id} was never sent"));
        return;
    };
    if tx.decision == Decision::Rollback {
        history.violation(format!("{TX_TOPIC} {at}: rolled-back {id} is visible"));
    }
    if rec.body != tx.body {
        history.violation(format!(
            "{TX_TOPIC} {at}: {id} body differs from what was sent"
        ));
    }
    let props = Properties::parse_bytes(&rec.properties);
    if props.get(properties::KEYS) != Some(id.as_str()) || props.get("TAGS") != Some("sim") {
        history.violation(format!(
            "{TX_TOPIC} {at}: {id} lost its properties: {props:?}"
        ));
    }
    let places = b.seen_at.entry(id.clone()).or_default();
    places.insert((broker, queue, rec.queue_offset));
    if places.len() > 1 {
        let what = format!("{TX_TOPIC}: {id} visible at {places:?} (committed twice)");
        drop(b);
        history.violation(what);
    }
}
