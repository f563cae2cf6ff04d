//! The sync calls in flight: for each thread, a fixed stack of the
//! `#[inspect(calls)]` sync functions it is inside, so that the watchdog
//! can report one stuck for too long (`stuck_call`) with its thread.
//!
//! Each thread claims one [`ThreadCalls`] on its first instrumented sync
//! call: a free one from the list (a thread that ended gives its own back),
//! or a new one pushed on the list, which is never shortened. A call stores
//! its counters' address and the coarse clock at the next depth and bumps
//! the depth; its end lowers the depth. Relaxed stores and a thread-local:
//! no lock, no allocation after the first call. Calls nested deeper than
//! [`DEPTH`] are counted but not shown.

use super::clock::{now_ns, tid};
use std::cell::Cell;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// The deepest nesting shown per thread.
const DEPTH: usize = 16;

/// One thread's sync calls in flight.
struct ThreadCalls {
    /// The thread that holds it; 0 while free.
    tid: AtomicI32,
    depth: AtomicUsize,
    /// The counters of each call, by address: what names it.
    stats: [AtomicUsize; DEPTH],
    started_ns: [AtomicU64; DEPTH],
    next: AtomicPtr<ThreadCalls>,
}

static ALL: AtomicPtr<ThreadCalls> = AtomicPtr::new(std::ptr::null_mut());

/// This thread's claim, given back when the thread ends.
struct Claim(Cell<*const ThreadCalls>);

impl Drop for Claim {
    fn drop(&mut self) {
        let calls = self.0.get();
        if !calls.is_null() {
            // SAFETY: claimed from the list, whose entries are never freed.
            let calls = unsafe { &*calls };
            calls.depth.store(0, Ordering::Release);
            calls.tid.store(0, Ordering::Release);
        }
    }
}

thread_local! {
    static MINE: Claim = const { Claim(Cell::new(std::ptr::null())) };
}

fn claim() -> &'static ThreadCalls {
    let me = tid();
    let mut next = ALL.load(Ordering::Acquire);
    while !next.is_null() {
        // SAFETY: entries of the list are leaked boxes, never freed.
        let calls: &'static ThreadCalls = unsafe { &*next };
        if calls
            .tid
            .compare_exchange(0, me, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            return calls;
        }
        next = calls.next.load(Ordering::Acquire);
    }
    let calls: &'static ThreadCalls = Box::leak(Box::new(ThreadCalls {
        tid: AtomicI32::new(me),
        depth: AtomicUsize::new(0),
        stats: [const { AtomicUsize::new(0) }; DEPTH],
        started_ns: [const { AtomicU64::new(0) }; DEPTH],
        next: AtomicPtr::new(std::ptr::null_mut()),
    }));
    let pointer = std::ptr::from_ref(calls).cast_mut();
    let mut head = ALL.load(Ordering::Acquire);
    loop {
        calls.next.store(head, Ordering::Relaxed);
        match ALL.compare_exchange_weak(head, pointer, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return calls,
            Err(now) => head = now,
        }
    }
}

/// Marks the start of a sync call on this thread, of the function whose
/// counters are at `counters`. `false` when the thread is ending (its
/// thread-locals are gone): nothing to undo.
#[inline]
pub(crate) fn enter(counters: usize) -> bool {
    MINE.try_with(|mine| {
        let mut calls = mine.0.get();
        if calls.is_null() {
            calls = claim();
            mine.0.set(calls);
        }
        // SAFETY: claimed from the list, never freed.
        let calls = unsafe { &*calls };
        let depth = calls.depth.load(Ordering::Relaxed);
        if let (Some(slot), Some(started)) = (calls.stats.get(depth), calls.started_ns.get(depth)) {
            slot.store(counters, Ordering::Relaxed);
            started.store(now_ns(), Ordering::Relaxed);
        }
        calls.depth.store(depth + 1, Ordering::Release);
    })
    .is_ok()
}

/// Marks the end of the innermost sync call on this thread.
#[inline]
pub(crate) fn leave() {
    let _ = MINE.try_with(|mine| {
        let calls = mine.0.get();
        if !calls.is_null() {
            // SAFETY: claimed from the list, never freed.
            let calls = unsafe { &*calls };
            let depth = calls.depth.load(Ordering::Relaxed);
            calls
                .depth
                .store(depth.saturating_sub(1), Ordering::Release);
        }
    });
}

/// One sync call in flight, as the watchdog reads it.
pub(crate) struct SyncCall {
    pub(crate) tid: i32,
    /// Its depth on its thread, 0 for the outermost.
    pub(crate) depth: usize,
    /// The address of the function's counters.
    pub(crate) counters: usize,
    pub(crate) started_ns: u64,
}

/// Every sync call in flight, thread by thread, outermost first.
pub(crate) fn in_flight() -> Vec<SyncCall> {
    let mut found = Vec::new();
    let mut next = ALL.load(Ordering::Acquire);
    while !next.is_null() {
        // SAFETY: entries of the list are leaked boxes, never freed.
        let calls: &'static ThreadCalls = unsafe { &*next };
        next = calls.next.load(Ordering::Acquire);
        let tid = calls.tid.load(Ordering::Acquire);
        if tid == 0 {
            continue;
        }
        let depth = calls.depth.load(Ordering::Acquire).min(DEPTH);
        for index in 0..depth {
            let counters = calls.stats[index].load(Ordering::Relaxed);
            if counters == 0 {
                continue;
            }
            found.push(SyncCall {
                tid,
                depth: index,
                counters,
                started_ns: calls.started_ns[index].load(Ordering::Relaxed),
            });
        }
    }
    found
}

/// The coarse clock, as the start times are read against it.
pub(crate) fn now() -> u64 {
    now_ns()
}
