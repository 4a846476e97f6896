//! Engine configuration: built-in defaults ← TOML file ← `VIGIL_*`
//! environment ← command-line flags, each layer overriding the one before.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// Everything `vigil run` needs. Top-level keys double as flags
/// (`--mqtt-addr`) and environment variables (`VIGIL_MQTT_ADDR`); sections
/// nest with `__` in the environment (`VIGIL_ENGINE__RULE_SHARDS=4`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Registry, write-ahead log and Parquet files live here.
    pub data_dir: PathBuf,
    /// Plain MQTT listener for devices (loopback unless `ingest.allow_public_plain`).
    pub mqtt_addr: SocketAddr,
    /// HTTP API, SSE feed and metrics.
    pub http_addr: SocketAddr,
    /// Bearer token of the `admin` role; without one only registry-issued tokens work.
    pub admin_token: Option<String>,
    pub engine: EngineConfig,
    pub ingest: IngestTuning,
    pub embedded: EmbeddedTuning,
    /// Rule thresholds and overrides (docs/rules.md).
    pub rules: toml::Table,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineConfig {
    /// Rule-engine shards; readings are routed by equipment so each
    /// equipment's state lives in exactly one shard.
    pub rule_shards: usize,
    /// How often silent devices' clocks advance and timers fire.
    pub tick_ms: u64,
    /// Bounded queue in front of each shard (back-pressure to ingest).
    pub shard_queue: usize,
    /// SQL statement timeout, seconds.
    pub sql_timeout_s: u64,
    /// Rows returned by one SQL query at most.
    pub sql_max_rows: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            rule_shards: 2,
            tick_ms: 500,
            shard_queue: 8192,
            sql_timeout_s: 30,
            sql_max_rows: 100_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestTuning {
    /// Allow the plain (password) MQTT listener on a non-loopback address.
    pub allow_public_plain: bool,
    pub max_connections: usize,
    /// Seconds an ack watermark waits below a `seq` gap for the device to re-send.
    pub gap_grace_s: u64,
}

impl Default for IngestTuning {
    fn default() -> Self {
        Self {
            allow_public_plain: false,
            max_connections: 10_000,
            gap_grace_s: 30,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmbeddedTuning {
    pub queue_capacity: usize,
    pub group_commit_max: usize,
    pub flush_rows: usize,
    pub flush_interval_s: u64,
}

impl Default for EmbeddedTuning {
    fn default() -> Self {
        Self {
            queue_capacity: 16_384,
            group_commit_max: 4096,
            flush_rows: 250_000,
            flush_interval_s: 300,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("vigil-data"),
            mqtt_addr: "127.0.0.1:1883".parse().expect("valid literal"),
            http_addr: "127.0.0.1:8080".parse().expect("valid literal"),
            admin_token: None,
            engine: EngineConfig::default(),
            ingest: IngestTuning::default(),
            embedded: EmbeddedTuning::default(),
            rules: toml::Table::new(),
        }
    }
}

/// Flags given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Serialize)]
pub struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "data_dir",
    "mqtt_addr",
    "http_addr",
    "admin_token",
    "engine",
    "ingest",
    "embedded",
    "rules",
];

impl Config {
    /// Layers defaults, the file (if any), the environment and the flags.
    pub fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<Config> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            anyhow::ensure!(
                file.exists(),
                "config file {} does not exist",
                file.display()
            );
            figment = figment.merge(Toml::file(file));
        }
        // Other VIGIL_* variables (the test harness's, say) are not config.
        let env = Env::prefixed("VIGIL_").split("__").filter(|key| {
            let top = key.as_str().split('.').next().unwrap_or_default();
            TOP_LEVEL_KEYS.contains(&top)
        });
        let config: Config = figment
            .merge(env)
            .merge(Serialized::defaults(overrides))
            .extract()
            .context("invalid configuration")?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_loads_and_says_what_the_defaults_say() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/vigil.example.toml");
        let config = Config::load(Some(&path), Overrides::default()).expect("example config loads");
        let defaults = Config::default();
        assert_eq!(config.mqtt_addr, defaults.mqtt_addr);
        assert_eq!(config.engine.rule_shards, defaults.engine.rule_shards);
        assert_eq!(config.embedded.flush_rows, defaults.embedded.flush_rows);
        crate::engine::rule_config(&config.rules).expect("example rules are valid");
    }

    #[test]
    fn flags_beat_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.toml");
        std::fs::write(&file, "http_addr = \"127.0.0.1:9000\"\nmqtt_addr = \"127.0.0.1:9001\"\n[engine]\nrule_shards = 3\n").unwrap();
        let over = Overrides {
            http_addr: Some("127.0.0.1:9100".parse().unwrap()),
            ..Overrides::default()
        };
        let config = Config::load(Some(&file), over).unwrap();
        assert_eq!(config.http_addr.port(), 9100);
        assert_eq!(config.mqtt_addr.port(), 9001);
        assert_eq!(config.engine.rule_shards, 3);
    }

    #[test]
    fn a_misspelt_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("v.toml");
        std::fs::write(&file, "[engine]\nrule_shard = 3\n").unwrap();
        let err = Config::load(Some(&file), Overrides::default()).unwrap_err();
        assert!(format!("{err:#}").contains("rule_shard"), "{err:#}");
    }
}
