//! [`Pipe`]: one connection owned by one sync sender, request then response, with no tasks,
//! channels or pending-request table between them.
//!
//! The shared [`io_adapters::client::RemotingClient`] multiplexes many callers over one socket
//! (a writer task, a reader task, a oneshot per request); that costs the bench a few task
//! wake-ups per message on the same two cores as the broker. A sync sender has exactly one
//! request in flight, so it can write the frame and read the answer itself. It is still a plain
//! RocketMQ client on the wire: JSON headers, opaque matched on the answer.
//!
//! Left out: server-initiated requests (a producer gets none worth acting on; they are skipped).

use std::time::Duration;

use bytes::BytesMut;
use proto_core::codec::frame::{encode_frame, FrameDecoder};
use proto_core::{RemotingCommand, SerializeType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Why a call failed; counted by kind like the shared client's errors.
#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection closed")]
    Closed,
    #[error("request timed out after {0:?}")]
    Timeout(Duration),
}

impl PipeError {
    /// The kind a failed request is counted under (the shared client's kinds).
    pub fn kind(&self) -> String {
        match self {
            PipeError::Connect { .. } => "connect",
            PipeError::Closed => "connection closed",
            PipeError::Timeout(_) => "timeout",
        }
        .to_string()
    }
}

/// One connection, one request at a time.
pub struct Pipe {
    stream: Option<TcpStream>,
    out: BytesMut,
    buf: BytesMut,
    decoder: FrameDecoder,
    next_opaque: i32,
}

impl Pipe {
    pub async fn connect(addr: &str) -> Result<Pipe, PipeError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| PipeError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        Ok(Pipe {
            stream: Some(stream),
            out: BytesMut::with_capacity(4096),
            buf: BytesMut::with_capacity(16 * 1024),
            decoder: FrameDecoder::new(),
            next_opaque: 1,
        })
    }

    /// Sends `cmd` (its opaque is assigned here) and waits for its response. After a timeout
    /// or an I/O error the connection is dropped and every later call fails with `Closed`.
    pub async fn call(
        &mut self,
        mut cmd: RemotingCommand,
        timeout: Duration,
    ) -> Result<RemotingCommand, PipeError> {
        let opaque = self.next_opaque;
        self.next_opaque = self.next_opaque.wrapping_add(1);
        cmd.opaque = opaque;
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        let result = match encode_frame(&cmd, SerializeType::Json, &mut out) {
            Ok(()) => self.call_frame(&out, opaque, timeout).await,
            Err(_) => Err(PipeError::Closed),
        };
        self.out = out;
        result
    }

    /// Sends an already encoded request `frame` whose opaque is `opaque` and waits for its
    /// response; failures as for [`Pipe::call`].
    pub async fn call_frame(
        &mut self,
        frame: &[u8],
        opaque: i32,
        timeout: Duration,
    ) -> Result<RemotingCommand, PipeError> {
        let Some(stream) = self.stream.as_mut() else {
            return Err(PipeError::Closed);
        };
        let exchange = round_trip(stream, &mut self.buf, &mut self.decoder, frame, opaque);
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Some(resp)) => Ok(resp),
            Ok(None) => {
                self.stream = None;
                Err(PipeError::Closed)
            }
            Err(_) => {
                // A late answer would be read as the next call's: start no new call here.
                self.stream = None;
                Err(PipeError::Timeout(timeout))
            }
        }
    }
}

async fn round_trip(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    decoder: &mut FrameDecoder,
    frame: &[u8],
    opaque: i32,
) -> Option<RemotingCommand> {
    stream.write_all(frame).await.ok()?;
    loop {
        while let Some(cmd) = decoder.decode(buf).ok()? {
            if cmd.is_response() && cmd.opaque == opaque {
                return Some(cmd);
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        if stream.read_buf(buf).await.ok()? == 0 {
            return None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers every request with its opaque, after first sending a request of
    /// its own (which the pipe must skip).
    async fn echo_server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (mut sock, _) = listener.accept().await.expect("accept");
            let mut decoder = FrameDecoder::new();
            let mut buf = BytesMut::new();
            loop {
                while let Some(req) = decoder.decode(&mut buf).expect("frame") {
                    let mut out = BytesMut::new();
                    let noise = RemotingCommand::request(40, 999);
                    encode_frame(&noise, SerializeType::Json, &mut out).expect("encode");
                    let resp = RemotingCommand::response_to(&req, 0, None).with_body(req.body);
                    encode_frame(&resp, SerializeType::Json, &mut out).expect("encode");
                    sock.write_all(&out).await.expect("write");
                }
                if sock.read_buf(&mut buf).await.expect("read") == 0 {
                    return;
                }
            }
        });
        addr
    }

    #[tokio::test]
    async fn each_call_gets_its_own_answer() {
        let addr = echo_server().await;
        let mut pipe = Pipe::connect(&addr).await.expect("connect");
        for i in 0..3u8 {
            let req = RemotingCommand::request(310, 0).with_body(vec![i; 10]);
            let resp = pipe
                .call(req, Duration::from_secs(3))
                .await
                .expect("answer");
            assert!(resp.is_response());
            assert_eq!(resp.opaque, i32::from(i) + 1);
            assert_eq!(&resp.body[..], &[i; 10][..]);
        }
    }

    #[tokio::test]
    async fn a_closed_server_fails_the_call() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            let (sock, _) = listener.accept().await.expect("accept");
            drop(sock);
        });
        let mut pipe = Pipe::connect(&addr).await.expect("connect");
        let req = RemotingCommand::request(310, 0);
        assert!(matches!(
            pipe.call(req.clone(), Duration::from_secs(3)).await,
            Err(PipeError::Closed)
        ));
        assert!(matches!(
            pipe.call(req, Duration::from_secs(3)).await,
            Err(PipeError::Closed)
        ));
    }
}
