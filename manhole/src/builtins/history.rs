//! `history`: the flight recorder's series and events
//! ([`crate::report::history`]).

use super::answer::Answer;
use crate::report::history;
use manhole_wire::{Failure, Reason};
use std::time::Duration;

/// The recorded series over the last `since`, one value per `every`.
///
/// # Errors
///
/// [`Reason::NotEnabled`] when the recorder is off (`history=off`).
pub(crate) fn history(
    since: Duration,
    every: Duration,
    names: &[String],
) -> Result<Answer, Failure> {
    let Some(reading) = history::read(since, every, names) else {
        return Err(Failure::new(
            Reason::NotEnabled,
            "the flight recorder is off (history=off); start the process without it, or with MANHOLE=history=10m",
        ));
    };
    Ok(Answer {
        text: reading.render(),
        json: serde_json::to_value(&reading).unwrap_or(serde_json::Value::Null),
    })
}
