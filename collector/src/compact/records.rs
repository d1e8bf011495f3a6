//! A segment's records, hashed, parsed and turned into Arrow columns by whichever of
//! compaction's two threads is free.
//!
//! The reader reads a segment's frames and keeps their payloads ([`super::reading`]);
//! computing each record's chain hash, reading the payloads ([`RecordView`]) and
//! appending them to the column builders is most of the work, and the writer would sit
//! idle while it happens. So that work is split into chunks that either thread claims:
//! the reader starts on them at once, the writer joins as soon as it has committed the
//! previous segment, and each then waits for the last chunk in flight. The reader
//! checks the computed hashes in order, chunk by chunk as the chunks are done, with the
//! links, the Merkle tree and the checkpoints; nothing is written before that verdict. A chunk's result is a
//! `RecordBatch` in frame order plus each row's start time, which is all the writer
//! needs to split by day and sort by time; nothing of a record outlives its chunk but
//! its columns, and each column is a handful of allocations per chunk, not one per text
//! field per record.

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use arrow_array::{BinaryArray, RecordBatch};
use arrow_buffer::{Buffer, OffsetBuffer};
use kiroku_schemas::record::RecordView;
use kiroku_schemas::segment::{ComputedHash, FrameKind, FrameRef};
use kiroku_schemas::{ChainId, Hash, Timestamp};

use crate::columns::{BatchBuilder, ChainRow};

/// Records per chunk: small enough that the two threads finish close together (a chunk
/// is a few milliseconds of work), large enough that claiming one, and writing its batch
/// to Parquet, costs little next to building it.
const CHUNK: usize = 1024;

/// A chunk also ends once its payloads reach this many bytes, so that its payload column
/// stays far within Arrow's 2 GiB (`i32` offsets) whatever the records' sizes.
const CHUNK_BYTES: usize = 256 << 20;

/// One record frame of a verified segment.
pub(super) struct Frame {
    /// Seq.
    pub seq: u64,
    /// Previous record hash.
    pub prev: Hash,
    /// Record hash.
    pub hash: Hash,
    /// Byte offset of the frame in its segment (for messages).
    pub offset: u64,
    /// Where the exact payload bytes lie in [`Records::payloads`].
    pub payload: Range<usize>,
}

/// Which thread parsed a chunk (and so frees it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Side {
    /// The thread that reads and verifies segments.
    Reader,
    /// The thread that writes Parquet and commits.
    Writer,
}

/// The rows of one chunk, or the first problem in it.
pub(super) struct Chunk {
    /// Who parsed it.
    pub side: Side,
    /// The rows in frame order, or what is wrong with the first bad record.
    pub rows: Result<Rows, String>,
}

/// A chunk's records as archive columns, in frame order.
pub(super) struct Rows {
    /// One row per record.
    pub batch: RecordBatch,
    /// Each row's `started_at` (the partition day and the sort key).
    pub started: Vec<Timestamp>,
}

/// A chunk's frame hashes, as far as they got.
enum Hashes {
    InFlight,
    Computed(Vec<ComputedHash>),
    /// The chunk panicked.
    Failed,
    /// Taken by the reader's checks.
    Taken,
}

struct Results {
    chunks: Vec<Option<Chunk>>,
    /// Each chunk's computed frame hashes, for the reader's checks.
    hashes: Vec<Hashes>,
    done: usize,
}

/// A segment's record frames and payloads, and the chunks parsed from them so far.
pub(super) struct Records {
    /// Frames in seq order.
    pub frames: Vec<Frame>,
    /// Every payload, back to back: the payload column of each chunk's batch is a slice
    /// of it (no copy, and no fresh pages for the kernel to zero per chunk).
    pub payloads: Buffer,
    /// The frames of each chunk.
    spans: Vec<Range<usize>>,
    segment: String,
    chain: ChainId,
    chain_text: String,
    next: AtomicUsize,
    results: Mutex<Results>,
    all_done: Condvar,
}

impl Records {
    /// Frames of `segment` (of `chain`) whose payloads lie in `payloads`, none parsed yet.
    pub fn new(segment: &str, chain: ChainId, frames: Vec<Frame>, payloads: Vec<u8>) -> Self {
        let mut spans = Vec::with_capacity(frames.len().div_ceil(CHUNK));
        let mut start = 0;
        for (i, f) in frames.iter().enumerate() {
            let bytes = f.payload.end - frames[start].payload.start;
            if i > start && (i - start == CHUNK || bytes > CHUNK_BYTES) {
                spans.push(start..i);
                start = i;
            }
        }
        if start < frames.len() {
            spans.push(start..frames.len());
        }
        let n = spans.len();
        Self {
            frames,
            payloads: Buffer::from_vec(payloads),
            spans,
            segment: segment.to_owned(),
            chain,
            chain_text: chain.to_string(),
            next: AtomicUsize::new(0),
            results: Mutex::new(Results {
                chunks: (0..n).map(|_| None).collect(),
                hashes: (0..n).map(|_| Hashes::InFlight).collect(),
                done: 0,
            }),
            all_done: Condvar::new(),
        }
    }

    /// The chain the frames belong to.
    pub fn chain(&self) -> ChainId {
        self.chain
    }

    /// The frame and payload buffers, emptied, for the next segment.
    pub fn into_buffers(self) -> (Vec<Frame>, Vec<u8>) {
        // The payload buffer comes back once no batch holds a slice of it any more.
        let (mut f, mut p) = (self.frames, self.payloads.into_vec::<u8>().unwrap_or_default());
        f.clear();
        p.clear();
        (f, p)
    }

    fn lock(&self) -> MutexGuard<'_, Results> {
        self.results.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claim one chunk, hash its frames and build its rows; false when none was left.
    pub fn parse_one(&self, side: Side) -> bool {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let Some(frames) = self.spans.get(i).map(|r| &self.frames[r.clone()]) else {
            return false;
        };
        // A panic here would leave the other thread waiting for this chunk forever.
        let work = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let refs: Vec<FrameRef<'_>> = frames.iter().map(|f| self.frame_ref(f)).collect();
            let hashes = ComputedHash::of_all(&self.chain, &refs);
            (hashes, self.build(frames))
        }));
        let (hashes, rows) = match work {
            Ok((h, rows)) => (Some(h), rows),
            Err(_) => (None, Err(format!("{}: parsing the records from seq {} panicked", self.segment, frames[0].seq))),
        };
        let mut r = self.lock();
        r.chunks[i] = Some(Chunk { side, rows });
        r.hashes[i] = hashes.map_or(Hashes::Failed, Hashes::Computed);
        r.done += 1;
        if r.done == r.chunks.len() {
            self.all_done.notify_all();
        }
        true
    }

    /// A record frame as the segment reader gave it.
    pub fn frame_ref<'s>(&'s self, f: &Frame) -> FrameRef<'s> {
        FrameRef {
            offset: f.offset,
            kind: FrameKind::Record,
            seq: f.seq,
            prev: f.prev,
            payload: &self.payloads[f.payload.clone()],
            hash: f.hash,
        }
    }

    /// Take the computed hashes of the chunks from `from` on that are done, up to the
    /// first that is not (with `wait`, wait until every chunk is done first): the hashes
    /// in frame order and the next chunk to take from; `None` when a chunk could not
    /// compute them.
    pub fn take_hashes_from(&self, from: usize, wait: bool) -> Option<(Vec<ComputedHash>, usize)> {
        let mut r = if wait { self.wait_all() } else { self.lock() };
        let mut out = Vec::new();
        let mut next = from;
        while let Some(slot) = r.hashes.get_mut(next) {
            match std::mem::replace(slot, Hashes::Taken) {
                Hashes::Computed(h) => out.extend(h),
                Hashes::Failed => return None,
                // Not done yet (or, never, taken twice): stop here.
                other => {
                    *slot = other;
                    break;
                }
            }
            next += 1;
        }
        Some((out, next))
    }

    fn wait_all(&self) -> MutexGuard<'_, Results> {
        let mut r = self.lock();
        while r.done < r.chunks.len() {
            r = self.all_done.wait(r).unwrap_or_else(PoisonError::into_inner);
        }
        r
    }

    /// Read each frame's record and append it to the columns of one batch.
    fn build(&self, frames: &[Frame]) -> Result<Rows, String> {
        let mut b = BatchBuilder::with_capacity(frames.len(), 0);
        let mut started = Vec::with_capacity(frames.len());
        for f in frames {
            let payload = &self.payloads[f.payload.clone()];
            let record = self.read(f, payload)?;
            started.push(record.started_at);
            b.push_projected(
                &self.chain_text,
                &ChainRow { seq: f.seq, prev: &f.prev, hash: &f.hash, payload },
                &record,
            );
        }
        let err = |e: &dyn std::fmt::Display| {
            format!("{}: building the columns of the records from seq {}: {e}", self.segment, frames[0].seq)
        };
        let batch = b.finish_with_payloads(self.payload_column(frames).map_err(|e| err(&e))?).map_err(|e| err(&e))?;
        Ok(Rows { batch, started })
    }

    /// The chunk's payloads as a binary column over the segment's payload buffer (its
    /// frames' payloads lie back to back there).
    fn payload_column(&self, frames: &[Frame]) -> Result<BinaryArray, arrow_schema::ArrowError> {
        let base = frames.first().map_or(0, |f| f.payload.start);
        let mut end = base;
        let mut offsets = Vec::with_capacity(frames.len() + 1);
        offsets.push(0i32);
        for f in frames {
            if f.payload.start != end {
                return Err(arrow_schema::ArrowError::ComputeError("payloads not back to back".into()));
            }
            end = f.payload.end;
            offsets.push(
                i32::try_from(end - base)
                    .map_err(|_| arrow_schema::ArrowError::ComputeError("payloads over 2 GiB".into()))?,
            );
        }
        BinaryArray::try_new(OffsetBuffer::new(offsets.into()), self.payloads.slice_with_length(base, end - base), None)
    }

    fn read<'p>(&self, f: &Frame, payload: &'p [u8]) -> Result<RecordView<'p>, String> {
        let record = RecordView::parse(payload).map_err(|e| {
            format!("{}: byte offset {} (seq {}): record is not a valid v1 record: {e}", self.segment, f.offset, f.seq)
        })?;
        if record.seq != f.seq || record.chain_id != self.chain {
            return Err(format!(
                "{}: byte offset {} (seq {}): record says chain {} seq {}, its frame says chain {} seq {}",
                self.segment, f.offset, f.seq, record.chain_id, record.seq, self.chain, f.seq
            ));
        }
        Ok(record)
    }

    /// Parse whatever is left, wait for chunks another thread is still parsing, and take
    /// every chunk, in frame order.
    pub fn finish(&self, side: Side) -> Vec<Chunk> {
        while self.parse_one(side) {}
        self.wait_all().chunks.iter_mut().filter_map(Option::take).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use kiroku_schemas::AuditRecord;

    fn records(n: u64, bad: Option<u64>) -> Records {
        let chain = ChainId([3; 16]);
        let (mut frames, mut payloads) = (Vec::new(), Vec::new());
        for seq in 0..n {
            let mut r = AuditRecord::new(format!("id-{seq}"), Timestamp::from_unix_nanos(0));
            (r.chain_id, r.seq) = (chain, if Some(seq) == bad { seq + 1 } else { seq });
            let at = payloads.len();
            r.write_json(&mut payloads);
            frames.push(Frame { seq, prev: [0; 32], hash: [0; 32], offset: seq * 100, payload: at..payloads.len() });
        }
        Records::new("s.seg", chain, frames, payloads)
    }

    #[test]
    fn two_threads_parse_every_record_once_in_order() {
        let n = 3 * CHUNK as u64 + 7;
        let r = records(n, None);
        let chunks = std::thread::scope(|s| {
            s.spawn(|| while r.parse_one(Side::Reader) {});
            r.finish(Side::Writer)
        });
        let mut ids = Vec::new();
        for c in &chunks {
            let rows = c.rows.as_ref().unwrap();
            let col = rows.batch.column_by_name("record_id").unwrap().as_string::<i32>();
            ids.extend(col.iter().map(|v| v.unwrap().to_owned()));
            assert_eq!(rows.started.len(), rows.batch.num_rows());
        }
        assert_eq!(ids, (0..n).map(|i| format!("id-{i}")).collect::<Vec<_>>());
        assert_eq!(chunks.len(), n.div_ceil(CHUNK as u64) as usize);
    }

    #[test]
    fn a_record_that_contradicts_its_frame_is_named() {
        let bad = CHUNK as u64 + 200;
        let chunks = records(bad + 100, Some(bad)).finish(Side::Writer);
        let problem = chunks.iter().find_map(|c| c.rows.as_ref().err()).unwrap();
        let at = format!("byte offset {} (seq {bad})", bad * 100);
        assert!(problem.contains(&at) && problem.contains(&format!("seq {}", bad + 1)), "{problem}");
    }
}
