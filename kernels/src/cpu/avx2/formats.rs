//! AVX2 block decoders: each turns one block into [`Group`]s of 32 values,
//! element `8k + lane` of a group in vector `k`, with the reference's exact
//! f32 arithmetic (layouts as tabled in `blocks.rs`).
//!
//! Codes are widened to i32 lanes straight from memory (`vpmovzxbd` on eight
//! bytes), so nibbles and extra bits are picked apart with 32-bit shifts and
//! masks. Loops run over fixed-size arrays rather than closures passed to
//! `map`/`from_fn`, which would not be inlined into AVX2 code.

use std::arch::x86_64::*;

use super::{Avx2, Group, SEGMENT};
use crate::blocks::{self, scale_min_k4};
use crate::cpu::decode;

/// 32 codes as i32, four vectors of eight lanes, in element order.
type Codes = [__m256i; 4];

impl Avx2 {
    /// The first 8 bytes of `b`, zero-extended to eight i32 lanes.
    #[inline(always)]
    fn widen_u8(self, b: &[u8]) -> __m256i {
        let b = &b[..8];
        // SAFETY: `self` proves AVX2; `b` holds the 8 bytes `loadl` reads,
        // with no alignment needed.
        unsafe { _mm256_cvtepu8_epi32(_mm_loadl_epi64(b.as_ptr().cast())) }
    }

    /// The first 8 bytes of `b` as i8, sign-extended to eight i32 lanes.
    #[inline(always)]
    fn widen_i8(self, b: &[u8]) -> __m256i {
        let b = &b[..8];
        // SAFETY: as in `widen_u8`.
        unsafe { _mm256_cvtepi8_epi32(_mm_loadl_epi64(b.as_ptr().cast())) }
    }

    /// The first 16 bytes of `b`.
    #[inline(always)]
    fn load16(self, b: &[u8]) -> __m128i {
        let b = &b[..16];
        // SAFETY: `self` proves SSE2; `b` holds the 16 bytes read, with no
        // alignment needed.
        unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
    }

    /// The f16 at byte `at` of each `bytes`-sized block of `seg` (at most
    /// [`SEGMENT`] blocks; the rest of the result is 0), converted eight at a
    /// time by F16C (exactly).
    #[inline(always)]
    pub(super) fn block_f16s(self, seg: &[u8], bytes: usize, at: usize) -> [f32; SEGMENT] {
        let mut bits = [0u16; SEGMENT];
        for (h, b) in bits.iter_mut().zip(seg.chunks_exact(bytes)) {
            *h = u16::from_le_bytes([b[at], b[at + 1]]);
        }
        let mut out = [0.0f32; SEGMENT];
        for (o, h) in out.chunks_exact_mut(8).zip(bits.chunks_exact(8)) {
            // SAFETY: `self` proves F16C; `h` is 8 u16, the 16 bytes `loadu`
            // reads, with no alignment needed.
            let v = unsafe { _mm256_cvtph_ps(_mm_loadu_si128(h.as_ptr().cast())) };
            self.store8(o, v);
        }
        out
    }

    /// The little-endian f16 at `b[at..at + 2]`, widened exactly.
    ///
    /// Converted in general-purpose registers, not with F16C: LLVM narrows a
    /// one-lane `vcvtph2ps` to an insert merging into whatever vector
    /// register is free, often a live accumulator, which chains each block
    /// behind the previous one. Used once per 256-element block; the
    /// 32-element formats convert their scales in batches instead
    /// ([`Avx2::block_f16s`]).
    #[inline(always)]
    fn f16_at(self, b: &[u8], at: usize) -> f32 {
        decode::f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
    }

    /// `v` in all eight lanes.
    #[inline(always)]
    pub(super) fn splat(self, v: f32) -> __m256 {
        // SAFETY: `self` proves AVX.
        unsafe { _mm256_set1_ps(v) }
    }

    /// `(q - bias) as f32 * d`, then `+ m` when given: the reference's order
    /// of operations, unfused. `d` and `m` are splat scalars.
    #[inline(always)]
    fn scale_codes<const N: usize>(
        self,
        q: [__m256i; N],
        bias: i32,
        d: __m256,
        m: Option<__m256>,
    ) -> [__m256; N] {
        // SAFETY: `self` proves AVX2.
        unsafe {
            let bias = _mm256_set1_epi32(bias);
            let mut out = [_mm256_setzero_ps(); N];
            for k in 0..N {
                let v = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(q[k], bias)), d);
                out[k] = match m {
                    Some(m) => _mm256_add_ps(v, m),
                    None => v,
                };
            }
            out
        }
    }

    /// 32 little-endian f32.
    #[inline(always)]
    pub(super) fn f32_group(self, b: &[u8]) -> Group {
        let b = &b[..128];
        // SAFETY: `self` proves AVX; each load reads 32 of `b`'s 128 bytes,
        // `loadu` needs no alignment, and x86 is little-endian.
        unsafe {
            let p = b.as_ptr().cast::<f32>();
            [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ]
        }
    }

    /// 32 little-endian f16.
    #[inline(always)]
    pub(super) fn f16_group(self, b: &[u8]) -> Group {
        let mut out = [self.splat(0.0); 4];
        for (k, o) in out.iter_mut().enumerate() {
            let h = self.load16(&b[16 * k..]);
            // SAFETY: `self` proves F16C.
            *o = unsafe { _mm256_cvtph_ps(h) };
        }
        out
    }

    /// 32 little-endian bf16: each is the top half of its f32.
    #[inline(always)]
    pub(super) fn bf16_group(self, b: &[u8]) -> Group {
        let mut out = [self.splat(0.0); 4];
        for (k, o) in out.iter_mut().enumerate() {
            let h = self.load16(&b[16 * k..]);
            // SAFETY: `self` proves AVX2.
            *o = unsafe { _mm256_castsi256_ps(_mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h))) };
        }
        out
    }

    /// Q8_0: `q * d`, `d` the block's scale (splat).
    #[inline(always)]
    pub(super) fn q8_0(self, b: &[u8], d: __m256) -> Group {
        let mut q = [self.widen_i8(&b[2..]); 4];
        for (k, q) in q.iter_mut().enumerate().skip(1) {
            *q = self.widen_i8(&b[2 + 8 * k..]);
        }
        self.scale_codes(q, 0, d, None)
    }

    /// The 4-bit codes of 16 `qs` bytes in element order: the low nibbles of
    /// bytes 0..8 and 8..16 (elements 0..16), then their high nibbles.
    #[inline(always)]
    fn nibbles(self, qs: &[u8]) -> Codes {
        let (a, b) = (self.widen_u8(qs), self.widen_u8(&qs[8..]));
        // SAFETY: `self` proves AVX2.
        unsafe {
            let low = _mm256_set1_epi32(0x0F);
            [
                _mm256_and_si256(a, low),
                _mm256_and_si256(b, low),
                _mm256_srli_epi32::<4>(a),
                _mm256_srli_epi32::<4>(b),
            ]
        }
    }

    /// Adds the fifth bits of a Q5_0/Q5_1 block: bit `j` of `qh` is worth
    /// 16 to element `j`.
    #[inline(always)]
    fn fifth_bits(self, mut q: Codes, qh: u32) -> Codes {
        // SAFETY: `self` proves AVX2.
        unsafe {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            let one = _mm256_set1_epi32(1);
            for (k, q) in q.iter_mut().enumerate() {
                let word = _mm256_set1_epi32((qh >> (8 * k)) as i32);
                let bit = _mm256_and_si256(_mm256_srlv_epi32(word, lanes), one);
                *q = _mm256_or_si256(*q, _mm256_slli_epi32::<4>(bit));
            }
        }
        q
    }

    /// Q4_0: `(q - 8) * d`.
    #[inline(always)]
    pub(super) fn q4_0(self, b: &[u8], d: __m256) -> Group {
        self.scale_codes(self.nibbles(&b[2..18]), 8, d, None)
    }

    /// Q4_1: `q * d + m`.
    #[inline(always)]
    pub(super) fn q4_1(self, b: &[u8], d: __m256, m: __m256) -> Group {
        self.scale_codes(self.nibbles(&b[4..20]), 0, d, Some(m))
    }

    /// Q5_0: `(q - 16) * d`.
    #[inline(always)]
    pub(super) fn q5_0(self, b: &[u8], d: __m256) -> Group {
        let q = self.fifth_bits(self.nibbles(&b[6..22]), blocks::u32_at(b, 2));
        self.scale_codes(q, 16, d, None)
    }

    /// Q5_1: `q * d + m`.
    #[inline(always)]
    pub(super) fn q5_1(self, b: &[u8], d: __m256, m: __m256) -> Group {
        let q = self.fifth_bits(self.nibbles(&b[8..24]), blocks::u32_at(b, 4));
        self.scale_codes(q, 0, d, Some(m))
    }

    /// Sub-block `j` of a Q4_K/Q5_K block from its codes:
    /// `(d * sc) * q - dmin * m`, with `(d, dmin)` the block's f16 factors.
    #[inline(always)]
    fn min_scaled(self, b: &[u8], (d, dmin): (f32, f32), j: usize, q: Codes) -> Group {
        let (sc, m) = scale_min_k4(j, &b[4..16]);
        let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
        // `d1 * q - m1` is `q * d1 + (-m1)` exactly: negation is exact.
        self.scale_codes(q, 0, self.splat(d1), Some(self.splat(-m1)))
    }

    /// The codes of the two sub-blocks sharing 32 `qs` bytes: low nibbles
    /// (sub-block `2p`) and high nibbles (`2p + 1`).
    #[inline(always)]
    fn k_nibbles(self, qs: &[u8]) -> (Codes, Codes) {
        let mut lo = [self.widen_u8(qs); 4];
        let mut hi = lo;
        // SAFETY: `self` proves AVX2.
        unsafe {
            let low = _mm256_set1_epi32(0x0F);
            for c in 0..4 {
                let v = self.widen_u8(&qs[8 * c..]);
                lo[c] = _mm256_and_si256(v, low);
                hi[c] = _mm256_srli_epi32::<4>(v);
            }
        }
        (lo, hi)
    }

    /// Q4_K: per 64 elements, 32 `qs` bytes.
    #[inline(always)]
    pub(super) fn q4_k(self, b: &[u8]) -> [Group; 8] {
        let factors = (self.f16_at(b, 0), self.f16_at(b, 2));
        let mut out = [[self.splat(0.0); 4]; 8];
        for p in 0..4 {
            let (lo, hi) = self.k_nibbles(&b[blocks::Q4K_QS + 32 * p..][..32]);
            out[2 * p] = self.min_scaled(b, factors, 2 * p, lo);
            out[2 * p + 1] = self.min_scaled(b, factors, 2 * p + 1, hi);
        }
        out
    }

    /// Q5_K: as Q4_K, with the fifth bit of element `l` of sub-block `j` in
    /// bit `j` of `qh[l]`.
    #[inline(always)]
    pub(super) fn q5_k(self, b: &[u8]) -> [Group; 8] {
        let qh = &b[blocks::Q5K_QH..blocks::Q5K_QS];
        let factors = (self.f16_at(b, 0), self.f16_at(b, 2));
        let mut out = [[self.splat(0.0); 4]; 8];
        for p in 0..4 {
            let (mut lo, mut hi) = self.k_nibbles(&b[blocks::Q5K_QS + 32 * p..][..32]);
            // SAFETY: `self` proves AVX2.
            unsafe {
                let one = _mm256_set1_epi32(1);
                let (shift_lo, shift_hi) = (
                    _mm_cvtsi32_si128(2 * p as i32),
                    _mm_cvtsi32_si128(2 * p as i32 + 1),
                );
                for c in 0..4 {
                    let h = self.widen_u8(&qh[8 * c..]);
                    let bit_lo = _mm256_and_si256(_mm256_srl_epi32(h, shift_lo), one);
                    let bit_hi = _mm256_and_si256(_mm256_srl_epi32(h, shift_hi), one);
                    lo[c] = _mm256_or_si256(lo[c], _mm256_slli_epi32::<4>(bit_lo));
                    hi[c] = _mm256_or_si256(hi[c], _mm256_slli_epi32::<4>(bit_hi));
                }
            }
            out[2 * p] = self.min_scaled(b, factors, 2 * p, lo);
            out[2 * p + 1] = self.min_scaled(b, factors, 2 * p + 1, hi);
        }
        out
    }

    /// Q6_K: group `4h + k` (half `h`, run `k`) takes its low nibbles from
    /// `ql[64h + 32(k % 2)..]` (the high nibbles when `k >= 2`) and its top
    /// two bits from bits `2k..2k + 2` of `qh[32h..]`; `(d * sc) * (q - 32)`
    /// with one i8 scale per 16 elements.
    #[inline(always)]
    pub(super) fn q6_k(self, b: &[u8]) -> [Group; 8] {
        let d = self.f16_at(b, blocks::Q6K_D);
        let mut out = [[self.splat(0.0); 4]; 8];
        for h in 0..2 {
            let qh = &b[blocks::Q6K_QH + 32 * h..][..32];
            let scales = &b[blocks::Q6K_SCALES + 8 * h..][..8];
            for k in 0..4 {
                let ql = &b[64 * h + 32 * (k % 2)..][..32];
                let q = self.six_bit_codes(ql, qh, k);
                // One scale per 16 elements: vectors 0-1, then 2-3.
                for half in 0..2 {
                    let d1 = d * f32::from(scales[2 * k + half] as i8);
                    let d1 = self.splat(d1);
                    let g = self.scale_codes([q[2 * half], q[2 * half + 1]], 32, d1, None);
                    out[4 * h + k][2 * half] = g[0];
                    out[4 * h + k][2 * half + 1] = g[1];
                }
            }
        }
        out
    }

    /// The 32 six-bit codes of Q6_K run `k`: nibble from `ql` (high when
    /// `k >= 2`), top bits from bits `2k..2k + 2` of `qh`.
    #[inline(always)]
    fn six_bit_codes(self, ql: &[u8], qh: &[u8], k: usize) -> Codes {
        let mut q = [self.widen_u8(ql); 4];
        // SAFETY: `self` proves AVX2.
        unsafe {
            let lo_shift = _mm_cvtsi32_si128(4 * (k as i32 / 2));
            let hi_shift = _mm_cvtsi32_si128(2 * k as i32);
            let (low, two) = (_mm256_set1_epi32(0x0F), _mm256_set1_epi32(3));
            for (c, q) in q.iter_mut().enumerate() {
                let lo =
                    _mm256_and_si256(_mm256_srl_epi32(self.widen_u8(&ql[8 * c..]), lo_shift), low);
                let hi =
                    _mm256_and_si256(_mm256_srl_epi32(self.widen_u8(&qh[8 * c..]), hi_shift), two);
                *q = _mm256_or_si256(lo, _mm256_slli_epi32::<4>(hi));
            }
        }
        q
    }
}
