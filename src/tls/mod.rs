//! TLS termination: what a listen address's TLS settings become — rustls server
//! configurations with their certificates loaded and checked (a missing or unreadable file,
//! a key that does not match its certificate, an expired certificate: one line, at start
//! and at reload), SNI choosing among them, session resumption — and whether the kernel can
//! take the record layer over (kTLS, [`ktls`]).
//!
//! The connection side lives in [`conn`]: rustls is used sans-IO, so ciphertext comes from
//! the worker's own io_uring receives and goes out through its own sends; there is no TLS
//! thread. Crypto provider: aws-lc-rs (see Cargo.toml).

pub mod conn;
pub mod ktls;
pub mod tickets;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// nginx's `ssl_session_timeout` default.
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(300);
/// Sessions a listen address's cache keeps (TLS 1.2 session ids; TLS 1.3 tickets when
/// stateless tickets are off). nginx's `shared:SSL:10m` holds about 40,000.
const SESSION_CACHE_ENTRIES: usize = 16_384;

/// One certificate (with its chain) and its key, and the names it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSpec {
    /// PEM file: the leaf certificate first, then its chain.
    pub cert: PathBuf,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The server names it serves (a server block's `server_name`s: exact, `*.suffix`,
    /// `.suffix`, `prefix.*`); empty: the names in the certificate itself.
    pub names: Vec<String>,
    /// Where it was configured, for messages: `nginx.conf:14` or `--tls-cert`.
    pub origin: String,
}

/// The TLS settings of one listen address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    /// The listen address.
    pub addr: SocketAddr,
    /// Its certificates; the first is the default (no SNI, or a name none serves), as
    /// nginx's default server's is.
    pub certs: Vec<CertSpec>,
    /// TLS 1.2 offered.
    pub tls12: bool,
    /// TLS 1.3 offered.
    pub tls13: bool,
    /// `ssl_session_timeout`: how long a session may be resumed.
    pub session_timeout: Duration,
    /// `ssl_session_cache` not off: a session cache (per process).
    pub session_cache: bool,
    /// `ssl_session_tickets`: stateless tickets.
    pub tickets: bool,
}

impl TlsSettings {
    /// Settings for `addr` with nginx's defaults and no certificate yet.
    pub fn new(addr: SocketAddr) -> TlsSettings {
        TlsSettings {
            addr,
            certs: Vec::new(),
            tls12: true,
            tls13: true,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            session_cache: true,
            tickets: true,
        }
    }
}

/// One listen address's loaded configuration.
pub struct Listener {
    /// The address (as configured: port 0 stays 0).
    pub addr: SocketAddr,
    /// What every connection on it is made from.
    pub config: Arc<ServerConfig>,
    /// One line for people: certificates and names, protocols, sessions.
    pub summary: String,
}

/// Every TLS listen address of a configuration, loaded.
pub struct Table {
    /// Per TLS listen address.
    pub listeners: Vec<Listener>,
    /// The kernel can take the record layer over (`TCP_ULP tls`).
    pub kernel: ktls::Support,
    /// For `Debug` (and so the configuration fingerprint): the settings it was built from.
    settings: Vec<TlsSettings>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Paths and names only (never key material): equal in every process that read the
        // same configuration.
        f.debug_struct("tls::Table")
            .field("settings", &self.settings)
            .finish()
    }
}

impl Table {
    /// Load every certificate of `settings` and build one rustls configuration per listen
    /// address, with session tickets under a secret of its own (a configuration checked,
    /// not yet run). The error is one line for a person, naming the file and where it was
    /// configured.
    pub fn load(settings: &[TlsSettings]) -> Result<Table, String> {
        let mut secret = [0u8; 32];
        aws_lc_rs::rand::fill(&mut secret).map_err(|_| "no randomness for TLS tickets")?;
        Self::load_with(settings, secret)
    }

    /// [`Table::load`] for a generation that runs: its tickets under the generation's
    /// `secret`, which every worker of it shares (threads and processes).
    pub fn load_with(settings: &[TlsSettings], secret: [u8; 32]) -> Result<Table, String> {
        let kernel = ktls::probe();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut listeners = Vec::with_capacity(settings.len());
        for s in settings {
            listeners.push(listener(s, &provider, kernel, secret)?);
        }
        Ok(Table {
            listeners,
            kernel,
            settings: settings.to_vec(),
        })
    }

    /// The configuration of listen address `addr`, if it speaks TLS.
    pub fn for_addr(&self, addr: SocketAddr) -> Option<Arc<ServerConfig>> {
        self.listeners
            .iter()
            .find(|l| l.addr == addr)
            .map(|l| l.config.clone())
    }

    /// Lines for the startup log and `-t`: one per TLS listen address, and how tunnels
    /// are relayed.
    pub fn describe(&self) -> Vec<String> {
        let mut v: Vec<String> = self.listeners.iter().map(|l| l.summary.clone()).collect();
        v.push(format!("TLS record layer: {}", self.kernel.describe()));
        v
    }
}

fn listener(
    s: &TlsSettings,
    provider: &Arc<CryptoProvider>,
    kernel: ktls::Support,
    secret: [u8; 32],
) -> Result<Listener, String> {
    let Some(first) = s.certs.first() else {
        return Err(format!(
            "no \"ssl_certificate\" is defined for the TLS listen address {} (add ssl_certificate and ssl_certificate_key to its server, or --tls-cert/--tls-key)",
            s.addr
        ));
    };
    let mut sni = Sni::default();
    let mut shown = Vec::new();
    for (i, spec) in s.certs.iter().enumerate() {
        let (key, cert_names) = load_pair(spec, provider)?;
        let names = if spec.names.is_empty() {
            cert_names
        } else {
            spec.names.clone()
        };
        shown.push(format!(
            "{} ({})",
            spec.cert.display(),
            if names.is_empty() {
                "default".to_string()
            } else {
                names.join(" ")
            }
        ));
        if i == 0 {
            sni.default = Some(key.clone());
        }
        for n in &names {
            sni.add(n, &key);
        }
    }
    sni.finish();
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> = Vec::new();
    if s.tls13 {
        versions.push(&rustls::version::TLS13);
    }
    if s.tls12 {
        versions.push(&rustls::version::TLS12);
    }
    let origin = &first.origin;
    let mut config = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("{origin}: TLS settings for {}: {e}", s.addr))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(sni));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.session_storage = if s.session_cache {
        rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES)
    } else {
        Arc::new(rustls::server::NoServerSessionStorage {})
    };
    let lifetime = s.session_timeout.as_secs().clamp(1, u32::MAX as u64) as u32;
    if s.tickets {
        config.ticketer = Arc::new(tickets::Shared::new(secret, lifetime));
    }
    // Secrets are extracted only to hand them to the kernel.
    config.enable_secret_extraction = kernel.available();
    let protocols = match (s.tls12, s.tls13) {
        (true, true) => "TLS 1.2 + 1.3",
        (true, false) => "TLS 1.2",
        _ => "TLS 1.3",
    };
    let sessions = match (s.tickets, s.session_cache) {
        (true, true) => format!("tickets and a session cache, {lifetime} s"),
        (true, false) => format!("tickets, {lifetime} s"),
        (false, true) => format!("a session cache, {lifetime} s"),
        (false, false) => "no resumption".to_string(),
    };
    Ok(Listener {
        addr: s.addr,
        config: Arc::new(config),
        summary: format!(
            "TLS on {}: {}; {protocols}, ALPN http/1.1, resumption by {sessions}",
            s.addr,
            shown.join(", ")
        ),
    })
}

/// Load and check one certificate/key pair: both files readable PEM, the key usable and
/// matching the certificate, the certificate not expired. Returns the key and the
/// certificate's own DNS names.
fn load_pair(
    spec: &CertSpec,
    provider: &CryptoProvider,
) -> Result<(Arc<CertifiedKey>, Vec<String>), String> {
    let at = &spec.origin;
    let (cert_path, key_path) = (spec.cert.display(), spec.key.display());
    let cert_pem = std::fs::read(&spec.cert)
        .map_err(|e| format!("{at}: cannot read the certificate {cert_path}: {e}"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{at}: {cert_path} is not a PEM certificate file: {e}"))?;
    if chain.is_empty() {
        return Err(format!(
            "{at}: {cert_path} holds no certificate (expected \"-----BEGIN CERTIFICATE-----\")"
        ));
    }
    let key_pem = std::fs::read(&spec.key)
        .map_err(|e| format!("{at}: cannot read the private key {key_path}: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| format!("{at}: {key_path} holds no usable private key: {e}"))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("{at}: the private key {key_path} cannot sign: {e}"))?;
    let ck = CertifiedKey::new(chain, signing);
    ck.keys_match().map_err(|_| {
        format!("{at}: the private key {key_path} does not match the certificate {cert_path}")
    })?;
    let names = check_leaf(&ck.cert[0], &cert_path.to_string(), at)?;
    Ok((Arc::new(ck), names))
}

/// The leaf's validity (an expired certificate is refused) and its DNS names.
fn check_leaf(der: &CertificateDer<'_>, path: &str, at: &str) -> Result<Vec<String>, String> {
    use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der.as_ref())
        .map_err(|e| format!("{at}: {path}: the certificate cannot be parsed: {e}"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let validity = cert.validity();
    if now > validity.not_after.timestamp() {
        return Err(format!(
            "{at}: the certificate {path} expired on {} (renew it)",
            validity.not_after
        ));
    }
    if now < validity.not_before.timestamp() {
        return Err(format!(
            "{at}: the certificate {path} is not valid before {} (check the clock or the certificate)",
            validity.not_before
        ));
    }
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for n in &san.value.general_names {
            if let GeneralName::DNSName(d) = n {
                names.push(d.to_ascii_lowercase());
            }
        }
    }
    if names.is_empty() {
        for cn in cert.subject().iter_common_name() {
            if let Ok(s) = cn.as_str() {
                names.push(s.to_ascii_lowercase());
            }
        }
    }
    Ok(names)
}

/// SNI: the certificate for the name the client asked for — exact names, then the longest
/// `*.suffix`, then the longest `prefix.*` (nginx's order for `server_name`) — else the
/// default.
#[derive(Debug, Default)]
struct Sni {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// `.example.com` for `*.example.com` and `.example.com`; longest first.
    suffix: Vec<(String, Arc<CertifiedKey>)>,
    /// `www.example.` for `www.example.*`; longest first.
    prefix: Vec<(String, Arc<CertifiedKey>)>,
    default: Option<Arc<CertifiedKey>>,
}

impl Sni {
    fn add(&mut self, name: &str, key: &Arc<CertifiedKey>) {
        let name = name.to_ascii_lowercase();
        if let Some(rest) = name.strip_prefix("*.") {
            self.suffix.push((format!(".{rest}"), key.clone()));
        } else if let Some(rest) = name.strip_prefix('.') {
            self.exact.entry(rest.to_string()).or_insert(key.clone());
            self.suffix.push((name.clone(), key.clone()));
        } else if let Some(rest) = name.strip_suffix(".*") {
            self.prefix.push((format!("{rest}."), key.clone()));
        } else if !name.is_empty() {
            // The first to name a host keeps it, as with server_name.
            self.exact.entry(name).or_insert(key.clone());
        }
    }

    fn finish(&mut self) {
        self.suffix.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        self.prefix.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
    }

    fn find(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let Some(name) = name else {
            return self.default.clone();
        };
        let name = name.to_ascii_lowercase();
        if let Some(k) = self.exact.get(&name) {
            return Some(k.clone());
        }
        let by_suffix = self.suffix.iter().find(|(s, _)| name.ends_with(s.as_str()));
        let by_prefix = || {
            self.prefix
                .iter()
                .find(|(p, _)| name.starts_with(p.as_str()))
        };
        by_suffix
            .or_else(by_prefix)
            .map(|(_, k)| k.clone())
            .or_else(|| self.default.clone())
    }
}

impl ResolvesServerCert for Sni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.find(hello.server_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Arc<CertifiedKey> {
        // Only identity matters for the lookup; build keys from a generated pair.
        let c = rcgen::generate_simple_self_signed(vec![format!("k{n}.test")]).unwrap();
        let der = PrivateKeyDer::try_from(c.signing_key.serialize_der()).unwrap();
        let signing = rustls::crypto::aws_lc_rs::default_provider()
            .key_provider
            .load_private_key(der)
            .unwrap();
        Arc::new(CertifiedKey::new(vec![c.cert.der().clone()], signing))
    }

    #[test]
    fn sni_follows_server_name_order() {
        let (a, b, c, d) = (key(1), key(2), key(3), key(4));
        let mut s = Sni {
            default: Some(d.clone()),
            ..Sni::default()
        };
        s.add("www.example.com", &a);
        s.add("*.example.com", &b);
        s.add("*.api.example.com", &c);
        s.add("mail.*", &a);
        s.finish();
        let is = |n: Option<&str>, k: &Arc<CertifiedKey>| {
            assert!(Arc::ptr_eq(&s.find(n).unwrap(), k), "{n:?}")
        };
        is(Some("WWW.example.com"), &a);
        is(Some("x.example.com"), &b);
        is(Some("v1.api.example.com"), &c);
        is(Some("mail.other.org"), &a);
        is(Some("nothing.org"), &d);
        is(None, &d);
    }
}
