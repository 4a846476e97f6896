//! Bearer tokens, the roles of registry.md, and the gates in front of every
//! route.
//!
//! A request carries `Authorization: Bearer <token>`; [`require_auth`] turns
//! it into a [`Principal`] (the configured admin token, or a token the
//! registry issued and keeps as a SHA-256 hash) and a [`Credential`] (which
//! token it was), and puts both into the request's extensions, where
//! handlers take them as `Extension<…>`. An issued token has an expiry and
//! can be revoked; from that moment [`require_auth`] refuses it, cuts a
//! request of it still running, and ends a response it is still streaming
//! (the SSE feed).
//!
//! Roles are checked by a [`Gate`] around each route, before any extractor
//! runs: the body extractors ([`crate::api::ApiJson`]) refuse to read a body
//! that no gate has passed, so a forbidden caller gets 403 whatever it sent.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use vigil_model::{Alarm, EpochMs, Grant, OwnerId, Region};

use crate::api::ApiError;
use crate::store::Registry;
use crate::store::secrets::ct_eq;
use crate::types::Role;

/// Now, injected so tests control expiry.
pub use vigil_model::Clock;

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
    /// What this principal may see (model's one access rule).
    pub fn grant(&self) -> Grant<'_> {
        match self {
            Principal::Admin => Grant::All,
            Principal::Supervisor { regions } | Principal::Analyst { regions } => {
                Grant::Regions(regions)
            }
            Principal::Owner { owner_id } => Grant::Owner(owner_id),
        }
    }

    /// Whether a region-scoped grant covers `r` (a grant covers its
    /// sub-regions). Owners are not region-scoped: always false for them,
    /// use [`Principal::sees_equipment`].
    pub fn sees_region(&self, r: &Region) -> bool {
        self.grant().sees_region(r)
    }

    /// Whether this principal may read equipment of `owner` in `region`.
    pub fn sees_equipment(&self, owner: &OwnerId, region: &Region) -> bool {
        self.grant().sees(owner, region)
    }

    /// Whether this principal may read `alarm`.
    pub fn sees_alarm(&self, alarm: &Alarm) -> bool {
        self.grant().sees_alarm(alarm)
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

/// The public name of an issued token: `tok_` and 16 hex digits. It is not
/// the token and says nothing about it; lists and revocation use it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenId(String);

impl TokenId {
    pub(crate) fn random() -> TokenId {
        TokenId(format!(
            "tok_{}",
            hex::encode(crate::store::secrets::random_bytes::<8>())
        ))
    }

    /// The id of a token stored before tokens had ids: derived from (not
    /// equal to, and not revealing) its hash, so it is the same on every
    /// start.
    pub(crate) fn derived(sha256: &str) -> TokenId {
        use sha2::Digest;
        let d = sha2::Sha256::digest(format!("vigil token id\0{sha256}").as_bytes());
        TokenId(format!("tok_{}", hex::encode(&d[..8])))
    }

    pub fn parse(s: &str) -> Option<TokenId> {
        let hex = s.strip_prefix("tok_")?;
        (hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| TokenId(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Display for TokenId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which token a request came with; a revocation of that token ends what
/// the request opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// The operator's configured admin token: never expires, cannot be
    /// revoked (change the configuration and restart).
    ConfiguredAdmin,
    Issued(TokenId),
}

/// Why a bearer token was refused. The messages go to the client: they
/// name the token's fate, never anything of the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    Expired { at: EpochMs },
    Revoked { at: EpochMs },
}

impl Refusal {
    pub fn message(&self) -> String {
        let when = |ms: EpochMs| {
            DateTime::<Utc>::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_else(|| ms.to_string())
        };
        match self {
            Refusal::Unknown => "unknown bearer token".to_owned(),
            Refusal::Expired { at } => format!(
                "bearer token expired at {}; ask an admin for a new one",
                when(*at)
            ),
            Refusal::Revoked { at } => format!("bearer token was revoked at {}", when(*at)),
        }
    }
}

/// How long issued tokens live: `expires_in_s` of a request, or the
/// default; never more than the maximum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenPolicy {
    pub default_ttl: Duration,
    pub max_ttl: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        TokenPolicy {
            default_ttl: Duration::from_secs(90 * 86_400),
            max_ttl: Duration::from_secs(365 * 86_400),
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
    /// Lifetime in seconds, 1 to the configured maximum; absent: the
    /// configured default.
    #[serde(default)]
    pub expires_in_s: Option<u64>,
}

/// A new token: shown once, stored only as its hash.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<OwnerId>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// What `GET /tokens` shows of a token: everything but the token and its
/// hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenInfo {
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<Region>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner_id: Option<OwnerId>,
    pub created_at: DateTime<Utc>,
    /// `null` only for tokens issued before tokens expired.
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Last request with this token since the engine started (not kept
    /// across restarts).
    pub last_used_at: Option<DateTime<Utc>>,
    /// `active`, `expired` or `revoked`.
    pub status: String,
}

/// A token that checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub principal: Principal,
    pub credential: Credential,
}

/// Turns bearer tokens into principals, issues tokens, and tells when a
/// token stops being valid.
pub struct Authenticator {
    admin_token: Option<String>,
    registry: Arc<Registry>,
    clock: Clock,
    policy: TokenPolicy,
}

/// Resolves when a credential stops being valid, with the reason.
pub type Invalidated = Pin<Box<dyn Future<Output = Refusal> + Send>>;

/// However far away an expiry is, validity is looked at again this often
/// (the injected clock may jump).
const RECHECK: Duration = Duration::from_secs(60);

impl Authenticator {
    /// `admin_token` is the operator's configured token (an empty one is
    /// ignored); every other token comes from the registry.
    pub fn new(admin_token: Option<String>, registry: Arc<Registry>, clock: Clock) -> Self {
        Self {
            admin_token: admin_token.filter(|t| !t.is_empty()),
            registry,
            clock,
            policy: TokenPolicy::default(),
        }
    }

    pub fn with_policy(mut self, policy: TokenPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    pub fn now(&self) -> EpochMs {
        (self.clock)()
    }

    /// The principal of a valid token, or `None`.
    pub fn authenticate(&self, bearer: &str) -> Option<Principal> {
        self.verify(bearer).ok().map(|v| v.principal)
    }

    /// Checks a bearer token: the configured admin token (constant-time),
    /// or an issued token that is neither expired nor revoked.
    pub fn verify(&self, bearer: &str) -> Result<Verified, Refusal> {
        if bearer.is_empty() {
            return Err(Refusal::Unknown);
        }
        if let Some(admin) = &self.admin_token
            && ct_eq(admin.as_bytes(), bearer.as_bytes())
        {
            return Ok(Verified {
                principal: Principal::Admin,
                credential: Credential::ConfiguredAdmin,
            });
        }
        let now = self.now();
        let (id, principal) = self.registry.check_token(bearer, now)?;
        Ok(Verified {
            principal,
            credential: Credential::Issued(id),
        })
    }

    /// Whether a credential is still good now.
    pub fn still_valid(&self, credential: &Credential) -> Result<(), Refusal> {
        match credential {
            Credential::ConfiguredAdmin => Ok(()),
            Credential::Issued(id) => self.registry.token_validity(id, self.now()).map(|_| ()),
        }
    }

    /// Resolves once `credential` is revoked or expires (never for the
    /// configured admin token). Wakes on every revocation and at the
    /// expiry.
    pub fn invalidated(self: &Arc<Self>, credential: &Credential) -> Invalidated {
        let Credential::Issued(id) = credential.clone() else {
            return Box::pin(std::future::pending());
        };
        let this = Arc::clone(self);
        let mut changes = self.registry.token_changes();
        Box::pin(async move {
            loop {
                let now = this.now();
                let expires = match this.registry.token_validity(&id, now) {
                    Err(refusal) => return refusal,
                    Ok(expires) => expires,
                };
                let wait = expires.map_or(RECHECK, |at| {
                    Duration::from_millis((at - now).max(1) as u64).min(RECHECK)
                });
                tokio::select! {
                    changed = changes.changed() => {
                        if changed.is_err() {
                            // The registry is gone: the engine is stopping.
                            return std::future::pending().await;
                        }
                    }
                    _ = tokio::time::sleep(wait) => {}
                }
            }
        })
    }

    /// Issues a token under this authenticator's policy and clock.
    pub fn issue(&self, req: TokenRequest) -> Result<IssuedToken, crate::RegistryError> {
        self.registry.create_token(req, self.now(), &self.policy)
    }
}

fn bearer_of(req: &Request) -> Option<String> {
    req.headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        })
}

/// axum middleware: reads `Authorization: Bearer …`, answers 401 JSON if it
/// is missing, unknown, expired or revoked, else inserts the [`Principal`]
/// and the [`Credential`] into the request's extensions.
///
/// A request of an issued token races that token's revocation: a request
/// still running then gets 401, and a streaming response (size unknown: the
/// SSE feed) ends there.
pub async fn require_auth(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(bearer) = bearer_of(&req) else {
        return ApiError::unauthorized("missing bearer token: send Authorization: Bearer <token>")
            .into_response();
    };
    let verified = match auth.verify(&bearer) {
        Ok(v) => v,
        Err(refusal) => {
            tracing::debug!(path = %req.uri().path(), why = %refusal.message(), "Request refused: bearer token not valid.");
            return ApiError::unauthorized(refusal.message()).into_response();
        }
    };
    let credential = verified.credential.clone();
    req.extensions_mut().insert(verified.principal);
    req.extensions_mut().insert(verified.credential);
    if credential == Credential::ConfiguredAdmin {
        return next.run(req).await;
    }
    let mut invalidated = auth.invalidated(&credential);
    let response = tokio::select! {
        response = next.run(req) => response,
        refusal = &mut invalidated => {
            return ApiError::unauthorized(format!("{} while the request ran", refusal.message()))
                .into_response();
        }
    };
    if response.body().size_hint().exact().is_some() {
        return response;
    }
    let (parts, body) = response.into_parts();
    let body = body.into_data_stream().take_until(invalidated);
    Response::from_parts(parts, Body::from_stream(body))
}

/// Who may use a route, and what it does (for the 403 message).
#[derive(Debug, Clone, Copy)]
pub struct Gate {
    roles: &'static [Role],
    action: &'static str,
}

/// Put into a request's extensions by a passed [`Gate`]; the body
/// extractors require it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RoleChecked;

impl Gate {
    /// `action` completes "… may not {action}".
    pub const fn new(roles: &'static [Role], action: &'static str) -> Gate {
        Gate { roles, action }
    }

    pub const fn admin(action: &'static str) -> Gate {
        Gate::new(&[Role::Admin], action)
    }

    /// Every role (the route decides what each may see).
    pub const fn any(action: &'static str) -> Gate {
        Gate::new(
            &[Role::Admin, Role::Supervisor, Role::Owner, Role::Analyst],
            action,
        )
    }

    /// `route` behind this gate: its handler and extractors run only for
    /// the gate's roles.
    pub fn around<S: Clone + Send + Sync + 'static>(
        self,
        route: MethodRouter<S>,
    ) -> MethodRouter<S> {
        route.route_layer(middleware::from_fn_with_state(self, pass_gate))
    }
}

async fn pass_gate(State(gate): State<Gate>, mut req: Request, next: Next) -> Response {
    let Some(principal) = req.extensions().get::<Principal>() else {
        return ApiError::unauthorized("missing bearer token: send Authorization: Bearer <token>")
            .into_response();
    };
    if !gate.roles.contains(&principal.role()) {
        let roles = gate
            .roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" and ");
        return ApiError::forbidden(format!(
            "{} may not {}; only {roles} may",
            principal.name(),
            gate.action
        ))
        .into_response();
    }
    req.extensions_mut().insert(RoleChecked);
    next.run(req).await
}
