//! Six threads, each blocked in one system call in a loop, counting the
//! calls that return `EINTR`. Rust's std retries `EINTR` for you, but much
//! C code, and Rust code that calls libc directly as this does, treats it as
//! an error: a debugger that makes these calls fail changes the program.
//!
//! `get EINTR` shows the counts. Run it and dump it as often as you like:
//!
//! ```text
//! cargo run -p manhole-example-blocking
//! manhole-cli PID stacks      # as many times as you like
//! manhole-cli PID get EINTR   # still all zero
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long each call waits before it times out and is made again.
const WAIT_MS: i32 = 300;

/// Calls made, per blocking call.
static CALLS: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];
/// Calls that returned `EINTR`, per blocking call.
static INTERRUPTED: [AtomicU64; 6] = [const { AtomicU64::new(0) }; 6];

const NAMES: [&str; 6] = [
    "poll",
    "epoll_wait",
    "select",
    "nanosleep",
    "pipe_read",
    "futex",
];

/// How many calls of each kind returned `EINTR`.
#[manhole::inspect]
fn eintr() -> BTreeMap<&'static str, u64> {
    by_name(&INTERRUPTED)
}

/// How many calls of each kind were made.
#[manhole::inspect]
fn calls() -> BTreeMap<&'static str, u64> {
    by_name(&CALLS)
}

fn by_name(counts: &[AtomicU64; 6]) -> BTreeMap<&'static str, u64> {
    NAMES
        .iter()
        .zip(counts)
        .map(|(name, count)| (*name, count.load(Ordering::Relaxed)))
        .collect()
}

fn count(kind: usize, result: libc::c_long) {
    CALLS[kind].fetch_add(1, Ordering::Relaxed);
    if result < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
        INTERRUPTED[kind].fetch_add(1, Ordering::Relaxed);
    }
}

#[inline(never)]
fn blocked_in_poll() -> ! {
    loop {
        // SAFETY: no descriptors, only a timeout.
        let result = unsafe { libc::poll(std::ptr::null_mut(), 0, WAIT_MS) };
        count(0, result.into());
    }
}

#[inline(never)]
fn blocked_in_epoll_wait() -> ! {
    // SAFETY: creates a descriptor this thread owns.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0, "epoll_create1");
    let mut events = [libc::epoll_event { events: 0, u64: 0 }; 4];
    loop {
        // SAFETY: a valid epoll descriptor and event buffer.
        let result = unsafe { libc::epoll_wait(epoll, events.as_mut_ptr(), 4, WAIT_MS) };
        count(1, result.into());
    }
}

#[inline(never)]
fn blocked_in_select() -> ! {
    loop {
        let mut timeout = libc::timeval {
            tv_sec: 0,
            tv_usec: libc::suseconds_t::from(WAIT_MS) * 1000,
        };
        // SAFETY: no descriptor sets, only a timeout.
        let result = unsafe {
            libc::select(
                0,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut timeout,
            )
        };
        count(2, result.into());
    }
}

#[inline(never)]
fn blocked_in_nanosleep() -> ! {
    loop {
        let wait = libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::c_long::from(WAIT_MS) * 1_000_000,
        };
        // SAFETY: a valid duration; the remainder is not wanted.
        let result = unsafe { libc::nanosleep(&wait, std::ptr::null_mut()) };
        count(3, result.into());
    }
}

#[inline(never)]
fn blocked_reading_a_pipe() -> ! {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors; the write end is kept open and
    // never written, so the read blocks for good.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe");
    let mut byte = 0u8;
    loop {
        // SAFETY: a valid descriptor and a one-byte buffer.
        let result = unsafe { libc::read(fds[0], (&raw mut byte).cast(), 1) };
        count(4, result as libc::c_long);
    }
}

#[inline(never)]
fn blocked_on_a_futex() -> ! {
    let word = AtomicU64::new(0);
    loop {
        let wait = libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::c_long::from(WAIT_MS) * 1_000_000,
        };
        // SAFETY: a futex wait on a valid, aligned word that stays 0, with a
        // valid timeout.
        let result = unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                0,
                &wait as *const libc::timespec,
            )
        };
        count(5, result);
    }
}

#[manhole::main]
fn main() {
    let bodies: [fn() -> !; 6] = [
        blocked_in_poll,
        blocked_in_epoll_wait,
        blocked_in_select,
        blocked_in_nanosleep,
        blocked_reading_a_pipe,
        blocked_on_a_futex,
    ];
    for (name, body) in NAMES.iter().zip(bodies) {
        std::thread::Builder::new()
            .name((*name).to_owned())
            .spawn(body)
            .expect("spawn a blocked thread");
    }
    println!("blocking running as pid {}", std::process::id());
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
