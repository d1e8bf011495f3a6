//! Reading a segment for compaction, and its verdict.
//!
//! [`read`] makes one pass over the file: it checks the header against the chain so far
//! and the framing (lengths, a torn tail; the frame heads all at once at the end, side
//! by side, with a second, checked pass should one fail), and keeps the record frames
//! and their payloads. It does not hash the frames: the chain hash of every record is
//! computed with its parsing ([`super::records`]), on whichever thread is free, since it
//! does not depend on the frames before it. Then [`Pending::verify`] runs, on the reader, the checks that do:
//! seqs, links, the Merkle tree, checkpoint signatures, the seal, with those hashes, and
//! publishes the verdict. These are `SegmentVerifier`'s checks with the same errors in
//! the same file order as verifying in one pass (kiroku-schemas tests both ways on every
//! corruption it generates); nothing of a segment is written before its verdict.

use std::io;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use kiroku_schemas::segment::{
    self, ChainState, ComputedHash, FrameKind, Problem, SegmentError, SegmentReader, SegmentVerifier,
};

use super::CompactOptions;
use super::records::{Frame, Records};
use crate::error::CliError;
use crate::spool::{SegmentRef, SpoolStore};

/// A segment being compacted, shared by both threads: its frames and payloads (hashed
/// and parsed by [`Records`]), and the verdict once the reader has checked it.
pub(super) struct Segment {
    /// Its record frames, payloads and parsed chunks.
    pub records: Records,
    verdict: Mutex<Option<Result<Verdict, Refusal>>>,
    decided: Condvar,
}

/// Why a segment is not compacted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Something in it is wrong: it is moved to quarantine with a report.
    Bad(String),
    /// Its checkpoints carry no signature by the configured key, only by others: a
    /// wrong `--pubkey` (or a segment of another log). It stays where it is, so that a
    /// configuration mistake moves no good segment aside; the run reports it.
    OtherKey(String),
}

impl Refusal {
    fn of(e: SegmentError, name: &str) -> Self {
        let other_key = matches!(e.problem, Problem::SignedByAnotherKey(_));
        let text = e.in_file(name).to_string();
        if other_key { Self::OtherKey(text) } else { Self::Bad(text) }
    }
}

/// What a verified segment ends in.
#[derive(Clone)]
pub(super) struct Verdict {
    /// The chain state before its first record, as its header gives it.
    pub start: ChainState,
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
    fn decide(&self, v: Result<Verdict, Refusal>) {
        *self.lock() = Some(v);
        self.decided.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, Option<Result<Verdict, Refusal>>> {
        self.verdict.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wait for the reader's verdict: the segment verified, or the first problem in it.
    pub fn verdict(&self) -> Result<Verdict, Refusal> {
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
    /// The chain state its header gives.
    start: ChainState,
    verifier: SegmentVerifier,
    /// Checkpoint and seal frames, each with the number of record frames before it.
    others: std::iter::Peekable<std::vec::IntoIter<(usize, segment::Frame)>>,
    /// Record frames checked so far, and the chunk whose hashes come next.
    checked: usize,
    next_chunk: usize,
    /// The first problem found so far: `Err(None)` when a chunk could not compute its
    /// hashes.
    problem: Result<(), Option<SegmentError>>,
    /// The offset after the last complete frame.
    end: u64,
    /// What stopped the reading before the end of the file: a torn tail, or a problem
    /// that is reported if every frame before it checks out.
    stop: Option<SegmentError>,
}

/// Read a segment (see the module docs); `Ok(Err(message))` is a problem with its
/// header (the segment is quarantined; a problem with its frames is kept for the
/// verdict, so that an earlier bad frame is reported first), `Err` an I/O error.
/// `continuing`: the segment must continue `state` (else it goes on from its own
/// header, after an accepted gap).
pub(super) fn read(
    spool: &dyn SpoolStore,
    seg: &SegmentRef,
    state: &ChainState,
    continuing: bool,
    opts: &CompactOptions,
    buffers: (Vec<Frame>, Vec<u8>),
) -> Result<Result<(Arc<Segment>, Pending), String>, CliError> {
    // Frame heads are checked all at once at the end, side by side. Should one fail,
    // nothing read is trusted and the segment is read again, each head checked in its
    // place, which finds the exact problem.
    let state = continuing.then_some(state);
    match read_with(spool, seg, state, opts, buffers, true)? {
        Read::HeadFailed(mut frames, mut payloads) => {
            frames.clear();
            payloads.clear();
            match read_with(spool, seg, state, opts, (frames, payloads), false)? {
                Read::Done(read) => Ok(read),
                // Not deferred, heads are checked in place: never the case.
                Read::HeadFailed(..) => Ok(Err(format!("{}: a frame head fails its check", seg.name))),
            }
        }
        Read::Done(read) => Ok(read),
    }
}

/// What one reading of a segment gave (moved once per segment: its size costs nothing).
#[allow(clippy::large_enum_variant)]
enum Read {
    Done(Result<(Arc<Segment>, Pending), String>),
    /// A deferred frame-head check failed; the buffers, to read again.
    HeadFailed(Vec<Frame>, Vec<u8>),
}

fn read_with(
    spool: &dyn SpoolStore,
    seg: &SegmentRef,
    state: Option<&ChainState>,
    opts: &CompactOptions,
    buffers: (Vec<Frame>, Vec<u8>),
    defer_heads: bool,
) -> Result<Read, CliError> {
    let vopts = opts.verify_options(seg, state);
    // Large reads: fewer system calls than the reader's frame-sized ones.
    let input = io::BufReader::with_capacity(1 << 20, spool.read(seg)?);
    let mut reader = match SegmentReader::open(input) {
        Ok(r) => r,
        Err(e) => return Ok(Read::Done(Err(e.in_file(&seg.name).to_string()))),
    };
    let start = ChainState::from_header(reader.header());
    let verifier = match SegmentVerifier::new(reader.header(), vopts) {
        Ok(v) => v,
        Err(e) => return Ok(Read::Done(Err(e.in_file(&seg.name).to_string()))),
    };
    if defer_heads {
        reader.defer_head_checks();
    }
    let (mut frames, mut payloads) = buffers;
    let mut others = Vec::new();
    let stop = loop {
        let frame = match reader.next_frame_ref() {
            Ok(Some(f)) => f,
            Ok(None) => break None,
            Err(e) => {
                if let Problem::Io(msg) = &e.problem {
                    // Whatever its heads say, the file could not be read.
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
    if reader.check_deferred_heads().is_err() {
        return Ok(Read::HeadFailed(frames, payloads));
    }
    let end = reader.offset();
    let segment = Segment {
        records: Records::new(&seg.name, start.chain_id, frames, payloads),
        verdict: Mutex::new(None),
        decided: Condvar::new(),
    };
    let others = others.into_iter().peekable();
    let pending = Pending {
        name: seg.name.clone(),
        start,
        verifier,
        others,
        checked: 0,
        next_chunk: 0,
        problem: Ok(()),
        end,
        stop,
    };
    Ok(Read::Done(Ok((Arc::new(segment), pending))))
}

impl Pending {
    /// Check the frames of the chunks parsed so far, in file order, up to the first chunk
    /// still in flight. The reader calls this between chunks, so that when the last chunk
    /// is done only its frames are left to check and the writer, waiting for the verdict,
    /// waits for little.
    pub fn check_ready(&mut self, records: &Records) {
        self.check_from(records, false);
    }

    /// Check every frame not checked yet (waiting for the chunks still in flight),
    /// publish the verdict, and return whether it is good.
    pub fn verify(mut self, segment: &Segment) -> bool {
        self.check_from(&segment.records, true);
        let verdict = match std::mem::replace(&mut self.problem, Ok(())) {
            Ok(()) => {
                let name = self.name.clone();
                self.finish().map_err(|e| Refusal::of(e, &name))
            }
            Err(Some(e)) => Err(Refusal::of(e, &self.name)),
            // A chunk panicked; it reports that as its records' problem, and nothing of
            // the segment counts as verified.
            Err(None) => Err(Refusal::Bad(format!("{}: computing the records' hashes panicked", self.name))),
        };
        let good = verdict.is_ok();
        segment.decide(verdict);
        good
    }

    fn check_from(&mut self, records: &Records, wait: bool) {
        if self.problem.is_err() {
            return;
        }
        let Some((hashes, next)) = records.take_hashes_from(self.next_chunk, wait) else {
            self.problem = Err(None);
            return;
        };
        self.next_chunk = next;
        if let Err(e) = self.check_frames(records, hashes) {
            self.problem = Err(Some(e));
        }
    }

    /// Check the next record frames (those `hashes` were computed for), each after the
    /// checkpoints that come before it.
    fn check_frames(&mut self, records: &Records, hashes: Vec<ComputedHash>) -> Result<(), SegmentError> {
        let frames = records.frames.get(self.checked..).unwrap_or_default();
        for (f, h) in frames.iter().zip(hashes) {
            while let Some((_, o)) = self.others.next_if(|(before, _)| *before == self.checked) {
                self.verifier.check(&o.as_ref())?;
            }
            self.verifier.check_computed(&records.frame_ref(f), h)?;
            self.checked += 1;
        }
        Ok(())
    }

    /// After every record frame: the checkpoints after the last one, the end of the file.
    fn finish(mut self) -> Result<Verdict, SegmentError> {
        for (_, o) in self.others.by_ref() {
            self.verifier.check(&o.as_ref())?;
        }
        let torn = match self.stop {
            None => None,
            Some(e) if e.is_torn_tail() => Some(e),
            Some(e) => return Err(e),
        };
        let report = self.verifier.finish(self.end, torn)?;
        Ok(Verdict {
            start: self.start,
            end: report.end,
            last_checkpoint: report.last_checkpoint.map(|(_, note)| note),
            torn_tail: report.torn_tail,
            bytes: report.valid_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compact::records::Side;
    use crate::spool::LocalSpool;
    use kiroku_schemas::checkpoint::NoteSigner;
    use kiroku_schemas::segment::{SegmentHeader, SegmentWriter, VerifyOptions, verify_segment};
    use kiroku_schemas::{AuditRecord, ChainId, Timestamp};

    /// A sealed segment of `n` records (a checkpoint every 700), several chunks long.
    fn segment(signer: &NoteSigner, chain: ChainId, n: u64) -> Vec<u8> {
        let mut w = SegmentWriter::new(Vec::new(), SegmentHeader::genesis(chain)).unwrap();
        for seq in 0..n {
            let mut r = AuditRecord::new(format!("id-{seq}"), Timestamp::from_unix_nanos(seq as i64));
            (r.chain_id, r.seq) = (chain, seq);
            w.append_record(&r.to_json()).unwrap();
            if (seq + 1) % 700 == 0 {
                w.append_checkpoint(signer, "kiroku", Timestamp::from_unix_nanos(seq as i64)).unwrap();
            }
        }
        w.seal(signer, "kiroku", Timestamp::from_unix_nanos(n as i64)).unwrap()
    }

    /// Read `bytes` as the compactor does, the reader checking between the chunks it
    /// parses, and return the verdict.
    fn verdict_of(bytes: &[u8], signer: &NoteSigner, chain: ChainId) -> Result<Verdict, Refusal> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(chain.to_string())).unwrap();
        let name = "00000000000000000000.seg".to_owned();
        std::fs::write(dir.path().join(chain.to_string()).join(&name), bytes).unwrap();
        let spool = LocalSpool::new(dir.path());
        let seg = SegmentRef { chain_id: chain, first_seq: 0, name, sealed: true };
        let opts = CompactOptions::new(signer.verifier());
        let (s, mut pending) =
            read(&spool, &seg, &ChainState::genesis(chain), true, &opts, Default::default()).unwrap().unwrap();
        // Chunks out of order: the checks must wait for the one in flight.
        assert!(s.records.parse_one(Side::Reader));
        pending.check_ready(&s.records);
        while s.records.parse_one(Side::Writer) {
            pending.check_ready(&s.records);
        }
        pending.verify(&s);
        s.verdict()
    }

    #[test]
    fn checking_between_chunks_finds_what_a_whole_segment_check_finds() {
        let signer = NoteSigner::generate("reading-test").unwrap();
        let chain = ChainId([9; 16]);
        let good = segment(&signer, chain, 3_500);
        let whole = verify_segment(&good[..], &VerifyOptions::sealed().with_verifier(signer.verifier())).unwrap();
        let v = verdict_of(&good, &signer, chain).unwrap();
        assert_eq!((v.end.next_seq, v.end.last_hash), (whole.end.next_seq, whole.end.last_hash));

        // A flipped byte in the payload of a record in the third chunk, and one in the
        // last: each is the first problem, found at its frame.
        let frames: Vec<segment::Frame> = SegmentReader::open(&good[..])
            .unwrap()
            .map(Result::unwrap)
            .filter(|f| f.kind == FrameKind::Record)
            .collect();
        // A flipped byte in a frame head (its length, its seq, its check) is found by the
        // deferred head checks and named as checking in place names it.
        for (k, at) in [(2_500, 60), (3_499, 60), (2_500, 3), (1_000, 9), (3_499, 14)] {
            let mut bad = good.clone();
            bad[frames[k].offset as usize + at] ^= 1;
            let expected =
                verify_segment(&bad[..], &VerifyOptions::sealed().with_verifier(signer.verifier())).unwrap_err();
            assert_eq!(expected.offset, frames[k].offset);
            assert_eq!(at < 17, matches!(expected.problem, Problem::BadFrameHead), "{expected}");
            let Err(Refusal::Bad(got)) = verdict_of(&bad, &signer, chain) else {
                panic!("record {k}: no problem found")
            };
            assert_eq!(got, expected.in_file("00000000000000000000.seg").to_string(), "record {k}, byte {at}");
        }
    }

    #[test]
    fn a_segment_signed_by_another_key_is_left_in_place_not_quarantined() {
        let signer = NoteSigner::generate("reading-test").unwrap();
        let chain = ChainId([9; 16]);
        let good = segment(&signer, chain, 100);
        let other = NoteSigner::generate("reading-test").unwrap();
        match verdict_of(&good, &other, chain) {
            Err(Refusal::OtherKey(why)) => assert!(why.contains("not signed by a configured key"), "{why}"),
            v => panic!("{:?}", v.map(|v| v.bytes)),
        }
    }
}
