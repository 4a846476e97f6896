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
//! allocating.
//!
//! Logic is three-valued, like SQL: a field the device did not send, a
//! parameter the equipment lacks, a division by zero or a type mismatch
//! that only shows at run time (registry parameters are JSON, typed only
//! then) is `Null`, and `Null` propagates. A condition *holds* only when it
//! is `true`, so missing data never raises an alarm by itself.

use serde_json::Value;

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
    pub fn compile(text: &str, fields: &[Field], settings: &[&str]) -> Result<Expr, ExprError> {
        if text.len() > MAX_LEN {
            return err(
                0,
                format!(
                    "the condition is {} bytes long; the limit is {MAX_LEN}",
                    text.len()
                ),
            );
        }
        let toks = lex(text)?;
        let mut p = Parser {
            text,
            toks,
            pos: 0,
            depth: 0,
            fields,
            settings,
            nodes: Vec::new(),
            read_fields: Vec::new(),
            read_params: Vec::new(),
            read_settings: Vec::new(),
        };
        if p.peek().kind == Kind::End {
            return err(0, "the condition is empty");
        }
        let root = p.or()?;
        let next = p.peek();
        if next.kind != Kind::End {
            // A value right after a complete condition: most likely a
            // missing operator (`floor > 1 leveled`).
            let hint = match next.kind {
                Kind::Word | Kind::Num(_) | Kind::Str(_) | Kind::LParen => {
                    "; is an operator such as `and` missing before it?"
                }
                _ => "",
            };
            return err(
                next.start,
                format!(
                    "unexpected {} after the end of the condition{hint}",
                    p.show(p.pos)
                ),
            );
        }
        // Dynamic (registry parameter) results are allowed: a non-boolean
        // at run time is simply not true.
        if let Some(ty @ (Type::Num | Type::Str)) = root.ty {
            return err(
                root.start,
                format!(
                    "a condition must be true or false; this is {}",
                    ty.describe()
                ),
            );
        }
        Ok(Expr {
            text: text.to_owned(),
            nodes: p.nodes,
            root: root.id,
            fields: p.read_fields,
            params: p.read_params,
            settings: p.read_settings,
        })
    }

    /// The condition's value for one sample.
    pub fn eval<'a>(&'a self, env: &'a dyn Env) -> Val<'a> {
        eval(&self.nodes, self.root, env)
    }

    /// Whether the condition is true (`Bool(true)`; null and false are not).
    pub fn holds(&self, env: &dyn Env) -> bool {
        self.eval(env) == Val::Bool(true)
    }

    /// Distinct field indices read, in order of first appearance (alarm
    /// details show them).
    pub fn fields(&self) -> Vec<usize> {
        self.fields.clone()
    }

    /// Distinct registry parameter names read (`param.x[1]` reads `x`), in
    /// order of first appearance.
    pub fn params(&self) -> Vec<&str> {
        self.params.iter().map(|p| &**p).collect()
    }

    /// Distinct setting indices read, in order of first appearance.
    pub fn settings(&self) -> Vec<usize> {
        self.settings.clone()
    }

    /// The condition as written.
    pub fn text(&self) -> &str {
        &self.text
    }
}

// ---------------------------------------------------------------- tree

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
        index: Option<usize>,
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

// ---------------------------------------------------------------- evaluation

fn eval<'a>(nodes: &'a [Node], id: Id, env: &'a dyn Env) -> Val<'a> {
    let Some(node) = nodes.get(id) else {
        return Val::Null;
    };
    let eval = |id: &Id| eval(nodes, *id, env);
    match node {
        Node::Num(n) => Val::Num(*n),
        Node::Bool(b) => Val::Bool(*b),
        Node::Str(s) => Val::Str(s),
        Node::Field(i) => env.field(*i),
        Node::Param { name, index } => {
            let value = env.param(name);
            let value = match index {
                None => value,
                Some(i) => value.and_then(Value::as_array).and_then(|a| a.get(*i)),
            };
            match value {
                Some(Value::Number(n)) => n.as_f64().map_or(Val::Null, num),
                Some(Value::Bool(b)) => Val::Bool(*b),
                Some(Value::String(s)) => Val::Str(s),
                _ => Val::Null,
            }
        }
        Node::Setting(i) => num(env.setting(*i)),
        Node::Neg(x) => match eval(x) {
            Val::Num(n) => Val::Num(-n),
            _ => Val::Null,
        },
        Node::Not(x) => match eval(x) {
            Val::Bool(b) => Val::Bool(!b),
            _ => Val::Null,
        },
        Node::Arith(first, rest) => {
            let Val::Num(mut acc) = eval(first) else {
                return Val::Null;
            };
            for (op, x) in rest {
                let Val::Num(y) = eval(x) else {
                    return Val::Null;
                };
                acc = match op {
                    ArithOp::Add => acc + y,
                    ArithOp::Sub => acc - y,
                    ArithOp::Mul => acc * y,
                    ArithOp::Div if y == 0.0 => return Val::Null,
                    ArithOp::Div => acc / y,
                };
            }
            num(acc)
        }
        Node::Cmp(op, a, b) => compare(*op, eval(a), eval(b)),
        Node::And(items) => {
            // false wins over null: `null and false` is false.
            let mut unknown = false;
            for x in items {
                match eval(x) {
                    Val::Bool(false) => return Val::Bool(false),
                    Val::Bool(true) => {}
                    _ => unknown = true,
                }
            }
            if unknown { Val::Null } else { Val::Bool(true) }
        }
        Node::Or(items) => {
            let mut unknown = false;
            for x in items {
                match eval(x) {
                    Val::Bool(true) => return Val::Bool(true),
                    Val::Bool(false) => {}
                    _ => unknown = true,
                }
            }
            if unknown { Val::Null } else { Val::Bool(false) }
        }
        Node::Call(f, args) => match f {
            Func::Abs => match args.first().map(eval) {
                Some(Val::Num(n)) => Val::Num(n.abs()),
                _ => Val::Null,
            },
            Func::Min | Func::Max => {
                // Null propagates, as in arithmetic: `max(a, b)` with `a`
                // missing is unknown, not `b`. `coalesce` chooses defaults.
                let mut acc: Option<f64> = None;
                for x in args {
                    let Val::Num(v) = eval(x) else {
                        return Val::Null;
                    };
                    acc = Some(match acc {
                        None => v,
                        Some(a) if *f == Func::Min => a.min(v),
                        Some(a) => a.max(v),
                    });
                }
                acc.map_or(Val::Null, Val::Num)
            }
            Func::Coalesce => args
                .iter()
                .map(eval)
                .find(|v| *v != Val::Null)
                .unwrap_or(Val::Null),
            Func::Present => match args.first().map(eval) {
                Some(Val::Null) | None => Val::Bool(false),
                Some(_) => Val::Bool(true),
            },
        },
    }
}

/// Infinities and NaN (overflow, `0 * inf`, a NaN reading) are not
/// measurements; comparing them would only produce surprises.
fn num<'a>(x: f64) -> Val<'a> {
    if x.is_finite() {
        Val::Num(x)
    } else {
        Val::Null
    }
}

fn compare<'a>(op: CmpOp, a: Val<'_>, b: Val<'_>) -> Val<'a> {
    let equal = match (a, b) {
        (Val::Num(x), Val::Num(y)) => {
            let Some(ord) = x.partial_cmp(&y) else {
                return Val::Null;
            };
            use std::cmp::Ordering::{Greater, Less};
            return Val::Bool(match op {
                CmpOp::Eq => ord.is_eq(),
                CmpOp::Ne => ord.is_ne(),
                CmpOp::Lt => ord == Less,
                CmpOp::Le => ord != Greater,
                CmpOp::Gt => ord == Greater,
                CmpOp::Ge => ord != Less,
            });
        }
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Bool(x), Val::Bool(y)) => x == y,
        // Null, or types that only met at run time (a registry parameter).
        _ => return Val::Null,
    };
    match op {
        CmpOp::Eq => Val::Bool(equal),
        CmpOp::Ne => Val::Bool(!equal),
        // Strings and booleans have no order (only reachable dynamically).
        _ => Val::Null,
    }
}

// ---------------------------------------------------------------- lexing

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Num(f64),
    Str(Box<str>),
    Word,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Plus,
    Minus,
    Star,
    Slash,
    Cmp(CmpOp),
    End,
}

#[derive(Debug, Clone)]
struct Tok {
    kind: Kind,
    start: usize,
    end: usize,
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The whole text as tokens, ending with `End` (at `text.len()`).
fn lex(text: &str) -> Result<Vec<Tok>, ExprError> {
    let bytes = text.as_bytes();
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let mut toks = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        let (kind, len) = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'(' => (Kind::LParen, 1),
            b')' => (Kind::RParen, 1),
            b'[' => (Kind::LBracket, 1),
            b']' => (Kind::RBracket, 1),
            b',' => (Kind::Comma, 1),
            b'+' => (Kind::Plus, 1),
            b'-' => (Kind::Minus, 1),
            b'*' => (Kind::Star, 1),
            b'/' => (Kind::Slash, 1),
            // `.5`, but not `rule.5` (a missing name, reported by the parser).
            b'.' if at(i + 1).is_ascii_digit() && !is_word(at(i.wrapping_sub(1))) => {
                return err(i, "a number must start with a digit: write `0.5`, not `.5`");
            }
            b'.' => (Kind::Dot, 1),
            b'=' if at(i + 1) == b'=' => (Kind::Cmp(CmpOp::Eq), 2),
            b'=' => return err(i, "unexpected `=`; compare with `==`"),
            b'!' if at(i + 1) == b'=' => (Kind::Cmp(CmpOp::Ne), 2),
            b'!' => return err(i, "unexpected `!`; write `not` to negate, `!=` to compare"),
            b'<' if at(i + 1) == b'=' => (Kind::Cmp(CmpOp::Le), 2),
            b'<' => (Kind::Cmp(CmpOp::Lt), 1),
            b'>' if at(i + 1) == b'=' => (Kind::Cmp(CmpOp::Ge), 2),
            b'>' => (Kind::Cmp(CmpOp::Gt), 1),
            b'&' => return err(i, "unexpected `&`; write `and`"),
            b'|' => return err(i, "unexpected `|`; write `or`"),
            b'"' | b'\'' => lex_string(text, i)?,
            b'0'..=b'9' => lex_number(text, i)?,
            b if is_word_start(b) => {
                let mut j = i + 1;
                while is_word(at(j)) {
                    j += 1;
                }
                (Kind::Word, j - i)
            }
            _ => {
                // `i` is a char boundary: every token so far ended on one.
                let c = text.get(i..).and_then(|s| s.chars().next()).unwrap_or('?');
                return err(i, format!("unexpected character `{c}`"));
            }
        };
        i += len;
        toks.push(Tok {
            kind,
            start,
            end: i,
        });
    }
    toks.push(Tok {
        kind: Kind::End,
        start: text.len(),
        end: text.len(),
    });
    Ok(toks)
}

/// A string starting with the quote at `start`; returns it and its length.
fn lex_string(text: &str, start: usize) -> Result<(Kind, usize), ExprError> {
    let rest = text.get(start..).unwrap_or("");
    let mut chars = rest.char_indices();
    let quote = chars.next().map_or('"', |(_, c)| c);
    let mut value = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, e @ ('"' | '\'' | '\\'))) => value.push(e),
                Some((_, e)) => {
                    return err(
                        start + i,
                        format!(
                            "unknown escape `\\{e}` in a string; only \\\", \\' and \\\\ are allowed"
                        ),
                    );
                }
                None => break,
            },
            c if c == quote => return Ok((Kind::Str(value.into()), i + 1)),
            c => value.push(c),
        }
    }
    err(
        start,
        format!("this string is never closed (no closing {quote})"),
    )
}

/// A number starting with the digit at `start`; returns it and its length.
fn lex_number(text: &str, start: usize) -> Result<(Kind, usize), ExprError> {
    let bytes = text.as_bytes();
    let at = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let digits = |mut i: usize| {
        while at(i).is_ascii_digit() {
            i += 1;
        }
        i
    };
    let mut i = digits(start);
    let mut ok = true;
    if at(i) == b'.' {
        let j = digits(i + 1);
        ok &= j > i + 1;
        i = j;
    }
    if matches!(at(i), b'e' | b'E') {
        let mut j = i + 1;
        if matches!(at(j), b'+' | b'-') {
            j += 1;
        }
        let k = digits(j);
        ok &= k > j;
        i = k;
    }
    // `12ab`, `1.2.3`: swallow the rest so the message shows all of it.
    if is_word(at(i)) || at(i) == b'.' {
        ok = false;
        while is_word(at(i)) || at(i) == b'.' {
            i += 1;
        }
    }
    let src = text.get(start..i).unwrap_or("");
    match src.parse::<f64>() {
        Ok(n) if ok && n.is_finite() => Ok((Kind::Num(n), i - start)),
        Ok(_) if ok => err(start, format!("the number `{src}` is too large")),
        _ => err(start, format!("`{src}` is not a number")),
    }
}

// ---------------------------------------------------------------- parsing

/// A checked sub-expression: its tree, static type (`None`: known only at
/// run time, i.e. it involves a registry parameter) and source span.
struct Sub {
    id: Id,
    ty: Option<Type>,
    start: usize,
    end: usize,
}

struct Parser<'t> {
    text: &'t str,
    /// Never empty: ends with `End`, which `bump` does not pass.
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
    fields: &'t [Field],
    settings: &'t [&'t str],
    nodes: Vec<Node>,
    read_fields: Vec<usize>,
    read_params: Vec<Box<str>>,
    read_settings: Vec<usize>,
}

type Parsed = Result<Sub, ExprError>;

impl<'t> Parser<'t> {
    fn add(&mut self, node: Node) -> Id {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn peek(&self) -> &Tok {
        &self.toks[self.pos]
    }

    fn bump(&mut self) {
        if self.peek().kind != Kind::End {
            self.pos += 1;
        }
    }

    /// The current token's text if it is a word (identifier or keyword).
    fn word(&self) -> Option<&'t str> {
        let t = self.peek();
        match t.kind {
            Kind::Word => self.text.get(t.start..t.end),
            _ => None,
        }
    }

    /// Token `i` for messages.
    fn show(&self, i: usize) -> String {
        match self.toks.get(i) {
            Some(t) if t.kind != Kind::End => {
                format!("`{}`", self.text.get(t.start..t.end).unwrap_or("?"))
            }
            _ => "the end of the condition".to_owned(),
        }
    }

    /// A sub-expression's source for messages, shortened if long.
    fn snippet(&self, sub: &Sub) -> String {
        let s = self.text.get(sub.start..sub.end).unwrap_or("?");
        if s.chars().count() <= 40 {
            format!("`{s}`")
        } else {
            format!("`{}…`", s.chars().take(37).collect::<String>())
        }
    }

    fn enter(&mut self, at: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return err(
                at,
                format!(
                    "the condition is nested too deeply (more than {MAX_DEPTH} levels of \
                     parentheses, function calls, `not` and `-`)"
                ),
            );
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    /// Refuses `sub` as an operand of `op` unless it is `want` (or dynamic).
    fn need(&self, sub: &Sub, want: Type, op: &str) -> Result<(), ExprError> {
        match sub.ty {
            Some(ty) if ty != want => {
                let hint = if ty == Type::Str && want == Type::Num && op.starts_with(['<', '>']) {
                    " (text can only be compared with `==` and `!=`)"
                } else {
                    ""
                };
                err(
                    sub.start,
                    format!(
                        "cannot use `{op}` on {}: it is {}, not {}{hint}",
                        self.snippet(sub),
                        ty.describe(),
                        want.describe()
                    ),
                )
            }
            _ => Ok(()),
        }
    }

    fn or(&mut self) -> Parsed {
        self.logic("or", Self::and, Node::Or)
    }

    fn and(&mut self) -> Parsed {
        self.logic("and", Self::not, Node::And)
    }

    /// `next (word next)*` as one n-ary node.
    fn logic(
        &mut self,
        word: &'static str,
        next: fn(&mut Self) -> Parsed,
        make: fn(Vec<Id>) -> Node,
    ) -> Parsed {
        let first = next(self)?;
        if self.word() != Some(word) {
            return Ok(first);
        }
        self.need(&first, Type::Bool, word)?;
        let (start, mut end) = (first.start, first.end);
        let mut items = vec![first.id];
        while self.word() == Some(word) {
            self.bump();
            let rhs = next(self)?;
            self.need(&rhs, Type::Bool, word)?;
            end = rhs.end;
            items.push(rhs.id);
        }
        Ok(Sub {
            id: self.add(make(items)),
            ty: Some(Type::Bool),
            start,
            end,
        })
    }

    fn not(&mut self) -> Parsed {
        if self.word() != Some("not") {
            return self.cmp();
        }
        let start = self.peek().start;
        self.enter(start)?;
        self.bump();
        let inner = self.not()?;
        self.need(&inner, Type::Bool, "not")?;
        self.leave();
        Ok(Sub {
            end: inner.end,
            id: self.add(Node::Not(inner.id)),
            ty: Some(Type::Bool),
            start,
        })
    }

    fn cmp(&mut self) -> Parsed {
        let lhs = self.sum()?;
        let Kind::Cmp(op) = self.peek().kind else {
            return Ok(lhs);
        };
        self.bump();
        let rhs = self.sum()?;
        self.check_cmp(op, &lhs, &rhs)?;
        Ok(Sub {
            ty: Some(Type::Bool),
            start: lhs.start,
            end: rhs.end,
            id: self.add(Node::Cmp(op, lhs.id, rhs.id)),
        })
    }

    // Checks live outside the recursive descent so that its stack frames
    // stay small (debug builds keep every `format!` temporary in the frame).

    fn check_cmp(&self, op: CmpOp, lhs: &Sub, rhs: &Sub) -> Result<(), ExprError> {
        if let Kind::Cmp(next) = self.peek().kind {
            return err(
                self.peek().start,
                format!(
                    "comparisons do not chain: `{}` cannot follow a comparison; \
                     write `a < b and b < c`",
                    next.symbol()
                ),
            );
        }
        if !op.is_equality() {
            self.need(lhs, Type::Num, op.symbol())?;
            return self.need(rhs, Type::Num, op.symbol());
        }
        if let (Some(a), Some(b)) = (lhs.ty, rhs.ty)
            && a != b
        {
            return err(
                rhs.start,
                format!(
                    "cannot compare {} ({}) with {} ({})",
                    self.snippet(lhs),
                    a.describe(),
                    self.snippet(rhs),
                    b.describe()
                ),
            );
        }
        self.check_values(lhs, rhs)?;
        self.check_values(rhs, lhs)
    }

    /// `door == "clsoed"` can never hold; refusing it catches the typo.
    fn check_values(&self, field: &Sub, literal: &Sub) -> Result<(), ExprError> {
        let (Some(Node::Field(i)), Some(Node::Str(s))) =
            (self.nodes.get(field.id), self.nodes.get(literal.id))
        else {
            return Ok(());
        };
        let Some(f) = self.fields.get(*i) else {
            return Ok(());
        };
        if f.values.is_empty() || f.values.contains(&&**s) {
            return Ok(());
        }
        err(
            literal.start,
            format!(
                "{} is never {s:?}; it is one of: {}",
                f.name,
                f.values.join(", ")
            ),
        )
    }

    fn sum(&mut self) -> Parsed {
        self.arith(Self::prod, |k| match k {
            Kind::Plus => Some(ArithOp::Add),
            Kind::Minus => Some(ArithOp::Sub),
            _ => None,
        })
    }

    fn prod(&mut self) -> Parsed {
        self.arith(Self::unary, |k| match k {
            Kind::Star => Some(ArithOp::Mul),
            Kind::Slash => Some(ArithOp::Div),
            _ => None,
        })
    }

    /// `next (op next)*` as one flat node.
    fn arith(
        &mut self,
        next: fn(&mut Self) -> Parsed,
        ops: fn(&Kind) -> Option<ArithOp>,
    ) -> Parsed {
        let first = next(self)?;
        let Some(op) = ops(&self.peek().kind) else {
            return Ok(first);
        };
        self.need(&first, Type::Num, op.symbol())?;
        let (start, mut end) = (first.start, first.end);
        let mut rest = Vec::new();
        while let Some(op) = ops(&self.peek().kind) {
            self.bump();
            let rhs = next(self)?;
            self.need(&rhs, Type::Num, op.symbol())?;
            end = rhs.end;
            rest.push((op, rhs.id));
        }
        Ok(Sub {
            id: self.add(Node::Arith(first.id, rest)),
            ty: Some(Type::Num),
            start,
            end,
        })
    }

    fn unary(&mut self) -> Parsed {
        if self.peek().kind != Kind::Minus {
            return self.atom();
        }
        let start = self.peek().start;
        self.enter(start)?;
        self.bump();
        let inner = self.unary()?;
        self.need(&inner, Type::Num, "-")?;
        self.leave();
        // `-2` is a literal, not an operation.
        let id = match self.nodes.get_mut(inner.id) {
            Some(Node::Num(n)) => {
                *n = -*n;
                inner.id
            }
            _ => self.add(Node::Neg(inner.id)),
        };
        Ok(Sub {
            id,
            ty: Some(Type::Num),
            start,
            end: inner.end,
        })
    }

    fn atom(&mut self) -> Parsed {
        let tok = self.peek().clone();
        let leaf = |id, ty| Sub {
            id,
            ty,
            start: tok.start,
            end: tok.end,
        };
        match tok.kind {
            Kind::Num(n) => {
                self.bump();
                Ok(leaf(self.add(Node::Num(n)), Some(Type::Num)))
            }
            Kind::Str(s) => {
                self.bump();
                Ok(leaf(self.add(Node::Str(s)), Some(Type::Str)))
            }
            Kind::LParen => {
                self.enter(tok.start)?;
                self.bump();
                let inner = self.or()?;
                let end = self.close(tok.start, "`)`")?;
                self.leave();
                Ok(Sub {
                    start: tok.start,
                    end,
                    ..inner
                })
            }
            Kind::Word => self.word_atom(&tok),
            _ => Err(self.no_value()),
        }
    }

    /// The current token is not a value (or there is none).
    fn no_value(&self) -> ExprError {
        let (offset, message) = match (self.peek().kind == Kind::End, self.pos.checked_sub(1)) {
            (true, Some(prev)) => (
                self.toks[prev].start,
                format!("missing a value after {}", self.show(prev)),
            ),
            (true, None) => (0, "the condition is empty".to_owned()),
            (false, _) => (
                self.peek().start,
                format!("expected a value, found {}", self.show(self.pos)),
            ),
        };
        ExprError { offset, message }
    }

    /// Consumes the `)` closing the `(` at `open`; returns its end.
    fn close(&mut self, open: usize, what: &str) -> Result<usize, ExprError> {
        let t = self.peek();
        match t.kind {
            Kind::RParen => {
                let end = t.end;
                self.bump();
                Ok(end)
            }
            Kind::End => err(open, "this `(` is never closed"),
            _ => err(
                t.start,
                format!("expected {what} here, found {}", self.show(self.pos)),
            ),
        }
    }

    fn word_atom(&mut self, tok: &Tok) -> Parsed {
        let name = self.text.get(tok.start..tok.end).unwrap_or("");
        let leaf = |id, ty| Sub {
            id,
            ty,
            start: tok.start,
            end: tok.end,
        };
        match name {
            "true" | "false" => {
                self.bump();
                let id = self.add(Node::Bool(name == "true"));
                return Ok(leaf(id, Some(Type::Bool)));
            }
            "not" => {
                return err(
                    tok.start,
                    "`not` cannot stand here; put it in parentheses: `(not …)`",
                );
            }
            "and" | "or" => {
                return err(tok.start, format!("expected a value, found `{name}`"));
            }
            "param" | "rule" => return self.prefixed(tok, name),
            _ => {}
        }
        self.bump();
        if self.peek().kind == Kind::LParen {
            return self.call(tok, name);
        }
        if let Some(i) = self.fields.iter().position(|f| f.name == name) {
            if !self.read_fields.contains(&i) {
                self.read_fields.push(i);
            }
            let ty = self.fields[i].ty;
            return Ok(leaf(self.add(Node::Field(i)), Some(ty)));
        }
        if Func::lookup(name).is_some() {
            return err(
                tok.start,
                format!("{name} is a function; call it: `{name}(…)`"),
            );
        }
        let names: Vec<&str> = self.fields.iter().map(|f| f.name).collect();
        let mut message = format!("unknown field `{name}`; ");
        if let Some(s) = suggest(name, names.iter().copied()) {
            message.push_str(&format!("did you mean `{s}`? "));
        }
        if names.is_empty() {
            message.push_str("this stream has no fields");
        } else {
            message.push_str(&format!("the fields are: {}", names.join(", ")));
        }
        err(tok.start, message)
    }

    /// `param.NAME`, `param.NAME[INDEX]`, `rule.NAME`.
    fn prefixed(&mut self, tok: &Tok, prefix: &str) -> Parsed {
        let example = if prefix == "param" {
            "param.floors"
        } else {
            "rule.speed_mps"
        };
        self.bump();
        if self.peek().kind != Kind::Dot {
            return err(
                tok.start,
                format!("`{prefix}` must be followed by `.` and a name, e.g. {example}"),
            );
        }
        self.bump();
        let Some(name) = self.word() else {
            return err(
                self.peek().start,
                format!(
                    "expected a name after `{prefix}.`, found {}",
                    self.show(self.pos)
                ),
            );
        };
        let mut end = self.peek().end;
        self.bump();
        if prefix == "rule" {
            let Some(i) = self.settings.iter().position(|s| *s == name) else {
                let mut message = format!("rule.{name} is not a setting of this rule; ");
                if let Some(s) = suggest(name, self.settings.iter().copied()) {
                    message.push_str(&format!("did you mean rule.{s}? "));
                }
                if self.settings.is_empty() {
                    message.push_str("this rule has no settings");
                } else {
                    message.push_str(&format!("its settings are: {}", self.settings.join(", ")));
                }
                return err(tok.start, message);
            };
            if !self.read_settings.contains(&i) {
                self.read_settings.push(i);
            }
            return Ok(Sub {
                id: self.add(Node::Setting(i)),
                ty: Some(Type::Num),
                start: tok.start,
                end,
            });
        }
        let mut index = None;
        if self.peek().kind == Kind::LBracket {
            let open = self.peek().start;
            self.bump();
            let t = self.peek();
            let digits = self.text.get(t.start..t.end).unwrap_or("");
            if !matches!(t.kind, Kind::Num(_)) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return err(
                    t.start,
                    format!(
                        "an index must be a whole number like 0 or 1, found {}",
                        self.show(self.pos)
                    ),
                );
            }
            // Too many digits for usize: out of range of any array anyway.
            index = Some(digits.parse::<usize>().unwrap_or(usize::MAX));
            self.bump();
            let t = self.peek();
            match t.kind {
                Kind::RBracket => {
                    end = t.end;
                    self.bump();
                }
                Kind::End => return err(open, "this `[` is never closed"),
                _ => {
                    return err(
                        t.start,
                        format!("expected `]` here, found {}", self.show(self.pos)),
                    );
                }
            }
        }
        if !self.read_params.iter().any(|p| **p == *name) {
            self.read_params.push(name.into());
        }
        Ok(Sub {
            id: self.add(Node::Param {
                name: name.into(),
                index,
            }),
            ty: None,
            start: tok.start,
            end,
        })
    }

    /// `name(args)`; the current token is the `(`.
    fn call(&mut self, tok: &Tok, name: &str) -> Parsed {
        let Some(func) = Func::lookup(name) else {
            let names = Func::ALL.map(|(n, _)| n);
            let mut message = format!("unknown function `{name}`; ");
            if let Some(s) = suggest(name, names) {
                message.push_str(&format!("did you mean `{s}`? "));
            }
            message.push_str(&format!("the functions are: {}", names.join(", ")));
            return err(tok.start, message);
        };
        let open = self.peek().start;
        self.enter(open)?;
        self.bump();
        let mut args = Vec::new();
        let end = if self.peek().kind == Kind::RParen {
            let end = self.peek().end;
            self.bump();
            end
        } else {
            loop {
                args.push(self.or()?);
                if self.peek().kind != Kind::Comma {
                    break self.close(open, "`,` or `)`")?;
                }
                self.bump();
            }
        };
        self.leave();

        let (least, exact) = func.arity();
        if args.len() < least || (exact && args.len() > least) {
            let plural = if least == 1 { "" } else { "s" };
            let bound = if exact { "" } else { "at least " };
            return err(
                tok.start,
                format!(
                    "{name} takes {bound}{least} argument{plural}, not {}",
                    args.len()
                ),
            );
        }
        let ty = match func {
            Func::Abs | Func::Min | Func::Max => {
                for a in &args {
                    self.need(a, Type::Num, name)?;
                }
                Some(Type::Num)
            }
            Func::Present => Some(Type::Bool),
            Func::Coalesce => {
                // The first statically typed argument sets the type; the
                // others must agree (dynamic ones can only be checked at
                // run time, where a mismatch makes comparisons null).
                let mut first: Option<(&Sub, Type)> = None;
                for a in &args {
                    let Some(ty) = a.ty else { continue };
                    match first {
                        None => first = Some((a, ty)),
                        Some((f, want)) if want != ty => {
                            return err(
                                a.start,
                                format!(
                                    "coalesce's arguments must have one type: {} is {}, \
                                     but {} is {}",
                                    self.snippet(f),
                                    want.describe(),
                                    self.snippet(a),
                                    ty.describe()
                                ),
                            );
                        }
                        Some(_) => {}
                    }
                }
                first.map(|(_, ty)| ty)
            }
        };
        Ok(Sub {
            id: self.add(Node::Call(func, args.iter().map(|a| a.id).collect())),
            ty,
            start: tok.start,
            end,
        })
    }
}

/// The closest of `candidates` to a misspelt `name`, if close enough to be
/// a plausible typo (and not merely short: `x` is not a typo of `a`).
fn suggest<'n>(name: &str, candidates: impl IntoIterator<Item = &'n str>) -> Option<&'n str> {
    candidates
        .into_iter()
        .map(|c| (levenshtein(name, c), c))
        .filter(|&(d, c)| d <= 2 && d < c.chars().count())
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let replace = prev[j] + usize::from(ca != cb);
            cur[j + 1] = replace.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DOOR: &[&str] = &["open", "closed", "opening", "closing"];
    const fn field(name: &'static str, ty: Type) -> Field {
        Field {
            name,
            ty,
            values: &[],
        }
    }
    const FIELDS: &[Field] = &[
        field("floor", Type::Num),
        field("speed_mps", Type::Num),
        Field {
            values: DOOR,
            ..field("door", Type::Str)
        },
        field("leveled", Type::Bool),
        field("load_pct", Type::Num),
        field("state", Type::Str), // any string
        field("wind_mps", Type::Num),
    ];
    const SETTINGS: &[&str] = &["speed_mps", "limit_mps"];

    /// One elevator sample plus its equipment's registry and rule settings.
    #[derive(Default)]
    struct Sample {
        floor: Option<f64>,
        speed_mps: Option<f64>,
        door: Option<&'static str>,
        leveled: Option<bool>,
        load_pct: Option<f64>,
        state: Option<&'static str>,
        wind_mps: Option<f64>,
        params: serde_json::Map<String, Value>,
        settings: [f64; 2],
    }

    impl Env for Sample {
        fn field(&self, index: usize) -> Val<'_> {
            let num = |x: Option<f64>| x.map_or(Val::Null, Val::Num);
            let s = |x: Option<&'static str>| x.map_or(Val::Null, Val::Str);
            match index {
                0 => num(self.floor),
                1 => num(self.speed_mps),
                2 => s(self.door),
                3 => self.leveled.map_or(Val::Null, Val::Bool),
                4 => num(self.load_pct),
                5 => s(self.state),
                6 => num(self.wind_mps),
                _ => Val::Null,
            }
        }
        fn param(&self, name: &str) -> Option<&Value> {
            self.params.get(name)
        }
        fn setting(&self, index: usize) -> f64 {
            self.settings.get(index).copied().unwrap_or(f64::NAN)
        }
    }

    /// A moving car with its door open, between floors; everything present.
    fn moving() -> Sample {
        let params = json!({
            "floors": [-1, 12],
            "wind_limit_mps": 15.5,
            "has_door_lock": true,
            "model": "MRL-630",
            "nested": {"a": 1},
            "nothing": null,
        });
        Sample {
            floor: Some(3.0),
            speed_mps: Some(1.6),
            door: Some("open"),
            leveled: Some(false),
            load_pct: Some(40.0),
            state: Some("running"),
            wind_mps: Some(12.0),
            params: params.as_object().cloned().unwrap_or_default(),
            settings: [0.3, 20.0],
        }
    }

    fn compile(text: &str) -> Expr {
        Expr::compile(text, FIELDS, SETTINGS)
            .unwrap_or_else(|e| panic!("{text:?} refused at {}: {e}", e.offset))
    }

    fn refuse(text: &str) -> ExprError {
        match Expr::compile(text, FIELDS, SETTINGS) {
            Ok(_) => panic!("{text:?} compiled but should not"),
            Err(e) => e,
        }
    }

    fn eval_in(text: &str, env: &Sample) -> Val<'static> {
        // Detach the borrow so tests can compare against literals.
        match compile(text).eval(env) {
            Val::Null => Val::Null,
            Val::Num(n) => Val::Num(n),
            Val::Bool(b) => Val::Bool(b),
            Val::Str(s) => Val::Str(s.to_owned().leak()),
        }
    }

    fn holds(text: &str, env: &Sample) -> bool {
        compile(text).holds(env)
    }

    /// Asserts the error's offset points at `at` (first occurrence in text).
    fn refuse_at(text: &str, at: &str) -> String {
        let e = refuse(text);
        let want = text
            .find(at)
            .unwrap_or_else(|| panic!("{at:?} not in {text:?}"));
        assert_eq!(e.offset, want, "{text:?}: {e}");
        e.message
    }

    #[test]
    fn the_spec_examples_compile_and_evaluate() {
        let mut s = moving();
        assert!(holds(
            r#"door != "closed" and speed_mps > rule.speed_mps and not leveled"#,
            &s
        ));
        let wind =
            r#"state == "running" and wind_mps >= coalesce(param.wind_limit_mps, rule.limit_mps)"#;
        assert!(!holds(wind, &s)); // 12 < 15.5 from the registry
        s.params.remove("wind_limit_mps");
        assert!(!holds(wind, &s)); // 12 < 20 from the rule
        s.wind_mps = Some(20.0);
        assert!(holds(wind, &s)); // 20 >= 20
        let floors = "floor < param.floors[0] or floor > param.floors[1]";
        assert!(!holds(floors, &s));
        s.floor = Some(13.0);
        assert!(holds(floors, &s));
        s.floor = Some(-2.0);
        assert!(holds(floors, &s));
    }

    #[test]
    fn precedence_and_associativity() {
        let s = moving();
        for text in [
            "1 + 2 * 3 == 7",
            "(1 + 2) * 3 == 9",
            "10 - 4 - 3 == 3",
            "12 / 2 / 3 == 2",
            "-2 * 3 == -6",
            "- -2 == 2",
            "2 - -2 == 4",
            "-(1 + 2) == -3",
            "1e3 == 1000 and 1.5E-1 == 0.15",
            "true or false and false", // and binds tighter than or
            "not 1 == 2",              // not binds looser than ==
            "not not true",
            "floor * 2 + load_pct / 4 == 16",
        ] {
            assert_eq!(eval_in(text, &s), Val::Bool(true), "{text}");
        }
        // `not a and b` is `(not a) and b`.
        let mut s = moving();
        s.leveled = Some(false);
        s.door = Some("closed");
        assert!(!holds(r#"not leveled and door == "open""#, &s));
        assert!(holds(r#"not (leveled and door == "open")"#, &s));
    }

    #[test]
    fn functions() {
        let mut s = moving();
        s.load_pct = None;
        for text in [
            "abs(-3) == 3 and abs(floor - 5) == 2",
            "min(3, 1, 2) == 1 and max(3, 1, 2) == 3",
            "min(floor, speed_mps) == 1.6 and max(floor, 10) == 10",
            "coalesce(param.missing, rule.limit_mps) == 20",
            "coalesce(load_pct, param.missing, 7) == 7",
            "coalesce(param.wind_limit_mps, 0) == 15.5",
            "present(floor) and not present(load_pct) and not present(param.missing)",
            "present(param.nothing) == false", // JSON null is absent
        ] {
            assert_eq!(eval_in(text, &s), Val::Bool(true), "{text}");
        }
        // Null propagates through min/max (use coalesce for a default).
        assert_eq!(eval_in("max(load_pct, 10) > 5", &s), Val::Null);
        assert_eq!(eval_in("abs(load_pct) > 5", &s), Val::Null);
        assert_eq!(
            eval_in("coalesce(load_pct, param.missing) > 5", &s),
            Val::Null
        );
        // Whitespace is free, including newlines in rule files.
        assert!(holds("max(\n  floor,\n  1\n) == 3", &s));
    }

    #[test]
    fn three_valued_logic() {
        // `leveled` absent is null.
        let s = Sample::default();
        let v = |text: &str| eval_in(text, &s);
        let (t, f, n) = (Val::Bool(true), Val::Bool(false), Val::Null);
        let cases = [("true", t), ("false", f), ("leveled", n)];
        for (a, va) in cases {
            for (b, vb) in cases {
                let and = match (va, vb) {
                    (Val::Bool(false), _) | (_, Val::Bool(false)) => f,
                    (Val::Null, _) | (_, Val::Null) => n,
                    _ => t,
                };
                let or = match (va, vb) {
                    (Val::Bool(true), _) | (_, Val::Bool(true)) => t,
                    (Val::Null, _) | (_, Val::Null) => n,
                    _ => f,
                };
                assert_eq!(v(&format!("{a} and {b}")), and, "{a} and {b}");
                assert_eq!(v(&format!("{a} or {b}")), or, "{a} or {b}");
            }
        }
        assert_eq!(v("leveled and false"), f);
        assert_eq!(v("leveled or true"), t);
        assert_eq!(v("not leveled"), n);
        assert_eq!(v("leveled == true"), n);
        assert_eq!(v("leveled != true"), n);
        // Null is neither true nor false: both a condition and its negation
        // fail to hold, so a missing reading raises nothing.
        assert!(!holds("speed_mps > 1", &s));
        assert!(!holds("not (speed_mps > 1)", &s));
        assert_eq!(v("speed_mps + 1 > 1"), n);
        assert_eq!(v("-speed_mps < 0"), n);
        assert_eq!(v(r#"door == "open""#), n);
    }

    #[test]
    fn arithmetic_edge_cases_are_null() {
        let s = moving();
        assert_eq!(eval_in("floor / 0 > 1", &s), Val::Null);
        assert_eq!(eval_in("floor / (floor - floor) == 1", &s), Val::Null);
        assert_eq!(eval_in("1e300 * 1e300 > 0", &s), Val::Null); // overflow
        assert_eq!(eval_in("0 / 5 == 0", &s), Val::Bool(true));
        assert_eq!(eval_in("0.1 + 0.2 == 0.3", &s), Val::Bool(false)); // exact ==
    }

    #[test]
    fn strings() {
        let s = moving();
        for text in [
            r#"state == 'running'"#,
            r#"state != "Running""#, // case-sensitive
            r#""say \"hi\"" == 'say "hi"'"#,
            r#"'it\'s' == "it's""#,
            r#""überlast" == 'überlast'"#,
            r#""" == ''"#,
        ] {
            assert_eq!(eval_in(text, &s), Val::Bool(true), "{text}");
        }
        assert!(holds(r#"'a\\b' == "a\\b""#, &s));
    }

    #[test]
    fn registry_parameters() {
        let s = moving();
        for text in [
            "param.floors[0] == -1 and param.floors[1] == 12",
            "param.has_door_lock",
            "param.has_door_lock == true and not (param.has_door_lock == false)",
            r#"param.model == "MRL-630""#,
            "present(param.floors) == false", // an array is not a value
            "param . floors [ 1 ] == 12",
        ] {
            assert_eq!(eval_in(text, &s), Val::Bool(true), "{text}");
        }
        for text in [
            "param.floors[2] == 1", // out of range
            "param.floors[99999999999999999999999] == 1",
            "param.model[0] == 1", // not an array
            "param.missing == 1",  // equipment lacks it
            "param.missing",
            "param.nested == 1",         // objects are not values
            "param.model == 1",          // string vs number at run time
            "param.model < param.model", // strings have no order
            "param.model + 1 > 0",
            "param.has_door_lock < param.has_door_lock",
            "floor + param.has_door_lock > 0",
            "not param.model",
            "param.model and true",
            "abs(param.model) > 0",
        ] {
            assert_eq!(eval_in(text, &s), Val::Null, "{text}");
        }
        // `param.x` is dynamic: accepted where any type is.
        assert!(holds("param.floors[1] > floor and param.has_door_lock", &s));
    }

    #[test]
    fn settings_and_what_a_condition_reads() {
        let s = moving();
        assert!(holds("speed_mps > rule.speed_mps", &s));
        assert!(!holds("load_pct > rule.limit_mps * 2", &s));
        let e = compile(
            "floor < param.floors[0] or floor > param.floors[1] or load_pct > rule.limit_mps \
             and param.x == 1 and speed_mps > rule.speed_mps and floor > rule.limit_mps",
        );
        assert_eq!(e.fields(), vec![0, 4, 1]);
        assert_eq!(e.params(), vec!["floors", "x"]);
        assert_eq!(e.settings(), vec![1, 0]);
        assert!(e.text().starts_with("floor < param.floors[0]"));
        let e = compile("true");
        assert!(e.fields().is_empty() && e.params().is_empty() && e.settings().is_empty());
    }

    #[test]
    fn works_through_dyn_env_and_rule_without_settings() {
        let s = moving();
        let env: &dyn Env = &s;
        let e = Expr::compile("leveled == false", FIELDS, &[]).unwrap();
        assert!(e.holds(env));
        assert_eq!(e.eval(env), Val::Bool(true));
        // An uninteresting but well-typed condition with a dynamic result.
        let e = Expr::compile("param.has_door_lock", &[], &[]).unwrap();
        assert!(e.holds(env));
    }

    #[test]
    fn lexing_errors() {
        assert!(refuse_at("floor # 2", "#").contains("unexpected character `#`"));
        assert!(refuse_at("floor > 1 → 2", "→").contains("`→`"));
        assert!(refuse_at(r#"door = "open""#, "=").contains("`==`"));
        assert!(refuse_at("!leveled", "!").contains("`not`"));
        assert!(refuse_at("leveled && true", "&").contains("`and`"));
        assert!(refuse_at("leveled || true", "|").contains("`or`"));
        assert!(refuse_at(r#"door == "open"#, "\"").contains("never closed"));
        assert!(refuse_at(r#"door == 'open\'"#, "'").contains("never closed"));
        assert!(refuse_at(r#"door == "a\nb""#, "\\").contains("unknown escape `\\n`"));
        assert_eq!(refuse_at("floor > 1.", "1."), "`1.` is not a number");
        assert_eq!(refuse_at("floor > 1e", "1e"), "`1e` is not a number");
        assert_eq!(refuse_at("floor > 1e+ 2", "1e+"), "`1e+` is not a number");
        assert_eq!(refuse_at("floor > 12ab", "12ab"), "`12ab` is not a number");
        assert_eq!(
            refuse_at("floor > 1.2.3", "1.2.3"),
            "`1.2.3` is not a number"
        );
        assert!(refuse_at("floor > 1e999", "1e999").contains("too large"));
        assert!(refuse_at("floor > .5", ".5").contains("`0.5`"));
    }

    #[test]
    fn structure_errors() {
        assert_eq!(refuse_at("(floor > 1", "("), "this `(` is never closed");
        assert_eq!(
            refuse_at("floor > 1)", ")"),
            "unexpected `)` after the end of the condition"
        );
        assert!(refuse_at("(floor > 1 leveled)", "leveled").contains("expected `)`"));
        assert_eq!(refuse("leveled leveled").offset, 8);
        assert_eq!(refuse("").message, "the condition is empty");
        assert_eq!(refuse(" \n\t").offset, 0);
        assert_eq!(refuse_at("floor >", ">"), "missing a value after `>`");
        assert_eq!(
            refuse_at("leveled and", "and"),
            "missing a value after `and`"
        );
        assert_eq!(
            refuse_at("and leveled", "and"),
            "expected a value, found `and`"
        );
        assert_eq!(refuse_at("floor > )", ")"), "expected a value, found `)`");
        assert_eq!(refuse_at("floor > * 2", "*"), "expected a value, found `*`");
        assert!(refuse_at("leveled == not leveled", "not").contains("parentheses"));
        assert!(refuse_at("1 < floor < 3", "< 3").contains("do not chain"));
        assert!(refuse_at("1 == floor == 3", "== 3").contains("do not chain"));
        assert_eq!(refuse_at("max(floor, 2", "("), "this `(` is never closed");
        assert!(refuse_at("max(floor 2) > 1", "2").contains("expected `,` or `)`"));
        assert_eq!(
            refuse_at("max(floor, ) > 1", ")"),
            "expected a value, found `)`"
        );
        assert!(refuse_at("param > 1", "param").contains("param.floors"));
        assert!(refuse_at("rule.1 > 1", "1").contains("expected a name after `rule.`"));
        assert!(refuse_at("param.floors[-1] > 1", "-").contains("whole number"));
        assert!(refuse_at("param.floors[1.5] > 1", "1.5").contains("whole number"));
        assert!(refuse_at("param.floors[floor] > 1", "floor]").contains("whole number"));
        assert_eq!(
            refuse_at("1 > param.floors[1", "["),
            "this `[` is never closed"
        );
        assert!(refuse_at("param.floors[1 2] > 1", "2").contains("expected `]`"));
        // Trailing junk is named, with a hint.
        let m = refuse_at("leveled true", "true");
        assert!(
            m.starts_with("unexpected `true` after the end of the condition"),
            "{m}"
        );
    }

    #[test]
    fn unknown_names() {
        assert_eq!(
            refuse_at("sped_mps > 1", "sped_mps"),
            "unknown field `sped_mps`; did you mean `speed_mps`? the fields are: \
             floor, speed_mps, door, leveled, load_pct, state, wind_mps"
        );
        let m = refuse_at("leveled and flor > 2", "flor");
        assert!(
            m.starts_with("unknown field `flor`; did you mean `floor`?"),
            "{m}"
        );
        let m = refuse_at("zzz > 1", "zzz");
        assert!(
            !m.contains("did you mean") && m.contains("the fields are: floor"),
            "{m}"
        );
        // A one-letter name is not a typo of another one-letter name.
        let one = [Field {
            name: "a",
            ty: Type::Num,
            values: &[],
        }];
        let e = Expr::compile("b > 1", &one, &[]).unwrap_err();
        assert_eq!(e.message, "unknown field `b`; the fields are: a");
        let e = Expr::compile("b > 1", &[], &[]).unwrap_err();
        assert_eq!(e.message, "unknown field `b`; this stream has no fields");

        assert_eq!(
            refuse_at("speed_mps > rule.limt_mps", "rule"),
            "rule.limt_mps is not a setting of this rule; did you mean rule.limit_mps? \
             its settings are: speed_mps, limit_mps"
        );
        assert_eq!(
            refuse_at("speed_mps > rule.x", "rule"),
            "rule.x is not a setting of this rule; its settings are: speed_mps, limit_mps"
        );
        let e = Expr::compile("speed_mps > rule.x", FIELDS, &[]).unwrap_err();
        assert_eq!(
            e.message,
            "rule.x is not a setting of this rule; this rule has no settings"
        );
        assert_eq!(e.offset, 12);

        let m = refuse_at("leveled and sqrt(floor) > 2", "sqrt");
        assert!(
            m.starts_with("unknown function `sqrt`; the functions are: abs, min"),
            "{m}"
        );
        let m = refuse_at("coalese(floor, 1) > 2", "coalese");
        assert!(m.contains("did you mean `coalesce`?"), "{m}");
        assert!(refuse_at("abs > 1", "abs").contains("is a function"));
        // Keywords are not field names.
        let m = refuse_at("or > 1", "or");
        assert_eq!(m, "expected a value, found `or`");
    }

    #[test]
    fn arity() {
        assert_eq!(
            refuse_at("abs(floor, 2) > 1", "abs"),
            "abs takes 1 argument, not 2"
        );
        assert_eq!(refuse_at("abs() > 1", "abs"), "abs takes 1 argument, not 0");
        assert_eq!(
            refuse_at("present()", "present"),
            "present takes 1 argument, not 0"
        );
        assert_eq!(
            refuse_at("leveled or min(floor) > 1", "min"),
            "min takes at least 2 arguments, not 1"
        );
        assert!(refuse_at("max(floor) > 1", "max").contains("at least 2"));
        assert!(refuse_at("coalesce(floor) > 1", "coalesce").contains("at least 2"));
    }

    #[test]
    fn type_errors() {
        assert_eq!(
            refuse_at("door + 1 > 2", "door"),
            "cannot use `+` on `door`: it is text, not a number"
        );
        assert!(refuse_at("floor + leveled > 1", "leveled").contains("`+` on `leveled`"));
        assert!(refuse_at("floor * (leveled) > 1", "(leveled)").contains("`(leveled)`"));
        assert!(refuse_at("-leveled", "leveled").contains("`-` on `leveled`"));
        let m = refuse_at(r#"door < "x""#, "door");
        assert!(
            m.contains("text can only be compared with `==` and `!=`"),
            "{m}"
        );
        assert!(refuse_at("floor >= leveled", "leveled").contains("not a number"));
        assert_eq!(
            refuse_at("speed_mps and leveled", "speed_mps"),
            "cannot use `and` on `speed_mps`: it is a number, not true or false"
        );
        assert!(refuse_at("leveled or door", "door").contains("`or` on `door`"));
        assert!(refuse_at("not floor", "floor").contains("`not` on `floor`"));
        assert_eq!(
            refuse_at("door == 1", "1"),
            "cannot compare `door` (text) with `1` (a number)"
        );
        assert!(refuse_at(r#"leveled == "yes""#, "\"yes\"").contains("(true or false)"));
        assert!(refuse_at("abs(door) > 1", "door").contains("`abs` on `door`"));
        assert!(refuse_at("max(1, leveled) > 1", "leveled").contains("`max` on"));
        let m = refuse_at("coalesce(param.x, door, 1) == 1", "1)");
        assert!(m.contains("coalesce's arguments must have one type"), "{m}");
        // The whole condition must be true or false.
        assert_eq!(
            refuse_at("speed_mps + 1", "speed_mps"),
            "a condition must be true or false; this is a number"
        );
        assert_eq!(
            refuse_at("  door", "door"),
            "a condition must be true or false; this is text"
        );
        assert!(
            refuse("coalesce(param.x, 1)")
                .message
                .contains("this is a number")
        );
        assert!(refuse("abs(param.x)").message.contains("this is a number"));
        // Dynamic operands are accepted everywhere.
        compile("param.x");
        compile("param.x + 1 > param.y and not param.z or param.s == door");
        compile("coalesce(param.x, leveled)");
    }

    #[test]
    fn closed_value_sets() {
        assert_eq!(
            refuse_at(r#"door != "clsoed""#, "\""),
            r#"door is never "clsoed"; it is one of: open, closed, opening, closing"#
        );
        assert!(refuse_at(r#"leveled and "Open" == door"#, "\"Open\"").contains("never"));
        assert!(refuse_at(r#"(door) == 'x'"#, "'x'").contains("door is never \"x\""));
        compile(r#"door == "closed" or door != 'opening'"#);
        compile(r#"state == "anything at all""#); // open set
        compile(r#"door == param.door"#); // dynamic: checked at run time
    }

    #[test]
    fn limits() {
        // 100 000 parentheses: refused, not a stack overflow.
        let deep = "(".repeat(100_000);
        let e = refuse(&deep);
        assert!(e.message.contains("limit is 4096"), "{}", e.message);
        let long = format!("leveled{}", " or leveled".repeat(500));
        assert!(long.len() > MAX_LEN);
        assert!(refuse(&long).message.contains("bytes long"));

        // 64 levels of nesting are fine; the 65th is refused where it starts.
        let ok = format!("{}leveled{}", "(".repeat(64), ")".repeat(64));
        assert_eq!(eval_in(&ok, &moving()), Val::Bool(false));
        let too = format!("{}leveled{}", "(".repeat(65), ")".repeat(65));
        let e = refuse(&too);
        assert_eq!(e.offset, 64);
        assert!(e.message.contains("nested too deeply"));
        for text in [
            "(".repeat(4000),
            format!("{}true", "not ".repeat(1000)),
            format!("{}1 > 0", "-".repeat(4000)),
            format!("{}1) > 0", "abs(".repeat(1000)),
        ] {
            assert!(
                refuse(&text).message.contains("nested too deeply"),
                "{text:.20}"
            );
        }

        // Long flat chains within the length limit are one level deep.
        let sum = format!("floor{} > 0", " + floor".repeat(500));
        assert!(sum.len() <= MAX_LEN);
        assert!(holds(&sum, &moving()));
        let ors = format!("leveled{} or true", " or leveled".repeat(350));
        assert!(holds(&ors, &moving()));
    }

    #[test]
    fn deepest_conditions_fit_a_small_stack() {
        // Tokio workers get 2 MiB; half of that is plenty, even unoptimised.
        let run = || {
            let s = moving();
            let parens = format!("{}floor{} > 0", "(".repeat(64), ")".repeat(64));
            let calls = format!("{}floor{} > 0", "abs(-".repeat(32), ")".repeat(32));
            let nots = format!("{}(floor > 0)", "not ".repeat(63));
            for text in [parens, calls, nots] {
                let e = compile(&text);
                assert!(e.eval(&s) != Val::Null, "{text:.20}");
            }
        };
        let thread = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(run);
        assert!(thread.unwrap().join().is_ok());
    }

    #[test]
    fn display_is_the_message() {
        let e = refuse("flor > 1");
        assert_eq!(e.to_string(), e.message);
    }

    /// Deterministic xorshift so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'p>(&mut self, of: &[&'p str]) -> &'p str {
            of[(self.next() % of.len() as u64) as usize]
        }
    }

    fn check_any(text: &str, envs: &[Sample]) {
        match Expr::compile(text, FIELDS, SETTINGS) {
            Ok(e) => {
                for env in envs {
                    let _ = e.eval(env);
                    let _ = e.holds(env);
                }
                let _ = (e.fields(), e.params(), e.settings());
            }
            Err(e) => {
                assert!(e.offset <= text.len(), "{text:?}: offset {}", e.offset);
                assert!(
                    text.is_char_boundary(e.offset),
                    "{text:?}: offset {}",
                    e.offset
                );
                assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        let envs = [moving(), Sample::default()];
        // One case per line; the last few need escapes.
        let cases = r#"(
)
((
))
()
[
]
,
.
..
'
"
\
'\
"\
-
--
not
not not
and
or
param
param.
param.[
param.x[
param.x[0
param.x]
rule
rule.
rule..
abs(
abs)
min(,)
1e
1e+
0x10
1_000
é
floor é
"é
'ü\
floor > 1 and
> 1
== ==
1 2 3
true false
param.x[0][1]
param.x.y
rule.speed_mps.x
door == "😀"
abs(((
present(present(floor))
coalesce(1, 'a')
max(1, 2
floor >= >= 1"#;
        for text in cases.lines().chain(["\u{0}", "\t\r\n", "floor\u{a0}> 1"]) {
            check_any(text, &envs);
        }
        // Pieces to glue together at random, separated by `~`.
        let pieces: Vec<&str> = "(~)~[~]~,~.~+~-~*~/~==~!=~<~<=~>~>=~=~!~and~or~not~true~false~\
            floor~door~leveled~state~flor~param~rule~speed_mps~limit_mps~floors~abs~min~max~\
            coalesce~present~0~1~1.5~1e3~\"open\"~'x'~\"~'~\\~é~#~ ~ ~  "
            .split('~')
            .collect();
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20_000 {
            let n = 1 + (rng.next() % 14) as usize;
            let text: String = (0..n).map(|_| rng.pick(&pieces)).collect();
            check_any(&text, &envs);
        }
        // Random bytes (as lossy UTF-8).
        for _ in 0..5_000 {
            let n = (rng.next() % 32) as usize;
            let bytes: Vec<u8> = (0..n).map(|_| (rng.next() % 256) as u8).collect();
            check_any(&String::from_utf8_lossy(&bytes), &envs);
        }
    }

    #[test]
    fn levenshtein_distances() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("flor", "floor"), 1);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("ab", ""), 2);
        assert_eq!(
            suggest("lod_pct", FIELDS.iter().map(|f| f.name)),
            Some("load_pct")
        );
        assert_eq!(suggest("xyz", FIELDS.iter().map(|f| f.name)), None);
    }
}
