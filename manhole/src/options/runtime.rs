//! The tokio runtime the manhole was given, or found around `install`: the
//! one async commands run on and `runtime` reads. Without the `tokio`
//! feature it is empty, so a program without async commands pays nothing.

use std::time::Duration;

/// How long an async command may run by default before its future is
/// dropped and the client gets `timed_out`.
pub const DEFAULT_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The tokio runtime async commands run on, when the manhole knows one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Runtime {
    #[cfg(feature = "tokio")]
    pub(crate) handle: Option<tokio::runtime::Handle>,
    /// When `runtime` last read the workers' busy time, and what it read,
    /// so that the next read can say how busy each was in between.
    #[cfg(feature = "tokio")]
    pub(crate) previous_busy: std::sync::Arc<std::sync::Mutex<Option<BusyReading>>>,
}

/// The instant of a read, and each worker's total busy time and
/// park/unpark count then.
#[cfg(feature = "tokio")]
#[derive(Debug, Clone)]
pub(crate) struct BusyReading {
    pub(crate) at: std::time::Instant,
    pub(crate) busy: Vec<Duration>,
    pub(crate) park_unparks: Vec<u64>,
}

impl Runtime {
    /// The runtime that `install` runs inside, if any, unless one was
    /// given already.
    pub(crate) fn or_current(self) -> Self {
        #[cfg(feature = "tokio")]
        if self.handle.is_none() {
            return Runtime {
                handle: tokio::runtime::Handle::try_current().ok(),
                previous_busy: self.previous_busy,
            };
        }
        self
    }
}
