//! Servers for the end-to-end benchmarks (loopback only).
//!
//! `bench-server bare|audited|audited-digest|audited-minimal|sample|passthrough ADDR [SPOOL|UPSTREAM]`
//!
//! - `bare`: POST anything, get a 2 KiB JSON answer (a 4 KiB exchange with a 2 KiB request).
//! - `audited`: the same service behind `AuditLayer` (Batched 100 ms), journal in SPOOL,
//!   with the layer's defaults (capture `redacted`, extraction).
//! - `audited-digest`: the same with capture `digest` (both bodies hashed, nothing
//!   stored, no redaction; extraction still reads the bodies).
//! - `audited-minimal`: the least a record per inference costs: capture `none` and a
//!   keep limit of 0 (no body digest, no extraction, no redaction), so the record holds
//!   ids, times, method, route, status, sizes, caller and trace, chained and written.
//! - `sample`: the sample OpenAI-compatible model, unaudited (an upstream for the proxy).
//! - `passthrough`: a reverse proxy to UPSTREAM (`host:port`) that records nothing: the
//!   same hyper client and server work as `kiroku proxy` without the audit, to tell the
//!   cost of proxying from the cost of auditing.
//!
//! Prints `listening on <addr>`; SIGTERM stops it (and seals the journal).

use std::time::Duration;

use axum::Router;
use axum::routing::post;
use kiroku::{AuditLayer, Durability, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::record::CaptureMode;

fn answer() -> String {
    let mut s = String::from(
        r#"{"id":"chatcmpl-bench","object":"chat.completion","model":"sample-1","choices":[{"index":0,"message":{"role":"assistant","content":""#,
    );
    while s.len() < 2048 - 80 {
        s.push_str("lorem ipsum ");
    }
    s.push_str(r#""},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":300}}"#);
    s
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mode = args
        .get(1)
        .ok_or(
            "usage: bench-server bare|audited|audited-digest|audited-minimal|sample|passthrough ADDR [SPOOL|UPSTREAM]",
        )?
        .clone();
    let addr = args.get(2).cloned().unwrap_or_else(|| "127.0.0.1:0".into());
    let body = answer();
    let plain = Router::new().route(
        "/v1/chat/completions",
        post(move |_b: axum::body::Bytes| {
            let body = body.clone();
            async move { ([("content-type", "application/json")], body) }
        }),
    );
    let mut journal = None;
    let app = match mode.as_str() {
        "bare" => plain,
        "sample" => kiroku_examples::sample::router(),
        "audited" | "audited-digest" | "audited-minimal" => {
            let spool = args.get(3).ok_or("audited needs a SPOOL directory")?;
            let j = Journal::open(
                JournalConfig::new(spool, NoteSigner::generate("bench")?)
                    .durability(Durability::Batched(Duration::from_millis(100))),
            )?;
            journal = Some(j.clone());
            let layer = AuditLayer::new(j);
            let layer = match mode.as_str() {
                "audited-digest" => layer.capture(CaptureMode::Digest),
                "audited-minimal" => layer.capture(CaptureMode::None).keep_limit(0),
                _ => layer,
            };
            plain.layer(layer)
        }
        "passthrough" => {
            let upstream = args.get(3).ok_or("passthrough needs an UPSTREAM host:port")?.clone();
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .http1_read_buf_exact_size(8192)
                .build_http::<axum::body::Body>();
            Router::new().fallback(move |mut req: axum::extract::Request| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_owned();
                    *req.uri_mut() = format!("http://{upstream}{path}").parse().expect("upstream URI");
                    match client.request(req).await {
                        Ok(resp) => resp.map(axum::body::Body::new),
                        Err(e) => http::Response::builder()
                            .status(502)
                            .body(axum::body::Body::from(e.to_string()))
                            .expect("response"),
                    }
                }
            })
        }
        other => return Err(format!("unknown mode {other}").into()),
    };
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let shutdown = async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal");
        term.recv().await;
    };
    kiroku_examples::sample::serve(listener, app, shutdown).await?;
    if let Some(j) = journal {
        j.shutdown().await?;
    }
    Ok(())
}
