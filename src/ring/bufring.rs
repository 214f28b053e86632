//! The provided-buffer ring (copy-mode and auto tunnels, TLS ciphertext): page-aligned
//! ring entries the kernel takes buffers from, plus one slab of buffer memory. Receives
//! pick a buffer only when bytes arrive; the session gives it back once it is sent or fed.

use io_uring::types;
use std::io;

/// A provided-buffer ring: page-aligned ring entries plus one slab of buffer memory.
pub(super) struct BufRing {
    ring: *mut types::BufRingEntry,
    ring_layout: std::alloc::Layout,
    mem: Box<[u8]>,
    count: u16,
    pub(super) size: u32,
    tail: u16,
}

impl BufRing {
    pub(super) fn new(count: u16, size: u32) -> io::Result<BufRing> {
        if !count.is_power_of_two() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffer count must be a power of two",
            ));
        }
        let layout = std::alloc::Layout::from_size_align(
            count as usize * std::mem::size_of::<types::BufRingEntry>(),
            4096,
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        // SAFETY: the layout has a non-zero size; zeroed memory is a valid ring (tail 0).
        let ring = unsafe { std::alloc::alloc_zeroed(layout) } as *mut types::BufRingEntry;
        if ring.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mem = vec![0u8; count as usize * size as usize].into_boxed_slice();
        let mut br = BufRing {
            ring,
            ring_layout: layout,
            mem,
            count,
            size,
            tail: 0,
        };
        for bid in 0..count {
            br.add(bid);
        }
        br.publish();
        Ok(br)
    }

    pub(super) fn ring_addr(&self) -> u64 {
        self.ring as u64
    }

    fn add(&mut self, bid: u16) {
        let mask = self.count - 1;
        let slot = (self.tail & mask) as usize;
        let addr = self.mem.as_ptr() as u64 + bid as u64 * self.size as u64;
        // SAFETY: `slot < count`, inside the allocation made in `new`.
        let entry = unsafe { &mut *self.ring.add(slot) };
        entry.set_addr(addr);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    pub(super) fn publish(&mut self) {
        // SAFETY: `ring` is the first entry of the registered ring; the tail field overlays
        // its reserved field and is written with release ordering, as liburing does.
        unsafe {
            let tail = types::BufRingEntry::tail(self.ring) as *const std::sync::atomic::AtomicU16;
            (*tail).store(self.tail, std::sync::atomic::Ordering::Release);
        }
    }

    pub(super) fn recycle(&mut self, bid: u16) {
        self.add(bid);
        self.publish();
    }

    pub(super) fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let start = bid as usize * self.size as usize;
        let len = len.min(self.size as usize);
        self.mem.get(start..start + len).unwrap_or_default()
    }

    pub(super) fn ptr(&self, bid: u16, off: usize) -> *const u8 {
        let start = bid as usize * self.size as usize + off;
        self.mem[start..].as_ptr()
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout.
        unsafe { std::alloc::dealloc(self.ring as *mut u8, self.ring_layout) }
    }
}
