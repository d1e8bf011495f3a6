//! The sample OpenAI-compatible model wrapped by the audit layer.
//!
//! ```sh
//! cargo run -p kiroku-examples --bin openai_server -- [DIR] [ADDR]
//! curl -s http://127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' \
//!   -d '{"model":"sample-1","messages":[{"role":"user","content":"hello"}]}'
//! ```
//!
//! Writes its journal to `DIR/spool` (default `./kiroku-example`), creating a signing
//! key in `DIR/keys` on first run. Ctrl-C drains, seals the journal and exits; then
//! `kiroku compact --spool DIR/spool --archive DIR/archive --pubkey DIR/keys/signer.vkey`.

use std::path::PathBuf;

use kiroku::{AuditLayer, Durability, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "kiroku-example".into()));
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:8080".into());
    let keys = dir.join("keys");
    let key = keys.join("signer.key");
    if !key.exists() {
        std::fs::create_dir_all(&keys)?;
        let signer = NoteSigner::generate("kiroku-example")?;
        signer.save(&key)?;
        std::fs::write(keys.join("signer.vkey"), signer.verifier().to_key_text())?;
    }
    let journal =
        Journal::open(JournalConfig::new(dir.join("spool"), NoteSigner::load(&key)?).durability(Durability::Sync))?;
    let app = kiroku_examples::sample::router().layer(AuditLayer::new(journal.clone()));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!(
        "sample model behind kiroku on http://{} (journal: {})",
        listener.local_addr()?,
        journal.chain_dir().display()
    );
    kiroku_examples::sample::serve(listener, app, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    let report = journal.shutdown().await?;
    println!("sealed {} records of chain {}", report.next_seq, report.chain_id);
    Ok(())
}
