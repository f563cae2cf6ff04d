//! `history`'s answer: the recorded points and the call counters' samples
//! read back one value per step, the events of the span, and the text
//! form with a sparkline per series.

use super::record::{happened, recorder, unix_ms, Event, Point};
use crate::instrument::calls::SpanFigures;
use crate::instrument::registry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What `history` answers.
#[derive(Debug, Serialize)]
pub(crate) struct Reading {
    /// The start of the first step, RFC 3339.
    pub(crate) from: Option<String>,
    pub(crate) step_ms: u64,
    /// Each series, one value per step, oldest first; `null` where
    /// nothing was recorded.
    pub(crate) series: BTreeMap<String, Vec<Option<f64>>>,
    pub(crate) events: Vec<Event>,
    /// How far back the recorder keeps.
    pub(crate) kept_s: Option<u64>,
}

/// The series over the last `since`, one value per `every`, of the names
/// that start with one of `names` (all when empty); `None` when the
/// recorder is off.
pub(crate) fn read(since: Duration, every: Duration, names: &[String]) -> Option<Reading> {
    let now = Instant::now();
    let now_unix = unix_ms();
    let steps = usize::try_from((since.as_millis() / every.as_millis().max(1)).max(1))
        .unwrap_or(1)
        .min(10_000);
    let every_ms = u64::try_from(every.as_millis()).unwrap_or(1000).max(1);
    let span_ms = every_ms * steps as u64;
    let from_unix = now_unix.saturating_sub(span_ms);
    let wanted = |name: &str| {
        names.is_empty() || names.iter().any(|wanted| name.starts_with(wanted.as_str()))
    };
    let guard = recorder();
    let kept = guard.as_ref()?;
    // The points at the step boundaries: the newest at or before each.
    let boundary = |step: usize| -> Option<&Point> {
        let at_ms = from_unix + every_ms * step as u64;
        kept.points
            .iter()
            .rev()
            .find(|point| point.unix_ms <= at_ms)
    };
    let boundaries: Vec<Option<&Point>> = (0..=steps).map(boundary).collect();
    let mut series: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    let per_step = |figure: &dyn Fn(&Point, &Point) -> Option<f64>| -> Vec<Option<f64>> {
        boundaries
            .windows(2)
            .map(|pair| match (pair[0], pair[1]) {
                (Some(start), Some(end)) if end.unix_ms > start.unix_ms => figure(start, end),
                _ => None,
            })
            .collect()
    };
    let at_end = |figure: &dyn Fn(&Point) -> f64| -> Vec<Option<f64>> {
        boundaries
            .windows(2)
            .map(|pair| match (pair[0], pair[1]) {
                (Some(start), Some(end)) if end.unix_ms > start.unix_ms => Some(figure(end)),
                _ => None,
            })
            .collect()
    };
    if wanted("cpu") {
        series.insert(
            "cpu".to_owned(),
            per_step(&|start, end| {
                let cpu = end.cpu_ns.saturating_sub(start.cpu_ns) as f64;
                let wall = (end.unix_ms - start.unix_ms) as f64 * 1e6;
                Some(rounded(cpu / wall * 100.0))
            }),
        );
    }
    if wanted("rss_mib") {
        series.insert(
            "rss_mib".to_owned(),
            at_end(&|point| rounded(point.rss_bytes as f64 / (1024.0 * 1024.0))),
        );
    }
    if wanted("threads") {
        series.insert(
            "threads".to_owned(),
            at_end(&|point| f64::from(point.threads)),
        );
    }
    if wanted("fds") {
        series.insert("fds".to_owned(), at_end(&|point| f64::from(point.fds)));
    }
    if wanted("heap_mib") && kept.points.iter().any(|point| point.heap_bytes.is_some()) {
        series.insert(
            "heap_mib".to_owned(),
            per_step(&|_, end| {
                end.heap_bytes
                    .map(|bytes| rounded(bytes as f64 / (1024.0 * 1024.0)))
            }),
        );
    }
    if kept.points.iter().any(|point| point.runtime.is_some()) {
        if wanted("tokio.busy_pct") {
            series.insert(
                "tokio.busy_pct".to_owned(),
                per_step(&|start, end| {
                    let wall_ns = (end.unix_ms - start.unix_ms) as f64 * 1e6;
                    let (before, after) = (start.runtime?, end.runtime?);
                    let capacity = wall_ns * f64::from(after.workers.max(1));
                    Some(rounded(
                        after.busy_ns.saturating_sub(before.busy_ns) as f64 / capacity * 100.0,
                    ))
                }),
            );
        }
        if wanted("tokio.global_queue") {
            series.insert(
                "tokio.global_queue".to_owned(),
                per_step(&|_, end| end.runtime.map(|runtime| runtime.global_queue as f64)),
            );
        }
        if wanted("tokio.alive_tasks") {
            series.insert(
                "tokio.alive_tasks".to_owned(),
                per_step(&|_, end| end.runtime.map(|runtime| runtime.alive_tasks as f64)),
            );
        }
    }
    for (index, (name, _)) in kept.statics.iter().enumerate() {
        if wanted(name) {
            series.insert(
                (*name).to_owned(),
                at_end(&|point| point.statics.get(index).copied().unwrap_or(f64::NAN))
                    .into_iter()
                    .map(|value| value.filter(|value| value.is_finite()))
                    .collect(),
            );
        }
    }
    let mut events: Vec<Event> = kept
        .events
        .iter()
        .filter(|event| event.unix_ms >= from_unix)
        .cloned()
        .collect();
    let kept_s = Some(kept.keep.as_secs());
    drop(guard);
    // The stalls and panics, from where they are kept already.
    let since_s = from_unix as f64 / 1000.0;
    let (stalls, _) = crate::report::watchdog::kept();
    events.extend(
        stalls
            .iter()
            .filter(|stall| stall.at >= since_s)
            .map(|stall| {
                happened(
                    stall.at,
                    "stall",
                    format!(
                        "{} {} for {} ms",
                        stall.kind.name(),
                        stall.chain.join(" → "),
                        stall.for_ms
                    ),
                )
            }),
    );
    let (panics, _) = crate::report::panics::kept();
    events.extend(
        panics
            .iter()
            .filter(|panic| panic.at >= since_s)
            .map(|panic| {
                happened(
                    panic.at,
                    "panic",
                    format!(
                        "{} at {} on thread {} {:?}",
                        panic.message, panic.location, panic.tid, panic.thread
                    ),
                )
            }),
    );
    events.sort_by_key(|event| event.unix_ms);
    // The counted functions, from their counters' own samples.
    for (name, stats) in registry::call_stats() {
        let base = |what: &str| format!("{name}.{what}");
        if !["calls_per_s", "errors_per_s", "p50_ms", "p99_ms"]
            .iter()
            .any(|what| wanted(&base(what)))
        {
            continue;
        }
        let figures: Vec<Option<SpanFigures>> = (0..steps)
            .map(|step| {
                let ago =
                    |at: usize| Duration::from_millis(span_ms.saturating_sub(every_ms * at as u64));
                stats.figures_between(now, ago(step), ago(step + 1))
            })
            .collect();
        let seconds = every_ms as f64 / 1000.0;
        let column = |pick: &dyn Fn(&SpanFigures) -> Option<f64>| -> Vec<Option<f64>> {
            figures
                .iter()
                .map(|figures| figures.as_ref().and_then(pick))
                .collect()
        };
        for (what, values) in [
            (
                "calls_per_s",
                column(&|f| Some(rounded(f.finished as f64 / seconds))),
            ),
            (
                "errors_per_s",
                column(&|f| Some(rounded(f.errors as f64 / seconds))),
            ),
            (
                "p50_ms",
                column(&|f| f.p50_ns.map(|ns| rounded(ns as f64 / 1e6))),
            ),
            (
                "p99_ms",
                column(&|f| f.p99_ns.map(|ns| rounded(ns as f64 / 1e6))),
            ),
        ] {
            if wanted(&base(what)) {
                series.insert(base(what), values);
            }
        }
    }
    Some(Reading {
        from: Some(crate::os::process::rfc3339(from_unix as f64 / 1000.0)),
        step_ms: every_ms,
        series,
        events,
        kept_s,
    })
}

fn rounded(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

impl Reading {
    /// The text form: a row per series with its sparkline, lowest, highest
    /// and last value, then the events.
    pub(crate) fn render(&self) -> String {
        use std::fmt::Write as _;
        let steps = self.series.values().map(Vec::len).max().unwrap_or(0);
        let mut text = format!(
            "history from {} in {} steps of {}{}\n",
            self.from.as_deref().unwrap_or("?"),
            steps,
            human_ms(self.step_ms),
            self.kept_s.map_or_else(String::new, |kept| format!(
                " (kept: the last {})",
                human_ms(kept * 1000)
            ))
        );
        let width = self
            .series
            .keys()
            .map(String::len)
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(
            text,
            "{:<width$}  {:<steps$}  {:>10}  {:>10}  {:>10}",
            "NAME", "", "LOWEST", "HIGHEST", "LAST"
        );
        for (name, values) in &self.series {
            let known: Vec<f64> = values.iter().flatten().copied().collect();
            let figure =
                |value: Option<f64>| value.map_or_else(|| "-".to_owned(), |v| format!("{v}"));
            let lowest = known.iter().copied().reduce(f64::min);
            let highest = known.iter().copied().reduce(f64::max);
            let last = values.iter().rev().find_map(|value| *value);
            let _ = writeln!(
                text,
                "{name:<width$}  {}  {:>10}  {:>10}  {:>10}",
                sparkline(values, lowest, highest),
                figure(lowest),
                figure(highest),
                figure(last)
            );
        }
        if self.events.is_empty() {
            text.push_str("no events in that span\n");
        } else {
            text.push_str("events:\n");
            for event in &self.events {
                let by = match (event.peer_uid, event.peer_pid) {
                    (Some(uid), Some(pid)) => format!("by uid {uid} pid {pid}"),
                    _ if matches!(event.kind, "connect" | "set" | "call") => {
                        "by an unknown peer".to_owned()
                    }
                    _ => String::new(),
                };
                let mut line = format!("  {} {}", event.at, event.kind);
                for part in [&event.what, &by] {
                    if !part.is_empty() {
                        line.push(' ');
                        line.push_str(part);
                    }
                }
                if !(event.outcome == "ok" || event.outcome.is_empty()) {
                    line.push_str(": ");
                    line.push_str(&event.outcome);
                }
                let _ = writeln!(text, "{line}");
            }
        }
        text
    }
}

/// One character per step, from `▁` (lowest) to `█` (highest); a space
/// where nothing was recorded.
fn sparkline(values: &[Option<f64>], lowest: Option<f64>, highest: Option<f64>) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let (lowest, highest) = (lowest.unwrap_or(0.0), highest.unwrap_or(0.0));
    values
        .iter()
        .map(|value| match value {
            None => ' ',
            Some(_) if highest <= lowest => BARS[0],
            Some(value) => {
                let share = (value - lowest) / (highest - lowest);
                BARS[((share * 7.0).round() as usize).min(7)]
            }
        })
        .collect()
}

fn human_ms(ms: u64) -> String {
    if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_span_lowest_to_highest_and_leave_gaps() {
        let line = sparkline(
            &[Some(1.0), None, Some(5.0), Some(3.0)],
            Some(1.0),
            Some(5.0),
        );
        assert_eq!(line, "▁ █▅");
        assert_eq!(
            sparkline(&[Some(2.0), Some(2.0)], Some(2.0), Some(2.0)),
            "▁▁"
        );
    }
}
