//! `kiroku find --record-id` over a large archive: partition layout, row-group
//! statistics and bloom filters instead of a scan. DuckDB over the same files is the
//! baseline, in the same run.
//!
//! `cargo bench -p kiroku-collector --bench find` (`KIROKU_BENCH_ROWS`, default
//! 10000000; needs .venv from scripts/test.sh for the DuckDB baseline).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use kiroku_collector::archive::{Archive, Filter};
use kiroku_collector::columns::{BatchBuilder, ChainRow, schema};
use kiroku_collector::compact::writer_properties;
use kiroku_collector::manifest::{ChainEntry, FileEntry, MANIFEST_VERSION, Manifest};
use kiroku_schemas::{AuditRecord, ChainId, Timestamp};
use parquet::arrow::ArrowWriter;

const DAY_NS: i64 = 86_400_000_000_000;

fn record_id(i: u64) -> String {
    format!("01a2f1d0-0000-7000-8000-{i:012x}")
}

/// `find --report-only ARCHIVE`: generate the report in a fresh process and print its
/// time and peak memory (VmHWM), so the archive's generation does not count.
fn report_only(root: &Path) {
    let t = Instant::now();
    let archive = Archive::open(root).expect("archive");
    let s = kiroku_collector::report::summarize(
        &archive,
        &kiroku_collector::report::ReportOptions { outage_error_rate: 0.5, ..Default::default() },
    )
    .expect("report");
    let page = kiroku_collector::report::html(&s, &root.display().to_string());
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|st| st.lines().find(|l| l.starts_with("VmHWM")).map(str::to_owned))
        .unwrap_or_default();
    println!(
        "kiroku report over {} records: {:.2}s, page {} KB, peak {}",
        s.records,
        t.elapsed().as_secs_f64(),
        page.len() / 1024,
        hwm.split_whitespace().skip(1).collect::<Vec<_>>().join(" ")
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--report-only") {
        report_only(Path::new(&args[i + 1]));
        return;
    }
    let rows: u64 = std::env::var("KIROKU_BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000_000);
    let per_file: u64 = 1_000_000.min(rows);
    let work = tempfile::tempdir().expect("tempdir");
    let root = work.path().join("archive");
    let chain = ChainId([9; 16]);
    let chain_s = chain.to_string();
    let mut entry = ChainEntry::genesis(chain);
    let t0 = Instant::now();
    let start = Timestamp::from_unix_nanos(1_795_305_600_000_000_000);
    let mut seq = 0u64;
    while seq < rows {
        let first = seq;
        let last = (seq + per_file).min(rows) - 1;
        let day = Timestamp::from_unix_nanos(start.unix_nanos() + (first / per_file) as i64 * DAY_NS);
        let rel = format!("records/date={}/{chain_s}-{first}-{last}.parquet", day.date_string());
        let path = root.join(&rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("dir");
        let file = std::fs::File::create(&path).expect("file");
        let mut w =
            ArrowWriter::try_new(file, schema(), Some(writer_properties(128 * 1024, &chain_s))).expect("writer");
        while seq <= last {
            let mut b = BatchBuilder::default();
            for _ in 0..16_384.min(last + 1 - seq) {
                let mut r = AuditRecord::new(
                    record_id(seq),
                    Timestamp::from_unix_nanos(day.unix_nanos() + (seq - first) as i64 * 1_000_000),
                );
                r.chain_id = chain;
                r.seq = seq;
                r.http.method = "POST".into();
                r.http.route = "/v1/chat/completions".into();
                r.gen_ai.request.model = Some(["m-1", "m-2", "m-3"][(seq % 3) as usize].into());
                r.trace.trace_id = Some(format!("{:032x}", seq * 7919));
                let payload = r.to_json();
                let h = *blake3::hash(&payload).as_bytes();
                let view = kiroku_schemas::record::RecordView::parse(&payload).expect("own record");
                b.push(&chain_s, &ChainRow { seq, prev: &[0; 32], hash: &h, payload: &payload }, &view);
                seq += 1;
            }
            w.write(&b.finish().expect("batch")).expect("write");
        }
        w.close().expect("close");
        let bytes = std::fs::metadata(&path).expect("meta").len();
        entry.files.push(FileEntry {
            path: rel,
            first_seq: first,
            last_seq: last,
            rows: last + 1 - first,
            bytes,
            blake3: String::new(),
            date: day.date_string(),
        });
    }
    let mut m = Manifest { version: MANIFEST_VERSION, chains: Default::default() };
    m.chains.insert(chain_s.clone(), entry);
    m.save(&root).expect("manifest");
    let size: u64 = m.files().map(|(_, f)| f.bytes).sum();
    println!(
        "built {rows} rows in {} files ({:.0} MB) in {:.1}s",
        m.files().count(),
        size as f64 / 1e6,
        t0.elapsed().as_secs_f64()
    );

    let target = record_id(rows * 7 / 10 + 12_345);
    let archive = Archive::open(&root).expect("archive");
    for round in 1..=3 {
        let t = Instant::now();
        let found = archive.find(&Filter { record_id: Some(target.clone()), ..Filter::default() }).expect("find");
        println!(
            "round {round}: Archive::find(record_id) {:.1} ms, {} row",
            t.elapsed().as_secs_f64() * 1e3,
            found.len()
        );
        assert_eq!(found.len(), 1);
    }
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/kiroku");
    if bin.exists() {
        let t = Instant::now();
        let out = Command::new(&bin)
            .args(["find", "--archive"])
            .arg(&root)
            .args(["--record-id", &target])
            .output()
            .expect("kiroku");
        println!(
            "kiroku find --record-id (whole process): {:.1} ms, {}",
            t.elapsed().as_secs_f64() * 1e3,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let me = std::env::current_exe().expect("exe");
    for _ in 0..2 {
        let out = Command::new(&me).arg("--report-only").arg(&root).output().expect("report");
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    if py.exists() {
        let script = format!(
            "import duckdb, time\ncon = duckdb.connect()\nfor i in range(3):\n    t = time.perf_counter()\n    n = con.execute(\"SELECT count(*) FROM read_parquet('{}/records/*/*.parquet') WHERE record_id = '{}'\").fetchone()[0]\n    print(round((time.perf_counter() - t) * 1000, 1), n)\n",
            root.display(),
            target
        );
        let out = Command::new(py).arg("-c").arg(script).output().expect("python");
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            println!("DuckDB same query: {line} (ms, rows)");
        }
    }
}
