//! Tokens of RocketMQ's SQL92 selector language, recognised with nom one at a time.
//!
//! The token set and its rules are those of the JavaCC grammar (`SelectorParser.jj`): keywords
//! and identifiers ignore case, a keyword wins only when the whole word is one (`andy` is a
//! property), `0` is a decimal literal on its own (`007` is three tokens), strings are quoted
//! with `'` and double a quote to escape it, `--` comments need their line end and `/* */`
//! comments their closing mark. Of the candidate tokens at a position the longest one wins, as
//! in any JavaCC lexer.
//!
//! Tokens are produced lazily, as Java's token manager does: a character no token can start
//! with is an error only once the parser asks for the token there. The parser relies on that
//! to accept, as Java does, an expression followed by text it never reads.
//!
//! What it leaves out: the `IGNORE_CASE` quirks JavaCC has for non-ASCII letters (identifiers
//! here are ASCII, as the grammar's character classes are written).

use nom::branch::alt;
use nom::bytes::complete::{tag, take_until, take_while};
use nom::character::complete::{digit0, digit1, none_of, one_of, satisfy};
use nom::combinator::opt;
use nom::multi::many0;
use nom::{IResult, Parser};

/// One token, borrowing from the expression text where it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token<'a> {
    Not,
    And,
    Or,
    Between,
    In,
    True,
    False,
    Null,
    Is,
    Contains,
    StartsWith,
    EndsWith,
    /// `0`, or `[1-9][0-9]*` with an optional `l`/`L`; the text as written.
    Decimal(&'a str),
    /// `1.`, `1.5`, `.5`, `1e5` with optional exponent; the text as written.
    Float(&'a str),
    /// A string literal with its quotes removed and `''` turned into `'`.
    Str(String),
    /// A property name.
    Id(&'a str),
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    LParen,
    RParen,
    Comma,
    Plus,
    Minus,
    /// The end of the text.
    End,
}

impl std::fmt::Display for Token<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = match self {
            Token::Decimal(text) | Token::Float(text) | Token::Id(text) => text,
            Token::Str(s) => return write!(f, "'{}'", s.replace('\'', "''")),
            Token::Not => "NOT",
            Token::And => "AND",
            Token::Or => "OR",
            Token::Between => "BETWEEN",
            Token::In => "IN",
            Token::True => "TRUE",
            Token::False => "FALSE",
            Token::Null => "NULL",
            Token::Is => "IS",
            Token::Contains => "CONTAINS",
            Token::StartsWith => "STARTSWITH",
            Token::EndsWith => "ENDSWITH",
            Token::Eq => "'='",
            Token::Ne => "'<>'",
            Token::Gt => "'>'",
            Token::Ge => "'>='",
            Token::Lt => "'<'",
            Token::Le => "'<='",
            Token::LParen => "'('",
            Token::RParen => "')'",
            Token::Comma => "','",
            Token::Plus => "'+'",
            Token::Minus => "'-'",
            Token::End => "the end of the expression",
        };
        f.write_str(text)
    }
}

/// A character at which no token (nor space or comment) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LexError {
    /// Byte offset into the expression.
    pub offset: usize,
    /// The character found there.
    pub found: char,
}

/// Hands out the tokens of one expression in order.
#[derive(Debug, Clone)]
pub struct Lexer<'a> {
    text: &'a str,
    /// Byte offset of the next unread character.
    pos: usize,
}

impl<'a> Lexer<'a> {
    pub fn new(text: &'a str) -> Lexer<'a> {
        Lexer { text, pos: 0 }
    }

    /// The next token with its byte offset; [`Token::End`] (repeatedly) at the end.
    ///
    /// # Errors
    /// [`LexError`] when no token starts at the next non-space character.
    pub fn next_token(&mut self) -> Result<(usize, Token<'a>), LexError> {
        let rest = self.text.get(self.pos..).unwrap_or_default();
        let (rest, ()) = skip_ignored(rest);
        let offset = self.text.len() - rest.len();
        self.pos = offset;
        if rest.is_empty() {
            return Ok((offset, Token::End));
        }
        match token(rest) {
            Ok((after, token)) => {
                self.pos = self.text.len() - after.len();
                Ok((offset, token))
            }
            Err(_) => Err(LexError {
                offset,
                // `rest` is not empty here.
                found: rest.chars().next().unwrap_or('\0'),
            }),
        }
    }
}

/// Skips white space and complete comments.
fn skip_ignored(mut input: &str) -> (&str, ()) {
    loop {
        let before = input.len();
        input = input.trim_start_matches([' ', '\t', '\n', '\r', '\u{c}']);
        if let Ok((rest, _)) = line_comment(input) {
            input = rest;
        }
        if let Ok((rest, _)) = block_comment(input) {
            input = rest;
        }
        if input.len() == before {
            return (input, ());
        }
    }
}

/// `--` up to and including a line end; without a line end it is not a comment.
fn line_comment(input: &str) -> IResult<&str, &str> {
    taken((
        tag("--"),
        take_while(|c| c != '\n' && c != '\r'),
        alt((tag("\r\n"), tag("\n"), tag("\r"))),
    ))
    .parse(input)
}

/// `/*` up to the first `*/`.
fn block_comment(input: &str) -> IResult<&str, &str> {
    taken((tag("/*"), take_until("*/"), tag("*/"))).parse(input)
}

/// The text `parser` consumes. Unlike nom's `recognize`, this measures what was consumed by
/// the length of what is left, which stays right when a combinator hands back an empty rest
/// that is not a sub-slice of the input (nom 8's `opt` at the end of the text does).
fn taken<'a, O>(
    mut parser: impl Parser<&'a str, Output = O, Error = nom::error::Error<&'a str>>,
) -> impl Parser<&'a str, Output = &'a str, Error = nom::error::Error<&'a str>> {
    move |input: &'a str| {
        let (rest, _) = parser.parse(input)?;
        let used = input.len() - rest.len();
        Ok((rest, input.get(..used).unwrap_or(input)))
    }
}

/// The longest token at the start of `input`.
fn token(input: &str) -> IResult<&str, Token<'_>> {
    alt((word, number, string, operator)).parse(input)
}

/// An identifier, or a keyword when the whole word is one.
fn word(input: &str) -> IResult<&str, Token<'_>> {
    let (rest, word) = taken((
        satisfy(|c| c.is_ascii_alphabetic() || c == '_' || c == '$'),
        take_while(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$'),
    ))
    .parse(input)?;
    Ok((rest, keyword(word).unwrap_or(Token::Id(word))))
}

fn keyword(word: &str) -> Option<Token<'static>> {
    const KEYWORDS: [(&str, Token<'static>); 12] = [
        ("NOT", Token::Not),
        ("AND", Token::And),
        ("OR", Token::Or),
        ("BETWEEN", Token::Between),
        ("IN", Token::In),
        ("TRUE", Token::True),
        ("FALSE", Token::False),
        ("NULL", Token::Null),
        ("IS", Token::Is),
        ("CONTAINS", Token::Contains),
        ("STARTSWITH", Token::StartsWith),
        ("ENDSWITH", Token::EndsWith),
    ];
    KEYWORDS
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(word))
        .map(|(_, t)| t.clone())
}

/// A decimal or floating-point literal, whichever match is longer (a float always is when
/// both match, since it needs a `.` or an exponent beyond the digits).
fn number(input: &str) -> IResult<&str, Token<'_>> {
    if let Ok((rest, text)) = float(input) {
        return Ok((rest, Token::Float(text)));
    }
    let (rest, text) = decimal(input)?;
    Ok((rest, Token::Decimal(text)))
}

fn decimal(input: &str) -> IResult<&str, &str> {
    alt((
        tag("0"),
        taken((
            satisfy(|c| matches!(c, '1'..='9')),
            digit0,
            opt(one_of("lL")),
        )),
    ))
    .parse(input)
}

fn float(input: &str) -> IResult<&str, &str> {
    alt((
        taken((digit1, tag("."), digit0, opt(exponent))),
        taken((tag("."), digit1, opt(exponent))),
        taken((digit1, exponent)),
    ))
    .parse(input)
}

fn exponent(input: &str) -> IResult<&str, &str> {
    taken((one_of("eE"), opt(one_of("+-")), digit1)).parse(input)
}

/// `'...'` with `''` for a quote inside. Like JavaCC's automaton, the longest match is taken:
/// `'a''` is the string `a` followed by a lone quote, not an unterminated `a'`.
fn string(input: &str) -> IResult<&str, Token<'_>> {
    let (rest, text) = taken((
        tag("'"),
        many0(alt((taken(tag("''")), taken(none_of("'"))))),
        tag("'"),
    ))
    .parse(input)
    .or_else(|_: nom::Err<nom::error::Error<&str>>| shorter_string(input))?;
    let inner = text
        .get(1..text.len().saturating_sub(1))
        .unwrap_or_default();
    Ok((rest, Token::Str(inner.replace("''", "'"))))
}

/// When the greedy reading runs off the end inside a `''` pair, the string ends at the pair's
/// first quote, the last point where a string could have closed.
fn shorter_string(input: &str) -> IResult<&str, &str> {
    let mut last_close = None;
    if !input.starts_with('\'') {
        return Err(nom::Err::Error(nom::error::Error::new(
            input,
            nom::error::ErrorKind::Char,
        )));
    }
    let mut chars = input.char_indices().skip(1).peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\'' {
            last_close = Some(i + 1);
            if chars.next_if(|&(_, c)| c == '\'').is_none() {
                break;
            }
        }
    }
    match last_close.and_then(|end| Some((input.get(end..)?, input.get(..end)?))) {
        Some(split) => Ok(split),
        None => Err(nom::Err::Error(nom::error::Error::new(
            input,
            nom::error::ErrorKind::Char,
        ))),
    }
}

fn operator(input: &str) -> IResult<&str, Token<'_>> {
    alt((
        tag("<>").map(|_| Token::Ne),
        tag("<=").map(|_| Token::Le),
        tag(">=").map(|_| Token::Ge),
        tag("<").map(|_| Token::Lt),
        tag(">").map(|_| Token::Gt),
        tag("=").map(|_| Token::Eq),
        tag("(").map(|_| Token::LParen),
        tag(")").map(|_| Token::RParen),
        tag(",").map(|_| Token::Comma),
        tag("+").map(|_| Token::Plus),
        tag("-").map(|_| Token::Minus),
    ))
    .parse(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Vec<Token<'_>> {
        let mut lexer = Lexer::new(text);
        let mut out = Vec::new();
        loop {
            let (_, t) = lexer.next_token().unwrap();
            if t == Token::End {
                return out;
            }
            out.push(t);
        }
    }

    #[test]
    fn keywords_ignore_case_and_need_the_whole_word() {
        assert_eq!(
            tokens("a AnD andy Or nOt is NULL true FALSE between In"),
            vec![
                Token::Id("a"),
                Token::And,
                Token::Id("andy"),
                Token::Or,
                Token::Not,
                Token::Is,
                Token::Null,
                Token::True,
                Token::False,
                Token::Between,
                Token::In,
            ]
        );
        assert_eq!(
            tokens("contains StartsWith ENDSWITH $x _y1"),
            vec![
                Token::Contains,
                Token::StartsWith,
                Token::EndsWith,
                Token::Id("$x"),
                Token::Id("_y1"),
            ]
        );
    }

    #[test]
    fn numbers_follow_the_javacc_token_rules() {
        assert_eq!(
            tokens("0 007 12L 5. .5 1.5e3 2E-2 1e 1.5L"),
            vec![
                Token::Decimal("0"),
                Token::Decimal("0"),
                Token::Decimal("0"),
                Token::Decimal("7"),
                Token::Decimal("12L"),
                Token::Float("5."),
                Token::Float(".5"),
                Token::Float("1.5e3"),
                Token::Float("2E-2"),
                Token::Decimal("1"),
                Token::Id("e"),
                Token::Float("1.5"),
                Token::Id("L"),
            ]
        );
    }

    #[test]
    fn strings_comments_and_operators() {
        assert_eq!(
            tokens("'it''s' '' <> <= >= < > = ( ) , + -"),
            vec![
                Token::Str("it's".into()),
                Token::Str(String::new()),
                Token::Ne,
                Token::Le,
                Token::Ge,
                Token::Lt,
                Token::Gt,
                Token::Eq,
                Token::LParen,
                Token::RParen,
                Token::Comma,
                Token::Plus,
                Token::Minus,
            ]
        );
        assert_eq!(
            tokens("a -- note\n/* block * ** */ b"),
            vec![Token::Id("a"), Token::Id("b")]
        );
        // Without a line end `--` is two minus signs.
        assert_eq!(
            tokens("a --x"),
            vec![Token::Id("a"), Token::Minus, Token::Minus, Token::Id("x")]
        );
        // The longest string match: `'a'` then an unterminated quote.
        let mut lexer = Lexer::new("'a''");
        assert_eq!(lexer.next_token(), Ok((0, Token::Str("a".into()))));
        assert_eq!(
            lexer.next_token(),
            Err(LexError {
                offset: 3,
                found: '\''
            })
        );
    }

    #[test]
    fn errors_wait_until_the_bad_character_is_reached() {
        let mut lexer = Lexer::new("a = 1 && b");
        for expected in [Token::Id("a"), Token::Eq, Token::Decimal("1")] {
            assert_eq!(lexer.next_token().unwrap().1, expected);
        }
        assert_eq!(
            lexer.next_token(),
            Err(LexError {
                offset: 6,
                found: '&'
            })
        );
        for bad in ["'open", "/* open", "!", ".", "é"] {
            assert!(Lexer::new(bad).next_token().is_err(), "{bad}");
        }
    }
}
