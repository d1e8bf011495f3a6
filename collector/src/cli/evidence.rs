//! `kiroku evidence`: an incident evidence bundle.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::archive::{Archive, Filter};
use crate::error::CliError;
use crate::evidence::Unproven;

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
    /// The log's public key(s), one per line (`signer.vkey`; old and new keys after a
    /// rotation); the bundle carries the ones that signed its checkpoints.
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
    let mut unproven = Unproven::Refuse;
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
        if rows.is_empty() {
            return Err(CliError::Usage(
                "no record in the archive matches --from/--to (and --model); no bundle was written".into(),
            ));
        }
        unproven = Unproven::LeaveOut;
    } else {
        return Err(CliError::Usage("choose records with --record-id ... or --from/--to [--model]".into()));
    }
    let index = crate::evidence::write_bundle(&archive, &rows, &key, &a.out, unproven)?;
    out!("wrote {} record(s) with inclusion proofs to {}", index.records.len(), a.out.display())?;
    out!(
        "verify with: kiroku verify --bundle {} --pubkey <trusted key>   (or without kiroku: see README.txt inside)",
        a.out.display()
    )?;
    if index.left_out.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for l in index.left_out.iter().take(LEFT_OUT_SHOWN) {
        out!("left out: record {} (chain {} seq {}): {}", l.record_id, l.chain_id, l.seq, l.reason)?;
    }
    if index.left_out.len() > LEFT_OUT_SHOWN {
        out!("left out: {} more", index.left_out.len() - LEFT_OUT_SHOWN)?;
    }
    Err(CliError::Incomplete(format!(
        "{} of the {} selected record(s) are not in the bundle: no signed checkpoint proves them (all listed in {} under left_out)",
        index.left_out.len(),
        rows.len(),
        a.out.join("index.json").display()
    )))
}

/// Records left out that the command names one by one; `index.json` lists them all.
const LEFT_OUT_SHOWN: usize = 20;
