//! What wsecho's loops (`server.rs`, `echo.rs`) need from a connection, plain TCP or TLS:
//! wait until readable, read without blocking (so an idle connection holds no buffer of
//! theirs), write and flush. A TLS write may leave ciphertext queued in rustls, so every
//! answer is [`send`]: `write_all` then `flush` (a no-op on TCP).

use std::future::Future;
use std::io;

use tokio::io::{AsyncWrite, AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::tls::ServerTls;

/// A connection wsecho serves.
pub trait Sock: AsyncWrite + Unpin + Send {
    /// Waits until a read may make progress.
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send;
    /// Reads what is there without waiting (`WouldBlock` when nothing is).
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    /// After a short read drained the socket: forget the cached read readiness now rather than
    /// pay a read(2) that returns EAGAIN later (bytes arriving after this raise a new edge).
    fn drained(&self);
}

impl Sock for TcpStream {
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::readable(self)
    }
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        TcpStream::try_read(self, buf)
    }
    fn drained(&self) {
        let _ = self.try_io(Interest::READABLE, || {
            Err::<(), _>(io::ErrorKind::WouldBlock.into())
        });
    }
}

impl Sock for ServerTls {
    fn readable(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        ServerTls::readable(self)
    }
    fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        ServerTls::try_read(self, buf)
    }
    /// rustls may hold decrypted bytes the socket no longer shows: keep the readiness.
    fn drained(&self) {}
}

/// Writes all of `bytes` and flushes.
pub async fn send<S: Sock>(s: &mut S, bytes: &[u8]) -> io::Result<()> {
    s.write_all(bytes).await?;
    s.flush().await
}
