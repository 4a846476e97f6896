-- One row per equipment and hour, and per region and day, over the rollups
-- of 0002 (continuous aggregates or plain views alike).

CREATE VIEW equipment_hourly AS
    SELECT bucket, equipment_id, region,
           coalesce(r.runs, 0) AS runs, coalesce(f.faults, 0) AS faults,
           coalesce(a.alarms, 0) AS alarms, coalesce(a.critical, 0) AS critical_alarms
    FROM equipment_runs_hourly r
    FULL JOIN equipment_faults_hourly f USING (bucket, equipment_id, region)
    FULL JOIN equipment_alarms_hourly a USING (bucket, equipment_id, region);

CREATE VIEW region_daily AS
    SELECT day, region,
           coalesce(i.inspections, 0) AS inspections, coalesce(i.failed, 0) AS failed_inspections,
           coalesce(a.alarms, 0) AS alarms, coalesce(a.critical, 0) AS critical_alarms
    FROM region_inspections_daily i
    FULL JOIN region_alarms_daily a USING (day, region);
