//! The collector's view of a spool, behind a small interface so an object store can
//! stand behind it when a fleet ships segments from many machines.
//!
//! [`LocalSpool`] is the directory the journal writes:
//!
//! ```text
//! <spool>/<chain>/<first seq>.seg      sealed: ready to compact
//! <spool>/<chain>/<first seq>.open     open: compacted only when the chain's lock is free
//! <spool>/<chain>/<first seq>.corrupt  an open segment the journal found corrupt: quarantined
//! <spool>/<chain>/lost                 losses no record of the chain states yet (the journal's)
//! <spool>/compacted/<chain>/...        compacted segments (deleted only by retention)
//! <spool>/quarantine/<chain>/...       segments that failed verification, with a report
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use kiroku::journal::{CHAIN_LOCK_FILE, HEAD_FILE, LOST_FILE, UnstatedLosses};
use kiroku_schemas::ChainId;
use kiroku_schemas::segment::ChainState;

use crate::error::CliError;

/// A segment in a spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentRef {
    /// Its chain.
    pub chain_id: ChainId,
    /// Seq of its first record (from its name).
    pub first_seq: u64,
    /// File name.
    pub name: String,
    /// Sealed (`.seg`), or not (`.open`, or `.corrupt`: an open segment the journal
    /// found corrupt when it recovered the chain).
    pub sealed: bool,
}

/// Where segments come from and go (shared with the compactor's reading thread).
pub trait SpoolStore: Sync {
    /// Chains present.
    fn chains(&self) -> Result<Vec<ChainId>, CliError>;
    /// Sealed segments of a chain, by first seq.
    fn sealed(&self, chain: ChainId) -> Result<Vec<SegmentRef>, CliError>;
    /// What a chain's writer that is gone (its lock is free) left unfinished: its open
    /// segments and the losses it still owed the chain. `None` while a writer holds the
    /// chain, or when it left nothing. While the returned guard lives, no writer can
    /// take the chain back, so segments listed after this call are all the chain has:
    /// call it before [`sealed`](Self::sealed).
    fn orphaned(&self, chain: ChainId) -> Result<Option<Orphan>, CliError>;
    /// Segments of a chain that its journal found corrupt when it recovered the chain
    /// (`*.corrupt`: open segments corrupt before their tail), by first seq. Never
    /// compacted; the compactor quarantines them with a report.
    fn corrupt(&self, chain: ChainId) -> Result<Vec<SegmentRef>, CliError>;
    /// First seqs of the chain's segments in quarantine (any kind), sorted: a later
    /// segment waits behind one that should come before it.
    fn quarantined(&self, chain: ChainId) -> Result<Vec<u64>, CliError>;
    /// Read a segment.
    fn read(&self, seg: &SegmentRef) -> Result<Box<dyn Read + Send>, CliError>;
    /// Move a segment out of the way once its records are durable in the archive.
    fn mark_compacted(&self, seg: &SegmentRef) -> Result<(), CliError>;
    /// Move a segment that failed verification aside, with a report. For a segment
    /// that is not sealed, the chain ends there: its writer, coming back, starts a new
    /// chain ([`kiroku::journal::abandon_chain`]).
    fn quarantine(&self, seg: &SegmentRef, report: &str) -> Result<PathBuf, CliError>;
    /// Tell a writer that restarts on this chain where the chain stands (after its open
    /// segment was compacted by the collector).
    fn set_head(&self, chain: ChainId, state: &ChainState) -> Result<(), CliError>;
    /// Compacted segments last written before `before` (`<chain>/<file>`, sorted):
    /// what retention may delete. Segments only reach `compacted/` once their records
    /// are committed to the archive.
    fn compacted_before(&self, before: SystemTime) -> Result<Vec<String>, CliError>;
    /// Delete one compacted segment (`<chain>/<file>`, as listed).
    fn remove_compacted(&self, name: &str) -> Result<(), CliError>;
}

/// Holds a dead writer's chain lock while the collector works on its open segment.
#[derive(Debug)]
pub struct OrphanGuard {
    _lock: Option<File>,
}

impl OrphanGuard {
    /// No lock to hold: a store whose writers are elsewhere (a fleet's object store).
    pub fn unlocked() -> Self {
        Self { _lock: None }
    }
}

/// What a writer that is gone left of its chain (see [`SpoolStore::orphaned`]).
#[derive(Debug)]
pub struct Orphan {
    /// Holds the chain's lock.
    pub guard: OrphanGuard,
    /// Its open segments, by first seq.
    pub open: Vec<SegmentRef>,
    /// The losses no record states yet, from the chain's `lost` file (`Ok(None)`: no
    /// file), or why the file cannot be read.
    pub lost: Result<Option<UnstatedLosses>, String>,
}

/// The name a segment called `name` is quarantined under: `name`, or, when `taken`
/// says a file of that name is in quarantine already (a second copy of a segment, such
/// as a good copy that turned up after its gap was accepted), `name.1`, `name.2`, ...:
/// what is in quarantine is evidence, never replaced.
pub(crate) fn quarantine_name(name: &str, taken: impl Fn(&str) -> bool) -> String {
    std::iter::once(name.to_owned())
        .chain((1u32..).map(|k| format!("{name}.{k}")))
        .find(|n| !taken(n))
        .unwrap_or_else(|| name.to_owned())
}

/// The first seq of a quarantined segment from its file name (`<seq>.<ext>`; not its
/// `.report.txt`).
pub(crate) fn quarantined_first_seq(name: &str) -> Option<u64> {
    let (stem, ext) = name.split_once('.')?;
    matches!(ext, "seg" | "open" | "corrupt").then(|| stem.parse().ok()).flatten()
}

/// A spool directory on the local file system.
#[derive(Debug, Clone)]
pub struct LocalSpool {
    root: PathBuf,
}

impl LocalSpool {
    /// The spool at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn chain_dir(&self, chain: ChainId) -> PathBuf {
        self.root.join(chain.to_string())
    }

    /// The segments of a chain whose files end in `.<ext>` (`seg`, `open`, `corrupt`),
    /// by first seq.
    pub fn list(&self, chain: ChainId, ext: &str) -> Result<Vec<SegmentRef>, CliError> {
        let dir = self.chain_dir(chain);
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| CliError::io(&dir, e))? {
            let name = e.map_err(|e| CliError::io(&dir, e))?.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(&format!(".{ext}")) else { continue };
            let Ok(first_seq) = stem.parse::<u64>() else { continue };
            out.push(SegmentRef { chain_id: chain, first_seq, name, sealed: ext == "seg" });
        }
        out.sort_by_key(|s| s.first_seq);
        Ok(out)
    }

    fn path(&self, seg: &SegmentRef) -> PathBuf {
        self.chain_dir(seg.chain_id).join(&seg.name)
    }

    fn move_to(&self, seg: &SegmentRef, area: &str) -> Result<PathBuf, CliError> {
        let from = self.path(seg);
        let dir = self.root.join(area).join(seg.chain_id.to_string());
        fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir, e))?;
        let to = match area {
            "quarantine" => dir.join(quarantine_name(&seg.name, |n| dir.join(n).symlink_metadata().is_ok())),
            _ => dir.join(&seg.name),
        };
        fs::rename(&from, &to).map_err(|e| CliError::io(&from, e))?;
        for d in [&dir, &self.chain_dir(seg.chain_id)] {
            kiroku::journal::sync_dir(d).map_err(|e| CliError::Io(e.to_string()))?;
        }
        Ok(to)
    }
}

impl SpoolStore for LocalSpool {
    fn chains(&self) -> Result<Vec<ChainId>, CliError> {
        let mut out = Vec::new();
        let rd = match fs::read_dir(&self.root) {
            Ok(rd) => rd,
            Err(e) => return Err(CliError::io(&self.root, e)),
        };
        for e in rd {
            let e = e.map_err(|e| CliError::io(&self.root, e))?;
            if let Some(id) = e.file_name().to_str().and_then(|n| n.parse::<ChainId>().ok()) {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    fn sealed(&self, chain: ChainId) -> Result<Vec<SegmentRef>, CliError> {
        self.list(chain, "seg")
    }

    fn orphaned(&self, chain: ChainId) -> Result<Option<Orphan>, CliError> {
        let dir = self.chain_dir(chain);
        let has_lost = dir.join(LOST_FILE).symlink_metadata().is_ok();
        if !has_lost && self.list(chain, "open")?.is_empty() {
            return Ok(None);
        }
        let lock_path = self.chain_dir(chain).join(CHAIN_LOCK_FILE);
        let guard = match OpenOptions::new().write(true).open(&lock_path) {
            Ok(lock) => match lock.try_lock() {
                Ok(()) => OrphanGuard { _lock: Some(lock) },
                Err(fs::TryLockError::WouldBlock) => return Ok(None),
                Err(fs::TryLockError::Error(e)) => return Err(CliError::io(&lock_path, e)),
            },
            // No lock file: no writer ever held this chain in a way we can check; treat
            // the writer as gone only if the lock file is missing entirely.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => OrphanGuard { _lock: None },
            Err(e) => return Err(CliError::io(&lock_path, e)),
        };
        // Listed again under the lock: the writer may have sealed its open segment and
        // opened another between the first listing and its end; now nothing changes.
        let open = self.list(chain, "open")?;
        let lost = kiroku::journal::read_lost_file(&dir).map_err(|e| e.to_string());
        if open.is_empty() && matches!(lost, Ok(None)) {
            return Ok(None);
        }
        Ok(Some(Orphan { guard, open, lost }))
    }

    fn corrupt(&self, chain: ChainId) -> Result<Vec<SegmentRef>, CliError> {
        self.list(chain, "corrupt")
    }

    fn quarantined(&self, chain: ChainId) -> Result<Vec<u64>, CliError> {
        let dir = self.root.join("quarantine").join(chain.to_string());
        let rd = match fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CliError::io(&dir, e)),
        };
        let mut out = Vec::new();
        for e in rd {
            let name = e.map_err(|e| CliError::io(&dir, e))?.file_name();
            if let Some(seq) = quarantined_first_seq(&name.to_string_lossy()) {
                out.push(seq);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    fn read(&self, seg: &SegmentRef) -> Result<Box<dyn Read + Send>, CliError> {
        let p = self.path(seg);
        let f = File::open(&p).map_err(|e| CliError::io(&p, e))?;
        Ok(Box::new(BufReader::with_capacity(1 << 20, f)))
    }

    fn mark_compacted(&self, seg: &SegmentRef) -> Result<(), CliError> {
        self.move_to(seg, "compacted").map(|_| ())
    }

    fn quarantine(&self, seg: &SegmentRef, report: &str) -> Result<PathBuf, CliError> {
        if !seg.sealed {
            // An open segment's seqs were handed out and are now out of the chain: its
            // writer, coming back, must start a new chain rather than continue this one
            // from its last sealed head (the lock is held: no writer has it now).
            kiroku::journal::abandon_chain(&self.chain_dir(seg.chain_id)).map_err(|e| CliError::Io(e.to_string()))?;
        }
        let to = self.move_to(seg, "quarantine")?;
        let name = to.file_name().map_or_else(|| seg.name.clone(), |n| n.to_string_lossy().into_owned());
        let rp = to.with_file_name(format!("{name}.report.txt"));
        kiroku::journal::write_atomic(&rp, report.as_bytes()).map_err(|e| CliError::Io(e.to_string()))?;
        Ok(to)
    }

    fn set_head(&self, chain: ChainId, state: &ChainState) -> Result<(), CliError> {
        let p = self.chain_dir(chain).join(HEAD_FILE);
        kiroku::journal::write_atomic(&p, &state.next_header().encode()).map_err(|e| CliError::Io(e.to_string()))
    }

    fn compacted_before(&self, before: SystemTime) -> Result<Vec<String>, CliError> {
        let area = self.root.join("compacted");
        let mut out = Vec::new();
        let Ok(chains) = fs::read_dir(&area) else { return Ok(out) };
        for chain in chains.flatten() {
            let Ok(files) = fs::read_dir(chain.path()) else { continue };
            for f in files.flatten() {
                let path = f.path();
                // mtime: when the writer last wrote the segment (a rename keeps it), so
                // at or after its newest record.
                let modified = f.metadata().and_then(|m| m.modified()).map_err(|e| CliError::io(&path, e))?;
                if modified < before {
                    out.push(format!("{}/{}", chain.file_name().to_string_lossy(), f.file_name().to_string_lossy()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn remove_compacted(&self, name: &str) -> Result<(), CliError> {
        let path = self.root.join("compacted").join(name);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(CliError::io(&path, e)),
        }
        let dir = path.parent().unwrap_or(&self.root);
        kiroku::journal::sync_dir(dir).map_err(|e| CliError::Io(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quarantined_segment_is_named_by_its_first_seq_and_its_report_is_not() {
        assert_eq!(quarantined_first_seq("00000000000000000016.seg"), Some(16));
        assert_eq!(quarantined_first_seq("00000000000000000003.corrupt"), Some(3));
        assert_eq!(quarantined_first_seq("7.open"), Some(7));
        for not in ["00000000000000000016.seg.report.txt", "x.seg", "16", "16.tmp", ""] {
            assert_eq!(quarantined_first_seq(not), None, "{not}");
        }
    }
}
