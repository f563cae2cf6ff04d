//! In-process capture of every thread's stack: threads in every state,
//! threads that block the signal, churn during dumps, and `SA_RESTART`.
//!
//! The tests here share the process-wide stack signal, so they take turns.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Runs `park` on a named thread, and returns its tid once it is there.
struct Parked {
    tid: i32,
    name: String,
}

#[inline(never)]
fn parked_in_sleep(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[inline(never)]
fn parked_on_mutex(lock: &Mutex<()>) {
    drop(lock.lock());
}

#[inline(never)]
fn parked_reading_pipe(fd: i32) -> isize {
    let mut byte = [0u8; 1];
    // SAFETY: reading into a valid one-byte buffer.
    unsafe { libc::read(fd, byte.as_mut_ptr().cast(), 1) }
}

#[inline(never)]
fn parked_spinning(stop: &AtomicBool) {
    let mut spins = 0u64;
    while !stop.load(Ordering::Relaxed) {
        spins = std::hint::black_box(spins.wrapping_add(1));
    }
}

#[inline(never)]
fn block_every_signal() {
    // SAFETY: blocking every signal on this thread only.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}

/// Reads a pipe with every signal blocked (by [`block_every_signal`],
/// already): asleep in the system call until the test writes to it.
#[inline(never)]
fn parked_with_signals_blocked(fd: i32) -> isize {
    parked_reading_pipe(fd)
}

/// Spins with every signal blocked (by [`block_every_signal`], already).
#[inline(never)]
fn parked_spinning_deaf(stop: &AtomicBool) {
    parked_spinning(stop);
}

fn pipe() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: pipe writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    (fds[0], fds[1])
}

fn has_function(thread: &manhole::ThreadStack, name: &str) -> bool {
    thread
        .frames
        .iter()
        .any(|frame| frame.function.as_deref().is_some_and(|f| f.ends_with(name)))
}

#[test]
fn sixty_threads_in_every_state_are_all_reported() {
    let _turn = serial();
    let stop = Arc::new(AtomicBool::new(false));
    let lock = Arc::new(Mutex::new(()));
    let held = lock.lock().unwrap();
    let (read_end, write_end) = pipe();
    let (deaf_read_end, deaf_write_end) = pipe();
    let started = Arc::new(Barrier::new(61));
    let tids = Arc::new(Mutex::new(Vec::<Parked>::new()));
    let parking = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut handles = Vec::new();
    for index in 0..60 {
        let kind = ["sleep", "mutex", "pipe", "spin", "blocked", "deaf"][index % 6];
        let name = format!("{kind}-{index}");
        let (stop, lock, started, tids, parking) = (
            stop.clone(),
            lock.clone(),
            started.clone(),
            tids.clone(),
            parking.clone(),
        );
        let thread_name = name.clone();
        handles.push(
            std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    tids.lock().unwrap().push(Parked {
                        tid: gettid(),
                        name: thread_name,
                    });
                    started.wait();
                    if matches!(kind, "blocked" | "deaf") {
                        block_every_signal();
                    }
                    // Counted as the last step before parking, so that a
                    // loaded machine cannot dump a thread still on its way.
                    parking.fetch_add(1, Ordering::SeqCst);
                    match kind {
                        "sleep" => parked_in_sleep(&stop),
                        "mutex" => parked_on_mutex(&lock),
                        "pipe" => {
                            parked_reading_pipe(read_end);
                        }
                        "spin" => parked_spinning(&stop),
                        "deaf" => parked_spinning_deaf(&stop),
                        _ => {
                            parked_with_signals_blocked(deaf_read_end);
                        }
                    }
                })
                .unwrap(),
        );
    }
    started.wait();
    while parking.load(Ordering::SeqCst) < 60 {
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));

    let began = Instant::now();
    let snapshot = manhole::stacks();
    let took = began.elapsed();

    stop.store(true, Ordering::Relaxed);
    drop(held);
    for _ in 0..10 {
        // SAFETY: writing from valid buffers.
        unsafe {
            libc::write(write_end, b"x".as_ptr().cast(), 1);
            libc::write(deaf_write_end, b"x".as_ptr().cast(), 1);
        }
    }
    for handle in handles {
        handle.join().unwrap();
    }

    // A hang detector, not a speed test: ten blocked threads cost one
    // deadline (200 ms), not ten.
    assert!(took < Duration::from_secs(5), "the dump took {took:?}");
    let text = snapshot.to_string();
    for parked in tids.lock().unwrap().iter() {
        let thread = snapshot
            .threads
            .iter()
            .find(|thread| thread.tid == parked.tid)
            .unwrap_or_else(|| panic!("{} missing from\n{text}", parked.name));
        assert_eq!(thread.name, parked.name);
        let expected = match parked.name.split('-').next().unwrap() {
            "sleep" => "parked_in_sleep",
            "mutex" => "parked_on_mutex",
            "pipe" => "parked_reading_pipe",
            "spin" => "parked_spinning",
            // Asleep in a system call: taken from /proc, no signal needed.
            "blocked" => "parked_with_signals_blocked",
            // Running with the stack signal blocked: it cannot answer.
            _ => {
                let reason = thread.frames_missing.as_deref().unwrap_or_default();
                assert!(
                    reason.starts_with("no response: the thread blocks SIGRT")
                        && reason.ends_with("(SigBlk)"),
                    "{}: {reason:?}",
                    parked.name
                );
                assert!(thread.frames.is_empty());
                continue;
            }
        };
        assert!(thread.frames_missing.is_none(), "{thread}");
        if parked.name.starts_with("blocked") {
            assert_eq!(
                thread.captured_with,
                Some(manhole::CapturedWith::Proc),
                "{thread}"
            );
        }
        assert!(
            has_function(thread, expected),
            "{} lacks {expected}:\n{thread}",
            parked.name
        );
    }
    // Frame #0 of a sleeping thread is where it actually was, in the kernel
    // call, not in the signal handler or its trampoline.
    let sleeper = snapshot
        .threads
        .iter()
        .find(|t| t.name == "sleep-0")
        .unwrap();
    let first = sleeper.frames[0].function.as_deref().unwrap_or_default();
    assert!(
        first.contains("nanosleep"),
        "frame #0 is {first}:\n{sleeper}"
    );
    assert!(
        !text.contains("manhole::capture::dump"),
        "handler frames leaked into\n{text}"
    );
    assert!(
        !text.contains("__restore_rt"),
        "the trampoline leaked into\n{text}"
    );
}

#[test]
fn a_read_interrupted_by_a_dump_resumes_and_gets_its_data() {
    let _turn = serial();
    let (read_end, write_end) = pipe();
    let reader = std::thread::Builder::new()
        .name("pipe-reader".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            // SAFETY: reading into a valid one-byte buffer.
            let n = unsafe { libc::read(read_end, byte.as_mut_ptr().cast(), 1) };
            (n, std::io::Error::last_os_error(), byte[0])
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    for _ in 0..5 {
        let snapshot = manhole::stacks();
        let thread = snapshot
            .threads
            .iter()
            .find(|t| t.name == "pipe-reader")
            .expect("listed");
        assert!(has_function(thread, "read"), "{thread}");
    }
    // SAFETY: writing from a valid buffer.
    unsafe { libc::write(write_end, b"!".as_ptr().cast(), 1) };
    let (n, err, byte) = reader.join().unwrap();
    assert_eq!((n, byte), (1, b'!'), "read was interrupted: {err}");
}

#[inline(never)]
fn churn_allocations(stop: &AtomicBool, started: &AtomicUsize) {
    let mut kept: Vec<Vec<u8>> = Vec::new();
    let mut round = 0usize;
    // Counted from inside, so that a dump after the count finds this
    // function on the stack, not std's thread start-up.
    started.fetch_add(1, Ordering::SeqCst);
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        kept.push(vec![round as u8; 1 + round % 4096]);
        if kept.len() > 64 {
            kept.drain(..32);
        }
    }
}

#[inline(never)]
fn churn_panics(stop: &AtomicBool, caught: &AtomicUsize) {
    while !stop.load(Ordering::Relaxed) {
        if std::panic::catch_unwind(|| panic!("caught on purpose")).is_err() {
            caught.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[inline(never)]
fn short_lived() {
    std::hint::black_box(vec![0u8; 128]);
}

#[test]
fn dumps_survive_churn_and_never_mix_threads_up() {
    let _turn = serial();
    let stop = Arc::new(AtomicBool::new(false));
    let caught = Arc::new(AtomicUsize::new(0));
    // The `panics` thread's panics are expected; keep them off the output.
    let default_hook: Arc<dyn Fn(&std::panic::PanicHookInfo<'_>) + Send + Sync> =
        Arc::from(std::panic::take_hook());
    let report = default_hook.clone();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() != Some("panics") {
            report(info);
        }
    }));
    let mut workers = Vec::new();
    let started = Arc::new(AtomicUsize::new(0));
    for index in 0..2 {
        let (stop, started) = (stop.clone(), started.clone());
        workers.push(
            std::thread::Builder::new()
                .name(format!("alloc-{index}"))
                .spawn(move || churn_allocations(&stop, &started))
                .unwrap(),
        );
    }
    while started.load(Ordering::SeqCst) < 2 {
        std::thread::sleep(Duration::from_millis(1));
    }
    {
        let (stop, caught) = (stop.clone(), caught.clone());
        workers.push(
            std::thread::Builder::new()
                .name("panics".into())
                .spawn(move || churn_panics(&stop, &caught))
                .unwrap(),
        );
    }
    {
        let stop = stop.clone();
        workers.push(
            std::thread::Builder::new()
                .name("spawner".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let children: Vec<_> = (0..4)
                            .map(|_| {
                                std::thread::Builder::new()
                                    .name("ephemeral".into())
                                    .spawn(short_lived)
                                    .unwrap()
                            })
                            .collect();
                        for child in children {
                            child.join().unwrap();
                        }
                    }
                })
                .unwrap(),
        );
    }
    let began = Instant::now();
    let mut dumps = 0;
    while began.elapsed() < Duration::from_secs(3) {
        let snapshot = manhole::stacks();
        dumps += 1;
        for thread in snapshot
            .threads
            .iter()
            .filter(|thread| thread.frames_missing.is_none())
        {
            // A thread caught in std's start-up, before its closure runs,
            // shows `thread_start` (the frames are cut at the closure's
            // entry once there is one).
            let starting = thread.frames.iter().any(|frame| {
                frame
                    .function
                    .as_deref()
                    .is_some_and(|f| f.ends_with("thread_start"))
            });
            // A captured stack is always its own thread's, never another's.
            match thread.name.as_str() {
                name if name.starts_with("alloc-") => {
                    assert!(
                        starting || has_function(thread, "churn_allocations"),
                        "{thread}"
                    );
                    assert!(!has_function(thread, "churn_panics"), "{thread}");
                }
                "panics" => {
                    assert!(!has_function(thread, "churn_allocations"), "{thread}");
                    // Caught in the middle of unwinding, a thread's stack
                    // is only as good as the unwind tables at that point.
                    let unwinding = thread.frames.iter().any(|frame| {
                        frame
                            .function
                            .as_deref()
                            .is_some_and(|f| f.contains("Unwind") || f.contains("panic"))
                    });
                    assert!(
                        unwinding || starting || has_function(thread, "churn_panics"),
                        "{thread}"
                    );
                }
                _ => {}
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let _ = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| default_hook(info)));
    assert!(dumps >= 3, "only {dumps} dumps in 3 s");
    assert!(caught.load(Ordering::Relaxed) > 0);
}

#[test]
fn concurrent_dumps_take_turns() {
    let _turn = serial();
    let callers: Vec<_> = (0..4)
        .map(|index| {
            std::thread::Builder::new()
                .name(format!("dumper-{index}"))
                .spawn(move || {
                    let mut seen = 0;
                    for _ in 0..10 {
                        let snapshot = manhole::stacks();
                        let me = snapshot
                            .threads
                            .iter()
                            .find(|t| t.tid == gettid())
                            .expect("caller listed");
                        let first = me.frames[0].function.as_deref().unwrap_or_default();
                        assert!(
                            first.starts_with("stacks::concurrent_dumps_take_turns::"),
                            "{me}"
                        );
                        seen += snapshot.threads.len();
                    }
                    seen
                })
                .unwrap()
        })
        .collect();
    for caller in callers {
        assert!(caller.join().unwrap() > 0);
    }
}
