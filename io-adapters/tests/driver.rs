//! The driver's own guarantees, with a trivial role on loopback: idle connections are closed,
//! a peer cannot have more than `in_flight_max` requests outstanding, and what a role transmits
//! while stopping still goes out.

// Test scaffolding: a failed setup step should fail the test loudly.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use io_adapters::client::RemotingClient;
use io_adapters::driver::{self, DriverConfig};
use proto_core::role::{ConnId, Role, Transmit};
use proto_core::RemotingCommand;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Counts requests; answers them only while `answer` is set, with `parts` as the body of the
/// answer when there are any (sent as `Transmit::SendParts`).
#[derive(Default)]
struct Counter {
    answer: bool,
    seen: Arc<Mutex<usize>>,
    out: Vec<Transmit>,
    last_conn: Option<ConnId>,
    parts: Vec<Bytes>,
}

impl Role for Counter {
    fn handle_connected(&mut self, _: ConnId, _: SocketAddr, _: Option<&str>, _: u64) {}
    fn handle_command(&mut self, conn: ConnId, cmd: RemotingCommand, _: u64) {
        *self.seen.lock().unwrap() += 1;
        self.last_conn = Some(conn);
        if self.answer {
            let mut response = RemotingCommand::response_to(&cmd, 0, None);
            if self.parts.is_empty() {
                self.out.push(Transmit::Send {
                    conn,
                    cmd: response,
                });
            } else {
                // The response's own body first, then the parts.
                response.body = Bytes::from_static(b"head|");
                self.out.push(Transmit::SendParts {
                    conn,
                    cmd: response,
                    parts: self.parts.clone(),
                });
            }
        }
    }
    fn handle_closed(&mut self, _: ConnId, _: u64) {}
    fn handle_peer_failed(&mut self, _: &str, _: &RemotingCommand, _: u64) {}
    fn handle_timeout(&mut self, _: u64) {}
    fn poll_transmit(&mut self) -> Option<Transmit> {
        (!self.out.is_empty()).then(|| self.out.remove(0))
    }
    fn next_timeout(&self) -> Option<u64> {
        None
    }
}

async fn serve(role: Counter, config: DriverConfig) -> (String, tokio::sync::oneshot::Sender<()>) {
    serve_with_stop(role, config, |_, _| {}).await
}

/// A [`Counter`] server that answers when `answer` and lets each connection have
/// `in_flight_max` requests in flight; returns its request count, address and stop switch.
async fn serve_counter(
    answer: bool,
    in_flight_max: usize,
) -> (Arc<Mutex<usize>>, String, tokio::sync::oneshot::Sender<()>) {
    let seen = Arc::new(Mutex::new(0));
    let role = Counter {
        answer,
        seen: seen.clone(),
        ..Counter::default()
    };
    let config = DriverConfig {
        in_flight_max,
        ..DriverConfig::default()
    };
    let (addr, stop) = serve(role, config).await;
    (seen, addr, stop)
}

async fn serve_with_stop(
    role: Counter,
    config: DriverConfig,
    on_stop: impl FnOnce(&mut Counter, u64) + Send + 'static,
) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(driver::run(
        role,
        listener,
        config,
        async {
            let _ = rx.await;
        },
        on_stop,
    ));
    (addr, tx)
}

#[tokio::test]
async fn idle_connections_are_closed() {
    let config = DriverConfig {
        idle_timeout: Duration::from_millis(200),
        ..DriverConfig::default()
    };
    let (addr, _stop) = serve(Counter::default(), config).await;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut buf = [0u8; 1];
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "the server closes a silent connection: {read:?}"
    );
}

#[tokio::test]
async fn in_flight_requests_per_connection_are_bounded() {
    let (seen, addr, _stop) = serve_counter(false, 5).await;
    let client = RemotingClient::connect(&addr).await.unwrap();
    let mut waits = Vec::new();
    let client = Arc::new(client);
    for _ in 0..20 {
        let c = client.clone();
        waits.push(tokio::spawn(async move {
            let _ = c
                .invoke(RemotingCommand::request(10, 0), Duration::from_millis(500))
                .await;
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        *seen.lock().unwrap(),
        5,
        "the role sees no more than the bound"
    );
    for w in waits {
        let _ = w.await;
    }
}

/// A body in parts reaches the peer as one body, small parts copied and large ones written
/// from where they lie, in order; the frame's length counts them all.
#[tokio::test]
async fn a_body_sent_in_parts_arrives_as_one_body() {
    let parts: Vec<Bytes> = [10, 5000, 3, 2048, 2047, 70_000]
        .iter()
        .enumerate()
        .map(|(i, &len)| Bytes::from(vec![b'a' + i as u8; len]))
        .collect();
    let role = Counter {
        answer: true,
        parts: parts.clone(),
        ..Counter::default()
    };
    let (addr, _stop) = serve(role, DriverConfig::default()).await;
    let client = RemotingClient::connect(&addr).await.unwrap();
    let mut expected = b"head|".to_vec();
    for part in &parts {
        expected.extend_from_slice(part);
    }
    for opaque in 0..3 {
        let resp = client
            .invoke(RemotingCommand::request(11, opaque), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(resp.code, 0);
        assert!(
            resp.body == expected[..],
            "body of {} bytes",
            resp.body.len()
        );
    }
}

#[tokio::test]
async fn answered_requests_free_their_slots() {
    let (seen, addr, _stop) = serve_counter(true, 2).await;
    let client = RemotingClient::connect(&addr).await.unwrap();
    for _ in 0..10 {
        let resp = client
            .invoke(RemotingCommand::request(10, 0), Duration::from_secs(2))
            .await
            .unwrap();
        assert_eq!(resp.code, 0);
    }
    assert_eq!(*seen.lock().unwrap(), 10);
}

#[tokio::test]
async fn what_a_role_sends_while_stopping_goes_out() {
    let role = Counter {
        answer: true,
        ..Counter::default()
    };
    let (addr, stop) = serve_with_stop(role, DriverConfig::default(), |role, _| {
        if let Some(conn) = role.last_conn {
            role.out.push(Transmit::Send {
                conn,
                cmd: RemotingCommand::request(104, 7),
            });
        }
    })
    .await;
    let client = RemotingClient::connect(&addr).await.unwrap();
    let mut server_requests = client.take_server_requests().unwrap();
    client
        .invoke(RemotingCommand::request(10, 0), Duration::from_secs(2))
        .await
        .unwrap();
    stop.send(()).unwrap();
    let goodbye = tokio::time::timeout(Duration::from_secs(3), server_requests.recv()).await;
    assert!(
        matches!(goodbye, Ok(Some(ref cmd)) if cmd.code == 104),
        "{goodbye:?}"
    );
}

/// Request frames `first..=last` (opaques), encoded back to back.
fn request_frames(opaques: std::ops::RangeInclusive<i32>) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    for opaque in opaques {
        let cmd = RemotingCommand::request(10, opaque);
        proto_core::encode_frame(&cmd, proto_core::SerializeType::Json, &mut out).unwrap();
    }
    out.to_vec()
}

/// Reads response frames until the server closes the connection; their opaques in order.
async fn answers_until_closed(stream: &mut tokio::net::TcpStream) -> Vec<i32> {
    let mut bytes = bytes::BytesMut::new();
    let read = async { while stream.read_buf(&mut bytes).await.unwrap() > 0 {} };
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the server closes the connection");
    let mut decoder = proto_core::FrameDecoder::new();
    std::iter::from_fn(|| decoder.decode(&mut bytes).unwrap())
        .map(|cmd| cmd.opaque)
        .collect()
}

/// The reader hands the core every frame one read brings at once: with fewer permits than
/// frames it must hand over what it holds before waiting for a permit, or nothing would ever
/// be answered. Frames before a malformed one still reach the role, in order; answers the
/// core had not written when it learnt of the close are dropped with the connection.
#[tokio::test]
async fn frames_of_one_write_are_served_in_order_up_to_a_malformed_one() {
    use tokio::io::AsyncWriteExt;

    let (seen, addr, _stop) = serve_counter(true, 2).await;
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let mut frames = request_frames(1..=10);
    // A frame whose header length runs past its end.
    frames.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 100, 0, 0, 0, 0]);
    stream.write_all(&frames).await.unwrap();
    let answers = answers_until_closed(&mut stream).await;
    assert!(answers.len() >= 2, "{answers:?}");
    assert_eq!(answers, (1..=answers.len() as i32).collect::<Vec<_>>());
    assert_eq!(*seen.lock().unwrap(), 10);
}
