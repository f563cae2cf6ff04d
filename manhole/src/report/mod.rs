//! What the manhole leaves behind while nobody is connected: crash reports
//! written when the process dies on a fatal signal, the panics that did not
//! kill it, and the watchdog's reports of stalls while they happen.
//!
//! **Layer:** above `capture/` and `instrument/` (a report holds every
//! thread's stack and the calls in flight) and the tracing layer's ring;
//! below `builtins/`, which shows what is kept, and `serve/`, which
//! installs it.
//!
//! **Architecture invariant:** code here runs in one of two contexts, and
//! each function's doc says which. *Normal context* (install, the helper
//! process, the panic hook) may allocate. *Compromised context* (the fatal
//! signal's handler and everything it calls) allocates nothing, waits on
//! no lock and calls only async-signal-safe functions: the primitives of
//! `signal_safe`.

pub(crate) mod crash;
mod helper;
pub(crate) mod history;
pub(crate) mod panics;
mod sections;
mod signal_safe;
mod state;
mod symboliser;
pub(crate) mod watchdog;
