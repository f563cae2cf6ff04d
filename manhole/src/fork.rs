//! What happens to the manhole across `fork()`.
//!
//! `pthread_atfork` handlers keep the manhole's own locks consistent: the
//! forking thread takes the dump lock and the installed-manhole slot before
//! the fork and releases them in both processes after it, so the child never
//! inherits a lock held by a thread it does not have. In the child, which
//! has only the forking thread, the parent's manhole is forgotten without
//! touching its socket, and, when `reinstall_on_fork` is on, a thread waits
//! `reinstall_delay` and installs the child's own manhole on the child's
//! pid. A child that calls `exec` or exits first never creates a socket.
//! (`posix_spawn`, which std's `Command` uses when it can, runs no fork
//! handlers at all.)

use crate::{capture, listener};
use std::cell::RefCell;
use std::sync::{MutexGuard, Once};

type Held = (MutexGuard<'static, ()>, listener::SlotGuard);

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Registers the fork handlers, once per process.
pub(crate) fn register() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: the three handlers are plain `extern "C" fn()` that never
        // unwind; pthread_atfork only records them.
        let status =
            unsafe { libc::pthread_atfork(Some(prepare), Some(in_parent), Some(in_child)) };
        if status != 0 {
            crate::log::always(format_args!(
                "cannot register the fork handlers; forked children get no manhole"
            ));
        }
    });
}

extern "C" fn prepare() {
    let held = (capture::turn(), listener::slot());
    HELD.with(|cell| *cell.borrow_mut() = Some(held));
}

extern "C" fn in_parent() {
    HELD.with(|cell| drop(cell.borrow_mut().take()));
}

extern "C" fn in_child() {
    let Some((turn, mut slot)) = HELD.with(|cell| cell.borrow_mut().take()) else {
        return;
    };
    let reinstall = listener::forget_inherited(&mut slot);
    drop(slot);
    drop(turn);
    crate::signals::renew_trigger_pipe();
    if let Some(options) = reinstall {
        let delay = options.reinstall_delay;
        let spawned = std::thread::Builder::new()
            .name("manhole-fork".to_owned())
            .spawn(move || {
                std::thread::sleep(delay);
                if let Err(err) = options.install() {
                    crate::log::always(format_args!("not reinstalled in forked child: {err}"));
                }
            });
        if let Err(err) = spawned {
            crate::log::always(format_args!("cannot reinstall in forked child: {err}"));
        }
    }
}
