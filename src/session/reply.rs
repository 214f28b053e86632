//! States `Reply` and `Linger`: ringway's own answer (400, 408, 417, 431, 502, 503, 504),
//! then a lingering close — our write half shut, what the client still sends read and
//! discarded for up to [`LINGER`], so closing does not reset the connection before the
//! client has read the answer.

use super::{ms, Ctx, Session, State, Step, LINGER};
use crate::ring::Side;
use std::io;

impl Session {
    /// Answer the client with `msg`, then linger and close. Drops the upstream side.
    pub fn reply(&mut self, msg: &'static [u8], ctx: &mut Ctx) -> io::Result<Step> {
        ctx.errors += 1;
        self.obs_reply(msg, ctx);
        let busy = self.conn.inflight > 0;
        if let State::Tunnel(t) = &mut self.state {
            t.stop();
        }
        // The upstream side is done with: shutting it down completes its receives and
        // sends. On the client side, what would stay armed is cancelled by token before
        // our answer is queued (SQEs are issued in order, so the answer is not caught).
        self.conn.shutdown(Side::Upstream, libc::SHUT_RDWR);
        if busy {
            self.cancel_armed(&mut ctx.ring, false)?;
        }
        // A TLS client's virtual read points into the state replaced below, whether or not
        // anything is in flight (its receive may be waiting for ring buffers).
        self.conn.tls_forget_read();
        let old = std::mem::replace(
            &mut self.state,
            State::Reply {
                msg,
                sent: 0,
                keep: None,
            },
        );
        // Operations being cancelled may still point into the old state's buffers: keep
        // them until the session is freed.
        if busy {
            if let State::Reply { keep, .. } = &mut self.state {
                *keep = Some(Box::new(old));
            }
        } else if let State::Exchange(ex) = old {
            ctx.recycle(ex);
        }
        self.conn.deadline = ctx.now + ms(LINGER);
        self.submit_client_send(ctx)
    }

    /// The answer is out: shut our write half and drain the client.
    pub(super) fn start_linger(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        let keep = match &mut self.state {
            State::Reply { keep, .. } => keep.take(),
            _ => None,
        };
        self.state = State::Linger { keep };
        self.conn.shutdown(Side::Client, libc::SHUT_WR);
        self.conn.recv_discard(&mut ctx.ring)?;
        Ok(Step::Continue)
    }

    pub(super) fn on_linger_recv(&mut self, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        if !matches!(self.state, State::Linger { .. }) {
            return Ok(Step::Continue);
        }
        if res > 0 {
            self.conn.recv_discard(&mut ctx.ring)?;
            return Ok(Step::Continue);
        }
        Ok(Step::Close)
    }
}
