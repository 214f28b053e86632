//! The load generator's WebSocket client: connect (+ TLS with `--tls`) + upgrade + banner, a frame
//! reader that can skip payloads without buffering them, and the classification of failures into
//! the reported kinds.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

use crate::stream::Stream;
use crate::tls::TlsClient;
use crate::ws::{self, Header};

/// Why a connection attempt or an exchange failed, in the kinds the reports count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// ECONNREFUSED.
    Refused,
    /// ECONNRESET, EPIPE or ECONNABORTED.
    Reset,
    /// The peer closed (EOF or a close frame) before the exchange finished.
    Eof,
    /// No answer within the timeout.
    Timeout,
    /// The upgrade was answered with another HTTP status.
    Http(u16),
    /// Anything else, with a short description.
    Other(String),
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        use io::ErrorKind as K;
        match e.kind() {
            K::ConnectionRefused => Failure::Refused,
            K::ConnectionReset | K::BrokenPipe | K::ConnectionAborted => Failure::Reset,
            K::UnexpectedEof => Failure::Eof,
            K::TimedOut => Failure::Timeout,
            // rustls errors (alerts, bad certificates) come as InvalidData: name them as TLS.
            K::InvalidData if e.get_ref().is_some_and(|x| x.is::<rustls::Error>()) => {
                Failure::Other(format!("tls: {e}"))
            }
            _ => Failure::Other(e.to_string()),
        }
    }
}

fn eof() -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, "peer closed")
}

fn proto(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Reads frames from a byte stream through a reusable buffer. Payloads can be skipped without
/// ever holding a whole message, so multi-megabyte echoes need no large buffers. The buffer is
/// released by [`FrameReader::release`] while a connection idles.
#[derive(Debug)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
    end: usize,
    cap: usize,
}

impl FrameReader {
    /// A reader whose buffer (allocated on first use) holds `cap` bytes.
    pub fn new(cap: usize) -> Self {
        FrameReader {
            buf: Vec::new(),
            start: 0,
            end: 0,
            cap: cap.max(256),
        }
    }

    /// Bytes buffered but not consumed.
    pub fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// Frees the buffer if nothing is pending (an idle connection then holds no buffer).
    pub fn release(&mut self) {
        if self.start == self.end {
            self.buf = Vec::new();
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads more bytes; returns how many (0 = EOF). Compacts or grows the buffer as needed.
    pub async fn fill<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<usize> {
        self.make_room();
        let n = r.read(&mut self.buf[self.end..]).await?;
        self.end += n;
        Ok(n)
    }

    /// Reads whatever is ready without waiting (for idle connections polled by `readable`).
    pub fn try_fill(&mut self, s: &TcpStream) -> io::Result<usize> {
        self.make_room();
        let n = s.try_read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    fn make_room(&mut self) {
        if self.buf.is_empty() {
            self.buf = vec![0; self.cap];
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            } else {
                let n = self.buf.len() * 2;
                self.buf.resize(n, 0);
            }
        }
    }

    /// Consumes `n` pending bytes (at most what is pending).
    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
    }

    /// Drops every pending byte (the connection they came from is gone); keeps the buffer.
    pub fn clear(&mut self) {
        self.start = 0;
        self.end = 0;
    }

    /// Reads more bytes; an EOF is an `UnexpectedEof` error.
    pub async fn fill_required<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<()> {
        if self.fill(r).await? == 0 {
            return Err(eof());
        }
        Ok(())
    }

    /// Reads an HTTP response head; returns it as text and consumes it.
    pub async fn read_head<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<String> {
        loop {
            if let Some(n) = ws::head_end(self.pending()) {
                let head = String::from_utf8_lossy(&self.pending()[..n]).into_owned();
                self.start += n;
                return Ok(head);
            }
            if self.end - self.start > 64 * 1024 {
                return Err(proto("response head longer than 64 KiB"));
            }
            self.fill_required(r).await?;
        }
    }

    /// Reads and consumes the next frame header.
    pub async fn read_header<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> io::Result<Header> {
        loop {
            match ws::parse_header(self.pending()) {
                Ok(Some(h)) => {
                    self.start += h.header_len;
                    return Ok(h);
                }
                Ok(None) => self.fill_required(r).await?,
                Err(e) => return Err(proto(e.to_string())),
            }
        }
    }

    /// Consumes `len` payload bytes, calling `seen` with the byte count of each piece as it is
    /// consumed (bulk transfers count bytes as they arrive).
    pub async fn skip<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        mut len: u64,
        mut seen: impl FnMut(u64),
    ) -> io::Result<()> {
        loop {
            let have = (self.end - self.start) as u64;
            let take = have.min(len);
            if take > 0 {
                self.start += take as usize;
                len -= take;
                seen(take);
            }
            if len == 0 {
                return Ok(());
            }
            self.fill_required(r).await?;
        }
    }

    /// Reads a whole payload of `len` bytes (small frames only) and returns it.
    pub async fn read_payload<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        len: usize,
    ) -> io::Result<Vec<u8>> {
        while self.end - self.start < len {
            self.fill_required(r).await?;
        }
        let v = self.pending()[..len].to_vec();
        self.start += len;
        Ok(v)
    }

    /// Reads the next data frame's header, skipping pongs and pings (a benchmark client does not
    /// answer pings); a close frame is reported as EOF.
    pub async fn next_data_header<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
    ) -> io::Result<Header> {
        loop {
            let h = self.read_header(r).await?;
            match h.opcode {
                ws::OP_PING | ws::OP_PONG => self.skip(r, h.len, |_| {}).await?,
                ws::OP_CLOSE => return Err(eof()),
                _ => return Ok(h),
            }
        }
    }

    /// Reads one echoed message of exactly `len` payload bytes (any number of fragments).
    pub async fn read_echo<R: AsyncRead + Unpin>(&mut self, r: &mut R, len: u64) -> io::Result<()> {
        let mut got = 0u64;
        loop {
            let h = self.next_data_header(r).await?;
            got += h.len;
            if got > len {
                return Err(proto(format!("echo longer than the {len} bytes sent")));
            }
            self.skip(r, h.len, |_| {}).await?;
            if h.fin {
                if got != len {
                    return Err(proto(format!("echo of {got} bytes, expected {len}")));
                }
                return Ok(());
            }
        }
    }
}

/// An upgraded client connection.
#[derive(Debug)]
pub struct WsClient {
    /// The connection (TCP, or TLS over it).
    pub stream: Stream,
    /// Its reader (holding any bytes received past the last consumed frame).
    pub rd: FrameReader,
}

impl WsClient {
    /// Connects (with `tls`, then the TLS handshake), upgrades (`GET path`) and reads the
    /// first message, which wsecho makes its `backend:<port>` banner. Returns the client and
    /// the banner text.
    pub async fn open(
        target: SocketAddrV4,
        src: Option<Ipv4Addr>,
        path: &str,
        buf_cap: usize,
        tls: Option<&TlsClient>,
    ) -> Result<(WsClient, String), Failure> {
        let mut stream = Stream::connect(target, src, tls).await?;
        let req = ws::client_request(&target.to_string(), path);
        stream.send(&req).await?;
        let mut rd = FrameReader::new(buf_cap);
        let head = rd.read_head(&mut stream).await?;
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse::<u16>().ok())
            .ok_or_else(|| Failure::Other("malformed HTTP response".into()))?;
        if status != 101 {
            return Err(Failure::Http(status));
        }
        let accept = ws::header_value(&head, "sec-websocket-accept").unwrap_or("");
        if accept != ws::accept_key(ws::CLIENT_KEY) {
            return Err(Failure::Other("bad Sec-WebSocket-Accept".into()));
        }
        let h = rd.next_data_header(&mut stream).await?;
        let banner = if h.len <= 256 {
            let p = rd.read_payload(&mut stream, h.len as usize).await?;
            String::from_utf8_lossy(&p).into_owned()
        } else {
            rd.skip(&mut stream, h.len, |_| {}).await?;
            "(long first message)".into()
        };
        Ok((WsClient { stream, rd }, banner))
    }

    /// Sends one prebuilt (masked) frame and waits for its echo of `len` payload bytes.
    pub async fn echo(&mut self, frame: &[u8], len: u64) -> io::Result<()> {
        self.stream.send(frame).await?;
        self.rd.read_echo(&mut self.stream, len).await?;
        if self.rd.pending().is_empty() {
            // In a closed loop nothing more arrives before the next request.
            self.stream.drained();
        }
        Ok(())
    }

    /// Waits until the peer closes or fails (bytes that arrive meanwhile are kept for later
    /// reads). Holds no buffer of its own while nothing arrives (over TLS, rustls keeps its
    /// 4 KiB record buffer).
    pub async fn wait_closed(&mut self) -> Failure {
        loop {
            self.rd.release();
            if let Err(e) = self.stream.tcp().readable().await {
                return e.into();
            }
            let r = match &self.stream {
                Stream::Plain(s) => self.rd.try_fill(s),
                // Records (tickets, data, close_notify) go through rustls; a partial one waits.
                Stream::Tls(_) => self.rd.fill(&mut self.stream).await,
            };
            match r {
                Ok(0) => return Failure::Eof,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return e.into(),
            }
        }
    }

    /// Sends a close frame and waits (bounded by the caller) for the peer's close or EOF.
    pub async fn close(mut self, mask: [u8; 4]) {
        let f = ws::build_frame(ws::OP_CLOSE, &1000u16.to_be_bytes(), Some(mask));
        if self.stream.send(&f).await.is_err() {
            return;
        }
        loop {
            match self.rd.read_header(&mut self.stream).await {
                Ok(h) if h.opcode == ws::OP_CLOSE => return,
                Ok(h) => {
                    if self.rd.skip(&mut self.stream, h.len, |_| {}).await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}
