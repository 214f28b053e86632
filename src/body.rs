//! HTTP/1.1 message-body framing, decoded as bytes stream through (RFC 9112 §6–7).
//!
//! ringway never buffers a body: it forwards body bytes verbatim (a chunked body stays
//! chunked) and runs them through a [`Body`] only to learn where the body ends, so that
//! the next request or response on the same connection starts at the right byte, and to
//! reject bad chunk framing before it reaches the other side. [`Body::feed`] takes any
//! slice of bytes and answers how many of them belong to the body.

/// Longest run of chunk-extension or trailer bytes accepted per line (streamed, but
/// bounded so a peer cannot keep a "body" open with an endless extension).
const LINE_MAX: u32 = 4096;
/// Most trailer bytes accepted after the last chunk.
const TRAILERS_MAX: u32 = 16 * 1024;
/// Largest chunk size accepted (2^62): hex digits past this overflow.
const CHUNK_MAX: u64 = 1 << 62;

/// Where a chunked body is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    /// Reading chunk-size hex digits (`digits` so far, value `size`).
    Size { size: u64, digits: u8 },
    /// After the size: optional whitespace and `;ext` up to CR.
    Ext { size: u64, len: u32 },
    /// Expecting the LF of the size line.
    SizeLf { size: u64 },
    /// Inside chunk data.
    Data { left: u64 },
    /// Expecting CR after chunk data.
    DataCr,
    /// Expecting LF after chunk data.
    DataLf,
    /// At the start of a trailer line (or the final CRLF).
    TrailerStart { total: u32 },
    /// Inside a trailer field line.
    Trailer { total: u32, len: u32 },
    /// Expecting the LF that ends a trailer line.
    TrailerLf { total: u32 },
    /// Expecting the LF of the final empty line.
    EndLf,
    /// The body is complete.
    Done,
}

/// How a message's body is framed, and how much of it is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// No body (GET without Content-Length, HEAD responses, 1xx/204/304).
    None,
    /// `Content-Length`: this many bytes are left.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked(ChunkedState),
    /// A response without length: everything until the server closes.
    Close,
}

/// Opaque progress of a chunked body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedState(Chunk);

/// Bad chunked framing: the message is rejected (400 from a client, 502 from a backend).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FramingError(pub &'static str);

impl Body {
    /// A fresh chunked body.
    pub fn chunked() -> Body {
        Body::Chunked(ChunkedState(Chunk::Size { size: 0, digits: 0 }))
    }

    /// Whether the body is complete (a close-delimited body never is: the peer's close
    /// ends it).
    pub fn done(&self) -> bool {
        match self {
            Body::None => true,
            Body::Length(n) => *n == 0,
            Body::Chunked(ChunkedState(c)) => *c == Chunk::Done,
            Body::Close => false,
        }
    }

    /// Account for `buf`, the next bytes on the connection: returns how many of them
    /// belong to this body (the rest belong to the next message).
    pub fn feed(&mut self, buf: &[u8]) -> Result<usize, FramingError> {
        match self {
            Body::None => Ok(0),
            Body::Close => Ok(buf.len()),
            Body::Length(left) => {
                let n = (*left).min(buf.len() as u64);
                *left -= n;
                Ok(n as usize)
            }
            Body::Chunked(ChunkedState(state)) => feed_chunked(state, buf),
        }
    }
}

fn feed_chunked(state: &mut Chunk, buf: &[u8]) -> Result<usize, FramingError> {
    let mut i = 0;
    while i < buf.len() {
        let b = buf[i];
        match *state {
            Chunk::Done => return Ok(i),
            Chunk::Data { left } => {
                // Fast path: skip the data in one step.
                let n = left.min((buf.len() - i) as u64);
                i += n as usize;
                *state = if left == n {
                    Chunk::DataCr
                } else {
                    Chunk::Data { left: left - n }
                };
                continue;
            }
            Chunk::Size { size, digits } => {
                if let Some(d) = (b as char).to_digit(16) {
                    if digits >= 16 || size > CHUNK_MAX / 16 {
                        return Err(FramingError("chunk size overflows"));
                    }
                    let size = size * 16 + d as u64;
                    *state = Chunk::Size {
                        size,
                        digits: digits + 1,
                    };
                } else if digits == 0 {
                    return Err(FramingError("chunk size is not hexadecimal"));
                } else if b == b'\r' {
                    *state = Chunk::SizeLf { size };
                } else if b == b';' || b == b' ' || b == b'\t' {
                    *state = Chunk::Ext { size, len: 1 };
                } else {
                    return Err(FramingError("bad character after chunk size"));
                }
            }
            Chunk::Ext { size, len } => {
                if b == b'\r' {
                    *state = Chunk::SizeLf { size };
                } else if (b < 0x20 && b != b'\t') || b == 0x7f {
                    return Err(FramingError("control character in chunk extension"));
                } else if len >= LINE_MAX {
                    return Err(FramingError("chunk extension too long"));
                } else {
                    *state = Chunk::Ext { size, len: len + 1 };
                }
            }
            Chunk::SizeLf { size } => {
                if b != b'\n' {
                    return Err(FramingError("chunk size line not ended by CRLF"));
                }
                *state = if size == 0 {
                    Chunk::TrailerStart { total: 0 }
                } else {
                    Chunk::Data { left: size }
                };
            }
            Chunk::DataCr => {
                if b != b'\r' {
                    return Err(FramingError("chunk data longer than its size"));
                }
                *state = Chunk::DataLf;
            }
            Chunk::DataLf => {
                if b != b'\n' {
                    return Err(FramingError("chunk data not ended by CRLF"));
                }
                *state = Chunk::Size { size: 0, digits: 0 };
            }
            Chunk::TrailerStart { total } => {
                if b == b'\r' {
                    *state = Chunk::EndLf;
                } else if b == b' ' || b == b'\t' {
                    return Err(FramingError("obs-fold in trailers"));
                } else {
                    *state = trailer_byte(b, total, 0)?;
                }
            }
            Chunk::Trailer { total, len } => {
                *state = if b == b'\r' {
                    Chunk::TrailerLf { total }
                } else {
                    trailer_byte(b, total, len)?
                };
            }
            Chunk::TrailerLf { total } => {
                if b != b'\n' {
                    return Err(FramingError("trailer line not ended by CRLF"));
                }
                *state = Chunk::TrailerStart { total };
            }
            Chunk::EndLf => {
                if b != b'\n' {
                    return Err(FramingError("chunked body not ended by CRLF"));
                }
                *state = Chunk::Done;
                return Ok(i + 1);
            }
        }
        i += 1;
    }
    Ok(i)
}

fn trailer_byte(b: u8, total: u32, len: u32) -> Result<Chunk, FramingError> {
    if b == 0 || b == b'\n' || b == 0x7f {
        return Err(FramingError("bad character in trailer"));
    }
    if total >= TRAILERS_MAX || len >= LINE_MAX {
        return Err(FramingError("trailers too long"));
    }
    Ok(Chunk::Trailer {
        total: total + 1,
        len: len + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in pieces of `step` bytes; return bytes consumed in total and the
    /// final state.
    fn run(input: &[u8], step: usize) -> Result<(usize, Body), FramingError> {
        let mut b = Body::chunked();
        let mut used = 0;
        for piece in input.chunks(step) {
            let n = b.feed(piece)?;
            used += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((used, b))
    }

    #[test]
    fn chunked_body_ends_at_the_right_byte_whatever_the_split() {
        let body =
            b"5\r\nhello\r\n1a;name=val\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Sum: 1\r\n\r\n";
        let mut input = body.to_vec();
        input.extend_from_slice(b"GET /next HTTP/1.1\r\n");
        for step in [1, 2, 3, 7, 64, 4096] {
            let (used, b) = run(&input, step).unwrap();
            assert_eq!(used, body.len(), "step {step}");
            assert!(b.done());
        }
    }

    #[test]
    fn bad_chunked_framing_is_rejected() {
        let bad: &[&[u8]] = &[
            b"zz\r\n",
            b"\r\n",
            b"5\r\nhelloX\r\n",
            b"5\nhello\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"11111111111111111\r\n",
            b"ffffffffffffffff\r\n",
            b"-5\r\n",
            b"5 x\x01\r\n",
            b"0\r\n trailer\r\n\r\n",
            b"0\r\nX: a\x00\r\n\r\n",
            b"0\r\n\rX",
        ];
        for input in bad {
            assert!(
                run(input, 4096).is_err(),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
        let mut long_ext = b"5;".to_vec();
        long_ext.extend(std::iter::repeat_n(b'a', 5000));
        assert!(run(&long_ext, 100).is_err());
    }

    #[test]
    fn length_and_close_and_none() {
        let mut b = Body::Length(5);
        assert_eq!(b.feed(b"abc").unwrap(), 3);
        assert!(!b.done());
        assert_eq!(b.feed(b"deGET").unwrap(), 2);
        assert!(b.done());
        assert_eq!(b.feed(b"more").unwrap(), 0);
        let mut c = Body::Close;
        assert_eq!(c.feed(b"all of it").unwrap(), 9);
        assert!(!c.done());
        let mut n = Body::None;
        assert_eq!(n.feed(b"GET").unwrap(), 0);
        assert!(n.done());
    }
}
