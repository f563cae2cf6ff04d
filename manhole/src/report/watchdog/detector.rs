//! The looks: each in-flight call, heartbeat and lock waiter measured
//! against its limit, a stall reported past one, two and four times it, and
//! its record closed when it is over.

use super::kept::{lock, report, report_again, Kind, Report, Stall, Waiter, KEPT_REPORTS};
use super::settings::{millis, stuck_call, waits};
use crate::capture::stacks::{self, Frame, ThreadStack};
use crate::instrument::heartbeat::Heartbeat;
use crate::instrument::{clock, inflight, registry, sync_calls};
use crate::os::procfs::{self, Tasks};
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// A stall seen before: how far it has been reported.
struct Seen {
    /// 1, 2 or 3: reported past once, twice or four times its limit.
    level: u32,
    for_ms: u64,
    /// Seen in the current look.
    alive: bool,
    /// When a look last saw it go on (the call clock, in nanoseconds).
    alive_at_ns: u64,
    /// For a stuck async call, its id: whether it is over is looked up on
    /// every look, not only when calls are aged.
    call: Option<usize>,
}

/// What the watchdog remembers between looks.
#[derive(Default)]
pub(super) struct Detector {
    seen: HashMap<Stall, Seen>,
    /// Threads seen waiting on an inspected lock: (address, since when).
    waiting: HashMap<i32, (usize, Instant)>,
    /// When every thread's `syscall` file was last read for lock waits,
    /// and how long that took.
    last_scan: Option<(Instant, Duration)>,
    /// Lock stalls already reported as a possible deadlock.
    deadlocks: HashSet<Stall>,
    /// When calls in flight were last aged against `stuck_call`.
    aged: Option<Instant>,
    /// When the current look began (the call clock, in nanoseconds).
    look_ns: u64,
}

/// What a look makes of a stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// Nothing to say now.
    No,
    /// Past its limit for the first time: a report, with its stack.
    First,
    /// Past twice or four times its limit: one line.
    Again,
}

/// How many times past its limit a stall must be for each report.
fn level(for_ms: u64, limit_ms: u64) -> u32 {
    let limit = limit_ms.max(1);
    if for_ms > 4 * limit {
        3
    } else if for_ms > 2 * limit {
        2
    } else if for_ms > limit {
        1
    } else {
        0
    }
}

impl Detector {
    pub(super) fn look(&mut self, threshold: Option<Duration>, beats: &[&'static Heartbeat]) {
        self.look_ns = clock::now_ns();
        for seen in self.seen.values_mut() {
            seen.alive = false;
        }
        if let Some(threshold) = threshold {
            // Calls in flight are aged four times per `stuck_call`; polls,
            // which stall for much less, on every look.
            let stuck = stuck_call();
            let full = self.aged.is_none_or(|aged| aged.elapsed() >= stuck / 4);
            if full {
                self.aged = Some(Instant::now());
                self.calls(threshold, &inflight::calls(threshold), true);
                self.sync_calls();
            } else {
                // Stuck calls are aged only now and then, but one that
                // was reported is looked up every time, so that its end is
                // seen within a look.
                let look_ns = self.look_ns;
                for (stall, seen) in &mut self.seen {
                    if stall.kind == Kind::StuckCall {
                        seen.alive = seen.call.is_none_or(inflight::still_in_flight);
                        if seen.alive {
                            seen.alive_at_ns = look_ns;
                        }
                    }
                }
                let polled = inflight::polled(threshold);
                if !polled.is_empty() {
                    self.calls(threshold, &polled, false);
                }
            }
            self.locks(threshold);
        }
        self.heartbeats(beats);
        // Stalls no longer seen are over: their records say for how long.
        // A call's stall ended between the last look that saw it and this
        // one: its middle is within half a look of the truth, where the
        // last age seen is up to a whole look short.
        let look_ns = self.look_ns;
        let ended: Vec<(Stall, u64)> = self
            .seen
            .iter()
            .filter(|(_, seen)| !seen.alive)
            .map(|(stall, seen)| {
                let measured = matches!(stall.kind, Kind::SlowPoll | Kind::StuckCall)
                    && stall.since != 0
                    && seen.alive_at_ns >= stall.since;
                let ended_ms = if measured {
                    let end_ns = seen.alive_at_ns + look_ns.saturating_sub(seen.alive_at_ns) / 2;
                    (end_ns - stall.since) / 1_000_000
                } else {
                    seen.for_ms
                };
                (*stall, ended_ms.max(seen.for_ms))
            })
            .collect();
        if !ended.is_empty() {
            let mut kept = lock(&KEPT_REPORTS);
            for (stall, for_ms) in ended {
                self.seen.remove(&stall);
                self.deadlocks.remove(&stall);
                for report in kept.reports.iter_mut().filter(|r| r.stall == stall) {
                    report.ended_after_ms.get_or_insert(for_ms);
                }
            }
        }
    }

    /// Notes a stall of `for_ms` against `limit_ms`; whether to report it
    /// now (first past its limit, then past twice and four times it).
    fn due(&mut self, stall: Stall, for_ms: u64, limit_ms: u64) -> Due {
        let needed = level(for_ms, limit_ms);
        let seen = self.seen.entry(stall).or_insert(Seen {
            level: 0,
            for_ms,
            alive: true,
            alive_at_ns: 0,
            call: None,
        });
        seen.alive = true;
        seen.alive_at_ns = self.look_ns;
        seen.for_ms = for_ms;
        if needed <= seen.level {
            return Due::No;
        }
        let first = seen.level == 0;
        seen.level = needed;
        if first {
            Due::First
        } else {
            Due::Again
        }
    }

    /// Keeps a stall seen without a look at its limit: one inside another
    /// that is reported for both.
    fn keep_alive(&mut self, stall: Stall) {
        if let Some(seen) = self.seen.get_mut(&stall) {
            seen.alive = true;
            seen.alive_at_ns = self.look_ns;
        }
    }

    /// Notes that `stall` is the stuck async call `id`, looked up on
    /// every look from now on.
    fn watch_call(&mut self, stall: Stall, id: usize) {
        if let Some(seen) = self.seen.get_mut(&stall) {
            seen.call = Some(id);
        }
    }

    /// Slow polls among `calls`, and, when `all` says they are every call
    /// in flight, the calls stuck past `stuck_call`.
    fn calls(&mut self, threshold: Duration, calls: &[inflight::Call], all: bool) {
        let stuck_ms = millis(stuck_call());
        let threshold_ms = millis(threshold);
        // Every call and their forest, read only when a report needs the
        // chain of parents or the tree.
        let mut everything: Option<(Vec<inflight::Call>, Vec<inflight::Tree>)> = None;
        let context = |everything: &mut Option<(Vec<inflight::Call>, Vec<inflight::Tree>)>| {
            if everything.is_none() {
                let every = if all {
                    calls.to_vec()
                } else {
                    inflight::calls(threshold)
                };
                let forest = inflight::forest(&every, Duration::ZERO);
                *everything = Some((every, forest));
            }
        };
        for call in calls {
            if let Some((tid, poll)) = call.polling {
                let poll_ms = millis(poll);
                let stall = Stall {
                    kind: Kind::SlowPoll,
                    what: call.id as u64,
                    since: call.poll_started_ns,
                };
                match self.due(stall, poll_ms, threshold_ms) {
                    Due::No => {}
                    Due::Again => report_again(
                        stall,
                        poll_ms,
                        &format!(
                            "{} still in one poll after {}",
                            call.label(),
                            human(poll_ms)
                        ),
                    ),
                    Due::First => {
                        context(&mut everything);
                        let (every, forest) = everything.as_ref().expect("just read");
                        let chain = parents(every, call);
                        let thread_name = thread_name(tid);
                        report(
                            Report {
                                thread: Some(tid),
                                thread_name: thread_name.clone(),
                                stack: stack_of(tid),
                                tree: tree_containing(forest, call.id),
                                ..Report::new(stall, call.name, chain.clone(), poll_ms)
                            },
                            &format!(
                                "{} in one poll for {} on {}, blocking its worker",
                                chain.join(ARROW),
                                human(poll_ms),
                                described(tid, thread_name.as_deref())
                            ),
                        );
                    }
                }
            }
            if !all {
                continue;
            }
            let age_ms = millis(call.age);
            let stall = Stall {
                kind: Kind::StuckCall,
                what: call.id as u64,
                since: call.first_poll_ns,
            };
            // A call stuck in one long poll is the slow poll reported
            // above: one stall, one report.
            if call
                .polling
                .is_some_and(|(_, poll)| millis(poll) > threshold_ms)
            {
                self.keep_alive(stall);
                continue;
            }
            // A call inside another that is stuck too is told in that
            // one's report, as the end of its chain.
            if age_ms > stuck_ms {
                context(&mut everything);
                let (every, _) = everything.as_ref().expect("just read");
                if stuck_parent(every, call, stuck_ms) {
                    self.keep_alive(stall);
                    continue;
                }
            }
            let due = self.due(stall, age_ms, stuck_ms);
            if due != Due::No {
                self.watch_call(stall, call.id);
            }
            match due {
                Due::No => {}
                Due::Again => report_again(
                    stall,
                    age_ms,
                    &format!("{} still in flight after {}", call.label(), human(age_ms)),
                ),
                Due::First => {
                    context(&mut everything);
                    let (every, forest) = everything.as_ref().expect("just read");
                    let chain = stuck_chain(every, call, stuck_ms);
                    let (thread, thread_name, stack, state) = match call.polling {
                        Some((tid, _)) => {
                            let name = thread_name(tid);
                            let state =
                                format!("being polled on {}", described(tid, name.as_deref()));
                            (Some(tid), name, stack_of(tid), state)
                        }
                        None => (None, None, Vec::new(), "waiting".to_owned()),
                    };
                    report(
                        Report {
                            thread,
                            thread_name,
                            stack,
                            tree: subtree(forest, call.id),
                            ..Report::new(stall, call.name, chain.clone(), age_ms)
                        },
                        &format!(
                            "{} in flight for {}, {state}",
                            chain.join(ARROW),
                            human(age_ms)
                        ),
                    );
                }
            }
        }
    }

    /// Sync calls in flight past `stuck_call`, with their thread's stack
    /// and the calls nested in them.
    fn sync_calls(&mut self) {
        let calls = sync_calls::in_flight();
        if calls.is_empty() {
            return;
        }
        let now = sync_calls::now();
        let stuck_ms = millis(stuck_call());
        let names = registry::call_stats();
        let name_of = |counters: usize| {
            names
                .iter()
                .find(|(_, known)| std::ptr::from_ref(*known) as usize == counters)
                .map_or("?", |(name, _)| *name)
        };
        for call in &calls {
            let age_ms = now.saturating_sub(call.started_ns) / 1_000_000;
            let stall = Stall {
                kind: Kind::StuckCall,
                what: (u64::from(call.tid.unsigned_abs()) << 8) | call.depth as u64,
                since: call.started_ns,
            };
            // A call nested in another stuck one on its thread is told in
            // that one's report.
            let outer_stuck = calls.iter().any(|other| {
                other.tid == call.tid
                    && other.depth < call.depth
                    && now.saturating_sub(other.started_ns) / 1_000_000 > stuck_ms
            });
            if outer_stuck {
                self.keep_alive(stall);
                continue;
            }
            match self.due(stall, age_ms, stuck_ms) {
                Due::No => continue,
                Due::Again => {
                    report_again(
                        stall,
                        age_ms,
                        &format!(
                            "{} still running after {}",
                            name_of(call.counters),
                            human(age_ms)
                        ),
                    );
                    continue;
                }
                Due::First => {}
            }
            // The calls nested in it on its thread, innermost last.
            let nested: Vec<&sync_calls::SyncCall> = calls
                .iter()
                .filter(|other| other.tid == call.tid && other.depth >= call.depth)
                .collect();
            let mut tree = serde_json::Value::Null;
            for inner in nested.iter().rev() {
                let age = now.saturating_sub(inner.started_ns) as f64 / 1e6;
                tree = serde_json::json!({
                    "name": name_of(inner.counters),
                    "age_ms": (age * 10.0).round() / 10.0,
                    "state": "running",
                    "thread": inner.tid,
                    "children": if tree.is_null() { Vec::new() } else { vec![tree] },
                });
            }
            // It, then the calls nested in it, outermost first.
            let chain: Vec<String> = nested
                .iter()
                .map(|inner| name_of(inner.counters).to_owned())
                .collect();
            let name = name_of(call.counters);
            let thread_name = thread_name(call.tid);
            report(
                Report {
                    thread: Some(call.tid),
                    thread_name: thread_name.clone(),
                    stack: stack_of(call.tid),
                    tree: Some(tree),
                    ..Report::new(stall, name, chain.clone(), age_ms)
                },
                &format!(
                    "{} running for {} on {} (a sync call)",
                    chain.join(ARROW),
                    human(age_ms),
                    described(call.tid, thread_name.as_deref())
                ),
            );
        }
    }

    fn heartbeats(&mut self, beats: &[&'static Heartbeat]) {
        for beat in beats {
            let Some(since) = beat.since_last() else {
                continue;
            };
            let late_ms = millis(since);
            let period_ms = millis(beat.period());
            let address = std::ptr::from_ref(*beat) as usize;
            let stall = Stall {
                kind: Kind::MissedHeartbeat,
                what: address as u64,
                since: beat.last_beat_ns(),
            };
            let due = self.due(stall, late_ms, period_ms);
            if due == Due::No {
                continue;
            }
            let name = registry::static_at(address)
                .map_or_else(|| format!("heartbeat at {address:#x}"), str::to_owned);
            if due == Due::Again {
                report_again(
                    stall,
                    late_ms,
                    &format!("{name} still not beaten after {}", human(late_ms)),
                );
                continue;
            }
            let tid = beat.thread();
            let thread_name = thread_name(tid);
            report(
                Report {
                    thread: Some(tid),
                    thread_name: thread_name.clone(),
                    stack: stack_of(tid),
                    ..Report::new(stall, &name, vec![name.clone()], late_ms)
                },
                &format!(
                    "{name} last beat {} ago on {}; its period is {}",
                    human(late_ms),
                    described(tid, thread_name.as_deref()),
                    human(period_ms)
                ),
            );
        }
    }

    /// Whether every thread's `syscall` file is to be read at this look.
    /// That costs a few microseconds a thread (6 ms at 1000 threads), so
    /// scans are spaced to stay a small share of a core: 1 % while a lock's
    /// state word says threads wait on it or waiters are being followed,
    /// 0.1 % otherwise (with a few threads, that is every look or two).
    fn lock_scan_due(&self, now: Instant) -> bool {
        let Some((at, took)) = self.last_scan else {
            return true;
        };
        let since = now.duration_since(at);
        // Not even the suspected pace allows a scan yet: no need to look at
        // the words.
        if since < took * 100 {
            return false;
        }
        since >= took * 1000 || !self.waiting.is_empty() || registry::lock_words_say_waiting()
    }

    fn locks(&mut self, threshold: Duration) {
        if !registry::any_inspected_lock() {
            self.waiting.clear();
            return;
        }
        let now = Instant::now();
        if !self.lock_scan_due(now) {
            // Between scans, what the last one saw stands: its stalls stay
            // open, and nothing new is said until the next.
            for (stall, seen) in &mut self.seen {
                if stall.kind == Kind::LockWait {
                    seen.alive = true;
                }
            }
            return;
        }
        let Some(tasks) = Tasks::open() else {
            return;
        };
        // A wait first seen now began after the previous scan: its middle
        // is the best guess of its start.
        let first_seen = self.last_scan.map_or(now, |(previous, _)| {
            previous + now.duration_since(previous) / 2
        });
        let mut waiting_now: HashMap<i32, (usize, Instant)> = HashMap::new();
        for tid in tasks.tids() {
            let Some(call) = tasks.in_syscall(tid) else {
                continue;
            };
            if call.number != libc::SYS_futex {
                continue;
            }
            let address = call.first_argument as usize;
            if registry::static_at(address).is_none() {
                continue;
            }
            let since = match self.waiting.get(&tid) {
                Some(&(known, since)) if known == address => since,
                _ => first_seen,
            };
            waiting_now.insert(tid, (address, since));
        }
        self.waiting = waiting_now;
        self.last_scan = Some((now, now.elapsed()));
        // Waiters grouped by the static they wait on.
        let mut by_lock: HashMap<&'static str, Vec<(i32, Duration)>> = HashMap::new();
        for (&tid, &(address, since)) in &self.waiting {
            if let Some(name) = registry::static_at(address) {
                by_lock
                    .entry(name)
                    .or_default()
                    .push((tid, now.duration_since(since)));
            }
        }
        let stuck = stuck_call();
        let deadlock = !self.waiting.is_empty()
            && by_lock
                .values()
                .flatten()
                .all(|(_, waited)| *waited > stuck)
            && by_lock.len() > 1;
        publish_holders(if deadlock {
            holders(&by_lock)
        } else {
            Vec::new()
        });
        if deadlock {
            self.deadlock_report(&by_lock, stuck);
            // Its locks' own stalls go on, without reports of their own.
            for seen in self
                .seen
                .iter_mut()
                .filter(|(stall, _)| stall.kind == Kind::LockWait)
            {
                seen.1.alive = true;
            }
            return;
        }
        let threshold_ms = millis(threshold);
        let mut names: Vec<&&'static str> = by_lock.keys().collect();
        names.sort();
        for name in names {
            let waiters = &by_lock[*name];
            let longest = waiters
                .iter()
                .map(|(_, waited)| *waited)
                .max()
                .unwrap_or_default();
            let longest_ms = millis(longest);
            let stall = Stall {
                kind: Kind::LockWait,
                what: registry::static_at(self.waiting[&waiters[0].0].0)
                    .map_or(0, |name| name.as_ptr() as u64),
                since: 0,
            };
            // A deadlock is worth a report of its own when it first shows,
            // whatever the stall's reports so far.
            let due = self.due(stall, longest_ms, threshold_ms);
            let newly_deadlocked = deadlock && self.deadlocks.insert(stall);
            if due == Due::Again && !newly_deadlocked {
                report_again(
                    stall,
                    longest_ms,
                    &format!(
                        "{} thread(s) still wait on `{name}` after {}",
                        waiters.len(),
                        human(longest_ms)
                    ),
                );
                continue;
            }
            if due == Due::No && !newly_deadlocked {
                continue;
            }
            let tids: Vec<i32> = waiters.iter().map(|(tid, _)| *tid).collect();
            let stacks = stacks::threads_of(&tids, waits());
            let mut waiters: Vec<Waiter> = waiters
                .iter()
                .map(|(tid, waited)| {
                    let stack = stacks.iter().find(|thread| thread.tid == *tid);
                    Waiter {
                        tid: *tid,
                        name: stack.map_or_else(String::new, |thread| thread.name.clone()),
                        for_ms: millis(*waited),
                        stack: stack.map_or_else(Vec::new, |thread| thread.frames.clone()),
                    }
                })
                .collect();
            waiters.sort_by_key(|waiter| waiter.tid);
            let who: Vec<String> = waiters
                .iter()
                .map(|waiter| {
                    format!(
                        "{} {:?} for {}",
                        waiter.tid,
                        waiter.name,
                        human(waiter.for_ms)
                    )
                })
                .collect();
            let mut summary = format!(
                "{} thread(s) wait on `{name}`: {}",
                waiters.len(),
                who.join(", ")
            );
            if deadlock {
                let _ = write!(
                    summary,
                    "; possible deadlock: every thread waiting on inspected locks has waited past stuck_call ({}) and none progressed",
                    human(millis(stuck))
                );
            }
            report(
                Report::new(stall, name, vec![(*name).to_owned()], longest_ms)
                    .waited_on(waiters, deadlock),
                &summary,
            );
        }
    }
}

impl Detector {
    /// A deadlock among the threads waiting on inspected locks, once: one
    /// report that names every thread, the lock it waits on and the lock
    /// it holds, where that can be told.
    fn deadlock_report(
        &mut self,
        by_lock: &HashMap<&'static str, Vec<(i32, Duration)>>,
        stuck: Duration,
    ) {
        let mut locks: Vec<&'static str> = by_lock.keys().copied().collect();
        locks.sort_unstable();
        let stall = Stall {
            kind: Kind::LockWait,
            what: locks.iter().fold(0u64, |what, name| {
                what ^ (name.as_ptr() as u64).rotate_left(7)
            }),
            since: 1,
        };
        let longest_ms = by_lock
            .values()
            .flatten()
            .map(|(_, waited)| millis(*waited))
            .max()
            .unwrap_or(0);
        self.seen
            .entry(stall)
            .or_insert(Seen {
                level: 1,
                for_ms: longest_ms,
                alive: true,
                alive_at_ns: self.look_ns,
                call: None,
            })
            .alive = true;
        if !self.deadlocks.insert(stall) {
            return;
        }
        let held = holders(by_lock);
        let mut threads: Vec<(i32, &'static str)> = by_lock
            .iter()
            .flat_map(|(lock, waiters)| waiters.iter().map(move |(tid, _)| (*tid, *lock)))
            .collect();
        threads.sort_unstable();
        let tids: Vec<i32> = threads.iter().map(|(tid, _)| *tid).collect();
        let stacks = stacks::threads_of(&tids, waits());
        let mut chain = Vec::new();
        let mut waiters = Vec::new();
        for (tid, waits_on) in &threads {
            let stack = stacks.iter().find(|thread| thread.tid == *tid);
            let name = stack.map_or_else(String::new, |thread| thread.name.clone());
            let holds: Vec<&str> = held
                .iter()
                .filter(|(_, holder)| holder == tid)
                .map(|(lock, _)| *lock)
                .collect();
            let holds = if holds.is_empty() {
                "holds no lock that can be told".to_owned()
            } else {
                format!("holds `{}`", holds.join("`, `"))
            };
            chain.push(format!(
                "thread {tid} {name:?} waits on `{waits_on}` and {holds}"
            ));
            let waited = by_lock[waits_on]
                .iter()
                .find(|(waiter, _)| waiter == tid)
                .map_or(0, |(_, waited)| millis(*waited));
            waiters.push(Waiter {
                tid: *tid,
                name,
                for_ms: waited,
                stack: stack.map_or_else(Vec::new, |thread| thread.frames.clone()),
            });
        }
        let unknown: Vec<&str> = locks
            .iter()
            .filter(|lock| !held.iter().any(|(known, _)| known == *lock))
            .copied()
            .collect();
        let mut summary = format!("possible deadlock: {}", chain.join("; "));
        if !unknown.is_empty() {
            let _ = write!(
                summary,
                "; who holds `{}` cannot be told (more than one thread could)",
                unknown.join("`, `")
            );
        }
        let _ = write!(
            summary,
            "; every thread waiting on inspected locks has waited past stuck_call ({}) and none progressed",
            human(millis(stuck))
        );
        report(
            Report::new(stall, &locks.join(", "), chain, longest_ms).waited_on(waiters, true),
            &summary,
        );
    }
}

/// Who holds each lock of a deadlock, where it can be told: a thread
/// waiting on a lock does not hold it, so a lock is held by the one
/// deadlocked thread that does not wait on it, when there is one only.
fn holders(by_lock: &HashMap<&'static str, Vec<(i32, Duration)>>) -> Vec<(&'static str, i32)> {
    let all: Vec<(i32, &'static str)> = by_lock
        .iter()
        .flat_map(|(lock, waiters)| waiters.iter().map(move |(tid, _)| (*tid, *lock)))
        .collect();
    let mut held = Vec::new();
    for lock in by_lock.keys() {
        let candidates: Vec<i32> = all
            .iter()
            .filter(|(_, waits_on)| waits_on != lock)
            .map(|(tid, _)| *tid)
            .collect();
        if let [holder] = candidates.as_slice() {
            held.push((*lock, *holder));
        }
    }
    held
}

/// The holders the watchdog told in the deadlock it sees now, for `get`.
static HOLDERS: std::sync::Mutex<Vec<(&'static str, i32)>> = std::sync::Mutex::new(Vec::new());

fn publish_holders(held: Vec<(&'static str, i32)>) {
    *lock(&HOLDERS) = held;
}

/// The thread the watchdog found holding the inspected lock `name` in a
/// deadlock it sees now, with its name.
pub(crate) fn known_holder(name: &str) -> Option<(i32, String)> {
    let tid = lock(&HOLDERS)
        .iter()
        .find(|(lock, _)| *lock == name)
        .map(|(_, tid)| *tid)?;
    Some((tid, thread_name(tid).unwrap_or_default()))
}

/// One thread's frames, taken as `stacks` takes them.
fn stack_of(tid: i32) -> Vec<Frame> {
    stacks::threads_of(&[tid], waits())
        .into_iter()
        .next()
        .map_or_else(Vec::new, |thread: ThreadStack| thread.frames)
}

/// What joins the calls of a chain.
const ARROW: &str = " → ";

/// The calls that polled `call` first, outermost first, then `call`: each
/// with its arguments where they are shown.
fn parents(calls: &[inflight::Call], call: &inflight::Call) -> Vec<String> {
    let mut names = vec![call.label()];
    let mut parent = call.parent;
    while parent != 0 && names.len() < 32 {
        let Some(above) = calls
            .iter()
            .find(|other| other.id == parent && other.id != call.id)
        else {
            break;
        };
        names.push(above.label());
        parent = above.parent;
    }
    names.reverse();
    names
}

/// Whether a call that `call` runs inside has been in flight past
/// `stuck_ms` too.
fn stuck_parent(calls: &[inflight::Call], call: &inflight::Call, stuck_ms: u64) -> bool {
    let mut parent = call.parent;
    let mut hops = 0;
    while parent != 0 && hops < 32 {
        let Some(above) = calls.iter().find(|other| other.id == parent) else {
            return false;
        };
        if millis(above.age) > stuck_ms {
            return true;
        }
        parent = above.parent;
        hops += 1;
    }
    false
}

/// `call`, then the stuck calls inside it down to the innermost, the oldest
/// at each step: `handle(id=7) → fetch_backend(host="db1")`.
fn stuck_chain(calls: &[inflight::Call], call: &inflight::Call, stuck_ms: u64) -> Vec<String> {
    let mut chain = vec![call.label()];
    let mut at = call.id;
    while chain.len() < 32 {
        let Some(inner) = calls
            .iter()
            .filter(|other| other.parent == at && other.id != at && millis(other.age) > stuck_ms)
            .max_by_key(|other| other.age)
        else {
            break;
        };
        chain.push(inner.label());
        at = inner.id;
    }
    chain
}

/// A thread of this process's name, from `/proc`.
fn thread_name(tid: i32) -> Option<String> {
    procfs::thread_name("self", tid)
}

/// `thread 23956 "tokio-rt-worker"`.
fn described(tid: i32, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("thread {tid} {name:?}"),
        None => format!("thread {tid}"),
    }
}

/// The JSON of the tree whose root holds `id`.
fn tree_containing(forest: &[inflight::Tree], id: usize) -> Option<serde_json::Value> {
    forest
        .iter()
        .find(|tree| holds(tree, id))
        .and_then(|tree| serde_json::to_value(tree).ok())
}

/// The JSON of the subtree of `id`.
fn subtree(forest: &[inflight::Tree], id: usize) -> Option<serde_json::Value> {
    fn find(trees: &[inflight::Tree], id: usize) -> Option<&inflight::Tree> {
        trees.iter().find_map(|tree| {
            if tree.call.id == id {
                Some(tree)
            } else {
                find(&tree.children, id)
            }
        })
    }
    find(forest, id).and_then(|tree| serde_json::to_value(tree).ok())
}

fn holds(tree: &inflight::Tree, id: usize) -> bool {
    tree.call.id == id || tree.children.iter().any(|child| holds(child, id))
}

/// `1.2 s`, `350 ms`.
fn human(ms: u64) -> String {
    if ms >= 1000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{ms} ms")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stall_is_reported_past_one_two_and_four_times_its_limit() {
        assert_eq!(level(99, 100), 0);
        assert_eq!(level(101, 100), 1);
        assert_eq!(level(201, 100), 2);
        assert_eq!(level(401, 100), 3);
        let mut detector = Detector::default();
        let stall = Stall {
            kind: Kind::SlowPoll,
            what: 1,
            since: 0,
        };
        let reported: Vec<(u64, Due)> = [50, 110, 150, 210, 390, 410, 900]
            .into_iter()
            .map(|ms| (ms, detector.due(stall, ms, 100)))
            .filter(|(_, due)| *due != Due::No)
            .collect();
        assert_eq!(
            reported,
            [(110, Due::First), (210, Due::Again), (410, Due::Again)]
        );
    }
}
