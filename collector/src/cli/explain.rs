//! `kiroku explain`: one record, in full, with its inclusion proof status.

use std::path::PathBuf;
use std::process::ExitCode;

use kiroku_schemas::AuditRecord;
use kiroku_schemas::merkle;

use crate::archive::{Archive, ChainCols, Filter};
use crate::error::CliError;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The record id (a UUID in either case).
    #[arg(value_parser = super::record_id)]
    record_id: String,
    /// The archive directory.
    #[arg(long, env = "KIROKU_ARCHIVE")]
    archive: Option<PathBuf>,
    /// The log's public key, to check the inclusion proof's checkpoint signature: a file
    /// of one key per line (`signer.vkey`; old and new keys after a rotation).
    #[arg(long, env = "KIROKU_PUBKEY")]
    pubkey: Option<PathBuf>,
    /// Print JSON: the record, its chain position and the proof status.
    #[arg(long)]
    json: bool,
}

/// Whether the record is provably in a signed checkpoint: its bytes hash to its row's
/// hash, and that hash is in the tree whose root a checkpoint signed. A status that
/// starts with `FAILS` is an integrity problem.
pub(crate) fn proof_status(
    archive: &Archive,
    c: &ChainCols,
    key: Option<&kiroku_schemas::checkpoint::TrustedKeys>,
) -> Result<String, CliError> {
    if !c.payload_matches_hash()? {
        return Ok("FAILS: the record's bytes do not match its hash (the archive was altered)".into());
    }
    if !archive.manifest.chains.contains_key(&c.chain_id) {
        return Ok("chain not in the manifest".into());
    }
    let cps = archive.checkpoints(&c.chain_id, key)?;
    let not_covered = || Ok(archive.uncovered(&c.chain_id, c.seq).to_string());
    // Before reading the chain's links from every file of it.
    if !cps.iter().any(|a| a.checkpoint.size > c.seq) {
        return not_covered();
    }
    let tree = archive.chain_tree(&c.chain_id)?;
    let Some(found) = tree.checkpoint_for(&cps, c.seq) else {
        return not_covered();
    };
    let cp = &found.checkpoint;
    let proof = tree.proof(c.seq, cp.size).map_err(|e| CliError::Corrupt(e.to_string()))?;
    let ok = merkle::verify_inclusion(&merkle::leaf_hash(&c.hash), c.seq, cp.size, &proof, &cp.root).is_ok();
    // Which key signed it: after a rotation the trusted keys are several.
    let signed = match &found.signed_by {
        Some(by) => format!("signature by {by} verified"),
        None => "signature NOT checked (no --pubkey)".into(),
    };
    Ok(if ok {
        format!(
            "included in checkpoint of size {} ({} hashes, {signed}{})",
            cp.size,
            proof.len(),
            cp.time().map(|t| format!(", signed at {t}")).unwrap_or_default()
        )
    } else {
        format!("FAILS against checkpoint of size {}: the archive does not match its signed state", cp.size)
    })
}

pub(super) fn run(a: Args) -> Result<ExitCode, CliError> {
    let archive = Archive::open(&super::required(a.archive, "--archive", "KIROKU_ARCHIVE")?)?;
    let key = a.pubkey.as_deref().map(super::load_pubkey).transpose()?;
    let rows = archive.find(&Filter { record_id: Some(a.record_id.clone()), ..Filter::default() })?;
    let Some(c) = rows.first() else {
        return Err(CliError::Usage(format!("no record {} in the archive", a.record_id)));
    };
    let mut status = proof_status(&archive, c, key.as_ref())?;
    let at = format!("record {} (chain {} seq {})", a.record_id, c.chain_id, c.seq);
    let r = AuditRecord::from_json(&c.payload).map_err(|e| {
        CliError::Corrupt(if status.starts_with("FAILS") { format!("{at}: {status}") } else { format!("{at}: {e}") })
    })?;
    if r.seq != c.seq || r.chain_id.to_string() != c.chain_id {
        status = format!("FAILS: the record says chain {} seq {}, its row says otherwise", r.chain_id, r.seq);
    }
    if a.json {
        let record: serde_json::Value =
            serde_json::from_slice(&c.payload).map_err(|e| CliError::Corrupt(e.to_string()))?;
        out!(
            "{}",
            serde_json::json!({"record": record, "chain_id": c.chain_id, "seq": c.seq, "hash": kiroku_schemas::digest::to_hex(&c.hash), "inclusion_proof": status})
        )?;
    } else {
        out!("{}", super::output::explain(c, &r, &status).trim_end_matches('\n'))?;
    }
    Ok(if status.starts_with("FAILS") { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
