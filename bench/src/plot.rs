//! PNG and SVG charts (plotters) with a bundled font: no system font needed.

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

use crate::disk::DiskResult;
use crate::workload::{Phase, TargetResult};

/// DejaVu Sans, from Debian's fonts-dejavu-core (license in assets/).
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");
const FAMILY: &str = "sans-serif";

fn init_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            if register_font(FAMILY, style, FONT).is_err() {
                panic!("bundled font does not parse");
            }
        }
    });
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

const W: u32 = 1024;
const H: u32 = 640;

/// A line: label and points.
struct Series {
    label: String,
    points: Vec<(f64, f64)>,
    dashed: bool,
}

struct Chart<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    log_y: bool,
    series: Vec<Series>,
}

fn draw<DB: DrawingBackend>(root: DrawingArea<DB, Shift>, c: &Chart<'_>) -> Result<()>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(err)?;
    let pts = || c.series.iter().flat_map(|s| s.points.iter());
    let x_max = pts().map(|p| p.0).fold(0.0f64, f64::max).max(1e-6) * 1.02;
    let y_max = pts().map(|p| p.1).fold(0.0f64, f64::max).max(1e-3) * 1.1;
    let y_min_pos = pts().map(|p| p.1).filter(|v| *v > 0.0).fold(f64::MAX, f64::min);
    let mut b = ChartBuilder::on(&root);
    b.caption(c.title, (FAMILY, 24)).margin(16).x_label_area_size(48).y_label_area_size(72);
    macro_rules! body {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .x_desc(c.x_label)
                .y_desc(c.y_label)
                .label_style((FAMILY, 14))
                .axis_desc_style((FAMILY, 16))
                .draw()
                .map_err(err)?;
            for (i, s) in c.series.iter().enumerate() {
                let color = Palette99::pick(i).to_rgba();
                let style = color.stroke_width(2);
                let pts: Vec<(f64, f64)> =
                    s.points.iter().copied().filter(|p| !c.log_y || p.1 > 0.0).collect();
                let anno = if s.dashed {
                    chart.draw_series(DashedLineSeries::new(pts, 8, 6, style)).map_err(err)?
                } else {
                    // Points as well as lines: a run of one window still shows.
                    chart
                        .draw_series(pts.iter().map(|p| Circle::new(*p, 3, color.filled())))
                        .map_err(err)?;
                    chart.draw_series(LineSeries::new(pts, style)).map_err(err)?
                };
                anno.label(s.label.clone()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            }
            chart
                .configure_series_labels()
                .label_font((FAMILY, 14))
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .position(SeriesLabelPosition::LowerRight)
                .draw()
                .map_err(err)?;
        }};
    }
    if c.log_y {
        // Whole decades, so the log axis has labelled ticks.
        let lo = if y_min_pos == f64::MAX { 0.01 } else { 10f64.powf(y_min_pos.log10().floor()) };
        let hi = 10f64.powf(y_max.log10().ceil()).max(lo * 10.0);
        body!(b.build_cartesian_2d(0f64..x_max, (lo..hi).log_scale()).map_err(err)?);
    } else {
        body!(b.build_cartesian_2d(0f64..x_max, 0f64..y_max).map_err(err)?);
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Writes `<stem>.png` and `<stem>.svg`; returns their file names.
fn render(dir: &Path, stem: &str, c: &Chart<'_>) -> Result<Vec<String>> {
    init_font();
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    draw(BitMapBackend::new(&png, (W, H)).into_drawing_area(), c)?;
    draw(SVGBackend::new(&svg, (W, H)).into_drawing_area(), c)?;
    Ok(vec![format!("{stem}.png"), format!("{stem}.svg")])
}

/// Throughput and latency against stored data, every target on one chart;
/// consume throughput when the run consumed. Returns the files written.
pub fn run_charts(
    dir: &Path,
    name: &str,
    results: &[TargetResult],
    disk_write_ceiling: Option<f64>,
) -> Result<Vec<String>> {
    let mut files = Vec::new();
    let gb = |b: u64| b as f64 / 1e9;
    // The last window of a phase is cut short: its rate is noise, leave it out.
    let full = |r: &TargetResult, w: &crate::workload::Row| {
        let longest = r.rows.iter().map(|w| w.secs).fold(0.0, f64::max);
        w.secs >= 0.5 * longest
    };

    let mut tput = Vec::new();
    let mut lat = Vec::new();
    for r in results {
        let rows = || r.rows.iter().filter(|w| w.phase == Phase::Produce && full(r, w));
        tput.push(Series {
            label: format!("{} produce MB/s", r.target.name),
            points: rows()
                .map(|w| (gb(w.stored_bytes), w.stats.bytes as f64 / 1e6 / w.secs))
                .collect(),
            dashed: false,
        });
        for (q, f) in [
            ("p50", (|w: &crate::recorder::WindowStats| w.latency.p50_us) as fn(&_) -> u64),
            ("p99", |w| w.latency.p99_us),
            ("p99.9", |w| w.latency.p999_us),
        ] {
            lat.push(Series {
                label: format!("{} produce {q}", r.target.name),
                points: rows()
                    .filter(|w| w.stats.latency.count > 0)
                    .map(|w| (gb(w.stored_bytes), f(&w.stats) as f64 / 1000.0))
                    .collect(),
                dashed: q != "p99",
            });
        }
    }
    if let Some(c) = disk_write_ceiling {
        let x_max = results
            .iter()
            .flat_map(|r| r.rows.iter().map(|w| gb(w.stored_bytes)))
            .fold(0.0, f64::max);
        tput.push(Series {
            label: format!("disk write ceiling {c:.0} MB/s"),
            points: vec![(0.0, c), (x_max, c)],
            dashed: true,
        });
    }
    files.extend(render(
        dir,
        &format!("{name}-throughput"),
        &Chart {
            title: &format!("{name}: produce throughput vs stored data"),
            x_label: "stored (acknowledged) GB",
            y_label: "MB/s",
            log_y: false,
            series: tput,
        },
    )?);
    files.extend(render(
        dir,
        &format!("{name}-latency"),
        &Chart {
            title: &format!("{name}: produce latency vs stored data"),
            x_label: "stored (acknowledged) GB",
            y_label: "ms (log)",
            log_y: true,
            series: lat,
        },
    )?);

    if results.iter().any(|r| r.rows.iter().any(|w| w.phase == Phase::Consume)) {
        let mut cons = Vec::new();
        let mut e2e = Vec::new();
        for r in results {
            let rows = || r.rows.iter().filter(|w| w.phase == Phase::Consume && full(r, w));
            cons.push(Series {
                label: format!("{} consume MB/s", r.target.name),
                points: rows()
                    .map(|w| (w.elapsed_s, w.stats.bytes as f64 / 1e6 / w.secs))
                    .collect(),
                dashed: false,
            });
            let pts: Vec<(f64, f64)> = rows()
                .filter(|w| w.stats.latency.count > 0)
                .map(|w| (w.elapsed_s, w.stats.latency.p99_us as f64 / 1000.0))
                .collect();
            if !pts.is_empty() {
                e2e.push(Series {
                    label: format!("{} end-to-end p99", r.target.name),
                    points: pts,
                    dashed: false,
                });
            }
        }
        files.extend(render(
            dir,
            &format!("{name}-consume"),
            &Chart {
                title: &format!("{name}: consume throughput"),
                x_label: "seconds",
                y_label: "MB/s",
                log_y: false,
                series: cons,
            },
        )?);
        if !e2e.is_empty() {
            files.extend(render(
                dir,
                &format!("{name}-e2e"),
                &Chart {
                    title: &format!("{name}: end-to-end latency"),
                    x_label: "seconds",
                    y_label: "ms (log)",
                    log_y: true,
                    series: e2e,
                },
            )?);
        }
    }
    Ok(files)
}

/// Disk ceiling by block size.
pub fn disk_chart(dir: &Path, stem: &str, results: &[DiskResult]) -> Result<Vec<String>> {
    let kib = |r: &DiskResult| (r.block_size >> 10) as f64;
    render(
        dir,
        stem,
        &Chart {
            title: "disk ceiling (tokio-uring, O_DIRECT)",
            x_label: "block size KiB",
            y_label: "MB/s",
            log_y: false,
            series: vec![
                Series {
                    label: "write + fdatasync per group, overwriting".into(),
                    points: results.iter().map(|r| (kib(r), r.write_mb_s)).collect(),
                    dashed: false,
                },
                Series {
                    label: "write + fdatasync per group, new file".into(),
                    points: results.iter().map(|r| (kib(r), r.write_fresh_mb_s)).collect(),
                    dashed: true,
                },
                Series {
                    label: "read".into(),
                    points: results.iter().map(|r| (kib(r), r.read_mb_s)).collect(),
                    dashed: false,
                },
            ],
        },
    )
}
