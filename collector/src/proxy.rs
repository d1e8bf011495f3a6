//! `kiroku proxy`: an audited reverse proxy in front of any OpenAI- or
//! Anthropic-compatible API, for stacks not written in Rust.
//!
//! It is the same [`AuditLayer`] as in Rust services, wrapped around a forwarding
//! service: bodies stream through chunk by chunk (no buffering), hop-by-hop headers are
//! dropped per RFC 9110 section 7.6.1, the client's `Authorization` goes to the upstream
//! and never into a record, the upstream is asked for uncompressed bodies
//! (`Accept-Encoding: identity`: a gzip body could be neither read for provenance nor
//! redacted), and upstream failures are answered with 502 or 504 and
//! recorded with what went wrong. Clients speak HTTP/1.1 or h2c; the upstream is
//! reached over HTTP/1.1 or HTTPS (rustls, webpki roots plus an optional CA file).
//! A separate admin address serves `/healthz` and Prometheus `/metrics`. On SIGTERM or
//! SIGINT the proxy stops accepting, drains in-flight streams and seals the journal.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use kiroku::{Annotations, AuditLayer, BoxError, Journal, RequestBody};
use tokio::net::TcpListener;
use tower::{Layer as _, Service, ServiceBuilder};

use crate::error::CliError;

/// How to run the proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Where clients connect.
    pub listen: SocketAddr,
    /// Where `/healthz` and `/metrics` are served.
    pub admin: Option<SocketAddr>,
    /// The upstream base URL (`http://` or `https://`), e.g. `https://api.openai.com`.
    pub upstream: Uri,
    /// Time allowed for the upstream's response head.
    pub upstream_timeout: Duration,
    /// Extra CA certificates (PEM) for an HTTPS upstream.
    pub upstream_ca: Option<PathBuf>,
}

/// Counters of the forwarding side.
#[derive(Debug, Default)]
pub struct ProxyStats {
    requests: AtomicU64,
    upstream_errors: AtomicU64,
}

type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

/// RFC 9110 7.6.1: connection-specific fields a proxy must not forward, plus those the
/// `Connection` header names.
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    ] {
        h.remove(n);
    }
}

fn error_response(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body =
        serde_json::json!({"error": {"message": message, "type": "kiroku_proxy_error", "code": status.as_u16()}})
            .to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|e: Infallible| match e {}).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.extensions_mut().insert(Annotations { error: Some(message.to_owned()), ..Annotations::default() });
    r
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, RequestBody<Incoming>>;

fn client(cfg: &ProxyConfig) -> Result<HttpsClient, CliError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(ca) = &cfg.upstream_ca {
        use rustls::pki_types::pem::PemObject as _;
        let certs = rustls::pki_types::CertificateDer::pem_file_iter(ca)
            .map_err(|e| CliError::Usage(format!("{}: {e}", ca.display())))?;
        for c in certs {
            let c = c.map_err(|e| CliError::Usage(format!("{}: {e}", ca.display())))?;
            roots.add(c).map_err(|e| CliError::Usage(format!("{}: {e}", ca.display())))?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| CliError::Usage(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    // Streamed tokens are small writes: never let Nagle's algorithm hold them back.
    http.set_nodelay(true);
    http.enforce_http(false);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    // A fixed 8 KiB read buffer per upstream connection instead of hyper's adaptive one,
    // which grows while a response streams and keeps that size for the connection's
    // life: with 1,000 open streams that was ~5 MiB of the proxy's memory. AI responses
    // arrive in small chunks, so reads of at most 8 KiB cost no throughput here.
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .http1_read_buf_exact_size(8192)
        .build(https))
}

/// The forwarding service (what the audit layer wraps).
#[derive(Clone)]
struct Forward {
    client: HttpsClient,
    upstream: Uri,
    timeout: Duration,
    stats: Arc<ProxyStats>,
}

impl Forward {
    fn target(&self, uri: &Uri) -> Result<Uri, http::Error> {
        let base = self.upstream.path().trim_end_matches('/');
        let pq = uri.path_and_query().map_or("/", |p| p.as_str());
        Uri::builder()
            .scheme(self.upstream.scheme_str().unwrap_or("http"))
            .authority(self.upstream.authority().map_or("localhost", |a| a.as_str()))
            .path_and_query(format!("{base}{pq}"))
            .build()
    }

    async fn forward(self, mut req: Request<RequestBody<Incoming>>) -> Response<ProxyBody> {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let target = match self.target(req.uri()) {
            Ok(t) => t,
            Err(e) => return error_response(StatusCode::BAD_REQUEST, &format!("cannot build the upstream URL: {e}")),
        };
        *req.uri_mut() = target;
        *req.version_mut() = http::Version::HTTP_11;
        strip_hop_by_hop(req.headers_mut());
        // A compressed body cannot be read for provenance nor redacted: the upstream is
        // asked for bodies as they are (clients that asked for gzip get them so too).
        req.headers_mut().insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
        if let Some(a) = self.upstream.authority()
            && let Ok(v) = HeaderValue::from_str(a.as_str())
        {
            req.headers_mut().insert(header::HOST, v);
        }
        match tokio::time::timeout(self.timeout, self.client.request(req)).await {
            Ok(Ok(resp)) => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, body.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
            }
            Ok(Err(e)) => {
                self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                let mut msg = format!("upstream {} unreachable: {e}", self.upstream);
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    msg.push_str(&format!(": {s}"));
                    src = s.source();
                }
                error_response(StatusCode::BAD_GATEWAY, &msg)
            }
            Err(_) => {
                self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
                error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!("upstream {} sent no response within {:?}", self.upstream, self.timeout),
                )
            }
        }
    }
}

impl Service<Request<RequestBody<Incoming>>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody<Incoming>>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.forward(req).await) })
    }
}

/// Prometheus text of the journal's and the proxy's counters.
pub fn metrics_text(journal: &Journal, stats: &ProxyStats) -> String {
    let m = journal.metrics();
    let mut s = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, v: f64| {
        s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
    };
    metric(
        "kiroku_records_written_total",
        "counter",
        "Audit records written to the journal.",
        m.records_written as f64,
    );
    metric(
        "kiroku_records_lost_total",
        "counter",
        "Audit records that could not be written (FailOpen).",
        m.records_lost as f64,
    );
    metric(
        "kiroku_records_lost_unstated",
        "gauge",
        "Lost audit records no record in the chain states yet (the next record written states them).",
        m.records_lost_unstated as f64,
    );
    metric("kiroku_bytes_written_total", "counter", "Bytes appended to segment files.", m.bytes_written as f64);
    metric("kiroku_queue_depth", "gauge", "Records waiting for the journal writer.", m.queue_depth as f64);
    metric("kiroku_fsyncs_total", "counter", "fsync calls by the journal.", m.fsyncs as f64);
    metric("kiroku_fsync_seconds_total", "counter", "Time spent in fsync.", m.fsync_nanos as f64 / 1e9);
    metric("kiroku_segments_sealed_total", "counter", "Segments sealed.", m.segments_sealed as f64);
    metric("kiroku_journal_healthy", "gauge", "1 while the journal can write.", if m.healthy { 1.0 } else { 0.0 });
    metric(
        "kiroku_proxy_requests_total",
        "counter",
        "Requests forwarded.",
        stats.requests.load(Ordering::Relaxed) as f64,
    );
    metric(
        "kiroku_proxy_upstream_errors_total",
        "counter",
        "Upstream connection failures and timeouts.",
        stats.upstream_errors.load(Ordering::Relaxed) as f64,
    );
    metric(
        "kiroku_requests_refused_total",
        "counter",
        "Requests refused with 503 because the journal could not write (FailClosed).",
        m.requests_refused as f64,
    );
    if let Some(sm) = journal.ship_metrics() {
        metric("kiroku_ship_segments_total", "counter", "Segments uploaded and verified.", sm.shipped as f64);
        metric("kiroku_ship_bytes_total", "counter", "Bytes of segments uploaded.", sm.bytes as f64);
        metric("kiroku_ship_backlog", "gauge", "Sealed segments waiting for upload.", sm.backlog as f64);
        metric(
            "kiroku_ship_conflicts_total",
            "counter",
            "Segments whose name is taken in the store by different bytes (not overwritten).",
            sm.conflicts as f64,
        );
        metric("kiroku_ship_failures_total", "counter", "Failed upload attempts (retried).", sm.failures as f64);
    }
    s
}

async fn admin(
    listener: TcpListener,
    journal: Journal,
    stats: Arc<ProxyStats>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(s) => s, Err(_) => continue },
            _ = stop.changed() => return,
        };
        let (journal, stats) = (journal.clone(), stats.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (journal, stats) = (journal.clone(), stats.clone());
                async move {
                    let (status, ctype, body) = match req.uri().path() {
                        "/healthz" => match journal.failure_reason() {
                            None => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
                            Some(why) => {
                                (StatusCode::SERVICE_UNAVAILABLE, "text/plain", format!("journal unavailable: {why}\n"))
                            }
                        },
                        "/metrics" => (StatusCode::OK, "text/plain; version=0.0.4", metrics_text(&journal, &stats)),
                        _ => (StatusCode::NOT_FOUND, "text/plain", "not found\n".to_owned()),
                    };
                    let mut r = Response::new(Full::new(Bytes::from(body)));
                    *r.status_mut() = status;
                    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
                    Ok::<_, Infallible>(r)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// Run the proxy until `shutdown` resolves, then drain and seal. `ready` receives the
/// bound addresses (client, admin).
pub async fn run(
    cfg: ProxyConfig,
    layer: AuditLayer,
    shutdown: impl std::future::Future<Output = ()>,
    ready: impl FnOnce(SocketAddr, Option<SocketAddr>),
) -> Result<(), CliError> {
    let journal = layer.journal().clone();
    let stats = Arc::new(ProxyStats::default());
    let forward = Forward {
        client: client(&cfg)?,
        upstream: cfg.upstream.clone(),
        timeout: cfg.upstream_timeout,
        stats: stats.clone(),
    };
    let svc = ServiceBuilder::new().layer(layer).service(forward);
    let listener =
        TcpListener::bind(cfg.listen).await.map_err(|e| CliError::Io(format!("binding {}: {e}", cfg.listen)))?;
    let addr = listener.local_addr().map_err(|e| CliError::Io(e.to_string()))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin_addr = match cfg.admin {
        Some(a) => {
            let l = TcpListener::bind(a).await.map_err(|e| CliError::Io(format!("binding admin {a}: {e}")))?;
            let bound = l.local_addr().map_err(|e| CliError::Io(e.to_string()))?;
            tokio::spawn(admin(l, journal.clone(), stats.clone(), stop_rx.clone()));
            Some(bound)
        }
        None => None,
    };
    ready(addr, admin_addr);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(target: "kiroku::proxy", "accept failed: {e}");
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let svc = svc.clone();
                let hyper_svc = TowerToHyperService::new(tower::util::MapRequestLayer::new(move |mut r: Request<Incoming>| {
                    r.extensions_mut().insert(peer);
                    r
                }).layer(svc));
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), hyper_svc).into_owned();
                let watched = graceful.watch(conn);
                tokio::spawn(async move {
                    if let Err(e) = watched.await {
                        tracing::debug!(target: "kiroku::proxy", "connection from {peer}: {e}");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(target: "kiroku::proxy", "shutting down: draining in-flight requests");
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!(target: "kiroku::proxy", "in-flight requests still open after 30s; sealing anyway (their records are finalised as aborted)");
    }
    let _ = stop_tx.send(true);
    let sealed = journal.shutdown().await;
    // Read after the writer stopped: records submitted during the drain count too.
    let losses = losses(&journal.metrics());
    let report = sealed
        .map_err(|e| CliError::Io(format!("{e}{}", losses.as_deref().map_or(String::new(), |l| format!("; {l}")))))?;
    tracing::info!(target: "kiroku::proxy", "journal sealed: chain {} next seq {}", report.chain_id, report.next_seq);
    match losses {
        Some(l) => Err(CliError::Incomplete(format!("chain {}: {l}", report.chain_id))),
        None => Ok(()),
    }
}

/// What the run lost, if anything: how many records, and how many of them no record in
/// the chain states (lost after the last record written).
fn losses(m: &kiroku::journal::JournalMetrics) -> Option<String> {
    if m.records_lost == 0 {
        return None;
    }
    let unstated = match m.records_lost_unstated {
        0 => "the chain states each loss (records_lost_before)".to_owned(),
        n if n == m.records_lost => {
            format!("no record in the chain states them ({n} lost after the last record written)")
        }
        n => format!("{n} of them after the last record written, which no record in the chain states"),
    };
    let unstated = match m.records_lost_kept {
        0 if m.records_lost_unstated > 0 => format!("{unstated}; they could not be kept in the chain's `lost` file"),
        0 => unstated,
        _ => format!(
            "{unstated}; the chain's `lost` file keeps them, and the next record this writer appends to the chain states them"
        ),
    };
    Some(format!(
        "{} audit record(s) lost during this run (inferences that have no record); {unstated}",
        m.records_lost
    ))
}
