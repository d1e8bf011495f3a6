//! kiroku: one tamper-evident audit record per AI inference.
//!
//! [`AuditLayer`] wraps any `tower::Service<http::Request<B>>` that serves AI inference
//! (an axum router, a hyper service, a reverse proxy). For every request it records
//! who asked, what was asked, what answered, on which sources the answer was based,
//! how it was marked and what safeguards decided, and hands the record to a
//! [`Journal`](journal::Journal) that writes it into a hash-chained, append-only
//! segment file off the hot path.
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod journal;

pub use journal::{Durability, FailurePolicy, Journal, JournalConfig};
pub mod extract;
pub mod redact;
pub mod sse;
