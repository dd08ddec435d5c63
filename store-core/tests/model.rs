//! Model test of the message store over the crash-simulating `MemStorage`.
//!
//! Random sequences of appends, batch appends, flushes (including a flush that completes after
//! more appends arrived), crashes with and without a torn last write, clean restarts, full
//! disks and reads run against a simple model: per queue, the list of messages appended in
//! order, each marked acknowledged once a SYNC_FLUSH covered it. After every step:
//! - every acknowledged message is still there, byte for byte, at its queue offset;
//! - what the store holds is a prefix of what was appended: nothing that was never written
//!   appears, nothing is reordered;
//! - queue offsets are dense from 0 and each consume-queue unit points at the commit-log record
//!   with that topic, queue id and queue offset;
//! - no queue exists that the model does not know;
//! - the index finds each stored message by its key, and nothing else under that key.

use std::collections::BTreeMap;

use bytes::Bytes;
use proptest::prelude::*;
use store_core::consume_queue::ConsumeQueueConfig;
use store_core::flush::FlushDiskType;
use store_core::format::record::{self, MessageRecord};
use store_core::index::IndexConfig;
use store_core::status::{GetMessageStatus, PutMessageStatus};
use store_core::storage::{MemStorage, Storage};
use store_core::store::{AcceptAll, MessageStore, StoreConfig};

const TOPICS: [&str; 2] = ["TopicA", "%RETRY%group"];
const QUEUES: i32 = 3;

#[derive(Debug, Clone)]
enum Op {
    Append {
        topic: usize,
        queue: i32,
        len: usize,
    },
    Batch {
        topic: usize,
        queue: i32,
        count: usize,
        len: usize,
    },
    /// Run the flush cycle to completion: everything appended so far is acknowledged.
    Flush,
    /// Issue a flush, append more, then complete it: only the earlier appends are covered.
    FlushRacingAppend {
        topic: usize,
        queue: i32,
        len: usize,
    },
    /// Sync consume queues and checkpoint (the store's timer).
    Tick,
    Crash {
        tear: Option<u64>,
    },
    Restart,
    /// Fill the disk, try to append, then free the disk again.
    DiskFull {
        topic: usize,
        queue: i32,
        len: usize,
    },
    Read {
        topic: usize,
        queue: i32,
        from: u64,
        max: u32,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let tq = (0..TOPICS.len(), 0..QUEUES);
    prop_oneof![
        6 => (tq.clone(), 0..700usize).prop_map(|((topic, queue), len)| Op::Append { topic, queue, len }),
        2 => (tq.clone(), 1..5usize, 0..300usize)
            .prop_map(|((topic, queue), count, len)| Op::Batch { topic, queue, count, len }),
        3 => Just(Op::Flush),
        2 => (tq.clone(), 0..300usize)
            .prop_map(|((topic, queue), len)| Op::FlushRacingAppend { topic, queue, len }),
        1 => Just(Op::Tick),
        2 => proptest::option::of(any::<u64>()).prop_map(|tear| Op::Crash { tear }),
        1 => Just(Op::Restart),
        1 => (tq.clone(), 0..300usize).prop_map(|((topic, queue), len)| Op::DiskFull { topic, queue, len }),
        2 => (tq, 0..12u64, 1..40u32).prop_map(|((topic, queue), from, max)| Op::Read { topic, queue, from, max }),
    ]
}

/// One appended message: a unique id (its body is derived from it) and whether a flush has
/// made it durable.
#[derive(Debug, Clone)]
struct Appended {
    id: u64,
    len: usize,
    acked: bool,
}

fn body(id: u64, len: usize) -> Bytes {
    let mut b = id.to_be_bytes().to_vec();
    b.extend((0..len).map(|i| (id as usize).wrapping_mul(31).wrapping_add(i) as u8));
    Bytes::from(b)
}

fn properties(id: u64) -> Bytes {
    Bytes::from(format!("TAGS\u{1}t{}\u{2}KEYS\u{1}k{id}\u{2}", id % 3))
}

fn message(topic: &str, queue: i32, id: u64, len: usize) -> MessageRecord {
    let host = "10.1.2.3:10911".parse().expect("literal address");
    MessageRecord {
        queue_id: queue,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp: 7,
        born_host: host,
        store_timestamp: 0,
        store_host: host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: body(id, len),
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        properties: properties(id),
    }
}

fn config() -> StoreConfig {
    let mut cfg = StoreConfig {
        consume_queue: ConsumeQueueConfig { units_per_file: 8 },
        index: IndexConfig {
            max_hash_slot_num: 16,
            max_index_num: 24,
        },
        flush_consume_queue_interval_ms: 5,
        ..StoreConfig::compact(4096)
    };
    cfg.flush.flush_disk_type = FlushDiskType::SyncFlush;
    cfg
}

struct Harness {
    disk: MemStorage,
    store: Option<MessageStore<MemStorage>>,
    model: BTreeMap<(usize, i32), Vec<Appended>>,
    next_id: u64,
    now: u64,
}

impl Harness {
    fn new() -> Harness {
        let disk = MemStorage::new();
        let (store, _) = MessageStore::open(disk.clone(), config(), 1).expect("open a new store");
        Harness {
            disk,
            store: Some(store),
            model: BTreeMap::new(),
            next_id: 0,
            now: 1,
        }
    }

    fn store(&mut self) -> &mut MessageStore<MemStorage> {
        self.store.as_mut().expect("store is open between steps")
    }

    fn reopen(&mut self) {
        let (store, _) = MessageStore::open(self.disk.clone(), config(), self.now)
            .unwrap_or_else(|e| panic!("reopen failed: {e}"));
        self.store = Some(store);
    }

    fn append(&mut self, topic: usize, queue: i32, len: usize) -> PutMessageStatus {
        let id = self.next_id;
        self.next_id += 1;
        let now = self.now;
        let r = self
            .store()
            .put(&message(TOPICS[topic], queue, id, len), now);
        if r.status.is_stored() {
            let list = self.model.entry((topic, queue)).or_default();
            let info = r.wrote.expect("a stored put says where");
            assert_eq!(
                info.queue_offset,
                list.len() as u64,
                "queue offsets are dense"
            );
            list.push(Appended {
                id,
                len,
                acked: false,
            });
        }
        r.status
    }

    fn batch(&mut self, topic: usize, queue: i32, count: usize, len: usize) {
        let ids: Vec<u64> = (0..count as u64).map(|i| self.next_id + i).collect();
        self.next_id += count as u64;
        let msgs: Vec<MessageRecord> = ids
            .iter()
            .map(|&id| message(TOPICS[topic], queue, id, len))
            .collect();
        let now = self.now;
        let r = self.store().put_batch(&msgs, now);
        if r.status.is_stored() {
            let list = self.model.entry((topic, queue)).or_default();
            for (info, id) in r.wrote.iter().zip(ids) {
                assert_eq!(info.queue_offset, list.len() as u64);
                list.push(Appended {
                    id,
                    len,
                    acked: false,
                });
            }
        }
    }

    /// Completes flush requests until none is due; acknowledges what they covered.
    fn flush(&mut self) {
        let now = self.now;
        while let Some(req) = self.store().poll_flush(now) {
            req.run(&self.disk).expect("sync");
            self.store().handle_flushed(req.up_to);
        }
        self.ack_all();
    }

    fn ack_all(&mut self) {
        for list in self.model.values_mut() {
            for m in list.iter_mut() {
                m.acked = true;
            }
        }
    }

    fn flush_racing_append(&mut self, topic: usize, queue: i32, len: usize) {
        let now = self.now;
        let req = self.store().poll_flush(now);
        // Everything before the request is covered by it.
        let covered: Vec<(usize, i32, usize)> = self
            .model
            .iter()
            .map(|(&(t, q), l)| (t, q, l.len()))
            .collect();
        self.append(topic, queue, len);
        if let Some(req) = req {
            req.run(&self.disk).expect("sync");
            self.store().handle_flushed(req.up_to);
            for (t, q, n) in covered {
                if let Some(list) = self.model.get_mut(&(t, q)) {
                    list.iter_mut().take(n).for_each(|m| m.acked = true);
                }
            }
        }
    }

    fn crash(&mut self, tear: Option<u64>) {
        self.store = None;
        self.disk.crash(tear);
        self.reopen();
        self.check_survivors();
    }

    fn restart(&mut self) {
        self.store().shutdown().expect("clean shutdown");
        self.store = None;
        self.reopen();
        self.check_survivors();
    }

    /// After a crash: each queue holds a prefix of what was appended, at least every acked
    /// message; the survivors are durable from now on.
    fn check_survivors(&mut self) {
        let keys: Vec<(usize, i32)> = self.model.keys().copied().collect();
        for (topic, queue) in keys {
            let held = self.store().max_offset_in_queue(TOPICS[topic], queue) as usize;
            let list = self
                .model
                .get_mut(&(topic, queue))
                .expect("key from the model");
            let acked = list.iter().take_while(|m| m.acked).count();
            assert!(
                list.iter().skip(acked).all(|m| !m.acked),
                "acks form a prefix"
            );
            assert!(
                held >= acked,
                "{topic}/{queue}: {held} held but {acked} acknowledged"
            );
            assert!(
                held <= list.len(),
                "{topic}/{queue}: {held} held but {} written",
                list.len()
            );
            list.truncate(held);
            list.iter_mut().for_each(|m| m.acked = true);
        }
        self.check_all();
    }

    fn disk_full(&mut self, topic: usize, queue: i32, len: usize) {
        let used = self.disk.used_bytes();
        self.disk.set_capacity(Some(used + 64));
        let status = self.append(topic, queue, len);
        assert!(
            status.is_stored() || status == PutMessageStatus::ServiceNotAvailable,
            "a full disk is refused cleanly, not {status:?}"
        );
        self.disk.set_capacity(None);
        self.now += 20_000;
        let now = self.now;
        self.store().handle_timeout(now, 12);
    }

    /// Reads every queue entirely and compares with the model.
    fn check_all(&mut self) {
        let store = self.store.as_ref().expect("open");
        let known: Vec<(String, i32)> = self
            .model
            .iter()
            .filter(|(_, l)| !l.is_empty())
            .map(|(&(t, q), _)| (TOPICS[t].to_string(), q))
            .collect();
        for (topic, queue, min, max) in store.queues() {
            assert_eq!(min, 0, "nothing expires in this test");
            if max > 0 {
                assert!(
                    known.contains(&(topic.clone(), queue)),
                    "unknown queue {topic}/{queue}"
                );
            }
        }
        for (&(t, q), list) in &self.model {
            let got = read_all(store, TOPICS[t], q);
            assert_eq!(got.len(), list.len(), "{}/{q} length", TOPICS[t]);
            for (offset, (rec, m)) in got.iter().zip(list).enumerate() {
                let (decoded, _) = record::decode(rec).expect("stored records decode");
                assert_eq!(decoded.body, body(m.id, m.len), "byte for byte");
                assert_eq!(
                    decoded.properties,
                    properties(m.id),
                    "properties byte for byte"
                );
                assert_eq!(decoded.topic, TOPICS[t].as_bytes());
                assert_eq!(decoded.queue_id, q);
                assert_eq!(decoded.queue_offset, offset as i64);
                assert_eq!(
                    store
                        .lookup_by_offset(decoded.physical_offset as u64)
                        .as_ref(),
                    Some(rec)
                );
                // The index finds it by its key, and only it.
                let found = store.query_by_key(TOPICS[t], &format!("k{}", m.id), 8, 0, u64::MAX);
                assert_eq!(
                    found.records,
                    vec![rec.clone()],
                    "index lookup of k{}",
                    m.id
                );
            }
        }
    }

    fn read(&mut self, topic: usize, queue: i32, from: u64, max: u32) {
        let store = self.store.as_ref().expect("open");
        let r = store.get_messages(TOPICS[topic], queue, from, max, 1 << 20, &AcceptAll);
        let len = self.model.get(&(topic, queue)).map_or(0, Vec::len) as u64;
        assert_eq!(r.max_offset, len);
        match r.status {
            GetMessageStatus::Found => {
                assert!(from < len);
                assert_eq!(r.queue_offsets.first(), Some(&from));
                assert!(r.records.len() <= max as usize);
                assert_eq!(r.next_begin_offset, from + r.records.len() as u64);
            }
            GetMessageStatus::OffsetOverflowOne => assert_eq!(from, len),
            GetMessageStatus::OffsetOverflowBadly => assert!(from > len),
            GetMessageStatus::NoMessageInQueue | GetMessageStatus::NoMatchedLogicQueue => {
                assert_eq!(len, 0)
            }
            other => panic!("unexpected read status {other:?}"),
        }
    }

    fn step(&mut self, op: Op) {
        self.now += 3;
        match op {
            Op::Append { topic, queue, len } => {
                let status = self.append(topic, queue, len);
                assert_eq!(status, PutMessageStatus::PutOk);
            }
            Op::Batch {
                topic,
                queue,
                count,
                len,
            } => self.batch(topic, queue, count, len),
            Op::Flush => self.flush(),
            Op::FlushRacingAppend { topic, queue, len } => {
                self.flush_racing_append(topic, queue, len)
            }
            Op::Tick => {
                let now = self.now;
                self.store().handle_timeout(now, 12);
            }
            Op::Crash { tear } => self.crash(tear),
            Op::Restart => self.restart(),
            Op::DiskFull { topic, queue, len } => self.disk_full(topic, queue, len),
            Op::Read {
                topic,
                queue,
                from,
                max,
            } => self.read(topic, queue, from, max),
        }
    }
}

fn read_all(store: &MessageStore<MemStorage>, topic: &str, queue: i32) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut offset = 0;
    loop {
        let r = store.get_messages(topic, queue, offset, 32, 1 << 30, &AcceptAll);
        if r.status != GetMessageStatus::Found {
            return out;
        }
        out.extend(r.records);
        offset = r.next_begin_offset;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn the_store_agrees_with_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut h = Harness::new();
        for op in ops {
            h.step(op);
        }
        h.check_all();
        // A final crash with everything flushed loses nothing.
        h.flush();
        h.crash(Some(3));
        let total: usize = h.model.values().map(Vec::len).sum();
        prop_assert!(h.model.values().all(|l| l.iter().all(|m| m.acked)));
        prop_assert_eq!(total as u64, h.model.values().map(|l| l.len() as u64).sum::<u64>());
    }
}

#[test]
fn storage_files_follow_the_rocketmq_layout() {
    let mut h = Harness::new();
    for i in 0..20 {
        h.append(0, i % 2, 500);
    }
    h.flush();
    let files = h.disk.list("commitlog").unwrap();
    assert!(files.len() >= 3);
    assert!(files
        .iter()
        .all(|f| f.len() == 20 && f.bytes().all(|b| b.is_ascii_digit())));
    assert_eq!(
        h.disk.list_dirs("consumequeue/TopicA").unwrap(),
        vec!["0", "1"]
    );
    assert!(h.disk.len("abort").unwrap().is_some());
    h.store().shutdown().unwrap();
    assert!(h.disk.len("abort").unwrap().is_none());
    assert_eq!(h.disk.len("checkpoint").unwrap(), Some(4096));
}
