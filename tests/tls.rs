//! TLS termination on real sockets, with real TLS clients (rustls through tokio-rustls,
//! and `openssl s_client` where it is installed) against certificates made by the test (a
//! CA and its leaves): the handshake in TLS 1.2 and 1.3, ALPN, SNI choosing the
//! certificate, wss with 64 MiB each way, HTTP keep-alive with pipelining and bodies,
//! `X-Forwarded-Proto: https`, hostile handshakes (garbage, a stall, plain HTTP), the
//! budget, resumption, and the start-up errors for bad certificates and keys.
mod common;
use common::*;
use futures_util::{SinkExt, StreamExt};
use ringway::tls::{CertSpec, TlsSettings};
use rustls::pki_types::{CertificateDer, ServerName};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

/// A test CA and the files of its leaves, in a directory of this test's own.
struct Pki {
    dir: PathBuf,
    ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Pki {
    fn new(tag: &str) -> Pki {
        let dir = std::env::temp_dir().join(format!("ringway-tls-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "ringway test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertifiedIssuer::self_signed(params, key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    /// A leaf for `names`, valid from `from` to `until` (years; default: now ± a year):
    /// (certificate + chain, key).
    fn leaf_dated(&self, file: &str, names: &[&str], until: Option<i32>) -> (PathBuf, PathBuf) {
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        if let Some(y) = until {
            params.not_before = rcgen::date_time_ymd(y - 1, 1, 1);
            params.not_after = rcgen::date_time_ymd(y, 1, 1);
        }
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, format!("{}{}", cert.pem(), self.ca.pem())).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn leaf(&self, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        self.leaf_dated(file, names, None)
    }

    fn der_of(&self, file: &str) -> CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::pem_file_iter(self.dir.join(format!("{file}.pem")))
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
    }

    /// A client trusting this CA, offering ALPN http/1.1, in `versions`.
    fn client(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut c = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A proxy speaking TLS with certificate pairs `certs` (the first is the default).
fn tls_proxy(c: Config, certs: &[(PathBuf, PathBuf)]) -> ringway::Server {
    let mut c = c;
    let mut s = TlsSettings::new(c.listen);
    s.certs = certs
        .iter()
        .map(|(cert, key)| CertSpec {
            cert: cert.clone(),
            key: key.clone(),
            names: Vec::new(),
            origin: "test".into(),
        })
        .collect();
    c.tls = vec![s];
    proxy(c)
}

fn all_versions() -> Vec<&'static rustls::SupportedProtocolVersion> {
    vec![&rustls::version::TLS13, &rustls::version::TLS12]
}

async fn connect(
    addr: std::net::SocketAddr,
    cfg: Arc<rustls::ClientConfig>,
    sni: &str,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_string()).unwrap();
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .map_err(|_| std::io::Error::other("handshake timed out"))?
}

type Wss = tokio_tungstenite::WebSocketStream<TlsStream<TcpStream>>;

/// A wss client through `addr` (SNI `localhost`), with the backend's banner.
async fn wss(addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>) -> (Wss, String) {
    let tls = connect(addr, cfg, "localhost")
        .await
        .expect("TLS handshake");
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/chat", tls)
        .await
        .expect("upgrade over TLS");
    let banner = match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
        other => panic!("no banner: {other:?}"),
    };
    (ws, banner)
}

/// Read one HTTP/1.1 response (Content-Length framed) from `s`, after `buf`'s leftovers.
async fn response<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    buf: &mut Vec<u8>,
) -> (String, Vec<u8>) {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_string();
            let len = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.unwrap();
                assert!(n > 0, "closed mid-body");
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return (head, body);
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut chunk))
            .await
            .expect("response in time")
            .unwrap();
        assert!(
            n > 0,
            "closed before a response: {:?}",
            String::from_utf8_lossy(buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A keep-alive HTTP backend that answers each request with what it saw: the
/// `X-Forwarded-Proto` header and the body length.
async fn recording_backend() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 16384];
                    let end = loop {
                        if let Some(e) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break e;
                        }
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let header = |name: &str| {
                        head.lines()
                            .find_map(|l| l.strip_prefix(&format!("{name}: ")).map(str::to_string))
                    };
                    let proto = header("x-forwarded-proto").unwrap_or_default();
                    let len: usize = header("content-length")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    while buf.len() < end + 4 + len {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.drain(..end + 4 + len);
                    let body = format!("proto={proto} body={len}\n");
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if s.write_all(resp.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// Connect to `addr` without TLS, send `bytes`, and read until the proxy closes (at most
/// 5 s): what it answered, and whether it closed in time.
async fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> (Vec<u8>, bool) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut got = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    (got, r.is_ok())
}

#[tokio::test]
async fn handshakes_in_tls_1_2_and_1_3_with_alpn_and_resumption() {
    let pki = Pki::new("versions");
    let pair = pki.leaf("localhost", &["localhost"]);
    let b = recording_backend().await;
    let p = tls_proxy(config(vec![b]), &[pair]);
    for (v, want) in [
        (&rustls::version::TLS13, rustls::ProtocolVersion::TLSv1_3),
        (&rustls::version::TLS12, rustls::ProtocolVersion::TLSv1_2),
    ] {
        let cfg = pki.client(&[v]);
        for round in 0..2 {
            let mut s = connect(p.local_addr(), cfg.clone(), "localhost")
                .await
                .unwrap();
            let (_, c) = s.get_ref();
            assert_eq!(c.protocol_version(), Some(want));
            assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));
            s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .await
                .unwrap();
            let (head, body) = response(&mut s, &mut Vec::new()).await;
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert_eq!(String::from_utf8_lossy(&body), "proto=https body=0\n");
            let kind = s.get_ref().1.handshake_kind();
            if round == 1 {
                // The client kept the session (a ticket, or a TLS 1.2 session id).
                assert_eq!(kind, Some(rustls::HandshakeKind::Resumed), "{want:?}");
            }
        }
    }
    // The proxy counted them: a full and a resumed handshake per version.
    assert!(eventually(5, || p.stats().workers[0].tls_handshakes == [2, 2]).await);

    // A client that says goodbye (close_notify, then its FIN) right after its handshake
    // still gets the session tickets sent after it, and resumes next time.
    let cfg = pki.client(&[&rustls::version::TLS13]);
    for round in 0..3 {
        let mut s = connect(p.local_addr(), cfg.clone(), "localhost")
            .await
            .unwrap();
        let kind = s.get_ref().1.handshake_kind();
        s.shutdown().await.unwrap();
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
        assert!(matches!(r, Ok(Ok(0))), "a clean end: {r:?}");
        let want = if round == 0 {
            rustls::HandshakeKind::Full
        } else {
            rustls::HandshakeKind::Resumed
        };
        assert_eq!(kind, Some(want), "round {round}");
    }
}

#[tokio::test]
async fn sni_chooses_the_certificate() {
    let pki = Pki::new("sni");
    let a = pki.leaf("a", &["a.test"]);
    let b = pki.leaf("b", &["b.test", "*.b.test"]);
    let back = recording_backend().await;
    let p = tls_proxy(config(vec![back]), &[a, b]);
    let cfg = pki.client(&all_versions());
    for (sni, want) in [("a.test", "a"), ("b.test", "b"), ("x.b.test", "b")] {
        let s = connect(p.local_addr(), cfg.clone(), sni).await.unwrap();
        let got = s.get_ref().1.peer_certificates().unwrap()[0].clone();
        assert_eq!(got, pki.der_of(want), "SNI {sni}");
    }
    // A name no certificate has gets the default (the first): its name does not match,
    // so a verifying client refuses it.
    let e = connect(p.local_addr(), cfg, "other.test")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("certificate"), "{e}");
}

#[tokio::test]
async fn wss_carries_64_mib_each_way_byte_exact() {
    let pki = Pki::new("wss");
    let pair = pki.leaf("localhost", &["localhost"]);
    let b = echo_backend().await;
    let p = tls_proxy(config(vec![b]), &[pair]);
    let (ws, banner) = wss(p.local_addr(), pki.client(&all_versions())).await;
    assert!(banner.starts_with("backend:"));
    let (mut tx, mut rx, _) = random_round_trip(ws, 64 << 20, 11, "wss").await;
    // A clean close both ways, then the tunnel and its slots are gone.
    tx.send(Message::Close(None)).await.unwrap();
    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::from_secs(5), rx.next()).await {}
    drop((tx, rx));
    assert!(eventually(10, || p.stats().sessions() == 0).await);
    assert_eq!(p.stats().workers[0].slots_used, 2);
}

#[tokio::test]
async fn http_keep_alive_pipelining_and_bodies_over_tls() {
    let pki = Pki::new("http");
    let pair = pki.leaf("localhost", &["localhost"]);
    let b = recording_backend().await;
    let p = tls_proxy(config(vec![b]), &[pair]);
    let mut s = connect(p.local_addr(), pki.client(&all_versions()), "localhost")
        .await
        .unwrap();
    let mut buf = Vec::new();
    // One after the other on the kept-alive connection, a body of 100 KiB among them.
    for i in 0..5 {
        let body = vec![b'x'; if i == 2 { 100 * 1024 } else { i * 10 }];
        let req = format!(
            "POST /p{i} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        s.write_all(&body).await.unwrap();
        let (head, got) = response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(
            String::from_utf8_lossy(&got),
            format!("proto=https body={}\n", body.len())
        );
    }
    // Three pipelined in one write (one TLS record), answered in order.
    s.write_all(
        b"GET /a HTTP/1.1\r\nHost: localhost\r\n\r\nGET /b HTTP/1.1\r\nHost: localhost\r\n\r\nGET /c HTTP/1.1\r\nHost: localhost\r\n\r\n",
    )
    .await
    .unwrap();
    for _ in 0..3 {
        let (head, got) = response(&mut s, &mut buf).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert_eq!(String::from_utf8_lossy(&got), "proto=https body=0\n");
    }
    // Connection: close → the answer, then close_notify and the end.
    s.write_all(b"GET /last HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (head, _) = response(&mut s, &mut buf).await;
    assert!(
        head.to_ascii_lowercase().contains("connection: close"),
        "{head}"
    );
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(
        matches!(r, Ok(Ok(0))),
        "a clean TLS end (close_notify), not a bare TCP close: {r:?}"
    );
    // The client's session is gone (what stays is the pooled upstream connection).
    let gone = || {
        let w = &p.stats().workers[0];
        w.sessions == w.pooled && w.slots_used == 2 + w.pooled
    };
    assert!(eventually(10, gone).await, "{}", p.stats().render());
}

#[tokio::test]
async fn hostile_handshakes_are_closed_and_free_their_slots() {
    let pki = Pki::new("hostile");
    let pair = pki.leaf("localhost", &["localhost"]);
    let b = echo_backend().await;
    let p = tls_proxy(
        with(config(vec![b]), |c| {
            c.head_timeout = Duration::from_millis(800)
        }),
        &[pair],
    );
    let addr = p.local_addr();
    let cfg = pki.client(&all_versions());
    let (mut good, _) = wss(addr, cfg.clone()).await;

    // Garbage where a ClientHello belongs: a handshake record of nonsense.
    let (sink, closed) = raw_exchange(addr, b"\x16\x03\x01\x00\x10garbage-garbage!").await;
    assert!(closed, "closed at once after garbage");
    assert!(
        sink.first() == Some(&0x15) || sink.is_empty(),
        "an alert record or nothing: {sink:?}"
    );

    // Half a ClientHello, then silence: closed by the head timeout.
    let t0 = std::time::Instant::now();
    let (_, closed) = raw_exchange(addr, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03").await;
    assert!(closed, "a stalled handshake is closed");
    assert!(
        t0.elapsed() >= Duration::from_millis(500),
        "by the head timeout, not at once"
    );

    // Plain HTTP on the TLS port: nginx's "plain HTTP request was sent to HTTPS port".
    let (got, _) = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(
        got.contains("plain HTTP request was sent to HTTPS port"),
        "{got}"
    );

    // The good tunnel never noticed; every slot but its two is back.
    assert!(echo(&mut good, Message::Text("still here".into())).await);
    assert!(eventually(5, || p.stats().sessions() == 1).await);
    assert_eq!(p.stats().workers[0].slots_used, 2 + 2);
    assert!(
        p.stats().workers[0].errors >= 1,
        "the 400 counts as ringway's own answer"
    );
}

#[tokio::test]
async fn a_tls_client_takes_two_slots_and_past_the_limit_is_closed() {
    let pki = Pki::new("budget");
    let pair = pki.leaf("localhost", &["localhost"]);
    let b = echo_backend().await;
    // (8 - 2) / 2 = 3 clients.
    let p = tls_proxy(with(config(vec![b]), |c| c.worker_connections = 8), &[pair]);
    let cfg = pki.client(&all_versions());
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(wss(p.local_addr(), cfg.clone()).await.0);
    }
    assert_eq!(p.stats().workers[0].slots_used, 8);
    // The fourth is closed before its handshake (no 503 over a handshake at the limit).
    assert!(connect(p.local_addr(), cfg.clone(), "localhost")
        .await
        .is_err());
    for w in held.iter_mut() {
        assert!(echo(w, Message::Text("held".into())).await);
    }
    drop(held);
    assert!(eventually(10, || p.stats().sessions() == 0).await);
    assert_eq!(p.stats().workers[0].slots_used, 2);
    let (mut w, _) = wss(p.local_addr(), cfg).await;
    assert!(echo(&mut w, Message::Text("room again".into())).await);
}

#[tokio::test]
async fn openssl_s_client_talks_to_it() {
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_err()
    {
        eprintln!("skipped: openssl is not installed (apt-get install openssl)");
        return;
    }
    let pki = Pki::new("openssl");
    let pair = pki.leaf("localhost", &["localhost"]);
    let b = recording_backend().await;
    let p = tls_proxy(config(vec![b]), &[pair]);
    let addr = p.local_addr();
    let ca = pki.dir.join("ca.pem");
    let out = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut child = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                "localhost",
            ])
            .args(["-alpn", "http/1.1", "-verify_return_error", "-CAfile"])
            .arg(&ca)
            .arg("-ign_eof")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    assert!(text.contains("ALPN protocol: http/1.1"), "{text}");
    assert!(text.contains("proto=https body=0"), "{text}");
}

fn ringway(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn bad_certificates_and_keys_stop_the_start_with_one_line() {
    let pki = Pki::new("errors");
    let (cert, key) = pki.leaf("good", &["localhost"]);
    let (_, other_key) = pki.leaf("other", &["localhost"]);
    let (old, old_key) = pki.leaf_dated("old", &["localhost"], Some(2020));
    let s = |p: &PathBuf| p.display().to_string();
    let missing = pki.dir.join("missing.pem");
    let cases = [
        (s(&missing), s(&key), "cannot read the certificate"),
        (
            s(&cert),
            s(&pki.dir.join("missing.key")),
            "cannot read the private key",
        ),
        (s(&cert), s(&other_key), "does not match the certificate"),
        (s(&old), s(&old_key), "expired on"),
        (s(&key), s(&key), "holds no certificate"),
    ];
    for (c, k, want) in cases {
        let (code, err) = ringway(&[
            "-t",
            "--upstream",
            "127.0.0.1:9",
            "--tls-cert",
            &c,
            "--tls-key",
            &k,
        ]);
        assert_ne!(code, 0, "{want}: {err}");
        assert!(err.contains(want), "{want}: {err}");
        assert!(err.trim().lines().count() <= 2, "one clear line: {err}");
    }
    let (code, out) = ringway(&["-t", "--upstream", "127.0.0.1:9", "--tls-cert", &s(&cert)]);
    assert_ne!(code, 0);
    assert!(out.contains("--tls-key"), "{out}");
    // The good pair passes -t, and says how TLS runs.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .args([
            "-t",
            "--upstream",
            "127.0.0.1:9",
            "--tls-cert",
            &s(&cert),
            "--tls-key",
            &s(&key),
        ])
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(all.contains("TLS on 127.0.0.1:8080"), "{all}");
    assert!(all.contains("TLS record layer"), "{all}");
}

#[tokio::test]
async fn kernel_tls_takes_the_tunnel_over_where_the_kernel_has_it() {
    if !ringway::tls::ktls::probe().available() {
        eprintln!("skipped: {}", ringway::tls::ktls::MISSING.describe());
        return;
    }
    let pki = Pki::new("ktls");
    let pair = pki.leaf("localhost", &["localhost"]);
    let b = echo_backend().await;
    let p = tls_proxy(config(vec![b]), &[pair]);
    let (mut ws, _) = wss(p.local_addr(), pki.client(&[&rustls::version::TLS13])).await;
    for n in [1usize, 100, 70_000, 1 << 20] {
        assert!(
            echo(&mut ws, Message::Binary(vec![7u8; n])).await,
            "{n} bytes"
        );
    }
    assert_eq!(
        p.stats().workers[0].tls_kernel,
        1,
        "the tunnel went to the kernel"
    );
}

/// The binary on an nginx.conf with `listen ... ssl` in process mode (2 worker processes),
/// its stdout/stderr collected; killed on drop.
struct Bin {
    child: std::process::Child,
    addr: std::net::SocketAddr,
    err: Arc<std::sync::Mutex<String>>,
}

impl Bin {
    /// SIGHUP: reload.
    fn hup(&self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).unwrap();
    }
}

impl Drop for Bin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_bin(conf: &std::path::Path) -> Bin {
    use std::io::{BufRead, Read};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ringway"))
        .arg("-c")
        .arg(conf)
        .args(["--listen", "127.0.0.1:0", "--no-pin"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let err = Arc::new(std::sync::Mutex::new(String::new()));
    let e = err.clone();
    let mut se = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = se.read(&mut buf) {
            if n == 0 {
                break;
            }
            e.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut so = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let addr = loop {
        line.clear();
        assert!(
            so.read_line(&mut line).unwrap() > 0,
            "{}",
            err.lock().unwrap()
        );
        if let Some(r) = line.strip_prefix("ringway: listening on ") {
            break r.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || {
        let mut sink = String::new();
        while so.read_line(&mut sink).unwrap_or(0) > 0 {
            sink.clear();
        }
    });
    Bin { child, addr, err }
}

#[tokio::test]
async fn process_mode_serves_tls_and_a_reload_with_a_bad_key_keeps_the_old_certificate() {
    let pki = Pki::new("reload");
    let (cert, key) = pki.leaf("localhost", &["localhost"]);
    let b = echo_backend().await;
    let conf = pki.dir.join("ringway.conf");
    std::fs::write(
        &conf,
        format!(
            "worker_processes 2;\nringway_worker_mode process;\nevents {{ worker_connections 64; }}\nhttp {{\n map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}\n server {{ listen 127.0.0.1:1 ssl; ssl_certificate localhost.pem; ssl_certificate_key localhost.key;\n  location / {{ proxy_pass http://{b}; proxy_http_version 1.1; proxy_set_header Upgrade $http_upgrade; proxy_set_header Connection $connection_upgrade; }} }}\n}}\n"
        ),
    )
    .unwrap();
    let p = start_bin(&conf);
    let cfg = pki.client(&all_versions());
    // Both worker processes answer (8 clients: the kernel spreads them over the two).
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(wss(p.addr, cfg.clone()).await.0);
    }
    for w in held.iter_mut() {
        assert!(echo(w, Message::Binary(vec![3u8; 40_000])).await);
    }
    // Every worker process opens every ticket (one secret per generation): after the first,
    // full, handshake every connection resumes, whichever process the kernel picks.
    let resuming = pki.client(&[&rustls::version::TLS13]);
    let mut kinds = Vec::new();
    for _ in 0..10 {
        let mut s = connect(p.addr, resuming.clone(), "localhost")
            .await
            .unwrap();
        kinds.push(s.get_ref().1.handshake_kind());
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut sink = Vec::new();
        let _ = s.read_to_end(&mut sink).await;
    }
    let resumed = kinds
        .iter()
        .filter(|k| **k == Some(rustls::HandshakeKind::Resumed))
        .count();
    assert_eq!(resumed, 9, "{kinds:?}");
    let first = pki.der_of("localhost");
    // A key that does not match: the reload is refused, the old certificate serves on.
    let (_, other_key) = pki.leaf("other", &["localhost"]);
    std::fs::copy(&other_key, &key).unwrap();
    p.hup();
    assert!(
        eventually(10, || p.err.lock().unwrap().contains("reload failed")).await,
        "{}",
        p.err.lock().unwrap()
    );
    let line = p.err.lock().unwrap().clone();
    assert!(line.contains("does not match the certificate"), "{line}");
    let s = connect(p.addr, cfg.clone(), "localhost").await.unwrap();
    assert_eq!(s.get_ref().1.peer_certificates().unwrap()[0], first);
    // A good new pair: new clients get it, held tunnels keep going.
    let (new_cert, new_key) = pki.leaf("renewed", &["localhost"]);
    std::fs::copy(&new_cert, &cert).unwrap();
    std::fs::copy(&new_key, &key).unwrap();
    p.hup();
    let renewed = pki.der_of("renewed");
    let mut got_new = false;
    for _ in 0..50 {
        let s = connect(p.addr, cfg.clone(), "localhost").await.unwrap();
        if s.get_ref().1.peer_certificates().unwrap()[0] == renewed {
            got_new = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(got_new, "the reloaded certificate serves new clients");
    for w in held.iter_mut() {
        assert!(echo(w, Message::Text("across the reload".into())).await);
    }
}

#[tokio::test]
async fn a_tunnels_ends_cross_as_close_notify_and_half_close() {
    // A backend that answers the upgrade, reads until the client's end, then says "bye"
    // and closes.
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let b = l.local_addr().unwrap();
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut head = Vec::new();
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).await.unwrap();
            head.extend_from_slice(&buf[..n]);
        }
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
            .await
            .unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).await.unwrap();
        seen.lock().unwrap().extend_from_slice(&rest);
        s.write_all(b"bye").await.unwrap();
    });
    let pki = Pki::new("ends");
    let pair = pki.leaf("localhost", &["localhost"]);
    let p = tls_proxy(config(vec![b]), &[pair]);
    let mut s = connect(p.local_addr(), pki.client(&all_versions()), "localhost")
        .await
        .unwrap();
    s.write_all(b"GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut b = [0u8; 1024];
        let n = s.read(&mut b).await.unwrap();
        assert!(n > 0);
        head.extend_from_slice(&b[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    s.write_all(b"last words").await.unwrap();
    // close_notify and our FIN: the backend reads the end after the bytes...
    s.shutdown().await.unwrap();
    // ...says bye, closes, and that reaches us as data then a clean TLS end.
    let mut rest = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut rest)).await;
    assert!(matches!(r, Ok(Ok(_))), "a clean end (close_notify): {r:?}");
    assert_eq!(rest, b"bye");
    assert_eq!(&got.lock().unwrap()[..], b"last words");
    drop(s);
    assert!(eventually(10, || p.stats().sessions() == 0).await);
    assert_eq!(p.stats().workers[0].slots_used, 2);
}

#[tokio::test]
async fn a_plain_and_a_tls_server_in_one_nginx_conf() {
    let pki = Pki::new("mixed");
    let (cert, key) = pki.leaf("localhost", &["localhost"]);
    let b = recording_backend().await;
    let conf = format!(
        "events {{ worker_connections 64; }}\nhttp {{\n ssl_protocols TLSv1.3;\n \
         proxy_set_header X-Forwarded-Proto $scheme;\n \
         server {{ listen 127.0.0.1:1; location / {{ proxy_pass http://{b}; }} }}\n \
         server {{ listen 127.0.0.2:1 ssl; server_name localhost; ssl_certificate {}; ssl_certificate_key {};\n  \
         location / {{ proxy_pass http://{b}; }} }}\n}}\n",
        cert.display(),
        key.display()
    );
    let parsed = ringway::nginx_conf::parse_str(&conf, "nginx.conf").expect("parses");
    let (mut cfg, _) = ringway::config::from_nginx(&parsed, "nginx.conf").expect("maps");
    cfg.pin = false;
    // nginx refuses port 0: the file says 1, the test binds free ports.
    if let Some(r) = cfg.routing.as_mut() {
        for l in &mut Arc::make_mut(r).listens {
            l.set_port(0);
        }
    }
    for t in &mut cfg.tls {
        t.addr.set_port(0);
    }
    let p = proxy(cfg);
    let (plain, tls) = (p.local_addrs()[0], p.local_addrs()[1]);
    assert_eq!(tls.ip().to_string(), "127.0.0.2");
    // Plain HTTP on the plain server...
    let mut s = TcpStream::connect(plain).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut s, &mut Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(String::from_utf8_lossy(&body), "proto=http body=0\n");
    // ...TLS 1.3 only on the TLS one...
    let mut s = connect(tls, pki.client(&all_versions()), "localhost")
        .await
        .unwrap();
    assert_eq!(
        s.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let (head, body) = response(&mut s, &mut Vec::new()).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(String::from_utf8_lossy(&body), "proto=https body=0\n");
    assert!(
        connect(tls, pki.client(&[&rustls::version::TLS12]), "localhost")
            .await
            .is_err(),
        "ssl_protocols TLSv1.3: no TLS 1.2"
    );
    // ...and neither speaks the other's language.
    assert!(connect(plain, pki.client(&all_versions()), "localhost")
        .await
        .is_err());
    let (got, _) = raw_exchange(tls, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(String::from_utf8_lossy(&got).starts_with("HTTP/1.1 400"));
}
