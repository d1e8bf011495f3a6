//! A RAG handler that tells kiroku which documents its answer used and how it marked
//! the answer, then prints the audit record it produced.
//!
//! ```sh
//! cargo run -p kiroku-examples --bin rag_watermark
//! ```

use axum::routing::post;
use axum::{Extension, Json, Router};
use kiroku::{AuditHandle, AuditLayer, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::record::{
    Disclosure, IPTC_TRAINED_ALGORITHMIC_MEDIA, OutputSource, SafeguardAction, SafeguardDecision, Watermark,
};
use serde_json::{Value, json};

async fn answer(Extension(audit): Extension<AuditHandle>, Json(req): Json<Value>) -> Json<Value> {
    // 1. Retrieval: the documents the answer is based on, with their rights holders.
    audit.add_source(OutputSource {
        uri: "https://docs.example.jp/handbook/returns.pdf".into(),
        title: Some("返品ポリシー".into()),
        content_digest: Some(format!("blake3:{}", kiroku_schemas::digest::blake3_hex(b"returns handbook v7"))),
        locator: Some("page 4, section 2".into()),
        score: Some(0.87),
        license: Some("proprietary".into()),
        rights_holder: Some("Example KK".into()),
        retrieved_at: Some(kiroku_schemas::Timestamp::now()),
    });
    // 2. A safeguard ran on the output.
    audit.add_safeguard(SafeguardDecision {
        policy_id: "pii-output-filter".into(),
        policy_version: Some("4".into()),
        action: SafeguardAction::Allowed,
        stage: Some("output".into()),
        category: None,
        score: None,
    });
    let text = format!(
        "Returns are accepted within 30 days. (You asked: {})",
        req["messages"][0]["content"].as_str().unwrap_or("")
    );
    // 3. The answer is marked as AI-generated and the marking recorded.
    audit.add_watermark(Watermark {
        scheme: "c2pa".into(),
        key_id: Some("c2pa-signing-2026".into()),
        manifest_digest: Some(kiroku_schemas::digest::blake3_hex(text.as_bytes())),
        applied_by: Some("rag-service".into()),
        ..Default::default()
    });
    audit.update(|a| {
        a.digital_source_type = Some(IPTC_TRAINED_ALGORITHMIC_MEDIA.into());
        a.disclosure =
            Some(Disclosure { method: "ui-label".into(), text: Some("この回答はAIが生成しました".into()) });
        a.gen_ai.provider.name = Some("self-hosted".into());
        a.gen_ai.response.model = Some("rag-llm-7b".into());
        a.provenance.model_digest = Some("sha256:0f3c...".into());
    });
    Json(
        json!({"object": "chat.completion", "model": "rag-llm-7b", "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile_dir()?;
    let journal = Journal::open(JournalConfig::new(dir.join("spool"), NoteSigner::generate("rag-example")?))?;
    let app = Router::new().route("/v1/chat/completions", post(answer)).layer(AuditLayer::new(journal.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let mut conn = kiroku_examples::client::Conn::connect(addr).await?;
    let resp = conn
        .post_json(
            "/v1/chat/completions",
            &json!({"model": "rag", "messages": [{"role": "user", "content": "Can I return shoes?"}]}),
            &[],
        )
        .await?;
    println!("client got {} bytes", resp.body.len());
    journal.shutdown().await?;
    server.abort();
    for seg in std::fs::read_dir(journal.chain_dir())? {
        let bytes = std::fs::read(seg?.path())?;
        let Ok(reader) = kiroku_schemas::segment::SegmentReader::open(&bytes[..]) else { continue };
        for frame in reader.flatten().filter(|f| f.kind == kiroku_schemas::segment::FrameKind::Record) {
            let v: Value = serde_json::from_slice(&frame.payload)?;
            println!("{}", serde_json::to_string_pretty(&v)?);
        }
    }
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("kiroku-rag-example-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}
