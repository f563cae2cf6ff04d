//! Messages to stderr, prefixed `manhole:`. Writing never panics: a closed
//! stderr must not take the host down.

use std::io::Write as _;
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
    let _ = writeln!(std::io::stderr().lock(), "manhole: {message}");
}
