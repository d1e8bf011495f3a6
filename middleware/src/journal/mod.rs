//! The journal: turns finished records into hash-chained segment files, off the hot path.
//!
//! One journal is one chain: a dedicated writer thread owns the chain directory
//! `<spool>/<chain id>/` (holding its lock file for its whole life), receives records
//! over a bounded channel, assigns seqs, links the chain, appends frames, fsyncs per
//! [`Durability`], writes signed checkpoints, rotates and seals segments, and on
//! [`Journal::shutdown`] drains the queue and seals the open segment.
//!
//! On open, a journal takes back the chain of a previous process with the same writer
//! name whose lock is free: it validates that chain's open segment to its tail, cuts
//! only a torn last frame (and says so), seals it, and continues the chain. A segment
//! corrupt in the middle is never appended to: it is renamed `*.corrupt` for the
//! collector to quarantine, and the journal starts a new chain. Found so while the
//! journal recovers from a failed write, it ends the chain: the journal stays failed
//! (its records hold seqs that were handed out, which no other record may take), and
//! the next process with this writer name starts a new chain.
//!
//! Each record states the losses since the record before it (`records_lost_before`).
//! Losses no record states yet are kept in the chain directory's `lost` file (within a
//! second, and when the journal stops), and the journal that takes the chain back states
//! them in its first record, counting from the disk the records a failed journal was in
//! doubt about ([`UnstatedLosses`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use kiroku::journal::{Durability, Journal, JournalConfig};
//! use kiroku_schemas::checkpoint::NoteSigner;
//!
//! let signer = NoteSigner::load("/etc/kiroku/signer.key".as_ref())?;
//! let journal = Journal::open(JournalConfig::new("/var/lib/kiroku/spool", signer).durability(Durability::Sync))?;
//! // ... serve requests through `AuditLayer::new(journal.clone())` ...
//! journal.shutdown().await?;
//! # Ok(()) }
//! ```

mod encoded;
mod faults;
mod lost;
mod spool;
mod writeback;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kiroku_schemas::checkpoint::CheckpointSigner;
use kiroku_schemas::{AuditRecord, ChainId};
use tokio::sync::{mpsc, oneshot};

pub use faults::Faults;
pub use lost::{LOST_FILE, UnstatedLosses, read_lost_file};
#[cfg(feature = "ship")]
pub(crate) use spool::try_lock;
pub use spool::{CHAIN_LOCK_FILE, HEAD_FILE, RecoveryReport, abandon_chain, segment_name, sync_dir, write_atomic};
pub use writeback::Writeback;

/// When a record counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to the OS page cache after each batch; fsync at seal. A machine crash
    /// can lose records the OS had not written back (a process crash loses nothing
    /// that was written).
    Buffered,
    /// fsync at most every interval: a machine crash loses at most that window.
    Batched(Duration),
    /// The response's end waits until its record is fsynced (group commit: one fsync
    /// covers every record queued meanwhile).
    Sync,
}

/// What the service does when the journal cannot take a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailurePolicy {
    /// Keep serving; count each record that could not be written (metric, log line,
    /// and `records_lost_before` on the next record written).
    FailOpen,
    /// Refuse new requests with 503 and a reason before calling the model while the
    /// journal is failed; when the queue is full, wait for room instead of dropping.
    #[default]
    FailClosed,
}

/// Configuration of a journal.
#[derive(Clone)]
pub struct JournalConfig {
    pub(crate) spool: PathBuf,
    pub(crate) writer_name: String,
    pub(crate) signer: Arc<dyn CheckpointSigner>,
    pub(crate) namespace: String,
    pub(crate) durability: Durability,
    pub(crate) on_failure: FailurePolicy,
    pub(crate) queue_capacity: usize,
    pub(crate) segment_max_bytes: u64,
    pub(crate) segment_max_age: Duration,
    pub(crate) checkpoint_interval: Duration,
    pub(crate) faults: Option<Arc<Faults>>,
    /// Called on the writer thread after each seal (wakes the shipper).
    pub(crate) on_seal: Option<Arc<dyn Fn() + Send + Sync>>,
    #[cfg(feature = "ship")]
    pub(crate) ship: Option<(crate::ship::ObjectLocation, crate::ship::ShipperConfig)>,
}

impl std::fmt::Debug for JournalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JournalConfig")
            .field("spool", &self.spool)
            .field("writer_name", &self.writer_name)
            .field("signer", &self.signer.name())
            .field("durability", &self.durability)
            .field("on_failure", &self.on_failure)
            .finish_non_exhaustive()
    }
}

impl JournalConfig {
    /// A journal writing under `spool`, signing checkpoints with `signer`.
    /// Defaults: writer name `default`, `Durability::Batched(100ms)`, `FailClosed`,
    /// a queue of 65 536 records, segments sealed at 64 MiB or 1 hour, a checkpoint
    /// every 10 seconds while records arrive.
    pub fn new(spool: impl Into<PathBuf>, signer: impl CheckpointSigner + 'static) -> Self {
        Self {
            spool: spool.into(),
            writer_name: "default".into(),
            signer: Arc::new(signer),
            namespace: "kiroku".into(),
            durability: Durability::Batched(Duration::from_millis(100)),
            on_failure: FailurePolicy::FailClosed,
            queue_capacity: 65_536,
            segment_max_bytes: 64 << 20,
            segment_max_age: Duration::from_secs(3600),
            checkpoint_interval: Duration::from_secs(10),
            faults: None,
            on_seal: None,
            #[cfg(feature = "ship")]
            ship: None,
        }
    }

    /// A name that lets a restarted process take back its chain (e.g. the instance
    /// name). Processes running at once always get distinct chains.
    pub fn writer_name(mut self, name: impl Into<String>) -> Self {
        self.writer_name = name.into();
        self
    }

    /// Durability policy.
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Failure policy.
    pub fn on_failure(mut self, p: FailurePolicy) -> Self {
        self.on_failure = p;
        self
    }

    /// Capacity of the queue between the service and the writer.
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n.max(1);
        self
    }

    /// Seal and rotate a segment once it reaches this size.
    pub fn segment_max_bytes(mut self, n: u64) -> Self {
        self.segment_max_bytes = n;
        self
    }

    /// Seal and rotate a segment once it is this old (and holds records).
    pub fn segment_max_age(mut self, d: Duration) -> Self {
        self.segment_max_age = d;
        self
    }

    /// Write a signed checkpoint this often while records arrive.
    pub fn checkpoint_interval(mut self, d: Duration) -> Self {
        self.checkpoint_interval = d;
        self
    }

    /// Checkpoint origin namespace (`<namespace>/<chain id>`).
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = ns.into();
        self
    }

    /// Route segment writes, fsyncs and renames through `faults` (a test hook).
    #[doc(hidden)]
    pub fn fault_injection(mut self, faults: Arc<Faults>) -> Self {
        self.faults = Some(faults);
        self
    }

    /// Ship each sealed segment to `location` (under `spool/<chain>/`) and remove the
    /// local file once the upload is verified; see [`crate::ship`]. Shutdown ships
    /// what is left before it returns.
    ///
    /// ```no_run
    /// # fn demo(signer: kiroku_schemas::checkpoint::NoteSigner) -> Result<(), Box<dyn std::error::Error>> {
    /// use kiroku::journal::{Journal, JournalConfig};
    /// use kiroku::ship::{ObjectLocation, ShipperConfig};
    ///
    /// let to = ObjectLocation::open("s3://audit-logs/fleet")?;
    /// let journal = Journal::open(JournalConfig::new("/var/lib/kiroku/spool", signer).ship_to(to, ShipperConfig::default()))?;
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "ship")]
    pub fn ship_to(mut self, location: crate::ship::ObjectLocation, config: crate::ship::ShipperConfig) -> Self {
        self.ship = Some((location, config));
        self
    }

    /// The spool directory.
    pub fn spool(&self) -> &Path {
        &self.spool
    }
}

/// Errors of the journal.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("journal I/O error on {path}: {message}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        message: String,
    },
    /// The journal failed earlier and has not recovered.
    #[error("journal is failed: {0}")]
    Failed(String),
    /// The journal was shut down.
    #[error("journal is shut down")]
    Closed,
    /// The queue is full (FailOpen drops the record).
    #[error("journal queue is full")]
    QueueFull,
    /// A segment could not be written (format error).
    #[error("journal write error: {0}")]
    Write(String),
}

impl JournalError {
    pub(crate) fn io(path: &Path, e: &std::io::Error) -> Self {
        Self::Io { path: path.to_owned(), message: e.to_string() }
    }
}

/// Work a record still needs before it is serialised, run on the writer thread so the
/// request path never pays for it (extraction from bodies, redaction).
pub type Finisher = Box<dyn FnOnce(&mut AuditRecord) + Send>;

/// A finished exchange on its way to the journal.
pub struct PendingRecord {
    /// The record (its `chain_id` and `seq` are set by the journal).
    pub record: AuditRecord,
    /// Runs on the writer thread before serialisation.
    pub finish: Option<Finisher>,
}

impl std::fmt::Debug for PendingRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingRecord").field("record_id", &self.record.record_id).finish_non_exhaustive()
    }
}

/// Where a written record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// Its seq in the chain.
    pub seq: u64,
}

pub(crate) type Ack = oneshot::Sender<Result<Written, JournalError>>;

pub(crate) enum Msg {
    Record(Box<PendingRecord>, Option<Ack>),
    Encoded(encoded::Encoded, Option<Ack>),
    Flush(oneshot::Sender<Result<(), JournalError>>),
    Shutdown(oneshot::Sender<Result<ShutdownReport, JournalError>>),
}

/// Counters shared between the service side and the writer thread.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub(crate) healthy: AtomicBool,
    pub(crate) closed: AtomicBool,
    pub(crate) lost_pending: AtomicU64,
    pub(crate) lost_total: AtomicU64,
    pub(crate) lost_kept: AtomicU64,
    pub(crate) written: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) fsyncs: AtomicU64,
    pub(crate) fsync_nanos: AtomicU64,
    pub(crate) segments_sealed: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) last_error: Mutex<Option<String>>,
    /// Buffers of records serialised by `append`'s callers, back from the writer.
    pub(crate) buffers: encoded::Buffers,
}

/// A snapshot of the journal's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalMetrics {
    /// Records written.
    pub records_written: u64,
    /// Bytes appended to segments.
    pub bytes_written: u64,
    /// Records that could not be written (FailOpen).
    pub records_lost: u64,
    /// Losses no record in the chain states yet: each record written carries the losses
    /// since the previous one in `records_lost_before`, so losses after the last record
    /// written are known only here (and in the log) until the next record is written.
    /// This process's (part of `records_lost`), and those an earlier process of the
    /// chain left in its `lost` file, until a record states them.
    pub records_lost_unstated: u64,
    /// Of `records_lost_unstated`, those the journal kept in its chain's `lost` file
    /// when it stopped: the next process of this writer takes the chain back and its
    /// first record states them (exactly: it counts the records in doubt from the disk).
    /// Zero while the journal runs.
    pub records_lost_kept: u64,
    /// Records waiting in the queue.
    pub queue_depth: u64,
    /// fsync calls.
    pub fsyncs: u64,
    /// Total time spent in fsync, nanoseconds.
    pub fsync_nanos: u64,
    /// Segments sealed.
    pub segments_sealed: u64,
    /// Requests refused with 503 under `FailClosed`.
    pub requests_refused: u64,
    /// True while the journal can write.
    pub healthy: bool,
}

/// What shutdown did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShutdownReport {
    /// The chain.
    pub chain_id: ChainId,
    /// Seq the next record would have had (= records in the chain).
    pub next_seq: u64,
    /// The sealed segment file, if the open segment held records.
    pub sealed: Option<PathBuf>,
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    shared: Arc<Shared>,
    chain_id: ChainId,
    chain_dir: PathBuf,
    policy: FailurePolicy,
    durability: Durability,
    recovery: Option<RecoveryReport>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    #[cfg(feature = "ship")]
    shipper: Option<Arc<crate::ship::Shipper>>,
}

/// Handle to a journal; cheap to clone.
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("chain_id", &self.inner.chain_id).field("dir", &self.inner.chain_dir).finish()
    }
}

/// Outcome of handing a record to the journal without waiting.
pub(crate) enum Submitted {
    /// Queued; under `Sync` the receiver resolves once the record is durable.
    Queued(Option<oneshot::Receiver<Result<Written, JournalError>>>),
    /// Not queued: the queue is full (the record is handed back).
    Full(Box<PendingRecord>),
    /// The journal is closed or failed; the record was counted as lost.
    Lost(JournalError),
}

impl Journal {
    /// Open (or take back) this writer's chain under the spool and start the writer
    /// thread. Recovery of a previous process's open segment happens here.
    pub fn open(#[allow(unused_mut)] mut config: JournalConfig) -> Result<Self, JournalError> {
        let opened = spool::open_chain(&config)?;
        #[cfg(feature = "ship")]
        let shipper = match config.ship.take() {
            Some((location, ship_config)) => {
                // A chain recovery ended (its open segment corrupt) still has segments to ship.
                let ended = opened.recovery.as_ref().and_then(|r| r.corrupt.as_ref()).and_then(|(p, _)| p.parent());
                let dirs = std::iter::once(opened.dir.clone()).chain(ended.map(Path::to_owned)).collect();
                let shipper = crate::ship::Shipper::spawn(crate::ship::ShipScope::Chains(dirs), location, ship_config)
                    .map_err(|e| JournalError::Failed(e.to_string()))?;
                let shipper = Arc::new(shipper);
                let wake = shipper.clone();
                config.on_seal = Some(Arc::new(move || wake.wake()));
                // Segments sealed by recovery (or left by a previous process) go first.
                shipper.wake();
                Some(shipper)
            }
            None => None,
        };
        if let Some(r) = &opened.recovery {
            tracing::warn!(target: "kiroku::journal", chain = %opened.chain_id, "{r}");
        }
        if opened.owed_losses > 0 {
            tracing::warn!(target: "kiroku::journal", chain = %opened.chain_id, "an earlier process of this chain lost {} audit record(s) after its last record; the next record states them", opened.owed_losses);
        }
        let shared = Arc::new(Shared {
            healthy: AtomicBool::new(true),
            lost_pending: AtomicU64::new(opened.owed_losses),
            ..Shared::default()
        });
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let chain_id = opened.chain_id;
        let chain_dir = opened.dir.clone();
        let recovery = opened.recovery.clone();
        let thread_shared = shared.clone();
        let policy = config.on_failure;
        let durability = config.durability;
        let thread = std::thread::Builder::new()
            .name(format!("kiroku-journal-{}", &chain_id.to_string()[..8]))
            .spawn(move || writer::run(config, opened, rx, thread_shared))
            .map_err(|e| JournalError::io(&chain_dir, &e))?;
        Ok(Self {
            inner: Arc::new(Inner {
                tx,
                shared,
                chain_id,
                chain_dir,
                policy,
                durability,
                recovery,
                thread: Mutex::new(Some(thread)),
                #[cfg(feature = "ship")]
                shipper,
            }),
        })
    }

    /// The chain this journal writes.
    pub fn chain_id(&self) -> ChainId {
        self.inner.chain_id
    }

    /// The chain directory under the spool.
    pub fn chain_dir(&self) -> &Path {
        &self.inner.chain_dir
    }

    /// What recovery found when this journal opened, if it took back a chain.
    pub fn recovery(&self) -> Option<&RecoveryReport> {
        self.inner.recovery.as_ref()
    }

    /// The failure policy.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.inner.policy
    }

    /// The durability policy.
    pub fn durability(&self) -> Durability {
        self.inner.durability
    }

    /// True while the journal can write (not failed, not shut down).
    pub fn is_healthy(&self) -> bool {
        self.inner.shared.healthy.load(Ordering::Acquire) && !self.inner.shared.closed.load(Ordering::Acquire)
    }

    /// Why the journal is not healthy, if it is not.
    pub fn failure_reason(&self) -> Option<String> {
        if self.inner.shared.closed.load(Ordering::Acquire) {
            return Some("journal is shut down".into());
        }
        if self.inner.shared.healthy.load(Ordering::Acquire) {
            return None;
        }
        self.inner.shared.last_error.lock().ok().and_then(|e| e.clone()).or_else(|| Some("journal failed".into()))
    }

    /// Count a request refused because the journal could not write.
    pub(crate) fn note_refusal(&self) {
        self.inner.shared.refused.fetch_add(1, Ordering::Relaxed);
    }

    /// Counters.
    pub fn metrics(&self) -> JournalMetrics {
        let s = &self.inner.shared;
        JournalMetrics {
            records_written: s.written.load(Ordering::Relaxed),
            bytes_written: s.bytes.load(Ordering::Relaxed),
            records_lost: s.lost_total.load(Ordering::Relaxed),
            records_lost_unstated: s.lost_pending.load(Ordering::Relaxed),
            records_lost_kept: s.lost_kept.load(Ordering::Relaxed),
            queue_depth: (self.inner.tx.max_capacity() - self.inner.tx.capacity()) as u64,
            fsyncs: s.fsyncs.load(Ordering::Relaxed),
            fsync_nanos: s.fsync_nanos.load(Ordering::Relaxed),
            segments_sealed: s.segments_sealed.load(Ordering::Relaxed),
            requests_refused: s.refused.load(Ordering::Relaxed),
            healthy: self.is_healthy(),
        }
    }

    fn wants_ack(&self) -> bool {
        self.inner.durability == Durability::Sync
    }

    /// Hand a record over without waiting.
    pub(crate) fn try_submit(&self, rec: PendingRecord) -> Submitted {
        let (ack, rx) = if self.wants_ack() {
            let (a, r) = oneshot::channel();
            (Some(a), Some(r))
        } else {
            (None, None)
        };
        match self.inner.tx.try_send(Msg::Record(Box::new(rec), ack)) {
            Ok(()) => Submitted::Queued(rx),
            Err(mpsc::error::TrySendError::Full(Msg::Record(rec, _))) => Submitted::Full(rec),
            Err(_) => {
                self.count_lost(1, "journal is shut down");
                Submitted::Lost(JournalError::Closed)
            }
        }
    }

    /// Hand a record over, waiting for room in the queue.
    pub(crate) async fn submit_wait(
        &self,
        rec: Box<PendingRecord>,
    ) -> Result<Option<oneshot::Receiver<Result<Written, JournalError>>>, JournalError> {
        self.send_wait(|ack| Msg::Record(rec, ack)).await
    }

    async fn send_wait(
        &self,
        msg: impl FnOnce(Option<Ack>) -> Msg,
    ) -> Result<Option<oneshot::Receiver<Result<Written, JournalError>>>, JournalError> {
        let (ack, rx) = if self.wants_ack() {
            let (a, r) = oneshot::channel();
            (Some(a), Some(r))
        } else {
            (None, None)
        };
        match self.inner.tx.send(msg(ack)).await {
            Ok(()) => Ok(rx),
            Err(_) => {
                self.count_lost(1, "journal is shut down");
                Err(JournalError::Closed)
            }
        }
    }

    /// Write a record and wait until the journal has taken it (and, under `Sync`,
    /// until it is durable). For records that do not come from the layer. The record
    /// is serialised here, on the caller's thread; the writer thread only puts in its
    /// seq.
    pub async fn append(&self, record: AuditRecord) -> Result<Option<Written>, JournalError> {
        let rx = match encoded::Encoded::new(record, self.inner.chain_id, &self.inner.shared.buffers) {
            Ok(e) => self.send_wait(|ack| Msg::Encoded(e, ack)).await?,
            Err(record) => self.submit_wait(Box::new(PendingRecord { record: *record, finish: None })).await?,
        };
        match rx {
            Some(rx) => rx.await.map_err(|_| JournalError::Closed)?.map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn count_lost(&self, n: u64, why: &str) {
        let s = &self.inner.shared;
        s.lost_pending.fetch_add(n, Ordering::AcqRel);
        let total = s.lost_total.fetch_add(n, Ordering::AcqRel) + n;
        tracing::error!(target: "kiroku::journal", chain = %self.inner.chain_id, lost_total = total, "audit record lost: {why}");
    }

    /// Make everything queued so far durable (fsync), whatever the durability policy.
    /// An error while the journal is failed (and cannot recover yet): what was queued
    /// meanwhile was not written.
    pub async fn flush(&self) -> Result<(), JournalError> {
        let (tx, rx) = oneshot::channel();
        self.inner.tx.send(Msg::Flush(tx)).await.map_err(|_| JournalError::Closed)?;
        rx.await.map_err(|_| JournalError::Closed)?
    }

    /// Drain the queue, seal the open segment and stop the writer. Records submitted
    /// after this are counted as lost.
    pub async fn shutdown(&self) -> Result<ShutdownReport, JournalError> {
        let (tx, rx) = oneshot::channel();
        self.inner.tx.send(Msg::Shutdown(tx)).await.map_err(|_| JournalError::Closed)?;
        let report = rx.await.map_err(|_| JournalError::Closed)?;
        self.inner.shared.closed.store(true, Ordering::Release);
        let handle = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
        #[cfg(feature = "ship")]
        if let Some(shipper) = self.inner.shipper.clone() {
            let chain = self.inner.chain_id;
            let _ = tokio::task::spawn_blocking(move || {
                match shipper.drain() {
                    Ok(conflicts) if conflicts.is_empty() => {}
                    Ok(conflicts) => tracing::error!(target: "kiroku::ship", %chain, "{} segments not shipped: name taken by other content", conflicts.len()),
                    Err(e) => tracing::error!(target: "kiroku::ship", %chain, "shipping unfinished at shutdown (what was not uploaded stays in the spool): {e}"),
                }
                shipper.stop();
            })
            .await;
        }
        report
    }

    /// Counters of the shipper, when the journal ships ([`JournalConfig::ship_to`]).
    #[cfg(feature = "ship")]
    pub fn ship_metrics(&self) -> Option<crate::ship::ShipMetrics> {
        self.inner.shipper.as_ref().map(|s| s.metrics())
    }
}
