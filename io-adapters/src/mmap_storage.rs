//! [`MmapStorage`]: the production [`Storage`], memory-mapped files under one root directory.
//!
//! Each file is mapped twice, both `MAP_SHARED` over the same page cache:
//! - a *writer* mapping, used only for `write_at` (a `memcpy` under a per-file lock, no
//!   syscall), whose pages a background thread faults in ahead of the appends (see
//!   [`crate::prefault`]: page faults under that `memcpy` were a fifth of the broker's CPU);
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
//! Every call looks its file up by name. The table is a mutex-guarded map, but each thread
//! first checks a small cache of the files it used last ([`RECENT_SLOTS`] entries holding
//! `Weak` references): a hit costs a few compares and one reference-count increment instead of
//! a lock, a hash and a probe (4-8 % of broker CPU before). `create`, `delete` and `rename`
//! bump the storage's epoch under the table lock, which invalidates every thread's entries for
//! it, so no thread is handed a deleted or renamed file's mapping after the call that removed
//! it returned. The entries are `Weak` so that a thread that goes idle keeps no deleted file
//! (and its disk space) alive.
//!
//! Left out: remapping or growing files (store files never change size), and any caching policy
//! beyond keeping every opened file mapped until it is deleted or the storage is dropped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;
use memmap2::{Advice, MmapMut, MmapRaw};
use store_core::storage::{check_range, SpaceInfo, Storage, StorageError};

use crate::prefault::{Frontier, Prefaulter};

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
    /// Tells this storage's entries in the per-thread caches from other storages'.
    id: u64,
    /// Bumped under the `files` lock whenever a name stops (or starts) meaning a mapping;
    /// cached entries of an older epoch are not used.
    epoch: AtomicU64,
    /// Populates writer mappings ahead of the appends (see [`crate::prefault`]).
    prefaulter: Prefaulter,
    /// Queue every page of a newly created file for population, not just its first window.
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
    /// Written only under `writing`; shared with the prefault thread, which only `madvise`s it.
    writer: Arc<MmapRaw>,
    writing: Mutex<()>,
    /// How far the writer mapping has been queued for population.
    prefaulted: Frontier,
    reader: Arc<MmapMut>,
    /// The reader mapping's page tables are filled below this offset (see the module docs).
    populated: AtomicU64,
}

/// How far ahead `read_at` maps the reader's pages in one go.
const READ_POPULATE_CHUNK: u64 = 1 << 20;

/// Files each thread remembers per lookup cache: a message touches the commit log, one or two
/// consume queues and an index file; a few senders spread over several queues.
const RECENT_SLOTS: usize = 16;

/// Ids for [`Inner::id`]; never reused within the process.
static NEXT_STORAGE_ID: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static RECENT: RefCell<Recent> = const {
        RefCell::new(Recent {
            slots: [const { None }; RECENT_SLOTS],
            next: 0,
        })
    };
}

/// One thread's most recently used files, of any storage; see the module docs.
struct Recent {
    slots: [Option<RecentFile>; RECENT_SLOTS],
    /// The slot a new entry replaces (round robin).
    next: usize,
}

struct RecentFile {
    storage: u64,
    epoch: u64,
    name: Box<str>,
    file: Weak<MappedFile>,
}

impl Recent {
    fn find(&self, storage: u64, epoch: u64, name: &str) -> Option<Arc<MappedFile>> {
        let slot = self
            .slots
            .iter()
            .flatten()
            .find(|s| s.storage == storage && *s.name == *name)?;
        if slot.epoch == epoch {
            slot.file.upgrade()
        } else {
            None
        }
    }

    fn remember(&mut self, storage: u64, epoch: u64, name: &str, file: &Arc<MappedFile>) {
        let entry = RecentFile {
            storage,
            epoch,
            name: name.into(),
            file: Arc::downgrade(file),
        };
        // A stale entry for the same name is replaced, so a name never occupies two slots.
        let same = self
            .slots
            .iter_mut()
            .flatten()
            .find(|s| s.storage == storage && *s.name == *name);
        if let Some(same) = same {
            *same = entry;
            return;
        }
        let at = self.next % RECENT_SLOTS;
        self.next = (at + 1) % RECENT_SLOTS;
        if let Some(slot) = self.slots.get_mut(at) {
            *slot = Some(entry);
        }
    }
}

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

    /// As [`MmapStorage::open`]; with `pretouch`, `create` queues every page of the new file for
    /// population (not only the first window), the way RocketMQ's `warmMapedFileEnable` warms
    /// whole segments off the write path. Every page is then dirtied, so written back at least
    /// once, zeros where the store has not written yet.
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
                id: NEXT_STORAGE_ID.fetch_add(1, Ordering::Relaxed),
                epoch: AtomicU64::new(0),
                prefaulter: Prefaulter::default(),
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

    /// Marks every cached lookup of this storage stale; called with the `files` lock held,
    /// after the table changed.
    fn invalidate_cached(&self) {
        self.inner.epoch.fetch_add(1, Ordering::Release);
    }

    /// The open mapping of `name`, opening and mapping the file on first use; from this
    /// thread's cache when it is current (see the module docs).
    fn mapped(&self, name: &str) -> Result<Arc<MappedFile>, StorageError> {
        let epoch = self.inner.epoch.load(Ordering::Acquire);
        // `try_`: a thread being torn down (or a re-entrant call) just takes the table path.
        let cached = RECENT
            .try_with(|r| r.try_borrow().ok()?.find(self.inner.id, epoch, name))
            .ok()
            .flatten();
        match cached {
            Some(file) => Ok(file),
            None => self.mapped_and_remembered(name),
        }
    }

    /// [`MmapStorage::mapped`] from the table, remembered in this thread's cache; out of line
    /// because the cached path is the common one.
    #[cold]
    #[inline(never)]
    fn mapped_and_remembered(&self, name: &str) -> Result<Arc<MappedFile>, StorageError> {
        let id = self.inner.id;
        let (file, epoch) = self.mapped_from_table(name)?;
        let _ = RECENT.try_with(|r| {
            if let Ok(mut recent) = r.try_borrow_mut() {
                recent.remember(id, epoch, name, &file);
            }
        });
        Ok(file)
    }

    /// [`MmapStorage::mapped`] without the cache, with the epoch the answer belongs to.
    fn mapped_from_table(&self, name: &str) -> Result<(Arc<MappedFile>, u64), StorageError> {
        let mut files = self.files();
        // Read under the lock that every bump is made under: the answer is current as of it.
        let epoch = self.inner.epoch.load(Ordering::Relaxed);
        if let Some(file) = files.get(name) {
            return Ok((file.clone(), epoch));
        }
        let path = self.path_of(name)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_error(name, &e))?;
        let mapped = Arc::new(map_file(name, file)?);
        files.insert(name.to_string(), mapped.clone());
        Ok((mapped, epoch))
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
        // Nothing cached can name a file that was not in the table; bumped anyway so that
        // "the table changed" always means "caches are stale".
        self.invalidate_cached();
        drop(files);
        if let Some(maps) = &mapped.maps {
            // On the prefault thread, like RocketMQ's warm-up off the write path: the store
            // may already be appending into this file (populating changes no byte).
            let ahead = if self.inner.pretouch {
                maps.prefaulted.rest(mapped.len)
            } else {
                maps.prefaulted.first(mapped.len)
            };
            if let Some(ahead) = ahead {
                self.inner.prefaulter.request(&maps.writer, ahead);
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
        if end > maps.writer.len() || end - start != data.len() {
            return Err(out_of_bounds(name, offset, data.len() as u64, file.len));
        }
        {
            // Nothing panics while it is held; a poisoned lock guards nothing broken.
            let _writing = maps.writing.lock().unwrap_or_else(PoisonError::into_inner);
            // SAFETY: `start..end` lies inside the writer mapping (checked just above), which
            // stays mapped while `file` is held; the lock makes this the only write through
            // it, and no Rust reference into the writer mapping exists (it hands out raw
            // pointers only). The bytes written are ones the store has not handed out as
            // views yet (see `map_file`). `copy` rather than `copy_nonoverlapping`: `data`
            // may be a view of this very file through the reader mapping.
            unsafe {
                std::ptr::copy(
                    data.as_ptr(),
                    maps.writer.as_mut_ptr().add(start),
                    data.len(),
                );
            }
        }
        if let Some(ahead) = maps.prefaulted.ahead(end as u64, file.len) {
            self.inner.prefaulter.request(&maps.writer, ahead);
        }
        Ok(())
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
                self.invalidate_cached();
                return Ok(());
            }
            Err(e) => return Err(io_error(name, &e)),
        }
        // Views handed out earlier keep the unlinked file's pages alive until they are dropped.
        files.remove(name);
        self.invalidate_cached();
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
        self.invalidate_cached();
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
    // before any read), through the writer mapping below, which hands out no slices. Both
    // mappings are `MAP_SHARED` over the same page cache. This one is only read and msync'ed.
    let reader = unsafe { MmapMut::map_mut(&file) }.map_err(|e| io_error(name, &e))?;
    let writer = MmapRaw::map_raw(&file).map_err(|e| io_error(name, &e))?;
    Ok(MappedFile {
        len,
        _file: file,
        maps: Some(Maps {
            writer: Arc::new(writer),
            writing: Mutex::new(()),
            prefaulted: Frontier::default(),
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

#[cfg(test)]
mod prefault_and_cache_tests {
    use super::*;
    use crate::prefault::{BIG_FILE, WINDOW};

    fn pattern(offset: u64) -> u8 {
        (offset.wrapping_mul(31) >> 3) as u8 ^ 0x5a
    }

    /// Bytes of the writer mapping of `name` resident in this process's page tables, from
    /// /proc/self/smaps (`Rss` of the mapping that starts at the writer's address).
    fn writer_rss(s: &MmapStorage, name: &str) -> u64 {
        let file = s.mapped(name).unwrap();
        let start = format!(
            "{:x}-",
            file.maps.as_ref().unwrap().writer.as_ptr() as usize
        );
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut lines = smaps.lines().skip_while(|l| !l.starts_with(&start));
        assert!(lines.next().is_some(), "writer mapping not in smaps");
        let rss = lines.find(|l| l.starts_with("Rss:")).unwrap();
        let kb: u64 = rss
            .trim_start_matches("Rss:")
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kb * 1024
    }

    fn populate_write_supported(s: &MmapStorage) -> bool {
        s.create("probe", 4096).unwrap();
        let file = s.mapped("probe").unwrap();
        let maps = file.maps.as_ref().unwrap();
        maps.writer
            .advise_range(Advice::PopulateWrite, 0, 4096)
            .is_ok()
    }

    #[test]
    fn appends_populate_the_next_window_and_every_byte_stays_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let len = 5 * WINDOW;
        let chunk = 48 * 1024 + 13;
        let written = 2 * WINDOW + 12_345;
        {
            let s = MmapStorage::open(dir.path()).unwrap();
            s.create("log", len).unwrap();
            let mut at = 0;
            while at < written {
                let n = chunk.min(written - at);
                let data: Vec<u8> = (at..at + n).map(pattern).collect();
                s.write_at("log", at, &data).unwrap();
                at += n;
            }
            s.inner.prefaulter.wait_idle();
            if populate_write_supported(&s) {
                // Writing into window 2 asked for window 3, which nobody wrote.
                assert!(
                    writer_rss(&s, "log") >= 4 * WINDOW - 64 * 1024,
                    "window 3 was not populated: {} bytes resident",
                    writer_rss(&s, "log")
                );
            }
            let back = s.read_at("log", 0, len).unwrap();
            for (i, b) in back.iter().enumerate() {
                let i = i as u64;
                let want = if i < written { pattern(i) } else { 0 };
                assert_eq!(*b, want, "byte {i}");
            }
        }
        // And the file itself (through a fresh mapping) holds the same bytes.
        let s = MmapStorage::open(dir.path()).unwrap();
        let back = s.read_at("log", 0, len).unwrap();
        assert!(back.iter().enumerate().all(|(i, b)| *b
            == if (i as u64) < written {
                pattern(i as u64)
            } else {
                0
            }));
    }

    #[test]
    fn create_populates_the_first_window_of_big_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let s = MmapStorage::open(dir.path()).unwrap();
        if !populate_write_supported(&s) {
            return;
        }
        s.create("big", BIG_FILE).unwrap();
        s.create("small", BIG_FILE - 1).unwrap();
        s.inner.prefaulter.wait_idle();
        // (Large folios may map a little past the window; never the second window.)
        let big = writer_rss(&s, "big");
        assert!(
            (WINDOW..WINDOW + WINDOW / 2).contains(&big),
            "{big} bytes resident"
        );
        assert_eq!(writer_rss(&s, "small"), 0);
    }

    #[test]
    fn writes_racing_a_whole_file_warm_up_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = MmapStorage::open_with(dir.path(), true).unwrap();
        let len = 6 * WINDOW;
        // Queued for population whole at create; the writes below run while it works.
        s.create("seg", len).unwrap();
        let step = 4096 * 3 + 7;
        let mut at = 0;
        while at + 64 <= len {
            s.write_at("seg", at, &[pattern(at); 64]).unwrap();
            at += step;
        }
        s.inner.prefaulter.wait_idle();
        let mut at = 0;
        while at + 64 <= len {
            assert_eq!(
                &s.read_at("seg", at, 64).unwrap()[..],
                &[pattern(at); 64][..]
            );
            assert_eq!(&s.read_at("seg", at + 64, 1).unwrap()[..], &[0]);
            at += step;
        }
    }

    #[test]
    fn a_file_deleted_with_its_prefault_queued_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let s = MmapStorage::open(dir.path()).unwrap();
        s.create("gone", 4 * WINDOW).unwrap();
        let (file, writer) = {
            let file = s.mapped("gone").unwrap();
            let writer = Arc::downgrade(&file.maps.as_ref().unwrap().writer);
            (Arc::downgrade(&file), writer)
        };
        // Asks for windows 1 and 2, then the file goes at once.
        s.write_at("gone", WINDOW + 1, b"x").unwrap();
        s.delete("gone").unwrap();
        assert!(matches!(
            s.read_at("gone", 0, 1),
            Err(StorageError::NotFound { .. })
        ));
        s.inner.prefaulter.wait_idle();
        assert!(file.upgrade().is_none(), "the deleted file is still held");
        assert!(writer.upgrade().is_none(), "its mapping is still held");

        // The same with the whole storage dropped while the job waits.
        s.create("dropped", 4 * WINDOW).unwrap();
        s.write_at("dropped", WINDOW + 1, b"x").unwrap();
        let writer = Arc::downgrade(&s.mapped("dropped").unwrap().maps.as_ref().unwrap().writer);
        drop(s);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while writer.upgrade().is_some() {
            assert!(
                std::time::Instant::now() < deadline,
                "mapping never released"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn the_lookup_cache_never_hands_out_a_removed_name() {
        let dir = tempfile::tempdir().unwrap();
        let s = MmapStorage::open(dir.path()).unwrap();
        s.create("f", 4096).unwrap();
        s.write_at("f", 0, b"old").unwrap();
        // Another call still working on the old file keeps it alive across the delete.
        let held = s.mapped("f").unwrap();
        s.delete("f").unwrap();
        assert!(matches!(
            s.write_at("f", 0, b"x"),
            Err(StorageError::NotFound { .. })
        ));
        s.create("f", 4096).unwrap();
        assert_eq!(&s.read_at("f", 0, 3).unwrap()[..], b"\0\0\0");
        drop(held);

        // Rename keeps the mapping alive under its new name only.
        s.write_at("f", 0, b"fff").unwrap();
        s.create("g", 4096).unwrap();
        s.write_at("g", 0, b"ggg").unwrap();
        assert_eq!(&s.read_at("g", 0, 3).unwrap()[..], b"ggg");
        s.rename("f", "g").unwrap();
        assert_eq!(&s.read_at("g", 0, 3).unwrap()[..], b"fff");
        assert!(matches!(
            s.read_at("f", 0, 3),
            Err(StorageError::NotFound { .. })
        ));
        assert!(matches!(
            s.sync("f", 0, 3),
            Err(StorageError::NotFound { .. })
        ));
    }

    #[test]
    fn the_lookup_cache_sees_other_threads_changes_and_other_storages() {
        let dir = tempfile::tempdir().unwrap();
        let s = MmapStorage::open(dir.path()).unwrap();
        s.create("f", 4096).unwrap();
        s.write_at("f", 0, b"one").unwrap();
        assert_eq!(&s.read_at("f", 0, 3).unwrap()[..], b"one");
        let held = s.mapped("f").unwrap();
        let other = s.clone();
        std::thread::spawn(move || {
            other.delete("f").unwrap();
            other.create("f", 4096).unwrap();
            other.write_at("f", 0, b"two").unwrap();
        })
        .join()
        .unwrap();
        assert_eq!(&s.read_at("f", 0, 3).unwrap()[..], b"two");
        drop(held);

        // A second storage's file of the same name is its own.
        let dir2 = tempfile::tempdir().unwrap();
        let s2 = MmapStorage::open(dir2.path()).unwrap();
        s2.create("f", 4096).unwrap();
        s2.write_at("f", 0, b"ano").unwrap();
        for _ in 0..3 {
            assert_eq!(&s.read_at("f", 0, 3).unwrap()[..], b"two");
            assert_eq!(&s2.read_at("f", 0, 3).unwrap()[..], b"ano");
        }
    }

    #[test]
    fn the_lookup_cache_holds_more_files_than_slots() {
        let dir = tempfile::tempdir().unwrap();
        let s = MmapStorage::open(dir.path()).unwrap();
        let names: Vec<String> = (0..RECENT_SLOTS * 2 + 3)
            .map(|i| format!("consumequeue/T/{i}/00"))
            .collect();
        for (i, name) in names.iter().enumerate() {
            s.create(name, 64).unwrap();
            s.write_at(name, 0, &[i as u8]).unwrap();
        }
        for _ in 0..2 {
            for (i, name) in names.iter().enumerate().rev() {
                assert_eq!(&s.read_at(name, 0, 1).unwrap()[..], &[i as u8]);
            }
        }
    }
}
