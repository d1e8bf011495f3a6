//! Encoding one archive file: record batches in, row groups out, optionally with the
//! payload column encoded on a second thread.
//!
//! Compressing the payload column (about 1.1 KB of JSON per row) is the largest single
//! piece of a file's encoding. The run's last file is written while the reading thread
//! has nothing left to read, so there the payload column goes to a helper thread on the
//! idle core while this one encodes the others. Either way the file is written by the
//! same Parquet column writers, fed the same batches in the same order as
//! [`parquet::arrow::ArrowWriter`] feeds them, and is byte for byte the file
//! `ArrowWriter` writes (tested). Elsewhere in a run both cores are busy already, and a
//! third thread measured no faster.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::{ArrowColumnChunk, ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::errors::ParquetError;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;

/// The top-level columns a helper thread encodes.
const HELPER_COLUMNS: [&str; 1] = ["payload"];

/// Batches queued for the helper: each is a handful of `Arc`s; the bound only keeps the
/// two threads in step.
const QUEUE: usize = 4;

enum ToHelper {
    /// The helper's column writers for the next row group.
    Start(Vec<ArrowColumnWriter>),
    Batch(RecordBatch),
    /// Close the row group's writers and send their chunks back.
    Close,
}

type Chunks = Result<Vec<ArrowColumnChunk>, ParquetError>;

/// The helper's side of the channels.
struct Link {
    to_helper: SyncSender<ToHelper>,
    from_helper: Receiver<Chunks>,
}

/// A Parquet file being written from record batches of one schema.
pub(super) struct FileEncoder<W: Write + Send> {
    file: SerializedFileWriter<W>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    /// For each leaf column in file order: encoded by the helper.
    helper_leaf: Vec<bool>,
    /// The top-level columns encoded on this thread.
    mine: Vec<usize>,
    max_rows: usize,
    /// This thread's writers of the row group in progress, and its rows so far.
    group: Option<(Vec<ArrowColumnWriter>, usize)>,
    helper: Option<Link>,
}

/// What runs on the helper thread; see [`FileEncoder::with_helper`].
pub(super) struct Helper {
    schema: SchemaRef,
    fields: Vec<usize>,
    from_main: Receiver<ToHelper>,
    to_main: SyncSender<Chunks>,
}

impl Helper {
    /// Encode the helper's columns until the encoder is dropped.
    pub(super) fn run(self) {
        let mut writers = Vec::new();
        let mut failed = None;
        for msg in self.from_main {
            match msg {
                ToHelper::Start(w) => (writers, failed) = (w, None),
                ToHelper::Batch(b) => {
                    if failed.is_none() {
                        failed = write_fields(&self.schema, &self.fields, &b, &mut writers).err();
                    }
                }
                ToHelper::Close => {
                    let chunks = match failed.take() {
                        Some(e) => Err(e),
                        None => std::mem::take(&mut writers).into_iter().map(ArrowColumnWriter::close).collect(),
                    };
                    if self.to_main.send(chunks).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

impl<W: Write + Send> FileEncoder<W> {
    /// An encoder writing to `out` on this thread alone. Row groups hold at most the
    /// properties' maximum row count, as with `ArrowWriter`.
    pub(super) fn new(out: W, schema: SchemaRef, props: WriterProperties) -> Result<Self, ParquetError> {
        let max_rows = props.max_row_group_row_count().unwrap_or(usize::MAX).max(1);
        let (file, factory) = ArrowWriter::try_new(out, schema.clone(), Some(props))?.into_serialized_writer()?;
        let helper_leaf = vec![false; file.schema_descr().num_columns()];
        let mine = (0..schema.fields().len()).collect();
        Ok(Self { file, factory, schema, helper_leaf, mine, max_rows, group: None, helper: None })
    }

    /// An encoder whose payload column is encoded by the returned [`Helper`], to be run
    /// on another thread while the encoder is used (it returns when the encoder is
    /// dropped).
    pub(super) fn with_helper(
        out: W,
        schema: SchemaRef,
        props: WriterProperties,
    ) -> Result<(Self, Helper), ParquetError> {
        let mut enc = Self::new(out, schema.clone(), props)?;
        let on_helper = |f: &usize| HELPER_COLUMNS.contains(&schema.field(*f).name().as_str());
        let (fields, mine): (Vec<usize>, Vec<usize>) = enc.mine.iter().partition(|f| on_helper(f));
        enc.mine = mine;
        for (leaf, on) in enc.file.schema_descr().columns().iter().zip(enc.helper_leaf.iter_mut()) {
            *on = leaf.path().parts().first().is_some_and(|root| HELPER_COLUMNS.contains(&root.as_str()));
        }
        let (to_helper, from_main) = sync_channel(QUEUE);
        let (to_main, from_helper) = sync_channel(1);
        enc.helper = Some(Link { to_helper, from_helper });
        Ok((enc, Helper { schema, fields, from_main, to_main }))
    }

    /// Append `batch`, starting a new row group wherever the current one is full.
    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<(), ParquetError> {
        let mut rest = batch.clone();
        while rest.num_rows() > 0 {
            let (mut writers, rows) = match self.group.take() {
                Some(g) => g,
                None => (self.start_group()?, 0),
            };
            let take = rest.num_rows().min(self.max_rows - rows);
            let piece = rest.slice(0, take);
            rest = rest.slice(take, rest.num_rows() - take);
            self.send(|| ToHelper::Batch(piece.clone()))?;
            write_fields(&self.schema, &self.mine, &piece, &mut writers)?;
            if rows + take >= self.max_rows {
                self.close_group(writers)?;
            } else {
                self.group = Some((writers, rows + take));
            }
        }
        Ok(())
    }

    /// Write the last row group and the footer.
    pub(super) fn finish(mut self) -> Result<(), ParquetError> {
        if let Some((writers, _)) = self.group.take() {
            self.close_group(writers)?;
        }
        self.file.close()?;
        Ok(())
    }

    fn start_group(&mut self) -> Result<Vec<ArrowColumnWriter>, ParquetError> {
        let all = self.factory.create_column_writers(self.file.flushed_row_groups().len())?;
        let (mut mine, mut theirs) = (Vec::new(), Vec::new());
        for (w, &helper) in all.into_iter().zip(&self.helper_leaf) {
            if helper { theirs.push(w) } else { mine.push(w) }
        }
        self.send(move || ToHelper::Start(theirs))?;
        Ok(mine)
    }

    fn close_group(&mut self, writers: Vec<ArrowColumnWriter>) -> Result<(), ParquetError> {
        self.send(|| ToHelper::Close)?;
        let mine: Vec<ArrowColumnChunk> =
            writers.into_iter().map(ArrowColumnWriter::close).collect::<Result<_, _>>()?;
        let theirs = match &self.helper {
            Some(link) => link.from_helper.recv().map_err(|_| helper_gone())??,
            None => Vec::new(),
        };
        let (mut mine, mut theirs) = (mine.into_iter(), theirs.into_iter());
        let mut group = self.file.next_row_group()?;
        for &helper in &self.helper_leaf {
            let chunk = if helper { theirs.next() } else { mine.next() };
            chunk
                .ok_or_else(|| ParquetError::General("a column chunk is missing".into()))?
                .append_to_row_group(&mut group)?;
        }
        group.close()?;
        Ok(())
    }

    /// Send the helper a message, if there is a helper.
    fn send(&self, msg: impl FnOnce() -> ToHelper) -> Result<(), ParquetError> {
        match &self.helper {
            Some(link) => link.to_helper.send(msg()).map_err(|_| helper_gone()),
            None => Ok(()),
        }
    }
}

fn helper_gone() -> ParquetError {
    ParquetError::General("the column encoding thread stopped".into())
}

/// Encode the top-level columns `fields` of `batch` with `writers` (theirs, in leaf order).
fn write_fields(
    schema: &SchemaRef,
    fields: &[usize],
    batch: &RecordBatch,
    writers: &mut [ArrowColumnWriter],
) -> Result<(), ParquetError> {
    let mut writers = writers.iter_mut();
    for &f in fields {
        for leaf in compute_leaves(schema.field(f), batch.column(f))? {
            let w = writers.next().ok_or_else(|| ParquetError::General("fewer column writers than leaves".into()))?;
            w.write(&leaf)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::columns::{self, BatchBuilder, ChainRow};
    use kiroku_schemas::record::{OutputSource, RecordView};
    use kiroku_schemas::{AuditRecord, Timestamp};

    fn batch(from: u64, n: u64) -> RecordBatch {
        let mut b = BatchBuilder::default();
        for seq in from..from + n {
            let mut r = AuditRecord::new(format!("id-{seq}"), Timestamp::from_unix_nanos(seq as i64 * 1_000_000));
            r.gen_ai.request.model = Some(format!("m{}", seq % 3));
            r.output_sources.push(OutputSource { uri: format!("u{seq}"), ..Default::default() });
            r.attributes.insert("k".into(), "v".repeat(seq as usize % 40));
            let payload = r.to_json();
            let view = RecordView::parse(&payload).unwrap();
            let row = ChainRow { seq, prev: &[1; 32], hash: &[2; 32], payload: &payload };
            b.push("chain", &row, &view);
        }
        b.finish().unwrap()
    }

    fn props(rows: usize) -> WriterProperties {
        crate::compact::writer_properties(rows, "chain")
    }

    /// Batches that straddle row groups, and one that fills one exactly.
    fn batches() -> Vec<RecordBatch> {
        vec![batch(0, 70), batch(70, 250), batch(320, 30), batch(350, 100), batch(450, 1)]
    }

    fn write_all(mut enc: FileEncoder<&mut Vec<u8>>) {
        for b in batches() {
            enc.write(&b).unwrap();
        }
        enc.finish().unwrap();
    }

    #[test]
    fn the_file_is_the_one_arrow_writer_writes_with_or_without_a_helper() {
        for rows in [100, 1_000] {
            let mut expected = Vec::new();
            let mut w = ArrowWriter::try_new(&mut expected, columns::schema(), Some(props(rows))).unwrap();
            for b in batches() {
                w.write(&b).unwrap();
            }
            w.close().unwrap();
            assert!(expected.len() > 10_000);

            let mut alone = Vec::new();
            write_all(FileEncoder::new(&mut alone, columns::schema(), props(rows)).unwrap());
            let mut helped = Vec::new();
            std::thread::scope(|s| {
                let (enc, helper) = FileEncoder::with_helper(&mut helped, columns::schema(), props(rows)).unwrap();
                s.spawn(|| helper.run());
                write_all(enc);
            });
            for (how, got) in [("alone", &alone), ("helped", &helped)] {
                assert!(
                    got == &expected,
                    "{how}, {rows} rows per group: {} bytes, ArrowWriter {}",
                    got.len(),
                    expected.len()
                );
            }
        }
    }

    #[test]
    fn a_helper_that_is_gone_is_an_error_not_a_hang() {
        let mut out = Vec::new();
        let (mut enc, helper) = FileEncoder::with_helper(&mut out, columns::schema(), props(100)).unwrap();
        drop(helper);
        let err = enc.write(&batch(0, 10)).unwrap_err();
        assert!(err.to_string().contains("column encoding thread stopped"), "{err}");
    }
}
