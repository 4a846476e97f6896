//! Integration tests of the embedded store: real temp directories, real
//! files, the public API only.

mod fixtures;

mod durability;
mod import;
mod parquet;
mod reads;
mod recover;
mod reference;
mod roundtrip;
mod seq_history;
mod sql;
mod typed_reads;
