//! `kiroku proxy`: the audited reverse proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use kiroku::{AuditLayer, CallerPolicy, Durability, FailurePolicy, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::record::CaptureMode;

use crate::error::CliError;
use crate::proxy::{ProxyConfig, run as run_proxy};

/// Arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address clients connect to (HTTP/1.1 and h2c).
    #[arg(long, env = "KIROKU_LISTEN", default_value = "127.0.0.1:8787")]
    listen: SocketAddr,
    /// Upstream base URL, e.g. https://api.openai.com or http://127.0.0.1:8000.
    #[arg(long, env = "KIROKU_UPSTREAM")]
    upstream: http::Uri,
    /// Journal spool directory.
    #[arg(long, env = "KIROKU_SPOOL")]
    spool: PathBuf,
    /// Checkpoint signing key (`kiroku keygen`; mode 0600).
    #[arg(long, env = "KIROKU_KEY")]
    key: PathBuf,
    /// When a record counts as durable.
    #[arg(long, value_parser = ["buffered", "batched", "sync"], default_value = "batched")]
    durability: String,
    /// fsync interval for --durability batched, in milliseconds.
    #[arg(long, default_value_t = 100)]
    batch_ms: u64,
    /// What to do when the journal cannot write: keep serving (open) or refuse with 503 (closed).
    #[arg(long, value_parser = ["open", "closed"], default_value = "closed")]
    on_journal_failure: String,
    /// How much of each body to keep: none, digest, redacted or full.
    #[arg(long, value_parser = super::keyword::<CaptureMode>, default_value = "redacted")]
    capture: CaptureMode,
    /// Bytes of each body kept in the record at most (the digest always covers the
    /// whole body); lower it to bound memory per open stream.
    #[arg(long, default_value_t = 16 * 1024)]
    capture_cap: usize,
    /// Ship each sealed segment to this object store URL (`s3://bucket/prefix`, `gs://`,
    /// `az://`, `file://`) and remove it locally once the upload is verified.
    #[arg(long, env = "KIROKU_SHIP")]
    ship: Option<String>,
    /// Seal segments after this many seconds (with records), so they ship promptly.
    #[arg(long, default_value_t = 3600)]
    segment_max_age: u64,
    /// Address for /healthz and /metrics.
    #[arg(long, env = "KIROKU_ADMIN")]
    admin: Option<SocketAddr>,
    /// File of secret bytes (at least 16, e.g. `head -c 32 /dev/urandom`; mode 0600) that
    /// keys the digests of API keys and client addresses. Without it they use a public
    /// key, and an IPv4 address digest can be reversed by trying every address. The key
    /// is blake3's derive_key("kiroku caller secret v1", the file's bytes).
    #[arg(long, env = "KIROKU_CALLER_SECRET")]
    caller_secret: Option<PathBuf>,
    /// Do not record client addresses, not even as digests.
    #[arg(long)]
    no_client_addr: bool,
    /// Name that lets a restarted proxy take back its chain.
    #[arg(long, default_value = "proxy")]
    writer_name: String,
    /// Seconds to wait for the upstream's response head.
    #[arg(long, default_value_t = 300)]
    upstream_timeout: u64,
    /// Extra CA certificates (PEM) for an HTTPS upstream.
    #[arg(long)]
    upstream_ca: Option<PathBuf>,
    /// Export spans (one per inference, GenAI attributes, never bodies) and journal
    /// metrics over OTLP/HTTP to this base URL, e.g. http://127.0.0.1:4318. Off when unset.
    #[cfg(feature = "otlp")]
    #[arg(long, env = "KIROKU_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
}

pub(super) fn run(a: Args) -> Result<ExitCode, CliError> {
    if a.upstream.scheme_str().is_none_or(|s| s != "http" && s != "https") || a.upstream.authority().is_none() {
        return Err(CliError::Usage(format!("--upstream {} must be an http:// or https:// URL", a.upstream)));
    }
    let signer = NoteSigner::load(&a.key).map_err(|e| CliError::Usage(e.to_string()))?;
    let durability = match a.durability.as_str() {
        "buffered" => Durability::Buffered,
        "sync" => Durability::Sync,
        _ => Durability::Batched(Duration::from_millis(a.batch_ms)),
    };
    let mut caller = CallerPolicy::default();
    if let Some(path) = &a.caller_secret {
        caller = caller.key_digest_secret(CallerPolicy::secret_from(&read_secret(path)?));
    }
    if a.no_client_addr {
        caller = caller.no_client_addr();
    }
    let policy = if a.on_journal_failure == "open" { FailurePolicy::FailOpen } else { FailurePolicy::FailClosed };
    let capture = a.capture;
    #[cfg(feature = "otlp")]
    let otlp = a
        .otlp_endpoint
        .as_deref()
        .map(|e| crate::otlp::install(e, "kiroku-proxy", Duration::from_secs(5)))
        .transpose()?;
    let rt =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().map_err(|e| CliError::Io(e.to_string()))?;
    let result = rt.block_on(async {
        // Which key signs, so that an operator sees a key rotation take effect.
        let signs_with = signer.verifier();
        let mut config = JournalConfig::new(&a.spool, signer)
            .durability(durability)
            .on_failure(policy)
            .writer_name(&a.writer_name)
            .segment_max_age(Duration::from_secs(a.segment_max_age.max(1)));
        if let Some(url) = &a.ship {
            let to = kiroku::ship::ObjectLocation::open(url).map_err(|e| CliError::Usage(e.to_string()))?;
            kiroku::ship::check_reachable(&to).await.map_err(|e| CliError::Io(e.to_string()))?;
            config = config.ship_to(to, kiroku::ship::ShipperConfig::default());
        }
        let journal = Journal::open(config).map_err(|e| CliError::Io(e.to_string()))?;
        if let Some(r) = journal.recovery() {
            say!("kiroku proxy: {r}");
        }
        let chain = journal.chain_id();
        #[cfg(feature = "otlp")]
        let _instruments = otlp.as_ref().map(|_| kiroku::telemetry::register_journal_metrics(&journal));
        let layer = AuditLayer::new(journal).capture(capture).capture_cap(a.capture_cap).caller(caller);
        let cfg = ProxyConfig {
            listen: a.listen,
            admin: a.admin,
            upstream: a.upstream.clone(),
            upstream_timeout: Duration::from_secs(a.upstream_timeout),
            upstream_ca: a.upstream_ca,
        };
        // A file-size limit (RLIMIT_FSIZE, a full quota) must fail the journal's write
        // with EFBIG, not kill the process: take SIGXFSZ (25 on Linux) ourselves.
        #[cfg(target_os = "linux")]
        let _xfsz = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25)).ok();
        // The handlers are in place before the listening line is printed: a SIGTERM sent
        // as soon as the proxy says it is up drains and seals instead of killing it.
        use tokio::signal::unix::{SignalKind, signal};
        let (mut term, mut int) = (
            signal(SignalKind::terminate()).map_err(|e| CliError::Io(format!("cannot handle SIGTERM: {e}")))?,
            signal(SignalKind::interrupt()).map_err(|e| CliError::Io(format!("cannot handle SIGINT: {e}")))?,
        );
        let shutdown = async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        };
        run_proxy(cfg, layer, shutdown, |addr, admin| {
            // A proxy serves on whether or not its stdout can be written.
            let _ = out!(
                "kiroku proxy listening on {addr} -> {} (chain {chain}, checkpoints signed by {signs_with})",
                a.upstream
            );
            if let Some(ad) = admin {
                let _ = out!("admin on {ad} (/healthz, /metrics)");
            }
        })
        .await
    });
    drop(rt);
    #[cfg(feature = "otlp")]
    if let Some(g) = otlp {
        g.shutdown();
    }
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The caller secret's bytes: owner-only, and long enough to be a secret.
fn read_secret(path: &std::path::Path) -> Result<Vec<u8>, CliError> {
    let usage = |why: String| CliError::Usage(format!("--caller-secret {}: {why}", path.display()));
    if let Some(mode) = kiroku_schemas::checkpoint::open_mode(path).map_err(|e| usage(e.to_string()))? {
        return Err(usage(format!("mode {mode:o}: a secret must be readable by its owner only (chmod 600)")));
    }
    let bytes = std::fs::read(path).map_err(|e| usage(e.to_string()))?;
    let material = bytes.trim_ascii();
    if material.len() < 16 {
        return Err(usage(format!("{} bytes; at least 16 are needed", material.len())));
    }
    Ok(material.to_vec())
}
