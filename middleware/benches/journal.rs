//! Journal throughput for 1 KiB records: `Batched` (queue, write, fsync every 100 ms)
//! and `Sync` (every append waits for its fsync; group commit across concurrent
//! writers). Prints records/s; run several times, machines are noisy.
//!
//! `cargo bench -p kiroku --bench journal`

use std::time::{Duration, Instant};

use kiroku::{Durability, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::{AuditRecord, Timestamp};

/// A record whose JSON is about 1 KiB.
fn record(i: usize) -> AuditRecord {
    let mut r = AuditRecord::new(format!("01a2bench-0000-7000-8000-{i:012}"), Timestamp::now());
    r.http.method = "POST".into();
    r.http.route = "/v1/chat/completions".into();
    r.http.status = Some(200);
    r.gen_ai.request.model = Some("sample-1".into());
    r.attributes.insert("pad".into(), "x".repeat(640));
    r
}

async fn run(durability: Durability, total: usize, writers: usize) -> (f64, usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = Journal::open(
        JournalConfig::new(dir.path(), NoteSigner::generate("bench").expect("key"))
            .durability(durability)
            .queue_capacity(65_536),
    )
    .expect("journal");
    let size = record(0).to_json().len();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let j = journal.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..total).step_by(writers) {
                j.append(record(i)).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    journal.flush().await.expect("flush");
    let secs = start.elapsed().as_secs_f64();
    journal.shutdown().await.expect("shutdown");
    (total as f64 / secs, size)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    rt.block_on(async {
        for round in 1..=3 {
            let (b, size) = run(Durability::Batched(Duration::from_millis(100)), 300_000, 4).await;
            let (s, _) = run(Durability::Sync, 60_000, 512).await;
            println!("round {round}: record JSON {size} B | Batched(100ms): {b:.0} records/s | Sync (512 concurrent writers): {s:.0} records/s");
        }
    });
}
