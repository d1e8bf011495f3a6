//! The archive manifest (`<archive>/_kiroku/manifest.json`): per chain, the seq range
//! compacted, each file's blake3, the chain head (last hash and Merkle frontier), and
//! the signed checkpoints seen. Written atomically (temp, fsync, rename, directory
//! fsync) after the Parquet files it names are durable, so a crash at any point
//! neither loses nor duplicates a record: files not named by the manifest are not part
//! of the archive and are rewritten by the next run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiroku_schemas::ChainId;
use kiroku_schemas::digest::{hash_from_hex, to_hex};
use kiroku_schemas::merkle::CompactRange;
use kiroku_schemas::segment::ChainState;
use serde::{Deserialize, Serialize};

use crate::error::CliError;

/// Manifest format version written while no chain was cut by retention: what every
/// kiroku reads.
pub const MANIFEST_VERSION: u32 = 1;

/// Manifest format version written once retention cut a chain ([`Retired`]), so that a
/// kiroku from before retention refuses the archive clearly instead of reporting the
/// removed records as deleted rows.
pub const MANIFEST_VERSION_RETIRED: u32 = 2;

/// One Parquet file of the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the archive root.
    pub path: String,
    /// First seq in the file.
    pub first_seq: u64,
    /// Last seq in the file.
    pub last_seq: u64,
    /// Rows.
    pub rows: u64,
    /// Bytes.
    pub bytes: u64,
    /// blake3 of the file, hex.
    pub blake3: String,
    /// The partition date (`YYYY-MM-DD`).
    pub date: String,
}

/// A segment file that was compacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// File name in the spool.
    pub name: String,
    /// blake3 of the file as it was read, hex.
    pub blake3: String,
}

/// What the archive holds of one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainEntry {
    /// Seq the next compacted record must have (= records archived).
    pub next_seq: u64,
    /// Hash of the last archived record, hex.
    pub last_hash: String,
    /// Merkle compact range of the archived records, hex hashes, largest first.
    pub frontier: Vec<String>,
    /// Signed checkpoint notes seen while compacting (seals and the last checkpoint of
    /// each segment), in order.
    pub checkpoints: Vec<String>,
    /// Files, in seq order.
    pub files: Vec<FileEntry>,
    /// Segment files compacted, in order.
    pub segments: Vec<SegmentEntry>,
    /// The oldest records, removed by retention (absent while nothing was removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retired: Option<Retired>,
}

/// Where a chain's archived records now begin, after retention removed the oldest
/// ones: enough of the chain's state at the cut (the last removed hash and the Merkle
/// compact range of the removed records) for `kiroku verify` to check the records that
/// remain, and for their inclusion proofs against later signed checkpoints. Those
/// checkpoints cover the removed records too, so an edited cut does not verify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    /// Records `[0, next_seq)` were removed; the archive holds the chain from `next_seq`.
    pub next_seq: u64,
    /// Hash of the last removed record (the `prev_hash` of the first one held), hex.
    pub last_hash: String,
    /// Merkle compact range of the removed records, hex hashes, largest first.
    pub frontier: Vec<String>,
    /// Files removed so far.
    pub files: u64,
    /// The newest partition date removed (`YYYY-MM-DD`).
    pub through_date: String,
    /// When the last removal was committed (RFC 3339).
    pub at: String,
}

/// The manifest.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// Chains by id.
    pub chains: BTreeMap<String, ChainEntry>,
}

impl ChainEntry {
    /// A chain with nothing archived.
    pub fn genesis(chain: ChainId) -> Self {
        Self::from_state(&ChainState::genesis(chain))
    }

    fn from_state(s: &ChainState) -> Self {
        Self {
            next_seq: s.next_seq,
            last_hash: to_hex(&s.last_hash),
            frontier: s.tree.hashes().iter().map(|h| to_hex(h)).collect(),
            checkpoints: Vec::new(),
            files: Vec::new(),
            segments: Vec::new(),
            retired: None,
        }
    }

    /// Record the chain state after a compaction step.
    pub fn set_state(&mut self, s: &ChainState) {
        let e = Self::from_state(s);
        self.next_seq = e.next_seq;
        self.last_hash = e.last_hash;
        self.frontier = e.frontier;
    }

    /// The chain state the next segment must continue.
    pub fn state(&self, chain: ChainId) -> Result<ChainState, CliError> {
        chain_state(chain, self.next_seq, &self.last_hash, &self.frontier, "head")
    }

    /// The chain state where the archived records begin: genesis, or the cut left by
    /// retention.
    pub fn start(&self, chain: ChainId) -> Result<ChainState, CliError> {
        match &self.retired {
            None => Ok(ChainState::genesis(chain)),
            Some(r) => chain_state(chain, r.next_seq, &r.last_hash, &r.frontier, "retired cut"),
        }
    }
}

impl Retired {
    /// The record of a cut at `state` (records `[0, state.next_seq)` removed).
    pub fn at_state(state: &ChainState, files: u64, through_date: String, at: String) -> Self {
        Self {
            next_seq: state.next_seq,
            last_hash: to_hex(&state.last_hash),
            frontier: state.tree.hashes().iter().map(|h| to_hex(h)).collect(),
            files,
            through_date,
            at,
        }
    }
}

/// A chain state from its manifest form; `what` names the entry in errors.
fn chain_state(
    chain: ChainId,
    next_seq: u64,
    last_hash: &str,
    frontier: &[String],
    what: &str,
) -> Result<ChainState, CliError> {
    let bad = |m: &str| CliError::Corrupt(format!("manifest entry of chain {chain}, {what}: {m}"));
    let last_hash = hash_from_hex(last_hash).map_err(|_| bad("last_hash is not a hex digest"))?;
    let hashes = frontier
        .iter()
        .map(|h| hash_from_hex(h))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| bad("frontier is not hex digests"))?;
    let tree = CompactRange::from_parts(next_seq, hashes).ok_or_else(|| bad("frontier does not match next_seq"))?;
    Ok(ChainState { chain_id: chain, next_seq, last_hash, tree })
}

impl Manifest {
    /// Where the manifest of `archive` lives.
    pub fn path(archive: &Path) -> PathBuf {
        archive.join("_kiroku").join("manifest.json")
    }

    /// The manifest of a new archive.
    pub fn empty() -> Self {
        Self { version: MANIFEST_VERSION, chains: BTreeMap::new() }
    }

    /// Parse a stored manifest; `what` names it in errors.
    pub fn parse(bytes: &[u8], what: &str) -> Result<Self, CliError> {
        let m: Self = serde_json::from_slice(bytes).map_err(|e| CliError::Corrupt(format!("{what}: {e}")))?;
        if !(MANIFEST_VERSION..=MANIFEST_VERSION_RETIRED).contains(&m.version) {
            return Err(CliError::Usage(format!("{what}: manifest version {} is not supported", m.version)));
        }
        Ok(m)
    }

    /// Load, or an empty manifest when the archive is new.
    pub fn load(archive: &Path) -> Result<Self, CliError> {
        let path = Self::path(archive);
        match std::fs::read(&path) {
            Ok(bytes) => Self::parse(&bytes, &path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::empty()),
            Err(e) => Err(CliError::io(&path, e)),
        }
    }

    /// Write atomically.
    pub fn save(&self, archive: &Path) -> Result<(), CliError> {
        let path = Self::path(archive);
        let dir = path.parent().unwrap_or(archive);
        std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
        let bytes = self.to_json()?;
        kiroku::journal::write_atomic(&path, &bytes).map_err(|e| CliError::Io(e.to_string()))
    }

    /// The bytes to store, with the version the content needs.
    pub fn to_json(&self) -> Result<Vec<u8>, CliError> {
        #[derive(Serialize)]
        struct Stored<'a> {
            version: u32,
            chains: &'a BTreeMap<String, ChainEntry>,
        }
        let cut = self.chains.values().any(|e| e.retired.is_some());
        let version = if cut { MANIFEST_VERSION_RETIRED } else { MANIFEST_VERSION };
        serde_json::to_vec_pretty(&Stored { version, chains: &self.chains })
            .map_err(|e| CliError::Corrupt(e.to_string()))
    }

    /// True for an archive file (`records/date=.../<chain>-<first>-<last>.parquet`) whose
    /// records retention removed: a file a removal left behind, never a live one.
    pub fn is_retired_file(&self, rel: &str) -> bool {
        crate::retention::file_range(rel).is_some_and(|(chain, _, last)| {
            self.chains.get(chain).and_then(|e| e.retired.as_ref()).is_some_and(|r| last < r.next_seq)
        })
    }

    /// Every file of every chain.
    pub fn files(&self) -> impl Iterator<Item = (&str, &FileEntry)> {
        self.chains.iter().flat_map(|(c, e)| e.files.iter().map(move |f| (c.as_str(), f)))
    }
}
