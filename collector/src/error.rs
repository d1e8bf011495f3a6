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
}

impl CliError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, e: impl std::fmt::Display) -> Self {
        Self::Io(format!("{}: {e}", path.display()))
    }

    /// The process exit code: 1 for integrity problems, 2 for usage and I/O errors.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Corrupt(_) => 1,
            Self::Usage(_) | Self::Io(_) => 2,
        }
    }
}
