//! Crash consistency of the journal: the audited sample process under load with
//! `Durability::Sync`, killed with SIGKILL at random moments, restarted each time.
//! After every restart: every request whose response completed is in the log, the
//! chain verifies across all segments (signatures, links, continuity), seqs are dense,
//! and a torn tail, if the kill left one, was cut and reported, never anything else.
//!
//! `KIROKU_CRASH_KILLS` sets the number of kills (default 50; `KIROKU_LONG=1`: 500).

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_tests::process::SampleProcess;
use kiroku_tests::{Conn, chat, read_spool};

fn kills() -> usize {
    if let Some(n) = std::env::var("KIROKU_CRASH_KILLS").ok().and_then(|v| v.parse().ok()) {
        return n;
    }
    if std::env::var_os("KIROKU_LONG").is_some() { 500 } else { 50 }
}

/// A tiny deterministic PRNG (xorshift), so a failing run can be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_never_loses_an_acknowledged_record() {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_audited-sample"));
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.key");
    let signer = NoteSigner::generate("kiroku-crash").unwrap();
    signer.save(&key).unwrap();
    let spool = dir.path().join("spool");
    let seed = std::env::var("KIROKU_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_c0de_u64);
    let mut rng = Rng(seed);
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    let (mut torn_reported, mut restarts) = (0, 0);
    let started = Instant::now();
    for round in 0..kills() {
        let p = SampleProcess::start(&exe, &spool, &key, "sync")
            .unwrap_or_else(|e| panic!("round {round} (seed {seed}): {e}"));
        restarts += 1;
        if p.banner.iter().any(|l| l.contains("torn final frame")) {
            torn_reported += 1;
        }
        // Load from 4 connections; each completed response's prompt is acknowledged.
        let addr = p.addr;
        let run_for = Duration::from_millis(20 + rng.next() % 120);
        let mut tasks = Vec::new();
        for c in 0..4 {
            tasks.push(tokio::spawn(async move {
                let mut done = Vec::new();
                let Ok(mut conn) = Conn::connect(addr).await else { return done };
                let mut i = 0;
                let stop = Instant::now() + run_for + Duration::from_millis(200);
                while Instant::now() < stop {
                    let prompt = format!("round {round} conn {c} req {i}");
                    match conn.post_json("/v1/chat/completions", &chat(&prompt, i % 2 == 0), &[]).await {
                        Ok(r) if r.status == 200 => done.push(prompt),
                        _ => break, // killed mid-request: not acknowledged
                    }
                    i += 1;
                }
                done
            }));
        }
        tokio::time::sleep(run_for).await;
        p.kill();
        for t in tasks {
            acknowledged.extend(t.await.unwrap());
        }
    }
    // A last clean start recovers the final kill's open segment, then a clean stop seals.
    let last = SampleProcess::start(&exe, &spool, &key, "sync").unwrap();
    last.terminate().unwrap();

    let chains = read_spool(&spool, &signer.verifier());
    assert_eq!(chains.len(), 1, "every restart took back the same chain");
    let records = chains.into_values().next().unwrap();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "seqs are dense");
    }
    let logged: BTreeSet<String> = records
        .iter()
        .filter_map(|r| r.record.http.request.captured.as_deref())
        .filter_map(|c| c.split("round ").nth(1).map(|rest| format!("round {}", rest.split('"').next().unwrap_or(""))))
        .collect();
    let missing: Vec<&String> = acknowledged.iter().filter(|a| !logged.contains(*a)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged responses without a record (seed {seed}), e.g. {:?}",
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>()
    );
    eprintln!(
        "crash suite: {} SIGKILLs, {restarts} restarts, {} responses acknowledged, {} records in the log (acknowledged or aborted), {torn_reported} torn tails cut and reported, {:.1}s, seed {seed}",
        kills(),
        acknowledged.len(),
        records.len(),
        started.elapsed().as_secs_f64()
    );
}
