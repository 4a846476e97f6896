//! Integration tests of the embedded store: real temp directories, real
//! files, the public API only.

mod fixtures;

mod durability;
mod parquet;
mod recover;
mod reference;
mod roundtrip;
mod seq_history;
mod sql;
