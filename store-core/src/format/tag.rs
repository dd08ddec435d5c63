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
    if more.is_ascii() {
        // Every byte is one UTF-16 unit; skips decoding on the common path (index keys).
        hash_ascii(hash, more.as_bytes())
    } else {
        more.encode_utf16().fold(hash, java_step)
    }
}

/// [`java_hash_extend`] of `more` read as UTF-8, or `None` if it is not UTF-8. For values
/// taken straight out of stored properties: ASCII (ids, keys, tags) needs no validation
/// beyond the ASCII test.
#[must_use]
pub fn java_hash_extend_utf8(hash: i32, more: &[u8]) -> Option<i32> {
    if more.is_ascii() {
        Some(hash_ascii(hash, more))
    } else {
        core::str::from_utf8(more)
            .ok()
            .map(|text| java_hash_extend(hash, text))
    }
}

/// One UTF-16 unit of Java's `hashCode` loop.
fn java_step(h: i32, unit: u16) -> i32 {
    h.wrapping_mul(31).wrapping_add(i32::from(unit))
}

/// [`java_hash_extend`] of ASCII bytes, four at a step (`h * 31^4 + b0 * 31^3 + ...`, the
/// same value in wrapping arithmetic, with fewer dependent multiplications): index keys are
/// 32-digit ids hashed on every put.
fn hash_ascii(hash: i32, bytes: &[u8]) -> i32 {
    const P2: i32 = 31 * 31;
    const P3: i32 = 31 * 31 * 31;
    const P4: i32 = 31 * 31 * 31 * 31;
    let mut quads = bytes.chunks_exact(4);
    let mut h = hash;
    for quad in &mut quads {
        let &[a, b, c, d] = quad else {
            unreachable!("chunks_exact(4) yields four bytes");
        };
        h = h
            .wrapping_mul(P4)
            .wrapping_add(i32::from(a).wrapping_mul(P3))
            .wrapping_add(i32::from(b) * P2)
            .wrapping_add(i32::from(c) * 31)
            .wrapping_add(i32::from(d));
    }
    quads
        .remainder()
        .iter()
        .fold(h, |h, &b| java_step(h, u16::from(b)))
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
    fn ascii_four_at_a_step_equals_one_unit_at_a_time() {
        let text = "Tq9#~ zZ\u{7f}0123456789abcdefghijklmnopqrstuvwxyz";
        for len in 0..=text.len() {
            let part = &text[..len];
            let one_by_one = part.bytes().fold(17, |h, b| java_step(h, u16::from(b)));
            assert_eq!(java_hash_extend(17, part), one_by_one, "{part:?}");
            assert_eq!(java_hash_extend_utf8(17, part.as_bytes()), Some(one_by_one));
        }
    }

    #[test]
    fn utf8_bytes_hash_as_their_text_and_invalid_bytes_do_not() {
        let text = "ключ\u{1F600}é";
        assert_eq!(
            java_hash_extend_utf8(5, text.as_bytes()),
            Some(java_hash_extend(5, text))
        );
        assert_eq!(java_hash_extend_utf8(5, &[b'a', 0xFF]), None);
    }

    #[test]
    fn supplementary_characters_count_as_two_code_units() {
        // U+1F600 is D83D DE00 in UTF-16: 31*0xD83D + 0xDE00.
        assert_eq!(tag_hash_code("\u{1F600}"), 31 * 0xD83D + 0xDE00);
        // Non-ASCII BMP character: one unit.
        assert_eq!(tag_hash_code("é"), 0xE9);
    }
}
