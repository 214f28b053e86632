//! One SO_REUSEPORT listening socket per worker.
//!
//! The first listener binds the configured address (port 0 picks a free port); the others
//! bind the port the first one got, so every worker accepts on the same address and the
//! kernel spreads new connections over them by hash.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{IntoRawFd, RawFd};

/// Bind `n` SO_REUSEPORT listeners on `addr`; returns their descriptors and the address.
pub fn bind_reuseport(
    addr: SocketAddr,
    n: usize,
    backlog: u32,
) -> io::Result<(Vec<RawFd>, SocketAddr)> {
    let mut fds = Vec::with_capacity(n);
    let mut actual = addr;
    for i in 0..n {
        let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        sock.set_reuse_address(true)?;
        sock.set_reuse_port(true)?;
        sock.set_nonblocking(true)?;
        sock.set_cloexec(true)?;
        sock.bind(&actual.into()).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot listen on {actual}: {e} (is another process using it? pick another --listen)"),
            )
        })?;
        sock.listen(backlog.min(i32::MAX as u32) as i32)?;
        if i == 0 {
            actual = sock
                .local_addr()?
                .as_socket()
                .ok_or_else(|| io::Error::other("listener has no IP address"))?;
        }
        fds.push(sock.into_raw_fd());
    }
    Ok((fds, actual))
}

/// `net.core.somaxconn`, which silently caps every listen backlog.
pub fn somaxconn() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}
