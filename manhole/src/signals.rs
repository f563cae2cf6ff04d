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

use crate::Error;
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
    // SAFETY: the action is fully initialised: an empty mask, our flags and
    // a handler with the SA_SIGINFO signature that is async-signal-safe.
    let status = unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(signal, &action, std::ptr::null_mut())
    };
    if status != 0 {
        return Err(Error::Signal {
            signal,
            reason: std::io::Error::last_os_error().to_string(),
        });
    }
    *installed = Some(signal);
    Ok(signal)
}

/// The installed signal, installing `handler` on the highest free
/// realtime signal if none is yet.
pub(crate) fn ensure_installed(handler: Handler) -> Result<libc::c_int, Error> {
    install(None, handler)
}

/// `SIGRTMIN+3`, `SIGRTMAX`, or the plain number for anything else.
pub(crate) fn name(signal: libc::c_int) -> String {
    let (min, max) = (libc::SIGRTMIN(), libc::SIGRTMAX());
    if signal == max {
        "SIGRTMAX".to_owned()
    } else if signal == min {
        "SIGRTMIN".to_owned()
    } else if (min..max).contains(&signal) {
        format!("SIGRTMIN+{} ({signal})", signal - min)
    } else {
        format!("signal {signal}")
    }
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
        assert_eq!(name(libc::SIGUSR1), "signal 10");
    }
}
