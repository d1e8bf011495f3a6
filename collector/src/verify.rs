//! Full re-verification of a spool or an archive: everything re-derived from the raw
//! bytes and compared (in the spirit of Tessera's fsck), every problem listed.

use std::collections::BTreeSet;
use std::fs;
use std::io::BufReader;
use std::path::Path;

use kiroku_schemas::checkpoint::{Checkpoint, NoteVerifier};
use kiroku_schemas::digest::to_hex;
use kiroku_schemas::record::RecordView;
use kiroku_schemas::segment::{ChainState, VerifyOptions, record_hash, verify_segment};

use crate::archive::{Archive, chain_cols, chain_id};
use crate::columns::{BatchBuilder, ChainRow};
use crate::error::CliError;
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
}

/// Verify every segment in a spool: sealed ones sealed and signed, open ones up to
/// their tail, continuity between consecutive segments of a chain.
pub fn verify_spool(spool: &LocalSpool, verifier: Option<&NoteVerifier>) -> Result<VerifyReport, CliError> {
    let mut rep = VerifyReport { signatures_checked: verifier.is_some(), ..Default::default() };
    for chain in spool.chains()? {
        rep.chains += 1;
        let dir = spool.root().join(chain.to_string());
        let mut segs = spool.sealed(chain)?;
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(first_seq) = name.strip_suffix(".open").and_then(|s| s.parse().ok()) {
                    segs.push(crate::spool::SegmentRef { chain_id: chain, first_seq, name, sealed: false });
                }
            }
        }
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
    }
    Ok(rep)
}

/// Verify an archive: each file's blake3 against the manifest; every row's hash
/// recomputed from its exact payload and linked to the one before; seqs dense; every
/// analytic column re-derived from the payload and compared; Merkle roots against the
/// signed checkpoints; the chain head against the manifest; no Parquet file outside
/// the manifest.
pub fn verify_archive(root: &Path, verifier: Option<&NoteVerifier>) -> Result<VerifyReport, CliError> {
    let archive = Archive::open(root)?;
    let mut rep = VerifyReport { signatures_checked: verifier.is_some(), ..Default::default() };
    let mut named = BTreeSet::new();
    for (chain_key, entry) in &archive.manifest.chains {
        rep.chains += 1;
        let chain = chain_id(chain_key)?;
        let mut rows = Vec::new();
        for f in &entry.files {
            rep.units += 1;
            named.insert(f.path.clone());
            let path = root.join(&f.path);
            let bytes = match fs::read(&path) {
                Ok(b) => b,
                Err(e) => {
                    rep.problems.push(format!("{}: listed in the manifest but unreadable: {e}", path.display()));
                    continue;
                }
            };
            let digest = to_hex(blake3::hash(&bytes).as_bytes());
            if digest != f.blake3 {
                rep.problems.push(format!(
                    "{}: blake3 {digest} differs from the manifest's {} (file replaced or edited)",
                    path.display(),
                    f.blake3
                ));
            }
            let batches = match archive.batches(f) {
                Ok(b) => b,
                Err(e) => {
                    rep.problems.push(e.to_string());
                    continue;
                }
            };
            let mut file_rows = 0u64;
            for batch in batches {
                let cols = match chain_cols(&batch) {
                    Ok(c) => c,
                    Err(e) => {
                        rep.problems.push(format!("{}: {e}", path.display()));
                        continue;
                    }
                };
                // Re-derive every column from the payloads and compare with what is stored.
                let mut b = BatchBuilder::default();
                let mut parsed = true;
                for c in &cols {
                    match RecordView::parse(&c.payload) {
                        Ok(r) => b.push(
                            chain_key,
                            &ChainRow { seq: c.seq, prev: &c.prev, hash: &c.hash, payload: &c.payload },
                            &r,
                        ),
                        Err(e) => {
                            rep.problems.push(format!(
                                "{}: seq {}: payload is not a valid record: {e}",
                                path.display(),
                                c.seq
                            ));
                            parsed = false;
                        }
                    }
                }
                if parsed {
                    match b.finish() {
                        Ok(rebuilt) if rebuilt == batch => {}
                        Ok(rebuilt) => {
                            let diff: Vec<String> = rebuilt
                                .schema()
                                .fields()
                                .iter()
                                .enumerate()
                                .filter(|(i, _)| rebuilt.column(*i) != batch.column(*i))
                                .map(|(_, f)| f.name().clone())
                                .collect();
                            rep.problems.push(format!(
                                "{}: columns {diff:?} do not match the payloads they are projected from (row edited)",
                                path.display()
                            ));
                        }
                        Err(e) => rep.problems.push(format!("{}: {e}", path.display())),
                    }
                }
                file_rows += cols.len() as u64;
                rows.extend(cols.into_iter().map(|c| (f.path.clone(), c)));
            }
            if file_rows != f.rows {
                rep.problems.push(format!(
                    "{}: {file_rows} rows, the manifest says {} (rows deleted or added)",
                    path.display(),
                    f.rows
                ));
            }
        }
        rows.sort_by_key(|(_, c)| c.seq);
        let mut state = match entry.start(chain) {
            Ok(s) => s,
            Err(e) => {
                rep.problems.push(e.to_string());
                continue;
            }
        };
        if let Some(r) = &entry.retired {
            rep.notes.push(format!(
                "chain {chain}: seq 0..{} removed by retention (through {}, at {}); verified from seq {}",
                r.next_seq, r.through_date, r.at, r.next_seq
            ));
        }
        let mut cps: Vec<Checkpoint> = Vec::new();
        for note in &entry.checkpoints {
            let cp = match verifier {
                Some(v) => v.open(note).map_err(|e| e.to_string()),
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
        let mut tree = state.tree.clone();
        let mut next_cp = cps.iter().peekable();
        // Checkpoints up to where the archive begins: only one exactly at the cut can be
        // checked (against the retained compact range); later ones cover the cut too.
        while let Some(cp) = next_cp.next_if(|cp| cp.size <= tree.size()) {
            if cp.size == tree.size() && cp.size > 0 {
                rep.checkpoints += 1;
                if cp.root != tree.root() {
                    rep.problems.push(format!(
                        "chain {chain}: Merkle root of the first {} records (the retention cut) differs from the signed checkpoint",
                        cp.size
                    ));
                }
            }
        }
        for (file, c) in &rows {
            if c.chain_id != *chain_key {
                rep.problems
                    .push(format!("{file}: seq {}: row of chain {} in a file of chain {chain}", c.seq, c.chain_id));
                continue;
            }
            if c.seq != state.next_seq {
                let what = if c.seq < state.next_seq { "duplicated" } else { "missing (deleted)" };
                rep.problems.push(format!(
                    "{file}: chain {chain}: expected seq {}, found {} (rows {what})",
                    state.next_seq, c.seq
                ));
                if c.seq < state.next_seq {
                    continue;
                }
            }
            if record_hash(&chain, c.seq, &c.prev, &c.payload) != c.hash {
                rep.problems.push(format!(
                    "{file}: chain {chain} seq {}: hash does not match the payload (payload or hash edited)",
                    c.seq
                ));
            } else if c.prev != state.last_hash {
                rep.problems.push(format!(
                    "{file}: chain {chain} seq {}: prev hash does not link to seq {}",
                    c.seq,
                    c.seq.saturating_sub(1)
                ));
            }
            rep.records += 1;
            tree.push(&c.hash);
            state.last_hash = c.hash;
            state.next_seq = c.seq + 1;
            while let Some(cp) = next_cp.peek() {
                if cp.size != tree.size() {
                    break;
                }
                rep.checkpoints += 1;
                if cp.root != tree.root() {
                    rep.problems.push(format!(
                        "chain {chain}: Merkle root of the first {} records differs from the signed checkpoint",
                        cp.size
                    ));
                }
                next_cp.next();
            }
        }
        for cp in next_cp {
            rep.problems.push(format!(
                "chain {chain}: a checkpoint covers {} records, the archive holds {}",
                cp.size,
                tree.size()
            ));
        }
        if state.next_seq != entry.next_seq || to_hex(&state.last_hash) != entry.last_hash {
            rep.problems.push(format!(
                "chain {chain}: the files end at seq {} but the manifest's head is seq {}",
                state.next_seq, entry.next_seq
            ));
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
