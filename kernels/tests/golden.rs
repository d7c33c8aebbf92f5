//! Hand-built blocks with known contents, decoded by both dequantizers.
//!
//! These pin down the byte layouts themselves (which nibble is which element,
//! which `qh` bit belongs to which element, how the K-quant scales are
//! packed) independently of the quantizers, which a round trip cannot do.

mod common;

use anyhow::{ensure, Result};
use common::f16_le;
use tessera_kernels::{cpu, reference, DType};

/// Decodes `block` with both dequantizers, checks they agree with `expected`
/// exactly, and checks that an unaligned copy of the bytes decodes the same.
fn check(dtype: DType, block: &[u8], expected: &[f32]) -> Result<()> {
    let mut shifted = vec![0u8; block.len() + 1];
    shifted[1..].copy_from_slice(block);
    for src in [block, &shifted[1..]] {
        let mut fast = vec![f32::NAN; expected.len()];
        let mut plain = vec![f32::NAN; expected.len()];
        cpu::dequantize_row(dtype, src, &mut fast);
        reference::dequantize_row(dtype, src, &mut plain);
        for (j, ((&e, &f), &p)) in expected.iter().zip(&fast).zip(&plain).enumerate() {
            ensure!(
                p == e,
                "{dtype} reference element {j}: got {p}, expected {e}"
            );
            ensure!(f == e, "{dtype} cpu element {j}: got {f}, expected {e}");
        }
    }
    Ok(())
}

/// Element `j` of the low nibbles is `j`, of the high nibbles `15 - j`.
fn ramp_nibbles() -> [u8; 16] {
    std::array::from_fn(|j| j as u8 | ((15 - j as u8) << 4))
}

#[test]
fn plain_floats() -> Result<()> {
    let values = [1.0f32, -2.5, 0.0, 65504.0, 6.0e-8, -0.099975586];
    let f32_bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    check(DType::F32, &f32_bytes, &values)?;

    // f16: 1, -2.5, 0, the largest normal, the smallest subnormal, and a
    // value needing all ten mantissa bits.
    let f16_bytes = [
        0x00, 0x3C, 0x00, 0xC1, 0x00, 0x00, 0xFF, 0x7B, 0x01, 0x00, 0x66, 0xAE,
    ];
    let f16_values = [1.0, -2.5, 0.0, 65504.0, 2f32.powi(-24), -0.099975586];
    check(DType::F16, &f16_bytes, &f16_values)?;

    // bf16 is the top half of the f32: 1, -2.5, 0, 3.140625.
    let bf16_bytes = [0x80, 0x3F, 0x20, 0xC0, 0x00, 0x00, 0x49, 0x40];
    check(DType::BF16, &bf16_bytes, &[1.0, -2.5, 0.0, 3.140625])
}

#[test]
fn q8_0() -> Result<()> {
    // d = 0.5, qs[j] = j - 16 (as i8), with the extremes -128 and 127.
    let mut block = f16_le(0.5).to_vec();
    let mut qs: Vec<i8> = (0..32).map(|j| j - 16).collect();
    qs[0] = -128;
    qs[31] = 127;
    block.extend(qs.iter().map(|&q| q as u8));
    let expected: Vec<f32> = qs.iter().map(|&q| f32::from(q) * 0.5).collect();
    check(DType::Q8_0, &block, &expected)
}

#[test]
fn q4_0() -> Result<()> {
    // d = 1: element j (j < 16) is j - 8, element j + 16 is (15 - j) - 8.
    let mut block = f16_le(1.0).to_vec();
    block.extend(ramp_nibbles());
    let expected: Vec<f32> = (0..16)
        .map(|j| j as f32 - 8.0)
        .chain((0..16).map(|j| 7.0 - j as f32))
        .collect();
    check(DType::Q4_0, &block, &expected)
}

#[test]
fn q4_1() -> Result<()> {
    // d = 2, m = -1.5: element j is 2j - 1.5, element j + 16 is 2(15 - j) - 1.5.
    let mut block = [f16_le(2.0), f16_le(-1.5)].concat();
    block.extend(ramp_nibbles());
    let low = (0..16).map(|j| 2.0 * j as f32 - 1.5);
    let high = (0..16).map(|j| 2.0 * (15 - j) as f32 - 1.5);
    check(DType::Q4_1, &block, &low.chain(high).collect::<Vec<_>>())
}

#[test]
fn q5_0() -> Result<()> {
    // d = 1, all quants 0 (value -16) except: qs[3] = 0x5A puts 10 in element
    // 3 and 5 in element 19; qh bits 1, 16, 19 and 31 add 16 to those
    // elements.
    let mut block = f16_le(1.0).to_vec();
    block.extend(((1u32 << 1) | (1 << 16) | (1 << 19) | (1 << 31)).to_le_bytes());
    let mut qs = [0u8; 16];
    qs[3] = 0x5A;
    block.extend(qs);
    let mut expected = [-16.0f32; 32];
    expected[1] = 0.0;
    expected[3] = -6.0;
    expected[16] = 0.0;
    expected[19] = 5.0;
    expected[31] = 0.0;
    check(DType::Q5_0, &block, &expected)
}

#[test]
fn q5_1() -> Result<()> {
    // d = 0.5, m = 1, all quants 0 except qs[0] = 0xF1 (1 in element 0, 15 in
    // element 16) and qh bits 0, 5 and 16.
    let mut block = [f16_le(0.5), f16_le(1.0)].concat();
    block.extend(((1u32 << 0) | (1 << 5) | (1 << 16)).to_le_bytes());
    let mut qs = [0u8; 16];
    qs[0] = 0xF1;
    block.extend(qs);
    let mut expected = [1.0f32; 32];
    expected[0] = 17.0 * 0.5 + 1.0;
    expected[5] = 16.0 * 0.5 + 1.0;
    expected[16] = 31.0 * 0.5 + 1.0;
    check(DType::Q5_1, &block, &expected)
}

/// Packed `scales` for sub-block scales `[1, 2, 3, 4, 5, 6, 7, 63]` and mins
/// `[0, 1, 2, 3, 4, 5, 6, 40]`. Bytes 0..4: scales 0..4 plus the top two bits
/// of scales 4..8 in bits 6..8 (only 63 has any: 3 << 6). Bytes 4..8: mins
/// 0..4 plus the top bits of mins 4..8 (40 has 2 << 6). Bytes 8..12: low
/// nibbles of scale (low) and min (high) for sub-blocks 4..8.
const K_SCALES: [u8; 12] = [1, 2, 3, 0xC4, 0, 1, 2, 0x83, 0x45, 0x56, 0x67, 0x8F];
const K_SC: [f32; 8] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 63.0];
const K_MIN: [f32; 8] = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 40.0];

/// The Q4_K/Q5_K `qs`: zero except three bytes, giving (sub-block, element
/// within it, quant) = (0, 0, 1), (1, 0, 2), (2, 5, 3), (3, 5, 15),
/// (6, 31, 15), (7, 31, 7).
fn k_qs() -> [u8; 128] {
    let mut qs = [0u8; 128];
    qs[0] = 0x21;
    qs[32 + 5] = 0xF3;
    qs[96 + 31] = 0x7F;
    qs
}

/// Expected K-quant output with d = 1, dmin = 0.5: every element is
/// `sc * q - 0.5 * min` for its sub-block.
fn k_expected(quants: &[(usize, usize, f32)]) -> Vec<f32> {
    let mut y: Vec<f32> = (0..256).map(|i| -0.5 * K_MIN[i / 32]).collect();
    for &(sub, l, q) in quants {
        y[32 * sub + l] = K_SC[sub] * q - 0.5 * K_MIN[sub];
    }
    y
}

#[test]
fn q4_k() -> Result<()> {
    let mut block = [f16_le(1.0), f16_le(0.5)].concat();
    block.extend(K_SCALES);
    block.extend(k_qs());
    let quants = [
        (0, 0, 1.0),
        (1, 0, 2.0),
        (2, 5, 3.0),
        (3, 5, 15.0),
        (6, 31, 15.0),
        (7, 31, 7.0),
    ];
    let expected = k_expected(&quants);
    // Spot values worked by hand, so the helper above is checked too.
    ensure!(expected[0] == 1.0 && expected[32] == 3.5 && expected[255] == 421.0);
    check(DType::Q4K, &block, &expected)
}

#[test]
fn q5_k() -> Result<()> {
    // As Q4_K, plus fifth bits: qh[l] bit j belongs to element l of sub-block j.
    let mut qh = [0u8; 32];
    qh[0] = 0b0000_0001; // sub-block 0, element 0
    qh[5] = 0b0000_1100; // sub-blocks 2 and 3, element 5
    qh[10] = 0b0100_0000; // sub-block 6, element 10
    qh[31] = 0b1000_0000; // sub-block 7, element 31
    let mut block = [f16_le(1.0), f16_le(0.5)].concat();
    block.extend(K_SCALES);
    block.extend(qh);
    block.extend(k_qs());
    let quants = [
        (0, 0, 17.0),
        (1, 0, 2.0),
        (2, 5, 19.0),
        (3, 5, 31.0),
        (6, 10, 16.0),
        (6, 31, 15.0),
        (7, 31, 23.0),
    ];
    let expected = k_expected(&quants);
    ensure!(expected[0] == 17.0 && expected[202] == 109.0 && expected[255] == 1429.0);
    check(DType::Q5K, &block, &expected)
}

#[test]
fn q6_k() -> Result<()> {
    // d = 0.25, scales alternate 1, -1, 2, -2, ..., 8, -8 (one per 16
    // elements). All quants 0 (value -32) except:
    // - ql[0] = 0x5F, qh[0] = 0b0010_0011: element 0 gets 15 | 3 << 4 = 63,
    //   element 64 (high nibble, qh bits 4..6) gets 5 | 2 << 4 = 37;
    // - ql[17] = 0x01: element 17 gets 1;
    // - second half: ql[64 + 32 + 20] = 0x0A, qh[32 + 20] = 0b0000_1000:
    //   element 128 + 32 + 20 = 180 gets 10 | 2 << 4 = 42.
    let scales: [i8; 16] =
        std::array::from_fn(|i| (i as i8 / 2 + 1) * if i % 2 == 0 { 1 } else { -1 });
    let mut ql = [0u8; 128];
    let mut qh = [0u8; 64];
    ql[0] = 0x5F;
    qh[0] = 0b0010_0011;
    ql[17] = 0x01;
    ql[116] = 0x0A;
    qh[52] = 0b0000_1000;
    let mut block = ql.to_vec();
    block.extend(qh);
    block.extend(scales.iter().map(|&s| s as u8));
    block.extend(f16_le(0.25));

    let mut q = [0i32; 256];
    q[0] = 63;
    q[64] = 37;
    q[17] = 1;
    q[180] = 42;
    let expected: Vec<f32> = (0..256)
        .map(|i| 0.25 * f32::from(scales[i / 16]) * (q[i] - 32) as f32)
        .collect();
    ensure!(expected[0] == 7.75 && expected[64] == 3.75 && expected[17] == 7.75);
    ensure!(expected[180] == -15.0 && expected[244] == 64.0 && expected[32] == -16.0);
    check(DType::Q6K, &block, &expected)
}

#[test]
fn several_blocks_decode_in_order() -> Result<()> {
    // Two Q8_0 blocks with different scales: the second block's values must
    // land in elements 32..64.
    let mut row = f16_le(1.0).to_vec();
    row.extend([3u8; 32]);
    row.extend(f16_le(-2.0));
    row.extend([5u8; 32]);
    let expected: Vec<f32> = [3.0f32; 32].into_iter().chain([-10.0; 32]).collect();
    check(DType::Q8_0, &row, &expected)
}
