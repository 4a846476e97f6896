//! The HTTP API: the registry's routes plus alarms, the live feed, SQL,
//! equipment status, metrics and health. Every `/api/v1` route needs a
//! bearer token; a route that acts or reads a body sits behind a role
//! [`Gate`], checked before the body is read; what a principal sees is cut
//! to its grant before anything is counted or returned. A revoked token's
//! running requests and open streams end at once (`require_auth`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router, middleware};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio_stream::wrappers::BroadcastStream;
use vigil_model::{Alarm, AlarmId, AlarmState, EquipmentId, Grant, OwnerId, Region};
use vigil_registry::Role;
use vigil_registry::api::{ApiError, ApiJson};
use vigil_registry::auth::{Authenticator, Gate, Principal, require_auth};
use vigil_rules::AlarmOpError;

use crate::alarms::AlarmFilter;
use crate::sql;
use crate::state::{AlarmOpFailure, AppState};
use vigil_storage::AlarmQuery as StoredAlarms;

const HANDLE_ALARMS: Gate = Gate::new(
    &[Role::Admin, Role::Supervisor],
    "acknowledge or resolve alarms",
);
const QUERY_SQL: Gate = Gate::new(&[Role::Admin, Role::Supervisor, Role::Analyst], "run SQL");
/// Replay reads every region's readings.
const REPLAY_RULES: Gate = Gate::admin("replay rules");
const RELOAD_RULES: Gate = Gate::admin("reload rules");

pub fn router(state: Arc<AppState>, auth: Arc<Authenticator>) -> Router {
    let state_console = state.console.clone();
    let engine_routes = Router::new()
        .route("/alarms", get(list_alarms))
        .route("/alarms/stream", get(alarm_stream))
        .route("/alarms/:id", get(get_alarm))
        .route("/alarms/:id/ack", HANDLE_ALARMS.around(post(acknowledge)))
        .route("/alarms/:id/resolve", HANDLE_ALARMS.around(post(resolve)))
        .route("/sql", QUERY_SQL.around(post(run_sql)))
        .route("/rules/replay", REPLAY_RULES.around(post(replay_rules)))
        .route("/rules/reload", RELOAD_RULES.around(post(reload_rules)))
        .route("/equipment/:id/status", get(equipment_status))
        .route("/equipment/:id/risk", get(equipment_risk))
        .route("/owners/:id/risk", get(owner_risk))
        .merge(crate::fleet::routes())
        .with_state(Arc::clone(&state));
    let api = vigil_registry::api::router(Arc::clone(&state.registry), Arc::clone(&auth))
        .merge(engine_routes)
        .merge(crate::certs::routes(Arc::clone(&state)))
        .layer(middleware::from_fn_with_state(auth, require_auth));
    let ops = Router::new()
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state);
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(|| async { "ok\n" }))
        .merge(ops)
        .merge(crate::console::router(&state_console))
}

#[derive(Debug, Deserialize)]
struct AlarmQuery {
    state: Option<String>,
    region: Option<String>,
    category: Option<String>,
    equipment_id: Option<String>,
    since: Option<i64>,
    limit: Option<usize>,
}

impl AlarmQuery {
    fn filter(&self) -> Result<AlarmFilter, ApiError> {
        let states = match self.state.as_deref() {
            None | Some("") => None,
            Some("open") => Some(vec![AlarmState::Active, AlarmState::Acknowledged]),
            Some(list) => Some(
                list.split(',')
                    .map(|s| {
                        AlarmState::parse(s.trim()).ok_or_else(|| {
                            ApiError::bad_request(
                                "invalid_state",
                                format!(
                                    "state {s:?} is not one of active, acknowledged, cleared, open"
                                ),
                            )
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?,
            ),
        };
        let regions = match self.region.as_deref() {
            None | Some("") => None,
            Some(r) => {
                Some(vec![Region::new(r).map_err(|e| {
                    ApiError::bad_request("invalid_region", e.to_string())
                })?])
            }
        };
        if let Some(c) = &self.category
            && (c.is_empty() || !c.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        {
            return Err(ApiError::bad_request(
                "invalid_category",
                format!("category {c:?} is not a category word"),
            ));
        }
        if let Some(e) = &self.equipment_id {
            EquipmentId::new(e)
                .map_err(|e| ApiError::bad_request("invalid_equipment_id", e.to_string()))?;
        }
        Ok(AlarmFilter {
            states,
            regions,
            category: self.category.clone(),
            equipment_id: self.equipment_id.clone(),
            since: self.since,
        })
    }
}

/// `GET /alarms`: open alarms come from the board (exactly current); any
/// other state comes from the store's `alarms` view.
async fn list_alarms(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<AlarmQuery>,
) -> Result<Json<Value>, ApiError> {
    let filter = q.filter()?;
    let grant = principal.grant();
    let limit = q.limit.unwrap_or(1000).clamp(1, 10_000);
    let only_open = filter
        .states
        .as_ref()
        .is_some_and(|s| s.iter().all(|s| s.is_open()));
    let alarms: Vec<Alarm> = if only_open {
        state
            .board
            .open_alarms(&filter)
            .into_iter()
            .filter(|a| grant.sees_alarm(a))
            .take(limit)
            .collect()
    } else {
        let query = StoredAlarms {
            filter,
            grant,
            alarm_id: None,
            limit,
        };
        sql::stored_alarms(&*state.store, &state.sql, &query).await?
    };
    Ok(Json(json!({ "alarms": alarms })))
}

async fn find_alarm(state: &AppState, id: &AlarmId, grant: Grant<'_>) -> Result<Alarm, ApiError> {
    let found = match state.board.get(id) {
        Some(a) => Some(a),
        None => sql::stored_alarm(&*state.store, &state.sql, id).await?,
    };
    match found {
        Some(a) if grant.sees_alarm(&a) => Ok(a),
        // Someone else's alarm is as absent as a missing one.
        _ => Err(ApiError::not_found(format!("no alarm {id}"))),
    }
}

fn alarm_id(raw: &str) -> Result<AlarmId, ApiError> {
    AlarmId::new(raw).map_err(|e| ApiError::bad_request("invalid_alarm_id", e.to_string()))
}

async fn get_alarm(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Alarm>, ApiError> {
    let id = alarm_id(&id)?;
    Ok(Json(find_alarm(&state, &id, principal.grant()).await?))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlarmAction {
    note: Option<String>,
}

fn op_error(e: AlarmOpFailure) -> ApiError {
    match e {
        AlarmOpFailure::Rule(AlarmOpError::NotFound(id)) => {
            ApiError::not_found(format!("no open alarm {id}"))
        }
        AlarmOpFailure::Rule(AlarmOpError::AlreadyCleared(id)) => {
            ApiError::conflict(format!("alarm {id} is already cleared"))
        }
        AlarmOpFailure::Stopping => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "stopping",
            "the engine is shutting down",
        ),
    }
}

async fn acknowledge(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Alarm>, ApiError> {
    let id = alarm_id(&id)?;
    let alarm = find_alarm(&state, &id, principal.grant()).await?;
    if !alarm.state.is_open() {
        return Err(ApiError::conflict(format!("alarm {id} is already cleared")));
    }
    let changed = state
        .shards
        .acknowledge(&alarm.equipment_id, id, principal.name())
        .await
        .map_err(op_error)?;
    Ok(Json(changed))
}

async fn resolve(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Option<ApiJson<AlarmAction>>,
) -> Result<Json<Alarm>, ApiError> {
    let id = alarm_id(&id)?;
    let alarm = find_alarm(&state, &id, principal.grant()).await?;
    let note = body
        .and_then(|ApiJson(b)| b.note)
        .map(|n| n.trim().to_owned())
        .unwrap_or_default();
    if note.is_empty() {
        return Err(ApiError::bad_request(
            "missing_note",
            "field `note` is required: say how the alarm was handled",
        ));
    }
    if note.len() > 4096 {
        return Err(ApiError::bad_request(
            "note_too_long",
            "field `note` is longer than 4096 bytes",
        ));
    }
    if !alarm.state.is_open() {
        return Err(ApiError::conflict(format!("alarm {id} is already cleared")));
    }
    let changed = state
        .shards
        .resolve(&alarm.equipment_id, id, principal.name(), note)
        .await
        .map_err(op_error)?;
    Ok(Json(changed))
}

/// `GET /alarms/stream`: first every open alarm the reader may see, then an
/// event `synced` (`{"open": n}`: the snapshot is complete, so a reader that
/// reconnects can replace what it had), then every change as it happens.
/// Event name `alarm`, id `{alarm_id}:{version}`.
async fn alarm_stream(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Query(q): Query<AlarmQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let filter = q.filter()?;
    let grant = principal.grant();
    // Subscribe before taking the snapshot so nothing falls between them.
    let live = BroadcastStream::new(state.board.subscribe());
    let mut snapshot_filter = filter.clone();
    snapshot_filter.states = Some(vec![AlarmState::Active, AlarmState::Acknowledged]);
    let snapshot: Vec<Alarm> = state
        .board
        .open_alarms(&snapshot_filter)
        .into_iter()
        .filter(|a| grant.sees_alarm(a))
        .collect();
    let gauge = state.engine_metrics.sse_clients.clone();
    gauge.inc();
    let guard = GaugeGuard(gauge);
    let mut stopping = state.stopping.clone();
    let live = live.filter_map(move |item| {
        let _keep = &guard;
        let event = match item {
            Ok(alarm) if filter.matches(&alarm) && principal.sees_alarm(&alarm) => {
                Some(alarm_event(&alarm))
            }
            Ok(_) => None,
            Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => Some(
                Event::default()
                    .event("lagged")
                    .data(json!({"missed": n}).to_string()),
            ),
        };
        async move { event.map(Ok) }
    });
    let synced = Event::default()
        .event("synced")
        .data(json!({"open": snapshot.len()}).to_string());
    let stream = stream::iter(snapshot.into_iter().map(|a| Ok(alarm_event(&a))))
        .chain(stream::once(async move { Ok(synced) }))
        .chain(live)
        .take_until(async move {
            let _ = stopping.wait_for(|s| *s).await;
        });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}

struct GaugeGuard(prometheus::IntGauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn alarm_event(alarm: &Alarm) -> Event {
    Event::default()
        .event("alarm")
        .id(format!("{}:{}", alarm.alarm_id, alarm.version))
        .data(serde_json::to_string(alarm).unwrap_or_default())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
}

async fn run_sql(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SqlRequest>,
) -> Result<Response, ApiError> {
    // Supervisors and analysts alike read only their regions.
    let regions = match principal.grant() {
        Grant::All => None,
        Grant::Regions(regions) => Some(regions.to_vec()),
        Grant::Owner(_) => {
            return Err(ApiError::forbidden(
                "SQL is for the admin, supervisor and analyst roles",
            ));
        }
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let format = sql::Format::from_accept(accept);
    let result = sql::run(
        &*state.store,
        &state.sql,
        &state.registry_sync,
        state.stopping.clone(),
        &req.sql,
        regions,
    )
    .await;
    // "ok" or the error's code (sql_timeout, sql_memory, sql_busy, …): a small, fixed set.
    let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "ok");
    state
        .engine_metrics
        .sql_queries
        .with_label_values(&[outcome])
        .inc();
    let output = result?;
    sql::render(&output, format, state.sql.max_bytes)
}

/// The equipment `id` names, if `principal` may see it; equipment outside
/// their regions is "not found", as equipment that does not exist.
fn visible_equipment(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<(EquipmentId, vigil_registry::Equipment), ApiError> {
    let id = EquipmentId::new(id)
        .map_err(|e| ApiError::bad_request("invalid_equipment_id", e.to_string()))?;
    let not_found = || ApiError::not_found(format!("no equipment {id}"));
    let equipment = state.registry.equipment(&id).ok_or_else(not_found)?;
    if !principal.sees_equipment(&equipment.owner_id, &equipment.region) {
        return Err(not_found());
    }
    Ok((id, equipment))
}

async fn equipment_status(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (id, equipment) = visible_equipment(&state, &principal, &id)?;
    let filter = AlarmFilter {
        equipment_id: Some(id.to_string()),
        ..AlarmFilter::default()
    };
    let open = state.board.open_alarms(&filter);
    let latest = sql::latest_reading(&*state.store, &state.sql, &id).await?;
    let today = chrono::Utc::now().date_naive();
    let days_left = (equipment.next_inspection - today).num_days();
    Ok(Json(json!({
        "equipment": equipment,
        "latest_reading": latest,
        "open_alarms": open,
        "inspection": {
            "next_inspection": equipment.next_inspection,
            "days_left": days_left,
            "overdue": days_left < 0,
        },
        "maintenance": { "last_maintenance": equipment.last_maintenance },
    })))
}

/// The one row of a risk view `sql` selects. The registry reaches SQL a
/// moment after an import; until then `what` has no row.
async fn graded_row(
    state: &AppState,
    sql: &str,
    what: &str,
) -> Result<Map<String, Value>, ApiError> {
    sql::epoch_rows(&*state.store, &state.sql, sql, 1)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                format!("{what} is not graded yet; try again in a second"),
            )
        })
}

/// `GET /equipment/{id}/risk`: its row of the `risk` view.
async fn equipment_risk(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let (id, _) = visible_equipment(&state, &principal, &id)?;
    let sql = format!(
        "SELECT * FROM risk WHERE equipment_id = {}",
        sql::lit(id.as_str())
    );
    let row = graded_row(&state, &sql, &format!("equipment {id}")).await?;
    Ok(Json(Value::Object(row)))
}

/// `GET /owners/{id}/risk`: the owner's class and its equipment's colours.
async fn owner_risk(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id =
        OwnerId::new(&id).map_err(|e| ApiError::bad_request("invalid_owner_id", e.to_string()))?;
    let not_found = || ApiError::not_found(format!("no owner {id}"));
    let owner = state.registry.owner(&id).ok_or_else(not_found)?;
    // An owner by its registered region (docs/risk.md).
    if !principal.grant().sees(&id, &owner.region) {
        return Err(not_found());
    }
    let owner_sql = format!(
        "SELECT * FROM owner_risk WHERE owner_id = {}",
        sql::lit(id.as_str())
    );
    let mut row = graded_row(&state, &owner_sql, &format!("owner {id}")).await?;
    let equipment = sql::epoch_rows(
        &*state.store,
        &state.sql,
        &format!(
            "SELECT equipment_id, region, category, score, colour FROM risk WHERE owner_id = {} ORDER BY score DESC, equipment_id",
            sql::lit(id.as_str())
        ),
        state.sql.max_rows,
    )
    .await?;
    row.insert(
        "equipment_risk".into(),
        Value::Array(equipment.into_iter().map(Value::Object).collect()),
    );
    Ok(Json(Value::Object(row)))
}

/// `POST /rules/replay` (admin): what the rules would have raised on the
/// stored readings of a time range, with the running or a given `[rules]`.
async fn replay_rules(
    State(state): State<Arc<AppState>>,
    ApiJson(req): ApiJson<crate::replay::ReplayRequest>,
) -> Result<Json<Value>, ApiError> {
    let config = crate::replay::config_of(&req, &state.rules.current())?;
    let done =
        crate::replay::replay(&*state.store, &state.sql, &state.registry, &req, config).await?;
    Ok(Json(json!({
        "from": req.from,
        "to": req.to,
        "readings": done.readings,
        "alarms": done.alarms,
    })))
}

/// `POST /rules/reload` (admin): re-reads the rule file, as SIGHUP does.
/// A file that does not check is refused (422, with file, line and what is
/// wrong) and the running rules stay.
async fn reload_rules(State(state): State<Arc<AppState>>) -> Result<Json<Value>, ApiError> {
    let config = state
        .rules
        .reload(&state.shards, &state.engine_metrics)
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_rules",
                format!("{e:#}; the running rules stay"),
            )
        })?;
    Ok(Json(json!({
        "file": state.rules.file().map(|p| p.display().to_string()),
        "defined": config.defined_rules().into_iter().map(|r| r.id).collect::<Vec<_>>(),
    })))
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    match state.store.health().and_then(|()| (state.ingest_health)()) {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.engine_metrics.observe_store(state.store.as_ref());
    crate::fleet::observe_metrics(&state);
    let families = state.metrics.gather();
    let mut body = String::new();
    match prometheus::TextEncoder::new().encode_utf8(&families, &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}
