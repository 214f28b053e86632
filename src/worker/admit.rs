//! Admission: a new client against the worker's budget — idle pooled upstream
//! connections give their slots up first; then two slots (client + upstream) and a session
//! in state `Head` (with its TLS connection on a TLS listen address), or the at-limit answer
//! (the 503 from the accept completion, or a close: nginx's behaviour, and every TLS
//! client's, whose 503 would cost a handshake).

use super::Worker;
use crate::budget::Admit;
use crate::config::AtLimit;
use crate::conn::Conn;
use crate::http;
use crate::ring::{Op, Side, Token};
use crate::session::{ms, Admission, Head, Session, State, NO_BACKEND};
use crate::sys;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};

impl Worker {
    /// Whether a client can be admitted here (idle pooled upstream connections give
    /// their slots up for it).
    pub(super) fn room_for_client(&self) -> bool {
        self.budget.free() + self.pool.len() >= crate::budget::PER_CLIENT
    }

    /// Take connections handed over by full siblings.
    pub(super) fn drain_inbox(&mut self) -> io::Result<()> {
        loop {
            let ctx = &self.ctx;
            let Some((fd, listen)) = self.handoff.next_inbound(|m| ctx.log(m)) else {
                return Ok(());
            };
            if !self.stopping() {
                self.admit(fd, listen)?;
            }
        }
    }

    /// Admit a client accepted on listen address `listen` against this worker's budget, or
    /// give the at-limit answer.
    pub(super) fn admit(&mut self, fd: OwnedFd, listen: u8) -> io::Result<()> {
        self.accepted += 1;
        // Idle pooled upstream connections are the first to go when slots run out.
        while !self.budget.has_room() && !self.pool.is_empty() {
            self.evict_oldest()?;
        }
        let at_limit = self.ctx.cfg.at_limit;
        let (admit, new_episode) = self.budget.admit();
        if new_episode {
            crate::shm::bump(&self.stats.more.not_enough_episodes, 1);
            let tls_note = if at_limit == AtLimit::Reply503 && self.tls.iter().any(Option::is_some)
            {
                " (TLS clients: closed before their handshake)"
            } else {
                ""
            };
            crate::log::write(crate::log::Level::Alert, crate::log::Who::Worker(self.ctx.index), None, format_args!(
                "{} worker_connections are not enough: {} proxied clients held; {}{tls_note} (logged once per episode)",
                self.budget.capacity(),
                crate::budget::clients_per_worker(self.budget.capacity()),
                match at_limit {
                    AtLimit::Reply503 => "answering 503 with Retry-After",
                    AtLimit::Reset => "closing new connections (nginx behaviour)",
                    AtLimit::Pause => "pausing accept; new clients wait in the listen backlog",
                }
            ));
        }
        let tls = self.tls.get(listen as usize).cloned().flatten();
        if admit != Admit::Admitted {
            self.refused += 1;
            // A TLS client is closed before its handshake: a 503 would cost a whole
            // handshake at the moment the worker is full.
            if at_limit == AtLimit::Reply503 && tls.is_none() {
                // One pre-built answer and a linked lingering close, outside the budget: a full
                // worker answers every client, however fast they come.
                self.ctx.errors += 1;
                crate::shm::bump(&self.stats.more.refused_503, 1);
                self.ctx
                    .answered_at_accept(fd.as_raw_fd(), http::reply::UNAVAILABLE);
                let tok = Token::session(Op::Cancel, Side::Client, u32::MAX, 0);
                return self
                    .ctx
                    .ring
                    .answer_and_close(fd, http::reply::UNAVAILABLE, tok);
            }
            return Ok(());
        }
        let admission = Admission::Budget;
        let peer = sys::peer_addr(fd.as_raw_fd())
            .map(|a| a.ip())
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        sys::set_nodelay(fd.as_raw_fd());
        let timeout = self.ctx.cfg.head_timeout;
        let head = Head::new(self.ctx.cfg.max_head);
        let deadline = self.ctx.now + ms(timeout);
        let tls = match tls.map(crate::tls::conn::TlsConn::new) {
            Some(Ok(t)) => Some(Box::new(t)),
            Some(Err(e)) => {
                // The two slots were taken: give them back with the client.
                self.budget.release();
                self.log(format_args!(
                    "TLS connection setup failed: {e}; closing the client"
                ));
                return Ok(());
            }
            None => None,
        };
        let idx = self.slab.insert(|idx, gen| {
            let mut conn = Conn::new(idx, gen, Some(fd), None);
            conn.deadline = deadline;
            conn.tls = tls;
            Session {
                conn,
                peer,
                listen: listen as u16,
                backend: NO_BACKEND,
                admission,
                state: State::Head(head),
            }
        });
        let Some(s) = self.slab.at(idx) else {
            return Ok(());
        };
        let step = s.submit_head_recv(&mut self.ctx)?;
        self.carry_out(idx, step)
    }
}
