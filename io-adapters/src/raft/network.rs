//! Raft messages between controllers over RocketMQ's remoting framing: openraft's
//! `RaftNetwork` (the client side) and [`serve`], the raft listener answering them.
//!
//! Each RPC is a request with a private code and the serde_json encoding of openraft's request as
//! its body; the response (code SUCCESS) carries the JSON of `Result<reply, RaftError>`, so a
//! refusal by the peer's raft travels back as the same typed error. The codes lie far above
//! RocketMQ's (which end at 200151), so no RocketMQ peer mistakes them for its own; a RocketMQ
//! client that reaches the raft port by mistake gets REQUEST_CODE_NOT_SUPPORTED.
//!
//! One connection per peer, dialled when first needed and dropped after any transport failure
//! (the next RPC dials again; openraft backs off between attempts).
//!
//! Left out: snapshot transfer works through openraft's chunked `install_snapshot`, but the state
//! machine refuses snapshots, so it is never used.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use proto_core::codec::frame::{encode_frame, FrameDecoder};
use proto_core::{RemotingCommand, ResponseCode, SerializeType};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::types::{Raft, TypeConfig};
use crate::client::RemotingClient;

/// openraft AppendEntries (also heartbeats).
pub const RAFT_APPEND_ENTRIES: i32 = 310_001;
/// openraft RequestVote.
pub const RAFT_VOTE: i32 = 310_002;
/// openraft InstallSnapshot (one chunk).
pub const RAFT_INSTALL_SNAPSHOT: i32 = 310_003;

/// Frames a raft peer may send us at most (AppendEntries batches are small).
const FRAME_LEN_MAX: usize = 64 * 1024 * 1024;

/// ExtFields key of the sender's raft node id on every raft request.
const SENDER_ID: &str = "raftNodeId";
/// ExtFields key of the sender's remoting address (where brokers reach it).
const SENDER_REMOTING_ADDR: &str = "remotingAddr";

/// The remoting address of each controller, learned from the raft requests it sends: raft
/// knows peers by their raft address only, while brokers must be told the leader's remoting
/// address (a follower learns it from the leader's first AppendEntries).
pub type AddressBook = Arc<Mutex<HashMap<u64, String>>>;

/// Looks up `id` in `book`.
pub fn remoting_addr_of(book: &AddressBook, id: u64) -> Option<String> {
    book.lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&id)
        .cloned()
}

/// Dials raft peers at their `BasicNode` address.
#[derive(Debug, Clone)]
pub struct Network {
    /// Our raft node id and remoting address, sent with every request.
    pub self_id: u64,
    pub remoting_addr: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerLink;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> PeerLink {
        PeerLink {
            target,
            addr: node.addr.clone(),
            client: None,
            self_id: self.self_id.to_string(),
            remoting_addr: self.remoting_addr.clone(),
        }
    }
}

/// The connection to one peer.
pub struct PeerLink {
    target: u64,
    addr: String,
    client: Option<Arc<RemotingClient>>,
    self_id: String,
    remoting_addr: String,
}

/// A failure to get an answer at all (as opposed to the peer's raft refusing).
#[derive(Debug, thiserror::Error)]
enum TransportError {
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    #[error("cannot encode the request: {0}")]
    Encode(serde_json::Error),
    #[error("peer answered code {code}: {remark}")]
    Refused { code: i32, remark: String },
    #[error("undecodable reply: {0}")]
    Decode(serde_json::Error),
}

impl PeerLink {
    /// Sends one RPC; the outer error is the transport's, the inner the peer raft's answer.
    async fn call<Req: Serialize, Resp: DeserializeOwned, E>(
        &mut self,
        code: i32,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<u64, BasicNode, RaftError<u64, E>>>
    where
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let c = RemotingClient::connect(&self.addr)
                    .await
                    .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
                let c = Arc::new(c);
                self.client = Some(c.clone());
                c
            }
        };
        let body = serde_json::to_vec(req)
            .map_err(|e| RPCError::Network(NetworkError::new(&TransportError::Encode(e))))?;
        let mut cmd = RemotingCommand::request(code, 0).with_body(body);
        let fields = cmd.ext_fields_mut();
        fields.insert(SENDER_ID, &self.self_id);
        fields.insert(SENDER_REMOTING_ADDR, &self.remoting_addr);
        let reply = match client.invoke(cmd, option.hard_ttl()).await {
            Ok(reply) => reply,
            Err(e) => {
                // A timed-out or broken connection may hold stale replies: start afresh.
                self.client = None;
                return Err(RPCError::Network(NetworkError::new(&TransportError::from(
                    e,
                ))));
            }
        };
        if reply.code != i32::from(ResponseCode::Success) {
            let e = TransportError::Refused {
                code: reply.code,
                remark: reply.remark.unwrap_or_default(),
            };
            return Err(RPCError::Network(NetworkError::new(&e)));
        }
        let answer: Result<Resp, RaftError<u64, E>> = serde_json::from_slice(&reply.body)
            .map_err(|e| RPCError::Network(NetworkError::new(&TransportError::Decode(e))))?;
        answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(RAFT_APPEND_ENTRIES, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        self.call(RAFT_INSTALL_SNAPSHOT, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        self.call(RAFT_VOTE, &rpc, &option).await
    }
}

/// Answers raft RPCs from peers on `listener` until the task is dropped or aborted, noting
/// each sender's remoting address in `book`.
pub async fn serve(listener: TcpListener, raft: Raft, book: AddressBook) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve_connection(stream, remote, raft.clone(), book.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "raft listener: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// One peer connection: every request is handled on its own task (a vote must not wait behind
/// a slow append), replies are written in the order they are ready.
async fn serve_connection(
    stream: TcpStream,
    remote: std::net::SocketAddr,
    raft: Raft,
    book: AddressBook,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<RemotingCommand>();
    let writer_task = tokio::spawn(async move {
        let mut out = BytesMut::new();
        while let Some(cmd) = rx.recv().await {
            out.clear();
            for cmd in std::iter::once(cmd).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                if let Err(e) = encode_frame(&cmd, SerializeType::Json, &mut out) {
                    tracing::error!(error = %e, "raft reply not encodable, dropped");
                }
            }
            if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
                break;
            }
        }
    });
    let mut decoder = FrameDecoder::with_frame_len_max(FRAME_LEN_MAX);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) if cmd.is_response() => {}
                Ok(Some(cmd)) => {
                    note_sender(&book, &cmd);
                    let raft = raft.clone();
                    let tx = tx.clone();
                    tokio::spawn(async move {
                        let _ = tx.send(handle(&raft, &cmd).await);
                    });
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%remote, error = %e, "raft listener: malformed frame, closing");
                    break 'read;
                }
            }
        }
        buf.reserve(64 * 1024);
        match reader.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    drop(tx);
    let _ = writer_task.await;
}

fn note_sender(book: &AddressBook, cmd: &RemotingCommand) {
    let id = cmd.ext(SENDER_ID).and_then(|id| id.parse::<u64>().ok());
    if let (Some(id), Some(addr)) = (id, cmd.ext(SENDER_REMOTING_ADDR)) {
        let mut book = book.lock().unwrap_or_else(|p| p.into_inner());
        if book.get(&id).map(String::as_str) != Some(addr) {
            book.insert(id, addr.to_string());
        }
    }
}

async fn handle(raft: &Raft, cmd: &RemotingCommand) -> RemotingCommand {
    let body = match cmd.code {
        RAFT_APPEND_ENTRIES => match serde_json::from_slice(&cmd.body) {
            Ok(req) => serde_json::to_vec(&raft.append_entries(req).await),
            Err(e) => return bad_request(cmd, &e),
        },
        RAFT_VOTE => match serde_json::from_slice(&cmd.body) {
            Ok(req) => serde_json::to_vec(&raft.vote(req).await),
            Err(e) => return bad_request(cmd, &e),
        },
        RAFT_INSTALL_SNAPSHOT => match serde_json::from_slice(&cmd.body) {
            Ok(req) => serde_json::to_vec(&raft.install_snapshot(req).await),
            Err(e) => return bad_request(cmd, &e),
        },
        code => {
            return RemotingCommand::response_to(
                cmd,
                ResponseCode::RequestCodeNotSupported.into(),
                Some(format!(
                    "request code {code} not supported on the raft port"
                )),
            )
        }
    };
    match body {
        Ok(body) => {
            RemotingCommand::response_to(cmd, ResponseCode::Success.into(), None).with_body(body)
        }
        Err(e) => bad_request(cmd, &e),
    }
}

fn bad_request(cmd: &RemotingCommand, e: &serde_json::Error) -> RemotingCommand {
    RemotingCommand::response_to(
        cmd,
        ResponseCode::SystemError.into(),
        Some(format!("bad raft message: {e}")),
    )
}
