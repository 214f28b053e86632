//! `loadgen hostile`: the clients a proxy meets in the wild, over and over, for `--duration`
//! seconds from `--conns` concurrent workers — garbage instead of HTTP, malformed and oversized
//! heads, request smuggling, heads and bodies that stall, connections reset in the middle of a
//! head or a tunnel, upgrades abandoned before their `101`, tunnels that never read, half-closed
//! tunnels, and (with `--down-path`) requests for an upstream that is down.
//!
//! Each cycle checks what a proxy must do: a clear status (`400`, `408`, `431`, `502`, ...) or a
//! clean close within `--timeout`; a half-closed tunnel still gets its echo, then the close. The
//! JSON counts cycles by kind and outcome and keeps the first unexpected outcomes verbatim.
//! Kinds whose client just disappears have nothing to check on this side: they exist for what
//! the proxy must not leak (the soak script reads its fds and `/metrics` afterwards).
//! Plain TCP only (`--tls` is refused).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringway_bench::client::FrameReader;
use ringway_bench::ws;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{self, r3, RunError, Target, TargetArgs};

/// At most this many unexpected outcomes are kept verbatim in the JSON.
const EXAMPLES: usize = 10;

/// At most this much of an answer is read (an answer to a hostile client is small).
const READ_LIMIT: usize = 256 * 1024;

/// `loadgen hostile` options.
#[derive(clap::Args, Debug, Clone, Serialize)]
pub struct Args {
    #[command(flatten)]
    #[serde(flatten)]
    pub target: TargetArgs,
    /// Concurrent hostile workers (each runs the kinds in turn).
    #[arg(long, default_value_t = 8)]
    pub conns: u64,
    /// Seconds to keep going.
    #[arg(long)]
    pub duration: f64,
    /// A path the proxy routes to an upstream that is down: a GET there must get 502 or 504.
    #[arg(long)]
    pub down_path: Option<String>,
}

/// One kind of hostile client.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// TLS-looking bytes instead of HTTP: 400 and a close.
    Garbage,
    /// A header name with a space in it: 400.
    BadHeaderName,
    /// A 64 KiB header: 431 (or 400).
    Oversized,
    /// Content-Length and Transfer-Encoding together: 400.
    Smuggle,
    /// Half a head, then nothing: 408 or a close, within the timeout.
    StalledHead,
    /// Connects and sends nothing: a close (408 allowed) within the timeout.
    Silent,
    /// Half a body, then nothing: any answer or none, but a close within the timeout.
    StalledBody,
    /// A good GET with garbage behind it: 200, then 400, then a close (or, from a draining
    /// proxy, a 200 saying `Connection: close`, then the close).
    GoodThenGarbage,
    /// Half a head, then a reset.
    ResetInHead,
    /// An upgrade request and a close before the 101.
    AbandonedUpgrade,
    /// A tunnel reset in the middle of a frame.
    ResetInTunnel,
    /// A tunnel sending megabytes without reading, then a reset.
    NeverReads,
    /// A tunnel whose client half-closes: the echo of its last frame, then the close.
    HalfClose,
    /// A GET for `--down-path`: 502 or 504.
    DownUpstream,
}

const KINDS: [Kind; 14] = [
    Kind::Garbage,
    Kind::BadHeaderName,
    Kind::Oversized,
    Kind::Smuggle,
    Kind::StalledHead,
    Kind::Silent,
    Kind::StalledBody,
    Kind::GoodThenGarbage,
    Kind::ResetInHead,
    Kind::AbandonedUpgrade,
    Kind::ResetInTunnel,
    Kind::NeverReads,
    Kind::HalfClose,
    Kind::DownUpstream,
];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Garbage => "garbage",
            Kind::BadHeaderName => "bad_header_name",
            Kind::Oversized => "oversized_head",
            Kind::Smuggle => "smuggling",
            Kind::StalledHead => "stalled_head",
            Kind::Silent => "silent",
            Kind::StalledBody => "stalled_body",
            Kind::GoodThenGarbage => "good_then_garbage",
            Kind::ResetInHead => "reset_in_head",
            Kind::AbandonedUpgrade => "abandoned_upgrade",
            Kind::ResetInTunnel => "reset_in_tunnel",
            Kind::NeverReads => "never_reads",
            Kind::HalfClose => "half_close",
            Kind::DownUpstream => "down_upstream",
        }
    }
}

/// Outcomes by kind, and the first unexpected ones.
#[derive(Default)]
struct Tally {
    by_kind: BTreeMap<&'static str, (u64, u64)>,
    examples: Vec<String>,
}

pub fn run(a: Args) -> Result<Value, RunError> {
    let t = a.target.resolve()?;
    if t.tls.is_some() {
        return Err(RunError::Usage(
            "hostile speaks plain TCP: drop --tls".into(),
        ));
    }
    let duration = common::secs("--duration", a.duration, false)?;
    if a.conns == 0 || a.conns > 1_000 {
        return Err(RunError::Usage("--conns must be 1..=1000".into()));
    }
    if let Some(p) = &a.down_path {
        if !p.starts_with('/') || p.contains(char::is_whitespace) {
            return Err(RunError::Usage(
                "--down-path must start with / and contain no spaces".into(),
            ));
        }
    }
    let kinds: Vec<Kind> = KINDS
        .iter()
        .copied()
        .filter(|k| a.down_path.is_some() || !matches!(k, Kind::DownUpstream))
        .collect();
    common::block_on(async move {
        let t = Rc::new(t);
        let down = Rc::new(a.down_path.clone());
        let tally = Rc::new(RefCell::new(Tally::default()));
        let t0 = Instant::now();
        let end = t0 + duration;
        let mut handles = Vec::new();
        for w in 0..a.conns as usize {
            let (t, down, tally, kinds) = (t.clone(), down.clone(), tally.clone(), kinds.clone());
            handles.push(tokio::task::spawn_local(async move {
                let mut i = w;
                while Instant::now() < end {
                    let kind = kinds[i % kinds.len()];
                    i += 1;
                    // Every cycle is bounded: its own checks use the timeout, and a cycle that
                    // still hangs past twice that is an unexpected outcome too.
                    let r = match tokio::time::timeout(
                        t.timeout * 2 + Duration::from_secs(1),
                        cycle(kind, &t, down.as_deref()),
                    )
                    .await
                    {
                        Ok(r) => r,
                        Err(_) => Err("the cycle hung past twice the timeout".into()),
                    };
                    let mut tl = tally.borrow_mut();
                    let e = tl.by_kind.entry(kind.name()).or_default();
                    match r {
                        Ok(()) => e.0 += 1,
                        Err(why) => {
                            e.1 += 1;
                            if tl.examples.len() < EXAMPLES {
                                tl.examples.push(format!("{}: {why}", kind.name()));
                            }
                        }
                    }
                }
            }));
        }
        for h in handles {
            let _ = h.await;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let tl = tally.take();
        let ok: u64 = tl.by_kind.values().map(|v| v.0).sum();
        let bad: u64 = tl.by_kind.values().map(|v| v.1).sum();
        eprintln!(
            "hostile: {} cycles in {elapsed:.1}s, {ok} as expected, {bad} unexpected",
            ok + bad
        );
        for x in &tl.examples {
            eprintln!("  unexpected: {x}");
        }
        let by_kind: BTreeMap<&str, Value> = tl
            .by_kind
            .iter()
            .map(|(k, (o, b))| (*k, json!({"expected": o, "unexpected": b})))
            .collect();
        json!({
            "subcommand": "hostile",
            "params": a,
            "elapsed_s": r3(elapsed),
            "cycles": ok + bad,
            "expected": ok,
            "unexpected": bad,
            "by_kind": by_kind,
            "examples": tl.examples,
        })
    })
}

/// One hostile client, start to end. `Err` says what the proxy did that it must not.
async fn cycle(kind: Kind, t: &Target, down: Option<&str>) -> Result<(), String> {
    let mut s = connect(t).await?;
    match kind {
        Kind::Garbage | Kind::BadHeaderName | Kind::Smuggle => {
            let (req, want) = bad_request(kind);
            write(&mut s, req).await;
            expect_answer(&mut s, t, want).await
        }
        Kind::Oversized => {
            let mut req = b"GET / HTTP/1.1\r\nHost: soak\r\nX-Big: ".to_vec();
            req.resize(req.len() + 64 * 1024, b'a');
            req.extend_from_slice(b"\r\n\r\n");
            write(&mut s, &req).await;
            expect_answer(&mut s, t, &[431, 400]).await
        }
        Kind::StalledHead => {
            write(&mut s, b"GET / HTTP/1.1\r\nHo").await;
            let got = read_to_close(&mut s, t).await?;
            status_or_nothing(&got, &[408])
        }
        Kind::Silent => {
            let got = read_to_close(&mut s, t).await?;
            status_or_nothing(&got, &[408])
        }
        Kind::StalledBody => {
            write(
                &mut s,
                b"POST / HTTP/1.1\r\nHost: soak\r\nContent-Length: 100000\r\n\r\nabc",
            )
            .await;
            read_to_close(&mut s, t).await.map(drop)
        }
        Kind::GoodThenGarbage => {
            write(
                &mut s,
                b"GET / HTTP/1.1\r\nHost: soak\r\n\r\nNOT HTTP AT ALL\r\n\r\n",
            )
            .await;
            let got = read_to_close(&mut s, t).await?;
            good_then_garbage(&got)
        }
        Kind::ResetInHead => {
            write(&mut s, b"GET / HTTP/1.1\r\nHost: so").await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            reset(s);
            Ok(())
        }
        Kind::AbandonedUpgrade => {
            write(&mut s, &ws::client_request("soak", &t.path)).await;
            Ok(())
        }
        Kind::ResetInTunnel => {
            upgrade(&mut s, t).await?;
            // A 1,000-byte binary frame of which 10 bytes arrive.
            let mut f = ws::build_frame(ws::OP_BINARY, &[7u8; 1000], Some(common::mask()));
            f.truncate(18);
            write(&mut s, &f).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
            reset(s);
            Ok(())
        }
        Kind::NeverReads => {
            upgrade(&mut s, t).await?;
            let f = ws::build_frame(ws::OP_BINARY, &vec![9u8; 256 * 1024], Some(common::mask()));
            // Until the windows and the echo's are full; then a reset.
            let _ = tokio::time::timeout(Duration::from_millis(500), async {
                for _ in 0..32 {
                    if s.write_all(&f).await.is_err() {
                        break;
                    }
                }
            })
            .await;
            reset(s);
            Ok(())
        }
        Kind::HalfClose => {
            upgrade(&mut s, t).await?;
            let payload = b"the last words before a half-close";
            let f = ws::build_frame(ws::OP_BINARY, payload, Some(common::mask()));
            write(&mut s, &f).await;
            let _ = s.shutdown().await;
            let got = read_to_close(&mut s, t).await?;
            if got.windows(payload.len()).any(|w| w == payload) {
                Ok(())
            } else {
                Err(format!(
                    "closed without echoing the last frame ({} bytes came back)",
                    got.len()
                ))
            }
        }
        Kind::DownUpstream => {
            let path = down.unwrap_or("/");
            let req = format!("GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n");
            write(&mut s, req.as_bytes()).await;
            expect_answer(&mut s, t, &[502, 504]).await
        }
    }
}

/// The bytes of a kind that is one bad request, and the statuses it must get.
fn bad_request(kind: Kind) -> (&'static [u8], &'static [u16]) {
    match kind {
        Kind::Garbage => (b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1 not http\r\n\r\n", &[400]),
        Kind::BadHeaderName => (b"GET / HTTP/1.1\r\nHost: soak\r\nBad Name: x\r\n\r\n", &[400]),
        _ => (
            b"POST / HTTP/1.1\r\nHost: soak\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            &[400],
        ),
    }
}

async fn connect(t: &Target) -> Result<TcpStream, String> {
    match tokio::time::timeout(t.timeout, TcpStream::connect(t.addr)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(format!("connect: {e}")),
        Err(_) => Err("connect timed out".into()),
    }
}

/// Writes what it can: a proxy that answers early and closes may refuse the rest, which is
/// its right (the answer is what is checked).
async fn write(s: &mut TcpStream, b: &[u8]) {
    let _ = s.write_all(b).await;
}

/// Closes with a reset (SO_LINGER 0: the close does not block, it sends RST).
fn reset(s: TcpStream) {
    let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    drop(s);
}

/// Sends an upgrade request and reads up to the end of the `101` head.
async fn upgrade(s: &mut TcpStream, t: &Target) -> Result<(), String> {
    write(s, &ws::client_request("soak", &t.path)).await;
    let head = match tokio::time::timeout(t.timeout, FrameReader::new(4096).read_head(s)).await {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => return Err(format!("no 101, the connection ended: {e}")),
        Err(_) => return Err("no 101 within the timeout".into()),
    };
    match status_of(head.as_bytes()) {
        Some(101) => Ok(()),
        _ => Err(format!("upgrade answered {:?}", head_of(head.as_bytes()))),
    }
}

/// Reads until the proxy closes (a reset counts as a close), within the timeout.
async fn read_to_close(s: &mut TcpStream, t: &Target) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + t.timeout;
    loop {
        match tokio::time::timeout_at(deadline.into(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Ok(got),
            Ok(Ok(n)) => {
                if got.len() < READ_LIMIT {
                    got.extend_from_slice(&buf[..n]);
                }
            }
            Err(_) => {
                return Err(format!(
                    "still open after {:?} ({:?})",
                    t.timeout,
                    head_of(&got)
                ))
            }
        }
    }
}

/// The proxy answers with one of `want` and closes.
async fn expect_answer(s: &mut TcpStream, t: &Target, want: &[u16]) -> Result<(), String> {
    let got = read_to_close(s, t).await?;
    match status_of(&got) {
        Some(c) if want.contains(&c) => Ok(()),
        _ => Err(format!("wanted {want:?}, got {:?}", head_of(&got))),
    }
}

/// No answer at all, or one of `want`.
fn status_or_nothing(got: &[u8], want: &[u16]) -> Result<(), String> {
    if got.is_empty() {
        return Ok(());
    }
    match status_of(got) {
        Some(c) if want.contains(&c) => Ok(()),
        _ => Err(format!("wanted {want:?} or none, got {:?}", head_of(got))),
    }
}

/// What a GET with garbage behind it must get: 200, then 400 — or, from a draining proxy (a
/// reload's old generation, a graceful stop), a 200 saying `Connection: close` and nothing
/// behind it (the garbage is never read as a request).
fn good_then_garbage(got: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(got).to_ascii_lowercase();
    let first_head = text.split("\r\n\r\n").next().unwrap_or_default();
    match (text.find("http/1.1 200"), text.rfind("http/1.1 400")) {
        (Some(a), Some(b)) if a < b => Ok(()),
        (Some(0), None) if first_head.contains("\r\nconnection: close") => Ok(()),
        _ => Err(format!(
            "wanted 200 then 400 (or a 200 with Connection: close), got {:?}",
            head_of(got)
        )),
    }
}

fn status_of(got: &[u8]) -> Option<u16> {
    let line = got.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    if !parts.next()?.starts_with("HTTP/1.") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// The first line of what came back, for a message.
fn head_of(got: &[u8]) -> String {
    let line = got.split(|&b| b == b'\r').next().unwrap_or_default();
    String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_get_with_garbage_behind_it() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhiHTTP/1.1 400 Bad Request\r\n\r\n";
        assert!(good_then_garbage(ok).is_ok());
        let draining = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi";
        assert!(good_then_garbage(draining).is_ok());
        // A keep-alive 200 and then a close: the garbage was dropped without an answer.
        let dropped = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
        assert!(good_then_garbage(dropped).is_err());
        // "Connection: close" in the body does not count.
        let body = b"HTTP/1.1 200 OK\r\nContent-Length: 19\r\n\r\n\r\nConnection: close";
        assert!(good_then_garbage(body).is_err());
        assert!(good_then_garbage(b"HTTP/1.1 400 Bad Request\r\n\r\n").is_err());
        assert!(good_then_garbage(b"").is_err());
    }

    #[test]
    fn status_lines() {
        assert_eq!(status_of(b"HTTP/1.1 431 Too Large\r\n"), Some(431));
        assert_eq!(status_of(b"HTTP/1.0 400 Bad\r\n"), Some(400));
        assert_eq!(status_of(b"garbage"), None);
        assert_eq!(status_of(b""), None);
        assert!(status_or_nothing(b"", &[408]).is_ok());
        assert!(status_or_nothing(b"HTTP/1.1 408 Timeout\r\n\r\n", &[408]).is_ok());
        assert!(status_or_nothing(b"HTTP/1.1 200 OK\r\n\r\n", &[408]).is_err());
    }
}
