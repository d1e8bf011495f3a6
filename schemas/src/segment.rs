//! The segment file: a header and a sequence of frames forming one piece of a hash chain.
//!
//! See `FORMAT.md` for the byte layout. In short:
//!
//! - the **header** names the chain, the seq of its first record, the last record hash of
//!   the previous segment and the Merkle compact range of every earlier record, and ends
//!   with a blake3 of itself;
//! - a **record frame** carries one record's exact JSON bytes, its seq, the previous
//!   record's hash and its own hash
//!   `blake3("kiroku/v1/record\0" || chain_id || seq || prev || payload)`;
//! - a **checkpoint frame** carries a signed C2SP checkpoint of the chain so far, linked
//!   to the previous checkpoint frame (or the header), so none can be dropped unnoticed;
//! - a **seal frame** is the final checkpoint; nothing may follow it.
//!
//! [`SegmentWriter`] appends frames to any `Write`, [`SegmentReader`] iterates frames
//! from any `Read` without loading the file, and [`verify_segment`] / [`SegmentVerifier`]
//! check everything and say exactly where the first problem is.

mod error;
mod header;
mod reader;
mod verify;
mod writer;

pub use error::{Problem, SegmentError};
pub use header::SegmentHeader;
pub use reader::{Frame, FrameRef, SegmentReader};
pub use verify::{ChainState, ComputedHash, Mode, SegmentReport, SegmentVerifier, VerifyOptions, verify_segment};
pub use writer::{AppendedRecord, SegmentWriter};

use crate::{ChainId, Hash};

/// The first 8 bytes of every segment file.
pub const MAGIC: [u8; 8] = *b"\x89KRK\r\n\x1a\n";
/// The format version this crate writes and reads.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes before a frame's payload: kind, length, seq, head check, prev.
pub const FRAME_HEAD_LEN: usize = 49;
/// Bytes after a frame's payload: its hash.
pub const FRAME_TAIL_LEN: usize = 32;
/// The largest payload a frame may declare (16 MiB); readers refuse larger lengths
/// before allocating.
pub const MAX_PAYLOAD: u32 = 16 * 1024 * 1024;

/// What a frame holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// One audit record (JSON).
    Record = 1,
    /// A signed checkpoint of the chain so far.
    Checkpoint = 2,
    /// The final signed checkpoint of the segment.
    Seal = 3,
}

impl FrameKind {
    /// The kind for a byte, if it is one.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            1 => Some(Self::Record),
            2 => Some(Self::Checkpoint),
            3 => Some(Self::Seal),
            _ => None,
        }
    }

    fn domain(self) -> &'static [u8] {
        match self {
            Self::Record => b"kiroku/v1/record\0",
            Self::Checkpoint => b"kiroku/v1/checkpoint\0",
            Self::Seal => b"kiroku/v1/seal\0",
        }
    }
}

/// The hash of a frame: `blake3(domain(kind) || chain_id || seq_le || prev || payload)`.
///
/// Payloads up to 64 KiB are hashed from one contiguous copy of the whole message. Fed
/// piece by piece, the 50-70 byte prefix shifts every chunk boundary of the payload,
/// and blake3 then compresses its chunks one at a time instead of several at once with
/// SIMD (`cargo bench -p kiroku-schemas --bench verify`: `bound_blake3_one_record`
/// against `baseline_record_hash_in_pieces`). Larger payloads are fed in place.
pub fn frame_hash(kind: FrameKind, chain: &ChainId, seq: u64, prev: &Hash, payload: &[u8]) -> Hash {
    const CONTIGUOUS_MAX: usize = 64 << 10;
    thread_local! {
        static MESSAGE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    if payload.len() <= CONTIGUOUS_MAX {
        let contiguous = MESSAGE.try_with(|m| {
            let mut m = m.try_borrow_mut().ok()?;
            m.clear();
            push_frame_message(&mut m, kind, chain, seq, prev, payload);
            Some(crate::digest::blake3_of(&m))
        });
        if let Ok(Some(h)) = contiguous {
            return h;
        }
    }
    let mut h = blake3::Hasher::new();
    for p in frame_message(kind, chain, &seq.to_le_bytes(), prev, payload) {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// The parts of the message [`frame_hash`] hashes, in order.
fn frame_message<'a>(
    kind: FrameKind,
    chain: &'a ChainId,
    seq_le: &'a [u8; 8],
    prev: &'a Hash,
    payload: &'a [u8],
) -> [&'a [u8]; 5] {
    [kind.domain(), chain.as_bytes(), seq_le, prev, payload]
}

/// Append the message [`frame_hash`] hashes to `buf`.
pub(crate) fn push_frame_message(
    buf: &mut Vec<u8>,
    kind: FrameKind,
    chain: &ChainId,
    seq: u64,
    prev: &Hash,
    payload: &[u8],
) {
    for p in frame_message(kind, chain, &seq.to_le_bytes(), prev, payload) {
        buf.extend_from_slice(p);
    }
}

/// The hash of a record frame (the chain hash of the record).
pub fn record_hash(chain: &ChainId, seq: u64, prev: &Hash, payload: &[u8]) -> Hash {
    frame_hash(FrameKind::Record, chain, seq, prev, payload)
}

/// The 4-byte check over a frame's kind, length and seq (bytes 0..13 of the frame).
pub(crate) fn head_check(head: &[u8]) -> [u8; 4] {
    // A frame's 13 bytes and the domain fit one block: hashed from a stack buffer,
    // `blake3::hash` is one compression, without a `Hasher`'s set-up and two updates.
    let d = if head.len() == 13 {
        blake3::hash(&head_check_message(head))
    } else {
        let mut h = blake3::Hasher::new();
        h.update(HEAD_DOMAIN);
        h.update(head);
        h.finalize()
    };
    let b = d.as_bytes();
    [b[0], b[1], b[2], b[3]]
}

/// The domain of the frame-head check.
const HEAD_DOMAIN: &[u8; 21] = b"kiroku/v1/frame-head\0";

/// What the check of a frame's 13 head bytes hashes: the domain, then those bytes.
fn head_check_message(head: &[u8]) -> [u8; 34] {
    let mut m = [0u8; 34];
    m[..21].copy_from_slice(HEAD_DOMAIN);
    m[21..].copy_from_slice(&head[..13]);
    m
}

#[cfg(test)]
mod tests;
