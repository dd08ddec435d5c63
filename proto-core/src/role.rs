//! The driving contract every role machine (name server, broker) implements, so one dumb driver
//! in `io-adapters` can run any of them, on tokio or in the simulator.
//!
//! Calling protocol, once per driver turn:
//! 1. feed what happened: [`Role::handle_connected`], [`Role::handle_command`],
//!    [`Role::handle_closed`], [`Role::handle_peer_failed`], and [`Role::handle_timeout`] once
//!    the instant returned by [`Role::next_timeout`] has passed (early or repeated calls are
//!    harmless);
//! 2. call [`Role::handle_turn_end`]: work batched over the whole turn happens here (one store
//!    sync covers every append of the turn);
//! 3. drain [`Role::poll_work`] and start each [`Work`] off the core task, then drain
//!    [`Role::poll_transmit`] until `None` and perform each transmit;
//! 4. re-arm the timer from [`Role::next_timeout`].
//!
//! Blocking work (a store's syncs) runs off the core task only with a driver that said so
//! with [`Role::offload_work`] before the first turn; it reports each outcome as an input of a
//! later turn, through [`Role::handle_work_done`]. A machine nobody told runs such work inline
//! (unit tests drive machines that way).
//!
//! Time is always an argument: `now_ms` is wall-clock milliseconds since the Unix epoch, as
//! RocketMQ stamps messages and heartbeats with it.

use core::fmt;
use core::net::SocketAddr;

use bytes::Bytes;
use store_core::storage::StorageError;

use crate::RemotingCommand;

/// A connection, numbered by the driver. Never reused within a process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Something the driver must do for a machine.
#[derive(Debug, Clone, PartialEq)]
pub enum Transmit {
    /// Write `cmd` on connection `conn` (a response, or a server-initiated request such as
    /// NOTIFY_CONSUMER_IDS_CHANGED). Dropped silently if the connection is gone.
    Send { conn: ConnId, cmd: RemotingCommand },
    /// As `Send`, with `parts` written after `cmd`'s own body, back to back, as one frame body.
    /// A pull answer's stored records are views of the mapped segments; sent this way they go
    /// to the socket from the mapping instead of being copied into one body first.
    SendParts {
        conn: ConnId,
        cmd: RemotingCommand,
        parts: Vec<Bytes>,
    },
    /// Close `conn`; `reason` goes to the log.
    Close { conn: ConnId, reason: String },
    /// Send a request to the peer at `addr` (`host:port`), dialling it if needed. Its response
    /// comes back through `handle_command` on the connection announced by `handle_connected`
    /// with `dialled: Some(addr)`; a failure to dial or send comes back through
    /// `handle_peer_failed`.
    Request { addr: String, cmd: RemotingCommand },
}

/// Blocking work a machine hands its driver, to run where blocking is fine (a thread pool, or
/// a task of its own in the simulator); its outcome goes back through
/// [`Role::handle_work_done`].
pub struct Work(Box<dyn FnOnce() -> WorkDone + Send>);

impl Work {
    pub fn new(f: impl FnOnce() -> WorkDone + Send + 'static) -> Work {
        Work(Box::new(f))
    }

    /// Does the work (blocking).
    pub fn run(self) -> WorkDone {
        (self.0)()
    }
}

impl fmt::Debug for Work {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Work")
    }
}

/// What a [`Work`] reports.
#[derive(Debug)]
pub enum WorkDone {
    /// A store flush request for `up_to` ran: its syncs and metadata writes succeeded or one
    /// failed.
    Flush {
        up_to: u64,
        result: Result<(), StorageError>,
    },
}

/// See the module docs for the order of calls.
pub trait Role {
    /// A connection opened: accepted (`dialled` is `None`) or dialled by us to `dialled`.
    fn handle_connected(
        &mut self,
        conn: ConnId,
        remote: SocketAddr,
        dialled: Option<&str>,
        now_ms: u64,
    );
    /// A whole command arrived on `conn`.
    fn handle_command(&mut self, conn: ConnId, cmd: RemotingCommand, now_ms: u64);
    /// `conn` closed, for whatever reason.
    fn handle_closed(&mut self, conn: ConnId, now_ms: u64);
    /// A request for `addr` could not be delivered.
    fn handle_peer_failed(&mut self, addr: &str, cmd: &RemotingCommand, now_ms: u64);
    /// Time passed.
    fn handle_timeout(&mut self, now_ms: u64);
    /// The end of a turn: do the work batched over it.
    fn handle_turn_end(&mut self, _now_ms: u64) {}
    /// The next thing to do, if any.
    #[must_use]
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// When `handle_timeout` should next be called.
    fn next_timeout(&self) -> Option<u64>;
    /// The driver runs [`Work`] off its core task from now on (called once, before the first
    /// turn). Until then a machine does such work inline.
    fn offload_work(&mut self) {}
    /// Blocking work to start off the core task, drained after `handle_turn_end`.
    fn poll_work(&mut self) -> Option<Work> {
        None
    }
    /// A [`Work`] finished.
    fn handle_work_done(&mut self, _done: WorkDone, _now_ms: u64) {}
}
