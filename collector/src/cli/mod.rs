//! The `kiroku` command: one module per verb.
//!
//! Exit codes: 0 all good; 1 tampering or corruption found (segments quarantined, or
//! left in place because the configured key did not sign them; a chain with missing
//! seqs or failed checkpoints in a report; a file the manifest lists gone); 2 usage,
//! configuration or I/O error; 3 `kiroku proxy` stopped cleanly but lost audit records
//! on the way. A command whose output pipe closes ends by SIGPIPE; one whose output cannot
//! be written (a full disk) ends with 2 and says so.

/// `eprintln!` that cannot panic: when stderr cannot be written (a log file on the disk
/// that just filled up, a closed pipe), the message is dropped instead of the process
/// panicking and its exit status turning into 101.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

/// `println!` that cannot panic: `out!(...)?` returns the error when standard output
/// cannot be written (redirected to a full disk), so the command ends with exit 2 and a
/// message naming standard output instead of a panic (exit 101). A closed pipe ends the
/// listing commands by SIGPIPE before this sees it.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*).map_err(crate::error::CliError::stdout)
    }};
}

mod compact;
mod demo;
mod evidence;
mod explain;
mod find;
mod keygen;
mod output;
mod proxy;
mod report;
mod ship;
mod verify;

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kiroku_schemas::Timestamp;
use kiroku_schemas::checkpoint::TrustedKeys;

use crate::error::CliError;

/// kiroku: tamper-evident audit logs for AI inference.
///
/// Settings come from flags, then environment variables (KIROKU_SPOOL, KIROKU_ARCHIVE,
/// KIROKU_PUBKEY, KIROKU_KEY, ...), then an optional TOML file (`--config FILE` or
/// KIROKU_CONFIG) whose keys are the flags' names: `spool = "/var/lib/kiroku/spool"`.
#[derive(Debug, Parser)]
#[command(name = "kiroku", version, about, long_about = None)]
pub struct Cli {
    /// TOML file with defaults for any flag (keys are flag names, e.g. `archive`).
    #[arg(long, global = true, env = "KIROKU_CONFIG")]
    pub config: Option<PathBuf>,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The `--config` file, found before clap parses (its values become defaults).
fn config_path(args: &[std::ffi::OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("KIROKU_CONFIG").map(PathBuf::from)
}

/// The command line definition with the config file's values as defaults.
fn command_with_config(path: Option<&Path>) -> Result<clap::Command, CliError> {
    use clap::CommandFactory as _;
    let mut cmd = Cli::command();
    let Some(path) = path else { return Ok(cmd) };
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    let table: toml::Table = text.parse().map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))?;
    for (key, value) in table {
        let id = key.replace('-', "_");
        let v = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(CliError::Usage(format!(
                    "{}: {key} must be a string, number or boolean, not {}",
                    path.display(),
                    other.type_str()
                )));
            }
        };
        let v: &'static str = Box::leak(v.into_boxed_str());
        let mut known = false;
        let names: Vec<String> = cmd.get_subcommands().map(|s| s.get_name().to_owned()).collect();
        for name in names {
            let has = cmd
                .find_subcommand(&name)
                .is_some_and(|s| s.get_arguments().any(|a| a.get_id() == id.as_str() && a.get_long().is_some()));
            if has {
                known = true;
                let id = id.clone();
                cmd = cmd.mut_subcommand(name, move |sc| sc.mut_arg(id, |a| a.default_value(v)));
            }
        }
        if !known {
            return Err(CliError::Usage(format!(
                "{}: unknown setting {key:?} (settings are the flags' names, e.g. spool, archive, pubkey)",
                path.display()
            )));
        }
    }
    Ok(cmd)
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
    Proxy(Box<proxy::Args>),
    /// The explainability and business-continuity audit as an HTML page (or JSON).
    Report(report::Args),
    /// Upload sealed segments to an object store (idempotent, verified, never overwriting).
    Ship(ship::Args),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    init_logging();
    // One TLS crypto library (ring) for every HTTPS client of the command.
    kiroku::ship::install_crypto_provider();
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = match command_with_config(config_path(&args).as_deref()).map(|c| c.get_matches_from(&args)) {
        Ok(m) => match <Cli as clap::FromArgMatches>::from_arg_matches(&m) {
            Ok(c) => c,
            Err(e) => e.exit(),
        },
        Err(e) => {
            say!("kiroku: error: {e}");
            return ExitCode::from(e.exit_code());
        }
    };
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Compact(a) => {
            crate::allocator::keep_freed_memory();
            compact::run(a)
        }
        Command::Verify(a) => {
            crate::allocator::keep_freed_memory();
            stop_quietly_when_stdout_closes();
            verify::run(a)
        }
        Command::Find(a) => {
            stop_quietly_when_stdout_closes();
            find::run(a)
        }
        Command::Explain(a) => {
            stop_quietly_when_stdout_closes();
            explain::run(a)
        }
        Command::Evidence(a) => evidence::run(a),
        Command::Keygen(a) => keygen::run(a),
        Command::Proxy(a) => proxy::run(*a),
        Command::Report(a) => {
            stop_quietly_when_stdout_closes();
            report::run(a)
        }
        Command::Ship(a) => ship::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            say!("kiroku: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// For the commands whose output is read through a pipe (`kiroku find ... | head`):
/// when the reader goes away, end as `cat` or `grep` would, by SIGPIPE, instead of
/// panicking on the failed write (Rust ignores SIGPIPE by default). Sockets are not
/// affected: the standard library sends with `MSG_NOSIGNAL`.
fn stop_quietly_when_stdout_closes() {
    #[cfg(unix)]
    #[allow(unsafe_code)]
    // SAFETY: restoring the default disposition of one signal, before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("KIROKU_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        // A log line that cannot be written is dropped. By default the subscriber
        // reports the failure with `eprintln!`, which panics when stderr itself is the
        // problem (a log file on a full disk): inside a request, that drops the client's
        // connection, the opposite of what FailOpen promises.
        .log_internal_errors(false)
        .try_init();
}

/// Which records: by start time and model (shared by find, evidence and report).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct Selection {
    /// Records started at or after this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_time)]
    pub(crate) from: Option<Timestamp>,
    /// Records started before this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse_time)]
    pub(crate) to: Option<Timestamp>,
    /// Only this model (the one that served, else the one asked for).
    #[arg(long)]
    pub(crate) model: Option<String>,
}

impl Selection {
    /// The selection, refused when its time range is empty: an investigator asking for
    /// `--from D --to D` would otherwise read "0 records" as "nothing happened".
    pub(crate) fn checked(self) -> Result<Self, CliError> {
        if let (Some(from), Some(to)) = (self.from, self.to)
            && to <= from
        {
            return Err(CliError::Usage(format!(
                "--to {to} is not after --from {from}, so no record can match (--to is exclusive: for the day D, use --from D --to the day after)"
            )));
        }
        Ok(self)
    }
}

/// Load a file of verifier keys (`<name>+<id>+<key>`, one per line, `#` comments): the
/// log's key, and its earlier keys once it was rotated.
pub(crate) fn load_pubkey(path: &Path) -> Result<TrustedKeys, CliError> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, e))?;
    TrustedKeys::from_key_text(&text).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

/// A record id as the journal writes it: the layer's ids are UUIDs in lower case, so
/// one pasted in upper case is read as the same id. Anything else is taken as it is.
pub(crate) fn record_id(s: &str) -> Result<String, String> {
    let s = s.trim();
    let uuid_shaped = s.len() == 36
        && s.bytes()
            .enumerate()
            .all(|(i, b)| if [8, 13, 18, 23].contains(&i) { b == b'-' } else { b.is_ascii_hexdigit() });
    Ok(if uuid_shaped { s.to_ascii_lowercase() } else { s.to_owned() })
}

/// A flag whose value is one of a record field's names (`--capture redacted`).
pub(crate) fn keyword<T: kiroku_schemas::record::Keyword>(s: &str) -> Result<T, String> {
    T::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = T::ALL.iter().map(|k| k.name()).collect();
        format!("{s:?} is not one of {}", names.join(", "))
    })
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
/// A spool or archive argument: a directory, or an object store URL. `file://` URLs
/// of archives are directories (the local archive is the one with atomic renames).
pub(crate) enum Place {
    Dir(PathBuf),
    Url(String),
}

impl Place {
    pub(crate) fn parse(s: &str) -> Self {
        match s.split_once("://") {
            Some((scheme, _)) if scheme.chars().all(|c| c.is_ascii_alphanumeric()) => Self::Url(s.to_owned()),
            _ => Self::Dir(PathBuf::from(s)),
        }
    }
}

/// A duration such as `180d`: a whole number and a unit, `s`, `min`, `h`, `d`, `w` or
/// `y` (365 days). `m` is refused as ambiguous (minutes or months?).
pub(crate) fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("{s:?}: expected a number and a unit, e.g. 180d"))?;
    let secs = match unit.trim() {
        "s" => 1,
        "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "y" => 365 * 86_400,
        "m" => return Err(format!("{s:?}: `m` is ambiguous; write minutes as `min`, months as days (`180d`)")),
        other => return Err(format!("{s:?}: unknown unit {other:?} (use s, min, h, d, w or y)")),
    };
    n.checked_mul(secs).map(std::time::Duration::from_secs).ok_or_else(|| format!("{s:?}: too long"))
}

pub(crate) fn required<T>(p: Option<T>, flag: &str, env: &str) -> Result<T, CliError> {
    p.ok_or_else(|| CliError::Usage(format!("{flag} is required (or set {env})")))
}
