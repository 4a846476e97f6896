//! Paced load for benchmarks: N clients, each publishing valid elevator
//! samples at a fixed rate, measuring publish→ack latency per message.
//!
//! All clients connect first and each has one warm-up message acked (so the
//! engine has taken the jump to this run's seq numbers); sending starts together (each client at its
//! own phase of the period, so the load is smooth), stops after `duration`,
//! and then waits up to `drain` for the last acks. An unpaced QoS 1 run would
//! measure queue growth, not throughput (architecture.md), hence the pacing.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};
use tracing::{info, warn};
use vigil_model::reading::{Direction, Door, ElevatorMode, ElevatorSample, Limit, Power};
use vigil_model::{DeviceId, Payload, Stream};

use crate::error::SimError;
use crate::run::{low_latency, now_ms};
use crate::wire;

/// Connecting, subscribing and the warm-up ack of every client must fit;
/// longer than the engine's default gap grace (30 s), which a warm-up whose
/// seq jumps over an earlier run's waits out.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// Requests queued per client; a tick that finds it full is skipped (the
/// broker is not keeping up) and counted as not sent.
const REQUEST_CHANNEL: usize = 1024;

/// What load to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    /// Clients; the first `devices` ids of `secrets`, in sorted order.
    pub devices: usize,
    /// Samples per second per client.
    pub rate_hz: f64,
    /// How long to send.
    pub duration: Duration,
    /// How long to wait for outstanding acks after sending stops.
    pub drain: Duration,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            devices: 200,
            rate_hz: 1.0,
            duration: Duration::from_secs(30),
            drain: Duration::from_secs(5),
        }
    }
}

/// The outcome of a load run. Latencies cover acked messages only.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    pub devices: usize,
    /// Clients connected, with their warm-up message acked, when sending started.
    pub connected: usize,
    pub sent: u64,
    /// Sent messages covered by an ack before the drain ended.
    pub acked: u64,
    /// Ticks skipped because the client's request queue was full.
    pub skipped: u64,
    /// The sending phase as configured, excluding connect and drain. Sends are
    /// paced on a clock, so it is also the real one: a tick that comes too
    /// late is dropped rather than sent in a burst, and `sent` tells.
    pub elapsed: Duration,
    pub ack_latency_ms_p50: f64,
    pub ack_latency_ms_p90: f64,
    pub ack_latency_ms_p99: f64,
    pub ack_latency_ms_max: f64,
}

/// Per client: messages waiting for an ack, and measured latencies. Shared
/// by the sending task and the event-loop task; held only for a push or pop.
#[derive(Default)]
struct Track {
    pending: VecDeque<(u64, Instant)>,
    latencies_us: Vec<u32>,
    sent: u64,
    skipped: u64,
}

fn lock(t: &Mutex<Track>) -> MutexGuard<'_, Track> {
    t.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Runs a paced load against the broker at `mqtt` and reports what was sent,
/// what was acked and the publish→ack latency distribution.
pub async fn load(
    cfg: LoadConfig,
    mqtt: SocketAddr,
    secrets: HashMap<String, String>,
) -> Result<LoadReport, SimError> {
    if !(cfg.rate_hz.is_finite() && cfg.rate_hz > 0.0 && cfg.rate_hz <= 1000.0) {
        return Err(SimError::InvalidConfig {
            field: "rate_hz",
            reason: format!("{} is not in (0, 1000]", cfg.rate_hz),
        });
    }
    if cfg.devices == 0 || cfg.duration.is_zero() {
        return Err(SimError::InvalidConfig {
            field: "devices/duration",
            reason: "both must be positive".into(),
        });
    }
    let mut ids: Vec<&String> = secrets
        .keys()
        .filter(|id| DeviceId::new(id.as_str()).is_ok())
        .collect();
    ids.sort();
    if ids.len() < cfg.devices {
        return Err(SimError::NotEnoughDevices {
            wanted: cfg.devices,
            available: ids.len(),
        });
    }
    ids.truncate(cfg.devices);

    let period = Duration::from_secs_f64(1.0 / cfg.rate_hz);
    // Seq numbers above anything an earlier run used: the engine
    // de-duplicates on (device, seq), and these devices keep no state.
    let seq_base = now_ms().max(0) as u64 * 1000;
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(cfg.devices);
    let mut tracks = Vec::with_capacity(ids.len());
    let mut tasks = JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let track = Arc::new(Mutex::new(Track::default()));
        tracks.push(track.clone());
        let phase = period.mul_f64(i as f64 / cfg.devices as f64);
        let client = LoadClient {
            id: (*id).clone(),
            secret: secrets.get(*id).cloned().unwrap_or_default(),
            mqtt,
            track,
            seq_base,
            period,
            phase,
            duration: cfg.duration,
            drain: cfg.drain,
        };
        tasks.spawn(client.run(ready_tx.clone(), start_rx.clone()));
    }
    drop(ready_tx);

    let mut connected = 0;
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    while connected < cfg.devices {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            ready_rx.recv(),
        )
        .await
        {
            Ok(Some(())) => connected += 1,
            _ => break,
        }
    }
    if connected < cfg.devices {
        warn!(
            connected,
            devices = cfg.devices,
            "Not every load client connected in time; starting anyway."
        );
    }
    let start = Instant::now() + Duration::from_millis(100);
    info!(
        devices = cfg.devices,
        connected,
        rate_hz = cfg.rate_hz,
        duration_s = cfg.duration.as_secs_f64(),
        "Load starting."
    );
    start_tx.send_replace(Some(start));
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            return Err(SimError::TaskFailed {
                message: e.to_string(),
            });
        }
    }

    let mut latencies: Vec<u32> = Vec::new();
    let (mut sent, mut skipped) = (0, 0);
    for t in &tracks {
        let mut t = lock(t);
        sent += t.sent;
        skipped += t.skipped;
        latencies.append(&mut t.latencies_us);
    }
    latencies.sort_unstable();
    let pct = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        f64::from(latencies[rank - 1]) / 1000.0
    };
    let report = LoadReport {
        devices: cfg.devices,
        connected,
        sent,
        acked: latencies.len() as u64,
        skipped,
        elapsed: cfg.duration,
        ack_latency_ms_p50: pct(0.50),
        ack_latency_ms_p90: pct(0.90),
        ack_latency_ms_p99: pct(0.99),
        ack_latency_ms_max: pct(1.0),
    };
    info!(
        sent = report.sent,
        acked = report.acked,
        p50_ms = report.ack_latency_ms_p50,
        p99_ms = report.ack_latency_ms_p99,
        "Load finished."
    );
    Ok(report)
}

struct LoadClient {
    id: String,
    secret: String,
    mqtt: SocketAddr,
    track: Arc<Mutex<Track>>,
    seq_base: u64,
    period: Duration,
    phase: Duration,
    duration: Duration,
    drain: Duration,
}

impl LoadClient {
    async fn run(self, ready: mpsc::Sender<()>, mut start: watch::Receiver<Option<Instant>>) {
        let mut opts = MqttOptions::new(
            self.id.clone(),
            self.mqtt.ip().to_string(),
            self.mqtt.port(),
        );
        opts.set_credentials(self.id.clone(), self.secret.clone())
            .set_keep_alive(Duration::from_secs(30))
            .set_clean_session(true);
        let (client, mut eventloop) = AsyncClient::new(opts, REQUEST_CHANNEL);
        eventloop.set_network_options(low_latency());
        let poller = tokio::spawn(poll(
            eventloop,
            self.id.clone(),
            client.clone(),
            self.seq_base,
            self.track.clone(),
            ready,
        ));

        let Ok(start) = start
            .wait_for(Option::is_some)
            .await
            .map(|s| s.unwrap_or_else(Instant::now))
        else {
            return;
        };
        let end = start + self.duration;
        let mut ticks = interval_at(start + self.phase, self.period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let topic = wire::topic(&self.id, Stream::Elevator);
        let mut seq = self.seq_base;
        loop {
            let at = ticks.tick().await;
            if at >= end {
                break;
            }
            seq += 1;
            let Ok(bytes) = wire::encode(seq, now_ms(), &idle_sample(seq)) else {
                continue;
            };
            // Recorded before publishing, so an ack can never overtake it.
            lock(&self.track).pending.push_back((seq, Instant::now()));
            if client
                .try_publish(topic.clone(), QoS::AtLeastOnce, false, bytes)
                .is_ok()
            {
                lock(&self.track).sent += 1;
            } else {
                let mut t = lock(&self.track);
                t.pending.pop_back();
                t.skipped += 1;
                seq -= 1;
            }
        }
        let drain_end = Instant::now() + self.drain;
        while Instant::now() < drain_end && !lock(&self.track).pending.is_empty() {
            sleep(Duration::from_millis(20)).await;
        }
        let _ = client.try_disconnect();
        drop(client);
        let _ = timeout(Duration::from_secs(2), poller).await;
    }
}

/// Polls the client's event loop: subscribes to acks, sends the warm-up
/// message, reports ready once the engine acked it, and matches acks to
/// sent messages.
async fn poll(
    mut eventloop: EventLoop,
    id: String,
    client: AsyncClient,
    warmup_seq: u64,
    track: Arc<Mutex<Track>>,
    ready: mpsc::Sender<()>,
) {
    let ack_topic = wire::ack_topic(&id);
    let mut announced = false;
    let mut failures = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                let _ = client.try_subscribe(ack_topic.clone(), QoS::AtLeastOnce);
            }
            Ok(Event::Incoming(Packet::SubAck(_))) if !announced => {
                // The engine holds a device's first ack after a jump in seq
                // for its gap grace; let that happen before measuring.
                if let Ok(bytes) = wire::encode(warmup_seq, now_ms(), &idle_sample(warmup_seq)) {
                    let _ = client.try_publish(
                        wire::topic(&id, Stream::Elevator),
                        QoS::AtLeastOnce,
                        false,
                        bytes,
                    );
                }
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                let Some(acked) = wire::parse_ack(&p.payload) else {
                    continue;
                };
                if !announced && acked >= warmup_seq {
                    announced = true;
                    let _ = ready.send(()).await;
                }
                let now = Instant::now();
                let mut t = lock(&track);
                while let Some(&(seq, sent_at)) = t.pending.front() {
                    if seq > acked {
                        break;
                    }
                    t.pending.pop_front();
                    let us = now
                        .duration_since(sent_at)
                        .as_micros()
                        .min(u128::from(u32::MAX)) as u32;
                    t.latencies_us.push(us);
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) | Err(ConnectionError::RequestsDone) => break,
            Ok(_) => {}
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    warn!(device = %id, error = %e, "Load client connection failed; retrying.");
                }
                if failures > 50 {
                    break;
                }
                sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// A healthy car standing at the ground floor: valid, and raises no alarm
/// however often it is sent.
fn idle_sample(seq: u64) -> Payload {
    Payload::Elevator(ElevatorSample {
        floor: 1,
        direction: Direction::Stop,
        speed_mps: 0.0,
        door: Door::Closed,
        leveled: true,
        occupied: false,
        mode: ElevatorMode::Normal,
        safety_circuit: true,
        door_lock: true,
        alarm_button: false,
        power: Power::Mains,
        limit: Limit::None,
        run_count: Some(seq % 1_000_000),
        load_pct: None,
    })
}
