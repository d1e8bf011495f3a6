//! The sample model behind the audit layer, as a process: what crash tests kill.
//!
//! `audited-sample --spool DIR --key FILE [--listen ADDR] [--durability sync|batched|buffered] [--writer NAME]
//! [--ship URL] [--segment-max-bytes N]`
//!
//! Prints `listening on <addr>` once ready. SIGTERM/SIGINT: drain, seal, exit 0.

use std::time::Duration;

use kiroku::{AuditLayer, Durability, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let spool = arg(&args, "--spool").ok_or("--spool DIR is required")?;
    let key = arg(&args, "--key").ok_or("--key FILE is required")?;
    let listen = arg(&args, "--listen").unwrap_or_else(|| "127.0.0.1:0".into());
    let durability = match arg(&args, "--durability").as_deref() {
        None | Some("sync") => Durability::Sync,
        Some("batched") => Durability::Batched(Duration::from_millis(50)),
        Some("buffered") => Durability::Buffered,
        Some(other) => return Err(format!("unknown durability {other}").into()),
    };
    let signer = NoteSigner::load(key.as_ref())?;
    let mut cfg = JournalConfig::new(spool, signer)
        .durability(durability)
        .writer_name(arg(&args, "--writer").unwrap_or_else(|| "sample".into()));
    if let Some(n) = arg(&args, "--segment-max-bytes") {
        cfg = cfg.segment_max_bytes(n.parse()?);
    }
    if let Some(url) = arg(&args, "--ship") {
        kiroku::ship::install_crypto_provider();
        cfg = cfg.ship_to(kiroku::ship::ObjectLocation::open(&url)?, kiroku::ship::ShipperConfig::default());
    }
    let journal = Journal::open(cfg)?;
    if let Some(r) = journal.recovery() {
        println!("recovery: {r}");
    }
    let app = kiroku_examples::sample::router().layer(AuditLayer::new(journal.clone()));
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    // The handlers are in place before anyone is told where to connect: a SIGTERM sent
    // right after the banner drains and seals instead of killing the process.
    use tokio::signal::unix::{SignalKind, signal};
    let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    println!("listening on {}", listener.local_addr()?);
    println!("chain {}", journal.chain_id());
    let shutdown = async move {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
    };
    kiroku_examples::sample::serve(listener, app, shutdown).await?;
    let report = journal.shutdown().await?;
    println!("sealed {:?} next_seq {}", report.sealed, report.next_seq);
    Ok(())
}
