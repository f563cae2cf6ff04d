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
