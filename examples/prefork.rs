//! A pre-fork server: the parent forks worker processes that keep running,
//! and also runs short external commands. Each worker gets a manhole of its
//! own on `/tmp/manhole-<worker pid>`, after `reinstall_delay`; commands
//! that `exec` never get one; the parent's manhole is untouched by all of
//! them.
//!
//! ```text
//! cargo run --example prefork -- 2         # two workers
//! ```
//!
//! It prints one line per process (`parent PID`, `worker PID`) and then
//! takes lines on stdin: `spawn N` runs N short commands through
//! `std::process::Command`, `forkexec N` forks and execs N of them by hand,
//! and end of input stops the workers and exits.

use std::io::BufRead;
use std::process::Command;

/// This process's role.
#[manhole::inspect]
fn role() -> &'static str {
    if std::process::id() == PARENT.load(std::sync::atomic::Ordering::Relaxed) {
        "parent"
    } else {
        "worker"
    }
}

static PARENT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn worker() -> ! {
    println!("worker {}", std::process::id());
    // A worker serves until its parent goes away.
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if nix::unistd::getppid().as_raw() == 1 {
            std::process::exit(0);
        }
    }
}

fn fork_exec_true() -> Option<nix::unistd::Pid> {
    let program = c"/bin/true";
    // SAFETY: the child only calls execv and _exit, both async-signal-safe.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let _ = nix::unistd::execv(program, &[program]);
            // SAFETY: leaving the child without running the parent's atexit.
            unsafe { libc::_exit(127) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => Some(child),
        Err(err) => {
            eprintln!("fork failed: {err}");
            None
        }
    }
}

#[manhole::main(reinstall_delay_ms = 300)]
fn main() {
    PARENT.store(std::process::id(), std::sync::atomic::Ordering::Relaxed);
    let workers: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    println!("parent {}", std::process::id());
    let mut children = Vec::new();
    for _ in 0..workers {
        // SAFETY: the child runs only `worker`, which never returns.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => worker(),
            Ok(nix::unistd::ForkResult::Parent { child }) => children.push(child),
            Err(err) => eprintln!("fork failed: {err}"),
        }
    }
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        let (Some(what), count) = (
            words.next(),
            words
                .next()
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(1),
        ) else {
            continue;
        };
        let mut pids = Vec::new();
        for _ in 0..count {
            match what {
                "spawn" => match Command::new("/bin/true").spawn() {
                    Ok(mut child) => {
                        pids.push(child.id());
                        let _ = child.wait();
                    }
                    Err(err) => eprintln!("spawn failed: {err}"),
                },
                "forkexec" => {
                    if let Some(child) = fork_exec_true() {
                        pids.push(child.as_raw().unsigned_abs());
                        let _ = nix::sys::wait::waitpid(child, None);
                    }
                }
                other => eprintln!("unknown input {other:?}; expected spawn N or forkexec N"),
            }
        }
        let pids: Vec<String> = pids.iter().map(ToString::to_string).collect();
        println!("{what} done: {}", pids.join(" "));
    }
    for child in children {
        let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGTERM);
        let _ = nix::sys::wait::waitpid(child, None);
    }
}
