// Not public API. Used by generated code.
//
// The reply and read "kinds" use autoref specialisation: generated code
// writes `(&value).__manhole_reply_kind().reply(&value)` with a concrete
// type, and method resolution picks the most specific impl: a `Result`
// before any other value, a `Mutex`/`RwLock` before any other static.

//
// Nothing inside the crate imports this module: it is the facade that
// generated code sees, and it only re-exports or adapts what lives below.

use crate::instrument::registry::lock_timeout;
use crate::options::deadline_after;
use manhole_wire::Reason;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Display;
use std::sync::{Mutex, RwLock, TryLockError};
use std::time::Instant;

pub use crate::instrument::calls::{CallStats, CallTimer};
pub use crate::instrument::inflight::InFlight;
pub use crate::instrument::registry::{
    Args, Command, CommandArg, Inspect, InspectKind, Meta, Outcome, Param,
};
pub use crate::options::Options;
pub use inventory;
pub use manhole_wire::Failure;
pub use serde_json::Value as JsonValue;

/// Runs a command or a computed value, turning a panic into a failure.
///
/// The panic hook still runs, so the panic is printed to stderr as usual.
///
/// # Errors
///
/// A command-panicked failure carrying the panic message.
pub fn catch_panic<R>(f: impl FnOnce() -> R) -> Result<R, Failure> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .map_err(|payload| Failure::new(Reason::Panicked, crate::error::panic_message(&*payload)))
}

/// The size of an inspected static, for the watchdog's map of which
/// static holds an address. A function of its own so that the expansion
/// trips no lint on statics of reference type.
#[must_use]
pub fn size_of_static<T: ?Sized>(value: &T) -> usize {
    core::mem::size_of_val(value)
}

/// Runs a command's or a computed value's whole adapter (argument parsing,
/// the call, and the conversion of its value) so that a panic anywhere in
/// it, a `FromStr`, a `Serialize` or a `Display` included, becomes an error
/// reply.
///
/// # Errors
///
/// The adapter's own failure, or a command-panicked failure.
pub fn guarded(adapter: impl FnOnce() -> Outcome) -> Outcome {
    catch_panic(adapter).and_then(|outcome| outcome)
}

/// The reply: measured against `max_reply_bytes`, then written straight
/// to the client when its session set that up (`Null` here then), or else
/// as a value (see [`crate::serve::reply`]).
fn to_value<T: ?Sized + Serialize>(value: &T) -> Outcome {
    crate::serve::reply::reply(value).map(Option::unwrap_or_default)
}

/// A value behind one of the program's locks: copied while the guard is
/// held, and sent only after it is dropped.
fn under_lock<T: ?Sized + Serialize>(value: &T) -> Outcome {
    crate::serve::reply::detached(value)
}

/// Marks a `Result` return value.
pub struct ResultReply;
/// Marks any other return value.
pub struct ValueReply;

/// Selects [`ResultReply`] for a `Result`.
pub trait ReplyKindResult {
    /// The reply kind.
    fn __manhole_reply_kind(&self) -> ResultReply {
        ResultReply
    }
}
impl<T, E> ReplyKindResult for Result<T, E> {}

/// Selects [`ValueReply`] for everything else.
pub trait ReplyKindValue {
    /// The reply kind.
    fn __manhole_reply_kind(&self) -> ValueReply {
        ValueReply
    }
}
impl<T: ?Sized> ReplyKindValue for &T {}

impl ResultReply {
    /// Whether an instrumented call returned `Err`.
    #[inline]
    pub fn is_err<T, E>(self, returned: &Result<T, E>) -> bool {
        returned.is_err()
    }

    /// `Ok` is the value; `Err` is an error reply with its `Display` text.
    ///
    /// # Errors
    ///
    /// A command-failed failure for `Err`.
    pub fn reply<T: Serialize, E: Display>(self, returned: &Result<T, E>) -> Outcome {
        match returned {
            Ok(value) => to_value(value),
            Err(err) => Err(Failure::new(Reason::ReturnedErr, err.to_string())),
        }
    }
}

impl ValueReply {
    /// A value that is not a `Result` is never an error.
    #[inline]
    pub fn is_err<T: ?Sized>(self, _returned: &T) -> bool {
        false
    }

    /// The value as JSON.
    ///
    /// # Errors
    ///
    /// An internal-error failure when the value's `Serialize` fails.
    pub fn reply<T: ?Sized + Serialize>(self, returned: &T) -> Outcome {
        to_value(returned)
    }
}

/// Marks a `Mutex` static.
pub struct MutexRead;
/// Marks an `RwLock` static.
pub struct RwLockRead;
/// Marks any other static.
pub struct ValueRead;

/// Selects a lock-aware reader for `Mutex` and `RwLock` statics.
pub trait ReadKindLock {
    /// The reader.
    type Kind;
    /// The reader.
    fn __manhole_read_kind(&self) -> Self::Kind;
}
impl<T: ?Sized> ReadKindLock for Mutex<T> {
    type Kind = MutexRead;
    fn __manhole_read_kind(&self) -> MutexRead {
        MutexRead
    }
}
impl<T: ?Sized> ReadKindLock for RwLock<T> {
    type Kind = RwLockRead;
    fn __manhole_read_kind(&self) -> RwLockRead {
        RwLockRead
    }
}

/// Marks a `tokio::sync::Mutex` static.
#[cfg(feature = "tokio")]
pub struct TokioMutexRead;
/// Marks a `tokio::sync::RwLock` static.
#[cfg(feature = "tokio")]
pub struct TokioRwLockRead;

#[cfg(feature = "tokio")]
impl<T: ?Sized> ReadKindLock for tokio::sync::Mutex<T> {
    type Kind = TokioMutexRead;
    fn __manhole_read_kind(&self) -> TokioMutexRead {
        TokioMutexRead
    }
}
#[cfg(feature = "tokio")]
impl<T: ?Sized> ReadKindLock for tokio::sync::RwLock<T> {
    type Kind = TokioRwLockRead;
    fn __manhole_read_kind(&self) -> TokioRwLockRead {
        TokioRwLockRead
    }
}

/// Selects [`ValueRead`] for every other static.
pub trait ReadKindValue {
    /// The reader.
    fn __manhole_read_kind(&self) -> ValueRead {
        ValueRead
    }
}
impl<T: ?Sized> ReadKindValue for &T {}

/// Retries `attempt` until it yields or the lock timeout passes, so that a
/// lock held by a stuck thread never hangs the session. A poisoned lock is
/// still read: its value is what a person debugging wants to see.
fn wait_for<G>(
    mut attempt: impl FnMut() -> Result<G, TryLockError<G>>,
    use_guard: impl FnOnce(G) -> Outcome,
) -> Outcome {
    let timeout = lock_timeout();
    let deadline = deadline_after(timeout);
    loop {
        match attempt() {
            Ok(guard) => return use_guard(guard),
            Err(TryLockError::Poisoned(poisoned)) => return use_guard(poisoned.into_inner()),
            Err(TryLockError::WouldBlock)
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) =>
            {
                return Err(Failure::new(
                    Reason::LockTimeout,
                    format!(
                        "the lock is held by another thread; gave up after {} ms",
                        timeout.as_millis()
                    ),
                ))
            }
            Err(TryLockError::WouldBlock) => {
                std::thread::sleep(std::time::Duration::from_millis(1))
            }
        }
    }
}

impl MutexRead {
    /// Serializes the value behind the lock, waiting a bounded time for it.
    ///
    /// # Errors
    ///
    /// An unavailable failure when the lock stays held past the timeout.
    pub fn read<T: ?Sized + Serialize>(self, lock: &Mutex<T>) -> Outcome {
        wait_for(|| lock.try_lock(), |guard| under_lock(&*guard))
    }
}

impl RwLockRead {
    /// Serializes the value behind the lock, waiting a bounded time for it.
    ///
    /// # Errors
    ///
    /// An unavailable failure when a writer holds the lock past the timeout.
    pub fn read<T: ?Sized + Serialize>(self, lock: &RwLock<T>) -> Outcome {
        wait_for(|| lock.try_read(), |guard| under_lock(&*guard))
    }
}

// A tokio lock is taken with `try_lock` as a std one is: the session
// thread is no runtime worker, and a lock held across an `.await` for long
// ends in `lock_timeout`, never in a wait on the runtime.
#[cfg(feature = "tokio")]
impl TokioMutexRead {
    /// Serializes the value behind the lock, waiting a bounded time for it.
    ///
    /// # Errors
    ///
    /// An unavailable failure when the lock stays held past the timeout.
    pub fn read<T: ?Sized + Serialize>(self, lock: &tokio::sync::Mutex<T>) -> Outcome {
        wait_for(
            || lock.try_lock().map_err(|_| TryLockError::WouldBlock),
            |guard| under_lock(&*guard),
        )
    }
}

#[cfg(feature = "tokio")]
impl TokioRwLockRead {
    /// Serializes the value behind the lock, waiting a bounded time for it.
    ///
    /// # Errors
    ///
    /// An unavailable failure when a writer holds the lock past the timeout.
    pub fn read<T: ?Sized + Serialize>(self, lock: &tokio::sync::RwLock<T>) -> Outcome {
        wait_for(
            || lock.try_read().map_err(|_| TryLockError::WouldBlock),
            |guard| under_lock(&*guard),
        )
    }
}

impl ValueRead {
    /// Serializes the static.
    ///
    /// # Errors
    ///
    /// An internal-error failure when the value's `Serialize` fails.
    pub fn read<T: ?Sized + Serialize>(self, value: &T) -> Outcome {
        to_value(value)
    }
}

/// What an `async fn` command's adapter names, so that without the
/// `tokio` feature the call fails to compile with a message that says
/// which feature to turn on (a proc macro cannot see `manhole`'s features).
pub struct Tokio;

/// Implemented only with the `tokio` feature of `manhole`.
#[diagnostic::on_unimplemented(
    message = "an `async fn` command needs the `tokio` feature of `manhole`",
    label = "async commands run on the program's tokio runtime",
    note = "enable it in Cargo.toml: `manhole = {{ version = \"...\", features = [\"tokio\"] }}`"
)]
pub trait AsyncCommandsNeedTheTokioFeature {}

#[cfg(feature = "tokio")]
impl AsyncCommandsNeedTheTokioFeature for Tokio {}

/// Runs an `async fn` command's future on the program's tokio runtime, and
/// waits for it on the session's thread (see `tasks`).
///
/// # Errors
///
/// The command's own failure; `panicked` when the future panicked;
/// `timed_out` past `command_timeout` or when the client hung up;
/// `no_runtime` when the manhole knows no runtime.
pub fn run_async<N, F>(_feature: N, args: &Args<'_>, future: F) -> Outcome
where
    N: AsyncCommandsNeedTheTokioFeature,
    F: std::future::Future<Output = Outcome> + Send + 'static,
{
    #[cfg(feature = "tokio")]
    return crate::instrument::async_commands::run(args.waiting, future);
    #[cfg(not(feature = "tokio"))]
    {
        // Unreachable: without the feature, `N` has no type to be.
        let _ = (args, future);
        Err(Failure::new(
            Reason::NotEnabled,
            "async commands need the `tokio` feature of `manhole`",
        ))
    }
}

/// Runs an instrumented function's body. Taking `FnOnce` lets the body
/// return borrows through a captured `&mut self`, as the function could.
#[inline(always)]
pub fn call_once<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// Gives an instrumented `async fn`'s body the function's return type, so
/// that `?` inside it knows which error to convert into.
#[inline]
pub fn typed_future<R, F: std::future::Future<Output = R>>(future: F) -> F {
    future
}

/// An `async fn` under `inspect(calls)`, followed by `tasks` while in
/// flight under the name `stats` shows, with its arguments under
/// `inspect(calls, args)`.
#[inline]
pub fn in_flight<F: std::future::Future, A: ArgsOfCall>(
    name: &'static str,
    stats: &'static CallStats,
    args: A,
    future: F,
) -> InFlight<F, A> {
    InFlight::new(name, stats, args, future)
}

pub use crate::instrument::inflight::{ArgsOfCall, CallArgs, NoArgs};

/// A parameter of an `inspect(calls, args)` function, shown by its `Debug`
/// text.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not `Debug`, so `inspect(calls, args)` cannot show it",
    label = "not `Debug`",
    note = "leave `args` out of `#[manhole::inspect(calls, args)]`, or implement (or derive) `Debug` for `{Self}`"
)]
pub trait ArgDebug: std::fmt::Debug {}

impl<T: ?Sized + std::fmt::Debug> ArgDebug for T {}

/// `value`, checked to be `Debug` with a message that says what to do.
#[inline]
pub fn arg_debug<T: ?Sized + ArgDebug>(value: &T) -> &T {
    value
}

/// A method's receiver, shown by a bare `inspect(calls, args)` when it is
/// `Debug`: `(&&MaybeDebug(&self)).maybe_debug()` picks [`ViaDebug`] then,
/// and [`NotDebug`] otherwise (method resolution tries `&&` before `&`).
pub struct MaybeDebug<'a, T: ?Sized>(pub &'a T);

/// The receiver is `Debug`.
pub trait ViaDebug {
    /// The receiver, to format.
    fn maybe_debug(&self) -> Option<&dyn std::fmt::Debug>;
}

impl<T: std::fmt::Debug> ViaDebug for &MaybeDebug<'_, T> {
    #[inline]
    fn maybe_debug(&self) -> Option<&dyn std::fmt::Debug> {
        Some(self.0)
    }
}

/// The receiver is not `Debug`: nothing is shown for it.
pub trait NotDebug {
    /// Nothing.
    fn maybe_debug(&self) -> Option<&dyn std::fmt::Debug> {
        None
    }
}

impl<T: ?Sized> NotDebug for MaybeDebug<'_, T> {}

/// `self=VALUE` before the other arguments (`, ` after it when `.1` says
/// more follow), or nothing.
pub struct ReceiverArg<'a>(pub Option<&'a dyn std::fmt::Debug>, pub bool);

impl std::fmt::Display for ReceiverArg<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(receiver) if self.1 => write!(f, "self={receiver:?}, "),
            Some(receiver) => write!(f, "self={receiver:?}"),
            None => Ok(()),
        }
    }
}

/// A static that `set` can write: the std atomics, and a `Mutex` or
/// `RwLock` whose value can be deserialised.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be written by `set`",
    label = "not writable",
    note = "`#[manhole::inspect(writable)]` works on the std atomics (`AtomicBool`, `AtomicU64`, ...) and on `Mutex<T>` or `RwLock<T>` (std's, or tokio's with the `tokio` feature) where `T: serde::Deserialize + serde::Serialize`"
)]
pub trait Writable {
    /// Replaces the value with `value`, and returns
    /// `{"previous": ..., "value": ...}`.
    ///
    /// # Errors
    ///
    /// An invalid-params failure when `value` does not fit the type (the
    /// old value stays), or an unavailable failure when a lock stays held
    /// past the lock timeout.
    fn write_value(&self, value: JsonValue) -> Outcome;
}

/// An atomic's new value as text, for its integer's or `bool`'s `FromStr`.
fn scalar_text(value: &JsonValue, expected: &str) -> Result<String, Failure> {
    match value {
        JsonValue::String(text) => Ok(text.trim().to_owned()),
        JsonValue::Number(number) => Ok(number.to_string()),
        JsonValue::Bool(flag) => Ok(flag.to_string()),
        other => Err(Failure::new(
            Reason::BadValue,
            format!("expected {expected}, got {other}"),
        )),
    }
}

macro_rules! writable_atomics {
    ($($atomic:ident: $scalar:ty, $expected:literal;)*) => {$(
        impl Writable for std::sync::atomic::$atomic {
            fn write_value(&self, value: JsonValue) -> Outcome {
                let text = scalar_text(&value, $expected)?;
                let new = text.parse::<$scalar>().map_err(|err| {
                    Failure::new(
                        Reason::BadValue,
                        format!("expected {}, got {text:?}: {err}", $expected),
                    )
                })?;
                let previous = self.swap(new, std::sync::atomic::Ordering::SeqCst);
                Ok(serde_json::json!({"previous": previous, "value": new}))
            }
        }
    )*};
}

writable_atomics! {
    AtomicBool: bool, "`true` or `false`";
    AtomicI8: i8, "an i8";
    AtomicI16: i16, "an i16";
    AtomicI32: i32, "an i32";
    AtomicI64: i64, "an i64";
    AtomicIsize: isize, "an isize";
    AtomicU8: u8, "a u8";
    AtomicU16: u16, "a u16";
    AtomicU32: u32, "a u32";
    AtomicU64: u64, "a u64";
    AtomicUsize: usize, "a usize";
}

/// Parses the new value before the lock is taken, so a bad value never
/// waits for it.
fn deserialize<T: DeserializeOwned>(value: JsonValue) -> Result<T, Failure> {
    serde_json::from_value(value).map_err(|err| {
        Failure::new(
            Reason::BadValue,
            format!(
                "the value does not fit {}: {err}",
                written_type_name(std::any::type_name::<T>())
            ),
        )
    })
}

/// A type as a user writes it: `Vec<String>` for
/// `alloc::vec::Vec<alloc::string::String>`. Every path keeps its last
/// segment only; generics, references, tuples and arrays keep their shape.
fn written_type_name(full: &str) -> String {
    let is_path = |ch: char| ch.is_alphanumeric() || ch == '_' || ch == ':';
    let mut written = String::with_capacity(full.len());
    let mut rest = full;
    while let Some(first) = rest.chars().next() {
        let end = rest.find(|ch: char| !is_path(ch)).unwrap_or(rest.len());
        if end == 0 {
            written.push(first);
            rest = &rest[first.len_utf8()..];
        } else {
            let path = &rest[..end];
            written.push_str(path.rsplit("::").next().unwrap_or(path));
            rest = &rest[end..];
        }
    }
    written
}

/// Replaces the guarded value. Both values are serialised first, so that a
/// value that cannot be shown fails the `set` before anything changes.
fn replace_in<T: Serialize>(slot: &mut T, new: T) -> Outcome {
    let value = to_value(&new)?;
    let previous = to_value(&*slot)?;
    *slot = new;
    Ok(serde_json::json!({"previous": previous, "value": value}))
}

impl<T: Serialize + DeserializeOwned> Writable for Mutex<T> {
    fn write_value(&self, value: JsonValue) -> Outcome {
        let new = deserialize::<T>(value)?;
        wait_for(|| self.try_lock(), |mut guard| replace_in(&mut *guard, new))
    }
}

impl<T: Serialize + DeserializeOwned> Writable for RwLock<T> {
    fn write_value(&self, value: JsonValue) -> Outcome {
        let new = deserialize::<T>(value)?;
        wait_for(
            || self.try_write(),
            |mut guard| replace_in(&mut *guard, new),
        )
    }
}

#[cfg(feature = "tokio")]
impl<T: Serialize + DeserializeOwned> Writable for tokio::sync::Mutex<T> {
    fn write_value(&self, value: JsonValue) -> Outcome {
        let new = deserialize::<T>(value)?;
        wait_for(
            || self.try_lock().map_err(|_| TryLockError::WouldBlock),
            |mut guard| replace_in(&mut *guard, new),
        )
    }
}

#[cfg(feature = "tokio")]
impl<T: Serialize + DeserializeOwned> Writable for tokio::sync::RwLock<T> {
    fn write_value(&self, value: JsonValue) -> Outcome {
        let new = deserialize::<T>(value)?;
        wait_for(
            || self.try_write().map_err(|_| TryLockError::WouldBlock),
            |mut guard| replace_in(&mut *guard, new),
        )
    }
}

/// Serves `input` as one client's whole session and returns what the
/// client would read: the same line reader, parsers and built-ins as a
/// socket session, with the default limits and without the greeting's stack
/// dump. The fuzz target and its regression test drive sessions through it.
#[must_use]
pub fn serve_bytes(input: &[u8]) -> Vec<u8> {
    crate::serve::session::serve_bytes(input, &crate::serve::session::SessionConfig::default())
}

/// What `#[manhole::main]` runs first: installs, and reports a failure on
/// stderr instead of stopping the program, which must not die for its
/// debugging aid. `program` and `version` are the binary crate's
/// `CARGO_PKG_NAME` and `CARGO_PKG_VERSION` (absent when it is built
/// without Cargo), which `info` shows.
pub fn install_for_main(
    mut options: Options,
    program: Option<&'static str>,
    version: Option<&'static str>,
) {
    if let Some(name) = program {
        options.program = Some(crate::options::Program {
            name,
            version: version.unwrap_or("?"),
        });
    }
    let verbose = options.verbose;
    match options.install() {
        Ok(_) => {}
        Err(crate::error::Error::Disabled) if !verbose => {}
        Err(crate::error::Error::CompiledOut) => {}
        Err(err) => crate::log::always(format_args!("not installed: {err}")),
    }
}

/// How many quiet captures were taken again because their thread ran
/// during the copy, for tests of the consistency check.
#[must_use]
pub fn quiet_capture_retakes() -> u64 {
    crate::capture::retakes()
}

/// Runs `hook(tid)` between a quiet capture's copy and its check (`None`
/// removes it), for tests that wake the thread right there.
pub fn set_quiet_capture_hook(hook: Option<fn(i32)>) {
    crate::capture::set_after_copy(hook);
}

/// Whether the calling thread is inside the manhole's stack signal handler,
/// for tests that prove the handler never allocates.
#[must_use]
pub fn in_stack_handler() -> bool {
    crate::capture::in_handler()
}

#[cfg(test)]
mod tests {
    use super::written_type_name;

    #[test]
    fn type_names_read_as_written() {
        for (full, written) in [
            ("alloc::vec::Vec<alloc::string::String>", "Vec<String>"),
            (
                "std::collections::hash::map::HashMap<alloc::string::String, (u32, [f64; 2])>",
                "HashMap<String, (u32, [f64; 2])>",
            ),
            ("core::option::Option<&'static str>", "Option<&'static str>"),
            ("instrumented::Settings", "Settings"),
            ("u64", "u64"),
        ] {
            assert_eq!(written_type_name(full), written);
        }
    }
}
