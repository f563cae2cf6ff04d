//! Serving: one connection's session, the `manhole` thread that listens and
//! admits, and the installed manhole's life (install, uninstall, fork,
//! exit).
//!
//! **Layer:** the top of the runtime, below only the `__private` facade.
//! It may import every layer; nothing below imports it.
//!
//! **Architecture invariant:** the listener never blocks on a client: each
//! session has its own thread, and every read and write is bounded.

pub(crate) mod lifecycle;
pub(crate) mod listener;
pub(crate) mod reply;
pub(crate) mod session;
