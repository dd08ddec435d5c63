//! The message store over the real memory-mapped storage, in a temp directory, with
//! process-level restarts: the store and every storage handle are dropped (a kill: the abort
//! marker stays, the page cache keeps what was written) or shut down cleanly, then the
//! directory is opened again from scratch.
//!
//! A process kill loses nothing that was written, synced or not, so here every appended message
//! must survive every restart, byte for byte, at its queue offset, and consume queues must
//! agree with the commit log. Power loss (dropping unsynced pages) is the in-memory model
//! test's business (store-core/tests/model.rs).

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use io_adapters::MmapStorage;
use proptest::prelude::*;
use store_core::consume_queue::ConsumeQueueConfig;
use store_core::flush::FlushDiskType;
use store_core::format::record::{self, MessageRecord};
use store_core::index::IndexConfig;
use store_core::status::GetMessageStatus;
use store_core::storage::Storage;
use store_core::store::{AcceptAll, MessageStore, StoreConfig};

const TOPICS: [&str; 2] = ["TopicA", "TopicB"];

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
    Flush,
    Tick,
    Kill,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    let tq = (0..TOPICS.len(), 0..2i32);
    prop_oneof![
        6 => (tq.clone(), 0..900usize).prop_map(|((topic, queue), len)| Op::Append { topic, queue, len }),
        2 => (tq, 1..4usize, 0..300usize)
            .prop_map(|((topic, queue), count, len)| Op::Batch { topic, queue, count, len }),
        2 => Just(Op::Flush),
        1 => Just(Op::Tick),
        2 => Just(Op::Kill),
        1 => Just(Op::Restart),
    ]
}

fn config(flush: FlushDiskType) -> StoreConfig {
    let mut cfg = StoreConfig {
        consume_queue: ConsumeQueueConfig { units_per_file: 8 },
        index: IndexConfig {
            max_hash_slot_num: 16,
            max_index_num: 24,
        },
        ..StoreConfig::compact(8192)
    };
    cfg.flush.flush_disk_type = flush;
    cfg
}

fn body(id: u64, len: usize) -> Bytes {
    let mut b = id.to_be_bytes().to_vec();
    b.extend((0..len).map(|i| (id as usize ^ i) as u8));
    Bytes::from(b)
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
        properties: Bytes::from(format!("KEYS\u{1}k{id}\u{2}")),
    }
}

struct Harness<'a> {
    dir: &'a Path,
    flush: FlushDiskType,
    store: Option<MessageStore<MmapStorage>>,
    /// Per queue, the (id, len) of each message in queue order.
    model: BTreeMap<(usize, i32), Vec<(u64, usize)>>,
    next_id: u64,
    now: u64,
}

impl<'a> Harness<'a> {
    fn open(dir: &'a Path, flush: FlushDiskType) -> Harness<'a> {
        let mut h = Harness {
            dir,
            flush,
            store: None,
            model: BTreeMap::new(),
            next_id: 0,
            now: 1_000,
        };
        h.reopen();
        h
    }

    fn reopen(&mut self) {
        let storage = MmapStorage::open(self.dir).expect("open the store directory");
        let (store, _) = MessageStore::open(storage, config(self.flush), self.now)
            .unwrap_or_else(|e| panic!("reopen failed: {e}"));
        self.store = Some(store);
    }

    fn store(&mut self) -> &mut MessageStore<MmapStorage> {
        self.store.as_mut().expect("open between steps")
    }

    fn step(&mut self, op: Op) {
        self.now += 5;
        let now = self.now;
        match op {
            Op::Append { topic, queue, len } => {
                let id = self.next_id;
                self.next_id += 1;
                let r = self
                    .store()
                    .put(&message(TOPICS[topic], queue, id, len), now);
                assert!(r.status.is_stored(), "{r:?}");
                let list = self.model.entry((topic, queue)).or_default();
                assert_eq!(r.wrote.expect("stored").queue_offset, list.len() as u64);
                list.push((id, len));
            }
            Op::Batch {
                topic,
                queue,
                count,
                len,
            } => {
                let ids: Vec<u64> = (self.next_id..self.next_id + count as u64).collect();
                self.next_id += count as u64;
                let msgs: Vec<MessageRecord> = ids
                    .iter()
                    .map(|&id| message(TOPICS[topic], queue, id, len))
                    .collect();
                let r = self.store().put_batch(&msgs, now);
                assert!(r.status.is_stored(), "{r:?}");
                self.model
                    .entry((topic, queue))
                    .or_default()
                    .extend(ids.iter().map(|&id| (id, len)));
            }
            Op::Flush => {
                while let Some(req) = self.store().poll_flush(now) {
                    let storage = self.store().storage().clone();
                    req.run(&storage).expect("msync");
                    self.store().handle_flushed(req.up_to);
                }
            }
            Op::Tick => self.store().handle_timeout(now, 12),
            Op::Kill => {
                self.store = None;
                self.reopen();
                self.check();
            }
            Op::Restart => {
                self.store().shutdown().expect("clean shutdown");
                self.store = None;
                self.reopen();
                self.check();
            }
        }
    }

    fn check(&mut self) {
        let store = self.store.as_ref().expect("open");
        for (&(t, q), list) in &self.model {
            assert_eq!(store.max_offset_in_queue(TOPICS[t], q), list.len() as u64);
            let mut offset = 0;
            for chunk in list.chunks(16) {
                let r = store.get_messages(TOPICS[t], q, offset, 16, 1 << 30, &AcceptAll);
                assert_eq!(r.status, GetMessageStatus::Found);
                assert_eq!(r.records.len(), chunk.len());
                for (rec, &(id, len)) in r.records.iter().zip(chunk) {
                    let (decoded, _) = record::decode(rec).expect("valid record");
                    assert_eq!(decoded.body, body(id, len));
                    assert_eq!(decoded.queue_offset, offset as i64);
                    offset += 1;
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn mmap_store_survives_process_restarts(
        ops in proptest::collection::vec(op(), 1..50),
        sync in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let flush = if sync { FlushDiskType::SyncFlush } else { FlushDiskType::AsyncFlush };
        let mut h = Harness::open(dir.path(), flush);
        for op in ops {
            h.step(op);
        }
        h.check();
        h.step(Op::Kill);
    }
}

#[test]
fn files_on_disk_have_the_rocketmq_layout_and_lookups_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::open(dir.path(), FlushDiskType::SyncFlush);
    for _ in 0..30 {
        h.step(Op::Append {
            topic: 0,
            queue: 1,
            len: 700,
        });
    }
    h.step(Op::Restart);
    let root = dir.path();
    let segments: Vec<_> = std::fs::read_dir(root.join("commitlog")).unwrap().collect();
    assert!(segments.len() >= 3);
    assert_eq!(
        std::fs::metadata(root.join("commitlog/00000000000000000000"))
            .unwrap()
            .len(),
        8192
    );
    assert!(root
        .join("consumequeue/TopicA/1/00000000000000000000")
        .is_file());
    assert_eq!(
        std::fs::metadata(root.join("checkpoint")).unwrap().len(),
        4096
    );
    assert!(
        root.join("abort").is_file(),
        "the running store holds the abort marker"
    );
    let store = h.store.as_ref().unwrap();
    let found = store.query_by_key("TopicA", "k17", 4, 0, u64::MAX);
    assert_eq!(found.records.len(), 1);
    assert_eq!(
        record::decode(&found.records[0]).unwrap().0.body,
        body(17, 700)
    );
    assert!(store.storage().space().unwrap().total_bytes > 0);
}
