//! The ROCKETMQ binary header (serialize type 1, protocol reference §2.3): the fixed part read
//! with nom's complete parsers, the length-prefixed strings (per ext entry, the hot part) by
//! hand, and written by hand.
//!
//! Layout, big-endian: `i16 code, u8 language, i16 version, i32 opaque, i32 flag,
//! i32 remark_len, remark, i32 ext_len, ext` where `ext` is `ext_len` bytes of entries
//! `i16 key_len, key, i32 value_len, value`.
//!
//! Java's reading rules are kept: a zero remark length is a null remark, a zero ext length is a
//! null map, and an entry with a zero-length key or value is dropped (Java reads it as null,
//! which every header reader treats as absent). An ext area left with no entries reads as no
//! map, so that every decoded header re-encodes to the same command. Invalid UTF-8 is replaced by U+FFFD, as Java's
//! decoder does. Bytes after the ext area are ignored, as Java ignores them. Unlike Java, an
//! entry must end inside the ext area.
//!
//! Writing mirrors that: an empty remark is written as null and an empty map as none, so those
//! two distinctions do not survive this encoding. `code` and `version` are 16 bits here: a
//! command whose code or version does not fit (the POP family's codes, for one) cannot be
//! written and [`encode`] says so; send it as JSON instead. Nothing is silently truncated.
//!
//! What it leaves out: the frame around the header (`super::frame`).

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};
use nom::number::complete::{be_i16, be_i32, be_u8};
use nom::{IResult, Parser};

use super::command::{ExtFields, LanguageCode, RemotingCommand, EXT_ENTRIES_TYPICAL};

/// Decodes one binary header. The command's body is empty; the frame decoder fills it.
pub fn decode(header: &[u8]) -> Result<RemotingCommand, BinaryHeaderError> {
    if header.len() < HEADER_LEN_MIN {
        return Err(BinaryHeaderError::TooShort { len: header.len() });
    }
    let fixed = (be_i16, be_u8, be_i16, be_i32, be_i32);
    let (rest, (code, language, version, opaque, flag)) =
        parse(fixed, header, Field::FixedPart, 0)?;
    let (rest, remark) = string_i32(rest, header, Field::Remark)?;
    let (_, ext_area) = length_prefixed(rest, header, Field::ExtFields)?;
    let ext_fields = Some(ext_entries(ext_area, header)?).filter(|f| !f.is_empty());
    Ok(RemotingCommand {
        code: i32::from(code),
        language: LanguageCode::from_code(language),
        version: i32::from(version),
        opaque,
        flag,
        remark: remark.filter(|r| !r.is_empty()),
        ext_fields,
        body: bytes::Bytes::new(),
    })
}

/// Appends `cmd`'s header. Checks everything first, so on error `out` is unchanged.
pub fn encode(cmd: &RemotingCommand, out: &mut BytesMut) -> Result<(), BinaryEncodeError> {
    let code = i16::try_from(cmd.code)
        .map_err(|_| BinaryEncodeError::CodeOutOfRange { code: cmd.code })?;
    let version = i16::try_from(cmd.version).map_err(|_| BinaryEncodeError::VersionOutOfRange {
        version: cmd.version,
    })?;
    let remark = cmd.remark.as_deref().unwrap_or_default().as_bytes();
    let remark_len = i32_len(remark.len())?;
    let mut ext_len = 0usize;
    for (key, value) in cmd.ext_fields.iter().flat_map(|f| f.iter()) {
        if i16::try_from(key.len()).is_err() {
            return Err(BinaryEncodeError::KeyTooLong { len: key.len() });
        }
        ext_len += ENTRY_OVERHEAD + key.len() + value.len();
    }
    let ext_len_i32 = i32_len(ext_len)?;
    // The whole header must also fit the frame's 24-bit length; the frame encoder checks that,
    // and the i32 checks above keep every length below written exactly.
    out.reserve(FIXED_PART_LEN + 8 + remark.len() + ext_len);
    out.put_i16(code);
    out.put_u8(cmd.language.code());
    out.put_i16(version);
    out.put_i32(cmd.opaque);
    out.put_i32(cmd.flag);
    out.put_i32(remark_len);
    out.put_slice(remark);
    out.put_i32(ext_len_i32);
    for (key, value) in cmd.ext_fields.iter().flat_map(|f| f.iter()) {
        // Both lengths were checked above; `as` cannot truncate them.
        out.put_i16(key.len() as i16);
        out.put_slice(key.as_bytes());
        out.put_i32(value.len() as i32);
        out.put_slice(value.as_bytes());
    }
    Ok(())
}

/// Why a binary header was rejected. Offsets count bytes from the start of the header. Any of
/// these means the peer is broken: close the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BinaryHeaderError {
    #[error("binary header of {len} bytes is shorter than the {HEADER_LEN_MIN}-byte minimum")]
    TooShort { len: usize },
    #[error("{field} is cut off at byte {offset}")]
    Truncated { field: Field, offset: usize },
    #[error("{field} length {len} at byte {offset} is negative")]
    NegativeLength {
        field: Field,
        len: i32,
        offset: usize,
    },
    #[error("{field} length {len} at byte {offset} runs past its {available} bytes")]
    LengthBeyondHeader {
        field: Field,
        len: usize,
        available: usize,
        offset: usize,
    },
}

/// The part of a binary header an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Field {
    FixedPart,
    Remark,
    ExtFields,
    ExtKey,
    ExtValue,
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Field::FixedPart => "fixed part",
            Field::Remark => "remark",
            Field::ExtFields => "extFields",
            Field::ExtKey => "extFields key",
            Field::ExtValue => "extFields value",
        };
        f.write_str(name)
    }
}

/// Why a command cannot be written as a binary header. Each is a fact about the command, not
/// the wire: encode it as JSON instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BinaryEncodeError {
    #[error("code {code} does not fit the binary header's 16 bits")]
    CodeOutOfRange { code: i32 },
    #[error("version {version} does not fit the binary header's 16 bits")]
    VersionOutOfRange { version: i32 },
    #[error("extFields key of {len} bytes does not fit the binary header's 16-bit length")]
    KeyTooLong { len: usize },
    #[error("a string or map of {len} bytes does not fit the binary header's 32-bit length")]
    TooLong { len: usize },
}

type DecodeResult<T> = std::result::Result<T, BinaryHeaderError>;

/// Reads the ext area's entries, all of which must end inside it, straight into the map's one
/// text buffer. The area's length bounds that text (unless invalid UTF-8 must be replaced).
fn ext_entries(mut area: &[u8], header: &[u8]) -> DecodeResult<ExtFields> {
    if area.is_empty() {
        return Ok(ExtFields::new());
    }
    let mut fields = ExtFields::with_capacities(EXT_ENTRIES_TYPICAL, area.len());
    while !area.is_empty() {
        let (rest, key) = bytes_i16(area, header)?;
        let (rest, value) = length_prefixed(rest, header, Field::ExtValue)?;
        if !key.is_empty() && !value.is_empty() {
            fields.push_entry(&utf8_lossy(key), &utf8_lossy(value));
        }
        area = rest;
    }
    fields.dedupe();
    Ok(fields)
}

/// An `i16`-length-prefixed byte string (an ext key).
fn bytes_i16<'a>(input: &'a [u8], header: &[u8]) -> DecodeResult<(&'a [u8], &'a [u8])> {
    let at = offset_in(header, input);
    let (rest, len) = read_be::<2>(input, Field::ExtKey, at)?;
    let len = i16::from_be_bytes(len);
    let len = usize::try_from(len).map_err(|_| BinaryHeaderError::NegativeLength {
        field: Field::ExtKey,
        len: i32::from(len),
        offset: at,
    })?;
    take_len(rest, len, Field::ExtKey, at)
}

/// An `i32`-length-prefixed string (remark or ext value); `None` for length 0.
fn string_i32<'a>(
    input: &'a [u8],
    header: &[u8],
    field: Field,
) -> DecodeResult<(&'a [u8], Option<String>)> {
    let (rest, bytes) = length_prefixed(input, header, field)?;
    Ok((rest, text(bytes)))
}

/// An `i32` length and that many bytes.
fn length_prefixed<'a>(
    input: &'a [u8],
    header: &[u8],
    field: Field,
) -> DecodeResult<(&'a [u8], &'a [u8])> {
    let at = offset_in(header, input);
    let (rest, len) = read_be::<4>(input, field, at)?;
    let len = i32::from_be_bytes(len);
    let len = usize::try_from(len).map_err(|_| BinaryHeaderError::NegativeLength {
        field,
        len,
        offset: at,
    })?;
    take_len(rest, len, field, at)
}

/// `len` bytes and what follows them. By hand rather than through nom: this runs twice per ext
/// entry, and nom's generic parser plumbing cost more than the rest of the entry's decoding.
fn take_len(input: &[u8], len: usize, field: Field, at: usize) -> DecodeResult<(&[u8], &[u8])> {
    match input.split_at_checked(len) {
        Some((taken, rest)) => Ok((rest, taken)),
        None => Err(BinaryHeaderError::LengthBeyondHeader {
            field,
            len,
            available: input.len(),
            offset: at,
        }),
    }
}

/// The first `N` bytes of `input` (a big-endian length word) and the rest; `Truncated` naming
/// `field` at `at` if the input ends first, as nom's complete number parsers report it.
fn read_be<const N: usize>(
    input: &[u8],
    field: Field,
    at: usize,
) -> DecodeResult<(&[u8], [u8; N])> {
    match input.split_first_chunk::<N>() {
        Some((word, rest)) => Ok((rest, *word)),
        None => Err(BinaryHeaderError::Truncated { field, offset: at }),
    }
}

/// Runs a complete nom parser, naming `field` if the input ends first (their only failure).
fn parse<'a, O>(
    mut parser: impl Parser<&'a [u8], Output = O, Error = ()>,
    input: &'a [u8],
    field: Field,
    offset: usize,
) -> DecodeResult<(&'a [u8], O)> {
    let result: IResult<&'a [u8], O, ()> = parser.parse(input);
    result.map_err(|_| BinaryHeaderError::Truncated { field, offset })
}

fn text(bytes: &[u8]) -> Option<String> {
    match bytes.is_empty() {
        true => None,
        false => Some(utf8_lossy(bytes).into_owned()),
    }
}

/// `bytes` as text, invalid UTF-8 replaced by U+FFFD; borrowed unless something was replaced.
fn utf8_lossy(bytes: &[u8]) -> Cow<'_, str> {
    // `from_utf8` has an ASCII fast path that `from_utf8_lossy` lacks.
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

/// Where `part` (a suffix of `header`) starts within it.
fn offset_in(header: &[u8], part: &[u8]) -> usize {
    header.len() - part.len()
}

fn i32_len(len: usize) -> Result<i32, BinaryEncodeError> {
    i32::try_from(len).map_err(|_| BinaryEncodeError::TooLong { len })
}

/// code, language, version, opaque, flag.
const FIXED_PART_LEN: usize = 2 + 1 + 2 + 4 + 4;
/// The fixed part plus the two i32 lengths of an empty remark and map.
pub const HEADER_LEN_MIN: usize = FIXED_PART_LEN + 4 + 4;
/// An entry's two length fields.
const ENTRY_OVERHEAD: usize = 2 + 4;
const _: () = assert!(HEADER_LEN_MIN == 21);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::command::ExtFields;
    use proptest::prelude::*;

    fn encoded(cmd: &RemotingCommand) -> Vec<u8> {
        let mut out = BytesMut::new();
        encode(cmd, &mut out).expect("in range");
        out.to_vec()
    }

    /// What a command looks like after a trip through this encoding (see the module doc).
    fn canonical(mut cmd: RemotingCommand) -> RemotingCommand {
        cmd.remark = cmd.remark.filter(|r| !r.is_empty());
        cmd.ext_fields = cmd
            .ext_fields
            .map(|f| {
                f.iter()
                    .filter(|(k, v)| !k.is_empty() && !v.is_empty())
                    .collect::<ExtFields>()
            })
            .filter(|f| !f.is_empty());
        cmd
    }

    #[test]
    fn known_bytes() {
        let mut cmd = RemotingCommand::request(310, 0x0102_0304);
        cmd.version = 479;
        cmd.remark = Some("hi".to_string());
        cmd.ext_fields_mut().insert("a", "xyz");
        let bytes = encoded(&cmd);
        let expected: &[u8] = &[
            0x01, 0x36, // code 310
            12,   // RUST
            0x01, 0xDF, // version 479
            1, 2, 3, 4, // opaque
            0, 0, 0, 0, // flag
            0, 0, 0, 2, b'h', b'i', // remark
            0, 0, 0, 10, // ext length
            0, 1, b'a', 0, 0, 0, 3, b'x', b'y', b'z',
        ];
        assert_eq!(bytes, expected);
        assert_eq!(decode(&bytes), Ok(cmd));
    }

    #[test]
    fn empty_remark_and_map_read_as_null() {
        let mut cmd = RemotingCommand::request(1, 1);
        cmd.remark = Some(String::new());
        cmd.ext_fields = Some(ExtFields::new());
        let bytes = encoded(&cmd);
        assert_eq!(bytes.len(), HEADER_LEN_MIN);
        let back = decode(&bytes).expect("valid");
        assert_eq!(back.remark, None);
        assert_eq!(back.ext_fields, None);
    }

    #[test]
    fn empty_keys_and_values_are_dropped() {
        let mut cmd = RemotingCommand::request(1, 1);
        cmd.ext_fields_mut().insert("", "v");
        cmd.ext_fields_mut().insert("k", "");
        cmd.ext_fields_mut().insert("x", "y");
        let back = decode(&encoded(&cmd)).expect("valid");
        assert_eq!(back.ext_fields, Some([("x", "y")].into_iter().collect()));
        let mut only_empty = RemotingCommand::request(1, 1);
        only_empty.ext_fields_mut().insert("k", "");
        assert_eq!(
            decode(&encoded(&only_empty)).map(|c| c.ext_fields),
            Ok(None)
        );
    }

    #[test]
    fn out_of_range_commands_are_refused_not_truncated() {
        let mut out = BytesMut::new();
        let pop = RemotingCommand::request(200_050, 1);
        assert_eq!(
            encode(&pop, &mut out),
            Err(BinaryEncodeError::CodeOutOfRange { code: 200_050 })
        );
        let mut old = RemotingCommand::request(10, 1);
        old.version = 40_000;
        assert_eq!(
            encode(&old, &mut out),
            Err(BinaryEncodeError::VersionOutOfRange { version: 40_000 })
        );
        let mut long_key = RemotingCommand::request(10, 1);
        long_key.ext_fields_mut().insert("k".repeat(40_000), "v");
        assert_eq!(
            encode(&long_key, &mut out),
            Err(BinaryEncodeError::KeyTooLong { len: 40_000 })
        );
        assert!(out.is_empty());
        let mut negative = RemotingCommand::request(-2, 1);
        negative.version = -1;
        assert_eq!(decode(&encoded(&negative)), Ok(negative));
    }

    #[test]
    fn rejects_bad_lengths() {
        let base = encoded(&RemotingCommand::request(1, 1));
        assert_eq!(
            decode(&base[..20]),
            Err(BinaryHeaderError::TooShort { len: 20 })
        );

        let mut negative_remark = base.clone();
        negative_remark[13..17].copy_from_slice(&(-1i32).to_be_bytes());
        assert!(matches!(
            decode(&negative_remark),
            Err(BinaryHeaderError::NegativeLength {
                field: Field::Remark,
                len: -1,
                offset: 13
            })
        ));

        let mut long_remark = base.clone();
        long_remark[13..17].copy_from_slice(&100i32.to_be_bytes());
        assert!(matches!(
            decode(&long_remark),
            Err(BinaryHeaderError::LengthBeyondHeader {
                field: Field::Remark,
                len: 100,
                ..
            })
        ));

        let mut long_ext = base.clone();
        long_ext[17..21].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(
            decode(&long_ext),
            Err(BinaryHeaderError::LengthBeyondHeader {
                field: Field::ExtFields,
                ..
            })
        ));

        // An ext area whose one entry claims a longer value than the area holds.
        let mut cut_entry = base[..17].to_vec();
        cut_entry.extend_from_slice(&[0, 0, 0, 8, 0, 1, b'k', 0, 0, 0, 9, b'v']);
        assert!(matches!(
            decode(&cut_entry),
            Err(BinaryHeaderError::LengthBeyondHeader {
                field: Field::ExtValue,
                len: 9,
                ..
            })
        ));

        let mut half_entry = base[..17].to_vec();
        half_entry.extend_from_slice(&[0, 0, 0, 1, 0]);
        assert!(matches!(
            decode(&half_entry),
            Err(BinaryHeaderError::Truncated {
                field: Field::ExtKey,
                offset: 21
            })
        ));

        let mut negative_key = base[..17].to_vec();
        negative_key.extend_from_slice(&[0, 0, 0, 2, 0xFF, 0xFF]);
        assert!(matches!(
            decode(&negative_key),
            Err(BinaryHeaderError::NegativeLength {
                field: Field::ExtKey,
                len: -1,
                ..
            })
        ));
    }

    #[test]
    fn trailing_bytes_are_ignored_and_bad_utf8_replaced() {
        let mut cmd = RemotingCommand::request(1, 1);
        cmd.remark = Some("x".to_string());
        let mut bytes = encoded(&cmd);
        bytes[17] = 0xFF;
        bytes.extend_from_slice(b"junk");
        let back = decode(&bytes).expect("valid");
        assert_eq!(back.remark.as_deref(), Some("\u{FFFD}"));
    }

    fn arb_in_range() -> impl Strategy<Value = RemotingCommand> {
        (
            crate::codec::json_header::tests::arb_command(),
            any::<i16>(),
            any::<i16>(),
        )
            .prop_map(|(mut cmd, code, version)| {
                cmd.code = i32::from(code);
                cmd.version = i32::from(version);
                cmd
            })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity_up_to_nulls(cmd in arb_in_range()) {
            let bytes = encoded(&cmd);
            let back = decode(&bytes);
            prop_assert_eq!(back.as_ref(), Ok(&canonical(cmd)));
            // A decoded command is canonical: a second trip changes nothing.
            if let Ok(back) = back {
                prop_assert_eq!(decode(&encoded(&back)), Ok(back));
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mangled_headers_never_panic(
            cmd in arb_in_range(),
            at in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = encoded(&cmd);
            let at = at.index(bytes.len());
            bytes[at] = byte;
            let _ = decode(&bytes);
            let _ = decode(&bytes[..at]);
        }
    }
}
