//! Three real `node controller` processes on loopback: one becomes leader (GET_METADATA_INFO),
//! a broker set registered through it gets a master, and after the leader is killed with
//! SIGKILL a new leader answers GET_REPLICA_INFO with the same master, epoch and sync state set,
//! read from the replicated log.
//!
//! Needs `cargo build --release -p node` first, like every test here.

mod support;

use std::net::TcpListener as StdListener;
use std::time::{Duration, Instant};

use io_adapters::client::RemotingClient;
use proto_core::{RemotingCommand, RequestCode, ResponseCode};
use support::{request, Node};

const WAIT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("bound").port()
}

fn start_controller(i: usize, peers: &str, dir: &std::path::Path) -> Node {
    let store = dir.join(format!("n{i}"));
    let args = [
        "controller".to_string(),
        "--set".to_string(),
        format!("controllerDLegerPeers={peers}"),
        "--set".to_string(),
        format!("controllerDLegerSelfId=n{i}"),
        "--set".to_string(),
        format!("controllerStorePath={}", store.display()),
        "--set".to_string(),
        "controllerDLegerGroup=test-group".to_string(),
        "--set".to_string(),
        "listenPort=0".to_string(),
        "--set".to_string(),
        "bindAddress=127.0.0.1".to_string(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Node::start(
        &args,
        &format!("controller n{i}"),
        "info,openraft=warn",
        WAIT,
    )
}

async fn call(addr: &str, cmd: RemotingCommand) -> Option<RemotingCommand> {
    let client = RemotingClient::connect(addr).await.ok()?;
    client.invoke(cmd, Duration::from_secs(5)).await.ok()
}

/// The address of the controller that says it leads, among `addrs`, waiting for one.
async fn find_leader(addrs: &[String]) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        for addr in addrs {
            let meta = request(RequestCode::ControllerGetMetadataInfo, &[]);
            if let Some(reply) = call(addr, meta).await {
                if reply.ext("isLeader") == Some("true") {
                    assert_eq!(reply.ext("group"), Some("test-group"));
                    assert_eq!(reply.ext("controllerLeaderAddress"), Some(addr.as_str()));
                    return addr.clone();
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no controller leader within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn heartbeat(leader: &str, broker_id: &str, addr: &str) {
    let hb = request(
        RequestCode::BrokerHeartbeat,
        &[
            ("clusterName", "c1"),
            ("brokerAddr", addr),
            ("brokerName", "broker-a"),
            ("brokerId", broker_id),
            ("epoch", "0"),
            ("maxOffset", "0"),
            ("confirmOffset", "0"),
            ("heartbeatTimeoutMills", "10000"),
            ("electionPriority", "0"),
        ],
    );
    let reply = call(leader, hb).await.expect("heartbeat answered");
    assert_eq!(reply.code, i32::from(ResponseCode::Success), "{reply:?}");
}

/// (masterBrokerId, masterAddress, masterEpoch, sync state set body) from GET_REPLICA_INFO.
async fn replica_info(leader: &str) -> (String, String, String, String) {
    let get = request(
        RequestCode::ControllerGetReplicaInfo,
        &[("brokerName", "broker-a")],
    );
    let reply = call(leader, get).await.expect("replica info answered");
    assert_eq!(reply.code, i32::from(ResponseCode::Success), "{reply:?}");
    let field = |k: &str| reply.ext(k).unwrap_or_default().to_string();
    (
        field("masterBrokerId"),
        field("masterAddress"),
        field("masterEpoch"),
        String::from_utf8_lossy(&reply.body).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_keeps_the_replicated_broker_set_after_kill9() {
    let dir = tempfile::tempdir().expect("temp dir");
    let peers: String = (0..3)
        .map(|i| format!("n{i}-127.0.0.1:{}", free_port()))
        .collect::<Vec<_>>()
        .join(";");
    let mut nodes: Vec<Node> = (0..3)
        .map(|i| start_controller(i, &peers, dir.path()))
        .collect();
    let addrs: Vec<String> = nodes.iter().map(|n| n.addr.clone()).collect();

    let leader = find_leader(&addrs).await;
    // A follower refuses writes and names the leader.
    let follower = addrs.iter().find(|a| **a != leader).expect("three nodes");
    let register = |id: &str, addr: &str| {
        request(
            RequestCode::ControllerRegisterBroker,
            &[
                ("clusterName", "c1"),
                ("brokerName", "broker-a"),
                ("brokerId", id),
                ("brokerAddress", addr),
                ("invokeTime", "0"),
            ],
        )
    };
    let refused = call(follower, register("1", "127.0.0.1:20911"))
        .await
        .expect("follower answers");
    assert_eq!(
        refused.code,
        i32::from(ResponseCode::ControllerNotLeader),
        "{refused:?}"
    );

    for (id, addr) in [("1", "127.0.0.1:20911"), ("2", "127.0.0.1:21911")] {
        let reply = call(&leader, register(id, addr))
            .await
            .expect("register answered");
        assert_eq!(reply.code, i32::from(ResponseCode::Success), "{reply:?}");
        heartbeat(&leader, id, addr).await;
    }
    let elect = request(
        RequestCode::ControllerElectMaster,
        &[
            ("clusterName", "c1"),
            ("brokerName", "broker-a"),
            ("brokerId", "1"),
            ("designateElect", "false"),
            ("invokeTime", "0"),
        ],
    );
    let elected = call(&leader, elect).await.expect("elect answered");
    assert_eq!(
        elected.code,
        i32::from(ResponseCode::Success),
        "{elected:?}"
    );
    let before = replica_info(&leader).await;
    assert_eq!(before.0, "1", "broker 1 asked to be master: {before:?}");
    assert_eq!(before.1, "127.0.0.1:20911");

    // SIGKILL the leader; the other two elect a leader that has the same broker set.
    let at = addrs
        .iter()
        .position(|a| *a == leader)
        .expect("leader is one of ours");
    drop(nodes.remove(at));
    let survivors: Vec<String> = addrs.iter().filter(|a| **a != leader).cloned().collect();
    let new_leader = find_leader(&survivors).await;
    assert_ne!(new_leader, leader);
    let after = replica_info(&new_leader).await;
    assert_eq!(after, before);
    drop(nodes);
}
