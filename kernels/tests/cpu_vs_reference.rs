//! The fast CPU kernels against the reference ones: dequantization bit for
//! bit, matrix products within f32 rounding of the f64 reference.

mod common;

use anyhow::{ensure, Result};
use tessera_kernels::{cpu, reference, DType, WeightView};

/// Row lengths to try: one block, several, and for plain floats lengths that
/// leave a partial 32-element unit.
fn col_sizes(dtype: DType) -> Vec<usize> {
    match dtype.block_size() {
        1 => vec![1, 7, 32, 33, 100],
        b => vec![b, 3 * b, 5 * b],
    }
}

#[test]
fn dequantize_matches_reference_bit_for_bit() -> Result<()> {
    let mut rng = common::rng(10);
    for dtype in DType::ALL {
        for cols in col_sizes(dtype) {
            // Quantized data, and arbitrary bytes (every bit pattern, odd
            // scales included); unaligned too.
            let bytes = dtype.bytes_for(cols).expect("whole blocks");
            let random = common::bytes(&mut rng, bytes + 1);
            let quantized = common::quantized_matrix(&mut rng, dtype, 1, cols);
            for src in [&quantized[..], &random[..bytes], &random[1..]] {
                let (mut fast, mut plain) = (vec![0.0; cols], vec![0.0; cols]);
                cpu::dequantize_row(dtype, src, &mut fast);
                reference::dequantize_row(dtype, src, &mut plain);
                for (j, (&f, &p)) in fast.iter().zip(&plain).enumerate() {
                    ensure!(
                        common::same_bits(f, p),
                        "{dtype} cols {cols} element {j}: {f} vs {p}"
                    );
                }
            }
        }
    }
    Ok(())
}

/// `Σ |w| |x|` for every output, in f64: the scale of the rounding error a
/// product may carry.
fn magnitudes(w: &WeightView<'_>, x: &[f32], n: usize) -> Vec<f64> {
    let mut row = vec![0.0; w.cols];
    let mut out = vec![0.0; n * w.rows];
    for r in 0..w.rows {
        reference::dequantize_row(w.dtype, w.row(r), &mut row);
        for i in 0..n {
            let xi = &x[i * w.cols..(i + 1) * w.cols];
            out[i * w.rows + r] = row
                .iter()
                .zip(xi)
                .map(|(&a, &b)| f64::from(a.abs()) * f64::from(b.abs()))
                .sum();
        }
    }
    out
}

/// Runs `cpu::matmul` and the reference on one random case and compares them.
fn check_matmul(seed: u64, dtype: DType, rows: usize, cols: usize, n: usize) -> Result<()> {
    let mut rng = common::rng(seed);
    let data = common::quantized_matrix(&mut rng, dtype, rows, cols);
    let w = WeightView::new(dtype, rows, cols, &data)?;
    let x = common::uniform(&mut rng, n * cols, -2.0, 2.0);
    let (mut fast, mut plain) = (vec![f32::NAN; n * rows], vec![f32::NAN; n * rows]);
    cpu::matmul(&w, &x, n, &mut fast);
    reference::matmul(&w, &x, n, &mut plain);

    // f32 accumulation in at least 8 lanes: each lane sums at most cols / 8
    // products, then the lanes are added up (a few more roundings).
    let eps = f64::from(f32::EPSILON);
    let bound = (cols as f64 / 8.0 + 8.0) * eps;
    for (k, ((&f, &p), &mag)) in fast
        .iter()
        .zip(&plain)
        .zip(&magnitudes(&w, &x, n))
        .enumerate()
    {
        let err = (f64::from(f) - f64::from(p)).abs();
        ensure!(
            err <= bound * mag + 1e-30,
            "{dtype} [{rows} x {cols}] n {n}, output {k}: {f} vs {p} (scale {mag})"
        );
    }
    Ok(())
}

#[test]
fn matmul_matches_reference_on_odd_shapes() -> Result<()> {
    let mut seed = 100;
    for dtype in DType::ALL {
        for cols in col_sizes(dtype) {
            for rows in [1, 7, 33] {
                for n in [1, 3, 17] {
                    seed += 1;
                    check_matmul(seed, dtype, rows, cols, n)?;
                }
            }
        }
    }
    Ok(())
}

#[test]
fn large_matrices_split_across_threads() -> Result<()> {
    // Big enough to be cut into many tasks, with remainders; run in a pool of
    // three threads and in the global pool.
    let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build()?;
    for (seed, dtype) in [
        (1, DType::Q4_1),
        (2, DType::Q8_0),
        (3, DType::Q6K),
        (4, DType::F16),
    ] {
        pool.install(|| check_matmul(seed, dtype, 1001, 512, 1))?;
        pool.install(|| check_matmul(seed, dtype, 517, 512, 5))?;
        check_matmul(seed, dtype, 999, 768, 1)?;
    }
    Ok(())
}

#[test]
fn matvec_is_matmul_with_one_row() -> Result<()> {
    let mut rng = common::rng(20);
    for dtype in DType::ALL {
        let cols = 2 * dtype.block_size().max(32);
        let data = common::quantized_matrix(&mut rng, dtype, 9, cols);
        let w = WeightView::new(dtype, 9, cols, &data)?;
        let x = common::uniform(&mut rng, cols, -1.0, 1.0);
        let (mut a, mut b) = (vec![0.0; 9], vec![0.0; 9]);
        cpu::matvec(&w, &x, &mut a);
        cpu::matmul(&w, &x, 1, &mut b);
        ensure!(a == b, "{dtype}: {a:?} vs {b:?}");
    }
    Ok(())
}

#[test]
fn empty_shapes_are_fine() -> Result<()> {
    let w = WeightView::new(DType::Q8_0, 0, 64, &[])?;
    cpu::matmul(&w, &[0.0; 3 * 64], 3, &mut []);
    let w = WeightView::new(DType::F32, 4, 0, &[])?;
    let mut y = [f32::NAN; 8];
    cpu::matmul(&w, &[], 2, &mut y);
    ensure!(y == [0.0; 8], "an empty dot product is 0: {y:?}");
    let mut y_ref = [f32::NAN; 8];
    reference::matmul(&w, &[], 2, &mut y_ref);
    ensure!(y_ref == [0.0; 8], "reference: {y_ref:?}");
    Ok(())
}

#[test]
#[should_panic(expected = "x must be")]
fn mismatched_activations_are_a_caller_bug() {
    let data = vec![0u8; 2 * 34];
    let w = WeightView::new(DType::Q8_0, 2, 32, &data).expect("valid shape");
    cpu::matmul(&w, &[0.0; 31], 1, &mut [0.0; 2]);
}

#[test]
#[should_panic(expected = "needs 20 bytes")]
fn short_source_row_is_a_caller_bug() {
    cpu::dequantize_row(DType::Q4_1, &[0u8; 19], &mut [0.0; 32]);
}
