//! blake3's compression function on `L` lanes side by side, written once over the
//! vector operations it needs ([`Vector`]); the vector types (`x86.rs`, and a portable one
//! for the tests) say how each operation is done.

// `Vector` is implemented with CPU intrinsics (`x86.rs`); its methods are `unsafe` to
// call, and so is the compression function written over them.
#![allow(unsafe_code)]

use super::{BLOCK_LEN, IV, SCHEDULE};

/// One block of each of `L` lanes, and the words compressed with it.
pub(super) struct Blocks<'a, const L: usize> {
    /// Each lane's 64-byte block (zero-padded when shorter; zeros for an idle lane).
    pub(super) block: [&'a [u8; BLOCK_LEN]; L],
    pub(super) counter_lo: [u32; L],
    pub(super) counter_hi: [u32; L],
    pub(super) block_len: [u32; L],
    pub(super) flags: [u32; L],
}

/// Compresses one block of each of `L` lanes at once.
pub(super) trait Kernel<const L: usize>: Copy {
    /// `cv[i][l]` is word `i` of lane `l`'s chaining value; it becomes the first eight
    /// words of the compression's output (the next chaining value, or the hash).
    fn compress(self, cv: &mut [[u32; L]; 8], blocks: &Blocks<'_, L>);
}

/// A vector of `L` u32 lanes and what the compression function does with it.
///
/// The methods are `unsafe` because a vector type may use instructions that not every CPU
/// has: calling any of them is sound only on a CPU that has its type's instructions.
pub(super) trait Vector<const L: usize>: Copy {
    /// Lane `l` holds `words[l]`.
    unsafe fn load(words: &[u32; L]) -> Self;
    /// The inverse of [`Vector::load`].
    unsafe fn store(self, words: &mut [u32; L]);
    /// Every lane holds `x`.
    unsafe fn splat(x: u32) -> Self;
    /// Lane-wise wrapping addition.
    unsafe fn add(self, other: Self) -> Self;
    /// Lane-wise exclusive or.
    unsafe fn xor(self, other: Self) -> Self;
    /// Lane-wise rotation right by 16, 12, 8 and 7 bits: the four blake3 uses.
    unsafe fn ror16(self) -> Self;
    /// See [`Vector::ror16`].
    unsafe fn ror12(self) -> Self;
    /// See [`Vector::ror16`].
    unsafe fn ror8(self) -> Self;
    /// See [`Vector::ror16`].
    unsafe fn ror7(self) -> Self;
    /// The block's sixteen little-endian message words: vector `i` holds word `i` of
    /// every lane's block.
    unsafe fn message(blocks: &[&[u8; BLOCK_LEN]; L]) -> [Self; 16];
}

/// The compression function over `V`.
///
/// # Safety
///
/// The CPU has the instructions `V` uses (see [`Vector`]).
#[inline(always)]
pub(super) unsafe fn compress<const L: usize, V: Vector<L>>(cv: &mut [[u32; L]; 8], b: &Blocks<'_, L>) {
    // SAFETY: the caller guarantees the CPU has V's instructions.
    unsafe {
        let m = V::message(&b.block);
        let mut v: [V; 16] = [
            V::load(&cv[0]),
            V::load(&cv[1]),
            V::load(&cv[2]),
            V::load(&cv[3]),
            V::load(&cv[4]),
            V::load(&cv[5]),
            V::load(&cv[6]),
            V::load(&cv[7]),
            V::splat(IV[0]),
            V::splat(IV[1]),
            V::splat(IV[2]),
            V::splat(IV[3]),
            V::load(&b.counter_lo),
            V::load(&b.counter_hi),
            V::load(&b.block_len),
            V::load(&b.flags),
        ];
        // Written out, so every message index is a constant (a loop over the schedule
        // left them to run time, bounds checks included).
        round(&mut v, &m, &SCHEDULE[0]);
        round(&mut v, &m, &SCHEDULE[1]);
        round(&mut v, &m, &SCHEDULE[2]);
        round(&mut v, &m, &SCHEDULE[3]);
        round(&mut v, &m, &SCHEDULE[4]);
        round(&mut v, &m, &SCHEDULE[5]);
        round(&mut v, &m, &SCHEDULE[6]);
        for (i, out) in cv.iter_mut().enumerate() {
            v[i].xor(v[i + 8]).store(out);
        }
    }
}

/// One round: the quarter-round on the columns, then on the diagonals, reading the
/// message words in the order `s` gives.
///
/// # Safety
///
/// As [`compress`].
#[inline(always)]
unsafe fn round<const L: usize, V: Vector<L>>(v: &mut [V; 16], m: &[V; 16], s: &[usize; 16]) {
    // SAFETY: the caller guarantees the CPU has V's instructions.
    unsafe {
        g(v, [0, 4, 8, 12], m[s[0]], m[s[1]]);
        g(v, [1, 5, 9, 13], m[s[2]], m[s[3]]);
        g(v, [2, 6, 10, 14], m[s[4]], m[s[5]]);
        g(v, [3, 7, 11, 15], m[s[6]], m[s[7]]);
        g(v, [0, 5, 10, 15], m[s[8]], m[s[9]]);
        g(v, [1, 6, 11, 12], m[s[10]], m[s[11]]);
        g(v, [2, 7, 8, 13], m[s[12]], m[s[13]]);
        g(v, [3, 4, 9, 14], m[s[14]], m[s[15]]);
    }
}

/// The quarter-round on state words `[a, b, c, d]` of every lane.
///
/// # Safety
///
/// As [`compress`].
#[inline(always)]
unsafe fn g<const L: usize, V: Vector<L>>(v: &mut [V; 16], [a, b, c, d]: [usize; 4], x: V, y: V) {
    // SAFETY: the caller guarantees the CPU has V's instructions.
    unsafe {
        let (mut va, mut vb, mut vc, mut vd) = (v[a], v[b], v[c], v[d]);
        va = va.add(vb).add(x);
        vd = vd.xor(va).ror16();
        vc = vc.add(vd);
        vb = vb.xor(vc).ror12();
        va = va.add(vb).add(y);
        vd = vd.xor(va).ror8();
        vc = vc.add(vd);
        vb = vb.xor(vc).ror7();
        (v[a], v[b], v[c], v[d]) = (va, vb, vc, vd);
    }
}

/// Plain arrays, one lane after another, left to the compiler to vectorise: runs
/// anywhere. The tests hold the SIMD kernels and the code around them to it at every
/// width; targets other than x86-64 use it with four lanes (not measured there: on
/// x86-64 it was no faster than hashing one by one).
#[cfg(any(test, not(target_arch = "x86_64")))]
pub(super) mod portable {
    use super::{BLOCK_LEN, Blocks, Kernel, Vector, compress};

    /// The portable kernel.
    #[derive(Clone, Copy)]
    pub(in crate::digest::many) struct Portable;

    impl<const L: usize> Kernel<L> for Portable {
        fn compress(self, cv: &mut [[u32; L]; 8], blocks: &Blocks<'_, L>) {
            // SAFETY: `Lanes` uses no instruction beyond the target's baseline.
            unsafe { compress::<L, Lanes<L>>(cv, blocks) }
        }
    }

    #[derive(Clone, Copy)]
    struct Lanes<const L: usize>([u32; L]);

    impl<const L: usize> Lanes<L> {
        fn map(self, f: impl Fn(u32) -> u32) -> Self {
            Self(self.0.map(f))
        }
        fn zip(self, o: Self, f: impl Fn(u32, u32) -> u32) -> Self {
            Self(std::array::from_fn(|l| f(self.0[l], o.0[l])))
        }
    }

    impl<const L: usize> Vector<L> for Lanes<L> {
        unsafe fn load(words: &[u32; L]) -> Self {
            Self(*words)
        }
        unsafe fn store(self, words: &mut [u32; L]) {
            *words = self.0;
        }
        unsafe fn splat(x: u32) -> Self {
            Self([x; L])
        }
        unsafe fn add(self, o: Self) -> Self {
            self.zip(o, u32::wrapping_add)
        }
        unsafe fn xor(self, o: Self) -> Self {
            self.zip(o, |a, b| a ^ b)
        }
        unsafe fn ror16(self) -> Self {
            self.map(|x| x.rotate_right(16))
        }
        unsafe fn ror12(self) -> Self {
            self.map(|x| x.rotate_right(12))
        }
        unsafe fn ror8(self) -> Self {
            self.map(|x| x.rotate_right(8))
        }
        unsafe fn ror7(self) -> Self {
            self.map(|x| x.rotate_right(7))
        }
        unsafe fn message(blocks: &[&[u8; BLOCK_LEN]; L]) -> [Self; 16] {
            std::array::from_fn(|w| {
                Self(std::array::from_fn(|l| {
                    let b = blocks[l];
                    u32::from_le_bytes([b[4 * w], b[4 * w + 1], b[4 * w + 2], b[4 * w + 3]])
                }))
            })
        }
    }
}
