//! Ctrl-C in the interactive session: cancels the command that runs, as a
//! shell does, and leaves the session open.
//!
//! While a command runs, `SIGINT` is caught by a handler that puts
//! `/dev/null` in place of the descriptor the reply is read from (`dup2`,
//! which a signal handler may call): the blocked read sees the end of its
//! input at once, whether it reads a socket or an ssh tunnel's pipe. The
//! session then drops that connection and opens a new one; the server,
//! seeing its client gone, gives the command up.

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The descriptor to cut off on Ctrl-C; -1 while no command runs.
static CUT_OFF: AtomicI32 = AtomicI32::new(-1);
/// `/dev/null`, opened before any command, for the handler to `dup2`.
static DEV_NULL: AtomicI32 = AtomicI32::new(-1);
/// Whether Ctrl-C cut a command off.
static CANCELLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_signal: libc::c_int) {
    // SAFETY: reads and restores this thread's errno, around the one call
    // that may set it.
    let saved = unsafe { *libc::__errno_location() };
    let fd = CUT_OFF.swap(-1, Ordering::SeqCst);
    let dev_null = DEV_NULL.load(Ordering::SeqCst);
    if fd >= 0 && dev_null >= 0 {
        CANCELLED.store(true, Ordering::SeqCst);
        // SAFETY: `dup2` is async-signal-safe; both descriptors are open
        // (the reply's until the command returns, which clears `CUT_OFF`
        // first).
        unsafe { libc::dup2(dev_null, fd) };
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = saved };
}

/// Catches Ctrl-C while it lives, to cut off the reads from `fd`; puts
/// the previous action back when dropped.
pub struct Cancellable {
    previous: libc::sigaction,
}

impl Cancellable {
    /// Starts catching Ctrl-C for a command whose replies come from `fd`.
    pub fn new(fd: RawFd) -> Cancellable {
        if DEV_NULL.load(Ordering::SeqCst) < 0 {
            // SAFETY: opens a path with no other effect.
            let dev_null =
                unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
            DEV_NULL.store(dev_null, Ordering::SeqCst);
        }
        CANCELLED.store(false, Ordering::SeqCst);
        CUT_OFF.store(fd, Ordering::SeqCst);
        // SAFETY: a zeroed sigaction is valid; the handler is a plain
        // `extern "C" fn` that does only async-signal-safe work; SA_RESTART
        // keeps other calls going.
        let previous = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_interrupt as *const () as usize;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            let mut previous: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGINT, &action, &mut previous);
            previous
        };
        Cancellable { previous }
    }

    /// Whether Ctrl-C cut the command off.
    pub fn cancelled(&self) -> bool {
        CANCELLED.load(Ordering::SeqCst)
    }
}

impl Drop for Cancellable {
    fn drop(&mut self) {
        CUT_OFF.store(-1, Ordering::SeqCst);
        // SAFETY: puts back the action saved by `new`.
        unsafe { libc::sigaction(libc::SIGINT, &self.previous, std::ptr::null_mut()) };
    }
}
