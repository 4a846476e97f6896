-- Plain PostgreSQL: keys, B-tree indexes for the usual lookups and BRIN
-- indexes on time (rows arrive roughly in time order, so BRIN stays tiny).

ALTER TABLE elevator_readings ADD UNIQUE (device_id, seq);
ALTER TABLE ride_readings ADD UNIQUE (device_id, seq);
ALTER TABLE video_events ADD UNIQUE (device_id, seq);
ALTER TABLE filling_records ADD UNIQUE (device_id, seq);
ALTER TABLE device_events ADD UNIQUE (device_id, seq);
ALTER TABLE alarm_changes ADD PRIMARY KEY (alarm_id, version);

CREATE INDEX ON elevator_readings USING brin (ts);
CREATE INDEX ON ride_readings USING brin (ts);
CREATE INDEX ON video_events USING brin (ts);
CREATE INDEX ON filling_records USING brin (ts);
CREATE INDEX ON device_events USING brin (ts);
CREATE INDEX ON alarm_changes USING brin (raised_at);
CREATE INDEX ON dead_letters USING brin (received_at);

CREATE INDEX ON elevator_readings (equipment_id, ts);
CREATE INDEX ON ride_readings (equipment_id, ts);
CREATE INDEX ON video_events (equipment_id, ts);
CREATE INDEX ON filling_records (equipment_id, ts);
CREATE INDEX ON device_events (equipment_id, ts);
CREATE INDEX ON alarm_changes (equipment_id, raised_at);
CREATE INDEX ON alarm_changes (updated_at);
