//! `quantize_row` followed by `dequantize_row`: close for arbitrary inputs,
//! exact for inputs the format represents exactly.

mod common;

use anyhow::{ensure, Result};
use tessera_kernels::{quant, reference, DType};

/// Largest decoding error allowed, as a fraction of the largest magnitude in
/// the block (the scale unit of every quantizer here).
///
/// Q8_0 rounds to half of amax/127; Q4_0/Q5_0 may clip the element opposite
/// the largest one by a whole step (amax/8, amax/16); Q4_1/Q5_1 round to half
/// of range/15 or range/31, range <= 2 amax; Q6_K clips like Q5_0 per 16
/// elements (amax/32) and Q4_K/Q5_K round like Q4_1/Q5_1, all three plus the
/// rounding of their 6- or 8-bit sub-block scales. Each bound also covers the
/// f16 rounding of the scales (about 2^-11 amax).
fn tolerance(dtype: DType) -> f32 {
    match dtype {
        DType::F32 => 0.0,
        DType::F16 => 1.0 / 1024.0,
        DType::BF16 => 1.0 / 128.0,
        DType::Q8_0 => 0.0045,
        DType::Q4_0 => 0.126,
        DType::Q4_1 => 0.068,
        DType::Q5_0 => 0.0635,
        DType::Q5_1 => 0.034,
        DType::Q4K => 0.09,
        DType::Q5K => 0.05,
        DType::Q6K => 0.036,
    }
}

fn decode(dtype: DType, bytes: &[u8], len: usize) -> Vec<f32> {
    let mut out = vec![0.0; len];
    reference::dequantize_row(dtype, bytes, &mut out);
    out
}

/// Checks the round trip of `x` block by block against [`tolerance`].
fn check_close(dtype: DType, x: &[f32]) -> Result<()> {
    let bytes = quant::quantize_row(dtype, x);
    ensure!(
        Some(bytes.len()) == dtype.bytes_for(x.len()),
        "{dtype}: wrong encoded length"
    );
    let y = decode(dtype, &bytes, x.len());
    let block = dtype.block_size().max(32);
    for (b, (xs, ys)) in x.chunks(block).zip(y.chunks(block)).enumerate() {
        let amax = xs.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        for (j, (&a, &b_)) in xs.iter().zip(ys).enumerate() {
            let err = (a - b_).abs();
            ensure!(
                err <= tolerance(dtype) * amax,
                "{dtype} block {b} element {j}: {a} decoded as {b_} (amax {amax})"
            );
        }
    }
    Ok(())
}

#[test]
fn random_rows_decode_close() -> Result<()> {
    let mut rng = common::rng(1);
    for dtype in DType::ALL {
        // Centred data, data with a large offset, and data of mixed scale.
        check_close(dtype, &common::uniform(&mut rng, 1024, -1.0, 1.0))?;
        check_close(dtype, &common::uniform(&mut rng, 1024, 0.5, 2.0))?;
        check_close(dtype, &common::uniform(&mut rng, 1024, -3.0, -0.25))?;
        let mixed: Vec<f32> = common::uniform(&mut rng, 1024, -1.0, 1.0)
            .iter()
            .enumerate()
            .map(|(i, v)| v * if (i / 32) % 3 == 0 { 0.01 } else { 1.0 })
            .collect();
        check_close(dtype, &mixed)?;
    }
    Ok(())
}

#[test]
fn zero_rows_stay_zero() -> Result<()> {
    for dtype in DType::ALL {
        let y = decode(dtype, &quant::quantize_row(dtype, &[0.0; 512]), 512);
        ensure!(y.iter().all(|&v| v == 0.0), "{dtype}: {y:?}");
    }
    Ok(())
}

/// Checks that `x` survives the round trip bit for bit.
fn check_exact(dtype: DType, x: &[f32]) -> Result<()> {
    let y = decode(dtype, &quant::quantize_row(dtype, x), x.len());
    for (j, (a, b)) in x.iter().zip(&y).enumerate() {
        ensure!(
            a.to_bits() == b.to_bits(),
            "{dtype} element {j}: {a} decoded as {b}"
        );
    }
    Ok(())
}

/// 256 codes, a permutation-like walk through `0..levels`, in which every
/// stretch of 16 holds code 0 and every stretch of 32 also `levels - 1`.
fn codes(levels: i32) -> Vec<i32> {
    (0..256)
        .map(|i| match i % 32 {
            0 | 16 => 0,
            31 => levels - 1,
            k => (k * 7 + i / 32) % levels,
        })
        .collect()
}

#[test]
fn representable_rows_are_exact() -> Result<()> {
    let mut rng = common::rng(2);
    let floats = common::uniform(&mut rng, 64, -100.0, 100.0);
    check_exact(DType::F32, &floats)?;
    let halves: Vec<f32> = floats
        .iter()
        .map(|&v| half::f16::from_f32(v).to_f32())
        .collect();
    check_exact(DType::F16, &halves)?;
    let bhalves: Vec<f32> = floats
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_f32())
        .collect();
    check_exact(DType::BF16, &bhalves)?;

    // Symmetric formats: (q - offset) * d, code 0 (the largest magnitude)
    // present in every block.
    let sym = |levels: i32, d: f32| -> Vec<f32> {
        codes(levels)
            .iter()
            .map(|&q| (q - levels / 2) as f32 * d)
            .collect()
    };
    let q8: Vec<f32> = codes(255)
        .iter()
        .map(|&q| (q - 127) as f32 * 0.125)
        .collect();
    check_exact(DType::Q8_0, &q8)?;
    check_exact(DType::Q4_0, &sym(16, 0.5))?;
    check_exact(DType::Q5_0, &sym(32, 0.25))?;

    // Offset formats: q * d + m with codes 0 and levels - 1 present.
    let asym = |levels: i32| -> Vec<f32> {
        codes(levels)
            .iter()
            .map(|&q| q as f32 * 0.25 - 1.0)
            .collect()
    };
    check_exact(DType::Q4_1, &asym(16))?;
    check_exact(DType::Q5_1, &asym(32))?;

    check_exact(DType::Q4K, &k_row(16))?;
    check_exact(DType::Q5K, &k_row(32))?;
    check_exact(DType::Q6K, &q6_row())
}

/// A Q4_K/Q5_K super-block `d * sc * q - dmin * m` whose largest sub-block
/// scale and min are 63 (so the quantizer recovers d and dmin exactly).
fn k_row(levels: i32) -> Vec<f32> {
    let (d, dmin) = (0.0625f32, 0.03125f32);
    let sc = [63.0, 1.0, 17.0, 40.0, 5.0, 63.0, 2.0, 33.0];
    let m = [63.0, 0.0, 10.0, 63.0, 1.0, 20.0, 7.0, 2.0];
    codes(levels)
        .iter()
        .enumerate()
        .map(|(i, &q)| d * sc[i / 32] * q as f32 - dmin * m[i / 32])
        .collect()
}

/// A Q6_K super-block `d * sc * (q - 32)` with a sub-block scale of 127 (so
/// the quantizer recovers d exactly) and code 0 in every sub-block.
fn q6_row() -> Vec<f32> {
    let d = 2f32.powi(-6);
    let sc: [f32; 16] = std::array::from_fn(|j| [127.0, -5.0, 3.0, 64.0, -127.0, 1.0][j % 6]);
    codes(64)
        .iter()
        .enumerate()
        .map(|(i, &q)| d * sc[i / 16] * (q - 32) as f32)
        .collect()
}
