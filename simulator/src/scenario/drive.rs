//! Runs a prepared scenario: every device an MQTT client (as `run` has
//! them: unacked buffer, re-sending from the watermark), its machine
//! stepped on the scenario's device clock, and the steps applied to what
//! it publishes.
//!
//! Per device, what the machine emits passes, in time order:
//! silence (dropped) ─▶ `set` overlays (fields replaced) ─▶ hold (kept
//! aside, sent at the release after newer ones) or the unacked buffer.
//! `send` steps and the overlays' own samples join the same path; a
//! maintenance step is handed to the caller (it posts to the registry).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{FixedOffset, NaiveDate, TimeZone};
use rumqttc::{AsyncClient, MqttOptions, QoS};
use serde::Serialize;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{MissedTickBehavior, interval, timeout};
use tracing::{debug, info, warn};
use vigil_model::{EpochMs, Payload, Stream};

use super::plan::{Prepared, Timeline};
use super::{Action, DoneAt, Step};
use crate::buffer::{Pending, Unacked};
use crate::error::SimError;
use crate::machine::Machine;
use crate::run::{
    ACK_STALL_MS, DISCONNECT_GRACE, KEEP_ALIVE, Link, SimStats, low_latency, now_ms, poll,
};
use crate::wire;

/// How often a device task looks at the clock (wall time).
const TICK: Duration = Duration::from_millis(50);
/// The machine is stepped at most this much device time at once (it skips
/// publishing ticks more than 10 s behind the time it is stepped to).
const MAX_STEP_MS: EpochMs = 2_000;
const REQUEST_CHANNEL: usize = 1024;
const UNACKED_CAP: usize = 100_000;
/// After the end, how long a device waits for the acks of what it sent.
const TAIL: Duration = Duration::from_secs(5);
/// The registry's local time (China Standard Time), for maintenance times.
const LOCAL_OFFSET_S: i32 = 8 * 3600;

/// A maintenance record to post (`POST /api/v1/maintenance`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MaintenancePost {
    pub equipment_id: String,
    pub kind: String,
    pub done_at: String,
    pub person_id: String,
    pub confirmed_by_owner: bool,
}

/// What the run asks of its caller while it goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Happening {
    Maintenance(MaintenancePost),
}

/// Totals of a run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DriveStats {
    pub devices: usize,
    pub published: u64,
    pub acked: u64,
    /// Messages held back and sent late.
    pub late: u64,
    pub dropped_silent: u64,
}

/// Runs `p` from `timeline.wall_start` until its device clock reaches the
/// end, every device logging in with its secret; maintenance steps go to
/// `happenings`.
pub async fn drive(
    p: &Prepared,
    timeline: Timeline,
    mqtt: SocketAddr,
    secrets: &HashMap<String, String>,
    happenings: mpsc::UnboundedSender<Happening>,
    today: NaiveDate,
) -> Result<DriveStats, SimError> {
    let stats = Arc::new(SimStats::default());
    let late = Arc::new(AtomicU64::new(0));
    let silent = Arc::new(AtomicU64::new(0));
    let end = timeline.device_start + p.scenario.duration_ms;
    let mut machines: HashMap<String, Machine> = p
        .fleet
        .machines()
        .into_iter()
        .map(|m| (m.device_id().to_owned(), m))
        .collect();
    let mut tasks = JoinSet::new();
    for (i, d) in p.devices.iter().enumerate() {
        let secret = secrets
            .get(&d.device_id)
            .cloned()
            .ok_or_else(|| SimError::MissingSecret {
                device: d.device_id.clone(),
            })?;
        let Some(machine) = machines.remove(&d.device_id) else {
            return Err(SimError::MissingSecret {
                device: d.device_id.clone(),
            });
        };
        let steps: Vec<Step> = p
            .scenario
            .steps
            .iter()
            .filter(|s| s.device == i)
            .cloned()
            .collect();
        let script = Script::new(&steps, timeline.device_start, &d.equipment_id, p, today);
        let dev = ScenarioDevice {
            id: d.device_id.clone(),
            machine,
            buffer: Unacked::new(UNACKED_CAP),
            next_seq: now_ms().max(1) as u64 + i as u64 * 1_000_000,
            stepped: None,
            script,
            held: Vec::new(),
            timeline,
            end,
            stats: Arc::clone(&stats),
            late: Arc::clone(&late),
            silent: Arc::clone(&silent),
        };
        let tx = happenings.clone();
        tasks.spawn(dev.run(mqtt, secret, tx));
    }
    info!(scenario = %p.scenario.name, devices = p.devices.len(), speed = timeline.speed, "Scenario running.");
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done {
            return Err(SimError::TaskFailed {
                message: e.to_string(),
            });
        }
    }
    let s = stats.snapshot();
    Ok(DriveStats {
        devices: p.devices.len(),
        published: s.published,
        acked: s.acked,
        late: late.load(Ordering::Relaxed),
        dropped_silent: silent.load(Ordering::Relaxed),
    })
}

/// One step's effect on a device, at absolute device times.
#[derive(Debug, Clone)]
enum Timed {
    /// Send the device's current state (with the overlay) now.
    OverlaySample,
    Send {
        stream: Stream,
        fields: Map<String, Value>,
        ts_offset_ms: EpochMs,
    },
    Maintenance(MaintenancePost),
}

/// A device's steps as windows (silence, overlay, hold) and timed events.
struct Script {
    silences: Vec<(EpochMs, EpochMs)>,
    overlays: Vec<(EpochMs, EpochMs, Map<String, Value>)>,
    /// Hold windows and when what they held is sent.
    holds: Vec<(EpochMs, EpochMs, EpochMs)>,
    /// By device time, oldest first.
    events: VecDeque<(EpochMs, Timed)>,
}

impl Script {
    fn new(
        steps: &[Step],
        start: EpochMs,
        equipment: &str,
        p: &Prepared,
        today: NaiveDate,
    ) -> Script {
        let mut s = Script {
            silences: Vec::new(),
            overlays: Vec::new(),
            holds: Vec::new(),
            events: VecDeque::new(),
        };
        let mut events = Vec::new();
        for step in steps {
            let at = start + step.at_ms;
            match &step.action {
                Action::None | Action::Fault(_) => {}
                Action::Silence { for_ms } => s.silences.push((at, at + for_ms)),
                Action::Hold {
                    for_ms,
                    release_at_ms,
                } => {
                    s.holds.push((at, at + for_ms, start + release_at_ms));
                }
                Action::Set {
                    fields,
                    for_ms,
                    every_ms,
                } => {
                    s.overlays.push((at, at + for_ms, fields.clone()));
                    let mut t = at;
                    while t < at + for_ms {
                        events.push((t, Timed::OverlaySample));
                        t += every_ms;
                    }
                }
                Action::Send {
                    stream,
                    fields,
                    count,
                    every_ms,
                    ts_offset_ms,
                } => {
                    let fields = p.expand_map(fields, today);
                    for k in 0..*count {
                        events.push((
                            at + i64::from(k) * every_ms,
                            Timed::Send {
                                stream: *stream,
                                fields: fields.clone(),
                                ts_offset_ms: *ts_offset_ms,
                            },
                        ));
                    }
                }
                Action::Maintenance(m) => {
                    let done_at = match &m.done_at {
                        DoneAt::Offset(ms) => rfc3339_local(start + ms),
                        DoneAt::Date(d) => p.expand(d, today),
                    };
                    events.push((
                        at,
                        Timed::Maintenance(MaintenancePost {
                            equipment_id: equipment.to_owned(),
                            kind: m.kind.clone(),
                            done_at,
                            person_id: p.expand(&m.person, today),
                            confirmed_by_owner: m.confirmed,
                        }),
                    ));
                }
            }
        }
        events.sort_by_key(|(t, _)| *t);
        s.events = events.into();
        s
    }

    fn within(windows: &[(EpochMs, EpochMs)], t: EpochMs) -> bool {
        windows.iter().any(|(a, b)| (*a..*b).contains(&t))
    }

    fn overlay(&self, t: EpochMs) -> Option<&Map<String, Value>> {
        self.overlays
            .iter()
            .find(|(a, b, _)| (*a..*b).contains(&t))
            .map(|(_, _, f)| f)
    }
}

/// A time as RFC 3339 in the registry's local time.
fn rfc3339_local(ms: EpochMs) -> String {
    let offset = FixedOffset::east_opt(LOCAL_OFFSET_S)
        .unwrap_or_else(|| FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!()));
    offset
        .timestamp_millis_opt(ms)
        .single()
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, false))
        .unwrap_or_default()
}

struct ScenarioDevice {
    id: String,
    machine: Machine,
    buffer: Unacked,
    next_seq: u64,
    /// Device time the machine has been stepped to.
    stepped: Option<EpochMs>,
    script: Script,
    /// Messages held back, with when they go.
    held: Vec<(EpochMs, Pending)>,
    timeline: Timeline,
    end: EpochMs,
    stats: Arc<SimStats>,
    late: Arc<AtomicU64>,
    silent: Arc<AtomicU64>,
}

impl ScenarioDevice {
    async fn run(
        mut self,
        mqtt: SocketAddr,
        secret: String,
        happenings: mpsc::UnboundedSender<Happening>,
    ) {
        let mut opts = MqttOptions::new(self.id.clone(), mqtt.ip().to_string(), mqtt.port());
        opts.set_credentials(self.id.clone(), secret)
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
        let (_stop_tx, stop_rx) = watch::channel(false);
        let mut poller = tokio::spawn(poll(
            eventloop,
            self.id.clone(),
            link_tx,
            ack_tx,
            Arc::clone(&self.stats),
            stop_rx,
        ));
        let ack_topic = wire::ack_topic(&self.id);
        let mut link = Link::default();
        let mut ticks = interval(TICK);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut tail_until: Option<tokio::time::Instant> = None;
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    let now = now_ms();
                    let device_now = self.timeline.device_at(now).min(self.end);
                    self.advance(device_now, now, &happenings);
                    if link.connected && self.buffer.stalled(now, ACK_STALL_MS) {
                        self.buffer.rewind(now);
                    }
                    if link.connected {
                        self.pump(&client);
                        self.release(&client);
                    }
                    if device_now >= self.end {
                        let until = *tail_until.get_or_insert_with(|| tokio::time::Instant::now() + TAIL);
                        if (self.buffer.len() == 0 && self.held.is_empty()) || tokio::time::Instant::now() >= until {
                            break;
                        }
                    }
                }
                Ok(()) = ack_rx.changed() => {
                    let seq = *ack_rx.borrow_and_update();
                    let released = self.buffer.ack(seq, now_ms()).released;
                    self.stats.acked.fetch_add(released as u64, Ordering::Relaxed);
                }
                Ok(()) = link_rx.changed() => {
                    let new = *link_rx.borrow_and_update();
                    if new.connected && new.generation != link.generation {
                        if let Err(e) = client.try_subscribe(ack_topic.clone(), QoS::AtLeastOnce) {
                            warn!(device = %self.id, error = %e, "Could not subscribe to acks.");
                        }
                        self.buffer.rewind(now_ms());
                        self.pump(&client);
                    }
                    link = new;
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
        if !self.held.is_empty() {
            warn!(device = %self.id, held = self.held.len(), "Scenario ended with held messages unsent.");
        }
    }

    /// Steps the machine and the script to device time `to`.
    fn advance(
        &mut self,
        to: EpochMs,
        wall: EpochMs,
        happenings: &mpsc::UnboundedSender<Happening>,
    ) {
        let Some(mut t) = self.stepped else {
            self.stepped = Some(to);
            for m in self.machine.step(to) {
                self.emit(m.ts, &m.payload, wall);
            }
            return;
        };
        while t < to {
            let next_event = self
                .script
                .events
                .front()
                .map_or(EpochMs::MAX, |(at, _)| *at);
            let next = to.min(t + MAX_STEP_MS).min(next_event.max(t + 1));
            for m in self.machine.step(next) {
                self.emit(m.ts, &m.payload, wall);
            }
            t = next;
            while self.script.events.front().is_some_and(|(at, _)| *at <= t) {
                let Some((at, ev)) = self.script.events.pop_front() else {
                    break;
                };
                self.timed(at, ev, wall, happenings);
            }
        }
        self.stepped = Some(t);
    }

    fn timed(
        &mut self,
        at: EpochMs,
        ev: Timed,
        wall: EpochMs,
        happenings: &mpsc::UnboundedSender<Happening>,
    ) {
        match ev {
            Timed::OverlaySample => {
                let state = self
                    .machine
                    .elevator_state()
                    .map(Payload::Elevator)
                    .or_else(|| self.machine.ride_state().map(Payload::Ride));
                if let Some(p) = state {
                    self.emit(at, &p, wall);
                }
            }
            Timed::Send {
                stream,
                fields,
                ts_offset_ms,
            } => {
                let ts = at + ts_offset_ms;
                let mut msg = fields;
                for v in msg.values_mut() {
                    if let Some(t) = v.as_str().and_then(|t| super::ts_macro(t, ts)) {
                        *v = t.into();
                    }
                }
                msg.insert("ts".into(), ts.into());
                self.push(stream, msg, at, wall);
            }
            Timed::Maintenance(post) => {
                let _ = happenings.send(Happening::Maintenance(post));
            }
        }
    }

    /// One message the machine made at device time `ts`.
    fn emit(&mut self, ts: EpochMs, payload: &Payload, wall: EpochMs) {
        if Script::within(&self.script.silences, ts) {
            self.silent.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Ok(bytes) = wire::encode(0, ts, payload) else {
            return;
        };
        let Ok(Value::Object(mut msg)) = serde_json::from_slice::<Value>(&bytes) else {
            return;
        };
        if matches!(payload, Payload::Elevator(_) | Payload::Ride(_))
            && let Some(fields) = self.script.overlay(ts)
        {
            for (k, v) in fields {
                msg.insert(k.clone(), v.clone());
            }
        }
        self.push(payload.stream(), msg, ts, wall);
    }

    /// Gives the message its seq and buffers it, or holds it back.
    fn push(&mut self, stream: Stream, mut msg: Map<String, Value>, ts: EpochMs, wall: EpochMs) {
        let seq = self.next_seq;
        self.next_seq += 1;
        msg.insert("seq".into(), seq.into());
        let Ok(bytes) = serde_json::to_vec(&Value::Object(msg)) else {
            return;
        };
        let pending = Pending { seq, stream, bytes };
        if let Some(&(_, _, release)) = self
            .script
            .holds
            .iter()
            .find(|(a, b, _)| (*a..*b).contains(&ts))
        {
            self.held.push((release, pending));
            return;
        }
        if self.buffer.push(pending, wall).is_some() {
            warn!(device = %self.id, "Scenario device buffer full: dropped the oldest message.");
        }
    }

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
            self.stats.published.fetch_add(1, Ordering::Relaxed);
            self.buffer.mark_sent(seq);
        }
    }

    /// Sends held messages whose release time has come (their seq is
    /// below what went since: late and out of order). Not tracked by acks.
    fn release(&mut self, client: &AsyncClient) {
        let now = self.stepped.unwrap_or(EpochMs::MIN);
        while let Some(i) = self.held.iter().position(|(at, _)| *at <= now) {
            let msg = &self.held[i].1;
            let topic = wire::topic(&self.id, msg.stream);
            if client
                .try_publish(topic, QoS::AtLeastOnce, false, msg.bytes.clone())
                .is_err()
            {
                return;
            }
            self.held.remove(i);
            self.stats.published.fetch_add(1, Ordering::Relaxed);
            self.late.fetch_add(1, Ordering::Relaxed);
        }
    }
}
