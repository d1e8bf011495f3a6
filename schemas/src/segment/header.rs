//! The segment header.

use super::{FORMAT_VERSION, MAGIC, Problem, SegmentError};
use crate::digest::ZERO_HASH;
use crate::merkle::CompactRange;
use crate::{ChainId, Hash};

const DOMAIN: &[u8] = b"kiroku/v1/header\0";
/// Bytes of the header before the frontier hashes.
pub(crate) const FIXED_LEN: usize = 69;

/// Where a segment sits in its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The chain.
    pub chain_id: ChainId,
    /// Seq of the first record in this segment (= records in earlier segments).
    pub first_seq: u64,
    /// Hash of the last record of the previous segment (zeros when `first_seq == 0`).
    pub prev_hash: Hash,
    /// Merkle compact range of records `[0, first_seq)`.
    pub frontier: CompactRange,
}

impl SegmentHeader {
    /// The header of a chain's first segment.
    pub fn genesis(chain_id: ChainId) -> Self {
        Self { chain_id, first_seq: 0, prev_hash: ZERO_HASH, frontier: CompactRange::new() }
    }

    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> usize {
        FIXED_LEN + 32 * self.frontier.hashes().len() + 32
    }

    /// The header bytes, ending with the header hash.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(self.encoded_len());
        b.extend_from_slice(&MAGIC);
        b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(self.chain_id.as_bytes());
        b.extend_from_slice(&self.first_seq.to_le_bytes());
        b.extend_from_slice(&self.prev_hash);
        b.push(self.frontier.hashes().len() as u8);
        for h in self.frontier.hashes() {
            b.extend_from_slice(h);
        }
        let hh = header_hash(&b);
        b.extend_from_slice(&hh);
        b
    }

    /// The header hash (last 32 bytes of [`encode`](Self::encode)), which the first
    /// checkpoint frame links to.
    pub fn hash(&self) -> Hash {
        let b = self.encode();
        let mut h = [0u8; 32];
        h.copy_from_slice(&b[b.len() - 32..]);
        h
    }

    /// Decode the fixed part (`FIXED_LEN` bytes); returns the frontier count to read next.
    pub(crate) fn decode_fixed(b: &[u8; FIXED_LEN]) -> Result<(ChainId, u64, Hash, usize), SegmentError> {
        let bad = |p| SegmentError::at(0, None, p);
        if b[..8] != MAGIC {
            return Err(bad(Problem::BadMagic));
        }
        let version = u16::from_le_bytes([b[8], b[9]]);
        if version != FORMAT_VERSION {
            return Err(bad(Problem::UnsupportedVersion(version)));
        }
        if b[10..12] != [0, 0] {
            return Err(bad(Problem::BadHeader("reserved flags are not zero")));
        }
        let mut chain = [0u8; 16];
        chain.copy_from_slice(&b[12..28]);
        let first_seq = u64::from_le_bytes(b[28..36].try_into().unwrap_or_default());
        let mut prev = [0u8; 32];
        prev.copy_from_slice(&b[36..68]);
        let n = b[68] as usize;
        if n != first_seq.count_ones() as usize {
            return Err(bad(Problem::BadHeader("frontier length does not match first_seq")));
        }
        if first_seq == 0 && prev != ZERO_HASH {
            return Err(bad(Problem::BadHeader("first segment of a chain with a non-zero prev hash")));
        }
        Ok((ChainId(chain), first_seq, prev, n))
    }

    /// Assemble and check a header from its decoded parts and the raw bytes read.
    pub(crate) fn finish_decode(
        raw: &[u8],
        chain_id: ChainId,
        first_seq: u64,
        prev_hash: Hash,
        frontier: Vec<Hash>,
    ) -> Result<Self, SegmentError> {
        let (body, stored) = raw.split_at(raw.len() - 32);
        if header_hash(body) != stored {
            return Err(SegmentError::at(0, None, Problem::BadHeader("header hash does not match")));
        }
        let frontier = CompactRange::from_parts(first_seq, frontier)
            .ok_or_else(|| SegmentError::at(0, None, Problem::BadHeader("frontier length does not match first_seq")))?;
        Ok(Self { chain_id, first_seq, prev_hash, frontier })
    }
}

fn header_hash(body: &[u8]) -> Hash {
    let mut h = blake3::Hasher::new();
    h.update(DOMAIN);
    h.update(body);
    *h.finalize().as_bytes()
}
