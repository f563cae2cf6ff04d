//! A known CPU split to profile: each busy thread calls `seventy` and
//! `thirty`, which do the same work 7 and 3 times a round, so a correct
//! profiler puts 70% of the busy time under one and 30% under the other.
//!
//! ```text
//! cargo run --example profiled -- --busy 2
//! manhole-cli PID profile 5                  # the top table
//! manhole-cli PID profile 5 --format svg -o flame.svg
//! ```
//!
//! Flags: `--busy N` busy threads (default 2), `--idle N` parked threads,
//! `--sleepers` a thread asleep in `poll` and one in `nanosleep` that count
//! the calls that fail with `EINTR`, `--churn` a thread that keeps starting
//! short-lived busy threads, `--blocks-signal` a busy thread that blocks
//! every realtime signal. Lines on stdin: `fork` (forks a child that
//! exits), `uninstall`, `install`.

use std::io::BufRead;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Rounds of `seventy` and `thirty` done, by every busy thread.
#[manhole::inspect]
static ROUNDS: AtomicU64 = AtomicU64::new(0);

/// Calls of the sleepers that returned `EINTR`.
#[manhole::inspect]
static EINTR: AtomicU64 = AtomicU64::new(0);

/// Calls the sleepers made.
#[manhole::inspect]
static SLEEPS: AtomicU64 = AtomicU64::new(0);

/// Threads the churn thread started.
#[manhole::inspect]
static CHURNED: AtomicU64 = AtomicU64::new(0);

#[path = "support/split.rs"]
mod split;

use split::{crunch, seventy, thirty};

fn busy() -> ! {
    let mut value = 1;
    loop {
        value = thirty(seventy(value));
        std::hint::black_box(value);
        ROUNDS.fetch_add(1, Ordering::Relaxed);
    }
}

fn spawn(name: String, body: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name(name)
        .spawn(body)
        .expect("spawn a thread");
}

fn count_sleep(result: libc::c_int) {
    SLEEPS.fetch_add(1, Ordering::Relaxed);
    if result < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
        EINTR.fetch_add(1, Ordering::Relaxed);
    }
}

#[inline(never)]
fn asleep_in_poll() -> ! {
    loop {
        // SAFETY: no descriptors, only a timeout.
        count_sleep(unsafe { libc::poll(std::ptr::null_mut(), 0, 250) });
    }
}

#[inline(never)]
fn asleep_in_nanosleep() -> ! {
    let nap = libc::timespec {
        tv_sec: 0,
        tv_nsec: 250_000_000,
    };
    loop {
        // SAFETY: a valid timespec; the remainder is not wanted.
        count_sleep(unsafe { libc::nanosleep(&nap, std::ptr::null_mut()) });
    }
}

fn blocking_every_realtime_signal() -> ! {
    // SAFETY: a set built with sigemptyset/sigaddset, applied to this
    // thread only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in libc::SIGRTMIN()..=libc::SIGRTMAX() {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
    busy()
}

/// This thread's CPU time so far.
fn own_cpu_time() -> Duration {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    Duration::new(
        u64::try_from(now.tv_sec).unwrap_or(0),
        u32::try_from(now.tv_nsec).unwrap_or(0),
    )
}

/// Starts a thread every 50 ms that burns 100 ms of CPU and ends: always
/// a couple alive, each for about as long as the profiler takes to notice
/// a new thread, however loaded the machine.
fn churn() -> ! {
    let mut round = 0u64;
    loop {
        round += 1;
        spawn(format!("churn-{}", round % 100), || {
            let mut value = 1;
            while own_cpu_time() < Duration::from_millis(100) {
                value = crunch(value);
            }
            std::hint::black_box(value);
        });
        CHURNED.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Forks a child that exits at once, and waits for it.
fn fork_and_wait() -> String {
    // SAFETY: the child calls only async-signal-safe functions (`_exit`)
    // before it ends.
    match unsafe { libc::fork() } {
        -1 => format!("fork failed: {}", std::io::Error::last_os_error()),
        0 => {
            // SAFETY: ends the child without running the parent's exit
            // handlers.
            unsafe { libc::_exit(7) }
        }
        child => {
            let mut status = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(child, &mut status, 0) };
            format!("forked {child}, exit {}", libc::WEXITSTATUS(status))
        }
    }
}

fn install() -> Option<manhole::Handle> {
    match manhole::Options::new().install() {
        Ok(handle) => {
            println!("listening on {}", handle.socket_path().display());
            Some(handle)
        }
        Err(err) => {
            println!("error: {err}");
            None
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count = |flag: &str, default: usize| {
        args.iter()
            .position(|arg| arg == flag)
            .and_then(|at| args.get(at + 1)?.parse().ok())
            .unwrap_or(default)
    };
    let has = |flag: &str| args.iter().any(|arg| arg == flag);
    for index in 0..count("--busy", 2) {
        spawn(format!("busy-{index}"), || busy());
    }
    for index in 0..count("--idle", 0) {
        spawn(format!("idle-{index}"), || loop {
            std::thread::park();
        });
    }
    if has("--sleepers") {
        spawn("sleeper-poll".into(), || asleep_in_poll());
        spawn("sleeper-nanosleep".into(), || asleep_in_nanosleep());
    }
    if has("--churn") {
        spawn("churn".into(), || churn());
    }
    if has("--blocks-signal") {
        spawn("blocks-signal".into(), || blocking_every_realtime_signal());
    }
    let mut handle = install();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        match line.trim() {
            "fork" => println!("{}", fork_and_wait()),
            "uninstall" => {
                let stopped = handle.take().is_some_and(manhole::Handle::uninstall);
                println!("uninstalled: {stopped}");
            }
            "install" => handle = install(),
            other => println!("unknown input {other:?}; expected fork, uninstall or install"),
        }
    }
    // End of input: keep running until killed.
    loop {
        std::thread::park();
    }
}
