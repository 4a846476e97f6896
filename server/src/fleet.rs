//! The fleet as people look at it: who the caller is (`GET /me`), every
//! piece of equipment and filling station with its position, risk colour,
//! liveness and open alarms (`GET /fleet`), region statistics as the
//! provincial platforms show them (`GET /stats`), and one unit's recent
//! readings (`GET /equipment/{id}/readings`). The console reads these; they
//! are ordinary API routes.
//!
//! Every answer starts from what the caller may see (the registry's
//! visibility rule: regions for supervisors and analysts, one owner for an
//! owner) and is counted only after that, so nothing outside the grant
//! shows, not even as a number. A `region` query narrows the grant; one
//! outside it gives empty answers, as a registry list does.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use vigil_model::{Alarm, Category, EpochMs, EquipmentId, OwnerId, Region, Severity, Stream};
use vigil_registry::api::ApiError;
use vigil_registry::auth::Principal;
use vigil_registry::types::FILLING_STATION_CATEGORY;
use vigil_registry::{EquipmentStatus, Export};

use crate::alarms::AlarmFilter;
use crate::sql::{epoch_rows, lit, time_literal};
use crate::state::AppState;

/// Alarms raised this many days back count in "alarms per 1,000 units".
pub(crate) const ALARM_WINDOW_DAYS: i64 = 30;
/// A device is online when heard within this many report intervals (the
/// default of `device.offline`).
const ONLINE_INTERVALS: i64 = 3;

pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/me", get(me))
        .route("/fleet", get(fleet))
        .route("/stats", get(stats))
        .route("/equipment/:id/readings", get(readings))
}

/// `GET /me`: the caller's role and grant, so a page can say whose view it
/// shows and which actions to offer (the server checks them again).
async fn me(Extension(principal): Extension<Principal>) -> Json<Value> {
    let (regions, owner_id) = match &principal {
        Principal::Admin => (Vec::new(), None),
        Principal::Supervisor { regions } | Principal::Analyst { regions } => {
            (regions.clone(), None)
        }
        Principal::Owner { owner_id } => (Vec::new(), Some(owner_id.clone())),
    };
    Json(json!({
        "role": principal.role(),
        "name": principal.name(),
        "regions": regions,
        "owner_id": owner_id,
        "may_handle_alarms": matches!(principal, Principal::Admin | Principal::Supervisor { .. }),
        "may_query_sql": matches!(principal, Principal::Admin | Principal::Analyst { .. }),
    }))
}

/// One supervised unit: a piece of equipment or a filling station.
#[derive(Debug, Clone, Serialize)]
struct Unit {
    equipment_id: EquipmentId,
    /// `equipment` or `station`.
    kind: &'static str,
    category: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    reg_code: Option<String>,
    owner_id: OwnerId,
    owner_name: Option<String>,
    region: Region,
    address: String,
    lat: Option<f64>,
    lon: Option<f64>,
    /// `in_use` or `stopped` (scrapped equipment is not supervised and not listed).
    status: &'static str,
    next_inspection: Option<NaiveDate>,
    inspection_overdue: bool,
    last_maintenance: Option<NaiveDate>,
    /// Enabled devices bound to it.
    devices: usize,
    /// Some enabled device was heard within its liveness window.
    online: bool,
    last_heard: Option<EpochMs>,
    open_alarms: usize,
    worst_open_severity: Option<Severity>,
    /// From the `risk` view (equipment only; `None` until graded).
    risk_score: Option<f64>,
    risk_colour: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetQuery {
    region: Option<String>,
    category: Option<String>,
}

impl FleetQuery {
    fn region(&self) -> Result<Option<Region>, ApiError> {
        match self.region.as_deref() {
            None | Some("") => Ok(None),
            Some(r) => Region::new(r)
                .map(Some)
                .map_err(|e| ApiError::bad_request("invalid_region", e.to_string())),
        }
    }

    fn category(&self) -> Result<Option<&str>, ApiError> {
        match self.category.as_deref() {
            None | Some("") => Ok(None),
            Some(c) if Category::parse(c).is_some() || c == FILLING_STATION_CATEGORY => Ok(Some(c)),
            Some(c) => Err(ApiError::bad_request(
                "invalid_category",
                format!(
                    "category {c:?} is not one of {}, {FILLING_STATION_CATEGORY}",
                    Category::WORDS.join(", ")
                ),
            )),
        }
    }
}

/// SQL condition for rows of tables with `region` and `owner_id` that the
/// caller may see, narrowed to `region` if given.
fn scope_sql(principal: &Principal, region: Option<&Region>) -> String {
    let mut all: Vec<String> = vigil_storage::scope_condition(principal.grant())
        .into_iter()
        .collect();
    if let Some(r) = region {
        all.push(vigil_storage::region_condition(std::slice::from_ref(r)));
    }
    if all.is_empty() {
        "TRUE".to_owned()
    } else {
        all.join(" AND ")
    }
}

/// When a device was last heard, and whether that is recent enough for it
/// to count as online (`device.offline`'s notion: within 3 report intervals,
/// an interval of 0 counting as 30 s, silence judged only as far as ingest
/// has heard).
fn liveness_of(
    state: &AppState,
    device: &vigil_registry::Device,
    now: EpochMs,
) -> (Option<EpochMs>, bool) {
    let interval = match device.report_interval_s {
        0 => 30,
        s => i64::from(s),
    };
    let heard = state.liveness.heard(&device.device_id);
    let upto = now.min(state.ingest_heard.get());
    (
        heard,
        heard.is_some_and(|t| upto - t <= ONLINE_INTERVALS * interval * 1000),
    )
}

/// The registry's local date now (its dates are days in that offset).
fn today(state: &AppState) -> NaiveDate {
    let now = chrono::DateTime::from_timestamp_millis((state.clock)()).unwrap_or_default();
    now.with_timezone(&state.registry_offset).date_naive()
}

/// The units the caller may see, matching the query, without risk and
/// alarms yet. Ordered by id.
fn visible_units(
    state: &AppState,
    export: &Export,
    principal: &Principal,
    region: Option<&Region>,
    category: Option<&str>,
) -> Vec<Unit> {
    let today = today(state);
    let now = (state.clock)();
    let owner_names: HashMap<&OwnerId, &str> = export
        .owners
        .iter()
        .map(|o| (&o.owner_id, o.name.as_str()))
        .collect();
    // (enabled devices, last heard within the window) per bound unit.
    let mut liveness: HashMap<EquipmentId, (usize, Option<EpochMs>, bool)> = HashMap::new();
    for d in export.devices.iter().filter(|d| d.enabled) {
        let Some(unit) = d
            .equipment_id
            .clone()
            .or_else(|| d.station_id.as_ref().map(|s| s.as_equipment_id().clone()))
        else {
            continue;
        };
        let (heard, online) = liveness_of(state, d, now);
        let entry = liveness.entry(unit).or_insert((0, None, false));
        entry.0 += 1;
        entry.1 = entry.1.max(heard);
        entry.2 |= online;
    }
    let in_scope = |owner: &OwnerId, r: &Region, cat: &str| {
        principal.sees_equipment(owner, r)
            && region.is_none_or(|want| want.covers(r))
            && category.is_none_or(|c| c == cat)
    };
    let mut units = Vec::new();
    for e in &export.equipment {
        if e.status == EquipmentStatus::Scrapped
            || !in_scope(&e.owner_id, &e.region, e.category.as_str())
        {
            continue;
        }
        let (devices, last_heard, online) = liveness
            .get(&e.equipment_id)
            .copied()
            .unwrap_or((0, None, false));
        units.push(Unit {
            equipment_id: e.equipment_id.clone(),
            kind: "equipment",
            category: e.category.as_str().to_owned(),
            reg_code: Some(e.reg_code.clone()),
            owner_id: e.owner_id.clone(),
            owner_name: owner_names.get(&e.owner_id).map(|n| (*n).to_owned()),
            region: e.region,
            address: e.address.clone(),
            lat: e.lat,
            lon: e.lon,
            status: e.status.as_str(),
            next_inspection: Some(e.next_inspection),
            inspection_overdue: e.status == EquipmentStatus::InUse && e.next_inspection < today,
            last_maintenance: e.last_maintenance,
            devices,
            online,
            last_heard,
            open_alarms: 0,
            worst_open_severity: None,
            risk_score: None,
            risk_colour: None,
        });
    }
    for s in &export.stations {
        if !in_scope(&s.owner_id, &s.region, FILLING_STATION_CATEGORY) {
            continue;
        }
        let id = s.station_id.as_equipment_id().clone();
        let (devices, last_heard, online) = liveness.get(&id).copied().unwrap_or((0, None, false));
        units.push(Unit {
            equipment_id: id,
            kind: "station",
            category: FILLING_STATION_CATEGORY.to_owned(),
            reg_code: None,
            owner_id: s.owner_id.clone(),
            owner_name: owner_names.get(&s.owner_id).map(|n| (*n).to_owned()),
            region: s.region,
            address: s.address.clone(),
            lat: None,
            lon: None,
            status: "in_use",
            next_inspection: None,
            inspection_overdue: false,
            last_maintenance: None,
            devices,
            online,
            last_heard,
            open_alarms: 0,
            worst_open_severity: None,
            risk_score: None,
            risk_colour: None,
        });
    }
    units.sort_by(|a, b| a.equipment_id.cmp(&b.equipment_id));
    units
}

/// Open alarms the caller may see, by equipment.
fn open_alarms_by_unit(
    state: &AppState,
    principal: &Principal,
) -> HashMap<EquipmentId, Vec<Alarm>> {
    let mut by_unit: HashMap<EquipmentId, Vec<Alarm>> = HashMap::new();
    for a in state.board.open_alarms(&AlarmFilter::default()) {
        if principal.sees_alarm(&a) {
            by_unit.entry(a.equipment_id.clone()).or_default().push(a);
        }
    }
    by_unit
}

/// The units with their open alarms and risk colours filled in.
async fn graded_units(
    state: &AppState,
    principal: &Principal,
    region: Option<&Region>,
    category: Option<&str>,
) -> Result<Vec<Unit>, ApiError> {
    // The risk view reads the registry's SQL copy; bring it up to date.
    state.registry_sync.ensure().await;
    let export = state.registry.export();
    let mut units = visible_units(state, &export, principal, region, category);
    let open = open_alarms_by_unit(state, principal);
    let risk_rows = epoch_rows(
        &*state.store,
        &state.sql,
        &format!(
            "SELECT equipment_id, score, colour FROM risk WHERE {}",
            scope_sql(principal, region)
        ),
        usize::MAX,
    )
    .await?;
    let risk: HashMap<String, (Option<f64>, Option<String>)> = risk_rows
        .into_iter()
        .filter_map(|row| {
            let id = row.get("equipment_id")?.as_str()?.to_owned();
            let score = row.get("score").and_then(Value::as_f64);
            let colour = row.get("colour").and_then(Value::as_str).map(str::to_owned);
            Some((id, (score, colour)))
        })
        .collect();
    for u in &mut units {
        if let Some(alarms) = open.get(&u.equipment_id) {
            u.open_alarms = alarms.len();
            u.worst_open_severity = alarms.iter().map(|a| a.severity).max();
        }
        if let Some((score, colour)) = risk.get(u.equipment_id.as_str()) {
            u.risk_score = *score;
            u.risk_colour = colour.clone();
        }
    }
    Ok(units)
}

/// `GET /fleet?region=&category=`: every unit the caller may see.
async fn fleet(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<FleetQuery>,
) -> Result<Json<Value>, ApiError> {
    let region = q.region()?;
    let units = graded_units(&state, &principal, region.as_ref(), q.category()?).await?;
    Ok(Json(json!({ "units": units })))
}

/// Counters of one group of units (the whole scope or one ranked region).
#[derive(Debug, Default, Clone, Serialize)]
struct Tally {
    units: usize,
    /// Units with at least one enabled device, and how many of them are online.
    connected: usize,
    online: usize,
    online_rate: Option<f64>,
    /// Equipment in use, and how many of it is past its inspection date.
    in_use: usize,
    inspection_overdue: usize,
    inspection_overdue_rate: Option<f64>,
    open_alarms: usize,
    open_alarms_per_1000: Option<f64>,
    /// Alarms raised in the last `ALARM_WINDOW_DAYS` days.
    alarms: usize,
    alarms_per_1000: Option<f64>,
}

impl Tally {
    fn add(&mut self, u: &Unit, alarms_in_window: usize) {
        self.units += 1;
        if u.devices > 0 {
            self.connected += 1;
            self.online += usize::from(u.online);
        }
        if u.kind == "equipment" && u.status == "in_use" {
            self.in_use += 1;
            self.inspection_overdue += usize::from(u.inspection_overdue);
        }
        self.open_alarms += u.open_alarms;
        self.alarms += alarms_in_window;
    }

    fn finish(mut self) -> Tally {
        let rate = |n: usize, of: usize| (of > 0).then(|| n as f64 / of as f64);
        let per_1000 = |n: usize, of: usize| (of > 0).then(|| n as f64 * 1000.0 / of as f64);
        self.online_rate = rate(self.online, self.connected);
        self.inspection_overdue_rate = rate(self.inspection_overdue, self.in_use);
        self.open_alarms_per_1000 = per_1000(self.open_alarms, self.units);
        self.alarms_per_1000 = per_1000(self.alarms, self.units);
        self
    }
}

/// The level units are ranked at: one below the narrowest area that holds
/// them all.
fn ranking_level(units: &[Unit]) -> &'static str {
    let first = match units.first() {
        Some(u) => u.region,
        None => return "county",
    };
    if units.iter().all(|u| u.region.city() == first.city()) {
        "county"
    } else if units
        .iter()
        .all(|u| u.region.province() == first.province())
    {
        "city"
    } else {
        "province"
    }
}

fn ranked_region(level: &str, r: &Region) -> Region {
    match level {
        "county" => *r,
        "city" => r.city(),
        _ => r.province(),
    }
}

/// `GET /stats?region=&category=`: equipment by category, online rate,
/// inspection-overdue rate, alarms per 1,000 units, a ranking of the
/// counties (cities, provinces) inside the scope, and owners by class.
async fn stats(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<FleetQuery>,
) -> Result<Json<Value>, ApiError> {
    let region = q.region()?;
    let category = q.category()?;
    let units = graded_units(&state, &principal, region.as_ref(), category).await?;
    let now = (state.clock)();
    let since = now - ALARM_WINDOW_DAYS * 86_400_000;
    let alarm_rows = epoch_rows(
        &*state.store,
        &state.sql,
        &format!(
            "SELECT equipment_id, count(*) AS n FROM alarms WHERE raised_at >= {} AND {} GROUP BY equipment_id",
            time_literal(since)?,
            scope_sql(&principal, region.as_ref())
        ),
        usize::MAX,
    )
    .await?;
    let raised: HashMap<String, usize> = alarm_rows
        .iter()
        .filter_map(|row| {
            Some((
                row.get("equipment_id")?.as_str()?.to_owned(),
                row.get("n")?.as_u64()? as usize,
            ))
        })
        .collect();

    let mut total = Tally::default();
    let mut by_category: BTreeMap<&str, usize> = BTreeMap::new();
    let mut by_colour: BTreeMap<&str, usize> = BTreeMap::new();
    let level = ranking_level(&units);
    let mut ranking: BTreeMap<Region, Tally> = BTreeMap::new();
    for u in &units {
        let n = raised.get(u.equipment_id.as_str()).copied().unwrap_or(0);
        total.add(u, n);
        ranking
            .entry(ranked_region(level, &u.region))
            .or_default()
            .add(u, n);
        *by_category.entry(u.category.as_str()).or_default() += 1;
        if let Some(c) = &u.risk_colour {
            *by_colour.entry(c.as_str()).or_default() += 1;
        }
    }
    let mut ranking: Vec<Value> = ranking
        .into_iter()
        .map(|(r, t)| {
            let mut row = serde_json::to_value(t.finish()).unwrap_or_default();
            row["region"] = json!(r);
            row
        })
        .collect();
    // Worst first: most alarms per 1,000 units, then most units.
    let key = |v: &Value, k: &str| v[k].as_f64().unwrap_or(0.0);
    ranking.sort_by(|a, b| {
        key(b, "alarms_per_1000")
            .total_cmp(&key(a, "alarms_per_1000"))
            .then(key(b, "units").total_cmp(&key(a, "units")))
    });

    let owners = owner_classes(&state, &principal, region.as_ref()).await?;
    let mut classes: BTreeMap<String, usize> = ["A", "B", "C", "D"]
        .iter()
        .map(|c| ((*c).to_owned(), 0))
        .collect();
    for o in &owners {
        if let Some(c) = o.get("class").and_then(Value::as_str) {
            *classes.entry(c.to_owned()).or_default() += 1;
        }
    }
    Ok(Json(json!({
        "region": region,
        "category": category,
        "generated_at": now,
        "alarm_window_days": ALARM_WINDOW_DAYS,
        "totals": total.finish(),
        "by_category": by_category,
        "by_colour": by_colour,
        "ranking": {"level": level, "rows": ranking},
        "owner_classes": classes,
        "owners": owners.into_iter().take(20).map(Value::Object).collect::<Vec<_>>(),
    })))
}

/// Rows of `owner_risk` the caller may see (an owner by its registered
/// region, as `GET /owners/{id}/risk` decides), worst first.
async fn owner_classes(
    state: &AppState,
    principal: &Principal,
    region: Option<&Region>,
) -> Result<Vec<Map<String, Value>>, ApiError> {
    let rows = epoch_rows(
        &*state.store,
        &state.sql,
        &format!(
            "SELECT owner_id, name, region, equipment, red, orange, yellow, blue, mean_score, class \
             FROM owner_risk WHERE {} ORDER BY class DESC, mean_score DESC, owner_id",
            scope_sql(principal, region)
        ),
        usize::MAX,
    )
    .await?;
    Ok(rows)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadingsQuery {
    minutes: Option<i64>,
    limit: Option<usize>,
}

/// Where a category's readings are, and the columns a chart needs.
fn readings_table(category: &str) -> Option<(&'static str, &'static str)> {
    let stream = match Category::parse(category) {
        Some(c) => c.sample_stream()?,
        None if category == FILLING_STATION_CATEGORY => Stream::Filling,
        None => return None,
    };
    let columns = match stream {
        Stream::Elevator => {
            "ts, seq, floor, direction, speed_mps, door, leveled, occupied, mode, load_pct, run_count"
        }
        Stream::Ride => {
            "ts, seq, state, speed_mps, wind_mps, vibration_mm_s, passengers, brake, restraints_locked"
        }
        Stream::Filling => {
            "ts, seq, cylinder_code, operator_id, medium, tare_kg, net_kg, pressure_mpa, temp_c, result"
        }
        Stream::Video | Stream::Event => return None,
    };
    Some((vigil_storage::readings_table(stream), columns))
}

/// `GET /equipment/{id}/readings?minutes=60&limit=1000`: the unit's recent
/// samples (equipment) or filling records (a station id), oldest first.
async fn readings(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    Query(q): Query<ReadingsQuery>,
) -> Result<Json<Value>, ApiError> {
    let id = EquipmentId::new(&id)
        .map_err(|e| ApiError::bad_request("invalid_equipment_id", e.to_string()))?;
    let minutes = q.minutes.unwrap_or(60);
    if !(1..=10_080).contains(&minutes) {
        return Err(ApiError::bad_request(
            "invalid_minutes",
            "minutes must be from 1 to 10080 (a week)",
        ));
    }
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "limit must be from 1 to 10000",
        ));
    }
    let not_found = || ApiError::not_found(format!("no equipment {id}"));
    let category = if let Some(e) = state.registry.equipment(&id) {
        if !principal.sees_equipment(&e.owner_id, &e.region) {
            return Err(not_found());
        }
        e.category.as_str().to_owned()
    } else if let Some(s) = state.registry.station(id.as_str()) {
        if !principal.sees_equipment(&s.owner_id, &s.region) {
            return Err(not_found());
        }
        FILLING_STATION_CATEGORY.to_owned()
    } else {
        return Err(not_found());
    };
    let since = (state.clock)() - minutes * 60_000;
    let Some((table, columns)) = readings_table(&category) else {
        return Ok(Json(json!({
            "equipment_id": id, "category": category, "table": null, "since": since,
            "readings": [], "truncated": false,
        })));
    };
    let mut rows = epoch_rows(
        &*state.store,
        &state.sql,
        &format!(
            "SELECT {columns} FROM {table} WHERE equipment_id = {} AND ts >= {} ORDER BY ts DESC, seq DESC LIMIT {}",
            lit(id.as_str()),
            time_literal(since)?,
            limit + 1
        ),
        limit + 1,
    )
    .await?;
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    rows.reverse();
    Ok(Json(json!({
        "equipment_id": id,
        "category": category,
        "table": table,
        "since": since,
        "readings": rows.into_iter().map(Value::Object).collect::<Vec<_>>(),
        "truncated": truncated,
    })))
}

/// Gauges read at every scrape: devices online and rule queue depth.
pub(crate) fn observe_metrics(state: &AppState) {
    let now = (state.clock)();
    let export = state.registry.export();
    let online = export
        .devices
        .iter()
        .filter(|d| d.enabled)
        .filter(|d| liveness_of(state, d, now).1)
        .count();
    state.engine_metrics.devices_online.set(online as i64);
    state
        .engine_metrics
        .rule_queue_depth
        .set(state.shards.queued() as i64);
}
