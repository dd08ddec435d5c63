//! The HA wire format (RocketMQ's default, non-controller replication), raw bytes on the HA
//! port, big-endian like the rest of RocketMQ:
//!
//! | direction      | bytes                                   | meaning                          |
//! |----------------|-----------------------------------------|----------------------------------|
//! | slave → master | `[8: max physical offset]`              | "I hold the log below this"      |
//! | master → slave | `[8: physical offset][4: size][size]`   | commit-log bytes from the offset |
//!
//! A master frame with size 0 is a heartbeat. The master reads only the newest whole report
//! from whatever arrived (Java's `ReadSocketService` does the same).
//!
//! Left out: the controller mode's handshake and epoch frames (`AutoSwitchHAConnection`).

use bytes::{Buf, Bytes, BytesMut};

/// Bytes of a slave's offset report.
pub const REPORT_LEN: usize = 8;
/// Bytes of a master frame's header.
pub const TRANSFER_HEADER_LEN: usize = 12;
/// Largest frame body accepted: far above a master's batch (32 KiB by default, one segment at
/// most), low enough that a corrupt size cannot make us buffer gigabytes.
pub const TRANSFER_BODY_MAX: u32 = 64 * 1024 * 1024;

/// A slave's report of its commit log's write position.
#[must_use]
pub fn encode_report(offset: u64) -> [u8; REPORT_LEN] {
    offset.to_be_bytes()
}

/// The header of a master frame carrying `body_len` bytes from commit-log offset `offset`.
#[must_use]
pub fn encode_transfer_header(offset: u64, body_len: u32) -> [u8; TRANSFER_HEADER_LEN] {
    let mut out = [0u8; TRANSFER_HEADER_LEN];
    out[..8].copy_from_slice(&offset.to_be_bytes());
    out[8..].copy_from_slice(&body_len.to_be_bytes());
    out
}

/// Why the master's stream cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HaWireError {
    #[error("frame offset {0} is negative")]
    NegativeOffset(i64),
    #[error("frame body of {0} bytes is over the {TRANSFER_BODY_MAX} byte limit")]
    BodyTooLarge(u32),
}

/// Collects a slave's 8-byte reports on the master side.
#[derive(Debug, Default, Clone)]
pub struct ReportDecoder {
    partial: Vec<u8>,
}

impl ReportDecoder {
    /// Feeds bytes read from the slave; returns the newest complete report among them, if any.
    /// A report with the top bit set (negative in Java) is taken as 0.
    pub fn push(&mut self, bytes: &[u8]) -> Option<u64> {
        let mut newest = None;
        for &b in bytes {
            self.partial.push(b);
            if self.partial.len() == REPORT_LEN {
                let mut raw = [0u8; REPORT_LEN];
                raw.copy_from_slice(&self.partial);
                self.partial.clear();
                newest = Some(u64::try_from(i64::from_be_bytes(raw)).unwrap_or(0));
            }
        }
        newest
    }
}

/// One master frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferFrame {
    /// Commit-log offset of the body's first byte.
    pub offset: u64,
    /// Commit-log bytes; empty for a heartbeat.
    pub body: Bytes,
}

/// Cuts the master's stream into frames on the slave side.
#[derive(Debug, Default)]
pub struct TransferDecoder {
    buf: BytesMut,
}

impl TransferDecoder {
    /// Appends bytes read from the master.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, `Ok(None)` until one has arrived.
    ///
    /// # Errors
    /// [`HaWireError`]: the stream is not a master's; close the connection.
    pub fn next_frame(&mut self) -> Result<Option<TransferFrame>, HaWireError> {
        let Some(header) = self.buf.get(..TRANSFER_HEADER_LEN) else {
            return Ok(None);
        };
        let mut header = header;
        let offset = header.get_i64();
        let len = header.get_u32();
        let offset = u64::try_from(offset).map_err(|_| HaWireError::NegativeOffset(offset))?;
        if len > TRANSFER_BODY_MAX {
            return Err(HaWireError::BodyTooLarge(len));
        }
        let total = TRANSFER_HEADER_LEN + len as usize;
        if self.buf.len() < total {
            return Ok(None);
        }
        self.buf.advance(TRANSFER_HEADER_LEN);
        let body = self.buf.split_to(len as usize).freeze();
        Ok(Some(TransferFrame { offset, body }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_keep_only_the_newest_whole_value_across_reads() {
        let mut d = ReportDecoder::default();
        let mut bytes = encode_report(7).to_vec();
        bytes.extend_from_slice(&encode_report(300));
        bytes.extend_from_slice(&encode_report(301)[..3]);
        assert_eq!(d.push(&bytes), Some(300));
        assert_eq!(d.push(&encode_report(301)[3..]), Some(301));
        assert_eq!(d.push(&[]), None);
        assert_eq!(d.push(&(-5i64).to_be_bytes()), Some(0));
    }

    #[test]
    fn frames_are_cut_from_any_split_of_the_stream() {
        let mut stream = Vec::new();
        stream.extend_from_slice(&encode_transfer_header(4096, 5));
        stream.extend_from_slice(b"hello");
        stream.extend_from_slice(&encode_transfer_header(4101, 0));
        for split in 0..stream.len() {
            let mut d = TransferDecoder::default();
            let mut frames = Vec::new();
            for part in [&stream[..split], &stream[split..]] {
                d.push(part);
                while let Some(f) = d.next_frame().unwrap() {
                    frames.push(f);
                }
            }
            assert_eq!(frames.len(), 2, "split at {split}");
            assert_eq!(
                (frames[0].offset, &frames[0].body[..]),
                (4096, &b"hello"[..])
            );
            assert_eq!((frames[1].offset, frames[1].body.len()), (4101, 0));
        }
    }

    #[test]
    fn corrupt_headers_are_errors_not_buffers() {
        let mut d = TransferDecoder::default();
        d.push(&encode_transfer_header(0, TRANSFER_BODY_MAX + 1));
        assert_eq!(
            d.next_frame(),
            Err(HaWireError::BodyTooLarge(TRANSFER_BODY_MAX + 1))
        );
        let mut d = TransferDecoder::default();
        let mut h = (-1i64).to_be_bytes().to_vec();
        h.extend_from_slice(&0u32.to_be_bytes());
        d.push(&h);
        assert_eq!(d.next_frame(), Err(HaWireError::NegativeOffset(-1)));
    }
}
