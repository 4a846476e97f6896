//! `vigil sim`: the simulator against a running engine, as its own
//! process. Scenario files (docs/simulator.md) inject faults on a small
//! fleet and, with `--check`, hold the engine to the alarms they expect;
//! `--load` holds many connections and measures publish→ack latency
//! (`sim/load.rs`).
//!
//! ```text
//!  FILES ─▶ Scenario::load ─▶ prepare(run id) ─▶ POST /registry/import ─▶ secrets
//!  GET /alarms/stream (SSE) ─▶ seen alarms ──────────────┐
//!  drive (MQTT, per scenario, all at once) ─▶ maintenance posts
//!  settle ─▶ GET /alarms?equipment_id=… ─▶ check (sim/check.rs) ─▶ report, exit code
//! ```

mod check;
mod load;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use futures::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use vigil_model::EpochMs;
use vigil_simulator::scenario::{Happening, Prepared, Scenario};

use crate::cli::Remote;
pub(crate) use check::{Report, Seen};

#[derive(Debug, Args)]
pub(crate) struct SimArgs {
    /// Scenario files, or directories of them (every `*.toml` in it and its
    /// subdirectories but `rules.toml`); run together.
    #[arg(long = "scenario", value_name = "FILE|DIR")]
    pub scenarios: Vec<PathBuf>,
    /// Check the alarms against what the scenarios expect; exit 1 on any
    /// missing, late, uncleared or unexpected alarm.
    #[arg(long)]
    pub check: bool,
    /// Write the report (scenarios or load) as JSON to this file; with
    /// `--load`, `-` puts it on stdout (and the summary on stderr).
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// The engine's MQTT listener (plain, device id + secret).
    #[arg(long, default_value = vigil_ingest::DEFAULT_MQTT_ADDR)]
    pub mqtt: SocketAddr,
    /// Letters and digits put into every id of this run [default: from the clock].
    #[arg(long)]
    pub run_id: Option<String>,
    /// Write the rule overrides the scenarios need, for this run's ids, as
    /// a rule file, and exit (load it into the engine first: `--rules-file`).
    #[arg(long, value_name = "FILE")]
    pub rules_out: Option<PathBuf>,
    /// Only check the scenario files (file:line:column of the first mistake).
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub load: load::LoadArgs,
    #[command(flatten)]
    pub remote: Remote,
}

pub(crate) async fn run(args: SimArgs) -> anyhow::Result<()> {
    if args.load.load {
        return load::run(&args).await;
    }
    anyhow::ensure!(
        !args.scenarios.is_empty(),
        "nothing to run: give --scenario FILE|DIR (or --load)"
    );
    let scenarios = load_all(&args.scenarios)?;
    if args.dry_run {
        for s in &scenarios {
            println!(
                "{}: ok, {} ({} devices, {} steps, expects {})",
                s.path.display(),
                s.name,
                s.devices.len(),
                s.steps.len(),
                s.expected_rules()
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        return Ok(());
    }
    let run_id = args.run_id.clone().unwrap_or_else(default_run_id);
    anyhow::ensure!(
        !run_id.is_empty()
            && run_id.len() <= 8
            && run_id.bytes().all(|b| b.is_ascii_alphanumeric()),
        "--run-id must be 1 to 8 letters and digits"
    );
    let today = registry_today();
    let prepared: Vec<Prepared> = scenarios
        .iter()
        .map(|s| s.prepare(&run_id, today))
        .collect::<Result<_, _>>()?;
    if let Some(out) = &args.rules_out {
        let mut file = toml::Table::new();
        for p in &prepared {
            merge_tables(&mut file, &p.rules_file);
        }
        let text = format!(
            "# Rule overrides of the scenarios of run {run_id} (vigil sim --rules-out):\n\
             # each names only the run's own equipment.\n{}",
            toml::to_string(&file)?
        );
        std::fs::write(out, text).with_context(|| format!("cannot write {}", out.display()))?;
        println!("{}: overrides for run {run_id}", out.display());
        return Ok(());
    }
    let needs: Vec<&str> = prepared
        .iter()
        .filter(|p| !p.rules_file.is_empty())
        .map(|p| p.scenario.name.as_str())
        .collect();
    if !needs.is_empty() {
        eprintln!(
            "note: {} need rule overrides; the engine must have loaded `vigil sim --rules-out FILE --run-id {run_id}`'s file, or those alarms come only after the default times",
            needs.join(", ")
        );
    }

    let api = Api::new(&args.remote)?;
    let seen: Arc<Mutex<HashMap<String, Seen>>> = Arc::default();
    let feed = tokio::spawn(follow_feed(api.clone(), Arc::clone(&seen)));
    // Let the feed subscribe before anything can raise.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut secrets = HashMap::new();
    for p in &prepared {
        let report = api
            .post("/registry/import", &p.import)
            .await
            .with_context(|| format!("registry import of {}", p.scenario.path.display()))?;
        let warnings = report["warnings"].as_array().cloned().unwrap_or_default();
        for w in warnings.iter().take(3) {
            eprintln!(
                "{}: registry: {}",
                p.scenario.path.display(),
                w.as_str().unwrap_or_default()
            );
        }
        if warnings.len() > 3 {
            eprintln!(
                "{}: registry: … and {} more warnings",
                p.scenario.path.display(),
                warnings.len() - 3
            );
        }
        for d in report["devices"].as_array().into_iter().flatten() {
            if let (Some(id), Some(secret)) = (d["device_id"].as_str(), d["secret"].as_str()) {
                secrets.insert(id.to_owned(), secret.to_owned());
            }
        }
    }
    eprintln!(
        "run {run_id}: {} scenario(s), {} device(s) against {}",
        prepared.len(),
        prepared.iter().map(|p| p.devices.len()).sum::<usize>(),
        args.mqtt
    );

    let start = now_ms() + 1_000;
    let mut runs = Vec::new();
    for p in prepared {
        let (api, secrets, seen) = (api.clone(), secrets.clone(), Arc::clone(&seen));
        let mqtt = args.mqtt;
        runs.push(tokio::spawn(async move {
            run_one(p, start, mqtt, secrets, api, seen, today).await
        }));
    }
    let mut reports = Vec::new();
    for r in runs {
        reports.push(r.await??);
    }
    feed.abort();
    reports.sort_by(|a: &Report, b| a.file.cmp(&b.file));
    for r in &reports {
        r.print(args.check);
    }
    let passed = reports.iter().all(Report::passed);
    let total = json!({
        "run_id": run_id,
        "passed": passed,
        "scenarios": reports,
    });
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&total)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let failed = reports.iter().filter(|r| !r.passed()).count();
    println!(
        "{} scenario(s): {} passed, {failed} failed",
        reports.len(),
        reports.len() - failed
    );
    if args.check && !passed {
        std::process::exit(1);
    }
    Ok(())
}

/// One scenario: drive it, post its maintenance records, wait for its
/// alarms to settle, check them.
async fn run_one(
    p: Prepared,
    start: EpochMs,
    mqtt: SocketAddr,
    secrets: HashMap<String, String>,
    api: Api,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
    today: chrono::NaiveDate,
) -> anyhow::Result<Report> {
    let timeline =
        vigil_simulator::scenario::Timeline::new(start, p.scenario.duration_ms, p.scenario.speed);
    let wait = (start - now_ms()).max(0) as u64;
    tokio::time::sleep(Duration::from_millis(wait)).await;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let poster = {
        let api = api.clone();
        let name = p.scenario.path.display().to_string();
        tokio::spawn(async move {
            let mut posted = Vec::new();
            while let Some(Happening::Maintenance(m)) = rx.recv().await {
                let body = serde_json::to_value(&m).unwrap_or_default();
                match api.post("/maintenance", &body).await {
                    Ok(_) => posted.push(m),
                    Err(e) => eprintln!("{name}: maintenance record not posted: {e:#}"),
                }
            }
            posted
        })
    };
    let stats = vigil_simulator::scenario::drive(&p, timeline, mqtt, &secrets, tx, today).await?;
    let posted = poster.await.unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(p.scenario.settle_ms as u64)).await;
    // The store's alarms are the final word (the feed may have lagged);
    // the feed tells when each was first seen.
    let mut alarms: Vec<Seen> = Vec::new();
    for eq in &p.equipment {
        let list = api
            .get(&format!("/alarms?equipment_id={eq}&limit=10000"))
            .await?;
        for a in list["alarms"].as_array().into_iter().flatten() {
            let id = a["alarm_id"].as_str().unwrap_or_default().to_owned();
            let first_seen = seen.lock().get(&id).map(|s| s.first_seen);
            alarms.push(Seen {
                alarm: a.clone(),
                first_seen: first_seen.unwrap_or(i64::MAX),
            });
        }
    }
    // An alarm still open on the board but not yet stored.
    for s in seen.lock().values() {
        let eq = s.alarm["equipment_id"].as_str().unwrap_or_default();
        let id = s.alarm["alarm_id"].as_str().unwrap_or_default();
        if p.equipment.iter().any(|e| e == eq) && !alarms.iter().any(|a| a.alarm["alarm_id"] == id)
        {
            alarms.push(s.clone());
        }
    }
    Ok(check::check(&p, &timeline, &alarms, stats, posted))
}

/// The engine's HTTP API with the admin (or a given) token.
#[derive(Clone)]
pub(crate) struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    pub(crate) fn new(remote: &Remote) -> anyhow::Result<Api> {
        let Some(token) = remote.token.clone() else {
            bail!("no token: pass --token or set VIGIL_ADMIN_TOKEN");
        };
        Ok(Api {
            base: format!("{}/api/v1", remote.url.trim_end_matches('/')),
            token,
            client: reqwest::Client::new(),
        })
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let r = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        answer(r).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        answer(r).await
    }
}

async fn answer(r: reqwest::Response) -> anyhow::Result<Value> {
    let status = r.status();
    let body: Value = r.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        bail!(
            "{status}: {}: {}",
            body["error"]["code"].as_str().unwrap_or("error"),
            body["error"]["message"].as_str().unwrap_or("no message")
        );
    }
    Ok(body)
}

/// Follows the SSE alarm feed, keeping each alarm's latest version and
/// when it was first seen; reconnects if the stream ends.
async fn follow_feed(api: Api, seen: Arc<Mutex<HashMap<String, Seen>>>) {
    loop {
        let response = api
            .client
            .get(format!("{}/alarms/stream", api.base))
            .bearer_auth(&api.token)
            .send()
            .await;
        let Ok(response) = response else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut body = response.bytes_stream();
        let mut buf = String::new();
        while let Some(Ok(chunk)) = body.next().await {
            let at = now_ms();
            buf.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                for line in event.lines() {
                    let Some(data) = line.strip_prefix("data:") else {
                        continue;
                    };
                    let Ok(alarm) = serde_json::from_str::<Value>(data.trim()) else {
                        continue;
                    };
                    let Some(id) = alarm["alarm_id"].as_str().map(str::to_owned) else {
                        continue;
                    };
                    let mut seen = seen.lock();
                    match seen.get_mut(&id) {
                        Some(s) => {
                            if alarm["version"].as_u64() >= s.alarm["version"].as_u64() {
                                s.alarm = alarm;
                            }
                        }
                        None => {
                            seen.insert(
                                id,
                                Seen {
                                    alarm,
                                    first_seen: at,
                                },
                            );
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every scenario file named: files as given, directories searched.
fn load_all(paths: &[PathBuf]) -> anyhow::Result<Vec<Scenario>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            collect(p, &mut files)?;
        } else {
            files.push(p.clone());
        }
    }
    files.sort();
    let known: Vec<String> = vigil_rules::catalogue()
        .into_iter()
        .map(|r| r.id.to_string())
        .collect();
    let families: Vec<&str> = known.iter().filter_map(|r| r.split('.').next()).collect();
    let mut out = Vec::new();
    for f in files {
        let s = Scenario::load(&f)?;
        // A built-in family's rule must exist; other ids are rules a
        // configuration defines.
        for step in &s.steps {
            for r in &step.expect {
                let family = r.as_str().split('.').next().unwrap_or_default();
                if families.contains(&family) && !known.iter().any(|k| k == r.as_str()) {
                    bail!(
                        "{}:{}:1: no built-in rule {:?} (vigil rules list)",
                        f.display(),
                        step.line,
                        r.as_str()
                    );
                }
            }
        }
        out.push(s);
    }
    let mut tags: HashMap<&str, &Path> = HashMap::new();
    for s in &out {
        if let Some(other) = tags.insert(&s.tag, &s.path) {
            bail!(
                "{} and {} have the same tag {:?}; tags keep runs apart",
                other.display(),
                s.path.display(),
                s.tag
            );
        }
    }
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "toml")
            && path.file_name().is_some_and(|n| n != "rules.toml")
        {
            out.push(path);
        }
    }
    Ok(())
}

fn merge_tables(into: &mut toml::Table, from: &toml::Table) {
    for (k, v) in from {
        match (into.get_mut(k), v) {
            (Some(toml::Value::Table(a)), toml::Value::Table(b)) => merge_tables(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

/// Five base-36 characters of the clock (seconds): a new id every second,
/// repeating after two years.
pub(crate) fn default_run_id() -> String {
    let mut n = (now_ms() / 1000) as u64 % 36u64.pow(5);
    let mut s = Vec::new();
    for _ in 0..5 {
        s.push(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[(n % 36) as usize]);
        n /= 36;
    }
    s.reverse();
    String::from_utf8(s).unwrap_or_default()
}

/// Today in the registry's local time (China Standard Time).
fn registry_today() -> chrono::NaiveDate {
    (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive()
}

pub(crate) fn now_ms() -> EpochMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as EpochMs)
}
