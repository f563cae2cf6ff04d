//! `stacks`, `threads` and the text session's greeting: every thread's
//! stack, or just its name and state.

use super::answer::{abandoned, Answer, Asked, Streamed};
use crate::capture::stacks;
use crate::os::procfs::Tasks;
use manhole_wire::{Failure, Reason};
use serde_json::json;
use std::fmt::Write as _;

/// What `stacks` was asked for.
#[derive(Clone, Copy)]
pub(crate) struct Shown<'r> {
    /// Alike threads once.
    pub(crate) collapse: bool,
    /// The runtime's frames folded.
    pub(crate) short: bool,
    /// One thread by tid, or those whose name starts with this.
    pub(crate) thread: Option<&'r str>,
}

/// The text session's greeting: banner, every thread's stack, and a hint.
/// A text session collapses alike threads (a pool of idle workers would
/// otherwise fill screens with the same frames) and folds the runtime's
/// frames; JSON asks either way, both or neither.
pub(crate) fn greeting(asked: Asked<'_>, collapse: bool) -> Result<Answer, Failure> {
    let executable =
        std::env::current_exe().map_or_else(|_| "?".to_owned(), |path| path.display().to_string());
    let version = env!("CARGO_PKG_VERSION");
    let pid = std::process::id();
    let shown = Shown {
        collapse,
        short: collapse,
        thread: None,
    };
    let stacks = stacks_text(&dump(asked, None)?, shown);
    let text = format!(
        "manhole {version}, pid {pid}, {executable}\n{stacks}type `help` for commands, `quit` to leave\n",
    );
    Ok(Answer {
        json: json!({"version": version, "pid": pid, "executable": executable, "text": text}),
        text,
    })
}

/// A dump as text: every thread, or alike threads once; every frame, or
/// the runtime's folded.
pub(super) fn stacks_text(snapshot: &stacks::Stacks, shown: Shown<'_>) -> String {
    match (shown.collapse, shown.short) {
        (true, true) => stacks::Short(&snapshot.collapsed()).to_string(),
        (true, false) => snapshot.collapsed().to_string(),
        (false, true) => stacks::Short(snapshot).to_string(),
        (false, false) => snapshot.to_string(),
    }
}

/// Every thread's stack, or the chosen threads': a failure names a choice
/// that matches no thread.
pub(super) fn dump(asked: Asked<'_>, thread: Option<&str>) -> Result<stacks::Stacks, Failure> {
    let waits = asked.served.waits;
    let Some(wanted) = thread else {
        return stacks::snapshot_unless(waits, asked.client_gone, None).ok_or_else(abandoned);
    };
    let chosen = stacks::snapshot_of(waits, asked.client_gone, wanted).ok_or_else(abandoned)?;
    if chosen.threads.is_empty() {
        let what = if wanted.parse::<i32>().is_ok() {
            format!("no thread has tid {wanted}")
        } else {
            format!("no thread's name starts with `{wanted}`")
        };
        return Err(Failure::new(
            Reason::Unknown,
            format!("{what}; `threads` lists them"),
        ));
    }
    Ok(chosen)
}

/// The JSON result of `stacks`, serialised as the session writes it.
pub(crate) fn stacks_json(asked: Asked<'_>, shown: Shown<'_>) -> Result<Streamed, Failure> {
    let snapshot = dump(asked, shown.thread)?;
    if shown.short {
        // Shortened for people, in a form a script can still read: the
        // threads as they are, each folded run one `{"folded": N}`.
        let mut value = if shown.collapse {
            serde_json::to_value(snapshot.collapsed())
        } else {
            serde_json::to_value(&snapshot)
        }
        .map_err(|err| {
            Failure::new(
                Reason::NotSerialisable,
                format!("the dump could not be written as JSON: {err}"),
            )
        })?;
        fold_json_frames(&mut value);
        return Ok(Streamed::new(value));
    }
    Ok(if shown.collapse {
        Streamed::new(CollapsedDump(snapshot))
    } else {
        Streamed::new(snapshot)
    })
}

/// Folds the runtime's frames of each thread of a JSON dump.
fn fold_json_frames(dump: &mut serde_json::Value) {
    let Some(threads) = dump["threads"].as_array_mut() else {
        return;
    };
    for thread in threads {
        let Some(frames) = thread["frames"].as_array_mut() else {
            continue;
        };
        let runtime: Vec<bool> = frames
            .iter()
            .map(|frame| {
                stacks::is_runtime_frame(frame["function"].as_str(), frame["file"].as_str())
            })
            .collect();
        let folded = stacks::short_lines(&runtime)
            .into_iter()
            .map(|line| match line {
                stacks::ShortLine::Kept(index) => std::mem::take(&mut frames[index]),
                stacks::ShortLine::Folded(count) => json!({ "folded": count }),
            })
            .collect();
        *frames = folded;
    }
}

/// A dump that serialises with alike threads grouped.
struct CollapsedDump(stacks::Stacks);

impl serde::Serialize for CollapsedDump {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.collapsed().serialize(serializer)
    }
}

pub(super) fn threads() -> Answer {
    let threads = Tasks::open()
        .map(|tasks| stacks::thread_list(&tasks))
        .unwrap_or_default();
    let name_width = threads
        .iter()
        .map(|t| t.name.len())
        .max()
        .unwrap_or(0)
        .max(4);
    let mut text = format!("{:>7}  {:<name_width$}  STATE\n", "TID", "NAME");
    for thread in &threads {
        let _ = writeln!(
            text,
            "{:>7}  {:<name_width$}  {}",
            thread.tid, thread.name, thread.state
        );
    }
    Answer {
        json: json!({
            "threads": threads.iter().map(|t| json!({"tid": t.tid, "name": t.name, "state": t.state})).collect::<Vec<_>>(),
        }),
        text,
    }
}

/// `stacks` over text; over JSON a dump goes through [`stacks_json`].
pub(super) fn stacks(asked: Asked<'_>, shown: Shown<'_>) -> Result<Answer, Failure> {
    Ok(Answer {
        json: serde_json::Value::Null,
        text: stacks_text(&dump(asked, shown.thread)?, shown),
    })
}
