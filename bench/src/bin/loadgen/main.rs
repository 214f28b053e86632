//! loadgen: WebSocket and HTTP load generator for ringway benchmarks (loopback targets only).
//!
//! Subcommands: `ceiling` (how many connections can be held), `echo` (closed-loop small messages:
//! rate, latency, CPU per message), `bulk` (large messages: MB/s, CPU per MB), `churn` (connect,
//! echo once, close: tunnels per second), `http` (closed-loop keep-alive GETs: requests/s,
//! latency, reconnects, CPU per request), `handshake` (TLS handshakes per second, full or
//! resumed, CPU per handshake), `hostile` (bad clients of many kinds, each checked for a clear
//! status or a clean close); each but `hostile` speaks TLS with `--tls` (wss://, https://) and then adds a
//! `tls` object (what was negotiated) to its JSON. Each prints a human summary on stderr and one
//! JSON object as the last stdout line. Exit 0 when the run completed (failed connections are
//! data; with `--strict` they exit 3), 2 on usage errors (including a non-loopback target), 1 on
//! internal errors.
//! `gen-cert` writes a test CA and leaf certificates (PEM) for the TLS runs.

mod bulk;
mod ceiling;
mod churn;
mod common;
mod echo;
mod gen_cert;
mod handshake;
mod hostile;
mod http;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "WebSocket and HTTP load generator for ringway benchmarks (127.0.0.0/8 only)"
)]
struct Cli {
    /// Exit 3 when the run saw any failure: a connection that failed to open, an error or
    /// stall on an open one, a hostile client answered wrongly (the JSON is printed first).
    #[arg(long, global = true)]
    strict: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Ramp N connections at R/s, hold them, then probe each with an echo.
    Ceiling(ceiling::Args),
    /// Closed-loop echo of B-byte binary messages over C connections.
    Echo(echo::Args),
    /// Large binary messages echoed with a few in flight per connection: MB/s each way.
    Bulk(bulk::Args),
    /// Workers that connect, read the banner, echo once and close, K times each.
    Churn(churn::Args),
    /// Closed-loop keep-alive HTTP GETs over C connections (K pipelined): requests/s.
    Http(http::Args),
    /// TLS handshakes per second (full or resumed) from C workers, CPU per handshake.
    Handshake(handshake::Args),
    /// Hostile clients in turn (garbage, oversized and stalled heads, resets, half-closes, ...):
    /// each must get a clear status or a clean close.
    Hostile(hostile::Args),
    /// Writes a test CA and leaf certificates (ECDSA P-256, PEM) into a folder.
    GenCert(gen_cert::Args),
}

/// Everything in a result that went wrong: failures to open, errors and stalls on open
/// connections (churn: also outside its window), unexpected answers to hostile clients.
fn trouble(json: &serde_json::Value) -> u64 {
    use ringway_bench::fmt::failures_total;
    let n = |k: &str| json.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    failures_total(json.get("failed"))
        + failures_total(json.get("errors"))
        + n("stalled")
        + n("failed_outside_window")
        + n("unexpected")
}

fn main() {
    let cli = Cli::parse();
    ringway_bench::net::raise_nofile();
    let result = match cli.cmd {
        Cmd::Ceiling(a) => ceiling::run(a),
        Cmd::Echo(a) => echo::run(a),
        Cmd::Bulk(a) => bulk::run(a),
        Cmd::Churn(a) => churn::run(a),
        Cmd::Http(a) => http::run(a),
        Cmd::Handshake(a) => handshake::run(a),
        Cmd::Hostile(a) => hostile::run(a),
        Cmd::GenCert(a) => gen_cert::run(a),
    };
    match result {
        Ok(mut json) => {
            let tls_on = json.pointer("/params/tls").and_then(|v| v.as_bool()) == Some(true)
                || json["subcommand"] == "handshake";
            if let (true, Some(o)) = (tls_on, json.as_object_mut()) {
                o.insert("tls".into(), common::tls_json());
            }
            common::emit_json(&json);
            let trouble = trouble(&json);
            if cli.strict && trouble > 0 {
                eprintln!("loadgen: --strict: {trouble} failures, errors or unexpected answers");
                std::process::exit(3);
            }
        }
        Err(common::RunError::Usage(m)) => {
            eprintln!("loadgen: {m}");
            std::process::exit(2);
        }
        Err(common::RunError::Internal(m)) => {
            eprintln!("loadgen: internal error: {m}");
            std::process::exit(1);
        }
    }
}
