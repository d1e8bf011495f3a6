//! A verified segment's records, parsed by whichever of compaction's two threads is free.
//!
//! The reader verifies a segment's frames (chain links, checkpoints) and keeps their
//! payloads; parsing the payloads into records is the larger half of its work, and the
//! writer sits idle while it happens. So parsing is split into chunks that either
//! thread claims: the reader starts on them at once, the writer joins as soon as it
//! has committed the previous segment, and the writer then waits for the last chunk in
//! flight. Each thread frees the records it parsed (glibc's allocator otherwise makes
//! the two contend for one arena lock).

use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use kiroku_schemas::{AuditRecord, ChainId, Hash};

/// Records per chunk: small enough that the two threads finish close together, large
/// enough that claiming one costs nothing next to parsing it.
const CHUNK: usize = 128;

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

/// The records of one chunk, or the first problem in it.
pub(super) struct Chunk {
    /// Who parsed it.
    pub side: Side,
    /// The records in frame order, or what is wrong with the first bad one.
    pub records: Result<Vec<AuditRecord>, String>,
}

struct Results {
    chunks: Vec<Option<Chunk>>,
    done: usize,
}

/// A segment's record frames and payloads, and the chunks parsed from them so far.
pub(super) struct Records {
    /// Frames in seq order.
    pub frames: Vec<Frame>,
    /// Every payload, back to back.
    pub payloads: Vec<u8>,
    segment: String,
    chain: ChainId,
    next: AtomicUsize,
    results: Mutex<Results>,
    all_done: Condvar,
}

impl Records {
    /// Frames of `segment` (of `chain`) whose payloads lie in `payloads`, none parsed yet.
    pub fn new(segment: &str, chain: ChainId, frames: Vec<Frame>, payloads: Vec<u8>) -> Self {
        let n = frames.len().div_ceil(CHUNK);
        Self {
            frames,
            payloads,
            segment: segment.to_owned(),
            chain,
            next: AtomicUsize::new(0),
            results: Mutex::new(Results { chunks: (0..n).map(|_| None).collect(), done: 0 }),
            all_done: Condvar::new(),
        }
    }

    /// The frame and payload buffers, emptied, for the next segment.
    pub fn into_buffers(self) -> (Vec<Frame>, Vec<u8>) {
        let (mut f, mut p) = (self.frames, self.payloads);
        f.clear();
        p.clear();
        (f, p)
    }

    fn lock(&self) -> MutexGuard<'_, Results> {
        self.results.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Claim and parse one chunk; false when none was left to claim.
    pub fn parse_one(&self, side: Side) -> bool {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        let frames = match self.frames.chunks(CHUNK).nth(i) {
            Some(f) => f,
            None => return false,
        };
        // A panic here would leave the other thread waiting for this chunk forever.
        let records =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| frames.iter().map(|f| self.parse(f)).collect()))
                .unwrap_or_else(|_| {
                    Err(format!("{}: parsing the records from seq {} panicked", self.segment, frames[0].seq))
                });
        let mut r = self.lock();
        r.chunks[i] = Some(Chunk { side, records });
        r.done += 1;
        if r.done == r.chunks.len() {
            self.all_done.notify_all();
        }
        true
    }

    fn parse(&self, f: &Frame) -> Result<AuditRecord, String> {
        let record = AuditRecord::from_json(&self.payloads[f.payload.clone()]).map_err(|e| {
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
        let mut r = self.lock();
        while r.done < r.chunks.len() {
            r = self.all_done.wait(r).unwrap_or_else(PoisonError::into_inner);
        }
        r.chunks.iter_mut().filter_map(Option::take).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiroku_schemas::Timestamp;

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
        let r = records(1000, None);
        let chunks = std::thread::scope(|s| {
            s.spawn(|| while r.parse_one(Side::Reader) {});
            r.finish(Side::Writer)
        });
        let ids: Vec<String> =
            chunks.iter().flat_map(|c| c.records.as_ref().unwrap().iter().map(|r| r.record_id.clone())).collect();
        assert_eq!(ids, (0..1000).map(|i| format!("id-{i}")).collect::<Vec<_>>());
        assert_eq!(chunks.len(), 1000usize.div_ceil(CHUNK));
    }

    #[test]
    fn a_record_that_contradicts_its_frame_is_named() {
        let chunks = records(300, Some(200)).finish(Side::Writer);
        let problem = chunks.iter().find_map(|c| c.records.as_ref().err()).unwrap();
        assert!(problem.contains("byte offset 20000 (seq 200)") && problem.contains("seq 201"), "{problem}");
    }
}
