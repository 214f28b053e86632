//! What an exchange does while it waits for its backend, beside the two halves: it
//! watches the client for leaving, and holds the early WebSocket frames of an upgrade
//! request until the `101`.
//!
//! **The watch.** From the moment a backend is chosen until the response head is here
//! (connect, the `101`, any response head), one single-shot `POLLRDHUP` on the client
//! socket notices a client that leaves. Then both sockets are closed at once (a stalled
//! backend plus impatient clients would otherwise fill the budget with dead upstream
//! connections until the read timeout) and the client is counted (nginx's 499).
//! Pipelined or early bytes do not wake it: only the end of the client's stream, a reset
//! or an error does.
//!
//! **Early frames.** Bytes that came after an upgrade request (a client that pipelines
//! its first frame) stay in the exchange's client buffer — never parsed, never sent —
//! at most [`EARLY_MAX`]; more is a `400`. After the `101` is at the client they go to
//! the backend first, then the tunnel starts. When the answer is not a `101`, the
//! response says `Connection: close` and the connection closes after it: the held bytes
//! are never read as a request.

use super::{Ctx, ReqPhase, Session, State, Step};
use crate::ring::{Op, Side};
use std::io;

/// Most early bytes held after an upgrade request: one relay buffer.
pub const EARLY_MAX: usize = crate::relay::copy::BUF_SIZE as usize;

impl Session {
    /// Start watching the client (once per exchange; a retry keeps the watch).
    pub(super) fn watch_client(&mut self, ctx: &mut Ctx) -> io::Result<()> {
        let State::Exchange(ex) = &mut self.state else {
            return Ok(());
        };
        if ex.watching {
            return Ok(());
        }
        ex.watching = true;
        let events = libc::POLLRDHUP as u32;
        self.conn
            .poll(&mut ctx.ring, Side::Client, events, false, Op::ClientWatch)
    }

    pub(super) fn on_client_watch(&mut self, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        let peer = self.peer;
        let b = self.backend as usize;
        let Some(ex) = self.ex() else {
            return Ok(Step::Continue);
        };
        if !ex.watching {
            // Cancelled (the response head came), or fired as the cancel crossed it.
            return Ok(Step::Continue);
        }
        ex.watching = false;
        if res <= 0 {
            return Ok(Step::Continue);
        }
        ctx.client_gone += 1;
        let up = ctx
            .ups
            .addrs
            .get(b)
            .map(|a| a.to_string())
            .unwrap_or_default();
        ctx.client_info(
            peer,
            format_args!(
                "client closed the connection while waiting for upstream {up}; closing both (499)"
            ),
        );
        Ok(Step::Close)
    }

    /// Bytes held after the upgrade request (early frames): `cin[cin_pos..cin_len]`.
    pub(super) fn early_len(&mut self) -> usize {
        self.ex()
            .filter(|ex| ex.info.upgrade)
            .map_or(0, |ex| ex.cin_len - ex.cin_pos)
    }

    /// The `101` is at the client: deliver the held early bytes to the backend, then
    /// start the tunnel.
    pub(super) fn after_upgrade(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        if self.early_len() == 0 {
            return self.start_tunnel(ctx);
        }
        if let Some(ex) = self.ex() {
            ex.req = ReqPhase::SendingEarly;
        }
        self.submit_up_send(ctx)
    }

    /// A send of early bytes completed.
    pub(super) fn on_early_sent(&mut self, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        if res <= 0 {
            return Ok(Step::Close);
        }
        let Some(ex) = self.ex() else {
            return Ok(Step::Continue);
        };
        ex.cin_pos += res as usize;
        if ex.cin_pos < ex.cin_len {
            return self.submit_up_send(ctx);
        }
        ex.cin_pos = 0;
        ex.cin_len = 0;
        ex.req = ReqPhase::Done;
        self.start_tunnel(ctx)
    }
}
