//! Streaming segment writer.

use std::io::{self, Write};

use super::{ChainState, FRAME_HEAD_LEN, FrameKind, MAX_PAYLOAD, SegmentHeader, frame_hash, head_check};
use crate::checkpoint::{Checkpoint, CheckpointError, CheckpointSigner, sign_checkpoint};
use crate::{Hash, Timestamp};

/// Why an append failed. After an I/O error the writer refuses further appends: the
/// file's tail is unknown and must be recovered by reopening it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Writing to the underlying output failed at `offset`.
    #[error("write failed at byte offset {offset}: {source}")]
    Io {
        /// Offset of the frame being written.
        offset: u64,
        /// The I/O error.
        source: io::Error,
    },
    /// An earlier write failed; the writer is unusable.
    #[error("the segment writer failed earlier and accepts no more frames")]
    Poisoned,
    /// The payload is larger than a frame may hold.
    #[error("payload of {0} bytes exceeds the 16 MiB frame limit")]
    TooLarge(usize),
    /// Signing the checkpoint failed.
    #[error("signing the checkpoint failed: {0}")]
    Sign(#[from] CheckpointError),
}

/// Where an appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendedRecord {
    /// Its seq.
    pub seq: u64,
    /// Its chain hash.
    pub hash: Hash,
    /// Byte offset of its frame.
    pub offset: u64,
}

/// Appends frames to any `Write`. Buffering and fsync are the caller's: wrap a file in
/// a `BufWriter`, flush and sync per durability policy.
pub struct SegmentWriter<W: Write> {
    out: W,
    header: SegmentHeader,
    state: ChainState,
    last_link: Hash,
    offset: u64,
    records: u64,
    poisoned: bool,
}

impl<W: Write> SegmentWriter<W> {
    /// Start a new segment: writes the header.
    pub fn new(mut out: W, header: SegmentHeader) -> Result<Self, WriteError> {
        let bytes = header.encode();
        out.write_all(&bytes).map_err(|source| WriteError::Io { offset: 0, source })?;
        let last_link = header.hash();
        Ok(Self {
            state: ChainState::from_header(&header),
            header,
            out,
            last_link,
            offset: bytes.len() as u64,
            records: 0,
            poisoned: false,
        })
    }

    /// Continue a segment whose valid prefix was verified (after recovery cut a torn
    /// tail): `out` must be positioned at `report.valid_len`.
    pub fn resume(out: W, report: &super::SegmentReport) -> Self {
        Self {
            out,
            header: report.header.clone(),
            state: report.end.clone(),
            last_link: report.checkpoint_link,
            offset: report.valid_len,
            records: report.records,
            poisoned: false,
        }
    }

    /// The segment header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Chain state after the last appended record.
    pub fn state(&self) -> &ChainState {
        &self.state
    }

    /// Bytes written (header and frames).
    pub fn len(&self) -> u64 {
        self.offset
    }

    /// True when no frame has been written.
    pub fn is_empty(&self) -> bool {
        self.offset == self.header.encoded_len() as u64
    }

    /// Records appended to this segment.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The output, giving up the writer (without writing anything more).
    pub fn into_inner(self) -> W {
        self.out
    }

    /// The output.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The output, mutably (to flush or sync it).
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Append one record's payload (its exact JSON bytes).
    pub fn append_record(&mut self, payload: &[u8]) -> Result<AppendedRecord, WriteError> {
        let seq = self.state.next_seq;
        let prev = self.state.last_hash;
        let at = self.offset;
        let hash = self.write_frame(FrameKind::Record, seq, &prev, payload)?;
        self.state.tree.push(&hash);
        self.state.last_hash = hash;
        self.state.next_seq += 1;
        self.records += 1;
        Ok(AppendedRecord { seq, hash, offset: at })
    }

    /// Append a signed checkpoint of the chain so far; returns the note.
    pub fn append_checkpoint(
        &mut self,
        signer: &dyn CheckpointSigner,
        namespace: &str,
        time: Timestamp,
    ) -> Result<String, WriteError> {
        self.append_signed(FrameKind::Checkpoint, signer, namespace, time)
    }

    /// Append the seal frame and return the output. The caller flushes, fsyncs and
    /// renames the file.
    pub fn seal(mut self, signer: &dyn CheckpointSigner, namespace: &str, time: Timestamp) -> Result<W, WriteError> {
        self.append_signed(FrameKind::Seal, signer, namespace, time)?;
        Ok(self.out)
    }

    fn append_signed(
        &mut self,
        kind: FrameKind,
        signer: &dyn CheckpointSigner,
        namespace: &str,
        time: Timestamp,
    ) -> Result<String, WriteError> {
        if self.poisoned {
            return Err(WriteError::Poisoned);
        }
        let cp =
            Checkpoint::for_chain(namespace, self.header.chain_id, self.state.next_seq, self.state.tree.root(), time);
        let note = sign_checkpoint(&cp, signer)?;
        let prev = self.last_link;
        self.last_link = self.write_frame(kind, self.state.next_seq, &prev, note.as_bytes())?;
        Ok(note)
    }

    fn write_frame(&mut self, kind: FrameKind, seq: u64, prev: &Hash, payload: &[u8]) -> Result<Hash, WriteError> {
        if self.poisoned {
            return Err(WriteError::Poisoned);
        }
        if payload.len() > MAX_PAYLOAD as usize {
            return Err(WriteError::TooLarge(payload.len()));
        }
        let hash = frame_hash(kind, &self.header.chain_id, seq, prev, payload);
        let mut head = [0u8; FRAME_HEAD_LEN];
        head[0] = kind as u8;
        head[1..5].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        head[5..13].copy_from_slice(&seq.to_le_bytes());
        let check = head_check(&head[..13]);
        head[13..17].copy_from_slice(&check);
        head[17..49].copy_from_slice(prev);
        let at = self.offset;
        let res = self
            .out
            .write_all(&head)
            .and_then(|()| self.out.write_all(payload))
            .and_then(|()| self.out.write_all(&hash));
        if let Err(source) = res {
            self.poisoned = true;
            return Err(WriteError::Io { offset: at, source });
        }
        self.offset += (FRAME_HEAD_LEN + payload.len() + 32) as u64;
        Ok(hash)
    }
}
