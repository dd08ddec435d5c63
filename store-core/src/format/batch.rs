//! The SEND_BATCH_MESSAGE request body (§7.6 of the protocol reference): one entry per message,
//! concatenated.
//!
//! | field | width |
//! |---|---|
//! | TOTALSIZE, entry incl. this field = 20 + body + 2 + properties | i32 |
//! | MAGICCODE, 0 and ignored | i32 |
//! | BODYCRC, 0 and ignored (the broker recomputes it) | i32 |
//! | FLAG | i32 |
//! | BODYLENGTH + BODY | i32 + n |
//! | PROPERTIESLENGTH + PROPERTIES | i16 + n |
//!
//! Java's broker reads entries by their body and properties lengths and never looks at
//! TOTALSIZE; every client we know writes it correctly, so we check it and treat a mismatch as
//! a corrupt body. This module leaves out the batch rules (same topic, no delay, no retry
//! topic) and turning entries into stored records.

use bytes::Bytes;

use super::record::MAX_SHORT_FIELD_LEN;

/// Bytes of an entry before its body: TOTALSIZE, MAGICCODE, BODYCRC, FLAG, BODYLENGTH.
const ENTRY_HEAD_LEN: usize = 20;
/// Bytes of an entry besides body and properties.
const ENTRY_OVERHEAD: usize = ENTRY_HEAD_LEN + 2;

/// One message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    /// Application flag.
    pub flag: i32,
    /// Message body.
    pub body: Bytes,
    /// Encoded properties of this message (its own UNIQ_KEY, KEYS, TAGS, ...).
    pub properties: Bytes,
}

impl BatchEntry {
    /// Length of this entry encoded, its TOTALSIZE.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        ENTRY_OVERHEAD + self.body.len() + self.properties.len()
    }
}

/// Why a batch body was rejected. `entry` is the 0-based index and `at` the byte offset of the
/// entry in which the problem was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    /// The body ends inside an entry.
    #[error(
        "batch entry {entry} at byte {at} is truncated: needs {needed} bytes, {available} left"
    )]
    Truncated {
        /// Entry index.
        entry: usize,
        /// Byte offset of the entry.
        at: usize,
        /// Bytes the entry needs from `at`, as far as could be read.
        needed: usize,
        /// Bytes left from `at`.
        available: usize,
    },
    /// A negative BODYLENGTH or PROPERTIESLENGTH.
    #[error("batch entry {entry} at byte {at} has negative {field} length {len}")]
    NegativeLength {
        /// Entry index.
        entry: usize,
        /// Byte offset of the entry.
        at: usize,
        /// `"body"` or `"properties"`.
        field: &'static str,
        /// The stored length.
        len: i32,
    },
    /// TOTALSIZE differs from the length the fields add up to.
    #[error(
        "batch entry {entry} at byte {at}: total size {total_size} but fields add up to {computed}"
    )]
    SizeMismatch {
        /// Entry index.
        entry: usize,
        /// Byte offset of the entry.
        at: usize,
        /// TOTALSIZE as stored.
        total_size: i32,
        /// Length of the entry's fields.
        computed: usize,
    },
}

/// Splits a batch body into its entries; body and properties are slices of `body`.
///
/// # Errors
/// [`BatchError`] naming the entry and the violation.
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchEntry>, BatchError> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let (entry, len) = decode_entry(body, at, entries.len())?;
        entries.push(entry);
        at += len;
    }
    Ok(entries)
}

/// Appends the encoded batch to `out`, writing 0 for MAGICCODE and BODYCRC as clients do.
///
/// # Panics
/// If an entry's properties exceed 32767 bytes or the entry does not fit an i32 length: the
/// caller must reject such messages first.
pub fn encode_batch(entries: &[BatchEntry], out: &mut Vec<u8>) {
    out.reserve(entries.iter().map(BatchEntry::encoded_len).sum());
    for entry in entries {
        assert!(
            entry.properties.len() <= MAX_SHORT_FIELD_LEN,
            "batch entry properties over 32767 bytes"
        );
        assert!(
            i32::try_from(entry.encoded_len()).is_ok(),
            "batch entry larger than i32::MAX"
        );
        // Both asserts above bound these casts: the body is shorter than the whole entry.
        let total = entry.encoded_len() as i32;
        let props_len = entry.properties.len() as i16;
        let body_len = entry.body.len() as i32;
        out.extend_from_slice(&total.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&entry.flag.to_be_bytes());
        out.extend_from_slice(&body_len.to_be_bytes());
        out.extend_from_slice(&entry.body);
        out.extend_from_slice(&props_len.to_be_bytes());
        out.extend_from_slice(&entry.properties);
    }
}

/// Decodes the entry starting at byte `at`; returns it and its length.
fn decode_entry(body: &Bytes, at: usize, entry: usize) -> Result<(BatchEntry, usize), BatchError> {
    let rest = body.get(at..).unwrap_or_default();
    let truncated = |needed: usize| BatchError::Truncated {
        entry,
        at,
        needed,
        available: rest.len(),
    };
    let negative = |field, len| BatchError::NegativeLength {
        entry,
        at,
        field,
        len,
    };
    let head = rest
        .get(..ENTRY_HEAD_LEN)
        .ok_or(truncated(ENTRY_HEAD_LEN))?;
    let total_size = be_i32(&head[0..4]);
    let flag = be_i32(&head[12..16]);
    let body_len = be_i32(&head[16..20]);
    let body_len = usize::try_from(body_len).map_err(|_| negative("body", body_len))?;
    // body_len came from a non-negative i32, so this cannot overflow a usize.
    let props_len_at = ENTRY_HEAD_LEN + body_len;
    let props_len = rest
        .get(props_len_at..props_len_at + 2)
        .ok_or(truncated(props_len_at.saturating_add(2)))?;
    let props_len = i32::from(i16::from_be_bytes([props_len[0], props_len[1]]));
    let props_len = usize::try_from(props_len).map_err(|_| negative("properties", props_len))?;
    let len = props_len_at + 2 + props_len;
    if len > rest.len() {
        return Err(truncated(len));
    }
    if usize::try_from(total_size).ok() != Some(len) {
        return Err(BatchError::SizeMismatch {
            entry,
            at,
            total_size,
            computed: len,
        });
    }
    let body_start = at + ENTRY_HEAD_LEN;
    let entry = BatchEntry {
        flag,
        body: body.slice(body_start..body_start + body_len),
        properties: body.slice(at + props_len_at + 2..at + len),
    };
    Ok((entry, len))
}

/// An i32 from a 4-byte slice already cut to length.
fn be_i32(bytes: &[u8]) -> i32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(bytes);
    i32::from_be_bytes(raw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(flag: i32, body: &'static [u8], props: &'static [u8]) -> BatchEntry {
        BatchEntry {
            flag,
            body: Bytes::from_static(body),
            properties: Bytes::from_static(props),
        }
    }

    #[test]
    fn hand_computed_bytes() {
        let entries = [entry(7, b"ab", b"K\x01V\x02"), entry(0, b"", b"")];
        let mut out = Vec::new();
        encode_batch(&entries, &mut out);
        let expected: Vec<u8> = [
            &[0, 0, 0, 28][..], // 20 + 2 + 2 + 4
            &[0; 8],
            &[0, 0, 0, 7],
            &[0, 0, 0, 2],
            b"ab",
            &[0, 4],
            b"K\x01V\x02",
            &[0, 0, 0, 22],
            &[0; 8],
            &[0; 4],
            &[0; 4],
            &[0, 0],
        ]
        .concat();
        assert_eq!(out, expected);
        assert_eq!(decode_batch(&Bytes::from(out)).unwrap(), entries);
        assert_eq!(decode_batch(&Bytes::new()).unwrap(), vec![]);
    }

    #[test]
    fn errors_name_entry_and_violation() {
        let mut good = Vec::new();
        encode_batch(
            &[entry(1, b"x", b"A\x01B\x02"), entry(2, b"yz", b"")],
            &mut good,
        );
        let second = 27; // 20 + 1 + 2 + 4
        let check = |bytes: Vec<u8>| decode_batch(&Bytes::from(bytes)).unwrap_err();

        let cut = good[..good.len() - 1].to_vec();
        let want = BatchError::Truncated {
            entry: 1,
            at: second,
            needed: 24,
            available: 23,
        };
        assert_eq!(check(cut), want);
        let want = BatchError::Truncated {
            entry: 0,
            at: 0,
            needed: 20,
            available: 10,
        };
        assert_eq!(check(good[..10].to_vec()), want);

        let mut bad = good.clone();
        bad[second..second + 4].copy_from_slice(&25i32.to_be_bytes());
        let want = BatchError::SizeMismatch {
            entry: 1,
            at: second,
            total_size: 25,
            computed: 24,
        };
        assert_eq!(check(bad), want);

        let mut bad = good.clone();
        bad[16..20].copy_from_slice(&(-5i32).to_be_bytes());
        let want = BatchError::NegativeLength {
            entry: 0,
            at: 0,
            field: "body",
            len: -5,
        };
        assert_eq!(check(bad), want);

        let mut bad = good.clone();
        bad[21..23].copy_from_slice(&(-1i16).to_be_bytes());
        let want = BatchError::NegativeLength {
            entry: 0,
            at: 0,
            field: "properties",
            len: -1,
        };
        assert_eq!(check(bad), want);

        let mut bad = good.clone();
        bad[16..20].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(check(bad), BatchError::Truncated { entry: 0, .. }));
    }

    const CPP_PRODUCER: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../shared/vectors/cpp-producer.jsonl"
    ));

    /// The C++ client sends its batch as SEND_MESSAGE with `batch=1`; the body is the batch.
    #[test]
    fn decodes_the_cpp_client_batch() {
        let line = CPP_PRODUCER
            .lines()
            .find(|line| line.contains("(batch of 3 encoded msgs)"))
            .expect("the capture holds one batch send");
        let frame: serde_json::Value = serde_json::from_str(line).unwrap();
        let hex = frame["hex"].as_str().unwrap();
        let raw: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let header_len = (u32::from_be_bytes(raw[4..8].try_into().unwrap()) & 0xFF_FFFF) as usize;
        let body = Bytes::from(raw[8 + header_len..].to_vec());
        let entries = decode_batch(&body).unwrap();
        assert_eq!(entries.len(), 3);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(e.body, format!("extra-{}", i + 3).as_bytes());
            let props = crate::format::properties::Properties::parse_bytes(&e.properties);
            assert_eq!(props.get("extra_idx"), Some((i + 3).to_string().as_str()));
            assert!(props.get(crate::format::properties::UNIQ_KEY).is_some());
        }
        let mut again = Vec::new();
        encode_batch(&entries, &mut again);
        assert_eq!(again, body);
    }

    fn any_entry() -> impl Strategy<Value = BatchEntry> {
        (
            any::<i32>(),
            prop::collection::vec(any::<u8>(), 0..200),
            prop::collection::vec(any::<u8>(), 0..100),
        )
            .prop_map(|(flag, body, props)| BatchEntry {
                flag,
                body: body.into(),
                properties: props.into(),
            })
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(entries in prop::collection::vec(any_entry(), 0..8)) {
            let mut out = Vec::new();
            encode_batch(&entries, &mut out);
            prop_assert_eq!(out.len(), entries.iter().map(BatchEntry::encoded_len).sum::<usize>());
            prop_assert_eq!(decode_batch(&Bytes::from(out)).unwrap(), entries);
        }

        #[test]
        fn decode_of_arbitrary_bytes_never_panics(raw in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(entries) = decode_batch(&Bytes::from(raw.clone())) {
                let mut again = Vec::new();
                encode_batch(&entries, &mut again);
                // Accepted bodies are canonical except for the ignored MAGICCODE/BODYCRC.
                prop_assert_eq!(again.len(), raw.len());
            }
        }
    }
}
