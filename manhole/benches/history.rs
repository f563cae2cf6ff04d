//! What the flight recorder costs: the CPU of an idle process of 100
//! threads with the recorder on (`history=10m`) and off, side by side in
//! one run, and the time `history` takes to answer over 10 minutes of
//! points.
//!
//! Each case is a fresh process (this binary, re-run), measured over the
//! same ten seconds as its twin: the sum of every thread's time on a CPU
//! (`/proc/PID/task/*/schedstat`, in nanoseconds).
//!
//! Run with `cargo bench -p manhole --bench history`.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD: &str = "MANHOLE_HISTORY_BENCH_CHILD";
const WINDOW: Duration = Duration::from_secs(10);

/// An idle service: 100 threads asleep, a manhole, a counted function
/// called ten times a second.
fn child() {
    for _ in 0..100 {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| loop {
                std::thread::park();
            })
            .unwrap();
    }
    let _manhole = manhole::Options::new().verbose(false).install();
    loop {
        tick();
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Called ten times a second, as a quiet service's requests are.
#[manhole::inspect(calls)]
fn tick() -> u64 {
    TICKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// How many ticks there were.
#[manhole::inspect]
static TICKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(history: &str) -> Running {
    let child = Command::new(std::env::current_exe().unwrap())
        .env(CHILD, "1")
        .env("MANHOLE", format!("history={history}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the measured process");
    let socket = format!("/tmp/manhole-{}", child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    while !std::path::Path::new(&socket).exists() {
        assert!(Instant::now() < deadline, "{socket} never appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    Running(child)
}

/// Every thread's time on a CPU so far.
fn on_cpu(pid: u32) -> Duration {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let path = task.unwrap().path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            total += text
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    Duration::from_nanos(total)
}

fn ask(pid: u32, request: &str) -> (Duration, usize) {
    let mut stream = UnixStream::connect(format!("/tmp/manhole-{pid}")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let began = Instant::now();
    stream.write_all(request.as_bytes()).unwrap();
    stream.write_all(b"\n").unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();
    assert!(line.contains("\"result\""), "{line}");
    (began.elapsed(), line.len())
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    println!(
        "process CPU over {} s, 100 idle threads, one counted function called 10 times a second:",
        WINDOW.as_secs()
    );
    let (on, off) = (start("10m"), start("off"));
    // Past the start, then the same ten seconds for both.
    std::thread::sleep(Duration::from_secs(2));
    let before = (on_cpu(on.0.id()), on_cpu(off.0.id()));
    std::thread::sleep(WINDOW);
    let used = (on_cpu(on.0.id()) - before.0, on_cpu(off.0.id()) - before.1);
    let share = |used: Duration| used.as_secs_f64() / WINDOW.as_secs_f64() * 100.0;
    println!(
        "  history=10m  {:.3} % of a core\n  history=off  {:.3} % of a core\n  the recorder {:+.3} % of a core",
        share(used.0),
        share(used.1),
        share(used.0) - share(used.1)
    );
    let mut answers: Vec<Duration> = Vec::new();
    let mut bytes = 0;
    for _ in 0..11 {
        let (took, size) = ask(
            on.0.id(),
            r#"{"jsonrpc":"2.0","id":1,"method":"history","params":{"since":"10m","every":"1s"}}"#,
        );
        answers.push(took);
        bytes = size;
    }
    answers.sort();
    println!(
        "history --since 10m --every 1s ({bytes} bytes of JSON): median {:.2} ms over 11 answers",
        answers[answers.len() / 2].as_secs_f64() * 1000.0
    );
}
