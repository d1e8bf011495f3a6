//! Errors of the collector and the exit codes the `kiroku` command maps them to.

use std::path::Path;

/// What went wrong, by how the command should exit.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Bad arguments or configuration (exit 2).
    #[error("{0}")]
    Usage(String),
    /// A file operation failed (exit 2).
    #[error("{0}")]
    Io(String),
    /// Tampering or corruption was found (exit 1).
    #[error("{0}")]
    Corrupt(String),
    /// The command ran to its end, but audit records are missing from what it produced
    /// (exit 3): inferences `kiroku proxy` passed on that have no record (served under
    /// `FailOpen`, or answered upstream while the journal failed under `FailClosed`);
    /// selected records `kiroku evidence` left out of a bundle, as no signed checkpoint
    /// proves them.
    #[error("{0}")]
    Incomplete(String),
}

impl CliError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::Io(format!("{}: {e}", path.display()))
    }

    /// Standard output could not be written.
    pub fn stdout(e: std::io::Error) -> Self {
        Self::Io(format!("cannot write to standard output: {e}"))
    }

    /// The process exit code: 1 for integrity problems, 2 for usage and I/O errors, 3
    /// for records missing from the result.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Corrupt(_) => 1,
            Self::Usage(_) | Self::Io(_) => 2,
            Self::Incomplete(_) => 3,
        }
    }
}
