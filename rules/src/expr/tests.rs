//! The expression language: lexing, checking and evaluation, by example.

use super::parse::{levenshtein, suggest};
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
