//! The profile targets of issue 21, measured for manhole's `profile` and for
//! the `pprof` crate (pprof-rs) side by side, in one process and one run:
//!
//! 1. a known split: `seventy` and `thirty` do the same work 7 and 3 times
//!    a round; the share of samples under `seventy` should be 70%;
//! 2. the throughput of a CPU-bound thread, bare and while profiled at 99 Hz;
//! 3. samples and drops with 8 busy threads at 99 Hz and 1000 Hz, against
//!    the samples their CPU time should give (CPU seconds × hz);
//! 4. the CPU the process spends while 1000 idle threads are profiled.
//!
//! `cargo run --release --manifest-path benches/profiler-peers/Cargo.toml`
//! (`-- --quick` for shorter windows).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::thread::JoinHandleExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../../../examples/support/split.rs"]
mod split;

use split::{seventy, thirty};

/// Threads that run `seventy` then `thirty` until stopped, counting rounds.
struct Workers {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    fn start(count: usize) -> Workers {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let threads = (0..count)
            .map(|index| {
                let stop = stop.clone();
                let rounds = rounds.clone();
                std::thread::Builder::new()
                    .name(format!("busy-{index}"))
                    .spawn(move || {
                        let mut value = 1;
                        while !stop.load(Ordering::Relaxed) {
                            value = thirty(seventy(value));
                            rounds.fetch_add(1, Ordering::Relaxed);
                        }
                        std::hint::black_box(value);
                    })
                    .unwrap()
            })
            .collect();
        Workers {
            stop,
            rounds,
            threads,
        }
    }

    /// The workers' CPU time so far, in seconds.
    fn cpu_seconds(&self) -> f64 {
        self.threads
            .iter()
            .map(|thread| {
                let mut clock: libc::clockid_t = 0;
                let mut now = libc::timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                };
                // SAFETY: a live thread's pthread_t, valid out-pointers.
                unsafe {
                    libc::pthread_getcpuclockid(thread.as_pthread_t(), &mut clock);
                    libc::clock_gettime(clock, &mut now);
                }
                now.tv_sec as f64 + now.tv_nsec as f64 / 1e9
            })
            .sum()
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            thread.join().unwrap();
        }
    }
}

/// The process's own CPU time, in seconds.
fn process_cpu_seconds() -> f64 {
    // SAFETY: a zeroed rusage is valid, and getrusage fills it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let seconds = |time: libc::timeval| time.tv_sec as f64 + time.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// One profile's samples: (thread, function names root first, count).
type Samples = Vec<(String, Vec<String>, u64)>;

fn manhole_profile(socket: &Path, seconds: u64, hz: u32) -> (Samples, u64) {
    let stream = UnixStream::connect(socket).expect("connect to the manhole");
    stream
        .set_read_timeout(Some(Duration::from_secs(seconds + 60)))
        .unwrap();
    let request = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "profile",
        "params": {"seconds": seconds, "hz": hz, "per_thread": true},
    });
    writeln!(&stream, "{request}").unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    let response: serde_json::Value = serde_json::from_str(&line).unwrap();
    let result = &response["result"];
    let samples = result["data"]
        .as_str()
        .unwrap_or_else(|| panic!("no profile: {response}"))
        .lines()
        .map(|line| {
            let (stack, count) = line.rsplit_once(' ').unwrap();
            let mut frames = stack.split(';').map(str::to_owned);
            let thread = frames.next().unwrap();
            (thread, frames.collect(), count.parse().unwrap())
        })
        .collect();
    (samples, result["dropped"].as_u64().unwrap_or(0))
}

fn pprof_profile(seconds: u64, hz: i32) -> Samples {
    let guard = pprof::ProfilerGuardBuilder::default()
        .frequency(hz)
        .blocklist(&["libc", "libgcc", "pthread", "vdso"])
        .build()
        .expect("start pprof-rs");
    std::thread::sleep(Duration::from_secs(seconds));
    let report = guard.report().build().expect("pprof-rs report");
    report
        .data
        .iter()
        .map(|(frames, &count)| {
            let names = frames
                .frames
                .iter()
                .rev()
                .flat_map(|symbols| symbols.iter().rev().map(|symbol| symbol.name()))
                .collect();
            (frames.thread_name.clone(), names, count as u64)
        })
        .collect()
}

/// Whether `perf record` can sample this process here.
fn perf_works() -> bool {
    std::process::Command::new("perf")
        .args(["record", "-q", "-o", "/dev/null", "--", "true"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `perf record` of this process for `seconds` at `hz`, with DWARF call
/// chains when `callers` (the frames a split needs; optimised code keeps no
/// frame pointers), read back with `perf script`.
fn perf_profile(seconds: u64, hz: u32, callers: bool) -> Samples {
    let data = format!("/tmp/manhole-bench-perf-{}.data", std::process::id());
    let pid = std::process::id().to_string();
    let hz = hz.to_string();
    let seconds = seconds.to_string();
    let mut record = vec!["record", "-q", "-F", &hz, "-p", &pid, "-o", &data];
    if callers {
        record.extend(["--call-graph", "dwarf,16384"]);
    }
    record.extend(["--", "sleep", &seconds]);
    let status = std::process::Command::new("perf")
        .args(&record)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run perf record");
    assert!(status.success(), "perf record failed");
    let script = std::process::Command::new("perf")
        .args(["script", "-i", &data, "-F", "comm,ip,sym"])
        .stderr(std::process::Stdio::null())
        .output()
        .expect("run perf script");
    let _ = std::fs::remove_file(&data);
    let text = String::from_utf8_lossy(&script.stdout).into_owned();
    let mut samples = Samples::new();
    for block in text.split("\n\n") {
        let mut lines = block.lines().filter(|line| !line.trim().is_empty());
        let Some(first) = lines.next() else {
            continue;
        };
        let mut words = first.split_whitespace();
        let thread = words.next().unwrap_or("").to_owned();
        let mut frames: Vec<String> = words.map(str::to_owned).collect();
        frames.extend(lines.map(|line| line.trim().to_owned()));
        if callers {
            samples.push((thread, frames, 1));
        } else {
            // Without call chains each sample is one line.
            for line in block.lines().filter(|line| !line.trim().is_empty()) {
                let thread = line.split_whitespace().next().unwrap_or("").to_owned();
                samples.push((thread, Vec::new(), 1));
            }
        }
    }
    samples
}

fn busy_samples(samples: &Samples) -> u64 {
    samples
        .iter()
        .filter(|(thread, _, _)| thread.starts_with("busy-"))
        .map(|(_, _, count)| count)
        .sum()
}

fn share_of_seventy(samples: &Samples) -> f64 {
    let under = |function: &str| -> u64 {
        samples
            .iter()
            .filter(|(_, frames, _)| frames.iter().any(|frame| frame.contains(function)))
            .map(|(_, _, count)| count)
            .sum()
    };
    let (seventy, thirty) = (under("seventy"), under("thirty"));
    seventy as f64 * 100.0 / (seventy + thirty).max(1) as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|arg| arg == "--quick");
    let window = if quick { 3 } else { 10 };
    let socket = PathBuf::from(format!("/tmp/manhole-bench-{}", std::process::id()));
    let _manhole = manhole::Options::new()
        .socket_path(&socket)
        .verbose(false)
        .install()
        .expect("install the manhole");
    println!(
        "windows of {window} s; machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let perf = perf_works();

    // The split as the clock sees it, on this build: the ground truth.
    let timed = |work: fn(u64) -> u64| {
        let started = Instant::now();
        let mut value = 1;
        for _ in 0..300 {
            value = work(value);
        }
        std::hint::black_box(value);
        started.elapsed().as_secs_f64()
    };
    let (clock_seventy, clock_thirty) = (timed(seventy), timed(thirty));
    println!(
        "clock     seventy's share of the time, timed: {:.1}%",
        clock_seventy * 100.0 / (clock_seventy + clock_thirty)
    );

    // 1. The known split, two threads, 99 Hz.
    let workers = Workers::start(2);
    std::thread::sleep(Duration::from_millis(300));
    let (ours, _) = manhole_profile(&socket, window, 99);
    let theirs = pprof_profile(window, 99);
    let by_perf = perf.then(|| perf_profile(window, 99, true));
    workers.stop();
    println!(
        "split     seventy's share (target 70 ± 3): manhole {:.1}% of {} samples, pprof-rs {:.1}% of {} samples{}",
        share_of_seventy(&ours),
        busy_samples(&ours),
        share_of_seventy(&theirs),
        busy_samples(&theirs),
        by_perf.map_or_else(
            || ", perf record cannot run here".to_owned(),
            |by_perf| format!(
                ", perf record {:.1}% of {} samples",
                share_of_seventy(&by_perf),
                busy_samples(&by_perf)
            )
        )
    );

    // 2. Throughput of one CPU-bound thread, bare and profiled at 99 Hz,
    //    interleaved: rounds per second of the thread's own CPU time, so
    //    that what else the machine runs does not count, and the time its
    //    handler takes does.
    let workers = Workers::start(1);
    let rate = |profile: &dyn Fn()| {
        let (rounds, cpu) = (
            workers.rounds.load(Ordering::Relaxed),
            workers.cpu_seconds(),
        );
        profile();
        (workers.rounds.load(Ordering::Relaxed) - rounds) as f64 / (workers.cpu_seconds() - cpu)
    };
    let short = (window / 2).max(2);
    // At 1000 Hz as well: ten times the ticks make a per-tick cost ten
    // times easier to see through the machine's noise.
    for hz in [99u32, 1000] {
        let (mut bare, mut with_manhole, mut with_pprof, mut with_perf) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..5 {
            bare.push(rate(&|| std::thread::sleep(Duration::from_secs(short))));
            with_manhole.push(rate(&|| {
                manhole_profile(&socket, short, hz);
            }));
            with_pprof.push(rate(&|| {
                pprof_profile(short, hz as i32);
            }));
            if perf {
                with_perf.push(rate(&|| {
                    perf_profile(short, hz, false);
                }));
            }
        }
        let spread = bare.iter().copied().fold(f64::MIN, f64::max)
            / bare.iter().copied().fold(f64::MAX, f64::min);
        let (bare, with_manhole, with_pprof) =
            (median(bare), median(with_manhole), median(with_pprof));
        let loss = |with: f64| (with / bare - 1.0) * 100.0;
        println!(
            "overhead  rounds per CPU second of a CPU-bound thread at {hz} Hz, median of 5 (target ≤ 1% loss at 99 Hz): bare {bare:.0} (max/min of the bare windows {:.2}%), manhole {with_manhole:.0} ({:+.2}%), pprof-rs {with_pprof:.0} ({:+.2}%){}",
            (spread - 1.0) * 100.0,
            loss(with_manhole),
            loss(with_pprof),
            if with_perf.is_empty() {
                String::new()
            } else {
                let with_perf = median(with_perf);
                format!(", perf record {with_perf:.0} ({:+.2}%)", loss(with_perf))
            }
        );
    }
    workers.stop();

    // 3. Samples and drops with 8 busy threads.
    for hz in [99u32, 1000] {
        let workers = Workers::start(8);
        std::thread::sleep(Duration::from_millis(300));
        let cpu = workers.cpu_seconds();
        let (ours, dropped) = manhole_profile(&socket, window, hz);
        let ours_expected = (workers.cpu_seconds() - cpu) * f64::from(hz);
        let cpu = workers.cpu_seconds();
        let theirs = pprof_profile(window, hz as i32);
        let theirs_expected = (workers.cpu_seconds() - cpu) * f64::from(hz);
        let cpu = workers.cpu_seconds();
        let by_perf = perf.then(|| perf_profile(window, hz, false));
        let perf_expected = (workers.cpu_seconds() - cpu) * f64::from(hz);
        workers.stop();
        let ours_got = busy_samples(&ours) as f64;
        let theirs_got = busy_samples(&theirs) as f64;
        println!(
            "samples   8 busy threads at {hz} Hz (target ±10% of CPU s × hz; 0 dropped at 99 Hz): manhole {ours_got:.0} of {ours_expected:.0} ({:+.1}%, {dropped} dropped), pprof-rs {theirs_got:.0} of {theirs_expected:.0} ({:+.1}%){}",
            (ours_got / ours_expected - 1.0) * 100.0,
            (theirs_got / theirs_expected - 1.0) * 100.0,
            by_perf.map_or_else(String::new, |by_perf| {
                let got = busy_samples(&by_perf) as f64;
                format!(", perf record {got:.0} of {perf_expected:.0} ({:+.1}%)", (got / perf_expected - 1.0) * 100.0)
            })
        );
    }

    // 4. 1000 idle threads, CPU mode: what the process spends meanwhile.
    let idle: Vec<_> = (0..1000)
        .map(|index| {
            std::thread::Builder::new()
                .name(format!("idle-{index}"))
                .stack_size(64 * 1024)
                .spawn(|| loop {
                    std::thread::park();
                })
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let cpu = process_cpu_seconds();
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(window));
    let bare = (process_cpu_seconds() - cpu) / started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds();
    let started = Instant::now();
    manhole_profile(&socket, window, 99);
    let ours = (process_cpu_seconds() - cpu) / started.elapsed().as_secs_f64();
    let cpu = process_cpu_seconds();
    let started = Instant::now();
    pprof_profile(window, 99);
    let theirs = (process_cpu_seconds() - cpu) / started.elapsed().as_secs_f64();
    println!(
        "idle      process CPU while 1000 idle threads are profiled at 99 Hz (target < 1% of a core): bare {:.3}%, manhole {:.3}%, pprof-rs {:.3}%",
        bare * 100.0,
        ours * 100.0,
        theirs * 100.0
    );
    drop(idle);
}
