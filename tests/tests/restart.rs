//! A writer killed with SIGKILL and restarted takes its chain back and continues it.

use std::path::PathBuf;

use kiroku::{Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::{AuditRecord, ChainId, Timestamp};
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
    // The open segment the dead writer left, and a copy a recovery that died would
    // leave beside it.
    use std::os::unix::fs::MetadataExt as _;
    let open = walk(&spool).into_iter().find(|p| p.extension().is_some_and(|x| x == "open")).expect("an open segment");
    let open_inode = std::fs::metadata(&open).unwrap().ino();
    let stray = open.with_extension("rewrite");
    std::fs::write(&stray, b"half a copy").unwrap();

    let second = SampleProcess::start(&exe(), &spool, &key, "sync").unwrap();
    let banner = second.banner.join("\n");
    assert!(banner.contains("recovered open segment") && banner.contains("7 records"), "{banner}");
    // Recovery sealed a fresh, fsynced copy of what verified (the dead writer's pages
    // may never have reached the disk), and removed the stray copy.
    let sealed = open.with_extension("seg");
    assert_ne!(std::fs::metadata(&sealed).unwrap().ino(), open_inode, "the sealed segment is a new file");
    assert!(!stray.exists() && !open.exists(), "{:?}", walk(&spool));
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

/// A spool holding one chain of writer `writer`: three records, sealed, shut down.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() { out.extend(walk(&p)) } else { out.push(p) }
    }
    out
}

async fn three_sealed_records(writer: &str) -> (tempfile::TempDir, NoteSigner, JournalConfig, ChainId) {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::generate("kiroku-restart").unwrap();
    let cfg = JournalConfig::new(dir.path(), signer.clone()).writer_name(writer);
    let j = Journal::open(cfg.clone()).unwrap();
    for i in 0..3 {
        j.append(AuditRecord::new(format!("sealed-{i}"), Timestamp::now())).await.unwrap();
    }
    j.shutdown().await.unwrap();
    (dir, signer, cfg, j.chain_id())
}

/// An open segment that does not continue where the chain's head says the chain stands
/// (here: it links to another record than the chain's last) is not sealed into the
/// chain on restart: the journal would sign a segment its collector must refuse, and
/// every later segment of the chain would wait behind it. The chain ends there, and the
/// restarted writer starts a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_segment_that_does_not_continue_the_head_ends_the_chain() {
    let (dir, signer, cfg, chain) = three_sealed_records("node-c").await;
    let chain_dir = dir.path().join(chain.to_string());
    // Seqs 3 and 4, linked to a record the chain does not have.
    assert_eq!(kiroku_tests::write_discontinuous_open_segment(&chain_dir, chain), 3);

    let j = Journal::open(cfg).unwrap();
    assert_ne!(j.chain_id(), chain, "a new chain");
    let corrupt = j.recovery().and_then(|r| r.corrupt.clone()).expect("reported as corrupt");
    assert!(corrupt.0.ends_with("00000000000000000003.corrupt"), "{corrupt:?}");
    j.shutdown().await.unwrap();
    assert!(!chain_dir.join("00000000000000000003.seg").exists(), "not sealed into the chain");
    let spool = read_spool(dir.path(), &signer.verifier());
    assert_eq!(spool[&chain].len(), 3, "the chain holds its three sealed records and nothing else");
}

/// A chain whose head file cannot be read (here: overwritten with other bytes) cannot
/// be continued: nothing says where it stands. The writer starts a new chain instead of
/// refusing to start, and says why; the old chain's sealed segments are left as they
/// are, for the collector (they need no head).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_head_ends_the_chain_and_the_writer_starts_a_new_one() {
    let (dir, signer, cfg, chain) = three_sealed_records("node-f").await;
    let chain_dir = dir.path().join(chain.to_string());
    std::fs::write(chain_dir.join("head"), b"not a segment header").unwrap();

    let j = Journal::open(cfg).unwrap();
    assert_ne!(j.chain_id(), chain, "a new chain");
    let (file, why) = j.recovery().and_then(|r| r.corrupt.clone()).expect("reported");
    assert!(file.ends_with("head") && !why.is_empty(), "{file:?}: {why}");
    j.append(AuditRecord::new("next", Timestamp::now())).await.unwrap();
    j.shutdown().await.unwrap();
    let spool = read_spool(dir.path(), &signer.verifier());
    assert_eq!(spool[&chain].len(), 3, "the old chain's records are where they were");
    assert_eq!(spool[&j.chain_id()].len(), 1);
}
