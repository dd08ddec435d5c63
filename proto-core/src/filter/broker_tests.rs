//! Broker scenarios for SQL92 filters: a [`Broker`] over `MemStorage` fed the commands a Java
//! consumer sends (HEART_BEAT with an SQL92 subscription, PULL_MESSAGE with and without its own
//! `subscription`, CHECK_CLIENT_CONFIG), checking which records come back, where the next pull
//! starts, and the response codes for a switched-off broker and bad expressions.

use core::net::SocketAddr;

use bytes::Bytes;
use store_core::format::properties::{find_property, Properties};
use store_core::format::record::decode_all;
use store_core::storage::MemStorage;

use crate::body::{ConsumerData, HeartbeatData, SubscriptionData};
use crate::broker::test_support::{request, sent_command, small_store};
use crate::broker::{Broker, BrokerConfig};
use crate::filter::{CheckClientRequestBody, EXPRESSION_TYPE_SQL92};
use crate::header::PullSysFlag;
use crate::role::{ConnId, Role};
use crate::{RemotingCommand, RequestCode, ResponseCode};

const T0: u64 = 1_700_000_000_000;
const CONN: ConnId = ConnId(1);

struct Harness {
    broker: Broker<MemStorage>,
    now_ms: u64,
    opaque: i32,
}

impl Harness {
    fn new(enable_property_filter: bool) -> Harness {
        let config = BrokerConfig {
            enable_property_filter,
            store: small_store(),
            ..BrokerConfig::default()
        };
        let (mut broker, _report) = Broker::new(config, MemStorage::new(), T0).unwrap();
        broker.handle_timeout(T0);
        broker.handle_turn_end(T0);
        while broker.poll_transmit().is_some() {}
        let remote: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        broker.handle_connected(CONN, remote, None, T0);
        Harness {
            broker,
            now_ms: T0,
            opaque: 0,
        }
    }

    /// Feeds one request and returns the responses the turn produced for it.
    fn call(&mut self, mut cmd: RemotingCommand) -> Vec<RemotingCommand> {
        self.opaque += 1;
        cmd.opaque = self.opaque;
        self.broker.handle_command(CONN, cmd, self.now_ms);
        self.broker.handle_turn_end(self.now_ms);
        std::iter::from_fn(|| self.broker.poll_transmit())
            .filter_map(|t| sent_command(&t))
            .filter(|(conn, cmd)| *conn == CONN && cmd.is_response())
            .map(|(_, cmd)| cmd)
            .collect()
    }

    fn ask(&mut self, cmd: RemotingCommand) -> RemotingCommand {
        let mut responses = self.call(cmd);
        assert_eq!(responses.len(), 1, "one response expected: {responses:?}");
        responses.remove(0)
    }

    /// Sends one message to `T` queue 0 with these properties.
    fn send(&mut self, props: &[(&str, &str)]) {
        let r = self.ask(send_request(props));
        assert_eq!(r.code, ResponseCode::Success.value(), "{:?}", r.remark);
    }

    /// Ten messages: `n` = 0..9, TAGS alternating TagA (even) and TagB (odd); `odd` only on
    /// the odd ones.
    fn send_ten(&mut self) {
        for n in 0..10 {
            let n_text = n.to_string();
            let tag = if n % 2 == 0 { "TagA" } else { "TagB" };
            let mut props = vec![("n", n_text.as_str()), ("TAGS", tag)];
            if n % 2 == 1 {
                props.push(("odd", "yes"));
            }
            self.send(&props);
        }
    }

    fn heartbeat(&mut self, expression: &str, version: i64) {
        let data = HeartbeatData {
            client_id: "127.0.0.1@test".into(),
            consumer_data_set: vec![ConsumerData {
                group_name: "cg".into(),
                subscription_data_set: vec![SubscriptionData {
                    topic: "T".into(),
                    sub_string: expression.into(),
                    expression_type: EXPRESSION_TYPE_SQL92.into(),
                    sub_version: version,
                    ..SubscriptionData::default()
                }],
                ..ConsumerData::default()
            }],
            ..HeartbeatData::default()
        };
        let cmd =
            RemotingCommand::request(RequestCode::HeartBeat.value(), 0).with_body(data.encode());
        assert_eq!(self.ask(cmd).code, ResponseCode::Success.value());
    }
}

/// SEND_MESSAGE for `T` queue 0 with these properties and a small body.
fn send_request(props: &[(&str, &str)]) -> RemotingCommand {
    let props: Properties = props.iter().copied().collect();
    request(
        RequestCode::SendMessage,
        &[
            ("producerGroup", "pg"),
            ("topic", "T"),
            ("defaultTopic", "TBW102"),
            ("defaultTopicQueueNums", "1"),
            ("queueId", "0"),
            ("sysFlag", "0"),
            ("bornTimestamp", "1700000000000"),
            ("flag", "0"),
            ("properties", &props.encode()),
        ],
    )
    .with_body(Bytes::from_static(b"body"))
}

/// PULL_MESSAGE from `T` queue 0; with `sql`, the header carries it as an SQL92 subscription.
fn pull(offset: i64, sys_flag: i32, sql: Option<&str>, sub_version: i64) -> RemotingCommand {
    let (offset, version) = (offset.to_string(), sub_version.to_string());
    let sys_flag = sys_flag | sql.map_or(0, |_| PullSysFlag::SUBSCRIPTION);
    let sys_flag = sys_flag.to_string();
    let mut cmd = request(
        RequestCode::PullMessage,
        &[
            ("consumerGroup", "cg"),
            ("topic", "T"),
            ("queueId", "0"),
            ("queueOffset", &offset),
            ("maxMsgNums", "32"),
            ("sysFlag", &sys_flag),
            ("commitOffset", "-1"),
            ("suspendTimeoutMillis", "15000"),
            ("subVersion", &version),
        ],
    );
    if let Some(sql) = sql {
        cmd.ext_fields_mut().insert("subscription", sql);
        cmd.ext_fields_mut()
            .insert("expressionType", EXPRESSION_TYPE_SQL92);
    }
    cmd
}

/// The `n` property of each record in a pull response.
fn numbers(response: &RemotingCommand) -> Vec<u32> {
    decode_all(response.body.clone())
        .map(|r| {
            let record = r.unwrap();
            let n = find_property(&record.properties, "n").unwrap();
            std::str::from_utf8(n).unwrap().parse().unwrap()
        })
        .collect()
}

fn code(response: &RemotingCommand) -> ResponseCode {
    ResponseCode::from_value(response.code)
}

#[test]
fn pull_header_subscription_returns_only_matching_and_moves_past_the_rest() {
    let mut h = Harness::new(true);
    h.send_ten();
    let r = h.ask(pull(0, 0, Some("n >= 3 AND TAGS = 'TagA'"), 0));
    assert_eq!(code(&r), ResponseCode::Success, "{:?}", r.remark);
    assert_eq!(numbers(&r), vec![4, 6, 8]);
    assert_eq!(r.ext("nextBeginOffset"), Some("10"));
    // Missing properties are unknown, so they never match; TAGS is a property like any other.
    let r = h.ask(pull(0, 0, Some("odd IS NOT NULL OR n < 1"), 0));
    assert_eq!(numbers(&r), vec![0, 1, 3, 5, 7, 9]);
    let r = h.ask(pull(0, 0, Some("odd = 'yes' AND TAGS IN ('TagA')"), 0));
    // Nothing matches: retry at once from past everything looked at.
    assert_eq!(code(&r), ResponseCode::PullRetryImmediately);
    assert_eq!(r.ext("nextBeginOffset"), Some("10"));
    // Later pulls start mid-queue and still see only matches.
    let r = h.ask(pull(5, 0, Some("n BETWEEN 2 AND 7"), 0));
    assert_eq!(numbers(&r), vec![5, 6, 7]);
}

#[test]
fn heartbeat_subscription_filters_pulls_without_their_own() {
    let mut h = Harness::new(true);
    h.send_ten();
    h.heartbeat("n > 6", 1);
    let r = h.ask(pull(0, PullSysFlag::COMMIT_OFFSET, None, 1));
    assert_eq!(code(&r), ResponseCode::Success, "{:?}", r.remark);
    assert_eq!(numbers(&r), vec![7, 8, 9]);
    // A newer subscription replaces the filter.
    h.heartbeat("n < 2", 2);
    let r = h.ask(pull(0, 0, None, 2));
    assert_eq!(numbers(&r), vec![0, 1]);
    // A pull asking for a version the broker has not seen yet.
    let r = h.ask(pull(0, 0, None, 3));
    assert_eq!(code(&r), ResponseCode::SubscriptionNotLatest);
}

#[test]
fn bad_expressions_get_clear_errors() {
    let mut h = Harness::new(true);
    h.send_ten();
    let r = h.ask(pull(0, 0, Some("n >"), 0));
    assert_eq!(code(&r), ResponseCode::SubscriptionParseFailed);
    let remark = r.remark.unwrap_or_default();
    assert!(
        remark.contains("parse the consumer's subscription failed"),
        "{remark}"
    );
    let r = h.ask(pull(0, 0, Some(""), 0));
    assert_eq!(code(&r), ResponseCode::SubscriptionParseFailed);
    // Registered by heartbeat, a bad expression leaves no filter data behind.
    h.heartbeat("n = = 1", 1);
    let r = h.ask(pull(0, 0, None, 1));
    assert_eq!(code(&r), ResponseCode::FilterDataNotExist);
    // A good newer version brings it back.
    h.heartbeat("n = 1", 2);
    assert_eq!(numbers(&h.ask(pull(0, 0, None, 2))), vec![1]);
}

#[test]
fn switched_off_broker_refuses_sql92_as_java_does() {
    let mut h = Harness::new(false);
    h.send_ten();
    let r = h.ask(pull(0, 0, Some("n > 1"), 0));
    assert_eq!(code(&r), ResponseCode::SystemError);
    let remark = r.remark.unwrap_or_default();
    assert!(
        remark.contains("does not support") && remark.contains("SQL92"),
        "{remark}"
    );
    h.heartbeat("n > 1", 1);
    assert_eq!(code(&h.ask(pull(0, 0, None, 1))), ResponseCode::SystemError);
    // TAG subscriptions are unaffected.
    let mut tag_pull = pull(0, PullSysFlag::SUBSCRIPTION, None, 0);
    tag_pull.ext_fields_mut().insert("subscription", "TagB");
    assert_eq!(numbers(&h.ask(tag_pull)), vec![1, 3, 5, 7, 9]);
}

#[test]
fn check_client_config_through_the_broker() {
    let check = |expression: &str| {
        let body = CheckClientRequestBody {
            client_id: "127.0.0.1@test".into(),
            group: "cg".into(),
            subscription_data: Some(SubscriptionData {
                topic: "T".into(),
                sub_string: expression.into(),
                expression_type: EXPRESSION_TYPE_SQL92.into(),
                ..SubscriptionData::default()
            }),
            namespace: None,
        };
        RemotingCommand::request(RequestCode::CheckClientConfig.value(), 0).with_body(body.encode())
    };
    let mut on = Harness::new(true);
    assert_eq!(code(&on.ask(check("a > 1"))), ResponseCode::Success);
    assert_eq!(
        code(&on.ask(check("a >"))),
        ResponseCode::SubscriptionParseFailed
    );
    let mut off = Harness::new(false);
    assert_eq!(code(&off.ask(check("a > 1"))), ResponseCode::SystemError);
}

#[test]
fn held_pull_is_answered_when_a_matching_message_arrives() {
    let mut h = Harness::new(true);
    h.send(&[("n", "0")]);
    // Parked: nothing new at offset 1.
    let held = h.call(pull(1, PullSysFlag::SUSPEND, Some("n = 5"), 0));
    assert!(held.is_empty(), "parked, not answered: {held:?}");
    assert_eq!(h.broker.held_pulls(), 1);
    // A message arrives; the parked pull is answered with it if it matches.
    let mut responses = h.call(send_request(&[("n", "5")]));
    responses.retain(|r| r.ext("nextBeginOffset").is_some());
    assert_eq!(responses.len(), 1, "{responses:?}");
    assert_eq!(numbers(&responses[0]), vec![5]);
    assert_eq!(h.broker.held_pulls(), 0);
}
