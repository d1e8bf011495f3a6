//! The spool directory on disk: chain directories, their lock, recovery of an open
//! segment left by a process that died, atomic file replacement.
//!
//! ```text
//! <spool>/<chain id>/lock                  held (flock) by the writing process
//! <spool>/<chain id>/writer                the writer name that owns the chain
//! <spool>/<chain id>/head                  header of the next segment (chain state)
//! <spool>/<chain id>/<first seq>.open      the segment being written
//! <spool>/<chain id>/<first seq>.seg       sealed segments (the collector's input)
//! <spool>/<chain id>/<first seq>.corrupt   an open segment found corrupt on recovery
//! <spool>/<chain id>/lost                  losses no record states yet (see `lost.rs`)
//! ```

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};

use kiroku_schemas::segment::{ChainState, SegmentReader, SegmentWriter, VerifyOptions, verify_segment};
use kiroku_schemas::{ChainId, Timestamp};

use super::{JournalConfig, JournalError};

/// Name of the lock file a writer holds for its lifetime.
pub const CHAIN_LOCK_FILE: &str = "lock";
/// Name of the file holding the header of the chain's next segment.
pub const HEAD_FILE: &str = "head";
const WRITER_FILE: &str = "writer";
const ABANDONED_FILE: &str = "writer.abandoned";

/// What recovery did when a journal took back a chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// The chain taken back.
    pub chain_id: Option<ChainId>,
    /// The open segment that was recovered and sealed.
    pub segment: Option<PathBuf>,
    /// Records found in it.
    pub records: u64,
    /// A torn final frame that was cut: its byte offset and how many bytes it had.
    pub torn_tail: Option<(u64, u64)>,
    /// What ended the chain, and why: an open segment found corrupt (renamed
    /// `*.corrupt`), or a head file that cannot be read. The journal then started a
    /// new chain.
    pub corrupt: Option<(PathBuf, String)>,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.segment, &self.corrupt) {
            (_, Some((p, why))) => write!(
                f,
                "{} is corrupt ({why}); the chain cannot continue and is left for the collector; started a new chain",
                p.display()
            ),
            (Some(p), None) => {
                write!(f, "recovered open segment {} with {} records", p.display(), self.records)?;
                if let Some((off, n)) = self.torn_tail {
                    write!(f, "; cut a torn final frame of {n} bytes at byte offset {off}")?;
                }
                write!(f, "; sealed it")
            }
            (None, None) => write!(f, "took back chain with nothing to recover"),
        }
    }
}

/// A chain directory this process now owns.
pub(crate) struct OpenedChain {
    pub(crate) chain_id: ChainId,
    pub(crate) dir: PathBuf,
    /// Held for the process's lifetime, never read: dropping it releases the lock.
    pub(crate) _lock: File,
    pub(crate) state: ChainState,
    pub(crate) recovery: Option<RecoveryReport>,
    /// Losses an earlier process of the chain left in its `lost` file: the next record
    /// states them.
    pub(crate) owed_losses: u64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |e| JournalError::io(path, &e)
}

/// fsync a directory so renames and new entries in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Replace `path` atomically: temp file, fsync, rename, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    replace_file(path, bytes, true)
}

/// Replace `path` through a temporary file renamed over it, so that a reader finds it
/// whole, old or new. `durable`: the file is fsynced before the rename and the
/// directory after it; without, a killed process's replacement is still read (it is
/// in the OS's cache), and a power loss may leave the old file.
pub(crate) fn replace_file(path: &Path, bytes: &[u8], durable: bool) -> Result<(), JournalError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).and_then(|()| if durable { f.sync_all() } else { Ok(()) }).map_err(io(&tmp))?;
    fs::rename(&tmp, path).map_err(io(path))?;
    if durable { sync_dir(dir) } else { Ok(()) }
}

/// The file name of a segment starting at `first_seq`.
pub fn segment_name(first_seq: u64, ext: &str) -> String {
    format!("{first_seq:020}.{ext}")
}

/// The chain directory's lock, when no writer holds it (created if missing).
pub(crate) fn try_lock(dir: &Path) -> Result<Option<File>, JournalError> {
    let path = dir.join(CHAIN_LOCK_FILE);
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
    match f.try_lock() {
        Ok(()) => Ok(Some(f)),
        Err(fs::TryLockError::WouldBlock) => Ok(None),
        Err(fs::TryLockError::Error(e)) => Err(JournalError::io(&path, &e)),
    }
}

/// Find this writer's chain whose lock is free and take it back, or start a new chain.
pub(crate) fn open_chain(cfg: &JournalConfig) -> Result<OpenedChain, JournalError> {
    fs::create_dir_all(&cfg.spool).map_err(io(&cfg.spool))?;
    let mut candidates: Vec<(ChainId, PathBuf)> = Vec::new();
    for entry in fs::read_dir(&cfg.spool).map_err(io(&cfg.spool))? {
        let entry = entry.map_err(io(&cfg.spool))?;
        let Some(id) = entry.file_name().to_str().and_then(|n| n.parse::<ChainId>().ok()) else {
            continue;
        };
        let dir = entry.path();
        if fs::read_to_string(dir.join(WRITER_FILE)).is_ok_and(|w| w.trim_end() == cfg.writer_name) {
            candidates.push((id, dir));
        }
    }
    // Newest first: chain ids are UUIDv7 and sort by creation time.
    candidates.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (id, dir) in candidates {
        let Some(lock) = try_lock(&dir)? else {
            continue;
        };
        match recover(cfg, id, &dir)? {
            Recovered::Continue(state, report) => {
                let owed_losses = super::lost::take_back(&dir, state.next_seq)?;
                return Ok(OpenedChain { chain_id: id, dir, _lock: lock, state, recovery: Some(report), owed_losses });
            }
            Recovered::Abandoned(report) => {
                abandon_chain(&dir)?;
                let mut fresh = new_chain(cfg)?;
                fresh.recovery = Some(report);
                return Ok(fresh);
            }
        }
    }
    new_chain(cfg)
}

/// Give up the chain in directory `dir` for good: no journal takes it back (its writer
/// name is set aside), and the next one with that name starts a new chain. For a chain
/// whose open segment is lost to corruption: its records hold seqs that were handed
/// out, and continuing the chain from its last sealed head would hand them out again.
/// Its segments stay for the collector. Recovery also refuses a chain directory that
/// holds a `*.corrupt` segment.
pub fn abandon_chain(dir: &Path) -> Result<(), JournalError> {
    let from = dir.join(WRITER_FILE);
    match fs::rename(&from, dir.join(ABANDONED_FILE)) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(JournalError::io(&from, &e)),
    }
}

fn new_chain(cfg: &JournalConfig) -> Result<OpenedChain, JournalError> {
    let id = ChainId::new_v7();
    let dir = cfg.spool.join(id.to_string());
    fs::create_dir(&dir).map_err(io(&dir))?;
    let lock = try_lock(&dir)?.ok_or_else(|| {
        JournalError::Failed(format!("new chain directory {} is locked by another process", dir.display()))
    })?;
    write_atomic(&dir.join(WRITER_FILE), format!("{}\n", cfg.writer_name).as_bytes())?;
    let state = ChainState::genesis(id);
    write_atomic(&dir.join(HEAD_FILE), &state.next_header().encode())?;
    sync_dir(&cfg.spool)?;
    Ok(OpenedChain { chain_id: id, dir, _lock: lock, state, recovery: None, owed_losses: 0 })
}

pub(crate) enum Recovered {
    Continue(ChainState, RecoveryReport),
    Abandoned(RecoveryReport),
}

fn files_with_ext(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, JournalError> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    Ok(out)
}

/// Put a fresh copy of the first `len` bytes of `path` (what verified) in its place,
/// durable before it replaces the file. The segment being recovered may be the one a
/// write or fsync just failed on, and after a failed fsync the kernel may have marked the
/// pages it could not write clean: they read back fine from the cache and are still not
/// on disk, and fsyncing the same file again does not write them. A new file's pages are
/// written by its own fsync. This also cuts a torn tail. A copy left by a crash
/// (`*.rewrite`) is removed by the next recovery; until the rename the old file stands.
fn rewrite_durably(cfg: &JournalConfig, path: &Path, len: u64) -> Result<(), JournalError> {
    use std::io::Read as _;
    let tmp = path.with_extension("rewrite");
    let copy = || {
        super::faults::Faults::check(&cfg.faults, super::faults::Op::Copy).map_err(io(&tmp))?;
        let mut src = File::open(path).map_err(io(path))?;
        let mut dst = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(io(&tmp))?;
        let copied = std::io::copy(&mut (&mut src).take(len), &mut dst).map_err(io(&tmp))?;
        if copied != len {
            return Err(JournalError::Write(format!(
                "{}: only {copied} of its {len} verified bytes could be read back",
                path.display()
            )));
        }
        dst.sync_all().map_err(io(&tmp))
    };
    if let Err(e) = copy() {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(io(&tmp))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Bring a chain directory whose lock we hold back to a clean state: every open
/// segment validated, its torn tail cut, sealed and renamed; the chain state known.
pub(crate) fn recover(cfg: &JournalConfig, id: ChainId, dir: &Path) -> Result<Recovered, JournalError> {
    super::faults::Faults::check(&cfg.faults, super::faults::Op::Recover).map_err(io(dir))?;
    let mut report = RecoveryReport { chain_id: Some(id), ..RecoveryReport::default() };
    for stale in files_with_ext(dir, "rewrite")? {
        // A copy a recovery was making when it died; the segment it copied still stands.
        fs::remove_file(&stale).map_err(io(&stale))?;
    }
    if let Some(bad) = files_with_ext(dir, "corrupt")?.into_iter().next() {
        // Its records hold seqs that were handed out: continuing from the head would
        // give the same seqs to other records.
        let why = "found by an earlier recovery; the chain ended there".to_owned();
        report.corrupt = Some((bad, why));
        return Ok(Recovered::Abandoned(report));
    }
    // Where the chain stands. Without it (an unreadable head, or none while segments
    // exist) the chain cannot be continued without risking seqs handed out before.
    let head = dir.join(HEAD_FILE);
    let mut state = match read_head(&head) {
        Ok(Some(state)) => state,
        // A process that died creating the chain, before it wrote the head (an open
        // segment is then checked against the genesis state like any other).
        Ok(None) if files_with_ext(dir, "seg")?.is_empty() => ChainState::genesis(id),
        Ok(None) => {
            report.corrupt = Some((head, "missing, while the chain has sealed segments".into()));
            return Ok(Recovered::Abandoned(report));
        }
        Err(why) => {
            report.corrupt = Some((head, why));
            return Ok(Recovered::Abandoned(report));
        }
    };
    for open in files_with_ext(dir, "open")? {
        match recover_open_segment(cfg, &state, &open)? {
            OpenOutcome::Empty => {}
            OpenOutcome::Sealed { end, records, torn_tail } => {
                report.segment = Some(open.with_extension("seg"));
                report.records += records;
                report.torn_tail = report.torn_tail.or(torn_tail);
                state = end;
            }
            OpenOutcome::Corrupt(why) => {
                let bad = open.with_extension("corrupt");
                fs::rename(&open, &bad).map_err(io(&open))?;
                sync_dir(dir)?;
                report.corrupt = Some((bad, why));
                return Ok(Recovered::Abandoned(report));
            }
        }
    }
    write_atomic(&dir.join(HEAD_FILE), &state.next_header().encode())?;
    Ok(Recovered::Continue(state, report))
}

/// The chain state a head file holds; `None` when there is none; `Err` says why it
/// cannot be read.
fn read_head(path: &Path) -> Result<Option<ChainState>, String> {
    match fs::read(path) {
        Ok(bytes) => match SegmentReader::open(&bytes[..]) {
            Ok(r) => Ok(Some(ChainState::from_header(r.header()))),
            Err(e) => Err(format!("unreadable: {e}")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("unreadable: {e}")),
    }
}

pub(crate) enum OpenOutcome {
    /// Nothing worth keeping (no complete header or no records): removed.
    Empty,
    /// Validated, tail cut if torn, sealed and renamed to `.seg`.
    Sealed { end: ChainState, records: u64, torn_tail: Option<(u64, u64)> },
    /// Corrupt before its tail: left for quarantine.
    Corrupt(String),
}

/// Validate an open segment to its tail, as the continuation of the chain at `from`
/// (where its head says it stands), cut only a torn last frame, seal it, rename it.
pub(crate) fn recover_open_segment(
    cfg: &JournalConfig,
    from: &ChainState,
    path: &Path,
) -> Result<OpenOutcome, JournalError> {
    let verify = |opts: &VerifyOptions| {
        let file = File::open(path).map_err(io(path))?;
        Ok::<_, JournalError>(verify_segment(BufReader::with_capacity(1 << 20, file), opts))
    };
    let report = match verify(&VerifyOptions::open().continuing(from.clone()))? {
        Ok(r) => r,
        Err(e) if e.is_torn_tail() && e.offset == 0 => {
            // Not even a complete header: the process died creating the file.
            fs::remove_file(path).map_err(io(path))?;
            return Ok(OpenOutcome::Empty);
        }
        Err(e) => {
            // Or the head already says where the segment ends: sealing writes the head
            // before the rename, and a writer that died between the two left a sealed
            // segment; the collector sets the head after it compacted a dead writer's
            // open segment, and may have died before it moved the file.
            let alone = VerifyOptions { chain_id: Some(from.chain_id), ..VerifyOptions::open() };
            match verify(&alone)? {
                Ok(r) if r.end == *from => r,
                _ => return Ok(OpenOutcome::Corrupt(e.in_file(path).to_string())),
            }
        }
    };
    if let Some((off, n)) = report.torn_tail {
        tracing::warn!(target: "kiroku::journal", file = %path.display(), offset = off, bytes = n, "cutting torn final frame");
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    if report.records == 0 && !report.sealed {
        fs::remove_file(path).map_err(io(path))?;
        sync_dir(dir)?;
        return Ok(OpenOutcome::Empty);
    }
    if let Err(e) = rewrite_durably(cfg, path, report.valid_len) {
        // No room for a copy (a full disk): cut and seal in place, as the journal did
        // before it made copies. The pages a failed write left are not the ones a
        // failed fsync leaves behind.
        tracing::warn!(target: "kiroku::journal", file = %path.display(), "cannot rewrite the segment into a fresh file ({e}); cutting and sealing it in place");
        if report.torn_tail.is_some() {
            let f = OpenOptions::new().write(true).open(path).map_err(io(path))?;
            f.set_len(report.valid_len).and_then(|()| f.sync_all()).map_err(io(path))?;
        }
    }
    if !report.sealed {
        let mut f = OpenOptions::new().append(true).open(path).map_err(io(path))?;
        let w = SegmentWriter::resume(&mut f, &report);
        w.seal(cfg.signer.as_ref(), &cfg.namespace, Timestamp::now())
            .map_err(|e| JournalError::Write(e.to_string()))?;
        f.sync_all().map_err(io(path))?;
    }
    let sealed = path.with_extension("seg");
    fs::rename(path, &sealed).map_err(io(path))?;
    sync_dir(dir)?;
    Ok(OpenOutcome::Sealed { end: report.end, records: report.records, torn_tail: report.torn_tail })
}
