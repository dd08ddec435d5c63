//! A recursive-descent parser for RocketMQ's SQL92 selectors, production for production the
//! JavaCC grammar `SelectorParser.jj`, with the checks Java's expression factories make while
//! building the tree (they reject `a > 'x'`, `TRUE = 1`, `a = NULL`, `5 AND b`, `1 IN ('x')`,
//! `a BETWEEN 5 AND 1`, out-of-range literals...).
//!
//! Precedence, loosest first: OR; AND; `=`, `<>`, `IS [NOT] NULL`; `>`, `>=`, `<`, `<=`,
//! `[NOT] BETWEEN`, `[NOT] IN`, `[NOT] CONTAINS|STARTSWITH|ENDSWITH`; unary `+`, `-`, `NOT`.
//! As in Java, `NOT` binds tighter than a comparison: `NOT a = 1` is `(NOT a) = 1`.
//!
//! Like Java's generated parser, this one stops after the expression and does not ask for the
//! end of the text: `a = 1 b` selects `a = 1`. The token right after the expression is read
//! (and must lex); anything beyond it is never looked at.
//!
//! Departure from Java: tree depth and nesting are bounded ([`MAX_DEPTH`], [`MAX_NESTING`]) so
//! that hostile text cannot exhaust the stack; Java's parser would fail with a `StackOverflowError` somewhere deeper.

use std::collections::VecDeque;

use super::ast::{CompareOp, Expr, Literal, TextOp};
use super::eval::compare_literals;
use super::lexer::{LexError, Lexer, Token};

/// The deepest tree accepted.
pub const MAX_DEPTH: u32 = 64;
/// The deepest nesting of parentheses and unary operators accepted: room for the canonical text
/// of any tree within [`MAX_DEPTH`], which spends up to two levels (an operator and a
/// parenthesis) per node.
pub const MAX_NESTING: u32 = 2 * MAX_DEPTH + 2;

/// Why a selector did not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("lexical error at offset {}: unexpected character {:?}", .0.offset, .0.found)]
    Lexical(LexError),
    #[error("unexpected {found} at offset {offset}, expected {expected}")]
    Unexpected {
        offset: usize,
        found: String,
        expected: &'static str,
    },
    #[error("expression will not result in a boolean value: {0}")]
    NotBoolean(String),
    #[error("value '{0}' cannot be compared")]
    NotComparable(String),
    #[error("'{left}' cannot be compared with '{right}'")]
    Incompatible { left: String, right: String },
    #[error("IN needs a property on its left, got: {0}")]
    InNeedsProperty(String),
    #[error("illegal BETWEEN bounds: {0}")]
    Between(String),
    #[error("decimal literal {0} is outside the 64-bit range")]
    DecimalRange(String),
    #[error("floating-point literal {0} is zero or beyond the double range")]
    FloatRange(String),
    #[error("expression nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

impl From<LexError> for ParseError {
    fn from(e: LexError) -> ParseError {
        ParseError::Lexical(e)
    }
}

/// Parses a whole selector into a boolean expression.
///
/// # Errors
/// [`ParseError`] for text Java's `SelectorParser.parse` would refuse (and for nesting beyond
/// [`MAX_DEPTH`]).
pub fn parse(text: &str) -> Result<Expr, ParseError> {
    let mut parser = Parser {
        lexer: Lexer::new(text),
        ahead: VecDeque::with_capacity(2),
        nesting: 0,
    };
    let node = parser.or_expression()?;
    Ok(as_boolean(node)?.expr)
}

/// A subtree with its depth, so depth is checked as the tree grows.
struct Node {
    expr: Expr,
    depth: u32,
}

impl Node {
    fn leaf(expr: Expr) -> Node {
        Node { expr, depth: 1 }
    }

    /// A node over children of the given depths.
    fn over(expr: Expr, depths: impl IntoIterator<Item = u32>) -> Result<Node, ParseError> {
        let depth = depths.into_iter().max().unwrap_or(0) + 1;
        if depth > MAX_DEPTH {
            return Err(ParseError::TooDeep);
        }
        Ok(Node { expr, depth })
    }
}

struct Parser<'a> {
    lexer: Lexer<'a>,
    /// Tokens read but not consumed (at most two: the grammar's longest look-ahead).
    ahead: VecDeque<(usize, Token<'a>)>,
    /// Parentheses and unary operators open right now.
    nesting: u32,
}

impl<'a> Parser<'a> {
    fn fill(&mut self, n: usize) -> Result<(), ParseError> {
        while self.ahead.len() < n {
            let token = self.lexer.next_token()?;
            self.ahead.push_back(token);
        }
        Ok(())
    }

    fn peek(&mut self) -> Result<&Token<'a>, ParseError> {
        self.fill(1)?;
        // `fill(1)` succeeded, so at least one token is waiting.
        Ok(&self.ahead.front().expect("filled").1)
    }

    fn peek_second(&mut self) -> Result<&Token<'a>, ParseError> {
        self.fill(2)?;
        // `fill(2)` succeeded, so at least two tokens are waiting.
        Ok(&self.ahead.get(1).expect("filled").1)
    }

    fn bump(&mut self) -> Result<(usize, Token<'a>), ParseError> {
        self.fill(1)?;
        // `fill(1)` succeeded, so at least one token is waiting.
        Ok(self.ahead.pop_front().expect("filled"))
    }

    /// Consumes the next token, which must be `want`.
    fn expect(&mut self, want: &Token<'_>, expected: &'static str) -> Result<(), ParseError> {
        let (offset, found) = self.bump()?;
        if &found == want {
            return Ok(());
        }
        Err(unexpected(offset, &found, expected))
    }

    fn or_expression(&mut self) -> Result<Node, ParseError> {
        let first = self.and_expression()?;
        if self.peek()? != &Token::Or {
            return Ok(first);
        }
        let mut terms = vec![as_boolean(first)?];
        while self.peek()? == &Token::Or {
            self.bump()?;
            terms.push(as_boolean(self.and_expression()?)?);
        }
        chain(terms, Expr::Or)
    }

    fn and_expression(&mut self) -> Result<Node, ParseError> {
        let first = self.equality_expression()?;
        if self.peek()? != &Token::And {
            return Ok(first);
        }
        let mut terms = vec![as_boolean(first)?];
        while self.peek()? == &Token::And {
            self.bump()?;
            terms.push(as_boolean(self.equality_expression()?)?);
        }
        chain(terms, Expr::And)
    }

    fn equality_expression(&mut self) -> Result<Node, ParseError> {
        let mut left = self.comparison_expression()?;
        loop {
            let op = match self.peek()? {
                Token::Eq => CompareOp::Eq,
                Token::Ne => CompareOp::Ne,
                Token::Is => {
                    let negated = self.peek_second()? != &Token::Null;
                    self.bump()?;
                    if negated {
                        self.expect(&Token::Not, "NOT or NULL after IS")?;
                    }
                    self.expect(&Token::Null, "NULL")?;
                    let depth = left.depth;
                    let value = Box::new(left.expr);
                    left = Node::over(Expr::IsNull { value, negated }, [depth])?;
                    continue;
                }
                _ => return Ok(left),
            };
            self.bump()?;
            let right = self.comparison_expression()?;
            check_equal_operand(&left.expr)?;
            check_equal_operand(&right.expr)?;
            check_equal_compatibility(&left.expr, &right.expr)?;
            left = binary(op, left, right)?;
        }
    }

    fn comparison_expression(&mut self) -> Result<Node, ParseError> {
        let mut left = self.unary_expression()?;
        loop {
            let negated = self.peek()? == &Token::Not;
            let next = if negated {
                self.peek_second()?
            } else {
                self.peek()?
            };
            let op = match next {
                Token::Gt if !negated => Some(CompareOp::Gt),
                Token::Ge if !negated => Some(CompareOp::Ge),
                Token::Lt if !negated => Some(CompareOp::Lt),
                Token::Le if !negated => Some(CompareOp::Le),
                _ => None,
            };
            let text_op = match next {
                Token::Contains => Some(TextOp::Contains),
                Token::StartsWith => Some(TextOp::StartsWith),
                Token::EndsWith => Some(TextOp::EndsWith),
                _ => None,
            };
            let (between, is_in) = (next == &Token::Between, next == &Token::In);
            if op.is_none() && text_op.is_none() && !between && !is_in {
                if !negated {
                    return Ok(left);
                }
                let (offset, found) = self.bump()?;
                return Err(unexpected(
                    offset,
                    &found,
                    "CONTAINS, STARTSWITH, ENDSWITH, BETWEEN or IN after NOT",
                ));
            }
            if negated {
                self.bump()?;
            }
            self.bump()?;
            left = if let Some(op) = op {
                let right = self.unary_expression()?;
                check_less_than_operand(&left.expr)?;
                check_less_than_operand(&right.expr)?;
                binary(op, left, right)?
            } else if let Some(op) = text_op {
                let search = self.string_literal()?;
                let depth = left.depth;
                let value = Box::new(left.expr);
                let expr = Expr::Text {
                    op,
                    value,
                    search,
                    negated,
                };
                Node::over(expr, [depth])?
            } else if between {
                self.between(left, negated)?
            } else {
                self.in_list(left, negated)?
            };
        }
    }

    /// After `[NOT] BETWEEN`: `low AND high`.
    fn between(&mut self, value: Node, negated: bool) -> Result<Node, ParseError> {
        let low = self.unary_expression()?;
        self.expect(&Token::And, "AND between the BETWEEN bounds")?;
        let high = self.unary_expression()?;
        if !negated {
            check_between_literals(&low.expr, &high.expr)?;
        }
        for operand in [&value.expr, &low.expr, &high.expr] {
            check_less_than_operand(operand)?;
        }
        let depths = [value.depth, low.depth, high.depth];
        let expr = Expr::Between {
            value: Box::new(value.expr),
            low: Box::new(low.expr),
            high: Box::new(high.expr),
            negated,
        };
        Node::over(expr, depths)
    }

    /// After `[NOT] IN`: `('a', 'b', ...)`.
    fn in_list(&mut self, left: Node, negated: bool) -> Result<Node, ParseError> {
        self.expect(&Token::LParen, "( after IN")?;
        let mut values = vec![self.string_literal()?];
        while self.peek()? == &Token::Comma {
            self.bump()?;
            values.push(self.string_literal()?);
        }
        self.expect(&Token::RParen, ", or ) in the IN list")?;
        let Expr::Property(property) = left.expr else {
            return Err(ParseError::InNeedsProperty(left.expr.to_string()));
        };
        Node::over(
            Expr::In {
                property,
                values,
                negated,
            },
            [left.depth],
        )
    }

    fn unary_expression(&mut self) -> Result<Node, ParseError> {
        self.nesting += 1;
        let result = if self.nesting > MAX_NESTING {
            Err(ParseError::TooDeep)
        } else {
            self.unary_inner()
        };
        self.nesting -= 1;
        result
    }

    fn unary_inner(&mut self) -> Result<Node, ParseError> {
        match self.peek()? {
            Token::Plus => {
                self.bump()?;
                self.unary_expression()
            }
            Token::Minus => {
                self.bump()?;
                let operand = self.unary_expression()?;
                let depth = operand.depth;
                Node::over(Expr::Negate(Box::new(operand.expr)), [depth])
            }
            Token::Not => {
                self.bump()?;
                let operand = as_boolean(self.unary_expression()?)?;
                let depth = operand.depth;
                Node::over(Expr::Not(Box::new(operand.expr)), [depth])
            }
            _ => self.primary_expression(),
        }
    }

    fn primary_expression(&mut self) -> Result<Node, ParseError> {
        let (offset, token) = self.bump()?;
        let literal = match token {
            Token::LParen => {
                let inner = self.or_expression()?;
                self.expect(&Token::RParen, ")")?;
                return Ok(inner);
            }
            Token::Id(name) => return Ok(Node::leaf(Expr::Property(name.to_string()))),
            Token::Str(s) => Literal::Str(s),
            Token::Decimal(text) => decimal(text)?,
            Token::Float(text) => float(text)?,
            Token::True => Literal::Bool(true),
            Token::False => Literal::Bool(false),
            Token::Null => Literal::Null,
            other => {
                return Err(unexpected(
                    offset,
                    &other,
                    "a literal, a property or a parenthesis",
                ))
            }
        };
        Ok(Node::leaf(Expr::Literal(literal)))
    }

    fn string_literal(&mut self) -> Result<String, ParseError> {
        match self.bump()? {
            (_, Token::Str(s)) => Ok(s),
            (offset, other) => Err(unexpected(offset, &other, "a string literal")),
        }
    }
}

fn unexpected(offset: usize, found: &Token<'_>, expected: &'static str) -> ParseError {
    ParseError::Unexpected {
        offset,
        found: found.to_string(),
        expected,
    }
}

fn chain(terms: Vec<Node>, make: fn(Vec<Expr>) -> Expr) -> Result<Node, ParseError> {
    let depths: Vec<u32> = terms.iter().map(|t| t.depth).collect();
    Node::over(make(terms.into_iter().map(|t| t.expr).collect()), depths)
}

fn binary(op: CompareOp, left: Node, right: Node) -> Result<Node, ParseError> {
    let depths = [left.depth, right.depth];
    Node::over(
        Expr::Compare(op, Box::new(left.expr), Box::new(right.expr)),
        depths,
    )
}

/// Java `asBooleanExpression`: a boolean expression as it is, a property cast, else an error.
fn as_boolean(node: Node) -> Result<Node, ParseError> {
    match node.expr {
        Expr::Property(name) => Ok(Node::leaf(Expr::BoolCast(name))),
        expr if expr.is_boolean() => Ok(Node { expr, ..node }),
        expr => Err(ParseError::NotBoolean(expr.to_string())),
    }
}

/// Java `checkLessThanOperand`: only numbers, properties and numeric expressions are ordered.
fn check_less_than_operand(expr: &Expr) -> Result<(), ParseError> {
    let numeric_literal = matches!(
        expr,
        Expr::Literal(Literal::Int(_) | Literal::Long(_) | Literal::Double(_))
    );
    if numeric_literal || !(matches!(expr, Expr::Literal(_)) || expr.is_boolean()) {
        return Ok(());
    }
    Err(ParseError::NotComparable(expr.to_string()))
}

/// Java `checkEqualOperand`: the NULL literal cannot be compared with `=` or `<>`.
fn check_equal_operand(expr: &Expr) -> Result<(), ParseError> {
    if let Expr::Literal(Literal::Null) = expr {
        return Err(ParseError::NotComparable(expr.to_string()));
    }
    Ok(())
}

/// Java `checkEqualOperandCompatability`: `TRUE = 1` is refused, `1 = TRUE` is not.
fn check_equal_compatibility(left: &Expr, right: &Expr) -> Result<(), ParseError> {
    if let (Expr::Literal(l), Expr::Literal(r)) = (left, right) {
        if left.is_boolean() && !right.is_boolean() {
            return Err(ParseError::Incompatible {
                left: l.to_string(),
                right: r.to_string(),
            });
        }
    }
    Ok(())
}

/// Java `createBetween`'s check on two literal bounds: neither NULL, and `low <= high` by the
/// evaluator's comparison (which may itself fail, e.g. for TRUE against a string).
fn check_between_literals(low: &Expr, high: &Expr) -> Result<(), ParseError> {
    let (Expr::Literal(low), Expr::Literal(high)) = (low, high) else {
        return Ok(());
    };
    if matches!(low, Literal::Null) || matches!(high, Literal::Null) {
        return Err(ParseError::Between("the bounds cannot be NULL".into()));
    }
    match compare_literals(high, low) {
        Some(std::cmp::Ordering::Less) => Err(ParseError::Between(format!(
            "low bound {low} is greater than high bound {high}"
        ))),
        Some(_) => Ok(()),
        None => Err(ParseError::Between(format!(
            "{low} and {high} cannot be compared"
        ))),
    }
}

/// Java `createFromDecimal`: an optional `L` dropped, the value a long, kept as an int when it
/// fits in one.
fn decimal(text: &str) -> Result<Literal, ParseError> {
    let digits = text.trim_end_matches(['l', 'L']);
    let value: i64 = digits
        .parse()
        .map_err(|_| ParseError::DecimalRange(text.to_string()))?;
    Ok(match i32::try_from(value) {
        Ok(small) => Literal::Int(small),
        Err(_) => Literal::Long(value),
    })
}

/// Java `createFloat`: refuses infinity and anything below `Double.MIN_VALUE`, which makes
/// `0.0` itself an error (a Java quirk kept for compatibility).
fn float(text: &str) -> Result<Literal, ParseError> {
    let value: f64 = text
        .parse()
        .map_err(|_| ParseError::FloatRange(text.to_string()))?;
    if !value.is_finite() || value < f64::from_bits(1) {
        return Err(ParseError::FloatRange(text.to_string()));
    }
    Ok(Literal::Double(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> String {
        match parse(text) {
            Ok(expr) => expr.to_string(),
            Err(e) => panic!("{text:?} should parse: {e}"),
        }
    }

    fn err(text: &str) -> ParseError {
        match parse(text) {
            Ok(expr) => panic!("{text:?} should not parse, got {expr}"),
            Err(e) => e,
        }
    }

    #[test]
    fn rocketmq_parser_test_expressions() {
        // The valid and invalid selectors of RocketMQ's own parser test, by meaning.
        for text in [
            "a=3 and b<>4 And c>5 AND d<=4",
            "a=3 or b<>4 Or c>5 OR d<=4",
            "a in ('3', '4', '5')",
            "(a not in ('6', '4', '5')) or (b in ('3', '4', '5'))",
            "(a between 2 and 10) AND (b not between 6 and 9)",
            "a is null",
            "a is not null",
            "a <= now",
            "a=3 and b contains 'xxx' and c not contains 'xxx'",
        ] {
            ok(text);
        }
        assert_eq!(
            ok("a=3  and    b<>4 And c>5 AND d<=4"),
            ok("a=3 and b<>4 And c>5 AND d<=4")
        );
        err("a and between 2 and 10");
        assert!(matches!(
            err("a > 100000000000000000000000"),
            ParseError::DecimalRange(_)
        ));
        assert!(matches!(err(" a between 10 and 0"), ParseError::Between(_)));
        let huge = format!("a > 1{}.5", "1".repeat(400));
        assert!(matches!(err(&huge), ParseError::FloatRange(_)));
    }

    #[test]
    fn precedence_and_shapes() {
        assert_eq!(
            ok("a = 1 OR b = 2 AND c = 3"),
            "((a) = (1)) OR (((b) = (2)) AND ((c) = (3)))"
        );
        assert_eq!(ok("NOT a = 1"), "(NOT (a)) = (1)");
        assert_eq!(ok("NOT (a = 1)"), "NOT ((a) = (1))");
        assert_eq!(ok("a = 1 = TRUE"), "((a) = (1)) = (TRUE)");
        assert_eq!(ok("a > -5 AND b"), "((a) > (-(5))) AND (b)");
        assert_eq!(ok("+a IS NOT NULL"), "(a) IS NOT NULL");
        assert_eq!(
            ok("x NOT BETWEEN 1 AND 2.5 AND y"),
            "((x) NOT BETWEEN (1) AND (2.5)) AND (y)"
        );
        assert_eq!(ok("TAGS IN ('a', 'b''c')"), "TAGS IN ('a', 'b''c')");
        assert_eq!(ok("s NOT STARTSWITH 'x'"), "(s) NOT STARTSWITH 'x'");
        assert_eq!(ok("TRUE"), "TRUE");
        assert_eq!(ok("NULL"), "NULL");
        assert_eq!(ok("flag"), "flag");
        assert_eq!(ok("(a) IN ('x')"), "a IN ('x')");
        assert_eq!(ok("5 CONTAINS 'x'"), "(5) CONTAINS 'x'");
        assert_eq!(ok("n = 2147483648"), "(n) = (2147483648)");
        assert_eq!(ok("n = 7L"), "(n) = (7)");
    }

    #[test]
    fn literals_keep_java_types() {
        let Expr::Compare(_, _, right) = parse("a = 2147483647").unwrap() else {
            panic!("a comparison")
        };
        assert_eq!(*right, Expr::Literal(Literal::Int(i32::MAX)));
        let Expr::Compare(_, _, right) = parse("a = 2147483648").unwrap() else {
            panic!("a comparison")
        };
        assert_eq!(*right, Expr::Literal(Literal::Long(2_147_483_648)));
        assert!(matches!(err("a > 0.0"), ParseError::FloatRange(_)));
        assert!(matches!(err("a > 1e-400"), ParseError::FloatRange(_)));
        assert!(matches!(err("a > 1e400"), ParseError::FloatRange(_)));
        assert!(matches!(
            err("a = -9223372036854775808"),
            ParseError::DecimalRange(_)
        ));
        ok("a = -9223372036854775807");
        ok("a > 4.9e-324");
    }

    #[test]
    fn java_construction_checks() {
        for (text, what) in [
            ("5", "not boolean"),
            ("'x'", "not boolean"),
            ("-a", "not boolean"),
            ("a AND 5", "not boolean"),
            ("NOT 5", "not boolean"),
            ("a > 'x'", "ordered string"),
            ("a > TRUE", "ordered boolean"),
            ("a > NULL", "ordered null"),
            ("(a > 1) > 2", "ordered comparison"),
            ("a = NULL", "equal null"),
            ("NULL = a", "equal null"),
            ("TRUE = 1", "boolean literal left"),
            ("1 IN ('x')", "in without property"),
            ("a IN (1)", "in with a number"),
            ("a IN ()", "empty in"),
            ("a BETWEEN 'a' AND 'b'", "string bounds"),
            ("a BETWEEN NULL AND 1", "null bound"),
            ("a BETWEEN 2 AND 1.5", "reversed bounds"),
            ("a CONTAINS b", "contains needs a string"),
            ("a = 1 NOT b", "NOT without a comparison"),
            ("a IS b", "IS without NULL"),
            ("a IS NOT b", "IS NOT without NULL"),
            ("", "empty"),
            ("*", "star"),
            ("a = ", "missing operand"),
            ("(a = 1", "unclosed"),
            ("a == 1", "double equals"),
            ("a = 1 && b = 2", "C operators"),
            ("a != 1", "bang"),
        ] {
            let _ = parse(text).map(|e| panic!("{text:?} ({what}) parsed as {e}"));
        }
        // Allowed by Java, though odd.
        for text in [
            "1 = TRUE",
            "TRUE = FALSE",
            "NULL IS NULL",
            "a BETWEEN -1 AND -5",
            "a BETWEEN b AND 1",
            "a NOT BETWEEN 5 AND 1",
            "NOT NULL",
        ] {
            ok(text);
        }
    }

    #[test]
    fn text_after_the_expression_is_ignored_once_it_lexes() {
        assert_eq!(ok("a = 1 b = 2"), "(a) = (1)");
        assert_eq!(ok("a = 1 ) ("), "(a) = (1)");
        assert_eq!(ok("a = 1 'x'' &&"), "(a) = (1)");
        assert!(matches!(err("a = 1 &&"), ParseError::Lexical(_)));
        assert_eq!(ok("a = 1 -- trailing comment\n"), "(a) = (1)");
    }

    #[test]
    fn nesting_is_bounded() {
        let deep = format!("{}a = 1{}", "(".repeat(500), ")".repeat(500));
        assert_eq!(err(&deep), ParseError::TooDeep);
        let nots = format!("{}a", "NOT ".repeat(500));
        assert_eq!(err(&nots), ParseError::TooDeep);
        let chain = format!("a = 1{}", " = TRUE".repeat(200));
        assert_eq!(err(&chain), ParseError::TooDeep);
        let shallow = format!("{}a = 1{}", "(".repeat(20), ")".repeat(20));
        ok(&shallow);
        // Long flat chains are fine: AND and OR stay one level.
        let wide = vec!["a = 1"; 5_000].join(" AND ");
        ok(&wide);
    }
}
