//! `kiroku find`: records by id, trace id, output text, model or time.

use std::path::PathBuf;
use std::process::ExitCode;

use kiroku_schemas::AuditRecord;

use crate::archive::{Archive, Filter};
use crate::error::CliError;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive directory.
    #[arg(long, env = "KIROKU_ARCHIVE")]
    archive: Option<PathBuf>,
    /// Record id.
    #[arg(long)]
    record_id: Option<String>,
    /// W3C trace id (32 hex digits).
    #[arg(long)]
    trace_id: Option<String>,
    /// A file holding an output text: which inference produced exactly this text?
    #[arg(long)]
    content: Option<PathBuf>,
    #[command(flatten)]
    sel: super::Selection,
    /// One JSON record per line.
    #[arg(long)]
    json: bool,
}

pub(super) fn run(a: Args) -> Result<ExitCode, CliError> {
    let archive = Archive::open(&super::required(a.archive, "--archive", "KIROKU_ARCHIVE")?)?;
    let output_digest = match &a.content {
        Some(p) => Some(kiroku_schemas::digest::blake3_hex(&std::fs::read(p).map_err(|e| CliError::io(p, e))?)),
        None => None,
    };
    let filter = Filter {
        record_id: a.record_id,
        trace_id: a.trace_id,
        output_digest,
        model: a.sel.model,
        from: a.sel.from,
        to: a.sel.to,
    };
    // Printed as found: a broad query (a model, a month) never has to fit in memory.
    let n = archive.find_each(&filter, |c| {
        let r = AuditRecord::from_json(&c.payload)
            .map_err(|e| CliError::Corrupt(format!("chain {} seq {}: {e}", c.chain_id, c.seq)))?;
        if a.json {
            println!("{}", String::from_utf8_lossy(&c.payload));
        } else {
            println!("{}", super::output::line(&c, &r));
        }
        Ok(())
    })?;
    if !a.json {
        eprintln!("{n} record(s)");
    }
    Ok(ExitCode::SUCCESS)
}
