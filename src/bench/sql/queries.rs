//! The analyst queries of `vigil bench sql`, in one place: what each asks,
//! the SQL an analyst writes against the documented tables (docs/sql.md),
//! and DuckDB's spelling where its dialect differs (docs/benchmarks.md).
//!
//! Times are literals relative to the end of the data set (`{end}`, …), so
//! the answers do not depend on the day the bench runs.

use super::data::Period;

/// One analyst query.
pub(super) struct Query {
    /// Short name, used in the report and `--only`.
    pub id: &'static str,
    pub what: &'static str,
    /// The SQL as an analyst sends it to Vigil.
    pub sql: &'static str,
    /// DuckDB's text where its dialect differs: `(Vigil's, DuckDB's)` pairs
    /// replaced in `sql`.
    pub duckdb: &'static [(&'static str, &'static str)],
}

pub(super) const QUERIES: &[Query] = &[
    Query {
        id: "faults_per_day",
        what: "faults (elevator alarms) per equipment per day over the last 30 days",
        sql: "SELECT equipment_id, date_trunc('day', raised_at) AS on_day, count(*) AS faults
FROM alarms
WHERE rule LIKE 'elevator.%' AND raised_at >= TIMESTAMP '{start30}' AND raised_at < TIMESTAMP '{end}'
GROUP BY equipment_id, date_trunc('day', raised_at)
ORDER BY equipment_id, on_day",
        duckdb: &[],
    },
    Query {
        id: "top_trapped",
        what: "top 100 elevators by trapped-passenger alarms over the last 30 days, with their address",
        sql: "SELECT a.equipment_id, e.address, a.region, count(*) AS trapped
FROM alarms a JOIN equipment e ON e.equipment_id = a.equipment_id
WHERE a.rule = 'elevator.trapped' AND a.raised_at >= TIMESTAMP '{start30}' AND a.raised_at < TIMESTAMP '{end}'
GROUP BY a.equipment_id, e.address, a.region
ORDER BY trapped DESC, a.equipment_id
LIMIT 100",
        duckdb: &[],
    },
    Query {
        id: "door_close_p95",
        what: "p95 door-closing time (closing → closed, seconds) per region over the last day",
        sql: "WITH d AS (
  SELECT region, door, ts,
         lead(door) OVER (PARTITION BY device_id ORDER BY ts) AS next_door,
         lead(ts) OVER (PARTITION BY device_id ORDER BY ts) AS next_ts
  FROM elevator_readings
  WHERE ts >= TIMESTAMP '{start1}' AND ts < TIMESTAMP '{end}'
)
SELECT region, count(*) AS closings,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY (CAST(next_ts AS BIGINT) - CAST(ts AS BIGINT)) / 1000.0) AS p95_s
FROM d
WHERE door = 'closing' AND next_door = 'closed'
GROUP BY region
ORDER BY region",
        // DuckDB casts no timestamp to a number; epoch_ms gives the same milliseconds.
        duckdb: &[
            ("CAST(next_ts AS BIGINT)", "epoch_ms(next_ts)"),
            ("CAST(ts AS BIGINT)", "epoch_ms(ts)"),
        ],
    },
    Query {
        id: "one_elevator_week",
        what: "every reading of one elevator over the last week",
        sql: "SELECT * FROM elevator_readings
WHERE device_id = '{device}' AND ts >= TIMESTAMP '{start7}' AND ts < TIMESTAMP '{end}'
ORDER BY ts",
        duckdb: &[],
    },
    Query {
        id: "online_rate",
        what: "online rate per county over the last 30 days: the share of 5-minute slots each elevator was heard in",
        sql: "SELECT e.region AS county, count(*) AS elevators,
       round(100.0 * sum(coalesce(h.slots, 0)) / (count(*) * {slots30}), 2) AS online_pct
FROM equipment e
LEFT JOIN (
  SELECT equipment_id, count(DISTINCT date_bin(INTERVAL '5 minutes', ts, TIMESTAMP '2000-01-01')) AS slots
  FROM elevator_readings
  WHERE ts >= TIMESTAMP '{start30}' AND ts < TIMESTAMP '{end}'
  GROUP BY equipment_id
) h ON h.equipment_id = e.equipment_id
WHERE e.category = 'elevator'
GROUP BY e.region
ORDER BY county",
        // DuckDB calls date_bin time_bucket; its origin must be a timestamp with time zone too.
        duckdb: &[(
            "date_bin(INTERVAL '5 minutes', ts, TIMESTAMP '2000-01-01')",
            "time_bucket(INTERVAL '5 minutes', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00')",
        )],
    },
];

impl Query {
    /// Vigil's text with the period's literals in.
    pub(super) fn vigil(&self, period: &Period, device: &str) -> String {
        fill(self.sql, period, device)
    }

    /// DuckDB's text with the period's literals in.
    pub(super) fn duckdb(&self, period: &Period, device: &str) -> String {
        let mut sql = self.sql.to_owned();
        for (from, to) in self.duckdb {
            sql = sql.replace(from, to);
        }
        fill(&sql, period, device)
    }
}

fn fill(sql: &str, period: &Period, device: &str) -> String {
    let day = 86_400_000;
    sql.replace("{end}", &literal(period.end_ms))
        .replace("{start30}", &literal(period.end_ms - 30 * day))
        .replace("{start7}", &literal(period.end_ms - 7 * day))
        .replace("{start1}", &literal(period.end_ms - day))
        .replace("{slots30}", &(30 * 288).to_string())
        .replace("{device}", device)
}

/// `2026-12-02 00:00:00`: UTC, as a plain timestamp literal (both engines
/// compare it with the UTC `ts` columns as UTC).
fn literal(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_translation_applies_and_every_placeholder_is_filled() {
        let period = Period {
            start_ms: 1_793_491_200_000,
            end_ms: 1_793_491_200_000 + 31 * 86_400_000,
        };
        for q in QUERIES {
            for (from, _) in q.duckdb {
                assert!(q.sql.contains(from), "{}: {from} is not in its SQL", q.id);
            }
            for sql in [q.vigil(&period, "EL000001"), q.duckdb(&period, "EL000001")] {
                assert!(!sql.contains('{'), "{}: {sql}", q.id);
            }
        }
        assert!(
            QUERIES[0]
                .vigil(&period, "x")
                .contains("'2026-11-02 00:00:00'")
        );
    }
}
