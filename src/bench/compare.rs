//! `vigil bench compare`: this binary against another `vigil` (the previous
//! commit's, docs/benchmarks.md) in the same run on the same machine.
//!
//! Each bench mode runs with both binaries alternately (`--json` to a temp
//! file), a few rounds, so drift of the machine (other work, a warming
//! disk) falls on both sides alike. Every numeric figure of the reports is
//! compared as the median of its rounds: the ratio current ÷ baseline, and
//! a verdict from the figure's direction (its name says whether higher or
//! lower is better, [`direction`]) against the tolerance or the noise
//! either side showed between its own rounds, whichever is larger.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Args)]
pub(crate) struct CompareArgs {
    /// The other `vigil` binary, e.g. built from the previous commit.
    #[arg(long)]
    pub baseline: PathBuf,
    /// Rounds per mode; each round runs both binaries, in alternating order.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// A figure worse by more than this share (and more than the
    /// baseline's own noise) is a regression.
    #[arg(long, default_value_t = 0.10)]
    pub tolerance: f64,
    /// Also write every comparison as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Bench modes with their flags, separated by `+`, e.g.
    /// `store --quick --no-postgres + sql --quick` [default: `store --quick
    /// --no-postgres`, `sql --quick`, `registry --quick`].
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub modes: Vec<String>,
}

/// Which way a figure is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Direction {
    Higher,
    Lower,
}

/// The direction of a figure from the last part of its name; `None` for
/// what is input or bookkeeping (sizes, counts, seeds), not judged.
///
/// - not judged: the references measured beside Vigil (`raw_…`, `psql_…`,
///   anything under `duckdb`): they show how much the machine drifted;
/// - higher is better: rates (`…_per_s`) and the in-run ratios of our side
///   over a faster reference (`ratio`, `ratio_csv`, `ratio_binary`,
///   `median_ratio_csv`: the store's share of raw disk or `psql \copy`);
/// - lower is better: times (`…_s`, `…_ms`, `p50…`, `p99…`), memory and
///   disk (`…_mib`, `…bytes…`, `written_per_update`), and the SQL bench's
///   `ratio_warm`/`ratio_cold` (our time over DuckDB's).
pub(super) fn direction(path: &str) -> Option<Direction> {
    let name = path.rsplit('.').next().unwrap_or(path);
    // The references a bench measures beside Vigil (raw disk writes, `psql
    // \copy`, DuckDB) measure the machine, not this code.
    if name.starts_with("raw_") || name.starts_with("psql_") || path.contains("duckdb") {
        return None;
    }
    if name.ends_with("per_s") {
        return Some(Direction::Higher);
    }
    if matches!(name, "ratio_warm" | "ratio_cold") {
        return Some(Direction::Lower);
    }
    // The registry's `ratios` compare its two sizes; their direction
    // depends on the figure each names, so they are not judged here (the
    // figures themselves are).
    if path.starts_with("ratios[") {
        return None;
    }
    if matches!(
        name,
        "ratio" | "ratio_csv" | "ratio_binary" | "median_ratio_csv"
    ) {
        return Some(Direction::Higher);
    }
    if name.ends_with("_s")
        || name.ends_with("_ms")
        || name.starts_with("p50")
        || name.starts_with("p99")
        || name.ends_with("_mib")
        || name.contains("bytes")
        || name == "written_per_update"
    {
        return Some(Direction::Lower);
    }
    None
}

/// One figure of one mode, compared.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Comparison {
    pub mode: String,
    pub figure: String,
    pub direction: Option<Direction>,
    /// Medians over the rounds.
    pub current: f64,
    pub baseline: f64,
    /// current ÷ baseline.
    pub ratio: f64,
    /// The larger spread of either side over its rounds, (max − min) ÷
    /// median: how far the machine alone moves this figure.
    pub noise: f64,
    /// `regression`, `improvement`, `same` or `not_judged`.
    pub verdict: &'static str,
}

pub(super) async fn run(args: CompareArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.rounds > 0, "need at least one round");
    anyhow::ensure!(args.tolerance >= 0.0, "the tolerance is a share, e.g. 0.1");
    let current = std::env::current_exe().context("cannot find this binary")?;
    anyhow::ensure!(
        args.baseline.is_file(),
        "no baseline binary at {}",
        args.baseline.display()
    );
    let modes = modes(&args.modes);
    let work = tempfile::Builder::new()
        .prefix("vigil-bench-compare-")
        .tempdir()?;
    let mut all = Vec::new();
    for mode in &modes {
        let label = mode.join(" ");
        let mut runs: [Vec<Vec<(String, f64)>>; 2] = [Vec::new(), Vec::new()];
        for round in 0..args.rounds {
            // Alternate who goes first, so a trend in the machine is shared.
            let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
            for side in order {
                let bin = if side == 0 { &current } else { &args.baseline };
                let json = work.path().join(format!("{side}-{round}.json"));
                eprintln!(
                    "{label}: round {}/{}, {} …",
                    round + 1,
                    args.rounds,
                    if side == 0 { "current" } else { "baseline" }
                );
                let report = run_mode(bin, mode, &json)?;
                runs[side].push(figures(&report));
            }
        }
        all.extend(compare(&label, &runs[0], &runs[1], args.tolerance));
    }
    print(&all, args.tolerance);
    if let Some(path) = &args.json {
        let report = serde_json::json!({
            "bench": "compare",
            "date": chrono::Utc::now().to_rfc3339(),
            "machine": crate::bench::machine(),
            "current": current,
            "baseline": args.baseline,
            "rounds": args.rounds,
            "tolerance": args.tolerance,
            "figures": all,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let regressions = all.iter().filter(|c| c.verdict == "regression").count();
    if regressions > 0 {
        println!("{regressions} regression(s) beyond the tolerance and the noise.");
    } else {
        println!("No regression beyond the tolerance and the noise.");
    }
    Ok(())
}

/// The modes asked for (split at `+`), or the quick default set.
fn modes(words: &[String]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    let mut current = Vec::new();
    for w in words {
        if w == "+" {
            out.push(std::mem::take(&mut current));
        } else {
            current.push(w.clone());
        }
    }
    out.push(current);
    out.retain(|m| !m.is_empty());
    if out.is_empty() {
        let quick: [&[&str]; 3] = [
            &["store", "--quick", "--no-postgres"],
            &["sql", "--quick"],
            &["registry", "--quick"],
        ];
        out = quick
            .iter()
            .map(|m| m.iter().map(|w| (*w).to_owned()).collect())
            .collect();
    }
    out
}

/// Runs `bin bench <mode> --json <json>` and reads the report.
fn run_mode(bin: &Path, mode: &[String], json: &Path) -> anyhow::Result<Value> {
    let out = Command::new(bin)
        .arg("bench")
        .args(mode)
        .arg("--json")
        .arg(json)
        .output()
        .with_context(|| format!("cannot run {}", bin.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(20).collect();
        anyhow::bail!(
            "{} bench {} failed ({}):\n{}",
            bin.display(),
            mode.join(" "),
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    let bytes = std::fs::read(json)
        .with_context(|| format!("{} wrote no report {}", bin.display(), json.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", json.display()))
}

/// Every number of a report with its path (`wal[group=64].store_records_per_s`),
/// leaving out what describes the run rather than measures it.
pub(super) fn figures(report: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    walk(report, String::new(), &mut out);
    out
}

fn walk(v: &Value, path: String, out: &mut Vec<(String, f64)>) {
    match v {
        Value::Number(n) => {
            if let Some(x) = n.as_f64().filter(|x| x.is_finite()) {
                out.push((path, x));
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                if path.is_empty() && matches!(k.as_str(), "machine" | "date" | "quick") {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                walk(v, p, out);
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(item, format!("{path}[{}]", label(item, i)), out);
            }
        }
        _ => {}
    }
}

/// An array element's name: its identifying fields when it has them (they
/// stay put when a report grows), else its index.
fn label(item: &Value, i: usize) -> String {
    let keys = ["id", "group", "figure", "round", "principal"];
    let parts: Vec<String> = keys
        .iter()
        .filter_map(|k| {
            let v = item.get(*k)?;
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return None,
            };
            Some(format!("{k}={text}"))
        })
        .collect();
    if parts.is_empty() {
        i.to_string()
    } else {
        parts.join(",")
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// (max − min) ÷ median of one side's rounds; 0 for one round.
fn spread(xs: &[f64]) -> f64 {
    let max = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let mid = median(xs.to_vec());
    if mid == 0.0 {
        0.0
    } else {
        ((max - min) / mid).abs()
    }
}

/// Each figure both sides reported in every round, compared by medians.
pub(super) fn compare(
    mode: &str,
    current: &[Vec<(String, f64)>],
    baseline: &[Vec<(String, f64)>],
    tolerance: f64,
) -> Vec<Comparison> {
    let Some(first) = current.first() else {
        return Vec::new();
    };
    let values = |runs: &[Vec<(String, f64)>], name: &str| -> Option<Vec<f64>> {
        runs.iter()
            .map(|r| r.iter().find(|(n, _)| n == name).map(|(_, x)| *x))
            .collect()
    };
    let mut out = Vec::new();
    for (name, _) in first {
        let (Some(cur), Some(base)) = (values(current, name), values(baseline, name)) else {
            continue;
        };
        let noise = spread(&cur).max(spread(&base));
        let (cur, base) = (median(cur), median(base));
        let ratio = if base == 0.0 {
            if cur == 0.0 { 1.0 } else { f64::INFINITY }
        } else {
            cur / base
        };
        let direction = direction(name);
        let bound = tolerance.max(noise);
        let verdict = match direction {
            None => "not_judged",
            Some(Direction::Higher) if ratio < 1.0 - bound => "regression",
            Some(Direction::Lower) if ratio > 1.0 + bound => "regression",
            Some(Direction::Higher) if ratio > 1.0 + bound => "improvement",
            Some(Direction::Lower) if ratio < 1.0 - bound => "improvement",
            Some(_) => "same",
        };
        out.push(Comparison {
            mode: mode.to_owned(),
            figure: name.clone(),
            direction,
            current: cur,
            baseline: base,
            ratio,
            noise,
            verdict,
        });
    }
    out
}

fn print(all: &[Comparison], tolerance: f64) {
    println!(
        "Current vs baseline binary, medians of the rounds (tolerance {:.0} %, or the rounds' noise when larger)",
        tolerance * 100.0
    );
    println!(
        "{:<28} {:<44} {:>6} {:>12} {:>12} {:>7} {:>6}  verdict",
        "mode", "figure", "better", "current", "baseline", "ratio", "noise"
    );
    for c in all.iter().filter(|c| c.direction.is_some()) {
        println!(
            "{:<28} {:<44} {:>6} {:>12.4} {:>12.4} {:>7.3} {:>5.0}%  {}",
            c.mode,
            c.figure,
            match c.direction {
                Some(Direction::Higher) => "higher",
                _ => "lower",
            },
            c.current,
            c.baseline,
            c.ratio,
            c.noise * 100.0,
            c.verdict
        );
    }
    let unjudged = all.iter().filter(|c| c.direction.is_none()).count();
    println!("({unjudged} figures that describe the run, not its speed, are in the JSON only.)");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_follow_the_figure_names() {
        assert_eq!(
            direction("wal[group=64].store_records_per_s"),
            Some(Direction::Higher)
        );
        assert_eq!(direction("wal[group=64].ratio"), Some(Direction::Higher));
        assert_eq!(
            direction("queries[id=q1].vigil.median_ms"),
            Some(Direction::Lower)
        );
        assert_eq!(
            direction("queries[id=q1].ratio_warm"),
            Some(Direction::Lower)
        );
        assert_eq!(direction("province.peak_rss_mib"), Some(Direction::Lower));
        assert_eq!(direction("wal[group=64].records"), None);
        assert_eq!(direction("ratios[figure=x].ratio"), None);
        assert_eq!(direction("wal[group=64].raw_records_per_s"), None);
        assert_eq!(direction("queries[id=q1].duckdb.median_ms"), None);
    }

    #[test]
    fn a_slower_rate_beyond_tolerance_and_noise_is_a_regression() {
        let runs = |xs: &[f64]| -> Vec<Vec<(String, f64)>> {
            xs.iter()
                .map(|x| vec![("a.records_per_s".to_owned(), *x)])
                .collect()
        };
        let slow = compare(
            "m",
            &runs(&[80.0, 81.0, 79.0]),
            &runs(&[100.0, 101.0, 99.0]),
            0.1,
        );
        assert_eq!(slow[0].verdict, "regression");
        assert!((slow[0].ratio - 0.8).abs() < 1e-9);
        // Within the rounds' own noise (40 %), the same drop says nothing.
        let noisy = compare("m", &runs(&[80.0]), &runs(&[80.0, 100.0, 120.0]), 0.1);
        assert_eq!(noisy[0].verdict, "same");
        let fast = compare("m", &runs(&[130.0]), &runs(&[100.0]), 0.1);
        assert_eq!(fast[0].verdict, "improvement");
    }

    #[test]
    fn array_elements_are_named_by_their_ids_and_run_facts_are_left_out() {
        let report = serde_json::json!({
            "date": "x", "quick": true, "machine": {"cores": 2},
            "wal": [{"group": 1, "store_records_per_s": 5.0}],
            "queries": [{"id": "q1", "principal": "admin", "vigil": {"median_ms": 2.0}}],
        });
        let names: Vec<String> = figures(&report).into_iter().map(|(n, _)| n).collect();
        assert!(
            names.contains(&"wal[group=1].store_records_per_s".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&"queries[id=q1,principal=admin].vigil.median_ms".to_owned()),
            "{names:?}"
        );
        assert!(!names.iter().any(|n| n.starts_with("machine")), "{names:?}");
    }
}
