//! The relay of a TLS client's tunnel (wss://): the client side carries ciphertext, so
//! bytes cannot be spliced through; each direction goes through the session's rustls
//! connection instead. Where the kernel has kTLS, [`start`] hands the record layer to it
//! first, and the tunnel then relays as a plain one (copy, splice, auto) does.
//!
//! - client → backend: a multishot `TlsRecv` takes ciphertext into provided buffers,
//!   queued in `dirs[0].bufs` and fed to rustls (at most [`PLAIN_HIGH`] plaintext
//!   pending), the plaintext read into the connection's `up` vector and sent to the
//!   backend, one send at a time;
//! - backend → client: a multishot receive takes plaintext into provided buffers, queued
//!   in `dirs[1].bufs` and encrypted (at most [`CIPHER_HIGH`] queued), the ciphertext
//!   sent by `TlsSend`.
//!
//! A direction with [`COPY_QUEUE_MAX`] buffers queued cancels its receive until it drains
//! (as copy mode does). End-of-stream from the client (a TCP end or a `close_notify`)
//! shuts the backend's write half once the plaintext is delivered; the backend's end
//! becomes a `close_notify` and then the client's write half shut. Buffers are lent only
//! while bytes are in flight: an idle TLS tunnel holds its sockets and the rustls state.
//!
//! [`PLAIN_HIGH`]: crate::tls::conn::PLAIN_HIGH
//! [`CIPHER_HIGH`]: crate::tls::conn::CIPHER_HIGH

use super::copy::{BUF_SIZE, COPY_QUEUE_MAX};
use super::{DirState, Flow, Relay, Took, Tunnel};
use crate::conn::Conn;
use crate::ring::{Completion, Op, Ring, Side};
use crate::tls::conn::Fed;
use std::io;

/// Start relaying a TLS client's tunnel: in the kernel where it can take over (then as a
/// plain tunnel), else here — the backend's receive first, the plaintext rustls already
/// holds (bytes that came with the upgrade) next, then the client's ciphertext.
pub fn start(t: &mut Tunnel, c: &mut Conn, ring: &mut Ring, relay: &mut Relay) -> io::Result<Flow> {
    if relay.kernel_tls.available() && to_kernel(c, relay)? {
        t.start(c, ring, relay)?;
        return Ok(Flow::Continue);
    }
    if c.tls.is_none() {
        // The hand-off failed half way: the connection cannot go on.
        return Ok(Flow::Close);
    }
    arm_up(t, c, ring)?;
    pump_up(t, c, ring, relay)
}

/// Hand the record layer to the kernel when the connection is at a clean point. `true`:
/// the socket is plain now (`c.tls` is gone); `false` with `c.tls` kept: stay in user
/// space; `false` without it: the hand-off failed after the keys left.
fn to_kernel(c: &mut Conn, relay: &mut Relay) -> io::Result<bool> {
    let fd = c.fd(Side::Client);
    let Some(t) = c.tls.as_mut() else {
        return Ok(false);
    };
    let session = t.rustls();
    let takes = match (
        session.protocol_version(),
        session.negotiated_cipher_suite(),
    ) {
        (Some(v), Some(s)) => relay.kernel_tls.takes(v, s.suite()),
        _ => false,
    };
    if !takes || !t.quiet() || crate::tls::ktls::attach(fd).is_err() {
        return Ok(false);
    }
    let Some(t) = c.tls.take() else {
        return Ok(false);
    };
    match crate::tls::ktls::install(fd, t.into_rustls()) {
        Ok(()) => {
            relay.kernel_tunnels += 1;
            c.ktls = true;
            Ok(true)
        }
        Err(e) => {
            relay.log_error_msg(&format!("kTLS hand-off failed ({e}); closing the tunnel"));
            Ok(false)
        }
    }
}

/// A `TlsRecv` completed in a tunnel: queue the ciphertext and move it on.
pub fn on_client_cipher(
    t: &mut Tunnel,
    c: &mut Conn,
    ring: &mut Ring,
    relay: &mut Relay,
    now: u64,
    cqe: &Completion,
) -> io::Result<Flow> {
    let Some(tc) = c.tls.as_mut() else {
        if let Some(bid) = cqe.buffer_id() {
            ring.recycle_buffer(bid);
        }
        return Ok(Flow::Close);
    };
    if !cqe.more() {
        tc.recv_armed = false;
    }
    let d = &mut t.dirs[0];
    let res = cqe.res();
    if res > 0 {
        let queued = match d.take_buffer(cqe, res as u32, ring, relay) {
            Took::Missing => return Ok(Flow::Close),
            Took::Dropped => return Ok(Flow::Continue),
            Took::Queued(n) => n,
        };
        let pause = queued >= COPY_QUEUE_MAX && tc.recv_armed && cqe.more() && !d.pausing;
        if pause {
            d.pausing = true;
            c.cancel(ring, Op::TlsRecv, Side::Client)?;
        }
        t.touch(c, now);
        return pump_up(t, c, ring, relay);
    }
    if res == 0 {
        tc.feed_eof();
        return pump_up(t, c, ring, relay);
    }
    match -res {
        libc::ENOBUFS => {
            d.starve(relay, (c.idx, c.gen, 0));
            Ok(Flow::Continue)
        }
        // Our cancel (backpressure): re-armed once the queue drains.
        libc::ECANCELED => pump_up(t, c, ring, relay),
        err => {
            relay.log_error("receive", err);
            Ok(Flow::Close)
        }
    }
}

/// A `TlsSend` completed in a tunnel: send the rest, encrypt more, finish the backend's
/// direction once its end is out.
pub fn on_cipher_sent(
    t: &mut Tunnel,
    c: &mut Conn,
    ring: &mut Ring,
    relay: &mut Relay,
    res: i32,
) -> io::Result<Flow> {
    let Some(tc) = c.tls.as_mut() else {
        return Ok(Flow::Close);
    };
    tc.on_sent(res, |v| ring.give_vec(v));
    if res < 0 {
        relay.log_error("send", -res);
        return Ok(Flow::Close);
    }
    let flow = pump_down(t, c, ring, relay)?;
    if flow == Flow::Continue {
        // rustls may have answered the client (a key update) meanwhile.
        c.tls_flush(ring)?;
    }
    Ok(flow)
}

/// A completion on the backend's socket in a TLS tunnel: its multishot receive
/// (plaintext to encrypt) or a send of decrypted plaintext.
pub fn on_upstream(
    t: &mut Tunnel,
    c: &mut Conn,
    ring: &mut Ring,
    relay: &mut Relay,
    now: u64,
    op: Op,
    cqe: &Completion,
) -> io::Result<Flow> {
    let res = cqe.res();
    match op {
        Op::Recv => {
            let d = &mut t.dirs[1];
            if !cqe.more() {
                d.recv_armed = false;
            }
            if res > 0 {
                let queued = match d.take_buffer(cqe, res as u32, ring, relay) {
                    Took::Missing => return Ok(Flow::Close),
                    Took::Dropped => return Ok(Flow::Continue),
                    Took::Queued(n) => n,
                };
                d.bytes += res as u64;
                relay.moved[1] += res as u64;
                if queued >= COPY_QUEUE_MAX && d.recv_armed && cqe.more() && !d.pausing {
                    d.pausing = true;
                    c.cancel(ring, Op::Recv, Side::Upstream)?;
                }
                t.touch(c, now);
                return pump_down(t, c, ring, relay);
            }
            if res == 0 {
                if d.state == DirState::Open {
                    d.state = DirState::Eof;
                }
                return pump_down(t, c, ring, relay);
            }
            match -res {
                libc::ENOBUFS => {
                    d.starve(relay, (c.idx, c.gen, 1));
                    Ok(Flow::Continue)
                }
                libc::ECANCELED => {
                    arm_up(t, c, ring)?;
                    Ok(Flow::Continue)
                }
                err => {
                    relay.log_error("receive", err);
                    Ok(Flow::Close)
                }
            }
        }
        Op::Send => {
            t.dirs[0].sending = false;
            let Some(tc) = c.tls.as_mut() else {
                return Ok(Flow::Close);
            };
            if res < 0 {
                relay.log_error("send", -res);
                return Ok(Flow::Close);
            }
            tc.up_sent += res as usize;
            if tc.up_sent < tc.up.len() {
                t.dirs[0].sending = true;
                c.tls_send_up(ring)?;
                return Ok(Flow::Continue);
            }
            tc.up.clear();
            tc.up_sent = 0;
            pump_up(t, c, ring, relay)
        }
        _ => Ok(Flow::Continue),
    }
}

/// Buffers came back: re-arm starved direction `i`.
pub fn feed(
    t: &mut Tunnel,
    c: &mut Conn,
    ring: &mut Ring,
    relay: &mut Relay,
    i: usize,
) -> io::Result<()> {
    t.dirs[i].starved = false;
    if i == 1 {
        return arm_up(t, c, ring);
    }
    pump_up(t, c, ring, relay).map(|_| ())
}

/// Client → backend: feed queued ciphertext, send decrypted plaintext, re-arm the
/// client's receive, finish the direction at the client's end.
fn pump_up(t: &mut Tunnel, c: &mut Conn, ring: &mut Ring, relay: &mut Relay) -> io::Result<Flow> {
    let d = &mut t.dirs[0];
    let Some(tc) = c.tls.as_mut() else {
        return Ok(Flow::Close);
    };
    // Ciphertext in, while rustls has room for the plaintext.
    while let Some(&(bid, len)) = d.bufs.front() {
        let data = &ring.buffer(bid, len as usize)[d.sent as usize..];
        match tc.feed(data) {
            Fed::Took(n) => {
                d.sent += n as u32;
                if d.sent < len {
                    break;
                }
                d.bufs.pop_front();
                d.sent = 0;
                ring.recycle_buffer(bid);
                relay.bufs_held -= 1;
            }
            Fed::PlainHttp | Fed::Failed(_) => {
                relay.log_error_msg("TLS record error from the client; closing the tunnel");
                c.tls_goodbye();
                return Ok(Flow::Close);
            }
        }
    }
    // Plaintext out, one send at a time.
    let mut ended = false;
    if !d.sending && d.live() {
        if tc.up.capacity() == 0 {
            tc.up = ring.take_vec();
        }
        let n = tc.read_plain_into_up(BUF_SIZE as usize);
        if n > 0 {
            tc.up_sent = 0;
            d.bytes += n as u64;
            relay.moved[0] += n as u64;
            d.sending = true;
            c.tls_send_up(ring)?;
        } else {
            ring.give_vec(std::mem::take(&mut tc.up));
            if n == 0 {
                ended = true;
            } else if n != -libc::EAGAIN {
                return Ok(Flow::Close);
            }
        }
    }
    // An alert or a key-update answer rustls queued.
    c.tls_flush(ring)?;
    let d = &mut t.dirs[0];
    if ended && d.state == DirState::Open {
        d.state = DirState::Eof;
    }
    if d.state == DirState::Eof && !d.sending && d.bufs.is_empty() {
        return Ok(t.end_dir(c, 0));
    }
    let armed = c.tls.as_ref().is_some_and(|tc| tc.recv_armed);
    if d.state == DirState::Open && !armed && !d.starved && d.bufs.len() <= COPY_QUEUE_MAX / 2 {
        d.pausing = false;
        c.tls_arm_recv(ring, true)?;
    }
    Ok(Flow::Continue)
}

/// Backend → client: encrypt queued plaintext, send the ciphertext, re-arm the backend's
/// receive, and at its end send `close_notify` and finish the direction once it is out.
fn pump_down(t: &mut Tunnel, c: &mut Conn, ring: &mut Ring, relay: &mut Relay) -> io::Result<Flow> {
    let d = &mut t.dirs[1];
    let Some(tc) = c.tls.as_mut() else {
        return Ok(Flow::Close);
    };
    while let Some(&(bid, len)) = d.bufs.front() {
        let data = &ring.buffer(bid, len as usize)[d.sent as usize..];
        let n = tc.write_plain(data, true);
        d.sent += n as u32;
        if d.sent < len {
            break;
        }
        d.bufs.pop_front();
        d.sent = 0;
        ring.recycle_buffer(bid);
        relay.bufs_held -= 1;
    }
    let tail_in = d.state == DirState::Eof && d.bufs.is_empty();
    if tail_in {
        // Once, and after every byte of the backend's (rustls ignores a second one).
        tc.close_notify();
    }
    c.tls_flush(ring)?;
    let flushed = c.tls.as_ref().is_some_and(|tc| tc.flushed());
    if tail_in && flushed {
        return Ok(t.end_dir(c, 1));
    }
    arm_up(t, c, ring)?;
    Ok(Flow::Continue)
}

/// Arm the backend's multishot receive unless it is armed, starved, ended or its queue
/// is long.
fn arm_up(t: &mut Tunnel, c: &mut Conn, ring: &mut Ring) -> io::Result<()> {
    let d = &mut t.dirs[1];
    if d.state != DirState::Open || d.recv_armed || d.starved || d.bufs.len() > COPY_QUEUE_MAX / 2 {
        return Ok(());
    }
    d.recv_armed = true;
    d.pausing = false;
    c.recv_multi(ring, Side::Upstream)
}
