//! The quiet capture: the stack of a thread asleep in a system call, taken
//! from `/proc` and `process_vm_readv` without a signal, so that its
//! `poll`, `epoll_wait`, `nanosleep` or `select` never returns `EINTR`.
//! A copy is kept only if the thread was not scheduled while it was taken.

use super::outcome::Outcome;
#[cfg(target_arch = "x86_64")]
use super::outcome::{addresses_of, Capture};
#[cfg(target_arch = "x86_64")]
use super::unwind;
#[cfg(target_arch = "x86_64")]
use crate::os::interrupted;
use crate::os::procfs::Tasks;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The outermost frames of complete stacks seen so far: where threads
/// start (std's `thread_start`, `start_thread`, `clone3`; `_start` for the
/// main thread). Few, and the same for every thread of a kind.
static TAILS: Mutex<Vec<Vec<u64>>> = Mutex::new(Vec::new());
const MAX_TAILS: usize = 32;
const TAIL_FRAMES: usize = 4;

fn tails() -> std::sync::MutexGuard<'static, Vec<Vec<u64>>> {
    TAILS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The outermost frames of the complete stacks seen so far, for
/// [`capture_quietly`].
pub(crate) fn known_tails() -> Vec<Vec<u64>> {
    tails().clone()
}

/// Records the outermost frames of `complete`, a whole stack.
pub(crate) fn learn_tail(complete: &[u64]) {
    let tail = complete[complete.len().saturating_sub(TAIL_FRAMES)..].to_vec();
    let mut known = tails();
    if !tail.is_empty() && !known.contains(&tail) && known.len() < MAX_TAILS {
        known.push(tail);
    }
}

/// The frames that followed `address` in a complete stack seen before.
#[cfg(target_arch = "x86_64")]
fn tail_after(known: &[Vec<u64>], address: u64) -> Option<Vec<u64>> {
    known.iter().find_map(|tail| {
        let at = tail.iter().position(|&frame| frame == address)?;
        Some(tail[at + 1..].to_vec())
    })
}

/// Consistent copies that a quiet capture took again because the thread
/// ran while it was being copied.
static RETAKES: AtomicU64 = AtomicU64::new(0);

/// Called between a quiet copy and its check, by tests that wake the
/// thread right there (a `fn(tid)` as an address, 0 for none).
static AFTER_COPY: AtomicUsize = AtomicUsize::new(0);

/// How many quiet captures have been taken again since the process
/// started.
pub(crate) fn retakes() -> u64 {
    RETAKES.load(Ordering::Relaxed)
}

/// Sets (or clears) the hook that runs between a quiet copy and its check.
pub(crate) fn set_after_copy(hook: Option<fn(libc::pid_t)>) {
    AFTER_COPY.store(hook.map_or(0, |hook| hook as usize), Ordering::SeqCst);
}

#[cfg(target_arch = "x86_64")]
fn after_copy(tid: libc::pid_t) {
    let hook = AFTER_COPY.load(Ordering::SeqCst);
    if hook != 0 {
        // SAFETY: only `set_after_copy` stores here, from a `fn(pid_t)`.
        let hook: fn(libc::pid_t) = unsafe { std::mem::transmute(hook) };
        hook(tid);
    }
}

/// Takes the stack of a thread that sits in a system call without
/// signalling it, since a signal would make its `poll`, `epoll_wait`,
/// `nanosleep` or `select` return `EINTR`. Its pc and sp come from
/// `/proc/self/task/TID/syscall`, its stack is copied with
/// `process_vm_readv` (which cannot fault), and the copy is kept only if
/// the thread was not scheduled meanwhile (its schedstat count is the same
/// before the registers were read and after the copy); otherwise it is
/// taken again. `None` means "use the signal": the thread runs, moved every
/// time, or has a frame that needs a register `/proc` does not give.
#[cfg(target_arch = "x86_64")]
pub(crate) fn capture_quietly(
    tasks: &Tasks,
    tid: libc::pid_t,
    copy: &mut [u8],
    known_tails: &[Vec<u64>],
) -> Option<Outcome> {
    const ATTEMPTS: usize = 3;
    let scheduling = tasks.scheduling(tid)?;
    for attempt in 0..ATTEMPTS {
        let before = scheduling.times()?;
        let blocked = tasks.in_syscall(tid)?;
        let copied = interrupted::copy_stack(blocked.sp, copy.as_mut_ptr(), copy.len());
        after_copy(tid);
        // Not scheduled since `before`: still in the same call, with the
        // same registers, and its stack as copied.
        let after = scheduling.times()?;
        if before != after {
            if attempt + 1 < ATTEMPTS {
                RETAKES.fetch_add(1, Ordering::Relaxed);
            }
            continue;
        }
        if copied == 0 {
            return None;
        }
        let (unwound, _) = unwind::unwind_without_frame_pointer(
            blocked.pc,
            blocked.sp,
            &copy[..copied],
            &|address| tail_after(known_tails, address),
        )?;
        // Two frames at least: the system call's wrapper and its caller.
        if unwound.addresses.len() < 2 {
            return None;
        }
        return Some(Outcome::Frames {
            addresses: addresses_of(unwound.addresses),
            truncated: unwound.truncated,
            how: Capture::Proc,
        });
    }
    None
}

/// On other architectures the return address of the innermost frame may
/// live in a register that `/proc` does not give (the link register), so
/// every thread gets the signal.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn capture_quietly(
    _tasks: &Tasks,
    _tid: libc::pid_t,
    _copy: &mut [u8],
    _known_tails: &[Vec<u64>],
) -> Option<Outcome> {
    None
}
