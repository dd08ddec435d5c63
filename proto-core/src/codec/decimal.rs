//! [`Decimal`]: an integer's decimal text on the stack, for the encoders that write numbers per
//! request (JSON header members, typed header values). `fmt` and `to_string` cost several
//! times as much and the latter allocates.
//!
//! What it leaves out: parsing (`str::parse` is used for that) and non-integer numbers.

/// The decimal text of an `i64`: an optional `-` and its digits, no padding.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Decimal {
    /// The text is right-aligned: it occupies `digits[start..]`.
    digits: [u8; DIGITS_MAX],
    start: usize,
}

/// `-9223372036854775808` is the longest: a sign and 19 digits.
const DIGITS_MAX: usize = 20;

impl Decimal {
    pub(crate) fn new(n: i64) -> Decimal {
        let mut digits = [0u8; DIGITS_MAX];
        let mut start = DIGITS_MAX;
        let mut rest = n.unsigned_abs();
        // Each step writes one digit; a u64 has at most 20 and the sign needs one more only
        // when there are at most 19, so `start` stays in bounds (the `get_mut`s never miss).
        loop {
            start -= 1;
            if let Some(d) = digits.get_mut(start) {
                *d = b'0' + (rest % 10) as u8;
            }
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        if n < 0 {
            start -= 1;
            if let Some(d) = digits.get_mut(start) {
                *d = b'-';
            }
        }
        Decimal { digits, start }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        self.digits.get(self.start..).unwrap_or_default()
    }

    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and `-` were written, so this never falls back.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn extremes() {
        for n in [0, 1, -1, 9, 10, -10, i64::MAX, i64::MIN] {
            assert_eq!(Decimal::new(n).as_str(), n.to_string());
        }
    }

    proptest! {
        #[test]
        fn matches_to_string(n in any::<i64>()) {
            let (ours, std) = (Decimal::new(n), n.to_string());
            prop_assert_eq!(ours.as_str(), std.as_str());
            prop_assert_eq!(ours.as_bytes(), std.as_bytes());
        }
    }
}
