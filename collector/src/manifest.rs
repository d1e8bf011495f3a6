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

/// Manifest format version written once a compacted segment is recorded by where its
/// records brought the chain ([`SegmentEnd`]) rather than by the blake3 of its file, so
/// that a kiroku from before refuses the archive clearly instead of taking every
/// compacted segment for a different file. Readers of this version read the earlier
/// ones too, retired chains included.
pub const MANIFEST_VERSION_SEGMENT_ENDS: u32 = 3;

/// Manifest format version written once a chain holds losses no record states
/// ([`Unstated`]), so that a kiroku from before refuses the archive clearly instead of
/// dropping the note when it rewrites the manifest. Readers of this version read the
/// earlier ones too.
pub const MANIFEST_VERSION_UNSTATED: u32 = 4;

/// Manifest format version written once a chain has an accepted gap ([`Gap`]), so that
/// a kiroku from before refuses the archive clearly instead of reporting the missing
/// records as deleted rows. Readers of this version read the earlier ones too.
pub const MANIFEST_VERSION_GAPS: u32 = 5;

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

/// A segment file that was compacted, and how to recognise it if it comes back (a run
/// that stopped after the manifest but before moving it, or the same file delivered
/// again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEntry {
    /// File name in the spool.
    pub name: String,
    /// blake3 of the whole file as it was read, hex: how manifests before version 3
    /// identify a segment (still honoured when read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Where its records brought the chain (version 3 on).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<SegmentEnd>,
}

/// Where a compacted segment's records brought its chain. The last record's hash
/// covers every record before it (each links the one before, the first the chain
/// before the segment): a file of that name that verifies and ends there holds exactly
/// the records that were compacted from it. The compactor knows this from verifying
/// the segment; a whole-file digest would cost a second hash of every byte read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentEnd {
    /// Seq after the segment's last record.
    pub next_seq: u64,
    /// Hash of the segment's last record (of the chain before it when it holds none),
    /// hex.
    pub last_hash: String,
}

impl SegmentEnd {
    /// Where `state` stands.
    pub fn of(state: &ChainState) -> Self {
        Self { next_seq: state.next_seq, last_hash: to_hex(&state.last_hash) }
    }

    /// True when `state` stands here.
    pub fn is(&self, state: &ChainState) -> bool {
        self.next_seq == state.next_seq && self.last_hash == to_hex(&state.last_hash)
    }
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
    /// Losses after the chain's last archived record that no record states: its writer
    /// is gone and left them in the chain's `lost` file (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unstated: Option<Unstated>,
    /// Seq ranges the archive will never hold, accepted by the operator (absent while
    /// there are none), in seq order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gaps: Vec<Gap>,
}

/// Records of a chain that the archive will never hold, by the operator's decision
/// (`kiroku compact --accept-gap`): the segment that held them failed verification and
/// no good copy of it exists. The chain goes on from the next segment's header (the
/// hash of the record before it and the Merkle compact range of every record before
/// it), which that segment's signed checkpoints confirm: a root computed from another
/// compact range would not match them. The bad segment stays in the spool's quarantine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    /// Records `[from_seq, to_seq)` are missing.
    pub from_seq: u64,
    /// The seq the chain goes on from.
    pub to_seq: u64,
    /// Hash of record `to_seq - 1` (the `prev_hash` of the first record after the
    /// gap), hex.
    pub last_hash: String,
    /// Merkle compact range of records `[0, to_seq)`, hex hashes, largest first.
    pub frontier: Vec<String>,
    /// When the gap was accepted (RFC 3339).
    pub at: String,
}

/// Records a chain's writer lost after the chain's last record and could not state in
/// a record: it stopped or died first, and no process of it came back. The journal
/// counted them in the chain's `lost` file; the compactor notes them here so that the
/// archive says they happened. A writer that comes back states them in its first
/// record (`records_lost_before` of the record at `at_seq`); the note goes once that
/// record is archived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unstated {
    /// Records lost.
    pub records_lost: u64,
    /// The seq of the record that would state them: the chain's next seq.
    pub at_seq: u64,
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
            frontier: frontier_hex(&s.tree),
            checkpoints: Vec::new(),
            files: Vec::new(),
            segments: Vec::new(),
            retired: None,
            unstated: None,
            gaps: Vec::new(),
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

    /// The chain state after the accepted gap from seq `from` to seq `to`, if the
    /// chain has that gap.
    pub fn after_gap(&self, chain: ChainId, from: u64, to: u64) -> Result<Option<ChainState>, CliError> {
        match self.gaps.iter().find(|g| g.from_seq == from && g.to_seq == to) {
            Some(g) => g.state_after(chain).map(Some),
            None => Ok(None),
        }
    }

    /// The accepted gap right after the records held back to back with record `seq`,
    /// if one follows them: no checkpoint signed after a gap proves a record before it.
    pub fn gap_after(&self, seq: u64) -> Option<&Gap> {
        self.gaps.iter().find(|g| g.from_seq > seq)
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

impl Unstated {
    /// What the note says, for reports.
    pub fn describe(&self) -> String {
        format!(
            "{} audit record(s) lost after the chain's last record and stated by no record: its writer is gone (the record at seq {} would state them)",
            self.records_lost, self.at_seq
        )
    }
}

impl Gap {
    /// A gap from `from_seq` to where `after` stands (the chain state the next segment's
    /// header gives), accepted at `at`.
    pub fn new(from_seq: u64, after: &ChainState, at: String) -> Self {
        Self {
            from_seq,
            to_seq: after.next_seq,
            last_hash: to_hex(&after.last_hash),
            frontier: frontier_hex(&after.tree),
            at,
        }
    }

    /// The chain state the archive's records go on from after the gap.
    pub fn state_after(&self, chain: ChainId) -> Result<ChainState, CliError> {
        let what = format!("gap from seq {}", self.from_seq);
        if self.to_seq <= self.from_seq {
            return Err(CliError::Corrupt(format!(
                "manifest entry of chain {chain}, {what}: it ends at seq {}, not after it",
                self.to_seq
            )));
        }
        chain_state(chain, self.to_seq, &self.last_hash, &self.frontier, &what)
    }

    /// Records missing.
    pub fn records(&self) -> u64 {
        self.to_seq.saturating_sub(self.from_seq)
    }

    /// What the gap is, for reports.
    pub fn describe(&self) -> String {
        format!(
            "seq {}..{} ({} record(s)) not in the archive: a gap accepted at {} (the segment that held them failed verification and had no good copy; it stays in the spool's quarantine)",
            self.from_seq,
            self.to_seq,
            self.records(),
            self.at
        )
    }
}

impl Retired {
    /// The record of a cut at `state` (records `[0, state.next_seq)` removed).
    pub fn at_state(state: &ChainState, files: u64, through_date: String, at: String) -> Self {
        Self {
            next_seq: state.next_seq,
            last_hash: to_hex(&state.last_hash),
            frontier: frontier_hex(&state.tree),
            files,
            through_date,
            at,
        }
    }
}

/// A compact range's hashes in manifest form: hex, largest subtree first.
fn frontier_hex(tree: &CompactRange) -> Vec<String> {
    tree.hashes().iter().map(|h| to_hex(h)).collect()
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
        if !(MANIFEST_VERSION..=MANIFEST_VERSION_GAPS).contains(&m.version) {
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
        let ends = self.chains.values().flat_map(|e| &e.segments).any(|s| s.blake3.is_none());
        let cut = self.chains.values().any(|e| e.retired.is_some());
        let unstated = self.chains.values().any(|e| e.unstated.is_some());
        let gaps = self.chains.values().any(|e| !e.gaps.is_empty());
        let version = if gaps {
            MANIFEST_VERSION_GAPS
        } else if unstated {
            MANIFEST_VERSION_UNSTATED
        } else if ends {
            MANIFEST_VERSION_SEGMENT_ENDS
        } else if cut {
            MANIFEST_VERSION_RETIRED
        } else {
            MANIFEST_VERSION
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    fn version_of(m: &Manifest) -> u64 {
        let v: serde_json::Value = serde_json::from_slice(&m.to_json().unwrap()).unwrap();
        v["version"].as_u64().unwrap()
    }

    fn with_segment(entry: SegmentEntry) -> Manifest {
        let chain = ChainId([7; 16]);
        let mut e = ChainEntry::genesis(chain);
        e.segments.push(entry);
        let mut m = Manifest::empty();
        m.chains.insert(chain.to_string(), e);
        m
    }

    #[test]
    fn the_version_written_is_the_oldest_that_reads_the_content() {
        assert_eq!(version_of(&Manifest::empty()), 1);
        let old = SegmentEntry { name: "a.seg".into(), blake3: Some("ab".repeat(32)), end: None };
        let mut m = with_segment(old);
        assert_eq!(version_of(&m), 1, "whole-file digests: every kiroku reads it");
        m.chains.values_mut().for_each(|e| {
            e.retired = Some(Retired {
                next_seq: 1,
                last_hash: "00".repeat(32),
                frontier: Vec::new(),
                files: 1,
                through_date: "2026-01-01".into(),
                at: "2026-06-01T00:00:00Z".into(),
            })
        });
        assert_eq!(version_of(&m), 2, "cut by retention");
        let state = ChainState::genesis(ChainId([7; 16]));
        let new = SegmentEntry { name: "b.seg".into(), blake3: None, end: Some(SegmentEnd::of(&state)) };
        m.chains.values_mut().for_each(|e| e.segments.push(new.clone()));
        assert_eq!(version_of(&m), 3, "a segment recorded by its end");
        assert_eq!(version_of(&with_segment(new)), 3);
        m.chains.values_mut().for_each(|e| e.unstated = Some(Unstated { records_lost: 2, at_seq: 1 }));
        assert_eq!(version_of(&m), 4, "losses no record states");
        let back = Manifest::parse(&m.to_json().unwrap(), "m").unwrap();
        assert_eq!(back.chains.values().next().unwrap().unstated, Some(Unstated { records_lost: 2, at_seq: 1 }));
        let mut after = ChainState::genesis(ChainId([7; 16]));
        after.next_seq = 4;
        after.tree = CompactRange::from_parts(4, vec![[3; 32]]).unwrap();
        let gap = Gap::new(2, &after, "2026-12-02T00:00:00Z".into());
        m.chains.values_mut().for_each(|e| e.gaps.push(gap.clone()));
        assert_eq!(version_of(&m), 5, "an accepted gap");
        let back = Manifest::parse(&m.to_json().unwrap(), "m").unwrap();
        let g = &back.chains.values().next().unwrap().gaps[0];
        assert_eq!((g, g.records()), (&gap, 2));
        assert_eq!(g.state_after(ChainId([7; 16])).unwrap().tree.root(), after.tree.root());
    }

    #[test]
    fn a_gap_that_ends_where_it_starts_or_whose_range_does_not_match_is_refused() {
        let chain = ChainId([7; 16]);
        let mut after = ChainState::genesis(chain);
        after.next_seq = 4;
        after.tree = CompactRange::from_parts(4, vec![[3; 32]]).unwrap();
        let mut gap = Gap::new(4, &after, "t".into());
        let e = gap.state_after(chain).unwrap_err().to_string();
        assert!(e.contains("gap from seq 4") && e.contains("not after it"), "{e}");
        gap.from_seq = 2;
        gap.frontier.push("00".repeat(32));
        let e = gap.state_after(chain).unwrap_err().to_string();
        assert!(e.contains("frontier does not match next_seq"), "{e}");
    }

    #[test]
    fn every_version_up_to_five_is_read_and_a_newer_one_refused() {
        let stored = with_segment(SegmentEntry {
            name: "a.seg".into(),
            blake3: None,
            end: Some(SegmentEnd { next_seq: 5, last_hash: "cd".repeat(32) }),
        })
        .to_json()
        .unwrap();
        let back = Manifest::parse(&stored, "m").unwrap();
        assert_eq!(back.chains.values().next().unwrap().segments[0].end.as_ref().unwrap().next_seq, 5);
        // A manifest of an earlier kiroku: the whole-file digest is kept as it was.
        let old = br#"{"version":1,"chains":{"x":{"next_seq":0,"last_hash":"","frontier":[],"checkpoints":[],"files":[],"segments":[{"name":"a.seg","blake3":"ab"}]}}}"#;
        let m = Manifest::parse(old, "m").unwrap();
        let seg = &m.chains["x"].segments[0];
        assert_eq!((seg.blake3.as_deref(), &seg.end), (Some("ab"), &None));
        assert!(String::from_utf8(m.to_json().unwrap()).unwrap().contains(r#""blake3": "ab""#));
        let newer = String::from_utf8(stored).unwrap().replacen("\"version\": 3", "\"version\": 6", 1);
        let e = Manifest::parse(newer.as_bytes(), "m").unwrap_err();
        assert!(e.to_string().contains("manifest version 6 is not supported"), "{e}");
    }

    #[test]
    fn a_segment_end_is_the_seq_after_it_and_its_last_hash() {
        let mut state = ChainState::genesis(ChainId([1; 16]));
        (state.next_seq, state.last_hash) = (9, [4; 32]);
        let end = SegmentEnd::of(&state);
        assert_eq!((end.next_seq, end.last_hash.as_str()), (9, "04".repeat(32).as_str()));
        assert!(end.is(&state));
        state.last_hash[31] = 5;
        assert!(!end.is(&state));
        state.last_hash[31] = 4;
        state.next_seq = 10;
        assert!(!end.is(&state));
    }
}
