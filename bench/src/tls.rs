//! TLS for the bench tools, with rustls and the aws-lc-rs provider (the proxy's own choice).
//!
//! - loadgen's client: ONE cipher suite and ONE key-exchange group (so every server in a
//!   comparison negotiates the same thing), the trusted CA from a PEM file, SNI, ALPN
//!   `http/1.1`, resumption on or off; what each handshake negotiated is tallied per process
//!   ([`Tally`]) and lands in the JSON.
//! - wsecho's server: a certificate chain and a PKCS#8 key from PEM files, TLS 1.2 and 1.3,
//!   stateless tickets (as nginx's `ssl_session_tickets on`), and [`ServerTls`], a connection
//!   that wsecho's read-when-readable loops drive like a `TcpStream` (`crate::sock::Sock`).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::{aws_lc_rs, CryptoProvider, SupportedKxGroup};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{
    ClientConfig, CommonState, HandshakeKind, ProtocolVersion, RootCertStore, ServerConfig,
    SupportedCipherSuite,
};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The suite loadgen offers by default (TLS 1.3), and with `--tls12`.
pub const DEFAULT_SUITE_13: &str = "TLS13_AES_128_GCM_SHA256";
pub const DEFAULT_SUITE_12: &str = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256";
/// The key-exchange group loadgen offers by default.
pub const DEFAULT_GROUP: &str = "x25519";
/// The ALPN protocol both sides speak.
pub const ALPN_HTTP11: &[u8] = b"http/1.1";

/// OpenSSL's names of the TLS 1.2 suites (as nginx's `ssl_ciphers` writes them) → IANA's.
const OPENSSL_NAMES: [(&str, &str); 6] = [
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// A suite's IANA name, as rustls prints it (`TLS13_AES_128_GCM_SHA256`).
pub fn suite_name(s: SupportedCipherSuite) -> String {
    format!("{:?}", s.suite())
}

/// A suite by IANA name (or OpenSSL's, for TLS 1.2), case-insensitively.
pub fn suite_by_name(name: &str) -> Result<SupportedCipherSuite, String> {
    let want = OPENSSL_NAMES
        .iter()
        .find(|(o, _)| o.eq_ignore_ascii_case(name))
        .map_or(name, |(_, iana)| iana);
    aws_lc_rs::ALL_CIPHER_SUITES
        .iter()
        .copied()
        .find(|s| suite_name(*s).eq_ignore_ascii_case(want))
        .ok_or_else(|| {
            let all: Vec<String> = aws_lc_rs::ALL_CIPHER_SUITES
                .iter()
                .map(|s| suite_name(*s))
                .collect();
            format!("unknown cipher suite {name:?} (known: {})", all.join(", "))
        })
}

/// A key-exchange group by name (`x25519`, `secp256r1`, `secp384r1`, `X25519MLKEM768`, ...).
pub fn group_by_name(name: &str) -> Result<&'static dyn SupportedKxGroup, String> {
    aws_lc_rs::ALL_KX_GROUPS
        .iter()
        .copied()
        .find(|g| format!("{:?}", g.name()).eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            let all: Vec<String> = aws_lc_rs::ALL_KX_GROUPS
                .iter()
                .map(|g| format!("{:?}", g.name()))
                .collect();
            format!(
                "unknown key-exchange group {name:?} (known: {})",
                all.join(", ")
            )
        })
}

/// "TLSv1.3" / "TLSv1.2" (nginx's `$ssl_protocol` spelling).
pub fn version_name(v: ProtocolVersion) -> String {
    match v {
        ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        other => format!("{other:?}"),
    }
}

/// Reads every certificate of a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate in it", path.display()));
    }
    Ok(certs)
}

/// What loadgen's client offers.
#[derive(Debug, Clone)]
pub struct ClientOpts {
    /// PEM file of the CA(s) to trust.
    pub ca: std::path::PathBuf,
    /// The server name sent (SNI) and verified.
    pub sni: String,
    /// The one suite offered (None: [`DEFAULT_SUITE_13`], or [`DEFAULT_SUITE_12`] with `tls12`).
    pub suite: Option<String>,
    /// Force TLS 1.2.
    pub tls12: bool,
    /// The one key-exchange group offered.
    pub group: String,
    /// Keep sessions (tickets) for resumption: `Some(n)` sessions per store, `None` off.
    pub resume: Option<usize>,
}

/// loadgen's TLS client: a rustls config and the server name. Cheap to clone (the config is
/// shared); [`TlsClient::with_own_sessions`] gives a copy with its own session store.
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    sni: ServerName<'static>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsClient({:?})", self.sni)
    }
}

impl TlsClient {
    /// Builds the client from the options: one suite, one group, the CA, ALPN `http/1.1`.
    pub fn new(o: &ClientOpts) -> Result<TlsClient, String> {
        let default = if o.tls12 {
            DEFAULT_SUITE_12
        } else {
            DEFAULT_SUITE_13
        };
        let suite = suite_by_name(o.suite.as_deref().unwrap_or(default))?;
        let is13 = suite.version().version == ProtocolVersion::TLSv1_3;
        if o.tls12 && is13 {
            return Err(format!(
                "--tls12 with the TLS 1.3 suite {}: pick a TLS 1.2 suite",
                suite_name(suite)
            ));
        }
        let group = group_by_name(&o.group)?;
        let provider = CryptoProvider {
            cipher_suites: vec![suite],
            kx_groups: vec![group],
            ..aws_lc_rs::default_provider()
        };
        let mut roots = RootCertStore::empty();
        for c in load_certs(&o.ca)? {
            roots
                .add(c)
                .map_err(|e| format!("{}: {e}", o.ca.display()))?;
        }
        let mut cfg = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[suite.version()])
            .map_err(|e| format!("TLS client: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
        cfg.resumption = match o.resume {
            Some(n) => Resumption::in_memory_sessions(n.max(1)),
            None => Resumption::disabled(),
        };
        let sni =
            ServerName::try_from(o.sni.clone()).map_err(|e| format!("--sni {:?}: {e}", o.sni))?;
        Ok(TlsClient {
            config: Arc::new(cfg),
            sni,
        })
    }

    /// A copy with its own session store of `n` sessions (`0`: resumption off), so one
    /// worker's tickets are never taken by another.
    pub fn with_own_sessions(&self, n: usize) -> TlsClient {
        let mut cfg = (*self.config).clone();
        cfg.resumption = if n == 0 {
            Resumption::disabled()
        } else {
            Resumption::in_memory_sessions(n)
        };
        TlsClient {
            config: Arc::new(cfg),
            sni: self.sni.clone(),
        }
    }

    /// The TLS handshake on a connected socket.
    pub async fn handshake(
        &self,
        tcp: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.sni.clone(), tcp)
            .await
    }
}

/// What one handshake negotiated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Negotiated {
    pub version: String,
    pub suite: String,
    pub group: String,
    pub alpn: String,
    pub resumed: bool,
}

impl Negotiated {
    /// Reads a finished handshake's parameters.
    pub fn of(c: &CommonState) -> Negotiated {
        Negotiated {
            version: c.protocol_version().map(version_name).unwrap_or_default(),
            suite: c
                .negotiated_cipher_suite()
                .map(suite_name)
                .unwrap_or_default(),
            group: c
                .negotiated_key_exchange_group()
                .map(|g| format!("{:?}", g.name()))
                .unwrap_or_else(|| "-".into()),
            alpn: c
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .unwrap_or_else(|| "-".into()),
            resumed: c.handshake_kind() == Some(HandshakeKind::Resumed),
        }
    }

    /// "TLSv1.3 TLS13_AES_128_GCM_SHA256 X25519 http/1.1": the key of [`Tally::negotiated`].
    pub fn key(&self) -> String {
        format!(
            "{} {} {} {}",
            self.version, self.suite, self.group, self.alpn
        )
    }
}

/// Handshakes of this process by what they negotiated, and how many were resumed.
#[derive(Debug, Default, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Tally {
    /// "version suite group alpn" → handshakes.
    pub negotiated: BTreeMap<String, u64>,
    pub handshakes: u64,
    pub resumed: u64,
}

thread_local! {
    static TALLY: RefCell<Tally> = RefCell::new(Tally::default());
}

impl Tally {
    /// Counts one handshake of this thread.
    pub fn record(n: &Negotiated) {
        TALLY.with(|t| {
            let mut t = t.borrow_mut();
            *t.negotiated.entry(n.key()).or_default() += 1;
            t.handshakes += 1;
            t.resumed += u64::from(n.resumed);
        });
    }

    /// This thread's tally so far.
    pub fn current() -> Tally {
        TALLY.with(|t| t.borrow().clone())
    }

    /// Adds another process's tally into this thread's (ceiling's parent merging children).
    pub fn absorb(o: &Tally) {
        TALLY.with(|t| {
            let mut t = t.borrow_mut();
            crate::stats::merge_counts(&mut t.negotiated, &o.negotiated);
            t.handshakes += o.handshakes;
            t.resumed += o.resumed;
        });
    }

    /// The most frequent "version suite group alpn" seen, split into its parts.
    pub fn main(&self) -> Option<(String, String, String, String)> {
        let (k, _) = self.negotiated.iter().max_by_key(|(_, n)| **n)?;
        let mut it = k.split(' ').map(str::to_string);
        Some((it.next()?, it.next()?, it.next()?, it.next()?))
    }
}

/// wsecho's server config: the chain and PKCS#8 key from PEM files, TLS 1.2 and 1.3 with every
/// aws-lc-rs suite (the client picks), ALPN `http/1.1`, stateless tickets (and a session cache
/// for TLS 1.2 session ids), like nginx's `ssl_session_tickets on; ssl_session_cache`.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let chain = load_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(aws_lc_rs::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS server: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    cfg.alpn_protocols = vec![ALPN_HTTP11.to_vec()];
    cfg.ticketer = aws_lc_rs::Ticketer::new().map_err(|e| format!("TLS tickets: {e}"))?;
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(10_240);
    Ok(Arc::new(cfg))
}

/// A server-side TLS connection that wsecho's loops read like a socket: wait until readable,
/// then read without blocking (`try_read`), as they do on plain TCP so that an idle connection
/// holds no read buffer of theirs. Writes go through tokio-rustls (callers flush).
pub struct ServerTls(pub tokio_rustls::server::TlsStream<TcpStream>);

/// `io::Read`/`io::Write` over a tokio socket's non-blocking calls (WouldBlock when not ready).
struct TryIo<'a>(&'a TcpStream);

impl Read for TryIo<'_> {
    fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(b)
    }
}

impl Write for TryIo<'_> {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.try_write(b)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl ServerTls {
    /// Waits until plaintext is buffered, the peer closed, or the socket is readable.
    pub async fn readable(&mut self) -> io::Result<()> {
        let (tcp, conn) = self.0.get_mut();
        let st = conn.process_new_packets().map_err(invalid)?;
        if st.plaintext_bytes_to_read() > 0 || st.peer_has_closed() {
            return Ok(());
        }
        tcp.readable().await
    }

    /// Reads decrypted bytes without waiting: `Ok(0)` at the end (close_notify or EOF),
    /// `WouldBlock` when a whole record has not arrived yet.
    pub fn try_read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (tcp, conn) = self.0.get_mut();
        loop {
            match conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: an end like any other here.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            let n = conn.read_tls(&mut TryIo(tcp))?;
            let processed = conn.process_new_packets();
            // Whatever the records asked for (tickets, key updates, an alert) goes out now if
            // the socket takes it; tokio-rustls flushes the rest with the next write.
            while conn.wants_write() {
                match conn.write_tls(&mut TryIo(tcp)) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e),
                }
            }
            processed.map_err(invalid)?;
            // After an EOF (n == 0) the reader answers Ok(0) or UnexpectedEof: no third turn.
            let _ = n;
        }
    }
}

impl AsyncRead for ServerTls {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerTls {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suites_and_groups_by_name() {
        assert_eq!(
            suite_name(suite_by_name("tls13_aes_128_gcm_sha256").unwrap()),
            DEFAULT_SUITE_13
        );
        assert_eq!(
            suite_name(suite_by_name("ECDHE-ECDSA-AES128-GCM-SHA256").unwrap()),
            DEFAULT_SUITE_12
        );
        assert!(suite_by_name("RC4-MD5").is_err());
        assert_eq!(
            format!("{:?}", group_by_name("X25519").unwrap().name()),
            "X25519"
        );
        assert!(group_by_name("x448").is_err());
    }

    #[test]
    fn tallies_merge() {
        let n = Negotiated {
            version: "TLSv1.3".into(),
            suite: DEFAULT_SUITE_13.into(),
            group: "X25519".into(),
            alpn: "http/1.1".into(),
            resumed: true,
        };
        Tally::record(&n);
        Tally::absorb(&Tally::current());
        let t = Tally::current();
        assert_eq!((t.handshakes, t.resumed), (2, 2));
        assert_eq!(t.negotiated[&n.key()], 2);
        assert_eq!(t.main().unwrap().1, DEFAULT_SUITE_13);
    }
}
