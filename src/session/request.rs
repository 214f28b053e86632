//! The request half of an exchange: the rewritten head (with the body bytes that came
//! with it) to the backend, then the rest of the body, client → `cin` → backend, one
//! piece of at most [`BODY_BUF`] bytes at a time.
//!
//! A backend that stops reading the body (it answered early, a 413 say) aborts the
//! request half only: the response half finishes, then the client connection closes.

use super::{ms, Ctx, ReqPhase, RespPhase, Session, State, Step, BODY_BUF};
use crate::body::FramingError;
use crate::http::reply;
use crate::ring::{Op, Side};
use std::io;

impl Session {
    /// Send the next piece of the request (head, or body bytes) to the backend.
    pub(super) fn submit_up_send(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        let State::Exchange(ex) = &self.state else {
            return Ok(Step::Continue);
        };
        let buf = match ex.req {
            ReqPhase::SendingHead => &ex.head[ex.head_sent..],
            ReqPhase::SendingBody => &ex.cin[ex.fwd_from..ex.fwd_to],
            ReqPhase::SendingEarly => &ex.cin[ex.cin_pos..ex.cin_len],
            _ => return Ok(Step::Continue),
        };
        // SAFETY: the exchange's heap buffers are neither written nor freed until this
        // send has completed (the request half has one operation in flight at most, and
        // the session is freed only with nothing in flight).
        unsafe {
            self.conn
                .send(&mut ctx.ring, Side::Upstream, buf, Op::UpSend)?
        };
        Ok(Step::Continue)
    }

    pub(super) fn on_up_send(&mut self, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        let Some(phase) = self.ex().map(|ex| ex.req) else {
            return Ok(Step::Continue);
        };
        if phase == ReqPhase::SendingEarly {
            return self.on_early_sent(res, ctx);
        }
        if !matches!(phase, ReqPhase::SendingHead | ReqPhase::SendingBody) {
            return Ok(Step::Continue);
        }
        if res < 0 {
            return self.up_send_failed(phase, res, ctx);
        }
        let Some(ex) = self.ex() else {
            return Ok(Step::Continue);
        };
        let route = ctx.route(ex.info.route);
        let body_at = ctx.now + ms(route.body_timeout);
        let read_at = ctx.now + ms(route.read_timeout);
        let start_resp;
        if phase == ReqPhase::SendingHead {
            ex.head_sent += res as usize;
            if ex.head_sent < ex.head.len() {
                return self.submit_up_send(ctx);
            }
            start_resp = ex.resp == RespPhase::Waiting;
            if start_resp {
                ex.resp = RespPhase::ReadingHead;
                ex.ulen = 0;
            }
        } else {
            ex.fwd_from += res as usize;
            if ex.fwd_from < ex.fwd_to {
                return self.submit_up_send(ctx);
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
        self.refresh_deadline();
        if start_resp {
            self.submit_up_recv(ctx)?;
        }
        if more_body {
            return self.submit_body_recv(ctx);
        }
        Ok(Step::Continue)
    }

    fn up_send_failed(&mut self, phase: ReqPhase, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        if phase == ReqPhase::SendingHead && self.can_retry_fresh() {
            return self.retry_fresh(ctx);
        }
        if phase == ReqPhase::SendingBody {
            // A backend that answers early (413, say) may stop reading the body; its
            // answer may be on its way. Stop the request half, let the response half
            // finish; the client connection closes after it.
            if let Some(ex) = self.ex() {
                let read_at = ctx.now + ms(ctx.route(ex.info.route).read_timeout);
                ex.req = ReqPhase::Aborted;
                ex.req_at = 0;
                if matches!(ex.resp, RespPhase::Waiting | RespPhase::ReadingHead) {
                    ex.resp_at = read_at;
                }
            }
            self.refresh_deadline();
            return Ok(Step::Continue);
        }
        let b = self.backend as usize;
        ctx.ups.failed(b, ctx.index, "sending the request failed");
        ctx.upstream_error(
            self.peer,
            format_args!(
                "upstream {}: sending the request failed: {}; answering 502",
                ctx.ups.addrs[b],
                io::Error::from_raw_os_error(-res)
            ),
        );
        Ok(self.fail(reply::BAD_GATEWAY))
    }

    fn submit_body_recv(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        let State::Exchange(ex) = &mut self.state else {
            return Ok(Step::Continue);
        };
        // Everything received so far went upstream, so the buffer starts over; a head
        // buffer is small, so streaming gets a larger one (kept for the connection).
        debug_assert_eq!(ex.cin_pos, ex.cin_len);
        ex.cin_pos = 0;
        ex.cin_len = 0;
        if ex.cin.len() < BODY_BUF {
            ex.cin = vec![0u8; BODY_BUF].into_boxed_slice();
        }
        // SAFETY: `cin` is the exchange's heap buffer, untouched until this receive
        // completes; the session is freed only with nothing in flight.
        unsafe {
            self.conn
                .recv(&mut ctx.ring, Side::Client, &mut ex.cin[..], Op::BodyRecv)?
        };
        Ok(Step::Continue)
    }

    pub(super) fn on_body_recv(&mut self, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        if self.ex().map(|ex| ex.req) != Some(ReqPhase::ReadingBody) {
            return Ok(Step::Continue);
        }
        let peer = self.peer;
        if res <= 0 {
            ctx.client_info(
                peer,
                format_args!("closed the connection in the middle of the request body"),
            );
            return Ok(Step::Close);
        }
        let Some(ex) = self.ex() else {
            return Ok(Step::Continue);
        };
        let body_at = ctx.now + ms(ctx.route(ex.info.route).body_timeout);
        ex.cin_len += res as usize;
        match ex.req_body.feed(&ex.cin[ex.cin_pos..ex.cin_len]) {
            Ok(k) => {
                ex.fwd_from = ex.cin_pos;
                ex.fwd_to = ex.cin_pos + k;
                ex.req = ReqPhase::SendingBody;
                ex.req_at = body_at;
                self.refresh_deadline();
                self.submit_up_send(ctx)
            }
            Err(FramingError(why)) => {
                ctx.client_info(peer, format_args!("{why}; answering 400"));
                Ok(self.fail(reply::BAD_REQUEST))
            }
        }
    }
}
