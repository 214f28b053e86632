//! A proxied client's session: one enum for its state, each state owning its data.
//!
//! Lifecycle (see README, "Life of a connection"):
//! `Head` (read a request head; between requests, the keep-alive wait) → `Exchange`
//! (connect or take a pooled upstream, forward the request and its body, relay the
//! response and its body) → back to `Head` on a kept-alive connection, or → `Tunnel`
//! (relay bytes of an upgraded WebSocket) → freed. ringway's own answers (400, 408, 417,
//! 431, 502, 503, 504) go `Reply` → `Linger` → freed. An idle upstream connection in the
//! worker's keep-alive pool is a session of its own in state `Pooled`.
//!
//! A session is freed only when `inflight == 0`: every buffer an in-flight operation points
//! at is owned by the state, so it must outlive the operation.

use crate::body::Body;
use crate::http::{RequestInfo, ResponseInfo};
use crate::tunnel::Tunnel;
use std::net::IpAddr;
use std::os::fd::RawFd;

/// "No backend chosen yet".
pub const NO_BACKEND: u16 = u16::MAX;

/// How the session got its slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Two budget slots (client + upstream).
    Budget,
    /// One 503-reserve slot: the client only gets a 503.
    Reserve,
    /// One budget slot: an idle upstream connection in the keep-alive pool.
    Pooled,
    /// Nothing to give back: a pooled connection whose slot was already returned (it was
    /// evicted or handed to a client).
    Released,
}

/// Reading a request head.
#[derive(Debug)]
pub struct Head {
    /// Receive buffer (grows up to the head limit); after a keep-alive exchange it may
    /// start with pipelined bytes.
    pub buf: Box<[u8]>,
    /// Bytes received so far.
    pub len: usize,
    /// Waiting for the first byte of a further request on a kept-alive connection
    /// (the keep-alive idle timeout applies, not the head timeout).
    pub idle: bool,
}

/// Where the request half of an exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReqPhase {
    /// Connecting to the backend.
    Connecting,
    /// Answering `Expect: 100-continue` before the head goes out.
    SendingContinue,
    /// Sending the rewritten head (plus the body bytes that came with it).
    SendingHead,
    /// Receiving body bytes from the client.
    ReadingBody,
    /// Sending body bytes `cin[fwd_from..fwd_to]` to the backend.
    SendingBody,
    /// The whole request is with the backend.
    Done,
    /// The backend stopped taking the body (it answered early and closed its read side):
    /// the response half goes on; the client connection closes after it.
    Aborted,
}

/// Where the response half of an exchange is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespPhase {
    /// The request head is not out yet.
    Waiting,
    /// Receiving the response head.
    ReadingHead,
    /// Sending the rewritten head (plus the body bytes that came with it) to the client.
    SendingHead,
    /// Receiving body bytes from the backend.
    ReadingBody,
    /// Sending `uin[..ulen]` (body bytes) to the client.
    SendingBody,
    /// The whole response is with the client.
    Done,
}

/// One request and its response. Boxed, and recycled through a per-worker free list
/// with its buffers, so a keep-alive exchange allocates nothing.
#[derive(Debug)]
pub struct Exchange {
    /// Request half.
    pub req: ReqPhase,
    /// Response half.
    pub resp: RespPhase,
    /// Backends tried so far.
    pub attempts: u8,
    /// The upstream connection came from the keep-alive pool.
    pub reused: bool,
    /// The whole request (head and body) is in `head`: it can be sent again.
    pub replayable: bool,
    /// The parsed request.
    pub info: RequestInfo,
    /// Client bytes: the request head's buffer, then body bytes and pipelined requests.
    pub cin: Box<[u8]>,
    /// Start of the bytes of `cin` not yet consumed.
    pub cin_pos: usize,
    /// Bytes in `cin`.
    pub cin_len: usize,
    /// Body bytes being sent upstream: `cin[fwd_from..fwd_to]`.
    pub fwd_from: usize,
    /// End of the body bytes being sent.
    pub fwd_to: usize,
    /// The request body's remaining framing.
    pub req_body: Body,
    /// Rewritten request head + the body bytes that followed it.
    pub head: Vec<u8>,
    /// Bytes of `head` sent.
    pub head_sent: usize,
    /// Upstream bytes: the response head, then body bytes.
    pub uin: Box<[u8]>,
    /// Bytes in `uin`.
    pub ulen: usize,
    /// Bytes of `uin` already sent to the client (while `SendingBody`).
    pub usent: usize,
    /// The parsed response, once complete.
    pub rinfo: Option<ResponseInfo>,
    /// The response body's remaining framing.
    pub resp_body: Body,
    /// The backend sent bytes past the response: do not reuse its connection.
    pub upstream_dirty: bool,
    /// Rewritten response head + the body bytes that followed it, for the client.
    pub out: Vec<u8>,
    /// Bytes of `out` sent.
    pub out_sent: usize,
    /// Deadline of the request half (client body timeout), worker ms; 0: none.
    pub req_at: u64,
    /// Deadline of the response half (upstream read timeout), worker ms; 0: none.
    pub resp_at: u64,
}

/// A session's state.
#[derive(Debug)]
pub enum State {
    /// Reading a request head.
    Head(Head),
    /// One request/response exchange.
    Exchange(Box<Exchange>),
    /// Relaying bytes of an upgraded connection.
    Tunnel(Tunnel),
    /// An idle upstream connection in the keep-alive pool (`upstream` is the socket); a
    /// single POLLIN watches for the backend closing it.
    Pooled {
        /// The backend it belongs to.
        backend: u16,
    },
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
    /// Time of this session's live timer-heap entry (0: none).
    pub timer_at: u64,
    /// The state and its data.
    pub state: State,
}

impl State {
    /// The relay inside this state (or inside a state it keeps), consuming it.
    pub fn into_tunnel(self) -> Option<Tunnel> {
        match self {
            State::Tunnel(t) => Some(t),
            State::Reply { keep, .. } | State::Linger { keep } => {
                keep.and_then(|b| b.into_tunnel())
            }
            State::Head(_) | State::Exchange(_) | State::Pooled { .. } => None,
        }
    }
}

impl Session {
    /// The relay, if the session has one running.
    pub fn tunnel_mut(&mut self) -> Option<&mut Tunnel> {
        match &mut self.state {
            State::Tunnel(t) => Some(t),
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
