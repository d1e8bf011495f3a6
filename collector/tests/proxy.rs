//! `kiroku proxy` as a process in front of the sample model, driven by the official
//! openai Python SDK, an h2c client, and a client that leaves early; then stopped with
//! SIGTERM and its sealed spool read back.

mod support;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use support::repo;

use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::record::Outcome;
use kiroku_tests::read_spool;

fn python() -> PathBuf {
    let p = std::env::var_os("KIROKU_PYTHON").map(PathBuf::from).unwrap_or_else(|| repo().join(".venv/bin/python"));
    assert!(p.exists(), "{} is missing: run scripts/test.sh, which installs the interop venv", p.display());
    p
}

struct Proxy {
    child: Child,
    addr: SocketAddr,
    admin: SocketAddr,
}

/// `kiroku proxy` on an ephemeral loopback port with `spool`, `key` and `extra` flags.
fn proxy_cmd(spool: &Path, key: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiroku"));
    c.args(["proxy", "--listen", "127.0.0.1:0"])
        .args(extra)
        .arg("--spool")
        .arg(spool)
        .arg("--key")
        .arg(key)
        .stdout(Stdio::piped());
    c
}

/// Read the proxy's address lines (and its admin address when `admin`); the rest of its
/// stdout is collected by the returned thread.
fn read_addrs(child: &mut Child, admin: bool) -> (SocketAddr, Option<SocketAddr>, std::thread::JoinHandle<String>) {
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let addr = first.split_whitespace().nth(4).unwrap().parse().unwrap_or_else(|e| panic!("{first}: {e}"));
    let admin = admin.then(|| lines.next().unwrap().unwrap().split_whitespace().nth(2).unwrap().parse().unwrap());
    let rest = std::thread::spawn(move || {
        std::iter::once(first).chain(lines.map_while(Result::ok)).collect::<Vec<_>>().join("\n")
    });
    (addr, admin, rest)
}

fn start_proxy(dir: &Path, name: &str, upstream: &str, key: &Path) -> Proxy {
    let mut child =
        proxy_cmd(&dir.join(name), key, &["--admin", "127.0.0.1:0", "--upstream", upstream, "--durability", "sync"])
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
    let (addr, admin, _) = read_addrs(&mut child, true);
    Proxy { child, addr, admin: admin.unwrap() }
}

/// A fresh checkpoint signer named `name`, saved (0600) as `dir/signer.key`.
fn signing_key(dir: &Path, name: &str) -> (NoteSigner, PathBuf) {
    let signer = NoteSigner::generate(name).unwrap();
    let key = dir.join("signer.key");
    signer.save(&key).unwrap();
    (signer, key)
}

/// The sample model, unaudited, on an ephemeral loopback port: its address.
async fn sample_upstream() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(kiroku_examples::sample::serve(listener, kiroku_examples::sample::router(), std::future::pending()));
    addr
}

fn terminate(mut p: Proxy) {
    let st = Command::new("kill").args(["-TERM", &p.child.id().to_string()]).status().unwrap();
    assert!(st.success());
    let exit = p.child.wait().unwrap();
    assert!(exit.success(), "proxy exited with {exit}");
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tx.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openai_sdk_through_the_proxy_sees_what_it_sees_directly_and_every_call_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, key) = signing_key(dir.path(), "kiroku-proxy-test");

    // The upstream: the sample model, unaudited.
    let upstream = sample_upstream().await;
    // An upstream that is down: a port nobody listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();

    let proxy = start_proxy(dir.path(), "spool", &format!("http://{upstream}"), &key);
    let down = start_proxy(dir.path(), "spool-down", &format!("http://{dead}"), &key);

    let py = tokio::task::spawn_blocking({
        let (p, d) = (proxy.addr, down.addr);
        move || {
            Command::new(python())
                .arg(repo().join("tests/interop/openai_sdk.py"))
                .args([format!("http://{p}"), format!("http://{upstream}"), format!("http://{d}")])
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    assert!(py.status.success(), "{}{}", String::from_utf8_lossy(&py.stdout), String::from_utf8_lossy(&py.stderr));
    let sdk: serde_json::Value = serde_json::from_slice(&py.stdout).unwrap();

    // The SDK saw exactly what it sees without the proxy.
    assert_eq!(sdk["proxy"]["plain"]["object"], sdk["direct"]["plain"]["object"]);
    assert_eq!(sdk["proxy"]["plain"]["blake3"], sdk["direct"]["plain"]["blake3"]);
    assert_eq!(sdk["proxy"]["stream"]["events"], sdk["direct"]["stream"]["events"], "same SSE events");
    assert_eq!(sdk["proxy"]["stream_raw"]["blake3"], sdk["direct"]["stream_raw"]["blake3"], "same bytes");
    assert_eq!(sdk["down"]["status"], 502);
    assert!(sdk["down"]["message"].as_str().unwrap().contains("unreachable"), "{}", sdk["down"]);

    // h2c (prior knowledge) through the proxy.
    {
        use http_body_util::BodyExt;
        let stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
        let (mut tx, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(stream),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let body = kiroku_tests::chat("over h2c", false).to_string();
        let req = http::Request::post(format!("http://{}/v1/chat/completions", proxy.addr))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert!(String::from_utf8_lossy(&resp.into_body().collect().await.unwrap().to_bytes()).contains("over h2c"));
    }

    let (st, health) = get(proxy.admin, "/healthz").await;
    assert_eq!((st, health.as_str()), (200, "ok\n"));
    let (_, metrics) = get(proxy.admin, "/metrics").await;
    assert!(
        metrics.contains("kiroku_records_written_total") && metrics.contains("kiroku_proxy_requests_total 5"),
        "{metrics}"
    );

    terminate(proxy);
    terminate(down);

    let records: Vec<_> = read_spool(&dir.path().join("spool"), &signer.verifier()).into_values().flatten().collect();
    assert_eq!(records.len(), 5, "one record per call");
    let r: Vec<_> = records.iter().map(|s| &s.record).collect();
    assert_eq!(r[0].http.outcome, Outcome::Completed);
    assert_eq!(
        r[0].http.response.blake3.as_deref(),
        sdk["proxy"]["plain"]["blake3"].as_str(),
        "digest of the bytes the SDK received"
    );
    assert_eq!(r[0].provenance.output_digest.as_deref(), sdk["proxy"]["plain"]["text_blake3"].as_str());
    assert_eq!(r[0].gen_ai.request.temperature, Some(0.3));
    assert_eq!(r[1].http.response.blake3.as_deref(), sdk["proxy"]["stream_raw"]["blake3"].as_str());
    assert!(r[1].http.streaming && r[1].gen_ai.usage.output_tokens.is_some());
    assert_eq!(
        r[2].provenance.output_digest.as_deref(),
        sdk["proxy"]["stream"]["text_blake3"].as_str(),
        "streamed text digest"
    );
    assert_eq!(r[3].http.outcome, Outcome::Aborted, "{:?}", r[3].http);
    assert_eq!(r[4].http.outcome, Outcome::Completed);
    for rec in &r {
        assert!(rec.caller.subject.as_deref().is_some_and(|s| s.starts_with("key:")) || rec.caller.subject.is_none());
    }
    let down_records: Vec<_> =
        read_spool(&dir.path().join("spool-down"), &signer.verifier()).into_values().flatten().collect();
    assert_eq!(down_records.len(), 1);
    let d = &down_records[0].record;
    assert_eq!((d.http.status, d.http.outcome), (Some(502), Outcome::Error));
    assert!(d.http.error.as_deref().unwrap_or_default().contains("unreachable"), "{:?}", d.http.error);

    // The upstream's Authorization passed through, and is nowhere in the spool.
    for spool in ["spool", "spool-down"] {
        for chain in std::fs::read_dir(dir.path().join(spool)).unwrap() {
            for f in std::fs::read_dir(chain.unwrap().path()).unwrap() {
                let bytes = std::fs::read(f.unwrap().path()).unwrap();
                assert!(!String::from_utf8_lossy(&bytes).contains("SECRET"), "the API key reached the spool");
            }
        }
    }
}

/// A stand-in OTLP/HTTP collector on loopback: keeps every body it receives.
async fn otlp_receiver() -> (SocketAddr, std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>) {
    use http_body_util::BodyExt;
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let store = got.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let store = store.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                    let store = store.clone();
                    async move {
                        let path = req.uri().path().to_owned();
                        let body = req.into_body().collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                        store.lock().unwrap().push((path, body));
                        let mut r = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                        r.headers_mut()
                            .insert("content-type", http::HeaderValue::from_static("application/x-protobuf"));
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_metrics_go_to_an_otlp_endpoint_without_bodies_or_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, key) = signing_key(dir.path(), "kiroku-otel-test");
    let upstream = sample_upstream().await;
    let (otlp, got) = otlp_receiver().await;

    let (up, ot) = (format!("http://{upstream}"), format!("http://{otlp}"));
    let mut child = proxy_cmd(&dir.path().join("spool"), &key, &["--upstream", &up, "--otlp-endpoint", &ot])
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (addr, _, _) = read_addrs(&mut child, false);

    let mut conn = kiroku_tests::Conn::connect(addr).await.unwrap();
    let secret_prompt = "mail hanako.suzuki@example.co.jp card 4111 1111 1111 1111";
    let trace = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for stream in [false, true] {
        let r = conn
            .post_json(
                "/v1/chat/completions",
                &kiroku_tests::chat(secret_prompt, stream),
                &[("traceparent", trace), ("authorization", "Bearer sk-otel-SECRET-123456789")],
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    terminate(Proxy { child, addr, admin: addr });

    let records: Vec<_> = read_spool(&dir.path().join("spool"), &signer.verifier()).into_values().flatten().collect();
    assert_eq!(records.len(), 2);
    let bodies = got.lock().unwrap().clone();
    let traces: Vec<u8> = bodies.iter().filter(|(p, _)| p == "/v1/traces").flat_map(|(_, b)| b.clone()).collect();
    let metrics: Vec<u8> = bodies.iter().filter(|(p, _)| p == "/v1/metrics").flat_map(|(_, b)| b.clone()).collect();
    let has = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for attr in [
        "gen_ai.request.model",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.finish_reasons",
        "kiroku.record_id",
        "kiroku.seq",
        "chat sample-1",
    ] {
        assert!(has(&traces, attr.as_bytes()), "exported spans lack {attr}");
    }
    for r in &records {
        assert!(has(&traces, r.record.record_id.as_bytes()), "span of record {} exported", r.record.record_id);
        // The record's trace context is the span's: same trace as the caller's traceparent.
        assert_eq!(r.record.trace.trace_id.as_deref(), Some("0af7651916cd43dd8448eb211c80319c"));
    }
    assert!(has(&metrics, b"kiroku.journal.records"), "journal metrics exported");
    for secret in ["hanako.suzuki", "4111 1111", "SECRET"] {
        assert!(
            !has(&traces, secret.as_bytes()) && !has(&metrics, secret.as_bytes()),
            "{secret} reached the OTLP export"
        );
    }
}

fn all_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(all_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_key_or_personal_data_anywhere_in_the_pipeline() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let kiroku = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_kiroku")).args(args).output().unwrap();
    // Keys: created 0600; a key others can read is refused.
    let keys = dir.path().join("keys");
    assert!(kiroku(&["keygen", "--out", &keys.display().to_string(), "--name", "kiroku-sec"]).status.success());
    let key = keys.join("signer.key");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let key_text = std::fs::read_to_string(&key).unwrap();
    // PRIVATE+KEY+<name>+<key id>+<base64 seed>: the base64 may itself hold '+'.
    let secret_part = key_text.trim().splitn(5, '+').nth(4).unwrap().to_owned();
    assert!(secret_part.len() >= 40, "the whole base64 seed: {secret_part:?}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = kiroku(&[
        "proxy",
        "--upstream",
        "http://127.0.0.1:9",
        "--spool",
        &dir.path().join("x").display().to_string(),
        "--key",
        &key.display().to_string(),
    ]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("chmod 600"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let upstream = sample_upstream().await;
    let (otlp, got) = otlp_receiver().await;
    let spool = dir.path().join("spool");
    let log = dir.path().join("proxy.log");
    let (up, ot) = (format!("http://{upstream}"), format!("http://{otlp}"));
    let mut child = proxy_cmd(&spool, &key, &["--upstream", &up, "--otlp-endpoint", &ot, "--durability", "sync"])
        .env("KIROKU_LOG", "debug")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (addr, _, reader) = read_addrs(&mut child, false);
    let mut stdout_text = String::new();

    let mn = (0..10).map(|c| format!("12345678901{c}")).find(|s| kiroku::redact::my_number_ok(s)).unwrap();
    let pii = ["hanako.suzuki@example.co.jp", "4111 1111 1111 1111", "090-8765-4321", "203.0.113.77", mn.as_str()];
    let prompt = format!("I am {} card {} phone {} from {} number {}", pii[0], pii[1], pii[2], pii[3], pii[4]);
    let mut conn = kiroku_tests::Conn::connect(addr).await.unwrap();
    for stream in [false, true] {
        let r = conn
            .post_json(
                "/v1/chat/completions",
                &kiroku_tests::chat(&prompt, stream),
                &[("authorization", "Bearer sk-live-TOPSECRETKEY-0123456789"), ("cookie", "session=COOKIESECRET")],
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    terminate(Proxy { child, addr, admin: addr });
    stdout_text.push_str(&reader.join().unwrap());

    let archive = dir.path().join("archive");
    let vkey = keys.join("signer.vkey");
    let c = kiroku(&[
        "compact",
        "--spool",
        &spool.display().to_string(),
        "--archive",
        &archive.display().to_string(),
        "--pubkey",
        &vkey.display().to_string(),
    ]);
    assert!(c.status.success(), "{}", String::from_utf8_lossy(&c.stdout));
    let bundle = dir.path().join("bundle");
    let e = kiroku(&[
        "evidence",
        "--archive",
        &archive.display().to_string(),
        "--from",
        "2000-01-01",
        "--to",
        "2100-01-01",
        "--pubkey",
        &vkey.display().to_string(),
        "--out",
        &bundle.display().to_string(),
    ]);
    assert!(e.status.success(), "{}{}", String::from_utf8_lossy(&e.stdout), String::from_utf8_lossy(&e.stderr));

    // Everything the pipeline wrote or sent anywhere.
    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    for root in [&spool, &archive, &bundle] {
        for f in all_files(root) {
            let mode = std::fs::metadata(&f).unwrap().permissions().mode();
            assert_eq!(mode & 0o002, 0, "{} is world-writable", f.display());
            places.push((f.display().to_string(), std::fs::read(&f).unwrap()));
        }
    }
    // Parquet pages are zstd-compressed: look inside through the archive's own reader too.
    let ar = kiroku_collector::archive::Archive::open(&archive).unwrap();
    for (_, f) in ar.files(None, None) {
        for b in ar.batches(&f).unwrap() {
            for col in b.columns() {
                places.push((format!("{} column", f.path), format!("{col:?}").into_bytes()));
            }
        }
    }
    for (p, b) in got.lock().unwrap().iter() {
        places.push((format!("OTLP {p}"), b.clone()));
    }
    places.push(("proxy log".into(), std::fs::read(&log).unwrap()));
    places.push(("proxy stdout".into(), stdout_text.into_bytes()));
    let mut secrets: Vec<String> = pii.iter().map(|s| s.to_string()).collect();
    secrets.extend([
        "TOPSECRETKEY".to_owned(),
        "COOKIESECRET".to_owned(),
        secret_part.clone(),
        key_text.trim().to_owned(),
    ]);
    assert!(places.len() > 10);
    for (place, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{s:?} found in {place}");
        }
    }
    assert!(
        places.iter().any(|(p, b)| p.ends_with("column") && String::from_utf8_lossy(b).contains("[REDACTED:email]")),
        "redacted captures reach the archive"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_sends_garbage_or_hangs_is_answered_and_recorded() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (signer, key) = signing_key(dir.path(), "kiroku-edge");
    // An upstream that answers with bytes that are not HTTP, and one that never answers.
    let garbage = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let garbage_addr = garbage.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = garbage.accept().await {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await;
            let _ = s.write_all(b"\x00\x01garbage, not HTTP at all\r\n\r\n").await;
        }
    });
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_addr = hang.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = hang.accept().await {
            held.push(s);
        }
    });
    let start = |name: &str, up: SocketAddr| {
        let up_url = format!("http://{up}");
        let mut child = proxy_cmd(&dir.path().join(name), &key, &["--upstream", &up_url, "--upstream-timeout", "1"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (addr, _, _) = read_addrs(&mut child, false);
        Proxy { child, addr, admin: addr }
    };
    let g = start("g", garbage_addr);
    let h = start("h", hang_addr);
    let r = kiroku_tests::Conn::connect(g.addr)
        .await
        .unwrap()
        .post_json("/v1/chat/completions", &kiroku_tests::chat("x", false), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 502);
    let r = kiroku_tests::Conn::connect(h.addr)
        .await
        .unwrap()
        .post_json("/v1/chat/completions", &kiroku_tests::chat("x", false), &[])
        .await
        .unwrap();
    assert_eq!(r.status, 504);
    terminate(g);
    terminate(h);
    for (name, status, what) in [("g", 502, "unreachable"), ("h", 504, "no response within")] {
        let recs: Vec<_> = read_spool(&dir.path().join(name), &signer.verifier()).into_values().flatten().collect();
        assert_eq!(recs.len(), 1);
        let rec = &recs[0].record;
        assert_eq!((rec.http.status, rec.http.outcome), (Some(status), Outcome::Error));
        assert!(rec.http.error.as_deref().unwrap_or_default().contains(what), "{:?}", rec.http.error);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_that_fills_up_gives_a_clear_refusal_not_a_crash_or_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, key) = signing_key(dir.path(), "kiroku-full");
    let upstream = sample_upstream().await;
    let spool = dir.path().join("spool");
    let log = dir.path().join("proxy.log");
    // Files may not grow beyond 48 KiB: the segment fills up after a few dozen records.
    let cmd = format!(
        "ulimit -f 48; exec {} proxy --listen 127.0.0.1:0 --upstream http://{upstream} --durability sync --spool {} --key {}",
        env!("CARGO_BIN_EXE_kiroku"),
        spool.display(),
        key.display()
    );
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let (addr, _, _) = read_addrs(&mut child, false);
    let mut ok = 0;
    let mut refusal = None;
    for i in 0..400 {
        let Ok(mut conn) = kiroku_tests::Conn::connect(addr).await else {
            panic!("the proxy died after {ok} requests")
        };
        match conn
            .post_json("/v1/chat/completions", &kiroku_tests::chat(&format!("filling the disk {i}"), false), &[])
            .await
        {
            Ok(r) if r.status == 200 => ok += 1,
            Ok(r) if r.status == 503 => {
                refusal = Some(String::from_utf8_lossy(&r.body).into_owned());
                break;
            }
            Ok(r) => panic!("unexpected status {}", r.status),
            // Under Sync the response whose record hit the limit is withheld.
            Err(_) => continue,
        }
    }
    let refusal = refusal.expect("a 503 once the disk is full");
    assert!(refusal.contains("audit journal unavailable") && refusal.contains("File too large"), "{refusal}");
    assert!(child.try_wait().unwrap().is_none(), "still running");
    assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
    // At shutdown the journal recovers the segment the limit cut off and seals it: exit
    // 3, since the record whose write hit the limit is lost (its response was
    // withheld); or 2, when even the seal cannot be written.
    let code = child.wait().unwrap().code();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(matches!(code, Some(2 | 3)), "exit {code:?}: {text}");
    assert!(text.contains("journal failed") && text.contains("File too large"), "a clear log line: {text}");
    assert!(text.contains("kiroku: error"), "{text}");
    if code == Some(3) {
        assert!(text.contains("audit record(s) lost during this run"), "{text}");
    }
    // What was acknowledged before the disk filled is in the log and verifies; the
    // segment the limit cut off verifies up to its last complete frame.
    let records: Vec<_> = read_spool(&spool, &signer.verifier()).into_values().flatten().collect();
    assert!(records.len() >= ok, "{} records for {ok} acknowledged responses", records.len());
    eprintln!("disk full after {ok} acknowledged requests; {} records kept", records.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_addresses_are_keyed_by_the_caller_secret_or_left_out() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let (signer, key) = signing_key(dir.path(), "kiroku-caller");
    let secret = dir.path().join("caller.secret");
    std::fs::write(&secret, b"0123456789abcdef-not-random-but-long-enough\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let upstream = format!("http://{}", sample_upstream().await);

    // The caller's subject and address as each configuration records them.
    let run = |name: &str, extra: &[&str]| {
        let spool = dir.path().join(name);
        let mut args = vec!["--upstream", upstream.as_str(), "--durability", "sync"];
        args.extend_from_slice(extra);
        let mut child = proxy_cmd(&spool, &key, &args).stderr(Stdio::inherit()).spawn().unwrap();
        let (addr, _, _) = read_addrs(&mut child, false);
        (child, addr, spool)
    };
    let mut seen = Vec::new();
    let secret_arg = secret.display().to_string();
    for (name, extra) in [
        ("default", vec![]),
        ("secret", vec!["--caller-secret", secret_arg.as_str()]),
        ("none", vec!["--caller-secret", secret_arg.as_str(), "--no-client-addr"]),
    ] {
        let (child, addr, spool) = run(name, &extra);
        let mut conn = kiroku_tests::Conn::connect(addr).await.unwrap();
        let headers = [("authorization", "Bearer sk-caller-test-0001")];
        let r = conn.post_json("/v1/chat/completions", &kiroku_tests::chat("who", false), &headers).await.unwrap();
        assert_eq!(r.status, 200);
        terminate(Proxy { child, addr, admin: addr });
        let chains = read_spool(&spool, &signer.verifier());
        let records: Vec<_> = chains.values().flatten().collect();
        assert_eq!(records.len(), 1, "{name}");
        let c = records[0].record.caller.clone();
        seen.push((c.subject, c.client_addr));
    }
    // The digests the documentation promises: keyed blake3 of the text, 16 bytes in hex.
    let keyed = |key: &[u8; 32], prefix: &str, text: &str| {
        let d = blake3::keyed_hash(key, text.as_bytes());
        Some(format!("{prefix}:{}", kiroku_schemas::digest::to_hex(&d.as_bytes()[..16])))
    };
    let public = blake3::derive_key("kiroku caller key digest v1", b"");
    let derived = blake3::derive_key("kiroku caller secret v1", b"0123456789abcdef-not-random-but-long-enough");
    assert_eq!(seen[0], (keyed(&public, "key", "sk-caller-test-0001"), keyed(&public, "ip", "127.0.0.1")));
    assert_eq!(seen[1], (keyed(&derived, "key", "sk-caller-test-0001"), keyed(&derived, "ip", "127.0.0.1")));
    assert_eq!(seen[2], (keyed(&derived, "key", "sk-caller-test-0001"), None));

    // A secret others can read, or one too short to be a secret, is refused before serving.
    let kiroku = |secret: &Path| {
        Command::new(env!("CARGO_BIN_EXE_kiroku"))
            .args(["proxy", "--upstream", upstream.as_str(), "--caller-secret"])
            .arg(secret)
            .arg("--spool")
            .arg(dir.path().join("refused"))
            .arg("--key")
            .arg(&key)
            .output()
            .unwrap()
    };
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
    let open = kiroku(&secret);
    assert_eq!(open.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&open.stderr).contains("chmod 600"), "{}", String::from_utf8_lossy(&open.stderr));
    let short = dir.path().join("short.secret");
    std::fs::write(&short, b"tiny\n").unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
    let short_run = kiroku(&short);
    assert_eq!(short_run.status.code(), Some(2));
    let err = String::from_utf8_lossy(&short_run.stderr);
    assert!(err.contains("4 bytes; at least 16"), "{err}");
}

/// Clients ask for compressed responses (the OpenAI and Anthropic SDKs send
/// `Accept-Encoding: gzip`); a compressed body cannot be read for provenance or
/// redacted. The proxy asks the upstream for bodies as they are (`identity`), so what
/// it records is read from the same bytes the client receives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_asks_the_upstream_for_bodies_it_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let (signer, key) = signing_key(dir.path(), "kiroku-encoding");
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let seen = asked.clone();
    // An upstream that compresses when asked (its "gzip" here is opaque bytes).
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |headers: http::HeaderMap| {
            let seen = seen.clone();
            async move {
                let ae = headers.get("accept-encoding").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                seen.lock().unwrap().push(ae.clone());
                let json = r#"{"id":"c1","object":"chat.completion","model":"sample-1","choices":[{"index":0,"message":{"role":"assistant","content":"Hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}"#;
                let b = axum::response::Response::builder().header("content-type", "application/json");
                if ae.contains("gzip") {
                    b.header("content-encoding", "gzip").body(axum::body::Body::from(&b"\x1f\x8b\x08\x00compressed"[..])).unwrap()
                } else {
                    b.body(axum::body::Body::from(json)).unwrap()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    tokio::spawn(kiroku_examples::sample::serve(listener, app, std::future::pending()));
    let p = start_proxy(dir.path(), "spool", &format!("http://{up}"), &key);
    let r = kiroku_tests::Conn::connect(p.addr)
        .await
        .unwrap()
        .post_json("/v1/chat/completions", &kiroku_tests::chat("x", false), &[("accept-encoding", "gzip, deflate, br")])
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    terminate(p);
    assert_eq!(*asked.lock().unwrap(), ["identity"], "what the upstream was asked for");
    let recs: Vec<_> = read_spool(&dir.path().join("spool"), &signer.verifier()).into_values().flatten().collect();
    let rec = &recs[0].record;
    assert_eq!(rec.gen_ai.response.model.as_deref(), Some("sample-1"));
    assert_eq!(rec.provenance.output_digest.as_deref(), Some(kiroku_schemas::digest::blake3_hex(b"Hi").as_str()));
    assert_eq!(rec.http.response.blake3.as_deref(), Some(kiroku_schemas::digest::blake3_hex(&r.body).as_str()));
}

/// `FailOpen` on a disk that fills up, with the proxy's log on that disk too: every
/// request is still served (writing a log line to a full disk used to panic inside the
/// request and drop the client's connection), the exit status stays one that says what
/// happened (3: records lost, or 2: and the journal could not seal; a panic made it
/// 101), and the proxy says how many records it lost: as many as served requests have
/// none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_fail_open_serves_every_request_and_says_what_was_lost() {
    let upstream = sample_upstream().await;
    for log_on_the_full_disk in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let (signer, key) = signing_key(dir.path(), "kiroku-open");
        let spool = dir.path().join("spool");
        let log = dir.path().join("proxy.log");
        let redirect = if log_on_the_full_disk { format!("2> {}", log.display()) } else { String::new() };
        let cmd = format!(
            "ulimit -f 48; exec {} proxy --listen 127.0.0.1:0 --upstream http://{upstream} --durability sync --on-journal-failure open --spool {} --key {} {redirect}",
            env!("CARGO_BIN_EXE_kiroku"),
            spool.display(),
            key.display()
        );
        let mut child =
            Command::new("bash").arg("-c").arg(cmd).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut stderr, &mut s).unwrap();
            s
        });
        let (addr, _, _) = read_addrs(&mut child, false);
        let served = 400;
        for i in 0..served {
            let mut conn = kiroku_tests::Conn::connect(addr).await.unwrap();
            let r = conn
                .post_json("/v1/chat/completions", &kiroku_tests::chat(&format!("filling the disk {i}"), false), &[])
                .await
                .unwrap_or_else(|e| panic!("log on the full disk {log_on_the_full_disk}: request {i}: {e}"));
            assert_eq!(r.status, 200, "FailOpen serves");
        }
        assert!(Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap().success());
        // 3: stopped cleanly, records lost; 2: and the journal could not seal either.
        let code = child.wait().unwrap().code();
        assert!(matches!(code, Some(2 | 3)), "log on the full disk {log_on_the_full_disk}: exit {code:?}");
        let records = read_spool(&spool, &signer.verifier()).into_values().flatten().count();
        assert!(records < served, "the disk filled up: {records} records");
        let said = stderr.join().unwrap();
        if !log_on_the_full_disk {
            let lost = served - records;
            assert!(
                said.contains("kiroku: error: ")
                    && said.contains(&format!(" {lost} audit record(s) lost during this run")),
                "{records} records for {served} requests: {said}"
            );
        }
    }
}

/// A proxy that lost records under `FailOpen` and stopped cleanly ends with exit
/// status 3 and says how many, and whether the chain states them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_that_lost_records_ends_with_its_own_exit_status() {
    use kiroku::journal::Faults;
    use kiroku::{AuditLayer, Durability, FailurePolicy, Journal, JournalConfig};
    use std::sync::atomic::Ordering;
    let upstream = sample_upstream().await;
    for writes_on in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let signer = NoteSigner::generate("kiroku-lost").unwrap();
        let faults = Faults::new();
        let journal = Journal::open(
            JournalConfig::new(dir.path(), signer.clone())
                .durability(Durability::Sync)
                .on_failure(FailurePolicy::FailOpen)
                .fault_injection(faults.clone()),
        )
        .unwrap();
        let cfg = kiroku_collector::proxy::ProxyConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            admin: None,
            upstream: format!("http://{upstream}").parse().unwrap(),
            upstream_timeout: std::time::Duration::from_secs(30),
            upstream_ca: None,
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (ready, bound) = tokio::sync::oneshot::channel();
        let proxy = tokio::spawn(kiroku_collector::proxy::run(
            cfg,
            AuditLayer::new(journal),
            async {
                let _ = stopped.await;
            },
            move |addr, _| {
                let _ = ready.send(addr);
            },
        ));
        let addr = bound.await.unwrap();
        let ask = |what: &'static str| async move {
            let mut conn = kiroku_tests::Conn::connect(addr).await.unwrap();
            let r = conn.post_json("/v1/chat/completions", &kiroku_tests::chat(what, false), &[]).await.unwrap();
            assert_eq!(r.status, 200, "{what}: FailOpen serves");
        };
        ask("before").await;
        faults.fail_writes.store(true, Ordering::SeqCst);
        ask("while the disk fails").await;
        ask("still failing").await;
        faults.clear();
        if writes_on {
            tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
            ask("after").await;
        }
        stop.send(()).unwrap();
        let err = proxy.await.unwrap().expect_err("records were lost");
        let said = err.to_string();
        assert_eq!(err.exit_code(), 3, "{said}");
        let records: Vec<_> = read_spool(dir.path(), &signer.verifier()).into_values().flatten().collect();
        let lost = 2 + usize::from(writes_on) + 1 - records.len();
        assert!(said.contains(&format!("{lost} audit record(s) lost during this run")), "{said}");
        let states = if writes_on { "the chain states each loss" } else { "no record in the chain states them" };
        assert!(said.contains(states), "{said}");
        // Losses no record states are kept for the next process of the chain.
        assert_eq!(said.contains("the chain's `lost` file keeps them"), !writes_on, "{said}");
    }
}
