//! SVG charts of results files: throughput against load, and time to first
//! token and inter-token latency (p50 and p99) against load, with one line
//! per run so that servers compare side by side.
//!
//! The x axis is categorical (each sweep point equally spaced), which suits
//! the doubling sweeps (1, 2, 4, … 64) benchmarks use. Text is written as
//! SVG `<text>` in a generic sans-serif family, so no font is needed to draw
//! the charts; the viewer picks one.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};

use plotters::coord::ranged1d::SegmentValue;
use plotters::coord::types::RangedCoordusize;
use plotters::element::DashedPathElement;
use plotters::prelude::*;

use crate::compare::gather_runs;
use crate::results::{Load, PointResult, ResultsFile, RunResult};
use crate::stats::Summary;
use crate::BenchError;

/// Chart sizes, in SVG pixels.
const THROUGHPUT_SIZE: (u32, u32) = (800, 500);
const LATENCY_SIZE: (u32, u32) = (1200, 500);

type DrawResult<T> = Result<T, Box<dyn StdError>>;

/// The latency a chart shows, from a point's figures.
type Metric = fn(&PointResult) -> Option<Summary>;

/// A run's line: its label and colour, and its points.
struct Line<'a> {
    label: String,
    color: RGBColor,
    points: &'a [PointResult],
}

/// The x axis: sweep loads in increasing order.
struct Axis {
    xs: Vec<f64>,
    name: &'static str,
}

impl Axis {
    /// The category of `load`.
    fn position(&self, load: &Load) -> Option<SegmentValue<usize>> {
        let x = load.x();
        self.xs
            .iter()
            .position(|&v| v == x)
            .map(SegmentValue::CenterOf)
    }

    /// The tick label of a category.
    fn label(&self, value: &SegmentValue<usize>) -> String {
        match value {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                self.xs.get(*i).map_or_else(String::new, |x| format!("{x}"))
            }
            SegmentValue::Last => String::new(),
        }
    }
}

/// Draws `throughput.svg` and `latency.svg` into `out_dir` (created when
/// missing) and returns their paths.
pub fn plot(files: &[(String, ResultsFile)], out_dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
    let runs = gather_runs(files);
    let axis = axis(&runs)?;
    let lines: Vec<Line> = runs
        .iter()
        .enumerate()
        .map(|(i, (label, run))| Line {
            label: label.clone(),
            color: color(i),
            points: &run.points,
        })
        .collect();
    std::fs::create_dir_all(out_dir).map_err(|source| BenchError::Io {
        action: "create",
        path: out_dir.to_owned(),
        source,
    })?;

    let throughput = out_dir.join("throughput.svg");
    draw_throughput(&throughput, &axis, &lines).map_err(|e| plot_error(&throughput, e))?;
    let latency = out_dir.join("latency.svg");
    draw_latency(&latency, &axis, &lines).map_err(|e| plot_error(&latency, e))?;
    Ok(vec![throughput, latency])
}

/// The x axis of all runs; they must share one kind of load.
fn axis(runs: &[(String, &RunResult)]) -> Result<Axis, BenchError> {
    let loads: Vec<&Load> = runs
        .iter()
        .flat_map(|(_, r)| &r.points)
        .map(|p| &p.load)
        .collect();
    let first = loads.first().ok_or_else(|| {
        BenchError::Incompatible("the files hold no sweep point to plot".to_owned())
    })?;
    if loads
        .iter()
        .any(|l| std::mem::discriminant(*l) != std::mem::discriminant(*first))
    {
        return Err(BenchError::Incompatible(
            "cannot plot closed-loop (concurrency) and open-loop (rate) results on one axis"
                .to_owned(),
        ));
    }
    let mut xs: Vec<f64> = loads.iter().map(|l| l.x()).collect();
    xs.sort_by(f64::total_cmp);
    xs.dedup();
    Ok(Axis {
        xs,
        name: first.axis_name(),
    })
}

/// Output tokens per second against load.
fn draw_throughput(path: &Path, axis: &Axis, lines: &[Line]) -> DrawResult<()> {
    let root = SVGBackend::new(path, THROUGHPUT_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let series: Vec<Series> = lines
        .iter()
        .map(|line| Series {
            label: line.label.clone(),
            color: line.color,
            dashed: false,
            points: values(axis, line.points, |p| Some(p.output_tokens_per_s)),
        })
        .collect();
    let panel = Panel {
        title: "Output throughput",
        y_name: "output tokens/s",
    };
    draw_panel(&root, axis, &panel, &series)?;
    root.present()?;
    Ok(())
}

/// TTFT and ITL, p50 (solid) and p99 (dashed), side by side.
fn draw_latency(path: &Path, axis: &Axis, lines: &[Line]) -> DrawResult<()> {
    let root = SVGBackend::new(path, LATENCY_SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let halves = root.split_evenly((1, 2));
    let panels: [(Panel, Metric); 2] = [
        (
            Panel {
                title: "Time to first token",
                y_name: "TTFT (ms)",
            },
            |p| p.ttft_ms,
        ),
        (
            Panel {
                title: "Inter-token latency",
                y_name: "ITL (ms)",
            },
            |p| p.itl_ms,
        ),
    ];
    for (area, (panel, metric)) in halves.iter().zip(panels) {
        let series = percentile_series(axis, lines, metric);
        draw_panel(area, axis, &panel, &series)?;
    }
    root.present()?;
    Ok(())
}

/// A p50 and a p99 series per run.
fn percentile_series(axis: &Axis, lines: &[Line], metric: Metric) -> Vec<Series> {
    let mut series = Vec::new();
    for line in lines {
        series.push(Series {
            label: format!("{} p50", line.label),
            color: line.color,
            dashed: false,
            points: values(axis, line.points, |p| metric(p).map(|s| s.p50)),
        });
        series.push(Series {
            label: format!("{} p99", line.label),
            color: line.color,
            dashed: true,
            points: values(axis, line.points, |p| metric(p).map(|s| s.p99)),
        });
    }
    series
}

/// A chart's title and y axis name.
struct Panel {
    title: &'static str,
    y_name: &'static str,
}

/// One line of a chart.
struct Series {
    label: String,
    color: RGBColor,
    dashed: bool,
    points: Vec<(SegmentValue<usize>, f64)>,
}

/// Draws one chart with its legend into `area`.
fn draw_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    axis: &Axis,
    panel: &Panel,
    series: &[Series],
) -> DrawResult<()> {
    let y_max = series
        .iter()
        .flat_map(|s| &s.points)
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let y_max = if y_max > 0.0 { y_max * 1.15 } else { 1.0 };
    let mut chart = ChartBuilder::on(area)
        .caption(panel.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(64)
        // Integer ranges are inclusive here: n categories are 0..n-1.
        .build_cartesian_2d(
            (0..axis.xs.len().saturating_sub(1)).into_segmented(),
            0.0..y_max,
        )?;
    let x_label = |v: &SegmentValue<usize>| axis.label(v);
    let y_label = |v: &f64| {
        if y_max >= 10.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_max_light_lines(0)
        .x_desc(axis.name)
        .y_desc(panel.y_name)
        .x_label_formatter(&x_label)
        .y_label_formatter(&y_label)
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 13))
        .draw()?;

    for s in series {
        draw_series(&mut chart, s)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.4))
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

type Chart<'a, 'b> = ChartContext<
    'a,
    SVGBackend<'b>,
    Cartesian2d<
        plotters::coord::ranged1d::SegmentedCoord<RangedCoordusize>,
        plotters::coord::types::RangedCoordf64,
    >,
>;

/// Draws one series, its markers and its legend entry.
fn draw_series(chart: &mut Chart, series: &Series) -> DrawResult<()> {
    let color = series.color;
    let style = color.stroke_width(2);
    let points = series.points.clone();
    let entry = if series.dashed {
        chart.draw_series(DashedLineSeries::new(points.clone(), 8, 5, style))?
    } else {
        chart.draw_series(LineSeries::new(points.clone(), style))?
    };
    // The legend's sample: a dash longer than the sample draws it solid.
    let (dash, gap) = if series.dashed { (8, 5) } else { (40, 1) };
    entry.label(series.label.clone()).legend(move |(x, y)| {
        DashedPathElement::new(vec![(x, y), (x + 20, y)], dash, gap, color.stroke_width(2))
    });
    chart.draw_series(
        points
            .into_iter()
            .map(|p| Circle::new(p, 3, color.filled())),
    )?;
    Ok(())
}

/// The points of a line, at their categories.
fn values(
    axis: &Axis,
    points: &[PointResult],
    value: impl Fn(&PointResult) -> Option<f64>,
) -> Vec<(SegmentValue<usize>, f64)> {
    let mut values: Vec<(usize, f64)> = points
        .iter()
        .filter_map(|p| match axis.position(&p.load)? {
            SegmentValue::CenterOf(i) => Some((i, value(p)?)),
            _ => None,
        })
        .collect();
    values.sort_by_key(|v| v.0);
    values
        .into_iter()
        .map(|(i, v)| (SegmentValue::CenterOf(i), v))
        .collect()
}

/// The colour of the `i`-th run: distinct, readable on white.
fn color(i: usize) -> RGBColor {
    const COLORS: [RGBColor; 6] = [
        RGBColor(31, 119, 180),
        RGBColor(214, 39, 40),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
        RGBColor(23, 190, 207),
    ];
    COLORS[i % COLORS.len()]
}

fn plot_error(path: &Path, err: Box<dyn StdError>) -> BenchError {
    BenchError::Plot {
        path: path.to_owned(),
        reason: err.to_string(),
    }
}
