//! Messages to stderr, prefixed `manhole:`. Writing never panics (a closed
//! stderr must not take the host down), and goes straight to descriptor 2
//! without std's stderr lock, which a forked child may have inherited held.

use std::sync::atomic::{AtomicBool, Ordering};

static VERBOSE: AtomicBool = AtomicBool::new(true);

pub(crate) fn set_verbose(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
}

/// Logs when the installed manhole is verbose.
pub(crate) fn verbose(message: std::fmt::Arguments<'_>) {
    if VERBOSE.load(Ordering::Relaxed) {
        always(message);
    }
}

/// Logs whatever the verbosity: for failures the user must hear about.
pub(crate) fn always(message: std::fmt::Arguments<'_>) {
    let line = format!("manhole: {message}\n");
    let mut rest = line.as_bytes();
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
