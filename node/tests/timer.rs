//! Timer messages through the real `node standalone`: sends with `TIMER_DELAY_SEC` and
//! `TIMER_DELIVER_MS` are pulled from their real topic not before their delivery time and soon
//! after it (1 s slots), whole; and timers pending when the process is killed (SIGKILL, under
//! SYNC_FLUSH) are still delivered after the restart, none early.
//!
//! Lateness is printed, not asserted beyond a generous bound: integration tests must not
//! assert on speed, only on "not before" and "not lost".

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use proto_core::{RemotingCommand, RequestCode, ResponseCode};
use store_core::format::properties::Properties;
use store_core::format::record::decode_all;
use support::{pull_request, request, send_v2_request, Standalone};

const TIMEOUT: Duration = Duration::from_secs(5);
const TOPIC: &str = "TimerTopic";
const SYNC: &[&str] = &["flushDiskType=SYNC_FLUSH"];

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

async fn create_topic(broker: &RemotingClient) {
    let cmd = request(
        RequestCode::UpdateAndCreateTopic,
        &[
            ("topic", TOPIC),
            ("defaultTopic", "TBW102"),
            ("readQueueNums", "1"),
            ("writeQueueNums", "1"),
            ("perm", "6"),
            ("topicFilterType", "SINGLE_TAG"),
            ("order", "false"),
        ],
    );
    let resp = broker.invoke(cmd, TIMEOUT).await.expect("broker answers");
    assert_eq!(resp.code, ResponseCode::Success.value(), "{resp:?}");
}

/// Sends `body` with the given extra properties; returns the response.
async fn send(broker: &RemotingClient, body: &str, extra: &[(&str, &str)]) -> RemotingCommand {
    let mut props = Properties::new();
    props.insert("TAGS", "TagT");
    props.insert("KEYS", body);
    props.insert("WAIT", "true");
    props.insert("user", "u-value");
    for (k, v) in extra {
        props.insert(*k, *v);
    }
    let props = props.encode();
    let cmd = send_v2_request(
        "timer_pg",
        TOPIC,
        "1",
        "0",
        &props,
        Bytes::copy_from_slice(body.as_bytes()),
    );
    broker.invoke(cmd, TIMEOUT).await.expect("send answered")
}

/// Pulls queue 0 every 20 ms until `want` distinct bodies arrived or `limit` passed; returns
/// each body's first arrival time and its properties.
async fn collect(
    broker: &RemotingClient,
    want: usize,
    limit: Duration,
) -> BTreeMap<String, (u64, Properties)> {
    let started = Instant::now();
    let mut offset = 0i64;
    let mut got = BTreeMap::new();
    while got.len() < want && started.elapsed() < limit {
        let at = offset.to_string();
        let cmd = pull_request("timer_cg", TOPIC, "0", &at);
        let resp = broker.invoke(cmd, TIMEOUT).await.expect("pull answered");
        let arrived = now_ms();
        if resp.code == ResponseCode::Success.value() {
            for r in decode_all(resp.body.clone()) {
                let r = r.expect("records decode");
                let body = String::from_utf8_lossy(&r.body).into_owned();
                got.entry(body)
                    .or_insert_with(|| (arrived, Properties::parse_bytes(&r.properties)));
                offset = r.queue_offset + 1;
            }
        } else {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timer_messages_arrive_whole_not_before_due_and_soon_after() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Standalone::start(dir.path(), SYNC);
    let broker = RemotingClient::connect(&node.broker)
        .await
        .expect("connects");
    create_topic(&broker).await;

    let before_a = now_ms();
    let a = send(&broker, "delay-sec", &[("TIMER_DELAY_SEC", "2")]).await;
    assert_eq!(a.code, ResponseCode::Success.value(), "{a:?}");
    let deliver_b = now_ms() + 3_000;
    let b = send(
        &broker,
        "deliver-ms",
        &[("TIMER_DELIVER_MS", &deliver_b.to_string())],
    )
    .await;
    assert_eq!(b.code, ResponseCode::Success.value(), "{b:?}");
    let far = send(&broker, "too-far", &[("TIMER_DELAY_SEC", "999999999")]).await;
    assert_eq!(far.code, ResponseCode::MessageIllegal.value(), "{far:?}");

    let got = collect(&broker, 2, Duration::from_secs(10)).await;
    let due = [("delay-sec", before_a + 2_000), ("deliver-ms", deliver_b)];
    for (body, due_ms) in due {
        let (arrived, props) = got
            .get(body)
            .unwrap_or_else(|| panic!("{body} never arrived"));
        println!(
            "{body}: due {due_ms}, arrived {arrived}, late {} ms",
            arrived.saturating_sub(due_ms)
        );
        assert!(
            *arrived >= due_ms,
            "{body} arrived {arrived}, before its time {due_ms}"
        );
        // 1 s slots: at most one slot late, plus a generous allowance for a loaded machine.
        assert!(
            *arrived <= due_ms + 1_000 + 2_500,
            "{body} arrived {arrived}, due {due_ms}"
        );
        assert_eq!(props.get("TAGS"), Some("TagT"));
        assert_eq!(props.get("KEYS"), Some(body));
        assert_eq!(props.get("user"), Some("u-value"));
        assert_eq!(props.get("REAL_TOPIC"), None);
        assert!(props.get("TIMER_OUT_MS").is_some());
    }
    assert!(!got.contains_key("too-far"));
    assert!(dir.path().join("timerwheel").exists());
    assert!(dir.path().join("config/timercheck").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_timers_survive_a_kill_and_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Standalone::start(dir.path(), SYNC);
    let broker = RemotingClient::connect(&node.broker)
        .await
        .expect("connects");
    create_topic(&broker).await;
    let mut due = BTreeMap::new();
    for (i, delay_sec) in [3u64, 4, 5, 6].into_iter().enumerate() {
        let body = format!("pending-{i}");
        let sent = now_ms();
        let r = send(
            &broker,
            &body,
            &[("TIMER_DELAY_SEC", &delay_sec.to_string())],
        )
        .await;
        assert_eq!(r.code, ResponseCode::Success.value(), "{r:?}");
        due.insert(body, sent + delay_sec * 1000);
    }
    // Let one timer checkpoint pass, so the restart recovers from a checkpoint and a tail.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    drop(broker);
    let status = tokio::task::spawn_blocking(move || node.kill9())
        .await
        .expect("kill joins");
    assert!(!status.success());

    let node = Standalone::start(dir.path(), SYNC);
    let broker = RemotingClient::connect(&node.broker)
        .await
        .expect("connects");
    let got = collect(&broker, due.len(), Duration::from_secs(15)).await;
    for (body, due_ms) in &due {
        let (arrived, _) = got
            .get(body)
            .unwrap_or_else(|| panic!("{body} lost in the restart"));
        println!("{body}: due {due_ms}, arrived {arrived}");
        assert!(
            arrived >= due_ms,
            "{body} arrived {arrived}, before its time {due_ms}"
        );
    }
}
