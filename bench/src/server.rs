//! wsecho's connection handling: a keep-alive HTTP/1.1 request loop. Every plain request gets
//! `200 OK` with the body `backend:<port>\n` (headers only for `HEAD`), in order, however many
//! arrive in one read (pipelining); request bodies (Content-Length or chunked) are read and
//! dropped. The connection stays open unless the request says otherwise (`Connection: close`,
//! HTTP/1.0 without keep-alive) or is malformed (`400`/`431`/`501`, then close). A WebSocket
//! upgrade, first or after plain requests, hands the connection to `echo.rs`.
//!
//! Memory: an idle connection holds no buffer. Input goes through a 64 KiB buffer and answers
//! through an output buffer, both borrowed from per-thread pools (`pool.rs`) while bytes are
//! pending and given back as soon as the connection idles.

use std::cell::RefCell;
use std::io;

use tokio::io::AsyncWriteExt;

use crate::http::{self, Body, Chunked, HeadError};
use crate::pool;
use crate::sock::{self, Sock};

/// Longest request head accepted (longer is answered `431`).
const MAX_HEAD: usize = 16 * 1024;
/// Answers are written once this many bytes are queued, even mid-batch.
const OUT_FLUSH: usize = 32 * 1024;

const TOO_LARGE: &[u8] =
    b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
const BAD_REQUEST: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
const NOT_IMPLEMENTED: &[u8] =
    b"HTTP/1.1 501 Not Implemented\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// What the `Connection` header of an answer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Persist {
    /// HTTP/1.1 keep-alive: no header.
    Keep,
    /// `Connection: keep-alive` (an HTTP/1.0 client that asked for it).
    KeepAlive10,
    /// `Connection: close`, then close.
    Close,
}

/// The answer owed to a request whose body is still arriving.
#[derive(Debug, Clone, Copy)]
struct Answer {
    head_only: bool,
    persist: Persist,
}

/// The `200 OK` answers of one backend port, built once per thread.
struct Answers {
    port: u16,
    keep: Vec<u8>,
    keep10: Vec<u8>,
    close: Vec<u8>,
    body_len: usize,
}

impl Answers {
    fn new(port: u16) -> Self {
        let body = format!("backend:{port}\n");
        let make = |conn: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{conn}\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        Answers {
            port,
            keep: make(""),
            keep10: make("Connection: keep-alive\r\n"),
            close: make("Connection: close\r\n"),
            body_len: body.len(),
        }
    }
}

thread_local! {
    static ANSWERS: RefCell<Option<Answers>> = const { RefCell::new(None) };
}

/// Appends the `200 OK` answer for `a` to `out` (no allocation once `out` has room).
fn push_answer(out: &mut Vec<u8>, port: u16, a: Answer) {
    ANSWERS.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|x| x.port != port) {
            *cell = Some(Answers::new(port));
        }
        let x = cell.as_ref().expect("answers built");
        let full = match a.persist {
            Persist::Keep => &x.keep,
            Persist::KeepAlive10 => &x.keep10,
            Persist::Close => &x.close,
        };
        let n = if a.head_only {
            full.len() - x.body_len
        } else {
            full.len()
        };
        out.extend_from_slice(&full[..n]);
    });
}

/// What follows the request loop.
enum After {
    Close,
    Upgrade { key: String, rest: Vec<u8> },
}

/// Where the request being read is.
enum Req {
    /// Between requests: the next bytes start a head.
    Head,
    /// Dropping a Content-Length body (bytes left), then answering.
    Body(u64, Answer),
    /// Dropping a chunked body, then answering.
    Chunked(Chunked, Answer),
}

/// One connection's buffers; gives them back to the pools when dropped (on every exit path,
/// task abort included).
struct Conn<'a, S: Sock> {
    stream: &'a mut S,
    port: u16,
    buf: Option<Box<[u8]>>,
    /// `buf[start..end]` is received and not yet consumed.
    start: usize,
    end: usize,
    out: Vec<u8>,
}

impl<S: Sock> Drop for Conn<'_, S> {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            pool::give_buf(b);
        }
        pool::give_out(std::mem::take(&mut self.out));
    }
}

/// Serves one accepted connection (TCP with TCP_NODELAY set, or TLS over it) until it closes.
/// `port` names this backend in the banner and in the body of plain answers.
pub async fn serve<S: Sock>(mut stream: S, port: u16) -> io::Result<()> {
    let mut c = Conn {
        stream: &mut stream,
        port,
        buf: None,
        start: 0,
        end: 0,
        out: Vec::new(),
    };
    let after = c.requests().await?;
    drop(c);
    match after {
        After::Close => Ok(()),
        After::Upgrade { key, rest } => crate::echo::upgrade(stream, port, &key, &rest).await,
    }
}

impl<S: Sock> Conn<'_, S> {
    /// Queues bytes for the client (borrowing an output buffer when none is held).
    fn queue(&mut self, bytes: &[u8]) {
        if self.out.capacity() == 0 {
            self.out = pool::take_out();
        }
        self.out.extend_from_slice(bytes);
    }

    fn queue_answer(&mut self, a: Answer) {
        if self.out.capacity() == 0 {
            self.out = pool::take_out();
        }
        push_answer(&mut self.out, self.port, a);
    }

    /// Writes what is queued and gives the output buffer back.
    async fn flush(&mut self) -> io::Result<()> {
        if !self.out.is_empty() {
            sock::send(self.stream, &self.out).await?;
        }
        pool::give_out(std::mem::take(&mut self.out));
        Ok(())
    }

    /// Consumes what is buffered: bodies, heads, answers. Returns `Some` when the loop ends
    /// (close or upgrade) and `None` when more input is needed.
    async fn process(&mut self, req: &mut Req) -> io::Result<Option<After>> {
        let Some(b) = self.buf.take() else {
            return Ok(None);
        };
        let r = self.process_in(&b, req).await;
        self.buf = Some(b);
        r
    }

    async fn process_in(&mut self, b: &[u8], req: &mut Req) -> io::Result<Option<After>> {
        loop {
            // Finish the current request's body, then answer it.
            let done = match req {
                Req::Head => None,
                Req::Body(left, a) => {
                    let n = (*left).min((self.end - self.start) as u64);
                    self.start += n as usize;
                    *left -= n;
                    (*left == 0).then_some(*a)
                }
                Req::Chunked(dec, a) => match dec.feed(&b[self.start..self.end]) {
                    Ok((n, fin)) => {
                        self.start += n;
                        fin.then_some(*a)
                    }
                    Err(_) => {
                        self.queue(BAD_REQUEST);
                        return Ok(Some(After::Close));
                    }
                },
            };
            match (&*req, done) {
                (Req::Head, _) => {}
                (_, Some(a)) => {
                    *req = Req::Head;
                    self.queue_answer(a);
                    if a.persist == Persist::Close {
                        return Ok(Some(After::Close));
                    }
                }
                (_, None) => return Ok(None),
            }
            if self.out.len() >= OUT_FLUSH {
                self.flush().await?;
            }
            if self.start == self.end {
                return Ok(None);
            }
            let head = match http::parse_request(&b[self.start..self.end]) {
                Ok(Some(h)) if h.len <= MAX_HEAD => h,
                Ok(None) if self.end - self.start <= MAX_HEAD => return Ok(None),
                Ok(_) | Err(HeadError::TooManyHeaders) => {
                    self.queue(TOO_LARGE);
                    return Ok(Some(After::Close));
                }
                Err(HeadError::Malformed(_)) => {
                    self.queue(BAD_REQUEST);
                    return Ok(Some(After::Close));
                }
                Err(HeadError::Unsupported(_)) => {
                    self.queue(NOT_IMPLEMENTED);
                    return Ok(Some(After::Close));
                }
            };
            self.start += head.len;
            if let Some(key) = head.upgrade_key {
                return Ok(Some(After::Upgrade {
                    key,
                    rest: b[self.start..self.end].to_vec(),
                }));
            }
            let a = Answer {
                head_only: head.head_only,
                persist: match (head.keep_alive, head.http10) {
                    (false, _) => Persist::Close,
                    (true, false) => Persist::Keep,
                    (true, true) => Persist::KeepAlive10,
                },
            };
            if head.expect_continue {
                self.queue(CONTINUE);
            }
            *req = match head.body {
                Body::None | Body::UntilClose => Req::Body(0, a),
                Body::Length(n) => Req::Body(n, a),
                Body::Chunked => Req::Chunked(Chunked::new(), a),
            };
        }
    }

    /// The request loop: read, answer, repeat until the client closes, a request asks for the
    /// close, or an upgrade arrives.
    async fn requests(&mut self) -> io::Result<After> {
        let mut req = Req::Head;
        loop {
            let next = self.process(&mut req).await?;
            self.flush().await?;
            if let Some(after) = next {
                if matches!(after, After::Close) {
                    let _ = self.stream.shutdown().await;
                }
                return Ok(after);
            }
            // Make room: drop consumed bytes, keep a partial head at the front.
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                if let Some(b) = self.buf.take() {
                    pool::give_buf(b);
                }
            } else if self.end == pool::BUF_SIZE {
                let b = self.buf.as_mut().expect("buffer present");
                b.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            // Read more. Without a buffer, wait for readability first so idle connections hold
            // none.
            if self.buf.is_none() {
                self.stream.readable().await?;
            }
            let b = self.buf.get_or_insert_with(pool::take_buf);
            let space = b.len() - self.end;
            match self.stream.try_read(&mut b[self.end..]) {
                Ok(0) => return Ok(After::Close),
                Ok(n) => {
                    self.end += n;
                    if n < space {
                        // A short read drained the socket: drop tokio's cached readiness now
                        // rather than paying a read(2) that returns EAGAIN later (bytes arriving
                        // after this raise a new edge event).
                        self.stream.drained();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if self.end == 0 {
                        if let Some(b) = self.buf.take() {
                            pool::give_buf(b);
                        }
                    } else {
                        self.stream.readable().await?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
}
