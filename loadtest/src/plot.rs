//! `--plot FILE`: an SVG chart of a run over time, latency (p50 and p99) above throughput, drawn
//! with `plotters` from the report's timeline. SVG needs no font files: text is left to the viewer.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;

use crate::report::Report;

/// Size of the chart in pixels.
const SIZE: (u32, u32) = (960, 640);

/// Renders the chart of `report` as SVG text.
pub fn render_svg(report: &Report) -> anyhow::Result<String> {
    let mut svg = String::new();
    draw(report, &mut svg).map_err(|error| anyhow::anyhow!("cannot draw the plot: {error}"))?;
    Ok(svg)
}

/// Writes the chart of `report` to `path` as SVG.
pub fn write_svg(report: &Report, path: &Path) -> anyhow::Result<()> {
    let svg = render_svg(report)?;
    std::fs::write(path, svg)
        .with_context(|| format!("cannot write the plot to {}", path.display()))
}

fn draw(report: &Report, svg: &mut String) -> Result<(), Box<dyn std::error::Error>> {
    let timeline = &report.timeline;
    let x_end = timeline
        .iter()
        .map(|point| point.t_s)
        .fold(0.0_f64, f64::max)
        .max(report.settings.max_duration_s.min(report.duration_s))
        .max(0.1);
    let latency_top = timeline
        .iter()
        .map(|point| point.p99_ms)
        .fold(0.0_f64, f64::max)
        .max(0.001)
        * 1.1;
    let rps_top = timeline
        .iter()
        .map(|point| point.rps)
        .fold(0.0_f64, f64::max)
        .max(1.0)
        * 1.1;

    let root = SVGBackend::with_string(svg, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "exposure-loadtest {}: {} requests, {:.1} rps, p99 {:.3} ms",
        report.scenario, report.count, report.rps, report.latency_ms.p99
    );
    let root = root.titled(&title, ("sans-serif", 20))?;
    let (upper, lower) = root.split_vertically(SIZE.1 / 2 - 20);

    let mut latency = ChartBuilder::on(&upper)
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_end, 0.0..latency_top)?;
    latency
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("latency (ms)")
        .draw()?;
    latency
        .draw_series(LineSeries::new(
            timeline.iter().map(|point| (point.t_s, point.p50_ms)),
            &BLUE,
        ))?
        .label("p50")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    latency
        .draw_series(LineSeries::new(
            timeline.iter().map(|point| (point.t_s, point.p99_ms)),
            &RED,
        ))?
        .label("p99")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED));
    latency
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;

    let mut throughput = ChartBuilder::on(&lower)
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_end, 0.0..rps_top)?;
    throughput
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("answers per second")
        .draw()?;
    throughput
        .draw_series(LineSeries::new(
            timeline.iter().map(|point| (point.t_s, point.rps)),
            &GREEN,
        ))?
        .label("throughput")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], GREEN));
    throughput
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::TimelinePoint;

    fn report(timeline: Vec<TimelinePoint>) -> Report {
        Report {
            scenario: "noop".to_owned(),
            count: 100,
            duration_s: 1.0,
            rps: 100.0,
            timeline,
            ..Report::default()
        }
    }

    #[test]
    fn renders_an_svg_with_both_panels() {
        let timeline = (0..10)
            .map(|index| TimelinePoint {
                t_s: index as f64 * 0.1,
                rps: 100.0 + index as f64,
                errors: 0,
                p50_ms: 1.0,
                p99_ms: 2.0 + index as f64,
            })
            .collect();
        let svg = render_svg(&report(timeline)).expect("svg");
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("latency (ms)") && svg.contains("answers per second"));
        assert!(svg.contains("<polyline"), "line series are drawn");
    }

    #[test]
    fn an_empty_run_still_plots() {
        let svg = render_svg(&report(Vec::new())).expect("svg");
        assert!(svg.contains("</svg>"));
    }
}
