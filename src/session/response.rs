//! The response half of an exchange: the backend's head (parsed and rewritten, with the
//! sticky cookie when one is due), then its body, backend → `uin` → client; and every
//! send to the client during an exchange (`100 Continue`, the head, body pieces).
//!
//! A `101` whose `Upgrade` matches the request turns the session into a tunnel once the
//! head is at the client; a response that is complete at the client ends the exchange.

use super::{ms, Ctx, ReqPhase, RespPhase, Session, State, Step, RESP_MAX};
use crate::body::{Body, FramingError};
use crate::http::{self, reply, ResponseCtx};
use crate::ring::{Op, Side};
use std::io;

impl Session {
    /// Receive (more of) the response head, or the next body piece.
    pub(super) fn submit_up_recv(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        let State::Exchange(ex) = &mut self.state else {
            return Ok(());
        };
        // SAFETY: `uin` is the exchange's heap buffer, untouched until this receive
        // completes (the response half has one operation in flight at most).
        unsafe {
            self.conn.recv(
                &mut ctx.ring,
                Side::Upstream,
                &mut ex.uin[ex.ulen..],
                Op::UpRecv,
            )
        }
    }

    pub(super) fn on_up_recv(&mut self, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        let Some(phase) = self.ex().map(|ex| ex.resp) else {
            return Ok(Step::Continue);
        };
        let b = self.backend as usize;
        match phase {
            RespPhase::ReadingHead => self.on_response_head_bytes(b, res, ctx),
            RespPhase::ReadingBody => self.on_response_body_bytes(b, res, ctx),
            _ => Ok(Step::Continue),
        }
    }

    fn on_response_head_bytes(&mut self, b: usize, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        if res <= 0 {
            if self.can_retry_fresh() {
                return self.retry_fresh(ctx);
            }
            let why = if res == 0 {
                "closed the connection before a complete response head".to_string()
            } else {
                io::Error::from_raw_os_error(-res).to_string()
            };
            ctx.ups.failed(b, ctx.index, &why);
            ctx.upstream_error(
                self.peer,
                format_args!("upstream {}: {why}; answering 502", ctx.ups.addrs[b]),
            );
            return Ok(self.fail(reply::BAD_GATEWAY));
        }
        let id = ctx.ups.ids[b];
        let State::Exchange(ex) = &mut self.state else {
            return Ok(Step::Continue);
        };
        let ex = &mut **ex;
        let route = &ctx.routing.routes[ex.info.route as usize];
        let client_keep = !ctx.shutting && !route.keepalive_timeout.is_zero();
        let at = ctx.now + ms(route.read_timeout);
        let sticky_name = ctx.routing.groups[route.group].sticky_cookie.as_deref();
        ex.ulen += res as usize;
        // Sticky cookie: (re-)pin the client unless it already names this backend.
        let set_cookie = sticky_name
            .filter(|_| ex.info.sticky != Some(id))
            .map(|name| (name, id));
        let rctx = ResponseCtx {
            upgrade: ex.info.upgrade,
            head_method: ex.info.head_method,
            http10: ex.info.minor == 0,
            // An early answer to an unfinished request ends the connection: say so. So
            // does any answer but a 101 to an upgrade request with early frames held.
            client_keep: client_keep
                && ex.info.keep_alive
                && ex.req == ReqPhase::Done
                && !(ex.info.upgrade && ex.cin_pos < ex.cin_len),
        };
        let parsed = http::parse_response_sticky(
            &ex.uin[..ex.ulen],
            RESP_MAX,
            rctx,
            set_cookie,
            &mut ex.out,
        );
        let ri = match parsed {
            Ok(None) => {
                self.submit_up_recv(ctx)?;
                return Ok(Step::Continue);
            }
            Err(http::UpstreamError::BadResponse(why)) => {
                ctx.ups.failed(b, ctx.index, why);
                ctx.upstream_error(
                    self.peer,
                    format_args!("upstream {}: {why}; answering 502", ctx.ups.addrs[b]),
                );
                return Ok(self.fail(reply::BAD_GATEWAY));
            }
            Ok(Some(ri)) => ri,
        };
        // A response head: the backend is alive — unless it says it is not (nginx's
        // http_502 / http_504 conditions).
        if matches!(ri.status, 502 | 504) {
            ctx.ups.failed(b, ctx.index, "answered 502/504");
        } else {
            ctx.ups.succeeded(b, ctx.index);
        }
        if ex.watching {
            // The response head is here: the client watch has done its job.
            ex.watching = false;
            self.conn
                .cancel(&mut ctx.ring, crate::ring::Op::ClientWatch, Side::Client)?;
        }
        let rest = &ex.uin[ri.head_len..ex.ulen];
        ex.resp_body = ri.body;
        if ri.tunnel {
            // Early bytes of the upgraded connection.
            ex.out.extend_from_slice(rest);
            ex.obs.early = rest.len() as u64;
        } else {
            match ex.resp_body.feed(rest) {
                Ok(k) => {
                    ex.out.extend_from_slice(&rest[..k]);
                    ex.upstream_dirty = k < rest.len();
                }
                Err(FramingError(why)) => {
                    ctx.upstream_error(
                        self.peer,
                        format_args!("upstream {}: {why}; answering 502", ctx.ups.addrs[b]),
                    );
                    return Ok(self.fail(reply::BAD_GATEWAY));
                }
            }
        }
        ex.rinfo = Some(ri);
        ex.resp = RespPhase::SendingHead;
        ex.out_sent = 0;
        ex.ulen = 0;
        ex.resp_at = at;
        self.refresh_deadline();
        self.obs_response_head(b, ri.status, ri.tunnel, ctx);
        self.submit_client_send(ctx)
    }

    fn on_response_body_bytes(&mut self, b: usize, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        let Some(ex) = self.ex() else {
            return Ok(Step::Continue);
        };
        let at = ctx.now + ms(ctx.route(ex.info.route).read_timeout);
        if res == 0 && ex.resp_body == Body::Close {
            ex.resp = RespPhase::Done;
            return self.finish_exchange(ctx);
        }
        if res <= 0 {
            let why = if res == 0 {
                "closed the connection in the middle of the response body".to_string()
            } else {
                io::Error::from_raw_os_error(-res).to_string()
            };
            ctx.upstream_error(
                self.peer,
                format_args!(
                    "upstream {}: {why}; closing the client connection",
                    ctx.ups.addrs[b]
                ),
            );
            return Ok(Step::Close);
        }
        ex.ulen = res as usize;
        match ex.resp_body.feed(&ex.uin[..ex.ulen]) {
            Ok(k) => {
                ex.upstream_dirty |= k < ex.ulen;
                ex.ulen = k;
                ex.usent = 0;
                ex.resp = RespPhase::SendingBody;
                ex.resp_at = at;
                self.refresh_deadline();
                self.submit_client_send(ctx)
            }
            Err(FramingError(why)) => {
                ctx.upstream_error(
                    self.peer,
                    format_args!(
                        "upstream {}: {why}; closing the client connection",
                        ctx.ups.addrs[b]
                    ),
                );
                Ok(Step::Close)
            }
        }
    }

    /// Send what is due to the client: `100 Continue`, the response head, a body piece,
    /// or (state `Reply`) the rest of ringway's own answer.
    pub(super) fn submit_client_send(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        match &self.state {
            State::Exchange(ex) => {
                let buf = match (ex.req, ex.resp) {
                    (ReqPhase::SendingContinue, _) => &reply::CONTINUE[ex.usent..],
                    (_, RespPhase::SendingHead) => &ex.out[ex.out_sent..],
                    (_, RespPhase::SendingBody) => &ex.uin[ex.usent..ex.ulen],
                    _ => return Ok(Step::Continue),
                };
                // SAFETY: `out` and `uin` are the exchange's heap buffers, not written
                // until this send completes (one client send in flight at most);
                // `CONTINUE` is static.
                unsafe {
                    self.conn
                        .send(&mut ctx.ring, Side::Client, buf, Op::ClientSend)?
                };
            }
            State::Reply { msg, sent, .. } => {
                let rest: &'static [u8] = &msg[*sent..];
                self.conn.send_static(&mut ctx.ring, rest)?;
            }
            _ => {}
        }
        Ok(Step::Continue)
    }

    pub(super) fn on_client_send(&mut self, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        if res < 0 {
            return Ok(Step::Close);
        }
        let n = res as usize;
        let ex = match &mut self.state {
            State::Reply { msg, sent, .. } => {
                *sent += n;
                if *sent < msg.len() {
                    return self.submit_client_send(ctx);
                }
                return self.start_linger(ctx);
            }
            State::Exchange(ex) => ex,
            _ => return Ok(Step::Continue),
        };
        let at = ctx.now + ms(ctx.routing.routes[ex.info.route as usize].read_timeout);
        ex.obs.sent += n as u64;
        if ex.req == ReqPhase::SendingContinue {
            ex.usent += n;
            if ex.usent < reply::CONTINUE.len() {
                return self.submit_client_send(ctx);
            }
            ex.usent = 0;
            ex.req = ReqPhase::SendingHead;
            return self.submit_up_send(ctx);
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
            _ => return Ok(Step::Continue),
        };
        if !sent_all {
            ex.resp_at = at;
            return self.submit_client_send(ctx);
        }
        if ex.rinfo.is_some_and(|r| r.tunnel) {
            return self.after_upgrade(ctx);
        }
        if ex.resp_body.done() {
            ex.resp = RespPhase::Done;
            return self.finish_exchange(ctx);
        }
        ex.resp = RespPhase::ReadingBody;
        ex.ulen = 0;
        ex.resp_at = at;
        self.refresh_deadline();
        self.submit_up_recv(ctx)?;
        Ok(Step::Continue)
    }
}
