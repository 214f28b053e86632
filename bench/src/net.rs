//! Sockets and process plumbing: loopback-only targets, source-address ranges bound with
//! `IP_BIND_ADDRESS_NO_PORT`, the fd limit, SO_REUSEPORT listeners and parent-death signals.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpSocket, TcpStream};

/// Parses `H:P` and refuses anything outside 127.0.0.0/8 (`localhost` means 127.0.0.1).
pub fn parse_loopback_target(s: &str) -> Result<SocketAddrV4, String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("target {s:?}: expected HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("target {s:?}: bad port {port:?}"))?;
    let ip = parse_loopback_ip(host).map_err(|e| format!("target {s:?}: {e}"))?;
    Ok(SocketAddrV4::new(ip, port))
}

/// Parses one IPv4 address and refuses anything outside 127.0.0.0/8.
pub fn parse_loopback_ip(host: &str) -> Result<Ipv4Addr, String> {
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.trim_matches(['[', ']'])
            .parse()
            .map_err(|_| format!("{host:?} is not an IP address"))?
    };
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() => Ok(v4),
        _ => Err(format!(
            "{ip} is not in 127.0.0.0/8: these tools only load the loopback interface"
        )),
    }
}

/// Parses `A` or `A-B` (inclusive, both in 127.0.0.0/8, A <= B) into a list of addresses.
pub fn parse_src_range(s: &str) -> Result<Vec<Ipv4Addr>, String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a = u32::from(parse_loopback_ip(a.trim()).map_err(|e| format!("--src-ips: {e}"))?);
    let b = u32::from(parse_loopback_ip(b.trim()).map_err(|e| format!("--src-ips: {e}"))?);
    if a > b {
        return Err(format!("--src-ips {s:?}: first address is above the last"));
    }
    if b - a >= 1 << 16 {
        return Err(format!("--src-ips {s:?}: more than 65,536 addresses"));
    }
    Ok((a..=b).map(Ipv4Addr::from).collect())
}

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns the new soft limit.
pub fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 0;
        }
        if r.rlim_cur < r.rlim_max {
            let want = libc::rlimit {
                rlim_cur: r.rlim_max,
                rlim_max: r.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                r = want;
            }
        }
    }
    r.rlim_cur
}

/// Asks the kernel to send SIGTERM to this process when its parent dies. Call in a re-executed
/// child before anything else; exits at once if the parent is already gone.
pub fn die_with_parent(expected_parent: Option<u32>) {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes plain integers.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGTERM as libc::c_ulong,
            0,
            0,
            0,
        );
    }
    if let Some(p) = expected_parent {
        if std::os::unix::process::parent_id() != p {
            std::process::exit(1);
        }
    }
}

/// A listening socket with SO_REUSEADDR and SO_REUSEPORT, so sibling processes can bind the same
/// port. The backlog asks for 65,535; the kernel caps it at net.core.somaxconn.
pub fn reuseport_listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(65_535)?;
    Ok(s.into())
}

/// Connects to `target`, from `src` when given (bound with IP_BIND_ADDRESS_NO_PORT so the kernel
/// picks the port at connect time per destination, allowing more than ~28k connections per
/// destination). Sets TCP_NODELAY.
pub async fn connect(target: SocketAddrV4, src: Option<Ipv4Addr>) -> io::Result<TcpStream> {
    let stream = match src {
        None => TcpStream::connect(target).await?,
        Some(ip) => {
            let sock = TcpSocket::new_v4()?;
            let one: libc::c_int = 1;
            // SAFETY: setsockopt reads `one` for the size we pass; the fd is owned by `sock`.
            let rc = unsafe {
                libc::setsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_IP,
                    libc::IP_BIND_ADDRESS_NO_PORT,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                )
            };
            if rc != 0 {
                return Err(io::Error::last_os_error());
            }
            sock.bind(SocketAddr::V4(SocketAddrV4::new(ip, 0)))?;
            sock.connect(SocketAddr::V4(target)).await?
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_loopback() {
        assert_eq!(
            parse_loopback_target("127.0.0.5:80").unwrap(),
            "127.0.0.5:80".parse().unwrap()
        );
        assert!(parse_loopback_target("localhost:1").is_ok());
        assert!(parse_loopback_target("10.0.0.1:80").is_err());
        assert!(parse_loopback_target("[::1]:80").is_err());
        assert!(parse_loopback_target("127.0.0.1").is_err());
    }

    #[test]
    fn src_ranges() {
        let v = parse_src_range("127.0.0.2-127.0.1.1").unwrap();
        assert_eq!(v.len(), 256);
        assert_eq!(v[0], Ipv4Addr::new(127, 0, 0, 2));
        assert_eq!(parse_src_range("127.0.0.9").unwrap().len(), 1);
        assert!(parse_src_range("127.0.0.9-127.0.0.2").is_err());
        assert!(parse_src_range("127.0.0.2-128.0.0.1").is_err());
    }
}
