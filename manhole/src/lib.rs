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
//! A tokio service, with the `tokio` feature: async commands run on its
//! own runtime, and `inspect(calls, args)` shows each call in flight in
//! `tasks`, with its arguments.
//!
//! ```ignore
//! /// Serves one request.
//! #[manhole::inspect(calls, args)]
//! async fn handle_request(id: u64) -> Result<u64, String> {
//!     fetch_backend(id).await
//! }
//!
//! /// Flushes the cache and says how many entries it wrote.
//! #[manhole::command]
//! async fn flush(table: String) -> Result<usize, String> {
//!     CACHE.flush(&table).await.map_err(|err| err.to_string())
//! }
//!
//! #[manhole::main(watchdog_ms = 500)] // above #[tokio::main]
//! #[tokio::main]
//! async fn main() { /* ... */ }
//! ```
//!
//! # Features
//!
//! All off by default: a program that does not use one pays nothing for
//! it.
//!
//! - `tokio`: `async fn` commands, `tasks` and `runtime`, and the
//!   watchdog's slow polls, on the program's own runtime.
//! - `tracing`: `manhole::tracing::layer()`, whose filter
//!   `log set` changes live and whose recent events `log tail` shows.
//! - `jemalloc`: `mem` reads jemalloc's statistics, when it is the global
//!   allocator; `jemalloc-profiling` adds `mem --heap-profile`.
//! - `off`: compiles the manhole out of a final binary; the attributes
//!   still compile.
//!
//! The guide is in the repository's `docs/`: `runbook.md` says what to run
//! first when a service is slow, hung, crashing or growing.
//!
//! # Contents
//!
//! - [`macro@main`], [`macro@command`] and [`macro@inspect`]: the attributes.
//! - [`Options`] and [`Handle`]: the same installation without the
//!   attribute, and [`uninstall`].
//! - [`stacks()`]: the thread snapshot the `stacks` command prints, for use
//!   anywhere (a watchdog, a panic hook).
//! - [`Heartbeat`]: a loop's proof of life, which the watchdog checks.
//!   With the manhole installed, a fatal signal leaves a crash report, and
//!   the `watchdog` option reports stalls while they happen (`docs/crashes.md`
//!   and `docs/watchdog.md`).
//! - `tracing` (feature `tracing`): `manhole::tracing::layer()`, a
//!   `tracing_subscriber` layer whose filter the `log` command changes live
//!   and whose recent events it shows.
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

// The layers, from the bottom up; a module imports only from its own
// layer and the layers below. Each folder's `mod.rs` says what lives there
// and what it may import. ARCHITECTURE.md draws the same map, and
// `scripts/check-layers` checks it.
//
// Wire types come from `manhole_wire`, below them all.

// 1. Foundations: plain values every layer uses, no OS calls, no state.
mod error;
mod log;
mod options;
mod signal_names;

// 2. The operating system, wrapped once: signals, sockets, `/proc`.
mod os;

// 3. What the program registers and updates: commands, inspected items,
//    call statistics, in-flight async calls; and the tracing layer.
mod instrument;
#[cfg(feature = "tracing")]
pub mod tracing;

// 4. Every thread's stack: the stack signal's handler, unwind, symbols.
mod capture;

// 5. The profiler, which drives the same handler.
mod profile;

// 6. What is left behind while nobody is connected: crash reports and
//    the panics that did not kill the process.
mod report;

// 7. Answering: one request, one built-in.
mod builtins;

// 8. Serving: sessions, the `manhole` thread, the installed manhole's life.
mod serve;

// 9. The facade that generated code sees; nothing inside imports it.
#[doc(hidden)]
pub mod __private;

pub use capture::stacks::{CapturedWith, Frame, Polling, Stacks, ThreadStack};
pub use error::Error;
pub use instrument::heartbeat::Heartbeat;
pub use options::{
    Activation, Options, WatchdogStacks, DEFAULT_COMMAND_TIMEOUT, DEFAULT_CRASH_FILE,
    DEFAULT_CRASH_TIMEOUT, DEFAULT_HISTORY, DEFAULT_HISTORY_BYTES, DEFAULT_IDLE_TIMEOUT,
    DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_LINE_LENGTH, DEFAULT_MAX_REPLY_BYTES, DEFAULT_MAX_SESSIONS,
    DEFAULT_REINSTALL_DELAY, DEFAULT_STACK_TIMEOUT, DEFAULT_STUCK_CALL, DEFAULT_SYMBOL_CACHE_IDLE,
    DEFAULT_WRITE_TIMEOUT, ENVIRONMENT_VARIABLE,
};
pub use serve::lifecycle::{uninstall, Handle};

#[doc(inline)]
pub use manhole_macros::{command, inspect, main};

/// Every thread of this process, with its frames.
///
/// Usable with or without an installed manhole, for instance from a
/// watchdog or a panic hook. The first call installs the stack signal's
/// handler if [`Options::install`] has not (taking the highest free
/// realtime signal). Other threads are given the installed manhole's stack
/// timeout ([`DEFAULT_STACK_TIMEOUT`] without one, or unless
/// [`Options::stack_timeout`] said otherwise) to answer; one that does not,
/// because it blocks the signal, is stuck in the kernel or is never
/// scheduled, is reported with [`ThreadStack::frames_missing`] saying why.
/// Threads that exit during the dump are left out. Only one dump runs at a
/// time.
///
/// # Examples
///
/// ```no_run
/// let snapshot = manhole::stacks();
/// for thread in &snapshot.threads {
///     println!("{} {} {}", thread.tid, thread.name, thread.state);
/// }
/// print!("{snapshot}"); // what the `stacks` command prints
/// ```
#[must_use]
#[inline(never)]
pub fn stacks() -> Stacks {
    let entry = stacks as *const () as usize;
    // Never abandoned, so always a snapshot.
    capture::stacks::snapshot_unless(serve::lifecycle::waits(), &|| false, Some(entry)).unwrap_or(
        Stacks {
            threads: Vec::new(),
        },
    )
}

// The README's and the guide's examples are compiled as doc tests, so
// that they keep building as the API changes.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_examples {}

#[cfg(doctest)]
mod guide_examples {
    #[doc = include_str!("../../docs/writing.md")]
    mod writing {}
    #[doc = include_str!("../../docs/connecting.md")]
    mod connecting {}
    #[doc = include_str!("../../docs/async.md")]
    mod r#async {}
    #[doc = include_str!("../../docs/profiling.md")]
    mod profiling {}
    #[doc = include_str!("../../docs/crashes.md")]
    mod crashes {}
    #[doc = include_str!("../../docs/watchdog.md")]
    mod watchdog {}
    #[doc = include_str!("../../docs/options.md")]
    mod options {}
    #[doc = include_str!("../../docs/stacks.md")]
    mod stacks {}
    #[doc = include_str!("../../docs/runbook.md")]
    mod runbook {}
}
