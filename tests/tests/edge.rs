//! Bad input at the edge: each case yields a record (and the service keeps working),
//! never a crash or a silent gap.

use std::time::Duration;

use kiroku_schemas::record::Outcome;
use kiroku_tests::{AuditedServer, Conn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> Vec<u8> {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    out
}

/// An inner service answering every chat completion with `body()` as `content_type`.
fn answering(
    content_type: &'static str,
    body: impl Fn() -> axum::body::Body + Clone + Send + Sync + 'static,
) -> axum::Router {
    axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || async move {
            axum::response::Response::builder().header("content-type", content_type).body(body()).unwrap()
        }),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_non_utf8_and_invalid_bodies_are_recorded() {
    let srv = AuditedServer::start(|c| c, |l| l.capture_cap(1024).keep_limit(64 << 10)).await;
    let addr = srv.addr;
    // 1. A request body far over the capture cap (and the keep limit).
    let big = serde_json::json!({"model": "sample-1", "messages": [{"role": "user", "content": "x".repeat(200_000)}]})
        .to_string();
    let mut conn = Conn::connect(addr).await.unwrap();
    assert_eq!(
        conn.post_json("/v1/chat/completions", &serde_json::from_str(&big).unwrap(), &[]).await.unwrap().status,
        200
    );
    // 2. Not UTF-8 at all.
    let bin: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let r = raw(addr, &format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n", bin.len()), &bin).await;
    assert!(String::from_utf8_lossy(&r).starts_with("HTTP/1.1 400"));
    // 3. Invalid JSON.
    let bad = b"{\"model\": \"sample-1\", \"messages\": [";
    let r = raw(
        addr,
        &format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
            bad.len()
        ),
        bad,
    )
    .await;
    assert!(String::from_utf8_lossy(&r).starts_with("HTTP/1.1 400"));
    // 4. A slow client: reads its stream a byte at a time with pauses.
    let body = serde_json::json!({"model": "sample-1", "stream": true, "messages": [{"role": "user", "content": "slow reader"}]}).to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut slow = Vec::new();
    let mut b = [0u8; 64];
    loop {
        let n = s.read(&mut b).await.unwrap();
        if n == 0 {
            break;
        }
        slow.extend_from_slice(&b[..n]);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(String::from_utf8_lossy(&slow).contains("data: [DONE]"));
    // 5. A stream that never ends: the client gives up.
    let never = serde_json::json!({"model": "sample-1", "stream": true, "sample_delay_ms": 60000, "messages": [{"role": "user", "content": "a b c d"}]}).to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n{never}", never.len())
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut first = [0u8; 512];
    let _ = tokio::time::timeout(Duration::from_millis(500), s.read(&mut first)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The service still serves.
    assert_eq!(
        conn.post_json("/v1/chat/completions", &kiroku_tests::chat("still here", false), &[]).await.unwrap().status,
        200
    );

    let (records, _dir) = srv.finish().await;
    assert_eq!(records.len(), 6, "one record per request, whatever its body");
    let r: Vec<_> = records.iter().map(|s| &s.record).collect();
    assert_eq!(r[0].http.request.bytes as usize, big.len(), "the whole body is counted");
    assert_eq!(
        r[0].http.request.blake3.as_deref(),
        Some(kiroku_schemas::digest::blake3_hex(big.as_bytes()).as_str()),
        "the digest covers the whole body"
    );
    assert!(r[0].http.request.truncated && r[0].http.request.captured.as_ref().unwrap().len() <= 1024);
    assert_eq!(
        r[0].attributes.get("kiroku.not_extracted").map(String::as_str),
        Some("request body over the keep limit of 65536 bytes; response body over the keep limit of 65536 bytes"),
        "bodies too large to read say so (the sample model's answer quotes the prompt)"
    );
    assert!(r[0].http.response.bytes > 64 << 10, "{}", r[0].http.response.bytes);
    assert_eq!(r[0].gen_ai.request.model, None, "and was indeed not read");
    assert!(!r[5].attributes.contains_key("kiroku.not_extracted"));
    assert_eq!(r[1].http.request.bytes, 3000);
    assert_eq!(r[1].http.status, Some(400));
    assert!(
        r[1].http.request.captured.as_ref().unwrap().contains('\u{fffd}'),
        "invalid UTF-8 is replaced, never stored raw"
    );
    assert_eq!((r[2].http.status, r[2].http.outcome), (Some(400), Outcome::Completed));
    assert_eq!(r[3].http.outcome, Outcome::Completed);
    assert!(r[3].http.streaming);
    assert_eq!(r[4].http.outcome, Outcome::Aborted, "a stream that never ends is recorded when its client goes");
    assert_eq!(r[5].http.outcome, Outcome::Completed);
}

/// An upstream whose stream holds one event far over the stream parser's 1 MiB limit
/// (in 64 KiB lines, none of them too long itself). The client gets every byte; the
/// record is completed from what the other events said and states that an event was
/// dropped, so nobody reads its stream-derived fields as the whole story.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_server_sent_event_passes_and_its_drop_is_stated_in_the_record() {
    use http_body_util::channel::Channel;
    let chunk = |content: &str, finish: Option<&str>| {
        let c = serde_json::json!({"id": "chatcmpl-huge", "model": "sample-1",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]});
        bytes::Bytes::from(format!("data: {c}\n\n"))
    };
    let app = answering("text/event-stream", move || {
        let (mut tx, body) = Channel::<bytes::Bytes, std::convert::Infallible>::new(4);
        tokio::spawn(async move {
            let line = bytes::Bytes::from(format!("data: {}\n", "x".repeat(64 << 10)));
            let mut parts = vec![chunk("Hello", None)];
            parts.extend(std::iter::repeat_n(line, 24));
            parts.extend([bytes::Bytes::from("\n"), chunk(" world", Some("stop")), "data: [DONE]\n\n".into()]);
            for p in parts {
                if tx.send_data(p).await.is_err() {
                    return;
                }
            }
        });
        axum::body::Body::new(body)
    });
    let srv = AuditedServer::start_with(|c| c, |l| l, app).await;
    let mut conn = Conn::connect(srv.addr).await.unwrap();
    let got = conn.post_json("/v1/chat/completions", &kiroku_tests::chat("huge", true), &[]).await.unwrap();
    assert_eq!(got.status, 200);
    assert!(got.body.len() > 24 * (64 << 10) && got.body.ends_with(b"data: [DONE]\n\n"));

    let (records, _dir) = srv.finish().await;
    assert_eq!(records.len(), 1);
    let r = &records[0].record;
    assert_eq!(r.http.outcome, Outcome::Completed, "{:?}", r.http.error);
    assert_eq!(r.http.response.bytes as usize, got.body.len());
    assert_eq!(
        r.http.response.blake3.as_deref(),
        Some(kiroku_schemas::digest::blake3_hex(&got.body).as_str()),
        "the digest covers every byte the client received"
    );
    assert_eq!(r.attributes.get("kiroku.sse_dropped").map(String::as_str), Some("1"));
    assert_eq!(r.gen_ai.response.finish_reasons, ["stop"]);
    assert_eq!(
        r.provenance.output_digest.as_deref(),
        Some(kiroku_schemas::digest::blake3_hex(b"Hello world").as_str()),
        "the events around the dropped one are still read"
    );
}

/// A client that sends half of the body it announced and leaves: the record counts the
/// bytes that came, keeps the status the service answered (its JSON extractor refused
/// the broken body), and says the request body broke off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_upload_is_recorded_with_the_request_error() {
    let srv = AuditedServer::start(|c| c, |l| l).await;
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    let head = "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&[b' '; 500]).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (records, _dir) = srv.finish().await;
    assert_eq!(records.len(), 1);
    let r = &records[0].record;
    assert_eq!(r.http.request.bytes, 500, "the bytes that came");
    assert_eq!(r.http.status, Some(400));
    let error = r.http.error.as_deref().unwrap_or_default();
    assert!(error.contains("request body error"), "{error}");
}

/// Media types are case-insensitive: a stream labelled `Text/Event-Stream` is read as one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_stream_is_recognised_whatever_the_case_of_its_media_type() {
    let body = "data: {\"id\":\"c1\",\"model\":\"sample-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
    let app = answering("Text/Event-Stream; charset=utf-8", move || axum::body::Body::from(body));
    let srv = AuditedServer::start_with(|c| c, |l| l, app).await;
    let mut conn = Conn::connect(srv.addr).await.unwrap();
    let got = conn.post_json("/v1/chat/completions", &kiroku_tests::chat("case", true), &[]).await.unwrap();
    assert_eq!(got.body, body.as_bytes());
    let (records, _dir) = srv.finish().await;
    let r = &records[0].record;
    assert!(r.http.streaming);
    assert_eq!(r.gen_ai.response.finish_reasons, ["stop"]);
    assert_eq!(r.provenance.output_digest.as_deref(), Some(kiroku_schemas::digest::blake3_hex(b"Hi").as_str()));
}

/// Responses without a body (a HEAD request, 204 No Content, 304 Not Modified) are
/// complete when their head is sent: hyper never reads their body, and they must not
/// be recorded as aborted by a client that went away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_without_a_body_are_recorded_as_completed() {
    use axum::http::StatusCode;
    let app = axum::Router::new()
        .route(
            "/v1/models",
            axum::routing::get(|| async {
                axum::response::Response::builder()
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from("{\"data\":[]}"))
                    .unwrap()
            }),
        )
        .route("/v1/files/f1", axum::routing::delete(|| async { StatusCode::NO_CONTENT }))
        .route("/v1/cached", axum::routing::get(|| async { StatusCode::NOT_MODIFIED }));
    let srv = AuditedServer::start_with(|c| c, |l| l, app).await;
    for (method, path, status) in
        [("HEAD", "/v1/models", 200), ("DELETE", "/v1/files/f1", 204), ("GET", "/v1/cached", 304)]
    {
        let r = raw(srv.addr, &format!("{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"), b"").await;
        assert!(
            String::from_utf8_lossy(&r).starts_with(&format!("HTTP/1.1 {status}")),
            "{}",
            String::from_utf8_lossy(&r)
        );
    }
    let (records, _dir) = srv.finish().await;
    assert_eq!(records.len(), 3);
    for s in &records {
        let r = &s.record;
        assert_eq!(r.http.outcome, Outcome::Completed, "{} {}: {:?}", r.http.method, r.http.route, r.http.error);
        assert_eq!(r.http.error, None);
    }
}

/// A compressed body (a compression layer outside the audit layer, or a client that
/// compresses its request) can be neither read for provenance nor redacted: the record
/// keeps its digest and size, captures none of it, and says why its model, usage and
/// output digest are missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compressed_body_is_hashed_but_neither_read_nor_captured_and_the_record_says_so() {
    let compressed: &'static [u8] = b"\x1f\x8b\x08\x00 alice@example.com in a stored block";
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |_request: String| async move {
            axum::response::Response::builder()
                .header("content-type", "application/json")
                .header("content-encoding", "gzip")
                .body(axum::body::Body::from(compressed))
                .unwrap()
        }),
    );
    let srv = AuditedServer::start_with(|c| c, |l| l, app).await;
    let mut conn = Conn::connect(srv.addr).await.unwrap();
    let got = conn.post_json("/v1/chat/completions", &kiroku_tests::chat("hello", false), &[]).await.unwrap();
    assert_eq!(got.body, compressed);
    let (records, _dir) = srv.finish().await;
    let r = &records[0].record;
    assert_eq!(r.http.response.bytes, compressed.len() as u64);
    assert_eq!(r.http.response.blake3.as_deref(), Some(kiroku_schemas::digest::blake3_hex(compressed).as_str()));
    assert_eq!(r.http.response.captured, None, "nothing of a body that cannot be redacted");
    assert!(r.http.request.captured.is_some(), "the plain request is captured as before");
    assert_eq!(r.gen_ai.request.model.as_deref(), Some(kiroku_examples::sample::DEFAULT_MODEL), "the request is read");
    let note = r.attributes.get("kiroku.not_extracted").map(String::as_str).unwrap_or_default();
    assert!(note.contains("response body is content-encoded (gzip)"), "{note}");
    assert!(!records[0].payload.windows(5).any(|w| w == b"alice"), "no byte of it in the segment");
}

/// An API that fails mid-answer sends an error inside a stream that began with 200 OK
/// (`data: {"error": ...}`, Anthropic's `event: error`, a Responses `response.failed`):
/// the inference failed, and the record says so, with the API's reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_inside_a_stream_makes_the_record_an_error_with_the_apis_reason() {
    let body = "data: {\"id\":\"c1\",\"model\":\"sample-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hal\"}}]}\n\n\
data: {\"error\":{\"message\":\"The server had an error while processing your request.\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n";
    let app = answering("text/event-stream", move || axum::body::Body::from(body));
    let srv = AuditedServer::start_with(|c| c, |l| l, app).await;
    let mut conn = Conn::connect(srv.addr).await.unwrap();
    let got = conn.post_json("/v1/chat/completions", &kiroku_tests::chat("x", true), &[]).await.unwrap();
    assert_eq!((got.status, got.body.as_slice()), (200, body.as_bytes()), "passed through as it came");
    let (records, _dir) = srv.finish().await;
    let r = &records[0].record;
    assert_eq!(r.http.outcome, Outcome::Error);
    let error = r.http.error.as_deref().unwrap_or_default();
    assert!(error.contains("server_error") && error.contains("while processing your request"), "{error}");
    assert_eq!(r.gen_ai.response.model.as_deref(), Some("sample-1"), "what came before the error is kept");
}

/// The provider's own content filter (Azure OpenAI's results, a `content_filter` finish
/// reason) is recorded as safeguard decisions when the application records none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_providers_content_filter_is_recorded_as_safeguard_decisions() {
    let body = r#"{"id":"c1","object":"chat.completion","model":"gpt-4o","prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"jailbreak":{"filtered":false,"detected":true}}}],"choices":[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter","content_filter_results":{"violence":{"filtered":true,"severity":"medium"}}}]}"#;
    let srv =
        AuditedServer::start_with(|c| c, |l| l, answering("application/json", move || axum::body::Body::from(body)))
            .await;
    let mut conn = Conn::connect(srv.addr).await.unwrap();
    conn.post_json("/v1/chat/completions", &kiroku_tests::chat("x", false), &[]).await.unwrap();
    let (records, _dir) = srv.finish().await;
    let got: Vec<String> = records[0]
        .record
        .safeguards
        .iter()
        .map(|d| {
            format!(
                "{} {} {} {}",
                d.policy_id,
                d.action.as_str(),
                d.stage.as_deref().unwrap_or("-"),
                d.category.as_deref().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            "provider.content_filter flagged input jailbreak",
            "provider.content_filter filtered output violence",
            "provider.content_filter filtered output -",
        ]
    );
}

/// A call to a moderation endpoint records its verdict as safeguard decisions: the
/// flagged categories with their scores, the moderation model as the policy version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moderation_call_records_its_verdict() {
    let body = r#"{"id":"modr-1","model":"omni-moderation-2024-09-26","results":[{"flagged":true,"categories":{"harassment":true,"violence":false},"category_scores":{"harassment":0.91,"violence":0.02}}]}"#;
    let app = axum::Router::new().route(
        "/v1/moderations",
        axum::routing::post(move |_request: String| async move {
            axum::response::Response::builder()
                .header("content-type", "application/json")
                .body(axum::body::Body::from(body))
                .unwrap()
        }),
    );
    let srv = AuditedServer::start_with(|c| c, |l| l, app).await;
    let mut conn = Conn::connect(srv.addr).await.unwrap();
    let input = serde_json::json!({"model": "omni-moderation-latest", "input": "some text"});
    assert_eq!(conn.post_json("/v1/moderations", &input, &[]).await.unwrap().status, 200);
    let (records, _dir) = srv.finish().await;
    let r = &records[0].record;
    assert_eq!(r.gen_ai.operation.name.as_deref(), Some("moderation"));
    assert_eq!(r.safeguards.len(), 1);
    let d = &r.safeguards[0];
    assert_eq!(
        (d.policy_id.as_str(), d.policy_version.as_deref(), d.action.as_str(), d.category.as_deref(), d.score),
        ("provider.moderation", Some("omni-moderation-2024-09-26"), "flagged", Some("harassment"), Some(0.91))
    );
}
