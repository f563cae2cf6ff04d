//! What a manhole is configured with, for the attribute and the plain API
//! alike: `#[manhole::main(socket_path = "...", verbose = false)]` builds the
//! same [`Options`] that a program can build by hand.
//!
//! [`Options`] is a plain value: building one changes nothing in the
//! process. [`Options::install`](crate::Options::install) hands it to the
//! installed manhole, which owns it; every setting is read from there, so an
//! uninstall followed by an install with other options takes them all. Every
//! default is written here and nowhere else.

use crate::error::Error;
use crate::signal_names;

mod environment;
mod runtime;

pub(crate) use environment::apply_environment;
#[cfg(feature = "tokio")]
pub(crate) use runtime::BusyReading;
pub(crate) use runtime::Runtime;
pub use runtime::DEFAULT_COMMAND_TIMEOUT;
use std::path::PathBuf;
use std::time::Duration;

/// Where a crash report is written unless [`Options::crash_file`] says
/// otherwise; `{uid}` is the process's effective user, `{pid}` the
/// crashing process's id. The directory is made private (0700) and used
/// only while it is a directory that no other user may write.
pub const DEFAULT_CRASH_FILE: &str = "/tmp/manhole-crashes-{uid}/crash-{pid}.txt";

/// How long a dying process waits for its symbolised crash report by
/// default, before it dies with the raw one.
pub const DEFAULT_CRASH_TIMEOUT: Duration = Duration::from_secs(10);

/// How long an instrumented call may be in flight before the watchdog
/// reports it as `stuck_call`, unless [`Options::stuck_call`] says
/// otherwise.
pub const DEFAULT_STUCK_CALL: Duration = Duration::from_secs(60);

/// How long the symbol tables stay in memory with no request that needs
/// them, unless [`Options::symbol_cache_idle`] says otherwise.
pub const DEFAULT_SYMBOL_CACHE_IDLE: Duration = Duration::from_secs(60);

/// How far back the flight recorder keeps, unless [`Options::history`]
/// says otherwise.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(600);

/// The most memory the flight recorder keeps by default, in bytes.
pub const DEFAULT_HISTORY_BYTES: usize = 8 * 1024 * 1024;

/// The largest reply a command may give by default, in bytes of JSON.
pub const DEFAULT_MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// The longest request line accepted by default, in bytes.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 64 * 1024;

/// How long a forked child waits before it installs its own manhole.
pub const DEFAULT_REINSTALL_DELAY: Duration = Duration::from_millis(500);

/// The environment variable that overrides the options, or disables the
/// manhole with `MANHOLE=off`.
pub const ENVIRONMENT_VARIABLE: &str = "MANHOLE";

/// How many sessions may be open at once by default; one more client gets
/// `error: busy` and is closed.
pub const DEFAULT_MAX_SESSIONS: usize = 16;

/// How long a session may wait for a complete line by default before it is
/// closed.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How long one write to a client may block by default before the session
/// is closed.
pub const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `crash_timeout` accepted.
const MAX_CRASH_WAIT: Duration = Duration::from_secs(300);

/// The longest `lock_timeout` and `stack_timeout` accepted.
const MAX_WAIT: Duration = Duration::from_secs(60);

/// When a wait of `timeout` from now ends; `None` when that is too far
/// ahead to represent, which means never.
pub(crate) fn deadline_after(timeout: Duration) -> Option<std::time::Instant> {
    std::time::Instant::now().checked_add(timeout)
}

/// How long reading a locked `Mutex` or `RwLock` waits by default.
pub const DEFAULT_LOCK_TIMEOUT: Duration = Duration::from_millis(100);

/// How long a stack dump waits for each thread by default.
pub const DEFAULT_STACK_TIMEOUT: Duration = Duration::from_millis(200);

/// How long one poll of an `inspect(calls)` async fn may run, by default,
/// before `tasks` and `stacks` say it blocks its worker.
pub const DEFAULT_SLOW_POLL: Duration = Duration::from_millis(100);

/// How much of a stalled thread's stack a watchdog report sends to stderr
/// or the log ([`Options::watchdog_stacks`]). `stalls` always keeps the
/// whole stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum WatchdogStacks {
    /// The program's frames with file:line, runs of runtime frames folded
    /// into one line, at most 20 lines (the default).
    #[default]
    Short,
    /// Every frame.
    Full,
    /// No stack: the report's first line alone.
    None,
}

impl WatchdogStacks {
    /// `short`, `full` or `none`, as `MANHOLE=watchdog_stacks=` and the
    /// attribute take them.
    pub fn from_name(name: &str) -> Option<WatchdogStacks> {
        match name.to_ascii_lowercase().as_str() {
            "short" => Some(WatchdogStacks::Short),
            "full" => Some(WatchdogStacks::Full),
            "none" => Some(WatchdogStacks::None),
            _ => None,
        }
    }
}

/// When the manhole opens its socket.
///
/// One value holds the choice, so that the two signal modes, which exclude
/// each other, cannot both be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Activation {
    /// At install, for good (the default).
    #[default]
    Always,
    /// When the signal first arrives, then for good (the JVM attach
    /// listener's model). See [`Options::activate_on`].
    OnSignal(i32),
    /// For exactly one session each time the signal arrives. See
    /// [`Options::oneshot_on`].
    OneshotOn(i32),
}

impl Activation {
    /// The trigger signal, and the option that names it.
    pub(crate) fn trigger(self) -> Option<(i32, &'static str)> {
        match self {
            Activation::Always => None,
            Activation::OnSignal(signal) => Some((signal, "activate_on")),
            Activation::OneshotOn(signal) => Some((signal, "oneshot_on")),
        }
    }
}

/// How long a request may wait for what it reads: the installed options'
/// `lock_timeout` and `stack_timeout`, handed to every session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waits {
    pub(crate) lock: Duration,
    pub(crate) stacks: Duration,
    /// How long an async command may run.
    pub(crate) command: Duration,
    /// A poll longer than this blocks its worker.
    pub(crate) slow_poll: Duration,
}

impl Default for Waits {
    fn default() -> Self {
        Waits {
            lock: DEFAULT_LOCK_TIMEOUT,
            stacks: DEFAULT_STACK_TIMEOUT,
            command: DEFAULT_COMMAND_TIMEOUT,
            slow_poll: DEFAULT_SLOW_POLL,
        }
    }
}

/// The program a manhole serves, as `#[manhole::main]` names it: the
/// binary crate's `CARGO_PKG_NAME` and `CARGO_PKG_VERSION`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Program {
    pub(crate) name: &'static str,
    pub(crate) version: &'static str,
}

/// What every request of the installed manhole runs under: its waits, and
/// the program it serves when `#[manhole::main]` said, and the runtime
/// its async commands run on.
#[derive(Debug, Clone, Default)]
pub(crate) struct Served {
    pub(crate) waits: Waits,
    pub(crate) program: Option<Program>,
    pub(crate) runtime: Runtime,
}

/// How to install a manhole.
///
/// # Examples
///
/// ```no_run
/// let handle = manhole::Options::new()
///     .socket_path("/tmp/myapp-{pid}.manhole")
///     .verbose(false)
///     .install()?;
/// println!("connect with: nc -U {}", handle.socket_path().display());
/// # Ok::<(), manhole::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use = "options do nothing until `install()` is called"]
pub struct Options {
    pub(crate) socket_path: Option<PathBuf>,
    pub(crate) verbose: bool,
    pub(crate) max_line_length: usize,
    pub(crate) max_sessions: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) write_timeout: Duration,
    pub(crate) lock_timeout: Duration,
    pub(crate) stack_signal: Option<i32>,
    pub(crate) stack_timeout: Duration,
    pub(crate) activation: Activation,
    pub(crate) sigmask: bool,
    pub(crate) reinstall_on_fork: bool,
    pub(crate) reinstall_delay: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) slow_poll: Duration,
    pub(crate) runtime: Runtime,
    pub(crate) crash_report: bool,
    pub(crate) crash_file: String,
    pub(crate) crash_timeout: Duration,
    pub(crate) watchdog: Option<Duration>,
    pub(crate) stuck_call: Duration,
    pub(crate) watchdog_stacks: WatchdogStacks,
    pub(crate) symbol_cache_idle: Duration,
    pub(crate) max_reply_bytes: usize,
    pub(crate) history: Option<Duration>,
    pub(crate) history_bytes: usize,
    /// Set when an option could not be parsed (from a name); reported by
    /// `install`, since builder methods cannot fail.
    pub(crate) invalid: Option<(&'static str, String)>,
    /// The binary's crate, when `#[manhole::main]` installed it.
    pub(crate) program: Option<Program>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            socket_path: None,
            verbose: true,
            max_line_length: DEFAULT_MAX_LINE_LENGTH,
            max_sessions: DEFAULT_MAX_SESSIONS,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            write_timeout: DEFAULT_WRITE_TIMEOUT,
            lock_timeout: DEFAULT_LOCK_TIMEOUT,
            stack_signal: None,
            stack_timeout: DEFAULT_STACK_TIMEOUT,
            activation: Activation::Always,
            sigmask: true,
            reinstall_on_fork: true,
            reinstall_delay: DEFAULT_REINSTALL_DELAY,
            command_timeout: DEFAULT_COMMAND_TIMEOUT,
            slow_poll: DEFAULT_SLOW_POLL,
            runtime: Runtime::default(),
            crash_report: true,
            crash_file: DEFAULT_CRASH_FILE.to_owned(),
            crash_timeout: DEFAULT_CRASH_TIMEOUT,
            watchdog: None,
            stuck_call: DEFAULT_STUCK_CALL,
            watchdog_stacks: WatchdogStacks::Short,
            symbol_cache_idle: DEFAULT_SYMBOL_CACHE_IDLE,
            max_reply_bytes: DEFAULT_MAX_REPLY_BYTES,
            history: Some(DEFAULT_HISTORY),
            history_bytes: DEFAULT_HISTORY_BYTES,
            invalid: None,
            program: None,
        }
    }
}

impl Options {
    /// The defaults: `/tmp/manhole-<pid>`, verbose, 64 KiB lines and a
    /// 100 ms lock timeout.
    pub fn new() -> Self {
        Self::default()
    }

    /// Where the socket is created. `{pid}` in the path is replaced by the
    /// process id. The default is `/tmp/manhole-{pid}`.
    pub fn socket_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket_path = Some(path.into());
        self
    }

    /// Whether the manhole reports on stderr where it listens, each session
    /// it opens and each connection it refuses. On by default, as in the
    /// Python original. Failures to install are reported either way.
    pub fn verbose(mut self, verbose: bool) -> Self {
        self.verbose = verbose;
        self
    }

    /// The longest request line, in bytes. A longer line gets an error reply
    /// and is skipped; the session goes on.
    pub fn max_line_length(mut self, bytes: usize) -> Self {
        self.max_line_length = bytes;
        self
    }

    /// How many sessions may be open at once (16 by default). One more
    /// client is sent `error: busy ...` and closed; the listener goes on
    /// serving, and a place frees when a session ends.
    pub fn max_sessions(mut self, sessions: usize) -> Self {
        self.max_sessions = sessions;
        self
    }

    /// How long a session waits for a complete line (10 minutes by
    /// default), counted from the moment it starts waiting for that line,
    /// so that a client that connects and sends nothing, or dribbles a byte
    /// at a time, cannot hold a session forever; a `watch` with no input
    /// ends after it too. The client is told, then closed.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long one write to a client may block (10 seconds by default),
    /// so that a client that stops reading cannot pin a session thread.
    pub fn write_timeout(mut self, timeout: Duration) -> Self {
        self.write_timeout = timeout;
        self
    }

    /// How long reading an inspected `Mutex` or `RwLock` waits for a lock
    /// that another thread holds before it replies that the lock is held.
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The realtime signal that asks threads for their stacks, such as
    /// `libc::SIGRTMIN() + 4`. By default the highest realtime signal that
    /// has no handler yet is taken, and `verbose` says which. A signal that
    /// already has another handler is refused at install.
    pub fn stack_signal(mut self, signal: i32) -> Self {
        self.stack_signal = Some(signal);
        self
    }

    /// How long a stack dump waits for each thread to answer (200 ms by
    /// default). A thread that blocks the stack signal, is stuck in the
    /// kernel or is never scheduled is reported as `no response` after it.
    pub fn stack_timeout(mut self, timeout: Duration) -> Self {
        self.stack_timeout = timeout;
        self
    }

    /// Creates no socket and no listener until `signal` arrives (the JVM
    /// attach listener's model): until then the manhole is one dormant thread
    /// blocked reading a pipe, and the signal's handler, which writes one
    /// byte to that pipe. Later signals change nothing. The signal must not
    /// have another handler already.
    ///
    /// Replaces an earlier [`Options::oneshot_on`]: a manhole has one
    /// [`Activation`].
    pub fn activate_on(self, signal: i32) -> Self {
        self.activation(Activation::OnSignal(signal))
    }

    /// When the socket is opened: at install, on a signal, or one session
    /// per signal. The last of `activation`, `activate_on` and `oneshot_on`
    /// wins.
    pub fn activation(mut self, activation: Activation) -> Self {
        self.activation = activation;
        self
    }

    /// [`Options::activate_on`] with a signal name: `"USR1"`, `"SIGUSR1"`,
    /// `"RTMIN+2"`, or a number. A name that is no signal makes `install`
    /// fail with [`Error::InvalidOption`].
    pub fn activate_on_named(self, name: &str) -> Self {
        self.named_signal("activate_on", name, Self::activate_on)
    }

    /// Opens the socket for exactly one session each time `signal` arrives,
    /// and removes it when that session ends. Between sessions the manhole
    /// is the same dormant thread as with [`Options::activate_on`].
    ///
    /// Replaces an earlier [`Options::activate_on`].
    pub fn oneshot_on(self, signal: i32) -> Self {
        self.activation(Activation::OneshotOn(signal))
    }

    /// [`Options::oneshot_on`] with a signal name, as
    /// [`Options::activate_on_named`] takes.
    pub fn oneshot_on_named(self, name: &str) -> Self {
        self.named_signal("oneshot_on", name, Self::oneshot_on)
    }

    fn named_signal(
        mut self,
        option: &'static str,
        name: &str,
        set: fn(Self, i32) -> Self,
    ) -> Self {
        match signal_names::parse(name) {
            Ok(signal) => set(self, signal),
            Err(reason) => {
                self.invalid = Some((option, reason));
                self
            }
        }
    }

    /// Whether the manhole's threads block every asynchronous signal (on by
    /// default), so that signals meant for the process (`SIGTERM`,
    /// `SIGINT`, `SIGCHLD`, ...) always reach the app's threads, its
    /// `signalfd` or its `sigwait`. The stack signal stays unblocked.
    pub fn sigmask(mut self, sigmask: bool) -> Self {
        self.sigmask = sigmask;
        self
    }

    /// Whether a child made by `fork()` installs its own manhole (on by
    /// default), on the same options with its own pid in the socket path,
    /// after [`Options::reinstall_delay`]. A child that calls `exec` or
    /// exits before then never creates a socket.
    pub fn reinstall_on_fork(mut self, reinstall: bool) -> Self {
        self.reinstall_on_fork = reinstall;
        self
    }

    /// How long a forked child waits before installing its manhole (500 ms
    /// by default).
    pub fn reinstall_delay(mut self, delay: Duration) -> Self {
        self.reinstall_delay = delay;
        self
    }

    /// How long an `async fn` command may run before its future is dropped
    /// and the client gets error -32003 (`timed_out`). The default is 60 s.
    /// A sync command runs on the session's own thread and is not bounded.
    pub fn command_timeout(mut self, timeout: Duration) -> Self {
        self.command_timeout = timeout;
        self
    }

    /// How long one poll of an `#[manhole::inspect(calls)] async fn` may run
    /// before `tasks` shows it `"blocking": true` and `stacks` says its
    /// thread is blocked in it (100 ms by default): the future that holds
    /// a runtime worker with a sync lock, a sleep or heavy work.
    pub fn slow_poll(mut self, slow_poll: Duration) -> Self {
        self.slow_poll = slow_poll;
        self
    }

    /// The largest reply a command may give, in bytes of JSON (64 MiB by
    /// default). A reply is measured before it is sent, without being
    /// built, and then serialised straight to the socket; one past this
    /// is not sent, and the client gets reason `reply_too_large`. The
    /// bound keeps a command that returns too much (a whole table, say)
    /// from taking the process's memory with it.
    pub fn max_reply_bytes(mut self, bytes: usize) -> Self {
        self.max_reply_bytes = bytes;
        self
    }

    /// How far back the flight recorder keeps what it measures every
    /// second (the process's CPU, resident memory, threads and open
    /// descriptors, each counted function's calls, errors and latencies,
    /// each numeric inspected static's value) and the manhole's own events
    /// (who connected, and each `set` and `call`), for `history` to show:
    /// ten minutes by default; `None` keeps nothing, and wakes no thread
    /// for it.
    pub fn history(mut self, history: Option<Duration>) -> Self {
        self.history = history;
        self
    }

    /// The most memory the flight recorder keeps, in bytes (8 MiB by
    /// default): past it, the oldest seconds go first, whatever
    /// [`Options::history`] says.
    pub fn history_bytes(mut self, bytes: usize) -> Self {
        self.history_bytes = bytes;
        self
    }

    /// How long the symbol tables that a dump, a profile or `panics` read
    /// stay in memory with no request that needs them (a minute by
    /// default). Nothing is read before the first such request; after this
    /// long without one, the tables are dropped and the freed heap is given
    /// back to the kernel, so that an idle manhole's resident size returns
    /// to what it was.
    pub fn symbol_cache_idle(mut self, idle: Duration) -> Self {
        self.symbol_cache_idle = idle;
        self
    }

    /// The tokio runtime that `async fn` commands run on. Without it,
    /// `install` takes the runtime it is called inside
    /// (`Handle::try_current`), if any; a call to an async command with no
    /// runtime known is error `no_runtime`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    /// manhole::Options::new()
    ///     .tokio_handle(runtime.handle().clone())
    ///     .install()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "tokio")]
    pub fn tokio_handle(mut self, handle: tokio::runtime::Handle) -> Self {
        self.runtime.handle = Some(handle);
        self
    }

    /// Whether a fatal signal (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`,
    /// `SIGABRT`, a stack overflow) writes a crash report before the
    /// process dies as it would have. On by default; `MANHOLE=crash_report=off`
    /// turns it off. `docs/crashes.md` says what a report holds.
    pub fn crash_report(mut self, on: bool) -> Self {
        self.crash_report = on;
        self
    }

    /// Where the crash report is written, besides stderr: a path template
    /// in which `{pid}` is the crashing process's id and `{uid}` its
    /// effective user. The default is [`DEFAULT_CRASH_FILE`], in a
    /// directory of the user's own that the manhole makes (0700) and
    /// checks at install, so that another user can neither plant nor
    /// squat a report's name there. The directory of a path you set is
    /// opened as it is, at install. The file is created with mode 0600 and never
    /// through a symlink or over an existing file: a taken name gets a
    /// numbered suffix (`.1`, `.2`, ...). An empty string writes the report
    /// to stderr only.
    pub fn crash_file(mut self, template: impl Into<String>) -> Self {
        self.crash_file = template.into();
        self
    }

    /// The longest a dying process waits for its symbolised crash report
    /// ([`DEFAULT_CRASH_TIMEOUT`] by default) before it dies with the raw
    /// one, so that a crash report never keeps alive a process that should
    /// die. Zero starts no symboliser at all: the report stays raw (frames
    /// as module and offset), for `manhole-cli symbolize` to finish
    /// offline; for a process that may not be traced, or must die at once.
    pub fn crash_timeout(mut self, timeout: Duration) -> Self {
        self.crash_timeout = timeout;
        self
    }

    /// Starts the watchdog: a thread that reports, while nobody is
    /// connected, any poll of an `#[inspect(calls)]` async fn and any wait
    /// on an inspected lock longer than `threshold`, and every such call
    /// in flight longer than [`Options::stuck_call`]. Off by default (no
    /// thread, nothing on any path); `None` turns it off. The `watchdog`
    /// built-in changes it live. `docs/watchdog.md` says what a report
    /// holds.
    pub fn watchdog(mut self, threshold: Option<Duration>) -> Self {
        self.watchdog = threshold;
        self
    }

    /// How long an instrumented call may be in flight before the watchdog
    /// reports it as stuck ([`DEFAULT_STUCK_CALL`] by default).
    pub fn stuck_call(mut self, after: Duration) -> Self {
        self.stuck_call = after;
        self
    }

    /// How much of a stalled thread's stack a watchdog report sends to
    /// stderr or the log: [`WatchdogStacks::Short`] by default, at most 20
    /// lines. `stalls` keeps every frame whatever this says.
    pub fn watchdog_stacks(mut self, stacks: WatchdogStacks) -> Self {
        self.watchdog_stacks = stacks;
        self
    }

    pub(crate) fn validate(&mut self) -> Result<(), Error> {
        if let Some((option, reason)) = self.invalid.take() {
            return Err(Error::InvalidOption { option, reason });
        }
        if self.max_line_length == 0 {
            return Err(Error::InvalidOption {
                option: "max_line_length",
                reason: "must be at least 1 byte; the default is 65536".to_owned(),
            });
        }
        if self.max_reply_bytes < 1024 {
            return Err(Error::InvalidOption {
                option: "max_reply_bytes",
                reason: format!(
                    "must be at least 1024 bytes; the default is {DEFAULT_MAX_REPLY_BYTES}"
                ),
            });
        }
        if self
            .history
            .is_some_and(|history| history < Duration::from_secs(10))
        {
            return Err(Error::InvalidOption {
                option: "history",
                reason: "must be at least 10s, or off; the default is 10m".to_owned(),
            });
        }
        if self.history_bytes < 64 * 1024 {
            return Err(Error::InvalidOption {
                option: "history_bytes",
                reason: format!(
                    "must be at least 65536 bytes; the default is {DEFAULT_HISTORY_BYTES}"
                ),
            });
        }
        if self.max_sessions == 0 {
            return Err(Error::InvalidOption {
                option: "max_sessions",
                reason: "must be at least 1; the default is 16".to_owned(),
            });
        }
        for (option, timeout) in [
            ("idle_timeout", self.idle_timeout),
            ("write_timeout", self.write_timeout),
            ("command_timeout", self.command_timeout),
            ("slow_poll", self.slow_poll),
            ("stuck_call", self.stuck_call),
            ("symbol_cache_idle", self.symbol_cache_idle),
        ] {
            if timeout.is_zero() {
                return Err(Error::InvalidOption {
                    option,
                    reason: "must be longer than zero".to_owned(),
                });
            }
        }
        // A session waits this long for a lock or a thread; unbounded, one
        // stuck thread would hang it.
        for (option, timeout) in [
            ("lock_timeout", self.lock_timeout),
            ("stack_timeout", self.stack_timeout),
        ] {
            if timeout > MAX_WAIT {
                return Err(Error::InvalidOption {
                    option,
                    reason: format!(
                        "must be at most {} s, so that a stuck thread cannot hang a session",
                        MAX_WAIT.as_secs()
                    ),
                });
            }
        }
        if self
            .watchdog
            .is_some_and(|threshold| threshold < manhole_wire::MIN_WATCHDOG_THRESHOLD)
        {
            return Err(Error::InvalidOption {
                option: "watchdog",
                reason: format!(
                    "must be at least {} ms: the watchdog wakes four times per threshold",
                    manhole_wire::MIN_WATCHDOG_THRESHOLD.as_millis()
                ),
            });
        }
        if self.crash_timeout > MAX_CRASH_WAIT {
            return Err(Error::InvalidOption {
                option: "crash_timeout",
                reason: format!(
                    "must be at most {} s, so that a crash report cannot keep a dying process alive for long",
                    MAX_CRASH_WAIT.as_secs()
                ),
            });
        }
        if self
            .socket_path
            .as_ref()
            .is_some_and(|path| path.as_os_str().is_empty())
        {
            return Err(Error::InvalidOption {
                option: "socket_path",
                reason: "is empty; leave it unset for the default /tmp/manhole-{pid}".to_owned(),
            });
        }
        Ok(())
    }

    /// The waits every request of this manhole runs under.
    pub(crate) fn waits(&self) -> Waits {
        Waits {
            lock: self.lock_timeout,
            stacks: self.stack_timeout,
            command: self.command_timeout,
            slow_poll: self.slow_poll,
        }
    }

    /// What every request of this manhole runs under.
    pub(crate) fn served(&self) -> Served {
        Served {
            waits: self.waits(),
            program: self.program,
            runtime: self.runtime.clone(),
        }
    }

    /// The socket path with `{pid}` filled in.
    pub(crate) fn resolved_socket_path(&self, pid: u32) -> PathBuf {
        match &self.socket_path {
            None => PathBuf::from(format!("/tmp/manhole-{pid}")),
            Some(path) => match path.to_str() {
                Some(text) if text.contains("{pid}") => {
                    PathBuf::from(text.replace("{pid}", &pid.to_string()))
                }
                _ => path.clone(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::environment::apply_settings;
    use super::*;
    use manhole_wire::parse_duration;

    #[test]
    fn pid_is_filled_into_the_path() {
        assert_eq!(
            Options::new().resolved_socket_path(42),
            PathBuf::from("/tmp/manhole-42")
        );
        assert_eq!(
            Options::new()
                .socket_path("/run/app/{pid}.sock")
                .resolved_socket_path(7),
            PathBuf::from("/run/app/7.sock")
        );
    }

    #[test]
    fn waits_are_bounded_where_a_session_would_hang_and_free_elsewhere() {
        assert!(Options::new()
            .idle_timeout(Duration::MAX)
            .write_timeout(Duration::MAX)
            .validate()
            .is_ok());
        assert!(deadline_after(Duration::MAX).is_none());
        for options in [
            Options::new().lock_timeout(Duration::MAX),
            Options::new().stack_timeout(Duration::from_secs(61)),
            Options::new().max_sessions(0),
            Options::new().idle_timeout(Duration::ZERO),
        ] {
            assert!(matches!(
                options.clone().validate(),
                Err(Error::InvalidOption { .. })
            ));
        }
        assert_eq!(parse_duration("1e300"), None);
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
    }

    #[test]
    fn the_environment_overrides_options() {
        let options = apply_settings(
            Options::new(),
            "socket_path=/run/x-{pid}, activate_on=USR1,verbose=no,reinstall_delay=250ms",
        )
        .unwrap()
        .unwrap();
        assert_eq!(options.resolved_socket_path(3), PathBuf::from("/run/x-3"));
        assert_eq!(options.activation, Activation::OnSignal(libc::SIGUSR1));
        assert!(!options.verbose);
        assert_eq!(options.reinstall_delay, Duration::from_millis(250));
        assert!(apply_settings(Options::new(), "off").unwrap().is_none());
        assert!(apply_settings(Options::new(), " OFF ").unwrap().is_none());
        let err = apply_settings(Options::new(), "sokcet_path=/x")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("invalid option `MANHOLE`: unknown key `sokcet_path`; expected one of: `socket_path`"), "{err}");
        let err = apply_settings(Options::new(), "verbose=maybe")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid option `MANHOLE`: verbose=\"maybe\": expected true or false"
        );
        assert!(apply_settings(Options::new(), "activate_on=USR9").is_err());
        assert!(apply_settings(Options::new(), "socket_path").is_err());
        let options = apply_settings(Options::new(), "watchdog_stacks=NONE")
            .unwrap()
            .unwrap();
        assert_eq!(options.watchdog_stacks, WatchdogStacks::None);
        let err = apply_settings(Options::new(), "watchdog_stacks=brief")
            .unwrap_err()
            .to_string();
        assert!(err.ends_with("expected short, full or none"), "{err}");
    }

    #[test]
    fn the_environment_overrides_the_activation_but_asks_for_one() {
        let options = Options::new().activate_on(libc::SIGUSR1);
        let options = apply_settings(options, "oneshot_on=USR2").unwrap().unwrap();
        assert_eq!(options.activation, Activation::OneshotOn(libc::SIGUSR2));
        let err = apply_settings(Options::new(), "activate_on=USR1,oneshot_on=USR2")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`oneshot_on` cannot be combined with `activate_on`"),
            "{err}"
        );
    }

    #[test]
    fn one_activation_at_a_time() {
        let options = Options::new().activate_on(10).oneshot_on(12);
        assert_eq!(options.activation, Activation::OneshotOn(12));
        let options = Options::new().oneshot_on(12).activate_on(10);
        assert_eq!(options.activation, Activation::OnSignal(10));
        assert_eq!(Options::new().activation, Activation::Always);
        let err = Options::new()
            .activate_on_named("USR3")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("invalid option `activate_on`: \"USR3\" is not a signal"),
            "{err}"
        );
    }

    #[test]
    fn command_timeout_comes_from_the_builder_or_the_environment() {
        assert_eq!(
            Options::new().served().waits.command,
            Duration::from_secs(60)
        );
        let options = Options::new().command_timeout(Duration::from_secs(5));
        assert_eq!(options.served().waits.command, Duration::from_secs(5));
        let options = apply_settings(options, "command_timeout=250ms")
            .unwrap()
            .unwrap();
        assert_eq!(options.served().waits.command, Duration::from_millis(250));
        assert!(apply_settings(Options::new(), "command_timeout=soon").is_err());
        let options = apply_settings(Options::new(), "slow_poll=250ms")
            .unwrap()
            .unwrap();
        assert_eq!(options.waits().slow_poll, Duration::from_millis(250));
        assert_eq!(Options::new().waits().slow_poll, DEFAULT_SLOW_POLL);
        assert!(apply_settings(Options::new(), "slow_poll=soon").is_err());
        assert!(matches!(
            Options::new().command_timeout(Duration::ZERO).validate(),
            Err(Error::InvalidOption {
                option: "command_timeout",
                ..
            })
        ));
    }

    #[test]
    fn impossible_values_are_refused() {
        assert!(matches!(
            Options::new().max_line_length(0).validate(),
            Err(Error::InvalidOption {
                option: "max_line_length",
                ..
            })
        ));
        assert!(matches!(
            Options::new().socket_path("").validate(),
            Err(Error::InvalidOption {
                option: "socket_path",
                ..
            })
        ));
    }
}
