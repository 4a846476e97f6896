//! Lexing: a condition's text into tokens, each with its byte span.

use super::{CmpOp, ExprError, err};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
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
pub(super) struct Tok {
    pub kind: Kind,
    pub start: usize,
    pub end: usize,
}

fn is_word_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// The whole text as tokens, ending with `End` (at `text.len()`).
pub(super) fn lex(text: &str) -> Result<Vec<Tok>, ExprError> {
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
