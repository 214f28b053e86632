//! Accepting clients and handing them between workers: the worker's SO_REUSEPORT
//! listener (multishot accept, or one accept at a time in `pause` mode, with a back-off
//! after errors), and the handoff of a client that the kernel hashed to a full worker to
//! a sibling with room (a channel in thread mode, SCM_RIGHTS in process mode).
//!
//! Admission against the budget is the worker's (`worker/mod.rs`); this file only says
//! where a new client comes from and where it can go.

use crate::ring::{Op, Ring, Side, Token};
use crate::shm::Counters;
use crate::sys;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

/// Commands for a worker, set by the server and signalled through the worker's eventfd.
#[derive(Debug, Default)]
pub struct Control {
    /// Stop accepting, close everything, exit.
    pub shutdown: AtomicBool,
    /// Drain: stop accepting, finish exchanges (`Connection: close`), keep tunnels until
    /// they end or `drain_ms` passes, then close the rest and exit.
    pub drain: AtomicBool,
    /// The drain's bound in ms (`u64::MAX`: none).
    pub drain_ms: AtomicU64,
    /// The drain is a reload's (an old generation), not a graceful stop's: idle
    /// kept-alive clients are closed at once, so that their next request reaches the new
    /// generation (see `worker/drain.rs`).
    pub reload: AtomicBool,
    /// A successor generation took over this worker's listeners (same sockets): the
    /// clients waiting in their backlogs are the successor's, not this worker's to take.
    pub handed_over: AtomicBool,
    /// Copies of the worker's listeners for a successor generation (a reload that keeps
    /// the listen addresses and worker count takes them: no socket is ever closed, so no
    /// client is refused). Emptied when the worker drains or stops, so that a listener
    /// leaves its SO_REUSEPORT group with the worker. Control plane only: never locked on
    /// the data path.
    pub spare: Mutex<Vec<OwnedFd>>,
}

impl Control {
    /// Drop the spare listener copies (the worker is draining, stopping or dead).
    pub fn drop_spare(&self) {
        if let Ok(mut v) = self.spare.lock() {
            v.clear();
        }
    }
}

/// Where a full worker sends a client it cannot admit (to a sibling with room).
#[derive(Debug)]
pub enum Outbox {
    /// A sibling thread: a channel, then a wake-up of its control eventfd.
    Channel {
        /// The sibling's inbox: the client and the listen address it came in on.
        tx: std::sync::mpsc::Sender<(OwnedFd, u8)>,
        /// The sibling's control eventfd (owned by the server).
        wake: RawFd,
    },
    /// A sibling process: a unix datagram socket (owned by the process setup); the
    /// descriptor travels as SCM_RIGHTS.
    Unix(RawFd),
    /// No way to reach it (this worker itself).
    None,
}

/// Where a worker receives clients handed over by full siblings.
#[derive(Debug)]
pub enum Inbox {
    /// From sibling threads: the client and the listen address it came in on.
    Channel(std::sync::mpsc::Receiver<(OwnedFd, u8)>),
    /// From sibling processes (unix datagram socket, SCM_RIGHTS).
    Unix(RawFd),
}

/// What workers of one server know of each other: enough to hand a connection from a
/// full worker to one with room. Touched only at the limit, never on the data path.
#[derive(Debug)]
pub struct Peers {
    /// Everyone's counters (free slots are read from them).
    pub counters: Counters,
    /// Per worker (global index): how to hand it a client.
    pub outboxes: Vec<Outbox>,
}

impl Peers {
    /// Free client capacity of worker `j` as last published (a loop turn stale at most);
    /// 0 for a worker that is not running.
    pub fn room(&self, j: usize) -> u64 {
        let st = self.counters.worker(j);
        if st.running.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        let cap = st.slots_capacity.load(Ordering::Relaxed);
        let used = st.slots_used.load(Ordering::Relaxed);
        // Idle pooled upstream connections give their slots up for a new client.
        let pooled = st.pooled.load(Ordering::Relaxed);
        (cap.saturating_sub(used) + pooled) / crate::budget::PER_CLIENT as u64
    }
}

/// One of the worker's listeners (one per listen address) and the state of its accept.
#[derive(Debug)]
pub struct Acceptor {
    /// `None` once closed (draining).
    listener: Option<OwnedFd>,
    /// Its index (the listen address's); accept tokens carry it.
    index: u32,
    /// Multishot accept (false in `pause` mode: one accept at a time).
    multishot: bool,
    /// An accept is in flight.
    pub armed: bool,
    /// Closing (draining): once no accept is in flight, take the backlog (if `true`) and
    /// close the listener.
    closing: Option<bool>,
    /// After an accept error, not before this time (worker ms).
    pub retry_at: u64,
}

impl Acceptor {
    /// Accept on `listener`, listen address number `index`, multishot or one at a time.
    pub fn new(listener: OwnedFd, index: usize, multishot: bool) -> Acceptor {
        Acceptor {
            listener: Some(listener),
            index: index as u32,
            multishot,
            armed: false,
            closing: None,
            retry_at: 0,
        }
    }

    /// The token of this listener's accepts.
    fn token(&self) -> Token {
        Token::session(Op::Accept, Side::Client, self.index, 0)
    }

    /// Submit the accept.
    pub fn arm(&mut self, ring: &mut Ring) -> io::Result<()> {
        let Some(l) = &self.listener else {
            return Ok(());
        };
        ring.accept(l.as_raw_fd(), self.multishot, self.token())?;
        self.armed = true;
        Ok(())
    }

    /// Cancel the accept by its token. Not shutdown(2) on the listener: in process mode
    /// the listening socket is shared with the master and a restarted worker, and
    /// shutting it down would close it for all of them.
    pub fn cancel(&mut self, ring: &mut Ring) -> io::Result<()> {
        if !self.armed {
            return Ok(());
        }
        // A slot index no session has, so its completion is never taken for a session's.
        let tok = Token::session(Op::Cancel, Side::Upstream, u32::MAX, 0);
        ring.cancel_token(self.token(), tok)
    }

    /// An accept failed with `err`: say why when it matters and back off for 100 ms.
    pub fn failed(
        &mut self,
        err: i32,
        now: u64,
        shutting: bool,
        log: impl Fn(std::fmt::Arguments<'_>),
    ) {
        if err == libc::EMFILE || err == libc::ENFILE || err == libc::ENOMEM {
            log(format_args!(
                "accept failed: {} (RLIMIT_NOFILE or memory exhausted; raise `ulimit -n` or lower worker_connections); retrying shortly",
                io::Error::from_raw_os_error(err)
            ));
            self.retry_at = now + 100;
        } else if !shutting
            && err != libc::ECANCELED
            && err != libc::EINTR
            && err != libc::ECONNABORTED
        {
            log(format_args!(
                "accept failed: {}; retrying shortly",
                io::Error::from_raw_os_error(err)
            ));
            self.retry_at = now + 100;
        }
    }
}

/// The worker's listeners, one per listen address.
#[derive(Debug)]
pub struct Acceptors {
    list: Vec<Acceptor>,
    /// Pause mode: the listener whose turn it is to accept.
    next: usize,
}

impl Acceptors {
    /// Accepts on `listeners` (index = listen address), multishot or one at a time.
    pub fn new(listeners: Vec<OwnedFd>, multishot: bool) -> Acceptors {
        Acceptors {
            list: listeners
                .into_iter()
                .enumerate()
                .map(|(i, fd)| Acceptor::new(fd, i, multishot))
                .collect(),
            next: 0,
        }
    }

    /// Listener `i`.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Acceptor> {
        self.list.get_mut(i)
    }

    /// Whether one is idle and past its back-off.
    pub fn any_due(&self, now: u64) -> bool {
        self.list
            .iter()
            .any(|a| a.listener.is_some() && !a.armed && now >= a.retry_at)
    }

    /// Draining: cancel every accept and close every listener, so that the kernel refuses
    /// new clients here at once (or, with a successor on the same sockets, sends them
    /// there). With `take_backlog`, first take the clients already waiting in each
    /// backlog (closing a listener would reset them). A listener whose accept is still in
    /// flight is closed when that accept's last completion arrives ([`Acceptors::finish`]):
    /// until then the kernel holds the socket open (and in its SO_REUSEPORT group).
    /// Returns the clients taken, with their listen address.
    pub fn close(&mut self, ring: &mut Ring, take_backlog: bool) -> Vec<(OwnedFd, u8)> {
        for a in &mut self.list {
            let _ = a.cancel(ring);
            if a.listener.is_some() {
                a.closing = Some(take_backlog);
            }
        }
        (0..self.list.len()).flat_map(|i| self.finish(i)).collect()
    }

    /// Whether a listener waits for its accept's last completion to close.
    pub fn closing(&self) -> bool {
        self.list.iter().any(|a| a.closing.is_some())
    }

    /// Listener `i` is closing and no accept of it is in flight: take its backlog (when
    /// asked) and close it.
    pub fn finish(&mut self, i: usize) -> Vec<(OwnedFd, u8)> {
        let mut waiting = Vec::new();
        let Some(a) = self.list.get_mut(i) else {
            return waiting;
        };
        let Some(take_backlog) = a.closing else {
            return waiting;
        };
        if a.armed {
            return waiting;
        }
        a.closing = None;
        if let Some(l) = a.listener.take() {
            if take_backlog {
                while let Ok(Some(fd)) = sys::accept_waiting(l.as_raw_fd()) {
                    waiting.push((fd, a.index as u8));
                }
            }
        }
        waiting
    }

    /// Arm every idle listener past its back-off — or, in `pause` mode, one accept at a
    /// time across all of them, in turn: each accepted client must find room (the rest
    /// wait in their backlogs, as pause mode promises).
    pub fn arm(&mut self, ring: &mut Ring, now: u64, pause: bool) -> io::Result<()> {
        if !pause {
            for a in &mut self.list {
                if !a.armed && now >= a.retry_at {
                    a.arm(ring)?;
                }
            }
            return Ok(());
        }
        if self.list.iter().any(|a| a.armed) {
            return Ok(());
        }
        let n = self.list.len();
        for k in 0..n {
            let i = (self.next + k) % n;
            if now >= self.list[i].retry_at {
                self.list[i].arm(ring)?;
                self.next = (i + 1) % n;
                break;
            }
        }
        Ok(())
    }
}

/// Handing clients to and taking them from sibling workers.
#[derive(Debug)]
pub struct Handoff {
    index: usize,
    peers: std::sync::Arc<Peers>,
    inbox: Inbox,
    /// Clients accepted here while full and handed to a sibling.
    pub handed_off: u64,
}

impl Handoff {
    /// Worker `index`'s view of its siblings.
    pub fn new(index: usize, peers: std::sync::Arc<Peers>, inbox: Inbox) -> Handoff {
        Handoff {
            index,
            peers,
            inbox,
            handed_off: 0,
        }
    }

    /// The token of the process-mode inbox poll (a worker-level Control on the upstream
    /// side, so it is told apart from the control eventfd's).
    pub fn inbox_token() -> Token {
        Token::session(Op::Control, Side::Upstream, 0, 0)
    }

    /// Watch the process-mode inbox (multishot POLLIN); nothing to do for channels.
    pub fn arm_inbox(&self, ring: &mut Ring) -> io::Result<()> {
        if let Inbox::Unix(fd) = self.inbox {
            ring.poll(fd, libc::POLLIN as u32, true, Self::inbox_token())?;
        }
        Ok(())
    }

    /// The sibling worker with the most room, if any has room for a client.
    pub fn sibling_with_room(&self) -> Option<usize> {
        (0..self.peers.outboxes.len())
            .filter(|&j| j != self.index)
            .map(|j| (self.peers.room(j), j))
            .filter(|&(room, _)| room > 0)
            .max()
            .map(|(_, j)| j)
    }

    /// Hand a client accepted on listen address `listen` to sibling `j`; gives the client
    /// back when that failed.
    pub fn hand_off(&mut self, j: usize, fd: OwnedFd, listen: u8) -> Result<(), OwnedFd> {
        match &self.peers.outboxes[j] {
            Outbox::Channel { tx, wake } => {
                tx.send((fd, listen)).map_err(|e| (e.0).0)?;
                sys::eventfd_wake(*wake);
            }
            Outbox::Unix(sock) => {
                if sys::send_fd(*sock, fd.as_raw_fd(), listen).is_err() {
                    return Err(fd);
                }
                // The receiver has its own copy now; ours closes as it drops.
            }
            Outbox::None => return Err(fd),
        }
        self.handed_off += 1;
        Ok(())
    }

    /// The next client handed over by a sibling (and its listen address), if one is waiting.
    pub fn next_inbound(&mut self, log: impl Fn(std::fmt::Arguments<'_>)) -> Option<(OwnedFd, u8)> {
        match &self.inbox {
            Inbox::Channel(rx) => rx.try_recv().ok(),
            Inbox::Unix(sock) => match sys::recv_fd(*sock) {
                Ok(fd) => fd,
                Err(e) => {
                    log(format_args!("handoff receive failed: {e}"));
                    None
                }
            },
        }
    }
}
