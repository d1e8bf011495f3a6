//! Key rotation end to end: `kiroku proxy` restarted with a new signing key goes on with
//! the same chain, a second instance signs with its own key, and the collector's
//! commands, given a file of the trusted keys, verify, compact, explain and prove the
//! whole log; given one key only, they refuse what it did not sign, and leave it where
//! it is.

mod support;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiroku_schemas::checkpoint::{NoteVerifier, TrustedKeys};
use kiroku_tests::{Conn, chat, read_spool};
use support::{kiroku, repo, text};

/// A key pair made by `kiroku keygen` in `dir/name`: its public key file.
fn keygen(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let k = kiroku(&["keygen", "--out", &out.display().to_string()]);
    assert!(k.status.success(), "{}", text(&k));
    out.join("signer.vkey")
}

fn vkey(file: &Path) -> NoteVerifier {
    NoteVerifier::from_key_text(&std::fs::read_to_string(file).unwrap()).unwrap()
}

/// `kiroku proxy` as writer `writer`, signing with the key next to `public`: `n`
/// requests through it, then SIGTERM (which seals its segment).
async fn proxy_round(spool: &Path, public: &Path, writer: &str, upstream: SocketAddr, n: usize) {
    let key = public.with_file_name("signer.key");
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiroku"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", &format!("http://{upstream}")])
        .args(["--writer-name", writer, "--spool", &spool.display().to_string()])
        .args(["--key", &key.display().to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr: SocketAddr = first.split_whitespace().nth(4).unwrap().parse().unwrap_or_else(|e| panic!("{first}: {e}"));
    // The operator sees which key signs: the rotation took effect.
    assert!(first.contains(&format!("checkpoints signed by {}", vkey(public))), "{first}");
    let mut conn = Conn::connect(addr).await.unwrap();
    for i in 0..n {
        let resp = conn.post_json("/v1/chat/completions", &chat(&format!("{writer} {i}"), false), &[]).await.unwrap();
        assert_eq!(resp.status, 200);
    }
    drop(conn);
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "proxy exited with {exit}");
}

/// The independent Python verifier (tests/interop/verify_bundle.py) on `bundle`,
/// against the trusted keys in `trusted`.
fn python_bundle(bundle: &Path, trusted: &Path) -> std::process::Output {
    let py = std::env::var_os("KIROKU_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(py.exists(), "{} is missing: run scripts/test.sh, which installs the interop venv", py.display());
    Command::new(py).arg(repo().join("tests/interop/verify_bundle.py")).arg(bundle).arg(trusted).output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_whose_key_was_rotated_is_verified_compacted_and_proven_with_a_file_of_its_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    let (old, new, edge) = (keygen(dir.path(), "2026"), keygen(dir.path(), "2027"), keygen(dir.path(), "edge"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(kiroku_examples::sample::serve(listener, kiroku_examples::sample::router(), std::future::pending()));

    // The gateway's key is rotated between two runs; a second instance has its own key.
    let spool = dir.path().join("spool");
    proxy_round(&spool, &old, "gateway", upstream, 4).await;
    proxy_round(&spool, &new, "gateway", upstream, 3).await;
    proxy_round(&spool, &edge, "edge", upstream, 2).await;
    let trusted_file = dir.path().join("trusted.vkey");
    let file = format!(
        "# gateway, 2026: retired\n{}\n\n# gateway, since the rotation\n{}\n# edge instance\n{}\n",
        vkey(&old).to_key_text(),
        vkey(&new).to_key_text(),
        vkey(&edge).to_key_text()
    );
    std::fs::write(&trusted_file, file).unwrap();
    let trusted = TrustedKeys::from_key_text(&std::fs::read_to_string(&trusted_file).unwrap()).unwrap();
    let chains = read_spool(&spool, &trusted);
    assert_eq!(chains.len(), 2, "one chain per writer, the rotation did not start a new one");
    let mut sizes: Vec<usize> = chains.values().map(Vec::len).collect();
    sizes.sort();
    assert_eq!(sizes, [2, 7]);
    let gateway = chains.values().find(|c| c.len() == 7).unwrap();
    let (before, after) = (&gateway[0].record.record_id, &gateway[6].record.record_id);
    let other = &chains.values().find(|c| c.len() == 2).unwrap()[0].record.record_id;

    // One key is not enough for the whole log, and the message says what to do.
    for one in [&old, &new] {
        let v = kiroku(&["verify", "--spool", &d("spool"), "--pubkey", &one.display().to_string()]);
        assert_eq!(v.status.code(), Some(1), "{}", text(&v));
        assert!(text(&v).contains("rotated signing key missing from the trusted keys"), "{}", text(&v));
    }
    let t = trusted_file.display().to_string();
    let v = kiroku(&["verify", "--spool", &d("spool"), "--pubkey", &t]);
    assert!(v.status.success(), "{}", text(&v));

    // Compacting with the new key alone archives nothing it cannot vouch for and
    // quarantines nothing: what another key signed stays in the spool, said so.
    let c = kiroku(&[
        "compact",
        "--spool",
        &d("spool"),
        "--archive",
        &d("archive"),
        "--pubkey",
        &new.display().to_string(),
    ]);
    assert_eq!(c.status.code(), Some(1), "{}", text(&c));
    assert!(!spool.join("quarantine").exists(), "{}", text(&c));
    let c = kiroku(&["compact", "--spool", &d("spool"), "--archive", &d("archive"), "--pubkey", &t]);
    assert!(c.status.success(), "{}", text(&c));
    let v = kiroku(&["verify", "--archive", &d("archive"), "--pubkey", &t]);
    assert!(v.status.success() && text(&v).contains("9 record(s)"), "{}", text(&v));
    // The archive keeps the retired key's checkpoints: the new key alone cannot check them.
    let v = kiroku(&["verify", "--archive", &d("archive"), "--pubkey", &new.display().to_string()]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(text(&v).contains("no key of the --pubkey file signed it"), "{}", text(&v));

    // The report checks every chain's checkpoints against the file too.
    let r = kiroku(&["report", "--archive", &d("archive"), "--pubkey", &t, "--json"]);
    assert!(r.status.success(), "{}", text(&r));
    let r = kiroku(&["report", "--archive", &d("archive"), "--pubkey", &new.display().to_string(), "--json"]);
    assert_eq!(r.status.code(), Some(1), "{}", text(&r));

    // explain names the key that signed the checkpoint proving the record.
    for (id, key) in [(before, &new), (after, &new), (other, &edge)] {
        let e = kiroku(&["explain", id, "--archive", &d("archive"), "--pubkey", &t]);
        let signed_by = format!("signature by {} verified", vkey(key));
        assert!(e.status.success() && text(&e).contains(&signed_by), "{signed_by}: {}", text(&e));
    }

    // A bundle across both instances carries the keys its checkpoints were signed with.
    let bundle = dir.path().join("bundle");
    let b = bundle.display().to_string();
    let ev = kiroku(&[
        "evidence",
        "--archive",
        &d("archive"),
        "--record-id",
        before,
        "--record-id",
        other,
        "--pubkey",
        &t,
        "--out",
        &b,
    ]);
    assert!(ev.status.success(), "{}", text(&ev));
    let carried = TrustedKeys::from_key_text(&std::fs::read_to_string(bundle.join("signer.vkey")).unwrap()).unwrap();
    assert_eq!(carried.keys(), [vkey(&new), vkey(&edge)]);
    let v = kiroku(&["verify", "--bundle", &b, "--pubkey", &t]);
    assert!(v.status.success(), "{}", text(&v));
    let py = python_bundle(&bundle, &trusted_file);
    assert!(py.status.success() && text(&py).contains("2 of 2 records verified"), "{}", text(&py));
    // Against a set that lacks the edge instance's key, both verifiers refuse the bundle.
    let v = kiroku(&["verify", "--bundle", &b, "--pubkey", &new.display().to_string()]);
    assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    assert!(text(&v).contains("not a trusted key"), "{}", text(&v));
    assert_eq!(python_bundle(&bundle, &new).status.code(), Some(1));
    // A window no record falls in writes no bundle, and says so.
    let empty = d("empty-bundle");
    let ev = kiroku(&[
        "evidence",
        "--archive",
        &d("archive"),
        "--from",
        "2001-01-01",
        "--to",
        "2001-01-02",
        "--pubkey",
        &t,
        "--out",
        &empty,
    ]);
    assert_eq!(ev.status.code(), Some(2), "{}", text(&ev));
    assert!(text(&ev).contains("no record in the archive matches"), "{}", text(&ev));
    assert!(!Path::new(&empty).exists());
}

/// A writer that dies holding the retired key leaves an open segment whose checkpoints
/// that key signed. Whether a restarted writer, signing with the new key, takes the
/// chain back (and seals that segment with the new key), or no writer comes back and
/// the collector recovers the segment itself, the file of both keys verifies and
/// compacts every record, and the new key alone does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_died_before_the_rotation_is_recovered_under_the_file_of_keys() {
    use kiroku::{Durability, Journal, JournalConfig};
    use kiroku_schemas::checkpoint::NoteSigner;
    use kiroku_schemas::{AuditRecord, Timestamp};

    let dir = tempfile::tempdir().unwrap();
    let d = |p: &str| dir.path().join(p).display().to_string();
    let (old, new) = (NoteSigner::generate("gateway").unwrap(), NoteSigner::generate("gateway").unwrap());
    let key_file = |name: &str, keys: &[&NoteSigner]| {
        let text: String = keys.iter().map(|k| k.verifier().to_key_text() + "\n").collect();
        std::fs::write(dir.path().join(name), text).unwrap();
        d(name)
    };
    let (old_only, new_only, both) =
        (key_file("old.vkey", &[&old]), key_file("new.vkey", &[&new]), key_file("both.vkey", &[&old, &new]));
    let config = |spool: &Path, signer: &NoteSigner| {
        JournalConfig::new(spool, signer.clone())
            .writer_name("gateway")
            .durability(Durability::Sync)
            .checkpoint_interval(std::time::Duration::from_millis(1))
    };

    // The writer signing with the old key appends three records, checkpoints them, and
    // dies: the copy taken now is what SIGKILL leaves (the open segment, no lock held).
    let live = dir.path().join("live");
    let j = Journal::open(config(&live, &old)).unwrap();
    for i in 0..3 {
        j.append(AuditRecord::new(format!("before-{i}"), Timestamp::now())).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let killed = dir.path().join("killed");
    kiroku_tests::copy_tree(&live, &killed);
    j.shutdown().await.unwrap();
    let chain_dir = killed.join(j.chain_id().to_string());
    let open: Vec<_> = kiroku_tests::segment_files(&chain_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "open"))
        .collect();
    assert_eq!(open.len(), 1, "the dead writer's open segment: {:?}", kiroku_tests::segment_files(&chain_dir));

    // No writer comes back: the collector recovers the open segment. The new key alone
    // cannot vouch for what the old one signed, and leaves it in place.
    let dead = dir.path().join("dead");
    kiroku_tests::copy_tree(&killed, &dead);
    let c = kiroku(&["compact", "--spool", &d("dead"), "--archive", &d("dead-archive"), "--pubkey", &new_only]);
    assert_eq!(c.status.code(), Some(1), "{}", text(&c));
    assert!(dead.join(open[0].strip_prefix(&killed).unwrap()).exists(), "{}", text(&c));
    assert!(!dead.join("quarantine").exists(), "{}", text(&c));
    let c = kiroku(&["compact", "--spool", &d("dead"), "--archive", &d("dead-archive"), "--pubkey", &both]);
    assert!(c.status.success() && text(&c).contains("1 from writers that are gone"), "{}", text(&c));
    let v = kiroku(&["verify", "--archive", &d("dead-archive"), "--pubkey", &both]);
    assert!(v.status.success() && text(&v).contains("3 record(s)"), "{}", text(&v));

    // The writer comes back with the new key: it takes the chain back, seals the dead
    // segment with the new key, and goes on with the chain.
    let j = Journal::open(config(&killed, &new)).unwrap();
    let recovery = j.recovery().expect("the chain was taken back");
    assert!(recovery.corrupt.is_none() && recovery.records == 3, "{recovery}");
    assert_eq!(j.chain_id().to_string(), chain_dir.file_name().unwrap().to_string_lossy());
    for i in 0..2 {
        j.append(AuditRecord::new(format!("after-{i}"), Timestamp::now())).await.unwrap();
    }
    j.shutdown().await.unwrap();
    // The recovered segment holds checkpoints by both keys: neither alone verifies it.
    for one in [&old_only, &new_only] {
        let v = kiroku(&["verify", "--spool", &d("killed"), "--pubkey", one]);
        assert_eq!(v.status.code(), Some(1), "{}", text(&v));
    }
    let v = kiroku(&["verify", "--spool", &d("killed"), "--pubkey", &both]);
    assert!(v.status.success(), "{}", text(&v));
    let c = kiroku(&["compact", "--spool", &d("killed"), "--archive", &d("archive"), "--pubkey", &both]);
    assert!(c.status.success(), "{}", text(&c));
    let v = kiroku(&["verify", "--archive", &d("archive"), "--pubkey", &both]);
    assert!(v.status.success() && text(&v).contains("5 record(s)"), "{}", text(&v));
    for id in ["before-0", "after-1"] {
        let e = kiroku(&["explain", id, "--archive", &d("archive"), "--pubkey", &both]);
        assert!(e.status.success(), "{id}: {}", text(&e));
    }
}
