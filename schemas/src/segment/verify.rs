//! Segment verification: frames, chain links, seqs, checkpoints, continuity.

use std::io::Read;

use super::{FrameKind, FrameRef, Problem, SegmentError, SegmentHeader, SegmentReader, frame_hash, push_frame_message};
use crate::checkpoint::{Checkpoint, CheckpointError, TrustedKeys};
use crate::merkle::CompactRange;
use crate::{ChainId, Hash};

/// The state of a chain after some records: what the next segment must continue from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainState {
    /// The chain.
    pub chain_id: ChainId,
    /// Seq the next record gets (= records so far).
    pub next_seq: u64,
    /// Hash of the last record (zeros for an empty chain).
    pub last_hash: Hash,
    /// Merkle compact range of all records so far.
    pub tree: CompactRange,
}

impl ChainState {
    /// The state of an empty chain.
    pub fn genesis(chain_id: ChainId) -> Self {
        Self::from_header(&SegmentHeader::genesis(chain_id))
    }

    /// The state a segment's header says the chain was in before its first record.
    pub fn from_header(h: &SegmentHeader) -> Self {
        Self { chain_id: h.chain_id, next_seq: h.first_seq, last_hash: h.prev_hash, tree: h.frontier.clone() }
    }

    /// The header of a segment that continues this state.
    pub fn next_header(&self) -> SegmentHeader {
        SegmentHeader {
            chain_id: self.chain_id,
            first_seq: self.next_seq,
            prev_hash: self.last_hash,
            frontier: self.tree.clone(),
        }
    }
}

/// Whether a segment must be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A sealed segment: it must end with a seal frame, and a torn tail is an error.
    Sealed,
    /// An open segment (a writer's current file, or one whose writer died): it may lack
    /// a seal, and a torn final frame is reported in the result instead of failing.
    Open,
}

/// What to check a segment against.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Sealed or open.
    pub mode: Mode,
    /// Keys one of which must have signed every checkpoint (several when the log's key
    /// was rotated); without them, checkpoints are checked for content (size, root,
    /// chain) but not signatures, and the report says so.
    pub verifier: Option<TrustedKeys>,
    /// The chain the segment must belong to.
    pub chain_id: Option<ChainId>,
    /// The chain state the segment must continue (from the previous segment or the
    /// archive); checks first seq, prev hash and Merkle frontier.
    pub previous: Option<ChainState>,
}

impl VerifyOptions {
    /// Options for a sealed segment.
    pub fn sealed() -> Self {
        Self { mode: Mode::Sealed, verifier: None, chain_id: None, previous: None }
    }

    /// Options for an open segment.
    pub fn open() -> Self {
        Self { mode: Mode::Open, ..Self::sealed() }
    }

    /// Require every checkpoint to be signed by `v`: one key
    /// ([`NoteVerifier`](crate::checkpoint::NoteVerifier)), or any of a set.
    pub fn with_verifier(mut self, v: impl Into<TrustedKeys>) -> Self {
        self.verifier = Some(v.into());
        self
    }

    /// Require the segment to continue `state`.
    pub fn continuing(mut self, state: ChainState) -> Self {
        self.chain_id = Some(state.chain_id);
        self.previous = Some(state);
        self
    }
}

/// What a verified segment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    /// The header.
    pub header: SegmentHeader,
    /// Record frames.
    pub records: u64,
    /// Chain state after the last valid record.
    pub end: ChainState,
    /// True when the segment ends with a seal frame.
    pub sealed: bool,
    /// The last checkpoint (or the seal) and its note text.
    pub last_checkpoint: Option<(Checkpoint, String)>,
    /// Checkpoint and seal frames checked.
    pub checkpoints: u64,
    /// The hash the next checkpoint frame must link to (the last checkpoint frame's, or
    /// the header's).
    pub checkpoint_link: Hash,
    /// True when checkpoint signatures were verified with a key.
    pub signatures_checked: bool,
    /// Bytes of valid content (header and complete frames).
    pub valid_len: u64,
    /// For open segments: where a torn final frame starts, and how many bytes of it exist.
    pub torn_tail: Option<(u64, u64)>,
}

/// A frame's hash as computed from its bytes, for [`SegmentVerifier::check_computed`]:
/// the blake3 of a record is most of the cost of checking it, and it does not depend on
/// the frames before it, so a reader can compute it ahead, on any thread, while the
/// order-dependent checks stay sequential. It remembers which frame (by offset) it was
/// computed for; checking it against another frame fails as a bad hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ComputedHash {
    offset: u64,
    hash: Hash,
}

impl ComputedHash {
    /// The hash computed.
    pub fn hash(&self) -> &Hash {
        &self.hash
    }

    /// Compute the hash of frame `f` of the chain `chain` (the segment header's chain).
    pub fn of(chain: &ChainId, f: &FrameRef<'_>) -> Self {
        Self { offset: f.offset, hash: frame_hash(f.kind, chain, f.seq, &f.prev, f.payload) }
    }

    /// The hashes of many frames of the chain `chain`, in order: the same as
    /// [`ComputedHash::of`] on each, computed side by side
    /// ([`blake3_many`](crate::digest::blake3_many)), several times faster for record-sized
    /// frames. Each frame is hashed with the `prev_hash` it names, so the frames need not
    /// have been checked yet; [`SegmentVerifier::check_computed`] checks the links.
    pub fn of_all(chain: &ChainId, frames: &[FrameRef<'_>]) -> Vec<Self> {
        thread_local! {
            // Reused: a fresh megabyte per call is a fresh mapping, and faulting its pages
            // in cost as much as copying the frames into it.
            static MESSAGES: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        // Frames too long to gain from lanes are hashed alone, without a copy here.
        let short = |f: &FrameRef<'_>| f.payload.len() <= crate::digest::SIDE_BY_SIDE_MAX;
        let hash_all = |messages: &mut Vec<u8>| {
            messages.clear();
            let mut ends = Vec::with_capacity(frames.len());
            for f in frames.iter().filter(|f| short(f)) {
                push_frame_message(messages, f.kind, chain, f.seq, &f.prev, f.payload);
                ends.push(messages.len());
            }
            let mut start = 0;
            let slices: Vec<&[u8]> = ends
                .iter()
                .map(|&end| {
                    let m = &messages[start..end];
                    start = end;
                    m
                })
                .collect();
            let mut side_by_side = crate::digest::blake3_many(&slices).into_iter();
            frames
                .iter()
                .map(|f| {
                    if short(f) {
                        Self { offset: f.offset, hash: side_by_side.next().unwrap_or_default() }
                    } else {
                        Self::of(chain, f)
                    }
                })
                .collect()
        };
        MESSAGES
            .try_with(|m| m.try_borrow_mut().ok().map(|mut m| hash_all(&mut m)))
            .ok()
            .flatten()
            .unwrap_or_else(|| hash_all(&mut Vec::new()))
    }
}

/// Checks frames one by one; drive it yourself to verify while doing something else with
/// the records (the collector compacts them in the same pass), or use
/// [`verify_segment`].
pub struct SegmentVerifier {
    opts: VerifyOptions,
    header: SegmentHeader,
    state: ChainState,
    last_link: Hash,
    records: u64,
    sealed: bool,
    checkpoints: u64,
    last_checkpoint: Option<(Checkpoint, String)>,
}

impl SegmentVerifier {
    /// Check the header against the options.
    pub fn new(header: &SegmentHeader, opts: VerifyOptions) -> Result<Self, SegmentError> {
        let at0 = |p| SegmentError::at(0, Some(header.first_seq), p);
        if let Some(expected) = opts.chain_id
            && expected != header.chain_id
        {
            return Err(at0(Problem::ChainIdMismatch {
                expected: expected.to_string(),
                found: header.chain_id.to_string(),
            }));
        }
        if let Some(prev) = &opts.previous {
            if prev.next_seq != header.first_seq {
                return Err(at0(Problem::Discontinuity(format!(
                    "segment starts at seq {}, the chain continues at seq {}",
                    header.first_seq, prev.next_seq
                ))));
            }
            if prev.last_hash != header.prev_hash {
                return Err(at0(Problem::Discontinuity(
                    "prev hash is not the last hash of the previous segment".into(),
                )));
            }
            if prev.tree != header.frontier {
                return Err(at0(Problem::Discontinuity("Merkle frontier differs from the previous segment's".into())));
            }
        }
        Ok(Self {
            state: ChainState::from_header(header),
            last_link: header.hash(),
            header: header.clone(),
            opts,
            records: 0,
            sealed: false,
            checkpoints: 0,
            last_checkpoint: None,
        })
    }

    /// The chain state after the frames checked so far.
    pub fn state(&self) -> &ChainState {
        &self.state
    }

    /// True once the seal frame has been checked.
    pub fn is_sealed(&self) -> bool {
        self.sealed
    }

    /// Check the next frame.
    pub fn check(&mut self, f: &FrameRef<'_>) -> Result<(), SegmentError> {
        let computed = ComputedHash::of(&self.header.chain_id, f);
        self.check_computed(f, computed)
    }

    /// Check the next frame, whose hash was computed ahead with [`ComputedHash::of`] (the
    /// same checks as [`check`](Self::check), in the same order, with the same errors).
    pub fn check_computed(&mut self, f: &FrameRef<'_>, computed: ComputedHash) -> Result<(), SegmentError> {
        let err = |p| SegmentError::at(f.offset, Some(f.seq), p);
        if self.sealed {
            return Err(err(Problem::DataAfterSeal));
        }
        if computed.offset != f.offset || computed.hash != f.hash {
            return Err(err(Problem::BadHash));
        }
        match f.kind {
            FrameKind::Record => {
                if f.seq != self.state.next_seq {
                    return Err(err(Problem::SeqGap { expected: self.state.next_seq, found: f.seq }));
                }
                if f.prev != self.state.last_hash {
                    return Err(err(Problem::BrokenLink));
                }
                self.state.tree.push(&f.hash);
                self.state.last_hash = f.hash;
                self.state.next_seq += 1;
                self.records += 1;
            }
            FrameKind::Checkpoint | FrameKind::Seal => {
                if f.prev != self.last_link {
                    return Err(err(Problem::BrokenLink));
                }
                let note = std::str::from_utf8(f.payload)
                    .map_err(|_| err(Problem::CheckpointMismatch("checkpoint is not UTF-8".into())))?;
                let cp = match &self.opts.verifier {
                    Some(v) => v.open(note).map_err(|e| {
                        err(match e {
                            CheckpointError::NoSignatureByKey { .. } | CheckpointError::NoSignatureByTrustedKey(_) => {
                                Problem::SignedByAnotherKey(e.to_string())
                            }
                            _ => Problem::BadSignature(e.to_string()),
                        })
                    })?,
                    None => Checkpoint::parse_note_unverified(note)
                        .map_err(|e| err(Problem::CheckpointMismatch(e.to_string())))?,
                };
                if f.seq != self.state.next_seq || cp.size != self.state.next_seq {
                    return Err(err(Problem::CheckpointMismatch(format!(
                        "checkpoint covers {} records (frame says {}), but {} precede it",
                        cp.size, f.seq, self.state.next_seq
                    ))));
                }
                if cp.chain_id() != Some(self.header.chain_id) {
                    return Err(err(Problem::CheckpointMismatch(format!(
                        "origin {:?} does not name chain {}",
                        cp.origin, self.header.chain_id
                    ))));
                }
                if cp.root != self.state.tree.root() {
                    return Err(err(Problem::CheckpointMismatch("root hash does not match the records".into())));
                }
                self.last_link = f.hash;
                self.checkpoints += 1;
                self.sealed = f.kind == FrameKind::Seal;
                self.last_checkpoint = Some((cp, note.to_owned()));
            }
        }
        Ok(())
    }

    /// Finish: `end` is the offset after the last complete frame; `torn` the torn tail
    /// error, if the input ended inside a frame.
    pub fn finish(self, end: u64, torn: Option<SegmentError>) -> Result<SegmentReport, SegmentError> {
        let torn_tail = match (torn, self.opts.mode) {
            (None, _) => None,
            (Some(e), Mode::Open) => match e.problem {
                Problem::TornTail(have) => Some((e.offset, have)),
                _ => return Err(e),
            },
            (Some(e), Mode::Sealed) => return Err(e),
        };
        if self.opts.mode == Mode::Sealed && !self.sealed {
            return Err(SegmentError::at(end, None, Problem::NotSealed));
        }
        Ok(SegmentReport {
            header: self.header,
            records: self.records,
            end: self.state,
            sealed: self.sealed,
            last_checkpoint: self.last_checkpoint,
            checkpoints: self.checkpoints,
            checkpoint_link: self.last_link,
            signatures_checked: self.opts.verifier.is_some(),
            valid_len: end,
            torn_tail,
        })
    }
}

/// Verify a whole segment from `input` and return what it holds, or the first problem
/// with its location.
///
/// Frames are read in batches of up to 256 (or 1 MiB) and their hashes computed side by
/// side ([`ComputedHash::of_all`]) before the batch is checked in order, so the result,
/// the problem found first included, is the same as checking frame by frame. Frames of
/// more than 8 KiB, which blake3 hashes about as fast alone, are checked where they are read.
pub fn verify_segment<R: Read>(input: R, opts: &VerifyOptions) -> Result<SegmentReport, SegmentError> {
    verify_in_batches(input, opts, FrameBatch::FRAMES)
}

/// [`verify_segment`] with batches of at most `frames` frames.
pub(crate) fn verify_in_batches<R: Read>(
    input: R,
    opts: &VerifyOptions,
    frames: usize,
) -> Result<SegmentReport, SegmentError> {
    let mut reader = SegmentReader::open(input)?;
    let mut v = SegmentVerifier::new(reader.header(), opts.clone())?;
    let chain = reader.header().chain_id;
    let mut batch = FrameBatch { limit: frames.max(1), ..FrameBatch::default() };
    loop {
        let read = reader.next_frame_ref();
        if let Ok(Some(f)) = &read {
            if f.payload.len() > crate::digest::SIDE_BY_SIDE_MAX {
                // Hashed alone anyway: checked in place, without a copy into the batch.
                batch.check(&chain, &mut v)?;
                v.check(f)?;
                continue;
            }
            batch.push(f);
            if !batch.is_full() {
                continue;
            }
        }
        batch.check(&chain, &mut v)?;
        match read {
            Ok(Some(_)) => {}
            Ok(None) => return v.finish(reader.offset(), None),
            Err(e) if v.is_sealed() => {
                return Err(SegmentError::at(e.offset, None, Problem::DataAfterSeal));
            }
            Err(e) if e.is_torn_tail() => {
                let end = reader.offset();
                return v.finish(end, Some(e));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Frames read but not checked yet: their heads, and their payloads back to back.
#[derive(Default)]
struct FrameBatch {
    frames: Vec<(FrameRef<'static>, std::ops::Range<usize>)>,
    payloads: Vec<u8>,
    /// At most this many frames.
    limit: usize,
}

impl FrameBatch {
    const FRAMES: usize = 256;
    const BYTES: usize = 1 << 20;

    fn push(&mut self, f: &FrameRef<'_>) {
        let at = self.payloads.len();
        self.payloads.extend_from_slice(f.payload);
        self.frames.push((FrameRef { payload: &[], ..*f }, at..self.payloads.len()));
    }

    fn is_full(&self) -> bool {
        self.frames.len() >= self.limit || self.payloads.len() >= Self::BYTES
    }

    /// Check the frames in order and empty the batch.
    fn check(&mut self, chain: &ChainId, v: &mut SegmentVerifier) -> Result<(), SegmentError> {
        let refs: Vec<FrameRef<'_>> =
            self.frames.iter().map(|(f, p)| FrameRef { payload: &self.payloads[p.clone()], ..*f }).collect();
        for (f, computed) in refs.iter().zip(ComputedHash::of_all(chain, &refs)) {
            v.check_computed(f, computed)?;
        }
        self.frames.clear();
        self.payloads.clear();
        Ok(())
    }
}
