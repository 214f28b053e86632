//! HTTP/1.1 heads: parse (httparse), check, and rewrite with nginx's proxy semantics.
//!
//! Requests are forwarded as nginx does with the seed configuration
//! (`proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade;
//! proxy_set_header Connection $connection_upgrade;`): hop-by-hop headers are dropped
//! (`Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`, and every
//! header named in `Connection`), `Upgrade: websocket` plus `Connection: upgrade` are sent
//! when the client asked for an upgrade, otherwise `Connection: close`; `X-Forwarded-For`
//! gets the client address appended. An incomplete head is `Ok(None)`, not an error.

use std::io::Write as _;
use std::net::IpAddr;

/// Most headers accepted in one head.
const MAX_HEADERS: usize = 128;

/// A problem with what the client sent; each maps to one status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Unparseable or contradictory head → 400.
    Malformed(&'static str),
    /// Head larger than the limit, or too many headers → 431.
    TooLarge,
}

/// A problem with what the backend sent → 502.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// Unparseable, oversized, or inconsistent response head.
    BadResponse(&'static str),
}

/// Which parts of a request choose its backend (besides the policy itself).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteSpec {
    /// Cookie that pins a client to a backend (`--sticky-cookie`), lower case not required.
    pub sticky_cookie: Option<String>,
    /// Key of the consistent hash (`--balance hash`).
    pub hash_key: Option<HashKey>,
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

/// The value of cookie `name` in a `Cookie` header value, if present.
pub fn cookie_value<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|kv| {
        let kv = kv.trim_ascii();
        let eq = kv.iter().position(|&b| b == b'=')?;
        (kv[..eq].trim_ascii() == name.as_bytes()).then(|| kv[eq + 1..].trim_ascii())
    })
}

/// FNV-1a, 64 bits: stable across runs and processes.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// FNV-1a over an address's octets (4 or 16).
pub fn fnv1a_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => fnv1a(&a.octets()),
        IpAddr::V6(a) => fnv1a(&a.octets()),
    }
}

/// What the worker needs to know about a parsed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// Bytes of the head (bytes after it are body or early tunnel data).
    pub head_len: usize,
    /// The client asked for a WebSocket upgrade.
    pub upgrade: bool,
    /// The request declares a body (Content-Length > 0 or Transfer-Encoding).
    pub has_body: bool,
    /// The sticky cookie's value, parsed as a backend id (hex), when present and valid.
    pub sticky: Option<u32>,
    /// Hash of the consistent-hash key, when the policy is `hash` and the key is present.
    pub hash: Option<u64>,
}

/// What the worker needs to know about a parsed response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResponseInfo {
    /// Bytes of the head(s), interim 1xx heads included.
    pub head_len: usize,
    /// Final status code.
    pub status: u16,
    /// 101 with a matching `Upgrade: websocket`: start the tunnel.
    pub tunnel: bool,
}

fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| {
        std::str::from_utf8(t)
            .map(|t| eq(t.trim(), token))
            .unwrap_or(false)
    })
}

fn is_hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
    ]
    .iter()
    .any(|h| eq(name, h))
}

/// Whether `name` is listed in any `Connection` header (and so hop-by-hop).
fn named_in_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| eq(h.name, "connection"))
        .any(|h| has_token(h.value, name))
}

/// Parse the client's request head in `buf` and, when complete, write the head to send
/// upstream into `out`. `Ok(None)`: need more bytes (and `buf` is still under `max`).
pub fn parse_request(
    buf: &[u8],
    max: usize,
    client_ip: IpAddr,
    out: &mut Vec<u8>,
) -> Result<Option<RequestInfo>, ClientError> {
    parse_request_routed(buf, max, client_ip, &RouteSpec::default(), out)
}

/// [`parse_request`], also extracting the sticky cookie and the hash key of `route`.
pub fn parse_request_routed(
    buf: &[u8],
    max: usize,
    client_ip: IpAddr,
    route: &RouteSpec,
    out: &mut Vec<u8>,
) -> Result<Option<RequestInfo>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max {
                Err(ClientError::TooLarge)
            } else {
                Ok(None)
            }
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ClientError::TooLarge),
        Err(_) => return Err(ClientError::Malformed("unparseable request head")),
    };
    if head_len > max {
        return Err(ClientError::TooLarge);
    }
    let method = req.method.unwrap_or("GET");
    let path = req.path.unwrap_or("/");
    let version = req.version.unwrap_or(1);
    let hs = &*req.headers;

    let mut host = 0;
    let mut cl: Option<u64> = None;
    let mut te = false;
    let mut upgrade_val: Option<&[u8]> = None;
    for h in hs {
        if eq(h.name, "host") {
            host += 1;
        } else if eq(h.name, "content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .map(str::trim)
                .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(ClientError::Malformed("bad Content-Length"))?;
            if cl.is_some_and(|c| c != v) {
                return Err(ClientError::Malformed("differing Content-Length headers"));
            }
            cl = Some(v);
        } else if eq(h.name, "transfer-encoding") {
            // Only a final `chunked` frames a body we can relay safely; anything else is a
            // smuggling vector (RFC 9112 §6.3).
            let last = h
                .value
                .rsplit(|&b| b == b',')
                .next()
                .and_then(|t| std::str::from_utf8(t).ok())
                .map(str::trim)
                .unwrap_or("");
            if !eq(last, "chunked") || te {
                return Err(ClientError::Malformed(
                    "Transfer-Encoding other than a single final chunked",
                ));
            }
            te = true;
        } else if eq(h.name, "upgrade") {
            upgrade_val = Some(h.value);
        }
    }
    if version == 1 && host != 1 {
        return Err(ClientError::Malformed(
            "HTTP/1.1 needs exactly one Host header",
        ));
    }
    if te && cl.is_some() {
        return Err(ClientError::Malformed(
            "both Content-Length and Transfer-Encoding",
        ));
    }
    // `Connection` may name only hop-by-hop extensions: naming the framing or routing
    // headers would make us drop them while the body still flows.
    for name in ["content-length", "transfer-encoding", "host"] {
        if named_in_connection(hs, name) {
            return Err(ClientError::Malformed(
                "Connection names a framing or routing header",
            ));
        }
    }
    let upgrade = version == 1
        && upgrade_val.is_some_and(|v| has_token(v, "websocket"))
        && named_in_connection(hs, "upgrade");
    let has_body = te || cl.unwrap_or(0) > 0;
    let cookie = |name: &str| {
        hs.iter()
            .filter(|h| eq(h.name, "cookie"))
            .find_map(|h| cookie_value(h.value, name))
    };
    let sticky = route.sticky_cookie.as_deref().and_then(|n| {
        let v = cookie(n)?;
        u32::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok()
    });
    let hash = match &route.hash_key {
        None => None,
        Some(HashKey::RemoteAddr) => Some(fnv1a_ip(client_ip)),
        Some(HashKey::Uri) => Some(fnv1a(path.as_bytes())),
        Some(HashKey::Header(n)) => hs.iter().find(|h| eq(h.name, n)).map(|h| fnv1a(h.value)),
        Some(HashKey::Cookie(n)) => cookie(n).map(fnv1a),
    };

    out.clear();
    let _ = write!(out, "{method} {path} HTTP/1.1\r\n");
    let mut xff: Option<&[u8]> = None;
    for h in hs {
        if is_hop_by_hop(h.name) || named_in_connection(hs, h.name) {
            continue;
        }
        if eq(h.name, "x-forwarded-for") {
            xff = Some(h.value);
            continue;
        }
        if eq(h.name, "x-real-ip") || eq(h.name, "x-forwarded-proto") {
            // Set by us below (nginx: proxy_set_header X-Real-IP $remote_addr, ...).
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    if upgrade {
        out.extend_from_slice(b"Upgrade: websocket\r\nConnection: upgrade\r\n");
    } else {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"X-Forwarded-For: ");
    if let Some(v) = xff {
        out.extend_from_slice(v);
        out.extend_from_slice(b", ");
    }
    let _ = write!(
        out,
        "{client_ip}\r\nX-Real-IP: {client_ip}\r\nX-Forwarded-Proto: http\r\n\r\n"
    );
    // A WebSocket client must wait for the 101 (RFC 6455 §4.1): bytes after an upgrade
    // request are a pipelined request or early frames, and must never reach the backend
    // before it has agreed to the upgrade.
    if upgrade && buf.len() > head_len {
        return Err(ClientError::Malformed(
            "data after an upgrade request, before the 101",
        ));
    }
    Ok(Some(RequestInfo {
        head_len,
        upgrade,
        has_body,
        sticky,
        hash,
    }))
}

/// Parse the backend's response head(s) in `buf`. Interim 1xx responses (other than 101)
/// are copied through and parsing goes on. When the final head is complete, the head to
/// send to the client is in `out`. `Ok(None)`: need more bytes.
pub fn parse_response(
    buf: &[u8],
    max: usize,
    upgrade_requested: bool,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseInfo>, UpstreamError> {
    parse_response_sticky(buf, max, upgrade_requested, None, out)
}

/// [`parse_response`], adding `Set-Cookie: NAME=ID` to the final head when `set_cookie`
/// is given (the client is (re-)pinned to the backend that answered).
pub fn parse_response_sticky(
    buf: &[u8],
    max: usize,
    upgrade_requested: bool,
    set_cookie: Option<(&str, u32)>,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseInfo>, UpstreamError> {
    out.clear();
    let mut pos = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let n = match resp.parse(&buf[pos..]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return if buf.len() >= max {
                    Err(UpstreamError::BadResponse("response head too large"))
                } else {
                    Ok(None)
                }
            }
            Err(_) => return Err(UpstreamError::BadResponse("unparseable response head")),
        };
        let code = resp.code.unwrap_or(0);
        let reason = resp.reason.unwrap_or("");
        let hs = &*resp.headers;
        if (100..200).contains(&code) && code != 101 {
            out.extend_from_slice(&buf[pos..pos + n]);
            pos += n;
            continue;
        }
        let upgrade_ok = hs
            .iter()
            .any(|h| eq(h.name, "upgrade") && has_token(h.value, "websocket"));
        let tunnel = code == 101 && upgrade_requested && upgrade_ok;
        if code == 101 && !tunnel {
            return Err(UpstreamError::BadResponse(
                "101 without a requested, matching WebSocket upgrade",
            ));
        }
        let _ = write!(out, "HTTP/1.1 {code} {reason}\r\n");
        for h in hs {
            if is_hop_by_hop(h.name) || named_in_connection(hs, h.name) {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(h.value);
            out.extend_from_slice(b"\r\n");
        }
        if let Some((name, id)) = set_cookie {
            let _ = write!(out, "Set-Cookie: {name}={id:08x}; Path=/; HttpOnly\r\n");
        }
        if tunnel {
            out.extend_from_slice(b"Upgrade: websocket\r\nConnection: upgrade\r\n\r\n");
        } else {
            out.extend_from_slice(b"Connection: close\r\n\r\n");
        }
        return Ok(Some(ResponseInfo {
            head_len: pos + n,
            status: code,
            tunnel,
        }));
    }
}

/// ringway's own answers, complete and static.
pub mod reply {
    /// 400 Bad Request.
    pub const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad request\n";
    /// 431 Request Header Fields Too Large.
    pub const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nConnection: close\r\n\r\nrequest head too large\n";
    /// 502 Bad Gateway.
    pub const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad gateway\n";
    /// 503 at the limit.
    pub const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 34\r\nConnection: close\r\n\r\nworker_connections are not enough\n";
    /// 504 Gateway Timeout.
    pub const GATEWAY_TIMEOUT: &[u8] = b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\ngateway timeout\n";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip() -> IpAddr {
        "10.1.2.3".parse().unwrap()
    }

    #[test]
    fn canned_replies_have_right_lengths() {
        for r in [
            reply::BAD_REQUEST,
            reply::TOO_LARGE,
            reply::BAD_GATEWAY,
            reply::UNAVAILABLE,
            reply::GATEWAY_TIMEOUT,
        ] {
            let mut h = [httparse::EMPTY_HEADER; 8];
            let mut resp = httparse::Response::new(&mut h);
            let n = match resp.parse(r).unwrap() {
                httparse::Status::Complete(n) => n,
                _ => panic!(),
            };
            let cl: usize = resp
                .headers
                .iter()
                .find(|h| h.name == "Content-Length")
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap();
            assert_eq!(r.len() - n, cl, "{}", String::from_utf8_lossy(r));
        }
    }

    #[test]
    fn upgrade_request_is_rewritten_like_nginx() {
        let req = b"GET /chat?x=1 HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nKeep-Alive: 5\r\nSec-WebSocket-Key: abc\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n";
        let mut out = Vec::new();
        let info = parse_request(req, 8192, ip(), &mut out).unwrap().unwrap();
        assert!(info.upgrade);
        assert!(!info.has_body);
        assert_eq!(info.head_len, req.len());
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("GET /chat?x=1 HTTP/1.1\r\n"));
        assert!(s.contains("Host: example\r\n"));
        assert!(s.contains("Sec-WebSocket-Key: abc\r\n"));
        assert!(s.contains("Upgrade: websocket\r\nConnection: upgrade\r\n"));
        assert!(s.contains("X-Forwarded-For: 1.1.1.1, 10.1.2.3\r\n"));
        assert!(!s.contains("Keep-Alive"));
        assert!(!s.contains("keep-alive"));
        assert!(s.ends_with("\r\n\r\n"));
    }

    #[test]
    fn plain_request_gets_connection_close_and_connection_named_headers_are_dropped() {
        let req = b"POST /x HTTP/1.1\r\nHost: h\r\nConnection: X-Secret\r\nX-Secret: 1\r\nContent-Length: 3\r\nUpgrade: h2c\r\n\r\n";
        let mut out = Vec::new();
        let info = parse_request(req, 8192, ip(), &mut out).unwrap().unwrap();
        assert!(!info.upgrade, "h2c is never an upgrade");
        assert!(info.has_body);
        let s = String::from_utf8(out).unwrap();
        assert!(s.contains("Connection: close\r\n"));
        assert!(!s.contains("X-Secret"));
        assert!(!s.contains("h2c"));
        assert!(s.contains("Content-Length: 3\r\n"));
    }

    #[test]
    fn partial_then_too_large_then_malformed() {
        let mut out = Vec::new();
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHo", 8192, ip(), &mut out),
            Ok(None)
        );
        let big = vec![b'a'; 300];
        let mut req = b"GET / HTTP/1.1\r\nX: ".to_vec();
        req.extend_from_slice(&big);
        assert_eq!(
            parse_request(&req, 256, ip(), &mut out),
            Err(ClientError::TooLarge)
        );
        assert!(matches!(
            parse_request(b"GARBAGE\x01\r\n\r\n", 8192, ip(), &mut out),
            Err(ClientError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"GET / HTTP/1.1\r\n\r\n", 8192, ip(), &mut out),
            Err(ClientError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 8192, ip(), &mut out),
            Err(ClientError::Malformed(_))
        ));
    }

    #[test]
    fn smuggling_shapes_are_rejected() {
        let mut out = Vec::new();
        let bad: &[&[u8]] = &[
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nConnection: content-length\r\nContent-Length: 5\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nGET /admin HTTP/1.1\r\n\r\n",
        ];
        for req in bad {
            assert!(
                matches!(
                    parse_request(req, 8192, ip(), &mut out),
                    Err(ClientError::Malformed(_))
                ),
                "{}",
                String::from_utf8_lossy(req)
            );
        }
        let ok = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nX-Real-IP: 6.6.6.6\r\n\r\n";
        let info = parse_request(ok, 8192, ip(), &mut out).unwrap().unwrap();
        assert!(info.has_body);
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(
            s.contains("X-Real-IP: 10.1.2.3\r\n") && !s.contains("6.6.6.6"),
            "{s}"
        );
        assert!(s.contains("X-Forwarded-Proto: http\r\n"));
    }

    #[test]
    fn sticky_cookie_and_hash_keys() {
        let mut out = Vec::new();
        let route = RouteSpec {
            sticky_cookie: Some("srv".into()),
            hash_key: Some(HashKey::Cookie("sid".into())),
        };
        let req = b"GET /socket.io/?EIO=4 HTTP/1.1\r\nHost: a\r\nCookie: a=1; srv=0000beef ; sid=xyz\r\n\r\n";
        let info = parse_request_routed(req, 8192, ip(), &route, &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(info.sticky, Some(0xbeef));
        assert_eq!(info.hash, Some(fnv1a(b"xyz")));
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nCookie: srv=zz\r\n\r\n";
        let info = parse_request_routed(req, 8192, ip(), &route, &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(info.sticky, None, "garbage cookie is ignored");
        assert_eq!(info.hash, None);
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
        parse_response_sticky(r, 16384, false, Some(("srv", 0xbeef)), &mut out)
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&out)
            .contains("Set-Cookie: srv=0000beef; Path=/; HttpOnly\r\n"));
    }

    #[test]
    fn responses() {
        let mut out = Vec::new();
        let r = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: k\r\n\r\nDATA";
        let info = parse_response(r, 16384, true, &mut out).unwrap().unwrap();
        assert!(info.tunnel);
        assert_eq!(&r[info.head_len..], b"DATA");
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(s.contains("Sec-WebSocket-Accept: k\r\n"));
        assert!(s.ends_with("Upgrade: websocket\r\nConnection: upgrade\r\n\r\n"));

        assert!(
            parse_response(r, 16384, false, &mut out).is_err(),
            "unrequested 101"
        );

        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
        let info = parse_response(r, 16384, false, &mut out).unwrap().unwrap();
        assert_eq!(info.status, 404);
        assert!(!info.tunnel);
        assert_eq!(info.head_len, r.len());
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(s.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\n"));
        assert!(s.ends_with("Connection: close\r\n\r\n"));
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\n", 16384, false, &mut out),
            Ok(None)
        );
    }
}
