//! Limits on people's SQL, shared by both backends: the shape check that
//! runs before anything parses (how deep one expression chains, how many
//! relations a query joins or unions), the gate that bounds how many run at
//! once, the answer's row and byte budget, and scrubbing row values out of
//! error messages.
//!
//! The shape check works on tokens, not on a syntax tree: a parser builds
//! `1 + 1 + … + 1` as a left-deep tree in a loop, and every later pass
//! (planning, optimising, evaluating, dropping) walks it recursively, so a
//! long enough chain overflows any stack. Counting tokens is flat, so no
//! input can make the check itself deep.

use std::time::Duration;

use arrow::array::Array;
use arrow::record_batch::RecordBatch;
use datafusion::sql::sqlparser::dialect::Dialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use serde::Deserialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::StoreError;

/// What people's queries may use together; the engine's own queries are
/// not held to them. Plain data, shared by both backends (`threads` and
/// `memory_bytes` are the embedded store's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SqlLimits {
    /// Worker threads of the embedded store's SQL runtime (its own threads:
    /// the engine's runtime, which serves ingest, acks and `/healthz`, never
    /// runs a query).
    pub threads: usize,
    /// Bytes DataFusion may hold for people's queries together (joins,
    /// sorts, aggregates, and values the amplifying string functions make);
    /// a query that needs more is refused.
    pub memory_bytes: usize,
    /// People's queries running at once; more wait for a slot within their
    /// timeout.
    pub max_concurrent: usize,
    /// Operators one expression may chain (`a + b + …`, `x = 1 OR …`).
    pub max_expr_depth: usize,
    /// Relations and operators one query may plan to.
    pub max_plan_nodes: usize,
    /// Bytes of query text at most: the shape check holds every token of
    /// the text in memory at once (about 100 bytes each).
    pub max_query_bytes: usize,
    /// Nice steps the embedded store's SQL threads run below the engine's
    /// (0–19; Linux). The scheduler then gives a core to the alarm path
    /// as soon as it has work, instead of sharing it evenly with a query
    /// that can keep every SQL thread busy for its whole timeout.
    pub nice: i32,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            threads: 2,
            memory_bytes: 1 << 30,
            max_concurrent: 4,
            max_expr_depth: 256,
            max_plan_nodes: 500,
            max_query_bytes: 256 << 10,
            nice: 10,
        }
    }
}

impl SqlLimits {
    /// Zero would refuse every query or start no thread.
    pub(crate) fn normalized(mut self) -> Self {
        self.threads = self.threads.max(1);
        self.memory_bytes = self.memory_bytes.max(1 << 20);
        self.max_concurrent = self.max_concurrent.max(1);
        self.max_expr_depth = self.max_expr_depth.max(8);
        self.max_plan_nodes = self.max_plan_nodes.max(8);
        self.max_query_bytes = self.max_query_bytes.max(1 << 10);
        self.nice = self.nice.clamp(0, 19);
        self
    }
}

/// Lowers the calling thread's CPU priority by `by` nice steps (at most to
/// 19). On Linux the nice value is per thread, and raising it (a lower
/// priority) needs no privilege; where it cannot be set the thread keeps its priority and a
/// warning says so.
pub(crate) fn lower_this_thread(by: i32) {
    if by <= 0 {
        return;
    }
    let set = rustix::process::getpriority_process(None)
        .and_then(|now| rustix::process::setpriority_process(None, (now + by).min(19)));
    if let Err(e) = set {
        tracing::warn!(by, error = %e, "Cannot lower an SQL thread's priority.");
    }
}

/// How deep expressions chain and how many relations a statement names,
/// estimated from its tokens; both are upper bounds of what a parser builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Shape {
    /// The longest operator chain, counting enclosing chains.
    pub(crate) depth: usize,
    /// Where that chain's deepest operator is (line, column; 1-based).
    pub(crate) at: (u64, u64),
    /// SELECTs, JOINs, VALUES and comma-joined tables.
    pub(crate) relations: usize,
}

/// One parenthesis (or CASE … END) level of the token walk.
struct Level {
    /// The chain length this level started from.
    base: usize,
    /// The chain length now.
    chain: usize,
    /// Inside a FROM list, where commas join relations.
    in_from: bool,
}

/// Measures `sql` without parsing it. Text the tokenizer refuses measures
/// as empty: the parser then refuses it with a better message.
pub(crate) fn shape(sql: &str, dialect: &dyn Dialect) -> Shape {
    let Ok(tokens) = Tokenizer::new(dialect, sql).tokenize_with_location() else {
        return Shape::default();
    };
    let mut out = Shape::default();
    let mut levels = vec![Level {
        base: 0,
        chain: 0,
        in_from: false,
    }];
    for t in tokens {
        let nested = levels.len() > 1;
        let top = levels.last_mut().expect("the outermost level stays");
        match &t.token {
            Token::Whitespace(_) | Token::EOF | Token::Period => {}
            Token::LParen | Token::LBracket | Token::LBrace => {
                let base = top.chain;
                levels.push(Level {
                    base,
                    chain: base,
                    in_from: false,
                });
            }
            Token::RParen | Token::RBracket | Token::RBrace if nested => {
                levels.pop();
            }
            Token::Comma | Token::SemiColon => {
                top.chain = top.base;
                if top.in_from {
                    out.relations += 1;
                }
            }
            Token::Word(w) => match w.keyword {
                // CASE … END nests like parentheses; its branches are separate expressions.
                Keyword::CASE => {
                    let base = top.chain + 1;
                    levels.push(Level {
                        base,
                        chain: base,
                        in_from: false,
                    });
                }
                Keyword::END if nested => {
                    levels.pop();
                }
                Keyword::WHEN | Keyword::THEN | Keyword::ELSE => top.chain = top.base,
                Keyword::FROM => {
                    top.chain = top.base;
                    top.in_from = true;
                }
                // Each SELECT (a set operation joins SELECTs), VALUES and JOIN adds a relation.
                Keyword::SELECT | Keyword::JOIN | Keyword::VALUES => {
                    top.chain = top.base;
                    top.in_from &= w.keyword == Keyword::JOIN;
                    out.relations += 1;
                }
                Keyword::UNION | Keyword::INTERSECT | Keyword::EXCEPT => {
                    top.chain = top.base;
                    top.in_from = false;
                }
                // A join condition is a fresh expression; commas after it still join tables.
                Keyword::ON | Keyword::USING => top.chain = top.base,
                Keyword::WHERE
                | Keyword::GROUP
                | Keyword::HAVING
                | Keyword::ORDER
                | Keyword::LIMIT
                | Keyword::OFFSET
                | Keyword::WITH
                | Keyword::QUALIFY
                | Keyword::WINDOW => {
                    top.chain = top.base;
                    top.in_from = false;
                }
                Keyword::AND
                | Keyword::OR
                | Keyword::NOT
                | Keyword::IS
                | Keyword::LIKE
                | Keyword::ILIKE
                | Keyword::SIMILAR
                | Keyword::IN
                | Keyword::BETWEEN
                | Keyword::COLLATE
                | Keyword::AT
                | Keyword::OVERLAPS
                | Keyword::REGEXP
                | Keyword::RLIKE
                | Keyword::DIV => link(top, &t.span.start, &mut out),
                _ => {}
            },
            Token::Number(..)
            | Token::Char(_)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::TripleSingleQuotedByteStringLiteral(_)
            | Token::TripleDoubleQuotedByteStringLiteral(_)
            | Token::SingleQuotedRawStringLiteral(_)
            | Token::DoubleQuotedRawStringLiteral(_)
            | Token::TripleSingleQuotedRawStringLiteral(_)
            | Token::TripleDoubleQuotedRawStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_) => {}
            // Every other symbol is an operator of some kind: counting one
            // that is not only makes the estimate higher.
            _ => link(top, &t.span.start, &mut out),
        }
    }
    out
}

fn link(level: &mut Level, at: &datafusion::sql::sqlparser::tokenizer::Location, out: &mut Shape) {
    level.chain += 1;
    if level.chain > out.depth {
        out.depth = level.chain;
        out.at = (at.line, at.column);
    }
}

/// Refuses a statement deeper or larger than `limits` allow, before any
/// parser sees it.
pub(crate) fn check_shape(
    sql: &str,
    dialect: &dyn Dialect,
    limits: &SqlLimits,
) -> Result<(), StoreError> {
    if sql.len() > limits.max_query_bytes {
        return Err(StoreError::QueryTooComplex(format!(
            "the query text is {} KiB; at most {} KiB are allowed (engine.sql_max_query_kib)",
            sql.len().div_ceil(1024),
            limits.max_query_bytes / 1024
        )));
    }
    let s = shape(sql, dialect);
    if s.depth > limits.max_expr_depth {
        return Err(StoreError::QueryTooComplex(format!(
            "the expression at line {}, column {} chains {} operators; at most {} are allowed \
             (engine.sql_max_expr_depth). Split it up, or write a list of values as IN (…)",
            s.at.0, s.at.1, s.depth, limits.max_expr_depth
        )));
    }
    if s.relations > limits.max_plan_nodes {
        return Err(plan_too_large(s.relations, limits));
    }
    Ok(())
}

pub(crate) fn plan_too_large(nodes: usize, limits: &SqlLimits) -> StoreError {
    StoreError::QueryTooComplex(format!(
        "the query plans to {nodes} relations and operators; at most {} are allowed \
         (engine.sql_max_plan_nodes)",
        limits.max_plan_nodes
    ))
}

/// Bounds how many of people's queries run at once.
#[derive(Debug)]
pub(crate) struct Gate {
    /// One permit per running query (`max_concurrent`); a permit is held
    /// until the query's work has really stopped, not just been answered.
    slots: std::sync::Arc<Semaphore>,
    size: usize,
}

impl Gate {
    pub(crate) fn new(size: usize) -> Gate {
        Gate {
            slots: std::sync::Arc::new(Semaphore::new(size)),
            size,
        }
    }

    /// A slot, waiting at most `wait`.
    pub(crate) async fn enter(&self, wait: Duration) -> Result<OwnedSemaphorePermit, StoreError> {
        match tokio::time::timeout(wait, std::sync::Arc::clone(&self.slots).acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::QueryBusy(self.size)),
        }
    }
}

/// The rows and bytes an answer may still take.
#[derive(Debug)]
pub(crate) struct AnswerBudget {
    rows: usize,
    bytes: usize,
    pub(crate) truncated: bool,
}

impl AnswerBudget {
    pub(crate) fn new(max_rows: usize, max_bytes: usize) -> Self {
        Self {
            rows: max_rows,
            bytes: max_bytes,
            truncated: false,
        }
    }

    /// The part of `batch` that fits, compacted when cut so that it holds
    /// no more memory than its rows need; `None` once nothing more fits.
    pub(crate) fn take(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        let rows = batch.num_rows();
        let size = answer_bytes(&batch);
        if rows <= self.rows && size <= self.bytes {
            self.rows -= rows;
            self.bytes -= size;
            return Some(batch);
        }
        self.truncated = true;
        // The most rows that fit: a binary search over prefixes.
        let (mut lo, mut hi) = (0usize, rows.min(self.rows));
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if answer_bytes(&batch.slice(0, mid)) <= self.bytes {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        let kept = if lo == 0 {
            None
        } else {
            let part = batch.slice(0, lo);
            self.bytes -= answer_bytes(&part);
            arrow::compute::concat_batches(&part.schema(), [&part]).ok()
        };
        self.rows = 0;
        kept
    }

    /// Takes `bytes` for one more row; false (and truncated) when it does not fit.
    pub(crate) fn take_row(&mut self, bytes: usize) -> bool {
        if self.rows == 0 || bytes > self.bytes {
            self.truncated = true;
            self.rows = 0;
            return false;
        }
        self.rows -= 1;
        self.bytes -= bytes;
        true
    }
}

/// The memory `batch`'s rows take (a slice counts only its own rows).
pub(crate) fn answer_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum()
}

/// An error message of a running query with the values taken out: only
/// its first line, quoted text and standalone numbers replaced by `…`.
/// What kind of error it was stays, so the query can still be fixed.
pub(crate) fn scrub(message: &str) -> String {
    let first = message.lines().next().unwrap_or("");
    let mut out = String::with_capacity(first.len());
    let mut chars = first.chars().peekable();
    let mut prev: Option<char> = None;
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                // Quoted text runs to the matching quote (a doubled quote is
                // part of it); an unmatched one hides the rest.
                out.push(c);
                out.push('…');
                while let Some(d) = chars.next() {
                    if d == c {
                        if chars.peek() == Some(&c) {
                            chars.next();
                            continue;
                        }
                        out.push(c);
                        break;
                    }
                }
                prev = Some(c);
            }
            '0'..='9' if !prev.is_some_and(|p| p.is_alphanumeric() || p == '_') => {
                while chars
                    .peek()
                    .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '.' || *d == '_')
                {
                    chars.next();
                }
                out.push('…');
                prev = Some('0');
            }
            _ => {
                out.push(c);
                prev = Some(c);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::GenericDialect;

    use super::*;

    fn depth(sql: &str) -> usize {
        shape(sql, &GenericDialect {}).depth
    }

    #[test]
    fn chains_count_at_their_level_and_add_up_through_parentheses() {
        let sum = format!("SELECT {}", vec!["1"; 1000].join(" + "));
        assert_eq!(depth(&sum), 999);
        let ors: Vec<String> = (0..1000).map(|i| format!("region = '{i}'")).collect();
        let where_or = format!("SELECT * FROM t WHERE {}", ors.join(" OR "));
        assert_eq!(depth(&where_or), 1999);
        // Separate expressions do not add up.
        assert_eq!(depth("SELECT a + b, c + d FROM t WHERE x = 1 AND y = 2"), 3);
        assert_eq!(depth("SELECT f(a + b, c + d + e)"), 2);
        // Nesting does.
        assert_eq!(depth("SELECT a + (b + (c + d))"), 3);
        assert_eq!(
            depth("SELECT a + CASE WHEN x = 1 THEN y + z ELSE 0 END + b"),
            3
        );
        let in_list: Vec<String> = (0..5000).map(|i| i.to_string()).collect();
        assert_eq!(
            depth(&format!(
                "SELECT * FROM t WHERE x IN ({})",
                in_list.join(",")
            )),
            1
        );
        // Quoted operators are text.
        assert_eq!(depth("SELECT '+ + + +'"), 0);
    }

    #[test]
    fn relations_count_selects_joins_unions_and_from_lists() {
        let s = |sql: &str| shape(sql, &GenericDialect {}).relations;
        assert_eq!(s("SELECT 1"), 1);
        assert_eq!(s("SELECT * FROM a, b, c WHERE x IN (1, 2, 3)"), 3);
        assert_eq!(s("SELECT * FROM a JOIN b ON a.x = b.x JOIN c USING (y)"), 3);
        let unions = vec!["SELECT 1"; 600].join(" UNION ALL ");
        assert_eq!(s(&unions), 600);
        let limits = SqlLimits::default();
        assert!(matches!(
            check_shape(&unions, &GenericDialect {}, &limits),
            Err(StoreError::QueryTooComplex(m)) if m.contains("sql_max_plan_nodes")
        ));
    }

    #[test]
    fn long_texts_are_refused_before_they_are_tokenized() {
        let long = format!("SELECT '{}'", "x".repeat(300 << 10));
        let err = check_shape(&long, &GenericDialect {}, &SqlLimits::default()).unwrap_err();
        assert!(
            matches!(&err, StoreError::QueryTooComplex(m) if m.contains("sql_max_query_kib")),
            "{err:?}"
        );
    }

    #[test]
    fn the_refusal_says_where_and_what_to_do() {
        let sum = format!("SELECT {}", vec!["1"; 1000].join("+"));
        let err = check_shape(&sum, &GenericDialect {}, &SqlLimits::default()).unwrap_err();
        let StoreError::QueryTooComplex(m) = err else {
            panic!("{err:?}")
        };
        assert!(m.contains("line 1, column"), "{m}");
        assert!(m.contains("at most 256"), "{m}");
    }

    #[test]
    fn scrubbing_keeps_the_kind_of_error_and_drops_values() {
        assert_eq!(
            scrub(
                "Arrow error: Cast error: Cannot cast string 'OWN-S|Tianhe Towers|440104' to value of Int32 type"
            ),
            "Arrow error: Cast error: Cannot cast string '…' to value of Int32 type"
        );
        assert_eq!(
            scrub("Arithmetic overflow: Overflow happened on: 9223372036854775807 + 1"),
            "Arithmetic overflow: Overflow happened on: … + …"
        );
        assert_eq!(
            scrub("invalid input syntax for type integer: \"it's \"\"x\"\"\""),
            "invalid input syntax for type integer: \"…\""
        );
        assert_eq!(
            scrub("regex parse error:\n    secret(\n    ^"),
            "regex parse error:"
        );
        assert_eq!(scrub("Divide by zero error"), "Divide by zero error");
        assert_eq!(
            scrub("Utf8View and Int64 in column c2"),
            "Utf8View and Int64 in column c2"
        );
    }

    #[test]
    fn the_answer_budget_cuts_at_a_row_that_fits() {
        use arrow::array::StringArray;
        let values: Vec<String> = (0..100).map(|_| "x".repeat(1000)).collect();
        let batch = RecordBatch::try_from_iter([(
            "v",
            std::sync::Arc::new(StringArray::from(values)) as _,
        )])
        .unwrap();
        let mut budget = AnswerBudget::new(1000, 10_500);
        let kept = budget.take(batch.clone()).unwrap();
        assert_eq!(kept.num_rows(), 10);
        assert!(budget.truncated);
        assert!(answer_bytes(&kept) <= 10_500);
        let mut rows = AnswerBudget::new(30, usize::MAX);
        assert_eq!(rows.take(batch.clone()).unwrap().num_rows(), 30);
        assert!(rows.truncated);
        assert!(rows.take(batch).is_none());
    }
}
