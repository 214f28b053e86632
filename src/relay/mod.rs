//! The relay of an upgraded connection: both directions of a [`Tunnel`], in `splice` or
//! `copy` mode, and the one place that decides when a direction is done.
//!
//! Each direction (source side → the other side) is independent: `Off → Open → Eof →
//! Done`. End-of-stream from the source becomes `shutdown(SHUT_WR)` on the peer once the
//! buffered bytes are delivered ([`Tunnel::end_dir`]); the tunnel ends when both
//! directions are done, or at the first error. An idle tunnel holds its two sockets and
//! nothing else: no buffer, no pipe, no pending splice.
//!
//! The modes (see their files): [`splice`] — readiness by multishot POLLIN, then
//! `splice(2)` socket → pipe → peer with pipes lent from a per-worker pool only while
//! bytes are in flight; [`copy`] — multishot receive into the worker's provided-buffer
//! ring, buffers sent to the peer in order; and `auto` (the default), where each direction
//! starts in copy and moves to splice while its receives keep filling whole buffers
//! ([`TO_SPLICE`] in a row: bulk), and back to copy while its splices move little
//! ([`TO_COPY`] bursts in a row under [`SMALL`] bytes each; a burst runs from readiness
//! until the source is found empty, so a frame header sent on its own before a large
//! payload does not count against it). A switch to splice waits
//! until the multishot receive has ended and every received buffer is sent; a switch to
//! copy happens only with the pipe empty. So bytes are never reordered, dropped or
//! duplicated, and an idle tunnel still holds no buffer and no pipe.
//!
//! Relay handlers take the session's [`Conn`], the ring and the worker's [`Relay`] tools,
//! and answer [`Flow::Continue`] or [`Flow::Close`]; they never touch the slab.

pub mod copy;
pub mod splice;
pub mod tls;

use crate::config::TunnelMode;
use crate::conn::Conn;
use crate::ring::{Completion, Op, Ring, Side};
use std::collections::VecDeque;
use std::io;

pub use splice::{Pipe, PipePool};

/// auto: full receive buffers in a row that move a direction from copy to splice.
pub const TO_SPLICE: u8 = 2;
/// auto: bursts in a row (readiness until the source is empty), each moving under
/// [`SMALL`] bytes, that move a direction from splice back to copy.
pub const TO_COPY: u8 = 4;
/// auto: a splice burst moving fewer bytes than this counts as small traffic.
pub const SMALL: usize = 4096;

/// What a relay handler asks of its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Flow {
    /// Keep going.
    Continue,
    /// The relay is over (finished, or a socket failed): close the session.
    Close,
}

/// A direction waiting for the worker: (slab index, generation, direction).
pub type Waiting = (u32, u32, usize);

/// The worker's relay tools, lent to every relay handler.
#[derive(Debug)]
pub struct Relay {
    /// The relay mode of new tunnels.
    pub mode: TunnelMode,
    /// Pipes lent to splice directions while bytes are in flight.
    pub pipes: PipePool,
    /// Splice directions that yielded with more to move (run again this loop turn).
    pub ready: VecDeque<Waiting>,
    /// Copy directions whose receive ran out of ring buffers (re-armed when some return).
    pub starved: VecDeque<Waiting>,
    /// Worker index, for log lines.
    pub worker: usize,
    /// Provided buffers queued in tunnels (received, not yet sent).
    pub bufs_held: usize,
    /// auto: directions moved between copy and splice.
    pub switches: u64,
    /// Bytes taken from sources, per direction (client → backend, backend → client).
    pub moved: [u64; 2],
    /// Which TLS sessions may hand their record layer to the kernel (kTLS).
    pub kernel_tls: crate::tls::ktls::Support,
    /// TLS tunnels whose record layer went to the kernel.
    pub kernel_tunnels: u64,
}

impl Relay {
    /// Tools for worker `worker` relaying in `mode`, keeping at most `idle_pipes` pipes.
    pub fn new(mode: TunnelMode, idle_pipes: usize, worker: usize) -> Relay {
        Relay {
            mode,
            pipes: PipePool::new(idle_pipes),
            ready: VecDeque::new(),
            starved: VecDeque::new(),
            worker,
            bufs_held: 0,
            switches: 0,
            moved: [0, 0],
            kernel_tls: crate::tls::ktls::MISSING,
            kernel_tunnels: 0,
        }
    }

    fn log_error_msg(&self, msg: &str) {
        crate::log::write(
            crate::log::Level::Error,
            crate::log::Who::Worker(self.worker),
            None,
            format_args!("{msg}"),
        );
    }

    fn log_error(&self, what: &str, err: i32) {
        if !crate::sys::is_peer_gone(err) {
            crate::log::write(
                crate::log::Level::Error,
                crate::log::Who::Worker(self.worker),
                None,
                format_args!("tunnel {what} error: {}", io::Error::from_raw_os_error(err)),
            );
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
    /// The receive's cancel (backpressure) is on its way: not asked for again.
    pub pausing: bool,
    /// auto: the direction relays by splice now (else by copy).
    pub splicing: bool,
    /// auto: moving to splice once the receive has ended and the queue is sent.
    pub to_splice: bool,
    /// auto: full receives (copy) or small bursts (splice) in a row.
    pub streak: u8,
    /// auto (splice): bytes taken from the source since it was last found empty.
    pub burst: usize,
    /// Bytes taken from the source (the access log's and metrics' count).
    pub bytes: u64,
}

/// What became of the buffer a receive filled ([`Dir::take_buffer`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Took {
    /// Queued: the direction's queue is this long now.
    Queued(usize),
    /// The direction no longer relays: the buffer went back to the ring.
    Dropped,
    /// The completion named no buffer (cannot happen with a buffer ring): close.
    Missing,
}

impl Dir {
    /// Queue the provided buffer of a receive that took `len` bytes (it is sent, or fed,
    /// in order), counting it as held; a direction that no longer relays gives it back.
    pub fn take_buffer(
        &mut self,
        cqe: &Completion,
        len: u32,
        ring: &mut Ring,
        relay: &mut Relay,
    ) -> Took {
        let Some(bid) = cqe.buffer_id() else {
            return Took::Missing;
        };
        if !self.live() {
            ring.recycle_buffer(bid);
            return Took::Dropped;
        }
        self.bufs.push_back((bid, len));
        relay.bufs_held += 1;
        Took::Queued(self.bufs.len())
    }

    /// Its receive found the ring empty: wait on the worker's starved list (once) to be
    /// re-armed when buffers come back.
    pub fn starve(&mut self, relay: &mut Relay, who: Waiting) {
        if !self.starved {
            self.starved = true;
            relay.starved.push_back(who);
        }
    }

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
            pausing: false,
            splicing: false,
            to_splice: false,
            streak: 0,
            burst: 0,
            bytes: 0,
        }
    }
    /// Relaying or delivering the tail.
    pub fn live(&self) -> bool {
        matches!(self.state, DirState::Open | DirState::Eof)
    }
}

/// The side a direction reads from (direction `i` flows from side `i`).
pub fn source(i: usize) -> Side {
    if i == 0 {
        Side::Client
    } else {
        Side::Upstream
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
    /// When it was upgraded (µs, `metrics::now_us`; the access log's duration).
    pub started_us: u64,
    /// How it ended: 1 + the direction that finished first, or the session's mark
    /// (`session::observe`); 0: not known (an error, a stop).
    pub end: u8,
}

impl Default for Tunnel {
    fn default() -> Self {
        Tunnel::new()
    }
}

impl Tunnel {
    /// A relay with both directions off.
    pub fn new() -> Tunnel {
        Tunnel {
            dirs: [Dir::new(DirState::Off), Dir::new(DirState::Off)],
            polling: [false, false],
            upgraded: false,
            idle_ms: 0,
            started_us: 0,
            end: 0,
        }
    }

    /// An upgraded tunnel with both directions open, pushed-out idle deadline `idle_ms`.
    pub fn upgraded(idle_ms: u64) -> Tunnel {
        let mut t = Tunnel::new();
        t.dirs[0].state = DirState::Open;
        t.dirs[1].state = DirState::Open;
        t.upgraded = true;
        t.idle_ms = idle_ms;
        t
    }

    /// Whether the relay is finished.
    pub fn finished(&self) -> bool {
        let done = |d: &Dir| matches!(d.state, DirState::Done | DirState::Off);
        done(&self.dirs[0]) && done(&self.dirs[1])
    }

    /// Start relaying: read from the upstream first (its early bytes go out first), then
    /// from the client.
    pub fn start(&mut self, c: &mut Conn, ring: &mut Ring, relay: &mut Relay) -> io::Result<()> {
        self.dirs[0].splicing = relay.mode == TunnelMode::Splice;
        self.dirs[1].splicing = relay.mode == TunnelMode::Splice;
        self.arm_source(c, ring, relay, 1)?;
        self.arm_source(c, ring, relay, 0)
    }

    /// Whether direction `i` relays by splice now.
    pub fn splicing(&self, i: usize) -> bool {
        self.dirs[i].splicing
    }

    /// Start reading from socket `i` for its direction: multishot POLLIN (splice) or
    /// multishot receive (copy). In auto mode, a direction waiting to move to splice does
    /// so here once its receive has ended and its queue is sent.
    pub fn arm_source(
        &mut self,
        c: &mut Conn,
        ring: &mut Ring,
        relay: &mut Relay,
        i: usize,
    ) -> io::Result<()> {
        let d = &mut self.dirs[i];
        if d.to_splice
            && !d.recv_armed
            && !d.sending
            && d.bufs.is_empty()
            && d.state == DirState::Open
        {
            d.to_splice = false;
            d.splicing = true;
            d.streak = 0;
            d.burst = 0;
            d.starved = false;
            relay.switches += 1;
        }
        if d.splicing {
            if self.polling[i] {
                return Ok(());
            }
            self.polling[i] = true;
            let events = (libc::POLLIN | libc::POLLRDHUP) as u32;
            c.poll(ring, source(i), events, true, Op::PollIn)
        } else {
            if d.recv_armed || d.to_splice || d.state != DirState::Open {
                return Ok(());
            }
            d.recv_armed = true;
            d.starved = false;
            d.pausing = false;
            c.recv_multi(ring, source(i))
        }
    }

    /// Direction `i` delivered its tail after end-of-stream: shut the peer's write half.
    /// The one place a direction becomes `Done`; the session closes when both are.
    fn end_dir(&mut self, c: &mut Conn, i: usize) -> Flow {
        c.shutdown(source(1 - i), libc::SHUT_WR);
        self.dirs[i].state = DirState::Done;
        if self.end == 0 {
            self.end = i as u8 + 1;
        }
        if self.finished() {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    /// Bytes moved: push the idle deadline out (`--tunnel-idle-timeout`, if any).
    fn touch(&self, c: &mut Conn, now: u64) {
        if self.idle_ms != 0 && c.deadline != 0 {
            c.deadline = now + self.idle_ms;
        }
    }

    /// Cancel, by token, what stays armed by itself: multishot POLLINs and receives,
    /// POLLOUTs. With `upstream_too` false only the client side's.
    pub fn cancel_armed(
        &self,
        c: &mut Conn,
        ring: &mut Ring,
        upstream_too: bool,
    ) -> io::Result<()> {
        for i in 0..2 {
            if i == 1 && !upstream_too {
                continue;
            }
            let side = source(i);
            if self.polling[i] {
                c.cancel(ring, Op::PollIn, side)?;
            }
            if self.dirs[i].recv_armed {
                c.cancel(ring, Op::Recv, side)?;
            }
            // A TLS client's ciphertext receive (`relay::tls`).
            if i == 0 && c.tls.as_ref().is_some_and(|t| t.recv_armed) {
                c.cancel(ring, Op::TlsRecv, side)?;
            }
            // POLLOUT on socket `side` serves the direction flowing into it.
            if self.dirs[1 - i].pollout {
                c.cancel(ring, Op::PollOut, side)?;
            }
        }
        Ok(())
    }

    /// Stop relaying (an error answer replaces the relay): live directions go off.
    pub fn stop(&mut self) {
        for d in self.dirs.iter_mut() {
            if d.live() {
                d.state = DirState::Off;
            }
        }
    }

    /// Give back what the relay holds (the session is being freed, nothing is in flight):
    /// pipes to the pool (or closed, when they still hold bytes), buffers to the ring.
    pub fn release(&mut self, ring: &mut Ring, relay: &mut Relay) {
        for d in self.dirs.iter_mut() {
            if let Some(p) = d.pipe.take() {
                if d.pending > 0 {
                    relay.pipes.discard(p);
                } else {
                    relay.pipes.give(p);
                }
            }
            for (bid, _) in d.bufs.drain(..) {
                ring.recycle_buffer(bid);
                relay.bufs_held -= 1;
            }
        }
    }
}
