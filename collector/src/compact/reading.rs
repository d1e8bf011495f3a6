//! Reading a segment for compaction, and its verdict.
//!
//! [`read`] makes one pass over the file: it checks the header against the chain so far
//! and the framing (heads, lengths, a torn tail), hashes the whole file for the
//! manifest, and keeps the record frames and their payloads. It does not hash the
//! frames: the chain hash of every record is computed with its parsing
//! ([`super::records`]), on whichever thread is free, since it does not depend on the
//! frames before it. Then [`Pending::verify`] runs, on the reader, the checks that do:
//! seqs, links, the Merkle tree, checkpoint signatures, the seal, with those hashes, and
//! publishes the verdict. These are `SegmentVerifier`'s checks with the same errors in
//! the same file order as verifying in one pass (kiroku-schemas tests both ways on every
//! corruption it generates); nothing of a segment is written before its verdict.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use kiroku_schemas::digest::to_hex;
use kiroku_schemas::segment::{
    self, ChainState, ComputedHash, FrameKind, Mode, Problem, SegmentError, SegmentReader, SegmentVerifier,
    VerifyOptions,
};

use super::CompactOptions;
use super::records::{Frame, Records};
use crate::error::CliError;
use crate::spool::{SegmentRef, SpoolStore};

/// A segment being compacted, shared by both threads: its frames and payloads (hashed
/// and parsed by [`Records`]), and the verdict once the reader has checked it.
pub(super) struct Segment {
    /// blake3 of the whole file.
    pub digest: String,
    /// Its record frames, payloads and parsed chunks.
    pub records: Records,
    verdict: Mutex<Option<Result<Verdict, String>>>,
    decided: Condvar,
}

/// What a verified segment ends in.
#[derive(Clone)]
pub(super) struct Verdict {
    /// The chain state after its last record.
    pub end: ChainState,
    /// The note of its last checkpoint or seal.
    pub last_checkpoint: Option<String>,
    /// A torn final frame (open segments): its offset and the bytes of it present.
    pub torn_tail: Option<(u64, u64)>,
    /// Bytes of valid content.
    pub bytes: u64,
}

impl Segment {
    fn decide(&self, v: Result<Verdict, String>) {
        *self.lock() = Some(v);
        self.decided.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Option<Result<Verdict, String>>> {
        self.verdict.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait for the reader's verdict: the segment verified, or the first problem in it.
    pub fn verdict(&self) -> Result<Verdict, String> {
        let mut v = self.lock();
        loop {
            if let Some(v) = v.as_ref() {
                return v.clone();
            }
            v = self.decided.wait(v).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// What the reader keeps of a segment until its chunks are hashed: the verifier, the
/// checkpoint and seal frames, and where reading stopped.
pub(super) struct Pending {
    name: String,
    verifier: SegmentVerifier,
    /// Checkpoint and seal frames, each with the number of record frames before it.
    others: Vec<(usize, segment::Frame)>,
    /// The offset after the last complete frame.
    end: u64,
    /// What stopped the reading before the end of the file: a torn tail, or a problem
    /// that is reported if every frame before it checks out.
    stop: Option<SegmentError>,
}

/// Read a segment (see the module docs); `Ok(Err(message))` is a problem with its
/// header (the segment is quarantined; a problem with its frames is kept for the
/// verdict, so that an earlier bad frame is reported first), `Err` an I/O error.
pub(super) fn read(
    spool: &dyn SpoolStore,
    seg: &SegmentRef,
    state: &ChainState,
    opts: &CompactOptions,
    buffers: (Vec<Frame>, Vec<u8>),
) -> Result<Result<(Arc<Segment>, Pending), String>, CliError> {
    let mode = if seg.sealed { Mode::Sealed } else { Mode::Open };
    let vopts = VerifyOptions {
        mode,
        verifier: Some(opts.verifier.clone()),
        chain_id: Some(state.chain_id),
        previous: Some(state.clone()),
    };
    let hasher = Arc::new(Mutex::new(blake3::Hasher::new()));
    // Hash in the large reads that fill this buffer, not in the reader's frame-sized
    // ones: blake3 is several times faster on whole 1 KiB chunks fed together.
    let input =
        io::BufReader::with_capacity(1 << 20, HashingReader { inner: spool.read(seg)?, hasher: hasher.clone() });
    let mut reader = match SegmentReader::open(input) {
        Ok(r) => r,
        Err(e) => return Ok(Err(e.in_file(&seg.name).to_string())),
    };
    let verifier = match SegmentVerifier::new(reader.header(), vopts) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e.in_file(&seg.name).to_string())),
    };
    let (mut frames, mut payloads) = buffers;
    let mut others = Vec::new();
    let stop = loop {
        let frame = match reader.next_frame_ref() {
            Ok(Some(f)) => f,
            Ok(None) => break None,
            Err(e) => {
                if let Problem::Io(msg) = &e.problem {
                    return Err(CliError::Io(format!("{}: {msg}", seg.name)));
                }
                break Some(e);
            }
        };
        if frame.kind != FrameKind::Record {
            others.push((frames.len(), frame.to_owned()));
            continue;
        }
        let at = payloads.len();
        payloads.extend_from_slice(frame.payload);
        let payload = at..payloads.len();
        frames.push(Frame { seq: frame.seq, prev: frame.prev, hash: frame.hash, offset: frame.offset, payload });
    };
    let end = reader.offset();
    // Hash what follows the last frame too (a torn tail), so the digest is the file's.
    let _ = io::copy(&mut reader.into_inner(), &mut io::sink());
    let digest = hasher.lock().map(|h| to_hex(h.finalize().as_bytes())).unwrap_or_default();
    let segment = Segment {
        digest,
        records: Records::new(&seg.name, state.chain_id, frames, payloads),
        verdict: Mutex::new(None),
        decided: Condvar::new(),
    };
    Ok(Ok((Arc::new(segment), Pending { name: seg.name.clone(), verifier, others, end, stop })))
}

impl Pending {
    /// Check every frame in file order with the hashes the chunks computed (waiting for
    /// the chunks still in flight), publish the verdict, and return whether it is good.
    pub fn verify(self, segment: &Segment) -> bool {
        let verdict = match segment.records.take_hashes() {
            Some(hashes) => {
                let name = self.name.clone();
                self.check(&segment.records, hashes).map_err(|e| e.in_file(&name).to_string())
            }
            // A chunk panicked; it reports that as its records' problem, and nothing of
            // the segment counts as verified.
            None => Err(format!("{}: computing the records' hashes panicked", self.name)),
        };
        let good = verdict.is_ok();
        segment.decide(verdict);
        good
    }

    fn check(mut self, records: &Records, hashes: Vec<ComputedHash>) -> Result<Verdict, SegmentError> {
        let mut others = self.others.into_iter().peekable();
        for (i, (f, h)) in records.frames.iter().zip(hashes).enumerate() {
            while let Some((_, o)) = others.next_if(|(before, _)| *before == i) {
                self.verifier.check(&o.as_ref())?;
            }
            self.verifier.check_computed(&records.frame_ref(f), h)?;
        }
        for (_, o) in others {
            self.verifier.check(&o.as_ref())?;
        }
        let torn = match self.stop {
            None => None,
            Some(e) if e.is_torn_tail() => Some(e),
            Some(e) => return Err(e),
        };
        let report = self.verifier.finish(self.end, torn)?;
        Ok(Verdict {
            end: report.end,
            last_checkpoint: report.last_checkpoint.map(|(_, note)| note),
            torn_tail: report.torn_tail,
            bytes: report.valid_len,
        })
    }
}

/// A `Read` that hashes what passes through.
struct HashingReader<R> {
    inner: R,
    hasher: Arc<Mutex<blake3::Hasher>>,
}

impl<R: io::Read> io::Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Ok(mut h) = self.hasher.lock() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}
