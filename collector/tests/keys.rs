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
