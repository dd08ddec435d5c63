//! Tests of flush requests run the way a driver runs them off the store's task: the request
//! carries every sync and the metadata writes after them, completion is bookkeeping only, and
//! the checkpoint never claims more than the syncs made durable.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::*;
use crate::checkpoint::CHECKPOINT_FILE;
use crate::flush::FlushDiskType;
use crate::format::record::MessageRecord;
use crate::storage::{MemStorage, SpaceInfo};
use crate::store::filter::AcceptAll;

/// A [`MemStorage`] that logs every write and sync as `(kind, name)`, and can fail syncs of
/// files whose name starts with a prefix.
#[derive(Clone, Debug, Default)]
struct Logged {
    mem: MemStorage,
    log: Arc<Mutex<Vec<(&'static str, String)>>>,
    fail_sync_of: Arc<Mutex<Option<&'static str>>>,
}

impl Logged {
    fn take_log(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

impl Storage for Logged {
    fn create(&self, name: &str, len: u64) -> Result<(), StorageError> {
        self.mem.create(name, len)
    }
    fn len(&self, name: &str) -> Result<Option<u64>, StorageError> {
        self.mem.len(name)
    }
    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.log.lock().unwrap().push(("write", name.to_string()));
        self.mem.write_at(name, offset, data)
    }
    fn read_at(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        self.mem.read_at(name, offset, len)
    }
    fn sync(&self, name: &str, offset: u64, len: u64) -> Result<(), StorageError> {
        self.log.lock().unwrap().push(("sync", name.to_string()));
        if let Some(prefix) = *self.fail_sync_of.lock().unwrap() {
            if name.starts_with(prefix) {
                return Err(StorageError::Io {
                    name: name.to_string(),
                    reason: "injected".into(),
                });
            }
        }
        self.mem.sync(name, offset, len)
    }
    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        self.mem.list(dir)
    }
    fn list_dirs(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        self.mem.list_dirs(dir)
    }
    fn delete(&self, name: &str) -> Result<(), StorageError> {
        self.mem.delete(name)
    }
    fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        self.mem.rename(from, to)
    }
    fn space(&self) -> Result<SpaceInfo, StorageError> {
        self.mem.space()
    }
}

fn msg(topic: &str, body: &[u8], keys: &str) -> MessageRecord {
    super::tests::msg(topic, 0, body, &format!("KEYS\u{1}{keys}\u{2}"))
}

fn config() -> StoreConfig {
    let mut cfg = StoreConfig::compact(64 * 1024);
    cfg.flush.flush_disk_type = FlushDiskType::SyncFlush;
    cfg
}

fn open(disk: &Logged) -> (MessageStore<Logged>, RecoveryReport) {
    MessageStore::open(disk.clone(), config(), 1_000).unwrap()
}

/// A request carrying the consume-queue part, once the consume-queue interval has passed.
fn cq_request(store: &mut MessageStore<Logged>, now: u64) -> FlushRequest {
    let req = store.poll_flush(now).unwrap();
    assert!(req.dispatch.is_some(), "the consume-queue part is due");
    req
}

#[test]
fn the_checkpoint_and_index_header_are_written_after_every_sync_and_completion_touches_no_file() {
    let disk = Logged::default();
    let (mut store, _) = open(&disk);
    assert!(store.put(&msg("F", b"a", "k1"), 1_000).status.is_stored());
    let req = cq_request(&mut store, 60_000);
    disk.take_log();
    req.run(&disk).unwrap();
    let log = disk.take_log();
    let first_meta_write = log
        .iter()
        .position(|(kind, _)| *kind == "write")
        .expect("the request writes metadata");
    let last_data_sync = log
        .iter()
        .rposition(|(kind, name)| {
            *kind == "sync" && (name.starts_with("commitlog/") || name.starts_with("consumequeue/"))
        })
        .expect("the request syncs the log and the queue");
    assert!(last_data_sync < first_meta_write, "{log:?}");
    assert!(log
        .iter()
        .any(|(kind, name)| *kind == "write" && name == CHECKPOINT_FILE));
    assert!(log
        .iter()
        .any(|(kind, name)| *kind == "write" && name.starts_with("index/")));
    store.handle_flushed(req.up_to);
    assert!(disk.take_log().is_empty(), "completion is bookkeeping only");
    // A clean checkpoint: nothing is re-dispatched after a crash.
    drop(store);
    disk.mem.crash(None);
    let (store, report) = open(&disk);
    assert_eq!(report.records_redispatched, 0);
    assert_eq!(
        store.query_by_key("F", "k1", 4, 0, u64::MAX).records.len(),
        1
    );
}

#[test]
fn a_failed_consume_queue_sync_leaves_the_checkpoint_behind_so_a_crash_loses_nothing() {
    let disk = Logged::default();
    let (mut store, _) = open(&disk);
    // The commit log is durable (group commit), the queue unit only in the page cache.
    let put = store.put(&msg("F", b"a", "k1"), 1_000);
    let req = store.poll_flush(1_000).unwrap();
    assert!(req.dispatch.is_none());
    req.run(&disk).unwrap();
    store.handle_flushed(req.up_to);
    assert!(store.flushed_offset() >= put.flush_needed.unwrap());
    let req = cq_request(&mut store, 60_000);
    *disk.fail_sync_of.lock().unwrap() = Some("consumequeue/");
    let err = req.run(&disk).unwrap_err();
    store.handle_flush_failed(&err);
    *disk.fail_sync_of.lock().unwrap() = None;
    drop(store);
    disk.mem.crash(None);
    // Had the checkpoint been written before the syncs, it would claim the unit durable and
    // recovery would not rebuild it: the message would be unreachable.
    let (store, report) = open(&disk);
    assert_eq!(report.records_redispatched, 1);
    let got = store.get_messages("F", 0, 0, 32, 1 << 20, &AcceptAll);
    assert_eq!(got.records.len(), 1);
}

#[test]
fn a_job_made_before_a_store_side_checkpoint_write_does_not_overwrite_it() {
    let disk = Logged::default();
    let (mut store, _) = open(&disk);
    assert!(store.put(&msg("F", b"a", "k1"), 1_000).status.is_stored());
    let req = cq_request(&mut store, 60_000);
    // The store writes newer metadata itself while the job is in flight.
    assert!(store.put(&msg("F", b"b", "k2"), 60_001).status.is_stored());
    store.flush_all().unwrap();
    let newer = Checkpoint::load(&disk).unwrap();
    req.run(&disk).unwrap();
    assert_eq!(
        Checkpoint::load(&disk).unwrap(),
        newer,
        "the older snapshot stays unwritten"
    );
    store.handle_flushed(req.up_to);
    drop(store);
    disk.mem.crash(None);
    let (store, _) = open(&disk);
    assert_eq!(
        store.query_by_key("F", "k2", 4, 0, u64::MAX).records.len(),
        1
    );
    let got = store.get_messages("F", 0, 0, 32, 1 << 20, &AcceptAll);
    assert_eq!(got.records.len(), 2);
}
