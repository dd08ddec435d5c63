//! SQL92 property filters (`MessageSelector.bySql`): RocketMQ's selector language, compiled
//! once per subscription and evaluated against each message's properties at pull time.
//!
//! - `lexer.rs`: tokens, recognised with nom;
//! - `parser.rs`: the grammar of `SelectorParser.jj` and Java's construction checks;
//! - `ast.rs`: the tree and its canonical text;
//! - `eval.rs`: three-valued evaluation with Java's type conversions.
//!
//! What it leaves out: RocketMQ's bloom-filter bitmaps in the consume-queue extension (every
//! candidate message is evaluated from its properties) and the `filterSupportRetry` mode that
//! applies a group's filter to its retry topic.

mod ast;
mod eval;
mod lexer;
mod parser;

use std::sync::Arc;

pub use ast::{CompareOp, Expr, Literal, TextOp};
pub use eval::{compare, evaluate, EncodedProperties, EvalError, Outcome, PropertySource, Value};
pub use lexer::LexError;
pub use parser::{parse, ParseError, MAX_DEPTH, MAX_NESTING};

/// A compiled selector: cheap to clone and to share between held pulls.
///
/// Two filters are equal when their expression texts are: the tree is a function of the text.
#[derive(Debug, Clone)]
pub struct Sql92Filter {
    expression: Arc<str>,
    tree: Arc<Expr>,
}

impl Sql92Filter {
    /// Compiles `expression` (Java `SqlFilter.compile`).
    ///
    /// # Errors
    /// [`ParseError`] when RocketMQ would refuse the expression.
    pub fn compile(expression: &str) -> Result<Sql92Filter, ParseError> {
        let tree = parse(expression)?;
        Ok(Sql92Filter {
            expression: Arc::from(expression),
            tree: Arc::new(tree),
        })
    }

    /// The text it was compiled from.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn tree(&self) -> &Expr {
        &self.tree
    }

    /// Whether a message with these properties is delivered: only when the selector is TRUE
    /// (Java `ExpressionMessageFilter.isMatchedByCommitLog`; null and errors filter it out).
    pub fn matches<P: PropertySource + ?Sized>(&self, props: &P) -> bool {
        matches!(evaluate(&self.tree, props), Ok(Some(Value::Bool(true))))
    }

    /// [`Sql92Filter::matches`] on a record's encoded properties.
    pub fn matches_encoded(&self, properties: &[u8]) -> bool {
        self.matches(&EncodedProperties(properties))
    }
}

impl PartialEq for Sql92Filter {
    fn eq(&self, other: &Sql92Filter) -> bool {
        self.expression == other.expression
    }
}

impl Eq for Sql92Filter {}

#[cfg(test)]
mod tests;
