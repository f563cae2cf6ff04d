//! A hundred dumps, and a wall-clock profile, of threads blocked in poll,
//! epoll_wait, select, nanosleep, a pipe read and a futex: not one of their
//! calls returns EINTR, and every dump and profile still shows the blocking
//! call and its Rust caller.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(10);

/// The example, killed when the test ends, however it ends.
struct Blocking {
    child: Child,
    socket: PathBuf,
}

impl Blocking {
    /// Started listening at a socket of its own, named for `test`.
    fn start(test: &str) -> Blocking {
        let socket =
            std::env::temp_dir().join(format!("manhole-blocking-{}-{test}", std::process::id()));
        let child = Command::new(env!("CARGO_BIN_EXE_blocking"))
            .env(
                "MANHOLE",
                format!("socket_path={},verbose=false", socket.display()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the blocking example");
        let started = Instant::now();
        while !socket.exists() {
            assert!(
                started.elapsed() < TIMEOUT,
                "no socket at {}",
                socket.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Blocking { child, socket }
    }
}

impl Drop for Blocking {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.socket);
    }
}

struct Session {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Session {
    fn open(path: &Path) -> Session {
        let stream = UnixStream::connect(path).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        stream.set_write_timeout(Some(TIMEOUT)).unwrap();
        Session {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            next_id: 1,
        }
    }

    fn result(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        writeln!(self.writer, "{request}").unwrap();
        let mut line = String::new();
        let read = self.reader.read_line(&mut line).expect("a reply in time");
        assert!(read > 0, "the session closed");
        let mut response: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(response["id"], id, "{response}");
        response
            .get_mut("result")
            .map(Value::take)
            .unwrap_or_else(|| panic!("an error: {response}"))
    }
}

const BLOCKED: [(&str, &str); 8] = [
    ("poll", "blocked_in_poll"),
    ("epoll_wait", "blocked_in_epoll_wait"),
    ("select", "blocked_in_select"),
    ("nanosleep", "blocked_in_nanosleep"),
    ("pipe_read", "blocked_reading_a_pipe"),
    ("futex", "blocked_on_a_futex"),
    ("accept", "blocked_in_accept"),
    ("recv", "blocked_in_recv"),
];

#[test]
fn a_hundred_dumps_interrupt_no_blocked_call() {
    let blocking = Blocking::start("dumps");
    let mut session = Session::open(&blocking.socket);
    every_thread_blocked_once(&mut session);
    let mut by_proc = 0;
    for _ in 0..100 {
        let stacks = session.result("stacks", json!({}));
        for (name, caller) in BLOCKED {
            let thread = stacks["threads"]
                .as_array()
                .unwrap()
                .iter()
                .find(|thread| thread["name"] == name)
                .unwrap_or_else(|| panic!("no thread {name} in {stacks}"));
            let functions: Vec<&str> = thread["frames"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|frame| frame["function"].as_str())
                .collect();
            // The libc wrapper of the call, then the Rust function that made it.
            let at_caller = functions
                .iter()
                .position(|function| function.ends_with(caller))
                .unwrap_or_else(|| panic!("{name}: no {caller} in {functions:?}"));
            assert!(
                at_caller >= 1,
                "{name}: the blocking call is missing: {functions:?}"
            );
            by_proc += usize::from(thread["captured_with"] == "proc");
        }
    }
    let interrupted = session.result("get", json!({"name": "eintr"}));
    for (name, _) in BLOCKED {
        assert_eq!(interrupted[name], 0, "{name} saw EINTR: {interrupted}");
    }
    // A thread caught between two calls is running, and takes the signal
    // without harm; nearly every capture is still the quiet one.
    assert!(by_proc >= 550, "only {by_proc} of 600 captures were quiet");
}

/// Waits until every thread has reached its blocking call once.
fn every_thread_blocked_once(session: &mut Session) {
    let started = Instant::now();
    while session.result("get", json!({"name": "calls"}))["futex"] == 0 {
        assert!(started.elapsed() < TIMEOUT, "the threads never blocked");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_wall_profile_samples_blocked_threads_and_interrupts_none() {
    let blocking = Blocking::start("wall");
    let mut session = Session::open(&blocking.socket);
    every_thread_blocked_once(&mut session);
    let profile = session.result(
        "profile",
        json!({"seconds": 3, "hz": 99, "mode": "wall", "per_thread": true}),
    );
    let folded = profile["data"].as_str().unwrap();
    for (name, caller) in BLOCKED {
        let ticks: u64 = folded
            .lines()
            .filter(|line| line.starts_with(&format!("{name};")) && line.contains(caller))
            .map(|line| line.rsplit_once(' ').unwrap().1.parse::<u64>().unwrap())
            .sum();
        // 3 s at 99 Hz is 297 looks; a loaded machine may make fewer.
        assert!(
            ticks >= 150,
            "{name}: {ticks} samples in {caller}: {profile}"
        );
    }
    let interrupted = session.result("get", json!({"name": "eintr"}));
    for (name, _) in BLOCKED {
        assert_eq!(interrupted[name], 0, "{name} saw EINTR: {interrupted}");
    }
    // No look was skipped: the main thread, asleep in `std::thread::sleep`,
    // is taken from `/proc` too; and the manhole's own threads are not in
    // the profile.
    assert_eq!(profile["skipped"], 0, "{profile}");
    assert_eq!(profile["skipped_threads"], json!([]), "{profile}");
    assert!(
        folded.lines().any(|line| line.starts_with("blocking;")),
        "the main thread: {profile}"
    );
    assert!(
        !folded.lines().any(|line| line.starts_with("manhole")),
        "a manhole thread in the profile: {profile}"
    );
}
