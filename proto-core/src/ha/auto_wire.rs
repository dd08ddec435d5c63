//! The HA wire format in controller mode (RocketMQ's `AutoSwitchHAClient` /
//! `AutoSwitchHAConnection`), raw big-endian bytes on the HA port. Every frame starts with the
//! sender's connection state (Java's `HAConnectionState` ordinal: 1 HANDSHAKE, 2 TRANSFER).
//!
//! | direction      | state     | bytes                                                         |
//! |----------------|-----------|---------------------------------------------------------------|
//! | slave → master | HANDSHAKE | `[4 state][2 syncFromLastFile][2 asyncLearner][8 brokerId]`   |
//! | slave → master | TRANSFER  | `[4 state][8 max offset]`                                     |
//! | master → slave | HANDSHAKE | `[4 state][4 size][8 max offset][4 epoch]` + `size/12` entries `[4 epoch][8 start]` |
//! | master → slave | TRANSFER  | `[4 state][4 size][8 offset][4 epoch][8 epochStart][8 confirm]` + `size` log bytes |
//!
//! The slave opens with its handshake; the master answers with its epoch entries and write
//! position; the slave truncates to the consistent point and reports from there; the master
//! then streams transfer frames (size 0: heartbeat). A transfer never crosses an epoch
//! boundary, so each frame's `epoch`/`epochStart` name the epoch its bytes belong to.
//!
//! Decoders are fallible (typed [`AutoWireError`]) and bounded: a handshake carries at most
//! [`EPOCH_ENTRIES_MAX`] entries (Java's buffer holds 1 000), a transfer at most
//! [`TRANSFER_BODY_MAX`] bytes. Left out: `syncFromLastFile` and `asyncLearner` are carried
//! but not acted on (we always copy from the master's oldest byte and every slave may join the
//! sync state set).

use bytes::{Buf, Bytes, BytesMut};

use super::wire::TRANSFER_BODY_MAX;

/// Java's `HAConnectionState.HANDSHAKE` ordinal.
pub const STATE_HANDSHAKE: i32 = 1;
/// Java's `HAConnectionState.TRANSFER` ordinal.
pub const STATE_TRANSFER: i32 = 2;
/// Bytes of the slave's handshake.
pub const SLAVE_HANDSHAKE_LEN: usize = 4 + 4 + 8;
/// Bytes of the slave's offset report.
pub const SLAVE_REPORT_LEN: usize = 4 + 8;
/// Bytes of the master's handshake header.
pub const MASTER_HANDSHAKE_HEADER_LEN: usize = 4 + 4 + 8 + 4;
/// Bytes of the master's transfer header.
pub const MASTER_TRANSFER_HEADER_LEN: usize = MASTER_HANDSHAKE_HEADER_LEN + 8 + 8;
/// Bytes of one epoch entry in the master's handshake.
pub const EPOCH_ENTRY_LEN: usize = 4 + 8;
/// Most epoch entries a handshake may carry (Java sizes its buffer for 1 000).
pub const EPOCH_ENTRIES_MAX: usize = 1000;

/// Why a peer's HA stream cannot be read: close the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AutoWireError {
    #[error("unknown HA connection state {0}")]
    UnknownState(i32),
    #[error("{field} {value} is negative")]
    Negative { field: &'static str, value: i64 },
    #[error("handshake body of {0} bytes is not a whole number of epoch entries")]
    RaggedEntries(u32),
    #[error("handshake carries {0} epoch entries, more than {EPOCH_ENTRIES_MAX}")]
    TooManyEntries(usize),
    #[error("transfer body of {0} bytes is over the {TRANSFER_BODY_MAX} byte limit")]
    BodyTooLarge(u32),
}

/// One epoch as the wire carries it: from `start_offset` on, the log was written by the
/// master of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireEpoch {
    pub epoch: u32,
    pub start_offset: u64,
}

/// What a slave sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlaveFrame {
    /// The first frame: who the slave is.
    Handshake {
        broker_id: u64,
        sync_from_last_file: bool,
        async_learner: bool,
    },
    /// "I hold the log below this."
    Report(u64),
}

/// The master's answer to a handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterHandshake {
    /// The master's commit-log write position.
    pub max_offset: u64,
    /// The master's newest epoch.
    pub epoch: u32,
    /// The master's epoch entries, oldest first.
    pub entries: Vec<WireEpoch>,
}

/// One master transfer frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoTransferFrame {
    /// Commit-log offset of the body's first byte.
    pub offset: u64,
    /// The epoch the body was written in, and where that epoch starts.
    pub epoch: WireEpoch,
    /// The master's confirm offset: the slave may serve reads below it.
    pub confirm_offset: u64,
    /// Commit-log bytes; empty for a heartbeat.
    pub body: Bytes,
}

/// What a master sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MasterFrame {
    Handshake(MasterHandshake),
    Transfer(AutoTransferFrame),
}

/// The slave's handshake.
#[must_use]
pub fn encode_slave_handshake(broker_id: u64) -> [u8; SLAVE_HANDSHAKE_LEN] {
    let mut out = [0u8; SLAVE_HANDSHAKE_LEN];
    out[..4].copy_from_slice(&STATE_HANDSHAKE.to_be_bytes());
    // Both flags (syncFromLastFile, asyncLearner) are 0: see the module doc.
    out[8..].copy_from_slice(&broker_id.to_be_bytes());
    out
}

/// The slave's report of its write position.
#[must_use]
pub fn encode_slave_report(offset: u64) -> [u8; SLAVE_REPORT_LEN] {
    let mut out = [0u8; SLAVE_REPORT_LEN];
    out[..4].copy_from_slice(&STATE_TRANSFER.to_be_bytes());
    out[4..].copy_from_slice(&offset.to_be_bytes());
    out
}

/// The master's handshake: header and entries in one buffer. At most [`EPOCH_ENTRIES_MAX`]
/// entries are written (the newest ones), so the slave's decoder always accepts it.
#[must_use]
pub fn encode_master_handshake(handshake: &MasterHandshake) -> Vec<u8> {
    let skip = handshake.entries.len().saturating_sub(EPOCH_ENTRIES_MAX);
    let entries = handshake.entries.get(skip..).unwrap_or_default();
    let body_len = entries.len() * EPOCH_ENTRY_LEN;
    let mut out = Vec::with_capacity(MASTER_HANDSHAKE_HEADER_LEN + body_len);
    out.extend_from_slice(&STATE_HANDSHAKE.to_be_bytes());
    // Bounded by EPOCH_ENTRIES_MAX * 12 above, so it fits.
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(&handshake.max_offset.to_be_bytes());
    out.extend_from_slice(&handshake.epoch.to_be_bytes());
    for e in entries {
        out.extend_from_slice(&e.epoch.to_be_bytes());
        out.extend_from_slice(&e.start_offset.to_be_bytes());
    }
    out
}

/// The header of a master transfer frame carrying `body_len` bytes.
#[must_use]
pub fn encode_master_transfer_header(
    offset: u64,
    epoch: WireEpoch,
    confirm_offset: u64,
    body_len: u32,
) -> [u8; MASTER_TRANSFER_HEADER_LEN] {
    let mut out = [0u8; MASTER_TRANSFER_HEADER_LEN];
    out[..4].copy_from_slice(&STATE_TRANSFER.to_be_bytes());
    out[4..8].copy_from_slice(&body_len.to_be_bytes());
    out[8..16].copy_from_slice(&offset.to_be_bytes());
    out[16..20].copy_from_slice(&epoch.epoch.to_be_bytes());
    out[20..28].copy_from_slice(&epoch.start_offset.to_be_bytes());
    out[28..].copy_from_slice(&confirm_offset.to_be_bytes());
    out
}

fn non_negative_i64(field: &'static str, value: i64) -> Result<u64, AutoWireError> {
    u64::try_from(value).map_err(|_| AutoWireError::Negative { field, value })
}

fn non_negative_i32(field: &'static str, value: i32) -> Result<u32, AutoWireError> {
    u32::try_from(value).map_err(|_| AutoWireError::Negative {
        field,
        value: i64::from(value),
    })
}

/// Cuts a slave's stream into frames on the master side.
#[derive(Debug, Default)]
pub struct SlaveFrameDecoder {
    buf: BytesMut,
}

impl SlaveFrameDecoder {
    /// Appends bytes read from the slave.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `Ok(None)` until one has arrived.
    ///
    /// # Errors
    /// [`AutoWireError`]: the stream is not a slave's; close the connection.
    pub fn next_frame(&mut self) -> Result<Option<SlaveFrame>, AutoWireError> {
        let Some(mut head) = self.buf.get(..4) else {
            return Ok(None);
        };
        let state = head.get_i32();
        let len = match state {
            STATE_HANDSHAKE => SLAVE_HANDSHAKE_LEN,
            STATE_TRANSFER => SLAVE_REPORT_LEN,
            other => return Err(AutoWireError::UnknownState(other)),
        };
        if self.buf.len() < len {
            return Ok(None);
        }
        let mut frame = self.buf.split_to(len);
        frame.advance(4);
        if state == STATE_HANDSHAKE {
            let sync_from_last_file = frame.get_i16() == 1;
            let async_learner = frame.get_i16() == 1;
            let broker_id = non_negative_i64("brokerId", frame.get_i64())?;
            return Ok(Some(SlaveFrame::Handshake {
                broker_id,
                sync_from_last_file,
                async_learner,
            }));
        }
        // A negative report (Java's "nothing yet") counts as 0, as in the default wire.
        Ok(Some(SlaveFrame::Report(
            u64::try_from(frame.get_i64()).unwrap_or(0),
        )))
    }
}

/// Cuts a master's stream into frames on the slave side.
#[derive(Debug, Default)]
pub struct MasterFrameDecoder {
    buf: BytesMut,
}

impl MasterFrameDecoder {
    /// Appends bytes read from the master.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `Ok(None)` until one has arrived.
    ///
    /// # Errors
    /// [`AutoWireError`]: the stream is not a master's; close the connection.
    pub fn next_frame(&mut self) -> Result<Option<MasterFrame>, AutoWireError> {
        let Some(mut head) = self.buf.get(..MASTER_HANDSHAKE_HEADER_LEN) else {
            return Ok(None);
        };
        let state = head.get_i32();
        let body_len = head.get_u32();
        let header_len = match state {
            STATE_HANDSHAKE => {
                if !(body_len as usize).is_multiple_of(EPOCH_ENTRY_LEN) {
                    return Err(AutoWireError::RaggedEntries(body_len));
                }
                let entries = body_len as usize / EPOCH_ENTRY_LEN;
                if entries > EPOCH_ENTRIES_MAX {
                    return Err(AutoWireError::TooManyEntries(entries));
                }
                MASTER_HANDSHAKE_HEADER_LEN
            }
            STATE_TRANSFER => {
                if body_len > TRANSFER_BODY_MAX {
                    return Err(AutoWireError::BodyTooLarge(body_len));
                }
                MASTER_TRANSFER_HEADER_LEN
            }
            other => return Err(AutoWireError::UnknownState(other)),
        };
        if self.buf.len() < header_len + body_len as usize {
            return Ok(None);
        }
        let mut header = self.buf.split_to(header_len);
        let body = self.buf.split_to(body_len as usize).freeze();
        header.advance(8);
        let offset = non_negative_i64("offset", header.get_i64())?;
        let epoch = non_negative_i32("epoch", header.get_i32())?;
        if state == STATE_HANDSHAKE {
            let mut body = body;
            let mut entries = Vec::with_capacity(body.len() / EPOCH_ENTRY_LEN);
            while body.remaining() >= EPOCH_ENTRY_LEN {
                entries.push(WireEpoch {
                    epoch: non_negative_i32("entry epoch", body.get_i32())?,
                    start_offset: non_negative_i64("entry start offset", body.get_i64())?,
                });
            }
            return Ok(Some(MasterFrame::Handshake(MasterHandshake {
                max_offset: offset,
                epoch,
                entries,
            })));
        }
        let start_offset = non_negative_i64("epochStartOffset", header.get_i64())?;
        // Java's "not computed yet" (-1) serves nothing: 0.
        let confirm_offset = u64::try_from(header.get_i64()).unwrap_or(0);
        Ok(Some(MasterFrame::Transfer(AutoTransferFrame {
            offset,
            epoch: WireEpoch {
                epoch,
                start_offset,
            },
            confirm_offset,
            body,
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(epoch: u32, start_offset: u64) -> WireEpoch {
        WireEpoch {
            epoch,
            start_offset,
        }
    }

    fn master_stream() -> (Vec<u8>, Vec<MasterFrame>) {
        let handshake = MasterHandshake {
            max_offset: 9000,
            epoch: 3,
            entries: vec![epoch(1, 0), epoch(3, 4096)],
        };
        let transfer = AutoTransferFrame {
            offset: 4096,
            epoch: epoch(3, 4096),
            confirm_offset: 4000,
            body: Bytes::from_static(b"hello"),
        };
        let heartbeat = AutoTransferFrame {
            offset: 4101,
            epoch: epoch(3, 4096),
            confirm_offset: 4101,
            body: Bytes::new(),
        };
        let mut stream = encode_master_handshake(&handshake);
        for t in [&transfer, &heartbeat] {
            stream.extend_from_slice(&encode_master_transfer_header(
                t.offset,
                t.epoch,
                t.confirm_offset,
                t.body.len() as u32,
            ));
            stream.extend_from_slice(&t.body);
        }
        let frames = vec![
            MasterFrame::Handshake(handshake),
            MasterFrame::Transfer(transfer),
            MasterFrame::Transfer(heartbeat),
        ];
        (stream, frames)
    }

    #[test]
    fn layouts_match_java_sizes_and_field_order() {
        let hs = encode_slave_handshake(2);
        assert_eq!(hs.len(), 16);
        assert_eq!(&hs[..4], &[0, 0, 0, 1]);
        assert_eq!(&hs[8..], &2u64.to_be_bytes());
        assert_eq!(encode_slave_report(7)[..4], [0, 0, 0, 2]);
        let t = encode_master_transfer_header(10, epoch(4, 8), 6, 3);
        assert_eq!(t.len(), 36);
        assert_eq!(&t[4..8], &3u32.to_be_bytes());
        assert_eq!(&t[16..20], &4u32.to_be_bytes());
        assert_eq!(&t[28..], &6u64.to_be_bytes());
        let h = encode_master_handshake(&MasterHandshake {
            max_offset: 1,
            epoch: 2,
            entries: vec![epoch(2, 0)],
        });
        assert_eq!(h.len(), 20 + 12);
        assert_eq!(&h[4..8], &12u32.to_be_bytes());
    }

    #[test]
    fn master_frames_are_cut_from_any_split_of_the_stream() {
        let (stream, want) = master_stream();
        for split in 0..stream.len() {
            let mut d = MasterFrameDecoder::default();
            let mut got = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                d.push(part);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, want, "split at {split}");
        }
    }

    #[test]
    fn slave_frames_are_cut_from_any_split_of_the_stream() {
        let mut stream = encode_slave_handshake(5).to_vec();
        stream.extend_from_slice(&encode_slave_report(0));
        stream.extend_from_slice(&encode_slave_report(1234));
        let want = vec![
            SlaveFrame::Handshake {
                broker_id: 5,
                sync_from_last_file: false,
                async_learner: false,
            },
            SlaveFrame::Report(0),
            SlaveFrame::Report(1234),
        ];
        for split in 0..stream.len() {
            let mut d = SlaveFrameDecoder::default();
            let mut got = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                d.push(part);
                while let Some(f) = d.next_frame().unwrap() {
                    got.push(f);
                }
            }
            assert_eq!(got, want, "split at {split}");
        }
    }

    #[test]
    fn bad_master_frames_are_typed_errors() {
        let mut d = MasterFrameDecoder::default();
        d.push(&encode_master_transfer_header(
            0,
            epoch(1, 0),
            0,
            TRANSFER_BODY_MAX + 1,
        ));
        assert_eq!(
            d.next_frame(),
            Err(AutoWireError::BodyTooLarge(TRANSFER_BODY_MAX + 1))
        );

        let mut h = encode_master_handshake(&MasterHandshake {
            max_offset: 0,
            epoch: 1,
            entries: vec![],
        });
        h[4..8].copy_from_slice(&13u32.to_be_bytes());
        let mut d = MasterFrameDecoder::default();
        d.push(&h);
        assert_eq!(d.next_frame(), Err(AutoWireError::RaggedEntries(13)));

        h[4..8].copy_from_slice(&((EPOCH_ENTRIES_MAX as u32 + 1) * 12).to_be_bytes());
        let mut d = MasterFrameDecoder::default();
        d.push(&h);
        assert_eq!(
            d.next_frame(),
            Err(AutoWireError::TooManyEntries(EPOCH_ENTRIES_MAX + 1))
        );

        let mut d = MasterFrameDecoder::default();
        d.push(&[0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(AutoWireError::UnknownState(4)));

        let mut t = encode_master_transfer_header(0, epoch(1, 0), 0, 0);
        t[16..20].copy_from_slice(&(-1i32).to_be_bytes());
        let mut d = MasterFrameDecoder::default();
        d.push(&t);
        assert_eq!(
            d.next_frame(),
            Err(AutoWireError::Negative {
                field: "epoch",
                value: -1
            })
        );
    }

    #[test]
    fn bad_slave_frames_are_typed_errors() {
        let mut d = SlaveFrameDecoder::default();
        d.push(&[0, 0, 0, 0]);
        assert_eq!(d.next_frame(), Err(AutoWireError::UnknownState(0)));
        let mut hs = encode_slave_handshake(0);
        hs[8..].copy_from_slice(&(-2i64).to_be_bytes());
        let mut d = SlaveFrameDecoder::default();
        d.push(&hs);
        assert_eq!(
            d.next_frame(),
            Err(AutoWireError::Negative {
                field: "brokerId",
                value: -2
            })
        );
    }

    #[test]
    fn an_oversized_epoch_history_sends_its_newest_entries() {
        let entries: Vec<WireEpoch> = (0..EPOCH_ENTRIES_MAX as u32 + 5)
            .map(|e| epoch(e, u64::from(e) * 10))
            .collect();
        let hs = MasterHandshake {
            max_offset: 1,
            epoch: EPOCH_ENTRIES_MAX as u32 + 4,
            entries: entries.clone(),
        };
        let mut d = MasterFrameDecoder::default();
        d.push(&encode_master_handshake(&hs));
        let Some(MasterFrame::Handshake(got)) = d.next_frame().unwrap() else {
            panic!("no handshake");
        };
        assert_eq!(got.entries.len(), EPOCH_ENTRIES_MAX);
        assert_eq!(got.entries.last(), entries.last());
    }
}
