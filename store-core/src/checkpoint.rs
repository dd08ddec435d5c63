//! The `checkpoint` file (§16.4): how far the commit log, the consume queues and the index were
//! durable the last time the store said so. Recovery starts from it.
//!
//! Layout (big-endian, file mapped at 4096 bytes like RocketMQ's):
//!
//! | off | field | width | meaning |
//! |---|---|---|---|
//! | 0 | physicMsgTimestamp | i64 | store time of the last flushed commit-log record |
//! | 8 | logicsMsgTimestamp | i64 | store time of the last record whose CQ unit is flushed |
//! | 16 | indexMsgTimestamp | i64 | store time of the last record whose index entry is flushed |
//! | 24 | masterFlushedOffset | i64 | (5.x, replication) kept as read |
//! | 32 | confirmPhyOffset | i64 | (5.x, replication) kept as read |
//! | 40 | physicFlushedOffset | i64 | ours: commit log durable below this offset |
//! | 48 | logicsFlushedOffset | i64 | ours: CQ units durable for every record below this offset |
//! | 56 | indexFlushedOffset | i64 | ours: index entries durable for every record below it |
//! | 64 | writtenLimit | i64 | ours: nothing was ever written to the commit log at or past it |
//! | 72 | magic `RSCK` | u32 | ours: marks the extension as present |
//! | 76 | CRC-32 of bytes 0..76 | u32 | ours: a torn checkpoint write is detected, not trusted |
//!
//! The first 40 bytes are RocketMQ's, so its tools read our file; the extension uses bytes they
//! ignore. A second copy of the 72 bytes sits at [`SECOND_SLOT`], written and synced before the
//! first: a crash tearing one copy leaves the other whole, so a valid checkpoint always exists
//! once one was written. Offsets are better recovery anchors than timestamps: they are exact record
//! boundaries, and "the log ends before `physicFlushedOffset`" proves durable data was lost,
//! which is how recovery tells media corruption from a torn tail. `writtenLimit` bounds the
//! stale tail a crash can leave, so recovery zeroes that much instead of the whole segment.
//!
//! Left out: deciding *when* to write it (the store does, after syncs it made or a flush job
//! made: see `flush.rs`).

use core::ops::{Deref, DerefMut};

use crate::flush::MetaGate;
use crate::storage::{Storage, StorageError};

/// Name of the checkpoint file under the store root.
pub const CHECKPOINT_FILE: &str = "checkpoint";
/// Size the file is created with (one page, as RocketMQ maps it).
pub const CHECKPOINT_FILE_LEN: u64 = 4096;
/// Bytes of the file that carry data.
pub const CHECKPOINT_LEN: usize = 80;

/// Where the second copy starts.
pub const SECOND_SLOT: u64 = 2048;

const EXTENSION_MAGIC: u32 = u32::from_be_bytes(*b"RSCK");
const CRC_POSITION: usize = 76;
const MAGIC_POSITION: usize = 72;

const _: () = assert!(CHECKPOINT_LEN as u64 <= CHECKPOINT_FILE_LEN);
const _: () = assert!(CRC_POSITION + 4 == CHECKPOINT_LEN);
const _: () = assert!(SECOND_SLOT + CHECKPOINT_LEN as u64 <= CHECKPOINT_FILE_LEN);

/// Contents of the checkpoint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Checkpoint {
    pub physic_msg_timestamp: u64,
    pub logics_msg_timestamp: u64,
    pub index_msg_timestamp: u64,
    pub master_flushed_offset: u64,
    pub confirm_phy_offset: u64,
    /// Commit log durable below this offset.
    pub physic_flushed_offset: u64,
    /// Consume-queue units durable for every record below this commit-log offset.
    pub logics_flushed_offset: u64,
    /// Index entries durable for every record below this commit-log offset.
    pub index_flushed_offset: u64,
    /// No commit-log byte at or past this offset was ever written: the store raises it (and
    /// stores the checkpoint) before writing beyond it.
    pub written_limit: u64,
}

/// What the checkpoint bytes turned out to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointState {
    /// No checkpoint file: a new store.
    Missing,
    /// RocketMQ's fields only (written by a Java broker, or extension damaged): the offsets
    /// cannot be trusted, so recovery must scan everything.
    Unverified(Checkpoint),
    /// Fully readable and CRC-checked.
    Valid(Checkpoint),
}

impl Checkpoint {
    /// RocketMQ's "min timestamp" (§16.4): the older of the commit-log and CQ flush times, less
    /// 3 s, floored at 0.
    #[must_use]
    pub fn min_timestamp(&self) -> u64 {
        self.physic_msg_timestamp
            .min(self.logics_msg_timestamp)
            .saturating_sub(3000)
    }

    /// The commit-log offset below which every record is durable *and* dispatched durably:
    /// where a crash recovery can start replaying.
    #[must_use]
    pub fn replay_from(&self) -> u64 {
        self.physic_flushed_offset
            .min(self.logics_flushed_offset)
            .min(self.index_flushed_offset)
    }

    /// The file's data bytes.
    #[must_use]
    pub fn encode(&self) -> [u8; CHECKPOINT_LEN] {
        let mut out = [0u8; CHECKPOINT_LEN];
        let fields = [
            self.physic_msg_timestamp,
            self.logics_msg_timestamp,
            self.index_msg_timestamp,
            self.master_flushed_offset,
            self.confirm_phy_offset,
            self.physic_flushed_offset,
            self.logics_flushed_offset,
            self.index_flushed_offset,
            self.written_limit,
        ];
        for (slot, value) in out.chunks_exact_mut(8).zip(fields) {
            // Java reads these as signed longs; every value we write fits in i63.
            slot.copy_from_slice(&value.to_be_bytes());
        }
        out[MAGIC_POSITION..CRC_POSITION].copy_from_slice(&EXTENSION_MAGIC.to_be_bytes());
        let crc = crc32fast::hash(&out[..CRC_POSITION]);
        out[CRC_POSITION..].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Reads checkpoint bytes (at least the first 40; shorter input counts as missing data).
    #[must_use]
    pub fn decode(bytes: &[u8]) -> CheckpointState {
        let field = |i: usize| -> u64 {
            bytes
                .get(i * 8..i * 8 + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, |b| u64::try_from(i64::from_be_bytes(b)).unwrap_or(0))
        };
        if bytes.len() < 40 {
            return CheckpointState::Missing;
        }
        let cp = Checkpoint {
            physic_msg_timestamp: field(0),
            logics_msg_timestamp: field(1),
            index_msg_timestamp: field(2),
            master_flushed_offset: field(3),
            confirm_phy_offset: field(4),
            physic_flushed_offset: field(5),
            logics_flushed_offset: field(6),
            index_flushed_offset: field(7),
            written_limit: field(8),
        };
        let word = |at: usize| {
            bytes
                .get(at..at + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes)
        };
        let verified = match (
            word(MAGIC_POSITION),
            word(CRC_POSITION),
            bytes.get(..CRC_POSITION),
        ) {
            (Some(EXTENSION_MAGIC), Some(crc), Some(data)) => crc32fast::hash(data) == crc,
            _ => false,
        };
        if verified {
            CheckpointState::Valid(cp)
        } else {
            CheckpointState::Unverified(Checkpoint {
                physic_flushed_offset: 0,
                logics_flushed_offset: 0,
                index_flushed_offset: 0,
                written_limit: u64::MAX,
                ..cp
            })
        }
    }

    /// Reads the checkpoint file: the valid copy with the furthest flushed offset, else the
    /// first copy's RocketMQ fields, unverified.
    ///
    /// # Errors
    /// The storage's, if the file exists but cannot be read.
    pub fn load<S: Storage>(storage: &S) -> Result<CheckpointState, StorageError> {
        let Some(len) = storage.len(CHECKPOINT_FILE)? else {
            return Ok(CheckpointState::Missing);
        };
        let first = Checkpoint::decode(&storage.read_at(
            CHECKPOINT_FILE,
            0,
            len.min(CHECKPOINT_LEN as u64),
        )?);
        let second = if len >= SECOND_SLOT + CHECKPOINT_LEN as u64 {
            Checkpoint::decode(&storage.read_at(
                CHECKPOINT_FILE,
                SECOND_SLOT,
                CHECKPOINT_LEN as u64,
            )?)
        } else {
            CheckpointState::Missing
        };
        Ok(match (first, second) {
            (CheckpointState::Valid(a), CheckpointState::Valid(b)) => {
                if b.physic_flushed_offset > a.physic_flushed_offset {
                    CheckpointState::Valid(b)
                } else {
                    CheckpointState::Valid(a)
                }
            }
            (CheckpointState::Valid(a), _) => CheckpointState::Valid(a),
            (_, CheckpointState::Valid(b)) => CheckpointState::Valid(b),
            (first, _) => first,
        })
    }

    /// Writes and syncs the checkpoint, creating the file if needed.
    ///
    /// # Errors
    /// The storage's; the caller treats it as a failed sync.
    pub fn store<S: Storage>(&self, storage: &S) -> Result<(), StorageError> {
        match storage.len(CHECKPOINT_FILE)? {
            Some(CHECKPOINT_FILE_LEN) => {}
            Some(_) => {
                // A file of another size (foreign or damaged) cannot hold both copies: replace
                // it. Its content is lost only if a crash lands right here, and a missing
                // checkpoint merely makes the next recovery scan everything.
                storage.delete(CHECKPOINT_FILE)?;
                storage.create(CHECKPOINT_FILE, CHECKPOINT_FILE_LEN)?;
            }
            None => storage.create(CHECKPOINT_FILE, CHECKPOINT_FILE_LEN)?,
        }
        let bytes = self.encode();
        storage.write_at(CHECKPOINT_FILE, SECOND_SLOT, &bytes)?;
        storage.sync(CHECKPOINT_FILE, SECOND_SLOT, CHECKPOINT_LEN as u64)?;
        storage.write_at(CHECKPOINT_FILE, 0, &bytes)?;
        storage.sync(CHECKPOINT_FILE, 0, CHECKPOINT_LEN as u64)
    }
}

/// The store's in-memory checkpoint, whose [`StoredCheckpoint::store`] goes through the
/// [`MetaGate`] it shares with flush jobs, so a job's older snapshot cannot land after it.
/// Dereferences to the [`Checkpoint`] it holds, so the fields read and write as before.
#[derive(Debug, Clone, Default)]
pub(crate) struct StoredCheckpoint {
    cp: Checkpoint,
    gate: MetaGate,
}

impl StoredCheckpoint {
    pub(crate) fn new(cp: Checkpoint, gate: MetaGate) -> StoredCheckpoint {
        StoredCheckpoint { cp, gate }
    }

    /// The gate its writes pass.
    pub(crate) fn gate(&self) -> &MetaGate {
        &self.gate
    }

    /// [`Checkpoint::store`], voiding the metadata of flush jobs made before it.
    ///
    /// # Errors
    /// The storage's.
    pub(crate) fn store<S: Storage>(&self, storage: &S) -> Result<(), StorageError> {
        self.gate.write(|| self.cp.store(storage))
    }
}

impl Deref for StoredCheckpoint {
    type Target = Checkpoint;
    fn deref(&self) -> &Checkpoint {
        &self.cp
    }
}

impl DerefMut for StoredCheckpoint {
    fn deref_mut(&mut self) -> &mut Checkpoint {
        &mut self.cp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemStorage;
    use proptest::prelude::*;

    fn sample() -> Checkpoint {
        Checkpoint {
            physic_msg_timestamp: 1_700_000_000_123,
            logics_msg_timestamp: 1_700_000_000_100,
            index_msg_timestamp: 1_700_000_000_050,
            master_flushed_offset: 0,
            confirm_phy_offset: 0,
            physic_flushed_offset: 4096,
            logics_flushed_offset: 2048,
            index_flushed_offset: 1024,
            written_limit: 8192,
        }
    }

    #[test]
    fn java_fields_sit_where_rocketmq_reads_them() {
        let bytes = sample().encode();
        assert_eq!(&bytes[0..8], &1_700_000_000_123i64.to_be_bytes());
        assert_eq!(&bytes[8..16], &1_700_000_000_100i64.to_be_bytes());
        assert_eq!(&bytes[16..24], &1_700_000_000_050i64.to_be_bytes());
    }

    #[test]
    fn store_then_load_survives_a_crash() {
        let s = MemStorage::new();
        assert_eq!(Checkpoint::load(&s).unwrap(), CheckpointState::Missing);
        sample().store(&s).unwrap();
        s.crash(None);
        assert_eq!(
            Checkpoint::load(&s).unwrap(),
            CheckpointState::Valid(sample())
        );
        assert_eq!(sample().replay_from(), 1024);
        assert_eq!(sample().min_timestamp(), 1_700_000_000_100 - 3000);
    }

    #[test]
    fn a_damaged_extension_is_not_trusted() {
        let mut bytes = sample().encode();
        bytes[45] ^= 1;
        match Checkpoint::decode(&bytes) {
            CheckpointState::Unverified(cp) => {
                assert_eq!(cp.physic_msg_timestamp, 1_700_000_000_123);
                assert_eq!(cp.replay_from(), 0);
            }
            other => panic!("expected unverified, got {other:?}"),
        }
        // A Java-written file: 40 bytes of data, zeros after.
        let mut java = [0u8; 4096];
        java[..40].copy_from_slice(&sample().encode()[..40]);
        assert!(matches!(
            Checkpoint::decode(&java),
            CheckpointState::Unverified(_)
        ));
    }

    #[test]
    fn a_torn_first_copy_falls_back_to_the_second() {
        let s = MemStorage::new();
        let mut old = sample();
        old.physic_flushed_offset = 100;
        old.store(&s).unwrap();
        // The new checkpoint's first-copy write tears after 50 bytes (its second copy is
        // already synced).
        s.write_at(CHECKPOINT_FILE, SECOND_SLOT, &sample().encode())
            .unwrap();
        s.sync(CHECKPOINT_FILE, SECOND_SLOT, CHECKPOINT_LEN as u64)
            .unwrap();
        s.write_at(CHECKPOINT_FILE, 0, &sample().encode()).unwrap();
        s.crash(Some(50));
        assert_eq!(
            Checkpoint::load(&s).unwrap(),
            CheckpointState::Valid(sample())
        );
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(a in 0u64..i64::MAX as u64, b in 0u64..i64::MAX as u64,
                                    c in 0u64..i64::MAX as u64) {
            let cp = Checkpoint {
                physic_msg_timestamp: a,
                logics_msg_timestamp: b,
                index_msg_timestamp: c,
                master_flushed_offset: a / 2,
                confirm_phy_offset: b / 3,
                physic_flushed_offset: c / 5,
                logics_flushed_offset: a / 7,
                index_flushed_offset: b / 11,
                written_limit: c / 13,
            };
            prop_assert_eq!(Checkpoint::decode(&cp.encode()), CheckpointState::Valid(cp));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = Checkpoint::decode(&bytes);
        }
    }
}
