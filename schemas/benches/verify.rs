//! Segment verification and writing throughput.
//!
//! `cargo bench -p kiroku-schemas --bench verify`
//!
//! The verify bench checks ~100 MB sealed segments of 1, 4 and 16 KiB records in memory
//! (frame parsing, blake3 chain hashes, SHA-256 Merkle leaves, checkpoint signatures);
//! the baseline is a bare blake3 pass over the same bytes in the same run.

use std::sync::OnceLock;

use divan::Bencher;
use divan::counter::BytesCount;
use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::segment::{
    ComputedHash, FrameKind, FrameRef, SegmentHeader, SegmentWriter, VerifyOptions, verify_segment,
};
use kiroku_schemas::{ChainId, Timestamp};

fn main() {
    divan::main();
}

const SEGMENT_BYTES: usize = 100 << 20;
const SIZES: [usize; 3] = [1024, 4096, 16384];

fn signer() -> NoteSigner {
    NoteSigner::from_seed("bench", [1; 32]).expect("valid name")
}

fn payload(i: usize, size: usize) -> Vec<u8> {
    let mut p = format!("{{\"schema_version\":\"1.0\",\"seq\":{i},\"pad\":\"").into_bytes();
    p.resize(size - 2, b'a');
    p.extend_from_slice(b"\"}");
    p
}

/// A sealed ~100 MB segment of `size`-byte records, a checkpoint every 10 MB.
fn segment(size: usize) -> &'static [u8] {
    static SEGS: OnceLock<Vec<(usize, Vec<u8>)>> = OnceLock::new();
    let segs = SEGS.get_or_init(|| {
        SIZES
            .iter()
            .map(|&size| {
                let s = signer();
                let records = SEGMENT_BYTES / size;
                let mut w = SegmentWriter::new(
                    Vec::with_capacity(SEGMENT_BYTES + (10 << 20)),
                    SegmentHeader::genesis(ChainId([7; 16])),
                )
                .expect("vec write");
                for i in 0..records {
                    w.append_record(&payload(i, size)).expect("vec write");
                    if (i + 1) % (records / 10) == 0 {
                        w.append_checkpoint(&s, "kiroku", Timestamp::from_unix_nanos(0)).expect("vec write");
                    }
                }
                (size, w.seal(&s, "kiroku", Timestamp::from_unix_nanos(1)).expect("vec write"))
            })
            .collect()
    });
    segs.iter().find(|(s, _)| *s == size).map(|(_, b)| b.as_slice()).expect("size benchmarked")
}

/// Full verification: frames, blake3 chain hashes, Merkle tree, checkpoint signatures.
#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn verify_100mb_segment(b: Bencher<'_, '_>, record_size: usize) {
    let seg = segment(record_size);
    let opts = VerifyOptions::sealed().with_verifier(signer().verifier());
    b.counter(BytesCount::new(seg.len())).bench(|| {
        let r = verify_segment(divan::black_box(seg), &opts).expect("valid segment");
        assert_eq!(r.records, (SEGMENT_BYTES / record_size) as u64);
    });
}

/// Baseline: one blake3 pass over the same bytes (multi-chunk SIMD, the fastest blake3 gets).
#[divan::bench(args = SIZES, sample_count = 10, sample_size = 1)]
fn baseline_blake3_whole_file(b: Bencher<'_, '_>, record_size: usize) {
    let seg = segment(record_size);
    b.counter(BytesCount::new(seg.len())).bench(|| blake3::hash(divan::black_box(seg)));
}

/// Bound: blake3 of one frame's hash input alone (what the format requires per record).
#[divan::bench(args = SIZES)]
fn bound_blake3_one_record(b: Bencher<'_, '_>, record_size: usize) {
    let p = payload(1, record_size);
    b.counter(BytesCount::new(record_size))
        .bench(|| kiroku_schemas::segment::record_hash(&ChainId([1; 16]), 5, &[0; 32], divan::black_box(&p)));
}

/// Baseline for `bound_blake3_one_record`: the same hash fed piece by piece (prefix,
/// then payload), as `frame_hash` did before it hashed one contiguous copy.
#[divan::bench(args = SIZES)]
fn baseline_record_hash_in_pieces(b: Bencher<'_, '_>, record_size: usize) {
    let p = payload(1, record_size);
    b.counter(BytesCount::new(record_size)).bench(|| {
        let mut h = blake3::Hasher::new();
        h.update(b"kiroku/v1/record\0");
        h.update(&[1; 16]);
        h.update(&5u64.to_le_bytes());
        h.update(&[0; 32]);
        h.update(divan::black_box(&p));
        *h.finalize().as_bytes()
    });
}

/// 1,024 frames of the same chain, as a reader holding a segment's frames has them.
fn frames_of(record_size: usize) -> Vec<(u64, Vec<u8>)> {
    (0..1024).map(|i| (i as u64, payload(i, record_size))).collect()
}

/// The hashes of 1,024 record frames side by side (`ComputedHash::of_all`, what the
/// collector computes per chunk of records).
#[divan::bench(args = SIZES)]
fn hash_1024_frames_side_by_side(b: Bencher<'_, '_>, record_size: usize) {
    let frames = frames_of(record_size);
    let refs: Vec<FrameRef<'_>> = frames.iter().map(|(seq, p)| frame_ref(*seq, p)).collect();
    b.counter(BytesCount::new(record_size * frames.len()))
        .bench(|| ComputedHash::of_all(&ChainId([1; 16]), divan::black_box(&refs)));
}

/// Baseline for `hash_1024_frames_side_by_side`: the same 1,024 hashes one frame at a
/// time (`ComputedHash::of`).
#[divan::bench(args = SIZES)]
fn baseline_hash_1024_frames_one_by_one(b: Bencher<'_, '_>, record_size: usize) {
    let frames = frames_of(record_size);
    let refs: Vec<FrameRef<'_>> = frames.iter().map(|(seq, p)| frame_ref(*seq, p)).collect();
    b.counter(BytesCount::new(record_size * frames.len()))
        .bench(|| divan::black_box(&refs).iter().map(|f| ComputedHash::of(&ChainId([1; 16]), f)).collect::<Vec<_>>());
}

fn frame_ref(seq: u64, payload: &[u8]) -> FrameRef<'_> {
    FrameRef { offset: seq * 2048, kind: FrameKind::Record, seq, prev: [3; 32], payload, hash: [0; 32] }
}

/// Writing 1 KiB records into memory.
#[divan::bench(sample_count = 10, sample_size = 1)]
fn write_100k_1kib_records(b: Bencher<'_, '_>) {
    let payloads: Vec<Vec<u8>> = (0..100_000).map(|i| payload(i, 1024)).collect();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    b.counter(BytesCount::new(bytes)).bench(|| {
        let mut w = SegmentWriter::new(Vec::with_capacity(110 << 20), SegmentHeader::genesis(ChainId([7; 16])))
            .expect("vec write");
        for p in &payloads {
            w.append_record(p).expect("vec write");
        }
        w.len()
    });
}
