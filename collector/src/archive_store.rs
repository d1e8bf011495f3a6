//! Where the archive lives: a local directory or an object store location, behind one
//! interface the compactor writes through.
//!
//! - [`LocalArchive`]: files written temp -> fsync -> rename -> directory fsync; the
//!   manifest replaced atomically; one compactor at a time (an exclusive lock on
//!   `_kiroku/lock`, refused with a clear error while another run holds it).
//! - [`ObjectArchive`]: several compactors may run at once. Each takes a per-chain
//!   lease (`_kiroku/leases/<chain>.json`, created if absent or replaced only when
//!   expired, both by conditional writes) and commits the manifest with an etag match,
//!   so no chain range is ever committed twice: a compactor whose commit loses the race
//!   re-reads the manifest and gives the chain up if another compactor advanced it. A
//!   crashed compactor's chains are taken over once its lease expires. Parquet files
//!   are named by their seq range and their bytes are deterministic, so a file written
//!   twice (a takeover redoing an uncommitted step) is the same object.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kiroku::ship::LockMode;
use kiroku_schemas::ChainId;
use kiroku_schemas::digest::to_hex;
use object_store::UpdateVersion;
use serde::{Deserialize, Serialize};

use crate::error::CliError;
use crate::manifest::{ChainEntry, Manifest};
use crate::remote::{PutIf, Remote};

/// Version of the manifest as loaded, for a conditional commit (`None`: none stored yet,
/// or a local archive).
pub type ManifestVersion = Option<UpdateVersion>;

/// A chain this compactor may work on while the lease lasts (renewed by [`ArchiveStore::renew`]).
#[derive(Debug)]
pub struct Lease {
    chain: ChainId,
    version: Option<UpdateVersion>,
    renewed: SystemTime,
}

/// Outcome of a conditional manifest commit.
#[derive(Debug)]
pub enum Commit {
    /// Stored; the new version.
    Done(ManifestVersion),
    /// Another compactor committed first.
    Conflict,
}

/// The manifest as this run last loaded it, updated chain by chain with conditional
/// commits.
#[derive(Debug)]
pub struct ManifestState {
    /// The manifest.
    pub manifest: Manifest,
    version: ManifestVersion,
}

impl ManifestState {
    /// Load the archive's manifest.
    pub fn load(archive: &dyn ArchiveStore) -> Result<Self, CliError> {
        let (manifest, version) = archive.load_manifest()?;
        Ok(Self { manifest, version })
    }

    /// Load again when other compactors may have committed since (a stored, versioned
    /// manifest; a local archive has one compactor).
    pub fn refresh(&mut self, archive: &dyn ArchiveStore) -> Result<(), CliError> {
        if self.version.is_some() {
            *self = Self::load(archive)?;
        }
        Ok(())
    }

    /// Commit the manifest with `entry` for `chain`, which this run derived from `base`;
    /// false when another compactor changed the chain first (this run gives it up).
    pub fn commit_chain(
        &mut self,
        archive: &dyn ArchiveStore,
        chain: ChainId,
        base: Option<&ChainEntry>,
        entry: ChainEntry,
    ) -> Result<bool, CliError> {
        let key = chain.to_string();
        loop {
            self.manifest.chains.insert(key.clone(), entry.clone());
            match archive.commit_manifest(&self.manifest, &self.version)? {
                Commit::Done(v) => {
                    self.version = v;
                    return Ok(true);
                }
                Commit::Conflict => {
                    *self = Self::load(archive)?;
                    if self.manifest.chains.get(&key) != base {
                        return Ok(false);
                    }
                }
            }
        }
    }
}

/// S3 Object Lock for the archive's Parquet files: each is locked in `mode` for
/// `period` from when it is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectLock {
    /// Governance or compliance.
    pub mode: LockMode,
    /// How long each file stays locked.
    pub period: Duration,
}

/// Where compaction writes.
pub trait ArchiveStore {
    /// For messages: the directory or URL.
    fn describe(&self) -> String;
    /// The manifest and its version.
    fn load_manifest(&self) -> Result<(Manifest, ManifestVersion), CliError>;
    /// Replace the manifest if it is still `base`.
    fn commit_manifest(&self, m: &Manifest, base: &ManifestVersion) -> Result<Commit, CliError>;
    /// Write the file `rel` with what `fill` writes; returns its size and blake3 (hex).
    /// The file is durable when this returns.
    fn write_file(
        &self,
        rel: &str,
        fill: &mut dyn FnMut(&mut (dyn Write + Send)) -> Result<(), CliError>,
    ) -> Result<(u64, String), CliError>;
    /// Read the file `rel` whole.
    fn read_file(&self, rel: &str) -> Result<Bytes, CliError>;
    /// Delete the file `rel` (absent is fine).
    fn remove_file(&self, rel: &str) -> Result<(), CliError>;
    /// Every Parquet file under `records/`, archive-relative, sorted.
    fn data_files(&self) -> Result<Vec<String>, CliError>;
    /// Take the lease of `chain`, or `None` while another compactor holds it.
    fn lease(&self, chain: ChainId) -> Result<Option<Lease>, CliError>;
    /// Extend a lease that is past a third of its life; false when it was lost.
    fn renew(&self, lease: &mut Lease) -> Result<bool, CliError>;
    /// Give a lease back.
    fn release(&self, lease: Lease);
}

/// A `Write` that hashes and counts what passes through.
struct HashingWriter<W> {
    inner: W,
    hasher: blake3::Hasher,
    bytes: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        Self { inner, hasher: blake3::Hasher::new(), bytes: 0 }
    }

    /// Flush; the size and blake3 (hex) of what was written.
    fn finish(mut self, what: &str) -> Result<(u64, String), CliError> {
        self.inner.flush().map_err(|e| CliError::Io(format!("{what}: {e}")))?;
        Ok((self.bytes, to_hex(self.hasher.finalize().as_bytes())))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A file that asks the kernel to start writing back each megabyte written
/// ([`Writeback`](kiroku::journal::Writeback), as the journal does), so the `fsync` that
/// ends the file waits for the last megabyte rather than the whole file. Without it, each
/// of a run's Parquet files (13 MB for a 64 MiB segment) waited 6-8 ms in its `fsync`,
/// while the compactor's writer thread had nothing to do.
struct EarlyWriteback {
    file: File,
    written: u64,
    writeback: kiroku::journal::Writeback,
}

impl EarlyWriteback {
    fn new(file: File) -> Self {
        Self { file, written: 0, writeback: Default::default() }
    }
}

impl Write for EarlyWriteback {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        self.writeback.advance(&self.file, self.written);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// An archive directory on this machine.
#[derive(Debug)]
pub struct LocalArchive {
    root: PathBuf,
    _lock: File,
}

impl LocalArchive {
    /// Open (creating) the archive at `root` for compaction, taking its lock, and
    /// remove temp files a killed run left.
    pub fn open(root: &Path) -> Result<Self, CliError> {
        let dir = root.join("_kiroku");
        fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir, e))?;
        let path = dir.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| CliError::io(&path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(CliError::Usage(format!(
                    "{}: another compaction is running on this archive (it holds {})",
                    root.display(),
                    path.display()
                )));
            }
            Err(fs::TryLockError::Error(e)) => return Err(CliError::io(&path, e)),
        }
        remove_stale_temp_files(&root.join("records"))?;
        Ok(Self { root: root.to_owned(), _lock: lock })
    }

    /// Its directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The Parquet files under `dir`, recursively, sorted.
pub(crate) fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(parquet_files(&p));
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Temp files left by a run that was killed: never part of the archive.
fn remove_stale_temp_files(dir: &Path) -> Result<(), CliError> {
    let Ok(rd) = fs::read_dir(dir) else { return Ok(()) };
    for e in rd.flatten() {
        let p: PathBuf = e.path();
        if p.is_dir() {
            remove_stale_temp_files(&p)?;
        } else if p.extension().is_some_and(|x| x == "tmp") {
            fs::remove_file(&p).map_err(|e| CliError::io(&p, e))?;
        }
    }
    Ok(())
}

impl ArchiveStore for LocalArchive {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn load_manifest(&self) -> Result<(Manifest, ManifestVersion), CliError> {
        Ok((Manifest::load(&self.root)?, None))
    }

    fn commit_manifest(&self, m: &Manifest, _base: &ManifestVersion) -> Result<Commit, CliError> {
        m.save(&self.root)?;
        Ok(Commit::Done(None))
    }

    fn write_file(
        &self,
        rel: &str,
        fill: &mut dyn FnMut(&mut (dyn Write + Send)) -> Result<(), CliError>,
    ) -> Result<(u64, String), CliError> {
        let path = self.root.join(rel);
        let dir = path.parent().unwrap_or(&self.root).to_owned();
        fs::create_dir_all(&dir).map_err(|e| CliError::io(&dir, e))?;
        let tmp = path.with_extension("parquet.tmp");
        let file = File::create(&tmp).map_err(|e| CliError::io(&tmp, e))?;
        let synced = file.try_clone().map_err(|e| CliError::io(&tmp, e))?;
        let mut sink = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, EarlyWriteback::new(file)));
        fill(&mut sink)?;
        let (bytes, digest) = sink.finish(&tmp.display().to_string())?;
        synced.sync_all().map_err(|e| CliError::io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| CliError::io(&path, e))?;
        kiroku::journal::sync_dir(&dir).map_err(|e| CliError::Io(e.to_string()))?;
        Ok((bytes, digest))
    }

    fn read_file(&self, rel: &str) -> Result<Bytes, CliError> {
        let path = self.root.join(rel);
        fs::read(&path).map(Bytes::from).map_err(|e| CliError::io(&path, e))
    }

    fn remove_file(&self, rel: &str) -> Result<(), CliError> {
        let path = self.root.join(rel);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(CliError::io(&path, e)),
        }
        let dir = path.parent().unwrap_or(&self.root);
        kiroku::journal::sync_dir(dir).map_err(|e| CliError::Io(e.to_string()))?;
        // The partition directory goes with its last file (fails harmlessly otherwise).
        let _ = fs::remove_dir(dir);
        Ok(())
    }

    fn data_files(&self) -> Result<Vec<String>, CliError> {
        Ok(parquet_files(&self.root.join("records"))
            .iter()
            .filter_map(|p| Some(p.strip_prefix(&self.root).ok()?.to_string_lossy().into_owned()))
            .collect())
    }

    fn lease(&self, chain: ChainId) -> Result<Option<Lease>, CliError> {
        // The archive lock already makes this compactor the only one.
        Ok(Some(Lease { chain, version: None, renewed: SystemTime::now() }))
    }

    fn renew(&self, _lease: &mut Lease) -> Result<bool, CliError> {
        Ok(true)
    }

    fn release(&self, _lease: Lease) {}
}

/// What a lease object holds.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseDoc {
    owner: String,
    /// Milliseconds since the Unix epoch.
    expires_ms: u64,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// An archive in an object store, shared by several compactors.
#[derive(Debug)]
pub struct ObjectArchive {
    remote: Remote,
    owner: String,
    ttl: Duration,
    lock: Option<ObjectLock>,
}

const MANIFEST: &str = "_kiroku/manifest.json";

impl ObjectArchive {
    /// The archive under `url`; leases last `ttl` (renewed while the compactor works).
    /// Leases compare wall clocks of the compactors: keep them synchronised (NTP) and
    /// the TTL well above their skew.
    pub fn open(url: &str, ttl: Duration) -> Result<Self, CliError> {
        let host = fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        let owner = format!("{host}/{}/{}", std::process::id(), uuid::Uuid::now_v7());
        Ok(Self { remote: Remote::open(url)?, owner, ttl, lock: None })
    }

    /// Write every Parquet file with S3 Object Lock retention (the bucket must have
    /// Object Lock enabled). The manifest and leases are not locked: they are replaced
    /// as the archive grows.
    pub fn with_lock(mut self, lock: ObjectLock) -> Self {
        self.lock = Some(lock);
        self
    }

    /// This compactor's name in leases.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn lease_rel(chain: ChainId) -> String {
        format!("_kiroku/leases/{chain}.json")
    }

    fn lease_doc(&self, expires_ms: u64) -> Bytes {
        Bytes::from(serde_json::to_vec(&LeaseDoc { owner: self.owner.clone(), expires_ms }).unwrap_or_default())
    }
}

impl ArchiveStore for ObjectArchive {
    fn describe(&self) -> String {
        self.remote.location().to_string()
    }

    fn load_manifest(&self) -> Result<(Manifest, ManifestVersion), CliError> {
        match self.remote.get(MANIFEST)? {
            Some(v) => Ok((Manifest::parse(&v.bytes, &self.remote.url_of(MANIFEST))?, Some(v.version))),
            None => Ok((Manifest::empty(), None)),
        }
    }

    fn commit_manifest(&self, m: &Manifest, base: &ManifestVersion) -> Result<Commit, CliError> {
        let bytes = m.to_json()?;
        let cond = match base {
            Some(v) => PutIf::Unchanged(v.clone()),
            None => PutIf::Absent,
        };
        Ok(match self.remote.put(MANIFEST, Bytes::from(bytes), cond)? {
            Some(v) => Commit::Done(Some(v)),
            None => Commit::Conflict,
        })
    }

    fn write_file(
        &self,
        rel: &str,
        fill: &mut dyn FnMut(&mut (dyn Write + Send)) -> Result<(), CliError>,
    ) -> Result<(u64, String), CliError> {
        let mut buf: Vec<u8> = Vec::with_capacity(8 << 20);
        let mut sink = HashingWriter::new(&mut buf);
        fill(&mut sink)?;
        let (bytes, digest) = sink.finish(rel)?;
        // Same name, same seq range, same deterministic bytes: replacing a file an
        // interrupted run left is safe; the manifest names what counts.
        match self.lock {
            None => {
                self.remote.put(rel, Bytes::from(buf), PutIf::Always)?;
            }
            Some(lock) => {
                self.remote.put_locked(rel, Bytes::from(buf), lock.mode, SystemTime::now() + lock.period)?;
            }
        }
        Ok((bytes, digest))
    }

    fn read_file(&self, rel: &str) -> Result<Bytes, CliError> {
        match self.remote.get(rel)? {
            Some(v) => Ok(v.bytes),
            None => Err(CliError::Io(format!("{}: not found", self.remote.url_of(rel)))),
        }
    }

    fn remove_file(&self, rel: &str) -> Result<(), CliError> {
        self.remote.delete(rel)
    }

    fn data_files(&self) -> Result<Vec<String>, CliError> {
        Ok(self.remote.list("records")?.into_iter().map(|o| o.rel).filter(|r| r.ends_with(".parquet")).collect())
    }

    fn lease(&self, chain: ChainId) -> Result<Option<Lease>, CliError> {
        let rel = Self::lease_rel(chain);
        let expires = now_ms() + self.ttl.as_millis() as u64;
        let cond = match self.remote.get(&rel)? {
            None => PutIf::Absent,
            Some(v) => {
                let doc: Option<LeaseDoc> = serde_json::from_slice(&v.bytes).ok();
                match doc {
                    Some(d) if d.owner != self.owner && d.expires_ms > now_ms() => return Ok(None),
                    Some(d) if d.owner != self.owner && d.expires_ms > 0 => {
                        tracing::warn!(target: "kiroku::compact", %chain, "taking over the lease of {} (expired)", d.owner);
                        PutIf::Unchanged(v.version)
                    }
                    _ => PutIf::Unchanged(v.version),
                }
            }
        };
        Ok(self.remote.put(&rel, self.lease_doc(expires), cond)?.map(|version| Lease {
            chain,
            version: Some(version),
            renewed: SystemTime::now(),
        }))
    }

    fn renew(&self, lease: &mut Lease) -> Result<bool, CliError> {
        let age = lease.renewed.elapsed().unwrap_or(Duration::ZERO);
        if age < self.ttl / 3 {
            return Ok(true);
        }
        let Some(version) = lease.version.clone() else { return Ok(false) };
        let expires = now_ms() + self.ttl.as_millis() as u64;
        match self.remote.put(&Self::lease_rel(lease.chain), self.lease_doc(expires), PutIf::Unchanged(version))? {
            Some(v) => {
                lease.version = Some(v);
                lease.renewed = SystemTime::now();
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Released leases carry expiry 0 (taken without a warning).
    fn release(&self, lease: Lease) {
        if let Some(v) = lease.version {
            let _ = self.remote.put(&Self::lease_rel(lease.chain), self.lease_doc(0), PutIf::Unchanged(v));
        }
    }
}
