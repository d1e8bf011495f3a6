//! `kiroku report` rendered by headless Chromium (Debian's package, installed by
//! scripts/test.sh): every section present, and the figures on the page equal the ones
//! computed independently from the archive with pyarrow (tests/interop/check_report.py).

mod support;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::repo;

fn python() -> PathBuf {
    let p = std::env::var_os("KIROKU_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(p.exists(), "{} is missing: run scripts/test.sh, which installs the interop venv", p.display());
    p
}

fn chromium(profile: &Path, args: &[&str]) -> std::process::Output {
    let bin = std::env::var("KIROKU_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(Path::new(&bin).exists(), "{bin} is missing: run scripts/test.sh, which installs Debian's chromium");
    Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_report_shows_what_the_archive_holds() {
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("demo");
    let kiroku = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_kiroku")).args(args).output().unwrap();
    assert!(kiroku(&["demo", "--dir", &demo.display().to_string(), "--requests", "70"]).status.success());
    let archive = demo.join("archive").display().to_string();
    let vkey = demo.join("keys/signer.vkey").display().to_string();
    let page = dir.path().join("report.html");
    let out = kiroku(&["report", "--archive", &archive, "--pubkey", &vkey, "--out", &page.display().to_string()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Checked against another key, the checkpoints fail: the figures are still given,
    // and the exit status says so, as `kiroku verify` would.
    let other = dir.path().join("other.vkey");
    std::fs::write(&other, kiroku_schemas::checkpoint::NoteSigner::generate("x").unwrap().verifier().to_key_text())
        .unwrap();
    let wrong = kiroku(&["report", "--archive", &archive, "--pubkey", &other.display().to_string(), "--json"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", String::from_utf8_lossy(&wrong.stderr));
    let figures: serde_json::Value = serde_json::from_slice(&wrong.stdout).unwrap();
    assert_eq!(figures["records"], 70);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("integrity problem"));
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(
        !html.contains("<script") && !html.contains("http-equiv") && !html.contains("<link") && !html.contains("src="),
        "self-contained, nothing fetched"
    );

    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    let dom = chromium(profile.path(), &["--dump-dom", &url]);
    assert!(dom.status.success() && !dom.stdout.is_empty(), "{}", String::from_utf8_lossy(&dom.stderr));
    let dom_file = dir.path().join("dom.html");
    std::fs::write(&dom_file, &dom.stdout).unwrap();
    let shot = dir.path().join("report.png");
    let s = chromium(profile.path(), &["--window-size=1100,2400", &format!("--screenshot={}", shot.display()), &url]);
    assert!(s.status.success(), "{}", String::from_utf8_lossy(&s.stderr));
    assert!(std::fs::metadata(&shot).unwrap().len() > 20_000, "a screenshot with content");

    let check = Command::new(python())
        .arg(repo().join("tests/interop/check_report.py"))
        .arg(&archive)
        .arg(&dom_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{text}{}", String::from_utf8_lossy(&check.stderr));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(v["checked"].as_u64().unwrap() >= 15, "{v}");
    assert_eq!(v["trusted"], "yes", "checkpoints verified with the key");

    // The JSON summary carries the same figures.
    let json = kiroku(&["report", "--archive", &archive, "--json"]);
    let j: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(j["records"], 70);
    assert_eq!(j["models"].as_array().unwrap().iter().map(|m| m["requests"].as_u64().unwrap()).sum::<u64>(), 70);
    assert!(
        j["integrity"][0]["checkpoints"].as_str().unwrap().contains("not checked"),
        "without a key the report says so"
    );
    // Filters prune: one model only.
    let one = kiroku(&["report", "--archive", &archive, "--json", "--model", "sample-2"]);
    let o: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(o["models"].as_array().unwrap().len(), 1);

    // A page that cannot be written whole (here a file-size limit of half the page)
    // leaves the page written before as it was, and nothing else.
    let before = std::fs::read(&page).unwrap();
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let files = listing();
    let limit_kib = before.len() / 2 / 1024;
    let cut = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {limit_kib}; exec {} report --archive {archive} --model sample-2 --out {}",
            env!("CARGO_BIN_EXE_kiroku"),
            page.display()
        ))
        .output()
        .unwrap();
    assert_eq!(cut.status.code(), Some(2), "{}", String::from_utf8_lossy(&cut.stderr));
    assert!(String::from_utf8_lossy(&cut.stderr).contains("too large"), "{}", String::from_utf8_lossy(&cut.stderr));
    assert!(std::fs::read(&page).unwrap() == before, "the earlier page is kept whole");
    assert_eq!(listing(), files, "no partial file left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fallbacks_and_a_version_change_are_found() {
    use kiroku_schemas::record::Outcome;
    use kiroku_schemas::{AuditRecord, Timestamp};
    let dir = tempfile::tempdir().unwrap();
    let signer = kiroku_schemas::checkpoint::NoteSigner::generate("kiroku-report").unwrap();
    let spool = dir.path().join("spool");
    let j = kiroku::Journal::open(kiroku::JournalConfig::new(&spool, signer.clone())).unwrap();
    // One request a second for 10 minutes; minutes 4 and 5 fail; from minute 7 the model
    // has a new version; every 10th request was served by a fallback model.
    let t0 = 1_795_305_600_000_000_000i64;
    for s in 0..600i64 {
        let mut r = AuditRecord::new(format!("r{s}"), Timestamp::from_unix_nanos(t0 + s * 1_000_000_000));
        r.finished_at = Timestamp::from_unix_nanos(t0 + s * 1_000_000_000 + 200_000_000);
        r.gen_ai.request.model = Some("m".into());
        r.gen_ai.response.model = Some(if s % 10 == 0 { "m-fallback" } else { "m" }.into());
        r.provenance.model_version = Some(if s >= 420 { "v2" } else { "v1" }.into());
        if (240..360).contains(&s) {
            r.http.outcome = Outcome::Error;
            r.http.error = Some("upstream down".into());
        }
        j.append(r).await.unwrap();
    }
    j.shutdown().await.unwrap();
    let archive = dir.path().join("archive");
    kiroku_collector::compact::compact(
        &kiroku_collector::spool::LocalSpool::new(&spool),
        &kiroku_collector::archive_store::LocalArchive::open(&archive).unwrap(),
        &kiroku_collector::compact::CompactOptions::new(signer.verifier()),
        &mut |_| {},
    )
    .unwrap();
    let a = kiroku_collector::archive::Archive::open(&archive).unwrap();
    let s = kiroku_collector::report::summarize(
        &a,
        &kiroku_collector::report::ReportOptions {
            outage_error_rate: 0.5,
            verifier: Some(signer.verifier().into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(s.records, 600);
    assert_eq!(s.fallbacks, 60);
    assert_eq!(s.outages.len(), 1, "{:?}", s.outages);
    let o = &s.outages[0];
    assert_eq!(o.errors, 120, "{o:?}");
    let start: Timestamp = o.start.parse().unwrap();
    let end: Timestamp = o.end.parse().unwrap();
    // Bucket edges (10 s wide here) bracket minutes 4-5.
    assert!((start.unix_nanos() - (t0 + 240_000_000_000)).abs() <= 10_000_000_000, "{o:?}");
    assert!((end.unix_nanos() - (t0 + 360_000_000_000)).abs() <= 10_000_000_000, "{o:?}");
    let versions: Vec<(&str, &str)> = s
        .version_changes
        .iter()
        .filter(|v| v.model == "m")
        .map(|v| (v.version.as_str(), v.first_seen.as_str()))
        .collect();
    assert_eq!(versions.len(), 2, "{versions:?}");
    assert_eq!(versions[1].0, "v2");
    // Request 420 was served by the fallback model, so "m" first shows v2 at 421.
    assert!(versions[1].1.starts_with("2026-11-22T00:07:01"), "{versions:?}");
    assert!(s.integrity.iter().all(|c| c.gaps == 0 && c.checkpoints == "verified"));
}
