-- Plain PostgreSQL: the rollups are ordinary views (computed on read) with
-- the same names and columns as TimescaleDB's continuous aggregates.

CREATE VIEW equipment_runs_hourly AS
    SELECT date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
           equipment_id, region,
           max(run_count) - min(run_count) AS runs, count(*) AS readings
    FROM elevator_readings GROUP BY 1, 2, 3;

CREATE VIEW equipment_faults_hourly AS
    SELECT date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
           equipment_id, region,
           count(*) FILTER (WHERE active) AS faults
    FROM device_events GROUP BY 1, 2, 3;

CREATE VIEW equipment_alarms_hourly AS
    SELECT date_bin(INTERVAL '1 hour', raised_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
           equipment_id, region,
           count(*) AS alarms, count(*) FILTER (WHERE severity = 'critical') AS critical
    FROM alarm_changes WHERE version = 1 GROUP BY 1, 2, 3;

CREATE VIEW region_inspections_daily AS
    SELECT date_bin(INTERVAL '1 day', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day,
           region,
           count(*) AS inspections, count(*) FILTER (WHERE result <> 'ok') AS failed
    FROM filling_records GROUP BY 1, 2;

CREATE VIEW region_alarms_daily AS
    SELECT date_bin(INTERVAL '1 day', raised_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS day,
           region,
           count(*) AS alarms, count(*) FILTER (WHERE severity = 'critical') AS critical
    FROM alarm_changes WHERE version = 1 GROUP BY 1, 2;
