//! RFC 9162 Merkle trees over the record hashes of a chain.
//!
//! Leaves are the 32-byte blake3 chain hashes of records, in seq order. Hashing is
//! SHA-256 with the RFC 9162 prefixes: `leaf = SHA-256(0x00 || data)`,
//! `node = SHA-256(0x01 || left || right)`, and the empty tree hashes to `SHA-256("")`.

use sha2::{Digest, Sha256};

use crate::Hash;

/// `SHA-256(0x00 || data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree, `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// The leaf index is not below the tree size.
    #[error("index {index} is out of range for tree size {size}")]
    IndexOutOfRange {
        /// Leaf index given.
        index: u64,
        /// Tree size given.
        size: u64,
    },
    /// The sizes of a consistency proof are not `0 < old <= new`.
    #[error("consistency sizes {old} -> {new} are invalid")]
    BadSizes {
        /// Earlier tree size.
        old: u64,
        /// Later tree size.
        new: u64,
    },
    /// The proof has the wrong number of hashes for the sizes.
    #[error("proof has the wrong number of hashes ({got}) for these tree sizes")]
    WrongLength {
        /// Hashes in the proof.
        got: usize,
    },
    /// The proof leads to another root.
    #[error("proof does not lead to the expected root")]
    RootMismatch,
    /// The leaf (or a subtree the proof needs) lies in the part of the tree that was
    /// removed by retention and is known only by its compact range.
    #[error("leaf {index} was removed by retention (the tree is held from leaf {retained_from})")]
    Retired {
        /// Leaf asked for.
        index: u64,
        /// First leaf still held.
        retained_from: u64,
    },
}

/// A compact range `[0, n)`: the roots of the perfect subtrees that make up a tree of
/// `n` leaves, largest first (one per set bit of `n`). Enough to append leaves and to
/// compute the root, in `O(log n)` space; stored in segment headers so each segment is
/// verifiable against its checkpoint on its own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactRange {
    size: u64,
    hashes: Vec<Hash>,
}

impl CompactRange {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A range from its parts; `None` unless `hashes.len() == size.count_ones()`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Option<Self> {
        (hashes.len() == size.count_ones() as usize).then_some(Self { size, hashes })
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The subtree roots, largest first.
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// Append one leaf given its data (the record's chain hash).
    pub fn push(&mut self, leaf_data: &[u8]) {
        self.push_leaf_hash(leaf_hash(leaf_data));
    }

    /// Append one leaf given its leaf hash.
    pub fn push_leaf_hash(&mut self, mut h: Hash) {
        let mut size = self.size;
        while size & 1 == 1 {
            // Invariant: one stored hash per set bit, so there is one to pop here.
            let left = self.hashes.pop().unwrap_or_default();
            h = node_hash(&left, &h);
            size >>= 1;
        }
        self.hashes.push(h);
        self.size += 1;
    }

    /// The RFC 9162 root of the first `size()` leaves.
    pub fn root(&self) -> Hash {
        let mut it = self.hashes.iter().rev();
        match it.next() {
            None => empty_root(),
            Some(last) => it.fold(*last, |acc, h| node_hash(h, &acc)),
        }
    }
}

/// The root of a tree over `leaf_hashes` (already leaf-hashed).
pub fn root_of(leaf_hashes: &[Hash]) -> Hash {
    let mut r = CompactRange::new();
    for h in leaf_hashes {
        r.push_leaf_hash(*h);
    }
    r.root()
}

fn largest_power_of_two_below(n: u64) -> u64 {
    // n >= 2: the largest power of two strictly smaller than n.
    1 << (63 - (n - 1).leading_zeros())
}

/// The inclusion proof (RFC 9162 2.1.3.1) of leaf `index` in the tree over `leaf_hashes`.
pub fn inclusion_proof(leaf_hashes: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    inclusion_proof_after(&CompactRange::new(), leaf_hashes, index)
}

/// The inclusion proof of leaf `index` in the tree whose first `prefix.size()` leaves
/// are known only by their compact range (an archive whose oldest records were removed
/// by retention) and whose later leaves are `leaf_hashes`. Only leaves after the prefix
/// can be proven: every hash the proof needs from the prefix is one of its subtree roots.
///
/// ```
/// use kiroku_schemas::merkle::{CompactRange, inclusion_proof, inclusion_proof_after, leaf_hash};
/// let leaves: Vec<_> = (0u8..11).map(|i| leaf_hash(&[i])).collect();
/// let mut prefix = CompactRange::new();
/// for h in &leaves[..6] {
///     prefix.push_leaf_hash(*h);
/// }
/// let proof = inclusion_proof_after(&prefix, &leaves[6..], 8)?;
/// assert_eq!(proof, inclusion_proof(&leaves, 8)?);
/// # Ok::<(), kiroku_schemas::merkle::ProofError>(())
/// ```
pub fn inclusion_proof_after(prefix: &CompactRange, leaf_hashes: &[Hash], index: u64) -> Result<Vec<Hash>, ProofError> {
    let cut = prefix.size();
    let size = cut + leaf_hashes.len() as u64;
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    if index < cut {
        return Err(ProofError::Retired { index, retained_from: cut });
    }
    let tree = Partial { prefix, leaves: leaf_hashes };
    let mut path = Vec::new();
    let (mut lo, mut hi) = (0u64, size);
    while hi - lo > 1 {
        let k = largest_power_of_two_below(hi - lo);
        if index < lo + k {
            path.push(tree.root(lo + k, hi)?);
            hi = lo + k;
        } else {
            path.push(tree.root(lo, lo + k)?);
            lo += k;
        }
    }
    path.reverse();
    Ok(path)
}

/// A tree of `prefix.size() + leaves.len()` leaves, the first ones known by their
/// compact range only.
struct Partial<'a> {
    prefix: &'a CompactRange,
    leaves: &'a [Hash],
}

impl Partial<'_> {
    /// The RFC 9162 root of leaves `[lo, hi)`.
    fn root(&self, lo: u64, hi: u64) -> Result<Hash, ProofError> {
        let cut = self.prefix.size();
        if lo >= cut {
            return Ok(root_of(&self.leaves[(lo - cut) as usize..(hi - cut) as usize]));
        }
        if hi <= cut {
            // A subtree wholly inside the prefix must be one of its stored roots: the
            // roots cover [0, 2^a), [2^a, 2^a + 2^b), ... for the set bits a > b > ...
            // of the prefix size, largest first.
            let mut start = 0u64;
            for (bit, h) in (0..64).rev().filter(|b| cut & (1 << b) != 0).zip(self.prefix.hashes()) {
                let width = 1u64 << bit;
                if start == lo && start + width == hi {
                    return Ok(*h);
                }
                start += width;
            }
            return Err(ProofError::Retired { index: lo, retained_from: cut });
        }
        let k = largest_power_of_two_below(hi - lo);
        Ok(node_hash(&self.root(lo, lo + k)?, &self.root(lo + k, hi)?))
    }
}

/// Verify an inclusion proof (RFC 9162 2.1.3.2): `leaf_hash` is leaf `index` of the tree
/// of `size` leaves whose root is `root`.
pub fn verify_inclusion(
    leaf_hash: &Hash,
    index: u64,
    size: u64,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut fnode, mut snode) = (index, size - 1);
    let mut r = *leaf_hash;
    for p in proof {
        if snode == 0 {
            return Err(ProofError::WrongLength { got: proof.len() });
        }
        if fnode & 1 == 1 || fnode == snode {
            r = node_hash(p, &r);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength { got: proof.len() });
    }
    if &r == root { Ok(()) } else { Err(ProofError::RootMismatch) }
}

/// The consistency proof (RFC 9162 2.1.4.1) from the first `old` leaves to all of
/// `leaf_hashes`.
pub fn consistency_proof(leaf_hashes: &[Hash], old: u64) -> Result<Vec<Hash>, ProofError> {
    let new = leaf_hashes.len() as u64;
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    let mut proof = Vec::new();
    subproof(old as usize, leaf_hashes, true, &mut proof);
    Ok(proof)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !complete {
            out.push(root_of(leaves));
        }
        return;
    }
    let k = largest_power_of_two_below(n as u64) as usize;
    if m <= k {
        subproof(m, &leaves[..k], complete, out);
        out.push(root_of(&leaves[k..]));
    } else {
        subproof(m - k, &leaves[k..], false, out);
        out.push(root_of(&leaves[..k]));
    }
}

/// Verify a consistency proof (RFC 9162 2.1.4.2): the tree of `old` leaves with root
/// `old_root` is a prefix of the tree of `new` leaves with root `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    if old == new {
        return if proof.is_empty() {
            if old_root == new_root { Ok(()) } else { Err(ProofError::RootMismatch) }
        } else {
            Err(ProofError::WrongLength { got: proof.len() })
        };
    }
    let mut path: &[Hash] = proof;
    let mut fnode = old - 1;
    let mut snode = new - 1;
    while fnode & 1 == 1 {
        fnode >>= 1;
        snode >>= 1;
    }
    let (mut fr, mut sr);
    if old.is_power_of_two() {
        // The old root is itself the first node of the path.
        fr = *old_root;
        sr = *old_root;
    } else {
        let Some((first, rest)) = path.split_first() else {
            return Err(ProofError::WrongLength { got: 0 });
        };
        fr = *first;
        sr = *first;
        path = rest;
    }
    for c in path {
        if snode == 0 {
            return Err(ProofError::WrongLength { got: proof.len() });
        }
        if fnode & 1 == 1 || fnode == snode {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if fnode & 1 == 0 {
                while fnode & 1 == 0 && fnode != 0 {
                    fnode >>= 1;
                    snode >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        fnode >>= 1;
        snode >>= 1;
    }
    if snode != 0 {
        return Err(ProofError::WrongLength { got: proof.len() });
    }
    if &fr == old_root && &sr == new_root { Ok(()) } else { Err(ProofError::RootMismatch) }
}

#[cfg(test)]
mod tests;
