//! The installed manhole: one listener thread, one thread per session.
//!
//! Lifecycle:
//! 1. [`install`] binds the socket (see [`crate::socket`]), starts the
//!    thread named `manhole` and records the manhole in a process-wide slot.
//!    Only one manhole runs at a time.
//! 2. The listener sleeps in `poll` on the listening socket and a wake-up
//!    pipe, so it uses no CPU while idle. Each connection is checked with
//!    `SO_PEERCRED` before a single byte is written; an allowed one gets its
//!    own `manhole-session` thread, so a command that never returns blocks
//!    only its own session.
//! 3. [`uninstall`] sets the stop flag, wakes the listener through the pipe,
//!    joins it, shuts every open session's socket down and removes the
//!    socket file. At process exit an `atexit` hook removes the file too
//!    (only in the process that installed it, never in a forked child).

use crate::options::{set_lock_timeout, Options};
use crate::session::{self, SessionConfig};
use crate::socket::{self, SocketFile};
use crate::stacks;
use crate::{log, Error, Handle};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashMap;
use std::io::Write as _;
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::thread::JoinHandle;
use std::time::Duration;

struct Installed {
    generation: u64,
    pid: u32,
    socket: SocketFile,
    stop: Arc<AtomicBool>,
    wake: UnixStream,
    thread: JoinHandle<()>,
    sessions: Arc<Sessions>,
}

static INSTALLED: Mutex<Option<Installed>> = Mutex::new(None);
static GENERATION: AtomicU64 = AtomicU64::new(1);

/// The slot, even if a thread panicked while holding it: its contents are
/// still consistent, since every update is a single assignment.
fn installed() -> MutexGuard<'static, Option<Installed>> {
    INSTALLED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub(crate) fn install(options: Options) -> Result<Handle, Error> {
    let mut slot = installed();
    let pid = std::process::id();
    if let Some(running) = slot.as_ref() {
        if running.pid == pid {
            return Err(Error::AlreadyInstalled {
                socket_path: running.socket.path.clone(),
            });
        }
        // A forked child inherits the parent's record but none of its
        // threads; the socket is the parent's, so forget it untouched.
        *slot = None;
    }
    options.validate()?;
    let stack_signal = crate::signals::install(options.stack_signal, crate::capture::on_signal)?;
    let path = options.resolved_socket_path(pid);
    let (listener, socket) = socket::bind(&path)?;
    let (wake_rx, wake) = match UnixStream::pair() {
        Ok(pair) => pair,
        Err(err) => {
            socket.remove();
            return Err(Error::io("create the wake-up pipe for", path, err));
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    let sessions = Arc::new(Sessions::default());
    let config = SessionConfig {
        max_line_length: options.max_line_length,
    };
    let thread = {
        let stop = Arc::clone(&stop);
        let sessions = Arc::clone(&sessions);
        std::thread::Builder::new()
            .name("manhole".to_owned())
            .spawn(move || accept_loop(&listener, &wake_rx, &stop, &sessions, config))
    };
    let thread = match thread {
        Ok(thread) => thread,
        Err(err) => {
            socket.remove();
            return Err(Error::Thread(err));
        }
    };
    remove_socket_at_exit();
    log::set_verbose(options.verbose);
    set_lock_timeout(options.lock_timeout);
    stacks::set_timeout(options.stack_timeout);
    log::verbose(format_args!(
        "listening on {} (pid {pid}); stacks are captured with {}",
        path.display(),
        crate::signals::name(stack_signal)
    ));
    let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
    *slot = Some(Installed {
        generation,
        pid,
        socket,
        stop,
        wake,
        thread,
        sessions,
    });
    Ok(Handle {
        generation,
        socket_path: path,
    })
}

/// Stops the manhole if it is the one `generation` names (any, for `None`).
pub(crate) fn uninstall(generation: Option<u64>) -> bool {
    let running = {
        let mut slot = installed();
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
    running.stop.store(true, Ordering::SeqCst);
    let _ = (&running.wake).write(&[1]);
    if running.thread.thread().id() != std::thread::current().id() {
        let _ = running.thread.join();
    }
    running.sessions.close_all();
    running.socket.remove();
    log::verbose(format_args!(
        "uninstalled from {}",
        running.socket.path.display()
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
    if let Some(running) = slot.as_ref() {
        if running.pid == std::process::id() {
            running.socket.remove();
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

    fn add(&self, stream: Arc<UnixStream>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.open().insert(id, stream);
        id
    }

    fn remove(&self, id: u64) {
        self.open().remove(&id);
    }

    /// Ends every session: its next read sees end of input. A session busy
    /// in a command ends when the command returns.
    fn close_all(&self) {
        for (_, stream) in self.open().drain() {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn accept_loop(
    listener: &UnixListener,
    wake: &UnixStream,
    stop: &AtomicBool,
    sessions: &Arc<Sessions>,
    config: SessionConfig,
) {
    stacks::prime();
    loop {
        let mut fds = [
            PollFd::new(listener.as_fd(), PollFlags::POLLIN),
            PollFd::new(wake.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(err) => {
                log::always(format_args!("poll failed: {err}; retrying"));
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match listener.accept() {
            Ok((stream, _)) => admit(stream, sessions, config),
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

fn admit(stream: UnixStream, sessions: &Arc<Sessions>, config: SessionConfig) {
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
                "refused a connection from pid {} (uid {}): only uid {} or root may connect",
                peer.pid(),
                peer.uid(),
                nix::unistd::geteuid()
            ));
            return;
        }
        Err(err) => {
            log::verbose(format_args!(
                "refused a connection whose credentials cannot be read: {err}"
            ));
            return;
        }
    }
    let stream = Arc::new(stream);
    let id = sessions.add(Arc::clone(&stream));
    let spawned = {
        let sessions = Arc::clone(sessions);
        std::thread::Builder::new()
            .name("manhole-session".to_owned())
            .spawn(move || {
                session::serve(&stream, config);
                sessions.remove(id);
            })
    };
    if let Err(err) = spawned {
        sessions.remove(id);
        log::always(format_args!("cannot start a session thread: {err}"));
    }
}
