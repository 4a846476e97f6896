//! The registry-time rules' schedule: the registry's equipment becomes
//! `RegistryFacts` (dates as the start of their day in the registry's local
//! time), sent to every rule shard about once a minute, and at once after
//! the registry changes (an import, a maintenance record), so a supervisor
//! sees an inspection alarm appear or clear within a second of the update.
//!
//! Maintenance records count for `registry.maintenance_overdue` once the
//! owner has confirmed them (TSG T5002: the user unit signs the record);
//! every kind counts, since each includes the half-monthly items. Records
//! of the last [`RECENT_MAINTENANCE_DAYS`] go to the rules as claims, each
//! with what the store holds of the elevator's samples around its
//! `done_at` (`registry.maintenance_unverified`), looked up once per record.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveTime};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};
use vigil_model::{Binding, EpochMs, EquipmentId};
use vigil_registry::{Category, EquipmentStatus, Export, MaintenanceRecord, Registry};
use vigil_rules::{CertificateFacts, MaintenanceFacts, RegistryFacts, Telemetry};
use vigil_storage::{QueryOptions, Store};

use crate::engine::Clock;

/// How often the loop looks at the registry's version.
const POLL: Duration = Duration::from_secs(1);
/// Maintenance records done within this many days are judged as claims.
pub(crate) const RECENT_MAINTENANCE_DAYS: i64 = 7;
/// Store look-ups of new records per pass; the rest wait for the next.
const LOOKUPS_PER_PASS: usize = 200;
const DAY_MS: EpochMs = 86_400_000;

/// Start of `day` in the registry's local time, in epoch ms.
pub(crate) fn day_start(day: NaiveDate, offset: FixedOffset) -> EpochMs {
    day.and_time(NaiveTime::MIN)
        .and_local_timezone(offset)
        .single()
        .map_or(0, |t| t.timestamp_millis())
}

/// A record's key in the look-up cache: equipment, kind, done_at.
type RecordKey = (EquipmentId, String, String);

/// The facts of every piece of equipment, split by rule shard, at wall
/// time `now`. `stored` gives what the store held around each recent
/// record that has been looked up.
pub(crate) fn facts_by_shard(
    export: &Export,
    offset: FixedOffset,
    now: EpochMs,
    stored: &HashMap<RecordKey, Telemetry>,
    shard_of: impl Fn(&EquipmentId) -> usize,
    shards: usize,
) -> Vec<Vec<RegistryFacts>> {
    let mut records: HashMap<&EquipmentId, Vec<&MaintenanceRecord>> = HashMap::new();
    for m in &export.maintenance {
        records.entry(&m.equipment_id).or_default().push(m);
    }
    let persons: HashMap<&str, &vigil_registry::Person> = export
        .persons
        .iter()
        .map(|p| (p.person_id.as_str(), p))
        .collect();
    let mut out: Vec<Vec<RegistryFacts>> = (0..shards).map(|_| Vec::new()).collect();
    for e in &export.equipment {
        let mine = records.get(&e.equipment_id).map_or(&[][..], Vec::as_slice);
        let (last_maintenance, awaiting_confirmation) =
            counted_maintenance(e.last_maintenance, mine);
        let maintenance = mine
            .iter()
            .filter_map(|m| {
                let (at, date_only) = done_at(m, offset)?;
                let recent = now - at <= RECENT_MAINTENANCE_DAYS * DAY_MS && at <= now + DAY_MS;
                recent.then(|| MaintenanceFacts {
                    kind: m.kind.to_string(),
                    done_at: m.done_at.clone(),
                    at,
                    date_only,
                    person_id: m.person_id.as_str().to_owned(),
                    certificates: persons
                        .get(m.person_id.as_str())
                        .map(|p| {
                            p.certificates
                                .iter()
                                .map(|c| CertificateFacts {
                                    kind: c.kind.clone(),
                                    number: c.number.clone(),
                                    expires: day_start(c.expires, offset),
                                    expires_date: c.expires.to_string(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                    confirmed_by_owner: m.confirmed_by_owner,
                    stored: stored.get(&key_of(m)).cloned(),
                })
            })
            .collect();
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
            last_maintenance: last_maintenance.map(|d| (day_start(d, offset), d.to_string())),
            awaiting_confirmation,
            maintenance,
        };
        out[shard_of(&e.equipment_id)].push(facts);
    }
    out
}

/// The last maintenance day that counts: the latest record the owner
/// confirmed, or the equipment's own `last_maintenance` when no record
/// explains it (a date the registry was given, e.g. by an earlier
/// system). With the `done_at` of a later record still waiting for the
/// owner's confirmation, if any.
fn counted_maintenance(
    given: Option<NaiveDate>,
    records: &[&MaintenanceRecord],
) -> (Option<NaiveDate>, Option<String>) {
    let latest_record = records.iter().filter_map(|m| m.done_on()).max();
    let confirmed = records
        .iter()
        .filter(|m| m.confirmed_by_owner)
        .filter_map(|m| m.done_on())
        .max();
    let own = given.filter(|d| latest_record.is_none_or(|r| *d > r));
    let counted = confirmed.max(own);
    let awaiting = records
        .iter()
        .filter(|m| !m.confirmed_by_owner)
        .filter_map(|m| Some((m.done_on()?, m)))
        .filter(|(day, _)| counted.is_none_or(|c| *day > c))
        .max_by_key(|(day, _)| *day)
        .map(|(_, m)| m.done_at.clone());
    (counted, awaiting)
}

/// When a record was done: its timestamp, or the start of its local day.
fn done_at(m: &MaintenanceRecord, offset: FixedOffset) -> Option<(EpochMs, bool)> {
    if let Ok(t) = DateTime::parse_from_rfc3339(&m.done_at) {
        return Some((t.timestamp_millis(), false));
    }
    m.done_on().map(|d| (day_start(d, offset), true))
}

fn key_of(m: &MaintenanceRecord) -> RecordKey {
    (
        m.equipment_id.clone(),
        m.kind.to_string(),
        m.done_at.clone(),
    )
}

/// What the schedule needs of the engine.
pub(crate) struct Schedule {
    pub registry: Arc<Registry>,
    pub store: Arc<dyn Store>,
    pub sql: QueryOptions,
    pub clock: Clock,
    pub offset: FixedOffset,
    pub every: Duration,
}

/// Sends every shard its facts (wrapped by `wrap`) every `every`, and
/// within a second of any registry change, until `stopping`.
pub(crate) async fn run<T>(
    s: Schedule,
    mut stopping: watch::Receiver<bool>,
    shard_of: impl Fn(&EquipmentId) -> usize,
    shards: Vec<mpsc::Sender<T>>,
    wrap: fn(Vec<RegistryFacts>) -> T,
) {
    let mut last: Option<(u64, Instant)> = None;
    let mut stored: HashMap<RecordKey, Telemetry> = HashMap::new();
    // Records looked up in vain this pass wait for the next.
    let mut pending_lookups = false;
    loop {
        let version = s.registry.version();
        if pending_lookups || last.is_none_or(|(v, at)| v != version || at.elapsed() >= s.every) {
            let started = Instant::now();
            let export = s.registry.export();
            let now = (s.clock)();
            pending_lookups = look_up_new(&s, &export, now, &mut stored).await;
            let facts = facts_by_shard(&export, s.offset, now, &stored, &shard_of, shards.len());
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

/// Looks up, in the store, the elevator samples around each recent
/// elevator record not looked up yet, and forgets records gone from the
/// horizon. True when some are left for the next pass.
async fn look_up_new(
    s: &Schedule,
    export: &Export,
    now: EpochMs,
    stored: &mut HashMap<RecordKey, Telemetry>,
) -> bool {
    let elevators: HashSet<&EquipmentId> = export
        .equipment
        .iter()
        .filter(|e| e.category == Category::Elevator)
        .map(|e| &e.equipment_id)
        .collect();
    let mut wanted = HashSet::new();
    let mut lookups = 0;
    let mut left = false;
    for m in &export.maintenance {
        if !elevators.contains(&m.equipment_id) {
            continue;
        }
        let Some((at, date_only)) = done_at(m, s.offset) else {
            continue;
        };
        if now - at > RECENT_MAINTENANCE_DAYS * DAY_MS {
            continue;
        }
        let key = key_of(m);
        wanted.insert(key.clone());
        if stored.contains_key(&key) {
            continue;
        }
        if lookups >= LOOKUPS_PER_PASS {
            left = true;
            continue;
        }
        lookups += 1;
        let probe = MaintenanceFacts {
            kind: String::new(),
            done_at: String::new(),
            at,
            date_only,
            person_id: String::new(),
            certificates: Vec::new(),
            confirmed_by_owner: false,
            stored: None,
        };
        match telemetry(s, &m.equipment_id, probe.window()).await {
            Ok(t) => {
                stored.insert(key, t);
            }
            Err(e) => {
                warn!(equipment = %m.equipment_id, done_at = %m.done_at, error = %e, "Telemetry around a maintenance record could not be read; trying again at the next check.");
                left = true;
            }
        }
    }
    stored.retain(|k, _| wanted.contains(k));
    left
}

/// The equipment's elevator samples within `[from, to]`: how many, how
/// many in `inspection` or `maintenance` mode, and a device that sent them.
async fn telemetry(
    s: &Schedule,
    equipment: &EquipmentId,
    (from, to): (EpochMs, EpochMs),
) -> anyhow::Result<Telemetry> {
    let time = |ms| crate::sql::time_literal(ms).map_err(|e| anyhow::anyhow!("{e:?}"));
    let sql = format!(
        "SELECT count(*) AS samples, \
         sum(CASE WHEN mode IN ('inspection', 'maintenance') THEN 1 ELSE 0 END) AS service, \
         max(device_id) AS device \
         FROM elevator_readings WHERE equipment_id = {} AND ts >= {} AND ts <= {}",
        crate::sql::lit(equipment.as_str()),
        time(from)?,
        time(to)?
    );
    let output = s.store.query(&sql, &s.sql).await?;
    let rows = crate::sql::rows_as_json(&output.batches).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let row = rows.into_iter().next().unwrap_or_default();
    let number = |k: &str| -> u64 {
        match row.get(k) {
            Some(serde_json::Value::Number(n)) => n.as_u64().unwrap_or_default(),
            // PostgreSQL's numeric sums come as text.
            Some(serde_json::Value::String(s)) => s.parse().unwrap_or_default(),
            _ => 0,
        }
    };
    Ok(Telemetry {
        samples: number("samples"),
        service: number("service"),
        device: row
            .get("device")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
    })
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

    fn record(done_at: &str, confirmed: bool) -> MaintenanceRecord {
        serde_json::from_value(serde_json::json!({
            "equipment_id": "EQ1", "kind": "half_month", "done_at": done_at,
            "person_id": "W1", "confirmed_by_owner": confirmed,
        }))
        .unwrap()
    }

    #[test]
    fn only_confirmed_records_count_and_a_later_unconfirmed_one_waits() {
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        let a = record("2026-03-01", true);
        let b = record("2026-03-16T09:30:00+08:00", false);
        // The registry's date was advanced by record b: b explains it.
        let (counted, awaiting) = counted_maintenance(Some(d("2026-03-16")), &[&a, &b]);
        assert_eq!(counted, Some(d("2026-03-01")));
        assert_eq!(awaiting.as_deref(), Some("2026-03-16T09:30:00+08:00"));
        // The owner confirms b.
        let b = record("2026-03-16T09:30:00+08:00", true);
        assert_eq!(
            counted_maintenance(Some(d("2026-03-16")), &[&a, &b]),
            (Some(d("2026-03-16")), None)
        );
        // A date the registry was given with no record behind it counts.
        assert_eq!(
            counted_maintenance(Some(d("2026-03-20")), &[&a]),
            (Some(d("2026-03-20")), None)
        );
        assert_eq!(counted_maintenance(None, &[]), (None, None));
    }
}
