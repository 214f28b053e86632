//! A TLS client's ciphertext while the session speaks HTTP: the handshake, and the
//! virtual reads and sends of the handlers (`Conn::recv` / `Conn::send` on a TLS client),
//! completed here when their ciphertext moves. In a tunnel the relay takes both
//! completions over (`relay::tls`).
//!
//! Failures end quietly, as nginx's do: a bad handshake or record is logged at `info`
//! (an alert goes out if it can), a plain HTTP request on the TLS port gets a `400` in
//! plain text, a client that stalls mid-handshake meets `--head-timeout`.

use super::{Ctx, Session, State, Step};
use crate::http::reply;
use crate::ring::{Completion, Op};
use crate::tls::conn::Fed;
use std::io;

impl Session {
    /// A `TlsRecv` completed: feed its ciphertext, send what the handshake answers,
    /// complete a waiting virtual read.
    pub(super) fn on_tls_recv(&mut self, cqe: &Completion, ctx: &mut Ctx) -> io::Result<Step> {
        if let State::Tunnel(t) = &mut self.state {
            let (c, ring, relay) = (&mut self.conn, &mut ctx.ring, &mut ctx.relay);
            return crate::relay::tls::on_client_cipher(t, c, ring, relay, ctx.now, cqe)
                .map(Step::from);
        }
        let peer = self.peer;
        let res = cqe.res();
        let Some(t) = self.conn.tls.as_mut() else {
            if let Some(bid) = cqe.buffer_id() {
                ctx.ring.recycle_buffer(bid);
            }
            return Ok(Step::Continue);
        };
        if !cqe.more() {
            t.recv_armed = false;
        }
        let was_handshaking = t.handshaking();
        if res > 0 {
            let Some(bid) = cqe.buffer_id() else {
                return Ok(Step::Close);
            };
            let len = res as u32;
            let fed = t.feed(ctx.ring.buffer(bid, len as usize));
            match fed {
                Fed::Took(n) if (n as u32) < len => t.held = Some((bid, n as u32, len)),
                _ => ctx.ring.recycle_buffer(bid),
            }
            match fed {
                Fed::Took(_) => {}
                Fed::PlainHttp => {
                    ctx.client_info(
                        peer,
                        format_args!("plain HTTP request on a TLS port; answering 400"),
                    );
                    if let Some(t) = self.conn.tls.as_mut() {
                        t.clear_read();
                    }
                    return Ok(Step::Reply(reply::PLAIN_HTTP_ON_TLS));
                }
                Fed::Failed(e) => {
                    let what = if t.handshaking() {
                        "TLS handshake failed"
                    } else {
                        "TLS error"
                    };
                    ctx.client_info(peer, format_args!("{what}: {e}; closing"));
                    ctx.obs.tls_failed();
                    // The alert rustls queued, if it can go out at once.
                    self.conn.tls_goodbye();
                    return Ok(Step::Close);
                }
            }
        } else if res == 0 {
            t.feed_eof();
        } else if res == -libc::ENOBUFS {
            // The ring ran dry: re-armed when buffers come back (`relay_feed`).
            ctx.relay
                .starved
                .push_back((self.conn.idx, self.conn.gen, 0));
            return Ok(Step::Continue);
        } else if res != -libc::ECANCELED {
            t.error = Some(res);
        }
        // What the handshake (or an alert, a ticket) answers.
        self.conn.tls_flush(&mut ctx.ring)?;
        if was_handshaking {
            if let Some(t) = self.conn.tls.as_ref() {
                if !t.handshaking() {
                    ctx.obs.tls_handshake(t.rustls().handshake_kind());
                }
            }
        }
        if let Some(t) = self.conn.tls.as_mut() {
            if t.pending_read().is_some() && t.read_ready() {
                return match self.conn.tls_take_read() {
                    Some((op, n)) => self.virtual_done(op, n, ctx),
                    None => Ok(Step::Continue),
                };
            }
        }
        let ended = self
            .conn
            .tls
            .as_ref()
            .is_some_and(|t| t.error.is_some() || t.eof && t.flushed());
        if ended && matches!(self.state, State::Head(_)) {
            // Mid-handshake, or between requests: the client is gone.
            return Ok(Step::Close);
        }
        self.conn.tls_read_progress(&mut ctx.ring)?;
        Ok(Step::Continue)
    }

    /// A `TlsSend` completed: send the rest, then complete the send a handler waits on.
    pub(super) fn on_tls_sent(&mut self, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        if let State::Tunnel(t) = &mut self.state {
            let (c, ring, relay) = (&mut self.conn, &mut ctx.ring, &mut ctx.relay);
            return crate::relay::tls::on_cipher_sent(t, c, ring, relay, res).map(Step::from);
        }
        let ring = &mut ctx.ring;
        let Some(t) = self.conn.tls.as_mut() else {
            return Ok(Step::Continue);
        };
        let all_out = t.on_sent(res, |v| ring.give_vec(v));
        if res < 0 {
            return match t.take_send() {
                Some((op, _)) => self.virtual_done(op, res, ctx),
                None => Ok(Step::Close),
            };
        }
        if !all_out {
            self.conn.tls_flush(&mut ctx.ring)?;
            return Ok(Step::Continue);
        }
        if let Some((op, len)) = self.conn.tls.as_mut().and_then(|t| t.take_send()) {
            return self.virtual_done(op, len as i32, ctx);
        }
        // Everything is out: a read that waited for that (the client's end) completes.
        if let Some(t) = self.conn.tls.as_mut() {
            if t.pending_read().is_some() && t.read_ready() {
                if let Some((op, n)) = self.conn.tls_take_read() {
                    return self.virtual_done(op, n, ctx);
                }
            } else if t.eof && matches!(self.state, State::Head(_)) {
                return Ok(Step::Close);
            }
        }
        Ok(Step::Continue)
    }

    /// A virtual operation's NOP completed: what it stands for, now.
    pub(super) fn on_tls_nop(&mut self, op: Op, ctx: &mut Ctx) -> io::Result<Step> {
        let Some(t) = self.conn.tls.as_mut() else {
            return Ok(Step::Continue);
        };
        if op == Op::ClientSend {
            // Only a send on a failed connection completes by a NOP.
            let err = t.error.unwrap_or(-libc::EPIPE);
            return match t.take_send() {
                Some((op, _)) => self.virtual_done(op, err, ctx),
                None => Ok(Step::Continue),
            };
        }
        t.nop = false;
        match self.conn.tls_take_read() {
            Some((op, n)) => self.virtual_done(op, n, ctx),
            // Cancelled since, or taken by a ciphertext completion.
            None => Ok(Step::Continue),
        }
    }

    /// Hand a virtual operation's result to its handler.
    fn virtual_done(&mut self, op: Op, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        match op {
            Op::HeadRecv => self.on_head_recv(res, ctx),
            Op::BodyRecv => self.on_body_recv(res, ctx),
            Op::ClientSend => self.on_client_send(res, ctx),
            _ => Ok(Step::Continue),
        }
    }
}
