//! kiroku's collector: verify the journal's segments, compact them into a Parquet
//! archive exactly once, and answer investigators' questions from it; the `kiroku`
//! command.
//!
//! - [`spool`]: the collector's view of a spool (a trait, and the local directory);
//!   [`object_spool`]: segments shipped to an object store ([`remote`]).
//! - [`archive_store`]: where the archive is written (a directory, or an object store
//!   shared by several compactors with leases and conditional commits).
//! - [`compact`]: verified segments to Parquet with an atomic manifest ([`manifest`]);
//!   [`retention`]: removing what is older than a configured period.
//! - [`columns`]: the archive's Arrow schema and typed builders.
//! - [`archive`]: reading the archive with pruning and bloom filters.
//! - [`verify`]: full re-verification of a spool or an archive.
//! - [`evidence`]: incident evidence bundles and their verification.
//! - [`cli`]: the `kiroku` command; [`allocator`]: its allocator tuning for batch work.
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms)]

pub mod allocator;
pub mod archive;
pub mod archive_store;
pub mod cli;
pub mod columns;
pub mod compact;
pub mod error;
pub mod evidence;
pub mod manifest;
pub mod object_spool;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod proxy;
pub mod remote;
pub mod report;
pub mod retention;
pub mod spool;
pub mod verify;

pub use error::CliError;
