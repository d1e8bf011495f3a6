//! `kiroku report`: the audit as one self-contained HTML page, or JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::archive::Archive;
use crate::error::CliError;
use crate::report::{ReportOptions, html, summarize};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The archive directory.
    #[arg(long, env = "KIROKU_ARCHIVE")]
    archive: Option<PathBuf>,
    #[command(flatten)]
    sel: super::Selection,
    /// The log's public key(s), one per line (checkpoint signatures are checked when
    /// given).
    #[arg(long, env = "KIROKU_PUBKEY")]
    pubkey: Option<PathBuf>,
    /// Error rate above which a period counts as an outage.
    #[arg(long, default_value_t = 0.5)]
    outage_error_rate: f64,
    /// Where to write the HTML page (whole or not at all; a new page is owner-only,
    /// 0600, as the evidence bundle is; a page it replaces keeps its permissions).
    #[arg(long, default_value = "report.html")]
    out: PathBuf,
    /// Print the figures as JSON instead (for CI gates and dashboards).
    #[arg(long)]
    json: bool,
}

/// Write `bytes` to `path` whole or not at all: a temporary file beside it, synced,
/// then renamed over it (keeping the replaced file's permissions; a new file is
/// owner-only). A failed write (a full disk) leaves an earlier file at `path` as it
/// was, and no partial file.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().map_or_else(|| "report".into(), |n| n.to_string_lossy().into_owned());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}.partial-"))
        .tempfile_in(dir)
        .map_err(|e| CliError::io(dir, e))?;
    if let Ok(m) = std::fs::metadata(path) {
        std::fs::set_permissions(tmp.path(), m.permissions()).map_err(|e| CliError::io(tmp.path(), e))?;
    }
    tmp.write_all(bytes).and_then(|()| tmp.as_file().sync_all()).map_err(|e| CliError::io(path, e))?;
    tmp.persist(path).map_err(|e| CliError::io(path, e.error))?;
    Ok(())
}

pub(super) fn run(a: Args) -> Result<ExitCode, CliError> {
    let root = super::required(a.archive, "--archive", "KIROKU_ARCHIVE")?;
    let archive = Archive::open(&root)?;
    let verifier = a.pubkey.as_deref().map(super::load_pubkey).transpose()?;
    let sel = a.sel.checked()?;
    let opts = ReportOptions {
        from: sel.from,
        to: sel.to,
        model: sel.model,
        outage_error_rate: a.outage_error_rate,
        verifier,
    };
    let summary = summarize(&archive, &opts)?;
    if a.json {
        out!("{}", serde_json::to_string_pretty(&summary).map_err(|e| CliError::Io(e.to_string()))?)?;
    } else {
        write_whole(&a.out, html(&summary, &root.display().to_string()).as_bytes())?;
        out!("wrote {} ({} records)", a.out.display(), summary.records)?;
    }
    // The page shows them; the exit status says them too, as `kiroku verify` does (a
    // CI gate on `--json` should not have to parse the integrity section to fail).
    let failed: Vec<String> = summary
        .integrity
        .iter()
        .filter(|c| c.gaps > 0 || c.checkpoints.starts_with("FAILED"))
        .map(|c| format!("chain {}: {} missing seq(s), checkpoints {}", c.chain_id, c.gaps, c.checkpoints))
        .collect();
    if failed.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    for f in &failed {
        say!("kiroku: integrity problem: {f}");
    }
    say!("kiroku: run `kiroku verify --archive` for every problem and where it is");
    Ok(ExitCode::from(1))
}
