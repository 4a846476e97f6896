//! Ingest over real sockets: a real rumqttc client talks to the embedded
//! broker on a free loopback port; the store is a test double that records
//! writes and reports ack tokens durable when the test says so.

mod harness;

mod acks;
mod auth;
mod fairness;
mod feed;
mod fleet;
mod lifecycle;
mod lossless;
mod rejections;
mod sessions;
mod tls;
