//! The stack signal handler never allocates, for a dump or a profile tick:
//! this test process's allocator aborts when it is called from inside the
//! handler, while other threads churn the allocator and dumps, or a CPU and
//! a wall-clock profile at 1000 Hz, run.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct AbortInsideHandler;

fn abort_if_in_handler() {
    if manhole::__private::in_stack_handler() {
        let message = b"the stack signal handler called the allocator\n";
        // SAFETY: writing a static buffer to stderr, then aborting.
        unsafe {
            libc::write(2, message.as_ptr().cast(), message.len());
            libc::abort();
        }
    }
}

// SAFETY: every call is passed to the system allocator unchanged.
unsafe impl GlobalAlloc for AbortInsideHandler {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        abort_if_in_handler();
        // SAFETY: as the caller promised.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        abort_if_in_handler();
        // SAFETY: as the caller promised.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        abort_if_in_handler();
        // SAFETY: as the caller promised.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: AbortInsideHandler = AbortInsideHandler;

#[inline(never)]
fn churn(stop: &AtomicBool) {
    let mut kept: Vec<Vec<u64>> = Vec::new();
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        kept.push(Vec::with_capacity(1 + round % 512));
        if kept.len() > 32 {
            kept.swap_remove(round % 32);
        }
    }
}

/// One test at a time: both use the process's stack signal.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn churners(stop: &Arc<AtomicBool>) -> Vec<std::thread::JoinHandle<()>> {
    (0..3)
        .map(|index| {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name(format!("churn-{index}"))
                .spawn(move || churn(&stop))
                .unwrap()
        })
        .collect()
}

#[test]
fn profiles_while_threads_churn_the_allocator() {
    let _serial = serial();
    let socket = support::scratch("profile-alloc");
    let handle = manhole::Options::new()
        .socket_path(&socket)
        .verbose(false)
        .install()
        .expect("install");
    let stop = Arc::new(AtomicBool::new(false));
    let churners = churners(&stop);
    let mut session = support::Json::connect(&socket);
    for mode in ["cpu", "wall"] {
        let profile = session.result(
            "profile",
            serde_json::json!({"seconds": 2, "hz": 1000, "mode": mode, "per_thread": true}),
        );
        let churned: u64 = profile["data"]
            .as_str()
            .unwrap()
            .lines()
            .filter(|line| line.starts_with("churn-"))
            .map(|line| line.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        // The handler ran (and did not abort) many times.
        assert!(
            churned >= 100,
            "{mode}: only {churned} samples of the churners: {profile}"
        );
    }
    stop.store(true, Ordering::Relaxed);
    for churner in churners {
        churner.join().unwrap();
    }
    assert!(handle.uninstall());
}

#[test]
fn dumps_while_threads_churn_the_allocator() {
    let _serial = serial();
    // The first dump loads the debug info, which takes long in a debug
    // build; it is not what this test is about.
    let _ = manhole::stacks();
    let stop = Arc::new(AtomicBool::new(false));
    let churners = churners(&stop);
    let began = Instant::now();
    let mut captured = 0;
    while began.elapsed() < Duration::from_secs(2) {
        let snapshot = manhole::stacks();
        captured += snapshot
            .threads
            .iter()
            .filter(|thread| thread.name.starts_with("churn-") && thread.frames_missing.is_none())
            .count();
    }
    stop.store(true, Ordering::Relaxed);
    for churner in churners {
        churner.join().unwrap();
    }
    // The handler ran (and did not abort) many times.
    assert!(captured >= 10, "only {captured} stacks captured");
}
