//! Records reach the journal in the order their exchanges end, not the order they
//! started: `kiroku compact` must still write each day's file sorted by `started_at`
//! (then seq), every record exactly once, in the right partition, whatever the order
//! within and across the chunks it parses them in.

use std::collections::BTreeMap;
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Int64Type, TimestampMicrosecondType};
use kiroku::{Durability, Journal, JournalConfig};
use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::{AuditRecord, Timestamp};

mod support;
use support::{files_under, kiroku, text};

/// Start offsets (ms from a base just before midnight) in append order: a long run in
/// time order, stretches appended newest first, records that finished long after
/// records started later, and a midnight crossed back and forth.
fn start_offsets(n: i64) -> Vec<i64> {
    (0..n)
        .map(|i| match i {
            // In order: slices of the parsed chunks, no gathering.
            0..3000 => i * 10,
            // Newest first, 200 at a time: every row gathered.
            3000..5000 => {
                let block = (i - 3000) / 200;
                30_000 + block * 2_000 + (199 - (i - 3000) % 200) * 10
            }
            // Two interleaved sequences that straddle midnight (at 60 s from the base).
            _ if i % 2 == 0 => 50_000 + (i - 5000) * 7,
            _ => 40_000 + (i - 5000) * 13,
        })
        .collect()
}

#[test]
fn files_are_sorted_by_time_whatever_the_append_order() {
    let dir = tempfile::tempdir().unwrap();
    let signer = NoteSigner::generate("order-test").unwrap();
    std::fs::write(dir.path().join("signer.vkey"), signer.verifier().to_key_text()).unwrap();
    // 60 s before midnight UTC, 2026-12-01.
    let midnight = Timestamp::from_unix_nanos(1_796_083_200 * 1_000_000_000);
    assert_eq!(midnight.date_string(), "2026-12-01");
    let base = midnight.unix_nanos() - 60_000_000_000;
    let offsets = start_offsets(9000);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // Two segments of a few thousand records each: several parse chunks per segment.
        let cfg = JournalConfig::new(dir.path().join("spool"), signer)
            .durability(Durability::Buffered)
            .segment_max_bytes(2 << 20)
            .writer_name("order");
        let j = Journal::open(cfg).unwrap();
        for (i, off) in offsets.iter().enumerate() {
            let mut r = AuditRecord::new(format!("id-{i:05}"), Timestamp::from_unix_nanos(base + off * 1_000_000));
            r.http.method = "POST".into();
            r.http.route = "/v1/chat/completions".into();
            r.gen_ai.request.model = Some(format!("m-{}", i % 3));
            r.output_sources.push(kiroku_schemas::record::OutputSource {
                uri: format!("https://example.org/{i}"),
                ..Default::default()
            });
            r.attributes.insert("i".into(), i.to_string());
            j.append(r).await.unwrap();
        }
        j.shutdown().await.unwrap();
    });
    let spool = dir.path().join("spool");
    let archive = dir.path().join("archive");
    let key = dir.path().join("signer.vkey");
    let (spool, archive, key) = (spool.to_str().unwrap(), archive.to_str().unwrap(), key.to_str().unwrap());
    let o = kiroku(&["compact", "--spool", spool, "--archive", archive, "--pubkey", key]);
    assert!(o.status.success(), "{}", text(&o));

    let mut seen: BTreeMap<i64, (i64, String)> = BTreeMap::new();
    let files = files_under(Path::new(archive), "parquet");
    let mut dates = Vec::new();
    for f in &files {
        let date = f.parent().unwrap().file_name().unwrap().to_str().unwrap().trim_start_matches("date=").to_owned();
        dates.push(date.clone());
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(f).unwrap())
                .unwrap()
                .build()
                .unwrap();
        let mut last: Option<(i64, i64)> = None;
        for batch in reader {
            let batch = batch.unwrap();
            let seq = batch.column_by_name("seq").unwrap().as_primitive::<Int64Type>();
            let at = batch.column_by_name("started_at").unwrap().as_primitive::<TimestampMicrosecondType>();
            let id = batch.column_by_name("record_id").unwrap().as_string::<i32>();
            let attr = batch.column_by_name("attributes").unwrap().as_map();
            for row in 0..batch.num_rows() {
                let key = (at.value(row), seq.value(row));
                assert!(last.is_none_or(|l| l < key), "{}: row {row} out of order: {last:?} then {key:?}", f.display());
                last = Some(key);
                let day = Timestamp::from_unix_nanos(at.value(row) * 1000).date_string();
                assert_eq!(day, date, "{}: a record of {day} in the partition of {date}", f.display());
                // The projected columns of a row belong to that row's record.
                let i: usize = id.value(row)[3..].parse().unwrap();
                assert_eq!(i as i64, seq.value(row), "record id and seq of one row");
                assert_eq!(at.value(row), (base + offsets[i] * 1_000_000) / 1000);
                let values = attr.value(row);
                assert_eq!(values.column(1).as_string::<i32>().value(0), i.to_string());
                assert!(seen.insert(seq.value(row), (at.value(row), f.display().to_string())).is_none(), "seq twice");
            }
        }
    }
    assert_eq!(seen.len(), offsets.len(), "every record exactly once");
    dates.sort();
    dates.dedup();
    assert_eq!(dates, ["2026-11-30", "2026-12-01"]);
    let o = kiroku(&["verify", "--archive", archive, "--pubkey", key]);
    assert!(o.status.success(), "{}", text(&o));
    // The two days' files hold interleaved seqs; find still lists the chain in seq order.
    let o = kiroku(&["find", "--archive", archive, "--from", "2000-01-01", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let seqs: Vec<u64> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| kiroku_schemas::AuditRecord::from_json(l.as_bytes()).unwrap().seq)
        .collect();
    assert_eq!(seqs, (0..offsets.len() as u64).collect::<Vec<_>>());
}
