//! `kiroku compact`: verify and compact a spool into the archive.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::compact::{CompactOptions, CompactReport, compact};
use crate::error::CliError;
use crate::spool::LocalSpool;

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The journal's spool directory.
    #[arg(long, env = "KIROKU_SPOOL")]
    spool: Option<PathBuf>,
    /// The Parquet archive directory.
    #[arg(long, env = "KIROKU_ARCHIVE")]
    archive: Option<PathBuf>,
    /// Public key every checkpoint must be signed with (`signer.vkey`).
    #[arg(long, env = "KIROKU_PUBKEY")]
    pubkey: Option<PathBuf>,
    /// Keep running, compacting what arrives.
    #[arg(long)]
    watch: bool,
    /// Seconds between passes with --watch.
    #[arg(long, default_value_t = 10)]
    interval: u64,
}

pub(super) fn run(a: Args) -> Result<ExitCode, CliError> {
    let spool = super::required(a.spool, "--spool", "KIROKU_SPOOL")?;
    let archive = super::required(a.archive, "--archive", "KIROKU_ARCHIVE")?;
    let pubkey = super::load_pubkey(&super::required(a.pubkey, "--pubkey", "KIROKU_PUBKEY")?)?;
    let opts = CompactOptions::new(pubkey);
    let store = LocalSpool::new(&spool);
    loop {
        let pb = super::progress(None, "compacting");
        let report = compact(&store, &archive, &opts, &mut |n| pb.set_position(n))?;
        pb.finish_and_clear();
        print_report(&report);
        if !a.watch {
            return Ok(if report.has_problems() { ExitCode::from(1) } else { ExitCode::SUCCESS });
        }
        std::thread::sleep(Duration::from_secs(a.interval.max(1)));
    }
}

pub(crate) fn print_report(r: &CompactReport) {
    println!(
        "compacted {} segment(s), {} record(s), {} file(s){}",
        r.segments,
        r.records,
        r.files.len(),
        if r.orphans > 0 { format!(", {} from writers that are gone", r.orphans) } else { String::new() }
    );
    for t in &r.torn_tails {
        println!("torn tail: {t}");
    }
    for (seg, why) in &r.quarantined {
        println!("QUARANTINED {seg}: {why}");
    }
    for b in &r.blocked {
        println!("waiting behind a quarantined segment: {b}");
    }
}
