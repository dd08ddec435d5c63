//! Evaluation of a selector against one message's properties, with the semantics of RocketMQ's
//! expression classes (`ComparisonExpression`, `LogicExpression`, `UnaryExpression`).
//!
//! Every property value is a string. A result is a value, "null" (`Ok(None)`: SQL's unknown) or
//! an error where Java throws (`Err`); the broker delivers a message only for `TRUE`, so
//! unknown and errors both filter it out. The rules, as in Java:
//! - a missing property is null; `=` with one null side is null when the left side is null and
//!   FALSE otherwise; `>`, `>=`, `<`, `<=` with a null side are null; `IS NULL` is never null;
//! - AND and OR are three-valued and short-circuit left to right (a FALSE left operand of AND
//!   means the right one is not evaluated, so its errors do not matter);
//! - values of different types are converted before comparing: int widens to long, either to
//!   double; a string against a number is parsed as that number's type (Java's
//!   `Integer.valueOf`, `Long.valueOf`, `Double.valueOf`), and failing to parse is an error; a
//!   string against a boolean is `true` when it reads "true" in any case; a boolean on the left
//!   against a string is an error (Java's `ClassCastException`); any other mix compares as
//!   "less", so `=` is FALSE;
//! - two strings under `>`, `>=`, `<`, `<=` are both parsed as doubles (error if either fails);
//!   under `=` they are compared as strings;
//! - `IN` of a missing property is null; `CONTAINS`/`STARTSWITH`/`ENDSWITH` (and their NOT
//!   forms) are FALSE for a missing or non-string value and for an empty search string;
//! - a property used as a boolean (`WHERE flag`) is null when missing and FALSE otherwise,
//!   since a string is not a boolean;
//! - unary minus of a non-number is null.
//!
//! What it leaves out: Java's `Double.valueOf` hexadecimal forms (`0x1p3`) and non-ASCII
//! digits in `Integer.valueOf`; both are errors here (so the message does not match).

use std::borrow::Cow;
use std::cmp::Ordering;

use store_core::format::properties::{find_property, Properties};

use super::ast::{CompareOp, Expr, Literal, TextOp};

/// Where property values come from.
pub trait PropertySource {
    /// The value of the property `name`, if the message has it.
    fn property(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// A stored record's encoded properties (`name 0x01 value 0x02`...), read in place. Invalid
/// UTF-8 is replaced, as Java's decoder does.
#[derive(Debug, Clone, Copy)]
pub struct EncodedProperties<'a>(pub &'a [u8]);

impl PropertySource for EncodedProperties<'_> {
    fn property(&self, name: &str) -> Option<Cow<'_, str>> {
        find_property(self.0, name).map(String::from_utf8_lossy)
    }
}

impl PropertySource for Properties {
    fn property(&self, name: &str) -> Option<Cow<'_, str>> {
        self.get(name).map(Cow::Borrowed)
    }
}

/// A value during evaluation (Java's `Boolean`, `Integer`, `Long`, `Double`, `String`).
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Bool(bool),
    Int(i32),
    Long(i64),
    Double(f64),
    Str(Cow<'a, str>),
}

/// Where Java's evaluation throws. The broker treats it as "does not match".
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A string compared with a number does not parse as that number's type.
    #[error("a string does not parse as the number it is compared with")]
    NumberFormat,
    /// A boolean compared with a string, or a non-boolean where a boolean is needed.
    #[error("a value of the wrong type for the operator")]
    ClassCast,
}

/// A value, null (`None`), or Java's exception.
pub type Outcome<'a> = Result<Option<Value<'a>>, EvalError>;

/// Evaluates `expr` against `props`.
///
/// # Errors
/// [`EvalError`] where Java's evaluation throws.
pub fn evaluate<'a, P: PropertySource + ?Sized>(expr: &'a Expr, props: &'a P) -> Outcome<'a> {
    Ok(match expr {
        Expr::Literal(literal) => literal_value(literal),
        Expr::Property(name) => props.property(name).map(Value::Str),
        Expr::Negate(operand) => match evaluate(operand, props)? {
            Some(Value::Int(v)) => Some(Value::Int(v.wrapping_neg())),
            Some(Value::Long(v)) => Some(Value::Long(v.wrapping_neg())),
            Some(Value::Double(v)) => Some(Value::Double(-v)),
            _ => None,
        },
        Expr::Not(operand) => truth(evaluate(operand, props)?)?.map(|b| Value::Bool(!b)),
        Expr::BoolCast(name) => props.property(name).map(|_| Value::Bool(false)),
        Expr::And(terms) => logic(terms.iter().map(|t| boolean(t, props)), false)?,
        Expr::Or(terms) => logic(terms.iter().map(|t| boolean(t, props)), true)?,
        Expr::Compare(CompareOp::Eq, left, right) => equal(left, right, props)?.map(Value::Bool),
        Expr::Compare(CompareOp::Ne, left, right) => {
            equal(left, right, props)?.map(|b| Value::Bool(!b))
        }
        Expr::Compare(op, left, right) => ordered(*op, left, right, props)?.map(Value::Bool),
        Expr::Between {
            value,
            low,
            high,
            negated: false,
        } => logic(
            [
                ordered(CompareOp::Ge, value, low, props),
                ordered(CompareOp::Le, value, high, props),
            ],
            false,
        )?,
        Expr::Between {
            value,
            low,
            high,
            negated: true,
        } => logic(
            [
                ordered(CompareOp::Lt, value, low, props),
                ordered(CompareOp::Gt, value, high, props),
            ],
            true,
        )?,
        Expr::IsNull { value, negated } => {
            Some(Value::Bool(evaluate(value, props)?.is_none() != *negated))
        }
        Expr::In {
            property,
            values,
            negated,
        } => props
            .property(property)
            .map(|v| Value::Bool(values.iter().any(|x| *x == *v) != *negated)),
        Expr::Text {
            op,
            value,
            search,
            negated,
        } => Some(Value::Bool(text_match(
            *op, value, search, *negated, props,
        )?)),
    })
}

/// Java's `__compare` with string conversion on: the order of two non-null values.
///
/// # Errors
/// [`EvalError`] where Java throws (a string that does not parse as the other side's number
/// type; a boolean on the left of a string).
pub fn compare(left: &Value<'_>, right: &Value<'_>) -> Result<Ordering, EvalError> {
    use Value::{Bool, Double, Int, Long, Str};
    Ok(match (left, right) {
        (Bool(l), Bool(r)) => l.cmp(r),
        (Int(l), Int(r)) => l.cmp(r),
        (Long(l), Long(r)) => l.cmp(r),
        (Double(l), Double(r)) => java_double_compare(*l, *r),
        (Str(l), Str(r)) => l.encode_utf16().cmp(r.encode_utf16()),
        (Bool(_), Str(_)) => return Err(EvalError::ClassCast),
        (Int(l), Long(r)) => i64::from(*l).cmp(r),
        (Int(l), Double(r)) => java_double_compare(f64::from(*l), *r),
        (Int(l), Str(r)) => l.cmp(&java_int(r)?),
        (Long(l), Int(r)) => l.cmp(&i64::from(*r)),
        (Long(l), Double(r)) => java_double_compare(*l as f64, *r),
        (Long(l), Str(r)) => l.cmp(&java_long(r)?),
        (Double(l), Int(r)) => java_double_compare(*l, f64::from(*r)),
        (Double(l), Long(r)) => java_double_compare(*l, *r as f64),
        (Double(l), Str(r)) => java_double_compare(*l, java_double(r)?),
        (Str(l), Bool(r)) => l.eq_ignore_ascii_case("true").cmp(r),
        (Str(l), Int(r)) => java_int(l)?.cmp(r),
        (Str(l), Long(r)) => java_long(l)?.cmp(r),
        (Str(l), Double(r)) => java_double_compare(java_double(l)?, *r),
        // Java answers -1 for pairs it has no conversion for.
        (Bool(_) | Int(_) | Long(_) | Double(_), _) => Ordering::Less,
    })
}

/// [`compare`] for two literals, as Java checks literal BETWEEN bounds while parsing; `None`
/// for NULL or where the comparison fails.
pub fn compare_literals(left: &Literal, right: &Literal) -> Option<Ordering> {
    compare(&literal_value(left)?, &literal_value(right)?).ok()
}

fn literal_value(literal: &Literal) -> Option<Value<'_>> {
    Some(match literal {
        Literal::Null => return None,
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Int(v) => Value::Int(*v),
        Literal::Long(v) => Value::Long(*v),
        Literal::Double(v) => Value::Double(*v),
        Literal::Str(s) => Value::Str(Cow::Borrowed(s)),
    })
}

/// An operand of AND, OR or NOT: null or a boolean (Java casts it to `Boolean`).
fn truth(value: Option<Value<'_>>) -> Result<Option<bool>, EvalError> {
    match value {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(b)),
        Some(_) => Err(EvalError::ClassCast),
    }
}

fn boolean<P: PropertySource + ?Sized>(expr: &Expr, props: &P) -> Result<Option<bool>, EvalError> {
    truth(evaluate(expr, props)?)
}

/// Three-valued AND (`decisive` false) or OR (`decisive` true) over lazily evaluated
/// operands: the first decisive operand ends it, otherwise any null makes null.
fn logic<'a>(
    operands: impl IntoIterator<Item = Result<Option<bool>, EvalError>>,
    decisive: bool,
) -> Outcome<'a> {
    let mut unknown = false;
    for operand in operands {
        match operand? {
            Some(b) if b == decisive => return Ok(Some(Value::Bool(decisive))),
            Some(_) => {}
            None => unknown = true,
        }
    }
    Ok((!unknown).then_some(Value::Bool(!decisive)))
}

/// Java's equality: both sides evaluated; null only when the left side alone is null.
fn equal<P: PropertySource + ?Sized>(
    left: &Expr,
    right: &Expr,
    props: &P,
) -> Result<Option<bool>, EvalError> {
    let left = evaluate(left, props)?;
    let right = evaluate(right, props)?;
    Ok(match (left, right) {
        (None, None) => Some(true),
        (None, Some(_)) => None,
        (Some(_), None) => Some(false),
        (Some(l), Some(r)) => Some(compare(&l, &r)? == Ordering::Equal),
    })
}

/// `>`, `>=`, `<`, `<=`: a null left side is null before the right side is evaluated.
fn ordered<P: PropertySource + ?Sized>(
    op: CompareOp,
    left: &Expr,
    right: &Expr,
    props: &P,
) -> Result<Option<bool>, EvalError> {
    let Some(l) = evaluate(left, props)? else {
        return Ok(None);
    };
    let Some(r) = evaluate(right, props)? else {
        return Ok(None);
    };
    let order = match (&l, &r) {
        (Value::Str(l), Value::Str(r)) => java_double_compare(java_double(l)?, java_double(r)?),
        _ => compare(&l, &r)?,
    };
    Ok(Some(match op {
        CompareOp::Gt => order == Ordering::Greater,
        CompareOp::Ge => order != Ordering::Less,
        CompareOp::Lt => order == Ordering::Less,
        CompareOp::Le => order != Ordering::Greater,
        CompareOp::Eq => order == Ordering::Equal,
        CompareOp::Ne => order != Ordering::Equal,
    }))
}

fn text_match<P: PropertySource + ?Sized>(
    op: TextOp,
    value: &Expr,
    search: &str,
    negated: bool,
    props: &P,
) -> Result<bool, EvalError> {
    // Java tests the search string before evaluating the operand.
    if search.is_empty() {
        return Ok(false);
    }
    let Some(Value::Str(s)) = evaluate(value, props)? else {
        return Ok(false);
    };
    let found = match op {
        TextOp::Contains => s.contains(search),
        TextOp::StartsWith => s.starts_with(search),
        TextOp::EndsWith => s.ends_with(search),
    };
    Ok(found != negated)
}

/// Java `Double.compare`: a total order with -0.0 below 0.0 and NaN above everything.
fn java_double_compare(l: f64, r: f64) -> Ordering {
    if l < r {
        return Ordering::Less;
    }
    if l > r {
        return Ordering::Greater;
    }
    let bits = |v: f64| {
        // Java compares `doubleToLongBits`, which maps every NaN to one canonical NaN.
        let v = if v.is_nan() { f64::NAN } else { v };
        v.to_bits() as i64
    };
    bits(l).cmp(&bits(r))
}

/// Java `Integer.valueOf(String)` for ASCII digits: an optional sign, digits, in range.
fn java_int(s: &str) -> Result<i32, EvalError> {
    s.parse().map_err(|_| EvalError::NumberFormat)
}

/// Java `Long.valueOf(String)`, likewise.
fn java_long(s: &str) -> Result<i64, EvalError> {
    s.parse().map_err(|_| EvalError::NumberFormat)
}

/// Java `Double.valueOf(String)` for decimal text: surrounding control characters and spaces
/// trimmed, an optional sign, `NaN`, `Infinity` or a decimal with optional exponent and an
/// optional `f`/`d` suffix.
fn java_double(s: &str) -> Result<f64, EvalError> {
    let text = s.trim_matches(|c: char| c <= ' ');
    let (negative, body) = match text.as_bytes().first() {
        Some(b'-') => (true, text.get(1..).unwrap_or_default()),
        Some(b'+') => (false, text.get(1..).unwrap_or_default()),
        _ => (false, text),
    };
    let magnitude = match body {
        "NaN" => f64::NAN,
        "Infinity" => f64::INFINITY,
        _ => {
            let digits = body.strip_suffix(['f', 'F', 'd', 'D']).unwrap_or(body);
            if !is_decimal(digits) {
                return Err(EvalError::NumberFormat);
            }
            digits.parse().map_err(|_| EvalError::NumberFormat)?
        }
    };
    Ok(if negative { -magnitude } else { magnitude })
}

/// `digits [. digits] [e [sign] digits]` with at least one mantissa digit.
fn is_decimal(text: &str) -> bool {
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((mantissa, exponent)) => (mantissa, Some(exponent)),
        None => (text, None),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = all_digits(whole) && all_digits(fraction) && whole.len() + fraction.len() > 0;
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::super::parser::parse;
    use super::*;

    /// The outcome of `selector` on a message with `props` as a short code: "T", "F", "null"
    /// or "err".
    fn run(selector: &str, props: &[(&str, &str)]) -> &'static str {
        let expr = parse(selector).unwrap_or_else(|e| panic!("{selector:?}: {e}"));
        let props: Properties = props.iter().copied().collect();
        match evaluate(&expr, &props) {
            Ok(Some(Value::Bool(true))) => "T",
            Ok(Some(Value::Bool(false))) => "F",
            Ok(None) => "null",
            Ok(Some(other)) => panic!("{selector:?} gave a non-boolean {other:?}"),
            Err(_) => "err",
        }
    }

    /// A selector, a message's properties, the expected outcome code.
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

    fn cases(list: &[Case<'_>]) {
        for (selector, props, expected) in list {
            assert_eq!(run(selector, props), *expected, "{selector:?} on {props:?}");
        }
    }

    #[test]
    fn missing_properties_are_null_or_false_as_in_java() {
        cases(&[
            ("a = 1", &[], "null"),
            ("1 = a", &[], "F"),
            ("a <> 1", &[], "null"),
            ("1 <> a", &[], "T"),
            ("a = b", &[], "T"),
            ("a > 1", &[], "null"),
            ("1 > a", &[], "null"),
            ("a BETWEEN 1 AND 2", &[], "null"),
            ("a NOT BETWEEN 1 AND 2", &[], "null"),
            ("a IS NULL", &[], "T"),
            ("a IS NOT NULL", &[], "F"),
            ("a IN ('x')", &[], "null"),
            ("a NOT IN ('x')", &[], "null"),
            ("a CONTAINS 'x'", &[], "F"),
            ("a NOT CONTAINS 'x'", &[], "F"),
            ("a", &[], "null"),
            ("NOT a", &[], "null"),
            ("a", &[("a", "true")], "F"),
            ("NOT a", &[("a", "true")], "T"),
        ]);
    }

    #[test]
    fn three_valued_logic_short_circuits() {
        cases(&[
            ("a = 1 AND b = 1", &[("b", "1")], "null"),
            ("a = 1 AND b = 1", &[("b", "2")], "F"),
            ("a = 1 OR b = 1", &[("b", "1")], "T"),
            ("a = 1 OR b = 1", &[("b", "2")], "null"),
            ("NULL AND FALSE", &[], "F"),
            ("NULL OR TRUE", &[], "T"),
            ("NOT NULL", &[], "null"),
            // The right side would throw, but a FALSE left side stops AND first.
            ("x = 1 AND y > 1", &[("x", "2"), ("y", "abc")], "F"),
            ("x = 1 AND y > 1", &[("x", "1"), ("y", "abc")], "err"),
            ("x = 1 OR y > 1", &[("x", "1"), ("y", "abc")], "T"),
            // A null left side does not stop the right side's error.
            ("x = 1 AND y > 1", &[("y", "abc")], "err"),
        ]);
    }

    #[test]
    fn strings_and_numbers_convert_like_java() {
        cases(&[
            ("a = 5", &[("a", "5")], "T"),
            ("a = 5", &[("a", "+5")], "T"),
            ("a = 5", &[("a", "5.0")], "err"),
            ("a = 5.0", &[("a", "5")], "T"),
            ("a = 5", &[("a", "x")], "err"),
            ("a = 'x'", &[("a", "x")], "T"),
            ("a = '5'", &[("a", "5.0")], "F"),
            ("a > 3", &[("a", "10")], "T"),
            ("a > 3", &[("a", "2")], "F"),
            ("a > 3", &[("a", "3.5")], "err"),
            ("a > 3.0", &[("a", "3.5")], "T"),
            ("a > 3.0", &[("a", " 3.5d ")], "T"),
            ("a > 3.0", &[("a", "NaN")], "T"),
            ("a < 3.0", &[("a", "-Infinity")], "T"),
            ("a > 3.0", &[("a", "0x1p3")], "err"),
            ("a > 2147483648", &[("a", "2147483649")], "T"),
            ("a > 2147483648", &[("a", "2147483647")], "F"),
            ("a > 1", &[("a", "99999999999")], "err"),
            ("a >= b", &[("a", "10"), ("b", "9")], "T"),
            ("a >= b", &[("a", "10"), ("b", "x")], "err"),
            ("a = b", &[("a", "10"), ("b", "10.0")], "F"),
            ("a = TRUE", &[("a", "TRUE")], "T"),
            ("a = TRUE", &[("a", "yes")], "F"),
            ("a = FALSE", &[("a", "yes")], "T"),
            ("a BETWEEN 1 AND 10", &[("a", "10")], "T"),
            ("a BETWEEN 1 AND 10", &[("a", "11")], "F"),
            ("a NOT BETWEEN 1 AND 10", &[("a", "11")], "T"),
            ("a BETWEEN 1.5 AND 2.5", &[("a", "2")], "T"),
            ("-a = -5", &[("a", "5")], "null"),
            ("a > -5", &[("a", "-4")], "T"),
            ("1 = 1.0", &[], "T"),
            ("1 = TRUE", &[], "F"),
            ("1 <> TRUE", &[], "T"),
            ("'x' = 1", &[], "err"),
        ]);
    }

    #[test]
    fn booleans_compared_with_strings_throw_in_java() {
        cases(&[
            // `(a = 'x') = 'true'`: a Boolean on the left of a String is a ClassCastException.
            ("(a = 'x') = 'true'", &[("a", "x")], "err"),
            ("'true' = (a = 'x')", &[("a", "x")], "T"),
            ("NOT a = 'x'", &[("a", "x")], "err"),
            ("(a = 'x') = TRUE", &[("a", "x")], "T"),
        ]);
    }

    #[test]
    fn in_and_text_operators() {
        cases(&[
            ("TAGS IN ('a', 'b')", &[("TAGS", "b")], "T"),
            ("TAGS IN ('a', 'b')", &[("TAGS", "c")], "F"),
            ("TAGS NOT IN ('a', 'b')", &[("TAGS", "c")], "T"),
            ("k CONTAINS 'ell'", &[("k", "hello")], "T"),
            ("k NOT CONTAINS 'ell'", &[("k", "hello")], "F"),
            ("k STARTSWITH 'he'", &[("k", "hello")], "T"),
            ("k ENDSWITH 'lo'", &[("k", "hello")], "T"),
            ("k NOT ENDSWITH 'lo'", &[("k", "help")], "T"),
            ("k CONTAINS ''", &[("k", "hello")], "F"),
            ("k NOT CONTAINS ''", &[("k", "hello")], "F"),
            ("5 CONTAINS '5'", &[], "F"),
        ]);
    }

    #[test]
    fn java_orders() {
        assert_eq!(java_double_compare(-0.0, 0.0), Ordering::Less);
        assert_eq!(
            java_double_compare(f64::NAN, f64::INFINITY),
            Ordering::Greater
        );
        assert_eq!(java_double_compare(f64::NAN, -f64::NAN), Ordering::Equal);
        // UTF-16 order: U+FF61 sorts after U+1F600 in UTF-8 but before it in UTF-16.
        let (bmp, astral) = (
            Value::Str("\u{ff61}".into()),
            Value::Str("\u{1f600}".into()),
        );
        assert_eq!(compare(&bmp, &astral), Ok(Ordering::Greater));
        assert!("\u{ff61}" < "\u{1f600}");
        assert_eq!(
            compare(&Value::Int(1), &Value::Bool(true)),
            Ok(Ordering::Less)
        );
        assert_eq!(
            compare(&Value::Bool(true), &Value::Str("x".into())),
            Err(EvalError::ClassCast)
        );
        for (text, ok) in [
            ("1", true),
            ("1.", true),
            (".5", true),
            ("1e5", true),
            ("1E+5", true),
            ("5f", true),
            (" -2.5D\t", true),
            ("e5", false),
            (".", false),
            ("1e", false),
            ("inf", false),
            ("1_0", false),
            ("", false),
        ] {
            assert_eq!(java_double(text).is_ok(), ok, "{text:?}");
        }
    }

    #[test]
    fn encoded_properties_are_read_in_place() {
        let encoded = b"TAGS\x01TagA\x02price\x0199\x02";
        let expr = parse("TAGS = 'TagA' AND price > 50").unwrap();
        let source = EncodedProperties(encoded);
        assert_eq!(evaluate(&expr, &source), Ok(Some(Value::Bool(true))));
        assert_eq!(
            evaluate(&expr, &EncodedProperties(b"TAGS\x01TagA\x02")),
            Ok(None)
        );
    }
}
