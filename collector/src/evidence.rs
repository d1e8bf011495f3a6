//! Evidence bundles: the records of an incident with everything a third party needs to
//! check them without kiroku and without trusting the operator.
//!
//! ```text
//! <out>/README.txt                    how to verify, step by step
//! <out>/index.json                    one entry per record: chain, seq, prev hash, hash, files
//! <out>/records/<record id>.json      the exact record bytes that were hashed
//! <out>/proofs/<record id>.tlog-proof C2SP tlog-proof: inclusion in a signed checkpoint
//! <out>/checkpoints/<chain>.note      the newest signed checkpoint the chain's proofs are against
//! <out>/signer.vkey                   the log's public key(s) that signed those checkpoints, one per line
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use kiroku_schemas::AuditRecord;
use kiroku_schemas::checkpoint::TrustedKeys;
use kiroku_schemas::digest::{hash_from_hex, to_hex};
use kiroku_schemas::proof::TlogProof;
use kiroku_schemas::segment::record_hash;
use serde::{Deserialize, Serialize};

use crate::archive::{Archive, ChainCols, Uncovered, chain_id};
use crate::error::CliError;
use crate::verify::VerifyReport;

/// One record in a bundle's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleEntry {
    /// Record id.
    pub record_id: String,
    /// Chain.
    pub chain_id: String,
    /// Seq (the leaf index).
    pub seq: u64,
    /// Previous record hash, hex.
    pub prev_hash: String,
    /// Record hash, hex.
    pub hash: String,
    /// The record file, relative to the bundle.
    pub record: String,
    /// The proof file, relative to the bundle.
    pub proof: String,
}

/// A record the selection matched that is not in the bundle: no signed checkpoint in
/// the archive proves it ([`Unproven::LeaveOut`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeftOut {
    /// Record id.
    pub record_id: String,
    /// Chain.
    pub chain_id: String,
    /// Seq.
    pub seq: u64,
    /// Why no checkpoint proves it.
    pub reason: String,
}

/// A bundle's index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleIndex {
    /// Format of this index.
    pub format: String,
    /// Records.
    pub records: Vec<BundleEntry>,
    /// Records selected and not included, with the reason (absent when none were).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<LeftOut>,
}

/// What [`write_bundle`] does with a selected record that no signed checkpoint in the
/// archive proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unproven {
    /// Write no bundle: the records were asked for by id.
    Refuse,
    /// Write the others and list it in `index.json` under `left_out`: the records were
    /// selected by time, and the window of an incident often ends with the last records
    /// a writer wrote before it died, which nothing signed covers.
    LeaveOut,
}

/// The format name in `index.json`.
pub const BUNDLE_FORMAT: &str = "kiroku-evidence-bundle/1";

const README: &str = "kiroku evidence bundle
======================

This directory holds audit records of AI inferences and the cryptographic proofs that
they are part of an append-only log whose state was signed by the log's key. You can
check it without kiroku. The format is specified in kiroku's schemas/FORMAT.md.

Files
  index.json                   one entry per record: chain_id, seq, prev_hash, hash (hex)
  records/<record_id>.json     the exact bytes of each record as stored in the log
  proofs/<record_id>.tlog-proof   a C2SP tlog-proof (https://c2sp.org/tlog-proof)
  checkpoints/<chain_id>.note  the newest signed checkpoint (C2SP tlog-checkpoint) the
                               chain's proofs refer to (each proof holds its own)
  signer.vkey                  the log's Ed25519 public key in signed-note form, one per
                               line: <name>+<key id hex>+<base64(0x01 || 32-byte public key)>
                               (several lines when the log's key was rotated and the
                               proofs refer to checkpoints signed by more than one)

Obtain the log operator's public key(s) through a channel you trust and compare them
with signer.vkey before relying on anything here.

For each entry of index.json:

1. Read records/<record_id>.json as raw bytes P (do not re-serialise the JSON).
   Check that its record_id, chain_id and seq fields equal the index entry.
2. Recompute the record's chain hash:
     H = BLAKE3( \"kiroku/v1/record\" 0x00 || chain_id (16 bytes, the UUID's bytes)
                 || seq (8 bytes, little-endian) || prev_hash (32 bytes) || P )
   H must equal the entry's hash.
3. Read the proof: line 1 is c2sp.org/tlog-proof@v1, then \"index <seq>\", then one
   base64 SHA-256 hash per line (the inclusion path), an empty line, then the signed
   checkpoint note.
4. Verify the checkpoint's signature: the note body is everything up to and including
   the newline before the blank line; the signature line is
   \"\u{2014} <key name> <base64(4-byte key id || 64-byte Ed25519 signature)>\". The key id is
   SHA-256(key name || 0x0A || 0x01 || public key)[0:4]. One such line must be by a key
   of signer.vkey (same name and key id) and verify; lines by other keys (witness
   cosignatures) may be ignored. The body's lines are the origin
   (kiroku/<chain_id>), the tree size N, the base64 root hash R, and extension lines.
5. Verify inclusion (RFC 9162, section 2.1.3.2) of the leaf
     L = SHA-256( 0x00 || H )
   at index seq in the tree of size N with root R, using the proof's hashes
   (node hash = SHA-256( 0x01 || left || right )).

If every step holds for every entry, each record is exactly what the log held at that
position, and the log's key signed a state that includes it.

index.json may also list, under left_out, records the selection matched that are not
in this bundle, each with the reason: no checkpoint signed by the log's key covers them
(for example the last records of a writer that stopped before signing one). Nothing
here proves them; they are named so that their absence is not silent.
";

fn write(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    if let Some(d) = path.parent() {
        fs::create_dir_all(d).map_err(|e| CliError::io(d, e))?;
    }
    fs::write(path, bytes).map_err(|e| CliError::io(path, e))
}

/// Write a bundle of `rows` to `out` (a new or empty directory). The bundle is built in
/// a temporary directory beside `out` and renamed into place once whole: a run that
/// fails (a record no checkpoint proves under [`Unproven::Refuse`], a full disk)
/// leaves no half bundle. The directory is owner-only (0700), as it holds records.
/// Returns the bundle's index. A selection of which no record can be proven writes no
/// bundle.
pub fn write_bundle(
    archive: &Archive,
    rows: &[ChainCols],
    verifier: &TrustedKeys,
    out: &Path,
    unproven: Unproven,
) -> Result<BundleIndex, CliError> {
    if out.exists() && fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(CliError::Usage(format!(
            "{} exists and is not empty; choose a new directory for the bundle",
            out.display()
        )));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(|e| CliError::io(parent, e))?;
    let name = out.file_name().map_or_else(|| "bundle".into(), |n| n.to_string_lossy().into_owned());
    let partial = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempdir_in(parent)
        .map_err(|e| CliError::io(parent, e))?;
    let index = write_bundle_files(archive, rows, verifier, partial.path(), unproven)?;
    // Renaming onto an empty directory replaces it; onto nothing creates it.
    fs::rename(partial.path(), out).map_err(|e| CliError::io(out, e))?;
    // The directory is `out` now; nothing is left for the guard to remove.
    let _ = partial.keep();
    Ok(index)
}

fn write_bundle_files(
    archive: &Archive,
    rows: &[ChainCols],
    verifier: &TrustedKeys,
    out: &Path,
    unproven: Unproven,
) -> Result<BundleIndex, CliError> {
    let mut by_chain: BTreeMap<&str, Vec<&ChainCols>> = BTreeMap::new();
    for r in rows {
        by_chain.entry(&r.chain_id).or_default().push(r);
    }
    let mut index = BundleIndex { format: BUNDLE_FORMAT.into(), records: Vec::new(), left_out: Vec::new() };
    // The keys that signed the checkpoints the proofs refer to (several after a rotation).
    let mut signers = Vec::new();
    for (chain, rows) in by_chain {
        let tree = archive.chain_tree(chain)?;
        let cps = archive.checkpoints(chain, Some(verifier))?;
        // Each record is proven against the newest checkpoint that covers it with no
        // accepted gap in between: the chain's newest, unless the record is before a gap.
        let mut checked: BTreeMap<u64, &String> = BTreeMap::new();
        for r in rows {
            let rec = AuditRecord::from_json(&r.payload)
                .map_err(|e| CliError::Corrupt(format!("chain {chain} seq {}: {e}", r.seq)))?;
            let Some(found) = tree.checkpoint_for(&cps, r.seq) else {
                let reason = match (archive.uncovered(chain, r.seq), cps.iter().map(|a| a.checkpoint.size).max()) {
                    (gap @ Uncovered::BeforeGap { .. }, _) => format!("it is {gap}"),
                    (Uncovered::Yet, None) => format!("chain {chain} has no signed checkpoint in the archive yet"),
                    (Uncovered::Yet, Some(size)) => format!(
                        "it is after the newest signed checkpoint (size {size}); compact again once its writer has signed a later one (a writer that is gone does once its instance runs again)"
                    ),
                };
                if unproven == Unproven::Refuse {
                    return Err(CliError::Usage(format!(
                        "record {} (chain {chain} seq {}) cannot be proven: {reason}",
                        rec.record_id, r.seq
                    )));
                }
                index.left_out.push(LeftOut {
                    record_id: rec.record_id,
                    chain_id: chain.to_owned(),
                    seq: r.seq,
                    reason,
                });
                continue;
            };
            let cp = &found.checkpoint;
            if let std::collections::btree_map::Entry::Vacant(slot) = checked.entry(cp.size) {
                if tree.root(cp.size) != Some(cp.root) {
                    return Err(CliError::Corrupt(format!(
                        "chain {chain}: the archive's records do not match the signed checkpoint of size {}",
                        cp.size
                    )));
                }
                // Opened with the trusted keys, so it names the one that signed it.
                if let Some(key) = &found.signed_by {
                    signers.push(key.clone());
                }
                slot.insert(&found.note);
            }
            // A bundle that cannot verify is worse than none: refuse an altered record.
            if !r.payload_matches_hash()? {
                return Err(CliError::Corrupt(format!(
                    "record {} (chain {chain} seq {}): its bytes in the archive do not match its hash (the archive was altered; see kiroku verify --archive)",
                    rec.record_id, r.seq
                )));
            }
            let proof = TlogProof {
                extra: None,
                index: r.seq,
                hashes: tree.proof(r.seq, cp.size).map_err(|e| CliError::Corrupt(e.to_string()))?,
                checkpoint: found.note.clone(),
            };
            let (rec_path, proof_path) =
                (format!("records/{}.json", rec.record_id), format!("proofs/{}.tlog-proof", rec.record_id));
            write(&out.join(&rec_path), &r.payload)?;
            write(&out.join(&proof_path), proof.to_text().as_bytes())?;
            index.records.push(BundleEntry {
                record_id: rec.record_id,
                chain_id: chain.to_owned(),
                seq: r.seq,
                prev_hash: to_hex(&r.prev),
                hash: to_hex(&r.hash),
                record: rec_path,
                proof: proof_path,
            });
        }
        // The newest checkpoint the chain's proofs refer to; each proof holds its own.
        if let Some(note) = checked.values().next_back() {
            write(&out.join("checkpoints").join(format!("{chain}.note")), note.as_bytes())?;
        }
    }
    if index.records.is_empty()
        && let Some(first) = index.left_out.first()
    {
        return Err(CliError::Usage(format!(
            "none of the {} selected record(s) can be proven, so no bundle was written; record {} (chain {} seq {}): {}",
            index.left_out.len(),
            first.record_id,
            first.chain_id,
            first.seq,
            first.reason
        )));
    }
    // No record to prove (an empty selection): nothing narrows the keys down.
    let signers = verifier.subset(|k| signers.contains(k)).unwrap_or_else(|| verifier.clone());
    write(&out.join("signer.vkey"), signers.to_key_text().as_bytes())?;
    write(&out.join("README.txt"), README.as_bytes())?;
    let json = serde_json::to_vec_pretty(&index).map_err(|e| CliError::Io(e.to_string()))?;
    write(&out.join("index.json"), &json)?;
    Ok(index)
}

/// Verify a bundle against the keys in its `signer.vkey`. With `trusted`, each of those
/// keys must also be one of `trusted`.
pub fn verify_bundle(dir: &Path, trusted: Option<&TrustedKeys>) -> Result<VerifyReport, CliError> {
    let read = |rel: &str| fs::read(dir.join(rel)).map_err(|e| CliError::io(&dir.join(rel), e));
    let vkey_text =
        String::from_utf8(read("signer.vkey")?).map_err(|_| CliError::Corrupt("signer.vkey is not UTF-8".into()))?;
    let vkey = TrustedKeys::from_key_text(&vkey_text).map_err(|e| CliError::Corrupt(format!("signer.vkey: {e}")))?;
    let mut rep = VerifyReport { signatures_checked: true, ..Default::default() };
    if let Some(t) = trusted {
        for k in vkey.keys().iter().filter(|k| !t.contains(k)) {
            rep.problems.push(format!("signer.vkey holds {}, which is not a trusted key ({t})", k.to_key_text()));
        }
    }
    let index: BundleIndex =
        serde_json::from_slice(&read("index.json")?).map_err(|e| CliError::Corrupt(format!("index.json: {e}")))?;
    if index.format != BUNDLE_FORMAT {
        rep.problems.push(format!("index.json: format {:?} is not {BUNDLE_FORMAT:?}", index.format));
    }
    let mut chains = std::collections::BTreeSet::new();
    for e in &index.records {
        rep.units += 1;
        let fail = |what: String| format!("record {} (chain {} seq {}): {what}", e.record_id, e.chain_id, e.seq);
        let payload = match read(&e.record) {
            Ok(p) => p,
            Err(err) => {
                rep.problems.push(fail(err.to_string()));
                continue;
            }
        };
        let (Ok(chain), Ok(prev), Ok(hash)) =
            (chain_id(&e.chain_id), hash_from_hex(&e.prev_hash), hash_from_hex(&e.hash))
        else {
            rep.problems.push(fail("malformed index entry".into()));
            continue;
        };
        chains.insert(chain);
        match AuditRecord::from_json(&payload) {
            Ok(r) if r.record_id == e.record_id && r.seq == e.seq && r.chain_id == chain => {}
            Ok(_) => rep.problems.push(fail("the record's own id, chain or seq differ from the index".into())),
            Err(err) => rep.problems.push(fail(format!("not a valid record: {err}"))),
        }
        if record_hash(&chain, e.seq, &prev, &payload) != hash {
            rep.problems.push(fail("hash does not match the record bytes (record edited)".into()));
            continue;
        }
        let proof = match read(&e.proof)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .and_then(|t| TlogProof::parse(&t).map_err(|err| CliError::Corrupt(err.to_string())))
        {
            Ok(p) => p,
            Err(err) => {
                rep.problems.push(fail(format!("proof: {err}")));
                continue;
            }
        };
        if proof.index != e.seq {
            rep.problems.push(fail(format!("proof is for index {}, not seq {}", proof.index, e.seq)));
            continue;
        }
        match proof.verify(&hash, &vkey) {
            Ok(cp) if cp.chain_id() == Some(chain) => {
                rep.records += 1;
                rep.checkpoints += 1;
            }
            Ok(cp) => rep.problems.push(fail(format!("proof's checkpoint is for origin {:?}", cp.origin))),
            Err(err) => rep.problems.push(fail(format!("proof does not verify: {err}"))),
        }
    }
    for l in &index.left_out {
        rep.notes.push(format!(
            "record {} (chain {} seq {}) was selected and is not in the bundle: {}",
            l.record_id, l.chain_id, l.seq, l.reason
        ));
    }
    rep.chains = chains.len() as u64;
    Ok(rep)
}
