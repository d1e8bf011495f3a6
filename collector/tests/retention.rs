//! `kiroku compact --retain` on a local spool and archive: only what is older than the
//! period goes, the rest still verifies and proves (by kiroku and by the independent
//! Python verifier), an edited cut is caught, and a file left behind by an interrupted
//! removal is deleted by the next pass.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};

use kiroku_schemas::Timestamp;

mod support;
use support::{dated_spool, days_ago, files_under, flip_middle_byte, kiroku, repo, text};

use kiroku_tests::copy_tree;

fn manifest(archive: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(archive.join("_kiroku/manifest.json")).unwrap()).unwrap()
}

#[test]
fn retention_removes_only_what_is_older_than_the_period_and_the_rest_still_verifies_and_proves() {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::now();
    let days = [days_ago(now, 400), days_ago(now, 399), days_ago(now, 398), days_ago(now, 10), days_ago(now, 0)];
    let per_day = 40;
    let ids = dated_spool(dir.path(), &days, per_day);
    let (spool, archive) = (dir.path().join("spool"), dir.path().join("archive"));
    let s = |p: &Path| p.display().to_string();
    let vkey = s(&dir.path().join("signer.vkey"));
    let base = ["compact", "--spool", &s(&spool), "--archive", &s(&archive), "--pubkey", &vkey];

    // Compact everything first: nothing is removed without --retain.
    let out = kiroku(&base);
    assert!(out.status.success(), "{}", text(&out));
    let all_files = files_under(&archive.join("records"), "parquet");
    // Compacted segments are recorded by where their records end (version 3); cutting
    // keeps the version (the manifest's unit tests cover versions 1 and 2).
    assert_eq!(manifest(&archive)["version"], 3);
    let compacted = files_under(&spool.join("compacted"), "seg");
    assert!(compacted.len() >= 8, "small segments: {}", compacted.len());
    // Segments of the old days were written long ago; the rest recently.
    let old_segments = compacted.len() / 2;
    let long_ago = SystemTime::now() - Duration::from_secs(400 * 86_400);
    for seg in &compacted[..old_segments] {
        std::fs::File::options().write(true).open(seg).unwrap().set_modified(long_ago).unwrap();
    }
    let backup = dir.path().join("backup");
    std::fs::create_dir_all(&backup).unwrap();
    for f in &all_files {
        std::fs::copy(f, backup.join(f.file_name().unwrap())).unwrap();
    }

    // A period shorter than six months is allowed, with a warning; --object-lock needs
    // an s3:// archive.
    let lock = kiroku(&[&base[..], &["--retain", "1y", "--object-lock", "compliance"]].concat());
    assert_eq!(lock.status.code(), Some(2), "{}", text(&lock));
    assert!(text(&lock).contains("--object-lock needs an s3:// archive"), "{}", text(&lock));
    let bad = kiroku(&[&base[..], &["--retain", "6m"]].concat());
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad).contains("ambiguous"), "{}", text(&bad));

    // A dry run says what would go and removes nothing.
    let dry = kiroku(&[&base[..], &["--retain", "365d", "--retain-dry-run"]].concat());
    assert!(dry.status.success(), "{}", text(&dry));
    let said = text(&dry);
    assert!(said.contains("would remove chain") && said.contains(&format!("seq 0..{}", 3 * per_day)), "{said}");
    assert!(said.contains(&format!("and {old_segments} compacted segment(s)")), "{said}");
    assert_eq!(files_under(&archive.join("records"), "parquet"), all_files);
    assert_eq!(files_under(&spool.join("compacted"), "seg"), compacted);
    assert_eq!(manifest(&archive)["version"], 3);

    // A file due for removal that does not match the manifest: retention leaves that
    // chain alone, says why, and exits 1 (on a copy of the archive).
    let scratch = dir.path().join("scratch");
    copy_tree(&archive, &scratch);
    let oldest = files_under(&scratch.join("records"), "parquet")
        .into_iter()
        .find(|f| f.to_string_lossy().contains(&days[0].date_string()))
        .unwrap();
    let mut bytes = std::fs::read(&oldest).unwrap();
    bytes.push(0);
    std::fs::write(&oldest, bytes).unwrap();
    let empty = dir.path().join("empty-spool");
    std::fs::create_dir_all(&empty).unwrap();
    // Retention over the scratch archive refuses, says why, and cuts nothing.
    let refuses = |why: &str| {
        let refused = kiroku(&[
            "compact",
            "--spool",
            &s(&empty),
            "--archive",
            &s(&scratch),
            "--pubkey",
            &vkey,
            "--retain",
            "365d",
        ]);
        assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
        assert!(text(&refused).contains("RETENTION REFUSED") && text(&refused).contains(why), "{}", text(&refused));
        assert!(oldest.exists());
        assert_eq!(manifest(&scratch)["version"], 3, "nothing cut");
    };
    refuses("differs from the manifest");

    // A row deleted from the oldest file, the manifest's digest made to match: the cut
    // no longer continues the chain.
    std::fs::remove_dir_all(&scratch).unwrap();
    copy_tree(&archive, &scratch);
    support::rewrite(&oldest, |b| b.slice(1, b.num_rows() - 1));
    let rel = oldest.strip_prefix(&scratch).unwrap().to_string_lossy().into_owned();
    let mut m = manifest(&scratch);
    for chain in m["chains"].as_object_mut().unwrap().values_mut() {
        for f in chain["files"].as_array_mut().unwrap() {
            if f["path"] == rel.as_str() {
                f["blake3"] = blake3::hash(&std::fs::read(&oldest).unwrap()).to_hex().to_string().into();
            }
        }
    }
    std::fs::write(scratch.join("_kiroku/manifest.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    refuses("does not continue the chain");

    // Keep one year: the three days 400 to 398 days ago go, the other two stay.
    let out = kiroku(&[&base[..], &["--retain", "365d"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(said.contains(&format!("seq 0..{} ({} record(s)", 3 * per_day, 3 * per_day)), "{said}");
    assert!(!said.contains("warning"), "{said}");
    let kept = files_under(&archive.join("records"), "parquet");
    let old_dates = [days[0].date_string(), days[1].date_string(), days[2].date_string()];
    assert!(kept.iter().all(|f| old_dates.iter().all(|d| !f.to_string_lossy().contains(d))), "{kept:?}");
    assert!(kept.len() < all_files.len());
    for d in &old_dates {
        assert!(!archive.join("records").join(format!("date={d}")).exists(), "empty partition {d} removed");
    }
    assert_eq!(files_under(&spool.join("compacted"), "seg").len(), compacted.len() - old_segments);
    let m = manifest(&archive);
    assert_eq!(m["version"], 3, "a kiroku from before retention must refuse a cut archive");
    let chain = m["chains"].as_object().unwrap().values().next().unwrap();
    assert_eq!(chain["retired"]["next_seq"], 3 * per_day);
    assert_eq!(chain["retired"]["through_date"], old_dates[2].as_str());

    // What remains verifies from the cut, and says where it starts.
    let v = kiroku(&["verify", "--archive", &s(&archive), "--pubkey", &vkey]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains(&format!("{} record(s)", 2 * per_day)), "{}", text(&v));
    assert!(text(&v).contains("removed by retention"), "{}", text(&v));

    // Records after the cut still explain and prove, to kiroku and to Python.
    let (recent, newest) = (&ids[3 * per_day + 3], &ids[5 * per_day - 1]);
    let ex = kiroku(&["explain", recent, "--archive", &s(&archive), "--pubkey", &vkey]);
    assert!(ex.status.success() && text(&ex).contains("included in checkpoint"), "{}", text(&ex));
    let bundle = dir.path().join("bundle");
    let ev = kiroku(&[
        "evidence",
        "--archive",
        &s(&archive),
        "--record-id",
        recent,
        "--record-id",
        newest,
        "--pubkey",
        &vkey,
        "--out",
        &s(&bundle),
    ]);
    assert!(ev.status.success(), "{}", text(&ev));
    let py = Command::new(repo().join(".venv/bin/python"))
        .arg(repo().join("tests/interop/verify_bundle.py"))
        .arg(&bundle)
        .arg(dir.path().join("signer.vkey"))
        .output()
        .unwrap();
    assert!(py.status.success() && text(&py).contains("2 of 2 records verified"), "{}", text(&py));
    // A removed record is gone.
    let gone = kiroku(&["explain", &ids[5], "--archive", &s(&archive)]);
    assert_eq!(gone.status.code(), Some(2), "{}", text(&gone));

    // An edited cut does not verify: the later checkpoints cover the removed records.
    let path = archive.join("_kiroku/manifest.json");
    let original = std::fs::read(&path).unwrap();
    let mut edited = manifest(&archive);
    let key = edited["chains"].as_object().unwrap().keys().next().unwrap().clone();
    edited["chains"][&key]["retired"]["frontier"][0] = "00".repeat(32).into();
    std::fs::write(&path, serde_json::to_vec(&edited).unwrap()).unwrap();
    let v = kiroku(&["verify", "--archive", &s(&archive), "--pubkey", &vkey]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(text(&v).contains("differs from the signed checkpoint"), "{}", text(&v));
    std::fs::write(&path, &original).unwrap();

    // A removal interrupted after the manifest commit leaves a retired file: verify
    // notes it (no problem), the next pass deletes it.
    let leftover = all_files.iter().find(|f| f.to_string_lossy().contains(&old_dates[0])).unwrap();
    std::fs::create_dir_all(leftover.parent().unwrap()).unwrap();
    std::fs::copy(backup.join(leftover.file_name().unwrap()), leftover).unwrap();
    let v = kiroku(&["verify", "--archive", &s(&archive), "--pubkey", &vkey]);
    assert!(v.status.success(), "{}", text(&v));
    assert!(text(&v).contains("file not deleted yet"), "{}", text(&v));
    let out = kiroku(&[&base[..], &["--retain", "365d"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("deleted 1 archive file(s)"), "{}", text(&out));
    assert!(!leftover.exists());

    let v = kiroku(&["verify", "--archive", &s(&archive), "--pubkey", &vkey]);
    assert!(v.status.success() && !text(&v).contains("not deleted yet"), "{}", text(&v));

    // A short period warns.
    let short = kiroku(&[&base[..], &["--retain", "30d"]].concat());
    assert!(short.status.success(), "{}", text(&short));
    assert!(text(&short).contains("shorter than six months"), "{}", text(&short));
}

/// Retention that removes records on both sides of an accepted gap: the walk over the
/// removed records goes on from the gap's recorded state, the gap goes with them, and
/// what remains verifies and proves.
#[test]
fn retention_removes_an_accepted_gap_with_the_records_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let now = Timestamp::now();
    let days = [days_ago(now, 400), days_ago(now, 399), days_ago(now, 0)];
    let ids = dated_spool(dir.path(), &days, 40);
    let (spool, archive) = (dir.path().join("spool"), dir.path().join("archive"));
    let s = |p: &Path| p.display().to_string();
    let vkey = s(&dir.path().join("signer.vkey"));
    let base = ["compact", "--spool", &s(&spool), "--archive", &s(&archive), "--pubkey", &vkey];
    // A segment of the first day that fails verification, and has no good copy.
    let chain_dir = std::fs::read_dir(&spool).unwrap().flatten().map(|e| e.path()).find(|p| p.is_dir()).unwrap();
    let chain = chain_dir.file_name().unwrap().to_string_lossy().into_owned();
    let segs = files_under(&chain_dir, "seg");
    let bad = &segs[1];
    let from = bad.file_stem().unwrap().to_string_lossy().parse::<u64>().unwrap();
    assert!(from < 40, "the bad segment holds records of the first day: {segs:?}");
    flip_middle_byte(bad);
    assert_eq!(kiroku(&base).status.code(), Some(1));
    let gap = format!("{chain}:{from}");
    let accepted = kiroku(&[&base[..], &["--accept-gap", &gap]].concat());
    assert!(accepted.status.success(), "{}", text(&accepted));
    assert_eq!(manifest(&archive)["chains"][&chain]["gaps"].as_array().unwrap().len(), 1);

    let cut = kiroku(&[&base[..], &["--retain", "365d"]].concat());
    assert!(cut.status.success(), "{}", text(&cut));
    assert!(text(&cut).contains("seq 0..80"), "the two old days go, gap and all: {}", text(&cut));
    let m = manifest(&archive);
    assert!(m["chains"][&chain].get("gaps").is_none(), "{m}");
    assert_eq!(m["version"], 3, "no gap left to record");
    let v = kiroku(&["verify", "--archive", &s(&archive), "--pubkey", &vkey]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(!text(&v).contains("gap accepted"), "{}", text(&v));
    let e = kiroku(&["explain", &ids[80], "--archive", &s(&archive), "--pubkey", &vkey]);
    assert!(e.status.success() && text(&e).contains("inclusion proof: included"), "{}", text(&e));
}
