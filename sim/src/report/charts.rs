//! The charts of a run, drawn by plotters into SVG text.
//!
//! Every chart has a caption, two axis titles and a legend naming its series; text is
//! written as SVG `<text>` elements in a generic sans-serif family, so nothing here reads a
//! font. Long series are cut to a fixed number of points so files stay small.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{ChartData, ReportError};

/// Size of the single-panel charts, pixels.
const SIZE: (u32, u32) = (900, 560);
/// Size of the two-panel timeline, pixels.
const TIMELINE_SIZE: (u32, u32) = (900, 720);
/// Points drawn at most per CDF curve.
const CDF_POINTS_MAX: usize = 400;
const FONT: &str = "sans-serif";

const BLUE_: RGBColor = RGBColor(31, 119, 180);
const ORANGE: RGBColor = RGBColor(255, 127, 14);
const GREY: RGBColor = RGBColor(110, 110, 110);
const GREEN_: RGBColor = RGBColor(44, 160, 44);

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draws on a white `size` canvas with `draw` and returns the SVG text.
fn svg(
    chart: &'static str,
    size: (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> DrawResult,
) -> Result<String, ReportError> {
    let fail = |e: Box<dyn std::error::Error>| ReportError::Chart {
        chart,
        message: e.to_string(),
    };
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(e.into()))?;
        draw(&root).map_err(fail)?;
        root.present().map_err(|e| fail(e.into()))?;
    }
    text.push('\n');
    Ok(text)
}

/// A legend entry: a short thick line in `color`.
fn legend_line(color: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(3))
}

/// Draws the legend of `chart`'s labelled series at `position`, in the style every chart
/// shares.
fn draw_legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
) -> DrawResult {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font((FONT, 15))
        .draw()?;
    Ok(())
}

/// The median of sorted `values`, or 0.
fn median(values: &[f64]) -> f64 {
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// The CDF of sorted `values` as at most [`CDF_POINTS_MAX`] + 1 points.
fn cdf_points(values: &[f64]) -> Vec<(f64, f64)> {
    let n = values.len();
    if n == 0 {
        return Vec::new();
    }
    let steps = CDF_POINTS_MAX.min(n);
    let mut points: Vec<(f64, f64)> = (0..=steps)
        .map(|k| {
            let i = (k * (n - 1)) / steps;
            (values[i], (i + 1) as f64 / n as f64)
        })
        .collect();
    points.dedup();
    points
}

/// `rtt_cdf.svg`: CDF of the measured RTT to neighbours and of the model's baselines.
pub(super) fn rtt_cdf(data: &ChartData) -> Result<String, ReportError> {
    // The baseline first, so the measured curve is drawn on top of it.
    let series = [
        ("model RTT of random pairs", &data.rtt_random_ms, GREY),
        ("model RTT of the same pairs", &data.rtt_model_ms, ORANGE),
        (
            "measured RTT to neighbours (EWMA)",
            &data.rtt_measured_ms,
            BLUE_,
        ),
    ];
    let x_max = series
        .iter()
        .filter_map(|(_, v, _)| v.last().copied())
        .fold(1.0f64, f64::max)
        * 1.02;
    svg("rtt_cdf.svg", SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "RTT to chosen neighbours: {} measured pairs",
                    data.rtt_measured_ms.len()
                ),
                (FONT, 22),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max, 0.0..1.0)?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| format!("{v:.0}"))
            .x_desc("round-trip time (ms)")
            .y_desc("share of pairs at or below")
            .axis_desc_style((FONT, 16))
            .draw()?;
        for (label, values, color) in series {
            let label = format!("{label} (median {:.1} ms)", median(values));
            chart
                .draw_series(LineSeries::new(cdf_points(values), color.stroke_width(3)))?
                .label(label)
                .legend(legend_line(color));
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}

/// `degree.svg`: how many nodes ended with each number of connections.
pub(super) fn degree(data: &ChartData) -> Result<String, ReportError> {
    let max_degree = data.degrees.iter().copied().max().unwrap_or(0) as u32;
    let mut counts = vec![0u32; max_degree as usize + 1];
    for d in &data.degrees {
        counts[*d] += 1;
    }
    let y_max = (f64::from(counts.iter().copied().max().unwrap_or(0)) * 1.1).ceil() as u32 + 1;
    let mean = data.degrees.iter().sum::<usize>() as f64 / data.degrees.len().max(1) as f64;
    svg("degree.svg", SIZE, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "Node degree at the end: {} nodes, mean {mean:.2}",
                    data.degrees.len()
                ),
                (FONT, 22),
            )
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d((0..max_degree + 1).into_segmented(), 0..y_max)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels((max_degree as usize + 2).min(40))
            .x_label_formatter(&|v| match v {
                SegmentValue::Exact(v) | SegmentValue::CenterOf(v) => v.to_string(),
                SegmentValue::Last => String::new(),
            })
            .x_desc("connections (degree)")
            .y_desc("nodes")
            .axis_desc_style((FONT, 16))
            .draw()?;
        // plotters' Histogram sums its data in a HashMap and draws bars in its random
        // order, so bars are drawn here, in degree order, for a deterministic file.
        let bars = counts.iter().enumerate().map(|(d, n)| {
            let d = d as u32;
            let corners = [
                (SegmentValue::Exact(d), 0),
                (SegmentValue::Exact(d + 1), *n),
            ];
            let mut bar = Rectangle::new(corners, BLUE_.mix(0.75).filled());
            bar.set_margin(0, 0, 3, 3);
            bar
        });
        chart
            .draw_series(bars)?
            .label("nodes with this degree")
            .legend(legend_line(BLUE_));
        draw_legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    })
}

/// Points of a step line holding each bucket's value over its interval.
fn steps(data: &ChartData, values: impl Iterator<Item = f64>) -> Vec<(f64, f64)> {
    let t = &data.timeline;
    let mut points = Vec::new();
    for (i, v) in values.enumerate() {
        let end = t.bucket_start_s(i + 1).min(data.duration_s);
        points.push((t.bucket_start_s(i), v));
        points.push((end, v));
    }
    points
}

/// `timeline.svg`: messages per interval above, open connections below.
pub(super) fn timeline(data: &ChartData) -> Result<String, ReportError> {
    let t = &data.timeline;
    let width_s = t.bucket_width().as_secs_f64();
    let sent = steps(data, t.buckets().iter().map(|b| b.sent as f64));
    let delivered = steps(data, t.buckets().iter().map(|b| b.delivered as f64));
    // Each connection is counted at both of its ends.
    let open: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
        .chain(t.open_ends().iter().enumerate().map(|(i, ends)| {
            let end = t.bucket_start_s(i + 1).min(data.duration_s);
            (end, *ends as f64 / 2.0)
        }))
        .collect();
    let y_max = |points: &[(f64, f64)]| points.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let x_max = data.duration_s.max(1e-6);
    svg("timeline.svg", TIMELINE_SIZE, |root| {
        let (upper, lower) = root.split_vertically(TIMELINE_SIZE.1 / 2);
        let mut chart = ChartBuilder::on(&upper)
            .caption(
                format!("Messages per {width_s} s of simulated time"),
                (FONT, 22),
            )
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max(&sent))?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_desc("simulated time (s)")
            .y_desc(format!("messages per {width_s} s"))
            .axis_desc_style((FONT, 16))
            .draw()?;
        for (label, points, color) in [("sent", sent, BLUE_), ("delivered", delivered, ORANGE)] {
            chart
                .draw_series(LineSeries::new(points, color.stroke_width(2)))?
                .label(label)
                .legend(legend_line(color));
        }
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;

        let mut chart = ChartBuilder::on(&lower)
            .caption("Open connections", (FONT, 22))
            .margin(20)
            .x_label_area_size(45)
            .y_label_area_size(80)
            .build_cartesian_2d(0.0..x_max, 0.0..y_max(&open))?;
        chart
            .configure_mesh()
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .x_desc("simulated time (s)")
            .y_desc("open connections")
            .axis_desc_style((FONT, 16))
            .draw()?;
        chart
            .draw_series(LineSeries::new(open, GREEN_.stroke_width(3)))?
            .label("open connections at the end of each interval")
            .legend(legend_line(GREEN_));
        draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
        Ok(())
    })
}
