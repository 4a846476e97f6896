//! The registry's HTTP API (paths relative to `/api/v1`). Handlers take the
//! caller as `Extension<Principal>`, put there by [`crate::auth::require_auth`];
//! every write sits behind a [`Gate`] naming the roles that may use it.
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
use axum::routing::{delete as delete_route, get, post, put};
use axum::{Extension, Json, Router, async_trait};
use serde_json::json;
use vigil_model::{EquipmentId, OwnerId, Region};

use self::error::RawBody;
pub(crate) use self::error::parse_json;
pub use self::error::{ApiError, ApiJson};
use crate::auth::{Authenticator, Gate, Principal, TokenId, TokenRequest};
use crate::entity::*;
use crate::store::{Filters, Registry};
use crate::table::Entity;
use crate::types::Role;

/// Import documents can be large (a city's elevators); other bodies keep
/// axum's 2 MiB default.
const IMPORT_BODY_LIMIT: usize = 64 * 1024 * 1024;
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Writes of registry entities.
const CHANGE_REGISTRY: Gate = Gate::admin("change the registry");
const MANAGE_TOKENS: Gate = Gate::admin("issue, list or revoke tokens");
/// Owners confirm maintenance of their own equipment (checked once the
/// record is read).
const RECORD_MAINTENANCE: Gate = Gate::new(&[Role::Admin, Role::Owner], "record maintenance");

/// The registry routes, state applied. Wrap them in
/// `middleware::from_fn_with_state(auth, require_auth)` (the same `auth`)
/// and nest under `/api/v1`.
pub fn router(registry: Arc<Registry>, auth: Arc<Authenticator>) -> Router {
    let r = Router::new()
        .route(
            "/registry/import",
            CHANGE_REGISTRY
                .around(post(import))
                .layer(DefaultBodyLimit::max(IMPORT_BODY_LIMIT)),
        )
        .route(
            "/maintenance",
            RECORD_MAINTENANCE
                .around(post(post_maintenance))
                .merge(get(list_maintenance)),
        );
    let r = crud::<Owner>(r);
    let r = crud::<Maintainer>(r);
    let r = crud::<Equipment>(r);
    let r = crud::<Device>(r);
    let r = crud::<Station>(r);
    let r = crud::<Person>(r);
    let r = crud::<Cylinder>(r);
    let tokens = Router::new()
        .route(
            "/tokens",
            MANAGE_TOKENS.around(post(create_token).get(list_tokens)),
        )
        .route(
            "/tokens/:id",
            MANAGE_TOKENS.around(get(get_token).delete(revoke_token)),
        )
        .with_state(auth);
    r.with_state(registry).merge(tokens)
}

type Reg = State<Arc<Registry>>;

fn crud<E: Entity>(r: Router<Arc<Registry>>) -> Router<Arc<Registry>> {
    r.route(
        &format!("/{}", E::KEY),
        get(list::<E>).merge(CHANGE_REGISTRY.around(post(create::<E>))),
    )
    .route(
        &format!("/{}/:id", E::KEY),
        get(get_one::<E>)
            .merge(CHANGE_REGISTRY.around(put(replace::<E>).merge(delete_route(delete::<E>)))),
    )
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

async fn create<E: Entity>(State(reg): Reg, RawBody(body): RawBody) -> Result<Response, ApiError> {
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
    let entity: E = parse_json(&body)?;
    let id = path_id::<E>(&id)?;
    reg.update::<E>(&id, entity)?;
    reg.get::<E>(&who, &id)
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("{} {:?} not found", E::NAME, id.to_string())))
}

async fn delete<E: Entity>(
    State(reg): Reg,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let id = path_id::<E>(&id)?;
    reg.delete::<E>(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn import(State(reg): Reg, RawBody(body): RawBody) -> Result<Response, ApiError> {
    let doc: ImportDoc = parse_json(&body)?;
    let report = reg.import(doc)?;
    Ok(Json(report).into_response())
}

async fn create_token(
    State(auth): State<Arc<Authenticator>>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let req: TokenRequest = parse_json(&body)?;
    let issued = auth.issue(req)?;
    Ok((StatusCode::CREATED, Json(issued)).into_response())
}

/// `GET /tokens`: every issued token, oldest first; never a token or a hash.
async fn list_tokens(State(auth): State<Arc<Authenticator>>) -> Response {
    Json(json!({ "items": auth.registry().tokens(auth.now()) })).into_response()
}

fn token_id(raw: &str) -> Result<TokenId, ApiError> {
    TokenId::parse(raw).ok_or_else(|| ApiError::not_found(format!("token {raw:?} not found")))
}

async fn get_token(
    State(auth): State<Arc<Authenticator>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = token_id(&id)?;
    auth.registry()
        .token(&id, auth.now())
        .map(|t| Json(t).into_response())
        .ok_or_else(|| ApiError::not_found(format!("token {id} not found")))
}

/// `DELETE /tokens/{id}`: revokes at once (answers the token as it now is).
async fn revoke_token(
    State(auth): State<Arc<Authenticator>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = token_id(&id)?;
    let info = auth.registry().revoke_token(&id, auth.now())?;
    Ok(Json(info).into_response())
}

/// Admin, or the owner of the equipment (an owner's confirmation).
async fn post_maintenance(
    State(reg): Reg,
    Extension(who): Extension<Principal>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
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
