//! The crash path as an attacker sees it: a forged request for the crash
//! symboliser (from an unrelated process, from its own parent, through a
//! set-user-ID copy), a constructor that must not run twice, an
//! environment variable that must not choose a program, and a crash that
//! must not remove a file it did not make. Every child runs with core
//! dumps off and is killed if its test fails.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};
use support::{example, scratch};

/// Kills the child if the test fails before it has ended.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    fn wait(&mut self, within: Duration) -> ExitStatus {
        let began = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(began.elapsed() < within, "the child did not end");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        BufReader::new(self.0.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        line
    }
}

/// `crashy` with `args`, core dumps off, its pipes taken.
fn crashy(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(example("crashy"));
    command
        .args(args)
        .env_remove("MANHOLE")
        .env("RUST_BACKTRACE", "0")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    support::without_core_dumps(&mut command);
    command
}

/// Runs a command to its end, in a process group of its own; the whole
/// group (its children too, which may hold its output open) is killed
/// after a minute.
fn run(mut command: Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let group = child.id() as libc::pid_t;
    let (ended, ending) = std::sync::mpsc::channel::<()>();
    let killer = std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
            ending.recv_timeout(Duration::from_secs(60))
        {
            // SAFETY: kill sends a signal to our own child's group, its
            // leader not yet reaped.
            unsafe { libc::kill(-group, libc::SIGKILL) };
        }
    });
    let output = child.wait_with_output().unwrap();
    drop(ended);
    killer.join().unwrap();
    output
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_forged_request_naming_an_unrelated_process_is_ignored_and_main_runs() {
    let mut victim = Guard(crashy(&["victim"], &[]).spawn().unwrap());
    let line = victim.line();
    let (pid, word) = line
        .trim()
        .strip_prefix("victim ")
        .and_then(|rest| rest.split_once(' '))
        .unwrap_or_else(|| panic!("{line:?}"));
    let address = usize::from_str_radix(word.trim_start_matches("0x"), 16).unwrap();
    // The old format (the address of the victim's word, written 1 by the
    // old helper, less the `done` field's offset), the new one, nonsense.
    for value in [
        format!("{pid} {pid} 5 -1 {}", address - 32),
        format!("{pid} {pid} 5 -1 {address}"),
        format!("{pid} {pid} 0 -1 0"),
        format!("{pid} {pid} 0 1 2 3"),
        "garbage".to_owned(),
    ] {
        let output = run(crashy(&["main-ran"], &[("MANHOLE_CRASH_HELPER", &value)]));
        let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
        assert_eq!(output.status.code(), Some(0), "{value}: {stderr}");
        assert!(
            stdout.contains("crashy: main ran; AT_SECURE 0; variable seen false"),
            "{value}: {stdout}"
        );
        assert!(
            !stderr.contains("symboliser") && !stderr.contains("crash report"),
            "{value}: the helper spoke: {stderr}"
        );
    }
    drop(victim.0.stdin.take());
    assert_eq!(victim.line().trim(), "traced 0, word 0");
    assert!(victim.wait(Duration::from_secs(10)).success());
}

/// The request passes every check but the secret: the helper's parent is
/// the process named, and runs the same binary.
#[test]
fn a_forged_request_from_its_own_parent_without_the_secret_is_ignored() {
    let output = run(crashy(&["forge-helper"], &[]));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    // Started as a helper, it checks the secret, finds it wrong, and exits
    // at once, in silence, without running the program.
    assert!(
        stdout.contains("forged as helper: status Some(1), traced 0, stdout \"\", stderr \"\""),
        "{stdout}"
    );
    // Started as any program is, it does not look at the variable.
    assert!(
        stdout.contains("forged: status Some(0), traced 0, stdout \"crashy: main ran; AT_SECURE 0; variable seen false\\n\""),
        "{stdout}"
    );
}

/// An unprivileged user runs a set-user-ID-root copy with a request that
/// names a root process (its parent): nothing is traced or written.
#[test]
fn a_set_user_id_copy_ignores_the_request() {
    if !support::running_as_root("making a set-user-ID-root copy and a user") {
        return;
    }
    let user = TestUser::make("manhole-trust");
    let dir = scratch("suid-copy");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    let copy = dir.join("crashy");
    std::fs::copy(example("crashy"), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let mut ancestor = dir.parent();
    while let Some(parent) = ancestor {
        let mode = std::fs::metadata(parent).unwrap().mode();
        assert!(
            mode & 0o001 != 0,
            "{} cannot be passed by another user",
            parent.display()
        );
        ancestor = parent.parent();
    }
    let output = run(crashy(
        &[
            "forge-helper",
            copy.to_str().unwrap(),
            &user.uid.to_string(),
        ],
        &[],
    ));
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("forged as helper: status Some(1), traced 0, stdout \"\""),
        "{stdout}"
    );
    // AT_SECURE 1 shows the copy really ran with privileges it was given.
    assert!(
        stdout.contains(
            "forged: status Some(0), traced 0, stdout \"crashy: main ran; AT_SECURE 1; variable seen false\\n\""
        ),
        "{stdout}"
    );
}

/// A user made for one test, removed after it.
struct TestUser {
    name: String,
    uid: u32,
    made: bool,
}

impl TestUser {
    fn make(name: &str) -> TestUser {
        let existing = Command::new("id").args(["-u", name]).output().unwrap();
        let made = !existing.status.success();
        if made {
            let status = Command::new("useradd")
                .args([
                    "--system",
                    "--no-create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                ])
                .arg(name)
                .status()
                .unwrap();
            assert!(status.success(), "useradd {name}");
        }
        let uid = Command::new("id").args(["-u", name]).output().unwrap();
        let uid = text(&uid.stdout).trim().parse().unwrap();
        TestUser {
            name: name.to_owned(),
            uid,
            made,
        }
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        if self.made {
            let _ = Command::new("userdel").arg(&self.name).status();
        }
    }
}

struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `crashy MODE` with its socket and report in `dir`, and returns
/// it once it printed `ready PID`.
fn ready(mode: &str, dir: &Path, manhole: &str, env: &[(&str, &str)]) -> (Guard, u32) {
    let setting = format!(
        "socket_path={0}/sock,crash_file={0}/crash-{{pid}}.txt{manhole}",
        dir.display()
    );
    let mut child = Guard(
        crashy(&[mode], env)
            .env("MANHOLE", setting)
            .spawn()
            .unwrap(),
    );
    let line = child.line();
    let pid = line
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("crashy did not start: {line:?}"))
        .parse()
        .unwrap();
    (child, pid)
}

fn go(child: &mut Guard) -> ExitStatus {
    child.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    child.wait(Duration::from_secs(60))
}

#[test]
fn the_programs_constructors_run_once_for_a_crash() {
    let dir = scratch("crash-constructor");
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    let log = dir.join("constructors.log");
    let (mut child, pid) = ready(
        "null",
        &dir,
        "",
        &[("CRASHY_CONSTRUCTOR_LOG", log.to_str().unwrap())],
    );
    assert_eq!(go(&mut child).signal(), Some(libc::SIGSEGV));
    let lines = std::fs::read_to_string(&log).unwrap();
    assert_eq!(lines, format!("constructor ran in {pid}\n"));
    let report = std::fs::read_to_string(dir.join(format!("crash-{pid}.txt"))).unwrap();
    assert!(
        report.starts_with("manhole crash report: SIGSEGV"),
        "{report}"
    );
    assert!(report.contains("crashy::write_through_null"), "{report}");
    assert!(
        report.ends_with("end of manhole crash report\n"),
        "{report}"
    );
}

#[test]
fn the_old_helper_path_variable_runs_nothing() {
    let dir = scratch("crash-helper-path");
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    let marker = dir.join("it-ran");
    let script = dir.join("helper.sh");
    std::fs::write(&script, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (mut child, pid) = ready(
        "null",
        &dir,
        "",
        &[("MANHOLE_CRASH_HELPER_PATH", script.to_str().unwrap())],
    );
    assert_eq!(go(&mut child).signal(), Some(libc::SIGSEGV));
    assert!(!marker.exists(), "the program the variable named ran");
    let report = std::fs::read_to_string(dir.join(format!("crash-{pid}.txt"))).unwrap();
    assert!(
        report.starts_with("manhole crash report: SIGSEGV"),
        "{report}"
    );
}

#[test]
fn a_crash_never_removes_a_file_at_a_refused_socket_path() {
    let dir = scratch("crash-precious");
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    let precious = dir.join("sock");
    std::fs::write(&precious, "precious\n").unwrap();
    let (mut child, _) = ready("null", &dir, "", &[]);
    assert_eq!(go(&mut child).signal(), Some(libc::SIGSEGV));
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious\n");
}

#[test]
fn a_second_instance_that_crashes_leaves_the_first_ones_socket() {
    let dir = scratch("crash-two-instances");
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    let socket = dir.join("sock");
    let (_first, first_pid) = ready("null", &dir, "", &[]);
    support::wait_until("the first socket", || support::is_socket(&socket));
    let (mut second, _) = ready("null", &dir, "", &[]);
    assert_eq!(go(&mut second).signal(), Some(libc::SIGSEGV));
    assert!(
        support::is_socket(&socket),
        "the first instance's socket is gone"
    );
    let answer = support::Json::connect(&socket).result("info", serde_json::json!({}));
    assert_eq!(answer["pid"], first_pid, "{answer}");
}

/// A SIGSEGV sent with `kill` to a program whose own handler survives it:
/// the manhole's socket comes back, and a later real crash is reported.
#[test]
fn a_fatal_signal_the_process_survives_leaves_the_manhole_working() {
    let dir = scratch("crash-survived");
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    let socket = dir.join("sock");
    let (mut child, pid) = ready("previous-handler", &dir, "", &[]);
    support::wait_until("the socket", || support::is_socket(&socket));
    let before = std::fs::metadata(&socket).unwrap().ino();
    // SAFETY: kill sends a signal to our own child.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGSEGV) }, 0);
    support::wait_until("a new socket", || {
        std::fs::symlink_metadata(&socket).is_ok_and(|meta| meta.ino() != before)
    });
    let answer = support::Json::connect(&socket).result("info", serde_json::json!({}));
    assert_eq!(answer["pid"], pid, "{answer}");
    assert!(child.0.try_wait().unwrap().is_none(), "it died");
    assert_eq!(go(&mut child).signal(), Some(libc::SIGSEGV));
    let second = std::fs::read_to_string(dir.join(format!("crash-{pid}.txt.1"))).unwrap();
    assert!(second.contains("crashy::write_through_null"), "{second}");
    assert!(
        second.ends_with("end of manhole crash report\n"),
        "{second}"
    );
}

/// Another user pre-creates every name of the old `/tmp` report (and its
/// numbered suffixes): the report still goes to a file of the crashing
/// user's own, in its private directory.
#[test]
fn squatted_names_in_tmp_do_not_divert_the_report() {
    if !support::running_as_root("squatting as another user") {
        return;
    }
    let dir = scratch("crash-squatted");
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    let mut child = Guard(
        crashy(&["null"], &[])
            .env("MANHOLE", format!("socket_path={}/sock", dir.display()))
            .spawn()
            .unwrap(),
    );
    let line = child.line();
    let pid: u32 = line.trim().strip_prefix("ready ").unwrap().parse().unwrap();
    let mut squatted = Vec::new();
    for suffix in std::iter::once(String::new()).chain((1..100).map(|n| format!(".{n}"))) {
        let name = std::path::PathBuf::from(format!("/tmp/manhole-crash-{pid}.txt{suffix}"));
        std::fs::write(&name, "squatted\n").unwrap();
        std::os::unix::fs::chown(&name, Some(65534), Some(65534)).unwrap();
        squatted.push(RemoveFile(name));
    }
    assert_eq!(go(&mut child).signal(), Some(libc::SIGSEGV));
    let report_path = format!("/tmp/manhole-crashes-0/crash-{pid}.txt");
    let _report = RemoveFile(report_path.clone().into());
    let report = std::fs::read_to_string(&report_path).unwrap();
    assert!(
        report.ends_with("end of manhole crash report\n"),
        "{report}"
    );
    assert!(
        report.contains(&format!("report file: {report_path}")),
        "{report}"
    );
    let meta = std::fs::metadata(&report_path).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
    let private = std::fs::metadata("/tmp/manhole-crashes-0").unwrap();
    assert_eq!((private.uid(), private.mode() & 0o777), (0, 0o700));
}

/// The private directory of a user, made beforehand by another user: the
/// manhole says so at install, writes nothing there, and the report goes
/// to stderr.
#[test]
fn a_private_report_directory_made_by_another_user_is_refused() {
    if !support::running_as_root("running as another user") {
        return;
    }
    let squatted = std::path::PathBuf::from("/tmp/manhole-crashes-65534");
    let _ = std::fs::remove_dir_all(&squatted);
    std::fs::create_dir(&squatted).unwrap();
    std::fs::set_permissions(&squatted, std::fs::Permissions::from_mode(0o777)).unwrap();
    let _cleanup = RemoveDir(squatted.clone());
    let mut command = crashy(&["null"], &[]);
    command.uid(65534).gid(65534);
    let mut child = Guard(command.spawn().unwrap());
    let line = child.line();
    assert!(line.starts_with("ready "), "{line:?}");
    child.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    assert_eq!(
        child.wait(Duration::from_secs(60)).signal(),
        Some(libc::SIGSEGV)
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(child.0.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("crash reports go to stderr only: /tmp/manhole-crashes-65534 is not a directory that only uid 65534 may write"),
        "{stderr}"
    );
    assert!(stderr.contains("end of manhole crash report"), "{stderr}");
    assert_eq!(std::fs::read_dir(&squatted).unwrap().count(), 0);
}

struct RemoveFile(std::path::PathBuf);

impl Drop for RemoveFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// While the dying process waits for its helper, only the helper may
/// trace it: it names the helper's PID with `PR_SET_PTRACER`, never
/// `PR_SET_PTRACER_ANY`, and takes the naming back after. Yama, which
/// would make a sibling's attach fail, is absent on many machines (and on
/// this project's CI), so the naming is checked where it is made: the
/// dying process's system calls, as strace sees them.
#[test]
fn only_the_helper_is_named_the_dying_processes_tracer() {
    if Command::new("strace").arg("-V").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "scripts/test installs strace"
        );
        eprintln!("skipped: strace is not installed (scripts/test installs it)");
        return;
    }
    let dir = scratch("crash-tracer");
    std::fs::create_dir_all(&dir).unwrap();
    let _cleanup = RemoveDir(dir.clone());
    let log = dir.join("strace.log");
    let mut command = Command::new("strace");
    command
        .args(["-f", "-qq", "-e", "trace=prctl,clone,clone3", "-o"])
        .arg(&log)
        .arg(example("crashy"))
        .arg("null")
        .env(
            "MANHOLE",
            format!(
                "socket_path={0}/sock,crash_file={0}/crash-{{pid}}.txt,crash_timeout=5s",
                dir.display()
            ),
        )
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    support::without_core_dumps(&mut command);
    let mut child = Guard(command.spawn().unwrap());
    let line = child.line();
    assert!(line.starts_with("ready "), "{line:?}");
    child.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    child.wait(Duration::from_secs(60));
    let trace = std::fs::read_to_string(&log).unwrap();
    let crashed: &str = line.trim().strip_prefix("ready ").unwrap();
    // `PID clone(child_stack=NULL, flags=SIGCHLD) = HELPER`, by the
    // process that crashed.
    let helper = trace
        .lines()
        .filter(|line| line.starts_with(&format!("{crashed} ")))
        .find_map(|line| {
            let rest = line.split_once("clone(")?.1;
            rest.contains("flags=SIGCHLD")
                .then(|| rest.rsplit_once(" = ")?.1.trim().parse::<u32>().ok())?
        })
        .unwrap_or_else(|| panic!("no helper started in\n{trace}"));
    let namings: Vec<&str> = trace
        .lines()
        .filter(|line| line.contains("PR_SET_PTRACER"))
        .collect();
    assert!(
        namings
            .iter()
            .any(|line| line.contains(&format!("PR_SET_PTRACER, {helper}"))),
        "the helper {helper} was not named: {namings:#?}\n{trace}"
    );
    assert!(
        namings
            .iter()
            .all(|line| !line.contains("PR_SET_PTRACER_ANY")
                && !line.contains("0xffffffff")
                && !line.contains("-1)")),
        "any process may trace it: {namings:#?}"
    );
    // strace may split a call that another thread interrupts:
    // `prctl(PR_SET_PTRACER, 0 <unfinished ...>`.
    assert!(
        namings
            .iter()
            .any(|line| line.contains("PR_SET_PTRACER, 0)")
                || line.contains("PR_SET_PTRACER, 0 <unfinished")),
        "the naming is never taken back: {namings:#?}"
    );
}
