//! A session's connection handle: its sockets, its identity on the ring, the count of its
//! operations in flight, and its deadline.
//!
//! Every submission a session makes goes through a [`Conn`] method, which builds the
//! token (slab index and generation) and counts the operation in `inflight`, so the slab
//! can tell when the kernel is done with the session (a slot is freed only at zero).
//! Sockets are [`OwnedFd`]s: they close when the session is dropped, after its last
//! completion — never by hand.
//!
//! A TLS client ([`Conn::tls`]) is transparent to the session's handlers: its receives and
//! sends on the client side become *virtual* operations of the TLS connection
//! ([`crate::tls::conn`]) — ciphertext moves by `TlsRecv`/`TlsSend`, and the handler's
//! operation completes (by a NOP, or from the ciphertext's own completion) with plaintext
//! byte counts, as a plain socket's would.

use crate::ring::{Op, Ring, Side, Token};
use crate::tls::conn::{Fed, TlsConn};
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
    /// The client speaks TLS (boxed: a plain session pays one pointer).
    pub tls: Option<Box<TlsConn>>,
    /// The client's TLS record layer is the kernel's (kTLS): the socket carries plaintext.
    pub ktls: bool,
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
            tls: None,
            ktls: false,
        }
    }

    /// The client side goes through TLS (a client that spoke plain HTTP on a TLS port is
    /// answered on the socket as is).
    pub fn tls_on(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| !t.plain)
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

    /// Shut down `how` (SHUT_RD/WR/RDWR) on `side`, if that side has a socket. A TLS
    /// client's write half ends with a `close_notify` first, when nothing else is being
    /// sent (best effort: one non-blocking send of one small record).
    pub fn shutdown(&mut self, side: Side, how: libc::c_int) {
        let fd = self.fd(side);
        if fd < 0 {
            return;
        }
        if side == Side::Client && how != libc::SHUT_RD {
            if self.tls_on() {
                self.tls_goodbye();
            } else if self.ktls {
                crate::sys::ktls_close_notify(fd);
            }
        }
        crate::sys::shutdown(fd, how);
    }

    /// Send what TLS has to say before a close (a `close_notify`, or the alert of an
    /// error) with one non-blocking send, when no `TlsSend` is in flight (which it would
    /// overtake).
    pub fn tls_goodbye(&mut self) {
        let fd = self.fd(Side::Client);
        if let Some(t) = self.tls.as_mut() {
            let bytes = t.goodbye();
            if !bytes.is_empty() && fd >= 0 {
                crate::sys::send_nonblocking(fd, &bytes);
            }
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
        if self.tls_on() {
            return self.tls_write(ring, msg, Op::ClientSend);
        }
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
        if side == Side::Client && self.tls_on() {
            if let Some(t) = self.tls.as_mut() {
                // The same contract covers the virtual read: the plaintext is copied into
                // `buf` when it completes ([`Conn::tls_take_read`]).
                t.want_read(buf, op);
            }
            return self.tls_read_progress(ring);
        }
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
        if side == Side::Client && self.tls_on() {
            return self.tls_write(ring, buf, op);
        }
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

    /// Cancel this session's operation `op` on `side`. A TLS client's virtual read is
    /// dropped, and the ciphertext receive under it cancelled.
    pub fn cancel(&mut self, ring: &mut Ring, op: Op, side: Side) -> io::Result<()> {
        let mut op = op;
        if side == Side::Client && matches!(op, Op::HeadRecv | Op::BodyRecv) && self.tls_on() {
            let Some(t) = self.tls.as_mut() else {
                return Ok(());
            };
            t.clear_read();
            if !t.recv_armed || t.handshaking() {
                return Ok(());
            }
            op = Op::TlsRecv;
        }
        ring.cancel_token(self.tok(op, side), self.tok(Op::Cancel, Side::Client))?;
        self.inflight += 1;
        Ok(())
    }

    // ----- TLS: the client's ciphertext ---------------------------------------------

    /// Arm the client's ciphertext receive (multishot in a tunnel), unless it is armed.
    pub fn tls_arm_recv(&mut self, ring: &mut Ring, multi: bool) -> io::Result<()> {
        let (fd, tok) = (self.fd(Side::Client), self.tok(Op::TlsRecv, Side::Client));
        let Some(t) = self.tls.as_mut() else {
            return Ok(());
        };
        if t.recv_armed || t.eof || t.error.is_some() {
            return Ok(());
        }
        t.recv_armed = true;
        if multi {
            ring.recv_multi(fd, tok)?;
        } else {
            ring.recv_select(fd, tok)?;
        }
        self.inflight += 1;
        Ok(())
    }

    /// Send the ciphertext TLS has queued, unless a send is in flight.
    pub fn tls_flush(&mut self, ring: &mut Ring) -> io::Result<()> {
        let (fd, tok) = (self.fd(Side::Client), self.tok(Op::TlsSend, Side::Client));
        let Some(t) = self.tls.as_mut() else {
            return Ok(());
        };
        if t.sending || t.flushed() {
            return Ok(());
        }
        // A vector from the ring's spares only when the connection holds none.
        let Some(bytes) = t.next_out(|| ring.take_vec()) else {
            return Ok(());
        };
        // SAFETY: `bytes` is the TLS connection's output vector, boxed in this session,
        // which `sending` keeps unwritten (and the session alive) until the completion.
        unsafe { ring.send(fd, bytes, tok)? };
        t.sending = true;
        self.inflight += 1;
        Ok(())
    }

    /// A handler's send on a TLS client: encrypt it now, complete it once its ciphertext
    /// is out (`session::tls`), or at once with the error when TLS has failed.
    fn tls_write(&mut self, ring: &mut Ring, buf: &[u8], op: Op) -> io::Result<()> {
        let tok = self.tok(op, Side::Client);
        let Some(t) = self.tls.as_mut() else {
            return Ok(());
        };
        t.want_send(buf.len(), op);
        if t.error.is_some() || buf.is_empty() {
            // Failed: completed at once with the error; nothing to send: with 0.
            ring.nop(tok)?;
            self.inflight += 1;
            return Ok(());
        }
        t.write_plain(buf, false);
        self.tls_flush(ring)
    }

    /// Move a TLS client's reading on: feed a held ciphertext buffer, then complete the
    /// waiting virtual read by a NOP when it can complete, or arm the ciphertext receive
    /// when more is needed (a read waits, or the handshake goes on).
    pub fn tls_read_progress(&mut self, ring: &mut Ring) -> io::Result<()> {
        self.tls_feed_held(ring);
        let Some(t) = self.tls.as_mut() else {
            return Ok(());
        };
        if let Some((_, _, op)) = t.pending_read() {
            if t.read_ready() {
                let tok = self.tok(op, Side::Client);
                if let Some(t) = self.tls.as_mut() {
                    if t.nop {
                        return Ok(());
                    }
                    t.nop = true;
                }
                ring.nop(tok)?;
                self.inflight += 1;
                return Ok(());
            }
        } else if !t.handshaking() {
            return Ok(());
        }
        if t.held.is_some() {
            // Plaintext is pending that nobody reads yet: more ciphertext waits.
            return Ok(());
        }
        self.tls_arm_recv(ring, false)
    }

    /// Feed the held ciphertext buffer, if any (recycled once fed whole).
    pub fn tls_feed_held(&mut self, ring: &mut Ring) {
        let Some(t) = self.tls.as_mut() else {
            return;
        };
        let Some((bid, fed, len)) = t.held.take() else {
            return;
        };
        let data = &ring.buffer(bid, len as usize)[fed as usize..];
        match t.feed(data) {
            Fed::Took(n) if (fed as usize + n) < len as usize => {
                t.held = Some((bid, fed + n as u32, len));
            }
            _ => ring.recycle_buffer(bid),
        }
    }

    /// Tunnel: send the decrypted plaintext waiting in the TLS connection's `up` vector
    /// (from `up_sent` on) to the backend.
    pub fn tls_send_up(&mut self, ring: &mut Ring) -> io::Result<()> {
        let (fd, tok) = (self.fd(Side::Upstream), self.tok(Op::Send, Side::Upstream));
        let Some(t) = self.tls.as_mut() else {
            return Ok(());
        };
        // SAFETY: `up` is the boxed TLS connection's vector; the relay leaves it alone
        // while this send is in flight (its direction's `sending`), and the session is
        // freed only after the completion.
        unsafe { ring.send(fd, &t.up[t.up_sent..], tok)? };
        self.inflight += 1;
        Ok(())
    }

    /// Drop a TLS client's waiting virtual read (its buffer is about to go).
    pub fn tls_forget_read(&mut self) {
        if let Some(t) = self.tls.as_mut() {
            t.clear_read();
        }
    }

    /// Complete the waiting virtual read: copy the plaintext into the handler's buffer.
    /// `None` when no read waits (it was cancelled, or completed another way).
    pub fn tls_take_read(&mut self) -> Option<(Op, i32)> {
        let t = self.tls.as_mut()?;
        let (ptr, len, op) = t.pending_read()?;
        // SAFETY: `ptr..ptr+len` is the buffer a handler passed to `Conn::recv`, whose
        // contract keeps it put, alive and untouched until this read completes — now.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, len) };
        let n = t.read_plain(buf);
        if n == -libc::EAGAIN {
            return None;
        }
        t.clear_read();
        Some((op, n))
    }

    /// Give back what TLS holds that is the worker's (the session is being freed).
    pub fn tls_release(&mut self, ring: &mut Ring) {
        if let Some(t) = self.tls.as_mut() {
            let mut vecs = Vec::new();
            let mut bids = Vec::new();
            t.release(&mut |v| vecs.push(v), &mut |b| bids.push(b));
            for v in vecs {
                ring.give_vec(v);
            }
            for b in bids {
                ring.recycle_buffer(b);
            }
        }
    }
}
