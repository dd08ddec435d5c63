//! Rewrites fastjson's non-standard JSON into standard JSON so serde can read it (protocol
//! reference §13.1).
//!
//! fastjson writes a Java `Map` whose keys are not strings with keys that are not JSON strings:
//! bare numbers (`{0:"10.0.0.1:10911"}`) and whole JSON objects (`{{"brokerName":"b",
//! "queueId":0,"topic":"T"}:{…}}`). [`normalize`] turns every such key into a JSON string: a
//! bare token becomes its text (`"0"`), an object or array key becomes its compact text as a
//! string (`"{\"brokerName\":\"b\",\"queueId\":0,\"topic\":\"T\"}"`), which the body types parse
//! back (`super::message_queue`). It also drops what fastjson tolerates and serde does not: a
//! UTF-8 byte-order mark and a trailing comma before `}` or `]`.
//!
//! Standard JSON (every body a non-Java peer sends) is returned borrowed, untouched; only a body
//! that needs a rewrite is copied, compactly (insignificant whitespace dropped).
//!
//! What it leaves out: validating scalars and strings. Tokens are copied as written and serde
//! reports a bad literal, escape or UTF-8 sequence afterwards; this pass only needs the
//! structure. Nesting is bounded ([`NESTING_MAX`]), so hostile input cannot exhaust the stack,
//! and an object key may not itself hold an object key, so the escaping of nested keys cannot
//! grow the output more than a constant factor.

use std::borrow::Cow;

use super::BodyError;

/// Rewrites `json` into standard JSON, borrowing it when it already is.
///
/// Errors name the first structural violation: an unexpected byte, an early end, nesting
/// deeper than [`NESTING_MAX`], or an object key inside an object key.
pub fn normalize(json: &[u8]) -> Result<Cow<'_, [u8]>, BodyError> {
    // First pass: check the structure and learn whether anything needs rewriting. Most bodies
    // are standard JSON, so this pass is usually the only one and allocates nothing.
    let mut check = Walker::new(json);
    check.document(None)?;
    if !check.rewrites {
        return Ok(Cow::Borrowed(json));
    }
    let mut out = Vec::with_capacity(json.len() + json.len() / 8 + 16);
    let mut write = Walker::new(json);
    write.document(Some(&mut out))?;
    Ok(Cow::Owned(out))
}

/// The deepest nesting of objects and arrays accepted; serde_json's own limit is the same, so
/// any body serde could read passes here.
pub const NESTING_MAX: usize = 128;

/// One pass over the input. With an output buffer it writes the normalized text; without one
/// it only checks the structure and records whether a rewrite is needed.
struct Walker<'a> {
    input: &'a [u8],
    pos: usize,
    /// Set when the input holds something that must be rewritten.
    rewrites: bool,
    /// How many object keys enclose the current position (at most one is allowed).
    key_nesting: usize,
}

impl<'a> Walker<'a> {
    fn new(input: &'a [u8]) -> Walker<'a> {
        Walker {
            input,
            pos: 0,
            rewrites: false,
            key_nesting: 0,
        }
    }

    fn document(&mut self, out: Option<&mut Vec<u8>>) -> Result<(), BodyError> {
        // Every mark before the value goes, even after whitespace, so the output never starts
        // with one and normalizing it again changes nothing.
        self.skip_ws();
        while self
            .input
            .get(self.pos..)
            .is_some_and(|rest| rest.starts_with(BOM))
        {
            self.pos += BOM.len();
            self.rewrites = true;
            self.skip_ws();
        }
        self.value(0, out)?;
        self.skip_ws();
        match self.peek() {
            None => Ok(()),
            Some(byte) => Err(self.unexpected(byte)),
        }
    }

    /// One value; `depth` counts the objects and arrays around it.
    fn value(&mut self, depth: usize, out: Option<&mut Vec<u8>>) -> Result<(), BodyError> {
        match self.peek() {
            Some(b'{') => self.container(depth, out, b'{', b'}'),
            Some(b'[') => self.container(depth, out, b'[', b']'),
            Some(b'"') => self.string(out),
            _ => {
                let token = self.scalar()?;
                if let Some(out) = out {
                    out.extend_from_slice(token);
                }
                Ok(())
            }
        }
    }

    /// An object (`{`…`}`) or an array (`[`…`]`), the opening byte still unread.
    fn container(
        &mut self,
        depth: usize,
        mut out: Option<&mut Vec<u8>>,
        open: u8,
        close: u8,
    ) -> Result<(), BodyError> {
        if depth >= NESTING_MAX {
            return Err(BodyError::TooDeep {
                offset: self.pos,
                max: NESTING_MAX,
            });
        }
        self.pos += 1;
        emit(&mut out, &[open]);
        self.skip_ws();
        if self.eat(close) {
            emit(&mut out, &[close]);
            return Ok(());
        }
        loop {
            if close == b'}' {
                self.key(depth + 1, out.as_deref_mut())?;
                self.skip_ws();
                self.expect(b':')?;
                emit(&mut out, b":");
                self.skip_ws();
            }
            self.value(depth + 1, out.as_deref_mut())?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                    if self.eat(close) {
                        // A trailing comma: fastjson accepts it, serde does not.
                        self.rewrites = true;
                        emit(&mut out, &[close]);
                        return Ok(());
                    }
                    emit(&mut out, b",");
                }
                Some(byte) if byte == close => {
                    self.pos += 1;
                    emit(&mut out, &[close]);
                    return Ok(());
                }
                Some(byte) => return Err(self.unexpected(byte)),
                None => return Err(self.end()),
            }
        }
    }

    /// An object member's key: a string is kept; anything else is rewritten into one.
    fn key(&mut self, depth: usize, out: Option<&mut Vec<u8>>) -> Result<(), BodyError> {
        match self.peek() {
            Some(b'"') => self.string(out),
            Some(b'{' | b'[') => {
                if self.key_nesting > 0 {
                    return Err(BodyError::NestedObjectKey { offset: self.pos });
                }
                self.rewrites = true;
                self.key_nesting += 1;
                let result = match out {
                    Some(out) => {
                        let mut text = Vec::new();
                        let result = self.value(depth, Some(&mut text));
                        write_string(out, &text);
                        result
                    }
                    None => self.value(depth, None),
                };
                self.key_nesting -= 1;
                result
            }
            _ => {
                let token = self.scalar()?;
                self.rewrites = true;
                if let Some(out) = out {
                    write_string(out, token);
                }
                Ok(())
            }
        }
    }

    /// A string, copied as written (escapes included), the opening quote still unread.
    fn string(&mut self, out: Option<&mut Vec<u8>>) -> Result<(), BodyError> {
        let start = self.pos;
        self.pos += 1;
        loop {
            match self.input.get(self.pos) {
                Some(b'"') => break,
                // An escape: the next byte is part of it, whatever it is.
                Some(b'\\') => self.pos += 2,
                Some(_) => self.pos += 1,
                None => return Err(self.end()),
            }
        }
        self.pos += 1;
        if let Some(out) = out {
            out.extend_from_slice(&self.input[start..self.pos]);
        }
        Ok(())
    }

    /// A number, literal or fastjson bare key: the run of bytes up to the next delimiter.
    fn scalar(&mut self) -> Result<&'a [u8], BodyError> {
        let start = self.pos;
        while let Some(&byte) = self.input.get(self.pos) {
            if is_delimiter(byte) {
                break;
            }
            self.pos += 1;
        }
        if self.pos > start {
            return Ok(&self.input[start..self.pos]);
        }
        match self.peek() {
            Some(byte) => Err(self.unexpected(byte)),
            None => Err(self.end()),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.input.get(self.pos) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        if hit {
            self.pos += 1;
        }
        hit
    }

    fn expect(&mut self, byte: u8) -> Result<(), BodyError> {
        match self.peek() {
            Some(b) if b == byte => {
                self.pos += 1;
                Ok(())
            }
            Some(b) => Err(self.unexpected(b)),
            None => Err(self.end()),
        }
    }

    fn unexpected(&self, byte: u8) -> BodyError {
        BodyError::UnexpectedByte {
            offset: self.pos,
            byte,
        }
    }

    fn end(&self) -> BodyError {
        BodyError::UnexpectedEnd {
            offset: self.input.len(),
        }
    }
}

fn emit(out: &mut Option<&mut Vec<u8>>, bytes: &[u8]) {
    if let Some(out) = out {
        out.extend_from_slice(bytes);
    }
}

/// Writes `raw` as a JSON string: quotes and backslashes escaped, control bytes as `\u00XX`,
/// everything else (UTF-8 included) as is.
fn write_string(out: &mut Vec<u8>, raw: &[u8]) {
    out.push(b'"');
    for &byte in raw {
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

/// Bytes that end a bare token.
fn is_delimiter(byte: u8) -> bool {
    matches!(
        byte,
        b',' | b':' | b'{' | b'}' | b'[' | b']' | b'"' | b' ' | b'\t' | b'\n' | b'\r'
    )
}

const BOM: &[u8] = b"\xEF\xBB\xBF";
const HEX: &[u8; 16] = b"0123456789abcdef";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn owned(json: &str) -> String {
        match normalize(json.as_bytes()).unwrap() {
            Cow::Owned(v) => String::from_utf8(v).unwrap(),
            Cow::Borrowed(_) => panic!("expected a rewrite of {json}"),
        }
    }

    #[test]
    fn number_keys_are_quoted() {
        assert_eq!(
            owned(r#"{"brokerAddrs":{0:"10.0.0.1:10911",1:"10.0.0.2:10911"}}"#),
            r#"{"brokerAddrs":{"0":"10.0.0.1:10911","1":"10.0.0.2:10911"}}"#
        );
        assert_eq!(owned("{-1 : 5}"), r#"{"-1":5}"#);
    }

    #[test]
    fn object_keys_become_their_compact_text() {
        let json =
            r#"{"offsetTable":{{"brokerName":"broker-a", "queueId":0,"topic":"T"}:{"x":1}}}"#;
        let want = concat!(
            r#"{"offsetTable":{"{\"brokerName\":\"broker-a\",\"queueId\":0,"#,
            r#"\"topic\":\"T\"}":{"x":1}}}"#,
        );
        assert_eq!(owned(json), want);
        // The key text is itself valid JSON once unquoted.
        let v: serde_json::Value = serde_json::from_str(want).unwrap();
        let key = v["offsetTable"].as_object().unwrap().keys().next().unwrap();
        let mq: serde_json::Value = serde_json::from_str(key).unwrap();
        assert_eq!(mq["brokerName"], "broker-a");
    }

    #[test]
    fn keys_inside_object_keys_are_escaped_once_more() {
        // A number key inside an object key: quoted, then escaped with the rest of the key.
        assert_eq!(owned(r#"{{0:"a\"b"}:1}"#), r#"{"{\"0\":\"a\\\"b\"}":1}"#);
        let err = normalize(br#"{{{"a":1}:2}:3}"#).unwrap_err();
        assert!(
            matches!(err, BodyError::NestedObjectKey { offset: 2 }),
            "{err:?}"
        );
    }

    #[test]
    fn standard_json_is_borrowed_even_with_trailing_newline() {
        let json = b"{\"a\":[1,2,{\"b\":null}],\"c\":\"x\\\"y\"}\n";
        assert!(matches!(normalize(json).unwrap(), Cow::Borrowed(b) if b == json));
    }

    #[test]
    fn bom_and_trailing_commas_are_dropped() {
        assert_eq!(owned("\u{feff}{\"a\":[1,2,],}"), r#"{"a":[1,2]}"#);
        // Found by fuzzing: a second mark must not survive to the output.
        assert_eq!(owned("\u{feff}\u{feff}1"), "1");
        assert_eq!(owned("\u{feff}\r\n\u{feff}1"), "1");
    }

    #[test]
    fn structural_errors_are_named() {
        let cases: [(&[u8], BodyError); 5] = [
            (b"", BodyError::UnexpectedEnd { offset: 0 }),
            (b"{\"a\":1", BodyError::UnexpectedEnd { offset: 6 }),
            (
                b"{\"a\" 1}",
                BodyError::UnexpectedByte {
                    offset: 5,
                    byte: b'1',
                },
            ),
            (
                b"[1] x",
                BodyError::UnexpectedByte {
                    offset: 4,
                    byte: b'x',
                },
            ),
            (b"\"abc", BodyError::UnexpectedEnd { offset: 4 }),
        ];
        for (input, want) in cases {
            let got = normalize(input).unwrap_err();
            assert_eq!(format!("{got:?}"), format!("{want:?}"));
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = "[".repeat(NESTING_MAX) + &"]".repeat(NESTING_MAX);
        assert!(normalize(ok.as_bytes()).is_ok());
        let deep = "[".repeat(NESTING_MAX + 1) + &"]".repeat(NESTING_MAX + 1);
        let err = normalize(deep.as_bytes()).unwrap_err();
        assert!(matches!(err, BodyError::TooDeep { .. }), "{err:?}");
        // Deep hostile input without closers stops at the bound too, without recursing on.
        let hostile = "{0:".repeat(100_000);
        assert!(normalize(hostile.as_bytes()).is_err());
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            ".*".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".*", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = normalize(&bytes);
        }

        #[test]
        fn never_panics_on_jsonish_bytes(
            parts in prop::collection::vec(
                prop::sample::select(vec!["{", "}", "[", "]", ",", ":", "\"", "\\", "0", "a", " "]),
                0..64,
            )
        ) {
            let _ = normalize(parts.concat().as_bytes());
        }

        #[test]
        fn normalized_text_is_normal(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(Cow::Owned(text)) = normalize(&bytes) {
                prop_assert!(matches!(normalize(&text), Ok(Cow::Borrowed(_))));
            }
        }

        #[test]
        fn identity_on_standard_json(value in json_value(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_vec_pretty(&value).unwrap()
            } else {
                serde_json::to_vec(&value).unwrap()
            };
            let got = normalize(&text).unwrap();
            prop_assert!(matches!(got, Cow::Borrowed(_)));
            prop_assert_eq!(got.as_ref(), text.as_slice());
        }

        #[test]
        fn bare_keys_read_as_their_text(
            map in prop::collection::btree_map(any::<i64>(), ".*", 0..8),
        ) {
            let mut text = String::from("{");
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    text.push(',');
                }
                text.push_str(&format!("{k}:{}", serde_json::to_string(v).unwrap()));
            }
            text.push('}');
            let got = normalize(text.as_bytes()).unwrap();
            let back: std::collections::BTreeMap<i64, String> =
                serde_json::from_slice(&got).unwrap();
            prop_assert_eq!(back, map);
        }
    }
}
