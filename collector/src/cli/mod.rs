//! The `kiroku` command: one module per verb.
//!
//! Exit codes: 0 all good; 1 tampering or corruption found (or segments quarantined);
//! 2 usage, configuration or I/O error.

mod compact;
mod demo;
mod evidence;
mod explain;
mod find;
mod keygen;
mod output;
mod proxy;
mod verify;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kiroku_schemas::Timestamp;
use kiroku_schemas::checkpoint::NoteVerifier;

use crate::error::CliError;

/// kiroku: tamper-evident audit logs for AI inference.
#[derive(Debug, Parser)]
#[command(name = "kiroku", version, about, long_about = None)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline on embedded defaults: sample model behind the audit
    /// layer, traffic, compaction, verification, a summary.
    Demo(demo::Args),
    /// Verify sealed segments and compact them into the Parquet archive.
    Compact(compact::Args),
    /// Re-verify a spool, an archive or an evidence bundle.
    Verify(verify::Args),
    /// Find records by id, trace id, output text, model or time.
    Find(find::Args),
    /// Explain one record: provenance, parameters, sources, watermarks, safeguards,
    /// chain position and inclusion proof.
    Explain(explain::Args),
    /// Write an evidence bundle for an incident.
    Evidence(evidence::Args),
    /// Create a checkpoint signing key.
    Keygen(keygen::Args),
    /// An audited reverse proxy in front of any OpenAI- or Anthropic-compatible API.
    Proxy(proxy::Args),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Compact(a) => compact::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Find(a) => find::run(a),
        Command::Explain(a) => explain::run(a),
        Command::Evidence(a) => evidence::run(a),
        Command::Keygen(a) => keygen::run(a),
        Command::Proxy(a) => proxy::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kiroku: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KIROKU_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// Load a verifier key file (`<name>+<id>+<key>`).
pub(crate) fn load_pubkey(path: &Path) -> Result<NoteVerifier, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    NoteVerifier::from_key_text(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

pub(crate) fn parse_time(s: &str) -> Result<Timestamp, String> {
    if s.len() == 10 {
        return format!("{s}T00:00:00Z").parse().map_err(|e: kiroku_schemas::time::TimestampError| e.to_string());
    }
    s.parse().map_err(|e: kiroku_schemas::time::TimestampError| e.to_string())
}

/// A progress bar on a terminal, nothing otherwise.
pub(crate) fn progress(len: Option<u64>, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let pb = match len {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    pb.set_message(what.to_owned());
    pb
}

/// A required path argument, with a message that says which flag or variable sets it.
pub(crate) fn required(p: Option<PathBuf>, flag: &str, env: &str) -> Result<PathBuf, CliError> {
    p.ok_or_else(|| CliError::Usage(format!("{flag} is required (or set {env})")))
}
