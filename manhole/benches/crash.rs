//! What a crash report costs: the time from the fault to the process's
//! death with a complete, symbolised report, for 10, 100 and 1000 threads,
//! beside `gdb -batch -nx -p PID -ex 'thread apply all bt'` on the same
//! process alive; and the memory the crash path holds ahead of time, as
//! resident memory with `crash_report` on and off, side by side.
//!
//! Run with `cargo bench -p manhole --bench crash`. Each figure is the
//! median of several crashes of fresh processes in one invocation. The
//! processes are this binary, run again as a child that starts N idle
//! threads, installs the manhole, and crashes on a line from its parent.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "MANHOLE_CRASH_BENCH_CHILD";

#[inline(never)]
fn write_through_null() {
    // SAFETY: not safe at all: this is the crash being measured.
    unsafe { std::hint::black_box(std::ptr::null_mut::<u64>()).write_volatile(1) };
}

fn resident_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The child: N idle threads, the manhole, `ready PID RSS_BEFORE
/// RSS_AFTER`, then a crash (or, for `alive`, a long sleep) on a line.
fn child(spec: &str) {
    let mut parts = spec.split(',');
    let threads: usize = parts.next().unwrap().parse().unwrap();
    let crash_report = parts.next() == Some("on");
    let dir = parts.next().unwrap().to_owned();
    let then = parts.next().unwrap_or("crash").to_owned();
    for _ in 0..threads {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| loop {
                std::thread::sleep(Duration::from_secs(600));
            })
            .unwrap();
    }
    std::thread::sleep(Duration::from_millis(50));
    let before = resident_kib();
    let _manhole = manhole::Options::new()
        .socket_path(format!("{dir}/sock-{{pid}}"))
        .verbose(false)
        .crash_report(crash_report)
        .crash_file(format!("{dir}/crash-{{pid}}.txt"))
        .install()
        .unwrap();
    let after = resident_kib();
    println!("ready {} {before} {after}", std::process::id());
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
    if then == "alive" {
        std::thread::sleep(Duration::from_secs(600));
    }
    write_through_null();
}

struct Started {
    child: Child,
    pid: u32,
    rss: (u64, u64),
}

fn start(threads: usize, crash_report: bool, dir: &str, then: &str) -> Started {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env(
            CHILD,
            format!(
                "{threads},{},{dir},{then}",
                if crash_report { "on" } else { "off" }
            ),
        )
        .env_remove("MANHOLE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: setrlimit is async-signal-safe: no core dumps for the
    // crashes measured here.
    unsafe {
        command.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| field.parse().unwrap())
        .collect();
    Started {
        child,
        pid: fields[0] as u32,
        rss: (fields[1], fields[2]),
    }
}

/// From the line that makes the child fault to its death, and whether it
/// left a complete, symbolised report.
fn fault_to_death(threads: usize, dir: &str) -> (Duration, bool) {
    let mut started = start(threads, true, dir, "crash");
    let began = Instant::now();
    started
        .child
        .stdin
        .as_mut()
        .unwrap()
        .write_all(b"go\n")
        .unwrap();
    let status = started.child.wait().unwrap();
    let took = began.elapsed();
    let report =
        std::fs::read_to_string(format!("{dir}/crash-{}.txt", started.pid)).unwrap_or_default();
    let complete = status.signal() == Some(libc::SIGSEGV)
        && report.starts_with("manhole crash report: ")
        && report.trim_end().ends_with("end of manhole crash report")
        && report.contains("write_through_null");
    (took, complete)
}

fn gdb_on_alive(threads: usize, dir: &str) -> Option<Duration> {
    let mut started = start(threads, true, dir, "alive");
    let began = Instant::now();
    let output = Command::new("gdb")
        .args(["-batch", "-nx", "-p", &started.pid.to_string()])
        .args(["-ex", "thread apply all bt"])
        .output()
        .ok();
    let took = began.elapsed();
    let _ = started.child.kill();
    let _ = started.child.wait();
    output
        .filter(|output| output.status.success())
        .map(|_| took)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
        return;
    }
    let dir = std::env::temp_dir().join(format!("manhole-crash-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.display().to_string();
    println!("crash reports: fault to death with a complete, symbolised report (median of runs)");
    println!(" threads   fault to death   complete   gdb 'thread apply all bt' on it alive");
    for (threads, runs) in [(10, 5), (100, 5), (1000, 3)] {
        let mut times = Vec::new();
        let mut complete = 0;
        for _ in 0..runs {
            let (took, whole) = fault_to_death(threads, &dir);
            times.push(took);
            complete += usize::from(whole);
        }
        let gdb: Vec<Duration> = (0..runs.min(3))
            .filter_map(|_| gdb_on_alive(threads, &dir))
            .collect();
        let gdb = if gdb.is_empty() {
            "not installed".to_owned()
        } else {
            format!("{:.0} ms", median(gdb).as_secs_f64() * 1000.0)
        };
        println!(
            "{threads:>8}   {:>11.0} ms   {complete:>4} of {runs}   {gdb:>10}",
            median(times).as_secs_f64() * 1000.0
        );
    }
    let mut on = Vec::new();
    let mut off = Vec::new();
    for _ in 0..5 {
        for (crash_report, into) in [(true, &mut on), (false, &mut off)] {
            let mut started = start(10, crash_report, &dir, "alive");
            into.push(started.rss.1 as i64 - started.rss.0 as i64);
            let _ = started.child.kill();
            let _ = started.child.wait();
        }
    }
    on.sort_unstable();
    off.sort_unstable();
    let (on, off) = (on[on.len() / 2], off[off.len() / 2]);
    println!(
        "resident memory added by install (median of 5): crash_report on {on} KiB, off {off} KiB; the crash path holds {} KiB",
        on - off
    );
    let _ = std::fs::remove_dir_all(&dir);
}
