//! The timer checkpoint, `config/timercheck` (RocketMQ's `TimerCheckpoint`): how far the timer
//! store got, as of its last flush. Layout (big-endian, RocketMQ's order, in a 4096-byte file):
//!
//! | offset | bytes | field |
//! |---|---|---|
//! | 0 | 8 | lastReadTimeMs: every slot before it was delivered durably |
//! | 8 | 8 | lastTimerLogFlushPos: the timer log is synced below it |
//! | 16 | 8 | lastTimerQueueOffset: next `rmq_sys_wheel_timer` queue offset to enqueue |
//! | 24 | 8 | masterTimerQueueOffset (the same; no slaves here) |
//! | 32 | 24 | data version: state version, timestamp, counter |
//!
//! Written as a new file then renamed over the old one, so a crash leaves either the old or the
//! new checkpoint, never a mix. What it leaves out: the data version's use for replication.

use crate::storage::{Storage, StorageError};

/// The checkpoint file under the store root.
pub const TIMER_CHECKPOINT_FILE: &str = "config/timercheck";
const TMP_FILE: &str = "config/timercheck.tmp";
/// Java maps one OS page.
const FILE_LEN: u64 = 4096;
const USED_LEN: usize = 56;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerCheckpoint {
    pub last_read_time_ms: u64,
    pub last_timer_log_flush_pos: u64,
    pub last_timer_queue_offset: u64,
    pub master_timer_queue_offset: u64,
    /// Counts checkpoints written (the data version's counter).
    pub counter: u64,
    /// When it was written (the data version's timestamp).
    pub timestamp_ms: u64,
}

impl TimerCheckpoint {
    /// Reads the checkpoint, `None` if there is none (a first start).
    ///
    /// # Errors
    /// The storage's.
    pub fn load<S: Storage>(storage: &S) -> Result<Option<TimerCheckpoint>, StorageError> {
        let Some(len) = storage.len(TIMER_CHECKPOINT_FILE)? else {
            return Ok(None);
        };
        if len < USED_LEN as u64 {
            return Ok(None);
        }
        let bytes = storage.read_at(TIMER_CHECKPOINT_FILE, 0, USED_LEN as u64)?;
        let field = |i: usize| -> u64 {
            let mut b = [0u8; 8];
            if let Some(src) = bytes.get(i * 8..i * 8 + 8) {
                b.copy_from_slice(src);
            }
            u64::from_be_bytes(b)
        };
        Ok(Some(TimerCheckpoint {
            last_read_time_ms: field(0),
            last_timer_log_flush_pos: field(1),
            last_timer_queue_offset: field(2),
            master_timer_queue_offset: field(3),
            timestamp_ms: field(5),
            counter: field(6),
        }))
    }

    /// Writes the checkpoint durably (new file, sync, rename).
    ///
    /// # Errors
    /// The storage's; the previous checkpoint then stays in force.
    pub fn store<S: Storage>(&self, storage: &S) -> Result<(), StorageError> {
        let mut out = [0u8; USED_LEN];
        let fields = [
            self.last_read_time_ms,
            self.last_timer_log_flush_pos,
            self.last_timer_queue_offset,
            self.master_timer_queue_offset,
            0,
            self.timestamp_ms,
            self.counter,
        ];
        for (chunk, value) in out.chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&value.to_be_bytes());
        }
        storage.delete(TMP_FILE)?;
        storage.create(TMP_FILE, FILE_LEN)?;
        storage.write_at(TMP_FILE, 0, &out)?;
        storage.sync(TMP_FILE, 0, USED_LEN as u64)?;
        storage.rename(TMP_FILE, TIMER_CHECKPOINT_FILE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;

    #[test]
    fn round_trips_and_survives_a_crash() {
        let storage = MemStorage::new();
        assert_eq!(TimerCheckpoint::load(&storage).unwrap(), None);
        let cp = TimerCheckpoint {
            last_read_time_ms: 1_700_000_000_000,
            last_timer_log_flush_pos: 520,
            last_timer_queue_offset: 10,
            master_timer_queue_offset: 10,
            counter: 3,
            timestamp_ms: 5,
        };
        cp.store(&storage).unwrap();
        storage.crash(None);
        assert_eq!(TimerCheckpoint::load(&storage).unwrap(), Some(cp));
        assert_eq!(storage.len(TIMER_CHECKPOINT_FILE).unwrap(), Some(FILE_LEN));
    }
}
