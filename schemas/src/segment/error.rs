//! Segment errors: what went wrong and exactly where.

use std::fmt;
use std::path::PathBuf;

/// What is wrong with a segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// Reading failed.
    #[error("read error: {0}")]
    Io(String),
    /// The file does not start with the segment magic.
    #[error("not a kiroku segment (bad magic bytes)")]
    BadMagic,
    /// The format version is not one this reader knows.
    #[error("unsupported segment format version {0}")]
    UnsupportedVersion(u16),
    /// The header is inconsistent or its hash does not match.
    #[error("corrupt header: {0}")]
    BadHeader(&'static str),
    /// The file ends inside a frame (or the header): a partial write at the tail.
    #[error("torn tail: the file ends inside a frame or the header ({0} bytes of it present)")]
    TornTail(u64),
    /// A frame's kind, length or seq does not match its head check.
    #[error("corrupt frame head (kind, length or seq altered)")]
    BadFrameHead,
    /// A frame declares a payload larger than the format allows.
    #[error("frame declares a payload of {0} bytes, more than the 16 MiB limit")]
    FrameTooLarge(u32),
    /// A frame has a kind byte this reader does not know.
    #[error("unknown frame kind {0}")]
    UnknownFrameKind(u8),
    /// The frame's stored hash is not the hash of its contents.
    #[error("bad hash: the frame's contents do not match its stored hash")]
    BadHash,
    /// The frame is intact but does not link to the frame before it.
    #[error("broken link: the frame's prev hash is not the hash of the frame before it")]
    BrokenLink,
    /// A record's seq is not the next one.
    #[error("seq gap: expected seq {expected}, found {found}")]
    SeqGap {
        /// The seq that should come next.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// The segment belongs to another chain than expected.
    #[error("chain id mismatch: expected {expected}, found {found}")]
    ChainIdMismatch {
        /// Expected chain.
        expected: String,
        /// Chain named by the segment.
        found: String,
    },
    /// The segment does not continue the previous segment of its chain.
    #[error("discontinuity with the previous segment: {0}")]
    Discontinuity(String),
    /// A checkpoint's content does not match the records before it.
    #[error("checkpoint mismatch: {0}")]
    CheckpointMismatch(String),
    /// A checkpoint's signature is missing, malformed or does not verify.
    #[error("bad checkpoint signature: {0}")]
    BadSignature(String),
    /// A checkpoint carries no signature by the key (or any of the keys) it is checked
    /// with, only others: a wrong public key configured, a rotated key missing from the
    /// trusted keys, or a segment of another log, rather than an edit.
    #[error(
        "checkpoint not signed by a configured key: {0} (a wrong public key, a rotated signing key missing from the trusted keys, or a segment of another log)"
    )]
    SignedByAnotherKey(String),
    /// Bytes follow the seal frame.
    #[error("data after the seal frame")]
    DataAfterSeal,
    /// A segment that must be sealed ends without a seal frame.
    #[error("not sealed: the segment ends without a seal frame")]
    NotSealed,
}

/// A problem at a place: file, byte offset of the frame (or 0 for the header), seq.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentError {
    /// The segment file, when known.
    pub file: Option<PathBuf>,
    /// Byte offset of the frame (or header) where the problem is.
    pub offset: u64,
    /// The seq of the frame, when known (tree size for checkpoints).
    pub seq: Option<u64>,
    /// What is wrong.
    pub problem: Problem,
}

impl SegmentError {
    pub(crate) fn at(offset: u64, seq: Option<u64>, problem: Problem) -> Self {
        Self { file: None, offset, seq, problem }
    }

    /// The same error, naming `file`.
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }

    /// True for a partial write at the end of the file (recoverable by cutting it).
    pub fn is_torn_tail(&self) -> bool {
        matches!(self.problem, Problem::TornTail(_))
    }
}

impl fmt::Display for SegmentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(p) => write!(f, "{}: ", p.display())?,
            None => f.write_str("segment: ")?,
        }
        write!(f, "byte offset {}", self.offset)?;
        if let Some(seq) = self.seq {
            write!(f, " (seq {seq})")?;
        }
        write!(f, ": {}", self.problem)
    }
}

impl std::error::Error for SegmentError {}
