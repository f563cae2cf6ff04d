//! The installed manhole: one thread named `manhole`, plus one thread per
//! session.
//!
//! Lifecycle:
//! 1. [`install`] applies the `MANHOLE` environment variable, checks the
//!    options, installs the stack signal's handler and records the manhole
//!    in a process-wide slot; only one manhole runs at a time.
//! 2. Without a trigger signal, it binds the socket (see [`crate::socket`])
//!    and starts the `manhole` thread, which sleeps in `poll` on the socket,
//!    a wake-up pipe and an inotify watch of the socket's directory: no CPU
//!    while idle, and a socket deleted by a tmp cleaner is put back.
//!    Each connection is checked with `SO_PEERCRED` before a single byte is
//!    written; an allowed one gets its own `manhole-session` thread, so a
//!    command that never returns blocks only its own session.
//! 3. With `activate_on` or `oneshot_on`, the `manhole` thread starts
//!    dormant: it sleeps reading the trigger pipe, which the signal's handler
//!    writes one byte to, and binds the socket only then. `activate_on` then
//!    serves as in 2; `oneshot_on` serves exactly one session on the
//!    `manhole` thread itself, removes the socket, and goes back to sleep.
//! 4. With `sigmask` (the default) the `manhole` thread blocks every
//!    asynchronous signal but the stack signal before it does anything, and
//!    session threads inherit that mask.
//! 5. [`uninstall`] sets the stop flag, wakes the thread through its pipe,
//!    joins it, shuts every open session's socket down, removes the socket
//!    file and gives a trigger signal back its previous action. At process
//!    exit an `atexit` hook removes the file too, only in the process that
//!    created it. Across `fork()`, see [`crate::fork`].

use crate::options::{apply_environment, set_lock_timeout, Options};
use crate::session::{self, SessionConfig};
use crate::socket::{self, SocketFile};
use crate::watch::SocketWatch;
use crate::{capture, fork, log, signals, stacks, Error, Handle};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashMap;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::Duration;

pub(crate) struct Installed {
    generation: u64,
    pid: u32,
    options: Options,
    path: PathBuf,
    shared: Arc<Shared>,
    wake: UnixStream,
    thread: JoinHandle<()>,
    trigger: Option<signals::Trigger>,
}

/// What the `manhole` thread and `uninstall` share.
struct Shared {
    stop: AtomicBool,
    /// The socket file while one exists.
    socket: Mutex<Option<SocketFile>>,
    sessions: Sessions,
}

impl Shared {
    fn socket(&self) -> MutexGuard<'_, Option<SocketFile>> {
        self.socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(1);

pub(crate) type SlotGuard = MutexGuard<'static, Option<Installed>>;

/// The slot, even if a thread panicked while holding it: its contents are
/// still consistent, since every update is a single assignment.
pub(crate) fn slot() -> SlotGuard {
    INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// In a forked child: forgets the parent's manhole, whose threads the child
/// does not have and whose socket it must not touch, and returns the
/// options to reinstall with, when the parent's manhole asked for that.
pub(crate) fn forget_inherited(slot: &mut SlotGuard) -> Option<Options> {
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

/// Where the `manhole` thread starts.
enum Start {
    Listening(UnixListener, Option<SocketWatch>),
    Dormant { trigger: RawFd, oneshot: bool },
}

/// What the `manhole` thread needs to know.
struct Context {
    shared: Arc<Shared>,
    wake: UnixStream,
    path: PathBuf,
    config: SessionConfig,
    sigmask: bool,
    stack_signal: libc::c_int,
}

pub(crate) fn install(options: Options) -> Result<Handle, Error> {
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
    let stack_signal = signals::install(options.stack_signal, capture::on_signal)?;
    fork::register();
    let path = options.resolved_socket_path(pid);
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        socket: Mutex::new(None),
        sessions: Sessions::default(),
    });
    let (trigger, start) = match (options.activate_on, options.oneshot_on) {
        (Some(signal), _) | (_, Some(signal)) => {
            let oneshot = options.oneshot_on.is_some();
            let option = if oneshot { "oneshot_on" } else { "activate_on" };
            let trigger = signals::Trigger::install(signal, option)?;
            let pipe = signals::trigger_pipe()
                .map_err(|err| Error::io("create the trigger pipe for", &path, err))?;
            drain(pipe);
            (
                Some(trigger),
                Start::Dormant {
                    trigger: pipe,
                    oneshot,
                },
            )
        }
        (None, None) => {
            // Watching starts before the socket exists, so that no removal
            // can slip in between.
            let watch = watch(&path);
            let (listener, file) = socket::bind(&path)?;
            *shared.socket() = Some(file);
            (None, Start::Listening(listener, watch))
        }
    };
    let (wake_rx, wake) =
        UnixStream::pair().map_err(|err| Error::io("create the wake-up pipe for", &path, err))?;
    let context = Context {
        shared: Arc::clone(&shared),
        wake: wake_rx,
        path: path.clone(),
        config: SessionConfig::from_options(&options),
        sigmask: options.sigmask,
        stack_signal,
    };
    let thread = std::thread::Builder::new()
        .name("manhole".to_owned())
        .spawn(move || run(&context, start));
    let thread = match thread {
        Ok(thread) => thread,
        Err(err) => {
            if let Some(file) = shared.socket().take() {
                file.remove();
            }
            return Err(Error::Thread(err));
        }
    };
    remove_socket_at_exit();
    log::set_verbose(options.verbose);
    set_lock_timeout(options.lock_timeout);
    stacks::set_timeout(options.stack_timeout);
    let waiting = match (options.activate_on, options.oneshot_on) {
        (Some(signal), _) => format!("waiting for {} to listen on", signals::name(signal)),
        (_, Some(signal)) => format!(
            "waiting for {} to open one session on",
            signals::name(signal)
        ),
        (None, None) => "listening on".to_owned(),
    };
    log::verbose(format_args!(
        "{waiting} {} (pid {pid}); stacks are captured with {}",
        path.display(),
        signals::name(stack_signal)
    ));
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    *slot = Some(Installed {
        generation,
        pid,
        options,
        path: path.clone(),
        shared,
        wake,
        thread,
        trigger,
    });
    Ok(Handle {
        generation,
        socket_path: path,
    })
}

/// Stops the manhole if it is the one `generation` names (any, for `None`).
pub(crate) fn uninstall(generation: Option<u64>) -> bool {
    let running = {
        let mut slot = slot();
        match slot.as_ref() {
            Some(running)
                if running.pid == std::process::id()
                    && generation.is_none_or(|generation| generation == running.generation) =>
            {
                slot.take()
            }
            _ => None,
        }
    };
    let Some(running) = running else { return false };
    running.shared.stop.store(true, Ordering::SeqCst);
    let _ = (&running.wake).write(&[1]);
    // A one-shot session runs on the manhole thread itself; its commands
    // may call this.
    if running.thread.thread().id() != std::thread::current().id() {
        running.shared.sessions.close_all();
        let _ = running.thread.join();
    }
    running.shared.sessions.close_all();
    if let Some(file) = running.shared.socket().take() {
        file.remove();
    }
    drop(running.trigger);
    log::verbose(format_args!("uninstalled from {}", running.path.display()));
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
    if let Some(running) = slot.as_ref() {
        if running.pid == std::process::id() {
            // Stop first: the listener must not see the file go and put it
            // back while the process ends.
            running.shared.stop.store(true, Ordering::SeqCst);
            if let Ok(socket) = running.shared.socket.try_lock() {
                if let Some(file) = socket.as_ref() {
                    file.remove();
                }
            }
        }
    }
}

/// The sockets of the open sessions, so that uninstall can end them.
#[derive(Default)]
struct Sessions {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Arc<UnixStream>>>,
}

impl Sessions {
    fn open(&self) -> MutexGuard<'_, HashMap<u64, Arc<UnixStream>>> {
        self.open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a place for a session, or says how many are open when none
    /// is left. Places are taken here, on the accepting thread, so that a
    /// burst of clients cannot start more sessions than the limit.
    fn reserve(&self, stream: Arc<UnixStream>, limit: usize) -> Result<u64, usize> {
        let mut open = self.open();
        if open.len() >= limit {
            return Err(open.len());
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        open.insert(id, stream);
        Ok(id)
    }

    fn remove(&self, id: u64) {
        self.open().remove(&id);
    }

    /// Serves one session and forgets it afterwards, even if serving
    /// panicked: the socket is closed and the client sees end of input.
    fn serve(&self, id: u64, stream: &UnixStream, config: SessionConfig) {
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            session::serve(stream, config)
        }));
        self.remove(id);
        if served.is_err() {
            log::always(format_args!(
                "a session ended with a panic; the manhole goes on"
            ));
        }
    }

    /// Ends every session: its next read sees end of input. A session busy
    /// in a command ends when the command returns.
    fn close_all(&self) {
        for (_, stream) in self.open().drain() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// The `manhole` thread.
fn run(context: &Context, start: Start) {
    if context.sigmask {
        signals::block_async_signals(Some(context.stack_signal));
    }
    match start {
        Start::Listening(listener, watch) => {
            stacks::prime();
            serve(context, listener, watch.as_ref(), false);
        }
        Start::Dormant { trigger, oneshot } => {
            let mut primed = false;
            while wait_for_trigger(context, trigger) {
                let watch = watch(&context.path);
                let listener = match socket::bind(&context.path) {
                    Ok((listener, file)) => {
                        *context.shared.socket() = Some(file);
                        listener
                    }
                    Err(err) => {
                        log::always(format_args!("cannot open the socket: {err}"));
                        continue;
                    }
                };
                if !primed {
                    stacks::prime();
                    primed = true;
                }
                log::verbose(format_args!("listening on {}", context.path.display()));
                serve(context, listener, watch.as_ref(), oneshot);
                if !oneshot || context.shared.stopping() {
                    return;
                }
                // Signals that arrived during the session open nothing. They
                // are dropped before the socket goes, so that a signal sent
                // once the socket is seen gone opens the next session.
                drain(trigger);
                if let Some(file) = context.shared.socket().take() {
                    file.remove();
                }
                log::verbose(format_args!(
                    "one-shot session over; {} removed",
                    context.path.display()
                ));
            }
        }
    }
}

fn fd(raw: &RawFd) -> BorrowedFd<'_> {
    // SAFETY: the trigger pipe's read end stays open for the life of the
    // process.
    unsafe { BorrowedFd::borrow_raw(*raw) }
}

/// Sleeps until a trigger signal arrives (`true`) or the manhole stops.
fn wait_for_trigger(context: &Context, trigger: RawFd) -> bool {
    loop {
        let mut fds = [
            PollFd::new(fd(&trigger), PollFlags::POLLIN),
            PollFd::new(context.wake.as_fd(), PollFlags::POLLIN),
        ];
        if let Err(err) = poll(&mut fds, PollTimeout::NONE) {
            if err != Errno::EINTR {
                log::always(format_args!("poll failed: {err}; retrying"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if context.shared.stopping() {
            return false;
        }
        if drain(trigger) {
            return true;
        }
    }
}

/// Empties the trigger pipe; `true` when it held anything.
fn drain(trigger: RawFd) -> bool {
    let mut any = false;
    let mut buffer = [0u8; 64];
    while let Ok(read @ 1..) = nix::unistd::read(fd(&trigger), &mut buffer) {
        any |= read > 0;
    }
    any
}

fn watch(path: &std::path::Path) -> Option<SocketWatch> {
    SocketWatch::new(path)
        .map_err(|err| {
            log::always(format_args!(
                "cannot watch {} for removal: {err}",
                path.display()
            ))
        })
        .ok()
}

/// Accepts connections until the manhole stops, or, for a one-shot socket,
/// until one session has been served (on this thread).
fn serve(
    context: &Context,
    mut listener: UnixListener,
    watch: Option<&SocketWatch>,
    oneshot: bool,
) {
    loop {
        let mut fds = vec![
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(context.wake.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(watch) = watch {
            fds.push(PollFd::new(watch.fd(), PollFlags::POLLIN));
        }
        if let Err(err) = poll(&mut fds, PollTimeout::NONE) {
            if err != Errno::EINTR {
                log::always(format_args!("poll failed: {err}; retrying"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        drop(fds);
        if context.shared.stopping() {
            return;
        }
        if watch.is_some_and(SocketWatch::socket_removed) {
            match socket::bind(&context.path) {
                Ok((replacement, file)) => {
                    listener = replacement;
                    *context.shared.socket() = Some(file);
                    log::verbose(format_args!(
                        "{} was removed; created it again",
                        context.path.display()
                    ));
                }
                Err(err) => log::always(format_args!(
                    "{} was removed and cannot be created again: {err}",
                    context.path.display()
                )),
            }
        }
        match listener.accept() {
            Ok((stream, _)) => {
                if admit(stream, &context.shared, context.config, oneshot) && oneshot {
                    return;
                }
            }
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) => {}
            Err(err) => {
                // Out of descriptors or memory: back off instead of spinning.
                log::always(format_args!("accept failed: {err}"));
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

/// Checks the peer and serves an allowed one: on a new thread, or on this
/// one for a one-shot socket. Returns whether a session was served.
fn admit(stream: UnixStream, shared: &Arc<Shared>, config: SessionConfig, inline: bool) -> bool {
    match socket::peer_credentials(&stream) {
        Ok(peer) if socket::peer_allowed(&peer) => {
            log::verbose(format_args!(
                "session opened for pid {} (uid {})",
                peer.pid(),
                peer.uid()
            ));
        }
        Ok(peer) => {
            log::verbose(format_args!(
                "refused a connection from pid {} (uid {}): only the owner (uid {}) or root may connect",
                peer.pid(),
                peer.uid(),
                nix::unistd::geteuid()
            ));
            return false;
        }
        Err(err) => {
            log::verbose(format_args!(
                "refused a connection whose credentials cannot be read: {err}"
            ));
            return false;
        }
    }
    let stream = Arc::new(stream);
    let id = match shared
        .sessions
        .reserve(Arc::clone(&stream), config.max_sessions)
    {
        Ok(id) => id,
        Err(open) => {
            session::refuse_busy(&stream, open);
            log::verbose(format_args!(
                "refused a session: {open} open, at max_sessions"
            ));
            return false;
        }
    };
    if inline {
        shared.sessions.serve(id, &stream, config);
        return true;
    }
    let spawned = {
        let shared = Arc::clone(shared);
        std::thread::Builder::new()
            .name("manhole-session".to_owned())
            .spawn(move || shared.sessions.serve(id, &stream, config))
    };
    match spawned {
        Ok(_) => true,
        Err(err) => {
            shared.sessions.remove(id);
            log::always(format_args!("cannot start a session thread: {err}"));
            false
        }
    }
}
