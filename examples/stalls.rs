//! A tokio service that stalls on request, for the watchdog and its tests
//! (`tests/watchdog.rs`): a poll that blocks its worker, a request stuck on
//! its backend, a heartbeat that stops, two threads deadlocked on two
//! inspected locks, and a burst of slow polls.
//!
//! ```text
//! MANHOLE=watchdog=300ms cargo run --example stalls --features tokio
//! echo 'call block_worker 1500' | socat - UNIX-CONNECT:/tmp/manhole-<pid>
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The main loop's proof of life, once `start_heartbeat` starts it.
#[manhole::inspect]
static MAIN_LOOP: manhole::Heartbeat = manhole::Heartbeat::new(Duration::from_millis(300));

static BEATING: AtomicBool = AtomicBool::new(true);

/// The first of two locks that `deadlock` takes in opposite orders.
#[manhole::inspect]
static LOCK_A: Mutex<u64> = Mutex::new(0);

/// The second.
#[manhole::inspect]
static LOCK_B: Mutex<u64> = Mutex::new(0);

/// Sleeps inside its poll: the worker that polls it can do nothing else.
#[manhole::inspect(calls)]
async fn blocking_poll(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A poll that blocks its worker for MS milliseconds, on a task of its own.
#[manhole::command]
async fn block_worker(ms: u64) -> &'static str {
    tokio::spawn(blocking_poll(ms));
    "started"
}

/// A request that waits MS milliseconds without blocking its worker, then
/// ends: stuck past `stuck_call` when MS is longer.
#[manhole::inspect(calls)]
async fn slow_request(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Starts a request that takes MS milliseconds.
#[manhole::command]
async fn start_slow_request(ms: u64) -> &'static str {
    tokio::spawn(slow_request(ms));
    "started"
}

/// COUNT polls of MS milliseconds each, one after another.
#[manhole::command]
async fn many_slow_polls(count: u64, ms: u64) -> &'static str {
    tokio::spawn(async move {
        for _ in 0..count {
            blocking_poll(ms).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    "started"
}

/// A backend that never answers.
#[manhole::inspect(calls)]
async fn fetch_backend(id: u64) -> u64 {
    std::future::pending::<()>().await;
    id
}

/// A request that awaits its backend for ever.
#[manhole::inspect(calls, args)]
async fn handle(id: u64) -> u64 {
    fetch_backend(id).await
}

/// Starts request ID, which gets stuck.
#[manhole::command]
async fn stuck_request(id: u64) -> &'static str {
    tokio::spawn(handle(id));
    "started"
}

/// The inner step of a sync job, which takes its time.
#[manhole::inspect(calls)]
fn sync_inner(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A sync job that calls its inner step.
#[manhole::inspect(calls)]
fn sync_step(ms: u64) {
    sync_inner(ms);
}

/// Runs `sync_step` for MS milliseconds on a thread of its own.
#[manhole::command]
fn start_sync_job(ms: u64) -> &'static str {
    std::thread::Builder::new()
        .name("sync-worker".to_owned())
        .spawn(move || sync_step(ms))
        .unwrap();
    "started"
}

#[inline(never)]
fn stopped_beating() {
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Starts the main loop, which beats every 50 ms until `stop_heartbeat`.
#[manhole::command]
fn start_heartbeat() -> &'static str {
    std::thread::Builder::new()
        .name("main-loop".to_owned())
        .spawn(|| {
            while BEATING.load(Ordering::Relaxed) {
                MAIN_LOOP.beat();
                std::thread::sleep(Duration::from_millis(50));
            }
            stopped_beating();
        })
        .unwrap();
    "beating"
}

/// Stops the main loop's heartbeat; its thread stays, asleep.
#[manhole::command]
fn stop_heartbeat() -> &'static str {
    BEATING.store(false, Ordering::Relaxed);
    "stopped"
}

#[inline(never)]
fn take_in_order(name: &str, first: &'static Mutex<u64>, second: &'static Mutex<u64>) {
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _first = first.lock().unwrap();
            std::thread::sleep(Duration::from_millis(200));
            let _second = second.lock().unwrap();
        })
        .unwrap();
}

/// Two threads that take LOCK_A and LOCK_B in opposite orders, and wait on
/// each other for good.
#[manhole::command]
fn deadlock() -> &'static str {
    take_in_order("locker-ab", &LOCK_A, &LOCK_B);
    take_in_order("locker-ba", &LOCK_B, &LOCK_A);
    "deadlocked"
}

#[manhole::main]
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `STALLS_IDLE_THREADS=N`: N more threads that sleep for good, as a
    // large service's pools do, for the watchdog to look past.
    let idle: usize = std::env::var("STALLS_IDLE_THREADS")
        .ok()
        .and_then(|count| count.parse().ok())
        .unwrap_or(0);
    for _ in 0..idle {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| loop {
                std::thread::park();
            })
            .expect("an idle thread");
    }
    println!("ready");
    std::future::pending::<()>().await;
}
