//! Kernel TLS: after the handshake, hand a tunnel's record layer to the kernel
//! (`TCP_ULP tls`, then the session keys with `TLS_TX`/`TLS_RX`), so the socket reads and
//! writes plaintext and the tunnel relays as a plain one does — splice included: zero-copy
//! wss. Where the kernel lacks the `tls` module (this project's machines), rustls keeps the
//! record layer in user space; which one runs is said once at start.
//!
//! The hand-off happens only at a clean point: the handshake done, everything ringway
//! queued for the client sent, no plaintext or partial record inside rustls (the ciphertext
//! fed so far ends at a record boundary). Otherwise the tunnel stays in user space.

use rustls::{ConnectionTrafficSecrets, ProtocolVersion};
use std::io;
use std::os::fd::RawFd;

/// Which record layers this kernel's TLS ULP takes (tried once at start on loopback
/// connections with throwaway keys). TLS 1.2 with AES-GCM is never handed off: rustls
/// forms its nonces as IV ⊕ sequence number, the kernel counts its explicit nonce up from
/// the IV, so the kernel's first records would reuse nonces rustls already used.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Support {
    /// TLS 1.3, AES-128-GCM.
    pub tls13_aes128: bool,
    /// TLS 1.3, AES-256-GCM.
    pub tls13_aes256: bool,
    /// TLS 1.3, ChaCha20-Poly1305.
    pub tls13_chacha: bool,
    /// TLS 1.2, ChaCha20-Poly1305 (its nonces are formed as in TLS 1.3).
    pub tls12_chacha: bool,
}

/// What a probe of a kernel without the module says (for messages and tests).
pub const MISSING: Support = Support {
    tls13_aes128: false,
    tls13_aes256: false,
    tls13_chacha: false,
    tls12_chacha: false,
};

impl Support {
    /// Some tunnels can use kernel TLS.
    pub fn available(self) -> bool {
        self.tls13_aes128 || self.tls13_aes256 || self.tls13_chacha || self.tls12_chacha
    }

    /// Whether a session of `version` with `suite` can go to the kernel.
    pub fn takes(self, version: ProtocolVersion, suite: rustls::CipherSuite) -> bool {
        use rustls::CipherSuite as S;
        match (version, suite) {
            (ProtocolVersion::TLSv1_3, S::TLS13_AES_128_GCM_SHA256) => self.tls13_aes128,
            (ProtocolVersion::TLSv1_3, S::TLS13_AES_256_GCM_SHA384) => self.tls13_aes256,
            (ProtocolVersion::TLSv1_3, S::TLS13_CHACHA20_POLY1305_SHA256) => self.tls13_chacha,
            (
                ProtocolVersion::TLSv1_2,
                S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
            ) => self.tls12_chacha,
            _ => false,
        }
    }

    /// For the startup line and `explain`.
    pub fn describe(self) -> String {
        if !self.available() {
            return "rustls in user space (this kernel has no kTLS: \"tls\" is not in /proc/sys/net/ipv4/tcp_available_ulp and TCP_ULP \"tls\" fails; modprobe tls where the module exists)".into();
        }
        let mut takes = Vec::new();
        for (on, what) in [
            (self.tls13_aes128, "TLS 1.3 AES-128-GCM"),
            (self.tls13_aes256, "TLS 1.3 AES-256-GCM"),
            (self.tls13_chacha, "TLS 1.3 ChaCha20-Poly1305"),
            (self.tls12_chacha, "TLS 1.2 ChaCha20-Poly1305"),
        ] {
            if on {
                takes.push(what);
            }
        }
        format!(
            "kernel TLS (kTLS) for {}: such tunnels hand their keys to the kernel after the handshake and relay as plain tunnels (splice included); other sessions stay in rustls in user space",
            takes.join(", ")
        )
    }
}

/// Does the kernel do TLS, and for which sessions? Each kind is tried on a loopback
/// connection (`TCP_ULP tls`, which loads the module where it exists, then both
/// directions' keys): a kernel may lack TLS 1.3 receive or ChaCha20.
pub fn probe() -> Support {
    let zero = [0u8; 32];
    let try_one = |version: u16, cipher: u16| -> bool {
        let info = crypto_info_raw(version, cipher, &zero, &zero[..12], 0);
        ulp_on_loopback(|fd| {
            set_ulp(fd)?;
            crate::sys::setsockopt_bytes(fd, libc::SOL_TLS, libc::TLS_TX, &info)?;
            crate::sys::setsockopt_bytes(fd, libc::SOL_TLS, libc::TLS_RX, &info)
        })
        .is_ok()
    };
    Support {
        tls13_aes128: try_one(0x0304, AES_128_GCM),
        tls13_aes256: try_one(0x0304, AES_256_GCM),
        tls13_chacha: try_one(0x0304, CHACHA20),
        tls12_chacha: try_one(0x0303, CHACHA20),
    }
}

/// Run `f` on the client end of a fresh loopback connection.
fn ulp_on_loopback(f: impl FnOnce(RawFd) -> io::Result<()>) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let c = std::net::TcpStream::connect(l.local_addr()?)?;
    let (_s, _) = l.accept()?;
    f(c.as_raw_fd())
}

fn set_ulp(fd: RawFd) -> io::Result<()> {
    crate::sys::setsockopt_bytes(fd, libc::SOL_TCP, libc::TCP_ULP, b"tls")
}

const AES_128_GCM: u16 = 51;
const AES_256_GCM: u16 = 52;
const CHACHA20: u16 = 54;

/// Put the `tls` ULP on `fd` (the first step; the socket still speaks as before until
/// [`install`]). Fails where the kernel has no kTLS: then nothing changed.
pub fn attach(fd: RawFd) -> io::Result<()> {
    set_ulp(fd)
}

/// Give `conn`'s session keys to the kernel for both directions of `fd` (after
/// [`attach`]). On failure the connection cannot go on: its keys are gone from user space.
/// [`Support::takes`] the session's version and suite was checked before [`attach`].
pub fn install(fd: RawFd, conn: rustls::ServerConnection) -> io::Result<()> {
    let version = match conn.protocol_version() {
        Some(ProtocolVersion::TLSv1_3) => 0x0304u16,
        Some(ProtocolVersion::TLSv1_2) => 0x0303u16,
        _ => return Err(io::Error::other("unknown TLS version")),
    };
    let secrets = conn.dangerous_extract_secrets().map_err(io::Error::other)?;
    for (dir, (seq, s)) in [(libc::TLS_TX, secrets.tx), (libc::TLS_RX, secrets.rx)] {
        let info = crypto_info(version, seq, &s).ok_or_else(|| {
            io::Error::new(io::ErrorKind::Unsupported, "a cipher suite kTLS lacks")
        })?;
        crate::sys::setsockopt_bytes(fd, libc::SOL_TLS, dir, &info)?;
    }
    Ok(())
}

/// The kernel's `struct tls12_crypto_info_*` for one direction, as bytes: version and
/// cipher (host order), then iv, key, salt, record sequence (big endian), as
/// `linux/tls.h` lays them out.
fn crypto_info(version: u16, seq: u64, s: &ConnectionTrafficSecrets) -> Option<Vec<u8>> {
    let (cipher, key, iv): (u16, &[u8], &[u8]) = match s {
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (AES_128_GCM, key.as_ref(), iv.as_ref()),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (AES_256_GCM, key.as_ref(), iv.as_ref()),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => {
            (CHACHA20, key.as_ref(), iv.as_ref())
        }
        _ => return None,
    };
    (iv.len() == 12).then(|| crypto_info_raw(version, cipher, key, iv, seq))
}

fn crypto_info_raw(version: u16, cipher: u16, key: &[u8], iv: &[u8], seq: u64) -> Vec<u8> {
    let key_len = if cipher == AES_128_GCM { 16 } else { 32 };
    let key = &key[..key_len.min(key.len())];
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(&version.to_ne_bytes());
    v.extend_from_slice(&cipher.to_ne_bytes());
    if cipher == CHACHA20 {
        // ChaCha20-Poly1305: a 12-byte iv, no salt.
        v.extend_from_slice(&iv[..12]);
        v.extend_from_slice(key);
    } else {
        // AES-GCM: the iv's last 8 bytes, the key, its first 4 bytes as the salt.
        v.extend_from_slice(&iv[4..12]);
        v.extend_from_slice(key);
        v.extend_from_slice(&iv[..4]);
    }
    v.extend_from_slice(&seq.to_be_bytes());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crypto_info_matches_the_kernel_layout() {
        let key = rustls::crypto::cipher::AeadKey::from([7u8; 32]);
        let iv = rustls::crypto::cipher::Iv::new([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
        // tls12_crypto_info_aes_gcm_256: 4 + 8 + 32 + 4 + 8 bytes.
        let s = ConnectionTrafficSecrets::Aes256Gcm { key, iv };
        let v = crypto_info(0x0304, 0x0102, &s).unwrap();
        assert_eq!(v.len(), 56);
        assert_eq!(&v[..2], &0x0304u16.to_ne_bytes());
        assert_eq!(&v[2..4], &52u16.to_ne_bytes());
        assert_eq!(&v[4..12], &[5, 6, 7, 8, 9, 10, 11, 12]);
        assert_eq!(&v[44..48], &[1, 2, 3, 4]);
        assert_eq!(&v[48..], &[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(
            std::mem::size_of::<libc::tls12_crypto_info_aes_gcm_256>(),
            56
        );
        let k128 = rustls::crypto::cipher::AeadKey::from([7u8; 32]);
        let iv = rustls::crypto::cipher::Iv::new([0; 12]);
        let s = ConnectionTrafficSecrets::Aes128Gcm { key: k128, iv };
        assert_eq!(
            crypto_info(0x0304, 0, &s).unwrap().len(),
            std::mem::size_of::<libc::tls12_crypto_info_aes_gcm_128>()
        );
    }

    #[test]
    fn tls12_gcm_never_goes_to_the_kernel() {
        let all = Support {
            tls13_aes128: true,
            tls13_aes256: true,
            tls13_chacha: true,
            tls12_chacha: true,
        };
        use rustls::CipherSuite as S;
        assert!(!all.takes(
            ProtocolVersion::TLSv1_2,
            S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        ));
        assert!(all.takes(
            ProtocolVersion::TLSv1_2,
            S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        ));
        assert!(all.takes(ProtocolVersion::TLSv1_3, S::TLS13_AES_128_GCM_SHA256));
        assert!(!MISSING.takes(ProtocolVersion::TLSv1_3, S::TLS13_AES_128_GCM_SHA256));
    }
}
