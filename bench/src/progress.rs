//! The progress bar on stderr, and a one-line summary per sweep point.
//!
//! The bar is drawn only when stderr is a terminal and `--quiet` was not
//! given; the summaries are printed whenever `--quiet` was not given, so a
//! log shows how a run went.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::results::PointResult;

/// Decides what a run shows on stderr.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    bars: bool,
    summaries: bool,
}

impl Progress {
    /// Bars on a terminal and summaries, or nothing when `quiet`.
    pub fn new(quiet: bool) -> Self {
        Progress {
            bars: !quiet && std::io::stderr().is_terminal(),
            summaries: !quiet,
        }
    }

    /// Shows nothing at all.
    pub fn hidden() -> Self {
        Progress {
            bars: false,
            summaries: false,
        }
    }

    /// A bar for one sweep point: `total` requests when known, else a
    /// counter.
    pub fn bar(&self, prefix: String, total: Option<u64>) -> ProgressBar {
        if !self.bars {
            return ProgressBar::hidden();
        }
        let (bar, template) = match total {
            Some(n) => (
                ProgressBar::new(n),
                "{prefix} [{wide_bar}] {pos}/{len} ({eta} left)",
            ),
            None => (
                ProgressBar::no_length(),
                "{prefix} {spinner} {pos} requests, {elapsed}",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(prefix);
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    /// Prints a point's headline figures.
    pub fn summary(&self, label: &str, point: &PointResult) {
        if !self.summaries {
            return;
        }
        let ttft = point
            .ttft_ms
            .map_or("-".to_owned(), |s| format!("{:.1}", s.p50));
        let itl = point
            .itl_ms
            .map_or("-".to_owned(), |s| format!("{:.1}", s.p50));
        eprintln!(
            "{label} {}: {}/{} ok, {:.1} output tok/s, {:.2} req/s, TTFT p50 {ttft} ms, ITL p50 {itl} ms",
            point.load,
            point.requests.succeeded,
            point.requests.sent,
            point.output_tokens_per_s,
            point.requests_per_s,
        );
        for (kind, count) in &point.errors {
            let example = point.error_examples.get(kind).map_or("", String::as_str);
            eprintln!("  {count} × {kind}: {example}");
        }
    }
}
