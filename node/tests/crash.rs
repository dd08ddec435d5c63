//! Crash safety of the real `node standalone` binary: concurrent producers send while the
//! process dies. Under SYNC_FLUSH a SIGKILL must not lose an acknowledged message; under
//! ASYNC_FLUSH a SIGTERM (clean stop) must not either. After the restart every queue is pulled
//! from offset 0 and each record is decoded with its CRCs checked.
//!
//! What it leaves out: power loss (a SIGKILL leaves the page cache intact, so this proves the
//! recovery walk and the acknowledgement order, not the fsync itself).

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use proto_core::{RemotingCommand, RequestCode, ResponseCode};
use store_core::format::record::decode_all;
use support::{pull_request, request, send_v2_request, Standalone};

const TIMEOUT: Duration = Duration::from_secs(5);
const TOPIC: &str = "CrashTopic";
const QUEUES: i32 = 4;
const SENDERS: usize = 6;
/// Acknowledged sends to wait for before the process is stopped: with bodies up to 1 KiB the
/// commit log crosses at least one 1 MiB segment boundary.
const ACKS_BEFORE_STOP: usize = 3000;
/// Settings for every start: the flush type under test, and a disk limit high enough that a
/// busy shared test machine does not make the store refuse writes (that is not under test).
const SYNC: &[&str] = &["flushDiskType=SYNC_FLUSH"];
const ASYNC: &[&str] = &["flushDiskType=ASYNC_FLUSH"];

/// One acknowledged send: where the broker said it stored `body`.
#[derive(Debug, Clone)]
struct Ack {
    queue_id: i32,
    queue_offset: i64,
    body: Vec<u8>,
}

async fn create_topic(broker: &RemotingClient) {
    let queues = QUEUES.to_string();
    let cmd = request(
        RequestCode::UpdateAndCreateTopic,
        &[
            ("topic", TOPIC),
            ("defaultTopic", "TBW102"),
            ("readQueueNums", &queues),
            ("writeQueueNums", &queues),
            ("perm", "6"),
            ("topicFilterType", "SINGLE_TAG"),
            ("order", "false"),
        ],
    );
    let resp = broker.invoke(cmd, TIMEOUT).await.expect("broker answers");
    assert_eq!(resp.code, ResponseCode::Success.value(), "{resp:?}");
}

fn send_request(queue_id: i32, body: Vec<u8>) -> RemotingCommand {
    let queue_id = queue_id.to_string();
    // WAIT=true: the producer waits for the store (the flush, under SYNC_FLUSH).
    send_v2_request(
        "crash_pg",
        TOPIC,
        "4",
        &queue_id,
        "TAGS\u{1}T\u{2}WAIT\u{1}true\u{2}",
        Bytes::from(body),
    )
}

/// Sends distinct bodies on its own connection until the broker goes away, recording each
/// SUCCESS. Any other response code before `stopping` is set is a test failure.
async fn sender(addr: String, id: usize, acks: Arc<Mutex<Vec<Ack>>>, stopping: Arc<AtomicBool>) {
    let client = RemotingClient::connect(&addr).await.expect("connects");
    for i in 0u64.. {
        let body = format!(
            "sender-{id}-msg-{i}-{}",
            "x".repeat((i * 37 % 1000) as usize)
        )
        .into_bytes();
        let queue_id = ((id as u64 + i) % QUEUES as u64) as i32;
        let resp = match client
            .invoke(send_request(queue_id, body.clone()), TIMEOUT)
            .await
        {
            Ok(r) => r,
            // The process died or is stopping: unacknowledged, so owed nothing.
            Err(_) => return,
        };
        if resp.code != ResponseCode::Success.value() {
            // A stopping broker may refuse with SERVICE_NOT_AVAILABLE; before that, nothing
            // but SUCCESS is acceptable.
            assert!(stopping.load(Ordering::Relaxed), "send refused: {resp:?}");
            return;
        }
        let queue_offset: i64 = resp
            .ext("queueOffset")
            .and_then(|o| o.parse().ok())
            .expect("SUCCESS carries queueOffset");
        let acked_queue: i32 = resp
            .ext("queueId")
            .and_then(|q| q.parse().ok())
            .expect("SUCCESS carries queueId");
        assert_eq!(acked_queue, queue_id, "stored where asked");
        lock(&acks).push(Ack {
            queue_id,
            queue_offset,
            body,
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts the senders, waits for `ACKS_BEFORE_STOP` acknowledgements, then runs `stop_node`
/// while they are still sending (each has a send in flight). Returns every acknowledged send.
async fn produce_then(
    node: Standalone,
    stop_node: impl FnOnce(Standalone) -> std::process::ExitStatus + Send + 'static,
) -> (Vec<Ack>, std::process::ExitStatus) {
    let admin = RemotingClient::connect(&node.broker)
        .await
        .expect("connects");
    create_topic(&admin).await;
    let acks = Arc::new(Mutex::new(Vec::new()));
    let stopping = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..SENDERS)
        .map(|id| {
            tokio::spawn(sender(
                node.broker.clone(),
                id,
                acks.clone(),
                stopping.clone(),
            ))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    while lock(&acks).len() < ACKS_BEFORE_STOP {
        assert!(
            Instant::now() < deadline,
            "only {} acks in 15 s",
            lock(&acks).len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stopping.store(true, Ordering::Relaxed);
    let status = tokio::task::spawn_blocking(move || stop_node(node))
        .await
        .expect("stop runs");
    for t in tasks {
        t.await.expect("sender did not fail");
    }
    let acks = lock(&acks).clone();
    (acks, status)
}

/// Pulls every queue of the topic from offset 0 to its end, decoding (and CRC-checking) every
/// record, and checks that offsets are dense. Returns (queue id, queue offset) -> body.
async fn pull_all(broker: &RemotingClient) -> BTreeMap<(i32, i64), Vec<u8>> {
    let mut stored = BTreeMap::new();
    for queue_id in 0..QUEUES {
        let queue = queue_id.to_string();
        let mut offset = 0i64;
        loop {
            let at = offset.to_string();
            let cmd = pull_request("crash_cg", TOPIC, &queue, &at);
            let resp = broker.invoke(cmd, TIMEOUT).await.expect("pull answered");
            if resp.code == ResponseCode::PullNotFound.value() {
                let max: i64 = resp
                    .ext("maxOffset")
                    .and_then(|m| m.parse().ok())
                    .expect("maxOffset");
                assert_eq!(max, offset, "queue {queue_id} ends where the pulls ended");
                break;
            }
            assert_eq!(
                resp.code,
                ResponseCode::Success.value(),
                "queue {queue_id} @ {offset}: {resp:?}"
            );
            let records = decode_all(resp.body.clone())
                .collect::<Result<Vec<_>, _>>()
                .unwrap_or_else(|e| panic!("queue {queue_id} @ {offset}: corrupt record: {e}"));
            assert!(!records.is_empty(), "SUCCESS with no records");
            for r in records {
                assert_eq!(r.queue_id, queue_id);
                assert_eq!(r.queue_offset, offset, "queue {queue_id} offsets are dense");
                stored.insert((queue_id, offset), r.body.to_vec());
                offset += 1;
            }
            let next: i64 = resp
                .ext("nextBeginOffset")
                .and_then(|n| n.parse().ok())
                .expect("nextBeginOffset");
            assert_eq!(next, offset, "nextBeginOffset follows the last record");
        }
    }
    stored
}

fn assert_all_acked_present(acks: &[Ack], stored: &BTreeMap<(i32, i64), Vec<u8>>) {
    assert!(acks.len() >= ACKS_BEFORE_STOP);
    for ack in acks {
        let got = stored.get(&(ack.queue_id, ack.queue_offset));
        assert_eq!(
            got.map(Vec::as_slice),
            Some(ack.body.as_slice()),
            "acknowledged message lost or changed at queue {} offset {}",
            ack.queue_id,
            ack.queue_offset
        );
    }
    println!(
        "{} acknowledged, {} stored after restart",
        acks.len(),
        stored.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_flush_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), SYNC);
    let (acks, status) = produce_then(node, Standalone::kill9).await;
    assert!(!status.success(), "killed, not exited: {status:?}");
    assert!(
        dir.path().join("abort").exists(),
        "a killed broker leaves its abort marker"
    );

    let node = Standalone::start(dir.path(), SYNC);
    let opened = node
        .wait_for_log("store opened", Duration::from_secs(5))
        .expect("recovery is logged");
    assert!(
        opened.contains("clean_shutdown: false"),
        "recovery saw the crash: {opened}"
    );
    let broker = RemotingClient::connect(&node.broker).await.unwrap();
    let stored = pull_all(&broker).await;
    assert_all_acked_present(&acks, &stored);
    drop(broker);
    assert!(node.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_flush_survives_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), ASYNC);
    let (acks, status) = produce_then(node, Standalone::stop).await;
    assert!(status.success(), "clean stop: {status:?}");
    assert!(
        !dir.path().join("abort").exists(),
        "a clean stop removes the abort marker"
    );

    let node = Standalone::start(dir.path(), ASYNC);
    let opened = node
        .wait_for_log("store opened", Duration::from_secs(5))
        .expect("recovery is logged");
    assert!(
        opened.contains("clean_shutdown: true"),
        "recovery saw the clean stop: {opened}"
    );
    let broker = RemotingClient::connect(&node.broker).await.unwrap();
    let stored = pull_all(&broker).await;
    assert_all_acked_present(&acks, &stored);
    drop(broker);
    assert!(node.stop().success());
}
