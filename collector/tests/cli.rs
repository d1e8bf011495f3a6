//! The `kiroku` binary end to end: a spool produced by the audited sample model over
//! real sockets, compacted by the real command, read back by DuckDB and pyarrow
//! (installed by scripts/test.sh into .venv), tampered with, crashed mid-run, and
//! turned into evidence bundles checked by kiroku and by an independent Python script.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use kiroku::Durability;
use kiroku_schemas::segment::{SegmentHeader, SegmentWriter};
use kiroku_schemas::{AuditRecord, ChainId, Timestamp};
mod support;
use support::{files_under, flip_middle_byte, kiroku, repo, rewrite, text};

use kiroku_tests::{AuditedServer, Conn, Stored, chat};

fn python() -> PathBuf {
    let p = std::env::var_os("KIROKU_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(
        p.exists(),
        "{} is missing: run scripts/test.sh, which installs the interop venv (duckdb, pyarrow, openai, blake3, pynacl)",
        p.display()
    );
    p
}

struct Fixture {
    records: Vec<Stored>,
    signer: kiroku_schemas::checkpoint::NoteSigner,
    dir: tempfile::TempDir,
    vkey: PathBuf,
}

impl Fixture {
    fn spool(&self) -> String {
        self.dir.path().join("spool").display().to_string()
    }
    fn archive(&self) -> String {
        self.dir.path().join("archive").display().to_string()
    }
    fn vkey(&self) -> String {
        self.vkey.display().to_string()
    }
    fn compact(&self) -> Output {
        kiroku(&["compact", "--spool", &self.spool(), "--archive", &self.archive(), "--pubkey", &self.vkey()])
    }

    /// `kiroku evidence` for two records into `<dir>/bundle`, which `kiroku verify
    /// --bundle` and the Python verifier both accept; the bundle's path.
    fn bundle_verified_by_both(&self, ids: [&String; 2]) -> PathBuf {
        let out = self.dir.path().join("bundle");
        let ev = kiroku(&[
            "evidence",
            "--archive",
            &self.archive(),
            "--record-id",
            ids[0],
            "--record-id",
            ids[1],
            "--pubkey",
            &self.vkey(),
            "--out",
            &out.display().to_string(),
        ]);
        assert!(ev.status.success(), "{}", text(&ev));
        let v = kiroku(&["verify", "--bundle", &out.display().to_string(), "--pubkey", &self.vkey()]);
        assert!(v.status.success(), "{}", text(&v));
        python_verifies_bundle(&out, &self.vkey, 2);
        out
    }
}

/// The Python verifier, which follows FORMAT.md with no kiroku code, accepts the bundle
/// `dir` and all its `records`, against the public key `vkey`.
fn python_verifies_bundle(dir: &Path, vkey: &Path, records: usize) {
    let py =
        Command::new(python()).arg(repo().join("tests/interop/verify_bundle.py")).arg(dir).arg(vkey).output().unwrap();
    let all = format!("{records} of {records} records verified");
    assert!(py.status.success() && text(&py).contains(&all), "{}", text(&py));
}

/// `n` requests through the audited sample model, journal sealed every ~64 KiB.
async fn fixture(n: usize) -> Fixture {
    fixture_with(n, 64 << 10).await
}

/// `n` requests, segments sealed at about `segment_bytes`.
async fn fixture_with(n: usize, segment_bytes: u64) -> Fixture {
    let srv = AuditedServer::start(
        move |c| {
            c.durability(Durability::Batched(std::time::Duration::from_millis(5))).segment_max_bytes(segment_bytes)
        },
        |l| l,
    )
    .await;
    let mut conn = Conn::connect(srv.addr).await.unwrap();
    for i in 0..n {
        let mut body = chat(&format!("question number {i} about audit logs"), i % 3 == 0);
        body["model"] = ["sample-1", "sample-2", "sample-3"][i % 3].into();
        body["temperature"] = temperature(i).into();
        // Above i64::MAX: no typed field holds it, the record keeps it as sent.
        body["seed"] = (u64::MAX - i as u64).into();
        let trace = format!("00-{:032x}-{:016x}-01", i + 1, i + 1);
        conn.post_json("/v1/chat/completions", &body, &[("traceparent", &trace)]).await.unwrap();
    }
    let verifier = srv.verifier.clone();
    let signer = srv.signer.clone();
    let (records, dir) = srv.finish().await;
    let vkey = dir.path().join("signer.vkey");
    std::fs::write(&vkey, verifier.to_key_text()).unwrap();
    Fixture { records, signer, dir, vkey }
}

/// The temperature request `i` asks for: values such as 0.0010030090270812437, which a
/// float parser that is not correctly rounded reads one ULP off.
fn temperature(i: usize) -> f64 {
    i as f64 / 997.0
}

fn by_model(records: &[Stored]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for r in records {
        let model =
            r.record.gen_ai.response.model.clone().or(r.record.gen_ai.request.model.clone()).unwrap_or("-".into());
        *m.entry(model).or_default() += 1;
    }
    m
}

fn read_with_python(archive: &str) -> serde_json::Value {
    let out = Command::new(python()).arg(repo().join("tests/interop/read_archive.py")).arg(archive).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_and_pyarrow_read_the_compacted_archive() {
    let f = fixture(90).await;
    let out = f.compact();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("90 record(s)"), "{}", text(&out));
    let got = read_with_python(&f.archive());
    let expected = by_model(&f.records);
    for engine in ["duckdb", "pyarrow"] {
        assert_eq!(got[engine]["rows"], 90, "{engine}");
        let models: BTreeMap<String, u64> = serde_json::from_value(got[engine]["by_model"].clone()).unwrap();
        assert_eq!(models, expected, "{engine}: SELECT model, count(*) GROUP BY model");
    }
    let today = f.records[0].record.started_at.date_string();
    assert_eq!(got["duckdb"]["dates"], serde_json::json!([today]), "the Hive partition column");
    assert_eq!(got["duckdb"]["outcomes"]["completed"], 90);
    assert_eq!(got["duckdb"]["with_sources"], 90);
    assert_eq!(got["duckdb"]["started_at_type"], "TIMESTAMP WITH TIME ZONE");
    // Every row's columns say what its payload says, floats to the bit, and the
    // temperatures are the ones the client sent (Python prints them with `repr`, the
    // shortest text that reads back as the same double, as Rust's `{:?}` does).
    assert_eq!(got["pyarrow"]["payload_mismatches"], serde_json::json!([]));
    let mut sent: Vec<f64> = (0..90).map(temperature).collect();
    sent.sort_by(f64::total_cmp);
    let sent: Vec<String> = sent.iter().map(|t| format!("{t:?}")).collect();
    assert_eq!(got["pyarrow"]["temperatures"], serde_json::json!(sent), "temperatures as sent");
    // The schema as another engine sees it is stable (checked in).
    let schema: Vec<String> = serde_json::from_value(got["pyarrow"]["schema"].clone()).unwrap();
    let path = repo().join("collector/schema/records.v1.pyarrow.txt");
    let text_schema = schema.join("\n") + "\n";
    if std::env::var_os("KIROKU_BLESS").is_some() {
        std::fs::write(&path, &text_schema).unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(&path).unwrap_or_default(),
        text_schema,
        "archive schema as pyarrow reads it changed"
    );

    let v = kiroku(&["verify", "--archive", &f.archive(), "--pubkey", &f.vkey()]);
    assert!(v.status.success(), "{}", text(&v));
    // Compacting again is a no-op: exactly once.
    let again = f.compact();
    assert!(text(&again).contains("compacted 0 segment(s), 0 record(s)"), "{}", text(&again));
    assert_eq!(read_with_python(&f.archive())["duckdb"]["rows"], 90);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_and_explain_use_the_archive() {
    let f = fixture(12).await;
    assert!(f.compact().status.success());
    let target = &f.records[4].record;
    let found = kiroku(&["find", "--archive", &f.archive(), "--record-id", &target.record_id]);
    assert!(found.status.success(), "{}", text(&found));
    assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 1);
    assert!(text(&found).contains(&target.record_id));
    // A record id pasted in upper case is the same id.
    let upper = kiroku(&["find", "--archive", &f.archive(), "--record-id", &target.record_id.to_ascii_uppercase()]);
    assert_eq!(upper.stdout, found.stdout, "{}", text(&upper));
    let trace = target.trace.trace_id.clone().unwrap();
    let by_trace = kiroku(&["find", "--archive", &f.archive(), "--trace-id", &trace, "--json"]);
    let line: serde_json::Value =
        serde_json::from_slice(by_trace.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["record_id"], target.record_id.as_str());
    // As pasted from a log: upper case, or the whole traceparent header.
    for pasted in [trace.to_ascii_uppercase(), format!("00-{trace}-00f067aa0ba902b7-01")] {
        let again = kiroku(&["find", "--archive", &f.archive(), "--trace-id", &pasted, "--json"]);
        assert_eq!(again.stdout, by_trace.stdout, "{pasted}: {}", text(&again));
    }
    // A mistyped id is an error, not "no such record".
    let typo = kiroku(&["find", "--archive", &f.archive(), "--trace-id", &trace[1..]]);
    assert_eq!(typo.status.code(), Some(2), "{}", text(&typo));
    assert!(text(&typo).contains("is not a W3C trace id"), "{}", text(&typo));
    // Which inference produced this text? The exact output text finds its record.
    let text_file = f.dir.path().join("output.txt");
    std::fs::write(&text_file, kiroku_examples::sample::answer("sample-2", "question number 4 about audit logs"))
        .unwrap();
    let by_content =
        kiroku(&["find", "--archive", &f.archive(), "--content", &text_file.display().to_string(), "--json"]);
    let rows: Vec<&[u8]> = by_content.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
    assert_eq!(rows.len(), 1, "{}", text(&by_content));
    assert_eq!(AuditRecord::from_json(rows[0]).unwrap().record_id, target.record_id);
    // Saved with the newline an editor or `echo` adds: found, and the answer says how.
    let mut saved = std::fs::read(&text_file).unwrap();
    saved.push(b'\n');
    std::fs::write(&text_file, saved).unwrap();
    let by_saved = kiroku(&["find", "--archive", &f.archive(), "--content", &text_file.display().to_string()]);
    assert!(text(&by_saved).contains(&target.record_id), "{}", text(&by_saved));
    assert!(text(&by_saved).contains("without the trailing whitespace"), "{}", text(&by_saved));
    assert!(text(&by_saved).contains("1 record(s)"), "{}", text(&by_saved));
    let by_model = kiroku(&["find", "--archive", &f.archive(), "--model", "sample-3"]);
    assert_eq!(String::from_utf8_lossy(&by_model.stdout).lines().count(), 4);
    let today = Timestamp::now().date_string();
    let none = kiroku(&["find", "--archive", &f.archive(), "--to", "2000-01-01"]);
    assert_eq!(String::from_utf8_lossy(&none.stdout).lines().count(), 0);
    // An empty range is a mistake to point out, not an answer of "0 records".
    for verb in ["find", "report"] {
        let empty = kiroku(&[verb, "--archive", &f.archive(), "--from", &today, "--to", &today]);
        assert_eq!(empty.status.code(), Some(2), "{verb}: {}", text(&empty));
        assert!(text(&empty).contains("is not after --from"), "{verb}: {}", text(&empty));
    }
    let all = kiroku(&["find", "--archive", &f.archive(), "--from", &today]);
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 12, "{}", text(&all));

    let ex =
        kiroku(&["explain", &target.record_id.to_ascii_uppercase(), "--archive", &f.archive(), "--pubkey", &f.vkey()]);
    assert!(ex.status.success(), "{}", text(&ex));
    let page = text(&ex);
    let signed = format!("signature by {} verified", f.signer.verifier());
    for want in [
        "provenance",
        "sample-2",
        "rights holder Example",
        "metadata-header",
        "sample-moderation",
        "included in checkpoint of size 12",
        &signed,
        "parameter   seed 18446744073709551611",
    ] {
        assert!(page.contains(want), "explain lacks {want:?}:\n{page}");
    }
    let missing = kiroku(&["explain", "no-such-id", "--archive", &f.archive()]);
    assert_eq!(missing.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_goes_away_ends_find_quietly() {
    // `kiroku find ... | head -1`: the pipe closes before kiroku has written everything.
    let f = fixture(20).await;
    assert!(f.compact().status.success());
    for args in [
        &["find", "--archive", &f.archive(), "--from", "2000-01-01", "--json"][..],
        &["find", "--archive", &f.archive(), "--from", "2000-01-01"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kiroku"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(out.status.signal(), Some(libc::SIGPIPE), "{args:?}: ended by SIGPIPE, as `cat` would: {stderr}");
    }
}

/// Standard output on a full disk (`/dev/full` answers every write with ENOSPC): each
/// command says it cannot write its output and exits 2. It used to panic (exit 101),
/// which a script cannot tell from a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_to_a_full_disk_is_an_io_error_with_exit_2_not_a_panic() {
    let f = fixture(5).await;
    assert!(f.compact().status.success());
    let id = f.records[2].record.record_id.clone();
    let (archive, spool, vkey) = (f.archive(), f.spool(), f.vkey());
    let runs: [&[&str]; 6] = [
        &["find", "--archive", &archive, "--from", "2000-01-01"],
        &["find", "--archive", &archive, "--record-id", &id, "--json"],
        &["explain", &id, "--archive", &archive, "--pubkey", &vkey],
        &["verify", "--archive", &archive, "--pubkey", &vkey],
        &["verify", "--spool", &spool, "--json"],
        &["compact", "--spool", &spool, "--archive", &archive, "--pubkey", &vkey],
    ];
    for args in runs {
        let full = std::fs::OpenOptions::new().write(true).open("/dev/full").expect("/dev/full (Linux)");
        let out = Command::new(env!("CARGO_BIN_EXE_kiroku")).args(args).stdout(full).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot write to standard output"), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_bundles_verify_with_kiroku_and_with_python() {
    let f = fixture(20).await;
    assert!(f.compact().status.success());
    let ids = [&f.records[3].record.record_id, &f.records[17].record.record_id];
    let out = f.bundle_verified_by_both(ids);

    // Edit one byte of a record: both verifiers reject the bundle.
    let rec = out.join(format!("records/{}.json", ids[0]));
    let mut bytes = std::fs::read(&rec).unwrap();
    let pos = bytes.windows(6).position(|w| w == b"sample").unwrap();
    bytes[pos] = b'S';
    std::fs::write(&rec, bytes).unwrap();
    assert_eq!(
        kiroku(&["verify", "--bundle", &out.display().to_string(), "--pubkey", &f.vkey()]).status.code(),
        Some(1)
    );
    let py = Command::new(python()).arg(repo().join("tests/interop/verify_bundle.py")).arg(&out).output().unwrap();
    assert_eq!(py.status.code(), Some(1), "{}", text(&py));
    // A bundle from another key is refused against the trusted key.
    let other = f.dir.path().join("other.vkey");
    std::fs::write(&other, kiroku_schemas::checkpoint::NoteSigner::generate("x").unwrap().verifier().to_key_text())
        .unwrap();
    assert_eq!(
        kiroku(&["verify", "--bundle", &out.display().to_string(), "--pubkey", &other.display().to_string()])
            .status
            .code(),
        Some(1)
    );
}

fn first_file(archive: &str) -> PathBuf {
    let m = kiroku_collector::manifest::Manifest::load(Path::new(archive)).unwrap();
    Path::new(archive).join(&m.files().next().unwrap().1.path)
}

fn set_manifest_digest(archive: &str, file: &Path) {
    let mut m = kiroku_collector::manifest::Manifest::load(Path::new(archive)).unwrap();
    let digest = kiroku_schemas::digest::blake3_hex(&std::fs::read(file).unwrap());
    for e in m.chains.values_mut() {
        for f in &mut e.files {
            if Path::new(archive).join(&f.path) == file {
                f.blake3 = digest.clone();
            }
        }
    }
    m.save(Path::new(archive)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_tampering_is_reported_with_exit_1() {
    use arrow_array::Array as _;
    use arrow_array::cast::AsArray;
    use std::sync::Arc;
    let f = fixture(30).await;
    assert!(f.compact().status.success());
    let pristine = tempfile::tempdir().unwrap();
    let copy = |from: &str, to: &Path| {
        let st = Command::new("cp").args(["-a", &format!("{from}/."), &to.display().to_string()]).status().unwrap();
        assert!(st.success());
    };
    copy(&f.archive(), pristine.path());
    let restore = || {
        std::fs::remove_dir_all(f.archive()).unwrap();
        std::fs::create_dir_all(f.archive()).unwrap();
        copy(&pristine.path().display().to_string(), Path::new(&f.archive()));
    };
    let verify = || kiroku(&["verify", "--archive", &f.archive(), "--pubkey", &f.vkey()]);
    assert!(verify().status.success());

    type Case = (&'static str, Box<dyn Fn(&Path)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "changed payload",
            Box::new(|file: &Path| {
                rewrite(file, |b| {
                    let idx = b.schema().index_of("payload").unwrap();
                    let col = b.column(idx).as_binary::<i32>();
                    let vals: Vec<Vec<u8>> = (0..col.len())
                        .map(|i| {
                            let mut v = col.value(i).to_vec();
                            if i == 0 {
                                let p = v
                                    .windows(8)
                                    .position(|w| w == b"sample-1" || w == b"sample-2" || w == b"sample-3")
                                    .unwrap();
                                v[p + 7] = b'9';
                            }
                            v
                        })
                        .collect();
                    let mut cols = b.columns().to_vec();
                    cols[idx] = Arc::new(arrow_array::BinaryArray::from_iter_values(vals));
                    arrow_array::RecordBatch::try_new(b.schema(), cols).unwrap()
                });
            }),
            "hash does not match the payload",
        ),
        ("deleted row", Box::new(|file: &Path| rewrite(file, |b| b.slice(1, b.num_rows() - 1))), "missing (deleted)"),
        (
            "replaced file",
            Box::new(|file: &Path| {
                let other = std::fs::read_dir(file.parent().unwrap())
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .find(|p| p != file)
                    .unwrap();
                std::fs::copy(other, file).unwrap();
            }),
            "differs from the manifest",
        ),
        ("removed file", Box::new(|file: &Path| std::fs::remove_file(file).unwrap()), "unreadable"),
    ];
    for (name, tamper, expect) in cases {
        tamper(&first_file(&f.archive()));
        let out = verify();
        assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
        assert!(text(&out).contains(expect), "{name}: expected {expect:?} in\n{}", text(&out));
        restore();
    }
    // A query over a file gone from the archive names it and exits 1 (damage), not 2.
    std::fs::remove_file(first_file(&f.archive())).unwrap();
    let gone = kiroku(&["find", "--archive", &f.archive(), "--from", "2000-01-01"]);
    assert_eq!(gone.status.code(), Some(1), "{}", text(&gone));
    assert!(text(&gone).contains("listed in the manifest but missing"), "{}", text(&gone));
    restore();
    // An edited analytic column, with the manifest's digest updated to match: the
    // column no longer matches the payload it is derived from.
    let file = first_file(&f.archive());
    rewrite(&file, |b| {
        let idx = b.schema().index_of("model").unwrap();
        let mut cols = b.columns().to_vec();
        cols[idx] = Arc::new(arrow_array::StringArray::from(vec![Some("forged-model"); b.num_rows()]));
        arrow_array::RecordBatch::try_new(b.schema(), cols).unwrap()
    });
    set_manifest_digest(&f.archive(), &file);
    let out = verify();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("do not match the payloads") && text(&out).contains("model"), "{}", text(&out));
    restore();
    // Two payloads that are not records: both are listed, not just the first.
    rewrite(&file, |b| {
        let idx = b.schema().index_of("payload").unwrap();
        let col = b.column(idx).as_binary::<i32>();
        let vals: Vec<Vec<u8>> =
            (0..col.len()).map(|i| if i < 2 { b"{not a record".to_vec() } else { col.value(i).to_vec() }).collect();
        let mut cols = b.columns().to_vec();
        cols[idx] = Arc::new(arrow_array::BinaryArray::from_iter_values(vals));
        arrow_array::RecordBatch::try_new(b.schema(), cols).unwrap()
    });
    set_manifest_digest(&f.archive(), &file);
    let out = verify();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(text(&out).matches("payload is not a valid record").count(), 2, "{}", text(&out));
    restore();
    assert!(verify().status.success());
}

/// Run the compactor until it reaches `step`, then SIGKILL it; false if it finished first.
fn pause_and_kill(f: &Fixture, step: &str) -> bool {
    pause_and_kill_at(&f.spool(), &f.archive(), &f.vkey(), step)
}

/// [`pause_and_kill`] on any spool and archive.
fn pause_and_kill_at(spool: &str, archive: &str, vkey: &str, step: &str) -> bool {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiroku"))
        .args(["compact", "--spool", spool, "--archive", archive, "--pubkey", vkey])
        .env("KIROKU_TEST_PAUSE_AT", step)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = child.stderr.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        use std::io::Read;
        let n = err.read(&mut buf).unwrap();
        if n == 0 {
            assert!(child.wait().unwrap().success(), "compactor failed: {}", String::from_utf8_lossy(&seen));
            return false;
        }
        seen.extend_from_slice(&buf[..n]);
        if String::from_utf8_lossy(&seen).contains("kiroku-test-pause") {
            break;
        }
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compactor_killed_at_any_step_leaves_every_record_exactly_once() {
    let f = fixture_with(150, 24 << 10).await;
    let segments = std::fs::read_dir(f.dir.path().join("spool"))
        .unwrap()
        .flat_map(|c| std::fs::read_dir(c.unwrap().path()).unwrap())
        .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "seg"))
        .count();
    assert!(segments >= 3, "the fixture has several segments ({segments})");
    // Kill it at each commit step in turn, one run per kill, until the spool is drained:
    // each run starts where the killed one left off.
    let steps = ["before_parquet", "after_parquet", "after_manifest", "after_move"];
    let mut per_step = [0usize; 4];
    'drain: loop {
        for (i, step) in steps.iter().enumerate() {
            if !pause_and_kill(&f, step) {
                break 'drain;
            }
            per_step[i] += 1;
        }
    }
    let kills: usize = per_step.iter().sum();
    assert!(per_step.iter().all(|n| *n >= 2), "every step killed at least twice: {per_step:?}");
    eprintln!("compactor crash suite: {kills} SIGKILLs ({per_step:?} at {steps:?}) over {segments} segments");
    let out = f.compact();
    assert!(out.status.success(), "{}", text(&out));
    let v = kiroku(&["verify", "--archive", &f.archive(), "--pubkey", &f.vkey()]);
    assert!(v.status.success(), "after {kills} kills: {}", text(&v));
    assert!(text(&v).contains("150 record(s)"), "{}", text(&v));
    let got = read_with_python(&f.archive());
    assert_eq!(got["duckdb"]["rows"], 150, "every record exactly once");
    assert_eq!(got["pyarrow"]["payload_mismatches"], serde_json::json!([]), "every row as its payload says");
    assert_eq!(
        serde_json::from_value::<BTreeMap<String, u64>>(got["duckdb"]["by_model"].clone()).unwrap(),
        by_model(&f.records)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pubkey_moves_no_segment_and_the_right_one_then_compacts_everything() {
    let f = fixture_with(30, 16 << 10).await;
    let other = f.dir.path().join("other.vkey");
    std::fs::write(
        &other,
        kiroku_schemas::checkpoint::NoteSigner::generate("kiroku").unwrap().verifier().to_key_text(),
    )
    .unwrap();
    let spool_files = || files_under(Path::new(&f.spool()), "seg");
    let before = spool_files();
    assert!(before.len() >= 2, "several sealed segments");
    let other = other.display().to_string();
    let with_other_key = || kiroku(&["compact", "--spool", &f.spool(), "--archive", &f.archive(), "--pubkey", &other]);
    let wrong = with_other_key();
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(
        text(&wrong).contains("NOT VERIFIABLE WITH THE CONFIGURED KEY") && text(&wrong).contains("check --pubkey"),
        "{}",
        text(&wrong)
    );
    assert!(!text(&wrong).contains("QUARANTINED"), "{}", text(&wrong));
    assert_eq!(spool_files(), before, "every segment where it was");
    assert!(!Path::new(&f.spool()).join("quarantine").exists());
    let right = f.compact();
    assert!(right.status.success(), "{}", text(&right));
    assert!(text(&right).contains("30 record(s)"), "{}", text(&right));

    // A compacted segment back in the spool (a run that stopped before moving it): with
    // the wrong key it cannot be told to be the one compacted, and stays where it is.
    let compacted = files_under(&Path::new(&f.spool()).join("compacted"), "seg");
    let chain = compacted[0].parent().unwrap().file_name().unwrap();
    let back = Path::new(&f.spool()).join(chain).join(compacted[0].file_name().unwrap());
    std::fs::copy(&compacted[0], &back).unwrap();
    let wrong = with_other_key();
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(text(&wrong).contains("NOT VERIFIABLE WITH THE CONFIGURED KEY"), "{}", text(&wrong));
    assert!(!text(&wrong).contains("QUARANTINED"), "{}", text(&wrong));
    assert!(back.exists());
    let right = f.compact();
    assert!(right.status.success() && text(&right).contains("compacted 0 segment(s)"), "{}", text(&right));
    assert!(!back.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_segment_is_quarantined_and_other_chains_go_on() {
    let f = fixture(40).await;
    let spool = f.dir.path().join("spool");
    let chain_dir = std::fs::read_dir(&spool).unwrap().next().unwrap().unwrap().path();
    // A second chain from another writer in the same spool.
    let other =
        kiroku::Journal::open(kiroku::JournalConfig::new(&spool, f.signer.clone()).writer_name("other")).unwrap();
    for i in 0..3 {
        let mut r = AuditRecord::new(format!("other-{i}"), Timestamp::now());
        r.gen_ai.request.model = Some("other-model".into());
        other.append(r).await.unwrap();
    }
    other.shutdown().await.unwrap();
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&chain_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    segs.sort();
    assert!(segs.len() >= 2);
    // Flip a byte in the middle of the first segment.
    let original = flip_middle_byte(&segs[0]);
    let out = f.compact();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("QUARANTINED") && text(&out).contains("(behind an earlier segment of its chain)"),
        "{}",
        text(&out)
    );
    let name = segs[0].file_name().unwrap().to_string_lossy().into_owned();
    let chain = chain_dir.file_name().unwrap().to_string_lossy().into_owned();
    let q = spool.join("quarantine").join(&chain);
    assert!(q.join(&name).exists(), "moved to quarantine, never dropped");
    let report = std::fs::read_to_string(q.join(format!("{name}.report.txt"))).unwrap();
    assert!(report.contains("byte offset") && report.contains("seq"), "{report}");
    assert!(segs[1].exists(), "later segments of the chain wait in the spool");
    assert!(text(&out).contains("3 record(s)"), "the other chain was compacted: {}", text(&out));
    let found = kiroku(&["find", "--archive", &f.archive(), "--model", "other-model"]);
    assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 3);

    // Later runs (`--watch` passes) leave the later segments waiting, and say why: they
    // are not quarantined one a run as discontinuities of the chain.
    for _ in 0..2 {
        let again = f.compact();
        assert_eq!(again.status.code(), Some(1), "{}", text(&again));
        let waits = format!(
            "waiting: {chain}/{} (the chain's segment from seq",
            segs[1].file_name().unwrap().to_string_lossy()
        );
        assert!(text(&again).contains(&waits) && text(&again).contains("is in quarantine"), "{}", text(&again));
        assert!(!text(&again).contains("QUARANTINED"), "{}", text(&again));
        assert!(segs[1..].iter().all(|s| s.exists()), "{}", text(&again));
    }
    assert_eq!(std::fs::read_dir(&q).unwrap().count(), 2, "the bad segment and its report, nothing more");
    let v = kiroku(&["verify", "--spool", &spool.display().to_string(), "--pubkey", &f.vkey.display().to_string()]);
    assert!(
        text(&v).contains(&format!(
            "a segment of this chain from seq {} is in quarantine",
            segs[0].file_stem().unwrap().to_string_lossy().parse::<u64>().unwrap()
        )),
        "{}",
        text(&v)
    );
    // A good copy put back in the spool fills the gap: the chain is compacted whole.
    std::fs::write(&segs[0], &original).unwrap();
    let healed = f.compact();
    assert!(healed.status.success(), "{}", text(&healed));
    let v = kiroku(&["verify", "--archive", &f.archive(), "--pubkey", &f.vkey.display().to_string()]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    let all = kiroku(&["find", "--archive", &f.archive(), "--from", "2000-01-01"]);
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count(), 40 + 3, "every record of both chains");
}

/// A segment that fails verification and of which no good copy exists: the operator
/// accepts the gap, the rest of the chain reaches the archive, `verify` notes the gap
/// and still checks everything around it, and records on both sides of it are proven
/// to a third party.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_the_operator_accepts_lets_the_rest_of_the_chain_reach_the_archive() {
    let f = fixture(40).await;
    let spool = f.dir.path().join("spool");
    let chain_dir = std::fs::read_dir(&spool).unwrap().next().unwrap().unwrap().path();
    let chain = chain_dir.file_name().unwrap().to_string_lossy().into_owned();
    let segs = files_under(&chain_dir, "seg");
    assert!(segs.len() >= 3, "{segs:?}");
    let first_seq = |p: &Path| p.file_stem().unwrap().to_string_lossy().parse::<u64>().unwrap();
    let (from, to) = (first_seq(&segs[1]), first_seq(&segs[2]));
    let good_copy = flip_middle_byte(&segs[1]);
    let out = f.compact();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("QUARANTINED"), "{}", text(&out));
    let option = format!("--accept-gap {chain}:{from}");
    let name = segs[1].file_name().unwrap().to_string_lossy().into_owned();
    let report = std::fs::read_to_string(spool.join("quarantine").join(&chain).join(format!("{name}.report.txt")));
    assert!(report.as_ref().unwrap().contains(&option), "{report:?}");

    let accepting = |gap: &str| {
        kiroku(&[
            "compact",
            "--spool",
            &f.spool(),
            "--archive",
            &f.archive(),
            "--pubkey",
            &f.vkey(),
            "--accept-gap",
            gap,
        ])
    };
    // A gap named at another seq is not the one the chain has: it still waits.
    let wrong = accepting(&format!("{chain}:{}", from + 1));
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(text(&wrong).contains(&option) && !text(&wrong).contains("gap accepted"), "{}", text(&wrong));
    let bad = accepting("not-a-chain:3");
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(text(&bad).contains("not a chain id"), "{}", text(&bad));

    let accepted = accepting(&format!("{chain}:{from}"));
    assert!(accepted.status.success(), "{}", text(&accepted));
    let missing = to - from;
    assert!(
        text(&accepted).contains(&format!("gap accepted: {chain}: seq {from}..{to} ({missing} record(s))")),
        "{}",
        text(&accepted)
    );
    assert!(segs[2..].iter().all(|s| !s.exists()), "the later segments are compacted");
    assert!(spool.join("quarantine").join(&chain).join(segs[1].file_name().unwrap()).exists(), "kept as evidence");
    let all = kiroku(&["find", "--archive", &f.archive(), "--from", "2000-01-01"]);
    assert_eq!(String::from_utf8_lossy(&all.stdout).lines().count() as u64, 40 - missing);
    // Running on (a `--watch` pass with the option still given) records nothing more.
    let again = accepting(&format!("{chain}:{from}"));
    assert!(again.status.success() && !text(&again).contains("gap accepted"), "{}", text(&again));
    let manifest_path = f.dir.path().join("archive/_kiroku/manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["version"], 5);
    assert_eq!(manifest["chains"][&chain]["gaps"].as_array().unwrap().len(), 1);

    let verify = || kiroku(&["verify", "--archive", &f.archive(), "--pubkey", &f.vkey()]);
    let v = verify();
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(text(&v).contains(&format!("seq {from}..{to} ({missing} record(s)) not in the archive")), "{}", text(&v));

    // Proven on both sides of the gap: before it against the checkpoint that sealed the
    // segment before it, after it against the chain's newest.
    let id_at = |seq: u64| f.records.iter().find(|r| r.seq == seq).unwrap().record.record_id.clone();
    let (before, after) = (id_at(0), id_at(to));
    for (id, size) in [(&before, Some(from)), (&after, None)] {
        let e = kiroku(&["explain", id, "--archive", &f.archive(), "--pubkey", &f.vkey()]);
        assert!(e.status.success(), "{}", text(&e));
        let included = match size {
            Some(n) => format!("inclusion proof: included in checkpoint of size {n} "),
            None => "inclusion proof: included in checkpoint of size ".to_owned(),
        };
        assert!(text(&e).contains(&included), "{}", text(&e));
    }
    f.bundle_verified_by_both([&before, &after]);

    // What the gap says the chain goes on from is checked by the signed checkpoints after
    // it; a manifest without the gap shows the records as deleted.
    let original = std::fs::read(&manifest_path).unwrap();
    let mut edited: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let frontier = &mut edited["chains"][&chain]["gaps"][0]["frontier"][0];
    let flipped = frontier.as_str().unwrap().replacen(|c: char| c.is_ascii_hexdigit(), "0", 1);
    let flipped = if flipped == frontier.as_str().unwrap() { flipped.replacen('0', "1", 1) } else { flipped };
    *frontier = flipped.into();
    std::fs::write(&manifest_path, serde_json::to_vec(&edited).unwrap()).unwrap();
    let v = verify();
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(text(&v).contains("differs from the signed checkpoint"), "{}", text(&v));
    let mut edited: serde_json::Value = serde_json::from_slice(&original).unwrap();
    edited["chains"][&chain]["gaps"] = serde_json::json!([]);
    std::fs::write(&manifest_path, serde_json::to_vec(&edited).unwrap()).unwrap();
    let v = verify();
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(text(&v).contains("missing (deleted)"), "{}", text(&v));
    std::fs::write(&manifest_path, &original).unwrap();
    assert_eq!(verify().status.code(), Some(0));

    // A good copy that turns up after the gap was accepted does not fill it (the chain
    // went on without it): it is quarantined next to the bad one, which stays.
    std::fs::write(&segs[1], &good_copy).unwrap();
    let late = f.compact();
    assert_eq!(late.status.code(), Some(1), "{}", text(&late));
    assert!(text(&late).contains("QUARANTINED"), "{}", text(&late));
    let q = spool.join("quarantine").join(&chain);
    assert!(std::fs::read(q.join(&name)).unwrap() != good_copy, "the bad copy is kept");
    assert!(std::fs::read(q.join(format!("{name}.1"))).unwrap() == good_copy, "the late copy is next to it");
    assert!(q.join(format!("{name}.1.report.txt")).exists());
    assert_eq!(verify().status.code(), Some(0));
}

/// A spool with one empty chain directory, for segments written by hand.
struct HandMade {
    dir: tempfile::TempDir,
    signer: kiroku_schemas::checkpoint::NoteSigner,
    vkey: PathBuf,
    chain: ChainId,
    chain_dir: PathBuf,
}

/// A temporary directory with a fresh signing key named `key_name`, its public key in
/// `signer.vkey`, and the path of a spool in it (`spool/`, not created).
fn keyed_dir(key_name: &str) -> (tempfile::TempDir, kiroku_schemas::checkpoint::NoteSigner, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let signer = kiroku_schemas::checkpoint::NoteSigner::generate(key_name).unwrap();
    let vkey = dir.path().join("signer.vkey");
    std::fs::write(&vkey, signer.verifier().to_key_text()).unwrap();
    let spool = dir.path().join("spool");
    (dir, signer, vkey, spool)
}

/// `kiroku compact` of the spool in a [`HandMade`] directory `dir` into its `archive/`,
/// checking signatures with `vkey`, with `extra` options.
fn compact_hand_made(dir: &Path, vkey: &Path, extra: &[&str]) -> Output {
    let (spool, archive) = (dir.join("spool").display().to_string(), dir.join("archive").display().to_string());
    let vkey = vkey.display().to_string();
    let mut args = vec!["compact", "--spool", &spool, "--archive", &archive, "--pubkey", &vkey];
    args.extend_from_slice(extra);
    kiroku(&args)
}

fn hand_made(key_name: &str) -> HandMade {
    let (dir, signer, vkey, _) = keyed_dir(key_name);
    let chain = ChainId::new_v7();
    let chain_dir = dir.path().join("spool").join(chain.to_string());
    std::fs::create_dir_all(&chain_dir).unwrap();
    HandMade { dir, signer, vkey, chain, chain_dir }
}

/// The leavings of writer `writer` that died in `chain_dir`: a lock nobody holds, its
/// name, and the bytes of an open segment of `n` records (model "m") from genesis.
fn dead_writer(chain_dir: &Path, chain: ChainId, writer: &str, n: u64) -> Vec<u8> {
    std::fs::write(chain_dir.join("lock"), b"").unwrap();
    std::fs::write(chain_dir.join("writer"), format!("{writer}\n")).unwrap();
    let mut w = SegmentWriter::new(Vec::new(), SegmentHeader::genesis(chain)).unwrap();
    for seq in 0..n {
        let mut r = AuditRecord::new(format!("{writer}-{seq}"), Timestamp::now());
        (r.chain_id, r.seq) = (chain, seq);
        r.gen_ai.request.model = Some("m".into());
        w.append_record(&r.to_json()).unwrap();
    }
    w.into_inner()
}

/// [`dead_writer`]'s leavings with six records, and its open segment written with a
/// byte flipped in the middle: corrupt before its tail.
fn dead_writer_corrupt(chain_dir: &Path, chain: ChainId, writer: &str) {
    let mut bytes = dead_writer(chain_dir, chain, writer, 6);
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x20;
    std::fs::write(chain_dir.join("00000000000000000000.open"), bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_segment_whose_writer_is_gone_reaches_the_archive() {
    let HandMade { dir, signer, vkey, chain, chain_dir } = hand_made("orphan");
    // A writer that died: a lock file nobody holds, an open segment with a torn tail.
    std::fs::write(chain_dir.join("lock"), b"").unwrap();
    let mut w = SegmentWriter::new(Vec::new(), SegmentHeader::genesis(chain)).unwrap();
    for seq in 0..5u64 {
        let mut r = AuditRecord::new(format!("orphan-{seq}"), Timestamp::now());
        r.chain_id = chain;
        r.seq = seq;
        r.http.method = "POST".into();
        r.http.route = "/v1/chat/completions".into();
        r.gen_ai.request.model = Some("last-words".into());
        w.append_record(&r.to_json()).unwrap();
        if seq == 2 {
            w.append_checkpoint(&signer, "kiroku", Timestamp::now()).unwrap();
        }
    }
    let mut bytes = w.into_inner();
    bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7]); // torn final frame
    std::fs::write(chain_dir.join("00000000000000000000.open"), bytes).unwrap();
    let (spool, archive) =
        (dir.path().join("spool").display().to_string(), dir.path().join("archive").display().to_string());
    let out = kiroku(&["compact", "--spool", &spool, "--archive", &archive, "--pubkey", &vkey.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("5 record(s)")
            && text(&out).contains("1 from writers that are gone")
            && text(&out).contains("torn tail"),
        "{}",
        text(&out)
    );
    let found = kiroku(&["find", "--archive", &archive, "--model", "last-words"]);
    assert_eq!(
        String::from_utf8_lossy(&found.stdout).lines().count(),
        5,
        "a dead instance's last records reach the archive"
    );
    // The writer that comes back continues after them.
    let head = std::fs::read(chain_dir.join("head")).unwrap();
    let h = kiroku_schemas::segment::SegmentReader::open(&head[..]).unwrap();
    assert_eq!(h.header().first_seq, 5);
}

/// A writer that died left an open segment corrupt in its middle; the next process
/// with its name found it so, kept it as `*.corrupt` and started a new chain. Its
/// records (acknowledged once) must not vanish from the collector's view: `verify
/// --spool` names the file, and `compact` quarantines it with a report and exits 1,
/// while the new chain is compacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_the_journal_found_corrupt_is_reported_and_quarantined() {
    let HandMade { dir, signer, vkey, chain, chain_dir } = hand_made("corrupt-open");
    dead_writer_corrupt(&chain_dir, chain, "node-a");
    let spool = dir.path().join("spool");
    let j = kiroku::Journal::open(kiroku::JournalConfig::new(&spool, signer.clone()).writer_name("node-a")).unwrap();
    assert_ne!(j.chain_id(), chain, "the corrupt chain is not taken back");
    assert!(j.recovery().is_some_and(|r| r.corrupt.is_some()));
    for i in 0..3 {
        let mut r = AuditRecord::new(format!("after-{i}"), Timestamp::now());
        r.gen_ai.request.model = Some("next-chain".into());
        j.append(r).await.unwrap();
    }
    j.shutdown().await.unwrap();
    let corrupt = chain_dir.join("00000000000000000000.corrupt");
    assert!(corrupt.exists());
    let (spool, archive, vkey) =
        (spool.display().to_string(), dir.path().join("archive").display().to_string(), vkey.display().to_string());
    let v = kiroku(&["verify", "--spool", &spool, "--pubkey", &vkey]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(text(&v).contains("00000000000000000000.corrupt"), "{}", text(&v));
    let out = kiroku(&["compact", "--spool", &spool, "--archive", &archive, "--pubkey", &vkey]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("QUARANTINED") && text(&out).contains("3 record(s)"), "{}", text(&out));
    let q = dir.path().join("spool").join("quarantine").join(chain.to_string());
    assert!(q.join("00000000000000000000.corrupt").exists(), "moved to quarantine, never dropped");
    let report = std::fs::read_to_string(q.join("00000000000000000000.corrupt.report.txt")).unwrap();
    assert!(report.contains("byte offset") && report.contains("corrupt"), "{report}");
    assert!(!corrupt.exists());
    let found = kiroku(&["find", "--archive", &archive, "--model", "next-chain"]);
    assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 3);
    // Reported once: the next run has nothing left to say about it.
    let again = kiroku(&["compact", "--spool", &spool, "--archive", &archive, "--pubkey", &vkey]);
    assert!(again.status.success(), "{}", text(&again));
}

/// A Sync, FailOpen journal configuration on `spool` whose disk can be made to fail.
fn faulty_journal(
    spool: &Path,
    signer: &kiroku_schemas::checkpoint::NoteSigner,
) -> (std::sync::Arc<kiroku::journal::Faults>, kiroku::JournalConfig) {
    let faults = kiroku::journal::Faults::new();
    let cfg = kiroku::JournalConfig::new(spool, signer.clone())
        .durability(Durability::Sync)
        .on_failure(kiroku::FailurePolicy::FailOpen)
        .fault_injection(faults.clone());
    (faults, cfg)
}

/// Append a record, lose the next one to a failed write, and stop: the journal then
/// owes its chain a statement of one loss, kept in the chain's `lost` file.
async fn stop_owing_one_loss(j: &kiroku::Journal, faults: &kiroku::journal::Faults) {
    use std::sync::atomic::Ordering;
    j.append(AuditRecord::new("kept", Timestamp::now())).await.unwrap();
    faults.fail_writes.store(true, Ordering::SeqCst);
    assert!(j.append(AuditRecord::new("lost", Timestamp::now())).await.is_err());
    faults.clear();
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    j.flush().await.unwrap();
    j.shutdown().await.unwrap();
}

/// A writer that stopped after losses no record of its chain states yet keeps them in
/// the chain's `lost` file. `verify --spool` shows them as a note: the log is not
/// damaged (exit 0), but an investigator reading the spool sees the count. Compaction,
/// the writer being gone, notes them in the manifest, where `verify --archive` and
/// `report` show them; the writer's next process states them in its first record, and
/// the note goes once that record is archived, so they are counted once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losses_a_stopped_writer_could_not_state_yet_are_shown_by_verify_spool() {
    let (dir, signer, vkey, spool) = keyed_dir("lost-note");
    let (faults, cfg) = faulty_journal(&spool, &signer);
    let j = kiroku::Journal::open(cfg.clone()).unwrap();
    let chain = j.chain_id();
    stop_owing_one_loss(&j, &faults).await;
    assert_eq!(j.metrics().records_lost_kept, 1);
    let lost_file = j.chain_dir().join(kiroku::journal::LOST_FILE);
    drop(j);
    let (spool_s, vkey_s) = (spool.display().to_string(), vkey.display().to_string());
    let v = kiroku(&["verify", "--spool", &spool_s, "--pubkey", &vkey_s]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    let note = format!("note: {}: 1 audit record(s) lost after the chain's last record", lost_file.display());
    assert!(text(&v).contains(&note), "{}", text(&v));
    let archive = dir.path().join("archive").display().to_string();
    let c = kiroku(&["compact", "--spool", &spool_s, "--archive", &archive, "--pubkey", &vkey_s]);
    assert!(c.status.success(), "{}", text(&c));
    let said = format!(
        "losses: {chain}: 1 audit record(s) lost after the chain's last record and stated by no record: its writer is gone (the record at seq 1 would state them)"
    );
    assert!(text(&c).contains(&said), "{}", text(&c));
    assert!(lost_file.exists(), "left for the writer's next process");
    let shown = |archive: &str| {
        let v = kiroku(&["verify", "--archive", archive, "--pubkey", &vkey_s]);
        assert_eq!(v.status.code(), Some(0), "{}", text(&v));
        let r = kiroku(&["report", "--archive", archive, "--pubkey", &vkey_s, "--json"]);
        assert!(r.status.success(), "{}", text(&r));
        let summary: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        let c = &summary["integrity"][0];
        (
            text(&v).contains("lost after the chain's last record"),
            c["records_lost"].as_u64(),
            c["records_lost_unstated"].as_u64(),
        )
    };
    assert_eq!(shown(&archive), (true, Some(0), Some(1)), "noted in the manifest, shown by verify and report");
    let c = kiroku(&["compact", "--spool", &spool_s, "--archive", &archive, "--pubkey", &vkey_s]);
    assert!(c.status.success() && !text(&c).contains("losses:"), "noted once: {}", text(&c));

    let j = kiroku::Journal::open(cfg).unwrap();
    j.append(AuditRecord::new("next", Timestamp::now())).await.unwrap();
    j.shutdown().await.unwrap();
    assert!(!lost_file.exists());
    let c = kiroku(&["compact", "--spool", &spool_s, "--archive", &archive, "--pubkey", &vkey_s]);
    assert!(c.status.success(), "{}", text(&c));
    let found = kiroku(&["find", "--archive", &archive, "--from", "2000-01-01", "--json"]);
    let lost_before: Vec<u64> = String::from_utf8_lossy(&found.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["records_lost_before"].as_u64().unwrap_or(0))
        .collect();
    assert_eq!(lost_before, [0, 1], "the next process's first record states the loss");
    assert_eq!(shown(&archive), (false, Some(1), Some(0)), "stated by the record, and the note gone: counted once");
}

/// A gone writer's `lost` file that cannot be read is reported with where it is wrong,
/// and compaction exits 1; the chain's records are archived all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_lost_file_of_a_gone_writer_is_reported_and_the_records_still_archived() {
    let (dir, signer, vkey, spool) = keyed_dir("lost-unreadable");
    let j = kiroku::Journal::open(kiroku::JournalConfig::new(&spool, signer.clone())).unwrap();
    let chain = j.chain_id();
    j.append(AuditRecord::new("kept", Timestamp::now())).await.unwrap();
    j.shutdown().await.unwrap();
    std::fs::write(j.chain_dir().join(kiroku::journal::LOST_FILE), "kiroku-lost 1\nlost many\n").unwrap();
    let (spool_s, vkey_s) = (spool.display().to_string(), vkey.display().to_string());
    let archive = dir.path().join("archive").display().to_string();
    let c = kiroku(&["compact", "--spool", &spool_s, "--archive", &archive, "--pubkey", &vkey_s]);
    assert_eq!(c.status.code(), Some(1), "{}", text(&c));
    assert!(text(&c).contains(&format!("UNREADABLE LOST FILE {chain}: ")), "{}", text(&c));
    assert!(text(&c).contains("line 2: `many` is not a count"), "{}", text(&c));
    assert!(text(&c).contains("1 record(s)"), "{}", text(&c));
}

/// A writer killed after losses leaves an open segment and its `lost` file, and never
/// comes back. The compactor archives the segment's records and notes the losses: every
/// record appended is in the archive or counted there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_losses_of_a_writer_that_died_reach_the_archive() {
    use std::sync::atomic::Ordering;
    let (dir, signer, vkey, spool) = keyed_dir("lost-dead");
    let (faults, cfg) = faulty_journal(&spool, &signer);
    let j = kiroku::Journal::open(cfg).unwrap();
    let mut appended = 0;
    for i in 0..3 {
        j.append(AuditRecord::new(format!("kept-{i}"), Timestamp::now())).await.unwrap();
        appended += 1;
    }
    faults.fail_writes.store(true, Ordering::SeqCst);
    for i in 0..2 {
        assert!(j.append(AuditRecord::new(format!("lost-{i}"), Timestamp::now())).await.is_err());
        appended += 1;
    }
    assert!(j.flush().await.is_err());
    // The journal writes a newer count to the file within 10 ms.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    // What SIGKILL leaves now: the spool as it is, and no lock held.
    let image = dir.path().join("killed");
    kiroku_tests::copy_tree(&spool, &image);
    faults.clear();
    j.shutdown().await.unwrap();

    let (image_s, vkey_s) = (image.display().to_string(), vkey.display().to_string());
    let archive = dir.path().join("archive").display().to_string();
    let c = kiroku(&["compact", "--spool", &image_s, "--archive", &archive, "--pubkey", &vkey_s]);
    assert!(c.status.success(), "{}", text(&c));
    assert!(text(&c).contains("1 from writers that are gone"), "its open segment: {}", text(&c));
    let r = kiroku(&["report", "--archive", &archive, "--pubkey", &vkey_s, "--json"]);
    let summary: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    let chain = &summary["integrity"][0];
    let (records, unstated) = (chain["records"].as_u64().unwrap(), chain["records_lost_unstated"].as_u64().unwrap());
    assert_eq!(records, 3, "{}", text(&c));
    assert_eq!(records + unstated, appended, "every record appended is archived or counted: {}", text(&c));
    let v = kiroku(&["verify", "--archive", &archive, "--pubkey", &vkey_s]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(text(&v).contains("2 audit record(s) lost after the chain's last record"), "{}", text(&v));
}

/// A segment the journal set aside because it does not continue the chain (it links to
/// a record the chain does not have) is reported for that: checked against where the
/// archive holds the chain once the chain's sealed segments are compacted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_that_does_not_continue_its_chain_is_quarantined_for_that() {
    let (dir, signer, vkey, spool) = keyed_dir("discontinuous");
    let cfg = kiroku::JournalConfig::new(&spool, signer.clone()).writer_name("node-g");
    let j = kiroku::Journal::open(cfg.clone()).unwrap();
    let chain = j.chain_id();
    for i in 0..3 {
        j.append(AuditRecord::new(format!("sealed-{i}"), Timestamp::now())).await.unwrap();
    }
    j.shutdown().await.unwrap();
    let chain_dir = spool.join(chain.to_string());
    assert_eq!(kiroku_tests::write_discontinuous_open_segment(&chain_dir, chain), 3);
    let j = kiroku::Journal::open(cfg).unwrap();
    j.shutdown().await.unwrap();
    let (s, archive, vkey) =
        (spool.display().to_string(), dir.path().join("archive").display().to_string(), vkey.display().to_string());
    let out = kiroku(&["compact", "--spool", &s, "--archive", &archive, "--pubkey", &vkey]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("3 record(s)"), "the sealed records are compacted: {}", text(&out));
    let report = std::fs::read_to_string(
        spool.join("quarantine").join(chain.to_string()).join("00000000000000000003.corrupt.report.txt"),
    )
    .unwrap();
    assert!(report.contains("byte offset 0 (seq 3): discontinuity"), "{report}");
}

/// In a fleet, the segment a restarted writer found corrupt is shipped with the rest,
/// so that the compactor that reads the store reports and quarantines it: the writer's
/// machine is not where anyone looks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_found_corrupt_is_shipped_and_quarantined_by_the_fleet_compactor() {
    let HandMade { dir, signer, vkey, chain, chain_dir } = hand_made("corrupt-shipped");
    dead_writer_corrupt(&chain_dir, chain, "node-e");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let url = format!("file://{}", store.display());
    let to = kiroku::ship::ObjectLocation::open(&url).unwrap();
    let cfg = kiroku::JournalConfig::new(dir.path().join("spool"), signer.clone())
        .writer_name("node-e")
        .ship_to(to, kiroku::ship::ShipperConfig::default());
    let j = kiroku::Journal::open(cfg).unwrap();
    assert_ne!(j.chain_id(), chain);
    for i in 0..2 {
        let mut r = AuditRecord::new(format!("after-{i}"), Timestamp::now());
        r.gen_ai.request.model = Some("shipped".into());
        j.append(r).await.unwrap();
    }
    j.shutdown().await.unwrap();
    assert!(!chain_dir.join("00000000000000000000.corrupt").exists(), "shipped, then removed here");
    let (archive, vkey) = (dir.path().join("archive").display().to_string(), vkey.display().to_string());
    let out = kiroku(&["compact", "--spool", &url, "--archive", &archive, "--pubkey", &vkey]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("QUARANTINED {chain}/00000000000000000000.corrupt"))
            && text(&out).contains("2 record(s)"),
        "{}",
        text(&out)
    );
    let report = store.join(format!("quarantine/{chain}/00000000000000000000.corrupt.report.txt"));
    assert!(std::fs::read_to_string(&report).unwrap().contains("byte offset"));
}

/// In a fleet, a writer that stops owing its chain a statement of losses ships its
/// `lost` file with its last segments (its lock is free then), so that the compactor
/// reading the store notes them: the writer's machine is not where anyone looks. A
/// writer that comes back states them in a record, and the note goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_losses_a_stopped_writer_left_are_shipped_and_noted_by_the_fleet_compactor() {
    let (dir, signer, vkey, spool) = keyed_dir("lost-shipped");
    let store = dir.path().join("store");
    std::fs::create_dir_all(&store).unwrap();
    let url = format!("file://{}", store.display());
    let (faults, base) = faulty_journal(&spool, &signer);
    let cfg = || {
        base.clone().ship_to(kiroku::ship::ObjectLocation::open(&url).unwrap(), kiroku::ship::ShipperConfig::default())
    };
    let j = kiroku::Journal::open(cfg()).unwrap();
    let chain = j.chain_id();
    stop_owing_one_loss(&j, &faults).await;
    assert_eq!(j.ship_metrics().map(|m| m.lost_files), Some(1));
    drop(j);
    let shipped = store.join(format!("spool/{chain}/lost"));
    assert!(shipped.exists(), "shipped once the writer stopped");
    assert!(spool.join(chain.to_string()).join("lost").exists(), "kept here for a writer that comes back");

    let (archive, vkey_s) = (dir.path().join("archive").display().to_string(), vkey.display().to_string());
    let lost = |archive: &str| {
        let r = kiroku(&["report", "--archive", archive, "--pubkey", &vkey_s, "--json"]);
        assert!(r.status.success(), "{}", text(&r));
        let summary: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        let c = &summary["integrity"][0];
        (c["records"].as_u64(), c["records_lost"].as_u64(), c["records_lost_unstated"].as_u64())
    };
    let c = kiroku(&["compact", "--spool", &url, "--archive", &archive, "--pubkey", &vkey_s]);
    assert!(c.status.success(), "{}", text(&c));
    assert!(text(&c).contains(&format!("losses: {chain}: 1 audit record(s) lost")), "{}", text(&c));
    assert_eq!(lost(&archive), (Some(1), Some(0), Some(1)));

    let j = kiroku::Journal::open(cfg()).unwrap();
    assert_eq!(j.chain_id(), chain);
    j.append(AuditRecord::new("next", Timestamp::now())).await.unwrap();
    j.shutdown().await.unwrap();
    let c = kiroku(&["compact", "--spool", &url, "--archive", &archive, "--pubkey", &vkey_s]);
    assert!(c.status.success() && !text(&c).contains("losses:"), "{}", text(&c));
    assert_eq!(lost(&archive), (Some(2), Some(1), Some(0)), "stated by the record, the note gone: counted once");
}

/// A writer that died left an open segment corrupt in its middle, and the collector got
/// to it first: quarantined. Its seqs were handed out, so the writer that comes back
/// with the same name must not take the chain up again from its last sealed head.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarantined_open_segment_ends_its_chain() {
    let HandMade { dir, signer, vkey, chain, chain_dir } = hand_made("quarantined-open");
    dead_writer_corrupt(&chain_dir, chain, "node-b");
    let spool = dir.path().join("spool");
    let (s, archive, vkey) =
        (spool.display().to_string(), dir.path().join("archive").display().to_string(), vkey.display().to_string());
    let out = kiroku(&["compact", "--spool", &s, "--archive", &archive, "--pubkey", &vkey]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("QUARANTINED"), "{}", text(&out));
    let j = kiroku::Journal::open(kiroku::JournalConfig::new(&spool, signer.clone()).writer_name("node-b")).unwrap();
    assert_ne!(j.chain_id(), chain, "the chain whose open segment was quarantined is not taken back");
    j.append(AuditRecord::new("next", Timestamp::now())).await.unwrap();
    j.shutdown().await.unwrap();
    let again = kiroku(&["compact", "--spool", &s, "--archive", &archive, "--pubkey", &vkey]);
    assert!(again.status.success() && text(&again).contains("1 record(s)"), "{}", text(&again));
}

/// The compactor is killed after it committed a dead writer's open segment and before
/// it moved it (before or after telling the chain's head), and the writer comes back
/// first: it seals that segment and continues the chain. The next compaction run sees
/// the sealed file of a segment it already holds: the same records, moved, not a fork.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_back_before_the_compactor_reruns_continues_its_chain_once() {
    for step in ["after_manifest", "after_head"] {
        let HandMade { dir, signer, vkey, chain, chain_dir } = hand_made("orphan-crash");
        let mut bytes = dead_writer(&chain_dir, chain, "node-d", 5);
        kiroku::journal::write_atomic(&chain_dir.join("head"), &SegmentHeader::genesis(chain).encode()).unwrap();
        bytes.extend_from_slice(&[9, 9, 9]); // torn final frame
        std::fs::write(chain_dir.join("00000000000000000000.open"), bytes).unwrap();
        let spool = dir.path().join("spool");
        let (s, archive, vkey) =
            (spool.display().to_string(), dir.path().join("archive").display().to_string(), vkey.display().to_string());
        assert!(pause_and_kill_at(&s, &archive, &vkey, step), "{step}: reached");
        let j =
            kiroku::Journal::open(kiroku::JournalConfig::new(&spool, signer.clone()).writer_name("node-d")).unwrap();
        assert_eq!(j.chain_id(), chain, "{step}: the chain is taken back");
        for i in 0..2 {
            let mut r = AuditRecord::new(format!("back-{i}"), Timestamp::now());
            r.gen_ai.request.model = Some("m".into());
            assert_eq!(j.append(r).await.unwrap(), None);
        }
        j.shutdown().await.unwrap();
        let out = kiroku(&["compact", "--spool", &s, "--archive", &archive, "--pubkey", &vkey]);
        assert!(out.status.success(), "{step}: {}", text(&out));
        assert!(!text(&out).contains("QUARANTINED"), "{step}: {}", text(&out));
        let v = kiroku(&["verify", "--archive", &archive, "--pubkey", &vkey]);
        assert!(v.status.success(), "{step}: {}", text(&v));
        let found = kiroku(&["find", "--archive", &archive, "--model", "m"]);
        assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 7, "{step}: every record once");
    }
}

/// A spool whose listing of sealed segments, taken while the chain's writer may still be
/// alive, misses the newest one: the writer sealed it (and opened the next) after the
/// listing and before it died. Once the dead writer's lock is held, listings are true.
struct ListedTooEarly {
    inner: kiroku_collector::spool::LocalSpool,
    missed: String,
    locked: std::sync::atomic::AtomicBool,
}

impl kiroku_collector::spool::SpoolStore for ListedTooEarly {
    fn chains(&self) -> Result<Vec<ChainId>, kiroku_collector::error::CliError> {
        self.inner.chains()
    }
    fn sealed(
        &self,
        chain: ChainId,
    ) -> Result<Vec<kiroku_collector::spool::SegmentRef>, kiroku_collector::error::CliError> {
        let mut all = self.inner.sealed(chain)?;
        if !self.locked.load(std::sync::atomic::Ordering::SeqCst) {
            all.retain(|s| s.name != self.missed);
        }
        Ok(all)
    }
    fn orphaned(
        &self,
        chain: ChainId,
    ) -> Result<Option<kiroku_collector::spool::Orphan>, kiroku_collector::error::CliError> {
        let got = self.inner.orphaned(chain)?;
        self.locked.store(got.is_some(), std::sync::atomic::Ordering::SeqCst);
        Ok(got)
    }
    fn corrupt(
        &self,
        chain: ChainId,
    ) -> Result<Vec<kiroku_collector::spool::SegmentRef>, kiroku_collector::error::CliError> {
        self.inner.corrupt(chain)
    }
    fn quarantined(&self, chain: ChainId) -> Result<Vec<u64>, kiroku_collector::error::CliError> {
        self.inner.quarantined(chain)
    }
    fn read(
        &self,
        seg: &kiroku_collector::spool::SegmentRef,
    ) -> Result<Box<dyn std::io::Read + Send>, kiroku_collector::error::CliError> {
        self.inner.read(seg)
    }
    fn mark_compacted(
        &self,
        seg: &kiroku_collector::spool::SegmentRef,
    ) -> Result<(), kiroku_collector::error::CliError> {
        self.inner.mark_compacted(seg)
    }
    fn quarantine(
        &self,
        seg: &kiroku_collector::spool::SegmentRef,
        report: &str,
    ) -> Result<PathBuf, kiroku_collector::error::CliError> {
        self.inner.quarantine(seg, report)
    }
    fn set_head(
        &self,
        chain: ChainId,
        state: &kiroku_schemas::segment::ChainState,
    ) -> Result<(), kiroku_collector::error::CliError> {
        self.inner.set_head(chain, state)
    }
    fn compacted_before(
        &self,
        before: std::time::SystemTime,
    ) -> Result<Vec<String>, kiroku_collector::error::CliError> {
        self.inner.compacted_before(before)
    }
    fn remove_compacted(&self, name: &str) -> Result<(), kiroku_collector::error::CliError> {
        self.inner.remove_compacted(name)
    }
}

#[test]
fn a_dead_writers_last_sealed_segment_is_not_missed_for_its_open_one() {
    // Sealed 0-2 and 3-5, open 6-8, and a lock file nobody holds: the writer is gone.
    let HandMade { dir, signer, vkey, chain, chain_dir } = hand_made("late");
    std::fs::write(chain_dir.join("lock"), b"").unwrap();
    let mut header = SegmentHeader::genesis(chain);
    for (first, sealed) in [(0u64, true), (3, true), (6, false)] {
        let mut w = SegmentWriter::new(Vec::new(), header).unwrap();
        for seq in first..first + 3 {
            let mut r = AuditRecord::new(format!("late-{seq}"), Timestamp::now());
            (r.chain_id, r.seq) = (chain, seq);
            r.http.method = "POST".into();
            r.http.route = "/v1/chat/completions".into();
            w.append_record(&r.to_json()).unwrap();
        }
        header = w.state().next_header();
        let (bytes, ext) = if sealed {
            (w.seal(&signer, "kiroku", Timestamp::now()).unwrap(), "seg")
        } else {
            (w.into_inner(), "open")
        };
        std::fs::write(chain_dir.join(format!("{first:020}.{ext}")), bytes).unwrap();
    }
    let spool = ListedTooEarly {
        inner: kiroku_collector::spool::LocalSpool::new(dir.path().join("spool")),
        missed: format!("{:020}.seg", 3),
        locked: Default::default(),
    };
    let archive = kiroku_collector::archive_store::LocalArchive::open(&dir.path().join("archive")).unwrap();
    let verifier =
        kiroku_schemas::checkpoint::NoteVerifier::from_key_text(&std::fs::read_to_string(&vkey).unwrap()).unwrap();
    let opts = kiroku_collector::compact::CompactOptions::new(verifier);
    let report = kiroku_collector::compact::compact(&spool, &archive, &opts, &mut |_| {}).unwrap();
    assert!(report.quarantined.is_empty(), "nothing valid is quarantined: {:?}", report.quarantined);
    assert_eq!((report.records, report.segments, report.orphans), (9, 3, 1), "{report:?}");
}

#[test]
fn a_dead_writers_open_segment_after_an_accepted_gap_waits_for_its_seal() {
    // Sealed 0-2, sealed 3-5 (corrupt, no good copy), open 6-8 of a writer that is gone.
    // With the gap accepted, the open segment's records would rest on nothing signed: its
    // header says where the chain goes on from, and no checkpoint confirms it.
    let HandMade { dir, signer, vkey, chain, chain_dir } = hand_made("gap-open");
    std::fs::write(chain_dir.join("lock"), b"").unwrap();
    let mut header = SegmentHeader::genesis(chain);
    let mut open_writer = None;
    for first in [0u64, 3, 6] {
        let mut w = SegmentWriter::new(Vec::new(), header).unwrap();
        for seq in first..first + 3 {
            let mut r = AuditRecord::new(format!("gap-open-{seq}"), Timestamp::now());
            (r.chain_id, r.seq) = (chain, seq);
            r.gen_ai.request.model = Some("m".into());
            w.append_record(&r.to_json()).unwrap();
        }
        header = w.state().next_header();
        if first == 6 {
            std::fs::write(chain_dir.join(format!("{first:020}.open")), w.get_ref()).unwrap();
            open_writer = Some(w);
        } else {
            std::fs::write(
                chain_dir.join(format!("{first:020}.seg")),
                w.seal(&signer, "kiroku", Timestamp::now()).unwrap(),
            )
            .unwrap();
        }
    }
    flip_middle_byte(&chain_dir.join(format!("{:020}.seg", 3)));
    let compact = |extra: &[&str]| compact_hand_made(dir.path(), &vkey, extra);
    let (archive, vkey) = (dir.path().join("archive").display().to_string(), vkey.display().to_string());
    let first = compact(&[]);
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert!(
        text(&first).contains(&format!("waiting: {chain}/{:020}.open (behind an earlier segment of its chain)", 6)),
        "the dead writer's records are said to wait: {}",
        text(&first)
    );
    let gap = format!("{chain}:3");
    let report = dir.path().join(format!("spool/quarantine/{chain}/{:020}.seg.report.txt", 3));
    assert!(std::fs::read_to_string(report).unwrap().contains(&format!("--accept-gap {gap}")));

    let accepted = compact(&["--accept-gap", &gap]);
    assert_eq!(accepted.status.code(), Some(1), "{}", text(&accepted));
    let open = chain_dir.join(format!("{:020}.open", 6));
    assert!(
        text(&accepted).contains(&format!("waiting: {chain}/{:020}.open (it follows the accepted gap from seq 3", 6))
            && text(&accepted).contains("its writer is gone")
            && text(&accepted).contains("restart the instance"),
        "{}",
        text(&accepted)
    );
    assert!(!text(&accepted).contains("gap accepted"), "nothing after the gap is committed: {}", text(&accepted));
    assert!(open.exists(), "its records stay in the spool");
    let found = kiroku(&["find", "--archive", &archive, "--model", "m"]);
    assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 3, "only the records before the gap");

    // Its writer comes back and seals it (what opening the chain again does): now the
    // checkpoint confirms the chain after the gap, and the records reach the archive.
    let sealed = open_writer.unwrap().seal(&signer, "kiroku", Timestamp::now()).unwrap();
    std::fs::write(chain_dir.join(format!("{:020}.seg", 6)), sealed).unwrap();
    std::fs::remove_file(&open).unwrap();
    let resumed = compact(&["--accept-gap", &gap]);
    assert!(resumed.status.success(), "{}", text(&resumed));
    assert!(text(&resumed).contains(&format!("gap accepted: {chain}: seq 3..6 (3 record(s))")), "{}", text(&resumed));
    let found = kiroku(&["find", "--archive", &archive, "--model", "m"]);
    assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 6);
    let v = kiroku(&["verify", "--archive", &archive, "--pubkey", &vkey]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
}

/// A dead writer's open segment was recovered (its records after its last checkpoint
/// proven by nothing signed yet), its writer came back and went on, and the segment it
/// wrote next was lost: with that gap accepted, no checkpoint will ever prove those
/// records, and `explain` and `evidence` say so instead of "not yet".
#[test]
fn records_no_checkpoint_will_prove_are_said_so_and_left_out_of_a_bundle_by_time() {
    let HandMade { dir, signer, vkey, chain, chain_dir } = hand_made("never");
    std::fs::write(chain_dir.join("lock"), b"").unwrap();
    let record = |seq: u64| {
        let mut r = AuditRecord::new(format!("never-{seq}"), Timestamp::now());
        (r.chain_id, r.seq) = (chain, seq);
        r.gen_ai.request.model = Some(if (1..3).contains(&seq) { "tail" } else { "m" }.into());
        r.to_json()
    };
    // Open 0-2, a checkpoint after seq 0, of a writer that is gone.
    let mut w = SegmentWriter::new(Vec::new(), SegmentHeader::genesis(chain)).unwrap();
    for seq in 0..3 {
        w.append_record(&record(seq)).unwrap();
        if seq == 0 {
            w.append_checkpoint(&signer, "kiroku", Timestamp::now()).unwrap();
        }
    }
    let mut header = w.state().next_header();
    std::fs::write(chain_dir.join(format!("{:020}.open", 0)), w.into_inner()).unwrap();
    let compact = |extra: &[&str]| compact_hand_made(dir.path(), &vkey, extra);
    let (archive, vkey) = (dir.path().join("archive").display().to_string(), vkey.display().to_string());
    let recovered = compact(&[]);
    assert!(recovered.status.success(), "{}", text(&recovered));
    let explain = |seq: u64| kiroku(&["explain", &format!("never-{seq}"), "--archive", &archive, "--pubkey", &vkey]);
    assert!(text(&explain(2)).contains("not yet covered by a signed checkpoint"), "{}", text(&explain(2)));

    // Its writer comes back: sealed 3-5 (then corrupted, no good copy), sealed 6-8.
    for first in [3u64, 6] {
        let mut w = SegmentWriter::new(Vec::new(), header).unwrap();
        for seq in first..first + 3 {
            w.append_record(&record(seq)).unwrap();
        }
        header = w.state().next_header();
        let sealed = w.seal(&signer, "kiroku", Timestamp::now()).unwrap();
        std::fs::write(chain_dir.join(format!("{first:020}.seg")), sealed).unwrap();
    }
    flip_middle_byte(&chain_dir.join(format!("{:020}.seg", 3)));
    assert_eq!(compact(&[]).status.code(), Some(1));
    let accepted = compact(&["--accept-gap", &format!("{chain}:3")]);
    assert!(accepted.status.success(), "{}", text(&accepted));

    let proven = explain(0);
    assert!(text(&proven).contains("inclusion proof: included in checkpoint of size 1 "), "{}", text(&proven));
    assert!(text(&explain(7)).contains("inclusion proof: included in checkpoint of size 9 "), "{}", text(&explain(7)));
    for seq in [1, 2] {
        let e = explain(seq);
        assert!(e.status.success(), "{}", text(&e));
        assert!(
            text(&e).contains("inclusion proof: never covered by a signed checkpoint: none was signed between it and the accepted gap at seq 3..6"),
            "{}",
            text(&e)
        );
    }
    let out = dir.path().join("bundle");
    let refused = kiroku(&[
        "evidence",
        "--archive",
        &archive,
        "--pubkey",
        &vkey,
        "--record-id",
        "never-0",
        "--record-id",
        "never-2",
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    assert!(
        text(&refused).contains(&format!("record never-2 (chain {chain} seq 2) cannot be proven: it is never covered"))
            && !text(&refused).contains("newest signed checkpoint"),
        "{}",
        text(&refused)
    );
    assert!(!out.exists(), "no bundle");

    // Selected by time, the window's provable records make a bundle, and the others are
    // named in it and by the command (exit 3).
    let evidence = |out: &Path, extra: &[&str]| {
        let out = out.display().to_string();
        let mut args =
            vec!["evidence", "--archive", &archive, "--pubkey", &vkey, "--from", "2000-01-01", "--out", &out];
        args.extend_from_slice(extra);
        kiroku(&args)
    };
    let window = dir.path().join("window");
    let ev = evidence(&window, &[]);
    assert_eq!(ev.status.code(), Some(3), "{}", text(&ev));
    assert!(
        text(&ev).contains("wrote 4 record(s)")
            && text(&ev).contains(&format!("left out: record never-1 (chain {chain} seq 1): it is never covered"))
            && text(&ev).contains("2 of the 6 selected record(s) are not in the bundle"),
        "{}",
        text(&ev)
    );
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(window.join("index.json")).unwrap()).unwrap();
    let seqs =
        |key: &str| index[key].as_array().unwrap().iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!((seqs("records"), seqs("left_out")), (vec![0, 6, 7, 8], vec![1, 2]));
    assert!(index["left_out"][0]["reason"].as_str().unwrap().contains("accepted gap at seq 3..6"), "{index}");
    let v = kiroku(&["verify", "--bundle", &window.display().to_string(), "--pubkey", &vkey]);
    assert_eq!(v.status.code(), Some(0), "{}", text(&v));
    assert!(
        text(&v).contains(&format!("record never-2 (chain {chain} seq 2) was selected and is not in the bundle")),
        "{}",
        text(&v)
    );
    python_verifies_bundle(&window, Path::new(&vkey), 4);
    // A window of which nothing can be proven writes no bundle.
    let nothing = dir.path().join("nothing");
    let ev = evidence(&nothing, &["--model", "tail"]);
    assert_eq!(ev.status.code(), Some(2), "{}", text(&ev));
    assert!(text(&ev).contains("none of the 2 selected record(s) can be proven"), "{}", text(&ev));
    assert!(!nothing.exists(), "no bundle");
}

#[test]
fn a_record_that_contradicts_its_frame_is_quarantined_with_its_segment() {
    // Frames that chain and hash correctly, but one record's JSON names another seq:
    // found while parsing, which both compaction threads share, deep in the segment.
    // The reader has verified that segment's frames and gone on to the next one when the
    // writer finds the record and stops the chain; a second chain follows, whose steps
    // must not be confused with the stopped chain's.
    let HandMade { dir, signer, vkey, chain, chain_dir } = hand_made("parse");
    let other: ChainId = "ffffffff-ffff-7fff-bfff-ffffffffffff".parse().unwrap();
    assert!(other > chain, "the good chain is compacted after the bad one");
    let other_dir = dir.path().join("spool").join(other.to_string());
    std::fs::create_dir_all(&other_dir).unwrap();
    for (id, at, bad, model) in [(chain, &chain_dir, true, "parsed"), (other, &other_dir, false, "after")] {
        let mut header = SegmentHeader::genesis(id);
        for segment in 0..3u64 {
            let first = header.first_seq;
            let mut w = SegmentWriter::new(Vec::new(), header).unwrap();
            for seq in first..first + 400 {
                let mut r = AuditRecord::new(format!("r-{seq}"), Timestamp::now());
                (r.chain_id, r.seq) = (id, if bad && segment == 1 && seq == first + 350 { seq + 7 } else { seq });
                r.gen_ai.request.model = Some(model.into());
                w.append_record(&r.to_json()).unwrap();
            }
            header = w.state().next_header();
            let bytes = w.seal(&signer, "kiroku", Timestamp::now()).unwrap();
            std::fs::write(at.join(format!("{first:020}.seg")), bytes).unwrap();
        }
    }
    let (spool, archive) =
        (dir.path().join("spool").display().to_string(), dir.path().join("archive").display().to_string());
    let out = kiroku(&["compact", "--spool", &spool, "--archive", &archive, "--pubkey", &vkey.display().to_string()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let quarantined = dir.path().join("spool/quarantine").join(chain.to_string());
    let report = std::fs::read_to_string(quarantined.join("00000000000000000400.seg.report.txt")).unwrap();
    assert!(report.contains("(seq 750): record says chain") && report.contains("seq 757"), "{report}");
    assert!(chain_dir.join("00000000000000000800.seg").exists(), "the next segment waits behind it");
    let found = kiroku(&["find", "--archive", &archive, "--model", "parsed"]);
    assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 400, "the good first segment is archived");
    let found = kiroku(&["find", "--archive", &archive, "--model", "after"]);
    assert_eq!(String::from_utf8_lossy(&found.stdout).lines().count(), 1200, "the next chain is archived whole");
    assert!(text(&out).contains("1600 record(s)"), "{}", text(&out));
    let verified = kiroku(&["verify", "--archive", &archive, "--pubkey", &vkey.display().to_string()]);
    assert!(verified.status.success(), "{}", text(&verified));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_come_from_flags_then_environment_then_a_toml_file() {
    let f = fixture(6).await;
    let cfg = f.dir.path().join("kiroku.toml");
    std::fs::write(&cfg, format!("spool = {:?}\narchive = {:?}\npubkey = {:?}\n", f.spool(), f.archive(), f.vkey()))
        .unwrap();
    let cfg = cfg.display().to_string();
    let out = kiroku(&["--config", &cfg, "compact"]);
    assert!(out.status.success() && text(&out).contains("6 record(s)"), "{}", text(&out));
    let v = kiroku(&["verify", "--config", &cfg]);
    assert!(v.status.success() && text(&v).contains("signatures checked"), "{}", text(&v));
    // The environment beats the file, a flag beats both.
    let env = Command::new(env!("CARGO_BIN_EXE_kiroku"))
        .args(["--config", &cfg, "find", "--model", "sample-1"])
        .env("KIROKU_ARCHIVE", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(env.status.code(), Some(2), "{}", text(&env));
    let flag = Command::new(env!("CARGO_BIN_EXE_kiroku"))
        .args(["--config", &cfg, "find", "--model", "sample-1", "--archive", &f.archive()])
        .env("KIROKU_ARCHIVE", "/nonexistent")
        .output()
        .unwrap();
    assert!(flag.status.success(), "{}", text(&flag));
    let bad = f.dir.path().join("bad.toml");
    std::fs::write(&bad, "archvie = \"x\"\n").unwrap();
    let out = kiroku(&["--config", &bad.display().to_string(), "find"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("unknown setting \"archvie\""), "{}", text(&out));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_of_a_compacted_segment_is_recognised_and_an_altered_one_quarantined() {
    let f = fixture(20).await;
    assert!(f.compact().status.success());
    let spool = f.dir.path().join("spool");
    let compacted = spool.join("compacted");
    let chain_dir = std::fs::read_dir(&compacted).unwrap().next().unwrap().unwrap().path();
    let chain = chain_dir.file_name().unwrap().to_owned();
    let mut segs: Vec<PathBuf> = std::fs::read_dir(&chain_dir).unwrap().map(|e| e.unwrap().path()).collect();
    segs.sort();
    let seg = &segs[0];
    let back = spool.join(&chain).join(seg.file_name().unwrap());
    // A manifest of this kiroku records a segment by where its records end (version 3);
    // one of an earlier kiroku recorded the blake3 of its file (version 1). Both ways:
    for version in [3, 1] {
        if version == 1 {
            let mut m = kiroku_collector::manifest::Manifest::load(Path::new(&f.archive())).unwrap();
            for e in m.chains.values_mut().flat_map(|c| c.segments.iter_mut()) {
                let file = compacted.join(&chain).join(&e.name);
                e.end = None;
                e.blake3 = Some(blake3::hash(&std::fs::read(file).unwrap()).to_hex().to_string());
            }
            m.save(Path::new(&f.archive())).unwrap();
        }
        let stored = std::fs::read_to_string(Path::new(&f.archive()).join("_kiroku/manifest.json")).unwrap();
        assert!(stored.contains(&format!("\"version\": {version}")), "{stored}");
        // The same file again (a run that stopped after committing, or a re-delivery):
        // moved, nothing archived twice.
        std::fs::copy(seg, &back).unwrap();
        let out = f.compact();
        assert!(out.status.success() && text(&out).contains("compacted 0 segment(s)"), "{}", text(&out));
        assert!(!back.exists());
        // The same name with other content: never dropped, never archived twice.
        let mut bytes = std::fs::read(seg).unwrap();
        let n = bytes.len() / 2;
        bytes[n] ^= 0x10;
        std::fs::write(&back, bytes).unwrap();
        let out = f.compact();
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        assert!(text(&out).contains("QUARANTINED") && text(&out).contains("fork of the chain"), "{}", text(&out));
        let quarantine = spool.join("quarantine");
        assert!(quarantine.join(&chain).join(seg.file_name().unwrap()).exists());
        assert!(
            kiroku(&["verify", "--archive", &f.archive(), "--pubkey", &f.vkey()]).status.success(),
            "the archive is untouched"
        );
        std::fs::remove_dir_all(quarantine).unwrap();
    }
}

#[test]
fn the_demo_runs_the_whole_pipeline_and_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("demo");
    let out = kiroku(&["demo", "--dir", &d.display().to_string(), "--requests", "30"]);
    assert!(out.status.success(), "{}", text(&out));
    let t = text(&out);
    for want in [
        "spool verified",
        "archive verified",
        "OK",
        "records   30",
        "aborted",
        "error",
        "with output sources",
        "explain ",
    ] {
        assert!(t.contains(want), "demo output lacks {want:?}:\n{t}");
    }
    assert!(d.join("archive/_kiroku/manifest.json").exists() && d.join("keys/signer.vkey").exists());
    // A second demo refuses to reuse a non-empty directory.
    assert_eq!(kiroku(&["demo", "--dir", &d.display().to_string()]).status.code(), Some(2));
}
