//! Streaming segment reader.

use std::io::{self, Read};

use super::header::FIXED_LEN;
use super::{FRAME_HEAD_LEN, FRAME_TAIL_LEN, FrameKind, MAX_PAYLOAD, Problem, SegmentError, SegmentHeader, head_check};
use crate::Hash;

/// One frame as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Byte offset of the frame in the file.
    pub offset: u64,
    /// Kind.
    pub kind: FrameKind,
    /// Record seq, or tree size for checkpoint and seal frames.
    pub seq: u64,
    /// The hash this frame links to.
    pub prev: Hash,
    /// Payload bytes (record JSON or signed checkpoint note).
    pub payload: Vec<u8>,
    /// Stored hash.
    pub hash: Hash,
}

impl Frame {
    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> u64 {
        (FRAME_HEAD_LEN + self.payload.len() + FRAME_TAIL_LEN) as u64
    }

    /// A borrowed view of this frame.
    pub fn as_ref(&self) -> FrameRef<'_> {
        FrameRef {
            offset: self.offset,
            kind: self.kind,
            seq: self.seq,
            prev: self.prev,
            payload: &self.payload,
            hash: self.hash,
        }
    }
}

/// A frame whose payload is borrowed from the reader's buffer (see
/// [`SegmentReader::next_frame_ref`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// Byte offset of the frame in the file.
    pub offset: u64,
    /// Kind.
    pub kind: FrameKind,
    /// Record seq, or tree size for checkpoint and seal frames.
    pub seq: u64,
    /// The hash this frame links to.
    pub prev: Hash,
    /// Payload bytes.
    pub payload: &'a [u8],
    /// Stored hash.
    pub hash: Hash,
}

impl FrameRef<'_> {
    /// Encoded length in bytes.
    pub fn encoded_len(&self) -> u64 {
        (FRAME_HEAD_LEN + self.payload.len() + FRAME_TAIL_LEN) as u64
    }

    /// An owned copy.
    pub fn to_owned(&self) -> Frame {
        Frame {
            offset: self.offset,
            kind: self.kind,
            seq: self.seq,
            prev: self.prev,
            payload: self.payload.to_vec(),
            hash: self.hash,
        }
    }
}

/// Iterates the frames of a segment from any `Read`, one at a time. Give it a
/// `BufReader` for files: it issues small reads.
///
/// Errors carry the byte offset of the frame. A frame cut short by the end of the input
/// is [`Problem::TornTail`]; a frame whose head fails its check is
/// [`Problem::BadFrameHead`], unless everything from there to the end is zero bytes
/// (space allocated by the file system but never written), which is a torn tail too.
pub struct SegmentReader<R> {
    inner: R,
    header: SegmentHeader,
    header_len: u64,
    offset: u64,
    failed: bool,
    buf: Vec<u8>,
    payload_len: usize,
    /// With [`defer_head_checks`](Self::defer_head_checks): the offset and first 17
    /// bytes of each frame read, checked later, many at once.
    deferred: Option<Vec<(u64, [u8; 17])>>,
}

impl<R: Read> SegmentReader<R> {
    /// Read and check the header.
    pub fn open(mut inner: R) -> Result<Self, SegmentError> {
        let mut fixed = [0u8; FIXED_LEN];
        let got = read_full(&mut inner, &mut fixed).map_err(|e| io_err(0, e))?;
        if got < FIXED_LEN {
            if got >= 8 && fixed[..8] != super::MAGIC {
                return Err(SegmentError::at(0, None, Problem::BadMagic));
            }
            return Err(SegmentError::at(0, None, Problem::TornTail(got as u64)));
        }
        let (chain_id, first_seq, prev_hash, n) = SegmentHeader::decode_fixed(&fixed)?;
        let mut raw = Vec::with_capacity(FIXED_LEN + 32 * n + 32);
        raw.extend_from_slice(&fixed);
        raw.resize(FIXED_LEN + 32 * n + 32, 0);
        let got = read_full(&mut inner, &mut raw[FIXED_LEN..]).map_err(|e| io_err(0, e))?;
        if FIXED_LEN + got < raw.len() {
            return Err(SegmentError::at(0, None, Problem::TornTail((FIXED_LEN + got) as u64)));
        }
        let frontier =
            raw[FIXED_LEN..FIXED_LEN + 32 * n].chunks_exact(32).map(|c| c.try_into().unwrap_or_default()).collect();
        let header = SegmentHeader::finish_decode(&raw, chain_id, first_seq, prev_hash, frontier)?;
        let header_len = raw.len() as u64;
        Ok(Self {
            inner,
            header,
            header_len,
            offset: header_len,
            failed: false,
            buf: Vec::new(),
            payload_len: 0,
            deferred: None,
        })
    }

    /// The segment header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// Do not check each frame head as it is read: keep it, and check all of them later
    /// with [`check_deferred_heads`](Self::check_deferred_heads), side by side (a
    /// frame head's check is one blake3 compression; sixteen cost about what one does).
    ///
    /// Until that check passes, nothing read is trusted: a frame, or an error, may come
    /// from a head that fails its check (a wrong length or kind read as if it were
    /// right). When every head passes, the frames and the error (if any) are exactly
    /// those of a reader that checks as it goes. When one fails, read the segment again
    /// without deferring to learn the problem: which it is (a bad head, or a torn tail
    /// of zero bytes) depends on what follows.
    ///
    /// ```
    /// use kiroku_schemas::ChainId;
    /// use kiroku_schemas::segment::{SegmentHeader, SegmentReader, SegmentWriter};
    ///
    /// let mut w = SegmentWriter::new(Vec::new(), SegmentHeader::genesis(ChainId([1; 16]))).unwrap();
    /// for i in 0..100u32 {
    ///     w.append_record(format!("{{\"n\":{i}}}").as_bytes()).unwrap();
    /// }
    /// let mut bytes = w.into_inner();
    /// let read = |bytes: &[u8]| {
    ///     let mut r = SegmentReader::open(bytes).unwrap();
    ///     r.defer_head_checks();
    ///     while let Ok(Some(_)) = r.next_frame_ref() {}
    ///     r.check_deferred_heads()
    /// };
    /// assert_eq!(read(&bytes), Ok(()));
    /// // A flipped length byte in the last frame's head: that frame is named.
    /// let last = SegmentReader::open(&bytes[..]).unwrap().last().unwrap().unwrap().offset;
    /// bytes[last as usize + 1] ^= 1;
    /// assert_eq!(read(&bytes), Err(last));
    /// ```
    pub fn defer_head_checks(&mut self) {
        self.deferred.get_or_insert_with(Vec::new);
    }

    /// Check the frame heads deferred so far: `Err(offset)` of the first frame whose
    /// head fails.
    pub fn check_deferred_heads(&mut self) -> Result<(), u64> {
        let Some(heads) = self.deferred.as_mut() else { return Ok(()) };
        let mut messages = Vec::new();
        for batch in heads.chunks(1024) {
            messages.clear();
            messages.extend(batch.iter().map(|(_, h)| super::head_check_message(&h[..13])));
            let refs: Vec<&[u8]> = messages.iter().map(|m| &m[..]).collect();
            let digests = crate::digest::blake3_many(&refs);
            if let Some(((at, _), _)) = batch.iter().zip(&digests).find(|((_, h), d)| d[..4] != h[13..17]) {
                return Err(*at);
            }
        }
        heads.clear();
        Ok(())
    }

    /// The input, positioned after what was read.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Length of the header in bytes (offset of the first frame).
    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Offset of the next frame (= bytes of complete frames read so far, plus the header).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame, `None` at a clean end. After an error the reader returns `None`.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SegmentError> {
        Ok(self.next_frame_ref()?.map(|f| f.to_owned()))
    }

    /// The next frame, borrowing its payload from a buffer the reader reuses (no
    /// allocation per frame). `None` at a clean end; after an error, `None`.
    pub fn next_frame_ref(&mut self) -> Result<Option<FrameRef<'_>>, SegmentError> {
        if self.failed {
            return Ok(None);
        }
        match self.read_frame() {
            Ok(Some((at, kind, seq, prev, hash))) => {
                let payload = &self.buf[..self.payload_len];
                Ok(Some(FrameRef { offset: at, kind, seq, prev, payload, hash }))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn read_frame(&mut self) -> Result<Option<(u64, FrameKind, u64, Hash, Hash)>, SegmentError> {
        let at = self.offset;
        let mut head = [0u8; FRAME_HEAD_LEN];
        let got = read_full(&mut self.inner, &mut head).map_err(|e| io_err(at, e))?;
        if got == 0 {
            return Ok(None);
        }
        if got < 17 {
            return Err(SegmentError::at(at, None, Problem::TornTail(got as u64)));
        }
        match &mut self.deferred {
            Some(heads) => heads.push((at, head[..17].try_into().unwrap_or_default())),
            None if head_check(&head[..13]) != head[13..17] => {
                return Err(self.corrupt_or_zero_tail(at, &head[..got], Problem::BadFrameHead));
            }
            None => {}
        }
        if got < FRAME_HEAD_LEN {
            return Err(SegmentError::at(at, None, Problem::TornTail(got as u64)));
        }
        let kind_byte = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
        let seq = u64::from_le_bytes(head[5..13].try_into().unwrap_or_default());
        let kind = FrameKind::from_byte(kind_byte)
            .ok_or_else(|| SegmentError::at(at, Some(seq), Problem::UnknownFrameKind(kind_byte)))?;
        if len > MAX_PAYLOAD {
            return Err(SegmentError::at(at, Some(seq), Problem::FrameTooLarge(len)));
        }
        let mut prev = [0u8; 32];
        prev.copy_from_slice(&head[17..49]);
        let body_len = len as usize + FRAME_TAIL_LEN;
        if self.buf.len() < body_len {
            self.buf.resize(body_len, 0);
        }
        let got_body = read_full(&mut self.inner, &mut self.buf[..body_len]).map_err(|e| io_err(at, e))?;
        if got_body < body_len {
            return Err(SegmentError::at(at, Some(seq), Problem::TornTail((FRAME_HEAD_LEN + got_body) as u64)));
        }
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&self.buf[len as usize..body_len]);
        self.payload_len = len as usize;
        self.offset += (FRAME_HEAD_LEN + body_len) as u64;
        Ok(Some((at, kind, seq, prev, hash)))
    }

    /// A frame head that fails its check is corruption, unless it and everything after it
    /// is zero: then it is space the file system extended but the crash never filled.
    fn corrupt_or_zero_tail(&mut self, at: u64, seen: &[u8], problem: Problem) -> SegmentError {
        if seen.iter().all(|b| *b == 0) {
            let mut rest = 0u64;
            let mut buf = [0u8; 8192];
            loop {
                match self.inner.read(&mut buf) {
                    Ok(0) => {
                        return SegmentError::at(at, None, Problem::TornTail(seen.len() as u64 + rest));
                    }
                    Ok(n) if buf[..n].iter().all(|b| *b == 0) => rest += n as u64,
                    Ok(_) => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return io_err(at, e),
                }
            }
        }
        SegmentError::at(at, None, problem)
    }
}

impl<R: Read> Iterator for SegmentReader<R> {
    type Item = Result<Frame, SegmentError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_frame().transpose()
    }
}

/// Read until `buf` is full or the input ends; returns the bytes read.
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

fn io_err(at: u64, e: io::Error) -> SegmentError {
    SegmentError::at(at, None, Problem::Io(e.to_string()))
}
