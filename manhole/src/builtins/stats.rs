//! `stats` and `stats reset`: the call statistics of `#[inspect(calls)]`
//! functions, since start or over a recent window.

use super::answer::{inspected_item, seconds_human, Answer};
use crate::instrument::calls::{human, Summary};
use crate::instrument::registry;
use manhole_wire::{Failure, Reason, SortBy};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::time::Duration;

pub(super) fn stats(sort: SortBy, window: Option<Duration>) -> Answer {
    let mut rows: Vec<(&str, Summary, Option<Option<Duration>>)> = registry::call_stats()
        .into_iter()
        .map(|(name, stats)| match window {
            None => (name, stats.snapshot().summary(), None),
            Some(window) => {
                let (snapshot, covered) = stats.window(window);
                (name, snapshot.summary(), Some(covered))
            }
        })
        .collect();
    let key = |summary: &Summary| match sort {
        SortBy::Name => 0,
        SortBy::Calls => summary.calls,
        SortBy::InFlight => summary.in_flight,
        SortBy::Errors => summary.errors,
        SortBy::Panics => summary.panics,
        SortBy::Mean => summary.mean_ns.unwrap_or(0),
        SortBy::P50 => summary.p50_ns.unwrap_or(0),
        SortBy::P99 => summary.p99_ns.unwrap_or(0),
        SortBy::Max => summary.max_ns.unwrap_or(0),
    };
    // Largest first; names break ties, and order the default sort.
    rows.sort_by(|(a_name, a, _), (b_name, b, _)| key(b).cmp(&key(a)).then(a_name.cmp(b_name)));
    let functions: Vec<Value> =
        rows.iter()
            .map(|(name, summary, covered)| {
                let mut row = serde_json::to_value(summary).unwrap_or(Value::Null);
                row["name"] = Value::from(*name);
                if let Some(covered) = covered {
                    let seconds = covered.map(|covered| covered.as_secs_f64());
                    row["covered_s"] = json!(seconds.map(|s| (s * 10.0).round() / 10.0));
                    row["calls_per_s"] = json!(seconds
                        .filter(|s| *s > 0.0)
                        .map(|s| (summary.calls as f64 / s * 10.0).round() / 10.0));
                }
                row
            })
            .collect();
    let table_rows: Vec<(&str, Summary)> = rows
        .iter()
        .map(|(name, summary, _)| (*name, summary.clone()))
        .collect();
    let mut text = if rows.is_empty() {
        "no function is under #[manhole::inspect(calls)]\n".to_owned()
    } else {
        stats_table(&table_rows)
    };
    let mut json = json!({ "functions": functions });
    if let Some(window) = window {
        json["window_s"] = json!(window.as_secs_f64());
        // The counts run from the sample nearest the window's start, which
        // may be a little older than the window: the heading gives the
        // span they and the rates cover.
        let spans: Vec<Duration> = rows
            .iter()
            .filter_map(|(_, _, covered)| covered.flatten())
            .filter(|covered| *covered + Duration::from_millis(500) >= window)
            .collect();
        let span = spans.iter().max().copied().unwrap_or(window);
        let mut heading = if span.abs_diff(window) >= Duration::from_millis(50) {
            format!(
                "over the last {} (the sampled span nearest the {} asked for)",
                seconds_human(span.as_secs_f64()),
                seconds_human(window.as_secs_f64())
            )
        } else {
            format!("over the last {}", seconds_human(window.as_secs_f64()))
        };
        for (name, summary, covered) in &rows {
            match covered {
                Some(Some(covered)) if *covered + Duration::from_millis(500) < window => {
                    let _ = write!(
                        heading,
                        "; `{name}` only {} (history since its reset or the manhole's start)",
                        seconds_human(covered.as_secs_f64())
                    );
                }
                Some(None) => {
                    let _ = write!(heading, "; `{name}` since the process started");
                }
                _ => {}
            }
            let _ = summary;
        }
        let rates: Vec<String> = functions
            .iter()
            .filter_map(|row| {
                Some(format!(
                    "{} {}/s",
                    row["name"].as_str()?,
                    row["calls_per_s"].as_f64()?
                ))
            })
            .collect();
        if !rates.is_empty() {
            let _ = write!(
                heading,
                "\ncalls per second over that span (CALLS divided by it): {}",
                rates.join(", ")
            );
        }
        text = format!("{heading}\n{text}");
    }
    Answer { json, text }
}

/// `stats reset [NAME]`: zeroes one function's counters, or every one's.
pub(super) fn stats_reset(name: Option<&str>) -> Result<Answer, Failure> {
    let all = registry::call_stats();
    let chosen: Vec<(&str, _)> = match name {
        None => all,
        Some(name) => {
            let found: Vec<_> = all.into_iter().filter(|(n, _)| *n == name).collect();
            if found.is_empty() {
                let item = inspected_item(name)?;
                return Err(Failure::new(
                    Reason::WrongKind,
                    format!(
                        "`{}` is not under #[manhole::inspect(calls)], so it has no call statistics to reset",
                        item.meta.name
                    ),
                ));
            }
            found
        }
    };
    let mut kept = 0;
    let names: Vec<&str> = chosen
        .iter()
        .map(|(name, stats)| {
            kept += stats.reset();
            *name
        })
        .collect();
    let mut text = match names.as_slice() {
        [] => "no function is under #[manhole::inspect(calls)]; nothing to reset".to_owned(),
        [one] => format!("reset the call statistics of `{one}` to zero"),
        many => format!(
            "reset the call statistics of {} functions to zero: {}",
            many.len(),
            many.join(", ")
        ),
    };
    if kept > 0 {
        let _ = write!(
            text,
            "; {kept} call{} in flight stay counted",
            if kept == 1 { "" } else { "s" }
        );
    }
    text.push('\n');
    Ok(Answer {
        json: json!({"reset": names, "in_flight": kept}),
        text,
    })
}

pub(super) fn stats_table(rows: &[(&str, Summary)]) -> String {
    let name_width = rows
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        .max(4);
    // Async functions add how many of their polls ran past `slow_poll`.
    let any_async = rows.iter().any(|(_, summary)| summary.slow_polls.is_some());
    let mut text = format!(
        "{:<name_width$}  {:>9}  {:>9}  {:>7}  {:>7}  {:>8}  {:>8}  {:>8}  {:>8}",
        "NAME", "CALLS", "IN-FLIGHT", "ERRORS", "PANICS", "MEAN", "P50", "P99", "MAX"
    );
    if any_async {
        text.push_str("  SLOW-POLLS");
    }
    text.push('\n');
    for (name, summary) in rows {
        let _ = write!(
            text,
            "{:<name_width$}  {:>9}  {:>9}  {:>7}  {:>7}  {:>8}  {:>8}  {:>8}  {:>8}",
            name,
            summary.calls,
            summary.in_flight,
            summary.errors,
            summary.panics,
            human(summary.mean_ns),
            human(summary.p50_ns),
            human(summary.p99_ns),
            human(summary.max_ns),
        );
        if any_async {
            let slow = summary
                .slow_polls
                .map_or_else(|| "-".to_owned(), |count| count.to_string());
            let _ = write!(text, "  {slow:>10}");
        }
        text.push('\n');
    }
    text
}
