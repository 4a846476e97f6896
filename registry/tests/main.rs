//! One test binary for the crate (keeps link times down).

mod api;
mod common;
mod fuzz;
mod registry;
mod storage;
