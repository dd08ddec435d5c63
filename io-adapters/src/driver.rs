//! Runs a [`Role`] machine on tokio (or madsim): accepts connections, decodes frames on
//! per-connection tasks, feeds the machine from one core task, and writes what it transmits.
//!
//! The driver holds no protocol meaning. Its loop is the one in `proto_core::role`: gather the
//! events that are ready (up to a cap), hand them to the machine, end the turn, perform every
//! transmit, re-arm the timer. Per connection, a reader task decodes frames (a malformed frame
//! closes that connection with a logged reason; the others carry on) and hands the core every
//! whole frame one read brought as one event: one channel hop per read rather than per
//! request. Transmits are encoded by the core straight into the connection's [`Outbox`] and
//! written once per turn, by the core itself when the socket takes them, else by the
//! connection's writer task (see `outbox.rs`).
//!
//! Blocking work the machine hands out ([`Role::poll_work`]: a store flush's syncs) runs off
//! the core, on tokio's blocking pool (a task of its own under madsim, which has no threads),
//! and its outcome comes back on a channel the core drains first each turn, so the core keeps
//! answering sends and pulls while a sync runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use proto_core::codec::frame::FrameDecoder;
use proto_core::role::{ConnId, Role, Transmit, Work, WorkDone};
use proto_core::{RemotingCommand, SerializeType};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore, TryAcquireError};

use crate::clock;
use crate::outbox::{self, Outbox, Sink};

/// Events (each command counted) handled by the core task per turn at most, so timers and
/// writes are not starved.
const TURN_EVENTS_MAX: usize = 1024;
/// Events queued towards the core before readers wait (backpressure on busy clients). What they
/// hold is bounded by the connections' in-flight permits.
const CORE_QUEUE_LEN: usize = 16 * 1024;
/// Commands a reader hands over in one event at most.
const READ_BATCH_MAX: usize = 64;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// How long to wait for a peer we dial.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a stopping driver lets writers deliver their last frames.
const STOP_GRACE: Duration = Duration::from_secs(1);

enum Event {
    Connected {
        conn: ConnId,
        remote: SocketAddr,
        dialled: Option<String>,
        link: Link,
    },
    /// The commands one read completed, in order (`more` allocates only when there are two or
    /// more).
    Commands {
        conn: ConnId,
        first: RemotingCommand,
        more: Vec<RemotingCommand>,
    },
    Closed {
        conn: ConnId,
    },
    DialFailed {
        addr: String,
    },
}

/// Limits and encodings for a driver.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    pub max_frame_len: usize,
    /// Header encoding of what we write. RocketMQ servers answer in their own configured type
    /// (JSON by default), whatever the request used.
    pub serialize_type: SerializeType,
    /// A connection that sends nothing for this long is closed (RocketMQ's
    /// `serverChannelMaxIdleTimeSeconds`, 120 s). Live clients heartbeat every 30 s.
    pub idle_timeout: Duration,
    /// Requests one connection may have unanswered before we stop reading from it. Parked
    /// long polls count, so this is well above a consumer's queue count.
    pub in_flight_max: usize,
}

impl Event {
    /// What the event counts towards `TURN_EVENTS_MAX`.
    fn weight(&self) -> usize {
        match self {
            Event::Commands { more, .. } => 1 + more.len(),
            _ => 1,
        }
    }
}

impl Default for DriverConfig {
    fn default() -> DriverConfig {
        DriverConfig {
            max_frame_len: 16 * 1024 * 1024,
            serialize_type: SerializeType::Json,
            idle_timeout: Duration::from_secs(120),
            in_flight_max: 4096,
        }
    }
}

/// Serves `machine` on `listener` until `shutdown` resolves, then calls `on_stop` on it (the
/// role's clean stop: flush, checkpoint, goodbyes), sends what that transmits and gives the
/// writers a moment to deliver it. Returns the machine.
pub async fn run<R: Role>(
    machine: R,
    listener: TcpListener,
    config: DriverConfig,
    shutdown: impl std::future::Future<Output = ()>,
    on_stop: impl FnOnce(&mut R, u64),
) -> R {
    let (_jobs_tx, jobs) = mpsc::channel(1);
    let hooks = Hooks {
        jobs,
        after_turn: Box::new(|_: &R| {}),
    };
    run_with(machine, listener, config, shutdown, on_stop, hooks).await
}

/// Work another task runs on the machine inside the core task's turn (with the turn's `now`),
/// for I/O that is not remoting frames (the HA port). Results go back through channels the
/// closure captures.
pub type Job<R> = Box<dyn FnOnce(&mut R, u64) + Send>;

/// Extra inputs and outputs of [`run_with`].
pub struct Hooks<R> {
    /// Jobs to run in the core task; they count as events of the turn they arrive in.
    pub jobs: mpsc::Receiver<Job<R>>,
    /// Called after every turn, once its transmits are out (to publish state to other tasks).
    pub after_turn: Box<dyn FnMut(&R) + Send>,
}

/// [`run`], with [`Hooks`].
pub async fn run_with<R: Role>(
    machine: R,
    listener: TcpListener,
    config: DriverConfig,
    shutdown: impl std::future::Future<Output = ()>,
    on_stop: impl FnOnce(&mut R, u64),
    mut hooks: Hooks<R>,
) -> R {
    let mut jobs_open = true;
    let (events_tx, mut events_rx) = mpsc::channel::<Event>(CORE_QUEUE_LEN);
    // Unbounded, but the machine hands out little work at a time (one flush in flight).
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<WorkDone>();
    let accept_task = tokio::spawn(accept_loop(listener, events_tx.clone(), config.clone()));
    let mut core = Core {
        machine,
        links: HashMap::new(),
        dirty: Vec::new(),
        dialled: HashMap::new(),
        next_dialled: u64::MAX / 2,
        events: events_tx,
        work_done: done_tx,
        config,
    };
    core.machine.offload_work();
    tokio::pin!(shutdown);

    loop {
        let wait = core
            .machine
            .next_timeout()
            .map(|at| Duration::from_millis(at.saturating_sub(clock::now_ms())))
            .unwrap_or(Duration::from_secs(3600));
        let (first, first_job, first_done) = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            done = done_rx.recv() => (None, None, done),
            ev = events_rx.recv() => (ev, None, None),
            job = hooks.jobs.recv(), if jobs_open => {
                jobs_open = job.is_some();
                (None, job, None)
            }
            _ = tokio::time::sleep(wait) => (None, None, None),
        };
        let now = clock::now_ms();
        // Completed work first: a finished sync releases held replies this very turn.
        let more_done = std::iter::from_fn(|| done_rx.try_recv().ok());
        for done in first_done.into_iter().chain(more_done) {
            core.machine.handle_work_done(done, now);
        }
        // Handled as they are taken: no per-turn buffer, and about TURN_EVENTS_MAX a turn.
        let mut handled = 0;
        if let Some(ev) = first {
            handled += ev.weight();
            core.handle_event(ev, now);
        }
        while handled < TURN_EVENTS_MAX {
            let Ok(ev) = events_rx.try_recv() else {
                break;
            };
            handled += ev.weight();
            core.handle_event(ev, now);
        }
        let more_jobs = std::iter::from_fn(|| hooks.jobs.try_recv().ok()).take(TURN_EVENTS_MAX);
        for job in first_job.into_iter().chain(more_jobs) {
            job(&mut core.machine, now);
        }
        if core.machine.next_timeout().is_some_and(|at| at <= now) {
            core.machine.handle_timeout(now);
        }
        core.machine.handle_turn_end(now);
        core.start_work();
        core.transmit_all();
        (hooks.after_turn)(&core.machine);
    }
    accept_task.abort();
    on_stop(&mut core.machine, clock::now_ms());
    core.transmit_all();
    // Let the writers deliver the goodbyes (UNREGISTER_BROKER, last replies), briefly.
    let links: Vec<Link> = core.links.drain().map(|(_, l)| l).collect();
    let deadline = tokio::time::sleep(STOP_GRACE);
    tokio::pin!(deadline);
    for mut link in links {
        link.outbox.close();
        drop(link.outbox);
        tokio::select! {
            _ = link.writer_task => {}
            _ = &mut deadline => break,
        }
        link.reader_task.abort();
    }
    core.machine
}

/// One open connection, as the core task sees it.
struct Link {
    outbox: Outbox,
    writer_task: tokio::task::JoinHandle<()>,
    reader_task: tokio::task::JoinHandle<()>,
}

/// The core task's state: the machine and the connections it talks on.
struct Core<R> {
    machine: R,
    links: HashMap<ConnId, Link>,
    /// Connections with output staged this turn, flushed at its end.
    dirty: Vec<ConnId>,
    /// Dialled peers by address: the connection once up, or the requests waiting for it.
    dialled: HashMap<String, Dial>,
    next_dialled: u64,
    events: mpsc::Sender<Event>,
    /// Where work running off the core reports.
    work_done: mpsc::UnboundedSender<WorkDone>,
    config: DriverConfig,
}

enum Dial {
    Pending(Vec<RemotingCommand>),
    Up(ConnId),
}

impl<R: Role> Core<R> {
    fn handle_event(&mut self, ev: Event, now: u64) {
        match ev {
            Event::Connected {
                conn,
                remote,
                dialled,
                link,
            } => {
                self.links.insert(conn, link);
                if let Some(addr) = &dialled {
                    if let Some(Dial::Pending(waiting)) =
                        self.dialled.insert(addr.clone(), Dial::Up(conn))
                    {
                        for cmd in waiting {
                            self.stage(conn, &cmd, &[]);
                        }
                    }
                }
                self.machine
                    .handle_connected(conn, remote, dialled.as_deref(), now);
            }
            Event::Commands { conn, first, more } => {
                self.machine.handle_command(conn, first, now);
                for cmd in more {
                    self.machine.handle_command(conn, cmd, now);
                }
            }
            Event::Closed { conn } => {
                // A connection we closed ourselves was already reported to the machine.
                if let Some(mut link) = self.links.remove(&conn) {
                    link.outbox.close();
                    self.dialled
                        .retain(|_, d| !matches!(d, Dial::Up(c) if *c == conn));
                    self.machine.handle_closed(conn, now);
                }
            }
            Event::DialFailed { addr } => {
                if let Some(Dial::Pending(waiting)) = self.dialled.remove(&addr) {
                    for cmd in &waiting {
                        self.machine.handle_peer_failed(&addr, cmd, now);
                    }
                }
            }
        }
    }

    /// Starts the work the machine hands out, each off the core task.
    fn start_work(&mut self) {
        while let Some(work) = self.machine.poll_work() {
            spawn_work(work, self.work_done.clone());
        }
    }

    /// Performs every transmit, then writes what each connection got this turn.
    fn transmit_all(&mut self) {
        while let Some(t) = self.machine.poll_transmit() {
            match t {
                Transmit::Send { conn, cmd } => self.stage(conn, &cmd, &[]),
                Transmit::SendParts { conn, cmd, parts } => self.stage(conn, &cmd, &parts),
                Transmit::Close { conn, reason } => {
                    tracing::info!(conn = conn.0, %reason, "closing connection");
                    // Stopping the reader and ending the writer closes the socket.
                    if let Some(mut link) = self.links.remove(&conn) {
                        link.outbox.close();
                        link.reader_task.abort();
                        self.dialled
                            .retain(|_, d| !matches!(d, Dial::Up(c) if *c == conn));
                        self.machine.handle_closed(conn, clock::now_ms());
                    }
                }
                Transmit::Request { addr, cmd } => self.request(addr, cmd),
            }
        }
        for conn in self.dirty.drain(..) {
            if let Some(link) = self.links.get_mut(&conn) {
                link.outbox.flush();
            }
        }
    }

    /// Encodes `cmd`, with `parts` after its body, into `conn`'s outbox (dropped silently if
    /// the connection is gone).
    fn stage(&mut self, conn: ConnId, cmd: &RemotingCommand, parts: &[Bytes]) {
        if let Some(link) = self.links.get_mut(&conn) {
            if link.outbox.is_empty() {
                self.dirty.push(conn);
            }
            link.outbox.stage(cmd, parts, self.config.serialize_type);
        }
    }

    fn request(&mut self, addr: String, cmd: RemotingCommand) {
        match self.dialled.get_mut(&addr) {
            Some(Dial::Up(conn)) => {
                let conn = *conn;
                self.stage(conn, &cmd, &[]);
            }
            Some(Dial::Pending(waiting)) => waiting.push(cmd),
            None => {
                self.next_dialled -= 1;
                let conn = ConnId(self.next_dialled);
                self.dialled.insert(addr.clone(), Dial::Pending(vec![cmd]));
                tokio::spawn(dial(addr, conn, self.events.clone(), self.config.clone()));
            }
        }
    }
}

/// Runs `work` on tokio's blocking pool and reports its outcome; a stopped core drops it.
#[cfg(not(madsim))]
fn spawn_work(work: Work, done: mpsc::UnboundedSender<WorkDone>) {
    tokio::task::spawn_blocking(move || {
        let _ = done.send(work.run());
    });
}

/// Under madsim (no threads) a task of its own. The work itself runs without yielding; the
/// time a simulated disk says its syncs took ([`sim_work::stall`]) is then slept by this task
/// alone, so a slow sync delays the flush's completion while the core keeps serving, as a
/// blocking-pool thread would.
#[cfg(madsim)]
fn spawn_work(work: Work, done: mpsc::UnboundedSender<WorkDone>) {
    tokio::spawn(async move {
        let (outcome, stalled) = sim_work::running(|| work.run());
        if !stalled.is_zero() {
            tokio::time::sleep(stalled).await;
        }
        let _ = done.send(outcome);
    });
}

/// How a simulated disk charges the time a sync takes to the work running it.
#[cfg(madsim)]
pub mod sim_work {
    use std::cell::Cell;
    use std::time::Duration;

    thread_local! {
        /// Time charged to the work running right now on this thread, if any. Work runs
        /// without yielding, so nothing else runs while it is set.
        static CHARGED: Cell<Option<Duration>> = const { Cell::new(None) };
    }

    /// Charges `d` to the work running now and returns true; false outside work (the caller
    /// then models the stall some other way).
    pub fn stall(d: Duration) -> bool {
        CHARGED.with(|c| match c.get() {
            Some(total) => {
                c.set(Some(total + d));
                true
            }
            None => false,
        })
    }

    /// Runs `f` as work, returning its outcome and the time charged to it.
    pub(super) fn running<T>(f: impl FnOnce() -> T) -> (T, Duration) {
        CHARGED.with(|c| c.set(Some(Duration::ZERO)));
        let outcome = f();
        let charged = CHARGED.with(|c| c.take()).unwrap_or_default();
        (outcome, charged)
    }
}

async fn accept_loop(listener: TcpListener, events: mpsc::Sender<Event>, config: DriverConfig) {
    let mut next = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                next += 1;
                spawn_connection(stream, remote, ConnId(next), None, &events, &config).await;
            }
            Err(e) => {
                // Running out of descriptors is the usual cause; back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn dial(addr: String, conn: ConnId, events: mpsc::Sender<Event>, config: DriverConfig) {
    let connected = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr.as_str())).await;
    match connected {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            let remote = stream
                .peer_addr()
                .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
            spawn_connection(stream, remote, conn, Some(addr), &events, &config).await;
        }
        Ok(Err(e)) => {
            tracing::debug!(%addr, error = %e, "dial failed");
            let _ = events.send(Event::DialFailed { addr }).await;
        }
        Err(_) => {
            tracing::debug!(%addr, "dial timed out");
            let _ = events.send(Event::DialFailed { addr }).await;
        }
    }
}

/// Starts the reader and writer tasks of one connection and announces it to the core. The
/// reader waits for the announcement to be queued first, so the core never sees a command from
/// a connection it has not been told about.
async fn spawn_connection(
    stream: TcpStream,
    remote: SocketAddr,
    conn: ConnId,
    dialled: Option<String>,
    events: &mpsc::Sender<Event>,
    config: &DriverConfig,
) {
    let (reader, writer) = split(stream);
    let in_flight = Arc::new(Semaphore::new(config.in_flight_max));
    let (go_tx, go_rx) = oneshot::channel();
    let reader_task = tokio::spawn(read_loop(
        reader,
        conn,
        remote,
        events.clone(),
        config.clone(),
        in_flight.clone(),
        go_rx,
    ));
    let outbox = Outbox::new(Sink::new(writer), in_flight);
    let writer_task = tokio::spawn(outbox::write_loop(outbox.shared()));
    let link = Link {
        outbox,
        writer_task,
        reader_task,
    };
    if events
        .send(Event::Connected {
            conn,
            remote,
            dialled,
            link,
        })
        .await
        .is_ok()
    {
        let _ = go_tx.send(());
    }
}

/// The two halves of a connection: owned halves on tokio (the core writes with `try_write`),
/// the generic split on madsim, whose sockets have no owned halves.
#[cfg(not(madsim))]
fn split(
    stream: TcpStream,
) -> (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
) {
    stream.into_split()
}

#[cfg(madsim)]
fn split(
    stream: TcpStream,
) -> (
    tokio::io::ReadHalf<TcpStream>,
    tokio::io::WriteHalf<TcpStream>,
) {
    tokio::io::split(stream)
}

/// Commands a reader decoded and has not handed to the core yet.
#[derive(Default)]
struct ReadBatch {
    first: Option<RemotingCommand>,
    more: Vec<RemotingCommand>,
}

impl ReadBatch {
    fn push(&mut self, cmd: RemotingCommand) {
        match self.first {
            None => self.first = Some(cmd),
            Some(_) => self.more.push(cmd),
        }
    }

    fn len(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }

    /// Sends what the batch holds as one event; false if the core is gone.
    async fn hand_over(&mut self, conn: ConnId, events: &mpsc::Sender<Event>) -> bool {
        let Some(first) = self.first.take() else {
            return true;
        };
        let more = std::mem::take(&mut self.more);
        events
            .send(Event::Commands { conn, first, more })
            .await
            .is_ok()
    }
}

async fn read_loop(
    mut reader: impl AsyncRead + Unpin,
    conn: ConnId,
    remote: SocketAddr,
    events: mpsc::Sender<Event>,
    config: DriverConfig,
    in_flight: Arc<Semaphore>,
    go: oneshot::Receiver<()>,
) {
    if go.await.is_err() {
        return;
    }
    let mut decoder = FrameDecoder::with_frame_len_max(config.max_frame_len);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    // Commands decoded and not yet handed to the core.
    let mut batch = ReadBatch::default();
    'read: loop {
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(cmd)) => {
                    if !cmd.is_response() && !cmd.is_oneway() {
                        // Bound the requests a peer may have in flight: past the limit we stop
                        // reading its socket until responses go out (TCP pushes back on it).
                        match in_flight.try_acquire() {
                            Ok(permit) => permit.forget(),
                            Err(TryAcquireError::NoPermits) => {
                                // Only answers to what we hold can free a permit: hand it over
                                // before waiting.
                                if !batch.hand_over(conn, &events).await {
                                    return;
                                }
                                match in_flight.clone().acquire_owned().await {
                                    Ok(permit) => permit.forget(),
                                    Err(_) => break 'read,
                                }
                            }
                            Err(TryAcquireError::Closed) => break 'read,
                        }
                    }
                    batch.push(cmd);
                    if batch.len() >= READ_BATCH_MAX && !batch.hand_over(conn, &events).await {
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
        if !batch.hand_over(conn, &events).await {
            return;
        }
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match tokio::time::timeout(config.idle_timeout, reader.read_buf(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%remote, error = %e, "read failed");
                break;
            }
            Err(_) => {
                tracing::info!(%remote, conn = conn.0, idle = ?config.idle_timeout, "idle connection closed");
                break;
            }
        }
    }
    // The frames before a malformed one still reach the core, as they did one by one.
    if !batch.hand_over(conn, &events).await {
        return;
    }
    let _ = events.send(Event::Closed { conn }).await;
}
