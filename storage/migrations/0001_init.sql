-- Vigil schema, version 1: the stored tables (same columns, in the same
-- order, as the embedded backend's Arrow schemas), the `alarms` view and the
-- backend's own bookkeeping. Keys, indexes and partitioning follow in
-- 0001_init.timescale.sql or 0001_init.plain.sql.

CREATE TABLE elevator_readings (
    device_id text NOT NULL, equipment_id text NOT NULL, category text NOT NULL,
    owner_id text NOT NULL, region text NOT NULL, seq bigint NOT NULL,
    ts timestamptz NOT NULL, received_at timestamptz NOT NULL,
    floor smallint NOT NULL, direction text NOT NULL, speed_mps real NOT NULL, door text NOT NULL,
    leveled boolean NOT NULL, occupied boolean NOT NULL, mode text NOT NULL,
    safety_circuit boolean NOT NULL, door_lock boolean NOT NULL, alarm_button boolean NOT NULL,
    power text NOT NULL, "limit" text NOT NULL, run_count bigint, load_pct real,
    extra text
);

CREATE TABLE ride_readings (
    device_id text NOT NULL, equipment_id text NOT NULL, category text NOT NULL,
    owner_id text NOT NULL, region text NOT NULL, seq bigint NOT NULL,
    ts timestamptz NOT NULL, received_at timestamptz NOT NULL,
    state text NOT NULL, speed_mps real NOT NULL, wind_mps real, restraints_locked boolean NOT NULL,
    vibration_mm_s real, brake text NOT NULL, passengers integer,
    extra text
);

CREATE TABLE video_events (
    device_id text NOT NULL, equipment_id text NOT NULL, category text NOT NULL,
    owner_id text NOT NULL, region text NOT NULL, seq bigint NOT NULL,
    ts timestamptz NOT NULL, received_at timestamptz NOT NULL,
    camera_id text NOT NULL, event text NOT NULL, confidence real NOT NULL, snapshot text,
    extra text
);

CREATE TABLE filling_records (
    device_id text NOT NULL, equipment_id text NOT NULL, category text NOT NULL,
    owner_id text NOT NULL, region text NOT NULL, seq bigint NOT NULL,
    ts timestamptz NOT NULL, received_at timestamptz NOT NULL,
    cylinder_code text NOT NULL, operator_id text NOT NULL, medium text NOT NULL,
    tare_kg real NOT NULL, net_kg real NOT NULL, pressure_mpa real, temp_c real,
    started_ms bigint NOT NULL, result text NOT NULL,
    extra text
);

CREATE TABLE device_events (
    device_id text NOT NULL, equipment_id text NOT NULL, category text NOT NULL,
    owner_id text NOT NULL, region text NOT NULL, seq bigint NOT NULL,
    ts timestamptz NOT NULL, received_at timestamptz NOT NULL,
    code text NOT NULL, text text, active boolean NOT NULL,
    extra text
);

CREATE TABLE alarm_changes (
    alarm_id text NOT NULL, version integer NOT NULL, rule text NOT NULL, severity text NOT NULL,
    state text NOT NULL, equipment_id text NOT NULL, device_id text, category text NOT NULL,
    owner_id text NOT NULL, region text NOT NULL,
    raised_at timestamptz NOT NULL, updated_at timestamptz NOT NULL, cleared_at timestamptz,
    count integer NOT NULL, details text NOT NULL,
    acknowledged_at timestamptz, acknowledged_by text, note text
);

CREATE TABLE dead_letters (
    received_at timestamptz NOT NULL, topic text NOT NULL, device_id text, reason text NOT NULL,
    detail text NOT NULL, payload bytea NOT NULL, payload_text text NOT NULL,
    payload_size bigint NOT NULL
);

-- The latest version of each alarm.
CREATE VIEW alarms AS
    SELECT DISTINCT ON (alarm_id) *
    FROM alarm_changes
    ORDER BY alarm_id, version DESC;

-- How far each local write-ahead log has been copied in: a batch is shipped
-- in the same transaction that moves its log's position, so a batch retried
-- after a lost commit reply is recognised and skipped.
CREATE TABLE vigil_wal_position (
    wal_id text PRIMARY KEY,
    segment bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The regions an analyst's query may see, keyed by the backend process that
-- runs it. Written by the engine's own login just before the query; the
-- analyst role cannot read or write it except through the scoped views.
CREATE TABLE vigil_query_scope (
    pid integer PRIMARY KEY,
    patterns text[] NOT NULL
);

-- Passwords of the read-only login roles, readable by the engine's login only.
CREATE TABLE vigil_role_secrets (
    role_name text PRIMARY KEY,
    secret text NOT NULL
);
