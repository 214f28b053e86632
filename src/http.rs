//! HTTP/1.1 heads: parse (httparse), check, and rewrite with nginx's proxy semantics.
//!
//! Requests are forwarded as nginx does with the seed configuration
//! (`proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade;
//! proxy_set_header Connection $connection_upgrade;`): hop-by-hop headers are dropped
//! (`Connection`, `Keep-Alive`, `Proxy-Connection`, `TE`, `Trailer`, `Upgrade`, `Expect`,
//! and every header named in `Connection`); `Upgrade: websocket` plus `Connection: upgrade`
//! are sent when the client asked for an upgrade, otherwise nothing (upstream keep-alive)
//! or `Connection: close`; the `proxy_set_header` rules ([`RequestRules::set_headers`],
//! by default `X-Forwarded-For`, `X-Real-IP`, `X-Forwarded-Proto`) are applied. Heads are
//! checked strictly (RFC 9112: framing, smuggling shapes) and give each message's body
//! framing ([`Body`]). An incomplete head is `Ok(None)`, not an error.

use crate::body::Body;
use crate::hash::{fnv1a, fnv1a_ip};
use std::io::Write as _;
use std::net::IpAddr;

pub use crate::config::{default_set_headers, HashKey, Part, SetHeader, Var};

/// Most headers accepted in one head.
const MAX_HEADERS: usize = 128;

/// A problem with what the client sent; each maps to one status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientError {
    /// Unparseable or contradictory head → 400.
    Malformed(&'static str),
    /// Head larger than the limit, or too many headers → 431.
    TooLarge,
    /// An `Expect` other than `100-continue` → 417.
    Expectation,
}

/// A problem with what the backend sent → 502.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// Unparseable, oversized, or inconsistent response head.
    BadResponse(&'static str),
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
    /// The response's body framing (after the head).
    pub body: Body,
    /// The backend lets us reuse its connection after this response.
    pub reusable: bool,
    /// The client connection stays open after this response (the head says so).
    pub client_keep: bool,
}

/// How the request whose response is being parsed was sent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResponseCtx {
    /// An upgrade was requested.
    pub upgrade: bool,
    /// The request was HEAD.
    pub head_method: bool,
    /// The client speaks HTTP/1.0.
    pub http10: bool,
    /// ringway would keep the client connection open after this response.
    pub client_keep: bool,
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

/// The value of one `Content-Length` header: digits only.
fn content_length(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether the last coding of a Transfer-Encoding value is `chunked`.
fn final_chunked(v: &[u8]) -> bool {
    v.rsplit(|&b| b == b',')
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .is_some_and(|t| eq(t.trim(), "chunked"))
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
    // A WebSocket client must wait for the 101 (RFC 6455 §4.1): bytes after an upgrade
    // request in the same read are early frames or a smuggled request, and must never
    // reach the backend before it has agreed to the upgrade.
    if upgrade && buf.len() > head_len {
        return Err(ClientError::Malformed(
            "data after an upgrade request, before the 101",
        ));
    }
    let keep_alive = if minor == 1 {
        !named_in_connection(hs, "close")
    } else {
        named_in_connection(hs, "keep-alive")
    };
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
    let _ = write!(out, "{method} {path} HTTP/1.{minor}\r\n");
    for h in hs {
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
                Part::Var(Var::Scheme) => out.extend_from_slice(b"http"),
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
    }))
}

/// Parse the backend's response head(s) in `buf`. Interim 1xx responses (other than 101)
/// are copied through (a `100 Continue` is dropped: ringway answers `Expect` itself) and
/// parsing goes on. When the final head is complete, the head to send to the client is in
/// `out`. `Ok(None)`: need more bytes.
pub fn parse_response(
    buf: &[u8],
    max: usize,
    ctx: ResponseCtx,
    out: &mut Vec<u8>,
) -> Result<Option<ResponseInfo>, UpstreamError> {
    parse_response_sticky(buf, max, ctx, None, out)
}

/// [`parse_response`], adding `Set-Cookie: NAME=ID` to the final head when `set_cookie`
/// is given (the client is (re-)pinned to the backend that answered).
pub fn parse_response_sticky(
    buf: &[u8],
    max: usize,
    ctx: ResponseCtx,
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
        let minor = resp.version.unwrap_or(1);
        let hs = &*resp.headers;
        if (100..200).contains(&code) && code != 101 {
            if code != 100 && !ctx.http10 {
                out.extend_from_slice(&buf[pos..pos + n]);
            }
            pos += n;
            continue;
        }
        let upgrade_ok = hs
            .iter()
            .any(|h| eq(h.name, "upgrade") && has_token(h.value, "websocket"));
        let tunnel = code == 101 && ctx.upgrade && upgrade_ok;
        if code == 101 && !tunnel {
            return Err(UpstreamError::BadResponse(
                "101 without a requested, matching WebSocket upgrade",
            ));
        }
        let mut cl: Option<u64> = None;
        let mut te: Option<bool> = None;
        for h in hs {
            if eq(h.name, "content-length") {
                let v = content_length(h.value)
                    .ok_or(UpstreamError::BadResponse("bad Content-Length"))?;
                if cl.is_some_and(|c| c != v) {
                    return Err(UpstreamError::BadResponse(
                        "differing Content-Length headers",
                    ));
                }
                cl = Some(v);
            } else if eq(h.name, "transfer-encoding") {
                te = Some(final_chunked(h.value) && te.is_none());
            }
        }
        if te.is_some() && cl.is_some() {
            return Err(UpstreamError::BadResponse(
                "both Content-Length and Transfer-Encoding",
            ));
        }
        let body = if tunnel
            || ctx.head_method
            || code == 204
            || code == 304
            || (100..200).contains(&code)
        {
            Body::None
        } else {
            match (te, cl) {
                (Some(true), _) => Body::chunked(),
                (Some(false), _) => Body::Close,
                (None, Some(0)) => Body::None,
                (None, Some(n)) => Body::Length(n),
                (None, None) => Body::Close,
            }
        };
        // `Connection` naming a framing header would make us strip the very header the
        // body is framed by.
        if ["content-length", "transfer-encoding"]
            .iter()
            .any(|n| named_in_connection(hs, n))
        {
            return Err(UpstreamError::BadResponse(
                "Connection names a framing header",
            ));
        }
        let reusable = !tunnel
            && minor == 1
            && !ctx.http10
            && body != Body::Close
            && !named_in_connection(hs, "close");
        let client_keep = ctx.client_keep && !tunnel && body != Body::Close;
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
        } else if !client_keep {
            out.extend_from_slice(b"Connection: close\r\n\r\n");
        } else if ctx.http10 {
            out.extend_from_slice(b"Connection: keep-alive\r\n\r\n");
        } else {
            out.extend_from_slice(b"\r\n");
        }
        return Ok(Some(ResponseInfo {
            head_len: pos + n,
            status: code,
            tunnel,
            body,
            reusable,
            client_keep,
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
    /// 408 Request Timeout (the request body stopped arriving).
    pub const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\nrequest timeout\n";
    /// 417 Expectation Failed (an `Expect` other than `100-continue`).
    pub const EXPECTATION_FAILED: &[u8] = b"HTTP/1.1 417 Expectation Failed\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nConnection: close\r\n\r\nexpectation failed\n";
    /// Interim answer to `Expect: 100-continue`.
    pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    /// 504 Gateway Timeout.
    pub const GATEWAY_TIMEOUT: &[u8] = b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\ngateway timeout\n";
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip() -> IpAddr {
        "10.1.2.3".parse().unwrap()
    }

    fn up() -> ResponseCtx {
        ResponseCtx {
            upgrade: true,
            ..ResponseCtx::default()
        }
    }

    fn keep() -> ResponseCtx {
        ResponseCtx {
            client_keep: true,
            ..ResponseCtx::default()
        }
    }

    #[test]
    fn canned_replies_have_right_lengths() {
        for r in [
            reply::BAD_REQUEST,
            reply::TOO_LARGE,
            reply::BAD_GATEWAY,
            reply::UNAVAILABLE,
            reply::GATEWAY_TIMEOUT,
            reply::REQUEST_TIMEOUT,
            reply::EXPECTATION_FAILED,
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
    fn responses() {
        let mut out = Vec::new();
        let r = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: k\r\n\r\nDATA";
        let info = parse_response(r, 16384, up(), &mut out).unwrap().unwrap();
        assert!(info.tunnel);
        assert_eq!(&r[info.head_len..], b"DATA");
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(s.contains("Sec-WebSocket-Accept: k\r\n"));
        assert!(s.ends_with("Upgrade: websocket\r\nConnection: upgrade\r\n\r\n"));

        assert!(
            parse_response(r, 16384, ResponseCtx::default(), &mut out).is_err(),
            "unrequested 101"
        );

        let r = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
        let info = parse_response(r, 16384, ResponseCtx::default(), &mut out)
            .unwrap()
            .unwrap();
        assert_eq!(info.status, 404);
        assert!(!info.tunnel);
        assert_eq!(info.head_len, r.len());
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(
            s.starts_with(
                "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 404 Not Found\r\n"
            ),
            "100 Continue is ringway's to send; other interim answers pass: {s}"
        );
        assert!(s.ends_with("Connection: close\r\n\r\n"));
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\n",
                16384,
                ResponseCtx::default(),
                &mut out
            ),
            Ok(None)
        );
    }

    #[test]
    fn response_framing_and_reuse() {
        let mut out = Vec::new();
        let mut parse = |r: &[u8], ctx| parse_response(r, 16384, ctx, &mut out).unwrap().unwrap();
        let i = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            keep(),
        );
        assert_eq!(i.body, Body::chunked());
        assert!(i.reusable && i.client_keep);
        let i = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n",
            ResponseCtx {
                head_method: true,
                ..keep()
            },
        );
        assert_eq!(i.body, Body::None, "HEAD: no body whatever the length says");
        for r in [
            &b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n"[..],
            b"HTTP/1.1 304 Not Modified\r\n\r\n",
        ] {
            assert_eq!(parse(r, keep()).body, Body::None);
        }
        let i = parse(b"HTTP/1.1 200 OK\r\n\r\n", keep());
        assert_eq!(i.body, Body::Close);
        assert!(
            !i.reusable && !i.client_keep,
            "close-delimited ends both connections"
        );
        let i = parse(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\n",
            keep(),
        );
        assert!(
            !i.reusable && i.client_keep,
            "the backend's close is its own hop"
        );
        let i = parse(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\n", keep());
        assert!(!i.reusable);
        let i = parse(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            keep(),
        );
        assert_eq!(i.body, Body::Close, "unknown coding: read to the end");
        let s = String::from_utf8(out.clone()).unwrap();
        assert!(s.ends_with("Connection: close\r\n\r\n"), "{s}");
        for bad in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: content-length\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: Transfer-Encoding\r\n\r\n",
        ] {
            assert!(parse_response(bad, 16384, keep(), &mut out).is_err());
        }
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
}
