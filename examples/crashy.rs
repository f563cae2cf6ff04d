//! Dies on purpose, in the way its first argument names, so that the crash
//! report tests (`tests/crash.rs`) can read what it leaves behind.
//!
//! ```text
//! cargo run --example crashy -- null
//! ```
//!
//! It starts two named threads that sleep, installs the manhole, prints
//! `ready PID` and waits for a line on stdin before it crashes (a test
//! plants a symlink at the report's name in between). Modes: `null`,
//! `bus`, `ill`, `fpe`, `abort`, `c-panic`, `overflow-main`,
//! `overflow-thread`, `two-threads`, `allocator-lock`, `during-dump`,
//! `threads-1000`, `previous-handler`; `panic-thread`, which only
//! panics in a thread of its own and stays up; and `big-lock`, which
//! stays up with a large inspected `Mutex` its own thread takes often.
//!
//! Three modes stand in for an attacker's victim and tool instead:
//! `main-ran` says so and exits; `victim` prints `victim PID ADDRESS` (of
//! a word that stays 0), watches whether anything traces it, and prints
//! `traced N, word W` when stdin ends;
//! `forge-helper [EXE [UID]]` starts EXE (itself by default; as UID, when
//! given) with a forged `MANHOLE_CRASH_HELPER` naming itself as the crashed
//! parent, and prints what came of it. With `CRASHY_CONSTRUCTOR_LOG` set,
//! a constructor of its own appends a line to that file at every start.
//!
//! Its global allocator takes a spin lock of its own around the system's,
//! so that `allocator-lock` can crash while that lock is held: anything
//! that allocated after the crash would spin for ever.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

struct SpinLocked;

static ALLOCATOR_LOCK: AtomicBool = AtomicBool::new(false);

fn take_allocator_lock() {
    while ALLOCATOR_LOCK
        .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
        .is_err()
    {
        std::hint::spin_loop();
    }
}

/// The lock is held across `fork` and let go on both sides, as glibc's
/// malloc does with its own: otherwise a fork while another thread
/// allocates (the manhole's thread takes a point every second) leaves the
/// child's lock held for good, and the first allocation after the fork
/// (the manhole's own fork handler) spins for ever. Registered on the
/// first allocation, before main, so that the child's side runs before any
/// handler registered later allocates.
fn fork_safe() {
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    extern "C" fn release() {
        ALLOCATOR_LOCK.store(false, Ordering::Release);
    }
    extern "C" fn hold() {
        take_allocator_lock();
    }
    if !REGISTERED.swap(true, Ordering::AcqRel) {
        // SAFETY: three plain functions that touch only an atomic.
        unsafe { libc::pthread_atfork(Some(hold), Some(release), Some(release)) };
    }
}

// SAFETY: forwards to the system allocator under a lock of its own.
unsafe impl GlobalAlloc for SpinLocked {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        fork_safe();
        take_allocator_lock();
        // SAFETY: as the caller promises.
        let block = unsafe { System.alloc(layout) };
        ALLOCATOR_LOCK.store(false, Ordering::Release);
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        take_allocator_lock();
        // SAFETY: as the caller promises.
        unsafe { System.dealloc(block, layout) };
        ALLOCATOR_LOCK.store(false, Ordering::Release);
    }
}

#[global_allocator]
static GLOBAL: SpinLocked = SpinLocked;

#[inline(never)]
fn write_through_null() {
    // SAFETY: not safe at all: this is the crash.
    unsafe { black_box(std::ptr::null_mut::<u64>()).write_volatile(7) };
}

#[inline(never)]
fn read_past_a_truncated_file() {
    let path = std::env::temp_dir().join(format!("crashy-bus-{}", std::process::id()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    file.set_len(8192).unwrap();
    // SAFETY: maps the file just made; the read below is meant to fault.
    unsafe {
        let map = libc::mmap(
            std::ptr::null_mut(),
            8192,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(&file),
            0,
        );
        assert_ne!(map, libc::MAP_FAILED);
        file.set_len(0).unwrap();
        let _ = std::fs::remove_file(&path);
        black_box(std::ptr::read_volatile(map.cast::<u8>().add(4096)));
    }
}

#[inline(never)]
fn execute_an_invalid_instruction() {
    // SAFETY: not safe at all: this is the crash.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!("ud2")
    };
    #[cfg(target_arch = "aarch64")]
    unsafe {
        std::arch::asm!("udf #0")
    };
}

#[inline(never)]
fn divide_by_zero() {
    let zero: u32 = black_box(0);
    // SAFETY: not safe at all: this is the crash.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::asm!(
            "div {zero:e}",
            zero = in(reg) zero,
            inout("eax") 1u32 => _,
            inout("edx") 0u32 => _,
        )
    };
    // aarch64 divides by zero without a trap.
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = zero;
        // SAFETY: raises the signal the hardware would.
        unsafe { libc::raise(libc::SIGFPE) };
    }
}

#[inline(never)]
fn panicking_function(request: u64) {
    panic!("request {request} went wrong");
}

extern "C" fn panic_across_c() {
    panic!("no unwinding out of here");
}

#[inline(never)]
fn recurse_for_ever(depth: u64) -> u64 {
    let frame = black_box([depth; 64]);
    // Never false; the compiler cannot tell.
    if black_box(depth) == u64::MAX {
        return 0;
    }
    recurse_for_ever(depth + 1) + frame[black_box(3)]
}

#[inline(never)]
fn crash_holding_the_allocator_lock() {
    take_allocator_lock();
    write_through_null();
}

/// Starts a thread that sleeps for good, and returns once it runs (and so
/// has its name).
fn sleeper(name: &str) {
    let (started, running) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = started.send(());
            loop {
                std::thread::sleep(Duration::from_secs(60));
            }
        })
        .unwrap();
    let _ = running.recv();
}

/// Sets a SIGSEGV handler of the program's own, which says that it ran:
/// a SIGSEGV someone sent is survived, and a real fault gets the default
/// action back.
fn install_own_handler() {
    extern "C" fn own(
        _signal: libc::c_int,
        info: *mut libc::siginfo_t,
        _context: *mut libc::c_void,
    ) {
        // SAFETY: the kernel's siginfo; write and signal are
        // async-signal-safe.
        unsafe {
            if (*info).si_code <= 0 {
                let text = b"crashy: survived a SIGSEGV that was sent\n";
                libc::write(2, text.as_ptr().cast(), text.len());
                return;
            }
            let text = b"crashy: the program's own SIGSEGV handler ran\n";
            libc::write(2, text.as_ptr().cast(), text.len());
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        }
    }
    // SAFETY: installs a three-argument handler with an empty mask.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = own as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigaction(libc::SIGSEGV, &action, std::ptr::null_mut());
    }
}

/// Ends the process from inside a command, before it answers: what a
/// client sees of a process that dies while answering.
#[manhole::command]
fn exit_while_answering() -> u64 {
    std::process::exit(7)
}

/// A constructor of the program's own, as C and C++ libraries have: it
/// must run once per start, never again in the crash symboliser.
#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = log_constructor;

extern "C" fn log_constructor() {
    if let Some(path) = std::env::var_os("CRASHY_CONSTRUCTOR_LOG") {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(file, "constructor ran in {}", std::process::id());
        }
    }
}

/// Whether anything traces this process, looked at every half millisecond
/// from a thread of its own; the highest tracer PID seen. The thread never
/// allocates: this program's allocator is a spin lock, which a fork taken
/// while the thread held it would leave held for good in the child.
fn watch_for_tracers() -> std::sync::Arc<std::sync::atomic::AtomicI64> {
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let kept = seen.clone();
    std::thread::Builder::new()
        .name("tracer-watch".to_owned())
        .spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                kept.fetch_max(tracer_pid(&mut buffer), Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(500));
            }
        })
        .unwrap();
    seen
}

/// `TracerPid:` of `/proc/self/status`, read with raw calls into `buffer`.
fn tracer_pid(buffer: &mut [u8]) -> i64 {
    // SAFETY: open, read and close on a constant path into `buffer`.
    let read = unsafe {
        let fd = libc::open(
            c"/proc/self/status".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return 0;
        }
        let read = libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len());
        libc::close(fd);
        read
    };
    let Ok(read) = usize::try_from(read) else {
        return 0;
    };
    let text = std::str::from_utf8(&buffer[..read]).unwrap_or("");
    text.lines()
        .find_map(|line| line.strip_prefix("TracerPid:"))
        .and_then(|pid| pid.trim().parse::<i64>().ok())
        .unwrap_or(0)
}

/// Starts `exe` as a crash symboliser of this process, as an attacker
/// would: the right numbers, but a secret it cannot know.
fn forge_helper(exe: &str, uid: Option<u32>) {
    use std::os::unix::process::CommandExt as _;
    let traced = watch_for_tracers();
    let scratch = std::fs::File::open("/proc/self/exe").unwrap();
    let scratch = std::os::fd::AsRawFd::as_raw_fd(&scratch);
    let me = std::process::id();
    // Started as a dying process starts its helper (that `argv[0]`), and
    // as any program is.
    for (label, argv0) in [
        ("forged as helper", Some("manhole-crash-symboliser")),
        ("forged", None),
    ] {
        let mut pipe = [0; 2];
        // SAFETY: pipe fills two descriptors, inherited by the child.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        // SAFETY: writes 16 bytes from a local array.
        unsafe { libc::write(pipe[1], [0x5a_u8; 16].as_ptr().cast(), 16) };
        let mut command = std::process::Command::new(exe);
        command.arg("main-ran").env(
            "MANHOLE_CRASH_HELPER",
            format!("{me} {me} {scratch} -1 {}", pipe[0]),
        );
        if let Some(argv0) = argv0 {
            command.arg0(argv0);
        }
        if let Some(uid) = uid {
            command.uid(uid).gid(uid);
        }
        let output = command.output().unwrap();
        // SAFETY: our own descriptors.
        unsafe {
            libc::close(pipe[0]);
            libc::close(pipe[1]);
        }
        std::thread::sleep(Duration::from_millis(20));
        println!(
            "{label}: status {:?}, traced {}, stdout {:?}, stderr {:?}",
            output.status.code(),
            traced.load(Ordering::Relaxed),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

/// A large value behind a lock, for a client that reads its reply slowly
/// (mode `big-lock`).
#[manhole::inspect]
static BIG: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// The longest the program's own `locker` thread waited for [`BIG`], in
/// microseconds.
static LONGEST_WAIT_US: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The longest wait of the program's own code for `BIG`, in microseconds,
/// since the last time this was asked.
#[manhole::command]
fn longest_wait_us() -> u64 {
    LONGEST_WAIT_US.swap(0, Ordering::Relaxed)
}

/// Fills [`BIG`] with 4 MB and takes its lock every 5 ms from a thread of
/// its own, timing each wait.
fn lock_big_often() {
    *BIG.lock().unwrap() = (0..40_000).map(|row| format!("{row:0>100}")).collect();
    std::thread::Builder::new()
        .name("locker".to_owned())
        .spawn(|| loop {
            let began = std::time::Instant::now();
            let guard = BIG.lock().unwrap();
            let waited = began.elapsed().as_micros() as u64;
            drop(guard);
            LONGEST_WAIT_US.fetch_max(waited, Ordering::Relaxed);
            std::thread::sleep(Duration::from_millis(5));
        })
        .unwrap();
}

/// Makes the process non-dumpable, as a set-user-ID program is: then only
/// a peer with `CAP_SYS_PTRACE` may connect.
#[manhole::command]
fn become_undumpable() -> i32 {
    // SAFETY: prctl(PR_SET_DUMPABLE) takes no pointer.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) }
}

/// A millisecond of arithmetic, counted: the burst before a crash.
#[manhole::inspect(calls)]
fn burst_step() -> u64 {
    let began = std::time::Instant::now();
    let mut sum = 0u64;
    while began.elapsed() < std::time::Duration::from_millis(1) {
        sum = std::hint::black_box(sum.wrapping_mul(31).wrapping_add(7));
    }
    sum
}

#[manhole::main]
fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "main-ran" => {
            // SAFETY: getauxval cannot fail.
            let secure = unsafe { libc::getauxval(libc::AT_SECURE) };
            let variable = std::env::var_os("MANHOLE_CRASH_HELPER").is_some();
            println!("crashy: main ran; AT_SECURE {secure}; variable seen {variable}");
            return;
        }
        "victim" => {
            /// A word an attacker would write 1 into, as the old helper did.
            static WORD: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let traced = watch_for_tracers();
            println!("victim {} {:p}", std::process::id(), &WORD);
            let mut line = String::new();
            let _ = std::io::stdin().lock().read_line(&mut line);
            println!(
                "traced {}, word {}",
                traced.load(Ordering::Relaxed),
                WORD.load(Ordering::Relaxed)
            );
            return;
        }
        "forge-helper" => {
            let exe = std::env::args()
                .nth(2)
                .unwrap_or_else(|| "/proc/self/exe".to_owned());
            let uid = std::env::args().nth(3).and_then(|uid| uid.parse().ok());
            forge_helper(&exe, uid);
            return;
        }
        _ => {}
    }
    sleeper("sleeper-a");
    sleeper("sleeper-b");
    if mode == "previous-handler" {
        manhole::uninstall();
        install_own_handler();
        manhole::Options::new().install().unwrap();
    }
    if mode == "panic-thread" {
        // A panic that ends its thread and not the process.
        let ended = std::thread::Builder::new()
            .name("panicky".to_owned())
            .spawn(|| panicking_function(7))
            .unwrap()
            .join();
        assert!(ended.is_err());
    }
    if mode == "big-lock" {
        lock_big_often();
    }
    if mode == "threads-1000" {
        for index in 0..998 {
            sleeper(&format!("idle-{index}"));
        }
    }
    println!("ready {}", std::process::id());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    match mode.as_str() {
        "null" | "previous-handler" | "threads-1000" => write_through_null(),
        "bus" => read_past_a_truncated_file(),
        "ill" => execute_an_invalid_instruction(),
        "fpe" => divide_by_zero(),
        "abort" => std::process::abort(),
        "c-panic" => panic_across_c(),
        "overflow-main" => {
            black_box(recurse_for_ever(0));
        }
        "overflow-thread" => {
            std::thread::Builder::new()
                .name("deep".to_owned())
                .spawn(|| black_box(recurse_for_ever(0)))
                .unwrap()
                .join()
                .unwrap();
        }
        "two-threads" => {
            let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
            let threads: Vec<_> = (0..2)
                .map(|index| {
                    let barrier = barrier.clone();
                    std::thread::Builder::new()
                        .name(format!("crasher-{index}"))
                        .spawn(move || {
                            barrier.wait();
                            write_through_null();
                        })
                        .unwrap()
                })
                .collect();
            for thread in threads {
                let _ = thread.join();
            }
        }
        "allocator-lock" => crash_holding_the_allocator_lock(),
        "after-a-burst" => {
            // Two seconds of CPU in a counted function, then a second and a
            // half of rest, then the crash: the report's last minute shows
            // the burst.
            let began = std::time::Instant::now();
            while began.elapsed() < std::time::Duration::from_secs(2) {
                burst_step();
            }
            std::thread::sleep(std::time::Duration::from_millis(1500));
            write_through_null();
        }
        "panic-thread" | "big-lock" => {
            // Stays up to be asked about it; the test ends it.
            std::thread::sleep(Duration::from_secs(600));
        }
        "during-dump" => {
            std::thread::Builder::new()
                .name("dumper".to_owned())
                .spawn(|| loop {
                    black_box(manhole::stacks());
                })
                .unwrap();
            std::thread::sleep(Duration::from_millis(200));
            write_through_null();
        }
        other => {
            eprintln!("crashy: unknown mode {other:?}");
            std::process::exit(2);
        }
    }
    eprintln!("crashy: still alive after {mode:?}");
    std::process::exit(3);
}
