//! Full re-verification of a spool or an archive: everything re-derived from the raw
//! bytes and compared (in the spirit of Tessera's fsck), every problem listed.

use std::collections::BTreeSet;
use std::fs;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;

use kiroku_schemas::checkpoint::{Checkpoint, CheckpointError, TrustedKeys};
use kiroku_schemas::digest::to_hex;
use kiroku_schemas::merkle::CompactRange;
use kiroku_schemas::record::RecordView;
use kiroku_schemas::segment::{ChainState, ComputedHash, FrameKind, FrameRef, VerifyOptions, verify_segment};
use kiroku_schemas::{ChainId, Hash};

use crate::archive::{Archive, ChainView, chain_id, in_seq_order_parallel};
use crate::columns::{BatchBuilder, ChainRow};
use crate::error::CliError;
use crate::manifest::{ChainEntry, FileEntry};
use crate::spool::{LocalSpool, SpoolStore};

/// The outcome of a verification: what was checked and every problem found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Chains checked.
    pub chains: u64,
    /// Segments or files checked.
    pub units: u64,
    /// Records checked.
    pub records: u64,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// True when signatures were checked with a public key.
    pub signatures_checked: bool,
    /// Problems: tampering or corruption, each with where.
    pub problems: Vec<String>,
    /// Worth knowing, not wrong (e.g. where retention cut a chain).
    pub notes: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is wrong.
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Add what another part of the same verification checked and found.
    fn absorb(&mut self, other: VerifyReport) {
        self.chains += other.chains;
        self.units += other.units;
        self.records += other.records;
        self.checkpoints += other.checkpoints;
        self.problems.extend(other.problems);
        self.notes.extend(other.notes);
    }
}

/// Verify every segment in a spool: sealed ones sealed and signed, open ones up to
/// their tail, continuity between consecutive segments of a chain. Segments the
/// journal set aside as corrupt (`*.corrupt`) are verified too, and fail.
pub fn verify_spool(spool: &LocalSpool, verifier: Option<&TrustedKeys>) -> Result<VerifyReport, CliError> {
    let mut rep = VerifyReport { signatures_checked: verifier.is_some(), ..Default::default() };
    for chain in spool.chains()? {
        rep.chains += 1;
        let dir = spool.root().join(chain.to_string());
        // Losses a stopped writer could not state in a record yet: not a problem of the
        // log (they will be stated), but an investigator reading the spool must see them.
        match kiroku::journal::read_lost_file(&dir) {
            Ok(Some(owed)) => rep.notes.push(format!("{}: {owed}", dir.join(kiroku::journal::LOST_FILE).display())),
            Ok(None) => {}
            Err(e) => rep.problems.push(e.to_string()),
        }
        let mut segs = spool.sealed(chain)?;
        // Open segments up to their tail; those the journal found corrupt, too (they
        // fail, and are listed).
        segs.extend(spool.list(chain, "open")?);
        segs.extend(spool.list(chain, "corrupt")?);
        segs.sort_by_key(|s| (s.first_seq, !s.sealed));
        let mut prev: Option<ChainState> = None;
        for seg in segs {
            rep.units += 1;
            let path = dir.join(&seg.name);
            let base = if seg.sealed { VerifyOptions::sealed() } else { VerifyOptions::open() };
            let mut opts = VerifyOptions { verifier: verifier.cloned(), chain_id: Some(chain), ..base };
            opts.previous = prev.clone();
            let f = fs::File::open(&path).map_err(|e| CliError::io(&path, e))?;
            match verify_segment(BufReader::with_capacity(1 << 20, f), &opts) {
                Ok(r) => {
                    rep.records += r.records;
                    rep.checkpoints += r.checkpoints;
                    if let Some((off, n)) = r.torn_tail {
                        rep.problems.push(format!("{}: torn final frame of {n} bytes at byte offset {off} (an unfinished write; the writer or the collector cuts it)", path.display()));
                    }
                    prev = Some(r.end);
                }
                Err(e) => {
                    rep.problems.push(e.in_file(&path).to_string());
                    prev = None;
                }
            }
        }
        // Set aside by the compactor, reported then; a later segment of the chain may
        // wait behind one of them.
        for seq in spool.quarantined(chain)? {
            rep.notes.push(format!(
                "{}: a segment of this chain from seq {seq} is in quarantine (its report is next to it there)",
                spool.root().join("quarantine").join(chain.to_string()).display()
            ));
        }
    }
    Ok(rep)
}

/// Why a checkpoint in the archive did not open against the trusted keys, for the
/// operator: when no key of the set signed it, say which causes to look for.
pub(crate) fn checkpoint_problem(e: &CheckpointError) -> String {
    match e {
        CheckpointError::NoSignatureByKey { .. } | CheckpointError::NoSignatureByTrustedKey(_) => format!(
            "{e} (no key of the --pubkey file signed it: one of the log's keys missing from the file, after a rotation or another instance's, or a checkpoint this log did not make)"
        ),
        _ => e.to_string(),
    }
}

/// Verify an archive: each file's blake3 against the manifest; every row's hash
/// recomputed from its exact payload and linked to the one before; seqs dense; every
/// analytic column re-derived from the payload and compared; Merkle roots against the
/// signed checkpoints; the chain head against the manifest; no Parquet file outside
/// the manifest.
///
/// Files are read batch by batch, on every core, and a chain's rows are walked in seq
/// order while its files are still being read: what is held at once is a file's chain
/// links (seq and two hashes per row) per core, never the chain's payloads.
pub fn verify_archive(root: &Path, verifier: Option<&TrustedKeys>) -> Result<VerifyReport, CliError> {
    let archive = Archive::open(root)?;
    let mut rep = VerifyReport { signatures_checked: verifier.is_some(), ..Default::default() };
    let mut named = BTreeSet::new();
    for (chain_key, entry) in &archive.manifest.chains {
        rep.chains += 1;
        let chain = chain_id(chain_key)?;
        named.extend(entry.files.iter().map(|f| f.path.clone()));
        let mut walk = match entry.start(chain) {
            Ok(state) => Some(ChainWalk::new(chain, state, entry, verifier, &mut rep)),
            Err(e) => {
                rep.problems.push(e.to_string());
                None
            }
        };
        // Files are checked on their own (decoding, digests, every row's hash, every
        // column re-derived) on every core, a file or two ahead of the walk, which takes
        // their results in order: problems are listed as one thread would list them.
        let files: Vec<&FileEntry> = entry.files.iter().collect();
        let work = |f: &FileEntry| {
            let mut own = VerifyReport::default();
            let links = check_file(&archive, chain_key, &chain, f, &mut own);
            (links, own)
        };
        let walked: Result<(), std::convert::Infallible> = in_seq_order_parallel(
            &mut rep,
            files,
            work,
            |rep, f, checked| {
                Ok(match checked {
                    Some((links, own)) => {
                        rep.absorb(own);
                        links
                    }
                    // Only if a checking thread panicked: its file is not silently skipped.
                    None => {
                        rep.problems.push(format!("{}: could not be checked (internal error)", f.path));
                        Vec::new()
                    }
                })
            },
            |link| link.seq,
            |rep, link| {
                if let Some(w) = walk.as_mut() {
                    w.step(&link, rep);
                }
                Ok(())
            },
        );
        let Ok(()) = walked;
        if let Some(w) = walk {
            w.finish(entry, &mut rep);
        }
    }
    for stray in crate::archive_store::parquet_files(&root.join("records")) {
        let rel = stray.strip_prefix(root).unwrap_or(&stray).to_string_lossy().into_owned();
        if archive.manifest.is_retired_file(&rel) && !named.contains(&rel) {
            rep.notes.push(format!(
                "{}: records removed by retention, file not deleted yet (the store refused, e.g. an object lock, or a run stopped); the next `kiroku compact --retain` deletes it",
                stray.display()
            ));
        } else if !named.contains(&rel) {
            rep.problems.push(format!("{}: Parquet file not in the manifest (left by an interrupted compaction, or planted); queries over records/ would read it", stray.display()));
        }
    }
    Ok(rep)
}

/// What the chain walk needs of one archived row.
struct RowLink {
    /// The file it is in (for messages).
    file: Arc<str>,
    /// Its `chain_id` column, when that is not the chain the manifest files it under.
    foreign_chain: Option<String>,
    seq: u64,
    prev: Hash,
    hash: Hash,
    /// The stored hash is the hash of the stored payload, seq and prev hash.
    hash_ok: bool,
}

/// blake3 of a whole file (blake3's own reader loop: pieces large enough for its lanes).
fn file_digest(path: &Path) -> std::io::Result<String> {
    Ok(to_hex(blake3::Hasher::new().update_reader(fs::File::open(path)?)?.finalize().as_bytes()))
}

/// The checks of one file on its own (its digest, its row count, every column against
/// the payload it is projected from, every row's hash), and its rows' chain links.
fn check_file(
    archive: &Archive,
    chain_key: &str,
    chain: &ChainId,
    f: &FileEntry,
    rep: &mut VerifyReport,
) -> Vec<RowLink> {
    rep.units += 1;
    let path = archive.root.join(&f.path);
    match file_digest(&path) {
        Ok(digest) if digest == f.blake3 => {}
        Ok(digest) => rep.problems.push(format!(
            "{}: blake3 {digest} differs from the manifest's {} (file replaced or edited)",
            path.display(),
            f.blake3
        )),
        Err(e) => {
            rep.problems.push(format!("{}: listed in the manifest but unreadable: {e}", path.display()));
            return Vec::new();
        }
    }
    let batches = match archive.reader(f) {
        Ok(b) => b,
        Err(e) => {
            rep.problems.push(e.to_string());
            return Vec::new();
        }
    };
    let file: Arc<str> = f.path.as_str().into();
    let mut links = Vec::with_capacity(usize::try_from(f.rows).unwrap_or(0).min(1 << 20));
    for batch in batches {
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                rep.problems.push(e.to_string());
                break;
            }
        };
        let cols = match ChainView::of(&batch) {
            Ok(c) => c,
            Err(e) => {
                rep.problems.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        // Each row is hashed with the seq and prev hash it names (the walk checks the
        // links), side by side, its payload read where it lies in the batch.
        let frames: Vec<FrameRef<'_>> = (0..batch.num_rows())
            .map(|i| FrameRef {
                offset: i as u64,
                kind: FrameKind::Record,
                seq: cols.seq(i),
                prev: cols.prev(i),
                payload: cols.payload.value(i),
                hash: cols.hash(i),
            })
            .collect();
        rederive_columns(&batch, &cols, &frames, chain_key, &path, rep);
        let computed = ComputedHash::of_all(chain, &frames);
        links.extend(frames.iter().zip(computed).enumerate().map(|(i, (fr, h))| RowLink {
            file: file.clone(),
            foreign_chain: (cols.chain.value(i) != chain_key).then(|| cols.chain.value(i).to_owned()),
            seq: fr.seq,
            prev: fr.prev,
            hash: fr.hash,
            hash_ok: *h.hash() == fr.hash,
        }));
    }
    if links.len() as u64 != f.rows {
        rep.problems.push(format!(
            "{}: {} rows, the manifest says {} (rows deleted or added)",
            path.display(),
            links.len(),
            f.rows
        ));
    }
    links
}

/// Re-derive every column of `batch` from its payloads and compare with what is stored
/// (the payload column is where they come from; its bytes are checked by the hashes).
fn rederive_columns(
    batch: &RecordBatch,
    cols: &ChainView<'_>,
    rows: &[FrameRef<'_>],
    chain_key: &str,
    path: &Path,
    rep: &mut VerifyReport,
) {
    let mut b = BatchBuilder::with_capacity(rows.len(), 0);
    let mut parsed = true;
    for row in rows {
        match RecordView::parse(row.payload) {
            Ok(r) => b.push_projected(
                chain_key,
                &ChainRow { seq: row.seq, prev: &row.prev, hash: &row.hash, payload: row.payload },
                &r,
            ),
            Err(e) => {
                // Every such row is listed; the columns are compared only when all parse.
                rep.problems.push(format!("{}: seq {}: payload is not a valid record: {e}", path.display(), row.seq));
                parsed = false;
            }
        }
    }
    if !parsed {
        return;
    }
    match b.finish_with_payloads(cols.payload.clone()) {
        Ok(rebuilt) => {
            let (want, got) = (rebuilt.schema(), batch.schema());
            let diff: Vec<String> = want
                .fields()
                .iter()
                .enumerate()
                .filter(|(i, f)| {
                    f.name() != "payload"
                        && (got.fields().get(*i) != Some(*f) || batch.columns().get(*i) != Some(rebuilt.column(*i)))
                })
                .map(|(_, f)| f.name().clone())
                .collect();
            if !diff.is_empty() || got.fields().len() != want.fields().len() {
                rep.problems.push(format!(
                    "{}: columns {diff:?} do not match the payloads they are projected from (row edited)",
                    path.display()
                ));
            }
        }
        Err(e) => rep.problems.push(format!("{}: {e}", path.display())),
    }
}

/// The order-dependent checks of one chain: seqs dense from where the archive begins,
/// each row linked to the one before, the Merkle tree against the signed checkpoints.
struct ChainWalk {
    chain: ChainId,
    state: ChainState,
    tree: CompactRange,
    /// Accepted gaps not reached yet, in seq order: where each starts, and the chain
    /// state after it.
    gaps: std::iter::Peekable<std::vec::IntoIter<(u64, ChainState)>>,
    /// Signed checkpoints not reached yet, smallest first.
    checkpoints: std::iter::Peekable<std::vec::IntoIter<Checkpoint>>,
}

impl ChainWalk {
    fn new(
        chain: ChainId,
        state: ChainState,
        entry: &ChainEntry,
        verifier: Option<&TrustedKeys>,
        rep: &mut VerifyReport,
    ) -> Self {
        if let Some(u) = &entry.unstated {
            rep.notes.push(format!("chain {chain}: {}", u.describe()));
        }
        if let Some(r) = &entry.retired {
            rep.notes.push(format!(
                "chain {chain}: seq 0..{} removed by retention (through {}, at {}); verified from seq {}",
                r.next_seq, r.through_date, r.at, r.next_seq
            ));
        }
        let mut gaps = Vec::new();
        for g in &entry.gaps {
            rep.notes.push(format!("chain {chain}: {}", g.describe()));
            match g.state_after(chain) {
                Ok(after) if gaps.last().is_none_or(|(_, a): &(u64, ChainState)| a.next_seq <= g.from_seq) => {
                    gaps.push((g.from_seq, after))
                }
                Ok(_) => rep.problems.push(format!(
                    "chain {chain}: the manifest's gap from seq {} is not after the gap before it",
                    g.from_seq
                )),
                Err(e) => rep.problems.push(e.to_string()),
            }
        }
        let mut cps: Vec<Checkpoint> = Vec::new();
        for note in &entry.checkpoints {
            let cp = match verifier {
                Some(v) => v.open(note).map_err(|e| checkpoint_problem(&e)),
                None => Checkpoint::parse_note_unverified(note).map_err(|e| e.to_string()),
            };
            match cp {
                Ok(cp) if cp.chain_id() == Some(chain) => cps.push(cp),
                Ok(cp) => rep
                    .problems
                    .push(format!("chain {chain}: checkpoint of origin {:?} filed under this chain", cp.origin)),
                Err(e) => rep.problems.push(format!("chain {chain}: checkpoint does not verify: {e}")),
            }
        }
        cps.sort_by_key(|c| c.size);
        let tree = state.tree.clone();
        let checkpoints = cps.into_iter().peekable();
        let mut walk = Self { chain, state, tree, gaps: gaps.into_iter().peekable(), checkpoints };
        walk.checkpoints_at_cut("the retention cut", rep);
        walk
    }

    /// Where the walk begins again from a compact range (where the archive begins, or
    /// after an accepted gap): of the checkpoints up to there, only one exactly there
    /// can be checked (against that compact range); later ones cover it too.
    fn checkpoints_at_cut(&mut self, what: &str, rep: &mut VerifyReport) {
        while let Some(cp) = self.checkpoints.next_if(|cp| cp.size <= self.tree.size()) {
            if cp.size == self.tree.size() && cp.size > 0 {
                rep.checkpoints += 1;
                if cp.root != self.tree.root() {
                    rep.problems.push(format!(
                        "chain {}: Merkle root of the first {} records ({what}) differs from the signed checkpoint",
                        self.chain, cp.size
                    ));
                }
            }
        }
    }

    /// Go on from the state after the accepted gap that starts where the walk stands
    /// and ends at `seq`, if there is one. Signed checkpoints of the missing records
    /// cannot be checked (none is filed: they were in the bad segment); one of exactly
    /// the records before `seq` is checked against the compact range after the gap.
    fn cross_gap(&mut self, seq: u64, rep: &mut VerifyReport) {
        let next = self.state.next_seq;
        let Some((_, after)) = self.gaps.next_if(|(from, after)| *from == next && after.next_seq == seq) else {
            return;
        };
        self.tree = after.tree.clone();
        self.state = after;
        self.checkpoints_at_cut("after the accepted gap", rep);
    }

    /// The next row in seq order.
    fn step(&mut self, l: &RowLink, rep: &mut VerifyReport) {
        let (chain, file) = (self.chain, &l.file);
        if let Some(other) = &l.foreign_chain {
            rep.problems.push(format!("{file}: seq {}: row of chain {other} in a file of chain {chain}", l.seq));
            return;
        }
        if l.seq > self.state.next_seq {
            self.cross_gap(l.seq, rep);
        }
        if l.seq != self.state.next_seq {
            let what = if l.seq < self.state.next_seq { "duplicated" } else { "missing (deleted)" };
            rep.problems.push(format!(
                "{file}: chain {chain}: expected seq {}, found {} (rows {what})",
                self.state.next_seq, l.seq
            ));
            if l.seq < self.state.next_seq {
                return;
            }
        }
        if !l.hash_ok {
            rep.problems.push(format!(
                "{file}: chain {chain} seq {}: hash does not match the payload (payload or hash edited)",
                l.seq
            ));
        } else if l.prev != self.state.last_hash {
            rep.problems.push(format!(
                "{file}: chain {chain} seq {}: prev hash does not link to seq {}",
                l.seq,
                l.seq.saturating_sub(1)
            ));
        }
        rep.records += 1;
        self.tree.push(&l.hash);
        self.state.last_hash = l.hash;
        self.state.next_seq = l.seq + 1;
        while let Some(cp) = self.checkpoints.next_if(|cp| cp.size == self.tree.size()) {
            rep.checkpoints += 1;
            if cp.root != self.tree.root() {
                rep.problems.push(format!(
                    "chain {chain}: Merkle root of the first {} records differs from the signed checkpoint",
                    cp.size
                ));
            }
        }
    }

    /// After the last row: no checkpoint left over, the head the manifest names.
    fn finish(mut self, entry: &ChainEntry, rep: &mut VerifyReport) {
        let chain = self.chain;
        // A gap right before the head: the chain's next segment is still to come.
        if self.state.next_seq < entry.next_seq {
            self.cross_gap(entry.next_seq, rep);
        }
        for (from, after) in self.gaps {
            rep.problems.push(format!(
                "chain {chain}: the manifest's gap of seq {from}..{} is not where the files' records leave one (rows in it, or the files end before it)",
                after.next_seq
            ));
        }
        for cp in self.checkpoints {
            rep.problems.push(format!(
                "chain {chain}: a checkpoint covers {} records, the archive holds {}",
                cp.size,
                self.tree.size()
            ));
        }
        if self.state.next_seq != entry.next_seq || to_hex(&self.state.last_hash) != entry.last_hash {
            rep.problems.push(format!(
                "chain {chain}: the files end at seq {} but the manifest's head is seq {}",
                self.state.next_seq, entry.next_seq
            ));
        }
    }
}
