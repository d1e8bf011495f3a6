//! Reading the archive: which files to open (partition and statistics pruning, bloom
//! filters), and their rows.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, BooleanArray, RecordBatch, StringArray};
use kiroku_schemas::checkpoint::{Checkpoint, NoteVerifier, TrustedKeys};
use kiroku_schemas::merkle::{self, CompactRange, ProofError};
use kiroku_schemas::{ChainId, Hash, Timestamp};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowPredicateFn, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowFilter};
use parquet::file::metadata::PageIndexPolicy;
use parquet::file::reader::ChunkReader;
use parquet::file::statistics::Statistics;

use crate::error::CliError;
use crate::manifest::{FileEntry, Manifest};

/// An archive directory and its manifest.
#[derive(Debug)]
pub struct Archive {
    /// Root directory.
    pub root: PathBuf,
    /// The manifest.
    pub manifest: Manifest,
}

/// The chain columns of one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCols {
    /// Chain.
    pub chain_id: String,
    /// Seq.
    pub seq: u64,
    /// Previous hash.
    pub prev: Hash,
    /// Hash.
    pub hash: Hash,
    /// Exact payload.
    pub payload: Vec<u8>,
}

impl ChainCols {
    /// Whether the payload's bytes hash to the row's hash (an edited payload whose hash
    /// column was kept does not); an unreadable chain id is corruption.
    pub fn payload_matches_hash(&self) -> Result<bool, CliError> {
        let chain = chain_id(&self.chain_id)?;
        Ok(kiroku_schemas::segment::record_hash(&chain, self.seq, &self.prev, &self.payload) == self.hash)
    }
}

/// A filter for `find`.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Record id.
    pub record_id: Option<String>,
    /// Trace id.
    pub trace_id: Option<String>,
    /// blake3 hex of the output text.
    pub output_digest: Option<String>,
    /// Model (effective: response model, else requested).
    pub model: Option<String>,
    /// Started at or after.
    pub from: Option<Timestamp>,
    /// Started before.
    pub to: Option<Timestamp>,
}

/// The columns that place a row in its chain and hold its exact payload.
const CHAIN_COLUMNS: [&str; 5] = ["chain_id", "seq", "prev_hash", "hash", "payload"];

impl Filter {
    /// The columns this filter reads.
    fn columns(&self) -> Vec<&'static str> {
        let mut c = Vec::new();
        for (name, on) in [
            ("record_id", self.record_id.is_some()),
            ("trace_id", self.trace_id.is_some()),
            ("output_digest", self.output_digest.is_some()),
            ("model", self.model.is_some()),
            ("started_at", self.from.is_some() || self.to.is_some()),
        ] {
            if on {
                c.push(name);
            }
        }
        c
    }

    /// Which rows of `batch` (holding at least [`Filter::columns`]) match.
    fn matches(&self, batch: &RecordBatch) -> BooleanArray {
        let text = |n: &str| batch.column_by_name(n).and_then(|c| c.as_string_opt::<i32>());
        let (ids, traces, outs, models) = (text("record_id"), text("trace_id"), text("output_digest"), text("model"));
        let started = batch.column_by_name("started_at").and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>());
        let eq = |col: Option<&StringArray>, want: &Option<String>, i: usize| match (col, want) {
            (_, None) => true,
            (Some(c), Some(w)) => c.is_valid(i) && c.value(i) == w,
            (None, Some(_)) => false,
        };
        (0..batch.num_rows())
            .map(|i| {
                let t = started.filter(|s| s.is_valid(i)).map(|s| s.value(i));
                let in_time = self.from.is_none_or(|f| t.is_some_and(|t| t >= f.unix_micros()))
                    && self.to.is_none_or(|to| t.is_some_and(|t| t < to.unix_micros()));
                Some(
                    in_time
                        && eq(ids, &self.record_id, i)
                        && eq(traces, &self.trace_id, i)
                        && eq(outs, &self.output_digest, i)
                        && eq(models, &self.model, i),
                )
            })
            .collect()
    }
}

/// The date partitions that can hold records started in `[from, to)`.
struct Dates {
    lo: Option<String>,
    hi: Option<String>,
}

impl Dates {
    fn new(from: Option<Timestamp>, to: Option<Timestamp>) -> Self {
        Self {
            lo: from.map(Timestamp::date_string),
            hi: to.map(|t| Timestamp::from_unix_nanos(t.unix_nanos() - 1).date_string()),
        }
    }

    fn holds(&self, f: &FileEntry) -> bool {
        self.lo.as_ref().is_none_or(|l| &f.date >= l) && self.hi.as_ref().is_none_or(|h| &f.date <= h)
    }
}

/// The rows of one chain's `files`, handed to `emit` in seq order while the files are
/// read. Files are opened by first seq, and each file's rows sorted; a row goes out once
/// no file left to open starts at or below its seq. A chain's files overlap only where a
/// segment crossed midnight (its rows are split by the day they started), so what is
/// held at once is a file's rows or two. Rows of one seq (only in a damaged archive) go
/// out in file order. `load` and `emit` share `cx`, whatever both need to change.
pub(crate) fn in_seq_order<C, T, E>(
    cx: &mut C,
    mut files: Vec<&FileEntry>,
    mut load: impl FnMut(&mut C, &FileEntry) -> Result<Vec<T>, E>,
    seq: impl Fn(&T) -> u64,
    mut emit: impl FnMut(&mut C, T) -> Result<(), E>,
) -> Result<(), E> {
    files.sort_by_key(|f| f.first_seq);
    // The loaded files' rows not yet handed out, each run sorted by seq.
    let mut runs: Vec<std::iter::Peekable<std::vec::IntoIter<T>>> = Vec::new();
    let mut next = 0;
    loop {
        // The lowest seq waiting, and its run (the earlier file on a tie).
        let lowest = runs.iter_mut().enumerate().filter_map(|(i, r)| r.peek().map(|row| (seq(row), i))).min();
        if next < files.len() && lowest.is_none_or(|(s, _)| files[next].first_seq <= s) {
            let mut rows = load(cx, files[next])?;
            if !rows.is_empty() {
                rows.sort_by_key(|row| seq(row));
                runs.push(rows.into_iter().peekable());
            }
            next += 1;
            continue;
        }
        let Some((_, i)) = lowest else { return Ok(()) };
        if let Some(row) = runs[i].next() {
            emit(cx, row)?;
        }
        if runs[i].peek().is_none() {
            drop(runs.remove(i));
        }
    }
}

/// [`in_seq_order`] with the per-file work done on every core: `work` runs on scoped
/// threads (file k on thread k mod n, each at most one file ahead), and `take` gets
/// each file's result on the calling thread, in the order the walk opens the files
/// (`None` only if a thread panicked). Memory: a file's result per thread in flight.
pub(crate) fn in_seq_order_parallel<C, R, T, E>(
    cx: &mut C,
    mut files: Vec<&FileEntry>,
    work: impl Fn(&FileEntry) -> R + Sync,
    mut take: impl FnMut(&mut C, &FileEntry, Option<R>) -> Result<Vec<T>, E>,
    seq: impl Fn(&T) -> u64,
    emit: impl FnMut(&mut C, T) -> Result<(), E>,
) -> Result<(), E>
where
    R: Send,
{
    // The order `in_seq_order` opens them in (it sorts the same way, stably).
    files.sort_by_key(|f| f.first_seq);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 4).min(files.len().max(1));
    if threads == 1 {
        // One file, or one core: no thread to start (an archive of many small chains).
        return in_seq_order(cx, files, |cx, f| take(cx, f, Some(work(f))), seq, emit);
    }
    std::thread::scope(|scope| {
        let work = &work;
        let results: Vec<std::sync::mpsc::Receiver<R>> = (0..threads)
            .map(|t| {
                // A rendezvous: a thread holds the one result it is handing over, no more.
                let (tx, rx) = std::sync::mpsc::sync_channel(0);
                let mine: Vec<&FileEntry> = files.iter().skip(t).step_by(threads).copied().collect();
                scope.spawn(move || {
                    for f in mine {
                        if tx.send(work(f)).is_err() {
                            return; // the walk stopped early
                        }
                    }
                });
                rx
            })
            .collect();
        let mut opened = 0usize;
        in_seq_order(
            cx,
            files.clone(),
            |cx, f| {
                let r = results[opened % threads].recv().ok();
                opened += 1;
                take(cx, f, r)
            },
            seq,
            emit,
        )
    })
}

fn hash32(b: &[u8]) -> Hash {
    let mut h = [0u8; 32];
    if b.len() == 32 {
        h.copy_from_slice(b);
    }
    h
}

impl Archive {
    /// Open an archive (its manifest must exist).
    pub fn open(root: &Path) -> Result<Self, CliError> {
        if !Manifest::path(root).exists() {
            return Err(CliError::Usage(format!(
                "{} is not a kiroku archive (no _kiroku/manifest.json); run `kiroku compact` first",
                root.display()
            )));
        }
        Ok(Self { root: root.to_owned(), manifest: Manifest::load(root)? })
    }

    /// Files whose date partition can hold records started in `[from, to)`.
    pub fn files(&self, from: Option<Timestamp>, to: Option<Timestamp>) -> Vec<(String, FileEntry)> {
        let dates = Dates::new(from, to);
        self.manifest.files().filter(|(_, f)| dates.holds(f)).map(|(c, f)| (c.to_owned(), f.clone())).collect()
    }

    fn builder(&self, f: &FileEntry) -> Result<ParquetRecordBatchReaderBuilder<File>, CliError> {
        let path = self.root.join(&f.path);
        let file = File::open(&path).map_err(|e| match e.kind() {
            // The manifest lists it: a file gone from the archive is damage, not a typo.
            std::io::ErrorKind::NotFound => CliError::Corrupt(format!(
                "{}: listed in the manifest but missing (run `kiroku verify --archive`)",
                path.display()
            )),
            _ => CliError::io(&path, e),
        })?;
        // The offset index lets a row selection skip whole pages (`find`); files without
        // one are still read, page by page.
        let options = ArrowReaderOptions::new().with_offset_index_policy(PageIndexPolicy::Optional);
        ParquetRecordBatchReaderBuilder::try_new_with_options(file, options)
            .map_err(|e| CliError::Corrupt(format!("{}: {e}", path.display())))
    }

    /// The chain columns of every row of a file.
    pub fn chain_rows(&self, f: &FileEntry) -> Result<Vec<ChainCols>, CliError> {
        let b = self.builder(f)?;
        let mask = ProjectionMask::columns(b.parquet_schema(), CHAIN_COLUMNS);
        let mut out = Vec::with_capacity(f.rows as usize);
        let path = self.root.join(&f.path);
        for batch in
            b.with_projection(mask).build().map_err(|e| CliError::Corrupt(format!("{}: {e}", path.display())))?
        {
            let batch = batch.map_err(|e| CliError::Corrupt(format!("{}: {e}", path.display())))?;
            out.extend(chain_cols(&batch).map_err(|e| CliError::Corrupt(format!("{}: {e}", path.display())))?);
        }
        Ok(out)
    }

    /// Every batch of a file, all columns.
    pub fn batches(&self, f: &FileEntry) -> Result<Vec<RecordBatch>, CliError> {
        self.reader(f)?.collect()
    }

    /// The batches of a file, all columns, one at a time.
    pub fn reader(&self, f: &FileEntry) -> Result<impl Iterator<Item = Result<RecordBatch, CliError>>, CliError> {
        let path = self.root.join(&f.path);
        let corrupt = move |e: &dyn std::fmt::Display| CliError::Corrupt(format!("{}: {e}", path.display()));
        let reader = self.builder(f)?.build().map_err(|e| corrupt(&e))?;
        Ok(reader.map(move |r| r.map_err(|e| corrupt(&e))))
    }

    /// Rows matching `filter` (chain columns), by chain and seq, using partition pruning,
    /// row-group statistics on `started_at`, and bloom filters on the id columns.
    pub fn find(&self, filter: &Filter) -> Result<Vec<ChainCols>, CliError> {
        let mut out = Vec::new();
        self.find_each(filter, |row| {
            out.push(row);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Archive::find`], each row handed to `emit` as soon as it is known to come next
    /// (by chain, then seq): what is held at once is the matches of the files being read,
    /// not all of them. Returns how many rows matched.
    pub fn find_each(
        &self,
        filter: &Filter,
        mut emit: impl FnMut(ChainCols) -> Result<(), CliError>,
    ) -> Result<u64, CliError> {
        let dates = Dates::new(filter.from, filter.to);
        let mut n = 0;
        for entry in self.manifest.chains.values() {
            let files: Vec<&FileEntry> = entry.files.iter().filter(|f| dates.holds(f)).collect();
            in_seq_order_parallel(
                &mut n,
                files,
                |f| self.find_in_file(filter, f),
                |_, f, found| {
                    found
                        .unwrap_or_else(|| Err(CliError::Io(format!("{}: could not be read (internal error)", f.path))))
                },
                |row| row.seq,
                |n, row| {
                    *n += 1;
                    emit(row)
                },
            )?;
        }
        Ok(n)
    }

    /// The rows of one file that match `filter`, in file order.
    fn find_in_file(&self, filter: &Filter, f: &FileEntry) -> Result<Vec<ChainCols>, CliError> {
        let path = self.root.join(&f.path);
        let corrupt = |e: &dyn std::fmt::Display| CliError::Corrupt(format!("{}: {e}", path.display()));
        let b = self.builder(f)?;
        let schema = b.parquet_schema().clone();
        let col = |name: &str| schema.columns().iter().position(|c| c.name() == name);
        let mut groups = Vec::new();
        for rg in 0..b.metadata().num_row_groups() {
            if !time_overlaps(b.metadata().row_group(rg), col("started_at"), filter) {
                continue;
            }
            let mut keep = true;
            for (name, want) in [
                ("record_id", &filter.record_id),
                ("trace_id", &filter.trace_id),
                ("output_digest", &filter.output_digest),
            ] {
                let (Some(want), Some(ci)) = (want, col(name)) else { continue };
                if let Some(bloom) = b.get_row_group_column_bloom_filter(rg, ci).map_err(|e| corrupt(&e))? {
                    keep &= bloom.check(&want.as_str());
                }
            }
            if keep {
                groups.push(rg);
            }
        }
        let mut out = Vec::new();
        if groups.is_empty() {
            return Ok(out);
        }
        // The filter's columns are read first and decide which rows are wanted; the
        // chain columns (the payload above all) are then decoded only for the pages
        // that hold those rows, which the offset index locates.
        let wanted = filter.columns();
        let mut b = b.with_row_groups(groups).with_projection(ProjectionMask::columns(&schema, CHAIN_COLUMNS));
        if !wanted.is_empty() {
            let f = filter.clone();
            let test =
                ArrowPredicateFn::new(ProjectionMask::columns(&schema, wanted), move |batch| Ok(f.matches(&batch)));
            b = b.with_row_filter(RowFilter::new(vec![Box::new(test)]));
        }
        for batch in b.build().map_err(|e| corrupt(&e))? {
            let batch = batch.map_err(|e| corrupt(&e))?;
            out.extend(chain_cols(&batch).map_err(|e| corrupt(&e))?);
        }
        Ok(out)
    }

    /// The Merkle tree of a chain over the records the archive holds (after the cut
    /// left by retention, if any, and in pieces between accepted gaps), checked to be
    /// dense within each piece.
    pub fn chain_tree(&self, chain: &str) -> Result<ChainTree, CliError> {
        let Some(entry) = self.manifest.chains.get(chain) else {
            return Err(CliError::Usage(format!("chain {chain} is not in the archive")));
        };
        let id = chain_id(chain)?;
        let start = entry.start(id)?;
        // Walked in seq order as the files are read: what is held is the leaves and one
        // file's links, not every link of the chain.
        let held = usize::try_from(entry.next_seq - start.next_seq).unwrap_or(0);
        let mut tree = ChainTree { pieces: vec![Piece { prefix: start.tree, leaves: Vec::with_capacity(held) }] };
        let files: Vec<&FileEntry> = entry.files.iter().collect();
        // A new piece after the accepted gap from where the tree ends to `seq`, if any.
        let gap_to = |tree: &mut ChainTree, seq: u64| -> Result<(), CliError> {
            if let Some(after) = entry.after_gap(id, tree.size(), seq)? {
                tree.pieces.push(Piece { prefix: after.tree, leaves: Vec::new() });
            }
            Ok(())
        };
        in_seq_order(
            &mut tree,
            files,
            |_, f| {
                let path = self.root.join(&f.path);
                let file = File::open(&path).map_err(|e| CliError::io(&path, e))?;
                read_links(file, &path.display().to_string())
            },
            |l| l.seq,
            |tree, l| {
                if l.seq > tree.size() {
                    gap_to(tree, l.seq)?;
                }
                let want = tree.size();
                if l.seq != want {
                    return Err(CliError::Corrupt(format!(
                        "chain {chain}: the archive holds seq {} where seq {want} belongs (run `kiroku verify`)",
                        l.seq
                    )));
                }
                if let Some(p) = tree.pieces.last_mut() {
                    p.leaves.push(merkle::leaf_hash(&l.hash));
                }
                Ok(())
            },
        )?;
        // A gap right before the head (the segment after it held no record).
        if entry.next_seq > tree.size() {
            gap_to(&mut tree, entry.next_seq)?;
        }
        Ok(tree)
    }

    /// A chain's signed checkpoints in the manifest, each opened with `key` (or parsed
    /// without checking its signature when there is none), with its note and the key
    /// that signed it; none for a chain not in the manifest.
    pub fn checkpoints(&self, chain: &str, key: Option<&TrustedKeys>) -> Result<Vec<ArchivedCheckpoint>, CliError> {
        let Some(entry) = self.manifest.chains.get(chain) else { return Ok(Vec::new()) };
        entry
            .checkpoints
            .iter()
            .map(|note| {
                let (checkpoint, signed_by) = match key {
                    Some(k) => k.open_signed(note).map(|(cp, by)| (cp, Some(by.clone()))).map_err(|e| {
                        CliError::Corrupt(format!(
                            "chain {chain}: checkpoint in the manifest does not verify: {}",
                            crate::verify::checkpoint_problem(&e)
                        ))
                    })?,
                    None => Checkpoint::parse_note_unverified(note)
                        .map(|cp| (cp, None))
                        .map_err(|e| CliError::Corrupt(format!("chain {chain}: checkpoint in the manifest: {e}")))?,
                };
                Ok(ArchivedCheckpoint { checkpoint, note: note.clone(), signed_by })
            })
            .collect()
    }

    /// Why no signed checkpoint proves record `seq` of `chain`, for a record
    /// [`ChainTree::checkpoint_for`] finds none for.
    pub fn uncovered(&self, chain: &str, seq: u64) -> Uncovered {
        match self.manifest.chains.get(chain).and_then(|e| e.gap_after(seq)) {
            Some(g) => Uncovered::BeforeGap { from_seq: g.from_seq, to_seq: g.to_seq },
            None => Uncovered::Yet,
        }
    }
}

/// A checkpoint of the manifest as [`Archive::checkpoints`] opened it.
#[derive(Debug, Clone)]
pub struct ArchivedCheckpoint {
    /// Its body.
    pub checkpoint: Checkpoint,
    /// The signed note, verbatim.
    pub note: String,
    /// The trusted key that signed it; `None` when it was opened without keys.
    pub signed_by: Option<NoteVerifier>,
}

/// Why no signed checkpoint proves a record ([`Archive::uncovered`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uncovered {
    /// It is after the chain's newest checkpoint: one its writer signs later can prove it.
    Yet,
    /// It is before an accepted gap, and no checkpoint was signed between it and the
    /// gap (its segment was recovered from a writer that died before signing one): none
    /// ever will prove it, since a checkpoint signed after the gap covers records the
    /// archive does not hold.
    BeforeGap {
        /// Where the gap begins.
        from_seq: u64,
        /// The seq the chain goes on from.
        to_seq: u64,
    },
}

impl std::fmt::Display for Uncovered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Uncovered::Yet => f.write_str("not yet covered by a signed checkpoint"),
            Uncovered::BeforeGap { from_seq, to_seq } => write!(
                f,
                "never covered by a signed checkpoint: none was signed between it and the accepted gap at seq {from_seq}..{to_seq}, and one signed after the gap cannot prove it"
            ),
        }
    }
}

/// The newest of `cps` that `wanted` accepts (the first of equal size).
fn newest<'a>(
    cps: impl Iterator<Item = &'a ArchivedCheckpoint>,
    wanted: impl Fn(&Checkpoint) -> bool,
) -> Option<&'a ArchivedCheckpoint> {
    cps.filter(|c| wanted(&c.checkpoint)).fold(None, |best, c| match best {
        Some(b) if c.checkpoint.size <= b.checkpoint.size => Some(b),
        _ => Some(c),
    })
}

/// A chain's Merkle tree as the archive holds it: in pieces, each the compact range of
/// the records before it (those retention removed, for the first; those before an
/// accepted gap's end, for the others) and the leaf hashes of the records it holds.
#[derive(Debug, Clone)]
pub struct ChainTree {
    pieces: Vec<Piece>,
}

/// Records held back to back: the compact range of every record before them, then
/// their leaf hashes.
#[derive(Debug, Clone)]
struct Piece {
    prefix: CompactRange,
    leaves: Vec<Hash>,
}

impl Piece {
    fn end(&self) -> u64 {
        self.prefix.size() + self.leaves.len() as u64
    }
}

impl ChainTree {
    /// Leaves in the tree, removed and missing ones included.
    pub fn size(&self) -> u64 {
        self.pieces.last().map_or(0, Piece::end)
    }

    /// The piece whose records and compact range give the tree of the first `size`
    /// leaves.
    fn piece_of_size(&self, size: u64) -> Option<&Piece> {
        self.pieces.iter().find(|p| (p.prefix.size()..=p.end()).contains(&size))
    }

    /// Where the records held back to back with record `seq` end: a tree of at most
    /// that many leaves can prove it. `None` when the archive does not hold it.
    pub fn piece_end(&self, seq: u64) -> Option<u64> {
        self.pieces.iter().find(|p| (p.prefix.size()..p.end()).contains(&seq)).map(Piece::end)
    }

    /// The root of the first `size` leaves; `None` unless the archive holds them (`size`
    /// at least where retention cut, at most [`ChainTree::size`], and not inside an
    /// accepted gap).
    pub fn root(&self, size: u64) -> Option<Hash> {
        let p = self.piece_of_size(size)?;
        let mut r = p.prefix.clone();
        for h in &p.leaves[..(size - p.prefix.size()) as usize] {
            r.push_leaf_hash(*h);
        }
        Some(r.root())
    }

    /// The newest of a chain's checkpoints `cps` ([`Archive::checkpoints`]) that an
    /// inclusion proof of record `seq` can be made against from this tree: it covers
    /// the record, and no accepted gap lies between the record and its size.
    pub fn checkpoint_for<'a>(&self, cps: &'a [ArchivedCheckpoint], seq: u64) -> Option<&'a ArchivedCheckpoint> {
        let end = self.piece_end(seq)?;
        newest(cps.iter(), |cp| cp.size > seq && cp.size <= end)
    }

    /// The inclusion proof of leaf `index` in the tree of the first `size` leaves.
    pub fn proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, ProofError> {
        let Some(p) = self.piece_of_size(size) else {
            return Err(ProofError::IndexOutOfRange { index, size: self.size() });
        };
        merkle::inclusion_proof_after(&p.prefix, &p.leaves[..(size - p.prefix.size()) as usize], index)
    }
}

/// One row's place in its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Link {
    /// Its seq.
    pub seq: u64,
    /// Hash of the record before it.
    pub prev: Hash,
    /// Its chain hash.
    pub hash: Hash,
}

/// The chain links of a Parquet file's rows, in file order; `what` names the file in
/// errors.
pub fn read_links<R: ChunkReader + 'static>(input: R, what: &str) -> Result<Vec<Link>, CliError> {
    let corrupt = |e: &dyn std::fmt::Display| CliError::Corrupt(format!("{what}: {e}"));
    let b = ParquetRecordBatchReaderBuilder::try_new(input).map_err(|e| corrupt(&e))?;
    let mask = ProjectionMask::columns(b.parquet_schema(), ["seq", "prev_hash", "hash"]);
    let mut out = Vec::new();
    for batch in b.with_projection(mask).build().map_err(|e| corrupt(&e))? {
        let batch = batch.map_err(|e| corrupt(&e))?;
        let seqs = batch.column_by_name("seq").and_then(|c| c.as_primitive_opt::<Int64Type>());
        let prevs = batch.column_by_name("prev_hash").and_then(|c| c.as_binary_opt::<i32>());
        let hashes = batch.column_by_name("hash").and_then(|c| c.as_binary_opt::<i32>());
        let (Some(seqs), Some(prevs), Some(hashes)) = (seqs, prevs, hashes) else {
            return Err(corrupt(&"missing seq/prev_hash/hash columns"));
        };
        for i in 0..batch.num_rows() {
            out.push(Link { seq: seqs.value(i) as u64, prev: hash32(prevs.value(i)), hash: hash32(hashes.value(i)) });
        }
    }
    Ok(out)
}

fn time_overlaps(rg: &parquet::file::metadata::RowGroupMetaData, col: Option<usize>, f: &Filter) -> bool {
    let (Some(ci), true) = (col, f.from.is_some() || f.to.is_some()) else { return true };
    match rg.column(ci).statistics() {
        Some(Statistics::Int64(s)) => {
            let (Some(min), Some(max)) = (s.min_opt(), s.max_opt()) else { return true };
            f.from.is_none_or(|from| *max >= from.unix_micros()) && f.to.is_none_or(|to| *min < to.unix_micros())
        }
        _ => true,
    }
}

/// The chain columns of a batch.
pub fn chain_cols(batch: &RecordBatch) -> Result<Vec<ChainCols>, String> {
    let v = ChainView::of(batch)?;
    Ok((0..batch.num_rows())
        .map(|i| ChainCols {
            chain_id: v.chain.value(i).to_owned(),
            seq: v.seq(i),
            prev: v.prev(i),
            hash: v.hash(i),
            payload: v.payload.value(i).to_vec(),
        })
        .collect())
}

/// The chain columns of a batch, borrowed: for reading every row without copying its
/// payload out.
pub struct ChainView<'a> {
    /// `chain_id`.
    pub chain: &'a StringArray,
    seq_col: &'a arrow_array::Int64Array,
    prev_col: &'a arrow_array::BinaryArray,
    hash_col: &'a arrow_array::BinaryArray,
    /// `payload`, the exact hashed bytes.
    pub payload: &'a arrow_array::BinaryArray,
}

impl<'a> ChainView<'a> {
    /// The chain columns of `batch`, or which one is missing or mistyped.
    pub fn of(batch: &'a RecordBatch) -> Result<Self, String> {
        let col = |n: &str| batch.column_by_name(n).ok_or_else(|| format!("missing column {n}"));
        Ok(Self {
            chain: col("chain_id")?.as_string_opt::<i32>().ok_or("chain_id is not a string column")?,
            seq_col: col("seq")?.as_primitive_opt::<Int64Type>().ok_or("seq is not int64")?,
            prev_col: col("prev_hash")?.as_binary_opt::<i32>().ok_or("prev_hash is not binary")?,
            hash_col: col("hash")?.as_binary_opt::<i32>().ok_or("hash is not binary")?,
            payload: col("payload")?.as_binary_opt::<i32>().ok_or("payload is not binary")?,
        })
    }

    /// Row `i`'s seq.
    pub fn seq(&self, i: usize) -> u64 {
        self.seq_col.value(i) as u64
    }

    /// Row `i`'s previous hash (zeros unless it is 32 bytes long).
    pub fn prev(&self, i: usize) -> Hash {
        hash32(self.prev_col.value(i))
    }

    /// Row `i`'s hash (zeros unless it is 32 bytes long).
    pub fn hash(&self, i: usize) -> Hash {
        hash32(self.hash_col.value(i))
    }
}

/// Parse a chain id from a manifest key.
pub fn chain_id(s: &str) -> Result<ChainId, CliError> {
    s.parse().map_err(|e| CliError::Corrupt(format!("manifest: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn file(name: &str, first_seq: u64) -> FileEntry {
        FileEntry {
            path: name.into(),
            first_seq,
            last_seq: 0,
            rows: 0,
            bytes: 0,
            blake3: String::new(),
            date: String::new(),
        }
    }

    #[test]
    fn rows_go_out_in_seq_order_and_files_are_opened_only_when_needed() {
        // Rows in file order (by time, so not by seq); B and A overlap as a segment that
        // crossed midnight does; D is empty; E repeats seq 8 (a damaged archive).
        let rows: BTreeMap<&str, Vec<u64>> =
            [("A", vec![0, 2, 1, 4]), ("B", vec![3, 5, 6]), ("C", vec![7, 8]), ("D", vec![]), ("E", vec![9, 8])].into();
        let files = [file("E", 9), file("C", 7), file("A", 0), file("D", 8), file("B", 3)];
        let mut log: Vec<String> = Vec::new();
        let done: Result<(), ()> = in_seq_order(
            &mut log,
            files.iter().collect(),
            |log, f| {
                log.push(format!("open {}", f.path));
                Ok(rows[f.path.as_str()].iter().map(|&s| (s, f.path.clone())).collect())
            },
            |row| row.0,
            |log, (s, from)| {
                log.push(format!("{s}{from}"));
                Ok(())
            },
        );
        assert_eq!(done, Ok(()));
        let want = "open A,0A,1A,2A,open B,3B,4A,5B,6B,open C,7C,open D,8C,open E,8E,9E";
        assert_eq!(log.join(","), want);
    }

    #[test]
    fn on_every_core_the_walk_is_the_same_as_on_one() {
        // Forty files whose seq ranges overlap pairwise, rows in no particular order.
        let files: Vec<FileEntry> = (0..40).map(|k| file(&k.to_string(), k * 10)).collect();
        let rows = |f: &FileEntry| -> Vec<u64> {
            let k: u64 = f.path.parse().unwrap();
            (0..15).map(|i| k * 10 + (i * 7) % 15).collect()
        };
        let mut one = Vec::new();
        let r: Result<(), ()> = in_seq_order(
            &mut one,
            files.iter().collect(),
            |_, f| Ok(rows(f)),
            |s| *s,
            |o, s| {
                o.push(s);
                Ok(())
            },
        );
        assert_eq!(r, Ok(()));
        let mut many = Vec::new();
        let r: Result<(), ()> = in_seq_order_parallel(
            &mut many,
            files.iter().rev().collect(),
            rows,
            |_, _, got| Ok(got.unwrap()),
            |s| *s,
            |o, s| {
                o.push(s);
                Ok(())
            },
        );
        assert_eq!(r, Ok(()));
        assert_eq!(many, one);
        assert!(one.windows(2).all(|w| w[0] <= w[1]) && one.len() == 600);
    }

    #[test]
    fn an_error_stops_the_walk() {
        let files = [file("A", 0), file("B", 10)];
        let mut emitted = 0;
        let r = in_seq_order(
            &mut emitted,
            files.iter().collect(),
            |_, f| if f.path == "A" { Ok(vec![0, 1]) } else { Err(format!("cannot read {}", f.path)) },
            |s| *s,
            |n, _| {
                *n += 1;
                Ok(())
            },
        );
        assert_eq!((r, emitted), (Err("cannot read B".to_owned()), 2));
    }
}
