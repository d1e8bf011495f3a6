//! Compaction: verify sealed segments (and the open segments of writers that are gone)
//! and write their records to Parquet, exactly once.
//!
//! Per chain, in seq order, each segment is verified in full (frames, chain links,
//! checkpoint signatures with the configured key, continuity with what the archive
//! already holds) while its records are parsed; then its records are written to
//! `records/date=YYYY-MM-DD/<chain>-<first seq>-<last seq>.parquet` (temp file, fsync,
//! rename, directory fsync), then the manifest is replaced atomically, then the segment
//! is moved to `<spool>/compacted/`. A crash between any two steps is repaired by the
//! next run: files the manifest does not name are rewritten under the same name, and a
//! segment the manifest already covers is only moved. A segment that fails
//! verification is quarantined with a report and its chain waits behind it; other
//! chains go on. Reading runs one segment ahead on a second thread (`reading`), from
//! one chain straight on to the next; hashing (side by side, `ComputedHash::of_all`)
//! and parsing the records are shared by both threads (`records`); the order-dependent
//! checks run on the reading thread chunk by chunk as the chunks are done, and give
//! each segment its verdict; writing and committing stay in order on the calling one
//! (`file`), which hands the payload column of the run's last file to the reader, idle
//! by then.

mod file;
mod reading;
mod records;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, SyncSender, TrySendError};

use arrow_array::RecordBatch;
use arrow_select::interleave::interleave_record_batch;
use kiroku_schemas::checkpoint::TrustedKeys;
use kiroku_schemas::digest::to_hex;
use kiroku_schemas::segment::{ChainState, Mode, Problem, VerifyOptions, verify_segment};
use kiroku_schemas::{ChainId, Timestamp};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::archive_store::{ArchiveStore, Lease, ManifestState};
use crate::columns;
use crate::error::CliError;
use crate::manifest::{ChainEntry, FileEntry, Gap, SegmentEnd, SegmentEntry, Unstated};
use crate::spool::{OrphanGuard, SegmentRef, SpoolStore};
use file::FileEncoder;
use kiroku::journal::UnstatedLosses;
use reading::{Pending, Refusal, Segment, Verdict};
use records::{Chunk, Frame, Rows, Side};

/// How to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// The keys one of which must have signed every checkpoint (the log's key; its
    /// earlier keys too, once it was rotated).
    pub verifier: TrustedKeys,
    /// Rows per row group.
    pub row_group_rows: usize,
    /// Remove archive files and compacted segments older than a period after each pass
    /// ([`crate::retention`]); `None` keeps everything.
    pub retain: Option<crate::retention::Retention>,
    /// Gaps the operator accepts, by chain and first missing seq (the archive's head of
    /// the chain): when the chain's next segment starts after that seq, it is read from
    /// its own header and the seqs between are recorded as a gap ([`Gap`]) instead of
    /// waiting for them. For a segment that failed verification and has no good copy.
    pub accept_gaps: Vec<(ChainId, u64)>,
}

impl CompactOptions {
    /// Defaults: 128k rows per row group, keep everything.
    pub fn new(verifier: impl Into<TrustedKeys>) -> Self {
        Self { verifier: verifier.into(), row_group_rows: 128 * 1024, retain: None, accept_gaps: Vec::new() }
    }

    /// True when the operator accepts that `chain` has no records from `seq` up to its
    /// next segment.
    fn accepts_gap(&self, chain: ChainId, seq: u64) -> bool {
        self.accept_gaps.contains(&(chain, seq))
    }

    /// What `seg` is verified against: its mode (sealed or open), the configured key,
    /// its chain, and the chain state it must continue when that is known.
    fn verify_options(&self, seg: &SegmentRef, previous: Option<&ChainState>) -> VerifyOptions {
        VerifyOptions {
            mode: if seg.sealed { Mode::Sealed } else { Mode::Open },
            verifier: Some(self.verifier.clone()),
            chain_id: Some(previous.map_or(seg.chain_id, |p| p.chain_id)),
            previous: previous.cloned(),
        }
    }
}

/// What a compaction run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Segments compacted.
    pub segments: u64,
    /// Records written.
    pub records: u64,
    /// Bytes of segment input.
    pub input_bytes: u64,
    /// Parquet files written (archive-relative paths).
    pub files: Vec<String>,
    /// Segments quarantined, with the problem.
    pub quarantined: Vec<(String, String)>,
    /// Segments left waiting, each with why: behind one of their chain that was
    /// quarantined or could not be verified, or (a dead writer's open segment) after an
    /// accepted gap with no signed checkpoint to confirm where the chain goes on from.
    pub blocked: Vec<String>,
    /// Segments left in place because their checkpoints carry no signature by the
    /// configured key, only others (a wrong `--pubkey`, or a segment of another log),
    /// with the problem.
    pub unverifiable: Vec<(String, String)>,
    /// Torn tails found in orphaned open segments (reported, not compacted).
    pub torn_tails: Vec<String>,
    /// Gaps accepted and recorded in the manifest (`--accept-gap`), one line each.
    pub gaps: Vec<String>,
    /// Losses that writers which are gone left stated by no record, noted in the
    /// manifest, one line per chain.
    pub unstated: Vec<String>,
    /// `lost` files of writers that are gone that could not be read, with the problem.
    pub unreadable_lost: Vec<String>,
    /// Orphaned open segments recovered.
    pub orphans: u64,
    /// Chains left to another compactor (its lease was live, or it committed first).
    pub elsewhere: Vec<String>,
    /// What retention removed, one line per chain.
    pub retired: Vec<String>,
    /// Archive files retention deleted.
    pub removed_files: u64,
    /// Compacted segments retention deleted.
    pub removed_segments: u64,
    /// Retired files the store would not delete yet (retried by the next pass).
    pub retention_kept: Vec<String>,
    /// Chains retention left alone because their files did not match the manifest.
    pub retention_refused: Vec<String>,
}

impl CompactReport {
    /// True when something needs a person's attention.
    pub fn has_problems(&self) -> bool {
        !self.quarantined.is_empty()
            || !self.unreadable_lost.is_empty()
            || !self.unverifiable.is_empty()
            || !self.blocked.is_empty()
            || !self.retention_refused.is_empty()
    }
}

/// One row of a segment's parsed chunks: where it is, and what it sorts by.
#[derive(Clone, Copy)]
struct Row {
    /// (started_at, seq): files are sorted by time, seq breaks ties.
    key: (Timestamp, u64),
    /// The chunk that holds it and its row there.
    chunk: usize,
    row: usize,
}

/// Writer properties of archive files.
pub fn writer_properties(row_group_rows: usize, chain: &str) -> WriterProperties {
    let schema = columns::schema();
    let started = schema.index_of("started_at").unwrap_or(7) as u32;
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(row_group_rows))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: started as i32,
            descending: false,
            nulls_first: false,
        }]))
        .set_key_value_metadata(Some(vec![
            KeyValue::new("kiroku.archive_schema".into(), "1".to_owned()),
            KeyValue::new("kiroku.chain_id".into(), chain.to_owned()),
        ]));
    for c in columns::BLOOM_COLUMNS {
        // Sized for a full row group of distinct values (the default assumes 1M).
        b = b
            .set_column_bloom_filter_enabled(ColumnPath::from(c), true)
            .set_column_bloom_filter_max_ndv(ColumnPath::from(c), row_group_rows as u64);
    }
    // Payloads, captured bodies, hashes, digests and random ids are unique per row:
    // dictionaries only cost time (and the fallback to plain encoding after the first
    // megabyte, space). Their minimum and maximum prune nothing either (a page of them
    // spans nearly the whole range; point lookups use the bloom filters), and computing
    // them costs two comparisons per value.
    for c in [
        "payload",
        "hash",
        "prev_hash",
        "request_captured",
        "response_captured",
        "request_blake3",
        "response_blake3",
        "trace_id",
        "span_id",
        "response_id",
        "output_digest",
    ] {
        b = b
            .set_column_dictionary_enabled(ColumnPath::from(c), false)
            .set_column_statistics_enabled(ColumnPath::from(c), EnabledStatistics::None);
    }
    // Record ids, seqs, instants and durations are unique too, but ordered by time, so
    // their statistics prune.
    for c in ["record_id", "seq", "started_at", "first_byte_at", "finished_at", "duration_ms", "ttfb_ms"] {
        b = b.set_column_dictionary_enabled(ColumnPath::from(c), false);
    }
    b.build()
}

/// Rows gathered into one `RecordBatch` for the Parquet writer when they are out of
/// chunk order.
const GATHER_ROWS: usize = 16 * 1024;

/// A stretch of rows that lie back to back in one chunk, at least this long, is written
/// as a slice of that chunk's batch (no copy); shorter stretches are gathered, since
/// every write to the Parquet writer costs a fixed amount per column.
const SLICE_MIN_ROWS: usize = 256;

/// The Parquet writer of one file, fed rows that name rows of the chunks' batches.
struct FileRows<'a, W: std::io::Write + Send> {
    w: FileEncoder<W>,
    batches: &'a [&'a RecordBatch],
    gather: Vec<(usize, usize)>,
    rel: &'a str,
}

impl<W: std::io::Write + Send> FileRows<'_, W> {
    fn err(&self, e: impl std::fmt::Display) -> CliError {
        CliError::Io(format!("{}: {e}", self.rel))
    }

    /// Write `rows` (sorted by time) in order.
    fn write(&mut self, rows: &[Row]) -> Result<(), CliError> {
        for run in rows.chunk_by(|a, b| a.chunk == b.chunk && b.row == a.row + 1) {
            if run.len() >= SLICE_MIN_ROWS {
                self.flush()?;
                let b = self.batches[run[0].chunk].slice(run[0].row, run.len());
                self.w.write(&b).map_err(|e| self.err(e))?;
            } else {
                self.gather.extend(run.iter().map(|r| (r.chunk, r.row)));
                if self.gather.len() >= GATHER_ROWS {
                    self.flush()?;
                }
            }
        }
        self.flush()
    }

    fn flush(&mut self) -> Result<(), CliError> {
        if self.gather.is_empty() {
            return Ok(());
        }
        let b = interleave_record_batch(self.batches, &self.gather)
            .map_err(|e| self.err(format!("ordering rows by time: {e}")))?;
        self.gather.clear();
        self.w.write(&b).map_err(|e| self.err(e))
    }
}

/// Write one file durably; returns its manifest entry. `rows` are sorted by time; each
/// names a row of one of `batches`. With `tail` (the reading thread has nothing left to
/// read), the reader encodes the payload column meanwhile.
fn write_file(
    archive: &dyn ArchiveStore,
    chain: ChainId,
    date: &str,
    rows: &[Row],
    batches: &[&RecordBatch],
    opts: &CompactOptions,
    tail: Option<&Sender<Work>>,
) -> Result<FileEntry, CliError> {
    // The file's seq range (rows are in time order, which need not be seq order).
    let first = rows.iter().map(|r| r.key.1).min().unwrap_or(0);
    let last = rows.iter().map(|r| r.key.1).max().unwrap_or(0);
    let rel = format!("records/date={date}/{chain}-{first}-{last}.parquet");
    let chain_s = chain.to_string();
    let (bytes, blake3) = archive.write_file(&rel, &mut |out| {
        let props = writer_properties(opts.row_group_rows, &chain_s);
        let err = |e: parquet::errors::ParquetError| CliError::Io(format!("{rel}: {e}"));
        let write = |w| {
            let mut file = FileRows { w, batches, gather: Vec::new(), rel: &rel };
            file.write(rows)?;
            file.w.finish().map_err(err)
        };
        let Some(reader) = tail else {
            return write(FileEncoder::new(out, columns::schema(), props).map_err(err)?);
        };
        let (w, helper) = FileEncoder::with_helper(out, columns::schema(), props).map_err(err)?;
        if reader.send(Work::Encode(helper)).is_err() {
            return Err(CliError::Io(format!("{rel}: the compaction reader stopped")));
        }
        // On every way out, `w` is dropped and the reader's part returns.
        write(w)
    })?;
    Ok(FileEntry {
        path: rel,
        first_seq: first,
        last_seq: last,
        rows: rows.len() as u64,
        bytes,
        blake3,
        date: date.to_owned(),
    })
}

/// One compaction run's state.
struct Run<'a> {
    spool: &'a dyn SpoolStore,
    archive: &'a dyn ArchiveStore,
    opts: &'a CompactOptions,
    m: ManifestState,
    report: CompactReport,
    progress: &'a mut dyn FnMut(u64),
}

/// Compact everything ready in `spool` into `archive`. `progress` is called with the
/// number of records written so far.
///
/// Two threads for the whole run: a reader works through one job per
/// chain, a segment ahead of this thread, which writes and commits; this thread leases
/// and lists the next chain while it processes the current one, so that the reader goes
/// on to the next chain instead of waiting while the current chain's last segment is
/// written.
pub fn compact(
    spool: &dyn SpoolStore,
    archive: &dyn ArchiveStore,
    opts: &CompactOptions,
    progress: &mut dyn FnMut(u64),
) -> Result<CompactReport, CliError> {
    let m = ManifestState::load(archive)?;
    let mut run = Run { spool, archive, opts, m, report: CompactReport::default(), progress };
    let chains = spool.chains()?;
    std::thread::scope(|scope| {
        let (jobs_tx, jobs) = std::sync::mpsc::channel::<Work>();
        let (steps_tx, steps) = std::sync::mpsc::sync_channel::<Msg>(0);
        let (spent_tx, spent) = std::sync::mpsc::channel::<Spent>();
        scope.spawn(move || reader(spool, opts, jobs, steps_tx, spent));
        let mut chains = chains.into_iter().zip(0u64..);
        let mut next = run.prepare(&mut chains, &jobs_tx)?;
        while let Some(mut chain) = next.take() {
            next = match run.prepare(&mut chains, &jobs_tx) {
                Ok(n) => n,
                Err(e) => {
                    archive.release(chain.lease);
                    return Err(e);
                }
            };
            // No chain after this one: the reader will be idle when its last segment is
            // written, and can encode part of it.
            chain.tail = next.is_none().then(|| jobs_tx.clone());
            let result = run.process(&mut chain, &steps, &spent_tx);
            archive.release(chain.lease);
            if let Err(e) = result {
                if let Some(n) = next {
                    archive.release(n.lease);
                }
                return Err(e);
            }
        }
        Ok(())
    })?;
    if let Some(r) = opts.retain {
        crate::retention::apply(spool, archive, &mut run.m, r, &mut run.report)?;
    }
    Ok(run.report)
}

/// One chain's work: what the reader is given, and what this thread keeps.
struct ChainWork {
    /// Its job's number in this run.
    id: u64,
    lease: Lease,
    /// Where the archive holds the chain (updated as segments commit).
    state: ChainState,
    /// Sealed segments, then the open ones of a writer that is gone.
    segs: Vec<SegmentRef>,
    /// Segments its journal found corrupt: quarantined once the others are handled.
    corrupt: Vec<SegmentRef>,
    /// Holds a gone writer's lock while its open segments are compacted.
    _orphans: Option<OrphanGuard>,
    /// The losses a gone writer left in the chain's `lost` file (or why it cannot be
    /// read): noted in the manifest once every segment is archived.
    lost: Option<Result<UnstatedLosses, String>>,
    /// Tells the reader to stop reading this chain.
    cancel: Arc<AtomicBool>,
    /// The reader's work queue, when no chain comes after this one: the reader is idle
    /// once the chain's last segment is read, and encodes part of its last file.
    tail: Option<Sender<Work>>,
}

/// A chain as [`Run::list`] finds it.
struct Listing {
    state: ChainState,
    known: Vec<SegmentEntry>,
    quarantined: Vec<u64>,
    segs: Vec<SegmentRef>,
    corrupt: Vec<SegmentRef>,
    orphans: Option<OrphanGuard>,
    lost: Option<Result<UnstatedLosses, String>>,
}

/// The reader's work, in the order it is given.
enum Work {
    /// Read a chain.
    Chain(Job),
    /// Encode part of the run's last file (sent once every chain is read).
    Encode(file::Helper),
}

/// A chain for the reader: its segments in order, from where the archive holds it.
struct Job {
    id: u64,
    segs: Vec<SegmentRef>,
    start: ChainState,
    known: Vec<SegmentEntry>,
    /// First seqs of the chain's segments in quarantine.
    quarantined: Vec<u64>,
    cancel: Arc<AtomicBool>,
}

/// What the reader sends: a step per segment, with the number of the job (chain) it
/// belongs to. The writer drops steps of a job it cancelled; the reader sends no end of
/// a job, so that it goes on to the next chain while the writer commits the last
/// segment of this one.
struct Msg {
    job: u64,
    step: Step,
}

impl Run<'_> {
    /// Lease the next chain that another compactor is not working on, list its
    /// segments and give the reader its job.
    fn prepare(
        &mut self,
        chains: &mut impl Iterator<Item = (ChainId, u64)>,
        jobs: &Sender<Work>,
    ) -> Result<Option<ChainWork>, CliError> {
        for (chain, id) in chains {
            let Some(lease) = self.archive.lease(chain)? else {
                self.report.elsewhere.push(format!("{chain}: leased by another compactor"));
                continue;
            };
            match self.list(chain) {
                Ok(Listing { state, known, quarantined, segs, corrupt, orphans, lost }) => {
                    let cancel = Arc::new(AtomicBool::new(false));
                    let job = Job {
                        id,
                        segs: segs.clone(),
                        start: state.clone(),
                        known,
                        quarantined,
                        cancel: cancel.clone(),
                    };
                    if jobs.send(Work::Chain(job)).is_err() {
                        self.archive.release(lease);
                        return Err(CliError::Io("the compaction reader stopped".into()));
                    }
                    let work =
                        ChainWork { id, lease, state, segs, corrupt, _orphans: orphans, lost, cancel, tail: None };
                    return Ok(Some(work));
                }
                Err(e) => {
                    self.archive.release(lease);
                    return Err(e);
                }
            }
        }
        Ok(None)
    }

    /// Where the archive holds `chain`, and its segments: sealed ones, then the open
    /// ones of a writer that is gone.
    fn list(&mut self, chain: ChainId) -> Result<Listing, CliError> {
        // Another compactor may have advanced the chain since this run loaded the manifest.
        self.m.refresh(self.archive)?;
        let (state, known) = match self.m.manifest.chains.get(&chain.to_string()) {
            Some(e) => (e.state(chain)?, e.segments.clone()),
            None => (ChainState::genesis(chain), Vec::new()),
        };
        // A writer that is gone seals and opens nothing more: take its lock before listing,
        // so that the listing holds every segment it sealed. (Listed first, a segment it
        // sealed just before it died could be missed, and its open segment, which
        // continues that one, quarantined as a discontinuity.)
        let orphan = self.spool.orphaned(chain)?;
        let mut segs = self.spool.sealed(chain)?;
        let (orphans, lost) = match orphan {
            Some(o) => {
                segs.extend(o.open);
                (Some(o.guard), o.lost.transpose())
            }
            None => (None, None),
        };
        let corrupt = self.spool.corrupt(chain)?;
        let quarantined = self.spool.quarantined(chain)?;
        Ok(Listing { state, known, quarantined, segs, corrupt, orphans, lost })
    }
}

/// How the handling of a chain's segments ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// Every segment handled.
    All,
    /// A segment stopped the chain (quarantined, or not verifiable with the key); the
    /// later ones wait.
    Stopped,
    /// Another compactor has the chain now (its lease, or a commit first).
    Elsewhere,
}

/// Whether a segment whose seqs the archive already holds is the one compacted.
enum Identity {
    /// The same segment: only move it.
    Same,
    /// Another file.
    Different,
    /// Its checkpoints carry no signature by the configured key (a wrong `--pubkey`):
    /// cannot tell, so it stays where it is, as any segment does then.
    OtherKey(String),
}

/// Whether this file is one the manifest records as compacted: the same name (or the
/// same first seq: a dead writer's open segment, committed by a compactor that died
/// before it moved it, then sealed by its writer coming back), and it verifies
/// (signatures by the configured key included: a copy in `compacted/` is replaced by
/// it) and its records end where that segment's ended, so it holds exactly the records
/// compacted from it. Manifests before version 3 recorded the file's blake3 instead,
/// which is compared then (same name only).
fn identity(
    spool: &dyn SpoolStore,
    known: &[SegmentEntry],
    seg: &SegmentRef,
    opts: &CompactOptions,
) -> Result<Identity, CliError> {
    let first_seq = |name: &str| name.split_once('.').and_then(|(stem, _)| stem.parse::<u64>().ok());
    let k = known
        .iter()
        .find(|s| s.name == seg.name)
        .or_else(|| known.iter().find(|s| s.end.is_some() && first_seq(&s.name) == Some(seg.first_seq)));
    let Some(k) = k else { return Ok(Identity::Different) };
    let same = match (&k.end, &k.blake3) {
        (Some(end), _) => return ends_at(spool, seg, opts, end),
        (None, Some(digest)) => segment_digest(spool, seg)? == *digest,
        (None, None) => false,
    };
    Ok(if same { Identity::Same } else { Identity::Different })
}

/// blake3 of a whole segment as the spool serves it: how manifests before version 3
/// identify a compacted segment.
fn segment_digest(spool: &dyn SpoolStore, seg: &SegmentRef) -> Result<String, CliError> {
    let mut h = blake3::Hasher::new();
    h.update_reader(spool.read(seg)?).map_err(|e| CliError::Io(format!("{}: {e}", seg.name)))?;
    Ok(to_hex(h.finalize().as_bytes()))
}

/// Whether `seg` verifies on its own (from its header's chain position) and ends at
/// `end`.
fn ends_at(
    spool: &dyn SpoolStore,
    seg: &SegmentRef,
    opts: &CompactOptions,
    end: &SegmentEnd,
) -> Result<Identity, CliError> {
    let vopts = opts.verify_options(seg, None);
    match verify_segment(std::io::BufReader::with_capacity(1 << 20, spool.read(seg)?), &vopts) {
        Ok(report) if end.is(&report.end) => Ok(Identity::Same),
        Ok(_) => Ok(Identity::Different),
        Err(e) => match e.problem {
            Problem::Io(msg) => Err(CliError::Io(format!("{}: {msg}", seg.name))),
            Problem::SignedByAnotherKey(_) => Ok(Identity::OtherKey(e.in_file(&seg.name).to_string())),
            _ => Ok(Identity::Different),
        },
    }
}

/// A segment left where it is because the configured key signed none of its
/// checkpoints.
fn left_unverifiable(seg: &SegmentRef, problem: String, report: &mut CompactReport) {
    tracing::error!(target: "kiroku::compact", "not compacted, left in place: {problem}");
    report.unverifiable.push((format!("{}/{}", seg.chain_id, seg.name), problem));
}

/// A segment whose seqs the archive already holds but which is not the file that was
/// compacted: a fork of the chain, a replayed or altered copy. Never dropped silently.
fn quarantine_overlap(
    spool: &dyn SpoolStore,
    seg: &SegmentRef,
    state: &ChainState,
    report: &mut CompactReport,
) -> Result<(), CliError> {
    let problem = format!(
        "{}: starts at seq {} but the archive already holds this chain up to seq {} (exclusive), from a different file: a fork of the chain, or an altered or replayed copy",
        seg.name, seg.first_seq, state.next_seq
    );
    quarantine(spool, seg, problem, None, report)
}

/// Move `seg` to quarantine with a report file stating `problem` (and `more`, when
/// given), log it and count it.
fn quarantine(
    spool: &dyn SpoolStore,
    seg: &SegmentRef,
    problem: String,
    more: Option<String>,
    report: &mut CompactReport,
) -> Result<(), CliError> {
    let name = format!("{}/{}", seg.chain_id, seg.name);
    let mut text = format!("kiroku quarantine report\nsegment: {name}\nproblem: {problem}\n");
    if let Some(more) = more {
        text.push_str(&more);
        text.push('\n');
    }
    let to = spool.quarantine(seg, &text)?;
    tracing::error!(target: "kiroku::compact", "quarantined {}: {problem}", to.display());
    report.quarantined.push((name, problem));
    Ok(())
}

/// Move a segment that failed verification aside with a report.
fn quarantine_bad(
    spool: &dyn SpoolStore,
    seg: &SegmentRef,
    state: &ChainState,
    problem: String,
    report: &mut CompactReport,
) -> Result<(), CliError> {
    let more = format!(
        "the archive holds this chain up to seq {} (exclusive); later segments of the chain wait in the spool until a good copy of this segment is put back there (if there is none, `kiroku compact --accept-gap {}:{}` archives the rest of the chain and records the missing seqs as a gap)",
        state.next_seq, state.chain_id, state.next_seq
    );
    quarantine(spool, seg, problem, Some(more), report)
}

/// A segment that passed verification, and its records' rows.
struct Verified<'a> {
    seg: &'a SegmentRef,
    segment: &'a Segment,
    verdict: &'a Verdict,
    rows: &'a [&'a Rows],
}

/// Write a verified segment's records, commit the manifest, move the segment. False
/// when another compactor took the chain (lease lost, or it committed first).
fn commit(
    run: &mut Run<'_>,
    lease: &mut Lease,
    state: &mut ChainState,
    done: Verified<'_>,
    tail: Option<&Sender<Work>>,
) -> Result<bool, CliError> {
    let Verified { seg, segment: s, verdict: v, rows: chunks } = done;
    let chain = state.chain_id;
    if let Some((off, n)) = v.torn_tail {
        let msg = format!(
            "{chain}/{}: torn final frame of {n} bytes at byte offset {off} (not compacted; the records before it are)",
            seg.name
        );
        tracing::warn!(target: "kiroku::compact", "{msg}");
        run.report.torn_tails.push(msg);
    }
    // By UTC day (the partition), named once per file rather than once per record.
    let mut by_day: BTreeMap<i64, Vec<Row>> = BTreeMap::new();
    let mut frames = s.records.frames.iter();
    for (chunk, rows) in chunks.iter().enumerate() {
        for (row, (started, frame)) in rows.started.iter().zip(frames.by_ref()).enumerate() {
            by_day.entry(started.unix_days()).or_default().push(Row { key: (*started, frame.seq), chunk, row });
        }
    }
    let batches: Vec<&RecordBatch> = chunks.iter().map(|c| &c.batch).collect();
    let mut files = Vec::new();
    let mut records = 0u64;
    for mut rows in by_day.into_values() {
        // Stable, and already sorted in the common case (records appended in time order).
        rows.sort_by_key(|r| r.key);
        records += rows.len() as u64;
        let date = rows[0].key.0.date_string();
        pause_point("before_parquet");
        files.push(write_file(run.archive, chain, &date, &rows, &batches, run.opts, tail)?);
        pause_point("after_parquet");
    }
    if !run.archive.renew(lease)? {
        run.report.elsewhere.push(format!("{chain}: lease lost to another compactor"));
        return Ok(false);
    }
    let base = run.m.manifest.chains.get(&chain.to_string()).cloned();
    let mut entry = base.clone().unwrap_or_else(|| ChainEntry::genesis(chain));
    let paths: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    entry.files.extend(files);
    if seg.first_seq > state.next_seq && !run.opts.accepts_gap(chain, state.next_seq) {
        return Err(CliError::Io(format!(
            "{}: verified from seq {} but the archive holds the chain up to seq {} and no gap is accepted there (a compactor bug; nothing was committed)",
            seg.name, seg.first_seq, state.next_seq
        )));
    }
    let gap =
        (seg.first_seq > state.next_seq).then(|| Gap::new(state.next_seq, &v.start, Timestamp::now().to_string()));
    if let Some(g) = &gap {
        entry.gaps.push(g.clone());
    }
    entry.set_state(&v.end);
    if entry.unstated.as_ref().is_some_and(|u| v.end.next_seq > u.at_seq) {
        // Its writer came back: the record at `at_seq`, archived now, states them.
        entry.unstated = None;
    }
    if let Some(note) = &v.last_checkpoint {
        entry.checkpoints.push(note.clone());
    }
    entry.segments.push(SegmentEntry { name: seg.name.clone(), blake3: None, end: Some(SegmentEnd::of(&v.end)) });
    if !run.m.commit_chain(run.archive, chain, base.as_ref(), entry)? {
        run.report.elsewhere.push(format!("{chain}: another compactor committed {} first", seg.name));
        return Ok(false);
    }
    run.report.files.extend(paths);
    if let Some(g) = gap {
        let line = format!("{chain}: {}", g.describe());
        tracing::warn!(target: "kiroku::compact", "{line}");
        run.report.gaps.push(line);
    }
    pause_point("after_manifest");
    if !seg.sealed {
        // A writer that restarts on this chain must continue after these records.
        run.spool.set_head(chain, &v.end)?;
        pause_point("after_head");
    }
    run.spool.mark_compacted(seg)?;
    pause_point("after_move");
    *state = v.end.clone();
    run.report.segments += 1;
    run.report.records += records;
    run.report.input_bytes += v.bytes;
    (run.progress)(run.report.records);
    Ok(true)
}

/// What examining one segment found.
enum Step {
    /// The very file already compacted by an earlier run: only move it.
    Known,
    /// Holds seqs already archived, from another file.
    Overlap(ChainState),
    /// Holds seqs already archived, but the configured key signed none of its
    /// checkpoints: left in place (the problem).
    OtherKey(String),
    /// Read; its records are being hashed and parsed, its verdict follows.
    Read(Arc<Segment>),
    /// Its header is bad, or does not continue the chain (the chain state it was checked
    /// against, the problem); bad frames are found later, in the verdict.
    Bad(ChainState, String),
    /// It starts after the chain's head, and the segment that should come between is in
    /// quarantine (its first seq): it waits in the spool, as do the chain's later ones.
    Waits(u64),
    /// Could not be read.
    Fail(CliError),
}

/// Examine one segment against the chain state so far: read it (the segment, and what
/// the reader keeps to check it), or the step that says why not.
fn examine(
    spool: &dyn SpoolStore,
    job: &Job,
    seg: &SegmentRef,
    state: &ChainState,
    opts: &CompactOptions,
    buffers: &mut Buffers,
) -> Result<(Arc<Segment>, Pending), Step> {
    let known = &job.known;
    // A gap the operator accepts: this segment goes on from its own header.
    let gap = seg.first_seq > state.next_seq && opts.accepts_gap(state.chain_id, state.next_seq);
    // The gap between the chain's head and this segment is a segment in quarantine:
    // this one does not continue the chain, but it is not to blame (quarantined as a
    // discontinuity, every good segment after a bad one would follow it there, one a
    // run). It waits for the gap to be filled, or accepted.
    if let Some(&q) = job.quarantined.iter().filter(|&&q| (state.next_seq..seg.first_seq).contains(&q)).min()
        && !gap
    {
        return Err(Step::Waits(q));
    }
    if seg.first_seq < state.next_seq {
        return Err(match identity(spool, known, seg, opts) {
            Ok(Identity::Same) => Step::Known,
            Ok(Identity::Different) => Step::Overlap(state.clone()),
            Ok(Identity::OtherKey(problem)) => Step::OtherKey(problem),
            Err(e) => Step::Fail(e),
        });
    }
    match reading::read(spool, seg, state, !gap, opts, buffers.take()) {
        Ok(Ok(read)) => {
            buffers.hint = (read.0.records.frames.len(), read.0.records.payloads.len());
            Ok(read)
        }
        Ok(Err(problem)) => Err(Step::Bad(state.clone(), problem)),
        Err(e) => Err(Step::Fail(e)),
    }
}

/// The reader's buffers for the next segment's frames and payloads.
#[derive(Default)]
struct Buffers {
    /// A committed segment's, emptied, when one came back.
    spare: Option<(Vec<Frame>, Vec<u8>)>,
    /// How many frames and payload bytes the last segment read had.
    hint: (usize, usize),
}

impl Buffers {
    /// The spare buffers (or new ones), with room for an eighth more than the last
    /// segment held: grown from nothing, a 64 MiB buffer is reallocated a dozen times,
    /// each time into fresh pages; made just the size of the last one, a slightly larger
    /// segment doubles it. (A payload buffer that a batch still shared comes back empty.)
    fn take(&mut self) -> (Vec<Frame>, Vec<u8>) {
        let slack = |n: usize| n + n / 8;
        let (mut frames, mut payloads) = self.spare.take().unwrap_or_default();
        frames.reserve(slack(self.hint.0));
        payloads.reserve(slack(self.hint.1));
        (frames, payloads)
    }
}

/// What the writer hands back to the reader: a committed segment (for its buffers) and
/// the chunks of records the reader parsed (for the reader to free).
type Spent = (Arc<Segment>, Vec<Chunk>);

/// The reading thread: each chain's job in turn ([`read_chain`]); frees what the writer
/// hands back.
fn reader(
    spool: &dyn SpoolStore,
    opts: &CompactOptions,
    jobs: Receiver<Work>,
    steps: SyncSender<Msg>,
    spent: Receiver<Spent>,
) {
    // Kept from segment to segment and from chain to chain.
    let mut buffers = Buffers::default();
    for work in jobs {
        match work {
            Work::Chain(job) => read_chain(spool, &job, opts, &steps, &spent, &mut buffers),
            Work::Encode(helper) => helper.run(),
        }
    }
    drop(steps);
    for done in spent {
        drop(done);
    }
}

/// Read each segment of a chain in turn and offer it to the writer, hashing and parsing
/// its records until the writer takes it (the writer then joins in), then check it and
/// give the verdict. Stops at the first segment that is not good, when the writer
/// cancels the job, or when it stops listening.
fn read_chain(
    spool: &dyn SpoolStore,
    job: &Job,
    opts: &CompactOptions,
    steps: &SyncSender<Msg>,
    spent: &Receiver<Spent>,
    buffers: &mut Buffers,
) {
    let mut at = job.start.clone();
    for seg in &job.segs {
        if job.cancel.load(Ordering::Acquire) {
            return;
        }
        while let Ok((s, chunks)) = spent.try_recv() {
            drop(chunks);
            if let Ok(s) = Arc::try_unwrap(s) {
                buffers.spare = Some(s.records.into_buffers());
            }
        }
        let (s, pending) = match examine(spool, job, seg, &at, opts, buffers) {
            Ok(read) => read,
            Err(step) => {
                let go_on = matches!(step, Step::Known);
                if steps.send(Msg { job: job.id, step }).is_err() || !go_on {
                    return;
                }
                continue;
            }
        };
        let mut offer = Some(Msg { job: job.id, step: Step::Read(s.clone()) });
        let mut pending = Some(pending);
        let mut good = true;
        while let Some(o) = offer.take() {
            match steps.try_send(o) {
                Ok(()) => {}
                Err(TrySendError::Full(o)) if s.records.parse_one(Side::Reader) => {
                    if let Some(p) = pending.as_mut() {
                        p.check_ready(&s.records);
                    }
                    offer = Some(o);
                }
                // Everything is parsed: give the verdict, then wait for the writer.
                Err(TrySendError::Full(o)) => {
                    good = pending.take().is_some_and(|p| p.verify(&s));
                    if steps.send(o).is_err() {
                        return;
                    }
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        if let Some(mut p) = pending {
            while s.records.parse_one(Side::Reader) {
                p.check_ready(&s.records);
            }
            good = p.verify(&s);
        }
        if !good {
            return;
        }
        at = match s.verdict() {
            Ok(v) => v.end,
            Err(_) => return,
        };
    }
}

impl Run<'_> {
    /// The segments of one chain, in order, as the reader sends them; the first problem
    /// stops the chain (later segments wait behind it, and the reader is told to stop).
    ///
    /// While this thread writes segment k's Parquet files and commits it, the reader
    /// reads segment k+1; both hash and parse segment k+1's records ([`records`]) once
    /// this thread is free, then the reader checks it against the chain state segment k
    /// ended in and gives the verdict this thread waits for. The reader stays at most one
    /// segment ahead.
    fn process(
        &mut self,
        chain: &mut ChainWork,
        steps: &Receiver<Msg>,
        spent_tx: &Sender<Spent>,
    ) -> Result<(), CliError> {
        // The lease was taken while the previous chain was processed: renew it first.
        let done = match self.archive.renew(&mut chain.lease) {
            Ok(true) => self.segments(chain, steps, spent_tx),
            Ok(false) => {
                self.report.elsewhere.push(format!("{}: lease lost to another compactor", chain.state.chain_id));
                Ok(Ended::Elsewhere)
            }
            Err(e) => Err(e),
        };
        // With the chain still this run's, once its segments are handled (so that the
        // archive's head is where the corrupt segment should have continued it).
        let done = match done {
            Ok(Ended::All | Ended::Stopped) => self.quarantine_corrupt(chain).and(done),
            other => other,
        };
        let done = match done {
            Ok(Ended::All) if chain.corrupt.is_empty() => self.note_unstated(chain).map(|()| Ended::All),
            other => other,
        };
        if !matches!(done, Ok(Ended::All)) {
            chain.cancel.store(true, Ordering::Release);
        }
        done.map(|_| ())
    }

    /// Note in the manifest the losses a writer that is gone left in the chain's `lost`
    /// file, once every segment of the chain is archived (the chain's head is then
    /// where the writer stopped). No record states them: without the note the archive
    /// would not say they happened. A chain its journal ended at a corrupt segment is
    /// left out: its quarantine report says where the chain ended.
    fn note_unstated(&mut self, chain: &mut ChainWork) -> Result<(), CliError> {
        let id = chain.state.chain_id;
        let owed = match chain.lost.take() {
            None => return Ok(()),
            Some(Ok(owed)) => owed,
            Some(Err(problem)) => {
                tracing::error!(target: "kiroku::compact", "{id}: {problem}");
                self.report.unreadable_lost.push(format!("{id}: {problem}"));
                return Ok(());
            }
        };
        let at_seq = chain.state.next_seq;
        if at_seq < owed.durable {
            // Records the writer knew durable are not archived yet (a fleet's shipper
            // still uploading them), or were lost from its disk: counted now, they
            // would be counted lost. Said, and looked at again by the next run.
            let line = format!(
                "{id}: its writer's lost file says the chain was durable up to seq {} (exclusive), the archive holds it up to seq {at_seq}: its losses are noted once those records are archived",
                owed.durable
            );
            tracing::warn!(target: "kiroku::compact", "{line}");
            self.report.unstated.push(line);
            return Ok(());
        }
        let note = owed.at(at_seq).filter(|&n| n > 0).map(|records_lost| Unstated { records_lost, at_seq });
        let base = self.m.manifest.chains.get(&id.to_string()).cloned();
        if base.as_ref().and_then(|e| e.unstated.as_ref()) == note.as_ref() {
            return Ok(());
        }
        if !self.archive.renew(&mut chain.lease)? {
            self.report.elsewhere.push(format!("{id}: lease lost to another compactor"));
            return Ok(());
        }
        let mut entry = base.clone().unwrap_or_else(|| ChainEntry::genesis(id));
        entry.unstated = note.clone();
        if !self.m.commit_chain(self.archive, id, base.as_ref(), entry)? {
            self.report.elsewhere.push(format!("{id}: another compactor committed first"));
            return Ok(());
        }
        if let Some(u) = note {
            let line = format!("{id}: {}; noted in the manifest", u.describe());
            tracing::warn!(target: "kiroku::compact", "{line}");
            self.report.unstated.push(line);
        }
        Ok(())
    }

    /// Quarantine the chain's segments that its journal found corrupt (it never appends
    /// to them, and ended the chain there). Verified again here only to say where.
    fn quarantine_corrupt(&mut self, chain: &ChainWork) -> Result<(), CliError> {
        for seg in &chain.corrupt {
            // Against where the archive holds the chain when it starts there (a segment
            // that does not continue the chain is refused for that), else on its own.
            let at = Some(&chain.state).filter(|st| st.next_seq == seg.first_seq);
            let opts = self.opts.verify_options(seg, at);
            let found = match verify_segment(std::io::BufReader::with_capacity(1 << 20, self.spool.read(seg)?), &opts) {
                Err(e) => e.in_file(&seg.name).to_string(),
                Ok(r) => format!("{}: verifies now as an open segment of {} records", seg.name, r.records),
            };
            let problem = format!(
                "the journal found this open segment corrupt when it recovered the chain, and ended the chain there: {found}"
            );
            let more = format!(
                "its records, from seq {} on, are not in the archive; the chain's writer went on in a new chain",
                seg.first_seq
            );
            quarantine(self.spool, seg, problem, Some(more), &mut self.report)?;
        }
        Ok(())
    }

    /// Handle each segment's step, until the chain's end or the first that stops it.
    fn segments(
        &mut self,
        chain: &mut ChainWork,
        steps: &Receiver<Msg>,
        spent_tx: &Sender<Spent>,
    ) -> Result<Ended, CliError> {
        let ChainWork { id, lease, state, segs, tail, .. } = chain;
        for (i, seg) in segs.iter().enumerate() {
            let step = loop {
                match steps.recv() {
                    Ok(m) if m.job == *id => break m.step,
                    // A step of a chain that stopped early, sent before the reader saw it stop.
                    Ok(m) if m.job < *id => {}
                    Ok(m) => {
                        return Err(CliError::Io(format!(
                            "{}: the compaction reader went on to chain job {} before this one's steps (a compactor bug; nothing was written)",
                            seg.name, m.job
                        )));
                    }
                    Err(_) => return Err(CliError::Io(format!("{}: the compaction reader stopped", seg.name))),
                }
            };
            let stopped = match step {
                Step::Known => {
                    if !seg.sealed {
                        self.spool.set_head(state.chain_id, state)?;
                    }
                    self.spool.mark_compacted(seg)?;
                    false
                }
                Step::Overlap(st) => {
                    quarantine_overlap(self.spool, seg, &st, &mut self.report)?;
                    true
                }
                Step::OtherKey(problem) => {
                    left_unverifiable(seg, problem, &mut self.report);
                    true
                }
                Step::Read(s) => {
                    if s.records.chain() != state.chain_id {
                        return Err(CliError::Io(format!(
                            "{}: read for chain {} but committing chain {} (a compactor bug; nothing was written)",
                            seg.name,
                            s.records.chain(),
                            state.chain_id
                        )));
                    }
                    let chunks = s.records.finish(Side::Writer);
                    // The reader's verdict first, then the first record that did not parse.
                    let checked = s.verdict().and_then(|v| match chunks.iter().find_map(|c| c.rows.as_ref().err()) {
                        Some(problem) => Err(Refusal::Bad(problem.clone())),
                        None => Ok(v),
                    });
                    match checked {
                        // After a gap the chain's state comes from this segment's header:
                        // only a signed checkpoint in it confirms that state. A sealed
                        // segment always holds one, so this is a dead writer's open segment.
                        Ok(verdict) if seg.first_seq > state.next_seq && verdict.last_checkpoint.is_none() => {
                            let _ = spent_tx.send((s, chunks));
                            self.report.blocked.push(format!(
                                "{}/{} (it follows the accepted gap from seq {}, and its writer is gone without sealing it: with no signed checkpoint in it, nothing confirms the chain's state after the gap, so its records stay in the spool; restart the instance that wrote this chain: opening the chain again seals the segment, and the next compaction archives it)",
                                seg.chain_id, seg.name, state.next_seq
                            ));
                            true
                        }
                        Ok(verdict) => {
                            let rows: Vec<&Rows> = chunks.iter().filter_map(|c| c.rows.as_ref().ok()).collect();
                            let done = Verified { seg, segment: &s, verdict: &verdict, rows: &rows };
                            let tail = tail.as_ref().filter(|_| i + 1 == segs.len());
                            let committed = commit(self, lease, state, done, tail)?;
                            drop(rows);
                            // Free the chunks built here; the reader frees its own.
                            let (mine, theirs): (Vec<Chunk>, Vec<Chunk>) =
                                chunks.into_iter().partition(|c| c.side == Side::Writer);
                            drop(mine);
                            let _ = spent_tx.send((s, theirs));
                            if !committed {
                                return Ok(Ended::Elsewhere);
                            }
                            if !seg.sealed {
                                self.report.orphans += 1;
                            }
                            false
                        }
                        Err(Refusal::Bad(problem)) => {
                            quarantine_bad(self.spool, seg, state, problem, &mut self.report)?;
                            true
                        }
                        Err(Refusal::OtherKey(problem)) => {
                            left_unverifiable(seg, problem, &mut self.report);
                            true
                        }
                    }
                }
                Step::Bad(st, problem) => {
                    quarantine_bad(self.spool, seg, &st, problem, &mut self.report)?;
                    true
                }
                Step::Waits(q) => {
                    self.report.blocked.push(format!(
                        "{}/{} (the chain's segment from seq {q}, before it, is in quarantine: put a good copy of it back in the spool; if there is none, `kiroku compact --accept-gap {}:{}` archives the rest of the chain and records the missing seqs as a gap)",
                        seg.chain_id, seg.name, state.chain_id, state.next_seq
                    ));
                    true
                }
                Step::Fail(e) => return Err(e),
            };
            if stopped {
                self.report.blocked.extend(
                    segs[i + 1..]
                        .iter()
                        .map(|s| format!("{}/{} (behind an earlier segment of its chain)", s.chain_id, s.name)),
                );
                return Ok(Ended::Stopped);
            }
        }
        Ok(Ended::All)
    }
}

/// Crash-test hook: with `KIROKU_TEST_PAUSE_AT=<step>[:<n>]` in the environment, the
/// compactor announces the n-th time (default 1st) it reaches `step` on stderr
/// (`kiroku-test-pause: <step>`) and stops there, so a test can SIGKILL it at exactly
/// that point. Steps: `before_parquet`, `after_parquet`, `after_manifest`, `after_head`
/// (a dead writer's open segment only), `after_move`.
fn pause_point(step: &str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let v = std::env::var("KIROKU_TEST_PAUSE_AT").ok()?;
        let (name, n) = v.split_once(':').map_or((v.as_str(), 1), |(a, b)| (a, b.parse().unwrap_or(1)));
        Some((name.to_owned(), n))
    });
    let Some((name, n)) = target else { return };
    if name == step && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *n {
        eprintln!("kiroku-test-pause: {step}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}
