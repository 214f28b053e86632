//! Stickiness that spreads: cookie stickiness (set on the first response, honoured after,
//! re-set when its backend is down) and the consistent hash on a header.
mod common;
use common::*;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn get(addr: SocketAddr, extra: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!("GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).to_string()
}

fn cookie_of(resp: &str) -> Option<String> {
    resp.lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: srv="))
        .map(|v| v.split(';').next().unwrap().to_string())
}

fn backend_of(resp: &str) -> String {
    resp.lines().last().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_pins_and_spreads() {
    let mut bs = Vec::new();
    for _ in 0..4 {
        bs.push(echo_backend().await);
    }
    let p = proxy(with(config(bs.clone()), |c| {
        c.sticky_cookie = Some("srv".into())
    }));
    let mut spread: HashMap<String, usize> = HashMap::new();
    for _ in 0..40 {
        let r = get(p.local_addr(), "").await;
        let c = cookie_of(&r).expect("first response sets the cookie");
        let first = backend_of(&r);
        *spread.entry(first.clone()).or_default() += 1;
        // Every later request with the cookie lands on the same backend, without a new cookie.
        for _ in 0..3 {
            let r2 = get(p.local_addr(), &format!("Cookie: io=abc; srv={c}\r\n")).await;
            assert_eq!(backend_of(&r2), first);
            assert!(cookie_of(&r2).is_none(), "{r2}");
        }
    }
    assert_eq!(spread.len(), 4, "{spread:?}");
    assert!(
        spread.values().all(|&n| n == 10),
        "round robin under the cookie: {spread:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_cookie_re_sticks_when_its_backend_is_down() {
    let good = echo_backend().await;
    // A backend that is up for the first request, then gone.
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let flaky: SocketAddr = l.local_addr().unwrap();
    drop(l);
    let p = proxy(with(config(vec![flaky, good]), |c| {
        c.sticky_cookie = Some("srv".into())
    }));
    let flaky_id = ringway::upstream::backend_id(&flaky);
    let r = get(p.local_addr(), &format!("Cookie: srv={flaky_id:08x}\r\n")).await;
    assert_eq!(backend_of(&r), format!("backend:{}", good.port()));
    let c = cookie_of(&r).expect("re-stuck to the backend that answered");
    assert_eq!(c, format!("{:08x}", ringway::upstream::backend_id(&good)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hash_on_a_header() {
    let mut bs = Vec::new();
    for _ in 0..4 {
        bs.push(echo_backend().await);
    }
    let p = proxy(with(config(bs), |c| {
        c.balance = Bal::Hash;
        c.hash_key = ringway::http::HashKey::Header("x-user".into());
    }));
    let mut seen = HashMap::new();
    for u in 0..40 {
        let a = backend_of(&get(p.local_addr(), &format!("X-User: user{u}\r\n")).await);
        let b = backend_of(&get(p.local_addr(), &format!("X-User: user{u}\r\n")).await);
        assert_eq!(a, b, "same key, same backend");
        *seen.entry(a).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 4, "keys spread over every backend: {seen:?}");
}
