//! A worker's HTTP/1.1 path: request heads, then one [`Exchange`] per request.
//!
//! An exchange has two halves that run side by side, each with at most one operation in
//! flight: the request half (connect or take a pooled upstream, `100 Continue` when asked,
//! send the rewritten head, then stream the body: client → `cin` → backend) and the
//! response half (read the head, send the rewritten head, then stream the body: backend →
//! `uin` → client). Bodies are forwarded verbatim and never held whole; their framing
//! ([`crate::body::Body`]) only says where each message ends.
//!
//! When both halves are done, the upstream connection goes back to the keep-alive pool
//! (when the backend allows it) and the client connection back to `Head` — with any
//! pipelined bytes already received, which are parsed at once, so pipelined requests are
//! answered one after another, in order. A `101` with a matching `Upgrade` turns the
//! session into a tunnel; any other answer leaves the client connection speaking HTTP.
//!
//! Errors before the response head has gone out are answered (400, 408, 417, 431, 502,
//! 504); after it, the only honest signal left is closing the connection.

use super::*;
use crate::body::{Body, FramingError};
use crate::http::{ResponseCtx, ResponseInfo};
use crate::tunnel::Tunnel;

impl Exchange {
    fn fresh() -> Box<Exchange> {
        Box::new(Exchange {
            req: ReqPhase::Connecting,
            resp: RespPhase::Waiting,
            attempts: 0,
            reused: false,
            replayable: false,
            info: http::RequestInfo {
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
        })
    }
}

impl Worker {
    fn ex(&mut self, idx: u32) -> Option<&mut Exchange> {
        match &mut self.sess(idx).state {
            State::Exchange(ex) => Some(ex),
            _ => None,
        }
    }

    /// Set the session's deadline to the earlier of its two halves' deadlines.
    fn refresh_deadline(&mut self, idx: u32) {
        let Some(ex) = self.ex(idx) else { return };
        let at = match (ex.req_at, ex.resp_at) {
            (0, r) => r,
            (q, 0) => q,
            (q, r) => q.min(r),
        };
        if at == 0 {
            self.clear_deadline(idx);
        } else {
            self.set_deadline(idx, at);
        }
    }

    // ----- request head -------------------------------------------------------------

    pub(super) fn submit_head_recv(&mut self, idx: u32) -> io::Result<()> {
        let tok = self.tok(Op::HeadRecv, Side::Client, idx);
        let s = self.slab[idx as usize].s.as_mut().expect("live");
        let State::Head(h) = &mut s.state else {
            return Ok(());
        };
        // The buffer is the session's heap memory; the session (and so the buffer) lives
        // until this receive has completed.
        grow(&mut h.buf, h.len, self.cfg.max_head);
        self.ring.recv(s.client, &mut h.buf[h.len..], tok)?;
        s.inflight += 1;
        Ok(())
    }

    pub(super) fn on_head_recv(&mut self, idx: u32, res: i32) -> io::Result<()> {
        let head_timeout = ms(self.cfg.head_timeout);
        let now = self.now;
        let s = self.sess(idx);
        let admission = s.admission;
        let State::Head(h) = &mut s.state else {
            return Ok(());
        };
        if res <= 0 {
            // Closed (or failed) before a whole head: nothing to answer. Between two
            // requests of a kept-alive connection this is the normal end.
            return self.close_session(idx);
        }
        h.len += res as usize;
        if h.idle {
            // The first byte of the next request: the head timeout applies from now.
            h.idle = false;
            s.deadline = 0;
            self.set_deadline(idx, now + head_timeout);
        }
        if admission == Admission::Reserve {
            return self.reply(idx, reply::UNAVAILABLE);
        }
        self.parse_head(idx)
    }

    /// Parse the head in the session's buffer: answer an error, wait for more, or start
    /// the exchange.
    fn parse_head(&mut self, idx: u32) -> io::Result<()> {
        let max = self.cfg.max_head;
        let s = self.slab[idx as usize].s.as_mut().expect("live");
        let peer = s.peer;
        let State::Head(h) = &mut s.state else {
            return Ok(());
        };
        let mut out = std::mem::take(&mut self.head_scratch);
        let parsed = http::parse_request_routed(&h.buf[..h.len], max, peer, &self.rules, &mut out);
        let r = match parsed {
            Ok(None) => self.submit_head_recv(idx),
            Err(e) => {
                let (msg, why) = match e {
                    ClientError::TooLarge => (reply::TOO_LARGE, "request head too large"),
                    ClientError::Expectation => {
                        (reply::EXPECTATION_FAILED, "Expect other than 100-continue")
                    }
                    ClientError::Malformed(w) => (reply::BAD_REQUEST, w),
                };
                self.log(format_args!(
                    "client {peer}: {why}; answering {}",
                    &String::from_utf8_lossy(&msg[9..12])
                ));
                self.reply(idx, msg)
            }
            Ok(Some(info)) => self.begin_exchange(idx, info, &out),
        };
        self.head_scratch = out;
        r
    }

    /// A complete request head: build the exchange (the head's buffer becomes its client
    /// buffer), check the body bytes that came with the head, pick a backend.
    fn begin_exchange(&mut self, idx: u32, info: http::RequestInfo, head: &[u8]) -> io::Result<()> {
        let mut ex = self.spare.pop().unwrap_or_else(Exchange::fresh);
        let s = self.sess(idx);
        let peer = s.peer;
        let State::Head(h) = std::mem::replace(&mut s.state, State::Linger { keep: None }) else {
            return Ok(());
        };
        {
            let ex = &mut *ex;
            ex.req = ReqPhase::Connecting;
            ex.resp = RespPhase::Waiting;
            ex.attempts = 0;
            ex.reused = false;
            ex.info = info;
            ex.cin = h.buf;
            ex.cin_len = h.len;
            ex.cin_pos = info.head_len;
            ex.fwd_from = 0;
            ex.fwd_to = 0;
            ex.req_body = info.body;
            ex.head.clear();
            ex.head.extend_from_slice(head);
            ex.head_sent = 0;
            ex.ulen = 0;
            ex.usent = 0;
            ex.rinfo = None;
            ex.resp_body = Body::None;
            ex.upstream_dirty = false;
            ex.out.clear();
            ex.out_sent = 0;
            ex.req_at = 0;
            ex.resp_at = 0;
        }
        // Body bytes that arrived with the head go out with it; the rest (a pipelined
        // request) stays in the buffer for later.
        let fed = ex.req_body.feed(&ex.cin[ex.cin_pos..ex.cin_len]);
        self.sess(idx).state = State::Exchange(ex);
        let k = match fed {
            Ok(k) => k,
            Err(FramingError(why)) => {
                self.log(format_args!("client {peer}: {why}; answering 400"));
                return self.reply(idx, reply::BAD_REQUEST);
            }
        };
        let ex = self.ex(idx).expect("exchange");
        let (from, to) = (ex.cin_pos, ex.cin_pos + k);
        let ex = &mut *ex;
        ex.head.extend_from_slice(&ex.cin[from..to]);
        ex.cin_pos = to;
        if ex.cin_pos == ex.cin_len {
            ex.cin_pos = 0;
            ex.cin_len = 0;
        }
        // The whole request is in `head`: it can be sent again on a fresh connection if
        // a pooled one turns out to have been closed by the backend.
        ex.replayable = ex.req_body.done();
        self.clear_deadline(idx);
        let b = self.ups.pick_for(&mut self.rr, peer, &info);
        if let Some(fd) = self.pool_take(b) {
            self.set_backend(idx, b);
            self.sess(idx).upstream = fd;
            let ex = self.ex(idx).expect("exchange");
            ex.reused = true;
            ex.attempts = 1;
            self.bctr(b).requests_total.fetch_add(1, Ordering::Relaxed);
            return self.upstream_ready(idx);
        }
        self.start_connect(idx, b)
    }

    // ----- upstream connection --------------------------------------------------------

    /// Count the session's exchange against backend `b` (least-conn), instead of the one
    /// it had.
    fn set_backend(&mut self, idx: u32, b: usize) {
        self.bctr(b).active.fetch_add(1, Ordering::Relaxed);
        let prev = self.sess(idx).backend;
        if prev != NO_BACKEND {
            self.bctr(prev as usize)
                .active
                .fetch_sub(1, Ordering::Relaxed);
        }
        self.sess(idx).backend = b as u16;
    }

    /// The exchange no longer uses a backend.
    fn unset_backend(&mut self, idx: u32) {
        let prev = self.sess(idx).backend;
        if prev != NO_BACKEND {
            self.bctr(prev as usize)
                .active
                .fetch_sub(1, Ordering::Relaxed);
        }
        self.sess(idx).backend = NO_BACKEND;
    }

    fn start_connect(&mut self, idx: u32, b: usize) -> io::Result<()> {
        self.set_backend(idx, b);
        let v6 = self.ups.addrs[b].is_ipv6();
        if let Some(ex) = self.ex(idx) {
            ex.attempts += 1;
            ex.req = ReqPhase::Connecting;
        }
        let fd = match sys::tcp_socket(v6) {
            Ok(fd) => fd,
            Err(e) => {
                self.log(format_args!(
                    "cannot create an upstream socket: {e} (raise `ulimit -n`); answering 502"
                ));
                return self.reply(idx, reply::BAD_GATEWAY);
            }
        };
        sys::set_nodelay(fd);
        if !self.cfg.upstream_bind.is_empty() {
            // Rotate sources per backend: a shared cursor would advance in step with round
            // robin and give each backend only some of the sources.
            let cursor = &mut self.bind_rr[b];
            let src = self.cfg.upstream_bind[*cursor % self.cfg.upstream_bind.len()];
            *cursor = cursor.wrapping_add(1);
            if let Err(e) = sys::bind_source(fd, src) {
                self.log(format_args!("cannot bind an upstream socket to {src}: {e}; connecting from the default address"));
            }
        }
        self.sess(idx).upstream = fd;
        let t1 = self.tok(Op::Connect, Side::Upstream, idx);
        let t2 = self.tok(Op::ConnectTimeout, Side::Upstream, idx);
        self.ring
            .connect_with_timeout(fd, &self.backend_addrs[b], &self.connect_ts, t1, t2)?;
        self.sess(idx).inflight += 2;
        Ok(())
    }

    pub(super) fn on_connect(&mut self, idx: u32, res: i32) -> io::Result<()> {
        if self.ex(idx).map(|ex| ex.req) != Some(ReqPhase::Connecting) {
            return Ok(());
        }
        let s = self.sess(idx);
        let b = s.backend as usize;
        if res < 0 {
            let timed_out = -res == libc::ECANCELED || -res == libc::ETIMEDOUT;
            let fd = s.upstream;
            s.upstream = -1;
            sys::close(fd);
            let ex = self.ex(idx).expect("exchange");
            let attempts = ex.attempts;
            self.bctr(b).failures_total.fetch_add(1, Ordering::Relaxed);
            let be_addr = self.ups.addrs[b];
            let why = if timed_out {
                "connect timed out".to_string()
            } else if -res == libc::EADDRNOTAVAIL {
                "no free local port toward it (not a backend failure: add source addresses with --upstream-bind or widen ip_local_port_range)".to_string()
            } else {
                io::Error::from_raw_os_error(-res).to_string()
            };
            if (attempts as usize) < 2 && self.ups.len() > 1 {
                let next = self.ups.next_after(b);
                self.log(format_args!(
                    "upstream {}: {why}; trying {}",
                    be_addr, self.ups.addrs[next]
                ));
                return self.start_connect(idx, next);
            }
            self.log(format_args!(
                "upstream {}: {why}; answering {}",
                be_addr,
                if timed_out { 504 } else { 502 }
            ));
            return self.reply(
                idx,
                if timed_out {
                    reply::GATEWAY_TIMEOUT
                } else {
                    reply::BAD_GATEWAY
                },
            );
        }
        self.bctr(b).requests_total.fetch_add(1, Ordering::Relaxed);
        self.upstream_ready(idx)
    }

    /// An upstream connection is ready (fresh or pooled): answer `Expect: 100-continue`
    /// now that the backend is reachable, then send the head.
    fn upstream_ready(&mut self, idx: u32) -> io::Result<()> {
        let at = self.now + ms(self.cfg.read_timeout);
        let ex = self.ex(idx).expect("exchange");
        ex.resp_at = at;
        let cont = ex.info.expect_continue && !ex.req_body.done();
        if cont {
            ex.req = ReqPhase::SendingContinue;
            ex.usent = 0;
        } else {
            ex.req = ReqPhase::SendingHead;
        }
        self.refresh_deadline(idx);
        if cont {
            self.submit_client_send(idx)
        } else {
            self.submit_up_send(idx)
        }
    }

    /// A pooled connection failed before any byte of the answer, and the whole request is
    /// still at hand: the backend closed it while idle, as our request crossed its close.
    /// An idempotent request is sent again, once, on a new connection (RFC 9110 §9.2.2).
    fn can_retry_fresh(&mut self, idx: u32) -> bool {
        self.ex(idx).is_some_and(|ex| {
            ex.reused && ex.replayable && ex.info.idempotent && ex.ulen == 0 && ex.attempts < 3
        })
    }

    fn retry_fresh(&mut self, idx: u32) -> io::Result<()> {
        let s = self.sess(idx);
        let fd = s.upstream;
        s.upstream = -1;
        sys::close(fd);
        let b = s.backend as usize;
        // Counted once, when the pooled connection was taken.
        self.bctr(b).requests_total.fetch_sub(1, Ordering::Relaxed);
        let ex = self.ex(idx).expect("exchange");
        ex.reused = false;
        ex.head_sent = 0;
        ex.resp = RespPhase::Waiting;
        ex.ulen = 0;
        ex.resp_at = 0;
        self.refresh_deadline(idx);
        self.start_connect(idx, b)
    }

    // ----- request half ---------------------------------------------------------------

    fn submit_up_send(&mut self, idx: u32) -> io::Result<()> {
        let tok = self.tok(Op::UpSend, Side::Upstream, idx);
        let s = self.slab[idx as usize].s.as_mut().expect("live");
        let State::Exchange(ex) = &s.state else {
            return Ok(());
        };
        let buf = match ex.req {
            ReqPhase::SendingHead => &ex.head[ex.head_sent..],
            ReqPhase::SendingBody => &ex.cin[ex.fwd_from..ex.fwd_to],
            _ => return Ok(()),
        };
        // The exchange's heap buffers live until this send has completed.
        self.ring.send(s.upstream, buf, tok)?;
        s.inflight += 1;
        Ok(())
    }

    pub(super) fn on_up_send(&mut self, idx: u32, res: i32) -> io::Result<()> {
        let Some(phase) = self.ex(idx).map(|ex| ex.req) else {
            return Ok(());
        };
        if !matches!(phase, ReqPhase::SendingHead | ReqPhase::SendingBody) {
            return Ok(());
        }
        if res < 0 {
            if phase == ReqPhase::SendingHead && self.can_retry_fresh(idx) {
                return self.retry_fresh(idx);
            }
            if phase == ReqPhase::SendingBody {
                // A backend that answers early (413, say) may stop reading the body; its
                // answer may be on its way. Stop the request half, let the response half
                // finish; the client connection closes after it.
                let read_at = self.now + ms(self.cfg.read_timeout);
                let ex = self.ex(idx).expect("exchange");
                ex.req = ReqPhase::Aborted;
                ex.req_at = 0;
                if matches!(ex.resp, RespPhase::Waiting | RespPhase::ReadingHead) {
                    ex.resp_at = read_at;
                }
                self.refresh_deadline(idx);
                return Ok(());
            }
            let b = self.sess(idx).backend as usize;
            self.log(format_args!(
                "upstream {}: sending the request failed: {}; answering 502",
                self.ups.addrs[b],
                io::Error::from_raw_os_error(-res)
            ));
            return self.fail(idx, reply::BAD_GATEWAY);
        }
        let body_at = self.now + ms(self.cfg.body_timeout);
        let read_at = self.now + ms(self.cfg.read_timeout);
        let ex = self.ex(idx).expect("exchange");
        let start_resp;
        if phase == ReqPhase::SendingHead {
            ex.head_sent += res as usize;
            if ex.head_sent < ex.head.len() {
                return self.submit_up_send(idx);
            }
            start_resp = ex.resp == RespPhase::Waiting;
            if start_resp {
                ex.resp = RespPhase::ReadingHead;
                ex.ulen = 0;
            }
        } else {
            ex.fwd_from += res as usize;
            if ex.fwd_from < ex.fwd_to {
                return self.submit_up_send(idx);
            }
            ex.cin_pos = ex.fwd_to;
            if ex.cin_pos == ex.cin_len {
                ex.cin_pos = 0;
                ex.cin_len = 0;
            }
            start_resp = false;
        }
        let more_body = !ex.req_body.done();
        let waiting_head = matches!(ex.resp, RespPhase::Waiting | RespPhase::ReadingHead);
        if more_body {
            ex.req = ReqPhase::ReadingBody;
            ex.req_at = body_at;
            if waiting_head {
                // The read timeout starts once the whole request is with the backend.
                ex.resp_at = 0;
            }
        } else {
            ex.req = ReqPhase::Done;
            ex.req_at = 0;
            if waiting_head {
                ex.resp_at = read_at;
            }
        }
        self.refresh_deadline(idx);
        if start_resp {
            self.submit_up_recv(idx)?;
        }
        if more_body {
            self.submit_body_recv(idx)?;
        }
        Ok(())
    }

    fn submit_body_recv(&mut self, idx: u32) -> io::Result<()> {
        let tok = self.tok(Op::BodyRecv, Side::Client, idx);
        let s = self.slab[idx as usize].s.as_mut().expect("live");
        let State::Exchange(ex) = &mut s.state else {
            return Ok(());
        };
        // Everything received so far went upstream, so the buffer starts over; a head
        // buffer is small, so streaming gets a larger one (kept for the connection).
        debug_assert_eq!(ex.cin_pos, ex.cin_len);
        ex.cin_pos = 0;
        ex.cin_len = 0;
        if ex.cin.len() < BODY_BUF {
            ex.cin = vec![0u8; BODY_BUF].into_boxed_slice();
        }
        self.ring.recv(s.client, &mut ex.cin[..], tok)?;
        s.inflight += 1;
        Ok(())
    }

    pub(super) fn on_body_recv(&mut self, idx: u32, res: i32) -> io::Result<()> {
        if self.ex(idx).map(|ex| ex.req) != Some(ReqPhase::ReadingBody) {
            return Ok(());
        }
        let peer = self.sess(idx).peer;
        if res <= 0 {
            self.log(format_args!(
                "client {peer}: closed the connection in the middle of the request body"
            ));
            return self.close_session(idx);
        }
        let body_at = self.now + ms(self.cfg.body_timeout);
        let ex = self.ex(idx).expect("exchange");
        ex.cin_len += res as usize;
        match ex.req_body.feed(&ex.cin[ex.cin_pos..ex.cin_len]) {
            Ok(k) => {
                ex.fwd_from = ex.cin_pos;
                ex.fwd_to = ex.cin_pos + k;
                ex.req = ReqPhase::SendingBody;
                ex.req_at = body_at;
                self.refresh_deadline(idx);
                self.submit_up_send(idx)
            }
            Err(FramingError(why)) => {
                self.log(format_args!("client {peer}: {why}; answering 400"));
                self.fail(idx, reply::BAD_REQUEST)
            }
        }
    }

    // ----- response half --------------------------------------------------------------

    fn submit_up_recv(&mut self, idx: u32) -> io::Result<()> {
        let tok = self.tok(Op::UpRecv, Side::Upstream, idx);
        let s = self.slab[idx as usize].s.as_mut().expect("live");
        let fd = s.upstream;
        let State::Exchange(ex) = &mut s.state else {
            return Ok(());
        };
        // Exchange-owned heap buffer, alive until this receive completes.
        self.ring.recv(fd, &mut ex.uin[ex.ulen..], tok)?;
        s.inflight += 1;
        Ok(())
    }

    pub(super) fn on_up_recv(&mut self, idx: u32, res: i32) -> io::Result<()> {
        let Some(phase) = self.ex(idx).map(|ex| ex.resp) else {
            return Ok(());
        };
        let b = self.sess(idx).backend as usize;
        match phase {
            RespPhase::ReadingHead => self.on_response_head_bytes(idx, b, res),
            RespPhase::ReadingBody => self.on_response_body_bytes(idx, b, res),
            _ => Ok(()),
        }
    }

    fn on_response_head_bytes(&mut self, idx: u32, b: usize, res: i32) -> io::Result<()> {
        if res <= 0 {
            if self.can_retry_fresh(idx) {
                return self.retry_fresh(idx);
            }
            let why = if res == 0 {
                "closed the connection before a complete response head".to_string()
            } else {
                io::Error::from_raw_os_error(-res).to_string()
            };
            self.log(format_args!(
                "upstream {}: {why}; answering 502",
                self.ups.addrs[b]
            ));
            return self.fail(idx, reply::BAD_GATEWAY);
        }
        let id = self.ups.ids[b];
        let client_keep = !self.shutting && !self.cfg.keepalive_timeout.is_zero();
        let at = self.now + ms(self.cfg.read_timeout);
        let sticky_name = self.cfg.sticky_cookie.as_deref();
        let s = self.slab[idx as usize].s.as_mut().expect("live");
        let State::Exchange(ex) = &mut s.state else {
            return Ok(());
        };
        let ex = &mut **ex;
        ex.ulen += res as usize;
        // Sticky cookie: (re-)pin the client unless it already names this backend.
        let set_cookie = sticky_name
            .filter(|_| ex.info.sticky != Some(id))
            .map(|name| (name, id));
        let ctx = ResponseCtx {
            upgrade: ex.info.upgrade,
            head_method: ex.info.head_method,
            http10: ex.info.minor == 0,
            // An early answer to an unfinished request ends the connection: say so.
            client_keep: client_keep && ex.info.keep_alive && ex.req == ReqPhase::Done,
        };
        let parsed =
            http::parse_response_sticky(&ex.uin[..ex.ulen], RESP_MAX, ctx, set_cookie, &mut ex.out);
        let ri: ResponseInfo = match parsed {
            Ok(None) => return self.submit_up_recv(idx),
            Err(http::UpstreamError::BadResponse(why)) => {
                self.log(format_args!(
                    "upstream {}: {why}; answering 502",
                    self.ups.addrs[b]
                ));
                return self.fail(idx, reply::BAD_GATEWAY);
            }
            Ok(Some(ri)) => ri,
        };
        let rest = &ex.uin[ri.head_len..ex.ulen];
        ex.resp_body = ri.body;
        if ri.tunnel {
            // Early bytes of the upgraded connection.
            ex.out.extend_from_slice(rest);
        } else {
            match ex.resp_body.feed(rest) {
                Ok(k) => {
                    ex.out.extend_from_slice(&rest[..k]);
                    ex.upstream_dirty = k < rest.len();
                }
                Err(FramingError(why)) => {
                    self.log(format_args!(
                        "upstream {}: {why}; answering 502",
                        self.ups.addrs[b]
                    ));
                    return self.fail(idx, reply::BAD_GATEWAY);
                }
            }
        }
        ex.rinfo = Some(ri);
        ex.resp = RespPhase::SendingHead;
        ex.out_sent = 0;
        ex.ulen = 0;
        ex.resp_at = at;
        self.refresh_deadline(idx);
        self.submit_client_send(idx)
    }

    fn on_response_body_bytes(&mut self, idx: u32, b: usize, res: i32) -> io::Result<()> {
        let at = self.now + ms(self.cfg.read_timeout);
        let ex = self.ex(idx).expect("exchange");
        if res == 0 && ex.resp_body == Body::Close {
            ex.resp = RespPhase::Done;
            return self.finish_exchange(idx);
        }
        if res <= 0 {
            let why = if res == 0 {
                "closed the connection in the middle of the response body".to_string()
            } else {
                io::Error::from_raw_os_error(-res).to_string()
            };
            self.log(format_args!(
                "upstream {}: {why}; closing the client connection",
                self.ups.addrs[b]
            ));
            return self.close_session(idx);
        }
        ex.ulen = res as usize;
        match ex.resp_body.feed(&ex.uin[..ex.ulen]) {
            Ok(k) => {
                ex.upstream_dirty |= k < ex.ulen;
                ex.ulen = k;
                ex.usent = 0;
                ex.resp = RespPhase::SendingBody;
                ex.resp_at = at;
                self.refresh_deadline(idx);
                self.submit_client_send(idx)
            }
            Err(FramingError(why)) => {
                self.log(format_args!(
                    "upstream {}: {why}; closing the client connection",
                    self.ups.addrs[b]
                ));
                self.close_session(idx)
            }
        }
    }

    pub(super) fn submit_client_send(&mut self, idx: u32) -> io::Result<()> {
        let tok = self.tok(Op::ClientSend, Side::Client, idx);
        let s = self.slab[idx as usize].s.as_mut().expect("live");
        let fd = s.client;
        match &s.state {
            State::Exchange(ex) => {
                let buf = match (ex.req, ex.resp) {
                    (ReqPhase::SendingContinue, _) => &reply::CONTINUE[ex.usent..],
                    (_, RespPhase::SendingHead) => &ex.out[ex.out_sent..],
                    (_, RespPhase::SendingBody) => &ex.uin[ex.usent..ex.ulen],
                    _ => return Ok(()),
                };
                self.ring.send(fd, buf, tok)?
            }
            State::Reply { msg, sent, .. } => self.ring.send(fd, &msg[*sent..], tok)?,
            _ => return Ok(()),
        }
        s.inflight += 1;
        Ok(())
    }

    pub(super) fn on_client_send(&mut self, idx: u32, res: i32) -> io::Result<()> {
        if res < 0 {
            return self.close_session(idx);
        }
        let n = res as usize;
        let at = self.now + ms(self.cfg.read_timeout);
        let s = self.sess(idx);
        let ex = match &mut s.state {
            State::Reply { msg, sent, .. } => {
                *sent += n;
                if *sent < msg.len() {
                    return self.submit_client_send(idx);
                }
                return self.start_linger(idx);
            }
            State::Exchange(ex) => ex,
            _ => return Ok(()),
        };
        if ex.req == ReqPhase::SendingContinue {
            ex.usent += n;
            if ex.usent < reply::CONTINUE.len() {
                return self.submit_client_send(idx);
            }
            ex.usent = 0;
            ex.req = ReqPhase::SendingHead;
            return self.submit_up_send(idx);
        }
        let sent_all = match ex.resp {
            RespPhase::SendingHead => {
                ex.out_sent += n;
                ex.out_sent >= ex.out.len()
            }
            RespPhase::SendingBody => {
                ex.usent += n;
                ex.usent >= ex.ulen
            }
            _ => return Ok(()),
        };
        if !sent_all {
            ex.resp_at = at;
            return self.submit_client_send(idx);
        }
        if ex.rinfo.is_some_and(|r| r.tunnel) {
            return self.start_tunnel(idx);
        }
        if ex.resp_body.done() {
            ex.resp = RespPhase::Done;
            return self.finish_exchange(idx);
        }
        ex.resp = RespPhase::ReadingBody;
        ex.ulen = 0;
        ex.resp_at = at;
        self.refresh_deadline(idx);
        self.submit_up_recv(idx)
    }

    // ----- the end of an exchange -------------------------------------------------------

    /// The response is complete at the client. Reuse what can be reused.
    fn finish_exchange(&mut self, idx: u32) -> io::Result<()> {
        let Some(ex) = self.ex(idx) else {
            return Ok(());
        };
        let ri = ex.rinfo.expect("response parsed");
        if ex.req != ReqPhase::Done {
            // The backend answered before the whole request body arrived (an early 413,
            // say): the rest of the body would be taken for a next request. Close.
            return self.close_after_response(idx);
        }
        let reuse = ri.reusable && !ex.upstream_dirty && self.cfg.keepalive > 0 && !self.shutting;
        let s = self.sess(idx);
        let (up, b) = (s.upstream, s.backend as usize);
        s.upstream = -1;
        self.unset_backend(idx);
        if reuse {
            self.pool_put(b, up)?;
        } else {
            sys::close(up);
        }
        if !ri.client_keep {
            return self.close_after_response(idx);
        }
        // Back to reading heads, with whatever pipelined bytes are already here.
        let head_cap = HEAD_FIRST.max(self.cfg.max_head);
        let s = self.sess(idx);
        let State::Exchange(mut ex) = std::mem::replace(&mut s.state, State::Linger { keep: None })
        else {
            return Ok(());
        };
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
        s.state = State::Head(Head {
            buf,
            len,
            idle: len == 0,
        });
        s.deadline = 0;
        if self.spare.len() < SPARE_MAX {
            self.spare.push(ex);
        }
        if len > 0 {
            let at = self.now + ms(self.cfg.head_timeout);
            self.set_deadline(idx, at);
            self.parse_head(idx)
        } else {
            let at = self.now + ms(self.cfg.keepalive_timeout);
            self.set_deadline(idx, at);
            self.submit_head_recv(idx)
        }
    }

    /// The response is complete and the client connection ends: drop the upstream, shut
    /// our write half, and drain the client until it closes (≤ 2 s), so that closing does
    /// not reset the connection while the client still has request bytes we never read —
    /// a reset can destroy the response's tail at the client.
    fn close_after_response(&mut self, idx: u32) -> io::Result<()> {
        let s = self.sess(idx);
        let (client, upstream) = (s.client, s.upstream);
        if upstream >= 0 {
            sys::shutdown(upstream, libc::SHUT_RDWR);
        }
        self.cancel_armed(idx, true)?;
        let s = self.sess(idx);
        let old = std::mem::replace(&mut s.state, State::Linger { keep: None });
        if let State::Linger { keep } = &mut s.state {
            // Cancelled operations may still point into the exchange's buffers.
            *keep = Some(Box::new(old));
        }
        sys::shutdown_write(client);
        s.deadline = 0;
        let at = self.now + ms(LINGER);
        self.set_deadline(idx, at);
        self.submit_linger_recv(idx)
    }

    /// The `101` is at the client: the session becomes a tunnel.
    fn start_tunnel(&mut self, idx: u32) -> io::Result<()> {
        let idle_ms = self.cfg.tunnel_idle_timeout.map(ms).unwrap_or(0);
        let s = self.sess(idx);
        let b = s.backend as usize;
        let State::Exchange(mut ex) = std::mem::replace(&mut s.state, State::Linger { keep: None })
        else {
            return Ok(());
        };
        let mut t = Tunnel::new();
        t.dirs[0].state = DirState::Open;
        t.dirs[1].state = DirState::Open;
        t.upgraded = true;
        t.idle_ms = idle_ms;
        s.state = State::Tunnel(t);
        s.deadline = 0;
        ex.cin = Box::default();
        if self.spare.len() < SPARE_MAX {
            self.spare.push(ex);
        }
        self.tunnels += 1;
        let be = self.bctr(b);
        be.tunnels.fetch_add(1, Ordering::Relaxed);
        be.tunnels_total.fetch_add(1, Ordering::Relaxed);
        if idle_ms != 0 {
            let at = self.now + idle_ms;
            self.set_deadline(idx, at);
        }
        self.arm_source(idx, 1)?;
        self.arm_source(idx, 0)
    }

    /// An error during an exchange: answer `msg` if nothing of the response has reached
    /// the client yet, else close.
    fn fail(&mut self, idx: u32, msg: &'static [u8]) -> io::Result<()> {
        let started = self.ex(idx).is_none_or(|ex| {
            ex.req == ReqPhase::SendingContinue
                || !matches!(ex.resp, RespPhase::Waiting | RespPhase::ReadingHead)
        });
        if started {
            self.close_session(idx)
        } else {
            self.reply(idx, msg)
        }
    }

    /// The session's deadline passed during an exchange: find which half is late.
    pub(super) fn exchange_timeout(&mut self, idx: u32) -> io::Result<()> {
        let now = self.now;
        let peer = self.sess(idx).peer;
        let b = self.sess(idx).backend;
        let Some(ex) = self.ex(idx) else {
            return Ok(());
        };
        let (req_at, resp_at, resp) = (ex.req_at, ex.resp_at, ex.resp);
        if req_at != 0 && now >= req_at {
            self.log(format_args!(
                "client {peer}: request body timeout; answering 408 or closing"
            ));
            return self.fail(idx, reply::REQUEST_TIMEOUT);
        }
        if resp_at != 0 && now >= resp_at {
            let be = self
                .ups
                .addrs
                .get(b as usize)
                .map(|a| a.to_string())
                .unwrap_or_default();
            return match resp {
                RespPhase::Waiting | RespPhase::ReadingHead => {
                    self.log(format_args!(
                        "upstream {be}: timed out waiting for the response head; answering 504"
                    ));
                    self.fail(idx, reply::GATEWAY_TIMEOUT)
                }
                RespPhase::ReadingBody => {
                    self.log(format_args!(
                        "upstream {be}: response body stalled past the read timeout; closing"
                    ));
                    self.close_session(idx)
                }
                _ => {
                    self.log(format_args!(
                        "client {peer}: not reading the response (send timeout); closing"
                    ));
                    self.close_session(idx)
                }
            };
        }
        self.refresh_deadline(idx);
        Ok(())
    }
}
