//! The x86-64 kernels: 8 lanes in AVX2 registers, 16 in AVX-512 registers.
//!
//! A kernel value ([`Avx2`], [`Avx512`]) is made only where the CPU has its
//! instructions, so holding one is what makes calling it sound.

// The one place the crate uses CPU instructions directly; every `unsafe` here is an
// intrinsic call on a CPU the kernel value proves has it, or a load or store of a
// reference's own bytes.
#![allow(unsafe_code)]

use super::kernel::{Blocks, Kernel, Vector, compress};
use super::{BLOCK_LEN, Hash};
use std::arch::x86_64::*;

/// The widest kernel this CPU runs.
#[derive(Clone, Copy)]
pub(super) enum Widest {
    Avx512(Avx512),
    Avx2(Avx2),
}

impl Widest {
    /// AVX-512 where the CPU has it, else AVX2, else none.
    pub(super) fn detect() -> Option<Self> {
        Avx512::detect().map(Self::Avx512).or_else(|| Avx2::detect().map(Self::Avx2))
    }

    /// How many chunks it compresses at once.
    pub(super) fn lanes(self) -> usize {
        match self {
            Self::Avx512(_) => 16,
            Self::Avx2(_) => 8,
        }
    }

    /// [`side_by_side`](super::side_by_side) with this kernel.
    pub(super) fn side_by_side(self, messages: &[&[u8]], max: usize) -> Vec<Hash> {
        match self {
            Self::Avx512(k) => super::side_by_side(k, messages, max),
            Self::Avx2(k) => super::side_by_side(k, messages, max),
        }
    }
}

/// The AVX2 kernel: 8 lanes.
#[derive(Clone, Copy)]
pub(super) struct Avx2(());

impl Avx2 {
    /// The kernel, if this CPU has AVX2.
    pub(super) fn detect() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx2").then_some(Self(()))
    }
}

impl Kernel<8> for Avx2 {
    fn compress(self, cv: &mut [[u32; 8]; 8], blocks: &Blocks<'_, 8>) {
        // SAFETY: an `Avx2` exists only on a CPU with AVX2 (`Avx2::detect`).
        unsafe { compress_avx2(cv, blocks) }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn compress_avx2(cv: &mut [[u32; 8]; 8], blocks: &Blocks<'_, 8>) {
    // SAFETY: this function runs with AVX2 enabled, which is all `Ymm` uses.
    unsafe { compress::<8, Ymm>(cv, blocks) }
}

/// The AVX-512 kernel: 16 lanes.
#[derive(Clone, Copy)]
pub(super) struct Avx512(());

impl Avx512 {
    /// The kernel, if this CPU has AVX-512F.
    pub(super) fn detect() -> Option<Self> {
        std::arch::is_x86_feature_detected!("avx512f").then_some(Self(()))
    }
}

impl Kernel<16> for Avx512 {
    fn compress(self, cv: &mut [[u32; 16]; 8], blocks: &Blocks<'_, 16>) {
        // SAFETY: an `Avx512` exists only on a CPU with AVX-512F (`Avx512::detect`).
        unsafe { compress_avx512(cv, blocks) }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn compress_avx512(cv: &mut [[u32; 16]; 8], blocks: &Blocks<'_, 16>) {
    // SAFETY: this function runs with AVX-512F enabled, which is all `Zmm` uses.
    unsafe { compress::<16, Zmm>(cv, blocks) }
}

/// Eight u32 lanes in a 256-bit register (AVX2).
#[derive(Clone, Copy)]
struct Ymm(__m256i);

impl Vector<8> for Ymm {
    #[inline(always)]
    unsafe fn load(words: &[u32; 8]) -> Self {
        // SAFETY: 32 readable bytes behind the reference; AVX2 per the trait's contract.
        Self(unsafe { _mm256_loadu_si256(words.as_ptr().cast()) })
    }
    #[inline(always)]
    unsafe fn store(self, words: &mut [u32; 8]) {
        // SAFETY: 32 writable bytes behind the reference.
        unsafe { _mm256_storeu_si256(words.as_mut_ptr().cast(), self.0) }
    }
    #[inline(always)]
    unsafe fn splat(x: u32) -> Self {
        Self(unsafe { _mm256_set1_epi32(x as i32) })
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Self(unsafe { _mm256_add_epi32(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn xor(self, o: Self) -> Self {
        Self(unsafe { _mm256_xor_si256(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn ror16(self) -> Self {
        // Whole bytes move: one byte shuffle (bytes 2, 3, 0, 1 of each word).
        unsafe {
            let idx = _mm256_setr_epi8(
                2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12,
                13,
            );
            Self(_mm256_shuffle_epi8(self.0, idx))
        }
    }
    #[inline(always)]
    unsafe fn ror12(self) -> Self {
        Self(unsafe { _mm256_or_si256(_mm256_srli_epi32::<12>(self.0), _mm256_slli_epi32::<20>(self.0)) })
    }
    #[inline(always)]
    unsafe fn ror8(self) -> Self {
        unsafe {
            let idx = _mm256_setr_epi8(
                1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15, 12, 1, 2, 3, 0, 5, 6, 7, 4, 9, 10, 11, 8, 13, 14, 15,
                12,
            );
            Self(_mm256_shuffle_epi8(self.0, idx))
        }
    }
    #[inline(always)]
    unsafe fn ror7(self) -> Self {
        Self(unsafe { _mm256_or_si256(_mm256_srli_epi32::<7>(self.0), _mm256_slli_epi32::<25>(self.0)) })
    }
    #[inline(always)]
    unsafe fn message(blocks: &[&[u8; BLOCK_LEN]; 8]) -> [Self; 16] {
        // SAFETY: each block is 64 readable bytes; AVX2 per the trait's contract.
        unsafe {
            let half = |h: usize| -> [__m256i; 8] {
                std::array::from_fn(|l| _mm256_loadu_si256(blocks[l].as_ptr().add(32 * h).cast()))
            };
            let (lo, hi) = (transpose8(half(0)), transpose8(half(1)));
            std::array::from_fn(|w| Self(if w < 8 { lo[w] } else { hi[w - 8] }))
        }
    }
}

/// Rows of eight words become columns: `out[w]` holds word `w` of every row.
#[inline(always)]
unsafe fn transpose8(r: [__m256i; 8]) -> [__m256i; 8] {
    // SAFETY: AVX2, per the callers' contract.
    unsafe {
        // In each 128-bit half h: words 4h and 4h+1 (lo), 4h+2 and 4h+3 (hi) of two rows.
        let t: [__m256i; 8] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 { _mm256_unpacklo_epi32(a, b) } else { _mm256_unpackhi_epi32(a, b) }
        });
        // u[4q + j], half h: word 4h + j of rows 4q..4q+4.
        let u: [__m256i; 8] = std::array::from_fn(|i| {
            let (q, j) = (i / 4, i % 4);
            let (a, b) = (t[4 * q + (j / 2)], t[4 * q + 2 + (j / 2)]);
            if j % 2 == 0 { _mm256_unpacklo_epi64(a, b) } else { _mm256_unpackhi_epi64(a, b) }
        });
        // Word j: the low halves of rows 0..4 and 4..8; word j + 4: the high halves.
        std::array::from_fn(|w| {
            let (a, b) = (u[w % 4], u[4 + w % 4]);
            if w < 4 { _mm256_permute2x128_si256::<0x20>(a, b) } else { _mm256_permute2x128_si256::<0x31>(a, b) }
        })
    }
}

/// Sixteen u32 lanes in a 512-bit register (AVX-512F).
#[derive(Clone, Copy)]
struct Zmm(__m512i);

impl Vector<16> for Zmm {
    #[inline(always)]
    unsafe fn load(words: &[u32; 16]) -> Self {
        // SAFETY: 64 readable bytes behind the reference; AVX-512F per the trait's contract.
        Self(unsafe { _mm512_loadu_si512(words.as_ptr().cast()) })
    }
    #[inline(always)]
    unsafe fn store(self, words: &mut [u32; 16]) {
        // SAFETY: 64 writable bytes behind the reference.
        unsafe { _mm512_storeu_si512(words.as_mut_ptr().cast(), self.0) }
    }
    #[inline(always)]
    unsafe fn splat(x: u32) -> Self {
        Self(unsafe { _mm512_set1_epi32(x as i32) })
    }
    #[inline(always)]
    unsafe fn add(self, o: Self) -> Self {
        Self(unsafe { _mm512_add_epi32(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn xor(self, o: Self) -> Self {
        Self(unsafe { _mm512_xor_si512(self.0, o.0) })
    }
    #[inline(always)]
    unsafe fn ror16(self) -> Self {
        Self(unsafe { _mm512_ror_epi32::<16>(self.0) })
    }
    #[inline(always)]
    unsafe fn ror12(self) -> Self {
        Self(unsafe { _mm512_ror_epi32::<12>(self.0) })
    }
    #[inline(always)]
    unsafe fn ror8(self) -> Self {
        Self(unsafe { _mm512_ror_epi32::<8>(self.0) })
    }
    #[inline(always)]
    unsafe fn ror7(self) -> Self {
        Self(unsafe { _mm512_ror_epi32::<7>(self.0) })
    }
    #[inline(always)]
    unsafe fn message(blocks: &[&[u8; BLOCK_LEN]; 16]) -> [Self; 16] {
        // SAFETY: each block is 64 readable bytes; AVX-512F per the trait's contract.
        unsafe {
            let rows: [__m512i; 16] = std::array::from_fn(|l| _mm512_loadu_si512(blocks[l].as_ptr().cast()));
            transpose16(rows).map(Self)
        }
    }
}

/// Rows of sixteen words become columns: `out[w]` holds word `w` of every row.
#[inline(always)]
unsafe fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
    // SAFETY: AVX-512F, per the callers' contract.
    unsafe {
        // In each 128-bit lane k: words 4k, 4k+1 (even i) or 4k+2, 4k+3 (odd i) of two rows.
        let t: [__m512i; 16] = std::array::from_fn(|i| {
            let (a, b) = (r[i & !1], r[i | 1]);
            if i % 2 == 0 { _mm512_unpacklo_epi32(a, b) } else { _mm512_unpackhi_epi32(a, b) }
        });
        // c[4q + j], lane k: word 4k + j of rows 4q..4q+4.
        let c: [__m512i; 16] = std::array::from_fn(|i| {
            let (q, j) = (i / 4, i % 4);
            let (a, b) = (t[4 * q + (j / 2)], t[4 * q + 2 + (j / 2)]);
            if j % 2 == 0 { _mm512_unpacklo_epi64(a, b) } else { _mm512_unpackhi_epi64(a, b) }
        });
        // For each j, the 4x4 transpose of 128-bit lanes across c[j], c[4 + j], c[8 + j],
        // c[12 + j]: word 4k + j is lane k of each, in row-group order.
        let mut out = [_mm512_setzero_si512(); 16];
        for j in 0..4 {
            let (c0, c1, c2, c3) = (c[j], c[4 + j], c[8 + j], c[12 + j]);
            // Lanes 0, 2 of the first and 0, 2 of the second (0x88); lanes 1, 3 (0xDD).
            let (d0, d1) = (_mm512_shuffle_i32x4::<0x88>(c0, c1), _mm512_shuffle_i32x4::<0xDD>(c0, c1));
            let (d2, d3) = (_mm512_shuffle_i32x4::<0x88>(c2, c3), _mm512_shuffle_i32x4::<0xDD>(c2, c3));
            out[j] = _mm512_shuffle_i32x4::<0x88>(d0, d2);
            out[8 + j] = _mm512_shuffle_i32x4::<0xDD>(d0, d2);
            out[4 + j] = _mm512_shuffle_i32x4::<0x88>(d1, d3);
            out[12 + j] = _mm512_shuffle_i32x4::<0xDD>(d1, d3);
        }
        out
    }
}
