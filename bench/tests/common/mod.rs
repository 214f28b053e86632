//! Shared by the bench crate's test binaries: a `wsecho` process on port 0 (killed by pid
//! when dropped), `loadgen` runs, and their one-JSON-line results.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

use serde_json::Value;

/// A wsecho process, killed (by pid) when dropped.
pub struct Echo {
    pub child: Child,
    pub port: u16,
}

impl Echo {
    pub fn start(extra: &[&str]) -> Echo {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wsecho"))
            .args(["--port", "0", "--lifetime", "60"])
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("start wsecho");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read listening line");
        let addr = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        Echo { child, port }
    }

    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn loadgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadgen"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run loadgen")
}

/// The last stdout line as JSON, whatever the exit status (`--strict` prints it before
/// exiting 3).
pub fn json_line(o: &Output) -> Option<Value> {
    let stdout = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(stdout.lines().last()?).ok()
}

/// Parses the last stdout line as JSON, after checking the exit status.
pub fn last_json(o: &Output) -> Value {
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "loadgen failed: {:?}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    let line = stdout.lines().last().expect("some stdout");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {line}"))
}
