//! The `Storage` trait: the store's only window onto files, and [`MemStorage`], an in-memory
//! implementation with a crash model for tests and the simulator.
//!
//! The store speaks in named, fixed-size files (`commitlog/00000000000000000000`,
//! `consumequeue/T/0/00000000000000000000`, `config/topics.json`, ...), always with `/` as the
//! separator and relative to the store root. Implementations decide what a name maps to:
//! memory-mapped files in `io-adapters`, a map of byte vectors here.
//!
//! Every method takes `&self`: implementations are shared handles (internally synchronised), so
//! a driver can run `sync` for group commit on another task while the store keeps appending.
//!
//! Durability contract, which [`MemStorage`] enforces and recovery relies on:
//! - bytes written by `write_at` are visible to `read_at` at once, but survive a crash only once
//!   a `sync` covering them has returned;
//! - `create`, `delete` and `rename` are durable when they return (directory entries are synced);
//! - a crash may tear the last unsynced write of a file: some prefix of it reaches the disk.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

/// Why a storage operation failed. Operating errors, not bugs: the store answers them with a
/// status (SERVICE_NOT_AVAILABLE, a refused start) and never panics on them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("{name}: no such file")]
    NotFound { name: String },
    #[error("{name}: already exists")]
    AlreadyExists { name: String },
    #[error("{name}: no space left on device")]
    NoSpace { name: String },
    #[error("{name}: access at {offset}+{len} is beyond the file's {file_len} bytes")]
    OutOfBounds {
        name: String,
        offset: u64,
        len: u64,
        file_len: u64,
    },
    #[error("{name}: I/O error: {reason}")]
    Io { name: String, reason: String },
}

/// Free and total space of the device holding the store, for the disk-full guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceInfo {
    pub total_bytes: u64,
    pub free_bytes: u64,
}

impl SpaceInfo {
    /// Fraction of the device in use, 0.0..=1.0.
    pub fn used_ratio(&self) -> f64 {
        if self.total_bytes == 0 {
            return 1.0;
        }
        1.0 - self.free_bytes as f64 / self.total_bytes as f64
    }
}

/// Named fixed-size files. See the module docs for the durability contract.
pub trait Storage {
    /// Creates `name` with `len` zero bytes (preallocated: later writes inside it cannot fail
    /// for lack of space). Fails with `AlreadyExists` if it exists, `NoSpace` if it cannot fit.
    fn create(&self, name: &str, len: u64) -> Result<(), StorageError>;
    /// Length of `name`, or `None` if it does not exist.
    fn len(&self, name: &str) -> Result<Option<u64>, StorageError>;
    /// Writes `data` at `offset`; the range must lie inside the file.
    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), StorageError>;
    /// Reads `len` bytes at `offset`. Implementations over mapped files return a view without
    /// copying.
    fn read_at(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, StorageError>;
    /// Makes `offset..offset + len` of `name` durable.
    fn sync(&self, name: &str, offset: u64, len: u64) -> Result<(), StorageError>;
    /// Names of the files directly under `dir` (no trailing `/`), sorted; empty if none.
    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError>;
    /// Names of the sub-directories directly under `dir`, sorted.
    fn list_dirs(&self, dir: &str) -> Result<Vec<String>, StorageError>;
    /// Removes `name`; removing a missing file is not an error.
    fn delete(&self, name: &str) -> Result<(), StorageError>;
    /// Atomically replaces `to` with `from` (the last step of temp-file-then-rename writes).
    fn rename(&self, from: &str, to: &str) -> Result<(), StorageError>;
    /// Space on the device holding the store.
    fn space(&self) -> Result<SpaceInfo, StorageError>;
}

/// In-memory [`Storage`] with a crash model and fault injection.
///
/// A cheap handle: clones share the same "disk", so a test or the simulator can keep one,
/// drop the store (a process kill), call [`MemStorage::crash`] and open a new store on it.
#[derive(Clone, Debug, Default)]
pub struct MemStorage {
    inner: Arc<Mutex<MemDisk>>,
}

#[derive(Debug, Default)]
struct MemDisk {
    files: BTreeMap<String, MemFile>,
    /// Total capacity in bytes; `None` means unlimited.
    capacity: Option<u64>,
    /// Fail every write and sync with an I/O error while set.
    fail_io: bool,
    /// Fail the next n-th `write_at` (1 = the next one) with an I/O error.
    fail_write_after: Option<u64>,
}

#[derive(Debug, Default, Clone)]
struct MemFile {
    /// What a reader sees now.
    current: Vec<u8>,
    /// What survives a crash.
    durable: Vec<u8>,
    /// The most recent write not yet covered by a sync: (offset, len), for tearing at crash.
    last_unsynced: Option<(u64, u64)>,
}

impl MemStorage {
    pub fn new() -> MemStorage {
        MemStorage::default()
    }

    /// A disk that holds at most `bytes` of file data.
    pub fn with_capacity(bytes: u64) -> MemStorage {
        let storage = MemStorage::default();
        storage.disk().capacity = Some(bytes);
        storage
    }

    /// Simulates power loss: every file goes back to its durable bytes. With `tear_keep`, the
    /// last unsynced write of each file instead lands partially: its first
    /// `tear_keep % (len + 1)` bytes reach the disk (a torn write).
    pub fn crash(&self, tear_keep: Option<u64>) {
        let mut disk = self.disk();
        for file in disk.files.values_mut() {
            let torn = match (tear_keep, file.last_unsynced) {
                (Some(keep), Some((offset, len))) => {
                    let keep = keep % (len + 1);
                    let start = offset as usize;
                    let end = start + keep as usize;
                    Some((start, file.current[start..end].to_vec()))
                }
                _ => None,
            };
            file.current = file.durable.clone();
            if let Some((start, bytes)) = torn {
                file.current[start..start + bytes.len()].copy_from_slice(&bytes);
                file.durable = file.current.clone();
            }
            file.last_unsynced = None;
        }
    }

    /// Sets the capacity (bytes of file data); `None` lifts the limit. Shrinking below what is
    /// used makes further creates fail with `NoSpace`, as a full disk would.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.disk().capacity = bytes;
    }

    /// While `on`, every write and sync fails with an I/O error.
    pub fn set_fail_io(&self, on: bool) {
        self.disk().fail_io = on;
    }

    /// Makes the `n`-th next `write_at` fail (1 = the very next).
    pub fn fail_write_after(&self, n: u64) {
        self.disk().fail_write_after = Some(n.max(1));
    }

    /// Flips the bits of one byte, durably (bit rot or a bad sector).
    pub fn corrupt_byte(&self, name: &str, offset: u64) -> Result<(), StorageError> {
        let mut disk = self.disk();
        let file = disk.file_mut(name)?;
        let len = file.current.len() as u64;
        if offset >= len {
            return Err(StorageError::OutOfBounds {
                name: name.to_string(),
                offset,
                len: 1,
                file_len: len,
            });
        }
        file.current[offset as usize] ^= 0xFF;
        file.durable[offset as usize] ^= 0xFF;
        Ok(())
    }

    /// Total bytes of file data held.
    pub fn used_bytes(&self) -> u64 {
        self.disk().used()
    }

    fn disk(&self) -> MutexGuard<'_, MemDisk> {
        // A panic while holding this lock is a bug in a test; recover the data anyway.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl MemDisk {
    fn used(&self) -> u64 {
        self.files.values().map(|f| f.current.len() as u64).sum()
    }

    fn file(&self, name: &str) -> Result<&MemFile, StorageError> {
        self.files.get(name).ok_or_else(|| StorageError::NotFound {
            name: name.to_string(),
        })
    }

    fn file_mut(&mut self, name: &str) -> Result<&mut MemFile, StorageError> {
        self.files
            .get_mut(name)
            .ok_or_else(|| StorageError::NotFound {
                name: name.to_string(),
            })
    }

    fn check_io(&mut self, name: &str) -> Result<(), StorageError> {
        if self.fail_io {
            return Err(StorageError::Io {
                name: name.to_string(),
                reason: "injected failure".into(),
            });
        }
        Ok(())
    }
}

/// Checks that `offset..offset + len` lies inside a file of `file_len` bytes and returns it as
/// indices, for every `Storage` implementation: one place decides what "out of bounds" is.
pub fn check_range(
    name: &str,
    offset: u64,
    len: u64,
    file_len: u64,
) -> Result<(usize, usize), StorageError> {
    let out_of_bounds = || StorageError::OutOfBounds {
        name: name.to_string(),
        offset,
        len,
        file_len,
    };
    let end = offset
        .checked_add(len)
        .filter(|end| *end <= file_len)
        .ok_or_else(out_of_bounds)?;
    let start = usize::try_from(offset).map_err(|_| out_of_bounds())?;
    let end = usize::try_from(end).map_err(|_| out_of_bounds())?;
    Ok((start, end))
}

fn children<'a>(
    names: impl Iterator<Item = &'a String>,
    dir: &str,
    want_dirs: bool,
) -> Vec<String> {
    let prefix = if dir.is_empty() {
        String::new()
    } else {
        format!("{dir}/")
    };
    let mut out: Vec<String> = names
        .filter_map(|n| n.strip_prefix(&prefix))
        .filter_map(|rest| match rest.split_once('/') {
            Some((d, _)) if want_dirs => Some(d.to_string()),
            None if !want_dirs => Some(rest.to_string()),
            _ => None,
        })
        .collect();
    out.dedup();
    out
}

impl Storage for MemStorage {
    fn create(&self, name: &str, len: u64) -> Result<(), StorageError> {
        let mut disk = self.disk();
        disk.check_io(name)?;
        if disk.files.contains_key(name) {
            return Err(StorageError::AlreadyExists {
                name: name.to_string(),
            });
        }
        if let Some(capacity) = disk.capacity {
            if disk.used().saturating_add(len) > capacity {
                return Err(StorageError::NoSpace {
                    name: name.to_string(),
                });
            }
        }
        let bytes = vec![0u8; len as usize];
        disk.files.insert(
            name.to_string(),
            MemFile {
                current: bytes.clone(),
                durable: bytes,
                last_unsynced: None,
            },
        );
        Ok(())
    }

    fn len(&self, name: &str) -> Result<Option<u64>, StorageError> {
        Ok(self.disk().files.get(name).map(|f| f.current.len() as u64))
    }

    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let mut disk = self.disk();
        disk.check_io(name)?;
        if let Some(n) = disk.fail_write_after {
            if n <= 1 {
                disk.fail_write_after = None;
                return Err(StorageError::Io {
                    name: name.to_string(),
                    reason: "injected write failure".into(),
                });
            }
            disk.fail_write_after = Some(n - 1);
        }
        let file = disk.file_mut(name)?;
        let (start, end) = check_range(name, offset, data.len() as u64, file.current.len() as u64)?;
        file.current[start..end].copy_from_slice(data);
        file.last_unsynced = Some((offset, data.len() as u64));
        Ok(())
    }

    fn read_at(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        let disk = self.disk();
        let file = disk.file(name)?;
        let (start, end) = check_range(name, offset, len, file.current.len() as u64)?;
        Ok(Bytes::copy_from_slice(&file.current[start..end]))
    }

    fn sync(&self, name: &str, offset: u64, len: u64) -> Result<(), StorageError> {
        let mut disk = self.disk();
        disk.check_io(name)?;
        let file = disk.file_mut(name)?;
        let (start, end) = check_range(name, offset, len, file.current.len() as u64)?;
        let MemFile {
            current,
            durable,
            last_unsynced,
        } = file;
        durable[start..end].copy_from_slice(&current[start..end]);
        if let Some((o, l)) = *last_unsynced {
            if o >= offset && o + l <= offset + len {
                *last_unsynced = None;
            }
        }
        Ok(())
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        Ok(children(self.disk().files.keys(), dir, false))
    }

    fn list_dirs(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        Ok(children(self.disk().files.keys(), dir, true))
    }

    fn delete(&self, name: &str) -> Result<(), StorageError> {
        let mut disk = self.disk();
        disk.check_io(name)?;
        disk.files.remove(name);
        Ok(())
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let mut disk = self.disk();
        disk.check_io(from)?;
        let mut file = disk
            .files
            .remove(from)
            .ok_or_else(|| StorageError::NotFound {
                name: from.to_string(),
            })?;
        // A rename publishes the whole file: callers sync before renaming, and what was not
        // synced is what a crash would have lost anyway.
        file.last_unsynced = None;
        disk.files.insert(to.to_string(), file);
        Ok(())
    }

    fn space(&self) -> Result<SpaceInfo, StorageError> {
        let disk = self.disk();
        let used = disk.used();
        let total = disk.capacity.unwrap_or(u64::MAX / 2);
        Ok(SpaceInfo {
            total_bytes: total,
            free_bytes: total.saturating_sub(used),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_writes_are_lost_at_crash_synced_ones_survive() {
        let s = MemStorage::new();
        s.create("commitlog/0", 16).unwrap();
        s.write_at("commitlog/0", 0, b"abcd").unwrap();
        s.sync("commitlog/0", 0, 4).unwrap();
        s.write_at("commitlog/0", 4, b"efgh").unwrap();
        assert_eq!(&s.read_at("commitlog/0", 0, 8).unwrap()[..], b"abcdefgh");
        s.crash(None);
        assert_eq!(
            &s.read_at("commitlog/0", 0, 8).unwrap()[..],
            b"abcd\0\0\0\0"
        );
    }

    #[test]
    fn a_torn_write_keeps_a_prefix() {
        let s = MemStorage::new();
        s.create("f", 8).unwrap();
        s.write_at("f", 2, b"wxyz").unwrap();
        s.crash(Some(2));
        assert_eq!(&s.read_at("f", 0, 8).unwrap()[..], b"\0\0wx\0\0\0\0");
    }

    #[test]
    fn capacity_and_faults_are_reported_not_panicked() {
        let s = MemStorage::with_capacity(10);
        s.create("a", 8).unwrap();
        assert!(matches!(
            s.create("b", 8),
            Err(StorageError::NoSpace { .. })
        ));
        assert!(matches!(
            s.write_at("a", 6, b"xyz"),
            Err(StorageError::OutOfBounds { .. })
        ));
        s.fail_write_after(1);
        assert!(matches!(
            s.write_at("a", 0, b"x"),
            Err(StorageError::Io { .. })
        ));
        s.write_at("a", 0, b"x").unwrap();
        s.set_capacity(None);
        s.create("b", 8).unwrap();
    }

    #[test]
    fn list_and_rename() {
        let s = MemStorage::new();
        s.create("consumequeue/T/0/00", 4).unwrap();
        s.create("consumequeue/T/1/00", 4).unwrap();
        s.create("config/topics.json.tmp", 2).unwrap();
        assert_eq!(s.list_dirs("consumequeue/T").unwrap(), vec!["0", "1"]);
        assert_eq!(s.list("consumequeue/T/0").unwrap(), vec!["00"]);
        s.rename("config/topics.json.tmp", "config/topics.json")
            .unwrap();
        assert_eq!(s.list("config").unwrap(), vec!["topics.json"]);
    }
}
