//! The remoting frame (protocol reference §1): a streaming [`FrameDecoder`] over a connection's
//! receive buffer, and [`encode_frame`] / [`encode_header`] for the send side.
//!
//! Layout, big-endian: `i32 total_length` (bytes after this field), `i32 header_meta` (top byte
//! the serialize type, low 24 bits the header length), the header, then the body, whose length
//! is what remains.
//!
//! What it leaves out: the socket. The caller reads into a `BytesMut` and calls
//! [`FrameDecoder::decode`] until it returns `Ok(None)`; it writes what the encoders append.

use bytes::{BufMut, BytesMut};
use nom::bytes::streaming::take;
use nom::number::streaming::{be_i32, be_u32};
use nom::{IResult, Needed, Parser};

use super::binary_header::{self, BinaryEncodeError, BinaryHeaderError};
use super::command::{RemotingCommand, SerializeType};
use super::json_header::{self, JsonHeaderError};

/// Splits a byte stream into commands.
///
/// Calling protocol:
/// 1. Append whatever the socket delivered to one `BytesMut` per connection.
/// 2. Call [`decode`](Self::decode) until it returns `Ok(None)`: each `Ok(Some(cmd))` consumed
///    exactly one frame; `Ok(None)` consumed nothing and waits for more bytes (it may reserve
///    room for the rest of a large frame).
/// 3. On `Err`, close the connection: the stream cannot be resynchronised. The buffer is left
///    as it was.
///
/// Any split of the same stream, down to one byte per read, yields the same commands.
///
/// ```
/// use bytes::BytesMut;
/// use proto_core::codec::{encode_frame, FrameDecoder};
/// use proto_core::{RemotingCommand, SerializeType};
///
/// let sent = RemotingCommand::request(105, 7).with_body(&b"payload"[..]);
/// let mut wire = BytesMut::new();
/// encode_frame(&sent, SerializeType::Json, &mut wire).expect("small frame");
///
/// let mut decoder = FrameDecoder::new();
/// let mut received = BytesMut::new();
/// let mut commands = Vec::new();
/// for byte in wire.iter() {
///     received.extend_from_slice(&[*byte]);
///     while let Some(cmd) = decoder.decode(&mut received).expect("well-formed stream") {
///         commands.push(cmd);
///     }
/// }
/// assert_eq!(commands, vec![sent]);
/// ```
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    /// Largest frame accepted, counting the 4-byte length field (Java's `frameMaxLength`).
    frame_len_max: usize,
}

impl FrameDecoder {
    /// A decoder with Java's default limit, [`FRAME_LEN_MAX_DEFAULT`].
    pub fn new() -> FrameDecoder {
        FrameDecoder::with_frame_len_max(FRAME_LEN_MAX_DEFAULT)
    }

    /// A decoder that rejects frames longer than `frame_len_max` bytes, length field included.
    pub fn with_frame_len_max(frame_len_max: usize) -> FrameDecoder {
        assert!(
            frame_len_max >= PREFIX_LEN,
            "a limit below 8 bytes admits no frame"
        );
        FrameDecoder { frame_len_max }
    }

    pub fn frame_len_max(&self) -> usize {
        self.frame_len_max
    }

    /// Takes one frame off the front of `buf`, or returns `Ok(None)` if `buf` does not hold a
    /// whole frame yet. The command's body is a view into the frame's bytes, not a copy.
    ///
    /// Limits are checked as soon as the bytes that break them arrive: an oversized length is
    /// refused after 4 bytes, a bad header length or serialize type after 8.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<RemotingCommand>, FrameError> {
        let Some(prefix) = self.prefix(buf)? else {
            return Ok(None);
        };
        let whole: IResult<&[u8], &[u8], ()> = take(prefix.frame_len).parse(&buf[..]);
        match whole {
            Ok(_) => {}
            Err(nom::Err::Incomplete(needed)) => {
                // Make room for the rest once, instead of growing with every read of a large
                // frame. The length was checked against the limit, so this is bounded.
                if let Needed::Size(missing) = needed {
                    buf.reserve(missing.get());
                }
                return Ok(None);
            }
            // `take` in streaming mode fails only with Incomplete.
            Err(nom::Err::Error(()) | nom::Err::Failure(())) => return Ok(None),
        }
        let header_end = PREFIX_LEN + prefix.header_len;
        let header = buf.get(PREFIX_LEN..header_end).unwrap_or_default();
        // Decode before consuming, so an error leaves the buffer as it was.
        let mut cmd = decode_header(prefix.serialize_type, header)?;
        let frame = buf.split_to(prefix.frame_len).freeze();
        cmd.body = frame.slice(header_end..);
        Ok(Some(cmd))
    }

    /// Reads and checks the length and header-meta words, if they have arrived.
    fn prefix(&self, buf: &[u8]) -> Result<Option<FramePrefix>, FrameError> {
        let total_len = match be_i32::<&[u8], ()>(buf) {
            Ok((_, total_len)) => total_len,
            // Streaming number parsers fail only with Incomplete.
            Err(_) => return Ok(None),
        };
        let after_len = usize::try_from(total_len)
            .map_err(|_| FrameError::NegativeLength { len: total_len })?;
        let frame_len = after_len.saturating_add(LENGTH_FIELD_LEN);
        if frame_len > self.frame_len_max {
            return Err(FrameError::FrameTooLarge {
                len: frame_len,
                max: self.frame_len_max,
            });
        }
        if after_len < HEADER_META_LEN {
            return Err(FrameError::FrameTooShort { len: total_len });
        }
        let rest = buf.get(LENGTH_FIELD_LEN..).unwrap_or_default();
        let header_meta = match be_u32::<&[u8], ()>(rest) {
            Ok((_, header_meta)) => header_meta,
            Err(_) => return Ok(None),
        };
        let header_len = (header_meta & HEADER_LEN_MAX_U32) as usize;
        let available = after_len - HEADER_META_LEN;
        if header_len > available {
            return Err(FrameError::HeaderLongerThanFrame {
                header_len,
                available,
            });
        }
        let serialize_type = match (header_meta >> 24) as u8 {
            0 => SerializeType::Json,
            1 => SerializeType::RocketMq,
            other => return Err(FrameError::UnknownSerializeType(other)),
        };
        Ok(Some(FramePrefix {
            frame_len,
            header_len,
            serialize_type,
        }))
    }
}

impl Default for FrameDecoder {
    fn default() -> FrameDecoder {
        FrameDecoder::new()
    }
}

/// Appends one whole frame: lengths, `cmd`'s header encoded as `ty`, and its body. On error
/// `out` is unchanged.
pub fn encode_frame(
    cmd: &RemotingCommand,
    ty: SerializeType,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    out.reserve(PREFIX_LEN + cmd.body.len() + HEADER_LEN_GUESS);
    encode_frame_head(cmd, cmd.body.len(), ty, out)?;
    out.put_slice(&cmd.body);
    Ok(())
}

/// Appends everything of `cmd`'s frame but the body: the lengths (counting a body of
/// `body_len` bytes) and the header, so a writer can send the body from where it lies (a mapped
/// segment, or several records of one) instead of copying it. On error `out` is unchanged.
pub fn encode_frame_head(
    cmd: &RemotingCommand,
    body_len: usize,
    ty: SerializeType,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = out.len();
    out.reserve(PREFIX_LEN + HEADER_LEN_GUESS);
    out.put_bytes(0, PREFIX_LEN);
    if let Err(e) = encode_header(cmd, ty, out) {
        out.truncate(start);
        return Err(e);
    }
    let header_len = out.len() - start - PREFIX_LEN;
    let after_len = HEADER_META_LEN + header_len + body_len;
    let Ok(total_len) = i32::try_from(after_len) else {
        out.truncate(start);
        return Err(EncodeError::FrameTooLong {
            len: after_len + LENGTH_FIELD_LEN,
        });
    };
    // `encode_header` refused anything longer than 24 bits, so the cast keeps every bit.
    let header_meta = ((ty as u32) << 24) | header_len as u32;
    let mut prefix = [0u8; PREFIX_LEN];
    prefix[..LENGTH_FIELD_LEN].copy_from_slice(&total_len.to_be_bytes());
    prefix[LENGTH_FIELD_LEN..].copy_from_slice(&header_meta.to_be_bytes());
    out[start..start + PREFIX_LEN].copy_from_slice(&prefix);
    Ok(())
}

/// Appends `cmd`'s header alone, encoded as `ty`. On error `out` is unchanged.
pub fn encode_header(
    cmd: &RemotingCommand,
    ty: SerializeType,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let start = out.len();
    match ty {
        SerializeType::Json => json_header::encode(cmd, out),
        SerializeType::RocketMq => binary_header::encode(cmd, out)?,
    }
    let len = out.len() - start;
    if len > HEADER_LEN_MAX {
        out.truncate(start);
        return Err(EncodeError::HeaderTooLong { len });
    }
    Ok(())
}

/// Why a frame was rejected. Every variant means the peer broke the protocol or our limits:
/// close the connection (as Java's decoder does), there is no way to find the next frame.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge { len: usize, max: usize },
    #[error("frame length {len} is negative")]
    NegativeLength { len: i32 },
    #[error("frame length {len} leaves no room for the 4-byte header length word")]
    FrameTooShort { len: i32 },
    #[error("header length {header_len} exceeds the {available} bytes left in the frame")]
    HeaderLongerThanFrame { header_len: usize, available: usize },
    #[error("unknown serialize type {0}")]
    UnknownSerializeType(u8),
    #[error("bad JSON header: {0}")]
    JsonHeader(#[from] JsonHeaderError),
    #[error("bad ROCKETMQ binary header: {0}")]
    BinaryHeader(#[from] BinaryHeaderError),
}

/// Why a command could not be written. These are facts about the command, not the peer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("cannot write a ROCKETMQ binary header: {0}")]
    Binary(#[from] BinaryEncodeError),
    #[error("header of {len} bytes exceeds the 24-bit header length")]
    HeaderTooLong { len: usize },
    #[error("frame of {len} bytes exceeds the 32-bit frame length")]
    FrameTooLong { len: usize },
}

/// What the first 8 bytes of a frame say, checked.
struct FramePrefix {
    /// Whole frame, length field included.
    frame_len: usize,
    header_len: usize,
    serialize_type: SerializeType,
}

fn decode_header(ty: SerializeType, header: &[u8]) -> Result<RemotingCommand, FrameError> {
    Ok(match ty {
        SerializeType::Json => json_header::decode(header)?,
        SerializeType::RocketMq => binary_header::decode(header)?,
    })
}

/// Java's default `com.rocketmq.remoting.frameMaxLength`: 16 MiB, length field included.
pub const FRAME_LEN_MAX_DEFAULT: usize = 16 * 1024 * 1024;
/// The header length is the low 24 bits of the header-meta word.
pub const HEADER_LEN_MAX: usize = HEADER_LEN_MAX_U32 as usize;
const HEADER_LEN_MAX_U32: u32 = 0x00FF_FFFF;
const LENGTH_FIELD_LEN: usize = 4;
const HEADER_META_LEN: usize = 4;
const PREFIX_LEN: usize = LENGTH_FIELD_LEN + HEADER_META_LEN;
/// Most headers are a few hundred bytes; reserving this avoids a second growth for them.
const HEADER_LEN_GUESS: usize = 512;
const _: () = assert!(SerializeType::Json as u32 == 0 && SerializeType::RocketMq as u32 == 1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::command::LanguageCode;
    use crate::codec::json_header::tests::arb_command;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn frame(cmd: &RemotingCommand, ty: SerializeType) -> BytesMut {
        let mut out = BytesMut::new();
        encode_frame(cmd, ty, &mut out).expect("encodable");
        out
    }

    fn decode_all(decoder: &mut FrameDecoder, buf: &mut BytesMut) -> Vec<RemotingCommand> {
        let mut commands = Vec::new();
        while let Some(cmd) = decoder.decode(buf).expect("valid stream") {
            commands.push(cmd);
        }
        commands
    }

    fn raw_frame(total_len: i32, header_meta: u32, rest: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.put_i32(total_len);
        buf.put_u32(header_meta);
        buf.put_slice(rest);
        buf
    }

    #[test]
    fn known_json_frame() {
        let cmd = RemotingCommand {
            code: 0,
            language: LanguageCode::Java,
            version: 479,
            opaque: 7,
            flag: 1,
            remark: None,
            ext_fields: None,
            body: Bytes::from_static(b"xy"),
        };
        let header = br#"{"code":0,"flag":1,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":479}"#;
        let mut expected = BytesMut::new();
        expected.put_i32((4 + header.len() + 2) as i32);
        expected.put_u32(header.len() as u32);
        expected.put_slice(header);
        expected.put_slice(b"xy");
        assert_eq!(frame(&cmd, SerializeType::Json), expected);
        let mut buf = expected.clone();
        assert_eq!(FrameDecoder::new().decode(&mut buf), Ok(Some(cmd)));
        assert!(buf.is_empty());
    }

    #[test]
    fn frame_head_then_body_is_the_whole_frame() {
        let cmd = RemotingCommand::request(10, 3).with_body(vec![9u8; 5000]);
        for ty in [SerializeType::Json, SerializeType::RocketMq] {
            let mut split = BytesMut::new();
            encode_frame_head(&cmd, cmd.body.len(), ty, &mut split).expect("encodable");
            assert!(split.len() < 5000, "the head leaves the body out");
            split.put_slice(&cmd.body);
            assert_eq!(split, frame(&cmd, ty));
        }
    }

    #[test]
    fn binary_frame_has_type_one() {
        let cmd = RemotingCommand::request(10, 3).with_body(&b"body"[..]);
        let bytes = frame(&cmd, SerializeType::RocketMq);
        assert_eq!(bytes[4], 1);
        let mut buf = bytes.clone();
        assert_eq!(FrameDecoder::new().decode(&mut buf), Ok(Some(cmd)));
    }

    #[test]
    fn body_shares_the_frame_buffer() {
        let body = vec![7u8; 4096];
        let cmd = RemotingCommand::request(10, 3).with_body(body);
        let mut buf = frame(&cmd, SerializeType::Json);
        let frame_ptr = buf.as_ptr() as usize;
        let frame_end = frame_ptr + buf.len();
        let decoded = FrameDecoder::new()
            .decode(&mut buf)
            .expect("valid")
            .expect("whole");
        let body_ptr = decoded.body.as_ptr() as usize;
        assert!(body_ptr > frame_ptr && body_ptr + decoded.body.len() == frame_end);
    }

    #[test]
    fn waits_for_whole_frames_and_consumes_one_at_a_time() {
        let first = RemotingCommand::request(105, 1);
        let second = RemotingCommand::request(34, 2).with_body(&b"{}"[..]);
        let mut stream = frame(&first, SerializeType::Json);
        stream.extend_from_slice(&frame(&second, SerializeType::RocketMq));
        let mut decoder = FrameDecoder::new();
        for cut in 0..stream.len() {
            let mut buf = BytesMut::from(&stream[..cut]);
            let before = buf.len();
            let got = decode_all(&mut decoder, &mut buf);
            let first_len = frame(&first, SerializeType::Json).len();
            if cut < first_len {
                assert!(got.is_empty());
                assert_eq!(buf.len(), before);
            } else {
                assert_eq!(got, vec![first.clone()]);
                assert_eq!(buf.len(), before - first_len);
            }
        }
        let mut buf = stream.clone();
        assert_eq!(decode_all(&mut decoder, &mut buf), vec![first, second]);
        assert!(buf.is_empty());
    }

    #[test]
    fn reserves_room_for_a_partial_frame() {
        let cmd = RemotingCommand::request(10, 1).with_body(vec![0u8; 100_000]);
        let bytes = frame(&cmd, SerializeType::Json);
        let mut buf = BytesMut::from(&bytes[..64]);
        assert_eq!(FrameDecoder::new().decode(&mut buf), Ok(None));
        assert!(buf.capacity() >= bytes.len());
    }

    #[test]
    fn rejects_bad_prefixes_early() {
        let mut decoder = FrameDecoder::with_frame_len_max(1024);
        let check = |decoder: &mut FrameDecoder, mut buf: BytesMut, want: FrameError| {
            let before = buf.clone();
            assert_eq!(decoder.decode(&mut buf), Err(want));
            assert_eq!(buf, before, "an error consumes nothing");
        };
        let mut big = BytesMut::new();
        big.put_i32(1021);
        check(
            &mut decoder,
            big,
            FrameError::FrameTooLarge {
                len: 1025,
                max: 1024,
            },
        );
        let mut negative = BytesMut::new();
        negative.put_i32(-1);
        check(
            &mut decoder,
            negative,
            FrameError::NegativeLength { len: -1 },
        );
        let mut short = BytesMut::new();
        short.put_i32(3);
        check(&mut decoder, short, FrameError::FrameTooShort { len: 3 });
        check(
            &mut decoder,
            raw_frame(10, 7, b""),
            FrameError::HeaderLongerThanFrame {
                header_len: 7,
                available: 6,
            },
        );
        check(
            &mut decoder,
            raw_frame(10, 0x0200_0001, b""),
            FrameError::UnknownSerializeType(2),
        );
        check(
            &mut decoder,
            raw_frame(6, 2, b"{]"),
            FrameError::JsonHeader(JsonHeaderError::Syntax {
                offset: 1,
                expected: "`\"` opening a string",
            }),
        );
        check(
            &mut decoder,
            raw_frame(6, 0x0100_0002, b"ab"),
            FrameError::BinaryHeader(BinaryHeaderError::TooShort { len: 2 }),
        );
        // Exactly at the limit is fine.
        let mut at_limit = raw_frame(1020, 2, b"{}");
        at_limit.resize(1024, 0);
        assert!(matches!(decoder.decode(&mut at_limit), Ok(Some(_))));
    }

    #[test]
    fn encode_refuses_what_binary_cannot_hold() {
        let mut out = BytesMut::from(&b"keep"[..]);
        let pop = RemotingCommand::request(200_050, 1);
        assert_eq!(
            encode_frame(&pop, SerializeType::RocketMq, &mut out),
            Err(EncodeError::Binary(BinaryEncodeError::CodeOutOfRange {
                code: 200_050
            }))
        );
        assert_eq!(&out[..], b"keep");
        encode_frame(&pop, SerializeType::Json, &mut out).expect("JSON holds any code");
    }

    #[test]
    fn encode_refuses_headers_past_24_bits() {
        let mut cmd = RemotingCommand::request(1, 1);
        cmd.remark = Some("r".repeat(HEADER_LEN_MAX));
        let mut out = BytesMut::new();
        assert!(matches!(
            encode_frame(&cmd, SerializeType::Json, &mut out),
            Err(EncodeError::HeaderTooLong { .. })
        ));
        assert!(out.is_empty());
    }

    fn arb_stream_commands() -> impl Strategy<Value = Vec<(RemotingCommand, SerializeType)>> {
        let body = proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from);
        let one = (arb_command(), body, any::<bool>()).prop_map(|(mut cmd, body, binary)| {
            cmd.body = body;
            let ty = match binary {
                true => {
                    // Keep to what the binary header holds; its own tests cover the rest.
                    cmd.code = i32::from(cmd.code as i16);
                    cmd.version = i32::from(cmd.version as i16);
                    cmd.remark = cmd.remark.filter(|r| !r.is_empty());
                    cmd.ext_fields = cmd
                        .ext_fields
                        .filter(|f| f.iter().all(|(k, v)| !k.is_empty() && !v.is_empty()))
                        .filter(|f| !f.is_empty());
                    SerializeType::RocketMq
                }
                false => SerializeType::Json,
            };
            (cmd, ty)
        });
        proptest::collection::vec(one, 1..6)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn encode_then_decode_is_identity(commands in arb_stream_commands()) {
            for (cmd, ty) in commands {
                let mut buf = frame(&cmd, ty);
                prop_assert_eq!(FrameDecoder::new().decode(&mut buf), Ok(Some(cmd)));
                prop_assert!(buf.is_empty());
            }
        }

        #[test]
        fn any_split_decodes_the_same(
            commands in arb_stream_commands(),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut stream = BytesMut::new();
            for (cmd, ty) in &commands {
                encode_frame(cmd, *ty, &mut stream).expect("encodable");
            }
            let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
            cuts.push(stream.len());
            cuts.sort_unstable();
            let mut decoder = FrameDecoder::new();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut from = 0;
            for to in cuts {
                buf.extend_from_slice(&stream[from..to]);
                from = to;
                got.extend(decode_all(&mut decoder, &mut buf));
            }
            let want: Vec<RemotingCommand> = commands.into_iter().map(|(c, _)| c).collect();
            prop_assert_eq!(got, want);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn one_byte_at_a_time_decodes_the_same(commands in arb_stream_commands()) {
            let mut stream = BytesMut::new();
            for (cmd, ty) in &commands {
                encode_frame(cmd, *ty, &mut stream).expect("encodable");
            }
            let mut decoder = FrameDecoder::new();
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for byte in stream.iter() {
                buf.put_u8(*byte);
                got.extend(decode_all(&mut decoder, &mut buf));
            }
            let want: Vec<RemotingCommand> = commands.into_iter().map(|(c, _)| c).collect();
            prop_assert_eq!(got, want);
        }

        #[test]
        fn arbitrary_bytes_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            max in 8usize..600,
        ) {
            let mut decoder = FrameDecoder::with_frame_len_max(max);
            let mut buf = BytesMut::from(&bytes[..]);
            let mut frames = 0;
            while let Ok(Some(_)) = decoder.decode(&mut buf) {
                frames += 1;
                prop_assert!(frames <= bytes.len() / 8);
            }
        }

        #[test]
        fn plausible_prefixes_never_panic(
            header_len in 0u32..64,
            ty in 0u32..3,
            rest in proptest::collection::vec(any::<u8>(), 0..96),
        ) {
            let total = 4 + rest.len() as i32;
            let mut buf = raw_frame(total, (ty << 24) | header_len, &rest);
            let _ = FrameDecoder::new().decode(&mut buf);
        }
    }
}
