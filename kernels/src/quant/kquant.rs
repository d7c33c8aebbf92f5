//! Quantizers for the K-quant super-blocks (Q4_K, Q5_K, Q6_K), 256 elements
//! each. Layouts as tabled in `blocks.rs`.
//!
//! Two levels of scale: each sub-block's scale (and, for Q4_K/Q5_K, its
//! offset) is quantized against a per-super-block f16 factor, and the element
//! quants are then rounded against the sub-block scale exactly as the decoder
//! rebuilds it.

use super::{min_max, quant, signed_absmax, to_f16};
use crate::blocks::{self, pack_scale_min_k4, QK_K};

/// Codes and scales of a Q4_K/Q5_K super-block.
struct MinScaled {
    /// f16 bits of the super-block scale `d` and offset scale `dmin`.
    d: u16,
    dmin: u16,
    /// 6-bit scale and min code of each 32-element sub-block.
    sc: [u8; 8],
    m: [u8; 8],
    /// Element codes, `0..levels`.
    q: [u8; QK_K],
}

/// Shared Q4_K/Q5_K quantizer: `x ≈ (d * sc) * q - dmin * m` per sub-block,
/// the offset `-dmin * m` never above 0 (so sub-blocks of only positive
/// values start at 0).
fn min_scaled(x: &[f32], levels: i32) -> MinScaled {
    // Per sub-block range, as (scale, negated minimum).
    let mut scale = [0.0f32; 8];
    let mut neg_min = [0.0f32; 8];
    for (j, sub) in x.chunks_exact(32).enumerate() {
        let (lo, hi) = min_max(sub);
        let lo = lo.min(0.0);
        scale[j] = (hi - lo) / (levels - 1) as f32;
        neg_min[j] = -lo;
    }

    // Super-block factors, then 6-bit codes against their f16 values.
    let (d_bits, d) = to_f16(scale.iter().fold(0.0f32, |a, &v| a.max(v)) / 63.0);
    let (dmin_bits, dmin) = to_f16(neg_min.iter().fold(0.0f32, |a, &v| a.max(v)) / 63.0);
    let mut out = MinScaled {
        d: d_bits,
        dmin: dmin_bits,
        sc: [0; 8],
        m: [0; 8],
        q: [0; QK_K],
    };
    for j in 0..8 {
        out.sc[j] = quant(scale[j], d, 0, 63) as u8;
        out.m[j] = quant(neg_min[j], dmin, 0, 63) as u8;
    }

    // Element codes against the scale and offset the decoder computes.
    for (j, (sub, q)) in x
        .chunks_exact(32)
        .zip(out.q.chunks_exact_mut(32))
        .enumerate()
    {
        let d1 = d * f32::from(out.sc[j]);
        let m1 = dmin * f32::from(out.m[j]);
        for (qi, &v) in q.iter_mut().zip(sub) {
            *qi = quant(v + m1, d1, 0, levels - 1) as u8;
        }
    }
    out
}

/// The low-nibble bytes shared by Q4_K and Q5_K: per 64 elements, 32 bytes
/// with sub-block `2k` in the low nibbles and `2k + 1` in the high.
fn push_k_nibbles(q: &[u8; QK_K], out: &mut Vec<u8>) {
    for pair in q.chunks_exact(64) {
        out.extend((0..32).map(|l| (pair[l] & 0x0F) | ((pair[l + 32] & 0x0F) << 4)));
    }
}

/// Q4_K: d, dmin, scales[12], qs[128].
pub(super) fn q4_k(x: &[f32], out: &mut Vec<u8>) {
    let b = min_scaled(x, 16);
    out.extend_from_slice(&b.d.to_le_bytes());
    out.extend_from_slice(&b.dmin.to_le_bytes());
    out.extend_from_slice(&pack_scale_min_k4(&b.sc, &b.m));
    push_k_nibbles(&b.q, out);
}

/// Q5_K: d, dmin, scales[12], qh[32], qs[128]; element `l` of sub-block `j`
/// keeps its fifth bit in bit `j` of `qh[l]`.
pub(super) fn q5_k(x: &[f32], out: &mut Vec<u8>) {
    let b = min_scaled(x, 32);
    out.extend_from_slice(&b.d.to_le_bytes());
    out.extend_from_slice(&b.dmin.to_le_bytes());
    out.extend_from_slice(&pack_scale_min_k4(&b.sc, &b.m));
    let mut qh = [0u8; 32];
    for (j, sub) in b.q.chunks_exact(32).enumerate() {
        for (h, &q) in qh.iter_mut().zip(sub) {
            *h |= (q >> 4) << j;
        }
    }
    out.extend_from_slice(&qh);
    push_k_nibbles(&b.q, out);
}

/// Q6_K: ql[128], qh[64], i8 scales[16], d; `x ≈ (d * sc) * (q - 32)` per
/// 16-element sub-block.
pub(super) fn q6_k(x: &[f32], out: &mut Vec<u8>) {
    // Per sub-block scale, signed so that its largest-magnitude element maps
    // exactly onto code -32 (as in the Q4_0 quantizer).
    let mut scale = [0.0f32; 16];
    for (s, sub) in scale.iter_mut().zip(x.chunks_exact(16)) {
        *s = signed_absmax(sub) / -32.0;
    }
    let (d_bits, d) = to_f16(scale.iter().fold(0.0f32, |a, v| a.max(v.abs())) / 127.0);
    let sc = scale.map(|s| quant(s, d, -127, 127) as i8);

    // Element codes 0..64, against the decoder's own sub-block scale.
    let mut q = [0u8; QK_K];
    for (j, (sub, qs)) in x.chunks_exact(16).zip(q.chunks_exact_mut(16)).enumerate() {
        let d1 = d * f32::from(sc[j]);
        for (qi, &v) in qs.iter_mut().zip(sub) {
            *qi = (quant(v, d1, -32, 31) + 32) as u8;
        }
    }

    let start = out.len();
    out.resize(start + 210, 0);
    let block = &mut out[start..];
    for (i, &qi) in q.iter().enumerate() {
        let (half, k, l) = (i / 128, (i % 128) / 32, i % 32);
        block[64 * half + l + 32 * (k % 2)] |= (qi & 0x0F) << (4 * (k / 2));
        block[blocks::Q6K_QH + 32 * half + l] |= (qi >> 4) << (2 * k);
    }
    for (dst, s) in block[blocks::Q6K_SCALES..blocks::Q6K_D].iter_mut().zip(sc) {
        *dst = s as u8;
    }
    block[blocks::Q6K_D..].copy_from_slice(&d_bits.to_le_bytes());
}
