//! An open PostgreSQL store in a schema of its own.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_postgres::{Client, NoTls};
use vigil_storage::postgres::{PostgresConfig, PostgresStore};

use crate::cluster::{cluster, unique_name};
use crate::fixtures::Tokens;

pub(crate) struct Db {
    pub config: PostgresConfig,
    pub _dir: tempfile::TempDir,
}

/// A config with its own schema, roles and local log.
pub(crate) fn db(what: &str) -> Db {
    let name = unique_name(what);
    let dir = tempfile::tempdir().unwrap();
    let mut config = PostgresConfig::new(&cluster().url, dir.path().join("pg-wal"));
    config.schema = name.clone();
    config.role_prefix = name;
    config.batch_age = std::time::Duration::from_millis(20);
    Db { config, _dir: dir }
}

pub(crate) async fn open(config: &PostgresConfig) -> (Arc<PostgresStore>, Tokens) {
    let (tx, rx) = mpsc::channel(4096);
    let store = PostgresStore::open(config.clone(), tx)
        .await
        .unwrap_or_else(|e| panic!("the PostgreSQL store opens: {e}"));
    (store, rx)
}

/// A plain connection as the owner, searching the test's schema.
pub(crate) async fn client(config: &PostgresConfig) -> Client {
    let (client, conn) = tokio_postgres::connect(&config.url, NoTls)
        .await
        .expect("connects");
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS \"{0}\"; SET search_path TO \"{0}\", public",
            config.schema
        ))
        .await
        .unwrap();
    client
}

pub(crate) async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .get(0)
}
