//! Response heads: parse the backend's answer (interim 1xx included), decide body framing
//! and connection reuse, and rewrite it for the client.

use super::{
    content_length, eq, final_chunked, has_token, is_hop_by_hop, named_in_connection, MAX_HEADERS,
};
use crate::body::Body;
use std::io::Write as _;

/// A problem with what the backend sent → 502.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// Unparseable, oversized, or inconsistent response head.
    BadResponse(&'static str),
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
