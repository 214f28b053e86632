//! Session tickets that every worker of a generation can open — worker threads and worker
//! processes alike — so a client resumes whichever worker the kernel hands it to.
//!
//! The key of each 6-hour period is derived (HKDF-SHA256) from a 32-byte secret in the
//! generation's shared region ([`crate::shm::Counters::ticket_secret`]), so every worker
//! derives the same keys without talking to the others; a ticket is accepted during its
//! own period and the next (as rustls's own rotation does), and never past
//! `ssl_session_timeout`. A ticket is `key name (16) ‖ nonce (12) ‖ AES-256-GCM(state)`,
//! the key name authenticated as associated data. A reload makes a new generation with a
//! new secret: its clients' next handshake is a full one, as with nginx's per-cycle keys.

use aws_lc_rs::{aead, hkdf};
use rustls::server::ProducesTickets;

/// How long one key encrypts new tickets.
const PERIOD_S: u64 = 6 * 3600;
const NAME: usize = 16;
const NONCE: usize = aead::NONCE_LEN;

/// The ticketer of one generation.
pub struct Shared {
    secret: [u8; 32],
    /// Seconds a ticket may be used (`ssl_session_timeout`).
    lifetime: u32,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("tickets::Shared")
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// The length of the HKDF output: a key and its name.
struct KeyMaterial;

impl hkdf::KeyType for KeyMaterial {
    fn len(&self) -> usize {
        32 + NAME
    }
}

impl Shared {
    /// Tickets from `secret`, usable for `lifetime` seconds.
    pub fn new(secret: [u8; 32], lifetime: u32) -> Shared {
        Shared { secret, lifetime }
    }

    /// The key and key name of period `epoch`.
    fn key(&self, epoch: u64) -> Option<(aead::LessSafeKey, [u8; NAME])> {
        let prk =
            hkdf::Salt::new(hkdf::HKDF_SHA256, b"ringway session tickets").extract(&self.secret);
        let info = epoch.to_be_bytes();
        let info = [&info[..]];
        let okm = prk.expand(&info, KeyMaterial).ok()?;
        let mut out = [0u8; 32 + NAME];
        okm.fill(&mut out).ok()?;
        let key = aead::UnboundKey::new(&aead::AES_256_GCM, &out[..32]).ok()?;
        let mut name = [0u8; NAME];
        name.copy_from_slice(&out[32..]);
        Some((aead::LessSafeKey::new(key), name))
    }

    fn epoch() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() / PERIOD_S)
    }
}

impl ProducesTickets for Shared {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        self.lifetime
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        let (key, name) = self.key(Self::epoch())?;
        let mut nonce = [0u8; NONCE];
        aws_lc_rs::rand::fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(NAME + NONCE + plain.len() + aead::AES_256_GCM.tag_len());
        out.extend_from_slice(&name);
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        key.seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(&name),
            &mut body,
        )
        .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        if cipher.len() < NAME + NONCE {
            return None;
        }
        let (name, rest) = cipher.split_at(NAME);
        let (nonce, sealed) = rest.split_at(NONCE);
        let now = Self::epoch();
        for epoch in [now, now.saturating_sub(1)] {
            let Some((key, want)) = self.key(epoch) else {
                continue;
            };
            if want != name {
                continue;
            }
            let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut body = sealed.to_vec();
            let plain = key
                .open_in_place(nonce, aead::Aad::from(&want), &mut body)
                .ok()?;
            let n = plain.len();
            body.truncate(n);
            return Some(body);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_holder_of_the_secret_opens_a_ticket_and_nobody_else() {
        let a = Shared::new([5; 32], 300);
        let b = Shared::new([5; 32], 300);
        let other = Shared::new([6; 32], 300);
        let t = a.encrypt(b"session state").unwrap();
        assert_eq!(b.decrypt(&t).unwrap(), b"session state");
        assert!(other.decrypt(&t).is_none());
        let mut bad = t.clone();
        *bad.last_mut().unwrap() ^= 1;
        assert!(b.decrypt(&bad).is_none(), "tampered");
        assert!(b.decrypt(&t[..20]).is_none(), "short");
        assert_ne!(
            a.encrypt(b"x").unwrap(),
            a.encrypt(b"x").unwrap(),
            "fresh nonces"
        );
    }
}
