//! Rule replay: stored readings of a time range go through a fresh rule
//! engine (the running configuration, or one to try) in the order the engine
//! received them, with the clock ticks the live engine would have given,
//! and the alarm changes that come out are returned. Nothing is stored or
//! published: a rule can be tried on history before it goes live.

use std::collections::HashMap;

use serde::Deserialize;
use vigil_model::{Alarm, AlarmId, DeviceContext, EpochMs, Resolution, Stream};
use vigil_registry::Registry;
use vigil_registry::api::ApiError;
use vigil_rules::{RuleConfig, RuleEngine};
use vigil_storage::{QueryOptions, Store};

/// Ticks during replay, as the live engine's ticker gives them (about
/// every `engine.tick_ms`; a second is as fine as any rule's period).
const TICK_MS: EpochMs = 1_000;
/// Readings one replay may read; a longer range must be split.
pub(crate) const MAX_READINGS: usize = 1_000_000;

/// `POST /api/v1/rules/replay`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayRequest {
    /// Epoch ms, inclusive: readings with `ts` in `[from, to)`.
    pub from: EpochMs,
    pub to: EpochMs,
    /// A rule file (the `[rules]` format, rules defined or tuned) to try
    /// instead of the running rules.
    #[serde(default)]
    pub rules: Option<String>,
}

/// What a replay found.
pub(crate) struct Replayed {
    pub readings: usize,
    pub alarms: Vec<Alarm>,
}

/// The rule configuration of a request: its own TOML, or the running one.
pub(crate) fn config_of(req: &ReplayRequest, running: &RuleConfig) -> Result<RuleConfig, ApiError> {
    let Some(text) = &req.rules else {
        return Ok(running.clone());
    };
    RuleConfig::load(&toml::Table::new(), Some(("rules", text)))
        .map_err(|e| ApiError::bad_request("invalid_rules", e.to_string()))
}

/// Replays `req` with `config`: readings come from `store` (the engine's
/// own query options), devices' contexts from `registry` as it is now.
pub(crate) async fn replay(
    store: &dyn Store,
    opts: &QueryOptions,
    registry: &Registry,
    req: &ReplayRequest,
    config: RuleConfig,
) -> Result<Replayed, ApiError> {
    if req.to <= req.from {
        return Err(ApiError::bad_request(
            "invalid_range",
            format!("`to` ({}) must be after `from` ({})", req.to, req.from),
        ));
    }
    crate::sql::time_literal(req.from)?;
    crate::sql::time_literal(req.to)?;
    let mut readings = Vec::new();
    for stream in [
        Stream::Elevator,
        Stream::Ride,
        Stream::Video,
        Stream::Filling,
        Stream::Event,
    ] {
        let stored = store
            .readings(stream, req.from, req.to, MAX_READINGS + 1, opts)
            .await
            .map_err(crate::sql::store_error)?;
        readings.extend(stored);
        if readings.len() > MAX_READINGS {
            return Err(ApiError::bad_request(
                "range_too_large",
                format!("more than {MAX_READINGS} readings in the range; replay a shorter one"),
            ));
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
        // Contexts come from the registry as it is now, each a copy of its
        // own: its `engine_slot` notes the device's place in this engine,
        // not in the live shard's, which keeps the registry's.
        let ctx = contexts
            .entry(reading.device_id.clone())
            .or_insert_with(|| match registry.resolve(&reading.device_id) {
                Resolution::Active(ctx) => Some(DeviceContext::clone(&ctx)),
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
