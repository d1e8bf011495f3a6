//! Retention (`kiroku compact --retain DURATION`): removing what is older than the
//! period, and only that.
//!
//! - **Archive files** go by partition date: a file of date `D` is old once all of `D`
//!   lies before `now - period`. Per chain only the oldest files go, and only a run of
//!   them that holds exactly the records `[cut_before, cut)` (files of one segment can
//!   interleave in seq around midnight; then the cut waits for the later day). Before
//!   anything is removed the files are read back, checked against their blake3 in the
//!   manifest, and their chain links walked, so the manifest can record the chain's
//!   state at the cut ([`Retired`]): the hash of the last removed record and the Merkle
//!   compact range of the removed records. `kiroku verify` starts the chain there, and
//!   inclusion proofs of the records that remain still verify against the signed
//!   checkpoints, which cover the removed records too (so an edited cut does not
//!   verify). The manifest is committed first (with the chain's lease, conditionally,
//!   like a compaction step); the files are deleted after. A file a crash (or an object
//!   lock that has not expired yet) left behind is deleted by a later pass.
//! - **Compacted segments** in `<spool>/compacted/` go when they were last written
//!   before `now - period`: their records are in the archive (segments only move there
//!   after the manifest commit) and all older than the period.
//!
//! Nothing is removed without `--retain`. The default is to keep everything.

use std::time::{Duration, SystemTime};

use kiroku_schemas::checkpoint::Checkpoint;
use kiroku_schemas::digest::to_hex;
use kiroku_schemas::{ChainId, Timestamp};

use crate::archive::{chain_id, in_seq_order, read_links};
use crate::archive_store::{ArchiveStore, ManifestState};
use crate::compact::CompactReport;
use crate::error::CliError;
use crate::manifest::{ChainEntry, FileEntry, Retired};
use crate::spool::SpoolStore;

/// What retention does after each compaction pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Remove what is older than this.
    pub period: Duration,
    /// Only report what would be removed; remove nothing.
    pub dry_run: bool,
}

/// The first partition date retention keeps (`YYYY-MM-DD`): every record of an
/// earlier date is older than `period` at `now`.
pub fn keep_from(now: Timestamp, period: Duration) -> String {
    let nanos = i64::try_from(period.as_nanos()).unwrap_or(i64::MAX);
    Timestamp::from_unix_nanos(now.unix_nanos().saturating_sub(nanos)).date_string()
}

/// The files retention may remove from a chain, and where the chain then begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    /// The files, oldest first.
    pub files: Vec<FileEntry>,
    /// The first seq the archive keeps.
    pub next_seq: u64,
}

impl Cut {
    /// The newest partition date among the files.
    fn through(&self) -> String {
        self.files.iter().map(|f| f.date.clone()).max().unwrap_or_default()
    }
}

/// What retention may remove from `entry`: the longest run of its oldest files (by seq)
/// dated before `keep_from` that holds exactly the records before one seq. `None` when
/// nothing can go.
pub fn plan(entry: &ChainEntry, keep_from: &str) -> Option<Cut> {
    let mut files: Vec<&FileEntry> = entry.files.iter().collect();
    files.sort_by_key(|f| (f.first_seq, f.last_seq));
    let old = files.iter().take_while(|f| f.date.as_str() < keep_from).count();
    for k in (1..=old).rev() {
        let next_seq = files[k..].iter().map(|f| f.first_seq).min().unwrap_or(entry.next_seq);
        if files[..k].iter().all(|f| f.last_seq < next_seq) {
            return Some(Cut { files: files[..k].iter().map(|f| (*f).clone()).collect(), next_seq });
        }
    }
    None
}

/// Remove what is older than the period from the archive and the spool (or, in a dry
/// run, only say what would go), recording it in `report`. Runs after a compaction
/// pass, with the chains' leases.
pub fn apply(
    spool: &dyn SpoolStore,
    archive: &dyn ArchiveStore,
    m: &mut ManifestState,
    r: Retention,
    report: &mut CompactReport,
) -> Result<(), CliError> {
    let now = Timestamp::now();
    let keep = keep_from(now, r.period);
    let before = SystemTime::now().checked_sub(r.period).unwrap_or(SystemTime::UNIX_EPOCH);
    if r.dry_run {
        for (key, entry) in &m.manifest.chains {
            if let Some(cut) = plan(entry, &keep) {
                report.retired.push(format!("would remove chain {key}: {}", describe(entry, &cut)));
            }
        }
        let leftovers = leftovers(archive, m)?.len();
        let segments = spool.compacted_before(before)?.len();
        report.retired.push(format!(
            "would delete {leftovers} leftover archive file(s) and {segments} compacted segment(s) (dry run: nothing removed)"
        ));
        return Ok(());
    }
    let chains: Vec<String> =
        m.manifest.chains.iter().filter(|(_, e)| plan(e, &keep).is_some()).map(|(c, _)| c.clone()).collect();
    for key in chains {
        let chain = chain_id(&key)?;
        let Some(lease) = archive.lease(chain)? else {
            report.elsewhere.push(format!("{chain}: retention left to the compactor that holds its lease"));
            continue;
        };
        let result = m.refresh(archive).and_then(|()| retire_chain(archive, m, chain, &keep, now, report));
        archive.release(lease);
        match result {
            // This chain's files do not match the manifest: keep them, report it, and go
            // on with the other chains.
            Err(CliError::Corrupt(why)) => {
                tracing::error!(target: "kiroku::compact", "retention refused: {why}");
                report.retention_refused.push(why);
            }
            other => other?,
        }
    }
    for rel in leftovers(archive, m)? {
        remove(archive, &rel, report);
    }
    for name in spool.compacted_before(before)? {
        spool.remove_compacted(&name)?;
        report.removed_segments += 1;
    }
    Ok(())
}

/// `seq a..b (n record(s), k file(s) through DATE)` for a cut of `entry`.
fn describe(entry: &ChainEntry, cut: &Cut) -> String {
    let first = entry.retired.as_ref().map_or(0, |r| r.next_seq);
    format!(
        "seq {first}..{} ({} record(s), {} file(s) through {})",
        cut.next_seq,
        cut.next_seq - first,
        cut.files.len(),
        cut.through()
    )
}

/// Retire the oldest files of one chain (the caller holds its lease).
fn retire_chain(
    archive: &dyn ArchiveStore,
    m: &mut ManifestState,
    chain: ChainId,
    keep: &str,
    now: Timestamp,
    report: &mut CompactReport,
) -> Result<(), CliError> {
    let Some(base) = m.manifest.chains.get(&chain.to_string()).cloned() else { return Ok(()) };
    let Some(cut) = plan(&base, keep) else { return Ok(()) };
    let refuse = |what: String| {
        CliError::Corrupt(format!(
            "chain {chain}: {what}; retention removes nothing of this chain (run `kiroku verify`)"
        ))
    };
    let mut state = base.start(chain)?;
    // The removed records must continue the chain from where the archive begins: walked
    // in seq order as their files are read, one file in memory at a time.
    in_seq_order(
        &mut state,
        cut.files.iter().collect(),
        |_, f| {
            let bytes = archive.read_file(&f.path)?;
            let digest = to_hex(blake3::hash(&bytes).as_bytes());
            if digest != f.blake3 {
                return Err(refuse(format!("{}: blake3 {digest} differs from the manifest's {}", f.path, f.blake3)));
            }
            read_links(bytes, &f.path)
        },
        |l| l.seq,
        |state, l| {
            if l.seq > state.next_seq
                && let Some(after) = base.after_gap(chain, state.next_seq, l.seq)?
            {
                *state = after;
            }
            if l.seq != state.next_seq || l.prev != state.last_hash {
                return Err(refuse(format!("seq {} does not continue the chain at seq {}", l.seq, state.next_seq)));
            }
            state.tree.push(&l.hash);
            state.last_hash = l.hash;
            state.next_seq += 1;
            Ok(())
        },
    )?;
    if state.next_seq != cut.next_seq {
        return Err(refuse(format!("the files to remove end at seq {}, not {}", state.next_seq, cut.next_seq)));
    }
    let mut entry = base.clone();
    entry.files.retain(|f| !cut.files.contains(f));
    // Gaps among the removed records: the cut's compact range covers them.
    entry.gaps.retain(|g| g.to_seq > cut.next_seq);
    // Checkpoints of removed records only: nothing left to check them against.
    entry.checkpoints.retain(|n| Checkpoint::parse_note_unverified(n).map_or(true, |cp| cp.size >= cut.next_seq));
    let removed_before = base.retired.as_ref().map_or(0, |r| r.files);
    entry.retired =
        Some(Retired::at_state(&state, removed_before + cut.files.len() as u64, cut.through(), now.to_string()));
    if !m.commit_chain(archive, chain, Some(&base), entry)? {
        report.elsewhere.push(format!("{chain}: another compactor changed the chain first; retention left to it"));
        return Ok(());
    }
    report.retired.push(format!("chain {chain}: {} removed", describe(&base, &cut)));
    for f in &cut.files {
        remove(archive, &f.path, report);
    }
    Ok(())
}

/// Files of retired records that an earlier pass could not delete (a crash after the
/// manifest commit, an object lock that had not expired yet).
fn leftovers(archive: &dyn ArchiveStore, m: &ManifestState) -> Result<Vec<String>, CliError> {
    if m.manifest.chains.values().all(|e| e.retired.is_none()) {
        return Ok(Vec::new());
    }
    let named: std::collections::BTreeSet<&str> = m.manifest.files().map(|(_, f)| f.path.as_str()).collect();
    Ok(archive
        .data_files()?
        .into_iter()
        .filter(|rel| !named.contains(rel.as_str()) && m.manifest.is_retired_file(rel))
        .collect())
}

/// Delete one retired file; a refusal (an object lock not yet expired) is reported and
/// retried by the next pass.
fn remove(archive: &dyn ArchiveStore, rel: &str, report: &mut CompactReport) {
    match archive.remove_file(rel) {
        Ok(()) => report.removed_files += 1,
        Err(e) => {
            tracing::warn!(target: "kiroku::compact", "retired file kept for now: {e}");
            report.retention_kept.push(e.to_string());
        }
    }
}

/// `(chain, first seq, last seq)` from `records/date=.../<chain>-<first>-<last>.parquet`.
pub(crate) fn file_range(rel: &str) -> Option<(&str, u64, u64)> {
    let name = rel.rsplit('/').next()?.strip_suffix(".parquet")?;
    let (rest, last) = name.rsplit_once('-')?;
    let (chain, first) = rest.rsplit_once('-')?;
    Some((chain, first.parse().ok()?, last.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(first: u64, last: u64, date: &str) -> FileEntry {
        FileEntry {
            path: format!("records/date={date}/c-{first}-{last}.parquet"),
            first_seq: first,
            last_seq: last,
            rows: last - first + 1,
            bytes: 1,
            blake3: String::new(),
            date: date.into(),
        }
    }

    fn entry(files: Vec<FileEntry>) -> ChainEntry {
        let mut e = ChainEntry::genesis(ChainId::new_v7());
        e.next_seq = files.iter().map(|f| f.last_seq + 1).max().unwrap_or(0);
        e.files = files;
        e
    }

    #[test]
    fn only_whole_days_before_the_period_go() {
        let now: Timestamp = "2026-07-01T12:00:00Z".parse().unwrap();
        assert_eq!(keep_from(now, Duration::from_secs(86_400)), "2026-06-30");
        assert_eq!(keep_from(now, Duration::from_secs(3600)), "2026-07-01");
    }

    #[test]
    fn the_oldest_run_of_files_goes_and_the_cut_is_the_next_file() {
        let e = entry(vec![file(0, 9, "2026-01-01"), file(10, 19, "2026-01-02"), file(20, 29, "2026-01-03")]);
        let cut = plan(&e, "2026-01-03").unwrap();
        assert_eq!(cut.next_seq, 20);
        assert_eq!(cut.files.len(), 2);
        assert_eq!(plan(&e, "2026-01-01"), None);
        // Everything old: the chain is retired up to its head.
        assert_eq!(plan(&e, "2026-02-01").unwrap().next_seq, 30);
    }

    #[test]
    fn files_interleaved_in_seq_around_midnight_wait_for_the_later_day() {
        // One segment straddling midnight: a long request that started before midnight
        // finished (and got its seq) after records of the new day.
        let e = entry(vec![file(0, 9, "2026-01-01"), file(10, 15, "2026-01-01"), file(11, 20, "2026-01-02")]);
        let cut = plan(&e, "2026-01-02").unwrap();
        assert_eq!(cut.next_seq, 10, "only the file wholly before seq 10 goes");
        assert_eq!(cut.files, vec![file(0, 9, "2026-01-01")]);
    }

    #[test]
    fn a_newer_file_stops_the_run_even_if_older_ones_follow_it() {
        let e = entry(vec![file(0, 9, "2026-01-05"), file(10, 19, "2026-01-01")]);
        assert_eq!(plan(&e, "2026-01-03"), None);
    }

    #[test]
    fn file_names_give_chain_and_range() {
        let id = ChainId::new_v7().to_string();
        let rel = format!("records/date=2026-01-01/{id}-12-40.parquet");
        assert_eq!(file_range(&rel), Some((id.as_str(), 12, 40)));
        assert_eq!(file_range("records/x.parquet"), None);
    }
}
