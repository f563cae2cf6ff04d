//! The built `manhole-cli` against real example processes: one-shot
//! commands and their exit codes, `--json`, `list`, `--signal`, a custom
//! socket path, every connection error, and the interactive session
//! through a pseudo-terminal.
//!
//! Every child is killed when its guard drops, every run of the CLI has a
//! deadline, and nothing is asserted by sleeping.

#[path = "../../tests/support/mod.rs"]
mod support;

mod cli_support;

use cli_support::{assert_exit, cli, cli_command, stdout_json, ScratchDir, CLI_LIMIT};
use manhole_wire::{Builtin, Reason};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{dead_pid, run_with_timeout, scratch, wait_until, Finished, Service};

/// How long one run of the CLI may take before the test fails.
/// Another user, for the ownership checks (which need root to set up).
const NOBODY: u32 = 65534;

/// Held by tests that leave a stale `/tmp/manhole-N` socket for a moment,
/// and by the test that runs `list --clean`, which would remove it.
static STALE_SOCKETS: Mutex<()> = Mutex::new(());

fn stale_sockets_lock() -> std::sync::MutexGuard<'static, ()> {
    STALE_SOCKETS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Held by the test whose `oneshot_on` manhole serves one session per
/// signal, and by any test that runs `--all`, which connects to every live
/// manhole on the machine and would use that one session up.
static ONE_SESSION: Mutex<()> = Mutex::new(());

fn one_session_lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_SESSION
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the CLI to its end.
/// Runs the CLI as another user (root only). The binary is copied where
/// any user may run it, since the build directory may be private.
fn cli_as(uid: u32, args: &[&str]) -> Finished {
    let dir = ScratchDir::new(&format!("bin-{uid}"));
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    let binary = dir.0.join("manhole-cli");
    std::fs::copy(cli_support::CLI, &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut command = Command::new(&binary);
    command
        .args(args)
        .env_remove("NO_COLOR")
        .env_remove("XDG_STATE_HOME")
        .env("HOME", "/nonexistent")
        .current_dir("/")
        .uid(uid)
        .gid(uid);
    run_with_timeout(&mut command, CLI_LIMIT)
}

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A socket file that is removed when dropped.
struct SocketFile(PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A socket at `path` that nothing listens on any more: bound, then closed
/// without removing the file, as a killed process leaves it.
fn stale_socket(path: &Path) -> SocketFile {
    let _ = std::fs::remove_file(path);
    drop(UnixListener::bind(path).unwrap());
    SocketFile(path.to_owned())
}

/// A directory that is removed with its contents when dropped.
/// The example service, running with `MANHOLE=off`: a process of ours with
/// no manhole socket.
fn service_without_manhole() -> Service {
    let service = Service::spawn_with_env("service", &[], &[("MANHOLE", "off")], None);
    service.wait_for_stdout("service running");
    service
}

fn pid_arg(service: &Service) -> String {
    service.pid.to_string()
}

#[test]
fn one_command_prints_what_a_text_session_prints() {
    let service = Service::start();
    let pid = pid_arg(&service);

    let run = cli(&[&pid, "call", "add", "40", "2"]);
    assert_exit(&run, 0);
    assert_eq!(run.stdout, "42\n");
    assert_eq!(run.stderr, "");

    // Each word reaches the command exactly as given, quotes and all.
    let words = ["two words", "it's \"quoted\" \\ $HOME"];
    let run = cli(&[&pid, "call", "echo", words[0], words[1]]);
    assert_exit(&run, 0);
    assert_eq!(
        serde_json::from_str::<Vec<String>>(run.stdout.trim()).unwrap(),
        words
    );

    for line in [["list"].as_slice(), &["help", "add"], &["get", "CONFIG"]] {
        let run = cli(&[[pid.as_str()].as_slice(), line].concat());
        assert_exit(&run, 0);
        assert_eq!(run.stdout, service.text().ask(&line.join(" ")), "{line:?}");
    }

    let run = cli(&[&pid, "get", "REQUESTS"]);
    assert_exit(&run, 0);
    assert!(run.stdout.trim().parse::<u64>().is_ok(), "{run:?}");

    let run = cli(&[&pid, "stacks"]);
    assert_exit(&run, 0);
    assert!(run.stdout.contains("\"manhole\""), "{run:?}");
    assert!(run.stdout.contains("service::main"), "{run:?}");

    // Options may also come first; a bare command name is called.
    let run = cli(&["--timeout", "5s", &pid, "add", "1", "2"]);
    assert_exit(&run, 0);
    assert_eq!(run.stdout, "3\n");
}

#[test]
fn an_error_reply_exits_1_with_the_message_on_stderr() {
    let service = Service::start();
    let pid = pid_arg(&service);
    let run = cli(&[&pid, "divide", "1", "0"]);
    assert_exit(&run, 1);
    assert_eq!(run.stdout, "");
    // Not a terminal, so never coloured.
    assert_eq!(
        run.stderr,
        "error: `divide` returned an error: cannot divide 1 by zero\n"
    );

    let run = cli(&[&pid, "reload_cofig"]);
    assert_exit(&run, 1);
    assert!(
        run.stderr
            .starts_with("error: unknown command `reload_cofig`; did you mean `reload_config`?"),
        "{run:?}"
    );
    let run = cli(&[&pid, "get", "A", "B"]);
    assert_exit(&run, 1);
    assert_eq!(run.stderr, "error: usage: get [NAME]\n");
    let run = cli(&[&pid, "get"]);
    assert_exit(&run, 0);
    assert!(run.stdout.starts_with("inspected (get NAME):\n"), "{run:?}");
}

#[test]
fn json_prints_the_result_or_the_error_object() {
    let service = Service::start();
    let pid = pid_arg(&service);
    let json = |run: &Finished| -> Value {
        serde_json::from_str(&run.stdout).unwrap_or_else(|err| panic!("{err}: {run:?}"))
    };

    let run = cli(&["--json", &pid, "call", "add", "40", "2"]);
    assert_exit(&run, 0);
    assert_eq!(json(&run), 42);

    let run = cli(&[&pid, "--json", "get", "CONFIG"]);
    assert_exit(&run, 0);
    assert_eq!(json(&run)["workers"], 2);

    let run = cli(&["--json", &pid, "threads"]);
    assert_exit(&run, 0);
    let threads = json(&run)["threads"].as_array().unwrap().clone();
    assert!(threads.iter().any(|thread| thread["name"] == "manhole"));

    let run = cli(&["--json", &pid, "list"]);
    assert_exit(&run, 0);
    assert!(json(&run)["commands"]
        .as_array()
        .unwrap()
        .iter()
        .any(|command| command["name"] == "reload_config"));

    let run = cli(&["--json", &pid, "help", "add"]);
    assert_exit(&run, 0);
    assert_eq!(json(&run)["signature"], "add(a: i64, b: i64) -> i64");

    // A bare NAME ARGS is a call.
    let run = cli(&["--json", &pid, "add", "1", "x"]);
    assert_exit(&run, 1);
    let error = json(&run);
    assert_eq!(error["code"], -32602);
    assert_eq!(error["data"]["argument"], "b");
    assert!(
        run.stderr.starts_with("error: argument `b` of `add`"),
        "{run:?}"
    );

    let run = cli(&["--json", &pid, "get", "nothing_here"]);
    assert_exit(&run, 1);
    assert_eq!(json(&run)["code"], -32601);

    let run = cli(&["--json", &pid, "get", "A", "B"]);
    assert_exit(&run, 1);
    assert_eq!(json(&run)["message"], "usage: get [NAME]");
}

/// With `--json`, a bare name is asked as the text protocol asks it: a
/// `call` marked `bare`, which the server reads as the inspected item of
/// that name.
#[test]
fn json_reads_a_bare_inspected_name_as_the_item() {
    let service = Service::start();
    let pid = pid_arg(&service);

    // Over text a bare name has always read the item.
    let run = cli(&[&pid, "CONFIG"]);
    assert_exit(&run, 0);
    assert_eq!(run.stdout, service.text().ask("get CONFIG"));

    let item = cli(&["--json", &pid, "get", "CONFIG"]);
    assert_exit(&item, 0);
    let run = cli(&["--json", &pid, "CONFIG"]);
    assert_exit(&run, 0);
    assert_eq!(stdout_json(&run), stdout_json(&item));
    assert_eq!(stdout_json(&run)["workers"], 2);

    // Named with `call`, it is still a command that was asked for.
    let run = cli(&["--json", &pid, "call", "CONFIG"]);
    assert_exit(&run, 1);
    assert_eq!(stdout_json(&run)["code"], Reason::WrongKind.code());
}

/// `watch` and `quit` have no JSON method: `--json` answers them with the
/// failure the server gives for those methods, without sending them.
#[test]
fn json_refuses_text_only_commands_as_an_error_reply() {
    let service = Service::start();
    let pid = pid_arg(&service);
    for (words, builtin) in [
        (&["watch", "REQUESTS", "0.5"][..], Builtin::Watch),
        (&["quit"], Builtin::Quit),
        (&["exit"], Builtin::Quit),
    ] {
        let run = cli(&[&["--json", pid.as_str()][..], words].concat());
        assert_exit(&run, 1);
        let expected = manhole_wire::text_only(builtin);
        let error = stdout_json(&run);
        assert_eq!(error, expected.to_json(), "{words:?}");
        assert_eq!(error["data"]["reason"], Reason::TextOnly.as_str());
        assert_eq!(run.stderr, format!("error: {}\n", expected.one_line()));
    }
    // The server refuses the method with the same code.
    let refused = service.json().error(Builtin::Watch.name(), json!({}));
    assert_eq!(refused["code"], Reason::TextOnly.code());
}

/// `--json` prints the server's error object as it came, not a copy
/// rebuilt from the fields this client reads.
#[test]
fn json_prints_the_servers_error_object_unchanged() {
    let service = Service::start();
    let pid = pid_arg(&service);
    let mut server = service.json();
    for (words, method, params) in [
        (
            &["get", "nothing_here"][..],
            "get",
            json!({"name": "nothing_here"}),
        ),
        (
            &["call", "add", "1", "x"],
            "call",
            json!({"name": "add", "args": ["1", "x"]}),
        ),
        (
            &["call", "divide", "1", "0"],
            "call",
            json!({"name": "divide", "args": ["1", "0"]}),
        ),
    ] {
        let run = cli(&[&["--json", pid.as_str()][..], words].concat());
        assert_exit(&run, 1);
        assert_eq!(stdout_json(&run), server.error(method, params), "{words:?}");
    }
}

/// The CLI running with its stdin piped, its stdout collected as it comes.
struct Running {
    child: support::ChildGuard,
    stdout: Arc<Mutex<String>>,
}

impl Running {
    fn start(args: &[&str], stdin: std::process::Stdio) -> Running {
        let mut child = support::ChildGuard(
            cli_command(args)
                .stdin(stdin)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap(),
        );
        let mut pipe = child.0.stdout.take().unwrap();
        let stdout = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stdout);
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buffer) {
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buffer[..n]));
            }
        });
        Running { child, stdout }
    }

    fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Waits until stdout has `count` lines, and returns them.
    fn lines(&self, count: usize) -> Vec<String> {
        wait_until(&format!("{count} lines on stdout"), || {
            self.stdout().lines().count() >= count
        });
        self.stdout().lines().map(str::to_owned).collect()
    }

    fn is_running(&mut self) -> bool {
        self.child.0.try_wait().unwrap().is_none()
    }

    /// Waits for it to exit, and returns its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let deadline = Instant::now() + CLI_LIMIT;
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "manhole-cli did not exit; stdout {:?}",
                self.stdout()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `[ELAPSED] VALUE`, as the client reprints a one-line item.
fn reprinted_value(line: &str) -> Option<&str> {
    let (elapsed, value) = line.strip_prefix('[')?.split_once("s] ")?;
    elapsed.parse::<f64>().ok()?;
    Some(value)
}

#[test]
fn a_one_shot_watch_reprints_a_real_item_until_a_line_arrives() {
    let service = Service::start();
    let pid = pid_arg(&service);
    let mut watching = Running::start(
        &[&pid, "watch", "REQUESTS", "0.1"],
        std::process::Stdio::piped(),
    );
    let lines = watching.lines(4);
    assert_eq!(
        lines[0],
        "watching `REQUESTS` every 0.1s; send a line to stop"
    );
    let mut previous = 0;
    for line in &lines[1..4] {
        let value = reprinted_value(line).unwrap_or_else(|| panic!("{lines:?}"));
        // The server's count, which only grows.
        let count: u64 = value.parse().unwrap_or_else(|_| panic!("{lines:?}"));
        assert!(count >= previous, "{lines:?}");
        previous = count;
    }
    assert!(watching.is_running(), "it waits for a line");

    let mut stdin = watching.child.0.stdin.take().unwrap();
    stdin.write_all(b"\n").unwrap();
    stdin.flush().unwrap();
    assert_eq!(watching.exit_code(), Some(0));
    drop(stdin);
}

/// A script that starts `watch` with no input means it to run until it is
/// killed: the end of stdin is not a line.
#[test]
fn a_one_shot_watch_outlives_the_end_of_its_input() {
    let service = Service::start();
    let pid = pid_arg(&service);
    let mut watching = Running::start(
        &[&pid, "watch", "REQUESTS", "0.1"],
        std::process::Stdio::null(),
    );
    let lines = watching.lines(3);
    assert!(reprinted_value(&lines[2]).is_some(), "{lines:?}");
    assert!(watching.is_running(), "{lines:?}");
}

/// The row of `list` for `pid`, split into columns.
fn list_row(listing: &str, pid: u32) -> Option<Vec<String>> {
    listing.lines().skip(1).find_map(|line| {
        let columns: Vec<String> = line.split_whitespace().map(str::to_owned).collect();
        (columns.first()? == &pid.to_string()).then_some(columns)
    })
}

#[test]
fn list_shows_live_waiting_and_stale_and_clean_removes_only_stale() {
    let _lock = stale_sockets_lock();
    let live = Service::start();
    let waiting = Service::spawn_with_env("service", &[], &[("MANHOLE", "activate_on=USR1")], None);
    waiting.wait_for_stderr("waiting for SIGUSR1");
    let dead = dead_pid();
    let stale = stale_socket(&PathBuf::from(format!("/tmp/manhole-{dead}")));

    let run = cli(&["list"]);
    assert_exit(&run, 0);
    let header: Vec<&str> = run
        .stdout
        .lines()
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["PID", "USER", "EXECUTABLE", "SOCKET", "STATE"]);
    let user = support_user_name();
    let row = list_row(&run.stdout, live.pid).expect("the live service is listed");
    assert_eq!(
        row,
        [
            live.pid.to_string(),
            user.clone(),
            support::example("service").display().to_string(),
            live.socket.display().to_string(),
            "live".to_owned()
        ]
    );
    let row = list_row(&run.stdout, waiting.pid).expect("the waiting service is listed");
    assert_eq!(row[3..], ["-", "waiting"]);
    let row = list_row(&run.stdout, dead).expect("the stale socket is listed");
    assert_eq!(
        row,
        [
            dead.to_string(),
            user,
            "-".to_owned(),
            stale.0.display().to_string(),
            "stale".to_owned()
        ]
    );

    let run = run_with_timeout(
        cli_command(&["ps", "--json"]).env("NO_COLOR", "1"),
        CLI_LIMIT,
    );
    assert_exit(&run, 0);
    let rows: Vec<Value> = serde_json::from_str(&run.stdout).unwrap();
    let row = |pid: u32| {
        rows.iter()
            .find(|row| row["pid"] == pid)
            .unwrap_or_else(|| panic!("{pid} not in {rows:?}"))
    };
    assert_eq!(row(live.pid)["state"], "live");
    assert_eq!(row(live.pid)["socket"], live.socket.display().to_string());
    assert_eq!(row(waiting.pid)["state"], "waiting");
    assert_eq!(row(waiting.pid)["socket"], Value::Null);
    assert_eq!(row(dead)["state"], "stale");

    let run = cli(&["list", "--prune"]);
    assert_exit(&run, 0);
    assert!(
        run.stdout
            .contains(&format!("removed stale socket {}\n", stale.0.display())),
        "{run:?}"
    );
    // How many, counting any other stale socket of ours that was there.
    assert!(
        run.stderr.contains("manhole-cli: removed ")
            && run.stderr.contains(" of yours whose process is gone"),
        "{run:?}"
    );
    assert!(!stale.0.exists(), "the stale socket is removed");
    assert!(support::is_socket(&live.socket), "the live socket is kept");
    let run = cli(&["list"]);
    assert!(list_row(&run.stdout, dead).is_none(), "{run:?}");
    assert!(list_row(&run.stdout, live.pid).is_some(), "{run:?}");
}

fn support_user_name() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |user| user.name)
}

#[test]
fn a_signal_wakes_an_activate_on_manhole() {
    let mut service =
        Service::spawn_with_env("service", &[], &[("MANHOLE", "activate_on=USR1")], None);
    service.wait_for_stderr("waiting for SIGUSR1");
    let pid = pid_arg(&service);

    // Asleep: the error says what to do.
    let run = cli(&[&pid, "stacks"]);
    assert_exit(&run, 2);
    assert!(run.stderr.contains("has no manhole socket"), "{run:?}");
    assert!(run.stderr.contains("dormant `manhole` thread"), "{run:?}");
    assert!(run.stderr.contains(&format!("-s USR1 {pid}")), "{run:?}");

    // A signal it does not handle would kill it, so it is not sent.
    let run = cli(&["-s", "USR2", &pid, "stacks"]);
    assert_exit(&run, 2);
    assert!(run.stderr.contains("does not handle SIGUSR2"), "{run:?}");
    assert!(service.is_alive());

    let run = cli(&[
        "-s",
        "SIGUSR1",
        "--timeout",
        "10s",
        &pid,
        "call",
        "add",
        "2",
        "3",
    ]);
    assert_exit(&run, 0);
    assert_eq!(run.stdout, "5\n");
    assert!(service.socket.exists());
    // Later signals change nothing; the CLI still connects.
    let run = cli(&["-s", "10", &pid, "add", "3", "4"]);
    assert_exit(&run, 0);
    assert_eq!(run.stdout, "7\n");
}

#[test]
fn a_signal_opens_a_oneshot_manhole_each_time() {
    let _one_session = one_session_lock();
    let service = Service::spawn_with_env("service", &[], &[("MANHOLE", "oneshot_on=USR2")], None);
    service.wait_for_stderr("to open one session on");
    let pid = pid_arg(&service);
    for round in 1..=2 {
        let run = cli(&["-s", "USR2", &pid, "add", "1", &round.to_string()]);
        assert_exit(&run, 0);
        assert_eq!(run.stdout, format!("{}\n", round + 1));
        wait_until("the one-shot socket to go away", || {
            !service.socket.exists()
        });
    }
}

#[test]
fn a_custom_socket_path_is_found_through_proc() {
    let dir = ScratchDir::new("custom");
    let socket = dir.0.join("x-manhole.sock");
    let setting = format!("socket_path={}", socket.display());
    let service = Service::spawn_with_env("service", &[], &[("MANHOLE", &setting)], Some(&socket));
    service.wait_for_socket();
    assert!(!Path::new(&format!("/tmp/manhole-{}", service.pid)).exists());

    let run = cli(&[&pid_arg(&service), "call", "add", "20", "22"]);
    assert_exit(&run, 0);
    assert_eq!(run.stdout, "42\n");

    let run = cli(&["list"]);
    let row = list_row(&run.stdout, service.pid).expect("listed");
    assert_eq!(row[3..], [socket.display().to_string(), "live".to_owned()]);

    // The path works as well as the pid.
    let run = cli(&[socket.to_str().unwrap(), "get", "CONFIG"]);
    assert_exit(&run, 0);
    assert!(run.stdout.starts_with("{\"log_level\""), "{run:?}");
}

#[test]
fn no_such_process_exits_2() {
    let dead = dead_pid().to_string();
    let run = cli(&[&dead, "stacks"]);
    assert_exit(&run, 2);
    assert_eq!(
        run.stderr,
        format!("manhole-cli: no process with pid {dead}; `manhole-cli list` shows the processes that have a manhole\n")
    );
    assert_eq!(run.stdout, "");
}

#[test]
fn a_process_that_dies_while_answering_is_said_to_have_exited() {
    let crashy = Service::spawn("crashy", &["panic-thread"], None);
    crashy.wait_for_stdout("ready");
    crashy.wait_for_socket();
    let pid = crashy.pid.to_string();
    let run = cli(&[&pid, "call", "exit_while_answering"]);
    assert_exit(&run, 2);
    assert_eq!(
        run.stderr,
        format!("manhole-cli: pid {pid} exited while answering\n"),
        "{run:#?}"
    );
}

#[test]
fn another_users_process_is_not_connected_to() {
    if !root() {
        let init_uid = std::fs::read_to_string("/proc/1/status")
            .ok()
            .and_then(|status| {
                status.lines().find_map(|line| {
                    line.strip_prefix("Uid:")?
                        .split_whitespace()
                        .nth(1)?
                        .parse::<u32>()
                        .ok()
                })
            });
        if init_uid == Some(nix::unistd::geteuid().as_raw()) {
            eprintln!("note: skipped: pid 1 is ours here, and only root can act as another user");
            return;
        }
        let run = cli(&["1", "stacks"]);
        assert_exit(&run, 2);
        assert!(run.stderr.contains("pid 1 ("), "{run:?}");
        assert!(
            run.stderr.contains("run manhole-cli as that user"),
            "{run:?}"
        );
        return;
    }
    // As root, the CLI itself runs as another user against root's process.
    let service = Service::start();
    let run = cli_as(NOBODY, &[&pid_arg(&service), "stacks"]);
    assert_exit(&run, 2);
    assert!(
        run.stderr.contains(&format!(
            "pid {} (service) belongs to root (uid 0), and you are",
            service.pid
        )),
        "{run:?}"
    );
    assert!(run.stderr.contains("(uid 65534)"), "{run:?}");
}

#[test]
fn a_socket_planted_by_another_user_is_refused() {
    if !root() {
        eprintln!("note: skipped: giving a socket to another user needs root (CI runs as root)");
        return;
    }
    // A process of ours without a manhole, and another user's socket at its
    // default path, listening.
    let service = service_without_manhole();
    let path = PathBuf::from(format!("/tmp/manhole-{}", service.pid));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let planted = SocketFile(path.clone());
    std::os::unix::fs::chown(&planted.0, Some(NOBODY), Some(NOBODY)).unwrap();

    let run = cli(&[&pid_arg(&service), "stacks"]);
    assert_exit(&run, 2);
    assert_eq!(
        run.stderr,
        format!(
            "manhole-cli: {} is owned by uid 65534, but pid {} runs as uid 0; refusing to connect to a socket that another user may have planted\n",
            path.display(),
            service.pid
        )
    );
    // Nothing connected to it.
    listener.set_nonblocking(true).unwrap();
    assert!(listener.accept().is_err(), "the CLI connected");

    // By path, a user other than its owner is refused it too (root is not:
    // root may connect to any socket by path).
    let run = cli_as(1000, &[path.to_str().unwrap(), "stacks"]);
    assert_exit(&run, 2);
    assert!(
        run.stderr
            .contains("is owned by uid 65534, not by you (uid 1000)"),
        "{run:?}"
    );
}

#[test]
fn a_process_without_a_manhole_has_no_socket() {
    let service = service_without_manhole();
    let run = cli(&[&pid_arg(&service), "stacks"]);
    assert_exit(&run, 2);
    assert!(
        run.stderr.contains(&format!(
            "pid {} (service) has no manhole socket",
            service.pid
        )),
        "{run:?}"
    );
    assert!(run.stderr.contains("try `-s USR1`"), "{run:?}");
}

#[test]
fn a_stale_socket_is_reported() {
    let _lock = stale_sockets_lock();
    let service = service_without_manhole();
    let stale = stale_socket(&PathBuf::from(format!("/tmp/manhole-{}", service.pid)));
    let run = cli(&[&pid_arg(&service), "stacks"]);
    assert_exit(&run, 2);
    assert!(
        run.stderr.starts_with(&format!(
            "manhole-cli: {} is a stale socket: the file is there but nothing accepts connections on it",
            stale.0.display()
        )),
        "{run:?}"
    );
    let run = cli(&[stale.0.to_str().unwrap(), "stacks"]);
    assert_exit(&run, 2);
    assert!(run.stderr.contains("is a stale socket"), "{run:?}");
}

#[test]
fn a_server_that_closes_without_a_byte_refused_us() {
    let path = scratch("closes.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let _file = SocketFile(path.clone());
    let server = std::thread::spawn(move || {
        // Accept one connection and hang up at once, as a manhole does to
        // another user.
        let (stream, _) = listener.accept().unwrap();
        drop(stream);
    });
    let run = cli(&[path.to_str().unwrap(), "stacks"]);
    assert_exit(&run, 2);
    assert_eq!(
        run.stderr,
        format!("manhole-cli: the server at {} refused us: it closed the connection without sending a byte, which a manhole does to any user but its own; this is probably another user's manhole, so connect as that user (or as root)\n", path.display())
    );
    server.join().unwrap();
}

#[test]
fn a_real_manhole_refuses_another_user() {
    if !root() {
        eprintln!("note: skipped: acting as another user needs root (CI runs as root)");
        return;
    }
    // Root's manhole whose socket file was given to nobody: nobody may
    // open the file, and the server then refuses nobody.
    let service = Service::start();
    std::os::unix::fs::chown(&service.socket, Some(NOBODY), Some(NOBODY)).unwrap();
    let run = cli_as(NOBODY, &[service.socket.to_str().unwrap(), "stacks"]);
    assert_exit(&run, 2);
    assert!(run.stderr.contains("refused us"), "{run:?}");
    service.wait_for_stderr("refused a connection");
}

#[test]
fn a_server_that_never_answers_times_out() {
    let path = scratch("silent.sock");
    // Listening but never accepting: the connection is made (the backlog
    // takes it) and no reply ever comes.
    let _listener = UnixListener::bind(&path).unwrap();
    let _file = SocketFile(path.clone());
    let started = Instant::now();
    let run = cli(&["--timeout", "300ms", path.to_str().unwrap(), "stacks"]);
    assert_exit(&run, 2);
    assert_eq!(
        run.stderr,
        format!("manhole-cli: timed out after 300ms waiting for a reply from {}; raise --timeout if the process is just slow\n", path.display())
    );
    assert!(started.elapsed() < CLI_LIMIT);
}

#[test]
fn a_path_that_is_not_a_socket_is_refused() {
    let path = scratch("regular-file");
    std::fs::write(&path, "not a socket").unwrap();
    let _file = SocketFile(path.clone());
    let run = cli(&[path.to_str().unwrap(), "stacks"]);
    assert_exit(&run, 2);
    assert!(
        run.stderr.contains("is a regular file, not a socket"),
        "{run:?}"
    );

    let run = cli(&["/nonexistent/manhole.sock"]);
    assert_exit(&run, 2);
    assert!(run.stderr.contains("does not exist"), "{run:?}");
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["list", "stacks"][..],
        &["list", "-s", "USR1"],
        &["123", "--clean"],
        &["123", "--json"],
        &["--timeout", "soon", "123"],
        &["-s", "USR9", "123"],
        &[],
    ] {
        let run = cli(args);
        assert_exit(&run, 2);
        assert!(run.stderr.starts_with("error: "), "{args:?}: {run:?}");
        assert!(run.stderr.contains("try '--help'"), "{args:?}: {run:?}");
    }
}

/// Runs the CLI with `input` on its stdin, to its end.
fn cli_with_input(args: &[&str], input: &str) -> Finished {
    let mut child = support::ChildGuard(
        cli_command(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stdin = child.0.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    let deadline = Instant::now() + CLI_LIMIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "manhole-cli {args:?} did not finish"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    // It has exited, and its output is small: reading cannot block.
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Finished {
        code: status.code(),
        stdout,
        stderr,
    }
}

#[test]
fn set_stats_and_watch_from_a_script() {
    let service = Service::spawn("instrumented", &[], None);
    service.wait_for_socket();
    let pid = pid_arg(&service);

    let run = cli(&[&pid, "set", "LIMIT", "250"]);
    assert_exit(&run, 0);
    assert_eq!(run.stdout, "LIMIT = 250 (was 100)\n");
    let run = cli(&[&pid, "set", "SETTINGS", r#"{"mode": "fast", "retries": 5}"#]);
    assert_exit(&run, 0);
    assert!(
        run.stdout
            .starts_with(r#"SETTINGS = {"mode":"fast","retries":5}"#),
        "{run:?}"
    );
    let run = cli(&["--json", &pid, "set", "LIMIT", "300"]);
    assert_exit(&run, 0);
    let result: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(result, serde_json::json!({"previous": 250, "value": 300}));
    let run = cli(&[&pid, "set", "SEEN", "3"]);
    assert_exit(&run, 1);
    assert!(
        run.stderr.starts_with("error: `SEEN` is not writable"),
        "{run:?}"
    );

    let run = cli(&["--json", &pid, "stats", "--sort", "calls"]);
    assert_exit(&run, 0);
    let stats: Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        stats["functions"]
            .as_array()
            .is_some_and(|rows| !rows.is_empty()),
        "{stats}"
    );
    let run = cli(&[&pid, "stats"]);
    assert_exit(&run, 0);
    assert!(run.stdout.starts_with("NAME "), "{run:?}");

    // The client runs `watch` itself; a line on stdin stops it.
    let run = cli_with_input(&[&pid, "watch", "LIMIT", "0.1"], "\n");
    assert_exit(&run, 0);
    // One reprint, `[ELAPSED] VALUE`, then the line stopped it.
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{run:?}");
    assert_eq!(lines[0], "watching `LIMIT` every 0.1s; send a line to stop");
    assert!(
        lines[1].starts_with('[') && lines[1].ends_with("s] 300"),
        "{run:?}"
    );
    // The server still checks the arguments.
    let run = cli(&[&pid, "watch", "LIMIT", "0.01"]);
    assert_exit(&run, 1);
    assert!(
        run.stderr.starts_with("error: the interval must be"),
        "{run:?}"
    );
    // An item that cannot be read: its error alone, on stderr, as for any
    // refused command; no heading that promises a watch.
    let run = cli_with_input(&[&pid, "watch", "NOTHING"], "\n");
    assert_exit(&run, 1);
    assert_eq!(run.stdout, "", "{run:?}");
    assert_eq!(
        run.stderr,
        "error: unknown inspected item `NOTHING`; `list` shows what is registered\n"
    );
}

#[test]
fn a_busy_manhole_says_so() {
    let service = Service::spawn_with_env("service", &[], &[("MANHOLE", "max_sessions=1")], None);
    service.wait_for_socket();
    // The one session it allows: the listener takes connections in
    // order, so this one is counted before the CLI's.
    let _only_session = support::connect(&service.socket);
    let run = cli(&[&pid_arg(&service), "stacks"]);
    assert_exit(&run, 2);
    assert!(
        run.stderr.contains(&format!(
            "the server at {} ended the session: busy: 1 sessions are open",
            service.socket.display()
        )),
        "{run:?}"
    );
}

mod interactive {
    use super::*;
    use expectrl::WaitStatus;
    use expectrl::{ControlCode, Eof, Regex, Session};

    fn spawn(service: &Service, state: &Path, no_color: bool) -> Session {
        let mut command = cli_command(&[&pid_arg(service)]);
        command.env("XDG_STATE_HOME", state).env("TERM", "xterm");
        if no_color {
            command.env("NO_COLOR", "1");
        }
        let mut session = Session::spawn(command).expect("start manhole-cli on a terminal");
        session.set_expect_timeout(Some(support::TIMEOUT));
        session
    }

    /// Waits for the CLI to exit and returns its status.
    fn exit_status(session: &mut Session) -> WaitStatus {
        let deadline = Instant::now() + CLI_LIMIT;
        loop {
            let status = session.get_process().status().unwrap();
            if status != WaitStatus::StillAlive {
                return status;
            }
            assert!(Instant::now() < deadline, "manhole-cli did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn a_session_on_a_terminal() {
        let service = Service::start();
        let state = ScratchDir::new("state");
        let mut session = spawn(&service, &state.0, false);
        let prompt = format!("manhole {}> ", service.pid);

        session.expect("\"manhole\"").unwrap();
        session
            .expect("type `help` for commands, `quit` to leave")
            .unwrap();
        session.expect(prompt.as_str()).unwrap();

        session.send_line("call add 40 2").unwrap();
        session.expect("\r\n42\r\n").unwrap();
        session.expect(prompt.as_str()).unwrap();

        // Completion of a command name, then of an inspected name after `get`.
        session.send("reload_c\t").unwrap();
        session.expect("reload_config").unwrap();
        session.send("\r").unwrap();
        session
            .expect("reloaded configuration, now version 2")
            .unwrap();
        session.expect(prompt.as_str()).unwrap();
        session.send("get REQ\t").unwrap();
        session.expect("REQUESTS").unwrap();
        session.send("\r").unwrap();
        session.expect(prompt.as_str()).unwrap();

        // An error reply, in red on a terminal.
        session.send_line("divide 1 0").unwrap();
        session
            .expect("\x1b[31merror: `divide` returned an error: cannot divide 1 by zero\x1b[0m")
            .unwrap();
        session.expect(prompt.as_str()).unwrap();

        // `watch`, run by the client, until a line is sent.
        session.send_line("watch REQUESTS 0.1").unwrap();
        session
            .expect("watching `REQUESTS` every 0.1s; send a line to stop")
            .unwrap();
        session.expect(Regex(r"\[\d+\.\ds\] \d+")).unwrap();
        session.send("\r").unwrap();
        session.expect(prompt.as_str()).unwrap();

        // Ctrl-C drops the line; the session goes on.
        session.send("add 1 1").unwrap();
        session.send(ControlCode::EndOfText).unwrap();
        session.expect(prompt.as_str()).unwrap();
        session.send_line("help add").unwrap();
        session.expect("Add two numbers.").unwrap();
        session.expect(prompt.as_str()).unwrap();

        session.send(ControlCode::EndOfTransmission).unwrap();
        session.expect(Eof).unwrap();
        assert!(matches!(
            exit_status(&mut session),
            WaitStatus::Exited(_, 0)
        ));

        let history =
            std::fs::read_to_string(state.0.join("manhole").join("history")).expect("history");
        for line in ["call add 40 2", "divide 1 0", "help add"] {
            assert!(
                history.lines().any(|saved| saved == line),
                "{line:?} in {history:?}"
            );
        }
        assert!(!history.contains("add 1 1"), "a cancelled line is not kept");
    }

    #[test]
    fn ctrl_c_cancels_the_running_command_and_twice_at_the_prompt_leaves() {
        let service = Service::start();
        let state = ScratchDir::new("state-ctrl-c");
        let mut session = spawn(&service, &state.0, true);
        let prompt = format!("manhole {}> ", service.pid);
        session.expect(prompt.as_str()).unwrap();

        // `top 20` holds its session for 20 s; Ctrl-C cuts it off.
        session.send_line("top 20").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let sent = Instant::now();
        session.send(ControlCode::EndOfText).unwrap();
        session.expect("^C: cancelled").unwrap();
        session.expect(prompt.as_str()).unwrap();
        assert!(
            sent.elapsed() < Duration::from_secs(5),
            "not cancelled at once"
        );
        // The session goes on, on a new connection, which is not taken for
        // one the server ended even after a pause longer than the server
        // waits before greeting a silent client as a person.
        std::thread::sleep(Duration::from_millis(800));
        session.send_line("call add 40 2").unwrap();
        let answer = session.expect(prompt.as_str()).unwrap();
        let answer = String::from_utf8_lossy(answer.before()).into_owned();
        assert!(answer.contains("\r\n42\r\n"), "{answer}");
        assert!(!answer.contains("ended the session"), "{answer}");

        // Once at the prompt: a hint; twice in a row: the session ends.
        session.send(ControlCode::EndOfText).unwrap();
        session.expect("Ctrl-C again, or Ctrl-D, to leave").unwrap();
        session.send(ControlCode::EndOfText).unwrap();
        session.expect(Eof).unwrap();
        assert!(matches!(
            exit_status(&mut session),
            WaitStatus::Exited(_, 0)
        ));
    }

    #[test]
    fn quit_leaves_and_no_color_is_plain() {
        let service = Service::start();
        let state = ScratchDir::new("state-plain");
        let mut session = spawn(&service, &state.0, true);
        let prompt = format!("manhole {}> ", service.pid);
        session.expect(prompt.as_str()).unwrap();
        session.send_line("divide 1 0").unwrap();
        let answer = session.expect(prompt.as_str()).unwrap();
        let answer = String::from_utf8_lossy(answer.before());
        assert!(
            answer.contains("\nerror: `divide` returned an error: cannot divide 1 by zero"),
            "{answer:?}"
        );
        assert!(!answer.contains("\x1b[31m"), "{answer:?}");
        session.send_line("quit").unwrap();
        session.expect(Eof).unwrap();
        assert!(matches!(
            exit_status(&mut session),
            WaitStatus::Exited(_, 0)
        ));
    }

    #[test]
    fn a_session_the_server_ended_is_opened_again() {
        let service =
            Service::spawn_with_env("service", &[], &[("MANHOLE", "idle_timeout=1s")], None);
        service.wait_for_socket();
        let state = ScratchDir::new("state-idle");
        let mut session = spawn(&service, &state.0, true);
        let prompt = format!("manhole {}> ", service.pid);
        session.expect(prompt.as_str()).unwrap();
        wait_until("the server to end the idle session", || {
            support::threads_named(service.pid, "manhole-session").is_empty()
        });
        session.send_line("add 1 1").unwrap();
        session
            .expect("the server had ended the session (no complete line within 1 s (idle_timeout); closing the session); reconnected")
            .unwrap();
        session.expect("\r\n2\r\n").unwrap();
        session.expect(prompt.as_str()).unwrap();
        session.send_line("exit").unwrap();
        session.expect(Eof).unwrap();
        assert!(matches!(
            exit_status(&mut session),
            WaitStatus::Exited(_, 0)
        ));
    }

    #[test]
    fn an_unwritable_history_is_a_warning() {
        let service = Service::start();
        let state = ScratchDir::new("state-blocked");
        // A file where the directory should be: history cannot be kept.
        std::fs::write(state.0.join("manhole"), "").unwrap();
        let mut session = spawn(&service, &state.0, true);
        let prompt = format!("manhole {}> ", service.pid);
        session.expect("warning: could not create").unwrap();
        session.expect(prompt.as_str()).unwrap();
        session.send_line("add 2 2").unwrap();
        session.expect("\r\n4\r\n").unwrap();
        // Ctrl-D only once the editor reads again: sent between lines, the
        // terminal's own line discipline would take it.
        session.expect(prompt.as_str()).unwrap();
        session.send(ControlCode::EndOfTransmission).unwrap();
        session.expect(Eof).unwrap();
        assert!(matches!(
            exit_status(&mut session),
            WaitStatus::Exited(_, 0)
        ));
    }
}

/// No raw ESC from a server reaches stdout or stderr: in text, in
/// `--json` (which stays valid JSON) and in an error.
#[test]
fn a_servers_escape_sequences_are_shown_escaped() {
    use cli_support::{fake_server, Hostile, HOSTILE_TEXT};
    let path = scratch("escapes.sock");
    let _listener = fake_server(&path, Hostile::Escapes);
    let _file = SocketFile(path.clone());
    let run = cli(&[path.to_str().unwrap(), "threads"]);
    assert_exit(&run, 0);
    assert!(
        !run.stdout.contains('\u{1b}') && !run.stdout.contains('\u{9b}'),
        "{run:?}"
    );
    assert!(run.stdout.contains("name\\e]52;c;SGVsbG8=\\x07"), "{run:?}");
    let json = cli(&["--json", path.to_str().unwrap(), "threads"]);
    assert_exit(&json, 0);
    assert!(
        !json.stdout.chars().any(|c| c.is_control() && c != '\n'),
        "{json:?}"
    );
    assert_eq!(stdout_json(&json)["threads"][0]["name"], HOSTILE_TEXT);
}

/// A server that streams one endless line: the CLI stops reading at
/// `--max-reply` (or its deadline), with a clear error and bounded memory.
#[test]
fn an_endless_reply_line_is_cut_off() {
    use cli_support::{fake_server, Hostile};
    let path = scratch("endless.sock");
    let _listener = fake_server(&path, Hostile::EndlessLine);
    let _file = SocketFile(path.clone());
    let started = Instant::now();
    let mut command = cli_command(&["--timeout", "2s", path.to_str().unwrap(), "threads"]);
    // SAFETY: setrlimit is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            let bound = libc::rlimit {
                rlim_cur: 512 << 20,
                rlim_max: 512 << 20,
            };
            libc::setrlimit(libc::RLIMIT_AS, &bound);
            Ok(())
        });
    }
    let run = run_with_timeout(&mut command, CLI_LIMIT);
    assert!(started.elapsed() < Duration::from_secs(10), "{run:?}");
    assert_exit(&run, 2);
    assert!(
        run.stderr.contains("longer than") || run.stderr.contains("timed out"),
        "{run:?}"
    );
    let small = cli(&["--max-reply", "1M", path.to_str().unwrap(), "threads"]);
    assert_exit(&small, 2);
    assert!(
        small
            .stderr
            .contains("a reply line longer than 1048576 bytes (--max-reply)"),
        "{small:?}"
    );
}

/// A server that answers only with stale ids is not waited on for ever.
#[test]
fn a_server_repeating_stale_ids_is_given_up_on() {
    use cli_support::{fake_server, Hostile};
    let path = scratch("stale-ids.sock");
    let _listener = fake_server(&path, Hostile::StaleIds);
    let _file = SocketFile(path.clone());
    let run = cli(&["--timeout", "2s", path.to_str().unwrap(), "threads"]);
    assert_exit(&run, 2);
    assert!(run.stderr.contains("unexpected id"), "{run:?}");
}

/// `symbolize` opens only regular files: a FIFO planted under a module's
/// name does not hang it; and a report's control characters are printed
/// escaped.
#[test]
fn symbolize_opens_only_regular_files_and_escapes_the_report() {
    let dir = ScratchDir::new("symbolize-fifo");
    let fifo = dir.join("app");
    let fifo_c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo with a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo_c.as_ptr(), 0o600) }, 0);
    let report = dir.join("report.txt");
    std::fs::write(
        &report,
        format!(
            "manhole crash report (raw): SIGSEGV (SEGV_MAPERR) at address 0x0, thread 7 \"evil\u{1b}]0;TITLE\u{7}\"\n\
             executable: {0}\n\
             \n\
             crashing thread:\n\
             thread 7 \"evil\u{1b}[2K\" (crashed)\n  #0 0x1010 {0}+0x10\n\
             \n\
             end of manhole crash report\n",
            fifo.display()
        ),
    )
    .unwrap();
    let run = cli(&["symbolize", report.to_str().unwrap()]);
    assert_exit(&run, 0);
    assert!(run.stderr.contains("not a regular file"), "{run:?}");
    assert!(!run.stdout.contains('\u{1b}'), "{run:?}");
    assert!(run.stdout.contains("evil\\e]0;TITLE\\x07"), "{run:?}");
    let refused = cli(&["symbolize", fifo.to_str().unwrap()]);
    assert_exit(&refused, 2);
    assert!(refused.stderr.contains("not a regular file"), "{refused:?}");
}

/// A service in PID and mount namespaces of its own, with its own tmpfs
/// `/tmp`, as a container runs it: its socket is `/tmp/manhole-1` inside.
struct Container {
    unshare: std::process::Child,
    /// The service's pid as the host sees it.
    pid: i32,
}

impl Container {
    fn start(manhole: &str) -> Option<Container> {
        Self::start_prepared(manhole, "true")
    }

    /// [`Container::start`], with `prepare` run in the container's new
    /// `/tmp` first.
    fn start_prepared(manhole: &str, prepare: &str) -> Option<Container> {
        if !support::running_as_root("making namespaces") {
            return None;
        }
        // The binary is opened before the new `/tmp` hides it (the
        // checkout may live under `/tmp`), and run by its descriptor.
        let script = format!(
            "exec 3< '{}' && mount -t tmpfs tmpfs /tmp && mkdir -p /tmp/{} && {prepare} && MANHOLE={manhole} exec /proc/self/fd/3",
            support::example("service").display(),
            "d".repeat(77),
        );
        let unshare = Command::new("unshare")
            .args(["--pid", "--fork", "--mount", "--mount-proc", "sh", "-c"])
            .arg(script)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("unshare (util-linux)");
        let mut container = Container { unshare, pid: 0 };
        let unshare_pid = container.unshare.id();
        wait_until("the containerised service", || {
            let children =
                std::fs::read_to_string(format!("/proc/{unshare_pid}/task/{unshare_pid}/children"))
                    .unwrap_or_default();
            container.pid = children
                .split_whitespace()
                .next()
                .and_then(|pid| pid.parse().ok())
                .unwrap_or(0);
            container.pid != 0
                && std::fs::read_link(format!("/proc/{}/exe", container.pid))
                    .is_ok_and(|exe| exe == support::example("service"))
                && std::fs::read_dir(format!("/proc/{}/root/tmp", container.pid)).is_ok_and(
                    |mut entries| {
                        entries.any(|entry| {
                            entry.is_ok_and(|entry| {
                                entry.file_name().to_string_lossy().contains("manhole")
                            })
                        })
                    },
                )
        });
        Some(container)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // The service is its namespace's init, which SIGTERM does not end.
        if self.pid != 0 {
            // SAFETY: kill sends a signal to a process this test started.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
        }
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// From the host, `manhole-cli HOSTPID` reaches a service in a container:
/// its socket, `/tmp/manhole-1` in its own `/tmp`, through
/// `/proc/HOSTPID/root`.
#[test]
fn a_service_in_its_own_pid_and_mount_namespaces_is_reached_by_its_host_pid() {
    let Some(container) = Container::start("verbose=false") else {
        return;
    };
    let status = std::fs::read_to_string(format!("/proc/{}/status", container.pid)).unwrap();
    assert!(
        status.contains(&format!("NSpid:\t{}\t1", container.pid)),
        "{status}"
    );
    let run = cli(&[&container.pid.to_string(), "threads"]);
    assert_exit(&run, 0);
    // (Its main thread is named after the descriptor it was run by.)
    for name in ["manhole", "worker-0", "worker-1"] {
        assert!(run.stdout.contains(name), "{name} missing: {run:?}");
    }
    // `list` shows it by both pids, with its mount namespace (it shares
    // the host's cgroup) as the container's name.
    let mount_namespace = std::fs::read_link(format!("/proc/{}/ns/mnt", container.pid))
        .unwrap()
        .display()
        .to_string();
    let run = cli(&["list"]);
    assert_exit(&run, 0);
    let row = run
        .stdout
        .lines()
        .find(|line| line.starts_with(&format!("{} (", container.pid)))
        .unwrap_or_else(|| panic!("no row for {}: {run:?}", container.pid));
    assert!(
        row.starts_with(&format!("{} (1 in {mount_namespace})", container.pid)),
        "{row}"
    );
    assert!(row.ends_with("live"), "{row}");
    let run = cli(&["list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let entry = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["pid"] == container.pid)
        .unwrap_or_else(|| panic!("{rows}"));
    assert_eq!(entry["own_pid"], 1, "{entry}");
    assert_eq!(entry["container"], mount_namespace.as_str(), "{entry}");
    // `--all` reaches it with the others.
    let run = {
        let _one_session = one_session_lock();
        cli(&["--all", "--json", "get", "REQUESTS"])
    };
    let answers: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert!(
        answers
            .as_array()
            .unwrap()
            .iter()
            .any(|answer| answer["pid"] == container.pid && answer["result"].is_u64()),
        "{answers}"
    );
}

/// A manhole that listens, but whose socket its own namespace no longer
/// shows (a tmpfs mounted over the container's `/tmp` after it started):
/// the error says so, and does not advise waking a dormant manhole.
#[test]
fn a_listening_socket_out_of_reach_is_not_called_dormant() {
    let Some(container) = Container::start("verbose=false") else {
        return;
    };
    let pid = container.pid.to_string();
    let mut mount = Command::new("nsenter");
    mount.args(["-t", &pid, "-m", "mount", "-t", "tmpfs", "tmpfs", "/tmp"]);
    let mounted = run_with_timeout(&mut mount, CLI_LIMIT);
    assert_exit(&mounted, 0);
    let run = cli(&[&pid, "info"]);
    assert_exit(&run, 2);
    assert!(
        run.stderr
            .contains("it listens on /tmp/manhole-1 in its own mount namespace"),
        "{run:?}"
    );
    assert!(
        run.stderr
            .contains(&format!("/proc/{pid}/root/tmp/manhole-1 cannot be reached")),
        "{run:?}"
    );
    assert!(!run.stderr.contains("dormant"), "{run:?}");
}

/// A service in a user namespace of its own whose root is uid 100000 on
/// the host (as a rootless container's is), which does not map host root:
/// its manhole would see root on the host as the overflow uid. The test
/// writes the maps, as a container runtime does, then the service becomes
/// that namespace's root and runs.
fn start_in_a_user_namespace() -> Option<Service> {
    if !support::running_as_root("making a user namespace") {
        return None;
    }
    let pipe = || {
        let mut ends = [0; 2];
        // SAFETY: pipe2 fills the two descriptors.
        assert_eq!(
            unsafe { libc::pipe2(ends.as_mut_ptr(), libc::O_CLOEXEC) },
            0
        );
        ends
    };
    let [ready_read, ready_write] = pipe();
    let [go_read, go_write] = pipe();
    let mut command = Command::new(support::example("service"));
    command.env("MANHOLE", "verbose=false");
    // SAFETY: between fork and exec only system calls: the child leaves
    // for a new user namespace, says its pid, waits for its maps, and
    // becomes that namespace's root.
    unsafe {
        command.pre_exec(move || {
            let failed = std::io::Error::last_os_error;
            if libc::unshare(libc::CLONE_NEWUSER) != 0 {
                return Err(failed());
            }
            let pid = libc::getpid();
            libc::write(ready_write, (&raw const pid).cast(), 4);
            let mut go = 0u8;
            if libc::read(go_read, (&raw mut go).cast(), 1) != 1 {
                return Err(failed());
            }
            if libc::setresgid(0, 0, 0) != 0 || libc::setresuid(0, 0, 0) != 0 {
                return Err(failed());
            }
            Ok(())
        });
    }
    let mapper = std::thread::spawn(move || {
        let mut ready = libc::pollfd {
            fd: ready_read,
            events: libc::POLLIN,
            revents: 0,
        };
        let mut pid: libc::pid_t = 0;
        // SAFETY: a poll with a timeout, then a read of four bytes.
        let got = unsafe {
            libc::poll(&mut ready, 1, 10_000) == 1
                && libc::read(ready_read, (&raw mut pid).cast(), 4) == 4
        };
        assert!(got, "the child did not enter its user namespace");
        for map in ["uid_map", "gid_map"] {
            std::fs::write(format!("/proc/{pid}/{map}"), "0 100000 65536\n").unwrap();
        }
        // SAFETY: one byte to our own pipe.
        unsafe { libc::write(go_write, [1u8].as_ptr().cast(), 1) };
        for fd in [ready_read, go_write] {
            // SAFETY: our own descriptors, no longer used.
            unsafe { libc::close(fd) };
        }
    });
    let service = Service::spawn_command(command, None);
    mapper.join().unwrap();
    for fd in [ready_write, go_read] {
        // SAFETY: our own descriptors; the child has its copies.
        unsafe { libc::close(fd) };
    }
    service.wait_for_socket();
    Some(service)
}

/// Root on the host joins the service's user namespace and connects as its
/// user there; another user is refused with the reason, and the server is
/// untouched.
#[test]
fn a_service_in_a_user_namespace_is_reached_by_root_and_refuses_others() {
    let Some(service) = start_in_a_user_namespace() else {
        return;
    };
    let pid = service.pid.to_string();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("Uid:\t100000\t100000"), "{status}");
    // A plain connection is seen as the overflow uid, and refused.
    let mut plain = UnixStream::connect(&service.socket).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut refused = String::new();
    let _ = plain.read_to_string(&mut refused);
    assert!(!refused.contains("manhole>"), "{refused}");
    let run = cli(&[&pid, "info"]);
    assert_exit(&run, 0);
    assert!(run.stdout.contains(&format!("pid       {pid}")), "{run:?}");
    // Another user of the host, who did not make the namespace.
    let run = cli_as(4242, &[&pid, "info"]);
    assert_exit(&run, 2);
    assert!(
        run.stderr.contains("runs in a user namespace of its own")
            && run
                .stderr
                .contains("the namespace was made by another user, and you are uid 4242")
            && run
                .stderr
                .contains("only root on the host or that user may join it"),
        "{run:?}"
    );
    let run = cli(&[&pid, "get", "REQUESTS"]);
    assert_exit(&run, 0);
}

/// A `socket_path` through an absolute symbolic link inside the container
/// is resolved in the container's root: the CLI reaches the service, and
/// never the host's file of the same name (a decoy listens there).
#[test]
fn a_symlink_inside_a_container_is_resolved_in_its_root() {
    let real = format!("/tmp/manhole-real-{}", std::process::id());
    let link = format!("/tmp/manhole-link-{}", std::process::id());
    let prepare = format!("mkdir {real} && ln -s {real} {link}");
    let socket_path = format!("{link}/manhole.sock");
    let Some(container) = Container::start_prepared(
        &format!("socket_path={socket_path},verbose=false"),
        &prepare,
    ) else {
        return;
    };
    // The host's own file of that name: a listening socket of root's.
    std::fs::create_dir_all(&real).unwrap();
    let decoy = UnixListener::bind(format!("{real}/manhole.sock")).unwrap();
    decoy.set_nonblocking(true).unwrap();
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _remove = Remove(real.clone());
    wait_until("the service's socket", || {
        support::is_socket(Path::new(&format!(
            "/proc/{}/root{real}/manhole.sock",
            container.pid
        )))
    });
    let run = cli(&[&container.pid.to_string(), "info"]);
    assert_exit(&run, 0);
    assert!(run.stdout.contains("pid       1"), "{run:?}");
    assert!(decoy.accept().is_err(), "the host's decoy was connected to");
}

/// A `socket_path` inside the container that is too long for `sun_path`
/// once it is prefixed with `/proc/PID/root`: reached all the same.
#[test]
fn a_long_socket_path_inside_a_container_is_reached() {
    let inside = format!("/tmp/{}/manhole.sock", "d".repeat(77));
    let Some(container) = Container::start(&format!("socket_path={inside},verbose=false")) else {
        return;
    };
    let seen = format!("/proc/{}/root{inside}", container.pid);
    assert!(seen.len() > 107, "{seen}");
    let run = cli(&[&container.pid.to_string(), "info"]);
    assert_exit(&run, 0);
    assert!(run.stdout.contains("pid       1"), "{run:?}");
}

/// A debug sidecar's view: the same PID namespace, a mount namespace (and
/// `/tmp`) of its own. `manhole-cli PID info` finds the socket through the
/// target's root.
#[test]
fn a_cli_in_a_mount_namespace_of_its_own_reaches_the_service() {
    if !support::running_as_root("making namespaces") {
        return;
    }
    let service = Service::start();
    // The CLI is opened before the new `/tmp` hides it (the checkout may
    // live under `/tmp`), and run by its descriptor.
    let script = format!(
        "exec 3< '{}' && mount -t tmpfs tmpfs /tmp && exec /proc/self/fd/3 {} info",
        cli_support::CLI,
        service.pid
    );
    let mut command = Command::new("unshare");
    command.args(["--mount", "sh", "-c"]).arg(script);
    let run = run_with_timeout(&mut command, CLI_LIMIT);
    assert_exit(&run, 0);
    assert!(
        run.stdout.contains(&format!("pid       {}", service.pid)),
        "{run:?}"
    );
}
