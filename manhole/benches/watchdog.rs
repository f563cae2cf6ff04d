//! What the watchdog costs, and how soon it speaks:
//!
//! - the CPU of the `manhole-watch` thread with `watchdog = 100ms` and
//!   10,000 instrumented calls in flight, read from its `/proc` stat over
//!   five seconds;
//! - the same with 1,000 idle threads and 10 inspected locks, beside what
//!   reading every thread's `syscall` file at every look (as the watchdog
//!   did before it spaced its lock scans) costs in the same run;
//! - the cost of one instrumented async call (polled twice) with the
//!   watchdog on and off, in alternating rounds of one process;
//! - the delay from the start of a blocking poll to its `slow_poll`
//!   report (the report's own time), for thresholds of 100 and 300 ms.
//!
//! Run with `cargo bench -p manhole --bench watchdog`.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// In flight for good.
#[manhole::inspect(calls)]
async fn waits_for_ever() {
    std::future::pending::<()>().await;
}

/// Yields once, then ends: two polls.
#[manhole::inspect(calls)]
async fn quick() -> u64 {
    YieldOnce(false).await;
    7
}

/// Sleeps in its poll, as a stall does.
#[manhole::inspect(calls)]
async fn stalls_its_worker(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

/// A waker that does nothing: these futures are polled in a loop.
fn noop_waker() -> Waker {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(
        |_| RawWaker::new(std::ptr::null(), &VTABLE),
        |_| {},
        |_| {},
        |_| {},
    );
    // SAFETY: every function of the table ignores the null data pointer.
    unsafe { Waker::from_raw(RawWaker::new(std::ptr::null(), &VTABLE)) }
}

/// Polls `future` to its end on this thread.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut cx) {
            return value;
        }
    }
}

fn install(dir: &std::path::Path, watchdog: Option<Duration>) -> manhole::Handle {
    manhole::Options::new()
        .socket_path(dir.join("sock-{pid}").display().to_string())
        .verbose(false)
        .watchdog(watchdog)
        .install()
        .unwrap()
}

/// Ten inspected locks, which turn on the watchdog's `lock_wait` looks.
#[manhole::inspect]
static LOCK_0: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
#[manhole::inspect]
static LOCK_1: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
#[manhole::inspect]
static LOCK_2: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
#[manhole::inspect]
static LOCK_3: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
#[manhole::inspect]
static LOCK_4: std::sync::Mutex<u64> = std::sync::Mutex::new(0);
#[manhole::inspect]
static LOCK_5: std::sync::RwLock<u64> = std::sync::RwLock::new(0);
#[manhole::inspect]
static LOCK_6: std::sync::RwLock<u64> = std::sync::RwLock::new(0);
#[manhole::inspect]
static LOCK_7: std::sync::RwLock<u64> = std::sync::RwLock::new(0);
#[manhole::inspect]
static LOCK_8: std::sync::RwLock<u64> = std::sync::RwLock::new(0);
#[manhole::inspect]
static LOCK_9: std::sync::RwLock<u64> = std::sync::RwLock::new(0);

/// A thread's time on a CPU, from its `schedstat` (nanoseconds).
fn thread_on_cpu(name: &str) -> Option<Duration> {
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        if std::fs::read_to_string(path.join("comm")).ok()?.trim() != name {
            continue;
        }
        let schedstat = std::fs::read_to_string(path.join("schedstat")).ok()?;
        return Some(Duration::from_nanos(
            schedstat.split_whitespace().next()?.parse().ok()?,
        ));
    }
    None
}

/// The watchdog's CPU with 1000 idle threads and 10 inspected locks, and
/// what one read of every thread's `syscall` file costs, at every look.
fn lock_scan_share(dir: &std::path::Path) {
    let locks = [&LOCK_0, &LOCK_1, &LOCK_2, &LOCK_3, &LOCK_4];
    let rwlocks = [&LOCK_5, &LOCK_6, &LOCK_7, &LOCK_8, &LOCK_9];
    for lock in locks {
        *lock.lock().unwrap() += 1;
    }
    for lock in rwlocks {
        *lock.write().unwrap() += 1;
    }
    let gate = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let idle: Vec<_> = (0..1000)
        .map(|_| {
            let gate = gate.clone();
            std::thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    let mut open = gate.0.lock().unwrap();
                    while !*open {
                        open = gate.1.wait(open).unwrap();
                    }
                })
                .unwrap()
        })
        .collect();
    let handle = install(dir, Some(Duration::from_millis(100)));
    // Past its start, where it reads the symbol tables once.
    std::thread::sleep(Duration::from_secs(2));
    let before = thread_on_cpu("manhole-watch").expect("the watchdog thread");
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let used = thread_on_cpu("manhole-watch").unwrap() - before;
    let share = used.as_secs_f64() / began.elapsed().as_secs_f64() * 100.0;
    // What one look cost when it read every thread's `syscall` file.
    let mut scans = Vec::new();
    for _ in 0..11 {
        let began = Instant::now();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let _ = std::fs::read(task.unwrap().path().join("syscall"));
        }
        scans.push(began.elapsed());
    }
    scans.sort();
    let scan = scans[scans.len() / 2];
    // A look every quarter of the threshold: 40 a second at 100 ms.
    let every_look = scan.as_secs_f64() * 40.0 * 100.0;
    println!(
        "watchdog=100ms, 1000 idle threads, 10 inspected locks: the watchdog thread used {:.1} ms of CPU in {:.1} s, {share:.2} % of a core; reading every thread's syscall file takes {:.2} ms, which at every look (40 a second) would be {every_look:.1} % of a core",
        used.as_secs_f64() * 1000.0,
        began.elapsed().as_secs_f64(),
        scan.as_secs_f64() * 1000.0,
    );
    handle.uninstall();
    *gate.0.lock().unwrap() = true;
    gate.1.notify_all();
    for thread in idle {
        thread.join().unwrap();
    }
}

fn thread_cpu(name: &str) -> Option<Duration> {
    let ticks = 100.0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let path = task.ok()?.path();
        if std::fs::read_to_string(path.join("comm")).ok()?.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).ok()?;
        let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
        let utime: f64 = fields[11].parse().ok()?;
        let stime: f64 = fields[12].parse().ok()?;
        return Some(Duration::from_secs_f64((utime + stime) / ticks));
    }
    None
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn stalls(socket: &std::path::Path) -> serde_json::Value {
    let mut stream = UnixStream::connect(socket).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stalls\"}\n")
        .unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    serde_json::from_str::<serde_json::Value>(&line).unwrap()["result"].clone()
}

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

const DELAY_CHILD: &str = "MANHOLE_WATCHDOG_BENCH_DELAY";

/// One stall in this fresh process: prints the milliseconds from its start
/// to its report.
fn delay_child(threshold_ms: u64, dir: &std::path::Path) {
    let handle = install(dir, Some(Duration::from_millis(threshold_ms)));
    let socket = handle.socket_path().to_owned();
    std::thread::sleep(Duration::from_millis(100));
    let started = epoch();
    let stall = std::thread::spawn(move || block_on(stalls_its_worker(threshold_ms * 2)));
    let deadline = Instant::now() + Duration::from_secs(10);
    let report = loop {
        let all = stalls(&socket);
        if let Some(report) = all["reports"]
            .as_array()
            .and_then(|reports| reports.iter().find(|r| r["kind"] == "slow_poll"))
        {
            break report.clone();
        }
        assert!(Instant::now() < deadline, "no report");
        std::thread::sleep(Duration::from_millis(5));
    };
    stall.join().unwrap();
    let reported = parse_rfc3339(report["at"].as_str().unwrap());
    println!("{}", (reported - started) * 1000.0);
    handle.uninstall();
    let _ = std::fs::remove_dir_all(dir);
}

fn main() {
    let dir = std::env::temp_dir().join(format!("manhole-watchdog-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    if let Ok(threshold) = std::env::var(DELAY_CHILD) {
        delay_child(threshold.parse().unwrap(), &dir);
        return;
    }

    // 1. The watchdog thread's CPU with 1000 idle threads and 10 inspected
    // locks, none of them waited on (first: later cases leave the
    // in-flight table grown to 10,000 calls, which every look reads).
    lock_scan_share(&dir);

    // 2. The watchdog thread's CPU with 10,000 calls in flight.
    let mut in_flight: Vec<Pin<Box<dyn Future<Output = ()>>>> = (0..10_000)
        .map(|_| Box::pin(waits_for_ever()) as _)
        .collect();
    let waker = noop_waker();
    let mut cx = Context::from_waker(&waker);
    for future in &mut in_flight {
        let _ = future.as_mut().poll(&mut cx);
    }
    let handle = install(&dir, Some(Duration::from_millis(100)));
    std::thread::sleep(Duration::from_millis(300));
    let before = thread_cpu("manhole-watch").expect("the watchdog thread");
    let began = Instant::now();
    std::thread::sleep(Duration::from_secs(5));
    let used = thread_cpu("manhole-watch").unwrap() - before;
    let share = used.as_secs_f64() / began.elapsed().as_secs_f64() * 100.0;
    println!(
        "watchdog=100ms, 10000 calls in flight: the watchdog thread used {:.0} ms of CPU in {:.1} s, {share:.2} % of a core",
        used.as_secs_f64() * 1000.0,
        began.elapsed().as_secs_f64()
    );
    handle.uninstall();
    drop(in_flight);

    // 3. One instrumented call, watchdog on and off, alternating rounds.
    const CALLS: u32 = 200_000;
    let mut on = Vec::new();
    let mut off = Vec::new();
    for round in 0..10 {
        let watchdog = (round % 2 == 0).then_some(Duration::from_millis(100));
        let handle = install(&dir, watchdog);
        let began = Instant::now();
        for _ in 0..CALLS {
            std::hint::black_box(block_on(quick()));
        }
        let per_call = began.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS);
        if watchdog.is_some() {
            on.push(per_call);
        } else {
            off.push(per_call);
        }
        handle.uninstall();
    }
    let (on, off) = (median(on), median(off));
    println!(
        "one instrumented call (two polls): watchdog on {on:.1} ns, off {off:.1} ns ({:+.1} %)",
        (on / off - 1.0) * 100.0
    );

    // 3. From a stall's start to its report, each in a fresh process: the
    // rate limit (five reports a minute of each kind) is process-wide.
    for threshold_ms in [100u64, 300] {
        let delays: Vec<f64> = (0..5)
            .map(|_| {
                let output = std::process::Command::new(std::env::current_exe().unwrap())
                    .env(DELAY_CHILD, threshold_ms.to_string())
                    .stderr(std::process::Stdio::null())
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&output.stdout)
                    .trim()
                    .parse()
                    .unwrap()
            })
            .collect();
        let target = threshold_ms as f64 * 1.25 + 20.0;
        println!(
            "watchdog={threshold_ms}ms: stall to report {:.0} ms (median of 5; target at most {target:.0} ms)",
            median(delays)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Seconds since the epoch of `2026-12-04T03:12:45.123Z`.
fn parse_rfc3339(text: &str) -> f64 {
    let number = |range: std::ops::Range<usize>| -> i64 { text[range].parse().unwrap() };
    let (year, month, day) = (number(0..4), number(5..7), number(8..10));
    let (hour, minute) = (number(11..13), number(14..16));
    let seconds: f64 = text[17..text.len() - 1].parse().unwrap();
    // Days since the epoch (Howard Hinnant's days_from_civil).
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    (days * 86_400 + hour * 3600 + minute * 60) as f64 + seconds
}
