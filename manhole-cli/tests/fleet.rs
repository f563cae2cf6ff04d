//! Many processes and hosts: `--stdio` driven directly, `--all` on this
//! machine, and `--ssh` through a real OpenSSH server on 127.0.0.1 that
//! each test starts for itself (a private config, a temporary host key and
//! authorized key, a free port), with the built binary as the remote
//! manhole-cli. Two "hosts" are that one server reached as `127.0.0.1` and
//! as `localhost`.
//!
//! Every child (services, the CLI, sshd and the connections it forks) is
//! killed when its guard drops, every read has a deadline, and nothing is
//! asserted by sleeping.

#[path = "../../tests/support/mod.rs"]
mod support;

mod cli_support;

use cli_support::{assert_exit, cli, cli_command, stdout_json, ScratchDir, CLI, CLI_LIMIT};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{dead_pid, run_with_timeout, wait_until, ChildGuard, Finished, Service};

/// Held by every test that runs `--all` (which reaches every live manhole
/// on the machine) and by every test that makes a manhole misbehave on
/// purpose, so that one never sees the other's.
static EVERY_MANHOLE: Mutex<()> = Mutex::new(());

fn every_manhole() -> std::sync::MutexGuard<'static, ()> {
    EVERY_MANHOLE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The exit status that `items` (a `--json` array of `--all`) call for:
/// 2 for a process not reached (an `error` with no JSON-RPC `code`), 1 for
/// an error reply, else 0.
fn worst_status(items: &[Value]) -> i32 {
    items
        .iter()
        .map(|item| match item.get("error") {
            None => 0,
            Some(error) if error.get("code").is_some() => 1,
            Some(_) => 2,
        })
        .max()
        .unwrap_or(0)
}

/// The exit status that the text output of `--all` calls for: 2 when a
/// process had its failure on stderr, 1 when an answer under a header is
/// an error, else 0.
fn worst_status_in_text(run: &Finished) -> i32 {
    let lines: Vec<&str> = run.stdout.lines().collect();
    if run
        .stderr
        .lines()
        .any(|line| line.starts_with("manhole-cli: "))
    {
        2
    } else if lines
        .windows(2)
        .any(|pair| pair[0].starts_with("==> ") && pair[1].starts_with("error: "))
    {
        1
    } else {
        0
    }
}

/// The items of `array` for `pid` (and `host`, when given).
fn items_for<'a>(array: &'a [Value], pid: u32, host: Option<&str>) -> Vec<&'a Value> {
    array
        .iter()
        .filter(|item| item["pid"] == pid && host.is_none_or(|host| item["host"] == host))
        .collect()
}

mod stdio {
    use super::*;

    /// `manhole-cli --stdio PID`, its stdout read line by line as it comes.
    struct Bridge {
        child: ChildGuard,
        stdin: Option<std::process::ChildStdin>,
        lines: mpsc::Receiver<String>,
        stderr: Arc<Mutex<String>>,
    }

    impl Bridge {
        fn start(args: &[&str]) -> Bridge {
            let mut child = ChildGuard(
                cli_command(args)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            );
            let stdout = child.0.stdout.take().unwrap();
            let (send, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if send.send(line).is_err() {
                        break;
                    }
                }
            });
            let mut stderr_pipe = child.0.stderr.take().unwrap();
            let stderr = Arc::new(Mutex::new(String::new()));
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = std::io::Read::read_to_string(&mut stderr_pipe, &mut text);
                sink.lock().unwrap().push_str(&text);
            });
            Bridge {
                stdin: child.0.stdin.take(),
                child,
                lines,
                stderr,
            }
        }

        fn send(&mut self, line: &str) {
            let stdin = self.stdin.as_mut().expect("stdin open");
            stdin.write_all(line.as_bytes()).unwrap();
            stdin.write_all(b"\n").unwrap();
            stdin.flush().unwrap();
        }

        fn line(&self) -> String {
            self.lines
                .recv_timeout(support::TIMEOUT)
                .unwrap_or_else(|_| panic!("no line from --stdio within {:?}", support::TIMEOUT))
        }

        /// Lines until one contains `needle`; that one is returned.
        fn line_with(&self, needle: &str) -> String {
            loop {
                let line = self.line();
                if line.contains(needle) {
                    return line;
                }
            }
        }

        fn close_stdin(&mut self) {
            self.stdin = None;
        }

        fn exit_code(&mut self) -> Option<i32> {
            let deadline = Instant::now() + CLI_LIMIT;
            loop {
                if let Some(status) = self.child.0.try_wait().unwrap() {
                    return status.code();
                }
                assert!(
                    Instant::now() < deadline,
                    "--stdio did not end; stderr {:?}",
                    self.stderr.lock().unwrap()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }

    #[test]
    fn a_json_rpc_exchange_passes_through_and_the_end_of_input_ends_it() {
        let service = Service::start();
        let mut bridge = Bridge::start(&["--stdio", &service.pid.to_string()]);
        bridge.send(
            r#"{"jsonrpc":"2.0","id":1,"method":"call","params":{"name":"add","args":[40,2]}}"#,
        );
        let reply: Value = serde_json::from_str(&bridge.line()).unwrap();
        assert_eq!(
            reply,
            serde_json::json!({"id": 1, "jsonrpc": "2.0", "result": 42})
        );
        // Byte for byte: what the server says, as a socket client reads it.
        bridge.send(r#"{"jsonrpc":"2.0","id":2,"method":"get","params":{"name":"CONFIG"}}"#);
        let mut direct = service.json();
        let expected =
            direct.raw(br#"{"jsonrpc":"2.0","id":2,"method":"get","params":{"name":"CONFIG"}}"#);
        assert_eq!(
            serde_json::from_str::<Value>(&bridge.line()).unwrap(),
            expected
        );
        bridge.close_stdin();
        assert_eq!(bridge.exit_code(), Some(0));
    }

    #[test]
    fn the_server_closing_ends_it_while_stdin_stays_open() {
        let service =
            Service::spawn_with_env("service", &[], &[("MANHOLE", "idle_timeout=1s")], None);
        service.wait_for_socket();
        let mut bridge = Bridge::start(&["--stdio", &service.pid.to_string()]);
        bridge.send(
            r#"{"jsonrpc":"2.0","id":1,"method":"call","params":{"name":"add","args":[1,2]}}"#,
        );
        assert!(bridge.line().contains(r#""result":3"#));
        // Silent past idle_timeout: the server says so and hangs up.
        assert!(bridge.line().contains("idle_timeout"));
        assert_eq!(bridge.exit_code(), Some(0));
        assert!(bridge.stdin.is_some(), "stdin was still open");
    }

    #[test]
    fn a_person_who_waits_gets_the_text_greeting() {
        let service = Service::start();
        let mut bridge = Bridge::start(&["--stdio", &service.pid.to_string()]);
        // Nothing is sent: after its grace the bridge connects, and the
        // server, hearing nothing, speaks text.
        let banner = bridge.line_with("manhole ");
        assert!(
            banner.contains(&format!("pid {}", service.pid)),
            "{banner:?}"
        );
        bridge.line_with("type `help` for commands");
        bridge.send("call add 20 22");
        bridge.line_with("42");
        bridge.close_stdin();
        assert_eq!(bridge.exit_code(), Some(0));
    }

    #[test]
    fn what_the_cli_refuses_it_refuses_with_nothing_on_stdout() {
        let dead = dead_pid().to_string();
        let run = cli(&["--stdio", &dead]);
        assert_exit(&run, 2);
        assert_eq!(run.stdout, "");
        assert!(
            run.stderr
                .starts_with(&format!("manhole-cli: no process with pid {dead};")),
            "{run:?}"
        );

        let service = Service::spawn_with_env("service", &[], &[("MANHOLE", "off")], None);
        service.wait_for_stdout("service running");
        let run = cli(&["--stdio", &service.pid.to_string()]);
        assert_exit(&run, 2);
        assert!(run.stderr.contains("has no manhole socket"), "{run:?}");
    }
}

mod all {
    use super::*;

    /// One hostile manhole (this test process's own `/tmp/manhole-PID`,
    /// streaming an endless line) costs only its own row: the real
    /// manhole's answer is printed.
    #[test]
    fn a_hostile_server_costs_only_its_own_row() {
        use cli_support::{fake_server, Hostile};
        let _all = every_manhole();
        let service = Service::start();
        let path = PathBuf::from(format!("/tmp/manhole-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let _listener = fake_server(&path, Hostile::EndlessLine);
        struct Remove(PathBuf);
        impl Drop for Remove {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        let _remove = Remove(path);
        let started = std::time::Instant::now();
        let run = cli(&["--timeout", "2s", "--max-reply", "4M", "--all", "threads"]);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{run:?}"
        );
        let header = format!("==> pid {} (", service.pid);
        assert!(run.stdout.contains(&header), "{run:#?}");
        assert!(
            run.stderr
                .contains(&format!("pid {}: ", std::process::id())),
            "{run:#?}"
        );
        assert_ne!(run.code, Some(0), "{run:#?}");
    }

    #[test]
    fn one_command_on_every_live_manhole_with_a_header_each() {
        let _all = every_manhole();
        let service = Service::start();
        let instrumented = Service::spawn("instrumented", &[], None);
        instrumented.wait_for_socket();

        let run = cli(&["--all", "threads"]);
        for (pid, name) in [(service.pid, "service"), (instrumented.pid, "instrumented")] {
            let header = format!("==> pid {pid} ({}) <==\n", support::example(name).display());
            let start = run
                .stdout
                .find(&header)
                .unwrap_or_else(|| panic!("{header:?} in {run:#?}"));
            let answer = &run.stdout[start + header.len()..];
            assert!(answer.starts_with("    TID  NAME"), "{answer:?}");
            assert!(
                answer.split("\n\n").next().unwrap().contains(" manhole "),
                "{answer:?}"
            );
        }
        // Every live manhole answers `threads`; another user of this
        // machine may have one that is going away, or busy.
        assert_exit(&run, worst_status_in_text(&run));
        let json = cli(&["--all", "--json", "threads"]);
        let items = stdout_json(&json).as_array().unwrap().clone();
        assert_exit(&json, worst_status(&items));
    }

    #[test]
    fn json_items_and_the_worst_exit_status() {
        let _all = every_manhole();
        let service = Service::start();
        let instrumented = Service::spawn("instrumented", &[], None);
        instrumented.wait_for_socket();

        // `add` is one of the service's commands, not the other's.
        let run = cli(&["--json", "--all", "call", "add", "40", "2"]);
        let items = stdout_json(&run).as_array().unwrap().clone();
        let ours = items_for(&items, service.pid, None);
        assert_eq!(
            ours,
            [&serde_json::json!({
                "pid": service.pid,
                "exe": support::example("service").display().to_string(),
                "result": 42,
            })]
        );
        let theirs = items_for(&items, instrumented.pid, None);
        assert_eq!(theirs.len(), 1, "{items:?}");
        assert_eq!(theirs[0]["error"]["data"]["reason"], "unknown");
        assert!(theirs[0]["exe"].as_str().unwrap().ends_with("instrumented"));
        // An error reply: at least 1, whatever else runs on the machine.
        assert!(worst_status(&items) >= 1);
        assert_exit(&run, worst_status(&items));

        let run = cli(&["--all", "call", "add", "40", "2"]);
        assert!(
            run.stdout.contains(&format!(
                "==> pid {} ({}) <==\n42\n",
                service.pid,
                support::example("service").display()
            )),
            "{run:#?}"
        );
        assert!(
            run.stdout.contains(&format!(
                "==> pid {} ({}) <==\nerror: unknown command `add`",
                instrumented.pid,
                support::example("instrumented").display()
            )),
            "{run:#?}"
        );
        assert_exit(&run, worst_status_in_text(&run));
        assert!(worst_status_in_text(&run) >= 1);
    }

    #[test]
    fn a_process_that_cannot_be_reached_makes_it_exit_2() {
        let _all = every_manhole();
        let service = Service::start();
        let busy = Service::spawn_with_env("service", &[], &[("MANHOLE", "max_sessions=1")], None);
        busy.wait_for_socket();
        let _only_session = support::connect(&busy.socket);

        let run = cli(&["--all", "--json", "call", "add", "1", "1"]);
        assert_exit(&run, 2);
        let items = stdout_json(&run).as_array().unwrap().clone();
        let refused = items_for(&items, busy.pid, None);
        assert_eq!(refused.len(), 1, "{items:?}");
        let message = refused[0]["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("ended the session: busy: 1 sessions are open"),
            "{message:?}"
        );
        assert!(refused[0]["error"].get("code").is_none(), "{refused:?}");
        assert_eq!(items_for(&items, service.pid, None)[0]["result"], 2);

        // In text, the failure is one line on stderr naming the pid.
        let run = cli(&["--all", "call", "add", "1", "1"]);
        assert_exit(&run, 2);
        assert!(
            run.stderr.lines().any(|line| line.starts_with(&format!(
                "manhole-cli: pid {}: the server at {} ended the session: busy",
                busy.pid,
                busy.socket.display()
            ))),
            "{run:#?}"
        );
        assert!(
            run.stdout.contains(&format!("==> pid {} (", service.pid)),
            "{run:#?}"
        );
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--all"][..],
        &["--all", "-s", "USR1", "threads"],
        &["--all", "watch", "REQUESTS"],
        &["--all", "--stdio", "threads"],
        &["--stdio", "123", "stacks"],
        &["--stdio", "--json", "123"],
        &["--stdio", "list"],
        &["--ssh", "-oProxyCommand=true", "123"],
        &["--ssh", "", "123"],
        &["--remote-cli", "/bin/x", "123", "stacks"],
        &["--ssh", "a", "--ssh", "b", "123"],
        &["--ssh", "a", "--ssh", "b", "123", "watch", "REQUESTS"],
        &["--ssh", "a", "list"],
        &["--ssh", "a", "/tmp/manhole-1"],
        &["--ssh", "a", "--stdio", "123"],
    ] {
        let run = cli(args);
        assert_exit(&run, 2);
        assert!(run.stderr.starts_with("error: "), "{args:?}: {run:?}");
        assert!(run.stderr.contains("try '--help'"), "{args:?}: {run:?}");
    }
}

#[test]
fn a_bad_ssh_command_is_said_plainly() {
    let run = run_with_timeout(
        cli_command(&["--ssh", "db1", "1", "stacks"])
            .env("MANHOLE_SSH_COMMAND", "ssh -i 'unclosed"),
        CLI_LIMIT,
    );
    assert_exit(&run, 2);
    assert!(
        run.stderr
            .starts_with("manhole-cli: db1: MANHOLE_SSH_COMMAND cannot be split into words: "),
        "{run:#?}"
    );
    let run = run_with_timeout(
        cli_command(&["--ssh", "db1", "1", "stacks"])
            .env("MANHOLE_SSH_COMMAND", "/nonexistent/ssh -p 22"),
        CLI_LIMIT,
    );
    assert_exit(&run, 2);
    assert!(
        run.stderr
            .starts_with("manhole-cli: db1: cannot run `/nonexistent/ssh`: "),
        "{run:#?}"
    );
}

/// An OpenSSH server on 127.0.0.1 with a private configuration, running as
/// this user; it and every connection it forked are killed when dropped.
struct Sshd {
    server: ChildGuard,
    port: u16,
    dir: ScratchDir,
    log: Arc<Mutex<String>>,
}

impl Sshd {
    fn start() -> Sshd {
        let program = sshd_program();
        privilege_separation_directory();
        let dir = ScratchDir::new("sshd");
        for key in ["host_key", "user_key", "stranger_key"] {
            keygen(&dir.join(key));
        }
        std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
        // Another process may take a free port between the look and the
        // bind: then sshd exits, and another port is tried.
        for _ in 0..5 {
            let port = free_port();
            std::fs::write(
                dir.join("sshd_config"),
                format!(
                    "Port {port}\n\
                     ListenAddress 127.0.0.1\n\
                     HostKey {host_key}\n\
                     PidFile none\n\
                     UsePAM no\n\
                     StrictModes no\n\
                     AuthorizedKeysFile {authorized}\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\n\
                     MaxStartups 100\n\
                     LogLevel VERBOSE\n",
                    host_key = dir.join("host_key").display(),
                    authorized = dir.join("authorized_keys").display(),
                ),
            )
            .unwrap();
            let mut server = ChildGuard(
                Command::new(&program)
                    .arg("-f")
                    .arg(dir.join("sshd_config"))
                    .args(["-D", "-e"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    // Its own group, so that the connections it forks go
                    // when it is killed.
                    .process_group(0)
                    .spawn()
                    .unwrap_or_else(|err| panic!("start {}: {err}", program.display())),
            );
            let log = collect(server.0.stderr.take().unwrap());
            if listening(&mut server, port, &log) {
                let host_key = std::fs::read_to_string(dir.join("host_key.pub")).unwrap();
                let host_key = host_key
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                std::fs::write(
                    dir.join("known_hosts"),
                    format!("[127.0.0.1]:{port} {host_key}\n[localhost]:{port} {host_key}\n"),
                )
                .unwrap();
                return Sshd {
                    server,
                    port,
                    dir,
                    log,
                };
            }
        }
        panic!("sshd could not listen on a free port after 5 tries");
    }

    /// `MANHOLE_SSH_COMMAND` for this server, logging in with `key`; with
    /// `port`, the port is given by `-p` (which wins over one in an
    /// `ssh://` destination), else the destinations carry it.
    fn ssh_command(&self, key: &str, port: bool) -> String {
        let port = if port {
            format!("-p {} ", self.port)
        } else {
            String::new()
        };
        format!(
            "ssh -F /dev/null {port}-i '{key}' -o IdentitiesOnly=yes -o BatchMode=yes \
             -o UserKnownHostsFile='{known}' -o StrictHostKeyChecking=yes \
             -o LogLevel=ERROR -o ConnectTimeout=10",
            key = self.dir.join(key).display(),
            known = self.dir.join("known_hosts").display(),
        )
    }

    /// The CLI with `args`, through this server, logging in with the
    /// authorized key, and running the built binary as the remote CLI.
    fn cli(&self, args: &[&str]) -> Finished {
        run_with_timeout(&mut self.command("user_key", args), CLI_LIMIT)
    }

    fn command(&self, key: &str, args: &[&str]) -> Command {
        let mut command = cli_command(&[&["--remote-cli", CLI][..], args].concat());
        command.env("MANHOLE_SSH_COMMAND", self.ssh_command(key, true));
        command
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("sshd's log:\n{}", self.log.lock().unwrap());
        }
        let group = nix::unistd::Pid::from_raw(self.server.0.id() as i32);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
    }
}

fn collect(mut pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&text);
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buffer) {
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
    });
    text
}

/// Whether sshd came to accept connections on `port`; `false` when it
/// exited first (its port was taken).
fn listening(server: &mut ChildGuard, port: u16, log: &Mutex<String>) -> bool {
    let deadline = Instant::now() + support::TIMEOUT;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if server.0.try_wait().unwrap().is_some() {
            let log = log.lock().unwrap();
            assert!(
                log.contains("Address already in use"),
                "sshd exited at start:\n{log}"
            );
            return false;
        }
        assert!(
            Instant::now() < deadline,
            "sshd did not listen on port {port}:\n{}",
            log.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// OpenSSH's server, which `scripts/test` installs.
fn sshd_program() -> PathBuf {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    ["/usr/sbin", "/usr/local/sbin"]
        .iter()
        .map(PathBuf::from)
        .chain(on_path)
        .map(|dir| dir.join("sshd"))
        .find(|path| path.is_file())
        .expect(
            "sshd is missing: the --ssh tests need OpenSSH's server and client \
             (scripts/test installs openssh-server and openssh-client as root; \
             otherwise `sudo apt-get install openssh-server openssh-client`)",
        )
}

/// sshd, run as root, insists on its privilege separation directory, which
/// the package's init script makes at boot and a container never runs.
fn privilege_separation_directory() {
    let dir = Path::new("/run/sshd");
    if nix::unistd::geteuid().is_root() && !dir.is_dir() {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
}

fn keygen(path: &Path) {
    let run = run_with_timeout(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "manhole-test", "-f"])
            .arg(path),
        CLI_LIMIT,
    );
    assert_eq!(run.code, Some(0), "ssh-keygen: {run:?}");
}

/// A port on 127.0.0.1 that nothing listens on (as of now).
fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

mod over_ssh {
    use super::*;

    #[test]
    fn one_command_on_a_remote_pid() {
        let sshd = Sshd::start();
        let service = Service::start();
        let pid = service.pid.to_string();

        let run = sshd.cli(&["--ssh", "127.0.0.1", &pid, "call", "add", "40", "2"]);
        assert_exit(&run, 0);
        assert_eq!(run.stdout, "42\n");
        assert_eq!(run.stderr, "");

        // The same text as a local session prints; a user in the
        // destination is ssh's business.
        let user = nix::unistd::User::from_uid(nix::unistd::geteuid())
            .unwrap()
            .expect("this user has a name")
            .name;
        let run = sshd.cli(&["--ssh", &format!("{user}@localhost"), &pid, "get", "CONFIG"]);
        assert_exit(&run, 0);
        assert_eq!(run.stdout, service.text().ask("get CONFIG"));

        let run = sshd.cli(&[
            "--ssh",
            "127.0.0.1",
            "--json",
            &pid,
            "call",
            "add",
            "1",
            "x",
        ]);
        assert_exit(&run, 1);
        assert_eq!(stdout_json(&run)["data"]["argument"], "b");

        let run = sshd.cli(&["--ssh", "127.0.0.1", &pid, "divide", "1", "0"]);
        assert_exit(&run, 1);
        assert_eq!(
            run.stderr,
            "error: `divide` returned an error: cannot divide 1 by zero\n"
        );
    }

    #[test]
    fn a_signal_wakes_a_remote_manhole() {
        let sshd = Sshd::start();
        let service =
            Service::spawn_with_env("service", &[], &[("MANHOLE", "activate_on=USR1")], None);
        service.wait_for_stderr("waiting for SIGUSR1");
        let pid = service.pid.to_string();
        // Asleep, the remote manhole-cli says what to do, and where.
        let run = sshd.cli(&["--ssh", "127.0.0.1", &pid, "add", "2", "3"]);
        assert_exit(&run, 2);
        assert!(
            run.stderr.starts_with(&format!(
                "manhole-cli: 127.0.0.1: pid {pid} (service) has no manhole socket"
            )),
            "{run:#?}"
        );
        let run = sshd.cli(&["--ssh", "127.0.0.1", "-s", "USR1", &pid, "add", "2", "3"]);
        assert_exit(&run, 0);
        assert_eq!(run.stdout, "5\n");
    }

    #[test]
    fn one_pid_on_two_hosts() {
        let sshd = Sshd::start();
        let service = Service::start();
        let pid = service.pid.to_string();
        let hosts = ["--ssh", "127.0.0.1", "--ssh", "localhost"];

        let run = sshd.cli(&[&hosts[..], &["--json", &pid, "call", "add", "2", "3"]].concat());
        assert_exit(&run, 0);
        assert_eq!(
            stdout_json(&run),
            serde_json::json!([
                {"host": "127.0.0.1", "pid": service.pid, "result": 5},
                {"host": "localhost", "pid": service.pid, "result": 5},
            ])
        );
        let run = sshd.cli(&[&hosts[..], &[&pid, "add", "2", "3"]].concat());
        assert_exit(&run, 0);
        assert_eq!(
            run.stdout,
            format!("==> 127.0.0.1: pid {pid} <==\n5\n\n==> localhost: pid {pid} <==\n5\n")
        );
    }

    #[test]
    fn two_hosts_times_all_as_json() {
        let _all = every_manhole();
        let sshd = Sshd::start();
        let service = Service::start();
        let instrumented = Service::spawn("instrumented", &[], None);
        instrumented.wait_for_socket();

        let run = sshd.cli(&[
            "--ssh",
            "127.0.0.1",
            "--ssh",
            "localhost",
            "--all",
            "--json",
            "call",
            "add",
            "40",
            "2",
        ]);
        let items = stdout_json(&run).as_array().unwrap().clone();
        for host in ["127.0.0.1", "localhost"] {
            assert_eq!(
                items_for(&items, service.pid, Some(host)),
                [&serde_json::json!({
                    "host": host,
                    "pid": service.pid,
                    "exe": support::example("service").display().to_string(),
                    "result": 42,
                })]
            );
            let theirs = items_for(&items, instrumented.pid, Some(host));
            assert_eq!(theirs.len(), 1, "{items:?}");
            assert_eq!(theirs[0]["error"]["data"]["reason"], "unknown");
        }
        // Hosts in the order given.
        let first_localhost = items.iter().position(|item| item["host"] == "localhost");
        let last_loopback = items.iter().rposition(|item| item["host"] == "127.0.0.1");
        assert!(last_loopback < first_localhost, "{items:?}");
        assert_exit(&run, worst_status(&items));
        assert!(worst_status(&items) >= 1);
    }

    #[test]
    fn one_slow_host_holds_no_other() {
        let _all = every_manhole();
        let sshd = Sshd::start();
        let service = Service::start();
        // Accepts TCP connections (the backlog does) and never says a word.
        let silent = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let good = format!("ssh://127.0.0.1:{}", sshd.port);
        let slow = format!("ssh://127.0.0.1:{}", silent.local_addr().unwrap().port());

        let started = Instant::now();
        let run = run_with_timeout(
            cli_command(&[
                "--remote-cli",
                CLI,
                "--timeout",
                "2s",
                "--ssh",
                &slow,
                "--ssh",
                &good,
                "--all",
                "--json",
                "threads",
            ])
            .env("MANHOLE_SSH_COMMAND", sshd.ssh_command("user_key", false)),
            CLI_LIMIT,
        );
        assert_exit(&run, 2);
        let items = stdout_json(&run).as_array().unwrap().clone();
        assert_eq!(items[0]["host"], slow.as_str(), "{items:?}");
        assert_eq!(items[0]["pid"], Value::Null);
        let message = items[0]["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("timed out after 2s waiting for `")
                && message.contains(" list --json` through ssh"),
            "{message:?}"
        );
        // Other processes of the machine that went away meanwhile have
        // lines of their own.
        let expected = format!("manhole-cli: {slow}: {message}");
        assert!(
            run.stderr.lines().any(|line| line == expected),
            "{expected:?} in {run:#?}"
        );
        let ours = items_for(&items, service.pid, Some(&good));
        assert_eq!(ours.len(), 1, "{items:?}");
        assert!(ours[0]["result"]["threads"].is_array(), "{ours:?}");
        // The slow host cost its timeout, once, beside the others.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn every_failure_exits_2_with_one_line_naming_the_host() {
        let sshd = Sshd::start();
        let service = Service::start();
        let pid = service.pid.to_string();

        // Unreachable: a port where nothing listens.
        let closed = free_port();
        let run = run_with_timeout(
            cli_command(&["--remote-cli", CLI, "--ssh", "127.0.0.1", &pid, "stacks"]).env(
                "MANHOLE_SSH_COMMAND",
                sshd.ssh_command("user_key", true)
                    .replace(&format!("-p {}", sshd.port), &format!("-p {closed}")),
            ),
            CLI_LIMIT,
        );
        assert_one_line_failure(
            &run,
            "manhole-cli: 127.0.0.1: cannot reach the host through ssh: ",
            "Connection refused",
        );

        // Authentication: a key that the server does not know.
        let run = run_with_timeout(
            &mut sshd.command("stranger_key", &["--ssh", "localhost", &pid, "stacks"]),
            CLI_LIMIT,
        );
        assert_one_line_failure(
            &run,
            "manhole-cli: localhost: ssh could not log in (authentication failed",
            "Permission denied (publickey)",
        );

        // No manhole-cli on the remote host.
        let run = run_with_timeout(
            cli_command(&[
                "--remote-cli",
                "/nonexistent",
                "--ssh",
                "127.0.0.1",
                &pid,
                "stacks",
            ])
            .env("MANHOLE_SSH_COMMAND", sshd.ssh_command("user_key", true)),
            CLI_LIMIT,
        );
        assert_one_line_failure(
            &run,
            "manhole-cli: 127.0.0.1: there is no `/nonexistent` on the remote host",
            "give its path with --remote-cli",
        );

        // No manhole at that pid: no process at all, or one without one.
        let dead = dead_pid().to_string();
        let run = sshd.cli(&["--ssh", "127.0.0.1", &dead, "stacks"]);
        assert_one_line_failure(
            &run,
            &format!("manhole-cli: 127.0.0.1: no process with pid {dead};"),
            "",
        );
        let plain = Service::spawn_with_env("service", &[], &[("MANHOLE", "off")], None);
        plain.wait_for_stdout("service running");
        let run = sshd.cli(&["--ssh", "localhost", &plain.pid.to_string(), "stacks"]);
        assert_one_line_failure(
            &run,
            &format!(
                "manhole-cli: localhost: pid {} (service) has no manhole socket",
                plain.pid
            ),
            "",
        );
        // The same without a command: no session is started.
        let run = sshd.cli(&["--ssh", "localhost", &dead]);
        assert_one_line_failure(&run, "manhole-cli: localhost: no process with pid", "");
    }

    #[track_caller]
    fn assert_one_line_failure(run: &Finished, starts: &str, contains: &str) {
        assert_exit(run, 2);
        assert_eq!(run.stdout, "", "{run:#?}");
        assert_eq!(run.stderr.lines().count(), 1, "{run:#?}");
        assert!(run.stderr.starts_with(starts), "{run:#?}");
        assert!(run.stderr.contains(contains), "{run:#?}");
    }

    #[test]
    fn a_host_that_fails_under_all_is_an_item_of_its_own() {
        let sshd = Sshd::start();
        let closed = free_port();
        let run = run_with_timeout(
            cli_command(&[
                "--remote-cli",
                CLI,
                "--ssh",
                &format!("ssh://127.0.0.1:{closed}"),
                "--all",
                "--json",
                "threads",
            ])
            .env("MANHOLE_SSH_COMMAND", sshd.ssh_command("user_key", false)),
            CLI_LIMIT,
        );
        assert_exit(&run, 2);
        let items = stdout_json(&run);
        assert_eq!(items[0]["host"], format!("ssh://127.0.0.1:{closed}"));
        assert_eq!(items[0]["pid"], Value::Null);
        let message = items[0]["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("cannot reach the host through ssh: "),
            "{message:?}"
        );
        assert_eq!(items.as_array().unwrap().len(), 1);
        assert_eq!(
            run.stderr,
            format!("manhole-cli: ssh://127.0.0.1:{closed}: {message}\n"),
            "{run:#?}"
        );
    }

    mod interactive {
        use super::*;
        use expectrl::{ControlCode, Eof, Regex, Session, WaitStatus};

        #[test]
        fn a_session_on_a_terminal_over_ssh() {
            let sshd = Sshd::start();
            let service = Service::start();
            let state = ScratchDir::new("state");
            let mut command = sshd.command(
                "user_key",
                &["--ssh", "127.0.0.1", &service.pid.to_string()],
            );
            command.env("XDG_STATE_HOME", &state.0).env("TERM", "xterm");
            let mut session = Session::spawn(command).expect("start manhole-cli on a terminal");
            session.set_expect_timeout(Some(support::TIMEOUT));
            let prompt = format!("manhole 127.0.0.1:{}> ", service.pid);

            session.expect("\"manhole\"").unwrap();
            session
                .expect("type `help` for commands, `quit` to leave")
                .unwrap();
            session.expect(prompt.as_str()).unwrap();

            session.send_line("call add 40 2").unwrap();
            session.expect("\r\n42\r\n").unwrap();
            session.expect(prompt.as_str()).unwrap();

            // Completion, with the names the remote server gave.
            session.send("reload_c\t").unwrap();
            session.expect("reload_config").unwrap();
            session.send("\r").unwrap();
            session
                .expect("reloaded configuration, now version 2")
                .unwrap();
            session.expect(prompt.as_str()).unwrap();

            // `watch`, run here, over the bridge.
            session.send_line("watch REQUESTS 0.1").unwrap();
            session
                .expect("watching `REQUESTS` every 0.1s; send a line to stop")
                .unwrap();
            session.expect(Regex(r"\[\d+\.\ds\] \d+")).unwrap();
            session.send("\r").unwrap();
            session.expect(prompt.as_str()).unwrap();

            session.send_line("divide 1 0").unwrap();
            session
                .expect("error: `divide` returned an error: cannot divide 1 by zero")
                .unwrap();
            session.expect(prompt.as_str()).unwrap();

            session.send(ControlCode::EndOfTransmission).unwrap();
            session.expect(Eof).unwrap();
            let deadline = Instant::now() + CLI_LIMIT;
            let status = loop {
                let status = session.get_process().status().unwrap();
                if status != WaitStatus::StillAlive {
                    break status;
                }
                assert!(Instant::now() < deadline, "manhole-cli did not exit");
                std::thread::sleep(Duration::from_millis(10));
            };
            assert!(matches!(status, WaitStatus::Exited(_, 0)), "{status:?}");

            // History is kept here, not on the remote host.
            let history = std::fs::read_to_string(state.join("manhole/history")).expect("history");
            assert!(
                history.lines().any(|line| line == "call add 40 2"),
                "{history:?}"
            );
            // The bridge ended with the session.
            wait_until("the remote bridge to end", || {
                !remote_bridge_running(service.pid)
            });
        }

        /// Whether a `manhole-cli --stdio PID` process still runs.
        fn remote_bridge_running(pid: u32) -> bool {
            let wanted = ["--stdio".to_owned(), pid.to_string()];
            std::fs::read_dir("/proc")
                .unwrap()
                .filter_map(Result::ok)
                .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
                .any(|cmdline| {
                    let words: Vec<String> = cmdline
                        .split(|byte| *byte == 0)
                        .map(|word| String::from_utf8_lossy(word).into_owned())
                        .collect();
                    words.windows(2).any(|pair| pair == wanted)
                })
        }
    }
}

/// A process whose executable's name holds a title-setting escape: `list`,
/// `--all info` and `info` print it escaped, with no raw ESC.
#[test]
fn a_hostile_executable_name_is_printed_escaped() {
    let _all = every_manhole();
    let dir = ScratchDir::new("hostile-name");
    let hostile = dir.join("svc\u{1b}]0;X\u{7}");
    std::fs::copy(support::example("service"), &hostile).unwrap();
    let mut command = Command::new(&hostile);
    command.env_remove("MANHOLE");
    let service = Service::spawn_command(command, None);
    service.wait_for_socket();
    for args in [
        &["list"][..],
        &["--all", "info"],
        &["--all", "--json", "info"],
        &[&service.pid.to_string(), "info"],
    ] {
        let run = cli(args);
        assert!(
            !run.stdout.contains('\u{1b}') && !run.stderr.contains('\u{1b}'),
            "{args:?}: {run:?}"
        );
        if !args.contains(&"--json") {
            assert!(run.stdout.contains("svc\\e]0;X\\x07"), "{args:?}: {run:?}");
        }
    }
}
