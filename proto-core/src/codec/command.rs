//! [`RemotingCommand`]: the logical content of one remoting frame, independent of how its
//! header was encoded.

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
/// Kept as a small vector in arrival order: headers have a dozen entries, so a linear scan beats
/// hashing, and decoding allocates once. Inserting an existing key replaces its value (JSON's
/// "last duplicate wins").
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtFields(Vec<(String, String)>);

impl ExtFields {
    pub fn new() -> ExtFields {
        ExtFields(Vec::new())
    }

    pub fn with_capacity(n: usize) -> ExtFields {
        ExtFields(Vec::with_capacity(n))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
    }

    /// Wraps entries whose keys are already distinct. The header decoders dedupe first (in
    /// O(n log n)) because calling `insert` per entry is quadratic on hostile input.
    pub(crate) fn from_unique_entries(entries: Vec<(String, String)>) -> ExtFields {
        ExtFields(entries)
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let index = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(index).1)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for ExtFields {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> ExtFields {
        let mut fields = ExtFields::new();
        for (k, v) in iter {
            fields.insert(k, v);
        }
        fields
    }
}

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
        self.ext_fields.get_or_insert_with(ExtFields::new)
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
    }
}
