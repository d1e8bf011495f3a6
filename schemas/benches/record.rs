//! Reading stored records: into the owned `AuditRecord` against a borrowed `RecordView`
//! (which reads the journal's own shape in one pass and leaves anything else to serde),
//! with the JSON scan alone (`serde::de::IgnoredAny`) as the same-run baseline, and the
//! view through serde alone (a payload with one space added, which the one-pass
//! reading leaves to serde).
//!
//! `cargo bench -p kiroku-schemas --bench record`
//!
//! The record is shaped like the collector's compaction bench: a chat completion with
//! usage, one output source, one watermark and two attributes (1,136 bytes of JSON).

use divan::Bencher;
use kiroku_schemas::record::{OutputSource, RecordView, Watermark};
use kiroku_schemas::{AuditRecord, Timestamp};

fn main() {
    divan::main();
}

fn payload() -> Vec<u8> {
    let mut r = AuditRecord::new("01a2c0de-0000-7000-8000-000000000042", Timestamp::now());
    r.chain_id = "01a23027-b94e-7521-8aa5-a65adf466f00".parse().expect("chain id");
    r.seq = 42;
    r.http.method = "POST".into();
    r.http.route = "/v1/chat/completions".into();
    r.http.status = Some(200);
    r.http.response.bytes = 2048;
    r.http.response.blake3 = Some("71".repeat(32));
    r.gen_ai.request.model = Some("sample-1".into());
    r.gen_ai.response.model = r.gen_ai.request.model.clone();
    r.gen_ai.usage.input_tokens = Some(100);
    r.gen_ai.usage.output_tokens = Some(200);
    r.gen_ai.response.finish_reasons = vec!["stop".into()];
    r.trace.trace_id = Some(format!("{:032x}", 42 * 7919));
    r.provenance.output_digest = Some("9c".repeat(32));
    r.output_sources.push(OutputSource {
        uri: "https://docs.example.jp/doc/42".into(),
        rights_holder: Some("Example KK".into()),
        score: Some(0.8),
        ..Default::default()
    });
    r.watermarks.push(Watermark {
        scheme: "metadata-header".into(),
        key_id: Some("wm-2026".into()),
        ..Default::default()
    });
    r.attributes.insert("tenant".into(), "tenant-2".into());
    r.attributes.insert("pad".into(), "x".repeat(120));
    r.to_json()
}

#[divan::bench]
fn baseline_scan_only(b: Bencher<'_, '_>) {
    let p = payload();
    b.bench(|| serde_json::from_slice::<serde::de::IgnoredAny>(divan::black_box(&p)).is_ok());
}

#[divan::bench]
fn owned_audit_record(b: Bencher<'_, '_>) {
    let p = payload();
    b.bench(|| AuditRecord::from_json(divan::black_box(&p)).is_ok());
}

#[divan::bench]
fn borrowed_record_view(b: Bencher<'_, '_>) {
    let p = payload();
    b.bench(|| RecordView::parse(divan::black_box(&p)).is_ok());
}

#[divan::bench]
fn borrowed_record_view_through_serde(b: Bencher<'_, '_>) {
    // One space after the first comma: not the journal's shape, so serde reads it.
    let p = String::from_utf8(payload()).expect("JSON").replacen(',', ", ", 1).into_bytes();
    b.bench(|| RecordView::parse(divan::black_box(&p)).is_ok());
}
