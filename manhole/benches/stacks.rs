//! How long a full stack dump takes, symbolised, with 10, 100 and 1000 idle
//! threads; how long the very first dump of a fresh process takes; and, for
//! comparison on the same kind of process, `eu-stack -p` and
//! `gdb -batch -ex 'thread apply all bt'` when they are installed.
//!
//! It also times the same 1000-thread dump asked for over the manhole's
//! socket in JSON, side by side with the in-process one, and counts the
//! `EINTR` that each tool's dumps cause in a process whose threads loop on
//! `poll` and `nanosleep`.
//!
//! Run with `cargo bench -p manhole --bench stacks`. Times are medians of
//! several runs in one invocation, so that the figures compare side by side
//! on a noisy machine.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Where every idle thread waits: the dump must show this function.
#[inline(never)]
fn parked_idle(gate: &(Mutex<bool>, Condvar)) {
    let (open, wake) = gate;
    let mut open = open.lock().unwrap();
    while !*open {
        open = wake.wait(open).unwrap();
    }
}

struct Idle {
    gate: Arc<(Mutex<bool>, Condvar)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Idle {
    fn start(count: usize) -> Idle {
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let ready = Arc::new(Barrier::new(count + 1));
        let threads = (0..count)
            .map(|index| {
                let (gate, ready) = (gate.clone(), ready.clone());
                std::thread::Builder::new()
                    .name(format!("idle-{index}"))
                    .stack_size(64 * 1024)
                    .spawn(move || {
                        ready.wait();
                        parked_idle(&gate);
                    })
                    .unwrap()
            })
            .collect();
        ready.wait();
        // Let every thread reach its wait.
        std::thread::sleep(Duration::from_millis(100 + count as u64));
        Idle { gate, threads }
    }

    fn stop(self) {
        *self.gate.0.lock().unwrap() = true;
        self.gate.1.notify_all();
        for thread in self.threads {
            thread.join().unwrap();
        }
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1e3)
}

/// Times dumps of this process with `count` idle threads.
/// The median time of `runs` dumps of `count` idle threads, and how many
/// threads the last one took without a signal.
fn dumps(count: usize, runs: usize) -> (Duration, usize) {
    let idle = Idle::start(count);
    let mut quiet = 0;
    for _ in 0..3 {
        let _ = manhole::stacks();
    }
    let mut samples = Vec::new();
    for _ in 0..runs {
        let began = Instant::now();
        let snapshot = manhole::stacks();
        samples.push(began.elapsed());
        let parked = snapshot
            .threads
            .iter()
            .filter(|thread| {
                thread.frames.iter().any(|frame| {
                    frame
                        .function
                        .as_deref()
                        .is_some_and(|f| f.ends_with("parked_idle"))
                })
            })
            .count();
        assert_eq!(
            parked, count,
            "every idle thread shows parked_idle:\n{snapshot}"
        );
        quiet = snapshot
            .threads
            .iter()
            .filter(|thread| thread.captured_with == Some(manhole::CapturedWith::Proc))
            .count();
    }
    idle.stop();
    (median(samples), quiet)
}

extern "C" fn ignore_signal(_: libc::c_int) {}

/// The kernel's share of a dump of `count` idle threads, measured on its
/// own: waking each thread with a signal whose handler does nothing, and
/// reading each thread's `/proc` stat. No in-process dump can be faster
/// than their sum on one core.
fn kernel_floor(count: usize) -> (Duration, Duration) {
    let signal = libc::SIGRTMIN() + 1;
    // SAFETY: installs a handler that does nothing on a signal nothing else
    // in this benchmark uses.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigaction(signal, &action, std::ptr::null_mut());
    }
    let idle = Idle::start(count);
    let me = nix::unistd::gettid().as_raw();
    let tids: Vec<i32> = std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&tid| tid != me)
        .collect();
    let pid = std::process::id();
    let (mut wakes, mut stats) = (Vec::new(), Vec::new());
    for _ in 0..11 {
        let began = Instant::now();
        for &tid in &tids {
            // SAFETY: signals a thread of this process with a no-op handler.
            unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) };
        }
        wakes.push(began.elapsed());
        std::thread::sleep(Duration::from_millis(20));
        let began = Instant::now();
        for &tid in &tids {
            let _ = std::fs::read(format!("/proc/self/task/{tid}/stat"));
        }
        stats.push(began.elapsed());
    }
    idle.stop();
    (median(wakes), median(stats))
}

/// Re-runs this binary in `mode`, which prints one line and waits for
/// stdin to close.
fn child(mode: &str, count: usize) -> (std::process::Child, String) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([mode, &count.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    (child, line.trim().to_owned())
}

fn finish(mut child: std::process::Child) {
    drop(child.stdin.take());
    let _ = child.wait();
}

/// In a fresh process: the first dump, which installs the handler, reads
/// the unwind tables and loads the debug info.
fn first_dump_child(count: usize) {
    let idle = Idle::start(count);
    let began = Instant::now();
    let snapshot = manhole::stacks();
    let took = began.elapsed();
    assert!(snapshot.threads.len() > count);
    println!("{}", took.as_nanos());
    let _ = std::io::stdin().read_line(&mut String::new());
    idle.stop();
}

/// A process with `count` idle threads, for the peer tools to inspect.
fn idle_child(count: usize) {
    let idle = Idle::start(count);
    println!("{}", std::process::id());
    let _ = std::io::stdin().read_line(&mut String::new());
    idle.stop();
}

fn time_tool(program: &str, args: &[String]) -> Option<Duration> {
    let began = Instant::now();
    let output = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    output.success().then(|| began.elapsed())
}

fn peer(program: &str, args: impl Fn(&str) -> Vec<String>, count: usize) -> Option<Duration> {
    let (child, pid) = child("--idle", count);
    let samples: Option<Vec<Duration>> = (0..3).map(|_| time_tool(program, &args(&pid))).collect();
    finish(child);
    samples.map(median)
}

/// Calls that returned `EINTR` in [`eintr_child`]: poll, nanosleep.
static INTERRUPTED: [std::sync::atomic::AtomicU64; 2] =
    [const { std::sync::atomic::AtomicU64::new(0) }; 2];

fn count_eintr(which: usize, result: libc::c_int) {
    if result < 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR) {
        INTERRUPTED[which].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// A process with a manhole and two threads that loop on `poll` and on
/// `nanosleep` (300 ms each), counting `EINTR`. Prints its pid and socket,
/// then the two counts for each line read on stdin, until stdin closes.
fn eintr_child() {
    let socket = std::env::temp_dir().join(format!("manhole-bench-eintr-{}", std::process::id()));
    let handle = manhole::Options::new()
        .socket_path(&socket)
        .verbose(false)
        .install()
        .unwrap();
    std::thread::spawn(|| loop {
        // SAFETY: no descriptors, only a timeout.
        count_eintr(0, unsafe { libc::poll(std::ptr::null_mut(), 0, 300) });
    });
    std::thread::spawn(|| loop {
        let wait = libc::timespec {
            tv_sec: 0,
            tv_nsec: 300_000_000,
        };
        // SAFETY: a valid duration; the remainder is not wanted.
        count_eintr(1, unsafe { libc::nanosleep(&wait, std::ptr::null_mut()) });
    });
    std::thread::sleep(Duration::from_millis(100));
    println!("{} {}", std::process::id(), socket.display());
    for line in std::io::stdin().lock().lines() {
        if line.is_err() {
            break;
        }
        let [poll, nanosleep] =
            [0, 1].map(|which| INTERRUPTED[which].load(std::sync::atomic::Ordering::Relaxed));
        println!("{poll} {nanosleep}");
    }
    handle.uninstall();
}

/// A JSON-RPC `stacks` over `stream`, read to the end of its response.
fn stacks_over(stream: &mut std::os::unix::net::UnixStream, reader: &mut impl BufRead) -> usize {
    use std::io::Write as _;
    stream
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stacks\"}\n")
        .unwrap();
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("\"result\""), "{line}");
    line.len()
}

/// `EINTR` per dump in [`eintr_child`] (poll, nanosleep) for `dumps` dumps
/// made by `dump(pid, socket)`.
fn eintr_per_dump(dumps: usize, dump: &dyn Fn(&str, &str)) -> (f64, f64) {
    let (mut child, line) = child("--eintr", 0);
    let mut parts = line.split(' ');
    let (pid, socket) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
    );
    let ask = |child: &mut std::process::Child| {
        use std::io::Write as _;
        writeln!(child.stdin.as_mut().unwrap()).unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let counts: Vec<u64> = line
            .split_whitespace()
            .map(|n| n.parse().unwrap())
            .collect();
        (counts[0], counts[1])
    };
    let before = ask(&mut child);
    for _ in 0..dumps {
        dump(&pid, &socket);
    }
    // Let each thread finish the call it was in.
    std::thread::sleep(Duration::from_millis(400));
    let after = ask(&mut child);
    finish(child);
    let per_dump = |before: u64, after: u64| (after - before) as f64 / dumps as f64;
    (per_dump(before.0, after.0), per_dump(before.1, after.1))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, count, ..] = args.as_slice() {
        let count: usize = count.parse().unwrap_or(100);
        match mode.as_str() {
            "--first-dump" => return first_dump_child(count),
            "--idle" => return idle_child(count),
            "--eintr" => return eintr_child(),
            "--only" => {
                let (per_dump, quiet) = dumps(count, 21);
                println!(
                    "{count} threads: {} per dump, {quiet} without a signal",
                    ms(per_dump)
                );
                return;
            }
            _ => {}
        }
    }

    println!("manhole stack dumps, symbolised (median of runs in this process)");
    println!(
        "{:>8}  {:>10}  {:>12}  {:>18}",
        "threads", "per dump", "per thread", "without a signal"
    );
    for (count, runs) in [(10, 41), (100, 21), (1000, 11)] {
        let (per_dump, quiet) = dumps(count, runs);
        let per_thread = per_dump / u32::try_from(count).unwrap();
        println!(
            "{count:>8}  {:>10}  {:>9.1} µs  {quiet:>18}",
            ms(per_dump),
            per_thread.as_secs_f64() * 1e6
        );
    }

    // The same dump asked for over the socket, in JSON, side by side.
    let socket = std::env::temp_dir().join(format!("manhole-bench-{}", std::process::id()));
    let handle = manhole::Options::new()
        .socket_path(&socket)
        .verbose(false)
        .install()
        .unwrap();
    let idle = Idle::start(1000);
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut bytes = 0;
    for _ in 0..3 {
        bytes = stacks_over(&mut stream, &mut reader);
        let _ = manhole::stacks();
    }
    let (mut over_socket, mut in_process) = (Vec::new(), Vec::new());
    for _ in 0..11 {
        let began = Instant::now();
        stacks_over(&mut stream, &mut reader);
        over_socket.push(began.elapsed());
        let began = Instant::now();
        let _ = manhole::stacks();
        in_process.push(began.elapsed());
    }
    drop((stream, reader));
    idle.stop();
    handle.uninstall();
    let (over_socket, in_process) = (median(over_socket), median(in_process));
    println!(
        "1000 idle threads over the socket (JSON `stacks`, {} KiB): {}; in process: {} (+{:.0}%)",
        bytes / 1024,
        ms(over_socket),
        ms(in_process),
        (over_socket.as_secs_f64() / in_process.as_secs_f64() - 1.0) * 100.0
    );

    let (wakes, stats) = kernel_floor(1000);
    println!(
        "kernel floor for 1000 threads, measured alone: {} to wake each with a signal, {} to read each /proc stat",
        ms(wakes),
        ms(stats)
    );

    for count in [100, 1000] {
        let first: Vec<Duration> = (0..5)
            .map(|_| {
                let (child, nanos) = child("--first-dump", count);
                finish(child);
                Duration::from_nanos(nanos.parse().unwrap())
            })
            .collect();
        println!(
            "first dump of a fresh process, {count} threads, debug info loaded: {} (median of 5)",
            ms(median(first))
        );
    }

    let (manhole_100, _) = dumps(100, 21);
    println!();
    println!("the same process shape (100 idle threads), side by side:");
    println!(
        "  manhole::stacks()                      {}",
        ms(manhole_100)
    );
    match peer("eu-stack", |pid| vec!["-p".into(), pid.into()], 100) {
        Some(took) => println!(
            "  eu-stack -p PID                        {}  ({:.0}x)",
            ms(took),
            took.as_secs_f64() / manhole_100.as_secs_f64()
        ),
        None => println!(
            "  eu-stack -p PID                        not installed (apt-get install elfutils)"
        ),
    }
    let gdb_args = |pid: &str| {
        ["-batch", "-nx", "-p", pid, "-ex", "thread apply all bt"]
            .iter()
            .map(|arg| (*arg).to_owned())
            .collect()
    };
    match peer("gdb", gdb_args, 100) {
        Some(took) => println!(
            "  gdb -batch -ex 'thread apply all bt'   {}  ({:.0}x)",
            ms(took),
            took.as_secs_f64() / manhole_100.as_secs_f64()
        ),
        None => println!("  gdb -batch -ex 'thread apply all bt'   not installed"),
    }

    // The 1000-thread shape beside gdb, whose dump of it is about a
    // second: in process (this run's median above) and over the socket.
    if let Some(took) = peer("gdb", gdb_args, 1000) {
        println!();
        println!("1000 idle threads, side by side:");
        println!(
            "  manhole over the socket                {}  (gdb {:.0}x)",
            ms(over_socket),
            took.as_secs_f64() / over_socket.as_secs_f64()
        );
        println!(
            "  manhole::stacks()                      {}  (gdb {:.0}x)",
            ms(in_process),
            took.as_secs_f64() / in_process.as_secs_f64()
        );
        println!("  gdb -batch -ex 'thread apply all bt'   {}", ms(took));
    }

    println!();
    println!("EINTR per dump in threads looping on poll / nanosleep (300 ms calls):");
    let ours = eintr_per_dump(30, &|_, socket| {
        let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        stacks_over(&mut stream, &mut reader);
    });
    println!(
        "  manhole stacks (30 dumps)              {:.2} / {:.2}",
        ours.0, ours.1
    );
    let tool = |program: &'static str, args: fn(&str) -> Vec<String>| {
        move |pid: &str, _: &str| {
            let _ = Command::new(program)
                .args(args(pid))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    };
    if time_tool("eu-stack", &["--help".to_owned()]).is_some() {
        let eu = eintr_per_dump(10, &tool("eu-stack", |pid| vec!["-p".into(), pid.into()]));
        println!(
            "  eu-stack -p PID (10 dumps)             {:.2} / {:.2}",
            eu.0, eu.1
        );
    }
    if time_tool("gdb", &["--version".to_owned()]).is_some() {
        let gdb = eintr_per_dump(
            5,
            &tool("gdb", |pid| {
                ["-batch", "-nx", "-p", pid, "-ex", "thread apply all bt"]
                    .iter()
                    .map(|arg| (*arg).to_owned())
                    .collect()
            }),
        );
        println!(
            "  gdb -batch (5 dumps)                   {:.2} / {:.2}",
            gdb.0, gdb.1
        );
    }
}
