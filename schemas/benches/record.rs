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

mod records;

use divan::Bencher;
use kiroku_schemas::AuditRecord;
use kiroku_schemas::record::RecordView;

fn main() {
    divan::main();
}

fn payload() -> Vec<u8> {
    records::record().to_json()
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
