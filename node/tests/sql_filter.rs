//! SQL92 property filters on the real `node standalone`, over raw frames as a Java consumer
//! sends them: CHECK_CLIENT_CONFIG before subscribing, a HEART_BEAT carrying an SQL92
//! subscription, pulls with and without their own `subscription`. Only matching messages come
//! back, the next offset moves past the rest, bad expressions get SUBSCRIPTION_PARSE_FAILED,
//! and a node without `enablePropertyFilter=true` refuses SQL92 as Java's broker does.

mod support;

use std::time::Duration;

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use proto_core::body::{ConsumerData, HeartbeatData, MessageQueue, SubscriptionData};
use proto_core::client::{heartbeat_request, pull_request, PullArgs};
use proto_core::filter::{CheckClientRequestBody, EXPRESSION_TYPE_SQL92};
use proto_core::message::properties::{find_property, Properties};
use proto_core::message::record::decode_all;
use proto_core::{RemotingCommand, RequestCode, ResponseCode};
use support::Standalone;

const TIMEOUT: Duration = Duration::from_secs(5);
const TOPIC: &str = "SqlFilterTopic";
const GROUP: &str = "SqlFilterGroup";

fn mq() -> MessageQueue {
    MessageQueue {
        topic: TOPIC.to_string(),
        broker_name: "broker-a".to_string(),
        queue_id: 0,
    }
}

fn sql_subscription(expression: &str, version: i64) -> SubscriptionData {
    SubscriptionData {
        topic: TOPIC.to_string(),
        sub_string: expression.to_string(),
        expression_type: EXPRESSION_TYPE_SQL92.to_string(),
        sub_version: version,
        ..SubscriptionData::default()
    }
}

/// SEND_MESSAGE to queue 0 with user properties `n` and `color` and a tag.
async fn send(broker: &RemotingClient, n: u32) {
    let props: Properties = [
        ("TAGS", if n.is_multiple_of(2) { "TagA" } else { "TagB" }),
        ("n", &n.to_string()),
        ("color", ["red", "green", "blue"][n as usize % 3]),
        ("WAIT", "true"),
    ]
    .into_iter()
    .collect();
    let mut cmd = RemotingCommand::request(RequestCode::SendMessage.value(), 0);
    for (k, v) in [
        ("producerGroup", "sql_pg"),
        ("topic", TOPIC),
        ("defaultTopic", "TBW102"),
        ("defaultTopicQueueNums", "1"),
        ("queueId", "0"),
        ("sysFlag", "0"),
        ("bornTimestamp", "1700000000000"),
        ("flag", "0"),
        ("properties", props.encode().as_str()),
    ] {
        cmd.ext_fields_mut().insert(k, v);
    }
    let cmd = cmd.with_body(Bytes::from(format!("body-{n}")));
    let resp = broker.invoke(cmd, TIMEOUT).await.expect("send answered");
    assert_eq!(
        resp.code,
        ResponseCode::Success.value(),
        "{:?}",
        resp.remark
    );
}

async fn pull(
    broker: &RemotingClient,
    sub: &SubscriptionData,
    offset: i64,
    with_subscription: bool,
) -> RemotingCommand {
    let req = pull_request(&PullArgs {
        group: GROUP,
        mq: &mq(),
        subscription: sub,
        queue_offset: offset,
        commit_offset: None,
        max_msg_nums: 32,
        suspend_timeout_ms: 0,
        with_subscription,
    });
    broker.invoke(req, TIMEOUT).await.expect("pull answered")
}

/// The `n` of every record in a pull response.
fn numbers(resp: &RemotingCommand) -> Vec<u32> {
    decode_all(resp.body.clone())
        .map(|r| {
            let record = r.expect("records decode");
            let n = find_property(&record.properties, "n").expect("every message has n");
            std::str::from_utf8(n)
                .expect("n is UTF-8")
                .parse()
                .expect("n is a number")
        })
        .collect()
}

async fn check_client_config(broker: &RemotingClient, expression: &str) -> RemotingCommand {
    let body = CheckClientRequestBody {
        client_id: "127.0.0.1@sql_filter".to_string(),
        group: GROUP.to_string(),
        subscription_data: Some(sql_subscription(expression, 1)),
        namespace: None,
    };
    let cmd = RemotingCommand::request(RequestCode::CheckClientConfig.value(), 0)
        .with_body(body.encode());
    broker.invoke(cmd, TIMEOUT).await.expect("check answered")
}

async fn heartbeat(broker: &RemotingClient, sub: SubscriptionData) {
    let data = HeartbeatData {
        client_id: "127.0.0.1@sql_filter".to_string(),
        consumer_data_set: vec![ConsumerData {
            group_name: GROUP.to_string(),
            subscription_data_set: vec![sub],
            ..ConsumerData::default()
        }],
        ..HeartbeatData::default()
    };
    let resp = broker
        .invoke(heartbeat_request(&data), TIMEOUT)
        .await
        .expect("heartbeat answered");
    assert_eq!(resp.code, ResponseCode::Success.value());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql92_subscriptions_filter_pulls_on_the_real_node() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &["enablePropertyFilter=true"]);
    let broker = RemotingClient::connect(&node.broker).await.unwrap();
    for n in 0..30 {
        send(&broker, n).await;
    }

    // What a Java push consumer asks before it subscribes.
    let ok = check_client_config(&broker, "n > 10 AND color = 'red'").await;
    assert_eq!(ok.code, ResponseCode::Success.value(), "{:?}", ok.remark);
    let bad = check_client_config(&broker, "n > AND").await;
    assert_eq!(bad.code, ResponseCode::SubscriptionParseFailed.value());

    // Registered by heartbeat; the pull carries no expression of its own.
    let sub = sql_subscription("n > 10 AND color = 'red'", 1);
    heartbeat(&broker, sub.clone()).await;
    let resp = pull(&broker, &sub, 0, false).await;
    assert_eq!(
        resp.code,
        ResponseCode::Success.value(),
        "{:?}",
        resp.remark
    );
    assert_eq!(numbers(&resp), vec![12, 15, 18, 21, 24, 27]);
    assert_eq!(resp.ext("nextBeginOffset"), Some("30"));

    // The pull's own subscription, TAGS included, from the middle of the queue.
    let own = sql_subscription("TAGS = 'TagB' AND n BETWEEN 20 AND 25", 2);
    let resp = pull(&broker, &own, 15, true).await;
    assert_eq!(numbers(&resp), vec![21, 23, 25]);
    // No match: retry at once from past everything examined.
    let none = sql_subscription("color = 'purple'", 2);
    let resp = pull(&broker, &none, 0, true).await;
    assert_eq!(resp.code, ResponseCode::PullRetryImmediately.value());
    assert_eq!(resp.ext("nextBeginOffset"), Some("30"));
    // A selector that does not compile.
    let broken = sql_subscription("n >> 3", 2);
    let resp = pull(&broker, &broken, 0, true).await;
    assert_eq!(resp.code, ResponseCode::SubscriptionParseFailed.value());
    node.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql92_is_refused_without_enable_property_filter() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let broker = RemotingClient::connect(&node.broker).await.unwrap();
    send(&broker, 1).await;
    let check = check_client_config(&broker, "n > 0").await;
    assert_eq!(check.code, ResponseCode::SystemError.value());
    let sub = sql_subscription("n > 0", 1);
    let resp = pull(&broker, &sub, 0, true).await;
    assert_eq!(resp.code, ResponseCode::SystemError.value());
    let remark = resp.remark.unwrap_or_default();
    assert!(remark.contains("does not support"), "{remark}");
    node.stop();
}
