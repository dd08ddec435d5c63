//! Byte-level remoting codec: frames, headers, codes. See `../shared/docs/remoting-protocol.md`
//! §1–§5 for the layouts.
//!
//! - [`frame`]: the length-prefixed frame, a streaming [`FrameDecoder`] and [`encode_frame`].
//! - [`json_header`]: the JSON header (serialize type 0), read leniently, written as fastjson.
//! - [`binary_header`]: the ROCKETMQ binary header (serialize type 1).
//! - [`command`], [`code`]: the decoded command and its codes.
//!
//! What it leaves out: the typed views of `extFields` (`crate::header`) and bodies
//! (`crate::body`).

pub mod binary_header;
pub mod code;
pub mod command;
pub mod frame;
pub mod json_header;

pub use binary_header::{BinaryEncodeError, BinaryHeaderError};
pub use frame::{
    encode_frame, encode_header, EncodeError, FrameDecoder, FrameError, FRAME_LEN_MAX_DEFAULT,
    HEADER_LEN_MAX,
};
pub use json_header::JsonHeaderError;

use command::ExtFields;

/// Builds [`ExtFields`] from decoded entries with the semantics of inserting them one by one:
/// a repeated key keeps its first position and takes its last value (JSON's "last duplicate
/// wins", Java's `HashMap.put`).
///
/// Headers carry a dozen entries, so a linear scan handles the usual case without allocating;
/// a long list (only a hostile or broken peer sends one) is deduplicated by sorting, so a 16 MiB
/// header of distinct keys costs O(n log n) rather than O(n²).
pub(crate) fn ext_fields_from_entries(mut entries: Vec<(String, String)>) -> ExtFields {
    if entries.len() <= EXT_ENTRIES_LINEAR_MAX {
        // A 128-bit filter of key hashes: a key whose bit is clear is new without comparing
        // it to anything, which is every key of a normal header.
        let mut seen = 0u128;
        let mut i = 0;
        while i < entries.len() {
            let (earlier, rest) = entries.split_at_mut(i);
            let Some((key, _)) = rest.first() else { break };
            let bit = 1u128 << (key_hash(key) % 128);
            let duplicate = match seen & bit {
                0 => None,
                _ => earlier.iter().position(|(k, _)| k == key),
            };
            seen |= bit;
            match duplicate {
                Some(first) => {
                    let (_, value) = entries.remove(i);
                    entries[first].1 = value;
                }
                None => i += 1,
            }
        }
        return ExtFields::from_unique_entries(entries);
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    // A stable sort keeps equal keys in arrival order, so each run starts at the first
    // occurrence and ends at the last.
    order.sort_by(|&a, &b| entries[a].0.cmp(&entries[b].0));
    let mut dropped = vec![false; entries.len()];
    let mut run_start = 0;
    for i in 1..=order.len() {
        let same_key = i < order.len() && entries[order[i]].0 == entries[order[run_start]].0;
        if same_key {
            continue;
        }
        if i - run_start > 1 {
            let (first, last) = (order[run_start], order[i - 1]);
            entries[first].1 = std::mem::take(&mut entries[last].1);
            for &later in &order[run_start + 1..i] {
                dropped[later] = true;
            }
        }
        run_start = i;
    }
    let mut index = 0;
    entries.retain(|_| {
        let keep = !dropped[index];
        index += 1;
        keep
    });
    ExtFields::from_unique_entries(entries)
}

/// FNV-1a over at most the key's first and last 8 bytes: cheap, and only a filter.
fn key_hash(key: &str) -> u32 {
    let bytes = key.as_bytes();
    let head = bytes.iter().take(8);
    let tail = bytes.iter().skip(bytes.len().saturating_sub(8).max(8));
    let mut hash = 0x811C_9DC5u32 ^ bytes.len() as u32;
    for &b in head.chain(tail) {
        hash = (hash ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    hash
}

/// Up to this many entries, deduplication scans linearly.
const EXT_ENTRIES_LINEAR_MAX: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn by_insert(entries: &[(String, String)]) -> ExtFields {
        let mut fields = ExtFields::new();
        for (k, v) in entries {
            fields.insert(k.clone(), v.clone());
        }
        fields
    }

    #[test]
    fn duplicates_keep_first_position_and_last_value() {
        let entries = vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "2".to_string()),
            ("a".to_string(), "3".to_string()),
        ];
        let fields = ext_fields_from_entries(entries);
        let got: Vec<_> = fields.iter().collect();
        assert_eq!(got, vec![("a", "3"), ("b", "2")]);
    }

    proptest! {
        #[test]
        fn dedupe_matches_repeated_insert(
            entries in proptest::collection::vec(("[a-e]{1,2}", "[0-9]{0,2}"), 0..120)
        ) {
            let entries: Vec<(String, String)> = entries;
            prop_assert_eq!(ext_fields_from_entries(entries.clone()), by_insert(&entries));
        }
    }
}
