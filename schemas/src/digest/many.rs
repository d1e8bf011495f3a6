//! blake3 with its chunks compressed side by side where blake3 alone would not.
//!
//! blake3 is fast on long inputs because it compresses up to 16 chunks of the same input
//! side by side. A 1 KiB record frame is one or two chunks, so hashing frames one by one
//! runs the compression function on one chunk at a time: about 1.5 µs per 1.2 KB frame on
//! this project's machine, against 0.15 µs for the same bytes as one long input. A reader
//! that has the frames of a whole segment in hand (every frame names its own `prev_hash`,
//! so their hashes do not depend on each other) can give every lane a chunk of a different
//! frame instead ([`blake3_many`]). And a message of five to sixteen chunks leaves most of
//! blake3's lanes idle for its last chunks; [`blake3_of`] gives each chunk a lane.
//!
//! The hashes are blake3's own, bit for bit: chunks, and the root parent node of each
//! two-chunk message, are compressed here as the specification says (`kernel.rs`, with
//! AVX2 and AVX-512 vectors in `x86.rs`); the chunks of longer messages are merged with
//! [`blake3::hazmat`]'s parent-node functions. The tests compare every result with
//! [`blake3::hash`], for every kernel and width.

mod kernel;
#[cfg(target_arch = "x86_64")]
mod x86;

use crate::digest::Hash;
use blake3::hazmat::{ChainingValue, Mode, merge_subtrees_non_root, merge_subtrees_root};
use kernel::{Blocks, Kernel};

const IV: [u32; 8] = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19];
const PERMUTATION: [usize; 16] = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8];
const CHUNK_START: u32 = 1;
const CHUNK_END: u32 = 2;
const PARENT: u32 = 4;
const ROOT: u32 = 8;
const BLOCK_LEN: usize = 64;
const CHUNK_LEN: usize = 1024;
/// Fewer messages than this are hashed one by one, unless they hold at least a chunk's
/// worth of bytes between them: a mostly empty set of lanes costs more than a few short
/// messages do alone. Two messages of about 2 KB, though (a request and a response body),
/// take blake3 5.3 µs one by one (each is a whole chunk and then a partial one, compressed
/// one after the other) and 2.3 µs side by side; two of 60 bytes, 275 against 329 ns.
const SIDE_BY_SIDE_MIN: usize = 4;
/// Longer messages are hashed one by one ([`blake3_of`]): from eight whole chunks on,
/// blake3 fills its own lanes. 1,024 messages side by side against one by one (AVX-512):
/// 3,600 bytes 0.98 against 3.5 ms, 4,169 bytes (4 KiB records' frames) 1.17 against
/// 1.77, 7,000 bytes 1.6 against 3.2; 8,265 bytes 2.2 against 2.1 (so not those).
pub(crate) const SIDE_BY_SIDE_MAX: usize = 8 * CHUNK_LEN;

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
/// Worth it for many messages of up to 8 KiB; longer ones are given to [`blake3_of`].
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
    let (short, bytes) =
        messages.iter().filter(|m| m.len() <= SIDE_BY_SIDE_MAX).fold((0, 0), |(n, bytes), m| (n + 1, bytes + m.len()));
    if short >= SIDE_BY_SIDE_MIN || short >= 2 && bytes >= CHUNK_LEN {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = x86::Widest::detect() {
            return k.side_by_side(messages, SIDE_BY_SIDE_MAX);
        }
        // The limit the portable kernel had before the x86 kernels were written.
        #[cfg(not(target_arch = "x86_64"))]
        return side_by_side::<4, _>(kernel::portable::Portable, messages, 3 * CHUNK_LEN);
    }
    messages.iter().map(|m| blake3_of(m)).collect()
}

/// blake3 of one message: `blake3_of(m) == blake3::hash(m)`, faster for the lengths at
/// which blake3 leaves most of its lanes idle.
///
/// blake3 compresses the whole chunks of a message in groups of 16, 8 or 4 at once and
/// the rest one after another, so 6 KB costs it about three times what 4 KiB does
/// (measured on this project's machine: 4,096 bytes 1.45 µs, 6,000 bytes 3.9 µs). Here
/// all the chunks of such a message are compressed side by side and then merged.
///
/// ```
/// use kiroku_schemas::digest::blake3_of;
///
/// let record = vec![b'x'; 6000];
/// assert_eq!(blake3_of(&record), *blake3::hash(&record).as_bytes());
/// ```
pub fn blake3_of(message: &[u8]) -> Hash {
    #[cfg(target_arch = "x86_64")]
    if let Some(k) = x86::Widest::detect().filter(|k| gains_from_lanes(message.len(), k.lanes())) {
        return k.side_by_side(&[message], message.len())[0];
    }
    *blake3::hash(message).as_bytes()
}

/// Whether a message of `len` bytes is hashed faster with its chunks in `lanes` lanes
/// than by blake3 alone. blake3 compresses whole chunks 4, 8 or 16 at once and what is
/// left one chunk after another (its tree splits the same way), so a message pays for
/// every chunk time past its last full group; side by side, up to `lanes` chunks cost one
/// chunk time and their merges. Measured, `blake3::hash` against this (16 lanes, 200 000
/// calls, two runs):
///
/// - five chunks or more (up to the lanes), when more than a chunk's worth of bytes
///   follows the last multiple of 4 KiB: 6,000 bytes 3.9 µs against 2.6; 8,000 bytes 5.1
///   against 2.8; 15,000 bytes 5.3 against 3.5. A 4 KiB record's frame (4,169 bytes)
///   costs blake3 1.7 µs, its four whole chunks filling one group: left to it.
/// - two or three chunks whose last holds at least 768 bytes (1,920 bytes 2.5 µs against
///   2.23; 3,072 bytes 2.64-2.71 against 2.23-2.29; 1,664 bytes even), and four chunks
///   but for exactly 4 KiB (3,200 bytes 2.88 against 2.33; 3,968 bytes 3.7-3.9 against
///   2.43). With 8 lanes (AVX2 forced on the same machine): 2,000 bytes 2.68-2.72
///   against 2.37-2.41, 3,900 bytes 3.79-3.81 against 2.50-2.52, 1,792 bytes even.
///
/// With 8 lanes, messages of more than eight chunks were slower.
fn gains_from_lanes(len: usize, lanes: usize) -> bool {
    let chunks = len.div_ceil(CHUNK_LEN);
    let last = len - (chunks.max(1) - 1) * CHUNK_LEN;
    match chunks {
        2 | 3 => last >= 768 && len != 2 * CHUNK_LEN,
        4 => len != 4 * CHUNK_LEN,
        _ => (5..=lanes).contains(&chunks) && len % (4 * CHUNK_LEN) > CHUNK_LEN,
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

/// Hash `messages` with the chunks of those up to `max` bytes long compressed `L` at a
/// time by kernel `k`; longer ones are hashed one by one.
fn side_by_side<const L: usize, K: Kernel<L>>(k: K, messages: &[&[u8]], max: usize) -> Vec<Hash> {
    let mut chunks = Vec::with_capacity(messages.len() + messages.len() / 2);
    // Where each message's chunks start in `chunks`.
    let mut first = Vec::with_capacity(messages.len() + 1);
    for m in messages {
        first.push(chunks.len());
        if m.len() > max {
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
        compress_chunks(k, &chunks, group, &mut outputs);
    }
    // The root of a two-chunk message is one parent node over its two chunks: those are
    // compressed side by side too.
    let pairs: Vec<usize> = (0..messages.len()).filter(|&i| first[i + 1] - first[i] == 2).collect();
    let mut roots = vec![[0u32; 8]; messages.len()];
    for group in pairs.chunks(L) {
        compress_parents(k, &outputs, &first, group, &mut roots);
    }

    (0..messages.len())
        .map(|i| {
            let cvs = &outputs[first[i]..first[i + 1]];
            match cvs {
                [] => blake3_of(messages[i]),
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
fn compress_chunks<const L: usize, K: Kernel<L>>(
    k: K,
    chunks: &[Chunk<'_>],
    group: &[usize],
    outputs: &mut [[u32; 8]],
) {
    const ZEROS: [u8; BLOCK_LEN] = [0; BLOCK_LEN];
    let mut blocks = [0usize; L];
    let (mut counter_lo, mut counter_hi) = ([0u32; L], [0u32; L]);
    // A chunk's last block may be short: copied here once, zero-padded.
    let mut padded = [[0u8; BLOCK_LEN]; L];
    for (l, &c) in group.iter().enumerate() {
        let chunk = &chunks[c];
        blocks[l] = chunk.blocks();
        (counter_lo[l], counter_hi[l]) = (chunk.counter as u32, (chunk.counter >> 32) as u32);
        let tail = &chunk.bytes[((blocks[l] - 1) * BLOCK_LEN).min(chunk.bytes.len())..];
        if tail.len() < BLOCK_LEN {
            padded[l][..tail.len()].copy_from_slice(tail);
        }
    }
    let mut cv: [[u32; L]; 8] = std::array::from_fn(|i| [IV[i]; L]);
    let longest = blocks.iter().copied().max().unwrap_or(0);
    for b in 0..longest {
        // Lanes with no block b (idle, or their chunk is done) compress zeros.
        let mut block = [&ZEROS; L];
        let (mut block_len, mut flags) = ([0u32; L], [0u32; L]);
        for (l, &c) in group.iter().enumerate().filter(|&(l, _)| b < blocks[l]) {
            let chunk = &chunks[c];
            let rest = &chunk.bytes[(b * BLOCK_LEN).min(chunk.bytes.len())..];
            (block[l], block_len[l]) = match rest.first_chunk::<BLOCK_LEN>() {
                Some(whole) => (whole, BLOCK_LEN as u32),
                None => (&padded[l], rest.len() as u32),
            };
            let last = b + 1 == blocks[l];
            flags[l] = (if b == 0 { CHUNK_START } else { 0 })
                | (if last { CHUNK_END } else { 0 })
                | (if last && chunk.root { ROOT } else { 0 });
        }
        k.compress(&mut cv, &Blocks { block, counter_lo, counter_hi, block_len, flags });
        for (l, &c) in group.iter().enumerate() {
            if b + 1 == blocks[l] {
                outputs[c] = std::array::from_fn(|i| cv[i][l]);
            }
        }
    }
}

/// The roots of the two-chunk messages `group` names, one lane each: a parent node
/// whose block is the two chunks' chaining values, flagged as the root.
fn compress_parents<const L: usize, K: Kernel<L>>(
    k: K,
    cvs: &[[u32; 8]],
    first: &[usize],
    group: &[usize],
    roots: &mut [[u32; 8]],
) {
    let mut padded = [[0u8; BLOCK_LEN]; L];
    for (pad, &m) in padded.iter_mut().zip(group) {
        pad[..32].copy_from_slice(&le_bytes(&cvs[first[m]]));
        pad[32..].copy_from_slice(&le_bytes(&cvs[first[m] + 1]));
    }
    let mut cv: [[u32; L]; 8] = std::array::from_fn(|i| [IV[i]; L]);
    let block = std::array::from_fn(|l| &padded[l]);
    let zero = [0u32; L];
    k.compress(
        &mut cv,
        &Blocks {
            block,
            counter_lo: zero,
            counter_hi: zero,
            block_len: [BLOCK_LEN as u32; L],
            flags: [PARENT | ROOT; L],
        },
    );
    for (l, &m) in group.iter().enumerate() {
        roots[m] = std::array::from_fn(|i| cv[i][l]);
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
    use super::kernel::portable::Portable;
    use super::*;

    /// Messages of every length class: empty, partial and whole blocks, exactly one
    /// chunk, one byte over, and trees of up to seventeen chunks (uneven ones included).
    fn messages() -> Vec<Vec<u8>> {
        let mut lens: Vec<usize> = (0..=130).collect();
        lens.extend([191, 192, 193, 1000, 1023, 1024, 1025, 1100, 1200, 1300, 2047, 2048, 2049, 3072, 3073, 4096]);
        lens.extend([4097, 5000, 5120, 5121, 6000, 7 * 1024 + 5, 8 * 1024 - 1, 8 * 1024, 8 * 1024 + 1, 9 * 1024]);
        lens.extend([12_000, 15 * 1024, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 17 * 1024 + 100]);
        lens.iter().enumerate().map(|(i, &n)| (0..n).map(|j| (i * 131 + j * 7 + j / 251) as u8).collect()).collect()
    }

    fn expected(ms: &[&[u8]]) -> Vec<Hash> {
        ms.iter().map(|m| *blake3::hash(m).as_bytes()).collect()
    }

    /// Every kernel this CPU can run, at its width, against blake3 itself; messages up to
    /// `max` bytes go through the kernel.
    fn every_kernel(ms: &[&[u8]], max: usize, what: &str) {
        let want = expected(ms);
        assert_eq!(side_by_side::<1, _>(Portable, ms, max), want, "{what}: 1 lane");
        assert_eq!(side_by_side::<4, _>(Portable, ms, max), want, "{what}: 4 lanes");
        assert_eq!(side_by_side::<8, _>(Portable, ms, max), want, "{what}: 8 lanes");
        assert_eq!(side_by_side::<16, _>(Portable, ms, max), want, "{what}: 16 lanes");
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(k) = x86::Avx2::detect() {
                assert_eq!(side_by_side(k, ms, max), want, "{what}: AVX2");
            }
            if let Some(k) = x86::Avx512::detect() {
                assert_eq!(side_by_side(k, ms, max), want, "{what}: AVX-512");
            }
        }
    }

    #[test]
    fn every_kernel_gives_blake3s_hashes() {
        let owned = messages();
        let ms: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        every_kernel(&ms, SIDE_BY_SIDE_MAX, "many");
        every_kernel(&ms, usize::MAX, "many, long ones too");
        assert_eq!(blake3_many(&ms), expected(&ms));
    }

    #[test]
    fn one_message_of_any_length() {
        for m in messages() {
            every_kernel(&[&m], usize::MAX, &format!("one message of {} bytes", m.len()));
            assert_eq!(blake3_of(&m), *blake3::hash(&m).as_bytes(), "{} bytes", m.len());
        }
    }

    #[test]
    fn any_number_of_messages_in_any_order() {
        let owned = messages();
        for n in [0, 1, 2, 3, 4, 5, 15, 16, 17, 33] {
            // Lengths mixed so groups hold chunks of different block counts.
            let ms: Vec<&[u8]> = (0..n).map(|i| owned[(i * 37) % owned.len()].as_slice()).collect();
            assert_eq!(blake3_many(&ms), expected(&ms), "{n} messages");
            every_kernel(&ms, SIDE_BY_SIDE_MAX, &format!("{n} messages"));
        }
    }

    #[test]
    fn the_lanes_are_used_where_blake3_leaves_them_idle() {
        let lens = [0, 1024, 1600, 1792, 2048, 2500, 2816, 3072, 3073, 4095, 4096, 4169, 5120, 5121, 6000, 8191];
        let lens = lens.into_iter().chain([8192, 8193, 9300, 12300, 16383, 16384, 16385]);
        let wide = |lanes| lens.clone().filter(|&n| gains_from_lanes(n, lanes)).collect::<Vec<_>>();
        assert_eq!(wide(16), [1792, 2816, 3072, 3073, 4095, 5121, 6000, 8191, 9300, 16383]);
        assert_eq!(wide(8), [1792, 2816, 3072, 3073, 4095, 5121, 6000, 8191]);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// Any bytes of any length up to 20 KB, alone and among others, hash as blake3
        /// hashes them.
        #[test]
        fn any_bytes_hash_as_blake3_hashes_them(
            seed in proptest::prelude::any::<u64>(),
            lens in proptest::collection::vec(0usize..20_000, 1..12),
        ) {
            let owned: Vec<Vec<u8>> = lens
                .iter()
                .enumerate()
                .map(|(i, &n)| {
                    let mut x = seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    (0..n).map(|_| { x ^= x << 13; x ^= x >> 7; x ^= x << 17; x as u8 }).collect()
                })
                .collect();
            let ms: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
            proptest::prop_assert_eq!(blake3_many(&ms), expected(&ms));
            for m in &ms {
                proptest::prop_assert_eq!(blake3_of(m), *blake3::hash(m).as_bytes());
            }
            every_kernel(&ms, usize::MAX, "random messages");
        }
    }

    #[test]
    fn the_left_subtree_is_the_largest_power_of_two_below() {
        let got: Vec<usize> = (2..=9).map(left_chunks).collect();
        assert_eq!(got, [1, 2, 2, 4, 4, 4, 4, 8]);
    }
}
