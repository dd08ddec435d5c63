//! [`RemotingCommand`]: the logical content of one remoting frame, independent of how its
//! header was encoded.

use std::ops::Range;

use bytes::Bytes;

/// Flag bit 0: the command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: the request wants no response.
pub const FLAG_ONEWAY: i32 = 2;

/// The sender's implementation language (RocketMQ `LanguageCode`). Unknown bytes are kept so a
/// re-encoded command says what the peer said.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LanguageCode {
    Java,
    Cpp,
    Dotnet,
    Python,
    Delphi,
    Erlang,
    Ruby,
    Other,
    Http,
    Go,
    Php,
    Oms,
    Rust,
    NodeJs,
    Unknown(u8),
}

impl LanguageCode {
    const NAMED: [(LanguageCode, &'static str); 14] = [
        (LanguageCode::Java, "JAVA"),
        (LanguageCode::Cpp, "CPP"),
        (LanguageCode::Dotnet, "DOTNET"),
        (LanguageCode::Python, "PYTHON"),
        (LanguageCode::Delphi, "DELPHI"),
        (LanguageCode::Erlang, "ERLANG"),
        (LanguageCode::Ruby, "RUBY"),
        (LanguageCode::Other, "OTHER"),
        (LanguageCode::Http, "HTTP"),
        (LanguageCode::Go, "GO"),
        (LanguageCode::Php, "PHP"),
        (LanguageCode::Oms, "OMS"),
        (LanguageCode::Rust, "RUST"),
        (LanguageCode::NodeJs, "NODE_JS"),
    ];

    /// The byte used by the ROCKETMQ binary header.
    pub fn code(self) -> u8 {
        match self {
            LanguageCode::Unknown(b) => b,
            known => {
                let index = Self::NAMED.iter().position(|(l, _)| *l == known);
                // Every variant but Unknown is in NAMED, at the index of its byte.
                index.map_or(u8::MAX, |i| i as u8)
            }
        }
    }

    pub fn from_code(code: u8) -> LanguageCode {
        Self::NAMED
            .get(code as usize)
            .map_or(LanguageCode::Unknown(code), |(l, _)| *l)
    }

    /// The name used by JSON headers; `None` for a byte with no name.
    pub fn name(self) -> Option<&'static str> {
        Self::NAMED
            .iter()
            .find(|(l, _)| *l == self)
            .map(|(_, n)| *n)
    }

    /// Parses a JSON-header name. Unknown names map to `Other`, as an unknown language must not
    /// cost a peer its connection.
    pub fn from_name(name: &str) -> LanguageCode {
        Self::NAMED
            .iter()
            .find(|(_, n)| *n == name)
            .map_or(LanguageCode::Other, |(l, _)| *l)
    }
}

/// How a header is encoded: the top byte of the frame's header-length word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SerializeType {
    Json = 0,
    RocketMq = 1,
}

/// A command's custom header: RocketMQ's `extFields`, string keys to string values.
///
/// Every decoded frame builds one, so it is stored compactly: all keys and values lie back to
/// back in one `String` in entry order (key, value, key, value, ...), and a small vector records
/// where each key and value end. Decoding a header costs two allocations however many entries it
/// has, where a vector of string pairs cost two per entry (half the decode time went to malloc
/// and free). Entries keep arrival order; headers have a dozen, so a linear scan beats hashing.
/// Inserting an existing key replaces its value in place (JSON's "last duplicate wins").
///
/// Equality compares entries in order, as the text holds nothing but the entries.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ExtFields {
    /// Keys and values, concatenated in entry order with no gaps. While a decoder builds an
    /// entry in place, text past the last entry's end is pending (see `pending_text`).
    text: String,
    ends: Vec<EntryEnds>,
}

/// Where one entry's key and value end in `ExtFields::text`. The key starts where the previous
/// entry's value ends (0 for the first entry); the value starts where the key ends. Every offset
/// was `text.len()` after appending a whole `str`, so each is a character boundary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct EntryEnds {
    key: usize,
    value: usize,
}

impl ExtFields {
    pub fn new() -> ExtFields {
        ExtFields::default()
    }

    /// Room for `n` entries of typical size without reallocating.
    pub fn with_capacity(n: usize) -> ExtFields {
        ExtFields::with_capacities(n, n.saturating_mul(TEXT_PER_ENTRY_GUESS))
    }

    /// Room for `entries` entries whose keys and values total `text_bytes` bytes.
    pub(crate) fn with_capacities(entries: usize, text_bytes: usize) -> ExtFields {
        ExtFields {
            text: String::with_capacity(text_bytes),
            ends: Vec::with_capacity(entries),
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        let (_, value) = self.ranges(self.position(key)?)?;
        self.text.get(value)
    }

    /// Sets `key` to `value`, replacing an existing value in its place or appending a new entry.
    pub fn insert(&mut self, key: impl AsRef<str>, value: impl AsRef<str>) {
        let (key, value) = (key.as_ref(), value.as_ref());
        match self.position(key) {
            Some(index) => self.replace_value(index, value),
            None => self.push_entry(key, value),
        }
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let index = self.position(key)?;
        let (key_range, value_range) = self.ranges(index)?;
        let value = self.text.get(value_range.clone())?.to_owned();
        let removed = value_range.end - key_range.start;
        self.text
            .replace_range(key_range.start..value_range.end, "");
        self.ends.remove(index);
        for later in self.ends.iter_mut().skip(index) {
            later.key -= removed;
            later.value -= removed;
        }
        Some(value)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Removes every entry, keeping the buffers (a response can reuse its request's).
    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Entries in order: arrival order for a decoded header, insertion order otherwise.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let mut key_start = 0;
        self.ends.iter().map(move |ends| {
            let key = self.text.get(key_start..ends.key).unwrap_or_default();
            let value = self.text.get(ends.key..ends.value).unwrap_or_default();
            key_start = ends.value;
            (key, value)
        })
    }

    /// Appends an entry without looking for an earlier one with the same key. Decoders append
    /// every entry this way and call [`ExtFields::dedupe`] once, because `insert` per entry is
    /// quadratic on hostile input.
    pub(crate) fn push_entry(&mut self, key: &str, value: &str) {
        self.discard_pending();
        self.text.push_str(key);
        let key_end = self.text.len();
        self.text.push_str(value);
        self.commit_pending(key_end);
    }

    /// The buffer a decoder may append an entry's key and then its value to, unescaping in
    /// place; it then calls [`ExtFields::commit_pending`] or [`ExtFields::discard_pending`].
    /// Only append: text before the pending part belongs to the committed entries.
    pub(crate) fn pending_text(&mut self) -> &mut String {
        &mut self.text
    }

    /// Makes the pending text one entry (without a duplicate check, as `push_entry`): its key
    /// ends at `key_end`, an offset into the whole text, and its value runs to the end.
    pub(crate) fn commit_pending(&mut self, key_end: usize) {
        let valid = (self.committed_len()..=self.text.len()).contains(&key_end)
            && self.text.is_char_boundary(key_end);
        // Only a decoder bug could split the pending text elsewhere; drop the entry rather than
        // break the offsets' invariant.
        debug_assert!(valid, "pending key end {key_end} outside the pending text");
        match valid {
            true => self.ends.push(EntryEnds {
                key: key_end,
                value: self.text.len(),
            }),
            false => self.discard_pending(),
        }
    }

    /// Drops text appended since the last committed entry.
    pub(crate) fn discard_pending(&mut self) {
        self.text.truncate(self.committed_len());
    }

    /// Merges repeated keys with the semantics of inserting the entries one by one: a repeated
    /// key keeps its first position and takes its last value (JSON's "last duplicate wins",
    /// Java's `HashMap.put`).
    ///
    /// A normal header has a dozen distinct keys: a 128-bit filter of key hashes shows each key
    /// new without comparing it to anything, and nothing is copied. A long list (only a hostile
    /// or broken peer sends one) or one with duplicates is merged by sorting, so a 16 MiB header
    /// costs O(n log n) rather than O(n²).
    pub(crate) fn dedupe(&mut self) {
        self.discard_pending();
        if self.len() <= DEDUPE_LINEAR_MAX && !self.has_duplicate_linear() {
            return;
        }
        let entries: Vec<(&str, &str)> = self.iter().collect();
        let mut order: Vec<usize> = (0..entries.len()).collect();
        // A stable sort keeps equal keys in arrival order, so each run of one key starts at its
        // first occurrence and ends at its last.
        order.sort_by_key(|&i| entries.get(i).map(|(k, _)| *k));
        // For each entry: the entry whose value it takes, or `None` if a first occurrence
        // absorbs it.
        let mut value_from: Vec<Option<usize>> = (0..entries.len()).map(Some).collect();
        let mut merged = false;
        for run in
            order.chunk_by(|&a, &b| entries.get(a).map(|e| e.0) == entries.get(b).map(|e| e.0))
        {
            if let [first, later @ .., last] = run {
                merged = true;
                for slot in later.iter().chain([last]) {
                    if let Some(from) = value_from.get_mut(*slot) {
                        *from = None;
                    }
                }
                if let Some(from) = value_from.get_mut(*first) {
                    *from = Some(*last);
                }
            }
        }
        if !merged {
            return;
        }
        let mut rebuilt = ExtFields {
            text: String::with_capacity(self.text.len()),
            ends: Vec::with_capacity(self.ends.len()),
        };
        for ((key, _), from) in entries.iter().zip(&value_from) {
            if let Some((_, value)) = from.and_then(|from| entries.get(from)) {
                rebuilt.push_entry(key, value);
            }
        }
        *self = rebuilt;
    }

    /// Whether two entries share a key, scanning only for keys the hash filter has seen.
    fn has_duplicate_linear(&self) -> bool {
        let mut seen = 0u128;
        for (index, key) in self.key_bytes().enumerate() {
            // `key_hash` is below 128.
            let bit = 1u128 << key_hash(key);
            if seen & bit != 0 && self.key_bytes().take(index).any(|k| k == key) {
                return true;
            }
            seen |= bit;
        }
        false
    }

    /// The keys as bytes: comparing and hashing need no character boundaries checked.
    fn key_bytes(&self) -> impl Iterator<Item = &[u8]> {
        let text = self.text.as_bytes();
        let mut key_start = 0;
        self.ends.iter().map(move |ends| {
            let key = text.get(key_start..ends.key).unwrap_or_default();
            key_start = ends.value;
            key
        })
    }

    /// Compares keys as bytes, so only the entry found pays for `str` boundary checks.
    fn position(&self, key: &str) -> Option<usize> {
        let key = key.as_bytes();
        self.key_bytes().position(|k| k == key)
    }

    /// Where entry `index`'s key and value lie in the text.
    fn ranges(&self, index: usize) -> Option<(Range<usize>, Range<usize>)> {
        let ends = self.ends.get(index)?;
        let key_start = match index.checked_sub(1) {
            Some(previous) => self.ends.get(previous)?.value,
            None => 0,
        };
        Some((key_start..ends.key, ends.key..ends.value))
    }

    fn replace_value(&mut self, index: usize, value: &str) {
        let Some((_, old)) = self.ranges(index) else {
            return;
        };
        let old_len = old.len();
        self.text.replace_range(old, value);
        // This entry's value end and every later offset move by the change in length; each is
        // at least `old_len`, so subtracting first cannot underflow.
        let moved = |offset: usize| offset - old_len + value.len();
        let mut rest = self.ends.iter_mut().skip(index);
        if let Some(this) = rest.next() {
            this.value = moved(this.value);
        }
        for later in rest {
            later.key = moved(later.key);
            later.value = moved(later.value);
        }
    }

    /// Bytes of all keys and values together: what an encoder copies besides its framing.
    pub(crate) fn text_len(&self) -> usize {
        self.committed_len()
    }

    fn committed_len(&self) -> usize {
        self.ends.last().map_or(0, |ends| ends.value)
    }
}

impl std::fmt::Debug for ExtFields {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Collects with the semantics of `insert` per item (first position, last value), in
/// O(n log n).
impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> ExtFields {
        let iter = iter.into_iter();
        let mut fields = ExtFields::with_capacity(iter.size_hint().0);
        for (k, v) in iter {
            fields.push_entry(k.as_ref(), v.as_ref());
        }
        fields.dedupe();
        fields
    }
}

/// A hash below 128 of the key's length and first and last bytes: a few instructions, and only
/// a filter (a collision costs a comparison, not a wrong answer). Header keys differ in those
/// three far more often than not, and the weights keep runs of one-letter keys (the V2 send
/// header's `a`..`n`) collision-free.
fn key_hash(bytes: &[u8]) -> u32 {
    let first = bytes.first().map_or(0, |&b| u32::from(b));
    let last = bytes.last().map_or(0, |&b| u32::from(b));
    (first + 3 * last + 7 * (bytes.len() as u32 & 0xFFFF)) & 127
}

/// Entries a decoder makes room for: a SEND_MESSAGE_V2 header has 14, most others fewer.
pub(crate) const EXT_ENTRIES_TYPICAL: usize = 16;
/// Entries and text bytes a map made by `RemotingCommand::ext_fields_mut` starts with.
const EXT_ENTRIES_BUILT: usize = 8;
const EXT_TEXT_BUILT: usize = 256;
/// Up to this many entries, `dedupe` looks for duplicates linearly before sorting.
const DEDUPE_LINEAR_MAX: usize = 32;
/// Bytes of key and value `with_capacity` reserves per entry.
const TEXT_PER_ENTRY_GUESS: usize = 24;

/// One request or response, as RocketMQ's `RemotingCommand`.
///
/// `ext_fields` is `None` when the header carried no map at all; Java distinguishes that from an
/// empty map (it skips required-field checks), so the distinction survives a round trip.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemotingCommand {
    /// Request code for requests, response code for responses.
    pub code: i32,
    pub language: LanguageCode,
    /// The sender's `MQVersion` ordinal.
    pub version: i32,
    /// Request id; a response echoes its request's.
    pub opaque: i32,
    /// Bit 0 response, bit 1 oneway.
    pub flag: i32,
    pub remark: Option<String>,
    pub ext_fields: Option<ExtFields>,
    /// Opaque payload; a view into the frame buffer, never copied by the decoder.
    pub body: Bytes,
}

/// Our `MQVersion` ordinal: V5_3_3, which every peer from 4.x on understands.
pub const OUR_VERSION: i32 = 479;

impl RemotingCommand {
    /// A request from us: Rust, our version, no remark, empty extFields.
    pub fn request(code: i32, opaque: i32) -> RemotingCommand {
        RemotingCommand {
            code,
            language: LanguageCode::Rust,
            version: OUR_VERSION,
            opaque,
            flag: 0,
            remark: None,
            ext_fields: None,
            body: Bytes::new(),
        }
    }

    /// The response to `request`: same opaque, response bit set.
    pub fn response_to(
        request: &RemotingCommand,
        code: i32,
        remark: Option<String>,
    ) -> RemotingCommand {
        RemotingCommand {
            code,
            language: LanguageCode::Rust,
            version: OUR_VERSION,
            opaque: request.opaque,
            flag: FLAG_RESPONSE,
            remark,
            ext_fields: None,
            body: Bytes::new(),
        }
    }

    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    pub fn mark_oneway(&mut self) {
        self.flag |= FLAG_ONEWAY;
    }

    /// The extFields map, created empty if the command had none.
    pub fn ext_fields_mut(&mut self) -> &mut ExtFields {
        // Sized for a typical response (a send's has six entries, about 150 bytes), so filling it
        // does not reallocate on every other insert.
        self.ext_fields
            .get_or_insert_with(|| ExtFields::with_capacities(EXT_ENTRIES_BUILT, EXT_TEXT_BUILT))
    }

    /// Looks up one extFields value.
    pub fn ext(&self, key: &str) -> Option<&str> {
        self.ext_fields.as_ref().and_then(|f| f.get(key))
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> RemotingCommand {
        self.body = body.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_codes_round_trip_by_byte_and_name() {
        for code in 0..=255u8 {
            let lang = LanguageCode::from_code(code);
            assert_eq!(lang.code(), code);
            if let Some(name) = lang.name() {
                assert_eq!(LanguageCode::from_name(name), lang);
            }
        }
        assert_eq!(LanguageCode::from_code(12), LanguageCode::Rust);
        assert_eq!(LanguageCode::from_name("NODE_JS").code(), 13);
    }

    use proptest::prelude::*;

    /// The model `ExtFields` must agree with: a vector of pairs, updated as `insert` documents.
    fn model_insert(model: &mut Vec<(String, String)>, key: &str, value: &str) {
        match model.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.to_string(),
            None => model.push((key.to_string(), value.to_string())),
        }
    }

    fn pairs(fields: &ExtFields) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn duplicates_keep_first_position_and_last_value() {
        let fields: ExtFields = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        let got: Vec<_> = fields.iter().collect();
        assert_eq!(got, vec![("a", "3"), ("b", "2")]);
        // The same, past the linear scan's limit.
        let many: Vec<(String, String)> = (0..100)
            .map(|i| (format!("k{}", i % 40), i.to_string()))
            .collect();
        let fields: ExtFields = many.iter().map(|(k, v)| (k, v)).collect();
        assert_eq!(fields.len(), 40);
        assert_eq!(fields.iter().next(), Some(("k0", "80")));
        assert_eq!(fields.get("k39"), Some("79"));
    }

    #[test]
    fn pending_entries_commit_or_vanish() {
        let mut f = ExtFields::new();
        f.push_entry("a", "1");
        let text = f.pending_text();
        text.push_str("key");
        let key_end = text.len();
        text.push_str("välue");
        f.commit_pending(key_end);
        f.pending_text().push_str("dropped");
        f.discard_pending();
        assert_eq!(
            pairs(&f),
            [("a", "1"), ("key", "välue")].map(|(k, v)| (k.into(), v.into()))
        );
        assert_eq!(f, [("a", "1"), ("key", "välue")].into_iter().collect());
    }

    #[test]
    fn ext_fields_insert_replaces() {
        let mut f = ExtFields::new();
        f.insert("a", "1");
        f.insert("b", "2");
        f.insert("a", "3");
        assert_eq!(f.get("a"), Some("3"));
        assert_eq!(f.len(), 2);
        assert_eq!(f.remove("a").as_deref(), Some("3"));
        assert_eq!(f.get("a"), None);
        assert_eq!(format!("{f:?}"), r#"{"b": "2"}"#);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Insert(String, String),
        Remove(String),
    }

    fn arb_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            ("[a-d]{0,2}", "[x-zé]{0,3}").prop_map(|(k, v)| Op::Insert(k, v)),
            "[a-d]{0,2}".prop_map(Op::Remove),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_vector_of_pairs(ops in proptest::collection::vec(arb_op(), 0..40)) {
            let mut fields = ExtFields::new();
            let mut model: Vec<(String, String)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => {
                        fields.insert(&k, &v);
                        model_insert(&mut model, &k, &v);
                    }
                    Op::Remove(k) => {
                        let want = model.iter().position(|(mk, _)| *mk == k)
                            .map(|i| model.remove(i).1);
                        prop_assert_eq!(fields.remove(&k), want);
                    }
                }
                prop_assert_eq!(pairs(&fields), model.clone());
                prop_assert_eq!(fields.len(), model.len());
                for (k, v) in &model {
                    prop_assert_eq!(fields.get(k), Some(v.as_str()));
                }
            }
            // Built by other routes, the same entries compare equal.
            prop_assert_eq!(model.iter().map(|(k, v)| (k, v)).collect::<ExtFields>(), fields);
        }

        #[test]
        fn dedupe_matches_repeated_insert(
            entries in proptest::collection::vec(("[a-e]{1,2}", "[0-9]{0,2}"), 0..120)
        ) {
            let entries: Vec<(String, String)> = entries;
            let mut model = Vec::new();
            let mut by_insert = ExtFields::new();
            for (k, v) in &entries {
                model_insert(&mut model, k, v);
                by_insert.insert(k, v);
            }
            let collected: ExtFields = entries.iter().map(|(k, v)| (k, v)).collect();
            prop_assert_eq!(pairs(&collected), model);
            prop_assert_eq!(collected, by_insert);
        }
    }
}
