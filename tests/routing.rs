//! nginx.conf routing through a real ringway: locations (`=`, longest prefix, `^~`,
//! regexes in order), `proxy_pass` with a URI part, several `server` blocks chosen by
//! listen address and `server_name` (exact, `*.suffix`, `default_server`), and 404 when
//! no location matches — with real WebSocket clients and plain HTTP, each backend saying
//! who it is. Configurations ringway cannot route are refused with file and line.
mod common;
use common::*;
use futures_util::StreamExt;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

/// ringway from nginx.conf text. Its `listen` lines say port 1 (nginx refuses port 0); the
/// test binds port 0 instead, so every listen address gets a free port of its own.
fn proxy_from(conf: &str) -> ringway::Server {
    let parsed = ringway::nginx_conf::parse_str(conf, "nginx.conf").expect("parses");
    let (mut cfg, _) = ringway::config::from_nginx(&parsed, "nginx.conf").expect("maps");
    cfg.pin = false;
    cfg.listen.set_port(0);
    if let Some(r) = cfg.routing.as_mut() {
        for l in &mut std::sync::Arc::make_mut(r).listens {
            l.set_port(0);
        }
    }
    proxy(cfg)
}

/// A backend that answers every request with `<port> <request line>` and closes.
async fn recorder() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(n) if n > 0 => got.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let line = String::from_utf8_lossy(&got)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_string();
                let body = format!("{} {line}\n", addr.port());
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    addr
}

/// GET `path` with Host `host` on a fresh connection; (status, body).
async fn get(addr: SocketAddr, host: &str, path: &str) -> (u16, String) {
    let (status, body) = raw_get(addr, &format!("GET {path} HTTP/1.1"), host).await;
    assert_ne!(status, 0, "GET {path}: no status line");
    (status, body)
}

/// A WebSocket through `addr` to `path`; the backend's banner (`backend:<port>`).
async fn ws_banner(addr: SocketAddr, path: &str) -> String {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}{path}"))
        .await
        .unwrap_or_else(|e| panic!("upgrade to {path}: {e}"));
    let banner = match tokio::time::timeout(T, ws.next()).await {
        Ok(Some(Ok(Message::Text(t)))) => t.to_string(),
        other => panic!("no banner on {path}: {other:?}"),
    };
    assert!(
        echo(&mut ws, Message::Text("hi".into())).await,
        "{path}: echo"
    );
    banner
}

fn upstreams(names: &[(&str, SocketAddr)]) -> String {
    names
        .iter()
        .map(|(n, a)| format!("upstream {n} {{ server {a}; }}\n"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locations_route_http_and_websockets_as_nginx_does() {
    let mut b = Vec::new();
    for _ in 0..5 {
        b.push(echo_backend().await);
    }
    let conf = format!(
        "events {{ worker_connections 256; }}\nhttp {{\n{}\
         server {{\n listen 127.0.0.1:1;\n\
         location / {{ proxy_pass http://a; }}\n\
         location /api {{ proxy_pass http://b; }}\n\
         location = /exact {{ proxy_pass http://c; }}\n\
         location ^~ /static/ {{ proxy_pass http://d; }}\n\
         location ~* \\.(png|jpg)$ {{ proxy_pass http://e; }}\n\
         }}\n}}\n",
        upstreams(&[
            ("a", b[0]),
            ("b", b[1]),
            ("c", b[2]),
            ("d", b[3]),
            ("e", b[4])
        ])
    );
    let p = proxy_from(&conf);
    let at = p.local_addr();
    let who = |i: usize| format!("backend:{}", b[i].port());
    for (path, want) in [
        ("/", 0),
        ("/x/y", 0),
        ("/api", 1),
        ("/api/v1/users?id=3", 1),
        ("/exact", 2),
        ("/exact?q=1", 2),
        ("/exact/more", 0),
        ("/static/logo.png", 3),
        ("/img/logo.PNG", 4),
        ("/api/logo.png", 4),
    ] {
        assert_eq!(get(at, "x", path).await, (200, who(want)), "GET {path}");
    }
    for (path, want) in [
        ("/chat", 0),
        ("/api/socket", 1),
        ("/exact", 2),
        ("/static/ws", 3),
    ] {
        assert_eq!(ws_banner(at, path).await, who(want), "WebSocket {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_pass_with_a_uri_rewrites_the_matched_prefix() {
    let r = recorder().await;
    let conf = format!(
        "http {{\n server {{\n listen 127.0.0.1:1;\n\
         location /api/ {{ proxy_pass http://{r}/v1/; }}\n\
         location = /old {{ proxy_pass http://{r}/new; }}\n\
         location / {{ proxy_pass http://{r}; }}\n\
         }}\n}}\n"
    );
    let p = proxy_from(&conf);
    let at = p.local_addr();
    let port = r.port();
    for (path, sent) in [
        ("/api/users?x=1", "/v1/users?x=1"),
        ("/api/", "/v1/"),
        ("/old?q=2", "/new?q=2"),
        ("/other/path", "/other/path"),
    ] {
        let (status, body) = get(at, "x", path).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(body, format!("{port} GET {sent} HTTP/1.1"), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_blocks_are_chosen_by_listen_address_and_server_name() {
    let mut b = Vec::new();
    for _ in 0..3 {
        b.push(echo_backend().await);
    }
    let conf = format!(
        "http {{\n{}\
         server {{ listen 127.0.0.1:1; server_name a.example *.wild.example; location / {{ proxy_pass http://a; }} }}\n\
         server {{ listen 127.0.0.1:1 default_server; server_name b.example; location / {{ proxy_pass http://b; }} }}\n\
         server {{ listen 127.0.0.2:1; location / {{ proxy_pass http://c; }} }}\n\
         }}\n",
        upstreams(&[("a", b[0]), ("b", b[1]), ("c", b[2])])
    );
    let p = proxy_from(&conf);
    let addrs = p.local_addrs().to_vec();
    assert_eq!(addrs.len(), 2, "two listen addresses: {addrs:?}");
    let who = |i: usize| format!("backend:{}", b[i].port());
    for (host, want) in [
        ("a.example", 0),
        ("A.Example:8080", 0),
        ("x.wild.example", 0),
        ("b.example", 1),
        ("unknown.example", 1),
    ] {
        assert_eq!(
            get(addrs[0], host, "/").await,
            (200, who(want)),
            "Host {host}"
        );
    }
    assert_eq!(get(addrs[1], "a.example", "/").await, (200, who(2)));
    assert_eq!(ws_banner(addrs[1], "/chat").await, who(2));
}

/// A request line as sent (no normalisation by the client library): (status, body).
async fn raw_get(addr: SocketAddr, request_line: &str, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{request_line}\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.trim().to_string())
        .unwrap_or_default();
    (status, body)
}

/// Locations match the path as nginx normalises it (%-decoded, `//` merged, `.`/`..`
/// resolved), so `..` cannot climb out of a rewritten prefix, and an absolute-form target
/// is routed by its own host and path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_are_normalised_before_matching_and_rewriting() {
    let (api, root, other) = (recorder().await, recorder().await, recorder().await);
    let conf = format!(
        "http {{\n\
         server {{ listen 127.0.0.1:1; location /api/ {{ proxy_pass http://{api}/v1/; }} location / {{ proxy_pass http://{root}; }} }}\n\
         server {{ listen 127.0.0.1:1; server_name other.example; location / {{ proxy_pass http://{other}; }} }}\n\
         }}\n"
    );
    let p = proxy_from(&conf);
    let at = p.local_addr();
    let (a, r, o) = (api.port(), root.port(), other.port());
    for (line, want) in [
        // Climbs out of /api/: nginx's location is `/`, which gets the URI as sent.
        (
            "GET /api/../admin HTTP/1.1",
            format!("{r} GET /api/../admin HTTP/1.1"),
        ),
        ("GET /%61pi/x HTTP/1.1", format!("{a} GET /v1/x HTTP/1.1")),
        (
            "GET //api//x?q=1 HTTP/1.1",
            format!("{a} GET /v1/x?q=1 HTTP/1.1"),
        ),
        (
            "GET /api/./a/../b%20c HTTP/1.1",
            format!("{a} GET /v1/b%20c HTTP/1.1"),
        ),
        (
            "GET http://other.example/p?x HTTP/1.1",
            format!("{o} GET /p?x HTTP/1.1"),
        ),
    ] {
        assert_eq!(raw_get(at, line, "x").await, (200, want), "{line}");
    }
    for bad in [
        "GET /../etc/passwd HTTP/1.1",
        "GET /a/%zz HTTP/1.1",
        "GET /%00 HTTP/1.1",
    ] {
        assert_eq!(raw_get(at, bad, "x").await.0, 400, "{bad}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_no_location_matches_gets_404_and_reaches_no_backend() {
    let r = recorder().await;
    let conf = format!(
        "http {{\n server {{\n listen 127.0.0.1:1;\n location /api/ {{ proxy_pass http://{r}; }}\n }}\n}}\n"
    );
    let p = proxy_from(&conf);
    let at = p.local_addr();
    assert_eq!(get(at, "x", "/elsewhere").await.0, 404);
    let (status, body) = get(at, "x", "/api/ok").await;
    assert_eq!(
        (status, body),
        (200, format!("{} GET /api/ok HTTP/1.1", r.port()))
    );
    assert!(
        eventually(5, || p.stats().backends[0].requests_total == 1).await,
        "only the routed request reached the backend"
    );
}

#[test]
fn routing_ringway_cannot_do_is_refused_with_file_and_line() {
    let base = |server: &str| {
        format!("http {{\n upstream u {{ server 127.0.0.1:1; }}\n server {{\n listen 1;\n{server}\n }}\n}}\n")
    };
    let refuse = |server: &str, line: usize, needle: &str| {
        let src = base(server);
        let msg = match ringway::nginx_conf::parse_str(&src, "nginx.conf") {
            Err(e) => e.to_string(),
            Ok(c) => ringway::config::from_nginx(&c, "nginx.conf")
                .err()
                .unwrap_or_else(|| panic!("accepted: {server}")),
        };
        assert!(
            msg.starts_with(&format!("nginx.conf:{line}:")) && msg.contains(needle),
            "{server}: {msg}"
        );
    };
    refuse(
        " server_name ~^www\\d+$;",
        5,
        "regular-expression server names",
    );
    refuse(" location /a { }", 5, "has no proxy_pass");
    refuse(
        " location ~ ^/a { proxy_pass http://u/x/; }",
        5,
        "regular-expression location",
    );
    refuse(
        " location @named { proxy_pass http://u; }",
        5,
        "named location",
    );
    refuse(
        " location ~ ([ { proxy_pass http://u; }",
        5,
        "invalid regular expression",
    );
    refuse(
        " location / { proxy_pass http://u; }\n location / { proxy_pass http://u; }",
        6,
        "duplicate location",
    );
}

/// A routing nginx.conf written to a temporary file (removed on drop).
struct ConfFile(std::path::PathBuf);

impl ConfFile {
    fn new(text: &str) -> ConfFile {
        let p = std::env::temp_dir().join(format!(
            "ringway-routing-{}-{:?}.conf",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&p, text).unwrap();
        ConfFile(p)
    }
}

impl Drop for ConfFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

const TWO_LOCATIONS: &str = "http {\n upstream a { server 127.0.0.1:1; }\n upstream b { least_conn; server 127.0.0.1:2; server 127.0.0.1:3; }\n server {\n  listen 127.0.0.1:8089;\n  server_name example.com;\n  location / { proxy_pass http://a; }\n  location /api/ { proxy_pass http://b/v2/; }\n }\n}\n";

#[test]
fn test_config_lists_every_route_and_flags_that_cannot_apply_are_refused() {
    let f = ConfFile::new(TWO_LOCATIONS);
    let bin = env!("CARGO_BIN_EXE_ringway");
    let out = std::process::Command::new(bin)
        .args(["-t", "-c"])
        .arg(&f.0)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for want in [
        ":7: location / → a (round-robin, 127.0.0.1:1)",
        ":8: location /api/ → b (least-conn, 127.0.0.1:2, 127.0.0.1:3), path /api/… sent as /v2/…",
        "server_name example.com",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let out = std::process::Command::new(bin)
        .args(["-t", "--balance", "ip-hash", "-c"])
        .arg(&f.0)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--balance cannot be combined with a configuration file that routes"),
        "{err}"
    );
}
