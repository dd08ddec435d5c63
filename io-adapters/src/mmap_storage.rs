//! [`MmapStorage`]: the production [`Storage`], memory-mapped files under one root directory.
//!
//! Each file is mapped twice, both `MAP_SHARED` over the same page cache:
//! - a *writer* mapping behind a mutex, used only for `write_at` (a `memcpy`, no syscall);
//! - a *reader* mapping behind an `Arc`, handed out as zero-copy [`Bytes`] views by `read_at` and
//!   used by `sync` (`msync` of the range), so a group-commit sync on another task never waits
//!   for the writer's lock and appends continue while it runs.
//!
//! Files are created at their full size and preallocated with `fallocate`, so a write into the
//! mapping can never hit `ENOSPC` (which would arrive as `SIGBUS`): a full disk shows up as
//! `NoSpace` from `create`, before any byte of an acknowledged record depends on it. Creates,
//! deletes and renames fsync the directory, as the `Storage` contract requires. The root holds a
//! `lock` file with an exclusive `flock`, so two processes never share one store.
//!
//! Pages written through the writer mapping are not yet in the reader mapping's page tables, so
//! a first read would fault once per 4 KiB page (13 % of broker CPU in a backlog consume).
//! `read_at` therefore maps the reader's pages ahead in [`READ_POPULATE_CHUNK`] steps with one
//! `MADV_POPULATE_READ` (best effort; it only fills page tables, no byte changes).
//!
//! Left out: remapping or growing files (store files never change size), and any caching policy
//! beyond keeping every opened file mapped until it is deleted or the storage is dropped.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use memmap2::{Advice, MmapMut};
use store_core::storage::{check_range, SpaceInfo, Storage, StorageError};

/// Memory-mapped files under a root directory; see the module docs.
///
/// A cheap handle: clones share the mappings. Dropping the last clone unmaps every file and
/// releases the directory lock (views handed out by `read_at` keep their mapping alive).
#[derive(Clone, Debug)]
pub struct MmapStorage {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    files: Mutex<HashMap<String, Arc<MappedFile>, FnvBuild>>,
    /// Fault every page of a newly created file in (writable) before `create` returns, so the
    /// first appends into a fresh segment do not pay for page faults.
    pretouch: bool,
    /// Held for its `flock`; closing it releases the lock.
    _lock: File,
}

#[derive(Debug)]
struct MappedFile {
    len: u64,
    /// The open file; mappings do not need it, but holding it ties the descriptor's lifetime to
    /// the mappings' in one obvious place.
    _file: File,
    /// `None` for empty files, which cannot be mapped.
    maps: Option<Maps>,
}

#[derive(Debug)]
struct Maps {
    writer: Mutex<MmapMut>,
    reader: Arc<MmapMut>,
    /// The reader mapping's page tables are filled below this offset (see the module docs).
    populated: AtomicU64,
}

/// How far ahead `read_at` maps the reader's pages in one go.
const READ_POPULATE_CHUNK: u64 = 1 << 20;

/// Why [`MmapStorage::open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MmapOpenError {
    #[error("{path}: cannot create the store directory: {source}")]
    CreateRoot { path: PathBuf, source: io::Error },
    #[error("{path}: cannot open the lock file: {source}")]
    LockFile { path: PathBuf, source: io::Error },
    #[error("{path}: the store is locked by another process (or another handle in this one)")]
    Locked { path: PathBuf },
}

impl MmapStorage {
    /// Opens (creating if needed) the store directory `root` and locks it.
    pub fn open(root: impl AsRef<Path>) -> Result<MmapStorage, MmapOpenError> {
        MmapStorage::open_with(root, false)
    }

    /// As [`MmapStorage::open`]; with `pretouch`, `create` also faults in every page of the new
    /// file (`MADV_POPULATE_WRITE`), the way RocketMQ's `warmMapedFileEnable` warms segments.
    pub fn open_with(root: impl AsRef<Path>, pretouch: bool) -> Result<MmapStorage, MmapOpenError> {
        let root = root.as_ref().to_path_buf();
        std::fs::create_dir_all(&root).map_err(|source| MmapOpenError::CreateRoot {
            path: root.clone(),
            source,
        })?;
        let lock_path = root.join("lock");
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| MmapOpenError::LockFile {
                path: lock_path.clone(),
                source,
            })?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| MmapOpenError::Locked { path: root.clone() })?;
        Ok(MmapStorage {
            inner: Arc::new(Inner {
                root,
                files: Mutex::new(HashMap::default()),
                pretouch,
                _lock: lock,
            }),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    fn files(&self) -> MutexGuard<'_, HashMap<String, Arc<MappedFile>, FnvBuild>> {
        // Nothing panics while holding this lock; if something did, the map is still sound.
        self.inner
            .files
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The open mapping of `name`, opening and mapping the file on first use.
    fn mapped(&self, name: &str) -> Result<Arc<MappedFile>, StorageError> {
        let mut files = self.files();
        if let Some(file) = files.get(name) {
            return Ok(file.clone());
        }
        let path = self.path_of(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error(name, &e))?;
        let mapped = Arc::new(map_file(name, file)?);
        files.insert(name.to_string(), mapped.clone());
        Ok(mapped)
    }

    /// The path of `name`, refusing names that could escape the root.
    fn path_of(&self, name: &str) -> Result<PathBuf, StorageError> {
        let relative = Path::new(name);
        let plain = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if name.is_empty() || !plain {
            return Err(StorageError::Io {
                name: name.to_string(),
                reason: "not a plain relative name".into(),
            });
        }
        Ok(self.inner.root.join(relative))
    }

    fn dir_path(&self, dir: &str) -> Result<PathBuf, StorageError> {
        if dir.is_empty() {
            Ok(self.inner.root.clone())
        } else {
            self.path_of(dir)
        }
    }

    fn sync_parent(&self, name: &str, path: &Path) -> Result<(), StorageError> {
        let parent = path.parent().unwrap_or(&self.inner.root);
        sync_dir(parent).map_err(|e| io_error(name, &e))
    }
}

impl Storage for MmapStorage {
    fn create(&self, name: &str, len: u64) -> Result<(), StorageError> {
        let path = self.path_of(name)?;
        let mut files = self.files();
        if let Some(parent) = path.parent() {
            create_dirs_durably(&self.inner.root, parent).map_err(|e| io_error(name, &e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_error(name, &e))?;
        if let Err(e) = allocate(&file, len) {
            // Leave no half-made file behind: a later open would take it for a real one.
            let _ = std::fs::remove_file(&path);
            return Err(io_error(name, &e));
        }
        file.sync_all().map_err(|e| io_error(name, &e))?;
        self.sync_parent(name, &path)?;
        let mapped = Arc::new(map_file(name, file)?);
        files.insert(name.to_string(), mapped.clone());
        // Faulting a whole segment in takes a while: not under the table lock, so appends to
        // the current segment go on meanwhile. It changes no byte, so the store may already
        // be writing into this file.
        drop(files);
        if self.inner.pretouch {
            if let Some(maps) = &mapped.maps {
                // Best effort: older kernels lack MADV_POPULATE_WRITE; pages then fault in on
                // first write as usual.
                let _ = maps.reader.advise(Advice::PopulateWrite);
            }
        }
        Ok(())
    }

    fn len(&self, name: &str) -> Result<Option<u64>, StorageError> {
        if let Some(file) = self.files().get(name) {
            return Ok(Some(file.len));
        }
        match std::fs::metadata(self.path_of(name)?) {
            Ok(meta) if meta.is_file() => Ok(Some(meta.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(name, &e)),
        }
    }

    fn write_at(&self, name: &str, offset: u64, data: &[u8]) -> Result<(), StorageError> {
        let file = self.mapped(name)?;
        let (start, end) = check_range(name, offset, data.len() as u64, file.len)?;
        if start == end {
            return Ok(());
        }
        let Some(maps) = &file.maps else {
            return Err(out_of_bounds(name, offset, data.len() as u64, file.len));
        };
        let mut writer = maps
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match writer.get_mut(start..end) {
            Some(target) => {
                target.copy_from_slice(data);
                Ok(())
            }
            None => Err(out_of_bounds(name, offset, data.len() as u64, file.len)),
        }
    }

    fn read_at(&self, name: &str, offset: u64, len: u64) -> Result<Bytes, StorageError> {
        let file = self.mapped(name)?;
        let (start, end) = check_range(name, offset, len, file.len)?;
        if start == end {
            return Ok(Bytes::new());
        }
        let Some(maps) = &file.maps else {
            return Err(out_of_bounds(name, offset, len, file.len));
        };
        populate_for_read(maps, start as u64, end as u64, file.len);
        // `check_range` proved start..end lies inside the mapping, so `slice` cannot panic.
        Ok(Bytes::from_owner(MapView(maps.reader.clone())).slice(start..end))
    }

    fn sync(&self, name: &str, offset: u64, len: u64) -> Result<(), StorageError> {
        let file = self.mapped(name)?;
        let (start, end) = check_range(name, offset, len, file.len)?;
        if start == end {
            return Ok(());
        }
        let Some(maps) = &file.maps else {
            return Err(out_of_bounds(name, offset, len, file.len));
        };
        // msync(MS_SYNC) on the reader mapping writes back the file's dirty pages in the range,
        // whichever mapping dirtied them (both share the page cache), without the writer lock.
        maps.reader
            .flush_range(start, end - start)
            .map_err(|e| io_error(name, &e))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        list_entries(&self.dir_path(dir)?, dir, false)
    }

    fn list_dirs(&self, dir: &str) -> Result<Vec<String>, StorageError> {
        list_entries(&self.dir_path(dir)?, dir, true)
    }

    fn delete(&self, name: &str) -> Result<(), StorageError> {
        let path = self.path_of(name)?;
        let mut files = self.files();
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            // Nothing to remove, so no directory entry to make durable either (the directory
            // itself may not exist yet).
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                files.remove(name);
                return Ok(());
            }
            Err(e) => return Err(io_error(name, &e)),
        }
        // Views handed out earlier keep the unlinked file's pages alive until they are dropped.
        files.remove(name);
        self.sync_parent(name, &path)
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let from_path = self.path_of(from)?;
        let to_path = self.path_of(to)?;
        let mut files = self.files();
        if let Some(parent) = to_path.parent() {
            create_dirs_durably(&self.inner.root, parent).map_err(|e| io_error(to, &e))?;
        }
        std::fs::rename(&from_path, &to_path).map_err(|e| io_error(from, &e))?;
        files.remove(to);
        if let Some(mapped) = files.remove(from) {
            files.insert(to.to_string(), mapped);
        }
        self.sync_parent(to, &to_path)?;
        if from_path.parent() != to_path.parent() {
            self.sync_parent(from, &from_path)?;
        }
        Ok(())
    }

    fn space(&self) -> Result<SpaceInfo, StorageError> {
        let stat = rustix::fs::statvfs(&self.inner.root).map_err(|e| StorageError::Io {
            name: self.inner.root.display().to_string(),
            reason: e.to_string(),
        })?;
        // As `df` counts: blocks reserved for the superuser are neither used nor available,
        // so they are left out of the total and use matches df's Use%.
        let used = stat.f_blocks.saturating_sub(stat.f_bfree);
        Ok(SpaceInfo {
            total_bytes: used
                .saturating_add(stat.f_bavail)
                .saturating_mul(stat.f_frsize),
            free_bytes: stat.f_bavail.saturating_mul(stat.f_frsize),
        })
    }
}

/// An FNV-style hash, eight bytes a step, for the name → mapping table: every storage call
/// looks a name up (two per indexed key), and SipHash's flood resistance buys nothing for
/// names the store itself makes. Only this process's table uses it; nothing stored depends on it.
#[derive(Debug, Default, Clone, Copy)]
struct FnvBuild;

impl BuildHasher for FnvBuild {
    type Hasher = Fnv;

    fn build_hasher(&self) -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

struct Fnv(u64);

impl Fnv {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .wrapping_mul(0x0100_0000_01b3)
            .rotate_left(29);
    }
}

impl Hasher for Fnv {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.mix(u64::from_le_bytes(w));
        }
        let tail = words.remainder();
        if !tail.is_empty() {
            let mut w = [0u8; 8];
            if let Some(head) = w.get_mut(..tail.len()) {
                head.copy_from_slice(tail);
            }
            // The length keeps "a" and "a\0" apart.
            self.mix(u64::from_le_bytes(w) ^ ((tail.len() as u64) << 59));
        }
    }

    fn finish(&self) -> u64 {
        // Spread the high bits (the table indexes by the low ones, and the control bytes by
        // the top seven) over the whole word.
        let h = self.0 ^ (self.0 >> 32);
        h.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

/// A zero-copy view's owner: keeps the reader mapping alive for as long as a `Bytes` uses it.
struct MapView(Arc<MmapMut>);

impl AsRef<[u8]> for MapView {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn map_file(name: &str, file: File) -> Result<MappedFile, StorageError> {
    let len = file.metadata().map_err(|e| io_error(name, &e))?.len();
    if len == 0 {
        return Ok(MappedFile {
            len,
            _file: file,
            maps: None,
        });
    }
    // SAFETY: `map_mut` is unsafe because the mapped bytes may change or vanish underneath the
    // slices Rust hands out. Here: the directory is locked with `flock` against other
    // processes; store files are created at full size and never truncated or resized while
    // mapped (`delete` unlinks, which keeps mapped pages valid); and the store writes only
    // bytes it has not yet handed out as views (appends past the readable end, recovery
    // before any read). Both mappings are `MAP_SHARED` over the same page cache.
    let writer = unsafe { MmapMut::map_mut(&file) }.map_err(|e| io_error(name, &e))?;
    // SAFETY: as above; this second mapping is only ever read and msync'ed.
    let reader = unsafe { MmapMut::map_mut(&file) }.map_err(|e| io_error(name, &e))?;
    Ok(MappedFile {
        len,
        _file: file,
        maps: Some(Maps {
            writer: Mutex::new(writer),
            reader: Arc::new(reader),
            populated: AtomicU64::new(0),
        }),
    })
}

/// Fills the reader mapping's page tables for `start..end` and the chunk after it, unless an
/// earlier read already did: reads of a segment mostly move forward (consumers catching up), so
/// one `madvise` per [`READ_POPULATE_CHUNK`] replaces a page fault per page.
fn populate_for_read(maps: &Maps, start: u64, end: u64, file_len: u64) {
    if end <= maps.populated.load(Ordering::Relaxed) {
        return;
    }
    let from = start - start % READ_POPULATE_CHUNK;
    let to = (end - end % READ_POPULATE_CHUNK + READ_POPULATE_CHUNK).min(file_len);
    maps.populated.fetch_max(to, Ordering::Relaxed);
    if let (Ok(offset), Ok(len)) = (usize::try_from(from), usize::try_from(to - from)) {
        // Best effort: without MADV_POPULATE_READ (kernels before 5.14) pages fault in as usual.
        let _ = maps.reader.advise_range(Advice::PopulateRead, offset, len);
    }
}

/// Sizes `file` to `len` bytes and reserves its blocks, so writes through a mapping cannot fail
/// for lack of space later.
fn allocate(file: &File, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    match rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len) {
        Ok(()) => Ok(()),
        // Filesystems without fallocate: fall back to a sparse file, as RocketMQ itself does.
        Err(rustix::io::Errno::OPNOTSUPP) | Err(rustix::io::Errno::NOSYS) => file.set_len(len),
        Err(e) => Err(e.into()),
    }
}

/// `create_dir_all` that also fsyncs each directory it creates into its parent.
fn create_dirs_durably(root: &Path, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        if parent != root && parent.starts_with(root) {
            create_dirs_durably(root, parent)?;
        }
    }
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    sync_dir(dir.parent().unwrap_or(root))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn list_entries(path: &Path, dir: &str, want_dirs: bool) -> Result<Vec<String>, StorageError> {
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_error(dir, &e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| io_error(dir, &e))?;
        let kind = entry.file_type().map_err(|e| io_error(dir, &e))?;
        if kind.is_dir() != want_dirs || !(kind.is_dir() || kind.is_file()) {
            continue;
        }
        // Names the store did not write (not UTF-8) are not store files.
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

fn out_of_bounds(name: &str, offset: u64, len: u64, file_len: u64) -> StorageError {
    StorageError::OutOfBounds {
        name: name.to_string(),
        offset,
        len,
        file_len,
    }
}

fn io_error(name: &str, e: &io::Error) -> StorageError {
    let name = name.to_string();
    match e.kind() {
        io::ErrorKind::NotFound => StorageError::NotFound { name },
        io::ErrorKind::AlreadyExists => StorageError::AlreadyExists { name },
        io::ErrorKind::StorageFull => StorageError::NoSpace { name },
        _ if e.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) => {
            StorageError::NoSpace { name }
        }
        _ => StorageError::Io {
            name,
            reason: e.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_write_read_sync_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let s = MmapStorage::open(dir.path()).unwrap();
        s.create("commitlog/00000000000000000000", 4096).unwrap();
        assert_eq!(s.len("commitlog/00000000000000000000").unwrap(), Some(4096));
        s.write_at("commitlog/00000000000000000000", 10, b"hello")
            .unwrap();
        let view = s.read_at("commitlog/00000000000000000000", 8, 9).unwrap();
        assert_eq!(&view[..], b"\0\0hello\0\0");
        s.sync("commitlog/00000000000000000000", 0, 4096).unwrap();
        assert!(matches!(
            s.create("commitlog/00000000000000000000", 1),
            Err(StorageError::AlreadyExists { .. })
        ));
        assert!(matches!(
            s.write_at("commitlog/00000000000000000000", 4094, b"abc"),
            Err(StorageError::OutOfBounds { .. })
        ));
        assert!(matches!(
            s.read_at("nope", 0, 1),
            Err(StorageError::NotFound { .. })
        ));
    }

    #[test]
    fn a_view_sees_later_writes_past_it_and_survives_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = MmapStorage::open(dir.path()).unwrap();
        s.create("f", 8192).unwrap();
        s.write_at("f", 0, b"abcd").unwrap();
        let view = s.read_at("f", 0, 4).unwrap();
        s.write_at("f", 4096, b"zz").unwrap();
        assert_eq!(&s.read_at("f", 4096, 2).unwrap()[..], b"zz");
        s.delete("f").unwrap();
        assert_eq!(&view[..], b"abcd");
        assert_eq!(s.len("f").unwrap(), None);
        s.delete("f").unwrap();
    }

    #[test]
    fn data_survives_reopen_and_listing_is_sorted() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = MmapStorage::open(dir.path()).unwrap();
            s.create("consumequeue/T/1/00", 20).unwrap();
            s.create("consumequeue/T/0/00", 20).unwrap();
            s.create("config/topics.json.tmp", 3).unwrap();
            s.write_at("config/topics.json.tmp", 0, b"{ }").unwrap();
            s.sync("config/topics.json.tmp", 0, 3).unwrap();
            s.rename("config/topics.json.tmp", "config/topics.json")
                .unwrap();
            assert!(matches!(
                MmapStorage::open(dir.path()),
                Err(MmapOpenError::Locked { .. })
            ));
        }
        let s = MmapStorage::open(dir.path()).unwrap();
        assert_eq!(s.list_dirs("consumequeue/T").unwrap(), vec!["0", "1"]);
        assert_eq!(s.list("consumequeue/T/0").unwrap(), vec!["00"]);
        assert_eq!(s.list("config").unwrap(), vec!["topics.json"]);
        assert_eq!(s.list("missing").unwrap(), Vec::<String>::new());
        assert_eq!(&s.read_at("config/topics.json", 0, 3).unwrap()[..], b"{ }");
    }

    #[test]
    fn names_cannot_escape_the_root_and_space_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let s = MmapStorage::open_with(dir.path(), true).unwrap();
        assert!(matches!(
            s.create("../evil", 1),
            Err(StorageError::Io { .. })
        ));
        assert!(matches!(s.create("/abs", 1), Err(StorageError::Io { .. })));
        s.create("warm", 1 << 20).unwrap();
        let space = s.space().unwrap();
        assert!(space.total_bytes > 0);
        assert!(space.free_bytes <= space.total_bytes);
        s.create("empty", 0).unwrap();
        assert_eq!(s.read_at("empty", 0, 0).unwrap().len(), 0);
    }
}
