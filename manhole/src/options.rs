//! What a manhole is configured with, for the attribute and the plain API
//! alike: `#[manhole::main(socket_path = "...", verbose = false)]` builds the
//! same [`Options`] that a program can build by hand.

use crate::{listener, Error, Handle};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The longest request line accepted by default, in bytes.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 64 * 1024;

/// How long reading a locked `Mutex` or `RwLock` waits by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_millis(100);

/// How to install a manhole.
///
/// # Examples
///
/// ```no_run
/// let handle = manhole::Options::new()
///     .socket_path("/tmp/myapp-{pid}.manhole")
///     .verbose(false)
///     .install()?;
/// println!("connect with: nc -U {}", handle.socket_path().display());
/// # Ok::<(), manhole::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "options do nothing until `install()` is called"]
pub struct Options {
    pub(crate) socket_path: Option<PathBuf>,
    pub(crate) verbose: bool,
    pub(crate) max_line_length: usize,
    pub(crate) lock_timeout: Duration,
    pub(crate) stack_signal: Option<i32>,
    pub(crate) stack_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            socket_path: None,
            verbose: true,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            stack_signal: None,
            stack_timeout: crate::stacks::DEFAULT_STACK_TIMEOUT,
        }
    }
}

impl Options {
    /// The defaults: `/tmp/manhole-<pid>`, verbose, 64 KiB lines and a
    /// 100 ms lock timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the socket is created. `{pid}` in the path is replaced by the
    /// process id. The default is `/tmp/manhole-{pid}`.
    pub fn socket_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket_path = Some(path.into());
        self
    }

    /// Whether the manhole reports on stderr where it listens, each session
    /// it opens and each connection it refuses. On by default, as in the
    /// Python original. Failures to install are reported either way.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// The longest request line, in bytes. A longer line gets an error reply
    /// and is skipped; the session goes on.
    pub fn max_line_length(mut self, bytes: usize) -> Self {
        self.max_line_length = bytes;
        self
    }

    /// How long reading an inspected `Mutex` or `RwLock` waits for a lock
    /// that another thread holds before it replies that the lock is held.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The realtime signal that asks threads for their stacks, such as
    /// `libc::SIGRTMIN() + 4`. By default the highest realtime signal that
    /// has no handler yet is taken, and `verbose` says which. A signal that
    /// already has another handler is refused at install.
    pub fn stack_signal(mut self, signal: i32) -> Self {
        self.stack_signal = Some(signal);
        self
    }

    /// How long a stack dump waits for each thread to answer (200 ms by
    /// default). A thread that blocks the stack signal, is stuck in the
    /// kernel or is never scheduled is reported as `no response` after it.
    pub fn stack_timeout(mut self, timeout: Duration) -> Self {
        self.stack_timeout = timeout;
        self
    }

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
    /// - [`Error::InvalidOption`] for an option value that cannot work;
    /// - [`Error::Io`] or [`Error::Thread`] when the system refuses.
    pub fn install(self) -> Result<Handle, Error> {
        listener::install(self)
    }

    pub(crate) fn validate(&self) -> Result<(), Error> {
        if self.max_line_length == 0 {
            return Err(Error::InvalidOption {
                option: "max_line_length",
                reason: "must be at least 1 byte; the default is 65536".to_owned(),
            });
        }
        if self
            .socket_path
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return Err(Error::InvalidOption {
                option: "socket_path",
                reason: "is empty; leave it unset for the default /tmp/manhole-{pid}".to_owned(),
            });
        }
        Ok(())
    }

    /// The socket path with `{pid}` filled in.
    pub(crate) fn resolved_socket_path(&self, pid: u32) -> PathBuf {
        match &self.socket_path {
            None => PathBuf::from(format!("/tmp/manhole-{pid}")),
            Some(path) => match path.to_str() {
                Some(text) if text.contains("{pid}") => {
                    PathBuf::from(text.replace("{pid}", &pid.to_string()))
                }
                _ => path.clone(),
            },
        }
    }
}

static LOCK_TIMEOUT_MICROS: AtomicU64 = AtomicU64::new(100_000);

pub(crate) fn set_lock_timeout(timeout: Duration) {
    let micros = u64::try_from(timeout.as_micros()).unwrap_or(u64::MAX);
    LOCK_TIMEOUT_MICROS.store(micros, Ordering::Relaxed);
}

pub(crate) fn lock_timeout() -> Duration {
    Duration::from_micros(LOCK_TIMEOUT_MICROS.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_is_filled_into_the_path() {
        assert_eq!(
            Options::new().resolved_socket_path(42),
            PathBuf::from("/tmp/manhole-42")
        );
        assert_eq!(
            Options::new()
                .socket_path("/run/app/{pid}.sock")
                .resolved_socket_path(7),
            PathBuf::from("/run/app/7.sock")
        );
    }

    #[test]
    fn impossible_values_are_refused() {
        assert!(matches!(
            Options::new().max_line_length(0).validate(),
            Err(Error::InvalidOption {
                option: "max_line_length",
                ..
            })
        ));
        assert!(matches!(
            Options::new().socket_path("").validate(),
            Err(Error::InvalidOption {
                option: "socket_path",
                ..
            })
        ));
    }
}
