//! Reference tables (registry data) as real tables of the schema, replaced
//! whole in one transaction so a query sees the old or the new rows.

use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

use super::config::{PostgresConfig, ident};
use super::migrate::{INTERNAL_TABLES, ROLLUPS};
use crate::{ColumnType, RefTable, StoreError};

fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text => "text",
        ColumnType::Int => "bigint",
        ColumnType::Float => "double precision",
        ColumnType::Bool => "boolean",
        ColumnType::Date => "date",
        ColumnType::Timestamp => "timestamptz",
    }
}

/// How a text cell becomes the column's type.
fn cast(name: &str, ty: ColumnType) -> String {
    let c = ident(name);
    match ty {
        ColumnType::Timestamp => format!("to_timestamp({c}::double precision / 1000)"),
        other => format!("{c}::{}", sql_type(other)),
    }
}

pub(crate) async fn set(
    client: &mut Client,
    config: &PostgresConfig,
    table: &RefTable,
) -> Result<(), StoreError> {
    // The embedded backend's checks (names, row widths, cell types) apply alike.
    crate::reference::convert(table.clone())?;
    let reserved = ["alarms", "equipment_hourly", "region_daily"];
    if INTERNAL_TABLES.contains(&table.name.as_str())
        || ROLLUPS.iter().any(|(r, _, _)| *r == table.name)
        || reserved.contains(&table.name.as_str())
        || table.name.starts_with("vigil_")
    {
        return Err(StoreError::InvalidReferenceTable {
            table: table.name.clone(),
            why: "the name belongs to the store".into(),
        });
    }
    let t = ident(&table.name);
    let defs: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            format!(
                "{} {}{}",
                ident(&c.name),
                sql_type(c.ty),
                if c.nullable { "" } else { " NOT NULL" }
            )
        })
        .collect();
    // Text arrays, one per column: cells in their JSON form, cast in SQL.
    let mut cells: Vec<Vec<Option<String>>> =
        vec![Vec::with_capacity(table.rows.len()); table.columns.len()];
    for row in &table.rows {
        for (i, v) in row.iter().enumerate() {
            cells[i].push(match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some(s.clone()),
                other => Some(other.to_string()),
            });
        }
    }
    let names: Vec<String> = table.columns.iter().map(|c| ident(&c.name)).collect();
    let unnest: Vec<String> = (1..=table.columns.len())
        .map(|i| format!("${i}::text[]"))
        .collect();
    let casts: Vec<String> = table.columns.iter().map(|c| cast(&c.name, c.ty)).collect();
    let reader = ident(&config.reader_role());

    let tx = client
        .transaction()
        .await
        .map_err(StoreError::db("starting a reference table"))?;
    let existing: Vec<(String, String, bool)> = tx
        .query(
            "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum",
            &[&config.schema, &table.name],
        )
        .await
        .map_err(StoreError::db("reading a reference table's columns"))?
        .into_iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let wanted: Vec<(String, String, bool)> = table
        .columns
        .iter()
        .map(|c| (c.name.clone(), sql_type(c.ty).to_owned(), !c.nullable))
        .collect();
    let recreated = existing != wanted;
    if recreated {
        let scoped = ident(&config.scoped_schema());
        tx.batch_execute(&format!(
            // CASCADE: views over it (`Store::set_view`) go too; the engine
            // defines them after the registry's tables at every start.
            "DROP VIEW IF EXISTS {scoped}.{t}; DROP TABLE IF EXISTS {t} CASCADE; CREATE TABLE {t} ({}); GRANT SELECT ON {t} TO {reader};",
            defs.join(", ")
        ))
        .await
        .map_err(StoreError::db(format!("creating reference table {}", table.name)))?;
    } else {
        // DELETE, not TRUNCATE: readers keep seeing the old rows until commit.
        tx.batch_execute(&format!("DELETE FROM {t}"))
            .await
            .map_err(StoreError::db(format!(
                "emptying reference table {}",
                table.name
            )))?;
    }
    let params: Vec<&(dyn ToSql + Sync)> = cells.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
    tx.execute(
        &format!(
            "INSERT INTO {t} ({}) SELECT {} FROM unnest({}) AS u ({})",
            names.join(", "),
            casts.join(", "),
            unnest.join(", "),
            names.join(", ")
        ),
        &params,
    )
    .await
    .map_err(|e| StoreError::InvalidReferenceTable {
        table: table.name.clone(),
        why: e
            .as_db_error()
            .map_or(e.to_string(), |d| d.message().to_owned()),
    })?;
    tx.commit().await.map_err(StoreError::db(format!(
        "committing reference table {}",
        table.name
    )))?;
    if recreated && table.columns.iter().any(|c| c.name == "region") {
        super::migrate::refresh_scoped_views(client, config).await?;
    }
    Ok(())
}

/// A view of the schema: replaced whole (with the views built on it, which
/// the caller defines again), readable by the reader role, and by analysts
/// through a scoped view when it has a `region` column.
pub(crate) async fn set_view(
    client: &mut Client,
    config: &PostgresConfig,
    name: &str,
    select: &str,
) -> Result<(), StoreError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.starts_with("vigil_")
        && !INTERNAL_TABLES.contains(&name)
        && !ROLLUPS.iter().any(|(r, _, _)| *r == name)
        && !["alarms", "equipment_hourly", "region_daily"].contains(&name);
    if !valid {
        return Err(StoreError::InvalidQuery(format!(
            "view name {name:?}: lower-case letters, digits and _ only, and not a name of the store"
        )));
    }
    let v = ident(name);
    let scoped = ident(&config.scoped_schema());
    let reader = ident(&config.reader_role());
    let tx = client
        .transaction()
        .await
        .map_err(StoreError::db("starting a view"))?;
    tx.batch_execute(&format!(
        "DROP VIEW IF EXISTS {scoped}.{v}; DROP VIEW IF EXISTS {v} CASCADE;
         CREATE VIEW {v} AS {select};
         GRANT SELECT ON {v} TO {reader};"
    ))
    .await
    .map_err(|e| {
        StoreError::InvalidQuery(format!(
            "view {name}: {}",
            e.as_db_error()
                .map_or(e.to_string(), |d| d.message().to_owned())
        ))
    })?;
    tx.commit()
        .await
        .map_err(StoreError::db(format!("committing view {name}")))?;
    super::migrate::refresh_scoped_views(client, config).await
}
