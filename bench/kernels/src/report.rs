//! A run's results ([`Report`]): serialised as JSON, and rendered as aligned
//! text tables for a terminal.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{AttentionCase, Bandwidth, Config, MatmulCase, MatmulResults};

/// How the figures are to be read; printed under the tables and kept in JSON.
const NOTES: [&str; 4] = [
    "GB/s is 10^9 bytes per second; time is the median per call.",
    "matmul GB/s counts weight bytes only; GFLOP/s counts 2*rows*cols*n.",
    "'cache' marks working sets within the cache threshold: read from cache, \
     they can exceed memory bandwidth.",
    "attention mirrors Layer::attention in shard/src/model/layer.rs (one decode \
     token, f32 K/V read from a contiguous cache, cycled over layers); GB/s \
     counts each layer's K/V bytes once.",
];

/// Everything one run measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// This tool's name.
    pub tool: &'static str,
    /// This tool's version.
    pub version: &'static str,
    /// Whether the tool was built without optimisation, which makes the
    /// bandwidth and attention figures meaningless.
    pub debug_build: bool,
    /// Threads the kernels ran on.
    pub threads: usize,
    /// Cache-resident threshold, bytes.
    pub cache_threshold_bytes: usize,
    /// Read bandwidth every percentage is taken of, GB/s.
    pub baseline_read_gbps: f64,
    /// Bandwidth with one thread and, if more, with `threads`.
    pub bandwidth: Vec<Bandwidth>,
    /// The matrix products.
    pub matmul: MatmulResults,
    /// The attention cases.
    pub attention: Vec<AttentionCase>,
    /// How to read the figures.
    pub notes: Vec<&'static str>,
}

impl Report {
    /// Assembles a report from the measurements of `config`.
    pub fn new(
        config: &Config,
        bandwidth: Vec<Bandwidth>,
        matmul: MatmulResults,
        attention: Vec<AttentionCase>,
    ) -> Self {
        Report {
            tool: env!("CARGO_PKG_NAME"),
            version: env!("CARGO_PKG_VERSION"),
            debug_build: cfg!(debug_assertions),
            threads: config.threads,
            cache_threshold_bytes: config.cache_bytes,
            baseline_read_gbps: bandwidth.last().map_or(f64::NAN, |b| b.read_gbps),
            bandwidth,
            matmul,
            attention,
            notes: NOTES.to_vec(),
        }
    }

    /// The report as text tables: bandwidth, products, attention, notes.
    pub fn table(&self) -> String {
        [
            self.bandwidth_section(),
            self.matmul_section(),
            self.attention_section(),
            self.footer(),
        ]
        .join("\n")
    }

    /// The bandwidth table under its heading.
    fn bandwidth_section(&self) -> String {
        let heading = format!("memory bandwidth ({} MiB buffers, best run)\n", self.mib());
        let headers = ["threads", "read GB/s", "copy GB/s"];
        heading + &render(&headers, 0, &self.bandwidth_rows())
    }

    /// The product table under its heading.
    fn matmul_section(&self) -> String {
        let heading = format!(
            "matmul (threads: {}; % bw is of {:.1} GB/s read)\n",
            self.threads, self.baseline_read_gbps
        );
        heading + &render(&MATMUL_HEADERS, 2, &self.matmul_rows())
    }

    /// The attention table under its heading.
    fn attention_section(&self) -> String {
        let heading = format!("attention, decode step (threads: {})\n", self.threads);
        heading + &render(&ATTENTION_HEADERS, 0, &self.attention_rows())
    }

    /// Skipped cases, the cache threshold, notes and warnings.
    fn footer(&self) -> String {
        let mut out = String::new();
        for s in &self.matmul.skipped {
            let _ = writeln!(out, "skipped {} {}: {}", s.format, s.shape, s.reason);
        }
        let cache_mib = self.cache_threshold_bytes as f64 / (1 << 20) as f64;
        let _ = writeln!(out, "cache threshold: {cache_mib:.1} MiB");
        for note in &self.notes {
            let _ = writeln!(out, "note: {note}");
        }
        if self.bandwidth_in_cache() {
            out += "WARNING: the bandwidth buffer fits the cache threshold; \
                    the figure is cache, not memory, bandwidth\n";
        }
        if self.debug_build {
            out += "WARNING: debug build; rebuild with --release for real figures\n";
        }
        out
    }

    /// Bandwidth buffer size in MiB.
    fn mib(&self) -> usize {
        self.bandwidth.first().map_or(0, |b| b.buffer_bytes >> 20)
    }

    /// Whether the bandwidth buffer may have stayed in cache.
    fn bandwidth_in_cache(&self) -> bool {
        let bytes = self.bandwidth.first().map_or(0, |b| b.buffer_bytes);
        bytes <= self.cache_threshold_bytes
    }

    /// One row per bandwidth measurement.
    fn bandwidth_rows(&self) -> Vec<Vec<String>> {
        let row = |b: &Bandwidth| {
            vec![
                b.threads.to_string(),
                format!("{:.1}", b.read_gbps),
                format!("{:.1}", b.copy_gbps),
            ]
        };
        self.bandwidth.iter().map(row).collect()
    }

    /// One row per timed product.
    fn matmul_rows(&self) -> Vec<Vec<String>> {
        let row = |c: &MatmulCase| {
            vec![
                c.format.clone(),
                format!("{}x{}", c.rows, c.cols),
                c.n.to_string(),
                format!("{:.2}", c.weight_bytes as f64 / (1 << 20) as f64),
                time(c.per_call_s),
                format!("{:.1}", c.weight_gbps),
                format!("{:.1}", c.gflops),
                format!("{:.0}%", c.bandwidth_pct),
                residency(c.cache_resident),
            ]
        };
        self.matmul.cases.iter().map(row).collect()
    }

    /// One row per context length.
    fn attention_rows(&self) -> Vec<Vec<String>> {
        let row = |c: &AttentionCase| {
            vec![
                c.context.to_string(),
                format!("{}/{}x{}", c.heads, c.kv_heads, c.head_dim),
                c.layers.to_string(),
                format!("{:.2}", c.kv_bytes_per_layer as f64 / (1 << 20) as f64),
                time(c.per_call_s),
                format!("{:.1}", c.kv_gbps),
                format!("{:.1}", c.gflops),
                format!("{:.0}%", c.bandwidth_pct),
                residency(c.cache_resident),
            ]
        };
        self.attention.iter().map(row).collect()
    }
}

/// Columns of the product table.
const MATMUL_HEADERS: [&str; 9] = [
    "format", "shape", "n", "MiB", "time", "GB/s", "GFLOP/s", "% bw", "fits",
];

/// Columns of the attention table.
const ATTENTION_HEADERS: [&str; 9] = [
    "context",
    "heads/kv x dim",
    "layers",
    "KV MiB/layer",
    "time",
    "GB/s",
    "GFLOP/s",
    "% bw",
    "fits",
];

/// The residency column: `cache` or `memory`.
fn residency(cache_resident: bool) -> String {
    if cache_resident { "cache" } else { "memory" }.to_string()
}

/// Seconds with a unit that keeps three or four significant digits.
fn time(s: f64) -> String {
    if s < 1e-3 {
        format!("{:.1} µs", s * 1e6)
    } else if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// An aligned table: the first `left` columns flush left, the rest (numbers)
/// flush right, two spaces between columns.
fn render(headers: &[&str], left: usize, rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }

    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            let sep = if i == 0 { "" } else { "  " };
            let _ = if i < left {
                write!(out, "{sep}{cell:<w$}")
            } else {
                write!(out, "{sep}{cell:>w$}")
            };
        }
        out.trim_end().to_string() + "\n"
    };

    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out += &line(&mut row.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["Q4_K".to_string(), "1.5".to_string()],
            vec!["F32".to_string(), "123.0".to_string()],
        ];
        let text = render(&["format", "GB/s"], 1, &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines, ["format   GB/s", "Q4_K      1.5", "F32     123.0"]);
    }

    #[test]
    fn times_pick_units() {
        assert_eq!(time(2.5e-6), "2.5 µs");
        assert_eq!(time(0.0125), "12.50 ms");
        assert_eq!(time(3.0), "3.00 s");
    }
}
