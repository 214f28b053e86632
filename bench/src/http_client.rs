//! loadgen's keep-alive HTTP/1.1 client: one connection at a time (replaced when the server
//! closes it), prebuilt requests written as they are, responses framed by Content-Length,
//! chunked coding or the close, read through the reusable [`FrameReader`] buffer. A closed
//! connection is told apart from a failed exchange so the caller can count keep-alive closes
//! and reconnect. Over TLS (`--tls`) each new connection runs a handshake first.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::client::{Failure, FrameReader};
use crate::http::{self, Body, Chunked};
use crate::stream::Stream;
use crate::tls::TlsClient;

/// Longest response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Bodies up to this size are looked at for a `backend:<port>` banner.
const BANNER_MAX: u64 = 64;

/// One complete response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// Final status code (interim `1xx` responses are skipped).
    pub status: u16,
    /// The server closes the connection after it.
    pub close: bool,
    /// The backend port when the body is wsecho's `backend:<port>\n`.
    pub backend: Option<u16>,
}

/// Why no response was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RespError {
    /// The server closed the connection (EOF or reset) before the first byte of a response:
    /// on a connection that has answered before, a keep-alive close the server did not announce.
    Closed(Failure),
    /// The connection failed mid-response, or the response was malformed.
    Failed(Failure),
}

/// A client connection and its read buffer (kept across reconnects).
#[derive(Debug)]
pub struct HttpClient {
    stream: Option<Stream>,
    rd: FrameReader,
    /// Responses read on the current connection.
    pub served: u64,
}

fn proto(m: &str) -> RespError {
    RespError::Failed(Failure::Other(m.to_string()))
}

/// `backend:<port>` (optionally followed by a newline) → port.
fn banner_port(body: &[u8]) -> Option<u16> {
    let rest = body.strip_prefix(b"backend:")?;
    let digits = rest.strip_suffix(b"\n").unwrap_or(rest);
    std::str::from_utf8(digits).ok()?.parse().ok()
}

impl HttpClient {
    /// An unconnected client whose buffer holds `buf_cap` bytes (allocated on first use).
    pub fn new(buf_cap: usize) -> Self {
        HttpClient {
            stream: None,
            rd: FrameReader::new(buf_cap),
            served: 0,
        }
    }

    /// Whether a connection is open.
    pub fn is_connected(&self) -> bool {
        self.stream.is_some()
    }

    /// Closes the current connection, if any, dropping unread bytes.
    pub fn disconnect(&mut self) {
        self.stream = None;
        self.rd.clear();
        self.served = 0;
    }

    /// Replaces the connection with a new one to `target` (from `src` when given; with `tls`,
    /// handshake included).
    pub async fn connect(
        &mut self,
        target: SocketAddrV4,
        src: Option<Ipv4Addr>,
        tls: Option<&TlsClient>,
    ) -> Result<(), Failure> {
        self.disconnect();
        self.stream = Some(Stream::connect(target, src, tls).await?);
        Ok(())
    }

    /// Uses an already open connection (e.g. one whose TLS handshake the caller timed).
    pub fn attach(&mut self, s: Stream) {
        self.disconnect();
        self.stream = Some(s);
    }

    /// Writes prebuilt request bytes.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        let s = self
            .stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))?;
        s.send(bytes).await
    }

    /// Reads the next complete response (to a non-HEAD request).
    pub async fn read_response(&mut self) -> Result<Response, RespError> {
        let Some(s) = self.stream.as_mut() else {
            return Err(RespError::Closed(Failure::Eof));
        };
        let rd = &mut self.rd;
        // The head; interim 1xx responses (other than 101) are skipped.
        let head = loop {
            match http::parse_response(rd.pending(), false) {
                Ok(Some(h)) if (100..200).contains(&h.status) && h.status != 101 => {
                    rd.consume(h.len)
                }
                Ok(Some(h)) => break h,
                Ok(None) => {
                    if rd.pending().len() > MAX_RESPONSE_HEAD {
                        return Err(proto("response head longer than 64 KiB"));
                    }
                    let boundary = rd.pending().is_empty();
                    let f = match rd.fill(s).await {
                        Ok(0) => Failure::Eof,
                        Ok(_) => continue,
                        Err(e) => Failure::from(e),
                    };
                    return Err(match f {
                        Failure::Eof | Failure::Reset if boundary => RespError::Closed(f),
                        f => RespError::Failed(f),
                    });
                }
                Err(m) => return Err(proto(m)),
            }
        };
        rd.consume(head.len);
        let mut backend = None;
        let mut close = head.close;
        let body = async {
            match head.body {
                Body::None => {}
                Body::Length(n) if n <= BANNER_MAX => {
                    while (rd.pending().len() as u64) < n {
                        rd.fill_required(s).await?;
                    }
                    backend = banner_port(&rd.pending()[..n as usize]);
                    rd.consume(n as usize);
                }
                Body::Length(n) => rd.skip(s, n, |_| {}).await?,
                Body::Chunked => {
                    let mut dec = Chunked::new();
                    loop {
                        let (used, done) = dec
                            .feed(rd.pending())
                            .map_err(|m| io::Error::new(io::ErrorKind::InvalidData, m))?;
                        rd.consume(used);
                        if done {
                            break;
                        }
                        rd.fill_required(s).await?;
                    }
                }
                Body::UntilClose => {
                    close = true;
                    loop {
                        let n = rd.pending().len();
                        rd.consume(n);
                        if rd.fill(s).await? == 0 {
                            break;
                        }
                    }
                }
            }
            Ok::<(), io::Error>(())
        };
        body.await.map_err(|e| RespError::Failed(e.into()))?;
        self.served += 1;
        if self.rd.pending().is_empty() {
            // In a closed loop nothing more arrives before the next request.
            s.drained();
        }
        Ok(Response {
            status: head.status,
            close,
            backend,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn banner_ports() {
        assert_eq!(banner_port(b"backend:9001\n"), Some(9001));
        assert_eq!(banner_port(b"backend:9001"), Some(9001));
        assert_eq!(banner_port(b"backend:x\n"), None);
        assert_eq!(banner_port(b"hello"), None);
    }

    /// A scripted server: writes `reply` after reading the request, then closes.
    async fn scripted(reply: &'static [u8]) -> SocketAddrV4 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let std::net::SocketAddr::V4(addr) = l.local_addr().unwrap() else {
            unreachable!()
        };
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut b = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut s, &mut b).await;
            let _ = s.write_all(reply).await;
        });
        addr
    }

    #[tokio::test(flavor = "current_thread")]
    async fn reads_framed_responses_then_sees_the_close() {
        let addr = scripted(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nbackend:4242\n\
              HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
              HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
        )
        .await;
        let mut c = HttpClient::new(4096);
        c.connect(addr, None, None).await.unwrap();
        c.send(&http::get_request("a", "/")).await.unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!((r.status, r.close, r.backend), (200, false, Some(4242)));
        let r = c.read_response().await.unwrap();
        assert_eq!((r.status, r.close, r.backend), (404, false, None));
        let r = c.read_response().await.unwrap();
        assert_eq!((r.status, r.close), (200, true));
        assert_eq!(c.served, 3);
        assert_eq!(
            c.read_response().await.unwrap_err(),
            RespError::Closed(Failure::Eof)
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_cut_response_is_a_failure() {
        let addr = scripted(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial").await;
        let mut c = HttpClient::new(4096);
        c.connect(addr, None, None).await.unwrap();
        c.send(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        assert_eq!(
            c.read_response().await.unwrap_err(),
            RespError::Failed(Failure::Eof)
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn until_close_bodies() {
        let addr = scripted(b"HTTP/1.1 200 OK\r\n\r\nsome body").await;
        let mut c = HttpClient::new(4096);
        c.connect(addr, None, None).await.unwrap();
        c.send(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let r = c.read_response().await.unwrap();
        assert_eq!((r.status, r.close), (200, true));
    }
}
