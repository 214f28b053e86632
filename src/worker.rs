//! One worker: one thread, one io_uring, one SO_REUSEPORT listener, one budget.
//!
//! The loop: submit what is queued and wait for completions, route each completion by its
//! [`Token`] to the session it names, run tunnel directions that yielded, publish the
//! counters. Nothing here is shared with other workers except relaxed atomics (stats,
//! least-conn counts).
//!
//! Timers: the worker has one periodic timeout (`TICK`). Sessions carry a deadline; a
//! min-heap of `(deadline, slot, generation)` with lazy re-insertion turns per-connection
//! deadlines (request head, keep-alive idle, request body, upstream read, idle tunnel,
//! lingering close) into work done only at ticks — no timer per connection, and one heap
//! entry per session at most. Pooled upstream connections expire by a sweep of the pool
//! at ticks. Connects use io_uring's linked timeout.
//!
//! The HTTP path (heads, exchanges, keep-alive) is in `worker/exchange.rs`, the upstream
//! keep-alive pool in `worker/pool.rs`; tunnels and the rest are here.

use crate::budget::{Admit, Budget};
use crate::config::{AtLimit, Config, TunnelMode};
use crate::conn::{Admission, Exchange, Head, ReqPhase, RespPhase, Session, State, NO_BACKEND};
use crate::http::{self, reply, ClientError};
use crate::ring::{Completion, Op, Ring, Side, Token, GEN_MASK};
use crate::shm::Counters;
use crate::stats::WorkerStats;
use crate::sys;
use crate::tunnel::{self, DirState, PipePool, Pump, COPY_QUEUE_MAX};
use crate::upstream::Upstreams;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod exchange;
mod pool;

/// Period of the worker's one timer.
const TICK: Duration = Duration::from_millis(250);
/// Largest upstream response head.
const RESP_MAX: usize = 16 * 1024;
/// First size of a head buffer; it grows (doubling) up to the limit only when a head is
/// larger. Small first buffers keep the memory touched during a connection storm low.
const HEAD_FIRST: usize = 1024;
/// How long a lingering close waits for the client to finish sending.
const LINGER: Duration = Duration::from_secs(2);
/// Timeout for a refused (503) client to send its request before we answer anyway.
const RESERVE_HEAD_TIMEOUT: Duration = Duration::from_secs(1);
/// Copy mode: provided buffers per worker and their size.
const COPY_BUFS: u16 = 512;
const COPY_BUF_SIZE: u32 = 16 * 1024;
/// Idle pipes a worker keeps.
const PIPE_POOL_IDLE: usize = 64;
/// Request body buffer: body bytes stream through it in pieces of at most this size.
const BODY_BUF: usize = 16 * 1024;
/// Recycled exchanges (with their buffers) a worker keeps.
const SPARE_MAX: usize = 256;
/// Shutdown waits this long for sessions to drain their in-flight operations.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// Commands for a worker, set by the server and signalled through the worker's eventfd.
#[derive(Debug, Default)]
pub struct Control {
    /// Stop accepting, close everything, exit.
    pub shutdown: AtomicBool,
}

/// Where a full worker sends a client it cannot admit (to a sibling with room).
#[derive(Debug)]
pub enum Outbox {
    /// A sibling thread: a channel, then a wake-up of its control eventfd.
    Channel {
        /// The sibling's inbox.
        tx: std::sync::mpsc::Sender<RawFd>,
        /// The sibling's control eventfd.
        wake: RawFd,
    },
    /// A sibling process: a unix datagram socket; the descriptor travels as SCM_RIGHTS.
    Unix(RawFd),
    /// No way to reach it (this worker itself).
    None,
}

/// Where a worker receives clients handed over by full siblings.
#[derive(Debug)]
pub enum Inbox {
    /// From sibling threads.
    Channel(std::sync::mpsc::Receiver<RawFd>),
    /// From sibling processes (unix datagram socket, SCM_RIGHTS).
    Unix(RawFd),
}

/// What workers of one server know of each other: enough to hand a connection from a
/// full worker to one with room. Touched only at the limit, never on the data path.
#[derive(Debug)]
pub struct Peers {
    /// Everyone's counters (free slots are read from them).
    pub counters: Counters,
    /// Per worker (global index): how to hand it a client.
    pub outboxes: Vec<Outbox>,
}

impl Peers {
    /// Free client capacity of worker `j` as last published (a loop turn stale at most);
    /// 0 for a worker that is not running.
    pub fn room(&self, j: usize) -> u64 {
        let st = self.counters.worker(j);
        if st.running.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let cap = st.slots_capacity.load(Ordering::Relaxed);
        let used = st.slots_used.load(Ordering::Relaxed);
        // Idle pooled upstream connections give their slots up for a new client.
        let pooled = st.pooled.load(Ordering::Relaxed);
        (cap.saturating_sub(used) + pooled) / crate::budget::PER_CLIENT as u64
    }
}

/// What a worker is started with.
pub struct WorkerInit {
    /// Worker index.
    pub index: usize,
    /// Configuration.
    pub cfg: Arc<Config>,
    /// Backends.
    pub ups: Arc<Upstreams>,
    /// The worker's own listener (owned: closed by the worker).
    pub listener: RawFd,
    /// The worker's control eventfd (owned by the server, which closes it after join).
    pub ctl_fd: RawFd,
    /// Commands.
    pub control: Arc<Control>,
    /// Counters (this worker's row of the shared region).
    pub stats: &'static WorkerStats,
    /// The other workers.
    pub peers: Arc<Peers>,
    /// Connections handed over by full siblings.
    pub inbox: Inbox,
}

struct Slot {
    gen: u32,
    s: Option<Session>,
}

/// The worker's state. Lives on its thread's stack for the worker's whole life.
pub struct Worker {
    index: usize,
    cfg: Arc<Config>,
    ups: Arc<Upstreams>,
    backend_addrs: Vec<socket2::SockAddr>,
    listener: RawFd,
    ctl_fd: RawFd,
    control: Arc<Control>,
    stats: &'static WorkerStats,
    peers: Arc<Peers>,
    inbox: Inbox,
    handed_off: u64,
    ring: Ring,
    budget: Budget,
    slab: Vec<Slot>,
    free: Vec<u32>,
    sessions: usize,
    tunnels: usize,
    pipes: PipePool,
    ready: VecDeque<(u32, u32, usize)>,
    starved: VecDeque<(u32, u32, usize)>,
    timers: BinaryHeap<Reverse<(u64, u32, u32)>>,
    start: Instant,
    now: u64,
    rr: usize,
    bind_rr: Vec<usize>,
    rules: http::RequestRules,
    // Boxes on purpose: a session state holds a `Box<Exchange>`, recycled as is.
    #[allow(clippy::vec_box)]
    spare: Vec<Box<Exchange>>,
    /// Per backend: pooled sessions (slot, generation, pooled at), oldest first.
    pool: Vec<VecDeque<(u32, u32, u64)>>,
    pooled: usize,
    accept_armed: bool,
    accept_retry_at: u64,
    shutting: bool,
    shutdown_deadline: u64,
    tick_ts: Box<io_uring::types::Timespec>,
    connect_ts: Box<io_uring::types::Timespec>,
    scratch: Box<[u8]>,
    head_scratch: Vec<u8>,
    accepted: u64,
    refused: u64,
    errors: u64,
}

impl Drop for Worker {
    /// Whatever way the worker ends (clean exit, error, panic), its listener leaves the
    /// SO_REUSEPORT group and every socket it still holds is closed, so peers see the end
    /// and no share of new connections is black-holed.
    fn drop(&mut self) {
        WorkerStats::set(&self.stats.running, 0);
        sys::close(self.listener);
        self.listener = -1;
        for slot in &mut self.slab {
            if let Some(s) = slot.s.as_mut() {
                sys::close(s.client);
                sys::close(s.upstream);
                s.client = -1;
                s.upstream = -1;
            }
        }
    }
}

/// Double a full receive buffer, up to `max` bytes (the caller checks the limit by parsing).
fn grow(buf: &mut Box<[u8]>, filled: usize, max: usize) {
    if filled == buf.len() && buf.len() < max {
        let mut v = std::mem::take(buf).into_vec();
        v.resize((v.len() * 2).max(HEAD_FIRST).min(max), 0);
        *buf = v.into_boxed_slice();
    }
}

fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

impl Worker {
    /// Create the worker's ring and check the kernel. Runs on the worker's own thread
    /// (SINGLE_ISSUER: the creating thread is the only submitter).
    pub fn new(init: WorkerInit) -> io::Result<Worker> {
        let entries = 4096;
        let mut ring = Ring::new(entries)?;
        ring.probe()?;
        if init.cfg.tunnel == TunnelMode::Copy {
            ring.setup_buffers(COPY_BUFS, COPY_BUF_SIZE).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("registering the copy-mode buffer ring failed ({e}); it needs Linux 5.19+, or use --tunnel splice"),
                )
            })?;
        }
        if init.index == 0 && !ring.features.defer_taskrun {
            eprintln!("ringway: note: this kernel refused IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN; running without them (slightly more context switches)");
        }
        let backend_addrs = init
            .ups
            .addrs
            .iter()
            .map(|a| socket2::SockAddr::from(*a))
            .collect();
        let budget = Budget::new(
            init.cfg.worker_connections,
            if init.cfg.at_limit == AtLimit::Reply503 {
                init.cfg.reserve_503
            } else {
                0
            },
        );
        let ct = init.cfg.connect_timeout;
        Ok(Worker {
            index: init.index,
            backend_addrs,
            listener: init.listener,
            ctl_fd: init.ctl_fd,
            control: init.control,
            stats: init.stats,
            peers: init.peers,
            inbox: init.inbox,
            handed_off: 0,
            ring,
            budget,
            // Reserve the whole budget up front: untouched capacity is only address space,
            // and the slab never reallocates (no copy, no doubled peak) as it fills.
            slab: Vec::with_capacity(
                crate::budget::clients_per_worker(init.cfg.worker_connections)
                    + init.cfg.reserve_503
                    + init.cfg.keepalive.min(init.cfg.worker_connections)
                    + 1,
            ),
            free: Vec::new(),
            sessions: 0,
            tunnels: 0,
            pipes: PipePool::new(PIPE_POOL_IDLE),
            ready: VecDeque::new(),
            starved: VecDeque::new(),
            timers: BinaryHeap::new(),
            start: Instant::now(),
            now: 0,
            rr: init.index,
            bind_rr: vec![init.index; init.ups.addrs.len()],
            rules: http::RequestRules {
                sticky_cookie: init.cfg.sticky_cookie.clone(),
                hash_key: (init.cfg.balance == crate::config::Balance::Hash)
                    .then(|| init.cfg.hash_key.clone()),
                set_headers: init.cfg.set_headers.clone(),
                upstream_keepalive: init.cfg.keepalive > 0,
            },
            spare: Vec::new(),
            pool: vec![VecDeque::new(); init.ups.addrs.len()],
            pooled: 0,
            accept_armed: false,
            accept_retry_at: 0,
            shutting: false,
            shutdown_deadline: 0,
            tick_ts: Box::new(io_uring::types::Timespec::new().nsec(TICK.as_nanos() as u32)),
            connect_ts: Box::new(
                io_uring::types::Timespec::new()
                    .sec(ct.as_secs())
                    .nsec(ct.subsec_nanos()),
            ),
            scratch: vec![0u8; 4096].into_boxed_slice(),
            head_scratch: Vec::with_capacity(1024),
            accepted: 0,
            refused: 0,
            errors: 0,
            cfg: init.cfg,
            ups: init.ups,
        })
    }

    fn log(&self, msg: std::fmt::Arguments<'_>) {
        eprintln!("ringway[w{}]: {}", self.index, msg);
    }

    /// Run until shutdown. `on_ready` is called once the worker is accepting and its
    /// counters are published.
    pub fn run(mut self, on_ready: impl FnOnce()) -> io::Result<()> {
        self.arm_control()?;
        self.ring.timeout(&self.tick_ts, Token::worker(Op::Tick))?;
        if let Inbox::Unix(fd) = self.inbox {
            self.ring
                .poll(fd, libc::POLLIN as u32, true, Self::inbox_token())?;
        }
        self.arm_accept()?;
        self.publish();
        WorkerStats::set(&self.stats.running, 1);
        on_ready();
        loop {
            // Never block while a tunnel direction is waiting in the ready queue.
            let batch = self.ring.wait(self.ready.is_empty())?;
            self.now = ms(self.start.elapsed());
            for c in batch.iter() {
                self.dispatch(*c)?;
            }
            self.ring.give_back(batch);
            self.run_ready()?;
            if !self.starved.is_empty() {
                self.feed_starved()?;
            }
            if self.shutting {
                if self.sessions == 0 || self.now >= self.shutdown_deadline {
                    break;
                }
            } else {
                self.maybe_arm_accept()?;
            }
            self.publish();
        }
        self.publish();
        WorkerStats::set(&self.stats.running, 0);
        Ok(())
    }

    /// Multishot POLLIN on the control eventfd (shutdown, handoffs from sibling threads).
    fn arm_control(&mut self) -> io::Result<()> {
        self.ring.poll(
            self.ctl_fd,
            libc::POLLIN as u32,
            true,
            Token::worker(Op::Control),
        )
    }

    fn publish(&self) {
        let st = &self.stats;
        WorkerStats::set(&st.slots_capacity, self.budget.capacity() as u64);
        WorkerStats::set(&st.slots_used, self.budget.used() as u64);
        WorkerStats::set(&st.reserve_used, self.budget.reserve_used() as u64);
        WorkerStats::set(&st.sessions, self.sessions as u64);
        WorkerStats::set(&st.tunnels, self.tunnels as u64);
        WorkerStats::set(&st.pipes_in_use, self.pipes.in_use as u64);
        WorkerStats::set(&st.pipes_idle, self.pipes.idle() as u64);
        WorkerStats::set(&st.pooled, self.pooled as u64);
        WorkerStats::set(&st.accepted, self.accepted);
        WorkerStats::set(&st.refused, self.refused);
        WorkerStats::set(&st.errors, self.errors);
        WorkerStats::set(&st.handed_off, self.handed_off);
    }

    // ----- accept -------------------------------------------------------------------

    fn pause_mode(&self) -> bool {
        self.cfg.at_limit == AtLimit::Pause
    }

    fn arm_accept(&mut self) -> io::Result<()> {
        if self.accept_armed || self.shutting {
            return Ok(());
        }
        if self.pause_mode() && !self.room_for_client() && self.sibling_with_room().is_none() {
            return Ok(());
        }
        self.ring
            .accept(self.listener, !self.pause_mode(), Token::worker(Op::Accept))?;
        self.accept_armed = true;
        Ok(())
    }

    fn maybe_arm_accept(&mut self) -> io::Result<()> {
        if !self.accept_armed && self.now >= self.accept_retry_at {
            self.arm_accept()?;
        }
        Ok(())
    }

    fn on_accept(&mut self, c: Completion) -> io::Result<()> {
        if !c.more() {
            self.accept_armed = false;
        }
        if c.res < 0 {
            let err = -c.res;
            if err == libc::EMFILE || err == libc::ENFILE || err == libc::ENOMEM {
                self.log(format_args!(
                    "accept failed: {} (RLIMIT_NOFILE or memory exhausted; raise `ulimit -n` or lower worker_connections); retrying shortly",
                    io::Error::from_raw_os_error(err)
                ));
                self.accept_retry_at = self.now + 100;
            } else if !self.shutting
                && err != libc::ECANCELED
                && err != libc::EINTR
                && err != libc::ECONNABORTED
            {
                self.log(format_args!(
                    "accept failed: {}; retrying shortly",
                    io::Error::from_raw_os_error(err)
                ));
                self.accept_retry_at = self.now + 100;
            }
            return Ok(());
        }
        let fd = c.res as RawFd;
        if self.shutting {
            sys::close(fd);
            return Ok(());
        }
        if !self.room_for_client() {
            if let Some(j) = self.sibling_with_room() {
                // SO_REUSEPORT hashed this client to us although we are full: hand it to
                // a sibling with room, as nginx's shared accept queue would have.
                if self.hand_off(j, fd) {
                    return Ok(());
                }
            }
        }
        self.admit_fd(fd)
    }

    /// Whether a client can be admitted here, closing idle pooled upstream connections to
    /// make room if need be.
    fn room_for_client(&self) -> bool {
        self.budget.free() + self.pooled >= crate::budget::PER_CLIENT
    }

    /// The sibling worker with the most room, if any has room for a client.
    fn sibling_with_room(&self) -> Option<usize> {
        (0..self.peers.outboxes.len())
            .filter(|&j| j != self.index)
            .map(|j| (self.peers.room(j), j))
            .filter(|&(room, _)| room > 0)
            .max()
            .map(|(_, j)| j)
    }

    /// The cancel of the accept at shutdown: a slot index no session has, so its
    /// completion can never be taken for session 0's.
    fn accept_cancel_token() -> Token {
        Token::session(Op::Cancel, Side::Upstream, u32::MAX, 0)
    }

    fn inbox_token() -> Token {
        Token::session(Op::Control, Side::Upstream, 0, 0)
    }

    /// Take connections handed over by full siblings.
    fn drain_inbox(&mut self) -> io::Result<()> {
        loop {
            let fd = match &self.inbox {
                Inbox::Channel(rx) => match rx.try_recv() {
                    Ok(fd) => fd,
                    Err(_) => return Ok(()),
                },
                Inbox::Unix(sock) => match sys::recv_fd(*sock) {
                    Ok(Some(fd)) => fd,
                    Ok(None) => return Ok(()),
                    Err(e) => {
                        self.log(format_args!("handoff receive failed: {e}"));
                        return Ok(());
                    }
                },
            };
            if self.shutting {
                sys::close(fd);
            } else {
                self.admit_fd(fd)?;
            }
        }
    }

    /// Hand an accepted client to sibling `j`; false when that failed (we keep it).
    fn hand_off(&mut self, j: usize, fd: RawFd) -> bool {
        match &self.peers.outboxes[j] {
            Outbox::Channel { tx, wake } => {
                if tx.send(fd).is_err() {
                    return false;
                }
                sys::eventfd_wake(*wake);
            }
            Outbox::Unix(sock) => {
                if sys::send_fd(*sock, fd).is_err() {
                    return false;
                }
                // The receiver has its own copy now.
                sys::close(fd);
            }
            Outbox::None => return false,
        }
        self.handed_off += 1;
        true
    }

    /// Admit an accepted client against this worker's budget, or give the at-limit answer.
    fn admit_fd(&mut self, fd: RawFd) -> io::Result<()> {
        self.accepted += 1;
        // Idle pooled upstream connections are the first to go when slots run out.
        while !self.budget.has_room() && self.pooled > 0 {
            self.evict_oldest()?;
        }
        let (admit, new_episode) = self.budget.admit(self.cfg.at_limit == AtLimit::Reply503);
        if new_episode {
            self.log(format_args!(
                "{} worker_connections are not enough: {} proxied clients held; {} (logged once per episode)",
                self.budget.capacity(),
                crate::budget::clients_per_worker(self.budget.capacity()),
                match self.cfg.at_limit {
                    AtLimit::Reply503 => "answering 503 with Retry-After",
                    AtLimit::Reset => "closing new connections (nginx behaviour)",
                    AtLimit::Pause => "pausing accept; new clients wait in the listen backlog",
                }
            ));
        }
        match admit {
            Admit::Refused => {
                self.refused += 1;
                sys::close(fd);
                Ok(())
            }
            Admit::Admitted | Admit::Reserve => {
                if admit == Admit::Reserve {
                    self.refused += 1;
                }
                let peer = sys::peer_addr(fd)
                    .map(|a| a.ip())
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                sys::set_nodelay(fd);
                let admission = if admit == Admit::Admitted {
                    Admission::Budget
                } else {
                    Admission::Reserve
                };
                let cap = HEAD_FIRST.min(self.cfg.max_head);
                let head = Head {
                    buf: vec![0u8; cap].into_boxed_slice(),
                    len: 0,
                    idle: false,
                };
                let idx = self.alloc(Session {
                    client: fd,
                    upstream: -1,
                    peer,
                    backend: NO_BACKEND,
                    inflight: 0,
                    admission,
                    closing: false,
                    deadline: 0,
                    timer_at: 0,
                    state: State::Head(head),
                });
                let t = if admission == Admission::Budget {
                    ms(self.cfg.head_timeout)
                } else {
                    ms(RESERVE_HEAD_TIMEOUT)
                };
                self.set_deadline(idx, self.now + t);
                self.submit_head_recv(idx)
            }
        }
    }

    // ----- slab ---------------------------------------------------------------------

    fn alloc(&mut self, s: Session) -> u32 {
        self.sessions += 1;
        if let Some(idx) = self.free.pop() {
            let slot = &mut self.slab[idx as usize];
            slot.s = Some(s);
            idx
        } else {
            self.slab.push(Slot { gen: 0, s: Some(s) });
            (self.slab.len() - 1) as u32
        }
    }

    /// This worker's counters for backend `b`.
    fn bctr(&self, b: usize) -> &'static crate::shm::BackendCounters {
        self.ups.counters.backend(self.index, b)
    }

    fn gen(&self, idx: u32) -> u32 {
        self.slab[idx as usize].gen
    }

    fn sess(&mut self, idx: u32) -> &mut Session {
        self.slab[idx as usize].s.as_mut().expect("live session")
    }

    fn tok(&self, op: Op, side: Side, idx: u32) -> Token {
        Token::session(op, side, idx, self.gen(idx))
    }

    /// Free a session whose operations have all completed: close its sockets, return its
    /// pipes, buffers and slots.
    fn free_session(&mut self, idx: u32) {
        let slot = &mut self.slab[idx as usize];
        let s = slot.s.take().expect("live session");
        slot.gen = (slot.gen + 1) & GEN_MASK;
        self.free.push(idx);
        self.sessions -= 1;
        debug_assert_eq!(s.inflight, 0);
        let state = match s.state {
            State::Exchange(mut ex) => {
                // Nothing is in flight: its buffers can serve another request.
                if self.spare.len() < SPARE_MAX {
                    ex.cin = Box::default();
                    self.spare.push(ex);
                }
                None
            }
            other => Some(other),
        };
        if let Some(mut t) = state.and_then(State::into_tunnel) {
            for d in t.dirs.iter_mut() {
                if let Some(p) = d.pipe.take() {
                    if d.pending > 0 {
                        self.pipes.discard(p);
                    } else {
                        self.pipes.give(p);
                    }
                }
                for (bid, _) in d.bufs.drain(..) {
                    self.ring.recycle_buffer(bid);
                }
            }
            if t.upgraded {
                self.tunnels -= 1;
                if s.backend != NO_BACKEND {
                    self.bctr(s.backend as usize)
                        .tunnels
                        .fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        if s.backend != NO_BACKEND {
            self.bctr(s.backend as usize)
                .active
                .fetch_sub(1, Ordering::Relaxed);
        }
        sys::close(s.client);
        sys::close(s.upstream);
        match s.admission {
            Admission::Budget => self.budget.release(),
            Admission::Reserve => self.budget.release_reserve(),
            Admission::Pooled => self.budget.release_one(),
            Admission::Released => {}
        }
    }

    /// Start tearing a session down: cancel what is in flight; free when nothing is.
    fn close_session(&mut self, idx: u32) -> io::Result<()> {
        let s = self.sess(idx);
        if s.closing {
            return Ok(());
        }
        s.closing = true;
        if s.inflight == 0 {
            self.free_session(idx);
            return Ok(());
        }
        // Shutting both sockets down completes every single-shot receive and send on them
        // (and a multishot receive: it ends at end-of-stream); what stays armed by itself —
        // multishot polls, a POLLOUT, a connect — is cancelled by its own token. (Cancelling
        // by descriptor would scan every request in the ring: quadratic when thousands of
        // tunnels close at once, as at shutdown.)
        let (client, upstream) = (s.client, s.upstream);
        sys::shutdown(client, libc::SHUT_RDWR);
        if upstream >= 0 {
            sys::shutdown(upstream, libc::SHUT_RDWR);
        }
        self.cancel_armed(idx, true)
    }

    /// Cancel, by token, the operations of a session that would stay armed: multishot
    /// POLLINs, POLLOUTs, a connect in flight. With `upstream_too` false only the client
    /// side's (the client socket stays usable for an answer).
    fn cancel_armed(&mut self, idx: u32, upstream_too: bool) -> io::Result<()> {
        let mut targets: [Option<Token>; 6] = [None; 6];
        let mut n = 0;
        let gen = self.gen(idx);
        let mut add = |op: Op, side: Side| {
            targets[n] = Some(Token::session(op, side, idx, gen));
            n += 1;
        };
        let s = self.sess(idx);
        let connecting = matches!(&s.state, State::Exchange(ex) if ex.req == ReqPhase::Connecting);
        let body_recv = matches!(&s.state, State::Exchange(ex) if ex.req == ReqPhase::ReadingBody);
        let pooled = matches!(s.state, State::Pooled { .. });
        let head = matches!(s.state, State::Head(_));
        if let Some(t) = s.tunnel_mut() {
            for (i, side) in [(0, Side::Client), (1, Side::Upstream)] {
                let ours = i == 0 || upstream_too;
                if ours && t.polling[i] {
                    add(Op::PollIn, side);
                }
                if ours && t.dirs[i].recv_armed {
                    add(Op::Recv, side);
                }
                // POLLOUT on socket `side` serves the direction flowing into it.
                if ours && t.dirs[1 - i].pollout {
                    add(Op::PollOut, side);
                }
            }
        }
        if connecting && upstream_too {
            add(Op::Connect, Side::Upstream);
        }
        if body_recv {
            add(Op::BodyRecv, Side::Client);
        }
        if pooled && upstream_too {
            add(Op::PollIn, Side::Upstream);
        }
        if head && !upstream_too {
            add(Op::HeadRecv, Side::Client);
        }
        let cancel = self.tok(Op::Cancel, Side::Client, idx);
        for t in targets.into_iter().flatten() {
            self.ring.cancel_token(t, cancel)?;
            self.sess(idx).inflight += 1;
        }
        Ok(())
    }

    // ----- timers -------------------------------------------------------------------

    fn set_deadline(&mut self, idx: u32, at: u64) {
        let gen = self.gen(idx);
        let s = self.sess(idx);
        let push = s.timer_at == 0 || at < s.timer_at;
        s.deadline = at;
        if push {
            s.timer_at = at;
            self.timers.push(Reverse((at, idx, gen)));
        }
    }

    fn clear_deadline(&mut self, idx: u32) {
        self.sess(idx).deadline = 0;
    }

    fn on_tick(&mut self) -> io::Result<()> {
        self.ring.timeout(&self.tick_ts, Token::worker(Op::Tick))?;
        if self.pooled > 0 {
            self.pool_expire()?;
        }
        while let Some(Reverse((at, idx, gen))) = self.timers.peek().copied() {
            if at > self.now {
                break;
            }
            self.timers.pop();
            let slot = &self.slab[idx as usize];
            if slot.gen != gen {
                continue;
            }
            let Some(s) = slot.s.as_ref() else { continue };
            if at != s.timer_at {
                // Superseded by an earlier entry for the same session.
                continue;
            }
            if s.closing || s.deadline == 0 {
                self.sess(idx).timer_at = 0;
                continue;
            }
            if s.deadline > self.now {
                let d = s.deadline;
                self.sess(idx).timer_at = d;
                self.timers.push(Reverse((d, idx, gen)));
                continue;
            }
            self.sess(idx).timer_at = 0;
            self.sess(idx).deadline = 0;
            self.on_timeout(idx)?;
        }
        Ok(())
    }

    fn on_timeout(&mut self, idx: u32) -> io::Result<()> {
        let s = self.sess(idx);
        let (peer, admission) = (s.peer, s.admission);
        match &s.state {
            State::Head(_) if admission == Admission::Reserve => {
                self.reply(idx, reply::UNAVAILABLE)
            }
            // A kept-alive client that sent nothing more: the normal end of a connection.
            State::Head(h) if h.idle => self.close_session(idx),
            State::Head(_) => {
                self.log(format_args!("client {peer}: request head timeout, closing"));
                self.close_session(idx)
            }
            State::Exchange(_) => self.exchange_timeout(idx),
            State::Pooled { .. } => self.pool_drop(idx),
            _ => self.close_session(idx),
        }
    }

    // ----- completions --------------------------------------------------------------

    fn dispatch(&mut self, c: Completion) -> io::Result<()> {
        let Some(tok) = Token::decode(c.user_data) else {
            return Ok(());
        };
        match tok.op {
            Op::Accept => return self.on_accept(c),
            Op::Tick => return self.on_tick(),
            Op::Control if tok.side == Side::Upstream => {
                self.drain_inbox()?;
                if !c.more() && !self.shutting {
                    if let Inbox::Unix(fd) = self.inbox {
                        self.ring
                            .poll(fd, libc::POLLIN as u32, true, Self::inbox_token())?;
                    }
                }
                return Ok(());
            }
            Op::Control => {
                sys::eventfd_drain(self.ctl_fd);
                self.drain_inbox()?;
                if self.control.shutdown.load(Ordering::Acquire) && !self.shutting {
                    self.begin_shutdown()?;
                }
                if !c.more() && !self.shutting {
                    self.arm_control()?;
                }
                return Ok(());
            }
            _ => {}
        }
        let idx = tok.idx;
        let live = self
            .slab
            .get(idx as usize)
            .is_some_and(|sl| sl.gen == tok.gen && sl.s.is_some());
        if !live {
            // Worker-level cancel of the accept, or (a bug) a completion for a freed slot.
            return Ok(());
        }
        let multishot = matches!(tok.op, Op::PollIn | Op::Recv);
        let final_cqe = !multishot || !c.more();
        let s = self.sess(idx);
        if final_cqe {
            s.inflight -= 1;
        }
        if s.closing {
            if let Some(bid) = c.buffer_id() {
                self.ring.recycle_buffer(bid);
            }
            if self.sess(idx).inflight == 0 {
                self.free_session(idx);
            }
            return Ok(());
        }
        match tok.op {
            Op::Cancel | Op::ConnectTimeout => Ok(()),
            Op::HeadRecv => self.on_head_recv(idx, c.res),
            Op::BodyRecv => self.on_body_recv(idx, c.res),
            Op::PollIn if matches!(self.sess(idx).state, State::Pooled { .. }) => {
                self.pool_drop(idx)
            }
            Op::Connect => self.on_connect(idx, c.res),
            Op::UpSend => self.on_up_send(idx, c.res),
            Op::UpRecv => self.on_up_recv(idx, c.res),
            Op::ClientSend => self.on_client_send(idx, c.res),
            Op::LingerRecv => self.on_linger_recv(idx, c.res),
            Op::PollIn => self.on_poll_in(idx, tok.side, c),
            Op::PollOut => self.on_poll_out(idx, tok.side, c.res),
            Op::Recv => self.on_recv(idx, tok.side, c),
            Op::Send => self.on_send(idx, tok.side, c.res),
            Op::Accept | Op::Tick | Op::Control => Ok(()),
        }
    }

    // ----- our own answers ----------------------------------------------------------

    /// Answer the client with `msg`, then linger and close. Drops the upstream side.
    fn reply(&mut self, idx: u32, msg: &'static [u8]) -> io::Result<()> {
        self.errors += 1;
        let s = self.sess(idx);
        let upstream = s.upstream;
        let busy = s.inflight > 0;
        if let Some(t) = s.tunnel_mut() {
            for d in t.dirs.iter_mut() {
                if d.live() {
                    d.state = DirState::Off;
                }
            }
        }
        // The upstream side is done with: shutting it down completes its receives and
        // sends. On the client side, what would stay armed is cancelled by token before
        // our answer is queued (SQEs are issued in order, so the answer is not caught).
        if upstream >= 0 {
            sys::shutdown(upstream, libc::SHUT_RDWR);
        }
        if busy {
            self.cancel_armed(idx, false)?;
        }
        let s = self.sess(idx);
        let old = std::mem::replace(
            &mut s.state,
            State::Reply {
                msg,
                sent: 0,
                keep: None,
            },
        );
        // Operations being cancelled may still point into the old state's buffers: keep
        // them until the session is freed.
        if busy {
            if let State::Reply { keep, .. } = &mut s.state {
                *keep = Some(Box::new(old));
            }
        }
        let at = self.now + ms(LINGER);
        self.set_deadline(idx, at);
        self.submit_client_send(idx)
    }

    fn start_linger(&mut self, idx: u32) -> io::Result<()> {
        let s = self.sess(idx);
        let keep = match &mut s.state {
            State::Reply { keep, .. } => keep.take(),
            _ => None,
        };
        s.state = State::Linger { keep };
        sys::shutdown_write(s.client);
        self.submit_linger_recv(idx)
    }

    fn submit_linger_recv(&mut self, idx: u32) -> io::Result<()> {
        let tok = self.tok(Op::LingerRecv, Side::Client, idx);
        let fd = self.sess(idx).client;
        // The scratch buffer is the worker's; its content is discarded, so concurrent
        // lingering receives sharing it is harmless. It lives as long as the worker.
        let (ring, scratch) = (&mut self.ring, &mut self.scratch);
        ring.recv(fd, scratch, tok)?;
        self.sess(idx).inflight += 1;
        Ok(())
    }

    fn on_linger_recv(&mut self, idx: u32, res: i32) -> io::Result<()> {
        if !matches!(self.sess(idx).state, State::Linger { .. }) {
            return Ok(());
        }
        if res > 0 {
            return self.submit_linger_recv(idx);
        }
        self.close_session(idx)
    }

    // ----- relay --------------------------------------------------------------------

    /// Start reading from socket `side` for its direction (multishot POLLIN or receive).
    fn arm_source(&mut self, idx: u32, side: usize) -> io::Result<()> {
        let sd = if side == 0 {
            Side::Client
        } else {
            Side::Upstream
        };
        match self.cfg.tunnel {
            TunnelMode::Splice => {
                let tok = self.tok(Op::PollIn, sd, idx);
                let s = self.sess(idx);
                let fd = s.fd(side);
                let Some(t) = s.tunnel_mut() else {
                    return Ok(());
                };
                if t.polling[side] {
                    return Ok(());
                }
                t.polling[side] = true;
                s.inflight += 1;
                self.ring
                    .poll(fd, (libc::POLLIN | libc::POLLRDHUP) as u32, true, tok)
            }
            TunnelMode::Copy => {
                let tok = self.tok(Op::Recv, sd, idx);
                let s = self.sess(idx);
                let fd = s.fd(side);
                let Some(t) = s.tunnel_mut() else {
                    return Ok(());
                };
                let d = &mut t.dirs[side];
                if d.recv_armed || !d.live() || d.state == DirState::Eof {
                    return Ok(());
                }
                d.recv_armed = true;
                d.starved = false;
                s.inflight += 1;
                self.ring.recv_multi(fd, tok)
            }
        }
    }

    /// Bytes moved: push the tunnel's idle deadline out (`--tunnel-idle-timeout`, if any).
    fn touch(&mut self, idx: u32) {
        let now = self.now;
        let s = self.sess(idx);
        if let State::Tunnel(t) = &s.state {
            if t.idle_ms != 0 && s.deadline != 0 {
                s.deadline = now + t.idle_ms;
            }
        }
    }

    fn on_poll_in(&mut self, idx: u32, side: Side, c: Completion) -> io::Result<()> {
        let i = side.idx();
        let s = self.sess(idx);
        let Some(t) = s.tunnel_mut() else {
            return Ok(());
        };
        if !c.more() {
            t.polling[i] = false;
        }
        let live = t.dirs[i].live();
        if c.res == -libc::ECANCELED {
            return Ok(());
        }
        if !c.more() && live && t.dirs[i].state == DirState::Open {
            self.arm_source(idx, i)?;
        }
        if live {
            self.pump(idx, i)?;
        }
        Ok(())
    }

    fn on_poll_out(&mut self, idx: u32, side: Side, res: i32) -> io::Result<()> {
        // POLLOUT on socket `side` serves the direction flowing *into* it.
        let i = side.other().idx();
        let s = self.sess(idx);
        let Some(t) = s.tunnel_mut() else {
            return Ok(());
        };
        t.dirs[i].pollout = false;
        if res == -libc::ECANCELED {
            return Ok(());
        }
        self.pump(idx, i)
    }

    /// Run the splice pump for direction `i` and act on its answer.
    fn pump(&mut self, idx: u32, i: usize) -> io::Result<()> {
        let s = self.slab[idx as usize].s.as_mut().expect("live");
        let (src, dst) = (s.fd(i), s.fd(1 - i));
        let Some(t) = s.tunnel_mut() else {
            return Ok(());
        };
        let mut moved = false;
        let step = tunnel::pump_splice(&mut t.dirs[i], &mut self.pipes, src, dst, &mut moved);
        if moved {
            self.touch(idx);
        }
        match step {
            Pump::Idle => Ok(()),
            Pump::Yield => {
                let gen = self.gen(idx);
                let t = self.sess(idx).tunnel_mut().expect("relay");
                if !t.dirs[i].queued {
                    t.dirs[i].queued = true;
                    self.ready.push_back((idx, gen, i));
                }
                Ok(())
            }
            Pump::WaitWritable => {
                let sd = if i == 0 { Side::Upstream } else { Side::Client };
                let tok = self.tok(Op::PollOut, sd, idx);
                let s = self.sess(idx);
                let t = s.tunnel_mut().expect("relay");
                t.dirs[i].pollout = true;
                s.inflight += 1;
                self.ring.poll(dst, libc::POLLOUT as u32, false, tok)
            }
            Pump::Finished => self.dir_finished(idx),
            Pump::Failed(err) => {
                if !sys::is_peer_gone(err) {
                    self.log(format_args!(
                        "tunnel relay error: {}",
                        io::Error::from_raw_os_error(err)
                    ));
                }
                self.close_session(idx)
            }
        }
    }

    fn dir_finished(&mut self, idx: u32) -> io::Result<()> {
        let s = self.sess(idx);
        let finished = s.tunnel_mut().is_some_and(|t| t.finished());
        let is_tunnel_state = matches!(s.state, State::Tunnel(_));
        if finished && is_tunnel_state {
            return self.close_session(idx);
        }
        Ok(())
    }

    fn run_ready(&mut self) -> io::Result<()> {
        let n = self.ready.len();
        for _ in 0..n {
            let Some((idx, gen, i)) = self.ready.pop_front() else {
                break;
            };
            let slot = &mut self.slab[idx as usize];
            if slot.gen != gen {
                continue;
            }
            let Some(s) = slot.s.as_mut() else { continue };
            if s.closing {
                continue;
            }
            let Some(t) = s.tunnel_mut() else { continue };
            t.dirs[i].queued = false;
            self.pump(idx, i)?;
        }
        Ok(())
    }

    // ----- copy mode ----------------------------------------------------------------

    fn on_recv(&mut self, idx: u32, side: Side, c: Completion) -> io::Result<()> {
        let i = side.idx();
        let gen = self.gen(idx);
        let cancel_tok = self.tok(Op::Cancel, side, idx);
        let recv_tok = self.tok(Op::Recv, side, idx);
        let s = self.slab[idx as usize].s.as_mut().expect("live");
        let dst = s.fd(1 - i);
        let Some(t) = s.tunnel_mut() else {
            if let Some(bid) = c.buffer_id() {
                self.ring.recycle_buffer(bid);
            }
            return Ok(());
        };
        let d = &mut t.dirs[i];
        if !c.more() {
            d.recv_armed = false;
        }
        if c.res > 0 {
            let bid = c.buffer_id().expect("buffer-select receive");
            if !d.live() {
                self.ring.recycle_buffer(bid);
                return Ok(());
            }
            d.bufs.push_back((bid, c.res as u32));
            let need_cancel = d.bufs.len() >= COPY_QUEUE_MAX && d.recv_armed && c.more();
            let start_send = !d.sending;
            if need_cancel {
                self.ring.cancel_token(recv_tok, cancel_tok)?;
                self.sess(idx).inflight += 1;
            }
            self.touch(idx);
            if start_send {
                self.copy_send(idx, i, dst)?;
            }
            return Ok(());
        }
        if c.res == 0 {
            if d.state == DirState::Open {
                d.state = DirState::Eof;
            }
            if d.bufs.is_empty() && !d.sending && d.state == DirState::Eof {
                sys::shutdown_write(dst);
                d.state = DirState::Done;
                return self.dir_finished(idx);
            }
            return Ok(());
        }
        let err = -c.res;
        if err == libc::ENOBUFS {
            if !d.starved {
                d.starved = true;
                self.starved.push_back((idx, gen, i));
            }
            return Ok(());
        }
        if err == libc::ECANCELED {
            // Our backpressure cancel: re-armed when the queue drains.
            return Ok(());
        }
        if !sys::is_peer_gone(err) {
            self.log(format_args!(
                "tunnel receive error: {}",
                io::Error::from_raw_os_error(err)
            ));
        }
        self.close_session(idx)
    }

    fn copy_send(&mut self, idx: u32, i: usize, dst: RawFd) -> io::Result<()> {
        let sd = if i == 0 { Side::Upstream } else { Side::Client };
        let tok = self.tok(Op::Send, sd, idx);
        let s = self.sess(idx);
        let t = s.tunnel_mut().expect("relay");
        let d = &mut t.dirs[i];
        let Some(&(bid, len)) = d.bufs.front() else {
            return Ok(());
        };
        d.sending = true;
        let off = d.sent as usize;
        s.inflight += 1;
        self.ring
            .send_buffer(dst, bid, off, len as usize - off, tok)
    }

    fn on_send(&mut self, idx: u32, side: Side, res: i32) -> io::Result<()> {
        // A send to socket `side` belongs to the direction flowing into it.
        let i = side.other().idx();
        let s = self.slab[idx as usize].s.as_mut().expect("live");
        let dst = s.fd(1 - i);
        let Some(t) = s.tunnel_mut() else {
            return Ok(());
        };
        let d = &mut t.dirs[i];
        d.sending = false;
        if res < 0 {
            if !sys::is_peer_gone(-res) {
                self.log(format_args!(
                    "tunnel send error: {}",
                    io::Error::from_raw_os_error(-res)
                ));
            }
            return self.close_session(idx);
        }
        d.sent += res as u32;
        if let Some(&(bid, len)) = d.bufs.front() {
            if d.sent >= len {
                d.bufs.pop_front();
                d.sent = 0;
                self.ring.recycle_buffer(bid);
            }
        }
        let more = !d.bufs.is_empty();
        let eof_done = !more && d.state == DirState::Eof;
        let rearm = !d.recv_armed
            && d.state == DirState::Open
            && !d.starved
            && d.bufs.len() <= COPY_QUEUE_MAX / 2;
        if more {
            self.copy_send(idx, i, dst)?;
        } else if eof_done {
            sys::shutdown_write(dst);
            let t = self.sess(idx).tunnel_mut().expect("relay");
            t.dirs[i].state = DirState::Done;
            self.dir_finished(idx)?;
        }
        if rearm && !self.sess(idx).closing {
            self.arm_source(idx, i)?;
        }
        Ok(())
    }

    /// Buffers came back (on any path): re-arm every receive that ran out of them. A
    /// direction that runs dry again simply goes back on the list.
    fn feed_starved(&mut self) -> io::Result<()> {
        let waiting = std::mem::take(&mut self.starved);
        for (idx, gen, i) in waiting {
            let slot = &mut self.slab[idx as usize];
            if slot.gen != gen {
                continue;
            }
            let Some(s) = slot.s.as_mut() else { continue };
            if s.closing {
                continue;
            }
            let Some(t) = s.tunnel_mut() else { continue };
            if !t.dirs[i].starved || !t.dirs[i].live() {
                continue;
            }
            t.dirs[i].starved = false;
            self.arm_source(idx, i)?;
        }
        Ok(())
    }

    // ----- shutdown -----------------------------------------------------------------

    fn begin_shutdown(&mut self) -> io::Result<()> {
        self.shutting = true;
        self.shutdown_deadline = self.now + ms(SHUTDOWN_GRACE);
        if self.accept_armed {
            // Cancel the accept by its token. Not shutdown(2) on the listener: in process
            // mode the listening socket is shared with the master and a restarted worker,
            // and shutting it down would close it for all of them.
            self.ring
                .cancel_token(Token::worker(Op::Accept), Self::accept_cancel_token())?;
        }
        let live: Vec<u32> = self
            .slab
            .iter()
            .enumerate()
            .filter(|(_, sl)| sl.s.is_some())
            .map(|(i, _)| i as u32)
            .collect();
        // Pooled connections close with everything else (their slots return when freed).
        for q in &mut self.pool {
            q.clear();
        }
        self.pooled = 0;
        for idx in live {
            self.close_session(idx)?;
        }
        Ok(())
    }
}
