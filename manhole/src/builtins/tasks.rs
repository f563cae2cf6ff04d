//! `tasks`: the in-flight instrumented async calls, as a forest.

use super::answer::{Answer, Asked, Streamed};
use crate::instrument::inflight;
use serde_json::json;
use std::time::Duration;

/// The JSON result of `tasks`, serialised as the session writes it: ten
/// thousand calls in flight are a megabyte of JSON.
pub(crate) fn tasks_json(older_than: Duration, asked: Asked<'_>) -> Streamed {
    let calls = inflight::calls(asked.served.waits.slow_poll);
    #[derive(serde::Serialize)]
    struct Tasks {
        tasks: Vec<inflight::Tree>,
    }
    Streamed::new(Tasks {
        tasks: inflight::forest(&calls, older_than),
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
