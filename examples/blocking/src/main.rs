//! Eight threads, each blocked in one system call in a loop, counting the
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
static CALLS: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];
/// Calls that returned `EINTR`, per blocking call.
static INTERRUPTED: [AtomicU64; KINDS] = [const { AtomicU64::new(0) }; KINDS];

const KINDS: usize = 8;

const NAMES: [&str; KINDS] = [
    "poll",
    "epoll_wait",
    "select",
    "nanosleep",
    "pipe_read",
    "futex",
    "accept",
    "recv",
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

fn by_name(counts: &[AtomicU64; KINDS]) -> BTreeMap<&'static str, u64> {
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

#[inline(never)]
fn blocked_in_accept() -> ! {
    // A listening socket under an abstract name (no file), which nobody
    // connects to.
    // SAFETY: creates a socket this thread owns.
    let listening =
        unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(listening >= 0, "socket");
    // SAFETY: a zeroed sockaddr_un is valid; the name is written within it.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let name = format!("manhole-blocking-{}", std::process::id());
    for (slot, byte) in address.sun_path[1..].iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    let length = std::mem::size_of::<libc::sa_family_t>() + 1 + name.len();
    // SAFETY: a valid socket and address of the length given.
    let bound = unsafe {
        libc::bind(
            listening,
            (&raw const address).cast(),
            length as libc::socklen_t,
        )
    };
    assert_eq!(bound, 0, "bind");
    // SAFETY: a bound socket.
    assert_eq!(unsafe { libc::listen(listening, 1) }, 0, "listen");
    loop {
        // SAFETY: a listening socket; the peer's address is not wanted.
        let result = unsafe { libc::accept(listening, std::ptr::null_mut(), std::ptr::null_mut()) };
        count(6, result.into());
    }
}

#[inline(never)]
fn blocked_in_recv() -> ! {
    let mut pair = [0; 2];
    // SAFETY: socketpair writes two descriptors; the other end is kept
    // open and never written, so the receive blocks for good.
    let made = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    };
    assert_eq!(made, 0, "socketpair");
    let mut byte = 0u8;
    loop {
        // SAFETY: a valid socket and a one-byte buffer.
        let result = unsafe { libc::recv(pair[0], (&raw mut byte).cast(), 1, 0) };
        count(7, result as libc::c_long);
    }
}

#[manhole::main]
fn main() {
    let bodies: [fn() -> !; KINDS] = [
        blocked_in_poll,
        blocked_in_epoll_wait,
        blocked_in_select,
        blocked_in_nanosleep,
        blocked_reading_a_pipe,
        blocked_on_a_futex,
        blocked_in_accept,
        blocked_in_recv,
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
