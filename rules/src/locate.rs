//! Where a key of a TOML document is: the line and column a rule-file
//! mistake is reported at, down to the token inside a condition string.

use std::ops::Range;

use toml_edit::{ImDocument, Item, TableLike};

use crate::config::line_column;

/// Line and column of the deepest part of `path` (table names, then a key)
/// found in `text`. With `offset`, the path ends at a string value and the
/// position is that byte offset inside the string's contents.
pub(crate) fn find(text: &str, path: &[String], offset: Option<usize>) -> Option<(usize, usize)> {
    let doc = ImDocument::parse(text).ok()?;
    let mut table: &dyn TableLike = doc.as_table();
    let mut best: Option<Range<usize>> = None;
    for (depth, name) in path.iter().enumerate() {
        let Some((key, item)) = table.get_key_value(name) else {
            break;
        };
        best = key.span().or(best);
        let last = depth + 1 == path.len();
        if last && let (Some(at), Some(span)) = (offset, item.span()) {
            return Some(line_column(
                text,
                span.start + string_start(&text[span.clone()]) + at,
            ));
        }
        match as_table(item) {
            Some(inner) => table = inner,
            None => break,
        }
    }
    best.map(|span| line_column(text, span.start))
}

fn as_table(item: &Item) -> Option<&dyn TableLike> {
    item.as_table_like()
}

/// Bytes before a string value's contents: its quotes, and the newline a
/// multi-line string drops after them.
fn string_start(raw: &str) -> usize {
    for quotes in ["\"\"\"", "'''"] {
        if let Some(rest) = raw.strip_prefix(quotes) {
            let newline = if rest.starts_with("\r\n") {
                2
            } else {
                usize::from(rest.starts_with('\n'))
            };
            return 3 + newline;
        }
    }
    1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn finds_keys_of_tables_and_tokens_inside_conditions() {
        let text = "clear_s = 10\n\n[rule.\"site.x\"]\nstream = \"elevator\"\nwhen = \"speed_mps > 1 and sped > 2\"\n[category.escalator.\"elevator.trapped\"]\nfor_s = 1\n";
        assert_eq!(find(text, &path(&["clear_s"]), None), Some((1, 1)));
        assert_eq!(
            find(text, &path(&["rule", "site.x", "when"]), Some(18)),
            Some((5, 9 + 18)),
            "the column of `sped` in the condition"
        );
        assert_eq!(
            find(
                text,
                &path(&["category", "escalator", "elevator.trapped", "for_s"]),
                None
            ),
            Some((7, 1))
        );
        assert_eq!(
            find(text, &path(&["rule", "site.x", "nothing"]), None),
            Some((3, 7)),
            "a key that is missing points at its table"
        );
    }

    #[test]
    fn multi_line_conditions_count_their_own_lines() {
        let text = "[rule.\"site.x\"]\nwhen = \"\"\"\nspeed_mps > 1\n  and sped > 2\"\"\"\n";
        // "speed_mps > 1\n  and sped": `sped` is at byte 20 of the contents.
        assert_eq!(
            find(text, &path(&["rule", "site.x", "when"]), Some(20)),
            Some((4, 7))
        );
    }
}
