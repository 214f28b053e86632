//! State `Exchange`: one request and its response, from the choice of a backend to the
//! end of the exchange (back to `Head`, an upgrade into a tunnel, or a close).
//!
//! An exchange has two halves that run side by side, each with at most one operation in
//! flight: the request half ([`super::request`]: `100 Continue` when asked, the
//! rewritten head, then the body: client → `cin` → backend) and the response half
//! ([`super::response`]: the head, rewritten, then the body: backend → `uin` → client).
//! Bodies are forwarded verbatim and never held whole; their framing
//! ([`crate::body::Body`]) only says where each message ends. This file holds what is
//! not one half's: starting the exchange, the upstream connection (pooled or fresh,
//! connect, retries), its end, the upgrade, failures and timeouts.
//!
//! When both halves are done, the upstream connection goes back to the keep-alive pool
//! (when the backend allows it) and the client connection back to `Head` — with any
//! pipelined bytes already received, which are parsed at once, so pipelined requests are
//! answered one after another, in order. A `101` with a matching `Upgrade` turns the
//! session into a tunnel; any other answer leaves the client connection speaking HTTP.
//!
//! Errors before the response head has gone out are answered (400, 408, 417, 431, 502,
//! 504); after it, the only honest signal left is closing the connection.

use super::{ms, Ctx, Head, Session, State, Step, HEAD_FIRST, LINGER, NO_BACKEND, RESP_MAX};
use crate::body::{Body, FramingError};
use crate::http::{reply, RequestInfo, ResponseInfo};
use crate::relay::Tunnel;
use crate::ring::Side;
use crate::sys;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::Ordering;

/// Where the request half of an exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReqPhase {
    /// Connecting to the backend.
    Connecting,
    /// Answering `Expect: 100-continue` before the head goes out.
    SendingContinue,
    /// Sending the rewritten head (plus the body bytes that came with it).
    SendingHead,
    /// Receiving body bytes from the client.
    ReadingBody,
    /// Sending body bytes `cin[fwd_from..fwd_to]` to the backend.
    SendingBody,
    /// The whole request is with the backend.
    Done,
    /// The backend stopped taking the body (it answered early and closed its read side):
    /// the response half goes on; the client connection closes after it.
    Aborted,
    /// After the `101`: sending the held early frames `cin[cin_pos..cin_len]` to the
    /// backend, before the tunnel starts ([`super::watch`]).
    SendingEarly,
}

/// Where the response half of an exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespPhase {
    /// The request head is not out yet.
    Waiting,
    /// Receiving the response head.
    ReadingHead,
    /// Sending the rewritten head (plus the body bytes that came with it) to the client.
    SendingHead,
    /// Receiving body bytes from the backend.
    ReadingBody,
    /// Sending `uin[..ulen]` (body bytes) to the client.
    SendingBody,
    /// The whole response is with the client.
    Done,
}

/// One request and its response. Boxed, and recycled through a per-worker free list
/// with its buffers, so a keep-alive exchange allocates nothing.
#[derive(Debug)]
pub struct Exchange {
    /// Request half.
    pub req: ReqPhase,
    /// Response half.
    pub resp: RespPhase,
    /// Backends tried so far.
    pub attempts: u8,
    /// The upstream connection came from the keep-alive pool.
    pub reused: bool,
    /// The whole request (head and body) is in `head`: it can be sent again.
    pub replayable: bool,
    /// The parsed request.
    pub info: RequestInfo,
    /// Client bytes: the request head's buffer, then body bytes and pipelined requests.
    pub cin: Box<[u8]>,
    /// Start of the bytes of `cin` not yet consumed.
    pub cin_pos: usize,
    /// Bytes in `cin`.
    pub cin_len: usize,
    /// Body bytes being sent upstream: `cin[fwd_from..fwd_to]`.
    pub fwd_from: usize,
    /// End of the body bytes being sent.
    pub fwd_to: usize,
    /// The request body's remaining framing.
    pub req_body: Body,
    /// Rewritten request head + the body bytes that followed it.
    pub head: Vec<u8>,
    /// Bytes of `head` sent.
    pub head_sent: usize,
    /// Upstream bytes: the response head, then body bytes.
    pub uin: Box<[u8]>,
    /// Bytes in `uin`.
    pub ulen: usize,
    /// Bytes of `uin` already sent to the client (while `SendingBody`).
    pub usent: usize,
    /// The parsed response, once complete.
    pub rinfo: Option<ResponseInfo>,
    /// The response body's remaining framing.
    pub resp_body: Body,
    /// The backend sent bytes past the response: do not reuse its connection.
    pub upstream_dirty: bool,
    /// Rewritten response head + the body bytes that followed it, for the client.
    pub out: Vec<u8>,
    /// Bytes of `out` sent.
    pub out_sent: usize,
    /// Deadline of the request half (client body timeout), worker ms; 0: none.
    pub req_at: u64,
    /// Deadline of the response half (upstream read timeout), worker ms; 0: none.
    pub resp_at: u64,
    /// A `ClientWatch` poll is armed on the client ([`super::watch`]).
    pub watching: bool,
    /// Timings and access-log text (`observe.rs`).
    pub obs: super::observe::ExObs,
}

impl Exchange {
    fn fresh() -> Box<Exchange> {
        Box::new(Exchange {
            req: ReqPhase::Connecting,
            resp: RespPhase::Waiting,
            attempts: 0,
            reused: false,
            replayable: false,
            info: RequestInfo {
                head_len: 0,
                upgrade: false,
                body: Body::None,
                minor: 1,
                head_method: false,
                idempotent: false,
                keep_alive: false,
                expect_continue: false,
                sticky: None,
                hash: None,
                route: 0,
                dropped_underscores: 0,
            },
            cin: Box::default(),
            cin_pos: 0,
            cin_len: 0,
            fwd_from: 0,
            fwd_to: 0,
            req_body: Body::None,
            head: Vec::with_capacity(1024),
            head_sent: 0,
            uin: vec![0u8; RESP_MAX].into_boxed_slice(),
            ulen: 0,
            usent: 0,
            rinfo: None,
            resp_body: Body::None,
            upstream_dirty: false,
            out: Vec::with_capacity(1024),
            out_sent: 0,
            req_at: 0,
            resp_at: 0,
            watching: false,
            obs: Default::default(),
        })
    }

    /// Reset a (fresh or recycled) exchange for request `info`, whose head buffer is
    /// `head` (its bytes past the head are body bytes or pipelined requests).
    fn reset(&mut self, info: RequestInfo, head: Head, rewritten: &[u8]) {
        self.req = ReqPhase::Connecting;
        self.resp = RespPhase::Waiting;
        self.attempts = 0;
        self.reused = false;
        self.info = info;
        self.cin = head.buf;
        self.cin_len = head.len;
        self.cin_pos = info.head_len;
        self.fwd_from = 0;
        self.fwd_to = 0;
        self.req_body = info.body;
        self.head.clear();
        self.head.extend_from_slice(rewritten);
        self.head_sent = 0;
        self.ulen = 0;
        self.usent = 0;
        self.rinfo = None;
        self.resp_body = Body::None;
        self.upstream_dirty = false;
        self.out.clear();
        self.out_sent = 0;
        self.req_at = 0;
        self.resp_at = 0;
        self.watching = false;
    }
}

impl Session {
    /// The exchange, when that is the state.
    pub(super) fn ex(&mut self) -> Option<&mut Exchange> {
        match &mut self.state {
            State::Exchange(ex) => Some(ex),
            _ => None,
        }
    }

    /// Set the session's deadline to the earlier of its two halves' deadlines.
    pub(super) fn refresh_deadline(&mut self) {
        let at = match self.ex() {
            Some(ex) => match (ex.req_at, ex.resp_at) {
                (0, r) => r,
                (q, 0) => q,
                (q, r) => q.min(r),
            },
            None => return,
        };
        self.conn.deadline = at;
    }

    /// A complete request head: build the exchange (the head's buffer becomes its client
    /// buffer), check the body bytes that came with the head, pick a backend.
    pub(super) fn begin_exchange(
        &mut self,
        info: RequestInfo,
        rewritten: &[u8],
        ctx: &mut Ctx,
    ) -> io::Result<Step> {
        let peer = self.peer;
        let State::Head(h) = std::mem::replace(&mut self.state, State::Linger { keep: None })
        else {
            return Ok(Step::Continue);
        };
        let mut ex = ctx.spare.pop().unwrap_or_else(Exchange::fresh);
        ex.reset(info, h, rewritten);
        // Body bytes that arrived with the head go out with it; the rest (a pipelined
        // request) stays in the buffer for later.
        let fed = ex.req_body.feed(&ex.cin[ex.cin_pos..ex.cin_len]);
        self.state = State::Exchange(ex);
        self.obs_begin(ctx);
        let k = match fed {
            Ok(k) => k,
            Err(FramingError(why)) => {
                ctx.client_info(peer, format_args!("{why}; answering 400"));
                return Ok(Step::Reply(reply::BAD_REQUEST));
            }
        };
        let Some(ex) = self.ex() else {
            return Ok(Step::Continue);
        };
        let (from, to) = (ex.cin_pos, ex.cin_pos + k);
        ex.head.extend_from_slice(&ex.cin[from..to]);
        ex.cin_pos = to;
        if ex.cin_pos == ex.cin_len {
            ex.cin_pos = 0;
            ex.cin_len = 0;
        }
        // The whole request is in `head`: it can be sent again on a fresh connection if
        // a pooled one turns out to have been closed by the backend.
        ex.replayable = ex.req_body.done();
        self.conn.deadline = 0;
        if info.dropped_underscores > 0 {
            ctx.client_info(peer, format_args!("{} request header(s) with \"_\" in the name not forwarded (underscores_in_headers off)", info.dropped_underscores));
        }
        let early = self.early_len();
        if early > super::watch::EARLY_MAX {
            ctx.client_info(peer, format_args!("{early} bytes after an upgrade request, before the 101 (at most {} are held); answering 400", super::watch::EARLY_MAX));
            return Ok(Step::Reply(reply::BAD_REQUEST));
        }
        let g = ctx.route(info.route).group;
        match ctx.ups.pick_for(g, &mut ctx.cursors, peer, &info) {
            Some(b) => Ok(Step::Upstream(b)),
            None => {
                let name = &ctx.routing.groups[g].name;
                ctx.upstream_error(
                    peer,
                    format_args!(
                        "no live upstreams in {name} (every server is down); answering 502"
                    ),
                );
                Ok(Step::Reply(reply::BAD_GATEWAY))
            }
        }
    }

    /// Count the session's exchange against backend `b` (least-conn), instead of the one
    /// it had.
    fn set_backend(&mut self, b: usize, ctx: &Ctx) {
        ctx.bctr(b).active.fetch_add(1, Ordering::Relaxed);
        self.unset_backend(ctx);
        self.backend = b as u16;
    }

    /// The exchange no longer uses a backend.
    fn unset_backend(&mut self, ctx: &Ctx) {
        if self.backend != NO_BACKEND {
            ctx.bctr(self.backend as usize)
                .active
                .fetch_sub(1, Ordering::Relaxed);
        }
        self.backend = NO_BACKEND;
    }

    /// Use `fd`, an idle pooled connection to backend `b`, for this exchange.
    pub fn use_pooled(&mut self, b: usize, fd: OwnedFd, ctx: &mut Ctx) -> io::Result<Step> {
        self.set_backend(b, ctx);
        self.obs_upstream(false);
        self.conn.upstream = Some(fd);
        if let Some(ex) = self.ex() {
            ex.reused = true;
            ex.attempts = 1;
        }
        ctx.bctr(b).requests_total.fetch_add(1, Ordering::Relaxed);
        self.watch_client(ctx)?;
        self.upstream_ready(ctx)
    }

    /// Open a fresh connection to backend `b` (with the linked connect timeout).
    pub fn connect(&mut self, b: usize, ctx: &mut Ctx) -> io::Result<Step> {
        self.set_backend(b, ctx);
        self.obs_upstream(true);
        let v6 = ctx.ups.addrs[b].is_ipv6();
        let mut route = 0;
        if let Some(ex) = self.ex() {
            ex.attempts += 1;
            ex.req = ReqPhase::Connecting;
            route = ex.info.route;
        }
        let fd = match sys::tcp_socket(v6) {
            Ok(fd) => fd,
            Err(e) => {
                ctx.log(format_args!(
                    "cannot create an upstream socket: {e} (raise `ulimit -n`); answering 502"
                ));
                return Ok(Step::Reply(reply::BAD_GATEWAY));
            }
        };
        sys::set_nodelay(fd.as_raw_fd());
        let binds = &ctx.cfg.upstream_bind;
        if !binds.is_empty() {
            // Rotate sources per backend: a shared cursor would advance in step with round
            // robin and give each backend only some of the sources.
            let cursor = &mut ctx.bind_rr[b];
            let src = binds[*cursor % binds.len()];
            *cursor = cursor.wrapping_add(1);
            if let Err(e) = sys::bind_source(fd.as_raw_fd(), src) {
                ctx.log(format_args!("cannot bind an upstream socket to {src}: {e}; connecting from the default address"));
            }
        }
        self.conn.upstream = Some(fd);
        self.conn.connect(&mut ctx.ring, b, route as usize)?;
        self.watch_client(ctx)?;
        Ok(Step::Continue)
    }

    pub(super) fn on_connect(&mut self, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        let Some(ex) = self.ex() else {
            return Ok(Step::Continue);
        };
        if ex.req != ReqPhase::Connecting {
            return Ok(Step::Continue);
        }
        let attempts = ex.attempts;
        let b = self.backend as usize;
        self.obs_connected(b, res, ctx);
        if res >= 0 {
            ctx.bctr(b).requests_total.fetch_add(1, Ordering::Relaxed);
            return self.upstream_ready(ctx);
        }
        let timed_out = -res == libc::ECANCELED || -res == libc::ETIMEDOUT;
        self.conn.upstream = None;
        ctx.bctr(b).failures_total.fetch_add(1, Ordering::Relaxed);
        let be_addr = ctx.ups.addrs[b];
        let why = if timed_out {
            "connect timed out".to_string()
        } else if -res == libc::EADDRNOTAVAIL {
            "no free local port toward it (not a backend failure: add source addresses with --upstream-bind or widen ip_local_port_range)".to_string()
        } else {
            io::Error::from_raw_os_error(-res).to_string()
        };
        if -res != libc::EADDRNOTAVAIL {
            ctx.ups.failed(b, ctx.index, &why);
        }
        let next = if (attempts as usize) < 2 && ctx.ups.group_len(b) > 1 {
            ctx.ups.next_after(b, &mut ctx.cursors, self.peer)
        } else {
            None
        };
        if let Some(next) = next {
            ctx.upstream_error(
                self.peer,
                format_args!(
                    "upstream {}: {why}; trying {}",
                    be_addr, ctx.ups.addrs[next]
                ),
            );
            return self.connect(next, ctx);
        }
        ctx.upstream_error(
            self.peer,
            format_args!(
                "upstream {}: {why}; answering {}",
                be_addr,
                if timed_out { 504 } else { 502 }
            ),
        );
        Ok(Step::Reply(if timed_out {
            reply::GATEWAY_TIMEOUT
        } else {
            reply::BAD_GATEWAY
        }))
    }

    /// An upstream connection is ready (fresh or pooled): answer `Expect: 100-continue`
    /// now that the backend is reachable, then send the head.
    fn upstream_ready(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        self.obs_sending();
        let Some(ex) = self.ex() else {
            return Ok(Step::Continue);
        };
        let at = ctx.now + ms(ctx.route(ex.info.route).read_timeout);
        ex.resp_at = at;
        let cont = ex.info.expect_continue && !ex.req_body.done();
        if cont {
            ex.req = ReqPhase::SendingContinue;
            ex.usent = 0;
        } else {
            ex.req = ReqPhase::SendingHead;
        }
        self.refresh_deadline();
        if cont {
            self.submit_client_send(ctx)
        } else {
            self.submit_up_send(ctx)
        }
    }

    /// A pooled connection failed before any byte of the answer, and the whole request is
    /// still at hand: the backend closed it while idle, as our request crossed its close.
    /// An idempotent request is sent again, once, on a new connection (RFC 9110 §9.2.2).
    pub(super) fn can_retry_fresh(&mut self) -> bool {
        self.ex().is_some_and(|ex| {
            ex.reused && ex.replayable && ex.info.idempotent && ex.ulen == 0 && ex.attempts < 3
        })
    }

    pub(super) fn retry_fresh(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        self.conn.upstream = None;
        let b = self.backend as usize;
        // Counted once, when the pooled connection was taken.
        ctx.bctr(b).requests_total.fetch_sub(1, Ordering::Relaxed);
        if let Some(ex) = self.ex() {
            ex.reused = false;
            ex.head_sent = 0;
            ex.resp = RespPhase::Waiting;
            ex.ulen = 0;
            ex.resp_at = 0;
        }
        self.refresh_deadline();
        self.connect(b, ctx)
    }

    // ----- the end of an exchange -------------------------------------------------------

    /// The response is complete at the client. Reuse what can be reused: the client
    /// connection goes back to `Head` (or lingers and closes), and the upstream
    /// connection is released to the worker, which pools it when it may be reused.
    pub(super) fn finish_exchange(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        // The exchange (and any buffer a TLS virtual read names) goes away below.
        self.conn.tls_forget_read();
        let Some(ex) = self.ex() else {
            return Ok(Step::Continue);
        };
        let Some(ri) = ex.rinfo else {
            return Ok(Step::Close);
        };
        self.obs_exchange_end(ctx);
        let Some(ex) = self.ex() else {
            return Ok(Step::Continue);
        };
        if ex.req != ReqPhase::Done {
            // The backend answered before the whole request body arrived (an early 413,
            // say): the rest of the body would be taken for a next request. Close.
            self.close_after_response(ctx)?;
            return Ok(Step::Continue);
        }
        let reuse = ri.reusable
            && !ex.upstream_dirty
            && ctx.group(ex.info.route).keepalive > 0
            && !ctx.shutting;
        let backend = self.backend as usize;
        let up = self.conn.upstream.take();
        self.unset_backend(ctx);
        // Draining (a reload or a graceful stop): the client's next request is not this
        // worker's, even if this response promised keep-alive (nginx does the same).
        if !ri.client_keep || ctx.shutting {
            self.close_after_response(ctx)?;
        } else {
            self.back_to_head(ctx);
        }
        Ok(match up {
            Some(fd) => Step::Release { backend, fd, reuse },
            None => self.resume(ctx)?,
        })
    }

    /// Back to reading heads, with whatever pipelined bytes are already here. The next
    /// head is parsed by [`Session::resume`], once the upstream connection is released.
    fn back_to_head(&mut self, ctx: &mut Ctx) {
        let head_cap = HEAD_FIRST.max(ctx.cfg.max_head);
        let State::Exchange(mut ex) =
            std::mem::replace(&mut self.state, State::Linger { keep: None })
        else {
            return;
        };
        let keepalive_timeout = ctx.route(ex.info.route).keepalive_timeout;
        let mut buf = std::mem::take(&mut ex.cin);
        let len = ex.cin_len - ex.cin_pos;
        if buf.len() > head_cap && len <= HEAD_FIRST {
            // The body buffer served its upload: an idle connection keeps a head-sized one.
            let mut small = vec![0u8; HEAD_FIRST].into_boxed_slice();
            small[..len].copy_from_slice(&buf[ex.cin_pos..ex.cin_len]);
            buf = small;
        } else {
            buf.copy_within(ex.cin_pos..ex.cin_len, 0);
        }
        self.state = State::Head(Head {
            buf,
            len,
            idle: len == 0,
        });
        ctx.recycle(ex);
        let timeout = if len > 0 {
            ctx.cfg.head_timeout
        } else {
            keepalive_timeout
        };
        self.conn.deadline = ctx.now + ms(timeout);
    }

    /// Go on after the worker carried out a [`Step::Release`]: a kept-alive client's next
    /// request (parse what is already here, or wait for it).
    pub fn resume(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        match &self.state {
            State::Head(h) if h.len > 0 => self.parse_head(ctx),
            State::Head(_) => self.submit_head_recv(ctx),
            _ => Ok(Step::Continue),
        }
    }

    /// The response is complete and the client connection ends: drop the upstream, shut
    /// our write half, and drain the client until it closes (≤ 2 s), so that closing does
    /// not reset the connection while the client still has request bytes we never read —
    /// a reset can destroy the response's tail at the client.
    pub(super) fn close_after_response(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        // The exchange (and any buffer a TLS virtual read names) goes away below.
        self.conn.tls_forget_read();
        self.conn.shutdown(Side::Upstream, libc::SHUT_RDWR);
        self.cancel_armed(&mut ctx.ring, true)?;
        let old = std::mem::replace(&mut self.state, State::Linger { keep: None });
        // Cancelled operations may still point into the exchange's buffers.
        self.state = State::Linger {
            keep: Some(Box::new(old)),
        };
        self.conn.shutdown(Side::Client, libc::SHUT_WR);
        self.conn.deadline = ctx.now + ms(LINGER);
        self.conn.recv_discard(&mut ctx.ring)
    }

    /// The `101` is at the client (and any early frames at the backend): the session
    /// becomes a tunnel.
    pub(super) fn start_tunnel(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        // The exchange (and any buffer a TLS virtual read names) goes away below.
        self.conn.tls_forget_read();
        let route = self.ex().map_or(0, |ex| ex.info.route);
        let idle_ms = ctx.route(route).tunnel_idle_timeout.map(ms).unwrap_or(0);
        let b = self.backend as usize;
        self.obs_exchange_end(ctx);
        let early = self.ex().map_or(0, |ex| ex.obs.early);
        let State::Exchange(ex) =
            std::mem::replace(&mut self.state, State::Tunnel(Tunnel::upgraded(idle_ms)))
        else {
            return Ok(Step::Continue);
        };
        ctx.recycle(ex);
        ctx.tunnels += 1;
        let be = ctx.bctr(b);
        be.tunnels.fetch_add(1, Ordering::Relaxed);
        be.tunnels_total.fetch_add(1, Ordering::Relaxed);
        self.conn.deadline = if idle_ms != 0 { ctx.now + idle_ms } else { 0 };
        if let State::Tunnel(t) = &mut self.state {
            t.started_us = crate::metrics::now_us();
            t.dirs[1].bytes = early;
            ctx.relay.moved[1] += early;
            if self.conn.tls.is_some() {
                let (c, ring, relay) = (&mut self.conn, &mut ctx.ring, &mut ctx.relay);
                return Ok(crate::relay::tls::start(t, c, ring, relay)?.into());
            }
            t.start(&mut self.conn, &mut ctx.ring, &mut ctx.relay)?;
        }
        Ok(Step::Continue)
    }

    /// An error during an exchange: answer `msg` if nothing of the response has reached
    /// the client yet, else close.
    pub(super) fn fail(&mut self, msg: &'static [u8]) -> Step {
        let started = self.ex().is_none_or(|ex| {
            ex.req == ReqPhase::SendingContinue
                || !matches!(ex.resp, RespPhase::Waiting | RespPhase::ReadingHead)
        });
        if started {
            Step::Close
        } else {
            Step::Reply(msg)
        }
    }

    /// The session's deadline passed during an exchange: find which half is late.
    pub(super) fn exchange_timeout(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        let now = ctx.now;
        let peer = self.peer;
        let b = self.backend;
        let Some(ex) = self.ex() else {
            return Ok(Step::Continue);
        };
        let (req_at, resp_at, resp) = (ex.req_at, ex.resp_at, ex.resp);
        if req_at != 0 && now >= req_at {
            ctx.client_info(
                peer,
                format_args!("request body timeout; answering 408 or closing"),
            );
            return Ok(self.fail(reply::REQUEST_TIMEOUT));
        }
        if resp_at != 0 && now >= resp_at {
            let be = ctx
                .ups
                .addrs
                .get(b as usize)
                .map(|a| a.to_string())
                .unwrap_or_default();
            return Ok(match resp {
                RespPhase::Waiting | RespPhase::ReadingHead => {
                    if (b as usize) < ctx.ups.len() {
                        let why = "timed out waiting for the response head";
                        ctx.ups.failed(b as usize, ctx.index, why);
                    }
                    self.obs_timeout(b, true, ctx);
                    ctx.upstream_error(
                        self.peer,
                        format_args!(
                            "upstream {be}: timed out waiting for the response head; answering 504"
                        ),
                    );
                    self.fail(reply::GATEWAY_TIMEOUT)
                }
                RespPhase::ReadingBody => {
                    self.obs_timeout(b, false, ctx);
                    ctx.upstream_error(
                        self.peer,
                        format_args!(
                            "upstream {be}: response body stalled past the read timeout; closing"
                        ),
                    );
                    Step::Close
                }
                _ => {
                    ctx.client_info(
                        peer,
                        format_args!("not reading the response (send timeout); closing"),
                    );
                    Step::Close
                }
            });
        }
        self.refresh_deadline();
        Ok(Step::Continue)
    }
}
