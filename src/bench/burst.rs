//! `vigil bench burst`: a QoS 1 burst from plain MQTT clients that never
//! re-send (`mosquitto_pub -l`, Debian's mosquitto-clients), through the
//! whole engine, against a Mosquitto relay of the very same burst in the
//! same run (Debian's `mosquitto`, a `mosquitto_sub` reading it all).
//!
//! - Mosquitto: publishers → mosquitto → one QoS 1 subscriber; the time
//!   from starting the publishers to the last message the subscriber has.
//! - Vigil: publishers → the engine (in this process, embedded store in a
//!   temp dir, quotas off); the time until every reading was taken and the
//!   store flushed. `lost` = readings missing from the store although
//!   mosquitto_pub had them PUBACKed.

use std::io::{BufRead, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde::Serialize;
use serde_json::json;
use vigil_simulator::{Fleet, FleetConfig};

use vigil_server::ServerConfig;
use vigil_server::{Engine, system_clock};

#[derive(Debug, Args)]
pub(crate) struct BurstArgs {
    /// Publishing clients (one device each).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Messages over all clients.
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Also write the figures as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Side {
    seconds: f64,
    /// Messages through per second (Mosquitto: delivered to the
    /// subscriber; Vigil: stored).
    per_s: f64,
    through: u64,
    lost: u64,
}

#[derive(Debug, Serialize)]
struct BurstReport {
    clients: usize,
    messages: u64,
    mosquitto: Side,
    vigil: Side,
    vigil_broker_skipped: u64,
    /// Vigil's stored/s over Mosquitto's relayed/s.
    ratio: f64,
}

pub(super) async fn run(args: BurstArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.clients > 0 && args.messages > 0,
        "need clients and messages"
    );
    let per_client = args.messages.div_ceil(args.clients as u64);
    let total = per_client * args.clients as u64;
    let fleet = Fleet::generate(&FleetConfig {
        devices: args.clients,
        seed: 7,
        fault_fraction: 0.0,
        ..FleetConfig::default()
    });
    let mut ids = fleet.device_ids();
    ids.sort();
    let work = tempfile::Builder::new().prefix("vigil-burst-").tempdir()?;
    let files = write_lines(work.path(), &ids, per_client)?;

    eprintln!(
        "Mosquitto relay: {total} QoS 1 messages from {} mosquitto_pub -l …",
        args.clients
    );
    let mosquitto = relay(work.path(), &ids, &files, total).await?;
    eprintln!(
        "  {:.0}/s relayed, {} lost",
        mosquitto.per_s, mosquitto.lost
    );

    eprintln!("Vigil: the same burst into the engine …");
    let (vigil, skipped) = engine(work.path(), &fleet, &ids, &files, total).await?;
    eprintln!("  {:.0}/s stored, {} lost", vigil.per_s, vigil.lost);

    let report = BurstReport {
        clients: args.clients,
        messages: total,
        ratio: vigil.per_s / mosquitto.per_s,
        mosquitto,
        vigil,
        vigil_broker_skipped: skipped,
    };
    println!(
        "\n### QoS 1 burst: {total} messages from {} mosquitto_pub -l\n",
        args.clients
    );
    println!("| | seconds | messages/s | through | lost |");
    println!("|---|---:|---:|---:|---:|");
    for (name, s) in [
        ("Mosquitto relay", &report.mosquitto),
        ("Vigil, stored", &report.vigil),
    ] {
        println!(
            "| {name} | {:.1} | {:.0} | {} | {} |",
            s.seconds, s.per_s, s.through, s.lost
        );
    }
    println!(
        "\nVigil stored/s over Mosquitto relayed/s = {:.2}; broker skipped {}",
        report.ratio, report.vigil_broker_skipped
    );
    super::write_json(args.json.as_deref(), &report)
}

/// One file of JSON lines per device: idle elevator samples, seq 1….
fn write_lines(dir: &Path, ids: &[String], per_client: u64) -> anyhow::Result<Vec<PathBuf>> {
    let ts = chrono::Utc::now().timestamp_millis();
    ids.iter()
        .map(|id| {
            let path = dir.join(format!("{id}.jsonl"));
            let mut out = std::io::BufWriter::new(std::fs::File::create(&path)?);
            for seq in 1..=per_client {
                let sample = json!({
                    "seq": seq, "ts": ts, "floor": 3, "direction": "stop", "speed_mps": 0.0,
                    "door": "closed", "leveled": true, "occupied": false, "mode": "normal",
                    "safety_circuit": true, "door_lock": true, "alarm_button": false,
                    "power": "mains", "limit": "none"
                });
                writeln!(out, "{sample}")?;
            }
            out.flush()?;
            Ok(path)
        })
        .collect()
}

/// Starts one `mosquitto_pub -l` per device on `port`.
fn publishers(
    port: u16,
    ids: &[String],
    files: &[PathBuf],
    secret: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<Vec<Child>> {
    ids.iter()
        .zip(files)
        .map(|(id, file)| {
            let mut cmd = Command::new("mosquitto_pub");
            cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-i", id])
                .args(["-t", &format!("/tenants/{id}/v1/elevator"), "-q", "1", "-l"]);
            if let Some(secret) = secret(id) {
                cmd.args(["-u", id, "-P", &secret]);
            }
            cmd.stdin(std::fs::File::open(file)?)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("cannot run mosquitto_pub (apt-get install mosquitto-clients)")
        })
        .collect()
}

async fn wait_all(children: Vec<Child>) -> anyhow::Result<()> {
    for mut child in children {
        let status = tokio::task::spawn_blocking(move || child.wait()).await??;
        anyhow::ensure!(status.success(), "a mosquitto_pub failed: {status}");
    }
    Ok(())
}

pub(super) fn mosquitto_binary() -> &'static str {
    if Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

/// Mosquitto from the distribution on a free loopback port, listening, and
/// one QoS 1 `mosquitto_sub` of `/tenants/#` (client id `reader`) whose
/// stdout has a line per message: the relay both benches measure against.
pub(super) async fn start_relay(dir: &Path, reader: &str) -> anyhow::Result<(Child, Child, u16)> {
    // A port found free can be taken (by another program's outgoing
    // connection) before Mosquitto binds it; Mosquitto then exits, and a
    // new port is tried.
    let mut attempt = 0;
    let (mut broker, port) = loop {
        attempt += 1;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut broker = spawn_mosquitto(dir, port)?;
        if wait_listening(&mut broker, port).await? {
            break (broker, port);
        }
        if attempt == 3 {
            anyhow::bail!("mosquitto exited at start 3 times (ports taken?)");
        }
    };
    let sub = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-i", reader])
        .args(["-t", "/tenants/#", "-q", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    match sub {
        Ok(sub) => Ok((broker, sub, port)),
        Err(e) => {
            stop(&mut broker);
            Err(e).context("cannot run mosquitto_sub (apt-get install mosquitto-clients)")
        }
    }
}

/// Mosquitto on `port` with the relay's configuration.
fn spawn_mosquitto(dir: &Path, port: u16) -> anyhow::Result<Child> {
    let conf = dir.join("mosquitto.conf");
    // Nothing queued is dropped, nothing is kept on disk, sockets without
    // Nagle, as the engine's.
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             max_queued_messages 0\nmax_inflight_messages 0\nset_tcp_nodelay true\n"
        ),
    )?;
    Command::new(mosquitto_binary())
        .args(["-c", conf.to_str().unwrap_or_default()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot run mosquitto (apt-get install mosquitto)")
}

/// True once the broker listens; false when it exited first.
async fn wait_listening(broker: &mut Child, port: u16) -> anyhow::Result<bool> {
    let listening = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if broker.try_wait()?.is_some() {
            return Ok(false);
        }
        if listening.elapsed() > Duration::from_secs(10) {
            stop(broker);
            anyhow::bail!("mosquitto did not listen on port {port}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Something else may have been listening there: ours must still run.
    Ok(broker.try_wait()?.is_none())
}

/// Kills the broker and reaps it.
fn stop(broker: &mut Child) {
    let _ = broker.kill();
    let _ = broker.wait();
}

async fn relay(dir: &Path, ids: &[String], files: &[PathBuf], total: u64) -> anyhow::Result<Side> {
    let (mut broker, mut sub, port) = start_relay(dir, "relay-reader").await?;
    let out = sub.stdout.take().context("no stdout")?;
    // Count delivered lines on a thread until all arrived or 10 s of silence.
    let (count_tx, mut count_rx) = tokio::sync::watch::channel(0u64);
    std::thread::spawn(move || {
        let mut n = 0u64;
        for line in std::io::BufReader::new(out).lines() {
            if line.is_err() {
                break;
            }
            n += 1;
            if n.is_multiple_of(1000) || n == total {
                let _ = count_tx.send(n);
            }
        }
        let _ = count_tx.send(n);
    });
    // The subscription must be in place before the first publish.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let pubs = publishers(port, ids, files, |_| None)?;
    let received = loop {
        let n = *count_rx.borrow();
        if n >= total {
            break n;
        }
        match tokio::time::timeout(Duration::from_secs(10), count_rx.changed()).await {
            Ok(Ok(())) => {}
            _ => break *count_rx.borrow(),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    wait_all(pubs).await?;
    let _ = sub.kill();
    stop(&mut broker);
    Ok(Side {
        seconds,
        per_s: received as f64 / seconds,
        through: received,
        lost: total.saturating_sub(received),
    })
}

async fn engine(
    dir: &Path,
    fleet: &Fleet,
    ids: &[String],
    files: &[PathBuf],
    total: u64,
) -> anyhow::Result<(Side, u64)> {
    let mut config = ServerConfig {
        data_dir: dir.join("vigil"),
        mqtt_addr: "127.0.0.1:0".parse()?,
        http_addr: "127.0.0.1:0".parse()?,
        ..ServerConfig::default()
    };
    config.ingest.quota.enabled = false;
    let engine = Engine::start(config, system_clock()).await?;
    let report = engine
        .state()
        .registry()
        .import(serde_json::from_value(fleet.import_doc())?)?;
    let secrets: std::collections::HashMap<String, String> = report
        .devices
        .into_iter()
        .map(|d| (d.device_id.to_string(), d.secret))
        .collect();
    let state = std::sync::Arc::clone(engine.state());
    let stats = || state.ingest_stats();
    let started = Instant::now();
    let pubs = publishers(engine.mqtt_addr().port(), ids, files, |id| {
        secrets.get(id).cloned()
    })?;
    // mosquitto_pub exits once all its messages are PUBACKed.
    wait_all(pubs).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats().accepted < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    engine.state().store().flush().await?;
    let seconds = started.elapsed().as_secs_f64();
    let s = stats();
    let stored = s.accepted;
    engine.shutdown().await?;
    Ok((
        Side {
            seconds,
            per_s: stored as f64 / seconds,
            through: stored,
            lost: total.saturating_sub(stored),
        },
        s.broker_skipped,
    ))
}
