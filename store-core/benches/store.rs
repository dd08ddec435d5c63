//! Message store benchmark over the in-memory `MemStorage`: the cost of the store's own logic
//! (encode, place, dispatch, flush bookkeeping, recovery walk), without a disk.
//!
//! `cargo bench -p store-core --bench store`. Sections:
//! - append throughput for 128 B, 1 KiB and 4 KiB bodies under ASYNC_FLUSH, a flusher thread
//!   syncing in the background as a driver would;
//! - SYNC_FLUSH group commit with 1, 16 and 256 concurrent writers, simulated as rounds of one
//!   append per writer followed by one sync that acknowledges them all;
//! - recovery: the time to walk (and CRC-check) the whole commit log after a crash with no
//!   usable checkpoint, per GiB.
//!
//! The disk-backed numbers (what the targets are about) come from the same benchmark
//! over `MmapStorage`: `cargo bench -p io-adapters --bench store`.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use store_core::flush::FlushDiskType;
use store_core::format::record::MessageRecord;
use store_core::storage::{MemStorage, Storage};
use store_core::store::{MessageStore, StoreConfig};

/// MemStorage keeps two copies of every file (current and durable), so segments are kept
/// smaller than the 1 GiB default.
const SEGMENT: u64 = 64 * 1024 * 1024;

fn main() {
    let mb: u64 = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    println!(
        "store-core bench over MemStorage ({mb} MiB per run, {} MiB segments)",
        SEGMENT >> 20
    );
    // `BENCH_ONLY=append|sync|recovery` runs one section.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let run = |section: &str| only.is_empty() || only == section;
    for size in [128usize, 1024, 4096].into_iter().filter(|_| run("append")) {
        let r = append_async(MemStorage::new(), size, mb << 20);
        println!(
            "append async {size:>5} B: {:>9.0} rec/s {:>8.1} MB/s",
            r.records as f64 / r.secs,
            r.bytes as f64 / r.secs / 1e6
        );
    }
    for writers in [1usize, 16, 256].into_iter().filter(|_| run("sync")) {
        let r = group_commit(MemStorage::new(), 1024, writers, (mb << 20) / 4);
        println!(
            "sync flush 1 KiB, {writers:>3} writers: {:>9.0} rec/s ({} syncs)",
            r.records as f64 / r.secs,
            r.syncs
        );
    }
    if !run("recovery") {
        return;
    }
    let disk = MemStorage::new();
    let r = recovery(disk, mb << 20);
    println!(
        "recovery (full walk, CRC on): {:.1} MB in {:.3} s = {:.0} MB/s, {:.2} s/GiB",
        r.bytes as f64 / 1e6,
        r.secs,
        r.bytes as f64 / r.secs / 1e6,
        r.secs * (1u64 << 30) as f64 / r.bytes as f64
    );
}

struct Figures {
    records: u64,
    bytes: u64,
    secs: f64,
    syncs: u64,
}

fn config(flush: FlushDiskType) -> StoreConfig {
    // Small consume-queue and index files: MemStorage holds every file twice in memory.
    let mut cfg = StoreConfig::compact(SEGMENT);
    cfg.flush.flush_disk_type = flush;
    cfg
}

fn message(body: &Bytes, queue: i32, props: &'static str) -> MessageRecord {
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
        properties: Bytes::from_static(props.as_bytes()),
    }
}

const PROPS: &str =
    "UNIQ_KEY\u{1}0A0000010000000000000000000000\u{2}TAGS\u{1}bench\u{2}WAIT\u{1}true\u{2}";

fn now_ms(start: Instant) -> u64 {
    1_700_000_000_000 + start.elapsed().as_millis() as u64
}

/// Appends `total` bytes of bodies of `size` under ASYNC_FLUSH; a thread runs the flushes.
fn append_async<S: Storage + Clone + Send + Sync + 'static>(
    storage: S,
    size: usize,
    total: u64,
) -> Figures {
    let (mut store, _) = MessageStore::open(storage.clone(), config(FlushDiskType::AsyncFlush), 0)
        .expect("open bench store");
    let (req_tx, req_rx) = mpsc::channel::<store_core::flush::FlushRequest>();
    let (done_tx, done_rx) = mpsc::channel::<u64>();
    let flusher_storage = storage.clone();
    let flusher = std::thread::spawn(move || {
        for req in req_rx {
            req.run(&flusher_storage).expect("bench sync");
            let _ = done_tx.send(req.up_to);
        }
    });
    let body = Bytes::from(vec![b'x'; size]);
    let count = (total / size as u64).max(1);
    let start = Instant::now();
    let mut bytes = 0;
    for i in 0..count {
        let r = store.put(&message(&body, (i % 8) as i32, PROPS), now_ms(start));
        assert!(r.status.is_stored(), "{r:?}");
        bytes += u64::from(r.wrote.map_or(0, |w| w.wrote_bytes));
        if i % 64 == 0 {
            drive(&mut store, &req_tx, &done_rx, now_ms(start));
            while let Some(seg) = store.poll_preallocate() {
                let _ = storage.create(&seg.name, seg.len);
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    drop(req_tx);
    flusher.join().expect("flusher thread");
    while let Ok(up_to) = done_rx.try_recv() {
        store.handle_flushed(up_to);
    }
    store.flush_all().expect("final flush");
    Figures {
        records: count,
        bytes,
        secs,
        syncs: 0,
    }
}

fn drive<S: Storage + Clone>(
    store: &mut MessageStore<S>,
    req_tx: &mpsc::Sender<store_core::flush::FlushRequest>,
    done_rx: &mpsc::Receiver<u64>,
    now: u64,
) {
    while let Ok(up_to) = done_rx.try_recv() {
        store.handle_flushed(up_to);
    }
    if let Some(req) = store.poll_flush(now) {
        req_tx.send(req).expect("flusher alive");
    }
}

/// SYNC_FLUSH with `writers` producers each waiting for its acknowledgement: rounds of one
/// append per writer, then one sync covering the round.
fn group_commit<S: Storage + Clone>(
    storage: S,
    size: usize,
    writers: usize,
    total: u64,
) -> Figures {
    let (mut store, _) = MessageStore::open(storage.clone(), config(FlushDiskType::SyncFlush), 0)
        .expect("open bench store");
    let body = Bytes::from(vec![b'y'; size]);
    let rounds = (total / (size as u64 * writers as u64)).clamp(20, 20_000);
    let start = Instant::now();
    let (mut records, mut syncs) = (0, 0);
    for _ in 0..rounds {
        let mut needed = 0;
        for w in 0..writers {
            let r = store.put(&message(&body, (w % 8) as i32, PROPS), now_ms(start));
            needed = needed.max(r.flush_needed.expect("sync flush holds the reply"));
            records += 1;
        }
        while store.flushed_offset() < needed {
            let req = store
                .poll_flush(now_ms(start))
                .expect("a waiter makes a flush due");
            req.run(&storage).expect("bench sync");
            store.handle_flushed(req.up_to);
            syncs += 1;
        }
        while let Some(seg) = store.poll_preallocate() {
            let _ = storage.create(&seg.name, seg.len);
        }
    }
    Figures {
        records,
        bytes: 0,
        secs: start.elapsed().as_secs_f64(),
        syncs,
    }
}

/// Writes `total` bytes of 1 KiB records, "crashes" (drops the store without shutdown),
/// removes the checkpoint so recovery must walk everything, and times the reopen.
fn recovery(disk: MemStorage, total: u64) -> Figures {
    {
        let (mut store, _) = MessageStore::open(disk.clone(), config(FlushDiskType::AsyncFlush), 0)
            .expect("open bench store");
        let body = Bytes::from(vec![b'z'; 1024]);
        for i in 0..total / 1024 {
            let r = store.put(&message(&body, (i % 8) as i32, PROPS), i);
            assert!(r.status.is_stored());
        }
        store.flush_all().expect("flush");
    }
    disk.delete("checkpoint").expect("delete checkpoint");
    let start = Instant::now();
    let (_store, report) =
        MessageStore::open(disk, config(FlushDiskType::AsyncFlush), 0).expect("recover");
    let secs = start
        .elapsed()
        .as_secs_f64()
        .max(Duration::from_micros(1).as_secs_f64());
    Figures {
        records: report.records_scanned,
        bytes: report.bytes_scanned,
        secs,
        syncs: 0,
    }
}
