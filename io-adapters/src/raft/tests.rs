//! Three replicated machines in one process on 127.0.0.1 (ephemeral ports, temp dirs): a leader
//! is elected, proposals are applied on every replica in one order, losing the leader elects
//! another, and a restart replays the log from disk.
//!
//! The machine is a toy, not the controller: any request proposes its body; the reply goes out
//! when that entry is applied here (or CONTROLLER_NOT_LEADER when raft refuses it).

// Real sockets and threads: not for the simulator.
#![cfg(not(madsim))]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto_core::controller::Command;
use proto_core::role::{ConnId, Role, Transmit};
use proto_core::{RemotingCommand, ResponseCode};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::*;
use crate::client::RemotingClient;
use crate::MmapStorage;

/// What a toy machine shows the test.
#[derive(Default)]
struct Seen {
    applied: Vec<(u64, Entry)>,
    leader: LeaderView,
}

struct Toy {
    self_id: u64,
    seen: Arc<Mutex<Seen>>,
    next_id: u64,
    proposals: Vec<Entry>,
    /// Proposal id -> the request waiting for it.
    waiting: HashMap<u64, (ConnId, RemotingCommand)>,
    out: Vec<Transmit>,
}

/// An entry carrying `text` (as a broker name: the toy only needs some command to replicate).
fn toy_entry(proposer: u64, id: u64, text: &str) -> Entry {
    Entry {
        proposer,
        id,
        cmd: Command::RegisterBroker {
            cluster_name: "toy".to_string(),
            broker_name: text.to_string(),
            broker_id: 0,
            broker_address: String::new(),
        },
    }
}

fn entry_text(entry: &Entry) -> String {
    match &entry.cmd {
        Command::RegisterBroker { broker_name, .. } => broker_name.clone(),
        other => format!("{other:?}"),
    }
}

impl Role for Toy {
    fn handle_connected(&mut self, _: ConnId, _: SocketAddr, _: Option<&str>, _: u64) {}
    fn handle_command(&mut self, conn: ConnId, cmd: RemotingCommand, _: u64) {
        self.next_id += 1;
        let text = String::from_utf8_lossy(&cmd.body).to_string();
        self.proposals
            .push(toy_entry(self.self_id, self.next_id, &text));
        self.waiting.insert(self.next_id, (conn, cmd));
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

impl ApplyEntry for Toy {
    fn apply_entry(&mut self, index: u64, entry: &Entry, _: u64) -> Applied {
        lock(&self.seen).applied.push((index, entry.clone()));
        if entry.proposer == self.self_id {
            if let Some((conn, req)) = self.waiting.remove(&entry.id) {
                let cmd = RemotingCommand::response_to(&req, ResponseCode::Success.into(), None);
                self.out.push(Transmit::Send { conn, cmd });
            }
        }
        Applied::default()
    }
}

impl Replicated for Toy {
    fn poll_proposal(&mut self) -> Option<Entry> {
        (!self.proposals.is_empty()).then(|| self.proposals.remove(0))
    }
    fn proposal_failed(&mut self, id: u64, leader_addr: Option<String>, _: u64) {
        if let Some((conn, req)) = self.waiting.remove(&id) {
            let cmd = RemotingCommand::response_to(
                &req,
                ResponseCode::ControllerNotLeader.into(),
                leader_addr,
            );
            self.out.push(Transmit::Send { conn, cmd });
        }
    }
    fn leadership_changed(&mut self, view: LeaderView, _: u64) {
        lock(&self.seen).leader = view;
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One running replica.
struct Node {
    id: u64,
    remoting_addr: String,
    seen: Arc<Mutex<Seen>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = self.task.await;
    }
    fn applied_texts(&self) -> Vec<String> {
        lock(&self.seen)
            .applied
            .iter()
            .map(|(_, e)| entry_text(e))
            .collect()
    }
    fn is_leader(&self) -> bool {
        lock(&self.seen).leader.is_self
    }
}

async fn start(id: u64, peers: &[Peer], raft_listener: TcpListener, dir: &std::path::Path) -> Node {
    let remoting_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let remoting_addr = remoting_listener.local_addr().unwrap().to_string();
    // A stopped replica's tasks may still hold the directory's lock for a moment.
    let deadline = Instant::now() + Duration::from_secs(10);
    let storage = loop {
        match MmapStorage::open(dir) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("open {}: {e}", dir.display()),
        }
    };
    let seen = Arc::new(Mutex::new(Seen::default()));
    let toy = Toy {
        self_id: id,
        seen: seen.clone(),
        next_id: 0,
        proposals: Vec::new(),
        waiting: HashMap::new(),
        out: Vec::new(),
    };
    let config = ReplicatedConfig {
        self_id: id,
        peers: peers.to_vec(),
        group: "test".to_string(),
        remoting_addr: remoting_addr.clone(),
        raft_listener,
        remoting_listener,
        storage: Arc::new(storage),
        driver: DriverConfig::default(),
        heartbeat: Duration::from_millis(100),
    };
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        run_replicated(toy, config, async {
            let _ = stop_rx.await;
        })
        .await
        .expect("replica runs");
    });
    Node {
        id,
        remoting_addr,
        seen,
        stop: Some(stop_tx),
        task,
    }
}

async fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn leader_of(nodes: &[&Node]) -> usize {
    wait_for("a leader", || {
        let leaders: Vec<usize> = (0..nodes.len()).filter(|&i| nodes[i].is_leader()).collect();
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}

async fn propose(node: &Node, text: &str) -> RemotingCommand {
    let client = RemotingClient::connect(&node.remoting_addr).await.unwrap();
    let cmd = RemotingCommand::request(1, 0).with_body(text.as_bytes().to_vec());
    client.invoke(cmd, Duration::from_secs(10)).await.unwrap()
}

async fn cluster(dirs: &[tempfile::TempDir]) -> (Vec<Peer>, Vec<TcpListener>) {
    let mut peers = Vec::new();
    let mut listeners = Vec::new();
    for i in 0..dirs.len() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        peers.push(Peer {
            name: format!("n{i}"),
            id: i as u64,
            raft_addr: l.local_addr().unwrap().to_string(),
        });
        listeners.push(l);
    }
    (peers, listeners)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_elect_apply_in_order_fail_over_and_replay() {
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let (peers, listeners) = cluster(&dirs).await;
    let mut nodes = Vec::new();
    for (i, l) in listeners.into_iter().enumerate() {
        nodes.push(start(i as u64, &peers, l, dirs[i].path()).await);
    }

    // A leader is elected, and everyone learns its remoting address.
    let refs: Vec<&Node> = nodes.iter().collect();
    let leader = leader_of(&refs).await;
    let leader_addr = nodes[leader].remoting_addr.clone();
    wait_for("followers to learn the leader's address", || {
        nodes
            .iter()
            .all(|n| lock(&n.seen).leader.leader_addr.as_deref() == Some(leader_addr.as_str()))
            .then_some(())
    })
    .await;

    // A follower refuses a proposal and names the leader.
    let follower = (leader + 1) % 3;
    let refused = propose(&nodes[follower], "refused").await;
    assert_eq!(refused.code, i32::from(ResponseCode::ControllerNotLeader));
    assert_eq!(refused.remark.as_deref(), Some(leader_addr.as_str()));

    // Proposals are applied on all three, in one order.
    for i in 0..5 {
        let reply = propose(&nodes[leader], &format!("e{i}")).await;
        assert_eq!(reply.code, 0);
    }
    let want: Vec<String> = (0..5).map(|i| format!("e{i}")).collect();
    wait_for("all replicas to apply e0..e4", || {
        nodes
            .iter()
            .all(|n| n.applied_texts() == want)
            .then_some(())
    })
    .await;

    // The leader goes; the other two elect one of themselves and keep applying.
    let old = nodes.remove(leader);
    let old_id = old.id;
    old.stop().await;
    let refs: Vec<&Node> = nodes.iter().collect();
    let new_leader = leader_of(&refs).await;
    assert_ne!(nodes[new_leader].id, old_id);
    let reply = propose(&nodes[new_leader], "after").await;
    assert_eq!(reply.code, 0);
    let mut want_after = want.clone();
    want_after.push("after".to_string());
    wait_for("both survivors to apply `after`", || {
        nodes
            .iter()
            .all(|n| n.applied_texts() == want_after)
            .then_some(())
    })
    .await;

    // Everyone stops; one restarts alone and replays the committed log from its disk.
    let survivor = nodes.remove(0);
    let survivor_id = survivor.id;
    for n in nodes {
        n.stop().await;
    }
    survivor.stop().await;
    let at = survivor_id as usize;
    let listener = TcpListener::bind(peers[at].raft_addr.as_str())
        .await
        .unwrap();
    let restarted = start(survivor_id, &peers, listener, dirs[at].path()).await;
    wait_for("the restarted replica to replay its log", || {
        (restarted.applied_texts() == want_after).then_some(())
    })
    .await;
    restarted.stop().await;
}

#[test]
fn peers_parse_rocketmq_syntax_and_refuse_nonsense() {
    let peers = parse_peers("n0-127.0.0.1:9877;n1-127.0.0.1:9887; n2-127.0.0.1:9897").unwrap();
    assert_eq!(
        peers
            .iter()
            .map(|p| (p.id, p.raft_addr.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (0, "127.0.0.1:9877"),
            (1, "127.0.0.1:9887"),
            (2, "127.0.0.1:9897")
        ]
    );
    assert_eq!(peers[1].name, "n1");
    assert_eq!(parse_peers(""), Err(PeersError::Empty));
    assert!(matches!(
        parse_peers("n0:9877"),
        Err(PeersError::Malformed(_))
    ));
    assert!(matches!(parse_peers("nx-h:1"), Err(PeersError::BadName(_))));
    assert_eq!(parse_peers("n1-a:1;m1-b:2"), Err(PeersError::Duplicate(1)));
}
