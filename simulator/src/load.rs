//! Paced load for benchmarks: N connections, each publishing valid
//! elevator samples at a fixed rate, measuring publish→ack latency per
//! message (the time until the engine's ack watermark covers it).
//!
//! Built to hold tens of thousands of connections in one process: each is
//! one task on a plain TCP socket speaking MQTT 3.1.1 (rumqttc's packet
//! codec, none of its per-client machinery), a few KiB of buffers. A socket
//! is bound to one of `sources` (round-robin), so the loopback's 28 000
//! ephemeral ports per source address do not cap the count.
//!
//! All clients connect first and each has one warm-up message acked (so the
//! engine has taken the jump to this run's seq numbers); sending starts
//! together (each client at its own phase of the period, so the load is
//! smooth), stops after `duration`, and then waits up to `drain` for the
//! last acks. An unpaced QoS 1 run would measure queue growth, not
//! throughput (architecture.md), hence the pacing.
//!
//! What counts as the ack is [`AckMode`]: Vigil's `{"seq": N}` on the
//! device's ack topic (written after the reading is durable), or the
//! broker's QoS 1 PUBACK, for brokers that only relay (Mosquitto). Several
//! load processes start sending together at [`LoadConfig::start_at`].

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode, Packet, PubAck, Publish, Subscribe};
use rumqttc::mqttbytes::{Error as CodecError, QoS};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, timeout};
use tracing::{info, warn};
use vigil_model::reading::{Direction, Door, ElevatorMode, ElevatorSample, Limit, Power};
use vigil_model::{DeviceId, Payload, Stream};

use crate::error::SimError;
use crate::run::now_ms;
use crate::wire;

/// Keep-alive asked of the broker; a client idle for half of it pings.
const KEEP_ALIVE_S: u16 = 60;
/// Largest packet accepted from the broker (acks are a few bytes).
const MAX_PACKET: usize = 64 * 1024;
/// One step of connecting (TCP, CONNACK, SUBACK) may take this long.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);
/// Tries to connect before a client gives up.
const CONNECT_TRIES: u32 = 3;

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
    /// Source addresses to connect from, round-robin (empty: the OS picks).
    pub sources: Vec<IpAddr>,
    /// New connections started per second (0: all at once).
    pub connect_per_s: f64,
    /// Connecting, subscribing and the warm-up ack of every client must fit;
    /// longer than the engine's default gap grace (30 s), which a warm-up
    /// whose seq jumps over an earlier run's waits out.
    pub connect_timeout: Duration,
    /// What counts as a message's ack.
    pub ack: AckMode,
    /// Start sending at this wall-clock time if every client is ready by
    /// then (several load processes start together); otherwise as soon as
    /// they are.
    pub start_at: Option<SystemTime>,
}

/// What acknowledges a published message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AckMode {
    /// Vigil's ack message (`{"seq": N}` on `/tenants/{id}/v1/ack`), which
    /// covers every seq up to N once it is durable.
    #[default]
    Topic,
    /// The broker's QoS 1 PUBACK of the very publish: all a relaying
    /// broker promises. No ack topic is subscribed.
    PubAck,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            devices: 200,
            rate_hz: 1.0,
            duration: Duration::from_secs(30),
            drain: Duration::from_secs(5),
            sources: Vec::new(),
            connect_per_s: 0.0,
            connect_timeout: Duration::from_secs(60),
            ack: AckMode::Topic,
            start_at: None,
        }
    }
}

/// Why clients failed, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LoadErrors {
    /// TCP connect failed (after retries): refused, no ports, no file descriptors.
    pub connect: u64,
    /// The broker answered CONNECT with a refusal (bad secret, too many clients).
    pub refused: u64,
    /// Connected, but no warm-up ack within `connect_timeout`.
    pub not_ready: u64,
    /// The connection dropped while sending.
    pub lost: u64,
    /// A packet the client could not make sense of.
    pub protocol: u64,
}

impl LoadErrors {
    pub fn total(&self) -> u64 {
        self.connect + self.refused + self.not_ready + self.lost + self.protocol
    }
}

/// The outcome of a load run. Latencies cover acked messages only.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LoadReport {
    pub devices: usize,
    pub ack: AckMode,
    /// `devices` × `rate_hz`: the messages per second asked for.
    pub offered_per_s: f64,
    /// Clients connected, with their warm-up message acked, when sending started.
    pub connected: usize,
    /// Clients whose connection was still open when sending ended.
    pub held: usize,
    /// Seconds from the first connection to sending.
    pub connect_s: f64,
    pub sent: u64,
    /// Sent messages covered by an ack before the drain ended.
    pub acked: u64,
    /// Ticks skipped because the client's socket would not take the message.
    pub skipped: u64,
    /// The sending phase as configured, excluding connect and drain. Sends are
    /// paced on a clock, so it is also the real one: a tick that comes too
    /// late is dropped rather than sent in a burst, and `sent` tells.
    #[serde(serialize_with = "secs")]
    pub elapsed: Duration,
    /// `sent` and `acked` per second of `elapsed`.
    pub sent_per_s: f64,
    pub acked_per_s: f64,
    pub ack_latency_ms_p50: f64,
    pub ack_latency_ms_p90: f64,
    pub ack_latency_ms_p99: f64,
    pub ack_latency_ms_p999: f64,
    pub ack_latency_ms_max: f64,
    pub errors: LoadErrors,
    /// Connections made from each source address.
    pub by_source: Vec<(String, usize)>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

#[derive(Default)]
struct Counters {
    connect: AtomicU64,
    refused: AtomicU64,
    not_ready: AtomicU64,
    lost: AtomicU64,
    protocol: AtomicU64,
}

/// What one client brings back.
#[derive(Default)]
struct Outcome {
    /// The connection lasted to the end of sending.
    held: bool,
    sent: u64,
    skipped: u64,
    latencies_us: Vec<u32>,
}

/// Runs a paced load against the broker at `mqtt` and reports what was sent,
/// what was acked, the publish→ack latency distribution and the errors.
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
    let counters = Arc::new(Counters::default());
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(cfg.devices);
    let began = Instant::now();
    let mut by_source: HashMap<String, usize> = HashMap::new();
    let mut tasks = JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let source = (!cfg.sources.is_empty()).then(|| cfg.sources[i % cfg.sources.len()]);
        *by_source
            .entry(source.map_or_else(|| "default".to_owned(), |s| s.to_string()))
            .or_default() += 1;
        let client = LoadClient {
            id: (*id).clone(),
            secret: secrets.get(*id).cloned().unwrap_or_default(),
            mqtt,
            source,
            seq_base,
            period,
            phase: period.mul_f64(i as f64 / cfg.devices as f64),
            duration: cfg.duration,
            drain: cfg.drain,
            ack: cfg.ack,
            counters: Arc::clone(&counters),
        };
        // Pace the connections, as a fleet coming back after an outage would.
        let delay = if cfg.connect_per_s > 0.0 {
            Duration::from_secs_f64(i as f64 / cfg.connect_per_s)
        } else {
            Duration::ZERO
        };
        tasks.spawn(client.run(
            delay,
            ready_tx.clone(),
            start_rx.clone(),
            cfg.connect_timeout,
        ));
    }
    drop(ready_tx);

    let mut connected = 0;
    let deadline = Instant::now() + cfg.connect_timeout;
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
    let connect_s = began.elapsed().as_secs_f64();
    if connected < cfg.devices {
        warn!(
            connected,
            devices = cfg.devices,
            "Not every load client connected in time; starting anyway."
        );
    }
    let soonest = Instant::now() + Duration::from_millis(100);
    let start = match cfg.start_at.map(|t| t.duration_since(SystemTime::now())) {
        Some(Ok(wait)) => soonest.max(Instant::now() + wait),
        _ => soonest,
    };
    info!(
        devices = cfg.devices,
        connected,
        connect_s,
        rate_hz = cfg.rate_hz,
        duration_s = cfg.duration.as_secs_f64(),
        "Load starting."
    );
    start_tx.send_replace(Some(start));

    let mut latencies: Vec<u32> = Vec::new();
    let (mut sent, mut skipped, mut held) = (0, 0, 0);
    while let Some(done) = tasks.join_next().await {
        match done {
            Ok(mut o) => {
                held += usize::from(o.held);
                sent += o.sent;
                skipped += o.skipped;
                latencies.append(&mut o.latencies_us);
            }
            Err(e) => {
                return Err(SimError::TaskFailed {
                    message: e.to_string(),
                });
            }
        }
    }
    latencies.sort_unstable();
    let pct = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
        f64::from(latencies[rank - 1]) / 1000.0
    };
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let acked = latencies.len() as u64;
    let per_s = cfg.duration.as_secs_f64();
    let mut by_source: Vec<(String, usize)> = by_source.into_iter().collect();
    by_source.sort();
    let report = LoadReport {
        devices: cfg.devices,
        ack: cfg.ack,
        offered_per_s: cfg.devices as f64 * cfg.rate_hz,
        connected,
        held,
        connect_s,
        sent,
        acked,
        skipped,
        elapsed: cfg.duration,
        sent_per_s: sent as f64 / per_s,
        acked_per_s: acked as f64 / per_s,
        ack_latency_ms_p50: pct(0.50),
        ack_latency_ms_p90: pct(0.90),
        ack_latency_ms_p99: pct(0.99),
        ack_latency_ms_p999: pct(0.999),
        ack_latency_ms_max: pct(1.0),
        errors: LoadErrors {
            connect: get(&counters.connect),
            refused: get(&counters.refused),
            not_ready: get(&counters.not_ready),
            lost: get(&counters.lost),
            protocol: get(&counters.protocol),
        },
        by_source,
    };
    info!(
        held = report.held,
        sent = report.sent,
        acked = report.acked,
        p50_ms = report.ack_latency_ms_p50,
        p99_ms = report.ack_latency_ms_p99,
        p999_ms = report.ack_latency_ms_p999,
        errors = report.errors.total(),
        "Load finished."
    );
    Ok(report)
}

struct LoadClient {
    id: String,
    secret: String,
    mqtt: SocketAddr,
    source: Option<IpAddr>,
    seq_base: u64,
    period: Duration,
    phase: Duration,
    duration: Duration,
    drain: Duration,
    ack: AckMode,
    counters: Arc<Counters>,
}

/// Why a connection attempt failed.
enum Failed {
    Connect,
    Refused,
    Protocol,
}

/// One MQTT connection: the socket halves and the read buffer.
struct Conn {
    rd: OwnedReadHalf,
    wr: OwnedWriteHalf,
    buf: BytesMut,
    out: BytesMut,
    /// Next packet id of our QoS 1 publishes.
    pkid: u16,
    last_write: Instant,
}

impl Conn {
    async fn send(&mut self, p: Packet) -> std::io::Result<()> {
        self.out.clear();
        p.write(&mut self.out, MAX_PACKET)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        self.wr.write_all(&self.out).await?;
        self.last_write = Instant::now();
        Ok(())
    }

    /// The next whole packet, reading as needed.
    async fn next(&mut self) -> Result<Packet, Failed> {
        loop {
            match Packet::read(&mut self.buf, MAX_PACKET) {
                Ok(p) => return Ok(p),
                Err(CodecError::InsufficientBytes(_)) => {}
                Err(_) => return Err(Failed::Protocol),
            }
            match self.rd.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return Err(Failed::Connect),
                Ok(_) => {}
            }
        }
    }

    fn next_pkid(&mut self) -> u16 {
        self.pkid = self.pkid.checked_add(1).unwrap_or(1);
        self.pkid
    }

    async fn publish(&mut self, pkid: u16, topic: &str, bytes: Vec<u8>) -> std::io::Result<()> {
        let mut p = Publish::new(topic, QoS::AtLeastOnce, bytes);
        p.pkid = pkid;
        self.send(Packet::Publish(p)).await
    }

    /// Handles one packet from the broker: acks its QoS 1 publishes and
    /// returns the ack it carried in `mode`, if any.
    async fn handle(
        &mut self,
        p: Packet,
        ack_topic: &str,
        mode: AckMode,
    ) -> Result<Option<Acked>, Failed> {
        match p {
            Packet::Publish(p) => {
                if p.qos != QoS::AtMostOnce {
                    self.send(Packet::PubAck(PubAck::new(p.pkid)))
                        .await
                        .map_err(|_| Failed::Connect)?;
                }
                Ok((mode == AckMode::Topic && p.topic == ack_topic)
                    .then(|| wire::parse_ack(&p.payload).map(Acked::UpTo))
                    .flatten())
            }
            Packet::PubAck(a) if mode == AckMode::PubAck => Ok(Some(Acked::Pkid(a.pkid))),
            Packet::Disconnect => Err(Failed::Connect),
            _ => Ok(None),
        }
    }
}

/// An ack as the broker gave it.
#[derive(Clone, Copy)]
enum Acked {
    /// Every seq up to this one (Vigil's watermark).
    UpTo(u64),
    /// The publish with this packet id (a PUBACK).
    Pkid(u16),
}

/// Messages sent and not yet acked, oldest first: (seq, packet id, sent at).
#[derive(Default)]
struct Pending(VecDeque<(u64, u16, Instant)>);

impl Pending {
    /// Takes what `acked` covers off the list, with each one's latency.
    fn settle(&mut self, acked: Acked, now: Instant, latencies_us: &mut Vec<u32>) {
        let us = |sent: Instant| {
            now.duration_since(sent)
                .as_micros()
                .min(u128::from(u32::MAX)) as u32
        };
        match acked {
            Acked::UpTo(upto) => {
                while let Some(&(seq, _, sent)) = self.0.front() {
                    if seq > upto {
                        break;
                    }
                    self.0.pop_front();
                    latencies_us.push(us(sent));
                }
            }
            // Brokers PUBACK in order, so the match is at the front; a
            // stray or repeated PUBACK matches nothing and counts nothing.
            Acked::Pkid(pkid) => {
                if let Some(i) = self.0.iter().position(|&(_, p, _)| p == pkid)
                    && let Some((_, _, sent)) = self.0.remove(i)
                {
                    latencies_us.push(us(sent));
                }
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl LoadClient {
    async fn open(&self) -> Result<Conn, Failed> {
        let socket = if self.mqtt.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|_| Failed::Connect)?;
        if let Some(src) = self.source {
            socket
                .bind(SocketAddr::new(src, 0))
                .map_err(|_| Failed::Connect)?;
        }
        let stream = timeout(STEP_TIMEOUT, socket.connect(self.mqtt))
            .await
            .map_err(|_| Failed::Connect)?
            .map_err(|_| Failed::Connect)?;
        let _ = stream.set_nodelay(true);
        let (rd, wr) = stream.into_split();
        let mut conn = Conn {
            rd,
            wr,
            buf: BytesMut::with_capacity(256),
            out: BytesMut::with_capacity(512),
            pkid: 0,
            last_write: Instant::now(),
        };
        let mut connect = Connect::new(self.id.clone());
        connect.keep_alive = KEEP_ALIVE_S;
        connect.clean_session = true;
        connect.set_login(self.id.clone(), self.secret.clone());
        conn.send(Packet::Connect(connect))
            .await
            .map_err(|_| Failed::Connect)?;
        match timeout(STEP_TIMEOUT, conn.next()).await {
            Ok(Ok(Packet::ConnAck(a))) if a.code == ConnectReturnCode::Success => {}
            Ok(Ok(Packet::ConnAck(_))) => return Err(Failed::Refused),
            Ok(Err(e)) => return Err(e),
            _ => return Err(Failed::Protocol),
        }
        if self.ack == AckMode::PubAck {
            return Ok(conn);
        }
        let mut sub = Subscribe::new(wire::ack_topic(&self.id), QoS::AtLeastOnce);
        sub.pkid = conn.next_pkid();
        conn.send(Packet::Subscribe(sub))
            .await
            .map_err(|_| Failed::Connect)?;
        loop {
            match timeout(STEP_TIMEOUT, conn.next()).await {
                Ok(Ok(Packet::SubAck(_))) => return Ok(conn),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
                Err(_) => return Err(Failed::Protocol),
            }
        }
    }

    async fn run(
        self,
        delay: Duration,
        ready: mpsc::Sender<()>,
        mut start: watch::Receiver<Option<Instant>>,
        connect_timeout: Duration,
    ) -> Outcome {
        let mut out = Outcome::default();
        sleep(delay).await;
        let mut conn = None;
        let mut last = Failed::Connect;
        for attempt in 0..CONNECT_TRIES {
            match self.open().await {
                Ok(c) => {
                    conn = Some(c);
                    break;
                }
                Err(e) => last = e,
            }
            sleep(Duration::from_millis(500 * u64::from(attempt + 1))).await;
        }
        let Some(mut conn) = conn else {
            let counter = match last {
                Failed::Connect => &self.counters.connect,
                Failed::Refused => &self.counters.refused,
                Failed::Protocol => &self.counters.protocol,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            return out;
        };
        let topic = wire::topic(&self.id, Stream::Elevator);
        let ack_topic = wire::ack_topic(&self.id);

        // The warm-up: the engine holds a device's first ack after a jump
        // in seq for its gap grace; let that happen before measuring.
        let warm = async {
            let bytes = wire::encode(self.seq_base, now_ms(), &idle_sample(self.seq_base))
                .map_err(|_| Failed::Protocol)?;
            let pkid = conn.next_pkid();
            conn.publish(pkid, &topic, bytes)
                .await
                .map_err(|_| Failed::Connect)?;
            loop {
                let p = conn.next().await?;
                match conn.handle(p, &ack_topic, self.ack).await? {
                    Some(Acked::UpTo(s)) if s >= self.seq_base => return Ok::<(), Failed>(()),
                    Some(Acked::Pkid(p)) if p == pkid => return Ok(()),
                    _ => {}
                }
            }
        };
        if !matches!(timeout(connect_timeout, warm).await, Ok(Ok(()))) {
            self.counters.not_ready.fetch_add(1, Ordering::Relaxed);
            return out;
        }
        let _ = ready.send(()).await;
        let Ok(start) = start
            .wait_for(Option::is_some)
            .await
            .map(|s| s.unwrap_or_else(Instant::now))
        else {
            return out;
        };

        let end = start + self.duration;
        let mut ticks = interval_at(start + self.phase, self.period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut pending = Pending::default();
        let mut seq = self.seq_base;
        let mut sending = true;
        let mut drain_end = None;
        loop {
            tokio::select! {
                at = ticks.tick(), if sending => {
                    if at >= end {
                        sending = false;
                        out.held = true;
                        drain_end = Some(Instant::now() + self.drain);
                        if pending.is_empty() {
                            break;
                        }
                        continue;
                    }
                    seq += 1;
                    let Ok(bytes) = wire::encode(seq, now_ms(), &idle_sample(seq)) else {
                        out.skipped += 1;
                        continue;
                    };
                    // Recorded before publishing, so an ack can never overtake it.
                    let pkid = conn.next_pkid();
                    pending.0.push_back((seq, pkid, Instant::now()));
                    if conn.publish(pkid, &topic, bytes).await.is_err() {
                        self.counters.lost.fetch_add(1, Ordering::Relaxed);
                        return out;
                    }
                    out.sent += 1;
                }
                read = conn.rd.read_buf(&mut conn.buf) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        self.counters.lost.fetch_add(1, Ordering::Relaxed);
                        return out;
                    }
                    loop {
                        let p = match Packet::read(&mut conn.buf, MAX_PACKET) {
                            Ok(p) => p,
                            Err(CodecError::InsufficientBytes(_)) => break,
                            Err(_) => {
                                self.counters.protocol.fetch_add(1, Ordering::Relaxed);
                                return out;
                            }
                        };
                        let Ok(acked) = conn.handle(p, &ack_topic, self.ack).await else {
                            self.counters.lost.fetch_add(1, Ordering::Relaxed);
                            return out;
                        };
                        let Some(acked) = acked else { continue };
                        pending.settle(acked, Instant::now(), &mut out.latencies_us);
                    }
                    if !sending && pending.is_empty() {
                        break;
                    }
                }
                _ = sleep(Duration::from_secs(u64::from(KEEP_ALIVE_S) / 2)) => {
                    if conn.last_write.elapsed() >= Duration::from_secs(u64::from(KEEP_ALIVE_S) / 2)
                        && conn.send(Packet::PingReq).await.is_err()
                    {
                        self.counters.lost.fetch_add(1, Ordering::Relaxed);
                        return out;
                    }
                }
                // A slow client (period longer than the run) stops on time too.
                _ = tokio::time::sleep_until(end), if sending => {
                    sending = false;
                    out.held = true;
                    drain_end = Some(Instant::now() + self.drain);
                    if pending.is_empty() {
                        break;
                    }
                }
                _ = sleep_until_opt(drain_end) => break,
            }
        }
        let _ = conn.send(Packet::Disconnect).await;
        out
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
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
