//! The session, one scripted conversation per rule (SPEC.md §15), written as request/response
//! transcripts against the server model, plus property tests of random deliveries and of a
//! hostile server; one module per concern. proptest keeps the property tests' regression seeds
//! in `tests/proptest-regressions/properties.txt` (its place for a test crate with a `main.rs`).

mod common;
mod flood_waits;
mod join;
mod leaving;
mod messages;
mod properties;
mod pruning;
mod recovery;
mod requests;
mod sources;
mod sync;
