//! What a server's TLS directives say (`ssl_certificate`, `ssl_protocols`, ...), as the
//! builder leaves them for `config::tls`; built and merged in `builder/ssl.rs`.

/// A server's TLS directives (each one the http block's where the server sets none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ssl {
    /// `ssl_certificate FILE;`: the certificate (and its chain), PEM.
    pub certificate: Option<SslFile>,
    /// `ssl_certificate_key FILE;`: its private key, PEM.
    pub certificate_key: Option<SslFile>,
    /// `ssl_protocols ...;` as written (`TLSv1.2`, `TLSv1.3`; older ones warned about).
    pub protocols: Option<Vec<String>>,
    /// `ssl_session_timeout TIME;` in ms.
    pub session_timeout_ms: Option<u64>,
    /// `ssl_session_cache ...;`: false for `off` / `none`.
    pub session_cache: Option<bool>,
    /// `ssl_session_tickets on|off;`.
    pub session_tickets: Option<bool>,
}

/// A file named by an `ssl_*` directive, and where the directive is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SslFile {
    /// The path as written (a relative one is resolved against the main file's directory).
    pub path: String,
    /// The file the directive is in.
    pub file: String,
    /// Its line.
    pub line: usize,
}
