//! Matrix-vector and matrix-matrix products per weight format:
//! [`tessera_kernels::cpu::matmul`] on seeded random weights.
//!
//! Each shape's f32 weights are drawn once and encoded in every format, so
//! formats are compared on the same values. `n = 1` takes the matvec (decode)
//! path; larger `n` the tiled prefill path. Throughput is reported two ways:
//! weight bytes per second (what bounds decode) and floating-point operations
//! per second, `2 · rows · cols · n` per call (what bounds prefill).

use std::hint::black_box;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::Serialize;
use tessera_kernels::{cpu, quant, DType, WeightView};

use crate::timing::time_calls;
use crate::{Baseline, BenchError, Shape};

/// Which products to time.
#[derive(Debug, Clone)]
pub struct MatmulConfig {
    /// Weight formats.
    pub formats: Vec<DType>,
    /// Weight shapes.
    pub shapes: Vec<Shape>,
    /// Activation rows per product; 1 is matvec.
    pub ns: Vec<usize>,
    /// Timing budget per case.
    pub budget: Duration,
    /// Seed of the random weights and activations.
    pub seed: u64,
}

/// One timed product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MatmulCase {
    /// Weight format, e.g. `Q4_K`.
    pub format: String,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    /// Activation rows.
    pub n: usize,
    /// Encoded weight bytes.
    pub weight_bytes: usize,
    /// Median seconds per call.
    pub per_call_s: f64,
    /// Fastest sample's seconds per call.
    pub best_per_call_s: f64,
    /// Weight bytes per second, GB/s (10⁹ bytes).
    pub weight_gbps: f64,
    /// 10⁹ floating-point operations per second.
    pub gflops: f64,
    /// `weight_gbps` as a percentage of the measured read bandwidth.
    pub bandwidth_pct: f64,
    /// Whether the weights fit the cache threshold, so may be read from cache
    /// rather than memory and can beat the memory bandwidth.
    pub cache_resident: bool,
    /// Timed samples behind the median.
    pub samples: usize,
}

/// A format and shape that cannot be combined.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SkippedCase {
    /// Weight format.
    pub format: String,
    /// The shape as `ROWSxCOLS`.
    pub shape: String,
    /// Why, e.g. the block size does not divide the columns.
    pub reason: String,
}

/// Everything the products produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MatmulResults {
    /// Timed cases, by shape, then format, then `n`.
    pub cases: Vec<MatmulCase>,
    /// Combinations that could not run.
    pub skipped: Vec<SkippedCase>,
}

/// Times every format × shape × n on the current rayon pool; `progress`
/// hears one line per case.
pub fn run(
    config: &MatmulConfig,
    baseline: &Baseline,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<MatmulResults, BenchError> {
    let mut results = MatmulResults::default();
    let n_max = config.ns.iter().copied().max().unwrap_or(1);
    for (i, &shape) in config.shapes.iter().enumerate() {
        let stream = 2 * i as u64;
        let source = random_values(config.seed, stream, shape.rows * shape.cols);
        let x = random_values(config.seed, stream + 1, n_max * shape.cols);

        for &format in &config.formats {
            if format.bytes_for(shape.cols).is_none() {
                results.skipped.push(skipped(format, shape));
                continue;
            }
            let bytes = encode(format, &source, shape.cols);
            let w = WeightView::new(format, shape.rows, shape.cols, &bytes)?;
            for &n in &config.ns {
                let case = time_case(&w, &x[..n * shape.cols], n, config.budget, baseline);
                progress(&format!("matmul {format} {shape} n={n}"));
                results.cases.push(case);
            }
        }
    }
    Ok(results)
}

/// Times `y = x · wᵀ` for `x` of `[n, w.cols]`.
fn time_case(
    w: &WeightView<'_>,
    x: &[f32],
    n: usize,
    budget: Duration,
    baseline: &Baseline,
) -> MatmulCase {
    let mut y = vec![0.0f32; n * w.rows];
    let timing = time_calls(budget, || {
        cpu::matmul(w, black_box(x), n, &mut y);
        black_box(&mut y);
    });

    let s = timing.per_call_s.max(1e-12);
    let weight_gbps = w.data.len() as f64 / s / 1e9;
    MatmulCase {
        format: w.dtype.to_string(),
        rows: w.rows,
        cols: w.cols,
        n,
        weight_bytes: w.data.len(),
        per_call_s: timing.per_call_s,
        best_per_call_s: timing.best_per_call_s,
        weight_gbps,
        gflops: 2.0 * (w.rows * w.cols * n) as f64 / s / 1e9,
        bandwidth_pct: baseline.percent(weight_gbps),
        cache_resident: baseline.cache_resident(w.data.len()),
        samples: timing.samples,
    }
}

/// Encodes `[rows, cols]` f32 values as `format`, row by row, in parallel.
fn encode(format: DType, source: &[f32], cols: usize) -> Vec<u8> {
    let rows: Vec<Vec<u8>> = source
        .par_chunks(cols)
        .map(|row| quant::quantize_row(format, row))
        .collect();
    rows.concat()
}

/// `len` values uniform in [-1, 1), the same for the same seed and stream.
pub(crate) fn random_values(seed: u64, stream: u64, len: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// The record of a format whose blocks do not divide a shape's columns.
fn skipped(format: DType, shape: Shape) -> SkippedCase {
    SkippedCase {
        format: format.to_string(),
        shape: shape.to_string(),
        reason: format!(
            "{} columns are not a multiple of the {}-element block",
            shape.cols,
            format.block_size()
        ),
    }
}
