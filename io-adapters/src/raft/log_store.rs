//! The controller's raft log and vote, kept durable through [`Storage`] (openraft's
//! `RaftLogStorage`).
//!
//! On disk the log is a journal of operations in fixed-size segments `raft/log/<n>` (n = 0, 1,
//! ...): each record is `[len: u32 BE][crc32 of payload: u32 BE][payload: JSON]`, the payload one
//! of append-an-entry, truncate-from-an-index or purge-up-to-a-log-id. Truncation and purging are
//! records too, so nothing is ever rewritten in place. A zero length marks the end of a
//! segment's records (segments are preallocated with zeros); a record that does not fit the rest
//! of a segment starts the next one. Recovery replays the journal into memory (the controller's
//! log is small: a few entries per broker failover) and stops at the first record whose length,
//! checksum or JSON is bad: that is a write torn by a crash, so the rest of its segment is zeroed
//! and later segments deleted, and appends continue from there.
//!
//! The vote and the committed log id are small files replaced atomically (temp file, sync,
//! rename), so a crash leaves either the old or the new one. `append` reports its entries
//! flushed only after the sync covering them returned.
//!
//! Left out: reclaiming space. Purged entries stay in the journal (the controller never purges:
//! it takes no snapshots, see `state_machine.rs`).

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{OptionalSend, StorageIOError};
use serde::{Deserialize, Serialize};
use store_core::storage::Storage;

use super::types::{LogEntry, LogId, StorageError, TypeConfig, Vote};

/// Directory of the journal's segments.
const LOG_DIR: &str = "raft/log";
/// The current vote.
const VOTE_FILE: &str = "raft/vote";
/// The last committed log id known to this node (lets a restart re-apply the log at once).
const COMMITTED_FILE: &str = "raft/committed";
/// Bytes per journal segment.
pub const SEGMENT_LEN: u64 = 4 << 20;
/// Length and checksum before each payload.
const HEADER_LEN: usize = 8;

/// Why the log store could not read or write.
#[derive(Debug, thiserror::Error)]
pub enum LogStoreError {
    #[error(transparent)]
    Storage(#[from] store_core::storage::StorageError),
    #[error("{name}: damaged: {reason}")]
    Corrupt { name: String, reason: String },
    #[error("a log record of {len} bytes does not fit a {SEGMENT_LEN}-byte segment")]
    TooLarge { len: usize },
    #[error("cannot encode a log record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One journal operation.
#[derive(Debug, Serialize, Deserialize)]
enum Record {
    Append(LogEntry),
    /// Drop every entry at or after this index (a new leader overwrote them).
    Truncate {
        since: u64,
    },
    /// Entries up to and including this id are no longer needed.
    Purge {
        upto: LogId,
    },
}

/// What the bytes at a journal position hold.
#[derive(Debug, PartialEq)]
enum Scan<'a> {
    /// A whole record with a good checksum: its payload.
    Record(&'a [u8]),
    /// No more records in this segment.
    End,
    /// A torn or damaged record.
    Bad(&'static str),
}

fn scan(buf: &[u8]) -> Scan<'_> {
    let Some((header, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
        return Scan::End;
    };
    let (len, crc) = header.split_at(4);
    let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    let crc = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if len == 0 {
        return if crc == 0 {
            Scan::End
        } else {
            Scan::Bad("zero length with a checksum")
        };
    }
    let Some(payload) = rest.get(..len) else {
        return Scan::Bad("length runs past the segment");
    };
    if crc32fast::hash(payload) != crc {
        return Scan::Bad("checksum mismatch");
    }
    Scan::Record(payload)
}

fn frame(payload: &[u8]) -> Result<Vec<u8>, LogStoreError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| u64::from(l) + HEADER_LEN as u64 <= SEGMENT_LEN && l > 0)
        .ok_or(LogStoreError::TooLarge { len: payload.len() })?;
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

fn segment_name(n: u64) -> String {
    format!("{LOG_DIR}/{n:020}")
}

/// The log store; clones share it (openraft's log reader is a clone).
pub struct LogStore<S> {
    inner: Arc<Mutex<Inner<S>>>,
}

impl<S> Clone for LogStore<S> {
    fn clone(&self) -> LogStore<S> {
        LogStore {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<S> {
    storage: Arc<S>,
    logs: BTreeMap<u64, LogEntry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
    committed: Option<LogId>,
    /// The segment appends go to, and where in it.
    segment: u64,
    write_pos: u64,
}

impl<S: Storage + Send + Sync + 'static> LogStore<S> {
    /// Opens the log in `storage`, replaying its journal (see the module docs for what a damaged
    /// record does). A damaged vote or committed file is an error: guessing a vote could let
    /// this node vote twice in a term.
    pub fn open(storage: Arc<S>) -> Result<LogStore<S>, LogStoreError> {
        let vote = read_small(&*storage, VOTE_FILE)?;
        let committed = read_small(&*storage, COMMITTED_FILE)?;
        let mut numbers: Vec<u64> = storage
            .list(LOG_DIR)?
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        numbers.sort_unstable();
        let mut inner = Inner {
            storage,
            logs: BTreeMap::new(),
            last_purged: None,
            vote,
            committed,
            segment: 0,
            write_pos: 0,
        };
        if numbers.is_empty() {
            inner.storage.create(&segment_name(0), SEGMENT_LEN)?;
        }
        for (i, &n) in numbers.iter().enumerate() {
            inner.segment = n;
            inner.write_pos = 0;
            if !inner.replay_segment(n)? {
                for &later in numbers.get(i + 1..).unwrap_or_default() {
                    inner.storage.delete(&segment_name(later))?;
                }
                break;
            }
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The entries currently in the log, in index order (for tests and diagnostics).
    pub fn entries(&self) -> Vec<LogEntry> {
        self.lock().logs.values().cloned().collect()
    }
}

impl<S: Storage> Inner<S> {
    /// Replays one segment, leaving `write_pos` after its last good record. Returns false if it
    /// ended on a damaged record (which is zeroed here): the journal ends in this segment.
    fn replay_segment(&mut self, n: u64) -> Result<bool, LogStoreError> {
        let name = segment_name(n);
        let len = self.storage.len(&name)?.unwrap_or(0);
        let data = self.storage.read_at(&name, 0, len)?;
        let mut pos = 0usize;
        loop {
            let rest = data.get(pos..).unwrap_or_default();
            let reason = match scan(rest) {
                Scan::End => return Ok(true),
                Scan::Record(payload) => match serde_json::from_slice::<Record>(payload) {
                    Ok(record) => {
                        self.replay(record);
                        pos += HEADER_LEN + payload.len();
                        self.write_pos = pos as u64;
                        continue;
                    }
                    Err(_) => "undecodable payload",
                },
                Scan::Bad(reason) => reason,
            };
            tracing::warn!(segment = %name, offset = pos, reason, "raft log ends in a damaged record (torn write); dropping it");
            let zeros = vec![0u8; data.len() - pos];
            self.storage.write_at(&name, pos as u64, &zeros)?;
            self.storage.sync(&name, pos as u64, zeros.len() as u64)?;
            return Ok(false);
        }
    }

    fn replay(&mut self, record: Record) {
        match record {
            Record::Append(entry) => {
                self.logs.insert(entry.log_id.index, entry);
            }
            Record::Truncate { since } => {
                self.logs.split_off(&since);
            }
            Record::Purge { upto } => {
                self.logs = self.logs.split_off(&(upto.index + 1));
                if self.last_purged.is_none_or(|p| p < upto) {
                    self.last_purged = Some(upto);
                }
            }
        }
    }

    /// Writes `records` to the journal and syncs them; replays them into memory only once they
    /// are durable.
    fn write(&mut self, records: Vec<Record>) -> Result<(), LogStoreError> {
        // (segment, start, end) of what this call wrote, to sync.
        let mut dirty: Vec<(u64, u64, u64)> = Vec::new();
        for record in &records {
            let bytes = frame(&serde_json::to_vec(record)?)?;
            if self.write_pos + bytes.len() as u64 > SEGMENT_LEN {
                self.segment += 1;
                self.write_pos = 0;
                self.storage
                    .create(&segment_name(self.segment), SEGMENT_LEN)?;
            }
            self.storage
                .write_at(&segment_name(self.segment), self.write_pos, &bytes)?;
            let end = self.write_pos + bytes.len() as u64;
            match dirty.last_mut() {
                Some((seg, _, e)) if *seg == self.segment => *e = end,
                _ => dirty.push((self.segment, self.write_pos, end)),
            }
            self.write_pos = end;
        }
        for (seg, start, end) in dirty {
            self.storage.sync(&segment_name(seg), start, end - start)?;
        }
        for record in records {
            self.replay(record);
        }
        Ok(())
    }
}

/// Replaces `name` atomically and durably with the framed JSON of `value`.
fn write_small<S: Storage, T: Serialize>(
    storage: &S,
    name: &str,
    value: &T,
) -> Result<(), LogStoreError> {
    let bytes = frame(&serde_json::to_vec(value)?)?;
    let tmp = format!("{name}.tmp");
    storage.delete(&tmp)?;
    storage.create(&tmp, bytes.len() as u64)?;
    storage.write_at(&tmp, 0, &bytes)?;
    storage.sync(&tmp, 0, bytes.len() as u64)?;
    storage.rename(&tmp, name)?;
    Ok(())
}

/// Reads what [`write_small`] wrote; `None` if the file does not exist.
fn read_small<S: Storage, T: for<'de> Deserialize<'de>>(
    storage: &S,
    name: &str,
) -> Result<Option<T>, LogStoreError> {
    let Some(len) = storage.len(name)? else {
        return Ok(None);
    };
    let data = storage.read_at(name, 0, len)?;
    let corrupt = |reason: &str| LogStoreError::Corrupt {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    match scan(&data) {
        Scan::Record(payload) => serde_json::from_slice(payload)
            .map(Some)
            .map_err(|e| corrupt(&e.to_string())),
        Scan::End => Err(corrupt("empty")),
        Scan::Bad(reason) => Err(corrupt(reason)),
    }
}

fn write_error(e: LogStoreError) -> StorageError {
    StorageIOError::write_logs(&e).into()
}

impl<S: Storage + Send + Sync + 'static> RaftLogReader<TypeConfig> for LogStore<S> {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<LogEntry>, StorageError> {
        Ok(self
            .lock()
            .logs
            .range(range)
            .map(|(_, e)| e.clone())
            .collect())
    }
}

impl<S: Storage + Send + Sync + 'static> RaftLogStorage<TypeConfig> for LogStore<S> {
    type LogReader = LogStore<S>;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let inner = self.lock();
        let last = inner.logs.values().next_back().map(|e| e.log_id);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last.or(inner.last_purged),
        })
    }

    async fn get_log_reader(&mut self) -> LogStore<S> {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut inner = self.lock();
        write_small(&*inner.storage, VOTE_FILE, vote)
            .map_err(|e| StorageError::from(StorageIOError::write_vote(&e)))?;
        inner.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        Ok(self.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let mut inner = self.lock();
        if let Some(id) = committed {
            write_small(&*inner.storage, COMMITTED_FILE, &id).map_err(write_error)?;
        }
        inner.committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = LogEntry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records = entries.into_iter().map(Record::Append).collect();
        self.lock().write(records).map_err(write_error)?;
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let since = log_id.index;
        self.lock()
            .write(vec![Record::Truncate { since }])
            .map_err(write_error)
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        self.lock()
            .write(vec![Record::Purge { upto: log_id }])
            .map_err(write_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::{CommittedLeaderId, EntryPayload};
    use store_core::storage::MemStorage;

    fn entry(term: u64, index: u64) -> LogEntry {
        LogEntry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(store: &LogStore<MemStorage>) -> Vec<(u64, u64)> {
        store
            .entries()
            .iter()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect()
    }

    /// `append` without openraft's flush callback (it cannot be built outside openraft).
    fn append(store: &LogStore<MemStorage>, entries: Vec<LogEntry>) {
        store
            .lock()
            .write(entries.into_iter().map(Record::Append).collect())
            .unwrap();
    }

    #[test]
    fn appends_truncates_and_purges_survive_a_crash() {
        let disk = MemStorage::new();
        let store = LogStore::open(Arc::new(disk.clone())).unwrap();
        append(&store, (1..=5).map(|i| entry(1, i)).collect());
        store
            .lock()
            .write(vec![Record::Truncate { since: 4 }])
            .unwrap();
        append(&store, vec![entry(2, 4)]);
        store
            .lock()
            .write(vec![Record::Purge {
                upto: entry(1, 1).log_id,
            }])
            .unwrap();
        let want = vec![(1, 2), (1, 3), (2, 4)];
        assert_eq!(indexes(&store), want);
        drop(store);
        disk.crash(None);
        let store = LogStore::open(Arc::new(disk)).unwrap();
        assert_eq!(indexes(&store), want);
        assert_eq!(store.lock().last_purged, Some(entry(1, 1).log_id));
    }

    #[test]
    fn a_torn_tail_is_dropped_and_appends_continue_after_the_good_prefix() {
        for keep in [1u64, 5, 9, 30] {
            let disk = MemStorage::new();
            let store = LogStore::open(Arc::new(disk.clone())).unwrap();
            append(&store, vec![entry(1, 1), entry(1, 2)]);
            // A write that never got its sync: the crash tears it after `keep` bytes.
            let bytes = frame(&serde_json::to_vec(&Record::Append(entry(1, 3))).unwrap()).unwrap();
            let pos = store.lock().write_pos;
            disk.write_at(&segment_name(0), pos, &bytes).unwrap();
            drop(store);
            disk.crash(Some(keep));
            let store = LogStore::open(Arc::new(disk.clone())).unwrap();
            assert_eq!(indexes(&store), vec![(1, 1), (1, 2)], "keep {keep}");
            append(&store, vec![entry(2, 3)]);
            drop(store);
            disk.crash(None);
            let store = LogStore::open(Arc::new(disk)).unwrap();
            assert_eq!(indexes(&store), vec![(1, 1), (1, 2), (2, 3)], "keep {keep}");
        }
    }

    #[test]
    fn a_damaged_record_ends_the_log_and_later_segments_go() {
        let disk = MemStorage::new();
        let store = LogStore::open(Arc::new(disk.clone())).unwrap();
        append(&store, vec![entry(1, 1), entry(1, 2)]);
        let second = frame(&serde_json::to_vec(&Record::Append(entry(1, 1))).unwrap())
            .unwrap()
            .len() as u64;
        // Force a second segment, then damage the first segment's second record.
        store.lock().write_pos = SEGMENT_LEN - 4;
        append(&store, vec![entry(1, 3)]);
        assert_eq!(disk.list(LOG_DIR).unwrap().len(), 2);
        drop(store);
        disk.corrupt_byte(&segment_name(0), second + 10).unwrap();
        let store = LogStore::open(Arc::new(disk.clone())).unwrap();
        assert_eq!(indexes(&store), vec![(1, 1)]);
        assert_eq!(disk.list(LOG_DIR).unwrap().len(), 1);
    }

    #[test]
    fn records_roll_over_to_new_segments_and_replay_in_order() {
        let disk = MemStorage::new();
        let store = LogStore::open(Arc::new(disk.clone())).unwrap();
        append(&store, vec![entry(1, 1)]);
        store.lock().write_pos = SEGMENT_LEN - 20;
        append(&store, vec![entry(1, 2), entry(1, 3)]);
        drop(store);
        disk.crash(None);
        let store = LogStore::open(Arc::new(disk)).unwrap();
        assert_eq!(indexes(&store), vec![(1, 1), (1, 2), (1, 3)]);
    }

    #[tokio::test]
    async fn the_vote_and_committed_id_are_durable_and_replaced_whole() {
        let disk = MemStorage::new();
        let mut store = LogStore::open(Arc::new(disk.clone())).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), None);
        store.save_vote(&Vote::new(1, 1)).await.unwrap();
        store.save_vote(&Vote::new(2, 3)).await.unwrap();
        store
            .save_committed(Some(entry(2, 7).log_id))
            .await
            .unwrap();
        drop(store);
        disk.crash(Some(3));
        let mut store = LogStore::open(Arc::new(disk.clone())).unwrap();
        assert_eq!(store.read_vote().await.unwrap(), Some(Vote::new(2, 3)));
        assert_eq!(
            store.read_committed().await.unwrap(),
            Some(entry(2, 7).log_id)
        );
        drop(store);
        disk.corrupt_byte(VOTE_FILE, 9).unwrap();
        assert!(matches!(
            LogStore::open(Arc::new(disk)),
            Err(LogStoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn scan_tells_end_record_and_damage_apart() {
        assert_eq!(scan(&[]), Scan::End);
        assert_eq!(scan(&[0; 8]), Scan::End);
        let rec = frame(b"abc").unwrap();
        assert_eq!(scan(&rec), Scan::Record(b"abc"));
        assert!(matches!(scan(&rec[..9]), Scan::Bad(_)));
        let mut bad = rec.clone();
        bad[9] ^= 1;
        assert!(matches!(scan(&bad), Scan::Bad(_)));
    }
}
