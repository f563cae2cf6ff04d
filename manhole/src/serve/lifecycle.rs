//! Installing and uninstalling the manhole, and what becomes of it across
//! `fork()`.
//!
//! 1. [`Options::install`] applies the `MANHOLE` environment variable,
//!    checks the options, installs the stack signal's handler and starts the
//!    `manhole` thread ([`crate::serve::listener`]). The installed manhole, which
//!    owns its [`Options`], is kept in one process-wide slot: only one
//!    manhole runs at a time, and every setting is read from it.
//! 2. [`uninstall`] takes it out of the slot, stops the thread, removes the
//!    socket file and gives a trigger signal back its previous action. At
//!    process exit an `atexit` hook removes the file too, only in the
//!    process that created it.
//! 3. Across `fork()`, `pthread_atfork` handlers keep the manhole's own
//!    locks consistent: the forking thread takes the dump lock and the slot
//!    before the fork and releases them in both processes after it, so the
//!    child never inherits a lock held by a thread it does not have. The
//!    child, which has only the forking thread, forgets the parent's manhole
//!    without touching its socket and, with `reinstall_on_fork`, installs
//!    its own after `reinstall_delay`. A child that calls `exec` or exits
//!    first never creates a socket. (`posix_spawn`, which std's `Command`
//!    uses when it can, runs no fork handlers at all.)

use crate::capture::{self, symbols};
use crate::error::Error;
use crate::instrument::inflight;
use crate::log::{self, Log};
use crate::options::{
    apply_environment, Activation, Options, Waits, DEFAULT_MAX_REPLY_BYTES, DEFAULT_SLOW_POLL,
    DEFAULT_SYMBOL_CACHE_IDLE,
};
use crate::os::signals;
use crate::report::{crash, history, panics, watchdog};
use crate::serve::listener::{self, Running, Settings, Start};
use crate::serve::reply;
use crate::serve::session::SessionConfig;
use crate::signal_names;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

/// A running manhole, as [`Options::install`] returns it.
///
/// Dropping the handle leaves the manhole running: it serves until
/// [`Handle::uninstall`], [`uninstall`] or the end of the process.
#[derive(Debug)]
pub struct Handle {
    generation: u64,
    socket_path: PathBuf,
}

impl Handle {
    /// Where the manhole listens.
    #[must_use]
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Stops this manhole: the listener exits, open sessions are closed and
    /// the socket is removed. Returns `false` when this manhole was already
    /// uninstalled (a newer one is left alone).
    pub fn uninstall(self) -> bool {
        uninstall_generation(Some(self.generation))
    }
}

/// Stops the running manhole, whichever installed it, as
/// [`Handle::uninstall`] does. Returns `false` when none is running.
pub fn uninstall() -> bool {
    uninstall_generation(None)
}

/// The installed manhole.
struct Installed {
    generation: u64,
    pid: u32,
    options: Options,
    path: PathBuf,
    running: Running,
    trigger: Option<signals::Trigger>,
}

static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(1);

type SlotGuard = MutexGuard<'static, Option<Installed>>;

/// The slot, even if a thread panicked while holding it: its contents are
/// still consistent, since every update is a single assignment.
fn slot() -> SlotGuard {
    INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// In a forked child: forgets the parent's manhole, whose threads the child
/// does not have and whose socket it must not touch, and returns the
/// options to reinstall with, when the parent's manhole asked for that.
fn forget_inherited(slot: &mut SlotGuard) -> Option<Options> {
    let inherited = slot.take()?;
    let reinstall = inherited
        .options
        .reinstall_on_fork
        .then(|| inherited.options.clone());
    // Dropping would join or detach threads that exist only in the parent
    // and restore its signal action; the child keeps both as they are.
    std::mem::forget(inherited);
    reinstall
}

/// The waits of the installed manhole, or the defaults without one.
pub(crate) fn waits() -> Waits {
    slot()
        .as_ref()
        .filter(|running| running.pid == std::process::id())
        .map_or_else(Waits::default, |running| running.options.waits())
}

impl Options {
    /// Creates the socket and starts the listener thread.
    ///
    /// The manhole then runs until [`Handle::uninstall`], [`crate::uninstall`]
    /// or the end of the process; dropping the [`Handle`] does not stop it.
    ///
    /// # Errors
    ///
    /// - [`Error::AlreadyInstalled`] when a manhole already runs in this
    ///   process;
    /// - [`Error::PathTooLong`], [`Error::PathOccupied`] or [`Error::InUse`]
    ///   when the socket path cannot be used (only a stale socket of this
    ///   user is ever replaced);
    /// - [`Error::Signal`] when the stack signal is not a realtime signal or
    ///   already has another handler;
    /// - [`Error::InvalidOption`] for an option value that cannot work,
    ///   including a bad `MANHOLE` environment variable;
    /// - [`Error::Disabled`] when the environment says `MANHOLE=off`;
    /// - [`Error::CompiledOut`] when the crate was built with its `off`
    ///   feature;
    /// - [`Error::Io`] or [`Error::Thread`] when the system refuses.
    pub fn install(self) -> Result<Handle, Error> {
        #[cfg(feature = "off")]
        {
            drop(self);
            Err(Error::CompiledOut)
        }
        #[cfg(not(feature = "off"))]
        install(self)
    }
}

fn install(options: Options) -> Result<Handle, Error> {
    let Some(mut options) = apply_environment(options)? else {
        return Err(Error::Disabled);
    };
    let mut slot = slot();
    let pid = std::process::id();
    if let Some(running) = slot.as_ref() {
        if running.pid == pid {
            return Err(Error::AlreadyInstalled {
                socket_path: running.path.clone(),
            });
        }
        forget_inherited(&mut slot);
    }
    options.validate()?;
    options.runtime = std::mem::take(&mut options.runtime).or_current();
    let stack_signal = signals::install(options.stack_signal, capture::on_signal)?;
    register_fork_handlers();
    let path = options.resolved_socket_path(pid);
    let (trigger, start) = match options.activation.trigger() {
        Some((signal, option)) => {
            let trigger = signals::Trigger::install(signal, option)?;
            let pipe = signals::trigger_pipe()
                .map_err(|err| Error::io("create the trigger pipe for", &path, err))?;
            listener::drain(pipe);
            let oneshot = matches!(options.activation, Activation::OneshotOn(_));
            (
                Some(trigger),
                Start::Dormant {
                    trigger: pipe,
                    oneshot,
                },
            )
        }
        None => (None, Start::Listening),
    };
    let log = Log::new(options.verbose);
    let settings = Settings {
        path: path.clone(),
        config: SessionConfig::from_options(&options),
        sigmask: options.sigmask,
        stack_signal,
        log,
    };
    panics::install_hook();
    if options.crash_report {
        let crash_settings = crash::Settings {
            file: (!options.crash_file.is_empty()).then(|| options.crash_file.clone()),
            timeout: options.crash_timeout,
            socket_path: path.clone(),
        };
        crash::install(&crash_settings)
            .map_err(|err| Error::io("install the crash handler for", &path, err))?;
    } else {
        crash::uninstall();
        watchdog::uninstall();
    }
    let running = match Running::start(settings, start) {
        Ok(running) => running,
        Err(err) => {
            // No socket of ours exists for a crash to remove, and no
            // manhole is left to report for.
            crash::uninstall();
            return Err(err);
        }
    };
    // Counted functions that share a name are told apart by their module
    // from the first call on.
    crate::instrument::registry::qualify_names();
    watchdog::install(
        options.watchdog,
        options.stuck_call,
        options.watchdog_stacks,
        options.waits(),
    );
    inflight::count_polls_longer_than(options.slow_poll);
    symbols::keep_for(options.symbol_cache_idle);
    history::configure(
        options.history,
        options.history_bytes,
        options.runtime.clone(),
    );
    reply::limit(options.max_reply_bytes);
    remove_socket_at_exit();
    let waiting = match options.activation {
        Activation::Always => "listening on".to_owned(),
        Activation::OnSignal(signal) => {
            format!("waiting for {} to listen on", signal_names::name(signal))
        }
        Activation::OneshotOn(signal) => format!(
            "waiting for {} to open one session on",
            signal_names::name(signal)
        ),
    };
    log.verbose(format_args!(
        "{waiting} {} (pid {pid}); stacks are captured with {}",
        path.display(),
        signal_names::name(stack_signal)
    ));
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    *slot = Some(Installed {
        generation,
        pid,
        options,
        path: path.clone(),
        running,
        trigger,
    });
    Ok(Handle {
        generation,
        socket_path: path,
    })
}

/// Stops the manhole if it is the one `generation` names (any, for `None`).
fn uninstall_generation(generation: Option<u64>) -> bool {
    let installed = {
        let mut slot = slot();
        match slot.as_ref() {
            Some(installed)
                if installed.pid == std::process::id()
                    && generation.is_none_or(|generation| generation == installed.generation) =>
            {
                slot.take()
            }
            _ => None,
        }
    };
    let Some(installed) = installed else {
        return false;
    };
    installed.running.stop();
    drop(installed.trigger);
    crash::uninstall();
    inflight::count_polls_longer_than(DEFAULT_SLOW_POLL);
    symbols::keep_for(DEFAULT_SYMBOL_CACHE_IDLE);
    symbols::release();
    history::configure(None, 0, Default::default());
    reply::limit(DEFAULT_MAX_REPLY_BYTES);
    Log::new(installed.options.verbose).verbose(format_args!(
        "uninstalled from {}",
        installed.path.display()
    ));
    true
}

fn remove_socket_at_exit() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: `remove_at_exit` is a plain `extern "C" fn` with no
        // arguments that never unwinds; atexit only stores the pointer.
        let status = unsafe { libc::atexit(remove_at_exit) };
        if status != 0 {
            log::always(format_args!(
                "cannot register the exit hook; the socket may stay behind at exit"
            ));
        }
    });
}

extern "C" fn remove_at_exit() {
    // Never block at exit: a thread may hold the slot while the process ends.
    let slot = match INSTALLED.try_lock() {
        Ok(slot) => slot,
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return,
    };
    if let Some(installed) = slot.as_ref() {
        if installed.pid == std::process::id() {
            installed.running.remove_socket_at_exit();
        }
    }
}

type Held = (MutexGuard<'static, ()>, SlotGuard);

thread_local! {
    /// The locks the forking thread took in `prepare`, until the fork is
    /// over in this process.
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

/// Registers the fork handlers, once per process.
fn register_fork_handlers() {
    static REGISTERED: Once = Once::new();
    REGISTERED.call_once(|| {
        // SAFETY: the three handlers are plain `extern "C" fn()` that never
        // unwind; pthread_atfork only records them.
        let status = unsafe {
            libc::pthread_atfork(
                Some(before_fork),
                Some(after_fork_in_parent),
                Some(after_fork_in_child),
            )
        };
        if status != 0 {
            log::always(format_args!(
                "cannot register the fork handlers; forked children get no manhole"
            ));
        }
    });
}

extern "C" fn before_fork() {
    let held = (capture::turn(), slot());
    HELD.with(|cell| *cell.borrow_mut() = Some(held));
}

extern "C" fn after_fork_in_parent() {
    HELD.with(|cell| drop(cell.borrow_mut().take()));
}

extern "C" fn after_fork_in_child() {
    log::mark_forked();
    watchdog::forget_after_fork();
    let Some((turn, mut slot)) = HELD.with(|cell| cell.borrow_mut().take()) else {
        return;
    };
    let reinstall = forget_inherited(&mut slot);
    drop(slot);
    drop(turn);
    signals::renew_trigger_pipe();
    if let Some(options) = reinstall {
        let delay = options.reinstall_delay;
        let spawned = std::thread::Builder::new()
            .name("manhole-fork".to_owned())
            .spawn(move || {
                std::thread::sleep(delay);
                if let Err(err) = options.install() {
                    log::always(format_args!("not reinstalled in forked child: {err}"));
                }
            });
        if let Err(err) = spawned {
            log::always(format_args!("cannot reinstall in forked child: {err}"));
        }
    }
}
