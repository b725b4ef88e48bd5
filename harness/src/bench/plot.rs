//! `bench.svg`: latency against throughput, one panel per cluster size and fault case, one
//! colour per protocol (p50 solid with points, p99 thin), as the report's plots (plotters).

use plotters::prelude::*;

use super::stats::StepRecord;

/// One panel's size, pixels.
const PANEL: (u32, u32) = (560, 320);

/// The protocols' colours, in the order they first appear.
const COLOURS: [RGBColor; 4] =
    [RGBColor(33, 102, 172), RGBColor(178, 24, 43), RGBColor(46, 139, 87), RGBColor(118, 42, 131)];

/// The whole plot as an SVG document.
pub(super) fn svg(steps: &[StepRecord]) -> String {
    let mut panels: Vec<(u8, &str)> = Vec::new();
    let mut protocols: Vec<&str> = Vec::new();
    for step in steps {
        if !panels.contains(&(step.replicas, step.faults)) {
            panels.push((step.replicas, step.faults));
        }
        if !protocols.contains(&step.protocol) {
            protocols.push(step.protocol);
        }
    }
    let columns = panels.iter().map(|(_, faults)| *faults).collect::<Vec<_>>();
    let column_count = {
        let mut distinct = columns.clone();
        distinct.sort_unstable();
        distinct.dedup();
        distinct.len().max(1)
    };
    let row_count = panels.len().div_ceil(column_count).max(1);
    let size = (PANEL.0 * column_count as u32, PANEL.1 * row_count as u32);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        let _ = root.fill(&WHITE);
        let areas = root.split_evenly((row_count, column_count));
        for (area, (replicas, faults)) in areas.iter().zip(&panels) {
            let here: Vec<&StepRecord> = steps
                .iter()
                .filter(|step| step.replicas == *replicas && step.faults == *faults)
                .collect();
            let _ = panel(area, *replicas, faults, &here, &protocols);
        }
        let _ = root.present();
    }
    svg
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    replicas: u8,
    faults: &str,
    steps: &[&StepRecord],
    protocols: &[&str],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let points = |step: &&StepRecord, latency: Option<f64>| {
        latency.map(|latency| (step.achieved_ops_s.max(1.0), latency.max(0.01)))
    };
    let right = steps.iter().map(|step| step.achieved_ops_s).fold(10.0, f64::max) * 1.1;
    let top = steps.iter().filter_map(|step| step.p99_ms.or(step.p50_ms)).fold(1.0, f64::max) * 2.0;
    let bottom = steps.iter().filter_map(|step| step.p50_ms).fold(top, f64::min).max(0.02) / 2.0;
    let caption = match faults {
        "crash" => format!("n = {replicas}, one backup crashed"),
        _ => format!("n = {replicas}, fault-free"),
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(8)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..right, (bottom..top).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("completed ops/s")
        .y_desc("latency ms (p50, p99)")
        .x_label_formatter(&|ops| format!("{ops:.0}"))
        .y_label_formatter(&|ms| format!("{ms}"))
        .light_line_style(WHITE)
        .draw()?;
    for (index, protocol) in protocols.iter().enumerate() {
        let colour = COLOURS[index % COLOURS.len()];
        let mut mine: Vec<&&StepRecord> =
            steps.iter().filter(|step| step.protocol == *protocol && !step.half_knee).collect();
        mine.sort_by(|a, b| a.offered_ops_s.total_cmp(&b.offered_ops_s));
        let p50: Vec<(f64, f64)> =
            mine.iter().filter_map(|step| points(step, step.p50_ms)).collect();
        let p99: Vec<(f64, f64)> =
            mine.iter().filter_map(|step| points(step, step.p99_ms)).collect();
        chart
            .draw_series(LineSeries::new(p50.clone(), colour.stroke_width(2)))?
            .label(*protocol)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], colour.stroke_width(2))
            });
        chart.draw_series(p50.iter().map(|point| Circle::new(*point, 3, colour.filled())))?;
        chart.draw_series(LineSeries::new(p99, colour.mix(0.5).stroke_width(1)))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}
