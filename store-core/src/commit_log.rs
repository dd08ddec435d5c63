//! The commit log (§16.1): fixed-size segments `commitlog/<20-digit start offset>` holding
//! stored records back to back, each segment ending in a blank marker once the next record no
//! longer fits.
//!
//! This module knows segments, offsets and the blank marker; it does not know what a record
//! means (the store encodes records, recovery validates them). Invariants it keeps:
//! - segments are contiguous: each starts where the previous one ends, all of one size, and
//!   every segment's start offset is a multiple of that size;
//! - `max_offset` (the write position) never lies within 8 bytes of a segment's end, so a
//!   blank marker always fits (RocketMQ's `END_FILE_MIN_BLANK_LENGTH`);
//! - a record never spans two segments;
//! - bytes at or past `max_offset` are zero on the media once recovery has run, so stale
//!   records of an earlier life can never be read back as new ones.
//!
//! Left out: flushing policy (the store decides, [`CommitLog::sync_ranges`] says what to
//! sync), retention policy (see `retention`).

use std::collections::VecDeque;

use bytes::Bytes;

use crate::format::record::{self, BLANK_RECORD_LEN};
use crate::storage::{Storage, StorageError};

/// Directory of the commit-log segments under the store root.
pub const COMMIT_LOG_DIR: &str = "commitlog";

/// The commit log's segments and write position.
#[derive(Debug, Clone)]
pub struct CommitLog {
    segment_size: u64,
    /// Start offsets of the existing segments, ascending and contiguous.
    segments: VecDeque<u64>,
    /// Where the next record goes: one past the last record (or blank marker) written.
    max_offset: u64,
    /// Base and name of the segment holding `max_offset`: every append and most reads name
    /// it, and formatting the name per call cost more than the call it named.
    current: (u64, String),
}

/// Where [`CommitLog::plan_append`] puts a record of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Commit-log offset of the record.
    pub offset: u64,
    /// A blank marker to write first, ending the current segment: (offset, bytes it covers).
    pub blank: Option<(u64, u32)>,
}

/// Why a segment listing cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SegmentError {
    #[error("{name}: not a commit-log segment name (20 decimal digits expected)")]
    BadName { name: String },
    #[error("{name}: segment is {len} bytes, the configured segment size is {expected}")]
    SizeMismatch {
        name: String,
        len: u64,
        expected: u64,
    },
    #[error("{name}: start offset is not a multiple of the segment size {segment_size}")]
    Misaligned { name: String, segment_size: u64 },
    #[error("{name}: segment is missing between {before} and {after}")]
    Gap {
        name: String,
        before: String,
        after: String,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl CommitLog {
    /// An empty commit log (a new store).
    #[must_use]
    pub fn new(segment_size: u64) -> CommitLog {
        assert!(segment_size > BLANK_RECORD_LEN as u64);
        CommitLog {
            segment_size,
            segments: VecDeque::new(),
            max_offset: 0,
            current: (0, segment_name(0)),
        }
    }

    /// Loads the segment list from storage. The write position is left at the start of the
    /// first segment; recovery moves it to the end of the valid data.
    ///
    /// # Errors
    /// [`SegmentError`] for foreign files, wrong sizes or holes in the sequence.
    pub fn load<S: Storage>(storage: &S, segment_size: u64) -> Result<CommitLog, SegmentError> {
        let mut log = CommitLog::new(segment_size);
        for name in storage.list(COMMIT_LOG_DIR)? {
            let base = parse_segment_name(&name)
                .ok_or_else(|| SegmentError::BadName { name: name.clone() })?;
            let full = segment_name(base);
            let len = storage.len(&full)?.unwrap_or(0);
            if len != segment_size {
                return Err(SegmentError::SizeMismatch {
                    name: full,
                    len,
                    expected: segment_size,
                });
            }
            if base % segment_size != 0 {
                return Err(SegmentError::Misaligned {
                    name: full,
                    segment_size,
                });
            }
            if let Some(&last) = log.segments.back() {
                if last + segment_size != base {
                    return Err(SegmentError::Gap {
                        name: segment_name(last + segment_size),
                        before: segment_name(last),
                        after: full,
                    });
                }
            }
            log.segments.push_back(base);
        }
        log.set_max_offset(log.segments.front().copied().unwrap_or(0));
        Ok(log)
    }

    /// Segment size in bytes.
    #[must_use]
    pub fn segment_size(&self) -> u64 {
        self.segment_size
    }

    /// First readable offset: the start of the oldest segment (or the write position if there
    /// is no segment yet).
    #[must_use]
    pub fn min_offset(&self) -> u64 {
        self.segments.front().copied().unwrap_or(self.max_offset)
    }

    /// One past the last byte written.
    #[must_use]
    pub fn max_offset(&self) -> u64 {
        self.max_offset
    }

    /// Start offsets of the existing segments, oldest first.
    pub fn segments(&self) -> impl DoubleEndedIterator<Item = u64> + ExactSizeIterator + '_ {
        self.segments.iter().copied()
    }

    /// Start offset of the segment holding `offset`.
    #[must_use]
    pub fn segment_base(&self, offset: u64) -> u64 {
        offset - offset % self.segment_size
    }

    /// Whether the segment starting at `base` exists.
    #[must_use]
    pub fn has_segment(&self, base: u64) -> bool {
        match (self.segments.front(), self.segments.back()) {
            (Some(&first), Some(&last)) => base >= first && base <= last,
            _ => false,
        }
    }

    /// Where a record of `len` bytes goes, and whether a blank marker must end the current
    /// segment first. `None` if the record can never fit a segment.
    #[must_use]
    pub fn plan_append(&self, len: u64) -> Option<Placement> {
        if len + BLANK_RECORD_LEN as u64 > self.segment_size {
            return None;
        }
        let position = self.max_offset % self.segment_size;
        let remaining = self.segment_size - position;
        if position != 0 {
            assert!(remaining >= BLANK_RECORD_LEN as u64);
        }
        if position == 0 || len + BLANK_RECORD_LEN as u64 <= remaining {
            return Some(Placement {
                offset: self.max_offset,
                blank: None,
            });
        }
        // `remaining` < `len` + 8 <= segment_size, which is far below 2^31 for real segments;
        // a larger one would be a configuration RocketMQ rejects too.
        let covered = u32::try_from(remaining).ok()?;
        Some(Placement {
            offset: self.max_offset + remaining,
            blank: Some((self.max_offset, covered)),
        })
    }

    /// Makes sure the segment starting at `base` exists, creating it if needed. A segment that
    /// already exists (preallocated ahead of need) is reused.
    ///
    /// # Errors
    /// The storage's, typically `NoSpace`. The segment list is unchanged then.
    pub fn ensure_segment<S: Storage>(
        &mut self,
        storage: &S,
        base: u64,
    ) -> Result<(), StorageError> {
        assert_eq!(base % self.segment_size, 0);
        if self.has_segment(base) {
            return Ok(());
        }
        if let Some(&last) = self.segments.back() {
            assert_eq!(
                last + self.segment_size,
                base,
                "segments must stay contiguous"
            );
        }
        let name = segment_name(base);
        match storage.create(&name, self.segment_size) {
            Ok(()) => {}
            Err(StorageError::AlreadyExists { .. })
                if storage.len(&name)? == Some(self.segment_size) => {}
            Err(e) => return Err(e),
        }
        self.segments.push_back(base);
        Ok(())
    }

    /// Writes the blank marker at `offset` covering `covered` bytes (the rest of its segment).
    ///
    /// # Errors
    /// The storage's.
    pub fn write_blank<S: Storage>(
        &self,
        storage: &S,
        offset: u64,
        covered: u32,
    ) -> Result<(), StorageError> {
        let base = self.segment_base(offset);
        assert_eq!(offset + u64::from(covered), base + self.segment_size);
        let marker = record::blank_record(i32::try_from(covered).unwrap_or(i32::MAX));
        self.with_name(base, |name| storage.write_at(name, offset - base, &marker))
    }

    /// Writes `bytes` at `offset`, which must lie inside one existing segment at or past the
    /// write position. Does not move the write position: see [`CommitLog::advance_to`].
    ///
    /// # Errors
    /// The storage's.
    pub fn write<S: Storage>(
        &self,
        storage: &S,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), StorageError> {
        let base = self.segment_base(offset);
        assert!(offset >= self.max_offset);
        assert!(self.has_segment(base));
        assert!(offset - base + bytes.len() as u64 <= self.segment_size);
        self.with_name(base, |name| storage.write_at(name, offset - base, bytes))
    }

    /// Moves the write position forward to `end` after a successful write.
    pub fn advance_to(&mut self, end: u64) {
        assert!(end >= self.max_offset);
        let position = end % self.segment_size;
        if position != 0 {
            assert!(self.segment_size - position >= BLANK_RECORD_LEN as u64);
        }
        self.set_max_offset(end);
    }

    /// Moves the write position, renaming [`CommitLog::current`] when it enters another
    /// segment.
    fn set_max_offset(&mut self, offset: u64) {
        self.max_offset = offset;
        let base = self.segment_base(offset);
        if base != self.current.0 {
            self.current = (base, segment_name(base));
        }
    }

    /// Calls `f` with the name of the segment starting at `base`, formatted only if it is not
    /// the one holding the write position.
    fn with_name<R>(&self, base: u64, f: impl FnOnce(&str) -> R) -> R {
        if base == self.current.0 {
            f(&self.current.1)
        } else {
            f(SegmentName::new(base).as_str())
        }
    }

    /// Places the write position of a log without segments at `offset`, a segment boundary:
    /// a slave that joins a master whose oldest segments are gone starts its copy there.
    pub fn start_at(&mut self, offset: u64) {
        assert!(
            self.segments.is_empty(),
            "only an empty log can move its start"
        );
        assert_eq!(offset % self.segment_size, 0);
        self.set_max_offset(offset);
    }

    /// Reads `len` bytes at `offset`, which must lie in one segment between the min and max
    /// offsets. `None` if they do not (deleted, not yet written, or spanning segments).
    ///
    /// # Errors
    /// The storage's.
    pub fn read<S: Storage>(
        &self,
        storage: &S,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, StorageError> {
        let base = self.segment_base(offset);
        let in_range = offset >= self.min_offset()
            && offset
                .checked_add(len)
                .is_some_and(|end| end <= self.max_offset)
            && offset - base + len <= self.segment_size
            && self.has_segment(base);
        if !in_range {
            return Ok(None);
        }
        self.with_name(base, |name| storage.read_at(name, offset - base, len))
            .map(Some)
    }

    /// Reads up to `len` bytes at `offset` from the segment holding it, ignoring the write
    /// position (recovery scans past it). `None` if the segment does not exist.
    ///
    /// # Errors
    /// The storage's.
    pub fn read_raw<S: Storage>(
        &self,
        storage: &S,
        offset: u64,
        len: u64,
    ) -> Result<Option<Bytes>, StorageError> {
        let base = self.segment_base(offset);
        if !self.has_segment(base) {
            return Ok(None);
        }
        let len = len.min(base + self.segment_size - offset);
        self.with_name(base, |name| storage.read_at(name, offset - base, len))
            .map(Some)
    }

    /// The `(segment name, offset in segment, len)` ranges covering commit-log bytes
    /// `from..to`, for syncing. Ranges in segments that no longer exist are skipped.
    #[must_use]
    pub fn sync_ranges(&self, from: u64, to: u64) -> Vec<(String, u64, u64)> {
        let mut out = Vec::new();
        let mut at = from.max(self.min_offset());
        while at < to {
            let base = self.segment_base(at);
            let end = to.min(base + self.segment_size);
            if self.has_segment(base) {
                out.push((segment_name(base), at - base, end - at));
            }
            at = end;
        }
        out
    }

    /// Cuts the log at `end`: with `zero_to`, zeroes every non-zero byte from `end` up to
    /// `zero_to` or the end of its segment, whichever is first (so nothing stale can
    /// reappear), and syncs that; deletes later segments and sets the write position to `end`.
    /// Returns the bytes zeroed. Recovery only.
    ///
    /// # Errors
    /// The storage's; the log may then be partly truncated, and the store must not open.
    pub fn truncate<S: Storage>(
        &mut self,
        storage: &S,
        end: u64,
        zero_to: Option<u64>,
    ) -> Result<u64, StorageError> {
        let mut zeroed = 0;
        let base = self.segment_base(end);
        if let Some(&last) = self.segments.back() {
            assert!(
                end <= last + self.segment_size,
                "the end lies in or right after the log"
            );
        }
        if let (Some(limit), true) = (zero_to, self.has_segment(base)) {
            let stop = limit.clamp(end, base + self.segment_size) - base;
            zeroed = zero_tail(storage, &segment_name(base), end - base, stop)?;
        }
        while let Some(&last) = self.segments.back() {
            if last <= base {
                break;
            }
            storage.delete(&segment_name(last))?;
            self.segments.pop_back();
        }
        self.set_max_offset(end);
        Ok(zeroed)
    }

    /// Deletes the oldest segment (retention). Never the one holding the write position.
    ///
    /// # Errors
    /// The storage's; the segment list is unchanged then.
    pub fn delete_oldest<S: Storage>(&mut self, storage: &S) -> Result<Option<u64>, StorageError> {
        let Some(&first) = self.segments.front() else {
            return Ok(None);
        };
        if first + self.segment_size > self.max_offset {
            return Ok(None);
        }
        storage.delete(&segment_name(first))?;
        self.segments.pop_front();
        Ok(Some(first))
    }
}

/// `commitlog/<20-digit offset>`.
#[must_use]
pub fn segment_name(base: u64) -> String {
    SegmentName::new(base).as_str().to_owned()
}

/// Digits of a segment's start offset (`u64::MAX` has 20).
const OFFSET_DIGITS: usize = 20;
const SEGMENT_NAME_LEN: usize = COMMIT_LOG_DIR.len() + 1 + OFFSET_DIGITS;

/// [`segment_name`] on the stack: every append and every read names its segment, and a
/// formatted `String` per call cost more than the write it named.
#[derive(Debug, Clone, Copy)]
pub struct SegmentName([u8; SEGMENT_NAME_LEN]);

impl SegmentName {
    #[must_use]
    pub fn new(base: u64) -> SegmentName {
        let mut name = [b'/'; SEGMENT_NAME_LEN];
        for (to, from) in name.iter_mut().zip(COMMIT_LOG_DIR.bytes()) {
            *to = from;
        }
        let mut rest = base;
        for digit in name.iter_mut().rev().take(OFFSET_DIGITS) {
            // A remainder below 10 always fits a byte.
            *digit = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        SegmentName(name)
    }

    /// The name; ASCII by construction.
    #[must_use]
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The start offset a segment file name encodes, if it is one.
#[must_use]
pub fn parse_segment_name(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// The store timestamp of the record whose first bytes are `head` (at least 64 + 12 bytes
/// cover every host layout), without decoding the rest.
#[must_use]
pub fn peek_store_timestamp(head: &[u8]) -> Option<u64> {
    let sys_flag = i32::from_be_bytes(
        head.get(record::SYS_FLAG_POSITION..record::SYS_FLAG_POSITION + 4)?
            .try_into()
            .ok()?,
    );
    let born_host_len = if sys_flag & crate::format::sys_flag::BORNHOST_V6_FLAG != 0 {
        20
    } else {
        8
    };
    let at = record::BORN_HOST_POSITION + born_host_len;
    let ts = i64::from_be_bytes(head.get(at..at + 8)?.try_into().ok()?);
    u64::try_from(ts).ok()
}

/// Bytes [`peek_store_timestamp`] needs.
pub const STORE_TIMESTAMP_PEEK_LEN: u64 = 84;

/// Zeroes the non-zero bytes of `name` from `from` to `file_len` and syncs them. Returns how
/// many bytes had to be rewritten.
fn zero_tail<S: Storage>(
    storage: &S,
    name: &str,
    from: u64,
    file_len: u64,
) -> Result<u64, StorageError> {
    const CHUNK: u64 = 64 * 1024;
    let zeros = vec![0u8; CHUNK as usize];
    let mut at = from;
    let mut rewritten = 0;
    while at < file_len {
        let len = CHUNK.min(file_len - at);
        let bytes = storage.read_at(name, at, len)?;
        if !all_zero(&bytes) {
            storage.write_at(name, at, zeros.get(..len as usize).unwrap_or(&zeros))?;
            storage.sync(name, at, len)?;
            rewritten += len;
        }
        at += len;
    }
    Ok(rewritten)
}

/// Whether every byte is zero; ORs 4 KiB blocks without early exit inside a block, which the
/// compiler vectorises (recovery checks up to a whole segment this way).
fn all_zero(bytes: &[u8]) -> bool {
    bytes
        .chunks(4096)
        .all(|block| block.iter().fold(0u8, |acc, &b| acc | b) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn names_are_twenty_digit_offsets() {
        assert_eq!(segment_name(0), "commitlog/00000000000000000000");
        assert_eq!(
            SegmentName::new(u64::MAX).as_str(),
            format!("{COMMIT_LOG_DIR}/{:020}", u64::MAX)
        );
        assert_eq!(
            SegmentName::new(42).as_str(),
            "commitlog/00000000000000000042"
        );
        assert_eq!(
            segment_name(1_073_741_824),
            "commitlog/00000000001073741824"
        );
        assert_eq!(
            parse_segment_name("00000000001073741824"),
            Some(1_073_741_824)
        );
        assert_eq!(parse_segment_name("0000000000107374182"), None);
        assert_eq!(parse_segment_name("0000000000107374182x"), None);
    }

    #[test]
    fn a_record_that_does_not_fit_ends_the_segment_with_a_blank() {
        let s = MemStorage::new();
        let mut log = CommitLog::new(100);
        let p = log.plan_append(60).unwrap();
        assert_eq!(
            p,
            Placement {
                offset: 0,
                blank: None
            }
        );
        log.ensure_segment(&s, 0).unwrap();
        log.write(&s, 0, &[1u8; 60]).unwrap();
        log.advance_to(60);
        // 60 + 8 > 40 remaining: blank at 60 covering 40, record at 100.
        let p = log.plan_append(33).unwrap();
        assert_eq!(
            p,
            Placement {
                offset: 100,
                blank: Some((60, 40))
            }
        );
        // 32 + 8 == 40 fits exactly.
        assert_eq!(log.plan_append(32).unwrap().blank, None);
        assert_eq!(log.plan_append(93), None);
        log.write_blank(&s, 60, 40).unwrap();
        log.ensure_segment(&s, 100).unwrap();
        log.write(&s, 100, &[2u8; 33]).unwrap();
        log.advance_to(133);
        let head = s.read_at("commitlog/00000000000000000000", 60, 8).unwrap();
        assert_eq!(record::peek(&head).unwrap().kind(), record::SlotKind::Blank);
        assert_eq!(
            log.read(&s, 100, 33).unwrap().unwrap(),
            Bytes::from(vec![2u8; 33])
        );
        assert_eq!(log.read(&s, 100, 34).unwrap(), None);
        assert_eq!(
            log.sync_ranges(50, 133),
            vec![
                ("commitlog/00000000000000000000".to_string(), 50, 50),
                ("commitlog/00000000000000000100".to_string(), 0, 33)
            ]
        );
    }

    #[test]
    fn load_checks_names_sizes_and_gaps() {
        let s = MemStorage::new();
        s.create(&segment_name(0), 100).unwrap();
        s.create(&segment_name(100), 100).unwrap();
        let log = CommitLog::load(&s, 100).unwrap();
        assert_eq!(log.segments().collect::<Vec<_>>(), vec![0, 100]);
        assert!(matches!(
            CommitLog::load(&s, 200),
            Err(SegmentError::SizeMismatch { .. })
        ));
        s.create(&segment_name(300), 100).unwrap();
        assert!(matches!(
            CommitLog::load(&s, 100),
            Err(SegmentError::Gap { .. })
        ));
        s.delete(&segment_name(300)).unwrap();
        s.create("commitlog/junk", 100).unwrap();
        assert!(matches!(
            CommitLog::load(&s, 100),
            Err(SegmentError::BadName { .. })
        ));
    }

    #[test]
    fn truncate_zeroes_the_tail_and_drops_later_segments() {
        let s = MemStorage::new();
        let mut log = CommitLog::new(100);
        log.ensure_segment(&s, 0).unwrap();
        log.ensure_segment(&s, 100).unwrap();
        s.write_at(&segment_name(0), 40, &[7u8; 30]).unwrap();
        s.sync(&segment_name(0), 40, 30).unwrap();
        let zeroed = log.truncate(&s, 50, Some(u64::MAX)).unwrap();
        assert_eq!(zeroed, 50);
        assert_eq!(log.max_offset(), 50);
        assert_eq!(s.len(&segment_name(100)).unwrap(), None);
        s.crash(None);
        let bytes = s.read_at(&segment_name(0), 40, 30).unwrap();
        assert_eq!(&bytes[..10], &[7u8; 10]);
        assert!(bytes[10..].iter().all(|&b| b == 0));
    }

    #[test]
    fn retention_never_deletes_the_active_segment() {
        let s = MemStorage::new();
        let mut log = CommitLog::new(100);
        log.ensure_segment(&s, 0).unwrap();
        log.ensure_segment(&s, 100).unwrap();
        log.advance_to(150);
        assert_eq!(log.delete_oldest(&s).unwrap(), Some(0));
        assert_eq!(log.min_offset(), 100);
        assert_eq!(log.delete_oldest(&s).unwrap(), None);
        assert_eq!(log.read(&s, 50, 1).unwrap(), None);
    }
}
