//! `watchdog` and `stalls`: the watchdog's threshold, shown or changed
//! live, and its reports kept.

use super::answer::Answer;
use crate::capture::stacks;
use crate::os::process;
use crate::report::watchdog;
use manhole_wire::WatchdogThreshold;
use serde_json::json;
use std::fmt::Write as _;

/// `watchdog [DURATION|off]`: changes the threshold when asked, then
/// answers the one in force.
pub(super) fn watchdog(setting: Option<WatchdogThreshold>) -> Answer {
    match setting {
        Some(WatchdogThreshold::Off) => watchdog::set_threshold(None),
        Some(WatchdogThreshold::After(threshold)) => watchdog::set_threshold(Some(threshold)),
        None => {}
    }
    let threshold = watchdog::threshold();
    let in_force = threshold.map_or(WatchdogThreshold::Off, WatchdogThreshold::After);
    let stuck_call_ms = watchdog::stuck_call().as_millis() as u64;
    let heartbeats = watchdog::heartbeats();
    let text = match threshold {
        Some(threshold) => format!(
            "watchdog {in_force}: polls and lock waits longer than {} ms are reported, calls in flight longer than {stuck_call_ms} ms; {heartbeats} heartbeat(s) watched\n",
            threshold.as_millis()
        ),
        None => format!(
            "watchdog off: no poll, call or lock is watched; {heartbeats} heartbeat(s) watched{}\n",
            if heartbeats == 0 { " (so no watchdog thread runs)" } else { "" }
        ),
    };
    Answer {
        json: json!({
            "threshold": in_force.to_string(),
            "threshold_ms": threshold.map(|threshold| threshold.as_millis() as u64),
            "stuck_call_ms": stuck_call_ms,
            "heartbeats": heartbeats,
        }),
        text,
    }
}

/// `stalls [--short]`: the reports kept, newest first, each with what its
/// first line said (the calls with their arguments, the thread, a possible
/// deadlock) and its whole stack, or the short form of it.
pub(super) fn stalls(short: bool) -> Answer {
    let (reports, suppressed) = watchdog::kept();
    let mut text = match reports.len() {
        0 => "no stall reported\n".to_owned(),
        count => format!("{count} stall report(s), newest first\n"),
    };
    let mut entries = Vec::new();
    for report in reports.iter().rev() {
        let at = process::rfc3339_with(report.at, 3);
        let what = if report.chain.is_empty() {
            report.name.clone()
        } else {
            report.chain.join(" → ")
        };
        let _ = write!(
            text,
            "\n{at} {} {what} for {} ms",
            report.kind.name(),
            report.for_ms
        );
        if let Some(thread) = report.thread {
            let _ = write!(text, " on thread {thread}");
            if let Some(name) = &report.thread_name {
                let _ = write!(text, " {name:?}");
            }
        }
        match report.ended_after_ms {
            Some(ended) => {
                let _ = writeln!(text, ", ended after {ended} ms");
            }
            None => text.push('\n'),
        }
        if report.deadlock {
            text.push_str("  possible deadlock\n");
        }
        for waiter in &report.waiters {
            let _ = writeln!(
                text,
                "  waiting: thread {} {:?} for {} ms",
                waiter.tid, waiter.name, waiter.for_ms
            );
        }
        let _ = if short {
            stacks::write_short_frames(&mut text, &report.stack)
        } else {
            stacks::write_frames(&mut text, &report.stack)
        };
        let mut entry = json!({
            "kind": report.kind.name(),
            "name": report.name,
            "chain": report.chain,
            "for_ms": report.for_ms,
            "at": at,
            "thread": report.thread,
            "thread_name": report.thread_name,
            "reported_again": report.again,
            "stack": report.stack,
            "tree": report.tree,
        });
        if let Some(ended) = report.ended_after_ms {
            entry["ended_after_ms"] = json!(ended);
        }
        if !report.waiters.is_empty() {
            entry["waiters"] = json!(report.waiters);
            entry["deadlock"] = json!(report.deadlock);
        }
        entries.push(entry);
    }
    if suppressed > 0 {
        let _ = writeln!(
            text,
            "\n{suppressed} more report(s) suppressed by the rate limit (5 a minute of each kind)"
        );
    }
    Answer {
        json: json!({"reports": entries, "suppressed": suppressed}),
        text,
    }
}
