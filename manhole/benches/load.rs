//! Many clients, each making thousands of `call` round trips over its own
//! session, against a bare Unix-socket echo server in the same run: the
//! echo server has the manhole's shape (a thread per connection, one line
//! in, one line out) and no work, so it stands for the physical limit.
//!
//! ```text
//! cargo bench -p manhole --bench load              # 32 clients x 2000 calls
//! cargo bench -p manhole --bench load -- 64 500    # clients, calls each
//! ```
//!
//! Each client sends a JSON-RPC `call add` and waits for its response
//! before the next. Rounds alternate echo and manhole, three of each, and
//! the medians of the rounds are printed.
//!
//! Then one client holds one session to each server and alternates short
//! rounds (100 round trips to the echo, 100 to the manhole, and again),
//! 200 pairs: each pair's ratio compares two rounds taken a millisecond
//! apart, under the same load and wake-up latency, and the median of the
//! ratios is the figure for a call on an open session.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// Add two numbers.
#[manhole::command]
fn add(a: i64, b: i64) -> i64 {
    a + b
}

const REQUEST: &[u8] =
    b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"call\",\"params\":{\"name\":\"add\",\"args\":[40,2]}}\n";
const EXPECTED: &str = "{\"id\":1,\"jsonrpc\":\"2.0\",\"result\":42}\n";

struct Round {
    requests_per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// `clients` threads, each with its own connection, each making `calls`
/// round trips; every answer is checked.
fn round(path: &Path, clients: usize, calls: usize, expected: &str) -> Round {
    let barrier = Barrier::new(clients + 1);
    let (mut latencies, elapsed) = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..clients)
            .map(|_| {
                scope.spawn(|| {
                    // Connect only once every client is ready: a session
                    // silent for 50 ms would be taken for a text one.
                    barrier.wait();
                    let stream = UnixStream::connect(path).expect("connect");
                    stream
                        .set_read_timeout(Some(Duration::from_secs(30)))
                        .unwrap();
                    let mut writer = stream.try_clone().unwrap();
                    let mut reader = BufReader::new(stream);
                    let mut line = String::new();
                    let mut latencies = Vec::with_capacity(calls);
                    for _ in 0..calls {
                        let sent = Instant::now();
                        writer.write_all(REQUEST).expect("send");
                        line.clear();
                        reader.read_line(&mut line).expect("answer");
                        latencies.push(sent.elapsed());
                        assert_eq!(line, expected);
                    }
                    latencies
                })
            })
            .collect();
        barrier.wait();
        let started = Instant::now();
        let latencies: Vec<Duration> = workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("a client"))
            .collect();
        (latencies, started.elapsed())
    });
    latencies.sort();
    let at = |fraction: f64| latencies[((latencies.len() - 1) as f64 * fraction) as usize];
    Round {
        requests_per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// Echoes each line back, a thread per connection.
fn start_echo(path: &Path) {
    let listener = UnixListener::bind(path).expect("bind the echo socket");
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                let mut line = Vec::new();
                loop {
                    line.clear();
                    match reader.read_until(b'\n', &mut line) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            if writer.write_all(&line).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}

/// One session's connection, for the paired rounds.
struct Session {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    line: String,
}

impl Session {
    fn open(path: &Path) -> Session {
        let stream = UnixStream::connect(path).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        Session {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            line: String::new(),
        }
    }

    /// `count` round trips, each answer checked; how long they took.
    fn round(&mut self, count: usize, expected: &str) -> Duration {
        let started = Instant::now();
        for _ in 0..count {
            self.writer.write_all(REQUEST).expect("send");
            self.line.clear();
            self.reader.read_line(&mut self.line).expect("answer");
            assert_eq!(self.line, expected);
        }
        started.elapsed()
    }
}

/// Puts every thread of this process, and so every thread they start, on
/// one CPU: a wake-up then never crosses cores, which on a virtual machine
/// costs an interrupt to a halted CPU and swamps the work measured.
fn pin_to_one_cpu() {
    // SAFETY: a zeroed `cpu_set_t` is the empty set; CPU_SET writes within it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: CPU 0 is within the set's size.
    unsafe { libc::CPU_SET(0, &mut set) };
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|tid| tid.parse().ok()) else {
            continue;
        };
        // SAFETY: `set` is a valid set of the size given; the thread is ours.
        unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    }
}

/// Alternating rounds on one open session to each server, every thread on
/// one CPU: the median of the paired ratios, with the median round-trip
/// times.
fn paired_rounds(echo_path: &Path, manhole_path: &Path, echo_expected: &str) {
    const PAIRS: usize = 200;
    const PER_ROUND: usize = 100;
    pin_to_one_cpu();
    let mut echo = Session::open(echo_path);
    let mut manhole = Session::open(manhole_path);
    // Warm both paths (and the manhole's JSON detection) first.
    echo.round(PER_ROUND, echo_expected);
    manhole.round(PER_ROUND, EXPECTED);
    let mut ratios = Vec::with_capacity(PAIRS);
    let mut echo_times = Vec::with_capacity(PAIRS);
    let mut manhole_times = Vec::with_capacity(PAIRS);
    for pair in 0..PAIRS {
        // Which goes first alternates too, so neither always follows the
        // other's wake-ups.
        let (echo_time, manhole_time) = if pair % 2 == 0 {
            let echo_time = echo.round(PER_ROUND, echo_expected);
            (echo_time, manhole.round(PER_ROUND, EXPECTED))
        } else {
            let manhole_time = manhole.round(PER_ROUND, EXPECTED);
            (echo.round(PER_ROUND, echo_expected), manhole_time)
        };
        ratios.push(manhole_time.as_secs_f64() / echo_time.as_secs_f64());
        echo_times.push(echo_time.as_secs_f64() * 1e6 / PER_ROUND as f64);
        manhole_times.push(manhole_time.as_secs_f64() * 1e6 / PER_ROUND as f64);
    }
    let mut sorted = ratios.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "one session each, every thread on CPU 0, {PAIRS} alternating pairs of {PER_ROUND}-call rounds: \
         echo {:.1} µs, manhole call {:.1} µs a round trip (medians); \
         median of the paired ratios {:.2}x (quartiles {:.2}x to {:.2}x)",
        median(echo_times),
        median(manhole_times),
        sorted[PAIRS / 2],
        sorted[PAIRS / 4],
        sorted[3 * PAIRS / 4],
    );
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let numbers: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|arg| arg.parse().ok())
        .collect();
    let clients = numbers.first().copied().unwrap_or(32);
    let calls = numbers.get(1).copied().unwrap_or(2000);
    let directory: PathBuf =
        std::env::temp_dir().join(format!("manhole-load-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let echo_path = directory.join("echo.sock");
    let manhole_path = directory.join("manhole.sock");
    start_echo(&echo_path);
    let handle = manhole::Options::new()
        .socket_path(&manhole_path)
        .verbose(false)
        // The previous round's sessions may still be ending.
        .max_sessions(2 * clients)
        .install()
        .expect("install the manhole");
    let echo_expected = String::from_utf8(REQUEST.to_vec()).unwrap();

    println!("{clients} clients x {calls} round trips each, 3 rounds per server");
    let mut rounds: [Vec<Round>; 2] = [Vec::new(), Vec::new()];
    for _ in 0..3 {
        rounds[0].push(round(&echo_path, clients, calls, &echo_expected));
        rounds[1].push(round(&manhole_path, clients, calls, EXPECTED));
    }
    println!(
        "{:<16} {:>12} {:>10} {:>10}",
        "server", "requests/s", "p50", "p99"
    );
    let mut medians = Vec::new();
    for (name, rounds) in ["bare echo", "manhole call"].iter().zip(&rounds) {
        let throughput = median(rounds.iter().map(|r| r.requests_per_second).collect());
        let p50 = median(rounds.iter().map(|r| r.p50.as_secs_f64() * 1e6).collect());
        let p99 = median(rounds.iter().map(|r| r.p99.as_secs_f64() * 1e6).collect());
        println!("{name:<16} {throughput:>12.0} {p50:>8.1}µs {p99:>8.1}µs");
        medians.push((throughput, p50, p99));
    }
    let (echo, manhole) = (medians[0], medians[1]);
    println!(
        "manhole / echo: throughput {:.2}x, p50 {:.2}x, p99 {:.2}x",
        manhole.0 / echo.0,
        manhole.1 / echo.1,
        manhole.2 / echo.2
    );
    paired_rounds(&echo_path, &manhole_path, &echo_expected);
    handle.uninstall();
    let _ = std::fs::remove_dir_all(&directory);
}
