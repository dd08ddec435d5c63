//! Sync senders sharing a connection per broker, as every RocketMQ client's threads share its
//! producer's: one task owns a connection to each broker and the senders that use it, and each
//! sender has at most one request on it at a time.
//!
//! Per turn the task starts a request for every sender that is free (its answer came, or its
//! `--rate` slot is due) by appending that request's frame to its broker's write buffer, writes
//! each buffer with one call, then reads and hands each answer to its sender, found from the
//! opaque alone: opaques are `OPAQUE_BASE + round · senders + slot`, all ten decimal digits, so
//! the sender's [`Template`] gets its opaque patched in place like its sequence digits and born
//! timestamp. The round makes an answer that comes after its request timed out match nothing.
//! That is the traffic of a RocketMQ producer under `--threads` sync threads, without the
//! general [`io_adapters::client::RemotingClient`]'s writer and reader tasks, oneshot and
//! pending-request map per request.
//!
//! Failures are counted by kind like the pipes' (`connect`, `connection closed`, `timeout`, or
//! the response code). A read or write error or end of stream fails every request waiting on
//! that connection, and the next request to that broker reconnects; a timeout fails only its
//! request and leaves the connection open, as the shared client does.
//! Left out: server-initiated requests (skipped, as in the pipes).

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use bytes::BytesMut;
use hdrhistogram::Histogram;
use proto_core::codec::frame::{encode_frame, FrameDecoder};
use proto_core::{ResponseCode, SerializeType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::code_kind;
use super::now_ms;
use super::produce::{build, template, Outcome, Plan};
use super::report::{new_histogram, Meter};
use super::template::Template;

/// The smallest ten-digit opaque: every shared-mode opaque has ten digits, so a template's can
/// be rewritten in place.
const OPAQUE_BASE: i32 = 1_000_000_000;
/// How many opaques there are from [`OPAQUE_BASE`] up to `i32::MAX`.
const OPAQUE_SPAN: i32 = i32::MAX - OPAQUE_BASE;
/// Most senders one run may have in this mode (keeps a few thousand rounds per sender).
pub const MAX_SENDERS: usize = 1 << 18;
/// Free room below which the read buffer grows before a read.
const READ_ROOM: usize = 4096;
/// How much it grows by.
const READ_GROWTH: usize = 16 * 1024;

/// Maps a sender's slot and round to its opaque and back.
#[derive(Clone, Copy, Debug)]
struct Opaques {
    senders: i32,
    rounds: i32,
}

impl Opaques {
    /// `None` if `senders` is 0 or above [`MAX_SENDERS`].
    fn new(senders: usize) -> Option<Opaques> {
        if senders > MAX_SENDERS {
            return None;
        }
        let senders = i32::try_from(senders).ok().filter(|&n| n > 0)?;
        Some(Opaques {
            senders,
            rounds: OPAQUE_SPAN / senders,
        })
    }

    /// The opaque of `slot`'s request in `round` (both below their bounds).
    fn opaque(self, slot: usize, round: i32) -> i32 {
        OPAQUE_BASE + round * self.senders + slot as i32
    }

    /// The slot whose request carried `opaque`.
    fn slot(self, opaque: i32) -> Option<usize> {
        let offset = opaque.checked_sub(OPAQUE_BASE).filter(|&o| o >= 0)?;
        usize::try_from(offset % self.senders).ok()
    }

    fn next_round(self, round: i32) -> i32 {
        (round + 1) % self.rounds
    }
}

/// Where a sender is.
#[derive(Clone, Copy, Debug)]
enum State {
    /// Its next request may be claimed.
    Free,
    /// `n` messages claimed; the request goes at `due` (`--rate`).
    Paced { due: Instant, n: u64 },
    /// A request of `n` messages written to connection `conn` at `since`.
    Waiting {
        conn: usize,
        since: Instant,
        n: u64,
        opaque: i32,
    },
    /// Nothing more to claim.
    Done,
}

/// One logical sender.
struct Sender {
    /// Its index among all senders: its first queue and its message keys.
    index: usize,
    state: State,
    seq: u64,
    next_queue: usize,
    round: i32,
    /// Per target, once tried: the encoded request to patch, or `None` where it cannot be.
    templates: Vec<Option<Option<Template>>>,
}

/// The connection to one broker address.
struct Conn {
    stream: Option<TcpStream>,
    out: BytesMut,
    buf: BytesMut,
    decoder: FrameDecoder,
    /// Senders waiting on an answer here.
    waiting: usize,
    /// What the last poll read: `Some(true)` bytes, `Some(false)` end of stream or an error.
    read: Option<bool>,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            stream: None,
            out: BytesMut::with_capacity(READ_GROWTH),
            buf: BytesMut::with_capacity(READ_GROWTH),
            decoder: FrameDecoder::new(),
            waiting: 0,
            read: None,
        }
    }
}

/// One connection's task: the senders whose indexes are `members`, to the run's end.
pub(super) async fn run(plan: Arc<Plan>, meter: Arc<Meter>, members: Vec<usize>) {
    let Some(opaques) = Opaques::new(members.len()) else {
        return;
    };
    let mut task = Task {
        senders: members
            .into_iter()
            .map(|index| Sender {
                index,
                state: State::Free,
                seq: 0,
                next_queue: index,
                round: 0,
                templates: (0..plan.targets.len()).map(|_| None).collect(),
            })
            .collect(),
        conns: (0..plan.addr_slots).map(|_| Conn::new()).collect(),
        histogram: new_histogram(),
        opaques,
        plan,
        meter,
    };
    task.drive().await;
    task.meter.merge(&task.histogram);
}

struct Task {
    plan: Arc<Plan>,
    meter: Arc<Meter>,
    senders: Vec<Sender>,
    conns: Vec<Conn>,
    histogram: Histogram<u64>,
    opaques: Opaques,
}

impl Task {
    async fn drive(&mut self) {
        loop {
            self.start_free().await;
            self.flush().await;
            if self.senders.iter().all(|s| matches!(s.state, State::Done)) {
                return;
            }
            let Some(wake) = self.next_wake() else {
                // Every sender is free again (their connects failed): claim anew, after
                // letting the progress line run (a refused connect does not yield).
                tokio::task::yield_now().await;
                continue;
            };
            self.wait(wake).await;
            let now = Instant::now();
            for c in 0..self.conns.len() {
                self.take_answers(c, now);
            }
            self.expire(now);
        }
    }

    /// Claims and starts a request for every free sender, and starts paced ones now due.
    async fn start_free(&mut self) {
        let now = Instant::now();
        for slot in 0..self.senders.len() {
            let Some(sender) = self.senders.get_mut(slot) else {
                continue;
            };
            let n = match sender.state {
                State::Free => match self.plan.claim() {
                    None => {
                        sender.state = State::Done;
                        continue;
                    }
                    Some(n) => match self.plan.due() {
                        Some(due) if due > now => {
                            sender.state = State::Paced { due, n };
                            continue;
                        }
                        _ => n,
                    },
                },
                State::Paced { due, n } if due <= now => n,
                _ => continue,
            };
            self.start(slot, n).await;
        }
    }

    /// Appends `slot`'s request for `n` messages to its broker's write buffer, connecting
    /// first if needed.
    async fn start(&mut self, slot: usize, n: u64) {
        let Task {
            plan,
            senders,
            conns,
            opaques,
            ..
        } = self;
        let Some(sender) = senders.get_mut(slot) else {
            return;
        };
        let target_index = sender.next_queue % plan.targets.len().max(1);
        let (Some(target), Some(&c)) = (
            plan.targets.get(target_index),
            plan.addr_slot.get(target_index),
        ) else {
            sender.state = State::Done;
            return;
        };
        sender.next_queue = sender.next_queue.wrapping_add(1);
        let Some(conn) = conns.get_mut(c) else {
            sender.state = State::Done;
            return;
        };
        if conn.stream.is_none() {
            match TcpStream::connect(&target.addr).await {
                Ok(stream) => {
                    let _ = stream.set_nodelay(true);
                    conn.stream = Some(stream);
                }
                Err(_) => {
                    sender.state = State::Free;
                    self.account((n, 0, Err("connect".to_string())));
                    return;
                }
            }
        }
        let opaque = opaques.opaque(slot, sender.round);
        sender.round = opaques.next_round(sender.round);
        let born = now_ms();
        let (index, seq) = (sender.index, sender.seq);
        let frame = sender
            .templates
            .get_mut(target_index)
            .and_then(|t| {
                t.get_or_insert_with(|| template(plan, target, n, index, seq, born, OPAQUE_BASE))
                    .as_mut()
            })
            .filter(|t| t.messages() as u64 == n)
            .and_then(|t| {
                t.set_opaque(opaque)?;
                t.fill(seq + 1, born)
            });
        let encoded = match frame {
            Some(frame) => {
                conn.out.extend_from_slice(frame);
                sender.seq += n;
                true
            }
            None => {
                let mut cmd = build(plan, target, n, index, &mut sender.seq, born);
                cmd.opaque = opaque;
                encode_frame(&cmd, SerializeType::Json, &mut conn.out).is_ok()
            }
        };
        if !encoded {
            sender.state = State::Free;
            self.account((n, 0, Err("encode".to_string())));
            return;
        }
        conn.waiting += 1;
        sender.state = State::Waiting {
            conn: c,
            since: Instant::now(),
            n,
            opaque,
        };
    }

    /// Writes every connection's buffered requests, one write call each.
    async fn flush(&mut self) {
        for c in 0..self.conns.len() {
            let Some(conn) = self.conns.get_mut(c) else {
                continue;
            };
            if conn.out.is_empty() {
                continue;
            }
            let Some(stream) = conn.stream.as_mut() else {
                conn.out.clear();
                continue;
            };
            let written =
                tokio::time::timeout(self.plan.timeout, stream.write_all(&conn.out)).await;
            conn.out.clear();
            match written {
                Ok(Ok(())) => {}
                Ok(Err(_)) => self.close(c, "connection closed"),
                Err(_) => self.close(c, "timeout"),
            }
        }
    }

    /// The earliest request timeout or `--rate` slot; `None` if no sender waits for either.
    fn next_wake(&self) -> Option<Instant> {
        self.senders
            .iter()
            .filter_map(|s| match s.state {
                State::Waiting { since, .. } => Some(since + self.plan.timeout),
                State::Paced { due, .. } => Some(due),
                State::Free | State::Done => None,
            })
            .min()
    }

    /// Until some connection with waiting senders has read something (or failed), or `wake`.
    async fn wait(&mut self, wake: Instant) {
        let mut sleep = pin!(tokio::time::sleep_until(wake.into()));
        let conns = &mut self.conns;
        poll_fn(|cx| {
            let mut any = false;
            for conn in conns.iter_mut() {
                let Conn {
                    stream: Some(stream),
                    buf,
                    waiting,
                    read: read @ None,
                    ..
                } = conn
                else {
                    continue;
                };
                if *waiting == 0 {
                    continue;
                }
                if buf.capacity() - buf.len() < READ_ROOM {
                    buf.reserve(READ_GROWTH);
                }
                // A fresh read future per poll: it holds no state between polls, and a
                // pending one has taken no bytes.
                if let Poll::Ready(result) = pin!(stream.read_buf(buf)).poll(cx) {
                    *read = Some(matches!(result, Ok(got) if got > 0));
                    any = true;
                }
            }
            if any || sleep.as_mut().poll(cx).is_ready() {
                Poll::Ready(())
            } else {
                Poll::Pending
            }
        })
        .await;
    }

    /// Hands every complete answer read on connection `c` to its sender.
    fn take_answers(&mut self, c: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        match conn.read.take() {
            None => return,
            Some(false) => return self.close(c, "connection closed"),
            Some(true) => {}
        }
        loop {
            let Some(conn) = self.conns.get_mut(c) else {
                return;
            };
            let answer = match conn.decoder.decode(&mut conn.buf) {
                Ok(Some(cmd)) => cmd,
                Ok(None) => return,
                Err(_) => return self.close(c, "connection closed"),
            };
            if !answer.is_response() {
                continue;
            }
            let Some(sender) = self
                .opaques
                .slot(answer.opaque)
                .and_then(|slot| self.senders.get_mut(slot))
            else {
                continue;
            };
            let State::Waiting {
                conn: on,
                since,
                n,
                opaque,
            } = sender.state
            else {
                continue;
            };
            if on != c || opaque != answer.opaque {
                // The answer to a request that already timed out.
                continue;
            }
            sender.state = State::Free;
            conn.waiting -= 1;
            let result = if ResponseCode::from_value(answer.code) == ResponseCode::Success {
                Ok(())
            } else {
                Err(code_kind(answer.code))
            };
            self.account((n, micros(now, since), result));
        }
    }

    /// Fails every request waiting longer than the timeout; their connections stay open.
    fn expire(&mut self, now: Instant) {
        for slot in 0..self.senders.len() {
            let Some(sender) = self.senders.get_mut(slot) else {
                continue;
            };
            let State::Waiting { conn, since, n, .. } = sender.state else {
                continue;
            };
            if now < since + self.plan.timeout {
                continue;
            }
            sender.state = State::Free;
            if let Some(conn) = self.conns.get_mut(conn) {
                conn.waiting -= 1;
            }
            self.account((n, micros(now, since), Err("timeout".to_string())));
        }
    }

    /// Drops connection `c` (the next request to its broker reconnects) and fails every
    /// request waiting on it with `kind`.
    fn close(&mut self, c: usize, kind: &str) {
        if let Some(conn) = self.conns.get_mut(c) {
            *conn = Conn::new();
        }
        let now = Instant::now();
        for slot in 0..self.senders.len() {
            let Some(sender) = self.senders.get_mut(slot) else {
                continue;
            };
            let State::Waiting { conn, since, n, .. } = sender.state else {
                continue;
            };
            if conn != c {
                continue;
            }
            sender.state = State::Free;
            self.account((n, micros(now, since), Err(kind.to_string())));
        }
    }

    fn account(&mut self, (n, rt_us, result): Outcome) {
        match result {
            Ok(()) => {
                self.meter.done(n, n * self.plan.args.size as u64);
                self.meter.latency(rt_us);
                self.histogram.saturating_record(rt_us);
            }
            Err(kind) => self.meter.failed(kind),
        }
    }
}

fn micros(now: Instant, since: Instant) -> u64 {
    now.saturating_duration_since(since).as_micros() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaques_have_ten_digits_and_lead_back_to_their_slot() {
        for senders in [1usize, 3, 16, MAX_SENDERS] {
            let o = Opaques::new(senders).expect("valid count");
            for slot in [0, senders / 2, senders - 1] {
                for round in [0, 1, o.rounds - 1] {
                    let opaque = o.opaque(slot, round);
                    assert_eq!(opaque.to_string().len(), 10, "{senders} {slot} {round}");
                    assert_eq!(o.slot(opaque), Some(slot));
                }
            }
            assert_eq!(
                o.next_round(o.rounds - 1),
                0,
                "rounds wrap before i32 overflows"
            );
            assert_ne!(o.opaque(0, 0), o.opaque(0, 1));
        }
        assert!(Opaques::new(0).is_none());
        assert!(Opaques::new(MAX_SENDERS + 1).is_none());
        let o = Opaques::new(4).expect("valid count");
        assert_eq!(o.slot(7), None, "a pipe's opaque is no shared sender's");
        assert_eq!(o.slot(-5), None);
    }
}
