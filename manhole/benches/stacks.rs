//! How long a full stack dump takes, symbolised, with 10, 100 and 1000 idle
//! threads; how long the very first dump of a fresh process takes; and, for
//! comparison on the same kind of process, `eu-stack -p` and
//! `gdb -batch -ex 'thread apply all bt'` when they are installed.
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
fn dumps(count: usize, runs: usize) -> Duration {
    let idle = Idle::start(count);
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
    }
    idle.stop();
    median(samples)
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

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let [_, mode, count, ..] = args.as_slice() {
        let count: usize = count.parse().unwrap_or(100);
        match mode.as_str() {
            "--first-dump" => return first_dump_child(count),
            "--idle" => return idle_child(count),
            "--only" => {
                println!("{count} threads: {} per dump", ms(dumps(count, 21)));
                return;
            }
            _ => {}
        }
    }

    println!("manhole stack dumps, symbolised (median of runs in this process)");
    println!("{:>8}  {:>10}  {:>12}", "threads", "per dump", "per thread");
    for (count, runs) in [(10, 41), (100, 21), (1000, 11)] {
        let per_dump = dumps(count, runs);
        let per_thread = per_dump / u32::try_from(count).unwrap();
        println!(
            "{count:>8}  {:>10}  {:>9.1} µs",
            ms(per_dump),
            per_thread.as_secs_f64() * 1e6
        );
    }

    let (wakes, stats) = kernel_floor(1000);
    println!(
        "kernel floor for 1000 threads, measured alone: {} to wake each with a signal, {} to read each /proc stat",
        ms(wakes),
        ms(stats)
    );

    let first: Vec<Duration> = (0..5)
        .map(|_| {
            let (child, nanos) = child("--first-dump", 100);
            finish(child);
            Duration::from_nanos(nanos.parse().unwrap())
        })
        .collect();
    println!(
        "first dump of a fresh process, 100 threads, debug info loaded: {} (median of 5)",
        ms(median(first))
    );

    let manhole_100 = dumps(100, 21);
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
}
