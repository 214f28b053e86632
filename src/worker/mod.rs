//! One worker: one thread, one io_uring, one SO_REUSEPORT listener, one budget.
//!
//! The worker keeps the loop, the slab, the timers, admission, the keep-alive pool and
//! the handoff; sessions own their behaviour. The loop: submit what is queued and wait
//! for completions, route each completion by its [`Token`] to the session it names, let
//! the session's handler run with the worker's tools ([`Ctx`]) and carry out the
//! [`Step`] it returns, run tunnel directions that yielded, publish the counters.
//! Nothing here is shared with other workers except relaxed atomics (stats, least-conn
//! counts).
//!
//! Timers: the worker has one periodic timeout (`TICK`); sessions carry a deadline and
//! the lazy heap in `slab.rs` turns them into work done only at ticks (request head,
//! keep-alive idle, request body, upstream read, idle tunnel, lingering close). Pooled
//! upstream connections expire by a sweep of the pool at ticks. Connects use io_uring's
//! linked timeout.
//!
//! A slot is freed only when the kernel is done with it: a closing session waits in
//! state `Closing` until its in-flight count is zero; then its slots go back to the budget.

mod accept;
mod admit;
mod drain;
mod pool;
mod slab;

pub use accept::{Control, Inbox, Outbox, Peers};

use crate::budget::Budget;
use crate::config::{AtLimit, Config, TunnelMode};
use crate::conn::Conn;
use crate::http;
use crate::relay::Relay;
use crate::ring::{Completion, Op, Ring, Side, Token};
use crate::session::{ms, Admission, Ctx, Session, State, Step, NO_BACKEND};
use crate::shm::WorkerStats;
use crate::sys;
use crate::upstream::Upstreams;
use accept::{Acceptors, Handoff};
use pool::UpstreamPool;
use slab::{Due, Slab, Timers};
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Period of the worker's one timer.
const TICK: Duration = Duration::from_millis(250);
/// Copy and auto modes: provided buffers per worker (of `relay::copy::BUF_SIZE` bytes).
const COPY_BUFS: u16 = 512;
/// Idle pipes a worker keeps.
const PIPE_POOL_IDLE: usize = 64;

/// What a worker is started with.
pub struct WorkerInit {
    /// Worker index.
    pub index: usize,
    /// Configuration.
    pub cfg: Arc<Config>,
    /// Backends.
    pub ups: Arc<Upstreams>,
    /// The worker's own listeners, one per listen address (closed when the worker ends).
    pub listeners: Vec<OwnedFd>,
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

/// The worker's state. Lives on its thread's stack for the worker's whole life; dropping
/// it (clean exit, error, panic) closes its listener — it leaves the SO_REUSEPORT group,
/// so no share of new connections is black-holed — and every socket it still holds.
pub struct Worker {
    ctx: Ctx,
    slab: Slab,
    timers: Timers,
    budget: Budget,
    pool: UpstreamPool,
    acceptors: Acceptors,
    handoff: Handoff,
    ctl_fd: RawFd,
    control: Arc<Control>,
    stats: &'static WorkerStats,
    start: Instant,
    shutdown_deadline: u64,
    /// Draining (graceful stop, or an old generation after a reload), until this time.
    drain: Option<u64>,
    accepted: u64,
    refused: u64,
    /// Per listen address (the routing table's order): its TLS configuration, if any.
    tls: Vec<Option<Arc<rustls::ServerConfig>>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        WorkerStats::set(&self.stats.running, 0);
        WorkerStats::set(&self.stats.accepting, 0);
    }
}

impl Worker {
    /// Create the worker's ring and check the kernel. Runs on the worker's own thread
    /// (SINGLE_ISSUER: the creating thread is the only submitter).
    pub fn new(init: WorkerInit) -> io::Result<Worker> {
        let cfg = init.cfg;
        let mut ring = Ring::new(4096)?;
        ring.probe()?;
        // TLS clients receive ciphertext into the provided buffers, whatever the relay.
        if cfg.tunnel != TunnelMode::Splice || !cfg.tls.is_empty() {
            ring.setup_buffers(COPY_BUFS, crate::relay::copy::BUF_SIZE).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("registering the provided-buffer ring failed ({e}); copy and auto relays and TLS need Linux 5.19+ (without TLS, --tunnel splice works on older kernels)"),
                )
            })?;
        }
        if init.index == 0 && !ring.features.defer_taskrun {
            crate::log::write(crate::log::Level::Notice, crate::log::Who::Process, None, format_args!("this kernel refused IORING_SETUP_SINGLE_ISSUER|DEFER_TASKRUN; running without them (slightly more context switches)"));
        }
        // A copy of its own: a regex's cache pool is lock-free only for one thread, so
        // workers sharing one would take a shared lock (and allocate) per regex match.
        let routing = Arc::new((*cfg.routing()).clone());
        let connect_timeouts: Vec<Duration> =
            routing.routes.iter().map(|r| r.connect_timeout).collect();
        ring.configure(TICK, &connect_timeouts, &init.ups.addrs)?;
        let backends = init.ups.addrs.len();
        let tls: Vec<_> = routing.listens.iter().map(|a| cfg.tls_for(*a)).collect();
        let mut relay = Relay::new(cfg.tunnel, PIPE_POOL_IDLE, init.index);
        if let Some(t) = &cfg.tls_table {
            relay.kernel_tls = t.kernel;
        }
        let ctx = Ctx {
            ring,
            relay,
            rules: (0..routing.routes.len())
                .map(|r| http::RequestRules::of_route(&routing, r))
                .collect(),
            matching: cfg.routing.is_some(),
            cursors: crate::upstream::Cursors::new(&init.ups, init.index),
            routing,
            now: 0,
            index: init.index,
            shutting: false,
            spare: Vec::new(),
            head_scratch: Vec::with_capacity(1024),
            path_scratch: Vec::with_capacity(256),
            target_scratch: Vec::with_capacity(256),
            bind_rr: vec![init.index; backends],
            tunnels: 0,
            errors: 0,
            client_gone: 0,
            obs: crate::session::observe::Obs::new(init.stats, &cfg)?,
            ups: init.ups,
            cfg: cfg.clone(),
        };
        Ok(Worker {
            // Reserve the whole budget up front: untouched capacity is only address space,
            // and the slab never reallocates (no copy, no doubled peak) as it fills.
            slab: Slab::with_capacity(
                crate::budget::clients_per_worker(cfg.worker_connections)
                    + cfg.reserve_503
                    + cfg.keepalive.min(cfg.worker_connections)
                    + 1,
            ),
            timers: Timers::default(),
            budget: {
                // At the limit, 503 answers go straight out of the accept completion
                // (`Ring::answer_and_close`): no reserve of slots is held for them.
                let mut b = Budget::new(cfg.worker_connections);
                // nginx counts each listening socket: one per listen address beyond the first.
                b.reserve_own(init.listeners.len().saturating_sub(1));
                b
            },
            pool: UpstreamPool::new(backends),
            acceptors: Acceptors::new(init.listeners, cfg.at_limit != AtLimit::Pause),
            handoff: Handoff::new(init.index, init.peers, init.inbox),
            ctl_fd: init.ctl_fd,
            control: init.control,
            stats: init.stats,
            start: Instant::now(),
            shutdown_deadline: 0,
            drain: None,
            accepted: 0,
            refused: 0,
            tls,
            ctx,
        })
    }

    /// Run until shutdown. `on_ready` is called once the worker is accepting and its
    /// counters are published.
    pub fn run(mut self, on_ready: impl FnOnce()) -> io::Result<()> {
        self.arm_control()?;
        self.ctx.ring.tick(Token::worker(Op::Tick))?;
        self.handoff.arm_inbox(&mut self.ctx.ring)?;
        self.arm_accept()?;
        self.publish();
        WorkerStats::set(&self.stats.running, 1);
        WorkerStats::set(&self.stats.accepting, 1);
        on_ready();
        loop {
            // Never block while a tunnel direction is waiting in the ready queue.
            let block = self.ctx.relay.ready.is_empty();
            let mut batch = self.ctx.ring.wait(block)?;
            self.ctx.now = ms(self.start.elapsed());
            for c in batch.drain(..) {
                self.dispatch(c)?;
            }
            self.ctx.ring.give_back(batch);
            self.run_ready()?;
            if !self.ctx.relay.starved.is_empty() {
                self.feed_starved()?;
            }
            if self.ctx.shutting {
                if !self.acceptors.closing() {
                    // Every accept's cancel has completed: no client can reach us now.
                    WorkerStats::set(&self.stats.accepting, 0);
                }
                if self.stopped()? {
                    break;
                }
            } else {
                let now = self.ctx.now;
                if self.acceptors.any_due(now) {
                    self.arm_accept()?;
                }
            }
            self.publish();
            self.ctx.turn_end(false);
        }
        self.publish();
        self.ctx.turn_end(true);
        WorkerStats::set(&self.stats.running, 0);
        WorkerStats::set(&self.stats.accepting, 0);
        if !self.slab.is_empty() {
            // The grace ran out with operations still in flight: the kernel may write into
            // their buffers until the ring is torn down, which happens after this returns.
            // Keep those sessions' memory (and sockets) rather than free it under the kernel.
            std::mem::forget(std::mem::replace(&mut self.slab, Slab::with_capacity(0)));
        }
        Ok(())
    }

    fn log(&self, msg: std::fmt::Arguments<'_>) {
        self.ctx.log(msg);
    }

    /// Multishot POLLIN on the control eventfd (shutdown, handoffs from sibling threads).
    fn arm_control(&mut self) -> io::Result<()> {
        self.ctx.ring.poll(
            self.ctl_fd,
            libc::POLLIN as u32,
            true,
            Token::worker(Op::Control),
        )
    }

    fn publish(&self) {
        let st = &self.stats;
        let relay = &self.ctx.relay;
        WorkerStats::set(&st.slots_capacity, self.budget.capacity() as u64);
        WorkerStats::set(&st.slots_used, self.budget.used() as u64);
        WorkerStats::set(&st.sessions, self.slab.len() as u64);
        WorkerStats::set(&st.tunnels, self.ctx.tunnels as u64);
        WorkerStats::set(&st.pipes_in_use, relay.pipes.in_use as u64);
        WorkerStats::set(&st.pipes_idle, relay.pipes.idle() as u64);
        WorkerStats::set(&st.bufs_held, relay.bufs_held as u64);
        WorkerStats::set(&st.relay_switches, relay.switches);
        WorkerStats::set(&st.more.tls_kernel, relay.kernel_tunnels);
        WorkerStats::set(&st.pooled, self.pool.len() as u64);
        WorkerStats::set(&st.accepted, self.accepted);
        WorkerStats::set(&st.refused, self.refused);
        WorkerStats::set(&st.errors, self.ctx.errors);
        WorkerStats::set(&st.client_gone, self.ctx.client_gone);
        WorkerStats::set(&st.handed_off, self.handoff.handed_off);
        let paused = self.ctx.cfg.at_limit == AtLimit::Pause && !self.room_for_client();
        WorkerStats::set(&st.more.accept_paused, u64::from(paused));
    }

    // ----- accept and admission ------------------------------------------------------

    /// Arm every listener's accept that is not armed (and not backing off).
    fn arm_accept(&mut self) -> io::Result<()> {
        if self.ctx.shutting {
            return Ok(());
        }
        let pause = self.ctx.cfg.at_limit == AtLimit::Pause;
        if pause && !self.room_for_client() && self.handoff.sibling_with_room().is_none() {
            return Ok(());
        }
        self.acceptors.arm(&mut self.ctx.ring, self.ctx.now, pause)
    }

    fn on_accept(&mut self, listen: usize, c: Completion) -> io::Result<()> {
        let Some(a) = self.acceptors.get_mut(listen) else {
            return Ok(());
        };
        if !c.more() {
            a.armed = false;
            for (fd, l) in self.acceptors.finish(listen) {
                self.admit(fd, l)?;
            }
        }
        let Some(a) = self.acceptors.get_mut(listen) else {
            return Ok(());
        };
        let fd = match c.into_fd() {
            Ok(fd) => fd,
            Err(err) => {
                let ctx = &self.ctx;
                a.failed(err, ctx.now, ctx.shutting, |m| ctx.log(m));
                return Ok(());
            }
        };
        let listen = listen as u8;
        if self.stopping() {
            return Ok(());
        }
        let fd = if self.room_for_client() {
            fd
        } else {
            match self.handoff.sibling_with_room() {
                // SO_REUSEPORT hashed this client to us although we are full: hand it to
                // a sibling with room, as nginx's shared accept queue would have.
                Some(j) => match self.handoff.hand_off(j, fd, listen) {
                    Ok(()) => return Ok(()),
                    Err(fd) => fd,
                },
                None => fd,
            }
        };
        self.admit(fd, listen)
    }

    // ----- completions and steps ------------------------------------------------------

    fn dispatch(&mut self, c: Completion) -> io::Result<()> {
        let Some(tok) = Token::decode(c.user_data()) else {
            return Ok(());
        };
        match tok.op {
            Op::Accept => return self.on_accept(tok.idx as usize, c),
            Op::Tick => return self.on_tick(),
            Op::Control if tok.side == Side::Upstream => {
                // The process-mode handoff inbox.
                self.drain_inbox()?;
                if !c.more() && !self.stopping() {
                    self.handoff.arm_inbox(&mut self.ctx.ring)?;
                }
                return Ok(());
            }
            Op::Control => {
                sys::eventfd_drain(self.ctl_fd);
                self.drain_inbox()?;
                self.on_control()?;
                if !c.more() && !self.stopping() {
                    self.arm_control()?;
                }
                return Ok(());
            }
            _ => {}
        }
        let idx = tok.idx;
        // Worker-level cancel of the accept, or (a bug) a completion for a freed slot.
        let Some(s) = self.slab.get(idx, tok.gen) else {
            return Ok(());
        };
        let multishot = matches!(tok.op, Op::PollIn | Op::Recv | Op::TlsRecv);
        if !multishot || !c.more() {
            s.conn.inflight -= 1;
        }
        if s.closing() {
            if let Some(bid) = c.buffer_id() {
                self.ctx.ring.recycle_buffer(bid);
            }
            if s.conn.inflight == 0 {
                self.free(idx);
            }
            return Ok(());
        }
        if tok.op == Op::PollIn && matches!(s.state, State::Pooled { .. }) {
            return self.pool_drop(idx);
        }
        let step = s.on_completion(tok.op, tok.side, &c, &mut self.ctx)?;
        self.carry_out(idx, step)
    }

    /// Carry out what a handler of session `idx` asked for, until it asks for nothing;
    /// then give the session's deadline a heap entry.
    fn carry_out(&mut self, idx: u32, mut step: Step) -> io::Result<()> {
        loop {
            step = match step {
                Step::Continue => break,
                Step::Close => return self.close(idx),
                Step::Reply(msg) => match self.slab.at(idx) {
                    Some(s) => s.reply(msg, &mut self.ctx)?,
                    None => break,
                },
                Step::Upstream(b) => {
                    let pooled = self.take_pooled(b);
                    let Some(s) = self.slab.at(idx) else { break };
                    match pooled {
                        Some(fd) => s.use_pooled(b, fd, &mut self.ctx)?,
                        None => s.connect(b, &mut self.ctx)?,
                    }
                }
                Step::Release { backend, fd, reuse } => {
                    if reuse {
                        self.pool_put(backend, fd)?;
                    }
                    match self.slab.at(idx) {
                        Some(s) => s.resume(&mut self.ctx)?,
                        None => break,
                    }
                }
            };
        }
        if let Some(s) = self.slab.at(idx) {
            self.timers.sync(&mut s.conn);
        }
        Ok(())
    }

    /// Start tearing session `idx` down; free it at once when nothing is in flight.
    fn close(&mut self, idx: u32) -> io::Result<()> {
        let Some(s) = self.slab.at(idx) else {
            return Ok(());
        };
        if s.begin_close(&mut self.ctx)? {
            self.free(idx);
        }
        Ok(())
    }

    /// Free a session whose operations have all completed: its buffers and pipes go back
    /// to the worker, its slots to the budget, its sockets close as it drops.
    fn free(&mut self, idx: u32) {
        let Some(s) = self.slab.remove(idx) else {
            return;
        };
        let admission = s.admission;
        s.release(&mut self.ctx);
        match admission {
            Admission::Budget => self.budget.release(),
            Admission::Pooled => self.budget.release_one(),
            Admission::Released => {}
        }
    }

    fn run_ready(&mut self) -> io::Result<()> {
        let n = self.ctx.relay.ready.len();
        for _ in 0..n {
            let Some((idx, gen, i)) = self.ctx.relay.ready.pop_front() else {
                break;
            };
            let Some(s) = self.slab.get(idx, gen) else {
                continue;
            };
            if s.closing() {
                continue;
            }
            let step = s.relay_resume(i, &mut self.ctx)?;
            self.carry_out(idx, step)?;
        }
        Ok(())
    }

    /// Buffers came back (on any path): re-arm every receive that ran out of them. A
    /// direction that runs dry again simply goes back on the list.
    fn feed_starved(&mut self) -> io::Result<()> {
        let waiting = std::mem::take(&mut self.ctx.relay.starved);
        for (idx, gen, i) in waiting {
            let Some(s) = self.slab.get(idx, gen) else {
                continue;
            };
            if !s.closing() {
                s.relay_feed(i, &mut self.ctx)?;
            }
        }
        Ok(())
    }

    // ----- timers -------------------------------------------------------------------

    fn on_tick(&mut self) -> io::Result<()> {
        self.ctx.ring.tick(Token::worker(Op::Tick))?;
        if !self.pool.is_empty() {
            self.pool_expire()?;
        }
        let now = self.ctx.now;
        while let Some((at, idx, gen)) = self.timers.pop_due(now) {
            let Some(s) = self.slab.get(idx, gen) else {
                continue;
            };
            let closing = s.closing();
            if let Due::Nothing = self.timers.judge(at, &mut s.conn, closing, now) {
                continue;
            }
            if matches!(s.state, State::Pooled { .. }) {
                self.pool_drop(idx)?;
                continue;
            }
            let step = s.on_timeout(&mut self.ctx)?;
            self.carry_out(idx, step)?;
        }
        Ok(())
    }

    // ----- the upstream keep-alive pool -----------------------------------------------

    /// Keep `fd`, an idle connection to backend `b`, for reuse — or close it when the pool
    /// is off or no slot is free.
    fn pool_put(&mut self, b: usize, fd: OwnedFd) -> io::Result<()> {
        let group = &self.ctx.routing.groups[self.ctx.ups.group_of(b)];
        if group.keepalive == 0 || self.ctx.shutting {
            return Ok(());
        }
        // More than `keepalive` may be idle for a moment: the surplus is trimmed at the
        // next tick. io_uring hands a worker its completions in batches, so a batch of
        // finished exchanges returns many connections at once just before the next batch
        // of requests takes them again; closing the surplus at once made ~1 request in 5
        // open a new upstream connection at 50 busy clients with `keepalive 32`.
        if !self.budget.take_one() {
            return Ok(());
        }
        let idx = self.slab.insert(|idx, gen| Session {
            conn: Conn::new(idx, gen, None, Some(fd)),
            peer: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            listen: 0,
            backend: NO_BACKEND,
            admission: Admission::Pooled,
            state: State::Pooled { backend: b as u16 },
        });
        let Some(s) = self.slab.at(idx) else {
            return Ok(());
        };
        let events = (libc::POLLIN | libc::POLLRDHUP) as u32;
        s.conn.poll(
            &mut self.ctx.ring,
            Side::Upstream,
            events,
            false,
            Op::PollIn,
        )?;
        let gen = s.conn.gen;
        self.pool.push(b, idx, gen, self.ctx.now);
        Ok(())
    }

    /// Take the most recently pooled connection to backend `b`, if any.
    fn take_pooled(&mut self, b: usize) -> Option<OwnedFd> {
        let idx = self.pool.take_newest(b)?;
        self.unpool(idx)
    }

    /// Close the oldest pooled connection (of the backend with the most), returning its
    /// slot now.
    fn evict_oldest(&mut self) -> io::Result<()> {
        if let Some(idx) = self.pool.take_oldest() {
            drop(self.unpool(idx));
        }
        Ok(())
    }

    /// Move the socket out of pooled session `idx` (already unlisted), give its slot
    /// back, and end the session (its POLLIN is cancelled — queued before anything the
    /// new owner submits on the socket).
    fn unpool(&mut self, idx: u32) -> Option<OwnedFd> {
        self.budget.release_one();
        let s = self.slab.at(idx)?;
        let fd = s.conn.upstream.take();
        s.admission = Admission::Released;
        if let Err(e) = self.close(idx) {
            self.log(format_args!("cancelling a pooled connection's poll: {e}"));
        }
        fd
    }

    /// At each tick: close pooled connections idle longer than their upstream's
    /// `keepalive_timeout` (`--upstream-idle-timeout`), then, per upstream, the oldest
    /// until at most its `keepalive` are left.
    fn pool_expire(&mut self) -> io::Result<()> {
        let (ups, routing) = (self.ctx.ups.clone(), self.ctx.routing.clone());
        let idle = |b: usize| ms(routing.groups[ups.group_of(b)].idle_timeout);
        while let Some(idx) = self.pool.take_expired(self.ctx.now, idle) {
            drop(self.unpool(idx));
        }
        for g in &routing.groups {
            while self.pool.count_in(g.backends.clone()) > g.keepalive {
                match self.pool.take_oldest_in(g.backends.clone()) {
                    Some(idx) => drop(self.unpool(idx)),
                    None => break,
                }
            }
        }
        Ok(())
    }

    /// A pooled connection's POLLIN fired (or it timed out): the backend closed it, or
    /// sent bytes nobody asked for. Drop it; its slot comes back when the session is freed.
    fn pool_drop(&mut self, idx: u32) -> io::Result<()> {
        let Some(s) = self.slab.at(idx) else {
            return Ok(());
        };
        let State::Pooled { backend } = s.state else {
            return Ok(());
        };
        let gen = s.conn.gen;
        self.pool.remove(backend as usize, idx, gen);
        self.close(idx)
    }
}
