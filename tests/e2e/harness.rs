//! Drives the real `vigil` binary over real sockets, as devices and
//! supervisors would: a child process, HTTP with reqwest, MQTT with rumqttc.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tokio::sync::watch;

pub(crate) const TOKEN: &str = "e2e-admin-token";

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub(crate) use crate::cluster::free_port;

/// A stable 64-bit hash (FNV-1a).
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf29ce484222325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100000001b3)
    })
}

/// The PostgreSQL schema (and role prefix) of an engine on `data_dir`.
fn schema_of(data_dir: &Path) -> String {
    format!("e2e_{:x}", fnv(data_dir.to_string_lossy().as_bytes()))
}

/// Scenarios replay hours of device time in seconds (`speed`), as a
/// gateway emptying its spool would; the per-connection quota would pace
/// them to the devices' registered rates, so the engine under test has it
/// off (docs/simulator.md).
#[allow(dead_code)]
pub(crate) const QUOTA_OFF: &str = "\n[ingest.quota]\nenabled = false\n";

/// A running `vigil run` process with its own data dir and ports.
pub(crate) struct Vigil {
    pub child: Child,
    pub data_dir: PathBuf,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    /// The mutual-TLS listener, when started with one.
    #[allow(dead_code)]
    pub mqtts: Option<SocketAddr>,
    pub client: reqwest::Client,
    _dir: Option<tempfile::TempDir>,
}

impl Vigil {
    pub(crate) async fn start() -> Vigil {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let mut vigil = Vigil::start_in(&data_dir, None).await;
        vigil._dir = Some(dir);
        vigil
    }

    /// Starts with `config` as its TOML config file.
    #[allow(dead_code)]
    pub(crate) async fn start_with_config(config: &str) -> Vigil {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("vigil.toml"), config).unwrap();
        let data_dir = dir.path().to_path_buf();
        let mut vigil = Vigil::start_in(&data_dir, None).await;
        vigil._dir = Some(dir);
        vigil
    }

    /// Starts with the mutual-TLS listener on as well (a free port).
    #[allow(dead_code)]
    pub(crate) async fn start_tls() -> Vigil {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let mqtts = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut vigil = Vigil::launch(&data_dir, None, Some(mqtts), &[]).await;
        vigil._dir = Some(dir);
        vigil
    }

    /// Starts on `data_dir` (with its `vigil.toml` if there is one), reusing
    /// the ports of a previous run if given.
    pub(crate) async fn start_in(
        data_dir: &Path,
        ports: Option<(SocketAddr, SocketAddr)>,
    ) -> Vigil {
        Vigil::launch(data_dir, ports, None, &[]).await
    }

    /// Starts with these variables added to its environment.
    #[allow(dead_code)]
    pub(crate) async fn start_with_env(env: &[(&str, &str)]) -> Vigil {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().to_path_buf();
        let mut vigil = Vigil::launch(&data_dir, None, None, env).await;
        vigil._dir = Some(dir);
        vigil
    }

    async fn launch(
        data_dir: &Path,
        ports: Option<(SocketAddr, SocketAddr)>,
        mqtts: Option<SocketAddr>,
        env: &[(&str, &str)],
    ) -> Vigil {
        let (mqtt, http) = ports.unwrap_or_else(|| {
            (
                format!("127.0.0.1:{}", free_port()).parse().unwrap(),
                format!("127.0.0.1:{}", free_port()).parse().unwrap(),
            )
        });
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("vigil.log"))
            .unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
        command.arg("run");
        if data_dir.join("vigil.toml").exists() {
            command.arg("--config").arg(data_dir.join("vigil.toml"));
        }
        if let Some(url) = crate::store_url() {
            // The PostgreSQL run: one schema (and role prefix) per data dir,
            // so a restart on the same dir finds its tables again.
            let name = schema_of(data_dir);
            command
                .args(["--store", &url])
                .env("VIGIL_POSTGRES__SCHEMA", &name)
                .env("VIGIL_POSTGRES__ROLE_PREFIX", &name);
        }
        if let Some(mqtts) = mqtts {
            command.args(["--mqtts-addr", &mqtts.to_string()]);
        }
        // The admin token from a file when the data dir has one (as
        // operators should), else on the command line.
        let token_file = data_dir.join("admin.token");
        if token_file.exists() {
            command.arg("--admin-token-file").arg(&token_file);
        } else {
            command.args(["--admin-token", TOKEN]);
        }
        let child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args([
                "--mqtt-addr",
                &mqtt.to_string(),
                "--http-addr",
                &http.to_string(),
            ])
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("vigil binary starts");
        let mut vigil = Vigil {
            child,
            data_dir: data_dir.to_path_buf(),
            mqtt,
            http,
            mqtts,
            client: reqwest::Client::new(),
            _dir: None,
        };
        vigil.wait_ready().await;
        vigil
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            // What /readyz last said, so a start that hangs says where.
            let last = match self
                .client
                .get(format!("http://{}/readyz", self.http))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return,
                Ok(r) => format!("{}: {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => format!("no answer: {e}"),
            };
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "vigil exited ({status}) before it was ready; /readyz: {last}; log ends:\n{}",
                    self.log_tail(40)
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "vigil did not become ready in 60 s; /readyz: {last}; log ends:\n{}",
                    self.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The PostgreSQL schema of this engine's tables (PostgreSQL runs only).
    #[allow(dead_code)]
    pub(crate) fn schema(&self) -> Option<String> {
        crate::store_url().map(|_| schema_of(&self.data_dir))
    }

    /// The last `n` lines of the log: where a stuck or failed start stopped
    /// (CI cuts the middle out of a long panic message).
    fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("vigil.log")).unwrap_or_default()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}/api/v1{path}", self.http)
    }

    pub(crate) async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_as(TOKEN, path, body).await
    }

    pub(crate) async fn post_as(&self, token: &str, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, token, path, body).await
    }

    #[allow(dead_code)]
    pub(crate) async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, TOKEN, path, body).await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        token: &str,
        path: &str,
        body: &Value,
    ) -> (u16, Value) {
        let r = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Waits up to `secs` until every metric sample of `expected` has its
    /// value (samples as `vigil_x_total{reason="y"}`).
    pub(crate) async fn wait_metrics(&self, secs: u64, expected: &[(&str, f64)]) {
        let what = format!("metrics {expected:?}");
        eventually(secs, &what, || async {
            for (series, value) in expected {
                if self.metric(series).await != *value {
                    return None;
                }
            }
            Some(())
        })
        .await
    }

    /// Rows of a SQL query, as JSON objects.
    pub(crate) async fn sql(&self, sql: &str) -> Vec<Value> {
        let (status, body) = self.post("/sql", &json!({ "sql": sql })).await;
        assert_eq!(status, 200, "SQL {sql:?} failed: {body}");
        body["rows"].as_array().cloned().unwrap_or_default()
    }

    /// A single number from a SQL query such as `SELECT count(*) AS n …`.
    pub(crate) async fn sql_count(&self, sql: &str) -> i64 {
        let rows = self.sql(sql).await;
        rows[0]["n"]
            .as_i64()
            .unwrap_or_else(|| panic!("no `n` in {rows:?}"))
    }

    pub(crate) async fn metrics(&self) -> String {
        self.client
            .get(format!("http://{}/metrics", self.http))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Value of one metric sample line (e.g. `vigil_ingest_rejected_total{reason="oversize"}`).
    pub(crate) async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    }

    pub(crate) async fn import(&self, doc: &Value) -> Value {
        let (status, body) = self.post("/registry/import", doc).await;
        assert_eq!(status, 200, "import refused: {body}");
        body
    }

    /// SIGKILL: no chance to flush anything.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub(crate) fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "vigil did not stop on SIGTERM; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Vigil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `check` gives `Some`, or panics with `what` after `secs`.
pub(crate) async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A registry with one owner, one maintainer, and `n` elevators in region
/// 440703 (plus one in 440100 and one disabled device), each with a device.
/// A day relative to today in China Standard Time (the registry's dates).
pub(crate) fn cst_day(offset_days: i64) -> String {
    let cst = chrono::FixedOffset::east_opt(8 * 3600).unwrap();
    chrono::Utc::now()
        .with_timezone(&cst)
        .date_naive()
        .checked_add_signed(chrono::TimeDelta::days(offset_days))
        .unwrap()
        .to_string()
}

pub(crate) fn registry_doc(n: usize) -> Value {
    // Maintained today and inspected next year: no registry-time alarms
    // unless a test asks for them.
    let (maintained, inspection) = (cst_day(0), cst_day(365));
    let mut equipment = Vec::new();
    let mut devices = Vec::new();
    for i in 0..n {
        equipment.push(json!({
            "equipment_id": format!("EQ{i:04}"), "reg_code": format!("31104407{i:06}"), "category": "elevator",
            "owner_id": "OW1", "maintainer_id": "MT1", "region": "440703", "address": format!("{i} Harbour Road"),
            "status": "in_use", "next_inspection": inspection, "last_maintenance": maintained,
            "params": {"rated_speed_mps": 1.75, "floors": [-2, 18]}
        }));
        devices.push(json!({"device_id": format!("DEV{i:04}"), "equipment_id": format!("EQ{i:04}"), "kind": "elevator"}));
    }
    equipment.push(json!({
        "equipment_id": "EQGZ", "reg_code": "3110440100000001", "category": "elevator", "owner_id": "OW2",
        "region": "440106", "address": "1 Tianhe Road", "status": "in_use", "next_inspection": inspection, "last_maintenance": maintained,
        "params": {"rated_speed_mps": 2.5, "floors": [1, 30]}
    }));
    devices.push(json!({"device_id": "DEVGZ", "equipment_id": "EQGZ", "kind": "elevator"}));
    devices.push(json!({"device_id": "DEVOFF", "equipment_id": "EQ0000", "kind": "elevator", "enabled": false}));
    json!({
        "owners": [
            {"owner_id": "OW1", "name": "Jiangmen Harbour Property Management Co.", "credit_code": "91440703MA4UABCD1X", "region": "440703", "contact": "Li Wei", "phone": "0750-1234567"},
            {"owner_id": "OW2", "name": "Tianhe Towers Ltd.", "credit_code": "91440106MA5UEFGH2Y", "region": "440106", "contact": "Chen Jie", "phone": "020-7654321"}
        ],
        "maintainers": [{"maintainer_id": "MT1", "name": "South China Lift Service", "credit_code": "91440700MA6UJKLM3X", "licence_expires": "2028-01-31"}],
        "equipment": equipment,
        "devices": devices,
    })
}

/// Secrets of new devices from an import answer.
pub(crate) fn secrets(report: &Value) -> std::collections::HashMap<String, String> {
    report["devices"]
        .as_array()
        .or_else(|| report["secrets"].as_array())
        .map(|list| {
            list.iter()
                .filter_map(|d| {
                    Some((
                        d["device_id"].as_str()?.to_owned(),
                        d["secret"].as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A healthy idle elevator sample at floor 3.
pub(crate) fn idle(seq: u64, ts: i64) -> Value {
    json!({
        "seq": seq, "ts": ts, "floor": 3, "direction": "stop", "speed_mps": 0.0, "door": "closed",
        "leveled": true, "occupied": false, "mode": "normal", "safety_circuit": true, "door_lock": true,
        "alarm_button": false, "power": "mains", "limit": "none", "run_count": 1000 + seq, "load_pct": 0.0
    })
}

/// `idle` with some fields replaced.
pub(crate) fn sample(seq: u64, ts: i64, changes: Value) -> Value {
    let mut v = idle(seq, ts);
    for (k, val) in changes.as_object().unwrap() {
        v[k] = val.clone();
    }
    v
}

/// One device's MQTT session, with the highest ack it has seen.
pub(crate) struct Device {
    pub id: String,
    pub client: AsyncClient,
    pub acked: watch::Receiver<u64>,
    pub seq: u64,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
pub(crate) enum ConnectError {
    /// A CONNACK with a failure code, or (rumqttd's way of refusing a
    /// login) the connection closed before any CONNACK: `None`.
    Refused(#[allow(dead_code)] Option<ConnectReturnCode>),
    Other(#[allow(dead_code)] String),
}

impl Device {
    pub(crate) async fn connect(
        mqtt: SocketAddr,
        id: &str,
        secret: &str,
    ) -> Result<Device, ConnectError> {
        let mut opts = MqttOptions::new(id, mqtt.ip().to_string(), mqtt.port());
        opts.set_credentials(id, secret);
        opts.set_keep_alive(Duration::from_secs(10));
        opts.set_max_packet_size(2 * 1024 * 1024, 2 * 1024 * 1024);
        let (client, mut events) = AsyncClient::new(opts, 1000);
        // Wait for the CONNACK before handing the session out.
        let first = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                    Ok(_) => continue,
                    Err(rumqttc::ConnectionError::ConnectionRefused(code)) => return Ok(code),
                    Err(rumqttc::ConnectionError::MqttState(
                        rumqttc::StateError::ConnectionAborted,
                    )) => {
                        return Err(ConnectError::Refused(None));
                    }
                    Err(e) => return Err(ConnectError::Other(e.to_string())),
                }
            }
        })
        .await
        .map_err(|_| ConnectError::Other("no CONNACK within 10 s".into()))??;
        if first != ConnectReturnCode::Success {
            return Err(ConnectError::Refused(Some(first)));
        }
        let (ack_tx, acked) = watch::channel(0u64);
        let task = tokio::spawn(pump(events, ack_tx));
        client
            .subscribe(format!("/tenants/{id}/v1/ack"), QoS::AtLeastOnce)
            .await
            .unwrap();
        Ok(Device {
            id: id.to_owned(),
            client,
            acked,
            seq: 0,
            task,
        })
    }

    pub(crate) fn topic(&self, stream: &str) -> String {
        format!("/tenants/{}/v1/{stream}", self.id)
    }

    pub(crate) async fn publish(&self, stream: &str, payload: &Value) {
        self.publish_raw(&self.topic(stream), payload.to_string().into_bytes())
            .await;
    }

    pub(crate) async fn publish_raw(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .unwrap();
    }

    /// Publishes an elevator sample with the next seq.
    pub(crate) async fn send(&mut self, ts: i64, changes: Value) -> u64 {
        self.seq += 1;
        self.publish("elevator", &sample(self.seq, ts, changes))
            .await;
        self.seq
    }

    pub(crate) async fn wait_ack(&mut self, seq: u64, secs: u64) {
        let deadline = tokio::time::sleep(Duration::from_secs(secs));
        tokio::pin!(deadline);
        loop {
            if *self.acked.borrow() >= seq {
                return;
            }
            tokio::select! {
                r = self.acked.changed() => assert!(r.is_ok(), "device {} lost its session", self.id),
                _ = &mut deadline => panic!("device {}: no ack for seq {seq} within {secs} s (acked {})", self.id, *self.acked.borrow()),
            }
        }
    }

    pub(crate) async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
    }
}

async fn pump(mut events: EventLoop, acks: watch::Sender<u64>) {
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic.ends_with("/v1/ack") => {
                if let Some(seq) = serde_json::from_slice::<Value>(&p.payload)
                    .ok()
                    .and_then(|v| v["seq"].as_u64())
                {
                    acks.send_modify(|a| *a = (*a).max(seq));
                }
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

/// Collects the live SSE feed in the background.
pub(crate) struct Feed {
    pub events: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    pub(crate) async fn open(vigil: &Vigil, token: &str, query: &str) -> Feed {
        let response = vigil
            .client
            .get(vigil.url(&format!("/alarms/stream{query}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        let events = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&events);
        let task = tokio::spawn(async move {
            use futures::StreamExt;
            let mut body = response.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let mut name = "message";
                    let mut data = String::new();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("event:") {
                            name = if v.trim() == "alarm" {
                                "alarm"
                            } else {
                                "other"
                            };
                        } else if let Some(v) = line.strip_prefix("data:") {
                            data.push_str(v.trim_start());
                        }
                    }
                    if name == "alarm"
                        && let Ok(v) = serde_json::from_str(&data)
                    {
                        sink.lock().unwrap().push(v);
                    }
                }
            }
        });
        Feed { events, task }
    }

    pub(crate) fn alarms(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    /// Whether the server ended the stream.
    pub(crate) fn ended(&self) -> bool {
        self.task.is_finished()
    }

    /// Waits for an event matching `pred`.
    pub(crate) async fn wait_for(
        &self,
        secs: u64,
        what: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(secs, what, || {
            let found = self.alarms().into_iter().find(|a| pred(a));
            async move { found }
        })
        .await
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// `vigil_cli` that must succeed.
#[allow(dead_code)]
pub(crate) fn vigil_cli_ok(vigil: &Vigil, args: &[&str]) {
    let out = vigil_cli(vigil, args);
    assert!(
        out.status.success(),
        "vigil {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `vigil {args} --url … --token …` against `vigil`.
#[allow(dead_code)]
pub(crate) fn vigil_cli(vigil: &Vigil, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .args(["--url", &format!("http://{}", vigil.http), "--token", TOKEN])
        .output()
        .expect("vigil runs")
}
