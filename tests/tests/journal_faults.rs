//! Fault injection at the file-operation level (in the spirit of Tessera's POSIX fault
//! tests): a failing write, fsync or rename makes the journal report and refuse
//! (`FailClosed`), damages nothing written before, and the journal recovers once the
//! disk works again.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kiroku::journal::Faults;
use kiroku::{Durability, FailurePolicy, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::{AuditRecord, Timestamp};
use kiroku_tests::{all_records, copy_tree};

/// A fresh spool and signer, and a journal config whose file operations go through
/// `faults`.
fn faulty(
    durability: Durability,
    policy: FailurePolicy,
) -> (tempfile::TempDir, NoteSigner, Arc<Faults>, JournalConfig) {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::generate("kiroku-faults").unwrap();
    let faults = Faults::new();
    let cfg = JournalConfig::new(dir.path(), signer.clone())
        .durability(durability)
        .on_failure(policy)
        .fault_injection(faults.clone());
    (dir, signer, faults, cfg)
}

/// Each record's `records_lost_before`, in chain order.
fn lost_before(spool: &std::path::Path, signer: &NoteSigner) -> Vec<u64> {
    all_records(spool, &signer.verifier()).iter().map(|r| r.record.records_lost_before).collect()
}

fn rec(tag: &str) -> AuditRecord {
    let mut r = AuditRecord::new(tag, Timestamp::now());
    r.attributes.insert("tag".into(), tag.into());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_fsync_and_rename_failures_are_reported_refused_and_recovered() {
    for fault in ["write", "fsync", "rename"] {
        let (dir, signer, faults, cfg) = faulty(Durability::Sync, FailurePolicy::FailClosed);
        // Small segments so that every few records a seal (and its rename) happens.
        let cfg = cfg.segment_max_bytes(2048);
        let j = Journal::open(cfg).unwrap();
        let mut acked = Vec::new();
        for i in 0..5 {
            j.append(rec(&format!("{fault}-before-{i}"))).await.unwrap();
            acked.push(format!("{fault}-before-{i}"));
        }
        match fault {
            "write" => faults.fail_writes.store(true, Ordering::SeqCst),
            "fsync" => faults.fail_syncs.store(true, Ordering::SeqCst),
            _ => faults.fail_renames.store(true, Ordering::SeqCst),
        }
        let mut failed = false;
        let mut refused = Vec::new();
        for i in 0..10 {
            if j.append(rec(&format!("{fault}-during-{i}"))).await.is_err() {
                refused.push(format!("{fault}-during-{i}"));
                failed = true;
                break;
            }
            acked.push(format!("{fault}-during-{i}"));
        }
        assert!(failed, "{fault}: the journal reports the failure");
        assert!(!j.is_healthy(), "{fault}: FailClosed refuses while failed");
        assert!(j.failure_reason().unwrap().contains("injected"), "{fault}: {:?}", j.failure_reason());
        assert!(j.flush().await.is_err(), "{fault}: a flush while failed says so");
        faults.clear();
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let mut recovered = false;
        for i in 0..20 {
            if j.append(rec(&format!("{fault}-after-{i}"))).await.is_ok() {
                acked.push(format!("{fault}-after-{i}"));
                recovered = true;
                break;
            }
            refused.push(format!("{fault}-after-{i}"));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(recovered && j.is_healthy(), "{fault}: recovered");
        j.shutdown().await.unwrap();
        // Everything acknowledged is there, the chain verifies (read_spool), nothing before the fault is damaged.
        let records = all_records(dir.path(), &signer.verifier());
        let tags: Vec<&str> =
            records.iter().filter_map(|r| r.record.attributes.get("tag").map(String::as_str)).collect();
        for a in &acked {
            assert!(tags.contains(&a.as_str()), "{fault}: acknowledged {a} missing; have {tags:?}");
        }
        for (i, r) in records.iter().enumerate() {
            assert_eq!(r.seq, i as u64);
        }
        // A refused record is either in the chain (the disk kept it: a failed fsync or
        // rename, after which recovery found the bytes and rewrote them durably) or
        // counted lost and stated in the chain on the next record written, never both.
        let lost = refused.iter().filter(|t| !tags.contains(&t.as_str())).count() as u64;
        let m = j.metrics();
        assert_eq!(m.records_lost, lost, "{fault}: refused {refused:?}, in the chain {tags:?}");
        let stated: u64 = records.iter().map(|r| r.record.records_lost_before).sum();
        assert_eq!((stated, m.records_lost_unstated), (lost, 0), "{fault}: every loss is stated");
        let first_refused = format!("{fault}-during-{}", acked.iter().filter(|t| t.contains("-during-")).count());
        assert_eq!(tags.contains(&first_refused.as_str()), fault != "write", "{fault}: {first_refused} in {tags:?}");
    }
}

/// The open segment is found corrupt in the middle when the journal recovers from a
/// failed write (the disk returned other bytes than were written). Its records hold
/// seqs that were acknowledged: the chain must never hand those seqs out again. The
/// journal stays failed (its reason says why and what to do), and the next process
/// with the same writer name starts a new chain instead of taking this one back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_found_corrupt_while_recovering_ends_the_chain_and_no_seq_is_reused() {
    let (dir, signer, faults, cfg) = faulty(Durability::Sync, FailurePolicy::FailClosed);
    let cfg = cfg.writer_name("node-a");
    let j = Journal::open(cfg.clone()).unwrap();
    let first_chain = j.chain_id();
    for i in 0..5 {
        j.append(rec(&format!("before-{i}"))).await.unwrap();
    }
    faults.fail_writes.store(true, Ordering::SeqCst);
    assert!(j.append(rec("during")).await.is_err(), "the failed write is reported");
    // While the journal is failed, a byte in the middle of the open segment changes.
    let open = std::fs::read_dir(j.chain_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "open"))
        .expect("the open segment");
    let mut bytes = std::fs::read(&open).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(&open, &bytes).unwrap();
    faults.clear();
    // Recovery is retried every second: give it several chances.
    for i in 0..4 {
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert!(j.append(rec(&format!("after-{i}"))).await.is_err(), "attempt {i}: nothing is appended to this chain");
    }
    assert!(!j.is_healthy());
    assert!(j.flush().await.is_err(), "a flush of an ended chain says so");
    let reason = j.failure_reason().unwrap();
    assert!(reason.contains("corrupt") && reason.contains("restart"), "{reason}");
    let files: Vec<String> = std::fs::read_dir(j.chain_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg") || n.ends_with(".open") || n.ends_with(".corrupt"))
        .collect();
    assert_eq!(files, vec![format!("{:020}.corrupt", 0)], "only the corrupt segment is left in the chain");
    drop(j);
    // The next process with this writer name does not take the chain back.
    let j = Journal::open(cfg).unwrap();
    assert_ne!(j.chain_id(), first_chain, "a new chain");
    j.append(rec("next-process")).await.unwrap();
    j.shutdown().await.unwrap();
    let records: Vec<_> =
        all_records(dir.path(), &signer.verifier()).into_iter().filter(|r| r.chain_id == first_chain).collect();
    assert!(records.is_empty(), "no record of the first chain outside its corrupt segment: {}", records.len());
}

/// The loss count is exact: every record submitted is either in the chain or counted
/// lost, never both, whether the journal stops right after a write failure (it
/// recovers at once instead of sealing what its buffers still hold) or recovers first
/// and writes on. The losses the chain states (`records_lost_before`) plus those after
/// its last record (`records_lost_unstated`) are the count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_record_is_either_in_the_chain_or_counted_lost_never_both() {
    for durability in [Durability::Sync, Durability::Batched(Duration::from_millis(100))] {
        for writes_on in [false, true] {
            let case = format!("{durability:?}, writes on after recovering: {writes_on}");
            let (dir, signer, faults, cfg) = faulty(durability, FailurePolicy::FailOpen);
            let j = Journal::open(cfg).unwrap();
            let mut submitted = 0;
            for i in 0..3 {
                j.append(rec(&format!("before-{i}"))).await.unwrap();
                submitted += 1;
            }
            faults.fail_writes.store(true, Ordering::SeqCst);
            for i in 0..2 {
                let _ = j.append(rec(&format!("during-{i}"))).await;
                submitted += 1;
            }
            assert!(j.flush().await.is_err(), "{case}: the failure is seen");
            faults.clear();
            if writes_on {
                tokio::time::sleep(Duration::from_millis(1100)).await;
                j.append(rec("after")).await.unwrap();
                submitted += 1;
            }
            let report = j.shutdown().await.unwrap_or_else(|e| panic!("{case}: {e}"));
            let m = j.metrics();
            let records = all_records(dir.path(), &signer.verifier());
            let stored = records.len() as u64;
            assert_eq!(report.next_seq, stored, "{case}");
            assert_eq!(m.records_lost, submitted - stored, "{case}: {submitted} submitted, {stored} in the chain");
            let stated: u64 = records.iter().map(|r| r.record.records_lost_before).sum();
            assert_eq!(stated + m.records_lost_unstated, m.records_lost, "{case}: stated in the chain, or unstated");
            if writes_on {
                assert_eq!(m.records_lost_unstated, 0, "{case}: the record written after states them");
            } else if durability == Durability::Sync {
                // The second record was refused while the journal was failed: no record
                // after it states the loss.
                assert!(m.records_lost_unstated >= 1, "{case}: {m:?}");
            }
            let names: Vec<String> = std::fs::read_dir(j.chain_dir())
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".open"))
                .collect();
            assert!(names.is_empty(), "{case}: shutdown sealed everything, left {names:?}");
            assert!(report.sealed.is_some(), "{case}: the report names the sealed segment");
        }
    }
}

/// The disk still fails when the journal retries and when it stops: the record whose
/// write failed had a seq, and is counted lost when the journal stops, though the
/// failed retry dropped its segment writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_a_journal_that_stops_failed_are_counted_lost() {
    let (dir, signer, faults, cfg, j) = journal_with_records(1).await;
    faults.fail_writes.store(true, Ordering::SeqCst);
    faults.fail_recoveries.store(true, Ordering::SeqCst);
    assert!(j.append(rec("during")).await.is_err());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // A retry, which fails.
    assert!(j.append(rec("retry")).await.is_err());
    faults.fail_writes.store(false, Ordering::SeqCst);
    assert!(j.shutdown().await.is_err(), "a journal that cannot recover does not say it sealed");
    let m = j.metrics();
    drop(j);
    // The next process recovers what is on disk.
    faults.clear();
    Journal::open(cfg).unwrap().shutdown().await.unwrap();
    let stored = all_records(dir.path(), &signer.verifier()).len() as u64;
    assert_eq!(m.records_lost, 3 - stored, "{stored} of 3 in the chain; {m:?}");
    assert_eq!(m.records_lost_unstated, m.records_lost);
}

/// No room for recovery's fresh copy (a full disk): it seals the segment in place
/// (cutting a torn tail there, if any) instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_room_for_a_copy_recovery_seals_in_place() {
    let (dir, signer, faults, cfg) = faulty(Durability::Sync, FailurePolicy::FailClosed);
    let j = Journal::open(cfg).unwrap();
    for i in 0..3 {
        j.append(rec(&format!("before-{i}"))).await.unwrap();
    }
    let open = kiroku_tests::segment_files(j.chain_dir())
        .into_iter()
        .find(|p| p.extension().is_some_and(|x| x == "open"))
        .expect("the open segment");
    faults.fail_syncs.store(true, Ordering::SeqCst);
    assert!(j.append(rec("during")).await.is_err());
    faults.fail_syncs.store(false, Ordering::SeqCst);
    faults.fail_copies.store(true, Ordering::SeqCst);
    let report = j.shutdown().await.expect("recovered in place");
    assert_eq!(report.sealed, Some(open.with_extension("seg")));
    let tags: Vec<String> = all_records(dir.path(), &signer.verifier())
        .into_iter()
        .filter_map(|r| r.record.attributes.get("tag").cloned())
        .collect();
    assert_eq!(&tags[..3], ["before-0", "before-1", "before-2"]);
    assert!(!open.with_extension("rewrite").exists());
}

/// A record that states earlier losses (`records_lost_before`) and is itself lost takes
/// that statement with it: the count goes to the next record written. Here the journal
/// fails twice in a row: the record refused while it was failed, and the one whose
/// write failed, are stated by the record that first carried them (and was lost with
/// the second failure) and then by the one written after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_record_does_not_take_the_losses_it_stated_with_it() {
    let (dir, signer, faults, _, j) = journal_with_records(2).await;
    faults.fail_writes.store(true, Ordering::SeqCst);
    // Given seq 2; its write fails: the journal fails.
    assert!(j.append(rec("first-failure")).await.is_err());
    // Refused while failed (before the retry interval): counted lost at once.
    assert!(j.append(rec("refused")).await.is_err());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Recovery finds seq 2 missing; this record takes seq 2, states both losses, and
    // its own write fails.
    assert!(j.append(rec("carrier")).await.is_err());
    faults.clear();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    j.append(rec("after")).await.unwrap();
    j.shutdown().await.unwrap();
    let m = j.metrics();
    let records = all_records(dir.path(), &signer.verifier());
    let tags: Vec<&str> = records.iter().filter_map(|r| r.record.attributes.get("tag").map(String::as_str)).collect();
    assert_eq!(tags, ["before-0", "before-1", "after"]);
    assert_eq!(m.records_lost, 3, "{m:?}");
    assert_eq!(records[2].record.records_lost_before, 3, "the record written after states all three");
    assert_eq!(m.records_lost_unstated, 0, "{m:?}");
}

/// Losses after a process's last record are stated by the next process of the chain:
/// the journal keeps them in the chain's `lost` file when it stops, and the journal that
/// takes the chain back states them in its first record. A journal that stops failed
/// does not know whether its last record reached the disk; the next one counts it from
/// the disk, so a record is again either in the chain or stated lost, never both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losses_after_the_last_record_are_stated_by_the_next_process_of_the_chain() {
    // (fault, the journal recovers before it stops, records the disk keeps of the one
    // whose write or fsync failed)
    for (fault, recovers, kept) in [("write", false, 0), ("fsync", false, 1), ("write", true, 0)] {
        let case = format!("{fault} failure, recovered before stopping: {recovers}");
        let (dir, signer, faults, cfg, j) = journal_with_records(2).await;
        match fault {
            "write" => faults.fail_writes.store(true, Ordering::SeqCst),
            _ => faults.fail_syncs.store(true, Ordering::SeqCst),
        }
        assert!(j.append(rec("in-doubt")).await.is_err(), "{case}");
        assert!(j.append(rec("refused")).await.is_err(), "{case}");
        // Answered once the writer is done with the refused record's batch: the disk
        // works again only after that.
        assert!(j.flush().await.is_err(), "{case}");
        if recovers {
            faults.clear();
            tokio::time::sleep(Duration::from_millis(1100)).await;
            j.flush().await.unwrap_or_else(|e| panic!("{case}: recovered: {e}"));
            j.shutdown().await.unwrap_or_else(|e| panic!("{case}: {e}"));
        } else {
            faults.fail_recoveries.store(true, Ordering::SeqCst);
            assert!(j.shutdown().await.is_err(), "{case}");
        }
        let m = j.metrics();
        assert_eq!(m.records_lost, 2, "{case}: {m:?}");
        assert_eq!((m.records_lost_unstated, m.records_lost_kept), (2, 2), "{case}: {m:?}");
        let lost_file = j.chain_dir().join(kiroku::journal::LOST_FILE);
        assert!(lost_file.exists(), "{case}");
        drop(j);

        // The next process of this writer.
        faults.clear();
        let j = Journal::open(cfg.clone()).unwrap();
        assert_eq!(j.metrics().records_lost_unstated, 2 - kept, "{case}: owed from the disk");
        j.append(rec("next")).await.unwrap();
        assert!(!lost_file.exists(), "{case}: removed once the record that states it is durable");
        j.shutdown().await.unwrap();
        assert_eq!(j.metrics().records_lost_kept, 0, "{case}");
        drop(j);
        let j = Journal::open(cfg).unwrap();
        j.append(rec("third")).await.unwrap();
        j.shutdown().await.unwrap();

        let records = all_records(dir.path(), &signer.verifier());
        let tags: Vec<&str> =
            records.iter().filter_map(|r| r.record.attributes.get("tag").map(String::as_str)).collect();
        let lost_before: Vec<u64> = records.iter().map(|r| r.record.records_lost_before).collect();
        if kept == 1 {
            assert_eq!(tags, ["before-0", "before-1", "in-doubt", "next", "third"], "{case}");
            assert_eq!(lost_before, [0, 0, 0, 1, 0], "{case}: only the refused record is stated lost");
        } else {
            assert_eq!(tags, ["before-0", "before-1", "next", "third"], "{case}");
            assert_eq!(lost_before, [0, 0, 2, 0], "{case}: both stated by the next process's first record");
        }
    }
}

/// A `lost` file that cannot be read is refused when the journal opens, naming the file
/// and the line: the count it holds would otherwise vanish.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_lost_file_is_refused_with_where_it_is() {
    let (_dir, _signer, _faults, cfg) = faulty(Durability::Sync, FailurePolicy::FailOpen);
    let j = Journal::open(cfg.clone()).unwrap();
    j.append(rec("one")).await.unwrap();
    j.shutdown().await.unwrap();
    let lost_file = j.chain_dir().join(kiroku::journal::LOST_FILE);
    drop(j);
    std::fs::write(&lost_file, "kiroku-lost 1\nlost three\n").unwrap();
    let err = Journal::open(cfg).unwrap_err().to_string();
    assert!(err.contains(&lost_file.display().to_string()) && err.contains("line 2"), "{err}");
}

/// A process killed before it writes another record does not take the losses no record
/// states with it: the journal keeps them in the chain's `lost` file as they happen, not
/// only when it stops. The kill is a copy of the spool taken
/// while the journal runs: what SIGKILL leaves (written files are in the page cache),
/// with no shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losses_no_record_states_outlive_a_killed_process() {
    let (dir, signer, faults, _, j) = journal_with_records(2).await;
    faults.fail_writes.store(true, Ordering::SeqCst);
    assert!(j.append(rec("in-doubt")).await.is_err());
    assert!(j.append(rec("refused")).await.is_err());
    // Answered once the writer is done with the refused record's batch (which tries to
    // write what it holds of seq 2 again): the disk works again only after that.
    assert!(j.flush().await.is_err());
    faults.clear();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    j.flush().await.unwrap();
    assert_eq!(j.metrics().records_lost_unstated, 2);
    let image = tempfile::tempdir().unwrap();
    copy_tree(dir.path(), image.path());

    let next = Journal::open(JournalConfig::new(image.path(), signer.clone()).durability(Durability::Sync)).unwrap();
    assert_eq!(next.metrics().records_lost_unstated, 2, "taken back from the killed process's lost file");
    next.append(rec("next")).await.unwrap();
    next.shutdown().await.unwrap();
    assert_eq!(lost_before(image.path(), &signer), [0, 0, 2]);

    // The process that was not killed: its next record states them, and the file goes.
    j.append(rec("after")).await.unwrap();
    assert!(!j.chain_dir().join(kiroku::journal::LOST_FILE).exists());
    let second = tempfile::tempdir().unwrap();
    copy_tree(dir.path(), second.path());
    let again = Journal::open(JournalConfig::new(second.path(), signer.clone())).unwrap();
    assert_eq!(again.metrics().records_lost_unstated, 0, "killed now, nothing is owed twice");
    again.shutdown().await.unwrap();
    j.shutdown().await.unwrap();
    assert_eq!(lost_before(dir.path(), &signer), [0, 0, 2]);
}

/// A kill a moment after a loss, within a second of the last one, leaves both counted:
/// a newer count reaches the file within milliseconds (written without fsync; it is in
/// the OS's cache when the process dies), not only at the next second's durable write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_a_moment_after_a_loss_leaves_it_counted() {
    let (dir, signer, faults, j) = failing_with_seq_1_in_doubt().await;
    assert!(j.flush().await.is_err());
    // The first failure's count is written at once (and made durable): seq 1 in doubt.
    // Losses follow within the second.
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(j.append(rec(&format!("refused-{i}"))).await.is_err());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let image = tempfile::tempdir().unwrap();
    copy_tree(dir.path(), image.path());
    let owed = kiroku::journal::read_lost_file(&image.path().join(j.chain_id().to_string())).unwrap();
    assert_eq!(owed.map(|o| o.lost), Some(3), "every refusal is in the file a moment later");
    let next = Journal::open(JournalConfig::new(image.path(), signer.clone()).durability(Durability::Sync)).unwrap();
    assert_eq!(next.metrics().records_lost_unstated, 4, "the three refused, and seq 1, which the disk did not keep");
    next.shutdown().await.unwrap();
    faults.clear();
    j.shutdown().await.unwrap();
}

/// A Sync, FailOpen journal whose disk can be made to fail, with `n` records written
/// (`before-0`, `before-1`, ...), and its configuration (to open the chain again).
async fn journal_with_records(n: usize) -> (tempfile::TempDir, NoteSigner, Arc<Faults>, JournalConfig, Journal) {
    let (dir, signer, faults, cfg) = faulty(Durability::Sync, FailurePolicy::FailOpen);
    let j = Journal::open(cfg.clone()).unwrap();
    for i in 0..n {
        j.append(rec(&format!("before-{i}"))).await.unwrap();
    }
    (dir, signer, faults, cfg, j)
}

/// A Sync, FailOpen journal with one record (seq 0), whose disk then failed writing the
/// next (seq 1, in doubt) and fails every retry until the faults are cleared.
async fn failing_with_seq_1_in_doubt() -> (tempfile::TempDir, NoteSigner, Arc<Faults>, Journal) {
    let (dir, signer, faults, _, j) = journal_with_records(1).await;
    faults.fail_writes.store(true, Ordering::SeqCst);
    faults.fail_recoveries.store(true, Ordering::SeqCst);
    assert!(j.append(rec("in-doubt")).await.is_err());
    (dir, signer, faults, j)
}

/// A failed journal that gets no more records keeps the seq it holds in doubt in the
/// `lost` file, though nothing is known lost yet: killed before a retry can tell, its
/// next process counts the record the disk did not keep. Without the file the record
/// would be gone without a word, its seq handed out again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_in_doubt_outlives_a_failed_journal_that_is_killed() {
    let (dir, signer, faults, j) = failing_with_seq_1_in_doubt().await;
    assert!(j.flush().await.is_err());
    assert_eq!(j.metrics().records_lost_unstated, 0, "in doubt, not known lost");
    let image = tempfile::tempdir().unwrap();
    copy_tree(dir.path(), image.path());

    let next = Journal::open(JournalConfig::new(image.path(), signer.clone()).durability(Durability::Sync)).unwrap();
    assert_eq!(next.metrics().records_lost_unstated, 1, "the disk did not keep the record in doubt");
    next.append(rec("next")).await.unwrap();
    next.shutdown().await.unwrap();
    assert_eq!(lost_before(image.path(), &signer), [0, 1]);
    faults.clear();
    j.shutdown().await.unwrap();
    // Not killed, the first process writes the record once the disk works again: in
    // the chain, so not lost, and the file goes.
    assert_eq!(lost_before(dir.path(), &signer), [0, 0]);
    assert_eq!(kiroku::journal::read_lost_file(j.chain_dir()).unwrap(), None);
}

/// A retry that finds records missing hands their seqs out again. A `lost` file kept
/// before it, which says those seqs are in doubt, is rewritten at once, even within a
/// second of the last write: left as it was, the file would not go when the record that
/// states it is durable, and a kill then would count the losses twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_that_hands_seqs_out_again_rewrites_the_lost_file_at_once() {
    let (dir, signer, faults, j) = failing_with_seq_1_in_doubt().await;
    // A refused record is kept in the file (1 lost, seq 1 in doubt).
    assert!(j.append(rec("refused-1")).await.is_err());
    // The retry a second later fails (and drops what the writer held of seq 1).
    tokio::time::sleep(Duration::from_millis(1300)).await;
    faults.fail_writes.store(false, Ordering::SeqCst);
    // Refused again before the next retry: the file is written anew (2 lost).
    assert!(j.append(rec("refused-2")).await.is_err());
    faults.fail_recoveries.store(false, Ordering::SeqCst);
    // The next retry, less than a second after that write, finds seq 1 missing.
    tokio::time::sleep(Duration::from_millis(900)).await;
    j.flush().await.unwrap();
    assert_eq!(j.metrics().records_lost_unstated, 3);
    j.append(rec("after")).await.unwrap();
    assert!(!j.chain_dir().join(kiroku::journal::LOST_FILE).exists(), "stated by the record at seq 1, and gone");
    let image = tempfile::tempdir().unwrap();
    copy_tree(dir.path(), image.path());
    let next = Journal::open(JournalConfig::new(image.path(), signer.clone())).unwrap();
    assert_eq!(next.metrics().records_lost_unstated, 0, "nothing owed twice");
    next.shutdown().await.unwrap();
    j.shutdown().await.unwrap();
    assert_eq!(lost_before(dir.path(), &signer), [0, 3]);
}
