//! Active health checks (optional, off by default): one thread per server — the master's
//! in process mode, so never one per worker — asks every backend of a group with a
//! `health_check` (or `--health-check PATH`) for `GET PATH` every interval, marks it down
//! after `fails` failed checks in a row and up after `passes` good ones, in the shared
//! [`BackendHealth`] every worker reads. A plain check passes on a `2xx`/`3xx`; an
//! `upgrade` check does a full WebSocket handshake (a `101` with the right
//! `Sec-WebSocket-Accept`), then closes it with a close frame, for backends that only
//! speak WebSocket. A backend marked down gets no new clients; its tunnels are untouched.
//!
//! Blocking sockets with timeouts on a thread of its own: a check is a few packets every
//! few seconds, far from the data path.

use crate::config::HealthCheck;
use crate::shm::Counters;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The RFC 6455 sample nonce and its accept value: a fixed nonce is harmless for a check
/// (nothing is cached on it) and needs no hashing here.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// One backend to check.
#[derive(Clone, Debug)]
pub struct Target {
    /// Its backend index (of the counters' health rows).
    pub backend: usize,
    /// Its address.
    pub addr: SocketAddr,
    /// How.
    pub check: HealthCheck,
}

/// The targets of every group of `routing` that has a `health_check`.
pub fn targets(routing: &crate::config::routing::Routing, addrs: &[SocketAddr]) -> Vec<Target> {
    let mut v = Vec::new();
    for g in &routing.groups {
        let Some(check) = &g.health_check else {
            continue;
        };
        for b in g.backends.clone() {
            if let Some(&addr) = addrs.get(b) {
                v.push(Target {
                    backend: b,
                    addr,
                    check: check.clone(),
                });
            }
        }
    }
    v
}

/// The running checker; dropping it stops its thread.
#[derive(Debug)]
pub struct Checker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checker {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Checker {
    /// Start checking `targets`, writing verdicts into `counters`' health rows; `None`
    /// when there is nothing to check.
    pub fn start(targets: Vec<Target>, counters: Counters) -> Option<Checker> {
        if targets.is_empty() {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("ringway-health".into())
            .spawn(move || run(targets, counters, &s2))
            .ok()?;
        Some(Checker {
            stop,
            thread: Some(thread),
        })
    }
}

fn run(targets: Vec<Target>, counters: Counters, stop: &AtomicBool) {
    let start = Instant::now();
    // Per target: next check time, failures and passes in a row.
    let mut state: Vec<(Duration, u32, u32)> =
        targets.iter().map(|_| (Duration::ZERO, 0, 0)).collect();
    while !stop.load(Relaxed) {
        let now = start.elapsed();
        for (t, st) in targets.iter().zip(state.iter_mut()) {
            if now < st.0 || stop.load(Relaxed) {
                continue;
            }
            st.0 = now + t.check.interval;
            let h = counters.health(t.backend);
            match check_once(t) {
                Ok(()) => {
                    st.1 = 0;
                    st.2 = st.2.saturating_add(1);
                    if st.2 >= t.check.passes && h.check_down.swap(0, Relaxed) == 1 {
                        note(format_args!(
                            "health check: upstream {} passed {} check(s) in a row; marked up",
                            t.addr, st.2
                        ));
                    }
                }
                Err(why) => {
                    st.2 = 0;
                    st.1 = st.1.saturating_add(1);
                    if st.1 >= t.check.fails && h.check_down.swap(1, Relaxed) == 0 {
                        h.downs_total.fetch_add(1, Relaxed);
                        crate::log::write(
                            crate::log::Level::Error,
                            crate::log::Who::Process,
                            None,
                            format_args!(
                                "health check: upstream {} failed {} check(s) in a row ({why}); marked down: no new clients until it passes {}",
                                t.addr, st.1, t.check.passes
                            ),
                        );
                    }
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn note(msg: std::fmt::Arguments<'_>) {
    crate::log::write(
        crate::log::Level::Notice,
        crate::log::Who::Process,
        None,
        msg,
    );
}

/// One check of `t`: `Ok` when it passes, else why not.
pub fn check_once(t: &Target) -> Result<(), String> {
    let c = &t.check;
    let deadline = Instant::now() + c.timeout;
    let mut s =
        TcpStream::connect_timeout(&t.addr, c.timeout).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_nodelay(true);
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let _ = s.set_write_timeout(Some(left()));
    let req = if c.upgrade {
        format!("GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringway-health-check\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {WS_KEY}\r\n\r\n", c.path, t.addr)
    } else {
        format!("GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: ringway-health-check\r\nConnection: close\r\n\r\n", c.path, t.addr)
    };
    s.write_all(req.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = vec![0u8; 16 * 1024];
    let mut len = 0;
    loop {
        let _ = s.set_read_timeout(Some(left()));
        let n = match s.read(&mut buf[len..]) {
            Ok(0) => return Err("closed before a response head".into()),
            Ok(n) => n,
            Err(e) if Instant::now() >= deadline => {
                return Err(format!("no answer within {:?} ({e})", c.timeout))
            }
            Err(e) => return Err(format!("receive: {e}")),
        };
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                let code = resp.code.unwrap_or(0);
                if !c.upgrade {
                    return if (200..400).contains(&code) {
                        Ok(())
                    } else {
                        Err(format!("status {code}"))
                    };
                }
                let has = |name: &str, val: &str| {
                    resp.headers.iter().any(|h| {
                        h.name.eq_ignore_ascii_case(name)
                            && std::str::from_utf8(h.value)
                                .is_ok_and(|v| v.trim().eq_ignore_ascii_case(val))
                    })
                };
                if code != 101 {
                    return Err(format!("status {code} to the upgrade"));
                }
                if !has("upgrade", "websocket") || !has("sec-websocket-accept", WS_ACCEPT) {
                    return Err("a 101 without a valid WebSocket accept".into());
                }
                // Close the WebSocket properly: a masked close frame, status 1000.
                let _ = s.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8]);
                let _ = s.shutdown(std::net::Shutdown::Write);
                return Ok(());
            }
            Ok(httparse::Status::Partial) if len < buf.len() => {}
            Ok(httparse::Status::Partial) => return Err("response head too large".into()),
            Err(e) => return Err(format!("bad response: {e}")),
        }
    }
}
