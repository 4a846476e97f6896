-- TimescaleDB: continuous aggregates, created empty (their refresh policies
-- are set at every start) and real-time, so the newest, not yet materialised
-- buckets are computed on read (off by default since TimescaleDB 2.13).

CREATE MATERIALIZED VIEW equipment_runs_hourly WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket, equipment_id, region,
           max(run_count) - min(run_count) AS runs, count(*) AS readings
    FROM elevator_readings GROUP BY 1, 2, 3
    WITH NO DATA;

CREATE MATERIALIZED VIEW equipment_faults_hourly WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 hour', ts) AS bucket, equipment_id, region,
           count(*) FILTER (WHERE active) AS faults
    FROM device_events GROUP BY 1, 2, 3
    WITH NO DATA;

CREATE MATERIALIZED VIEW equipment_alarms_hourly WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 hour', raised_at) AS bucket, equipment_id, region,
           count(*) AS alarms, count(*) FILTER (WHERE severity = 'critical') AS critical
    FROM alarm_changes WHERE version = 1 GROUP BY 1, 2, 3
    WITH NO DATA;

CREATE MATERIALIZED VIEW region_inspections_daily WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 day', ts) AS day, region,
           count(*) AS inspections, count(*) FILTER (WHERE result <> 'ok') AS failed
    FROM filling_records GROUP BY 1, 2
    WITH NO DATA;

CREATE MATERIALIZED VIEW region_alarms_daily WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 day', raised_at) AS day, region,
           count(*) AS alarms, count(*) FILTER (WHERE severity = 'critical') AS critical
    FROM alarm_changes WHERE version = 1 GROUP BY 1, 2
    WITH NO DATA;

ALTER MATERIALIZED VIEW equipment_runs_hourly SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW equipment_faults_hourly SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW equipment_alarms_hourly SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW region_inspections_daily SET (timescaledb.materialized_only = false);
ALTER MATERIALIZED VIEW region_alarms_daily SET (timescaledb.materialized_only = false);
