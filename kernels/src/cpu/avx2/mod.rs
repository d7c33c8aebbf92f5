//! Hand-written AVX2 + FMA + F16C kernels for x86-64, chosen at run time.
//!
//! Every format decodes 32 elements at a time into a [`Group`] of four 8-lane
//! vectors, element `8k + lane` in vector `k` (`formats.rs`). Decoding
//! repeats the reference arithmetic exactly (integer code, then `cvt`, then a
//! separate multiply and add, never fused), so decoded weights are
//! bit-identical to [`crate::reference::dequantize_row`]; only the dot
//! products fuse. For one activation row, groups go straight from the
//! decoder into the multiply-adds without touching memory.
//!
//! Safety and inlining: an [`Avx2`] value exists only once the three features
//! were detected, so it is proof that their intrinsics may run. The small
//! helpers are `#[inline(always)]` methods on it (`#[target_feature]` cannot
//! be combined with `inline(always)`), and the loops that call them are
//! `#[target_feature]` functions, so once the helpers are inlined the whole
//! loop is compiled for AVX2.

mod formats;

use std::arch::x86_64::*;

use super::decode::{self, Codec};
use super::rows::{Kernels, TILE_W, TILE_X};
use crate::DType;

/// Proof that this CPU has AVX2, FMA and F16C: only [`Avx2::detect`] makes one.
#[derive(Debug, Clone, Copy)]
pub(super) struct Avx2 {
    _detected: (),
}

/// 32 decoded elements: element `8k + lane` in vector `k`.
type Group = [__m256; 4];

impl Avx2 {
    /// `Some` when this CPU supports AVX2, FMA and F16C.
    pub(super) fn detect() -> Option<Self> {
        let ok = is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
            && is_x86_feature_detected!("f16c");
        ok.then_some(Avx2 { _detected: () })
    }
}

impl Kernels for Avx2 {
    fn dot_encoded(self, dtype: DType, row: &[u8], x: &[f32]) -> f32 {
        // SAFETY: `self` proves the CPU has the features the function enables.
        unsafe { dot_encoded(self, dtype, row, x) }
    }

    fn decode(self, dtype: DType, row: &[u8], dst: &mut [f32]) {
        // SAFETY: `self` proves the CPU has the features the function enables.
        unsafe { decode_row(self, dtype, row, dst) }
    }

    fn dot_tile(self, w: [&[f32]; TILE_W], x: [&[f32]; TILE_X]) -> [[f32; TILE_W]; TILE_X] {
        // SAFETY: `self` proves the CPU has the features the function enables.
        unsafe { dot_tile(self, w, x) }
    }
}

/// Blocks of a 32-element format whose f16 scales are converted together.
const SEGMENT: usize = 32;

/// See [`Kernels::dot_encoded`].
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_encoded(t: Avx2, dtype: DType, row: &[u8], x: &[f32]) -> f32 {
    match dtype {
        DType::F32 => {
            t.dot_blocks(row, x, 128, |b| [t.f32_group(b)]) + float_tail_dot(dtype, row, x)
        }
        DType::F16 => {
            t.dot_blocks(row, x, 64, |b| [t.f16_group(b)]) + float_tail_dot(dtype, row, x)
        }
        DType::BF16 => {
            t.dot_blocks(row, x, 64, |b| [t.bf16_group(b)]) + float_tail_dot(dtype, row, x)
        }
        DType::Q8_0 => t.dot_scaled(row, x, 34, false, |b, d, _| t.q8_0(b, d)),
        DType::Q4_0 => t.dot_scaled(row, x, 18, false, |b, d, _| t.q4_0(b, d)),
        DType::Q4_1 => t.dot_scaled(row, x, 20, true, |b, d, m| t.q4_1(b, d, m)),
        DType::Q5_0 => t.dot_scaled(row, x, 22, false, |b, d, _| t.q5_0(b, d)),
        DType::Q5_1 => t.dot_scaled(row, x, 24, true, |b, d, m| t.q5_1(b, d, m)),
        DType::Q4K => t.dot_blocks(row, x, 144, |b| t.q4_k(b)),
        DType::Q5K => t.dot_blocks(row, x, 176, |b| t.q5_k(b)),
        DType::Q6K => t.dot_blocks(row, x, 210, |b| t.q6_k(b)),
    }
}

/// See [`Kernels::decode`].
#[target_feature(enable = "avx2,fma,f16c")]
fn decode_row(t: Avx2, dtype: DType, row: &[u8], dst: &mut [f32]) {
    match dtype {
        DType::F32 => t.decode_blocks(row, dst, 128, |b| [t.f32_group(b)]),
        DType::F16 => t.decode_blocks(row, dst, 64, |b| [t.f16_group(b)]),
        DType::BF16 => t.decode_blocks(row, dst, 64, |b| [t.bf16_group(b)]),
        DType::Q8_0 => t.decode_scaled(row, dst, 34, false, |b, d, _| t.q8_0(b, d)),
        DType::Q4_0 => t.decode_scaled(row, dst, 18, false, |b, d, _| t.q4_0(b, d)),
        DType::Q4_1 => t.decode_scaled(row, dst, 20, true, |b, d, m| t.q4_1(b, d, m)),
        DType::Q5_0 => t.decode_scaled(row, dst, 22, false, |b, d, _| t.q5_0(b, d)),
        DType::Q5_1 => t.decode_scaled(row, dst, 24, true, |b, d, m| t.q5_1(b, d, m)),
        DType::Q4K => t.decode_blocks(row, dst, 144, |b| t.q4_k(b)),
        DType::Q5K => t.decode_blocks(row, dst, 176, |b| t.q5_k(b)),
        DType::Q6K => t.decode_blocks(row, dst, 210, |b| t.q6_k(b)),
    }
    float_tail_decode(dtype, row, dst);
}

/// See [`Kernels::dot_tile`]: twelve accumulators (one per product), so
/// twelve independent multiply-add chains, and seven loads per twelve
/// multiply-adds; with the three `x` vectors and one `w` vector that fills
/// the sixteen registers.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_tile(t: Avx2, w: [&[f32]; TILE_W], x: [&[f32]; TILE_X]) -> [[f32; TILE_W]; TILE_X] {
    let len = x[0].len();
    assert!(
        w.iter().chain(&x).all(|r| r.len() == len),
        "dot_tile rows differ in length"
    );
    let body = len - len % 8;
    let mut acc = [[t.zero(); TILE_W]; TILE_X];
    for c in (0..body).step_by(8) {
        let mut xs = [t.zero(); TILE_X];
        for i in 0..TILE_X {
            // SAFETY: `c + 8 <= body <= len`, the length of every row.
            xs[i] = unsafe { t.load8_unchecked(x[i], c) };
        }
        for r in 0..TILE_W {
            // SAFETY: as above.
            let wv = unsafe { t.load8_unchecked(w[r], c) };
            for i in 0..TILE_X {
                acc[i][r] = t.fmadd(wv, xs[i], acc[i][r]);
            }
        }
    }
    let mut out = [[0.0f32; TILE_W]; TILE_X];
    for i in 0..TILE_X {
        for r in 0..TILE_W {
            out[i][r] = tail_dot(t.hsum([acc[i][r]]), &w[r][body..], &x[i][body..]);
        }
    }
    out
}

/// `sum + w · x`, one element at a time, for the ends of rows.
#[inline(always)]
fn tail_dot(sum: f32, w: &[f32], x: &[f32]) -> f32 {
    w.iter().zip(x).fold(sum, |s, (&w, &x)| w.mul_add(x, s))
}

/// The part of a plain float row past its last whole 32 elements, as
/// `(row bytes, element count)`.
fn float_tail(dtype: DType, row: &[u8]) -> (&[u8], usize) {
    let size = dtype.block_bytes();
    let len = row.len() / size;
    let tail = len % 32;
    (&row[(len - tail) * size..], tail)
}

/// `row · x` over the tail `dot_blocks` leaves; 0 for block formats.
#[target_feature(enable = "avx2,fma,f16c")]
fn float_tail_dot(dtype: DType, row: &[u8], x: &[f32]) -> f32 {
    if dtype.is_quantized() {
        return 0.0;
    }
    let (bytes, len) = float_tail(dtype, row);
    let mut w = [0.0f32; 32];
    float_tail_decode(dtype, bytes, &mut w[..len]);
    tail_dot(0.0, &w[..len], &x[x.len() - len..])
}

/// Decodes the tail `decode_blocks` leaves into the end of `dst`.
#[target_feature(enable = "avx2,fma,f16c")]
fn float_tail_decode(dtype: DType, row: &[u8], dst: &mut [f32]) {
    if dtype.is_quantized() {
        return;
    }
    let (bytes, len) = float_tail(dtype, row);
    let start = dst.len() - len;
    let dst = &mut dst[start..];
    match dtype {
        DType::F32 => decode::F32::decode_tail(bytes, dst),
        DType::F16 => decode::F16::decode_tail(bytes, dst),
        _ => decode::Bf16::decode_tail(bytes, dst),
    }
}

/// Loops and vector primitives, inlined into the `#[target_feature]`
/// functions above.
impl Avx2 {
    /// `Σ row · x` over the whole blocks of `row` (`bytes` each, `32 * G`
    /// elements each); plain float rows may leave a tail for the caller.
    #[inline(always)]
    fn dot_blocks<const G: usize>(
        self,
        row: &[u8],
        x: &[f32],
        bytes: usize,
        decode: impl Fn(&[u8]) -> [Group; G],
    ) -> f32 {
        let mut acc = [self.zero(); 4];
        for (b, xs) in row.chunks_exact(bytes).zip(x.chunks_exact(32 * G)) {
            let groups = decode(b);
            for (g, xs) in xs.chunks_exact(32).enumerate() {
                for k in 0..4 {
                    acc[k] = self.fmadd(groups[g][k], self.load8(&xs[8 * k..]), acc[k]);
                }
            }
        }
        self.hsum(acc)
    }

    /// Decodes the whole blocks of `row` into `dst`.
    #[inline(always)]
    fn decode_blocks<const G: usize>(
        self,
        row: &[u8],
        dst: &mut [f32],
        bytes: usize,
        decode: impl Fn(&[u8]) -> [Group; G],
    ) {
        for (b, out) in row.chunks_exact(bytes).zip(dst.chunks_exact_mut(32 * G)) {
            let groups = decode(b);
            for (g, out) in out.chunks_exact_mut(32).enumerate() {
                for k in 0..4 {
                    self.store8(&mut out[8 * k..], groups[g][k]);
                }
            }
        }
    }

    /// [`Avx2::dot_blocks`] for the 32-element formats whose block starts
    /// with an f16 scale `d` (and, with `offset`, an f16 offset `m` after
    /// it): the scales of [`SEGMENT`] blocks are converted in one batch and
    /// handed to `decode` splat.
    #[inline(always)]
    fn dot_scaled(
        self,
        row: &[u8],
        x: &[f32],
        bytes: usize,
        offset: bool,
        decode: impl Fn(&[u8], __m256, __m256) -> Group,
    ) -> f32 {
        let mut acc = [self.zero(); 4];
        for (seg, xs) in row.chunks(bytes * SEGMENT).zip(x.chunks(32 * SEGMENT)) {
            let d = self.block_f16s(seg, bytes, 0);
            let m = if offset {
                self.block_f16s(seg, bytes, 2)
            } else {
                [0.0; SEGMENT]
            };
            for (i, (b, xs)) in seg.chunks_exact(bytes).zip(xs.chunks_exact(32)).enumerate() {
                let w = decode(b, self.splat(d[i]), self.splat(m[i]));
                for k in 0..4 {
                    acc[k] = self.fmadd(w[k], self.load8(&xs[8 * k..]), acc[k]);
                }
            }
        }
        self.hsum(acc)
    }

    /// [`Avx2::decode_blocks`] for the formats of [`Avx2::dot_scaled`].
    #[inline(always)]
    fn decode_scaled(
        self,
        row: &[u8],
        dst: &mut [f32],
        bytes: usize,
        offset: bool,
        decode: impl Fn(&[u8], __m256, __m256) -> Group,
    ) {
        for (seg, out) in row
            .chunks(bytes * SEGMENT)
            .zip(dst.chunks_mut(32 * SEGMENT))
        {
            let d = self.block_f16s(seg, bytes, 0);
            let m = if offset {
                self.block_f16s(seg, bytes, 2)
            } else {
                [0.0; SEGMENT]
            };
            for (i, (b, out)) in seg
                .chunks_exact(bytes)
                .zip(out.chunks_exact_mut(32))
                .enumerate()
            {
                let w = decode(b, self.splat(d[i]), self.splat(m[i]));
                for k in 0..4 {
                    self.store8(&mut out[8 * k..], w[k]);
                }
            }
        }
    }

    /// Eight zeros.
    #[inline(always)]
    fn zero(self) -> __m256 {
        // SAFETY: `self` proves the CPU has AVX.
        unsafe { _mm256_setzero_ps() }
    }

    /// `a * b + c`, fused.
    #[inline(always)]
    fn fmadd(self, a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: `self` proves the CPU has FMA.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }

    /// The sum of all lanes of all vectors.
    #[inline(always)]
    fn hsum<const N: usize>(self, acc: [__m256; N]) -> f32 {
        // SAFETY: `self` proves the CPU has AVX (SSE3 for `movehdup` with it).
        unsafe {
            let mut v = _mm256_setzero_ps();
            for a in acc {
                v = _mm256_add_ps(v, a);
            }
            let v = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let v = _mm_add_ps(v, _mm_movehl_ps(v, v));
            _mm_cvtss_f32(_mm_add_ss(v, _mm_movehdup_ps(v)))
        }
    }

    /// Eight f32 from the start of `x`.
    #[inline(always)]
    fn load8(self, x: &[f32]) -> __m256 {
        let x = &x[..8];
        // SAFETY: `self` proves AVX; `x` holds 8 readable f32 and `loadu`
        // accepts any alignment.
        unsafe { _mm256_loadu_ps(x.as_ptr()) }
    }

    /// Eight f32 from `x[at..at + 8]`, without a bounds check (the hottest
    /// prefill loop checks its lengths once, up front).
    ///
    /// # Safety
    /// `at + 8 <= x.len()`.
    #[inline(always)]
    unsafe fn load8_unchecked(self, x: &[f32], at: usize) -> __m256 {
        debug_assert!(at + 8 <= x.len());
        // SAFETY: the caller keeps `at + 8` within `x`; `self` proves AVX and
        // `loadu` accepts any alignment.
        unsafe { _mm256_loadu_ps(x.as_ptr().add(at)) }
    }

    /// Writes `v` to the first eight elements of `out`.
    #[inline(always)]
    fn store8(self, out: &mut [f32], v: __m256) {
        let out = &mut out[..8];
        // SAFETY: `self` proves AVX; `out` holds 8 writable f32 and `storeu`
        // accepts any alignment.
        unsafe { _mm256_storeu_ps(out.as_mut_ptr(), v) }
    }
}
