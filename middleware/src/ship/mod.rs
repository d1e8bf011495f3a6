//! Shipping sealed segments to an object store (feature `ship`), for fleets whose
//! collectors do not run next to the writers.
//!
//! A sealed segment `<spool>/<chain>/<name>.seg` goes to `<location>/spool/<chain>/<name>.seg`
//! (and one the journal found corrupt, `<name>.corrupt`, likewise, for the compactor to
//! quarantine and report):
//!
//! - **idempotent**: a conditional create (put-if-absent). If the name is taken, the
//!   object is read back: the same bytes are fine (an upload repeated after a crash),
//!   different bytes are a [`ShipError::Conflict`] (an alarm, logged and counted),
//!   never an overwrite;
//! - **verified**: the blake3 of the file travels as object metadata (`blake3`, where the
//!   store keeps metadata) and the object is read back and hashed before the local file
//!   is removed;
//! - **retried** with exponential backoff by the [`Shipper`]; a local segment is removed
//!   only after its upload is verified, and never because shipping fell behind: the
//!   backlog is a metric ([`ShipMetrics::backlog`]) and a log line.
//!
//! A chain's `lost` file (losses no record states yet; see
//! [`UnstatedLosses`](crate::journal::UnstatedLosses)) goes to
//! `<location>/spool/<chain>/lost` once the chain's writer is gone (its lock is free),
//! replacing an earlier upload and verified the same way; the local file stays, for a
//! writer that comes back. Without it, a writer that never comes back would leave the
//! count on its own machine, where no compactor of the fleet reads it.
//!
//! The journal ships its own chain when configured with
//! [`JournalConfig::ship_to`](crate::journal::JournalConfig::ship_to); `kiroku ship`
//! ships a whole spool.

mod profile;
mod shipper;
mod store;

use std::path::PathBuf;

use bytes::Bytes;
use object_store::{Attribute, Attributes, GetOptions, PutMode, PutOptions, PutPayload, UpdateVersion};

pub use shipper::{ShipMetrics, ShipScope, Shipper, ShipperConfig};
pub use store::{LockMode, ObjectLocation, install_crypto_provider};

/// Errors of shipping.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ShipError {
    /// The location URL or its configuration is unusable.
    #[error("object store {url}: {message}")]
    Config {
        /// The location (without credentials).
        url: String,
        /// What is wrong.
        message: String,
    },
    /// A store operation failed (network, permissions, ...); retried by the shipper.
    #[error("object store {url}: {message}")]
    Store {
        /// The object (without credentials).
        url: String,
        /// The store's error.
        message: String,
    },
    /// An object with this name and different bytes exists: never overwritten.
    #[error(
        "conflict: {url} already exists with different content (blake3 {remote}, local file {local} has blake3 {local_digest}); not overwritten"
    )]
    Conflict {
        /// The object.
        url: String,
        /// Its blake3.
        remote: String,
        /// The local file.
        local: PathBuf,
        /// The local file's blake3.
        local_digest: String,
    },
    /// The object read back after upload is not what was sent.
    #[error("verification failed for {url}: {message}")]
    Verify {
        /// The object.
        url: String,
        /// What differs.
        message: String,
    },
    /// The shipper thread could not start, or has stopped.
    #[error("shipper: {0}")]
    Shipper(String),
    /// A local file could not be read or removed.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        message: String,
    },
}

impl ShipError {
    /// True when retrying may help (the store or the network failed).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store { .. } | Self::Verify { .. })
    }
}

/// Object metadata key holding a segment's blake3 (hex).
pub const BLAKE3_METADATA: &str = "blake3";

/// What an upload found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Created and verified.
    Created,
    /// Already there with the same bytes (an earlier attempt).
    AlreadyPresent,
}

fn hex(b: &[u8]) -> String {
    kiroku_schemas::digest::to_hex(b)
}

/// An object as read: its bytes, attributes (metadata) and version.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The content.
    pub bytes: Bytes,
    /// Its attributes, e.g. the [`BLAKE3_METADATA`] entry.
    pub attributes: Attributes,
    /// Its version (etag), for a conditional replace.
    pub version: UpdateVersion,
}

/// Read an object whole; `Ok(None)` when it does not exist.
pub async fn get_object(loc: &ObjectLocation, rel: &str) -> Result<Option<Fetched>, ShipError> {
    let key = loc.key(rel);
    let err = |e: object_store::Error| ShipError::Store { url: loc.url_of(rel), message: e.to_string() };
    match loc.store().get_opts(&key, GetOptions::default()).await {
        Ok(r) => {
            let attributes = r.attributes.clone();
            let version = UpdateVersion { e_tag: r.meta.e_tag.clone(), version: r.meta.version.clone() };
            Ok(Some(Fetched { bytes: r.bytes().await.map_err(err)?, attributes, version }))
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(err(e)),
    }
}

/// Upload `bytes` as `rel` under `loc` if no object has that name, then verify it.
/// `local` names the source in messages.
pub async fn put_verified(
    loc: &ObjectLocation,
    rel: &str,
    bytes: Bytes,
    local: &std::path::Path,
) -> Result<Upload, ShipError> {
    let digest = hex(blake3::hash(&bytes).as_bytes());
    let url = loc.url_of(rel);
    let mut attributes = Attributes::new();
    if !loc.is_local() {
        attributes.insert(Attribute::Metadata(BLAKE3_METADATA.into()), digest.clone().into());
    }
    let opts = PutOptions { mode: PutMode::Create, attributes, ..PutOptions::default() };
    let created = match loc.store().put_opts(&loc.key(rel), PutPayload::from_bytes(bytes), opts).await {
        Ok(_) => true,
        Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => false,
        Err(e) => return Err(ShipError::Store { url, message: e.to_string() }),
    };
    let Some(Fetched { bytes: remote, attributes: attrs, .. }) = get_object(loc, rel).await? else {
        return Err(ShipError::Verify { url, message: "object not found after upload".into() });
    };
    let remote_digest = hex(blake3::hash(&remote).as_bytes());
    if remote_digest != digest {
        if created {
            return Err(ShipError::Verify { url, message: format!("read back blake3 {remote_digest}, sent {digest}") });
        }
        return Err(ShipError::Conflict { url, remote: remote_digest, local: local.to_owned(), local_digest: digest });
    }
    if let Some(meta) = attrs.get(&Attribute::Metadata(BLAKE3_METADATA.into()))
        && meta.as_ref() != digest
    {
        return Err(ShipError::Verify {
            url,
            message: format!("object metadata says blake3 {}, content is {digest}", meta.as_ref()),
        });
    }
    Ok(if created { Upload::Created } else { Upload::AlreadyPresent })
}

/// Upload `bytes` as `rel` under `loc`, replacing what is there, then read it back
/// and compare. `local` names the source in messages.
pub async fn put_replacing(
    loc: &ObjectLocation,
    rel: &str,
    bytes: Bytes,
    local: &std::path::Path,
) -> Result<(), ShipError> {
    let url = loc.url_of(rel);
    let opts = PutOptions { mode: PutMode::Overwrite, ..PutOptions::default() };
    loc.store()
        .put_opts(&loc.key(rel), PutPayload::from_bytes(bytes.clone()), opts)
        .await
        .map_err(|e| ShipError::Store { url: url.clone(), message: e.to_string() })?;
    match get_object(loc, rel).await? {
        Some(f) if f.bytes == bytes => Ok(()),
        Some(_) => Err(ShipError::Verify { url, message: format!("read back other bytes than {}", local.display()) }),
        None => Err(ShipError::Verify { url, message: "object not found after upload".into() }),
    }
}

/// The object name of a chain's `lost` file under a location.
pub fn lost_key(chain: &str) -> String {
    format!("spool/{chain}/{}", crate::journal::LOST_FILE)
}

/// The object name of a segment of `chain` under a location.
pub fn segment_key(chain: &str, name: &str) -> String {
    format!("spool/{chain}/{name}")
}

/// Upload one sealed segment file (verified; see the module docs); returns what the
/// upload found and the file's size. The local file is left in place: removing it is
/// the caller's decision.
pub async fn ship_segment(
    loc: &ObjectLocation,
    chain: &str,
    path: &std::path::Path,
) -> Result<(Upload, u64), ShipError> {
    let bytes = std::fs::read(path).map_err(|e| ShipError::Io { path: path.to_owned(), message: e.to_string() })?;
    let len = bytes.len() as u64;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    Ok((put_verified(loc, &segment_key(chain, name), Bytes::from(bytes), path).await?, len))
}

/// Make sure a store is reachable and writable from here (used at startup, so a bad
/// endpoint or credential is reported at once rather than at the first seal).
pub async fn check_reachable(loc: &ObjectLocation) -> Result<(), ShipError> {
    let key = loc.key("spool");
    loc.store()
        .list_with_delimiter(Some(&key))
        .await
        .map(|_| ())
        .map_err(|e| ShipError::Store { url: loc.url_of("spool"), message: e.to_string() })
}
