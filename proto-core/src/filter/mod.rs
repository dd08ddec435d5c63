//! Message filters beyond tags: RocketMQ's SQL92 property filters and the broker-side
//! bookkeeping for them (Java's `filter` module, `ExpressionType`, `ConsumerFilterManager`,
//! `ConsumerFilterData` and the CHECK_CLIENT_CONFIG check).
//!
//! - [`sql92`]: the selector language (lexer, parser, tree, evaluator) and [`Sql92Filter`];
//! - [`ConsumerFilterData`] and [`register_filter`]: a group's compiled filter for one topic,
//!   kept beside its subscription and replaced only by a newer `subVersion`, as Java's
//!   `FilterDataMapByTopic.register` does;
//! - `check.rs`: the CHECK_CLIENT_CONFIG request Java push consumers send before subscribing
//!   with SQL92.
//!
//! The broker applies a filter at pull time through its pull filter (`broker/pull.rs`); this
//! module knows nothing of the store beyond the encoded properties it is handed.
//!
//! What it leaves out: class filters (`classFilterMode`), the persisted `consumerFilter.json`
//! (filters are rebuilt from the next heartbeat after a restart) and the dead-time bookkeeping
//! that only matters to bloom-filter bitmaps, which are not built.

mod check;
pub mod sql92;

#[cfg(test)]
mod broker_tests;

pub(crate) use check::check_client_config;
pub use check::CheckClientRequestBody;
pub use sql92::{ParseError, Sql92Filter};

use crate::body::{SubscriptionData, EXPRESSION_TYPE_TAG};

/// Java `ExpressionType.SQL92`.
pub const EXPRESSION_TYPE_SQL92: &str = "SQL92";

/// Java `ExpressionType.isTagType`: no type, an empty one, or `TAG`.
pub fn is_tag_type(expression_type: Option<&str>) -> bool {
    expression_type.is_none_or(|t| t.is_empty() || t == EXPRESSION_TYPE_TAG)
}

/// Why a subscription's filter did not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// A type other than TAG and SQL92 (Java has no filter registered for it).
    #[error("the filter type {0} is not supported")]
    UnsupportedType(String),
    #[error("Invalid MessageSelector. {0}")]
    Parse(#[from] ParseError),
}

/// Java `FilterFactory.get(type).compile(expression)` for a non-TAG type.
///
/// # Errors
/// [`CompileError`]: an unknown type or an expression the parser refuses.
pub fn compile(expression_type: &str, expression: &str) -> Result<Sql92Filter, CompileError> {
    if expression_type != EXPRESSION_TYPE_SQL92 {
        return Err(CompileError::UnsupportedType(expression_type.to_string()));
    }
    Ok(Sql92Filter::compile(expression)?)
}

/// A consumer group's compiled filter for one topic (Java `ConsumerFilterData`, without its
/// bloom-filter data and times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerFilterData {
    pub expression_type: String,
    pub filter: Sql92Filter,
    /// The `subVersion` of the subscription it was compiled from; a pull asking for a newer
    /// version is answered FILTER_DATA_NOT_LATEST.
    pub client_version: i64,
}

/// Java `FilterDataMapByTopic.register` for one subscription a heartbeat sent: compiles a new
/// or changed expression when the version is newer; a newer expression that does not compile
/// removes the old filter (so pulls answer FILTER_DATA_NOT_EXIST), and a newer version of the
/// same expression only moves the version. TAG subscriptions and empty expressions leave the
/// slot alone.
pub fn register_filter(slot: &mut Option<ConsumerFilterData>, sub: &SubscriptionData) {
    if is_tag_type(Some(&sub.expression_type)) || sub.sub_string.is_empty() {
        return;
    }
    if let Some(old) = slot.as_mut() {
        if sub.sub_version <= old.client_version {
            return;
        }
        if old.filter.expression() == sub.sub_string && old.expression_type == sub.expression_type {
            old.client_version = sub.sub_version;
            return;
        }
    }
    *slot = match compile(&sub.expression_type, &sub.sub_string) {
        Ok(filter) => Some(ConsumerFilterData {
            expression_type: sub.expression_type.clone(),
            filter,
            client_version: sub.sub_version,
        }),
        Err(e) => {
            tracing::warn!(topic = %sub.topic, expression = %sub.sub_string, error = %e, "consumer filter does not compile");
            None
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(expression: &str, version: i64) -> SubscriptionData {
        SubscriptionData {
            topic: "T".into(),
            sub_string: expression.into(),
            expression_type: EXPRESSION_TYPE_SQL92.into(),
            sub_version: version,
            ..SubscriptionData::default()
        }
    }

    #[test]
    fn expression_types() {
        assert!(is_tag_type(None));
        assert!(is_tag_type(Some("")));
        assert!(is_tag_type(Some("TAG")));
        assert!(!is_tag_type(Some("SQL92")));
        assert!(!is_tag_type(Some("tag")));
        assert!(compile("SQL92", "a > 1").is_ok());
        assert!(matches!(
            compile("SQL92", "a >"),
            Err(CompileError::Parse(_))
        ));
        assert!(matches!(
            compile("CLASS", "a > 1"),
            Err(CompileError::UnsupportedType(_))
        ));
    }

    #[test]
    fn registration_follows_versions_like_java() {
        let mut slot = None;
        register_filter(&mut slot, &sql("a > 1", 5));
        assert_eq!(slot.as_ref().map(|d| d.client_version), Some(5));
        // An older or equal version changes nothing, even with another expression.
        register_filter(&mut slot, &sql("b > 1", 5));
        assert_eq!(slot.as_ref().map(|d| d.filter.expression()), Some("a > 1"));
        // A newer version of the same expression only moves the version.
        register_filter(&mut slot, &sql("a > 1", 7));
        assert_eq!(slot.as_ref().map(|d| d.client_version), Some(7));
        // A newer, different expression replaces it.
        register_filter(&mut slot, &sql("b > 1", 8));
        assert_eq!(slot.as_ref().map(|d| d.filter.expression()), Some("b > 1"));
        // A newer expression that does not compile removes the filter.
        register_filter(&mut slot, &sql("b >", 9));
        assert_eq!(slot, None);
        // A first expression that does not compile registers nothing; TAG never registers.
        register_filter(&mut slot, &sql("((", 10));
        assert_eq!(slot, None);
        let tag = SubscriptionData {
            sub_string: "TagA".into(),
            sub_version: 11,
            ..SubscriptionData::default()
        };
        register_filter(&mut slot, &tag);
        assert_eq!(slot, None);
    }
}
