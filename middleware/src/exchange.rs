//! One exchange in flight: what the taps saw, and turning it into a record exactly once.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use kiroku_schemas::digest::to_hex;
use kiroku_schemas::record::{BodySummary, CaptureMode, Outcome};
use kiroku_schemas::{AuditRecord, Timestamp};

use crate::extract::StreamExtractor;
use crate::handle::{Annotations, AuditHandle};
use crate::journal::{FailurePolicy, JournalError, PendingRecord, Submitted};
use crate::layer::Config;

/// What one body tap saw: its blake3 digest, the byte count, the bytes kept for
/// extraction and capture (copied, so no transport buffer is pinned while a long stream
/// runs; at most the keep limit per body), the time of the first byte.
pub(crate) struct BodyTap {
    digest: Digest,
    pub(crate) bytes: u64,
    kept: Vec<u8>,
    keep_limit: usize,
    pub(crate) overflow: bool,
    pub(crate) first_at: Option<Timestamp>,
    /// The body's `Content-Encoding` (gzip, br, ...): nothing of it is kept, as its
    /// bytes can be neither read for extraction nor redacted; it is hashed and counted.
    encoding: Option<String>,
}

impl BodyTap {
    pub(crate) fn new(mode: CaptureMode, keep_limit: usize) -> Self {
        Self {
            digest: if mode == CaptureMode::None { Digest::Off } else { Digest::Kept },
            bytes: 0,
            kept: Vec::new(),
            keep_limit,
            overflow: false,
            first_at: None,
            encoding: None,
        }
    }

    /// A tap for a body sent with these headers: one with a content coding keeps nothing.
    pub(crate) fn for_headers(mode: CaptureMode, keep_limit: usize, headers: &http::HeaderMap) -> Self {
        let mut tap = Self::new(mode, keep_limit);
        tap.encoding = content_coding(headers);
        if tap.encoding.is_some() {
            tap.keep_limit = 0;
        }
        tap
    }

    /// The body's content coding, when it has one.
    pub(crate) fn encoding(&self) -> Option<&str> {
        self.encoding.as_deref()
    }

    pub(crate) fn observe(&mut self, data: &Bytes) {
        if data.is_empty() {
            return;
        }
        if self.first_at.is_none() {
            self.first_at = Some(Timestamp::now());
        }
        self.bytes += data.len() as u64;
        let mut take = 0;
        if self.kept.len() < self.keep_limit {
            take = data.len().min(self.keep_limit - self.kept.len());
            let want = self.kept.len() + take;
            if want > self.kept.capacity() {
                // Exactly the first chunk (often the whole body), then 1 KiB steps
                // rather than doubling: a stream's tap holds its buffer for the stream's
                // whole life (measured with 1,000 open streams).
                let cap = if self.kept.is_empty() { want } else { want.next_multiple_of(1024).min(self.keep_limit) };
                self.kept.reserve_exact(cap - self.kept.len());
            }
            self.kept.extend_from_slice(&data[..take]);
        }
        self.overflow |= take < data.len();
        match &mut self.digest {
            // The body outgrows what is kept: hash from here on as it passes.
            Digest::Kept if take < data.len() => {
                let mut h = Box::<blake3::Hasher>::default();
                h.update(&self.kept);
                h.update(&data[take..]);
                self.digest = Digest::Running(h);
            }
            Digest::Running(h) => {
                h.update(data);
            }
            _ => {}
        }
    }

    /// The body is complete: finish the digest and free the hasher (about 2 KiB, which
    /// a long response stream would otherwise keep alive).
    pub(crate) fn seal(&mut self) {
        if let Digest::Running(h) = &self.digest {
            self.digest = Digest::Done(*h.finalize().as_bytes());
        }
    }

    /// The blake3 (hex) of each body so far, unless its capture is `none`. Bodies that
    /// are still only their kept bytes are hashed together, side by side: a request and
    /// a response of about 2 KB each, 5.3 µs one by one and 2.3 µs so (see
    /// [`blake3_many`](kiroku_schemas::digest::blake3_many)).
    fn digests_hex<const N: usize>(taps: [Option<&Self>; N]) -> [Option<String>; N] {
        let kept: Vec<&[u8]> =
            taps.iter().flatten().filter(|t| matches!(t.digest, Digest::Kept)).map(|t| t.kept.as_slice()).collect();
        let mut hashed = kiroku_schemas::digest::blake3_many(&kept).into_iter();
        taps.map(|tap| {
            let tap = tap?;
            match tap.digest {
                Digest::Kept => hashed.next().map(|h| to_hex(&h)),
                _ => tap.digest_hex(),
            }
        })
    }

    /// The blake3 of the body so far (hex), unless capture is `none`.
    fn digest_hex(&self) -> Option<String> {
        match &self.digest {
            Digest::Off => None,
            Digest::Kept => Some(to_hex(&kiroku_schemas::digest::blake3_of(&self.kept))),
            Digest::Running(h) => Some(to_hex(h.finalize().as_bytes())),
            Digest::Done(d) => Some(to_hex(d)),
        }
    }
}

/// A `Content-Encoding` other than `identity`, as sent.
fn content_coding(headers: &http::HeaderMap) -> Option<String> {
    let v = headers.get(http::header::CONTENT_ENCODING)?.to_str().unwrap_or("?").trim();
    (!v.is_empty() && !v.eq_ignore_ascii_case("identity")).then(|| v.to_owned())
}

/// A body's blake3: not taken (capture `none`); still derivable from the kept bytes,
/// which are the whole body so far (no hasher held: about 2 KiB less per exchange in
/// flight); running, once the body outgrew the keep limit; or final.
enum Digest {
    Off,
    Kept,
    Running(Box<blake3::Hasher>),
    Done([u8; 32]),
}

/// The request side, shared between the request body tap and the finaliser.
pub(crate) struct Exchange {
    pub(crate) request: Mutex<RequestSide>,
}

pub(crate) struct RequestSide {
    pub(crate) tap: BodyTap,
    pub(crate) complete: bool,
    pub(crate) error: Option<String>,
}

impl Exchange {
    pub(crate) fn new(tap: BodyTap) -> Arc<Self> {
        Arc::new(Self { request: Mutex::new(RequestSide { tap, complete: false, error: None }) })
    }

    pub(crate) fn with_request<R>(&self, f: impl FnOnce(&mut RequestSide) -> R) -> R {
        f(&mut self.request.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

/// What the response side hands over when it ends.
pub(crate) struct ResponseSeen {
    pub(crate) tap: BodyTap,
    pub(crate) stream: Option<Box<dyn StreamExtractor>>,
    pub(crate) status: Option<u16>,
    pub(crate) content_type: Option<String>,
    pub(crate) streaming: bool,
    /// Server-sent lines or events the stream parser dropped for their size.
    pub(crate) sse_dropped: u64,
}

/// The attribute that says how many server-sent lines or events (over 1 MiB each) the
/// stream extraction dropped: the record's stream-derived fields may miss what they held.
pub(crate) const SSE_DROPPED: &str = "kiroku.sse_dropped";

/// The attribute that says which body was not read for extraction, and why (over the
/// layer's keep limit, or compressed): the fields extractors fill may be missing for
/// that reason.
pub(crate) const NOT_EXTRACTED: &str = "kiroku.not_extracted";

/// A future that completes once the record is queued (and durable under `Sync`).
pub(crate) type CommitFuture = Pin<Box<dyn Future<Output = Result<(), JournalError>> + Send>>;

/// Turns an exchange into a record exactly once. Dropping it unused finalises the
/// record as aborted, so a record is never lost because a future or body was dropped.
pub(crate) struct Finalizer {
    inner: Option<FinalizerInner>,
}

/// The inference's telemetry span (a unit when the `otel` feature is off).
#[cfg(feature = "otel")]
pub(crate) type SpanSlot = Option<opentelemetry::global::BoxedSpan>;
/// The inference's telemetry span (a unit when the `otel` feature is off).
#[cfg(not(feature = "otel"))]
pub(crate) type SpanSlot = ();

struct FinalizerInner {
    span: SpanSlot,
    cfg: Arc<Config>,
    exchange: Arc<Exchange>,
    handle: AuditHandle,
    response_annotations: Option<Annotations>,
    record: AuditRecord,
}

impl Finalizer {
    pub(crate) fn new(
        cfg: Arc<Config>,
        exchange: Arc<Exchange>,
        handle: AuditHandle,
        record: AuditRecord,
        span: SpanSlot,
    ) -> Self {
        Self { inner: Some(FinalizerInner { span, cfg, exchange, handle, response_annotations: None, record }) }
    }

    /// The request's route (path).
    pub(crate) fn route(&self) -> &str {
        self.inner.as_ref().map_or("", |i| i.record.http.route.as_str())
    }

    /// The request's method.
    pub(crate) fn method(&self) -> &str {
        self.inner.as_ref().map_or("", |i| i.record.http.method.as_str())
    }

    /// Annotations the inner service put in the response extensions.
    pub(crate) fn set_response_annotations(&mut self, a: Annotations) {
        if let Some(i) = self.inner.as_mut() {
            i.response_annotations = Some(a);
        }
    }

    /// Build the record from what was seen and hand it to the journal. Returns a
    /// future to await when the response's end must wait for the journal.
    pub(crate) fn finish(
        mut self,
        seen: Option<ResponseSeen>,
        outcome: Outcome,
        error: Option<String>,
    ) -> Option<CommitFuture> {
        let inner = self.inner.take()?;
        inner.finish(seen, outcome, error)
    }
}

impl Drop for Finalizer {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            let commit = inner.finish(
                None,
                Outcome::Aborted,
                Some("dropped before a response was produced (client went away or the service was cancelled)".into()),
            );
            settle_in_background(commit);
        }
    }
}

/// Let a commit finish without anyone waiting for it (the client is gone).
pub(crate) fn settle_in_background(commit: Option<CommitFuture>) {
    let Some(fut) = commit else { return };
    match tokio::runtime::Handle::try_current() {
        Ok(h) => {
            h.spawn(async move {
                if let Err(e) = fut.await {
                    tracing::warn!(target: "kiroku::layer", "audit record of an abandoned exchange: {e}");
                }
            });
        }
        Err(_) => {
            tracing::error!(target: "kiroku::layer", "audit record lost: no runtime to finish writing it")
        }
    }
}

fn summary(tap: &BodyTap, blake3: Option<String>, mode: CaptureMode, content_type: Option<String>) -> BodySummary {
    BodySummary { content_type, bytes: tap.bytes, blake3, capture: mode, captured: None, truncated: false }
}

/// Store a body per capture mode: redact (mode `redacted`) before truncating to the
/// cap, so a secret straddling the cap is never half-stored.
fn capture(cfg: &Config, mode: CaptureMode, kept: &[u8], overflow: bool, s: &mut BodySummary) {
    let text = match mode {
        CaptureMode::None | CaptureMode::Digest => return,
        CaptureMode::Redacted => cfg.redactor.redact_body(kept),
        CaptureMode::Full => String::from_utf8_lossy(kept).into_owned(),
    };
    if text.len() > cfg.capture_cap {
        let mut cut = cfg.capture_cap;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        s.captured = Some(text[..cut].to_owned());
        s.truncated = true;
    } else {
        s.captured = Some(text);
        s.truncated = overflow;
    }
}

impl FinalizerInner {
    fn finish(self, seen: Option<ResponseSeen>, outcome: Outcome, error: Option<String>) -> Option<CommitFuture> {
        let Self { span, cfg, exchange, handle, response_annotations, mut record } = self;
        record.finished_at = Timestamp::now();
        // The request body ends here for the record; anything still arriving is not in it.
        let (mut req_tap, req_complete, req_error) = exchange.with_request(|r| {
            let tap = std::mem::replace(&mut r.tap, BodyTap::new(CaptureMode::None, 0));
            (tap, r.complete && r.error.is_none(), r.error.take())
        });
        let [req_digest, resp_digest] = BodyTap::digests_hex([Some(&req_tap), seen.as_ref().map(|s| &s.tap)]);
        record.http.request =
            summary(&req_tap, req_digest, cfg.request_capture, record.http.request.content_type.take());
        let (req_kept, req_overflow) = (std::mem::take(&mut req_tap.kept), req_tap.overflow);
        let req_coding = req_tap.encoding.take();
        let mut resp_kept = Vec::new();
        let mut resp_overflow = false;
        let mut resp_coding = None;
        let mut stream = None;
        let mut resp_complete = outcome == Outcome::Completed;
        let mut sse_dropped = 0;
        if let Some(mut s) = seen {
            sse_dropped = s.sse_dropped;
            record.first_byte_at = s.tap.first_at;
            record.http.status = s.status;
            record.http.streaming = s.streaming;
            record.http.response = summary(&s.tap, resp_digest, cfg.response_capture, s.content_type.take());
            resp_kept = std::mem::take(&mut s.tap.kept);
            resp_overflow = s.tap.overflow;
            resp_coding = s.tap.encoding.take();
            stream = s.stream;
            resp_complete &= !s.tap.overflow;
        } else {
            record.http.response.capture = cfg.response_capture;
        }
        // A server error status is a failed inference even if its body arrived whole.
        let (outcome, error) = match record.http.status {
            Some(st) if st >= 500 && outcome == Outcome::Completed => {
                (Outcome::Error, Some(format!("HTTP status {st}")))
            }
            _ => (outcome, error),
        };
        // A request body that failed (a client that left mid-upload, a body limit) is
        // said too, whatever the outcome: it explains the 400 or 413 that followed.
        let error = match (error, req_error) {
            (error, None) => error,
            (Some(resp), Some(e)) => Some(format!("{resp}; request body error: {e}")),
            (None, Some(e)) => Some(format!("request body error: {e}")),
        };
        record.http.outcome = outcome;
        record.http.error = error;
        // Annotations: the response's extensions, then the handle (set fields win).
        if let Some(a) = response_annotations {
            a.apply_to(&mut record);
        }
        handle.take().apply_to(&mut record);
        if sse_dropped > 0 {
            // What the stream extraction missed is said in the record, not only in a log.
            record.attributes.insert(SSE_DROPPED.into(), sse_dropped.to_string());
        }

        let route = record.http.route.clone();
        let finish_cfg = cfg.clone();
        let finish = Box::new(move |rec: &mut AuditRecord| {
            let cfg = finish_cfg;
            let (req, resp) = (req_kept, resp_kept);
            // Bodies are parsed for extraction only, when an extractor reads them;
            // redaction works on their text.
            let parse =
                |b: &[u8], whole: bool| if whole { serde_json::from_slice::<serde_json::Value>(b).ok() } else { None };
            if let Some(ex) = cfg.extractor_for(&route) {
                if let Some(v) = parse(&req, req_complete && !req_overflow) {
                    ex.request(&route, &v, rec);
                }
                let streamed = stream.is_some();
                match stream {
                    Some(s) => s.finish(rec),
                    None => {
                        if let Some(v) = parse(&resp, resp_complete && !resp_overflow) {
                            ex.response(&route, &v, rec);
                        }
                    }
                }
                // A body that is compressed, or too large to keep, is hashed and counted
                // but not read: say so, or its missing model, usage or output digest would
                // look like the API's. (A stream is read event by event, whatever is kept
                // of it.)
                let why = |side: &str, coding: &Option<String>, overflow: bool| match coding {
                    Some(c) => Some(format!(
                        "{side} body is content-encoded ({c}): the audit layer reads bodies as they pass it, so it belongs inside any compression layer"
                    )),
                    None => overflow.then(|| format!("{side} body over the keep limit of {} bytes", cfg.keep_limit)),
                };
                let notes: Vec<String> = [
                    why("request", &req_coding, req_overflow),
                    why("response", &resp_coding, resp_overflow && !streamed),
                ]
                .into_iter()
                .flatten()
                .collect();
                if !notes.is_empty() {
                    rec.attributes.insert(NOT_EXTRACTED.into(), notes.join("; "));
                }
            }
            // A compressed body cannot be redacted: only its digest and size are kept.
            if req_coding.is_none() {
                capture(&cfg, cfg.request_capture, &req, req_overflow, &mut rec.http.request);
            }
            if resp_coding.is_none() {
                capture(&cfg, cfg.response_capture, &resp, resp_overflow, &mut rec.http.response);
            }
            #[cfg(feature = "otel")]
            if let Some(span) = span {
                crate::telemetry::end_span(span, rec);
            }
            #[cfg(not(feature = "otel"))]
            let () = span;
        });
        submit(&cfg, PendingRecord { record, finish: Some(finish) })
    }
}

fn submit(cfg: &Arc<Config>, pending: PendingRecord) -> Option<CommitFuture> {
    let journal = cfg.journal.clone();
    let fail_open = journal.failure_policy() == FailurePolicy::FailOpen;
    match journal.try_submit(pending) {
        Submitted::Queued(None) => None,
        // FailOpen never withholds a response: a record that could not be made durable
        // has been counted as lost by the writer.
        Submitted::Queued(Some(rx)) if fail_open => Some(Box::pin(async move {
            let _ = rx.await;
            Ok(())
        })),
        Submitted::Queued(Some(rx)) => {
            Some(Box::pin(async move { rx.await.map_err(|_| JournalError::Closed)?.map(|_| ()) }))
        }
        Submitted::Full(pending) => match journal.failure_policy() {
            FailurePolicy::FailOpen => {
                journal.count_lost(1, "journal queue full");
                None
            }
            FailurePolicy::FailClosed => Some(Box::pin(async move {
                match journal.submit_wait(pending).await? {
                    Some(rx) => rx.await.map_err(|_| JournalError::Closed)?.map(|_| ()),
                    None => Ok(()),
                }
            })),
        },
        Submitted::Lost(e) => match journal.failure_policy() {
            FailurePolicy::FailOpen => None,
            FailurePolicy::FailClosed => Some(Box::pin(async move { Err(e) })),
        },
    }
}

pub(crate) fn new_record(route: &str, method: &str, started_at: Timestamp) -> AuditRecord {
    let id = uuid::Uuid::now_v7().to_string();
    let mut r = AuditRecord::new(id, started_at);
    r.http.method = method.to_owned();
    r.http.route = route.to_owned();
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_covers_the_whole_body_whatever_the_chunking_and_the_keep_limit() {
        let body: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
        for keep_limit in [0, 1, 1000, 4999, 5000, 5001, 16 << 10] {
            for chunk in [1, 7, 1024, 4096, 5000] {
                let mut tap = BodyTap::new(CaptureMode::Redacted, keep_limit);
                for c in body.chunks(chunk) {
                    tap.observe(&Bytes::copy_from_slice(c));
                }
                let want = to_hex(blake3::hash(&body).as_bytes());
                assert_eq!(tap.digest_hex().as_deref(), Some(want.as_str()), "limit {keep_limit} chunk {chunk}");
                assert_eq!(tap.kept, body[..keep_limit.min(body.len())], "limit {keep_limit} chunk {chunk}");
                assert_eq!(tap.overflow, keep_limit < body.len());
                tap.seal();
                assert_eq!(tap.digest_hex().as_deref(), Some(want.as_str()));
            }
        }
        assert_eq!(BodyTap::new(CaptureMode::None, 10).digest_hex(), None);
    }

    #[test]
    fn bodies_hashed_together_get_each_its_own_digest() {
        let tap = |mode, keep_limit, len: usize, seed: u32| {
            let body: Vec<u8> = (0..len as u32).map(|i| (i * seed % 251) as u8).collect();
            let mut t = BodyTap::new(mode, keep_limit);
            for c in body.chunks(700) {
                t.observe(&Bytes::copy_from_slice(c));
            }
            (t, to_hex(blake3::hash(&body).as_bytes()))
        };
        // Kept and kept (side by side), kept and running, kept and off, empty, absent.
        let shapes = [(CaptureMode::Redacted, 1 << 20), (CaptureMode::Full, 100), (CaptureMode::None, 1 << 20)];
        for (req_mode, req_limit) in shapes {
            for (resp_mode, resp_limit) in shapes {
                for (req_len, resp_len) in [(2000, 2048), (0, 1), (40, 60), (3000, 9000)] {
                    let (req, req_want) = tap(req_mode, req_limit, req_len, 7);
                    let (resp, resp_want) = tap(resp_mode, resp_limit, resp_len, 13);
                    let want = |mode, d: String| (mode != CaptureMode::None).then_some(d);
                    let what = format!("{req_mode:?}/{req_limit} {req_len}, {resp_mode:?}/{resp_limit} {resp_len}");
                    assert_eq!(
                        BodyTap::digests_hex([Some(&req), Some(&resp)]),
                        [want(req_mode, req_want.clone()), want(resp_mode, resp_want)],
                        "{what}"
                    );
                    assert_eq!(BodyTap::digests_hex([Some(&req), None]), [want(req_mode, req_want), None], "{what}");
                }
            }
        }
    }
}
