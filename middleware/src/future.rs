//! The response future: wraps the response body in a tap, or records the error.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use kiroku_schemas::record::Outcome;
use pin_project_lite::pin_project;

use crate::body::{AuditBody, BoxError, ResponseTap};
use crate::exchange::{BodyTap, Finalizer, settle_in_background};
use crate::handle::Annotations;
use crate::layer::Config;
use crate::service::refusal;

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Inner { #[pin] fut: F, finalizer: Option<Finalizer>, cfg: Arc<Config> },
        Refused { reason: Option<String> },
    }
}

pin_project! {
    /// Response future of [`AuditService`](crate::AuditService): waits for the inner
    /// service, or answers a refusal (`FailClosed` with a failed journal).
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(fut: F, finalizer: Finalizer, cfg: Arc<Config>) -> Self {
        Self { kind: Kind::Inner { fut, finalizer: Some(finalizer), cfg } }
    }

    pub(crate) fn refused(reason: &str) -> Self {
        Self { kind: Kind::Refused { reason: Some(reason.to_owned()) } }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: std::fmt::Display,
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Output = Result<Response<AuditBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let (fut, finalizer, cfg) = match self.project().kind.project() {
            KindProj::Refused { reason } => {
                return Poll::Ready(Ok(refusal(reason.as_deref().unwrap_or_default())));
            }
            KindProj::Inner { fut, finalizer, cfg } => (fut, finalizer, cfg),
        };
        let result = ready!(fut.poll(cx));
        let Some(mut fin) = finalizer.take() else {
            // Polled again after completion: the contract of Future allows a panic here;
            // we answer as if refused instead.
            return Poll::Ready(Ok(refusal("response future polled after completion")));
        };
        match result {
            Ok(mut resp) => {
                if let Some(a) = resp.extensions_mut().remove::<Annotations>() {
                    fin.set_response_annotations(a);
                }
                let headers = resp.headers();
                let content_type =
                    headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
                // Media types are case-insensitive (RFC 9110 8.3.1).
                let is_sse = content_type
                    .as_deref()
                    .and_then(|c| c.get(..SSE.len()))
                    .is_some_and(|c| c.eq_ignore_ascii_case(SSE));
                // A response to HEAD, and a 1xx, 204 or 304 response, has no content
                // (RFC 9110 6.4.1) whatever its Content-Length says: the server never
                // reads its body, and it is complete once its head is sent.
                let status = resp.status();
                let bodiless = fin.method() == "HEAD"
                    || status.is_informational()
                    || status == http::StatusCode::NO_CONTENT
                    || status == http::StatusCode::NOT_MODIFIED;
                let content_length = if bodiless {
                    Some(0)
                } else {
                    headers
                        .get(http::header::CONTENT_LENGTH)
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse().ok())
                        .or_else(|| resp.body().size_hint().exact())
                };
                let route = fin.route().to_owned();
                let tap = BodyTap::for_headers(
                    cfg.response_capture,
                    if is_sse { cfg.capture_cap } else { cfg.keep_limit },
                    headers,
                );
                // Compressed events cannot be parsed: the stream is hashed and counted only.
                let stream = if is_sse && tap.encoding().is_none() {
                    cfg.extractor_for(&route).map(|e| e.stream(&route)).or_else(|| Some(Box::new(NoStream::default())))
                } else {
                    None
                };
                let tap = ResponseTap::new(tap, stream, content_length, resp.status().as_u16(), content_type, fin);
                Poll::Ready(Ok(resp.map(|inner| AuditBody::tapped(inner, tap))))
            }
            Err(e) => {
                let commit = fin.finish(None, Outcome::Error, Some(format!("service error: {e}")));
                settle_in_background(commit);
                Poll::Ready(Err(e))
            }
        }
    }
}

/// The media type of server-sent events.
const SSE: &str = "text/event-stream";

/// A stream with no known API: only `data: [DONE]` is recognised as its end.
#[derive(Default)]
struct NoStream {
    done: bool,
}

impl crate::extract::StreamExtractor for NoStream {
    fn event(&mut self, ev: &crate::sse::SseEvent) {
        self.done |= ev.data == "[DONE]";
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn finish(self: Box<Self>, _rec: &mut kiroku_schemas::AuditRecord) {}
}
