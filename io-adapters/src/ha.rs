//! The HA port: the master's listener streaming its commit log to slaves, and the slave's
//! client copying it (RocketMQ's `DefaultHAService` / `HAConnection` / `DefaultHAClient`),
//! on tokio or madsim.
//!
//! The broker stays on the driver's core task; these tasks reach it through driver jobs
//! ([`crate::driver::Hooks`]) and follow its [`HaView`] (role, master address, write position)
//! published after every turn. Decisions (what to send from where, when a slave reports, what
//! is in sync, which replies are released) are the cores'; this file only moves bytes.
//!
//! With `HaConfig::controller_mode` both sides speak controller mode's wire instead
//! (`proto_core::ha::auto_wire`): the slave opens with a handshake naming its broker id, the
//! master answers with its epoch entries, the slave cuts a diverged tail before it reports, and
//! every master frame carries its epoch and the confirm offset.
//!
//! Left out: flow control (`haFlowControlEnable`), and the master closing a slave silent for
//! `haHousekeepingInterval` (the slave does that side; a dead slave's socket fails the
//! master's next write).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use proto_core::broker::Broker;
use proto_core::ha::auto_wire::{
    encode_master_handshake, encode_master_transfer_header, encode_slave_handshake,
    encode_slave_report, AutoTransferFrame, MasterFrame, MasterFrameDecoder, SlaveFrame,
    SlaveFrameDecoder,
};
use proto_core::ha::slave::MasterLink;
use proto_core::ha::wire::{encode_report, encode_transfer_header, ReportDecoder, TransferDecoder};
use proto_core::ha::{BrokerRole, HaConfig, HaView};
use store_core::storage::Storage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::clock;
use crate::driver::{Hooks, Job};

/// Jobs queued towards the core task before HA tasks wait.
const JOB_QUEUE_LEN: usize = 1024;
/// How long a slave waits for its master to accept.
const DIAL_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause before a slave dials again after a failure (Java waits 5 s; a shorter pause only
/// costs a connect attempt and shortens catch-up after a master restart).
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// Read buffer size.
const READ_CHUNK: usize = 64 * 1024;

/// The HA tasks' way to the broker: jobs into its core task, and its published view.
pub struct HaHandle<S: Storage + Clone + 'static> {
    jobs: mpsc::Sender<Job<Broker<S>>>,
    view: ViewReceiver,
    config: HaConfig,
}

impl<S: Storage + Clone + 'static> Clone for HaHandle<S> {
    fn clone(&self) -> Self {
        HaHandle {
            jobs: self.jobs.clone(),
            view: self.view.clone(),
            config: self.config.clone(),
        }
    }
}

/// The driver hooks for a broker with replication, and the handle its HA tasks use.
pub fn hooks<S: Storage + Clone + 'static>(broker: &Broker<S>) -> (Hooks<Broker<S>>, HaHandle<S>) {
    let (jobs_tx, jobs) = mpsc::channel(JOB_QUEUE_LEN);
    let (view_tx, view) = view_channel(broker.ha_view());
    let after_turn = Box::new(move |broker: &Broker<S>| view_tx.publish(broker.ha_view()));
    let handle = HaHandle {
        jobs: jobs_tx,
        view,
        config: broker.config().ha.clone(),
    };
    (Hooks { jobs, after_turn }, handle)
}

/// The broker's published HA view, for its HA tasks. Not `tokio::sync::watch`: a watch's
/// receivers wait on one of eight `Notify`s picked by a per-thread RNG, so with several HA
/// tasks waiting, two simulations in one process wake them in different orders. One `Notify`
/// wakes its waiters in the order they began to wait.
struct ViewCell {
    state: Mutex<ViewState>,
    changed: Notify,
}

struct ViewState {
    version: u64,
    view: HaView,
    /// The publisher (the driver's turn hook) is gone: the broker has stopped.
    closed: bool,
}

impl ViewCell {
    fn state(&self) -> MutexGuard<'_, ViewState> {
        // Nothing panics while holding the lock; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn view_channel(view: HaView) -> (ViewPublisher, ViewReceiver) {
    let cell = Arc::new(ViewCell {
        state: Mutex::new(ViewState {
            version: 0,
            view,
            closed: false,
        }),
        changed: Notify::new(),
    });
    (ViewPublisher(cell.clone()), ViewReceiver { cell, seen: 0 })
}

struct ViewPublisher(Arc<ViewCell>);

impl ViewPublisher {
    /// Publishes `view` if it differs from the last one, waking every waiting task.
    fn publish(&self, view: HaView) {
        {
            let mut state = self.0.state();
            if state.view == view {
                return;
            }
            state.view = view;
            state.version += 1;
        }
        self.0.changed.notify_waiters();
    }
}

impl Drop for ViewPublisher {
    fn drop(&mut self) {
        self.0.state().closed = true;
        self.0.changed.notify_waiters();
    }
}

/// One task's view of the published view, remembering which version it has seen.
#[derive(Clone)]
struct ViewReceiver {
    cell: Arc<ViewCell>,
    seen: u64,
}

/// The broker stopped: no view will change again.
struct ViewClosed;

impl ViewReceiver {
    /// The current view.
    fn get(&self) -> HaView {
        self.cell.state().view.clone()
    }

    /// The current view, marked seen.
    fn get_and_mark_seen(&mut self) -> HaView {
        let state = self.cell.state();
        self.seen = state.version;
        state.view.clone()
    }

    /// Waits until a view this task has not seen is published (marking it seen).
    async fn changed(&mut self) -> Result<(), ViewClosed> {
        loop {
            let notified = self.cell.changed.notified();
            tokio::pin!(notified);
            // Registered before looking, so a publish between the look and the wait wakes us.
            notified.as_mut().enable();
            {
                let state = self.cell.state();
                if state.version != self.seen {
                    self.seen = state.version;
                    return Ok(());
                }
                if state.closed {
                    return Err(ViewClosed);
                }
            }
            notified.await;
        }
    }
}

impl<S: Storage + Clone + 'static> HaHandle<S> {
    /// Runs `f` on the broker in its core task; `None` once the driver has stopped.
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Broker<S>, u64) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job<Broker<S>> = Box::new(move |broker, now| {
            let _ = tx.send(f(broker, now));
        });
        self.jobs.send(job).await.ok()?;
        rx.await.ok()
    }
}

/// Accepts slaves on the HA port and streams the commit log to each, for as long as the
/// broker runs. Connections from slaves are refused while the broker is itself a slave.
pub async fn serve_master<S: Storage + Clone + 'static>(
    listener: TcpListener,
    handle: HaHandle<S>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let _ = stream.set_nodelay(true);
                if handle.view.get().role == BrokerRole::Slave {
                    tracing::debug!(%remote, "HA connection refused: this broker is a slave");
                    continue;
                }
                if handle.config.controller_mode {
                    tokio::spawn(master_connection_auto(stream, remote, handle.clone()));
                } else {
                    tokio::spawn(master_connection(stream, remote, handle.clone()));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "HA accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One slave: a reader task feeds its reports to the broker; this task writes transfers
/// whenever the log grows or a report arrives, and a heartbeat frame when idle.
async fn master_connection<S: Storage + Clone + 'static>(
    stream: TcpStream,
    remote: SocketAddr,
    mut handle: HaHandle<S>,
) {
    let Some(id) = handle
        .call(move |b, now| b.ha_slave_connected(remote, now))
        .await
    else {
        return;
    };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (reported_tx, mut reported) = watch::channel(0u64);
    let reports = handle.clone();
    let mut reader_task = tokio::spawn(async move {
        let mut decoder = ReportDecoder::default();
        let mut buf = vec![0u8; 1024];
        loop {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if let Some(offset) = decoder.push(&buf[..n]) {
                        if reports
                            .call(move |b, now| b.ha_slave_report(id, offset, now))
                            .await
                            .is_none()
                        {
                            return;
                        }
                        reported_tx.send_replace(offset);
                    }
                }
            }
        }
    });
    let heartbeat = Duration::from_millis(handle.config.ha_send_heartbeat_interval_ms.max(1));
    let mut next_offset = None;
    'conn: loop {
        // Send everything there is, one batch per frame.
        loop {
            match handle.call(move |b, now| b.ha_transfer(id, now)).await {
                Some(Some((offset, data))) => {
                    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
                    let header = encode_transfer_header(offset, len);
                    if write_all(&mut writer, &[&header, &data]).await.is_err() {
                        break 'conn;
                    }
                    next_offset = Some(offset + data.len() as u64);
                }
                Some(None) => break,
                None => break 'conn,
            }
        }
        tokio::select! {
            _ = &mut reader_task => break,
            changed = handle.view.changed() => {
                if changed.is_err() || handle.view.get().role == BrokerRole::Slave {
                    break;
                }
            }
            _ = reported.changed() => {}
            _ = tokio::time::sleep(heartbeat) => {
                if let Some(offset) = next_offset {
                    if write_all(&mut writer, &[&encode_transfer_header(offset, 0)]).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    reader_task.abort();
    let _ = handle.call(move |b, now| b.ha_slave_closed(id, now)).await;
    tracing::info!(%remote, "HA connection to slave closed");
}

/// A slave's HA client: while the broker is a slave with a known master, connects to the
/// master's HA port, reports its offset and appends what arrives; reconnects after any
/// failure or change of master.
pub async fn run_slave<S: Storage + Clone + 'static>(mut handle: HaHandle<S>) {
    loop {
        let addr = loop {
            let view = handle.view.get_and_mark_seen();
            if let (BrokerRole::Slave, Some(addr)) = (view.role, view.master_ha_addr) {
                break addr;
            }
            if handle.view.changed().await.is_err() {
                return;
            }
        };
        match tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr.as_str())).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                tracing::info!(master = %addr, "connected to master HA port");
                let link = if handle.config.controller_mode {
                    slave_link_auto(stream, &addr, &mut handle).await
                } else {
                    slave_link(stream, &addr, &mut handle).await
                };
                match link {
                    Ok(()) => tracing::info!(master = %addr, "left master HA connection"),
                    Err(why) => tracing::warn!(master = %addr, %why, "master HA connection lost"),
                }
            }
            Ok(Err(e)) => tracing::debug!(master = %addr, error = %e, "HA dial failed"),
            Err(_) => tracing::debug!(master = %addr, "HA dial timed out"),
        }
        if handle.jobs.is_closed() {
            return;
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

/// One connection from a slave to `addr`. `Ok` when the role or master changed.
async fn slave_link<S: Storage + Clone + 'static>(
    stream: TcpStream,
    addr: &str,
    handle: &mut HaHandle<S>,
) -> Result<(), String> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut end = handle
        .call(|b, _| b.ha_master_connected())
        .await
        .ok_or("broker stopped")?;
    let config = &handle.config;
    let mut link = MasterLink::new(
        config.ha_send_heartbeat_interval_ms,
        config.ha_housekeeping_interval_ms,
        clock::now_ms(),
    );
    let mut decoder = TransferDecoder::default();
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if let Some(offset) = link.poll_report(end, clock::now_ms()) {
            write_all(&mut writer, &[&encode_report(offset)])
                .await
                .map_err(|e| format!("report failed: {e}"))?;
        }
        let wait = Duration::from_millis(link.next_timeout().saturating_sub(clock::now_ms()));
        tokio::select! {
            read = reader.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return Err("master closed the connection".into()),
                    Ok(n) => n,
                    Err(e) => return Err(format!("read failed: {e}")),
                };
                link.handle_read(clock::now_ms());
                decoder.push(&buf[..n]);
                while let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
                    if frame.body.is_empty() {
                        continue; // heartbeat
                    }
                    let appended = handle
                        .call(move |b, now| b.ha_append(frame.offset, &frame.body, now))
                        .await
                        .ok_or("broker stopped")?;
                    end = appended.map_err(|e| format!("append refused: {e}"))?;
                }
            }
            _ = tokio::time::sleep(wait) => {
                if link.expired(clock::now_ms()) {
                    return Err("master silent past haHousekeepingInterval".into());
                }
            }
            changed = handle.view.changed() => {
                let view = handle.view.get();
                if changed.is_err()
                    || view.role != BrokerRole::Slave
                    || view.master_ha_addr.as_deref() != Some(addr)
                {
                    return Ok(());
                }
            }
        }
    }
}

/// Controller mode's master side of one slave: the reader task answers handshakes (through
/// this task, which owns the writer) and feeds reports to the broker; this task writes the
/// handshake answers, transfers, and a heartbeat frame when idle.
async fn master_connection_auto<S: Storage + Clone + 'static>(
    stream: TcpStream,
    remote: SocketAddr,
    mut handle: HaHandle<S>,
) {
    let Some(id) = handle
        .call(move |b, now| b.ha_slave_connected(remote, now))
        .await
    else {
        return;
    };
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (reported_tx, mut reported) = watch::channel(0u64);
    let (handshake_tx, mut handshakes) = mpsc::channel::<Vec<u8>>(4);
    let reports = handle.clone();
    let mut reader_task = tokio::spawn(async move {
        let mut decoder = SlaveFrameDecoder::default();
        let mut buf = vec![0u8; 1024];
        loop {
            let n = match reader.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            decoder.push(&buf[..n]);
            loop {
                match decoder.next_frame() {
                    Ok(None) => break,
                    Ok(Some(SlaveFrame::Handshake { broker_id, .. })) => {
                        let Some(answer) = reports
                            .call(move |b, _| b.ha_slave_handshake(id, broker_id))
                            .await
                        else {
                            return;
                        };
                        if handshake_tx
                            .send(encode_master_handshake(&answer))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    Ok(Some(SlaveFrame::Report(offset))) => {
                        if reports
                            .call(move |b, now| b.ha_slave_report(id, offset, now))
                            .await
                            .is_none()
                        {
                            return;
                        }
                        reported_tx.send_replace(offset);
                    }
                    Err(e) => {
                        tracing::warn!(%remote, error = %e, "slave stream unreadable");
                        return;
                    }
                }
            }
        }
    });
    let heartbeat = Duration::from_millis(handle.config.ha_send_heartbeat_interval_ms.max(1));
    'conn: loop {
        loop {
            match handle.call(move |b, now| b.ha_transfer_auto(id, now)).await {
                Some(Some(frame)) => {
                    if write_auto_frame(&mut writer, &frame).await.is_err() {
                        break 'conn;
                    }
                }
                Some(None) => break,
                None => break 'conn,
            }
        }
        tokio::select! {
            _ = &mut reader_task => break,
            answer = handshakes.recv() => {
                let Some(answer) = answer else { break };
                if write_all(&mut writer, &[&answer]).await.is_err() {
                    break;
                }
            }
            changed = handle.view.changed() => {
                if changed.is_err() || handle.view.get().role == BrokerRole::Slave {
                    break;
                }
            }
            _ = reported.changed() => {}
            _ = tokio::time::sleep(heartbeat) => {
                let beat = handle.call(move |b, _| b.ha_heartbeat_auto(id)).await;
                if let Some(Some(frame)) = beat {
                    if write_auto_frame(&mut writer, &frame).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    reader_task.abort();
    let _ = handle.call(move |b, now| b.ha_slave_closed(id, now)).await;
    tracing::info!(%remote, "HA connection to slave closed");
}

async fn write_auto_frame<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    frame: &AutoTransferFrame,
) -> std::io::Result<()> {
    // Bounded by haTransferBatchSize (a u32) in ha_transfer_auto.
    let len = u32::try_from(frame.body.len()).unwrap_or(u32::MAX);
    let header =
        encode_master_transfer_header(frame.offset, frame.epoch, frame.confirm_offset, len);
    write_all(writer, &[&header, &frame.body]).await
}

/// Controller mode's slave side of one connection to `addr`: handshake, truncate to the
/// consistent point, then copy. `Ok` when the role or master changed.
async fn slave_link_auto<S: Storage + Clone + 'static>(
    stream: TcpStream,
    addr: &str,
    handle: &mut HaHandle<S>,
) -> Result<(), String> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let broker_id = handle
        .call(|b, _| u64::try_from(b.config().broker_id).unwrap_or(0))
        .await
        .ok_or("broker stopped")?;
    write_all(&mut writer, &[&encode_slave_handshake(broker_id)])
        .await
        .map_err(|e| format!("handshake failed: {e}"))?;
    let config = &handle.config;
    let mut link = MasterLink::new(
        config.ha_send_heartbeat_interval_ms,
        config.ha_housekeeping_interval_ms,
        clock::now_ms(),
    );
    let mut decoder = MasterFrameDecoder::default();
    let mut buf = vec![0u8; READ_CHUNK];
    // The offset to report, known once the master's handshake is through.
    let mut end: Option<u64> = None;
    loop {
        if let Some(offset) = end.and_then(|end| link.poll_report(end, clock::now_ms())) {
            write_all(&mut writer, &[&encode_slave_report(offset)])
                .await
                .map_err(|e| format!("report failed: {e}"))?;
        }
        let wait = Duration::from_millis(link.next_timeout().saturating_sub(clock::now_ms()));
        tokio::select! {
            read = reader.read(&mut buf) => {
                let n = match read {
                    Ok(0) => return Err("master closed the connection".into()),
                    Ok(n) => n,
                    Err(e) => return Err(format!("read failed: {e}")),
                };
                link.handle_read(clock::now_ms());
                decoder.push(&buf[..n]);
                while let Some(frame) = decoder.next_frame().map_err(|e| e.to_string())? {
                    let done = match frame {
                        MasterFrame::Handshake(hs) => handle
                            .call(move |b, _| b.ha_master_handshake(&hs))
                            .await,
                        MasterFrame::Transfer(_) if end.is_none() => {
                            return Err("transfer before the handshake".into());
                        }
                        MasterFrame::Transfer(frame) => handle
                            .call(move |b, now| b.ha_append_auto(&frame, now))
                            .await,
                    };
                    let done = done.ok_or("broker stopped")?;
                    end = Some(done.map_err(|e| format!("refused: {e}"))?);
                }
            }
            _ = tokio::time::sleep(wait) => {
                if link.expired(clock::now_ms()) {
                    return Err("master silent past haHousekeepingInterval".into());
                }
            }
            changed = handle.view.changed() => {
                let view = handle.view.get();
                if changed.is_err()
                    || view.role != BrokerRole::Slave
                    || view.master_ha_addr.as_deref() != Some(addr)
                {
                    return Ok(());
                }
            }
        }
    }
}

/// Writes `parts` and flushes (madsim sends on flush only).
async fn write_all<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    parts: &[&[u8]],
) -> std::io::Result<()> {
    for part in parts {
        writer.write_all(part).await?;
    }
    writer.flush().await
}
