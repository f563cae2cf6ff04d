//! The realtime signal that asks a thread for its stack: choosing it,
//! installing its handler, and sending it to one thread.
//!
//! The handler is installed once per process, with `SA_SIGINFO |
//! SA_RESTART`: `SA_RESTART` resumes the app's interrupted `read`, `write`,
//! `accept` and the like. Calls the kernel never restarts (`poll`,
//! `epoll_wait`, `select`, `nanosleep`, ...) return `EINTR`, as they would
//! for any signal; `std::thread::sleep` retries by itself.
//!
//! A signal that already has a handler that is not ours is never taken over:
//! asking for it explicitly is an error, and the default choice skips it.

use crate::error::Error;
use crate::signal_names::name;
use std::sync::Mutex;

/// The handler's signature, as `sigaction` calls it with `SA_SIGINFO`.
pub(crate) type Handler = extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void);

/// Which signal carries stack requests, once installed.
static INSTALLED: Mutex<Option<libc::c_int>> = Mutex::new(None);

fn current_action(signal: libc::c_int) -> std::io::Result<libc::sigaction> {
    // SAFETY: sigaction with a null new action only reads the current one
    // into `old`, which is plain data that all zeroes initialises.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(old)
    }
}

fn is_ours(action: &libc::sigaction, handler: Handler) -> bool {
    action.sa_sigaction == handler as usize
}

fn is_default(action: &libc::sigaction) -> bool {
    action.sa_sigaction == libc::SIG_DFL
}

/// Makes `handler` (an address of an async-signal-safe `extern "C" fn`, with
/// the `SA_SIGINFO` signature when `flags` has it) the action of `signal`,
/// with an empty mask and `SA_RESTART`.
fn set_action(signal: libc::c_int, handler: usize, flags: libc::c_int) -> std::io::Result<()> {
    // SAFETY: the action is fully initialised: an empty mask, our flags and
    // a handler whose signature matches them.
    let status = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = flags | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut())
    };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes `handler` the action of the fatal signal `signal`, run on the
/// alternate signal stack where the thread has one (a stack overflow
/// leaves no room on its own stack), with every other signal blocked and
/// the fatal ones left open (`SA_NODEFER`), so that a fault inside the
/// handler reaches it again instead of killing the process on the spot.
/// Returns the action it replaced.
pub(crate) fn take_fatal(
    signal: libc::c_int,
    handler: Handler,
) -> std::io::Result<libc::sigaction> {
    let previous = current_action(signal)?;
    // SAFETY: the action is fully initialised: an empty mask, flags for the
    // three-argument handler, and that handler.
    let status = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_NODEFER;
        // Every other signal waits while the handler runs (a dump's stack
        // signal would otherwise run on top of it, on the same small
        // alternate stack); the fatal ones stay open, so that a fault
        // inside the handler reaches it.
        libc::sigfillset(&mut action.sa_mask);
        for fatal in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGILL,
            libc::SIGFPE,
            libc::SIGABRT,
        ] {
            libc::sigdelset(&mut action.sa_mask, fatal);
        }
        libc::sigaction(signal, &action, std::ptr::null_mut())
    };
    if status == 0 {
        Ok(previous)
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Puts `action` back as `signal`'s action. Async-signal-safe.
pub(crate) fn restore(signal: libc::c_int, action: &libc::sigaction) {
    // SAFETY: `action` came from `sigaction` itself.
    unsafe { libc::sigaction(signal, action, std::ptr::null_mut()) };
}

/// Whether `action` runs a function (rather than the default or ignore).
pub(crate) fn runs_a_handler(action: &libc::sigaction) -> bool {
    !is_default(action) && action.sa_sigaction != libc::SIG_IGN
}

/// Installs `handler` for `wanted`, or for the highest free realtime signal
/// when `wanted` is `None`, and returns the signal. Installing again with
/// the same signal does nothing; a different one is an error, since threads
/// may still have the first one pending.
pub(crate) fn install(wanted: Option<libc::c_int>, handler: Handler) -> Result<libc::c_int, Error> {
    let mut installed = INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(signal) = *installed {
        return match wanted {
            Some(wanted) if wanted != signal => Err(Error::Signal {
                signal: wanted,
                reason: format!(
                    "stacks are already captured with {} in this process",
                    name(signal)
                ),
            }),
            _ => Ok(signal),
        };
    }
    let signal = match wanted {
        Some(signal) => {
            if !(libc::SIGRTMIN()..=libc::SIGRTMAX()).contains(&signal) {
                return Err(Error::Signal {
                    signal,
                    reason: format!(
                        "is not a realtime signal; choose one from {} to {}",
                        name(libc::SIGRTMIN()),
                        name(libc::SIGRTMAX())
                    ),
                });
            }
            let action = current_action(signal).map_err(|err| Error::Signal {
                signal,
                reason: err.to_string(),
            })?;
            if !is_default(&action) && !is_ours(&action, handler) {
                return Err(Error::Signal {
                    signal,
                    reason: "already has a handler that is not the manhole's; choose another signal, or leave it unset to take the highest free one".to_owned(),
                });
            }
            signal
        }
        None => (libc::SIGRTMIN()..=libc::SIGRTMAX())
            .rev()
            .find(|&signal| current_action(signal).is_ok_and(|action| is_default(&action)))
            .ok_or_else(|| Error::Signal {
                signal: libc::SIGRTMAX(),
                reason: "every realtime signal already has a handler".to_owned(),
            })?,
    };
    set_action(signal, handler as usize, libc::SA_SIGINFO).map_err(|err| Error::Signal {
        signal,
        reason: err.to_string(),
    })?;
    *installed = Some(signal);
    Ok(signal)
}

/// The installed signal, installing `handler` on the highest free
/// realtime signal if none is yet.
pub(crate) fn ensure_installed(handler: Handler) -> Result<libc::c_int, Error> {
    install(None, handler)
}

/// The kernel's `siginfo` for `rt_tgsigqueueinfo`, laid out as its
/// `_rt` member: only the fields a queued signal carries.
#[repr(C)]
struct QueuedInfo {
    signo: libc::c_int,
    errno: libc::c_int,
    code: libc::c_int,
    #[cfg(target_pointer_width = "64")]
    _align: libc::c_int,
    pid: libc::pid_t,
    uid: libc::uid_t,
    value: usize,
    _rest: [u8; QUEUED_INFO_REST],
}

/// The kernel's siginfo is 128 bytes: the `_rt` fields, then padding.
const QUEUED_INFO_REST: usize =
    128 - 3 * 4 - (std::mem::size_of::<usize>() - 4) - 8 - std::mem::size_of::<usize>();

/// Queues `signal` to thread `tid` of this process, carrying `value`.
/// Addressing the thread group as well as the thread means a recycled tid
/// can never reach another process.
pub(crate) fn send_to_thread(
    signal: libc::c_int,
    tid: libc::pid_t,
    value: usize,
) -> std::io::Result<()> {
    let pid = std::process::id() as libc::pid_t;
    let info = QueuedInfo {
        signo: signal,
        errno: 0,
        code: libc::SI_QUEUE,
        #[cfg(target_pointer_width = "64")]
        _align: 0,
        pid,
        // SAFETY: getuid cannot fail.
        uid: unsafe { libc::getuid() },
        value,
        _rest: [0; QUEUED_INFO_REST],
    };
    // SAFETY: the info block is 128 bytes laid out as the kernel reads it.
    let status = unsafe {
        libc::syscall(
            libc::SYS_rt_tgsigqueueinfo,
            pid,
            tid,
            signal,
            &info as *const QueuedInfo,
        )
    };
    if status == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether thread `tid` of this process still exists (signal 0 checks
/// without sending).
pub(crate) fn thread_exists(tid: libc::pid_t) -> bool {
    let pid = std::process::id() as libc::pid_t;
    // SAFETY: tgkill with signal 0 sends nothing.
    let status = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) };
    status == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// The write end of the pipe that trigger signals (`activate_on`,
/// `oneshot_on`) poke; -1 when none is installed.
static TRIGGER_FD: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(-1);

/// The trigger signals' handler: one byte, the signal's number, into the
/// pipe. Async-signal-safe: `write` on a non-blocking pipe, errno restored.
extern "C" fn on_trigger(signal: libc::c_int) {
    // SAFETY: errno is thread-local and always readable and writable; the
    // write goes to a pipe this module owns, from a one-byte buffer.
    unsafe {
        let saved_errno = *libc::__errno_location();
        let fd = TRIGGER_FD.load(std::sync::atomic::Ordering::Relaxed);
        if fd >= 0 {
            let byte = u8::try_from(signal).unwrap_or(0);
            libc::write(fd, (&raw const byte).cast(), 1);
        }
        *libc::__errno_location() = saved_errno;
    }
}

/// The trigger pipe's read end, once created. Both ends stay open for the
/// life of the process: a handler that loaded the write end's number just
/// before an uninstall must never write into a descriptor reused since.
static TRIGGER_PIPE: Mutex<Option<std::os::fd::RawFd>> = Mutex::new(None);

fn new_trigger_pipe() -> std::io::Result<std::os::fd::RawFd> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    TRIGGER_FD.store(fds[1], std::sync::atomic::Ordering::Relaxed);
    Ok(fds[0])
}

/// The read end of the pipe trigger signals write to, created on first use.
pub(crate) fn trigger_pipe() -> std::io::Result<std::os::fd::RawFd> {
    let mut pipe = TRIGGER_PIPE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(read) = *pipe {
        return Ok(read);
    }
    let read = new_trigger_pipe()?;
    *pipe = Some(read);
    Ok(read)
}

/// In a forked child: a pipe of its own, so that its trigger signals wake
/// its own manhole and never the parent's. The inherited ends stay open
/// until `exec` (they are close-on-exec).
pub(crate) fn renew_trigger_pipe() {
    let mut pipe = TRIGGER_PIPE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if pipe.is_some() {
        *pipe = new_trigger_pipe().ok();
        if pipe.is_none() {
            TRIGGER_FD.store(-1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A trigger signal's handler, installed, with the action it replaced.
pub(crate) struct Trigger {
    signal: libc::c_int,
    previous: libc::sigaction,
}

impl Trigger {
    /// Installs the handler for `signal`, which then writes the signal's
    /// number into [`trigger_pipe`]. A signal that already has a handler is
    /// never taken over.
    pub(crate) fn install(signal: libc::c_int, option: &'static str) -> Result<Trigger, Error> {
        let previous = current_action(signal).map_err(|err| Error::InvalidOption {
            option,
            reason: err.to_string(),
        })?;
        let ours = previous.sa_sigaction == on_trigger as *const () as usize;
        if !ours && !is_default(&previous) && previous.sa_sigaction != libc::SIG_IGN {
            return Err(Error::InvalidOption {
                option,
                reason: format!(
                    "{} already has a handler that is not the manhole's; choose another signal",
                    name(signal)
                ),
            });
        }
        trigger_pipe().map_err(|err| Error::InvalidOption {
            option,
            reason: format!("cannot create the trigger pipe: {err}"),
        })?;
        set_action(signal, on_trigger as *const () as usize, 0).map_err(|err| {
            Error::InvalidOption {
                option,
                reason: err.to_string(),
            }
        })?;
        Ok(Trigger { signal, previous })
    }
}

impl Drop for Trigger {
    /// Gives the signal back its previous action.
    fn drop(&mut self) {
        // SAFETY: restores an action sigaction itself returned.
        unsafe { libc::sigaction(self.signal, &self.previous, std::ptr::null_mut()) };
    }
}

/// Blocks every asynchronous signal on the calling thread, except `keep`
/// (the stack signal), so that process-directed signals go to the app's
/// threads. Signals raised by faults stay deliverable.
pub(crate) fn block_async_signals(keep: Option<libc::c_int>) {
    // SAFETY: builds a signal set on the stack and changes only this
    // thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        for synchronous in [
            libc::SIGSEGV,
            libc::SIGBUS,
            libc::SIGFPE,
            libc::SIGILL,
            libc::SIGTRAP,
            libc::SIGSYS,
        ] {
            libc::sigdelset(&mut set, synchronous);
        }
        if let Some(keep) = keep {
            libc::sigdelset(&mut set, keep);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queued_info_is_the_kernels_size() {
        assert_eq!(std::mem::size_of::<QueuedInfo>(), 128);
        assert_eq!(
            std::mem::size_of::<QueuedInfo>(),
            std::mem::size_of::<libc::siginfo_t>()
        );
    }

    #[test]
    fn names() {
        assert_eq!(name(libc::SIGRTMAX()), "SIGRTMAX");
        assert_eq!(
            name(libc::SIGRTMIN() + 2),
            format!("SIGRTMIN+2 ({})", libc::SIGRTMIN() + 2)
        );
        assert_eq!(name(libc::SIGUSR1), "SIGUSR1");
        assert_eq!(name(libc::SIGKILL), "signal 9");
    }
}
