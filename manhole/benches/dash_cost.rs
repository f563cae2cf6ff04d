//! What `manhole-cli PID dash` costs the process it watches: the CPU time
//! of a process with 1000 idle threads and 10,000 in-flight calls, over
//! 10 s left alone and over 10 s answering the dashboard's rounds at a 1 s
//! interval, side by side.
//!
//! ```text
//! cargo bench -p manhole --bench dash_cost
//! ```
//!
//! The rounds are the dashboard's own requests, in its order, on one
//! session, one at a time: `top` over the interval, `tasks`,
//! `stats --window 1s`, `runtime`, `log` and `log` after the newest event,
//! `stalls`. The process is this binary run again as a child.

use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::task::{Context, Wake, Waker};
use std::time::{Duration, Instant};

const CHILD: &str = "MANHOLE_DASH_BENCH_CHILD";
const WINDOW: Duration = Duration::from_secs(10);

/// A call that never finishes, kept in flight.
#[manhole::inspect(calls)]
async fn stuck() {
    std::future::pending::<()>().await;
}

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn child() {
    for _ in 0..1000 {
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(|| loop {
                std::thread::park();
            })
            .unwrap();
    }
    let waker = Waker::from(Arc::new(Noop));
    let mut context = Context::from_waker(&waker);
    let mut in_flight: Vec<Pin<Box<dyn Future<Output = ()>>>> =
        (0..10_000).map(|_| Box::pin(stuck()) as _).collect();
    for future in &mut in_flight {
        let _ = future.as_mut().poll(&mut context);
    }
    let _manhole = manhole::Options::new().verbose(false).install().unwrap();
    println!("ready");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop(in_flight);
}

/// The child's CPU time (user and system), from `/proc/PID/stat`.
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let used: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    Duration::from_secs_f64(used / ticks)
}

struct Session {
    writer: UnixStream,
    reader: BufReader<UnixStream>,
    id: u64,
}

impl Session {
    fn ask(&mut self, method: &str, params: &str) -> serde_json::Value {
        self.id += 1;
        writeln!(
            self.writer,
            r#"{{"jsonrpc":"2.0","id":{},"method":"{method}","params":{params}}}"#,
            self.id
        )
        .unwrap();
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap()
    }
}

/// One round, as the dashboard makes it.
fn round(session: &mut Session, newest: &mut u64) {
    session.ask("top", r#"{"seconds":1}"#);
    let tasks = session.ask("tasks", "{}");
    assert!(tasks["result"]["tasks"].as_array().unwrap().len() >= 10_000);
    session.ask("stats", r#"{"window_s":1}"#);
    session.ask("runtime", "{}");
    session.ask("log", "{}");
    let events = session.ask("log", &format!(r#"{{"after":{newest}}}"#));
    if let Some(seq) = events["result"]["newest"].as_u64() {
        *newest = seq;
    }
    session.ask("stalls", "{}");
}

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let mut child = Running(
        Command::new(std::env::current_exe().unwrap())
            .env(CHILD, "1")
            .env_remove("MANHOLE")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let mut ready = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut ready)
        .unwrap();
    assert_eq!(ready.trim(), "ready");
    std::thread::sleep(Duration::from_secs(1));

    let before = cpu(pid);
    std::thread::sleep(WINDOW);
    let alone = cpu(pid) - before;

    let stream = UnixStream::connect(format!("/tmp/manhole-{pid}")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut session = Session {
        writer: stream.try_clone().unwrap(),
        reader: BufReader::new(stream),
        id: 0,
    };
    let mut newest = 0;
    // A first round reads what later rounds reuse (the symbol-free
    // listings are all there is), then the measured ones.
    round(&mut session, &mut newest);
    let before = cpu(pid);
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < WINDOW {
        round(&mut session, &mut newest);
        rounds += 1;
    }
    let watched = cpu(pid) - before;
    let elapsed = started.elapsed();
    let share = |used: Duration, over: Duration| 100.0 * used.as_secs_f64() / over.as_secs_f64();
    println!(
        "1000 idle threads, 10000 calls in flight: left alone {:.2} % of a core over {} s; watched by the dashboard's rounds at 1 s ({rounds} rounds) {:.2} % of a core; the dashboard's cost {:.2} % of a core (target at most 1 %)",
        share(alone, WINDOW),
        WINDOW.as_secs(),
        share(watched, elapsed),
        share(watched, elapsed) - share(alone, WINDOW),
    );
}
