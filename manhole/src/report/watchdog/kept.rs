//! The reports: what one holds, the last 32 kept for `stalls`, the rate
//! limit (five a minute of each kind), and where each goes out.

use super::settings::stacks_sent;
use crate::capture::stacks::{self, Frame};
use crate::options::WatchdogStacks;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How many reports `stalls` keeps.
const KEPT: usize = 32;
/// At most this many reports a minute of each kind.
const PER_MINUTE: usize = 5;

/// What a report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    SlowPoll,
    StuckCall,
    MissedHeartbeat,
    LockWait,
}

impl Kind {
    fn index(self) -> usize {
        match self {
            Kind::SlowPoll => 0,
            Kind::StuckCall => 1,
            Kind::MissedHeartbeat => 2,
            Kind::LockWait => 3,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::SlowPoll => "slow_poll",
            Kind::StuckCall => "stuck_call",
            Kind::MissedHeartbeat => "missed_heartbeat",
            Kind::LockWait => "lock_wait",
        }
    }
}

/// One thread waiting on an inspected lock.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Waiter {
    pub(crate) tid: i32,
    pub(crate) name: String,
    pub(crate) for_ms: u64,
    pub(crate) stack: Vec<Frame>,
}

/// One report, as `stalls` shows it.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub(crate) kind: Kind,
    pub(crate) name: String,
    /// The calls from the one reported down to the innermost one stalled
    /// with it, outermost first, each with its arguments where they are
    /// shown (`handle(id=7)`); the heartbeat or lock for other kinds.
    pub(crate) chain: Vec<String>,
    pub(crate) for_ms: u64,
    /// Seconds since the epoch.
    pub(crate) at: f64,
    pub(crate) thread: Option<i32>,
    /// The thread's name, when it has one.
    pub(crate) thread_name: Option<String>,
    pub(crate) stack: Vec<Frame>,
    pub(crate) tree: Option<serde_json::Value>,
    pub(crate) ended_after_ms: Option<u64>,
    pub(crate) waiters: Vec<Waiter>,
    pub(crate) deadlock: bool,
    /// How many times the stall was reported again since (past twice and
    /// four times its limit), a line each.
    pub(crate) again: u32,
    /// The stall it belongs to, for `ended_after_ms`.
    pub(super) stall: Stall,
}

impl Report {
    /// A report about `stall`, made now: `name` and `chain` say what
    /// stalled, `for_ms` for how long; no thread, stack, tree or waiters
    /// until the caller gives them.
    pub(super) fn new(stall: Stall, name: &str, chain: Vec<String>, for_ms: u64) -> Report {
        Report {
            kind: stall.kind,
            name: name.to_owned(),
            chain,
            for_ms,
            at: now_epoch(),
            thread: None,
            thread_name: None,
            stack: Vec::new(),
            tree: None,
            ended_after_ms: None,
            waiters: Vec::new(),
            deadlock: false,
            again: 0,
            stall,
        }
    }

    /// The same, about threads waiting on locks: the first waiter's thread
    /// and stack are the report's.
    pub(super) fn waited_on(self, waiters: Vec<Waiter>, deadlock: bool) -> Report {
        let first = waiters.first();
        Report {
            thread: first.map(|waiter| waiter.tid),
            thread_name: first.map(|waiter| waiter.name.clone()),
            stack: first.map_or_else(Vec::new, |waiter| waiter.stack.clone()),
            waiters,
            deadlock,
            ..self
        }
    }
}

fn now_epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

/// One stall, told apart from the next of the same thing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Stall {
    pub(super) kind: Kind,
    /// The node, heartbeat or lock.
    pub(super) what: u64,
    /// When this stall of it began (a poll's start, a call's first poll,
    /// the last beat), so that the next one is another stall.
    pub(super) since: u64,
}

/// The reports kept, and those the rate limit left out.
pub(super) struct Kept {
    pub(super) reports: VecDeque<Report>,
    suppressed: u64,
    /// When each kind's recent reports went out, by [`Kind::index`].
    sent: [VecDeque<Instant>; 4],
}

pub(super) static KEPT_REPORTS: Mutex<Kept> = Mutex::new(Kept {
    reports: VecDeque::new(),
    suppressed: 0,
    sent: [const { VecDeque::new() }; 4],
});

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The reports kept, oldest first, and how many were suppressed.
pub(crate) fn kept() -> (Vec<Report>, u64) {
    let kept = lock(&KEPT_REPORTS);
    (kept.reports.iter().cloned().collect(), kept.suppressed)
}

/// Keeps the report and sends it out, unless its kind has had its five
/// this minute.
pub(super) fn report(report: Report, summary: &str) {
    let kind = report.kind;
    {
        let mut kept = lock(&KEPT_REPORTS);
        let now = Instant::now();
        let recent = &mut kept.sent[kind.index()];
        while recent
            .front()
            .is_some_and(|at| now.duration_since(*at) > Duration::from_secs(60))
        {
            recent.pop_front();
        }
        // A possible deadlock is reported once whatever the rate: it is
        // the one report that says the stall will not end by itself.
        let first_deadlock = report.deadlock
            && !kept
                .reports
                .iter()
                .any(|kept| kept.deadlock && kept.stall == report.stall);
        let sent = &mut kept.sent[kind.index()];
        if sent.len() >= PER_MINUTE && !first_deadlock {
            kept.suppressed += 1;
            return;
        }
        sent.push_back(now);
        if kept.reports.len() == KEPT {
            kept.reports.pop_front();
        }
        kept.reports.push_back(report.clone());
    }
    let mut text = format!("{summary}\n");
    write_stack_sent(&mut text, &report.stack);
    for waiter in report.waiters.iter().skip(1) {
        if stacks_sent() != WatchdogStacks::None {
            let _ = writeln!(text, "thread {} {:?}:", waiter.tid, waiter.name);
        }
        write_stack_sent(&mut text, &waiter.stack);
    }
    send(kind, &text);
}

/// A stall reported before, past twice or four times its limit: one line
/// out, and its kept record brought up to date. Not rate-limited: a stall
/// has two of them at most; but one whose first report the rate limit left
/// out gets no line either, since nothing said what it goes on from.
pub(super) fn report_again(stall: Stall, for_ms: u64, line: &str) {
    let first_went_out = {
        let mut kept = lock(&KEPT_REPORTS);
        match kept.reports.iter_mut().rev().find(|r| r.stall == stall) {
            Some(report) => {
                report.for_ms = report.for_ms.max(for_ms);
                report.again += 1;
                true
            }
            None => false,
        }
    };
    if first_went_out {
        send(stall.kind, &format!("{line}\n"));
    }
}

/// The most lines of stack a report sends out in the short form.
const SHORT_STACK_LINES: usize = 20;

/// The stack as [`Options::watchdog_stacks`](crate::Options::watchdog_stacks)
/// says: short (the program's frames, runtime runs folded, at most
/// [`SHORT_STACK_LINES`] lines), full, or none.
fn write_stack_sent(text: &mut String, frames: &[Frame]) {
    match stacks_sent() {
        WatchdogStacks::None => {}
        WatchdogStacks::Full => {
            let _ = stacks::write_frames(text, frames);
        }
        _ => {
            let mut short = String::new();
            let _ = stacks::write_short_frames(&mut short, frames);
            let lines: Vec<&str> = short.lines().collect();
            for line in lines.iter().take(SHORT_STACK_LINES) {
                let _ = writeln!(text, "{line}");
            }
            if lines.len() > SHORT_STACK_LINES {
                let _ = writeln!(
                    text,
                    "       … {} more lines: `stalls` has the whole stack",
                    lines.len() - SHORT_STACK_LINES
                );
            }
        }
    }
}

/// To the tracing layer when the program has one, else to stderr.
fn send(kind: Kind, text: &str) {
    #[cfg(feature = "tracing")]
    if crate::tracing::control().is_some() {
        ::tracing::warn!(target: "manhole::watchdog", kind = kind.name(), "{}", text.trim_end());
        return;
    }
    let mut lines = String::new();
    for line in text.lines() {
        let _ = writeln!(lines, "manhole watchdog: {} {line}", kind.name());
    }
    crate::log::always_raw(&lines);
}
