//! Quantizers for the 32-element block formats (Q8_0, Q4_0, Q4_1, Q5_0,
//! Q5_1). Each takes one block of 32 f32 and appends its encoding.

use super::{min_max, quant, signed_absmax, to_f16};
use crate::blocks::QK;

/// Q8_0: symmetric, `d = amax / 127`.
pub(super) fn q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    let (bits, d) = to_f16(amax / 127.0);
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend(x.iter().map(|&v| quant(v, d, -127, 127) as i8 as u8));
}

/// The 4- or 5-bit quants of a symmetric block with `levels` = 16 or 32:
/// the element of largest magnitude maps exactly onto code 0, so `d` takes
/// the opposite sign to it. Returns the f16 bits of `d` and the codes.
fn symmetric(x: &[f32], levels: i32) -> (u16, [u8; QK]) {
    let half = levels / 2;
    let (bits, d) = to_f16(signed_absmax(x) / -(half as f32));
    let mut q = [0u8; QK];
    for (qj, &v) in q.iter_mut().zip(x) {
        *qj = (quant(v, d, -half, half - 1) + half) as u8;
    }
    (bits, q)
}

/// The codes of an asymmetric block, `x ≈ q * d + m`, with `m` = the block
/// minimum. Returns the f16 bits of `d` and `m` and the codes.
fn asymmetric(x: &[f32], levels: i32) -> (u16, u16, [u8; QK]) {
    let (lo, hi) = min_max(x);
    let (m_bits, m) = to_f16(lo);
    let (d_bits, d) = to_f16((hi - lo) / (levels - 1) as f32);
    let mut q = [0u8; QK];
    for (qj, &v) in q.iter_mut().zip(x) {
        *qj = quant(v - m, d, 0, levels - 1) as u8;
    }
    (d_bits, m_bits, q)
}

/// Element `j`'s low nibble in byte `j`, element `j + 16`'s in its high nibble.
fn push_nibbles(q: &[u8; QK], out: &mut Vec<u8>) {
    out.extend((0..QK / 2).map(|j| (q[j] & 0x0F) | ((q[j + 16] & 0x0F) << 4)));
}

/// Bit `j` of the result is the fifth bit of element `j`.
fn high_bits(q: &[u8; QK]) -> u32 {
    q.iter()
        .enumerate()
        .fold(0, |acc, (j, &v)| acc | (u32::from(v >> 4) << j))
}

/// Q4_0: `x ≈ (q - 8) * d`.
pub(super) fn q4_0(x: &[f32], out: &mut Vec<u8>) {
    let (d, q) = symmetric(x, 16);
    out.extend_from_slice(&d.to_le_bytes());
    push_nibbles(&q, out);
}

/// Q4_1: `x ≈ q * d + m`.
pub(super) fn q4_1(x: &[f32], out: &mut Vec<u8>) {
    let (d, m, q) = asymmetric(x, 16);
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&m.to_le_bytes());
    push_nibbles(&q, out);
}

/// Q5_0: `x ≈ (q - 16) * d`.
pub(super) fn q5_0(x: &[f32], out: &mut Vec<u8>) {
    let (d, q) = symmetric(x, 32);
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&high_bits(&q).to_le_bytes());
    push_nibbles(&q, out);
}

/// Q5_1: `x ≈ q * d + m`.
pub(super) fn q5_1(x: &[f32], out: &mut Vec<u8>) {
    let (d, m, q) = asymmetric(x, 32);
    out.extend_from_slice(&d.to_le_bytes());
    out.extend_from_slice(&m.to_le_bytes());
    out.extend_from_slice(&high_bits(&q).to_le_bytes());
    push_nibbles(&q, out);
}
