-- Alarms raised per hour by rule and region (a plain view without
-- TimescaleDB, as the other rollups).
CREATE VIEW rule_alarms_hourly AS
    SELECT date_bin(INTERVAL '1 hour', raised_at, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,
           rule, region, count(*) AS alarms
    FROM alarm_changes WHERE version = 1 GROUP BY 1, 2, 3;
