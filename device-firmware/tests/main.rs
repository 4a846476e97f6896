//! The gateway and its emulator over real Modbus TCP sockets: the
//! emulator answers like a controller, the gateway turns its registers
//! into messages the engine's own decoder accepts, and a controller that
//! fails becomes one event and a slower poll, never a busy loop.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::sync::watch;
use tokio_modbus::client::{Reader, Writer, tcp};
use tokio_modbus::{ExceptionCode, Slave};
use vigil_edge::config::GatewayConfig;
use vigil_edge::emulate::{self, EmulateConfig, Emulator};
use vigil_edge::map::RegisterMap;
use vigil_edge::spool::{Spool, SpoolLimits};
use vigil_model::codec::decode;
use vigil_model::{DeviceId, Payload, Stream};
use vigil_simulator::{FleetConfig, MachineKind};

async fn emulator(elevators: usize, rides: usize, stations: usize) -> Emulator {
    emulate::start(EmulateConfig {
        fleet: FleetConfig {
            devices: elevators,
            rides,
            stations,
            seed: 3,
            fault_fraction: 0.0,
            ..FleetConfig::default()
        },
        listen: "127.0.0.1:0".parse().unwrap(),
        elevator_map: None,
        ride_map: None,
        scale_map: None,
    })
    .await
    .unwrap()
}

fn addr_of(emu: &Emulator, kind: MachineKind) -> (String, SocketAddr) {
    let s = emu.served.iter().find(|s| s.kind == kind).unwrap();
    (s.device_id.clone(), s.addr)
}

#[tokio::test]
async fn the_emulator_answers_like_a_controller() {
    let emu = emulator(1, 1, 1).await;
    assert_eq!(emu.served.len(), 3);
    let map = RegisterMap::load("elevator").unwrap();
    let (_, addr) = addr_of(&emu, MachineKind::Elevator);
    let mut ctx = tcp::connect_slave(addr, Slave(1)).await.unwrap();
    let words = ctx.read_holding_registers(0, 24).await.unwrap().unwrap();
    let field = |name: &str| {
        let r = map.registers.iter().find(|r| r.field == name).unwrap();
        let at = usize::from(r.address);
        r.decode(&words[at..at + usize::from(r.width())])
    };
    // A real car's state: a floor of the building, doors, healthy circuits.
    let floor = field("floor").unwrap().as_i64().unwrap();
    assert!((-3..=32).contains(&floor) && floor != 0, "{floor}");
    assert!(field("door").is_some() && field("direction").is_some());
    assert_eq!(field("safety_circuit"), Some(serde_json::json!(true)));
    assert_eq!(field("mode"), Some(serde_json::json!("normal")));
    assert!(field("run_count").unwrap().as_u64().unwrap() >= 10_000);
    // Registers it does not have: an exception, as a controller answers.
    let err = ctx
        .read_holding_registers(1500, 2)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err, ExceptionCode::IllegalDataAddress);
    let err = ctx
        .read_holding_registers(990, 20)
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err, ExceptionCode::IllegalDataAddress);

    // The ride PLC: a state word and interlock bits.
    let ride = RegisterMap::load("ride").unwrap();
    let (_, addr) = addr_of(&emu, MachineKind::Ride);
    let mut ctx = tcp::connect_slave(addr, Slave(1)).await.unwrap();
    let words = ctx.read_input_registers(0, 6).await.unwrap().unwrap();
    let state = ride.registers.iter().find(|r| r.field == "state").unwrap();
    assert!(state.decode(&words[..1]).is_some());
    let bits = ctx.read_discrete_inputs(0, 2).await.unwrap().unwrap();
    assert!(!bits[1], "brake ok");

    // The scale: no record yet; acknowledging nothing is harmless.
    let (_, addr) = addr_of(&emu, MachineKind::Scale);
    let mut ctx = tcp::connect_slave(addr, Slave(1)).await.unwrap();
    assert_eq!(
        ctx.read_discrete_inputs(0, 1).await.unwrap().unwrap(),
        vec![false]
    );
    ctx.write_single_coil(0, true).await.unwrap().unwrap();
    emu.stop();
}

fn config(dir: &Path, devices: &[(String, &str, String)], poll_ms: u64) -> GatewayConfig {
    // No broker listens on port 9 (discard): the uplinks retry with
    // back-off while the spool keeps everything.
    let mut text = format!(
        "[mqtt]\nbroker = \"127.0.0.1:9\"\n\n[spool]\ndir = \"{}\"\nsync_ms = 50\n",
        dir.join("spool").display()
    );
    for (id, map, controller) in devices {
        text.push_str(&format!(
            "\n[[device]]\nid = \"{id}\"\nsecret = \"s\"\nmap = \"{map}\"\ncontroller = \"{controller}\"\npoll_ms = {poll_ms}\ntimeout_ms = 300\n"
        ));
    }
    let path = dir.join("edge.toml");
    std::fs::write(&path, text).unwrap();
    GatewayConfig::load(&path).unwrap()
}

/// Runs the gateway for `secs`, then stops it and returns its report.
async fn run_for(cfg: GatewayConfig, secs: u64) -> vigil_edge::gateway::Report {
    let (stop, stopping) = watch::channel(false);
    let gw = tokio::spawn(vigil_edge::gateway::run(cfg, stopping));
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.send(true).unwrap();
    gw.await.unwrap().unwrap()
}

/// Every message the spool holds for `id`, durable (the gateway synced
/// at shutdown), in order.
fn spooled(dir: &Path, ids: &[String], id: &str) -> Vec<(u64, Stream, serde_json::Value)> {
    let mut spool = Spool::open(
        &dir.join("spool"),
        SpoolLimits {
            max_bytes: 64 << 20,
            segment_bytes: 1 << 20,
        },
        ids,
        0,
    )
    .unwrap();
    let d = spool.device_index(id).unwrap();
    let mut out = Vec::new();
    while let Some(rec) = spool.next_to_send(d) {
        spool.mark_sent(d, &rec);
        out.push((
            rec.seq,
            rec.stream,
            serde_json::from_slice(&rec.payload).unwrap(),
        ));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_become_messages_the_engine_accepts() {
    let emu = emulator(1, 1, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let (el, el_addr) = addr_of(&emu, MachineKind::Elevator);
    let (rd, rd_addr) = addr_of(&emu, MachineKind::Ride);
    let devices = vec![
        (el.clone(), "elevator", format!("tcp://{el_addr}")),
        (rd.clone(), "ride", format!("tcp://{rd_addr}")),
    ];
    let report = run_for(config(dir.path(), &devices, 100), 3).await;
    emu.stop();
    assert_eq!(report.poll_errors, 0);
    assert!(report.polls >= 40, "{report:?}");
    assert!(report.spool.appended >= 2);
    let ids = vec![el.clone(), rd.clone()];
    for (id, stream) in [(&el, Stream::Elevator), (&rd, Stream::Ride)] {
        let msgs = spooled(dir.path(), &ids, id);
        assert!(!msgs.is_empty(), "{id}: nothing spooled");
        assert!(
            msgs.windows(2).all(|w| w[0].0 + 1 == w[1].0),
            "{id}: seqs count up by one"
        );
        for (seq, s, json) in &msgs {
            assert_eq!(*s, stream);
            // The engine's own decoder, with its validation, accepts it.
            let bytes = serde_json::to_vec(json).unwrap();
            let r = decode(
                DeviceId::new(id).unwrap(),
                stream,
                &bytes,
                json["ts"].as_i64().unwrap(),
            )
            .unwrap_or_else(|e| panic!("{id}: {json} refused: {e:?}"));
            assert_eq!(r.seq, *seq);
            assert_eq!(r.extra, None, "{id}: only protocol fields in {json}");
            match (&r.payload, stream) {
                (Payload::Elevator(s), _) => assert!(s.safety_circuit && s.run_count.is_some()),
                (Payload::Ride(s), _) => assert!(s.wind_mps.is_some()),
                _ => panic!("{id}: {json}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_controller_is_one_event_and_a_slower_poll() {
    let emu = emulator(1, 0, 0).await;
    let dir = tempfile::tempdir().unwrap();
    let (el, el_addr) = addr_of(&emu, MachineKind::Elevator);
    // A map that reads registers the controller does not have: exceptions.
    let bad = RegisterMap::load("elevator").unwrap();
    let text = vigil_edge::map::BUILTIN[0]
        .1
        .replace("address = 20\ncount = 4", "address = 1500\ncount = 4");
    let bad_path = dir.path().join("bad.toml");
    std::fs::write(&bad_path, &text).unwrap();
    assert_ne!(RegisterMap::load(bad_path.to_str().unwrap()).unwrap(), bad);
    // Nothing listens here: connections refused.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let devices = vec![
        (
            el.clone(),
            bad_path.to_str().unwrap(),
            format!("tcp://{el_addr}"),
        ),
        ("GONE1".to_owned(), "elevator", format!("tcp://{closed}")),
    ];
    let report = run_for(config(dir.path(), &devices, 50), 4).await;
    emu.stop();
    // Polled every 50 ms, 160 attempts in 4 s without back-off; with it
    // (0.5, 1, 2 s …) a handful per device.
    assert!(report.poll_errors <= 16, "{report:?}");
    assert!(report.poll_errors >= 4, "{report:?}");
    let ids = vec![el.clone(), "GONE1".to_owned()];
    for (id, want) in [(el.as_str(), "Illegal data address"), ("GONE1", "connect")] {
        let msgs = spooled(dir.path(), &ids, id);
        let events: Vec<&serde_json::Value> = msgs
            .iter()
            .filter(|m| m.1 == Stream::Event)
            .map(|m| &m.2)
            .collect();
        assert_eq!(events.len(), 1, "{id}: one event per outage: {msgs:?}");
        assert_eq!(events[0]["code"], "EDGE_MODBUS");
        assert_eq!(events[0]["active"], true);
        let text = events[0]["text"].as_str().unwrap();
        assert!(text.contains(want), "{id}: {text}");
        assert!(
            msgs.iter().all(|m| m.1 == Stream::Event),
            "{id}: no samples while failing"
        );
    }
}

#[test]
fn the_example_config_loads() {
    let path =
        Path::new(&std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
            .join("vigil-edge.example.toml");
    let cfg = GatewayConfig::load(&path).unwrap();
    assert_eq!(cfg.devices.len(), 1);
    assert_eq!(cfg.spool.max_mb, 64);
    assert_eq!(
        cfg.devices[0].controller.to_string(),
        "tcp://192.168.10.20:502"
    );
}

#[test]
fn config_mistakes_are_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    let good = "[mqtt]\nbroker = \"127.0.0.1:1883\"\n\n[spool]\ndir = \"spool\"\n\n[[device]]\nid = \"EL1\"\nsecret = \"s\"\nmap = \"elevator\"\ncontroller = \"tcp://127.0.0.1:502\"\n";
    std::fs::write(&path, good).unwrap();
    let cfg = GatewayConfig::load(&path).unwrap();
    assert_eq!(
        cfg.spool.dir,
        dir.path().join("spool"),
        "relative to the config file"
    );
    assert_eq!(cfg.devices[0].map.stream, Stream::Elevator);
    let cases = [
        (
            "id = \"EL1\"",
            "id = \"EL-1\"",
            "edge.toml:8:6: device id \"EL-1\": 1–64 letters and digits",
        ),
        (
            "controller = \"tcp://127.0.0.1:502\"",
            "controller = \"udp://x\"",
            "edge.toml:11:14: controller \"udp://x\"",
        ),
        (
            "map = \"elevator\"",
            "map = \"lift\"",
            "cannot read register map",
        ),
        (
            "secret = \"s\"",
            "cert = \"c.pem\"",
            "edge.toml:8:6: device EL1: give either `secret` or both `cert` and `key`",
        ),
        (
            "broker = ",
            "brokr = ",
            "edge.toml:2:1: unknown field `brokr`",
        ),
    ];
    for (from, to, want) in cases {
        std::fs::write(&path, good.replacen(from, to, 1)).unwrap();
        let msg = GatewayConfig::load(&path).unwrap_err().to_string();
        assert!(msg.contains(want), "{to}: {msg}");
    }
    // A map mistake names the map's own file and line.
    std::fs::write(
        dir.path().join("my.toml"),
        "stream = \"elevator\"\nfoo = 1\n",
    )
    .unwrap();
    std::fs::write(
        &path,
        good.replacen("map = \"elevator\"", "map = \"my.toml\"", 1),
    )
    .unwrap();
    let msg = GatewayConfig::load(&path).unwrap_err().to_string();
    assert!(msg.contains("my.toml:2:1: unknown field `foo`"), "{msg}");
    // RTU controllers parse their serial settings.
    std::fs::write(
        &path,
        good.replacen(
            "tcp://127.0.0.1:502",
            "rtu:///dev/ttyUSB0?baud=19200&parity=E&stop=1",
            1,
        ),
    )
    .unwrap();
    let cfg = GatewayConfig::load(&path).unwrap();
    assert_eq!(cfg.devices[0].controller.to_string(), "rtu:///dev/ttyUSB0");
}
