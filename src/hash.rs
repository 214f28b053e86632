//! FNV-1a hashing: the stable 64-bit hash behind `hash` balancing, the ketama ring and
//! backend ids.

use std::net::IpAddr;

/// FNV-1a, 64 bits: stable across runs and processes.
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// FNV-1a over an address's octets (4 or 16).
pub fn fnv1a_ip(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(a) => fnv1a(&a.octets()),
        IpAddr::V6(a) => fnv1a(&a.octets()),
    }
}
