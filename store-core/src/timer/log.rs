//! The timer log (RocketMQ's `TimerLog`): an append-only sequence of 52-byte units under
//! `timerlog/<20-digit start offset>`, one per scheduled timer message. Units of one wheel slot
//! are chained backwards through `prev_pos`, so the wheel needs only the last position of each
//! slot.
//!
//! Unit layout (big-endian, [`UNIT_SIZE`] = 52 bytes, RocketMQ's order):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 4 | size (52) |
//! | 4 | 8 | prev_pos: the slot's previous unit, -1 for the first |
//! | 12 | 4 | magic ([`MAGIC_DEFAULT`]) |
//! | 16 | 8 | write time (ms) |
//! | 24 | 4 | delayed time − write time (ms) |
//! | 28 | 8 | offsetPy: the timer message's commit-log offset |
//! | 36 | 4 | sizePy: its record size |
//! | 40 | 4 | hash code of the real topic (Java `String.hashCode`) |
//! | 44 | 8 | reserved; we put the CRC32 of bytes 0..44 in the low 4 bytes |
//!
//! A segment ends with a blank unit (size = bytes left, magic [`BLANK_MAGIC`]) when the next
//! unit would leave less than [`MIN_BLANK_LEN`] bytes.
//!
//! Why the CRC (RocketMQ leaves the field zero): recovery scans the unsynced tail, where a torn
//! write can leave a unit whose size and magic landed but whose offsets did not. The CRC lets
//! recovery stop exactly at the last whole unit.
//!
//! What it leaves out: the metrics RocketMQ reads from units, roll and delete magics.

use crate::storage::{Storage, StorageError};

/// Bytes of one unit.
pub const UNIT_SIZE: u64 = 52;
/// Smallest blank unit (size, prev, magic).
pub const MIN_BLANK_LEN: u64 = 16;
/// Magic of a normal unit (Java `MAGIC_DEFAULT`).
pub const MAGIC_DEFAULT: i32 = 1;
/// Magic of the blank unit that pads a segment's end (Java `TimerLog.BLANK_MAGIC_CODE`).
pub const BLANK_MAGIC: i32 = (0xBBCC_DDEE_u32 as i32) ^ (1_880_681_586 + 8);
/// Directory of the segments.
pub const TIMER_LOG_DIR: &str = "timerlog";

const _: () = assert!(UNIT_SIZE == 4 + 8 + 4 + 8 + 4 + 8 + 4 + 4 + 8);
/// Bytes covered by the unit CRC.
const CRC_COVERED: usize = 44;

/// One decoded unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogUnit {
    /// Position of the slot's previous unit, -1 if none.
    pub prev_pos: i64,
    pub magic: i32,
    pub write_time_ms: u64,
    /// `delayed time − write time`, as RocketMQ stores it.
    pub delay_ms: i32,
    /// Commit-log offset of the timer message.
    pub offset_py: u64,
    /// Its record size.
    pub size_py: u32,
    pub topic_hash: i32,
}

impl LogUnit {
    /// The (slot-aligned) delivery time the unit was filed under.
    pub fn delayed_time_ms(&self) -> u64 {
        self.write_time_ms
            .saturating_add_signed(i64::from(self.delay_ms))
    }

    pub fn encode(&self) -> [u8; UNIT_SIZE as usize] {
        let mut out = [0u8; UNIT_SIZE as usize];
        let mut w = Writer(&mut out, 0);
        w.put(&52i32.to_be_bytes());
        w.put(&self.prev_pos.to_be_bytes());
        w.put(&self.magic.to_be_bytes());
        w.put(&self.write_time_ms.to_be_bytes());
        w.put(&self.delay_ms.to_be_bytes());
        w.put(&self.offset_py.to_be_bytes());
        w.put(&self.size_py.to_be_bytes());
        w.put(&self.topic_hash.to_be_bytes());
        let crc = crc32fast::hash(&out[..CRC_COVERED]);
        out[CRC_COVERED + 4..].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Decodes a unit; `None` for anything but a whole normal unit with a matching CRC.
    pub fn decode(bytes: &[u8]) -> Option<LogUnit> {
        let bytes: &[u8; UNIT_SIZE as usize] = bytes.get(..UNIT_SIZE as usize)?.try_into().ok()?;
        let mut r = Reader(bytes, 0);
        let size = i32::from_be_bytes(r.take());
        let prev_pos = i64::from_be_bytes(r.take());
        let magic = i32::from_be_bytes(r.take());
        let write_time_ms = u64::from_be_bytes(r.take());
        let delay_ms = i32::from_be_bytes(r.take());
        let offset_py = u64::from_be_bytes(r.take());
        let size_py = u32::from_be_bytes(r.take());
        let topic_hash = i32::from_be_bytes(r.take());
        let _reserved_high: [u8; 4] = r.take();
        let crc = u32::from_be_bytes(r.take());
        let valid = i64::from(size) == UNIT_SIZE as i64
            && magic == MAGIC_DEFAULT
            && crc == crc32fast::hash(&bytes[..CRC_COVERED]);
        valid.then_some(LogUnit {
            prev_pos,
            magic,
            write_time_ms,
            delay_ms,
            offset_py,
            size_py,
            topic_hash,
        })
    }
}

/// The segments of the timer log, appended through [`Storage`].
#[derive(Debug)]
pub struct TimerLog {
    file_size: u64,
    /// Start offsets of the segments that exist, ascending.
    segments: Vec<u64>,
    /// Where the next unit goes.
    write_pos: u64,
    /// Everything below is synced.
    flushed_pos: u64,
}

impl TimerLog {
    /// Lists the existing segments; the write position is set by [`TimerLog::recover`].
    ///
    /// # Errors
    /// The storage's.
    pub fn load<S: Storage>(storage: &S, file_size: u64) -> Result<TimerLog, StorageError> {
        assert!(
            file_size >= UNIT_SIZE + MIN_BLANK_LEN,
            "timer log segments too small"
        );
        let mut segments: Vec<u64> = storage
            .list(TIMER_LOG_DIR)?
            .iter()
            .filter_map(|name| name.rsplit('/').next()?.parse::<u64>().ok())
            .filter(|base| base.is_multiple_of(file_size))
            .collect();
        segments.sort_unstable();
        Ok(TimerLog {
            file_size,
            segments,
            write_pos: 0,
            flushed_pos: 0,
        })
    }

    /// Scans forward from the segment holding `from` and calls `found` with each whole unit
    /// and its position, stopping at the first position that holds no valid unit. That
    /// position becomes the write position; later segments are deleted (never synced units
    /// that cannot be trusted).
    ///
    /// # Errors
    /// The storage's.
    pub fn recover<S: Storage>(
        &mut self,
        storage: &S,
        from: u64,
        mut found: impl FnMut(u64, &LogUnit),
    ) -> Result<u64, StorageError> {
        let from_base = from - from % self.file_size;
        let Some(first) = self.segments.iter().position(|&b| b >= from_base) else {
            // Nothing at or after the checkpoint: start a fresh segment past it.
            self.write_pos = self
                .segments
                .last()
                .map_or(from_base, |&b| (b + self.file_size).max(from_base));
            self.flushed_pos = self.write_pos;
            return Ok(self.write_pos);
        };
        let mut pos = self.segments[first].max(from);
        let mut end = pos;
        'segments: for &base in &self.segments[first..] {
            if pos < base || pos >= base + self.file_size {
                break; // a missing segment: stop at the last good unit
            }
            let data = storage.read_at(&segment_name(base), 0, self.file_size)?;
            loop {
                let at = pos - base;
                let Some(head) = data.get(at as usize..) else {
                    break 'segments;
                };
                if blank_len(head) == Some(self.file_size - at) {
                    pos = base + self.file_size;
                    end = pos;
                    continue 'segments;
                }
                match LogUnit::decode(head) {
                    Some(unit) => {
                        found(pos, &unit);
                        pos += UNIT_SIZE;
                        end = pos;
                    }
                    None => break 'segments,
                }
            }
        }
        self.write_pos = end;
        self.flushed_pos = end;
        let keep_to = end - end % self.file_size;
        for base in self.segments.clone() {
            if base > keep_to {
                storage.delete(&segment_name(base))?;
            }
        }
        self.segments.retain(|&b| b <= keep_to);
        Ok(end)
    }

    /// Appends a unit and returns its position.
    ///
    /// # Errors
    /// The storage's (a new segment could not be created, or the write failed).
    pub fn append<S: Storage>(&mut self, storage: &S, unit: &LogUnit) -> Result<u64, StorageError> {
        let base = self.write_pos - self.write_pos % self.file_size;
        let left = base + self.file_size - self.write_pos;
        if left < UNIT_SIZE + MIN_BLANK_LEN {
            self.ensure_segment(storage, base)?;
            let mut blank = [0u8; MIN_BLANK_LEN as usize];
            blank[..4].copy_from_slice(&u32::try_from(left).unwrap_or(u32::MAX).to_be_bytes());
            blank[4..12].copy_from_slice(&0i64.to_be_bytes());
            blank[12..].copy_from_slice(&BLANK_MAGIC.to_be_bytes());
            if left >= MIN_BLANK_LEN {
                storage.write_at(&segment_name(base), self.write_pos - base, &blank)?;
            }
            self.write_pos = base + self.file_size;
        }
        let base = self.write_pos - self.write_pos % self.file_size;
        self.ensure_segment(storage, base)?;
        let pos = self.write_pos;
        storage.write_at(&segment_name(base), pos - base, &unit.encode())?;
        self.write_pos = pos + UNIT_SIZE;
        Ok(pos)
    }

    /// Reads the unit at `pos`; `None` if it is not a whole valid unit or lies outside the
    /// log.
    ///
    /// # Errors
    /// The storage's.
    pub fn read<S: Storage>(&self, storage: &S, pos: u64) -> Result<Option<LogUnit>, StorageError> {
        let base = pos - pos % self.file_size;
        if pos + UNIT_SIZE > self.write_pos || !self.segments.contains(&base) {
            return Ok(None);
        }
        if pos - base + UNIT_SIZE > self.file_size {
            return Ok(None);
        }
        let bytes = storage.read_at(&segment_name(base), pos - base, UNIT_SIZE)?;
        Ok(LogUnit::decode(&bytes))
    }

    /// Syncs everything appended since the last sync.
    ///
    /// # Errors
    /// The storage's.
    pub fn sync<S: Storage>(&mut self, storage: &S) -> Result<(), StorageError> {
        let mut from = self.flushed_pos;
        let to = self.write_pos;
        while from < to {
            let base = from - from % self.file_size;
            let end = to.min(base + self.file_size);
            if self.segments.contains(&base) {
                storage.sync(&segment_name(base), from - base, end - from)?;
            }
            from = end;
        }
        self.flushed_pos = to;
        Ok(())
    }

    /// Deletes the segments that end at or below `pos` (nothing there is referenced any more).
    ///
    /// # Errors
    /// The storage's.
    pub fn delete_below<S: Storage>(
        &mut self,
        storage: &S,
        pos: u64,
    ) -> Result<usize, StorageError> {
        let mut deleted = 0;
        while let Some(&base) = self.segments.first() {
            let current = self.write_pos - self.write_pos % self.file_size;
            if base + self.file_size > pos || base >= current {
                break;
            }
            storage.delete(&segment_name(base))?;
            self.segments.remove(0);
            deleted += 1;
        }
        Ok(deleted)
    }

    pub fn write_pos(&self) -> u64 {
        self.write_pos
    }

    pub fn flushed_pos(&self) -> u64 {
        self.flushed_pos
    }

    /// Start of the oldest segment still present.
    pub fn min_pos(&self) -> u64 {
        self.segments.first().copied().unwrap_or(self.write_pos)
    }

    fn ensure_segment<S: Storage>(&mut self, storage: &S, base: u64) -> Result<(), StorageError> {
        if self.segments.last() == Some(&base) {
            return Ok(());
        }
        match storage.create(&segment_name(base), self.file_size) {
            Ok(()) | Err(StorageError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
        self.segments.push(base);
        Ok(())
    }
}

/// `timerlog/<20-digit base>`.
pub fn segment_name(base: u64) -> String {
    format!("{TIMER_LOG_DIR}/{base:020}")
}

/// The size of the blank unit at the head of `bytes`, if one starts there.
fn blank_len(bytes: &[u8]) -> Option<u64> {
    let size = u32::from_be_bytes(bytes.get(..4)?.try_into().ok()?);
    let magic = i32::from_be_bytes(bytes.get(12..16)?.try_into().ok()?);
    (magic == BLANK_MAGIC).then_some(u64::from(size))
}

struct Writer<'a>(&'a mut [u8; UNIT_SIZE as usize], usize);

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.0[self.1..self.1 + bytes.len()].copy_from_slice(bytes);
        self.1 += bytes.len();
    }
}

struct Reader<'a>(&'a [u8; UNIT_SIZE as usize], usize);

impl Reader<'_> {
    /// The next `N` bytes; the callers' sizes add up to [`UNIT_SIZE`] (checked at compile
    /// time above), so the slice is always in range.
    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(&self.0[self.1..self.1 + N]);
        self.1 += N;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    fn unit(prev: i64, offset_py: u64) -> LogUnit {
        LogUnit {
            prev_pos: prev,
            magic: MAGIC_DEFAULT,
            write_time_ms: 1_000,
            delay_ms: 5_000,
            offset_py,
            size_py: 100,
            topic_hash: 7,
        }
    }

    #[test]
    fn unit_round_trips_and_rejects_damage() {
        let u = unit(-1, 42);
        let bytes = u.encode();
        assert_eq!(LogUnit::decode(&bytes), Some(u));
        assert_eq!(u.delayed_time_ms(), 6_000);
        for i in 0..CRC_COVERED {
            let mut bad = bytes;
            bad[i] ^= 0x10;
            assert_eq!(LogUnit::decode(&bad), None, "flip at {i}");
        }
        assert_eq!(LogUnit::decode(&bytes[..51]), None);
    }

    #[test]
    fn append_pads_segments_and_recovery_finds_every_unit() {
        let storage = MemStorage::new();
        // Room for 3 units and a blank of 16 + 4 bytes.
        let size = 3 * UNIT_SIZE + 20;
        let mut log = TimerLog::load(&storage, size).unwrap();
        log.recover(&storage, 0, |_, _| {}).unwrap();
        let positions: Vec<u64> = (0..7)
            .map(|i| log.append(&storage, &unit(-1, i)).unwrap())
            .collect();
        assert_eq!(
            positions[3], size,
            "the fourth unit would leave under 16 bytes"
        );
        log.sync(&storage).unwrap();
        for (i, &pos) in positions.iter().enumerate() {
            assert_eq!(
                log.read(&storage, pos).unwrap().map(|u| u.offset_py),
                Some(i as u64)
            );
        }
        let mut again = TimerLog::load(&storage, size).unwrap();
        let mut seen = Vec::new();
        let end = again
            .recover(&storage, 0, |pos, u| seen.push((pos, u.offset_py)))
            .unwrap();
        assert_eq!(end, log.write_pos());
        let expected: Vec<(u64, u64)> = positions.iter().copied().zip(0..).collect();
        assert_eq!(seen, expected);
    }

    #[test]
    fn recovery_stops_at_a_torn_unit() {
        let storage = MemStorage::new();
        let mut log = TimerLog::load(&storage, 1024).unwrap();
        log.recover(&storage, 0, |_, _| {}).unwrap();
        log.append(&storage, &unit(-1, 1)).unwrap();
        log.sync(&storage).unwrap();
        log.append(&storage, &unit(0, 2)).unwrap();
        storage.crash(Some(30)); // 30 of the second unit's 52 bytes land
        let mut again = TimerLog::load(&storage, 1024).unwrap();
        let mut seen = 0;
        let end = again.recover(&storage, 0, |_, _| seen += 1).unwrap();
        assert_eq!((seen, end), (1, UNIT_SIZE));
        // The next append overwrites the torn bytes.
        assert_eq!(again.append(&storage, &unit(0, 3)).unwrap(), UNIT_SIZE);
    }

    #[test]
    fn delete_below_keeps_the_current_segment() {
        let storage = MemStorage::new();
        let size = 2 * UNIT_SIZE + MIN_BLANK_LEN;
        let mut log = TimerLog::load(&storage, size).unwrap();
        log.recover(&storage, 0, |_, _| {}).unwrap();
        for i in 0..5 {
            log.append(&storage, &unit(-1, i)).unwrap();
        }
        assert_eq!(log.delete_below(&storage, 2 * size).unwrap(), 2);
        assert_eq!(log.min_pos(), 2 * size);
        assert_eq!(log.delete_below(&storage, u64::MAX).unwrap(), 0);
        assert_eq!(log.read(&storage, 0).unwrap(), None);
    }
}
