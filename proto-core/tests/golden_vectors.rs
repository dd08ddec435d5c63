//! Replays the golden frames captured from real clients and servers (`shared/vectors/*.jsonl`,
//! described in that folder's README) through the frame decoder.
//!
//! For every line: the `hex` frame decodes to exactly one command whose code, flag and opaque
//! match the line; re-encoding it as JSON and decoding again gives the same command. Each
//! connection direction is also replayed as one byte stream cut at uneven points, as a socket
//! would deliver it. The vectors live outside the repository; without them the test says so and
//! passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bytes::BytesMut;
use proto_core::{encode_frame, FrameDecoder, RemotingCommand, SerializeType};

#[test]
fn every_golden_frame_decodes_and_round_trips() {
    let dir = vectors_dir();
    if !dir.is_dir() {
        println!("skipped: no golden vectors at {}", dir.display());
        return;
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("vectors folder is readable")
        .map(|entry| entry.expect("folder entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .jsonl files in {}", dir.display());

    let (mut lines_total, mut frames_total) = (0usize, 0usize);
    for file in &files {
        let (lines, frames) = check_file(file);
        println!("{}: {frames} frames", file.display());
        assert_eq!(frames, lines, "{}", file.display());
        lines_total += lines;
        frames_total += frames;
    }
    println!("{frames_total} golden frames in {} files", files.len());
    assert_eq!(frames_total, lines_total);
}

/// A frame from one line, with the fields the line says it has.
struct Line {
    flow: u64,
    dir: String,
    seq: u64,
    code: i32,
    flag: i32,
    opaque: i32,
    frame: Vec<u8>,
}

/// Frames per connection direction `(flow, dir)`, each with its `seq`.
type Streams = BTreeMap<(u64, String), Vec<(u64, Vec<u8>)>>;

/// Checks every line of `path`; returns its line count and the frames that passed.
fn check_file(path: &Path) -> (usize, usize) {
    let text = std::fs::read_to_string(path).expect("vector file is readable");
    let mut lines = 0;
    let mut frames = 0;
    let mut streams: Streams = BTreeMap::new();
    for (number, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        lines += 1;
        let line = parse_line(raw);
        let place = format!("{}:{}", path.display(), number + 1);
        let cmd = decode_one(&line.frame, &place);
        assert_eq!(cmd.code, line.code, "code at {place}");
        assert_eq!(cmd.flag, line.flag, "flag at {place}");
        assert_eq!(cmd.opaque, line.opaque, "opaque at {place}");

        let mut again = BytesMut::new();
        encode_frame(&cmd, SerializeType::Json, &mut again).expect("re-encodable");
        let back = decode_one(&again, &place);
        assert_eq!(back, cmd, "JSON round trip at {place}");
        frames += 1;

        streams
            .entry((line.flow, line.dir))
            .or_default()
            .push((line.seq, line.frame));
    }
    for ((flow, dir), mut parts) in streams {
        parts.sort_by_key(|(seq, _)| *seq);
        let expected: Vec<RemotingCommand> = parts
            .iter()
            .map(|(_, frame)| decode_one(frame, "stream"))
            .collect();
        let stream: Vec<u8> = parts.into_iter().flat_map(|(_, frame)| frame).collect();
        let got = decode_stream(&stream);
        assert_eq!(got, expected, "{} flow {flow} {dir}", path.display());
    }
    (lines, frames)
}

/// Decodes a buffer that must hold exactly one frame.
fn decode_one(frame: &[u8], place: &str) -> RemotingCommand {
    let mut buf = BytesMut::from(frame);
    let cmd = FrameDecoder::new()
        .decode(&mut buf)
        .unwrap_or_else(|e| panic!("frame at {place} rejected: {e}"))
        .unwrap_or_else(|| panic!("frame at {place} incomplete"));
    assert!(buf.is_empty(), "bytes left over at {place}");
    cmd
}

/// Feeds `stream` in chunks of 1, 2, 3, ... 97 bytes, repeating, as uneven reads.
fn decode_stream(stream: &[u8]) -> Vec<RemotingCommand> {
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    let mut commands = Vec::new();
    let mut at = 0;
    let mut chunk = 1;
    while at < stream.len() {
        let end = (at + chunk).min(stream.len());
        buf.extend_from_slice(&stream[at..end]);
        at = end;
        chunk = chunk % 97 + 1;
        while let Some(cmd) = decoder.decode(&mut buf).expect("valid stream") {
            commands.push(cmd);
        }
    }
    assert!(buf.is_empty(), "stream ended inside a frame");
    commands
}

fn parse_line(raw: &str) -> Line {
    let value: serde_json::Value = serde_json::from_str(raw).expect("line is JSON");
    let int = |key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_i64)
            .unwrap_or_else(|| panic!("line lacks integer `{key}`: {raw}"))
    };
    let text = |key: &str| {
        value
            .get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or_else(|| panic!("line lacks string `{key}`: {raw}"))
            .to_string()
    };
    Line {
        flow: u64::try_from(int("flow")).expect("flow is positive"),
        dir: text("dir"),
        seq: u64::try_from(int("seq")).expect("seq is positive"),
        code: i32::try_from(int("code")).expect("code fits i32"),
        flag: i32::try_from(int("flag")).expect("flag fits i32"),
        opaque: i32::try_from(int("opaque")).expect("opaque fits i32"),
        frame: hex(&text("hex")),
    }
}

fn hex(text: &str) -> Vec<u8> {
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ASCII hex");
            assert_eq!(pair.len(), 2, "odd hex length");
            u8::from_str_radix(pair, 16).expect("hex digit pair")
        })
        .collect()
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/vectors")
}
