//! The machine's memory bandwidth, measured the way STREAM does: a buffer far
//! larger than any cache is read (summed) and copied, several times, and the
//! best run counts.
//!
//! Read bandwidth is the yardstick for the kernels: a matrix-vector product
//! reads every weight byte once and does little else, so its ceiling is the
//! read figure. Copy bandwidth counts both the bytes read and the bytes
//! written, as STREAM does (write-allocate traffic is not counted).
//!
//! Work is split evenly over the current rayon pool's threads, so a pool of
//! one thread measures what one core can pull.

use std::hint::black_box;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

/// How to measure bandwidth.
#[derive(Debug, Clone, Copy)]
pub struct BandwidthConfig {
    /// Bytes in the read buffer, and in each of the copy's two buffers.
    pub bytes: usize,
    /// Runs of each measurement; the fastest counts.
    pub runs: usize,
}

/// Bandwidth measured with one pool size, in GB/s (10⁹ bytes per second).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Bandwidth {
    /// Threads that shared the work.
    pub threads: usize,
    /// Bytes per buffer.
    pub buffer_bytes: usize,
    /// Read (sum) bandwidth, GB/s.
    pub read_gbps: f64,
    /// Copy bandwidth, bytes read plus bytes written, GB/s.
    pub copy_gbps: f64,
}

/// Measures read and copy bandwidth on the current rayon pool.
pub fn measure(config: BandwidthConfig) -> Bandwidth {
    let words = (config.bytes / 8).max(1);
    let threads = rayon::current_num_threads();
    let chunk = words.div_ceil(threads);

    // Writing every word commits the pages: a never-written buffer maps
    // every page to the kernel's shared zero page, and reading it would only
    // ever touch one cached page.
    let src: Vec<u64> = (0..words as u64).collect();
    let mut dst = vec![u64::MAX; words];
    let bytes = (words * 8) as f64;

    let read_s = best_of(config.runs, || {
        black_box(
            src.par_chunks(chunk)
                .map(sum_words)
                .reduce(|| 0, u64::wrapping_add),
        );
    });
    let copy_s = best_of(config.runs, || {
        dst.par_chunks_mut(chunk)
            .zip(src.par_chunks(chunk))
            .for_each(|(d, s)| d.copy_from_slice(s));
        black_box(&mut dst);
    });

    Bandwidth {
        threads,
        buffer_bytes: words * 8,
        read_gbps: bytes / read_s / 1e9,
        copy_gbps: 2.0 * bytes / copy_s / 1e9,
    }
}

/// Streams one thread reads side by side: several streams keep more of a
/// core's prefetchers busy than one, so the figure is what a core can pull
/// at best rather than what one sequential scan happens to get.
const READ_STREAMS: usize = 4;

/// Wrapping sum of `words`, read as [`READ_STREAMS`] interleaved streams into
/// eight lanes, so the loop vectorises and no one addition chain bounds it.
fn sum_words(words: &[u64]) -> u64 {
    let part = words.len() / READ_STREAMS / 8 * 8;
    let (body, tail) = words.split_at(part * READ_STREAMS);
    let streams: Vec<&[u64]> = body.chunks_exact(part.max(1)).collect();

    let mut lanes = [0u64; 8];
    for i in (0..part).step_by(8) {
        for stream in &streams {
            for (lane, w) in lanes.iter_mut().zip(&stream[i..i + 8]) {
                *lane = lane.wrapping_add(*w);
            }
        }
    }
    let tail = tail.iter().fold(0u64, |a, w| a.wrapping_add(*w));
    lanes.iter().fold(tail, |a, l| a.wrapping_add(*l))
}

/// Fastest of `runs` (at least one) timed calls of `f`, in seconds.
fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
        .max(1e-9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_covers_lanes_and_tail() {
        let words: Vec<u64> = (1..=19).collect();
        assert_eq!(sum_words(&words), 190);
        let words: Vec<u64> = (1..=1001).collect();
        assert_eq!(sum_words(&words), 501_501);
        assert_eq!(sum_words(&[]), 0);
    }
}
