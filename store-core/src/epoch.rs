//! The epoch file: which controller-mode master epoch wrote which stretch of the commit log
//! (RocketMQ's `EpochFileCache` over its `CheckpointFile`), kept as `epochFileCheckpoint` in the
//! store root.
//!
//! Each entry `(epoch, start_offset)` says that from `start_offset` on the log was written by
//! the master of `epoch`, up to the next entry's start (the last one runs to the log's end).
//! A broker appends an entry when it becomes master (its commit-log end as the start) and, as a
//! slave, when its master's data of a new epoch arrives. Comparing two brokers' entries finds
//! the offset up to which their logs must agree ([`EpochFile::consistent_point`]), which is
//! where a slave cuts a diverged tail before replicating.
//!
//! File format (RocketMQ's, `\n` line ends): the entry count, then the CRC-32 of the entry
//! lines (each line with its `\n`) masked to 31 bits (0 means "not checked"), then one
//! `epoch-startOffset` line per entry, oldest first:
//!
//! ```text
//! 2
//! 773307083
//! 7-7000
//! 8-8000
//! ```
//!
//! It is written atomically with the previous version kept as `.bak`
//! ([`crate::config::write_atomically`]); a torn or damaged file falls back to the backup.
//!
//! Rules beyond RocketMQ's, each keeping the fencing information exact:
//! - epochs strictly increase and start offsets never decrease. RocketMQ also refuses an entry
//!   starting where the previous one starts (an epoch that wrote nothing), and then carries on
//!   without the new epoch; here the empty epoch stays in the file and the new one follows it.
//! - re-appending the newest epoch at or past its start is a no-op (RocketMQ replaces the entry,
//!   moving the epoch's start to the current end and attributing its data to the epoch before).
//! - a file holding zero entries is written as such (count 0) and read back as empty; RocketMQ
//!   never writes an empty list and reads an empty file as "try the backup".
//!
//! Left out: the store wiring (the store owns one, see `MessageStore::epochs`), and deciding
//! when to append or truncate (the HA layer).

use crate::config::{self, ConfigError};
use crate::storage::{Storage, StorageError};

/// Name of the epoch file under the store root (RocketMQ's `storePathEpochFile` default).
pub const EPOCH_FILE: &str = "epochFileCheckpoint";

/// One epoch's start in the commit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EpochEntry {
    /// The master epoch the controller assigned.
    pub epoch: u32,
    /// Commit-log offset of the epoch's first byte.
    pub start_offset: u64,
}

/// Why an epoch operation failed. Nothing changed, in memory or on storage, unless the variant
/// is `Storage` (then the file may hold either version, never a mix).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EpochError {
    /// The epoch is older than the newest one recorded (a fenced master's).
    #[error("epoch {epoch} is older than the last recorded epoch {last}")]
    Stale { epoch: u32, last: u32 },
    /// The entry would start before the newest recorded epoch does.
    #[error("epoch {epoch} would start at {start_offset}, before epoch {last} (starting at {last_start})")]
    StartBehind {
        epoch: u32,
        start_offset: u64,
        last: u32,
        last_start: u64,
    },
    /// Neither the file nor its backup is a valid epoch file.
    #[error("{name}: unreadable and no usable backup: {reason}")]
    Corrupt { name: String, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<ConfigError> for EpochError {
    fn from(e: ConfigError) -> EpochError {
        match e {
            ConfigError::Storage(e) => EpochError::Storage(e),
            ConfigError::Corrupt { name, reason } | ConfigError::Encode { name, reason } => {
                EpochError::Corrupt { name, reason }
            }
        }
    }
}

/// The epoch entries, oldest first, mirrored in [`EPOCH_FILE`]. Every change is written to the
/// file before it is made in memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EpochFile {
    entries: Vec<EpochEntry>,
}

impl EpochFile {
    /// No entries (a store that never ran in controller mode). Nothing is written.
    #[must_use]
    pub fn new() -> EpochFile {
        EpochFile::default()
    }

    /// Entries from elsewhere (a master's, received in the HA handshake), checked for order.
    ///
    /// # Errors
    /// `Stale` or `StartBehind` for the first entry out of order.
    pub fn from_entries(entries: Vec<EpochEntry>) -> Result<EpochFile, EpochError> {
        check_order(&entries)?;
        Ok(EpochFile { entries })
    }

    /// Reads [`EPOCH_FILE`], falling back to its `.bak`; empty if neither exists.
    ///
    /// # Errors
    /// `Corrupt` naming the file when it is damaged and the backup is missing or damaged too.
    pub fn load<S: Storage>(storage: &S) -> Result<EpochFile, EpochError> {
        let entries = config::load_with_backup(storage, EPOCH_FILE, decode)?;
        Ok(EpochFile {
            entries: entries.unwrap_or_default(),
        })
    }

    /// The entries, oldest first.
    #[must_use]
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest entry.
    #[must_use]
    pub fn last(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The newest epoch recorded (RocketMQ answers -1 where this is `None`).
    #[must_use]
    pub fn last_epoch(&self) -> Option<u32> {
        self.last().map(|e| e.epoch)
    }

    /// The entry of `epoch`, if recorded.
    #[must_use]
    pub fn entry(&self, epoch: u32) -> Option<EpochEntry> {
        self.entries.iter().find(|e| e.epoch == epoch).copied()
    }

    /// Where `epoch`'s data ends in a log that ends at `max_offset`: the next entry's start,
    /// or `max_offset` for the newest, never past `max_offset` nor before the epoch's start.
    #[must_use]
    pub fn end_offset(&self, epoch: u32, max_offset: u64) -> Option<u64> {
        let i = self.entries.iter().position(|e| e.epoch == epoch)?;
        Some(end_at(&self.entries, i, max_offset))
    }

    /// The epoch that wrote the byte at `offset`: the newest entry starting at or before it
    /// (RocketMQ's `findEpochEntryByOffset`, for the epoch a master stamps on the data it
    /// sends). `None` before the first entry.
    #[must_use]
    pub fn entry_at(&self, offset: u64) -> Option<EpochEntry> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.start_offset <= offset)
            .copied()
    }

    /// Records that `epoch` starts at `start_offset` and writes the file. Returns whether an
    /// entry was added: re-recording the newest epoch at or past its start adds nothing.
    ///
    /// # Errors
    /// `Stale` for an epoch older than the newest, `StartBehind` for a start before the
    /// newest entry's; storage errors (the entry is then not added).
    pub fn append<S: Storage>(
        &mut self,
        storage: &S,
        epoch: u32,
        start_offset: u64,
    ) -> Result<bool, EpochError> {
        let entry = EpochEntry {
            epoch,
            start_offset,
        };
        if let Some(last) = self.last() {
            check_next(last, entry)?;
            if last.epoch == epoch {
                return Ok(false);
            }
        }
        let mut next = self.entries.clone();
        next.push(entry);
        self.replace(storage, next)?;
        Ok(true)
    }

    /// Drops every entry starting at or past `offset` (RocketMQ's `truncateSuffixByOffset`),
    /// writing the file if anything changed. Returns the entries dropped.
    ///
    /// # Errors
    /// Storage errors; the entries then stay.
    pub fn truncate_suffix_from<S: Storage>(
        &mut self,
        storage: &S,
        offset: u64,
    ) -> Result<usize, EpochError> {
        let keep = self.entries.partition_point(|e| e.start_offset < offset);
        let dropped = self.entries.len() - keep;
        if dropped > 0 {
            let next = self.entries.get(..keep).unwrap_or_default().to_vec();
            self.replace(storage, next)?;
        }
        Ok(dropped)
    }

    /// Drops the entries whose data lies wholly below `offset` (the commit log's new minimum
    /// after retention; RocketMQ's `truncatePrefixByOffset`). The newest entry always stays.
    /// Returns the entries dropped.
    ///
    /// # Errors
    /// Storage errors; the entries then stay.
    pub fn truncate_prefix_below<S: Storage>(
        &mut self,
        storage: &S,
        offset: u64,
    ) -> Result<usize, EpochError> {
        // Entry i ends where entry i + 1 starts; the newest never ends.
        let dropped = self
            .entries
            .windows(2)
            .take_while(|pair| pair.get(1).is_some_and(|next| next.start_offset <= offset))
            .count();
        if dropped > 0 {
            let next = self.entries.get(dropped..).unwrap_or_default().to_vec();
            self.replace(storage, next)?;
        }
        Ok(dropped)
    }

    /// The offset up to which this log (ending at `self_max`) and a master's (entries
    /// `master_entries`, ending at `master_max`) hold the same data, or `None` if their epochs
    /// share nothing (RocketMQ's `findConsistentPoint`, which answers -1).
    ///
    /// Rule: take the newest of our epochs that the master also has with the same start; the
    /// answer is the smaller of the two ends of that epoch. Within one epoch both logs hold a
    /// prefix of what that epoch's master wrote, so they agree up to the shorter one. Both ends
    /// are capped at their log's end, so the answer never lies past either log.
    ///
    /// With no entries of our own there is nothing to compare: like RocketMQ the log is kept,
    /// but never past the master's end.
    #[must_use]
    pub fn consistent_point(
        &self,
        master_entries: &[EpochEntry],
        master_max: u64,
        self_max: u64,
    ) -> Option<u64> {
        if self.entries.is_empty() {
            return Some(self_max.min(master_max));
        }
        self.entries.iter().enumerate().rev().find_map(|(i, ours)| {
            let j = master_entries.iter().position(|theirs| theirs == ours)?;
            let our_end = end_at(&self.entries, i, self_max);
            let their_end = end_at(master_entries, j, master_max);
            Some(our_end.min(their_end).min(self_max).min(master_max))
        })
    }

    /// Writes `next` to the file, then adopts it.
    fn replace<S: Storage>(
        &mut self,
        storage: &S,
        next: Vec<EpochEntry>,
    ) -> Result<(), EpochError> {
        config::write_atomically(storage, EPOCH_FILE, encode(&next).as_bytes())?;
        self.entries = next;
        Ok(())
    }
}

/// The end of `entries[i]` in a log ending at `max`: see [`EpochFile::end_offset`].
fn end_at(entries: &[EpochEntry], i: usize, max: u64) -> u64 {
    let start = entries.get(i).map_or(0, |e| e.start_offset);
    let next = entries.get(i + 1).map_or(max, |e| e.start_offset);
    next.min(max).max(start.min(max))
}

/// Whether `next` may follow `last`.
fn check_next(last: EpochEntry, next: EpochEntry) -> Result<(), EpochError> {
    if next.epoch < last.epoch {
        return Err(EpochError::Stale {
            epoch: next.epoch,
            last: last.epoch,
        });
    }
    if next.start_offset < last.start_offset {
        return Err(EpochError::StartBehind {
            epoch: next.epoch,
            start_offset: next.start_offset,
            last: last.epoch,
            last_start: last.start_offset,
        });
    }
    Ok(())
}

/// Epochs strictly increasing, starts never decreasing.
fn check_order(entries: &[EpochEntry]) -> Result<(), EpochError> {
    for pair in entries.windows(2) {
        if let [last, next] = pair {
            check_next(*last, *next)?;
            if next.epoch == last.epoch {
                return Err(EpochError::Stale {
                    epoch: next.epoch,
                    last: last.epoch,
                });
            }
        }
    }
    Ok(())
}

/// The file's text for `entries`.
#[must_use]
pub fn encode(entries: &[EpochEntry]) -> String {
    let body: String = entries
        .iter()
        .map(|e| format!("{}-{}\n", e.epoch, e.start_offset))
        .collect();
    format!("{}\n{}\n{body}", entries.len(), body_crc(&body))
}

/// Parses the file's bytes: `Ok(None)` for an empty file, `Err(reason)` for anything that is
/// not a whole, ordered epoch file. Like RocketMQ, a line that is not two `-`-separated fields
/// is skipped (and then fails the entry count); a field that is not a number is an error.
pub fn decode(bytes: &[u8]) -> Result<Option<Vec<EpochEntry>>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    let mut lines = text.lines();
    let count: i32 = number(lines.next(), "entry count")?;
    let crc: i32 = number(lines.next(), "crc")?;
    let mut body = String::new();
    let mut entries = Vec::new();
    for line in lines {
        body.push_str(line);
        body.push('\n');
        let mut fields: Vec<&str> = line.split('-').collect();
        // Java's String.split drops trailing empty fields.
        while fields.last() == Some(&"") {
            fields.pop();
        }
        if let [epoch, start] = fields[..] {
            entries.push(EpochEntry {
                epoch: number(Some(epoch), "epoch")?,
                start_offset: number(Some(start), "start offset")?,
            });
        }
    }
    if usize::try_from(count).ok() != Some(entries.len()) {
        return Err(format!("expected {count} entries, found {}", entries.len()));
    }
    let actual = body_crc(&body);
    if crc != 0 && crc != actual {
        return Err(format!(
            "entries crc {actual} does not match the file's {crc}"
        ));
    }
    check_order(&entries).map_err(|e| e.to_string())?;
    Ok(Some(entries))
}

/// RocketMQ's `UtilAll.crc32`: CRC-32 masked to a non-negative int.
fn body_crc(body: &str) -> i32 {
    // The mask leaves 31 bits, which always fit an i32.
    i32::try_from(crc32fast::hash(body.as_bytes()) & 0x7FFF_FFFF).unwrap_or(0)
}

fn number<T: std::str::FromStr>(field: Option<&str>, what: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    let field = field.ok_or_else(|| format!("missing {what}"))?;
    field.parse().map_err(|e| format!("{what} {field:?}: {e}"))
}

#[cfg(test)]
mod tests;
