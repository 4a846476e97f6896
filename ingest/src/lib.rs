//! Vigil's ingest: the embedded MQTT broker, device auth, decoding, de-duplication and ack watermarks.
