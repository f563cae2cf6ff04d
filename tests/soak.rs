//! Connect, run a command, disconnect, many times over, and check that the
//! host's file descriptors, threads and memory stay flat.
//!
//! CI runs 2,000 cycles. The long soak is the same test with more:
//!
//! ```text
//! MANHOLE_SOAK_CYCLES=100000 cargo test --release --test soak -- --nocapture
//! ```

mod support;

use serde_json::json;
use std::time::Instant;
use support::{threads_named, wait_until, Json, Service, Text};

#[derive(Debug, Clone, Copy, PartialEq)]
struct Resources {
    fds: usize,
    threads: usize,
    resident_kib: u64,
}

fn resources(pid: u32) -> Resources {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |key: &str| -> u64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in status"))
    };
    Resources {
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count(),
        threads: field("Threads:") as usize,
        resident_kib: field("VmRSS:"),
    }
}

/// How much resident memory may grow over the whole soak, whatever its
/// length: anything kept per session would pass it within a few thousand.
const MEMORY_BOUND_KIB: u64 = 8 * 1024;

#[test]
fn connect_command_disconnect_leaves_nothing_behind() {
    let cycles: usize = std::env::var("MANHOLE_SOAK_CYCLES")
        .ok()
        .and_then(|cycles| cycles.parse().ok())
        .unwrap_or(2_000);
    let service = Service::start();
    let warm_up = |count: usize| {
        for cycle in 0..count {
            soak_cycle(&service, cycle);
        }
        wait_until("every session to end", || {
            threads_named(service.pid, "manhole-session").is_empty()
        });
    };
    warm_up(200);
    let before = resources(service.pid);
    let started = Instant::now();
    warm_up(cycles);
    let elapsed = started.elapsed();
    let after = resources(service.pid);
    eprintln!(
        "{cycles} cycles in {:.1} s ({:.0} per second); before {before:?}, after {after:?}",
        elapsed.as_secs_f64(),
        cycles as f64 / elapsed.as_secs_f64()
    );
    assert_eq!(after.fds, before.fds, "file descriptors leaked");
    assert_eq!(after.threads, before.threads, "threads leaked");
    assert!(
        after.resident_kib <= before.resident_kib + MEMORY_BOUND_KIB,
        "resident memory grew from {} to {} KiB",
        before.resident_kib,
        after.resident_kib
    );
}

/// One connection and one command, in text or JSON by turns.
fn soak_cycle(service: &Service, cycle: usize) {
    let sum = cycle as i64;
    if cycle % 2 == 0 {
        let mut session = Json::connect(&service.socket);
        assert_eq!(
            session.result("call", json!({"name": "add", "args": [sum, 1]})),
            sum + 1
        );
    } else {
        // A text session: the greeting (with every thread's stack), one
        // command, and `quit`.
        let mut session = Text::connect_silent(&service.socket);
        session.send(&format!("add {sum} 1"));
        session.send("quit");
        let reply = session.until_prompt();
        assert!(reply.ends_with("type `help` for commands, `quit` to leave\n"));
        assert_eq!(session.until_prompt(), format!("{}\n", sum + 1));
    }
}
