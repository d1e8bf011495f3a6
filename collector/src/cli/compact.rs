//! `kiroku compact`: verify and compact a spool into the archive.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::archive_store::{ArchiveStore, LocalArchive, ObjectArchive};
use crate::compact::{CompactOptions, CompactReport, compact};
use crate::error::CliError;
use crate::object_spool::ObjectSpool;
use crate::spool::{LocalSpool, SpoolStore};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The journal's spool: a directory, or the object store URL writers ship to
    /// (`s3://bucket/prefix`, `gs://`, `az://`, `file://`).
    #[arg(long, env = "KIROKU_SPOOL")]
    spool: Option<String>,
    /// The Parquet archive: a directory, or an object store URL (several compactors
    /// may share one; see --lease-ttl).
    #[arg(long, env = "KIROKU_ARCHIVE")]
    archive: Option<String>,
    /// How long a compactor's claim on a chain of an object store archive lasts
    /// without renewal (a crashed compactor's chains are taken over after it), seconds.
    #[arg(long, default_value_t = 60)]
    lease_ttl: u64,
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
    let store: Box<dyn SpoolStore> = match super::Place::parse(&spool) {
        super::Place::Dir(d) => Box::new(LocalSpool::new(d)),
        super::Place::Url(u) => Box::new(ObjectSpool::open(&u)?),
    };
    let archive: Box<dyn ArchiveStore> = match super::Place::parse(&archive) {
        super::Place::Dir(d) => Box::new(LocalArchive::open(&d)?),
        super::Place::Url(u) if u.starts_with("file://") => Box::new(LocalArchive::open(Path::new(&u[7..]))?),
        super::Place::Url(u) => Box::new(ObjectArchive::open(&u, Duration::from_secs(a.lease_ttl.max(1)))?),
    };
    loop {
        let pb = super::progress(None, "compacting");
        let report = compact(store.as_ref(), archive.as_ref(), &opts, &mut |n| pb.set_position(n))?;
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
    for e in &r.elsewhere {
        println!("left to another compactor: {e}");
    }
}
