//! The controller's replicated log: openraft 0.9 under a machine whose logic is ours.
//!
//! [`run_replicated`] runs a [`Replicated`] machine (the `ControllerRole`) on the remoting driver
//! and a raft node beside it: entries the machine proposes are written to raft, committed entries
//! come back to the machine in log order through driver jobs, and leadership changes are told to
//! it as they happen. Raft itself only orders and stores the entries; what they mean is the
//! machine's. The pieces: `types.rs` (type config), `runtime.rs` (openraft over our tokio or
//! madsim), `log_store.rs` (durable log and vote), `state_machine.rs` (apply through the driver),
//! `network.rs` (raft RPCs over remoting frames).
//!
//! Left out: membership changes after the first start (the peer set comes from configuration and
//! every node initializes the cluster with all of it).

pub mod log_store;
pub mod network;
pub mod runtime;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{BasicNode, ServerState, SnapshotPolicy};
use proto_core::role::{ConnId, Role, Transmit};
use proto_core::RemotingCommand;
use store_core::storage::Storage;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use crate::driver::{self, DriverConfig, Hooks, Job};
use log_store::{LogStore, LogStoreError};
use network::{remoting_addr_of, AddressBook, Network};
use state_machine::{ApplyEntry, StateMachine};
pub use types::{Applied, Entry, Raft};

/// Jobs queued towards the driver before raft's tasks wait.
const JOB_QUEUE_LEN: usize = 1024;
/// How often the leadership watcher looks again even without a metrics change (a follower may
/// learn the leader's remoting address after it learned who leads).
const LEADERSHIP_RECHECK: Duration = Duration::from_millis(500);

/// One controller of the group, as `controllerDLegerPeers` names it (`n0-127.0.0.1:9877`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// The configured name (`n0`).
    pub name: String,
    /// The raft node id: the name's trailing number.
    pub id: u64,
    /// Where its raft listener is.
    pub raft_addr: String,
}

/// A bad `controllerDLegerPeers` or `controllerDLegerSelfId`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeersError {
    #[error("peer `{0}` is not `<name>-<host>:<port>`")]
    Malformed(String),
    #[error("peer name `{0}` does not end in a number (n0, n1, ...)")]
    BadName(String),
    #[error("peer id {0} appears twice")]
    Duplicate(u64),
    #[error("no peers configured")]
    Empty,
    #[error("self id `{0}` is not one of the peers")]
    UnknownSelf(String),
}

/// Parses `controllerDLegerPeers`: `n0-host:port;n1-host:port;...`.
pub fn parse_peers(text: &str) -> Result<Vec<Peer>, PeersError> {
    let mut peers: Vec<Peer> = Vec::new();
    for item in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, addr) = item
            .split_once('-')
            .filter(|(n, a)| !n.is_empty() && a.contains(':'))
            .ok_or_else(|| PeersError::Malformed(item.to_string()))?;
        let id = peer_id(name)?;
        if peers.iter().any(|p| p.id == id) {
            return Err(PeersError::Duplicate(id));
        }
        peers.push(Peer {
            name: name.to_string(),
            id,
            raft_addr: addr.to_string(),
        });
    }
    if peers.is_empty() {
        return Err(PeersError::Empty);
    }
    Ok(peers)
}

/// The raft node id of a peer name: its trailing digits (`n0` is 0).
pub fn peer_id(name: &str) -> Result<u64, PeersError> {
    let digits = name.trim_start_matches(|c: char| !c.is_ascii_digit());
    digits
        .parse()
        .map_err(|_| PeersError::BadName(name.to_string()))
}

/// Who leads the raft group, as the machine is told.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaderView {
    pub term: u64,
    /// The leader's raft node id, if one is known.
    pub leader_id: Option<u64>,
    /// The leader's remoting address (where brokers reach it), once known.
    pub leader_addr: Option<String>,
    /// This node is the leader.
    pub is_self: bool,
}

/// A machine that runs on the remoting driver and keeps its state in the replicated log.
pub trait Replicated: Role + ApplyEntry {
    /// The next entry the machine wants replicated.
    fn poll_proposal(&mut self) -> Option<Entry>;
    /// Raft refused the proposal `id` (not the leader; `leader_addr` is the leader's remoting
    /// address if known), or stopped.
    fn proposal_failed(&mut self, id: u64, leader_addr: Option<String>, now_ms: u64);
    /// The raft leadership changed.
    fn leadership_changed(&mut self, view: LeaderView, now_ms: u64);
}

/// What [`run_replicated`] needs besides the machine.
pub struct ReplicatedConfig<S> {
    /// This node's raft id; must be one of `peers`.
    pub self_id: u64,
    pub peers: Vec<Peer>,
    /// The `controllerDLegerGroup`, raft's cluster name.
    pub group: String,
    /// Where brokers reach this node (announced to the other controllers).
    pub remoting_addr: String,
    /// Bound to this node's raft address.
    pub raft_listener: TcpListener,
    /// Bound to the remoting port.
    pub remoting_listener: TcpListener,
    /// Holds the log (`raft/` inside it).
    pub storage: Arc<S>,
    pub driver: DriverConfig,
    /// Leader heartbeat period; elections start after 3-6 of them without one.
    pub heartbeat: Duration,
}

/// Why the replicated machine could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReplicatedError {
    #[error("raft log: {0}")]
    Log(#[from] LogStoreError),
    #[error("raft config: {0}")]
    Config(String),
    #[error("raft: {0}")]
    Raft(String),
}

/// The machine as the driver runs it: after every turn its proposals go to raft.
pub struct Driven<R> {
    pub inner: R,
    proposals: mpsc::UnboundedSender<Entry>,
}

impl<R: Replicated> Role for Driven<R> {
    fn handle_connected(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        dialled: Option<&str>,
        now_ms: u64,
    ) {
        self.inner.handle_connected(conn, remote, dialled, now_ms);
    }
    fn handle_command(&mut self, conn: ConnId, cmd: RemotingCommand, now_ms: u64) {
        self.inner.handle_command(conn, cmd, now_ms);
    }
    fn handle_closed(&mut self, conn: ConnId, now_ms: u64) {
        self.inner.handle_closed(conn, now_ms);
    }
    fn handle_peer_failed(&mut self, addr: &str, cmd: &RemotingCommand, now_ms: u64) {
        self.inner.handle_peer_failed(addr, cmd, now_ms);
    }
    fn handle_timeout(&mut self, now_ms: u64) {
        self.inner.handle_timeout(now_ms);
    }
    fn handle_turn_end(&mut self, now_ms: u64) {
        self.inner.handle_turn_end(now_ms);
        // After everything the turn did (commands, jobs, timers) had its chance to propose.
        self.drain_proposals();
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.inner.poll_transmit()
    }
    fn next_timeout(&self) -> Option<u64> {
        self.inner.next_timeout()
    }
}

impl<R: Replicated> Driven<R> {
    /// Hands every pending proposal to the proposal task.
    fn drain_proposals(&mut self) {
        while let Some(entry) = self.inner.poll_proposal() {
            // The task is gone only when the node is stopping; the proposal is moot then.
            let _ = self.proposals.send(entry);
        }
    }
}

impl<R: Replicated> ApplyEntry for Driven<R> {
    fn apply_entry(&mut self, index: u64, entry: &Entry, now_ms: u64) -> Applied {
        self.inner.apply_entry(index, entry, now_ms)
    }
}

/// Runs `machine` replicated through raft until `shutdown` resolves; returns the machine.
pub async fn run_replicated<R, S>(
    machine: R,
    config: ReplicatedConfig<S>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<R, ReplicatedError>
where
    R: Replicated + Send + 'static,
    S: Storage + Send + Sync + 'static,
{
    let raft_config = openraft::Config {
        cluster_name: config.group.clone(),
        heartbeat_interval: config.heartbeat.as_millis() as u64,
        election_timeout_min: 3 * config.heartbeat.as_millis() as u64,
        election_timeout_max: 6 * config.heartbeat.as_millis() as u64,
        // See state_machine.rs: the log stays whole, so no snapshot is ever needed.
        snapshot_policy: SnapshotPolicy::Never,
        ..Default::default()
    }
    .validate()
    .map_err(|e| ReplicatedError::Config(e.to_string()))?;

    let log = LogStore::open(config.storage.clone())?;
    let (jobs_tx, jobs_rx) = mpsc::channel::<Job<Driven<R>>>(JOB_QUEUE_LEN);
    let (proposals_tx, proposals_rx) = mpsc::unbounded_channel();
    let driven = Driven {
        inner: machine,
        proposals: proposals_tx,
    };
    let hooks = Hooks {
        jobs: jobs_rx,
        after_turn: Box::new(|_: &Driven<R>| {}),
    };
    let book: AddressBook = Arc::default();
    if let Ok(mut b) = book.lock() {
        b.insert(config.self_id, config.remoting_addr.clone());
    }
    let raft_parts = RaftParts {
        self_id: config.self_id,
        group: config.group,
        peers: config.peers,
        network: Network {
            self_id: config.self_id,
            remoting_addr: config.remoting_addr,
        },
        raft_listener: config.raft_listener,
        book,
    };
    // The driver runs while raft starts: openraft re-applies the committed log inside
    // `Raft::new`, and applying goes through the driver's jobs.
    let (failed_tx, failed_rx) = oneshot::channel::<()>();
    let stop = async move {
        tokio::select! {
            _ = shutdown => {}
            // Dropped unsent once raft is up: only a sent value stops the driver.
            Ok(()) = failed_rx => {}
        }
    };
    let start = async {
        let started = start_raft(raft_parts, raft_config, log, jobs_tx, proposals_rx).await;
        if started.is_err() {
            let _ = failed_tx.send(());
        }
        started
    };
    let driving = driver::run_with(
        driven,
        config.remoting_listener,
        config.driver,
        stop,
        |_, _| {},
        hooks,
    );
    let (started, driven) = tokio::join!(start, driving);
    let (raft, tasks) = started?;
    for task in tasks {
        task.abort();
    }
    if let Err(e) = raft.shutdown().await {
        tracing::warn!(error = %e, "raft did not stop cleanly");
    }
    Ok(driven.inner)
}

/// What [`start_raft`] needs from the config.
struct RaftParts {
    self_id: u64,
    group: String,
    peers: Vec<Peer>,
    network: Network,
    raft_listener: TcpListener,
    book: AddressBook,
}

/// Starts the raft node, its listener, the proposal writer and the leadership watcher.
async fn start_raft<R: Replicated + Send + 'static, S: Storage + Send + Sync + 'static>(
    parts: RaftParts,
    raft_config: openraft::Config,
    log: LogStore<S>,
    jobs: mpsc::Sender<Job<Driven<R>>>,
    proposals: mpsc::UnboundedReceiver<Entry>,
) -> Result<(Raft, Vec<tokio::task::JoinHandle<()>>), ReplicatedError> {
    let raft = Raft::new(
        parts.self_id,
        Arc::new(raft_config),
        parts.network,
        log,
        StateMachine::new(jobs.clone()),
    )
    .await
    .map_err(|e| ReplicatedError::Raft(e.to_string()))?;
    let server = tokio::spawn(network::serve(
        parts.raft_listener,
        raft.clone(),
        parts.book.clone(),
    ));
    let members: BTreeMap<u64, BasicNode> = parts
        .peers
        .iter()
        .map(|p| (p.id, BasicNode::new(&p.raft_addr)))
        .collect();
    // Every node proposes the same initial membership; a node with any log or vote refuses,
    // which is the normal case after the first start.
    match raft.initialize(members).await {
        Ok(()) => tracing::info!(group = %parts.group, "raft group initialized"),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
        Err(e) => {
            server.abort();
            let _ = raft.shutdown().await;
            return Err(ReplicatedError::Raft(e.to_string()));
        }
    }
    let proposer = tokio::spawn(propose_loop(
        raft.clone(),
        proposals,
        jobs.clone(),
        parts.book.clone(),
    ));
    let watcher = tokio::spawn(watch_leadership(raft.clone(), jobs, parts.book));
    Ok((raft, vec![server, proposer, watcher]))
}

/// Writes the machine's proposals to raft in the order it made them; a refusal goes back to the
/// machine as `proposal_failed` with the leader's remoting address when raft knows the leader.
async fn propose_loop<R: Replicated + Send + 'static>(
    raft: Raft,
    mut proposals: mpsc::UnboundedReceiver<Entry>,
    jobs: mpsc::Sender<Job<Driven<R>>>,
    book: AddressBook,
) {
    while let Some(entry) = proposals.recv().await {
        let id = entry.id;
        // Queued into raft here, one after the other, so the log keeps the machine's order;
        // the outcome is awaited on its own task.
        let reply = match raft.client_write_ff(entry).await {
            Ok(reply) => reply,
            Err(e) => {
                tracing::debug!(id, error = %e, "raft stopped; proposal dropped");
                fail_proposal(&jobs, id, None).await;
                continue;
            }
        };
        let jobs = jobs.clone();
        let book = book.clone();
        tokio::spawn(async move {
            let leader = match reply.await {
                Ok(Ok(_)) => return,
                Ok(Err(ClientWriteError::ForwardToLeader(f))) => {
                    f.leader_id.and_then(|l| remoting_addr_of(&book, l))
                }
                Ok(Err(e)) => {
                    tracing::warn!(id, error = %e, "proposal refused");
                    None
                }
                Err(_) => None,
            };
            fail_proposal(&jobs, id, leader).await;
        });
    }
}

async fn fail_proposal<R: Replicated + Send + 'static>(
    jobs: &mpsc::Sender<Job<Driven<R>>>,
    id: u64,
    leader_addr: Option<String>,
) {
    let job: Job<Driven<R>> = Box::new(move |m: &mut Driven<R>, now: u64| {
        m.inner.proposal_failed(id, leader_addr, now);
    });
    let _ = jobs.send(job).await;
}

/// Follows raft's metrics and tells the machine who leads whenever that changes. This node
/// counts as leader only once it has applied an entry of its own term (openraft's first act as
/// leader is a blank entry): by then the machine's state holds every entry committed before,
/// so answers given from it are current.
async fn watch_leadership<R: Replicated + Send + 'static>(
    raft: Raft,
    jobs: mpsc::Sender<Job<Driven<R>>>,
    book: AddressBook,
) {
    let mut metrics = raft.metrics();
    let mut told: Option<LeaderView> = None;
    loop {
        let view = {
            let m = metrics.borrow();
            let caught_up = m
                .last_applied
                .is_some_and(|l| l.leader_id.term == m.current_term);
            LeaderView {
                term: m.current_term,
                leader_id: m.current_leader,
                leader_addr: m.current_leader.and_then(|l| remoting_addr_of(&book, l)),
                is_self: m.state == ServerState::Leader && caught_up,
            }
        };
        if told.as_ref() != Some(&view) {
            tracing::info!(
                term = view.term,
                leader = ?view.leader_id,
                leader_addr = view.leader_addr.as_deref().unwrap_or("unknown"),
                is_self = view.is_self,
                "controller leadership"
            );
            let tell = view.clone();
            let job: Job<Driven<R>> = Box::new(move |m: &mut Driven<R>, now: u64| {
                m.inner.leadership_changed(tell, now);
            });
            if jobs.send(job).await.is_err() {
                return;
            }
            told = Some(view);
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(LEADERSHIP_RECHECK) => {}
        }
    }
}
