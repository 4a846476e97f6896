//! Parsing and checking: tokens into the condition tree, refusing what
//! cannot be right (unknown names, wrong types, values an enum field never
//! takes, wrong arity, too deep) with the byte offset of the culprit.

use super::lex::{Kind, Tok, lex};
use super::{ArithOp, CmpOp, Expr, ExprError, Field, Func, Id, MAX_DEPTH, Node, Type, err};

/// Checks `text` (at most `MAX_LEN` bytes) into an [`Expr`].
pub(super) fn parse(text: &str, fields: &[Field], settings: &[&str]) -> Result<Expr, ExprError> {
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
        let node = self
            .word_cmp(op, &lhs, &rhs)
            .or_else(|| self.word_cmp(op, &rhs, &lhs))
            .unwrap_or(Node::Cmp(op, lhs.id, rhs.id));
        Ok(Sub {
            ty: Some(Type::Bool),
            start: lhs.start,
            end: rhs.end,
            id: self.add(node),
        })
    }

    /// `field == "word"` of a closed-word field, as a compare of places
    /// (text compares were most of a sample rule's evaluation). The
    /// operands' nodes stay in the tree, unused.
    fn word_cmp(&self, op: CmpOp, field: &Sub, literal: &Sub) -> Option<Node> {
        let (Some(Node::Field(i)), Some(Node::Str(s))) =
            (self.nodes.get(field.id), self.nodes.get(literal.id))
        else {
            return None;
        };
        let values = self.fields.get(*i)?.values;
        let word = values.iter().position(|v| *v == &**s)?;
        let eq = match op {
            CmpOp::Eq => true,
            CmpOp::Ne => false,
            _ => return None,
        };
        Some(Node::Word {
            field: *i,
            word,
            text: values[word],
            eq,
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
        let slot = match self.read_params.iter().position(|p| **p == *name) {
            Some(slot) => slot,
            None => {
                self.read_params.push(name.into());
                self.read_params.len() - 1
            }
        };
        Ok(Sub {
            id: self.add(Node::Param {
                name: name.into(),
                slot,
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
pub(super) fn suggest<'n>(
    name: &str,
    candidates: impl IntoIterator<Item = &'n str>,
) -> Option<&'n str> {
    candidates
        .into_iter()
        .map(|c| (levenshtein(name, c), c))
        .filter(|&(d, c)| d <= 2 && d < c.chars().count())
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

pub(super) fn levenshtein(a: &str, b: &str) -> usize {
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
