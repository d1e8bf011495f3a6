//! [`AuditLayer`]: the configuration, and the `tower::Layer` that builds the service.

use std::sync::Arc;

use kiroku_schemas::record::CaptureMode;
use tower_layer::Layer;

use crate::caller::CallerPolicy;
use crate::extract::{self, Extractor};
use crate::journal::Journal;
use crate::redact::Redactor;
use crate::service::AuditService;

/// Everything the service needs, shared by all its clones.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) journal: Journal,
    pub(crate) request_capture: CaptureMode,
    pub(crate) response_capture: CaptureMode,
    pub(crate) capture_cap: usize,
    pub(crate) keep_limit: usize,
    pub(crate) redactor: Redactor,
    pub(crate) extractors: Vec<Arc<dyn Extractor>>,
    pub(crate) caller: CallerPolicy,
}

impl Config {
    pub(crate) fn extractor_for(&self, route: &str) -> Option<&Arc<dyn Extractor>> {
        self.extractors.iter().find(|e| e.handles(route))
    }
}

/// Wraps a service so that every request yields one audit record in the journal.
///
/// Defaults: capture mode `redacted` for both bodies with the built-in redactor, a
/// capture cap of 16 KiB per body, bodies kept for extraction up to 1 MiB, the
/// OpenAI- and Anthropic-compatible extractors, API keys as keyed digests.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use axum::{routing::post, Router};
/// use kiroku::{AuditLayer, Journal, JournalConfig};
/// use kiroku_schemas::checkpoint::NoteSigner;
///
/// let dir = tempfile::tempdir()?;
/// let journal = Journal::open(JournalConfig::new(dir.path(), NoteSigner::generate("example")?))?;
/// let app: Router = Router::new()
///     .route("/v1/chat/completions", post(|| async { "{}" }))
///     .layer(AuditLayer::new(journal.clone()));
/// # let _ = app;
/// journal.shutdown().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuditLayer {
    cfg: Arc<Config>,
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer")
            .field("journal", &self.cfg.journal)
            .field("request_capture", &self.cfg.request_capture)
            .field("response_capture", &self.cfg.response_capture)
            .field("capture_cap", &self.cfg.capture_cap)
            .finish_non_exhaustive()
    }
}

impl AuditLayer {
    /// A layer writing to `journal`.
    pub fn new(journal: Journal) -> Self {
        Self {
            cfg: Arc::new(Config {
                journal,
                request_capture: CaptureMode::Redacted,
                response_capture: CaptureMode::Redacted,
                capture_cap: 16 << 10,
                keep_limit: 1 << 20,
                redactor: Redactor::builtin(),
                extractors: extract::defaults(),
                caller: CallerPolicy::default(),
            }),
        }
    }

    fn with(self, f: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = Arc::unwrap_or_clone(self.cfg);
        f(&mut cfg);
        Self { cfg: Arc::new(cfg) }
    }

    /// Capture mode for both bodies.
    pub fn capture(self, mode: CaptureMode) -> Self {
        self.with(|c| {
            c.request_capture = mode;
            c.response_capture = mode;
        })
    }

    /// Capture mode for request bodies.
    pub fn request_capture(self, mode: CaptureMode) -> Self {
        self.with(|c| c.request_capture = mode)
    }

    /// Capture mode for response bodies.
    pub fn response_capture(self, mode: CaptureMode) -> Self {
        self.with(|c| c.response_capture = mode)
    }

    /// Bytes of each body stored at most (the digest always covers the whole body).
    pub fn capture_cap(self, bytes: usize) -> Self {
        self.with(|c| c.capture_cap = bytes)
    }

    /// Bytes of each non-streamed body kept in memory for extraction (and redaction
    /// before capture). Bodies above it are still hashed and counted, not extracted.
    pub fn keep_limit(self, bytes: usize) -> Self {
        self.with(|c| c.keep_limit = bytes)
    }

    /// The redaction policy for mode `redacted`.
    pub fn redactor(self, r: Redactor) -> Self {
        self.with(|c| c.redactor = r)
    }

    /// Add an extractor; it is tried before the built-in ones.
    pub fn extractor(self, e: impl Extractor) -> Self {
        self.with(|c| c.extractors.insert(0, Arc::new(e)))
    }

    /// How callers are identified.
    pub fn caller(self, p: CallerPolicy) -> Self {
        self.with(|c| c.caller = p)
    }

    /// The journal.
    pub fn journal(&self) -> &Journal {
        &self.cfg.journal
    }
}

impl<S> Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService::new(inner, self.cfg.clone())
    }
}
