//! A session's connection handle: its sockets, its identity on the ring, the count of its
//! operations in flight, and its deadline.
//!
//! Every submission a session makes goes through a [`Conn`] method, which builds the
//! token (slab index and generation) and counts the operation in `inflight`, so the slab
//! can tell when the kernel is done with the session (a slot is freed only at zero).
//! Sockets are [`OwnedFd`]s: they close when the session is dropped, after its last
//! completion — never by hand.

use crate::ring::{Op, Ring, Side, Token};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// A session's sockets, ring identity and timers.
#[derive(Debug)]
pub struct Conn {
    /// Slab index.
    pub idx: u32,
    /// Generation of the slab slot (tokens carry it).
    pub gen: u32,
    /// Operations in flight that name this session.
    pub inflight: u16,
    /// The accepted client socket (none for a pooled upstream connection).
    pub client: Option<OwnedFd>,
    /// The upstream socket, once connecting.
    pub upstream: Option<OwnedFd>,
    /// Deadline in worker milliseconds (0: none). The worker's timer heap reads it.
    pub deadline: u64,
    /// Time of this session's live timer-heap entry (0: none); the worker's own field.
    pub timer_at: u64,
}

impl Conn {
    /// A handle for slab slot `idx` of generation `gen`.
    pub fn new(idx: u32, gen: u32, client: Option<OwnedFd>, upstream: Option<OwnedFd>) -> Conn {
        Conn {
            idx,
            gen,
            inflight: 0,
            client,
            upstream,
            deadline: 0,
            timer_at: 0,
        }
    }

    /// The token of operation `op` on `side`.
    pub fn tok(&self, op: Op, side: Side) -> Token {
        Token::session(op, side, self.idx, self.gen)
    }

    /// The socket on `side` as a raw descriptor for a submission; -1 (the kernel answers
    /// EBADF) when that side has none.
    pub fn fd(&self, side: Side) -> RawFd {
        let s = match side {
            Side::Client => &self.client,
            Side::Upstream => &self.upstream,
        };
        s.as_ref().map_or(-1, |f| f.as_raw_fd())
    }

    /// Shut down `how` (SHUT_RD/WR/RDWR) on `side`, if that side has a socket.
    pub fn shutdown(&self, side: Side, how: libc::c_int) {
        let fd = self.fd(side);
        if fd >= 0 {
            crate::sys::shutdown(fd, how);
        }
    }

    /// Poll `side` for `events`, multishot or single-shot.
    pub fn poll(
        &mut self,
        ring: &mut Ring,
        side: Side,
        events: u32,
        multi: bool,
        op: Op,
    ) -> io::Result<()> {
        ring.poll(self.fd(side), events, multi, self.tok(op, side))?;
        self.inflight += 1;
        Ok(())
    }

    /// Multishot receive on `side` into the ring's provided buffers.
    pub fn recv_multi(&mut self, ring: &mut Ring, side: Side) -> io::Result<()> {
        ring.recv_multi(self.fd(side), self.tok(Op::Recv, side))?;
        self.inflight += 1;
        Ok(())
    }

    /// Send part of provided buffer `bid` to `side`.
    pub fn send_buffer(
        &mut self,
        ring: &mut Ring,
        side: Side,
        bid: u16,
        off: usize,
        len: usize,
    ) -> io::Result<()> {
        ring.send_buffer(self.fd(side), bid, off, len, self.tok(Op::Send, side))?;
        self.inflight += 1;
        Ok(())
    }

    /// Send a static message to the client.
    pub fn send_static(&mut self, ring: &mut Ring, msg: &'static [u8]) -> io::Result<()> {
        let tok = self.tok(Op::ClientSend, Side::Client);
        ring.send_static(self.fd(Side::Client), msg, tok)?;
        self.inflight += 1;
        Ok(())
    }

    /// Receive from `side` into `buf` as operation `op`.
    ///
    /// # Safety
    /// As [`Ring::recv`]: `buf` must be session-owned heap memory that stays put and
    /// untouched until the completion is reaped (the session outlives it: it is freed
    /// only when `inflight` is zero).
    pub unsafe fn recv(
        &mut self,
        ring: &mut Ring,
        side: Side,
        buf: &mut [u8],
        op: Op,
    ) -> io::Result<()> {
        // SAFETY: the caller's contract, passed on.
        unsafe { ring.recv(self.fd(side), buf, self.tok(op, side))? };
        self.inflight += 1;
        Ok(())
    }

    /// Send `buf` to `side` as operation `op`.
    ///
    /// # Safety
    /// As [`Ring::send`]: `buf` must stay put and unwritten until the completion is reaped.
    pub unsafe fn send(
        &mut self,
        ring: &mut Ring,
        side: Side,
        buf: &[u8],
        op: Op,
    ) -> io::Result<()> {
        // SAFETY: the caller's contract, passed on.
        unsafe { ring.send(self.fd(side), buf, self.tok(op, side))? };
        self.inflight += 1;
        Ok(())
    }

    /// Receive from the client and discard (lingering close).
    pub fn recv_discard(&mut self, ring: &mut Ring) -> io::Result<()> {
        let tok = self.tok(Op::LingerRecv, Side::Client);
        ring.recv_discard(self.fd(Side::Client), tok)?;
        self.inflight += 1;
        Ok(())
    }

    /// Connect the upstream socket to backend `b`, with route `route`'s linked connect
    /// timeout.
    pub fn connect(&mut self, ring: &mut Ring, b: usize, route: usize) -> io::Result<()> {
        let t1 = self.tok(Op::Connect, Side::Upstream);
        let t2 = self.tok(Op::ConnectTimeout, Side::Upstream);
        ring.connect(self.fd(Side::Upstream), b, route, t1, t2)?;
        self.inflight += 2;
        Ok(())
    }

    /// Cancel this session's operation `op` on `side`.
    pub fn cancel(&mut self, ring: &mut Ring, op: Op, side: Side) -> io::Result<()> {
        ring.cancel_token(self.tok(op, side), self.tok(Op::Cancel, Side::Client))?;
        self.inflight += 1;
        Ok(())
    }
}
