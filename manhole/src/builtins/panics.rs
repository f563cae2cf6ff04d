//! `panics`: the panics that did not kill the process, newest first, each
//! with the panicking thread's stack, symbolised when asked for.

use super::answer::Answer;
use crate::capture::{self, stacks, stacks::Symbols};
use crate::os::process;
use crate::report::panics::{self, KEPT};
use serde_json::json;
use std::fmt::Write as _;

pub(super) fn panics() -> Answer {
    let (kept, total) = panics::kept();
    let mut symbols = Symbols::default();
    let mut entries = Vec::new();
    let mut text = match total {
        0 => "no panic since the manhole was installed\n".to_owned(),
        _ if total > KEPT as u64 => {
            format!(
                "{total} panics since the manhole was installed; the last {KEPT}, newest first\n"
            )
        }
        _ => format!("{total} panic(s) since the manhole was installed, newest first\n"),
    };
    for panic in kept.iter().rev() {
        let frames = {
            // Symbolising shares the unwinder's caches with dumps.
            let _turn = capture::turn();
            symbols.frames(&panic.addresses, false)
        };
        // The hook's own frames and std's panic machinery come first; the
        // stack starts where the program called `panic!`.
        let start = frames
            .iter()
            .rposition(|frame| {
                frame.function.as_deref().is_some_and(|name| {
                    name.contains("__rust_end_short_backtrace")
                        || name.starts_with("std::panicking::")
                        || name.starts_with("core::panicking::")
                        || name.starts_with("std::panic::")
                })
            })
            .map_or(0, |last| last + 1);
        let frames = &frames[start..];
        let at = process::rfc3339_with(panic.at, 3);
        let _ = writeln!(
            text,
            "\n{at} thread {} {:?}: '{}' at {}",
            panic.tid, panic.thread, panic.message, panic.location
        );
        let _ = stacks::write_frames(&mut text, frames);
        entries.push(json!({
            "message": panic.message,
            "location": panic.location,
            "thread": panic.thread,
            "tid": panic.tid,
            "at": at,
            "stack": frames,
        }));
    }
    Answer {
        json: json!({"panics": entries, "total": total}),
        text,
    }
}
