//! Bearer tokens and the roles of registry.md.
//!
//! A request carries `Authorization: Bearer <token>`; [`require_auth`] turns
//! it into a [`Principal`] (the configured admin token, or a token the
//! registry issued and keeps as a SHA-256 hash) and puts it into the
//! request's extensions, where handlers take it as `Extension<Principal>`.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use vigil_model::{OwnerId, Region};

use crate::api::ApiError;
use crate::store::{Registry, ct_eq};
use crate::types::Role;

/// Who is asking, and so what they may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Admin,
    /// Reads equipment, devices and owners inside its regions.
    Supervisor {
        regions: Vec<Region>,
    },
    /// Reads its own equipment; records maintenance for it.
    Owner {
        owner_id: OwnerId,
    },
    /// Reads (and queries SQL) inside its regions.
    Analyst {
        regions: Vec<Region>,
    },
}

impl Principal {
    /// Whether a region-scoped grant covers `r` (a grant covers its
    /// sub-regions). Owners are not region-scoped: always false for them,
    /// use [`Principal::sees_equipment`].
    pub fn sees_region(&self, r: &Region) -> bool {
        match self {
            Principal::Admin => true,
            Principal::Supervisor { regions } | Principal::Analyst { regions } => {
                regions.iter().any(|g| g.covers(r))
            }
            Principal::Owner { .. } => false,
        }
    }

    /// Whether this principal may read equipment of `owner` in `region`.
    pub fn sees_equipment(&self, owner: &OwnerId, region: &Region) -> bool {
        match self {
            Principal::Owner { owner_id } => owner_id == owner,
            _ => self.sees_region(region),
        }
    }

    /// A short label for logs: `admin`, `supervisor[440700,440100]`, `owner[O1]`.
    pub fn name(&self) -> String {
        let list = |rs: &[Region]| rs.iter().map(Region::as_str).collect::<Vec<_>>().join(",");
        match self {
            Principal::Admin => "admin".to_owned(),
            Principal::Supervisor { regions } => format!("supervisor[{}]", list(regions)),
            Principal::Owner { owner_id } => format!("owner[{owner_id}]"),
            Principal::Analyst { regions } => format!("analyst[{}]", list(regions)),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }

    pub fn role(&self) -> Role {
        match self {
            Principal::Admin => Role::Admin,
            Principal::Supervisor { .. } => Role::Supervisor,
            Principal::Owner { .. } => Role::Owner,
            Principal::Analyst { .. } => Role::Analyst,
        }
    }
}

/// `POST /tokens` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    /// A label for people (who holds the token); not unique.
    pub name: String,
    pub role: Role,
    /// Required for supervisor and analyst, empty otherwise.
    #[serde(default)]
    pub regions: Vec<Region>,
    /// Required for owner, absent otherwise.
    #[serde(default)]
    pub owner_id: Option<OwnerId>,
}

/// A new token: shown once, stored only as its hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub name: String,
    pub role: Role,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<OwnerId>,
}

/// Turns bearer tokens into principals.
pub struct Authenticator {
    admin_token: Option<String>,
    registry: Arc<Registry>,
}

impl Authenticator {
    /// `admin_token` is the operator's configured token (an empty one is
    /// ignored); every other token comes from the registry.
    pub fn new(admin_token: Option<String>, registry: Arc<Registry>) -> Self {
        Self {
            admin_token: admin_token.filter(|t| !t.is_empty()),
            registry,
        }
    }

    pub fn authenticate(&self, bearer: &str) -> Option<Principal> {
        if bearer.is_empty() {
            return None;
        }
        if let Some(admin) = &self.admin_token
            && ct_eq(admin.as_bytes(), bearer.as_bytes())
        {
            return Some(Principal::Admin);
        }
        self.registry.principal_for_token(bearer)
    }
}

/// axum middleware: reads `Authorization: Bearer …`, answers 401 JSON if it
/// is missing or unknown, else inserts the [`Principal`] into the request's
/// extensions.
pub async fn require_auth(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let bearer = req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let Some(bearer) = bearer else {
        return ApiError::unauthorized("missing bearer token: send Authorization: Bearer <token>")
            .into_response();
    };
    match auth.authenticate(&bearer) {
        Some(principal) => {
            req.extensions_mut().insert(principal);
            next.run(req).await
        }
        None => {
            tracing::debug!(path = %req.uri().path(), "Request refused: unknown bearer token.");
            ApiError::unauthorized("unknown bearer token").into_response()
        }
    }
}
