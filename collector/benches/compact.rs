//! Compaction throughput for 1 KiB records against DuckDB converting the same records
//! from JSON lines to Parquet, in the same run; archive size against the raw segments.
//! DuckDB runs twice per round: writing the records' columns (the baseline the collector
//! issue names), and writing them with each record's JSON line as a `payload` column
//! too, which is what kiroku's archive holds besides its chain columns.
//!
//! `cargo bench -p kiroku-collector --bench compact` (needs .venv from scripts/test.sh
//! for the DuckDB baseline; `KIROKU_BENCH_RECORDS` sets the record count, default 200000;
//! `KIROKU_BENCH_ROUNDS` runs the contenders that many times, alternated, default 1).
//! Each is timed by the clock and by the CPU time its process used (all threads), since
//! on a shared 2-core VM the clock also counts time the cores were taken elsewhere.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use kiroku::{Durability, Journal, JournalConfig};
use kiroku_collector::archive_store::LocalArchive;
use kiroku_collector::compact::{CompactOptions, compact};
use kiroku_collector::spool::LocalSpool;
use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::record::{OutputSource, Watermark};
use kiroku_schemas::segment::{FrameKind, SegmentReader};
use kiroku_schemas::{AuditRecord, Timestamp};

fn record(i: usize) -> AuditRecord {
    let mut r = AuditRecord::new(format!("01a2c0de-0000-7000-8000-{i:012}"), Timestamp::now());
    r.http.method = "POST".into();
    r.http.route = "/v1/chat/completions".into();
    r.http.status = Some(200);
    r.http.response.bytes = 2048;
    r.http.response.blake3 = Some(kiroku_schemas::digest::blake3_hex(&i.to_le_bytes()));
    r.gen_ai.request.model = Some(["sample-1", "sample-2", "sample-3"][i % 3].into());
    r.gen_ai.response.model = r.gen_ai.request.model.clone();
    r.gen_ai.usage.input_tokens = Some(100 + (i % 50) as u64);
    r.gen_ai.usage.output_tokens = Some(200 + (i % 70) as u64);
    r.gen_ai.response.finish_reasons = vec!["stop".into()];
    r.trace.trace_id = Some(format!("{:032x}", i * 7919));
    r.provenance.output_digest = Some(kiroku_schemas::digest::blake3_hex(&(i * 3).to_le_bytes()));
    r.output_sources.push(OutputSource {
        uri: format!("https://docs.example.jp/doc/{}", i % 100),
        rights_holder: Some("Example KK".into()),
        score: Some(0.8),
        ..Default::default()
    });
    r.watermarks.push(Watermark {
        scheme: "metadata-header".into(),
        key_id: Some("wm-2026".into()),
        ..Default::default()
    });
    r.attributes.insert("tenant".into(), format!("tenant-{}", i % 10));
    r.attributes.insert("pad".into(), "x".repeat(120));
    r
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p).map_or(0, |rd| {
        rd.flatten()
            .map(|e| if e.path().is_dir() { dir_bytes(&e.path()) } else { e.metadata().map_or(0, |m| m.len()) })
            .sum()
    })
}

/// `KIROKU_BENCH_SPOOL_OUT=DIR`: only write a spool of `KIROKU_BENCH_RECORDS` records over
/// `KIROKU_BENCH_CHAINS` chains (segments of `KIROKU_BENCH_SEGMENT_MIB`, default 8 MiB)
/// and its key pair into DIR, for scripts/bench-fleet.sh and for profiling `kiroku
/// compact` alone.
fn spool_only(out: &Path, n: usize) {
    let chains: usize = std::env::var("KIROKU_BENCH_CHAINS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let mib: u64 = std::env::var("KIROKU_BENCH_SEGMENT_MIB").ok().and_then(|v| v.parse().ok()).unwrap_or(8);
    let signer = NoteSigner::generate("bench").expect("key");
    std::fs::create_dir_all(out).expect("out dir");
    std::fs::write(out.join("signer.vkey"), signer.verifier().to_key_text()).expect("vkey");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    rt.block_on(async {
        for c in 0..chains {
            let cfg = JournalConfig::new(out.join("spool"), signer.clone())
                .durability(Durability::Buffered)
                .segment_max_bytes(mib << 20)
                .writer_name(format!("bench-{c}"));
            let j = Journal::open(cfg).expect("journal");
            for i in (c..n).step_by(chains) {
                j.append(record(i)).await.expect("append");
            }
            j.shutdown().await.expect("shutdown");
        }
    });
    println!("{n} records over {chains} chains in {}", out.display());
}

/// Writes every dirty page back (`sync(1)`), so that a timed run does not share the
/// disk and the cores with the write-back of what came before it.
fn settle() {
    let _ = Command::new("sync").status();
}

fn main() {
    // As `kiroku compact` does.
    kiroku_collector::allocator::keep_freed_memory();
    let n: usize = std::env::var("KIROKU_BENCH_RECORDS").ok().and_then(|v| v.parse().ok()).unwrap_or(200_000);
    if let Some(out) = std::env::var_os("KIROKU_BENCH_SPOOL_OUT") {
        return spool_only(Path::new(&out), n);
    }
    let work = tempfile::tempdir().expect("tempdir");
    let spool = work.path().join("spool");
    let signer = NoteSigner::generate("bench").expect("key");
    let verifier = signer.verifier();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    rt.block_on(async {
        let j = Journal::open(JournalConfig::new(&spool, signer).durability(Durability::Buffered)).expect("journal");
        for i in 0..n {
            j.append(record(i)).await.expect("append");
        }
        j.shutdown().await.expect("shutdown");
    });
    // The same records as JSON lines, for the DuckDB baseline.
    let jsonl = work.path().join("records.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&jsonl).expect("jsonl"));
    let mut payload_bytes = 0u64;
    for chain in std::fs::read_dir(&spool).expect("spool") {
        let mut files: Vec<_> = std::fs::read_dir(chain.expect("entry").path())
            .expect("chain")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        files.sort();
        for f in files {
            let bytes = std::fs::read(&f).expect("segment");
            for frame in SegmentReader::open(&bytes[..]).expect("header").flatten() {
                if frame.kind == FrameKind::Record {
                    payload_bytes += frame.payload.len() as u64;
                    out.write_all(&frame.payload).and_then(|()| out.write_all(b"\n")).expect("write");
                }
            }
        }
    }
    out.flush().expect("flush");
    drop(out);
    let spool_bytes = dir_bytes(&spool);
    println!("{n} records, mean payload {} B, segments {:.1} MB", payload_bytes / n as u64, spool_bytes as f64 / 1e6);

    let py = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
    let rounds: usize = std::env::var("KIROKU_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
    let (mut ratios, mut cpu_ratios) = (Vec::new(), Vec::new());
    let (mut like_ratios, mut like_cpu_ratios) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        if rounds > 1 {
            println!("round {round} of {rounds}");
        }
        // Compaction moves what it compacted: every round starts from a copy.
        let spool_copy = work.path().join("spool-round");
        let archive = work.path().join("archive");
        for d in [&spool_copy, &archive] {
            let _ = std::fs::remove_dir_all(d);
        }
        copy_dir(&spool, &spool_copy);
        // What came before (the spool, its copy, the JSON lines: 3.5 GB at 1M records)
        // may still be being written back to disk; each contender starts with nothing
        // dirty, so neither pays for that.
        settle();
        let (t, cpu) = (Instant::now(), cpu_secs());
        let report = compact(
            &LocalSpool::new(&spool_copy),
            &LocalArchive::open(&archive).expect("archive"),
            &CompactOptions::new(verifier.clone()),
            &mut |_| {},
        )
        .expect("compact");
        let secs = t.elapsed().as_secs_f64();
        let cpu = cpu_secs() - cpu;
        assert_eq!(report.records, n as u64);
        let archive_bytes = dir_bytes(&archive.join("records"));
        println!(
            "kiroku compact: {secs:.2}s ({cpu:.2}s of CPU), {:.0} records/s, {:.0} MB/s of segments, archive {:.1} MB ({:.2}x of segments), 2 threads (read+verify | build+write, parsing shared), verification included",
            n as f64 / secs,
            spool_bytes as f64 / 1e6 / secs,
            archive_bytes as f64 / 1e6,
            archive_bytes as f64 / spool_bytes as f64
        );
        if !py.exists() {
            println!("DuckDB baseline skipped: run scripts/setup-interop.sh first");
            continue;
        }
        for baseline in [Baseline::Columns, Baseline::WithPayload] {
            settle();
            match duckdb(&py, &jsonl, &work.path().join("duckdb.parquet"), baseline) {
                Ok(d) => {
                    println!(
                        "DuckDB {} {}: {:.2}s ({:.2}s of CPU), {:.0} records/s, file {:.1} MB, {} threads, no verification; a further fsync of its file {:.3}s (not counted)",
                        d.version,
                        baseline.label(),
                        d.secs,
                        d.cpu_secs,
                        n as f64 / d.secs,
                        d.bytes as f64 / 1e6,
                        d.threads,
                        d.fsync_secs
                    );
                    // kiroku's time includes fsyncing every file it writes; the ratio is
                    // taken against DuckDB's `COPY` alone.
                    let (wall, per_cpu) = (d.secs / secs, d.cpu_secs / cpu);
                    println!(
                        "ratio kiroku/DuckDB ({}) records/s: {wall:.2}; records per CPU second: {per_cpu:.2}",
                        baseline.name()
                    );
                    let (walls, per_cpus) = match baseline {
                        Baseline::Columns => (&mut ratios, &mut cpu_ratios),
                        Baseline::WithPayload => (&mut like_ratios, &mut like_cpu_ratios),
                    };
                    walls.push(wall);
                    per_cpus.push(per_cpu);
                }
                Err(e) => println!("DuckDB baseline ({}) failed: {e}", baseline.name()),
            }
        }
    }
    for (what, mut r) in [
        ("ratios", ratios),
        ("ratios of records per CPU second", cpu_ratios),
        ("ratios against DuckDB writing the payload column too", like_ratios),
        ("ratios of records per CPU second against DuckDB writing the payload column too", like_cpu_ratios),
    ] {
        if r.len() > 1 {
            r.sort_by(f64::total_cmp);
            let shown: Vec<String> = r.iter().map(|x| format!("{x:.2}")).collect();
            println!("{what} over {} rounds: {} (median {:.2})", r.len(), shown.join(", "), r[r.len() / 2]);
        }
    }
}

/// CPU time this process has used, user and system, all threads (Linux: `/proc/self/stat`,
/// in clock ticks of 1/100 s; 0 elsewhere).
fn cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else { return 0.0 };
    // Fields after the command name (which is in parentheses and may hold spaces):
    // utime and stime are the 12th and 13th.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let ticks: Vec<f64> = after.split_whitespace().skip(11).take(2).filter_map(|t| t.parse().ok()).collect();
    ticks.iter().sum::<f64>() / 100.0
}

/// `src` copied to `dst`, directories and files.
fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create copy");
    for e in std::fs::read_dir(src).expect("read dir").flatten() {
        let to = dst.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).expect("copy");
        }
    }
}

/// One DuckDB conversion, as timed inside its Python process.
struct DuckDb {
    secs: f64,
    /// CPU time of its process during the `COPY` (every thread).
    cpu_secs: f64,
    fsync_secs: f64,
    bytes: u64,
    version: String,
    threads: String,
}

/// What DuckDB is asked to write.
#[derive(Debug, Clone, Copy)]
enum Baseline {
    /// The records' columns, as `read_json` infers them: the baseline.
    Columns,
    /// The same columns plus each record's JSON line, verbatim, as a `payload` column:
    /// what kiroku's archive holds (without its chain columns, and without verifying).
    WithPayload,
}

impl Baseline {
    fn name(self) -> &'static str {
        match self {
            Baseline::Columns => "columns",
            Baseline::WithPayload => "columns + payload",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Baseline::Columns => "read_json -> Parquet (zstd)",
            Baseline::WithPayload => "read_json + each line as a payload column -> Parquet (zstd)",
        }
    }

    /// The `SELECT` whose result is copied to Parquet, over JSON lines at `path`. The
    /// lines are read a second time as one-column CSV (a delimiter, quote and escape
    /// that compact JSON never holds) and joined by position.
    fn select(self, path: &Path) -> String {
        let read_json = format!("read_json('{}', format='newline_delimited')", path.display());
        match self {
            Baseline::Columns => format!("SELECT * FROM {read_json}"),
            Baseline::WithPayload => format!(
                "SELECT j.*, l.payload FROM {read_json} j POSITIONAL JOIN read_csv('{}', columns={{'payload': 'VARCHAR'}}, header=false, auto_detect=false, delim=chr(31), quote='', escape='') l",
                path.display()
            ),
        }
    }
}

/// Convert the JSON lines at `jsonl` to Parquet at `out` with DuckDB from the venv.
fn duckdb(py: &Path, jsonl: &Path, out: &Path, baseline: Baseline) -> Result<DuckDb, String> {
    let script = format!(
        "import duckdb, time, os\ncon = duckdb.connect()\ncon.execute('SET enable_progress_bar=false')\nthreads = con.execute(\"SELECT current_setting('threads')\").fetchone()[0]\nsql = \"COPY ({0}) TO '{1}' (FORMAT parquet, COMPRESSION zstd)\".replace('chr(31)', repr(chr(31)))\nt, c = time.perf_counter(), time.process_time()\ncon.execute(sql)\ns, c = time.perf_counter() - t, time.process_time() - c\nfd = os.open('{1}', os.O_RDONLY)\nt = time.perf_counter()\nos.fsync(fd)\nf = time.perf_counter() - t\nsize = os.path.getsize('{1}')\nprint(round(s, 3), round(f, 3), size, duckdb.__version__, threads, round(c, 3))\n",
        baseline.select(jsonl),
        out.display()
    );
    let _ = std::fs::remove_file(out);
    let o = Command::new(py).arg("-c").arg(script).output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&o.stdout);
    let parts: Vec<&str> = text.split_whitespace().collect();
    let [s, f, size, version, threads, c] = parts[..] else {
        return Err(format!("{text}{}", String::from_utf8_lossy(&o.stderr)));
    };
    Ok(DuckDb {
        secs: s.parse().map_err(|_| format!("time {s:?}"))?,
        cpu_secs: c.parse().map_err(|_| format!("CPU time {c:?}"))?,
        fsync_secs: f.parse().map_err(|_| format!("fsync time {f:?}"))?,
        bytes: size.parse().map_err(|_| format!("size {size:?}"))?,
        version: version.to_owned(),
        threads: threads.to_owned(),
    })
}
