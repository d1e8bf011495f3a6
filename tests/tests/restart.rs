//! A writer killed with SIGKILL and restarted takes its chain back and continues it.

use std::path::PathBuf;

use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_tests::process::SampleProcess;
use kiroku_tests::{Conn, chat, read_spool};

fn exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_audited-sample"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_sigkill_resumes_the_same_chain() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signer.key");
    let signer = NoteSigner::generate("kiroku-restart").unwrap();
    signer.save(&key).unwrap();
    let spool = dir.path().join("spool");

    let first = SampleProcess::start(&exe(), &spool, &key, "sync").unwrap();
    let mut conn = Conn::connect(first.addr).await.unwrap();
    for i in 0..7 {
        assert_eq!(
            conn.post_json("/v1/chat/completions", &chat(&format!("before kill {i}"), i % 2 == 1), &[])
                .await
                .unwrap()
                .status,
            200
        );
    }
    first.kill();

    let second = SampleProcess::start(&exe(), &spool, &key, "sync").unwrap();
    let banner = second.banner.join("\n");
    assert!(banner.contains("recovered open segment") && banner.contains("7 records"), "{banner}");
    let mut conn = Conn::connect(second.addr).await.unwrap();
    for i in 0..5 {
        assert_eq!(
            conn.post_json("/v1/chat/completions", &chat(&format!("after restart {i}"), false), &[])
                .await
                .unwrap()
                .status,
            200
        );
    }
    second.terminate().unwrap();

    let chains = read_spool(&spool, &signer.verifier());
    assert_eq!(chains.len(), 1, "the restarted writer continued the same chain");
    let records = chains.into_values().next().unwrap();
    assert_eq!(records.len(), 12);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64);
    }
    assert!(records[7].record.http.request.captured.as_deref().unwrap_or_default().contains("after restart 0"));
}
