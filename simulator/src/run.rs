//! Runs a fleet: one MQTT client per device, each a device task (model,
//! unacked buffer, publishing) beside a task that polls its rumqttc event
//! loop (connection, acks).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, NetworkOptions, Outgoing, Packet,
    QoS,
};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, interval, sleep, timeout};
use tracing::{debug, info, warn};
use vigil_model::EpochMs;

use crate::buffer::{Pending, Unacked};
use crate::elevator::TICK_MS;
use crate::error::SimError;
use crate::fleet::Fleet;
use crate::machine::{Machine, MachineSpec};
use crate::wire;

/// Messages a device keeps unacknowledged before dropping the oldest
/// (about 2.8 h of travel at 1 Hz).
const UNACKED_CAP: usize = 10_000;
/// Re-send from the watermark when acks have not advanced for this long.
pub(crate) const ACK_STALL_MS: EpochMs = 10_000;
/// Requests queued between a device task and its event loop. Sends never
/// wait on it (`try_publish`): what does not fit stays in the unacked
/// buffer and goes on the next tick, so a slow broker never stalls the car.
const REQUEST_CHANNEL: usize = 256;
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A fleet's first connections are spread over up to this long.
const MAX_STAGGER: Duration = Duration::from_secs(5);
pub(crate) const DISCONNECT_GRACE: Duration = Duration::from_secs(3);

/// Live counters of a run, shared with the caller (demo output, metrics).
#[derive(Debug, Default)]
pub struct SimStats {
    /// Messages handed to the broker, re-sends included.
    pub published: AtomicU64,
    /// Messages released by acks (each message counts once).
    pub acked: AtomicU64,
    /// Sends of a message that had been sent before.
    pub resent: AtomicU64,
    /// Devices connected right now.
    pub connected: AtomicU64,
    pub faults_started: AtomicU64,
    pub faults_ended: AtomicU64,
    /// Messages dropped from a full unacked buffer (never acked).
    pub dropped: AtomicU64,
}

/// A copy of [`SimStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SimSnapshot {
    pub published: u64,
    pub acked: u64,
    pub resent: u64,
    pub connected: u64,
    pub faults_started: u64,
    pub faults_ended: u64,
    pub dropped: u64,
}

impl SimStats {
    pub fn snapshot(&self) -> SimSnapshot {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SimSnapshot {
            published: get(&self.published),
            acked: get(&self.acked),
            resent: get(&self.resent),
            connected: get(&self.connected),
            faults_started: get(&self.faults_started),
            faults_ended: get(&self.faults_ended),
            dropped: get(&self.dropped),
        }
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Runs every device of `fleet` as an MQTT client of the broker at `mqtt`
/// (plain TCP, username = device id, password = `secrets[device id]`) until
/// `shutdown` turns true; then each client disconnects and `run` returns.
pub async fn run(
    fleet: Fleet,
    mqtt: SocketAddr,
    secrets: HashMap<String, String>,
    stats: Arc<SimStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<(), SimError> {
    let mut devices = Vec::with_capacity(fleet.machines.len());
    for (spec, _) in fleet.machines {
        let Some(secret) = secrets.get(spec.device_id()) else {
            return Err(SimError::MissingSecret {
                device: spec.device_id().to_owned(),
            });
        };
        devices.push((spec, secret.clone()));
    }
    let n = devices.len();
    info!(devices = n, broker = %mqtt, "Simulated fleet starting.");
    let step = (MAX_STAGGER / n.max(1) as u32).min(Duration::from_millis(20));
    let mut tasks = JoinSet::new();
    for (i, (spec, secret)) in devices.into_iter().enumerate() {
        let device = Device::new(spec, mqtt, secret, Arc::clone(&stats), shutdown.clone());
        tasks.spawn(device.run(step * i as u32));
    }
    let mut failure = None;
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            warn!(error = %e, "Simulated device task failed.");
            failure.get_or_insert(SimError::TaskFailed {
                message: e.to_string(),
            });
        }
    }
    info!(devices = n, "Simulated fleet stopped.");
    failure.map_or(Ok(()), Err)
}

/// Connection state the event-loop task reports: a new `generation` per
/// CONNACK, so a quick drop-and-reconnect is still seen as a reconnect.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Link {
    pub generation: u64,
    pub connected: bool,
}

struct Device {
    id: String,
    model: Machine,
    buffer: Unacked,
    next_seq: u64,
    mqtt: SocketAddr,
    secret: String,
    stats: Arc<SimStats>,
    shutdown: watch::Receiver<bool>,
}

impl Device {
    fn new(
        spec: MachineSpec,
        mqtt: SocketAddr,
        secret: String,
        stats: Arc<SimStats>,
        shutdown: watch::Receiver<bool>,
    ) -> Device {
        Device {
            id: spec.device_id().to_owned(),
            model: Machine::new(&spec),
            buffer: Unacked::new(UNACKED_CAP),
            // Seqs must keep increasing across reboots (protocol.md). Like
            // firmware without flash for a counter, start at the boot time in
            // epoch ms: a car sends far fewer than one message per ms, so a
            // later boot always starts above everything sent before. The
            // engine holds its first ack after the jump for the gap grace.
            next_seq: now_ms().max(1) as u64,
            mqtt,
            secret,
            stats,
            shutdown,
        }
    }

    async fn run(mut self, delay: Duration) {
        let mut shutdown = self.shutdown.clone();
        if wait_or_shutdown(&mut shutdown, delay).await {
            return;
        }
        let mut opts = MqttOptions::new(
            self.id.clone(),
            self.mqtt.ip().to_string(),
            self.mqtt.port(),
        );
        opts.set_credentials(self.id.clone(), self.secret.clone())
            .set_keep_alive(KEEP_ALIVE)
            .set_clean_session(true)
            .set_max_packet_size(
                vigil_model::MAX_PAYLOAD_BYTES + 1024,
                vigil_model::MAX_PAYLOAD_BYTES + 1024,
            );
        let (client, mut eventloop) = AsyncClient::new(opts, REQUEST_CHANNEL);
        eventloop.set_network_options(low_latency());
        let (link_tx, mut link_rx) = watch::channel(Link::default());
        let (ack_tx, mut ack_rx) = watch::channel(0u64);
        let mut poller = tokio::spawn(poll(
            eventloop,
            self.id.clone(),
            link_tx,
            ack_tx,
            Arc::clone(&self.stats),
            self.shutdown.clone(),
        ));

        let ack_topic = wire::ack_topic(&self.id);
        let mut link = Link::default();
        let mut ticks = interval(Duration::from_millis(TICK_MS as u64));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    let now = now_ms();
                    self.step(now);
                    if link.connected && self.buffer.stalled(now, ACK_STALL_MS) {
                        debug!(device = %self.id, unacked = self.buffer.len(), "Acks stalled: re-sending from the watermark.");
                        self.buffer.rewind(now);
                    }
                    if link.connected {
                        self.pump(&client);
                    }
                }
                Ok(()) = ack_rx.changed() => {
                    let seq = *ack_rx.borrow_and_update();
                    let released = self.buffer.ack(seq, now_ms()).released;
                    SimStats::add(&self.stats.acked, released as u64);
                }
                Ok(()) = link_rx.changed() => {
                    let new = *link_rx.borrow_and_update();
                    if new.connected && new.generation != link.generation {
                        // A fresh (clean) session: subscribe again and re-send
                        // everything not yet covered, in order.
                        if let Err(e) = client.try_subscribe(ack_topic.clone(), QoS::AtLeastOnce) {
                            warn!(device = %self.id, error = %e, "Could not subscribe to acks.");
                        }
                        self.buffer.rewind(now_ms());
                        self.pump(&client);
                    }
                    link = new;
                }
                Ok(()) = shutdown.changed() => {
                    if *shutdown.borrow() {
                        break;
                    }
                }
            }
        }
        if let Err(e) = client.try_disconnect() {
            debug!(device = %self.id, error = %e, "Disconnect request not queued.");
        }
        drop(client);
        if timeout(DISCONNECT_GRACE, &mut poller).await.is_err() {
            poller.abort();
        }
        debug!(device = %self.id, unacked = self.buffer.len(), "Simulated device stopped.");
    }

    /// Advances the car, buffers what it published, logs its faults.
    fn step(&mut self, now: EpochMs) {
        for msg in self.model.step(now) {
            let seq = self.next_seq;
            match wire::encode(seq, msg.ts, &msg.payload) {
                Ok(bytes) => {
                    self.next_seq += 1;
                    let pending = Pending {
                        seq,
                        stream: msg.payload.stream(),
                        bytes,
                    };
                    if let Some(old) = self.buffer.push(pending, now) {
                        SimStats::add(&self.stats.dropped, 1);
                        let dropped = self.buffer.dropped();
                        if dropped == 1 || dropped.is_multiple_of(1000) {
                            warn!(device = %self.id, seq = old, dropped, "Unacked buffer full: dropped the oldest message.");
                        }
                    }
                }
                Err(e) => warn!(device = %self.id, error = %e, "Could not encode a sample."),
            }
        }
        for edge in self.model.take_fault_edges() {
            if edge.started {
                SimStats::add(&self.stats.faults_started, 1);
                info!(device = %self.id, kind = %edge.kind, rule = edge.kind.rule(), ts = edge.ts, "Fault started.");
            } else {
                SimStats::add(&self.stats.faults_ended, 1);
                info!(device = %self.id, kind = %edge.kind, rule = edge.kind.rule(), ts = edge.ts, "Fault ended.");
            }
        }
    }

    /// Hands the broker what the cursor has, until the request channel is full.
    fn pump(&mut self, client: &AsyncClient) {
        while let Some(msg) = self.buffer.next_to_send() {
            let seq = msg.seq;
            let topic = wire::topic(&self.id, msg.stream);
            if client
                .try_publish(topic, QoS::AtLeastOnce, false, msg.bytes.clone())
                .is_err()
            {
                break;
            }
            SimStats::add(&self.stats.published, 1);
            if self.buffer.mark_sent(seq) {
                SimStats::add(&self.stats.resent, 1);
            }
        }
    }
}

/// Polls the event loop (which reconnects by being polled again) and reports
/// connections and acks; ends after the disconnect or when the client is gone.
pub(crate) async fn poll(
    mut eventloop: EventLoop,
    device: String,
    link: watch::Sender<Link>,
    acks: watch::Sender<u64>,
    stats: Arc<SimStats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ack_topic = wire::ack_topic(&device);
    let mut generation = 0;
    let mut failures: u32 = 0;
    let mut connected = false;
    let set_down = |connected: &mut bool, generation: u64| {
        if std::mem::take(connected) {
            stats.connected.fetch_sub(1, Ordering::Relaxed);
            link.send_replace(Link {
                generation,
                connected: false,
            });
        }
    };
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                generation += 1;
                if failures > 0 {
                    info!(device = %device, after_failures = failures, "Reconnected.");
                }
                failures = 0;
                connected = true;
                stats.connected.fetch_add(1, Ordering::Relaxed);
                link.send_replace(Link {
                    generation,
                    connected: true,
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                match wire::parse_ack(&p.payload) {
                    Some(seq) => {
                        acks.send_if_modified(|cur| {
                            let newer = seq > *cur;
                            if newer {
                                *cur = seq;
                            }
                            newer
                        });
                    }
                    None => debug!(device = %device, "Ignoring an ack that is not {{\"seq\": N}}."),
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(ConnectionError::RequestsDone) => break,
            Err(e) => {
                set_down(&mut connected, generation);
                if *shutdown.borrow() {
                    break;
                }
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    warn!(device = %device, error = %e, failures, "MQTT connection lost or refused; retrying.");
                } else {
                    debug!(device = %device, error = %e, failures, "MQTT connection still failing.");
                }
                let backoff = (Duration::from_millis(500) * failures.min(20)).min(MAX_BACKOFF)
                    + Duration::from_millis(rand::random::<u64>() % 500);
                if wait_or_shutdown(&mut shutdown, backoff).await {
                    break;
                }
            }
        }
    }
    set_down(&mut connected, generation);
}

/// Sleeps `d`; true if shutdown was requested first. A dropped sender
/// means nobody can ask any more: just sleep.
pub(crate) async fn wait_or_shutdown(shutdown: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    let requested = async {
        let asked = shutdown.wait_for(|stop| *stop).await.is_ok();
        if !asked {
            std::future::pending::<()>().await;
        }
        asked
    };
    tokio::select! {
        _ = sleep(d) => false,
        stop = requested => stop,
    }
}

/// Nagle's algorithm would hold a small publish back until the previous
/// one is acknowledged by TCP (~40 ms with delayed ACKs): off, as a real
/// terminal's MQTT stack has it.
pub(crate) fn low_latency() -> NetworkOptions {
    let mut opts = NetworkOptions::new();
    opts.set_tcp_nodelay(true);
    opts
}

pub(crate) fn now_ms() -> EpochMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as EpochMs)
}
