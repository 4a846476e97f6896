//! docs/rules.md's rule and parameter tables, generated from the
//! declarations so they cannot drift: a test compares the file with what
//! the declarations say, and rewrites it when asked to.
//!
//! A generated table sits between two markers in the Markdown:
//!
//! ```text
//! <!-- generated: rules elevator controller frequent -->
//! …
//! <!-- end generated -->
//! ```
//!
//! `rules FAMILY…` is a table of those families' rules (names as
//! [`crate::family::Family::name`] gives them); `parameters` is the table of
//! every parameter a configuration may set; `list ID…` is what `vigil rules
//! list` prints for those rules.

use std::fmt::Write;

use super::{Clear, Decl, Kind, Lit, Setting};

const BEGIN: &str = "<!-- generated: ";
const END: &str = "<!-- end generated -->";

/// `text` with every generated table rebuilt.
fn regenerate(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let (before, from) = rest.split_at(start);
        out.push_str(before);
        let line_end = from.find('\n').ok_or("a marker without a line end")?;
        let marker = &from[..=line_end];
        let what = marker[BEGIN.len()..]
            .trim_end()
            .strip_suffix("-->")
            .ok_or_else(|| format!("a marker that does not end in -->: {marker}"))?
            .trim();
        let end = from
            .find(END)
            .ok_or_else(|| format!("{marker} has no {END}"))?;
        out.push_str(marker);
        out.push_str(&table(what)?);
        out.push_str(END);
        rest = &from[end + END.len()..];
    }
    out.push_str(rest);
    Ok(out)
}

fn table(what: &str) -> Result<String, String> {
    let mut words = what.split_whitespace();
    match words.next() {
        Some("rules") => {
            let families: Vec<&str> = words.collect();
            let all = crate::family::all();
            let mut decls = Vec::new();
            for name in &families {
                let family = all
                    .iter()
                    .find(|f| f.name() == *name)
                    .ok_or_else(|| format!("no rule family {name:?}"))?;
                decls.extend(family.rules());
            }
            Ok(rules_table(&decls))
        }
        Some("parameters") => Ok(parameters_table()),
        Some("list") => {
            let mut t = String::from("```text\n");
            for id in words {
                let key = super::lookup(id).ok_or_else(|| format!("no rule {id:?}"))?;
                let decl = super::decl(key).ok_or_else(|| format!("no rule {id:?}"))?;
                let _ = writeln!(t, "{}", decl.info());
            }
            t.push_str("```\n");
            Ok(t)
        }
        _ => Err(format!("unknown generated table {what:?}")),
    }
}

fn rules_table(decls: &[&Decl]) -> String {
    let mut t = String::from(
        "| id | condition | severity | parameters (default) | basis |\n|---|---|---|---|---|\n",
    );
    for d in decls {
        let mut params = Vec::new();
        if let Some(f) = d.for_s {
            params.push(format!("`for_s` = {}", number(f.default_s)));
        }
        match d.clear_s {
            Clear::None => {}
            Clear::Global { .. } => params.push("`clear_s` = top-level (10)".to_owned()),
            Clear::Own { default_s, .. } => {
                params.push(format!("`clear_s` = {}", number(default_s)))
            }
        }
        for p in d.params {
            let mut s = format!("`{}` = {}", p.name, literal(p.kind, p.default));
            for (cats, lit) in p.by_category {
                let _ = write!(s, " (`{}`: {})", cats.join("`, `"), literal(p.kind, *lit));
            }
            params.push(s);
        }
        if let Some(cats) = d.categories {
            params.push(format!("only for `{}`", cats.join("`, `")));
        }
        let _ = writeln!(
            t,
            "| `{}` | {} | {} | {} | {} |",
            d.id,
            d.description.replace('|', "\\|"),
            d.severity.as_str(),
            params.join("; "),
            d.basis
        );
    }
    t
}

fn parameters_table() -> String {
    let rules = super::rules();
    // Every key in order of first appearance, with the rules that have it.
    let mut keys: Vec<(&str, Option<Kind>, Vec<&str>)> = Vec::new();
    for d in rules {
        for key in d.keys() {
            let kind = d.params.iter().find(|p| p.name == key).map(|p| p.kind);
            match keys.iter_mut().find(|(k, _, _)| *k == key) {
                Some((_, _, ids)) => ids.push(d.id),
                None => keys.push((key, kind, vec![d.id])),
            }
        }
    }
    let mut t = String::from("| parameter | rules | value |\n|---|---|---|\n");
    for (key, kind, ids) in keys {
        let which = if ids.len() == rules.len() {
            "all".to_owned()
        } else if ids.len() * 2 > rules.len() {
            let without: Vec<String> = (rules.iter())
                .filter(|d| !ids.contains(&d.id))
                .map(|d| format!("`{}`", d.id))
                .collect();
            format!("all but {}", without.join(", "))
        } else {
            let with: Vec<String> = ids.iter().map(|id| format!("`{id}`")).collect();
            with.join(", ")
        };
        let value = match (key, kind) {
            ("enabled", _) => "`true` / `false`",
            ("severity", _) => "`\"critical\"`, `\"major\"`, `\"minor\"`, `\"warning\"`",
            ("for_s" | "clear_s", _) => "seconds ≥ 0",
            (_, Some(kind)) => value_words(kind),
            (_, None) => "",
        };
        let _ = writeln!(t, "| `{key}` | {which} | {value} |");
    }
    t
}

fn value_words(kind: Kind) -> &'static str {
    match kind {
        Kind::Seconds => "seconds ≥ 0",
        Kind::PositiveSeconds => "seconds > 0",
        Kind::Hours => "hours > 0",
        Kind::Positive => "a number > 0",
        Kind::Speed => "m/s ≥ 0",
        Kind::Fraction => "0 to 1",
        Kind::Whole => "a whole number ≥ 1 (write `15`, not `15.0`)",
        Kind::Severity => "a severity",
        Kind::Codes => "a table of code = severity, added to the default table",
    }
}

/// A default as the docs write it.
fn literal(kind: Kind, lit: Lit) -> String {
    match kind.setting(lit) {
        Setting::Severity(None) => "unset".to_owned(),
        Setting::Severity(Some(s)) => s.as_str().to_owned(),
        Setting::Codes(codes) => format!("{} codes (below)", codes.len()),
        Setting::Whole(n) => n.to_string(),
        Setting::Num(x) => number(x),
        Setting::Ms(_) => match lit {
            Lit::Num(x) => number(x),
            _ => String::new(),
        },
    }
}

/// `180`, `0.6`, `13.9`: no `.0` on whole numbers.
fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[test]
fn docs_rules_md_tables_match_the_declarations() {
    let path = &rules_md();
    let text = std::fs::read_to_string(path).expect("docs/rules.md is readable");
    let want = regenerate(&text).unwrap_or_else(|e| panic!("docs/rules.md: {e}"));
    if want == text {
        return;
    }
    if std::env::var_os("VIGIL_UPDATE_DOCS").is_some() {
        std::fs::write(path, &want).expect("docs/rules.md is writable");
        return;
    }
    let (line, (have, should)) = (text.lines().zip(want.lines()).enumerate())
        .find(|(_, (a, b))| a != b)
        .map_or((0, ("", "")), |(i, pair)| (i + 1, pair));
    panic!(
        "docs/rules.md's generated tables are out of date (line {line}):\n  is:        {have}\n  should be: {should}\nRun `VIGIL_UPDATE_DOCS=1 cargo test -p vigil-rules docs_rules_md` to rewrite them."
    );
}

#[test]
fn every_family_is_in_a_generated_table_once() {
    let path = &rules_md();
    let text = std::fs::read_to_string(path).expect("docs/rules.md is readable");
    let listed: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix(BEGIN))
        .filter_map(|l| l.strip_prefix("rules "))
        .flat_map(|l| l.trim_end_matches("-->").split_whitespace())
        .collect();
    for family in crate::family::all() {
        if family.rules().is_empty() {
            continue;
        }
        let n = listed.iter().filter(|f| **f == family.name()).count();
        assert_eq!(n, 1, "family {} in {n} generated tables", family.name());
    }
}

#[test]
fn the_bench_rule_file_is_rules_md_example_and_loads() {
    let docs = &rules_md();
    let docs = std::fs::read_to_string(docs).expect("docs/rules.md is readable");
    let file = include_str!("../../examples/site-rules.toml");
    assert!(
        docs.contains(file),
        "rules/examples/site-rules.toml is the example rule file of docs/rules.md, as written there"
    );
    let config = crate::RuleConfig::load(&toml::Table::new(), Some(("site-rules.toml", file)))
        .unwrap_or_else(|e| panic!("site-rules.toml: {e}"));
    let ids: Vec<String> = config
        .definitions()
        .iter()
        .map(|d| d.id.to_string())
        .collect();
    assert_eq!(ids, ["site.car_overload", "site.crowding", "site.gusty"]);
}

/// The checked-out docs/rules.md. Read from cargo's run-time variable, not
/// `env!`: a test binary built from another clone into a shared target dir
/// must not read that clone's file.
#[cfg(test)]
fn rules_md() -> std::path::PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    std::path::Path::new(&crate_dir).join("../docs/rules.md")
}
