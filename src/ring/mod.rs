//! The only place that builds submission entries and decodes completions.
//!
//! Every SQE carries a [`Token`] in its `user_data`: the operation kind, the session's slab
//! index and the slot's generation. The generation makes a late completion for a reused
//! slot harmless (the worker drops it). Every `unsafe` push lives here.
//!
//! The API is sound by construction where it can be: memory the kernel reads or writes
//! after a push returns is owned by the [`Ring`] itself (the tick and connect timespecs,
//! the backend address table, the discard buffer of lingering closes, the provided-buffer
//! ring), so the builders that use it are safe. The two builders that hand the kernel a
//! caller's buffer, [`Ring::recv`] and [`Ring::send`], are `unsafe fn`s with their
//! contract stated: the buffer must outlive the operation's completion.
//!
//! A full submission queue is normal: `push` submits what is queued and retries.

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::io;
use std::os::fd::{OwnedFd, RawFd};

mod bufring;
use bufring::BufRing;

/// What an in-flight operation is, so its completion can be routed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    /// Accept on the worker's listener (multishot, or single-shot in `pause` mode).
    Accept = 1,
    /// POLLIN on the control eventfd (multishot).
    Control = 2,
    /// The worker's one periodic timer.
    Tick = 3,
    /// An AsyncCancel we issued; its result is not interesting.
    Cancel = 4,
    /// Receive (part of) the client's request head.
    HeadRecv = 5,
    /// Connect to the upstream (linked with `ConnectTimeout`).
    Connect = 6,
    /// The linked timeout of a connect.
    ConnectTimeout = 7,
    /// Send the rewritten request head, or request body bytes, to the upstream.
    UpSend = 8,
    /// Receive (part of) the upstream's response head or body.
    UpRecv = 9,
    /// Send to the client: `100 Continue`, a response head or body bytes, an error reply.
    ClientSend = 10,
    /// Tunnel: readiness of a socket for reading (multishot). Side in the token.
    PollIn = 11,
    /// Tunnel: readiness of a socket for writing (single-shot).
    PollOut = 12,
    /// Tunnel (copy mode): multishot receive into the provided buffer ring.
    Recv = 13,
    /// Tunnel (copy mode): send a provided buffer to the peer.
    Send = 14,
    /// Lingering close: drain what the client still sends after our final answer.
    LingerRecv = 15,
    /// Receive (part of) a request body from the client.
    BodyRecv = 16,
    /// Watch the client for leaving (POLLRDHUP, single-shot) while an exchange waits for
    /// the backend: connect, `101` or response head.
    ClientWatch = 17,
    /// TLS: receive ciphertext from the client into a provided buffer (single-shot while
    /// the session speaks HTTP, multishot in a tunnel).
    TlsRecv = 18,
    /// TLS: send ciphertext (the session's TLS output buffer) to the client.
    TlsSend = 19,
}

impl Op {
    fn from_u8(v: u8) -> Option<Op> {
        use Op::*;
        Some(match v {
            1 => Accept,
            2 => Control,
            3 => Tick,
            4 => Cancel,
            5 => HeadRecv,
            6 => Connect,
            7 => ConnectTimeout,
            8 => UpSend,
            9 => UpRecv,
            10 => ClientSend,
            11 => PollIn,
            12 => PollOut,
            13 => Recv,
            14 => Send,
            15 => LingerRecv,
            16 => BodyRecv,
            17 => ClientWatch,
            18 => TlsRecv,
            19 => TlsSend,
            _ => return None,
        })
    }
}

/// Which socket of a session an operation is on. Direction `Client` means "reading from
/// the client, writing to the upstream" for tunnel operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Side {
    /// The accepted client socket.
    Client = 0,
    /// The upstream (backend) socket.
    Upstream = 1,
}

impl Side {
    /// The other socket of the pair.
    pub fn other(self) -> Side {
        match self {
            Side::Client => Side::Upstream,
            Side::Upstream => Side::Client,
        }
    }
    /// Index 0 or 1, for per-side arrays.
    pub fn idx(self) -> usize {
        self as usize
    }
}

/// `user_data` layout: kind (8 bits) | side (1 bit) | generation (23 bits) | slab index (32 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token {
    /// What the operation is.
    pub op: Op,
    /// Which socket (meaningful for tunnel operations).
    pub side: Side,
    /// The generation of the slab slot when the operation was submitted.
    pub gen: u32,
    /// The slab index of the session (0 for worker-level operations).
    pub idx: u32,
}

/// Generations wrap at 23 bits.
pub const GEN_MASK: u32 = (1 << 23) - 1;

impl Token {
    /// A worker-level token (no session).
    pub fn worker(op: Op) -> Token {
        Token {
            op,
            side: Side::Client,
            gen: 0,
            idx: 0,
        }
    }
    /// A token for a session's operation.
    pub fn session(op: Op, side: Side, idx: u32, gen: u32) -> Token {
        Token { op, side, gen, idx }
    }
    /// Encode into `user_data`.
    pub fn encode(self) -> u64 {
        ((self.op as u64) << 56)
            | ((self.side as u64) << 55)
            | (((self.gen & GEN_MASK) as u64) << 32)
            | self.idx as u64
    }
    /// Decode from `user_data`; `None` for values we never produce.
    pub fn decode(v: u64) -> Option<Token> {
        let op = Op::from_u8((v >> 56) as u8)?;
        let side = if (v >> 55) & 1 == 1 {
            Side::Upstream
        } else {
            Side::Client
        };
        Some(Token {
            op,
            side,
            gen: ((v >> 32) as u32) & GEN_MASK,
            idx: v as u32,
        })
    }
}

/// One completion, copied out of the CQ so the ring can be borrowed again while handling
/// it. Only the ring makes them, and a batch hands each out once, by value: so the
/// descriptor of an accept completion can be owned exactly once ([`Completion::into_fd`]).
#[derive(Debug)]
pub struct Completion {
    user_data: u64,
    res: i32,
    flags: u32,
}

impl Completion {
    /// Raw user data.
    pub fn user_data(&self) -> u64 {
        self.user_data
    }
    /// Result: bytes, a descriptor, or `-errno`.
    pub fn res(&self) -> i32 {
        self.res
    }
    /// The descriptor a successful accept returned, now owned; `Err(errno)` for a failed
    /// one, and `Err(EINVAL)` for a completion that is not an accept's (its result is no
    /// descriptor).
    pub fn into_fd(self) -> Result<OwnedFd, i32> {
        if Token::decode(self.user_data).map(|t| t.op) != Some(Op::Accept) {
            return Err(libc::EINVAL);
        }
        if self.res < 0 {
            return Err(-self.res);
        }
        // SAFETY: a non-negative accept result is a new descriptor installed for this
        // process; the completion is consumed, so it is adopted once.
        Ok(unsafe { crate::sys::adopt(self.res) })
    }
    /// Whether a multishot operation stays armed after this completion.
    pub fn more(&self) -> bool {
        cqueue::more(self.flags)
    }
    /// The provided buffer this completion used, if any.
    pub fn buffer_id(&self) -> Option<u16> {
        cqueue::buffer_select(self.flags)
    }
}

/// Kernel features found at ring setup, for the startup log.
#[derive(Clone, Copy, Debug, Default)]
pub struct RingFeatures {
    /// SINGLE_ISSUER + DEFER_TASKRUN were accepted.
    pub defer_taskrun: bool,
}

/// A worker's io_uring plus what its operations point at: the provided-buffer ring (copy
/// mode), the timespecs, the backend addresses and the discard buffer.
pub struct Ring {
    ring: IoUring,
    /// Features in force.
    pub features: RingFeatures,
    bufs: Option<BufRing>,
    /// Reused completion batch (no allocation per loop turn).
    batch: Vec<Completion>,
    /// The worker's periodic timer (boxed: SQEs point at it).
    tick_ts: Box<types::Timespec>,
    /// The linked timeouts of connects, one per route (`proxy_connect_timeout`). Set once
    /// by [`Ring::configure`] and never changed after, so SQEs may point into it.
    connect_ts: Vec<types::Timespec>,
    /// Backend addresses, by backend index (connect SQEs point into it).
    addrs: Vec<socket2::SockAddr>,
    /// Lingering closes receive into it and discard what they read.
    discard: Box<[u8]>,
    /// [`Ring::configure`] ran.
    configured: bool,
    /// Byte vectors lent to TLS sessions while ciphertext (or decrypted plaintext) waits
    /// to be sent: idle connections hold none, and sending allocates nothing.
    spare_vecs: Vec<Vec<u8>>,
}

fn timespec(d: std::time::Duration) -> Box<types::Timespec> {
    Box::new(
        types::Timespec::new()
            .sec(d.as_secs())
            .nsec(d.subsec_nanos()),
    )
}

/// Buffer group id of the copy-mode buffer ring.
pub const BGID: u16 = 7;

impl Ring {
    /// Create a ring with `entries` SQ entries; try SINGLE_ISSUER + DEFER_TASKRUN first and
    /// fall back (with a log line by the caller) when the kernel refuses them.
    pub fn new(entries: u32) -> io::Result<Ring> {
        let cq = entries.saturating_mul(4);
        let (ring, defer) = match IoUring::builder()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_cqsize(cq)
            .build(entries)
        {
            Ok(r) => (r, true),
            Err(_) => (
                IoUring::builder()
                    .setup_cqsize(cq)
                    .build(entries)
                    .map_err(|e| io::Error::new(e.kind(), format!("io_uring_setup: {e}")))?,
                false,
            ),
        };
        Ok(Ring {
            ring,
            features: RingFeatures {
                defer_taskrun: defer,
            },
            bufs: None,
            batch: Vec::with_capacity(1024),
            tick_ts: timespec(std::time::Duration::from_millis(250)),
            connect_ts: Vec::new(),
            addrs: Vec::new(),
            discard: vec![0u8; 4096].into_boxed_slice(),
            configured: false,
            spare_vecs: Vec::new(),
        })
    }

    /// Set the tick period, the connect timeouts (one per route) and the backend table,
    /// once: operations point into them, so a second call is refused.
    pub fn configure(
        &mut self,
        tick: std::time::Duration,
        connect_timeouts: &[std::time::Duration],
        backends: &[std::net::SocketAddr],
    ) -> io::Result<()> {
        if self.configured {
            return Err(io::Error::other("the ring is configured once"));
        }
        self.configured = true;
        self.tick_ts = timespec(tick);
        self.connect_ts = connect_timeouts.iter().map(|d| *timespec(*d)).collect();
        self.addrs = backends
            .iter()
            .map(|a| socket2::SockAddr::from(*a))
            .collect();
        Ok(())
    }

    /// Check that the kernel supports every opcode ringway submits; name the missing one.
    pub fn probe(&self) -> io::Result<()> {
        let mut probe = io_uring::Probe::new();
        self.ring.submitter().register_probe(&mut probe)?;
        let needed = [
            (opcode::Accept::CODE, "ACCEPT"),
            (opcode::PollAdd::CODE, "POLL_ADD"),
            (opcode::Recv::CODE, "RECV"),
            (opcode::Send::CODE, "SEND"),
            (opcode::Connect::CODE, "CONNECT"),
            (opcode::LinkTimeout::CODE, "LINK_TIMEOUT"),
            (opcode::Timeout::CODE, "TIMEOUT"),
            (opcode::AsyncCancel::CODE, "ASYNC_CANCEL"),
            (opcode::Nop::CODE, "NOP"),
            (opcode::Shutdown::CODE, "SHUTDOWN"),
        ];
        for (code, name) in needed {
            if !probe.is_supported(code) {
                return Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    format!("the kernel's io_uring lacks IORING_OP_{name}; ringway needs Linux 6.0 or newer"),
                ));
            }
        }
        Ok(())
    }

    /// Register the copy-mode buffer ring: `count` buffers of `size` bytes (count: power of 2).
    pub fn setup_buffers(&mut self, count: u16, size: u32) -> io::Result<()> {
        let br = BufRing::new(count, size)?;
        // SAFETY: the ring memory is page aligned, `count` entries long, and owned by
        // `self.bufs` for as long as the io_uring lives (both drop together; the ring is
        // unregistered implicitly when the io_uring fd closes, and `Ring` drops `ring`
        // before `bufs` because of field order).
        unsafe {
            self.ring
                .submitter()
                .register_buf_ring_with_flags(br.ring_addr(), count, BGID, 0)?;
        }
        self.bufs = Some(br);
        Ok(())
    }

    /// The first `len` bytes of provided buffer `bid`, which a receive filled and handed
    /// to us (the kernel does not write into it again until it is recycled).
    pub fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        match self.bufs.as_ref() {
            Some(b) => b.bytes(bid, len),
            None => &[],
        }
    }

    /// An empty byte vector, with the capacity of one lent before when there is one.
    pub fn take_vec(&mut self) -> Vec<u8> {
        self.spare_vecs.pop().unwrap_or_default()
    }

    /// A vector back from a TLS session (nothing in flight points into it any more).
    pub fn give_vec(&mut self, mut v: Vec<u8>) {
        const KEEP: usize = 256;
        const LARGEST: usize = 64 * 1024;
        if self.spare_vecs.len() < KEEP && v.capacity() > 0 {
            v.clear();
            if v.capacity() > LARGEST {
                v.shrink_to(LARGEST);
            }
            self.spare_vecs.push(v);
        }
    }

    /// Give a provided buffer back to the kernel.
    pub fn recycle_buffer(&mut self, bid: u16) {
        if let Some(b) = self.bufs.as_mut() {
            b.recycle(bid);
        }
    }

    fn push(&mut self, entry: squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every entry is built by a method below, which points only at memory
            // the ring owns or at memory an `unsafe fn`'s caller promised to keep alive.
            let pushed = unsafe { self.ring.submission().push(&entry) };
            match pushed {
                Ok(()) => return Ok(()),
                Err(_) => {
                    self.ring.submit()?;
                }
            }
        }
    }

    fn push_pair(&mut self, a: squeue::Entry, b: squeue::Entry) -> io::Result<()> {
        self.push_chain(&[a, b])
    }

    /// Push linked entries together (a full queue is submitted first), so the link stays
    /// intact.
    fn push_chain(&mut self, entries: &[squeue::Entry]) -> io::Result<()> {
        loop {
            // SAFETY: as in `push`; the entries go in together so the link stays intact.
            let pushed = unsafe { self.ring.submission().push_multiple(entries) };
            match pushed {
                Ok(()) => return Ok(()),
                Err(_) => {
                    self.ring.submit()?;
                }
            }
        }
    }

    /// Multishot accept (or a single accept when `multishot` is false).
    pub fn accept(&mut self, fd: RawFd, multishot: bool, tok: Token) -> io::Result<()> {
        let e = if multishot {
            opcode::AcceptMulti::new(types::Fd(fd))
                .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
                .build()
        } else {
            // No address out-pointers: nothing for the kernel to write into.
            opcode::Accept::new(types::Fd(fd), std::ptr::null_mut(), std::ptr::null_mut())
                .flags(libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK)
                .build()
        };
        self.push(e.user_data(tok.encode()))
    }

    /// Poll for `events` on `fd`, multishot or single-shot. No memory is referenced.
    pub fn poll(&mut self, fd: RawFd, events: u32, multi: bool, tok: Token) -> io::Result<()> {
        let e = opcode::PollAdd::new(types::Fd(fd), events)
            .multi(multi)
            .build()
            .user_data(tok.encode());
        self.push(e)
    }

    /// Arm the worker's periodic timer (one shot of the tick period). The timespec is the
    /// ring's own, so it outlives the operation.
    pub fn tick(&mut self, tok: Token) -> io::Result<()> {
        if !self.configured {
            // `configure` replaces the timespec: nothing may point at the old one.
            return Err(io::Error::other(
                "the ring's tick is armed before configure",
            ));
        }
        let e = opcode::Timeout::new(&*self.tick_ts as *const _)
            .build()
            .user_data(tok.encode());
        self.push(e)
    }

    /// Receive into `buf` (single-shot).
    ///
    /// # Safety
    /// The kernel writes into `buf` until the completion is reaped. The caller guarantees
    /// that `buf` is neither freed, moved, nor read or written by anyone else until this
    /// operation's completion has been reaped (ringway: the buffer is heap memory owned by
    /// a session, and a session is freed only when its in-flight count is zero).
    pub unsafe fn recv(&mut self, fd: RawFd, buf: &mut [u8], tok: Token) -> io::Result<()> {
        let e = opcode::Recv::new(types::Fd(fd), buf.as_mut_ptr(), buf.len() as u32)
            .build()
            .user_data(tok.encode());
        self.push(e)
    }

    /// Receive into the ring's discard buffer (a lingering close: what arrives is thrown
    /// away, so operations sharing the buffer are harmless). Single-shot.
    pub fn recv_discard(&mut self, fd: RawFd, tok: Token) -> io::Result<()> {
        let e = opcode::Recv::new(
            types::Fd(fd),
            self.discard.as_mut_ptr(),
            self.discard.len() as u32,
        )
        .build()
        .user_data(tok.encode());
        self.push(e)
    }

    /// Send `buf` (single-shot).
    ///
    /// # Safety
    /// The kernel reads `buf` until the completion is reaped: the caller guarantees that it
    /// is neither freed, moved nor written until then (as for [`Ring::recv`]).
    pub unsafe fn send(&mut self, fd: RawFd, buf: &[u8], tok: Token) -> io::Result<()> {
        let e = opcode::Send::new(types::Fd(fd), buf.as_ptr(), buf.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(tok.encode());
        self.push(e)
    }

    /// Send a static message (ringway's own answers): `'static` memory outlives anything.
    pub fn send_static(&mut self, fd: RawFd, msg: &'static [u8], tok: Token) -> io::Result<()> {
        // SAFETY: `msg` is never freed, moved or written.
        unsafe { self.send(fd, msg, tok) }
    }

    /// Answer `fd` with a static message and close it, linked (the at-limit 503): no
    /// session, no slot, nothing the kernel reads or writes but `'static` memory and the
    /// ring's discard buffer. After the answer: our write half shut (the client reads the
    /// answer, then its end), what the client already sent read and dropped (a close with
    /// unread bytes would be a reset, which can destroy the answer before the client reads
    /// it), then the close. Every link is hard, so the close runs even when a step fails
    /// (a client that already reset); the read does not wait (`MSG_DONTWAIT`). The
    /// descriptor is the kernel's from here on; every completion carries `tok`.
    pub fn answer_and_close(
        &mut self,
        fd: OwnedFd,
        msg: &'static [u8],
        tok: Token,
    ) -> io::Result<()> {
        use std::os::fd::IntoRawFd;
        let raw = fd.into_raw_fd();
        let hard = squeue::Flags::IO_HARDLINK;
        let send = opcode::Send::new(types::Fd(raw), msg.as_ptr(), msg.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .flags(hard)
            .user_data(tok.encode());
        let shut = opcode::Shutdown::new(types::Fd(raw), libc::SHUT_WR)
            .build()
            .flags(hard)
            .user_data(tok.encode());
        let drain = opcode::Recv::new(
            types::Fd(raw),
            self.discard.as_mut_ptr(),
            self.discard.len() as u32,
        )
        .flags(libc::MSG_DONTWAIT)
        .build()
        .flags(hard)
        .user_data(tok.encode());
        let close = opcode::Close::new(types::Fd(raw))
            .build()
            .user_data(tok.encode());
        self.push_chain(&[send, shut, drain, close])
            .inspect_err(|_| {
                // Nothing was queued: the descriptor is ours again, and closes here.
                // SAFETY: `raw` came from `into_raw_fd` above and no SQE names it.
                drop(unsafe { crate::sys::adopt(raw) });
            })
    }

    /// Send part of a provided buffer to `fd` (copy-mode tunnel). The memory is the ring's
    /// own and lives as long as the ring; the caller recycles the buffer only after this
    /// send completes (recycling it earlier would let a receive overwrite bytes still
    /// being sent: wrong data, though never freed memory).
    pub fn send_buffer(
        &mut self,
        fd: RawFd,
        bid: u16,
        off: usize,
        len: usize,
        tok: Token,
    ) -> io::Result<()> {
        let ptr = self.bufs.as_ref().expect("buffer ring").ptr(bid, off);
        let e = opcode::Send::new(types::Fd(fd), ptr, len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(tok.encode());
        self.push(e)
    }

    /// Single-shot receive into a buffer the kernel takes from the provided buffer ring
    /// only when bytes arrive (a TLS session waiting for ciphertext holds no buffer).
    pub fn recv_select(&mut self, fd: RawFd, tok: Token) -> io::Result<()> {
        let len = self.bufs.as_ref().map_or(0, |b| b.size);
        let e = opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), len)
            .buf_group(BGID)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(tok.encode());
        self.push(e)
    }

    /// A no-op whose completion carries `tok`: a completion delivered without I/O (a TLS
    /// session's plaintext that is already decrypted).
    pub fn nop(&mut self, tok: Token) -> io::Result<()> {
        let e = opcode::Nop::new().build().user_data(tok.encode());
        self.push(e)
    }

    /// Multishot receive into the provided buffer ring (copy-mode tunnel).
    pub fn recv_multi(&mut self, fd: RawFd, tok: Token) -> io::Result<()> {
        let e = opcode::RecvMulti::new(types::Fd(fd), BGID)
            .build()
            .user_data(tok.encode());
        self.push(e)
    }

    /// Connect `fd` to backend `backend` of the table given to [`Ring::configure`], linked
    /// to connect timeout `timeout` (a route's). The address and the timespec are the
    /// ring's own.
    pub fn connect(
        &mut self,
        fd: RawFd,
        backend: usize,
        timeout: usize,
        tok: Token,
        tok_timeout: Token,
    ) -> io::Result<()> {
        let (Some(addr), Some(ts)) = (self.addrs.get(backend), self.connect_ts.get(timeout)) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "connect to a backend or with a timeout the ring does not know",
            ));
        };
        let c = opcode::Connect::new(types::Fd(fd), addr.as_ptr() as *const _, addr.len())
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(tok.encode());
        let t = opcode::LinkTimeout::new(ts as *const _)
            .build()
            .user_data(tok_timeout.encode());
        self.push_pair(c, t)
    }

    /// Cancel the operation whose user_data is `target`.
    pub fn cancel_token(&mut self, target: Token, tok: Token) -> io::Result<()> {
        let e = opcode::AsyncCancel::new(target.encode())
            .build()
            .user_data(tok.encode());
        self.push(e)
    }

    /// Submit what is queued and collect completions into the reused batch. With `block`,
    /// wait for at least one; without (the worker still has runnable work), only reap what
    /// is ready — including deferred task work, which runs only on a GETEVENTS enter.
    pub fn wait(&mut self, block: bool) -> io::Result<Vec<Completion>> {
        let r = if block {
            self.ring.submit_and_wait(1)
        } else {
            let zero = types::Timespec::new();
            let args = types::SubmitArgs::new().timespec(&zero);
            self.ring.submitter().submit_with_args(1, &args)
        };
        match r {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(e) if e.raw_os_error() == Some(libc::ETIME) => {}
            Err(e) => return Err(e),
        }
        let mut batch = std::mem::take(&mut self.batch);
        batch.clear();
        for cqe in self.ring.completion() {
            batch.push(Completion {
                user_data: cqe.user_data(),
                res: cqe.result(),
                flags: cqe.flags(),
            });
        }
        Ok(batch)
    }

    /// Hand the batch vector back so its capacity is reused.
    pub fn give_back(&mut self, batch: Vec<Completion>) {
        self.batch = batch;
    }
}
