//! plots/ceiling-memory.svg: proxy RSS growth and box MemFree drop against tunnels connected
//! (top) and against time (bottom).

use plotters::prelude::*;
use ringway_bench::fmt::fmt_num;
use ringway_bench::plot::{draw_legend, PlotResult};
use std::path::Path;

use crate::proxy::{Proxy, Sample, MIB};

fn color(p: &str) -> RGBColor {
    match p {
        "ringway" => RGBColor(31, 119, 180),
        _ => RGBColor(44, 160, 44),
    }
}

pub fn plot(proxies: &[Proxy], path: &Path) -> PlotResult {
    let root = SVGBackend::new(path, (960, 820)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(410);
    // Top: against tunnels connected (ramp and hold, while loadgen's series covers it).
    struct Line {
        label: String,
        col: RGBColor,
        dashed: bool,
        pts: Vec<(f64, f64)>,
    }
    let mut by_tunnels: Vec<Line> = Vec::new();
    let mut by_time: Vec<Line> = Vec::new();
    for p in proxies {
        let (Some(m), Some(t0)) = (p.mem_stats(), p.t0()) else {
            continue;
        };
        let col = color(p.name);
        let mut rss = Vec::new();
        let mut drop = Vec::new();
        for s in &p.mem {
            if let Some(c) = p.connected_at(s.t_ms).filter(|_| s.t_ms >= t0) {
                rss.push((c, (s.rss_kb - m.before.rss_kb) / MIB));
                drop.push((c, (m.before.free_kb - s.free_kb) / MIB));
            }
        }
        by_tunnels.push(Line {
            label: format!("{}: proxy RSS growth", p.name),
            col,
            dashed: false,
            pts: rss,
        });
        by_tunnels.push(Line {
            label: format!("{}: MemFree drop (box)", p.name),
            col,
            dashed: true,
            pts: drop,
        });
        let tt = |s: &Sample| (s.t_ms - t0) / 1000.0;
        by_time.push(Line {
            label: format!("{}: proxy RSS growth", p.name),
            col,
            dashed: false,
            pts: p
                .mem
                .iter()
                .map(|s| (tt(s), (s.rss_kb - m.before.rss_kb) / MIB))
                .collect(),
        });
        by_time.push(Line {
            label: format!("{}: MemFree drop (box)", p.name),
            col,
            dashed: true,
            pts: p
                .mem
                .iter()
                .map(|s| (tt(s), (m.before.free_kb - s.free_kb) / MIB))
                .collect(),
        });
    }
    let draw = |area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
                lines: &[Line],
                caption: &str,
                xdesc: &str,
                tunnels: bool|
     -> PlotResult {
        let xs = lines.iter().flat_map(|l| l.pts.iter().map(|p| p.0));
        let xmin = xs.clone().fold(0.0, f64::min);
        let xmax = xs.fold(1.0, f64::max);
        let ys = lines.iter().flat_map(|l| l.pts.iter().map(|p| p.1));
        let ymin = ys.clone().fold(0.0, f64::min);
        let ymax = ys.fold(1.0, f64::max);
        let mut c = ChartBuilder::on(area)
            .caption(caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(70)
            .build_cartesian_2d(xmin..xmax * 1.02, ymin.min(0.0)..ymax * 1.08)?;
        c.configure_mesh()
            .x_desc(xdesc)
            .y_desc("MiB")
            .x_label_formatter(&|x| {
                if tunnels {
                    fmt_num(x.round())
                } else {
                    format!("{x:.0}")
                }
            })
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for l in lines {
            let col = l.col;
            let style = col.stroke_width(2);
            if l.dashed {
                c.draw_series(DashedLineSeries::new(l.pts.clone(), 6, 4, style))?
                    .label(l.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 8, y)], col.stroke_width(2))
                    });
            } else {
                c.draw_series(LineSeries::new(l.pts.clone(), style))?
                    .label(l.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                    });
            }
        }
        draw_legend(&mut c, SeriesLabelPosition::UpperLeft)?;
        Ok(())
    };
    draw(
        &top,
        &by_tunnels,
        "Memory against tunnels connected (ramp and hold)",
        "tunnels connected (loadgen)",
        true,
    )?;
    draw(
        &bottom,
        &by_time,
        "Memory over the run (dashed: box MemFree drop; solid: proxy tree RSS growth)",
        "time since loadgen start (s)",
        false,
    )?;
    root.present()?;
    Ok(())
}
