//! The operating system, wrapped once: signals and their handlers' copy of
//! the interrupted thread, the socket file, `/proc`, inotify, limits and
//! the allocator's figures.
//!
//! **Layer:** above the foundations (`error`, `log`, `options`,
//! `signal_names`); imports nothing else of the crate. Each OS call is
//! wrapped here once, returning `io::Result` or the crate's `Error`, with
//! its `// SAFETY:` comment.
//!
//! **Architecture invariant:** `os/` keeps no manhole state beyond what one
//! facility needs (the stack signal's number, the trigger pipe). It knows
//! nothing of sessions, requests or the registry.

pub(crate) mod interrupted;
pub(crate) mod limits;
pub(crate) mod loader;
pub(crate) mod mem;
pub(crate) mod modules;
pub(crate) mod process;
pub(crate) mod procfs;
pub(crate) mod signals;
pub(crate) mod socket;
pub(crate) mod watch;
