//! Hostile and broken peers against the real `node standalone` binary while a well-behaved
//! producer keeps sending on its own connection: garbage, truncated frames, absurd length
//! prefixes, unknown serialize types, headers that do not parse, unknown request codes and
//! requests with missing or mistyped fields. The producer must see nothing but SUCCESS, the
//! process must stay up and still answer new connections.
//!
//! What it leaves out: resource exhaustion (thousands of connections, unread responses piling
//! up); those need limits, not parsing, and are tested with the driver.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use io_adapters::client::RemotingClient;
use proto_core::codec::frame::FrameDecoder;
use proto_core::{RemotingCommand, RequestCode, ResponseCode};
use support::Standalone;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TIMEOUT: Duration = Duration::from_secs(5);
const TOPIC: &str = "BadInputTopic";
/// A small limit, so an oversized message is cheap to send.
const MAX_MESSAGE_SIZE: usize = 64 * 1024;

fn request(code: i32, fields: &[(&str, &str)]) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(code, 0);
    for (k, v) in fields {
        cmd.ext_fields_mut().insert(*k, *v);
    }
    cmd
}

/// A well-formed SEND_MESSAGE_V2 for `queue_id`, with `overrides` replacing or adding fields
/// and `drop` removing them.
fn send_request(
    queue_id: &str,
    overrides: &[(&str, &str)],
    drop: &[&str],
    body: Bytes,
) -> RemotingCommand {
    let mut fields = vec![
        ("a", "bad_input_pg"),
        ("b", TOPIC),
        ("c", "TBW102"),
        ("d", "4"),
        ("e", queue_id),
        ("f", "0"),
        ("g", "1700000000000"),
        ("h", "0"),
        ("i", "TAGS\u{1}T\u{2}WAIT\u{1}true\u{2}"),
        ("j", "0"),
        ("k", "false"),
        ("m", "false"),
    ];
    for (k, v) in overrides {
        fields.retain(|(key, _)| key != k);
        fields.push((k, v));
    }
    fields.retain(|(k, _)| !drop.contains(k));
    request(RequestCode::SendMessageV2.value(), &fields).with_body(body)
}

/// One frame as bytes: `total_len`, header meta (`ty` in the top byte), header, body. The
/// length is computed honestly; callers that want a lie build the bytes themselves.
fn frame(ty: u8, header: &[u8], body: &[u8]) -> Vec<u8> {
    let total = 4 + header.len() + body.len();
    let mut out = Vec::with_capacity(4 + total);
    out.extend_from_slice(&(total as i32).to_be_bytes());
    out.extend_from_slice(&((u32::from(ty) << 24) | header.len() as u32).to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(body);
    out
}

/// A ROCKETMQ binary header with no ext fields; `remark_len` may lie about what follows.
fn binary_header(code: i16, opaque: i32, remark_len: i32, remark: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&code.to_be_bytes());
    h.push(0); // language JAVA
    h.extend_from_slice(&479i16.to_be_bytes());
    h.extend_from_slice(&opaque.to_be_bytes());
    h.extend_from_slice(&0i32.to_be_bytes()); // flag: a request
    h.extend_from_slice(&remark_len.to_be_bytes());
    h.extend_from_slice(remark);
    h.extend_from_slice(&0i32.to_be_bytes()); // no ext fields
    h
}

/// Deterministic pseudo-random bytes (SplitMix64), so a failure replays.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed;
    (0..len)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            (z ^ (z >> 31)) as u8
        })
        .collect()
}

/// Reads until the server closes the connection; fails if it stays open for `TIMEOUT`.
async fn expect_closed(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(TIMEOUT, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "{what}: the server kept the connection open"
    );
}

/// Writes `bytes` on a fresh connection and expects the server to close it by itself (a
/// malformed frame costs its connection).
async fn expect_rejected(addr: &str, bytes: &[u8], what: &str) {
    let mut s = TcpStream::connect(addr).await.expect("connects");
    // The server may close before reading everything; a failed write is fine.
    let _ = s.write_all(bytes).await;
    expect_closed(&mut s, what).await;
}

/// Writes `bytes` on a fresh connection and reads the one response frame that must come back.
async fn expect_answer(addr: &str, bytes: &[u8], what: &str) -> RemotingCommand {
    let mut s = TcpStream::connect(addr).await.expect("connects");
    s.write_all(bytes).await.expect("writes");
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::with_capacity(4096);
    let answer = tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(cmd) = decoder
                .decode(&mut buf)
                .expect("server frames are well formed")
            {
                return cmd;
            }
            let n = s.read_buf(&mut buf).await.expect("reads");
            assert!(n > 0, "{what}: closed instead of answering");
        }
    })
    .await;
    answer.unwrap_or_else(|_| panic!("{what}: no answer"))
}

/// Writes `bytes` on a fresh connection; the server may answer (the first frame is returned)
/// or close, but must do one of them.
async fn expect_answer_or_close(addr: &str, bytes: &[u8], what: &str) -> Option<RemotingCommand> {
    let mut s = TcpStream::connect(addr).await.expect("connects");
    let _ = s.write_all(bytes).await;
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::with_capacity(4096);
    let outcome = tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(cmd) = decoder
                .decode(&mut buf)
                .expect("server frames are well formed")
            {
                return Some(cmd);
            }
            match s.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    })
    .await;
    outcome.unwrap_or_else(|_| panic!("{what}: neither answered nor closed"))
}

/// Headers that parse as JSON but not as what a header holds, and nesting meant to exhaust a
/// recursive parser's stack.
async fn wrong_header_types(addr: &str) {
    let deep = format!(
        r#"{{"code":10,"opaque":1,"flag":0,"x":{}}}"#,
        "[".repeat(200_000)
    );
    let deep_ext = format!(
        r#"{{"code":10,"opaque":1,"flag":0,"extFields":{{"a":{}}}}}"#,
        "{\"b\":".repeat(50_000)
    );
    let headers: Vec<(&str, Vec<u8>)> = vec![
        ("code as a string", br#"{"code":"ten","opaque":1,"flag":0}"#.to_vec()),
        ("code out of range", br#"{"code":1e99,"opaque":1,"flag":0}"#.to_vec()),
        ("code overflowing i32", br#"{"code":4294967306,"opaque":1,"flag":0}"#.to_vec()),
        ("opaque as an object", br#"{"code":10,"opaque":{},"flag":0}"#.to_vec()),
        ("extFields as an array", br#"{"code":10,"opaque":1,"flag":0,"extFields":[1,2]}"#.to_vec()),
        (
            "extFields values of every type",
            br#"{"code":310,"opaque":1,"flag":0,"extFields":{"a":1,"b":{"c":[]},"d":null,"e":true}}"#.to_vec(),
        ),
        ("language unknown", br#"{"code":10,"opaque":1,"flag":0,"language":"COBOL"}"#.to_vec()),
        ("a JSON array", b"[1,2,3]".to_vec()),
        ("a JSON string", br#""code""#.to_vec()),
        ("unterminated object", br#"{"code":10,"opaque":1"#.to_vec()),
        ("duplicate members", br#"{"code":10,"code":11,"opaque":1,"flag":0}"#.to_vec()),
        ("bad escapes", br#"{"code":10,"opaque":1,"flag":0,"remark":"\ud800\x"}"#.to_vec()),
        ("deeply nested unknown member", deep.into_bytes()),
        ("deeply nested ext field", deep_ext.into_bytes()),
    ];
    for (what, header) in headers {
        expect_answer_or_close(addr, &frame(0, &header, b""), what).await;
    }
}

/// Requests whose bodies are not what their code needs: answered with an error.
async fn bad_bodies(addr: &str) {
    let client = RemotingClient::connect(addr).await.expect("connects");
    let nested = Bytes::from("[".repeat(500_000));
    let bodies = [
        (
            RequestCode::HeartBeat,
            Bytes::from_static(b"\x00\xffnot json"),
        ),
        (RequestCode::HeartBeat, nested.clone()),
        (
            RequestCode::HeartBeat,
            Bytes::from_static(br#"{"clientID":5,"consumerDataSet":{}}"#),
        ),
        (RequestCode::LockBatchMq, nested.clone()),
        (RequestCode::UnlockBatchMq, Bytes::from_static(b"{")),
        (RequestCode::UpdateAndCreateTopic, nested),
    ];
    for (code, body) in bodies {
        client
            .invoke(request(code.value(), &[]).with_body(body), TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{code:?} with a bad body: {e}"));
    }
}

/// Sends in a loop on its own connection until `stop`, counting sends and keeping every
/// response that is not SUCCESS.
async fn producer(
    addr: String,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
) {
    let client = RemotingClient::connect(&addr).await.expect("connects");
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let body = Bytes::from(format!("good message {i}"));
        let queue = (i % 4).to_string();
        match client
            .invoke(send_request(&queue, &[], &[], body), TIMEOUT)
            .await
        {
            Ok(r) if r.code == ResponseCode::Success.value() => {
                sent.fetch_add(1, Ordering::Relaxed);
            }
            Ok(r) => lock(&failures).push(format!("{r:?}")),
            Err(e) => {
                lock(&failures).push(e.to_string());
                return;
            }
        }
        i += 1;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Connections whose bytes cannot be framed: the server must drop each of them.
async fn malformed_frames(addr: &str) {
    // Random garbage; the write side is shut so a length that happens to look plausible
    // still ends in EOF.
    for seed in 0..16u64 {
        let mut s = TcpStream::connect(addr).await.expect("connects");
        let _ = s.write_all(&garbage(seed, 1024 + seed as usize * 97)).await;
        let _ = s.shutdown().await;
        expect_closed(&mut s, &format!("garbage seed {seed}")).await;
    }
    expect_rejected(addr, &0x7fff_ffffi32.to_be_bytes(), "length 0x7fffffff").await;
    expect_rejected(addr, &(-8i32).to_be_bytes(), "negative length").await;
    expect_rejected(
        addr,
        &[0x80, 0, 0, 0, 0, 0, 0, 0],
        "length i32::MIN with a header meta",
    )
    .await;
    expect_rejected(
        addr,
        &[0, 0, 0, 2, 0, 0],
        "frame shorter than its header meta",
    )
    .await;
    let mut lying = frame(0, b"{}", b"");
    lying[4..8].copy_from_slice(&0x0000_0100u32.to_be_bytes());
    expect_rejected(addr, &lying, "header length past the frame").await;
    expect_rejected(
        addr,
        &frame(7, br#"{"code":10}"#, b""),
        "unknown serialize type 7",
    )
    .await;
    expect_rejected(
        addr,
        &frame(0x80, br#"{"code":10}"#, b""),
        "serialize type 0x80",
    )
    .await;
    expect_rejected(
        addr,
        &frame(0, b"this is { not json", b""),
        "JSON that is not JSON",
    )
    .await;
    expect_rejected(addr, &frame(0, b"", b"body"), "empty JSON header").await;
    expect_rejected(
        addr,
        &frame(0, &[0xff, 0xfe, b'{', b'}'], b""),
        "JSON header that is not UTF-8",
    )
    .await;
    expect_rejected(
        addr,
        &frame(1, &binary_header(10, 1, 1000, b"short"), b""),
        "binary header with a remark past its end",
    )
    .await;
    let mut ext_past_end = binary_header(10, 1, 0, b"");
    let ext_len_at = ext_past_end.len() - 4;
    ext_past_end[ext_len_at..].copy_from_slice(&5000i32.to_be_bytes());
    expect_rejected(
        addr,
        &frame(1, &ext_past_end, b""),
        "binary header with ext fields past its end",
    )
    .await;
    let mut negative_remark = binary_header(10, 1, -3, b"");
    negative_remark.extend_from_slice(&[0; 16]);
    expect_rejected(
        addr,
        &frame(1, &negative_remark, b""),
        "binary header with a negative remark length",
    )
    .await;
    expect_rejected(addr, &frame(1, &[0, 10], b""), "binary header too short").await;
}

/// Peers that give up mid-frame, or dawdle: nothing to answer, and nobody else may wait for
/// them. Returns the dawdler, to be dropped at the end of the test.
async fn truncated_frames(addr: &str) -> TcpStream {
    let whole = frame(
        0,
        br#"{"code":10,"language":"JAVA","version":479,"opaque":5,"flag":0}"#,
        b"body",
    );
    for cut in [1, 3, 4, 7, 8, 20, whole.len() - 1] {
        let mut s = TcpStream::connect(addr).await.expect("connects");
        s.write_all(&whole[..cut]).await.expect("writes");
        drop(s);
    }
    // Announces a 1 MiB frame, sends a little of it and then nothing.
    let mut dawdler = TcpStream::connect(addr).await.expect("connects");
    let mut start = (1i32 << 20).to_be_bytes().to_vec();
    start.extend_from_slice(&[0, 0, 0, 2, b'{', b'}']);
    dawdler.write_all(&start).await.expect("writes");
    dawdler
}

/// Well-framed requests the broker must answer with an error, keeping the connection.
async fn bad_requests(addr: &str) {
    // Unknown code in a binary header: answered, with the request's opaque and a remark.
    let resp = expect_answer(
        addr,
        &frame(1, &binary_header(4242, 77, 0, b""), b"ignored"),
        "unknown code (binary header)",
    )
    .await;
    assert_eq!(resp.code, ResponseCode::RequestCodeNotSupported.value());
    assert_eq!(resp.opaque, 77);
    assert!(resp.is_response());
    assert!(resp.remark.as_deref().is_some_and(|r| !r.is_empty()));

    let client = RemotingClient::connect(addr).await.expect("connects");
    // Unknown code in a JSON header, one too large for a binary header.
    let resp = client
        .invoke(request(987_654, &[("x", "y")]), TIMEOUT)
        .await
        .expect("answered");
    assert_eq!(resp.code, ResponseCode::RequestCodeNotSupported.value());
    assert!(resp.remark.as_deref().is_some_and(|r| !r.is_empty()));
    // A oneway unknown code: nothing comes back, and the connection stays.
    client
        .invoke_oneway(request(4243, &[]))
        .expect("connection open");

    // SENDs the broker must refuse by name, each on the same connection.
    let refused: Vec<(&str, RemotingCommand)> = vec![
        (
            "no ext fields at all",
            request(RequestCode::SendMessageV2.value(), &[]).with_body(&b"x"[..]),
        ),
        (
            "missing topic",
            send_request("0", &[], &["b"], Bytes::from_static(b"x")),
        ),
        (
            "missing queue id",
            send_request("0", &[], &["e"], Bytes::from_static(b"x")),
        ),
        (
            "missing producer group",
            send_request("0", &[], &["a"], Bytes::from_static(b"x")),
        ),
        (
            "queue id not a number",
            send_request("zero", &[], &[], Bytes::from_static(b"x")),
        ),
        (
            "sysFlag not a number",
            send_request("0", &[("f", "0x10")], &[], Bytes::from_static(b"x")),
        ),
        (
            "born timestamp overflowing",
            send_request(
                "0",
                &[("g", "99999999999999999999999")],
                &[],
                Bytes::from_static(b"x"),
            ),
        ),
        (
            "queue id out of range",
            send_request("9999", &[], &[], Bytes::from_static(b"x")),
        ),
        (
            "body over maxMessageSize",
            send_request("0", &[], &[], Bytes::from(vec![b'z'; MAX_MESSAGE_SIZE + 1])),
        ),
        (
            "topic with illegal characters",
            send_request("0", &[("b", "bad topic/..")], &[], Bytes::from_static(b"x")),
        ),
        ("batch whose body is not a batch", {
            let mut cmd = send_request(
                "0",
                &[],
                &[],
                Bytes::from_static(b"\x00\x00\x00\x10not a batch"),
            );
            cmd.code = RequestCode::SendBatchMessage.value();
            cmd
        }),
        ("batch whose inner length runs past the body", {
            let mut inner = Vec::new();
            inner.extend_from_slice(&1000i32.to_be_bytes());
            inner.extend_from_slice(&[0u8; 20]);
            let mut cmd = send_request("0", &[], &[], Bytes::from(inner));
            cmd.code = RequestCode::SendBatchMessage.value();
            cmd
        }),
    ];
    for (what, cmd) in refused {
        let resp = client
            .invoke(cmd, TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{what}: the connection should stay and answer, got {e}"));
        assert!(
            resp.code != ResponseCode::Success.value(),
            "{what}: accepted: {resp:?}"
        );
        assert!(
            resp.remark.as_deref().is_some_and(|r| !r.is_empty()),
            "{what}: a refusal says why: {resp:?}"
        );
        println!("{what}: refused with {} {:?}", resp.code, resp.remark);
    }

    // Odd but parseable sends: answered, whatever the answer.
    let odd = [
        send_request(
            "0",
            &[("i", "\u{1}\u{1}\u{2}\u{2}KEYS")],
            &[],
            Bytes::from_static(b"x"),
        ),
        send_request("0", &[("i", "")], &[], Bytes::new()),
        // Flagged compressed, but not zlib: stored as sent, as Java does.
        send_request("0", &[("f", "1")], &[], Bytes::from_static(b"not zlib")),
        send_request(
            "0",
            &[("d", "-7"), ("h", "-1"), ("j", "-3")],
            &[],
            Bytes::from_static(b"x"),
        ),
    ];
    for cmd in odd {
        client
            .invoke(cmd, TIMEOUT)
            .await
            .expect("odd send answered");
    }

    // Pulls and queries with absurd numbers: answered, whatever the answer.
    let pulls = [
        ("queueOffset", "-5"),
        ("maxMsgNums", "2147483647"),
        ("queueId", "-1"),
        ("queueOffset", "9223372036854775807"),
        ("suspendTimeoutMillis", "-1"),
    ];
    for (key, value) in pulls {
        let mut fields = vec![
            ("consumerGroup", "bad_cg"),
            ("topic", TOPIC),
            ("queueId", "0"),
            ("queueOffset", "0"),
            ("maxMsgNums", "32"),
            ("sysFlag", "4"),
            ("commitOffset", "0"),
            ("suspendTimeoutMillis", "0"),
            ("subVersion", "0"),
            ("subscription", "*"),
            ("expressionType", "TAG"),
        ];
        fields.retain(|(k, _)| *k != key);
        fields.push((key, value));
        client
            .invoke(request(RequestCode::PullMessage.value(), &fields), TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("pull with {key}={value}: {e}"));
    }

    // A response nobody asked for: ignored, the connection stays.
    let mut s = TcpStream::connect(addr).await.expect("connects");
    let unsolicited = frame(
        0,
        br#"{"code":0,"language":"JAVA","version":479,"opaque":31337,"flag":1}"#,
        b"",
    );
    s.write_all(&unsolicited).await.expect("writes");
    let follow_up = frame(1, &binary_header(4244, 78, 0, b""), b"");
    s.write_all(&follow_up).await.expect("writes");
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    let answer = tokio::time::timeout(TIMEOUT, async {
        loop {
            if let Some(cmd) = decoder.decode(&mut buf).expect("well formed") {
                return cmd;
            }
            let n = s.read_buf(&mut buf).await.expect("reads");
            assert!(n > 0, "closed after an unsolicited response");
        }
    })
    .await
    .expect("answered after an unsolicited response");
    assert_eq!(answer.opaque, 78);

    // The same client still works after all of that.
    let ok = client
        .invoke(
            send_request("1", &[], &[], Bytes::from_static(b"still fine")),
            TIMEOUT,
        )
        .await
        .expect("answered");
    assert_eq!(ok.code, ResponseCode::Success.value(), "{ok:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_peers_do_not_disturb_a_producer() {
    let dir = tempfile::tempdir().unwrap();
    let max_size = format!("maxMessageSize={MAX_MESSAGE_SIZE}");
    let mut node = Standalone::start(dir.path(), &["flushDiskType=SYNC_FLUSH", &max_size]);
    let addr = node.broker.clone();

    // The topic exists before anyone misbehaves, so the producer's first send is a plain one.
    let admin = RemotingClient::connect(&addr).await.unwrap();
    let created = admin
        .invoke(
            request(
                RequestCode::UpdateAndCreateTopic.value(),
                &[
                    ("topic", TOPIC),
                    ("defaultTopic", "TBW102"),
                    ("readQueueNums", "4"),
                    ("writeQueueNums", "4"),
                    ("perm", "6"),
                    ("topicFilterType", "SINGLE_TAG"),
                    ("order", "false"),
                ],
            ),
            TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(created.code, ResponseCode::Success.value(), "{created:?}");

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let producing = tokio::spawn(producer(
        addr.clone(),
        stop.clone(),
        sent.clone(),
        failures.clone(),
    ));

    let dawdler = truncated_frames(&addr).await;
    malformed_frames(&addr).await;
    bad_requests(&addr).await;
    wrong_header_types(&addr).await;
    bad_bodies(&addr).await;
    let before = sent.load(Ordering::Relaxed);
    // The producer keeps going after the attacks, too.
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    producing.await.expect("producer task");
    drop(dawdler);

    let failures = lock(&failures).clone();
    assert!(failures.is_empty(), "the producer saw errors: {failures:?}");
    let total = sent.load(Ordering::Relaxed);
    assert!(
        before > 0 && total > before,
        "the producer made progress ({before} during, {total} in all)"
    );
    println!("producer: {total} sends, all SUCCESS");

    assert!(
        node.child.try_wait().expect("waitable").is_none(),
        "the node is still running"
    );
    let fresh = RemotingClient::connect(&addr).await.unwrap();
    let resp = fresh
        .invoke(
            send_request("2", &[], &[], Bytes::from_static(b"after")),
            TIMEOUT,
        )
        .await
        .expect("a fresh connection is answered");
    assert_eq!(resp.code, ResponseCode::Success.value(), "{resp:?}");
    drop(fresh);
    drop(admin);
    assert!(node.stop().success(), "still stops cleanly");
}
