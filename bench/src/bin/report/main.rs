//! report: summary.md and SVG plots for a results folder written by `scripts/compare.sh`.
//!
//! `report RUN_DIR` reads `RUN_DIR/meta.json`, `RUN_DIR/raw/*.json` (loadgen results named
//! `SESSION__WORKLOAD.json`, proxy facts named `SESSION.session.json`), `RUN_DIR/raw/*.mem.tsv`
//! (proxy RSS and MemFree samples) and `RUN_DIR/conf/*.conf` (the budgets), and writes
//! `RUN_DIR/summary.md` and `RUN_DIR/plots/{ramp,latency,cpu}.svg`. It only reads the raw files,
//! so it can be re-run on an old folder (e.g. after changing this report).
//!
//! Session labels: `ceiling__{ringway,nginx}` (1 worker, seed budget), `raised__{ringway,nginx}`
//! (same raised budget for both), `nginxmax__nginx` (nginx's own largest here) and
//! `perf__wW__rN__{ringway-auto,ringway-splice,ringway-copy,nginx,direct}` (repetition N of echo,
//! bulk, HTTP and the accept rate `churn-c50` at W workers; direct runs at the first count only
//! and counts at every one; folders from before the worker counts have `perf__rN__…`, read as
//! 1 worker, and render as they always did). `ringway-auto-nopin` (`--no-pin`, from
//! `compare.sh --pin-compare`) runs the echo workloads for section 9. `ringway-auto` (`--tunnel auto`, the default mode) is the first ringway row
//! and runs the `http-cN` workloads, which skip splice and copy since plain HTTP never reaches
//! the relay; runs from before it have no auto session, and their HTTP ran in ringway-splice
//! (rendered as they always were). With `compare.sh --baseline DIR` also
//! `perf__rN__{baseline-auto,baseline-splice,baseline-copy}` (an earlier build; meta.json's
//! `baseline` names it, `baseline-auto` only when it has `--tunnel auto`, and its HTTP in
//! baseline-auto, else baseline-splice): rows next to ringway's in sections 4 to 6, and
//! section 7 compares their proxy CPU. Sections 8 (accept rate), 9 (pinning) and 10 (issue 11's
//! targets, met or not) say "not measured in this run" where the folder lacks their data.
//! Section 11 is TLS: `tls__rN__{ringway,nginx,direct}` (workloads `tls-hs-full`,
//! `tls-hs-resumed`, `tls-echo64`, `tls-bulk1m`) and `tlsheld__{ringway,nginx}` (`ceiling`, with
//! memory samples); a `compare.sh --only tls` folder (meta.json `params.only`) has it alone.
//!
//! | file | job |
//! |---|---|
//! | `run.rs` | loading a results folder; budgets, repetitions, CPU per unit, labels |
//! | `sections/mod.rs` | the section order, the findings, the closing lists |
//! | `sections/provenance.rs` | title and provenance lines |
//! | `sections/ceiling.rs` | 1. ceiling at the seed budget, 2. backend distribution |
//! | `sections/raised.rs` | 3. raised ceiling and memory per tunnel |
//! | `sections/echo_bulk.rs` | 4. echo and 5. bulk: throughput, latency, CPU, per worker count |
//! | `sections/http.rs` | 6. keep-alive HTTP, per worker count |
//! | `sections/baseline.rs` | 7. before/after (`compare.sh --baseline`): CPU now vs the baseline's |
//! | `sections/accept.rs` | 8. accept rate: new tunnels/s, handshake latency, CPU per tunnel |
//! | `sections/pinning.rs` | 9. pinned vs `--no-pin` |
//! | `sections/targets.rs` | 10. issue 11's "Done means" lines, evaluated from the data |
//! | `sections/tls.rs` | 11. TLS (issue 15): negotiated, handshakes/s, wss echo and bulk, RSS per idle TLS tunnel |
//! | `plots.rs` | plots/*.svg |
//! | `paths.rs` | absolute paths of the run's machine → relative to the project |

mod paths;
mod plots;
mod run;
mod sections;

use std::path::PathBuf;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 1 || args[0].starts_with('-') {
        eprintln!("usage: report RUN_DIR   (a folder written by scripts/compare.sh)");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[0]);
    let run = match run::load(&dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("report: {e}");
            std::process::exit(1);
        }
    };
    let md = paths::relative(&sections::summary(&run), &dir);
    let path = dir.join("summary.md");
    if let Err(e) = std::fs::write(&path, md) {
        eprintln!("report: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    let plots = dir.join("plots");
    let _ = std::fs::create_dir_all(&plots);
    for (name, res) in [
        ("ramp.svg", plots::plot_ramp(&run, &plots.join("ramp.svg"))),
        (
            "latency.svg",
            plots::plot_latency(&run, &plots.join("latency.svg")),
        ),
        ("cpu.svg", plots::plot_cpu(&run, &plots.join("cpu.svg"))),
    ] {
        if let Err(e) = res {
            eprintln!("report: plot {name}: {e}");
        }
    }
    eprintln!(
        "report: wrote {} and {}/*.svg",
        path.display(),
        plots.display()
    );
}
