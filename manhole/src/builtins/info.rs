//! `info`: the process at a glance, and the limits it can see.

use super::answer::{bytes_human, seconds_human, Answer};
use crate::options::Served;
use crate::os::{limits, process};
use crate::profile::sampler;
use serde_json::{json, Value};
use std::fmt::Write as _;

/// `info`: the process at a glance, and the limits it can see.
pub(super) fn info(served: &Served) -> Answer {
    let facts = process::facts();
    let limits = limits::read();
    let started_at = facts.started_at.map(process::rfc3339);
    let mut json = json!({
        "pid": facts.pid,
        "exe": facts.exe,
        "args": facts.args,
        "started_at": started_at,
        "uptime_s": facts.uptime_s,
        "threads": facts.threads,
        "rss_bytes": facts.rss_bytes,
        "fds": facts.fds,
        "cpu_s": facts.cpu_s,
        "manhole_version": env!("CARGO_PKG_VERSION"),
        "profiling": sampler::in_progress(),
    });
    let mut limit_json = serde_json::Map::new();
    let mut limit_text = Vec::new();
    if let Some(bytes) = limits.memory_bytes {
        limit_json.insert("memory_bytes".to_owned(), json!(bytes));
        limit_text.push(format!("memory {}", bytes_human(bytes)));
    }
    if let Some(cores) = limits.cpu_cores {
        limit_json.insert("cpu_cores".to_owned(), json!(cores));
        limit_text.push(format!("cpu {cores} cores"));
    }
    if let Some((version, path)) = &limits.cgroup {
        limit_json.insert(
            "cgroup".to_owned(),
            json!({"version": version, "path": path}),
        );
        if let Some(last) = limit_text.last_mut() {
            let _ = write!(last, " (cgroup v{version} {path})");
        }
    }
    if let Some((soft, hard)) = limits.open_files {
        limit_json.insert("open_files".to_owned(), json!({"soft": soft, "hard": hard}));
        let shown = |limit: Option<u64>| limit.map_or("unlimited".to_owned(), |n| n.to_string());
        limit_text.push(format!(
            "open files {} soft, {} hard",
            shown(soft),
            shown(hard)
        ));
    }
    json["limits"] = Value::Object(limit_json);
    let unknown = || "?".to_owned();
    let mut text = String::new();
    let mut row = |key: &str, value: String| {
        let _ = writeln!(text, "{key:<9} {value}");
    };
    row("pid", facts.pid.to_string());
    row("exe", facts.exe.clone());
    let args: Vec<String> = facts
        .args
        .iter()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|ch| ch.is_alphanumeric() || "-_./=:,+@%".contains(ch));
            if plain {
                arg.clone()
            } else {
                manhole_wire::quote_word(arg)
            }
        })
        .collect();
    row("args", args.join(" "));
    if let Some(program) = served.program {
        json["program"] = json!({"name": program.name, "version": program.version});
        row("program", format!("{} {}", program.name, program.version));
    }
    row(
        "started",
        match (&started_at, facts.uptime_s) {
            (Some(at), Some(up)) => format!("{at} (up {})", seconds_human(up)),
            _ => unknown(),
        },
    );
    row(
        "threads",
        facts.threads.map_or_else(unknown, |n| n.to_string()),
    );
    if sampler::in_progress() {
        row("profiling", "a profile is running".to_owned());
    }
    row("rss", facts.rss_bytes.map_or_else(unknown, bytes_human));
    row("fds", facts.fds.map_or_else(unknown, |n| n.to_string()));
    row(
        "cpu",
        facts
            .cpu_s
            .map_or_else(unknown, |cpu| format!("{cpu:.2}s user+system")),
    );
    row("manhole", env!("CARGO_PKG_VERSION").to_owned());
    row(
        "limits",
        if limit_text.is_empty() {
            "none found".to_owned()
        } else {
            limit_text.join(", ")
        },
    );
    Answer { json, text }
}
