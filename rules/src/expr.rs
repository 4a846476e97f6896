//! Rule conditions: the small expression language operators write rules in,
//! e.g. `door != "closed" and speed_mps > rule.speed_mps and not leveled`.
//!
//! Text comes in once, when a rule is loaded: [`Expr::compile`] lexes,
//! parses and type-checks it against the stream's [`Field`]s and the rule's
//! settings, so a typo, a value an enum field never takes or a comparison
//! between a number and a string is refused with a byte offset (for
//! file:line:column) before any sample arrives. A checked [`Expr`] comes
//! out. Per sample the engine calls [`Expr::eval`] / [`Expr::holds`] with an
//! [`Env`] that supplies the sample's fields, the equipment's registry
//! parameters and the rule's thresholds, and gets a [`Val`] back without
//! allocating. Checking also compiles: `field == "word"` of a field with a
//! closed set of values compares the word's place in that set (a number,
//! [`Env::word`]), and each `param.x` carries its place among the
//! parameters the condition reads ([`Env::param_at`]), so an environment
//! that read them once per sample need not look them up by name.
//!
//! Logic is three-valued, like SQL: a field the device did not send, a
//! parameter the equipment lacks, a division by zero or a type mismatch
//! that only shows at run time (registry parameters are JSON, typed only
//! then) is `Null`, and `Null` propagates. A condition *holds* only when it
//! is `true`, so missing data never raises an alarm by itself.
//!
//! Layout: `expr/lex.rs` turns text into tokens, `expr/parse.rs` checks
//! them into the tree below (types, field values, arity, limits) and
//! `expr/eval.rs` walks it; `expr/tests.rs` covers all three.

use serde_json::Value;

mod eval;
mod lex;
mod parse;
#[cfg(test)]
mod tests;

/// Longer conditions are refused: nobody writes them by hand, and the limit
/// bounds the work of compile and eval (flat chains like `a + a + …`).
const MAX_LEN: usize = 4096;
/// Deepest nesting of parentheses, function calls, `not` and unary `-`.
/// Parsing and evaluation recurse along it, so it bounds stack use.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Type {
    Num,
    Bool,
    Str,
}

impl Type {
    fn describe(self) -> &'static str {
        match self {
            Type::Num => "a number",
            Type::Bool => "true or false",
            Type::Str => "text",
        }
    }
}

/// One field of a stream as conditions see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub name: &'static str,
    pub ty: Type,
    /// For `Str` fields with a closed set of values (enums like door:
    /// open/closed/opening/closing): the allowed values; empty = any string.
    pub values: &'static [&'static str],
}

/// A value during evaluation. `Null`: absent (an optional field the device
/// did not send, a registry parameter the equipment lacks, arithmetic on
/// null, division by zero).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Val<'a> {
    Null,
    Num(f64),
    Bool(bool),
    Str(&'a str),
}

/// What a condition reads, supplied by the caller per evaluation.
pub(crate) trait Env {
    /// The stream field at `index` in the `fields` slice given to `compile`.
    fn field(&self, index: usize) -> Val<'_>;
    /// The equipment's registry parameter `name` (a JSON value), if any.
    fn param(&self, name: &str) -> Option<&Value>;
    /// The same, where `slot` is `name`'s place in [`Expr::params`]: an
    /// environment that resolved the parameters once (for several
    /// conditions of one sample) answers without a lookup by name.
    fn param_at(&self, _slot: usize, name: &str) -> Option<&Value> {
        self.param(name)
    }
    /// For a field with a closed set of values: the place of the sample's
    /// value in the field's `values`, so that `door == "closed"` compares
    /// numbers; `None` makes the comparison read the text.
    fn word(&self, _index: usize) -> Option<usize> {
        None
    }
    /// The rule's own threshold at `index` in the `settings` slice given to
    /// `compile`.
    fn setting(&self, index: usize) -> f64;
}

/// Why a condition was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct ExprError {
    /// Byte offset in `text` of the token that is wrong (used to report
    /// file:line:column). Always a char boundary, at most `text.len()`.
    pub offset: usize,
    pub message: String,
}

fn err<T>(offset: usize, message: impl Into<String>) -> Result<T, ExprError> {
    Err(ExprError {
        offset,
        message: message.into(),
    })
}

/// A checked condition, ready to evaluate against any number of samples.
#[derive(Debug, Clone)]
pub(crate) struct Expr {
    text: String,
    /// The tree, children before parents; `root` is the whole condition.
    nodes: Vec<Node>,
    root: Id,
    fields: Vec<usize>,
    params: Vec<Box<str>>,
    settings: Vec<usize>,
}

impl Expr {
    /// Parses and checks `text`. `fields`: the stream's fields (bare
    /// identifiers). `settings`: names of the rule's own numeric thresholds
    /// (`rule.NAME`).
    pub(crate) fn compile(
        text: &str,
        fields: &[Field],
        settings: &[&str],
    ) -> Result<Expr, ExprError> {
        if text.len() > MAX_LEN {
            return err(
                0,
                format!(
                    "the condition is {} bytes long; the limit is {MAX_LEN}",
                    text.len()
                ),
            );
        }
        parse::parse(text, fields, settings)
    }

    /// The condition's value for one sample.
    pub(crate) fn eval<'a, E: Env + ?Sized>(&'a self, env: &'a E) -> Val<'a> {
        eval::eval(&self.nodes, self.root, env)
    }

    /// Whether the condition is true (`Bool(true)`; null and false are not).
    pub(crate) fn holds<E: Env + ?Sized>(&self, env: &E) -> bool {
        self.eval(env) == Val::Bool(true)
    }

    /// Distinct field indices read, in order of first appearance (alarm
    /// details show them).
    pub(crate) fn fields(&self) -> Vec<usize> {
        self.fields.clone()
    }

    /// Distinct registry parameter names read (`param.x[1]` reads `x`), in
    /// order of first appearance.
    pub(crate) fn params(&self) -> Vec<&str> {
        self.params.iter().map(|p| &**p).collect()
    }

    /// Distinct setting indices read, in order of first appearance.
    pub(crate) fn settings(&self) -> Vec<usize> {
        self.settings.clone()
    }

    /// The condition as written.
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

/// A node's index in `Expr::nodes`.
type Id = usize;

#[derive(Debug, Clone)]
enum Node {
    Num(f64),
    Bool(bool),
    Str(Box<str>),
    Field(usize),
    Param {
        name: Box<str>,
        /// `name`'s place in `Expr::params` ([`Env::param_at`]).
        slot: usize,
        index: Option<usize>,
    },
    /// `field == "word"` (`eq`) or `!=` for a field with a closed set of
    /// values: compared by the word's place in the field's `values`
    /// ([`Env::word`]), by its text where the environment has no places.
    Word {
        field: usize,
        word: usize,
        text: &'static str,
        eq: bool,
    },
    Setting(usize),
    Neg(Id),
    Not(Id),
    /// `first (op operand)*`, evaluated left to right. Chains are flat so
    /// that `1 + 1 + … + 1` is one level of recursion, not thousands.
    Arith(Id, Vec<(ArithOp, Id)>),
    Cmp(CmpOp, Id, Id),
    And(Vec<Id>),
    Or(Vec<Id>),
    Call(Func, Vec<Id>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl ArithOp {
    fn symbol(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
        }
    }

    fn is_equality(self) -> bool {
        matches!(self, CmpOp::Eq | CmpOp::Ne)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Func {
    Abs,
    Min,
    Max,
    Coalesce,
    Present,
}

impl Func {
    const ALL: [(&'static str, Func); 5] = [
        ("abs", Func::Abs),
        ("min", Func::Min),
        ("max", Func::Max),
        ("coalesce", Func::Coalesce),
        ("present", Func::Present),
    ];

    fn lookup(name: &str) -> Option<Func> {
        Func::ALL.iter().find(|(n, _)| *n == name).map(|&(_, f)| f)
    }

    /// Least number of arguments, and whether that is also the most. A
    /// `min` of one value is a mistake, not a use.
    fn arity(self) -> (usize, bool) {
        match self {
            Func::Abs | Func::Present => (1, true),
            Func::Min | Func::Max | Func::Coalesce => (2, false),
        }
    }
}
