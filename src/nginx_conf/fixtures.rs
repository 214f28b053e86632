//! Test fixtures shared by the nginx_conf unit tests: the seed config and parse helpers.

use super::{parse_str, ConfError, NginxConf};

pub(super) const SEED: &str = r#"worker_processes 1;            # or auto
worker_rlimit_nofile 20000;
events { worker_connections 1024; }
http {
    map $http_upgrade $connection_upgrade { default upgrade; '' close; }
    upstream nodes {
        least_conn;
        server 127.0.0.1:9001;
        server 127.0.0.1:9002 max_fails=3 fail_timeout=10s weight=1;
        keepalive 32;
    }
    server {
        listen 8080;
        server_name _;
        location / {
            proxy_pass http://nodes;
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header Host $host;
            proxy_read_timeout 60s;
            proxy_connect_timeout 5s;
            proxy_send_timeout 60s;
        }
    }
}
"#;

pub(super) fn ok(src: &str) -> NginxConf {
    match parse_str(src, "nginx.conf") {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

pub(super) fn err(src: &str) -> ConfError {
    match parse_str(src, "nginx.conf") {
        Ok(c) => panic!("expected an error, got {c:?}"),
        Err(e) => e,
    }
}

/// Asserts an error on `line` whose message contains `needle`.
pub(super) fn err_at(src: &str, line: usize, needle: &str) {
    let e = err(src);
    assert_eq!(e.line, line, "wrong line for: {e}");
    assert!(e.msg.contains(needle), "{e:?} does not contain {needle:?}");
}

/// Wraps location-level directives into a minimal valid config (location on line 4).
pub(super) fn in_location(body: &str) -> String {
    format!(
        "http {{\n upstream u {{ server 10.0.0.1:80; }}\n server {{ listen 80;\n  \
         location / {{\n{body}\n  }}\n }}\n}}\n"
    )
}

pub(super) fn hdr(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// A fresh directory under the system temp dir, removed on drop.
pub(super) struct TmpDir(pub(super) std::path::PathBuf);

impl TmpDir {
    pub(super) fn new(tag: &str) -> TmpDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("ringway-ngxconf-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TmpDir(dir)
    }

    /// Writes `contents` to `rel` (creating its directories) and returns the full path.
    pub(super) fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> std::path::PathBuf {
        let path = self.0.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// `rel` as messages name it.
    pub(super) fn name(&self, rel: &str) -> String {
        self.0.join(rel).display().to_string()
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
