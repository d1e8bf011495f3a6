//! `kiroku demo`: the whole pipeline on embedded defaults, in seconds.
//!
//! A key pair, the sample OpenAI-compatible model behind the audit layer on loopback,
//! a mix of streamed, non-streamed, aborted and failing requests (with RAG sources,
//! watermarks, trace context and seeded personal data that must be redacted), a sealed
//! journal, compaction into Parquet, verification of spool and archive, and a summary
//! with the next commands to try.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use kiroku::{AuditLayer, Durability, Journal, JournalConfig};
use kiroku_examples::client::Conn;
use kiroku_schemas::checkpoint::NoteSigner;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::archive_store::LocalArchive;
use crate::compact::{CompactOptions, compact};
use crate::error::CliError;
use crate::spool::LocalSpool;
use crate::verify::{verify_archive, verify_spool};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Working directory (spool in DIR/spool, archive in DIR/archive, keys in
    /// DIR/keys); a new temporary directory, kept, when not given.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Requests to send.
    #[arg(long, default_value_t = 40)]
    requests: usize,
}

const PROMPTS: [&str; 6] = [
    "What does the AI Promotion Act ask of operators?",
    "Summarise our refund rules for a customer.",
    "Explain transparency logs in one paragraph.",
    "顧客への回答にはどの資料を参照しましたか？",
    "Please contact me at taro.yamada@example.co.jp or 090-1234-5678 about card 4111 1111 1111 1111.",
    "Which model version answered yesterday?",
];

#[derive(Default)]
struct Sent {
    completed: usize,
    streamed: usize,
    failed: usize,
    aborted: usize,
    embeddings: usize,
}

async fn abort_mid_stream(addr: std::net::SocketAddr, prompt: &str) -> std::io::Result<()> {
    let body = json!({"model": "sample-1", "stream": true, "sample_delay_ms": 20, "messages": [{"role": "user", "content": prompt}]}).to_string();
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: demo\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await?;
    let mut buf = [0u8; 2048];
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("data: ") {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    Ok(()) // dropping the socket: the client went away mid-stream
}

async fn traffic(addr: std::net::SocketAddr, n: usize) -> Result<Sent, CliError> {
    let io = |e: std::io::Error| CliError::Io(format!("demo traffic to {addr}: {e}"));
    let mut conn = Conn::connect(addr).await.map_err(io)?;
    let mut sent = Sent::default();
    for i in 0..n {
        let prompt = PROMPTS[i % PROMPTS.len()];
        let trace = format!("00-{:032x}-{:016x}-01", 0x6b69726f6b75u128 * 1_000 + i as u128, i as u64 + 1);
        let headers = [("traceparent", trace.as_str()), ("authorization", "Bearer sk-demo-not-a-real-key-0000000000")];
        match i % 10 {
            7 => {
                abort_mid_stream(addr, prompt).await.map_err(io)?;
                sent.aborted += 1;
            }
            9 => {
                let r = conn
                    .post_json(
                        "/v1/chat/completions",
                        &json!({"model": "sample-fail", "messages": [{"role": "user", "content": prompt}]}),
                        &headers,
                    )
                    .await
                    .map_err(io)?;
                debug_assert_eq!(r.status, 500);
                sent.failed += 1;
            }
            5 => {
                conn.post_json("/v1/embeddings", &json!({"model": "sample-embed", "input": [prompt]}), &headers)
                    .await
                    .map_err(io)?;
                sent.embeddings += 1;
            }
            k => {
                let stream = k % 2 == 1;
                let model = if k == 3 { "sample-2" } else { "sample-1" };
                let body = json!({"model": model, "stream": stream, "stream_options": {"include_usage": stream}, "temperature": 0.2, "seed": 7,
                    "messages": [{"role": "system", "content": "Answer from the retrieved documents."}, {"role": "user", "content": prompt}]});
                conn.post_json("/v1/chat/completions", &body, &headers).await.map_err(io)?;
                if stream {
                    sent.streamed += 1;
                } else {
                    sent.completed += 1;
                }
            }
        }
    }
    // Let the server notice the aborted connections before it stops.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok(sent)
}

fn demo_dir(dir: Option<PathBuf>) -> Result<PathBuf, CliError> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(&d).map_err(|e| CliError::io(&d, e))?;
            if std::fs::read_dir(&d).map(|mut r| r.next().is_some()).unwrap_or(false) {
                return Err(CliError::Usage(format!("{} is not empty; give the demo a new directory", d.display())));
            }
            Ok(d)
        }
        None => tempfile::Builder::new()
            .prefix("kiroku-demo-")
            .tempdir()
            .map(tempfile::TempDir::keep)
            .map_err(|e| CliError::Io(format!("creating a temporary directory: {e}"))),
    }
}

pub(super) fn run(a: Args) -> Result<ExitCode, CliError> {
    let t0 = Instant::now();
    let dir = demo_dir(a.dir)?;
    let (spool, archive, keys) = (dir.join("spool"), dir.join("archive"), dir.join("keys"));
    let (key_path, vkey_path) = super::keygen::generate(&keys, "kiroku-demo")?;
    let signer = NoteSigner::load(&key_path).map_err(|e| CliError::Io(e.to_string()))?;
    let verifier = kiroku_schemas::checkpoint::TrustedKeys::from(signer.verifier());
    out!("kiroku demo in {}", dir.display())?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Io(e.to_string()))?;
    let sent = rt.block_on(async {
        let journal =
            Journal::open(JournalConfig::new(&spool, signer).durability(Durability::Sync).writer_name("demo"))
                .map_err(|e| CliError::Io(e.to_string()))?;
        let app = kiroku_examples::sample::router().layer(AuditLayer::new(journal.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| CliError::Io(format!("binding 127.0.0.1: {e}")))?;
        let addr = listener.local_addr().map_err(|e| CliError::Io(e.to_string()))?;
        out!("  1. sample OpenAI-compatible model behind the audit layer on http://{addr}")?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(kiroku_examples::sample::serve(listener, app, async {
            let _ = stopped.await;
        }));
        let sent = traffic(addr, a.requests).await;
        let _ = stop.send(());
        let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        let shut = journal.shutdown().await.map_err(|e| CliError::Io(e.to_string()))?;
        out!("  2. journal sealed: chain {} with {} records", shut.chain_id, shut.next_seq)?;
        sent
    })?;
    out!(
        "     sent {} requests: {} completed, {} streamed, {} embeddings, {} failing, {} aborted mid-stream",
        a.requests,
        sent.completed,
        sent.streamed,
        sent.embeddings,
        sent.failed,
        sent.aborted
    )?;

    let spool_check = verify_spool(&LocalSpool::new(&spool), Some(&verifier))?;
    out!(
        "  3. spool verified: {} segment(s), {} records, {} checkpoint(s): {}",
        spool_check.units,
        spool_check.records,
        spool_check.checkpoints,
        verdict(spool_check.ok())
    )?;
    let report = compact(
        &LocalSpool::new(&spool),
        &LocalArchive::open(&archive)?,
        &CompactOptions::new(verifier.clone()),
        &mut |_| {},
    )?;
    out!("  4. compacted {} records into {} Parquet file(s)", report.records, report.files.len())?;
    let archive_check = verify_archive(&archive, Some(&verifier))?;
    out!(
        "  5. archive verified: {} records, {} checkpoint(s), payloads re-hashed, columns re-derived: {}",
        archive_check.records,
        archive_check.checkpoints,
        verdict(archive_check.ok())
    )?;
    for p in spool_check.problems.iter().chain(&archive_check.problems) {
        out!("     PROBLEM {p}")?;
    }
    summary(&archive, &dir, &vkey_path)?;
    out!("done in {:.1}s", t0.elapsed().as_secs_f64())?;
    Ok(if spool_check.ok() && archive_check.ok() && !report.has_problems() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn verdict(ok: bool) -> &'static str {
    if ok { "OK" } else { "FAILED" }
}

fn summary(archive: &Path, dir: &Path, vkey: &Path) -> Result<(), CliError> {
    let ar = crate::archive::Archive::open(archive)?;
    let mut models: BTreeMap<String, u64> = BTreeMap::new();
    let mut outcomes: BTreeMap<String, u64> = BTreeMap::new();
    let mut example = None;
    let (mut sources, mut marked, mut total) = (0u64, 0u64, 0u64);
    for (_, f) in ar.files(None, None) {
        for c in ar.chain_rows(&f)? {
            let r = kiroku_schemas::AuditRecord::from_json(&c.payload).map_err(|e| CliError::Corrupt(e.to_string()))?;
            total += 1;
            *models.entry(r.effective_model().unwrap_or("-").to_owned()).or_default() += 1;
            *outcomes.entry(r.http.outcome.as_str().to_owned()).or_default() += 1;
            sources += u64::from(!r.output_sources.is_empty());
            marked += u64::from(!r.watermarks.is_empty());
            if example.is_none() && !r.http.streaming && r.provenance.output_digest.is_some() {
                example = Some(r.record_id.clone());
            }
        }
    }
    let fmt = |m: &BTreeMap<String, u64>| m.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join(", ");
    out!()?;
    out!("records   {total}")?;
    out!("models    {}", fmt(&models))?;
    out!("outcomes  {}", fmt(&outcomes))?;
    out!("explainability  {sources} of {total} with output sources, {marked} watermarked")?;
    out!()?;
    out!("where things are")?;
    out!("  spool    {}/spool      (segments moved to spool/compacted after compaction)", dir.display())?;
    out!("  archive  {}", archive.display())?;
    out!("  keys     {}/keys  (signer.key stays private; signer.vkey is for verifiers)", dir.display())?;
    out!()?;
    out!("next")?;
    // The binary that ran the demo (target/release/kiroku after `cargo run`), so the
    // commands work as printed; `cargo install --path collector` puts `kiroku` on PATH.
    let k = std::env::current_exe().map_or_else(|_| "kiroku".to_owned(), |p| p.display().to_string());
    let a = archive.display();
    if let Some(id) = &example {
        out!("  {k} explain {id} --archive {a} --pubkey {}", vkey.display())?;
        out!("  {k} find --archive {a} --record-id {id}")?;
        out!(
            "  {k} evidence --archive {a} --record-id {id} --pubkey {} --out {}/evidence",
            vkey.display(),
            dir.display()
        )?;
    }
    out!("  {k} find --archive {a} --model sample-2")?;
    out!("  {k} verify --archive {a} --pubkey {}", vkey.display())?;
    out!(
        "  duckdb -c \"SELECT model, outcome, count(*) FROM read_parquet('{a}/records/*/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY ALL\""
    )?;
    Ok(())
}
