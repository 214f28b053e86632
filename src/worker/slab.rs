//! The worker's sessions: a slab of slots with generations, and the timer heap over the
//! sessions' deadlines.
//!
//! A slot's generation changes when its session is freed, so a late completion (its
//! token carries the old generation) finds nothing. Timers: each session carries one
//! deadline (`Conn::deadline`); the heap holds `(time, slot, generation)` entries with lazy
//! re-insertion — a later deadline is noticed when its earlier entry comes due — so a
//! session has one heap entry at most and no timer per connection exists in the kernel.

use crate::conn::Conn;
use crate::ring::GEN_MASK;
use crate::session::Session;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

struct Slot {
    gen: u32,
    s: Option<Session>,
}

/// Sessions by slab index.
pub struct Slab {
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl Slab {
    /// A slab that grows to `capacity` sessions without reallocating.
    pub fn with_capacity(capacity: usize) -> Slab {
        Slab {
            slots: Vec::with_capacity(capacity),
            free: Vec::new(),
            live: 0,
        }
    }

    /// Insert the session `make` builds for (index, generation); returns the index.
    pub fn insert(&mut self, make: impl FnOnce(u32, u32) -> Session) -> u32 {
        self.live += 1;
        if let Some(idx) = self.free.pop() {
            let slot = &mut self.slots[idx as usize];
            slot.s = Some(make(idx, slot.gen));
            idx
        } else {
            let idx = self.slots.len() as u32;
            self.slots.push(Slot {
                gen: 0,
                s: Some(make(idx, 0)),
            });
            idx
        }
    }

    /// The session in slot `idx` if it is of generation `gen`.
    pub fn get(&mut self, idx: u32, gen: u32) -> Option<&mut Session> {
        self.slots
            .get_mut(idx as usize)
            .filter(|sl| sl.gen == gen)
            .and_then(|sl| sl.s.as_mut())
    }

    /// The session in slot `idx`, whatever its generation.
    pub fn at(&mut self, idx: u32) -> Option<&mut Session> {
        self.slots
            .get_mut(idx as usize)
            .and_then(|sl| sl.s.as_mut())
    }

    /// Take the session out of slot `idx`; the slot's generation moves on.
    pub fn remove(&mut self, idx: u32) -> Option<Session> {
        let slot = self.slots.get_mut(idx as usize)?;
        let s = slot.s.take()?;
        slot.gen = (slot.gen + 1) & GEN_MASK;
        self.free.push(idx);
        self.live -= 1;
        Some(s)
    }

    /// Sessions alive.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no session is alive.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Indices of every live session.
    pub fn live_indices(&self) -> Vec<u32> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, sl)| sl.s.is_some())
            .map(|(i, _)| i as u32)
            .collect()
    }
}

/// The lazy min-heap of session deadlines.
#[derive(Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(u64, u32, u32)>>,
}

/// What a due heap entry means for its session.
pub enum Due {
    /// The entry is stale (superseded, re-inserted for a later deadline, or none is set).
    Nothing,
    /// The session's deadline passed (it is now cleared).
    Expired,
}

impl Timers {
    /// After a handler ran: give the session a heap entry if its deadline is earlier than
    /// the one it has (or it has none).
    pub fn sync(&mut self, c: &mut Conn) {
        if c.deadline != 0 && (c.timer_at == 0 || c.deadline < c.timer_at) {
            c.timer_at = c.deadline;
            self.heap.push(Reverse((c.deadline, c.idx, c.gen)));
        }
    }

    /// The next entry due at `now`: (slot, generation), removed from the heap.
    pub fn pop_due(&mut self, now: u64) -> Option<(u64, u32, u32)> {
        let Reverse((at, idx, gen)) = *self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        Some((at, idx, gen))
    }

    /// Judge a due entry `at` for its session (`closing`: being torn down).
    pub fn judge(&mut self, at: u64, c: &mut Conn, closing: bool, now: u64) -> Due {
        if at != c.timer_at {
            // Superseded by an earlier entry for the same session.
            return Due::Nothing;
        }
        if closing || c.deadline == 0 {
            c.timer_at = 0;
            return Due::Nothing;
        }
        if c.deadline > now {
            c.timer_at = c.deadline;
            self.heap.push(Reverse((c.deadline, c.idx, c.gen)));
            return Due::Nothing;
        }
        c.timer_at = 0;
        c.deadline = 0;
        Due::Expired
    }
}
