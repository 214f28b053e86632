//! Upgraded-connection relay: one direction at a time, in `splice` or `copy` mode.
//!
//! **splice**: each socket has one multishot POLLIN. When it fires, [`pump_splice`] calls
//! `splice(2)` directly with `SPLICE_F_NONBLOCK | SPLICE_F_MOVE`: socket → pipe → peer,
//! until the source says EAGAIN. A pipe is taken from the worker's [`PipePool`] only while
//! bytes are in flight and returned as soon as it is empty, so an idle tunnel holds two
//! sockets and no pipe. We only splice *into an empty pipe*, which makes EAGAIN from
//! socket → pipe unambiguous ("socket empty", never "pipe full"). When the peer is full the
//! pipe keeps its bytes and a single-shot POLLOUT on the peer resumes the direction.
//! `IORING_OP_SPLICE` is never used: the kernel runs it in an io-wq thread, and one parked
//! per idle socket costs a kernel thread each (see FACTS.md).
//!
//! **copy**: a multishot receive per socket takes buffers from the worker's provided
//! buffer ring; each buffer is sent to the peer in order and recycled when sent. A
//! direction with too many buffers queued cancels its receive until the queue drains
//! (backpressure), so one slow peer cannot drain the ring.
//!
//! Half-close: each direction is independent (`Open → Eof → Done`). End-of-stream from the
//! source is turned into `shutdown(SHUT_WR)` on the peer after the buffered bytes are
//! delivered; the tunnel ends when both directions are done, or at the first error.

use crate::sys;
use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

/// Bytes one socket → pipe splice moves at most (the default pipe capacity).
pub const PIPE_CAP: usize = 64 * 1024;
/// Socket → pipe → peer rounds per readiness event before yielding to other tunnels.
pub const ROUNDS: usize = 8;
/// Copy mode: receive buffers queued in one direction before its receive is paused.
pub const COPY_QUEUE_MAX: usize = 8;

/// A pipe's two ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pipe {
    /// Read end.
    pub r: RawFd,
    /// Write end.
    pub w: RawFd,
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
    /// Return an *empty* pipe.
    pub fn give(&mut self, p: Pipe) {
        self.in_use -= 1;
        if self.idle.len() < self.max_idle {
            self.idle.push(p);
        } else {
            sys::close(p.r);
            sys::close(p.w);
        }
    }
    /// Return a pipe that may still hold bytes (its tunnel died): close it.
    pub fn discard(&mut self, p: Pipe) {
        self.in_use -= 1;
        sys::close(p.r);
        sys::close(p.w);
    }
    /// Idle pipes held.
    pub fn idle(&self) -> usize {
        self.idle.len()
    }
}

impl Drop for PipePool {
    fn drop(&mut self) {
        for p in self.idle.drain(..) {
            sys::close(p.r);
            sys::close(p.w);
        }
    }
}

/// One direction's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirState {
    /// Not relaying (yet): e.g. the client side before the backend said 101.
    Off,
    /// Relaying.
    Open,
    /// The source ended; what is buffered is still being delivered.
    Eof,
    /// Delivered and the peer's write half is shut.
    Done,
}

/// One direction of a tunnel (source side → the other side).
#[derive(Debug)]
pub struct Dir {
    /// Progress.
    pub state: DirState,
    /// splice: the pipe lent while bytes are in flight.
    pub pipe: Option<Pipe>,
    /// splice: bytes in the pipe not yet delivered.
    pub pending: usize,
    /// A POLLOUT on the destination is in flight.
    pub pollout: bool,
    /// Sitting in the worker's ready queue.
    pub queued: bool,
    /// copy: received buffers (id, length) waiting to be sent, oldest first.
    pub bufs: VecDeque<(u16, u32)>,
    /// copy: bytes of the front buffer already sent.
    pub sent: u32,
    /// copy: a send is in flight.
    pub sending: bool,
    /// copy: the multishot receive is armed.
    pub recv_armed: bool,
    /// copy: the receive ran out of ring buffers and waits to be re-armed.
    pub starved: bool,
}

impl Dir {
    /// A direction in state `state`.
    pub fn new(state: DirState) -> Dir {
        Dir {
            state,
            pipe: None,
            pending: 0,
            pollout: false,
            queued: false,
            bufs: VecDeque::new(),
            sent: 0,
            sending: false,
            recv_armed: false,
            starved: false,
        }
    }
    /// Relaying or delivering the tail.
    pub fn live(&self) -> bool {
        matches!(self.state, DirState::Open | DirState::Eof)
    }
}

/// Both directions of one session's relay. `dirs[0]`: client → upstream; `dirs[1]`:
/// upstream → client.
#[derive(Debug)]
pub struct Tunnel {
    /// The two directions, indexed by source side.
    pub dirs: [Dir; 2],
    /// Multishot POLLIN armed on socket 0 (client) / 1 (upstream) — splice mode.
    pub polling: [bool; 2],
    /// Counted as an upgraded tunnel in the stats.
    pub upgraded: bool,
    /// Idle deadline pushed out by every byte moved, in ms (0: none).
    pub idle_ms: u64,
}

impl Tunnel {
    /// A relay with both directions off.
    pub fn new() -> Tunnel {
        Tunnel {
            dirs: [Dir::new(DirState::Off), Dir::new(DirState::Off)],
            polling: [false, false],
            upgraded: false,
            idle_ms: 0,
        }
    }
    /// Whether the relay is finished.
    pub fn finished(&self) -> bool {
        let done = |d: &Dir| matches!(d.state, DirState::Done | DirState::Off);
        done(&self.dirs[0]) && done(&self.dirs[1])
    }
}

impl Default for Tunnel {
    fn default() -> Self {
        Tunnel::new()
    }
}

/// What a pump step asks of the worker.
#[derive(Debug, PartialEq, Eq)]
pub enum Pump {
    /// Nothing more to do until the next readiness event.
    Idle,
    /// Bytes moved and more may follow: put the direction in the ready queue.
    Yield,
    /// The destination is full: arm POLLOUT on it.
    WaitWritable,
    /// This direction finished (source ended, tail delivered, peer's write half shut).
    Finished,
    /// A socket failed; end the session.
    Failed(i32),
}

/// Move bytes `src → pipe → dst` for one direction until the source is empty, the
/// destination is full, or the round budget is spent. Sets `moved` when any byte moved.
pub fn pump_splice(
    d: &mut Dir,
    pool: &mut PipePool,
    src: RawFd,
    dst: RawFd,
    moved: &mut bool,
) -> Pump {
    if !d.live() || d.pollout {
        return Pump::Idle;
    }
    for _ in 0..ROUNDS {
        if d.pending > 0 {
            let p = d.pipe.expect("pending bytes live in a pipe");
            match sys::splice(p.r, dst, d.pending) {
                Ok(n) => {
                    d.pending -= n;
                    *moved = true;
                    continue;
                }
                Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => return Pump::WaitWritable,
                Err(e) => return Pump::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
            }
        }
        // The pipe is empty here.
        if d.state == DirState::Eof {
            if let Some(p) = d.pipe.take() {
                pool.give(p);
            }
            sys::shutdown_write(dst);
            d.state = DirState::Done;
            return Pump::Finished;
        }
        let p = match d.pipe {
            Some(p) => p,
            None => match pool.take() {
                Ok(p) => {
                    d.pipe = Some(p);
                    p
                }
                Err(e) => return Pump::Failed(e.raw_os_error().unwrap_or(libc::EMFILE)),
            },
        };
        match sys::splice(src, p.w, PIPE_CAP) {
            Ok(0) => d.state = DirState::Eof,
            Ok(n) => {
                d.pending = n;
                *moved = true;
            }
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => {
                // Socket empty (the pipe was empty, so it cannot be "pipe full").
                if let Some(p) = d.pipe.take() {
                    pool.give(p);
                }
                return Pump::Idle;
            }
            Err(e) => return Pump::Failed(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
    Pump::Yield
}
