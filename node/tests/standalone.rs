//! The real `node standalone` binary on loopback: a broker registers with its name server, a
//! client finds the route, sends, pulls the same bytes back, survives a restart, and a malformed
//! frame costs only its own connection.

mod support;

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use proto_core::{RemotingCommand, RequestCode, ResponseCode};
use store_core::format::record::decode_all;
use support::{pull_request, request, send_v2_request, Standalone};

const TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the name server for `topic`'s route until it answers SUCCESS (the broker registers
/// asynchronously at start).
async fn wait_for_route(ns: &RemotingClient, topic: &str) -> RemotingCommand {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = ns
            .invoke(
                request(RequestCode::GetRouteinfoByTopic, &[("topic", topic)]),
                TIMEOUT,
            )
            .await
            .expect("name server answers");
        if resp.code == ResponseCode::Success.value() {
            return resp;
        }
        assert!(Instant::now() < deadline, "no route for {topic}: {resp:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn send(
    broker: &RemotingClient,
    topic: &str,
    body: &'static [u8],
    keys: &str,
) -> RemotingCommand {
    let props = format!("KEYS\u{1}{keys}\u{2}TAGS\u{1}TagA\u{2}WAIT\u{1}true\u{2}");
    let cmd = send_v2_request(
        "itest_pg",
        topic,
        "4",
        "0",
        &props,
        Bytes::from_static(body),
    );
    broker
        .invoke(cmd, TIMEOUT)
        .await
        .expect("broker answers the send")
}

async fn pull(broker: &RemotingClient, topic: &str, offset: i64) -> RemotingCommand {
    let offset = offset.to_string();
    let cmd = pull_request("itest_cg", topic, "0", &offset);
    broker
        .invoke(cmd, TIMEOUT)
        .await
        .expect("broker answers the pull")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_pull_restart_and_malformed_frames() {
    let dir = tempfile::tempdir().unwrap();
    let node = Standalone::start(dir.path(), &[]);
    let ns = RemotingClient::connect(&node.namesrv).await.unwrap();
    wait_for_route(&ns, "TBW102").await;

    let broker = RemotingClient::connect(&node.broker).await.unwrap();
    let sent = send(&broker, "ITopic", b"hello rocketmq", "order-1").await;
    assert_eq!(sent.code, ResponseCode::Success.value(), "{sent:?}");
    assert_eq!(sent.ext("queueId"), Some("0"));
    assert_eq!(sent.ext("queueOffset"), Some("0"));
    assert!(sent.ext("msgId").is_some_and(|id| id.len() == 32));

    // A new topic created through TBW102 is routable.
    wait_for_route(&ns, "ITopic").await;

    // A peer that sends garbage loses its own connection; others carry on.
    let mut bad = std::net::TcpStream::connect(&node.broker).unwrap();
    bad.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0])
        .unwrap();
    let got = pull(&broker, "ITopic", 0).await;
    assert_eq!(got.code, ResponseCode::Success.value(), "{got:?}");
    let records: Vec<_> = decode_all(got.body.clone())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(&records[0].body[..], b"hello rocketmq");
    assert_eq!(records[0].queue_offset, 0);

    // Past the end: no new message.
    let none = pull(&broker, "ITopic", 1).await;
    assert_eq!(none.code, ResponseCode::PullNotFound.value(), "{none:?}");

    // A clean stop, then a restart on the same data: the message is still there.
    drop(broker);
    drop(ns);
    assert!(node.stop().success());
    assert!(
        !dir.path().join("abort").exists(),
        "clean shutdown removes the abort marker"
    );
    let node = Standalone::start(dir.path(), &[]);
    let broker = RemotingClient::connect(&node.broker).await.unwrap();
    let again = pull(&broker, "ITopic", 0).await;
    assert_eq!(again.code, ResponseCode::Success.value(), "{again:?}");
    let records: Vec<_> = decode_all(again.body.clone())
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(&records[0].body[..], b"hello rocketmq");
    let next = send(&broker, "ITopic", b"second", "order-2").await;
    assert_eq!(
        next.ext("queueOffset"),
        Some("1"),
        "queue offsets continue after restart"
    );
    assert!(node.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_node"))
        .args(["standalone", "--data-dir"])
        .arg(dir.path())
        .args(["--set", &format!("namesrvListen=127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_value_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_node"))
        .args(["standalone", "--data-dir"])
        .arg(dir.path())
        .args(["--set", "flushDiskType=SOMETIMES"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("flushDiskType"), "{stderr}");
}
