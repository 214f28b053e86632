//! TLS settings from nginx.conf (`listen ... ssl` and the `ssl_*` directives of each
//! server) and from the flags (`--tls-cert`/`--tls-key` on `--listen`), per listen address.
//!
//! As nginx: an address is TLS when one of its `listen`s says `ssl`; each server on it
//! brings its certificate for its `server_name`s (SNI), the default server's (else the
//! first one's) serves clients whose name matches none; relative paths are the main
//! file's directory's. Protocols and session settings are the default server's (rustls
//! has one set per address).

use super::{parse_addr, Config};
use crate::nginx_conf::{NginxConf, Ssl, SslFile};
use crate::tls::{CertSpec, TlsSettings};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The TLS listen addresses of `conf` (main file `file`).
pub fn from_nginx(conf: &NginxConf, file: &str) -> Result<Vec<TlsSettings>, String> {
    let dir = Path::new(file).parent().unwrap_or(Path::new("."));
    let mut out: Vec<(TlsSettings, bool)> = Vec::new();
    for sv in &conf.servers {
        for l in &sv.listen {
            let addr =
                parse_addr(&l.addr).map_err(|e| format!("{file}:{}: listen: {e}", sv.line))?;
            let on_ssl = sv.listen.iter().any(|x| x.addr == l.addr && x.ssl)
                || conf
                    .servers
                    .iter()
                    .flat_map(|s| s.listen.iter())
                    .any(|x| x.ssl && parse_addr(&x.addr).ok() == Some(addr));
            if !on_ssl {
                continue;
            }
            let (Some(cert), Some(key)) = (&sv.ssl.certificate, &sv.ssl.certificate_key) else {
                let what = if sv.ssl.certificate.is_none() {
                    "ssl_certificate"
                } else {
                    "ssl_certificate_key"
                };
                return Err(format!(
                    "{file}:{}: no \"{what}\" is defined for the \"listen ... ssl\" directive of this server ({addr}); add ssl_certificate and ssl_certificate_key to it or to the http block",
                    sv.line
                ));
            };
            let spec = CertSpec {
                cert: resolve(dir, cert),
                key: resolve(dir, key),
                names: sv
                    .server_names
                    .iter()
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .collect(),
                origin: format!("{}:{}", cert.file, cert.line),
            };
            let i = match out.iter().position(|(s, _)| s.addr == addr) {
                Some(i) => i,
                None => {
                    out.push((settings(addr, &sv.ssl), false));
                    out.len() - 1
                }
            };
            let (s, has_default) = &mut out[i];
            if s.certs
                .iter()
                .any(|c| c.cert == spec.cert && c.names == spec.names)
            {
                continue;
            }
            if l.default_server && !*has_default {
                // The default server's certificate answers names no server has.
                *s = TlsSettings {
                    certs: std::mem::take(&mut s.certs),
                    ..settings(addr, &sv.ssl)
                };
                s.certs.insert(0, spec);
                *has_default = true;
            } else {
                s.certs.push(spec);
            }
        }
    }
    Ok(out.into_iter().map(|(s, _)| s).collect())
}

fn settings(addr: std::net::SocketAddr, ssl: &Ssl) -> TlsSettings {
    let mut s = TlsSettings::new(addr);
    if let Some(p) = &ssl.protocols {
        s.tls12 = p.iter().any(|v| v == "TLSv1.2");
        s.tls13 = p.iter().any(|v| v == "TLSv1.3");
    }
    if let Some(ms) = ssl.session_timeout_ms {
        s.session_timeout = Duration::from_millis(ms);
    }
    s.session_cache = ssl.session_cache.unwrap_or(true);
    s.tickets = ssl.session_tickets.unwrap_or(true);
    s
}

fn resolve(dir: &Path, f: &SslFile) -> PathBuf {
    let p = Path::new(&f.path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// `--tls-cert`/`--tls-key` pairs for `--listen` (the first pair is the default; each
/// serves the names in its certificate). Replaces what a simple file said of that address.
pub fn from_flags(cfg: &mut Config, certs: &[PathBuf], keys: &[PathBuf]) -> Result<(), String> {
    if certs.is_empty() && keys.is_empty() {
        return Ok(());
    }
    if certs.len() != keys.len() {
        return Err(format!(
            "{} --tls-cert and {} --tls-key: give them in pairs (one key per certificate, in the same order)",
            certs.len(),
            keys.len()
        ));
    }
    if cfg.routing.is_some() {
        return Err("--tls-cert cannot be combined with a configuration file that routes (several servers or listen addresses): use listen ... ssl and ssl_certificate in the file".into());
    }
    let mut s = cfg
        .tls
        .iter()
        .find(|t| t.addr == cfg.listen)
        .cloned()
        .unwrap_or_else(|| TlsSettings::new(cfg.listen));
    s.certs = certs
        .iter()
        .zip(keys)
        .map(|(c, k)| CertSpec {
            cert: c.clone(),
            key: k.clone(),
            names: Vec::new(),
            origin: "--tls-cert".into(),
        })
        .collect();
    cfg.tls = vec![s];
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls_of(text: &str) -> Result<Vec<TlsSettings>, String> {
        let conf = crate::nginx_conf::parse_str(text, "/etc/ringway/nginx.conf")
            .map_err(|e| e.to_string())?;
        from_nginx(&conf, "/etc/ringway/nginx.conf")
    }

    const HEAD: &str =
        "events { worker_connections 64; }\nhttp {\n upstream u { server 127.0.0.1:9001; }\n";

    #[test]
    fn servers_on_an_ssl_address_bring_their_certificates() {
        let t = tls_of(&format!(
            "{HEAD} ssl_protocols TLSv1.3; ssl_session_timeout 10m;\n \
             server {{ listen 127.0.0.1:8080; location / {{ proxy_pass http://u; }} }}\n \
             server {{ listen 127.0.0.1:8443 ssl; server_name a.test; ssl_certificate a.pem; ssl_certificate_key a.key; location / {{ proxy_pass http://u; }} }}\n \
             server {{ listen 127.0.0.1:8443 ssl default_server; server_name b.test *.b.test; ssl_certificate /x/b.pem; ssl_certificate_key /x/b.key; ssl_session_tickets off; location / {{ proxy_pass http://u; }} }}\n}}\n"
        ))
        .unwrap();
        assert_eq!(t.len(), 1, "only the ssl address");
        let s = &t[0];
        assert_eq!(s.addr, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(s.certs.len(), 2);
        // The default server's first; relative paths are the main file's directory's.
        assert_eq!(s.certs[0].cert, PathBuf::from("/x/b.pem"));
        assert_eq!(s.certs[0].names, vec!["b.test", "*.b.test"]);
        assert_eq!(s.certs[1].cert, PathBuf::from("/etc/ringway/a.pem"));
        assert!(s.tls13 && !s.tls12);
        assert_eq!(s.session_timeout, Duration::from_secs(600));
        assert!(!s.tickets, "the default server's settings");
    }

    #[test]
    fn an_ssl_listen_needs_a_certificate() {
        let e = tls_of(&format!(
            "{HEAD} server {{ listen 127.0.0.1:8443 ssl; location / {{ proxy_pass http://u; }} }}\n}}\n"
        ))
        .unwrap_err();
        assert!(e.contains("no \"ssl_certificate\" is defined"), "{e}");
        assert!(e.contains("nginx.conf:4"), "{e}");
    }
}
