//! The edge gateway end to end, through real sockets and the real binaries:
//! `vigil-edge emulate` (Modbus TCP controllers) → `vigil-edge run` → a
//! TCP proxy this test can cut → `vigil run`. The engine is stopped
//! (SIGTERM) and restarted mid-stream, the gateway is SIGKILLed and
//! restarted, the link is cut and restored, the engine is SIGKILLed and
//! restarted; afterwards the store holds every message the gateway made
//! exactly once, in order (SQL over the readings).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::harness::*;

/// The `vigil-edge` binary next to `vigil`, built if a narrow test run did
/// not build it.
fn edge_binary() -> PathBuf {
    let vigil = PathBuf::from(env!("CARGO_BIN_EXE_vigil"));
    let edge = vigil.with_file_name("vigil-edge");
    if !edge.exists() {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "-p", "vigil-edge", "--bin", "vigil-edge"]);
        if vigil.parent().and_then(|p| p.file_name()) == Some("release".as_ref()) {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building vigil-edge failed");
    }
    edge
}

/// A TCP proxy from a local port to `upstream` that can be cut (every
/// connection closed, new ones closed at once) and restored.
struct Proxy {
    addr: SocketAddr,
    cut: Arc<AtomicBool>,
    generation: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = Arc::new(AtomicBool::new(false));
        let (generation, _) = watch::channel(0u64);
        let (c, g) = (Arc::clone(&cut), generation.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if c.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut severed = g.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = severed.changed() => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            cut,
            generation,
            task,
        }
    }

    fn sever(&self) {
        self.cut.store(true, Ordering::SeqCst);
        self.generation.send_modify(|g| *g += 1);
    }

    fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Process(Child);

impl Process {
    fn signal(&mut self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.0.id().to_string()])
            .status();
    }

    fn wait(&mut self, secs: u64) -> bool {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if self.0.try_wait().ok().flatten().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(args: &[&str], log: &Path) -> Process {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Process(
        Command::new(edge_binary())
            .args(args)
            .env("RUST_LOG", "info,rumqttc=warn")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("vigil-edge starts"),
    )
}

const TABLES: [&str; 4] = [
    "elevator_readings",
    "ride_readings",
    "filling_records",
    "device_events",
];

/// Every stored message per device: (seq, ts in ms), by seq.
async fn stored(vigil: &Vigil) -> BTreeMap<String, Vec<(u64, i64)>> {
    let mut out: BTreeMap<String, Vec<(u64, i64)>> = BTreeMap::new();
    for table in TABLES {
        let rows = vigil
            .sql(&format!(
                "SELECT device_id, seq, CAST(ts AS BIGINT) AS ts FROM {table}"
            ))
            .await;
        for r in rows {
            out.entry(r["device_id"].as_str().unwrap().to_owned())
                .or_default()
                .push((r["seq"].as_u64().unwrap(), r["ts"].as_i64().unwrap()));
        }
    }
    for list in out.values_mut() {
        list.sort();
    }
    out
}

async fn total(vigil: &Vigil) -> usize {
    stored(vigil).await.values().map(Vec::len).sum()
}

/// Waits until the store holds at least `more` messages beyond `from`.
async fn progress(vigil: &Vigil, from: usize, more: usize, what: &str) -> usize {
    eventually(120, what, || async {
        let n = total(vigil).await;
        (n >= from + more).then_some(n)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sample_arrives_exactly_once_through_restarts_kills_and_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut vigil = Vigil::start_in(&data, None).await;
    let ports = (vigil.mqtt, vigil.http);
    let proxy = Proxy::start(vigil.mqtt).await;
    let config = dir.path().join("edge.toml");
    let log = dir.path().join("edge.log");

    // Controllers on free ports, imported into the engine, and a gateway
    // config for them that goes through the proxy.
    let mut emulator = spawn(
        &[
            "emulate",
            "--elevators",
            "3",
            "--rides",
            "2",
            "--stations",
            "1",
            "--seed",
            "5",
            "--listen",
            "127.0.0.1:0",
            "--import",
            &format!("http://{}", vigil.http),
            "--token",
            TOKEN,
            "--gateway-config",
            config.to_str().unwrap(),
            "--mqtt",
            &proxy.addr.to_string(),
            "--spool-dir",
            dir.path().join("spool").to_str().unwrap(),
        ],
        &dir.path().join("emulator.log"),
    );
    eventually(60, "the emulator's gateway config", || async {
        config.exists().then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&config).unwrap();
    assert_eq!(text.matches("[[device]]").count(), 6, "{text}");
    let mut gateway = spawn(&["run", "--config", config.to_str().unwrap()], &log);

    let n = progress(&vigil, 0, 30, "first readings through the gateway").await;

    // 1. The engine stops mid-stream and comes back on the same ports.
    assert!(vigil.stop().success(), "engine exits cleanly");
    tokio::time::sleep(Duration::from_secs(3)).await;
    vigil = Vigil::start_in(&data, Some(ports)).await;
    let n = progress(&vigil, n, 30, "readings after the engine restart").await;

    // 2. The gateway is killed without warning and started again.
    gateway.signal("-KILL");
    assert!(gateway.wait(10));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut gateway = spawn(&["run", "--config", config.to_str().unwrap()], &log);
    let n = progress(&vigil, n, 30, "readings after the gateway restart").await;

    // 3. The link is cut for a while and restored.
    proxy.sever();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let during = total(&vigil).await;
    proxy.restore();
    let n = progress(
        &vigil,
        n.max(during),
        30,
        "readings after the link came back",
    )
    .await;

    // 4. The engine is killed (SIGKILL) mid-stream and comes back.
    vigil.kill();
    tokio::time::sleep(Duration::from_secs(2)).await;
    vigil = Vigil::start_in(&data, Some(ports)).await;
    progress(&vigil, n, 30, "readings after the engine was killed").await;

    // Let it settle: the controllers stop (each device then reports its
    // controller as not answering, once), the gateway empties its spool.
    emulator.signal("-TERM");
    assert!(emulator.wait(10));
    let settled = eventually(90, "the store to stop growing", || {
        let vigil = &vigil;
        async move {
            let a = total(vigil).await;
            tokio::time::sleep(Duration::from_secs(4)).await;
            let b = total(vigil).await;
            (a == b).then_some(b)
        }
    })
    .await;
    gateway.signal("-TERM");
    assert!(gateway.wait(20), "gateway exits on SIGTERM");

    // The gateway's own record of what it made: the highest seq per device,
    // and that the engine acked every one.
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("spool/state.json")).unwrap())
            .unwrap();
    let stored = stored(&vigil).await;
    assert_eq!(stored.values().map(Vec::len).sum::<usize>(), settled);
    let devices = state["devices"].as_object().unwrap();
    assert_eq!(devices.len(), 6);
    let mut kinds: HashMap<&str, usize> = HashMap::new();
    for (id, s) in devices {
        let last = s["last_seq"].as_u64().unwrap();
        assert_eq!(s["acked"].as_u64(), Some(last), "{id}: everything acked");
        let list = stored
            .get(id)
            .unwrap_or_else(|| panic!("{id}: nothing stored"));
        let seqs: Vec<u64> = list.iter().map(|(s, _)| *s).collect();
        let mut distinct = seqs.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), seqs.len(), "{id}: a message stored twice");
        let first = seqs[0];
        assert_eq!(seqs.last(), Some(&last), "{id}: the last message is there");
        assert_eq!(
            seqs,
            (first..=last).collect::<Vec<u64>>(),
            "{id}: every message from the first to the last, none missing"
        );
        assert!(
            list.windows(2).all(|w| w[0].1 <= w[1].1),
            "{id}: in order of seq, device time never goes back"
        );
        *kinds.entry(&id[..2]).or_default() += list.len();
    }
    // Elevators, rides and the scale all came through (the scale at least
    // with its "controller not answering" event at the end).
    for k in ["EL", "RD", "FS"] {
        assert!(kinds.get(k).copied().unwrap_or(0) > 0, "{k}: {kinds:?}");
    }
    let log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log.contains("Connected to the broker again"),
        "the gateway reconnected after the cut:\n{log}"
    );
}

/// The gateway logs in over mutual TLS with certificates the engine issued
/// (`vigil device cert`), against the engine's real TLS listener, with no
/// secret anywhere in its config: its samples are stored once each and
/// every one is acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_logs_in_with_engine_issued_certificates_over_mutual_tls() {
    let vigil = Vigil::start_tls().await;
    let mqtts = vigil.mqtts.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edge.toml");
    // The listener's certificate is for localhost (and 127.0.0.1); the
    // gateway checks it against the device CA.
    let broker = format!("localhost:{}", mqtts.port());
    let mut emulator = spawn(
        &[
            "emulate",
            "--elevators",
            "1",
            "--rides",
            "1",
            "--stations",
            "0",
            "--seed",
            "7",
            "--listen",
            "127.0.0.1:0",
            "--import",
            &format!("http://{}", vigil.http),
            "--token",
            TOKEN,
            "--gateway-config",
            config.to_str().unwrap(),
            "--mqtt",
            &broker,
            "--spool-dir",
            dir.path().join("spool").to_str().unwrap(),
        ],
        &dir.path().join("emulator.log"),
    );
    eventually(60, "the emulator's gateway config", || async {
        config.exists().then_some(())
    })
    .await;

    // Certificates instead of secrets: one per device, from the engine.
    let text = std::fs::read_to_string(&config).unwrap();
    let ids: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id = \""))
        .map(|rest| rest.trim_end_matches('"').to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{text}");
    let mut ca = None;
    let mut tls_text = String::new();
    let mut device = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("id = \"") {
            device = Some(rest.trim_end_matches('"').to_owned());
        }
        if line.starts_with("secret = ") {
            let id = device.clone().unwrap();
            let out = dir.path().join("certs").join(&id);
            vigil_cli_ok(
                &vigil,
                &["device", "cert", &id, "--out", out.to_str().unwrap()],
            );
            ca.get_or_insert_with(|| out.join("ca.pem"));
            tls_text.push_str(&format!(
                "cert = \"{}\"\nkey = \"{}\"\n",
                out.join("cert.pem").display(),
                out.join("key.pem").display()
            ));
            continue;
        }
        tls_text.push_str(line);
        tls_text.push('\n');
        if line.starts_with("broker = ") {
            tls_text.push_str(&format!("ca = \"{}\"\n", ca_path(&dir).display()));
        }
    }
    // Every device certificate carries the same CA.
    std::fs::copy(ca.unwrap(), ca_path(&dir)).unwrap();
    std::fs::write(&config, &tls_text).unwrap();

    let log = dir.path().join("edge.log");
    let mut gateway = spawn(&["run", "--config", config.to_str().unwrap()], &log);
    for id in &ids {
        eventually(90, &format!("readings of {id} over TLS"), || async {
            let n = vigil
                .sql_count(&format!(
                    "SELECT count(*) AS n FROM (SELECT device_id FROM elevator_readings \
                     UNION ALL SELECT device_id FROM ride_readings) t WHERE device_id = '{id}'"
                ))
                .await;
            (n >= 10).then_some(())
        })
        .await;
    }
    // Both devices are connected on the TLS listener; nothing was refused.
    assert_eq!(
        vigil
            .metric(r#"vigil_ingest_sessions{login="device"}"#)
            .await,
        2.0
    );
    for reason in ["bad_certificate", "tls_handshake", "connect_bad_client_id"] {
        let series = format!(r#"vigil_ingest_rejected_total{{reason="{reason}"}}"#);
        assert_eq!(vigil.metric(&series).await, 0.0, "{series}");
    }

    // Stop the controllers, let the gateway empty its spool, and see that
    // the engine stored and acked everything it made, once.
    emulator.signal("-TERM");
    assert!(emulator.wait(10));
    eventually(90, "the store to stop growing", || {
        let vigil = &vigil;
        async move {
            let a = total(vigil).await;
            tokio::time::sleep(Duration::from_secs(4)).await;
            (a == total(vigil).await).then_some(())
        }
    })
    .await;
    gateway.signal("-TERM");
    assert!(gateway.wait(20), "gateway exits on SIGTERM");
    let state: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("spool/state.json")).unwrap())
            .unwrap();
    let stored = stored(&vigil).await;
    for id in &ids {
        let s = &state["devices"][id];
        let last = s["last_seq"].as_u64().unwrap();
        assert_eq!(s["acked"].as_u64(), Some(last), "{id}: everything acked");
        let seqs: Vec<u64> = stored[id].iter().map(|(seq, _)| *seq).collect();
        assert_eq!(
            seqs,
            (seqs[0]..=last).collect::<Vec<u64>>(),
            "{id}: every message to the last, each once"
        );
    }
}

fn ca_path(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("ca.pem")
}
