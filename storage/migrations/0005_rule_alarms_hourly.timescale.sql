-- Alarms raised per hour by rule and region: the panels that count one
-- rule (trapped passengers per hour) read this instead of alarm_changes.
-- Empty at creation, refreshed by the policy set at every start, and
-- real-time like the other rollups.
CREATE MATERIALIZED VIEW rule_alarms_hourly WITH (timescaledb.continuous) AS
    SELECT time_bucket(INTERVAL '1 hour', raised_at) AS bucket, rule, region,
           count(*) AS alarms
    FROM alarm_changes WHERE version = 1 GROUP BY 1, 2, 3
    WITH NO DATA;

ALTER MATERIALIZED VIEW rule_alarms_hourly SET (timescaledb.materialized_only = false);
