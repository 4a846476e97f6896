//! Rule replay: stored readings of a time range go through a fresh rule
//! engine (the running configuration, or one to try) in the order the engine
//! received them, with the clock ticks the live engine would have given,
//! and the alarm changes that come out are returned. Nothing is stored or
//! published: a rule can be tried on history before it goes live.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{Map, Value};
use vigil_model::{Alarm, AlarmId, DeviceId, EpochMs, Payload, Reading, Resolution, Stream};
use vigil_registry::api::ApiError;
use vigil_rules::{RuleConfig, RuleEngine};

use crate::engine::AppState;

/// Ticks during replay, as the live engine's ticker gives them (about
/// every `engine.tick_ms`; a second is as fine as any rule's period).
const TICK_MS: EpochMs = 1_000;
/// Readings one replay may read; a longer range must be split.
pub const MAX_READINGS: usize = 1_000_000;

/// `POST /api/v1/rules/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Epoch ms, inclusive: readings with `ts` in `[from, to)`.
    pub from: EpochMs,
    pub to: EpochMs,
    /// A rule file (the `[rules]` format, rules defined or tuned) to try
    /// instead of the running rules.
    #[serde(default)]
    pub rules: Option<String>,
}

/// What a replay found.
pub struct Replayed {
    pub readings: usize,
    pub alarms: Vec<Alarm>,
}

/// The rule configuration of a request: its own TOML, or the running one.
pub fn config_of(req: &ReplayRequest, running: &RuleConfig) -> Result<RuleConfig, ApiError> {
    let Some(text) = &req.rules else {
        return Ok(running.clone());
    };
    RuleConfig::load(&toml::Table::new(), Some(("rules", text)))
        .map_err(|e| ApiError::bad_request("invalid_rules", e.to_string()))
}

pub async fn replay(
    state: &AppState,
    req: &ReplayRequest,
    config: RuleConfig,
) -> Result<Replayed, ApiError> {
    if req.to <= req.from {
        return Err(ApiError::bad_request(
            "invalid_range",
            format!("`to` ({}) must be after `from` ({})", req.to, req.from),
        ));
    }
    let mut readings = Vec::new();
    for stream in [
        Stream::Elevator,
        Stream::Ride,
        Stream::Video,
        Stream::Filling,
        Stream::Event,
    ] {
        let sql = format!(
            "SELECT * FROM {} WHERE ts >= {} AND ts < {}",
            vigil_storage::readings_table(stream),
            crate::sql::time_literal(req.from)?,
            crate::sql::time_literal(req.to)?
        );
        for row in crate::sql::epoch_rows(state, &sql, MAX_READINGS + 1).await? {
            readings.push(reading_of(stream, row)?);
            if readings.len() > MAX_READINGS {
                return Err(ApiError::bad_request(
                    "range_too_large",
                    format!("more than {MAX_READINGS} readings in the range; replay a shorter one"),
                ));
            }
        }
    }
    // The order the engine received them in (seq breaks ties per device).
    readings.sort_by(|a, b| {
        (a.received_at, &a.device_id, a.seq).cmp(&(b.received_at, &b.device_id, b.seq))
    });

    let mut n = 0u64;
    let mut engine = RuleEngine::with_id_source(
        config,
        Box::new(move || {
            n += 1;
            AlarmId::new(format!("replay-{n}")).expect("a valid id")
        }),
    );
    let mut contexts = HashMap::new();
    let mut alarms = Vec::new();
    let mut clock: Option<EpochMs> = None;
    for reading in &readings {
        // The ticks the live engine gave between two readings.
        if let Some(mut t) = clock {
            while t + TICK_MS <= reading.received_at {
                t += TICK_MS;
                alarms.extend(engine.tick(t));
            }
        }
        clock = Some(clock.map_or(reading.received_at, |c| c.max(reading.received_at)));
        // Contexts come from the registry as it is now.
        let ctx = contexts
            .entry(reading.device_id.clone())
            .or_insert_with(|| match state.registry.resolve(&reading.device_id) {
                Resolution::Active(ctx) => Some(ctx),
                _ => None,
            });
        if let Some(ctx) = ctx {
            alarms.extend(engine.on_reading(reading, ctx, reading.received_at));
        }
    }
    if let Some(mut t) = clock {
        while t + TICK_MS <= req.to {
            t += TICK_MS;
            alarms.extend(engine.tick(t));
        }
    }
    Ok(Replayed {
        readings: readings.len(),
        alarms,
    })
}

/// A stored row back into the reading the device sent: the payload's
/// columns carry the protocol's field names.
fn reading_of(stream: Stream, row: Map<String, Value>) -> Result<Reading, ApiError> {
    let bad = |what: &str| ApiError::internal(format!("stored {stream:?} row: {what}"));
    let device_id = row
        .get("device_id")
        .and_then(Value::as_str)
        .and_then(|d| DeviceId::new(d).ok())
        .ok_or_else(|| bad("no device_id"))?;
    let int = |k: &str| row.get(k).and_then(Value::as_i64).ok_or_else(|| bad(k));
    let seq = row
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("seq"))?;
    let (ts, received_at) = (int("ts")?, int("received_at")?);
    let payload = Value::Object(row);
    let payload = match stream {
        Stream::Elevator => serde_json::from_value(payload).map(Payload::Elevator),
        Stream::Ride => serde_json::from_value(payload).map(Payload::Ride),
        Stream::Video => serde_json::from_value(payload).map(Payload::Video),
        Stream::Filling => serde_json::from_value(payload).map(Payload::Filling),
        Stream::Event => serde_json::from_value(payload).map(Payload::Event),
    }
    .map_err(|e| bad(&e.to_string()))?;
    Ok(Reading {
        device_id,
        seq,
        ts,
        received_at,
        payload,
        extra: None,
    })
}
