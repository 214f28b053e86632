//! The TLS directives of the http and server blocks (`ssl_certificate`,
//! `ssl_certificate_key`, `ssl_protocols`, `ssl_session_timeout`, `ssl_session_cache`,
//! `ssl_session_tickets`), merged server ← http as nginx does: a value the server leaves
//! out is the http block's.
//!
//! What ringway's TLS does anyway, or what only tunes OpenSSL, is harmless (warned,
//! ignored: `ssl_ciphers`, `ssl_prefer_server_ciphers`, ...; see `directives`); what would
//! change who may connect (`ssl_verify_client`, ...) is not in the table, so it is an error.

use super::{Builder, Res};
use crate::nginx_conf::tree::Directive;
use crate::nginx_conf::{Ssl, SslFile};

impl Ssl {
    /// nginx's merge: each value the server leaves out comes from the http block.
    pub(super) fn inherit(&mut self, parent: &Ssl) {
        if self.certificate.is_none() {
            self.certificate.clone_from(&parent.certificate);
        }
        if self.certificate_key.is_none() {
            self.certificate_key.clone_from(&parent.certificate_key);
        }
        if self.protocols.is_none() {
            self.protocols.clone_from(&parent.protocols);
        }
        self.session_timeout_ms = self.session_timeout_ms.or(parent.session_timeout_ms);
        self.session_cache = self.session_cache.or(parent.session_cache);
        self.session_tickets = self.session_tickets.or(parent.session_tickets);
    }
}

impl Builder<'_> {
    /// One `ssl_*` directive of an http or server block (the table has checked its place
    /// and argument count).
    pub(super) fn ssl_directive(&mut self, d: &Directive, s: &mut Ssl) -> Res<()> {
        let dup = |set: bool| if set { Err(self.duplicate(d)) } else { Ok(()) };
        match d.name.as_str() {
            "ssl_certificate" => {
                // nginx allows an RSA and an ECDSA pair side by side; ringway serves one
                // pair per server.
                if s.certificate.is_some() {
                    return Err(self.err_in(
                        d,
                        "a second \"ssl_certificate\" in one block: ringway serves one certificate per server (choose one; rustls negotiates ECDSA and RSA alike)",
                    ));
                }
                s.certificate = Some(self.ssl_file(d)?);
            }
            "ssl_certificate_key" => {
                if s.certificate_key.is_some() {
                    return Err(self.err_in(
                        d,
                        "a second \"ssl_certificate_key\" in one block: ringway serves one key per server",
                    ));
                }
                s.certificate_key = Some(self.ssl_file(d)?);
            }
            "ssl_protocols" => {
                if s.protocols.is_some() {
                    return Err(self.duplicate(d));
                }
                let mut kept = Vec::new();
                for p in &d.args {
                    match p.as_str() {
                        "TLSv1.2" | "TLSv1.3" => kept.push(p.clone()),
                        "SSLv2" | "SSLv3" | "TLSv1" | "TLSv1.1" => self.warn_in(
                            d,
                            &format!("ssl_protocols: {p} is not offered (rustls speaks TLS 1.2 and 1.3 only)"),
                        ),
                        other => {
                            return Err(self.err_in(
                                d,
                                format!("invalid value \"{other}\" in \"ssl_protocols\" directive (TLSv1.2, TLSv1.3)"),
                            ))
                        }
                    }
                }
                if kept.is_empty() {
                    return Err(self.err_in(
                        d,
                        "ssl_protocols names no protocol ringway offers: add TLSv1.2 and/or TLSv1.3",
                    ));
                }
                s.protocols = Some(kept);
            }
            "ssl_session_timeout" => {
                dup(s.session_timeout_ms.is_some())?;
                s.session_timeout_ms = Some(self.time(d, d.arg(0))?);
            }
            "ssl_session_cache" => {
                dup(s.session_cache.is_some())?;
                let mut on = false;
                for a in &d.args {
                    match a.as_str() {
                        "off" | "none" => {}
                        "builtin" => on = true,
                        a if a.starts_with("builtin:") || a.starts_with("shared:") => on = true,
                        other => {
                            return Err(self.err_in(
                                d,
                                format!("invalid value \"{other}\" in \"ssl_session_cache\" directive"),
                            ))
                        }
                    }
                }
                s.session_cache = Some(on);
            }
            "ssl_session_tickets" => {
                dup(s.session_tickets.is_some())?;
                s.session_tickets = Some(d.arg(0) == "on");
            }
            "ssl" => {
                return Err(self.err_in(
                    d,
                    "the \"ssl\" directive is obsolete (nginx removed it in 1.25.1): write \"listen ... ssl;\"",
                ))
            }
            _ => {}
        }
        Ok(())
    }

    /// The file an `ssl_certificate` / `ssl_certificate_key` names.
    fn ssl_file(&self, d: &Directive) -> Res<SslFile> {
        if d.arg(0).contains('$') {
            return Err(self.err_in(
                d,
                format!(
                    "\"{} {}\": variables in certificate paths are not supported (name the file)",
                    d.name,
                    d.arg(0)
                ),
            ));
        }
        Ok(SslFile {
            path: d.arg(0).to_string(),
            file: d.file.to_string(),
            line: d.line,
        })
    }
}
