//! `loadgen gen-cert --out DIR [--names localhost,a.test+www.a.test,b.test]`: a fresh test CA
//! (ECDSA P-256) and one leaf per comma-separated entry (`+` joins the names of one leaf),
//! written as `ca.pem`, `<first name>.pem` (leaf + CA) and `<first name>.key` (PKCS#8, 0600).
//! See `ringway_bench::certs`.

use std::path::PathBuf;

use ringway_bench::certs;
use serde::Serialize;
use serde_json::{json, Value};

use crate::common::RunError;

/// `loadgen gen-cert` options.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    /// Folder to write into (created if missing; files of the same names are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Leaves: comma-separated entries, each one leaf; `+` joins several names in one leaf.
    #[arg(long, default_value = "localhost")]
    pub names: String,
}

pub fn run(a: Args) -> Result<Value, RunError> {
    let sets = certs::parse_name_sets(&a.names);
    let w = certs::generate(&a.out, &sets).map_err(|e| {
        if e.starts_with("--names") {
            RunError::Usage(e)
        } else {
            RunError::Internal(e)
        }
    })?;
    eprintln!("gen-cert: CA {}", w.ca.display());
    let leaves: Vec<Value> = w
        .leaves
        .iter()
        .map(|l| {
            eprintln!(
                "  {}: {} + {}",
                l.names.join(", "),
                l.cert.display(),
                l.key.display()
            );
            json!({"names": l.names, "cert": l.cert, "key": l.key})
        })
        .collect();
    Ok(json!({"subcommand": "gen-cert", "params": a, "ca": w.ca, "leaves": leaves}))
}
