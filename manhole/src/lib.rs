//! A debugging backdoor for running Rust processes.
//!
//! Mark what you want to see and call, install the manhole, and connect to
//! the live process over a Unix socket that only its own user (or root) may
//! open. You get every thread's stack, the values you marked, and the
//! commands you registered. No restart, no HTTP port.
//!
//! ```no_run
//! use std::sync::atomic::{AtomicU64, Ordering};
//!
//! /// Requests handled since start.
//! #[manhole::inspect]
//! static REQUESTS: AtomicU64 = AtomicU64::new(0);
//!
//! /// Add two numbers.
//! #[manhole::command]
//! fn add(a: i64, b: i64) -> i64 {
//!     a + b
//! }
//!
//! #[manhole::main]
//! fn main() {
//!     loop {
//!         REQUESTS.fetch_add(1, Ordering::Relaxed);
//!         std::thread::sleep(std::time::Duration::from_millis(100));
//!     }
//! }
//! ```
//!
//! ```text
//! $ echo 'call add 40 2' | socat - UNIX-CONNECT:/tmp/manhole-12345
//! manhole 0.1.0, pid 12345, /srv/app
//! thread 12345 "app" (sleeping)
//! ...
//! manhole> 42
//! manhole>
//! ```
//!
//! # Contents
//!
//! - [`macro@main`], [`macro@command`] and [`macro@inspect`]: the attributes.
//! - [`Options`] and [`Handle`]: the same installation without the
//!   attribute, and [`uninstall`].
//! - [`stacks()`]: the thread snapshot the `stacks` command prints, for use
//!   anywhere (a watchdog, a panic hook).
//!
//! The wire protocol, text and JSON-RPC, is described in `PROTOCOL.md`.
//!
//! # Registration across crates
//!
//! Commands and inspected items are collected at link time with
//! [`inventory`](https://docs.rs/inventory). An item in a library crate is
//! registered in any binary that links that crate. The one pitfall: a crate
//! the binary never refers to is not linked at all, so its items are
//! missing. Refer to anything in it (call a function, or write
//! `use that_crate as _;` in the binary) to keep it.
//!
//! # Panics and aborts
//!
//! A panicking command becomes an error reply; the session and the process
//! go on. A program built with `panic = "abort"` cannot catch panics, so
//! there a panicking command aborts the process like any other panic.

#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]
// With the `off` feature nothing reaches the listener, and what only it
// uses is left for the linker to drop.
#![cfg_attr(feature = "off", allow(dead_code, unused_imports))]

#[doc(hidden)]
pub mod __private;
mod builtins;
mod calls;
mod capture;
mod error;
mod fork;
mod listener;
mod log;
mod options;
mod procfs;
mod protocol;
mod registry;
mod session;
mod signals;
mod socket;
mod stacks;
mod unwind;
mod watch;

pub use error::Error;
pub use options::{
    Options, DEFAULT_IDLE_TIMEOUT, DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_LINE_LENGTH,
    DEFAULT_MAX_SESSIONS, DEFAULT_REINSTALL_DELAY, DEFAULT_WRITE_TIMEOUT, ENVIRONMENT_VARIABLE,
};
pub use stacks::{stacks, Frame, Stacks, ThreadStack, DEFAULT_STACK_TIMEOUT};

#[doc(inline)]
pub use manhole_macros::{command, inspect, main};

use std::path::{Path, PathBuf};

/// A running manhole, as [`Options::install`] returns it.
///
/// Dropping the handle leaves the manhole running: it serves until
/// [`Handle::uninstall`], [`uninstall`] or the end of the process.
#[derive(Debug)]
pub struct Handle {
    generation: u64,
    socket_path: PathBuf,
}

impl Handle {
    /// Where the manhole listens.
    #[must_use]
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Stops this manhole: the listener exits, open sessions are closed and
    /// the socket is removed. Returns `false` when this manhole was already
    /// uninstalled (a newer one is left alone).
    pub fn uninstall(self) -> bool {
        listener::uninstall(Some(self.generation))
    }
}

/// Stops the running manhole, whichever installed it, as
/// [`Handle::uninstall`] does. Returns `false` when none is running.
pub fn uninstall() -> bool {
    listener::uninstall(None)
}
