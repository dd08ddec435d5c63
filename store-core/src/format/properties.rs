//! The message properties string (§7.1–7.2 of the protocol reference): `name 0x01 value 0x02`
//! repeated, the same bytes in send headers, batch entries and stored records.
//!
//! [`Properties`] is the owned, ordered form for building and editing; [`find_property`] reads
//! one key straight out of stored bytes without allocating, for hot paths such as tag codes and
//! index keys. The well-known key strings are the constants below. What this leaves out: the
//! meaning of each property, and the 32767-byte limit, which the record encoder enforces.

/// Separates a name from its value (Java `MessageDecoder.NAME_VALUE_SEPARATOR`, char 1).
pub const NAME_VALUE_SEPARATOR: char = '\u{1}';
/// Follows every name/value pair (Java `MessageDecoder.PROPERTY_SEPARATOR`, char 2).
pub const PROPERTY_SEPARATOR: char = '\u{2}';

/// A properties map in insertion order.
///
/// Java keeps properties in a `HashMap`, so order carries no meaning; keeping insertion order
/// makes our encoding deterministic. Keys are unique: inserting an existing key replaces its
/// value where it stands.
///
/// Invariant for a faithful round trip: keys are non-empty and contain neither separator, and
/// values are non-empty and contain no [`PROPERTY_SEPARATOR`]. [`Properties::parse`] only
/// produces such pairs; the encoder writes whatever it is given, as Java's does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pairs: Vec<(String, String)>,
}

impl Properties {
    /// An empty map.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a properties string with Java's rules (`string2messageProperties`).
    ///
    /// The text is split on [`PROPERTY_SEPARATOR`]; a segment becomes a pair only if its first
    /// [`NAME_VALUE_SEPARATOR`] leaves a non-empty name and a non-empty value (the value may
    /// contain further 0x01 characters). Other segments are dropped silently, and a later
    /// duplicate key overwrites an earlier one. Parsing never fails.
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut props = Self::new();
        for (key, value) in pairs(text.as_bytes()) {
            // Both slices were split at ASCII separators of a `str`, so they are valid UTF-8.
            let (Ok(key), Ok(value)) = (std::str::from_utf8(key), std::str::from_utf8(value))
            else {
                continue;
            };
            props.insert(key, value);
        }
        props
    }

    /// Parses stored bytes, replacing invalid UTF-8 as Java's `new String(bytes, UTF_8)` does.
    #[must_use]
    pub fn parse_bytes(bytes: &[u8]) -> Self {
        Self::parse(&String::from_utf8_lossy(bytes))
    }

    /// The value of `key`, if present.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` to `value`, replacing an existing value in place. Returns the old value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) -> Option<String> {
        let key = key.into();
        let value = value.into();
        match self.pairs.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => Some(std::mem::replace(slot, value)),
            None => {
                self.pairs.push((key, value));
                None
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let at = self.pairs.iter().position(|(k, _)| k == key)?;
        Some(self.pairs.remove(at).1)
    }

    /// Number of pairs.
    #[must_use]
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when there are no pairs.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The encoded form: every pair written as `name 0x01 value 0x02`.
    #[must_use]
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(self.encoded_len());
        for (key, value) in &self.pairs {
            out.push_str(key);
            out.push(NAME_VALUE_SEPARATOR);
            out.push_str(value);
            out.push(PROPERTY_SEPARATOR);
        }
        out
    }

    /// Length in bytes of [`Properties::encode`]'s output.
    #[must_use]
    pub fn encoded_len(&self) -> usize {
        self.pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut props = Self::new();
        for (k, v) in iter {
            props.insert(k, v);
        }
        props
    }
}

/// The value of `key` in encoded properties, found without allocating.
///
/// Follows [`Properties::parse`] exactly, including "the last duplicate wins", so the answer
/// always equals `Properties::parse_bytes(props).get(key)` for valid UTF-8 input.
#[must_use]
pub fn find_property<'a>(props: &'a [u8], key: &str) -> Option<&'a [u8]> {
    pairs(props)
        .filter(|(k, _)| *k == key.as_bytes())
        .map(|(_, v)| v)
        .last()
}

/// The values of several keys in one pass over encoded properties, without allocating: entry
/// `i` is what [`find_property`] would return for `keys[i]`. Hot paths (dispatch, send) need
/// three or four keys of every message; one scan instead of one per key.
#[must_use]
pub fn find_properties<'a, const N: usize>(
    props: &'a [u8],
    keys: [&str; N],
) -> [Option<&'a [u8]>; N] {
    let mut found = [None; N];
    for (key, value) in pairs(props) {
        for (slot, wanted) in found.iter_mut().zip(keys) {
            // Length and first byte tell most keys apart without a `memcmp` call (`TAGS`,
            // `KEYS` and `WAIT` share a length).
            let wanted = wanted.as_bytes();
            if key.len() == wanted.len() && key.first() == wanted.first() && key == wanted {
                *slot = Some(value);
            }
        }
    }
    found
}

/// Most pairs [`PropertyPairs`] holds; real messages carry far fewer.
pub const MAX_SCANNED_PAIRS: usize = 16;

/// The pairs of encoded properties exactly as [`Properties::parse`] keeps them, borrowed and on
/// the stack: for rewriting properties on the send path without building a map. Only for
/// input without a repeated key and with at most [`MAX_SCANNED_PAIRS`] pairs (what clients
/// send); [`PropertyPairs::scan`] refuses anything else and callers fall back to
/// [`Properties`].
#[derive(Debug, Clone, Copy)]
pub struct PropertyPairs<'a> {
    pairs: [(&'a [u8], &'a [u8]); MAX_SCANNED_PAIRS],
    len: usize,
}

impl<'a> PropertyPairs<'a> {
    /// The pairs of `bytes`, or `None` if a key repeats or there are too many.
    #[must_use]
    #[inline]
    pub fn scan(bytes: &'a [u8]) -> Option<Self> {
        let mut out = PropertyPairs {
            pairs: [(&[], &[]); MAX_SCANNED_PAIRS],
            len: 0,
        };
        for (key, value) in pairs(bytes) {
            if out.contains(key) {
                return None;
            }
            *out.pairs.get_mut(out.len)? = (key, value);
            out.len += 1;
        }
        Some(out)
    }

    /// The pairs in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.pairs.iter().take(self.len).copied()
    }

    /// Whether `key` is one of the pairs.
    #[must_use]
    pub fn contains(&self, key: &[u8]) -> bool {
        self.iter().any(|(k, _)| k == key)
    }
}

/// Appends one encoded pair, `key 0x01 value 0x02`, the bytes [`Properties::encode`] writes
/// for it (for rewriting properties as bytes, without a map).
pub fn push_pair(out: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    out.reserve(key.len() + value.len() + 2);
    out.extend_from_slice(key);
    out.push(NAME_VALUE_SEPARATOR as u8);
    out.extend_from_slice(value);
    out.push(PROPERTY_SEPARATOR as u8);
}

/// The pairs Java's parser would keep, as byte slices, in order (duplicates included).
fn pairs(bytes: &[u8]) -> Pairs<'_> {
    Pairs { rest: bytes }
}

/// Iterator behind [`pairs`]: every send and dispatch scans properties, so it walks each
/// segment once to its separator, and the name once more to its 0x01.
struct Pairs<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a [u8], &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        while !self.rest.is_empty() {
            let end = find_byte(self.rest, PROPERTY_SEPARATOR as u8).unwrap_or(self.rest.len());
            let (segment, rest) = self.rest.split_at(end);
            self.rest = rest.get(1..).unwrap_or_default();
            let Some(at) = find_byte(segment, NAME_VALUE_SEPARATOR as u8) else {
                continue;
            };
            // Java: `kvSepIndex > index && kvSepIndex < newIndex - 1`, i.e. a non-empty name and
            // a non-empty value. That also covers its `newIndex - index >= 3` length test.
            let (key, rest) = segment.split_at(at);
            let value = rest.get(1..).unwrap_or_default();
            if !key.is_empty() && !value.is_empty() {
                return Some((key, value));
            }
        }
        None
    }
}

/// The first index of `needle` in `hay`, eight bytes at a time: scanning properties is most
/// of what the send and dispatch paths do per message, and values (32-digit ids) are long.
fn find_byte(hay: &[u8], needle: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(needle);
    let mut words = hay.chunks_exact(8);
    let mut base = 0;
    for word in &mut words {
        let word = u64::from_le_bytes(word.try_into().unwrap_or_default()) ^ pattern;
        // The classic zero-byte test: the lowest set high bit marks the first zero byte
        // (false hits only ever appear above a real one).
        let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
        if zeros != 0 {
            return Some(base + (zeros.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    let tail = words.remainder();
    tail.iter().position(|&b| b == needle).map(|at| base + at)
}

// Well-known keys, spelled exactly as RocketMQ's `MessageConst`. Where the Java constant has a
// `PROPERTY_` prefix we drop it; where the key string is not a valid identifier the name
// follows the Java constant.

/// Business keys, separated by [`KEY_SEPARATOR`]; indexed.
pub const KEYS: &str = "KEYS";
/// The message tag; its Java hash code is the consume-queue tag code.
pub const TAGS: &str = "TAGS";
/// `"true"` (the client default): wait for flush/replication before answering.
pub const WAIT: &str = "WAIT";
/// Delay level 1..N.
pub const DELAY: &str = "DELAY";
/// Original topic of a retried message.
pub const RETRY_TOPIC: &str = "RETRY_TOPIC";
/// Real topic while parked in a system topic (schedule, half, timer).
pub const REAL_TOPIC: &str = "REAL_TOPIC";
/// Real queue id while parked in a system topic, decimal.
pub const REAL_QID: &str = "REAL_QID";
/// `"true"` on transactional half messages.
pub const TRAN_MSG: &str = "TRAN_MSG";
/// Producer group (transactions).
pub const PGROUP: &str = "PGROUP";
/// Set by the client on pulled messages from the pull response header.
pub const MIN_OFFSET: &str = "MIN_OFFSET";
/// Set by the client on pulled messages from the pull response header.
pub const MAX_OFFSET: &str = "MAX_OFFSET";
/// Legacy.
pub const BUYER_ID: &str = "BUYER_ID";
/// First message id of a retried message.
pub const ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
/// Legacy.
pub const TRANSFER_FLAG: &str = "TRANSFER_FLAG";
/// Legacy.
pub const CORRECTION_FLAG: &str = "CORRECTION_FLAG";
/// Legacy.
pub const MQ2_FLAG: &str = "MQ2_FLAG";
/// Reconsume count when a client re-sends to `%RETRY%`.
pub const RECONSUME_TIME: &str = "RECONSUME_TIME";
/// Region (trace).
pub const MSG_REGION: &str = "MSG_REGION";
/// Trace switch (Java `PROPERTY_TRACE_SWITCH`).
pub const TRACE_ON: &str = "TRACE_ON";
/// Client message id (Java `PROPERTY_UNIQ_CLIENT_MESSAGE_ID_KEYIDX`).
pub const UNIQ_KEY: &str = "UNIQ_KEY";
/// Legacy.
pub const EXTEND_UNIQ_INFO: &str = "EXTEND_UNIQ_INFO";
/// Client's limit on re-sends to `%RETRY%`.
pub const MAX_RECONSUME_TIMES: &str = "MAX_RECONSUME_TIMES";
/// Client-side consume start time (Java `PROPERTY_CONSUME_START_TIMESTAMP`).
pub const CONSUME_START_TIME: &str = "CONSUME_START_TIME";
/// Inner-batch message count.
pub const INNER_NUM: &str = "INNER_NUM";
/// Inner-batch base offset.
pub const INNER_BASE: &str = "INNER_BASE";
/// Duplication mode.
pub const DUP_INFO: &str = "DUP_INFO";
/// Earliest first transaction check.
pub const CHECK_IMMUNITY_TIME_IN_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";
/// Half message's queue offset (Java `PROPERTY_TRANSACTION_PREPARED_QUEUE_OFFSET`).
pub const TRAN_PREPARED_QUEUE_OFFSET: &str = "TRAN_PREPARED_QUEUE_OFFSET";
/// Copy of UNIQ_KEY on half messages (Java `PROPERTY_TRANSACTION_ID`).
pub const TRANSACTION_ID: &str = "__transactionId__";
/// Number of checks done on a half message.
pub const TRANSACTION_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
/// Namespace instance.
pub const INSTANCE_ID: &str = "INSTANCE_ID";
/// Request-reply correlation id.
pub const CORRELATION_ID: &str = "CORRELATION_ID";
/// Request-reply target client (Java `PROPERTY_MESSAGE_REPLY_TO_CLIENT`).
pub const REPLY_TO_CLIENT: &str = "REPLY_TO_CLIENT";
/// Request-reply time to live (Java `PROPERTY_MESSAGE_TTL`).
pub const TTL: &str = "TTL";
/// Request-reply arrival time (Java `PROPERTY_REPLY_MESSAGE_ARRIVE_TIME`).
pub const ARRIVE_TIME: &str = "ARRIVE_TIME";
/// Request-reply push time.
pub const PUSH_REPLY_TIME: &str = "PUSH_REPLY_TIME";
/// Broker cluster name, added by the broker on send.
pub const CLUSTER: &str = "CLUSTER";
/// Request-reply message type (Java `PROPERTY_MESSAGE_TYPE`).
pub const MSG_TYPE: &str = "MSG_TYPE";
/// POP checkpoint.
pub const POP_CK: &str = "POP_CK";
/// POP checkpoint offset.
pub const POP_CK_OFFSET: &str = "POP_CK_OFFSET";
/// First POP time (Java `PROPERTY_FIRST_POP_TIME`).
pub const FIRST_POP_TIME: &str = "1ST_POP_TIME";
/// Ordering key (5.x).
pub const SHARDING_KEY: &str = "__SHARDINGKEY";
/// Forward queue id.
pub const FORWARD_QUEUE_ID: &str = "PROPERTY_FORWARD_QUEUE_ID";
/// Redirect marker.
pub const REDIRECT: &str = "REDIRECT";
/// LMQ dispatch list, comma-separated.
pub const INNER_MULTI_DISPATCH: &str = "INNER_MULTI_DISPATCH";
/// LMQ queue offsets, comma-separated.
pub const INNER_MULTI_QUEUE_OFFSET: &str = "INNER_MULTI_QUEUE_OFFSET";
/// Trace context.
pub const TRACE_CONTEXT: &str = "TRACE_CONTEXT";
/// 5.x timer: delay in seconds.
pub const TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
/// 5.x timer: deliver time in ms.
pub const TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
/// Born host as text.
pub const BORN_HOST: &str = "__BORNHOST";
/// Born timestamp as text.
pub const BORN_TIMESTAMP: &str = "BORN_TIMESTAMP";
/// Prefix of keys that are never persisted.
pub const TRANSIENT_PREFIX: &str = "__RMQ.TRANSIENT.";
/// Transient topic sys flag.
pub const TRANSIENT_TOPIC_CONFIG: &str = "__RMQ.TRANSIENT.TOPIC_SYS_FLAG";
/// Transient group sys flag.
pub const TRANSIENT_GROUP_CONFIG: &str = "__RMQ.TRANSIENT.GROUP_SYS_FLAG";
/// Timer internals: enqueue time.
pub const TIMER_ENQUEUE_MS: &str = "TIMER_ENQUEUE_MS";
/// Timer internals: dequeue time.
pub const TIMER_DEQUEUE_MS: &str = "TIMER_DEQUEUE_MS";
/// Timer internals: roll count.
pub const TIMER_ROLL_TIMES: &str = "TIMER_ROLL_TIMES";
/// Timer internals: out time.
pub const TIMER_OUT_MS: &str = "TIMER_OUT_MS";
/// Timer internals: uniq key of a deleted timer message.
pub const TIMER_DEL_UNIQKEY: &str = "TIMER_DEL_UNIQKEY";
/// Timer internals: delay level.
pub const TIMER_DELAY_LEVEL: &str = "TIMER_DELAY_LEVEL";
/// 5.x timer: delay in ms.
pub const TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
/// Optional whole-record CRC (§7.9).
pub const CRC32: &str = "__CRC32#";
/// DLQ bookkeeping: original topic (5.x).
pub const DLQ_ORIGIN_TOPIC: &str = "DLQ_ORIGIN_TOPIC";
/// DLQ bookkeeping: original message id (5.x).
pub const DLQ_ORIGIN_MESSAGE_ID: &str = "DLQ_ORIGIN_MESSAGE_ID";
/// Start deliver time, read by client hooks only.
pub const START_DELIVER_TIME: &str = "__STARTDELIVERTIME";
/// Separates several business keys inside the [`KEYS`] value.
pub const KEY_SEPARATOR: &str = " ";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encodes_every_pair_with_a_trailing_separator() {
        let mut props = Properties::new();
        props.insert(TAGS, "TagA");
        props.insert(KEYS, "k1 k2");
        assert_eq!(props.encode(), "TAGS\u{1}TagA\u{2}KEYS\u{1}k1 k2\u{2}");
        assert_eq!(props.encoded_len(), props.encode().len());
        assert_eq!(Properties::new().encode(), "");
    }

    #[test]
    fn parse_follows_java_segment_rules() {
        // Too short, no separator, empty name, empty value, missing trailing separator, value
        // with an extra 0x01, and a later duplicate.
        let text = "a\u{1}\u{2}ab\u{2}\u{1}x\u{2}k\u{1}\u{2}TAGS\u{1}A\u{2}V\u{1}x\u{1}y\u{2}\
                    \u{2}\u{2}TAGS\u{1}B\u{2}last\u{1}1";
        let props = Properties::parse(text);
        let pairs: Vec<_> = props.iter().collect();
        assert_eq!(pairs, vec![("TAGS", "B"), ("V", "x\u{1}y"), ("last", "1")]);
    }

    #[test]
    fn parse_keeps_multibyte_text() {
        let props = Properties::parse("ключ\u{1}значение\u{2}");
        assert_eq!(props.get("ключ"), Some("значение"));
    }

    #[test]
    fn parse_bytes_replaces_invalid_utf8() {
        let props = Properties::parse_bytes(b"K\x01\xff\x02");
        assert_eq!(props.get("K"), Some("\u{FFFD}"));
    }

    #[test]
    fn insert_replaces_in_place_and_remove_drops() {
        let mut props: Properties = [("A", "1"), ("B", "2")].into_iter().collect();
        assert_eq!(props.insert("A", "3"), Some("1".to_owned()));
        assert_eq!(
            props.iter().collect::<Vec<_>>(),
            vec![("A", "3"), ("B", "2")]
        );
        assert_eq!(props.remove("A"), Some("3".to_owned()));
        assert_eq!(props.remove("A"), None);
        assert_eq!(props.len(), 1);
        assert!(!props.is_empty());
    }

    #[test]
    fn find_property_takes_the_last_duplicate() {
        let bytes = b"TAGS\x01A\x02UNIQ_KEY\x01X\x02TAGS\x01B\x02";
        assert_eq!(find_property(bytes, TAGS), Some(&b"B"[..]));
        assert_eq!(find_property(bytes, UNIQ_KEY), Some(&b"X"[..]));
        assert_eq!(find_property(bytes, KEYS), None);
        assert_eq!(find_property(b"TAGS\x01\x02", TAGS), None);
        assert_eq!(find_property(b"TAGS\x01A", TAGS), Some(&b"A"[..]));
    }

    #[test]
    fn scan_holds_at_most_max_scanned_pairs() {
        let pairs = |n: usize| -> String { (0..n).map(|i| format!("k{i}\u{1}v\u{2}")).collect() };
        let fits = pairs(MAX_SCANNED_PAIRS);
        let scanned = PropertyPairs::scan(fits.as_bytes()).unwrap();
        assert_eq!(scanned.iter().count(), MAX_SCANNED_PAIRS);
        assert!(scanned.contains(b"k0") && !scanned.contains(b"k"));
        assert!(PropertyPairs::scan(pairs(MAX_SCANNED_PAIRS + 1).as_bytes()).is_none());
    }

    fn key() -> impl Strategy<Value = String> {
        "[^\u{1}\u{2}]{1,12}"
    }

    fn value() -> impl Strategy<Value = String> {
        "[^\u{2}]{1,20}"
    }

    proptest! {
        #[test]
        fn encode_then_parse_is_identity(pairs in prop::collection::vec((key(), value()), 0..12)) {
            let props: Properties = pairs.into_iter().collect();
            prop_assert_eq!(Properties::parse(&props.encode()), props);
        }

        #[test]
        fn parse_encode_parse_is_stable(text in "[a-c\u{1}\u{2}é]{0,40}") {
            let first = Properties::parse(&text);
            prop_assert_eq!(Properties::parse(&first.encode()), first);
        }

        #[test]
        fn find_properties_agrees_with_find_property(text in "[ab\u{1}\u{2}]{0,30}") {
            let [a, b, ab] = find_properties(text.as_bytes(), ["a", "b", "ab"]);
            prop_assert_eq!(a, find_property(text.as_bytes(), "a"));
            prop_assert_eq!(b, find_property(text.as_bytes(), "b"));
            prop_assert_eq!(ab, find_property(text.as_bytes(), "ab"));
        }

        #[test]
        fn scanned_pairs_are_the_parsed_pairs(text in "[ab\u{1}\u{2}é]{0,40}") {
            let parsed = Properties::parse(&text);
            let has_duplicate = pairs(text.as_bytes()).count() != parsed.len();
            match PropertyPairs::scan(text.as_bytes()) {
                Some(scanned) => {
                    let scanned: Vec<_> = scanned.iter().collect();
                    let expected: Vec<_> =
                        parsed.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect();
                    prop_assert_eq!(scanned, expected);
                }
                None => prop_assert!(has_duplicate),
            }
        }

        #[test]
        fn find_byte_agrees_with_position(
            // High bytes and zeros are where a word-wise search could go wrong.
            hay in prop::collection::vec(
                prop::sample::select(vec![0u8, 1, 2, 3, 0x7F, 0x80, 0x81, 0xFF]),
                0..40,
            ),
            needle in prop::sample::select(vec![0u8, 1, 2, 0x80, 0xFF]),
        ) {
            prop_assert_eq!(find_byte(&hay, needle), hay.iter().position(|&b| b == needle));
        }

        #[test]
        fn pairs_follow_javas_split(text in "[ab\u{1}\u{2}\u{0}é]{0,40}") {
            // Java's rules spelled out: split on 0x02, then at the first 0x01 of a segment,
            // keeping non-empty names and values.
            let expected: Vec<(&[u8], &[u8])> = text
                .as_bytes()
                .split(|&b| b == 2)
                .filter_map(|segment| {
                    let at = segment.iter().position(|&b| b == 1)?;
                    let (key, value) = (&segment[..at], &segment[at + 1..]);
                    (!key.is_empty() && !value.is_empty()).then_some((key, value))
                })
                .collect();
            prop_assert_eq!(pairs(text.as_bytes()).collect::<Vec<_>>(), expected);
        }

        #[test]
        fn find_property_agrees_with_parse(text in "[ab\u{1}\u{2}]{0,30}", key in "[ab]{1,2}") {
            let parsed = Properties::parse(&text);
            let found = find_property(text.as_bytes(), &key);
            prop_assert_eq!(found, parsed.get(&key).map(str::as_bytes));
        }
    }
}
