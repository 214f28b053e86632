//! Config value types and their parsers: `proxy_set_header` templates ([`SetHeader`]),
//! the consistent-hash key ([`HashKey`]), durations, addresses and address lists.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

/// One upstream server's parameters (nginx's `server ADDR weight= max_fails=
/// fail_timeout= backup down`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerParams {
    /// `weight=N` (≥ 1): its share of round robin, least-conn and the hashes.
    pub weight: u32,
    /// `max_fails=N`: failures within `fail_timeout` that mark it down (0: never).
    pub max_fails: u32,
    /// `fail_timeout=T`: the window failures are counted in, and how long it stays down.
    pub fail_timeout: Duration,
    /// `backup`: used only when every primary server of its group is down.
    pub backup: bool,
    /// `down`: never used (kept in the table, so the hashes of the others do not move).
    pub down: bool,
}

impl Default for ServerParams {
    /// nginx's defaults: weight 1, max_fails 1, fail_timeout 10 s.
    fn default() -> ServerParams {
        ServerParams {
            weight: 1,
            max_fails: 1,
            fail_timeout: Duration::from_secs(10),
            backup: false,
            down: false,
        }
    }
}

/// Active health checks of one upstream group (`--health-check PATH`, or ringway's
/// `health_check uri=PATH ...;` in an upstream block).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    /// The path each check asks for (`GET PATH`).
    pub path: String,
    /// Time between two checks of a backend.
    pub interval: Duration,
    /// Consecutive failed checks that mark a backend down.
    pub fails: u32,
    /// Consecutive passed checks that mark it up again.
    pub passes: u32,
    /// Check by a full WebSocket upgrade handshake (a `101` passes) instead of a plain
    /// `GET` (a 2xx or 3xx passes): for backends that only speak WebSocket.
    pub upgrade: bool,
    /// How long one check may take (connect and answer).
    pub timeout: Duration,
}

impl HealthCheck {
    /// Checks of `path` with the defaults: every 5 s, down after 2 failures, up after 1
    /// success, 2 s per check.
    pub fn new(path: &str) -> HealthCheck {
        HealthCheck {
            path: path.to_string(),
            interval: Duration::from_secs(5),
            fails: 2,
            passes: 1,
            upgrade: false,
            timeout: Duration::from_secs(2),
        }
    }
}

/// What the consistent hash hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashKey {
    /// The client's address (`$remote_addr`).
    RemoteAddr,
    /// The request target (`$request_uri`).
    Uri,
    /// A request header (`$http_name`), by name.
    Header(String),
    /// A cookie (`$cookie_name`), by name.
    Cookie(String),
}

/// A variable in a `proxy_set_header` value (nginx's names).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Var {
    /// `$remote_addr`: the client's address.
    RemoteAddr,
    /// `$proxy_add_x_forwarded_for`: the client's `X-Forwarded-For` values, then its address.
    ProxyAddXff,
    /// `$scheme`: `http`.
    Scheme,
    /// `$host` / `$http_host`: the request's Host header.
    Host,
    /// `$request_uri`: the request target.
    RequestUri,
    /// `$http_NAME`: a request header (`_` for `-`).
    Header(String),
}

/// A piece of a header value template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// A variable.
    Var(Var),
}

/// One `proxy_set_header NAME VALUE`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetHeader {
    /// Header name as written.
    pub name: String,
    /// Value template.
    pub value: Vec<Part>,
}

impl SetHeader {
    /// Parse `VALUE` with nginx's `$var` / `${var}` syntax. Unknown variables are an error
    /// for a person to fix.
    pub fn parse(name: &str, value: &str) -> Result<SetHeader, String> {
        let bad = |c: u8| c <= b' ' || c == b':' || c >= 0x7f;
        if name.is_empty() || name.bytes().any(bad) {
            return Err(format!("header name {name:?} is not a valid token"));
        }
        // Framing and hop-by-hop headers are ringway's own: setting one would desynchronise
        // the message from its body, or the connection from its state.
        let reserved = [
            "content-length",
            "transfer-encoding",
            "connection",
            "upgrade",
            "keep-alive",
            "te",
            "trailer",
            "proxy-connection",
            "expect",
        ];
        if reserved.iter().any(|r| r.eq_ignore_ascii_case(name)) {
            return Err(format!(
                "header {name} cannot be set: ringway manages framing and hop-by-hop headers itself"
            ));
        }
        if value.bytes().any(|c| c == b'\r' || c == b'\n' || c == 0) {
            return Err(format!("header {name}: value contains CR, LF or NUL"));
        }
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = value;
        while let Some(pos) = rest.find('$') {
            lit.push_str(&rest[..pos]);
            rest = &rest[pos + 1..];
            let (var, after) = if let Some(r) = rest.strip_prefix('{') {
                let end = r
                    .find('}')
                    .ok_or_else(|| format!("header {name}: unclosed ${{ in {value:?}"))?;
                (&r[..end], &r[end + 1..])
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            let v = match var {
                "remote_addr" | "binary_remote_addr" => Var::RemoteAddr,
                "proxy_add_x_forwarded_for" => Var::ProxyAddXff,
                "scheme" => Var::Scheme,
                "host" | "http_host" => Var::Host,
                "request_uri" => Var::RequestUri,
                _ => match var.strip_prefix("http_").filter(|h| !h.is_empty()) {
                    Some(h) => Var::Header(h.replace('_', "-")),
                    None => return Err(format!(
                        "header {name}: variable ${var} is not supported (supported: $remote_addr, $proxy_add_x_forwarded_for, $scheme, $host, $http_host, $request_uri, $http_NAME)"
                    )),
                },
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(v));
            rest = after;
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(SetHeader {
            name: name.to_string(),
            value: parts,
        })
    }
}

/// What ringway sets by default without a config file: `X-Forwarded-For`, `X-Real-IP`,
/// `X-Forwarded-Proto` (the lines every nginx WebSocket guide adds).
pub fn default_set_headers() -> Vec<SetHeader> {
    [
        ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
        ("X-Real-IP", "$remote_addr"),
        ("X-Forwarded-Proto", "$scheme"),
    ]
    .iter()
    .map(|(n, v)| SetHeader::parse(n, v).expect("valid default"))
    .collect()
}

/// Parse `NAME: VALUE` (or `NAME VALUE`) for `--set-header`.
pub fn parse_set_header(s: &str) -> Result<SetHeader, String> {
    let (name, value) = s
        .split_once(':')
        .or_else(|| s.trim().split_once(' '))
        .unwrap_or((s, ""));
    SetHeader::parse(name.trim(), value.trim())
}

/// Parse a hash key as nginx's variable names: `remote_addr`, `request_uri`,
/// `http_x_user_id` (header `X-User-Id`), `cookie_sid`; a leading `$` is accepted.
pub fn parse_hash_key(s: &str) -> Result<HashKey, String> {
    let v = s.trim().trim_start_matches('$');
    Ok(match v {
        "remote_addr" | "binary_remote_addr" => HashKey::RemoteAddr,
        "request_uri" | "uri" => HashKey::Uri,
        _ => {
            if let Some(h) = v.strip_prefix("http_").filter(|h| !h.is_empty()) {
                HashKey::Header(h.replace('_', "-"))
            } else if let Some(c) = v.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                HashKey::Cookie(c.to_string())
            } else {
                return Err(format!(
                    "hash key '{s}': use remote_addr, request_uri, http_NAME or cookie_NAME"
                ));
            }
        }
    })
}

/// Parse `127.0.0.2-127.0.0.40` (an IPv4 range), or a comma list of addresses.
pub fn parse_ip_list(s: &str) -> Result<Vec<std::net::IpAddr>, String> {
    use std::net::{IpAddr, Ipv4Addr};
    let bad = || {
        format!("--upstream-bind '{s}': write a range like 127.0.0.2-127.0.0.40, a comma list, auto or none")
    };
    let mut out = Vec::new();
    for part in s.split(',') {
        let part = part.trim();
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
            let b: Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 65535 {
                return Err(bad());
            }
            out.extend((a..=b).map(|x| IpAddr::V4(Ipv4Addr::from(x))));
        } else {
            out.push(part.parse().map_err(|_| bad())?);
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    Ok(out)
}

/// Parse `host:port` (IP literal or a resolvable name such as `localhost:9001`).
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    match s.to_socket_addrs() {
        Ok(mut it) => it
            .next()
            .ok_or_else(|| format!("'{s}' resolves to no address")),
        Err(_) => Err(format!(
            "'{s}' is not an address: write HOST:PORT, e.g. 127.0.0.1:9001"
        )),
    }
}

/// Parse an nginx-style duration: `500ms`, `10s`, `5m`, `1h`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let bad = || format!("'{s}' is not a duration: write e.g. 500ms, 30s, 5m or 1h");
    let (num, mult_ms) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1u64)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else if let Some(n) = s.strip_suffix('h') {
        (n, 3_600_000)
    } else {
        (s, 1000)
    };
    let v: u64 = num.parse().map_err(|_| bad())?;
    Ok(Duration::from_millis(
        v.checked_mul(mult_ms).ok_or_else(bad)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_header_parse() {
        let h = SetHeader::parse("X-A", "pre-${remote_addr}-$http_x_user_id").unwrap();
        assert_eq!(
            h.value,
            vec![
                Part::Lit("pre-".into()),
                Part::Var(Var::RemoteAddr),
                Part::Lit("-".into()),
                Part::Var(Var::Header("x-user-id".into())),
            ]
        );
        assert!(SetHeader::parse("X-A", "$nope").is_err());
        for reserved in [
            "Content-Length",
            "transfer-encoding",
            "Connection",
            "Upgrade",
            "TE",
        ] {
            assert!(SetHeader::parse(reserved, "x").is_err(), "{reserved}");
        }
        assert!(SetHeader::parse("X A", "v").is_err());
        assert!(SetHeader::parse("X-A", "a\r\nX-Evil: 1").is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
