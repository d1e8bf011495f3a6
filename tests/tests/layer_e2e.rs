//! The audit layer end to end over real loopback sockets: the sample model behind
//! `AuditLayer`, real HTTP/1.1 clients, the journal writing real segment files, and the
//! spool read back and verified (chain, seqs, checkpoints, signatures).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kiroku::journal::Faults;
use kiroku::{AuditLayer, Durability, FailurePolicy, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::digest::blake3_hex;
use kiroku_schemas::record::{CaptureMode, Outcome};
use kiroku_tests::{AuditedServer as Server, Conn, Stored, all_records, chat};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn dense(records: &[Stored]) {
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64, "seqs are dense");
    }
}

fn find(records: &[Stored], pred: impl Fn(&Stored) -> bool) -> &Stored {
    records.iter().find(|r| pred(r)).expect("a matching record")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_and_non_streamed_completions_are_recorded_with_client_digests() {
    let srv = Server::start(|c| c, |l| l).await;
    let mut conn = Conn::connect(srv.addr).await.unwrap();
    let plain = conn.post_json("/v1/chat/completions", &chat("What is kiroku?", false), &[]).await.unwrap();
    let streamed = conn.post_json("/v1/chat/completions", &chat("What is kiroku?", true), &[]).await.unwrap();
    assert_eq!(plain.status, 200);
    assert_eq!(streamed.status, 200);
    assert!(String::from_utf8_lossy(&streamed.body).ends_with("data: [DONE]\n\n"));
    let (records, _dir) = srv.finish().await;
    assert_eq!(records.len(), 2);
    dense(&records);
    let a = &records[0].record;
    let b = &records[1].record;
    for (r, got) in [(a, &plain), (b, &streamed)] {
        assert_eq!(r.http.outcome, Outcome::Completed);
        assert_eq!(r.http.status, Some(200));
        assert_eq!(r.http.response.bytes, got.body.len() as u64);
        assert_eq!(
            r.http.response.blake3.as_deref(),
            Some(blake3_hex(&got.body).as_str()),
            "digest of the bytes the client received"
        );
        assert_eq!(r.gen_ai.request.model.as_deref(), Some("sample-1"));
        assert_eq!(r.gen_ai.response.model.as_deref(), Some("sample-1"));
        assert_eq!(r.gen_ai.response.finish_reasons, vec!["stop"]);
        assert_eq!(r.gen_ai.request.temperature, Some(0.2));
        assert_eq!(r.gen_ai.provider.name.as_deref(), Some("openai"));
        assert!(r.gen_ai.usage.output_tokens.is_some());
        assert!(r.provenance.system_prompt_digest.is_some());
        // Annotations from the sample model's handler.
        assert_eq!(r.output_sources.len(), 2);
        assert!(r.output_sources.iter().all(|s| s.rights_holder.is_some()));
        assert_eq!(r.watermarks[0].scheme, "metadata-header");
        assert_eq!(r.provenance.model_version.as_deref(), Some("2026-11-01"));
        assert!(r.first_byte_at.is_some());
    }
    assert!(!a.http.streaming && b.http.streaming);
    // The same text, streamed or not, has the same output digest: the digest of the answer.
    let expected = blake3_hex(kiroku_examples::sample::answer("sample-1", "What is kiroku?").as_bytes());
    assert_eq!(a.provenance.output_digest.as_deref(), Some(expected.as_str()));
    assert_eq!(b.provenance.output_digest, a.provenance.output_digest);
    assert_eq!(a.gen_ai.usage, b.gen_ai.usage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_stream_yields_an_aborted_record() {
    let srv = Server::start(|c| c, |l| l).await;
    let body = serde_json::json!({"model": "sample-1", "stream": true, "sample_delay_ms": 30,
        "messages": [{"role": "user", "content": "one two three four five six seven eight nine ten"}]})
    .to_string();
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("data: ") {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    drop(s);
    // Give the server time to notice the closed connection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (records, _dir) = srv.finish().await;
    assert_eq!(records.len(), 1);
    let r = &records[0].record;
    assert_eq!(r.http.outcome, Outcome::Aborted, "{:?}", r.http);
    assert!(r.http.error.as_deref().unwrap_or_default().contains("client went away"));
    assert!(r.http.response.bytes > 0, "what was seen so far is kept");
    assert_eq!(r.gen_ai.request.model.as_deref(), Some("sample-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_recorded_as_errors() {
    let srv = Server::start(|c| c, |l| l).await;
    let mut conn = Conn::connect(srv.addr).await.unwrap();
    let mut fail = chat("x", false);
    fail["model"] = "sample-fail".into();
    let r = conn.post_json("/v1/chat/completions", &fail, &[]).await.unwrap();
    assert_eq!(r.status, 500);
    let mut broken = chat("a b c d e f g h", true);
    broken["model"] = "sample-broken-stream".into();
    let mut conn2 = Conn::connect(srv.addr).await.unwrap();
    assert!(conn2.post_json("/v1/chat/completions", &broken, &[]).await.is_err(), "the client sees the stream fail");
    let (records, _dir) = srv.finish().await;
    assert_eq!(records.len(), 2);
    let status = find(&records, |r| r.record.http.status == Some(500));
    assert_eq!(status.record.http.outcome, Outcome::Error);
    let body = find(&records, |r| r.record.gen_ai.request.model.as_deref() == Some("sample-broken-stream"));
    assert_eq!(body.record.http.outcome, Outcome::Error);
    assert!(body.record.http.error.as_deref().unwrap_or_default().contains("broke"), "{:?}", body.record.http.error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inner_service_error_is_recorded() {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::generate("kiroku-e2e").unwrap();
    let verifier = signer.verifier();
    let journal = Journal::open(JournalConfig::new(dir.path(), signer)).unwrap();
    let svc = tower::ServiceBuilder::new().layer(AuditLayer::new(journal.clone())).service(tower::service_fn(
        |_req: http::Request<kiroku::RequestBody<hyper::body::Incoming>>| async move {
            Err::<http::Response<http_body_util::Full<bytes::Bytes>>, _>(std::io::Error::other(
                "model backend unreachable",
            ))
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(svc))
            .await;
    });
    let mut conn = Conn::connect(addr).await.unwrap();
    assert!(conn.post_json("/v1/chat/completions", &chat("hi", false), &[]).await.is_err());
    tokio::time::sleep(Duration::from_millis(100)).await;
    journal.shutdown().await.unwrap();
    let records = all_records(dir.path(), &verifier);
    assert_eq!(records.len(), 1);
    let r = &records[0].record;
    assert_eq!(r.http.outcome, Outcome::Error);
    assert!(r.http.error.as_deref().unwrap_or_default().contains("model backend unreachable"));
    assert_eq!(r.http.status, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_requests_over_fifty_connections_yield_a_thousand_records() {
    let srv = Server::start(|c| c.durability(Durability::Sync).segment_max_bytes(256 << 10), |l| l).await;
    let addr = srv.addr;
    let mut tasks = Vec::new();
    for c in 0..50 {
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::connect(addr).await.unwrap();
            let mut seen = Vec::new();
            for i in 0..20 {
                let prompt = format!("connection {c} request {i}");
                let r = conn.post_json("/v1/chat/completions", &chat(&prompt, i % 2 == 0), &[]).await.unwrap();
                assert_eq!(r.status, 200);
                seen.push((prompt, blake3_hex(&r.body)));
            }
            seen
        }));
    }
    let mut sent = Vec::new();
    for t in tasks {
        sent.extend(t.await.unwrap());
    }
    let (records, _dir) = srv.finish().await;
    assert_eq!(records.len(), 1000, "one record per request");
    dense(&records);
    let mut digests: Vec<String> = records.iter().filter_map(|r| r.record.http.response.blake3.clone()).collect();
    let mut expected: Vec<String> = sent.into_iter().map(|(_, d)| d).collect();
    digests.sort();
    expected.sort();
    assert_eq!(digests, expected, "every client's bytes are in exactly one record");
}

const PII: [&str; 6] = [
    "hanako.suzuki@example.co.jp",
    "4111 1111 1111 1111",
    "090-8765-4321",
    "+81 3 1234 5678",
    "198.51.100.23",
    "sk-live-abcdefghijklmnopqrstuvwx",
];

fn my_number() -> String {
    let body = "98765432109";
    (0..10).map(|c| format!("{body}{c}")).find(|s| kiroku::redact::my_number_ok(s)).unwrap()
}

fn spool_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for chain in std::fs::read_dir(dir).unwrap() {
        for f in std::fs::read_dir(chain.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.is_file() {
                all.extend(std::fs::read(p).unwrap());
            }
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_or_seeded_pii_reaches_the_segments() {
    let mn = my_number();
    for mode in [CaptureMode::Redacted, CaptureMode::Digest] {
        let srv = Server::start(|c| c, |l| l.capture(mode)).await;
        let mut conn = Conn::connect(srv.addr).await.unwrap();
        let prompt = format!(
            "My mail is {} card {} phone {} office {} ip {} key {} my number {mn}",
            PII[0], PII[1], PII[2], PII[3], PII[4], PII[5]
        );
        for stream in [false, true] {
            // The sample model echoes the prompt back: the PII is in both bodies.
            let r = conn
                .post_json(
                    "/v1/chat/completions",
                    &chat(&prompt, stream),
                    &[
                        ("authorization", "Bearer sk-proj-SECRETSECRETSECRET123"),
                        ("x-api-key", "topsecret-api-key-value"),
                    ],
                )
                .await
                .unwrap();
            assert_eq!(r.status, 200);
        }
        let (records, dir) = srv.finish().await;
        assert_eq!(records.len(), 2);
        let bytes = spool_bytes(&dir.path().join("spool"));
        let text = String::from_utf8_lossy(&bytes);
        for secret in PII.iter().map(|s| s.to_string()).chain([
            mn.clone(),
            "SECRETSECRETSECRET".into(),
            "topsecret-api-key-value".into(),
        ]) {
            assert!(!text.contains(&secret), "{mode:?}: {secret} found in the spool");
        }
        if mode == CaptureMode::Redacted {
            assert!(text.contains("[REDACTED:email]"), "redacted bodies are captured");
            assert!(records.iter().all(|r| r.record.http.request.captured.is_some()));
        } else {
            assert!(
                records
                    .iter()
                    .all(|r| r.record.http.request.captured.is_none() && r.record.http.request.blake3.is_some())
            );
        }
        assert!(records.iter().all(|r| r.record.caller.subject.as_deref().is_some_and(|s| s.starts_with("key:"))));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_closed_refuses_before_the_model_and_fail_open_counts_the_loss() {
    for policy in [FailurePolicy::FailClosed, FailurePolicy::FailOpen] {
        let faults = Faults::new();
        let calls = Arc::new(AtomicUsize::new(0));
        let counted = calls.clone();
        let app = kiroku_examples::sample::router().layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                counted.fetch_add(1, Ordering::SeqCst);
                async move { next.run(req).await }
            },
        ));
        let f = faults.clone();
        let srv = Server::start_with(
            move |c| c.durability(Durability::Sync).on_failure(policy).fault_injection(f),
            |l| l,
            app,
        )
        .await;
        let mut conn = Conn::connect(srv.addr).await.unwrap();
        assert_eq!(conn.post_json("/v1/chat/completions", &chat("before", false), &[]).await.unwrap().status, 200);
        faults.fail_writes.store(true, Ordering::SeqCst);
        // This request's record cannot be written: the journal fails.
        let during =
            Conn::connect(srv.addr).await.unwrap().post_json("/v1/chat/completions", &chat("during", false), &[]).await;
        assert!(!srv.journal.is_healthy());
        let before = calls.load(Ordering::SeqCst);
        let refused = Conn::connect(srv.addr)
            .await
            .unwrap()
            .post_json("/v1/chat/completions", &chat("after", false), &[])
            .await
            .unwrap();
        match policy {
            FailurePolicy::FailClosed => {
                assert!(during.is_err(), "under Sync the end of a response whose record failed is withheld");
                assert_eq!(refused.status, 503);
                let body = String::from_utf8_lossy(&refused.body);
                assert!(
                    body.contains("audit journal unavailable") && body.contains("injected write failure"),
                    "{body}"
                );
                assert_eq!(calls.load(Ordering::SeqCst), before, "the inner service is never called");
            }
            FailurePolicy::FailOpen => {
                assert_eq!(during.unwrap().status, 200);
                assert_eq!(refused.status, 200, "fail-open keeps serving");
                // The record that came while the journal was failed. The one whose write
                // failed is counted once recovery knows whether it reached the disk.
                assert!(srv.journal.metrics().records_lost >= 1, "{:?}", srv.journal.metrics());
            }
        }
        // The disk comes back: the journal recovers and records again.
        faults.clear();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let mut conn = Conn::connect(srv.addr).await.unwrap();
        let mut ok = false;
        // Served so far under FailOpen: before, during, after.
        let mut served = 3u64;
        for _ in 0..20 {
            let status = conn.post_json("/v1/chat/completions", &chat("recovered", false), &[]).await.unwrap().status;
            served += u64::from(status == 200);
            if status == 200 && srv.journal.is_healthy() {
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(ok, "journal recovered");
        let journal = srv.journal.clone();
        let (records, _dir) = srv.finish().await;
        // Nothing recorded before the fault is damaged; the chain still verifies (read_spool).
        assert_eq!(records[0].record.http.request.captured.as_deref().map(|c| c.contains("before")), Some(true));
        let last = records.last().unwrap();
        assert!(last.record.http.request.captured.as_deref().unwrap_or_default().contains("recovered"));
        if policy == FailurePolicy::FailOpen {
            // The refused record is lost; the one whose write failed is lost unless its
            // bytes reached the disk after all (the writer tries them again when its batch
            // ends, which may be after the disk came back). Either way every served
            // request has a record or is stated lost in the chain itself.
            let stated: u64 = records.iter().map(|r| r.record.records_lost_before).sum();
            let m = journal.metrics();
            assert_eq!(m.records_lost_unstated, 0, "{m:?}");
            assert!(stated >= 1, "the gap is stated in the chain itself ({stated})");
            assert_eq!(records.len() as u64 + stated, served, "{} records, {stated} stated lost", records.len());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_sync_the_record_is_on_disk_before_the_client_sees_the_end() {
    let srv = Server::start(|c| c.durability(Durability::Sync), |l| l).await;
    let mut conn = Conn::connect(srv.addr).await.unwrap();
    for (i, stream) in [false, true, false, true].into_iter().enumerate() {
        let got = conn.post_json("/v1/chat/completions", &chat(&format!("durable {i}"), stream), &[]).await.unwrap();
        // Read the open segment from disk right now: the record must be there already.
        let chain_dir = srv.journal.chain_dir().to_owned();
        let on_disk = kiroku_tests::read_spool(chain_dir.parent().unwrap(), &srv.verifier);
        let records: Vec<_> = on_disk.into_values().flatten().collect();
        assert_eq!(records.len(), i + 1, "record {i} durable when the client got the end");
        assert_eq!(records[i].record.http.response.blake3.as_deref(), Some(blake3_hex(&got.body).as_str()));
    }
    srv.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_parameters_too_big_or_odd_for_their_fields_reach_the_segment_as_sent() {
    // Digest capture: the body is not kept, so the record is the only place the
    // parameters can survive.
    let srv = Server::start(|c| c, |l| l.capture(CaptureMode::Digest)).await;
    let mut body = chat("seeded", false);
    body["seed"] = serde_json::json!(u64::MAX);
    body["max_tokens"] = serde_json::json!(100.0);
    body["temperature"] = serde_json::json!(0.0010030090270812437);
    let mut conn = Conn::connect(srv.addr).await.unwrap();
    let got = conn.post_json("/v1/chat/completions", &body, &[]).await.unwrap();
    assert_eq!(got.status, 200);
    let (records, _dir) = srv.finish().await;
    assert_eq!(records.len(), 1);
    let r = &records[0].record;
    assert!(r.http.request.captured.is_none());
    assert_eq!(r.gen_ai.request.temperature, Some(0.0010030090270812437), "to the bit");
    assert_eq!((r.gen_ai.request.seed, r.gen_ai.request.max_tokens), (None, None));
    assert_eq!(r.provenance.parameters.get("seed").and_then(|v| v.as_u64()), Some(u64::MAX));
    assert_eq!(r.provenance.parameters.get("max_tokens").and_then(|v| v.as_f64()), Some(100.0));
    assert!(!r.provenance.parameters.contains_key("temperature"));
}
