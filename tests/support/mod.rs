//! Helpers for the end-to-end tests: start an example process, connect to
//! its socket with timeouts, and talk text or JSON to it.
//!
//! Every read has a timeout, and every child is killed (and its socket
//! removed) when its `Service` is dropped, including when a test fails.

#![allow(dead_code)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const PROMPT: &str = "manhole> ";

/// The path of a built example. `cargo test` builds the examples before
/// it runs the tests.
pub fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .to_owned();
    let path = deps.parent().unwrap().join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing; run the tests with `cargo test --workspace`, which builds the examples",
        path.display()
    );
    path
}

/// The built `manhole-cli`, beside the examples.
pub fn cli() -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let cli = deps.parent().unwrap().parent().unwrap().join("manhole-cli");
    assert!(
        cli.exists(),
        "{} is missing; run the tests with `cargo test --workspace`",
        cli.display()
    );
    cli
}

/// A unique scratch path for this test process.
pub fn scratch(name: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("manhole-t{}-{name}", std::process::id()));
    remove_if_socket_or_file(&path);
    path
}

fn remove_if_socket_or_file(path: &Path) {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_socket() || meta.is_file() || meta.file_type().is_symlink() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Whether the test runs as root, which acting as another uid or making
/// namespaces needs. CI runs as root, so there a test never skips: it
/// fails instead.
pub fn running_as_root(needs: &str) -> bool {
    // SAFETY: geteuid cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must run as root: {needs} needs it"
    );
    eprintln!("skipped: {needs} needs root (CI runs as root)");
    false
}

/// Turns core dumps off for `command`'s process, which a test makes
/// crash on purpose.
pub fn without_core_dumps(command: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        command.pre_exec(|| {
            let none = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            Ok(())
        })
    }
}

pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

pub fn is_socket(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_socket())
}

/// A running example process.
pub struct Service {
    child: Child,
    pub pid: u32,
    pub socket: PathBuf,
    stdout: Arc<Mutex<String>>,
    stderr: Arc<Mutex<String>>,
    stdin: Option<ChildStdin>,
}

pub fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    text
}

impl Service {
    /// `examples/service`, listening on `/tmp/manhole-<pid>`.
    pub fn start() -> Service {
        let service = Self::spawn("service", &[], None);
        service.wait_for_socket();
        service
    }

    /// Any example, with arguments; `socket` is where it will listen, or
    /// `None` for the default `/tmp/manhole-<pid>`.
    pub fn spawn(name: &str, args: &[&str], socket: Option<&Path>) -> Service {
        Self::spawn_with_env(name, args, &[], socket)
    }

    /// As [`Service::spawn`], with environment variables set.
    pub fn spawn_with_env(
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        socket: Option<&Path>,
    ) -> Service {
        let mut command = Command::new(example(name));
        command
            .args(args)
            .env_remove("MANHOLE")
            .envs(env.iter().copied());
        Self::spawn_command(command, socket)
    }

    /// Runs `command`, which must become an example (a shell that `exec`s
    /// one, say), with its pipes taken as [`Service::spawn`] takes them.
    /// The environment is the caller's to set.
    pub fn spawn_command(mut command: Command, socket: Option<&Path>) -> Service {
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env_remove("RUST_BACKTRACE")
            .spawn()
            .expect("start the example");
        let pid = child.id();
        let socket = socket.map_or_else(
            || PathBuf::from(format!("/tmp/manhole-{pid}")),
            Path::to_owned,
        );
        Service {
            stdout: collect(child.stdout.take().unwrap()),
            stderr: collect(child.stderr.take().unwrap()),
            stdin: child.stdin.take(),
            child,
            pid,
            socket,
        }
    }

    pub fn wait_for_socket(&self) {
        wait_until(&format!("{} to appear", self.socket.display()), || {
            is_socket(&self.socket)
        });
    }

    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stdout holds `needle`, and returns all of stdout.
    pub fn wait_for_stdout(&self, needle: &str) -> String {
        wait_until(
            &format!("{needle:?} on stdout (have {:?})", self.stdout()),
            || self.stdout().contains(needle),
        );
        self.stdout()
    }

    pub fn wait_for_stderr(&self, needle: &str) -> String {
        wait_until(
            &format!("{needle:?} on stderr (have {:?})", self.stderr()),
            || self.stderr().contains(needle),
        );
        self.stderr()
    }

    pub fn send_stdin(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn is_alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the example did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn text(&self) -> Text {
        Text::connect(&self.socket)
    }

    pub fn json(&self) -> Json {
        Json::connect(&self.socket)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        remove_if_socket_or_file(&self.socket);
    }
}

pub fn connect(path: &Path) -> UnixStream {
    let stream = UnixStream::connect(path)
        .unwrap_or_else(|err| panic!("connect to {}: {err}", path.display()));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(TIMEOUT)).unwrap();
    stream
}

/// Reads until end of input (or the timeout, which fails the test).
pub fn read_to_end(stream: &mut UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream
        .read_to_end(&mut out)
        .expect("read until the server closes");
    out
}

/// A text session.
pub struct Text {
    pub stream: UnixStream,
    pending: Vec<u8>,
}

impl Text {
    /// Connects and reads the greeting, up to and including the prompt.
    pub fn connect(path: &Path) -> Text {
        let mut text = Text::connect_silent(path);
        text.greeting();
        text
    }

    /// Connects and reads nothing.
    pub fn connect_silent(path: &Path) -> Text {
        Text {
            stream: connect(path),
            pending: Vec::new(),
        }
    }

    pub fn greeting(&mut self) -> String {
        self.until_prompt()
    }

    /// Everything up to the next prompt, without it.
    pub fn until_prompt(&mut self) -> String {
        let mut buf = [0u8; 65536];
        loop {
            if let Some(end) = find(&self.pending, PROMPT.as_bytes()) {
                let answer: Vec<u8> = self.pending.drain(..end + PROMPT.len()).take(end).collect();
                return String::from_utf8(answer).expect("the server writes UTF-8");
            }
            // A dump in this test process may interrupt the read; a
            // socket read with a timeout is not restarted, so read again.
            let n = loop {
                match self.stream.read(&mut buf) {
                    Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                    read => break read.expect("read a reply before the timeout"),
                }
            };
            assert!(
                n > 0,
                "the server closed the session; had {:?}",
                String::from_utf8_lossy(&self.pending)
            );
            self.pending.extend_from_slice(&buf[..n]);
        }
    }

    /// What has arrived so far, waiting briefly for more; for answers that
    /// do not end with a prompt, such as `watch`.
    pub fn peek_pending(&mut self) -> String {
        let mut buf = [0u8; 65536];
        self.stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        if let Ok(n) = self.stream.read(&mut buf) {
            self.pending.extend_from_slice(&buf[..n]);
        }
        self.stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    pub fn send(&mut self, line: &str) {
        self.stream.write_all(line.as_bytes()).unwrap();
        self.stream.write_all(b"\n").unwrap();
    }

    /// Sends a line and returns the reply, without the prompt after it.
    pub fn ask(&mut self, line: &str) -> String {
        self.send(line);
        self.until_prompt()
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// A JSON-RPC session.
pub struct Json {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    next_id: u64,
}

impl Json {
    pub fn connect(path: &Path) -> Json {
        let stream = connect(path);
        Json {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            next_id: 1,
        }
    }

    pub fn send_raw(&mut self, line: &[u8]) {
        self.writer.write_all(line).unwrap();
        self.writer.write_all(b"\n").unwrap();
    }

    pub fn read_response(&mut self) -> Value {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .expect("read a response before the timeout");
        assert!(n > 0, "the server closed the session");
        serde_json::from_str(&line)
            .unwrap_or_else(|err| panic!("response {line:?} is not JSON: {err}"))
    }

    /// Whether the server closes the session without a response (false
    /// when a response comes; the timeout fails the test).
    pub fn closed_without_answer(&mut self) -> bool {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => true,
            Ok(_) => false,
            Err(err) => {
                assert!(
                    !matches!(
                        err.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ),
                    "the session stayed open"
                );
                true
            }
        }
    }

    /// Sends a raw line and reads one response.
    pub fn raw(&mut self, line: &[u8]) -> Value {
        self.send_raw(line);
        self.read_response()
    }

    /// Calls a method and returns the whole response, after checking its
    /// envelope.
    pub fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self.raw(request.to_string().as_bytes());
        assert_eq!(response["jsonrpc"], "2.0", "{response}");
        assert_eq!(response["id"], id, "{response}");
        response
    }

    /// The `result` of a call that must succeed.
    pub fn result(&mut self, method: &str, params: Value) -> Value {
        let response = self.request(method, params);
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    /// The `error` of a call that must fail.
    pub fn error(&mut self, method: &str, params: Value) -> Value {
        let response = self.request(method, params);
        assert!(
            response.get("result").is_none(),
            "{method} succeeded: {response}"
        );
        response["error"].clone()
    }
}

/// The tids of the threads of `pid` named `name`.
pub fn threads_named(pid: u32, name: &str) -> Vec<u32> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks
                .filter_map(|task| {
                    let task = task.ok()?;
                    let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
                    (comm.trim() == name).then(|| task.file_name().to_str()?.parse().ok())?
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A field of `/proc/<pid>/task/<tid>/status`, such as `SigBlk`.
pub fn task_status(pid: u32, tid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| {
            line.strip_prefix(key)?
                .strip_prefix(':')
                .map(|value| value.trim().to_owned())
        })
        .unwrap_or_else(|| panic!("no {key} in status"))
}

pub fn send_signal(pid: u32, signal: i32) {
    // SAFETY: sending a signal to a child process of this test.
    assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
}

/// A child process that is killed and reaped when dropped, so that a
/// failing test leaves nothing running.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How a command that ran to its end finished.
#[derive(Debug)]
pub struct Finished {
    /// The exit code; `None` when a signal ended it.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` with stdin closed and its output collected, waiting at
/// most `limit`: past that it is killed and the test fails.
pub fn run_with_timeout(command: &mut Command, limit: Duration) -> Finished {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // A binary copied just now (the other-user tests copy manhole-cli) can
    // be briefly "busy": a child another test forked meanwhile still holds
    // the copy's write descriptor until it execs. That passes; retry.
    let mut attempts = 0;
    let mut child = loop {
        match command.spawn() {
            Ok(child) => break ChildGuard(child),
            Err(err) if err.raw_os_error() == Some(libc::ETXTBSY) && attempts < 100 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(err) => panic!("start {command:?}: {err}"),
        }
    };
    let stdout = collect(child.0.stdout.take().unwrap());
    let stderr = collect(child.0.stderr.take().unwrap());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{command:?} did not finish within {limit:?}; stdout {:?}, stderr {:?}",
            stdout.lock().unwrap(),
            stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // The pipes close when the child exits; the collectors finish soon after.
    let output = |text: &Arc<Mutex<String>>| {
        let settle = Instant::now() + Duration::from_secs(2);
        while Arc::strong_count(text) > 1 && Instant::now() < settle {
            std::thread::sleep(Duration::from_millis(5));
        }
        text.lock().unwrap().clone()
    };
    Finished {
        code: status.code(),
        stdout: output(&stdout),
        stderr: output(&stderr),
    }
}

/// A pid that no process has: a child's, after it exited and was reaped.
pub fn dead_pid() -> u32 {
    loop {
        let mut child = Command::new("true").spawn().expect("run `true`");
        let pid = child.id();
        child.wait().unwrap();
        if !Path::new(&format!("/proc/{pid}")).exists() {
            return pid;
        }
    }
}
