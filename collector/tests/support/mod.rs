//! Helpers shared by the collector's integration tests.

use std::path::Path;

/// Rewrite one archive file with `edit` applied to its batches (keeping its name).
pub fn rewrite(file: &Path, edit: impl Fn(arrow_array::RecordBatch) -> arrow_array::RecordBatch) {
    let input = std::fs::File::open(file).unwrap();
    let batches: Vec<_> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(input)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| edit(b.unwrap()))
        .collect();
    let out = std::fs::File::create(file).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(out, kiroku_collector::columns::schema(), None).unwrap();
    for b in &batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}
