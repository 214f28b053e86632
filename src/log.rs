//! Log lines in nginx's error-log shape, on stderr:
//! `2026/12/02 15:28:14 [error] ringway[w0]: upstream 127.0.0.1:9001: connect timed out; answering 504, client: 127.0.0.1`.
//!
//! The time is UTC (nginx writes local time; a proxy's logs are read next to other
//! machines', so ringway writes the one zone every machine agrees on). Levels follow
//! nginx's use: what a client did wrong is `info`, what a backend did is `error`, a full
//! budget is `alert` (nginx: "worker_connections are not enough"), start-up remarks are
//! `notice`. One `write` per line, so lines from different threads never interleave.

use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

/// How serious a line is (nginx's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Something is exhausted (descriptors, the budget).
    Alert,
    /// A backend failed, or ringway itself did.
    Error,
    /// Worth knowing, not a failure.
    Warn,
    /// A start-up remark.
    Notice,
    /// A client's own doing (a bad request, a timeout).
    Info,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Alert => "alert",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Notice => "notice",
            Level::Info => "info",
        }
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
