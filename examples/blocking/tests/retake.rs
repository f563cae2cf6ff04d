//! A thread that wakes while its stack is being copied is caught by the
//! consistency check and taken again: a dump never shows a torn stack.
//!
//! The one test of its binary, since the hook it sets is process-wide.

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

static TARGET: AtomicI32 = AtomicI32::new(0);
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
static WOKEN: AtomicBool = AtomicBool::new(false);

/// Between the copy and its check: wakes the target once, and lets it run.
fn wake_the_target_mid_copy(tid: i32) {
    if tid == TARGET.load(Ordering::SeqCst) && !WOKEN.swap(true, Ordering::SeqCst) {
        // SAFETY: writes one byte from a valid buffer to the pipe.
        unsafe { libc::write(WAKE_FD.load(Ordering::SeqCst), b"x".as_ptr().cast(), 1) };
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[inline(never)]
fn reads_a_pipe_forever(fd: i32) {
    let mut byte = 0u8;
    loop {
        // SAFETY: a valid descriptor and a one-byte buffer.
        if unsafe { libc::read(fd, (&raw mut byte).cast(), 1) } == 0 {
            return;
        }
    }
}

#[test]
fn a_thread_that_wakes_mid_copy_is_taken_again() {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    WAKE_FD.store(fds[1], Ordering::SeqCst);
    let (tid_sender, tid) = std::sync::mpsc::channel();
    let reader = std::thread::Builder::new()
        .name("pipe-reader".to_owned())
        .spawn(move || {
            tid_sender
                .send(nix_gettid())
                .expect("the test waits for the tid");
            reads_a_pipe_forever(fds[0]);
        })
        .unwrap();
    let tid = tid.recv().unwrap();
    TARGET.store(tid, Ordering::SeqCst);
    // Asleep in its read before the dump.
    let started = Instant::now();
    while !std::fs::read_to_string(format!("/proc/self/task/{tid}/stat"))
        .unwrap()
        .contains(") S ")
    {
        assert!(started.elapsed() < Duration::from_secs(10), "never blocked");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(50));

    let retakes = manhole::__private::quiet_capture_retakes();
    manhole::__private::set_quiet_capture_hook(Some(wake_the_target_mid_copy));
    let snapshot = manhole::stacks();
    manhole::__private::set_quiet_capture_hook(None);

    assert!(
        WOKEN.load(Ordering::SeqCst),
        "the hook never ran for the reader"
    );
    assert!(
        manhole::__private::quiet_capture_retakes() > retakes,
        "the copy taken while the thread ran was kept"
    );
    let thread = snapshot
        .threads
        .iter()
        .find(|thread| thread.tid == tid)
        .expect("the reader is in the dump");
    assert!(
        thread.frames.iter().any(|frame| frame
            .function
            .as_deref()
            .is_some_and(|function| function.ends_with("reads_a_pipe_forever"))),
        "{thread}"
    );
    // SAFETY: closing the write end ends the reader's loop.
    unsafe { libc::close(fds[1]) };
    reader.join().unwrap();
}

fn nix_gettid() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as i32 }
}
