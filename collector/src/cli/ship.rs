//! `kiroku ship`: upload a spool's sealed segments to an object store.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kiroku::ship::{ObjectLocation, ShipScope, Shipper, ShipperConfig};

use crate::error::CliError;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The journal's spool directory.
    #[arg(long, env = "KIROKU_SPOOL")]
    spool: Option<PathBuf>,
    /// Object store URL to ship to (`s3://bucket/prefix`, `gs://`, `az://`, `file://`).
    #[arg(long, env = "KIROKU_SHIP")]
    to: Option<String>,
    /// Keep running, shipping segments as they are sealed.
    #[arg(long)]
    watch: bool,
    /// Seconds between looks for sealed segments with --watch.
    #[arg(long, default_value_t = 1)]
    interval: u64,
}

pub(super) fn run(a: Args) -> Result<ExitCode, CliError> {
    let spool = super::required(a.spool, "--spool", "KIROKU_SPOOL")?;
    let to = super::required(a.to, "--to", "KIROKU_SHIP")?;
    let loc = ObjectLocation::open(&to).map_err(|e| CliError::Usage(e.to_string()))?;
    let config = ShipperConfig { interval: Duration::from_secs(a.interval.max(1)), ..ShipperConfig::default() };
    let shipper = Shipper::spawn(ShipScope::Spool(spool), loc, config).map_err(|e| CliError::Io(e.to_string()))?;
    // Everything sealed so far, with retries; conflicts and failures are reported here.
    let result = shipper.drain();
    let m = shipper.metrics();
    let conflicts = match result {
        Ok(c) => c,
        Err(e) if a.watch => {
            say!("kiroku ship: {e} (retrying in the background)");
            Vec::new()
        }
        Err(e) => {
            out!("shipped {} segment(s), {} byte(s); {} left in the spool", m.shipped, m.bytes, m.backlog)?;
            return Err(CliError::Io(e.to_string()));
        }
    };
    for c in &conflicts {
        out!("CONFLICT {c}")?;
    }
    if a.watch {
        // The shipper's own timer ships what is sealed from now on (with backoff on
        // failure); conflicts and the backlog go to the log. Runs until killed.
        loop {
            std::thread::park();
        }
    }
    out!(
        "shipped {} segment(s), {} byte(s) to {to}; {} conflict(s); {} left in the spool",
        m.shipped,
        m.bytes,
        m.conflicts,
        m.backlog
    )?;
    shipper.stop();
    Ok(if m.conflicts > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
