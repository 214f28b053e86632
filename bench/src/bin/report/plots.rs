//! plots/*.svg of a compare.sh run: the raised-ceiling ramp with proxy RSS (`ramp.svg`), echo
//! latency percentiles (`latency.svg`) and proxy CPU per message and per MB (`cpu.svg`); the
//! last two have one row of panels per worker count when the run has several.

use plotters::prelude::*;
use ringway_bench::fmt::fmt_num;
use ringway_bench::json::num;
use ringway_bench::plot::{draw_legend, PlotResult};
use ringway_bench::stats::median_of;
use std::path::Path;

use crate::run::{proxy_cpu, target_label, workers_word, Run, BULK_WL, ECHO_WL, RINGWAY_AUTO};

/// The panels' worker counts, row by row, and the caption suffix for each (none at 1 worker
/// only, as before the worker counts).
fn worker_rows(run: &Run) -> Vec<(u64, String)> {
    let multi = run.multi_workers();
    run.workers()
        .into_iter()
        .map(|w| {
            let s = if multi {
                format!(", {}", workers_word(w))
            } else {
                String::new()
            };
            (w, s)
        })
        .collect()
}

fn color(t: &str) -> RGBColor {
    match t {
        RINGWAY_AUTO => RGBColor(255, 127, 14),
        "ringway-splice" | "raised__ringway" => RGBColor(31, 119, 180),
        "ringway-copy" => RGBColor(23, 190, 207),
        "nginx" | "raised__nginx" => RGBColor(44, 160, 44),
        "nginxmax__nginx" => RGBColor(214, 39, 40),
        _ => RGBColor(127, 127, 127),
    }
}

pub fn plot_ramp(run: &Run, path: &Path) -> PlotResult {
    let sets: Vec<(&str, String)> = [
        ("raised__ringway", "ringway"),
        ("raised__nginx", "nginx, same budget"),
        ("nginxmax__nginx", "nginx, its largest"),
    ]
    .iter()
    .filter_map(|(s, l)| {
        let b = run
            .budget(s)
            .map(|(w, wc, e)| format!(" ({w} × {wc} → {})", fmt_num(e as f64)))
            .unwrap_or_default();
        run.result(s, "ceiling").map(|_| (*s, format!("{l}{b}")))
    })
    .collect();
    let root = SVGBackend::new(path, (900, 760)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(400);
    let series = |s: &str| -> Vec<(f64, f64)> {
        run.result(s, "ceiling")
            .and_then(|r| r.get("series")?.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| Some((p.get(0)?.as_f64()? / 1000.0, p.get(1)?.as_f64()?)))
            .collect()
    };
    let tmax = sets
        .iter()
        .flat_map(|(s, _)| series(s))
        .map(|p| p.0)
        .fold(1.0, f64::max);
    let cmax = sets
        .iter()
        .flat_map(|(s, _)| series(s))
        .map(|p| p.1)
        .fold(1.0, f64::max);
    let mut c = ChartBuilder::on(&top)
        .caption(
            "Tunnels held during the ramp and hold (loadgen ceiling)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..tmax * 1.02, 0f64..cmax * 1.08)?;
    c.configure_mesh()
        .x_desc("time since loadgen start (s)")
        .y_desc("tunnels connected")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| fmt_num(y.round()))
        .draw()?;
    for (s, label) in &sets {
        let col = color(s);
        c.draw_series(LineSeries::new(series(s), col.stroke_width(2)))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
    }
    draw_legend(&mut c, SeriesLabelPosition::LowerRight)?;

    // RSS over the same time axis.
    let mem = |s: &str| -> Vec<(f64, f64)> {
        let t0 = run
            .sessions
            .get(s)
            .and_then(|v| num(v, "loadgen_t0_ms"))
            .unwrap_or(0.0);
        run.mem
            .get(s)
            .map(|v| {
                v.iter()
                    .map(|x| ((x.0 - t0) / 1000.0, x.1 / 1024.0))
                    .collect()
            })
            .unwrap_or_default()
    };
    let tmin = sets
        .iter()
        .flat_map(|(s, _)| mem(s))
        .map(|p| p.0)
        .fold(0.0, f64::min);
    let tmax2 = sets
        .iter()
        .flat_map(|(s, _)| mem(s))
        .map(|p| p.0)
        .fold(tmax, f64::max);
    let rmax = sets
        .iter()
        .flat_map(|(s, _)| mem(s))
        .map(|p| p.1)
        .fold(1.0, f64::max);
    let mut c = ChartBuilder::on(&bottom)
        .caption("Proxy RSS (nginx: master + workers)", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(tmin..tmax2 * 1.02, 0f64..rmax * 1.1)?;
    c.configure_mesh()
        .x_desc("time since loadgen start (s)")
        .y_desc("RSS (MiB)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (s, label) in &sets {
        let col = color(s);
        c.draw_series(LineSeries::new(mem(s), col.stroke_width(2)))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2)));
    }
    draw_legend(&mut c, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

pub fn plot_latency(run: &Run, path: &Path) -> PlotResult {
    const PCT: [(&str, &str); 4] = [
        ("p50", "p50"),
        ("p90", "p90"),
        ("p99", "p99"),
        ("p999", "p99.9"),
    ];
    let rows = worker_rows(run);
    let root = SVGBackend::new(path, (1000, 440 * rows.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((rows.len(), 2));
    let cells = rows
        .iter()
        .flat_map(|(w, sfx)| ECHO_WL.into_iter().map(move |wl| (*w, sfx.as_str(), wl)));
    for (panel, (w, sfx, wl)) in panels.iter().zip(cells) {
        let lines: Vec<(&str, Vec<(f64, f64)>)> = run
            .plot_targets()
            .into_iter()
            .map(|t| {
                let pts = PCT
                    .iter()
                    .enumerate()
                    .filter_map(|(i, (k, _))| {
                        let path = format!("latency_us.{k}");
                        median_of(run.metric(t, wl, w, |v| num(v, &path))).map(|y| (i as f64, y))
                    })
                    .collect();
                (t, pts)
            })
            .collect();
        let ys = lines.iter().flat_map(|l| l.1.iter().map(|p| p.1));
        let ymax = ys.clone().fold(1.0, f64::max) * 1.5;
        // No data (a target that did not run): any range; clamp needs min <= max.
        let ymin = ys
            .fold(f64::INFINITY, f64::min)
            .clamp(1.0, (ymax / 10.0).max(1.0))
            / 1.5;
        let conns = wl.rsplit_once("-c").map(|x| x.1).unwrap_or("?");
        let mut c = ChartBuilder::on(panel)
            .caption(
                format!("Echo 64 B latency, {conns} connections{sfx} (median of reps)"),
                ("sans-serif", 16),
            )
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.2f64..3.2f64, (ymin..ymax).log_scale())?;
        c.configure_mesh()
            .x_labels(4)
            .x_label_formatter(&|x| {
                let i = x.round() as usize;
                if (x - x.round()).abs() < 0.05 && i < PCT.len() {
                    PCT[i].1.to_string()
                } else {
                    String::new()
                }
            })
            .y_desc("latency (µs, log)")
            .y_label_formatter(&|y| fmt_num(*y))
            .draw()?;
        for (t, pts) in lines {
            let col = color(t);
            c.draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))?
                .label(target_label(t))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
            c.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, col.filled())))?;
        }
        draw_legend(&mut c, SeriesLabelPosition::UpperLeft)?;
    }
    root.present()?;
    Ok(())
}

pub fn plot_cpu(run: &Run, path: &Path) -> PlotResult {
    let rows = worker_rows(run);
    let root = SVGBackend::new(path, (1000, 440 * rows.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let panels = root.split_evenly((rows.len(), 2));
    let specs: [(&str, [&str; 2], &str, &str); 2] = [
        (
            "Proxy CPU per echoed 64 B message",
            ECHO_WL,
            "tree_cpu_us_per_msg",
            "µs per message",
        ),
        (
            "Proxy CPU per MB, bulk 1 MiB messages",
            BULK_WL,
            "tree_cpu_ms_per_mb",
            "ms per MB",
        ),
    ];
    // ringway's modes (auto first when the run has it), then nginx: one bar each per group.
    let mut proxies = Vec::new();
    if run.has_auto() {
        proxies.push(RINGWAY_AUTO);
    }
    proxies.extend(["ringway-splice", "ringway-copy", "nginx"]);
    let cells = rows
        .iter()
        .flat_map(|(w, sfx)| specs.into_iter().map(move |sp| (*w, sfx.as_str(), sp)));
    for (panel, (w, sfx, (title, wls, field, unit))) in panels.iter().zip(cells) {
        let mut bars = Vec::new();
        for (g, wl) in wls.iter().enumerate() {
            for (j, t) in proxies.iter().enumerate() {
                if let Some(s) = run.metric(t, wl, w, |v| proxy_cpu(v, t, field)) {
                    bars.push((g, j, *t, s));
                }
            }
        }
        let ymax = bars.iter().map(|b| b.3.max).fold(0.001, f64::max) * 1.15;
        let mut c = ChartBuilder::on(panel)
            .caption(format!("{title}{sfx}"), ("sans-serif", 16))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5f64..1.5f64, 0f64..ymax)?;
        let names: Vec<String> = wls
            .iter()
            .map(|w| {
                let c = w.rsplit_once("-c").map(|x| x.1).unwrap_or("?");
                format!("{c} conn{}", if c == "1" { "" } else { "s" })
            })
            .collect();
        c.configure_mesh()
            .disable_x_mesh()
            .x_labels(2)
            .x_label_formatter(&|x| {
                let i = x.round() as usize;
                if (x - x.round()).abs() < 0.05 && i < names.len() {
                    names[i].clone()
                } else {
                    String::new()
                }
            })
            .y_desc(unit)
            .y_label_formatter(&|y| fmt_num(*y))
            .draw()?;
        // Three quarters of each group's width, split between the proxies (0.25 each for three).
        let n = proxies.len() as f64;
        let w = 0.75 / n;
        for (j, t) in proxies.iter().enumerate() {
            let col = color(t);
            let mine: Vec<_> = bars.iter().filter(|b| b.1 == j).collect();
            let x0 = |g: usize| g as f64 - n / 2.0 * w + j as f64 * w;
            c.draw_series(mine.iter().map(|b| {
                Rectangle::new(
                    [(x0(b.0) + 0.02, 0.0), (x0(b.0) + w - 0.02, b.3.med)],
                    col.filled(),
                )
            }))?
            .label(target_label(t))
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], col.filled()));
            // min–max whisker
            c.draw_series(mine.iter().filter(|b| b.3.n > 1).map(|b| {
                let xm = x0(b.0) + w / 2.0;
                PathElement::new(vec![(xm, b.3.min), (xm, b.3.max)], BLACK.stroke_width(1))
            }))?;
        }
        draw_legend(&mut c, SeriesLabelPosition::UpperLeft)?;
    }
    root.present()?;
    Ok(())
}
