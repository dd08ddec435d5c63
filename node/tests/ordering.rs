//! Ordered and broadcast consumption against the real `node standalone`.
//!
//! Ordered: a producer sends eight order keys, each key always to the same queue (the
//! selector's `hash(key) % queues`), interleaved. Two orderly consumers of one group take queue
//! locks (LOCK_BATCH_MQ): a queue locked by one is refused to the other, an unlocked queue
//! (UNLOCK_BATCH_MQ) passes to the other at once, and a consumer whose connection drops keeps
//! its locks until they lapse (RocketMQ's 60 s), so nobody else reads those queues meanwhile.
//! Each consumer pulls only its locked queues, in queue order, and every key's sequence arrives
//! complete and in order.
//!
//! Broadcast: two members of a BROADCASTING group each read every message without committing
//! offsets; the broker serves their pulls, keeps no group offsets and sends them no
//! NOTIFY_CONSUMER_IDS_CHANGED.
//!
//! With the compat harness's Python venv present, the Apache RocketMQ C++ client runs the same
//! two stories: `send_orderly` by key to an orderly push consumer, and two broadcasting push
//! consumers that both receive every message.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use proto_core::body::{
    ConsumeFromWhere, ConsumeStats, ConsumeType, HeartbeatData, LockBatchRequestBody,
    LockBatchResponseBody, MessageModel, MessageQueue, UnlockBatchRequestBody,
};
use proto_core::client::{
    consumer_heartbeat, heartbeat_request, parse_pull, parse_send, pull_request,
    send_message_v2_request, subscription, OutgoingMessage, PullArgs, PullStatus,
};
use proto_core::message::properties::{find_property, KEYS};
use proto_core::{RemotingCommand, RequestCode, ResponseCode};
use support::{compat_command, compat_python, Standalone};

const TIMEOUT: Duration = Duration::from_secs(5);
const QUEUES: i32 = 4;
const KEYS_COUNT: usize = 8;
const PER_KEY: usize = 25;

fn mq(topic: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        topic: topic.to_string(),
        broker_name: "broker-a".to_string(),
        queue_id,
    }
}

/// The producer's selector: one queue per key, `hash(key) % queues`.
fn select(key: usize) -> i32 {
    (key as i32 * 7 + 3) % QUEUES
}

async fn send(broker: &RemotingClient, topic: &str, queue_id: i32, key: &str, body: String) {
    let msg = OutgoingMessage {
        topic: topic.to_string(),
        body: Bytes::from(body),
        tags: None,
        keys: vec![key.to_string()],
        flag: 0,
    };
    let uniq = format!("{key}-{}", msg.body.len());
    let target = mq(topic, queue_id);
    let req = send_message_v2_request("order_pg", &target, &msg, &uniq, 1_700_000_000_000);
    let resp = broker.invoke(req, TIMEOUT).await.expect("send answered");
    let result = parse_send(&resp, &target, &uniq).expect("send stored");
    assert_eq!(
        result.queue.queue_id, queue_id,
        "the broker kept the chosen queue"
    );
}

/// An orderly consumer: its own connection, client id and locks.
struct OrderlyConsumer {
    conn: RemotingClient,
    client_id: String,
    group: String,
    topic: String,
}

impl OrderlyConsumer {
    async fn join(addr: &str, client_id: &str, group: &str, topic: &str) -> OrderlyConsumer {
        let conn = RemotingClient::connect(addr)
            .await
            .expect("the node answers");
        let mut hb = consumer_heartbeat(
            client_id,
            group,
            vec![subscription(topic, "*", 1)],
            ConsumeFromWhere::ConsumeFromFirstOffset,
        );
        hb.consumer_data_set[0].consume_type = ConsumeType::ConsumePassively;
        let resp = conn
            .invoke(heartbeat_request(&hb), TIMEOUT)
            .await
            .expect("the node answers");
        assert_eq!(resp.code, ResponseCode::Success.value());
        OrderlyConsumer {
            conn,
            client_id: client_id.to_string(),
            group: group.to_string(),
            topic: topic.to_string(),
        }
    }

    fn queues(&self, ids: &[i32]) -> BTreeSet<MessageQueue> {
        ids.iter().map(|&q| mq(&self.topic, q)).collect()
    }

    /// LOCK_BATCH_MQ for `ids`; the queue ids granted.
    async fn lock(&self, ids: &[i32]) -> Vec<i32> {
        let body = LockBatchRequestBody {
            client_id: self.client_id.clone(),
            consumer_group: self.group.clone(),
            mq_set: self.queues(ids),
            only_this_broker: true,
        };
        let cmd =
            RemotingCommand::request(RequestCode::LockBatchMq.value(), 0).with_body(body.encode());
        let resp = self
            .conn
            .invoke(cmd, TIMEOUT)
            .await
            .expect("the node answers");
        assert_eq!(resp.code, ResponseCode::Success.value());
        let locked = LockBatchResponseBody::decode(&resp.body).expect("the node answers");
        locked.lock_ok_mq_set.iter().map(|q| q.queue_id).collect()
    }

    async fn unlock(&self, ids: &[i32]) {
        let body = UnlockBatchRequestBody {
            client_id: self.client_id.clone(),
            consumer_group: self.group.clone(),
            mq_set: self.queues(ids),
            only_this_broker: true,
        };
        let cmd = RemotingCommand::request(RequestCode::UnlockBatchMq.value(), 0)
            .with_body(body.encode());
        let resp = self
            .conn
            .invoke(cmd, TIMEOUT)
            .await
            .expect("the node answers");
        assert_eq!(resp.code, ResponseCode::Success.value());
    }

    /// Pulls one queue from `offset` to its end, in order: (key, body) of each message.
    async fn drain(&self, queue_id: i32, mut offset: i64, commit: bool) -> Vec<(String, String)> {
        let sub = subscription(&self.topic, "*", 1);
        let target = mq(&self.topic, queue_id);
        let mut out = Vec::new();
        let mut position = offset;
        loop {
            let args = PullArgs {
                group: &self.group,
                mq: &target,
                subscription: &sub,
                queue_offset: offset,
                commit_offset: commit.then_some(offset),
                max_msg_nums: 7,
                suspend_timeout_ms: 0,
                with_subscription: true,
            };
            let resp = self
                .conn
                .invoke(pull_request(&args), TIMEOUT)
                .await
                .expect("the node answers");
            let result = parse_pull(&resp, &sub).expect("pull answered");
            match result.status {
                PullStatus::Found => {
                    for m in &result.messages {
                        assert_eq!(
                            m.queue_offset, position,
                            "queue {queue_id} skipped or repeated"
                        );
                        position += 1;
                        let key = find_property(&m.properties, KEYS).unwrap_or_default();
                        out.push((
                            String::from_utf8_lossy(key).into_owned(),
                            String::from_utf8_lossy(&m.body).into_owned(),
                        ));
                    }
                    offset = result.next_begin_offset;
                }
                PullStatus::NoNewMsg => return out,
                other => panic!("unexpected pull status {other:?}"),
            }
        }
    }
}

/// Checks every key's bodies are `key:0`, `key:1`, ... in order, across all queues.
fn assert_in_order(per_queue: &BTreeMap<i32, Vec<(String, String)>>) {
    let mut next: BTreeMap<String, usize> = BTreeMap::new();
    for (queue_id, messages) in per_queue {
        for (key, body) in messages {
            let key_index: usize = key
                .trim_start_matches("order-")
                .parse()
                .expect("keys are order-<n>");
            assert_eq!(select(key_index), *queue_id, "{key} on the wrong queue");
            let seq = next.entry(key.clone()).or_default();
            assert_eq!(
                body,
                &format!("{key}:{seq}"),
                "out of order on queue {queue_id}"
            );
            *seq += 1;
        }
    }
    assert_eq!(next.len(), KEYS_COUNT);
    assert!(next.values().all(|&n| n == PER_KEY), "{next:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_keys_stay_in_order_through_exclusive_queue_locks() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let topic = "OrderTopic";
    let producer = RemotingClient::connect(&node.broker).await.unwrap();
    for seq in 0..PER_KEY {
        for key in 0..KEYS_COUNT {
            let name = format!("order-{key}");
            send(
                &producer,
                topic,
                select(key),
                &name,
                format!("{name}:{seq}"),
            )
            .await;
        }
    }

    let group = "OrderGroup";
    let c1 = OrderlyConsumer::join(&node.broker, "c1@order", group, topic).await;
    let c2 = OrderlyConsumer::join(&node.broker, "c2@order", group, topic).await;
    // Exclusive: c1 takes every queue, c2 gets none of them; a repeated lock refreshes c1's.
    assert_eq!(c1.lock(&[0, 1, 2, 3]).await, vec![0, 1, 2, 3]);
    assert_eq!(c2.lock(&[0, 1, 2, 3]).await, Vec::<i32>::new());
    assert_eq!(c1.lock(&[0, 1]).await, vec![0, 1]);
    // A released queue passes to the other consumer at once.
    c1.unlock(&[2, 3]).await;
    assert_eq!(c2.lock(&[0, 1, 2, 3]).await, vec![2, 3]);

    let mut per_queue = BTreeMap::new();
    for q in [0, 1] {
        per_queue.insert(q, c1.drain(q, 0, true).await);
    }
    for q in [2, 3] {
        per_queue.insert(q, c2.drain(q, 0, true).await);
    }
    assert_in_order(&per_queue);

    // c1's connection drops without unlocking: its queues stay locked (until the 60 s lapse),
    // so c2 cannot take them over while c1 may still be consuming.
    drop(c1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(c2.lock(&[0, 1, 2, 3]).await, vec![2, 3]);
    assert!(node.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcasting_members_each_read_everything_without_group_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let topic = "BroadcastTopic";
    let group = "BroadcastGroup";
    let producer = RemotingClient::connect(&node.broker).await.unwrap();
    for i in 0..20 {
        send(&producer, topic, i % QUEUES, "b", format!("b:{i}")).await;
    }
    let mut members = Vec::new();
    for id in ["b1@bc", "b2@bc"] {
        let conn = RemotingClient::connect(&node.broker).await.unwrap();
        let notices = conn.take_server_requests().unwrap();
        let mut hb: HeartbeatData = consumer_heartbeat(
            id,
            group,
            vec![subscription(topic, "*", 1)],
            ConsumeFromWhere::ConsumeFromFirstOffset,
        );
        hb.consumer_data_set[0].message_model = MessageModel::Broadcasting;
        hb.consumer_data_set[0].consume_type = ConsumeType::ConsumePassively;
        let resp = conn.invoke(heartbeat_request(&hb), TIMEOUT).await.unwrap();
        assert_eq!(resp.code, ResponseCode::Success.value());
        members.push((
            OrderlyConsumer {
                conn,
                client_id: id.to_string(),
                group: group.to_string(),
                topic: topic.to_string(),
            },
            notices,
        ));
    }
    for (member, _) in &members {
        let mut bodies = BTreeSet::new();
        for q in 0..QUEUES {
            // Broadcasting clients keep offsets locally and send no commit flag.
            for (_, body) in member.drain(q, 0, false).await {
                bodies.insert(body);
            }
        }
        assert_eq!(bodies.len(), 20, "{} read everything", member.client_id);
    }
    // No group offsets on the broker, no membership notices to a broadcasting group.
    let mut stats = RemotingCommand::request(RequestCode::GetConsumeStats.value(), 0);
    stats.ext_fields_mut().insert("consumerGroup", group);
    let resp = producer.invoke(stats, TIMEOUT).await.unwrap();
    assert_eq!(resp.code, ResponseCode::Success.value());
    let stats = ConsumeStats::decode(&resp.body).unwrap();
    assert!(stats.offset_table.is_empty(), "group offsets: {stats:?}");
    for (_, notices) in &mut members {
        while let Ok(cmd) = notices.try_recv() {
            assert_ne!(cmd.code, RequestCode::NotifyConsumerIdsChanged.value());
        }
    }
    assert!(node.stop().success());
}

/// Drives the C++ client (through the `rocketmq` Python binding): orderly sends by key to an
/// orderly push consumer, then two broadcasting push consumers. Prints one JSON line.
const CPP_SCRIPT: &str = r#"
import json, sys, threading, time, os
from rocketmq.client import Producer, PushConsumer, Message
from rocketmq.ffi import MessageModel
ns, topic, run = sys.argv[1], sys.argv[2], sys.argv[3]
keys, per_key, broadcast_count = 4, 20, 30
text = lambda v: v.decode() if isinstance(v, bytes) else v
p = Producer("cpp_order_pg_" + run); p.set_namesrv_addr(ns); p.start()
for seq in range(per_key):
    for k in range(keys):
        m = Message(topic); m.set_keys("k%d" % k); m.set_body("k%d:%d" % (k, seq))
        p.send_orderly(m, k)
p.shutdown()
lock = threading.Lock()
got = {}
def on_order(msg):
    with lock:
        got.setdefault(text(msg.keys), []).append(text(msg.body))
c = PushConsumer("cpp_order_cg_" + run, orderly=True)
c.set_namesrv_addr(ns); c.subscribe(topic, on_order); c.start()
deadline = time.time() + 90
while time.time() < deadline:
    with lock:
        if sum(len(v) for v in got.values()) >= keys * per_key: break
    time.sleep(0.2)
c.shutdown()
ordered = all(v == ["k%s:%d" % (k[1:], i) for i in range(len(v))] for k, v in got.items())
complete = sum(len(v) for v in got.values())
bc = [set(), set()]
def member(i):
    def on_msg(msg):
        body = text(msg.body)
        if body.startswith("bc:"):
            with lock: bc[i].add(body)
    return on_msg
cs = []
for i in range(2):
    b = PushConsumer("cpp_bc_cg_" + run, message_model=MessageModel.BROADCASTING)
    b.set_instance_name("bc%d_%s" % (i, run)); b.set_namesrv_addr(ns)
    b.subscribe(topic, member(i)); b.start(); cs.append(b)
# Broadcasting members without local offsets start at the queues' ends: send after they joined.
time.sleep(8)
p = Producer("cpp_bc_pg_" + run); p.set_namesrv_addr(ns); p.start()
for i in range(broadcast_count):
    m = Message(topic); m.set_keys("bc"); m.set_body("bc:%d" % i); p.send_sync(m)
p.shutdown()
deadline = time.time() + 90
while time.time() < deadline:
    with lock:
        if all(len(s) >= broadcast_count for s in bc): break
    time.sleep(0.2)
for b in cs: b.shutdown()
print(json.dumps({"ordered": ordered, "orderly_received": complete, "broadcast": [len(s) for s in bc]}))
"#;

#[test]
fn cpp_client_orderly_and_broadcasting_push_consumers() {
    let Some(python) = compat_python() else {
        eprintln!("skipping: the compat venv (rocketmq==0.4.4) is not installed");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let out = compat_command(&python, dir.path())
        .args(["-c", CPP_SCRIPT, &node.namesrv, "CppOrderTopic", "1"])
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "C++ client failed:\n{stdout}\n{stderr}"
    );
    let line = stdout.lines().last().unwrap_or_default();
    println!("{line}");
    assert!(line.contains("\"ordered\": true"), "{line}\n{stderr}");
    assert!(line.contains("\"orderly_received\": 80"), "{line}");
    assert!(line.contains("\"broadcast\": [30, 30]"), "{line}");
    assert!(node.stop().success());
}
