//! OpenTelemetry: one span per inference with GenAI semantic-convention attributes and
//! `kiroku.record_id` / `kiroku.seq`, and the journal's metrics, through the global
//! providers. kiroku installs no exporter: with none installed the spans are no-ops and
//! nothing leaves the process. `kiroku proxy --otlp-endpoint URL` installs OTLP/HTTP.
//!
//! The span starts when the request reaches the layer, as a child of the request's W3C
//! `traceparent` (or of the current OpenTelemetry context), so the record's
//! `trace.trace_id` / `trace.span_id` are the span's; it ends with the record's
//! `finished_at` once the journal has given the record its seq. Spans carry metadata
//! only, never bodies.

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use kiroku_schemas::digest::to_hex;
use kiroku_schemas::record::Outcome;
use kiroku_schemas::{AuditRecord, Timestamp};
use opentelemetry::global::{self, BoxedSpan};
use opentelemetry::metrics::{ObservableCounter, ObservableGauge};
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    Tracer as _,
};
use opentelemetry::{Context, KeyValue};

use crate::journal::Journal;

fn system_time(t: Timestamp) -> SystemTime {
    let n = t.unix_nanos();
    if n >= 0 { SystemTime::UNIX_EPOCH + Duration::from_nanos(n as u64) } else { SystemTime::UNIX_EPOCH }
}

fn parent_from_traceparent(headers: &HeaderMap) -> Option<SpanContext> {
    let tp = crate::caller::traceparent(headers)?;
    let (trace, span) = (TraceId::from_bytes(tp.trace_id), SpanId::from_bytes(tp.parent_id));
    Some(SpanContext::new(trace, span, TraceFlags::new(tp.flags), true, TraceState::default()))
}

/// Start the inference span; returns it with its (trace id, span id) in hex when valid.
pub(crate) fn start_span(headers: &HeaderMap, started_at: Timestamp) -> (BoxedSpan, Option<(String, String)>) {
    let parent = match parent_from_traceparent(headers) {
        Some(sc) => Context::new().with_remote_span_context(sc),
        None => Context::current(),
    };
    let tracer = global::tracer("kiroku");
    let span = tracer
        .span_builder("gen_ai inference")
        .with_kind(SpanKind::Server)
        .with_start_time(system_time(started_at))
        .start_with_context(&tracer, &parent);
    let sc = span.span_context();
    let ids = sc.is_valid().then(|| (to_hex(&sc.trace_id().to_bytes()), to_hex(&sc.span_id().to_bytes())));
    (span, ids)
}

/// Fill and end the span from the finished record (on the journal's writer thread).
pub(crate) fn end_span(mut span: BoxedSpan, rec: &AuditRecord) {
    if !span.is_recording() {
        return;
    }
    let g = &rec.gen_ai;
    let op = g.operation.name.as_deref().unwrap_or("inference");
    let model = g.request.model.as_deref().or(g.response.model.as_deref()).unwrap_or("unknown");
    span.update_name(format!("{op} {model}"));
    let mut a = vec![
        KeyValue::new("kiroku.record_id", rec.record_id.clone()),
        KeyValue::new("kiroku.chain_id", rec.chain_id.to_string()),
        KeyValue::new("kiroku.seq", i64::try_from(rec.seq).unwrap_or(i64::MAX)),
        KeyValue::new("kiroku.outcome", rec.http.outcome.as_str()),
        KeyValue::new("http.request.method", rec.http.method.clone()),
        KeyValue::new("http.route", rec.http.route.clone()),
        KeyValue::new("gen_ai.operation.name", op.to_owned()),
    ];
    let mut s = |k: &'static str, v: &Option<String>| {
        if let Some(v) = v {
            a.push(KeyValue::new(k, v.clone()));
        }
    };
    s("gen_ai.provider.name", &g.provider.name);
    s("gen_ai.request.model", &g.request.model);
    s("gen_ai.response.model", &g.response.model);
    s("gen_ai.response.id", &g.response.id);
    if let Some(st) = rec.http.status {
        a.push(KeyValue::new("http.response.status_code", i64::from(st)));
    }
    for (k, v) in [("gen_ai.request.temperature", g.request.temperature), ("gen_ai.request.top_p", g.request.top_p)] {
        if let Some(v) = v {
            a.push(KeyValue::new(k, v));
        }
    }
    for (k, v) in [
        ("gen_ai.request.max_tokens", g.request.max_tokens),
        ("gen_ai.usage.input_tokens", g.usage.input_tokens),
        ("gen_ai.usage.output_tokens", g.usage.output_tokens),
    ] {
        if let Some(v) = v {
            a.push(KeyValue::new(k, i64::try_from(v).unwrap_or(i64::MAX)));
        }
    }
    if let Some(seed) = g.request.seed {
        a.push(KeyValue::new("gen_ai.request.seed", seed));
    }
    if !g.response.finish_reasons.is_empty() {
        let v: Vec<opentelemetry::StringValue> = g.response.finish_reasons.iter().map(|r| r.clone().into()).collect();
        a.push(KeyValue::new("gen_ai.response.finish_reasons", opentelemetry::Value::Array(v.into())));
    }
    span.set_attributes(a);
    if rec.http.outcome != Outcome::Completed {
        span.set_attribute(KeyValue::new("error.type", rec.http.outcome.as_str()));
        span.set_status(Status::error(rec.http.error.clone().unwrap_or_else(|| rec.http.outcome.as_str().to_owned())));
    }
    span.end_with_timestamp(system_time(rec.finished_at));
}

/// Keeps the journal's observable instruments registered; drop it to stop reporting.
#[allow(dead_code)]
pub struct JournalInstruments {
    counters: Vec<ObservableCounter<u64>>,
    fsync: ObservableCounter<f64>,
    gauges: Vec<ObservableGauge<u64>>,
}

impl std::fmt::Debug for JournalInstruments {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JournalInstruments")
    }
}

/// Report the journal's counters through the global meter provider: records written,
/// bytes, records lost (and of those, the ones no record states yet), queue depth, fsync
/// count and time, segments sealed, requests refused.
pub fn register_journal_metrics(journal: &Journal) -> JournalInstruments {
    let meter = global::meter("kiroku");
    let counter =
        |name: &'static str, unit: &'static str, desc: &'static str, f: fn(&crate::journal::JournalMetrics) -> u64| {
            let j = journal.clone();
            meter
                .u64_observable_counter(name)
                .with_unit(unit)
                .with_description(desc)
                .with_callback(move |o| o.observe(f(&j.metrics()), &[]))
                .build()
        };
    let counters = vec![
        counter("kiroku.journal.records", "{record}", "Audit records written.", |m| m.records_written),
        counter("kiroku.journal.bytes", "By", "Bytes appended to segments.", |m| m.bytes_written),
        counter(
            "kiroku.journal.records_lost",
            "{record}",
            "Audit records that could not be written (FailOpen).",
            |m| m.records_lost,
        ),
        counter("kiroku.journal.fsyncs", "{call}", "fsync calls.", |m| m.fsyncs),
        counter("kiroku.journal.segments_sealed", "{segment}", "Segments sealed.", |m| m.segments_sealed),
        counter("kiroku.requests_refused", "{request}", "Requests refused with 503 under FailClosed.", |m| {
            m.requests_refused
        }),
    ];
    let j = journal.clone();
    let fsync = meter
        .f64_observable_counter("kiroku.journal.fsync.duration")
        .with_unit("s")
        .with_description("Time spent in fsync.")
        .with_callback(move |o| o.observe(j.metrics().fsync_nanos as f64 / 1e9, &[]))
        .build();
    let gauge = |name: &'static str, desc: &'static str, f: fn(&crate::journal::JournalMetrics) -> u64| {
        let j = journal.clone();
        meter
            .u64_observable_gauge(name)
            .with_unit("{record}")
            .with_description(desc)
            .with_callback(move |o| o.observe(f(&j.metrics()), &[]))
            .build()
    };
    let gauges = vec![
        gauge("kiroku.journal.queue_depth", "Records waiting for the writer.", |m| m.queue_depth),
        gauge(
            "kiroku.journal.records_lost_unstated",
            "Lost audit records no record in the chain states yet (it is the next record's records_lost_before).",
            |m| m.records_lost_unstated,
        ),
    ];
    JournalInstruments { counters, fsync, gauges }
}
