//! ceiling_report: summary.md and an SVG plot for a results folder written by
//! `scripts/ceiling.sh`.
//!
//! `ceiling_report RUN_DIR` reads `meta.json`, `raw/{ringway,nginx}.{session,loadgen}.json`,
//! `raw/{ringway,nginx}.mem.tsv` (1-second samples of the proxy tree's RSS and the box's
//! MemFree, Slab, SUnreclaim and TCP sockets), `logs/ringway.err` (ringway's own stats lines)
//! and `logs/nginx.error.log`, `explain/*.txt`, and writes `summary.md` and
//! `plots/ceiling-memory.svg` (proxy RSS and MemFree drop against tunnels connected, and
//! against time). It only reads files, so it can be re-run on an old folder.
//!
//! Figures: "before" = mean of the samples before loadgen started; "held" = median of the
//! samples from 2 s after the ramp settled to the end of the hold (or the extreme sample when
//! the run was cut short). Per tunnel = (held − before) / tunnels held (loadgen `ok`).
//!
//! | file | job |
//! |---|---|
//! | `proxy.rs` | one proxy's run: loading its files, before/held memory figures, its own counts |
//! | `summary.rs` | summary.md: the per-proxy table, what bounds it, explain, problems |
//! | `plot.rs` | plots/ceiling-memory.svg |
//! | `../report/paths.rs` | absolute paths of the run's machine → relative to the project |

#[path = "../report/paths.rs"]
mod paths;
mod plot;
mod proxy;
mod summary;

use ringway_bench::json;
use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 1 || args[0].starts_with('-') {
        eprintln!("usage: ceiling_report RUN_DIR   (a folder written by scripts/ceiling.sh)");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[0]);
    let meta = json::read(&dir.join("meta.json")).ok();
    let proxies = proxy::load(&dir);
    if proxies.is_empty() {
        eprintln!(
            "ceiling_report: no raw/{{ringway,nginx}}.session.json in {}",
            dir.display()
        );
        std::process::exit(1);
    }
    let (md, problems) = summary::summary(&dir, meta.as_ref(), &proxies);
    let md = paths::relative(&md, &dir);
    let path = dir.join("summary.md");
    if let Err(e) = std::fs::write(&path, &md) {
        eprintln!("ceiling_report: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    let plots = dir.join("plots");
    let _ = std::fs::create_dir_all(&plots);
    if let Err(e) = plot::plot(&proxies, &plots.join("ceiling-memory.svg")) {
        eprintln!("ceiling_report: plot: {e}");
    }
    for p in &problems {
        eprintln!("ceiling_report: problem: {p}");
    }
    eprintln!(
        "ceiling_report: wrote {} and {}/ceiling-memory.svg",
        path.display(),
        plots.display()
    );
}
