//! Known answers from the RFC 6962 reference data published by transparency-dev/merkle
//! (`testonly/constants.go`, `testdata/consistency`), and negative cases in the spirit
//! of its `testdata/inclusion` vectors.

use super::*;
use crate::digest::hash_from_hex;

fn hx(s: &str) -> Hash {
    hash_from_hex(s).unwrap()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

const LEAVES: [&str; 8] =
    ["", "00", "10", "2021", "3031", "40414243", "5051525354555657", "606162636465666768696a6b6c6d6e6f"];

const ROOTS: [&str; 9] = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
];

// Level 0 and level 1 node hashes of the 8-leaf tree.
const L0: [&str; 8] = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
];
const L1: [&str; 4] = [
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
];
const L2: [&str; 2] = [
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
];

fn leaf_hashes() -> Vec<Hash> {
    LEAVES.iter().map(|l| leaf_hash(&unhex(l))).collect()
}

#[test]
fn leaf_hashes_and_roots_match_reference() {
    let leaves = leaf_hashes();
    for (i, l) in leaves.iter().enumerate() {
        assert_eq!(*l, hx(L0[i]), "leaf {i}");
    }
    for (n, root) in ROOTS.iter().enumerate() {
        assert_eq!(root_of(&leaves[..n]), hx(root), "size {n}");
    }
    assert_eq!(empty_root(), hx(ROOTS[0]));
}

#[test]
fn compact_range_matches_reference_frontiers() {
    let leaves = leaf_hashes();
    let mut r = CompactRange::new();
    for l in &leaves[..7] {
        r.push_leaf_hash(*l);
    }
    assert_eq!(r.hashes(), &[hx(L2[0]), hx(L1[2]), hx(L0[6])]);
    assert_eq!(r.root(), hx(ROOTS[7]));
    assert!(CompactRange::from_parts(7, vec![[0; 32]; 2]).is_none());
}

#[test]
fn inclusion_proofs_match_reference() {
    let leaves = leaf_hashes();
    // Leaf 0 of 8: sibling leaf 1, then node (1,1), then node (2,1).
    assert_eq!(inclusion_proof(&leaves, 0).unwrap(), vec![hx(L0[1]), hx(L1[1]), hx(L2[1])]);
    // Leaf 5 of 8.
    assert_eq!(inclusion_proof(&leaves, 5).unwrap(), vec![hx(L0[4]), hx(L1[3]), hx(L2[0])]);
    // Leaf 6 of 7: the lone right leaf.
    assert_eq!(inclusion_proof(&leaves[..7], 6).unwrap(), vec![hx(L1[2]), hx(L2[0])]);
    for n in 1..=8 {
        for i in 0..n {
            let p = inclusion_proof(&leaves[..n], i as u64).unwrap();
            verify_inclusion(&leaves[i], i as u64, n as u64, &p, &hx(ROOTS[n])).unwrap();
        }
    }
}

#[test]
fn consistency_proof_matches_published_vector() {
    // testdata/consistency/*/happy-path.json: size 2 -> 5.
    let leaves = leaf_hashes();
    let proof = consistency_proof(&leaves[..5], 2).unwrap();
    assert_eq!(proof, vec![hx(L1[1]), hx(L0[4])]);
    verify_consistency(2, 5, &hx(ROOTS[2]), &hx(ROOTS[5]), &proof).unwrap();
    for n in 1..=8u64 {
        for m in 1..=n {
            let p = consistency_proof(&leaves[..n as usize], m).unwrap();
            verify_consistency(m, n, &hx(ROOTS[m as usize]), &hx(ROOTS[n as usize]), &p).unwrap();
        }
    }
}

#[test]
fn inclusion_rejects_tampered_proofs() {
    let leaves = leaf_hashes();
    let root = hx(ROOTS[8]);
    for i in 0..8u64 {
        let good = inclusion_proof(&leaves, i).unwrap();
        let leaf = leaves[i as usize];
        // Flipped bits in every proof element.
        for j in 0..good.len() {
            for bit in [0usize, 4, 255] {
                let mut p = good.clone();
                p[j][bit / 8] ^= 1 << (bit % 8);
                assert!(verify_inclusion(&leaf, i, 8, &p, &root).is_err());
            }
        }
        // Wrong index, wrong size, wrong leaf, wrong root.
        assert!(verify_inclusion(&leaf, (i + 1) % 8, 8, &good, &root).is_err());
        assert!(verify_inclusion(&leaf, i, 9, &good, &root).is_err());
        assert!(verify_inclusion(&leaf, i, i, &good, &root).is_err());
        assert!(verify_inclusion(&leaf, i, 8, &good, &hx(ROOTS[7])).is_err());
        assert!(verify_inclusion(&leaves[(i as usize + 1) % 8], i, 8, &good, &root).is_err());
        assert!(verify_inclusion(&leaf, 8, 8, &good, &root).is_err());
        // Trailing garbage, preceding garbage, truncated.
        let mut trailing = good.clone();
        trailing.push([0; 32]);
        assert!(verify_inclusion(&leaf, i, 8, &trailing, &root).is_err());
        let mut preceding = vec![[0u8; 32]];
        preceding.extend_from_slice(&good);
        assert!(verify_inclusion(&leaf, i, 8, &preceding, &root).is_err());
        assert!(verify_inclusion(&leaf, i, 8, &good[..good.len() - 1], &root).is_err());
        assert!(verify_inclusion(&leaf, i, 8, &[], &root).is_err());
    }
    // A single-leaf tree has an empty proof and the leaf is the root.
    verify_inclusion(&leaves[0], 0, 1, &[], &leaves[0]).unwrap();
    assert!(verify_inclusion(&leaves[0], 0, 0, &[], &leaves[0]).is_err());
}

#[test]
fn consistency_rejects_tampered_proofs() {
    let leaves = leaf_hashes();
    for n in 2..=8u64 {
        for m in 1..n {
            let (r1, r2) = (hx(ROOTS[m as usize]), hx(ROOTS[n as usize]));
            let good = consistency_proof(&leaves[..n as usize], m).unwrap();
            for j in 0..good.len() {
                let mut p = good.clone();
                p[j][3] ^= 0x10;
                assert!(verify_consistency(m, n, &r1, &r2, &p).is_err(), "{m}->{n} flip {j}");
            }
            assert!(verify_consistency(m, n, &r2, &r1, &good).is_err(), "swapped roots");
            assert!(verify_consistency(m, n, &r1, &r1, &good).is_err());
            let mut trailing = good.clone();
            trailing.push(r1);
            assert!(verify_consistency(m, n, &r1, &r2, &trailing).is_err(), "{m}->{n} trailing");
            let mut preceding = vec![r1];
            preceding.extend_from_slice(&good);
            assert!(verify_consistency(m, n, &r1, &r2, &preceding).is_err(), "{m}->{n} preceding");
            if !good.is_empty() {
                assert!(verify_consistency(m, n, &r1, &r2, &good[..good.len() - 1]).is_err(), "truncated");
            }
        }
    }
    // The published size-mutation cases for 2 -> 5: sizes are not hashed, so a wrong
    // size must change the proof's shape to be caught; these all do.
    let (r1, r2) = (hx(ROOTS[2]), hx(ROOTS[5]));
    let good = consistency_proof(&leaves[..5], 2).unwrap();
    for (m, n) in [(1, 5), (3, 5), (4, 5), (2, 4), (2, 10), (2, 2), (1, 2)] {
        assert!(verify_consistency(m, n, &r1, &r2, &good).is_err(), "{m}->{n}");
    }
    assert!(verify_consistency(0, 3, &[0; 32], &[0; 32], &[]).is_err());
    assert!(verify_consistency(4, 3, &[0; 32], &[0; 32], &[]).is_err());
    verify_consistency(3, 3, &hx(ROOTS[3]), &hx(ROOTS[3]), &[]).unwrap();
    assert!(verify_consistency(3, 3, &hx(ROOTS[3]), &hx(ROOTS[3]), &[[0; 32]]).is_err());
}

proptest::proptest! {
    #[test]
    fn proofs_verify_for_every_index(n in 1usize..90, seed in 0u64..1000) {
        let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&(seed * 1000 + i as u64).to_le_bytes())).collect();
        let root = root_of(&leaves);
        for i in 0..n {
            let p = inclusion_proof(&leaves, i as u64).unwrap();
            proptest::prop_assert!(verify_inclusion(&leaves[i], i as u64, n as u64, &p, &root).is_ok());
        }
        for m in 1..=n {
            let p = consistency_proof(&leaves, m as u64).unwrap();
            proptest::prop_assert!(verify_consistency(m as u64, n as u64, &root_of(&leaves[..m]), &root, &p).is_ok());
        }
    }
}

#[test]
fn proofs_after_a_retired_prefix_equal_proofs_over_the_whole_tree() {
    let leaves: Vec<Hash> = (0u32..41).map(|i| leaf_hash(&i.to_be_bytes())).collect();
    for n in 1..=leaves.len() {
        let all = &leaves[..n];
        for cut in 0..=n {
            let mut prefix = CompactRange::new();
            for h in &all[..cut] {
                prefix.push_leaf_hash(*h);
            }
            for index in 0..n as u64 {
                let got = inclusion_proof_after(&prefix, &all[cut..], index);
                if (index as usize) < cut {
                    assert_eq!(got, Err(ProofError::Retired { index, retained_from: cut as u64 }));
                } else {
                    let proof = got.unwrap();
                    assert_eq!(proof, inclusion_proof(all, index).unwrap(), "n {n} cut {cut} index {index}");
                    verify_inclusion(&all[index as usize], index, n as u64, &proof, &root_of(all)).unwrap();
                }
            }
        }
    }
}
