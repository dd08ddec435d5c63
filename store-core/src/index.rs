//! The message index: lookup of commit-log offsets by message key (KEYS) and by UNIQ_KEY within
//! a time range, in RocketMQ's index file format (§16.3 of the protocol reference).
//!
//! Files live in `index/`, named by their creation time `yyyyMMddHHmmssSSS` (UTC here; RocketMQ
//! uses local time, and only the order of names matters). Each file is a hash table with
//! chaining, all integers big-endian:
//!
//! | Bytes | What |
//! |---|---|
//! | 0..40 | header: i64 beginTimestamp, i64 endTimestamp, i64 beginPhyOffset, i64 endPhyOffset, i32 hashSlotCount, i32 indexCount |
//! | 40.. | `max_hash_slot_num` slots of i32: number of the newest entry in the bucket, 0 = empty |
//! | then | `max_index_num` entries of 20 bytes: i32 keyHash, i64 commitLogOffset, i32 timeDiff (seconds since beginTimestamp), i32 prevIndex |
//!
//! Entry numbers start at 1 (entry 0 is never used, so 0 can mean "none"); `indexCount` is the
//! next entry number. Keys are `topic#UNIQ_KEY` and `topic#k` for each space-separated token of
//! KEYS; keyHash is `|String.hashCode(key)|` (with `Integer.MIN_VALUE` as 0), bucket = keyHash
//! modulo the slot count. Lookups return candidate offsets: different keys can share a hash, so
//! callers compare keys on the records they read (RocketMQ clients do the same).
//!
//! Durability, and what recovery relies on:
//! - the header is kept in memory and written only by [`Index::flush`] (after the entries and
//!   slots it covers are synced) and when a file is sealed, so the header on storage always
//!   describes synced entries;
//! - a full file is sealed (header written, whole file synced) before the next file is created,
//!   so every file but the newest is durable;
//! - [`Index::recover`] keeps sealed files, cuts entries that point at or past the recovered
//!   commit-log end, and after a crash rebuilds the newest file's slot table from the entries
//!   its header vouches for, then tells the store from which commit-log offset to re-dispatch.
//!
//! What it leaves out: parsing properties (the dispatcher passes KEYS and UNIQ_KEY), reading
//! records to confirm keys, and the checkpoint's index timestamp (recovery does not need it).

use crate::flush::MetaGate;
use crate::format::sys_flag::{transaction_type, TRANSACTION_ROLLBACK_TYPE};
use crate::format::tag::{java_hash_extend, java_hash_extend_utf8};
use crate::storage::{Storage, StorageError};

/// Bytes of the index file header.
pub const INDEX_HEADER_SIZE: u64 = 40;
/// Bytes per hash slot.
pub const INDEX_SLOT_SIZE: u64 = 4;
/// Bytes per index entry.
pub const INDEX_ENTRY_SIZE: u64 = 20;
const _: () = assert!(INDEX_HEADER_SIZE == 8 * 4 + 4 * 2);
const _: () = assert!(INDEX_ENTRY_SIZE == 4 + 8 + 4 + 4);
/// Directory of the index files, relative to the store root.
pub const INDEX_DIR: &str = "index";
/// Separates the topic from the key in an indexed key (`topic#key`).
pub const INDEX_KEY_SEPARATOR: char = '#';
/// Separates the keys inside the KEYS property (Java `MessageConst.KEY_SEPARATOR`).
pub const KEYS_SEPARATOR: char = ' ';
/// RocketMQ's default `maxHashSlotNum`.
pub const MAX_HASH_SLOT_NUM_DEFAULT: u32 = 5_000_000;
/// RocketMQ's default `maxIndexNum`.
pub const MAX_INDEX_NUM_DEFAULT: u32 = 20_000_000;
const _: () = assert!(
    INDEX_HEADER_SIZE
        + MAX_HASH_SLOT_NUM_DEFAULT as u64 * INDEX_SLOT_SIZE
        + MAX_INDEX_NUM_DEFAULT as u64 * INDEX_ENTRY_SIZE
        == 420_000_040
);

/// Sizing of index files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexConfig {
    /// Hash slots per file (`maxHashSlotNum`), at least 1.
    pub max_hash_slot_num: u32,
    /// Entries per file including the unused entry 0 (`maxIndexNum`), at least 2.
    pub max_index_num: u32,
}

impl Default for IndexConfig {
    fn default() -> Self {
        IndexConfig {
            max_hash_slot_num: MAX_HASH_SLOT_NUM_DEFAULT,
            max_index_num: MAX_INDEX_NUM_DEFAULT,
        }
    }
}

impl IndexConfig {
    /// Bytes per file.
    pub fn file_size(&self) -> u64 {
        INDEX_HEADER_SIZE
            + u64::from(self.max_hash_slot_num) * INDEX_SLOT_SIZE
            + u64::from(self.max_index_num) * INDEX_ENTRY_SIZE
    }

    /// Rejects sizes RocketMQ's format cannot hold.
    pub fn check(&self) -> Result<(), IndexError> {
        let reason = if self.max_hash_slot_num < 1 {
            "max_hash_slot_num must be at least 1"
        } else if self.max_index_num < 2 {
            "max_index_num must be at least 2 (entry 0 is never used)"
        } else if self.file_size() > i32::MAX as u64 {
            "an index file must stay below 2 GiB (RocketMQ addresses it with i32)"
        } else {
            return Ok(());
        };
        Err(IndexError::BadConfig { reason })
    }

    fn entry_pos(&self, n: i32) -> u64 {
        INDEX_HEADER_SIZE
            + u64::from(self.max_hash_slot_num) * INDEX_SLOT_SIZE
            + u64::from(n.unsigned_abs()) * INDEX_ENTRY_SIZE
    }

    fn slot_pos(&self, key_hash: i32) -> u64 {
        let slot = key_hash.unsigned_abs() % self.max_hash_slot_num;
        INDEX_HEADER_SIZE + u64::from(slot) * INDEX_SLOT_SIZE
    }
}

/// A header as a flush job writes it: the file's path, its entry count and the header bytes.
pub(crate) type HeaderSnapshot = (String, i32, [u8; 40]);

/// The 40-byte header of an index file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexHeader {
    /// Store time of the first entry (or the previous file's end, until the first entry).
    pub begin_timestamp: i64,
    /// Store time of the newest entry.
    pub end_timestamp: i64,
    pub begin_phy_offset: i64,
    /// Commit-log offset of the newest entry's record; records below it are already indexed.
    pub end_phy_offset: i64,
    /// Slots in use.
    pub hash_slot_count: i32,
    /// The next entry number (1 when empty).
    pub index_count: i32,
}

impl IndexHeader {
    pub fn encode(&self) -> [u8; 40] {
        let mut out = [0u8; 40];
        out[0..8].copy_from_slice(&self.begin_timestamp.to_be_bytes());
        out[8..16].copy_from_slice(&self.end_timestamp.to_be_bytes());
        out[16..24].copy_from_slice(&self.begin_phy_offset.to_be_bytes());
        out[24..32].copy_from_slice(&self.end_phy_offset.to_be_bytes());
        out[32..36].copy_from_slice(&self.hash_slot_count.to_be_bytes());
        out[36..40].copy_from_slice(&self.index_count.to_be_bytes());
        out
    }

    /// Decodes a header; an index count below 1 reads as 1, as RocketMQ loads it.
    pub fn decode(bytes: &[u8; 40]) -> IndexHeader {
        let mut r = Reader(&bytes[..]);
        let mut header = IndexHeader {
            begin_timestamp: r.i64(),
            end_timestamp: r.i64(),
            begin_phy_offset: r.i64(),
            end_phy_offset: r.i64(),
            hash_slot_count: r.i32(),
            index_count: r.i32(),
        };
        header.index_count = header.index_count.max(1);
        header
    }
}

/// One index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexEntry {
    pub key_hash: i32,
    pub phys_offset: i64,
    /// Seconds since the file's begin timestamp.
    pub time_diff: i32,
    /// The previous entry in the same bucket, 0 for none.
    pub prev_index: i32,
}

impl IndexEntry {
    pub fn encode(&self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[0..4].copy_from_slice(&self.key_hash.to_be_bytes());
        out[4..12].copy_from_slice(&self.phys_offset.to_be_bytes());
        out[12..16].copy_from_slice(&self.time_diff.to_be_bytes());
        out[16..20].copy_from_slice(&self.prev_index.to_be_bytes());
        out
    }

    pub fn decode(bytes: &[u8; 20]) -> IndexEntry {
        let mut r = Reader(&bytes[..]);
        IndexEntry {
            key_hash: r.i32(),
            phys_offset: r.i64(),
            time_diff: r.i32(),
            prev_index: r.i32(),
        }
    }
}

/// What the dispatcher hands the index for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexRecord<'a> {
    pub topic: &'a str,
    /// The KEYS property, space-separated keys, as stored (UTF-8; a key that is not is
    /// skipped). Bytes rather than text: most keys are ASCII and need no validation.
    pub keys: Option<&'a [u8]>,
    /// The UNIQ_KEY property (client message id), as stored.
    pub uniq_key: Option<&'a [u8]>,
    pub phys_offset: i64,
    pub store_timestamp_ms: i64,
    /// The record's sys flag: ROLLBACK records are not indexed.
    pub sys_flag: i32,
}

/// The answer to [`Index::lookup`] (RocketMQ's `QueryOffsetResult`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexLookup {
    /// Candidate commit-log offsets, newest first, without repeats.
    pub phys_offsets: Vec<i64>,
    /// End timestamp of the newest index file (QUERY_MESSAGE's `indexLastUpdateTimestamp`).
    pub last_update_timestamp: i64,
    /// End commit-log offset of the newest index file (`indexLastUpdatePhyoffset`).
    pub last_update_phy_offset: i64,
}

/// Why an index operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IndexError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("index config: {reason}")]
    BadConfig { reason: &'static str },
    #[error("{name}: index file names are 17 digits, yyyyMMddHHmmssSSS")]
    BadFileName { name: String },
    #[error("{name}: {len} bytes, but index files are {expected} bytes")]
    BadFileSize {
        name: String,
        len: u64,
        expected: u64,
    },
}

/// All index files of the store.
///
/// Driving contract:
/// 1. [`Index::open`] loads the headers of every file in `index/`.
/// 2. [`Index::recover`] with the recovered commit-log end and whether the last shutdown was
///    clean; it returns the commit-log offset from which the store must re-dispatch records to
///    the index (records already indexed are skipped, so starting earlier is harmless).
/// 3. The dispatcher calls [`Index::put`] for every record in commit-log order.
/// 4. The store calls [`Index::flush`] on its timer and at shutdown.
/// 5. [`Index::lookup`] answers QUERY_MESSAGE; [`Index::delete_below`] follows commit-log
///    retention.
#[derive(Debug)]
pub struct Index<S> {
    storage: S,
    cfg: IndexConfig,
    /// Oldest first; only the last one is written to.
    files: Vec<IndexFile>,
    /// Header writes made here pass it, voiding older snapshots a flush job would write.
    gate: MetaGate,
    /// Keys of the current [`Index::put_all`] not yet written; empty between calls.
    staged: Staged,
    /// The last topic indexed and the hash of `topic#`, which every key of the topic's
    /// records extends: most puts index the topic of the put before.
    topic_hash: (String, i32),
}

/// Index entries made but not yet written to the newest file: consecutive entries from
/// `first`, written with one call, and the slots pointing at them. The file's header takes
/// `header` only once they are written, so a failed write leaves the file as it was.
#[derive(Debug, Default)]
struct Staged {
    /// The newest file's header with the staged entries counted; `None` when nothing is staged.
    header: Option<IndexHeader>,
    /// Number of the first staged entry.
    first: i32,
    /// Encoded entries `first..header.index_count`.
    entries: Vec<u8>,
    /// (slot position, entry number as stored) in staging order; later ones win.
    slots: Vec<(u64, [u8; 4])>,
    /// Bit `pos % 1024` is set for each staged slot position: a clear bit spares the search
    /// of `slots` (most keys of a batch land in slots no other key of it uses).
    seen: [u64; 16],
}

impl Staged {
    fn clear(&mut self) {
        self.header = None;
        self.entries.clear();
        self.slots.clear();
        self.seen = [0; 16];
    }

    /// The `seen` bit of slot position `pos`.
    fn seen_bit(pos: u64) -> u64 {
        (pos / INDEX_SLOT_SIZE) % 1024
    }

    /// The entry a staged slot at `pos` points at, if one is staged.
    fn slot(&self, pos: u64) -> Option<i32> {
        if !SlotBits::get(&self.seen, Staged::seen_bit(pos)) {
            return None;
        }
        self.slots
            .iter()
            .rev()
            .find(|(p, _)| *p == pos)
            .map(|&(_, n)| i32::from_be_bytes(n))
    }

    fn push_slot(&mut self, pos: u64, n: i32) {
        SlotBits::put(&mut self.seen, Staged::seen_bit(pos));
        self.slots.push((pos, n.to_be_bytes()));
    }
}

#[derive(Debug, Clone)]
struct IndexFile {
    /// `index/<name>`.
    path: String,
    /// Creation time parsed from the name.
    created_ms: u64,
    header: IndexHeader,
    /// Entries below this number are synced (with the slots pointing at them).
    synced_count: i32,
    /// The in-memory header differs from the one on storage.
    header_dirty: bool,
    /// What is known of the newest file's slot table without reading it (see [`SlotBits`]);
    /// `None` for older files, and until the first key lands in a file found on storage.
    slot_bits: Option<SlotBits>,
}

/// Slots per page of [`SlotBits`]: 4 KiB of slot table, learned with one read.
const SLOTS_PER_PAGE: u64 = 1024;

/// Which slots of the newest index file may hold an entry, so that staging a key in a slot
/// known to be 0 needs no storage read (one per key otherwise: most keys are unique ids that
/// land in empty slots). A file this process created is all zeros, so every page of it is
/// known from the start; a file found on storage is learned a page at a time, the first time
/// a key lands in the page. Zeroed allocations: only pages of bits actually set take memory.
#[derive(Clone)]
struct SlotBits {
    /// One bit per slot: set if the slot may be non-zero.
    used: Vec<u64>,
    /// One bit per page: set once `used` covers the page; `None` when every page is known.
    known: Option<Vec<u64>>,
}

impl SlotBits {
    /// For a new, zeroed file.
    fn zeroed(slots: u32) -> SlotBits {
        SlotBits {
            used: vec![0; (slots as usize).div_ceil(64)],
            known: None,
        }
    }

    /// For a file found on storage: nothing known yet.
    fn unknown(slots: u32) -> SlotBits {
        let pages = u64::from(slots).div_ceil(SLOTS_PER_PAGE);
        SlotBits {
            known: Some(vec![0; usize::try_from(pages.div_ceil(64)).unwrap_or(0)]),
            ..SlotBits::zeroed(slots)
        }
    }

    /// The word and bit of entry `i` in a bit vector (also [`Staged::seen`]'s).
    fn locate(i: u64) -> (usize, u64) {
        (usize::try_from(i / 64).unwrap_or(usize::MAX), 1 << (i % 64))
    }

    fn get(bits: &[u64], i: u64) -> bool {
        let (word, bit) = SlotBits::locate(i);
        bits.get(word).is_some_and(|w| w & bit != 0)
    }

    fn put(bits: &mut [u64], i: u64) {
        let (word, bit) = SlotBits::locate(i);
        if let Some(w) = bits.get_mut(word) {
            *w |= bit;
        }
    }

    /// Whether `slot` may be non-zero; `None` if its page is not known yet.
    fn may_be_used(&self, slot: u64) -> Option<bool> {
        let known = self
            .known
            .as_ref()
            .is_none_or(|known| SlotBits::get(known, slot / SLOTS_PER_PAGE));
        known.then(|| SlotBits::get(&self.used, slot))
    }

    /// Records that `slot` is (about to be) written.
    fn set(&mut self, slot: u64) {
        SlotBits::put(&mut self.used, slot);
    }

    /// Learns the page starting at slot `first` from its stored bytes.
    fn learn(&mut self, first: u64, page: &[u8]) {
        for (i, slot) in (first..).zip(page.chunks_exact(INDEX_SLOT_SIZE as usize)) {
            if slot.iter().any(|&b| b != 0) {
                SlotBits::put(&mut self.used, i);
            }
        }
        if let Some(known) = self.known.as_mut() {
            SlotBits::put(known, first / SLOTS_PER_PAGE);
        }
    }
}

impl core::fmt::Debug for SlotBits {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let used: u32 = self.used.iter().map(|w| w.count_ones()).sum();
        write!(f, "SlotBits({used} may be used)")
    }
}

impl<S: Storage> Index<S> {
    /// Loads every index file's header. Files must have the configured size.
    pub fn open(storage: S, cfg: IndexConfig) -> Result<Index<S>, IndexError> {
        cfg.check()?;
        let expected = cfg.file_size();
        let mut files = Vec::new();
        for entry in storage.list(INDEX_DIR)? {
            let path = format!("{INDEX_DIR}/{entry}");
            let created_ms = parse_file_name(&entry)
                .ok_or_else(|| IndexError::BadFileName { name: path.clone() })?;
            let len = storage.len(&path)?.unwrap_or(0);
            if len != expected {
                return Err(IndexError::BadFileSize {
                    name: path,
                    len,
                    expected,
                });
            }
            let bytes = storage.read_at(&path, 0, INDEX_HEADER_SIZE)?;
            let header = <&[u8; 40]>::try_from(&bytes[..])
                .map(IndexHeader::decode)
                .unwrap_or_default();
            files.push(IndexFile {
                path,
                created_ms,
                synced_count: header.index_count,
                header,
                header_dirty: false,
                slot_bits: None,
            });
        }
        files.sort_by_key(|f| f.created_ms);
        Ok(Index {
            storage,
            cfg,
            files,
            gate: MetaGate::default(),
            staged: Staged::default(),
            topic_hash: (String::new(), topic_prefix_hash("")),
        })
    }

    /// Makes the index consistent with a commit log that ends at `commit_log_end` and returns
    /// the commit-log offset from which records must be re-dispatched to the index (0: from
    /// the commit log's start).
    ///
    /// Per file, oldest first: a header that cannot be right (counts out of range, offsets or
    /// times going backwards) drops the file and every later one. Entries pointing at or past
    /// `commit_log_end` are cut. After a crash (`clean_shutdown == false`) the newest file is
    /// rebuilt from the entries its header vouches for (its slot table and chain links are
    /// recomputed), since writes after its last flush may have landed in part. A file left
    /// without entries is deleted with every later one. Rebuilding reads the newest file's
    /// entries once; re-dispatch then covers only records past its last flush.
    pub fn recover(
        &mut self,
        commit_log_end: i64,
        clean_shutdown: bool,
    ) -> Result<i64, IndexError> {
        let count = self.files.len();
        let mut keep = 0;
        while keep < count {
            let last = keep + 1 == count;
            let Some(file) = self.files.get(keep) else {
                break;
            };
            if !self.header_is_sane(&file.header) {
                tracing::warn!(file = %file.path, header = ?file.header, "index header is damaged, dropping the file");
                break;
            }
            let beyond =
                file.header.index_count > 1 && file.header.end_phy_offset >= commit_log_end;
            if beyond || (last && !clean_shutdown) {
                self.rebuild(keep, commit_log_end)?;
            }
            if self
                .files
                .get(keep)
                .is_some_and(|f| f.header.index_count <= 1)
            {
                break;
            }
            keep += 1;
        }
        for file in self.files.drain(keep..).rev() {
            tracing::info!(file = %file.path, "deleting index file during recovery");
            self.storage.delete(&file.path)?;
        }
        Ok(self.files.last().map_or(0, |f| f.header.end_phy_offset))
    }

    /// Indexes one record: its UNIQ_KEY and each KEYS token, as `topic#key`. Records below the
    /// newest file's end offset (already indexed: a re-dispatch) and ROLLBACK records are
    /// skipped. Starts a new file, named from `now_ms`, when the current one is full. Returns
    /// how many keys were added.
    pub fn put(&mut self, record: &IndexRecord<'_>, now_ms: u64) -> Result<u32, IndexError> {
        self.put_all(core::slice::from_ref(record), now_ms)
    }

    /// [`Index::put`] for each of `records`, in commit-log order, storing the same bytes; a
    /// batch's entries are consecutive, so they are written with one call per file touched
    /// instead of one per key. On an error the keys not yet written are dropped (the newest
    /// file's header does not count them): [`Index::end_phy_offset`] tells how far indexing got.
    pub fn put_all(&mut self, records: &[IndexRecord<'_>], now_ms: u64) -> Result<u32, IndexError> {
        let staged = self.stage_all(records, now_ms).and_then(|added| {
            self.write_staged()?;
            Ok(added)
        });
        if staged.is_err() {
            self.staged.clear();
        }
        staged
    }

    fn stage_all(&mut self, records: &[IndexRecord<'_>], now_ms: u64) -> Result<u32, IndexError> {
        let mut added = 0;
        for record in records {
            if transaction_type(record.sys_flag) == TRANSACTION_ROLLBACK_TYPE {
                continue;
            }
            let end = match (self.staged.header, self.files.last()) {
                (Some(h), _) => Some(h.end_phy_offset),
                (None, f) => f.map(|f| f.header.end_phy_offset),
            };
            if end.is_some_and(|end| record.phys_offset < end) {
                continue;
            }
            if self.topic_hash.0 != record.topic {
                self.topic_hash.0.clear();
                self.topic_hash.0.push_str(record.topic);
                self.topic_hash.1 = topic_prefix_hash(record.topic);
            }
            let topic_hash = self.topic_hash.1;
            let uniq = record.uniq_key.into_iter();
            let keys = record
                .keys
                .into_iter()
                .flat_map(|keys| keys.split(|&b| b == KEYS_SEPARATOR as u8));
            for key in uniq.chain(keys).filter(|k| !k.is_empty()) {
                // Dispatch hands over UTF-8 only; anything else could not be looked up.
                let Some(hash) = java_hash_extend_utf8(topic_hash, key) else {
                    continue;
                };
                let hash = hash.checked_abs().unwrap_or(0);
                self.stage_key(hash, record.phys_offset, record.store_timestamp_ms, now_ms)?;
                added += 1;
            }
        }
        Ok(added)
    }

    /// Commit-log offsets of records indexed under `topic#key` with a store time in
    /// `begin_ms..=end_ms`, newest first, at most `max_num` (before the caller's key check).
    /// Walks files newest to oldest and each bucket's chain, stopping once entries are older
    /// than `begin_ms`.
    pub fn lookup(
        &self,
        topic: &str,
        key: &str,
        max_num: usize,
        begin_ms: i64,
        end_ms: i64,
    ) -> Result<IndexLookup, IndexError> {
        let mut out = IndexLookup::default();
        if let Some(newest) = self.files.last() {
            out.last_update_timestamp = newest.header.end_timestamp;
            out.last_update_phy_offset = newest.header.end_phy_offset;
        }
        let hash = key_hash(topic, key);
        for file in self.files.iter().rev() {
            if out.phys_offsets.len() >= max_num {
                break;
            }
            if time_matches(&file.header, begin_ms, end_ms) {
                self.select(file, hash, max_num, begin_ms, end_ms, &mut out.phys_offsets)?;
            }
            if file.header.begin_timestamp < begin_ms {
                break;
            }
        }
        Ok(out)
    }

    /// Makes every entry written so far durable: syncs the newest file's new entries and its
    /// slot table, then writes and syncs its header.
    pub fn flush(&mut self) -> Result<(), IndexError> {
        let cfg = self.cfg;
        let Some(file) = self.files.last_mut() else {
            return Ok(());
        };
        if !file.header_dirty {
            return Ok(());
        }
        sync_file_body(&self.storage, &cfg, file)?;
        write_header(&self.storage, &self.gate, file)?;
        Ok(())
    }

    /// Shares the store's metadata gate (see `flush.rs`).
    pub(crate) fn set_gate(&mut self, gate: MetaGate) {
        self.gate = gate;
    }

    /// What a flush job must do to make every entry written so far durable, without doing it:
    /// adds the newest file's ranges to sync (slot table, new entries) to `ranges`, and
    /// returns the header to write after them. `None` if nothing changed since the last flush.
    pub(crate) fn flush_plan(
        &self,
        ranges: &mut Vec<(String, u64, u64)>,
    ) -> Option<HeaderSnapshot> {
        let file = self.files.last().filter(|f| f.header_dirty)?;
        let slot_len = u64::from(self.cfg.max_hash_slot_num) * INDEX_SLOT_SIZE;
        ranges.push((file.path.clone(), INDEX_HEADER_SIZE, slot_len));
        let from = file.synced_count.max(1);
        let to = file.header.index_count;
        if to > from {
            let len = u64::from((to - from).unsigned_abs()) * INDEX_ENTRY_SIZE;
            ranges.push((file.path.clone(), self.cfg.entry_pos(from), len));
        }
        Some((file.path.clone(), to, file.header.encode()))
    }

    /// A flush job ran what [`Index::flush_plan`] planned: its entries are synced, and
    /// its header was written unless `header_written` is false. Nothing to do if the file was
    /// sealed meanwhile (sealing synced it whole).
    pub(crate) fn flushed(
        &mut self,
        path: &str,
        count: i32,
        header: &[u8; 40],
        header_written: bool,
    ) {
        let Some(file) = self.files.last_mut().filter(|f| f.path == path) else {
            return;
        };
        file.synced_count = file.synced_count.max(count);
        if header_written {
            file.header_dirty = file.header.encode() != *header;
        }
    }

    /// Deletes the oldest files whose every entry points below `min_phys` (after commit-log
    /// retention); the newest file always stays. Returns how many were deleted.
    pub fn delete_below(&mut self, min_phys: i64) -> Result<u64, IndexError> {
        let mut deleted = 0;
        while self.files.len() > 1 {
            let Some(first) = self.files.first() else {
                break;
            };
            if first.header.end_phy_offset >= min_phys {
                break;
            }
            self.storage.delete(&first.path)?;
            self.files.remove(0);
            deleted += 1;
        }
        Ok(deleted)
    }

    /// The newest file's end offset: records below it are already indexed.
    pub fn end_phy_offset(&self) -> i64 {
        self.files.last().map_or(0, |f| f.header.end_phy_offset)
    }

    /// Names (`index/...`) and headers of the files, oldest first.
    pub fn files(&self) -> impl Iterator<Item = (&str, &IndexHeader)> {
        self.files.iter().map(|f| (f.path.as_str(), &f.header))
    }
}

// Writing entries, sealing and rolling files.
impl<S: Storage> Index<S> {
    /// Stages one key's entry in the newest file, writing what is staged and rolling to a new
    /// file first when it is full.
    fn stage_key(
        &mut self,
        hash: i32,
        phys_offset: i64,
        store_timestamp_ms: i64,
        now_ms: u64,
    ) -> Result<(), IndexError> {
        let max = self.cfg.max_index_num.try_into().unwrap_or(i32::MAX);
        let needs_file = match (self.staged.header, self.files.last()) {
            (Some(h), _) => h.index_count >= max,
            (None, f) => f.is_none_or(|f| f.header.index_count >= max),
        };
        if needs_file {
            self.write_staged()?;
            self.roll(now_ms)?;
        }
        let cfg = self.cfg;
        let Some(file) = self.files.last_mut() else {
            unreachable!("roll created a file");
        };
        let staged = &mut self.staged;
        let mut header = staged.header.unwrap_or(file.header);
        let n = header.index_count;
        assert!(n >= 1);
        if staged.entries.is_empty() {
            staged.first = n;
        }
        let slot_pos = cfg.slot_pos(hash);
        // A slot staged in this batch is newer than the stored one.
        let mut slot = match staged.slot(slot_pos) {
            Some(staged_n) => staged_n,
            None => stored_slot(&self.storage, &cfg, file, slot_pos)?,
        };
        if slot <= 0 || slot >= n {
            slot = 0;
        }
        if n == 1 {
            // The first entry defines the file's begin, and its time difference is 0 (RocketMQ
            // computes it against the previous file's end first, which skews the first entry).
            header.begin_phy_offset = phys_offset;
            header.begin_timestamp = store_timestamp_ms;
        }
        let time_diff = if header.begin_timestamp <= 0 {
            0
        } else {
            let secs = store_timestamp_ms.saturating_sub(header.begin_timestamp) / 1000;
            i32::try_from(secs.max(0)).unwrap_or(i32::MAX)
        };
        let entry = IndexEntry {
            key_hash: hash,
            phys_offset,
            time_diff,
            prev_index: slot,
        };
        staged.entries.extend_from_slice(&entry.encode());
        staged.push_slot(slot_pos, n);
        if slot == 0 {
            header.hash_slot_count += 1;
        }
        header.index_count = n + 1;
        header.end_phy_offset = phys_offset;
        header.end_timestamp = store_timestamp_ms;
        staged.header = Some(header);
        Ok(())
    }

    /// Writes the staged entries, then the slots pointing at them (the order one put per key
    /// used), and only then lets the newest file's header count them.
    fn write_staged(&mut self) -> Result<(), IndexError> {
        let Some(header) = self.staged.header else {
            return Ok(());
        };
        let cfg = self.cfg;
        let Some(file) = self.files.last_mut() else {
            unreachable!("entries are staged only in an existing file");
        };
        let staged = &mut self.staged;
        if let Some(bits) = file.slot_bits.as_mut() {
            // Marked before the writes: a set bit only costs a read.
            for &(pos, _) in &staged.slots {
                bits.set((pos - INDEX_HEADER_SIZE) / INDEX_SLOT_SIZE);
            }
        }
        self.storage
            .write_at(&file.path, cfg.entry_pos(staged.first), &staged.entries)?;
        for (pos, n) in &staged.slots {
            self.storage.write_at(&file.path, *pos, n)?;
        }
        // A failed slot write may leave a slot pointing past the count; only an I/O error does
        // that (files are preallocated), which fails the store, and crash recovery rebuilds
        // the slot table of the newest file.
        staged.clear();
        file.header = header;
        file.header_dirty = true;
        Ok(())
    }

    /// Seals the newest file (if any) and creates the next, carrying the end offset and time
    /// over as RocketMQ does, so re-dispatched records keep being skipped.
    fn roll(&mut self, now_ms: u64) -> Result<(), IndexError> {
        let cfg = self.cfg;
        let mut header = IndexHeader {
            index_count: 1,
            ..IndexHeader::default()
        };
        let mut created_ms = now_ms;
        if let Some(prev) = self.files.last_mut() {
            sync_file_body(&self.storage, &cfg, prev)?;
            write_header(&self.storage, &self.gate, prev)?;
            header.begin_phy_offset = prev.header.end_phy_offset;
            header.end_phy_offset = prev.header.end_phy_offset;
            header.begin_timestamp = prev.header.end_timestamp;
            header.end_timestamp = prev.header.end_timestamp;
            // Names must sort in creation order even if the clock stalls or steps back.
            created_ms = created_ms.max(prev.created_ms + 1);
        }
        let path = format!("{INDEX_DIR}/{}", file_name(created_ms));
        self.storage.create(&path, cfg.file_size())?;
        let mut file = IndexFile {
            path,
            created_ms,
            header,
            synced_count: 1,
            header_dirty: true,
            slot_bits: Some(SlotBits::zeroed(cfg.max_hash_slot_num)),
        };
        // The carried-over end offset must survive a crash before the first flush, or
        // re-dispatch would index the previous file's records again.
        write_header(&self.storage, &self.gate, &mut file)?;
        if let Some(prev) = self.files.last_mut() {
            // Only the newest file takes keys.
            prev.slot_bits = None;
        }
        self.files.push(file);
        Ok(())
    }

    fn header_is_sane(&self, h: &IndexHeader) -> bool {
        let max_count = i64::from(self.cfg.max_index_num);
        let slots = i64::from(self.cfg.max_hash_slot_num);
        (1..=max_count).contains(&i64::from(h.index_count))
            && (0..=slots).contains(&i64::from(h.hash_slot_count))
            && h.begin_phy_offset >= 0
            && h.begin_phy_offset <= h.end_phy_offset
            && h.begin_timestamp <= h.end_timestamp
    }

    /// Rebuilds file `i` from its entries `1..index_count`, keeping the longest prefix that is
    /// plausible (key hash not negative, offsets not going backwards and below
    /// `commit_log_end`, time differences not negative): recomputes chain links and the slot
    /// table, then the header, and syncs it all.
    fn rebuild(&mut self, i: usize, commit_log_end: i64) -> Result<(), IndexError> {
        let cfg = self.cfg;
        let Some(file) = self.files.get_mut(i) else {
            return Ok(());
        };
        let old = file.header;
        let slot_num = usize::try_from(cfg.max_hash_slot_num).unwrap_or(usize::MAX);
        let mut slots = vec![0i32; slot_num];
        let mut header = IndexHeader {
            index_count: 1,
            hash_slot_count: 0,
            end_phy_offset: old.begin_phy_offset,
            end_timestamp: old.begin_timestamp,
            ..old
        };
        let mut last_phys = old.begin_phy_offset;
        let mut n = 1;
        'scan: while n < old.index_count {
            let batch = (old.index_count - n).min(REBUILD_BATCH);
            let bytes = self.storage.read_at(
                &file.path,
                cfg.entry_pos(n),
                u64::from(batch.unsigned_abs()) * INDEX_ENTRY_SIZE,
            )?;
            for chunk in bytes.chunks_exact(20) {
                let Ok(raw) = <&[u8; 20]>::try_from(chunk) else {
                    break 'scan;
                };
                let entry = IndexEntry::decode(raw);
                let plausible = entry.key_hash >= 0
                    && entry.phys_offset >= last_phys
                    && entry.phys_offset < commit_log_end
                    && entry.time_diff >= 0;
                if !plausible {
                    break 'scan;
                }
                let bucket = usize::try_from(entry.key_hash.unsigned_abs() % cfg.max_hash_slot_num)
                    .unwrap_or(0);
                let Some(slot) = slots.get_mut(bucket) else {
                    break 'scan;
                };
                if entry.prev_index != *slot {
                    let fixed = IndexEntry {
                        prev_index: *slot,
                        ..entry
                    };
                    self.storage
                        .write_at(&file.path, cfg.entry_pos(n), &fixed.encode())?;
                }
                if *slot == 0 {
                    header.hash_slot_count += 1;
                }
                *slot = n;
                last_phys = entry.phys_offset;
                header.end_phy_offset = entry.phys_offset;
                header.end_timestamp = if n + 1 == old.index_count {
                    old.end_timestamp
                } else {
                    // The exact time is gone; the end of its second keeps time filters
                    // inclusive.
                    let secs = i64::from(entry.time_diff);
                    (old.begin_timestamp + secs * 1000 + 999).min(old.end_timestamp)
                };
                n += 1;
            }
        }
        header.index_count = n;
        if n == 1 {
            header = IndexHeader {
                index_count: 1,
                hash_slot_count: 0,
                ..old
            };
        }
        let slot_bytes: Vec<u8> = slots.iter().flat_map(|s| s.to_be_bytes()).collect();
        let slot_len = u64::from(cfg.max_hash_slot_num) * INDEX_SLOT_SIZE;
        // The bits, if any, describe the table before the rebuild.
        file.slot_bits = None;
        self.storage
            .write_at(&file.path, INDEX_HEADER_SIZE, &slot_bytes)?;
        self.storage.sync(
            &file.path,
            INDEX_HEADER_SIZE,
            slot_len + u64::from(n.unsigned_abs()) * INDEX_ENTRY_SIZE,
        )?;
        if header != old {
            tracing::info!(file = %file.path, from = old.index_count, to = n, "rebuilt index file");
        }
        file.header = header;
        file.synced_count = n;
        write_header(&self.storage, &self.gate, file)?;
        Ok(())
    }

    /// Collects matching offsets from one file's chain into `out`.
    fn select(
        &self,
        file: &IndexFile,
        hash: i32,
        max_num: usize,
        begin_ms: i64,
        end_ms: i64,
        out: &mut Vec<i64>,
    ) -> Result<(), IndexError> {
        let count = file.header.index_count;
        let mut n = read_i32(&self.storage, &file.path, self.cfg.slot_pos(hash))?;
        if count <= 1 || n <= 0 || n >= count {
            return Ok(());
        }
        // Links always point to older entries (smaller numbers), so the walk ends.
        while out.len() < max_num {
            let bytes =
                self.storage
                    .read_at(&file.path, self.cfg.entry_pos(n), INDEX_ENTRY_SIZE)?;
            let Ok(raw) = <&[u8; 20]>::try_from(&bytes[..]) else {
                break;
            };
            let entry = IndexEntry::decode(raw);
            if entry.time_diff < 0 {
                break;
            }
            let time = file
                .header
                .begin_timestamp
                .saturating_add(i64::from(entry.time_diff) * 1000);
            let in_range = time >= begin_ms && time <= end_ms;
            if entry.key_hash == hash && in_range && !out.contains(&entry.phys_offset) {
                out.push(entry.phys_offset);
            }
            let prev = entry.prev_index;
            if prev <= 0 || prev >= n || time < begin_ms {
                break;
            }
            n = prev;
        }
        Ok(())
    }
}

/// Entries read per storage call while rebuilding.
const REBUILD_BATCH: i32 = 65_536;

/// The indexed form of a key: `topic#key`.
pub fn index_key(topic: &str, key: &str) -> String {
    format!("{topic}{INDEX_KEY_SEPARATOR}{key}")
}

/// `|String.hashCode(key)|` with `Integer.MIN_VALUE` mapped to 0, as RocketMQ hashes an
/// indexed key (see [`index_key`]).
pub fn index_key_hash(key: &str) -> i32 {
    java_hash_extend(0, key).checked_abs().unwrap_or(0)
}

/// [`index_key_hash`] of [`index_key`]`(topic, key)`, without building the key.
fn key_hash(topic: &str, key: &str) -> i32 {
    java_hash_extend(topic_prefix_hash(topic), key)
        .checked_abs()
        .unwrap_or(0)
}

/// Java's hash of `topic#`, which [`key_hash`] extends with the key.
fn topic_prefix_hash(topic: &str) -> i32 {
    let mut separator = [0u8; 4];
    let separator = INDEX_KEY_SEPARATOR.encode_utf8(&mut separator);
    java_hash_extend(java_hash_extend(0, topic), separator)
}

/// RocketMQ's `IndexFile.isTimeMatched`: does the file's time span touch the query's?
fn time_matches(h: &IndexHeader, begin_ms: i64, end_ms: i64) -> bool {
    (begin_ms < h.begin_timestamp && end_ms > h.end_timestamp)
        || (begin_ms >= h.begin_timestamp && begin_ms <= h.end_timestamp)
        || (end_ms >= h.begin_timestamp && end_ms <= h.end_timestamp)
}

fn sync_file_body<S: Storage>(
    storage: &S,
    cfg: &IndexConfig,
    file: &mut IndexFile,
) -> Result<(), IndexError> {
    let slot_len = u64::from(cfg.max_hash_slot_num) * INDEX_SLOT_SIZE;
    storage.sync(&file.path, INDEX_HEADER_SIZE, slot_len)?;
    let from = file.synced_count.max(1);
    let to = file.header.index_count;
    if to > from {
        let len = u64::from((to - from).unsigned_abs()) * INDEX_ENTRY_SIZE;
        storage.sync(&file.path, cfg.entry_pos(from), len)?;
    }
    file.synced_count = to;
    Ok(())
}

fn write_header<S: Storage>(
    storage: &S,
    gate: &MetaGate,
    file: &mut IndexFile,
) -> Result<(), IndexError> {
    gate.write(|| {
        storage.write_at(&file.path, 0, &file.header.encode())?;
        storage.sync(&file.path, 0, INDEX_HEADER_SIZE)
    })?;
    file.header_dirty = false;
    Ok(())
}

/// The stored value of the slot at byte position `pos` of `file`, the newest file: 0 without a
/// read if its [`SlotBits`] say so, else read (learning the slot's page first if need be).
fn stored_slot<S: Storage>(
    storage: &S,
    cfg: &IndexConfig,
    file: &mut IndexFile,
    pos: u64,
) -> Result<i32, IndexError> {
    let slot = (pos - INDEX_HEADER_SIZE) / INDEX_SLOT_SIZE;
    let bits = file
        .slot_bits
        .get_or_insert_with(|| SlotBits::unknown(cfg.max_hash_slot_num));
    match bits.may_be_used(slot) {
        Some(false) => Ok(0),
        Some(true) => read_i32(storage, &file.path, pos),
        None => {
            let first = slot - slot % SLOTS_PER_PAGE;
            let count = SLOTS_PER_PAGE.min(u64::from(cfg.max_hash_slot_num) - first);
            let at = INDEX_HEADER_SIZE + first * INDEX_SLOT_SIZE;
            let page = storage.read_at(&file.path, at, count * INDEX_SLOT_SIZE)?;
            bits.learn(first, &page);
            let offset = usize::try_from((slot - first) * INDEX_SLOT_SIZE).unwrap_or(usize::MAX);
            let value = page.get(offset..).and_then(|rest| rest.first_chunk::<4>());
            Ok(value.map_or(0, |v| i32::from_be_bytes(*v)))
        }
    }
}

fn read_i32<S: Storage>(storage: &S, path: &str, pos: u64) -> Result<i32, IndexError> {
    let bytes = storage.read_at(path, pos, 4)?;
    Ok(<[u8; 4]>::try_from(&bytes[..]).map_or(0, i32::from_be_bytes))
}

/// Big-endian reads in sequence from a fixed-size array whose layout the caller sized.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const K: usize>(&mut self) -> [u8; K] {
        let (head, rest) = self.0.split_at(K.min(self.0.len()));
        self.0 = rest;
        <[u8; K]>::try_from(head).unwrap_or([0; K])
    }

    fn i64(&mut self) -> i64 {
        i64::from_be_bytes(self.take())
    }

    fn i32(&mut self) -> i32 {
        i32::from_be_bytes(self.take())
    }
}

/// `yyyyMMddHHmmssSSS` of `ms` since the Unix epoch, in UTC.
pub fn file_name(ms: u64) -> String {
    let millis = ms % 1000;
    let secs = ms / 1000;
    let (days, day_secs) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    format!(
        "{year:04}{month:02}{day:02}{:02}{:02}{:02}{millis:03}",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

/// The inverse of [`file_name`]; `None` unless `name` is 17 digits of a valid UTC time.
pub fn parse_file_name(name: &str) -> Option<u64> {
    if name.len() != 17 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let field = |range: std::ops::Range<usize>| name.get(range)?.parse::<u64>().ok();
    let (year, month, day) = (field(0..4)?, field(4..6)?, field(6..8)?);
    let (hour, minute, second, millis) = (
        field(8..10)?,
        field(10..12)?,
        field(12..14)?,
        field(14..17)?,
    );
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return None;
    }
    let days = days_from_civil(i64::try_from(year).ok()?, month, day);
    let days = u64::try_from(days).ok()?;
    Some(((days * 86_400 + hour * 3600 + minute * 60 + second) * 1000) + millis)
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(days: i64) -> (i64, u64, u64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1).unsigned_abs();
    let month = if mp < 10 { mp + 3 } else { mp - 9 }.unsigned_abs();
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u64, day: u64) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400);
    let month = i64::try_from(month).unwrap_or(1);
    let day = i64::try_from(day).unwrap_or(1);
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::sys_flag::{TRANSACTION_COMMIT_TYPE, TRANSACTION_PREPARED_TYPE};
    use crate::storage::MemStorage;
    use proptest::prelude::*;

    fn cfg(slots: u32, entries: u32) -> IndexConfig {
        IndexConfig {
            max_hash_slot_num: slots,
            max_index_num: entries,
        }
    }

    fn rec<'a>(topic: &'a str, keys: &'a str, phys: i64, ts: i64) -> IndexRecord<'a> {
        IndexRecord {
            topic,
            keys: Some(keys.as_bytes()),
            uniq_key: None,
            phys_offset: phys,
            store_timestamp_ms: ts,
            sys_flag: 0,
        }
    }

    fn find(index: &Index<MemStorage>, key: &str) -> Vec<i64> {
        index
            .lookup("T", key, 64, 0, i64::MAX)
            .unwrap()
            .phys_offsets
    }

    #[test]
    fn sizes_the_format_cannot_hold_are_refused() {
        for bad in [cfg(0, 10), cfg(10, 1), cfg(5_000_000, 200_000_000)] {
            assert!(matches!(
                Index::open(MemStorage::new(), bad),
                Err(IndexError::BadConfig { .. })
            ));
        }
        assert_eq!(IndexConfig::default().file_size(), 420_000_040);
        assert!(IndexConfig::default().check().is_ok());
    }

    #[test]
    fn file_names_are_utc_times_and_parse_back() {
        assert_eq!(file_name(0), "19700101000000000");
        assert_eq!(file_name(1_700_000_000_123), "20231114221320123");
        assert_eq!(file_name(951_782_400_000), "20000229000000000");
        for ms in [0, 1_700_000_000_123, 951_782_400_000, 4_102_444_799_999] {
            assert_eq!(parse_file_name(&file_name(ms)), Some(ms));
        }
        assert_eq!(parse_file_name("2023111422132012"), None);
        assert_eq!(parse_file_name("20231314221320123"), None);
        assert_eq!(parse_file_name("2023111422132012x"), None);
    }

    #[test]
    fn key_hash_is_javas_absolute_string_hash() {
        // Java: "TopicTest#OrderID188".hashCode() == -1231271670.
        assert_eq!(index_key_hash("TopicTest#OrderID188"), 1_231_271_670);
        assert_eq!(key_hash("T", "k1"), 2_539_445);
        for (topic, key) in [
            ("TopicTest", "OrderID188"),
            ("主题", "ключ\u{1F600}"),
            ("", ""),
        ] {
            assert_eq!(key_hash(topic, key), index_key_hash(&index_key(topic, key)));
        }
        // Math.abs(Integer.MIN_VALUE) stays negative in Java; RocketMQ maps it to 0.
        assert_eq!(index_key_hash("polygenelubricants"), 0);
    }

    #[test]
    fn layout_matches_rocketmq_byte_for_byte() {
        let s = MemStorage::new();
        let c = cfg(10, 5);
        let mut index = Index::open(s.clone(), c).unwrap();
        let mut r = rec("T", "k1", 4096, 1_700_000_000_000);
        r.uniq_key = Some(b"U");
        assert_eq!(index.put(&r, 1_700_000_000_500).unwrap(), 2);
        index.flush().unwrap();
        let name = "index/20231114221320500";
        assert_eq!(s.list("index").unwrap(), vec!["20231114221320500"]);
        assert_eq!(s.len(name).unwrap(), Some(40 + 10 * 4 + 5 * 20));
        let h = IndexHeader::decode(&s.read_at(name, 0, 40).unwrap()[..].try_into().unwrap());
        assert_eq!(
            h,
            IndexHeader {
                begin_timestamp: 1_700_000_000_000,
                end_timestamp: 1_700_000_000_000,
                begin_phy_offset: 4096,
                end_phy_offset: 4096,
                hash_slot_count: 2,
                index_count: 3,
            }
        );
        // Entry 1 is UNIQ_KEY, entry 2 is k1; each heads its bucket.
        let uniq = key_hash("T", "U");
        let slot = |hash: i32| 40 + u64::from(hash.unsigned_abs() % 10) * 4;
        assert_eq!(
            &s.read_at(name, slot(uniq), 4).unwrap()[..],
            &1i32.to_be_bytes()
        );
        assert_eq!(
            &s.read_at(name, slot(2_539_445), 4).unwrap()[..],
            &2i32.to_be_bytes()
        );
        let raw = s.read_at(name, 40 + 40 + 2 * 20, 20).unwrap();
        let mut want = Vec::new();
        want.extend(2_539_445i32.to_be_bytes());
        want.extend(4096i64.to_be_bytes());
        want.extend(0i32.to_be_bytes());
        want.extend(0i32.to_be_bytes());
        assert_eq!(&raw[..], &want[..]);
    }

    fn all_bytes(s: &MemStorage) -> Vec<(String, bytes::Bytes)> {
        s.list("index")
            .unwrap()
            .into_iter()
            .map(|name| {
                let path = format!("index/{name}");
                let len = s.len(&path).unwrap().unwrap();
                let bytes = s.read_at(&path, 0, len).unwrap();
                (path, bytes)
            })
            .collect()
    }

    #[test]
    fn a_reopened_file_learns_its_slots_and_stores_what_one_life_does() {
        // 2500 slots: pages of 1024 slots, the last one partial. Keys repeat, so slots already
        // used on storage (chains) meet slots known to be empty.
        let c = cfg(2500, 10_000);
        let records: Vec<(String, i64)> =
            (0..3000).map(|i| (format!("k{}", i % 1700), i)).collect();
        let put = |index: &mut Index<MemStorage>, part: &[(String, i64)]| {
            for (key, phys) in part {
                index
                    .put(&rec("T", key, *phys * 10, 1_000 + phys), 5)
                    .unwrap();
            }
        };
        let one_life = MemStorage::new();
        let mut index = Index::open(one_life.clone(), c).unwrap();
        put(&mut index, &records);
        index.flush().unwrap();

        let two_lives = MemStorage::new();
        let mut index = Index::open(two_lives.clone(), c).unwrap();
        put(&mut index, &records[..1200]);
        index.flush().unwrap();
        drop(index);
        let mut index = Index::open(two_lives.clone(), c).unwrap();
        assert_eq!(index.recover(1_000_000, true).unwrap(), 11_990);
        put(&mut index, &records[1200..]);
        index.flush().unwrap();
        assert_eq!(all_bytes(&one_life), all_bytes(&two_lives));
        assert_eq!(find(&index, "k3"), vec![17_030, 30]);
    }

    #[test]
    fn put_all_stores_what_one_put_per_record_does() {
        // Two slots and five entries per file: batches cross file boundaries, share buckets
        // within a batch, and mix re-dispatched, rolled-back and keyless records.
        let keys = ["a b", "", "c", "a a", "d e f", "b", "", "g"];
        let mut recs: Vec<IndexRecord<'_>> = (0..24)
            .map(|i| IndexRecord {
                uniq_key: (i % 3 != 0).then_some([&b"u1"[..], b"u2", b"u3"][i % 3]),
                sys_flag: if i % 7 == 6 {
                    TRANSACTION_ROLLBACK_TYPE
                } else {
                    0
                },
                ..rec(
                    "T",
                    keys[i % keys.len()],
                    i as i64 * 100,
                    1_000 + i as i64 * 700,
                )
            })
            .collect();
        // A re-dispatched record in the middle of a batch is skipped by both.
        recs.insert(10, recs[5]);
        let one = MemStorage::new();
        let mut by_one = Index::open(one.clone(), cfg(2, 5)).unwrap();
        let all = MemStorage::new();
        let mut by_all = Index::open(all.clone(), cfg(2, 5)).unwrap();
        let mut added = (0, 0);
        for (i, batch) in recs.chunks(7).enumerate() {
            for r in batch {
                added.0 += by_one.put(r, i as u64).unwrap();
            }
            added.1 += by_all.put_all(batch, i as u64).unwrap();
            assert_eq!(
                by_one.files().collect::<Vec<_>>(),
                by_all.files().collect::<Vec<_>>()
            );
        }
        assert_eq!(added.0, added.1);
        assert!(all.list("index").unwrap().len() > 3);
        by_one.flush().unwrap();
        by_all.flush().unwrap();
        assert_eq!(all_bytes(&one), all_bytes(&all));
        assert_eq!(find(&by_all, "a"), find(&by_one, "a"));
    }

    #[test]
    fn a_failed_put_all_counts_no_unwritten_key() {
        let s = MemStorage::new();
        let mut index = Index::open(s.clone(), cfg(7, 100)).unwrap();
        index.put(&rec("T", "k", 0, 1000), 0).unwrap();
        let before = *index.files().next().unwrap().1;
        s.fail_write_after(1);
        let batch = [rec("T", "k x", 100, 2000), rec("T", "k", 200, 3000)];
        assert!(index.put_all(&batch, 0).is_err());
        assert_eq!(*index.files().next().unwrap().1, before);
        // The retry stores them as if nothing had failed.
        assert_eq!(index.put_all(&batch, 0).unwrap(), 3);
        assert_eq!(find(&index, "k"), vec![200, 100, 0]);
        assert_eq!(find(&index, "x"), vec![100]);
    }

    #[test]
    fn collisions_and_chains_across_two_files() {
        let s = MemStorage::new();
        // One slot: every key shares a bucket. Three entries per file.
        let mut index = Index::open(s.clone(), cfg(1, 4)).unwrap();
        index.put(&rec("T", "a b", 100, 1000), 1).unwrap();
        index.put(&rec("T", "a", 200, 2000), 2).unwrap();
        index.put(&rec("T", "c a", 300, 3000), 3).unwrap();
        index.put(&rec("T", "b", 400, 4000), 4).unwrap();
        assert_eq!(s.list("index").unwrap().len(), 2);
        assert_eq!(find(&index, "a"), vec![300, 200, 100]);
        assert_eq!(find(&index, "b"), vec![400, 100]);
        assert_eq!(find(&index, "c"), vec![300]);
        assert_eq!(find(&index, "d"), Vec::<i64>::new());
        // Another topic with the same key is a different key.
        assert!(index
            .lookup("U", "a", 64, 0, i64::MAX)
            .unwrap()
            .phys_offsets
            .is_empty());
        let got = index.lookup("T", "a", 2, 0, i64::MAX).unwrap();
        assert_eq!(got.phys_offsets, vec![300, 200]);
        assert_eq!(got.last_update_phy_offset, 400);
        assert_eq!(got.last_update_timestamp, 4000);
        // The files survive a clean restart.
        index.flush().unwrap();
        s.crash(None);
        let mut index = Index::open(s, cfg(1, 4)).unwrap();
        assert_eq!(index.recover(500, true).unwrap(), 400);
        assert_eq!(find(&index, "a"), vec![300, 200, 100]);
    }

    #[test]
    fn time_range_filters_and_stops_early() {
        let s = MemStorage::new();
        let mut index = Index::open(s, cfg(7, 4)).unwrap();
        const T0: i64 = 1_700_000_000_000;
        for i in 0..9 {
            index.put(&rec("T", "k", i * 10, T0 + i * 1000), 0).unwrap();
        }
        let range = |b, e| {
            index
                .lookup("T", "k", 64, T0 + b, T0 + e)
                .unwrap()
                .phys_offsets
        };
        assert_eq!(range(2000, 4000), vec![40, 30, 20]);
        assert_eq!(range(7500, 100_000), vec![80]);
        assert_eq!(range(0, 0), vec![0]);
        assert_eq!(range(100_000, 200_000), Vec::<i64>::new());
        // Time is kept in whole seconds from the file's first entry.
        assert_eq!(range(2001, 2999), Vec::<i64>::new());
        // A file whose first entry has no store time (0) keeps no times at all, as in
        // RocketMQ: every entry reads as that time.
        let mut index = Index::open(MemStorage::new(), cfg(7, 4)).unwrap();
        index.put(&rec("T", "k", 0, 0), 0).unwrap();
        index.put(&rec("T", "k", 10, 5000), 0).unwrap();
        assert_eq!(
            index.lookup("T", "k", 64, 0, 0).unwrap().phys_offsets,
            vec![10, 0]
        );
    }

    #[test]
    fn re_dispatch_and_rollback_records_are_skipped() {
        let s = MemStorage::new();
        let mut index = Index::open(s, cfg(7, 100)).unwrap();
        assert_eq!(index.put(&rec("T", "k", 100, 1000), 0).unwrap(), 1);
        assert_eq!(index.put(&rec("T", "k", 200, 1000), 0).unwrap(), 1);
        assert_eq!(index.put(&rec("T", "k", 100, 1000), 0).unwrap(), 0);
        // The record at the end offset is indexed again (RocketMQ's `<`); lookups hide it.
        assert_eq!(index.put(&rec("T", "k", 200, 1000), 0).unwrap(), 1);
        assert_eq!(find(&index, "k"), vec![200, 100]);
        for (flag, added) in [
            (TRANSACTION_ROLLBACK_TYPE, 0),
            (TRANSACTION_PREPARED_TYPE, 1),
            (TRANSACTION_COMMIT_TYPE, 1),
        ] {
            let r = IndexRecord {
                sys_flag: flag,
                ..rec("T", "x", 300, 1000)
            };
            assert_eq!(index.put(&r, 0).unwrap(), added);
        }
        // Empty tokens and a missing KEYS add nothing.
        let r = IndexRecord {
            keys: Some(b"  "),
            ..rec("T", "", 400, 1000)
        };
        assert_eq!(index.put(&r, 0).unwrap(), 0);
    }

    #[test]
    fn crash_recovery_rebuilds_the_newest_file_from_its_flushed_entries() {
        let s = MemStorage::new();
        let mut index = Index::open(s.clone(), cfg(3, 100)).unwrap();
        for i in 0..5 {
            index.put(&rec("T", "k", i * 10, 1000), 0).unwrap();
        }
        index.flush().unwrap();
        for i in 5..8 {
            index.put(&rec("T", "k", i * 10, 1000), 0).unwrap();
        }
        // The slot already points at entry 8, whose bytes are lost: without the rebuild the
        // chain to entries 1..5 would be cut.
        s.crash(Some(3));
        let mut index = Index::open(s.clone(), cfg(3, 100)).unwrap();
        let from = index.recover(1000, false).unwrap();
        assert_eq!(from, 40);
        assert_eq!(find(&index, "k"), vec![40, 30, 20, 10, 0]);
        for i in 4..8 {
            index.put(&rec("T", "k", i * 10, 1000), 0).unwrap();
        }
        assert_eq!(find(&index, "k"), vec![70, 60, 50, 40, 30, 20, 10, 0]);
    }

    #[test]
    fn recovery_cuts_entries_past_the_commit_log_end() {
        let s = MemStorage::new();
        let mut index = Index::open(s.clone(), cfg(3, 4)).unwrap();
        for i in 0..7 {
            index
                .put(&rec("T", "k", i * 10, 1000 + i * 1000), i as u64)
                .unwrap();
        }
        index.flush().unwrap();
        assert_eq!(s.list("index").unwrap().len(), 3);
        // The commit log ends at 25: entries 30.. go, the second file keeps one entry and the
        // third file is deleted.
        let mut index = Index::open(s.clone(), cfg(3, 4)).unwrap();
        assert_eq!(index.recover(25, true).unwrap(), 20);
        assert_eq!(s.list("index").unwrap().len(), 1);
        assert_eq!(find(&index, "k"), vec![20, 10, 0]);
        let mut index = Index::open(s.clone(), cfg(3, 4)).unwrap();
        assert_eq!(index.recover(15, false).unwrap(), 10);
        assert_eq!(find(&index, "k"), vec![10, 0]);
        assert_eq!(index.files().next().unwrap().1.end_timestamp, 2999);
        let mut index = Index::open(s.clone(), cfg(3, 4)).unwrap();
        assert_eq!(index.recover(0, false).unwrap(), 0);
        assert!(s.list("index").unwrap().is_empty());
    }

    #[test]
    fn a_damaged_header_drops_the_file_and_later_ones() {
        let s = MemStorage::new();
        let mut index = Index::open(s.clone(), cfg(3, 4)).unwrap();
        for i in 0..7 {
            index.put(&rec("T", "k", i * 10, 1000), i as u64).unwrap();
        }
        index.flush().unwrap();
        let names = s.list("index").unwrap();
        // indexCount of the second file becomes huge.
        s.corrupt_byte(&format!("index/{}", names[1]), 36).unwrap();
        let mut index = Index::open(s.clone(), cfg(3, 4)).unwrap();
        assert_eq!(index.recover(1000, true).unwrap(), 20);
        assert_eq!(s.list("index").unwrap(), vec![names[0].clone()]);
        s.create("index/junk", 10).unwrap();
        assert!(matches!(
            Index::open(s.clone(), cfg(3, 4)),
            Err(IndexError::BadFileName { .. })
        ));
        s.delete("index/junk").unwrap();
        s.create("index/20000101000000000", 10).unwrap();
        assert!(matches!(
            Index::open(s, cfg(3, 4)),
            Err(IndexError::BadFileSize { len: 10, .. })
        ));
    }

    #[test]
    fn retention_deletes_files_wholly_below_the_min_offset() {
        let s = MemStorage::new();
        let mut index = Index::open(s.clone(), cfg(3, 4)).unwrap();
        for i in 0..7 {
            index.put(&rec("T", "k", i * 10, 1000), 0).unwrap();
        }
        let names = s.list("index").unwrap();
        assert_eq!(names.len(), 3);
        // The clock did not move, yet names still sort in creation order.
        assert!(names.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(index.delete_below(20).unwrap(), 0);
        assert_eq!(index.delete_below(21).unwrap(), 1);
        assert_eq!(index.delete_below(1_000).unwrap(), 1);
        assert_eq!(s.list("index").unwrap(), vec![names[2].clone()]);
        assert_eq!(find(&index, "k"), vec![60]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// A record with keys drawn from a small set; time advances by `dt` seconds.
        Put {
            keys: Vec<u8>,
            uniq: Option<u8>,
            dt: u8,
        },
        Lookup {
            key: u8,
            max: u8,
            from: u8,
            len: u8,
        },
        Flush,
        /// Crash (tearing some writes), then recover as the store would.
        Crash {
            tear: Option<u64>,
            cut: u8,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (proptest::collection::vec(0u8..6, 0..4), proptest::option::of(0u8..6), 0u8..3)
                .prop_map(|(keys, uniq, dt)| Op::Put { keys, uniq, dt }),
            3 => (0u8..7, 1u8..8, any::<u8>(), any::<u8>())
                .prop_map(|(key, max, from, len)| Op::Lookup { key, max, from, len }),
            1 => Just(Op::Flush),
            1 => (proptest::option::of(any::<u64>()), any::<u8>())
                .prop_map(|(tear, cut)| Op::Crash { tear, cut }),
        ]
    }

    fn key_name(k: u8) -> String {
        format!("key{k}")
    }

    #[derive(Debug, Clone)]
    struct Stored {
        keys: String,
        uniq: Option<String>,
        phys: i64,
        ts: i64,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn insert_and_lookup_match_a_hashmap_model(
            slots in 1u32..5,
            entries in 2u32..9,
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let s = MemStorage::new();
            let c = cfg(slots, entries);
            let mut index = Index::open(s.clone(), c).unwrap();
            // Every record the commit log holds, in order; the model index is derived from it.
            let mut log: Vec<Stored> = Vec::new();
            let mut now = 1_000_000i64;
            for op in ops {
                match op {
                    Op::Put { keys, uniq, dt } => {
                        now += i64::from(dt) * 1000;
                        let keys: Vec<String> = keys.into_iter().map(key_name).collect();
                        let stored = Stored {
                            keys: keys.join(" "),
                            uniq: uniq.map(key_name),
                            phys: log.last().map_or(0, |r| r.phys + 100),
                            ts: now,
                        };
                        let r = IndexRecord {
                            topic: "T",
                            keys: Some(stored.keys.as_bytes()),
                            uniq_key: stored.uniq.as_deref().map(str::as_bytes),
                            phys_offset: stored.phys,
                            store_timestamp_ms: stored.ts,
                            sys_flag: 0,
                        };
                        index.put(&r, now as u64).unwrap();
                        log.push(stored);
                    }
                    Op::Lookup { key, max, from, len } => {
                        let begin = 1_000_000 + i64::from(from) * 1000;
                        let end = begin + i64::from(len) * 1000;
                        let hash = key_hash("T", &key_name(key));
                        let mut want: Vec<i64> = Vec::new();
                        for r in log.iter().rev() {
                            let matches = r.uniq.iter().map(String::as_str)
                                .chain(r.keys.split(' ').filter(|k| !k.is_empty()))
                                .any(|k| key_hash("T", k) == hash);
                            if matches && r.ts >= begin && r.ts <= end && want.len() < usize::from(max) {
                                want.push(r.phys);
                            }
                        }
                        let got = index.lookup("T", &key_name(key), usize::from(max), begin, end).unwrap();
                        prop_assert_eq!(got.phys_offsets, want);
                    }
                    Op::Flush => index.flush().unwrap(),
                    Op::Crash { tear, cut } => {
                        s.crash(tear);
                        // The commit log may have lost its tail too.
                        let keep = log.len() * usize::from(cut) / 255;
                        log.truncate(keep);
                        let end = log.last().map_or(0, |r| r.phys + 100);
                        index = Index::open(s.clone(), c).unwrap();
                        let from = index.recover(end, false).unwrap();
                        prop_assert!(from <= end);
                        for r in log.iter().filter(|r| r.phys >= from) {
                            let rec = IndexRecord {
                                topic: "T",
                                keys: Some(r.keys.as_bytes()),
                                uniq_key: r.uniq.as_deref().map(str::as_bytes),
                                phys_offset: r.phys,
                                store_timestamp_ms: r.ts,
                                sys_flag: 0,
                            };
                            index.put(&rec, now as u64).unwrap();
                        }
                    }
                }
            }
            // A final check of every key over all time.
            for key in 0..7u8 {
                let hash = key_hash("T", &key_name(key));
                let want: Vec<i64> = log.iter().rev().filter(|r| {
                    r.uniq.iter().map(String::as_str)
                        .chain(r.keys.split(' ').filter(|k| !k.is_empty()))
                        .any(|k| key_hash("T", k) == hash)
                }).map(|r| r.phys).collect();
                let got = index.lookup("T", &key_name(key), usize::MAX, 0, i64::MAX).unwrap();
                prop_assert_eq!(got.phys_offsets, want);
            }
        }
    }
}
