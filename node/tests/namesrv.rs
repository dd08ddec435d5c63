//! The real `node namesrv` binary on loopback: it answers route queries, takes a broker's
//! registration as the Rust port of RocketMQ's broker sends it (captured bytes), serves the
//! route afterwards, and a malformed frame costs only its own connection.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use io_adapters::client::RemotingClient;
use proto_core::{FrameDecoder, RemotingCommand, RequestCode, ResponseCode};

struct Namesrv {
    child: Child,
    addr: String,
}

impl Drop for Namesrv {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start() -> Namesrv {
    let mut child = Command::new(env!("CARGO_BIN_EXE_node"))
        .args(["namesrv", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("node starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped"))
        .read_line(&mut line)
        .expect("prints its address");
    let addr = line
        .trim()
        .strip_prefix("name server listening on ")
        .expect("address line")
        .to_string();
    Namesrv { child, addr }
}

/// The first REGISTER_BROKER request captured from a real broker.
fn captured_registration() -> Option<RemotingCommand> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/broker-to-namesrv.jsonl"
    );
    let text = std::fs::read_to_string(path).ok()?;
    let line = text
        .lines()
        .find(|l| l.contains("\"code\":103") && l.contains("\"dir\":\"c2s\""))?;
    let hex = line.split("\"hex\":\"").nth(1)?.split('"').next()?;
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect();
    FrameDecoder::new()
        .decode(&mut BytesMut::from(&bytes[..]))
        .ok()
        .flatten()
}

fn route_request(topic: &str) -> RemotingCommand {
    let mut cmd = RemotingCommand::request(RequestCode::GetRouteinfoByTopic.value(), 0);
    cmd.ext_fields_mut().insert("topic", topic);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_follow_broker_registration() {
    let ns = start();
    let client = RemotingClient::connect(&ns.addr).await.unwrap();
    let timeout = Duration::from_secs(5);

    let unknown = client
        .invoke(route_request("TBW102"), timeout)
        .await
        .unwrap();
    assert_eq!(
        unknown.code,
        ResponseCode::TopicNotExist.value(),
        "{unknown:?}"
    );

    // A peer that sends garbage loses its own connection; others carry on.
    let mut bad = std::net::TcpStream::connect(&ns.addr).unwrap();
    bad.write_all(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0])
        .unwrap();

    let Some(register) = captured_registration() else {
        eprintln!("skipping the registration half: ../shared/vectors not found");
        return;
    };
    let registered = client.invoke(register, timeout).await.unwrap();
    assert_eq!(
        registered.code,
        ResponseCode::Success.value(),
        "{registered:?}"
    );

    let route = client
        .invoke(route_request("TBW102"), timeout)
        .await
        .unwrap();
    assert_eq!(route.code, ResponseCode::Success.value(), "{route:?}");
    let body = String::from_utf8_lossy(&route.body);
    assert!(
        body.contains("broker-a") && body.contains("10911"),
        "{body}"
    );

    let cluster = client
        .invoke(
            RemotingCommand::request(RequestCode::GetBrokerClusterInfo.value(), 0),
            timeout,
        )
        .await
        .unwrap();
    assert_eq!(cluster.code, ResponseCode::Success.value());
    assert!(String::from_utf8_lossy(&cluster.body).contains("DefaultCluster"));
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_node"))
        .args(["namesrv", "--listen", &addr])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}
