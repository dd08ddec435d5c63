//! The write side of one driver connection.
//!
//! During a turn the core encodes every command for a connection straight into that
//! connection's [`Outbox`] buffer (one growing `BytesMut`, reused from turn to turn, so the send
//! path allocates nothing per message). At the end of the turn [`Outbox::flush`] writes the
//! whole batch from the core itself with one non-blocking vectored write; only bytes the socket
//! does not take at once go to the connection's writer task ([`write_loop`]), which waits for
//! the socket to drain. The common case therefore costs one `send` per connection per turn and
//! no task wake-up.
//!
//! Bodies of at least [`ZERO_COPY_MIN`] bytes are not copied: they go out as their own slice of
//! the vectored write, so a body that is a view of a mapped segment is sent from the mapping.
//! A body in parts (a pull answer's records, each a view of a mapped segment) goes out the
//! same way, part by part.
//!
//! Bounds: the backlog holds only answers to requests the peer still has in flight (the
//! driver's `in_flight_max` permits, released once an answer is written) plus the few requests
//! the broker itself sends, so it stays bounded by the same limit.
//!
//! Under madsim the simulated socket has no non-blocking write, so every batch goes through
//! the writer task; the bytes and their order are the same.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::{Buf, Bytes, BytesMut};
use proto_core::codec::encode_frame_head;
use proto_core::{RemotingCommand, SerializeType};
use tokio::sync::{Notify, Semaphore};

/// Bodies (and body parts) this long or longer are written from where they lie instead of
/// being copied.
pub(crate) const ZERO_COPY_MIN: usize = 2048;
/// Room reserved for a frame's lengths and header before encoding it.
const FRAME_HEAD_GUESS: usize = 256;
/// Slices per vectored write (well under every kernel's `IOV_MAX`).
const SLICES_MAX: usize = 64;
/// A staging buffer that grew past this while the peer was slow is released rather than kept.
const STAGED_KEEP_MAX: usize = 1 << 20;

/// The core's side of a connection's write path.
pub(crate) struct Outbox {
    /// Frames of this turn not yet handed out, after `chunks`.
    staged: BytesMut,
    /// Earlier parts of this turn's output, in order: frozen frame bytes and large bodies.
    chunks: Vec<Bytes>,
    /// Responses among the staged frames: their in-flight permits go back once written.
    answers: usize,
    shared: Arc<Shared>,
}

/// What the core and the writer task share.
pub(crate) struct Shared {
    sink: Sink,
    backlog: Mutex<Backlog>,
    wake: Notify,
    in_flight: Arc<Semaphore>,
}

/// Bytes the socket has not taken yet, owned by the writer task.
#[derive(Default)]
struct Backlog {
    chunks: VecDeque<Bytes>,
    answers: usize,
    /// The writer task holds chunks it took from here and is writing them: the core must not
    /// write past it.
    busy: bool,
    /// The core is done with the connection: the writer ends once the backlog is written.
    closed: bool,
}

impl Outbox {
    pub(crate) fn new(sink: Sink, in_flight: Arc<Semaphore>) -> Outbox {
        Outbox {
            staged: BytesMut::with_capacity(16 * 1024),
            chunks: Vec::new(),
            answers: 0,
            shared: Arc::new(Shared {
                sink,
                backlog: Mutex::new(Backlog::default()),
                wake: Notify::new(),
                in_flight,
            }),
        }
    }

    /// The part the writer task runs on.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Whether nothing is staged since the last flush.
    pub(crate) fn is_empty(&self) -> bool {
        self.staged.is_empty() && self.chunks.is_empty()
    }

    /// Encodes `cmd` at the end of this turn's output, its body followed by `parts` as one
    /// frame body. A command we cannot encode (a bug or an absurd size) is logged and dropped
    /// rather than killing the connection.
    pub(crate) fn stage(&mut self, cmd: &RemotingCommand, parts: &[Bytes], ty: SerializeType) {
        let pieces = std::iter::once(&cmd.body).chain(parts);
        let body_len: usize = pieces.clone().map(Bytes::len).sum();
        self.staged
            .reserve(FRAME_HEAD_GUESS + body_len.min(ZERO_COPY_MIN));
        if let Err(e) = encode_frame_head(cmd, body_len, ty, &mut self.staged) {
            tracing::error!(code = cmd.code, opaque = cmd.opaque, error = %e, "cannot encode command, dropped");
            return;
        }
        for piece in pieces {
            if piece.len() >= ZERO_COPY_MIN {
                if !self.staged.is_empty() {
                    self.chunks.push(self.staged.split().freeze());
                }
                self.chunks.push(piece.clone());
            } else {
                self.staged.extend_from_slice(piece);
            }
        }
        self.answers += usize::from(cmd.is_response());
    }

    /// Writes what this turn staged: at once if the socket takes it, else through the writer
    /// task, always after anything still queued there.
    pub(crate) fn flush(&mut self) {
        if self.is_empty() {
            return;
        }
        let shared = self.shared.clone();
        let mut backlog = shared.lock();
        if backlog.closed {
            // The writer gave up on a failed socket; the connection is on its way out.
            self.staged.clear();
            self.chunks.clear();
            self.answers = 0;
            return;
        }
        if backlog.chunks.is_empty() && !backlog.busy {
            let written = self.write_now();
            if written == usize::MAX {
                // Everything went out: the staging buffer is reused as is.
                self.staged.clear();
                self.chunks.clear();
                self.shared.in_flight.add_permits(self.answers);
                self.answers = 0;
                return;
            }
            self.skip(written);
        }
        backlog.chunks.extend(self.chunks.drain(..));
        if !self.staged.is_empty() {
            backlog.chunks.push_back(self.staged.split().freeze());
        }
        if self.staged.capacity() > STAGED_KEEP_MAX {
            self.staged = BytesMut::with_capacity(16 * 1024);
        }
        backlog.answers += self.answers;
        self.answers = 0;
        drop(backlog);
        shared.wake.notify_one();
    }

    /// Tries one non-blocking vectored write (repeated while the socket takes whole batches of
    /// slices); returns the bytes written, or `usize::MAX` if everything was.
    fn write_now(&self) -> usize {
        let mut written = 0;
        loop {
            let mut slices = [IoSlice::new(&[]); SLICES_MAX];
            let mut filled = 0;
            let mut offered = 0;
            let mut skip = written;
            let parts = self
                .chunks
                .iter()
                .map(|c| &c[..])
                .chain(std::iter::once(&self.staged[..]));
            let mut rest_after = false;
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                if filled == SLICES_MAX {
                    rest_after = true;
                    break;
                }
                let part = &part[skip..];
                skip = 0;
                if let Some(slot) = slices.get_mut(filled) {
                    *slot = IoSlice::new(part);
                }
                filled += 1;
                offered += part.len();
            }
            if offered == 0 {
                return usize::MAX;
            }
            match self
                .shared
                .sink
                .try_write(slices.get(..filled).unwrap_or_default())
            {
                Ok(n) => {
                    written += n;
                    if n == offered && !rest_after {
                        return usize::MAX;
                    }
                    if n < offered {
                        return written;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // WouldBlock, or an error the writer task will meet and report.
                Err(_) => return written,
            }
        }
    }

    /// Drops the first `n` bytes of the staged output.
    fn skip(&mut self, mut n: usize) {
        let mut kept = Vec::with_capacity(self.chunks.len());
        for mut chunk in self.chunks.drain(..) {
            if n >= chunk.len() {
                n -= chunk.len();
                continue;
            }
            chunk.advance(n);
            n = 0;
            kept.push(chunk);
        }
        self.chunks = kept;
        self.staged.advance(n.min(self.staged.len()));
    }

    /// The core is done with the connection: the writer task writes what is queued and ends.
    pub(crate) fn close(&mut self) {
        self.flush();
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Backlog> {
        // Nothing panics while holding this lock; if something did, the queue is still sound.
        self.backlog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The writer task of one connection: writes what the core could not, in order, and shuts the
/// socket's write side down once the core has closed the outbox and the backlog is written.
pub(crate) async fn write_loop(shared: Arc<Shared>) {
    loop {
        let taken = {
            let mut backlog = shared.lock();
            if backlog.chunks.is_empty() {
                backlog.busy = false;
                if backlog.closed {
                    None
                } else {
                    Some(None)
                }
            } else {
                backlog.busy = true;
                Some(Some((
                    std::mem::take(&mut backlog.chunks),
                    std::mem::take(&mut backlog.answers),
                )))
            }
        };
        let (mut chunks, answers) = match taken {
            None => break,
            Some(None) => {
                shared.wake.notified().await;
                continue;
            }
            Some(Some(work)) => work,
        };
        if let Err(e) = shared.sink.write_all(&mut chunks).await {
            tracing::debug!(error = %e, "write failed");
            {
                let mut backlog = shared.lock();
                backlog.closed = true;
                backlog.chunks.clear();
            }
            // A reader waiting for answers that will never be written stops reading instead.
            shared.in_flight.close();
            break;
        }
        shared.in_flight.add_permits(answers);
    }
    shared.sink.shutdown().await;
}

/// A connection's write half as both the core and the writer task use it.
#[cfg(not(madsim))]
pub(crate) struct Sink(tokio::net::tcp::OwnedWriteHalf);

#[cfg(not(madsim))]
impl Sink {
    pub(crate) fn new(half: tokio::net::tcp::OwnedWriteHalf) -> Sink {
        Sink(half)
    }

    fn try_write(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.0.try_write_vectored(slices)
    }

    async fn write_all(&self, chunks: &mut VecDeque<Bytes>) -> io::Result<()> {
        while !chunks.is_empty() {
            self.0.writable().await?;
            let mut slices = [IoSlice::new(&[]); SLICES_MAX];
            let mut filled = 0;
            for (slot, chunk) in slices.iter_mut().zip(chunks.iter()) {
                *slot = IoSlice::new(chunk);
                filled += 1;
            }
            match self
                .0
                .try_write_vectored(slices.get(..filled).unwrap_or_default())
            {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    while let Some(front) = chunks.front_mut() {
                        if n < front.len() {
                            front.advance(n);
                            break;
                        }
                        n -= front.len();
                        chunks.pop_front();
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    async fn shutdown(&self) {
        // Dropping the last handle of an owned write half shuts the write side down.
    }
}

/// A connection's write half as both the core and the writer task use it.
#[cfg(madsim)]
pub(crate) struct Sink(tokio::sync::Mutex<tokio::io::WriteHalf<tokio::net::TcpStream>>);

#[cfg(madsim)]
impl Sink {
    pub(crate) fn new(half: tokio::io::WriteHalf<tokio::net::TcpStream>) -> Sink {
        Sink(tokio::sync::Mutex::new(half))
    }

    fn try_write(&self, _slices: &[IoSlice<'_>]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    async fn write_all(&self, chunks: &mut VecDeque<Bytes>) -> io::Result<()> {
        use tokio::io::AsyncWriteExt;
        let mut half = self.0.lock().await;
        while let Some(chunk) = chunks.pop_front() {
            half.write_all(&chunk).await?;
        }
        half.flush().await
    }

    async fn shutdown(&self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.0.lock().await.shutdown().await;
    }
}
