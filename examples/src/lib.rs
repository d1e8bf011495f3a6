//! Shared pieces of the examples: a deterministic OpenAI-compatible sample model.
//!
//! The sample model is what `kiroku demo`, the examples and the end-to-end tests serve:
//! real HTTP, real JSON and server-sent events in the OpenAI wire format, with answers
//! that depend only on the request, so tests can predict every byte.
#![warn(missing_docs)]

pub mod client;
pub mod sample;
