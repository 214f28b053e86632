//! copy mode: a multishot receive per socket takes buffers from the worker's provided
//! buffer ring; each buffer is sent to the peer in order and recycled when sent.
//!
//! A direction with [`COPY_QUEUE_MAX`] buffers queued cancels its receive until the queue
//! drains to half (backpressure), so one slow peer cannot drain the ring. A receive that
//! finds the ring empty (-ENOBUFS) waits in the worker's starved list and is re-armed
//! when buffers come back ([`feed`]).

use super::{source, DirState, Flow, Relay, Took, Tunnel, TO_SPLICE};
use crate::config::TunnelMode;
use crate::conn::Conn;
use crate::ring::{Completion, Op, Ring, Side};
use std::io;

/// Receive buffers queued in one direction before its receive is paused.
pub const COPY_QUEUE_MAX: usize = 8;
/// Size of each provided buffer (the worker registers its ring with it).
pub const BUF_SIZE: u32 = 16 * 1024;

/// Send the front buffer of direction `i` to its destination.
fn send_front(t: &mut Tunnel, c: &mut Conn, ring: &mut Ring, i: usize) -> io::Result<()> {
    let d = &mut t.dirs[i];
    let Some(&(bid, len)) = d.bufs.front() else {
        return Ok(());
    };
    d.sending = true;
    let off = d.sent as usize;
    c.send_buffer(ring, source(1 - i), bid, off, len as usize - off)
}

/// The multishot receive on `side` completed: queue its buffer and send, note
/// end-of-stream, or handle running out of buffers.
pub fn on_recv(
    t: &mut Tunnel,
    c: &mut Conn,
    ring: &mut Ring,
    relay: &mut Relay,
    now: u64,
    side: Side,
    cqe: &Completion,
) -> io::Result<Flow> {
    let i = side.idx();
    let d = &mut t.dirs[i];
    if !cqe.more() {
        d.recv_armed = false;
    }
    let mut res = cqe.res();
    if c.ktls && side == Side::Client && (res == -libc::EIO || res == -libc::EINVAL) {
        // kTLS: a record that is not data (the client's close_notify) ends its stream.
        res = 0;
    }
    if res > 0 {
        match d.take_buffer(cqe, res as u32, ring, relay) {
            Took::Missing => return Ok(Flow::Close),
            Took::Dropped => return Ok(Flow::Continue),
            Took::Queued(_) => {}
        }
        d.bytes += res as u64;
        relay.moved[i] += res as u64;
        if relay.mode == TunnelMode::Auto && !d.to_splice {
            // Bulk fills whole buffers: after a few in a row, splice instead.
            d.streak = if res as u32 >= BUF_SIZE {
                d.streak.saturating_add(1)
            } else {
                0
            };
            d.to_splice = d.streak >= TO_SPLICE;
        }
        let need_cancel = (d.bufs.len() >= COPY_QUEUE_MAX || d.to_splice)
            && d.recv_armed
            && cqe.more()
            && !d.pausing;
        let start_send = !d.sending;
        if need_cancel {
            d.pausing = true;
            c.cancel(ring, Op::Recv, side)?;
        }
        t.touch(c, now);
        if start_send {
            send_front(t, c, ring, i)?;
        }
        return Ok(Flow::Continue);
    }
    if res == 0 {
        if d.state == DirState::Open {
            d.state = DirState::Eof;
        }
        if d.bufs.is_empty() && !d.sending && d.state == DirState::Eof {
            return Ok(t.end_dir(c, i));
        }
        return Ok(Flow::Continue);
    }
    let err = -res;
    if err == libc::ENOBUFS {
        d.starve(relay, (c.idx, c.gen, i));
        return Ok(Flow::Continue);
    }
    if err == libc::ECANCELED {
        // Our cancel (backpressure, or the move to splice): re-armed — or, in auto mode,
        // moved to splice — once the queue drains; it may be drained already.
        if !d.recv_armed && !d.starved && d.bufs.len() <= COPY_QUEUE_MAX / 2 {
            t.arm_source(c, ring, relay, i)?;
        }
        return Ok(Flow::Continue);
    }
    relay.log_error("receive", err);
    Ok(Flow::Close)
}

/// A send to socket `side` completed (it belongs to the direction flowing into it):
/// recycle a fully sent buffer, send the next, finish the direction after end-of-stream,
/// re-arm a paused receive.
pub fn on_send(
    t: &mut Tunnel,
    c: &mut Conn,
    ring: &mut Ring,
    relay: &mut Relay,
    side: Side,
    res: i32,
) -> io::Result<Flow> {
    let i = side.other().idx();
    let d = &mut t.dirs[i];
    d.sending = false;
    if res < 0 {
        relay.log_error("send", -res);
        return Ok(Flow::Close);
    }
    d.sent += res as u32;
    if let Some(&(bid, len)) = d.bufs.front() {
        if d.sent >= len {
            d.bufs.pop_front();
            d.sent = 0;
            ring.recycle_buffer(bid);
            relay.bufs_held -= 1;
        }
    }
    let more = !d.bufs.is_empty();
    let eof_done = !more && d.state == DirState::Eof;
    let rearm = !d.recv_armed
        && d.state == DirState::Open
        && !d.starved
        && d.bufs.len() <= COPY_QUEUE_MAX / 2;
    let mut flow = Flow::Continue;
    if more {
        send_front(t, c, ring, i)?;
    } else if eof_done {
        flow = t.end_dir(c, i);
    }
    if rearm && flow == Flow::Continue {
        t.arm_source(c, ring, relay, i)?;
    }
    Ok(flow)
}

/// Buffers came back: re-arm the receive of starved direction `i` (if it still is).
pub fn feed(
    t: &mut Tunnel,
    c: &mut Conn,
    ring: &mut Ring,
    relay: &mut Relay,
    i: usize,
) -> io::Result<()> {
    if !t.dirs[i].starved || !t.dirs[i].live() {
        return Ok(());
    }
    t.dirs[i].starved = false;
    t.arm_source(c, ring, relay, i)
}
