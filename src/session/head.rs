//! State `Head`: reading a request head (and, between requests of a kept-alive
//! connection, waiting for the next one), then parsing it with the request rules.
//!
//! A complete head starts an exchange ([`Session::begin_exchange`]); a bad one is
//! answered (400, 417, 431); a partial one waits for more bytes, the buffer doubling up
//! to `--max-head`.

use super::{ms, Ctx, Session, State, Step, HEAD_FIRST};
use crate::config::routing;
use crate::http::{self, reply, ClientError, Routed};
use crate::ring::{Op, Side};
use std::io;

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

impl Head {
    /// An empty head buffer of the first size, at most `max_head`.
    pub fn new(max_head: usize) -> Head {
        Head {
            buf: vec![0u8; HEAD_FIRST.min(max_head)].into_boxed_slice(),
            len: 0,
            idle: false,
        }
    }
}

/// Double a full receive buffer, up to `max` bytes (the caller checks the limit by parsing).
pub fn grow(buf: &mut Box<[u8]>, filled: usize, max: usize) {
    if filled == buf.len() && buf.len() < max {
        let mut v = std::mem::take(buf).into_vec();
        v.resize((v.len() * 2).max(HEAD_FIRST).min(max), 0);
        *buf = v.into_boxed_slice();
    }
}

impl Session {
    /// Receive (more of) the request head.
    pub fn submit_head_recv(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        let State::Head(h) = &mut self.state else {
            return Ok(Step::Continue);
        };
        grow(&mut h.buf, h.len, ctx.cfg.max_head);
        // SAFETY: the buffer is the session's heap memory, untouched until this receive
        // completes; the session lives until then (freed only with nothing in flight).
        unsafe {
            self.conn.recv(
                &mut ctx.ring,
                Side::Client,
                &mut h.buf[h.len..],
                Op::HeadRecv,
            )?
        };
        Ok(Step::Continue)
    }

    pub(super) fn on_head_recv(&mut self, res: i32, ctx: &mut Ctx) -> io::Result<Step> {
        let State::Head(h) = &mut self.state else {
            return Ok(Step::Continue);
        };
        if res <= 0 {
            // Closed (or failed) before a whole head: nothing to answer. Between two
            // requests of a kept-alive connection this is the normal end.
            return Ok(Step::Close);
        }
        h.len += res as usize;
        if h.idle {
            // The first byte of the next request: the head timeout applies from now.
            h.idle = false;
            self.conn.deadline = ctx.now + ms(ctx.cfg.head_timeout);
        }
        self.parse_head(ctx)
    }

    /// Parse the head in the session's buffer: answer an error, wait for more, or start
    /// the exchange.
    pub fn parse_head(&mut self, ctx: &mut Ctx) -> io::Result<Step> {
        let peer = self.peer;
        let State::Head(h) = &mut self.state else {
            return Ok(Step::Continue);
        };
        let mut out = std::mem::take(&mut ctx.head_scratch);
        let (routing, rules, listen) = (&*ctx.routing, &ctx.rules[..], self.listen as usize);
        let (path, target) = (&mut ctx.path_scratch, &mut ctx.target_scratch);
        let matching = ctx.matching;
        let https = self.conn.tls.is_some();
        // The route is chosen once per request head, by the head's own target and Host.
        let router = move |t: &str, host: Option<&[u8]>| {
            // Moved out of the closure (not reborrowed), so the answer may borrow them.
            let (path, target) = (path, target);
            let mut r = route_request(routing, rules, matching, listen, path, target, t, host)?;
            r.https = https;
            Ok(r)
        };
        let parsed =
            http::parse_request_with(&h.buf[..h.len], ctx.cfg.max_head, peer, router, &mut out);
        let r = match parsed {
            Ok(None) => self.submit_head_recv(ctx),
            Err(e) => {
                let (msg, why) = match e {
                    ClientError::TooLarge => (reply::TOO_LARGE, "request head too large"),
                    ClientError::Expectation => {
                        (reply::EXPECTATION_FAILED, "Expect other than 100-continue")
                    }
                    ClientError::Malformed(w) => (reply::BAD_REQUEST, w),
                    ClientError::NoRoute => (reply::NOT_FOUND, "no location matches the path"),
                };
                ctx.client_info(
                    peer,
                    format_args!("{why}; answering {}", &String::from_utf8_lossy(&msg[9..12])),
                );
                Ok(Step::Reply(msg))
            }
            Ok(Some(info)) => self.begin_exchange(info, &out, ctx),
        };
        ctx.head_scratch = out;
        r
    }
}

/// The route of a request with target `t` and Host `host` that came in on listen address
/// `listen`, on the path as nginx normalises it (into `path`), and the target to forward
/// instead of the client's (into `target`): the `proxy_pass` URI rewrite — the matched
/// prefix of the normalised path replaced, the rest escaped, the query kept — or the
/// origin form of an absolute-form target. Without a routing table: route 0, untouched.
#[allow(clippy::too_many_arguments)]
fn route_request<'r>(
    routing: &'r routing::Routing,
    rules: &'r [http::RequestRules],
    matching: bool,
    listen: usize,
    path: &'r mut Vec<u8>,
    target: &'r mut Vec<u8>,
    t: &str,
    host: Option<&[u8]>,
) -> Result<Routed<'r>, ClientError> {
    if !matching {
        return Ok(Routed {
            route: 0,
            rules: &rules[0],
            target: None,
            https: false,
        });
    }
    let r = routing
        .route_with(listen, host, t, path)
        .map_err(|_| ClientError::Malformed("bad request path (a %-escape, a NUL, or .. above /)"))?
        .ok_or(ClientError::NoRoute)?;
    let rule = &rules[r];
    let (_, origin) = routing::split_absolute(t, host);
    target.clear();
    let rewritten = match &rule.pass_uri {
        Some((prefix, with)) => {
            target.extend_from_slice(with.as_bytes());
            routing::escape_path(path.get(prefix.len()..).unwrap_or_default(), target);
            if let Some(q) = origin.find('?') {
                target.extend_from_slice(&origin.as_bytes()[q..]);
            }
            true
        }
        None if origin.len() != t.len() => {
            target.extend_from_slice(origin.as_bytes());
            true
        }
        None => false,
    };
    let target: &'r Vec<u8> = target;
    Ok(Routed {
        route: r as u16,
        rules: rule,
        target: rewritten.then_some(&target[..]),
        https: false,
    })
}
