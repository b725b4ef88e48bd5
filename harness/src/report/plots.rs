//! The report's plots (plotters, SVG): throughput and latency quantiles over time, with the
//! nemesis's fault windows shaded, as Jepsen's perf plots.

use plotters::prelude::*;

use super::timeline::{Fault, Interval, seconds};
use history::OpKind;

/// The plots' size, pixels.
const SIZE: (u32, u32) = (1200, 260);
/// The most buckets of a plot (wider runs get wider buckets).
const BUCKETS_MAX: u64 = 300;

const OK: RGBColor = RGBColor(46, 139, 87);
const FAIL: RGBColor = RGBColor(214, 96, 77);
const INFO: RGBColor = RGBColor(230, 171, 2);
const NETWORK_FAULT: RGBColor = RGBColor(158, 202, 225);
const PROCESS_FAULT: RGBColor = RGBColor(253, 208, 162);
const BYZANTINE_FAULT: RGBColor = RGBColor(239, 138, 138);

/// Completions per second by outcome, over time.
pub(super) fn throughput(intervals: &[Interval], faults: &[Fault]) -> String {
    let (end, bucket) = buckets(intervals);
    let count = (end / bucket + 1) as usize;
    let mut series = [vec![0f64; count], vec![0f64; count], vec![0f64; count]];
    for interval in intervals {
        let Some(complete) = interval.complete else { continue };
        let index = match interval.kind {
            OpKind::Ok => 0,
            OpKind::Fail => 1,
            _ => 2,
        };
        series[index][(complete / bucket) as usize] += 1e9 / bucket as f64;
    }
    let top = series.iter().flatten().copied().fold(1.0, f64::max) * 1.1;
    let lines = [("ok", OK, &series[0]), ("fail", FAIL, &series[1]), ("info", INFO, &series[2])];
    draw("completions per second", "ops/s", end, top, bucket, &lines, faults, false)
}

/// Latency quantiles (p50, p95, p99) of `ok` operations per bucket, over time, on a log scale.
pub(super) fn latency(intervals: &[Interval], faults: &[Fault]) -> String {
    let (end, bucket) = buckets(intervals);
    let count = (end / bucket + 1) as usize;
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); count];
    for interval in intervals.iter().filter(|interval| interval.kind == OpKind::Ok) {
        let Some(complete) = interval.complete else { continue };
        let millis = complete.saturating_sub(interval.invoke) as f64 / 1e6;
        latencies[(complete / bucket) as usize].push(millis);
    }
    let mut quantiles = [vec![f64::NAN; count], vec![f64::NAN; count], vec![f64::NAN; count]];
    for (index, bucket) in latencies.iter_mut().enumerate() {
        if bucket.is_empty() {
            continue;
        }
        bucket.sort_by(f64::total_cmp);
        for (series, quantile) in quantiles.iter_mut().zip([0.5, 0.95, 0.99]) {
            let rank = ((quantile * bucket.len() as f64).ceil() as usize).clamp(1, bucket.len());
            series[index] = bucket[rank - 1].max(0.001);
        }
    }
    let top = quantiles.iter().flatten().copied().filter(|v| v.is_finite()).fold(1.0, f64::max);
    let lines = [
        ("p50", RGBColor(33, 102, 172), &quantiles[0]),
        ("p95", RGBColor(118, 42, 131), &quantiles[1]),
        ("p99", RGBColor(178, 24, 43), &quantiles[2]),
    ];
    draw("latency of ok operations", "ms", end, top * 2.0, bucket, &lines, faults, true)
}

/// The run's end and the bucket width, nanoseconds.
fn buckets(intervals: &[Interval]) -> (u64, u64) {
    let end = intervals
        .iter()
        .map(|interval| interval.complete.unwrap_or(interval.invoke))
        .max()
        .unwrap_or(0);
    let seconds = end.div_ceil(1_000_000_000).max(1);
    // Half-second buckets for a short run; at most BUCKETS_MAX for a long one.
    let bucket =
        if seconds <= 30 { 500_000_000 } else { seconds.div_ceil(BUCKETS_MAX) * 1_000_000_000 };
    (end, bucket.max(1))
}

#[allow(clippy::too_many_arguments, reason = "one private drawing routine")]
fn draw(
    caption: &str,
    unit: &str,
    end: u64,
    top: f64,
    bucket: u64,
    lines: &[(&str, RGBColor, &Vec<f64>)],
    faults: &[Fault],
    log: bool,
) -> String {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        let result = (|| -> Result<(), Box<dyn std::error::Error + '_>> {
            root.fill(&WHITE)?;
            let span = seconds(end).max(0.001);
            let mut builder = ChartBuilder::on(&root);
            builder.caption(caption, ("sans-serif", 16)).margin(8).x_label_area_size(28);
            builder.y_label_area_size(60);
            if log {
                let mut chart =
                    builder.build_cartesian_2d(0f64..span, (0.01f64..top.max(0.1)).log_scale())?;
                chart.configure_mesh().x_desc("s").y_desc(unit).light_line_style(WHITE).draw()?;
                shade(&mut chart, faults, 0.01, top.max(0.1))?;
                plot_lines(&mut chart, lines, bucket)?;
                legend(&mut chart)?;
            } else {
                let mut chart = builder.build_cartesian_2d(0f64..span, 0f64..top)?;
                chart.configure_mesh().x_desc("s").y_desc(unit).light_line_style(WHITE).draw()?;
                shade(&mut chart, faults, 0.0, top)?;
                plot_lines(&mut chart, lines, bucket)?;
                legend(&mut chart)?;
            }
            root.present()?;
            Ok(())
        })();
        if let Err(error) = result {
            return format!("<p class=\"note\">the plot could not be drawn: {error}</p>");
        }
    }
    svg
}

type Chart<'a, 'b, Y> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<plotters::coord::types::RangedCoordf64, Y>>;

fn shade<Y>(
    chart: &mut Chart<'_, '_, Y>,
    faults: &[Fault],
    bottom: f64,
    top: f64,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>>
where
    Y: Ranged<ValueType = f64>,
{
    let spans = faults.iter().filter(|fault| fault.end != Some(fault.start)).map(|fault| {
        let color = if fault.byzantine {
            BYZANTINE_FAULT
        } else if matches!(fault.kind.as_str(), "kill" | "pause") {
            PROCESS_FAULT
        } else {
            NETWORK_FAULT
        };
        let end = fault.end.map_or(f64::MAX, seconds);
        Rectangle::new([(seconds(fault.start), bottom), (end, top)], color.mix(0.35).filled())
    });
    chart.draw_series(spans)?;
    Ok(())
}

fn plot_lines<Y>(
    chart: &mut Chart<'_, '_, Y>,
    lines: &[(&str, RGBColor, &Vec<f64>)],
    bucket: u64,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>>
where
    Y: Ranged<ValueType = f64>,
{
    for &(name, color, values) in lines {
        let points = values
            .iter()
            .enumerate()
            .filter(|(_, value)| value.is_finite())
            .map(|(index, value)| ((index as u64 * bucket + bucket / 2) as f64 / 1e9, *value));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    Ok(())
}

fn legend<'a, 'b: 'a, Y>(
    chart: &mut Chart<'a, 'b, Y>,
) -> Result<(), DrawingAreaErrorKind<std::io::Error>>
where
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
}
