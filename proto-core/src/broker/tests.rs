//! Scenario tests: a [`Broker`] over `MemStorage`, driven the way `io-adapters` drives it, fed
//! commands shaped as real clients send them (V1 send keys with `TBW102`, C++ heartbeats,
//! push-consumer pulls), and the golden C++ producer frames replayed byte for byte.

use bytes::{Bytes, BytesMut};
use core::net::SocketAddr;

use store_core::flush::FlushDiskType;
use store_core::format::record::{decode_all, MessageRecord};
use store_core::storage::{MemStorage, Storage};

use std::collections::BTreeMap;

use super::test_support::{request, sent_to, small_store};
use super::*;
use crate::body::GetConsumerListByGroupResponseBody;
use crate::message::properties::Properties;
use crate::FrameDecoder;

const T0: u64 = 1_700_000_000_000;

/// One broker plus its disk and clock.
struct Harness {
    broker: Broker<MemStorage>,
    now_ms: u64,
    opaque: i32,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(|_| {})
    }

    fn with(tweak: impl FnOnce(&mut BrokerConfig)) -> Harness {
        Harness::on_disk(MemStorage::new(), tweak)
    }

    fn on_disk(disk: MemStorage, tweak: impl FnOnce(&mut BrokerConfig)) -> Harness {
        let mut config = BrokerConfig {
            store: small_store(),
            ..BrokerConfig::default()
        };
        tweak(&mut config);
        let (mut broker, _report) = Broker::new(config, disk, T0).unwrap();
        broker.handle_timeout(T0);
        broker.handle_turn_end(T0);
        while broker.poll_transmit().is_some() {}
        let mut h = Harness {
            broker,
            now_ms: T0,
            opaque: 0,
        };
        h.connect(1);
        h
    }

    fn connect(&mut self, conn: u64) {
        let remote: SocketAddr = format!("127.0.0.1:{}", 40_000 + conn).parse().unwrap();
        self.broker
            .handle_connected(ConnId(conn), remote, None, self.now_ms);
    }

    /// Feeds one command without ending the turn.
    fn feed(&mut self, conn: u64, mut cmd: RemotingCommand) {
        self.opaque += 1;
        cmd.opaque = self.opaque;
        self.broker.handle_command(ConnId(conn), cmd, self.now_ms);
    }

    /// Ends the turn and drains what the broker wants done.
    fn turn(&mut self) -> Vec<Transmit> {
        self.broker.handle_turn_end(self.now_ms);
        std::iter::from_fn(|| self.broker.poll_transmit()).collect()
    }

    /// One request in a turn of its own; returns the responses sent on `conn`.
    fn call(&mut self, conn: u64, cmd: RemotingCommand) -> Vec<RemotingCommand> {
        self.feed(conn, cmd);
        sent_to(&self.turn(), conn)
    }

    /// One request that must get exactly one response.
    fn ask(&mut self, conn: u64, cmd: RemotingCommand) -> RemotingCommand {
        let mut responses = self.call(conn, cmd);
        // Server-initiated requests (NOTIFY_CONSUMER_IDS_CHANGED) may share the turn.
        responses.retain(RemotingCommand::is_response);
        assert_eq!(responses.len(), 1, "one response expected: {responses:?}");
        let response = responses.remove(0);
        assert!(response.is_response());
        assert_eq!(response.opaque, self.opaque);
        response
    }

    fn advance(&mut self, ms: u64) -> Vec<Transmit> {
        self.now_ms += ms;
        self.broker.handle_timeout(self.now_ms);
        self.turn()
    }
}

/// SEND_MESSAGE (10) with V1 keys, as the C++ client sends it.
fn send(topic: &str, queue_id: i32, props: &str, body: &'static [u8]) -> RemotingCommand {
    test_support::send_message(topic, queue_id, props, Bytes::from_static(body))
}

fn pull(topic: &str, queue_id: i32, offset: i64, sys_flag: i32, sub: &str) -> RemotingCommand {
    let (queue_id, offset, sys_flag) = (
        queue_id.to_string(),
        offset.to_string(),
        sys_flag.to_string(),
    );
    request(
        RequestCode::PullMessage,
        &[
            ("consumerGroup", "cg"),
            ("topic", topic),
            ("queueId", &queue_id),
            ("queueOffset", &offset),
            ("maxMsgNums", "32"),
            ("sysFlag", &sys_flag),
            ("commitOffset", "-1"),
            ("suspendTimeoutMillis", "15000"),
            ("subscription", sub),
            ("subVersion", "0"),
        ],
    )
}

fn records(cmd: &RemotingCommand) -> Vec<MessageRecord> {
    decode_all(cmd.body.clone()).map(Result::unwrap).collect()
}

fn tags(tag: &str) -> String {
    format!("TAGS\u{1}{tag}\u{2}WAIT\u{1}true\u{2}")
}

/// A pull of several records answers with the records as separate parts, each the stored
/// bytes of one record as the store handed them out (views of the mapped segments in
/// production), so the driver writes them from where they lie; one record goes as the body.
#[test]
fn a_pull_of_several_records_sends_them_as_parts_not_one_copied_body() {
    let mut h = Harness::new();
    for (queue, body) in [
        (0, &b"first"[..]),
        (1, b"other"),
        (0, b"second"),
        (0, b"third"),
    ] {
        let r = h.ask(1, send("Parts", queue, &tags("T"), body));
        assert_eq!(r.code, ResponseCode::Success.value(), "{:?}", r.remark);
    }
    h.feed(1, pull("Parts", 0, 0, 0x4, "*"));
    let sent = h.turn();
    let [Transmit::SendParts { conn, cmd, parts }] = sent.as_slice() else {
        panic!("one answer in parts expected: {sent:?}");
    };
    assert_eq!(*conn, ConnId(1));
    assert_eq!(cmd.code, ResponseCode::Success.value());
    assert!(cmd.body.is_empty());
    let bodies: Vec<Vec<u8>> = parts
        .iter()
        .map(|part| {
            let records: Vec<_> = decode_all(part.clone()).map(Result::unwrap).collect();
            assert_eq!(records.len(), 1, "one record per part");
            records[0].body.to_vec()
        })
        .collect();
    assert_eq!(
        bodies,
        [b"first".to_vec(), b"second".to_vec(), b"third".to_vec()]
    );
    // What the consumer reads: the same records back to back.
    let joined = sent_to(&sent, 1);
    let got: Vec<_> = records(&joined[0]).into_iter().map(|r| r.body).collect();
    assert_eq!(got, [&b"first"[..], b"second", b"third"]);

    let r = h.ask(1, pull("Parts", 1, 0, 0x4, "*"));
    assert_eq!(records(&r).len(), 1, "a single record is the body itself");
}

#[test]
fn send_auto_creates_from_tbw102_then_pull_returns_the_record() {
    let mut h = Harness::new();
    let r = h.ask(1, send("Orders", 2, &tags("TagA"), b"hello"));
    assert_eq!(r.code, ResponseCode::Success.value(), "{:?}", r.remark);
    assert_eq!(r.ext("MSG_REGION"), Some("DefaultRegion"));
    assert_eq!(r.ext("TRACE_ON"), Some("true"));
    assert_eq!(r.ext("queueId"), Some("2"));
    assert_eq!(r.ext("queueOffset"), Some("0"));
    assert_eq!(r.ext("msgId").map(str::len), Some(32));
    let uniq = r.ext("transactionId").unwrap().to_string();
    // Auto-created with min(4, 8) queues, perm RW.
    let config = h.broker.topics().select("Orders").unwrap();
    assert_eq!(
        (config.read_queue_nums, config.write_queue_nums, config.perm),
        (4, 4, 6)
    );

    let r = h.ask(1, pull("Orders", 2, 0, 0x4, "*"));
    assert_eq!(r.code, ResponseCode::Success.value());
    assert_eq!(r.remark.as_deref(), Some("FOUND"));
    assert_eq!(r.ext("nextBeginOffset"), Some("1"));
    assert_eq!(r.ext("minOffset"), Some("0"));
    assert_eq!(r.ext("maxOffset"), Some("1"));
    assert_eq!(r.ext("suggestWhichBrokerId"), Some("0"));
    let got = records(&r);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], b"hello");
    assert_eq!(got[0].born_host.to_string(), "127.0.0.1:40001");
    assert_eq!(got[0].store_host.to_string(), "127.0.0.1:10911");
    let props = Properties::parse_bytes(&got[0].properties);
    assert_eq!(props.get("TAGS"), Some("TagA"));
    assert_eq!(props.get("UNIQ_KEY"), Some(uniq.as_str()));
    assert_eq!(props.get("CLUSTER"), Some("DefaultCluster"));

    // Next offset: nothing new, no suspend flag -> PULL_NOT_FOUND at once.
    let r = h.ask(1, pull("Orders", 2, 1, 0x4, "*"));
    assert_eq!(r.code, ResponseCode::PullNotFound.value());
    assert_eq!(r.remark.as_deref(), Some("OFFSET_OVERFLOW_ONE"));
    // Past the end -> OFFSET_MOVED to max.
    let r = h.ask(1, pull("Orders", 2, 7, 0x4, "*"));
    assert_eq!(r.code, ResponseCode::PullOffsetMoved.value());
    assert_eq!(r.ext("nextBeginOffset"), Some("1"));
}

#[test]
fn without_auto_creation_unknown_topics_do_not_exist() {
    let mut h = Harness::with(|c| c.auto_create_topic_enable = false);
    let r = h.ask(1, send("Nope", 0, "", b"x"));
    assert_eq!(r.code, ResponseCode::TopicNotExist.value());
    assert_eq!(r.ext("MSG_REGION"), Some("DefaultRegion"));
    let r = h.ask(1, pull("Nope", 0, 0, 0x4, "*"));
    assert_eq!(r.code, ResponseCode::TopicNotExist.value());
}

#[test]
fn negative_queue_ids_pick_a_queue_and_bad_ones_are_refused() {
    let mut h = Harness::new();
    for _ in 0..8 {
        let r = h.ask(1, send("Spread", -1, "", b"x"));
        assert_eq!(r.code, 0);
        let q: i32 = r.ext("queueId").unwrap().parse().unwrap();
        assert!((0..4).contains(&q));
    }
    let r = h.ask(1, send("Spread", 4, "", b"x"));
    assert_eq!(r.code, ResponseCode::InvalidParameter.value());
    let r = h.ask(1, send("bad topic!", 0, "", b"x"));
    assert_eq!(r.code, ResponseCode::InvalidParameter.value());
    let r = h.ask(1, send("SCHEDULE_TOPIC_XXXX", 0, "", b"x"));
    assert_eq!(r.code, ResponseCode::NoPermission.value());
}

#[test]
fn long_poll_is_parked_then_woken_by_a_send() {
    let mut h = Harness::new();
    h.connect(2);
    h.ask(1, send("Live", 0, "", b"first"));
    // Consumer on conn 2 at the end of queue 0, suspend + subscription.
    let parked = h.call(2, pull("Live", 0, 1, 0x2 | 0x4, "*"));
    assert!(parked.is_empty(), "a pull with nothing new is held");
    let pull_opaque = h.opaque;
    assert_eq!(h.broker.held_pulls(), 1);
    // A send to another queue does not wake it.
    h.ask(1, send("Live", 1, "", b"elsewhere"));
    assert_eq!(h.broker.held_pulls(), 1);
    h.feed(1, send("Live", 0, "", b"second"));
    let out = h.turn();
    let woken = sent_to(&out, 2);
    assert_eq!(woken.len(), 1);
    assert_eq!(woken[0].opaque, pull_opaque);
    assert_eq!(woken[0].code, ResponseCode::Success.value());
    assert_eq!(&records(&woken[0])[0].body[..], b"second");
    assert_eq!(sent_to(&out, 1).len(), 1, "the send is answered too");
    assert_eq!(h.broker.held_pulls(), 0);
}

#[test]
fn long_poll_times_out_with_pull_not_found_and_closed_connections_drop_it() {
    let mut h = Harness::new();
    h.connect(2);
    h.ask(1, send("Quiet", 0, "", b"x"));
    assert!(h.call(2, pull("Quiet", 0, 1, 0x6, "*")).is_empty());
    assert!(h.broker.next_timeout().unwrap() <= h.now_ms + 15_000);
    assert!(sent_to(&h.advance(14_000), 2).is_empty());
    let out = sent_to(&h.advance(1_000), 2);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].code, ResponseCode::PullNotFound.value());
    assert_eq!(out[0].ext("nextBeginOffset"), Some("1"));

    // Parked on an empty, never-written queue (offset 0), then the connection closes.
    assert!(h.call(2, pull("Quiet", 3, 0, 0x6, "*")).is_empty());
    h.broker.handle_closed(ConnId(2), h.now_ms);
    assert_eq!(h.broker.held_pulls(), 0);
}

#[test]
fn held_pulls_are_bounded() {
    let mut h = Harness::with(|c| c.pull_hold_max = 1);
    h.ask(1, send("B", 0, "", b"x"));
    assert!(h.call(1, pull("B", 0, 1, 0x6, "*")).is_empty());
    let r = h.ask(1, pull("B", 0, 1, 0x6, "*"));
    assert_eq!(r.code, ResponseCode::PullNotFound.value());
}

#[test]
fn tag_subscriptions_filter_by_hash_and_exact_tag() {
    let mut h = Harness::new();
    for tag in ["TagA", "TagB", "TagA", "TagC"] {
        h.ask(1, send("Tagged", 0, &tags(tag), b"m"));
    }
    let r = h.ask(1, pull("Tagged", 0, 0, 0x4, "TagA"));
    assert_eq!(r.code, 0);
    let got = records(&r);
    assert_eq!(got.len(), 2);
    assert!(got
        .iter()
        .all(|m| Properties::parse_bytes(&m.properties).get("TAGS") == Some("TagA")));
    let r = h.ask(1, pull("Tagged", 0, 0, 0x4, "TagB || TagC"));
    assert_eq!(records(&r).len(), 2);
    // Only non-matching entries: PULL_RETRY_IMMEDIATELY, moving past them.
    let r = h.ask(1, pull("Tagged", 0, 3, 0x4, "TagA"));
    assert_eq!(r.code, ResponseCode::PullRetryImmediately.value());
    assert_eq!(r.remark.as_deref(), Some("NO_MATCHED_MESSAGE"));
    assert_eq!(r.ext("nextBeginOffset"), Some("4"));
    let r = h.ask(1, pull("Tagged", 0, 0, 0x4, "SQL92-ish"));
    assert_eq!(records(&r).len(), 0);
}

/// The C++ client's heartbeat: integer enums, `codeSet: [0]` for a tag.
fn cpp_heartbeat(client_id: &str, group: &str, topic: &str, tag: &str) -> RemotingCommand {
    let body = format!(
        concat!(
            r#"{{"clientID":"{}","consumerDataSet":[{{"consumeFromWhere":0,"consumeType":1,"#,
            r#""groupName":"{}","messageModel":1,"subscriptionDataSet":[{{"codeSet":[0],"#,
            r#""subString":"{}","subVersion":"1700000000000","tagsSet":["{}"],"topic":"{}"}}]}}],"#,
            r#""producerDataSet":[{{"groupName":"pg"}}]}}"#,
            "\n"
        ),
        client_id, group, tag, tag, topic
    );
    request(RequestCode::HeartBeat, &[]).with_body(body.into_bytes())
}

#[test]
fn heartbeat_registers_groups_creates_retry_topic_and_serves_subscriptions() {
    let mut h = Harness::new();
    h.ask(1, send("Hb", 0, &tags("TagA"), b"a"));
    h.ask(1, send("Hb", 0, &tags("TagB"), b"b"));
    let r = h.ask(1, cpp_heartbeat("1-127.0.0.1@A", "cg", "Hb", "TagA"));
    assert_eq!(r.code, 0);
    assert_eq!(r.ext("IS_SUPPORT_HEART_BEAT_V2"), Some("true"));
    assert_eq!(r.ext("IS_SUB_CHANGE"), Some("true"));
    assert!(h.broker.topics().contains("%RETRY%cg"));
    // Pull without the subscription flag uses the heartbeat's, with codes recomputed.
    let mut p = pull("Hb", 0, 0, 0, "");
    p.ext_fields_mut().insert("subVersion", "1700000000000");
    let r = h.ask(1, p);
    assert_eq!(r.code, 0, "{:?}", r.remark);
    let got = records(&r);
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].body[..], b"a");
    // A newer subVersion in the pull than the heartbeat's: not latest.
    let mut p = pull("Hb", 0, 0, 0, "");
    p.ext_fields_mut().insert("subVersion", "1800000000000");
    assert_eq!(
        h.ask(1, p).code,
        ResponseCode::SubscriptionNotLatest.value()
    );

    // A second member joins on conn 2: both are told (oneway NOTIFY_CONSUMER_IDS_CHANGED).
    h.connect(2);
    h.feed(2, cpp_heartbeat("2-127.0.0.1@B", "cg", "Hb", "TagA"));
    let out = h.turn();
    let notified: Vec<_> = out
        .iter()
        .filter_map(|t| match t {
            Transmit::Send { conn, cmd }
                if cmd.code == RequestCode::NotifyConsumerIdsChanged.value() =>
            {
                assert!(cmd.is_oneway() && !cmd.is_response());
                assert_eq!(cmd.ext("consumerGroup"), Some("cg"));
                Some(*conn)
            }
            _ => None,
        })
        .collect();
    assert_eq!(notified, vec![ConnId(1), ConnId(2)]);
    let r = h.ask(
        1,
        request(
            RequestCode::GetConsumerListByGroup,
            &[("consumerGroup", "cg")],
        ),
    );
    let mut ids = GetConsumerListByGroupResponseBody::decode(&r.body)
        .unwrap()
        .consumer_id_list;
    ids.sort();
    assert_eq!(ids, vec!["1-127.0.0.1@A", "2-127.0.0.1@B"]);

    // Conn 2 closes: conn 1 is told; then the C++ client's unregister (empty producer group).
    h.broker.handle_closed(ConnId(2), h.now_ms);
    let told = sent_to(&h.turn(), 1);
    assert_eq!(told.len(), 1);
    let unregister = request(
        RequestCode::UnregisterClient,
        &[
            ("clientID", "1-127.0.0.1@A"),
            ("producerGroup", ""),
            ("consumerGroup", "cg"),
        ],
    );
    assert_eq!(h.ask(1, unregister).code, 0);
    let r = h.ask(
        1,
        request(
            RequestCode::GetConsumerListByGroup,
            &[("consumerGroup", "cg")],
        ),
    );
    assert_eq!(r.code, ResponseCode::SystemError.value());
    assert_eq!(r.remark.as_deref(), Some("no consumer for this group, cg"));
}

#[test]
fn silent_clients_expire_and_their_connections_close() {
    let mut h = Harness::new();
    h.ask(1, cpp_heartbeat("1@A", "cg", "T", "*"));
    let out = h.advance(130_000);
    assert!(out
        .iter()
        .any(|t| matches!(t, Transmit::Close { conn, .. } if *conn == ConnId(1))));
}

#[test]
fn query_not_found_then_get_max_offset_then_commits_persist() {
    let disk = MemStorage::new();
    let mut h = Harness::on_disk(disk.clone(), |_| {});
    h.ask(1, send("Off", 1, "", b"a"));
    h.ask(1, send("Off", 1, "", b"b"));
    let query = |queue: &str| {
        request(
            RequestCode::QueryConsumerOffset,
            &[
                ("consumerGroup", "cg"),
                ("topic", "Off"),
                ("queueId", queue),
            ],
        )
    };
    // Queue 0 is empty: QUERY_NOT_FOUND, as the C++ push consumer sees before GET_MAX_OFFSET.
    let r = h.ask(1, query("0"));
    assert_eq!(r.code, ResponseCode::QueryNotFound.value());
    let r = h.ask(
        1,
        request(
            RequestCode::GetMaxOffset,
            &[("topic", "Off"), ("queueId", "1")],
        ),
    );
    assert_eq!(r.ext("offset"), Some("2"));
    let r = h.ask(
        1,
        request(
            RequestCode::GetMinOffset,
            &[("topic", "Off"), ("queueId", "1")],
        ),
    );
    assert_eq!(r.ext("offset"), Some("0"));
    // Queue 1 still holds message 0: SUCCESS 0.
    assert_eq!(h.ask(1, query("1")).ext("offset"), Some("0"));
    let update = request(
        RequestCode::UpdateConsumerOffset,
        &[
            ("consumerGroup", "cg"),
            ("topic", "Off"),
            ("queueId", "1"),
            ("commitOffset", "2"),
        ],
    );
    assert_eq!(h.ask(1, update.clone()).code, 0);
    let mut oneway = update;
    oneway.mark_oneway();
    assert!(
        h.call(1, oneway).is_empty(),
        "oneway requests get no response"
    );
    assert_eq!(h.ask(1, query("1")).ext("offset"), Some("2"));
    let r = h.ask(
        1,
        request(
            RequestCode::GetEarliestMsgStoretime,
            &[("topic", "Off"), ("queueId", "1")],
        ),
    );
    assert_eq!(r.ext("timestamp"), Some(T0.to_string().as_str()));

    // A clean stop and a restart on the same disk keep offsets and topics.
    h.broker.shutdown(h.now_ms).unwrap();
    assert_eq!(disk.len("abort").unwrap(), None);
    assert!(disk.len("config/consumerOffset.json").unwrap().is_some());
    let mut h = Harness::on_disk(disk, |_| {});
    assert_eq!(h.ask(1, query("1")).ext("offset"), Some("2"));
    assert!(h.broker.topics().contains("Off"));
    assert_eq!(records(&h.ask(1, pull("Off", 1, 0, 0x4, "*"))).len(), 2);
}

#[test]
fn sync_flush_replies_only_after_the_turn_syncs() {
    let disk = MemStorage::new();
    let mut h = Harness::on_disk(disk.clone(), |c| {
        c.store.flush.flush_disk_type = FlushDiskType::SyncFlush;
    });
    h.feed(1, send("Durable", 0, "", b"one"));
    h.feed(1, send("Durable", 0, "", b"two"));
    assert!(
        h.broker.poll_transmit().is_none(),
        "no SYNC_FLUSH reply before the turn's sync"
    );
    let replies = sent_to(&h.turn(), 1);
    assert_eq!(replies.len(), 2);
    assert!(replies.iter().all(|r| r.code == 0));
    // What was acknowledged survives a crash.
    disk.crash(None);
    let mut h = Harness::on_disk(disk, |_| {});
    let got = records(&h.ask(1, pull("Durable", 0, 0, 0x4, "*")));
    assert_eq!(got.len(), 2);
}

#[test]
fn sync_flush_failure_times_out_with_flush_disk_timeout() {
    let disk = MemStorage::new();
    let mut h = Harness::on_disk(disk.clone(), |c| {
        c.store.flush.flush_disk_type = FlushDiskType::SyncFlush;
    });
    disk.set_fail_io(true);
    h.feed(1, send("Durable", 0, "", b"one"));
    let first = sent_to(&h.turn(), 1);
    disk.set_fail_io(false);
    let later = sent_to(&h.advance(5_000), 1);
    let all: Vec<_> = first.into_iter().chain(later).collect();
    assert_eq!(all.len(), 1, "the send is answered exactly once");
    assert_ne!(all[0].code, 0);
}

#[test]
fn malformed_and_unknown_requests_get_error_replies() {
    let mut h = Harness::new();
    let r = h.ask(1, request(RequestCode::SendMessage, &[("topic", "T")]));
    assert_eq!(r.code, ResponseCode::SystemError.value());
    assert_eq!(
        r.remark.as_deref(),
        Some("the custom field <producerGroup> is null")
    );
    let mut bad = pull("T", 0, 0, 0x4, "*");
    bad.ext_fields_mut().insert("queueOffset", "12a");
    assert_eq!(h.ask(1, bad).code, ResponseCode::SystemError.value());
    let r = h.ask(1, RemotingCommand::request(9999, 0));
    assert_eq!(r.code, ResponseCode::RequestCodeNotSupported.value());
    assert_eq!(
        r.remark.as_deref(),
        Some(" request type 9999 not supported")
    );
    let r = h.ask(
        1,
        request(RequestCode::HeartBeat, &[]).with_body(&b"{not json"[..]),
    );
    assert_eq!(r.code, ResponseCode::SystemError.value());
    let r = h.ask(1, send("T", 0, "", b"x").with_body(&b"garbage"[..]));
    assert_eq!(r.code, 0, "a single message body is opaque");
    let mut batch = send("T", 0, "", b"x");
    batch.ext_fields_mut().insert("batch", "1");
    let r = h.ask(1, batch.with_body(&b"\x00\x00\x00\x05garbage"[..]));
    assert_eq!(r.code, ResponseCode::MessageIllegal.value());
    let r = h.ask(
        1,
        request(RequestCode::LockBatchMq, &[]).with_body(&b"[1,2"[..]),
    );
    assert_eq!(r.code, ResponseCode::SystemError.value());
}

#[test]
fn registers_at_start_on_topic_change_and_unregisters_at_shutdown() {
    let disk = MemStorage::new();
    let config = BrokerConfig {
        namesrv_addrs: vec!["127.0.0.1:9876".into(), "127.0.0.1:9877".into()],
        store: small_store(),
        ..BrokerConfig::default()
    };
    let (mut broker, _) = Broker::new(config, disk.clone(), T0).unwrap();
    assert_eq!(broker.next_timeout(), Some(T0));
    broker.handle_timeout(T0);
    let requests = |broker: &mut Broker<MemStorage>, code: RequestCode| {
        std::iter::from_fn(|| broker.poll_transmit())
            .filter_map(|t| match t {
                Transmit::Request { addr, cmd } if cmd.code == code.value() => Some((addr, cmd)),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let first = requests(&mut broker, RequestCode::RegisterBroker);
    assert_eq!(first.len(), 2);
    let (_, cmd) = &first[0];
    assert_eq!(cmd.ext("brokerAddr"), Some("127.0.0.1:10911"));
    assert_eq!(cmd.ext("brokerName"), Some("broker-a"));
    assert_eq!(cmd.ext("clusterName"), Some("DefaultCluster"));
    let body = crate::body::RegisterBrokerBody::decode(&cmd.body, false).unwrap();
    assert!(body
        .topic_config_serialize_wrapper
        .topic_config_table
        .contains_key("TBW102"));
    // Nothing again until the period passes.
    broker.handle_timeout(T0 + 1_000);
    assert!(requests(&mut broker, RequestCode::RegisterBroker).is_empty());
    // A topic created by a send registers at once.
    broker.handle_connected(ConnId(1), "127.0.0.1:5000".parse().unwrap(), None, T0);
    broker.handle_command(ConnId(1), send("NewTopic", 0, "", b"x"), T0 + 1_000);
    assert_eq!(requests(&mut broker, RequestCode::RegisterBroker).len(), 2);
    broker.handle_timeout(T0 + 30_000);
    assert_eq!(requests(&mut broker, RequestCode::RegisterBroker).len(), 2);
    broker.shutdown(T0 + 31_000).unwrap();
    assert_eq!(
        requests(&mut broker, RequestCode::UnregisterBroker).len(),
        2
    );
    assert_eq!(disk.len("abort").unwrap(), None);
    assert_eq!(broker.next_timeout(), None);
}

#[test]
fn send_back_goes_to_retry_then_to_the_dlq() {
    let mut h = Harness::new();
    h.ask(1, send("Work", 0, &tags("TagA"), b"job"));
    let original = records(&h.ask(1, pull("Work", 0, 0, 0x4, "*"))).remove(0);
    let back = |offset: i64, max: &str| {
        let offset = offset.to_string();
        request(
            RequestCode::ConsumerSendMsgBack,
            &[
                ("offset", offset.as_str()),
                ("group", "cg"),
                ("delayLevel", "0"),
                ("maxReconsumeTimes", max),
            ],
        )
    };
    assert_eq!(h.ask(1, back(original.physical_offset, "16")).code, 0);
    // Level 3 (10 s) in SCHEDULE_TOPIC_XXXX first; see delay_tests.rs for the ladder.
    h.advance(10_000);
    let retry = records(&h.ask(1, pull("%RETRY%cg", 0, 0, 0x4, "*"))).remove(0);
    assert_eq!(&retry.body[..], b"job");
    assert_eq!(retry.reconsume_times, 1);
    let props = Properties::parse_bytes(&retry.properties);
    assert_eq!(props.get("RETRY_TOPIC"), Some("Work"));
    assert_eq!(props.get("DELAY"), None);
    assert_eq!(props.get("TAGS"), Some("TagA"));
    // Reconsumed once with a limit of 1: the DLQ.
    assert_eq!(h.ask(1, back(retry.physical_offset, "1")).code, 0);
    let dead = records(&h.ask(1, pull("%DLQ%cg", 0, 0, 0x4, "*"))).remove(0);
    assert_eq!(dead.reconsume_times, 2);
    assert_eq!(
        h.ask(1, back(999_999, "16")).code,
        ResponseCode::SystemError.value()
    );
}

#[test]
fn admin_topic_lifecycle_and_stats() {
    let mut h = Harness::new();
    let create = request(
        RequestCode::UpdateAndCreateTopic,
        &[
            ("topic", "Adm"),
            ("defaultTopic", "TBW102"),
            ("readQueueNums", "2"),
            ("writeQueueNums", "2"),
            ("perm", "6"),
            ("topicFilterType", "SINGLE_TAG"),
            ("order", "false"),
        ],
    );
    assert_eq!(h.ask(1, create).code, 0);
    h.ask(1, send("Adm", 1, "KEYS\u{1}k1\u{2}", b"x"));
    let r = h.ask(
        1,
        request(RequestCode::GetTopicStatsInfo, &[("topic", "Adm")]),
    );
    assert_eq!(r.code, 0);
    let stats = crate::body::TopicStatsTable::decode(&r.body).unwrap();
    assert_eq!(stats.offset_table.len(), 2);
    assert!(stats.offset_table.values().any(|o| o.max_offset == 1));
    let r = h.ask(1, request(RequestCode::GetAllTopicConfig, &[]));
    assert!(String::from_utf8_lossy(&r.body).contains("\"Adm\""));
    let r = h.ask(1, request(RequestCode::GetBrokerRuntimeInfo, &[]));
    assert!(String::from_utf8_lossy(&r.body).contains("commitLogMaxOffset"));
    let query = |key: &str| {
        request(
            RequestCode::QueryMessage,
            &[
                ("topic", "Adm"),
                ("key", key),
                ("maxNum", "32"),
                ("beginTimestamp", "0"),
                ("endTimestamp", "9999999999999"),
            ],
        )
    };
    let r = h.ask(1, query("k1"));
    assert_eq!(r.code, 0, "{:?}", r.remark);
    assert_eq!(records(&r).len(), 1);
    assert_eq!(
        h.ask(1, query("k2")).code,
        ResponseCode::QueryNotFound.value()
    );
    let r = h.ask(1, request(RequestCode::ViewMessageById, &[("offset", "0")]));
    assert_eq!(r.code, 0);
    assert_eq!(records(&r).len(), 1);
    let r = h.ask(
        1,
        request(RequestCode::ViewMessageById, &[("offset", "77777")]),
    );
    assert_eq!(r.code, ResponseCode::SystemError.value());
    let r = h.ask(
        1,
        request(
            RequestCode::GetConsumerConnectionList,
            &[("consumerGroup", "none")],
        ),
    );
    assert_eq!(r.code, ResponseCode::ConsumerNotOnline.value());
    let r = h.ask(
        1,
        request(
            RequestCode::GetConsumeStats,
            &[("consumerGroup", "cg"), ("topic", "Adm")],
        ),
    );
    assert_eq!(r.code, 0);
    assert_eq!(
        h.ask(
            1,
            request(RequestCode::DeleteTopicInBroker, &[("topic", "Adm")])
        )
        .code,
        0
    );
    assert!(!h.broker.topics().contains("Adm"));
}

/// Replays every c2s frame a capture sent to the broker, in order, each connection of the
/// capture on its own connection (numbered from `conn_base`). Returns, per request code, the
/// response codes seen; parked pulls count as no response.
fn replay(h: &mut Harness, text: &str, conn_base: u64) -> BTreeMap<i32, Vec<i32>> {
    let mut seen: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    let mut flows = std::collections::BTreeSet::new();
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let server = record["server"].as_str().unwrap();
        if record["dir"] != "c2s" || !server.contains("broker") {
            continue;
        }
        let conn = conn_base + record["flow"].as_u64().unwrap();
        if flows.insert(conn) {
            h.connect(conn);
        }
        let hex = record["hex"].as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut buf = BytesMut::from(&bytes[..]);
        let cmd = FrameDecoder::new().decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        let (code, oneway, opaque) = (cmd.code, cmd.is_oneway(), cmd.opaque);
        h.broker.handle_command(ConnId(conn), cmd, h.now_ms);
        let out = sent_to(&h.turn(), conn);
        let answers: Vec<_> = out
            .iter()
            .filter(|c| c.is_response() && c.opaque == opaque)
            .collect();
        if oneway {
            assert!(answers.is_empty(), "code {code}: oneway answered");
            continue;
        }
        assert!(answers.len() <= 1, "code {code}: {answers:?}");
        let codes = seen.entry(code).or_default();
        if let Some(answer) = answers.first() {
            if code == RequestCode::SendMessage.value() {
                assert!(answer.ext("MSG_REGION").is_some());
            }
            codes.push(answer.code);
        } else {
            assert_eq!(
                code,
                RequestCode::PullMessage.value(),
                "only pulls may be held"
            );
        }
        h.now_ms += 10;
    }
    seen
}

/// Every c2s frame the C++ producer sent to the broker in the golden capture, replayed in
/// order against a fresh broker: each request is answered, and every one succeeds (topics are
/// auto-created through TBW102, the batch of 3 and the compressed send are stored).
#[test]
fn cpp_producer_capture_replays_cleanly() {
    let mut h = Harness::new();
    let seen = replay(
        &mut h,
        include_str!("../../../../shared/vectors/cpp-producer.jsonl"),
        10,
    );
    let sends = &seen[&RequestCode::SendMessage.value()];
    assert_eq!(sends.len(), 47);
    for (code, answers) in &seen {
        assert!(answers.iter().all(|&c| c == 0), "code {code}: {answers:?}");
    }
    let total: u64 = (0..4)
        .map(|q| h.broker.store().max_offset_in_queue("GoldenExtra", q))
        .sum();
    assert!(total >= 8, "GoldenExtra holds {total} messages");
}

/// The C++ push and pull consumers, replayed after the producer capture (so their topics
/// exist and hold messages): heartbeats with integer enums, pulls with sysFlag 4/6/7, offset
/// queries and commits, GET_MAX_OFFSET. Nothing is refused as malformed or unknown, pulls
/// find messages, and parked pulls are answered once their hold time passes.
#[test]
fn cpp_consumer_captures_replay_cleanly() {
    let mut h = Harness::new();
    replay(
        &mut h,
        include_str!("../../../../shared/vectors/cpp-producer.jsonl"),
        10,
    );
    let push = replay(
        &mut h,
        include_str!("../../../../shared/vectors/cpp-push-consumer.jsonl"),
        100,
    );
    let pull = replay(
        &mut h,
        include_str!("../../../../shared/vectors/cpp-pull-consumer.jsonl"),
        200,
    );
    for seen in [&push, &pull] {
        for (code, answers) in seen {
            let refused = [1, 3, 13, 14, 16, 17, 23, 24, 25, 26, 29];
            assert!(
                answers.iter().all(|c| !refused.contains(c)),
                "request {code}: {answers:?}"
            );
        }
    }
    let pulls = &push[&RequestCode::PullMessage.value()];
    assert!(
        pulls.contains(&0),
        "push consumer pulls found messages: {pulls:?}"
    );
    assert!(pull[&RequestCode::PullMessage.value()].contains(&0));
    assert!(push[&RequestCode::GetMaxOffset.value()]
        .iter()
        .all(|&c| c == 0));
    let held = h.broker.held_pulls();
    let out = h.advance(16_000);
    let answered = out
        .iter()
        .filter(|t| matches!(t, Transmit::Send { cmd, .. } if cmd.code == ResponseCode::PullNotFound.value()))
        .count();
    assert_eq!(answered, held);
    assert_eq!(h.broker.held_pulls(), 0);
}

/// rocketmq-client-rust: string enums, `bname`, truly oneway offset commits, and pulls that use
/// the heartbeat's subscription.
#[test]
fn rust_client_capture_replays_cleanly() {
    let mut h = Harness::new();
    let seen = replay(
        &mut h,
        include_str!("../../../../shared/vectors/rust-client.jsonl"),
        10,
    );
    assert!(seen[&RequestCode::SendMessage.value()]
        .iter()
        .all(|&c| c == 0));
    assert!(seen[&RequestCode::HeartBeat.value()]
        .iter()
        .all(|&c| c == 0));
    for (code, answers) in &seen {
        assert!(
            answers.iter().all(|c| ![1, 3, 17, 26, 29].contains(c)),
            "request {code}: {answers:?}"
        );
    }
}
