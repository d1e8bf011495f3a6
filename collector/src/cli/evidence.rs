//! `kiroku evidence`: an incident evidence bundle.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::archive::{Archive, Filter};
use crate::error::CliError;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive directory.
    #[arg(long, env = "KIROKU_ARCHIVE")]
    archive: Option<PathBuf>,
    /// Records to include (repeat the flag; UUIDs in either case).
    #[arg(long = "record-id", value_parser = super::record_id)]
    record_ids: Vec<String>,
    /// Or: the records selected by time (and model).
    #[command(flatten)]
    sel: super::Selection,
    /// The log's public key (included in the bundle).
    #[arg(long, env = "KIROKU_PUBKEY")]
    pubkey: Option<PathBuf>,
    /// Where to write the bundle (a new directory).
    #[arg(long)]
    out: PathBuf,
}

pub(super) fn run(a: Args) -> Result<ExitCode, CliError> {
    let archive = Archive::open(&super::required(a.archive, "--archive", "KIROKU_ARCHIVE")?)?;
    let key = super::load_pubkey(&super::required(a.pubkey, "--pubkey", "KIROKU_PUBKEY")?)?;
    let sel = a.sel.checked()?;
    let mut rows = Vec::new();
    if !a.record_ids.is_empty() {
        for id in &a.record_ids {
            let found = archive.find(&Filter { record_id: Some(id.clone()), ..Filter::default() })?;
            if found.is_empty() {
                return Err(CliError::Usage(format!("no record {id} in the archive")));
            }
            rows.extend(found);
        }
    } else if sel.from.is_some() || sel.to.is_some() {
        rows = archive.find(&Filter { model: sel.model, from: sel.from, to: sel.to, ..Filter::default() })?;
    } else {
        return Err(CliError::Usage("choose records with --record-id ... or --from/--to [--model]".into()));
    }
    let n = crate::evidence::write_bundle(&archive, &rows, &key, &a.out)?;
    out!("wrote {n} record(s) with inclusion proofs to {}", a.out.display())?;
    out!(
        "verify with: kiroku verify --bundle {} --pubkey <trusted key>   (or without kiroku: see README.txt inside)",
        a.out.display()
    )?;
    Ok(ExitCode::SUCCESS)
}
