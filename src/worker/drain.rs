//! How a worker ends: a drain (SIGQUIT/SIGTERM, or an old generation after a reload) or
//! an immediate stop (SIGINT, or a drain's deadline).
//!
//! A drain closes the listeners at once (after taking the clients already in their
//! backlogs, unless a successor generation accepts on the same sockets), closes idle
//! pooled upstream connections, lets every exchange finish (`ctx.shutting` makes each
//! response `Connection: close`, stops pooling, and closes the client connection once an
//! exchange ends), and keeps tunnels until they end. At the drain's deadline what is left
//! is closed as in a stop. The worker exits when its slab is empty, or a stop's grace for
//! in-flight operations ran out.
//!
//! Idle kept-alive clients (between two requests, no byte of the next one received) are
//! where the two drains differ, as in nginx:
//! * a reload's old generation closes them at once: their next request goes out on a new
//!   connection, which reaches the new generation, so a backend the reload removed gets
//!   no new request. A request whose head is partly received is in flight: it is answered
//!   (by the old configuration, with `Connection: close`).
//! * a graceful stop gives them [`IDLE_GRACE`] to send a request that may already be on
//!   its way, answered with `Connection: close`. The reason: there is no successor on
//!   this address, so a request lost to the close cannot be retried here (the listener is
//!   closed and the kernel refuses the new connection), and a client may not retry a
//!   non-idempotent one at all; a reload's closed client reconnects to the same address
//!   and is served at once. The grace is short and inside the stop's bound.

use super::Worker;
use crate::session::{ms, State};
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// A stop waits this long for sessions to drain their in-flight operations.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// A graceful stop gives an idle kept-alive client this long to send its next request
/// (which is then answered with `Connection: close`) before closing it: a client that has
/// just sent one must not see its connection closed under it. A reload's drain gives none.
const IDLE_GRACE: Duration = Duration::from_millis(1000);

impl Worker {
    /// Stopping for good: no more clients, not even from a drain's backlog.
    pub(super) fn stopping(&self) -> bool {
        self.ctx.shutting && self.drain.is_none()
    }

    /// The control eventfd fired: carry out a drain or stop the server asked for.
    pub(super) fn on_control(&mut self) -> io::Result<()> {
        if self.control.shutdown.load(Ordering::Acquire) && !self.stopping() {
            return self.begin_shutdown();
        }
        if self.control.drain.load(Ordering::Acquire) {
            if !self.ctx.shutting {
                return self.begin_drain();
            }
            // Drained again (a stop during a reload's unbounded drain): the nearer bound wins.
            let bound = self.control.drain_ms.load(Ordering::Acquire);
            if let Some(until) = &mut self.drain {
                *until = (*until).min(self.ctx.now.saturating_add(bound));
            }
        }
        Ok(())
    }

    /// Whether the loop is done (called while `ctx.shutting`); a drain whose deadline
    /// passed turns into a stop here.
    pub(super) fn stopped(&mut self) -> io::Result<bool> {
        if self.slab.is_empty() && !self.acceptors.closing() {
            return Ok(true);
        }
        match self.drain {
            Some(until) if self.ctx.now >= until => {
                let left = self.slab.len();
                self.log(format_args!(
                    "shutdown timeout: closing {left} connection(s) still open"
                ));
                self.begin_shutdown()?;
                Ok(self.slab.is_empty())
            }
            Some(_) => Ok(false),
            None if self.slab.is_empty() => Ok(true),
            None => Ok(self.ctx.now >= self.shutdown_deadline),
        }
    }

    fn begin_drain(&mut self) -> io::Result<()> {
        self.ctx.shutting = true;
        let bound = self.control.drain_ms.load(Ordering::Acquire);
        self.drain = Some(self.ctx.now.saturating_add(bound));
        self.control.drop_spare();
        // Not accepting any more: no sibling hands this worker a client, and whoever
        // started a successor knows this one has let go of its listeners.
        crate::shm::WorkerStats::set(&self.stats.running, 0);
        let successor = self.control.handed_over.load(Ordering::Acquire);
        for (fd, listen) in self.acceptors.close(&mut self.ctx.ring, !successor) {
            self.admit(fd, listen)?;
        }
        while let Some(idx) = self.pool.take_oldest() {
            drop(self.unpool(idx));
        }
        let reload = self.control.reload.load(Ordering::Acquire);
        let grace = self.ctx.now + ms(IDLE_GRACE);
        for idx in self.slab.live_indices() {
            let Some(s) = self.slab.at(idx) else { continue };
            if !matches!(&s.state, State::Head(h) if h.idle && h.len == 0) {
                continue;
            }
            if reload {
                self.close(idx)?;
            } else if s.conn.deadline > grace {
                s.conn.deadline = grace;
                self.timers.sync(&mut s.conn);
            }
        }
        Ok(())
    }

    pub(super) fn begin_shutdown(&mut self) -> io::Result<()> {
        self.ctx.shutting = true;
        self.drain = None;
        self.shutdown_deadline = self.ctx.now + ms(SHUTDOWN_GRACE);
        self.control.drop_spare();
        self.acceptors.close(&mut self.ctx.ring, false);
        // Pooled connections close with everything else (their slots return when freed).
        self.pool.clear();
        for idx in self.slab.live_indices() {
            self.close(idx)?;
        }
        Ok(())
    }
}
