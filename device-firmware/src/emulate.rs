//! `vigil-edge emulate`: simulated controllers on real Modbus TCP sockets.
//! The simulator's machines (the same models `vigil demo` runs over MQTT)
//! are stepped every 250 ms and their state is written into registers
//! through the same register maps the gateway reads with, so a map change
//! shows on both sides at once.
//!
//! ```text
//!  Fleet (seed) ─▶ Machine::step(now) ─▶ map.encode ─▶ register image ◀─ Modbus TCP server (one port per device)
//!                                                        ▲
//!                          filling scale: records queue ─┘ ready / ack coil handshake
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};
use tokio_modbus::{ExceptionCode, Request, Response};
use tracing::{debug, info};
use vigil_model::reading::FillingRecord;
use vigil_model::{EpochMs, Payload};
use vigil_simulator::{Fleet, FleetConfig, Machine, MachineKind};

use crate::error::EdgeError;
use crate::gateway::wall_ms;
use crate::map::{Function, RegisterMap};

/// Addresses at or above this answer "illegal data address", as a real
/// controller does for registers it does not have.
pub const MAX_ADDRESS: u32 = 1000;
const STEP: Duration = Duration::from_millis(250);

/// What to emulate and where.
#[derive(Debug, Clone)]
pub struct EmulateConfig {
    /// Elevators, rides, ropeways and filling stations (cameras are not
    /// Modbus devices and are left out), with the seed and fault share.
    pub fleet: FleetConfig,
    /// The first device listens here, the next on the following port
    /// (port 0: a free port each).
    pub listen: SocketAddr,
    /// Maps to serve instead of the shipped ones, by kind.
    pub elevator_map: Option<RegisterMap>,
    pub ride_map: Option<RegisterMap>,
    pub scale_map: Option<RegisterMap>,
}

/// One emulated controller.
#[derive(Debug, Clone)]
pub struct Served {
    pub device_id: String,
    pub kind: MachineKind,
    pub addr: SocketAddr,
    /// The shipped map's name (`elevator`, `ride`, `filling-scale`).
    pub map: &'static str,
}

/// The running emulator.
pub struct Emulator {
    pub fleet: Fleet,
    pub served: Vec<Served>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Emulator {
    /// Stops stepping and serving.
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }

    /// Runs until `shutdown` turns true.
    pub async fn run_until(self, mut shutdown: watch::Receiver<bool>) {
        let _ = shutdown.wait_for(|s| *s).await;
        self.stop();
    }
}

/// A filling record waiting to be shown, with its end time.
struct Pending {
    ts: EpochMs,
    record: FillingRecord,
}

/// One controller: its machine and its registers.
struct Unit {
    machine: Machine,
    map: RegisterMap,
    image: BTreeMap<(Function, u16), u16>,
    records: VecDeque<Pending>,
    /// A record is in the registers, waiting for the gateway's ack.
    shown: bool,
    record_no: u32,
}

impl Unit {
    fn set(&mut self, function: Function, address: u16, words: &[u16], bit: Option<u8>) {
        for (i, w) in words.iter().enumerate() {
            let key = (function, address.wrapping_add(i as u16));
            match bit {
                Some(b) => {
                    let cur = self.image.get(&key).copied().unwrap_or(0) & !(1 << b);
                    self.image.insert(key, cur | (*w & (1 << b)));
                }
                None => {
                    self.image.insert(key, *w);
                }
            }
        }
    }

    /// Writes `field` = `value` through the map (unmapped fields are skipped).
    fn put(&mut self, field: &str, value: &Value) {
        let Some(reg) = self
            .map
            .registers
            .iter()
            .find(|r| r.field == field)
            .cloned()
        else {
            return;
        };
        let words = match reg.encode(value) {
            Some(w) => w,
            // No reading (a float): NaN.
            None if value.is_null() && reg.width() == 2 => {
                let nan = f32::NAN.to_bits();
                vec![(nan >> 16) as u16, nan as u16]
            }
            None => return,
        };
        self.set(reg.function, reg.address, &words, reg.bit);
    }

    fn step(&mut self, now: EpochMs) {
        for e in self.machine.step(now) {
            match e.payload {
                Payload::Filling(record) => self.records.push_back(Pending { ts: e.ts, record }),
                // The car reports its counters with some samples only; the
                // registers keep the last values.
                Payload::Elevator(s) => {
                    if let Some(n) = s.run_count {
                        self.put("run_count", &Value::from(n));
                    }
                    if let Some(l) = s.load_pct {
                        self.put("load_pct", &protocol_value(&json!(l)));
                    }
                }
                _ => {}
            }
        }
        if let Some(s) = self.machine.elevator_state() {
            let v = serde_json::to_value(&s).unwrap_or(Value::Null);
            for (k, val) in v.as_object().into_iter().flatten() {
                // run_count and load_pct come with some samples only: the
                // registers keep the last value.
                if !val.is_null() {
                    self.put(k, &protocol_value(val));
                }
            }
        }
        if let Some(s) = self.machine.ride_state() {
            let v = serde_json::to_value(&s).unwrap_or(Value::Null);
            for (k, val) in v.as_object().into_iter().flatten() {
                self.put(k, &protocol_value(val));
            }
        }
        if let Some(f) = self.map.faults.clone() {
            let mut raws: Vec<u16> = self
                .machine
                .active_codes()
                .iter()
                .filter_map(|c| f.raw(&c.code))
                .take(usize::from(f.count))
                .collect();
            raws.resize(usize::from(f.count), 0);
            self.set(f.function, f.address, &raws, None);
        }
        if !self.shown
            && let Some(p) = self.records.front()
        {
            let r = &p.record;
            let fields = json!({
                "cylinder_code": r.cylinder_code,
                "operator_id": r.operator_id,
                "medium": r.medium,
                "tare_kg": r.tare_kg,
                "net_kg": r.net_kg,
                "pressure_mpa": r.pressure_mpa,
                "temp_c": r.temp_c,
                "duration_s": ((p.ts - r.started_ms) as f64 / 1000.0).round(),
                "started_ms": r.started_ms,
                "result": r.result.as_str(),
            });
            for (k, v) in fields.as_object().into_iter().flatten() {
                self.put(k, &protocol_value(v));
            }
            self.record_no = self.record_no.wrapping_add(1);
            if let Some(h) = self.map.record.clone() {
                if let Some(words) = h.id.encode(&Value::from(self.record_no)) {
                    self.set(h.id.function, h.id.address, &words, None);
                }
                self.set(h.ready.function, h.ready.address, &[1], None);
            }
            self.shown = true;
        }
    }

    fn read(&self, function: Function, address: u16, count: u16) -> Vec<u16> {
        (0..count)
            .map(|i| {
                self.image
                    .get(&(function, address.wrapping_add(i)))
                    .copied()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// The gateway's ack of the shown record: the next one may come.
    fn acknowledge(&mut self) {
        if !self.shown {
            return;
        }
        self.records.pop_front();
        self.shown = false;
        if let Some(h) = self.map.record.clone() {
            self.set(h.ready.function, h.ready.address, &[0], None);
        }
    }
}

/// Serde's form of a model value as protocol.md has it (f32 values widened
/// without noise: 1.2f32 is 1.2, not 1.2000000476837158).
fn protocol_value(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(0.0);
            let rounded = (x * 1e4).round() / 1e4;
            serde_json::Number::from_f64(rounded).map_or(Value::Null, Value::Number)
        }
        other => other.clone(),
    }
}

/// The Modbus side of one unit.
#[derive(Clone)]
struct Service {
    unit: Arc<Mutex<Unit>>,
    ack: Option<u16>,
}

impl tokio_modbus::server::Service for Service {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Request<'static>) -> Self::Future {
        let in_range = |a: u16, n: u16| u32::from(a) + u32::from(n) <= MAX_ADDRESS && n > 0;
        let bits = |v: Vec<u16>| v.into_iter().map(|w| w != 0).collect::<Vec<bool>>();
        let mut unit = self.unit.lock();
        ready(match req {
            Request::ReadCoils(a, n) if in_range(a, n) => {
                Ok(Response::ReadCoils(bits(unit.read(Function::Coil, a, n))))
            }
            Request::ReadDiscreteInputs(a, n) if in_range(a, n) => Ok(
                Response::ReadDiscreteInputs(bits(unit.read(Function::Discrete, a, n))),
            ),
            Request::ReadHoldingRegisters(a, n) if in_range(a, n) => Ok(
                Response::ReadHoldingRegisters(unit.read(Function::Holding, a, n)),
            ),
            Request::ReadInputRegisters(a, n) if in_range(a, n) => Ok(
                Response::ReadInputRegisters(unit.read(Function::Input, a, n)),
            ),
            Request::WriteSingleCoil(a, v) if in_range(a, 1) => {
                if Some(a) == self.ack && v {
                    unit.acknowledge();
                } else {
                    unit.set(Function::Coil, a, &[u16::from(v)], None);
                }
                Ok(Response::WriteSingleCoil(a, v))
            }
            Request::ReadCoils(..)
            | Request::ReadDiscreteInputs(..)
            | Request::ReadHoldingRegisters(..)
            | Request::ReadInputRegisters(..)
            | Request::WriteSingleCoil(..) => Err(ExceptionCode::IllegalDataAddress),
            _ => Err(ExceptionCode::IllegalFunction),
        })
    }
}

/// Generates the fleet, binds one listener per controller and starts
/// stepping and serving.
pub async fn start(cfg: EmulateConfig) -> Result<Emulator, EdgeError> {
    let fleet_cfg = FleetConfig {
        cameras: 0,
        ..cfg.fleet.clone()
    };
    let fleet = Fleet::generate(&fleet_cfg);
    let load = |m: Option<RegisterMap>, name: &str| -> Result<RegisterMap, EdgeError> {
        match m {
            Some(m) => Ok(m),
            None => RegisterMap::load(name),
        }
    };
    let maps = [
        load(cfg.elevator_map.clone(), "elevator")?,
        load(cfg.ride_map.clone(), "ride")?,
        load(cfg.scale_map.clone(), "filling-scale")?,
    ];
    let mut units = Vec::new();
    let mut served = Vec::new();
    let mut tasks = Vec::new();
    let mut port = cfg.listen.port();
    for machine in fleet.machines() {
        let (map, name) = match machine.kind() {
            MachineKind::Elevator => (maps[0].clone(), "elevator"),
            MachineKind::Ride => (maps[1].clone(), "ride"),
            MachineKind::Scale => (maps[2].clone(), "filling-scale"),
            MachineKind::Camera => continue,
        };
        let addr = SocketAddr::new(cfg.listen.ip(), port);
        if port != 0 {
            port = port.checked_add(1).unwrap_or(0);
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| EdgeError::io("cannot listen", addr.to_string(), e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| EdgeError::io("cannot listen", addr.to_string(), e))?;
        let ack = map.record.as_ref().map(|h| h.ack.address);
        let device_id = machine.device_id().to_owned();
        let kind = machine.kind();
        let unit = Arc::new(Mutex::new(Unit {
            machine,
            map,
            image: BTreeMap::new(),
            records: VecDeque::new(),
            shown: false,
            record_no: 0,
        }));
        unit.lock().step(wall_ms());
        let service = Service {
            unit: Arc::clone(&unit),
            ack,
        };
        tasks.push(tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = |stream, peer: SocketAddr| {
                let service = service.clone();
                async move {
                    debug!(%peer, "Gateway connected to the emulator.");
                    accept_tcp_connection(stream, peer, move |_| Ok(Some(service.clone())))
                }
            };
            let on_error = |e| debug!(error = %e, "Emulated controller: connection ended.");
            if let Err(e) = server.serve(&on_connected, on_error).await {
                tracing::warn!(error = %e, "Emulated controller stopped serving.");
            }
        }));
        info!(device = %device_id, kind = kind.as_str(), %addr, map = name, "Emulating a controller.");
        served.push(Served {
            device_id,
            kind,
            addr,
            map: name,
        });
        units.push(unit);
    }
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(STEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let now = wall_ms();
            for u in &units {
                u.lock().step(now);
            }
        }
    }));
    Ok(Emulator {
        fleet,
        served,
        tasks,
    })
}

/// A gateway configuration for the emulated controllers, logging in with
/// the secrets the engine's registry import answered.
pub fn gateway_config(
    served: &[Served],
    secrets: &BTreeMap<String, String>,
    broker: &str,
    spool_dir: &str,
) -> String {
    let mut out = format!(
        "# Written by `vigil-edge emulate`: the emulated controllers and the\n\
         # devices they speak as. See docs/edge.md for every key.\n\n\
         [mqtt]\nbroker = \"{broker}\"\n\n[spool]\ndir = \"{spool_dir}\"\n"
    );
    for s in served {
        let secret = secrets.get(&s.device_id).map_or("", String::as_str);
        out.push_str(&format!(
            "\n[[device]]\nid = \"{}\"\nsecret = \"{secret}\"\nmap = \"{}\"\ncontroller = \"tcp://{}\"\n",
            s.device_id, s.map, s.addr
        ));
    }
    out
}

/// Imports the fleet into a running engine's registry and returns the new
/// devices' secrets (`POST {url}/api/v1/registry/import`).
pub async fn import(
    fleet: &Fleet,
    url: &str,
    token: &str,
) -> Result<BTreeMap<String, String>, EdgeError> {
    let err = |m: String| EdgeError::Engine(format!("registry import at {url}: {m}"));
    let body = fleet.import_doc();
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/registry/import",
            url.trim_end_matches('/')
        ))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    let status = resp.status();
    let answer: Value = resp.json().await.map_err(|e| err(e.to_string()))?;
    if !status.is_success() {
        return Err(err(format!("{status}: {answer}")));
    }
    Ok(answer["devices"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|d| {
            Some((
                d["device_id"].as_str()?.to_owned(),
                d["secret"].as_str()?.to_owned(),
            ))
        })
        .collect())
}
