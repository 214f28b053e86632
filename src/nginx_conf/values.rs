//! nginx value syntax: plain numbers, sizes (`16k`), times (`1m30s`) and `host:port`
//! addresses, normalized.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Plain decimal digits only (no sign, no spaces), overflow-checked.
pub(super) fn parse_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| {
        acc.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// nginx size syntax: `N`, `Nk`/`NK`, `Nm`/`NM`, `Ng`/`NG` (powers of 1024), in bytes.
pub(super) fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1u64 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1u64 << 30),
        _ => (s, 1),
    };
    parse_u64(num)?.checked_mul(mult)
}

/// nginx time syntax in milliseconds: `500ms`, `10s`, `5m`, `1h`, `1d`, `1w`, `1M` (30 days),
/// `1y` (365 days), combinable in decreasing order (`1h 30m`, `1m30s`); a plain number (or a
/// trailing plain number) means seconds.
pub(super) fn parse_time_ms(s: &str) -> Option<u64> {
    const SEC: u64 = 1000;
    let b = s.as_bytes();
    let mut i = 0;
    let mut total = 0u64;
    let mut last_rank = u8::MAX;
    let mut any = false;
    loop {
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let value = parse_u64(s.get(start..i)?)?;
        let (mult, rank, len) = match (b.get(i), b.get(i + 1)) {
            (Some(b'm'), Some(b's')) => (1, 1, 2),
            (Some(b'y'), _) => (365 * 86_400 * SEC, 9, 1),
            (Some(b'M'), _) => (30 * 86_400 * SEC, 8, 1),
            (Some(b'w'), _) => (7 * 86_400 * SEC, 7, 1),
            (Some(b'd'), _) => (86_400 * SEC, 6, 1),
            (Some(b'h'), _) => (3_600 * SEC, 5, 1),
            (Some(b'm'), _) => (60 * SEC, 4, 1),
            (Some(b's'), _) => (SEC, 3, 1),
            (None | Some(b' '), _) => (SEC, 2, 0),
            _ => return None,
        };
        if rank >= last_rank || (rank == 2 && last_rank <= 3) {
            return None;
        }
        last_rank = rank;
        total = total.checked_add(value.checked_mul(mult)?)?;
        i += len;
        any = true;
    }
    any.then_some(total)
}

/// Parses `host:port`, `[v6]:port`, `host`, or (when `default_host` is given, i.e. for
/// `listen`) a bare `port`, returning the normalized `host:port`.
pub(super) fn parse_host_port(
    s: &str,
    default_host: Option<&str>,
    default_port: Option<u16>,
) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty address".to_string());
    }
    if s.starts_with("unix:") {
        return Err(format!(
            "\"{s}\": unix domain sockets are not supported, use host:port"
        ));
    }
    let digits = s.bytes().all(|b| b.is_ascii_digit());
    let (host, port): (String, Option<&str>) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return Err(format!("\"{s}\": missing \"]\" in IPv6 address"));
        };
        let ip: Ipv6Addr = h
            .parse()
            .map_err(|_| format!("\"{s}\": invalid IPv6 address"))?;
        let port = if after.is_empty() {
            None
        } else if let Some(p) = after.strip_prefix(':') {
            Some(p)
        } else {
            return Err(format!("\"{s}\": unexpected text after \"]\""));
        };
        (format!("[{ip}]"), port)
    } else if digits {
        match default_host {
            Some(h) => (h.to_string(), Some(s)),
            None => return Err(format!("\"{s}\": missing host (write 127.0.0.1:{s})")),
        }
    } else if let Some((h, p)) = s.rsplit_once(':') {
        if h.contains(':') {
            return Err(format!(
                "\"{s}\": IPv6 addresses must be written in brackets, e.g. [::1]:8080"
            ));
        }
        (h.to_string(), Some(p))
    } else {
        (s.to_string(), None)
    };
    let host = if host == "*" {
        match default_host {
            Some(h) => h.to_string(),
            None => return Err(format!("\"{s}\": \"*\" is only allowed in listen")),
        }
    } else {
        host
    };
    if !host.starts_with('[') {
        if host.is_empty() {
            return Err(format!("\"{s}\": missing host"));
        }
        let ipv4_like = host.bytes().all(|b| b.is_ascii_digit() || b == b'.');
        if ipv4_like && host.parse::<Ipv4Addr>().is_err() {
            return Err(format!("\"{s}\": invalid IPv4 address"));
        }
        let name_ok = host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
        if !name_ok {
            return Err(format!("\"{s}\": invalid host \"{host}\""));
        }
    }
    let port = match port {
        Some(p) => match parse_u64(p) {
            Some(n @ 1..=65535) => n,
            _ => return Err(format!("\"{s}\": invalid port \"{p}\"")),
        },
        None => match default_port {
            Some(p) => u64::from(p),
            None => return Err(format!("\"{s}\": missing port")),
        },
    };
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_parsers() {
        assert_eq!(parse_time_ms("500ms"), Some(500));
        assert_eq!(parse_time_ms("10s"), Some(10_000));
        assert_eq!(parse_time_ms("5m"), Some(300_000));
        assert_eq!(parse_time_ms("1h"), Some(3_600_000));
        assert_eq!(parse_time_ms("60"), Some(60_000));
        assert_eq!(parse_time_ms("1d"), Some(86_400_000));
        assert_eq!(parse_time_ms("1h 30m"), Some(5_400_000));
        assert_eq!(parse_time_ms("1m30s"), Some(90_000));
        assert_eq!(parse_time_ms("1m30"), Some(90_000));
        assert_eq!(parse_time_ms("0"), Some(0));
        for bad in [
            "",
            " ",
            "s",
            "10x",
            "-1s",
            "1s1s",
            "1s 1m",
            "5 5",
            "1.5s",
            "99999999999y",
        ] {
            assert_eq!(parse_time_ms(bad), None, "{bad:?}");
        }
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("16k"), Some(16 << 10));
        assert_eq!(parse_size("10M"), Some(10 << 20));
        assert_eq!(parse_size("1g"), Some(1 << 30));
        for bad in ["", "k", "1kb", "-1", "1 k"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
        assert_eq!(parse_u64("+1"), None);
        assert_eq!(parse_u64("18446744073709551616"), None);
    }
}
