//! Side-by-side tables of runs: one column per run, one block of rows per
//! sweep point, matched across runs by their load.

use std::fmt::Write as _;

use crate::results::{Load, PointResult, ResultsFile, RunResult};
use crate::stats::Summary;
use crate::BenchError;

/// Narrowest column of figures, in characters.
const MIN_COLUMN: usize = 14;

/// Width of the row names.
const NAME_COLUMN: usize = 24;

/// The runs of several results files, each labelled uniquely: a label that
/// two files share gets the file's name in front.
pub fn gather_runs(files: &[(String, ResultsFile)]) -> Vec<(String, &RunResult)> {
    let all: Vec<(&str, &RunResult)> = files
        .iter()
        .flat_map(|(name, file)| file.runs.iter().map(move |run| (name.as_str(), run)))
        .collect();
    all.iter()
        .map(|&(file, run)| {
            let shared = all.iter().filter(|(_, r)| r.label == run.label).count() > 1;
            let label = if shared {
                format!("{file}: {}", run.label)
            } else {
                run.label.clone()
            };
            (label, run)
        })
        .collect()
}

/// The table of every run in `files`, as text.
pub fn compare(files: &[(String, ResultsFile)]) -> Result<String, BenchError> {
    let runs = gather_runs(files);
    if runs.is_empty() {
        return Err(BenchError::Incompatible(
            "the files hold no run to compare".to_owned(),
        ));
    }
    Ok(table(&runs))
}

/// The table of `runs`.
pub fn table(runs: &[(String, &RunResult)]) -> String {
    let width = runs
        .iter()
        .map(|(l, _)| l.chars().count() + 2)
        .max()
        .unwrap_or(0)
        .max(MIN_COLUMN);
    let mut out = String::new();
    let _ = write!(out, "{:NAME_COLUMN$}", "");
    for (label, _) in runs {
        let _ = write!(out, "{label:>width$}");
    }
    out.push('\n');

    for load in loads(runs) {
        let _ = writeln!(out, "{load}");
        let points: Vec<Option<&PointResult>> = runs
            .iter()
            .map(|(_, run)| run.points.iter().find(|p| p.load == load))
            .collect();
        for (name, cell) in ROWS {
            let _ = write!(out, "  {name:<w$}", w = NAME_COLUMN - 2);
            for point in &points {
                let text = point.map_or_else(|| "-".to_owned(), cell);
                let _ = write!(out, "{text:>width$}");
            }
            out.push('\n');
        }
    }
    out
}

/// Every load of the runs, in order of first appearance.
fn loads(runs: &[(String, &RunResult)]) -> Vec<Load> {
    let mut loads: Vec<Load> = Vec::new();
    for point in runs.iter().flat_map(|(_, run)| &run.points) {
        if !loads.contains(&point.load) {
            loads.push(point.load);
        }
    }
    loads
}

/// A row: its name and how a point's cell reads.
type Row = (&'static str, fn(&PointResult) -> String);

/// The rows of each point's block.
const ROWS: &[Row] = &[
    ("requests ok/sent", |p| {
        format!("{}/{}", p.requests.succeeded, p.requests.sent)
    }),
    ("output tok/s", |p| format!("{:.1}", p.output_tokens_per_s)),
    ("requests/s", |p| format!("{:.2}", p.requests_per_s)),
    ("goodput req/s", |p| {
        format!("{:.2}", p.goodput.requests_per_s)
    }),
    ("TTFT p50/p99 ms", |p| pair(p.ttft_ms)),
    ("ITL p50/p99 ms", |p| pair(p.itl_ms)),
    ("TPOT p50/p99 ms", |p| pair(p.tpot_ms)),
    ("E2E p50/p99 ms", |p| pair(p.e2e_ms)),
    ("errors", |p| p.errors.values().sum::<u64>().to_string()),
];

/// `p50/p99` of a summary, or `-`.
fn pair(summary: Option<Summary>) -> String {
    summary.map_or_else(
        || "-".to_owned(),
        |s| format!("{}/{}", short(s.p50), short(s.p99)),
    )
}

/// A latency with the precision that matters at its size.
fn short(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else {
        format!("{ms:.1}")
    }
}
