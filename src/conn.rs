//! A proxied client's session: one enum for its state, each state owning its data.
//!
//! Lifecycle (see README, "Life of a connection"):
//! `Head` (read the request head) → `Upstream` (connect, forward the head, read the
//! response head, send it to the client) → `Tunnel` (relay bytes: an upgraded WebSocket,
//! or a plain response until the backend closes) → freed. ringway's own answers (400,
//! 431, 502, 503, 504) go `Reply` → `Linger` → freed.
//!
//! A session is freed only when `inflight == 0`: every buffer an in-flight operation points
//! at is owned by the state, so it must outlive the operation.

use crate::http::{RequestInfo, ResponseInfo};
use crate::tunnel::Tunnel;
use std::net::IpAddr;
use std::os::fd::RawFd;

/// "No backend chosen yet".
pub const NO_BACKEND: u16 = u16::MAX;

/// How the client got its slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Two budget slots (client + upstream).
    Budget,
    /// One 503-reserve slot: the client only gets a 503.
    Reserve,
}

/// Reading the request head.
#[derive(Debug)]
pub struct Head {
    /// Receive buffer (the head limit long).
    pub buf: Box<[u8]>,
    /// Bytes received so far.
    pub len: usize,
}

/// Where an upstream exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Connect in flight.
    Connecting,
    /// Sending the rewritten request head (plus bytes that came with it).
    SendingHead,
    /// Reading the response head (a request body may be streaming meanwhile).
    ReadingResponse,
    /// Sending the rewritten response head (plus bytes that came with it) to the client.
    SendingResponse,
}

/// Talking to the backend before the relay starts.
#[derive(Debug)]
pub struct Up {
    /// Where we are.
    pub phase: Phase,
    /// Backends tried so far.
    pub attempts: u8,
    /// The last connect attempt timed out (→ 504 rather than 502).
    pub timed_out: bool,
    /// The parsed request.
    pub info: RequestInfo,
    /// Rewritten request head + bytes that followed it.
    pub req: Vec<u8>,
    /// Bytes of `req` sent.
    pub req_sent: usize,
    /// Response head buffer (the response head limit long, once reading).
    pub resp: Box<[u8]>,
    /// Bytes of `resp` received.
    pub resp_len: usize,
    /// The parsed response, once complete.
    pub rinfo: Option<ResponseInfo>,
    /// Rewritten response head + bytes that followed it, for the client.
    pub out: Vec<u8>,
    /// Bytes of `out` sent.
    pub out_sent: usize,
    /// The relay; its client → upstream direction streams a request body meanwhile.
    pub tunnel: Tunnel,
}

/// A session's state.
#[derive(Debug)]
pub enum State {
    /// Reading the request head.
    Head(Box<Head>),
    /// Exchanging heads with a backend.
    Upstream(Box<Up>),
    /// Relaying bytes.
    Tunnel(Tunnel),
    /// Sending ringway's own answer.
    Reply {
        /// The answer.
        msg: &'static [u8],
        /// Bytes sent.
        sent: usize,
        /// The previous state, kept while cancelled operations may still point into it.
        keep: Option<Box<State>>,
    },
    /// Our answer is out; reading and discarding what the client still sends, so that
    /// closing does not reset the connection before the client has read the answer.
    Linger {
        /// As in `Reply`.
        keep: Option<Box<State>>,
    },
}

/// One client and (once chosen) its upstream.
#[derive(Debug)]
pub struct Session {
    /// Client socket.
    pub client: RawFd,
    /// Upstream socket, or -1.
    pub upstream: RawFd,
    /// Client address (X-Forwarded-For, ip-hash).
    pub peer: IpAddr,
    /// Backend index, or NO_BACKEND.
    pub backend: u16,
    /// Operations in flight that name this session.
    pub inflight: u16,
    /// How the slots were granted.
    pub admission: Admission,
    /// Being torn down: completions only count down `inflight`.
    pub closing: bool,
    /// Deadline in worker milliseconds (0: none). See `worker.rs` timers.
    pub deadline: u64,
    /// The state and its data.
    pub state: State,
}

impl State {
    /// The relay inside this state (or inside a state it keeps), consuming it.
    pub fn into_tunnel(self) -> Option<Tunnel> {
        match self {
            State::Tunnel(t) => Some(t),
            State::Upstream(up) => Some(up.tunnel),
            State::Reply { keep, .. } | State::Linger { keep } => {
                keep.and_then(|b| b.into_tunnel())
            }
            State::Head(_) => None,
        }
    }
}

impl Session {
    /// The relay, if the session has one running.
    pub fn tunnel_mut(&mut self) -> Option<&mut Tunnel> {
        match &mut self.state {
            State::Tunnel(t) => Some(t),
            State::Upstream(up) => Some(&mut up.tunnel),
            _ => None,
        }
    }
    /// The socket on `side` (0 client, 1 upstream).
    pub fn fd(&self, side: usize) -> RawFd {
        if side == 0 {
            self.client
        } else {
            self.upstream
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_tunnel_is_small() {
        // The slab entry of an idle tunnel is all the user-space memory it holds (no
        // buffers, no pipe). Keep it well under the 1 KB target.
        let size = std::mem::size_of::<Session>();
        eprintln!(
            "Session: {size} bytes, Tunnel: {}",
            std::mem::size_of::<Tunnel>()
        );
        assert!(size <= 320, "Session grew to {size} bytes");
    }
}
