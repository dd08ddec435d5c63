//! Scenario: our name server stands in for the one in the golden captures
//! (`../shared/vectors/`). A real broker (rocketmq-broker-rust) registers, refreshes and
//! registers topics; then the real C++ client looks up its routes, and must find the broker at
//! its real address with the queues the capture's name server gave.
//!
//! Every frame goes through the real [`FrameDecoder`] on the way in, and every response through
//! [`encode_frame`] and back on the way out, so the test also proves our answers are frames a
//! peer can read.

use std::collections::BTreeMap;

use bytes::BytesMut;

use crate::body::{QueueData, TopicRouteData};
use crate::namesrv::{NameServer, NamesrvConfig};
use crate::role::{ConnId, Role, Transmit};
use crate::{
    encode_frame, FrameDecoder, RemotingCommand, RequestCode, ResponseCode, SerializeType,
};

const BROKER_TO_NAMESRV: &str = include_str!("../../../../shared/vectors/broker-to-namesrv.jsonl");
const CPP_PRODUCER: &str = include_str!("../../../../shared/vectors/cpp-producer.jsonl");

const BROKER_ADDR: &str = "127.0.0.1:10911";
const BROKER_CONN: ConnId = ConnId(1);
const CLIENT_CONN: ConnId = ConnId(2);

#[test]
fn a_real_broker_registers_and_the_cpp_producer_finds_its_routes() {
    let mut t = Scenario::new();
    let lookups = cpp_route_lookups();
    assert_eq!(lookups.len(), 10);

    // Before the broker registers, the client's first topic is unknown.
    let (first, _) = &lookups[0];
    let answer = t.ask(CLIENT_CONN, first.clone(), 0);
    assert_eq!(answer.code, ResponseCode::TopicNotExist.value());
    let remark = answer.remark.unwrap_or_default();
    assert!(remark.starts_with("No topic route info in name server for the topic: GoldenPush"));

    t.replay_broker(|code| code != RequestCode::UnregisterBroker.value());
    let info = t.namesrv.route_table().cluster_info();
    assert_eq!(info.broker_addr_table.len(), 1);
    assert_eq!(
        info.broker_addr_table["broker-a"].broker_addrs,
        BTreeMap::from([(0, BROKER_ADDR.to_owned())])
    );

    for (request, captured) in &lookups {
        let topic = request.ext("topic").unwrap_or_default().to_owned();
        let answer = t.ask(CLIENT_CONN, request.clone(), t.now_ms);
        assert_eq!(answer.code, ResponseCode::Success.value(), "{topic}");
        let route = TopicRouteData::decode(&answer.body).expect("our route decodes");
        // The broker at its real address (the capture's shim rewrote the port), master only.
        assert_eq!(route.broker_datas.len(), 1, "{topic}");
        let broker = &route.broker_datas[0];
        assert_eq!(
            (broker.broker_name.as_str(), broker.cluster.as_str()),
            ("broker-a", "DefaultCluster")
        );
        assert_eq!(
            broker.broker_addrs,
            BTreeMap::from([(0, BROKER_ADDR.to_owned())])
        );
        // The C++ client (version 63) still gets quoted broker ids: it read them from the
        // capture's server too.
        let text = String::from_utf8_lossy(&answer.body);
        assert!(
            text.contains(r#""brokerAddrs":{"0":"127.0.0.1:10911"}"#),
            "{text}"
        );
        // Where the captured name server knew the topic, our queues match its.
        if let Some(expected) = captured {
            assert_eq!(&route.queue_datas, expected, "{topic}");
        }
        let queues = &route.queue_datas[0];
        let expected_queues = if topic == "TBW102" {
            (8, 8, 7)
        } else {
            (4, 4, 6)
        };
        assert_eq!(
            (queues.read_queue_nums, queues.write_queue_nums, queues.perm),
            expected_queues,
            "{topic}"
        );
    }

    // The broker says goodbye: its routes go with it.
    t.replay_broker(|code| code == RequestCode::UnregisterBroker.value());
    let (tbw, _) = lookups
        .iter()
        .find(|(request, _)| request.ext("topic") == Some("TBW102"))
        .expect("a TBW102 lookup");
    let answer = t.ask(CLIENT_CONN, tbw.clone(), t.now_ms);
    assert_eq!(answer.code, ResponseCode::TopicNotExist.value());
    assert!(t
        .namesrv
        .route_table()
        .cluster_info()
        .cluster_addr_table
        .is_empty());
}

#[test]
fn the_captured_broker_expires_120_s_after_its_last_registration() {
    let mut t = Scenario::new();
    t.replay_broker(|code| code != RequestCode::UnregisterBroker.value());
    let last_seen = t.now_ms;
    t.namesrv.handle_timeout(last_seen);
    assert!(t.namesrv.poll_transmit().is_none());

    t.namesrv.handle_timeout(last_seen + 120_000);
    assert!(t.namesrv.poll_transmit().is_none());
    assert!(t.namesrv.route_table().broker_data("broker-a").is_some());
    // Scans run every 5 s; the first one past the deadline drops the broker.
    t.namesrv.handle_timeout(last_seen + 125_000);
    match t.namesrv.poll_transmit() {
        Some(Transmit::Close { conn, .. }) => assert_eq!(conn, BROKER_CONN),
        other => panic!("expected the broker's connection closed, got {other:?}"),
    }
    assert!(t.namesrv.route_table().all_topics().topic_list.is_empty());
}

#[test]
fn the_captured_broker_disappears_when_its_connection_closes() {
    let mut t = Scenario::new();
    t.replay_broker(|code| code != RequestCode::UnregisterBroker.value());
    assert!(!t.namesrv.route_table().all_topics().topic_list.is_empty());
    t.namesrv.handle_closed(CLIENT_CONN, t.now_ms);
    assert!(t.namesrv.route_table().broker_data("broker-a").is_some());
    t.namesrv.handle_closed(BROKER_CONN, t.now_ms);
    assert!(t.namesrv.route_table().broker_data("broker-a").is_none());
    assert!(t.namesrv.route_table().all_topics().topic_list.is_empty());
}

/// A name server, a clock, and the wire in between.
struct Scenario {
    namesrv: NameServer,
    now_ms: u64,
}

impl Scenario {
    fn new() -> Scenario {
        Scenario {
            namesrv: NameServer::new(NamesrvConfig::default()),
            now_ms: 0,
        }
    }

    /// Replays the broker's requests whose code passes `keep`, at their captured times, and
    /// checks each is answered SUCCESS.
    fn replay_broker(&mut self, keep: impl Fn(i32) -> bool) {
        for frame in frames(BROKER_TO_NAMESRV) {
            if !frame.c2s || !keep(frame.cmd.code) {
                continue;
            }
            self.now_ms = self.now_ms.max(frame.t_ms);
            let code = frame.cmd.code;
            let answer = self.ask(BROKER_CONN, frame.cmd, self.now_ms);
            assert_eq!(
                answer.code,
                ResponseCode::Success.value(),
                "request {code}: {:?}",
                answer.remark
            );
        }
    }

    /// Sends one request and returns its response, after a trip through the frame codec.
    fn ask(&mut self, conn: ConnId, request: RemotingCommand, now_ms: u64) -> RemotingCommand {
        let opaque = request.opaque;
        self.namesrv.handle_command(conn, request, now_ms);
        self.namesrv.handle_turn_end(now_ms);
        let Some(Transmit::Send { conn: to, cmd }) = self.namesrv.poll_transmit() else {
            panic!("request {opaque} got no response");
        };
        assert!(self.namesrv.poll_transmit().is_none());
        assert_eq!(to, conn);
        assert!(cmd.is_response());
        assert_eq!(cmd.opaque, opaque);
        let mut wire = BytesMut::new();
        encode_frame(&cmd, SerializeType::Json, &mut wire).expect("response encodes");
        let decoded = FrameDecoder::new()
            .decode(&mut wire)
            .expect("response frame decodes")
            .expect("one whole frame");
        assert!(wire.is_empty());
        decoded
    }
}

/// The C++ producer's GET_ROUTEINFO_BY_TOPIC requests, each with the queues the captured name
/// server answered (`None` where it answered TOPIC_NOT_EXIST).
fn cpp_route_lookups() -> Vec<(RemotingCommand, Option<Vec<QueueData>>)> {
    let frames = frames(CPP_PRODUCER);
    let mut lookups = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        if !frame.c2s || frame.cmd.code != RequestCode::GetRouteinfoByTopic.value() {
            continue;
        }
        let answer = frames[i..]
            .iter()
            .find(|f| !f.c2s && f.flow == frame.flow && f.cmd.opaque == frame.cmd.opaque)
            .expect("the capture holds every route answer");
        let queues = (answer.cmd.code == ResponseCode::Success.value()).then(|| {
            TopicRouteData::decode(&answer.cmd.body)
                .expect("captured route decodes")
                .queue_datas
        });
        lookups.push((frame.cmd.clone(), queues));
    }
    lookups
}

/// One captured frame, decoded.
struct Frame {
    flow: u64,
    c2s: bool,
    /// Capture time within its flow.
    t_ms: u64,
    cmd: RemotingCommand,
}

fn frames(jsonl: &str) -> Vec<Frame> {
    let mut decoder = FrameDecoder::new();
    jsonl
        .lines()
        .map(|line| {
            let record: serde_json::Value = serde_json::from_str(line).expect("JSONL line");
            let mut wire = BytesMut::from(unhex(record["hex"].as_str().expect("hex")).as_slice());
            let cmd = decoder
                .decode(&mut wire)
                .expect("captured frame decodes")
                .expect("a whole frame per line");
            assert!(wire.is_empty(), "one frame per line");
            Frame {
                flow: record["flow"].as_u64().expect("flow"),
                c2s: record["dir"] == "c2s",
                t_ms: (record["t"].as_f64().expect("t") * 1000.0) as u64,
                cmd,
            }
        })
        .collect()
}

fn unhex(hex: &str) -> Vec<u8> {
    hex.as_bytes()
        .chunks(2)
        .map(|pair| {
            let text = std::str::from_utf8(pair).expect("ASCII hex");
            u8::from_str_radix(text, 16).expect("hex digits")
        })
        .collect()
}
