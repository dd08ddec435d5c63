//! Read filters: which consume-queue entries (and records) a `get_messages` call returns,
//! RocketMQ's `MessageFilter` with its TAG-expression implementation.
//!
//! Left out: SQL92 property filters (the broker may plug one in through the trait).

/// Decides which entries a read returns. Both checks must pass.
pub trait MessageFilter {
    /// Judged from the consume-queue unit's tag code alone, before the record is read.
    fn is_matched_by_consume_queue(&self, tags_code: i64) -> bool;

    /// Judged from the stored record, after the consume-queue check passed.
    fn is_matched_by_commit_log(&self, _record: &[u8]) -> bool {
        true
    }
}

/// Returns everything (a subscription of `*`, or no subscription).
#[derive(Debug, Clone, Copy, Default)]
pub struct AcceptAll;

impl MessageFilter for AcceptAll {
    fn is_matched_by_consume_queue(&self, _tags_code: i64) -> bool {
        true
    }
}

/// A TAG subscription: the hash codes of the subscribed tags (`SubscriptionData.codeSet`),
/// compared as 32-bit values like RocketMQ's `ExpressionMessageFilter`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagCodeFilter {
    codes: Vec<i32>,
}

impl TagCodeFilter {
    /// Matches units whose tag code is one of `codes`. An empty set matches everything, as a
    /// `*` subscription does.
    #[must_use]
    pub fn new(codes: impl IntoIterator<Item = i32>) -> TagCodeFilter {
        let mut codes: Vec<i32> = codes.into_iter().collect();
        codes.sort_unstable();
        codes.dedup();
        TagCodeFilter { codes }
    }
}

impl MessageFilter for TagCodeFilter {
    fn is_matched_by_consume_queue(&self, tags_code: i64) -> bool {
        // RocketMQ compares `tagsCode.intValue()`: the low 32 bits.
        self.codes.is_empty() || self.codes.binary_search(&(tags_code as i32)).is_ok()
    }
}

impl<F: Fn(i64) -> bool> MessageFilter for F {
    fn is_matched_by_consume_queue(&self, tags_code: i64) -> bool {
        self(tags_code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tag::tag_hash_code;

    #[test]
    fn tag_codes_match_by_low_32_bits() {
        let a = tag_hash_code("TagA");
        let f = TagCodeFilter::new([a as i32]);
        assert!(f.is_matched_by_consume_queue(a));
        assert!(!f.is_matched_by_consume_queue(tag_hash_code("TagB")));
        assert!(TagCodeFilter::new([]).is_matched_by_consume_queue(42));
        let negative = tag_hash_code("polygenelubricants");
        assert!(TagCodeFilter::new([negative as i32]).is_matched_by_consume_queue(negative));
        let closure = |code: i64| code == 7;
        assert!(closure.is_matched_by_consume_queue(7));
        assert!(AcceptAll.is_matched_by_commit_log(b""));
    }
}
