//! The contracts of kiroku, shared by the middleware that writes audit logs and the
//! collector that verifies and compacts them.
//!
//! - [`record`]: the audit record v1, one per AI inference, serialised as JSON.
//! - [`segment`]: the hash-chained segment file: header, frames, writer, reader, verifier.
//! - [`merkle`]: RFC 9162 Merkle tree hashing, inclusion and consistency proofs.
//! - [`checkpoint`]: C2SP tlog-checkpoint signed notes with Ed25519 keys.
//! - [`proof`]: the C2SP tlog-proof text format for one record's inclusion proof.
//!
//! `FORMAT.md` next to this crate is the byte-level specification; `vectors/` holds test
//! vectors for independent verifiers.
//!
//! ```
//! use kiroku_schemas::{checkpoint::NoteSigner, segment::{SegmentHeader, SegmentWriter, verify_segment, VerifyOptions}, ChainId};
//!
//! let signer = NoteSigner::generate("example-log")?;
//! let chain = ChainId::new_v7();
//! let mut w = SegmentWriter::new(Vec::new(), SegmentHeader::genesis(chain))?;
//! w.append_record(br#"{"hello":"world"}"#)?;
//! let bytes = w.seal(&signer, "kiroku", kiroku_schemas::Timestamp::now())?;
//!
//! let opts = VerifyOptions::sealed().with_verifier(signer.verifier());
//! let report = verify_segment(&bytes[..], &opts)?;
//! assert_eq!(report.records, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs, rust_2018_idioms, unreachable_pub)]

pub mod chain_id;
pub mod checkpoint;
pub mod digest;
pub mod merkle;
pub mod proof;
pub mod record;
pub mod segment;
mod text;
pub mod time;

pub use chain_id::ChainId;
pub use digest::Hash;
pub use record::AuditRecord;
pub use time::Timestamp;
