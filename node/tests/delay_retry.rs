//! Delay levels and the retry ladder on the real `node standalone`, with short levels set by
//! `--set messageDelayLevel=...`: a delayed message arrives, never before its delay; a consumer
//! that hands a message back every time walks `%RETRY%` to `%DLQ%`; and the same two with the
//! Apache RocketMQ C++ client (`set_delay_time_level`, a push consumer answering
//! RECONSUME_LATER), when its venv from `../shared/compat/` is present.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use proto_core::{RemotingCommand, RequestCode, ResponseCode};
use store_core::format::properties::Properties;
use store_core::format::record::{decode_all, MessageRecord};
use support::{compat_command, compat_python, pull_request, request, send_v2_request, Standalone};

const TIMEOUT: Duration = Duration::from_secs(5);
/// Level 2 waits 3 s; every level from 3 on (the retry ladder's) waits 1 s.
const LEVELS: &str = "messageDelayLevel=1s 3s 1s";

fn wall_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is past 1970");
    i64::try_from(since.as_millis()).expect("milliseconds fit i64")
}

async fn send(broker: &RemotingClient, topic: &str, props: &str) -> RemotingCommand {
    let cmd = send_v2_request(
        "delay_pg",
        topic,
        "4",
        "0",
        props,
        Bytes::from_static(b"ladder"),
    );
    broker.invoke(cmd, TIMEOUT).await.expect("send answered")
}

/// Records of `topic` queue 0 from `offset` (none when there is nothing new).
async fn pull(broker: &RemotingClient, topic: &str, offset: u64) -> Vec<MessageRecord> {
    let offset = offset.to_string();
    let cmd = pull_request("cg", topic, "0", &offset);
    let got = broker.invoke(cmd, TIMEOUT).await.expect("pull answered");
    if got.code != ResponseCode::Success.value() {
        return Vec::new();
    }
    decode_all(got.body.clone()).map(Result::unwrap).collect()
}

/// Pulls `topic` queue 0 at `offset` until a record is there (at most `within`).
async fn wait_for(
    broker: &RemotingClient,
    topic: &str,
    offset: u64,
    within: Duration,
) -> MessageRecord {
    let deadline = Instant::now() + within;
    loop {
        if let Some(r) = pull(broker, topic, offset).await.into_iter().next() {
            return r;
        }
        assert!(Instant::now() < deadline, "nothing in {topic} at {offset}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn props(r: &MessageRecord) -> Properties {
    Properties::parse_bytes(&r.properties)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_level_message_arrives_not_before_its_delay() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[LEVELS]);
    let broker = RemotingClient::connect(&node.broker).await.unwrap();
    let before = wall_ms();
    let sent = send(
        &broker,
        "Later",
        "DELAY\u{1}2\u{2}UNIQ_KEY\u{1}D1\u{2}WAIT\u{1}true\u{2}",
    )
    .await;
    assert_eq!(sent.code, ResponseCode::Success.value(), "{sent:?}");
    // Parked: nothing in the real topic yet (the pull comes well inside the 3 s).
    assert!(pull(&broker, "Later", 0).await.is_empty() || wall_ms() - before >= 3000);
    let got = wait_for(&broker, "Later", 0, Duration::from_secs(30)).await;
    assert!(
        got.store_timestamp >= before + 3000,
        "delivered {} ms after the send",
        got.store_timestamp - before
    );
    println!(
        "delivered {} ms after the send (delay 3000 ms)",
        got.store_timestamp - before
    );
    let p = props(&got);
    assert_eq!(p.get("UNIQ_KEY"), Some("D1"));
    assert_eq!(p.get("DELAY"), None);
    assert_eq!(p.get("REAL_TOPIC"), Some("Later"));

    // Progress survives a clean restart: the message is not delivered a second time.
    drop(broker);
    assert!(node.stop().success());
    let text = std::fs::read_to_string(dir.path().join("config/delayOffset.json")).unwrap();
    assert!(
        text.contains("\"2\": 1") || text.contains("\"2\":1"),
        "{text}"
    );
    let node = Standalone::start(dir.path(), &[LEVELS]);
    let broker = RemotingClient::connect(&node.broker).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(pull(&broker, "Later", 0).await.len(), 1);
    assert!(node.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sending_back_every_time_walks_the_retry_ladder_to_the_dlq() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[LEVELS]);
    let broker = RemotingClient::connect(&node.broker).await.unwrap();
    let sent = send(&broker, "Work", "UNIQ_KEY\u{1}W1\u{2}KEYS\u{1}job-1\u{2}").await;
    assert_eq!(sent.code, ResponseCode::Success.value(), "{sent:?}");
    let first = wait_for(&broker, "Work", 0, TIMEOUT).await;
    let max = 3;
    let mut current = first.clone();
    for attempt in 0..=max {
        let offset = current.physical_offset.to_string();
        let max_text = max.to_string();
        let mut back = request(
            RequestCode::ConsumerSendMsgBack,
            &[
                ("offset", offset.as_str()),
                ("group", "cg"),
                ("delayLevel", "0"),
                ("originMsgId", sent.ext("msgId").unwrap()),
                ("originTopic", "Work"),
                ("unitMode", "false"),
                ("maxReconsumeTimes", max_text.as_str()),
            ],
        );
        back.version = 433;
        let r = broker.invoke(back, TIMEOUT).await.unwrap();
        assert_eq!(r.code, ResponseCode::Success.value(), "{r:?}");
        if attempt == max {
            break;
        }
        let queued = Instant::now();
        current = wait_for(
            &broker,
            "%RETRY%cg",
            attempt as u64,
            Duration::from_secs(30),
        )
        .await;
        println!("retry {attempt} after {:?}", queued.elapsed());
        assert_eq!(current.reconsume_times, attempt + 1);
        assert_eq!(props(&current).get("RETRY_TOPIC"), Some("Work"));
        assert_eq!(
            props(&current).get("ORIGIN_MESSAGE_ID"),
            Some(first.msg_id().as_str())
        );
    }
    let dead = wait_for(&broker, "%DLQ%cg", 0, TIMEOUT).await;
    assert_eq!(dead.reconsume_times, max + 1);
    assert_eq!(&dead.body[..], b"ladder");
    let p = props(&dead);
    assert_eq!(p.get("UNIQ_KEY"), Some("W1"));
    assert_eq!(p.get("KEYS"), Some("job-1"));
    assert_eq!(p.get("RETRY_TOPIC"), Some("Work"));
    assert!(node.stop().success());
}

/// Runs the script; its last line's `key=value` words.
fn run_cpp(python: &Path, namesrv: &str, args: &[&str]) -> BTreeMap<String, String> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/delay_retry_cpp.py");
    let logs = tempfile::tempdir().expect("a temp dir for the client's logs");
    let out = compat_command(python, logs.path())
        .arg(script)
        .args(["--namesrv", namesrv])
        .args(args)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "C++ client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("C++ client: {stdout}");
    let last = stdout.lines().last().unwrap_or_default();
    last.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpp_client_delay_level_and_reconsume_later_to_the_dlq() {
    let Some(python) = compat_python() else {
        eprintln!("skipping: no C++ client venv (run ../shared/compat/run-cpp-client.sh once)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[LEVELS]);

    let delay = run_cpp(
        &python,
        &node.namesrv,
        &[
            "--mode",
            "delay",
            "--topic",
            "CppLater",
            "--group",
            "cpp_delay",
            "--level",
            "2",
        ],
    );
    let sent: i64 = delay["sent_ms"].parse().unwrap();
    let stored: i64 = delay["store_ms"].parse().unwrap();
    assert!(
        stored >= sent + 3000,
        "delivered {} ms after the send",
        stored - sent
    );

    let dlq = run_cpp(
        &python,
        &node.namesrv,
        // The group's retryMaxTimes (16): the first attempt and 16 retries, then the DLQ.
        &[
            "--mode", "dlq", "--topic", "CppWork", "--group", "cpp_dlq", "--expect", "17",
        ],
    );
    let attempts: Vec<i64> = dlq["attempts"]
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    // Every attempt one reconsume further: 0, 1, 2, ...
    assert!(!attempts.is_empty());
    for (i, times) in attempts.iter().enumerate() {
        assert_eq!(*times, i as i64, "{attempts:?}");
    }
    let broker = RemotingClient::connect(&node.broker).await.unwrap();
    assert_eq!(attempts.len(), 17, "{attempts:?}");
    let dead = wait_for(&broker, "%DLQ%cpp_dlq", 0, TIMEOUT).await;
    assert_eq!(props(&dead).get("RETRY_TOPIC"), Some("CppWork"));
    assert_eq!(props(&dead).get("KEYS"), Some("ladder-key"));
    assert_eq!(dead.reconsume_times, 17);
    assert!(
        pull(&broker, "%DLQ%cpp_dlq", 1).await.is_empty(),
        "one DLQ copy"
    );
    println!(
        "C++ push consumer: {} attempts, then %DLQ%cpp_dlq",
        attempts.len()
    );
    assert!(node.stop().success());
}
