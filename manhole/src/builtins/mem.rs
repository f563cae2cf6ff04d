//! `mem`: resident memory as the kernel and the allocator see it, and
//! jemalloc's heap profile.

use super::answer::{bytes_human, Answer};
use crate::os::mem;
use manhole_wire::{value_text, Failure};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// `mem`: the kernel's view of resident memory, and the allocator's.
pub(super) fn memory() -> Answer {
    let resident = mem::resident();
    let allocator = mem::allocator();
    let json = json!({
        "rss_bytes": resident.map(|r| r.rss_bytes),
        "anon_bytes": resident.map(|r| r.anon_bytes),
        "file_bytes": resident.map(|r| r.file_bytes),
        "source": resident.map(|r| r.source),
        "allocator": allocator,
    });
    let mut text = match resident {
        Some(r) => format!(
            "resident   {} (anonymous {}, file-backed {}; from /proc/self/{})\n",
            bytes_human(r.rss_bytes),
            bytes_human(r.anon_bytes),
            bytes_human(r.file_bytes),
            r.source
        ),
        None => {
            "resident   ? (neither /proc/self/smaps_rollup nor /proc/self/status could be read)\n"
                .to_owned()
        }
    };
    let name = allocator["name"].as_str().unwrap_or("unknown");
    let _ = writeln!(text, "allocator  {name}");
    if let Value::Object(fields) = &allocator {
        for (key, value) in fields.iter().filter(|(key, _)| *key != "name") {
            let shown = match (key.strip_suffix("_bytes"), value.as_u64()) {
                (Some(label), Some(bytes)) => format!("{label:<16} {}", bytes_human(bytes)),
                _ => format!("{key:<16} {}", value_text(value)),
            };
            let _ = writeln!(text, "  {shown}");
        }
    }
    Answer { json, text }
}

/// `mem --heap-profile`: jemalloc's heap profile as gzipped pprof. Binary
/// pprof goes to a file through manhole-cli's `-o`; a text session gets it
/// as base64, which a shell can decode.
pub(super) fn heap_profile() -> Result<Answer, Failure> {
    let profile = mem::heap_profile()?;
    let text = format!(
        "jemalloc heap profile, {} bytes of gzipped pprof as base64 (`base64 -d > heap.pb.gz`; `manhole-cli {} mem --heap-profile -o heap.pb.gz` writes the file):\n{}\n",
        profile["bytes"],
        std::process::id(),
        value_text(&profile["data"])
    );
    Ok(Answer {
        json: profile,
        text,
    })
}
