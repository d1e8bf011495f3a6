//! Records serialised by the caller of [`Journal::append`](super::Journal::append), so
//! that the writer thread, which every record of a chain passes through, only splices
//! in the seq it assigns.
//!
//! Serialising a 1 KiB record and freeing its fields took about a third of the writer's
//! time per appended record. The record's JSON holds its `seq`, which only the writer
//! knows; the caller writes `"seq":0` and remembers where the digit is, and the writer
//! copies the bytes around its seq. The result is byte for byte what serialising the
//! record with its seq gives (tested below). Records from the layer do not come this
//! way: their finisher (extraction, redaction) runs on the writer and sees the seq.
//!
//! The buffers go back to the callers through [`Buffers`]: a buffer allocated by the
//! caller's thread and freed by the writer's makes the two threads contend for glibc's
//! arena lock. That lock was where the writer blocked in nearly four context switches of
//! five (`perf record -e sched:sched_switch`, `cargo bench -p kiroku --bench journal`).

use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiroku_schemas::record::RecordError;
use kiroku_schemas::{AuditRecord, ChainId};

/// Buffers for records' JSON, handed back by the writer for the next records.
#[derive(Debug, Default)]
pub(crate) struct Buffers {
    free: Mutex<Vec<Vec<u8>>>,
    /// The length of the last record's JSON, to size a new buffer in one allocation.
    last_len: AtomicUsize,
}

impl Buffers {
    /// Buffers kept for reuse; more are freed.
    const KEEP: usize = 1024;
    /// Larger buffers are freed rather than kept (one huge record must not pin memory).
    const KEEP_CAPACITY: usize = 64 << 10;

    /// An empty buffer: a kept one (as large as an earlier record), or a new one with
    /// room for a record like the last one.
    fn take(&self) -> Vec<u8> {
        self.free.lock().ok().and_then(|mut f| f.pop()).unwrap_or_else(|| {
            let hint = self.last_len.load(Ordering::Relaxed);
            Vec::with_capacity(hint + hint / 8 + 32)
        })
    }

    /// Keep `spent`'s buffers (emptied) for the next records; `spent` is left empty.
    pub(crate) fn recycle(&self, spent: &mut Vec<Vec<u8>>) {
        if let Ok(mut free) = self.free.lock() {
            for mut b in spent.drain(..) {
                if free.len() >= Self::KEEP {
                    break;
                }
                if b.capacity() <= Self::KEEP_CAPACITY {
                    b.clear();
                    free.push(b);
                }
            }
        }
        spent.clear();
    }

    #[cfg(test)]
    fn kept(&self) -> usize {
        self.free.lock().map(|f| f.len()).unwrap_or(0)
    }
}

/// A record's JSON with `"seq":0` where the writer's seq goes.
pub(crate) struct Encoded {
    json: Vec<u8>,
    seq_digit: usize,
}

impl Encoded {
    /// `record` as it will be stored in `chain`. The record is handed back if its JSON
    /// has no `,"seq":0,` (never for records this crate serialises: `seq` follows the
    /// three string fields before it, and `,"` cannot occur inside a JSON string).
    /// The buffer comes from `buffers`, sized in one allocation when it is new (growing
    /// it from serde_json's default was a fifth of this function).
    pub(crate) fn new(mut record: AuditRecord, chain: ChainId, buffers: &Buffers) -> Result<Self, Box<AuditRecord>> {
        const MARK: &[u8] = b",\"seq\":0,";
        record.chain_id = chain;
        record.seq = 0;
        // The writer states losses in the chain; a record never brings its own count.
        record.records_lost_before = 0;
        let mut json = buffers.take();
        record.write_json(&mut json);
        buffers.last_len.store(json.len(), Ordering::Relaxed);
        // A window-by-window comparison here was 3% of the journal bench's samples.
        match memchr::memmem::find(&json, MARK) {
            Some(at) => Ok(Self { json, seq_digit: at + MARK.len() - 2 }),
            None => Err(Box::new(record)),
        }
    }

    /// Append the stored bytes of the record at `seq` to `out`.
    pub(crate) fn write(&self, seq: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.json[..self.seq_digit]);
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{seq}");
        out.extend_from_slice(&self.json[self.seq_digit + 1..]);
    }

    /// The buffer, for [`Buffers::recycle`].
    pub(crate) fn into_buffer(self) -> Vec<u8> {
        self.json
    }

    /// The record back, for the rare record that must carry a loss count.
    pub(crate) fn decode(&self) -> Result<AuditRecord, RecordError> {
        AuditRecord::from_json(&self.json)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiroku_schemas::Timestamp;

    #[test]
    fn the_spliced_bytes_are_the_serialised_record() {
        let chain = ChainId([9; 16]);
        let mut r = AuditRecord::new(",\"seq\":0,", Timestamp::from_unix_nanos(1_795_305_430_123_456_789));
        r.attributes.insert("seq".into(), ",\"seq\":0,".into());
        r.records_lost_before = 4;
        let e = Encoded::new(r.clone(), chain, &Buffers::default()).map_err(|_| ()).unwrap();
        for seq in [0, 1, 9, 10, 12_345, u64::MAX] {
            let mut out = b"prefix".to_vec();
            e.write(seq, &mut out);
            let mut want = r.clone();
            (want.chain_id, want.seq, want.records_lost_before) = (chain, seq, 0);
            assert_eq!(&out[6..], want.to_json(), "seq {seq}");
            assert_eq!(AuditRecord::from_json(&out[6..]).unwrap(), want);
        }
        assert_eq!(e.decode().unwrap().record_id, ",\"seq\":0,");
    }

    #[test]
    fn buffers_come_back_emptied_and_huge_ones_are_not_kept() {
        let buffers = Buffers::default();
        let chain = ChainId([1; 16]);
        let record = |n: usize| {
            let mut r = AuditRecord::new("r", Timestamp::from_unix_nanos(0));
            r.attributes.insert("pad".into(), "x".repeat(n));
            r
        };
        let small = Encoded::new(record(100), chain, &buffers).map_err(|_| ()).unwrap();
        let huge = Encoded::new(record(100 << 10), chain, &buffers).map_err(|_| ()).unwrap();
        let small_ptr = small.json.as_ptr();
        buffers.recycle(&mut vec![small.into_buffer(), huge.into_buffer()]);
        assert_eq!(buffers.kept(), 1, "the 100 KiB buffer is freed, not kept");
        let again = Encoded::new(record(100), chain, &buffers).map_err(|_| ()).unwrap();
        assert_eq!(again.json.as_ptr(), small_ptr, "the kept buffer is reused");
        let mut want = record(100);
        want.chain_id = chain;
        let mut out = Vec::new();
        again.write(0, &mut out);
        assert_eq!(out, want.to_json(), "nothing of the earlier record is left in it");
        assert_eq!(buffers.kept(), 0);
    }
}
