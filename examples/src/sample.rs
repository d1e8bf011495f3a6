//! A deterministic OpenAI-compatible chat model over HTTP (axum).
//!
//! - `POST /v1/chat/completions`: the answer is a fixed function of the last user
//!   message; `"stream": true` streams it word by word as OpenAI `chat.completion.chunk`
//!   events, with a usage chunk when `stream_options.include_usage` is set, then
//!   `data: [DONE]`.
//! - `POST /v1/embeddings`: a small deterministic vector per input.
//! - `GET /v1/models`.
//!
//! Test controls (request JSON fields, ignored by real clients): `"sample_delay_ms"`
//! (pause between streamed chunks, or before a non-streamed answer: a model's latency),
//! and the model names `sample-fail` (HTTP 500) and
//! `sample-broken-stream` (the stream's body fails midway).
//!
//! When the request carries a [`kiroku::AuditHandle`] (served behind the audit layer),
//! the model annotates its answer like a RAG service would: the documents it "used"
//! as output sources with their rights holders, a metadata-header watermark, the IPTC
//! digital source type, and a safeguard decision.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body::Frame;
use kiroku::AuditHandle;
use kiroku_schemas::record::{
    Disclosure, IPTC_TRAINED_ALGORITHMIC_MEDIA, OutputSource, SafeguardAction, SafeguardDecision, Watermark,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// The model name answered when the request does not name one.
pub const DEFAULT_MODEL: &str = "sample-1";

/// The sample model's router (no audit layer: add one, or run it as an upstream).
pub fn router() -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/models", get(models))
        .route("/healthz", get(|| async { "ok" }))
}

/// The answer the model gives to `prompt` (what clients receive as content).
pub fn answer(model: &str, prompt: &str) -> String {
    let words = prompt.split_whitespace().count();
    format!("{model} read {words} words. You said: {prompt}")
}

/// The documents the model "retrieves" for a prompt: a deterministic pick.
pub fn sources_for(prompt: &str) -> Vec<OutputSource> {
    const DOCS: [(&str, &str, &str, &str); 4] = [
        ("https://docs.example.jp/policy/ai-use.pdf", "AI利用ポリシー", "Example KK", "CC-BY-4.0"),
        ("https://kb.example.com/articles/42", "Refund rules", "Example Corp", "proprietary"),
        ("https://www.e-gov.go.jp/law/act-53-2025", "AI Promotion Act", "Government of Japan", "public-domain"),
        ("https://wiki.example.org/Transparency_log", "Transparency log", "Example Wiki contributors", "CC-BY-SA-4.0"),
    ];
    let h = blake3::hash(prompt.as_bytes());
    let first = h.as_bytes()[0] as usize % DOCS.len();
    (0..2)
        .map(|i| {
            let (uri, title, holder, license) = DOCS[(first + i) % DOCS.len()];
            OutputSource {
                uri: uri.into(),
                title: Some(title.into()),
                content_digest: Some(format!("blake3:{}", kiroku_schemas::digest::blake3_hex(uri.as_bytes()))),
                locator: Some(format!("chunk-{}", h.as_bytes()[1 + i] % 16)),
                score: Some(0.9 - 0.1 * i as f64),
                license: Some(license.into()),
                rights_holder: Some(holder.into()),
                retrieved_at: None,
            }
        })
        .collect()
}

fn last_user_message(req: &Value) -> String {
    req.get("messages")
        .and_then(Value::as_array)
        .and_then(|ms| ms.iter().rev().find(|m| m.get("role").and_then(Value::as_str) == Some("user")))
        .and_then(|m| m.get("content"))
        .map(|c| match c {
            Value::String(s) => s.clone(),
            Value::Array(parts) => {
                parts.iter().filter_map(|p| p.get("text").and_then(Value::as_str)).collect::<Vec<_>>().join(" ")
            }
            _ => String::new(),
        })
        .unwrap_or_default()
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        json!({"error": {"message": message, "type": "sample_error"}}).to_string(),
    )
        .into_response()
}

fn annotate(handle: Option<&AuditHandle>, model: &str, prompt: &str) {
    let Some(h) = handle else { return };
    for s in sources_for(prompt) {
        h.add_source(s);
    }
    h.add_watermark(Watermark {
        scheme: "metadata-header".into(),
        key_id: Some("sample-wm-2026".into()),
        payload_digest: Some(kiroku_schemas::digest::blake3_hex(model.as_bytes())),
        applied_by: Some("kiroku-examples/sample".into()),
        ..Default::default()
    });
    h.add_safeguard(SafeguardDecision {
        policy_id: "sample-moderation".into(),
        policy_version: Some("2026.11".into()),
        action: SafeguardAction::Allowed,
        stage: Some("output".into()),
        category: None,
        score: Some(0.01),
    });
    h.update(|a| {
        a.digital_source_type = Some(IPTC_TRAINED_ALGORITHMIC_MEDIA.into());
        a.disclosure = Some(Disclosure { method: "response-header".into(), text: Some("x-ai-generated: true".into()) });
        a.provenance.model_version = Some("2026-11-01".into());
        a.provenance.deployment = Some("sample-local".into());
    });
}

async fn chat(req: Request) -> Response {
    let handle = req.extensions().get::<AuditHandle>().cloned();
    let body = match axum::body::to_bytes(req.into_body(), 16 << 20).await {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, &format!("cannot read body: {e}")),
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "request body is not JSON");
    };
    let model = req.get("model").and_then(Value::as_str).unwrap_or(DEFAULT_MODEL).to_owned();
    if model == "sample-fail" {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "the sample model failed as asked");
    }
    let prompt = last_user_message(&req);
    let text = answer(&model, &prompt);
    annotate(handle.as_ref(), &model, &prompt);
    let id = format!("chatcmpl-{}", &kiroku_schemas::digest::blake3_hex(body.as_ref())[..24]);
    let (input_tokens, output_tokens) =
        (prompt.split_whitespace().count() as u64 + 3, text.split_whitespace().count() as u64);
    let usage = json!({"prompt_tokens": input_tokens, "completion_tokens": output_tokens, "total_tokens": input_tokens + output_tokens});
    let delay = Duration::from_millis(req.get("sample_delay_ms").and_then(Value::as_u64).unwrap_or(0));
    if req.get("stream").and_then(Value::as_bool) == Some(true) {
        let include_usage = req.pointer("/stream_options/include_usage").and_then(Value::as_bool) == Some(true);
        let broken = model == "sample-broken-stream";
        return stream(id, model, text, include_usage.then_some(usage), delay, broken);
    }
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let resp = json!({
        "id": id, "object": "chat.completion", "created": 1_795_305_600, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": usage,
    });
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], resp.to_string()).into_response();
    r.headers_mut().insert("x-ai-generated", HeaderValue::from_static("true"));
    r
}

/// A body fed from a channel: frames go out as soon as they are produced.
struct ChannelBody(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data)))
    }
}

fn stream(id: String, model: String, text: String, usage: Option<Value>, delay: Duration, broken: bool) -> Response {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let chunk = |delta: Value, finish: Value| {
            let v = json!({"id": id, "object": "chat.completion.chunk", "created": 1_795_305_600, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
            Bytes::from(format!("data: {v}\n\n"))
        };
        let mut events = vec![chunk(json!({"role": "assistant", "content": ""}), Value::Null)];
        let words: Vec<&str> = text.split_inclusive(' ').collect();
        for w in &words {
            events.push(chunk(json!({"content": w}), Value::Null));
        }
        events.push(chunk(json!({}), json!("stop")));
        if let Some(u) = usage {
            let v = json!({"id": id, "object": "chat.completion.chunk", "created": 1_795_305_600, "model": model, "choices": [], "usage": u});
            events.push(Bytes::from(format!("data: {v}\n\n")));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        let half = events.len() / 2;
        for (i, e) in events.into_iter().enumerate() {
            if broken && i == half {
                let _ = tx.send(Err(std::io::Error::other("sample stream broke as asked"))).await;
                return;
            }
            if tx.send(Ok(e)).await.is_err() {
                return; // client went away
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
    });
    let mut r = Response::new(Body::new(ChannelBody(rx)));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r.headers_mut().insert("x-ai-generated", HeaderValue::from_static("true"));
    r
}

async fn embeddings(body: Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "request body is not JSON");
    };
    let inputs: Vec<String> = match req.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a.iter().map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned)).collect(),
        _ => return error(StatusCode::BAD_REQUEST, "input is required"),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let h = blake3::hash(s.as_bytes());
            let v: Vec<f64> = h.as_bytes()[..8].iter().map(|b| f64::from(*b) / 255.0).collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|s| s.split_whitespace().count()).sum();
    let model = req.get("model").and_then(Value::as_str).unwrap_or("sample-embed");
    axum::Json(json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})).into_response()
}

async fn models() -> Response {
    axum::Json(json!({"object": "list", "data": [{"id": DEFAULT_MODEL, "object": "model", "owned_by": "kiroku"}]}))
        .into_response()
}

/// Serve `app` on `addr` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt as _;
    // Streamed chunks are small writes: never let Nagle's algorithm hold them back.
    let listener = listener.tap_io(|s| {
        let _ = s.set_nodelay(true);
    });
    axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
