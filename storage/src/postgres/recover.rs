//! What the engine needs back after a restart, read from PostgreSQL with
//! times as epoch milliseconds.

use tokio_postgres::{Client, Row};
use vigil_model::{
    Alarm, AlarmId, AlarmState, DeviceId, EpochMs, EquipmentId, OwnerId, Region, RuleId, Severity,
};

use crate::embedded::schema::Table;
use crate::{Recovery, StoreError};

/// Same window as the embedded backend: alarms raised within a day of the
/// newest change come back even when cleared (rules count repeats).
const RECENT_MS: EpochMs = 24 * 3600 * 1000;

fn bad(why: String) -> StoreError {
    StoreError::Other(format!("recovering state: {why}"))
}

fn ms(col: &str) -> String {
    format!("(extract(epoch FROM {col}) * 1000)::bigint")
}

pub(crate) async fn recover(client: &mut Client) -> Result<Recovery, StoreError> {
    let mut out = Recovery::default();
    let per_table: Vec<String> = Table::READINGS
        .iter()
        .map(|t| {
            format!(
                "SELECT device_id, max(seq) AS seq, max(received_at) AS seen FROM {} GROUP BY device_id",
                t.name()
            )
        })
        .collect();
    let sql = format!(
        "SELECT device_id, max(seq), {} FROM ({}) AS t GROUP BY device_id",
        ms("max(seen)"),
        per_table.join(" UNION ALL ")
    );
    for row in client
        .query(&sql, &[])
        .await
        .map_err(StoreError::db("recovering devices"))?
    {
        let id = DeviceId::new(row.get::<_, &str>(0)).map_err(|e| bad(e.to_string()))?;
        out.last_seq.insert(id.clone(), row.get::<_, i64>(1) as u64);
        out.last_seen.insert(id, row.get::<_, i64>(2));
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
    let sql = format!(
        "SELECT alarm_id, rule, severity, state, equipment_id, device_id, category, owner_id, region,
                {}, {}, {}, count, details, version, {}, acknowledged_by, note
         FROM alarms
         WHERE state <> 'cleared' OR raised_at >= to_timestamp($1::double precision / 1000)
         ORDER BY raised_at, alarm_id",
        ms("raised_at"),
        ms("updated_at"),
        ms("cleared_at"),
        ms("acknowledged_at"),
    );
    let cutoff = cutoff as f64;
    for row in client
        .query(&sql, &[&cutoff])
        .await
        .map_err(StoreError::db("recovering alarms"))?
    {
        out.alarms.push(alarm(&row)?);
    }
    Ok(out)
}

fn alarm(row: &Row) -> Result<Alarm, StoreError> {
    let id: &str = row.get(0);
    let row_err = |what: String| bad(format!("alarm {id:?}: {what}"));
    let severity: &str = row.get(2);
    let state: &str = row.get(3);
    let details: &str = row.get(13);
    Ok(Alarm {
        alarm_id: AlarmId::new(id).map_err(|e| row_err(e.to_string()))?,
        rule: RuleId::new(row.get::<_, &str>(1)).map_err(|e| row_err(e.to_string()))?,
        severity: Severity::parse(severity)
            .ok_or_else(|| row_err(format!("severity {severity:?}")))?,
        state: AlarmState::parse(state).ok_or_else(|| row_err(format!("state {state:?}")))?,
        equipment_id: EquipmentId::new(row.get::<_, &str>(4))
            .map_err(|e| row_err(e.to_string()))?,
        device_id: row
            .get::<_, Option<&str>>(5)
            .map(DeviceId::new)
            .transpose()
            .map_err(|e| row_err(e.to_string()))?,
        category: row.get::<_, String>(6),
        owner_id: OwnerId::new(row.get::<_, &str>(7)).map_err(|e| row_err(e.to_string()))?,
        region: Region::new(row.get::<_, &str>(8)).map_err(|e| row_err(e.to_string()))?,
        raised_at: row.get(9),
        updated_at: row.get(10),
        cleared_at: row.get(11),
        count: row.get::<_, i32>(12) as u32,
        details: serde_json::from_str(details).map_err(|e| row_err(format!("details: {e}")))?,
        version: row.get::<_, i32>(14) as u32,
        acknowledged_at: row.get(15),
        acknowledged_by: row.get(16),
        note: row.get(17),
    })
}
