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

/// What this kernel offers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Support {
    /// `TCP_ULP tls` works: tunnels hand their record layer to the kernel.
    Kernel,
    /// No `tls` ULP (not built, not loadable): rustls in user space.
    Missing,
}

impl Support {
    /// Tunnels can use kernel TLS.
    pub fn available(self) -> bool {
        self == Support::Kernel
    }

    /// For the startup line and `explain`.
    pub fn describe(self) -> &'static str {
        match self {
            Support::Kernel => {
                "kernel TLS (kTLS): tunnels hand their keys to the kernel after the handshake and relay as plain tunnels (splice included)"
            }
            Support::Missing => {
                "rustls in user space (this kernel has no kTLS: \"tls\" is not in /proc/sys/net/ipv4/tcp_available_ulp and TCP_ULP \"tls\" fails; modprobe tls where the module exists)"
            }
        }
    }
}

/// Does the kernel do TLS? The ULP is listed once its module is loaded; where it is not
/// listed, one `TCP_ULP tls` on a loopback connection loads it if it exists.
pub fn probe() -> Support {
    let listed = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_available_ulp")
        .unwrap_or_default()
        .split_whitespace()
        .any(|u| u == "tls");
    if listed || ulp_on_loopback().is_ok() {
        Support::Kernel
    } else {
        Support::Missing
    }
}

fn ulp_on_loopback() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let c = std::net::TcpStream::connect(l.local_addr()?)?;
    let (_s, _) = l.accept()?;
    set_ulp(c.as_raw_fd())
}

fn set_ulp(fd: RawFd) -> io::Result<()> {
    crate::sys::setsockopt_bytes(fd, libc::SOL_TCP, libc::TCP_ULP, b"tls")
}

/// Put the `tls` ULP on `fd` (the first step; the socket still speaks as before until
/// [`install`]). Fails where the kernel has no kTLS: then nothing changed.
pub fn attach(fd: RawFd) -> io::Result<()> {
    set_ulp(fd)
}

/// Give `conn`'s session keys to the kernel for both directions of `fd` (after
/// [`attach`]). On failure the connection cannot go on: its keys are gone from user space.
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
        ConnectionTrafficSecrets::Aes128Gcm { key, iv } => (51, key.as_ref(), iv.as_ref()),
        ConnectionTrafficSecrets::Aes256Gcm { key, iv } => (52, key.as_ref(), iv.as_ref()),
        ConnectionTrafficSecrets::Chacha20Poly1305 { key, iv } => (54, key.as_ref(), iv.as_ref()),
        _ => return None,
    };
    let mut v = Vec::with_capacity(64);
    v.extend_from_slice(&version.to_ne_bytes());
    v.extend_from_slice(&cipher.to_ne_bytes());
    if cipher == 54 {
        // ChaCha20-Poly1305: a 12-byte iv, no salt.
        v.extend_from_slice(iv);
        v.extend_from_slice(key);
    } else {
        // AES-GCM: the iv's last 8 bytes, the key, its first 4 bytes as the salt.
        v.extend_from_slice(iv.get(4..12)?);
        v.extend_from_slice(key);
        v.extend_from_slice(iv.get(..4)?);
    }
    v.extend_from_slice(&seq.to_be_bytes());
    Some(v)
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
    }
}
