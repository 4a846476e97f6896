//! Engine configuration: built-in defaults ← TOML file ← `VIGIL_*`
//! environment ← command-line flags, each layer overriding the one before.
//! The result is the server's plain-data `ServerConfig`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::Serialize;
use vigil_server::ServerConfig;

/// Flags given on the command line; `None` leaves the lower layers' value.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Overrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtts_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rules_file: Option<PathBuf>,
}

const TOP_LEVEL_KEYS: &[&str] = &[
    "data_dir",
    "mqtt_addr",
    "mqtts_addr",
    "http_addr",
    "admin_token",
    "admin_token_file",
    "store",
    "engine",
    "ingest",
    "tls",
    "embedded",
    "postgres",
    "rules",
    "rules_file",
    "delivery",
    "risk",
    "console",
    "tokens",
];

/// Layers defaults, the file (if any), the environment and the flags.
pub(crate) fn load(file: Option<&Path>, overrides: Overrides) -> anyhow::Result<ServerConfig> {
    let mut figment = Figment::from(Serialized::defaults(ServerConfig::default()));
    if let Some(file) = file {
        anyhow::ensure!(
            file.exists(),
            "config file {} does not exist",
            file.display()
        );
        figment = figment.merge(Toml::file(file));
    }
    // Other VIGIL_* variables (the test harness's, say) are not config.
    // Keys keep the case they were written in (`ADMIN_TOKEN`).
    let env = Env::prefixed("VIGIL_").split("__").filter(|key| {
        let top = key.as_str().split('.').next().unwrap_or_default();
        TOP_LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(top))
    });
    let mut config: ServerConfig = figment
        .merge(env)
        .merge(Serialized::defaults(overrides))
        .extract()
        .context("invalid configuration")?;
    read_admin_token_file(&mut config)?;
    config.tokens.policy()?;
    Ok(config)
}

/// Puts the content of `admin_token_file` into `admin_token`. Both set
/// at once is refused: which one counts would be a guess.
fn read_admin_token_file(config: &mut ServerConfig) -> anyhow::Result<()> {
    let Some(path) = &config.admin_token_file else {
        return Ok(());
    };
    anyhow::ensure!(
        config.admin_token.as_deref().is_none_or(str::is_empty),
        "both admin_token and admin_token_file are set; keep one (the file, preferably)"
    );
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read admin_token_file {}", path.display()))?;
    let token = text.lines().next().unwrap_or_default().trim().to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "admin_token_file {} is empty",
        path.display()
    );
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "The admin token file can be read by other users; chmod 600 it.");
        }
    }
    config.admin_token = Some(token);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use vigil_server::{TokenConfig, parse_listen_addr};

    /// Runs `f` under figment's jail lock, so no other test's `VIGIL_*`
    /// variables are set meanwhile.
    fn jailed(f: impl FnOnce()) {
        // figment's own error type, in a test helper: its size does not matter.
        #[allow(clippy::result_large_err)]
        figment::Jail::expect_with(|_| {
            f();
            Ok(())
        });
    }

    #[test]
    fn the_example_config_loads_and_says_what_the_defaults_say() {
        // Serialised with the environment test, whose variables are process-wide.
        jailed(|| {
            let path = Path::new(
                &std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
            )
            .join("config/vigil.example.toml");
            let config = load(Some(&path), Overrides::default()).expect("example config loads");
            let defaults = ServerConfig::default();
            assert_eq!(config.mqtt_addr, defaults.mqtt_addr);
            assert_eq!(config.mqtts_addr, defaults.mqtts_addr);
            assert_eq!(config.ingest.quota, defaults.ingest.quota);
            assert_eq!(config.tls.server_names, defaults.tls.server_names);
            assert_eq!(config.tls.device_cert_days, defaults.tls.device_cert_days);
            assert_eq!(config.engine.rule_shards, defaults.engine.rule_shards);
            assert_eq!(config.embedded.flush_rows, defaults.embedded.flush_rows);
            assert_eq!(config.store, "embedded");
            assert_eq!(config.postgres.batch_rows, defaults.postgres.batch_rows);
            assert_eq!(
                config.tokens.default_ttl_days,
                defaults.tokens.default_ttl_days
            );
            assert_eq!(config.tokens.max_ttl_days, defaults.tokens.max_ttl_days);
            assert!(config.postgres().unwrap().is_none());
            vigil_server::load_rules(&config.rules, None).expect("example rules are valid");
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's error type, in a test
    fn vigil_environment_variables_set_top_level_and_nested_keys() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("VIGIL_ADMIN_TOKEN", "from-env");
            jail.set_env("VIGIL_POSTGRES__SCHEMA", "e2e_1");
            jail.set_env("VIGIL_ENGINE__RULE_SHARDS", "3");
            // Not config: must not make loading fail.
            jail.set_env("VIGIL_TEST_DATABASE_URL", "postgres://elsewhere");
            let config = load(None, Overrides::default()).expect("loads");
            assert_eq!(config.admin_token.as_deref(), Some("from-env"));
            assert_eq!(config.postgres.schema, "e2e_1");
            assert_eq!(config.engine.rule_shards, 3);
            let over = Overrides {
                admin_token: Some("from-flag".into()),
                ..Overrides::default()
            };
            let config = load(None, over).expect("loads");
            assert_eq!(config.admin_token.as_deref(), Some("from-flag"));
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's error type, in a test
    fn the_tls_listener_takes_a_host_alone_on_port_8883() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(load(None, Overrides::default()).unwrap().mqtts_addr, None);
            jail.set_env("VIGIL_MQTTS_ADDR", "0.0.0.0");
            let config = load(None, Overrides::default()).unwrap();
            assert_eq!(config.mqtts_addr, Some("0.0.0.0:8883".parse().unwrap()));
            jail.set_env("VIGIL_MQTTS_ADDR", "127.0.0.1:9883");
            let config = load(None, Overrides::default()).unwrap();
            assert_eq!(config.mqtts_addr, Some("127.0.0.1:9883".parse().unwrap()));
            jail.set_env("VIGIL_INGEST__QUOTA__RATE_MULTIPLE", "60");
            let config = load(None, Overrides::default()).unwrap();
            assert_eq!(config.ingest.quota.rate_multiple, 60);
            assert_eq!(
                parse_listen_addr("[::1]"),
                Ok("[::1]:8883".parse().unwrap())
            );
            assert!(parse_listen_addr("nowhere").is_err());
            Ok(())
        });
    }

    #[test]
    fn flags_beat_the_file() {
        // Serialised with the environment test, whose variables are process-wide.
        jailed(|| {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("v.toml");
            std::fs::write(&file, "http_addr = \"127.0.0.1:9000\"\nmqtt_addr = \"127.0.0.1:9001\"\n[engine]\nrule_shards = 3\n").unwrap();
            let over = Overrides {
                http_addr: Some("127.0.0.1:9100".parse().unwrap()),
                ..Overrides::default()
            };
            let config = load(Some(&file), over).unwrap();
            assert_eq!(config.http_addr.port(), 9100);
            assert_eq!(config.mqtt_addr.port(), 9001);
            assert_eq!(config.engine.rule_shards, 3);
        });
    }

    #[test]
    fn a_postgres_url_selects_the_postgres_backend() {
        // Serialised with the environment test, whose variables are process-wide.
        jailed(|| {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("v.toml");
            std::fs::write(&file, "store = \"postgres://vigil@db/vigil\"\n[postgres]\nbatch_rows = 100\ntimescale = \"off\"\n").unwrap();
            let config = load(Some(&file), Overrides::default()).unwrap();
            let pg = config.postgres().unwrap().expect("postgres");
            assert_eq!(pg.url, "postgres://vigil@db/vigil");
            assert_eq!(pg.batch_rows, 100);
            assert_eq!(pg.wal_dir, config.data_dir.join("pg-wal"));
            let over = Overrides {
                store: Some("embedded".into()),
                ..Overrides::default()
            };
            assert!(
                load(Some(&file), over)
                    .unwrap()
                    .postgres()
                    .unwrap()
                    .is_none()
            );
            let bad = ServerConfig {
                store: "mysql://x".into(),
                ..ServerConfig::default()
            };
            assert!(bad.postgres().is_err());
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment's error type, in a test
    fn the_admin_token_comes_from_a_file_or_the_environment() {
        figment::Jail::expect_with(|jail| {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("admin.token");
            std::fs::write(&file, "from-file\n").unwrap();
            let from_file = Overrides {
                admin_token_file: Some(file.clone()),
                ..Overrides::default()
            };
            let config = load(None, from_file).expect("loads");
            assert_eq!(config.admin_token.as_deref(), Some("from-file"));
            jail.set_env("VIGIL_ADMIN_TOKEN_FILE", file.display().to_string());
            let config = load(None, Overrides::default()).expect("loads");
            assert_eq!(config.admin_token.as_deref(), Some("from-file"));
            jail.set_env("VIGIL_ADMIN_TOKEN", "from-env");
            let err = load(None, Overrides::default()).unwrap_err();
            assert!(
                format!("{err:#}").contains("both admin_token and admin_token_file"),
                "{err:#}"
            );
            jail.clear_env();
            std::fs::write(&file, "\n").unwrap();
            let err = load(
                None,
                Overrides {
                    admin_token_file: Some(file.clone()),
                    ..Overrides::default()
                },
            )
            .unwrap_err();
            assert!(format!("{err:#}").contains("is empty"), "{err:#}");
            Ok(())
        });
    }

    #[test]
    fn token_lifetimes_are_checked() {
        let bad = TokenConfig {
            default_ttl_days: 400,
            max_ttl_days: 365,
        };
        assert!(bad.policy().is_err());
        let policy = TokenConfig::default().policy().unwrap();
        assert_eq!(policy.default_ttl.as_secs(), 90 * 86_400);
        assert_eq!(policy.max_ttl.as_secs(), 365 * 86_400);
    }

    #[test]
    fn a_misspelt_key_is_refused() {
        // Serialised with the environment test, whose variables are process-wide.
        jailed(|| {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("v.toml");
            std::fs::write(&file, "[engine]\nrule_shard = 3\n").unwrap();
            let err = load(Some(&file), Overrides::default()).unwrap_err();
            assert!(format!("{err:#}").contains("rule_shard"), "{err:#}");
        });
    }
}
