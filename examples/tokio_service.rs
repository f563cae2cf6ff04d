//! A tokio service whose manhole commands are `async fn`s: they run on the
//! service's own runtime, while the manhole's session waits for them.
//!
//! ```text
//! cargo run --example tokio_service --features tokio
//! echo 'call nap 2' | socat - UNIX-CONNECT:/tmp/manhole-<pid>
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// `nap` calls that have started sleeping.
#[manhole::inspect]
static NAPS_STARTED: AtomicU64 = AtomicU64::new(0);

/// `nap` futures dropped before they woke: a client that hung up, or
/// `command_timeout`.
#[manhole::inspect]
static NAPS_DROPPED: AtomicU64 = AtomicU64::new(0);

/// Open sessions, behind tokio's mutex as the async code that keeps it
/// locks it: read and written by `get`/`set` like a std lock.
#[manhole::inspect(writable)]
static SESSIONS: tokio::sync::Mutex<u64> = tokio::sync::Mutex::const_new(0);

/// Per-route limits, behind tokio's read-write lock.
#[manhole::inspect(writable)]
static LIMITS: tokio::sync::RwLock<Vec<u32>> = tokio::sync::RwLock::const_new(Vec::new());

/// Holds `SESSIONS` locked across an await for SECONDS, as a slow request
/// would.
#[manhole::command]
async fn hold_sessions(seconds: f64) -> String {
    let _held = SESSIONS.lock().await;
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    format!("held SESSIONS for {seconds} s")
}

/// Serves one request: asks the backend, then answers. Counted by `stats`,
/// and shown by `tasks` while in flight.
#[manhole::inspect(calls, args)]
async fn handle_request(id: u64) -> u64 {
    fetch_backend(id).await + 1
}

/// The backend, which never answers request 0: that request stays in
/// flight, waiting, as one stuck on a slow backend does.
#[manhole::inspect(calls, args)]
async fn fetch_backend(id: u64) -> u64 {
    let wait = if id == 0 { 3_600_000 } else { 10 };
    tokio::time::sleep(Duration::from_millis(wait)).await;
    id
}

/// A lookup whose key lives in the request itself: `inspect(calls, args)`
/// on its method shows `self`.
#[derive(Debug)]
struct Lookup {
    key: String,
}

/// A store whose `Debug` counts each time it is formatted, as a `Debug`
/// that locks would cost: `args(skip(store))` must never format it.
struct Store;

/// Times a `Store` was formatted.
#[manhole::inspect]
static STORE_FORMATTED: AtomicU64 = AtomicU64::new(0);

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        STORE_FORMATTED.fetch_add(1, Ordering::Relaxed);
        f.write_str("Store")
    }
}

impl Lookup {
    /// Finds the key in the store, for ever: it stays in flight.
    #[manhole::inspect(calls, args(skip(store)))]
    async fn find(&self, store: &Store, limit: u32) -> usize {
        let _ = (store, limit);
        std::future::pending::<()>().await;
        0
    }

    /// The same lookup shown by its key alone, as
    /// `tracing::instrument(skip_all, fields(key = self.key))` would.
    #[manhole::inspect(calls, args(skip_all, fields(key = self.key, limit = limit + 1)))]
    async fn find_by_key(&self, store: &Store, limit: u32) -> usize {
        let _ = (store, limit);
        std::future::pending::<()>().await;
        0
    }

    /// The same lookup shown with every argument: `self`, `store` and
    /// `limit`.
    #[manhole::inspect(calls, args)]
    async fn find_all_shown(&self, store: &Store, limit: u32) -> usize {
        let _ = (store, limit);
        std::future::pending::<()>().await;
        0
    }
}

/// Starts a lookup of KEY that never ends, one shown without its store and
/// one with it.
#[manhole::command]
async fn start_lookup(key: String) -> &'static str {
    let lookup = Lookup { key };
    let second = Lookup {
        key: lookup.key.clone(),
    };
    let third = Lookup {
        key: lookup.key.clone(),
    };
    tokio::spawn(async move { lookup.find(&Store, 3).await });
    tokio::spawn(async move { second.find_all_shown(&Store, 4).await });
    tokio::spawn(async move { third.find_by_key(&Store, 5).await });
    "started"
}

/// Holds its worker for MS milliseconds inside one poll, as a sync lock or
/// heavy work in `poll` does: `tasks` shows it blocking its worker.
#[manhole::inspect(calls)]
async fn compact(ms: u64) {
    tokio::task::yield_now().await;
    std::thread::sleep(Duration::from_millis(ms));
}

/// Starts `compact MS` on the runtime, and answers at once.
#[manhole::command]
async fn start_compact(ms: u64) -> &'static str {
    tokio::spawn(compact(ms));
    "started"
}

/// Counts a `nap` as dropped unless it finished.
struct Napping {
    finished: bool,
}

impl Drop for Napping {
    fn drop(&mut self) {
        if !self.finished {
            NAPS_DROPPED.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Sleeps SECONDS on the runtime's timer, then says how long it slept.
#[manhole::command]
async fn nap(seconds: f64) -> String {
    let mut napping = Napping { finished: false };
    NAPS_STARTED.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
    napping.finished = true;
    format!("slept {seconds} s")
}

/// Adds two numbers after a short await.
#[manhole::command]
async fn add_later(a: i64, b: Option<i64>) -> i64 {
    tokio::time::sleep(Duration::from_millis(10)).await;
    a + b.unwrap_or(0)
}

/// The name of the thread the command's future ran on.
#[manhole::command]
async fn ran_on() -> String {
    tokio::task::yield_now().await;
    std::thread::current().name().unwrap_or("?").to_owned()
}

/// Fails with MESSAGE after an await.
#[manhole::command]
async fn fail_later(message: String) -> Result<u32, String> {
    tokio::task::yield_now().await;
    Err(message)
}

/// Keeps its worker busy for MS milliseconds without yielding: the kind of
/// future that blocks a runtime worker, which `runtime` shows as busy time.
#[manhole::command]
async fn spin(ms: u64) -> String {
    tokio::task::yield_now().await;
    let until = std::time::Instant::now() + Duration::from_millis(ms);
    while std::time::Instant::now() < until {
        std::hint::spin_loop();
    }
    format!("spun {ms} ms")
}

/// Panics after an await.
#[manhole::command]
async fn panic_later() {
    tokio::task::yield_now().await;
    panic!("deliberate panic after an await");
}

#[manhole::main(slow_poll_ms = 100)]
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // One request stuck on the backend, and a steady trickle of others.
    tokio::spawn(handle_request(0));
    tokio::spawn(async {
        for id in 1.. {
            handle_request(id).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    println!("ready");
    std::future::pending::<()>().await;
}
