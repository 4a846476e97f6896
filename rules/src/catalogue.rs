//! The built-in rules as declared, and their parameters as resolved.
//!
//! Each rule family declares its rules once, in its own file
//! (`family/*.rs`), as [`Decl`]s: id, default severity, description, legal
//! basis, and every parameter with its kind, meaning and defaults (per
//! category where they differ). Everything else is read from there: the
//! configuration checks (`config.rs`), [`catalogue()`] (`vigil rules list`),
//! the tables of docs/rules.md (`catalogue/docs.rs`) and the engine's
//! [`Params`], which a configuration resolves into typed values once per
//! category or piece of equipment, so no rule looks anything up by name
//! while it evaluates.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::LazyLock;

use serde::Serialize;
use serde_json::{Value, json};
use vigil_model::{RuleId, Severity};

#[cfg(test)]
mod docs;

/// Default clear period of the rules whose `clear_s` follows the
/// configuration's top-level one ([`Clear::Global`]).
pub(crate) const DEFAULT_CLEAR_S: f64 = 10.0;

/// The registry categories of large amusement rides and passenger ropeways.
pub(crate) const RIDE_CATEGORIES: &[&str] = &[
    vigil_model::Category::RIDES[0].as_str(),
    vigil_model::Category::RIDES[1].as_str(),
];

/// One built-in rule: everything the engine, the configuration checks,
/// `vigil rules list` and docs/rules.md know of it. Write one with
/// `Decl { id: …, …, ..Decl::BASE }`.
#[derive(Debug)]
pub(crate) struct Decl {
    pub id: &'static str,
    pub severity: Severity,
    /// What the condition is, in one sentence (`vigil rules list`, docs).
    pub description: &'static str,
    /// Where the default comes from: law, standard or practice.
    pub basis: &'static str,
    /// What `severity` means for this rule.
    pub severity_meaning: &'static str,
    /// `for_s`, if the rule has it.
    pub for_s: Option<Period>,
    pub clear_s: Clear,
    /// The rule's own parameters, in the order [`Params`] keeps them.
    pub params: &'static [Param],
    /// The categories the rule is enabled for by default (`None`: every one).
    pub categories: Option<&'static [&'static str]>,
    /// A major or critical occurrence counts towards
    /// `elevator.frequent_faults` (the elevator's own faults).
    pub counts_as_fault: bool,
}

/// A duration parameter every rule may have (`for_s`, `clear_s`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Period {
    pub default_s: f64,
    pub meaning: &'static str,
}

impl Period {
    /// `for_s` with its usual meaning.
    pub(crate) const fn of(default_s: f64) -> Period {
        Period {
            default_s,
            meaning: "seconds the condition must hold before the alarm fires (device time)",
        }
    }

    pub(crate) const fn meaning(self, meaning: &'static str) -> Period {
        Period { meaning, ..self }
    }
}

/// A rule's clear period.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clear {
    /// No `clear_s` parameter: the rule clears in its own way.
    None,
    /// `clear_s`, defaulting to the configuration's top-level `clear_s`
    /// (itself [`DEFAULT_CLEAR_S`] by default).
    Global { meaning: &'static str },
    /// `clear_s` with a default of its own; the top-level one does not apply.
    Own {
        default_s: f64,
        meaning: &'static str,
    },
}

impl Clear {
    /// The condition false for `clear_s`, following the top-level `clear_s`.
    pub(crate) const GLOBAL: Clear = Clear::Global {
        meaning: "seconds the condition must have been false before the alarm clears",
    };

    pub(crate) const fn own(default_s: f64, meaning: &'static str) -> Clear {
        Clear::Own { default_s, meaning }
    }
}

/// One parameter of a rule beyond `enabled`, `severity`, `for_s` and `clear_s`.
#[derive(Debug)]
pub(crate) struct Param {
    pub name: &'static str,
    pub kind: Kind,
    pub default: Lit,
    /// Categories whose default differs from `default`.
    pub by_category: &'static [(&'static [&'static str], Lit)],
    pub meaning: &'static str,
}

impl Param {
    pub(crate) const fn new(
        name: &'static str,
        kind: Kind,
        default: Lit,
        meaning: &'static str,
    ) -> Param {
        Param {
            name,
            kind,
            default,
            by_category: &[],
            meaning,
        }
    }
}

/// What values a parameter takes, how a configuration spells them and how
/// the engine keeps them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Seconds ≥ 0, kept as milliseconds.
    Seconds,
    /// Seconds > 0, kept as milliseconds.
    PositiveSeconds,
    /// Hours > 0, kept as milliseconds.
    Hours,
    /// A number > 0.
    Positive,
    /// A speed in m/s ≥ 0.
    Speed,
    /// A confidence from 0 to 1.
    Fraction,
    /// A whole number ≥ 1.
    Whole,
    /// A severity (unset by default where `Lit::Severity(None)`).
    Severity,
    /// A table of controller code = severity, added to the default table.
    Codes,
}

/// A default as declared.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lit {
    /// Seconds, hours or a plain number, as the kind says.
    Num(f64),
    Whole(u32),
    Severity(Option<Severity>),
    /// Code, severity and what the code means.
    Codes(&'static [(&'static str, Severity, &'static str)]),
}

/// A parameter's value, resolved for one rule and one piece of equipment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Setting {
    Ms(i64),
    Num(f64),
    Whole(u32),
    Severity(Option<Severity>),
    Codes(BTreeMap<String, Severity>),
}

impl Kind {
    /// What a value of this kind must be (configuration errors say it).
    fn expected(self) -> &'static str {
        match self {
            Kind::Seconds => "a number of seconds ≥ 0",
            Kind::PositiveSeconds | Kind::Hours | Kind::Positive => "a number > 0",
            Kind::Speed => "a speed in m/s ≥ 0",
            Kind::Fraction => "a confidence from 0 to 1",
            Kind::Whole => "a whole number ≥ 1",
            Kind::Severity => SEVERITIES,
            Kind::Codes => {
                "a table of controller code = severity (\"critical\", \"major\", \"minor\", \"warning\")"
            }
        }
    }

    /// A declared default as the engine keeps it.
    fn setting(self, lit: Lit) -> Setting {
        match (self, lit) {
            (Kind::Seconds | Kind::PositiveSeconds, Lit::Num(s)) => Setting::Ms(secs_to_ms(s)),
            (Kind::Hours, Lit::Num(h)) => Setting::Ms(secs_to_ms(h * 3600.0)),
            (_, Lit::Num(x)) => Setting::Num(x),
            (_, Lit::Whole(n)) => Setting::Whole(n),
            (_, Lit::Severity(s)) => Setting::Severity(s),
            (_, Lit::Codes(codes)) => Setting::Codes(
                codes
                    .iter()
                    .map(|(code, sev, _)| ((*code).to_owned(), *sev))
                    .collect(),
            ),
        }
    }

    /// Parses a configuration value into `into` (a table of codes adds to
    /// the codes already there). The error says what was expected.
    fn set(self, into: &mut Setting, value: &Value) -> Result<(), &'static str> {
        let expected = self.expected();
        let number = |ok: fn(f64) -> bool| value.as_f64().filter(|x| ok(*x)).ok_or(expected);
        let positive = |x: f64| x.is_finite() && x > 0.0 && x < 1e9;
        *into = match self {
            Kind::Seconds => Setting::Ms(secs_to_ms(seconds(value)?)),
            Kind::PositiveSeconds => Setting::Ms(secs_to_ms(number(positive)?)),
            Kind::Hours => Setting::Ms(secs_to_ms(number(positive)? * 3600.0)),
            Kind::Positive => Setting::Num(number(positive)?),
            Kind::Speed => Setting::Num(number(|x| x.is_finite() && x >= 0.0)?),
            Kind::Fraction => Setting::Num(number(|x| (0.0..=1.0).contains(&x))?),
            Kind::Whole => Setting::Whole(
                value
                    .as_u64()
                    .filter(|n| (1..=1_000_000).contains(n))
                    .map(|n| n as u32)
                    .ok_or(expected)?,
            ),
            Kind::Severity => Setting::Severity(Some(severity_of(value)?)),
            Kind::Codes => {
                let table = value.as_object().ok_or(expected)?;
                let mut codes = match std::mem::replace(into, Setting::Whole(0)) {
                    Setting::Codes(codes) => codes,
                    _ => BTreeMap::new(),
                };
                for (code, sev) in table {
                    codes.insert(code.clone(), severity_of(sev).map_err(|_| expected)?);
                }
                Setting::Codes(codes)
            }
        };
        Ok(())
    }

    /// A value as a configuration would spell it.
    fn show(self, s: &Setting) -> Value {
        match s {
            Setting::Ms(ms) if self == Kind::Hours => json!(*ms as f64 / 3_600_000.0),
            Setting::Ms(ms) => json!(*ms as f64 / 1000.0),
            Setting::Num(x) => json!(x),
            Setting::Whole(n) => json!(n),
            Setting::Severity(s) => json!(s.map(Severity::as_str)),
            Setting::Codes(codes) => Value::Object(
                codes
                    .iter()
                    .map(|(c, s)| (c.clone(), json!(s.as_str())))
                    .collect(),
            ),
        }
    }

    /// A value as a condition reads it (`rule.x`): a number in the unit
    /// the configuration writes (NaN for what is not a number).
    fn number(self, s: &Setting) -> f64 {
        match s {
            Setting::Ms(ms) if self == Kind::Hours => *ms as f64 / 3_600_000.0,
            Setting::Ms(ms) => *ms as f64 / 1000.0,
            Setting::Num(x) => *x,
            Setting::Whole(n) => f64::from(*n),
            Setting::Severity(_) | Setting::Codes(_) => f64::NAN,
        }
    }

    const fn class(self) -> u8 {
        match self {
            Kind::Seconds | Kind::PositiveSeconds | Kind::Hours => 0,
            Kind::Positive | Kind::Speed | Kind::Fraction => 1,
            Kind::Whole => 2,
            Kind::Severity => 3,
            Kind::Codes => 4,
        }
    }
}

const SEVERITIES: &str = "one of \"critical\", \"major\", \"minor\", \"warning\"";

pub(crate) fn severity_of(value: &Value) -> Result<Severity, &'static str> {
    value.as_str().and_then(Severity::parse).ok_or(SEVERITIES)
}

fn seconds(value: &Value) -> Result<f64, &'static str> {
    value
        .as_f64()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 1e9)
        .ok_or("a number of seconds ≥ 0")
}

pub(crate) fn secs_to_ms(s: f64) -> i64 {
    (s * 1000.0).round() as i64
}

impl Decl {
    /// What every declaration starts from: critical, no `for_s`, the
    /// top-level clear period, no parameters of its own, every category.
    pub(crate) const BASE: Decl = Decl {
        id: "",
        severity: Severity::Critical,
        description: "",
        basis: "",
        severity_meaning: "severity of the alarm",
        for_s: None,
        clear_s: Clear::GLOBAL,
        params: &[],
        categories: None,
        counts_as_fault: false,
    };

    /// Every key a configuration may set for this rule, in order.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &'static str> + '_ {
        let for_s = self.for_s.map(|_| "for_s");
        let clear_s = match self.clear_s {
            Clear::None => None,
            _ => Some("clear_s"),
        };
        ["enabled", "severity"]
            .into_iter()
            .chain(for_s)
            .chain(clear_s)
            .chain(self.params.iter().map(|p| p.name))
    }

    pub(crate) fn has_key(&self, key: &str) -> bool {
        self.keys().any(|k| k == key)
    }

    /// The shipped defaults for equipment of `category`. `global_clear_ms`
    /// is the configuration's top-level `clear_s`, if it sets one.
    pub(crate) fn defaults(&self, category: &str, global_clear_ms: Option<i64>) -> Params {
        let clear_ms = match self.clear_s {
            Clear::None => 0,
            Clear::Global { .. } => global_clear_ms.unwrap_or_else(|| secs_to_ms(DEFAULT_CLEAR_S)),
            Clear::Own { default_s, .. } => secs_to_ms(default_s),
        };
        Params {
            enabled: self.categories.is_none_or(|c| c.contains(&category)),
            severity: self.severity,
            for_ms: self.for_s.map_or(0, |f| secs_to_ms(f.default_s)),
            clear_ms,
            cooldown_ms: 0,
            values: self
                .params
                .iter()
                .map(|p| {
                    let lit = p
                        .by_category
                        .iter()
                        .find(|(cats, _)| cats.contains(&category))
                        .map_or(p.default, |(_, lit)| *lit);
                    p.kind.setting(lit)
                })
                .collect(),
            settings: Vec::new(),
        }
        .with_settings(self)
    }

    /// The index of parameter `name` of kind class `class`; a compile-time
    /// error when there is none (see [`Ms::of`] and friends).
    const fn position(&self, name: &str, class: u8) -> usize {
        let mut i = 0;
        while i < self.params.len() {
            if same(self.params[i].name, name) {
                if self.params[i].kind.class() != class {
                    panic!("this parameter is of another kind");
                }
                return i;
            }
            i += 1;
        }
        panic!("no parameter of that name");
    }
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A rule's duration parameter (seconds or hours), as milliseconds. Made
/// by [`Ms::of`] at compile time from the declaration, so a misspelt name
/// does not build.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ms(usize);
/// A rule's numeric parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Num(usize);
/// A rule's whole-number parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Whole(usize);
/// A rule's severity parameter (unset: `None`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sev(usize);
/// A rule's table of controller codes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Codes(usize);

impl Ms {
    pub(crate) const fn of(decl: &Decl, name: &str) -> Ms {
        Ms(decl.position(name, 0))
    }
}

impl Num {
    pub(crate) const fn of(decl: &Decl, name: &str) -> Num {
        Num(decl.position(name, 1))
    }
}

impl Whole {
    pub(crate) const fn of(decl: &Decl, name: &str) -> Whole {
        Whole(decl.position(name, 2))
    }
}

impl Sev {
    pub(crate) const fn of(decl: &Decl, name: &str) -> Sev {
        Sev(decl.position(name, 3))
    }
}

impl Codes {
    pub(crate) const fn of(decl: &Decl, name: &str) -> Codes {
        Codes(decl.position(name, 4))
    }
}

/// Resolved parameters of one rule for one piece of equipment. Durations
/// are kept in milliseconds, the unit of device time.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Params {
    pub enabled: bool,
    pub severity: Severity,
    pub for_ms: i64,
    pub clear_ms: i64,
    /// Defined rules: after an alarm clears, a new one waits this long.
    pub cooldown_ms: i64,
    /// A built-in rule's own parameters, in the order of its declaration.
    values: Vec<Setting>,
    /// The thresholds a condition reads as `rule.x`, by index: a built-in
    /// rule's parameters as numbers, or a defined rule's own thresholds.
    pub settings: Vec<f64>,
}

static NO_CODES: BTreeMap<String, Severity> = BTreeMap::new();

impl Params {
    /// A rule that is not evaluated (a defined rule a reload dropped).
    pub(crate) const DISABLED: Params = Params {
        enabled: false,
        severity: Severity::Minor,
        for_ms: 0,
        clear_ms: 0,
        cooldown_ms: 0,
        values: Vec::new(),
        settings: Vec::new(),
    };

    /// Sets one key of `decl` from its configuration value. The error says
    /// what the value should have been.
    pub(crate) fn set(
        &mut self,
        decl: &Decl,
        key: &str,
        value: &Value,
    ) -> Result<(), &'static str> {
        if self.set_common(key, value)? {
            return Ok(());
        }
        let i = decl
            .params
            .iter()
            .position(|p| p.name == key)
            .ok_or("a known parameter")?;
        let slot = self.values.get_mut(i).ok_or("a known parameter")?;
        decl.params[i].kind.set(slot, value)?;
        *self = std::mem::replace(self, Params::DISABLED).with_settings(decl);
        Ok(())
    }

    /// The keys every rule has; `Ok(false)` for any other key.
    pub(crate) fn set_common(&mut self, key: &str, value: &Value) -> Result<bool, &'static str> {
        match key {
            "enabled" => self.enabled = value.as_bool().ok_or("true or false")?,
            "severity" => self.severity = severity_of(value)?,
            "for_s" => self.for_ms = secs_to_ms(seconds(value)?),
            "clear_s" => self.clear_ms = secs_to_ms(seconds(value)?),
            "cooldown_s" => self.cooldown_ms = secs_to_ms(seconds(value)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn with_settings(mut self, decl: &Decl) -> Params {
        self.settings = (decl.params.iter().zip(&self.values))
            .map(|(p, v)| p.kind.number(v))
            .collect();
        self
    }

    /// A defined rule's defaults: major, enabled, with its thresholds.
    pub(crate) fn defined(clear_ms: i64, settings: Vec<f64>) -> Params {
        Params {
            enabled: true,
            severity: Severity::Major,
            clear_ms,
            settings,
            ..Params::DISABLED
        }
    }

    pub(crate) fn ms(&self, key: Ms) -> i64 {
        match self.values.get(key.0) {
            Some(Setting::Ms(ms)) => *ms,
            _ => 0,
        }
    }

    pub(crate) fn num(&self, key: Num) -> f64 {
        match self.values.get(key.0) {
            Some(Setting::Num(x)) => *x,
            _ => f64::NAN,
        }
    }

    pub(crate) fn whole(&self, key: Whole) -> u32 {
        match self.values.get(key.0) {
            Some(Setting::Whole(n)) => *n,
            _ => 0,
        }
    }

    pub(crate) fn severity_of(&self, key: Sev) -> Option<Severity> {
        match self.values.get(key.0) {
            Some(Setting::Severity(s)) => *s,
            _ => None,
        }
    }

    pub(crate) fn codes(&self, key: Codes) -> &BTreeMap<String, Severity> {
        match self.values.get(key.0) {
            Some(Setting::Codes(codes)) => codes,
            _ => &NO_CODES,
        }
    }

    /// A parameter by name, as a configuration spells it (`vigil rules
    /// list`, tests): only where speed does not matter.
    pub(crate) fn show(&self, decl: &Decl, key: &str) -> Value {
        let s = |ms: i64| json!(ms as f64 / 1000.0);
        match key {
            "enabled" => json!(self.enabled),
            "severity" => json!(self.severity.as_str()),
            "for_s" => s(self.for_ms),
            "clear_s" => s(self.clear_ms),
            _ => (decl.params.iter().zip(&self.values))
                .find(|(p, _)| p.name == key)
                .map_or(Value::Null, |(p, v)| p.kind.show(v)),
        }
    }
}

/// What a key outside a parameter set reads as.
static DISABLED: Params = Params::DISABLED;

/// Every rule's resolved parameters for one piece of equipment, by [`Key`].
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ParamSet(pub Vec<Params>);

impl ParamSet {
    /// A key this set does not know (a rule defined after it was resolved)
    /// reads as disabled.
    pub(crate) fn get(&self, key: Key) -> &Params {
        self.0.get(key.index()).unwrap_or(&DISABLED)
    }
}

/// Every built-in rule in key order, found by id.
pub(crate) struct Catalogue {
    rules: Vec<&'static Decl>,
    /// The family of each rule.
    families: Vec<&'static str>,
    by_id: HashMap<&'static str, usize>,
}

static CATALOGUE: LazyLock<Catalogue> = LazyLock::new(|| {
    let (mut rules, mut families) = (Vec::new(), Vec::new());
    for family in crate::family::all() {
        for decl in family.rules() {
            rules.push(decl);
            families.push(family.name());
        }
    }
    let by_id = rules.iter().enumerate().map(|(i, d)| (d.id, i)).collect();
    Catalogue {
        rules,
        families,
        by_id,
    }
});

/// Every built-in rule, in the order of their [`Key`]s.
pub(crate) fn rules() -> &'static [&'static Decl] {
    &CATALOGUE.rules
}

pub(crate) fn lookup(id: &str) -> Option<Key> {
    CATALOGUE.by_id.get(id).map(|&i| Key::from_index(i))
}

/// The declaration of a built-in rule's key (`None`: a defined rule).
pub(crate) fn decl(key: Key) -> Option<&'static Decl> {
    CATALOGUE.rules.get(key.index()).copied()
}

/// An alarm slot of the engine: the built-in rules first, in catalogue
/// order, then the rules a configuration defines, in the order the engine
/// first met them. A defined rule keeps its key for the engine's lifetime,
/// even when a reload drops it (it is then disabled), so per-equipment and
/// per-device state never has to be renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Key(u16);

impl Key {
    pub(crate) fn index(self) -> usize {
        usize::from(self.0)
    }

    pub(crate) fn from_index(index: usize) -> Key {
        Key(u16::try_from(index).unwrap_or(u16::MAX))
    }

    /// The slot of the `n`-th defined rule.
    pub(crate) fn defined(n: usize) -> Key {
        Key::from_index(rules().len() + n)
    }

    /// Which defined rule this slot is, if it is one.
    pub(crate) fn defined_index(self) -> Option<usize> {
        self.index().checked_sub(rules().len())
    }
}

pub(crate) fn rule_id(decl: &Decl) -> RuleId {
    // Built-in ids are lower-case words joined by '.' and '_' (checked by a test).
    RuleId::new(decl.id).expect("built-in rule ids are valid RuleIds")
}

/// One built-in rule as the docs and `vigil rules list` show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleInfo {
    pub id: RuleId,
    /// The family that evaluates it (`rules/src/family/<family>.rs`).
    pub family: &'static str,
    /// The default severity.
    pub severity: Severity,
    pub description: &'static str,
    /// Where the default comes from (rules.md's "basis").
    pub basis: &'static str,
    /// The condition as `catalogue.toml` writes it (`None`: evaluated in
    /// code, as it needs earlier samples or the registry).
    pub when: Option<&'static str>,
    /// Every parameter a configuration may set, with its shipped default.
    pub params: Vec<ParamInfo>,
    /// The equipment categories the rule is enabled for by default
    /// (`None`: every one).
    pub categories: Option<&'static [&'static str]>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParamInfo {
    pub name: &'static str,
    pub default: Value,
    pub meaning: &'static str,
    /// Categories with a default of their own, and that default.
    pub by_category: Vec<(&'static str, Value)>,
}

impl fmt::Display for RuleInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<32} {:<8} {}",
            self.id.as_str(),
            self.severity.as_str(),
            self.description
        )?;
        let shown: Vec<String> = self
            .params
            .iter()
            .filter(|p| p.name != "enabled" && p.name != "severity")
            .map(|p| match &p.default {
                Value::Object(m) => format!("{}=({} codes)", p.name, m.len()),
                v => format!("{}={v}", p.name),
            })
            .collect();
        if !shown.is_empty() {
            write!(f, " [{}]", shown.join(", "))?;
        }
        if let Some(when) = self.when {
            let when: Vec<&str> = when.split_whitespace().collect();
            write!(f, "\n{:<32} when {}", "", when.join(" "))?;
        }
        Ok(())
    }
}

impl Decl {
    /// What the docs and `vigil rules list` show of this rule.
    pub(crate) fn info(&self) -> RuleInfo {
        // Equipment outside every listed category sees the plain defaults.
        const ANY: &str = "";
        let defaults = self.defaults(ANY, None);
        let meaning = |key: &str| match key {
            "enabled" => "evaluate this rule at all",
            "severity" => self.severity_meaning,
            "for_s" => self.for_s.map_or("", |p| p.meaning),
            "clear_s" => match self.clear_s {
                Clear::Global { meaning } | Clear::Own { meaning, .. } => meaning,
                Clear::None => "",
            },
            _ => self
                .params
                .iter()
                .find(|p| p.name == key)
                .map_or("", |p| p.meaning),
        };
        let by_category = |key: &str| -> Vec<(&'static str, Value)> {
            let Some(param) = self.params.iter().find(|p| p.name == key) else {
                return Vec::new();
            };
            param
                .by_category
                .iter()
                .flat_map(|(cats, lit)| {
                    let shown = param.kind.show(&param.kind.setting(*lit));
                    cats.iter().map(move |c| (*c, shown.clone()))
                })
                .collect()
        };
        let family = lookup(self.id).map_or("", |key| CATALOGUE.families[key.index()]);
        RuleInfo {
            id: rule_id(self),
            family,
            severity: self.severity,
            description: self.description,
            basis: self.basis,
            when: crate::builtin::text(self.id),
            params: self
                .keys()
                .map(|name| ParamInfo {
                    name,
                    // `enabled` as declared, whatever the categories.
                    default: if name == "enabled" {
                        json!(true)
                    } else {
                        defaults.show(self, name)
                    },
                    meaning: meaning(name),
                    by_category: by_category(name),
                })
                .collect(),
            categories: self.categories,
        }
    }
}

/// Every built-in rule with its default severity and parameters.
pub fn catalogue() -> Vec<RuleInfo> {
    rules().iter().map(|d| d.info()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decl_of(id: &str) -> &'static Decl {
        decl(lookup(id).unwrap()).unwrap()
    }

    /// Rule `id`'s defaults for `category`, as a configuration spells them.
    fn default(id: &str, category: &str, key: &str) -> Value {
        let d = decl_of(id);
        d.defaults(category, None).show(d, key)
    }

    #[test]
    fn every_rule_is_listed_once_with_a_valid_id() {
        let list = catalogue();
        assert_eq!(list.len(), rules().len());
        for (i, d) in rules().iter().enumerate() {
            assert_eq!(lookup(d.id), Some(Key::from_index(i)), "{} twice", d.id);
            assert_eq!(list[i].id.as_str(), d.id);
            assert!(!d.description.is_empty() && !d.basis.is_empty(), "{}", d.id);
            assert!(
                d.keys().all(|k| !info_meaning(&list[i], k).is_empty()),
                "{}: every parameter says what it means",
                d.id
            );
        }
    }

    fn info_meaning(info: &RuleInfo, key: &str) -> &'static str {
        info.params
            .iter()
            .find(|p| p.name == key)
            .map_or("", |p| p.meaning)
    }

    #[test]
    fn shipped_defaults_match_rules_md() {
        let d = |id, key| default(id, "elevator", key);
        let trapped = (
            "elevator.trapped",
            "for_s",
            "alarm_button_for_s",
            "severity",
        );
        assert_eq!(
            (
                d(trapped.0, trapped.1),
                d(trapped.0, trapped.2),
                d(trapped.0, trapped.3)
            ),
            (json!(180.0), json!(60.0), json!("critical"))
        );
        assert_eq!(d("elevator.stopped_outside_zone", "for_s"), json!(180.0));
        assert_eq!(
            d("elevator.stopped_outside_zone", "severity"),
            json!("major")
        );
        assert_eq!(d("elevator.door_open_moving", "for_s"), json!(0.6));
        assert_eq!(d("elevator.door_open_moving", "speed_mps"), json!(0.1));
        assert_eq!(d("elevator.overspeed", "for_s"), json!(0.0));
        assert_eq!(d("elevator.overspeed", "factor"), json!(1.15));
        assert_eq!(d("elevator.overtravel_top", "moving_for_s"), json!(8.0));
        assert_eq!(d("elevator.door_wont_close", "severity"), json!("minor"));
        assert_eq!(d("elevator.door_cycling", "max_changes"), json!(11));
        assert_eq!(d("elevator.door_cycling", "window_s"), json!(120.0));
        assert_eq!(d("elevator.power_loss", "for_s"), json!(5.0));
        assert_eq!(d("elevator.frequent_faults", "count"), json!(3));
        assert_eq!(d("elevator.frequent_faults", "window_h"), json!(24.0));
        assert_eq!(d("device.offline", "intervals"), json!(3.0));
        assert_eq!(d("device.offline", "severity"), json!("minor"));
        assert_eq!(d("elevator.safety_circuit_open", "clear_s"), json!(10.0));
        assert_eq!(d("elevator.controller_fault", "clear_s"), json!(0.0));
    }

    #[test]
    fn ride_and_video_defaults_match_rules_md() {
        let d = |id, key| default(id, "amusement_ride", key);
        assert_eq!(d("ride.running_unrestrained", "for_s"), json!(0.0));
        assert_eq!(d("ride.wind_limit", "for_s"), json!(10.0));
        assert_eq!(d("ride.wind_limit", "limit_mps"), json!(10.8));
        assert_eq!(
            default("ride.wind_limit", "passenger_ropeway", "limit_mps"),
            json!(13.9)
        );
        assert_eq!(d("ride.overspeed", "factor"), json!(1.1));
        assert_eq!(d("ride.vibration_high", "limit_mm_s"), json!(11.2));
        assert_eq!(d("ride.vibration_high", "severity"), json!("minor"));
        assert_eq!(d("video.electric_bike", "min_confidence"), json!(0.8));
        assert_eq!(d("video.electric_bike", "clear_s"), json!(300.0));
        assert_eq!(d("video.person_fall", "min_confidence"), json!(0.7));
        assert_eq!(d("video.danger_zone", "clear_s"), json!(60.0));
        assert_eq!(d("video.smoke_fire", "min_confidence"), json!(0.6));
        assert_eq!(d("video.camera_occluded", "for_s"), json!(300.0));
        assert_eq!(d("device.offline", "operating_severity"), json!("major"));
        assert_eq!(
            default("device.offline", "elevator", "operating_severity"),
            Value::Null
        );
        let on = |id, category| default(id, category, "enabled") == json!(true);
        assert!(on("video.electric_bike", "elevator"));
        assert!(!on("video.electric_bike", "amusement_ride"));
        assert!(on("video.restraint_unlocked", "amusement_ride"));
        assert!(on("video.restraint_unlocked", "passenger_ropeway"));
        assert!(!on("video.restraint_unlocked", "elevator"));
        assert!(on("registry.maintenance_overdue", "escalator"));
        assert!(!on("registry.maintenance_overdue", "boiler"));
    }

    #[test]
    fn keys_come_in_the_documented_order() {
        let keys = |id| decl_of(id).keys().collect::<Vec<_>>().join(", ");
        assert_eq!(
            keys("elevator.trapped"),
            "enabled, severity, for_s, clear_s, alarm_button_for_s"
        );
        assert_eq!(
            keys("elevator.controller_fault"),
            "enabled, severity, clear_s, codes"
        );
        assert_eq!(
            keys("device.offline"),
            "enabled, severity, intervals, operating_severity"
        );
        assert_eq!(keys("ride.no_daily_check"), "enabled, severity");
    }

    #[test]
    fn values_are_checked_by_kind() {
        let d = decl_of("elevator.door_cycling");
        let mut p = d.defaults("elevator", None);
        assert_eq!(
            p.set(d, "max_changes", &json!(0)),
            Err("a whole number ≥ 1")
        );
        assert_eq!(p.set(d, "window_s", &json!(0)), Err("a number > 0"));
        assert_eq!(
            p.set(d, "for_s", &json!(-1)),
            Err("a number of seconds ≥ 0")
        );
        assert_eq!(p.set(d, "nothing", &json!(1)), Err("a known parameter"));
        p.set(d, "window_s", &json!(30)).unwrap();
        assert_eq!(p.show(d, "window_s"), json!(30.0));
        let d = decl_of("elevator.door_open_moving");
        let mut p = d.defaults("elevator", None);
        p.set(d, "speed_mps", &json!(0.3)).unwrap();
        assert_eq!(p.settings, vec![0.3], "conditions read the new threshold");
    }

    #[test]
    fn display_gives_defaults_then_the_condition_where_it_is_written() {
        let text = catalogue()[0].to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("elevator.trapped"), "{text}");
        assert!(
            lines[0].contains("for_s=180") && lines[0].contains("alarm_button_for_s=60"),
            "{text}"
        );
        assert_eq!(
            lines[1].trim(),
            "when door == \"closed\" and occupied and speed_mps == 0 and mode == \"normal\""
        );
        let cycling = catalogue()
            .into_iter()
            .find(|r| r.id.as_str() == "elevator.door_cycling")
            .unwrap()
            .to_string();
        assert_eq!(
            cycling.lines().count(),
            1,
            "evaluated in code: no condition line"
        );
    }
}
