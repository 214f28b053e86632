//! wsecho's per-thread buffer pools: 64 KiB read buffers and small output buffers. A connection
//! borrows a buffer only while bytes are pending and gives it back as soon as it idles, so 10k+
//! idle connections cost little more than their sockets and task state.

use std::cell::RefCell;

/// Size of a pooled read buffer; large frames and bodies stream through it in pieces.
pub const BUF_SIZE: usize = 64 * 1024;
/// Buffers of each kind kept per thread when connections give them back.
const POOL_MAX: usize = 64;
/// Capacity of a fresh output buffer (a few dozen pipelined answers).
const OUT_CAP: usize = 4096;
/// Output buffers that grew past this are freed rather than pooled.
const OUT_KEEP_MAX: usize = 256 * 1024;

thread_local! {
    static BUFS: RefCell<Vec<Box<[u8]>>> = const { RefCell::new(Vec::new()) };
    static OUTS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// A read buffer of [`BUF_SIZE`] bytes (contents unspecified).
pub fn take_buf() -> Box<[u8]> {
    BUFS.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| vec![0u8; BUF_SIZE].into_boxed_slice())
}

/// Returns a read buffer to this thread's pool.
pub fn give_buf(b: Box<[u8]>) {
    BUFS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(b);
        }
    });
}

/// An empty output buffer with some capacity.
pub fn take_out() -> Vec<u8> {
    OUTS.with(|p| p.borrow_mut().pop())
        .unwrap_or_else(|| Vec::with_capacity(OUT_CAP))
}

/// Returns an output buffer to this thread's pool (emptied; dropped if it grew large).
pub fn give_out(mut v: Vec<u8>) {
    if v.capacity() == 0 || v.capacity() > OUT_KEEP_MAX {
        return;
    }
    v.clear();
    OUTS.with(|p| {
        let mut p = p.borrow_mut();
        if p.len() < POOL_MAX {
            p.push(v);
        }
    });
}
