//! wsecho's WebSocket side: the `101` answer, the `backend:<port>` banner, then an in-place
//! streaming echo. An idle connection holds no buffer: one is borrowed from the per-thread pool
//! (`pool.rs`) when bytes arrive and given back as soon as no partial frame is pending.

use std::io;

use tokio::io::AsyncWriteExt;

use crate::pool::{give_buf, take_buf, BUF_SIZE};
use crate::sock::{send, Sock};
use crate::ws;

/// Answers an upgrade request carrying `key` with `101` and the banner, then echoes until the
/// connection closes. `leftover` holds bytes that arrived after the request head.
pub async fn upgrade<S: Sock>(
    mut stream: S,
    port: u16,
    key: &str,
    leftover: &[u8],
) -> io::Result<()> {
    let banner = format!("backend:{port}");
    let mut out = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        ws::accept_key(key)
    )
    .into_bytes();
    out.extend_from_slice(&ws::build_frame(ws::OP_TEXT, banner.as_bytes(), None));
    send(&mut stream, &out).await?;
    drop(out);
    echo(stream, leftover).await
}

/// Where the echo loop is within the incoming frame stream.
enum State {
    /// Expecting a frame header.
    Header,
    /// Streaming a data frame's payload: bytes left, its mask, and the offset into the payload.
    Payload {
        left: u64,
        mask: Option<[u8; 4]>,
        offset: usize,
    },
}

/// Echoes frames in place: a data frame's payload is unmasked inside the read buffer and written
/// back behind a server header placed just before it (the unmasked header is 4 bytes shorter than
/// the client's, so it fits where the client's header was). One write per piece, no copies.
async fn echo<S: Sock>(mut stream: S, leftover: &[u8]) -> io::Result<()> {
    let mut buf: Option<Box<[u8]>> = None;
    // buf[out..start] is output not yet written (a header), buf[start..end] is unparsed input.
    let (mut out, mut start, mut end) = (0usize, 0usize, 0usize);
    if !leftover.is_empty() {
        let mut b = take_buf();
        b[..leftover.len()].copy_from_slice(leftover);
        end = leftover.len();
        buf = Some(b);
    }
    let mut state = State::Header;
    loop {
        // Process what is buffered.
        if let Some(b) = buf.as_mut() {
            loop {
                match state {
                    State::Header => {
                        let h = match ws::parse_header(&b[start..end]) {
                            Ok(Some(h)) => h,
                            Ok(None) => break,
                            Err(_) => {
                                let f = ws::build_frame(ws::OP_CLOSE, &1002u16.to_be_bytes(), None);
                                let _ = send(&mut stream, &f).await;
                                return Ok(());
                            }
                        };
                        if h.opcode >= ws::OP_CLOSE {
                            let total = h.header_len + h.len as usize;
                            if end - start < total {
                                break;
                            }
                            let p = &mut b[start + h.header_len..start + total];
                            if let Some(m) = h.mask {
                                ws::apply_mask(p, m, 0);
                            }
                            match h.opcode {
                                ws::OP_PING => {
                                    send(&mut stream, &ws::build_frame(ws::OP_PONG, p, None))
                                        .await?;
                                }
                                ws::OP_CLOSE => {
                                    let code = if p.len() >= 2 { &p[..2] } else { &[] };
                                    send(&mut stream, &ws::build_frame(ws::OP_CLOSE, code, None))
                                        .await?;
                                    let _ = stream.shutdown().await;
                                    give_buf(buf.take().expect("buffer present"));
                                    return Ok(());
                                }
                                _ => {}
                            }
                            start += total;
                            out = start;
                        } else {
                            let shl = ws::header_len(h.len, false);
                            let at = start + h.header_len - shl;
                            ws::encode_header(&mut b[at..], h.fin, h.opcode, h.len, None);
                            out = at;
                            start += h.header_len;
                            state = State::Payload {
                                left: h.len,
                                mask: h.mask,
                                offset: 0,
                            };
                        }
                    }
                    State::Payload {
                        ref mut left,
                        mask,
                        ref mut offset,
                    } => {
                        let n = (*left).min((end - start) as u64) as usize;
                        if let Some(m) = mask {
                            ws::apply_mask(&mut b[start..start + n], m, *offset);
                        }
                        start += n;
                        *left -= n as u64;
                        *offset += n;
                        if start > out {
                            send(&mut stream, &b[out..start]).await?;
                            out = start;
                        }
                        if *left == 0 {
                            state = State::Header;
                        } else {
                            break;
                        }
                    }
                }
            }
            // Make room: drop consumed bytes, keep pending output and unparsed input.
            if out == end {
                out = 0;
                start = 0;
                end = 0;
                if matches!(state, State::Header) {
                    give_buf(buf.take().expect("buffer present"));
                }
            } else if end == BUF_SIZE {
                b.copy_within(out..end, 0);
                start -= out;
                end -= out;
                out = 0;
            }
        }
        // Read more. Without a buffer, wait for readability first so idle connections hold none.
        let b = match buf.as_mut() {
            Some(b) => b,
            None => {
                stream.readable().await?;
                buf.insert(take_buf())
            }
        };
        let space = b.len() - end;
        match stream.try_read(&mut b[end..]) {
            Ok(0) => break,
            Ok(n) => {
                end += n;
                if n < space {
                    // A short read drained the socket: drop tokio's cached readiness now (before
                    // any await lets the driver record newer events) rather than paying a read(2)
                    // that returns EAGAIN later. Bytes arriving after this raise a new edge event.
                    stream.drained();
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if end == 0 {
                    give_buf(buf.take().expect("buffer present"));
                } else {
                    stream.readable().await?;
                }
            }
            Err(e) => {
                if let Some(b) = buf.take() {
                    give_buf(b);
                }
                return Err(e);
            }
        }
    }
    if let Some(b) = buf.take() {
        give_buf(b);
    }
    Ok(())
}
