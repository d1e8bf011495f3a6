//! Tamper detection: a mutation suite over a spool, an archive and an evidence bundle
//! produced by the real pipeline. Every mutation must be reported (target 100%), and
//! the pristine data must verify every time (target 0 false positives). Prints the
//! figures RELIABILITY.md records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiroku::Durability;
use kiroku_collector::archive::Archive;
use kiroku_collector::compact::{CompactOptions, compact};
use kiroku_collector::evidence::Unproven;
use kiroku_collector::spool::LocalSpool;
use kiroku_collector::verify::{verify_archive, verify_spool};
use kiroku_schemas::Timestamp;
use kiroku_schemas::checkpoint::{NoteSigner, TrustedKeys};
use kiroku_schemas::segment::{
    Frame, FrameKind, SegmentHeader, SegmentReader, SegmentWriter, VerifyOptions, verify_segment,
};
mod support;
use support::rewrite;

use kiroku_tests::{AuditedServer, Conn, chat};

#[derive(Default)]
struct Tally(BTreeMap<&'static str, (u64, u64)>);

impl Tally {
    fn add(&mut self, class: &'static str, detected: bool) {
        let e = self.0.entry(class).or_default();
        e.0 += 1;
        e.1 += u64::from(detected);
    }

    fn report(&self, what: &str) -> (u64, u64) {
        let (mut tried, mut found) = (0, 0);
        for (class, (t, d)) in &self.0 {
            eprintln!("  {what:8} {class:44} {d:6} / {t:6} detected");
            tried += t;
            found += d;
        }
        (tried, found)
    }
}

fn frames(bytes: &[u8]) -> (u64, Vec<Frame>) {
    let mut r = SegmentReader::open(bytes).unwrap();
    let hl = r.header_len();
    (hl, r.by_ref().collect::<Result<Vec<_>, _>>().unwrap())
}

fn region(hl: u64, fs: &[Frame], pos: u64) -> &'static str {
    if pos < hl {
        return "byte flip: header";
    }
    let f = fs.iter().rev().find(|f| f.offset <= pos).unwrap();
    let rel = pos - f.offset;
    let is_ckpt = f.kind != FrameKind::Record;
    match rel {
        0 => "byte flip: frame kind",
        1..=4 => "byte flip: frame length",
        5..=12 => "byte flip: frame seq",
        13..=16 => "byte flip: frame head check",
        17..=48 => "byte flip: prev hash",
        _ if rel >= f.encoded_len() - 32 => "byte flip: frame hash",
        _ if is_ckpt && rel >= f.encoded_len() - 32 - 92 => "byte flip: checkpoint signature",
        _ if is_ckpt => "byte flip: checkpoint body",
        _ => "byte flip: record payload",
    }
}

async fn pipeline(dir: &Path) -> (NoteSigner, PathBuf) {
    let srv = AuditedServer::start(
        |c| {
            c.durability(Durability::Sync)
                .segment_max_bytes(24 << 10)
                .checkpoint_interval(std::time::Duration::from_millis(1))
        },
        |l| l,
    )
    .await;
    let mut conn = Conn::connect(srv.addr).await.unwrap();
    for i in 0..24 {
        conn.post_json("/v1/chat/completions", &chat(&format!("tamper {i}"), i % 2 == 0), &[]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    let signer = srv.signer.clone();
    let (_records, tmp) = srv.finish().await;
    let spool = dir.join("spool");
    assert!(
        std::process::Command::new("cp")
            .arg("-a")
            .arg(tmp.path().join("spool"))
            .arg(&spool)
            .status()
            .unwrap()
            .success()
    );
    (signer, spool)
}

fn sealed_segments(spool: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(spool)
        .unwrap()
        .flat_map(|c| std::fs::read_dir(c.unwrap().path()).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mutation_is_detected_and_nothing_pristine_is_flagged() {
    let work = tempfile::tempdir().unwrap();
    let (signer, spool) = pipeline(work.path()).await;
    let key = TrustedKeys::from(signer.verifier());
    let segs = sealed_segments(&spool);
    assert!(segs.len() >= 3, "several sealed segments");
    let mut spool_t = Tally::default();
    let opts = VerifyOptions::sealed().with_verifier(key.clone());

    // Segment mutations, checked the way the collector checks a sealed segment.
    for (n, path) in segs.iter().enumerate() {
        let bytes = std::fs::read(path).unwrap();
        let (hl, fs) = frames(&bytes);
        let detect = |b: &[u8]| verify_segment(b, &opts).is_err();
        let step = if n == 0 { 1 } else { 13 };
        for pos in (0..bytes.len()).step_by(step) {
            let mut b = bytes.clone();
            b[pos] ^= 1 << (pos % 8);
            spool_t.add(region(hl, &fs, pos as u64), detect(&b));
        }
        let raw = |f: &Frame| bytes[f.offset as usize..(f.offset + f.encoded_len()) as usize].to_vec();
        for (i, f) in fs.iter().enumerate() {
            let mut del = bytes[..f.offset as usize].to_vec();
            del.extend_from_slice(&bytes[(f.offset + f.encoded_len()) as usize..]);
            spool_t.add(
                if f.kind == FrameKind::Record { "record frame deleted" } else { "checkpoint/seal frame deleted" },
                detect(&del),
            );
            let mut dup = bytes[..(f.offset + f.encoded_len()) as usize].to_vec();
            dup.extend(raw(f));
            dup.extend_from_slice(&bytes[(f.offset + f.encoded_len()) as usize..]);
            spool_t.add("frame duplicated", detect(&dup));
            if let Some(g) = fs.get(i + 1) {
                let mut sw = bytes[..f.offset as usize].to_vec();
                sw.extend(raw(g));
                sw.extend(raw(f));
                sw.extend_from_slice(&bytes[(g.offset + g.encoded_len()) as usize..]);
                spool_t.add("adjacent frames reordered", detect(&sw));
            }
            spool_t.add("truncated at a frame boundary (sealed segment)", detect(&bytes[..f.offset as usize]));
        }
        spool_t.add("truncated inside the header", detect(&bytes[..(hl / 2) as usize]));
    }
    // Truncating a segment at a boundary and sealing it again needs the key; without
    // it, the truncated segment no longer continues into the next one.
    for w in segs.windows(2) {
        let first = std::fs::read(&w[0]).unwrap();
        let second = std::fs::read(&w[1]).unwrap();
        let (_, fs) = frames(&first);
        let prev = verify_segment(&first[..], &VerifyOptions::open().with_verifier(key.clone())).unwrap();
        for f in fs.iter().filter(|f| f.kind == FrameKind::Record) {
            let cut =
                verify_segment(&first[..f.offset as usize], &VerifyOptions::open().with_verifier(key.clone())).unwrap();
            let detected =
                verify_segment(&second[..], &VerifyOptions::sealed().with_verifier(key.clone()).continuing(cut.end))
                    .is_err();
            spool_t.add("records cut, later segment continues the full chain", detected);
        }
        assert!(
            verify_segment(&second[..], &VerifyOptions::sealed().with_verifier(key.clone()).continuing(prev.end))
                .is_ok()
        );
    }
    // A segment replaced by a validly hashed chain under another key.
    for path in &segs {
        let bytes = std::fs::read(path).unwrap();
        let r = SegmentReader::open(&bytes[..]).unwrap();
        let forger = NoteSigner::generate(key.keys()[0].name()).unwrap();
        let mut w = SegmentWriter::new(Vec::new(), SegmentHeader { ..r.header().clone() }).unwrap();
        for f in r.flatten().filter(|f| f.kind == FrameKind::Record) {
            w.append_record(&f.payload).unwrap();
        }
        let forged = w.seal(&forger, "kiroku", Timestamp::now()).unwrap();
        spool_t.add("segment re-chained and re-signed with another key", verify_segment(&forged[..], &opts).is_err());
    }
    eprintln!("tamper suite:");
    let (st, sd) = spool_t.report("spool");

    // False positives: the pristine spool, many times.
    let mut fp = 0;
    for _ in 0..20 {
        fp += usize::from(!verify_spool(&LocalSpool::new(&spool), Some(&key)).unwrap().ok());
    }

    // Archive mutations.
    let archive = work.path().join("archive");
    let pristine_spool = work.path().join("spool-pristine");
    assert!(std::process::Command::new("cp").arg("-a").arg(&spool).arg(&pristine_spool).status().unwrap().success());
    let rep = compact(
        &LocalSpool::new(&spool),
        &kiroku_collector::archive_store::LocalArchive::open(&archive).unwrap(),
        &CompactOptions::new(key.clone()),
        &mut |_| {},
    )
    .unwrap();
    assert!(!rep.has_problems());
    let mut arch_t = Tally::default();
    let files: Vec<PathBuf> =
        Archive::open(&archive).unwrap().manifest.files().map(|(_, f)| archive.join(&f.path)).collect();
    let snapshot = work.path().join("archive-pristine");
    assert!(std::process::Command::new("cp").arg("-a").arg(&archive).arg(&snapshot).status().unwrap().success());
    let restore = || {
        std::fs::remove_dir_all(&archive).unwrap();
        assert!(std::process::Command::new("cp").arg("-a").arg(&snapshot).arg(&archive).status().unwrap().success());
    };
    let detected = |k: &TrustedKeys| !verify_archive(&archive, Some(k)).unwrap().ok();
    for f in &files {
        for (class, edit) in archive_edits() {
            edit(f);
            arch_t.add(class, detected(&key));
            restore();
        }
        std::fs::remove_file(f).unwrap();
        arch_t.add("Parquet file removed", detected(&key));
        restore();
    }
    // `kiroku explain` checks what it shows: a record whose payload was changed in the
    // archive (its hash column kept) is reported with exit 1, never shown as included.
    let vkey = work.path().join("signer.vkey");
    std::fs::write(&vkey, format!("{}\n", key.to_key_text())).unwrap();
    let explain = |id: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_kiroku"))
            .args(["explain", id, "--archive"])
            .arg(&archive)
            .arg("--pubkey")
            .arg(&vkey)
            .output()
            .unwrap()
    };
    let first_id = std::cell::RefCell::new(String::new());
    rewrite(&files[0], |b| {
        use arrow_array::cast::AsArray;
        let ids = b.column_by_name("record_id").unwrap().as_string::<i32>();
        first_id.borrow_mut().clone_from(&ids.value(0).to_owned());
        b
    });
    let id = first_id.into_inner();
    let pristine = explain(&id);
    assert!(pristine.status.success(), "{}", String::from_utf8_lossy(&pristine.stderr));
    assert!(String::from_utf8_lossy(&pristine.stdout).contains("included in checkpoint"));
    // A letter in the record id's text becomes its neighbour: still valid JSON.
    rewrite(&files[0], |b| {
        use arrow_array::Array as _;
        use arrow_array::cast::AsArray;
        let payloads = b.column_by_name("payload").unwrap().as_binary::<i32>();
        let vals: Vec<Vec<u8>> = (0..payloads.len())
            .map(|i| {
                let mut v = payloads.value(i).to_vec();
                if i == 0 {
                    let at = v.windows(11).position(|w| w == b"\"record_id\"").unwrap() + 14;
                    v[at] ^= 0x01;
                }
                v
            })
            .collect();
        let idx = b.schema().index_of("payload").unwrap();
        let mut cols = b.columns().to_vec();
        cols[idx] = std::sync::Arc::new(arrow_array::BinaryArray::from_iter_values(vals));
        arrow_array::RecordBatch::try_new(b.schema(), cols).unwrap()
    });
    let altered = explain(&id);
    let out = String::from_utf8_lossy(&altered.stdout);
    assert_eq!(altered.status.code(), Some(1), "{out}{}", String::from_utf8_lossy(&altered.stderr));
    assert!(out.contains("FAILS: the record's bytes do not match its hash") && !out.contains("included in"), "{out}");
    // Nor is it put into an evidence bundle that could not verify.
    let altered_rows = Archive::open(&archive).unwrap().find(&kiroku_collector::archive::Filter::default()).unwrap();
    let refused = work.path().join("refused-bundle");
    let err = kiroku_collector::evidence::write_bundle(
        &Archive::open(&archive).unwrap(),
        &altered_rows,
        &key,
        &refused,
        Unproven::Refuse,
    )
    .unwrap_err();
    assert!(err.to_string().contains("do not match its hash") && err.exit_code() == 1, "{err}");
    assert!(!refused.exists());
    restore();
    let stray = archive.join("records/date=1999-01-01/stray.parquet");
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::copy(&files[0], &stray).unwrap();
    arch_t.add("Parquet file planted (duplicate rows)", detected(&key));
    restore();
    let (at, ad) = arch_t.report("archive");
    for _ in 0..20 {
        fp += usize::from(!verify_archive(&archive, Some(&key)).unwrap().ok());
    }

    // Evidence bundle mutations.
    let arch = Archive::open(&archive).unwrap();
    let rows = arch.find(&kiroku_collector::archive::Filter::default()).unwrap();
    let bundle = work.path().join("bundle");
    kiroku_collector::evidence::write_bundle(&arch, &rows[..8], &key, &bundle, Unproven::Refuse).unwrap();
    // A run that fails after writing some of its files (the last record lies after the
    // newest checkpoint) leaves no half bundle, and the name stays free for a rerun.
    let mut late = rows[..8].to_vec();
    late[7].seq = u64::MAX / 2;
    let failed = work.path().join("failed-bundle");
    let err = kiroku_collector::evidence::write_bundle(&arch, &late, &key, &failed, Unproven::Refuse).unwrap_err();
    assert!(err.to_string().contains("after the newest signed checkpoint"), "{err}");
    assert!(!failed.exists(), "no half bundle");
    let leftovers: Vec<_> = std::fs::read_dir(work.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    kiroku_collector::evidence::write_bundle(&arch, &rows[..8], &key, &failed, Unproven::Refuse).unwrap();
    assert_eq!(walk(&failed).len(), walk(&bundle).len());
    let mut bun_t = Tally::default();
    let mut bundle_files: Vec<PathBuf> = walk(&bundle).into_iter().filter(|p| !p.ends_with("README.txt")).collect();
    bundle_files.sort();
    for f in &bundle_files {
        let bytes = std::fs::read(f).unwrap();
        let class = match f.parent().and_then(|p| p.file_name()).and_then(|n| n.to_str()) {
            Some("records") => "byte flip: record",
            Some("proofs") => "byte flip: proof",
            Some("checkpoints") => "byte flip: checkpoint (unused copy)",
            _ if f.ends_with("index.json") => "byte flip: index",
            _ => "byte flip: public key",
        };
        if class == "byte flip: checkpoint (unused copy)" {
            continue; // proofs carry their checkpoint verbatim; the copy is for reading
        }
        for pos in (0..bytes.len()).step_by(11) {
            let mut b = bytes.clone();
            b[pos] ^= 0x01;
            std::fs::write(f, &b).unwrap();
            let r = kiroku_collector::evidence::verify_bundle(&bundle, Some(&key));
            // A flip that leaves the JSON meaning unchanged (e.g. a space to '!' breaks
            // parsing; an unused digit) must still fail: everything is bound or parsed strictly.
            bun_t.add(class, r.map(|r| !r.ok()).unwrap_or(true));
        }
        std::fs::write(f, &bytes).unwrap();
    }
    let (bt, bd) = bun_t.report("bundle");
    for _ in 0..20 {
        fp += usize::from(!kiroku_collector::evidence::verify_bundle(&bundle, Some(&key)).unwrap().ok());
    }
    let (tried, found) = (st + at + bt, sd + ad + bd);
    eprintln!(
        "tamper suite total: {found} / {tried} mutations detected ({:.2}%), {fp} false positives in 60 clean verifications",
        100.0 * found as f64 / tried as f64
    );
    assert_eq!(fp, 0, "false positives");
    let missed: Vec<String> = [spool_t, arch_t, bun_t]
        .iter()
        .flat_map(|t| {
            t.0.iter().filter(|(_, (t, d))| t != d).map(|(c, (t, d))| format!("{c}: {d}/{t}")).collect::<Vec<_>>()
        })
        .collect();
    assert!(missed.is_empty(), "undetected mutations: {missed:?}");
}

type Edit = Box<dyn Fn(&Path)>;

fn archive_edits() -> Vec<(&'static str, Edit)> {
    use arrow_array::Array as _;
    use arrow_array::cast::AsArray;
    use std::sync::Arc;
    fn set_col(b: arrow_array::RecordBatch, name: &str, col: arrow_array::ArrayRef) -> arrow_array::RecordBatch {
        let idx = b.schema().index_of(name).unwrap();
        let mut cols = b.columns().to_vec();
        cols[idx] = col;
        arrow_array::RecordBatch::try_new(b.schema(), cols).unwrap()
    }
    /// XOR `mask` into one byte of one row of a binary column: the row `row(rows)`, the
    /// byte `byte(value length)`.
    fn flip_bits(
        b: arrow_array::RecordBatch,
        name: &str,
        row: impl Fn(usize) -> usize,
        byte: impl Fn(usize) -> usize,
        mask: u8,
    ) -> arrow_array::RecordBatch {
        let c = b.column_by_name(name).unwrap().as_binary::<i32>().clone();
        let target = row(c.len());
        let vals: Vec<Vec<u8>> = (0..c.len())
            .map(|i| {
                let mut v = c.value(i).to_vec();
                if i == target {
                    let n = byte(v.len());
                    v[n] ^= mask;
                }
                v
            })
            .collect();
        set_col(b, name, Arc::new(arrow_array::BinaryArray::from_iter_values(vals)))
    }
    vec![
        (
            "Parquet row: payload byte changed",
            Box::new(|f: &Path| rewrite(f, |b| flip_bits(b, "payload", |_| 0, |len| len / 2, 1))) as Edit,
        ),
        (
            "Parquet row: analytic column edited",
            Box::new(|f: &Path| {
                rewrite(f, |b| {
                    let n = b.num_rows();
                    set_col(b, "outcome", Arc::new(arrow_array::StringArray::from(vec!["completed"; n])))
                })
            }),
        ),
        ("Parquet row deleted", Box::new(|f: &Path| rewrite(f, |b| b.slice(0, b.num_rows().saturating_sub(1))))),
        ("Parquet row duplicated", Box::new(|f: &Path| rewrite(f, |b| arrow_select_concat(&b)))),
        (
            "Parquet hash column edited",
            Box::new(|f: &Path| rewrite(f, |b| flip_bits(b, "hash", |rows| rows - 1, |_| 0, 0x80))),
        ),
    ]
}

/// The batch with its first row appended again.
fn arrow_select_concat(b: &arrow_array::RecordBatch) -> arrow_array::RecordBatch {
    let first = b.slice(0, 1);
    let mut w = Vec::new();
    {
        let mut writer = parquet::arrow::ArrowWriter::try_new(&mut w, b.schema(), None).unwrap();
        writer.write(b).unwrap();
        writer.write(&first).unwrap();
        writer.close().unwrap();
    }
    let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(w))
        .unwrap()
        .with_batch_size(1 << 20)
        .build()
        .unwrap();
    r.map(|x| x.unwrap()).next().unwrap()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
