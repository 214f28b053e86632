//! splice mode: each socket has one multishot POLLIN; when it fires, [`pump`] calls
//! `splice(2)` directly with `SPLICE_F_NONBLOCK | SPLICE_F_MOVE`: socket → pipe → peer,
//! until the source says EAGAIN.
//!
//! A pipe is taken from the worker's [`PipePool`] only while bytes are in flight and
//! returned as soon as it is empty, so an idle tunnel holds two sockets and no pipe. We
//! only splice *into an empty pipe*, which makes EAGAIN from socket → pipe unambiguous
//! ("socket empty", never "pipe full"). When the peer is full the pipe keeps its bytes and
//! a single-shot POLLOUT on the peer resumes the direction. `IORING_OP_SPLICE` is never
//! used: the kernel runs it in an io-wq thread, and one parked per idle socket costs a
//! kernel thread each (see FACTS.md).

use super::{source, DirState, Flow, Relay, Tunnel, SMALL, TO_COPY};
use crate::config::TunnelMode;
use crate::conn::Conn;
use crate::ring::{Completion, Op, Ring, Side};
use crate::sys;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

/// Bytes one socket → pipe splice moves at most (the default pipe capacity).
pub const PIPE_CAP: usize = 64 * 1024;
/// Socket → pipe → peer rounds per readiness event before yielding to other tunnels.
pub const ROUNDS: usize = 8;

/// A pipe's two ends (closed when dropped).
#[derive(Debug)]
pub struct Pipe {
    /// Read end.
    pub r: OwnedFd,
    /// Write end.
    pub w: OwnedFd,
}

/// The per-worker pool of pipes, lent only while bytes are in flight.
#[derive(Debug, Default)]
pub struct PipePool {
    idle: Vec<Pipe>,
    /// Pipes currently lent to tunnels.
    pub in_use: usize,
    /// Idle pipes kept for reuse at most; more are closed.
    pub max_idle: usize,
}

impl PipePool {
    /// A pool keeping at most `max_idle` idle pipes.
    pub fn new(max_idle: usize) -> PipePool {
        PipePool {
            idle: Vec::new(),
            in_use: 0,
            max_idle,
        }
    }
    /// Take an idle pipe or make one.
    pub fn take(&mut self) -> io::Result<Pipe> {
        let p = match self.idle.pop() {
            Some(p) => p,
            None => {
                let (r, w) = sys::pipe()?;
                Pipe { r, w }
            }
        };
        self.in_use += 1;
        Ok(p)
    }
    /// Return an *empty* pipe (kept for reuse, or closed past `max_idle`).
    pub fn give(&mut self, p: Pipe) {
        self.in_use -= 1;
        if self.idle.len() < self.max_idle {
            self.idle.push(p);
        }
    }
    /// Return a pipe that may still hold bytes (its tunnel died): it is closed.
    pub fn discard(&mut self, p: Pipe) {
        self.in_use -= 1;
        drop(p);
    }
    /// Idle pipes held.
    pub fn idle(&self) -> usize {
        self.idle.len()
    }
}

/// What one pump run found.
#[derive(Debug, PartialEq, Eq)]
enum Pumped {
    /// Nothing more to do until the next readiness event.
    Idle,
    /// Bytes moved and more may follow: run again later this loop turn.
    Yield,
    /// The destination is full: wait for it to be writable.
    WaitWritable,
    /// The source ended and the pipe is empty: the direction's tail is delivered.
    Drained,
    /// A socket failed.
    Failed(i32),
}

/// Move bytes `src → pipe → dst` for direction `i` until the source is empty, the
/// destination is full, or the round budget is spent. Adds the bytes taken from the source
/// to `moved`.
fn splice_rounds(
    t: &mut Tunnel,
    i: usize,
    pool: &mut PipePool,
    src: RawFd,
    dst: RawFd,
    moved: &mut usize,
    ktls_src: bool,
) -> Pumped {
    let d = &mut t.dirs[i];
    if !d.live() || d.pollout {
        return Pumped::Idle;
    }
    for _ in 0..ROUNDS {
        if d.pending > 0 {
            let Some(p) = d.pipe.as_ref() else {
                return Pumped::Failed(libc::EIO);
            };
            match sys::splice(p.r.as_raw_fd(), dst, d.pending) {
                Ok(n) => {
                    d.pending -= n;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Pumped::WaitWritable,
                Err(e) => return Pumped::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
            }
        }
        // The pipe is empty here.
        if d.state == DirState::Eof {
            if let Some(p) = d.pipe.take() {
                pool.give(p);
            }
            return Pumped::Drained;
        }
        if d.pipe.is_none() {
            match pool.take() {
                Ok(p) => d.pipe = Some(p),
                Err(e) => return Pumped::Failed(e.raw_os_error().unwrap_or(libc::EMFILE)),
            }
        }
        let w = d.pipe.as_ref().map_or(-1, |p| p.w.as_raw_fd());
        match sys::splice(src, w, PIPE_CAP) {
            Ok(0) => d.state = DirState::Eof,
            Ok(n) => {
                d.pending = n;
                *moved += n;
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                // Socket empty (the pipe was empty, so it cannot be "pipe full").
                if let Some(p) = d.pipe.take() {
                    pool.give(p);
                }
                return Pumped::Idle;
            }
            // kTLS: a record that is not data (the client's close_notify) ends its stream.
            Err(e) if ktls_src && matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL)) => {
                d.state = DirState::Eof
            }
            Err(e) => return Pumped::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
    Pumped::Yield
}

/// Run direction `i` and act on what it found: queue it to run again, wait for the
/// destination, end the direction, or close on an error.
pub fn pump(
    t: &mut Tunnel,
    c: &mut Conn,
    ring: &mut Ring,
    relay: &mut Relay,
    now: u64,
    i: usize,
) -> io::Result<Flow> {
    if !t.splicing(i) {
        // auto: the direction moved back to copy after this run was queued (or its
        // readiness reported): its receive reads the socket now, never a splice as well.
        return Ok(Flow::Continue);
    }
    let (src, dst) = (c.fd(source(i)), c.fd(source(1 - i)));
    let mut moved = 0;
    let pending_before = t.dirs[i].pending;
    let ktls_src = i == 0 && c.ktls;
    let found = splice_rounds(t, i, &mut relay.pipes, src, dst, &mut moved, ktls_src);
    if moved > 0 || t.dirs[i].pending < pending_before {
        t.touch(c, now);
    }
    t.dirs[i].bytes += moved as u64;
    relay.moved[i] += moved as u64;
    // auto judges a whole burst (readiness to EAGAIN, across yields and waits for the
    // peer), not one run: a bulk message's first run may yield and its last move little.
    let burst = t.dirs[i].burst.saturating_add(moved);
    t.dirs[i].burst = burst;
    match found {
        Pumped::Idle => {
            t.dirs[i].burst = 0;
            if relay.mode == TunnelMode::Auto && burst > 0 {
                back_to_copy_if_small(t, c, ring, relay, i, burst)?;
            }
            Ok(Flow::Continue)
        }
        Pumped::Yield => {
            if !t.dirs[i].queued {
                t.dirs[i].queued = true;
                relay.ready.push_back((c.idx, c.gen, i));
            }
            Ok(Flow::Continue)
        }
        Pumped::WaitWritable => {
            t.dirs[i].pollout = true;
            c.poll(
                ring,
                source(1 - i),
                libc::POLLOUT as u32,
                false,
                Op::PollOut,
            )?;
            Ok(Flow::Continue)
        }
        Pumped::Drained => Ok(t.end_dir(c, i)),
        Pumped::Failed(err) => {
            relay.log_error("relay", err);
            Ok(Flow::Close)
        }
    }
}

/// auto: a burst of direction `i` (readiness until the source was empty) moved `moved`
/// bytes, more than none, and left its pipe empty. Bursts that found nothing (a readiness
/// event whose bytes an earlier run took: multishot POLLIN posts one per arrival) say
/// nothing about the traffic and are not counted. After [`TO_COPY`] small bursts in a row
/// the direction goes back to copy: its POLLIN is
/// cancelled and a multishot receive takes over (the socket's unread bytes stay in order:
/// nothing is in the pipe).
fn back_to_copy_if_small(
    t: &mut Tunnel,
    c: &mut Conn,
    ring: &mut Ring,
    relay: &mut Relay,
    i: usize,
    moved: usize,
) -> io::Result<()> {
    let d = &mut t.dirs[i];
    d.streak = if moved < SMALL {
        d.streak.saturating_add(1)
    } else {
        0
    };
    if d.streak < TO_COPY || d.pending > 0 || d.pollout || d.state != DirState::Open {
        return Ok(());
    }
    d.streak = 0;
    d.splicing = false;
    relay.switches += 1;
    if t.polling[i] {
        // `polling` stays set until the cancel's final completion arrives.
        c.cancel(ring, Op::PollIn, source(i))?;
    }
    t.arm_source(c, ring, relay, i)
}

/// Socket `side` is readable (or its multishot POLLIN ended).
pub fn on_poll_in(
    t: &mut Tunnel,
    c: &mut Conn,
    ring: &mut Ring,
    relay: &mut Relay,
    now: u64,
    side: Side,
    cqe: &Completion,
) -> io::Result<Flow> {
    let i = side.idx();
    if !cqe.more() {
        t.polling[i] = false;
    }
    if cqe.res() == -libc::ECANCELED {
        // auto: the cancel of a move back to copy. If the direction has moved to splice
        // again since, it needs its POLLIN back.
        if !t.polling[i] && t.splicing(i) && t.dirs[i].state == DirState::Open {
            t.arm_source(c, ring, relay, i)?;
        }
        return Ok(Flow::Continue);
    }
    if !t.splicing(i) {
        // auto: a readiness event that crossed the move back to copy; the receive reads.
        return Ok(Flow::Continue);
    }
    let live = t.dirs[i].live();
    if !cqe.more() && t.dirs[i].state == DirState::Open {
        t.arm_source(c, ring, relay, i)?;
    }
    if live {
        return pump(t, c, ring, relay, now, i);
    }
    Ok(Flow::Continue)
}

/// Socket `side` is writable again: resume the direction flowing *into* it.
pub fn on_poll_out(
    t: &mut Tunnel,
    c: &mut Conn,
    ring: &mut Ring,
    relay: &mut Relay,
    now: u64,
    side: Side,
    res: i32,
) -> io::Result<Flow> {
    let i = side.other().idx();
    t.dirs[i].pollout = false;
    if res == -libc::ECANCELED {
        return Ok(Flow::Continue);
    }
    pump(t, c, ring, relay, now, i)
}

/// A direction taken off the ready queue: run it again.
pub fn resume(
    t: &mut Tunnel,
    c: &mut Conn,
    ring: &mut Ring,
    relay: &mut Relay,
    now: u64,
    i: usize,
) -> io::Result<Flow> {
    t.dirs[i].queued = false;
    pump(t, c, ring, relay, now, i)
}
