//! `mem` over a real socket: the kernel's view against `/proc`, and the
//! allocator that really serves the process.

mod support;

use serde_json::{json, Value};
use support::Service;

/// A `Key:   123 kB` line of a `/proc` file, in bytes.
fn kilobytes(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        * 1024
}

fn near(a: u64, b: u64) -> bool {
    a.abs_diff(b) <= b / 2
}

#[test]
fn mem_agrees_with_proc_and_names_glibc_malloc() {
    let service = Service::start();
    let mut session = service.json();
    let mem = session.result("mem", Value::Null);
    let rollup = std::fs::read_to_string(format!("/proc/{}/smaps_rollup", service.pid));
    if let Ok(rollup) = rollup {
        assert_eq!(mem["source"], "smaps_rollup", "{mem}");
        let rss = mem["rss_bytes"].as_u64().unwrap();
        let anon = mem["anon_bytes"].as_u64().unwrap();
        assert!(near(rss, kilobytes(&rollup, "Rss")), "{mem}");
        assert!(near(anon, kilobytes(&rollup, "Anonymous")), "{mem}");
        assert_eq!(mem["file_bytes"].as_u64().unwrap(), rss - anon);
    } else {
        assert_eq!(mem["source"], "status", "{mem}");
    }

    let allocator = &mem["allocator"];
    assert_eq!(allocator["name"], "glibc", "{mem}");
    let field = |key: &str| {
        allocator[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {allocator}"))
    };
    assert!(field("in_use_bytes") > 0);
    // mallinfo2's own arithmetic: the arenas hold what is in use (less
    // what is mmapped on its own) and what is free.
    assert_eq!(
        field("in_use_bytes") - field("mmapped_bytes") + field("free_bytes"),
        field("arena_bytes"),
        "{allocator}"
    );

    let text = session.result("text", json!({"line": "mem"}));
    let text = text["text"].as_str().unwrap();
    assert!(text.starts_with("resident   "), "{text}");
    assert!(text.contains("\nallocator  glibc\n"), "{text}");
    assert!(text.contains("  in_use "), "{text}");
}

#[cfg(feature = "jemalloc")]
#[test]
fn mem_reads_jemalloc_when_it_is_the_global_allocator() {
    let service = Service::spawn("jemalloc", &[], None);
    service.wait_for_socket();
    let mut session = service.json();
    let before = session.result("mem", Value::Null)["allocator"].clone();
    assert_eq!(before["name"], "jemalloc", "{before}");
    session.result("call", json!({"name": "hold", "args": [16384]}));
    let after = session.result("mem", Value::Null)["allocator"].clone();
    let field = |stats: &Value, key: &str| {
        stats[key]
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {stats}"))
    };
    let grown = field(&after, "allocated_bytes") - field(&before, "allocated_bytes");
    assert!(grown >= 16 << 20, "allocated grew by {grown}: {after}");
    assert!(field(&after, "active_bytes") >= field(&after, "allocated_bytes"));
    assert!(field(&after, "resident_bytes") >= field(&after, "active_bytes"));
    assert!(after["retained_bytes"].is_u64(), "{after}");
    assert!(field(&after, "arenas") >= 1);
}

/// The flight recorder keeps jemalloc's heap every second: a held block
/// shows in `heap_mib`.
#[cfg(feature = "jemalloc")]
#[test]
fn history_keeps_jemallocs_heap() {
    let service = Service::spawn("jemalloc", &[], None);
    service.wait_for_socket();
    let mut session = service.json();
    session.result("call", json!({"name": "hold", "args": [16384]}));
    let mut highest = 0.0f64;
    support::wait_until("a point after the block was held", || {
        let reading = session.result("history", json!({"since": "5s", "every": "1s"}));
        highest = reading["series"]["heap_mib"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .fold(0.0, f64::max);
        highest >= 16.0
    });
}

/// `manhole-cli`, built beside the examples.
#[cfg(feature = "jemalloc")]
#[cfg(feature = "jemalloc-profiling")]
#[test]
fn mem_heap_profile_writes_jemallocs_profile_as_pprof() {
    use std::process::Command;
    use std::time::Duration;
    let service = Service::spawn_with_env(
        "jemalloc",
        &[],
        &[(
            "_RJEM_MALLOC_CONF",
            "prof:true,prof_active:true,lg_prof_sample:10",
        )],
        None,
    );
    service.wait_for_socket();
    let mut session = service.json();
    session.result("call", json!({"name": "hold", "args": [4096]}));
    let profile = session.result("mem", json!({"heap_profile": true}));
    assert_eq!(profile["format"], "pprof", "{profile}");
    assert_eq!(profile["encoding"], "base64", "{profile}");
    assert!(profile["bytes"].as_u64().unwrap() > 100, "{profile}");

    let path = support::scratch("heap.pb.gz");
    let pid = service.pid.to_string();
    let done = support::run_with_timeout(
        Command::new(support::cli()).args([
            pid.as_str(),
            "mem",
            "--heap-profile",
            "-o",
            path.to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    );
    assert_eq!(done.code, Some(0), "{done:?}");
    assert!(done.stderr.contains("wrote "), "{done:?}");
    let bytes = std::fs::read(&path).unwrap();
    // gzip, and a valid stream: `gzip -t` checks it to the end.
    assert_eq!(&bytes[..2], &[0x1f, 0x8b], "not gzip");
    let tested = support::run_with_timeout(
        Command::new("gzip").arg("-t").arg(&path),
        Duration::from_secs(10),
    );
    assert_eq!(tested.code, Some(0), "{tested:?}");
    let _ = std::fs::remove_file(&path);

    // A text session gets the same profile as base64.
    let text = service.text().ask("mem --heap-profile");
    assert!(text.starts_with("jemalloc heap profile, "), "{text}");
}

#[cfg(feature = "jemalloc")]
#[test]
fn mem_heap_profile_without_profiling_says_how_to_turn_it_on() {
    let service = Service::spawn("jemalloc", &[], None);
    service.wait_for_socket();
    let error = service.json().error("mem", json!({"heap_profile": true}));
    assert_eq!(error["data"]["reason"], "not_enabled", "{error}");
    let message = error["message"].as_str().unwrap();
    if cfg!(feature = "jemalloc-profiling") {
        assert!(message.contains("_RJEM_MALLOC_CONF=prof:true"), "{message}");
    } else {
        assert!(
            message.contains("`jemalloc-profiling` feature"),
            "{message}"
        );
    }
    // manhole-cli says the same, and exits 1.
    let done = support::run_with_timeout(
        std::process::Command::new(support::cli()).args([
            service.pid.to_string().as_str(),
            "mem",
            "--heap-profile",
            "-o",
            "/nonexistent/never-written",
        ]),
        std::time::Duration::from_secs(30),
    );
    assert_eq!(done.code, Some(1), "{done:?}");
    assert!(done.stderr.contains("error: "), "{done:?}");
}
