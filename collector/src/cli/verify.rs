//! `kiroku verify`: full re-verification of a spool, an archive or a bundle.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::error::CliError;
use crate::remote::Remote;
use crate::spool::LocalSpool;
use crate::verify::{VerifyReport, verify_archive, verify_spool};

/// Arguments.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").args(["spool", "archive", "bundle"])))]
pub struct Args {
    /// Verify a spool directory.
    #[arg(long)]
    spool: Option<PathBuf>,
    /// Verify an archive: a directory, or an object store URL (its manifest and files
    /// are downloaded to a temporary directory and verified there).
    #[arg(long)]
    archive: Option<String>,
    /// Verify an evidence bundle directory.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// The log's public key(s): a file of one key per line (`signer.vkey`; every key
    /// the log was signed with, old and new, after a rotation). Without it signatures
    /// cannot be checked (and the result says so). For a bundle: the keys it may carry.
    #[arg(long, env = "KIROKU_PUBKEY")]
    pubkey: Option<PathBuf>,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(a: Args) -> Result<ExitCode, CliError> {
    let key = a.pubkey.as_deref().map(super::load_pubkey).transpose()?;
    let (what, rep) = if let Some(s) = &a.spool {
        (format!("spool {}", s.display()), verify_spool(&LocalSpool::new(s), key.as_ref())?)
    } else if let Some(ar) = &a.archive {
        (format!("archive {ar}"), verify_archive_at(ar, key.as_ref())?)
    } else if let Some(b) = &a.bundle {
        (format!("bundle {}", b.display()), crate::evidence::verify_bundle(b, key.as_ref())?)
    } else {
        return Err(CliError::Usage("one of --spool, --archive, --bundle is required".into()));
    };
    print(&what, &rep, a.json)?;
    Ok(if rep.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Verify an archive directory or object store location.
fn verify_archive_at(
    archive: &str,
    key: Option<&kiroku_schemas::checkpoint::TrustedKeys>,
) -> Result<VerifyReport, CliError> {
    let url = match super::Place::parse(archive) {
        super::Place::Dir(d) => return verify_archive(&d, key),
        super::Place::Url(u) => u,
    };
    let remote = Remote::open(&url)?;
    let tmp = tempfile::tempdir().map_err(|e| CliError::Io(format!("temporary directory: {e}")))?;
    remote.mirror(&["_kiroku", "records"], tmp.path())?;
    let mut rep = verify_archive(tmp.path(), key)?;
    // Name objects by their URL, not the temporary copy.
    let local = tmp.path().display().to_string();
    for p in rep.problems.iter_mut().chain(rep.notes.iter_mut()) {
        *p = p.replace(&local, &url);
    }
    Ok(rep)
}

pub(crate) fn print(what: &str, r: &VerifyReport, json: bool) -> Result<(), CliError> {
    if json {
        let v = serde_json::json!({"target": what, "ok": r.ok(), "chains": r.chains, "units": r.units, "records": r.records,
            "checkpoints": r.checkpoints, "signatures_checked": r.signatures_checked, "problems": r.problems, "notes": r.notes});
        return out!("{v}");
    }
    for n in &r.notes {
        out!("note: {n}")?;
    }
    for p in &r.problems {
        out!("PROBLEM {p}")?;
    }
    let sig = if r.signatures_checked { "signatures checked" } else { "signatures NOT checked (no --pubkey)" };
    let verdict = if r.ok() { "OK".to_owned() } else { format!("FAILED: {} problem(s)", r.problems.len()) };
    out!(
        "{what}: {verdict}: {} chain(s), {} file(s)/segment(s), {} record(s), {} checkpoint(s), {sig}",
        r.chains,
        r.units,
        r.records,
        r.checkpoints
    )
}
