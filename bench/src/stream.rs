//! loadgen's connection: plain TCP or TLS over it (`--tls`), read and written through tokio's
//! `AsyncRead`/`AsyncWrite` either way. TLS writes can leave ciphertext queued in rustls, so
//! writers call [`Stream::send`] (`write_all` + `flush`; the flush is free on TCP). The TLS
//! variant is boxed so that a held plain connection stays small.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, Interest, ReadBuf};
use tokio::net::TcpStream;

use crate::tls::{Negotiated, Tally, TlsClient};

/// A client connection.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    /// Connects to `target` (from `src` when given, TCP_NODELAY set), then, with `tls`, runs
    /// the handshake and counts what it negotiated in this thread's [`Tally`].
    pub async fn connect(
        target: SocketAddrV4,
        src: Option<Ipv4Addr>,
        tls: Option<&TlsClient>,
    ) -> io::Result<Stream> {
        let tcp = crate::net::connect(target, src).await?;
        match tls {
            None => Ok(Stream::Plain(tcp)),
            Some(t) => {
                let s = t.handshake(tcp).await?;
                Tally::record(&Negotiated::of(s.get_ref().1));
                Ok(Stream::Tls(Box::new(s)))
            }
        }
    }

    /// The TCP socket underneath.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }

    /// What the handshake negotiated (None on plain TCP).
    pub fn negotiated(&self) -> Option<Negotiated> {
        match self {
            Stream::Plain(_) => None,
            Stream::Tls(s) => Some(Negotiated::of(s.get_ref().1)),
        }
    }

    /// Writes all of `bytes` and flushes.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.write_all(bytes).await?;
        self.flush().await
    }

    /// In a closed loop, after a reply was read whole: on plain TCP forget the cached read
    /// readiness now instead of paying a read(2) that returns EAGAIN at the start of the next
    /// exchange (edge-triggered: later bytes raise a new event). TLS keeps it (rustls may hold
    /// bytes the socket no longer shows).
    pub fn drained(&self) {
        if let Stream::Plain(s) = self {
            let _ = s.try_io(Interest::READABLE, || {
                Err::<(), _>(io::ErrorKind::WouldBlock.into())
            });
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
