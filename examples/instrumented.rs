//! Functions counted and timed with `#[manhole::inspect(calls)]`, and
//! statics written with `set`; the end-to-end tests drive it.
//!
//! ```text
//! cargo run --example instrumented
//! manhole> call drive parse_port 1000 4
//! manhole> stats --sort p99
//! manhole> set LIMIT 250
//! manhole> set SETTINGS {"mode": "fast", "retries": 5}
//! ```
//!
//! `drive FUNCTION CALLS THREADS [ARG]` calls one of the functions below
//! CALLS times on each of THREADS threads, so counts can be checked exactly.

use serde::{Deserialize, Serialize};
use std::future::Future;
use std::num::ParseIntError;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

/// Log every request; flip it with `set VERBOSE true`.
#[manhole::inspect(writable)]
static VERBOSE: AtomicBool = AtomicBool::new(false);

/// The most requests allowed in flight.
#[manhole::inspect(writable)]
static LIMIT: AtomicU64 = AtomicU64::new(100);

/// A signed knob, to show negative values.
#[manhole::inspect(writable)]
static OFFSET: AtomicI32 = AtomicI32::new(0);

/// Requests seen; read-only, so `set` refuses it.
#[manhole::inspect]
static SEEN: AtomicU64 = AtomicU64::new(0);

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    mode: String,
    retries: u32,
}

/// Tunables, replaced whole by `set SETTINGS {...}`.
#[manhole::inspect(writable)]
static SETTINGS: Mutex<Settings> = Mutex::new(Settings {
    mode: String::new(),
    retries: 3,
});

/// Upstream hosts.
#[manhole::inspect(writable)]
static UPSTREAMS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// The message of the day; plain text in, plain text out.
#[manhole::inspect(writable)]
static MOTD: RwLock<String> = RwLock::new(String::new());

/// A fast lookup, to show what counting costs nothing near.
#[manhole::inspect(calls)]
fn lookup(key: u64) -> u64 {
    SEEN.fetch_add(1, Ordering::Relaxed);
    key.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}

/// Parses a port; text that is not one is an `Err`, and counted as one.
#[manhole::inspect(calls)]
fn parse_port(text: &str) -> Result<u16, ParseIntError> {
    let port = text.trim().parse::<u16>()?;
    Ok(port)
}

/// Panics when told to; the panic still reaches the caller.
#[manhole::inspect(calls)]
fn may_panic(boom: bool) -> u32 {
    assert!(!boom, "boom on purpose");
    7
}

/// Sleeps, so that latencies are known.
#[manhole::inspect(calls)]
fn nap(millis: u64) {
    std::thread::sleep(Duration::from_millis(millis));
}

/// Open while `false`: calls of `wait_at_gate` block until it is `true`.
static GATE: (Mutex<bool>, Condvar) = (Mutex::new(false), Condvar::new());

/// Blocks until the gate opens, so that in-flight calls can be seen.
#[manhole::inspect(calls)]
fn wait_at_gate() {
    let (lock, opened) = &GATE;
    let mut open = lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    while !*open {
        open = opened
            .wait(open)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
    }
}

/// Waits `millis` without blocking a thread, then answers; timed until the
/// future completes.
#[manhole::inspect(calls)]
async fn fetch(millis: u64) -> Result<u64, String> {
    Delay::new(Duration::from_millis(millis)).await;
    Ok(millis)
}

/// A small cache, to show a counted method.
struct Cache {
    entries: Vec<u64>,
}

impl Cache {
    /// The slot for `key`, growing the cache as needed.
    #[manhole::inspect(calls, name = "cache_slot")]
    fn slot(&mut self, key: usize) -> &mut u64 {
        if self.entries.len() <= key {
            self.entries.resize(key + 1, 0);
        }
        &mut self.entries[key]
    }
}

static CACHE: Mutex<Cache> = Mutex::new(Cache {
    entries: Vec::new(),
});

/// Calls FUNCTION (lookup, parse_port, may_panic, nap, fetch, cache_slot or
/// wait_at_gate) CALLS times on each of THREADS threads, with ARG as its
/// argument; returns how many calls returned without a panic or an `Err`.
#[manhole::command]
fn drive(function: String, calls: u64, threads: usize, arg: Option<String>) -> Result<u64, String> {
    let arg = arg.unwrap_or_default();
    let one_call: fn(&str) -> bool = match function.as_str() {
        "lookup" => |arg| {
            std::hint::black_box(lookup(arg.parse().unwrap_or(1)));
            true
        },
        "parse_port" => |arg| parse_port(arg).is_ok(),
        "may_panic" => |arg| {
            let boom = arg == "true";
            std::panic::catch_unwind(|| may_panic(boom)).is_ok()
        },
        "nap" => |arg| {
            nap(arg.parse().unwrap_or(1));
            true
        },
        "fetch" => |arg| block_on(fetch(arg.parse().unwrap_or(1))).is_ok(),
        "cache_slot" => |arg| {
            let mut cache = CACHE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *cache.slot(arg.parse().unwrap_or(0)) += 1;
            true
        },
        "wait_at_gate" => |_| {
            wait_at_gate();
            true
        },
        other => return Err(format!("no function `{other}` to drive")),
    };
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let arg = arg.clone();
            std::thread::spawn(move || (0..calls).filter(|_| one_call(&arg)).count() as u64)
        })
        .collect();
    Ok(workers
        .into_iter()
        .map(|worker| worker.join().unwrap_or(0))
        .sum())
}

/// Starts THREADS threads that each call `wait_at_gate` once, in the
/// background, and returns at once.
#[manhole::command]
fn block_at_gate(threads: usize) -> usize {
    *GATE
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = false;
    for _ in 0..threads {
        std::thread::spawn(wait_at_gate);
    }
    threads
}

/// Opens the gate: every blocked `wait_at_gate` returns.
#[manhole::command]
fn open_gate() {
    let (lock, opened) = &GATE;
    *lock
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
    opened.notify_all();
}

/// Holds the SETTINGS lock for `millis`, in the background.
#[manhole::command]
fn hold_settings(millis: u64) {
    let (started_tx, started_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _settings = SETTINGS.lock();
        let _ = started_tx.send(());
        std::thread::sleep(Duration::from_millis(millis));
    });
    let _ = started_rx.recv();
}

/// A future that is ready after a delay; a helper thread wakes it.
struct Delay {
    deadline: Instant,
    waker_started: bool,
}

impl Delay {
    fn new(wait: Duration) -> Self {
        Delay {
            deadline: Instant::now() + wait,
            waker_started: false,
        }
    }
}

impl Future for Delay {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        if !self.waker_started {
            self.waker_started = true;
            let (deadline, waker) = (self.deadline, context.waker().clone());
            std::thread::spawn(move || {
                std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
                waker.wake();
            });
        }
        Poll::Pending
    }
}

/// Runs a future on this thread, parking between polls.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut context = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
        std::thread::park();
    }
}

/// Two modules, each with an `apply`: shown as `get::apply` and
/// `set::apply`, and one named explicitly, shown as written.
mod get {
    /// Applies a get.
    #[manhole::inspect(calls)]
    pub fn apply(key: &str) -> usize {
        key.len()
    }
}

mod set {
    /// Applies a set.
    #[manhole::inspect(calls)]
    pub fn apply(key: &str, value: &str) -> usize {
        key.len() + value.len()
    }

    /// Also an `apply`, named explicitly.
    #[manhole::inspect(calls, name = "set_many")]
    pub fn apply_many(keys: &[&str]) -> usize {
        keys.len()
    }
}

/// Runs `get::apply` N times and `set::apply` once.
#[manhole::command]
fn run_applies(times: u32) -> usize {
    let mut total = set::apply("k", "v") + set::apply_many(&["a"]);
    for _ in 0..times {
        total += get::apply("key");
    }
    total
}

#[manhole::main]
fn main() {
    println!("instrumented example running as pid {}", std::process::id());
    if VERBOSE.load(Ordering::Relaxed) || OFFSET.load(Ordering::Relaxed) != 0 {
        println!("verbose");
    }
    if let Ok(mut motd) = MOTD.write() {
        "welcome".clone_into(&mut motd);
    }
    // Runs until stdin closes, so a test's child never outlives it.
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}
