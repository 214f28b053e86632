//! Raw system calls used on the data path, each fenced in one small function.
//!
//! Everything here is a thin wrapper around one libc call that turns `-1` into
//! `io::Error::last_os_error()` (the `syscall!` pattern from mio). Every descriptor the
//! data path creates comes out of here as an [`OwnedFd`] and is closed by its drop; the
//! functions that act on a descriptor borrow it as a `RawFd`. The slab keeps a session's
//! descriptors until the kernel has finished every operation that names them (see
//! `worker/mod.rs`, "a slot is freed only when the kernel is done with it").

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: every caller passes descriptors it owns and pointers to live,
        // correctly sized memory; the call itself has no other preconditions.
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// Flags for every data-path splice: never block the worker, move pages where possible.
const SPLICE_FLAGS: libc::c_uint = libc::SPLICE_F_NONBLOCK | libc::SPLICE_F_MOVE;

/// `splice(2)` between a socket and a pipe (either direction), non-blocking.
pub fn splice(from: RawFd, to: RawFd, len: usize) -> io::Result<usize> {
    let n = syscall!(splice(
        from,
        std::ptr::null_mut(),
        to,
        std::ptr::null_mut(),
        len,
        SPLICE_FLAGS
    ))?;
    Ok(n as usize)
}

/// A non-blocking, close-on-exec pipe: `(read end, write end)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    syscall!(pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC))?;
    // SAFETY: pipe2 succeeded, so both are new descriptors that nothing else owns.
    Ok(unsafe { (adopt(fds[0]), adopt(fds[1])) })
}

/// Take ownership of a raw descriptor.
///
/// # Safety
/// `fd` must be an open descriptor that nothing else owns or will close: one the kernel
/// just returned (accept, socket, SCM_RIGHTS) or one inherited for this process's use.
pub unsafe fn adopt(fd: RawFd) -> OwnedFd {
    // SAFETY: the caller's contract above.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Close a raw descriptor the caller owns (control-plane descriptors that are not
/// [`OwnedFd`]s). Errors from close(2) are not actionable here.
pub fn close(fd: RawFd) {
    if fd >= 0 {
        let _ = syscall!(close(fd));
    }
}

/// `dup2(2)`: make `to` name the file `from` names (atomically for every thread using
/// `to`): how a log file is reopened under the descriptor writers keep using.
pub fn dup2(from: RawFd, to: RawFd) -> io::Result<()> {
    syscall!(dup2(from, to)).map(|_| ())
}

/// `shutdown(2)` one or both halves; ENOTCONN (peer already gone) is not an error.
pub fn shutdown(fd: RawFd, how: libc::c_int) {
    let _ = syscall!(shutdown(fd, how));
}

/// One non-blocking send of `buf` (a TLS `close_notify` or alert before a close): best
/// effort, what does not fit is dropped with the connection.
pub fn send_nonblocking(fd: RawFd, buf: &[u8]) {
    let _ = syscall!(send(
        fd,
        buf.as_ptr() as *const libc::c_void,
        buf.len(),
        libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL
    ));
}

/// kTLS: send a `close_notify` alert record (type 21: warning, close_notify) through the
/// kernel's record layer before the write half is shut; best effort, non-blocking.
pub fn ktls_close_notify(fd: RawFd) {
    let payload = [1u8, 0u8];
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // 8-aligned room for one control message carrying one byte.
    let mut control = [0u64; 4];
    // SAFETY: an all-zero msghdr is valid (no name, no iov, no control yet).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    // SAFETY: CMSG_SPACE only computes a size.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(1) } as usize;
    // SAFETY: msg_control points at 32 aligned bytes, more than CMSG_SPACE(1) (24), so the
    // first header and its one data byte lie inside `control`.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_TLS;
        (*c).cmsg_type = libc::TLS_SET_RECORD_TYPE;
        (*c).cmsg_len = libc::CMSG_LEN(1) as usize;
        *libc::CMSG_DATA(c) = 21;
    }
    let _ = syscall!(sendmsg(fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL));
}

/// `setsockopt(2)` with a value given as bytes (kernel TLS: `TCP_ULP` names, crypto
/// parameters).
pub fn setsockopt_bytes(
    fd: RawFd,
    level: libc::c_int,
    opt: libc::c_int,
    val: &[u8],
) -> io::Result<()> {
    syscall!(setsockopt(
        fd,
        level,
        opt,
        val.as_ptr() as *const libc::c_void,
        val.len() as libc::socklen_t
    ))
    .map(|_| ())
}

/// Shut the write half: the peer reads end-of-stream after what is already queued.
pub fn shutdown_write(fd: RawFd) {
    shutdown(fd, libc::SHUT_WR)
}

/// A new non-blocking TCP socket for an upstream connection.
pub fn tcp_socket(v6: bool) -> io::Result<OwnedFd> {
    let domain = if v6 { libc::AF_INET6 } else { libc::AF_INET };
    let fd = syscall!(socket(
        domain,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0
    ))?;
    // SAFETY: socket(2) succeeded: a new descriptor nothing else owns.
    Ok(unsafe { adopt(fd) })
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: libc::c_int) {
    let _ = syscall!(setsockopt(
        fd,
        level,
        opt,
        &val as *const libc::c_int as *const libc::c_void,
        std::mem::size_of::<libc::c_int>() as libc::socklen_t
    ));
}

/// TCP_NODELAY: WebSocket frames are small and latency-bound, as nginx sets for upgraded
/// connections.
pub fn set_nodelay(fd: RawFd) {
    setsockopt_int(fd, libc::IPPROTO_TCP, libc::TCP_NODELAY, 1);
}

/// The peer address of a connected socket (multishot accept does not return it).
pub fn peer_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    syscall!(getpeername(
        fd,
        &mut ss as *mut libc::sockaddr_storage as *mut libc::sockaddr,
        &mut len
    ))?;
    sockaddr_to_std(&ss)
}

/// The local address of a socket.
pub fn local_addr(fd: RawFd) -> io::Result<SocketAddr> {
    // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    syscall!(getsockname(
        fd,
        &mut ss as *mut libc::sockaddr_storage as *mut libc::sockaddr,
        &mut len
    ))?;
    sockaddr_to_std(&ss)
}

fn sockaddr_to_std(ss: &libc::sockaddr_storage) -> io::Result<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Ok(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Ok(SocketAddr::new(
                IpAddr::V6(ip),
                u16::from_be(sin6.sin6_port),
            ))
        }
        _ => Err(io::Error::from(io::ErrorKind::Unsupported)),
    }
}

/// A non-blocking eventfd: the worker's control descriptor (wake-up, stats, shutdown).
pub fn eventfd() -> io::Result<RawFd> {
    syscall!(eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))
}

/// Add one to an eventfd counter, waking whoever polls it.
pub fn eventfd_wake(fd: RawFd) {
    let one: u64 = 1;
    let _ = syscall!(write(fd, &one as *const u64 as *const libc::c_void, 8));
}

/// Reset an eventfd counter (its value is not needed: the commands live in atomics).
pub fn eventfd_drain(fd: RawFd) {
    let mut v: u64 = 0;
    let _ = syscall!(read(fd, &mut v as *mut u64 as *mut libc::c_void, 8));
}

/// RLIMIT_NOFILE as (soft, hard).
pub fn nofile_limit() -> (u64, u64) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    let _ = syscall!(getrlimit(libc::RLIMIT_NOFILE, &mut rl));
    (rl.rlim_cur, rl.rlim_max)
}

/// Set the soft RLIMIT_NOFILE (must not exceed the hard limit without CAP_SYS_RESOURCE).
pub fn set_nofile_soft(soft: u64) -> io::Result<()> {
    let (_, hard) = nofile_limit();
    let rl = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard.max(soft),
    };
    syscall!(setrlimit(libc::RLIMIT_NOFILE, &rl)).map(drop)
}

/// Whether this process may raise its hard RLIMIT_NOFILE (CAP_SYS_RESOURCE): try a no-op
/// raise by one and undo it.
pub fn nofile_hard_raisable() -> bool {
    let (soft, hard) = nofile_limit();
    let up = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard + 1,
    };
    if syscall!(setrlimit(libc::RLIMIT_NOFILE, &up)).is_err() {
        return false;
    }
    let back = libc::rlimit {
        rlim_cur: soft,
        rlim_max: hard,
    };
    let _ = syscall!(setrlimit(libc::RLIMIT_NOFILE, &back));
    true
}

/// Bind an upstream socket to a local source address, leaving the port to `connect`
/// (IP_BIND_ADDRESS_NO_PORT, nginx's `proxy_bind`): the 4-tuple then picks the port, so
/// each source address brings a whole ephemeral range toward each backend.
pub fn bind_source(fd: RawFd, ip: IpAddr) -> io::Result<()> {
    setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_BIND_ADDRESS_NO_PORT, 1);
    let sa = socket2::SockAddr::from(SocketAddr::new(ip, 0));
    syscall!(bind(fd, sa.as_ptr() as *const libc::sockaddr, sa.len())).map(drop)
}

/// `net.ipv4.ip_local_port_range` as (low, high); the kernel default when unreadable.
pub fn port_range() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u32>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Number of CPUs this process may run on.
pub fn online_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Pin the calling thread to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    let mut set = nix::sched::CpuSet::new();
    set.set(cpu).map_err(io::Error::from)?;
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set).map_err(io::Error::from)
}

/// Errors that mean "this socket is gone" rather than a bug on our side.
pub fn is_peer_gone(err: i32) -> bool {
    matches!(
        err,
        libc::ECONNRESET | libc::EPIPE | libc::ENOTCONN | libc::ETIMEDOUT | libc::EHOSTUNREACH
    )
}

/// Send one descriptor over a unix datagram socket (SCM_RIGHTS), with one byte of
/// data, `tag`, without blocking.
pub fn send_fd(sock: RawFd, fd: RawFd, tag: u8) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let tag = [tag];
    let iov = [std::io::IoSlice::new(&tag)];
    let fds = [fd];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock, &iov, &cmsg, MsgFlags::MSG_DONTWAIT, None)
        .map(drop)
        .map_err(io::Error::from)
}

/// Receive one descriptor sent with [`send_fd`], and its tag; `Ok(None)` when nothing is
/// waiting.
pub fn recv_fd(sock: RawFd) -> io::Result<Option<(OwnedFd, u8)>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut iov = [std::io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    match recvmsg::<()>(
        sock,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
    ) {
        Ok(msg) => {
            for c in msg.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    // SAFETY: SCM_RIGHTS installed these descriptors in this process just
                    // now; nothing else owns them.
                    let mut owned: Vec<OwnedFd> =
                        fds.iter().map(|&fd| unsafe { adopt(fd) }).collect();
                    if !owned.is_empty() {
                        // Extra descriptors (ringway never sends any) close as they drop.
                        return Ok(Some((owned.swap_remove(0), byte[0])));
                    }
                }
            }
            Ok(None)
        }
        Err(nix::errno::Errno::EAGAIN) => Ok(None),
        Err(e) => Err(io::Error::from(e)),
    }
}

/// A unix datagram socket pair for handoffs: (receive end, send end), non-blocking.
pub fn handoff_pair() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0 as libc::c_int; 2];
    syscall!(socketpair(
        libc::AF_UNIX,
        libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0,
        fds.as_mut_ptr()
    ))?;
    Ok((fds[0], fds[1]))
}

/// Set or clear FD_CLOEXEC: a descriptor without it survives exec (worker processes
/// inherit it).
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let flag = if on { libc::FD_CLOEXEC } else { 0 };
    syscall!(fcntl(fd, libc::F_SETFD, flag)).map(drop)
}

/// Accept one client already waiting in a (non-blocking) listener's backlog, if any: how
/// a draining worker takes the clients queued on a listener it is about to close.
pub fn accept_waiting(listener: RawFd) -> io::Result<Option<OwnedFd>> {
    let (addr, len) = (std::ptr::null_mut(), std::ptr::null_mut());
    match syscall!(accept4(listener, addr, len, libc::SOCK_CLOEXEC)) {
        // SAFETY: accept4 just returned this descriptor and nothing else owns it.
        Ok(fd) => Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) })),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Wait up to `timeout` for one of the blocked signals in `set` (sigtimedwait(2)); `None`
/// when none came (or the wait was interrupted).
pub fn wait_signal(set: &libc::sigset_t, timeout: std::time::Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    syscall!(sigtimedwait(set, std::ptr::null_mut(), &ts)).ok()
}

/// [`wait_signal`], with the integer a [`queue_signal`] sender attached (0 from `kill`).
pub fn wait_signal_value(set: &libc::sigset_t, timeout: std::time::Duration) -> Option<(i32, i32)> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: siginfo_t is plain data; all zeroes is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let sig = syscall!(sigtimedwait(set, &mut info, &ts)).ok()?;
    // SAFETY: si_value is read from a siginfo the kernel filled (or left zeroed, for a
    // signal sent without a value); an integer value is read back through the pointer
    // member, as sigqueue(3) stores it.
    let value = unsafe { info.si_value().sival_ptr } as usize as i32;
    Some((sig, value))
}

/// Send `sig` with an integer attached (sigqueue(3)); read it with [`wait_signal_value`].
pub fn queue_signal(pid: i32, sig: i32, value: i32) -> io::Result<()> {
    let v = libc::sigval {
        sival_ptr: value as usize as *mut libc::c_void,
    };
    syscall!(sigqueue(pid, sig, v)).map(drop)
}
