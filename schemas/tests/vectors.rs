//! Test vectors for independent verifiers (`schemas/vectors/`, described in FORMAT.md).
//!
//! The vectors are generated deterministically (fixed key seed, chain id and times;
//! Ed25519 signatures are deterministic) and compared byte for byte with the checked-in
//! files, so the format cannot drift without this test failing. After an intended format
//! change: `KIROKU_BLESS=1 cargo test -p kiroku-schemas --test vectors`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiroku_schemas::checkpoint::NoteSigner;
use kiroku_schemas::digest::to_hex;
use kiroku_schemas::merkle;
use kiroku_schemas::proof::TlogProof;
use kiroku_schemas::segment::{Frame, SegmentHeader, SegmentReader, SegmentWriter, VerifyOptions, verify_segment};
use kiroku_schemas::{ChainId, Timestamp};
use serde_json::json;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed("kiroku-test-vectors", [0x5a; 32]).unwrap()
}

const CHAIN: &str = "01936b2a-0000-7000-8000-000000000001";

fn t(n: i64) -> Timestamp {
    Timestamp::from_unix_nanos(1_795_305_600_000_000_000 + n)
}

fn record(seq: u64, text: &str) -> Vec<u8> {
    format!(
        r#"{{"schema_version":"1.0","record_id":"01936b2a-0000-7000-8000-0000000000{seq:02}","chain_id":"{CHAIN}","seq":{seq},"started_at":"{}","finished_at":"{}","http":{{"method":"POST","route":"/v1/chat/completions","status":200,"outcome":"completed","streaming":false,"request":{{"bytes":0,"capture":"none"}},"response":{{"bytes":{},"capture":"none"}}}},"gen_ai":{{"request":{{"model":"sample-1"}},"response":{{}},"usage":{{}}}},"provenance":{{"output_digest":"{}"}}}}"#,
        t(seq as i64 * 1000),
        t(seq as i64 * 1000 + 500),
        text.len(),
        kiroku_schemas::digest::blake3_hex(text.as_bytes())
    )
    .into_bytes()
}

struct Built {
    first: Vec<u8>,
    second: Vec<u8>,
}

fn build() -> Built {
    let chain: ChainId = CHAIN.parse().unwrap();
    let s = signer();
    let mut w = SegmentWriter::new(Vec::new(), SegmentHeader::genesis(chain)).unwrap();
    for seq in 0..3 {
        w.append_record(&record(seq, &format!("answer {seq}"))).unwrap();
    }
    w.append_checkpoint(&s, "kiroku", t(3_000)).unwrap();
    for seq in 3..5 {
        w.append_record(&record(seq, &format!("answer {seq}"))).unwrap();
    }
    let state = w.state().clone();
    let first = w.seal(&s, "kiroku", t(5_000)).unwrap();
    let mut w = SegmentWriter::new(Vec::new(), state.next_header()).unwrap();
    for seq in 5..7 {
        w.append_record(&record(seq, &format!("answer {seq}"))).unwrap();
    }
    let second = w.seal(&s, "kiroku", t(7_000)).unwrap();
    Built { first, second }
}

fn frames(bytes: &[u8]) -> (u64, Vec<Frame>) {
    let mut r = SegmentReader::open(bytes).unwrap();
    let hl = r.header_len();
    (hl, r.by_ref().collect::<Result<Vec<_>, _>>().unwrap())
}

fn describe(name: &str, bytes: &[u8]) -> serde_json::Value {
    let (hl, fs) = frames(bytes);
    let r = SegmentReader::open(bytes).unwrap();
    let h = r.header();
    json!({
        "file": name,
        "length": bytes.len(),
        "header": {
            "length": hl,
            "chain_id": h.chain_id.to_string(),
            "first_seq": h.first_seq,
            "prev_hash": to_hex(&h.prev_hash),
            "frontier": h.frontier.hashes().iter().map(|x| to_hex(x)).collect::<Vec<_>>(),
            "header_hash": to_hex(&h.hash()),
        },
        "frames": fs.iter().map(|f| json!({
            "offset": f.offset,
            "kind": f.kind as u8,
            "seq": f.seq,
            "payload_length": f.payload.len(),
            "prev": to_hex(&f.prev),
            "hash": to_hex(&f.hash),
        })).collect::<Vec<_>>(),
    })
}

/// Every file the vectors consist of, by name.
fn generate() -> BTreeMap<String, Vec<u8>> {
    let b = build();
    let s = signer();
    let mut out = BTreeMap::new();
    out.insert("signer.vkey".to_owned(), format!("{}\n", s.verifier().to_key_text()).into_bytes());
    out.insert("valid-0.seg".to_owned(), b.first.clone());
    out.insert("valid-5.seg".to_owned(), b.second.clone());

    // Merkle leaves, roots and a proof for seq 2 against the final checkpoint.
    let all: Vec<Frame> = [&b.first, &b.second]
        .iter()
        .flat_map(|x| frames(x).1)
        .filter(|f| f.kind == kiroku_schemas::segment::FrameKind::Record)
        .collect();
    let leaves: Vec<_> = all.iter().map(|f| merkle::leaf_hash(&f.hash)).collect();
    let (_, f2) = frames(&b.second);
    let seal_note = String::from_utf8(f2.last().unwrap().payload.clone()).unwrap();
    let proof = TlogProof {
        extra: None,
        index: 2,
        hashes: merkle::inclusion_proof(&leaves, 2).unwrap(),
        checkpoint: seal_note.clone(),
    };
    out.insert("seq-2.tlog-proof".to_owned(), proof.to_text().into_bytes());
    out.insert("checkpoint-7.note".to_owned(), seal_note.into_bytes());

    let expected = json!({
        "about": "Test vectors for kiroku segment format v1; see schemas/FORMAT.md. Generated by schemas/tests/vectors.rs.",
        "signer_seed_hex": "5a".repeat(32),
        "signer_vkey": s.verifier().to_key_text(),
        "segments": [describe("valid-0.seg", &b.first), describe("valid-5.seg", &b.second)],
        "record_hashes": all.iter().map(|f| to_hex(&f.hash)).collect::<Vec<_>>(),
        "merkle_leaf_hashes": leaves.iter().map(|x| to_hex(x)).collect::<Vec<_>>(),
        "merkle_roots_by_size": (0..=leaves.len()).map(|n| to_hex(&merkle::root_of(&leaves[..n]))).collect::<Vec<_>>(),
        "invalid": invalid_cases(&b).iter().map(|(name, bytes)| {
            let err = verify_segment(&bytes[..], &VerifyOptions::sealed().with_verifier(s.verifier())).unwrap_err();
            json!({"file": format!("invalid/{name}.seg"), "offset": err.offset, "seq": err.seq, "problem": format!("{:?}", err.problem).split(['(', ' ', '{']).next().unwrap(), "message": err.problem.to_string()})
        }).collect::<Vec<_>>(),
    });
    out.insert("expected.json".to_owned(), (serde_json::to_string_pretty(&expected).unwrap() + "\n").into_bytes());
    for (name, bytes) in invalid_cases(&b) {
        out.insert(format!("invalid/{name}.seg"), bytes);
    }
    out
}

fn invalid_cases(b: &Built) -> Vec<(&'static str, Vec<u8>)> {
    let bytes = &b.first;
    let (hl, fs) = frames(bytes);
    let raw = |f: &Frame| bytes[f.offset as usize..(f.offset + f.encoded_len()) as usize].to_vec();
    let flip = |pos: u64| {
        let mut v = bytes.clone();
        v[pos as usize] ^= 0x01;
        v
    };
    let f1 = &fs[1];
    let without = |f: &Frame| {
        let mut v = bytes[..f.offset as usize].to_vec();
        v.extend_from_slice(&bytes[(f.offset + f.encoded_len()) as usize..]);
        v
    };
    let mut swapped = bytes[..f1.offset as usize].to_vec();
    swapped.extend(raw(&fs[2]));
    swapped.extend(raw(f1));
    swapped.extend_from_slice(&bytes[(fs[2].offset + fs[2].encoded_len()) as usize..]);
    let seal = fs.last().unwrap();
    vec![
        ("bad-magic", flip(0)),
        ("header-flipped", flip(30)),
        ("payload-flipped", flip(f1.offset + 49 + 10)),
        ("hash-flipped", flip(f1.offset + f1.encoded_len() - 1)),
        ("length-flipped", flip(f1.offset + 1)),
        ("prev-flipped", flip(f1.offset + 20)),
        ("frame-deleted", without(f1)),
        ("frames-swapped", swapped),
        ("checkpoint-deleted", without(&fs[3])),
        ("signature-flipped", flip(seal.offset + seal.encoded_len() - 40)),
        ("torn-tail", bytes[..(seal.offset + 30) as usize].to_vec()),
        ("unsealed", bytes[..seal.offset as usize].to_vec()),
        ("header-truncated", bytes[..(hl - 5) as usize].to_vec()),
        ("other-key", forged_by_other_key()),
    ]
}

/// The same chain, validly hashed, but its checkpoints signed by another key of the
/// same name.
fn forged_by_other_key() -> Vec<u8> {
    let forger = NoteSigner::from_seed("kiroku-test-vectors", [0x66; 32]).unwrap();
    let mut w = SegmentWriter::new(Vec::new(), SegmentHeader::genesis(CHAIN.parse().unwrap())).unwrap();
    for seq in 0..3 {
        w.append_record(&record(seq, "forged")).unwrap();
    }
    w.seal(&forger, "kiroku", t(3_000)).unwrap()
}

#[test]
fn vectors_are_up_to_date() {
    let files = generate();
    let bless = std::env::var_os("KIROKU_BLESS").is_some();
    for (name, bytes) in &files {
        let path = dir().join(name);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        let on_disk = std::fs::read(&path).unwrap_or_default();
        assert!(
            &on_disk == bytes,
            "{} differs from what the format produces; rerun with KIROKU_BLESS=1 if the change is intended",
            path.display()
        );
    }
}

#[test]
fn vectors_verify_as_documented() {
    let v = signer().verifier();
    let first = std::fs::read(dir().join("valid-0.seg")).unwrap();
    let second = std::fs::read(dir().join("valid-5.seg")).unwrap();
    let r1 = verify_segment(&first[..], &VerifyOptions::sealed().with_verifier(v.clone())).unwrap();
    let r2 = verify_segment(&second[..], &VerifyOptions::sealed().with_verifier(v.clone()).continuing(r1.end)).unwrap();
    assert_eq!(r2.end.next_seq, 7);
    let proof = TlogProof::parse(&std::fs::read_to_string(dir().join("seq-2.tlog-proof")).unwrap()).unwrap();
    let (_, fs) = frames(&first);
    let rec2 = fs.iter().find(|f| f.seq == 2 && f.kind as u8 == 1).unwrap();
    let cp = proof.verify(&rec2.hash, &v.clone().into()).unwrap();
    assert_eq!(cp.size, 7);
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir().join("expected.json")).unwrap()).unwrap();
    for case in expected["invalid"].as_array().unwrap() {
        let bytes = std::fs::read(dir().join(case["file"].as_str().unwrap())).unwrap();
        let err = verify_segment(&bytes[..], &VerifyOptions::sealed().with_verifier(v.clone())).unwrap_err();
        assert_eq!(err.offset, case["offset"].as_u64().unwrap(), "{case}");
        assert_eq!(err.problem.to_string(), case["message"].as_str().unwrap(), "{case}");
    }
}
