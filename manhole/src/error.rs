//! Why [`Options::install`](crate::Options::install) failed.

use std::io;
use std::path::PathBuf;

/// Why a manhole could not be installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A manhole is already running in this process; uninstall it first.
    #[error("a manhole is already installed at {}; uninstall it before installing another", socket_path.display())]
    AlreadyInstalled {
        /// Where the running manhole listens.
        socket_path: PathBuf,
    },
    /// The path does not fit in a Unix socket address, so clients could not
    /// connect to it.
    #[error("the socket path {} is {len} bytes, longer than the {max} bytes a Unix socket address holds; choose a shorter `socket_path`", path.display())]
    PathTooLong {
        /// The path that was asked for.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The longest path a Unix socket address holds.
        max: usize,
    },
    /// Something that is not a stale socket of ours is at the path. It was
    /// left exactly as it was.
    #[error("{} is {found}; the manhole replaces only a stale socket of its own user, so it left this alone (remove it if it is safe to, or choose another `socket_path`)", path.display())]
    PathOccupied {
        /// The socket path.
        path: PathBuf,
        /// What is there: "a regular file", "a symbolic link", ...
        found: String,
    },
    /// A live socket is at the path: another process accepts connections
    /// on it.
    #[error("another process is already listening on {}; choose another `socket_path`", path.display())]
    InUse {
        /// The socket path.
        path: PathBuf,
    },
    /// A system call failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, as a verb phrase.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The stack signal cannot be used.
    #[error("cannot capture stacks with {}: {reason}", crate::signal_names::name(*signal))]
    Signal {
        /// The signal number.
        signal: i32,
        /// Why not, and what to choose instead.
        reason: String,
    },
    /// The environment says `MANHOLE=off`.
    #[error("disabled by the environment (MANHOLE=off)")]
    Disabled,
    /// The crate was built with its `off` feature: no manhole can be
    /// installed in this binary.
    #[error("compiled out: manhole was built with its `off` feature")]
    CompiledOut,
    /// The listener thread could not be started.
    #[error("cannot start the manhole's listener thread: {0}")]
    Thread(#[source] io::Error),
    /// An option has a value that cannot work.
    #[error("invalid option `{option}`: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// What is wrong with its value, and what to write instead.
        reason: String,
    },
}

impl Error {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: impl Into<io::Error>,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source: source.into(),
        }
    }
}

/// A panic's message, from its payload (a `&str` or a `String`).
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with a non-string payload".to_owned())
}
