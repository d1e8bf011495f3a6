//! blake3 of many short messages at once, one message chunk per SIMD lane.
//!
//! blake3 is fast on long inputs because it compresses up to 16 chunks of the same input
//! side by side. A 1 KiB record frame is one or two chunks, so hashing frames one by one
//! runs the compression function on one chunk at a time: about 1.5 µs per 1.2 KB frame on
//! this project's machine, against 0.15 µs for the same bytes as one long input. A reader
//! that has the frames of a whole segment in hand (every frame names its own `prev_hash`,
//! so their hashes do not depend on each other) can give every lane a chunk of a different
//! frame instead. The hashes are blake3's own, bit for bit: chunks, and the root parent
//! node of each two-chunk message, are compressed here as the specification says; the
//! chunks of a three-chunk message are merged with [`blake3::hazmat`]'s parent-node
//! functions. The tests compare every result with [`blake3::hash`].

use crate::digest::Hash;
use blake3::hazmat::{ChainingValue, Mode, merge_subtrees_non_root, merge_subtrees_root};

const IV: [u32; 8] = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19];
const PERMUTATION: [usize; 16] = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START: u32 = 1;
const CHUNK_END: u32 = 2;
const PARENT: u32 = 4;
const ROOT: u32 = 8;
const BLOCK_LEN: usize = 64;
const CHUNK_LEN: usize = 1024;
/// Fewer messages than this are hashed one by one: a mostly empty set of lanes costs more.
const SIDE_BY_SIDE_MIN: usize = 4;
/// Longer messages are hashed one by one: from four chunks on, blake3 gives its lanes to
/// one message's chunks about as well, and from eight on clearly better (1,024 messages
/// of 1,270 bytes: 3.5x faster side by side; 4,200 bytes: even; 8,300 bytes: 0.6x).
pub(crate) const SIDE_BY_SIDE_MAX: usize = 3 * CHUNK_LEN;

/// The message words each of the seven rounds reads, in order: round r reads round
/// r-1's words through the specification's permutation.
const SCHEDULE: [[usize; 16]; 7] = {
    let mut s = [[0usize; 16]; 7];
    let mut i = 0;
    while i < 16 {
        s[0][i] = i;
        i += 1;
    }
    let mut r = 1;
    while r < 7 {
        let mut i = 0;
        while i < 16 {
            s[r][i] = s[r - 1][PERMUTATION[i]];
            i += 1;
        }
        r += 1;
    }
    s
};

/// blake3 of each message, in order: `blake3_many(m)[i] == blake3::hash(m[i])`.
///
/// Worth it for many messages of up to 3 KiB; longer ones are given to
/// [`blake3::hash`], which already uses every lane for them.
///
/// ```
/// use kiroku_schemas::digest::blake3_many;
///
/// let frames: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().repeat(300)).collect();
/// let refs: Vec<&[u8]> = frames.iter().map(Vec::as_slice).collect();
/// let hashes = blake3_many(&refs);
/// assert_eq!(hashes[7], *blake3::hash(&frames[7]).as_bytes());
/// ```
pub fn blake3_many(messages: &[&[u8]]) -> Vec<Hash> {
    if messages.iter().filter(|m| m.len() <= SIDE_BY_SIDE_MAX).count() < SIDE_BY_SIDE_MIN {
        return messages.iter().map(|m| *blake3::hash(m).as_bytes()).collect();
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F, checked on the line above.
            #[allow(unsafe_code)]
            return unsafe { x86::avx512(messages) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2, checked on the line above.
            #[allow(unsafe_code)]
            return unsafe { x86::avx2(messages) };
        }
    }
    side_by_side::<4>(messages)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Hash, side_by_side};

    /// 16 lanes: one 512-bit register holds word i of 16 chunks.
    #[target_feature(enable = "avx512f")]
    pub(super) fn avx512(messages: &[&[u8]]) -> Vec<Hash> {
        side_by_side::<16>(messages)
    }

    /// 8 lanes in 256-bit registers.
    #[target_feature(enable = "avx2")]
    pub(super) fn avx2(messages: &[&[u8]]) -> Vec<Hash> {
        side_by_side::<8>(messages)
    }
}

/// One chunk of one message.
struct Chunk<'a> {
    bytes: &'a [u8],
    /// The chunk's index in its message (blake3's chunk counter).
    counter: u64,
    /// The message is this one chunk: its last block is the root.
    root: bool,
}

impl Chunk<'_> {
    fn blocks(&self) -> usize {
        self.bytes.len().div_ceil(BLOCK_LEN).max(1)
    }
}

/// Hash `messages` with `L` chunks compressed side by side. Every operation is a loop
/// over the `L` lanes, which the compiler turns into vector instructions of the width the
/// calling function enables.
#[inline(always)]
fn side_by_side<const L: usize>(messages: &[&[u8]]) -> Vec<Hash> {
    let mut chunks = Vec::with_capacity(messages.len() + messages.len() / 2);
    // Where each message's chunks start in `chunks`.
    let mut first = Vec::with_capacity(messages.len() + 1);
    for m in messages {
        first.push(chunks.len());
        if m.len() > SIDE_BY_SIDE_MAX {
            // Hashed alone below: no chunks here.
        } else if m.len() <= CHUNK_LEN {
            chunks.push(Chunk { bytes: m, counter: 0, root: true });
        } else {
            chunks.extend(m.chunks(CHUNK_LEN).enumerate().map(|(i, bytes)| Chunk {
                bytes,
                counter: i as u64,
                root: false,
            }));
        }
    }
    first.push(chunks.len());

    // Lanes that finish together: the longest chunks first, so a group's lanes mostly
    // have the same number of blocks and few compress blocks nobody reads.
    let mut order: Vec<usize> = (0..chunks.len()).collect();
    order.sort_by_key(|&c| std::cmp::Reverse(chunks[c].blocks()));
    let mut outputs = vec![[0u32; 8]; chunks.len()];
    for group in order.chunks(L) {
        compress_chunks::<L>(&chunks, group, &mut outputs);
    }
    // The root of a two-chunk message is one parent node over its two chunks: those are
    // compressed side by side too.
    let pairs: Vec<usize> = (0..messages.len()).filter(|&i| first[i + 1] - first[i] == 2).collect();
    let mut roots = vec![[0u32; 8]; messages.len()];
    for group in pairs.chunks(L) {
        compress_parents::<L>(&outputs, &first, group, &mut roots);
    }

    (0..messages.len())
        .map(|i| {
            let cvs = &outputs[first[i]..first[i + 1]];
            match cvs {
                [] => *blake3::hash(messages[i]).as_bytes(),
                [root] => le_bytes(root),
                [_, _] => le_bytes(&roots[i]),
                _ => {
                    let cvs: Vec<ChainingValue> = cvs.iter().map(le_bytes).collect();
                    merge_root(&cvs)
                }
            }
        })
        .collect()
}

/// The chaining values (or, for a one-chunk message, the hash) of the chunks `group`
/// names, one lane each; lanes past the group's end compress zeros and are not read.
#[inline(always)]
fn compress_chunks<const L: usize>(chunks: &[Chunk<'_>], group: &[usize], outputs: &mut [[u32; 8]]) {
    let blocks: [usize; L] = std::array::from_fn(|l| group.get(l).map_or(0, |&c| chunks[c].blocks()));
    let lane = |l: usize| group.get(l).map(|&c| &chunks[c]);
    let counter =
        |shift: u32| -> [u32; L] { std::array::from_fn(|l| lane(l).map_or(0, |c| (c.counter >> shift) as u32)) };
    let (counter_lo, counter_hi) = (counter(0), counter(32));
    let mut cv: [[u32; L]; 8] = std::array::from_fn(|i| [IV[i]; L]);
    let longest = blocks.iter().copied().max().unwrap_or(0);
    for b in 0..longest {
        let mut words = [[0u32; L]; 16];
        let mut block_len = [0u32; L];
        let mut flags = [0u32; L];
        for l in 0..L {
            let Some(c) = lane(l).filter(|_| b < blocks[l]) else { continue };
            let start = b * BLOCK_LEN;
            let bytes = &c.bytes[start.min(c.bytes.len())..(start + BLOCK_LEN).min(c.bytes.len())];
            let mut padded = [0u8; BLOCK_LEN];
            let block: &[u8; BLOCK_LEN] = match bytes.try_into() {
                Ok(whole) => whole,
                Err(_) => {
                    padded[..bytes.len()].copy_from_slice(bytes);
                    &padded
                }
            };
            for (w, four) in block.chunks_exact(4).enumerate() {
                words[w][l] = u32::from_le_bytes([four[0], four[1], four[2], four[3]]);
            }
            block_len[l] = bytes.len() as u32;
            let last = b + 1 == blocks[l];
            flags[l] = if b == 0 { CHUNK_START } else { 0 }
                | if last { CHUNK_END } else { 0 }
                | if last && c.root { ROOT } else { 0 };
        }
        compress::<L>(&mut cv, &words, &counter_lo, &counter_hi, &block_len, &flags);
        for (l, &c) in group.iter().enumerate() {
            if b + 1 == blocks[l] {
                outputs[c] = std::array::from_fn(|i| cv[i][l]);
            }
        }
    }
}

/// The roots of the two-chunk messages `group` names, one lane each: a parent node
/// whose block is the two chunks' chaining values, flagged as the root.
#[inline(always)]
fn compress_parents<const L: usize>(cvs: &[[u32; 8]], first: &[usize], group: &[usize], roots: &mut [[u32; 8]]) {
    let mut words = [[0u32; L]; 16];
    for (l, &m) in group.iter().enumerate() {
        let (left, right) = (&cvs[first[m]], &cvs[first[m] + 1]);
        for w in 0..8 {
            (words[w][l], words[w + 8][l]) = (left[w], right[w]);
        }
    }
    let mut cv: [[u32; L]; 8] = std::array::from_fn(|i| [IV[i]; L]);
    let zero = [0u32; L];
    compress::<L>(&mut cv, &words, &zero, &zero, &[BLOCK_LEN as u32; L], &[PARENT | ROOT; L]);
    for (l, &m) in group.iter().enumerate() {
        roots[m] = std::array::from_fn(|i| cv[i][l]);
    }
}

/// The compression function on `L` lanes; the result's first eight words replace `cv`.
#[inline(always)]
fn compress<const L: usize>(
    cv: &mut [[u32; L]; 8],
    m: &[[u32; L]; 16],
    counter_lo: &[u32; L],
    counter_hi: &[u32; L],
    block_len: &[u32; L],
    flags: &[u32; L],
) {
    let mut v: [[u32; L]; 16] = [
        cv[0],
        cv[1],
        cv[2],
        cv[3],
        cv[4],
        cv[5],
        cv[6],
        cv[7],
        [IV[0]; L],
        [IV[1]; L],
        [IV[2]; L],
        [IV[3]; L],
        *counter_lo,
        *counter_hi,
        *block_len,
        *flags,
    ];
    for s in &SCHEDULE {
        g::<L>(&mut v, [0, 4, 8, 12], &m[s[0]], &m[s[1]]);
        g::<L>(&mut v, [1, 5, 9, 13], &m[s[2]], &m[s[3]]);
        g::<L>(&mut v, [2, 6, 10, 14], &m[s[4]], &m[s[5]]);
        g::<L>(&mut v, [3, 7, 11, 15], &m[s[6]], &m[s[7]]);
        g::<L>(&mut v, [0, 5, 10, 15], &m[s[8]], &m[s[9]]);
        g::<L>(&mut v, [1, 6, 11, 12], &m[s[10]], &m[s[11]]);
        g::<L>(&mut v, [2, 7, 8, 13], &m[s[12]], &m[s[13]]);
        g::<L>(&mut v, [3, 4, 9, 14], &m[s[14]], &m[s[15]]);
    }
    for i in 0..8 {
        for l in 0..L {
            cv[i][l] = v[i][l] ^ v[i + 8][l];
        }
    }
}

/// The quarter-round on state words `[a, b, c, d]` of every lane.
#[inline(always)]
fn g<const L: usize>(v: &mut [[u32; L]; 16], [a, b, c, d]: [usize; 4], x: &[u32; L], y: &[u32; L]) {
    for l in 0..L {
        let (mut va, mut vb, mut vc, mut vd) = (v[a][l], v[b][l], v[c][l], v[d][l]);
        va = va.wrapping_add(vb).wrapping_add(x[l]);
        vd = (vd ^ va).rotate_right(16);
        vc = vc.wrapping_add(vd);
        vb = (vb ^ vc).rotate_right(12);
        va = va.wrapping_add(vb).wrapping_add(y[l]);
        vd = (vd ^ va).rotate_right(8);
        vc = vc.wrapping_add(vd);
        vb = (vb ^ vc).rotate_right(7);
        (v[a][l], v[b][l], v[c][l], v[d][l]) = (va, vb, vc, vd);
    }
}

fn le_bytes(words: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(words) {
        o.copy_from_slice(&w.to_le_bytes());
    }
    out
}

/// The root of a message of two or more chunks from its chunks' chaining values: the
/// left subtree holds the largest power of two of chunks that leaves the right one
/// non-empty, as blake3's tree does.
fn merge_root(cvs: &[ChainingValue]) -> Hash {
    let (left, right) = cvs.split_at(left_chunks(cvs.len()));
    *merge_subtrees_root(&subtree(left), &subtree(right), Mode::Hash).as_bytes()
}

fn subtree(cvs: &[ChainingValue]) -> ChainingValue {
    match cvs {
        [one] => *one,
        _ => {
            let (left, right) = cvs.split_at(left_chunks(cvs.len()));
            merge_subtrees_non_root(&subtree(left), &subtree(right), Mode::Hash)
        }
    }
}

/// The largest power of two below `n` (n >= 2).
fn left_chunks(n: usize) -> usize {
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Messages of every length class: empty, partial and whole blocks, exactly one
    /// chunk, one byte over, and trees of up to nine chunks (uneven ones included).
    fn messages() -> Vec<Vec<u8>> {
        let mut lens: Vec<usize> = (0..=130).collect();
        lens.extend([191, 192, 193, 1000, 1023, 1024, 1025, 1100, 1200, 1300, 2047, 2048, 2049, 3072, 3073, 4096]);
        lens.extend([4097, 5000, 7 * 1024 + 5, 8 * 1024, 8 * 1024 + 1, 9 * 1024]);
        lens.iter().enumerate().map(|(i, &n)| (0..n).map(|j| (i * 131 + j * 7 + j / 251) as u8).collect()).collect()
    }

    fn expected(ms: &[&[u8]]) -> Vec<Hash> {
        ms.iter().map(|m| *blake3::hash(m).as_bytes()).collect()
    }

    #[test]
    fn every_lane_width_gives_blake3s_hashes() {
        let owned = messages();
        let ms: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        let want = expected(&ms);
        assert_eq!(side_by_side::<1>(&ms), want);
        assert_eq!(side_by_side::<4>(&ms), want);
        assert_eq!(side_by_side::<8>(&ms), want);
        assert_eq!(side_by_side::<16>(&ms), want);
        assert_eq!(blake3_many(&ms), want);
    }

    #[test]
    fn any_number_of_messages_in_any_order() {
        let owned = messages();
        for n in [0, 1, 2, 3, 4, 5, 15, 16, 17, 33] {
            // Lengths mixed so groups hold chunks of different block counts.
            let ms: Vec<&[u8]> = (0..n).map(|i| owned[(i * 37) % owned.len()].as_slice()).collect();
            assert_eq!(blake3_many(&ms), expected(&ms), "{n} messages");
            assert_eq!(side_by_side::<16>(&ms), expected(&ms), "{n} messages, 16 lanes");
        }
    }

    #[test]
    fn the_left_subtree_is_the_largest_power_of_two_below() {
        let got: Vec<usize> = (2..=9).map(left_chunks).collect();
        assert_eq!(got, [1, 2, 2, 4, 4, 4, 4, 8]);
    }
}
