//! Tests of a broker whose driver runs store flushes off the core task
//! ([`Role::offload_work`]): the flush is handed out as [`Work`], sends keep being answered
//! while it runs, SYNC_FLUSH replies wait for its completion, and a failed one refuses writes.

use bytes::Bytes;

use store_core::flush::FlushDiskType;
use store_core::storage::MemStorage;

use super::test_support::{open_with_client, send_message, sent_to, small_store};
use super::*;

const T0: u64 = 1_700_000_000_000;
const NO_WAIT: &str = "WAIT\u{1}false\u{2}";

/// A SYNC_FLUSH broker told that its flushes run elsewhere, with clients on conns 1 and 2.
struct Offloaded {
    broker: Broker<MemStorage>,
    now: u64,
    opaque: i32,
}

impl Offloaded {
    fn open(disk: &MemStorage) -> Offloaded {
        let mut config = BrokerConfig {
            store: small_store(),
            ..BrokerConfig::default()
        };
        config.store.flush.flush_disk_type = FlushDiskType::SyncFlush;
        let mut broker = open_with_client(disk, &config, T0);
        broker.offload_work();
        broker.handle_connected(ConnId(2), "127.0.0.1:40002".parse().unwrap(), None, T0);
        let mut h = Offloaded {
            broker,
            now: T0,
            opaque: 0,
        };
        h.broker.handle_timeout(T0);
        h.turn();
        h
    }

    /// Feeds a send on `conn` and ends the turn; returns what `conn` got in it.
    fn send(&mut self, conn: u64, props: &str, body: &'static [u8]) -> Vec<RemotingCommand> {
        self.opaque += 1;
        let mut cmd = send_message("Off", 0, props, Bytes::from_static(body));
        cmd.opaque = self.opaque;
        self.broker.handle_command(ConnId(conn), cmd, self.now);
        sent_to(&self.turn(), conn)
    }

    fn turn(&mut self) -> Vec<Transmit> {
        self.broker.handle_turn_end(self.now);
        std::iter::from_fn(|| self.broker.poll_transmit()).collect()
    }

    /// Runs `work` as a driver would, reports it, and ends the turn.
    fn complete(&mut self, work: Work) -> Vec<Transmit> {
        let done = work.run();
        self.broker.handle_work_done(done, self.now);
        self.turn()
    }
}

#[test]
fn sends_are_answered_while_a_flush_is_in_flight() {
    let disk = MemStorage::new();
    let mut h = Offloaded::open(&disk);
    assert!(h.send(1, "", b"held").is_empty(), "SYNC_FLUSH waits");
    let work = h.broker.poll_work().expect("the flush is handed out");
    // The sync has not run: a send that does not wait is answered at once, and no second
    // flush starts while the first is in flight.
    let quick = h.send(2, NO_WAIT, b"quick");
    assert_eq!(quick.len(), 1);
    assert_eq!(quick[0].code, ResponseCode::Success.value());
    assert!(h.broker.poll_work().is_none(), "one flush in flight");
    let held = sent_to(&h.complete(work), 1);
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].code, ResponseCode::Success.value());
}

#[test]
fn sync_flush_replies_only_after_the_completion_and_survive_a_crash() {
    let disk = MemStorage::new();
    let mut h = Offloaded::open(&disk);
    assert!(h.send(1, "", b"one").is_empty());
    let work = h.broker.poll_work().expect("a flush");
    h.now += 1;
    assert!(
        sent_to(&h.turn(), 1).is_empty(),
        "no reply before the sync completes"
    );
    assert!(h.send(1, "", b"two").is_empty());
    let replies = sent_to(&h.complete(work), 1);
    assert_eq!(
        replies.len(),
        1,
        "the first send only: the second came after the request"
    );
    assert_eq!(replies[0].opaque, 1);
    // The second send's flush starts on the completion's turn.
    let work = h.broker.poll_work().expect("the next flush");
    let replies = sent_to(&h.complete(work), 1);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].opaque, 2);
    drop(h);
    disk.crash(None);
    let (broker, _) = Broker::new(
        BrokerConfig {
            store: small_store(),
            ..BrokerConfig::default()
        },
        disk,
        T0 + 10,
    )
    .unwrap();
    assert_eq!(broker.store.max_offset_in_queue("Off", 0), 2);
}

#[test]
fn a_flush_in_flight_past_the_deadline_answers_flush_disk_timeout() {
    let disk = MemStorage::new();
    let mut h = Offloaded::open(&disk);
    assert!(h.send(1, "", b"slow").is_empty());
    let work = h.broker.poll_work().expect("a flush");
    h.now += h.broker.config.sync_flush_timeout_ms;
    h.broker.handle_timeout(h.now);
    let replies = sent_to(&h.turn(), 1);
    assert_eq!(replies.len(), 1);
    assert_eq!(replies[0].code, ResponseCode::FlushDiskTimeout.value());
    // The late completion answers nobody twice.
    assert!(sent_to(&h.complete(work), 1).is_empty());
}

#[test]
fn a_failed_flush_refuses_writes() {
    let disk = MemStorage::new();
    let mut h = Offloaded::open(&disk);
    assert!(h.send(1, "", b"lost").is_empty());
    let work = h.broker.poll_work().expect("a flush");
    disk.set_fail_io(true);
    let after = h.complete(work);
    disk.set_fail_io(false);
    assert!(sent_to(&after, 1).is_empty(), "not acknowledged as durable");
    let refused = h.send(2, NO_WAIT, b"next");
    assert_eq!(refused.len(), 1);
    assert_ne!(refused[0].code, ResponseCode::Success.value());
}
