//! aarch64 smoke tests: the examples cross-built for
//! `aarch64-unknown-linux-gnu` run under Debian's `qemu-aarch64`
//! (qemu-user), and are asked for their stacks and made to crash, from this
//! x86_64 host. `scripts/other-targets` builds them and names their folder
//! in `MANHOLE_AARCH64_EXAMPLES`.
//!
//! What qemu-user cannot run is left out, and why:
//! - the quiet capture (a blocked thread read from `/proc/TID/syscall`,
//!   without a signal): `/proc` shows qemu's own host threads, so every
//!   thread here gets the stack signal;
//! - SIGRTMAX, the default stack signal: qemu has no host signal to carry
//!   it (sending it fails with EINVAL), so the service is started with
//!   `stack_signal=SIGRTMIN+5`;
//! - qemu's own threads, which `/proc` lists with their host signal mask
//!   (they block every signal), and the manhole's listener, whose mask
//!   `/proc` gives as qemu's: both show "no response";
//! - the crash symboliser, which re-executes the binary and reads the dead
//!   process with `ptrace`, neither of which qemu-user emulates: the crash
//!   test asks for the raw report (`crash_timeout=0s`) and symbolises it
//!   with `manhole-cli symbolize` on the host.

mod support;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{scratch, Service};

/// The cross-built example `name`, or `None` (a skip) when this run is
/// not the one `scripts/other-targets` makes.
fn aarch64_example(name: &str) -> Option<PathBuf> {
    // `cargo test --workspace` runs this file too, before the examples are
    // cross-built; scripts/test then runs it again through
    // scripts/other-targets, with them.
    let Some(folder) = std::env::var_os("MANHOLE_AARCH64_EXAMPLES") else {
        eprintln!("skipped here: scripts/other-targets runs it with the examples cross-built");
        return None;
    };
    let path = PathBuf::from(folder).join(name);
    assert!(path.exists(), "{} is missing", path.display());
    Some(path)
}

/// `qemu-aarch64` running `binary`, with the target's libraries.
fn under_qemu(binary: &PathBuf, manhole: &str) -> Command {
    let mut command = Command::new("qemu-aarch64");
    command
        .arg(binary)
        .env("QEMU_LD_PREFIX", "/usr/aarch64-linux-gnu")
        .env("MANHOLE", manhole)
        .env_remove("RUST_BACKTRACE");
    command
}

fn functions(thread: &Value) -> Vec<&str> {
    thread["frames"]
        .as_array()
        .map(|frames| {
            frames
                .iter()
                .filter_map(|frame| frame["function"].as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn an_aarch64_service_answers_stacks_by_the_signal_and_by_its_own_unwinder() {
    let Some(service) = aarch64_example("service") else {
        return;
    };
    let socket = scratch("aarch64-service");
    let manhole = format!("socket_path={},stack_signal=SIGRTMIN+5", socket.display());
    let service = Service::spawn_command(under_qemu(&service, &manhole), Some(&socket));
    // Emulated, the start is slow.
    let began = Instant::now();
    while !support::is_socket(&socket) {
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "no socket; stderr:\n{}",
            service.stderr()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let stacks = service.json().result("stacks", json!({}));
    let threads = stacks["threads"].as_array().expect("threads");
    // The workers sleep: the stack signal caught them there, and the
    // aarch64 unwinder walked from the handler's registers to their code.
    for name in ["worker-0", "worker-1", "burner"] {
        let thread = threads
            .iter()
            .find(|thread| thread["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {stacks}"));
        assert_eq!(thread["captured_with"], "signal", "{thread}");
        let functions = functions(thread);
        assert!(
            functions.contains(&"std::thread::functions::sleep"),
            "{thread}"
        );
        let code = if name == "burner" {
            "service::burner"
        } else {
            "service::worker"
        };
        let frame = thread["frames"]
            .as_array()
            .unwrap()
            .iter()
            .find(|frame| frame["function"] == code)
            .unwrap_or_else(|| panic!("no {code} in {thread}"));
        assert!(
            frame["file"]
                .as_str()
                .is_some_and(|file| file.ends_with("examples/service.rs")),
            "{frame}"
        );
    }
    // The session's own thread walks its own stack, without a signal.
    let session = threads
        .iter()
        .find(|thread| thread["name"] == "manhole-session")
        .unwrap_or_else(|| panic!("no session thread in {stacks}"));
    assert!(
        functions(session).contains(&"manhole::serve::session::serve"),
        "{session}"
    );
}

#[test]
fn an_aarch64_crash_leaves_a_raw_report_that_the_host_symbolises() {
    let Some(crashy) = aarch64_example("crashy") else {
        return;
    };
    let dir = scratch("aarch64-crash");
    std::fs::create_dir_all(&dir).unwrap();
    let manhole = format!(
        "socket_path={0}/sock-{{pid}},crash_file={0}/crash-{{pid}}.txt,crash_timeout=0s,stack_signal=SIGRTMIN+5",
        dir.display()
    );
    let mut command = under_qemu(&crashy, &manhole);
    command
        .arg("null")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    support::without_core_dumps(&mut command);
    let mut child = command.spawn().unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut child = Kill(child);
    let mut ready = String::new();
    stdout.read_line(&mut ready).unwrap();
    let pid: u32 = ready
        .trim()
        .strip_prefix("ready ")
        .unwrap_or_else(|| panic!("crashy did not start: {ready:?}"))
        .parse()
        .unwrap();
    child.0.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            began.elapsed() < Duration::from_secs(60),
            "crashy did not die"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(libc::SIGSEGV));
    let path = dir.join(format!("crash-{pid}.txt"));
    let report = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        report.starts_with("manhole crash report (raw): SIGSEGV (SEGV_MAPERR) at address 0x0"),
        "{report}"
    );
    assert!(
        report.contains("  x30 0x") && report.contains("  pc  0x"),
        "no aarch64 registers in\n{report}"
    );
    assert_eq!(report.lines().last(), Some("end of manhole crash report"));
    let symbolised = Command::new(support::cli())
        .args(["symbolize".as_ref(), path.as_os_str()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&symbolised.stdout);
    assert!(symbolised.status.success(), "{symbolised:?}");
    assert!(text.contains("crashy::write_through_null"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
