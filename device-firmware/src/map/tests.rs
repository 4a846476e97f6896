//! Register maps: the shipped ones parse, every mistake is refused with
//! file:line:column, values decode and encode back.

use serde_json::json;

use super::*;

fn parse(text: &str) -> Result<RegisterMap, EdgeError> {
    RegisterMap::parse(text, Path::new("maps/test.toml"))
}

/// The error's `file:line:column: message`.
fn refused(text: &str) -> String {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

const MINI_RIDE: &str = r#"
stream = "ride"
[[register]]
field = "state"
function = "input"
address = 0
type = "enum"
values = { 0 = "stopped", 2 = "running" }
[[register]]
field = "speed_mps"
function = "input"
address = 1
type = "u16"
scale = 0.01
[[register]]
field = "restraints_locked"
function = "discrete"
address = 0
type = "bool"
[[register]]
field = "brake"
function = "discrete"
address = 1
type = "enum"
values = { 0 = "ok", 1 = "fault" }
"#;

#[test]
fn the_shipped_maps_parse() {
    for (name, _) in BUILTIN {
        let map = RegisterMap::load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!map.registers.is_empty());
    }
    let elevator = RegisterMap::load("elevator").unwrap();
    assert_eq!(elevator.stream, Stream::Elevator);
    assert_eq!(elevator.faults.as_ref().unwrap().code(30).0, "E30");
    assert_eq!(elevator.faults.as_ref().unwrap().code(1).0, "01");
    assert_eq!(elevator.active.as_ref().unwrap().field, "speed_mps");
    let scale = RegisterMap::load("filling-scale").unwrap();
    assert!(scale.record.is_some());
    let ride = RegisterMap::load("ride").unwrap();
    assert_eq!(ride.fault_bits.len(), 2);
    assert!(parse(MINI_RIDE).is_ok());
}

#[test]
fn mistakes_are_refused_with_file_line_and_column() {
    let cases: &[(&str, &str, &str)] = &[
        // (what to replace, with what, expected in the message)
        (
            "field = \"speed_mps\"",
            "field = \"sped_mps\"",
            "maps/test.toml:10:9: unknown field \"sped_mps\"",
        ),
        (
            "address = 1\ntype = \"u16\"",
            "address = 70000\ntype = \"u16\"",
            "maps/test.toml:12:11: address 70000 is outside",
        ),
        (
            "values = { 0 = \"ok\", 1 = \"fault\" }",
            "values = { 0 = \"ok\", 1 = \"broken\" }",
            "\"broken\" is not a protocol.md word",
        ),
        (
            "function = \"input\"\naddress = 0",
            "function = \"inputs\"\naddress = 0",
            "maps/test.toml:5:12: unknown function \"inputs\"",
        ),
        (
            "type = \"u16\"",
            "type = \"u17\"",
            "maps/test.toml:13:8: unknown type \"u17\"",
        ),
        (
            "stream = \"ride\"",
            "stream = \"video\"",
            "maps/test.toml:2:10: stream \"video\"",
        ),
        (
            "scale = 0.01",
            "scale = 0.0",
            "maps/test.toml:14:9: scale must be a non-zero number",
        ),
        (
            "scale = 0.01",
            "scael = 0.01",
            "maps/test.toml:14:1: unknown field `scael`",
        ),
        (
            "type = \"bool\"",
            "type = \"u16\"",
            "a discrete holds one bit",
        ),
        (
            "scale = 0.01",
            "scale = [1",
            "maps/test.toml:15:1: invalid array; expected `]`",
        ),
    ];
    for (from, to, want) in cases {
        assert!(MINI_RIDE.contains(from), "{from}");
        let text = MINI_RIDE.replacen(from, to, 1);
        let msg = refused(&text);
        assert!(
            msg.contains(want),
            "{from} → {to}:\n  got  {msg}\n  want {want}"
        );
        assert!(msg.starts_with("maps/test.toml:"), "{msg}");
    }
    // A required field missing names them all, at the stream line.
    let text = MINI_RIDE
        .split("[[register]]\nfield = \"brake\"")
        .next()
        .unwrap();
    let msg = refused(text);
    assert!(
        msg.contains("maps/test.toml:2:10: a ride map must map brake"),
        "{msg}"
    );
    // The same field twice.
    let twice = format!(
        "{MINI_RIDE}\n[[register]]\nfield = \"speed_mps\"\nfunction = \"input\"\naddress = 9\ntype = \"u16\"\n"
    );
    assert!(
        refused(&twice).contains(":28:9: field \"speed_mps\" is mapped twice"),
        "{}",
        refused(&twice)
    );
    // A filling map without its handshake, a bit of a coil, an enum without values.
    let scale = BUILTIN[2].1;
    let no_record = scale.replace("[record]", "[ignored]");
    assert!(refused(&no_record).contains("unknown field `ignored`"));
    let cut = scale.split("[record]").next().unwrap().to_owned()
        + scale
            .split_once("[[register]]")
            .map(|(_, r)| r)
            .map(|r| format!("[[register]]{r}"))
            .unwrap()
            .as_str();
    assert!(
        refused(&cut).contains("needs a [record] handshake"),
        "{}",
        refused(&cut)
    );
    let bad_bit = MINI_RIDE.replacen("type = \"bool\"", "type = \"bool\"\nbit = 3", 1);
    assert!(refused(&bad_bit).contains("`bit` is for registers"));
    let no_values = MINI_RIDE.replacen("values = { 0 = \"stopped\", 2 = \"running\" }\n", "", 1);
    assert!(refused(&no_values).contains("maps/test.toml:7:8: an enum needs a `values` table"));
}

fn reg(map: &RegisterMap, field: &str) -> Register {
    map.registers
        .iter()
        .find(|r| r.field == field)
        .unwrap()
        .clone()
}

#[test]
fn values_decode_and_encode_back() {
    let elevator = RegisterMap::load("elevator").unwrap();
    let ride = RegisterMap::load("ride").unwrap();
    let scale = RegisterMap::load("filling-scale").unwrap();
    let cases = [
        (reg(&elevator, "floor"), json!(-2)),
        (reg(&elevator, "speed_mps"), json!(1.75)),
        (reg(&elevator, "door"), json!("closing")),
        (reg(&elevator, "run_count"), json!(123_456)),
        (reg(&elevator, "load_pct"), json!(35.5)),
        (reg(&elevator, "door_lock"), json!(true)),
        (reg(&ride, "vibration_mm_s"), json!(3.25)),
        (reg(&ride, "wind_mps"), json!(12.3)),
        (reg(&ride, "brake"), json!("fault")),
        (reg(&scale, "cylinder_code"), json!("LPG44070301000123")),
        (reg(&scale, "temp_c"), json!(-12.5)),
        (reg(&scale, "net_kg"), json!(14.25)),
    ];
    for (r, v) in cases {
        let words = r.encode(&v).unwrap_or_else(|| panic!("{} {v}", r.field));
        assert_eq!(words.len(), usize::from(r.width()), "{}", r.field);
        assert_eq!(r.decode(&words), Some(v.clone()), "{} {words:?}", r.field);
    }
    // Absent values: the raw sentinel, both ways.
    let wind = reg(&ride, "wind_mps");
    assert_eq!(wind.encode(&Value::Null), Some(vec![65535]));
    assert_eq!(wind.decode(&[65535]), None);
    let vib = reg(&ride, "vibration_mm_s");
    assert_eq!(vib.decode(&[0x7fc0, 0]), None, "NaN is no reading");
    // A bit of the status word.
    let lock = reg(&elevator, "door_lock");
    assert_eq!(lock.decode(&[0b1000]), Some(json!(true)));
    assert_eq!(lock.decode(&[0b0111]), Some(json!(false)));
    // A raw value missing from an enum table is no value.
    assert_eq!(reg(&elevator, "door").decode(&[9]), None);
    // Word order.
    let mut r = reg(&elevator, "run_count");
    assert_eq!(r.decode(&[1, 2]), Some(json!(65538)));
    r.high_word_first = false;
    assert_eq!(r.decode(&[2, 1]), Some(json!(65538)));
}
