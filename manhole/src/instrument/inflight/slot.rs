//! The in-flight table's lock-free protocol: one slot, how a call takes it
//! and gives it back, how a reader reads it whole or not at all, and the
//! per-thread free lists that trade slots with a shared pool.
//!
//! Nothing here is global: the table, the pool and each thread's free list
//! are the caller's. That is so that the `loom` model
//! (`manhole/tests/loom_inflight.rs`) runs this very file on loom's atomics
//! and mutex (its `super::sync`), while the runtime runs it on std's.
//!
//! The protocol (a seqlock whose sequence is the slot's generation):
//! - a call starts by reading the generation (even: free), a release fence,
//!   its fields (relaxed), then the generation plus one (release: odd, in
//!   flight);
//! - it ends by storing the generation plus two (release) before the slot
//!   goes back to a free list;
//! - a reader loads the generation (acquire), skips an even one, reads the
//!   fields (relaxed), an acquire fence, and the generation again: the
//!   fields are one call's only if it did not change.

use super::sync::{
    fence, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Mutex, MutexGuard,
    Ordering::{Acquire, Relaxed, Release},
};

/// The longest text of a call's arguments, in bytes.
pub(super) const ARGS_BYTES: usize = 96;
pub(super) const ARGS_WORDS: usize = ARGS_BYTES / 8;

/// One in-flight call's place in the table.
pub(super) struct Slot {
    /// Twice the number of calls the slot has held, plus one while it holds
    /// one: odd means in flight. Written last when a call starts and first
    /// when it ends.
    pub(super) generation: AtomicU64,
    pub(super) name_start: AtomicPtr<u8>,
    pub(super) name_len: AtomicUsize,
    pub(super) first_poll_ns: AtomicU64,
    /// When the current poll began (0: not polled now) and on which thread:
    /// changed by every poll within one generation, so read as they are.
    pub(super) poll_started_ns: AtomicU64,
    pub(super) thread: AtomicI32,
    /// The call this one was first polled inside, by id; 0 for none.
    pub(super) parent: AtomicUsize,
    /// Its arguments' text under `inspect(calls, args)`: the length plus
    /// one (0 for none), and the bytes.
    pub(super) args_len: AtomicUsize,
    pub(super) args: [AtomicU64; ARGS_WORDS],
}

/// What a call writes into its slot when it starts: what a reader must see
/// whole, from one call, or not at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Started {
    pub(super) name: &'static str,
    pub(super) first_poll_ns: u64,
    pub(super) parent: usize,
    /// The arguments' text and its length, under `inspect(calls, args)`.
    pub(super) args: Option<([u8; ARGS_BYTES], u8)>,
}

/// One call as a reader saw it.
pub(super) struct Seen {
    pub(super) generation: u64,
    pub(super) started: Started,
    pub(super) poll_started_ns: u64,
    pub(super) thread: i32,
}

impl Slot {
    /// Shows `started` in this free slot; returns the generation the call
    /// holds it in. Inlined into the instrumented future's code, in the
    /// program's own crate, as the stores were before they moved here.
    #[inline]
    pub(super) fn begin(&self, started: &Started) -> u64 {
        let generation = self.generation.load(Relaxed) + 1;
        // A reader that sees this call's fields must then see that the
        // slot's previous call has ended.
        fence(Release);
        self.name_start
            .store(started.name.as_ptr().cast_mut(), Relaxed);
        self.name_len.store(started.name.len(), Relaxed);
        self.first_poll_ns.store(started.first_poll_ns, Relaxed);
        self.parent.store(started.parent, Relaxed);
        match &started.args {
            None => self.args_len.store(0, Relaxed),
            Some((text, len)) => {
                for (word, bytes) in self.args.iter().zip(text.chunks(8)) {
                    let mut buffer = [0u8; 8];
                    buffer[..bytes.len()].copy_from_slice(bytes);
                    word.store(u64::from_ne_bytes(buffer), Relaxed);
                }
                self.args_len.store(usize::from(*len) + 1, Relaxed);
            }
        }
        self.generation.store(generation, Release);
        generation
    }

    /// Ends the call that holds the slot in `generation`; the slot may go
    /// back to a free list after this.
    #[inline]
    pub(super) fn end(&self, generation: u64) {
        self.poll_started_ns.store(0, Relaxed);
        self.generation.store(generation + 1, Release);
    }

    /// The call in this slot, read whole: `None` for a free slot, one whose
    /// call ended or changed while it was read, or (with `only_polled`) one
    /// not being polled. No lock, no allocation: a crash handler may call
    /// it.
    pub(super) fn read(&self, only_polled: bool) -> Option<Seen> {
        let generation = self.generation.load(Acquire);
        if generation % 2 == 0 {
            return None;
        }
        // The watchdog's frequent looks want only the polled calls: a
        // waiting one costs them this one read, not the copy of its text.
        if only_polled && self.poll_started_ns.load(Relaxed) == 0 {
            return None;
        }
        let name_start = self.name_start.load(Relaxed);
        let name_len = self.name_len.load(Relaxed);
        let first_poll_ns = self.first_poll_ns.load(Relaxed);
        let parent = self.parent.load(Relaxed);
        let poll_started_ns = self.poll_started_ns.load(Relaxed);
        let thread = self.thread.load(Relaxed);
        let args = self.args_len.load(Relaxed).checked_sub(1).map(|len| {
            let mut text = [0u8; ARGS_BYTES];
            for (word, bytes) in self.args.iter().zip(text.chunks_mut(8)) {
                bytes.copy_from_slice(&word.load(Relaxed).to_ne_bytes()[..bytes.len()]);
            }
            (text, u8::try_from(len.min(ARGS_BYTES)).unwrap_or(0))
        });
        fence(Acquire);
        if self.generation.load(Relaxed) != generation || name_start.is_null() {
            return None;
        }
        // SAFETY: the generation did not change while the fields were
        // read, so the pointer and length are the ones its call stored
        // together, from a `&'static str`.
        let name = unsafe {
            std::str::from_utf8_unchecked(std::slice::from_raw_parts(name_start, name_len))
        };
        Some(Seen {
            generation,
            started: Started {
                name,
                first_poll_ns,
                parent,
                args,
            },
            poll_started_ns,
            thread,
        })
    }
}

/// The shared pool of free slots no thread holds.
pub(super) type Pool = Mutex<Vec<u32>>;

/// The pool, locked; a poisoned lock is taken all the same (a panic
/// elsewhere leaves the list of numbers whole).
pub(super) fn lock(pool: &Pool) -> MutexGuard<'_, Vec<u32>> {
    pool.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A thread's own free slots, at most `N`: it trades half of them with the
/// pool when it runs out or over.
pub(super) struct LocalSlots<const N: usize> {
    pub(super) free: [u32; N],
    pub(super) len: usize,
}

impl<const N: usize> LocalSlots<N> {
    pub(super) const EMPTY: Self = LocalSlots {
        free: [0; N],
        len: 0,
    };

    /// A free slot: one of this thread's, or half a stack's worth from the
    /// pool, or never-used ones from `fresh` (the table's end).
    pub(super) fn take(
        &mut self,
        pool: &Pool,
        fresh: &mut dyn FnMut(usize) -> Option<std::ops::Range<u32>>,
    ) -> Option<u32> {
        if self.len == 0 {
            self.refill(pool, fresh);
        }
        self.len = self.len.checked_sub(1)?;
        Some(self.free[self.len])
    }

    fn refill(
        &mut self,
        pool: &Pool,
        fresh: &mut dyn FnMut(usize) -> Option<std::ops::Range<u32>>,
    ) {
        let wanted = N.div_ceil(2);
        {
            let mut pool = lock(pool);
            let from = pool.len().saturating_sub(wanted);
            for index in pool.drain(from..) {
                self.free[self.len] = index;
                self.len += 1;
            }
        }
        if self.len > 0 {
            return;
        }
        let Some(fresh) = fresh(wanted) else {
            return;
        };
        for index in fresh {
            self.free[self.len] = index;
            self.len += 1;
        }
    }

    /// Takes back a slot whose call has ended.
    pub(super) fn give(&mut self, index: u32, pool: &Pool) {
        if self.len == N {
            lock(pool).extend_from_slice(&self.free[N / 2..]);
            self.len = N / 2;
        }
        self.free[self.len] = index;
        self.len += 1;
    }

    /// Gives every slot back to the pool: the thread is ending.
    pub(super) fn give_all(&mut self, pool: &Pool) {
        lock(pool).extend_from_slice(&self.free[..self.len]);
        self.len = 0;
    }
}
