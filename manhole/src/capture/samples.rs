//! The profiler's ring of raw samples, and the handler side that fills it.
//!
//! A profile tick reaches a thread as the stack signal, from the thread's
//! CPU-clock timer (`SI_TIMER`) or queued by the wall-clock sampler
//! (`SI_QUEUE`), carrying [`tick_value`]. The handler ([`record`]) takes the
//! next slot of a ring allocated before the profile started, stores the
//! interrupted registers and copies the top of the stack, and marks the
//! slot ready. It allocates nothing, takes no lock, unwinds nothing and
//! cannot panic; a slot still unread when the ring comes round again is
//! not waited for: the sample is dropped and counted.
//!
//! The profiler drains the ring on its own thread ([`drain`]) and unwinds
//! the copies there. The ring is never freed, so a tick that lands after
//! its profile ended still writes into valid memory; it finds the epoch
//! changed and writes nothing.

use crate::os::interrupted;
use crate::os::interrupted::Registers;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

/// How much of a thread's stack each sample copies: deep enough for the
/// frames that matter in a flame graph, small enough that 1000 Hz on many
/// threads stays cheap. A deeper stack is cut, and its outer frames are
/// missing from that sample.
pub(crate) const SAMPLE_STACK: usize = 16 * 1024;
/// Slots in the ring: over half a second of 8 busy threads at 99 Hz, and
/// 60 ms of them at 1000 Hz, between two drains 10 ms apart.
pub(crate) const RING_SLOTS: usize = 512;

/// Set in a signal's value to mark it a profile tick; the stack capture's
/// values keep this bit clear (their low half is a slot index, far below
/// it).
const TICK: usize = 1 << 31;

const FREE: u32 = 0;
const WRITING: u32 = 1;
const READY: u32 = 2;

struct Slot {
    state: AtomicU32,
    tid: AtomicI32,
    /// How many ticks the sample stands for: a timer that expired more
    /// than once before its signal was delivered counts its overruns.
    weight: AtomicU32,
    /// Into `SAMPLE_STACK` bytes of the ring's one allocation, never freed.
    /// Taken only between the claim (FREE to WRITING) and READY; read only
    /// after READY.
    copy: interrupted::Copy,
}

/// The ring, allocated by the first profile and kept for good.
static RING: AtomicPtr<Slot> = AtomicPtr::new(std::ptr::null_mut());
/// Where the ring's stack copies start, for giving their pages back.
static RING_START: AtomicUsize = AtomicUsize::new(0);
/// The running profile's epoch; 0 when none runs, and ticks are ignored.
static EPOCH: AtomicU32 = AtomicU32::new(0);
static NEXT_EPOCH: AtomicU32 = AtomicU32::new(1);
/// Where the next tick writes, modulo `RING_SLOTS`.
static NEXT: AtomicUsize = AtomicUsize::new(0);
/// Ticks of the running profile that found their slot still unread.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// The value a profile tick carries for `epoch`.
pub(crate) fn tick_value(epoch: u32) -> usize {
    TICK | (epoch as usize & (TICK - 1))
}

/// Whether a signal's value is a profile tick rather than a stack request.
pub(crate) fn is_tick(value: usize) -> bool {
    value & TICK != 0 && value >> 32 == 0
}

fn ring() -> Option<&'static [Slot]> {
    let ring = RING.load(Ordering::Acquire);
    if ring.is_null() {
        return None;
    }
    // SAFETY: a non-null ring points at RING_SLOTS slots that are never
    // freed.
    Some(unsafe { std::slice::from_raw_parts(ring, RING_SLOTS) })
}

/// Starts taking samples into the ring (allocating it the first time) and
/// returns the epoch the ticks must carry. Only one profile runs at a time;
/// the caller makes sure of it.
pub(crate) fn start() -> u32 {
    if ring().is_none() {
        // One zeroed allocation, mapped lazily: a slot costs only the pages
        // its copies touch.
        let stacks =
            Box::leak(vec![0u8; RING_SLOTS * SAMPLE_STACK].into_boxed_slice()).as_mut_ptr();
        let slots: Box<[Slot]> = (0..RING_SLOTS)
            .map(|index| Slot {
                state: AtomicU32::new(FREE),
                tid: AtomicI32::new(0),
                weight: AtomicU32::new(0),
                copy: interrupted::Copy::new(
                    // SAFETY: `index * SAMPLE_STACK` stays inside the
                    // allocation.
                    unsafe { stacks.add(index * SAMPLE_STACK) },
                    SAMPLE_STACK,
                ),
            })
            .collect();
        RING_START.store(stacks as usize, Ordering::Release);
        RING.store(Box::leak(slots).as_mut_ptr(), Ordering::Release);
    }
    // Samples a late tick of an earlier profile left behind.
    drain(&mut |_| {});
    DROPPED.store(0, Ordering::Relaxed);
    let epoch = loop {
        let epoch = NEXT_EPOCH.fetch_add(1, Ordering::Relaxed) & (TICK as u32 - 1);
        if epoch != 0 {
            break epoch;
        }
    };
    EPOCH.store(epoch, Ordering::Release);
    epoch
}

/// Stops taking samples: ticks still in flight find the epoch changed.
/// Returns how many were dropped.
pub(crate) fn stop() -> u64 {
    EPOCH.store(0, Ordering::Release);
    DROPPED.load(Ordering::Relaxed)
}

/// The handler's part, for a tick of `value` carrying `weight` ticks.
/// Async-signal-safe: atomics, `gettid` and `process_vm_readv` only.
pub(crate) fn record(value: usize, context: *mut libc::c_void, weight: u32) {
    let epoch = EPOCH.load(Ordering::Acquire);
    if epoch == 0 || value != tick_value(epoch) {
        return;
    }
    let Some(ring) = ring() else {
        return;
    };
    let slot = &ring[NEXT.fetch_add(1, Ordering::Relaxed) % RING_SLOTS];
    if slot
        .state
        .compare_exchange(FREE, WRITING, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        DROPPED.fetch_add(u64::from(weight), Ordering::Relaxed);
        return;
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
    slot.tid.store(tid, Ordering::Relaxed);
    slot.weight.store(weight, Ordering::Relaxed);
    slot.copy.take(context);
    slot.state.store(READY, Ordering::Release);
}

/// One sample as the handler left it, borrowed from its slot.
pub(crate) struct RawSample<'a> {
    pub(crate) tid: libc::pid_t,
    pub(crate) weight: u32,
    pub(crate) registers: Registers,
    /// The top of the stack, from `registers.sp` up.
    pub(crate) stack: &'a [u8],
}

/// Hands every ready sample to `each` and frees its slot. Called by the
/// profiler's thread only, never from a handler.
pub(crate) fn drain(each: &mut dyn FnMut(RawSample<'_>)) {
    let Some(ring) = ring() else {
        return;
    };
    for slot in ring {
        if slot.state.load(Ordering::Acquire) != READY {
            continue;
        }
        // The handler finished (READY was read with acquire ordering), and
        // no handler claims the slot before it is freed.
        let (registers, stack) = slot.copy.read();
        each(RawSample {
            tid: slot.tid.load(Ordering::Relaxed),
            weight: slot.weight.load(Ordering::Relaxed),
            registers,
            stack,
        });
        slot.state.store(FREE, Ordering::Release);
    }
}

/// Gives the pages of the ring's copies back to the system after a
/// profile: the memory stays mapped (a late tick may still write, and
/// finds zeroed pages), but costs nothing until the next profile.
pub(crate) fn release_pages() {
    let start = RING_START.load(Ordering::Acquire);
    if start == 0 {
        return;
    }
    let page = 4096;
    let aligned = start.next_multiple_of(page);
    let end = (start + RING_SLOTS * SAMPLE_STACK) / page * page;
    if end > aligned {
        // SAFETY: the range lies inside an allocation that is never freed;
        // MADV_DONTNEED on private anonymous memory only zeroes it.
        unsafe {
            libc::madvise(
                aligned as *mut libc::c_void,
                end - aligned,
                libc::MADV_DONTNEED,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_stack_requests_never_mix() {
        assert!(is_tick(tick_value(1)));
        assert!(is_tick(tick_value(0x7fff_ffff)));
        // A stack request: generation in the high half, slot index low.
        assert!(!is_tick((5usize << 32) | 17));
        assert!(!is_tick(
            (u32::MAX as usize) << 32 | (super::super::dump::MAX_THREADS - 1)
        ));
    }
}
