//! TLS end to end, no proxy: `loadgen gen-cert` writes a fresh CA and leaf, `wsecho --tls-cert`
//! serves wss:// and https:// on port 0, and loadgen's TLS client (one pinned suite and group)
//! echoes, fetches and handshakes through it: full and resumed handshakes (resumption checked
//! by rustls's own verdict, not assumed), TLS 1.2, and the usage errors.

use std::path::PathBuf;

mod common;
use common::{last_json, loadgen, Echo};

/// A temporary folder, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("rw-bench-tls-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A CA and a `localhost` leaf in a fresh folder, and a TLS wsecho serving it.
fn setup(tag: &str) -> (TempDir, Echo, String, String) {
    let dir = TempDir::new(tag);
    let out = dir.0.to_str().unwrap().to_string();
    let j = last_json(&loadgen(&["gen-cert", "--out", &out]));
    assert_eq!(j["leaves"][0]["names"][0], "localhost");
    let (cert, key) = (dir.0.join("localhost.pem"), dir.0.join("localhost.key"));
    let e = Echo::start(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    let target = e.target();
    let ca = dir.0.join("ca.pem").to_str().unwrap().to_string();
    (dir, e, target, ca)
}

#[test]
fn wss_echo_and_https_get_negotiate_the_pinned_suite() {
    let (_dir, e, target, ca) = setup("echo");
    let tls = ["--tls", "--tls-ca", &ca];
    let mut args = vec!["echo", "--target", &target, "--conns", "4"];
    args.extend(["--duration", "0.3", "--warmup", "0"]);
    args.extend(tls);
    let j = last_json(&loadgen(&args));
    assert_eq!(j["connected"], 4);
    assert!(j["msgs"].as_u64().unwrap() > 0);
    assert_eq!(j["distribution"][format!("backend:{}", e.port)], 4);
    assert_eq!(j["tls"]["version"], "TLSv1.3");
    assert_eq!(j["tls"]["suite"], "TLS13_AES_128_GCM_SHA256");
    assert_eq!(j["tls"]["group"], "X25519");
    assert_eq!(j["tls"]["alpn"], "http/1.1");
    assert_eq!(j["tls"]["handshakes"], 4);

    let mut args = vec!["http", "--target", &target, "--conns", "2"];
    args.extend(["--duration", "0.3", "--warmup", "0", "--tls12"]);
    args.extend(tls);
    let j = last_json(&loadgen(&args));
    assert!(j["requests"].as_u64().unwrap() > 0);
    assert_eq!(j["errors"]["other"], 0);
    assert_eq!(j["tls"]["version"], "TLSv1.2");
    assert_eq!(j["tls"]["suite"], "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
}

#[test]
fn handshakes_full_and_really_resumed() {
    let (_dir, e, target, ca) = setup("hs");
    let pid = e.child.id().to_string();
    let run = |resume: &str, then: &str| {
        last_json(&loadgen(&[
            "handshake",
            "--target",
            &target,
            "--tls-ca",
            &ca,
            "--conns",
            "4",
            "--duration",
            "0.4",
            "--warmup",
            "0.1",
            "--resume",
            resume,
            "--then",
            then,
            "--src-ips",
            "127.0.0.2-127.0.0.4",
            "--watch-pid",
            &pid,
        ]))
    };
    let full = run("off", "close");
    assert!(full["handshakes"].as_u64().unwrap() > 0, "{full}");
    assert_eq!(full["resumed"], 0);
    assert_eq!(full["failed"]["other"], 0, "{full}");
    assert!(
        full["watched"][0]["tree_cpu_us_per_handshake"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    // Each worker's first handshake is full (before the window), the rest resume.
    let res = run("on", "get");
    let n = res["handshakes"].as_u64().unwrap();
    assert!(n > 0, "{res}");
    assert!(res["resumed_fraction"].as_f64().unwrap() > 0.9, "{res}");
    assert_eq!(
        res["failed_after_handshake"]["http_status"],
        serde_json::json!({})
    );
    assert!(res["cycles"].as_u64().unwrap() > 0);
    assert_eq!(res["tls"]["suite"], "TLS13_AES_128_GCM_SHA256");
}

#[test]
fn tls_usage_errors_exit_2() {
    let o = loadgen(&["echo", "--target", "127.0.0.1:1", "--tls"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--tls-ca"));
    let o = loadgen(&["echo", "--target", "127.0.0.1:1", "--tls12"]);
    assert_eq!(o.status.code(), Some(2));
    let o = loadgen(&[
        "echo",
        "--target",
        "127.0.0.1:1",
        "--tls",
        "--tls-ca",
        "/nonexistent/ca.pem",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let dir = TempDir::new("usage");
    let out = dir.0.join("certs");
    let o = loadgen(&[
        "gen-cert",
        "--out",
        out.to_str().unwrap(),
        "--names",
        "../evil",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!out.exists(), "nothing written for a bad name");
}
