//! Runs a [`Role`] machine on tokio (or madsim): accepts connections, decodes frames on
//! per-connection tasks, feeds the machine from one core task, and writes what it transmits.
//!
//! The driver holds no protocol meaning. Its loop is the one in `proto_core::role`: gather the
//! events that are ready (up to a cap), hand them to the machine, end the turn, perform every
//! transmit, re-arm the timer. Per connection, a reader task decodes frames (a malformed frame
//! closes that connection with a logged reason; the others carry on) and a writer task encodes
//! and writes responses in batches.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use proto_core::codec::frame::{encode_frame, FrameDecoder};
use proto_core::role::{ConnId, Role, Transmit};
use proto_core::{RemotingCommand, SerializeType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::clock;

/// Events gathered by the core task per turn at most, so timers and writes are not starved.
const TURN_EVENTS_MAX: usize = 1024;
/// Commands queued towards the core before readers wait (backpressure on busy clients).
const CORE_QUEUE_LEN: usize = 16 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

enum Event {
    Connected {
        conn: ConnId,
        remote: SocketAddr,
        dialled: Option<String>,
        writer: mpsc::UnboundedSender<RemotingCommand>,
    },
    Command {
        conn: ConnId,
        cmd: RemotingCommand,
    },
    Closed {
        conn: ConnId,
    },
    DialFailed {
        addr: String,
        cmd: RemotingCommand,
    },
}

/// Limits and encodings for a driver.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub max_frame_len: usize,
    /// Header encoding of what we write. RocketMQ servers answer in their own configured type
    /// (JSON by default), whatever the request used.
    pub serialize_type: SerializeType,
}

impl Default for DriverConfig {
    fn default() -> DriverConfig {
        DriverConfig {
            max_frame_len: 16 * 1024 * 1024,
            serialize_type: SerializeType::Json,
        }
    }
}

/// Serves `machine` on `listener` until the returned future is dropped or `shutdown` resolves.
/// Returns the machine so the caller can shut it down cleanly (flush, checkpoint).
pub async fn run<R: Role>(
    mut machine: R,
    listener: TcpListener,
    config: DriverConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> R {
    let (events_tx, mut events_rx) = mpsc::channel::<Event>(CORE_QUEUE_LEN);
    let accept_task = tokio::spawn(accept_loop(listener, events_tx.clone(), config.clone()));
    let mut writers: HashMap<ConnId, mpsc::UnboundedSender<RemotingCommand>> = HashMap::new();
    let mut dialled: HashMap<String, ConnId> = HashMap::new();
    let mut next_conn = u64::MAX / 2; // dialled connections count down from here, accepted ones up from 0
    tokio::pin!(shutdown);

    loop {
        let wait = machine
            .next_timeout()
            .map(|at| Duration::from_millis(at.saturating_sub(clock::now_ms())))
            .unwrap_or(Duration::from_secs(3600));
        let first = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            ev = events_rx.recv() => ev,
            _ = tokio::time::sleep(wait) => None,
        };
        let now = clock::now_ms();
        let mut batch = first.into_iter().collect::<Vec<_>>();
        while batch.len() < TURN_EVENTS_MAX {
            match events_rx.try_recv() {
                Ok(ev) => batch.push(ev),
                Err(_) => break,
            }
        }
        for ev in batch {
            match ev {
                Event::Connected {
                    conn,
                    remote,
                    dialled: addr,
                    writer,
                } => {
                    writers.insert(conn, writer);
                    machine.handle_connected(conn, remote, addr.as_deref(), now);
                }
                Event::Command { conn, cmd } => machine.handle_command(conn, cmd, now),
                Event::Closed { conn } => {
                    writers.remove(&conn);
                    dialled.retain(|_, c| *c != conn);
                    machine.handle_closed(conn, now);
                }
                Event::DialFailed { addr, cmd } => {
                    dialled.remove(&addr);
                    machine.handle_peer_failed(&addr, &cmd, now);
                }
            }
        }
        if machine.next_timeout().is_some_and(|at| at <= now) {
            machine.handle_timeout(now);
        }
        machine.handle_turn_end(now);
        while let Some(t) = machine.poll_transmit() {
            match t {
                Transmit::Send { conn, cmd } => {
                    if let Some(w) = writers.get(&conn) {
                        let _ = w.send(cmd);
                    }
                }
                Transmit::Close { conn, reason } => {
                    tracing::info!(conn = conn.0, %reason, "closing connection");
                    // Dropping the writer ends the writer task, which closes the socket; the
                    // reader then reports Closed.
                    writers.remove(&conn);
                }
                Transmit::Request { addr, cmd } => {
                    let known = dialled.get(&addr).and_then(|c| writers.get(c));
                    match known {
                        Some(w) => {
                            let _ = w.send(cmd);
                        }
                        None => {
                            next_conn -= 1;
                            let conn = ConnId(next_conn);
                            dialled.insert(addr.clone(), conn);
                            tokio::spawn(dial(addr, conn, cmd, events_tx.clone(), config.clone()));
                        }
                    }
                }
            }
        }
    }
    accept_task.abort();
    machine
}

async fn accept_loop(listener: TcpListener, events: mpsc::Sender<Event>, config: DriverConfig) {
    let mut next = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                next += 1;
                spawn_connection(
                    stream,
                    remote,
                    ConnId(next),
                    None,
                    events.clone(),
                    config.clone(),
                )
                .await;
            }
            Err(e) => {
                // Running out of descriptors is the usual cause; back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn dial(
    addr: String,
    conn: ConnId,
    first: RemotingCommand,
    events: mpsc::Sender<Event>,
    config: DriverConfig,
) {
    let connected =
        tokio::time::timeout(Duration::from_secs(3), TcpStream::connect(addr.as_str())).await;
    match connected {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            let remote = match stream.peer_addr() {
                Ok(a) => a,
                Err(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
            };
            if let Some(writer) =
                spawn_connection(stream, remote, conn, Some(addr), events, config).await
            {
                let _ = writer.send(first);
            }
        }
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "dial failed");
            let _ = events.send(Event::DialFailed { addr, cmd: first }).await;
        }
        Err(_) => {
            tracing::debug!(%addr, "dial timed out");
            let _ = events.send(Event::DialFailed { addr, cmd: first }).await;
        }
    }
}

/// Starts the reader and writer tasks of one connection and announces it to the core.
async fn spawn_connection(
    stream: TcpStream,
    remote: SocketAddr,
    conn: ConnId,
    dialled: Option<String>,
    events: mpsc::Sender<Event>,
    config: DriverConfig,
) -> Option<mpsc::UnboundedSender<RemotingCommand>> {
    let (reader, writer) = tokio::io::split(stream);
    let (tx, rx) = mpsc::unbounded_channel();
    let announce = Event::Connected {
        conn,
        remote,
        dialled,
        writer: tx.clone(),
    };
    if events.send(announce).await.is_err() {
        return None;
    }
    tokio::spawn(write_loop(writer, rx, config.serialize_type));
    tokio::spawn(read_loop(
        reader,
        conn,
        remote,
        events,
        config.max_frame_len,
    ));
    Some(tx)
}

async fn read_loop(
    mut reader: tokio::io::ReadHalf<TcpStream>,
    conn: ConnId,
    remote: SocketAddr,
    events: mpsc::Sender<Event>,
    max_frame_len: usize,
) {
    let mut decoder = FrameDecoder::with_frame_len_max(max_frame_len);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => {
                    if events.send(Event::Command { conn, cmd }).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(%remote, conn = conn.0, error = %e, "malformed frame, closing connection");
                    break 'read;
                }
            }
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match reader.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(%remote, error = %e, "read failed");
                break;
            }
        }
    }
    let _ = events.send(Event::Closed { conn }).await;
}

async fn write_loop(
    mut writer: tokio::io::WriteHalf<TcpStream>,
    mut rx: mpsc::UnboundedReceiver<RemotingCommand>,
    serialize_type: SerializeType,
) {
    let mut out = BytesMut::with_capacity(READ_CHUNK);
    while let Some(cmd) = rx.recv().await {
        out.clear();
        encode_logged(&cmd, serialize_type, &mut out);
        // Batch whatever else is ready into the same write.
        while out.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(more) => encode_logged(&more, serialize_type, &mut out),
                Err(_) => break,
            }
        }
        if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
            break;
        }
    }
    let _ = writer.shutdown().await;
}

/// Encodes `cmd` into `out`; a command we cannot encode (a bug or an absurd size) is logged and
/// dropped rather than killing the connection.
fn encode_logged(cmd: &RemotingCommand, ty: SerializeType, out: &mut BytesMut) {
    if let Err(e) = encode_frame(cmd, ty, out) {
        tracing::error!(code = cmd.code, opaque = cmd.opaque, error = %e, "cannot encode command, dropped");
    }
}
