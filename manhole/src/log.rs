//! Messages to stderr, prefixed `manhole:`. Writing never panics (a closed
//! stderr must not take the host down), and goes straight to descriptor 2
//! without std's stderr lock, which a forked child may have inherited held.
//!
//! With the `tracing` feature, once the program has set a global tracing
//! subscriber, the messages go out as tracing events under the target
//! `manhole` instead (`info` for what `verbose` reports, `warn` for
//! failures), so they land wherever the program's logs land. A forked
//! child never takes that path: the subscriber's locks may have been held
//! by a thread the child does not have.

use std::sync::atomic::{AtomicBool, Ordering};

/// Set in a forked child, whose inherited locks cannot be trusted.
static FORKED: AtomicBool = AtomicBool::new(false);

/// Marks this process as a forked child: from now on, messages go to
/// descriptor 2 only.
pub(crate) fn mark_forked() {
    FORKED.store(true, Ordering::Relaxed);
}

/// Whether messages go out as tracing events.
#[cfg(feature = "tracing")]
fn through_tracing() -> bool {
    !FORKED.load(Ordering::Relaxed) && ::tracing::dispatcher::has_been_set()
}

/// The installed manhole's voice: whether its `verbose` option lets it
/// report what it does, besides the failures it always reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Log {
    verbose: bool,
}

impl Log {
    pub(crate) fn new(verbose: bool) -> Self {
        Log { verbose }
    }

    /// Logs when the manhole is verbose.
    pub(crate) fn verbose(self, message: std::fmt::Arguments<'_>) {
        if !self.verbose {
            return;
        }
        #[cfg(feature = "tracing")]
        if through_tracing() {
            ::tracing::info!(target: "manhole", "{message}");
            return;
        }
        write_stderr(message);
    }
}

impl Log {
    /// Logs at DEBUG, for what happens on every client call (a session
    /// opened): through the tracing subscriber when the program has one,
    /// and not at all on plain stderr, which has no levels to filter by.
    pub(crate) fn debug(self, message: std::fmt::Arguments<'_>) {
        #[cfg(feature = "tracing")]
        if self.verbose && through_tracing() {
            ::tracing::debug!(target: "manhole", "{message}");
        }
        #[cfg(not(feature = "tracing"))]
        let _ = message;
    }
}

/// Logs whatever the verbosity: for failures the user must hear about.
pub(crate) fn always(message: std::fmt::Arguments<'_>) {
    #[cfg(feature = "tracing")]
    if through_tracing() {
        ::tracing::warn!(target: "manhole", "{message}");
        return;
    }
    write_stderr(message);
}

fn write_stderr(message: std::fmt::Arguments<'_>) {
    write_raw(&format!("manhole: {message}\n"));
}

/// Writes `text` as it is to descriptor 2, for lines that carry their own
/// prefix (the watchdog's `manhole watchdog: KIND`).
pub(crate) fn always_raw(text: &str) {
    write_raw(text);
}

fn write_raw(text: &str) {
    let mut rest = text.as_bytes();
    while !rest.is_empty() {
        // SAFETY: writes from a live buffer to descriptor 2.
        let written = unsafe { libc::write(2, rest.as_ptr().cast(), rest.len()) };
        if written > 0 {
            rest = &rest[usize::try_from(written).unwrap_or(rest.len())..];
        } else if written == 0
            || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
        {
            return;
        }
    }
}
