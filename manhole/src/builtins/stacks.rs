//! `stacks`, `threads` and the text session's greeting: every thread's
//! stack, or just its name and state.

use super::answer::{abandoned, Answer, Asked, Streamed};
use crate::capture::stacks;
use crate::os::procfs::Tasks;
use manhole_wire::Failure;
use serde_json::json;
use std::fmt::Write as _;

/// The text session's greeting: banner, every thread's stack, and a hint.
/// A text session collapses alike threads (a pool of idle workers would
/// otherwise fill screens with the same frames); JSON asks either way.
pub(crate) fn greeting(asked: Asked<'_>, collapse: bool) -> Result<Answer, Failure> {
    let executable =
        std::env::current_exe().map_or_else(|_| "?".to_owned(), |path| path.display().to_string());
    let version = env!("CARGO_PKG_VERSION");
    let pid = std::process::id();
    let stacks = stacks_text(&dump(asked)?, collapse);
    let text = format!(
        "manhole {version}, pid {pid}, {executable}\n{stacks}type `help` for commands, `quit` to leave\n",
    );
    Ok(Answer {
        json: json!({"version": version, "pid": pid, "executable": executable, "text": text}),
        text,
    })
}

/// A dump as text: every thread, or alike threads once.
pub(super) fn stacks_text(snapshot: &stacks::Stacks, collapse: bool) -> String {
    if collapse {
        snapshot.collapsed().to_string()
    } else {
        snapshot.to_string()
    }
}

pub(super) fn dump(asked: Asked<'_>) -> Result<stacks::Stacks, Failure> {
    stacks::snapshot_unless(asked.served.waits, asked.client_gone, None).ok_or_else(abandoned)
}

/// The JSON result of `stacks`, serialised as the session writes it.
pub(crate) fn stacks_json(asked: Asked<'_>, collapse: bool) -> Result<Streamed, Failure> {
    let snapshot = dump(asked)?;
    Ok(if collapse {
        Streamed::new(CollapsedDump(snapshot))
    } else {
        Streamed::new(snapshot)
    })
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
pub(super) fn stacks(asked: Asked<'_>, collapse: bool) -> Result<Answer, Failure> {
    Ok(Answer {
        json: serde_json::Value::Null,
        text: stacks_text(&dump(asked)?, collapse),
    })
}
