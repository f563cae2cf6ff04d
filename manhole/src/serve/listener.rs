//! The `manhole` thread, which accepts connections, and one thread per
//! session.
//!
//! - Without a trigger signal, the socket is bound before the thread starts
//!   (see [`crate::os::socket`]), and the thread sleeps in `poll` on the socket,
//!   a wake-up pipe and an inotify watch of the socket file: no CPU while
//!   idle, and a socket deleted by a tmp cleaner is put back.
//! - Each connection is checked with `SO_PEERCRED` before a single byte is
//!   written; an allowed one gets its own `manhole-session` thread, so a
//!   command that never returns blocks only its own session.
//! - With a trigger signal (`activate_on`, `oneshot_on`), the thread starts
//!   dormant: it sleeps reading the trigger pipe, which the signal's handler
//!   writes one byte to, and binds the socket only then. `activate_on` then
//!   serves for good; `oneshot_on` serves exactly one session on the
//!   `manhole` thread itself, removes the socket, and goes back to sleep.
//! - With `sigmask` (the default) the thread blocks every asynchronous
//!   signal but the stack signal before it does anything, and session
//!   threads inherit that mask.
//!
//! - While it listens and any function is under `inspect(calls)`, the
//!   thread also wakes once a second to sample their counters for
//!   `stats --window` ([`crate::instrument::calls`]); with none, or while dormant, it
//!   never wakes for that.
//!
//! [`Running::stop`] ends it all. Installing, uninstalling and `fork()` are
//! [`crate::serve::lifecycle`]'s business, one layer up.

use crate::capture::stacks;
use crate::error::Error;
use crate::instrument::calls::{CallStats, SAMPLE_INTERVAL};
use crate::instrument::registry;
use crate::log::{self, Log};
use crate::os::signals;
use crate::os::socket::{self, SocketFile};
use crate::os::watch::SocketWatch;
use crate::report::crash;
use crate::report::history;
use crate::serve::session::{self, SessionConfig};
use manhole_wire::Failure;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write as _;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the `manhole` thread and [`Running::stop`] share.
struct Shared {
    stop: AtomicBool,
    /// The socket file while one exists.
    socket: Mutex<Option<SocketFile>>,
    sessions: Sessions,
    refusals: Refusals,
}

impl Shared {
    fn socket(&self) -> MutexGuard<'_, Option<SocketFile>> {
        self.socket
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps the socket file just bound, and tells the crash handler which
    /// file is ours.
    fn keep_socket(&self, file: SocketFile) {
        crash::socket_bound(Some(file.identity()));
        *self.socket() = Some(file);
    }

    /// The socket file, taken out (the crash handler then removes nothing).
    fn take_socket(&self) -> Option<SocketFile> {
        let file = self.socket().take();
        crash::socket_bound(None);
        file
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// How the `manhole` thread starts.
pub(crate) enum Start {
    /// Bind the socket now and serve for good.
    Listening,
    /// Sleep on the trigger pipe; on each byte bind and serve, for good or
    /// (`oneshot`) for one session.
    Dormant { trigger: RawFd, oneshot: bool },
}

/// What the `manhole` thread is told by the installed options.
pub(crate) struct Settings {
    pub(crate) path: PathBuf,
    pub(crate) config: SessionConfig,
    pub(crate) sigmask: bool,
    pub(crate) stack_signal: libc::c_int,
    pub(crate) log: Log,
}

/// What the `manhole` thread needs to know.
struct Context {
    shared: Arc<Shared>,
    wake: UnixStream,
    settings: Settings,
    sampler: RefCell<Sampler>,
}

/// Samples the counters of every function under `inspect(calls)` once per
/// [`SAMPLE_INTERVAL`], between the `manhole` thread's waits.
struct Sampler {
    functions: Vec<&'static CallStats>,
    next: Instant,
}

impl Sampler {
    fn new() -> Self {
        Sampler {
            functions: registry::call_stats()
                .into_iter()
                .map(|(_, stats)| stats)
                .collect(),
            next: Instant::now(),
        }
    }

    /// Whether anything is sampled: counted functions, or the flight
    /// recorder's points.
    fn samples(&self) -> bool {
        !self.functions.is_empty() || history::is_on()
    }

    /// How long the thread may sleep before the next sample is due.
    fn timeout(&self) -> PollTimeout {
        if !self.samples() {
            return PollTimeout::NONE;
        }
        let left = self.next.saturating_duration_since(Instant::now());
        PollTimeout::from(u16::try_from(left.as_millis()).unwrap_or(u16::MAX))
    }

    /// Samples when a sample is due.
    fn tick(&mut self) {
        let now = Instant::now();
        if !self.samples() || now < self.next {
            return;
        }
        for stats in &self.functions {
            stats.record_sample(now);
        }
        history::record(now);
        self.next = now + SAMPLE_INTERVAL;
    }
}

/// The running `manhole` thread.
pub(crate) struct Running {
    shared: Arc<Shared>,
    wake: UnixStream,
    thread: JoinHandle<()>,
}

impl Running {
    /// Starts the `manhole` thread. For [`Start::Listening`] the socket
    /// exists when this returns.
    ///
    /// # Errors
    ///
    /// The socket cannot be bound, or the system refuses a pipe or a thread.
    pub(crate) fn start(settings: Settings, start: Start) -> Result<Running, Error> {
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            socket: Mutex::new(None),
            sessions: Sessions::default(),
            refusals: Refusals::default(),
        });
        let listening = match start {
            Start::Listening => {
                let (listener, file) = socket::bind(&settings.path)?;
                shared.keep_socket(file);
                Some(listener)
            }
            Start::Dormant { .. } => None,
        };
        let remove_socket = || {
            if let Some(file) = shared.take_socket() {
                file.remove();
            }
        };
        let (wake_rx, wake) = match UnixStream::pair() {
            Ok(pair) => pair,
            Err(err) => {
                remove_socket();
                return Err(Error::io(
                    "create the wake-up pipe for",
                    &settings.path,
                    err,
                ));
            }
        };
        let context = Context {
            shared: Arc::clone(&shared),
            wake: wake_rx,
            settings,
            sampler: RefCell::new(Sampler::new()),
        };
        let thread = std::thread::Builder::new()
            .name("manhole".to_owned())
            .spawn(move || run(&context, listening, start));
        match thread {
            Ok(thread) => Ok(Running {
                shared,
                wake,
                thread,
            }),
            Err(err) => {
                remove_socket();
                Err(Error::Thread(err))
            }
        }
    }

    /// Stops the thread, ends every session and removes the socket file.
    pub(crate) fn stop(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        let _ = (&self.wake).write(&[1]);
        // A one-shot session runs on the manhole thread itself; its commands
        // may call this.
        if self.thread.thread().id() != std::thread::current().id() {
            self.shared.sessions.close_all();
            let _ = self.thread.join();
        }
        self.shared.sessions.close_all();
        self.shared.refusals.stop();
        if let Some(file) = self.shared.take_socket() {
            file.remove();
        }
    }

    /// At process exit: removes the socket file without waiting for any
    /// lock, and keeps the thread from putting it back.
    pub(crate) fn remove_socket_at_exit(&self) {
        // Stop first: the thread must not see the file go and put it back
        // while the process ends.
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Ok(socket) = self.shared.socket.try_lock() {
            if let Some(file) = socket.as_ref() {
                file.remove();
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

/// A client to refuse, and until when to wait for its first byte.
type Refusal = (Arc<UnixStream>, Failure, Instant);

/// Clients past `max_sessions`. Each is given [`session::SNIFF_TIMEOUT`]
/// to send its first byte, so that it is refused in the protocol it speaks,
/// on a `manhole-refuse` thread of its own: the `manhole` thread never
/// waits on a client, and a burst of clients is waited for all at once.
#[derive(Default)]
struct Refusals {
    queue: Mutex<Option<SyncSender<Refusal>>>,
}

impl Refusals {
    /// How many clients may wait for their refusal at once; past that, one
    /// is refused at once, in JSON only if its `{` has already arrived.
    const WAITING: usize = 256;

    fn refuse(&self, stream: Arc<UnixStream>, failure: Failure) {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if queue.is_none() {
            let (sender, receiver) = std::sync::mpsc::sync_channel(Self::WAITING);
            let started = std::thread::Builder::new()
                .name("manhole-refuse".to_owned())
                .spawn(move || refuse_in_turn(&receiver));
            if started.is_ok() {
                *queue = Some(sender);
            }
        }
        let refusal = (stream, failure, Instant::now() + session::SNIFF_TIMEOUT);
        let unsent = match queue.as_ref() {
            Some(sender) => match sender.try_send(refusal) {
                Ok(()) => None,
                Err(TrySendError::Full(refusal) | TrySendError::Disconnected(refusal)) => {
                    Some(refusal)
                }
            },
            None => Some(refusal),
        };
        if let Some((stream, failure, _)) = unsent {
            session::refuse(&stream, &failure);
        }
    }

    /// Lets the thread finish the refusals it holds, and end.
    fn stop(&self) {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
    }
}

/// The `manhole-refuse` thread: refuses each client once its first byte
/// arrives or its wait is over, until the manhole stops.
fn refuse_in_turn(receiver: &Receiver<Refusal>) {
    let mut waiting: Vec<Refusal> = Vec::new();
    loop {
        if waiting.is_empty() {
            match receiver.recv() {
                Ok(refusal) => waiting.push(refusal),
                Err(_) => return,
            }
        }
        waiting.extend(receiver.try_iter());
        let soonest = waiting.iter().map(|(_, _, until)| *until).min();
        let wait = soonest.map_or(Duration::ZERO, |until| {
            until.saturating_duration_since(Instant::now())
        });
        let mut fds: Vec<PollFd<'_>> = waiting
            .iter()
            .map(|(stream, ..)| PollFd::new(stream.as_fd(), PollFlags::POLLIN))
            .collect();
        // Short naps, so that clients queued meanwhile join the wait.
        let nap = u16::try_from(wait.as_millis().clamp(1, 10)).unwrap_or(10);
        let _ = poll(&mut fds, PollTimeout::from(nap));
        let spoke: Vec<bool> = fds
            .iter()
            .map(|fd| fd.revents().is_some_and(|events| !events.is_empty()))
            .collect();
        drop(fds);
        let now = Instant::now();
        let mut position = 0;
        waiting.retain(|(stream, failure, until)| {
            let done = spoke[position] || now >= *until;
            position += 1;
            if done {
                session::refuse(stream, failure);
            }
            !done
        });
    }
}

/// The `manhole` thread.
fn run(context: &Context, listening: Option<UnixListener>, start: Start) {
    let settings = &context.settings;
    if settings.sigmask {
        signals::block_async_signals(Some(settings.stack_signal));
    }
    if let Some(listener) = listening {
        stacks::learn_own_tail();
        serve(context, listener, false);
        return;
    }
    match start {
        Start::Listening => {}
        Start::Dormant { trigger, oneshot } => {
            let mut learned = false;
            while wait_for_trigger(context, trigger) {
                let listener = match socket::bind(&settings.path) {
                    Ok((listener, file)) => {
                        context.shared.keep_socket(file);
                        listener
                    }
                    Err(err) => {
                        log::always(format_args!("cannot open the socket: {err}"));
                        continue;
                    }
                };
                if !learned {
                    stacks::learn_own_tail();
                    learned = true;
                }
                settings
                    .log
                    .verbose(format_args!("listening on {}", settings.path.display()));
                serve(context, listener, oneshot);
                if !oneshot || context.shared.stopping() {
                    return;
                }
                // Signals that arrived during the session open nothing. They
                // are dropped before the socket goes, so that a signal sent
                // once the socket is seen gone opens the next session.
                drain(trigger);
                if let Some(file) = context.shared.take_socket() {
                    file.remove();
                }
                settings.log.verbose(format_args!(
                    "one-shot session over; {} removed",
                    settings.path.display()
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
        // Dormant means asleep: no samples until the trigger arrives.
        wait_without_spinning(context, &mut fds, Sampling::Off);
        if context.shared.stopping() {
            return false;
        }
        if drain(trigger) {
            return true;
        }
    }
}

/// Whether a wait also takes the call counters' samples.
#[derive(Clone, Copy, PartialEq)]
enum Sampling {
    On,
    Off,
}

/// Sleeps until one of `fds` is ready, or (with [`Sampling::On`]) a sample
/// of the call counters is due, and then takes it. A failing `poll` is
/// retried after a pause, so that the thread never spins.
fn wait_without_spinning(context: &Context, fds: &mut [PollFd<'_>], sampling: Sampling) {
    let timeout = match sampling {
        Sampling::On => context.sampler.borrow().timeout(),
        Sampling::Off => PollTimeout::NONE,
    };
    if let Err(err) = poll(fds, timeout) {
        if err != Errno::EINTR {
            log::always(format_args!("poll failed: {err}; retrying"));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if sampling == Sampling::On {
        context.sampler.borrow_mut().tick();
    }
}

/// Empties the trigger pipe; `true` when it held anything.
pub(crate) fn drain(trigger: RawFd) -> bool {
    let mut any = false;
    let mut buffer = [0u8; 64];
    while let Ok(read @ 1..) = nix::unistd::read(fd(&trigger), &mut buffer) {
        any |= read > 0;
    }
    any
}

/// A watch on the socket file just bound at `path`, or `None` (said on
/// stderr) where inotify is refused.
fn watch(path: &Path) -> Option<SocketWatch> {
    SocketWatch::new(path)
        .map_err(|err| {
            log::always(format_args!(
                "cannot watch {} for removal: {err}",
                path.display()
            ))
        })
        .ok()
}

/// Puts the socket back if its path no longer names the file this manhole
/// bound, and watches the new file. Called when the watch saw something,
/// and once after each watch starts, for a removal between the bind and
/// the watch.
fn keep_in_place(context: &Context, listener: &mut UnixListener, watch: &mut Option<SocketWatch>) {
    let path = &context.settings.path;
    loop {
        // A dying process removed it on purpose: no stale socket may stay.
        if crash::dying()
            || context
                .shared
                .socket()
                .as_ref()
                .is_some_and(SocketFile::in_place)
        {
            return;
        }
        match socket::bind(path) {
            Ok((replacement, file)) => {
                *listener = replacement;
                context.shared.keep_socket(file);
                *watch = self::watch(path);
                context.settings.log.verbose(format_args!(
                    "{} was removed; created it again",
                    path.display()
                ));
            }
            Err(err) => {
                log::always(format_args!(
                    "{} was removed and cannot be created again: {err}",
                    path.display()
                ));
                return;
            }
        }
    }
}

/// Accepts connections until the manhole stops, or, for a one-shot socket,
/// until one session has been served (on this thread).
fn serve(context: &Context, mut listener: UnixListener, oneshot: bool) {
    let mut watch = watch(&context.settings.path);
    keep_in_place(context, &mut listener, &mut watch);
    loop {
        let mut fds = vec![
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(context.wake.as_fd(), PollFlags::POLLIN),
        ];
        if let Some(watch) = &watch {
            fds.push(PollFd::new(watch.fd(), PollFlags::POLLIN));
        }
        if let Some(survivals) = crash::survivals() {
            fds.push(PollFd::new(survivals, PollFlags::POLLIN));
        }
        wait_without_spinning(context, &mut fds, Sampling::On);
        drop(fds);
        if context.shared.stopping() {
            return;
        }
        // The socket went with a fatal signal the process survived.
        let survived = crash::drain_survivals();
        if watch.as_ref().is_some_and(SocketWatch::drain) || survived {
            keep_in_place(context, &mut listener, &mut watch);
        }
        match listener.accept() {
            Ok((stream, _)) => {
                if admit(stream, context, oneshot) && oneshot {
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
fn admit(stream: UnixStream, context: &Context, inline: bool) -> bool {
    let (shared, config, log) = (
        &context.shared,
        context.settings.config.clone(),
        context.settings.log,
    );
    match socket::peer_credentials(&stream) {
        Ok(peer) if socket::peer_allowed(&peer) => {
            log.debug(format_args!(
                "session opened for pid {} (uid {})",
                peer.pid(),
                peer.uid()
            ));
        }
        Ok(peer) => {
            log.verbose(format_args!(
                "refused a connection from pid {} (uid {}): only the owner (uid {}) or root may connect, and only CAP_SYS_PTRACE while the process is not dumpable",
                peer.pid(),
                peer.uid(),
                nix::unistd::geteuid()
            ));
            return false;
        }
        Err(err) => {
            log.verbose(format_args!(
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
            shared.refusals.refuse(stream, session::busy(open));
            log.verbose(format_args!(
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
