//! `kiroku keygen`: a checkpoint signing key (0600) and its public key.

use std::path::PathBuf;
use std::process::ExitCode;

use kiroku_schemas::checkpoint::NoteSigner;

use crate::error::CliError;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write `signer.key` (mode 0600) and `signer.vkey` into.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Key name (appears in checkpoint signatures).
    #[arg(long, default_value = "kiroku")]
    name: String,
}

pub(super) fn run(a: Args) -> Result<ExitCode, CliError> {
    let (key, vkey) = generate(&a.out, &a.name)?;
    out!("signing key: {} (keep it away from the logs; mode 0600)", key.display())?;
    out!("public key:  {} (give it to verifiers)", vkey.display())?;
    out!("             (when this key replaces another, verifiers keep both: a --pubkey file holds one key per line)")?;
    Ok(ExitCode::SUCCESS)
}

/// Write a new key pair into `dir`; refuses to overwrite an existing key.
pub(crate) fn generate(dir: &std::path::Path, name: &str) -> Result<(PathBuf, PathBuf), CliError> {
    std::fs::create_dir_all(dir).map_err(|e| CliError::io(dir, e))?;
    let signer = NoteSigner::generate(name).map_err(|e| CliError::Usage(e.to_string()))?;
    let key = dir.join("signer.key");
    let vkey = dir.join("signer.vkey");
    signer.save(&key).map_err(|e| CliError::Io(e.to_string()))?;
    std::fs::write(&vkey, format!("{}\n", signer.verifier().to_key_text())).map_err(|e| CliError::io(&vkey, e))?;
    Ok((key, vkey))
}
