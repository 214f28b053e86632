//! Upstream source-address spreading (nginx `proxy_bind`): with the ephemeral port range
//! narrowed, tunnels past one source address's ports still connect when ringway binds
//! upstream sockets to several loopback addresses — and fail without it.
//!
//! The port range is machine-wide: the test narrows it for a second or two and restores it
//! in a guard, even when an assertion fails. It skips when /proc/sys is not writable.
mod common;
use common::*;
use std::net::SocketAddr;

const RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

struct Restore(String);
impl Drop for Restore {
    fn drop(&mut self) {
        let _ = std::fs::write(RANGE, &self.0);
    }
}

/// A WebSocket client from `src` (IP_BIND_ADDRESS_NO_PORT, so the port comes with connect).
async fn ws_from(src: &str, addr: SocketAddr) -> Result<Ws, String> {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    ringway::sys::bind_source(std::os::fd::AsRawFd::as_raw_fd(&s), src.parse().unwrap())
        .map_err(|e| e.to_string())?;
    s.set_nonblocking(true).unwrap();
    let _ = s.connect(&addr.into());
    let std: std::net::TcpStream = s.into();
    let stream = tokio::net::TcpStream::from_std(std).unwrap();
    stream.writable().await.map_err(|e| e.to_string())?;
    let (ws, _) = tokio_tungstenite::client_async(
        format!("ws://{addr}/"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(ws)
}

async fn open(p: &ringway::Server, n: usize) -> (Vec<Ws>, usize) {
    let mut ok = Vec::new();
    let mut failed = 0;
    for i in 0..n {
        // Clients spread over 127.0.0.10-17 so that they never run short of ports themselves.
        match ws_from(&format!("127.0.0.{}", 10 + i % 8), p.local_addr()).await {
            Ok(w) => ok.push(w),
            Err(_) => failed += 1,
        }
    }
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_spreading_lifts_the_port_limit() {
    let Ok(old) = std::fs::read_to_string(RANGE) else {
        eprintln!("skipped: cannot read {RANGE}");
        return;
    };
    let b = echo_backend().await;
    // Both proxies bind their listeners before the range shrinks.
    let spread = proxy(with(config(vec![b]), |c| {
        c.upstream_bind = (2..=4)
            .map(|i| format!("127.0.0.{i}").parse().unwrap())
            .collect();
    }));
    let single = proxy(config(vec![b]));
    if std::fs::write(RANGE, "41000 41149").is_err() {
        eprintln!("skipped: {RANGE} is not writable (needs root)");
        return;
    }
    let guard = Restore(old);
    // 150 ports per source address toward the one backend; 300 tunnels.
    let (held, failed) = open(&spread, 300).await;
    assert_eq!(
        (held.len(), failed),
        (300, 0),
        "3 source addresses carry 300 tunnels"
    );
    let (held1, failed1) = open(&single, 300).await;
    drop(guard);
    assert!(
        held1.len() <= 150 && failed1 >= 150,
        "one source address stops at its 150 ports: {} ok",
        held1.len()
    );
    assert_eq!(single.stats().backends[0].tunnels, held1.len() as u64);
    // Port exhaustion is local: the backend is not marked down, new tunnels work again
    // as soon as ports free up.
    drop(held1);
    assert!(eventually(10, || single.stats().sessions() == 0).await);
    let (again, f) = open(&single, 10).await;
    assert_eq!((again.len(), f), (10, 0));
    drop(held);
}
