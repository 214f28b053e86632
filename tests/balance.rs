//! Balancing over real backends: round robin exact, least-conn after unequal closes,
//! ip-hash stable per (whole) client address.
mod common;
use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use tokio::net::TcpSocket;

async fn backends(n: usize) -> Vec<SocketAddr> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(echo_backend().await);
    }
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_400_over_4_is_100_each() {
    let bs = backends(4).await;
    let p = proxy(config(bs.clone()));
    let mut held = Vec::new();
    let mut count: HashMap<String, usize> = HashMap::new();
    for _ in 0..400 {
        let (w, banner) = ws(p.local_addr()).await.unwrap();
        *count.entry(banner).or_default() += 1;
        held.push(w);
    }
    for b in &bs {
        assert_eq!(count[&format!("backend:{}", b.port())], 100, "{count:?}");
    }
    // The last banner can reach the client (it goes out with the 101) a moment before the
    // worker counts the tunnel.
    let all = || p.stats().backends.iter().all(|b| b.tunnels == 100);
    assert!(eventually(5, all).await, "{:?}", p.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_conn_refills_the_emptied_backend() {
    let bs = backends(4).await;
    let p = proxy(with(config(bs.clone()), |c| c.balance = Bal::LeastConn));
    let mut by: HashMap<String, Vec<Ws>> = HashMap::new();
    for _ in 0..8 {
        let (w, banner) = ws(p.local_addr()).await.unwrap();
        by.entry(banner).or_default().push(w);
    }
    assert!(by.values().all(|v| v.len() == 2), "even start");
    // Unequal closes: both on backend 0, one on backend 1.
    let b0 = format!("backend:{}", bs[0].port());
    let b1 = format!("backend:{}", bs[1].port());
    by.get_mut(&b0).unwrap().clear();
    by.get_mut(&b1).unwrap().pop();
    assert!(
        eventually(5, || p.stats().backends[0].active == 0
            && p.stats().backends[1].active == 1)
        .await
    );
    for _ in 0..3 {
        let (w, banner) = ws(p.local_addr()).await.unwrap();
        assert!(banner == b0 || banner == b1, "least-conn chose {banner}");
        by.entry(banner).or_default().push(w);
    }
    assert!(by.values().all(|v| v.len() == 2), "even again");
    let s = p.stats();
    assert!(s.backends.iter().all(|b| b.active == 2), "{s:?}");
}

async fn ws_from(src: &str, addr: SocketAddr) -> (Ws, String) {
    let sock = TcpSocket::new_v4().unwrap();
    sock.bind(format!("{src}:0").parse().unwrap()).unwrap();
    let stream = sock.connect(addr).await.unwrap();
    let (mut ws, _) = tokio_tungstenite::client_async(
        format!("ws://{addr}/"),
        tokio_tungstenite::MaybeTlsStream::Plain(stream),
    )
    .await
    .unwrap();
    use futures_util::StreamExt;
    let banner = match ws.next().await {
        Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => t.to_string(),
        o => panic!("{o:?}"),
    };
    (ws, banner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_hash_is_stable_per_address_and_spreads_a_24() {
    let bs = backends(4).await;
    let p = proxy(with(config(bs), |c| c.balance = Bal::IpHash));
    let mut seen: HashMap<String, String> = HashMap::new();
    for last in 2..34 {
        let src = format!("127.0.0.{last}");
        let (_w1, b1) = ws_from(&src, p.local_addr()).await;
        let (_w2, b2) = ws_from(&src, p.local_addr()).await;
        assert_eq!(b1, b2, "{src} sticks to one backend");
        seen.insert(src, b1);
    }
    let distinct: std::collections::HashSet<_> = seen.values().collect();
    assert_eq!(
        distinct.len(),
        4,
        "one /24 spreads over all 4 backends: {seen:?}"
    );
}
