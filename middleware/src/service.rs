//! [`AuditService`]: takes the record id, start time, trace context and caller, puts an
//! [`AuditHandle`] into the request extensions, taps the request body, and refuses
//! requests with 503 under `FailClosed` while the journal cannot write.

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use kiroku_schemas::Timestamp;
use tower_service::Service;

use crate::body::{AuditBody, BoxError, RequestBody};
use crate::caller::trace_context;
use crate::exchange::{BodyTap, Exchange, Finalizer, new_record};
use crate::future::ResponseFuture;
use crate::handle::AuditHandle;
use crate::journal::FailurePolicy;
use crate::layer::Config;

/// The service built by [`AuditLayer`](crate::AuditLayer).
pub struct AuditService<S> {
    inner: S,
    cfg: Arc<Config>,
}

impl<S: Clone> Clone for AuditService<S> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), cfg: self.cfg.clone() }
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for AuditService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditService").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S> AuditService<S> {
    pub(crate) fn new(inner: S, cfg: Arc<Config>) -> Self {
        Self { inner, cfg }
    }
}

fn random_span_id() -> [u8; 8] {
    // The span id only needs to be unique within a trace; UUIDv7's random tail is enough.
    let u = uuid::Uuid::now_v7();
    let b = u.as_bytes();
    let mut s = [0u8; 8];
    s.copy_from_slice(&b[8..16]);
    s
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AuditService<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    S::Error: std::fmt::Display,
    ReqBody: Body<Data = Bytes>,
    ResBody: Body<Data = Bytes>,
    ResBody::Error: Into<BoxError>,
{
    type Response = Response<AuditBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let journal = &self.cfg.journal;
        if journal.failure_policy() == FailurePolicy::FailClosed && !journal.is_healthy() {
            let reason = journal.failure_reason().unwrap_or_default();
            journal.note_refusal();
            return ResponseFuture::refused(&reason);
        }
        let started_at = Timestamp::now();
        let mut record = new_record(req.uri().path(), req.method().as_str(), started_at);
        record.caller = self.cfg.caller.caller(req.headers());
        if let Some(addr) = req.extensions().get::<std::net::SocketAddr>() {
            record.caller.client_addr = self.cfg.caller.client_addr(addr.ip());
        }
        record.trace = trace_context(req.headers(), random_span_id());
        #[cfg(feature = "otel")]
        let span = {
            let (span, ids) = crate::telemetry::start_span(req.headers(), started_at);
            if let Some((trace_id, span_id)) = ids {
                record.trace =
                    kiroku_schemas::record::TraceContext { trace_id: Some(trace_id), span_id: Some(span_id) };
            }
            Some(span)
        };
        #[cfg(not(feature = "otel"))]
        let span = ();
        record.http.request.content_type =
            req.headers().get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);

        let handle = AuditHandle::new(&record.record_id);
        let exchange =
            Exchange::new(BodyTap::for_headers(self.cfg.request_capture, self.cfg.keep_limit, req.headers()));
        let (mut parts, body) = req.into_parts();
        parts.extensions.insert(handle.clone());
        let req = Request::from_parts(parts, RequestBody::new(body, exchange.clone()));
        let finalizer = Finalizer::new(self.cfg.clone(), exchange, handle, record, span);
        ResponseFuture::new(self.inner.call(req), finalizer, self.cfg.clone())
    }
}

/// The body of a refusal, in the OpenAI error shape so SDKs show the message.
pub(crate) fn refusal_body(reason: &str) -> String {
    serde_json::json!({
        "error": {
            "message": format!("audit journal unavailable, request refused before reaching the model: {reason}"),
            "type": "audit_unavailable",
            "code": "kiroku_fail_closed",
        }
    })
    .to_string()
}

pub(crate) fn refusal<B>(reason: &str) -> Response<AuditBody<B>> {
    let mut r = Response::new(AuditBody::refused(refusal_body(reason)));
    *r.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    r.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from_static("1"));
    r
}
