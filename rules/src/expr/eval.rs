//! Evaluation: a checked tree against one sample, three-valued, without
//! allocating.

use serde_json::Value;

use super::{ArithOp, CmpOp, Env, Func, Id, Node, Val};

/// Generic over the environment, so that each caller's field and setting
/// reads are direct calls the compiler can inline (a `dyn Env` cost an
/// indirect call per leaf, several per sample and rule).
pub(super) fn eval<'a, E: Env + ?Sized>(nodes: &'a [Node], id: Id, env: &'a E) -> Val<'a> {
    let Some(node) = nodes.get(id) else {
        return Val::Null;
    };
    let eval = |id: &Id| eval(nodes, *id, env);
    match node {
        Node::Num(n) => Val::Num(*n),
        Node::Bool(b) => Val::Bool(*b),
        Node::Str(s) => Val::Str(s),
        Node::Field(i) => env.field(*i),
        Node::Param { name, slot, index } => {
            let value = env.param_at(*slot, name);
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
        Node::Word {
            field,
            word,
            text,
            eq,
        } => {
            // As `compare` of two texts: equal or not, null if not text.
            let same = match env.word(*field) {
                Some(w) => w == *word,
                None => match env.field(*field) {
                    Val::Str(s) => s == *text,
                    _ => return Val::Null,
                },
            };
            Val::Bool(same == *eq)
        }
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
