//! Tap bodies: frames pass through untouched and unbuffered while the tap hashes,
//! counts, keeps bytes for extraction and capture, notes the first byte, and parses
//! server-sent events. The response tap finalises the record exactly once: at the end
//! of the stream, on a body error, or when dropped before the end (outcome `aborted`
//! unless the terminal event had already been delivered).
//!
//! Under `Durability::Sync` (and under `FailClosed` when the journal queue is full)
//! the response tap holds back only the final frame (the terminal SSE event, the byte
//! that completes a Content-Length body, or the end of a chunked body) until the
//! journal has the record; no client sees the end of a response whose record is not
//! durable.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use kiroku_schemas::record::Outcome;
use pin_project_lite::pin_project;

use crate::exchange::{BodyTap, CommitFuture, Exchange, Finalizer, ResponseSeen, settle_in_background};
use crate::extract::StreamExtractor;
use crate::sse::SseParser;

/// Boxed error type of the bodies this layer produces.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project! {
    /// The request body as the inner service sees it.
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        exchange: Arc<Exchange>,
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn new(inner: B, exchange: Arc<Exchange>) -> Self {
        Self { inner, exchange }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let r = ready!(inner.as_mut().poll_frame(cx));
        match &r {
            Some(Ok(f)) => {
                // The consumer may never poll again after the last frame (hyper checks
                // `is_end_stream` instead), so completeness is noted here too.
                let end = inner.is_end_stream();
                this.exchange.with_request(|q| {
                    if let Some(d) = f.data_ref() {
                        q.tap.observe(d);
                    }
                    if end {
                        q.complete = true;
                        q.tap.seal();
                    }
                });
            }
            Some(Err(e)) => this.exchange.with_request(|q| q.error = Some(e.to_string())),
            None => this.exchange.with_request(|q| {
                q.complete = true;
                q.tap.seal();
            }),
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

enum TapState {
    Streaming,
    /// Waiting for the journal before releasing `held` (or the end, when `None`).
    Committing {
        held: Option<Frame<Bytes>>,
        end_after: bool,
        commit: CommitFuture,
    },
    /// The record is final; remaining frames pass through unobserved.
    Passthrough,
    Done,
}

/// The response side of a tap.
pub(crate) struct ResponseTap {
    tap: BodyTap,
    sse: Option<(SseParser, Box<dyn StreamExtractor>)>,
    content_length: Option<u64>,
    status: Option<u16>,
    content_type: Option<String>,
    finalizer: Option<Finalizer>,
    state: TapState,
}

impl ResponseTap {
    pub(crate) fn new(
        tap: BodyTap,
        stream: Option<Box<dyn StreamExtractor>>,
        content_length: Option<u64>,
        status: u16,
        content_type: Option<String>,
        finalizer: Finalizer,
    ) -> Self {
        Self {
            tap,
            sse: stream.map(|s| (SseParser::default(), s)),
            content_length,
            status: Some(status),
            content_type,
            finalizer: Some(finalizer),
            state: TapState::Streaming,
        }
    }

    fn observe(&mut self, data: &Bytes) {
        self.tap.observe(data);
        if let Some((parser, ex)) = &mut self.sse {
            parser.feed(data, &mut |ev| ex.event(&ev));
        }
    }

    fn terminal_seen(&self) -> bool {
        self.sse.as_ref().is_some_and(|(_, ex)| ex.is_done())
            || self.content_length.is_some_and(|n| self.tap.bytes >= n)
    }

    fn finalize(&mut self, outcome: Outcome, error: Option<String>) -> Option<CommitFuture> {
        let f = self.finalizer.take()?;
        let streaming = self.sse.is_some();
        let sse_dropped = self.sse.as_ref().map_or(0, |(p, _)| p.dropped());
        let stream = self.sse.take().map(|(_, ex)| ex);
        let tap = std::mem::replace(&mut self.tap, BodyTap::new(kiroku_schemas::record::CaptureMode::None, 0));
        let seen = ResponseSeen {
            tap,
            stream,
            status: self.status,
            content_type: self.content_type.take(),
            streaming,
            sse_dropped,
        };
        f.finish(Some(seen), outcome, error)
    }
}

impl Drop for ResponseTap {
    fn drop(&mut self) {
        if self.finalizer.is_some() {
            let (outcome, why) = if self.terminal_seen() {
                (Outcome::Completed, None)
            } else {
                (Outcome::Aborted, Some(format!("client went away after {} response bytes", self.tap.bytes)))
            };
            let commit = self.finalize(outcome, why);
            settle_in_background(commit);
        }
        if let TapState::Committing { commit, .. } = std::mem::replace(&mut self.state, TapState::Done) {
            settle_in_background(Some(commit));
        }
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Tapped { #[pin] inner: B, tap: Box<ResponseTap> },
        Refused { body: Option<Bytes> },
    }
}

pin_project! {
    /// The response body: the inner service's body, observed; or a refusal produced by
    /// the layer itself (`FailClosed`).
    pub struct AuditBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

impl<B> AuditBody<B> {
    pub(crate) fn tapped(inner: B, tap: ResponseTap) -> Self {
        Self { kind: Kind::Tapped { inner, tap: Box::new(tap) } }
    }

    pub(crate) fn refused(text: String) -> Self {
        Self { kind: Kind::Refused { body: Some(Bytes::from(text)) } }
    }
}

/// Why the end of a response was withheld.
#[derive(Debug, thiserror::Error)]
#[error("audit record could not be written, response not completed: {0}")]
pub struct NotRecorded(pub crate::journal::JournalError);

impl<B> Body for AuditBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let (mut inner, tap) = match self.project().kind.project() {
            KindProj::Refused { body } => {
                return Poll::Ready(body.take().map(|b| Ok(Frame::data(b))));
            }
            KindProj::Tapped { inner, tap } => (inner, tap),
        };
        loop {
            match &mut tap.state {
                TapState::Done => return Poll::Ready(None),
                TapState::Passthrough => {
                    return inner.as_mut().poll_frame(cx).map(|o| o.map(|r| r.map_err(Into::into)));
                }
                TapState::Committing { commit, .. } => {
                    let r = ready!(commit.as_mut().poll(cx));
                    let TapState::Committing { held, end_after, .. } =
                        std::mem::replace(&mut tap.state, TapState::Done)
                    else {
                        unreachable!("state checked above")
                    };
                    if let Err(e) = r {
                        return Poll::Ready(Some(Err(Box::new(NotRecorded(e)))));
                    }
                    if !end_after {
                        tap.state = TapState::Passthrough;
                    }
                    return Poll::Ready(held.map(Ok));
                }
                TapState::Streaming => {}
            }
            match ready!(inner.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(d) = frame.data_ref() {
                        tap.observe(d);
                    }
                    let end = inner.is_end_stream();
                    if !(end || tap.terminal_seen()) {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    match tap.finalize(Outcome::Completed, None) {
                        Some(commit) => tap.state = TapState::Committing { held: Some(frame), end_after: end, commit },
                        None => {
                            tap.state = if end { TapState::Done } else { TapState::Passthrough };
                            return Poll::Ready(Some(Ok(frame)));
                        }
                    }
                }
                Some(Err(e)) => {
                    let e: BoxError = e.into();
                    let commit = tap.finalize(Outcome::Error, Some(format!("response body error: {e}")));
                    settle_in_background(commit);
                    tap.state = TapState::Done;
                    return Poll::Ready(Some(Err(e)));
                }
                None => match tap.finalize(Outcome::Completed, None) {
                    Some(commit) => tap.state = TapState::Committing { held: None, end_after: true, commit },
                    None => {
                        tap.state = TapState::Done;
                        return Poll::Ready(None);
                    }
                },
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Refused { body } => body.is_none(),
            Kind::Tapped { tap, .. } => matches!(tap.state, TapState::Done),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Refused { body } => SizeHint::with_exact(body.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Tapped { inner, .. } => inner.size_hint(),
        }
    }
}
