//! The access log (`--access-log PATH`, nginx's `access_log PATH [combined|json];`): one
//! line per HTTP request and one per finished tunnel, written by each worker through its
//! own buffer.
//!
//! A worker formats lines into its [`Writer`]'s buffer (no allocation once the buffer has
//! grown) and writes the buffer with one `write(2)` at the end of a loop turn once 100 ms
//! have passed since the last write or 32 KiB are waiting (nginx's `buffer=` and `flush=`,
//! fixed; the worker's 250 ms tick ends a turn even when idle, and a stopping worker writes
//! what is left): never a write per line. The file is opened once per process with
//! `O_APPEND` (so the workers' batches never overwrite each other) and shared by every
//! worker; [`reopen`] opens the path again and moves it onto the same descriptor with
//! `dup2`, so logrotate needs no help from the workers. Off (the default) is a `None`:
//! every hook returns at its first test.
//!
//! `combined` (default), nginx's `combined` with the upstream fields after it:
//! `127.0.0.1 - - [03/Dec/2026:14:02:11 +0000] "GET /x HTTP/1.1" 200 154 "-" "curl/8.5"
//! rt=0.002 upstream="127.0.0.1:9001" urt=0.001`; a tunnel:
//! `127.0.0.1 - - [03/Dec/2026:14:02:19 +0000] "TUNNEL" 101 5120 "-" "-" rt=8.120
//! upstream="127.0.0.1:9001" up=2048 down=5120 end=client_close`.
//! `json`: one object per line with the same fields.

use std::fs::File;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// nginx's `combined`, then `rt=`, `upstream=`, `urt=` (tunnels: `up=`, `down=`, `end=`).
    Combined,
    /// One JSON object per line.
    Json,
}

impl Format {
    /// The format named `s`; the error is one line for a person.
    pub fn parse(s: &str) -> Result<Format, String> {
        match s {
            "combined" => Ok(Format::Combined),
            "json" => Ok(Format::Json),
            other => Err(format!(
                "access log format \"{other}\": ringway writes `combined` (nginx's, plus the upstream fields) or `json`; log_format is not supported"
            )),
        }
    }
}

/// Open access-log files of this process, by path (each opened once, never closed).
static FILES: Mutex<Vec<(PathBuf, &'static File)>> = Mutex::new(Vec::new());

fn open_append(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// The process's file for `path`, opened (created, appended to) on first use. The error
/// is one line for a person.
pub fn open(path: &Path) -> Result<&'static File, String> {
    let mut files = FILES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, f)) = files.iter().find(|(p, _)| p == path) {
        return Ok(f);
    }
    let f = open_append(path)
        .map_err(|e| format!("cannot open the access log {}: {e}", path.display()))?;
    let f: &'static File = Box::leak(Box::new(f));
    files.push((path.to_path_buf(), f));
    Ok(f)
}

/// Open every access log's path again and write there from now on (logrotate). Returns a
/// line per file that could not be reopened (it keeps the old file).
pub fn reopen() -> Vec<String> {
    let files = FILES.lock().unwrap_or_else(|e| e.into_inner());
    let mut errs = Vec::new();
    for (p, f) in files.iter() {
        let r = open_append(p).and_then(|new| crate::sys::dup2(new.as_raw_fd(), f.as_raw_fd()));
        if let Err(e) = r {
            errs.push(format!("cannot reopen the access log {}: {e}", p.display()));
        }
    }
    errs
}

/// Write at once when the buffer passes this.
const FLUSH_AT: usize = 64 * 1024;
/// At the end of a loop turn, write when this much is waiting…
const FLUSH_TURN: usize = 32 * 1024;
/// …or when the last write is this old (ms).
const FLUSH_MS: u64 = 100;

/// One HTTP request's line.
#[derive(Debug)]
pub struct HttpLine<'a> {
    /// Client address.
    pub remote: IpAddr,
    /// The request line as received (`-` when there was none).
    pub request: &'a [u8],
    /// Status sent (499: the client closed before a response).
    pub status: u16,
    /// Bytes sent to the client.
    pub bytes: u64,
    /// From the first byte of the request head to the end, microseconds.
    pub request_us: u64,
    /// The backend, when one was chosen.
    pub upstream: Option<SocketAddr>,
    /// From the choice of backend to the end of its response, microseconds.
    pub upstream_us: Option<u64>,
    /// The Referer header (empty: none).
    pub referer: &'a [u8],
    /// The User-Agent header (empty: none).
    pub user_agent: &'a [u8],
}

/// One finished tunnel's line.
#[derive(Debug)]
pub struct TunnelLine {
    /// Client address.
    pub remote: IpAddr,
    /// The backend.
    pub upstream: Option<SocketAddr>,
    /// How long the tunnel lived, microseconds.
    pub duration_us: u64,
    /// Bytes client → backend.
    pub up: u64,
    /// Bytes backend → client.
    pub down: u64,
    /// How it ended: client_close, backend_close, timeout, error, shutdown.
    pub end: &'static str,
}

/// A worker's access-log writer.
#[derive(Debug)]
pub struct Writer {
    file: Option<&'static File>,
    format: Format,
    buf: Vec<u8>,
    /// The formatted time of second `sec`.
    sec: u64,
    time: String,
    /// Writes that failed.
    pub errors: u64,
    /// When the buffer was last written (the worker's clock, ms).
    last: u64,
}

impl Writer {
    /// A writer that writes nothing.
    pub fn off() -> Writer {
        Writer {
            file: None,
            format: Format::Combined,
            buf: Vec::new(),
            sec: u64::MAX,
            time: String::new(),
            errors: 0,
            last: 0,
        }
    }

    /// A writer to `file` in `format`.
    pub fn new(file: &'static File, format: Format) -> Writer {
        Writer {
            file: Some(file),
            format,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            ..Writer::off()
        }
    }

    /// Whether lines are written.
    #[inline]
    pub fn on(&self) -> bool {
        self.file.is_some()
    }

    fn stamp(&mut self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if now != self.sec {
            self.sec = now;
            self.time = match self.format {
                Format::Combined => time_local(now),
                Format::Json => time_iso(now),
            };
        }
    }

    /// Add an HTTP request's line.
    pub fn http(&mut self, l: &HttpLine<'_>) {
        if !self.on() {
            return;
        }
        self.stamp();
        let b = &mut self.buf;
        match self.format {
            Format::Combined => {
                let _ = write!(b, "{} - - [{}] \"", l.remote, self.time);
                escape(
                    b,
                    if l.request.is_empty() {
                        b"-"
                    } else {
                        l.request
                    },
                );
                let _ = write!(b, "\" {} {} \"", l.status, l.bytes);
                escape(b, or_dash(l.referer));
                b.extend_from_slice(b"\" \"");
                escape(b, or_dash(l.user_agent));
                let _ = write!(b, "\" rt={} upstream=\"", Secs(l.request_us));
                let _ = match l.upstream {
                    Some(a) => write!(b, "{a}\" urt="),
                    None => write!(b, "-\" urt="),
                };
                let _ = match l.upstream_us {
                    Some(us) => write!(b, "{}", Secs(us)),
                    None => write!(b, "-"),
                };
            }
            Format::Json => {
                let _ = write!(
                    b,
                    "{{\"type\":\"http\",\"time\":\"{}\",\"remote_addr\":\"{}\",\"request\":\"",
                    self.time, l.remote
                );
                escape(b, l.request);
                let _ = write!(
                    b,
                    "\",\"status\":{},\"bytes_sent\":{},\"referer\":\"",
                    l.status, l.bytes
                );
                escape(b, l.referer);
                b.extend_from_slice(b"\",\"user_agent\":\"");
                escape(b, l.user_agent);
                let _ = write!(
                    b,
                    "\",\"request_time\":{},\"upstream_addr\":{},\"upstream_response_time\":{}}}",
                    Secs(l.request_us),
                    l.upstream.map_or("null".into(), |a| format!("\"{a}\"")),
                    l.upstream_us
                        .map_or("null".into(), |us| Secs(us).to_string())
                );
            }
        }
        b.push(b'\n');
        if b.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// Add a finished tunnel's line.
    pub fn tunnel(&mut self, l: &TunnelLine) {
        if !self.on() {
            return;
        }
        self.stamp();
        let b = &mut self.buf;
        let up = l.upstream.map_or("-".to_string(), |a| a.to_string());
        let _ = match self.format {
            Format::Combined => writeln!(
                b,
                "{} - - [{}] \"TUNNEL\" 101 {} \"-\" \"-\" rt={} upstream=\"{up}\" up={} down={} end={}",
                l.remote,
                self.time,
                l.down,
                Secs(l.duration_us),
                l.up,
                l.down,
                l.end
            ),
            Format::Json => writeln!(
                b,
                "{{\"type\":\"tunnel\",\"time\":\"{}\",\"remote_addr\":\"{}\",\"upstream_addr\":\"{up}\",\"duration\":{},\"bytes_client_to_backend\":{},\"bytes_backend_to_client\":{},\"end\":\"{}\"}}",
                self.time,
                l.remote,
                Secs(l.duration_us),
                l.up,
                l.down,
                l.end
            ),
        };
        if b.len() >= FLUSH_AT {
            self.flush();
        }
    }

    /// The end of a loop turn at worker time `now_ms`: write if enough is waiting or the
    /// last write is old enough.
    pub fn turn_end(&mut self, now_ms: u64) {
        if !self.buf.is_empty()
            && (self.buf.len() >= FLUSH_TURN || now_ms.saturating_sub(self.last) >= FLUSH_MS)
        {
            self.last = now_ms;
            self.flush();
        }
    }

    /// Write what is buffered (one `write(2)`, more only if the kernel took part of it).
    /// A failed write drops the lines and counts an error.
    pub fn flush(&mut self) {
        let Some(mut f) = self.file else { return };
        if self.buf.is_empty() {
            return;
        }
        if f.write_all(&self.buf).is_err() {
            self.errors += 1;
        }
        self.buf.clear();
    }
}

fn or_dash(s: &[u8]) -> &[u8] {
    if s.is_empty() {
        b"-"
    } else {
        s
    }
}

/// Microseconds shown as seconds with milliseconds, as nginx's `$request_time`.
struct Secs(u64);

impl std::fmt::Display for Secs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1_000_000, self.0 % 1_000_000 / 1000)
    }
}

/// Bytes as nginx escapes them in a log line: `"`, `\` and anything not printable ASCII
/// as `\xXX`.
fn escape(out: &mut Vec<u8>, s: &[u8]) {
    for &c in s {
        if c == b'"' || c == b'\\' || !(0x20..0x7f).contains(&c) {
            let _ = write!(out, "\\x{c:02X}");
        } else {
            out.push(c);
        }
    }
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `03/Dec/2026:14:02:11 +0000` (UTC), nginx's `$time_local` shape.
fn time_local(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = crate::log::civil(secs);
    format!(
        "{d:02}/{}/{y:04}:{hh:02}:{mm:02}:{ss:02} +0000",
        MONTHS[(m - 1) as usize]
    )
}

/// `2026-12-03T14:02:11Z`, nginx's `$time_iso8601` in UTC.
fn time_iso(secs: u64) -> String {
    let (y, m, d, hh, mm, ss) = crate::log::civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_escapes() {
        // 2026-12-02 15:28:14 UTC.
        assert_eq!(time_local(1_796_225_294), "02/Dec/2026:15:28:14 +0000");
        assert_eq!(time_iso(1_796_225_294), "2026-12-02T15:28:14Z");
        let mut v = Vec::new();
        escape(&mut v, b"a\"b\\c\x01");
        assert_eq!(v, b"a\\x22b\\x5Cc\\x01");
        assert_eq!(Secs(1_234_567).to_string(), "1.234");
        assert!(Format::parse("main").is_err());
    }
}
