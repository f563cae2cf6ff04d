//! What capturing one thread gave: its raw addresses and how they were
//! taken, or why there are none.

/// How a thread's stack was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Capture {
    /// Without a signal: the thread sat in a system call, so its registers
    /// came from `/proc` and its stack was copied from outside it.
    /// (x86_64 only: see [`super::quiet`].)
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    Proc,
    /// By the stack signal's handler, on the thread itself.
    Signal,
}

/// What a dump got for one thread.
pub(crate) enum Outcome {
    /// Raw addresses, innermost first, with the interrupted frame first.
    Frames {
        addresses: Vec<usize>,
        truncated: bool,
        how: Capture,
    },
    /// No stack; the reason, for people.
    Missing(String),
    /// The thread exited during the dump.
    Gone,
}

/// Unwound addresses as the symboliser takes them.
pub(super) fn addresses_of(unwound: Vec<u64>) -> Vec<usize> {
    unwound
        .into_iter()
        .map(|address| address as usize)
        .collect()
}
