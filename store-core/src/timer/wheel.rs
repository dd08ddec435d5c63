//! The timing wheel (RocketMQ's `TimerWheel`): the file `timerwheel`, an array of
//! `2 × slots_total` slots of 32 bytes, one per `precision_ms` of delivery time, indexed by
//! `time / precision % (2 × slots_total)`. A slot names the first and last timer-log unit filed
//! under its time; the units themselves chain backwards (see `log.rs`).
//!
//! Slot layout (big-endian, [`SLOT_SIZE`] = 32 bytes, RocketMQ's order):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | slot time / precision |
//! | 8 | 8 | first_pos in the timer log |
//! | 16 | 8 | last_pos |
//! | 24 | 4 | num: units filed |
//! | 28 | 4 | magic (0) |
//!
//! In memory the wheel keeps only the live slots (time at or after the read time) in a map;
//! changed slots are written to the file at flush time, right after the timer log they point
//! into has been synced, so the file never references a unit that a crash can take away.
//! Delivered slots are not cleared on disk: a reload ignores slots older than the checkpoint's
//! read time, and a slot's index is reused only a whole wheel span later.

use std::collections::{BTreeMap, BTreeSet};

use crate::storage::{Storage, StorageError};

/// Bytes of one slot.
pub const SLOT_SIZE: u64 = 32;
/// The wheel file under the store root.
pub const TIMER_WHEEL_FILE: &str = "timerwheel";

const _: () = assert!(SLOT_SIZE == 8 + 8 + 8 + 4 + 4);

/// Slots read per storage call while loading.
const LOAD_CHUNK_SLOTS: u64 = 32 * 1024;

/// A live slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    pub first_pos: u64,
    pub last_pos: u64,
    pub num: u32,
}

/// The wheel: live slots by slot time (ms), and which of them changed since the last flush.
#[derive(Debug)]
pub struct TimerWheel {
    slots_total: u64,
    precision_ms: u64,
    live: BTreeMap<u64, Slot>,
    dirty: BTreeSet<u64>,
}

impl TimerWheel {
    /// Opens (creating if missing) the wheel file and loads the slots whose time is at or after
    /// `read_time_ms` and before `read_time_ms + span`.
    ///
    /// # Errors
    /// The storage's; a file of another size is reported as [`WheelError::Size`].
    pub fn open<S: Storage>(
        storage: &S,
        slots_total: u64,
        precision_ms: u64,
        read_time_ms: u64,
    ) -> Result<TimerWheel, WheelError> {
        assert!(slots_total > 0 && precision_ms > 0);
        let len = 2 * slots_total * SLOT_SIZE;
        match storage.len(TIMER_WHEEL_FILE)? {
            None => storage.create(TIMER_WHEEL_FILE, len)?,
            Some(found) if found != len => {
                return Err(WheelError::Size {
                    expected: len,
                    found,
                })
            }
            Some(_) => {}
        }
        let mut wheel = TimerWheel {
            slots_total,
            precision_ms,
            live: BTreeMap::new(),
            dirty: BTreeSet::new(),
        };
        let span_ms = wheel.span_ms();
        let mut index = 0;
        while index < 2 * slots_total {
            let count = LOAD_CHUNK_SLOTS.min(2 * slots_total - index);
            let bytes = storage.read_at(TIMER_WHEEL_FILE, index * SLOT_SIZE, count * SLOT_SIZE)?;
            for raw in bytes.chunks_exact(SLOT_SIZE as usize) {
                let Some((time_ms, slot)) = decode_slot(raw, precision_ms) else {
                    continue;
                };
                if time_ms >= read_time_ms && time_ms < read_time_ms.saturating_add(span_ms) {
                    wheel.live.insert(time_ms, slot);
                }
            }
            index += count;
        }
        Ok(wheel)
    }

    /// Milliseconds of delivery time the file can hold without two live slots sharing an
    /// index.
    pub fn span_ms(&self) -> u64 {
        2 * self.slots_total * self.precision_ms
    }

    /// The last unit filed under `time_ms`, or -1 (the chain terminator).
    pub fn last_pos(&self, time_ms: u64) -> i64 {
        self.live
            .get(&time_ms)
            .map_or(-1, |s| i64::try_from(s.last_pos).unwrap_or(-1))
    }

    /// Files the unit at `pos` under `time_ms` (a slot-aligned time).
    pub fn put(&mut self, time_ms: u64, pos: u64) {
        assert_eq!(time_ms % self.precision_ms, 0, "slot times are aligned");
        let slot = self.live.entry(time_ms).or_insert(Slot {
            first_pos: pos,
            last_pos: pos,
            num: 0,
        });
        assert!(
            slot.num == 0 || pos > slot.last_pos,
            "units are appended in order"
        );
        slot.last_pos = pos;
        slot.num += 1;
        self.dirty.insert(time_ms);
    }

    /// Recovery: makes sure the unit at `pos`, found in the timer log past the checkpoint, is
    /// the slot's last unless a later one already is.
    pub fn revise(&mut self, time_ms: u64, pos: u64) {
        match self.live.get_mut(&time_ms) {
            Some(slot) if slot.last_pos >= pos => return,
            Some(slot) => {
                slot.last_pos = pos;
                slot.num += 1;
            }
            None => {
                self.live.insert(
                    time_ms,
                    Slot {
                        first_pos: pos,
                        last_pos: pos,
                        num: 1,
                    },
                );
            }
        }
        self.dirty.insert(time_ms);
    }

    /// Removes and returns the slot of `time_ms`, for delivery.
    pub fn take(&mut self, time_ms: u64) -> Option<Slot> {
        self.dirty.remove(&time_ms);
        self.live.remove(&time_ms)
    }

    /// The earliest live slot time at or after `from_ms`.
    pub fn next_slot(&self, from_ms: u64) -> Option<u64> {
        self.live.range(from_ms..).next().map(|(&t, _)| t)
    }

    /// Drops live slots before `time_ms` (they were delivered in an earlier incarnation).
    pub fn forget_before(&mut self, time_ms: u64) {
        self.live = self.live.split_off(&time_ms);
        self.dirty.retain(|&t| t >= time_ms);
    }

    /// The lowest timer-log position any live slot still needs.
    pub fn min_first_pos(&self) -> Option<u64> {
        self.live.values().map(|s| s.first_pos).min()
    }

    /// Live slots and the units filed in them (the `num` counts).
    pub fn live_slots(&self) -> (usize, u64) {
        let units = self.live.values().map(|s| u64::from(s.num)).sum();
        (self.live.len(), units)
    }

    /// Writes the changed slots and syncs them. Call only after the timer log is synced.
    ///
    /// # Errors
    /// The storage's.
    pub fn flush<S: Storage>(&mut self, storage: &S) -> Result<(), StorageError> {
        let mut range: Option<(u64, u64)> = None;
        for &time_ms in &self.dirty {
            let Some(slot) = self.live.get(&time_ms) else {
                continue;
            };
            let at = self.index(time_ms) * SLOT_SIZE;
            storage.write_at(
                TIMER_WHEEL_FILE,
                at,
                &encode_slot(time_ms, slot, self.precision_ms),
            )?;
            range = Some(match range {
                None => (at, at + SLOT_SIZE),
                Some((lo, hi)) => (lo.min(at), hi.max(at + SLOT_SIZE)),
            });
        }
        if let Some((lo, hi)) = range {
            storage.sync(TIMER_WHEEL_FILE, lo, hi - lo)?;
        }
        self.dirty.clear();
        Ok(())
    }

    fn index(&self, time_ms: u64) -> u64 {
        time_ms / self.precision_ms % (2 * self.slots_total)
    }
}

/// Why the wheel could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WheelError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The file was made for another `slots_total` (another precision or maximum delay).
    #[error("timerwheel is {found} bytes, expected {expected}: the timer settings changed")]
    Size { expected: u64, found: u64 },
}

fn encode_slot(time_ms: u64, slot: &Slot, precision_ms: u64) -> [u8; SLOT_SIZE as usize] {
    let mut out = [0u8; SLOT_SIZE as usize];
    out[..8].copy_from_slice(&(time_ms / precision_ms).to_be_bytes());
    out[8..16].copy_from_slice(&slot.first_pos.to_be_bytes());
    out[16..24].copy_from_slice(&slot.last_pos.to_be_bytes());
    out[24..28].copy_from_slice(&slot.num.to_be_bytes());
    out
}

/// A used slot: its time and positions. A zero or negative time or position is an empty slot.
fn decode_slot(raw: &[u8], precision_ms: u64) -> Option<(u64, Slot)> {
    let field = |at: usize| -> Option<i64> {
        Some(i64::from_be_bytes(raw.get(at..at + 8)?.try_into().ok()?))
    };
    let time = u64::try_from(field(0)?).ok().filter(|&t| t > 0)?;
    let first_pos = u64::try_from(field(8)?).ok()?;
    let last_pos = u64::try_from(field(16)?).ok()?;
    let num = u32::from_be_bytes(raw.get(24..28)?.try_into().ok()?);
    if num == 0 || last_pos < first_pos {
        return None;
    }
    Some((
        time.checked_mul(precision_ms)?,
        Slot {
            first_pos,
            last_pos,
            num,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn flushed_slots_reload_and_old_ones_are_ignored() {
        let storage = MemStorage::new();
        let mut wheel = TimerWheel::open(&storage, 8, 1000, 0).unwrap();
        wheel.put(3_000, 0);
        wheel.put(3_000, 52);
        wheel.put(9_000, 104);
        assert_eq!(wheel.last_pos(3_000), 52);
        assert_eq!(wheel.last_pos(4_000), -1);
        wheel.flush(&storage).unwrap();
        wheel.put(10_000, 156); // not flushed: lost in the crash
        storage.crash(None);
        let again = TimerWheel::open(&storage, 8, 1000, 4_000).unwrap();
        assert_eq!(
            again.next_slot(0),
            Some(9_000),
            "3 s is before the read time"
        );
        assert_eq!(again.live_slots(), (1, 1));
        let all = TimerWheel::open(&storage, 8, 1000, 0).unwrap();
        assert_eq!(all.live_slots(), (2, 3));
        assert_eq!(all.min_first_pos(), Some(0));
    }

    #[test]
    fn a_wheel_of_another_size_is_refused() {
        let storage = MemStorage::new();
        TimerWheel::open(&storage, 8, 1000, 0).unwrap();
        assert!(matches!(
            TimerWheel::open(&storage, 16, 1000, 0),
            Err(WheelError::Size { .. })
        ));
    }

    #[test]
    fn revise_moves_last_forward_only() {
        let storage = MemStorage::new();
        let mut wheel = TimerWheel::open(&storage, 8, 1000, 0).unwrap();
        wheel.put(5_000, 104);
        wheel.revise(5_000, 52);
        assert_eq!(wheel.last_pos(5_000), 104);
        wheel.revise(5_000, 156);
        wheel.revise(6_000, 208);
        assert_eq!((wheel.last_pos(5_000), wheel.last_pos(6_000)), (156, 208));
        assert_eq!(wheel.take(5_000).map(|s| s.num), Some(2));
        wheel.forget_before(7_000);
        assert_eq!(wheel.next_slot(0), None);
    }
}
