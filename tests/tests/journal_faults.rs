//! Fault injection at the file-operation level (in the spirit of Tessera's POSIX fault
//! tests): a failing write, fsync or rename makes the journal report and refuse
//! (`FailClosed`), damages nothing written before, and the journal recovers once the
//! disk works again.

use std::sync::atomic::Ordering;
use std::time::Duration;

use kiroku::journal::Faults;
use kiroku::{Durability, FailurePolicy, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::{AuditRecord, Timestamp};
use kiroku_tests::all_records;

fn rec(tag: &str) -> AuditRecord {
    let mut r = AuditRecord::new(tag, Timestamp::now());
    r.attributes.insert("tag".into(), tag.into());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_fsync_and_rename_failures_are_reported_refused_and_recovered() {
    for fault in ["write", "fsync", "rename"] {
        let dir = tempfile::tempdir().unwrap();
        let signer = NoteSigner::generate("kiroku-faults").unwrap();
        let faults = Faults::new();
        // Small segments so that every few records a seal (and its rename) happens.
        let cfg = JournalConfig::new(dir.path(), signer.clone())
            .durability(Durability::Sync)
            .on_failure(FailurePolicy::FailClosed)
            .segment_max_bytes(2048)
            .fault_injection(faults.clone());
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
        for i in 0..10 {
            if j.append(rec(&format!("{fault}-during-{i}"))).await.is_err() {
                failed = true;
                break;
            }
            acked.push(format!("{fault}-during-{i}"));
        }
        assert!(failed, "{fault}: the journal reports the failure");
        assert!(!j.is_healthy(), "{fault}: FailClosed refuses while failed");
        assert!(j.failure_reason().unwrap().contains("injected"), "{fault}: {:?}", j.failure_reason());
        faults.clear();
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let mut recovered = false;
        for i in 0..20 {
            if j.append(rec(&format!("{fault}-after-{i}"))).await.is_ok() {
                acked.push(format!("{fault}-after-{i}"));
                recovered = true;
                break;
            }
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
        // The refused record is a loss stated in the chain, on the next record written.
        let after = records.iter().find(|r| r.record.attributes.get("tag").is_some_and(|t| t.contains("-after-")));
        assert!(after.is_some_and(|r| r.record.records_lost_before >= 1), "{fault}: the loss is stated");
    }
}
