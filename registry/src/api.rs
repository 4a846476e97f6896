//! The registry's HTTP API (paths relative to `/api/v1`). Handlers take the
//! caller as `Extension<Principal>`, put there by [`crate::auth::require_auth`].
//!
//! The seven entity kinds share one set of generic handlers (list, get,
//! create, replace, delete) over [`Entity`]; only import, maintenance and
//! tokens have their own.

mod error;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router, async_trait};
use serde_json::json;
use vigil_model::{EquipmentId, OwnerId, Region};

use self::error::RawBody;
pub(crate) use self::error::parse_json;
pub use self::error::{ApiError, ApiJson};
use crate::auth::{Principal, TokenRequest};
use crate::entity::*;
use crate::store::{Filters, Registry};
use crate::table::Entity;

/// Import documents can be large (a city's elevators); other bodies keep
/// axum's 2 MiB default.
const IMPORT_BODY_LIMIT: usize = 64 * 1024 * 1024;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// The registry routes, state applied. Wrap them in
/// `middleware::from_fn_with_state(auth, require_auth)` and nest under
/// `/api/v1`.
pub fn router(registry: Arc<Registry>) -> Router {
    let r = Router::new()
        .route(
            "/registry/import",
            post(import).layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .route("/tokens", post(create_token))
        .route("/maintenance", post(post_maintenance).get(list_maintenance));
    let r = crud::<Owner>(r);
    let r = crud::<Maintainer>(r);
    let r = crud::<Equipment>(r);
    let r = crud::<Device>(r);
    let r = crud::<Station>(r);
    let r = crud::<Person>(r);
    let r = crud::<Cylinder>(r);
    r.with_state(registry)
}

type Reg = State<Arc<Registry>>;

fn crud<E: Entity>(r: Router<Arc<Registry>>) -> Router<Arc<Registry>> {
    r.route(&format!("/{}", E::KEY), get(list::<E>).post(create::<E>))
        .route(
            &format!("/{}/:id", E::KEY),
            get(get_one::<E>).put(replace::<E>).delete(delete::<E>),
        )
}

fn admin_only(who: &Principal) -> Result<(), ApiError> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "{} may not change the registry; only admin may",
            who.name()
        )))
    }
}

/// A path id that cannot be an id cannot name anything: 404, like any
/// other missing resource.
fn path_id<E: Entity>(raw: &str) -> Result<E::Id, ApiError> {
    raw.parse()
        .map_err(|_| ApiError::not_found(format!("{} {raw:?} not found", E::NAME)))
}

/// Query pairs as given; repeated and unknown names are refused by the parser.
struct QueryPairs(Vec<(String, String)>);

#[async_trait]
impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Query::<Vec<(String, String)>>::try_from_uri(&parts.uri)
            .map(|Query(pairs)| QueryPairs(pairs))
            .map_err(|e| ApiError::bad_request("invalid_query", e.body_text()))
    }
}

struct ListParams<E: Entity> {
    filters: Filters,
    after: Option<E::Id>,
    limit: usize,
}

fn list_params<E: Entity>(pairs: Vec<(String, String)>) -> Result<ListParams<E>, ApiError> {
    let bad = |m: String| ApiError::bad_request("invalid_query", m);
    let mut p = ListParams::<E> {
        filters: Filters::default(),
        after: None,
        limit: DEFAULT_LIMIT,
    };
    let mut seen = Vec::new();
    for (name, value) in pairs {
        if seen.contains(&name) {
            return Err(bad(format!("query parameter {name} is given twice")));
        }
        seen.push(name.clone());
        let is_filter = matches!(name.as_str(), "region" | "category" | "owner_id" | "status");
        if is_filter && !E::FILTERS.contains(&name.as_str()) {
            let takes = if E::FILTERS.is_empty() {
                "no filters".to_owned()
            } else {
                E::FILTERS.join(", ")
            };
            return Err(bad(format!(
                "filter {name} does not apply to {} (they take {takes})",
                E::KEY
            )));
        }
        match name.as_str() {
            "limit" => {
                p.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "limit: {value:?} is not a number from 1 to {MAX_LIMIT}"
                        ))
                    })?;
            }
            "after" => {
                p.after = Some(value.parse().map_err(|e| bad(format!("after: {e}")))?);
            }
            "region" => {
                p.filters.region =
                    Some(Region::new(&value).map_err(|e| bad(format!("region: {e}")))?)
            }
            "owner_id" => {
                p.filters.owner_id =
                    Some(OwnerId::new(&value).map_err(|e| bad(format!("owner_id: {e}")))?)
            }
            "category" => {
                if !E::CATEGORY_WORDS.contains(&value.as_str()) {
                    return Err(bad(format!(
                        "category: {value:?} is not one of {}",
                        E::CATEGORY_WORDS.join(", ")
                    )));
                }
                p.filters.category = Some(value);
            }
            "status" => {
                if !E::STATUS_WORDS.contains(&value.as_str()) {
                    return Err(bad(format!(
                        "status: {value:?} is not one of {}",
                        E::STATUS_WORDS.join(", ")
                    )));
                }
                p.filters.status = Some(value);
            }
            other => {
                let mut known = vec!["limit", "after"];
                known.extend(E::FILTERS);
                return Err(bad(format!(
                    "unknown query parameter {other} (this list takes {})",
                    known.join(", ")
                )));
            }
        }
    }
    Ok(p)
}

async fn list<E: Entity>(
    State(reg): Reg,
    Extension(who): Extension<Principal>,
    QueryPairs(q): QueryPairs,
) -> Result<Response, ApiError> {
    let p = list_params::<E>(q)?;
    let page = reg.list::<E>(&who, &p.filters, p.after.as_ref(), p.limit);
    Ok(Json(page).into_response())
}

async fn get_one<E: Entity>(
    State(reg): Reg,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<Json<E>, ApiError> {
    let id = path_id::<E>(&id)?;
    // Invisible and missing answer alike, so nothing leaks.
    reg.get::<E>(&who, &id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("{} {:?} not found", E::NAME, id.to_string())))
}

async fn create<E: Entity>(
    State(reg): Reg,
    Extension(who): Extension<Principal>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    admin_only(&who)?;
    let entity: E = parse_json(&body)?;
    let body = entity.clone();
    let secret = reg.create::<E>(entity)?;
    let json = match secret {
        // A new device's secret is shown here once, beside (never inside) the device.
        Some(secret) => json!({ (E::NAME): body, "secret": secret }),
        None => json!(body),
    };
    Ok((StatusCode::CREATED, Json(json)).into_response())
}

async fn replace<E: Entity>(
    State(reg): Reg,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
    RawBody(body): RawBody,
) -> Result<Json<E>, ApiError> {
    admin_only(&who)?;
    let entity: E = parse_json(&body)?;
    let id = path_id::<E>(&id)?;
    reg.update::<E>(&id, entity)?;
    reg.get::<E>(&who, &id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("{} {:?} not found", E::NAME, id.to_string())))
}

async fn delete<E: Entity>(
    State(reg): Reg,
    Extension(who): Extension<Principal>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    admin_only(&who)?;
    let id = path_id::<E>(&id)?;
    reg.delete::<E>(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn import(
    State(reg): Reg,
    Extension(who): Extension<Principal>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    admin_only(&who)?;
    let doc: ImportDoc = parse_json(&body)?;
    let report = reg.import(doc)?;
    Ok(Json(report).into_response())
}

async fn create_token(
    State(reg): Reg,
    Extension(who): Extension<Principal>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    if !who.is_admin() {
        return Err(ApiError::forbidden("only admin may issue tokens"));
    }
    let req: TokenRequest = parse_json(&body)?;
    let issued = reg.create_token(req)?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

/// Admin, or the owner of the equipment (an owner's confirmation).
async fn post_maintenance(
    State(reg): Reg,
    Extension(who): Extension<Principal>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    if !matches!(who, Principal::Admin | Principal::Owner { .. }) {
        return Err(ApiError::forbidden(format!(
            "{} may not record maintenance; admin and owners may",
            who.name()
        )));
    }
    let record: MaintenanceRecord = parse_json(&body)?;
    if let Principal::Owner { owner_id } = &who {
        // Missing and foreign equipment answer alike, so nothing leaks.
        let mine = reg
            .equipment(&record.equipment_id)
            .is_some_and(|e| &e.owner_id == owner_id);
        if !mine {
            return Err(ApiError::forbidden(format!(
                "owner {owner_id} may record maintenance only for its own equipment, and {:?} is not",
                record.equipment_id.as_str()
            )));
        }
    }
    let body = record.clone();
    let created = reg.record_maintenance(record)?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(body)).into_response())
}

/// `GET /maintenance?equipment_id=…`: the records of one visible piece of equipment.
async fn list_maintenance(
    State(reg): Reg,
    Extension(who): Extension<Principal>,
    QueryPairs(q): QueryPairs,
) -> Result<Response, ApiError> {
    let mut equipment = None;
    for (name, value) in q {
        match name.as_str() {
            "equipment_id" => {
                equipment = Some(EquipmentId::new(&value).map_err(|e| {
                    ApiError::bad_request("invalid_query", format!("equipment_id: {e}"))
                })?);
            }
            other => {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("unknown query parameter {other} (this list takes equipment_id)"),
                ));
            }
        }
    }
    let Some(id) = equipment else {
        return Err(ApiError::bad_request(
            "invalid_query",
            "equipment_id is required",
        ));
    };
    if reg.get::<Equipment>(&who, &id).is_none() {
        return Err(ApiError::not_found(format!(
            "equipment {:?} not found",
            id.as_str()
        )));
    }
    Ok(Json(json!({ "items": reg.maintenance_of(&id) })).into_response())
}
