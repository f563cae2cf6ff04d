//! Process life: activation by signal, one-shot sessions, signal masks,
//! fork and exec, the environment switch, and a socket that is put back
//! when a tmp cleaner removes it.

mod support;

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::Duration;
use support::{is_socket, send_signal, task_status, threads_named, wait_until, Service};

fn default_socket(pid: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/manhole-{pid}"))
}

/// Waits for the "listening"/"waiting" line, which comes after install.
fn installed(service: &Service) {
    service.wait_for_stderr("stacks are captured with");
}

#[test]
fn activate_on_creates_the_socket_only_when_signalled() {
    let service = Service::spawn_with_env("service", &[], &[("MANHOLE", "activate_on=USR1")], None);
    let stderr = service.wait_for_stderr("waiting for SIGUSR1 to listen on");
    assert!(
        stderr.contains(&format!("/tmp/manhole-{}", service.pid)),
        "{stderr}"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(!service.socket.exists(), "no socket before the signal");
    // Before activation the manhole is one dormant thread.
    assert_eq!(threads_named(service.pid, "manhole").len(), 1);
    assert!(threads_named(service.pid, "manhole-session").is_empty());

    send_signal(service.pid, libc::SIGUSR1);
    service.wait_for_socket();
    assert_eq!(service.text().ask("add 2 3"), "5\n");
    let inode = std::fs::metadata(&service.socket).unwrap().ino();
    send_signal(service.pid, libc::SIGUSR1);
    send_signal(service.pid, libc::SIGUSR1);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        std::fs::metadata(&service.socket).unwrap().ino(),
        inode,
        "no second listener"
    );
    assert_eq!(threads_named(service.pid, "manhole").len(), 1);
    assert_eq!(service.text().ask("add 3 4"), "7\n");
}

#[test]
fn oneshot_on_opens_one_session_per_signal() {
    let mut service =
        Service::spawn_with_env("service", &[], &[("MANHOLE", "oneshot_on=SIGUSR2")], None);
    service.wait_for_stderr("to open one session on");
    for round in 0..3 {
        assert!(
            !service.socket.exists(),
            "round {round}: no socket between sessions"
        );
        send_signal(service.pid, libc::SIGUSR2);
        service.wait_for_socket();
        let mut session = service.text();
        // A signal during the session is harmless. (Handled during it, that
        // is: a signal still pending when the session ends opens the next.)
        send_signal(service.pid, libc::SIGUSR2);
        wait_until("the signal to be handled", || {
            let status = std::fs::read_to_string(format!("/proc/{}/status", service.pid)).unwrap();
            let pending = status
                .lines()
                .find_map(|line| line.strip_prefix("ShdPnd:"))
                .unwrap()
                .trim()
                .to_owned();
            !has_signal(&pending, libc::SIGUSR2)
        });
        assert_eq!(
            session.ask(&format!("add {round} 1")),
            format!("{}\n", round + 1)
        );
        session.send("quit");
        assert!(support::read_to_end(&mut session.stream).is_empty());
        wait_until("the one-shot socket to go", || !service.socket.exists());
        assert!(
            threads_named(service.pid, "manhole-session").is_empty(),
            "sessions run on the manhole thread"
        );
        assert_eq!(threads_named(service.pid, "manhole").len(), 1);
    }
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !service.socket.exists(),
        "the signal sent during a session opened nothing later"
    );
    assert!(service.is_alive());
}

#[test]
fn activate_and_oneshot_on_one_signal_is_refused_and_the_app_runs() {
    let service = Service::spawn_with_env(
        "service",
        &[],
        &[("MANHOLE", "activate_on=USR1,oneshot_on=USR1")],
        None,
    );
    let stderr = service.wait_for_stderr("not installed");
    assert!(
        stderr.contains("`oneshot_on` cannot be combined with `activate_on`"),
        "{stderr}"
    );
    service.wait_for_stdout("service running as pid");
    assert!(!service.socket.exists());
}

#[test]
fn the_environment_switches_and_configures_the_manhole() {
    let off = Service::spawn_with_env("service", &[], &[("MANHOLE", "off")], None);
    off.wait_for_stdout("service running as pid");
    let stderr = off.wait_for_stderr("not installed");
    assert!(
        stderr.contains("disabled by the environment (MANHOLE=off)"),
        "{stderr}"
    );
    assert!(!off.socket.exists());

    let path = support::scratch("env-path");
    let setting = format!("socket_path={},verbose=false", path.display());
    let configured = Service::spawn_with_env("service", &[], &[("MANHOLE", &setting)], Some(&path));
    configured.wait_for_socket();
    assert_eq!(configured.text().ask("add 1 1"), "2\n");
    assert!(
        !configured.stderr().contains("listening on"),
        "verbose=false is applied"
    );

    let bad = Service::spawn_with_env("service", &[], &[("MANHOLE", "sokcet_path=/tmp/x")], None);
    let stderr = bad.wait_for_stderr("not installed");
    assert!(
        stderr.contains("invalid option `MANHOLE`: unknown key `sokcet_path`"),
        "{stderr}"
    );
    bad.wait_for_stdout("service running as pid");
}

fn has_signal(mask: &str, signal: i32) -> bool {
    u64::from_str_radix(mask, 16).unwrap() & (1 << (signal - 1)) != 0
}

#[test]
fn manhole_threads_block_process_signals_but_not_the_stack_signal() {
    let service = Service::start();
    let mut session = service.text();
    session.ask("threads");
    let stack_signal = libc::SIGRTMAX();
    for tid in threads_named(service.pid, "manhole")
        .into_iter()
        .chain(threads_named(service.pid, "manhole-session"))
    {
        let blocked = task_status(service.pid, tid, "SigBlk");
        for signal in [
            libc::SIGTERM,
            libc::SIGINT,
            libc::SIGCHLD,
            libc::SIGUSR1,
            libc::SIGHUP,
        ] {
            assert!(
                has_signal(&blocked, signal),
                "thread {tid} does not block {signal}: {blocked}"
            );
        }
        assert!(
            !has_signal(&blocked, stack_signal),
            "thread {tid} blocks the stack signal"
        );
        assert!(!has_signal(&blocked, libc::SIGSEGV));
    }
    for name in ["service", "worker-0"] {
        let tid = threads_named(service.pid, name)[0];
        assert!(
            !has_signal(&task_status(service.pid, tid, "SigBlk"), stack_signal),
            "{name}"
        );
    }
}

#[test]
fn sigterm_reaches_the_apps_signalfd() {
    let mut service = Service::spawn("signalfd", &[], None);
    service.wait_for_stdout("waiting for SIGTERM");
    installed(&service);
    send_signal(service.pid, libc::SIGTERM);
    let status = service.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(service
        .wait_for_stdout("got SIGTERM through signalfd")
        .contains("got SIGTERM"));

    // Without the mask, the manhole's thread takes SIGTERM and the default
    // action kills the process: the control that shows the test can fail.
    let mut unmasked =
        Service::spawn_with_env("signalfd", &[], &[("MANHOLE", "sigmask=false")], None);
    unmasked.wait_for_stdout("waiting for SIGTERM");
    installed(&unmasked);
    send_signal(unmasked.pid, libc::SIGTERM);
    let status = unmasked.wait_exit();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

#[test]
fn a_signal_to_the_waiting_listener_does_not_stop_it() {
    let service = Service::start();
    wait_until("the manhole thread", || {
        !threads_named(service.pid, "manhole").is_empty()
    });
    let listener = threads_named(service.pid, "manhole")[0];
    for signal in [libc::SIGRTMAX(), libc::SIGUSR1, libc::SIGTERM] {
        // SAFETY: signals one thread of a child process.
        unsafe { libc::syscall(libc::SYS_tgkill, service.pid, listener, signal) };
    }
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(service.text().ask("add 1 2"), "3\n");
}

#[test]
fn forked_workers_get_their_own_manhole_and_leave_the_parents_alone() {
    let mut parent = Service::spawn("prefork", &["2"], None);
    let stdout = parent.wait_for_stdout("worker");
    parent.wait_for_socket();
    wait_until("two workers", || {
        parent.stdout().matches("worker ").count() == 2
    });
    let workers: Vec<u32> = parent
        .stdout()
        .lines()
        .filter_map(|line| line.strip_prefix("worker ")?.parse().ok())
        .collect();
    assert!(stdout.contains(&format!("parent {}", parent.pid)));
    for &worker in &workers {
        let socket = default_socket(worker);
        wait_until(&format!("worker {worker}'s socket"), || is_socket(&socket));
        let mut session = support::Text::connect_silent(&socket);
        let greeting = session.greeting();
        assert!(
            greeting.starts_with(&format!("manhole 0.1.0, pid {worker}, ")),
            "{greeting}"
        );
        assert_eq!(session.ask("get role"), "worker\n");
    }
    assert_eq!(parent.text().ask("get role"), "parent\n");

    // 50 short children through Command, 50 by fork and exec: none leaves a
    // socket behind, and none hangs.
    parent.send_stdin("spawn 50");
    parent.send_stdin("forkexec 50");
    parent.wait_for_stdout("forkexec done:");
    let children: Vec<u32> = parent
        .stdout()
        .lines()
        .filter(|line| line.starts_with("spawn done:") || line.starts_with("forkexec done:"))
        .flat_map(|line| {
            line.split(':')
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .map(|pid| pid.parse().unwrap())
                .collect::<Vec<u32>>()
        })
        .collect();
    assert_eq!(children.len(), 100);
    std::thread::sleep(Duration::from_millis(600));
    for child in children {
        assert!(
            !default_socket(child).exists(),
            "child {child} left a socket"
        );
    }

    // Workers exit with their parent; the parent's socket outlives them.
    for &worker in &workers {
        send_signal(worker, libc::SIGKILL);
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        is_socket(&parent.socket),
        "a child never removes the parent's socket"
    );
    assert_eq!(parent.text().ask("get role"), "parent\n");
    parent.close_stdin();
    assert!(parent.wait_exit().success());
    for worker in workers {
        let _ = std::fs::remove_file(default_socket(worker));
    }
}

#[test]
fn a_removed_socket_is_put_back() {
    let service = Service::start();
    let inode = std::fs::metadata(&service.socket).unwrap().ino();
    std::fs::remove_file(&service.socket).unwrap();
    wait_until("the socket to be re-created", || is_socket(&service.socket));
    assert_ne!(std::fs::metadata(&service.socket).unwrap().ino(), inode);
    assert_eq!(service.text().ask("add 4 4"), "8\n");
    service.wait_for_stderr("was removed; created it again");
}

fn voluntary_switches(pid: u32, tid: u32) -> u64 {
    task_status(pid, tid, "voluntary_ctxt_switches")
        .parse()
        .unwrap()
}

/// An idle manhole sleeps in `poll`. The exceptions: while it listens, it
/// wakes once a second for the flight recorder (on by default) and to
/// sample the counters of functions under `inspect(calls)` (as `service`
/// has) for `stats --window`; with `history=off` and no such function, it
/// never wakes.
#[test]
fn an_idle_manhole_never_wakes_up_but_to_sample_call_counters() {
    // In a directory of its own, so that nothing but the test touches the
    // socket's neighbourhood.
    let dir = support::scratch("idle-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("socket");
    let path_arg = path.display().to_string();
    // (example, arguments, MANHOLE, the most wake-ups allowed in 2 s)
    let cases = [
        ("service", vec![], ",activate_on=USR1", 0),
        ("embedded", vec![path_arg.as_str()], ",history=off", 0),
        ("embedded", vec![path_arg.as_str()], "", 3),
        ("service", vec![], ",history=off", 3),
    ];
    for (example, args, setting, most) in cases {
        let setting = format!("socket_path={}{setting}", path.display());
        let service =
            Service::spawn_with_env(example, &args, &[("MANHOLE", &setting)], Some(&path));
        if !setting.contains("activate_on") {
            // A first session shows the symbol tables are loaded.
            service.wait_for_socket();
            drop(service.text());
            support::wait_until("the session to end", || {
                threads_named(service.pid, "manhole-session").is_empty()
            });
        } else {
            installed(&service);
        }
        // The thread takes its name once it runs; then let it settle into
        // its wait.
        support::wait_until("the manhole thread", || {
            threads_named(service.pid, "manhole").len() == 1
        });
        std::thread::sleep(Duration::from_millis(200));
        let manhole = threads_named(service.pid, "manhole");
        let before = voluntary_switches(service.pid, manhole[0]);
        std::thread::sleep(Duration::from_secs(2));
        let after = voluntary_switches(service.pid, manhole[0]);
        assert!(
            after - before <= most,
            "the idle manhole thread woke up {} times in 2 s ({example} {setting:?})",
            after - before
        );
        if most > 0 {
            assert!(after > before, "no samples taken ({example})");
        }
    }
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn files_beside_the_socket_wake_nothing_and_its_own_move_is_repaired() {
    let dir = support::scratch("busy-dir");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("socket");
    let setting = format!("socket_path={}", path.display());
    let service = Service::spawn_with_env("service", &[], &[("MANHOLE", &setting)], Some(&path));
    installed(&service);
    service.wait_for_socket();
    support::wait_until("the manhole thread", || {
        threads_named(service.pid, "manhole").len() == 1
    });
    std::thread::sleep(Duration::from_millis(200));
    let manhole = threads_named(service.pid, "manhole")[0];
    let before = voluntary_switches(service.pid, manhole);
    for index in 0..200 {
        let made = dir.join(format!("other-{index}"));
        let renamed = dir.join(format!("renamed-{index}"));
        std::fs::write(&made, b"x").unwrap();
        std::fs::rename(&made, &renamed).unwrap();
        std::fs::remove_file(&renamed).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let woken = voluntary_switches(service.pid, manhole) - before;
    assert!(
        woken <= 2,
        "200 files beside the socket woke it {woken} times"
    );

    let inode = std::fs::metadata(&path).unwrap().ino();
    std::fs::rename(&path, dir.join("moved-away")).unwrap();
    wait_until("the moved socket to be put back", || is_socket(&path));
    assert_ne!(std::fs::metadata(&path).unwrap().ino(), inode);
    assert_eq!(service.text().ask("add 4 4"), "8\n");
    drop(service);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn every_manhole_descriptor_is_close_on_exec() {
    let service = Service::start();
    let mut session = service.text();
    session.ask("stacks");
    let mut checked = 0;
    for entry in std::fs::read_dir(format!("/proc/{}/fd", service.pid)).unwrap() {
        let fd: u32 = entry
            .unwrap()
            .file_name()
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        // Standard streams, and what the test runner itself passed down
        // (cargo's jobserver pipe), are not the manhole's.
        let ours = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok();
        if fd <= 2
            || ours.is_some()
                && ours == std::fs::read_link(format!("/proc/{}/fd/{fd}", service.pid)).ok()
        {
            continue;
        }
        let info = std::fs::read_to_string(format!("/proc/{}/fdinfo/{fd}", service.pid))
            .unwrap_or_default();
        let Some(flags) = info.lines().find_map(|line| line.strip_prefix("flags:")) else {
            continue;
        };
        let flags = u32::from_str_radix(flags.trim(), 8).unwrap();
        let target =
            std::fs::read_link(format!("/proc/{}/fd/{fd}", service.pid)).unwrap_or_default();
        // The manhole's kinds of descriptor; the runtime's own are not its.
        let kind = target.to_string_lossy();
        if !["socket:", "pipe:", "anon_inode:", "/tmp", "/proc"]
            .iter()
            .any(|prefix| kind.starts_with(prefix))
        {
            continue;
        }
        assert!(
            flags & libc::O_CLOEXEC as u32 != 0,
            "fd {fd} ({}) is inherited by exec",
            target.display()
        );
        checked += 1;
    }
    // The listening socket, its watch, the wake-up pipe, the session...
    assert!(checked >= 4, "only {checked} descriptors found");
}

fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap()
}

fn has_thread(pid: u32, name: &str) -> bool {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|tasks| {
            tasks.flatten().any(|task| {
                std::fs::read_to_string(task.path().join("comm"))
                    .is_ok_and(|comm| comm.trim_end() == name)
            })
        })
        .unwrap_or(false)
}

#[test]
fn symbols_are_read_on_the_first_dump_and_let_go_when_idle() {
    let off = Service::spawn_with_env("service", &[], &[("MANHOLE", "off")], None);
    let on = Service::spawn_with_env("service", &[], &[("MANHOLE", "symbol_cache_idle=1s")], None);
    on.wait_for_socket();
    std::thread::sleep(Duration::from_millis(300));
    let (off_kib, rest_kib) = (resident_kib(off.pid), resident_kib(on.pid));
    // A resting manhole has read no debug info: its threads and code only.
    assert!(
        rest_kib < off_kib + 4 * 1024,
        "at rest {rest_kib} KiB against {off_kib} KiB with MANHOLE=off"
    );
    assert!(!has_thread(on.pid, "manhole-symbols"));

    let dump = on.json().request("stacks", serde_json::json!({}));
    assert!(
        dump["result"]["threads"]
            .as_array()
            .is_some_and(|threads| !threads.is_empty()),
        "{dump}"
    );
    let dumped_kib = resident_kib(on.pid);
    assert!(has_thread(on.pid, "manhole-symbols"), "no releaser");
    wait_until("the symbols to be let go", || {
        !has_thread(on.pid, "manhole-symbols")
    });
    let released_kib = resident_kib(on.pid);
    assert!(
        released_kib + 8 * 1024 < dumped_kib,
        "{dumped_kib} KiB after the dump, {released_kib} KiB once let go"
    );
    // And read again when asked again.
    let again = on.text().ask("stacks");
    assert!(again.contains("main"), "{again}");
}
