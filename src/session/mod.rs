//! A proxied client's session: one enum for its state, each state owning its data, and
//! handlers that return what should happen next.
//!
//! Lifecycle (see ARCHITECTURE.md, "Life of a connection"):
//! `Head` (read a request head; between requests, the keep-alive wait) → `Exchange`
//! (connect or take a pooled upstream, forward the request and its body, relay the
//! response and its body) → back to `Head` on a kept-alive connection, or → `Tunnel`
//! (relay bytes of an upgraded WebSocket) → `Closing` → freed. ringway's own answers
//! (400, 408, 417, 431, 502, 503, 504) go `Reply` → `Linger` → `Closing`. An idle upstream
//! connection in the worker's keep-alive pool is a session of its own in state `Pooled`.
//!
//! Handlers get the worker's tools through [`Ctx`] (ring, relay tools with the pipe
//! pool, clock, config, backends) and return a [`Step`]; the worker carries the step out
//! (the slab, the pool, the budget and the timers are the worker's). A session is freed
//! only when `conn.inflight == 0`: every buffer an in-flight operation points at is owned
//! by the state (kept inside `Closing`/`Reply`/`Linger` while cancelled operations drain).
//!
//! The handlers live beside their state: [`head`] (request heads), [`exchange`] (one
//! request: backend choice, connect, end of exchange, upgrade, timeouts), [`request`] and
//! [`response`] (the two halves of an exchange), [`reply`] (our own answers and the
//! lingering close); the tunnel's are in [`crate::relay`].

pub mod exchange;
pub mod head;
pub mod observe;
pub mod reply;
pub mod request;
pub mod response;
pub mod tls;
pub mod watch;

use crate::config::routing::{Group, Route, Routing};
use crate::config::Config;
use crate::conn::Conn;
use crate::http::RequestRules;
use crate::relay::{self, Flow, Relay, Tunnel};
use crate::ring::{Completion, Op, Ring, Side};
use crate::shm::BackendCounters;
use crate::upstream::Upstreams;
use std::io;
use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub use exchange::{Exchange, ReqPhase, RespPhase};
pub use head::Head;

/// "No backend chosen yet".
pub const NO_BACKEND: u16 = u16::MAX;
/// Largest upstream response head.
pub const RESP_MAX: usize = 16 * 1024;
/// First size of a head buffer; it grows (doubling) up to the limit only when a head is
/// larger. Small first buffers keep the memory touched during a connection storm low.
pub const HEAD_FIRST: usize = 1024;
/// How long a lingering close waits for the client to finish sending.
pub const LINGER: Duration = Duration::from_secs(2);
/// Request body buffer: body bytes stream through it in pieces of at most this size.
pub const BODY_BUF: usize = 16 * 1024;
/// Recycled exchanges (with their buffers) a worker keeps.
pub const SPARE_MAX: usize = 256;

/// Milliseconds of a duration, for the worker clock.
pub fn ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// How the session got its slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Two budget slots (client + upstream).
    Budget,
    /// One budget slot: an idle upstream connection in the keep-alive pool.
    Pooled,
    /// Nothing to give back: a pooled connection whose slot was already returned (it was
    /// evicted or handed to a client).
    Released,
}

/// A session's state.
#[derive(Debug)]
pub enum State {
    /// Reading a request head.
    Head(Head),
    /// One request/response exchange.
    Exchange(Box<Exchange>),
    /// Relaying bytes of an upgraded connection.
    Tunnel(Tunnel),
    /// An idle upstream connection in the keep-alive pool (`conn.upstream` is the socket);
    /// a single POLLIN watches for the backend closing it.
    Pooled {
        /// The backend it belongs to.
        backend: u16,
    },
    /// Sending ringway's own answer.
    Reply {
        /// The answer.
        msg: &'static [u8],
        /// Bytes sent.
        sent: usize,
        /// The previous state, kept while cancelled operations may still point into it.
        keep: Option<Box<State>>,
    },
    /// Our answer is out; reading and discarding what the client still sends, so that
    /// closing does not reset the connection before the client has read the answer.
    Linger {
        /// As in `Reply`.
        keep: Option<Box<State>>,
    },
    /// Being torn down: completions only count down `conn.inflight`; freed at zero.
    Closing {
        /// The state it closed in, kept while cancelled operations may still point into it.
        keep: Option<Box<State>>,
    },
}

impl State {
    /// The relay inside this state (or inside a state it keeps), consuming it.
    pub fn into_tunnel(self) -> Option<Tunnel> {
        match self {
            State::Tunnel(t) => Some(t),
            State::Reply { keep, .. } | State::Linger { keep } | State::Closing { keep } => {
                keep.and_then(|b| b.into_tunnel())
            }
            State::Head(_) | State::Exchange(_) | State::Pooled { .. } => None,
        }
    }
}

/// What the worker should do after a handler ran.
#[derive(Debug)]
#[must_use]
pub enum Step {
    /// Nothing: the session submitted what it needs.
    Continue,
    /// Answer the client with ringway's own message, then linger and close
    /// ([`Session::reply`]).
    Reply(&'static [u8]),
    /// Tear the session down ([`Session::begin_close`], then free it when nothing is in
    /// flight).
    Close,
    /// The exchange needs a connection to backend `b`: the worker hands it a pooled one
    /// ([`Session::use_pooled`]) or has it connect ([`Session::connect`]).
    Upstream(usize),
    /// The exchange is done with its upstream connection: the worker pools it (when
    /// `reuse`) or closes it, then resumes the session ([`Session::resume`]).
    Release {
        /// Its backend.
        backend: usize,
        /// The connection.
        fd: OwnedFd,
        /// Whether it may serve another request.
        reuse: bool,
    },
}

impl From<Flow> for Step {
    fn from(f: Flow) -> Step {
        match f {
            Flow::Continue => Step::Continue,
            Flow::Close => Step::Close,
        }
    }
}

/// The worker's tools, lent to every handler.
pub struct Ctx {
    /// The ring.
    pub ring: Ring,
    /// Relay tools: mode, pipe pool, ready and starved queues.
    pub relay: Relay,
    /// Configuration.
    pub cfg: Arc<Config>,
    /// Backends and their counters.
    pub ups: Arc<Upstreams>,
    /// Routes and upstream groups (one of each without a routing table).
    pub routing: Arc<Routing>,
    /// Requests are matched against `routing` (false: everything takes route 0).
    pub matching: bool,
    /// Per route: the request rewriting rules.
    pub rules: Vec<RequestRules>,
    /// Worker clock, milliseconds since the worker started.
    pub now: u64,
    /// Worker index (log lines, counters).
    pub index: usize,
    /// The worker is shutting down: no keep-alive, no pooling.
    pub shutting: bool,
    /// Recycled exchanges with their buffers (keep-alive allocates nothing).
    // Boxes on purpose: a session state holds a `Box<Exchange>`, recycled as is.
    #[allow(clippy::vec_box)]
    pub spare: Vec<Box<Exchange>>,
    /// Scratch for the rewritten request head.
    pub head_scratch: Vec<u8>,
    /// Scratch for the normalised request path (routing).
    pub path_scratch: Vec<u8>,
    /// Scratch for a rewritten request target (routing).
    pub target_scratch: Vec<u8>,
    /// The worker's balancing state (round-robin positions and weights).
    pub cursors: crate::upstream::Cursors,
    /// Per backend: the next `--upstream-bind` source.
    pub bind_rr: Vec<usize>,
    /// Upgraded tunnels alive.
    pub tunnels: usize,
    /// Answers ringway gave itself (4xx/5xx).
    pub errors: u64,
    /// Clients that left while their exchange waited for the backend (nginx's 499).
    pub client_gone: u64,
    /// Metrics and the access log.
    pub obs: observe::Obs,
}

impl Ctx {
    /// A log line about the worker itself (`error`).
    pub fn log(&self, msg: std::fmt::Arguments<'_>) {
        crate::log::write(
            crate::log::Level::Error,
            crate::log::Who::Worker(self.index),
            None,
            msg,
        );
    }
    /// A log line about what client `peer` did (`info`, as nginx logs client errors).
    pub fn client_info(&self, peer: IpAddr, msg: std::fmt::Arguments<'_>) {
        let who = crate::log::Who::Worker(self.index);
        crate::log::write(crate::log::Level::Info, who, Some(peer), msg);
    }
    /// A log line about what a backend did while serving client `peer` (`error`).
    pub fn upstream_error(&self, peer: IpAddr, msg: std::fmt::Arguments<'_>) {
        let who = crate::log::Who::Worker(self.index);
        crate::log::write(crate::log::Level::Error, who, Some(peer), msg);
    }
    /// This worker's counters for backend `b`.
    pub fn bctr(&self, b: usize) -> &'static BackendCounters {
        self.ups.counters.backend(self.index, b)
    }
    /// Route `r`.
    pub fn route(&self, r: u16) -> &Route {
        &self.routing.routes[r as usize]
    }
    /// The upstream group of route `r`.
    pub fn group(&self, r: u16) -> &Group {
        &self.routing.groups[self.route(r).group]
    }
    /// Keep an exchange (nothing in flight points into it) for the next request.
    pub fn recycle(&mut self, mut ex: Box<Exchange>) {
        if self.spare.len() < SPARE_MAX {
            ex.cin = Box::default();
            self.spare.push(ex);
        }
    }
}

/// One client and (once chosen) its upstream.
#[derive(Debug)]
pub struct Session {
    /// Sockets, ring identity, in-flight count, deadline.
    pub conn: Conn,
    /// Client address (X-Forwarded-For, ip-hash).
    pub peer: IpAddr,
    /// The listen address it came in on (an index of the routing table's listens).
    pub listen: u16,
    /// Backend index, or NO_BACKEND.
    pub backend: u16,
    /// How the slots were granted.
    pub admission: Admission,
    /// The state and its data.
    pub state: State,
}

impl Session {
    /// Whether the session is being torn down.
    pub fn closing(&self) -> bool {
        matches!(self.state, State::Closing { .. })
    }

    /// Route a completion to the handler of the operation it finishes.
    pub fn on_completion(
        &mut self,
        op: Op,
        side: Side,
        cqe: &Completion,
        ctx: &mut Ctx,
    ) -> io::Result<Step> {
        let res = cqe.res();
        match op {
            Op::TlsRecv => self.on_tls_recv(cqe, ctx),
            Op::TlsSend => self.on_tls_sent(res, ctx),
            // A TLS client's handler operations are virtual: these are their NOPs.
            Op::HeadRecv | Op::BodyRecv | Op::ClientSend if self.conn.tls_on() => {
                self.on_tls_nop(op, ctx)
            }
            Op::HeadRecv => self.on_head_recv(res, ctx),
            Op::BodyRecv => self.on_body_recv(res, ctx),
            Op::ClientWatch => self.on_client_watch(res, ctx),
            Op::Connect => self.on_connect(res, ctx),
            Op::UpSend => self.on_up_send(res, ctx),
            Op::UpRecv => self.on_up_recv(res, ctx),
            Op::ClientSend => self.on_client_send(res, ctx),
            Op::LingerRecv => self.on_linger_recv(res, ctx),
            Op::PollIn | Op::PollOut | Op::Recv | Op::Send => self.on_relay(op, side, cqe, ctx),
            Op::Cancel | Op::ConnectTimeout | Op::Accept | Op::Tick | Op::Control => {
                Ok(Step::Continue)
            }
        }
    }

    fn on_relay(
        &mut self,
        op: Op,
        side: Side,
        cqe: &Completion,
        ctx: &mut Ctx,
    ) -> io::Result<Step> {
        let now = ctx.now;
        let State::Tunnel(t) = &mut self.state else {
            // A relay completion after the relay gave way to an answer.
            if let Some(bid) = cqe.buffer_id() {
                ctx.ring.recycle_buffer(bid);
            }
            return Ok(Step::Continue);
        };
        let (c, ring, relay) = (&mut self.conn, &mut ctx.ring, &mut ctx.relay);
        if c.tls.is_some() {
            return Ok(relay::tls::on_upstream(t, c, ring, relay, now, op, cqe)?.into());
        }
        let flow = match op {
            Op::PollIn => relay::splice::on_poll_in(t, c, ring, relay, now, side, cqe)?,
            Op::PollOut => relay::splice::on_poll_out(t, c, ring, relay, now, side, cqe.res())?,
            Op::Recv => relay::copy::on_recv(t, c, ring, relay, now, side, cqe)?,
            _ => relay::copy::on_send(t, c, ring, relay, side, cqe.res())?,
        };
        Ok(flow.into())
    }

    /// A splice direction taken off the worker's ready queue.
    pub fn relay_resume(&mut self, i: usize, ctx: &mut Ctx) -> io::Result<Step> {
        let State::Tunnel(t) = &mut self.state else {
            return Ok(Step::Continue);
        };
        let now = ctx.now;
        let flow = relay::splice::resume(t, &mut self.conn, &mut ctx.ring, &mut ctx.relay, now, i)?;
        Ok(flow.into())
    }

    /// A receive that ran out of ring buffers (a copy direction's, a TLS client's):
    /// buffers are back, re-arm it.
    pub fn relay_feed(&mut self, i: usize, ctx: &mut Ctx) -> io::Result<()> {
        let State::Tunnel(t) = &mut self.state else {
            return self.conn.tls_read_progress(&mut ctx.ring);
        };
        if self.conn.tls.is_some() {
            return relay::tls::feed(t, &mut self.conn, &mut ctx.ring, &mut ctx.relay, i);
        }
        relay::copy::feed(t, &mut self.conn, &mut ctx.ring, &mut ctx.relay, i)
    }

    /// The session's deadline passed: what that means depends on the state.
    pub fn on_timeout(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        let peer = self.peer;
        if let State::Tunnel(t) = &mut self.state {
            t.end = observe::END_TIMEOUT;
        }
        Ok(match &self.state {
            // A kept-alive client that sent nothing more: the normal end of a connection.
            State::Head(h) if h.idle => Step::Close,
            State::Head(_) if self.conn.tls.as_ref().is_some_and(|t| t.handshaking()) => {
                ctx.client_info(peer, format_args!("TLS handshake timeout, closing"));
                Step::Close
            }
            State::Head(_) => {
                ctx.client_info(peer, format_args!("request head timeout, closing"));
                Step::Close
            }
            State::Exchange(_) => return self.exchange_timeout(ctx),
            _ => Step::Close,
        })
    }

    /// Start tearing the session down: shut its sockets, cancel what stays armed, and
    /// become `Closing`. Returns whether it can be freed now (nothing in flight).
    pub fn begin_close(&mut self, ctx: &mut Ctx) -> io::Result<bool> {
        if self.closing() {
            return Ok(false);
        }
        // A TLS client hears the end (close_notify), when nothing is being sent.
        self.conn.tls_goodbye();
        if self.conn.inflight == 0 {
            // Nothing points into the state: the worker frees the session now.
            return Ok(true);
        }
        // Shutting both sockets down completes every single-shot receive and send on them
        // (and a multishot receive: it ends at end-of-stream); what stays armed by itself —
        // multishot polls, a POLLOUT, a connect — is cancelled by its own token. (Cancelling
        // by descriptor would scan every request in the ring: quadratic when thousands of
        // tunnels close at once, as at shutdown.)
        self.conn.shutdown(Side::Client, libc::SHUT_RDWR);
        self.conn.shutdown(Side::Upstream, libc::SHUT_RDWR);
        self.cancel_armed(&mut ctx.ring, true)?;
        let old = std::mem::replace(&mut self.state, State::Closing { keep: None });
        self.state = State::Closing {
            keep: Some(Box::new(old)),
        };
        Ok(false)
    }

    /// Cancel, by token, the operations that would stay armed: multishot POLLINs,
    /// POLLOUTs, a connect in flight, a body receive. With `upstream_too` false only the
    /// client side's (the client socket stays usable for an answer).
    pub fn cancel_armed(&mut self, ring: &mut Ring, upstream_too: bool) -> io::Result<()> {
        let c = &mut self.conn;
        match &self.state {
            State::Tunnel(t) => t.cancel_armed(c, ring, upstream_too)?,
            State::Exchange(ex) => {
                if ex.req == ReqPhase::Connecting && upstream_too {
                    c.cancel(ring, Op::Connect, Side::Upstream)?;
                }
                if ex.req == ReqPhase::ReadingBody {
                    c.cancel(ring, Op::BodyRecv, Side::Client)?;
                }
                if ex.watching {
                    c.cancel(ring, Op::ClientWatch, Side::Client)?;
                }
            }
            State::Pooled { .. } if upstream_too => c.cancel(ring, Op::PollIn, Side::Upstream)?,
            State::Head(_) if !upstream_too => c.cancel(ring, Op::HeadRecv, Side::Client)?,
            _ => {}
        }
        Ok(())
    }

    /// The session is being freed (nothing in flight): give back what it holds that is
    /// the worker's — the exchange's buffers, the relay's pipes and ring buffers — and
    /// take it off the counters. Its sockets close when it is dropped.
    pub fn release(mut self, ctx: &mut Ctx) {
        debug_assert_eq!(self.conn.inflight, 0);
        self.conn.tls_release(&mut ctx.ring);
        let state = match self.state {
            State::Closing { keep: Some(k) } => *k,
            other => other,
        };
        let tunnel = match state {
            State::Exchange(mut ex) => {
                observe::exchange_end(&mut ex, self.peer, self.backend, ctx);
                ctx.recycle(ex);
                None
            }
            other => other.into_tunnel(),
        };
        if let Some(mut t) = tunnel {
            observe::tunnel_end(&t, self.peer, self.backend, ctx);
            t.release(&mut ctx.ring, &mut ctx.relay);
            if t.upgraded {
                ctx.tunnels -= 1;
                if self.backend != NO_BACKEND {
                    ctx.bctr(self.backend as usize)
                        .tunnels
                        .fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        if self.backend != NO_BACKEND {
            ctx.bctr(self.backend as usize)
                .active
                .fetch_sub(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_tunnel_is_small() {
        // The slab entry of an idle tunnel is all the user-space memory it holds (no
        // buffers, no pipe). Keep it well under the 1 KB target.
        let size = std::mem::size_of::<Session>();
        eprintln!(
            "Session: {size} bytes, Tunnel: {}",
            std::mem::size_of::<Tunnel>()
        );
        assert!(size <= 320, "Session grew to {size} bytes");
    }
}
