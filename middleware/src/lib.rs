//! kiroku: one tamper-evident audit record per AI inference.
//!
//! [`AuditLayer`] wraps any `tower::Service<http::Request<B>>` that serves AI inference
//! (an axum router, a hyper service, a reverse proxy). For every request it records
//! who asked, what was asked, what answered, on which sources the answer was based,
//! how it was marked and what safeguards decided, and hands the record to a
//! [`Journal`] that writes it into a hash-chained, append-only segment file off the
//! hot path. See the crate README and `schemas/FORMAT.md` for the file format.
//!
//! Module map: [`layer`](AuditLayer) (configuration), `service` / `future` / `body`
//! (the tower shape and the tap bodies), [`handle`](AuditHandle) (annotations from the
//! application), [`extract`] (provenance from OpenAI/Anthropic-style bodies),
//! [`redact`] (personal data and secrets), [`sse`] (the event-stream parser),
//! [`journal`] (the writer).
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

mod body;
mod caller;
mod exchange;
pub mod extract;
mod future;
mod handle;
pub mod journal;
mod layer;
pub mod redact;
mod service;
#[cfg(feature = "ship")]
pub mod ship;
pub mod sse;
#[cfg(feature = "otel")]
pub mod telemetry;

pub use body::{AuditBody, BoxError, NotRecorded, RequestBody};
pub use caller::CallerPolicy;
pub use future::ResponseFuture;
pub use handle::{Annotations, AuditHandle};
pub use journal::{Durability, FailurePolicy, Journal, JournalConfig};
pub use layer::AuditLayer;
pub use service::AuditService;

/// The README's Rust samples compile (as doctests).
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
