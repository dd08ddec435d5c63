//! Tag hash code: the value a consume-queue unit stores for the message's `TAGS` property
//! (§16.7 of the protocol reference).
//!
//! RocketMQ uses Java's `String.hashCode`, widened to i64. This module computes only that; the
//! delay-queue reuse of the field (deliver timestamp) and MULTI_TAG filtering live elsewhere.

/// Java `String.hashCode` of `tag` (over UTF-16 code units, 32-bit wrap-around), widened to i64
/// with sign extension, as RocketMQ stores it in the consume-queue unit.
#[must_use]
pub fn tag_hash_code(tag: &str) -> i64 {
    i64::from(java_hash_extend(0, tag))
}

/// Java `String.hashCode` of a string that starts with text hashing to `hash` and goes on with
/// `more`: `java_hash_extend(java_hash_extend(0, a), b)` is the hash of `a + b`, so
/// concatenated keys (the index's `topic#key`) hash without being built.
#[must_use]
pub fn java_hash_extend(hash: i32, more: &str) -> i32 {
    let step = |h: i32, unit: u16| h.wrapping_mul(31).wrapping_add(i32::from(unit));
    if more.is_ascii() {
        // Every byte is one UTF-16 unit; skips decoding on the common path (index keys).
        more.bytes().fold(hash, |h, b| step(h, u16::from(b)))
    } else {
        more.encode_utf16().fold(hash, step)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_java_hash_codes() {
        // Values from Java: "TagA".hashCode() == 2598919, "".hashCode() == 0.
        assert_eq!(tag_hash_code("TagA"), 2_598_919);
        assert_eq!(tag_hash_code(""), 0);
        assert_eq!(tag_hash_code("a"), 97);
        // 31*97 + 98 = 3105.
        assert_eq!(tag_hash_code("ab"), 3105);
    }

    #[test]
    fn overflow_wraps_and_sign_extends() {
        // "polygenelubricants".hashCode() is Integer.MIN_VALUE in Java.
        assert_eq!(tag_hash_code("polygenelubricants"), i64::from(i32::MIN));
        // A long tag wraps many times but stays inside the i32 range.
        let long = "x".repeat(1000);
        let h = tag_hash_code(&long);
        assert!(h >= i64::from(i32::MIN) && h <= i64::from(i32::MAX));
    }

    #[test]
    fn extending_a_hash_equals_hashing_the_concatenation() {
        let joined = "TopicTest#OrderID188\u{1F600}é";
        for split in [0, 9, 10, 20, joined.len()] {
            let (a, b) = joined.split_at(split);
            assert_eq!(
                i64::from(java_hash_extend(java_hash_extend(0, a), b)),
                tag_hash_code(joined)
            );
        }
    }

    #[test]
    fn supplementary_characters_count_as_two_code_units() {
        // U+1F600 is D83D DE00 in UTF-16: 31*0xD83D + 0xDE00.
        assert_eq!(tag_hash_code("\u{1F600}"), 31 * 0xD83D + 0xDE00);
        // Non-ASCII BMP character: one unit.
        assert_eq!(tag_hash_code("é"), 0xE9);
    }
}
