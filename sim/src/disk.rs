//! A broker's simulated disk: a [`MemStorage`] the harness keeps across kill and restart (it
//! calls `crash` at each kill, so only synced bytes survive; fills and frees it with
//! `set_capacity`; flips bytes with `corrupt_byte`), behind a wrapper that can stall syncs and
//! plant the `ack-before-sync` bug.
//!
//! A slow sync is modelled where the broker runs it. Flushes run off the broker's core, as
//! work the driver spawns: there the stall is charged to that work
//! (`io_adapters::driver::sim_work::stall`), which sleeps it before reporting, so the flush
//! completes late (SYNC_FLUSH replies wait, FLUSH_DISK_TIMEOUT deadlines pass) while the
//! broker and every other host keep running. A sync outside such work (recovery, shutdown)
//! still advances madsim's clock: a pause of the whole world, the old model. What it leaves
//! out: the data is durable at the start of the stall, not at some point within it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use store_core::storage::{MemStorage, SpaceInfo, Storage, StorageError};

use crate::options::Bug;
use crate::trace::Trace;

/// The disk a broker's store runs on.
#[derive(Clone)]
pub struct SimDisk {
    pub mem: MemStorage,
    bug: Option<Bug>,
    /// Commit-log syncs stall with this probability, for up to this many ms.
    slow_sync: Option<(f64, u64)>,
    /// Stalls happen only while this is set (phase one).
    slow_on: Arc<AtomicBool>,
    rng: Arc<Mutex<StdRng>>,
    trace: Trace,
}

impl SimDisk {
    pub fn new(
        bug: Option<Bug>,
        slow_sync: Option<(f64, u64)>,
        seed: u64,
        trace: Trace,
    ) -> SimDisk {
        SimDisk {
            mem: MemStorage::new(),
            bug,
            slow_sync,
            slow_on: Arc::new(AtomicBool::new(true)),
            rng: Arc::new(Mutex::new(StdRng::seed_from_u64(seed))),
            trace,
        }
    }

    /// Turns the sync stalls on or off (the heal turns them off).
    pub fn set_slow(&self, on: bool) {
        self.slow_on.store(on, Ordering::SeqCst);
    }

    fn stall(&self, name: &str) {
        let Some((p, max_ms)) = self.slow_sync else {
            return;
        };
        if !self.slow_on.load(Ordering::SeqCst) {
            return;
        }
        let ms = {
            let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
            rng.gen_bool(p).then(|| rng.gen_range(1..=max_ms))
        };
        if let Some(ms) = ms {
            self.trace.event(format!("SLOW SYNC {name}: {ms} ms"));
            let d = Duration::from_millis(ms);
            if !io_adapters::driver::sim_work::stall(d) {
                madsim::time::advance(d);
            }
        }
    }
}

impl std::fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimDisk")
            .field("mem", &self.mem)
            .field("bug", &self.bug)
            .field("slow_sync", &self.slow_sync)
            .finish_non_exhaustive()
    }
}

impl Storage for SimDisk {
    fn create(&self, name: &str, len: u64) -> Result<(), StorageError> {
        self.mem.create(name, len)
    }
    fn len(&self, name: &str) -> Result<Option<u64>, StorageError> {
        self.mem.len(name)
    }
    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        self.mem.write_at(name, offset, data)
    }
    fn read_at(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        self.mem.read_at(name, offset, len)
    }
    fn sync(&self, name: &str, offset: u64, len: u64) -> Result<(), StorageError> {
        if name.starts_with("commitlog/") {
            if self.bug == Some(Bug::AckBeforeSync) {
                // The planted bug: claim durability without providing it.
                return Ok(());
            }
            self.stall(name);
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
