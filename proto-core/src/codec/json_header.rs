//! The JSON header (serialize type 0, protocol reference §2.2): a hand-written scanner that reads
//! what fastjson and non-Java clients write, and a writer that writes what fastjson writes.
//!
//! Reading is lenient where real peers differ and strict where the text stops being JSON:
//! - any member may be missing (Java's defaults apply: language JAVA, numbers 0, nulls), unknown
//!   members are skipped, a repeated member's last value wins;
//! - `language` is a name or a number; an unknown name, an out-of-range number or null reads as
//!   `Other`, since an unknown language must not cost a peer its connection;
//! - the number members also accept a string holding an integer, and null (fastjson coerces);
//! - `remark` keeps `""` apart from null; a number or boolean remark is kept as its text;
//! - `extFields` values may be strings, numbers (kept exactly as written) or booleans (the C++
//!   client sends numbers); null values are dropped (Java treats them as absent); a bare number
//!   key (fastjson's non-string-key quirk, §13.1) is kept as its text;
//! - whitespace (the C++ client's trailing newline) and a UTF-8 byte-order mark are skipped;
//!   invalid UTF-8 is replaced by U+FFFD, as Java's decoder does;
//! - a trailing comma before `}` is accepted, as fastjson accepts it.
//!
//! Writing follows fastjson's defaults: members in alphabetical order, null members omitted,
//! the language by name (a number for an unknown byte), `serializeTypeCurrentRPC` as `"JSON"`.
//!
//! What it leaves out: the frame around the header (`super::frame`) and the meaning of the
//! `extFields` entries (`crate::header`).

use std::borrow::Cow;

use bytes::{BufMut, BytesMut};

use super::command::{ExtFields, LanguageCode, RemotingCommand, EXT_ENTRIES_TYPICAL};
use super::decimal::Decimal;

/// Decodes one JSON header. The command's body is empty; the frame decoder fills it.
pub fn decode(header: &[u8]) -> Result<RemotingCommand, JsonHeaderError> {
    // Valid UTF-8 (every real peer) is borrowed as is; anything else is repaired once here so
    // the scanner can slice `str`s at ASCII delimiters without further checks.
    // `from_utf8` has an ASCII fast path that `from_utf8_lossy` lacks.
    let text = match std::str::from_utf8(header) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(header),
    };
    let mut scanner = Scanner::new(&text);
    scanner.command()
}

/// Appends `cmd`'s header as fastjson would write it. The body is not written.
pub fn encode(cmd: &RemotingCommand, out: &mut BytesMut) {
    out.reserve(encoded_len_estimate(cmd));
    out.put_slice(b"{\"code\":");
    put_i32(out, cmd.code);
    // Quotes and separators go out merged with their neighbours (`":"` between a key and its
    // value): each `put_slice` into a `BytesMut` costs dozens of instructions whatever its size.
    if let Some(fields) = &cmd.ext_fields {
        match fields.is_empty() {
            true => out.put_slice(b",\"extFields\":{}"),
            false => {
                let mut opening: &[u8] = b",\"extFields\":{\"";
                for (key, value) in fields.iter() {
                    out.put_slice(opening);
                    put_escaped(out, key);
                    out.put_slice(b"\":\"");
                    put_escaped(out, value);
                    opening = b"\",\"";
                }
                out.put_slice(b"\"}");
            }
        }
    }
    out.put_slice(b",\"flag\":");
    put_i32(out, cmd.flag);
    match cmd.language.name() {
        Some(name) => {
            out.put_slice(b",\"language\":\"");
            put_escaped(out, name);
            out.put_slice(b"\",\"opaque\":");
        }
        None => {
            out.put_slice(b",\"language\":");
            put_i32(out, i32::from(cmd.language.code()));
            out.put_slice(b",\"opaque\":");
        }
    }
    put_i32(out, cmd.opaque);
    match &cmd.remark {
        Some(remark) => {
            out.put_slice(b",\"remark\":\"");
            put_escaped(out, remark);
            out.put_slice(b"\",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":");
        }
        None => out.put_slice(b",\"serializeTypeCurrentRPC\":\"JSON\",\"version\":"),
    }
    put_i32(out, cmd.version);
    out.put_u8(b'}');
}

/// Why a JSON header was rejected. Offsets count bytes of the header text (after invalid UTF-8
/// was replaced). Any of these means the peer is broken: close the connection.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JsonHeaderError {
    #[error("expected {expected} at byte {offset}")]
    Syntax {
        offset: usize,
        expected: &'static str,
    },
    #[error("member `{member}` has the wrong JSON type at byte {offset}")]
    WrongType { member: &'static str, offset: usize },
    #[error("member `{member}` is not a 32-bit integer at byte {offset}")]
    NotAnI32 { member: &'static str, offset: usize },
    #[error("invalid string escape at byte {offset}")]
    InvalidEscape { offset: usize },
    #[error("values nested deeper than {max} levels at byte {offset}")]
    TooDeep { offset: usize, max: usize },
    #[error("unexpected bytes after the header object at byte {offset}")]
    TrailingBytes { offset: usize },
}

type ScanResult<T> = Result<T, JsonHeaderError>;

/// A cursor over the header text. Every read goes through `get`, so no input can index out of
/// bounds; `pos` only ever advances past bytes that were seen.
struct Scanner<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Scanner<'a> {
        Scanner { text, pos: 0 }
    }

    fn command(&mut self) -> ScanResult<RemotingCommand> {
        let mut cmd = RemotingCommand {
            code: 0,
            language: LanguageCode::Java,
            version: 0,
            opaque: 0,
            flag: 0,
            remark: None,
            ext_fields: None,
            body: bytes::Bytes::new(),
        };
        if self.text.as_bytes().starts_with(UTF8_BOM) {
            self.pos = UTF8_BOM.len();
        }
        self.skip_ws();
        self.expect(b'{', "`{` opening the header")?;
        self.skip_ws();
        if !self.eat(b'}') {
            loop {
                self.skip_ws();
                let key = self.string()?;
                self.skip_ws();
                self.expect(b':', "`:` after a member name")?;
                self.skip_ws();
                self.member(&key, &mut cmd)?;
                if self.after_member()? {
                    break;
                }
            }
        }
        self.skip_ws();
        if self.pos != self.text.len() {
            return Err(JsonHeaderError::TrailingBytes { offset: self.pos });
        }
        Ok(cmd)
    }

    /// Reads the value of the header member `key` into `cmd`.
    fn member(&mut self, key: &str, cmd: &mut RemotingCommand) -> ScanResult<()> {
        match key {
            "code" => self.i32_member("code", &mut cmd.code),
            "flag" => self.i32_member("flag", &mut cmd.flag),
            "opaque" => self.i32_member("opaque", &mut cmd.opaque),
            "version" => self.i32_member("version", &mut cmd.version),
            "language" => {
                cmd.language = self.language()?;
                Ok(())
            }
            "remark" => {
                let mut remark = String::new();
                cmd.remark = self.scalar_into("remark", &mut remark)?.then_some(remark);
                Ok(())
            }
            "extFields" => {
                cmd.ext_fields = self.ext_fields()?;
                Ok(())
            }
            _ => self.skip_value(0),
        }
    }

    /// Consumes the `,` or `}` after an object member; true at the end of the object.
    fn after_member(&mut self) -> ScanResult<bool> {
        self.skip_ws();
        match self.next_byte() {
            Some(b'}') => Ok(true),
            Some(b',') => {
                self.skip_ws();
                Ok(self.eat(b'}'))
            }
            _ => Err(self.syntax_before("`,` or `}` after a member")),
        }
    }

    /// An int member: a number, a string holding one, or null (keeps the default).
    fn i32_member(&mut self, member: &'static str, slot: &mut i32) -> ScanResult<()> {
        let offset = self.pos;
        let parsed = match self.peek() {
            Some(b'"') => self.string()?.trim().parse::<i32>().ok(),
            Some(b'-' | b'0'..=b'9') => self.number()?.parse::<i32>().ok(),
            Some(b'n') => {
                self.literal(b"null")?;
                return Ok(());
            }
            Some(b'{' | b'[' | b't' | b'f') => {
                return Err(JsonHeaderError::WrongType { member, offset })
            }
            _ => return Err(self.syntax("a value")),
        };
        *slot = parsed.ok_or(JsonHeaderError::NotAnI32 { member, offset })?;
        Ok(())
    }

    fn language(&mut self) -> ScanResult<LanguageCode> {
        let offset = self.pos;
        match self.peek() {
            Some(b'"') => Ok(LanguageCode::from_name(&self.string()?)),
            Some(b'-' | b'0'..=b'9') => {
                let number = self.number()?;
                Ok(number
                    .parse::<u8>()
                    .map_or(LanguageCode::Other, LanguageCode::from_code))
            }
            Some(b'n') => {
                self.literal(b"null")?;
                Ok(LanguageCode::Other)
            }
            Some(b'{' | b'[' | b't' | b'f') => Err(JsonHeaderError::WrongType {
                member: "language",
                offset,
            }),
            _ => Err(self.syntax("a value")),
        }
    }

    /// `null`, or an object of scalar values.
    ///
    /// Keys and values are unescaped straight into the map's one text buffer, which is
    /// reserved up front: the rest of the header bounds the object's text, as unescaping only
    /// shrinks text.
    fn ext_fields(&mut self) -> ScanResult<Option<ExtFields>> {
        match self.peek() {
            Some(b'n') => {
                self.literal(b"null")?;
                return Ok(None);
            }
            Some(b'{') => self.pos += 1,
            Some(_) => {
                return Err(JsonHeaderError::WrongType {
                    member: "extFields",
                    offset: self.pos,
                })
            }
            None => return Err(self.syntax("a value")),
        }
        let rest_len = self.text.len().saturating_sub(self.pos);
        let mut fields =
            ExtFields::with_capacities(EXT_ENTRIES_TYPICAL, rest_len.min(EXT_TEXT_RESERVE_MAX));
        self.skip_ws();
        if !self.eat(b'}') {
            loop {
                self.skip_ws();
                let text = fields.pending_text();
                match self.peek() {
                    Some(b'-' | b'0'..=b'9') => text.push_str(self.number()?),
                    _ => self.string_into(text)?,
                }
                let key_end = text.len();
                self.skip_ws();
                self.expect(b':', "`:` after an extFields key")?;
                self.skip_ws();
                match self.scalar_into("extFields", fields.pending_text())? {
                    true => fields.commit_pending(key_end),
                    false => fields.discard_pending(),
                }
                if self.after_member()? {
                    break;
                }
            }
        }
        fields.dedupe();
        Ok(Some(fields))
    }

    /// Appends a string, number (as written) or boolean (`true`/`false`) to `out`; false,
    /// appending nothing, for null.
    fn scalar_into(&mut self, member: &'static str, out: &mut String) -> ScanResult<bool> {
        match self.peek() {
            Some(b'"') => self.string_into(out)?,
            Some(b'-' | b'0'..=b'9') => out.push_str(self.number()?),
            Some(b't') => {
                self.literal(b"true")?;
                out.push_str("true");
            }
            Some(b'f') => {
                self.literal(b"false")?;
                out.push_str("false");
            }
            Some(b'n') => {
                self.literal(b"null")?;
                return Ok(false);
            }
            Some(b'{' | b'[') => {
                return Err(JsonHeaderError::WrongType {
                    member,
                    offset: self.pos,
                })
            }
            _ => return Err(self.syntax("a value")),
        }
        Ok(true)
    }

    /// Skips one value of any shape, checking its syntax. `depth` bounds the recursion so a
    /// header of nested brackets cannot exhaust the stack.
    fn skip_value(&mut self, depth: usize) -> ScanResult<()> {
        if depth >= DEPTH_MAX {
            return Err(JsonHeaderError::TooDeep {
                offset: self.pos,
                max: DEPTH_MAX,
            });
        }
        match self.peek() {
            Some(b'"') => self.string().map(drop),
            Some(b'-' | b'0'..=b'9') => self.number().map(drop),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'[') => {
                self.pos += 1;
                self.skip_ws();
                if self.eat(b']') {
                    return Ok(());
                }
                loop {
                    self.skip_ws();
                    self.skip_value(depth + 1)?;
                    self.skip_ws();
                    match self.next_byte() {
                        Some(b']') => return Ok(()),
                        Some(b',') => {}
                        _ => return Err(self.syntax_before("`,` or `]` in an array")),
                    }
                }
            }
            Some(b'{') => {
                self.pos += 1;
                self.skip_ws();
                if self.eat(b'}') {
                    return Ok(());
                }
                loop {
                    self.skip_ws();
                    self.string()?;
                    self.skip_ws();
                    self.expect(b':', "`:` after a member name")?;
                    self.skip_ws();
                    self.skip_value(depth + 1)?;
                    if self.after_member()? {
                        return Ok(());
                    }
                }
            }
            _ => Err(self.syntax("a value")),
        }
    }

    /// A quoted string. Borrowed from the input unless it holds escapes.
    fn string(&mut self) -> ScanResult<Cow<'a, str>> {
        let (prefix, closed) = self.string_head()?;
        if closed {
            return Ok(Cow::Borrowed(prefix));
        }
        let mut owned = String::new();
        self.escaped_string_into(prefix, &mut owned)?;
        Ok(Cow::Owned(owned))
    }

    /// A quoted string, unescaped onto the end of `out`.
    fn string_into(&mut self, out: &mut String) -> ScanResult<()> {
        match self.string_head()? {
            (whole, true) => {
                out.push_str(whole);
                Ok(())
            }
            (prefix, false) => self.escaped_string_into(prefix, out),
        }
    }

    /// Reads a string's opening quote and its text up to the first quote or backslash; true
    /// if that was the closing quote (consumed), false if it is a backslash (not consumed).
    fn string_head(&mut self) -> ScanResult<(&'a str, bool)> {
        self.expect(b'"', "`\"` opening a string")?;
        let start = self.pos;
        let bytes = self.text.as_bytes();
        let rest = bytes.get(start..).unwrap_or_default();
        let Some(stop) = find_quote_or_backslash(rest) else {
            self.pos = self.text.len();
            return Err(self.syntax("`\"` closing a string"));
        };
        let end = start + stop;
        // `start` follows a quote and `end` is at a quote or backslash: both are ASCII, so
        // both are character boundaries.
        let prefix = self.str_between(start, end)?;
        self.pos = end;
        Ok((prefix, self.eat(b'"')))
    }

    /// Appends `prefix` and the rest of the string, which starts at a backslash.
    fn escaped_string_into(&mut self, prefix: &str, out: &mut String) -> ScanResult<()> {
        out.push_str(prefix);
        self.string_tail(out)
    }

    /// Continues a string at a backslash, unescaping into `out` up to the closing quote.
    fn string_tail(&mut self, out: &mut String) -> ScanResult<()> {
        loop {
            let run_start = self.pos;
            let bytes = self.text.as_bytes();
            let rest = bytes.get(run_start..).unwrap_or_default();
            let Some(stop) = find_quote_or_backslash(rest) else {
                self.pos = self.text.len();
                return Err(self.syntax("`\"` closing a string"));
            };
            out.push_str(self.str_between(run_start, run_start + stop)?);
            self.pos = run_start + stop;
            match self.next_byte() {
                Some(b'"') => return Ok(()),
                _ => self.escape(out)?,
            }
        }
    }

    /// Decodes the escape after a backslash. A lone UTF-16 surrogate (which Java strings may
    /// hold) becomes U+FFFD rather than an error.
    fn escape(&mut self, out: &mut String) -> ScanResult<()> {
        let offset = self.pos.saturating_sub(1);
        let plain = match self.next_byte() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => {
                let unit = self
                    .hex4()
                    .ok_or(JsonHeaderError::InvalidEscape { offset })?;
                out.push(self.utf16_char(unit));
                return Ok(());
            }
            _ => return Err(JsonHeaderError::InvalidEscape { offset }),
        };
        out.push(plain);
        Ok(())
    }

    /// Completes a `\u` escape whose first unit is `unit`, joining a surrogate pair.
    fn utf16_char(&mut self, unit: u16) -> char {
        if (0xD800..0xDC00).contains(&unit) {
            let bytes = self.text.as_bytes();
            if bytes.get(self.pos..self.pos + 2) == Some(b"\\u") {
                let saved = self.pos;
                self.pos += 2;
                match self.hex4() {
                    Some(low @ 0xDC00..=0xDFFF) => {
                        let high = u32::from(unit - 0xD800);
                        let low = u32::from(low - 0xDC00);
                        let scalar = 0x10000 + (high << 10) + low;
                        return char::from_u32(scalar).unwrap_or(char::REPLACEMENT_CHARACTER);
                    }
                    // Not a low surrogate: leave that escape to be read on its own.
                    _ => self.pos = saved,
                }
            }
        }
        char::from_u32(u32::from(unit)).unwrap_or(char::REPLACEMENT_CHARACTER)
    }

    /// Four hex digits after `\\u`. Read as bytes: any non-ASCII byte fails the digit test,
    /// so `pos` still lands on a character boundary.
    fn hex4(&mut self) -> Option<u16> {
        let digits = self.text.as_bytes().get(self.pos..self.pos + 4)?;
        let mut unit = 0u16;
        for &b in digits {
            let nibble = char::from(b).to_digit(16)?;
            unit = (unit << 4) | nibble as u16;
        }
        self.pos += 4;
        Some(unit)
    }

    /// A JSON number, returned as written: `-?digits(.digits)?([eE][+-]?digits)?`. Leading
    /// zeros are tolerated, as fastjson tolerates them.
    fn number(&mut self) -> ScanResult<&'a str> {
        let start = self.pos;
        self.eat(b'-');
        self.digits("a digit")?;
        if self.eat(b'.') {
            self.digits("a digit after `.`")?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            self.digits("a digit in the exponent")?;
        }
        self.str_between(start, self.pos)
    }

    fn digits(&mut self, expected: &'static str) -> ScanResult<()> {
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(self.syntax(expected));
        }
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> ScanResult<()> {
        let bytes = self.text.as_bytes();
        if bytes.get(self.pos..self.pos + word.len()) != Some(word) {
            return Err(self.syntax("`true`, `false` or `null`"));
        }
        self.pos += word.len();
        Ok(())
    }

    fn str_between(&self, start: usize, end: usize) -> ScanResult<&'a str> {
        self.text.get(start..end).ok_or(JsonHeaderError::Syntax {
            offset: start,
            expected: "text on character boundaries",
        })
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn next_byte(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.pos += 1;
        Some(byte)
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.pos += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8, expected: &'static str) -> ScanResult<()> {
        if self.eat(byte) {
            Ok(())
        } else {
            Err(self.syntax(expected))
        }
    }

    fn syntax(&self, expected: &'static str) -> JsonHeaderError {
        JsonHeaderError::Syntax {
            offset: self.pos,
            expected,
        }
    }

    /// A syntax error about the byte just consumed.
    fn syntax_before(&self, expected: &'static str) -> JsonHeaderError {
        JsonHeaderError::Syntax {
            offset: self.pos.saturating_sub(1),
            expected,
        }
    }
}

/// Index of the first `"` or `\\` in `bytes` (where a string being read stops).
fn find_quote_or_backslash(bytes: &[u8]) -> Option<usize> {
    find_special::<false>(bytes)
}

/// Index of the first byte a JSON string must escape: `"`, `\\` or a control character below
/// 0x20 (where a string being written stops copying).
fn find_escaped(bytes: &[u8]) -> Option<usize> {
    find_special::<true>(bytes)
}

/// Index of the first `"` or `\\` (and, with `CONTROLS`, byte below 0x20) in `bytes`. Strings
/// are most of a header, so this looks at eight bytes per step: the "has zero byte" trick on
/// the word xor-ed with each target, and `word - 0x20` for control characters.
fn find_special<const CONTROLS: bool>(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut chunks = bytes.chunks_exact(8);
    let mut offset = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let word = u64::from_le_bytes(word);
        let quotes = word ^ (ONES * u64::from(b'"'));
        let slashes = word ^ (ONES * u64::from(b'\\'));
        // A byte's high bit is set at each zero byte (and, for `word - 0x20`, at each byte
        // below 0x20; bytes with the high bit set are excluded by `!word`). A borrow can only
        // mark bytes above a true match, so the lowest mark (the first byte in memory) is real.
        let mut marks =
            (quotes.wrapping_sub(ONES) & !quotes) | (slashes.wrapping_sub(ONES) & !slashes);
        if CONTROLS {
            marks |= word.wrapping_sub(ONES * 0x20) & !word;
        }
        let marks = marks & HIGHS;
        if marks != 0 {
            return Some(offset + (marks.trailing_zeros() / 8) as usize);
        }
        offset += 8;
    }
    let tail = chunks.remainder();
    tail.iter()
        .position(|&b| b == b'"' || b == b'\\' || (CONTROLS && b < 0x20))
        .map(|i| offset + i)
}

/// Appends the inside of `s` as a JSON string (the caller writes the quotes): quotes,
/// backslashes and control characters escaped, everything else (non-ASCII included) written as
/// UTF-8, as fastjson does by default. Runs that need no escape (all of a typical value) are
/// copied whole.
fn put_escaped(out: &mut BytesMut, s: &str) {
    let mut rest = s.as_bytes();
    while let Some(at) = find_escaped(rest) {
        let (run, from_special) = rest.split_at(at);
        out.put_slice(run);
        let Some((&b, after)) = from_special.split_first() else {
            break;
        };
        let short = match b {
            b'"' => b'"',
            b'\\' => b'\\',
            b'\n' => b'n',
            b'\r' => b'r',
            b'\t' => b't',
            0x08 => b'b',
            0x0C => b'f',
            _ => 0,
        };
        if short == 0 {
            out.put_slice(b"\\u00");
            out.put_u8(HEX_DIGITS[usize::from(b >> 4)]);
            out.put_u8(HEX_DIGITS[usize::from(b & 0xF)]);
        } else {
            out.put_u8(b'\\');
            out.put_u8(short);
        }
        rest = after;
    }
    out.put_slice(rest);
}

/// Appends `n` in decimal without going through `fmt`, which is several times slower here.
fn put_i32(out: &mut BytesMut, n: i32) {
    out.put_slice(Decimal::new(i64::from(n)).as_bytes());
}

/// Enough for the fixed members plus the strings, so encoding reallocates at most once.
fn encoded_len_estimate(cmd: &RemotingCommand) -> usize {
    let remark = cmd.remark.as_ref().map_or(0, |r| r.len() + 12);
    let fields = cmd
        .ext_fields
        .as_ref()
        .map_or(0, |f| 14 + f.text_len() + f.len() * 6);
    FIXED_MEMBERS_LEN + remark + fields
}

/// `{"code":…,"flag":…,"language":…,"opaque":…,"serializeTypeCurrentRPC":"JSON","version":…}`
/// with every number at its widest.
const FIXED_MEMBERS_LEN: usize = 130;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";
const HEX_DIGITS: &[u8; 16] = b"0123456789ABCDEF";
/// Headers are flat; unknown members nest at most a level or two in practice.
const DEPTH_MAX: usize = 64;
/// The most text an extFields object reserves before reading it. Real headers are well under
/// it; a larger object (only a hostile peer sends one) grows as it is read, so a huge header
/// whose bulk is elsewhere does not cost a second copy of itself.
const EXT_TEXT_RESERVE_MAX: usize = 4096;

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::codec::command::ExtFields;
    use proptest::prelude::*;

    fn encoded(cmd: &RemotingCommand) -> String {
        let mut out = BytesMut::new();
        encode(cmd, &mut out);
        String::from_utf8(out.to_vec()).expect("the encoder writes UTF-8")
    }

    #[test]
    fn reads_a_java_request() {
        let text = br#"{"code":105,"extFields":{"topic":"TopicTest"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":479}"#;
        let cmd = decode(text).expect("valid header");
        assert_eq!(cmd.code, 105);
        assert_eq!(cmd.language, LanguageCode::Java);
        assert_eq!(cmd.opaque, 7);
        assert_eq!(cmd.version, 479);
        assert_eq!(cmd.flag, 0);
        assert_eq!(cmd.remark, None);
        assert_eq!(cmd.ext("topic"), Some("TopicTest"));
    }

    #[test]
    fn writes_like_fastjson() {
        let text = r#"{"code":105,"extFields":{"topic":"TopicTest"},"flag":0,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":479}"#;
        let cmd = decode(text.as_bytes()).expect("valid header");
        assert_eq!(encoded(&cmd), text);
        let response = r#"{"code":0,"flag":1,"language":"JAVA","opaque":7,"serializeTypeCurrentRPC":"JSON","version":479}"#;
        let cmd = decode(response.as_bytes()).expect("valid header");
        assert_eq!(encoded(&cmd), response);
        // Every optional part, escapes, an empty map and a language with no name.
        let full = r#"{"code":-2,"extFields":{"a\"":"\u0001\n","b":""},"flag":3,"language":99,"opaque":-7,"remark":"r\\","serializeTypeCurrentRPC":"JSON","version":0}"#;
        let cmd = decode(full.as_bytes()).expect("valid header");
        assert_eq!(encoded(&cmd), full);
        let empty = r#"{"code":1,"extFields":{},"flag":0,"language":"RUST","opaque":0,"remark":"","serializeTypeCurrentRPC":"JSON","version":1}"#;
        let cmd = decode(empty.as_bytes()).expect("valid header");
        assert_eq!(encoded(&cmd), empty);
    }

    #[test]
    fn reads_the_cpp_client_quirks() {
        let text = b"{\"code\":10,\"extFields\":{\"AccessKey\":\"\",\"queueId\":3,\"sysFlag\":0,\"neg\":-12,\"big\":12345678901234567890,\"frac\":1.50,\"exp\":2E+3,\"ok\":true,\"no\":false,\"gone\":null,\"batch\":\"0\"},\"flag\":0,\"language\":\"CPP\",\"opaque\":4,\"remark\":\"\",\"version\":63}\n";
        let cmd = decode(text).expect("valid header");
        assert_eq!(cmd.language, LanguageCode::Cpp);
        assert_eq!(cmd.remark.as_deref(), Some(""));
        assert_eq!(cmd.ext("AccessKey"), Some(""));
        assert_eq!(cmd.ext("queueId"), Some("3"));
        assert_eq!(cmd.ext("sysFlag"), Some("0"));
        assert_eq!(cmd.ext("neg"), Some("-12"));
        assert_eq!(cmd.ext("big"), Some("12345678901234567890"));
        assert_eq!(cmd.ext("frac"), Some("1.50"));
        assert_eq!(cmd.ext("exp"), Some("2E+3"));
        assert_eq!(cmd.ext("ok"), Some("true"));
        assert_eq!(cmd.ext("no"), Some("false"));
        assert_eq!(cmd.ext("gone"), None);
        assert_eq!(cmd.ext("batch"), Some("0"));
        assert_eq!(cmd.ext_fields.as_ref().map(ExtFields::len), Some(10));
    }

    #[test]
    fn missing_members_take_java_defaults() {
        let cmd = decode(b"{}").expect("valid header");
        assert_eq!(cmd.code, 0);
        assert_eq!(cmd.language, LanguageCode::Java);
        assert_eq!((cmd.version, cmd.opaque, cmd.flag), (0, 0, 0));
        assert_eq!(cmd.remark, None);
        assert_eq!(cmd.ext_fields, None);
        let cmd = decode(br#" {"code":17,"remark":null,"extFields":null} "#).expect("valid");
        assert_eq!(cmd.code, 17);
        assert_eq!(cmd.remark, None);
        assert_eq!(cmd.ext_fields, None);
        let cmd = decode(br#"{"extFields":{}}"#).expect("valid header");
        assert_eq!(cmd.ext_fields, Some(ExtFields::new()));
    }

    #[test]
    fn language_by_name_number_or_unknown() {
        let lang = |text: &str| decode(text.as_bytes()).map(|c| c.language);
        assert_eq!(lang(r#"{"language":"RUST"}"#), Ok(LanguageCode::Rust));
        assert_eq!(lang(r#"{"language":9}"#), Ok(LanguageCode::Go));
        assert_eq!(lang(r#"{"language":200}"#), Ok(LanguageCode::Unknown(200)));
        assert_eq!(lang(r#"{"language":"COBOL"}"#), Ok(LanguageCode::Other));
        assert_eq!(lang(r#"{"language":-1}"#), Ok(LanguageCode::Other));
        assert_eq!(lang(r#"{"language":null}"#), Ok(LanguageCode::Other));
        let cmd = RemotingCommand {
            language: LanguageCode::Unknown(200),
            ..RemotingCommand::request(1, 2)
        };
        assert!(encoded(&cmd).contains(r#""language":200,"#));
    }

    #[test]
    fn skips_unknown_members_of_any_shape() {
        let text = br#"{"x":{"a":[1,2.5e-3,{"b":null}],"c":"\u00e9"},"code":5,"y":[],"z":true,"suspended":false,}"#;
        assert_eq!(decode(text).map(|c| c.code), Ok(5));
    }

    #[test]
    fn numbers_in_strings_and_nulls_are_coerced() {
        let cmd = decode(br#"{"code":"310","flag":null,"opaque":-5}"#).expect("valid header");
        assert_eq!((cmd.code, cmd.flag, cmd.opaque), (310, 0, -5));
    }

    #[test]
    fn unescapes_strings() {
        let text =
            br#"{"remark":"a\"b\\c\/d\n\u00e9\ud83d\ude00\ud800x","extFields":{"k\u0041":"v"}}"#;
        let cmd = decode(text).expect("valid header");
        assert_eq!(cmd.remark.as_deref(), Some("a\"b\\c/d\né😀\u{FFFD}x"));
        assert_eq!(cmd.ext("kA"), Some("v"));
    }

    #[test]
    fn bare_number_keys_are_text() {
        let cmd = decode(br#"{"extFields":{0:"a",12:"b"}}"#).expect("valid header");
        assert_eq!(cmd.ext("0"), Some("a"));
        assert_eq!(cmd.ext("12"), Some("b"));
    }

    #[test]
    fn rejects_broken_headers() {
        let err = |text: &[u8]| decode(text).err();
        assert!(matches!(
            err(b""),
            Some(JsonHeaderError::Syntax { offset: 0, .. })
        ));
        assert!(matches!(err(b"[]"), Some(JsonHeaderError::Syntax { .. })));
        assert!(matches!(
            err(b"{\"code\":1"),
            Some(JsonHeaderError::Syntax { .. })
        ));
        assert!(matches!(
            err(b"{\"code\":1}x"),
            Some(JsonHeaderError::TrailingBytes { offset: 10 })
        ));
        assert!(matches!(
            err(b"{\"code\":1.5}"),
            Some(JsonHeaderError::NotAnI32 { member: "code", .. })
        ));
        assert!(matches!(
            err(b"{\"code\":2147483648}"),
            Some(JsonHeaderError::NotAnI32 { .. })
        ));
        assert!(matches!(
            err(b"{\"code\":true}"),
            Some(JsonHeaderError::WrongType { member: "code", .. })
        ));
        assert!(matches!(
            err(b"{\"extFields\":[]}"),
            Some(JsonHeaderError::WrongType {
                member: "extFields",
                ..
            })
        ));
        assert!(matches!(
            err(b"{\"extFields\":{\"a\":{}}}"),
            Some(JsonHeaderError::WrongType {
                member: "extFields",
                ..
            })
        ));
        assert!(matches!(
            err(b"{\"remark\":\"\\x\"}"),
            Some(JsonHeaderError::InvalidEscape { .. })
        ));
        assert!(matches!(
            err(b"{\"remark\":\"\\u12\"}"),
            Some(JsonHeaderError::InvalidEscape { .. })
        ));
        assert!(matches!(
            err(b"{\"remark\":\"abc"),
            Some(JsonHeaderError::Syntax { .. })
        ));
        assert!(matches!(
            err(b"{\"a\":-}"),
            Some(JsonHeaderError::Syntax { .. })
        ));
        assert!(matches!(
            err(b"{\"a\":tru}"),
            Some(JsonHeaderError::Syntax { .. })
        ));
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert!(matches!(
            err(deep.as_bytes()),
            Some(JsonHeaderError::TooDeep { .. })
        ));
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        let cmd = decode(b"{\"remark\":\"a\xFFb\"}").expect("valid header");
        assert_eq!(cmd.remark.as_deref(), Some("a\u{FFFD}b"));
    }

    #[test]
    fn escapes_control_characters() {
        let mut cmd = RemotingCommand::request(1, 1);
        cmd.remark = Some("q\"b\\n\n\u{1}\u{7f}é".to_string());
        let text = encoded(&cmd);
        assert!(text.contains(r#""remark":"q\"b\\n\n\u0001"#), "{text}");
        assert_eq!(decode(text.as_bytes()).map(|c| c.remark), Ok(cmd.remark));
    }

    #[test]
    fn finds_the_first_quote_or_backslash() {
        let naive = |b: &[u8]| b.iter().position(|&c| c == b'"' || c == b'\\');
        let mut text = vec![b'a'; 40];
        assert_eq!(find_quote_or_backslash(&text), None);
        for at in 0..40 {
            for stop in [b'"', b'\\'] {
                text[at] = stop;
                // Also a later match and a byte one above the target, to trip borrows.
                text[(at + 3) % 40] = b'"' + 1;
                assert_eq!(find_quote_or_backslash(&text), naive(&text), "at {at}");
                assert_eq!(find_quote_or_backslash(&text[1..]), naive(&text[1..]));
                text[at] = b'a';
                text[(at + 3) % 40] = b'a';
            }
        }
    }

    proptest! {
        #[test]
        fn find_matches_a_plain_scan(bytes in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'\\'), Just(b'#'), Just(b']'), Just(0u8), any::<u8>()],
            0..40,
        )) {
            let naive = bytes.iter().position(|&c| c == b'"' || c == b'\\');
            prop_assert_eq!(find_quote_or_backslash(&bytes), naive);
        }

        #[test]
        fn find_escaped_matches_a_plain_scan(bytes in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(b'\\'), Just(0x1F), Just(b' '), Just(0x7F), Just(0xA0),
                        any::<u8>()],
            0..40,
        )) {
            let naive = bytes.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            prop_assert_eq!(find_escaped(&bytes), naive);
        }

        /// Every string comes out as JSON that reads back the same, with no raw control byte
        /// and the escapes fastjson writes (upper-case `\\u00XX` for the unnamed ones).
        #[test]
        fn strings_are_written_as_json(text in "(\\PC|[\"\\\\\u{0}-\u{1f}\u{7f}é])*") {
            let mut out = BytesMut::from(&b"\""[..]);
            put_escaped(&mut out, &text);
            out.put_u8(b'"');
            prop_assert!(out.iter().all(|&b| b >= 0x20));
            let back: String = serde_json::from_slice(&out).expect("valid JSON string");
            prop_assert_eq!(&back, &text);
            let mut want = String::from("\"");
            for c in text.chars() {
                match c {
                    '"' => want.push_str("\\\""),
                    '\\' => want.push_str("\\\\"),
                    '\n' => want.push_str("\\n"),
                    '\r' => want.push_str("\\r"),
                    '\t' => want.push_str("\\t"),
                    '\u{8}' => want.push_str("\\b"),
                    '\u{c}' => want.push_str("\\f"),
                    c if (c as u32) < 0x20 => want.push_str(&format!("\\u{:04X}", c as u32)),
                    c => want.push(c),
                }
            }
            want.push('"');
            prop_assert_eq!(std::str::from_utf8(&out).expect("UTF-8"), want.as_str());
        }
    }

    #[test]
    fn unicode_escapes_take_either_case() {
        let cmd = decode(br#"{"remark":"\u00e9\u00C9\u0001\uD83D\ude00"}"#).expect("valid");
        assert_eq!(cmd.remark.as_deref(), Some("\u{e9}\u{c9}\u{1}\u{1F600}"));
        for bad in [
            &br#"{"remark":"\u00g1"}"#[..],
            br#"{"remark":"\u+0A1"}"#,
            "{\"remark\":\"\\u0é\"}".as_bytes(),
        ] {
            assert!(
                matches!(
                    decode(bad),
                    Err(JsonHeaderError::InvalidEscape { offset: 11 })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn integers_are_written_in_full() {
        for n in [0, 7, -1, 479, i32::MIN, i32::MAX] {
            let mut out = BytesMut::new();
            put_i32(&mut out, n);
            assert_eq!(out.as_ref(), n.to_string().as_bytes());
        }
    }

    pub(crate) fn arb_command() -> impl Strategy<Value = RemotingCommand> {
        let fields = proptest::collection::vec((any::<String>(), any::<String>()), 0..8)
            .prop_map(|entries| entries.into_iter().collect::<ExtFields>());
        (
            any::<i32>(),
            any::<u8>().prop_map(LanguageCode::from_code),
            any::<i32>(),
            any::<i32>(),
            any::<i32>(),
            proptest::option::of(any::<String>()),
            proptest::option::of(fields),
        )
            .prop_map(
                |(code, language, version, opaque, flag, remark, ext_fields)| RemotingCommand {
                    code,
                    language,
                    version,
                    opaque,
                    flag,
                    remark,
                    ext_fields,
                    body: bytes::Bytes::new(),
                },
            )
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_identity(cmd in arb_command()) {
            let text = encoded(&cmd);
            prop_assert_eq!(decode(text.as_bytes()), Ok(cmd));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn mangled_headers_never_panic(
            cmd in arb_command(),
            cut in any::<prop::sample::Index>(),
            byte in any::<u8>(),
        ) {
            let mut bytes = encoded(&cmd).into_bytes();
            let at = cut.index(bytes.len());
            bytes[at] = byte;
            let _ = decode(&bytes);
            let _ = decode(&bytes[..at]);
        }
    }
}
