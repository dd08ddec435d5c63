//! Message body compression (§7.4 of the protocol reference).
//!
//! The broker stores compressed bodies as sent and never inflates them; consumers do. We need
//! inflation for features that read bodies (and for tests) and deflation for producers and
//! tests. Only ZLIB (compression type 3, or 0 from pre-5.x senders) is implemented: LZ4 and ZSTD
//! would each need a new dependency and no client we test sends them, so they get
//! [`CompressError::Unsupported`]. Output is bounded so a small body cannot inflate without
//! limit.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::sys_flag::{self, COMPRESSED_FLAG};

/// A compression codec RocketMQ names in the sys flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Codec {
    /// Type 1: LZ4 frame format.
    Lz4,
    /// Type 2: zstd frame.
    Zstd,
    /// Type 3 (or 0): zlib-wrapped DEFLATE.
    Zlib,
}

impl Codec {
    /// The codec named by the compression type bits of `sys_flag`, if any (types 4–7 are
    /// undefined).
    #[must_use]
    pub fn from_sys_flag(sys_flag: i32) -> Option<Self> {
        match sys_flag::compression_type(sys_flag) {
            0 | 3 => Some(Self::Zlib),
            1 => Some(Self::Lz4),
            2 => Some(Self::Zstd),
            _ => None,
        }
    }
}

/// Why a body could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompressError {
    /// Sys flag bit 0 is clear: the body is not compressed.
    #[error("body is not compressed (sys flag bit 0 clear)")]
    NotCompressed,
    /// A codec RocketMQ defines that we do not implement.
    #[error("compression codec {codec:?} is not supported")]
    Unsupported {
        /// The codec the sys flag names.
        codec: Codec,
    },
    /// Compression type bits 4–7, which RocketMQ does not define.
    #[error("unknown compression type {ty}")]
    UnknownType {
        /// The type field, 0..=7.
        ty: i32,
    },
    /// The inflated body would exceed the caller's limit.
    #[error("inflated body exceeds {max_len} bytes")]
    TooLarge {
        /// The limit.
        max_len: usize,
    },
    /// The compressed bytes are not a valid zlib stream.
    #[error("corrupt zlib stream")]
    Corrupt,
    /// The zlib stream ends before its end marker.
    #[error("zlib stream is truncated")]
    Truncated,
}

/// Inflates `body` as `sys_flag` says, producing at most `max_len` bytes. Bytes after the end
/// of the zlib stream are ignored, as Java's `InflaterInputStream` ignores them.
///
/// # Errors
/// [`CompressError`]: not compressed, unsupported codec, over `max_len`, corrupt or truncated.
pub fn decompress_body(
    sys_flag: i32,
    body: &[u8],
    max_len: usize,
) -> Result<Vec<u8>, CompressError> {
    if sys_flag & COMPRESSED_FLAG == 0 {
        return Err(CompressError::NotCompressed);
    }
    match Codec::from_sys_flag(sys_flag) {
        Some(Codec::Zlib) => inflate_zlib(body, max_len),
        Some(codec) => Err(CompressError::Unsupported { codec }),
        None => Err(CompressError::UnknownType {
            ty: sys_flag::compression_type(sys_flag),
        }),
    }
}

/// Deflates `body` into a zlib stream at `level` (0–9, clamped; RocketMQ producers use 5).
#[must_use]
pub fn compress_zlib(body: &[u8], level: u32) -> Vec<u8> {
    let mut deflate = Compress::new(Compression::new(level.min(9)), true);
    let mut out = Vec::with_capacity(body.len() / 2 + 64);
    loop {
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(64));
        }
        let input = body.get(total(deflate.total_in())..).unwrap_or_default();
        // Deflating from memory into a buffer with free space cannot fail: the backend reports
        // errors only for a misused stream, and this loop drives it in the documented way.
        let status = deflate
            .compress_vec(input, &mut out, FlushCompress::Finish)
            .expect("deflate into memory");
        if status == Status::StreamEnd {
            return out;
        }
    }
}

fn inflate_zlib(body: &[u8], max_len: usize) -> Result<Vec<u8>, CompressError> {
    let mut inflate = Decompress::new(true);
    let limit = max_len.saturating_add(1);
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).clamp(64, 1 << 20).min(limit));
    loop {
        if out.len() == out.capacity() {
            if out.len() > max_len {
                return Err(CompressError::TooLarge { max_len });
            }
            let grown = out.capacity().saturating_mul(2).clamp(64, limit);
            out.reserve_exact(grown - out.len());
        }
        let consumed = total(inflate.total_in());
        let produced = out.len();
        let input = body.get(consumed..).unwrap_or_default();
        let status = inflate
            .decompress_vec(input, &mut out, FlushDecompress::None)
            .map_err(|_| CompressError::Corrupt)?;
        if status == Status::StreamEnd {
            break;
        }
        let progressed = total(inflate.total_in()) != consumed || out.len() != produced;
        if !progressed && out.len() < out.capacity() {
            // Room to write and nothing left to read: the stream stopped early.
            return Err(CompressError::Truncated);
        }
    }
    if out.len() > max_len {
        return Err(CompressError::TooLarge { max_len });
    }
    Ok(out)
}

/// A stream counter as an index. It never exceeds the slice length, which is a usize.
fn total(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::sys_flag::{
        COMPRESSION_LZ4_TYPE, COMPRESSION_ZLIB_TYPE, COMPRESSION_ZSTD_TYPE,
    };
    use proptest::prelude::*;

    const ZLIB: i32 = COMPRESSED_FLAG | COMPRESSION_ZLIB_TYPE;

    #[test]
    fn known_zlib_stream() {
        // zlib.compress(b"hello") from Python/CPython zlib, level 6.
        let stream = [
            0x78, 0x9c, 0xcb, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x06, 0x2c, 0x02, 0x15,
        ];
        assert_eq!(decompress_body(ZLIB, &stream, 5).unwrap(), b"hello");
        assert_eq!(
            decompress_body(COMPRESSED_FLAG, &stream, 100).unwrap(),
            b"hello"
        );
        assert_eq!(
            decompress_body(ZLIB, &stream, 4),
            Err(CompressError::TooLarge { max_len: 4 })
        );
        assert_eq!(
            decompress_body(ZLIB, &stream[..8], 100),
            Err(CompressError::Truncated)
        );
        assert_eq!(
            decompress_body(ZLIB, b"not zlib", 100),
            Err(CompressError::Corrupt)
        );
        let mut trailing = stream.to_vec();
        trailing.extend_from_slice(b"junk");
        assert_eq!(decompress_body(ZLIB, &trailing, 100).unwrap(), b"hello");
    }

    #[test]
    fn flag_checks() {
        let stream = compress_zlib(b"x", 5);
        assert_eq!(
            decompress_body(COMPRESSION_ZLIB_TYPE, &stream, 10),
            Err(CompressError::NotCompressed)
        );
        let lz4 = COMPRESSED_FLAG | COMPRESSION_LZ4_TYPE;
        assert_eq!(
            decompress_body(lz4, &stream, 10),
            Err(CompressError::Unsupported { codec: Codec::Lz4 })
        );
        let zstd = COMPRESSED_FLAG | COMPRESSION_ZSTD_TYPE;
        assert_eq!(
            decompress_body(zstd, &stream, 10),
            Err(CompressError::Unsupported { codec: Codec::Zstd })
        );
        assert_eq!(
            decompress_body(COMPRESSED_FLAG | 0x500, &stream, 10),
            Err(CompressError::UnknownType { ty: 5 })
        );
    }

    #[test]
    fn bomb_is_stopped_at_the_limit() {
        let big = vec![0u8; 10 << 20];
        let bomb = compress_zlib(&big, 9);
        assert!(bomb.len() < 20_000);
        assert_eq!(
            decompress_body(ZLIB, &bomb, 1 << 20),
            Err(CompressError::TooLarge { max_len: 1 << 20 })
        );
        assert_eq!(
            decompress_body(ZLIB, &bomb, 10 << 20).unwrap().len(),
            10 << 20
        );
    }

    const CPP_PRODUCER: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/cpp-producer.jsonl"
    ));

    /// The C++ client compresses a 6000-byte body with sysFlag=1 (type bits 0, read as ZLIB).
    #[test]
    fn inflates_the_cpp_client_body() {
        let line = CPP_PRODUCER
            .lines()
            .find(|l| l.contains("zlib-compressed, 6000B inflated"))
            .unwrap();
        let frame: serde_json::Value = serde_json::from_str(line).unwrap();
        let hex = frame["hex"].as_str().unwrap();
        let raw: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let header_len = (u32::from_be_bytes(raw[4..8].try_into().unwrap()) & 0xFF_FFFF) as usize;
        let body = &raw[8 + header_len..];
        assert_eq!(
            decompress_body(COMPRESSED_FLAG, body, 4 << 20)
                .unwrap()
                .len(),
            6000
        );
    }

    proptest! {
        #[test]
        fn compress_then_decompress_is_identity(body in prop::collection::vec(any::<u8>(), 0..5000), level in 0u32..12) {
            let stream = compress_zlib(&body, level);
            prop_assert_eq!(decompress_body(ZLIB, &stream, body.len()).unwrap(), body);
        }

        #[test]
        fn decompress_of_arbitrary_bytes_never_panics(raw in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(out) = decompress_body(ZLIB, &raw, 4096) {
                prop_assert!(out.len() <= 4096);
            }
        }
    }
}
