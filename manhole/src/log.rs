//! Messages to stderr, prefixed `manhole:`. Writing never panics (a closed
//! stderr must not take the host down), and goes straight to descriptor 2
//! without std's stderr lock, which a forked child may have inherited held.

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
        if self.verbose {
            always(message);
        }
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
