//! Property tests of the selector language: arbitrary text never panics the parser, and valid
//! trees print to text that parses back to the same tree and evaluates the same way.

use proptest::prelude::*;
use store_core::format::properties::Properties;

use super::*;

/// Property names the generated trees and messages share.
const NAMES: [&str; 4] = ["a", "b", "TAGS", "$x"];

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(&NAMES[..]).prop_map(str::to_string)
}

fn text() -> impl Strategy<Value = String> {
    "[a-z' 0-9]{0,6}"
}

fn number() -> impl Strategy<Value = Literal> {
    prop_oneof![
        any::<u16>().prop_map(|v| Literal::Int(i32::from(v))),
        (2_147_483_648i64..i64::MAX).prop_map(Literal::Long),
        (1e-300f64..1e300).prop_map(Literal::Double),
    ]
}

/// Operands of `>`, `>=`, `<`, `<=` and BETWEEN: numbers, properties, negations.
fn ordered_operand() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        number().prop_map(Expr::Literal),
        name().prop_map(Expr::Property)
    ];
    leaf.prop_recursive(2, 4, 1, |inner| {
        inner.prop_map(|e| Expr::Negate(Box::new(e)))
    })
}

/// Operands of `=` that Java accepts on either side (no NULL, no boolean literal on the left).
fn equal_operand() -> impl Strategy<Value = Expr> {
    prop_oneof![
        ordered_operand(),
        text().prop_map(|s| Expr::Literal(Literal::Str(s))),
    ]
}

/// Boolean expressions Java's parser builds, in the shapes ours gives back.
fn boolean_expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        (equal_operand(), equal_operand(), any::<bool>()).prop_map(|(l, r, ne)| {
            let op = if ne { CompareOp::Ne } else { CompareOp::Eq };
            Expr::Compare(op, Box::new(l), Box::new(r))
        }),
        (ordered_operand(), ordered_operand(), 0..4u8).prop_map(|(l, r, op)| {
            let op = [CompareOp::Gt, CompareOp::Ge, CompareOp::Lt, CompareOp::Le][usize::from(op)];
            Expr::Compare(op, Box::new(l), Box::new(r))
        }),
        (name(), 0u16..100, 0u16..100, any::<bool>()).prop_map(|(n, x, y, negated)| {
            Expr::Between {
                value: Box::new(Expr::Property(n)),
                low: Box::new(Expr::Literal(Literal::Int(i32::from(x.min(y))))),
                high: Box::new(Expr::Literal(Literal::Int(i32::from(x.max(y))))),
                negated,
            }
        }),
        (equal_operand(), any::<bool>()).prop_map(|(v, negated)| Expr::IsNull {
            value: Box::new(v),
            negated
        }),
        (name(), prop::collection::vec(text(), 1..4), any::<bool>()).prop_map(
            |(property, values, negated)| Expr::In {
                property,
                values,
                negated
            }
        ),
        (name(), text(), 0..3u8, any::<bool>()).prop_map(|(n, search, op, negated)| {
            Expr::Text {
                op: [TextOp::Contains, TextOp::StartsWith, TextOp::EndsWith][usize::from(op)],
                value: Box::new(Expr::Property(n)),
                search,
                negated,
            }
        }),
        name().prop_map(Expr::BoolCast),
        any::<Option<bool>>().prop_map(|b| Expr::Literal(b.map_or(Literal::Null, Literal::Bool))),
    ];
    leaf.prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e))),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::And),
            prop::collection::vec(inner.clone(), 2..4).prop_map(Expr::Or),
            (inner.clone(), any::<bool>()).prop_map(|(e, negated)| Expr::IsNull {
                value: Box::new(operand(e)),
                negated
            }),
            (inner.clone(), inner)
                .prop_filter("Java refuses NULL beside =", |(l, r)| {
                    ![l, r]
                        .iter()
                        .any(|e| matches!(e, Expr::Literal(Literal::Null)))
                })
                .prop_map(|(l, r)| Expr::Compare(
                    CompareOp::Eq,
                    Box::new(operand(l)),
                    Box::new(operand(r))
                )),
        ]
    })
}

/// A boolean expression used as an operand: a bare property is a property there, not a cast.
fn operand(e: Expr) -> Expr {
    match e {
        Expr::BoolCast(name) => Expr::Property(name),
        e => e,
    }
}

fn message() -> impl Strategy<Value = Properties> {
    let value = prop_oneof![
        "[0-9]{1,3}",
        "-?[0-9]{1,2}\\.[0-9]",
        "[a-z' ]{1,4}",
        Just("true".to_string())
    ];
    prop::collection::vec((name(), value), 0..4).prop_map(|pairs| pairs.into_iter().collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any text either compiles or is refused; nothing panics or overflows the stack.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
        let _ = Sql92Filter::compile(&text);
    }

    /// Text built from the language's own tokens reaches deep into the parser.
    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(&[
        "a", "b", "NOT", "AND", "OR", "BETWEEN", "IN", "IS", "NULL", "TRUE", "FALSE", "CONTAINS",
        "STARTSWITH", "ENDSWITH", "=", "<>", ">", ">=", "<", "<=", "(", ")", ",", "+", "-", "1",
        "2.5", "'x'", "''", "9223372036854775808", "0.0", "--", "\n", "/*", "*/",
    ][..]), 0..40)) {
        let text = tokens.join(" ");
        if let Ok(filter) = Sql92Filter::compile(&text) {
            // Whatever compiles prints to text that compiles to the same tree.
            let again = Sql92Filter::compile(&filter.tree().to_string());
            prop_assert_eq!(again.map(|f| f.tree().clone()), Ok(filter.tree().clone()));
        }
    }

    /// A valid tree prints to text that parses back to it, and both evaluate alike.
    #[test]
    fn print_parse_round_trip(expr in boolean_expr(), msg in message()) {
        let text = expr.to_string();
        let parsed = parse(&text);
        prop_assert_eq!(parsed.as_ref(), Ok(&expr), "text: {}", text);
        let filter = Sql92Filter::compile(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(filter.matches(&msg), matches!(evaluate(&expr, &msg), Ok(Some(Value::Bool(true)))));
    }

    /// Encoded properties answer like the parsed map they encode.
    #[test]
    fn encoded_and_parsed_properties_agree(expr in boolean_expr(), msg in message()) {
        let filter = Sql92Filter::compile(&expr.to_string()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(filter.matches_encoded(msg.encode().as_bytes()), filter.matches(&msg));
    }
}

#[test]
fn filters_compare_by_text_and_match_only_on_true() {
    let f = Sql92Filter::compile("a > 1").unwrap();
    assert_eq!(f, Sql92Filter::compile("a > 1").unwrap());
    assert_ne!(f, Sql92Filter::compile("a >  1").unwrap());
    assert_eq!(f.expression(), "a > 1");
    let msg = |v: &str| -> Properties { [("a", v)].into_iter().collect() };
    assert!(f.matches(&msg("2")));
    assert!(!f.matches(&msg("1")));
    assert!(!f.matches(&Properties::new()), "null does not match");
    assert!(!f.matches(&msg("x")), "an evaluation error does not match");
}
