//! The syntax tree of a compiled SQL92 selector, and its canonical text.
//!
//! The shapes follow the expression classes RocketMQ builds while parsing: `BETWEEN`, `<>` and
//! `IS NOT NULL` keep their own nodes here (Java rewrites them to AND/OR/NOT of comparisons; the
//! evaluator gives them exactly those meanings), a property used where a boolean is needed is
//! wrapped in [`Expr::BoolCast`], and chains of AND or OR are kept flat (Java nests them to the
//! left; with three-valued logic and left-to-right short circuits the two are the same).
//!
//! [`Display`](std::fmt::Display) writes every node fully parenthesised, so the text parses back
//! to the same tree. What it leaves out: Java's own `toString` forms (`&&`, `||`, `==`).

use std::fmt;

/// A literal value (Java `ConstantExpression` / `BooleanConstantExpression`).
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    /// A decimal literal that fits in 32 bits (Java keeps it as an `Integer`).
    Int(i32),
    /// A decimal literal beyond 32 bits (a `Long`).
    Long(i64),
    /// A floating-point literal (a `Double`): finite and at least `Double.MIN_VALUE`.
    Double(f64),
    Str(String),
}

/// `=`, `<>` and the ordering comparisons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

/// The string tests RocketMQ 5 added: `CONTAINS`, `STARTSWITH`, `ENDSWITH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextOp {
    Contains,
    StartsWith,
    EndsWith,
}

/// One node of a selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Literal),
    /// A message property, looked up by name (case-sensitive).
    Property(String),
    /// Unary minus.
    Negate(Box<Expr>),
    /// `NOT x`, where `x` is a boolean expression.
    Not(Box<Expr>),
    /// A property where a boolean is needed (Java `createBooleanCast`).
    BoolCast(String),
    /// Two or more operands, evaluated left to right.
    And(Vec<Expr>),
    /// Two or more operands, evaluated left to right.
    Or(Vec<Expr>),
    Compare(CompareOp, Box<Expr>, Box<Expr>),
    /// `value [NOT] BETWEEN low AND high`.
    Between {
        value: Box<Expr>,
        low: Box<Expr>,
        high: Box<Expr>,
        negated: bool,
    },
    /// `value IS [NOT] NULL`.
    IsNull {
        value: Box<Expr>,
        negated: bool,
    },
    /// `property [NOT] IN ('a', ...)`: only a property on the left, only strings in the list.
    In {
        property: String,
        values: Vec<String>,
        negated: bool,
    },
    /// `value [NOT] CONTAINS|STARTSWITH|ENDSWITH 'search'`.
    Text {
        op: TextOp,
        value: Box<Expr>,
        search: String,
        negated: bool,
    },
}

impl Expr {
    /// Whether Java would build a `BooleanExpression` for this node: what AND, OR, NOT and the
    /// whole selector accept (after wrapping a bare property in [`Expr::BoolCast`]), and what
    /// may not be an operand of `>`, `>=`, `<`, `<=`.
    pub fn is_boolean(&self) -> bool {
        match self {
            Expr::Literal(literal) => matches!(literal, Literal::Null | Literal::Bool(_)),
            Expr::Property(_) | Expr::Negate(_) => false,
            Expr::Not(_)
            | Expr::BoolCast(_)
            | Expr::And(_)
            | Expr::Or(_)
            | Expr::Compare(..)
            | Expr::Between { .. }
            | Expr::IsNull { .. }
            | Expr::In { .. }
            | Expr::Text { .. } => true,
        }
    }
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("NULL"),
            Literal::Bool(true) => f.write_str("TRUE"),
            Literal::Bool(false) => f.write_str("FALSE"),
            Literal::Int(v) => write!(f, "{v}"),
            Literal::Long(v) => write!(f, "{v}"),
            // `{:?}` is the shortest text that reads back to the same double, and always has a
            // `.` or an exponent, so it lexes as a floating-point literal.
            Literal::Double(v) => write!(f, "{v:?}"),
            Literal::Str(s) => write_quoted(f, s),
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompareOp::Eq => "=",
            CompareOp::Ne => "<>",
            CompareOp::Gt => ">",
            CompareOp::Ge => ">=",
            CompareOp::Lt => "<",
            CompareOp::Le => "<=",
        })
    }
}

impl fmt::Display for TextOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TextOp::Contains => "CONTAINS",
            TextOp::StartsWith => "STARTSWITH",
            TextOp::EndsWith => "ENDSWITH",
        })
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let not = |negated: bool| if negated { "NOT " } else { "" };
        match self {
            Expr::Literal(literal) => write!(f, "{literal}"),
            Expr::Property(name) | Expr::BoolCast(name) => f.write_str(name),
            // `-(x)`, never `--x`, which could start a comment.
            Expr::Negate(e) => write!(f, "-({e})"),
            Expr::Not(e) => write!(f, "NOT ({e})"),
            Expr::And(terms) => write_joined(f, terms, " AND "),
            Expr::Or(terms) => write_joined(f, terms, " OR "),
            Expr::Compare(op, l, r) => write!(f, "({l}) {op} ({r})"),
            Expr::Between {
                value,
                low,
                high,
                negated,
            } => write!(f, "({value}) {}BETWEEN ({low}) AND ({high})", not(*negated)),
            Expr::IsNull { value, negated } => write!(f, "({value}) IS {}NULL", not(*negated)),
            Expr::In {
                property,
                values,
                negated,
            } => {
                write!(f, "{property} {}IN (", not(*negated))?;
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write_quoted(f, v)?;
                }
                f.write_str(")")
            }
            Expr::Text {
                op,
                value,
                search,
                negated,
            } => {
                write!(f, "({value}) {}{op} ", not(*negated))?;
                write_quoted(f, search)
            }
        }
    }
}

fn write_joined(f: &mut fmt::Formatter<'_>, terms: &[Expr], separator: &str) -> fmt::Result {
    for (i, term) in terms.iter().enumerate() {
        if i > 0 {
            f.write_str(separator)?;
        }
        write!(f, "({term})")?;
    }
    Ok(())
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    write!(f, "'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text() {
        let e = Expr::Or(vec![
            Expr::Compare(
                CompareOp::Ge,
                Box::new(Expr::Negate(Box::new(Expr::Property("a".into())))),
                Box::new(Expr::Literal(Literal::Double(1e300))),
            ),
            Expr::In {
                property: "b".into(),
                values: vec!["x".into(), "it's".into()],
                negated: true,
            },
            Expr::BoolCast("c".into()),
        ]);
        assert_eq!(
            e.to_string(),
            "((-(a)) >= (1e300)) OR (b NOT IN ('x', 'it''s')) OR (c)"
        );
    }
}
