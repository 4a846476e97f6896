//! `vigil bench all`: the whole suite, one mode after another, each in a
//! process of its own (so that one mode's memory and threads do not weigh
//! on the next, and its peak memory is its own), with every mode's JSON in
//! one directory and a summary of all ratios and of the time each took.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Args)]
pub(crate) struct AllArgs {
    /// Where every mode's JSON and the summary (`suite.json`) go; made if
    /// missing. Default: `bench-results/<UTC time>` under the current
    /// directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Run every mode with `--quick` (smoke sizes).
    #[arg(long)]
    pub quick: bool,
    /// Only these modes.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub only: Vec<Mode>,
    /// Leave these modes out.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub skip: Vec<Mode>,
}

/// The suite's modes, in the order they run: the ones that need a quiet
/// machine for long stretches (the rule engine on one thread, SQL) first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Mode {
    Rules,
    Sql,
    Store,
    Registry,
    Ingest,
    Connections,
    Burst,
    Flood,
}

impl Mode {
    const ALL: [Mode; 8] = [
        Mode::Rules,
        Mode::Sql,
        Mode::Store,
        Mode::Registry,
        Mode::Ingest,
        Mode::Connections,
        Mode::Burst,
        Mode::Flood,
    ];

    fn name(self) -> &'static str {
        match self {
            Mode::Rules => "rules",
            Mode::Sql => "sql",
            Mode::Store => "store",
            Mode::Registry => "registry",
            Mode::Ingest => "ingest",
            Mode::Connections => "connections",
            Mode::Burst => "burst",
            Mode::Flood => "flood",
        }
    }
}

/// One mode's run.
#[derive(Debug, Serialize)]
struct Ran {
    mode: Mode,
    command: String,
    seconds: f64,
    ok: bool,
    /// The exit status, when the mode failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    failed: Option<String>,
    json: PathBuf,
    /// Every ratio in the mode's JSON (a key with `ratio` or `_over_` in
    /// it), by its path there.
    ratios: Vec<(String, f64)>,
}

#[derive(Debug, Serialize)]
struct Suite {
    machine: Value,
    quick: bool,
    started_unix_s: u64,
    seconds: f64,
    modes: Vec<Ran>,
}

pub(super) fn run(args: AllArgs) -> anyhow::Result<()> {
    let started_unix_s = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let out = match args.out {
        Some(dir) => dir,
        None => PathBuf::from("bench-results").join(utc_stamp(started_unix_s)),
    };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot make {}", out.display()))?;
    let exe = std::env::current_exe().context("cannot find the vigil executable")?;
    let modes: Vec<Mode> = Mode::ALL
        .into_iter()
        .filter(|m| args.only.is_empty() || args.only.contains(m))
        .filter(|m| !args.skip.contains(m))
        .collect();
    anyhow::ensure!(!modes.is_empty(), "--only and --skip leave no mode to run");
    eprintln!(
        "The bench suite{}: {} → {}",
        if args.quick { " (--quick)" } else { "" },
        modes
            .iter()
            .map(|m| m.name())
            .collect::<Vec<_>>()
            .join(", "),
        out.display()
    );

    let suite_start = Instant::now();
    let mut ran = Vec::new();
    for mode in modes {
        let json = out.join(format!("{}.json", mode.name()));
        let mut argv = vec!["bench".to_owned(), mode.name().to_owned()];
        if args.quick {
            argv.push("--quick".to_owned());
        }
        argv.extend(["--json".to_owned(), json.display().to_string()]);
        let command = format!("vigil {}", argv.join(" "));
        eprintln!("\n=== {command}");
        let start = Instant::now();
        let status = Command::new(&exe)
            .args(&argv)
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {command}"))?;
        let seconds = start.elapsed().as_secs_f64();
        let ratios = read_ratios(&json);
        eprintln!(
            "=== {} {} in {:.0} s",
            mode.name(),
            if status.success() { "done" } else { "FAILED" },
            seconds
        );
        ran.push(Ran {
            mode,
            command,
            seconds,
            ok: status.success(),
            failed: (!status.success()).then(|| status.to_string()),
            json,
            ratios,
        });
    }
    let suite = Suite {
        machine: super::machine(),
        quick: args.quick,
        started_unix_s,
        seconds: suite_start.elapsed().as_secs_f64(),
        modes: ran,
    };
    print_summary(&suite);
    super::write_json(Some(&out.join("suite.json")), &suite)?;
    let failed: Vec<&str> = suite
        .modes
        .iter()
        .filter(|r| !r.ok)
        .map(|r| r.mode.name())
        .collect();
    anyhow::ensure!(failed.is_empty(), "failed: {}", failed.join(", "));
    Ok(())
}

/// Every number in the JSON at `path` under a key that names a ratio.
fn read_ratios(path: &Path) -> Vec<(String, f64)> {
    let Some(doc) = std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
    else {
        return Vec::new();
    };
    let mut found = Vec::new();
    collect_ratios(&doc, "", &mut found);
    found
}

fn collect_ratios(v: &Value, at: &str, found: &mut Vec<(String, f64)>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                if let (true, Some(n)) = (is_ratio_key(k), x.as_f64()) {
                    found.push((here, n));
                } else {
                    collect_ratios(x, &here, found);
                }
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                // A list of records names each by its `figure`, `id`,
                // `query` or `name` where it has one.
                let label = ["figure", "id", "query", "name"]
                    .iter()
                    .find_map(|k| x.get(*k).and_then(Value::as_str))
                    .map_or_else(|| i.to_string(), str::to_owned);
                let who = ["as", "principal"]
                    .iter()
                    .find_map(|k| x.get(*k).and_then(Value::as_str));
                let label = match who {
                    Some(who) => format!("{label}/{who}"),
                    None => label,
                };
                collect_ratios(x, &format!("{at}[{label}]"), found);
            }
        }
        _ => {}
    }
}

/// `ratio`, `ratio_warm`, `p50_ratio`, `vigil_over_mosquitto`; not
/// `duration_s`.
fn is_ratio_key(k: &str) -> bool {
    k.split('_').any(|word| word == "ratio") || k.contains("_over_")
}

fn print_summary(s: &Suite) {
    println!("\nThe bench suite: {:.1} min in all", s.seconds / 60.0);
    println!("| mode | result | minutes | ratios |");
    println!("|---|---|---:|---:|");
    for r in &s.modes {
        println!(
            "| {} | {} | {:.1} | {} |",
            r.mode.name(),
            if r.ok { "ok" } else { "FAILED" },
            r.seconds / 60.0,
            r.ratios.len()
        );
    }
    for r in &s.modes {
        if r.ratios.is_empty() {
            continue;
        }
        println!("\n{}:", r.mode.name());
        for (path, x) in &r.ratios {
            println!("  {path:<60} {x:>8.2}");
        }
    }
}

/// `2026-12-06T153000Z` for a Unix time.
fn utc_stamp(unix_s: u64) -> String {
    chrono::DateTime::from_timestamp(i64::try_from(unix_s).unwrap_or(i64::MAX), 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H%M%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps_name_the_day_and_time() {
        assert_eq!(utc_stamp(0), "1970-01-01T000000Z");
        // 2026-12-06 15:30:05 UTC.
        assert_eq!(utc_stamp(1_796_571_005), "2026-12-06T153005Z");
        // A leap day.
        assert_eq!(utc_stamp(1_709_208_000), "2024-02-29T120000Z");
    }

    #[test]
    fn ratios_are_found_by_key_with_their_path() {
        let doc = serde_json::json!({
            "vigil_over_mosquitto": 0.5,
            "ingest": {"ratio": 2.0, "per_s": 100},
            "queries": [{"id": "q1", "principal": "admin", "ratio_warm": 1.4}],
            "duration_s": 60,
            "ratios": [{"figure": "import", "ratio": 0.9}],
        });
        let mut found = Vec::new();
        collect_ratios(&doc, "", &mut found);
        found.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            found,
            vec![
                ("ingest.ratio".to_owned(), 2.0),
                ("queries[q1/admin].ratio_warm".to_owned(), 1.4),
                ("ratios[import].ratio".to_owned(), 0.9),
                ("vigil_over_mosquitto".to_owned(), 0.5),
            ]
        );
    }
}
