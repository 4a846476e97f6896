//! Schema versions in, a migrated schema and its access rules out.
//!
//! Each migration is SQL embedded from `storage/migrations/`: a common file
//! `NNNN_name.sql` and, where the modes differ, `NNNN_name.timescale.sql` or
//! `NNNN_name.plain.sql`, applied in that order in one transaction and
//! recorded in `vigil_schema_migrations` with the mode. The mode is chosen
//! when the first migration runs (TimescaleDB when the extension is available,
//! unless configured otherwise) and then stays what the schema was built with.
//!
//! After migrating, [`prepare_access`] runs at every start: read-only login
//! roles, grants, the analysts' scoped views, and (TimescaleDB) the
//! compression, retention and refresh policies from the configuration.

use tokio_postgres::Client;
use tracing::{info, warn};

use super::config::{PostgresConfig, TimescaleMode, ident, literal};
use crate::StoreError;

/// How the schema was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Timescale,
    Plain,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Timescale => "timescale",
            Mode::Plain => "plain",
        }
    }
}

struct Migration {
    version: i32,
    name: &'static str,
    common: &'static str,
    timescale: &'static str,
    plain: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "init",
        common: include_str!("../../migrations/0001_init.sql"),
        timescale: include_str!("../../migrations/0001_init.timescale.sql"),
        plain: include_str!("../../migrations/0001_init.plain.sql"),
    },
    Migration {
        version: 2,
        name: "rollups",
        common: "",
        timescale: include_str!("../../migrations/0002_rollups.timescale.sql"),
        plain: include_str!("../../migrations/0002_rollups.plain.sql"),
    },
    Migration {
        version: 3,
        name: "rollup_views",
        common: include_str!("../../migrations/0003_rollup_views.sql"),
        timescale: "",
        plain: "",
    },
    Migration {
        version: 4,
        name: "dead_letter_seq",
        common: include_str!("../../migrations/0004_dead_letter_seq.sql"),
        timescale: "",
        plain: "",
    },
    Migration {
        version: 5,
        name: "rule_alarms_hourly",
        common: "",
        timescale: include_str!("../../migrations/0005_rule_alarms_hourly.timescale.sql"),
        plain: include_str!("../../migrations/0005_rule_alarms_hourly.plain.sql"),
    },
];

/// The newest schema version this build knows.
pub const LATEST: i32 = 5;

/// The continuous aggregates (plain views without TimescaleDB) and how far
/// back each refresh looks: (name, start_offset, end_offset).
pub(crate) const ROLLUPS: &[(&str, &str, &str)] = &[
    ("equipment_runs_hourly", "3 days", "1 hour"),
    ("equipment_faults_hourly", "3 days", "1 hour"),
    ("equipment_alarms_hourly", "3 days", "1 hour"),
    ("region_inspections_daily", "10 days", "1 hour"),
    ("region_alarms_daily", "10 days", "1 hour"),
    ("rule_alarms_hourly", "3 days", "1 hour"),
];

/// Hypertables that get compression and retention policies.
const AGED_TABLES: &[&str] = &[
    "elevator_readings",
    "ride_readings",
    "video_events",
    "filling_records",
    "device_events",
    "dead_letters",
];

/// Tables of the backend itself: never shown to SQL users.
pub(crate) const INTERNAL_TABLES: &[&str] = &[
    "vigil_schema_migrations",
    "vigil_wal_position",
    "vigil_query_scope",
    "vigil_role_secrets",
];

/// What [`migrate`] did.
#[derive(Debug, Clone)]
pub struct Migrated {
    pub mode: Mode,
    /// Versions applied now, in order.
    pub applied: Vec<i32>,
    /// The schema's version afterwards.
    pub version: i32,
}

/// Creates the schema when missing and makes it the connection's search path
/// (then `public`, where TimescaleDB's functions live).
pub(crate) async fn use_schema(client: &Client, schema: &str) -> Result<(), StoreError> {
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {s}; SET search_path TO {s}, public",
            s = ident(schema)
        ))
        .await
        .map_err(StoreError::db(format!("using schema {schema}")))
}

/// Applies every migration up to `target` (all when `None`).
pub async fn migrate(
    client: &mut Client,
    config: &PostgresConfig,
    target: Option<i32>,
) -> Result<Migrated, StoreError> {
    use_schema(client, &config.schema).await?;
    let target = target.unwrap_or(LATEST);
    // Two engines starting at once must not both migrate.
    client
        .execute(
            "SELECT pg_advisory_lock(hashtext('vigil_migrate:' || $1::text))",
            &[&config.schema],
        )
        .await
        .map_err(StoreError::db("taking the migration lock"))?;
    let result = migrate_locked(client, config, target).await;
    let _ = client
        .execute(
            "SELECT pg_advisory_unlock(hashtext('vigil_migrate:' || $1::text))",
            &[&config.schema],
        )
        .await;
    result
}

async fn migrate_locked(
    client: &mut Client,
    config: &PostgresConfig,
    target: i32,
) -> Result<Migrated, StoreError> {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS vigil_schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                mode text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(StoreError::db("creating vigil_schema_migrations"))?;
    let rows = client
        .query(
            "SELECT version, mode FROM vigil_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .map_err(StoreError::db("reading vigil_schema_migrations"))?;
    let current: i32 = rows.last().map_or(0, |r| r.get(0));
    if current > LATEST {
        return Err(StoreError::Migration(format!(
            "the schema is at version {current}, newer than this build knows ({LATEST}); upgrade Vigil"
        )));
    }
    let available: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')",
            &[],
        )
        .await
        .map_err(StoreError::db("looking for TimescaleDB"))?
        .get(0);
    let mode = match rows.first().map(|r| r.get::<_, String>(1)) {
        Some(m) if m == "timescale" => Mode::Timescale,
        Some(_) => Mode::Plain,
        None => match (config.timescale, available) {
            (TimescaleMode::Off, _) | (TimescaleMode::Auto, false) => Mode::Plain,
            (TimescaleMode::Auto | TimescaleMode::On, true) => Mode::Timescale,
            (TimescaleMode::On, false) => {
                return Err(StoreError::Migration(
                    "timescale = \"on\" but the timescaledb extension is not available".into(),
                ));
            }
        },
    };
    if mode == Mode::Timescale {
        client
            .batch_execute("CREATE EXTENSION IF NOT EXISTS timescaledb WITH SCHEMA public")
            .await
            .map_err(StoreError::db("creating the timescaledb extension"))?;
    } else if available && config.timescale == TimescaleMode::Auto && !rows.is_empty() {
        warn!(schema = %config.schema, "TimescaleDB is available but this schema was built on plain PostgreSQL; it stays plain.");
    }

    let mut applied = Vec::new();
    for m in MIGRATIONS
        .iter()
        .filter(|m| m.version > current && m.version <= target)
    {
        let specific = match mode {
            Mode::Timescale => m.timescale,
            Mode::Plain => m.plain,
        };
        let tx = client
            .transaction()
            .await
            .map_err(StoreError::db("starting a migration"))?;
        for sql in [m.common, specific] {
            if !sql.trim().is_empty() {
                tx.batch_execute(sql).await.map_err(|e| {
                    StoreError::Migration(format!(
                        "{:04}_{} ({}): {}",
                        m.version,
                        m.name,
                        mode.as_str(),
                        e.as_db_error()
                            .map_or(e.to_string(), |d| d.message().to_owned())
                    ))
                })?;
            }
        }
        tx.execute(
            "INSERT INTO vigil_schema_migrations (version, name, mode) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &mode.as_str()],
        )
        .await
        .map_err(StoreError::db("recording a migration"))?;
        tx.commit()
            .await
            .map_err(StoreError::db("committing a migration"))?;
        info!(schema = %config.schema, version = m.version, name = m.name, mode = mode.as_str(), "Schema migration applied.");
        applied.push(m.version);
    }
    let version = applied.last().copied().unwrap_or(current);
    Ok(Migrated {
        mode,
        applied,
        version,
    })
}

/// Roles, grants, scoped views and (TimescaleDB) policies; idempotent, run at every start.
pub(crate) async fn prepare_access(
    client: &mut Client,
    config: &PostgresConfig,
    mode: Mode,
) -> Result<(), StoreError> {
    for role in [config.reader_role(), config.analyst_role()] {
        ensure_role(client, &role).await?;
    }
    let s = ident(&config.schema);
    let scoped = ident(&config.scoped_schema());
    let reader = ident(&config.reader_role());
    let analyst = ident(&config.analyst_role());
    let internal = INTERNAL_TABLES.join(", ");
    let sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {scoped};
         GRANT USAGE ON SCHEMA {s} TO {reader};
         GRANT SELECT ON ALL TABLES IN SCHEMA {s} TO {reader};
         REVOKE ALL ON {internal} FROM {reader}, {analyst};
         REVOKE ALL ON SCHEMA {s} FROM {analyst};
         GRANT USAGE ON SCHEMA {scoped} TO {analyst};
         ALTER ROLE {reader} SET default_transaction_read_only = on;
         ALTER ROLE {analyst} SET default_transaction_read_only = on;"
    );
    client
        .batch_execute(&sql)
        .await
        .map_err(StoreError::db("granting read access"))?;
    limit_temp_files(client, config).await?;
    refresh_scoped_views(client, config).await?;
    if mode == Mode::Timescale {
        apply_policies(client, config).await?;
    }
    Ok(())
}

/// `temp_file_limit` on the query roles. Only a superuser (or a role with
/// the SET privilege on it) may set it: without, a warning, and the
/// server's own limit holds.
async fn limit_temp_files(client: &Client, config: &PostgresConfig) -> Result<(), StoreError> {
    let limit = config.sql_temp_file_limit_kb.max(-1);
    for role in [config.reader_role(), config.analyst_role()] {
        // A plain number is in kB, the setting's unit.
        let set = format!("ALTER ROLE {} SET temp_file_limit = {limit}", ident(&role));
        match client.batch_execute(&set).await {
            Ok(()) => {}
            Err(e) if e.code().map(|c| c.code()) == Some("42501") => {
                warn!(role = %role, "Cannot set temp_file_limit on the query role (not a superuser); PostgreSQL's own limit holds.");
                return Ok(());
            }
            Err(e) => {
                return Err(StoreError::db(format!(
                    "limiting temporary files of {role}"
                ))(e));
            }
        }
    }
    Ok(())
}

/// A login role with a password only the engine's login can read.
async fn ensure_role(client: &Client, role: &str) -> Result<(), StoreError> {
    let exists: bool = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)",
            &[&role],
        )
        .await
        .map_err(StoreError::db("looking up roles"))?
        .get(0);
    if !exists {
        // A concurrent start may create it first; that is fine.
        if let Err(e) = client
            .batch_execute(&format!("CREATE ROLE {} LOGIN", ident(role)))
            .await
            && e.code().map(|c| c.code()) != Some("42710")
        {
            return Err(StoreError::db(format!("creating role {role}"))(e));
        }
    }
    let secret = role_secret(client, role).await?;
    client
        .batch_execute(&format!(
            "ALTER ROLE {} LOGIN PASSWORD {}",
            ident(role),
            literal(&secret)
        ))
        .await
        .map_err(StoreError::db(format!("setting the password of {role}")))
}

pub(crate) async fn role_secret(client: &Client, role: &str) -> Result<String, StoreError> {
    let fresh = uuid::Uuid::new_v4().simple().to_string();
    client
        .execute(
            "INSERT INTO vigil_role_secrets (role_name, secret) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&role, &fresh],
        )
        .await
        .map_err(StoreError::db("storing a role secret"))?;
    let row = client
        .query_one(
            "SELECT secret FROM vigil_role_secrets WHERE role_name = $1",
            &[&role],
        )
        .await
        .map_err(StoreError::db("reading a role secret"))?;
    Ok(row.get(0))
}

/// For every relation of the schema with a `region` column, a view in the
/// scoped schema showing only the rows inside the running query's grant.
/// The grant is looked up by backend process id in `vigil_query_scope`,
/// which only the engine's login writes, so a query cannot widen it.
pub(crate) async fn refresh_scoped_views(
    client: &mut Client,
    config: &PostgresConfig,
) -> Result<(), StoreError> {
    let rows = client
        .query(
            "SELECT c.relname FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'region' AND NOT a.attisdropped
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p')
             ORDER BY 1",
            &[&config.schema],
        )
        .await
        .map_err(StoreError::db("listing tables with a region"))?;
    let s = ident(&config.schema);
    let scoped = ident(&config.scoped_schema());
    let analyst = ident(&config.analyst_role());
    let tx = client
        .transaction()
        .await
        .map_err(StoreError::db("starting scoped views"))?;
    for row in rows {
        let name: String = row.get(0);
        if INTERNAL_TABLES.contains(&name.as_str()) || name.starts_with('_') {
            continue;
        }
        let t = ident(&name);
        tx.batch_execute(&format!(
            "DROP VIEW IF EXISTS {scoped}.{t};
             CREATE VIEW {scoped}.{t} WITH (security_barrier) AS
                 SELECT * FROM {s}.{t}
                 WHERE region LIKE ANY (ARRAY(SELECT unnest(q.patterns) FROM {s}.vigil_query_scope q WHERE q.pid = pg_backend_pid()));
             GRANT SELECT ON {scoped}.{t} TO {analyst};"
        ))
        .await
        .map_err(StoreError::db(format!("creating the scoped view of {name}")))?;
    }
    tx.commit()
        .await
        .map_err(StoreError::db("committing scoped views"))
}

/// Compression and retention from the configuration (replacing what an
/// earlier start set), and refresh policies of the continuous aggregates.
async fn apply_policies(client: &Client, config: &PostgresConfig) -> Result<(), StoreError> {
    let s = &config.schema;
    let mut sql = String::new();
    for t in AGED_TABLES {
        let t = literal(&format!("{}.{}", ident(s), ident(t)));
        sql.push_str(&format!(
            "SELECT remove_compression_policy({t}, if_exists => true);
             SELECT add_compression_policy({t}, compress_after => INTERVAL '{} days');
             SELECT remove_retention_policy({t}, if_exists => true);\n",
            config.compress_after_days
        ));
        if config.retention_days > 0 {
            // A refresh must never reach back into dropped chunks (it would
            // empty those buckets), so retention outlives the refresh window.
            let days = config.retention_days.max(11);
            sql.push_str(&format!(
                "SELECT add_retention_policy({t}, drop_after => INTERVAL '{days} days');\n"
            ));
        }
    }
    for (view, start, end) in ROLLUPS {
        let v = literal(&format!("{}.{}", ident(s), ident(view)));
        sql.push_str(&format!(
            "SELECT add_continuous_aggregate_policy({v}, start_offset => INTERVAL '{start}', \
             end_offset => INTERVAL '{end}', schedule_interval => INTERVAL '30 minutes', if_not_exists => true);\n"
        ));
    }
    client
        .batch_execute(&sql)
        .await
        .map_err(StoreError::db("setting TimescaleDB policies"))?;
    info!(schema = %s, compress_after_days = config.compress_after_days, retention_days = config.retention_days, "TimescaleDB policies set.");
    Ok(())
}
