//! The shipper: a background thread that uploads sealed segments as they appear and
//! removes each local file once its upload is verified.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use super::{ObjectLocation, ShipError, lost_key, put_replacing, ship_segment};

/// What a shipper watches.
#[derive(Debug, Clone)]
pub enum ShipScope {
    /// These chain directories (`<spool>/<chain>/`): what a journal ships (its chain,
    /// and one its recovery ended).
    Chains(Vec<PathBuf>),
    /// Every chain directory of a spool: what `kiroku ship` ships.
    Spool(PathBuf),
}

/// Tuning of a shipper.
#[derive(Debug, Clone)]
pub struct ShipperConfig {
    /// How often to look for sealed segments when nothing wakes the shipper.
    pub interval: Duration,
    /// Longest wait between retries after a failure (the first wait is 200 ms, doubling).
    pub max_backoff: Duration,
    /// Log a warning while at least this many sealed segments wait for upload.
    pub backlog_warn: u64,
}

impl Default for ShipperConfig {
    fn default() -> Self {
        Self { interval: Duration::from_secs(1), max_backoff: Duration::from_secs(30), backlog_warn: 8 }
    }
}

/// Counters of a shipper.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipMetrics {
    /// Segments uploaded and verified (and removed locally).
    pub shipped: u64,
    /// Bytes of those segments.
    pub bytes: u64,
    /// Sealed segments waiting for upload (as of the last look).
    pub backlog: u64,
    /// Segments whose name is taken in the store by different bytes.
    pub conflicts: u64,
    /// Failed upload attempts (retried).
    pub failures: u64,
    /// `lost` files of chains whose writer is gone, uploaded (each content once).
    pub lost_files: u64,
}

#[derive(Debug, Default)]
struct Counters {
    shipped: AtomicU64,
    bytes: AtomicU64,
    backlog: AtomicU64,
    conflicts: AtomicU64,
    failures: AtomicU64,
    lost_files: AtomicU64,
}

enum Cmd {
    Wake,
    Drain(mpsc::Sender<Result<Vec<ShipError>, ShipError>>),
    Stop,
}

/// Uploads sealed segments in the background; see the [module docs](super).
#[derive(Debug)]
pub struct Shipper {
    tx: mpsc::Sender<Cmd>,
    counters: Arc<Counters>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Shipper {
    /// Start shipping what `scope` holds to `location`.
    pub fn spawn(scope: ShipScope, location: ObjectLocation, config: ShipperConfig) -> Result<Self, ShipError> {
        let (tx, rx) = mpsc::channel();
        let counters = Arc::new(Counters::default());
        let worker = Worker {
            scope,
            location,
            config,
            counters: counters.clone(),
            conflicted: HashSet::new(),
            lost_shipped: HashMap::new(),
        };
        let thread = std::thread::Builder::new()
            .name("kiroku-shipper".into())
            .spawn(move || worker.run(rx))
            .map_err(|e| ShipError::Shipper(format!("cannot start the thread: {e}")))?;
        Ok(Self { tx, counters, thread: Mutex::new(Some(thread)) })
    }

    /// Look for sealed segments now (called after a seal).
    pub fn wake(&self) {
        let _ = self.tx.send(Cmd::Wake);
    }

    /// Ship everything sealed so far, retrying failures up to five times with backoff,
    /// and wait. Returns the conflicts found (segments left in place), or the last
    /// error when the store could not be reached.
    pub fn drain(&self) -> Result<Vec<ShipError>, ShipError> {
        let (tx, rx) = mpsc::channel();
        let closed = || ShipError::Shipper("stopped".into());
        self.tx.send(Cmd::Drain(tx)).map_err(|_| closed())?;
        rx.recv().map_err(|_| closed())?
    }

    /// Stop the thread (after the round in progress).
    pub fn stop(&self) {
        let _ = self.tx.send(Cmd::Stop);
        if let Some(t) = self.thread.lock().ok().and_then(|mut t| t.take()) {
            let _ = t.join();
        }
    }

    /// Counters.
    pub fn metrics(&self) -> ShipMetrics {
        let c = &self.counters;
        ShipMetrics {
            shipped: c.shipped.load(Ordering::Relaxed),
            bytes: c.bytes.load(Ordering::Relaxed),
            backlog: c.backlog.load(Ordering::Relaxed),
            conflicts: c.conflicts.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            lost_files: c.lost_files.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Stop);
    }
}

struct Worker {
    scope: ShipScope,
    location: ObjectLocation,
    config: ShipperConfig,
    counters: Arc<Counters>,
    /// Local files whose name is taken by other bytes: kept, reported, not retried.
    conflicted: HashSet<PathBuf>,
    /// The `lost` files uploaded, as they were: not uploaded again while unchanged.
    lost_shipped: HashMap<PathBuf, blake3::Hash>,
}

/// Segments of one chain directory to ship, oldest first: the sealed ones, and those
/// the journal found corrupt (`*.corrupt`, for the compactor to quarantine and report).
fn sealed_in(dir: &Path) -> Result<Vec<PathBuf>, ShipError> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ShipError::Io { path: dir.to_owned(), message: e.to_string() }),
    };
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg" || x == "corrupt"))
        .collect();
    out.sort();
    Ok(out)
}

fn chain_dirs(spool: &Path) -> Result<Vec<PathBuf>, ShipError> {
    let rd = std::fs::read_dir(spool).map_err(|e| ShipError::Io { path: spool.to_owned(), message: e.to_string() })?;
    let mut out: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<kiroku_schemas::ChainId>().is_ok()))
        .map(|e| e.path())
        .collect();
    out.sort();
    Ok(out)
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Cmd>) {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(target: "kiroku::ship", "cannot start the shipper's runtime: {e}");
                return;
            }
        };
        let mut backoff: Option<Duration> = None;
        loop {
            let cmd = match rx.recv_timeout(backoff.unwrap_or(self.config.interval)) {
                Ok(cmd) => cmd,
                Err(mpsc::RecvTimeoutError::Timeout) => Cmd::Wake,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            };
            match cmd {
                Cmd::Stop => return,
                Cmd::Wake => {
                    backoff = match rt.block_on(self.round()) {
                        Ok(_) => None,
                        Err(_) => Some(self.next_backoff(backoff)),
                    }
                }
                Cmd::Drain(reply) => {
                    let mut wait = None;
                    let mut result = rt.block_on(self.round());
                    for _ in 0..5 {
                        if result.is_ok() {
                            break;
                        }
                        let w = self.next_backoff(wait);
                        wait = Some(w);
                        std::thread::sleep(w);
                        result = rt.block_on(self.round());
                    }
                    backoff = None;
                    let _ = reply.send(result);
                }
            }
        }
    }

    fn next_backoff(&self, prev: Option<Duration>) -> Duration {
        prev.map_or(Duration::from_millis(200), |d| (d * 2).min(self.config.max_backoff))
    }

    fn dirs(&self) -> Result<Vec<PathBuf>, ShipError> {
        match &self.scope {
            ShipScope::Chains(dirs) => Ok(dirs.clone()),
            ShipScope::Spool(spool) => chain_dirs(spool),
        }
    }

    fn pending(&self, dirs: &[PathBuf]) -> Result<Vec<(String, PathBuf)>, ShipError> {
        let mut out = Vec::new();
        for dir in dirs {
            let chain = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            out.extend(
                sealed_in(dir)?.into_iter().filter(|p| !self.conflicted.contains(p)).map(|p| (chain.clone(), p)),
            );
        }
        Ok(out)
    }

    /// Ship what is pending; conflicts are returned, the first other failure stops the round.
    async fn round(&mut self) -> Result<Vec<ShipError>, ShipError> {
        let dirs = self.dirs()?;
        let pending = self.pending(&dirs)?;
        let c = &self.counters;
        c.backlog.store(pending.len() as u64, Ordering::Relaxed);
        if pending.len() as u64 >= self.config.backlog_warn {
            tracing::warn!(target: "kiroku::ship", backlog = pending.len(), "{} sealed segments wait for upload to {}", pending.len(), self.location);
        }
        let mut conflicts = Vec::new();
        for (chain, path) in pending {
            match ship_segment(&self.location, &chain, &path).await {
                Ok((_, len)) => {
                    std::fs::remove_file(&path)
                        .map_err(|e| ShipError::Io { path: path.clone(), message: e.to_string() })?;
                    if let Some(dir) = path.parent() {
                        let _ = crate::journal::sync_dir(dir);
                    }
                    c.shipped.fetch_add(1, Ordering::Relaxed);
                    c.bytes.fetch_add(len, Ordering::Relaxed);
                    c.backlog.fetch_sub(1, Ordering::Relaxed);
                    tracing::debug!(target: "kiroku::ship", file = %path.display(), "shipped");
                }
                Err(e @ ShipError::Conflict { .. }) => {
                    c.conflicts.fetch_add(1, Ordering::Relaxed);
                    c.backlog.fetch_sub(1, Ordering::Relaxed);
                    tracing::error!(target: "kiroku::ship", "{e}");
                    self.conflicted.insert(path);
                    conflicts.push(e);
                }
                Err(e) => {
                    c.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(target: "kiroku::ship", "upload of {} failed (will retry): {e}", path.display());
                    return Err(e);
                }
            }
        }
        // After the segments: the losses follow the chain's last record.
        for dir in &dirs {
            if let Err(e) = self.ship_lost(dir).await {
                self.counters.failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "kiroku::ship", "upload of {}'s lost file failed (will retry): {e}", dir.display());
                return Err(e);
            }
        }
        Ok(conflicts)
    }

    /// Upload the chain's `lost` file if its writer is gone (the lock is free; held
    /// while the file is read) and this content was not uploaded yet.
    async fn ship_lost(&mut self, dir: &Path) -> Result<(), ShipError> {
        let path = dir.join(crate::journal::LOST_FILE);
        if path.symlink_metadata().is_err() {
            return Ok(());
        }
        let io = |e: String| ShipError::Io { path: path.clone(), message: e };
        let bytes = {
            let Some(_lock) = crate::journal::try_lock(dir).map_err(|e| io(e.to_string()))? else {
                return Ok(());
            };
            match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(e) => return Err(io(e.to_string())),
            }
        };
        let digest = blake3::hash(&bytes);
        if self.lost_shipped.get(&path) == Some(&digest) {
            return Ok(());
        }
        let chain = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        put_replacing(&self.location, &lost_key(chain), bytes.into(), &path).await?;
        self.lost_shipped.insert(path, digest);
        self.counters.lost_files.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
