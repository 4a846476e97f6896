//! What the engine needs back after a restart, read from PostgreSQL with
//! times as epoch milliseconds, and the exact look-up of older seqs.

use std::collections::HashSet;

use tokio_postgres::Client;
use tracing::warn;
use vigil_model::{DeviceId, EpochMs};

use crate::limits::AnswerBudget;
use crate::schema::Table;
use crate::{Recovery, SeqKey, StoreError, StoredSeqs};

/// Same window as the embedded backend: alarms raised within a day of the
/// newest change come back even when cleared (rules count repeats).
const RECENT_MS: EpochMs = 24 * 3600 * 1000;

fn bad(why: String) -> StoreError {
    StoreError::Other(format!("recovering state: {why}"))
}

fn ms(col: &str) -> String {
    format!("(extract(epoch FROM {col}) * 1000)::bigint")
}

/// Seqs read back per device: its highest ones. Enough for the re-sends
/// that follow a restart; older ones are looked up (an index probe).
const RECENT_SEQS: usize = 64;

/// Every table that holds seqs, with the condition its seq-holding rows meet.
fn seq_tables() -> impl Iterator<Item = (&'static str, &'static str)> {
    Table::READINGS
        .iter()
        .map(|t| (t.name(), "TRUE"))
        .chain([(Table::DeadLetters.name(), "t.seq IS NOT NULL")])
}

pub(crate) async fn recover(client: &mut Client) -> Result<Recovery, StoreError> {
    let mut out = Recovery::default();
    // Every key of these tables leads with (device_id, seq), so this reads
    // one index entry per device and table, and the seqs per device from
    // the top of its index range: nothing here scans history.
    let mut devices = std::collections::BTreeSet::new();
    for (table, cond) in seq_tables() {
        let sql = format!(
            "WITH RECURSIVE d(device_id) AS (
                 (SELECT t.device_id FROM {table} t WHERE {cond} AND t.device_id IS NOT NULL ORDER BY t.device_id LIMIT 1)
                 UNION ALL
                 SELECT (SELECT t.device_id FROM {table} t WHERE {cond} AND t.device_id > d.device_id ORDER BY t.device_id LIMIT 1)
                 FROM d WHERE d.device_id IS NOT NULL)
             SELECT device_id FROM d WHERE device_id IS NOT NULL"
        );
        for row in client
            .query(&sql, &[])
            .await
            .map_err(StoreError::db(format!("listing the devices of {table}")))?
        {
            devices.insert(row.get::<_, String>(0));
        }
    }
    // Only Vigil writes these tables, but a row put in by hand must not
    // stop the engine from starting: its device is left out, and said so.
    let (devices, odd): (Vec<String>, Vec<String>) =
        devices.into_iter().partition(|d| DeviceId::new(d).is_ok());
    if !odd.is_empty() {
        warn!(count = odd.len(), first = %odd[0], "Rows with device ids Vigil does not issue; their seqs are not recovered.");
    }
    let top: Vec<String> = seq_tables()
        .map(|(table, cond)| {
            format!(
                "(SELECT t.seq FROM {table} t WHERE t.device_id = d.device_id AND {cond} ORDER BY t.seq DESC LIMIT {RECENT_SEQS})"
            )
        })
        .collect();
    let newest: Vec<String> = Table::READINGS
        .iter()
        .map(|t| {
            format!(
                "(SELECT t.received_at FROM {} t WHERE t.device_id = d.device_id ORDER BY t.seq DESC LIMIT 1)",
                t.name()
            )
        })
        .collect();
    let sql = format!(
        "SELECT d.device_id,
                ARRAY(SELECT u.seq FROM ({}) AS u ORDER BY u.seq DESC LIMIT {RECENT_SEQS}),
                (SELECT {} FROM ({}) AS n(received_at))
         FROM unnest($1::text[]) AS d(device_id)",
        top.join(" UNION ALL "),
        ms("max(n.received_at)"),
        newest.join(" UNION ALL "),
    );
    for row in client
        .query(&sql, &[&devices])
        .await
        .map_err(StoreError::db("recovering the seqs of devices"))?
    {
        let id = DeviceId::new(row.get::<_, &str>(0)).map_err(|e| bad(e.to_string()))?;
        // Seqs are u64 stored as bigint: the cast back is exact.
        let recent: Vec<u64> = row
            .get::<_, Vec<i64>>(1)
            .into_iter()
            .map(|s| s as u64)
            .collect();
        let mut seqs = match recent.last() {
            Some(&lowest) if recent.len() >= RECENT_SEQS => StoredSeqs::known_from(lowest),
            _ => StoredSeqs::new(),
        };
        for s in recent {
            seqs.insert(s);
        }
        if let Some(seen) = row.get::<_, Option<i64>>(2) {
            out.last_seen.insert(id.clone(), seen);
        }
        out.seqs.insert(id, seqs);
    }

    let newest: Option<i64> = client
        .query_one(
            &format!("SELECT {} FROM alarm_changes", ms("max(updated_at)")),
            &[],
        )
        .await
        .map_err(StoreError::db("recovering alarms"))?
        .get(0);
    let now = chrono::Utc::now().timestamp_millis();
    let cutoff = newest.map_or(now, |n| n.min(now)) - RECENT_MS;
    // Through the Arrow answer, so that one decoder reads alarms back
    // whichever backend stored them.
    let sql = format!(
        "SELECT {} FROM alarms
         WHERE state <> 'cleared' OR raised_at >= to_timestamp({cutoff}::double precision / 1000)
         ORDER BY raised_at, alarm_id",
        crate::read::alarm_columns(),
    );
    let answer = super::query::execute(client, &sql, AnswerBudget::new(usize::MAX, usize::MAX))
        .await
        .map_err(|e| bad(format!("alarms: {e}")))?;
    for batch in &answer.batches {
        crate::read::alarms_from(batch, &mut out.alarms)?;
    }
    Ok(out)
}

/// Which keys are stored: one index probe per key and table.
pub(crate) async fn stored_seqs(
    client: &mut Client,
    keys: &[SeqKey],
) -> Result<HashSet<SeqKey>, StoreError> {
    if keys.is_empty() {
        return Ok(HashSet::new());
    }
    let exists: Vec<String> = seq_tables()
        .map(|(table, cond)| {
            format!(
                "EXISTS (SELECT 1 FROM {table} t WHERE t.device_id = k.device_id AND t.seq = k.seq AND {cond})"
            )
        })
        .collect();
    let sql = format!(
        "SELECT k.device_id, k.seq FROM unnest($1::text[], $2::bigint[]) AS k(device_id, seq) WHERE {}",
        exists.join(" OR ")
    );
    let ids: Vec<&str> = keys.iter().map(|(d, _)| d.as_str()).collect();
    let seqs: Vec<i64> = keys.iter().map(|&(_, s)| s as i64).collect();
    let mut found = HashSet::new();
    for row in client
        .query(&sql, &[&ids, &seqs])
        .await
        .map_err(StoreError::db("looking up stored seqs"))?
    {
        let id = DeviceId::new(row.get::<_, &str>(0)).map_err(|e| bad(e.to_string()))?;
        found.insert((id, row.get::<_, i64>(1) as u64));
    }
    Ok(found)
}
