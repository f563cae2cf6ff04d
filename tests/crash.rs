//! Crash reports: each test runs `examples/crashy` in a child process that
//! really dies (core dumps off for it), plants a symlink at the report's
//! name first, and reads what the crash left behind: the exit signal, the
//! report file (its mode, first and last lines, the crashing function with
//! file:line, every thread's name), stderr, and the socket that must be
//! gone.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{example, scratch};

/// How long a crash may take, report and all, before the test gives up on
/// it (and kills the child).
const DEATH: Duration = Duration::from_secs(60);

/// What one crash left behind.
struct Crash {
    pid: u32,
    signal: Option<i32>,
    code: Option<i32>,
    stderr: String,
    /// The report, read from the name next to the planted symlink.
    report: String,
    report_path: PathBuf,
    socket: PathBuf,
    planted_target: PathBuf,
    dir: PathBuf,
}

impl Drop for Crash {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Kills the child if the test fails before it has died.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn crash(mode: &str, manhole: &str, extra_env: &[(&str, &str)]) -> Crash {
    crash_of(&example("crashy"), mode, manhole, extra_env)
}

/// [`crash`] of another build of crashy.
fn crash_of(binary: &Path, mode: &str, manhole: &str, extra_env: &[(&str, &str)]) -> Crash {
    let dir = scratch(&format!("crash-{mode}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(binary);
    command
        .arg(mode)
        .env(
            "MANHOLE",
            format!(
                "socket_path={0}/sock-{{pid}},crash_file={0}/crash-{{pid}}.txt{manhole}",
                dir.display()
            ),
        )
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in extra_env {
        command.env(key, value);
    }
    support::without_core_dumps(&mut command);
    let mut child = Guard(command.spawn().unwrap());
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut stderr_pipe = child.0.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let mut ready = String::new();
    // The child prints `ready PID` or dies; a dead child closes stdout.
    stdout.read_line(&mut ready).unwrap();
    let pid: u32 = ready
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("crashy did not start: {ready:?}"))
        .parse()
        .unwrap();
    let socket = dir.join(format!("sock-{pid}"));
    support::wait_until("the socket", || support::is_socket(&socket));
    let planted_target = dir.join("planted-target");
    std::fs::write(&planted_target, "not to be touched\n").unwrap();
    let first_name = dir.join(format!("crash-{pid}.txt"));
    std::os::unix::fs::symlink(&planted_target, &first_name).unwrap();
    child.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(began.elapsed() < DEATH, "crashy {mode} did not die");
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = stderr_reader.join().unwrap();
    let report_path = dir.join(format!("crash-{pid}.txt.1"));
    let report = std::fs::read_to_string(&report_path).unwrap_or_default();
    Crash {
        pid,
        signal: status.signal(),
        code: status.code(),
        stderr,
        report,
        report_path,
        socket,
        planted_target,
        dir,
    }
}

/// How many reports a text holds: lines that start one.
fn first_lines(text: &str) -> usize {
    text.lines()
        .filter(|line| line.starts_with("manhole crash report"))
        .count()
}

impl Crash {
    /// A recursion deeper than the copy: the report fits on a screen or
    /// two, folds the recursion with its count, and keeps the outer end of
    /// the stack, where the recursion's `caller` and the thread's `entry`
    /// are.
    fn check_deep_stack(&self, caller: &str, entry: &str) {
        let lines = self.report.lines().count();
        assert!(lines < 150, "{lines} lines:\n{}", self.report);
        let block = &self.report[self.report.find("crashing thread:").unwrap()..];
        let block = &block[..block.find("\n\n").unwrap_or(block.len())];
        let folded = block
            .lines()
            .find_map(|line| line.split("crashy::recurse_for_ever   × ").nth(1))
            .and_then(|count| count.trim().parse::<usize>().ok())
            .unwrap_or_else(|| panic!("no folded recursion in\n{block}"));
        // 512 KiB of frames of about 1.1 KiB each.
        assert!((300..1000).contains(&folded), "× {folded} in\n{block}");
        assert!(block.contains("its outermost frames"), "{block}");
        let outer = &block[block.find("its outermost frames").unwrap()..];
        assert!(
            outer.contains(&format!(": {caller}\n")),
            "no caller {caller} in\n{block}"
        );
        assert!(outer.contains(entry), "no entry {entry} in\n{block}");
    }

    /// What every test checks.
    fn check(&self, signal: i32, names: &[&str]) {
        let context = || format!("stderr:\n{}\nreport:\n{}", self.stderr, self.report);
        assert_eq!(self.signal, Some(signal), "{}", context());
        assert!(
            !self.report.is_empty(),
            "no report at {}; {}",
            self.report_path.display(),
            context()
        );
        let first = self.report.lines().next().unwrap_or_default();
        assert!(first.starts_with("manhole crash report: "), "{}", context());
        assert_eq!(
            self.report.lines().last(),
            Some("end of manhole crash report"),
            "{}",
            context()
        );
        let mode = std::fs::metadata(&self.report_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(&self.planted_target).unwrap(),
            "not to be touched\n",
            "the symlink's target was written"
        );
        assert!(!self.socket.exists(), "the socket was left behind");
        for name in ["sleeper-a", "sleeper-b"].iter().chain(names) {
            assert!(
                self.report.contains(&format!("\"{name}\"")),
                "{name} missing; {}",
                context()
            );
        }
        assert!(
            self.report.contains(&format!("pid: {}", self.pid)),
            "{}",
            context()
        );
        assert_eq!(
            first_lines(&self.stderr),
            1,
            "stderr gets one report; {}",
            context()
        );
    }

    /// The crashing thread's section names `function` at
    /// `examples/crashy.rs:LINE`.
    fn check_crashing_function(&self, function: &str) {
        let section: String = self
            .report
            .split("\n\n")
            .find(|block| block.starts_with("crashing thread"))
            .unwrap_or_default()
            .to_owned();
        assert!(
            section.contains(function),
            "{function} missing from\n{}",
            self.report
        );
        // One of its frames with file:line: the innermost may have none
        // when the fault hit an instruction without a line of its own (a
        // stack probe in the prologue, for an overflow).
        let lines: Vec<&str> = section.lines().collect();
        let placed = lines
            .windows(2)
            .any(|pair| pair[0].contains(function) && pair[1].contains("examples/crashy.rs:"));
        assert!(placed, "{function} has no file:line in\n{}", self.report);
    }
}

#[test]
fn a_null_write_is_reported_with_the_faulting_function_and_every_thread() {
    let crash = crash("null", "", &[]);
    crash.check(libc::SIGSEGV, &["crashy"]);
    crash.check_crashing_function("crashy::write_through_null");
    let first = crash.report.lines().next().unwrap();
    assert!(
        first.contains("SIGSEGV (SEGV_MAPERR) at address 0x0"),
        "{first}"
    );
    assert!(crash.report.contains("\nregisters:\n"), "{}", crash.report);
    assert!(crash.report.contains("\nmodules:\n"), "{}", crash.report);
}

#[test]
fn sigbus_from_a_truncated_mapping() {
    let crash = crash("bus", "", &[]);
    crash.check(libc::SIGBUS, &[]);
    crash.check_crashing_function("crashy::read_past_a_truncated_file");
    assert!(crash.report.lines().next().unwrap().contains("BUS_ADRERR"));
}

#[test]
fn sigill_from_an_invalid_instruction() {
    let crash = crash("ill", "", &[]);
    crash.check(libc::SIGILL, &[]);
    crash.check_crashing_function("crashy::execute_an_invalid_instruction");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn sigfpe_from_an_integer_division_by_zero() {
    let crash = crash("fpe", "", &[]);
    crash.check(libc::SIGFPE, &[]);
    crash.check_crashing_function("crashy::divide_by_zero");
    assert!(crash.report.lines().next().unwrap().contains("FPE_INTDIV"));
}

#[test]
fn an_abort_is_reported() {
    let crash = crash("abort", "", &[]);
    crash.check(libc::SIGABRT, &[]);
    crash.check_crashing_function("crashy::main");
}

#[test]
fn a_panic_across_c_names_the_panic_in_the_first_line() {
    let crash = crash("c-panic", "", &[]);
    crash.check(libc::SIGABRT, &[]);
    let first = crash.report.lines().next().unwrap();
    assert!(
        first.contains("'no unwinding out of here' at examples/crashy.rs:"),
        "{first}"
    );
    crash.check_crashing_function("crashy::panic_across_c");
}

/// std's own handler runs after the report, prints its message and aborts,
/// as it does without a manhole. (On musl, std does not know the main
/// thread's guard page and does not catch that overflow: the process dies
/// of the SIGSEGV there, with or without a manhole.)
#[test]
fn a_stack_overflow_on_main_says_so_and_std_still_speaks() {
    let without_report = crash("overflow-main", ",crash_report=off", &[]);
    let std_speaks = without_report.stderr.contains("has overflowed its stack");
    if cfg!(target_env = "gnu") {
        assert!(std_speaks, "{}", without_report.stderr);
        assert_eq!(without_report.signal, Some(libc::SIGABRT));
    }
    drop(without_report);
    let crash = crash("overflow-main", "", &[]);
    crash.check(
        if std_speaks {
            libc::SIGABRT
        } else {
            libc::SIGSEGV
        },
        &[],
    );
    let first = crash.report.lines().next().unwrap();
    assert!(first.contains("stack overflow"), "{first}");
    crash.check_crashing_function("crashy::recurse_for_ever");
    crash.check_deep_stack("crashy::main", "std::rt::lang_start_internal");
    assert_eq!(
        crash.stderr.contains("has overflowed its stack"),
        std_speaks,
        "std's own message is not as it is without a report:\n{}",
        crash.stderr
    );
}

#[test]
fn a_stack_overflow_on_a_spawned_thread() {
    let crash = crash("overflow-thread", "", &[]);
    crash.check(libc::SIGABRT, &["deep"]);
    let first = crash.report.lines().next().unwrap();
    assert!(
        first.contains("stack overflow") && first.contains("\"deep\""),
        "{first}"
    );
    crash.check_crashing_function("crashy::recurse_for_ever");
    crash.check_deep_stack("crashy::main::{{closure}}", "thread_start");
}

#[test]
fn a_crash_while_the_allocator_lock_is_held_still_reports() {
    let crash = crash("allocator-lock", "", &[]);
    crash.check(libc::SIGSEGV, &[]);
    crash.check_crashing_function("crashy::write_through_null");
}

/// The report keeps the flight recorder's last minute: the burst of CPU
/// in a counted function a second and a half before the crash, written
/// from the recorder's mirror in atomics; with the allocator's lock held
/// at the crash, too.
#[test]
fn the_report_has_the_last_minute_of_the_recorder() {
    let burst = crash("after-a-burst", "", &[]);
    burst.check(libc::SIGSEGV, &[]);
    let report = &burst.report;
    let section = report
        .split("\nthe last minute (the flight recorder, a point a second):\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no last minute: {report}"));
    let cpu = section
        .lines()
        .find(|line| line.trim_start().starts_with("cpu"))
        .unwrap_or_else(|| panic!("{section}"));
    let highest: f64 = cpu
        .split("highest ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("{cpu}"));
    assert!(highest >= 40.0, "the burst's CPU is not there: {cpu}");
    let calls = section
        .lines()
        .find(|line| line.trim_start().starts_with("calls over it:"))
        .unwrap_or_else(|| panic!("{section}"));
    assert!(calls.contains(" burst_step "), "{calls}");
    assert!(
        report.trim_end().ends_with("end of manhole crash report"),
        "{report}"
    );

    let held = crash("allocator-lock", "", &[]);
    assert!(
        held.report
            .contains("\nthe last minute (the flight recorder, a point a second):\n"),
        "{}",
        held.report
    );
}

#[test]
fn two_threads_crashing_at_once_make_one_report() {
    let crash = crash("two-threads", "", &[]);
    crash.check(libc::SIGSEGV, &["crasher-0", "crasher-1"]);
    assert_eq!(first_lines(&crash.report), 1);
    crash.check_crashing_function("crashy::write_through_null");
}

#[test]
fn a_crash_during_a_stacks_dump() {
    let crash = crash("during-dump", "", &[]);
    crash.check(libc::SIGSEGV, &["dumper"]);
    crash.check_crashing_function("crashy::write_through_null");
}

#[test]
fn a_thousand_threads_are_all_named() {
    let crash = crash("threads-1000", "", &[]);
    let names: Vec<String> = (0..998).map(|index| format!("idle-{index}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    crash.check(libc::SIGSEGV, &names);
}

/// A binary without line tables (a plain release build; here the debug
/// build with its debug info stripped): the report's header says why its
/// frames have no file:line, and what to change.
#[test]
fn a_binary_without_line_tables_is_told_how_to_get_them() {
    let dir = scratch("stripped");
    std::fs::create_dir_all(&dir).unwrap();
    let stripped = dir.join("crashy");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(example("crashy"))
        .arg(&stripped)
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success());
    let stripped_crash = crash_of(&stripped, "null", "", &[]);
    let _ = std::fs::remove_dir_all(&dir);
    stripped_crash.check(libc::SIGSEGV, &["crashy"]);
    let header: Vec<&str> = stripped_crash.report.lines().take(3).collect();
    assert!(
        header[1].starts_with("note: this binary has no line tables")
            && header[1].contains("debug = \"line-tables-only\""),
        "{}",
        stripped_crash.report
    );
    assert!(
        stripped_crash.report.contains("crashy::write_through_null"),
        "named from the symbol table: {}",
        stripped_crash.report
    );
    // With line tables, no such note.
    let with_lines = crash("null", "", &[]);
    assert!(
        !with_lines.report.contains("no line tables"),
        "{}",
        with_lines.report
    );
}

#[test]
fn crash_report_off_gives_no_report_and_the_same_death() {
    let crash = crash("null", ",crash_report=off", &[]);
    assert_eq!(crash.signal, Some(libc::SIGSEGV));
    assert!(crash.report.is_empty());
    assert!(
        !crash.stderr.contains("manhole crash report"),
        "{}",
        crash.stderr
    );
    assert!(!crash.report_path.exists());
}

#[test]
fn the_programs_own_handler_still_runs_after_the_report() {
    let crash = crash("previous-handler", "", &[]);
    crash.check(libc::SIGSEGV, &[]);
    assert!(
        crash
            .stderr
            .contains("crashy: the program's own SIGSEGV handler ran"),
        "{}",
        crash.stderr
    );
}

#[test]
fn without_the_helper_a_complete_raw_report_is_left() {
    // `crash_timeout=0s` starts no symboliser.
    let crash = crash("null", ",crash_timeout=0s", &[]);
    assert_eq!(crash.signal, Some(libc::SIGSEGV));
    let first = crash.report.lines().next().unwrap_or_default();
    assert!(
        first.starts_with("manhole crash report (raw): "),
        "{}",
        crash.report
    );
    assert_eq!(
        crash.report.lines().last(),
        Some("end of manhole crash report")
    );
    assert!(crash.report.contains("crashy+0x"), "{}", crash.report);
    for name in ["crashy", "sleeper-a", "sleeper-b"] {
        assert!(
            crash.report.contains(&format!("\"{name}\"")),
            "{}",
            crash.report
        );
    }
    assert!(
        crash.stderr.contains("manhole crash report (raw): "),
        "{}",
        crash.stderr
    );
    assert_eq!(crash.code, None);
    // manhole-cli turns it into the symbolised report, offline.
    let symbolised = Command::new(support::cli())
        .args(["symbolize".as_ref(), crash.report_path.as_os_str()])
        .output()
        .unwrap();
    assert!(symbolised.status.success(), "{symbolised:?}");
    let text = String::from_utf8(symbolised.stdout).unwrap();
    assert!(text.starts_with("manhole crash report: SIGSEGV"), "{text}");
    assert_eq!(text.lines().last(), Some("end of manhole crash report"));
    let at = text
        .find("crashy::write_through_null")
        .unwrap_or_else(|| panic!("no crashing function in\n{text}"));
    assert!(
        text[at..]
            .lines()
            .nth(1)
            .is_some_and(|line| line.contains("examples/crashy.rs:")),
        "{text}"
    );
    // A file that is not a raw report is refused with a reason.
    let refused = Command::new(support::cli())
        .args(["symbolize".as_ref(), crash.planted_target.as_os_str()])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("is not a raw manhole crash report"));
}

#[test]
fn a_panic_in_a_thread_is_kept_for_panics_with_its_stack() {
    let socket = scratch("panics-sock");
    let service = support::Service::spawn_with_env(
        "crashy",
        &["panic-thread"],
        &[("MANHOLE", &format!("socket_path={}", socket.display()))],
        Some(&socket),
    );
    service.wait_for_socket();
    service.wait_for_stdout("ready");
    let answer = support::Json::connect(&socket).result("panics", serde_json::json!({}));
    assert_eq!(answer["total"], 1, "{answer}");
    let panic = &answer["panics"][0];
    assert_eq!(panic["message"], "request 7 went wrong", "{answer}");
    assert_eq!(panic["thread"], "panicky");
    assert!(
        panic["location"]
            .as_str()
            .unwrap()
            .starts_with("examples/crashy.rs:"),
        "{answer}"
    );
    assert!(panic["tid"].as_i64().unwrap() > 0);
    assert!(panic["at"].as_str().unwrap().ends_with('Z'), "{answer}");
    let first = &panic["stack"][0];
    assert_eq!(first["function"], "crashy::panicking_function", "{answer}");
    assert!(first["file"]
        .as_str()
        .unwrap()
        .ends_with("examples/crashy.rs"));
    let text = support::Text::connect(&socket).ask("panics");
    assert!(
        text.contains("thread")
            && text.contains("\"panicky\": 'request 7 went wrong' at examples/crashy.rs:"),
        "{text}"
    );
    assert!(text.contains("crashy::panicking_function"), "{text}");
}
