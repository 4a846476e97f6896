-- TimescaleDB: hypertables by time. A unique index on a hypertable must
-- contain its time column, so readings are unique by (device_id, seq, ts):
-- a re-sent reading carries the device's own `ts` again, so duplicates still
-- collide. Alarm changes are partitioned by `raised_at`, which every version
-- of an alarm shares, so (alarm_id, version, raised_at) is (alarm_id, version).
-- Chunks: a day of readings (a fleet's daily indexes fit in memory), a month
-- of alarm changes, a week of dead letters.

SELECT create_hypertable('elevator_readings', by_range('ts', INTERVAL '1 day'));
SELECT create_hypertable('ride_readings', by_range('ts', INTERVAL '1 day'));
SELECT create_hypertable('video_events', by_range('ts', INTERVAL '1 day'));
SELECT create_hypertable('filling_records', by_range('ts', INTERVAL '1 day'));
SELECT create_hypertable('device_events', by_range('ts', INTERVAL '1 day'));
SELECT create_hypertable('alarm_changes', by_range('raised_at', INTERVAL '30 days'));
SELECT create_hypertable('dead_letters', by_range('received_at', INTERVAL '7 days'));

CREATE UNIQUE INDEX ON elevator_readings (device_id, seq, ts);
CREATE UNIQUE INDEX ON ride_readings (device_id, seq, ts);
CREATE UNIQUE INDEX ON video_events (device_id, seq, ts);
CREATE UNIQUE INDEX ON filling_records (device_id, seq, ts);
CREATE UNIQUE INDEX ON device_events (device_id, seq, ts);
CREATE UNIQUE INDEX ON alarm_changes (alarm_id, version, raised_at);

CREATE INDEX ON elevator_readings (equipment_id, ts DESC);
CREATE INDEX ON ride_readings (equipment_id, ts DESC);
CREATE INDEX ON video_events (equipment_id, ts DESC);
CREATE INDEX ON filling_records (equipment_id, ts DESC);
CREATE INDEX ON device_events (equipment_id, ts DESC);
CREATE INDEX ON alarm_changes (equipment_id, raised_at DESC);
CREATE INDEX ON alarm_changes (updated_at);

-- Compression settings (the policy that compresses old chunks is set at
-- every start from the configuration). One device's rows compress together.
ALTER TABLE elevator_readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC, seq DESC');
ALTER TABLE ride_readings SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC, seq DESC');
ALTER TABLE video_events SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC, seq DESC');
ALTER TABLE filling_records SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC, seq DESC');
ALTER TABLE device_events SET (timescaledb.compress, timescaledb.compress_segmentby = 'device_id', timescaledb.compress_orderby = 'ts DESC, seq DESC');
ALTER TABLE dead_letters SET (timescaledb.compress, timescaledb.compress_segmentby = 'reason', timescaledb.compress_orderby = 'received_at DESC');
