//! `kiroku compact`: verify and compact a spool into the archive.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use kiroku::ship::LockMode;
use kiroku_schemas::ChainId;

use crate::archive_store::{ArchiveStore, LocalArchive, ObjectArchive, ObjectLock};
use crate::compact::{CompactOptions, CompactReport, compact};
use crate::error::CliError;
use crate::object_spool::ObjectSpool;
use crate::retention::Retention;
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
    /// Public key every checkpoint must be signed with (`signer.vkey`): a file of one
    /// key per line, any of which may have signed (old and new keys after a rotation).
    #[arg(long, env = "KIROKU_PUBKEY")]
    pubkey: Option<PathBuf>,
    /// Keep running, compacting what arrives.
    #[arg(long)]
    watch: bool,
    /// Seconds between passes with --watch.
    #[arg(long, default_value_t = 10)]
    interval: u64,
    /// After each pass, remove archive files and compacted segments whose records are
    /// all older than this (`180d`, `1y`, units s/min/h/d/w/y). Default: keep
    /// everything. Regulations ask for at least six months (EU AI Act Art. 19 and 26),
    /// often more; see the README.
    #[arg(long, env = "KIROKU_RETAIN", value_parser = super::parse_duration)]
    retain: Option<Duration>,
    /// With --retain: only print what retention would remove, and remove nothing
    /// (compaction itself still runs).
    #[arg(long, requires = "retain")]
    retain_dry_run: bool,
    /// Write the archive's Parquet files with S3 Object Lock retention for the --retain
    /// period (an s3:// archive in a bucket created with Object Lock enabled).
    #[arg(long, value_enum, requires = "retain")]
    object_lock: Option<LockArg>,
    /// Accept that chain CHAIN has no records from seq SEQ (where the archive holds it
    /// up to) to its next segment, because the segment that held them failed
    /// verification and no good copy exists: the rest of the chain is archived and the
    /// missing seqs are recorded in the manifest as a gap. Repeatable.
    #[arg(long, value_name = "CHAIN:SEQ", value_parser = parse_gap)]
    accept_gap: Vec<(ChainId, u64)>,
}

/// `CHAIN:SEQ` of `--accept-gap`.
fn parse_gap(s: &str) -> Result<(ChainId, u64), String> {
    let (chain, seq) = s.rsplit_once(':').ok_or_else(|| format!("{s:?} is not CHAIN:SEQ"))?;
    let chain = chain.parse::<ChainId>().map_err(|e| format!("{chain:?} is not a chain id: {e}"))?;
    let seq = seq.parse::<u64>().map_err(|_| format!("{seq:?} is not a seq"))?;
    Ok((chain, seq))
}

/// S3 Object Lock modes.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LockArg {
    /// Deletable before the date only with the s3:BypassGovernanceRetention permission.
    Governance,
    /// Deletable before the date by nobody.
    Compliance,
}

/// Six months, the shortest period the EU AI Act allows for the logs of high-risk systems.
const SIX_MONTHS: Duration = Duration::from_secs(183 * 86_400);

pub(super) fn run(a: Args) -> Result<ExitCode, CliError> {
    let spool = super::required(a.spool, "--spool", "KIROKU_SPOOL")?;
    let archive = super::required(a.archive, "--archive", "KIROKU_ARCHIVE")?;
    let pubkey = super::load_pubkey(&super::required(a.pubkey, "--pubkey", "KIROKU_PUBKEY")?)?;
    let mut opts = CompactOptions::new(pubkey);
    opts.retain = a.retain.map(|period| Retention { period, dry_run: a.retain_dry_run });
    opts.accept_gaps = a.accept_gap;
    if let Some(r) = a.retain.filter(|r| *r < SIX_MONTHS) {
        say!(
            "kiroku: warning: --retain {} days is shorter than six months, the minimum the EU AI Act sets for the logs of high-risk AI systems (Art. 19, 26)",
            r.as_secs() / 86_400
        );
    }
    let lock = a.object_lock.zip(a.retain).map(|(mode, period)| ObjectLock {
        mode: match mode {
            LockArg::Governance => LockMode::Governance,
            LockArg::Compliance => LockMode::Compliance,
        },
        period,
    });
    let store: Box<dyn SpoolStore> = match super::Place::parse(&spool) {
        super::Place::Dir(d) => Box::new(LocalSpool::new(d)),
        super::Place::Url(u) => Box::new(ObjectSpool::open(&u)?),
    };
    let place = super::Place::parse(&archive);
    if lock.is_some() && !matches!(&place, super::Place::Url(u) if u.starts_with("s3://") || u.starts_with("s3a://")) {
        return Err(CliError::Usage(format!(
            "--object-lock needs an s3:// archive, not {archive} (on other stores, set a retention policy on the bucket or container)"
        )));
    }
    let archive: Box<dyn ArchiveStore> = match place {
        super::Place::Dir(d) => Box::new(LocalArchive::open(&d)?),
        super::Place::Url(u) if u.starts_with("file://") => Box::new(LocalArchive::open(Path::new(&u[7..]))?),
        super::Place::Url(u) => {
            let a = ObjectArchive::open(&u, Duration::from_secs(a.lease_ttl.max(1)))?;
            Box::new(match lock {
                Some(l) => a.with_lock(l),
                None => a,
            })
        }
    };
    loop {
        let pb = super::progress(None, "compacting");
        let report = compact(store.as_ref(), archive.as_ref(), &opts, &mut |n| pb.set_position(n))?;
        pb.finish_and_clear();
        let printed = print_report(&report);
        if !a.watch {
            printed?;
            return Ok(if report.has_problems() { ExitCode::from(1) } else { ExitCode::SUCCESS });
        }
        if let Err(e) = printed {
            // A watching compactor goes on: what it did is in the archive and the spool.
            say!("kiroku: {e}");
        }
        std::thread::sleep(Duration::from_secs(a.interval.max(1)));
    }
}

/// What a pass did, on standard output.
pub(crate) fn print_report(r: &CompactReport) -> Result<(), CliError> {
    out!(
        "compacted {} segment(s), {} record(s), {} file(s){}",
        r.segments,
        r.records,
        r.files.len(),
        if r.orphans > 0 { format!(", {} from writers that are gone", r.orphans) } else { String::new() }
    )?;
    for t in &r.torn_tails {
        out!("torn tail: {t}")?;
    }
    for g in &r.gaps {
        out!("gap accepted: {g}")?;
    }
    for u in &r.unstated {
        out!("losses: {u}")?;
    }
    for u in &r.unreadable_lost {
        out!("UNREADABLE LOST FILE {u}")?;
    }
    for (seg, why) in &r.quarantined {
        out!("QUARANTINED {seg}: {why}")?;
    }
    for (seg, why) in &r.unverifiable {
        out!("NOT VERIFIABLE WITH THE CONFIGURED KEY, left in place {seg}: {why}; check --pubkey")?;
    }
    for b in &r.blocked {
        out!("waiting: {b}")?;
    }
    for e in &r.elsewhere {
        out!("left to another compactor: {e}")?;
    }
    for line in &r.retired {
        out!("retention: {line}")?;
    }
    if r.removed_files > 0 || r.removed_segments > 0 {
        out!("retention: deleted {} archive file(s), {} compacted segment(s)", r.removed_files, r.removed_segments)?;
    }
    for k in &r.retention_kept {
        out!("retention: kept for now: {k}")?;
    }
    for why in &r.retention_refused {
        out!("RETENTION REFUSED {why}")?;
    }
    Ok(())
}
