//! `tasks`: the in-flight instrumented async calls, as a forest.

use super::answer::{Answer, Asked};
use crate::instrument::inflight;
use manhole_wire::{Failure, Reason};
use serde_json::json;
use std::time::Duration;

/// The JSON result of `tasks`, written straight to a string, as
/// [`stacks_json`] is and for the same reason.
pub(crate) fn tasks_json(older_than: Duration, asked: Asked<'_>) -> Result<String, Failure> {
    let calls = inflight::calls(asked.served.waits.slow_poll);
    let forest = inflight::forest(&calls, older_than);
    #[derive(serde::Serialize)]
    struct Tasks<'a> {
        tasks: &'a [inflight::Tree],
    }
    serde_json::to_string(&Tasks { tasks: &forest }).map_err(|err| {
        Failure::new(
            Reason::NotSerialisable,
            format!("the tasks could not be written as JSON: {err}"),
        )
    })
}

/// `tasks`: the in-flight instrumented async calls, as a forest.
pub(super) fn tasks(older_than: Duration, slow_poll: Duration) -> Answer {
    let calls = inflight::calls(slow_poll);
    let forest = inflight::forest(&calls, older_than);
    let mut text = match (calls.len(), older_than.is_zero()) {
        (0, _) => "no instrumented async call is in flight (calls of `#[manhole::inspect(calls)] async fn` show here)\n".to_owned(),
        (count, true) => format!("{count} instrumented async call(s) in flight, oldest first\n"),
        (count, false) => format!(
            "{count} instrumented async call(s) in flight; the trees at least {:?} old, oldest first\n",
            older_than
        ),
    };
    for tree in &forest {
        tree.render(0, &mut text);
    }
    Answer {
        json: json!({ "tasks": forest }),
        text,
    }
}
