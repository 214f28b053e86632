//! Minimal RFC 6455 framing shared by `wsecho` and `loadgen`: frame headers, masking and the
//! opening handshake. Only what an echo benchmark needs: no extensions, no UTF-8 validation.

use sha1::{Digest, Sha1};

/// Continuation frame.
pub const OP_CONT: u8 = 0x0;
/// Text frame.
pub const OP_TEXT: u8 = 0x1;
/// Binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Ping frame.
pub const OP_PING: u8 = 0x9;
/// Pong frame.
pub const OP_PONG: u8 = 0xA;

/// Longest possible frame header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER: usize = 14;

/// The key every loadgen client sends (RFC 6455's sample nonce; a benchmark needs no secrecy).
pub const CLIENT_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// FIN bit.
    pub fin: bool,
    /// Opcode (low 4 bits of the first byte).
    pub opcode: u8,
    /// Masking key, when the MASK bit is set.
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
    /// Bytes taken by the header itself.
    pub header_len: usize,
}

/// Why a frame header was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// RSV bits set (no extension was negotiated).
    Reserved,
    /// Opcode 3-7 or 11-15.
    BadOpcode,
    /// A control frame longer than 125 bytes or fragmented.
    BadControl,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FrameError::Reserved => "websocket frame with RSV bits set",
            FrameError::BadOpcode => "websocket frame with unknown opcode",
            FrameError::BadControl => "websocket control frame too long or fragmented",
        })
    }
}

impl std::error::Error for FrameError {}

/// Parses the frame header at the start of `buf`. `Ok(None)` means more bytes are needed.
pub fn parse_header(buf: &[u8]) -> Result<Option<Header>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0F;
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG => {
            if !fin || b1 & 0x7F > 125 {
                return Err(FrameError::BadControl);
            }
        }
        _ => return Err(FrameError::BadOpcode),
    }
    let masked = b1 & 0x80 != 0;
    let (len, mut pos) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    let mask = if masked {
        if buf.len() < pos + 4 {
            return Ok(None);
        }
        let m = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
        pos += 4;
        Some(m)
    } else {
        None
    };
    Ok(Some(Header {
        fin,
        opcode,
        mask,
        len,
        header_len: pos,
    }))
}

/// Length of the header [`encode_header`] writes for these parameters.
pub fn header_len(len: u64, masked: bool) -> usize {
    let base = if len < 126 {
        2
    } else if len <= u64::from(u16::MAX) {
        4
    } else {
        10
    };
    base + if masked { 4 } else { 0 }
}

/// Writes a frame header into `out` (at least [`header_len`] bytes) and returns its length.
pub fn encode_header(
    out: &mut [u8],
    fin: bool,
    opcode: u8,
    len: u64,
    mask: Option<[u8; 4]>,
) -> usize {
    out[0] = if fin { 0x80 } else { 0 } | (opcode & 0x0F);
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let mut pos = if len < 126 {
        out[1] = mbit | len as u8;
        2
    } else if len <= u64::from(u16::MAX) {
        out[1] = mbit | 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = mbit | 127;
        out[2..10].copy_from_slice(&len.to_be_bytes());
        10
    };
    if let Some(m) = mask {
        out[pos..pos + 4].copy_from_slice(&m);
        pos += 4;
    }
    pos
}

/// XORs `data` with `mask`; `offset` is the position of `data[0]` within the frame's payload, so a
/// payload can be unmasked in pieces as it arrives.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    let r = offset % 4;
    let m = [
        mask[r],
        mask[(r + 1) % 4],
        mask[(r + 2) % 4],
        mask[(r + 3) % 4],
    ];
    let m8 = u64::from_ne_bytes([m[0], m[1], m[2], m[3], m[0], m[1], m[2], m[3]]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(w) ^ m8).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= m[i % 4];
    }
}

/// A complete frame (header plus payload, masked when `mask` is given) in a new buffer.
pub fn build_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let hl = header_len(payload.len() as u64, mask.is_some());
    let mut v = vec![0u8; hl + payload.len()];
    encode_header(&mut v, true, opcode, payload.len() as u64, mask);
    v[hl..].copy_from_slice(payload);
    if let Some(m) = mask {
        apply_mask(&mut v[hl..], m, 0);
    }
    v
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut h = Sha1::new();
    h.update(key.as_bytes());
    h.update(GUID.as_bytes());
    base64(&h.finalize())
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        s.push(T[(n >> 18) as usize & 63] as char);
        s.push(T[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

/// Position just past the `\r\n\r\n` that ends an HTTP head, if `buf` holds one.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Value of the first header called `name` (case-insensitive) in an HTTP head.
pub fn header_value<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Whether a comma-separated header value contains `token` (case-insensitive).
pub fn has_token(value: &str, token: &str) -> bool {
    value
        .split(',')
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// The client's upgrade request.
pub fn client_request(host: &str, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {CLIENT_KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_rfc_example() {
        assert_eq!(accept_key(CLIENT_KEY), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn header_round_trip() {
        for len in [0u64, 1, 125, 126, 65535, 65536, 1 << 20] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let mut b = [0u8; MAX_HEADER];
                let n = encode_header(&mut b, true, OP_BINARY, len, mask);
                assert_eq!(n, header_len(len, mask.is_some()));
                let h = parse_header(&b[..n]).unwrap().unwrap();
                assert_eq!(
                    (h.fin, h.opcode, h.mask, h.len, h.header_len),
                    (true, OP_BINARY, mask, len, n)
                );
                assert_eq!(parse_header(&b[..n - 1]).unwrap(), None);
            }
        }
    }

    #[test]
    fn mask_in_pieces_equals_whole() {
        let data: Vec<u8> = (0..100u8).collect();
        let m = [0xde, 0xad, 0xbe, 0xef];
        let mut whole = data.clone();
        apply_mask(&mut whole, m, 0);
        let mut parts = data.clone();
        let (a, b) = parts.split_at_mut(13);
        apply_mask(a, m, 0);
        apply_mask(b, m, 13);
        assert_eq!(whole, parts);
        for (i, (x, y)) in whole.iter().zip(&data).enumerate() {
            assert_eq!(*x, y ^ m[i % 4]);
        }
    }

    #[test]
    fn rejects_bad_frames() {
        assert_eq!(parse_header(&[0x83, 0]), Err(FrameError::BadOpcode));
        assert_eq!(parse_header(&[0xC2, 0]), Err(FrameError::Reserved));
        assert_eq!(parse_header(&[0x09, 0]), Err(FrameError::BadControl));
        assert_eq!(parse_header(&[0x89, 126]), Err(FrameError::BadControl));
    }

    #[test]
    fn finds_headers() {
        let head =
            "GET / HTTP/1.1\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\r\n";
        assert!(has_token(
            header_value(head, "connection").unwrap(),
            "upgrade"
        ));
        assert_eq!(header_value(head, "UPGRADE"), Some("WebSocket"));
        assert_eq!(head_end(head.as_bytes()), Some(head.len()));
    }
}
