//! Request heads: parse, check (framing, smuggling shapes), pick routing keys, and rewrite
//! for the backend with nginx's `proxy_set_header` semantics.

use super::{
    content_length, eq, final_chunked, has_token, is_hop_by_hop, named_in_connection, MAX_HEADERS,
};
use crate::body::Body;
use crate::config::{default_set_headers, HashKey, Part, SetHeader, Var};
use crate::hash::{fnv1a, fnv1a_ip};
use std::io::Write as _;
use std::net::IpAddr;

/// A problem with what the client sent; each maps to one status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Unparseable or contradictory head → 400.
    Malformed(&'static str),
    /// Head larger than the limit, or too many headers → 431.
    TooLarge,
    /// An `Expect` other than `100-continue` → 417.
    Expectation,
    /// No location of the chosen server matches the path → 404.
    NoRoute,
}

/// What a router says of a request: its route, the rules of that route, and the request
/// target to send instead of the client's (a `proxy_pass` URI rewrite, or the origin form
/// of an absolute-form target), if any.
#[derive(Debug)]
pub struct Routed<'r> {
    /// The route's index.
    pub route: u16,
    /// Its rules.
    pub rules: &'r RequestRules,
    /// The target to forward, when not the client's own.
    pub target: Option<&'r [u8]>,
    /// The client came over TLS (`$scheme` is `https`).
    pub https: bool,
}

/// Which parts of a request choose its backend, and what ringway adds to the forwarded
/// head (nginx's `proxy_set_header`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RequestRules {
    /// Cookie that pins a client to a backend (`--sticky-cookie`), lower case not required.
    pub sticky_cookie: Option<String>,
    /// Key of the consistent hash (`--balance hash`).
    pub hash_key: Option<HashKey>,
    /// Headers set on every forwarded request, replacing the client's of the same name;
    /// an empty expansion sends none (nginx's rule).
    pub set_headers: Vec<SetHeader>,
    /// Upstream connections are kept alive (`--keepalive N` > 0): plain requests go out
    /// without `Connection: close`.
    pub upstream_keepalive: bool,
    /// `proxy_pass` with a URI part: a request target starting with `.0` goes out with
    /// that prefix replaced by `.1` (nginx's rewrite of the matched location prefix).
    pub pass_uri: Option<(String, String)>,
    /// `underscores_in_headers on` / `--underscores-in-headers`: forward headers whose
    /// names contain `_`. Off (nginx's default), they are dropped: a CGI/WSGI backend
    /// would read `X_Real_IP` as `X-Real-IP`, a spoofing path around `proxy_set_header`.
    pub underscores: bool,
}

impl RequestRules {
    /// The rules of route `r` of `routing`: its group's sticky cookie, hash key and
    /// keep-alive, its own headers and `proxy_pass` URI.
    pub fn of_route(routing: &crate::config::routing::Routing, r: usize) -> RequestRules {
        let route = &routing.routes[r];
        let g = &routing.groups[route.group];
        RequestRules {
            sticky_cookie: g.sticky_cookie.clone(),
            hash_key: (g.balance == crate::config::Balance::Hash).then(|| g.hash_key.clone()),
            set_headers: route.set_headers.clone(),
            upstream_keepalive: g.keepalive > 0,
            pass_uri: route.pass_uri.clone(),
            underscores: route.underscores_in_headers,
        }
    }
}

/// The value of cookie `name` in a `Cookie` header value, if present.
pub fn cookie_value<'a>(header: &'a [u8], name: &str) -> Option<&'a [u8]> {
    header.split(|&b| b == b';').find_map(|kv| {
        let kv = kv.trim_ascii();
        let eq = kv.iter().position(|&b| b == b'=')?;
        (kv[..eq].trim_ascii() == name.as_bytes()).then(|| kv[eq + 1..].trim_ascii())
    })
}

/// What the worker needs to know about a parsed request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// Bytes of the head (bytes after it are body, or the next pipelined request).
    pub head_len: usize,
    /// The client asked for a WebSocket upgrade.
    pub upgrade: bool,
    /// The request's body framing.
    pub body: Body,
    /// HTTP/1.0 (1) or HTTP/1.1 (0 is never seen: HTTP/0.9 is rejected).
    pub minor: u8,
    /// The method is HEAD (the response has no body whatever it says).
    pub head_method: bool,
    /// The method is idempotent (RFC 9110 §9.2.2): safe to send again when a pooled
    /// connection turns out to have been closed by the backend.
    pub idempotent: bool,
    /// The client may send another request on this connection after the response.
    pub keep_alive: bool,
    /// `Expect: 100-continue` with a body: ringway answers `100 Continue` itself once the
    /// backend is connected (the header is not forwarded).
    pub expect_continue: bool,
    /// The sticky cookie's value, parsed as a backend id (hex), when present and valid.
    pub sticky: Option<u32>,
    /// Hash of the consistent-hash key, when the policy is `hash` and the key is present.
    pub hash: Option<u64>,
    /// The route the request took (0 without routing).
    pub route: u16,
    /// Headers whose names contain `_` that were not forwarded (`underscores` off).
    pub dropped_underscores: u16,
}

/// Parse the client's request head in `buf` and, when complete, write the head to send
/// upstream into `out`. `Ok(None)`: need more bytes (and `buf` is still under `max`).
pub fn parse_request(
    buf: &[u8],
    max: usize,
    client_ip: IpAddr,
    out: &mut Vec<u8>,
) -> Result<Option<RequestInfo>, ClientError> {
    let rules = RequestRules {
        set_headers: default_set_headers(),
        ..RequestRules::default()
    };
    parse_request_routed(buf, max, client_ip, &rules, out)
}

/// [`parse_request`] with the worker's rules: the sticky cookie and hash key are
/// extracted, `rules.set_headers` applied.
pub fn parse_request_routed(
    buf: &[u8],
    max: usize,
    client_ip: IpAddr,
    rules: &RequestRules,
    out: &mut Vec<u8>,
) -> Result<Option<RequestInfo>, ClientError> {
    let route = |_: &str, _: Option<&[u8]>| {
        Ok(Routed {
            route: 0,
            rules,
            target: None,
            https: false,
        })
    };
    parse_request_with(buf, max, client_ip, route, out)
}

/// [`parse_request_routed`] with the rules of the route `route` chooses from the
/// request target and Host (its error — no location matches, a bad path — is the
/// request's). The head is parsed and checked once; the route is asked once, before any
/// rule is used.
pub fn parse_request_with<'r>(
    buf: &[u8],
    max: usize,
    client_ip: IpAddr,
    route: impl FnOnce(&str, Option<&[u8]>) -> Result<Routed<'r>, ClientError>,
    out: &mut Vec<u8>,
) -> Result<Option<RequestInfo>, ClientError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() >= max {
                Err(ClientError::TooLarge)
            } else if buf.starts_with(b"PRI * HTTP/2") {
                Err(ClientError::Malformed("HTTP/2 preface on an HTTP/1.1 port"))
            } else {
                Ok(None)
            }
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ClientError::TooLarge),
        Err(httparse::Error::Version) if buf.starts_with(b"PRI * HTTP/2") => {
            return Err(ClientError::Malformed("HTTP/2 preface on an HTTP/1.1 port"))
        }
        Err(httparse::Error::HeaderName) => {
            return Err(ClientError::Malformed(
                "bad header name (whitespace before the colon?)",
            ))
        }
        Err(httparse::Error::HeaderValue) => {
            return Err(ClientError::Malformed(
                "bad header value (NUL, CR or obs-fold)",
            ))
        }
        Err(_) => return Err(ClientError::Malformed("unparseable request head")),
    };
    if head_len > max {
        return Err(ClientError::TooLarge);
    }
    let method = req.method.unwrap_or("GET");
    let path = req.path.unwrap_or("/");
    let minor = req.version.unwrap_or(1);
    let hs = &*req.headers;

    let mut host = 0;
    let mut cl: Option<u64> = None;
    let mut te = false;
    let mut upgrade_val: Option<&[u8]> = None;
    let mut expect_continue = false;
    for h in hs {
        if eq(h.name, "host") {
            host += 1;
        } else if eq(h.name, "content-length") {
            let v = content_length(h.value).ok_or(ClientError::Malformed("bad Content-Length"))?;
            if cl.is_some_and(|c| c != v) {
                return Err(ClientError::Malformed("differing Content-Length headers"));
            }
            cl = Some(v);
        } else if eq(h.name, "transfer-encoding") {
            // Only a final `chunked` frames a body we can relay safely; anything else is a
            // smuggling vector (RFC 9112 §6.3).
            if !final_chunked(h.value) || te || minor == 0 {
                return Err(ClientError::Malformed(
                    "Transfer-Encoding other than a single final chunked",
                ));
            }
            te = true;
        } else if eq(h.name, "upgrade") {
            upgrade_val = Some(h.value);
        } else if eq(h.name, "expect") {
            if !std::str::from_utf8(h.value).is_ok_and(|v| eq(v.trim(), "100-continue")) {
                return Err(ClientError::Expectation);
            }
            expect_continue = true;
        }
    }
    if minor == 1 && host != 1 {
        return Err(ClientError::Malformed(
            "HTTP/1.1 needs exactly one Host header",
        ));
    }
    if host > 1 {
        return Err(ClientError::Malformed("more than one Host header"));
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
    let body = if te {
        Body::chunked()
    } else {
        match cl {
            Some(n) if n > 0 => Body::Length(n),
            _ => Body::None,
        }
    };
    let upgrade = minor == 1
        && upgrade_val.is_some_and(|v| has_token(v, "websocket"))
        && named_in_connection(hs, "upgrade");
    if upgrade && body != Body::None {
        return Err(ClientError::Malformed("upgrade request with a body"));
    }
    // Bytes after an upgrade request are early WebSocket frames (RFC 6455 §4.1 asks
    // clients to wait for the 101; real ones pipeline): the session holds them and
    // delivers them into the tunnel after the 101, and never parses them as a request.
    let keep_alive = if minor == 1 {
        !named_in_connection(hs, "close")
    } else {
        named_in_connection(hs, "keep-alive")
    };
    let host_value = hs.iter().find(|h| eq(h.name, "host")).map(|h| h.value);
    let Routed {
        route,
        rules,
        target,
        https,
    } = route(path, host_value)?;
    let cookie = |name: &str| {
        hs.iter()
            .filter(|h| eq(h.name, "cookie"))
            .find_map(|h| cookie_value(h.value, name))
    };
    let sticky = rules.sticky_cookie.as_deref().and_then(|n| {
        let v = cookie(n)?;
        u32::from_str_radix(std::str::from_utf8(v).ok()?, 16).ok()
    });
    let hash = match &rules.hash_key {
        None => None,
        Some(HashKey::RemoteAddr) => Some(fnv1a_ip(client_ip)),
        Some(HashKey::Uri) => Some(fnv1a(path.as_bytes())),
        Some(HashKey::Header(n)) => hs.iter().find(|h| eq(h.name, n)).map(|h| fnv1a(h.value)),
        Some(HashKey::Cookie(n)) => cookie(n).map(fnv1a),
    };

    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.unwrap_or(path.as_bytes()));
    let _ = write!(out, " HTTP/1.{minor}\r\n");
    let mut dropped_underscores = 0u16;
    for h in hs {
        if !rules.underscores && h.name.contains('_') {
            dropped_underscores += 1;
            continue;
        }
        if is_hop_by_hop(h.name)
            || eq(h.name, "expect")
            || named_in_connection(hs, h.name)
            || rules.set_headers.iter().any(|s| eq(&s.name, h.name))
        {
            continue;
        }
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    for s in &rules.set_headers {
        let mark = out.len();
        out.extend_from_slice(s.name.as_bytes());
        out.extend_from_slice(b": ");
        let value_at = out.len();
        for p in &s.value {
            match p {
                Part::Lit(l) => out.extend_from_slice(l.as_bytes()),
                Part::Var(Var::RemoteAddr) => {
                    let _ = write!(out, "{client_ip}");
                }
                Part::Var(Var::ProxyAddXff) => {
                    for h in hs.iter().filter(|h| eq(h.name, "x-forwarded-for")) {
                        out.extend_from_slice(h.value.trim_ascii());
                        out.extend_from_slice(b", ");
                    }
                    let _ = write!(out, "{client_ip}");
                }
                Part::Var(Var::Scheme) => {
                    out.extend_from_slice(if https { b"https" } else { b"http" })
                }
                Part::Var(Var::RequestUri) => out.extend_from_slice(path.as_bytes()),
                Part::Var(Var::Host) => {
                    if let Some(h) = hs.iter().find(|h| eq(h.name, "host")) {
                        out.extend_from_slice(h.value);
                    }
                }
                Part::Var(Var::Header(n)) => {
                    if let Some(h) = hs.iter().find(|h| eq(h.name, n)) {
                        out.extend_from_slice(h.value);
                    }
                }
            }
        }
        if out.len() == value_at {
            out.truncate(mark); // nginx: an empty value sends no header
        } else {
            out.extend_from_slice(b"\r\n");
        }
    }
    if upgrade {
        out.extend_from_slice(b"Upgrade: websocket\r\nConnection: upgrade\r\n\r\n");
    } else if rules.upstream_keepalive && minor == 1 {
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(b"Connection: close\r\n\r\n");
    }
    Ok(Some(RequestInfo {
        head_len,
        upgrade,
        body,
        minor,
        head_method: method == "HEAD",
        idempotent: matches!(
            method,
            "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS" | "TRACE"
        ),
        keep_alive,
        // RFC 9110 §10.1.1: an HTTP/1.0 client's expectation is ignored.
        expect_continue: expect_continue && body != Body::None && minor == 1,
        sticky,
        hash,
        route,
        dropped_underscores,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{parse_response_sticky, ResponseCtx};

    fn ip() -> IpAddr {
        "10.1.2.3".parse().unwrap()
    }

    #[test]
    fn upgrade_request_is_rewritten_like_nginx() {
        let req = b"GET /chat?x=1 HTTP/1.1\r\nHost: example\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nKeep-Alive: 5\r\nSec-WebSocket-Key: abc\r\nX-Forwarded-For: 1.1.1.1\r\n\r\n";
        let mut out = Vec::new();
        let info = parse_request(req, 8192, ip(), &mut out).unwrap().unwrap();
        assert!(info.upgrade);
        assert_eq!(info.body, Body::None);
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
        assert!(info.body != Body::None);
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
        assert!(info.body != Body::None);
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
        let route = RequestRules {
            sticky_cookie: Some("srv".into()),
            hash_key: Some(HashKey::Cookie("sid".into())),
            ..RequestRules::default()
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
        parse_response_sticky(
            r,
            16384,
            ResponseCtx::default(),
            Some(("srv", 0xbeef)),
            &mut out,
        )
        .unwrap()
        .unwrap();
        assert!(String::from_utf8_lossy(&out)
            .contains("Set-Cookie: srv=0000beef; Path=/; HttpOnly\r\n"));
    }

    #[test]
    fn keep_alive_expect_and_versions() {
        let mut out = Vec::new();
        let mut req = |r: &[u8]| parse_request(r, 8192, ip(), &mut out);
        assert!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
        assert!(
            !req(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
                .unwrap()
                .unwrap()
                .keep_alive
        );
        assert!(!req(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap().keep_alive);
        let i = req(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(i.keep_alive);
        assert_eq!(i.minor, 0);
        let i =
            req(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 2\r\n\r\n")
                .unwrap()
                .unwrap();
        assert!(i.expect_continue);
        assert_eq!(i.body, Body::Length(2));
        assert_eq!(
            req(b"GET / HTTP/1.1\r\nHost: a\r\nExpect: x\r\n\r\n"),
            Err(ClientError::Expectation)
        );
        assert!(req(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(!s.to_ascii_lowercase().contains("expect"), "{s}");
    }

    #[test]
    fn set_header_templates() {
        let rules = RequestRules {
            set_headers: vec![
                SetHeader::parse("X-User", "$http_x_user_id").unwrap(),
                SetHeader::parse("Host", "backend.internal").unwrap(),
            ],
            upstream_keepalive: true,
            ..RequestRules::default()
        };
        let mut out = Vec::new();
        parse_request_routed(
            b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
            8192,
            ip(),
            &rules,
            &mut out,
        )
        .unwrap();
        let s = String::from_utf8(out).unwrap();
        assert!(
            !s.contains("X-User"),
            "empty expansion sends no header: {s}"
        );
        assert!(
            s.contains("Host: backend.internal\r\n") && !s.contains("Host: a"),
            "{s}"
        );
        assert!(
            !s.contains("Connection"),
            "keep-alive upstream: no Connection header: {s}"
        );
    }

    #[test]
    fn early_bytes_after_an_upgrade_are_left_to_the_session() {
        let mut out = Vec::new();
        let head =
            b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
        let mut req = head.to_vec();
        req.extend_from_slice(b"GET /admin HTTP/1.1\r\n\r\n");
        let info = parse_request(&req, 8192, ip(), &mut out).unwrap().unwrap();
        assert!(info.upgrade);
        assert_eq!(
            info.head_len,
            head.len(),
            "the early bytes are not part of the head"
        );
        assert!(!String::from_utf8_lossy(&out).contains("/admin"));
    }

    #[test]
    fn underscore_headers_are_dropped_unless_allowed() {
        let req = b"GET / HTTP/1.1\r\nHost: a\r\nX_Real_IP: 6.6.6.6\r\nX-Ok: 1\r\n\r\n";
        let mut rules = RequestRules::default();
        let mut out = Vec::new();
        let info = parse_request_routed(req, 8192, ip(), &rules, &mut out)
            .unwrap()
            .unwrap();
        let s = String::from_utf8_lossy(&out).to_string();
        assert!(!s.contains("X_Real_IP") && s.contains("X-Ok: 1"), "{s}");
        assert_eq!(info.dropped_underscores, 1);
        rules.underscores = true;
        let info = parse_request_routed(req, 8192, ip(), &rules, &mut out)
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&out).contains("X_Real_IP: 6.6.6.6\r\n"));
        assert_eq!(info.dropped_underscores, 0);
    }
}
