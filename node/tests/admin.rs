//! `node admin` against the real `node standalone`: mqadmin's commands create, inspect and
//! delete a topic, create a group, show its progress, find messages by key and id, and reset
//! the group's offsets by time, to the end and to the start. The reset reaches a live consumer
//! connection as RESET_CONSUMER_CLIENT_OFFSET, and that consumer's stale commit cannot undo it.

mod support;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use proto_core::body::{ConsumeFromWhere, MessageQueue, ResetOffsetBody};
use proto_core::client::{
    consumer_heartbeat, heartbeat_request, parse_query_consumer_offset, parse_send,
    query_consumer_offset_request, send_message_v2_request, subscription,
    update_consumer_offset_request, OutgoingMessage,
};
use proto_core::{RemotingCommand, RequestCode, ResponseCode};
use support::Standalone;

const TIMEOUT: Duration = Duration::from_secs(5);
const TOPIC: &str = "AdminTopic";
const GROUP: &str = "AdminGroup";

/// Runs `node admin <args>`; panics unless it exits 0. Returns stdout.
fn admin(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_node"))
        .arg("admin")
        .args(args)
        .output()
        .expect("node admin runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "node admin {args:?} failed:\n{stdout}\n{stderr}"
    );
    println!("$ node admin {}\n{stdout}", args.join(" "));
    stdout
}

/// Waits until the name server routes `topic` (the broker registers changes asynchronously).
fn wait_for_route(ns: &str, topic: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = Command::new(env!("CARGO_BIN_EXE_node"))
            .args(["admin", "topicRoute", "-n", ns, "-t", topic])
            .output()
            .expect("node admin runs");
        if out.status.success() {
            return;
        }
        assert!(Instant::now() < deadline, "no route for {topic}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The table rows of a resetOffsetByTime output: (queue id, offset).
fn reset_rows(out: &str) -> Vec<(i32, i64)> {
    out.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            match cols.as_slice() {
                [broker, queue, offset] if *broker == "broker-a" => {
                    Some((queue.parse().ok()?, offset.parse().ok()?))
                }
                _ => None,
            }
        })
        .collect()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn mq(queue_id: i32) -> MessageQueue {
    MessageQueue {
        topic: TOPIC.to_string(),
        broker_name: "broker-a".to_string(),
        queue_id,
    }
}

async fn send(broker: &RemotingClient, i: usize) -> String {
    let msg = OutgoingMessage {
        topic: TOPIC.to_string(),
        body: Bytes::from(format!("body-{i}")),
        tags: Some("TagA".to_string()),
        keys: vec![format!("key{i}")],
        flag: 0,
    };
    let uniq = format!("UNIQ{i:028}");
    let req = send_message_v2_request("admin_pg", &mq(0), &msg, &uniq, now_ms());
    let resp = broker.invoke(req, TIMEOUT).await.expect("send answered");
    let result = parse_send(&resp, &mq(0), &uniq).expect("send stored");
    assert_eq!(result.queue_offset, i as i64);
    result.offset_msg_id
}

async fn committed(broker: &RemotingClient) -> Option<i64> {
    let resp = broker
        .invoke(query_consumer_offset_request(GROUP, &mq(0)), TIMEOUT)
        .await
        .expect("query answered");
    parse_query_consumer_offset(&resp).expect("query parses")
}

async fn commit(broker: &RemotingClient, offset: i64) {
    let resp = broker
        .invoke(
            update_consumer_offset_request(GROUP, &mq(0), offset),
            TIMEOUT,
        )
        .await
        .expect("commit answered");
    assert_eq!(resp.code, ResponseCode::Success.value());
}

/// Waits for a RESET_CONSUMER_CLIENT_OFFSET on the consumer connection; its queue-0 offset.
async fn reset_notice(rx: &mut tokio::sync::mpsc::UnboundedReceiver<RemotingCommand>) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let cmd = tokio::time::timeout(left, rx.recv())
            .await
            .expect("a reset notice arrives")
            .expect("connection open");
        if cmd.code == RequestCode::ResetConsumerClientOffset.value() {
            assert_eq!(cmd.ext("group"), Some(GROUP));
            assert_eq!(cmd.ext("topic"), Some(TOPIC));
            let body = ResetOffsetBody::decode(&cmd.body).expect("notice body parses");
            return body.offset_table[&mq(0)];
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqadmin_commands_manage_topics_groups_messages_and_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let ns = node.namesrv.clone();
    let ns = ns.as_str();

    // Topics: create on the cluster, see it listed, routed and counted.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !admin(&["clusterList", "-n", ns]).contains("broker-a") {
        assert!(Instant::now() < deadline, "broker never registered");
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = admin(&[
        "updateTopic",
        "-n",
        ns,
        "-t",
        TOPIC,
        "-c",
        "DefaultCluster",
        "-r",
        "2",
        "-w",
        "2",
    ]);
    assert!(out.contains(&format!("create topic to {} success.", node.broker)));
    wait_for_route(ns, TOPIC);
    assert!(admin(&["topicList", "-n", ns]).lines().any(|l| l == TOPIC));
    let route = admin(&["topicRoute", "-n", ns, "-t", TOPIC]);
    assert!(route.contains("\"writeQueueNums\":2"), "{route}");

    // Ten messages on queue 0, the last five stored at least a second after the first five.
    let broker = RemotingClient::connect(&node.broker).await.unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(send(&broker, i).await);
    }
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let middle = now_ms();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 5..10 {
        ids.push(send(&broker, i).await);
    }
    let status = admin(&["topicStatus", "-n", ns, "-t", TOPIC]);
    let queue0 = status
        .lines()
        .find(|l| l.split_whitespace().take(2).eq(["broker-a", "0"]))
        .expect("queue 0 row");
    assert_eq!(queue0.split_whitespace().nth(3), Some("10"), "{status}");

    // Messages by key and by id.
    let by_key = admin(&["queryMsgByKey", "-n", ns, "-t", TOPIC, "-k", "key3"]);
    assert!(by_key.contains(&ids[3]), "{by_key}");
    let by_id = admin(&["queryMsgById", "-n", ns, "-i", &ids[3]]);
    assert!(by_id.contains("Keys:                [key3]"), "{by_id}");
    assert!(by_id.contains("body-3"), "{by_id}");

    // A group with a live consumer connection that has consumed everything.
    let out = admin(&[
        "updateSubGroup",
        "-n",
        ns,
        "-g",
        GROUP,
        "-c",
        "DefaultCluster",
    ]);
    assert!(out.contains("create subscription group to"));
    let consumer = RemotingClient::connect(&node.broker).await.unwrap();
    let mut notices = consumer.take_server_requests().unwrap();
    let hb = consumer_heartbeat(
        "admin-test-consumer",
        GROUP,
        vec![subscription(TOPIC, "*", 1)],
        ConsumeFromWhere::ConsumeFromLastOffset,
    );
    let resp = consumer
        .invoke(heartbeat_request(&hb), TIMEOUT)
        .await
        .unwrap();
    assert_eq!(resp.code, ResponseCode::Success.value());
    commit(&consumer, 10).await;
    let retry_topic = format!("%RETRY%{GROUP}");
    wait_for_route(ns, &retry_topic);
    let progress = admin(&["consumerProgress", "-n", ns, "-g", GROUP, "-t", TOPIC]);
    assert!(progress.contains("Consume Diff Total: 0"), "{progress}");

    let reset_by_time = |at: &str| {
        admin(&[
            "resetOffsetByTime",
            "-n",
            ns,
            "-g",
            GROUP,
            "-t",
            TOPIC,
            "-s",
            at,
        ])
    };
    // Reset to the middle: queue 0 goes back to message 5, and the consumer is told.
    let out = reset_by_time(&middle.to_string());
    assert_eq!(reset_rows(&out), vec![(0, 5), (1, 0)], "{out}");
    assert_eq!(reset_notice(&mut notices).await, 5);
    assert_eq!(committed(&broker).await, Some(5));
    // The consumer commits its old position before it applies the reset: ignored.
    commit(&consumer, 10).await;
    assert_eq!(committed(&broker).await, Some(5));
    let progress = admin(&["consumerProgress", "-n", ns, "-g", GROUP, "-t", TOPIC]);
    assert!(progress.contains("Consume Diff Total: 5"), "{progress}");

    // To the end (-1) and back to the start (0).
    let out = reset_by_time("-1");
    assert_eq!(reset_rows(&out), vec![(0, 10), (1, 0)], "{out}");
    assert_eq!(reset_notice(&mut notices).await, 10);
    let out = reset_by_time("0");
    assert_eq!(reset_rows(&out), vec![(0, 0), (1, 0)], "{out}");
    assert_eq!(committed(&broker).await, Some(0));

    // Broker figures, then the topic goes away.
    let status = admin(&["brokerStatus", "-n", ns, "-b", &node.broker]);
    assert!(status.contains("brokerVersionDesc"), "{status}");
    let out = admin(&["deleteTopic", "-n", ns, "-t", TOPIC, "-c", "DefaultCluster"]);
    assert!(out.contains("from NameServer success."));
    assert!(!admin(&["topicList", "-n", ns]).lines().any(|l| l == TOPIC));
    assert!(node.stop().success());
}

#[test]
fn refusals_exit_non_zero_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let out = Command::new(env!("CARGO_BIN_EXE_node"))
        .args(["admin", "resetOffsetByTime", "-n", &node.namesrv])
        .args(["-g", "NoSuchGroup", "-t", "NoSuchTopic", "-s", "now"])
        .output()
        .expect("node admin runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("TopicNotExist"), "{stderr}");
    assert!(node.stop().success());
}
