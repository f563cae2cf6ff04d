//! `get` and `set`: the inspected items, read and written.

use super::answer::{in_context, inspected_item, Answer};
use super::stats::stats_table;
use crate::instrument::registry::{self, Inspect, InspectKind, Source};
use crate::options::Served;
use manhole_wire::{value_text, Failure, Reason};
use serde_json::Value;

/// Reads an inspected item, as `get` does, under the installed manhole's
/// lock timeout.
pub(crate) fn get(name: &str, served: &Served) -> Result<Answer, Failure> {
    registry::with_lock_timeout(served.waits.lock, || read(inspected_item(name)?))
}

/// A lock that could not be read, with who holds it when the watchdog
/// has found out (the holder of a lock in a deadlock it sees).
fn with_holder(failure: Failure, name: &str) -> Failure {
    if failure.reason != Some(Reason::LockTimeout) {
        return failure;
    }
    match crate::report::watchdog::known_holder(name) {
        Some((tid, thread)) => Failure {
            message: format!(
                "{}; the watchdog found it held by thread {tid} {thread:?}, in a possible deadlock (`stalls` has it)",
                failure.message
            ),
            ..failure
        },
        None => failure,
    }
}

pub(super) fn read(item: &'static Inspect) -> Result<Answer, Failure> {
    match item.source {
        Source::Read(read) => read().map(Answer::value).map_err(|failure| {
            in_context(
                with_holder(failure, item.meta.name),
                item.meta.name,
                "reading",
            )
        }),
        Source::Calls(stats) => {
            let summary = stats.snapshot().summary();
            Ok(Answer {
                json: serde_json::to_value(&summary).unwrap_or(Value::Null),
                text: stats_table(&[(registry::shown_name(item), summary)]),
            })
        }
    }
}

pub(super) fn set(name: &str, value: Value) -> Result<Answer, Failure> {
    let item = inspected_item(name)?;
    let Some(write) = item.write else {
        let why = match item.kind {
            InspectKind::Static => format!(
                "`{name}` is not writable; mark its static `#[manhole::inspect(writable)]` to allow `set`"
            ),
            InspectKind::Computed => {
                format!("`{name}` is computed by a function, so there is nothing to set")
            }
            InspectKind::Calls => {
                format!("`{name}` is a function's call statistics, which cannot be set")
            }
        };
        return Err(Failure::new(Reason::NotWritable, why));
    };
    let json = write(value).map_err(|failure| match failure.reason {
        Some(Reason::BadValue) => Failure {
            message: format!("cannot set `{name}`: {}", failure.message),
            ..failure
        },
        _ => in_context(failure, name, "setting"),
    })?;
    let text = format!(
        "{name} = {} (was {})\n",
        value_text(&json["value"]),
        value_text(&json["previous"])
    );
    Ok(Answer { json, text })
}
