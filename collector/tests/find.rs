//! `Archive::find` on files of many row groups and pages: the rows the filter's columns
//! select are the rows whose chain columns and payload come back, whatever page they sit
//! in (the payload is read through a row selection that skips the other pages).

use kiroku_collector::archive::{Archive, Filter};
use kiroku_collector::columns::{BatchBuilder, ChainRow, schema};
use kiroku_collector::compact::writer_properties;
use kiroku_collector::manifest::{ChainEntry, FileEntry, MANIFEST_VERSION, Manifest};
use kiroku_schemas::{AuditRecord, ChainId, Timestamp};
use parquet::arrow::ArrowWriter;

const ROWS: u64 = 30_000;
const PER_FILE: u64 = 12_000;
const MS: i64 = 1_000_000;

struct Generated {
    _dir: tempfile::TempDir,
    archive: Archive,
    payloads: Vec<Vec<u8>>,
    start: Timestamp,
}

fn record(seq: u64, start: Timestamp) -> AuditRecord {
    let mut r = AuditRecord::new(
        format!("01a2f1d0-0000-7000-8000-{seq:012x}"),
        Timestamp::from_unix_nanos(start.unix_nanos() + seq as i64 * MS),
    );
    r.chain_id = ChainId([4; 16]);
    r.seq = seq;
    r.http.method = "POST".into();
    r.http.route = "/v1/chat/completions".into();
    r.gen_ai.request.model = Some(["m-1", "m-2", "m-3"][(seq % 3) as usize].into());
    // A trace of ten records, so a trace spans pages.
    r.trace.trace_id = Some(format!("{:032x}", seq / 10));
    r.provenance.output_digest = Some(format!("{:064x}", seq * 31));
    // Payloads large enough that a row group holds many data pages.
    r.attributes.insert("pad".into(), "x".repeat(400 + (seq % 7) as usize));
    r
}

/// Three files of 12 000, 12 000 and 6 000 rows, row groups of 4 096 rows.
fn generate() -> Generated {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("archive");
    let chain = ChainId([4; 16]);
    let chain_s = chain.to_string();
    let start = Timestamp::from_unix_nanos(1_795_305_600_000_000_000);
    let mut entry = ChainEntry::genesis(chain);
    let mut payloads = Vec::new();
    for first in (0..ROWS).step_by(PER_FILE as usize) {
        let last = (first + PER_FILE).min(ROWS) - 1;
        let rel = format!("records/date={}/{chain_s}-{first}-{last}.parquet", start.date_string());
        let path = root.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut w = ArrowWriter::try_new(
            std::fs::File::create(&path).unwrap(),
            schema(),
            Some(writer_properties(4096, &chain_s)),
        )
        .unwrap();
        let mut b = BatchBuilder::default();
        for seq in first..=last {
            let payload = record(seq, start).to_json();
            let view = kiroku_schemas::record::RecordView::parse(&payload).unwrap();
            let hash = *blake3::hash(&payload).as_bytes();
            b.push(&chain_s, &ChainRow { seq, prev: &[0; 32], hash: &hash, payload: &payload }, &view);
            payloads.push(payload);
        }
        w.write(&b.finish().unwrap()).unwrap();
        let meta = w.close().unwrap();
        assert!(meta.num_row_groups() >= 2);
        entry.files.push(FileEntry {
            path: rel,
            first_seq: first,
            last_seq: last,
            rows: last + 1 - first,
            bytes: std::fs::metadata(&path).unwrap().len(),
            blake3: String::new(),
            date: start.date_string(),
        });
    }
    let mut m = Manifest { version: MANIFEST_VERSION, chains: Default::default() };
    m.chains.insert(chain_s, entry);
    m.save(&root).unwrap();
    Generated { archive: Archive::open(&root).unwrap(), payloads, start, _dir: dir }
}

/// The seqs `find` returns, each checked against the payload it was generated with.
fn found(g: &Generated, f: Filter) -> Vec<u64> {
    let rows = g.archive.find(&f).unwrap();
    for r in &rows {
        assert_eq!(r.payload, g.payloads[r.seq as usize], "seq {}: the payload of another row", r.seq);
        assert_eq!(r.hash, *blake3::hash(&r.payload).as_bytes());
    }
    rows.iter().map(|r| r.seq).collect()
}

#[test]
fn find_returns_exactly_the_matching_rows_with_their_own_payloads() {
    let g = generate();
    let at = |seq: u64| Some(Timestamp::from_unix_nanos(g.start.unix_nanos() + seq as i64 * MS));
    // First, last, and rows inside row groups and pages of every file.
    for seq in [0, 1, 4095, 4096, 9_999, 11_999, 12_000, 17_777, 29_999] {
        let id = format!("01a2f1d0-0000-7000-8000-{seq:012x}");
        assert_eq!(found(&g, Filter { record_id: Some(id), ..Filter::default() }), vec![seq]);
        let digest = format!("{:064x}", seq * 31);
        assert_eq!(found(&g, Filter { output_digest: Some(digest), ..Filter::default() }), vec![seq]);
    }
    assert!(
        found(&g, Filter { record_id: Some("01a2f1d0-0000-7000-8000-ffffffffffff".into()), ..Filter::default() })
            .is_empty()
    );
    // A trace across a row-group boundary.
    let trace = Filter { trace_id: Some(format!("{:032x}", 4090 / 10)), ..Filter::default() };
    assert_eq!(found(&g, trace), (4090..4100).collect::<Vec<_>>());
    // Model and time together: every third row of a window across two files.
    let window = Filter { model: Some("m-2".into()), from: at(11_000), to: at(13_000), ..Filter::default() };
    let want: Vec<u64> = (11_000..13_000).filter(|s| s % 3 == 1).collect();
    assert_eq!(found(&g, window), want);
    // No criteria: everything.
    assert_eq!(found(&g, Filter::default()).len(), ROWS as usize);
}
