//! People's SQL cannot bring the engine down or see past a grant: hostile
//! queries from an analyst get a 4xx within the configured limits while
//! `/healthz` answers, a device keeps getting its acks and the engine's
//! memory stays within its SQL budget; errors and timing reveal nothing of
//! another region; supervisors query their own regions only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

/// Small limits, so that each hostile probe ends within seconds.
const TIMEOUT_S: u64 = 3;
const MEMORY_MIB: u64 = 128;
const ANSWER_MIB: u64 = 8;

fn config(timeout_s: u64) -> String {
    format!(
        "[engine]\n\
         sql_timeout_s = {timeout_s}\n\
         sql_memory_mib = {MEMORY_MIB}\n\
         sql_max_answer_mib = {ANSWER_MIB}\n\
         sql_max_concurrent = 2\n\
         [embedded]\n\
         flush_rows = 2\n\
         [postgres]\n\
         sql_work_mem_mib = 4\n\
         sql_temp_file_limit_mib = 64\n"
    )
}

fn on_postgres() -> bool {
    crate::store_url().is_some()
}

/// A table function of `n` rows: `range` on DataFusion, `generate_series` on PostgreSQL.
fn rows(n: u64) -> String {
    if on_postgres() {
        format!("generate_series(1, {n})")
    } else {
        format!("range({n})")
    }
}

/// 10¹² rows from small inputs: it runs into the timeout, not a memory
/// limit. (PostgreSQL would keep a cross join's inner side in temporary
/// files; a set-returning function in the select list streams.)
fn endless() -> String {
    if on_postgres() {
        "SELECT count(*) FROM (SELECT generate_series(1, 1000000000000)) s".into()
    } else {
        let t = rows(10_000);
        format!("SELECT count(*) FROM {t} a CROSS JOIN {t} b CROSS JOIN {t} c")
    }
}

async fn token(vigil: &Vigil, role: &str, regions: &[&str]) -> String {
    let (status, body) = vigil
        .post(
            "/tokens",
            &json!({"name": format!("{role}-{}", regions.join("-")), "role": role, "regions": regions}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

/// Status and body text of a query as `token`, waiting `wait` at most.
async fn sql_as(vigil: &Vigil, token: &str, sql: &str, wait: Duration) -> (u16, String) {
    let r = vigil
        .client
        .post(vigil.url("/sql"))
        .bearer_auth(token)
        .timeout(wait)
        .json(&json!({ "sql": sql }))
        .send()
        .await
        .unwrap_or_else(|e| panic!("no answer to {:.80}… within {wait:?}: {e}", sql));
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

fn status_field(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// CPU time (user + system) of the process so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// What the background watchers saw while the probes ran.
struct Watch {
    stop: Arc<AtomicBool>,
    healthz_failures: Arc<AtomicU64>,
    healthz_ok: Arc<AtomicU64>,
    acked: Arc<AtomicU64>,
    device: tokio::task::JoinHandle<Result<(), String>>,
    health: tokio::task::JoinHandle<()>,
}

impl Watch {
    async fn start(vigil: &Vigil, mut device: Device) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let healthz_failures = Arc::new(AtomicU64::new(0));
        let healthz_ok = Arc::new(AtomicU64::new(0));
        let acked = Arc::new(AtomicU64::new(0));
        let url = format!("http://{}/healthz", vigil.http);
        let (s, fails, oks) = (
            Arc::clone(&stop),
            Arc::clone(&healthz_failures),
            Arc::clone(&healthz_ok),
        );
        let health = tokio::spawn(async move {
            let client = reqwest::Client::new();
            while !s.load(Ordering::Relaxed) {
                let r = client
                    .get(&url)
                    .timeout(Duration::from_secs(3))
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status().is_success() => oks.fetch_add(1, Ordering::Relaxed),
                    _ => fails.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
        let (s, count) = (Arc::clone(&stop), Arc::clone(&acked));
        let device = tokio::spawn(async move {
            while !s.load(Ordering::Relaxed) {
                let seq = device.send(now_ms(), json!({})).await;
                let mut acks = device.acked.clone();
                tokio::time::timeout(Duration::from_secs(10), acks.wait_for(|a| *a >= seq))
                    .await
                    .map_err(|_| format!("no ack for seq {seq} within 10 s"))?
                    .map_err(|_| "the device lost its session".to_owned())?;
                count.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            device.disconnect().await;
            Ok(())
        });
        Watch {
            stop,
            healthz_failures,
            healthz_ok,
            acked,
            device,
            health,
        }
    }

    /// Stops watching; asserts /healthz always answered and every reading was acked.
    async fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let device = self.device.await.unwrap();
        self.health.await.unwrap();
        assert_eq!(device, Ok(()), "the device's acks stopped");
        assert!(
            self.acked.load(Ordering::Relaxed) > 0,
            "no reading was acked"
        );
        assert_eq!(
            self.healthz_failures.load(Ordering::Relaxed),
            0,
            "/healthz did not answer within 3 s ({} answers did)",
            self.healthz_ok.load(Ordering::Relaxed)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_queries_get_a_4xx_while_the_engine_keeps_serving() {
    let vigil = Vigil::start_with_config(&config(TIMEOUT_S)).await;
    let pid = vigil.child.id();
    let secrets = secrets(&vigil.import(&registry_doc(2)).await);
    let analyst = token(&vigil, "analyst", &["440700"]).await;
    let device = Device::connect(vigil.mqtt, "DEV0001", &secrets["DEV0001"])
        .await
        .unwrap();
    let rss_before = status_field(pid, "VmRSS:");
    let hwm_before = status_field(pid, "VmHWM:");
    let watch = Watch::start(&vigil, device).await;
    // Every answer within the timeout plus a margin for a loaded machine.
    let wait = Duration::from_secs(TIMEOUT_S + 12);

    let sum = format!("SELECT {}", vec!["1"; 1000].join(" + "));
    let ors: Vec<String> = (0..1000).map(|i| format!("seq = {i}")).collect();
    let or_1000 = format!(
        "SELECT count(*) FROM elevator_readings WHERE {}",
        ors.join(" OR ")
    );
    let cross = "SELECT count(*) FROM generate_series(1,100000000) a \
                 CROSS JOIN generate_series(1,100000000) b";
    let string_agg = format!(
        "SELECT length(string_agg(repeat('x',1000),',')) FROM {}",
        rows(20_000_000)
    );
    for (what, query, codes) in [
        ("1,000-term sum", sum.as_str(), &["sql_too_complex"][..]),
        ("1,000-way OR", &or_1000, &["sql_too_complex"]),
        ("runaway cross join", cross, &["sql_timeout", "sql_memory"]),
        (
            "20 M-row string_agg",
            &string_agg,
            &["sql_memory", "sql_timeout"],
        ),
    ] {
        let (status, body) = sql_as(&vigil, &analyst, query, wait).await;
        assert!((400..500).contains(&status), "{what}: {status} {body}");
        let code = serde_json::from_str::<Value>(&body).unwrap()["error"]["code"].clone();
        assert!(
            codes.iter().any(|c| code == *c),
            "{what}: {code} not one of {codes:?}: {body}"
        );
    }

    // Cross joins with small build sides run into the timeout, not the
    // memory budget; afterwards the engine's SQL threads go idle.
    let endless = endless();
    let (status, body) = sql_as(&vigil, &analyst, &endless, wait).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("sql_timeout"), "{body}");
    eventually(15, "the engine to go idle after the timeout", || async {
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Less than half a core (ticks are 1/100 s): a query still running
        // keeps one or two cores busy.
        (cpu_ticks(pid) - before < 50).then_some(())
    })
    .await;

    // 300 MB of values: more than the memory budget on DataFusion; the byte
    // cap cuts the answer where the database makes them.
    let huge = format!("SELECT repeat('x', 100000) AS v FROM {}", rows(3000));
    let (status, body) = sql_as(&vigil, &analyst, &huge, wait).await;
    assert!(
        status == 400 && body.contains("sql_memory")
            || status == 200 && body.len() as u64 <= ANSWER_MIB << 20,
        "{status} {:.300}",
        body
    );
    // The byte cap cuts an answer the row cap would let through.
    let wide = format!("SELECT repeat('x', 10000) AS v FROM {}", rows(3000));
    let (status, body) = sql_as(&vigil, &analyst, &wide, wait).await;
    assert_eq!(status, 200, "{:.300}", body);
    assert!(
        body.len() as u64 <= ANSWER_MIB << 20,
        "{} bytes",
        body.len()
    );
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["truncated"], true);
    assert!(answer["row_count"].as_u64().unwrap() < 3000);

    // Each refusal is counted by its code.
    let complex = vigil
        .metric("vigil_sql_queries_total{outcome=\"sql_too_complex\"}")
        .await;
    assert_eq!(complex, 2.0);

    watch.finish().await;
    let hwm = status_field(pid, "VmHWM:");
    let budget_kb = (MEMORY_MIB + ANSWER_MIB * 4) << 10;
    let allowed = hwm_before.max(rss_before + budget_kb);
    assert!(
        hwm <= allowed,
        "peak RSS {hwm} kB over {allowed} kB (before: RSS {rss_before} kB, peak {hwm_before} kB)"
    );
    eprintln!(
        "RSS before {rss_before} kB, peak before {hwm_before} kB, peak after the probes {hwm} kB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_the_engine_during_a_runaway_query() {
    let mut vigil = Vigil::start_with_config(&config(300)).await;
    let analyst = token(&vigil, "analyst", &["440700"]).await;
    let endless = endless();
    let client = vigil.client.clone();
    let url = vigil.url("/sql");
    let query = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(analyst)
            .json(&json!({ "sql": endless }))
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!query.is_finished(), "the query ended by itself");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &vigil.child.id().to_string()])
        .status();
    // Far less than the query's 300 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = vigil.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "vigil did not stop on SIGTERM during a query; log:\n{}",
            vigil.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "{status:?}; log:\n{}", vigil.log());
    // The query got an answer (the engine is stopping) or its connection closed.
    if let Ok(Ok(code)) = query.await {
        assert_eq!(code, 503);
    }
}

/// Readings and an over-speed alarm from both cities: Jiangmen (440703) and
/// Guangzhou (440106).
async fn both_cities(vigil: &Vigil) -> std::collections::HashMap<String, String> {
    let secrets = secrets(&vigil.import(&registry_doc(1)).await);
    let overspeed = json!({"direction": "up", "speed_mps": 3.5, "leveled": false, "floor": 9});
    for id in ["DEV0000", "DEVGZ"] {
        let mut dev = Device::connect(vigil.mqtt, id, &secrets[id]).await.unwrap();
        let ts = now_ms();
        dev.send(ts - 1000, json!({})).await;
        dev.send(ts - 500, json!({})).await;
        let seq = dev.send(ts, overspeed.clone()).await;
        dev.wait_ack(seq, 20).await;
        dev.disconnect().await;
    }
    eventually(20, "both alarms stored", || async {
        let rows = vigil
            .sql("SELECT count(DISTINCT region) AS n FROM alarm_changes")
            .await;
        (rows[0]["n"] == 2).then_some(())
    })
    .await;
    secrets
}

/// Names and ids of the Guangzhou owner, equipment and device.
const GUANGZHOU: &[&str] = &["OW2", "Tianhe", "440106", "EQGZ", "DEVGZ", "Tianhe Road"];

fn reveals_guangzhou(body: &str) -> Option<&'static str> {
    GUANGZHOU.iter().copied().find(|s| body.contains(s))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_and_plans_reveal_nothing_of_another_region() {
    let vigil = Vigil::start_with_config(&config(TIMEOUT_S)).await;
    both_cities(&vigil).await;
    let analyst = token(&vigil, "analyst", &["440700"]).await;
    let wait = Duration::from_secs(TIMEOUT_S + 12);

    // The cast fails on any row it sees whose region is not Jiangmen's: it
    // sees none, so every query answers with no rows.
    for (table, columns) in [
        ("owners", "owner_id, name, region"),
        ("equipment", "equipment_id, address, region"),
        ("alarm_changes", "alarm_id, equipment_id, region"),
        ("elevator_readings", "device_id, equipment_id, region"),
    ] {
        let query = format!(
            "SELECT region FROM {table} WHERE CASE WHEN region <> '440703' \
             THEN CAST(concat_ws('|', {columns}) AS INT) ELSE 0 END = 1"
        );
        let (status, body) = sql_as(&vigil, &analyst, &query, wait).await;
        assert_eq!(status, 200, "{table}: {body}");
        assert_eq!(
            reveals_guangzhou(&body),
            None,
            "{table} leaked another region: {body}"
        );
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["row_count"],
            0
        );
    }

    // Division by zero only where the region is the one asked about: the
    // same answer for every region outside the grant, existing or not.
    let oracle = |region: &str| {
        format!(
            "SELECT count(*) AS n FROM {{t}} WHERE 1 / (CASE WHEN region = '{region}' THEN 0 ELSE 1 END) = 1"
        )
    };
    for table in ["owners", "equipment", "elevator_readings", "alarms"] {
        let mut answers = Vec::new();
        for region in ["440106", "440104", "110101", "440100"] {
            let query = oracle(region).replace("{t}", table);
            answers.push((region, sql_as(&vigil, &analyst, &query, wait).await));
        }
        let (_, first) = &answers[0];
        assert_eq!(first.0, 200, "{table}: {}", first.1);
        for (region, answer) in &answers {
            assert_eq!(
                answer, first,
                "{table}: asking about {region} answers differently"
            );
        }
        // Inside the grant the analyst's own rows do divide by zero; the
        // message names no value.
        let own = oracle("440703").replace("{t}", table);
        let (status, body) = sql_as(&vigil, &analyst, &own, wait).await;
        assert_eq!(status, 400, "{table}: {body}");
        assert!(body.to_lowercase().contains("zero"), "{body}");
    }

    // Errors of a running query carry no values, not even the analyst's own.
    let (status, body) = sql_as(
        &vigil,
        &analyst,
        "SELECT CAST(name AS INT) FROM owners",
        wait,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(!body.contains("Jiangmen"), "{body}");
    // Mistakes in the text keep what helps to fix them.
    let (status, body) = sql_as(&vigil, &analyst, "SELECT nope FROM owners", wait).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("nope"), "{body}");

    // Plans name no files or directories, for the analyst and the admin.
    let data_dir = vigil.data_dir.to_string_lossy().into_owned();
    for who in [analyst.as_str(), TOKEN] {
        let (status, body) = sql_as(
            &vigil,
            who,
            "EXPLAIN SELECT * FROM elevator_readings WHERE seq > 0",
            wait,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert!(!body.contains(".parquet"), "{body}");
        assert!(!body.contains(&data_dir), "{body}");
        assert_eq!(reveals_guangzhou(&body), None, "{body}");
        eprintln!("{body}");
        if !on_postgres() {
            assert!(body.contains("StoreScanExec"), "{body}");
        }
        let (status, body) = sql_as(
            &vigil,
            who,
            "SELECT input_file_name() AS f FROM elevator_readings",
            wait,
        )
        .await;
        assert!(!body.contains(".parquet"), "{status} {body}");
        assert!(!body.contains(&data_dir), "{status} {body}");
        eprintln!("{body}");
    }
    if !on_postgres() {
        let files = std::fs::read_dir(vigil.data_dir.join("store/tables/elevator_readings"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert!(files > 0, "no Parquet file was written");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_supervisor_queries_readings_and_alarms_of_its_regions() {
    let vigil = Vigil::start().await;
    both_cities(&vigil).await;
    let guangzhou = token(&vigil, "supervisor", &["440100"]).await;
    let wait = Duration::from_secs(30);
    let regions = |body: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(body).unwrap();
        v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["region"].as_str().unwrap().to_owned())
            .collect()
    };
    for table in [
        "elevator_readings",
        "alarms",
        "alarm_changes",
        "owners",
        "equipment",
    ] {
        let (status, body) = sql_as(
            &vigil,
            &guangzhou,
            &format!("SELECT DISTINCT region FROM {table}"),
            wait,
        )
        .await;
        assert_eq!(status, 200, "{table}: {body}");
        assert_eq!(regions(&body), ["440106"], "{table}: {body}");
    }
    let (status, body) = sql_as(
        &vigil,
        &guangzhou,
        "SELECT equipment_id, rule FROM alarms",
        wait,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("EQGZ") && !body.contains("EQ0000"), "{body}");
    // Tables with no region say nothing about whose rows they are: not there.
    let (status, body) = sql_as(&vigil, &guangzhou, "SELECT * FROM dead_letters", wait).await;
    assert_eq!(status, 400, "{body}");

    // Owners still have no SQL.
    let (status, body) = vigil
        .post(
            "/tokens",
            &json!({"name": "ow2", "role": "owner", "owner_id": "OW2"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let owner = body["token"].as_str().unwrap();
    let (status, body) = sql_as(&vigil, owner, "SELECT 1", wait).await;
    assert_eq!(status, 403, "{body}");
}
