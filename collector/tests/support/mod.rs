//! Helpers shared by the collector's integration tests (each test crate uses some).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiroku::{Durability, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::{AuditRecord, Timestamp};

/// The workspace root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned()
}

/// Run the `kiroku` binary.
pub fn kiroku(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kiroku")).args(args).output().expect("run kiroku")
}

/// Stdout then stderr of a finished command.
pub fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Rewrite one archive file with `edit` applied to its batches (keeping its name).
pub fn rewrite(file: &Path, edit: impl Fn(arrow_array::RecordBatch) -> arrow_array::RecordBatch) {
    let input = std::fs::File::open(file).unwrap();
    let batches: Vec<_> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(input)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| edit(b.unwrap()))
        .collect();
    let out = std::fs::File::create(file).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(out, kiroku_collector::columns::schema(), None).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

/// A spool at `dir/spool` written by the real journal (small segments, so that each
/// day spans several), one chain, with `per_day` records started on each of `days`;
/// its public key at `dir/signer.vkey`. Returns the records' ids in seq order.
pub fn dated_spool(dir: &Path, days: &[Timestamp], per_day: usize) -> Vec<String> {
    let signer = NoteSigner::generate("retention-test").unwrap();
    std::fs::write(dir.join("signer.vkey"), signer.verifier().to_key_text()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let cfg = JournalConfig::new(dir.join("spool"), signer)
            .durability(Durability::Buffered)
            .segment_max_bytes(8 << 10)
            .writer_name("dated");
        let j = Journal::open(cfg).unwrap();
        let mut ids = Vec::new();
        for (d, day) in days.iter().enumerate() {
            for i in 0..per_day {
                let at = Timestamp::from_unix_nanos(day.unix_nanos() + i as i64 * 1_000_000_000);
                let id = format!("01a2c0de-0000-7000-8000-{:06}{i:06}", d);
                let mut r = AuditRecord::new(id.clone(), at);
                r.http.method = "POST".into();
                r.http.route = "/v1/chat/completions".into();
                r.gen_ai.request.model = Some("sample-1".into());
                r.attributes.insert("pad".into(), "x".repeat(400));
                j.append(r).await.unwrap();
                ids.push(id);
            }
        }
        j.shutdown().await.unwrap();
        ids
    })
}

/// `days` before `now`, at noon UTC.
pub fn days_ago(now: Timestamp, days: i64) -> Timestamp {
    let day = 86_400_000_000_000i64;
    Timestamp::from_unix_nanos((now.unix_nanos() / day - days) * day + day / 2)
}

/// Files under `dir` (recursively) whose extension is `ext`, sorted.
pub fn files_under(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p, ext));
        } else if p.extension().is_some_and(|x| x == ext) {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Flip one bit of the byte in the middle of `path` (a corrupt copy); its bytes before.
pub fn flip_middle_byte(path: &Path) -> Vec<u8> {
    let original = std::fs::read(path).unwrap();
    let mut bytes = original.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    std::fs::write(path, bytes).unwrap();
    original
}
