//! What every fast path of instrumented code reads: this thread's id,
//! cached, and the kernel's coarse monotonic clock.

use std::cell::Cell;

thread_local! {
    /// This thread's id, read once.
    static TID: Cell<i32> = const { Cell::new(0) };
}

/// This thread's id, read once per thread.
pub(crate) fn tid() -> i32 {
    TID.with(|tid| {
        if tid.get() == 0 {
            tid.set(nix::unistd::gettid().as_raw());
        }
        tid.get()
    })
}

/// Now, in nanoseconds of the kernel's coarse monotonic clock (plus one,
/// so that 0 can mean "not yet" and "not now"). It moves in ticks of a few
/// milliseconds, fine for ages and for polls measured against a
/// `slow_poll` of 100 ms, and costs a few nanoseconds where a precise read
/// costs about 25: every poll reads it.
pub(crate) fn now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable `timespec`; the call writes only
    // there, and cannot fail for this clock on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut now) };
    let seconds = u64::try_from(now.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(now.tv_nsec).unwrap_or(0);
    seconds.saturating_mul(1_000_000_000).saturating_add(nanos) + 1
}
