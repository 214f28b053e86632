//! What a session tells the metrics and the access log: latencies, status classes,
//! failures by kind, bytes sent, and one access-log line per request and per tunnel.
//!
//! Every counter written here is this worker's own row (`shm.rs`: a relaxed load and
//! store, no locked instruction, nothing shared with another worker). The access-log
//! hooks return at once when the log is off; when it is on, an exchange keeps its request
//! line, Referer and User-Agent in a buffer that is recycled with the exchange, so
//! logging allocates nothing per request either.

use super::{Ctx, Exchange, Session, State, NO_BACKEND};
use crate::access_log::{HttpLine, TunnelLine, Writer};
use crate::config::Config;
use crate::metrics::now_us;
use crate::relay::Tunnel;
use crate::shm::{bump, BackendCounters, WorkerMore, WorkerStats};

/// A tunnel's end, as [`Tunnel::end`] records it (0: not recorded: an error, or a stop).
pub const END_CLIENT: u8 = 1;
/// The backend's direction ended first.
pub const END_BACKEND: u8 = 2;
/// The idle timeout closed it.
pub const END_TIMEOUT: u8 = 3;

/// The worker's observability tools (in [`Ctx`]).
#[derive(Debug)]
pub struct Obs {
    /// This worker's extra counters.
    pub more: &'static WorkerMore,
    /// The access log (off: writes nothing).
    pub alog: Writer,
}

impl Obs {
    /// The tools of the worker whose counters are `stats`, with the access log `cfg`
    /// asks for (off without `--access-log`).
    pub fn new(stats: &'static WorkerStats, cfg: &Config) -> std::io::Result<Obs> {
        let alog = match &cfg.access_log {
            Some(p) => Writer::new(
                crate::access_log::open(p).map_err(std::io::Error::other)?,
                cfg.access_format,
            ),
            None => Writer::off(),
        };
        Ok(Obs {
            more: &stats.more,
            alog,
        })
    }
}

impl Obs {
    /// A TLS handshake completed (`kind`: full or resumed).
    pub fn tls_handshake(&self, kind: Option<rustls::HandshakeKind>) {
        let resumed = kind == Some(rustls::HandshakeKind::Resumed);
        crate::shm::bump(&self.more.tls_handshakes[usize::from(resumed)], 1);
    }
    /// A TLS connection failed.
    pub fn tls_failed(&self) {
        crate::shm::bump(&self.more.tls_failures, 1);
    }
}

/// One exchange's timings and what the access log needs of it.
#[derive(Debug, Default)]
pub struct ExObs {
    /// The request head was complete (µs, [`now_us`]).
    pub t_req: u64,
    /// The first backend was chosen (0: none yet).
    pub t_up: u64,
    /// The current connect started.
    pub t_conn: u64,
    /// The connection was ready and the request started out.
    pub t_sent: u64,
    /// Bytes sent to the client.
    pub sent: u64,
    /// Bytes of the upgraded connection that came with the `101` head (they go out
    /// with it: the tunnel counts them as backend → client).
    pub early: u64,
    /// The response's status (0: none yet).
    pub status: u16,
    /// The access-log line is written (or not wanted).
    pub done: bool,
    /// Request line, Referer, User-Agent (access log on only), lengths in `lens`.
    pub text: Vec<u8>,
    /// Lengths of the three parts of `text`.
    pub lens: [usize; 3],
}

fn class(status: u16) -> usize {
    (status / 100).clamp(1, 5) as usize - 1
}

/// The status of one of ringway's own answers (`HTTP/1.1 503 ...`).
fn status_of(msg: &[u8]) -> u16 {
    msg.get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// The first line of a request head, and its Referer and User-Agent values.
fn parts(head: &[u8]) -> [&[u8]; 3] {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let first = lines.next().unwrap_or(&[]);
    let (mut referer, mut ua): (&[u8], &[u8]) = (&[], &[]);
    for l in lines.take_while(|l| !l.is_empty()) {
        let Some(colon) = l.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&l[..colon], l[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"referer") {
            referer = value;
        } else if name.eq_ignore_ascii_case(b"user-agent") {
            ua = value;
        }
    }
    [first, referer, ua]
}

impl ExObs {
    fn keep(&mut self, head: &[u8]) {
        self.text.clear();
        for (i, p) in parts(head).iter().enumerate() {
            let p = &p[..p.len().min(2048)];
            self.text.extend_from_slice(p);
            self.lens[i] = p.len();
        }
    }
    fn part(&self, i: usize) -> &[u8] {
        let from: usize = self.lens[..i].iter().sum();
        self.text.get(from..from + self.lens[i]).unwrap_or(&[])
    }
}

impl Ctx {
    fn bmore(&self, b: usize) -> &'static BackendCounters {
        self.bctr(b)
    }

    /// The end of a loop turn: publish the relay's byte counts, write the access log when
    /// it is due (`last`: the worker's final turn, write everything).
    pub fn turn_end(&mut self, last: bool) {
        WorkerStats::set(&self.obs.more.bytes_up, self.relay.moved[0]);
        WorkerStats::set(&self.obs.more.bytes_down, self.relay.moved[1]);
        if last {
            self.obs.alog.flush();
        } else {
            self.obs.alog.turn_end(self.now);
        }
        WorkerStats::set(&self.obs.more.access_log_errors, self.obs.alog.errors);
    }

    /// A full worker answered `msg` (its 503) straight from the accept completion, on
    /// client socket `fd`, before any request byte was read: count it, and log it with
    /// `-` for the request line it never read.
    pub fn answered_at_accept(&mut self, fd: std::os::fd::RawFd, msg: &[u8]) {
        let status = status_of(msg);
        self.count_response(status);
        if !self.obs.alog.on() {
            return;
        }
        let remote = crate::sys::peer_addr(fd)
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
        self.obs.alog.http(&HttpLine {
            remote,
            request: b"",
            status,
            bytes: msg.len() as u64,
            request_us: 0,
            upstream: None,
            upstream_us: None,
            referer: b"",
            user_agent: b"",
        });
    }

    /// A status went out to a client: count it, and the request.
    fn count_response(&self, status: u16) {
        bump(&self.obs.more.status[class(status)], 1);
        bump(&self.obs.more.requests, 1);
    }
}

impl Session {
    fn exo(&mut self) -> Option<&mut ExObs> {
        match &mut self.state {
            State::Exchange(ex) => Some(&mut ex.obs),
            _ => None,
        }
    }

    /// A request head is complete and its exchange begins.
    pub(super) fn obs_begin(&mut self, ctx: &Ctx) {
        let on = ctx.obs.alog.on();
        if let State::Exchange(ex) = &mut self.state {
            let Exchange { obs, cin, info, .. } = &mut **ex;
            *obs = ExObs {
                text: std::mem::take(&mut obs.text),
                t_req: now_us(),
                done: false,
                ..ExObs::default()
            };
            if on {
                obs.keep(&cin[..info.head_len.min(cin.len())]);
            }
        }
    }

    /// A connect to the backend starts (fresh) or a pooled connection is taken.
    pub(super) fn obs_upstream(&mut self, fresh: bool) {
        if let Some(o) = self.exo() {
            let now = now_us();
            if o.t_up == 0 {
                o.t_up = now;
            }
            if fresh {
                o.t_conn = now;
            }
        }
    }

    /// The connect to backend `b` finished with `res` (negative: an errno).
    pub(super) fn obs_connected(&mut self, b: usize, res: i32, ctx: &Ctx) {
        let m = &ctx.bmore(b).more;
        if res >= 0 {
            if let Some(o) = self.exo() {
                m.connect.observe(now_us().saturating_sub(o.t_conn));
            }
            return;
        }
        match -res {
            libc::ECONNREFUSED => bump(&m.fail_refused, 1),
            libc::ECANCELED | libc::ETIMEDOUT => bump(&m.fail_timeout, 1),
            libc::EADDRNOTAVAIL => bump(&m.fail_no_port, 1),
            _ => {}
        }
    }

    /// The request starts out on an open connection.
    pub(super) fn obs_sending(&mut self) {
        if let Some(o) = self.exo() {
            o.t_sent = now_us();
        }
    }

    /// Backend `b`'s response head is complete: latency, status class, a refused upgrade.
    pub(super) fn obs_response_head(&mut self, b: usize, status: u16, tunnel: bool, ctx: &Ctx) {
        let m = &ctx.bmore(b).more;
        let State::Exchange(ex) = &mut self.state else {
            return;
        };
        m.head.observe(now_us().saturating_sub(ex.obs.t_sent));
        bump(&m.status[class(status)], 1);
        ex.obs.status = status;
        if ex.info.upgrade && !tunnel {
            bump(&ctx.obs.more.upgrades_refused_backend, 1);
        }
    }

    /// A read timeout of backend `b` (`head`: waiting for the response head).
    pub(super) fn obs_timeout(&self, b: u16, head: bool, ctx: &Ctx) {
        if b == NO_BACKEND {
            return;
        }
        let m = &ctx.bmore(b as usize).more;
        bump(
            if head {
                &m.timeouts_head
            } else {
                &m.timeouts_body
            },
            1,
        );
    }

    /// The exchange ends (its response is complete, or it becomes a tunnel): count it
    /// and write its access-log line, once.
    pub(super) fn obs_exchange_end(&mut self, ctx: &mut Ctx) {
        let (peer, b) = (self.peer, self.backend);
        if let State::Exchange(ex) = &mut self.state {
            exchange_end(ex, peer, b, ctx);
        }
    }

    /// ringway answers `msg` itself.
    pub(super) fn obs_reply(&mut self, msg: &[u8], ctx: &mut Ctx) {
        let status = status_of(msg);
        let peer = self.peer;
        let b = self.backend;
        match &mut self.state {
            State::Exchange(ex) => {
                if ex.info.upgrade {
                    bump(&ctx.obs.more.upgrades_refused_error, 1);
                }
                ex.obs.status = status;
                ex.obs.sent = msg.len() as u64;
                exchange_end(ex, peer, b, ctx);
            }
            State::Head(h) => {
                ctx.count_response(status);
                if !ctx.obs.alog.on() {
                    return;
                }
                // A request refused before it became an exchange (503 at the limit, a bad
                // head): its first line, if it sent one.
                let head = &h.buf[..h.len];
                let [request, referer, user_agent] = parts(head);
                let upstream = (b != NO_BACKEND).then(|| ctx.ups.addrs[b as usize]);
                ctx.obs.alog.http(&HttpLine {
                    remote: peer,
                    request,
                    status,
                    bytes: msg.len() as u64,
                    request_us: 0,
                    upstream,
                    upstream_us: None,
                    referer,
                    user_agent,
                });
            }
            _ => ctx.count_response(status),
        }
    }
}

/// Exchange `ex` of client `peer` with backend `b` ends (answered, upgraded, or dropped
/// when its session is freed): count it and write its access-log line, once.
pub(super) fn exchange_end(ex: &mut Exchange, peer: std::net::IpAddr, b: u16, ctx: &mut Ctx) {
    let o = &mut ex.obs;
    if o.done || o.t_req == 0 {
        return;
    }
    o.done = true;
    // 499: the client closed before a response (nginx's code).
    let status = if o.status == 0 { 499 } else { o.status };
    ctx.count_response(status);
    if !ctx.obs.alog.on() {
        return;
    }
    let now = now_us();
    let upstream = (b != NO_BACKEND).then(|| ctx.ups.addrs[b as usize]);
    let line = HttpLine {
        remote: peer,
        request: o.part(0),
        status,
        bytes: o.sent,
        request_us: now.saturating_sub(o.t_req),
        upstream,
        upstream_us: (o.t_up != 0).then(|| now.saturating_sub(o.t_up)),
        referer: o.part(1),
        user_agent: o.part(2),
    };
    ctx.obs.alog.http(&line);
}

/// Tunnel `t` of client `peer` with backend `b` is freed: count how it ended and write
/// its access-log line.
pub(super) fn tunnel_end(t: &Tunnel, peer: std::net::IpAddr, b: u16, ctx: &mut Ctx) {
    if !t.upgraded {
        return;
    }
    let end = match t.end {
        END_CLIENT => 0,
        END_BACKEND => 1,
        END_TIMEOUT => 2,
        _ if ctx.shutting => 4,
        _ => 3,
    };
    bump(&ctx.obs.more.tunnel_ends[end], 1);
    if !ctx.obs.alog.on() {
        return;
    }
    ctx.obs.alog.tunnel(&TunnelLine {
        remote: peer,
        upstream: (b != NO_BACKEND).then(|| ctx.ups.addrs[b as usize]),
        duration_us: now_us().saturating_sub(t.started_us),
        up: t.dirs[0].bytes,
        down: t.dirs[1].bytes,
        end: crate::metrics::collect::ENDS[end],
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_parts_and_statuses() {
        let head = b"GET /a?b HTTP/1.1\r\nHost: x\r\nuser-agent:  curl/8 \r\nReferer: http://r/\r\n\r\nbody";
        let [l, r, u] = parts(head);
        assert_eq!(
            (l, r, u),
            (&b"GET /a?b HTTP/1.1"[..], &b"http://r/"[..], &b"curl/8"[..])
        );
        assert_eq!(status_of(crate::http::reply::UNAVAILABLE), 503);
        assert_eq!(class(101), 0);
        assert_eq!(class(504), 4);
    }
}
