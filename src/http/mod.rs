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
//! framing ([`Body`](crate::body::Body)). An incomplete head is `Ok(None)`, not an error.

pub mod reply;
mod request;
mod response;

pub use crate::config::{default_set_headers, HashKey, Part, SetHeader, Var};
pub use request::{
    cookie_value, parse_request, parse_request_routed, parse_request_with, ClientError,
    RequestInfo, RequestRules, Routed,
};
pub use response::{
    parse_response, parse_response_sticky, ResponseCtx, ResponseInfo, UpstreamError,
};

/// Most headers accepted in one head.
pub(crate) const MAX_HEADERS: usize = 128;

pub(crate) fn eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

pub(crate) fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| {
        std::str::from_utf8(t)
            .map(|t| eq(t.trim(), token))
            .unwrap_or(false)
    })
}

pub(crate) fn is_hop_by_hop(name: &str) -> bool {
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
pub(crate) fn named_in_connection(headers: &[httparse::Header<'_>], name: &str) -> bool {
    headers
        .iter()
        .filter(|h| eq(h.name, "connection"))
        .any(|h| has_token(h.value, name))
}

/// The value of one `Content-Length` header: digits only.
pub(crate) fn content_length(v: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether the last coding of a Transfer-Encoding value is `chunked`.
pub(crate) fn final_chunked(v: &[u8]) -> bool {
    v.rsplit(|&b| b == b',')
        .next()
        .and_then(|t| std::str::from_utf8(t).ok())
        .is_some_and(|t| eq(t.trim(), "chunked"))
}
