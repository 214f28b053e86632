//! Log lines in nginx's error-log shape, on stderr:
//! `2026/12/02 15:28:14 [error] ringway[w0]: upstream 127.0.0.1:9001: connect timed out; answering 504, client: 127.0.0.1`.
//!
//! The time is UTC (nginx writes local time; a proxy's logs are read next to other
//! machines', so ringway writes the one zone every machine agrees on). Levels follow
//! nginx's use: what a client did wrong is `info`, what a backend did is `error`, a full
//! budget is `alert` (nginx: "worker_connections are not enough"), start-up remarks are
//! `notice`. One `write` per line, so lines from different threads never interleave.
//!
//! The error log (`--error-log PATH`, nginx's `error_log PATH LEVEL;`): once started,
//! ringway points its stderr at the file (so every line, the stats included, lands there),
//! and lines below the level are not written (nginx's default level for a file is
//! `error`; without a file every line goes to stderr, as before). [`reopen`] opens the
//! path again and moves the new file onto the same descriptor (`dup2`), which is atomic
//! for every thread writing: logrotate moves the file, `ringway -s reopen` follows.

use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// How serious a line is (nginx's names, least serious first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Detail for a developer.
    Debug,
    /// A client's own doing (a bad request, a timeout).
    Info,
    /// A start-up remark, a signal.
    Notice,
    /// Worth knowing, not a failure.
    Warn,
    /// A backend failed, or ringway itself did.
    Error,
    /// A critical condition.
    Crit,
    /// Something is exhausted (descriptors, the budget).
    Alert,
    /// The proxy cannot go on.
    Emerg,
}

/// Every level, least serious first.
pub const LEVELS: [Level; 8] = [
    Level::Debug,
    Level::Info,
    Level::Notice,
    Level::Warn,
    Level::Error,
    Level::Crit,
    Level::Alert,
    Level::Emerg,
];

impl Level {
    /// nginx's name of the level.
    pub fn name(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Notice => "notice",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Crit => "crit",
            Level::Alert => "alert",
            Level::Emerg => "emerg",
        }
    }

    /// The level named `s` (nginx's names); the error is one line for a person.
    pub fn parse(s: &str) -> Result<Level, String> {
        LEVELS.iter().copied().find(|l| l.name() == s).ok_or_else(|| {
            format!("unknown error log level \"{s}\": write debug, info, notice, warn, error, crit, alert or emerg")
        })
    }
}

/// Lines below this level are not written (index into [`LEVELS`]).
static MIN: AtomicU8 = AtomicU8::new(0);
/// The error log's path, once stderr points at it.
static PATH: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Write only lines at `level` or above.
pub fn set_level(level: Level) {
    MIN.store(level as u8, Ordering::Relaxed);
}

/// Whether a line at `level` would be written.
pub fn enabled(level: Level) -> bool {
    level as u8 >= MIN.load(Ordering::Relaxed)
}

fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
}

/// Point stderr at the error log `path` (created, appended to). The error is one line
/// for a person.
pub fn to_file(path: &Path) -> Result<(), String> {
    use std::os::fd::AsRawFd;
    let f = open_append(path)
        .map_err(|e| format!("cannot open the error log {}: {e}", path.display()))?;
    crate::sys::dup2(f.as_raw_fd(), libc::STDERR_FILENO)
        .map_err(|e| format!("cannot use the error log {}: {e}", path.display()))?;
    *PATH.lock().unwrap_or_else(|e| e.into_inner()) = Some(path.to_path_buf());
    Ok(())
}

/// Open the error log's path again (after logrotate moved the file) and write there from
/// now on. Without an error log file there is nothing to do.
pub fn reopen() -> Result<(), String> {
    let path = PATH.lock().unwrap_or_else(|e| e.into_inner()).clone();
    match path {
        Some(p) => to_file(&p),
        None => Ok(()),
    }
}

/// Who writes the line: the process (master, start-up) or worker `N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Who {
    /// The process.
    Process,
    /// A worker.
    Worker(usize),
}

/// Write one line.
pub fn write(level: Level, who: Who, client: Option<IpAddr>, msg: fmt::Arguments<'_>) {
    if !enabled(level) {
        return;
    }
    let line = format_line(SystemTime::now(), level, who, client, msg);
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// The line `write` writes at time `now` (tests).
pub fn format_line(
    now: SystemTime,
    level: Level,
    who: Who,
    client: Option<IpAddr>,
    msg: fmt::Arguments<'_>,
) -> String {
    use fmt::Write as _;
    let mut s = String::with_capacity(128);
    let _ = write!(s, "{} [{}] ", timestamp(now), level.name());
    let _ = match who {
        Who::Process => write!(s, "ringway: "),
        Who::Worker(i) => write!(s, "ringway[w{i}]: "),
    };
    let _ = s.write_fmt(msg);
    if let Some(c) = client {
        let _ = write!(s, ", client: {c}");
    }
    s.push('\n');
    s
}

/// Seconds since the epoch → (year, month, day, hour, minute, second), UTC.
pub fn civil(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    (y, m, d, rem / 3600, rem % 3600 / 60, rem % 60)
}

/// `YYYY/MM/DD HH:MM:SS` (UTC), nginx's error-log time format.
fn timestamp(now: SystemTime) -> String {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}/{m:02}/{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's
/// algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lines_have_nginx_error_log_shape() {
        // 2026-12-02 15:28:14 UTC.
        let t = UNIX_EPOCH + Duration::from_secs(1_796_225_294);
        let l = format_line(
            t,
            Level::Info,
            Who::Worker(1),
            Some("10.0.0.7".parse().unwrap()),
            format_args!("request head timeout, closing"),
        );
        assert_eq!(
            l,
            "2026/12/02 15:28:14 [info] ringway[w1]: request head timeout, closing, client: 10.0.0.7\n"
        );
        let l = format_line(
            UNIX_EPOCH,
            Level::Alert,
            Who::Process,
            None,
            format_args!("x"),
        );
        assert_eq!(l, "1970/01/01 00:00:00 [alert] ringway: x\n");
        // Leap day and year ends.
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }
}
