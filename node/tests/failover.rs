//! Automatic failover with the real binary on loopback: three `node controller` processes (a
//! Raft group), a name server, and one broker set of three brokers in controller mode (every
//! send acknowledged by the whole sync state set, `minInSyncReplicas=2`). A producer sends
//! without pause and a consumer group reads, both through the name server's routes. The master
//! is SIGKILLed: a slave must take over within 10 s, the producer must carry on against it, and
//! every message acknowledged SEND_OK, before or after the kill, must reach the consumer.

mod support;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use io_adapters::client::RemotingClient;
use io_adapters::consumer::GroupConsumer;
use io_adapters::producer::Producer;
use proto_core::body::ConsumeFromWhere;
use proto_core::client::{parse_route, route_request};
use proto_core::ResponseCode;
use support::Node;

const TOPIC: &str = "FailoverTopic";
const BROKER_NAME: &str = "broker-f";
const QUEUES: i32 = 4;
const TIMEOUT: Duration = Duration::from_secs(5);
/// Sends acknowledged before the kill, and again after the failover.
const SENDS_PER_PHASE: usize = 200;
/// The bound on failover: kill to the first SEND_OK from the new master.
const FAILOVER_MAX: Duration = Duration::from_secs(10);
/// Every other wait in this test ends within this.
const WAIT_MAX: Duration = Duration::from_secs(60);

/// A port nothing listens on right now (the OS picks it; we release it at once).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("an ephemeral port")
        .port()
}

/// A port `p` with `p + 1` free too: brokers listen on `p` and replicate on `p + 1`.
fn free_port_pair() -> u16 {
    loop {
        let p = free_port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}

fn start(args: &[String], what: &str, rust_log: &str) -> Node {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start(&args, what, rust_log, WAIT_MAX)
}

fn with_sets(mut args: Vec<String>, sets: &[String]) -> Vec<String> {
    for set in sets {
        args.push("--set".into());
        args.push(set.clone());
    }
    args
}

fn controller(i: usize, peers: &str, dir: &Path) -> Node {
    let args = with_sets(
        vec!["controller".into()],
        &[
            "controllerDLegerGroup=failover".into(),
            format!("controllerDLegerPeers={peers}"),
            format!("controllerDLegerSelfId=n{i}"),
            format!("controllerStorePath={}", dir.display()),
            "listenPort=0".into(),
            "bindAddress=127.0.0.1".into(),
            "scanNotActiveBrokerInterval=500".into(),
        ],
    );
    // openraft narrates every vote at info.
    start(&args, &format!("controller n{i}"), "warn")
}

fn broker(id: u8, namesrv: &str, controllers: &str, port: u16, dir: &Path) -> Node {
    let args = with_sets(
        vec!["broker".into(), "-n".into(), namesrv.into()],
        &[
            format!("brokerName={BROKER_NAME}"),
            format!("brokerId={id}"),
            format!("storePathRootDir={}", dir.display()),
            format!("listenPort={port}"),
            "bindAddress=127.0.0.1".into(),
            "brokerIP1=127.0.0.1".into(),
            "mappedFileSizeCommitLog=1048576".into(),
            "enableControllerMode=true".into(),
            format!("controllerAddr={controllers}"),
            "allAckInSyncStateSet=true".into(),
            "minInSyncReplicas=2".into(),
            "controllerHeartBeatTimeoutMills=3000".into(),
            "brokerHeartbeatInterval=500".into(),
            "syncBrokerMetadataPeriod=1000".into(),
            "checkSyncStateSetPeriod=500".into(),
            "registerNameServerPeriod=2000".into(),
            "syncFlushTimeout=3000".into(),
        ],
    );
    start(&args, "broker", "info")
}

/// The broker set's master address in the name server's route of `topic`, if it has one.
async fn master_in_route(namesrv: &str, topic: &str) -> Option<String> {
    let client = RemotingClient::connect(namesrv).await.ok()?;
    let resp = client.invoke(route_request(topic), TIMEOUT).await.ok()?;
    let route = parse_route(&resp).ok()?;
    route
        .broker_datas
        .iter()
        .find(|b| b.broker_name == BROKER_NAME)
        .and_then(|b| b.broker_addrs.get(&0).cloned())
}

async fn create_topic(broker: &str) -> i32 {
    let Ok(client) = RemotingClient::connect(broker).await else {
        return -1;
    };
    let cmd = support::create_topic_request(TOPIC, QUEUES);
    client.invoke(cmd, TIMEOUT).await.map_or(-1, |r| r.code)
}

/// The broker port in an offset message id (hex of ip:4, port:4, offset:8).
fn port_of(offset_msg_id: &str) -> Option<u16> {
    let port = offset_msg_id.get(8..16)?;
    u32::from_str_radix(port, 16).ok()?.try_into().ok()
}

/// What the producer task saw: acknowledged bodies with the acknowledging broker's port and
/// the instant of the ack.
#[derive(Default)]
struct Sent {
    acked: Vec<(String, u16, Instant)>,
    failures: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slave_takes_over_within_ten_seconds_and_no_acknowledged_message_is_lost() {
    let dirs: Vec<tempfile::TempDir> = (0..6).map(|_| tempfile::tempdir().unwrap()).collect();
    let raft_ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    let peers = raft_ports
        .iter()
        .enumerate()
        .map(|(i, p)| format!("n{i}-127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(";");
    let controllers: Vec<Node> = (0..3)
        .map(|i| controller(i, &peers, dirs[i].path()))
        .collect();
    let controller_list = controllers
        .iter()
        .map(|c| c.addr.clone())
        .collect::<Vec<_>>()
        .join(";");

    let ns = Node::start(
        &["namesrv", "--listen", "127.0.0.1:0"],
        "name server",
        "info",
        WAIT_MAX,
    );
    let broker_ports: Vec<u16> = (0..3).map(|_| free_port_pair()).collect();
    let mut brokers: Vec<Option<Node>> = (0..3)
        .map(|i| {
            Some(broker(
                i as u8 + 1,
                &ns.addr,
                &controller_list,
                broker_ports[i],
                dirs[3 + i].path(),
            ))
        })
        .collect();

    // The controller elects a master; it registers with the name server as brokerId 0.
    let master = support::eventually(WAIT_MAX, "a master in the name server's route", || {
        master_in_route(&ns.addr, "TBW102")
    })
    .await;
    println!("first master: {master}");
    support::eventually(WAIT_MAX, "the topic to be created on the master", || {
        let master = master.clone();
        async move { (create_topic(&master).await == ResponseCode::Success.value()).then_some(()) }
    })
    .await;
    support::eventually(WAIT_MAX, "the topic's route", || {
        master_in_route(&ns.addr, TOPIC)
    })
    .await;

    // The sync state set must grow to two before a send is acknowledged (minInSyncReplicas).
    let producer = Arc::new(Producer::new(&ns.addr, "failover_pg").unwrap());
    support::eventually(WAIT_MAX, "a first acknowledged send", || {
        let producer = producer.clone();
        async move { producer.send(TOPIC, "probe", None, None).await.ok() }
    })
    .await;

    let sent = Arc::new(Mutex::new(Sent::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let (producer, sent, stop) = (producer.clone(), sent.clone(), stop.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let body = format!("m-{i}");
                i += 1;
                match producer.send(TOPIC, body.clone(), Some("TagA"), None).await {
                    Ok(r) => {
                        let port = port_of(&r.offset_msg_id).unwrap_or(0);
                        sent.lock()
                            .unwrap()
                            .acked
                            .push((body, port, Instant::now()));
                    }
                    Err(_) => {
                        sent.lock().unwrap().failures += 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        })
    };

    let received = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let consuming = {
        let (received, stop_reading) = (received.clone(), Arc::new(AtomicBool::new(false)));
        let ns_addr = ns.addr.clone();
        let handle = tokio::spawn({
            let stop_reading = stop_reading.clone();
            async move {
                let from = ConsumeFromWhere::ConsumeFromFirstOffset;
                let mut member = loop {
                    match GroupConsumer::start(&ns_addr, "failover_cg", TOPIC, "*", from).await {
                        Ok(m) => break m,
                        Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                    }
                };
                let mut last_rebalance = Instant::now();
                while !stop_reading.load(Ordering::Relaxed) {
                    // After a failover the route names the new master, which must hear this
                    // member's heartbeat before it lists it in the group; a Java consumer
                    // does both every 30 s (heartbeat) and 20 s (rebalance), this one every
                    // second.
                    if last_rebalance.elapsed() > Duration::from_secs(1) {
                        let _ = member.heartbeat().await;
                        let _ = member.rebalance().await;
                        last_rebalance = Instant::now();
                    }
                    match member.poll(Duration::from_millis(500)).await {
                        Ok(batch) => {
                            {
                                let mut got = received.lock().unwrap();
                                for (_, record) in batch {
                                    got.insert(String::from_utf8_lossy(&record.body).into_owned());
                                }
                            }
                            let _ = member.commit().await;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            }
        });
        (handle, stop_reading)
    };

    let acked_count = |sent: &Arc<Mutex<Sent>>| sent.lock().unwrap().acked.len();
    support::eventually(WAIT_MAX, "sends before the kill", || {
        let n = acked_count(&sent);
        async move { (n >= SENDS_PER_PHASE).then_some(()) }
    })
    .await;

    // SIGKILL the master.
    let master_port: u16 = master.rsplit(':').next().unwrap().parse().unwrap();
    let victim = broker_ports.iter().position(|p| *p == master_port).unwrap();
    let mut killed = brokers[victim].take().unwrap();
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let killed_at = Instant::now();
    let before_kill = acked_count(&sent);
    println!("killed the master {master} after {before_kill} acknowledged sends");

    let (new_port, first_ack) =
        support::eventually(WAIT_MAX, "an acknowledgement from a new master", || {
            let sent = sent.clone();
            async move {
                let sent = sent.lock().unwrap();
                sent.acked
                    .iter()
                    .find(|(_, port, at)| *at > killed_at && *port != master_port)
                    .map(|(_, port, at)| (*port, *at))
            }
        })
        .await;
    let failover = first_ack.duration_since(killed_at);
    println!("failover to 127.0.0.1:{new_port} took {failover:?}");
    assert!(
        failover <= FAILOVER_MAX,
        "failover took {failover:?}, more than {FAILOVER_MAX:?}"
    );
    assert!(broker_ports.contains(&new_port));

    support::eventually(WAIT_MAX, "sends after the failover", || {
        let n = acked_count(&sent);
        async move { (n >= before_kill + SENDS_PER_PHASE).then_some(()) }
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    producing.await.unwrap();

    let acked: BTreeSet<String> = sent
        .lock()
        .unwrap()
        .acked
        .iter()
        .map(|(body, _, _)| body.clone())
        .collect();
    println!(
        "{} acknowledged, {} failed attempts",
        acked.len(),
        sent.lock().unwrap().failures
    );
    let deadline = Instant::now() + WAIT_MAX;
    loop {
        let missing: Vec<String> = acked
            .difference(&received.lock().unwrap())
            .cloned()
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} acknowledged messages never consumed, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    consuming.1.store(true, Ordering::Relaxed);
    let _ = consuming.0.await;
    drop(brokers);
    drop(controllers);
}
