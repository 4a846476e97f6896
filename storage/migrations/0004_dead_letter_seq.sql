-- The seq a dead letter took: its device's ack covers it and a re-send of
-- it is a duplicate (docs/ingest.md). Null when it took none. Ingest looks
-- dead letters up by (device_id, seq) after a restart, hence the index.
ALTER TABLE dead_letters ADD COLUMN seq bigint;
CREATE INDEX dead_letters_device_seq ON dead_letters (device_id, seq) WHERE seq IS NOT NULL;
