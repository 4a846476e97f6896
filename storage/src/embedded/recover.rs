//! What the engine needs back after a restart: per device the seqs of the
//! seq index plus those still in memory; alarms through our own SQL, so
//! that memory and Parquet count alike. And the exact look-up of older seqs.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{TimestampMillisecondType, UInt64Type};
use vigil_model::{DeviceId, EpochMs};

use std::collections::{BTreeSet, HashSet};

use super::EmbeddedStore;
use crate::schema::Table;
use crate::{Recovery, SeqKey, StoreError};

/// Alarms raised this long before the newest alarm change (or the wall
/// clock, whichever is earlier) come back even when cleared.
const RECENT_MS: EpochMs = 24 * 3600 * 1000;

fn bad(why: String) -> StoreError {
    StoreError::Other(format!("recovering state: {why}"))
}

pub(crate) async fn recover(store: &EmbeddedStore) -> Result<Recovery, StoreError> {
    let mut out = Recovery::default();

    // The index holds what Parquet holds; memory (the WAL replayed, and
    // anything written since) comes on top. Taken together under the index
    // lock, so a flush moving rows from one to the other is seen whole.
    let (mut index, memory) = {
        let index = store.shared.seq_index.lock();
        let snapshot = store.shared.tables.read().snapshot();
        (index.clone(), snapshot)
    };
    for (table, snap) in Table::ALL.into_iter().zip(memory.tables) {
        for rows in &snap.memory {
            for batch in rows
                .batches(table)
                .map_err(|e| bad(format!("{}: {e}", table.name())))?
            {
                index.fold(table, &batch);
            }
        }
    }
    for (id, entry) in index.devices {
        if let Some(seen) = entry.last_seen {
            out.last_seen.insert(id.clone(), seen);
        }
        out.seqs.insert(id, entry.seqs);
    }

    // Rules use wall-clock or reading time; the earlier of the two keeps
    // every alarm either could count as recent.
    let newest = store
        .query_all("SELECT max(updated_at) FROM alarm_changes")
        .await?;
    let newest_change = newest.batches.first().and_then(|b| {
        b.column(0)
            .as_primitive_opt::<TimestampMillisecondType>()
            .filter(|a| a.is_valid(0))
            .map(|a| a.value(0))
    });
    let now = chrono::Utc::now().timestamp_millis();
    let cutoff = newest_change.map_or(now, |n| n.min(now)) - RECENT_MS;
    let sql = format!(
        "SELECT * FROM alarms WHERE state <> 'cleared' OR CAST(raised_at AS BIGINT) >= {cutoff} ORDER BY raised_at, alarm_id"
    );
    for batch in store.query_all(&sql).await?.batches {
        crate::read::alarms_from(&batch, &mut out.alarms)?;
    }
    Ok(out)
}

/// Which keys are stored. A scan of the `device_id` and `seq` columns of
/// every table: ingest asks only for seqs older than the index keeps.
pub(crate) async fn stored_seqs(
    store: &EmbeddedStore,
    keys: &[SeqKey],
) -> Result<HashSet<SeqKey>, StoreError> {
    let mut found = HashSet::new();
    if keys.is_empty() {
        return Ok(found);
    }
    let wanted: HashSet<&SeqKey> = keys.iter().collect();
    // Device ids are letters and digits only: safe inside quotes.
    let ids: BTreeSet<String> = keys.iter().map(|(d, _)| format!("'{d}'")).collect();
    let seqs: BTreeSet<String> = keys.iter().map(|(_, s)| s.to_string()).collect();
    let filter = format!(
        "device_id IN ({}) AND seq IN ({})",
        ids.into_iter().collect::<Vec<_>>().join(", "),
        seqs.into_iter().collect::<Vec<_>>().join(", ")
    );
    let selects: Vec<String> = Table::READINGS
        .iter()
        .chain([&Table::DeadLetters])
        .map(|t| format!("SELECT device_id, seq FROM {} WHERE {filter}", t.name()))
        .collect();
    for batch in store.query_all(&selects.join(" UNION ALL ")).await?.batches {
        let ids = batch
            .column(0)
            .as_string_opt::<i32>()
            .ok_or_else(|| bad("device_id is not text".into()))?;
        let seqs = batch
            .column(1)
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| bad("seq is not u64".into()))?;
        for i in 0..batch.num_rows() {
            let Ok(id) = DeviceId::new(ids.value(i)) else {
                continue;
            };
            let key = (id, seqs.value(i));
            if wanted.contains(&key) {
                found.insert(key);
            }
        }
    }
    Ok(found)
}
