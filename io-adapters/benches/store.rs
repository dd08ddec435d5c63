//! Message store benchmark over the real memory-mapped storage in a temp directory: what the
//! issue's targets are measured against (append MB/s under ASYNC_FLUSH, SYNC_FLUSH records/s
//! with concurrent writers, recovery MB/s).
//!
//! `cargo bench -p io-adapters --bench store`; `BENCH_MB` sets the data per run (default 512),
//! `BENCH_DIR` the directory (default the system temp dir), `BENCH_ONLY=append|sync|recovery`
//! one section, `BENCH_PRETOUCH=1` pre-touches preallocated segments. Sections:
//! - append throughput for 128 B, 1 KiB and 4 KiB bodies under ASYNC_FLUSH, a flusher thread
//!   running `msync` in the background and helper threads preallocating segments, as a driver
//!   does;
//! - SYNC_FLUSH group commit of 1 KiB records with 1, 16 and 256 concurrent writers, each
//!   holding one unacknowledged message: "rounds" appends one message per writer then syncs
//!   once; "pipelined" runs syncs back to back on a flusher thread while writers whose
//!   acknowledgement came back append again (the broker's behaviour);
//! - recovery after a crash (store dropped without shutdown, page cache warm): walking and
//!   CRC-checking every segment with a trusted checkpoint, and rebuilding consume queues and
//!   index from the whole commit log without one.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

use bytes::Bytes;
use io_adapters::MmapStorage;
use store_core::flush::{FlushDiskType, FlushRequest};
use store_core::format::record::MessageRecord;
use store_core::storage::Storage;
use store_core::store::{MessageStore, StoreConfig};

fn main() {
    let mb: u64 = env_or("BENCH_MB", 512);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |section: &str| only.is_empty() || only == section;
    let base = std::env::var("BENCH_DIR").map_or_else(|_| std::env::temp_dir(), Into::into);
    // `BENCH_PRETOUCH=1`: segments created ahead of need are also faulted in.
    let pretouch = std::env::var("BENCH_PRETOUCH").is_ok_and(|v| v == "1");
    let fresh = || {
        let dir = tempfile::tempdir_in(&base).expect("temp dir");
        let storage = MmapStorage::open_with(dir.path(), pretouch).expect("open storage");
        (dir, storage)
    };
    println!(
        "io-adapters bench over MmapStorage in {} ({mb} MiB per run)",
        base.display()
    );
    for size in [128usize, 1024, 4096].into_iter().filter(|_| run("append")) {
        let (_dir, storage) = fresh();
        let r = append_async(storage, size, mb << 20);
        println!(
            "append async {size:>5} B: {:>9.0} rec/s {:>8.1} MB/s",
            r.records as f64 / r.secs,
            r.bytes as f64 / r.secs / 1e6
        );
    }
    for writers in [1usize, 16, 256].into_iter().filter(|_| run("sync")) {
        let total = ((mb << 20) / 4 / 1024).min(writers as u64 * 400).max(200);
        let (_dir, storage) = fresh();
        let r = group_commit_rounds(storage, writers, total);
        println!(
            "sync flush 1 KiB, {writers:>3} writers, rounds:    {:>8.0} rec/s ({} syncs, {:.1} ms/sync)",
            r.records as f64 / r.secs,
            r.syncs,
            r.secs * 1e3 / r.syncs.max(1) as f64
        );
        let (_dir, storage) = fresh();
        let r = group_commit_pipelined(storage, writers, total);
        println!(
            "sync flush 1 KiB, {writers:>3} writers, pipelined: {:>8.0} rec/s ({} syncs, {:.1} ms/sync)",
            r.records as f64 / r.secs,
            r.syncs,
            r.secs * 1e3 / r.syncs.max(1) as f64
        );
    }
    if run("recovery") {
        let (dir, storage) = fresh();
        let (walk, rebuild) = recovery(dir.path(), storage, mb << 20);
        for (what, r) in [
            ("walk + CRC, checkpoint", walk),
            ("rebuild CQ + index", rebuild),
        ] {
            println!(
                "recovery, {what}: {:.1} MB in {:.3} s = {:.0} MB/s, {:.2} s/GiB",
                r.bytes as f64 / 1e6,
                r.secs,
                r.bytes as f64 / r.secs / 1e6,
                r.secs * (1u64 << 30) as f64 / r.bytes as f64
            );
        }
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Figures {
    records: u64,
    bytes: u64,
    secs: f64,
    syncs: u64,
}

fn config(flush: FlushDiskType) -> StoreConfig {
    let mut cfg = StoreConfig::default();
    cfg.flush.flush_disk_type = flush;
    cfg
}

fn message(body: &Bytes, queue: i32) -> MessageRecord {
    let host = "10.0.0.1:10911".parse().expect("literal address");
    MessageRecord {
        queue_id: queue,
        flag: 0,
        queue_offset: 0,
        physical_offset: 0,
        sys_flag: 0,
        born_timestamp: 1,
        born_host: host,
        store_timestamp: 0,
        store_host: host,
        reconsume_times: 0,
        prepared_transaction_offset: 0,
        body: body.clone(),
        topic: Bytes::from_static(b"BenchTopic"),
        properties: Bytes::from_static(PROPS.as_bytes()),
    }
}

/// A typical producer's properties: client id, a tag, WAIT.
const PROPS: &str =
    "UNIQ_KEY\u{1}0A0000010000000000000000000000\u{2}TAGS\u{1}bench\u{2}WAIT\u{1}true\u{2}";

fn now_ms(start: Instant) -> u64 {
    1_700_000_000_000 + start.elapsed().as_millis() as u64
}

/// A driver in miniature: flush requests run on a thread, completions come back.
struct Flusher {
    requests: mpsc::Sender<FlushRequest>,
    done: mpsc::Receiver<u64>,
    thread: std::thread::JoinHandle<()>,
}

impl Flusher {
    fn start(storage: MmapStorage) -> Flusher {
        let (requests, rx) = mpsc::channel::<FlushRequest>();
        let (tx, done) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            for req in rx {
                req.run(&storage).expect("bench sync");
                let _ = tx.send(req.up_to);
            }
        });
        Flusher {
            requests,
            done,
            thread,
        }
    }

    /// Reports finished syncs, then hands out the next one if due. Returns syncs completed.
    fn drive(&self, store: &mut MessageStore<MmapStorage>, now: u64, block: bool) -> u64 {
        let mut completed = 0;
        if block {
            if let Ok(up_to) = self.done.recv() {
                store.handle_flushed(up_to);
                completed += 1;
            }
        }
        while let Ok(up_to) = self.done.try_recv() {
            store.handle_flushed(up_to);
            completed += 1;
        }
        if let Some(req) = store.poll_flush(now) {
            self.requests.send(req).expect("flusher alive");
        }
        completed
    }

    fn stop(self, store: &mut MessageStore<MmapStorage>) {
        drop(self.requests);
        self.thread.join().expect("flusher thread");
        while let Ok(up_to) = self.done.try_recv() {
            store.handle_flushed(up_to);
        }
    }
}

/// Creates requested segments on helper threads, off the append path.
fn preallocate(
    store: &mut MessageStore<MmapStorage>,
    helpers: &mut Vec<std::thread::JoinHandle<()>>,
) {
    while let Some(seg) = store.poll_preallocate() {
        let storage = store.storage().clone();
        helpers.push(std::thread::spawn(move || {
            let _ = storage.create(&seg.name, seg.len);
        }));
    }
}

fn append_async(storage: MmapStorage, size: usize, total: u64) -> Figures {
    let (mut store, _) = MessageStore::open(storage.clone(), config(FlushDiskType::AsyncFlush), 0)
        .expect("open bench store");
    let flusher = Flusher::start(storage);
    let mut helpers = Vec::new();
    let body = Bytes::from(vec![b'x'; size]);
    let count = (total / size as u64).max(1);
    let start = Instant::now();
    let mut bytes = 0;
    for i in 0..count {
        let r = store.put(&message(&body, (i % 8) as i32), now_ms(start));
        assert!(r.status.is_stored(), "{r:?}");
        bytes += u64::from(r.wrote.map_or(0, |w| w.wrote_bytes));
        if i % 64 == 0 {
            let now = now_ms(start);
            flusher.drive(&mut store, now, false);
            preallocate(&mut store, &mut helpers);
            if store.poll_timeout().is_some_and(|at| at <= now) {
                store.handle_timeout(now, 12);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    flusher.stop(&mut store);
    helpers.into_iter().for_each(|h| h.join().expect("helper"));
    store.flush_all().expect("final flush");
    Figures {
        records: count,
        bytes,
        secs,
        syncs: 0,
    }
}

/// Rounds of one append per writer, then one inline sync acknowledging the round.
fn group_commit_rounds(storage: MmapStorage, writers: usize, total: u64) -> Figures {
    let (mut store, _) = MessageStore::open(storage.clone(), config(FlushDiskType::SyncFlush), 0)
        .expect("open bench store");
    let body = Bytes::from(vec![b'y'; 1024]);
    let start = Instant::now();
    let mut f = Figures::default();
    while f.records < total {
        let mut needed = 0;
        for w in 0..writers {
            let r = store.put(&message(&body, (w % 8) as i32), now_ms(start));
            needed = needed.max(r.flush_needed.expect("sync flush holds the reply"));
            f.records += 1;
        }
        while store.flushed_offset() < needed {
            let req = store
                .poll_flush(now_ms(start))
                .expect("a waiter makes a flush due");
            req.run(&storage).expect("bench sync");
            store.handle_flushed(req.up_to);
            f.syncs += 1;
        }
    }
    f.secs = start.elapsed().as_secs_f64();
    f
}

/// Writers that append again as soon as their acknowledgement arrives, while the flusher
/// thread syncs back to back: each sync covers whatever arrived during the previous one.
fn group_commit_pipelined(storage: MmapStorage, writers: usize, total: u64) -> Figures {
    let (mut store, _) = MessageStore::open(storage.clone(), config(FlushDiskType::SyncFlush), 0)
        .expect("open bench store");
    let flusher = Flusher::start(storage);
    let body = Bytes::from(vec![b'y'; 1024]);
    let start = Instant::now();
    let mut f = Figures::default();
    // Offsets each waiting writer needs, in append order.
    let mut waiting: VecDeque<u64> = VecDeque::new();
    let mut idle = writers;
    let mut acked = 0;
    while acked < total {
        let mut sent: i32 = 0;
        while idle > 0 && f.records < total {
            let r = store.put(&message(&body, sent % 8), now_ms(start));
            waiting.push_back(r.flush_needed.expect("sync flush holds the reply"));
            idle -= 1;
            sent += 1;
            f.records += 1;
        }
        f.syncs += flusher.drive(&mut store, now_ms(start), sent == 0);
        while waiting
            .front()
            .is_some_and(|&n| n <= store.flushed_offset())
        {
            waiting.pop_front();
            idle += 1;
            acked += 1;
        }
    }
    f.secs = start.elapsed().as_secs_f64();
    flusher.stop(&mut store);
    f
}

/// Writes `total` bytes of 1 KiB records and crashes (drops everything without shutdown).
/// Then times two reopens: with the checkpoint, walking every segment (CRC on); and with the
/// checkpoint removed, rebuilding consume queues and index from the whole log.
fn recovery(dir: &Path, storage: MmapStorage, total: u64) -> (Figures, Figures) {
    {
        let (mut store, _) = MessageStore::open(storage, config(FlushDiskType::AsyncFlush), 0)
            .expect("open bench store");
        let body = Bytes::from(vec![b'z'; 1024]);
        let start = Instant::now();
        for i in 0..total / 1024 {
            let r = store.put(&message(&body, (i % 8) as i32), now_ms(start));
            assert!(r.status.is_stored());
            // The driver: timer and flushes (which keep queues, index and checkpoint current).
            if i % 1024 == 0 {
                let now = now_ms(start);
                store.handle_timeout(now, 12);
                while let Some(req) = store.poll_flush(now) {
                    req.run(store.storage()).expect("bench sync");
                    store.handle_flushed(req.up_to);
                }
            }
        }
        store.flush_all().expect("flush");
    }
    let mut walk_all = config(FlushDiskType::AsyncFlush);
    walk_all.verify_segments_on_recovery = usize::MAX;
    let walk = timed_open(dir, walk_all);
    std::fs::remove_file(dir.join("checkpoint")).expect("delete checkpoint");
    std::fs::remove_dir_all(dir.join("consumequeue")).expect("delete consume queues");
    std::fs::remove_dir_all(dir.join("index")).expect("delete index");
    let rebuild = timed_open(dir, config(FlushDiskType::AsyncFlush));
    (walk, rebuild)
}

fn timed_open(dir: &Path, cfg: StoreConfig) -> Figures {
    let start = Instant::now();
    let storage = MmapStorage::open(dir).expect("reopen storage");
    let (store, report) = MessageStore::open(storage, cfg, 0).expect("recover");
    let secs = start.elapsed().as_secs_f64();
    drop(store);
    Figures {
        records: report.records_scanned,
        bytes: report.bytes_scanned,
        secs,
        syncs: 0,
    }
}
