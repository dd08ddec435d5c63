//! Times the frame codec on a realistic SEND_MESSAGE_V2 frame: a 1 KiB body under a V2 header
//! with all fourteen one-letter keys, in both header encodings. Prints ns per frame and MB/s.
//!
//! A plain loop over `Instant` and `black_box` rather than a framework: the figures are for
//! spotting regressions by eye (target: decode under 1 µs), not for statistics.
//! Run with `cargo bench -p proto-core --bench frame`.
//!
//! For instruction counts, which a shared machine does not disturb, run the bench binary under
//! callgrind with one round: `FRAME_BENCH_ROUNDS=1 valgrind --tool=callgrind <binary>` and read
//! the inclusive cost of `FrameDecoder::decode` (calls: `FRAMES_PER_ROUND` x 2 rounds + 1).

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use proto_core::{encode_frame, FrameDecoder, LanguageCode, RemotingCommand, SerializeType};

/// Frames per decode round: enough to dwarf the loop overhead, small enough to stay in cache.
const FRAMES_PER_ROUND: usize = 2048;
/// Each figure is the best of this many rounds, taken after one warm-up round, unless the
/// environment variable `FRAME_BENCH_ROUNDS` says otherwise.
const ROUNDS: usize = 25;

fn rounds() -> usize {
    std::env::var("FRAME_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
}

fn main() {
    let cmd = send_message_v2();
    for ty in [SerializeType::Json, SerializeType::RocketMq] {
        let mut frame = BytesMut::new();
        encode_frame(&cmd, ty, &mut frame).expect("the bench command is encodable");
        let name = match ty {
            SerializeType::Json => "json",
            SerializeType::RocketMq => "rocketmq",
        };
        let header_len = frame.len() - 8 - cmd.body.len();
        println!(
            "{name}: frame {} bytes (header {header_len}, body {})",
            frame.len(),
            cmd.body.len()
        );
        report(
            &format!("{name} decode"),
            frame.len(),
            bench_decode(&frame, &cmd),
        );
        report(
            &format!("{name} encode"),
            frame.len(),
            bench_encode(&cmd, ty),
        );
    }
}

/// Best time per frame to decode a stream of identical frames.
fn bench_decode(frame: &[u8], expected: &RemotingCommand) -> Duration {
    let mut stream = BytesMut::with_capacity(frame.len() * FRAMES_PER_ROUND);
    for _ in 0..FRAMES_PER_ROUND {
        stream.extend_from_slice(frame);
    }
    let mut decoder = FrameDecoder::new();
    let mut check = stream.clone();
    let first = decoder.decode(&mut check).expect("valid frame");
    assert_eq!(
        first.as_ref(),
        Some(expected),
        "the bench decodes what it encoded"
    );
    best_of(|| {
        let mut buf = stream.clone();
        let start = Instant::now();
        while let Some(cmd) = decoder.decode(black_box(&mut buf)).expect("valid frame") {
            black_box(cmd);
        }
        start.elapsed()
    })
}

/// Best time per frame to encode into a reused buffer.
fn bench_encode(cmd: &RemotingCommand, ty: SerializeType) -> Duration {
    let mut out = BytesMut::with_capacity(4096);
    best_of(|| {
        let start = Instant::now();
        for _ in 0..FRAMES_PER_ROUND {
            out.clear();
            encode_frame(black_box(cmd), ty, &mut out).expect("encodable");
            black_box(&out);
        }
        start.elapsed()
    })
}

fn best_of(mut round: impl FnMut() -> Duration) -> Duration {
    round();
    let best = (0..rounds()).map(|_| round()).min().unwrap_or_default();
    best / FRAMES_PER_ROUND as u32
}

fn report(what: &str, frame_len: usize, per_frame: Duration) {
    let ns = per_frame.as_secs_f64() * 1e9;
    let mb_per_s = frame_len as f64 / per_frame.as_secs_f64() / 1e6;
    println!("  {what:<16} {ns:>8.1} ns/frame {mb_per_s:>9.1} MB/s");
}

/// What a Java 5.x producer sends for a plain send: SEND_MESSAGE_V2 with the V2 header.
fn send_message_v2() -> RemotingCommand {
    let mut cmd = RemotingCommand::request(310, 1_234_567);
    cmd.language = LanguageCode::Java;
    let properties = "KEYS\u{1}OrderID188\u{2}UNIQ_KEY\u{1}7F0000014C5C18B4AAC27E3F8A8C0000\u{2}\
                      WAIT\u{1}true\u{2}TAGS\u{1}TagA\u{2}";
    let fields = cmd.ext_fields_mut();
    fields.insert("a", "please_rename_unique_group_name");
    fields.insert("b", "TopicTest");
    fields.insert("c", "TBW102");
    fields.insert("d", "4");
    fields.insert("e", "3");
    fields.insert("f", "0");
    fields.insert("g", "1726740000000");
    fields.insert("h", "0");
    fields.insert("i", properties);
    fields.insert("j", "0");
    fields.insert("k", "false");
    fields.insert("l", "16");
    fields.insert("m", "false");
    fields.insert("n", "broker-a");
    cmd.with_body(vec![b'x'; 1024])
}
