//! A broker's simulated disk: a [`MemStorage`] the harness keeps across kill and restart (it
//! calls `crash` at each kill, so only synced bytes survive), behind a wrapper that can plant
//! the `ack-before-sync` bug.

use bytes::Bytes;
use store_core::storage::{MemStorage, SpaceInfo, Storage, StorageError};

use crate::options::Bug;

/// The disk a broker's store runs on.
#[derive(Clone, Debug)]
pub struct SimDisk {
    pub mem: MemStorage,
    bug: Option<Bug>,
}

impl SimDisk {
    pub fn new(bug: Option<Bug>) -> SimDisk {
        SimDisk {
            mem: MemStorage::new(),
            bug,
        }
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
        if self.bug == Some(Bug::AckBeforeSync) && name.starts_with("commitlog/") {
            // The planted bug: claim durability without providing it.
            return Ok(());
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
