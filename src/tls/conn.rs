//! One client's TLS, sans-IO: a rustls server connection fed with the ciphertext the
//! worker's own io_uring receives took from the provided-buffer ring, and drained into
//! vectors the worker's sends carry out. No thread, no blocking call, no socket here: the
//! session ([`crate::conn::Conn`]) does every submission.
//!
//! While the session speaks HTTP, its handlers do not know TLS is there: a receive the
//! handler asks for (a request head, a body piece) waits here as a *virtual* read — the
//! plaintext is copied into the handler's buffer when it is decrypted — and a send is
//! encrypted at once and completes when its ciphertext is out. In a tunnel the relay
//! (`relay::tls`) feeds and drains the same connection.
//!
//! Memory: an idle connection holds the rustls state and nothing else lent by the worker:
//! receives take a ring buffer only when bytes arrive, and the output vectors go back to
//! the worker's spares as soon as they are sent.

use crate::ring::Op;
use rustls::ServerConnection;
use std::io::{self, BufRead, Read, Write};
use std::sync::Arc;

/// Decrypted plaintext rustls may hold before the session takes it: above it, ciphertext
/// waits (rustls refuses more beyond its own 16 KiB).
pub const PLAIN_HIGH: usize = 16 * 1024;
/// Tunnels: plaintext from the backend accepted into rustls (encrypted, not yet sent)
/// before the backend's receive pauses.
pub const CIPHER_HIGH: usize = 64 * 1024;
/// A TLS record header: type, version, length.
const RECORD_HEADER: usize = 5;
/// After feeding more than this, rustls's receive buffer is shrunk back.
const SHRINK_AFTER: usize = 4096;

/// A reader with no bytes yet: `WouldBlock`, never end-of-stream.
struct NothingYet;

impl Read for NothingYet {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

/// A receive a session handler asked for: where the plaintext goes.
#[derive(Debug)]
struct VirtualRead {
    /// The handler's buffer (see [`crate::conn::Conn::recv`]'s contract: it stays put and
    /// untouched until the read completes).
    ptr: *mut u8,
    len: usize,
    op: Op,
}

/// What feeding ciphertext did.
#[derive(Debug)]
pub enum Fed {
    /// Took this many bytes (the rest waits: enough plaintext is pending).
    Took(usize),
    /// The bytes are not TLS: a plain HTTP request on the TLS port.
    PlainHttp,
    /// A TLS error (a bad handshake or record); an alert may be waiting to be sent.
    Failed(rustls::Error),
}

/// One client's TLS state.
pub struct TlsConn {
    tls: ServerConnection,
    /// Ciphertext for the client; `out[out_sent..]` is not sent yet. Lent by the ring's
    /// spares while not empty.
    out: Vec<u8>,
    out_sent: usize,
    /// A `TlsSend` is in flight (pointing into `out`).
    pub sending: bool,
    /// A `TlsRecv` is armed.
    pub recv_armed: bool,
    /// A NOP that completes the virtual read is in flight.
    pub nop: bool,
    /// A ciphertext buffer not fed yet (plaintext was pending): (buffer id, bytes fed, length).
    pub held: Option<(u16, u32, u32)>,
    read: Option<VirtualRead>,
    /// A send a handler is waiting on: its operation and plaintext length.
    send: Option<(Op, usize)>,
    /// The client's stream ended (TCP end-of-stream, or a `close_notify`).
    pub eof: bool,
    /// A receive or send failed (`-errno`), or TLS failed (`-EPROTO`).
    pub error: Option<i32>,
    /// The client spoke plain HTTP: from here on the socket is used as is (our 400).
    pub plain: bool,
    /// The first ciphertext byte was seen (plain HTTP is recognised before it).
    started: bool,
    /// Record tracking, so the kernel can take over at a record boundary (kTLS): bytes of
    /// the current record still to come, and a partial header.
    record_left: usize,
    header: [u8; RECORD_HEADER],
    header_len: usize,
    /// Tunnels: decrypted plaintext on its way to the backend; `up[up_sent..]` not sent.
    pub up: Vec<u8>,
    /// Bytes of `up` already sent.
    pub up_sent: usize,
}

impl std::fmt::Debug for TlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConn")
            .field("handshaking", &self.tls.is_handshaking())
            .field("sending", &self.sending)
            .field("recv_armed", &self.recv_armed)
            .field("eof", &self.eof)
            .field("error", &self.error)
            .finish()
    }
}

impl TlsConn {
    /// A connection for a client that just arrived on a listen address with `config`.
    pub fn new(config: Arc<rustls::ServerConfig>) -> io::Result<TlsConn> {
        let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
        // Our own bounds apply (PLAIN_HIGH, CIPHER_HIGH); what a handler sends is at most
        // a head or one body piece.
        tls.set_buffer_limit(None);
        Ok(TlsConn {
            tls,
            out: Vec::new(),
            out_sent: 0,
            sending: false,
            recv_armed: false,
            nop: false,
            held: None,
            read: None,
            send: None,
            eof: false,
            error: None,
            plain: false,
            started: false,
            record_left: 0,
            header: [0; RECORD_HEADER],
            header_len: 0,
            up: Vec::new(),
            up_sent: 0,
        })
    }

    /// The handshake is not finished.
    pub fn handshaking(&self) -> bool {
        self.tls.is_handshaking()
    }

    /// The rustls connection (the kernel hand-off extracts its secrets).
    pub fn rustls(&self) -> &ServerConnection {
        &self.tls
    }

    /// Decrypted plaintext waiting to be taken, in bytes.
    pub fn plain_pending(&mut self) -> usize {
        self.tls
            .process_new_packets()
            .map_or(0, |s| s.plaintext_bytes_to_read())
    }

    /// Whether a virtual read could complete now: plaintext is here, the stream failed,
    /// or it ended (a TCP end, or a `close_notify`) and everything we queued for the
    /// client is out — a client that says goodbye right after its handshake still gets
    /// the session tickets sent after it, and one that half-closes gets a response's tail:
    /// the session hears of the end only then.
    pub fn read_ready(&mut self) -> bool {
        let (plain, closed) = self.tls.process_new_packets().map_or((0, false), |s| {
            (s.plaintext_bytes_to_read(), s.peer_has_closed())
        });
        plain > 0 || self.error.is_some() || ((closed || self.eof) && self.flushed())
    }

    /// Feed ciphertext; stops early once [`PLAIN_HIGH`] plaintext is pending.
    pub fn feed(&mut self, mut data: &[u8]) -> Fed {
        if !self.started && !data.is_empty() {
            self.started = true;
            // A TLS connection starts with a handshake record (22); a plain request with a
            // method name.
            if data[0].is_ascii_uppercase() {
                self.plain = true;
                return Fed::PlainHttp;
            }
        }
        let total = data.len();
        while !data.is_empty() {
            if self.plain_pending() >= PLAIN_HIGH {
                break;
            }
            let chunk = data;
            match self.tls.read_tls(&mut data) {
                Ok(0) => {
                    // Only after the client's close_notify: nothing it sends counts any
                    // more; take it all so nothing waits for a read that never comes.
                    data = &[];
                    break;
                }
                Ok(_) => {}
                // Only "received plaintext buffer full": the rest waits.
                Err(_) => break,
            }
            self.note_bytes(&chunk[..chunk.len() - data.len()]);
            if let Err(e) = self.tls.process_new_packets() {
                self.error = Some(-libc::EPROTO);
                return Fed::Failed(e);
            }
        }
        let took = total - data.len();
        if took > SHRINK_AFTER {
            // rustls grows its receive buffer by 4 KiB steps up to a whole record and
            // shrinks it back only at its next read: ask for one now, from a source that
            // has nothing (and is not at its end), so an idle connection keeps 4 KiB, not 17.
            let _ = self.tls.read_tls(&mut NothingYet);
        }
        Fed::Took(took)
    }

    /// The client's stream ended (the receive returned 0).
    pub fn feed_eof(&mut self) {
        self.eof = true;
        let _ = self.tls.read_tls(&mut io::empty());
    }

    /// Follow record boundaries over ciphertext `data` just fed.
    fn note_bytes(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            if self.record_left > 0 {
                let k = self.record_left.min(data.len());
                self.record_left -= k;
                data = &data[k..];
                continue;
            }
            let k = (RECORD_HEADER - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + k].copy_from_slice(&data[..k]);
            self.header_len += k;
            data = &data[k..];
            if self.header_len == RECORD_HEADER {
                self.record_left = u16::from_be_bytes([self.header[3], self.header[4]]) as usize;
                self.header_len = 0;
            }
        }
    }

    /// The ciphertext fed so far ends exactly at a record boundary.
    pub fn at_record_boundary(&self) -> bool {
        self.record_left == 0 && self.header_len == 0
    }

    /// Take decrypted plaintext into `buf`: bytes, `0` at the end of the client's stream,
    /// `-errno` on failure, `-EAGAIN` when none is here yet.
    pub fn read_plain(&mut self, buf: &mut [u8]) -> i32 {
        let r = self.tls.reader().read(buf);
        self.read_result(r)
    }

    /// A plaintext read's result as bytes, `0` (end), `-errno` or `-EAGAIN`.
    fn read_result(&self, r: io::Result<usize>) -> i32 {
        match r {
            Ok(n) => n as i32,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if let Some(err) = self.error {
                    err
                } else if self.eof {
                    0
                } else {
                    -libc::EAGAIN
                }
            }
            // A TCP end without close_notify: the end of the stream, as for plain TCP.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => 0,
            Err(_) => self.error.unwrap_or(-libc::EPROTO),
        }
    }

    /// Tunnels: append up to `max` bytes of decrypted plaintext to `up` (copied from
    /// rustls's own buffer, nothing zero-filled): bytes, `0` at the end of the client's
    /// stream, `-errno`, or `-EAGAIN` when none is here.
    pub fn read_plain_into_up(&mut self, max: usize) -> i32 {
        let mut reader = self.tls.reader();
        let r = match reader.fill_buf() {
            Ok(chunk) => {
                // Empty: the client's close_notify came (rustls's clean end).
                let n = chunk.len().min(max);
                self.up.extend_from_slice(&chunk[..n]);
                reader.consume(n);
                Ok(n)
            }
            Err(e) => Err(e),
        };
        self.read_result(r)
    }

    /// Encrypt `plain` for the client; returns the bytes taken (in a tunnel, fewer once
    /// [`CIPHER_HIGH`] is queued).
    pub fn write_plain(&mut self, plain: &[u8], bounded: bool) -> usize {
        let room = if bounded {
            CIPHER_HIGH.saturating_sub(self.cipher_pending())
        } else {
            plain.len()
        };
        let take = room.min(plain.len());
        if take == 0 {
            return 0;
        }
        self.tls.writer().write(&plain[..take]).unwrap_or(0)
    }

    /// Ciphertext waiting to go out (ours and rustls's).
    pub fn cipher_pending(&mut self) -> usize {
        let queued = self
            .tls
            .process_new_packets()
            .map_or(0, |s| s.tls_bytes_to_write());
        queued + self.out.len() - self.out_sent
    }

    /// Queue a `close_notify` (the server's end of the stream).
    pub fn close_notify(&mut self) {
        self.tls.send_close_notify();
    }

    /// The last words before a close: a `close_notify` (after an error: the alert rustls
    /// queued), as bytes to send at once — empty while a send is in flight (it would be
    /// overtaken), mid-handshake without an error, or after plain HTTP.
    pub fn goodbye(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        if self.plain || self.sending || self.out_sent < self.out.len() {
            return v;
        }
        if self.error.is_none() {
            if self.handshaking() {
                return v;
            }
            self.close_notify();
        }
        let _ = self.tls.write_tls(&mut v);
        v
    }

    /// Ciphertext to send next, if no send is in flight and there is some: the vector is
    /// taken from `spare` when the connection holds none. The caller sends it and sets
    /// `sending`.
    pub fn next_out(&mut self, spare: impl FnOnce() -> Vec<u8>) -> Option<&[u8]> {
        if self.sending {
            return None;
        }
        if self.out_sent >= self.out.len() {
            if !self.tls.wants_write() {
                return None;
            }
            if self.out.capacity() == 0 {
                self.out = spare();
            }
            self.out.clear();
            self.out_sent = 0;
            let _ = self.tls.write_tls(&mut self.out);
            if self.out.is_empty() {
                return None;
            }
        }
        Some(&self.out[self.out_sent..])
    }

    /// A `TlsSend` completed with `res`: whether everything queued so far is out. The
    /// output vector goes back (through `give`) when it is.
    pub fn on_sent(&mut self, res: i32, give: impl FnOnce(Vec<u8>)) -> bool {
        self.sending = false;
        if res < 0 {
            self.error.get_or_insert(res);
            return false;
        }
        self.out_sent += res as usize;
        if self.out_sent < self.out.len() || self.tls.wants_write() {
            return false;
        }
        self.out_sent = 0;
        give(std::mem::take(&mut self.out));
        true
    }

    /// Everything queued for the client is out.
    pub fn flushed(&self) -> bool {
        !self.sending && self.out_sent >= self.out.len() && !self.tls.wants_write()
    }

    /// Give back what the connection holds that is the worker's (it is being freed:
    /// nothing in flight points into it).
    pub fn release(&mut self, give: &mut dyn FnMut(Vec<u8>), recycle: &mut dyn FnMut(u16)) {
        give(std::mem::take(&mut self.out));
        give(std::mem::take(&mut self.up));
        if let Some((bid, _, _)) = self.held.take() {
            recycle(bid);
        }
    }

    /// The rustls connection itself, for the kernel hand-off (nothing of ours may be
    /// pending: the caller checked [`TlsConn::quiet`]).
    pub fn into_rustls(self) -> ServerConnection {
        self.tls
    }

    /// Nothing is in flight or waiting on either side of the record layer, and the
    /// ciphertext fed so far ends at a record boundary: the kernel can take over.
    pub fn quiet(&mut self) -> bool {
        !self.handshaking()
            && !self.sending
            && !self.recv_armed
            && !self.nop
            && self.held.is_none()
            && self.error.is_none()
            && !self.eof
            && self.flushed()
            && self.at_record_boundary()
            && self.plain_pending() == 0
    }

    /// A handler asked for a receive into `buf` as `op` (see `Conn::recv`'s contract).
    pub fn want_read(&mut self, buf: &mut [u8], op: Op) {
        self.read = Some(VirtualRead {
            ptr: buf.as_mut_ptr(),
            len: buf.len(),
            op,
        });
    }

    /// The virtual read waiting, if any: (its buffer, its operation).
    pub fn pending_read(&self) -> Option<(*mut u8, usize, Op)> {
        self.read.as_ref().map(|r| (r.ptr, r.len, r.op))
    }

    /// The virtual read is done (or cancelled).
    pub fn clear_read(&mut self) -> Option<Op> {
        self.read.take().map(|r| r.op)
    }

    /// A handler's send of `len` plaintext bytes as `op` is queued.
    pub fn want_send(&mut self, len: usize, op: Op) {
        self.send = Some((op, len));
    }

    /// The send a handler waits on, taken once its ciphertext is out.
    pub fn take_send(&mut self) -> Option<(Op, usize)> {
        self.send.take()
    }
}
