//! Times the codec work the broker does per send, apart from the store: decoding a request frame
//! and its typed send header, and building and encoding the SEND_OK response.
//!
//! Request frames:
//! - `cpp v1 json`: the first SEND_MESSAGE (10) the Apache C++ client sent in the golden capture
//!   (`shared/vectors/cpp-producer.jsonl`), byte for byte: V1 keys, numbers and strings mixed,
//!   plus `AccessKey`/`Signature`/`OnsChannel`.
//! - `v2 json` / `v2 rocketmq`: SEND_MESSAGE_V2 (310) with a 128-byte body as our bench client
//!   and a Java 5.x producer send it (no client in the capture used V2), in both header
//!   encodings.
//!
//! The response is what `Broker::handle_send` builds for a stored message: `MSG_REGION`,
//! `TRACE_ON`, then the response header, encoded as JSON into a reused buffer.
//!
//! A plain loop over `Instant` and `black_box` (no criterion), like `frame.rs`. Run with
//! `cargo bench -p proto-core --bench send_codec`. For instruction counts run the binary under
//! callgrind with one round (`SEND_CODEC_ROUNDS=1`) and divide the inclusive cost of
//! `decode_request` / `encode_response` by their call counts; `SEND_CODEC_CASE=<name part>`
//! runs only the cases whose name contains it (`response` for the encode alone).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proto_core::body::MessageQueue;
use proto_core::client::{send_message_v2_request, OutgoingMessage};
use proto_core::header::{
    decode_send_header, encode_header, SendMessageRequestHeader, SendMessageResponseHeader,
    MSG_REGION, TRACE_ON,
};
use proto_core::{encode_frame, FrameDecoder, RemotingCommand, ResponseCode, SerializeType};

/// Iterations per timed round.
const PER_ROUND: usize = 2048;
/// Each figure is the best of this many rounds after one warm-up, unless `SEND_CODEC_ROUNDS`
/// says otherwise.
const ROUNDS: usize = 25;

const CPP_PRODUCER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../shared/vectors/cpp-producer.jsonl"
));

/// Whether the case `name` runs: all do unless `SEND_CODEC_CASE` picks some.
fn selected(name: &str) -> bool {
    std::env::var("SEND_CODEC_CASE").map_or(true, |part| name.contains(&part))
}

fn rounds() -> usize {
    std::env::var("SEND_CODEC_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
}

fn main() {
    let v2 = v2_request();
    let mut cases = vec![("cpp v1 json", captured_cpp_send())];
    for (name, ty) in [
        ("v2 json", SerializeType::Json),
        ("v2 rocketmq", SerializeType::RocketMq),
    ] {
        let mut frame = BytesMut::new();
        encode_frame(&v2, ty, &mut frame).expect("the bench request is encodable");
        cases.push((name, frame.to_vec()));
    }
    for (name, frame) in cases.iter().filter(|(name, _)| selected(name)) {
        let per = bench_decode(frame);
        report(&format!("{name} decode+header ({} B)", frame.len()), per);
    }
    if selected("send_ok response") {
        let mut request_frame = BytesMut::from(&cases[1].1[..]);
        let request = decode_request(&mut FrameDecoder::new(), &mut request_frame);
        let mut out = BytesMut::new();
        encode_response(&request, &mut out);
        report(
            &format!("send_ok response json encode ({} B)", out.len()),
            bench_encode(&request),
        );
    }
}

/// Frame decode plus the typed header, as the driver and `handle_send` do it.
#[inline(never)]
fn decode_request(decoder: &mut FrameDecoder, buf: &mut BytesMut) -> RemotingCommand {
    let cmd = decoder
        .decode(buf)
        .expect("valid frame")
        .expect("whole frame");
    let header: SendMessageRequestHeader = decode_send_header(&cmd).expect("valid send header");
    black_box(&header);
    cmd
}

/// The SEND_OK response `handle_send` builds for one stored message, encoded as JSON.
#[inline(never)]
fn encode_response(request: &RemotingCommand, out: &mut BytesMut) {
    let mut response = RemotingCommand::response_to(request, ResponseCode::Success.value(), None);
    let fields = response.ext_fields_mut();
    fields.insert(MSG_REGION, "DefaultRegion");
    fields.insert(TRACE_ON, "true");
    let header = SendMessageResponseHeader {
        msg_id: "7F00000100002A9F0000000000A3F1C0".to_owned(),
        queue_id: 3,
        queue_offset: 1_234_567,
        transaction_id: Some("7F0000014C5C18B4AAC27E3F8A8C0001".to_owned()),
        batch_uniq_id: None,
        recall_handle: None,
    };
    encode_header(&mut response, &header);
    encode_frame(&response, SerializeType::Json, out).expect("encodable");
}

fn bench_decode(frame: &[u8]) -> Duration {
    let mut stream = BytesMut::with_capacity(frame.len() * PER_ROUND);
    for _ in 0..PER_ROUND {
        stream.extend_from_slice(frame);
    }
    let mut decoder = FrameDecoder::new();
    best_of(|| {
        let mut buf = stream.clone();
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            black_box(decode_request(&mut decoder, black_box(&mut buf)));
        }
        start.elapsed()
    })
}

fn bench_encode(request: &RemotingCommand) -> Duration {
    let mut out = BytesMut::with_capacity(4096);
    best_of(|| {
        let start = Instant::now();
        for _ in 0..PER_ROUND {
            out.clear();
            encode_response(black_box(request), &mut out);
            black_box(&out);
        }
        start.elapsed()
    })
}

fn best_of(mut round: impl FnMut() -> Duration) -> Duration {
    round();
    let best = (0..rounds()).map(|_| round()).min().unwrap_or_default();
    best / PER_ROUND as u32
}

fn report(what: &str, per: Duration) {
    println!("  {what:<40} {:>8.1} ns", per.as_secs_f64() * 1e9);
}

/// The first client-to-server SEND_MESSAGE frame of the C++ capture.
fn captured_cpp_send() -> Vec<u8> {
    for line in CPP_PRODUCER.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("vector line is JSON");
        if v["dir"] == "c2s" && v["code"] == 10 {
            let hex = v["hex"].as_str().expect("hex frame");
            return (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digit"))
                .collect();
        }
    }
    panic!("the capture holds SEND_MESSAGE requests");
}

/// SEND_MESSAGE_V2 of a 128-byte message with a tag, as our client builds it.
fn v2_request() -> RemotingCommand {
    let mq = MessageQueue {
        broker_name: "broker-a".to_owned(),
        queue_id: 3,
        topic: "BenchTopic".to_owned(),
    };
    let msg = OutgoingMessage {
        topic: mq.topic.clone(),
        body: Bytes::from(vec![b'x'; 128]),
        tags: Some("TagA".to_owned()),
        keys: Vec::new(),
        flag: 0,
    };
    let mut cmd = send_message_v2_request(
        "bench_pg_25235",
        &mq,
        &msg,
        "7F0000014C5C18B4AAC27E3F8A8C0001",
        1_795_274_794_262,
    );
    cmd.opaque = 1_234_567;
    cmd.language = proto_core::LanguageCode::Java;
    cmd
}
