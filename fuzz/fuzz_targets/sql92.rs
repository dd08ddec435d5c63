#![no_main]
//! Fuzzes the SQL92 selector parser and evaluator: any text either compiles or is refused
//! without panicking; what compiles prints to text that compiles to the same tree; and the
//! compiled selector evaluates against properties built from the rest of the input without
//! panicking, giving the same answer on the encoded and the parsed form.
use libfuzzer_sys::fuzz_target;
use proto_core::filter::sql92::{evaluate, EncodedProperties};
use proto_core::filter::Sql92Filter;
use store_core::format::properties::Properties;

fuzz_target!(|data: &[u8]| {
    // The first line is the selector; the rest is an encoded properties string.
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (selector, props) = data.split_at(split);
    let Ok(selector) = std::str::from_utf8(selector) else {
        return;
    };
    let Ok(filter) = Sql92Filter::compile(selector) else {
        return;
    };
    let printed = filter.tree().to_string();
    let again = Sql92Filter::compile(&printed).expect("printed selectors compile");
    assert_eq!(again.tree(), filter.tree(), "{printed}");
    let parsed = Properties::parse_bytes(props);
    let encoded = parsed.encode();
    let _ = evaluate(filter.tree(), &EncodedProperties(props));
    assert_eq!(
        filter.matches(&parsed),
        filter.matches_encoded(encoded.as_bytes())
    );
});
