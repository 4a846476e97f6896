//! The registry-time rules' schedule: the registry's equipment becomes
//! `RegistryFacts` (dates as the start of their day in the registry's local
//! time), sent to every rule shard about once a minute, and at once after
//! the registry changes (an import, a maintenance record), so a supervisor
//! sees an inspection alarm appear or clear within a second of the update.

use std::time::{Duration, Instant};

use chrono::{FixedOffset, NaiveDate, NaiveTime};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};
use vigil_model::{Binding, EpochMs};
use vigil_registry::{EquipmentStatus, Registry};
use vigil_rules::RegistryFacts;

/// How often the loop looks at the registry's version.
const POLL: Duration = Duration::from_secs(1);

/// Start of `day` in the registry's local time, in epoch ms.
pub fn day_start(day: NaiveDate, offset: FixedOffset) -> EpochMs {
    day.and_time(NaiveTime::MIN)
        .and_local_timezone(offset)
        .single()
        .map_or(0, |t| t.timestamp_millis())
}

/// The facts of every piece of equipment, split by rule shard.
pub fn facts_by_shard(
    registry: &Registry,
    offset: FixedOffset,
    shard_of: impl Fn(&vigil_model::EquipmentId) -> usize,
    shards: usize,
) -> Vec<Vec<RegistryFacts>> {
    let mut out: Vec<Vec<RegistryFacts>> = (0..shards).map(|_| Vec::new()).collect();
    for e in registry.export().equipment {
        let facts = RegistryFacts {
            binding: Binding {
                equipment_id: e.equipment_id.clone(),
                category: e.category.as_str().to_owned(),
                owner_id: e.owner_id.clone(),
                region: e.region,
            },
            in_use: e.status == EquipmentStatus::InUse,
            next_inspection: day_start(e.next_inspection, offset),
            next_inspection_date: e.next_inspection.to_string(),
            last_maintenance: e
                .last_maintenance
                .map(|d| (day_start(d, offset), d.to_string())),
        };
        out[shard_of(&e.equipment_id)].push(facts);
    }
    out
}

/// Sends every shard its facts (wrapped by `wrap`) every `every`, and
/// within a second of any registry change, until `stopping`.
pub async fn run<T>(
    registry: std::sync::Arc<Registry>,
    every: Duration,
    mut stopping: watch::Receiver<bool>,
    build: impl Fn(&Registry) -> Vec<Vec<RegistryFacts>>,
    shards: Vec<mpsc::Sender<T>>,
    wrap: fn(Vec<RegistryFacts>) -> T,
) {
    let mut last: Option<(u64, Instant)> = None;
    loop {
        let version = registry.version();
        if last.is_none_or(|(v, at)| v != version || at.elapsed() >= every) {
            let started = Instant::now();
            let facts = build(&registry);
            let equipment: usize = facts.iter().map(Vec::len).sum();
            for (tx, facts) in shards.iter().zip(facts) {
                // Every shard gets its list, empty or not: equipment gone
                // from the registry clears that way.
                if tx.send(wrap(facts)).await.is_err() {
                    warn!("Rule shards are gone; registry-time rules stop.");
                    return;
                }
            }
            debug!(
                version,
                equipment,
                took_ms = started.elapsed().as_millis() as u64,
                "Registry-time rules checked."
            );
            last = Some((version, Instant::now()));
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_day_starts_at_local_midnight() {
        let cst = FixedOffset::east_opt(8 * 3600).unwrap();
        let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        // 2026-11-24T00:00+08:00 = 2026-11-23T16:00Z.
        assert_eq!(day_start(day, cst), 1_795_449_600_000);
        let utc = FixedOffset::east_opt(0).unwrap();
        assert_eq!(day_start(day, utc) - day_start(day, cst), 8 * 3_600_000);
    }
}
