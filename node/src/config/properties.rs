//! Java `.properties` text, as RocketMQ reads `broker.conf`: `key=value`, `key: value` or
//! `key value`; `#` and `!` comments; a trailing `\` continues the line; `\t \n \r \f \uXXXX` and
//! escaped separators in keys and values.

/// Parses properties text into (key, value) pairs in file order; later duplicates win when
/// applied in order, as with `Properties.load`.
pub fn parse_properties(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_start();
        if logical.is_empty() && (line.is_empty() || line.starts_with('#') || line.starts_with('!'))
        {
            continue;
        }
        if ends_with_odd_backslashes(line) {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        if let Some(pair) = split_pair(&logical) {
            pairs.push(pair);
        }
        logical.clear();
    }
    if !logical.is_empty() {
        if let Some(pair) = split_pair(&logical) {
            pairs.push(pair);
        }
    }
    pairs
}

fn ends_with_odd_backslashes(line: &str) -> bool {
    line.bytes().rev().take_while(|b| *b == b'\\').count() % 2 == 1
}

/// Splits at the first unescaped `=`, `:` or whitespace, then unescapes both sides.
fn split_pair(line: &str) -> Option<(String, String)> {
    let mut escaped = false;
    let mut split = None;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c.is_whitespace() {
            split = Some((i, c));
            break;
        }
    }
    let (key, rest) = match split {
        None => (line, ""),
        Some((i, c)) => {
            let mut rest = line[i + c.len_utf8()..].trim_start();
            // `key = value`: whitespace, then one optional separator.
            if c.is_whitespace() {
                if let Some(r) = rest.strip_prefix(['=', ':']) {
                    rest = r.trim_start();
                }
            }
            (&line[..i], rest)
        }
    };
    let key = unescape(key);
    if key.is_empty() {
        return None;
    }
    Some((key, unescape(rest).trim_end().to_string()))
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    Some(ch) => out.push(ch),
                    None => out.push_str(&hex),
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_properties_forms() {
        let text = "# comment\n! also\nbrokerName = broker-a\nlistenPort:10911\nflag true\n\
                    long = a\\\n    b\nkey\\=x = v\\u0041\n\n  spaced  =  v  \n";
        let pairs = parse_properties(text);
        let expect = [
            ("brokerName", "broker-a"),
            ("listenPort", "10911"),
            ("flag", "true"),
            ("long", "ab"),
            ("key=x", "vA"),
            ("spaced", "v"),
        ];
        assert_eq!(pairs.len(), expect.len(), "{pairs:?}");
        for ((k, v), (ek, ev)) in pairs.iter().zip(expect) {
            assert_eq!((k.as_str(), v.as_str()), (ek, ev));
        }
    }
}
