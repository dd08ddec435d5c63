//! Every real body in the golden vectors (`../shared/vectors/*.jsonl`, captured from the C++
//! and Rust clients and the rocketmq-rust broker) decodes, reads as the capture says, and
//! survives our encode -> decode unchanged.
//!
//! The files are compiled in with `include_str!`, so the test needs no file I/O; frames are
//! split with the minimal layout (4-byte length, 4-byte serialize type and header length,
//! header, body) so this test does not depend on the frame codec.

use super::*;

const FILES: [(&str, &str); 5] = [
    (
        "broker-to-namesrv",
        include_str!("../../../../shared/vectors/broker-to-namesrv.jsonl"),
    ),
    (
        "cpp-producer",
        include_str!("../../../../shared/vectors/cpp-producer.jsonl"),
    ),
    (
        "cpp-pull-consumer",
        include_str!("../../../../shared/vectors/cpp-pull-consumer.jsonl"),
    ),
    (
        "cpp-push-consumer",
        include_str!("../../../../shared/vectors/cpp-push-consumer.jsonl"),
    ),
    (
        "rust-client",
        include_str!("../../../../shared/vectors/rust-client.jsonl"),
    ),
];

/// One captured frame with a body.
struct Frame {
    file: &'static str,
    code: i64,
    response: bool,
    summary: String,
    header: serde_json::Value,
    body: Vec<u8>,
}

fn frames_with_body() -> Vec<Frame> {
    let mut frames = Vec::new();
    for (file, text) in FILES {
        for line in text.lines() {
            let record: serde_json::Value = serde_json::from_str(line).unwrap();
            let bytes = hex(record["hex"].as_str().unwrap());
            let total = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
            assert_eq!(total + 4, bytes.len(), "{file}: frame length");
            let meta = u32::from_be_bytes(bytes[4..8].try_into().unwrap());
            let header_len = (meta & 0x00ff_ffff) as usize;
            let (header, body) = bytes[8..].split_at(header_len);
            if body.is_empty() {
                continue;
            }
            frames.push(Frame {
                file,
                code: record["code"].as_i64().unwrap(),
                response: record["flag"].as_i64().unwrap() & 1 == 1,
                summary: record["summary"].as_str().unwrap().to_string(),
                header: serde_json::from_slice(header).unwrap(),
                body: body.to_vec(),
            });
        }
    }
    frames
}

fn hex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn responses_to<'a>(frames: &'a [Frame], request: &str) -> Vec<&'a Frame> {
    let needle = format!("response to {request}(");
    frames
        .iter()
        .filter(|f| f.response && f.summary.contains(&needle))
        .collect()
}

fn requests(frames: &[Frame], code: i64) -> Vec<&Frame> {
    frames
        .iter()
        .filter(|f| !f.response && f.code == code)
        .collect()
}

#[test]
fn heartbeats_decode() {
    let frames = frames_with_body();
    let heartbeats = requests(&frames, 34);
    assert_eq!(heartbeats.len(), 16);
    for frame in heartbeats {
        let hb = HeartbeatData::decode(&frame.body)
            .unwrap_or_else(|e| panic!("{}: {e}: {}", frame.file, frame.summary));
        assert!(!hb.client_id.is_empty());
        assert!(frame
            .summary
            .contains(&format!("clientID={}", hb.client_id)));
        for consumer in &hb.consumer_data_set {
            // Both clients run push consumers in clustering mode.
            assert_eq!(consumer.consume_type, ConsumeType::ConsumePassively);
            assert_eq!(consumer.message_model, MessageModel::Clustering);
            assert!(consumer
                .subscription_data_set
                .iter()
                .any(|s| s.topic.starts_with("%RETRY%")));
            if frame.file.starts_with("cpp") {
                assert_eq!(
                    consumer.consume_from_where,
                    ConsumeFromWhere::ConsumeFromLastOffset
                );
                assert!(consumer
                    .subscription_data_set
                    .iter()
                    .all(|s| s.sub_version > 0));
            }
        }
        assert_eq!(HeartbeatData::decode(&hb.encode()).unwrap(), hb);
    }
}

#[test]
fn broker_registrations_decode() {
    let frames = frames_with_body();
    let registrations = requests(&frames, 103);
    assert_eq!(registrations.len(), 7);
    for frame in registrations {
        let compressed = frame.header["extFields"]["compressed"] == "true";
        let body = RegisterBrokerBody::decode(&frame.body, compressed).unwrap();
        let table = &body.topic_config_serialize_wrapper.topic_config_table;
        assert!(table.len() > 10, "{}", table.len());
        assert!(table
            .iter()
            .all(|(name, config)| *name == config.topic_name));
        assert_eq!(table["TBW102"].perm, 7);
        assert_eq!(
            RegisterBrokerBody::decode(&body.encode(false), false).unwrap(),
            body
        );
        // The compressed form keeps everything these bodies carry (no sys flags, no order).
        assert_eq!(
            RegisterBrokerBody::decode(&body.encode(true), false).unwrap(),
            body
        );
    }
}

#[test]
fn routes_decode() {
    let frames = frames_with_body();
    let routes = responses_to(&frames, "GET_ROUTEINFO_BY_TOPIC");
    assert_eq!(routes.len(), 22);
    for frame in routes {
        let route = TopicRouteData::decode(&frame.body).unwrap();
        let broker = &route.broker_datas[0];
        assert_eq!(broker.broker_name, "broker-a");
        assert!(broker.broker_addrs[&0].starts_with("127.0.0.1:"));
        assert_eq!(route.queue_datas[0].broker_name, "broker-a");
        assert!(PermName::is_readable(route.queue_datas[0].perm));
        assert_eq!(TopicRouteData::decode(&route.encode()).unwrap(), route);
    }
    // The broker registers auto-created topics with a route of its own (no broker datas).
    let registered = requests(&frames, 217);
    assert_eq!(registered.len(), 8);
    for frame in registered {
        let route = TopicRouteData::decode(&frame.body).unwrap();
        assert!(route.broker_datas.is_empty());
        assert_eq!(route.queue_datas.len(), 1);
    }
}

#[test]
fn consumer_lists_decode() {
    let frames = frames_with_body();
    let lists = responses_to(&frames, "GET_CONSUMER_LIST_BY_GROUP");
    assert_eq!(lists.len(), 15);
    for frame in lists {
        let list = GetConsumerListByGroupResponseBody::decode(&frame.body).unwrap();
        assert!(!list.consumer_id_list.is_empty());
        assert!(frame.summary.contains(&list.consumer_id_list[0]));
        assert_eq!(
            GetConsumerListByGroupResponseBody::decode(&list.encode()).unwrap(),
            list
        );
    }
}
