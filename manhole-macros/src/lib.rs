//! Attribute macros for [`manhole`](https://docs.rs/manhole).
//!
//! Depend on `manhole` and write `#[manhole::main]`, `#[manhole::command]` and
//! `#[manhole::inspect]`; this crate is an implementation detail whose version
//! is pinned by `manhole`. Each entry point below converts to `proc_macro2`
//! and runs parse → validate → expand; the work lives in the modules.

mod args;
mod ast;
mod expand;
mod render;
mod valid;

use proc_macro::TokenStream;

/// Registers a free function as a manhole command.
///
/// The command is named after the function, unless `name = "..."` says
/// otherwise, and its doc comment is its help text. Each parameter is parsed
/// from text with `FromStr` (its `Err` must implement `Display`); trailing
/// `Option<T>` parameters may be left out. The return value is shown as its
/// serde JSON; a `Result` whose `Err` implements `Display` becomes an error
/// reply, and so does a panic.
///
/// ```
/// /// Add two numbers.
/// #[manhole::command]
/// fn add(a: i64, b: i64) -> i64 {
///     a + b
/// }
///
/// /// Reload the configuration, from `path` or the default file.
/// #[manhole::command(name = "reload-config")]
/// fn reload(path: Option<String>) -> Result<String, std::io::Error> {
///     std::fs::read_to_string(path.unwrap_or_else(|| "/etc/hostname".into()))
/// }
/// # fn main() {}
/// ```
///
/// ```text
/// manhole> add 40 2
/// 42
/// manhole> call reload-config /nope
/// error: `reload-config` returned an error: No such file or directory (os error 2)
/// ```
///
/// # What it expands to
///
/// The function is left as it is. Beside it, inside `const _: () = { ... };`,
/// an adapter parses the arguments, calls the function under
/// `catch_unwind` and turns the value into JSON, and an `inventory::submit!`
/// adds the command to the table the manhole reads at run time. Nothing runs
/// until a session calls the command.
///
/// # Errors at compile time
///
/// Commands are free functions. Inside an `impl` block even an associated
/// function without `self` cannot be registered (the registration is an
/// item that cannot live there), and rustc reports that in its own words;
/// call such a function from a free one.
///
/// An `async fn` needs the `tokio` feature of `manhole`; without it the
/// error says so. Its future is spawned on the program's tokio runtime and
/// must be `Send`; the session waits for it at most `command_timeout`, and
/// drops it if the client hangs up.
///
/// Generic, `unsafe` and `self`-taking functions are refused, as
/// are parameters that are references, patterns or not `FromStr`, an
/// optional parameter before a required one, and return types that are not
/// `Serialize`. Each error points at the offending token.
#[proc_macro_attribute]
pub fn command(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::command(args.into(), item.into()).into()
}

/// Registers a static, or a function with no parameters, for reading with
/// `get NAME`.
///
/// A static may have any `Serialize` type, which includes the std atomics.
/// A `Mutex` or `RwLock` is read with `try_lock` until the manhole's lock
/// timeout (100 ms by default): a lock that another thread holds is reported
/// as held, and never hangs the session. (That holds for a lock that *is*
/// the static: a lock nested inside another type is serialised by serde,
/// which waits for it; inspect the lock itself.) A function is called each time it
/// is read; its value is shown like a command's. `name = "..."` renames the
/// item.
///
/// ```
/// use std::sync::atomic::AtomicU64;
/// use std::sync::Mutex;
///
/// /// Requests handled since start.
/// #[manhole::inspect]
/// static REQUESTS: AtomicU64 = AtomicU64::new(0);
///
/// /// Peers we are connected to.
/// #[manhole::inspect(name = "peers")]
/// static PEERS: Mutex<Vec<String>> = Mutex::new(Vec::new());
///
/// /// How many peers there are, computed when read.
/// #[manhole::inspect]
/// fn queue_depth() -> usize {
///     PEERS.lock().map_or(0, |peers| peers.len())
/// }
/// # fn main() {}
/// ```
///
/// # `writable`: statics that `set` can replace
///
/// `#[manhole::inspect(writable)]` on a static lets a session replace its
/// value with `set NAME VALUE` (JSON method `set` with `{"name","value"}`).
/// The std atomics store the parsed value (`FromStr` of the integer or
/// `bool`); a `Mutex<T>` or `RwLock<T>` whose `T` is `Deserialize` and
/// `Serialize` gets a new `T`, waiting at most the lock timeout for the
/// lock. A value that does not parse or fit is an error, and the old value
/// stays. The reply shows the new value and the one it replaced.
///
/// ```
/// use std::sync::atomic::AtomicBool;
/// use std::sync::RwLock;
///
/// /// Log every request.
/// #[manhole::inspect(writable)]
/// static VERBOSE: AtomicBool = AtomicBool::new(false);
///
/// /// Upstream hosts: `set UPSTREAMS ["a:80", "b:80"]`.
/// #[manhole::inspect(writable)]
/// static UPSTREAMS: RwLock<Vec<String>> = RwLock::new(Vec::new());
/// # fn main() {}
/// ```
///
/// # `calls`: count and time a function
///
/// `#[manhole::inspect(calls)]` on a function, with any parameters, counts
/// its calls, the calls in flight, the panics and the `Err` returns (when it
/// returns a `Result`), and times every call into a log-scale histogram:
/// `get NAME` shows them, with the mean, p50, p99 and maximum, and `stats`
/// shows every counted function in one table. The function's signature,
/// return value and panics are untouched. It works on free functions,
/// methods in `impl` blocks (the counters live inside the body), generic
/// functions (all instances share one set of counters) and `async fn`,
/// whose call is timed from its first poll until the future completes; a
/// future dropped before completing is counted as cancelled.
///
/// On an `async fn`, `#[manhole::inspect(calls, args)]` also records each
/// call's arguments by their `Debug` text (at most 96 bytes, cut with `…`),
/// which `tasks`, the watchdog and crash reports show beside the call:
/// `handle(id=7)`. Every shown parameter must be `Debug`. Choose what is
/// shown as `tracing::instrument` does: `args(skip(db))`, `args(self, key)`,
/// `args(skip_all)`, each with `fields(NAME = EXPR, ...)` if wanted, as
/// `args(skip_all, fields(key = self.key))`. A shown parameter whose type
/// names a `Mutex` or `RwLock` gets a warning: its `Debug` try-locks it.
///
/// ```
/// /// Parses a port number.
/// #[manhole::inspect(calls)]
/// fn parse_port(text: &str) -> Result<u16, std::num::ParseIntError> {
///     text.parse()
/// }
///
/// struct Cache(Vec<u64>);
///
/// impl Cache {
///     #[manhole::inspect(calls, name = "cache_get")]
///     fn get(&self, key: usize) -> Option<&u64> {
///         self.0.get(key)
///     }
/// }
/// # fn main() {}
/// ```
///
/// Each call costs a few relaxed atomic additions on a per-thread shard and
/// two reads of the CPU's timestamp counter: no lock, no allocation, no
/// system call (about 32 ns on the machine in `BENCHMARKS.md`, most of it
/// the two clock reads).
///
/// # What it expands to
///
/// On a static or a function read by `get`, the item is left as it is.
/// Beside it, inside `const _: () = { ... };`, a reader serializes the
/// value (picking the lock-aware reader for `Mutex` and `RwLock` at compile
/// time), a writer for `writable`, and an `inventory::submit!` registers
/// it. Under `calls`, the function keeps its signature; its body gains a
/// `static` of counters and their registration, and runs inside a
/// `FnOnce` closure (an `async` block for an `async fn`) so that every
/// `return` and `?` passes the timer.
///
/// # Errors at compile time
///
/// `static mut`, types that are not `Serialize`, functions with parameters
/// (unless `calls`), functions that return nothing (unless `calls`),
/// `calls` on a `const fn` or a static, `writable` on a function or on a
/// type `set` cannot write, and any other kind of item are refused at the
/// offending token.
#[proc_macro_attribute]
pub fn inspect(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::inspect(args.into(), item.into()).into()
}

/// Installs the manhole before the body of `fn main` runs.
///
/// Options, all optional: `socket_path = "..."` (default
/// `/tmp/manhole-{pid}`; `{pid}` is filled in), `verbose = bool` (default
/// `true`), `activate_on = "USR1"`, `oneshot_on = "USR2"`, `sigmask = bool`
/// (default `true`), `reinstall_on_fork = bool` (default `true`) and
/// `reinstall_delay_ms = 500`, `command_timeout_ms = 60000`, `slow_poll_ms = 100`,
/// `crash_report = bool` (default `true`), `crash_file = "..."` (default
/// `/tmp/manhole-crashes-{uid}/crash-{pid}.txt`; `""` for stderr only) and
/// `crash_timeout_ms = 10000`, `watchdog_ms = 500` (default off),
/// `stuck_call_ms = 60000`, `watchdog_stacks = "short"` (or `"full"`,
/// `"none"`) and `max_reply_bytes = 67108864`; they mean what the `manhole::Options` methods
/// of the same names do, and the `MANHOLE` environment variable overrides
/// them. A failure to install is reported on stderr and the
/// program runs on without a manhole: a debugging aid must never stop the
/// service it is meant to debug. For other behaviour, use
/// `manhole::Options::new().install()` yourself.
///
/// ```no_run
/// #[manhole::main(socket_path = "/run/myapp/manhole-{pid}", verbose = false)]
/// fn main() {
///     // the app
/// }
/// ```
///
/// # What it expands to
///
/// ```text
/// fn main() {
///     ::manhole::__private::install_for_main(
///         ::manhole::__private::Options::new()
///             .socket_path("/run/myapp/manhole-{pid}")
///             .verbose(false),
///         // The binary crate's name and version, which `info` shows.
///         ::core::option_env!("CARGO_PKG_NAME"),
///         ::core::option_env!("CARGO_PKG_VERSION"),
///     );
///     // the app
/// }
/// ```
///
/// `fn main` may return a `Result` and may be `async` under a runtime's
/// attribute written below this one. With `#[tokio::main]` below it, the
/// manhole is installed inside the runtime, which async commands then run
/// on; `#[tokio::main]` above it is a compile error that says to swap them. The socket is removed when `main`
/// returns or the process calls `std::process::exit`.
///
/// # Errors at compile time
///
/// Anything but a no-argument, non-generic `fn main`, an unknown or
/// repeated option, a value of the wrong type, and `activate_on` together
/// with `oneshot_on` are refused at the offending token.
#[proc_macro_attribute]
pub fn main(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::main(args.into(), item.into()).into()
}
