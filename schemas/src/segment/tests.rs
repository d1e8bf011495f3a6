use proptest::prelude::*;

use super::*;
use crate::Timestamp;
use crate::checkpoint::NoteSigner;

/// Every verification in these tests runs four ways, which must give the same answer:
/// the real `verify_segment` (frames hashed side by side in batches of 256), the same
/// in batches of 3 (so that small segments cross batch boundaries), frame by frame
/// through [`SegmentVerifier::check`], and through [`SegmentVerifier::check_computed`]
/// with every frame's hash computed ahead.
fn verify_segment(input: &[u8], opts: &VerifyOptions) -> Result<SegmentReport, SegmentError> {
    let real = super::verify_segment(input, opts);
    let small_batches = verify::verify_in_batches(input, opts, 3);
    let one_by_one = verify_frame_by_frame(input, opts);
    let ahead = verify_with_hashes_ahead(input, opts);
    let real_s = format!("{real:?}");
    assert_eq!(real_s, format!("{small_batches:?}"), "batches of 256 and of 3 disagree");
    assert_eq!(real_s, format!("{one_by_one:?}"), "batched and frame-by-frame checks disagree");
    assert_eq!(real_s, format!("{ahead:?}"), "check and check_computed disagree");
    real
}

fn verify_frame_by_frame(input: &[u8], opts: &VerifyOptions) -> Result<SegmentReport, SegmentError> {
    let mut reader = SegmentReader::open(input)?;
    let mut v = SegmentVerifier::new(reader.header(), opts.clone())?;
    loop {
        match reader.next_frame_ref() {
            Ok(Some(f)) => v.check(&f)?,
            Ok(None) => return v.finish(reader.offset(), None),
            Err(e) if v.is_sealed() => return Err(SegmentError::at(e.offset, None, Problem::DataAfterSeal)),
            Err(e) if e.is_torn_tail() => return v.finish(reader.offset(), Some(e)),
            Err(e) => return Err(e),
        }
    }
}

fn verify_with_hashes_ahead(input: &[u8], opts: &VerifyOptions) -> Result<SegmentReport, SegmentError> {
    let mut reader = SegmentReader::open(input)?;
    let chain = reader.header().chain_id;
    let mut v = SegmentVerifier::new(reader.header(), opts.clone())?;
    let mut frames = Vec::new();
    let end = loop {
        match reader.next_frame() {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    // Side by side, as the collector computes them, and each the same as alone.
    let refs: Vec<FrameRef<'_>> = frames.iter().map(|f| f.as_ref()).collect();
    let hashes = ComputedHash::of_all(&chain, &refs);
    let alone: Vec<ComputedHash> = refs.iter().map(|f| ComputedHash::of(&chain, f)).collect();
    assert_eq!(hashes, alone);
    for (f, h) in frames.iter().zip(hashes) {
        v.check_computed(&f.as_ref(), h)?;
    }
    match end {
        None => v.finish(reader.offset(), None),
        Some(e) if v.is_sealed() => Err(SegmentError::at(e.offset, None, Problem::DataAfterSeal)),
        Some(e) if e.is_torn_tail() => v.finish(reader.offset(), Some(e)),
        Some(e) => Err(e),
    }
}

#[test]
fn a_hash_computed_for_another_frame_is_a_bad_hash() {
    let bytes = build(chain(1), &payloads(3), 0);
    let (_, fs) = frames(&bytes);
    let r = SegmentReader::open(&bytes[..]).unwrap();
    let mut v = SegmentVerifier::new(r.header(), sealed_opts()).unwrap();
    v.check_computed(&fs[0].as_ref(), ComputedHash::of(&chain(1), &fs[0].as_ref())).unwrap();
    // The right bytes, but computed for the frame at another offset.
    let mut moved = fs[1].clone();
    moved.offset = fs[0].offset;
    let err = v.check_computed(&fs[1].as_ref(), ComputedHash::of(&chain(1), &moved.as_ref())).unwrap_err();
    assert_eq!(err.problem, Problem::BadHash);
    // Computed with another chain id.
    let err = v.check_computed(&fs[1].as_ref(), ComputedHash::of(&chain(2), &fs[1].as_ref())).unwrap_err();
    assert_eq!((err.problem, err.offset), (Problem::BadHash, fs[1].offset));
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed("kiroku-test", [42; 32]).unwrap()
}

fn chain(n: u8) -> ChainId {
    ChainId([n; 16])
}

/// A sealed segment with a checkpoint after every `every` records.
fn build(chain_id: ChainId, payloads: &[Vec<u8>], every: usize) -> Vec<u8> {
    let s = signer();
    let mut w = SegmentWriter::new(Vec::new(), SegmentHeader::genesis(chain_id)).unwrap();
    for (i, p) in payloads.iter().enumerate() {
        w.append_record(p).unwrap();
        if every > 0 && (i + 1) % every == 0 {
            w.append_checkpoint(&s, "kiroku", Timestamp::from_unix_nanos(i as i64)).unwrap();
        }
    }
    w.seal(&s, "kiroku", Timestamp::from_unix_nanos(99)).unwrap()
}

fn frames(bytes: &[u8]) -> (u64, Vec<Frame>) {
    let mut r = SegmentReader::open(bytes).unwrap();
    let hl = r.header_len();
    let fs = r.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
    (hl, fs)
}

fn sealed_opts() -> VerifyOptions {
    VerifyOptions::sealed().with_verifier(signer().verifier())
}

fn payloads(n: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| format!("{{\"record\":{i},\"pad\":\"{}\"}}", "x".repeat(i % 7)).into_bytes()).collect()
}

/// Start offset of the frame (or header, 0) that contains byte `pos`.
fn owner(header_len: u64, fs: &[Frame], pos: u64) -> u64 {
    if pos < header_len {
        return 0;
    }
    fs.iter().rev().find(|f| f.offset <= pos).map_or(0, |f| f.offset)
}

#[test]
fn writes_and_reads_back() {
    let ps = payloads(10);
    let bytes = build(chain(1), &ps, 4);
    let (_, fs) = frames(&bytes);
    let recs: Vec<_> = fs.iter().filter(|f| f.kind == FrameKind::Record).collect();
    assert_eq!(recs.len(), 10);
    for (i, f) in recs.iter().enumerate() {
        assert_eq!(f.seq, i as u64);
        assert_eq!(f.payload, ps[i]);
    }
    assert_eq!(fs.iter().filter(|f| f.kind == FrameKind::Checkpoint).count(), 2);
    assert_eq!(fs.last().unwrap().kind, FrameKind::Seal);
    let report = verify_segment(&bytes[..], &sealed_opts()).unwrap();
    assert_eq!(report.records, 10);
    assert!(report.sealed && report.signatures_checked);
    assert_eq!(report.valid_len, bytes.len() as u64);
    let (cp, _) = report.last_checkpoint.unwrap();
    assert_eq!(cp.size, 10);
    assert_eq!(cp.root, report.end.tree.root());
}

#[test]
fn segments_continue_a_chain() {
    let s = signer();
    let mut w = SegmentWriter::new(Vec::new(), SegmentHeader::genesis(chain(2))).unwrap();
    for p in payloads(5) {
        w.append_record(&p).unwrap();
    }
    let state = w.state().clone();
    let first = w.seal(&s, "kiroku", Timestamp::from_unix_nanos(1)).unwrap();
    let mut w2 = SegmentWriter::new(Vec::new(), state.next_header()).unwrap();
    for p in payloads(3) {
        w2.append_record(&p).unwrap();
    }
    let second = w2.seal(&s, "kiroku", Timestamp::from_unix_nanos(2)).unwrap();

    let r1 = verify_segment(&first[..], &sealed_opts().continuing(ChainState::genesis(chain(2)))).unwrap();
    let r2 = verify_segment(&second[..], &sealed_opts().continuing(r1.end.clone())).unwrap();
    assert_eq!(r2.header.first_seq, 5);
    assert_eq!(r2.end.next_seq, 8);
    // The second segment alone verifies against its checkpoint thanks to the frontier.
    verify_segment(&second[..], &sealed_opts()).unwrap();

    // Out of order or against the wrong state: a discontinuity at the header.
    let err = verify_segment(&second[..], &sealed_opts().continuing(ChainState::genesis(chain(2)))).unwrap_err();
    assert!(matches!(err.problem, Problem::Discontinuity(_)), "{err}");
    assert_eq!(err.offset, 0);
    let err = verify_segment(&second[..], &sealed_opts().continuing(ChainState::genesis(chain(3)))).unwrap_err();
    assert!(matches!(err.problem, Problem::ChainIdMismatch { .. }), "{err}");
    let mut forged = r1.end.clone();
    forged.last_hash[0] ^= 1;
    let err = verify_segment(&second[..], &sealed_opts().continuing(forged)).unwrap_err();
    assert!(matches!(err.problem, Problem::Discontinuity(_)), "{err}");
}

#[test]
fn a_wrong_key_is_told_apart_from_a_bad_signature() {
    let bytes = build(chain(1), &payloads(3), 0);
    let other = NoteSigner::from_seed("kiroku-test", [1; 32]).unwrap();
    let err = verify_segment(&bytes[..], &VerifyOptions::sealed().with_verifier(other.verifier())).unwrap_err();
    assert!(matches!(err.problem, Problem::SignedByAnotherKey(_)), "{err}");
    // Without a key the content is still checked, and the report says signatures were not.
    let r = verify_segment(&bytes[..], &VerifyOptions::sealed()).unwrap();
    assert!(!r.signatures_checked);
}

#[test]
fn a_differently_keyed_chain_is_rejected() {
    // A validly hashed chain signed by another key, under the same chain id.
    let forger = NoteSigner::from_seed("kiroku-test", [7; 32]).unwrap();
    let mut w = SegmentWriter::new(Vec::new(), SegmentHeader::genesis(chain(1))).unwrap();
    for p in payloads(4) {
        w.append_record(&p).unwrap();
    }
    let bytes = w.seal(&forger, "kiroku", Timestamp::from_unix_nanos(3)).unwrap();
    let err = verify_segment(&bytes[..], &sealed_opts()).unwrap_err();
    assert!(matches!(err.problem, Problem::SignedByAnotherKey(_)), "{err}");
}

#[test]
fn torn_tail_is_reported_and_recoverable() {
    let ps = payloads(6);
    let bytes = build(chain(4), &ps, 0);
    let (_, fs) = frames(&bytes);
    let third = &fs[3];
    let cut = &bytes[..third.offset as usize + 20];
    // Sealed: an error at the torn frame.
    let err = verify_segment(cut, &sealed_opts()).unwrap_err();
    assert!(err.is_torn_tail());
    assert_eq!(err.offset, third.offset);
    // Open: the valid prefix and where the tail starts.
    let r = verify_segment(cut, &VerifyOptions::open().with_verifier(signer().verifier())).unwrap();
    assert_eq!(r.records, 3);
    assert_eq!(r.torn_tail, Some((third.offset, 20)));
    assert_eq!(r.valid_len, third.offset);
    // Resume after cutting the tail: the chain continues and verifies.
    let mut file = cut[..r.valid_len as usize].to_vec();
    let mut w = SegmentWriter::resume(&mut file, &r);
    w.append_record(b"{\"after\":\"recovery\"}").unwrap();
    w.seal(&signer(), "kiroku", Timestamp::from_unix_nanos(5)).unwrap();
    let r2 = verify_segment(&file[..], &sealed_opts()).unwrap();
    assert_eq!(r2.records, 4);
}

#[test]
fn zero_filled_tail_is_torn_not_corrupt() {
    let ps = payloads(3);
    let s = signer();
    let mut w = SegmentWriter::new(Vec::new(), SegmentHeader::genesis(chain(5))).unwrap();
    for p in &ps {
        w.append_record(p).unwrap();
    }
    w.append_checkpoint(&s, "kiroku", Timestamp::from_unix_nanos(0)).unwrap();
    let mut bytes = w.get_ref().clone();
    let end = bytes.len() as u64;
    bytes.extend_from_slice(&[0u8; 4096]);
    let r = verify_segment(&bytes[..], &VerifyOptions::open()).unwrap();
    assert_eq!(r.records, 3);
    assert_eq!(r.torn_tail.map(|t| t.0), Some(end));
    // Zeros followed by data are corruption, not a torn write.
    bytes.push(1);
    let err = verify_segment(&bytes[..], &VerifyOptions::open()).unwrap_err();
    assert_eq!(err.problem, Problem::BadFrameHead);
    assert_eq!(err.offset, end);
}

#[test]
fn data_after_seal_is_rejected() {
    let mut bytes = build(chain(6), &payloads(2), 0);
    let end = bytes.len() as u64;
    let extra = build(chain(6), &payloads(3), 0);
    let (_, fs) = frames(&extra);
    let f = &fs[2];
    bytes.extend_from_slice(&extra[f.offset as usize..(f.offset + f.encoded_len()) as usize]);
    let err = verify_segment(&bytes[..], &sealed_opts()).unwrap_err();
    assert_eq!(err.problem, Problem::DataAfterSeal);
    assert_eq!(err.offset, end);
}

#[test]
fn oversized_length_field_does_not_allocate() {
    let bytes = build(chain(7), &payloads(1), 0);
    let (hl, _) = frames(&bytes);
    let mut head = [0u8; FRAME_HEAD_LEN];
    head[0] = 1;
    head[1..5].copy_from_slice(&u32::MAX.to_le_bytes());
    let c = head_check(&head[..13]);
    head[13..17].copy_from_slice(&c);
    let mut forged = bytes[..hl as usize].to_vec();
    forged.extend_from_slice(&head);
    let err = verify_segment(&forged[..], &VerifyOptions::open()).unwrap_err();
    assert_eq!(err.problem, Problem::FrameTooLarge(u32::MAX));
}

#[test]
fn records_from_another_chain_are_rejected() {
    let ps = payloads(5);
    let a = build(chain(8), &ps, 0);
    let b = build(chain(9), &ps, 0);
    let (_, fa) = frames(&a);
    let (_, fb) = frames(&b);
    for k in 0..5 {
        let (fa, fb) = (&fa[k], &fb[k]);
        let mut spliced = a[..fa.offset as usize].to_vec();
        spliced.extend_from_slice(&b[fb.offset as usize..(fb.offset + fb.encoded_len()) as usize]);
        spliced.extend_from_slice(&a[(fa.offset + fa.encoded_len()) as usize..]);
        let err = verify_segment(&spliced[..], &sealed_opts()).unwrap_err();
        assert_eq!(err.offset, fa.offset, "{err}");
        assert_eq!(err.problem, Problem::BadHash, "{err}");
    }
}

fn splice_out(bytes: &[u8], f: &Frame) -> Vec<u8> {
    let mut out = bytes[..f.offset as usize].to_vec();
    out.extend_from_slice(&bytes[(f.offset + f.encoded_len()) as usize..]);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn any_records_round_trip(ps in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..40), every in 0usize..6) {
        let bytes = build(chain(10), &ps, every);
        let (_, fs) = frames(&bytes);
        let got: Vec<Vec<u8>> = fs.into_iter().filter(|f| f.kind == FrameKind::Record).map(|f| f.payload).collect();
        prop_assert_eq!(&got, &ps);
        let r = verify_segment(&bytes[..], &sealed_opts()).unwrap();
        prop_assert_eq!(r.records, ps.len() as u64);
    }

    #[test]
    fn every_byte_flip_is_located(n in 1usize..12, every in 0usize..4, pos_seed in any::<u64>(), bit in 0u8..8) {
        let bytes = build(chain(11), &payloads(n), every);
        let (hl, fs) = frames(&bytes);
        let pos = pos_seed % bytes.len() as u64;
        let mut bad = bytes.clone();
        bad[pos as usize] ^= 1 << bit;
        let err = verify_segment(&bad[..], &sealed_opts()).unwrap_err();
        prop_assert_eq!(err.offset, owner(hl, &fs, pos), "flip at {} gave {}", pos, err);
    }

    #[test]
    fn every_frame_deletion_is_detected(n in 1usize..12, every in 0usize..4, k_seed in any::<usize>()) {
        let bytes = build(chain(12), &payloads(n), every);
        let (_, fs) = frames(&bytes);
        let f = &fs[k_seed % fs.len()];
        let err = verify_segment(&splice_out(&bytes, f)[..], &sealed_opts()).unwrap_err();
        if f.kind == FrameKind::Record {
            prop_assert_eq!(err.offset, f.offset);
            let is_gap = matches!(err.problem, Problem::SeqGap { .. } | Problem::CheckpointMismatch(_));
            prop_assert!(is_gap, "{}", err);
        } else {
            // A dropped checkpoint is caught at the next checkpoint's link, or as a missing seal.
            prop_assert!(err.offset >= f.offset, "{}", err);
        }
    }

    #[test]
    fn every_swap_and_duplicate_is_detected(n in 2usize..12, every in 0usize..4, k_seed in any::<usize>()) {
        let bytes = build(chain(13), &payloads(n), every);
        let (_, fs) = frames(&bytes);
        let k = k_seed % (fs.len() - 1);
        let (a, b) = (&fs[k], &fs[k + 1]);
        let raw = |f: &Frame| bytes[f.offset as usize..(f.offset + f.encoded_len()) as usize].to_vec();
        let mut swapped = bytes[..a.offset as usize].to_vec();
        swapped.extend(raw(b));
        swapped.extend(raw(a));
        swapped.extend_from_slice(&bytes[(b.offset + b.encoded_len()) as usize..]);
        let err = verify_segment(&swapped[..], &sealed_opts()).unwrap_err();
        if a.kind == FrameKind::Record && b.kind == FrameKind::Record {
            prop_assert_eq!(err.offset, a.offset, "{}", err);
        } else {
            // A checkpoint moved past a record is caught where it now stands.
            prop_assert!(err.offset == a.offset || err.offset == a.offset + b.encoded_len(), "{}", err);
        }

        let mut dup = bytes[..b.offset as usize].to_vec();
        dup.extend(raw(a));
        dup.extend_from_slice(&bytes[b.offset as usize..]);
        let err = verify_segment(&dup[..], &sealed_opts()).unwrap_err();
        prop_assert_eq!(err.offset, b.offset, "{}", err);
    }

    #[test]
    fn every_truncation_is_detected(n in 1usize..10, every in 0usize..4, cut_seed in any::<u64>()) {
        let bytes = build(chain(14), &payloads(n), every);
        let (hl, fs) = frames(&bytes);
        let cut = cut_seed % bytes.len() as u64;
        let t = &bytes[..cut as usize];
        prop_assert!(verify_segment(t, &sealed_opts()).is_err());
        // Open mode keeps exactly the complete frames before the cut.
        match verify_segment(t, &VerifyOptions::open().with_verifier(signer().verifier())) {
            Ok(r) => {
                let complete = fs.iter().filter(|f| f.offset + f.encoded_len() <= cut && f.kind == FrameKind::Record).count() as u64;
                prop_assert_eq!(r.records, complete);
                let boundary = fs.iter().any(|f| f.offset == cut) || cut == hl;
                prop_assert_eq!(r.torn_tail.is_none(), boundary);
                prop_assert_eq!(r.torn_tail.map(|t| t.0), (!boundary).then(|| owner(hl, &fs, cut)));
            }
            Err(e) => {
                // Only a cut inside the header fails in open mode.
                prop_assert!(cut < hl && e.is_torn_tail(), "{}", e);
            }
        }
    }

    #[test]
    fn deferred_head_checks_agree_with_checking_in_place(
        n in 1usize..12,
        every in 0usize..4,
        pos_seed in any::<u64>(),
        bit in 0u8..8,
        flip in any::<bool>(),
        cut_seed in any::<u64>(),
        zeros in 0usize..200,
    ) {
        let mut bytes = build(chain(16), &payloads(n), every);
        if flip {
            let pos = pos_seed as usize % bytes.len();
            bytes[pos] ^= 1 << bit;
        }
        // Now and then cut short, or followed by zeros (a torn tail either way).
        if cut_seed % 3 == 0 {
            bytes.truncate(bytes.len() - (cut_seed / 3) as usize % 80);
        }
        if zeros % 3 == 0 {
            bytes.resize(bytes.len() + zeros, 0);
        }
        // A header that does not read is refused before any frame (deferring or not).
        if SegmentReader::open(&bytes[..]).is_err() {
            return Ok(());
        }
        let read = |defer: bool| {
            let mut r = SegmentReader::open(&bytes[..]).unwrap();
            if defer {
                r.defer_head_checks();
            }
            let (mut fs, mut end) = (Vec::new(), None);
            loop {
                match r.next_frame() {
                    Ok(Some(f)) => fs.push(f),
                    Ok(None) => break,
                    Err(e) => { end = Some(e); break; }
                }
            }
            (fs, end, r.check_deferred_heads())
        };
        let (fs, end, checked) = read(false);
        prop_assert_eq!(checked, Ok(()));
        let (dfs, dend, dchecked) = read(true);
        match dchecked {
            // Every head passed: exactly what checking in place reads.
            Ok(()) => {
                prop_assert_eq!(format!("{dfs:?}"), format!("{fs:?}"));
                prop_assert_eq!(format!("{dend:?}"), format!("{end:?}"));
            }
            // A head failed: checking in place stops at that very frame, with the frames
            // before it.
            Err(at) => {
                let e = end.expect("checking in place finds a problem too");
                prop_assert_eq!(e.offset, at, "{}", e);
                prop_assert!(matches!(e.problem, Problem::BadFrameHead | Problem::TornTail(_)), "{}", e);
                let before: Vec<&Frame> = dfs.iter().filter(|f| f.offset < at).collect();
                prop_assert_eq!(format!("{before:?}"), format!("{:?}", fs.iter().collect::<Vec<_>>()));
            }
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = verify_segment(&data[..], &VerifyOptions::open());
        let _ = verify_segment(&data[..], &sealed_opts());
        if let Ok(r) = SegmentReader::open(&data[..]) {
            for f in r.take(100) {
                if f.is_err() { break; }
            }
        }
    }

    #[test]
    fn valid_header_then_arbitrary_frames_never_panic(tail in prop::collection::vec(any::<u8>(), 0..3000)) {
        let mut data = SegmentHeader::genesis(chain(15)).encode();
        data.extend_from_slice(&tail);
        let _ = verify_segment(&data[..], &VerifyOptions::open());
        let _ = verify_segment(&data[..], &sealed_opts());
    }
}

#[test]
fn the_head_check_is_the_domain_separated_blake3_for_any_length() {
    for len in 0..80usize {
        let head: Vec<u8> = (0..len as u8).map(|b| b.wrapping_mul(37)).collect();
        let mut h = blake3::Hasher::new();
        h.update(b"kiroku/v1/frame-head\0");
        h.update(&head);
        assert_eq!(head_check(&head), h.finalize().as_bytes()[..4], "length {len}");
    }
}

#[test]
fn frames_too_long_to_batch_are_checked_in_their_place() {
    // Small frames (batched), 5 KiB ones (checked where they are read), mixed.
    let ps: Vec<Vec<u8>> =
        (0..20).map(|i| if i % 4 == 1 { vec![b'a' + i as u8; 5000] } else { payloads(i + 1).pop().unwrap() }).collect();
    let bytes = build(chain(16), &ps, 6);
    assert_eq!(verify_segment(&bytes[..], &sealed_opts()).unwrap().records, 20);
    let (_, fs) = frames(&bytes);
    let records: Vec<&Frame> = fs.iter().filter(|f| f.kind == FrameKind::Record).collect();
    // A flipped byte in a small frame right after a long one, and in a long one after
    // small ones: each is found at its own frame.
    for k in [2, 5, 9] {
        let f = records[k];
        let mut bad = bytes.clone();
        bad[f.offset as usize + f.encoded_len() as usize - 40] ^= 1;
        let err = verify_segment(&bad[..], &sealed_opts()).unwrap_err();
        assert_eq!(err.offset, f.offset, "frame {k}: {err}");
    }
}
