//! HTTP/1.1 message framing shared by wsecho (requests) and loadgen (responses), on top of
//! httparse: how long a head is, how its body is framed (RFC 9112 §6), whether the connection
//! stays open, and an incremental chunked-body decoder that skips data without buffering it.
//! Nothing here allocates except the WebSocket key of an upgrade request.

use httparse::Status;

use crate::ws;

/// Most header lines parsed per head (more is answered `431`).
pub const MAX_HEADERS: usize = 64;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding (see [`Chunked`]).
    Chunked,
    /// Everything until the peer closes (responses only).
    UntilClose,
}

/// A complete request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Bytes taken by the head (request line, headers and the empty line).
    pub len: usize,
    /// `HEAD`: the answer has headers only.
    pub head_only: bool,
    /// HTTP/1.0 (minor version 0).
    pub http10: bool,
    /// The connection stays open after the answer (1.1 without `Connection: close`, or 1.0
    /// with `Connection: keep-alive`).
    pub keep_alive: bool,
    /// `Expect: 100-continue` on a request with a body.
    pub expect_continue: bool,
    /// The request body's framing.
    pub body: Body,
    /// `Sec-WebSocket-Key` of a WebSocket upgrade (`Upgrade: websocket` plus a key).
    pub upgrade_key: Option<String>,
}

/// Why a request head was refused; each maps to one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// Unparsable head or contradictory framing: `400`.
    Malformed(&'static str),
    /// More than [`MAX_HEADERS`] header lines: `431`.
    TooManyHeaders,
    /// A transfer coding other than a final `chunked`: `501`.
    Unsupported(&'static str),
}

/// A complete response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes taken by the head.
    pub len: usize,
    /// Status code.
    pub status: u16,
    /// The server closes after this response (`Connection: close`, HTTP/1.0 without
    /// keep-alive, or a body delimited by the close).
    pub close: bool,
    /// The response body's framing.
    pub body: Body,
}

fn text(v: &[u8]) -> &str {
    std::str::from_utf8(v).unwrap_or("")
}

/// A Content-Length value: digits only, at most 18 of them.
fn content_length(v: &[u8]) -> Option<u64> {
    let v = text(v).trim();
    if v.is_empty() || v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Framing headers common to requests and responses.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    chunked: Option<bool>,
    close: bool,
    keep_alive: bool,
}

fn framing(headers: &[httparse::Header<'_>]) -> Result<Framing, &'static str> {
    let mut f = Framing::default();
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = content_length(h.value).ok_or("bad Content-Length")?;
            if f.length.is_some_and(|m| m != n) {
                return Err("differing Content-Length headers");
            }
            f.length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Only a single final `chunked` can be framed; several TE headers concatenate.
            let last = text(h.value).rsplit(',').next().unwrap_or("").trim();
            f.chunked = Some(f.chunked.is_none() && last.eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("connection") {
            let v = text(h.value);
            f.close |= ws::has_token(v, "close");
            f.keep_alive |= ws::has_token(v, "keep-alive");
        }
    }
    if f.length.is_some() && f.chunked.is_some() {
        return Err("both Content-Length and Transfer-Encoding");
    }
    Ok(f)
}

/// Parses the request head at the start of `buf`; `Ok(None)` means more bytes are needed.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead>, HeadError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
        Err(_) => return Err(HeadError::Malformed("malformed request head")),
    };
    let http10 = req.version == Some(0);
    let f = framing(req.headers).map_err(HeadError::Malformed)?;
    let body = match (f.chunked, f.length) {
        (Some(true), _) if !http10 => Body::Chunked,
        (Some(_), _) => return Err(HeadError::Unsupported("unsupported Transfer-Encoding")),
        (None, Some(0) | None) => Body::None,
        (None, Some(n)) => Body::Length(n),
    };
    let value = |name: &str| {
        req.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| text(h.value))
    };
    let upgrade = value("upgrade").is_some_and(|v| ws::has_token(v, "websocket"));
    let upgrade_key = if upgrade {
        value("sec-websocket-key").map(|k| k.trim().to_string())
    } else {
        None
    };
    let expect_continue = !http10
        && body != Body::None
        && value("expect").is_some_and(|v| v.trim().eq_ignore_ascii_case("100-continue"));
    Ok(Some(RequestHead {
        len,
        head_only: req.method == Some("HEAD"),
        http10,
        keep_alive: if http10 {
            f.keep_alive && !f.close
        } else {
            !f.close
        },
        expect_continue,
        body,
        upgrade_key,
    }))
}

/// Parses the response head at the start of `buf` (to a `HEAD` request when `head_request`);
/// `Ok(None)` means more bytes are needed.
pub fn parse_response(
    buf: &[u8],
    head_request: bool,
) -> Result<Option<ResponseHead>, &'static str> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(Status::Complete(n)) => n,
        Ok(Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err("too many response headers"),
        Err(_) => return Err("malformed response head"),
    };
    let status = resp.code.unwrap_or(0);
    let http10 = resp.version == Some(0);
    let f = framing(resp.headers)?;
    let no_body = head_request || (100..200).contains(&status) || status == 204 || status == 304;
    let body = match (no_body, f.chunked, f.length) {
        (true, _, _) => Body::None,
        (false, Some(true), _) => Body::Chunked,
        (false, Some(false), _) | (false, None, None) => Body::UntilClose,
        (false, None, Some(0)) => Body::None,
        (false, None, Some(n)) => Body::Length(n),
    };
    let keep = if http10 {
        f.keep_alive && !f.close
    } else {
        !f.close
    };
    Ok(Some(ResponseHead {
        len,
        status,
        close: !keep || body == Body::UntilClose,
        body,
    }))
}

/// The GET request loadgen sends: `GET path HTTP/1.1` with a Host header, nothing else.
pub fn get_request(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// Where a [`Chunked`] decoder is within the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChunkState {
    /// Reading the hex size (digits seen so far).
    Size(u8),
    /// Skipping a chunk extension up to the end of the line.
    Ext,
    /// Expecting the LF of the size line.
    SizeLf,
    /// Skipping chunk data (bytes left).
    Data(u64),
    /// Expecting the CR after the data.
    DataCr,
    /// Expecting the LF after the data.
    DataLf,
    /// In the trailer section (bytes on the current line, CR excluded).
    Trailer(u32),
    /// The last chunk and the trailer section are done.
    Done,
}

/// Incremental decoder of a chunked body that skips the data: feed it whatever bytes arrived,
/// it says how many belong to the body and whether the body ended. Lenient about bare LF line
/// ends; strict about sizes.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: ChunkState,
    size: u64,
}

impl Default for Chunked {
    fn default() -> Self {
        Chunked {
            state: ChunkState::Size(0),
            size: 0,
        }
    }
}

impl Chunked {
    /// A decoder at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Consumes body bytes from the start of `buf`; returns `(bytes used, body finished)`.
    /// Bytes after the end of the body are left unused.
    pub fn feed(&mut self, buf: &[u8]) -> Result<(usize, bool), &'static str> {
        use ChunkState as S;
        let mut i = 0;
        while i < buf.len() {
            if let S::Data(left) = self.state {
                let n = left.min((buf.len() - i) as u64);
                i += n as usize;
                self.state = if left == n {
                    S::DataCr
                } else {
                    S::Data(left - n)
                };
                continue;
            }
            let c = buf[i];
            i += 1;
            self.state = match (self.state, c) {
                (S::Size(d), _) if c.is_ascii_hexdigit() => {
                    if d >= 15 {
                        return Err("chunk size too large");
                    }
                    let v = (c as char).to_digit(16).unwrap_or(0) as u64;
                    self.size = self.size * 16 + v;
                    S::Size(d + 1)
                }
                (S::Size(0), _) => return Err("bad chunk size"),
                (S::Size(_), b';' | b' ' | b'\t') => S::Ext,
                (S::Size(_) | S::Ext, b'\r') => S::SizeLf,
                (S::Size(_) | S::Ext | S::SizeLf, b'\n') => {
                    let size = std::mem::take(&mut self.size);
                    if size == 0 {
                        S::Trailer(0)
                    } else {
                        S::Data(size)
                    }
                }
                (S::Size(_) | S::SizeLf, _) => return Err("bad chunk size line"),
                (S::Ext, _) => S::Ext,
                (S::DataCr, b'\r') => S::DataLf,
                (S::DataCr | S::DataLf, b'\n') => S::Size(0),
                (S::DataCr | S::DataLf, _) => return Err("chunk data not followed by CRLF"),
                (S::Trailer(0), b'\n') => {
                    self.state = S::Done;
                    return Ok((i, true));
                }
                (S::Trailer(_), b'\n') => S::Trailer(0),
                (S::Trailer(n), b'\r') => S::Trailer(n),
                (S::Trailer(n), _) => {
                    if n >= 16 * 1024 {
                        return Err("chunk trailer line too long");
                    }
                    S::Trailer(n + 1)
                }
                (S::Data(_), _) => unreachable!("handled above"),
                (S::Done, _) => return Ok((i - 1, true)),
            };
        }
        Ok((i, self.state == S::Done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(s: &str) -> RequestHead {
        parse_request(s.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn request_keep_alive_rules() {
        let r = req("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(r.keep_alive && !r.head_only && !r.http10);
        assert_eq!(r.body, Body::None);
        assert!(!req("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!req("GET / HTTP/1.0\r\n\r\n").keep_alive);
        assert!(req("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keep_alive);
        assert!(req("HEAD /x HTTP/1.1\r\n\r\n").head_only);
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap(),
            None
        );
    }

    #[test]
    fn request_bodies_and_errors() {
        let r = req("POST / HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(r.body, Body::Length(5));
        assert!(r.expect_continue);
        let r = req("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(r.body, Body::Chunked);
        assert_eq!(
            req("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").body,
            Body::None
        );
        let e = |s: &str| parse_request(s.as_bytes()).unwrap_err();
        assert!(matches!(
            e("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HeadError::Malformed(_)
        ));
        assert!(matches!(
            e("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            HeadError::Malformed(_)
        ));
        assert!(matches!(
            e("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"),
            HeadError::Malformed(_)
        ));
        assert!(matches!(
            e("POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"),
            HeadError::Unsupported(_)
        ));
        assert!(matches!(
            e("BAD\0 / HTTP/1.1\r\n\r\n"),
            HeadError::Malformed(_)
        ));
        let many: String = (0..MAX_HEADERS + 1)
            .map(|i| format!("X-{i}: y\r\n"))
            .collect();
        assert_eq!(
            e(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
            HeadError::TooManyHeaders
        );
    }

    #[test]
    fn request_upgrade_key() {
        let r = req("GET / HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: abc \r\n\r\n");
        assert_eq!(r.upgrade_key.as_deref(), Some("abc"));
        assert_eq!(
            req("GET / HTTP/1.1\r\nUpgrade: h2c\r\nSec-WebSocket-Key: abc\r\n\r\n").upgrade_key,
            None
        );
    }

    #[test]
    fn response_framing() {
        let p = |s: &str, head: bool| parse_response(s.as_bytes(), head).unwrap().unwrap();
        let r = p("HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\n", false);
        assert_eq!((r.status, r.close, r.body), (200, false, Body::Length(13)));
        assert_eq!(r.len, 39);
        let r = p(
            "HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n",
            false,
        );
        assert!(r.close);
        let r = p(
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(r.body, Body::Chunked);
        let r = p("HTTP/1.1 200 OK\r\n\r\n", false);
        assert_eq!((r.body, r.close), (Body::UntilClose, true));
        assert_eq!(
            p("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true).body,
            Body::None
        );
        assert_eq!(p("HTTP/1.1 204 No Content\r\n\r\n", false).body, Body::None);
        assert!(p("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", false).close);
        assert!(
            !p(
                "HTTP/1.0 200 OK\r\nContent-Length: 1\r\nConnection: keep-alive\r\n\r\n",
                false
            )
            .close
        );
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n", false).unwrap(), None);
        assert!(parse_response(b"HTTP/1.1 2x0 OK\r\n\r\n", false).is_err());
    }

    #[test]
    fn chunked_whole_and_byte_by_byte() {
        let body = b"5;ext=1\r\nhello\r\n10\r\n0123456789abcdef\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        let mut c = Chunked::new();
        assert_eq!(c.feed(body).unwrap(), (body.len() - 4, true));
        let mut c = Chunked::new();
        let mut used = 0;
        for (i, b) in body.iter().enumerate() {
            let (n, done) = c.feed(std::slice::from_ref(b)).unwrap();
            used += n;
            if done {
                assert_eq!(i + 1, body.len() - 4);
                break;
            }
        }
        assert_eq!(used, body.len() - 4);
        // Bare LF line ends, no trailer.
        let mut c = Chunked::new();
        assert_eq!(c.feed(b"3\nabc\n0\n\n").unwrap(), (9, true));
    }

    #[test]
    fn chunked_errors() {
        assert!(Chunked::new().feed(b"x\r\n").is_err());
        assert!(Chunked::new().feed(b"\r\n").is_err());
        assert!(Chunked::new().feed(b"1\r\naXY").is_err());
        assert!(Chunked::new().feed(b"1234567890abcdef0\r\n").is_err());
    }
}
