//! A small fake service with a manhole: run it, then connect.
//!
//! ```text
//! cargo run --example service
//! socat readline UNIX-CONNECT:/tmp/manhole-<pid>     # or: nc -U /tmp/manhole-<pid>
//! echo 'call add 40 2' | socat - UNIX-CONNECT:/tmp/manhole-<pid>
//! ```
//!
//! It shows all three attributes: counters and state under
//! `#[manhole::inspect]`, commands under `#[manhole::command]`, and
//! `#[manhole::main]`, plus a command that lives in a library crate
//! (`plugin_status`, from `examples/plugin`).

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Requests handled since start.
#[manhole::inspect]
static REQUESTS: AtomicU64 = AtomicU64::new(0);

/// The configuration in force; `set CONFIG {...}` replaces it whole.
#[manhole::inspect(writable)]
static CONFIG: Mutex<Config> = Mutex::new(Config {
    version: 1,
    log_level: LogLevel::Info,
    workers: 2,
});

/// Requests waiting for a worker.
static QUEUE: Mutex<VecDeque<u64>> = Mutex::new(VecDeque::new());

/// Set by the `shutdown` command; `main` returns when it is.
static STOPPING: AtomicBool = AtomicBool::new(false);

/// While `true`, workers take no requests: `set PAUSED true`.
#[manhole::inspect(writable)]
static PAUSED: AtomicBool = AtomicBool::new(false);

/// While `true`, the `burner` thread spins on a core: `set BURN true`,
/// then `top` shows it hot.
#[manhole::inspect(writable)]
static BURN: AtomicBool = AtomicBool::new(false);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Config {
    version: u32,
    log_level: LogLevel,
    workers: usize,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
}

impl FromStr for LogLevel {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "error" => Ok(LogLevel::Error),
            "warn" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            other => Err(format!(
                "unknown level {other:?}; expected error, warn, info or debug"
            )),
        }
    }
}

/// Requests waiting for a worker, computed when read.
#[manhole::inspect]
fn queue_depth() -> usize {
    QUEUE.lock().map_or(0, |queue| queue.len())
}

/// Reload the configuration from disk.
///
/// `hold_ms` keeps the configuration locked for that long, as a slow disk
/// would; meanwhile `get CONFIG` reports the lock as held instead of hanging.
#[manhole::command]
fn reload_config(hold_ms: Option<u64>) -> Result<String, std::io::Error> {
    let mut config = CONFIG
        .lock()
        .map_err(|_| std::io::Error::other("config lock poisoned"))?;
    std::thread::sleep(Duration::from_millis(hold_ms.unwrap_or(0)));
    config.version += 1;
    Ok(format!(
        "reloaded configuration, now version {}",
        config.version
    ))
}

/// A report of `rows` rows, produced as it is serialised: holding it costs
/// nothing, however long it is.
struct Report {
    rows: u64,
}

impl serde::Serialize for Report {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq as _;
        let mut rows = serializer.serialize_seq(Some(self.rows as usize))?;
        for id in 0..self.rows {
            rows.serialize_element(&serde_json::json!({
                "id": id,
                "name": format!("row {id}"),
                "value": id * 3,
            }))?;
        }
        rows.end()
    }
}

/// A report of `rows` rows (about 40 bytes of JSON each), made as it is
/// sent: for trying replies larger than `max_reply_bytes`.
#[manhole::command]
fn lazy_report(rows: u64) -> Report {
    Report { rows }
}

/// Add two numbers.
#[manhole::command]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

/// Divide `a` by `b`; dividing by zero is an error.
#[manhole::command]
fn divide(a: f64, b: f64) -> Result<f64, String> {
    if b == 0.0 {
        Err(format!("cannot divide {a} by zero"))
    } else {
        Ok(a / b)
    }
}

/// Change the log level: error, warn, info or debug.
#[manhole::command]
fn set_log_level(level: LogLevel) -> String {
    let mut config = CONFIG
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    config.log_level = level;
    format!("log level is now {level:?}")
}

/// Echo the words back, to try quoting: `call echo 'two words' three`.
#[manhole::command]
fn echo(first: String, second: Option<String>) -> Vec<String> {
    std::iter::once(first).chain(second).collect()
}

#[derive(Serialize)]
struct LoadRow {
    minute: usize,
    requests: u64,
    p99_ms: f64,
}

/// A synthetic per-minute load report with `rows` rows, for trying large
/// answers.
#[manhole::command]
fn load_report(rows: usize) -> Vec<LoadRow> {
    (0..rows)
        .map(|minute| LoadRow {
            minute,
            requests: (minute as u64 * 7919) % 1000,
            p99_ms: (minute % 97) as f64 / 4.0,
        })
        .collect()
}

/// Panic on purpose, to show that a panicking command is an error reply and
/// the service lives on.
#[manhole::command(name = "panic")]
fn panic_on_purpose(message: Option<String>) {
    panic!(
        "{}",
        message.unwrap_or_else(|| "panicked on purpose".to_owned())
    );
}

/// Stop the service: `main` returns, and the manhole removes its socket.
#[manhole::command]
fn shutdown() -> &'static str {
    STOPPING.store(true, Ordering::SeqCst);
    "stopping"
}

/// Handles one request: a millisecond or two of work, and every 25th
/// request fails. `stats` shows its calls, errors and latencies.
#[manhole::inspect(calls)]
fn handle_request(id: u64) -> Result<u64, String> {
    std::thread::sleep(Duration::from_micros(500 + (id * 7919) % 1500));
    if id % 25 == 24 {
        return Err(format!("request {id} failed"));
    }
    REQUESTS.fetch_add(1, Ordering::Relaxed);
    Ok(id)
}

fn worker() {
    while !STOPPING.load(Ordering::Relaxed) {
        let next = if PAUSED.load(Ordering::Relaxed) {
            None
        } else {
            QUEUE.lock().ok().and_then(|mut queue| queue.pop_front())
        };
        if let Some(id) = next {
            let _ = handle_request(id);
            manhole_example_plugin::start();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Spins while `BURN` is set, naps otherwise.
fn burner() {
    while !STOPPING.load(Ordering::Relaxed) {
        if BURN.load(Ordering::Relaxed) {
            let until = std::time::Instant::now() + Duration::from_millis(50);
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        } else {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[manhole::main]
fn main() {
    let pid = std::process::id();
    let burner = std::thread::Builder::new()
        .name("burner".to_owned())
        .spawn(burner)
        .expect("spawn the burner");
    let workers: Vec<_> = (0..2)
        .map(|index| {
            std::thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(worker)
                .expect("spawn a worker")
        })
        .collect();
    // `SERVICE_IDLE_THREADS=N` adds N threads parked for good, as a large
    // thread pool would be: the tests and benchmarks of big dumps use it.
    let idle: usize = std::env::var("SERVICE_IDLE_THREADS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    for index in 0..idle {
        let _ = std::thread::Builder::new()
            .name(format!("idle-{index}"))
            .spawn(|| loop {
                std::thread::park();
            });
    }
    println!("service running as pid {pid}; connect with one of:");
    println!("  socat readline UNIX-CONNECT:/tmp/manhole-{pid}");
    println!("  nc -U /tmp/manhole-{pid}");
    println!("  echo 'call add 40 2' | socat - UNIX-CONNECT:/tmp/manhole-{pid}");
    let mut next_request = 0u64;
    while !STOPPING.load(Ordering::SeqCst) {
        if let Ok(mut queue) = QUEUE.lock() {
            queue.push_back(next_request);
            next_request += 1;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    for worker in workers.into_iter().chain([burner]) {
        let _ = worker.join();
    }
    println!("service stopped");
}
