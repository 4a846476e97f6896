//! Shared test harness: a registry double, a recording store, a manual
//! clock, and MQTT device clients.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use rumqttc::{
    AsyncClient, ConnAck, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, QoS,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use vigil_ingest::pki::DeviceCa;
use vigil_ingest::{
    Accepted, Directory, FeedGrant, Ingest, IngestConfig, MqttsListener, QuotaConfig,
    feed_client_prefix,
};
use vigil_model::{
    Alarm, AlarmId, AlarmState, Binding, DeadLetter, DeviceContext, DeviceId, EpochMs, EquipmentId,
    OwnerId, Region, Resolution, RuleId, Severity,
};
use vigil_storage::{
    AckToken, QueryOptions, QueryOutput, Record, Recovery, RefTable, SeqKey, Store, StoreError,
    StoredReading, StoredSeqs, Write,
};

pub(crate) const T0: EpochMs = 1_732_300_000_000;
pub(crate) const SECRET: &str = "s3cret";

/// How long a test waits for something that should happen within
/// milliseconds; only reached when the test is failing.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// The registry as ingest sees it.
#[derive(Default)]
pub(crate) struct TestDirectory {
    devices: Mutex<HashMap<String, (String, bool)>>,
    feeds: Mutex<HashMap<String, FeedGrant>>,
}

impl TestDirectory {
    pub(crate) fn with(devices: &[&str]) -> Arc<TestDirectory> {
        let dir = TestDirectory::default();
        for d in devices {
            dir.add(d, SECRET, true);
        }
        Arc::new(dir)
    }

    pub(crate) fn add(&self, device: &str, secret: &str, enabled: bool) {
        self.devices
            .lock()
            .insert(device.to_owned(), (secret.to_owned(), enabled));
    }

    /// The device leaves the registry (its sessions stay connected).
    pub(crate) fn remove(&self, device: &str) {
        self.devices.lock().remove(device);
    }

    /// A bearer token that may read the alarm feed of `grant`.
    pub(crate) fn add_feed_token(&self, token: &str, grant: FeedGrant) {
        self.feeds.lock().insert(token.to_owned(), grant);
    }

    /// The token is revoked (its sessions stay connected until re-checked).
    pub(crate) fn remove_feed_token(&self, token: &str) {
        self.feeds.lock().remove(token);
    }

    pub(crate) fn context(device: &str) -> Arc<DeviceContext> {
        Arc::new(DeviceContext {
            binding: Binding {
                equipment_id: EquipmentId::new(format!("EQ-{device}")).unwrap(),
                category: "elevator".into(),
                owner_id: OwnerId::new("OWN1").unwrap(),
                region: Region::new("440703").unwrap(),
            },
            kind: "elevator".into(),
            report_interval_s: 30,
            params: Default::default(),
            engine_slot: Default::default(),
        })
    }
}

impl Directory for TestDirectory {
    fn verify(&self, device_id: &str, secret: &str) -> bool {
        self.devices
            .lock()
            .get(device_id)
            .is_some_and(|(s, enabled)| *enabled && s == secret)
    }

    fn resolve(&self, device_id: &DeviceId) -> Resolution {
        match self.devices.lock().get(device_id.as_str()) {
            None => Resolution::Unknown,
            Some((_, false)) => Resolution::Disabled,
            Some((_, true)) => Resolution::Active(TestDirectory::context(device_id.as_str())),
        }
    }

    fn feed_grant(&self, token: &str) -> Option<FeedGrant> {
        self.feeds.lock().get(token).cloned()
    }
}

/// Records every write. Reports ack tokens durable right away, or holds
/// them while `hold` is set (to see that acks wait for durability). While
/// `stall` is set, a write does not return (a store under back-pressure).
pub(crate) struct RecordingStore {
    pub writes: Mutex<Vec<Write>>,
    /// Seqs stored before this run (an earlier process's history).
    pub stored_before: Mutex<HashSet<SeqKey>>,
    /// Every key `stored_seqs` was asked about.
    pub lookups: Mutex<Vec<SeqKey>>,
    pub calls: Mutex<usize>,
    durable: mpsc::Sender<Vec<AckToken>>,
    held: Mutex<Vec<AckToken>>,
    pub hold: AtomicBool,
    pub fail: AtomicBool,
    pub stall: AtomicBool,
}

impl RecordingStore {
    pub(crate) fn new() -> (Arc<RecordingStore>, mpsc::Receiver<Vec<AckToken>>) {
        let (durable, rx) = mpsc::channel(1024);
        let store = RecordingStore {
            writes: Mutex::new(Vec::new()),
            stored_before: Mutex::new(HashSet::new()),
            lookups: Mutex::new(Vec::new()),
            calls: Mutex::new(0),
            durable,
            held: Mutex::new(Vec::new()),
            hold: AtomicBool::new(false),
            fail: AtomicBool::new(false),
            stall: AtomicBool::new(false),
        };
        (Arc::new(store), rx)
    }

    pub(crate) fn readings(&self) -> Vec<StoredReading> {
        self.writes
            .lock()
            .iter()
            .filter_map(|w| match &w.record {
                Record::Reading(r) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    pub(crate) fn dead_letters(&self) -> Vec<(DeadLetter, Option<AckToken>)> {
        self.writes
            .lock()
            .iter()
            .filter_map(|w| match &w.record {
                Record::DeadLetter(d) => Some((d.clone(), w.ack.clone())),
                _ => None,
            })
            .collect()
    }

    /// Reports what was held as durable.
    pub(crate) async fn release(&self) {
        self.hold.store(false, Ordering::SeqCst);
        let held = std::mem::take(&mut *self.held.lock());
        if !held.is_empty() {
            self.durable.send(held).await.unwrap();
        }
    }
}

#[async_trait::async_trait]
impl Store for RecordingStore {
    async fn write(&self, batch: Vec<Write>) -> Result<(), StoreError> {
        while self.stall.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Other("disk full (test)".into()));
        }
        *self.calls.lock() += 1;
        let tokens: Vec<AckToken> = batch.iter().filter_map(|w| w.ack.clone()).collect();
        self.writes.lock().extend(batch);
        if self.hold.load(Ordering::SeqCst) {
            self.held.lock().extend(tokens);
        } else if !tokens.is_empty() {
            self.durable
                .send(tokens)
                .await
                .map_err(|_| StoreError::Closed)?;
        }
        Ok(())
    }

    async fn query(&self, _sql: &str, _opts: &QueryOptions) -> Result<QueryOutput, StoreError> {
        Err(StoreError::InvalidQuery("not in the test store".into()))
    }

    async fn recover(&self) -> Result<Recovery, StoreError> {
        Ok(Recovery::default())
    }

    async fn stored_seqs(&self, keys: &[SeqKey]) -> Result<HashSet<SeqKey>, StoreError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(StoreError::Other("disk full (test)".into()));
        }
        self.lookups.lock().extend(keys.iter().cloned());
        let before = self.stored_before.lock();
        let written: HashSet<SeqKey> = self
            .writes
            .lock()
            .iter()
            .filter_map(|w| w.ack.as_ref().map(|t| (t.device_id.clone(), t.seq)))
            .collect();
        Ok(keys
            .iter()
            .filter(|k| before.contains(*k) || written.contains(*k))
            .cloned()
            .collect())
    }

    async fn set_reference_table(&self, _table: RefTable) -> Result<(), StoreError> {
        Ok(())
    }

    async fn set_view(&self, _name: &str, _select: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.release().await;
        Ok(())
    }

    async fn close(&self) -> Result<(), StoreError> {
        self.release().await;
        Ok(())
    }

    fn health(&self) -> Result<(), String> {
        Ok(())
    }
}

/// A running ingest with everything a test looks at.
pub(crate) struct Rig {
    pub ingest: Ingest,
    /// The device CA of the TLS listener, when it is on.
    pub ca: Option<Arc<DeviceCa>>,
    pub store: Arc<RecordingStore>,
    pub directory: Arc<TestDirectory>,
    pub accepted: Arc<Mutex<Vec<Accepted>>>,
    pub metrics: prometheus::Registry,
    pub now: Arc<AtomicI64>,
}

pub(crate) struct RigOptions {
    pub devices: Vec<String>,
    pub gap_grace_s: u64,
    /// Also start the mutual-TLS listener, with a fresh device CA.
    pub tls: bool,
    pub quota: QuotaConfig,
    pub max_seq_rate: u64,
    pub puback_hold_ms: u64,
    pub batch_interval_us: u64,
    /// Seqs the store holds from before this run, per device. Recovery
    /// hands ingest those at or above `floor` (all of them without one).
    pub history: HashMap<String, Vec<u64>>,
    pub floor: HashMap<String, u64>,
}

impl Default for RigOptions {
    fn default() -> Self {
        RigOptions {
            devices: vec!["EL1".into()],
            gap_grace_s: 30,
            tls: false,
            quota: QuotaConfig::default(),
            max_seq_rate: vigil_ingest::DEFAULT_MAX_SEQ_RATE,
            puback_hold_ms: IngestConfig::default().puback_hold_ms,
            batch_interval_us: IngestConfig::default().batch_interval_us,
            history: HashMap::new(),
            floor: HashMap::new(),
        }
    }
}

impl Rig {
    pub(crate) fn start(opts: RigOptions) -> Rig {
        let directory =
            TestDirectory::with(&opts.devices.iter().map(String::as_str).collect::<Vec<_>>());
        let (store, durable) = RecordingStore::new();
        let accepted = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&accepted);
        let metrics = prometheus::Registry::new();
        let now = Arc::new(AtomicI64::new(T0));
        let clock_now = Arc::clone(&now);
        let mut recovery = Recovery::default();
        for (device, seqs) in &opts.history {
            let id = DeviceId::new(device).unwrap();
            let mut known = StoredSeqs::known_from(opts.floor.get(device).copied().unwrap_or(0));
            for &seq in seqs {
                known.insert(seq);
                store.stored_before.lock().insert((id.clone(), seq));
            }
            recovery.seqs.insert(id, known);
        }
        let ca = opts.tls.then(|| Arc::new(DeviceCa::generate().unwrap()));
        let mqtts = ca.as_ref().map(|ca| MqttsListener {
            addr: "127.0.0.1:0".parse().unwrap(),
            material: ca
                .listener_material(&["localhost".into(), "127.0.0.1".into()])
                .unwrap(),
        });
        let config = IngestConfig {
            mqtt_addr: "127.0.0.1:0".parse().unwrap(),
            mqtts,
            gap_grace_s: opts.gap_grace_s,
            quota: opts.quota,
            max_seq_rate: opts.max_seq_rate,
            puback_hold_ms: opts.puback_hold_ms,
            batch_interval_us: opts.batch_interval_us,
            ..IngestConfig::default()
        };
        let ingest = Ingest::start(
            config,
            Arc::<TestDirectory>::clone(&directory),
            Arc::<RecordingStore>::clone(&store),
            &recovery,
            durable,
            Box::new(move |batch| sink.lock().extend(batch)),
            &metrics,
            Arc::new(move || clock_now.load(Ordering::SeqCst)),
        )
        .expect("ingest starts");
        Rig {
            ingest,
            ca,
            store,
            directory,
            accepted,
            metrics,
            now,
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.ingest.mqtt_addr()
    }

    pub(crate) fn tls_addr(&self) -> SocketAddr {
        self.ingest
            .mqtts_addr()
            .expect("the rig runs the TLS listener")
    }

    pub(crate) fn ca(&self) -> &DeviceCa {
        self.ca.as_deref().expect("the rig runs the TLS listener")
    }

    /// A client certificate from the rig's CA for `device`: (cert, key) PEM.
    pub(crate) fn device_cert(&self, device: &str) -> (String, String) {
        let issued = self
            .ca()
            .issue_device(
                &DeviceId::new(device).unwrap(),
                Duration::from_secs(3600),
                None,
            )
            .unwrap();
        (issued.cert_pem, issued.key_pem.unwrap())
    }

    pub(crate) fn advance_clock(&self, ms: i64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }

    /// One sample of a Prometheus metric, e.g. `vigil_ingest_rejected_total{reason="oversize"}`.
    pub(crate) fn metric(&self, sample: &str) -> f64 {
        use prometheus::Encoder;
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&self.metrics.gather(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        text.lines()
            .find_map(|line| {
                line.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .unwrap_or_else(|| panic!("metric {sample} not found in\n{text}"))
            .parse()
            .unwrap()
    }

    /// Asserts how many SUBSCRIBEs and PUBLISHes were refused for being
    /// outside their login's topics.
    pub(crate) fn assert_topic_refusals(&self, subscribe: u32, publish: u32) {
        for (packet, expected) in [("subscribe", subscribe), ("publish", publish)] {
            let sample = format!(r#"vigil_mqtt_refused_total{{packet="{packet}"}}"#);
            assert_eq!(self.metric(&sample), f64::from(expected), "{sample}");
        }
    }

    /// Waits until `check` holds; panics with `what` after [`PATIENCE`].
    pub(crate) async fn until(&self, what: &str, mut check: impl FnMut(&Rig) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !check(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting until {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// What a client session sees.
#[derive(Debug, PartialEq)]
pub(crate) enum Seen {
    SubAck,
    Publish(String),
    Closed,
}

/// A client session: its CONNACK result, then what it sees.
pub(crate) async fn session(
    rig: &Rig,
    client_id: &str,
    user: &str,
    password: &str,
) -> Result<(AsyncClient, mpsc::UnboundedReceiver<Seen>), String> {
    let mut opts = MqttOptions::new(client_id, rig.addr().ip().to_string(), rig.addr().port());
    opts.set_credentials(user, password);
    session_with(opts).await
}

/// [`session`] with any options (a TLS client, say).
pub(crate) async fn session_with(
    opts: MqttOptions,
) -> Result<(AsyncClient, mpsc::UnboundedReceiver<Seen>), String> {
    let (client, mut eventloop) = AsyncClient::new(opts, 16);
    let (tx, rx) = mpsc::unbounded_channel();
    let connack = tokio::time::timeout(PATIENCE, async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(ack))) => return Ok(ack.code),
                Ok(_) => {}
                Err(e) => return Err(e.to_string()),
            }
        }
    })
    .await
    .map_err(|_| "no CONNACK".to_owned())??;
    if connack != ConnectReturnCode::Success {
        return Err(format!("{connack:?}"));
    }
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(Seen::SubAck);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(Seen::Publish(p.topic));
                }
                Ok(_) => {}
                Err(_) => {
                    let _ = tx.send(Seen::Closed);
                    return;
                }
            }
        }
    });
    Ok((client, rx))
}

pub(crate) async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("something within PATIENCE")
        .expect("session task alive")
}

/// A feed reader's client id for `token`: the token's prefix and a label.
pub(crate) fn feed_client_id(token: &str, label: &str) -> String {
    format!("{}-{label}", feed_client_prefix(token))
}

/// rumqttc options for a TLS client trusting `ca_pem`, presenting
/// `client` (cert, key) if given.
pub(crate) fn tls_options(
    client_id: &str,
    addr: SocketAddr,
    ca_pem: &str,
    client: Option<(&str, &str)>,
) -> MqttOptions {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = vigil_ingest::crypto_provider();
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
    ));
    opts
}

/// A device: a real MQTT client whose event loop runs in a task, reporting
/// acks it receives.
pub(crate) struct Device {
    pub id: String,
    pub client: AsyncClient,
    pub acks: mpsc::UnboundedReceiver<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Device {
    /// Connects with the standard secret, subscribes to its ack topic and
    /// waits for the SUBACK.
    pub(crate) async fn connect(addr: SocketAddr, id: &str) -> Device {
        Device::connect_with(addr, id, id, SECRET)
            .await
            .expect("device connects")
    }

    pub(crate) async fn connect_with(
        addr: SocketAddr,
        client_id: &str,
        user: &str,
        secret: &str,
    ) -> Result<Device, String> {
        let mut opts = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
        opts.set_credentials(user, secret);
        opts.set_keep_alive(Duration::from_secs(30));
        Device::connect_opts(opts, user).await
    }

    /// A device on the TLS listener with its certificate from the rig's CA.
    pub(crate) async fn connect_tls(rig: &Rig, id: &str) -> Result<Device, String> {
        let (cert, key) = rig.device_cert(id);
        let opts = tls_options(id, rig.tls_addr(), rig.ca().ca_pem(), Some((&cert, &key)));
        Device::connect_opts(opts, id).await
    }

    /// Connects with `opts` as device `id`, subscribes to its ack topic and
    /// waits for the SUBACK.
    pub(crate) async fn connect_opts(mut opts: MqttOptions, id: &str) -> Result<Device, String> {
        let user = id;
        opts.set_max_packet_size(2 << 20, 2 << 20);
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        match first_event(&mut eventloop).await? {
            ConnAck {
                code: ConnectReturnCode::Success,
                ..
            } => {}
            other => return Err(format!("connection refused: {other:?}")),
        }
        client
            .subscribe(format!("/tenants/{user}/v1/ack"), QoS::AtLeastOnce)
            .await
            .map_err(|e| e.to_string())?;
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut subscribed_tx = Some(subscribed_tx);
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed_tx.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let v: Value = serde_json::from_slice(&p.payload).expect("ack is JSON");
                        let _ = ack_tx.send(v["seq"].as_u64().expect("ack has a seq"));
                    }
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        });
        tokio::time::timeout(PATIENCE, subscribed)
            .await
            .map_err(|_| "no SUBACK".to_owned())?
            .map_err(|_| "event loop ended".to_owned())?;
        Ok(Device {
            id: user.to_owned(),
            client,
            acks,
            task,
        })
    }

    pub(crate) async fn send(&self, stream: &str, payload: Vec<u8>) {
        self.send_on(&format!("/tenants/{}/v1/{stream}", self.id), payload)
            .await;
    }

    pub(crate) async fn send_on(&self, topic: &str, payload: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .expect("publish queued");
    }

    pub(crate) async fn event(&self, seq: u64) {
        self.send("event", event(seq)).await;
    }

    /// Waits for an ack of exactly `seq`, skipping lower ones; panics on a
    /// higher one (acks must never run ahead).
    pub(crate) async fn expect_ack(&mut self, seq: u64) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let got = tokio::time::timeout_at(deadline, self.acks.recv())
                .await
                .unwrap_or_else(|_| panic!("{}: no ack {seq} within {PATIENCE:?}", self.id))
                .expect("device connection open");
            assert!(
                got <= seq,
                "{}: ack {got} ran ahead of the expected {seq}",
                self.id
            );
            if got == seq {
                return;
            }
        }
    }

    /// Asserts no ack arrives above `seq` within a short while.
    pub(crate) async fn expect_no_ack_above(&mut self, seq: u64, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        while let Ok(Some(got)) = tokio::time::timeout_at(deadline, self.acks.recv()).await {
            assert!(got <= seq, "{}: ack {got} above {seq}", self.id);
        }
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn first_event(eventloop: &mut EventLoop) -> Result<ConnAck, String> {
    match tokio::time::timeout(PATIENCE, eventloop.poll()).await {
        Err(_) => Err("no answer to CONNECT".into()),
        Ok(Err(e)) => Err(format!("connection failed: {e}")),
        Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => Ok(ack),
        Ok(Ok(other)) => Err(format!("expected CONNACK, got {other:?}")),
    }
}

pub(crate) fn event(seq: u64) -> Vec<u8> {
    json!({"seq": seq, "ts": T0 - 1000, "code": "E01", "active": true})
        .to_string()
        .into_bytes()
}

pub(crate) fn elevator(seq: u64) -> Value {
    json!({
        "seq": seq, "ts": T0 - 1000, "floor": 3, "direction": "up", "speed_mps": 1.5,
        "door": "closed", "leveled": false, "occupied": true, "mode": "normal",
        "safety_circuit": true, "door_lock": true, "alarm_button": false,
        "power": "mains", "limit": "none", "firmware": "2.1"
    })
}

pub(crate) fn seqs_of(readings: &[StoredReading], device: &str) -> Vec<u64> {
    readings
        .iter()
        .filter(|r| r.reading.device_id.as_str() == device)
        .map(|r| r.reading.seq)
        .collect()
}

/// A critical alarm of EL1's equipment in `region`.
pub(crate) fn alarm_in(region: &str) -> Alarm {
    Alarm {
        alarm_id: AlarmId::new("A1").unwrap(),
        rule: RuleId::new("elevator.trapped").unwrap(),
        severity: Severity::Critical,
        state: AlarmState::Active,
        equipment_id: EquipmentId::new("EQ-EL1").unwrap(),
        device_id: Some(DeviceId::new("EL1").unwrap()),
        category: "elevator".into(),
        owner_id: OwnerId::new("OWN1").unwrap(),
        region: Region::new(region).unwrap(),
        raised_at: T0,
        updated_at: T0,
        cleared_at: None,
        count: 1,
        details: json!({"floor": 3, "stopped_for_s": 62}),
        version: 1,
        acknowledged_at: None,
        acknowledged_by: None,
        note: None,
    }
}
