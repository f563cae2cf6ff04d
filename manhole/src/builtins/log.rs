//! `log`: the tracing layer's filter, changed live, and its recent events
//! (feature `tracing`); without it, what to enable.

#[cfg(feature = "tracing")]
use super::answer::seconds_human;
use super::answer::Answer;
#[cfg(feature = "tracing")]
use crate::os::process;
#[cfg(feature = "tracing")]
use manhole_wire::follow_text_only;
use manhole_wire::{Failure, LogRequest, Reason};
#[cfg(feature = "tracing")]
use serde_json::json;
#[cfg(feature = "tracing")]
use std::fmt::Write as _;

/// `log` without the `tracing` feature: say how to get it, never pretend.
#[cfg(not(feature = "tracing"))]
pub(super) fn log_control() -> Result<std::convert::Infallible, Failure> {
    Err(Failure::new(
        Reason::NotEnabled,
        "`log` needs manhole's `tracing` feature: build with `manhole = { version = \"...\", features = [\"tracing\"] }` and put `manhole::tracing::layer()` first in the tracing subscriber",
    ))
}

/// The tracing layer to steer, or why there is none.
#[cfg(feature = "tracing")]
pub(super) fn log_control() -> Result<crate::tracing::Control, Failure> {
    crate::tracing::control().ok_or_else(|| {
        Failure::new(
            Reason::NotEnabled,
            "no `manhole::tracing::layer()` in this process: put it first in the tracing subscriber, as in `tracing_subscriber::registry().with(manhole::tracing::layer())`",
        )
    })
}

#[cfg(not(feature = "tracing"))]
pub(super) fn log(_request: LogRequest) -> Result<Answer, Failure> {
    match log_control()? {}
}

#[cfg(feature = "tracing")]
pub(super) fn log(request: LogRequest) -> Result<Answer, Failure> {
    let control = log_control()?;
    let status = match request {
        LogRequest::Tail(count) => return Ok(events_answer(&control.tail(count), control.newest())),
        LogRequest::After(seq) => {
            let (events, newest) = control.after(seq);
            return Ok(events_answer(&events, newest));
        }
        LogRequest::Follow => return Err(follow_text_only()),
        LogRequest::Show => control.status(),
        LogRequest::Reset => control.reset(),
        LogRequest::Set {
            filter,
            revert_after,
        } => control.set(&filter, revert_after).map_err(|err| {
            Failure::new(
                Reason::BadArgument,
                format!("{err}; the filter in force stays"),
            )
            .with_details(json!({"argument": "set", "got": filter, "expected": "an EnvFilter directive list, such as `info` or `warn,my_app=debug`"}))
        })?,
    };
    let reverts_in_s = status
        .reverts
        .as_ref()
        .map(|(seconds, _, _)| (seconds * 10.0).round() / 10.0);
    let mut json = json!({
        "filter": status.filter,
        "default": status.default,
        "reverts_in_s": reverts_in_s,
        "newest": control.newest(),
    });
    let mut text = match &status.previous {
        Some(previous) => format!("filter `{}` (was `{previous}`)", status.filter),
        None => format!("filter `{}`", status.filter),
    };
    if let Some(previous) = &status.previous {
        json["previous"] = json!(previous);
    }
    if let Some((seconds, at, back_to)) = &status.reverts {
        let at = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |since| since.as_secs_f64());
        let at = process::rfc3339_with(at, 0);
        json["reverts_at"] = json!(at);
        json["reverts_to"] = json!(back_to);
        let _ = write!(
            text,
            "; reverts to `{back_to}` in {} (at {at})",
            seconds_human(*seconds)
        );
    }
    if status.filter == status.default {
        text.push_str(", the default\n");
    } else {
        let _ = writeln!(text, "; the default is `{}`", status.default);
    }
    Ok(Answer { json, text })
}

/// New events as `log follow` shows them: each call returns the lines of
/// the events since the last.
pub(crate) type Follow = Box<dyn FnMut() -> String + Send>;

/// Starts following the log: the heading, and the source of new lines.
#[cfg(not(feature = "tracing"))]
pub(crate) fn follow() -> Result<(String, Follow), Failure> {
    match log_control()? {}
}

/// Starts following the log: the heading, and the source of new lines.
#[cfg(feature = "tracing")]
pub(crate) fn follow() -> Result<(String, Follow), Failure> {
    let control = log_control()?;
    let heading = manhole_wire::log_follow_heading(&control.status().filter);
    let mut seen = control.newest();
    let next = move || {
        let (events, newest) = control.after(seen);
        seen = newest;
        events.iter().map(|event| event.to_line()).collect()
    };
    Ok((heading, Box::new(next)))
}

/// Events of `log tail` or `log {"after"}`, with the number of the newest
/// event so far, from which a JSON client follows the log.
#[cfg(feature = "tracing")]
pub(super) fn events_answer(
    events: &[std::sync::Arc<crate::tracing::Record>],
    newest: u64,
) -> Answer {
    Answer {
        json: json!({
            "events": events.iter().map(|event| event.to_json()).collect::<Vec<_>>(),
            "newest": newest,
        }),
        text: events.iter().map(|event| event.to_line()).collect(),
    }
}
