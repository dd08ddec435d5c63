//! A remoting client: one TCP connection, many requests in flight, responses matched by opaque.
//! Used by `node bench`, `node admin` and the tests; it speaks only what any RocketMQ client
//! speaks, so it works against other RocketMQ-protocol servers too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use proto_core::codec::frame::{encode_frame, FrameDecoder};
use proto_core::{RemotingCommand, SerializeType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection to {0} closed")]
    Closed(String),
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
}

type Pending = Arc<Mutex<HashMap<i32, oneshot::Sender<RemotingCommand>>>>;

/// A connection to one RocketMQ-protocol server. Cheap to share behind an `Arc`.
pub struct RemotingClient {
    addr: String,
    writer: mpsc::UnboundedSender<RemotingCommand>,
    pending: Pending,
    next_opaque: AtomicI32,
    /// Requests the server sent us (e.g. NOTIFY_CONSUMER_IDS_CHANGED).
    server_requests: Mutex<Option<mpsc::UnboundedReceiver<RemotingCommand>>>,
    /// The reader task holds half of the socket; it is aborted on drop so the connection
    /// really closes (the writer half-closes once its queue is drained).
    reader: tokio::task::JoinHandle<()>,
}

impl RemotingClient {
    pub async fn connect(addr: &str) -> Result<RemotingClient, ClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = tokio::io::split(stream);
        let (tx, mut rx) = mpsc::unbounded_channel::<RemotingCommand>();
        let (server_tx, server_rx) = mpsc::unbounded_channel();
        let pending: Pending = Arc::default();

        tokio::spawn(async move {
            let mut out = BytesMut::new();
            while let Some(cmd) = rx.recv().await {
                out.clear();
                for cmd in std::iter::once(cmd).chain(std::iter::from_fn(|| rx.try_recv().ok())) {
                    if let Err(e) = encode_frame(&cmd, SerializeType::Json, &mut out) {
                        tracing::error!(error = %e, "cannot encode request, dropped");
                    }
                }
                if writer.write_all(&out).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
            // Every sender is gone (the client dropped): tell the server we are done, so it
            // closes its side instead of keeping a dead session (and its locks, checks, ...).
            let _ = writer.shutdown().await;
        });

        let read_pending = pending.clone();
        let reader = tokio::spawn(async move {
            let mut decoder = FrameDecoder::new();
            let mut buf = BytesMut::with_capacity(64 * 1024);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(cmd)) if cmd.is_response() => {
                        let waiter = lock(&read_pending).remove(&cmd.opaque);
                        if let Some(w) = waiter {
                            let _ = w.send(cmd);
                        }
                        continue;
                    }
                    Ok(Some(cmd)) => {
                        let _ = server_tx.send(cmd);
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "bad frame from server");
                        break;
                    }
                }
                buf.reserve(64 * 1024);
                match reader.read_buf(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            // Wake every waiter: their senders drop with the map entries.
            lock(&read_pending).clear();
        });

        Ok(RemotingClient {
            addr: addr.to_string(),
            writer: tx,
            pending,
            next_opaque: AtomicI32::new(1),
            server_requests: Mutex::new(Some(server_rx)),
            reader,
        })
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `cmd` (its opaque is assigned here) and waits for the response.
    pub async fn invoke(
        &self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, ClientError> {
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        cmd.opaque = opaque;
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(opaque, tx);
        if self.writer.send(cmd).is_err() {
            lock(&self.pending).remove(&opaque);
            return Err(ClientError::Closed(self.addr.clone()));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(ClientError::Closed(self.addr.clone())),
            Err(_) => {
                lock(&self.pending).remove(&opaque);
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    /// Sends `cmd` with the oneway flag; nothing comes back.
    pub fn invoke_oneway(&self, mut cmd: RemotingCommand) -> Result<(), ClientError> {
        cmd.opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        cmd.mark_oneway();
        self.writer
            .send(cmd)
            .map_err(|_| ClientError::Closed(self.addr.clone()))
    }

    /// The stream of requests the server sends us; can be taken once.
    pub fn take_server_requests(&self) -> Option<mpsc::UnboundedReceiver<RemotingCommand>> {
        self.server_requests.lock().ok().and_then(|mut g| g.take())
    }
}

impl Drop for RemotingClient {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(all(test, not(madsim)))]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A dropped client must close its connection: a server that kept the session would keep
    /// sending it transaction checks and holding its queue locks.
    #[tokio::test]
    async fn dropping_the_client_closes_the_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let client = RemotingClient::connect(&addr).await.unwrap();
        let (mut server_side, _) = listener.accept().await.unwrap();
        drop(client);
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(5), server_side.read(&mut buf))
            .await
            .expect("the server sees the close within 5 s");
        assert_eq!(read.unwrap(), 0, "EOF, nothing else");
    }
}
