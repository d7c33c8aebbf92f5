//! Block decoders written for the autovectorizer: fixed-size arrays in and
//! out, no bounds checks in the loops, branch-free f16 conversion.
//!
//! Each decoder produces bit for bit the f32 values of
//! [`crate::reference::dequantize_row`]: the same operations in the same
//! order, only arranged so LLVM can turn each loop into vector code
//! (`cpu/tests.rs` holds them to that). They serve the portable kernels;
//! the AVX2 kernels share [`f16_to_f32`] and the float tails.

use crate::blocks::{self, scale_min_k4, QK, QK_K};

/// One storage format as a decoder from `B` encoded bytes to `E` values.
///
/// Block formats decode one block at a time (`E` = block size). The plain
/// float formats decode 32 elements at a time and finish rows whose length
/// is not a multiple of 32 with [`Codec::decode_tail`].
pub(super) trait Codec<const E: usize, const B: usize> {
    /// Decodes one full unit.
    fn decode(b: &[u8; B], y: &mut [f32; E]);

    /// Decodes a partial unit at the end of a row (`b.len() < B`). Block
    /// formats never have one: their rows are whole blocks.
    #[inline(always)]
    fn decode_tail(b: &[u8], y: &mut [f32]) {
        debug_assert!(b.is_empty() && y.is_empty(), "block rows have no tail");
    }
}

/// f16 bits to f32, exactly, without branches or tables (vectorizes).
///
/// Placing the f16 exponent and mantissa at the top of an f32's fields gives
/// the f16 value times 2^-112, also for subnormals; multiplying by 2^112 is
/// then exact. Infinity and NaN (exponent all ones) need their exponent
/// widened instead.
#[inline(always)]
pub(super) fn f16_to_f32(h: u16) -> f32 {
    const TWO_POW_112: f32 = f32::from_bits((127 + 112) << 23);
    let h = u32::from(h);
    let magnitude = (h & 0x7FFF) << 13;
    let finite = f32::from_bits(magnitude) * TWO_POW_112;
    let special = f32::from_bits(magnitude | 0x7F80_0000);
    let value = if h & 0x7C00 == 0x7C00 {
        special
    } else {
        finite
    };
    f32::from_bits(value.to_bits() | ((h & 0x8000) << 16))
}

/// The little-endian f16 at `b[at..at + 2]`.
#[inline(always)]
fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_to_f32(u16::from_le_bytes([b[at], b[at + 1]]))
}

/// Little-endian f32 rows, 32 elements per unit.
pub(super) struct F32;
impl Codec<32, 128> for F32 {
    #[inline(always)]
    fn decode(b: &[u8; 128], y: &mut [f32; 32]) {
        Self::decode_tail(b, y);
    }

    #[inline(always)]
    fn decode_tail(b: &[u8], y: &mut [f32]) {
        for (yj, c) in y.iter_mut().zip(b.chunks_exact(4)) {
            *yj = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        }
    }
}

/// Little-endian f16 rows, 32 elements per unit.
pub(super) struct F16;
impl Codec<32, 64> for F16 {
    #[inline(always)]
    fn decode(b: &[u8; 64], y: &mut [f32; 32]) {
        Self::decode_tail(b, y);
    }

    #[inline(always)]
    fn decode_tail(b: &[u8], y: &mut [f32]) {
        for (yj, c) in y.iter_mut().zip(b.chunks_exact(2)) {
            *yj = f16_to_f32(u16::from_le_bytes([c[0], c[1]]));
        }
    }
}

/// Little-endian bf16 rows, 32 elements per unit: bf16 is the top half of an
/// f32, so widening is a shift.
pub(super) struct Bf16;
impl Codec<32, 64> for Bf16 {
    #[inline(always)]
    fn decode(b: &[u8; 64], y: &mut [f32; 32]) {
        Self::decode_tail(b, y);
    }

    #[inline(always)]
    fn decode_tail(b: &[u8], y: &mut [f32]) {
        for (yj, c) in y.iter_mut().zip(b.chunks_exact(2)) {
            *yj = f32::from_bits(u32::from(u16::from_le_bytes([c[0], c[1]])) << 16);
        }
    }
}

/// Q8_0: `y = q * d`.
pub(super) struct Q8_0;
impl Codec<QK, 34> for Q8_0 {
    #[inline(always)]
    fn decode(b: &[u8; 34], y: &mut [f32; QK]) {
        let d = f16_at(b, 0);
        for (yj, &q) in y.iter_mut().zip(&b[2..]) {
            *yj = f32::from(q as i8) * d;
        }
    }
}

/// The 32 four-bit codes of a Q4_0/Q4_1 block's 16 `qs` bytes, in element
/// order (low nibbles first).
#[inline(always)]
fn nibbles(qs: &[u8]) -> [u8; QK] {
    let mut q = [0u8; QK];
    for j in 0..QK / 2 {
        q[j] = qs[j] & 0x0F;
        q[j + QK / 2] = qs[j] >> 4;
    }
    q
}

/// Q4_0: `y = (q - 8) * d`.
pub(super) struct Q4_0;
impl Codec<QK, 18> for Q4_0 {
    #[inline(always)]
    fn decode(b: &[u8; 18], y: &mut [f32; QK]) {
        let d = f16_at(b, 0);
        for (yj, q) in y.iter_mut().zip(nibbles(&b[2..])) {
            *yj = f32::from(i16::from(q) - 8) * d;
        }
    }
}

/// Q4_1: `y = q * d + m`.
pub(super) struct Q4_1;
impl Codec<QK, 20> for Q4_1 {
    #[inline(always)]
    fn decode(b: &[u8; 20], y: &mut [f32; QK]) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        for (yj, q) in y.iter_mut().zip(nibbles(&b[4..])) {
            *yj = f32::from(q) * d + m;
        }
    }
}

/// The 32 five-bit codes of a Q5_0/Q5_1 block: nibbles plus bit `j` of `qh`.
#[inline(always)]
fn five_bit(qh: u32, qs: &[u8]) -> [u8; QK] {
    let mut q = nibbles(qs);
    for (j, qj) in q.iter_mut().enumerate() {
        *qj |= (((qh >> j) & 1) << 4) as u8;
    }
    q
}

/// Q5_0: `y = (q - 16) * d`.
pub(super) struct Q5_0;
impl Codec<QK, 22> for Q5_0 {
    #[inline(always)]
    fn decode(b: &[u8; 22], y: &mut [f32; QK]) {
        let d = f16_at(b, 0);
        for (yj, q) in y.iter_mut().zip(five_bit(blocks::u32_at(b, 2), &b[6..])) {
            *yj = f32::from(i16::from(q) - 16) * d;
        }
    }
}

/// Q5_1: `y = q * d + m`.
pub(super) struct Q5_1;
impl Codec<QK, 24> for Q5_1 {
    #[inline(always)]
    fn decode(b: &[u8; 24], y: &mut [f32; QK]) {
        let (d, m) = (f16_at(b, 0), f16_at(b, 2));
        for (yj, q) in y.iter_mut().zip(five_bit(blocks::u32_at(b, 4), &b[8..])) {
            *yj = f32::from(q) * d + m;
        }
    }
}

/// Sub-block `sub` (32 elements) of a Q4_K/Q5_K block from its codes:
/// `y = (d * sc) * q - dmin * m`.
#[inline(always)]
fn min_scaled_sub(b: &[u8], sub: usize, q: &[u8; 32], y: &mut [f32]) {
    let (sc, m) = scale_min_k4(sub, &b[4..16]);
    let d1 = f16_at(b, 0) * f32::from(sc);
    let m1 = f16_at(b, 2) * f32::from(m);
    for (yj, &qj) in y.iter_mut().zip(q) {
        *yj = d1 * f32::from(qj) - m1;
    }
}

/// Q4_K: sub-block `2k` in the low nibbles of `qs[32k..32k + 32]`, `2k + 1` in
/// the high nibbles.
pub(super) struct Q4K;
impl Codec<QK_K, 144> for Q4K {
    #[inline(always)]
    fn decode(b: &[u8; 144], y: &mut [f32; QK_K]) {
        for (k, y64) in y.chunks_exact_mut(64).enumerate() {
            let qs = &b[blocks::Q4K_QS + 32 * k..][..32];
            let (lo, hi) = split_nibbles(qs);
            let (y_lo, y_hi) = y64.split_at_mut(32);
            min_scaled_sub(b, 2 * k, &lo, y_lo);
            min_scaled_sub(b, 2 * k + 1, &hi, y_hi);
        }
    }
}

/// The low and the high nibbles of 32 bytes.
#[inline(always)]
fn split_nibbles(qs: &[u8]) -> ([u8; 32], [u8; 32]) {
    let (mut lo, mut hi) = ([0u8; 32], [0u8; 32]);
    for l in 0..32 {
        lo[l] = qs[l] & 0x0F;
        hi[l] = qs[l] >> 4;
    }
    (lo, hi)
}

/// Q5_K: as Q4_K, with the fifth bit of element `l` of sub-block `sub` in
/// bit `sub` of `qh[l]`.
pub(super) struct Q5K;
impl Codec<QK_K, 176> for Q5K {
    #[inline(always)]
    fn decode(b: &[u8; 176], y: &mut [f32; QK_K]) {
        let qh = &b[blocks::Q5K_QH..blocks::Q5K_QS];
        for (k, y64) in y.chunks_exact_mut(64).enumerate() {
            let qs = &b[blocks::Q5K_QS + 32 * k..][..32];
            let (mut lo, mut hi) = split_nibbles(qs);
            for l in 0..32 {
                lo[l] |= ((qh[l] >> (2 * k)) & 1) << 4;
                hi[l] |= ((qh[l] >> (2 * k + 1)) & 1) << 4;
            }
            let (y_lo, y_hi) = y64.split_at_mut(32);
            min_scaled_sub(b, 2 * k, &lo, y_lo);
            min_scaled_sub(b, 2 * k + 1, &hi, y_hi);
        }
    }
}

/// Q6_K: per half of 128, four runs of 32 (`k`) whose low nibbles come from
/// `ql` and top two bits from bits `2k..2k + 2` of `qh`; one i8 scale per 16.
pub(super) struct Q6K;
impl Codec<QK_K, 210> for Q6K {
    #[inline(always)]
    fn decode(b: &[u8; 210], y: &mut [f32; QK_K]) {
        let d = f16_at(b, blocks::Q6K_D);
        for (half, y128) in y.chunks_exact_mut(128).enumerate() {
            let ql = &b[64 * half..][..64];
            let qh = &b[blocks::Q6K_QH + 32 * half..][..32];
            let scales = &b[blocks::Q6K_SCALES + 8 * half..][..8];
            for (k, y32) in y128.chunks_exact_mut(32).enumerate() {
                let ql = &ql[32 * (k % 2)..][..32];
                for (s, y16) in y32.chunks_exact_mut(16).enumerate() {
                    let d1 = d * f32::from(scales[2 * k + s] as i8);
                    for (i, yj) in y16.iter_mut().enumerate() {
                        let l = 16 * s + i;
                        let lo = (ql[l] >> (4 * (k / 2))) & 0x0F;
                        let hi = (qh[l] >> (2 * k)) & 3;
                        *yj = d1 * f32::from(i16::from(lo | (hi << 4)) - 32);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::f16_to_f32;

    #[test]
    fn f16_conversion_matches_half_for_every_value() {
        for bits in 0..=u16::MAX {
            let ours = f16_to_f32(bits);
            let theirs = half::f16::from_bits(bits).to_f32();
            if theirs.is_nan() {
                assert!(ours.is_nan(), "{bits:#06x}");
            } else {
                assert_eq!(ours.to_bits(), theirs.to_bits(), "{bits:#06x}");
            }
        }
    }
}
