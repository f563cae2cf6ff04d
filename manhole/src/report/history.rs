//! The flight recorder: what the process did before anyone connected.
//!
//! Every second, the `manhole` thread (which already wakes then to sample
//! the call counters for `stats --window`) takes a point: the process's
//! CPU time, resident memory, threads and open descriptors, and the value
//! of every inspected static that is a number. The counted functions'
//! calls, errors and latencies come from the counters' own samples
//! ([`crate::instrument::calls::CallStats::figures_between`]). The manhole's own events are kept
//! with their time: who connected (peer uid and pid), and each `set` and
//! `call`, with its arguments and outcome: an audit trail. `history` reads
//! it all back, one value per step.
//!
//! Bounded twice: by `history` (ten minutes by default) and by
//! `history_bytes` (8 MiB), the oldest going first. Normal context only:
//! nothing here runs in a signal handler.
//!
//! Not recorded yet (issue 38): a low-rate CPU profile, the tokio
//! runtime's figures, log events, and a "last minute" section in crash
//! and stall reports.

use crate::instrument::calls::SpanFigures;
use crate::instrument::registry::{self, InspectKind, Source};
use crate::os::procfs::Tasks;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One second's reading of the process.
struct Point {
    at: Instant,
    unix_ms: u64,
    /// User and system CPU time since the process started.
    cpu_ns: u64,
    rss_bytes: u64,
    threads: u32,
    fds: u32,
    /// The numeric statics, in the order of [`Recorder::statics`].
    statics: Box<[f64]>,
    /// jemalloc's allocated bytes, where it serves the program.
    heap_bytes: Option<u64>,
    /// The tokio runtime's figures, where there is one.
    runtime: Option<RuntimePoint>,
}

/// The tokio runtime at one moment.
#[derive(Clone, Copy)]
struct RuntimePoint {
    /// Every worker's busy time so far, summed.
    busy_ns: u64,
    workers: u32,
    global_queue: u64,
    alive_tasks: u64,
}

impl Point {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Point>() + self.statics.len() * std::mem::size_of::<f64>()
    }
}

/// Something the manhole did for a client, with its time.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Event {
    /// RFC 3339, UTC.
    pub(crate) at: String,
    #[serde(skip)]
    unix_ms: u64,
    /// `connect`, `set` or `call` (a client's), `stall`, `panic` or `log`
    /// (WARN and above).
    pub(crate) kind: &'static str,
    pub(crate) peer_uid: Option<u32>,
    pub(crate) peer_pid: Option<i32>,
    /// What was set or called, with its arguments, as the client sent it.
    pub(crate) what: String,
    /// `ok`, or the error's message; empty for what was not a client's.
    pub(crate) outcome: String,
}

impl Event {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Event>() + self.at.len() + self.what.len() + self.outcome.len()
    }
}

/// The recorder's memory; `None` while `history` is off.
struct Recorder {
    keep: Duration,
    max_bytes: usize,
    /// The inspected statics whose values are numbers, by name.
    statics: Vec<(&'static str, ReadStatic)>,
    points: VecDeque<Point>,
    events: VecDeque<Event>,
    bytes: usize,
    /// The runtime whose figures are kept, if any.
    runtime: crate::options::Runtime,
    /// Whether jemalloc serves the program, so that its heap is kept.
    jemalloc: bool,
    /// The newest log event already looked at (the `tracing` feature's).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    log_seen: u64,
}

/// How an inspected static's value is read.
type ReadStatic = fn() -> registry::Outcome;

static RECORDER: Mutex<Option<Recorder>> = Mutex::new(None);

fn recorder() -> MutexGuard<'static, Option<Recorder>> {
    RECORDER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Starts keeping `keep` of history within `max_bytes`, or stops and
/// forgets it all (`None`). Called at install.
pub(crate) fn configure(
    keep: Option<Duration>,
    max_bytes: usize,
    runtime: crate::options::Runtime,
) {
    let mut slot = recorder();
    match keep {
        None => *slot = None,
        Some(keep) => match slot.as_mut() {
            Some(kept) => {
                kept.keep = keep;
                kept.max_bytes = max_bytes;
                kept.runtime = runtime;
            }
            None => {
                *slot = Some(Recorder {
                    keep,
                    max_bytes,
                    statics: numeric_statics(),
                    points: VecDeque::new(),
                    events: VecDeque::new(),
                    bytes: 0,
                    runtime,
                    jemalloc: crate::os::mem::allocator()["name"] == "jemalloc",
                    log_seen: newest_log(),
                });
            }
        },
    }
}

/// Whether the recorder is on, so that the `manhole` thread wakes for it.
pub(crate) fn is_on() -> bool {
    recorder().is_some()
}

/// The statics whose type is a number: their value has a history. Locks
/// are left out, since reading one would take it every second.
fn numeric_statics() -> Vec<(&'static str, ReadStatic)> {
    const NUMBERS: &[&str] = &[
        "AtomicU8",
        "AtomicU16",
        "AtomicU32",
        "AtomicU64",
        "AtomicUsize",
        "AtomicI8",
        "AtomicI16",
        "AtomicI32",
        "AtomicI64",
        "AtomicIsize",
        "u8",
        "u16",
        "u32",
        "u64",
        "usize",
        "i8",
        "i16",
        "i32",
        "i64",
        "isize",
        "f32",
        "f64",
    ];
    registry::inspected()
        .into_iter()
        .filter(|item| matches!(item.kind, InspectKind::Static))
        .filter_map(|item| {
            let last = item.ty.rsplit("::").next().unwrap_or(item.ty).trim();
            match item.source {
                Source::Read(read) if NUMBERS.contains(&last) => Some((item.meta.name, read)),
                _ => None,
            }
        })
        .collect()
}

/// Takes this second's point. Called by the `manhole` thread about once a
/// second, while the recorder is on.
pub(crate) fn record(now: Instant) {
    let (reads, runtime, jemalloc): (Vec<ReadStatic>, _, bool) = match recorder().as_ref() {
        Some(kept) => (
            kept.statics.iter().map(|(_, read)| *read).collect(),
            kept.runtime.clone(),
            kept.jemalloc,
        ),
        None => return,
    };
    // Read outside the recorder's lock: a static's read is the program's
    // code.
    let statics = reads
        .iter()
        .map(|read| {
            read()
                .ok()
                .and_then(|value| value.as_f64())
                .unwrap_or(f64::NAN)
        })
        .collect();
    let tasks = Tasks::open();
    let point = Point {
        at: now,
        unix_ms: unix_ms(),
        cpu_ns: process_cpu_ns(),
        rss_bytes: resident_bytes(),
        threads: tasks
            .as_ref()
            .and_then(Tasks::count)
            .and_then(|count| u32::try_from(count).ok())
            .unwrap_or(0),
        fds: open_descriptors(),
        statics,
        heap_bytes: jemalloc.then(heap_bytes).flatten(),
        runtime: runtime_point(&runtime),
    };
    mirror(&point, &mirrored_calls());
    let mut slot = recorder();
    let Some(kept) = slot.as_mut() else {
        return;
    };
    kept.bytes += point.bytes();
    kept.points.push_back(point);
    kept.keep_warnings();
    kept.trim(now);
}

fn heap_bytes() -> Option<u64> {
    #[cfg(feature = "jemalloc")]
    return crate::os::mem::jemalloc_allocated();
    #[cfg(not(feature = "jemalloc"))]
    None
}

/// The runtime's stable metrics: plain atomic loads inside tokio, which
/// never wait for a worker.
fn runtime_point(runtime: &crate::options::Runtime) -> Option<RuntimePoint> {
    #[cfg(feature = "tokio")]
    if let Some(handle) = &runtime.handle {
        let metrics = handle.metrics();
        let workers = metrics.num_workers();
        return Some(RuntimePoint {
            busy_ns: (0..workers)
                .map(|worker| {
                    u64::try_from(metrics.worker_total_busy_duration(worker).as_nanos())
                        .unwrap_or(u64::MAX)
                })
                .sum(),
            workers: u32::try_from(workers).unwrap_or(u32::MAX),
            global_queue: metrics.global_queue_depth() as u64,
            alive_tasks: metrics.num_alive_tasks() as u64,
        });
    }
    let _ = runtime;
    None
}

/// The last minute, mirrored for the crash report: numbers in atomics,
/// which the fatal signal's handler reads without a lock or an allocation
/// (the recorder's own memory is behind a lock the crash may hold).
const MIRRORED_SECONDS: usize = 64;
/// The counted functions whose calls the mirror keeps, first by name.
pub(crate) const MIRRORED_FUNCTIONS: usize = 8;

struct MirroredSecond {
    /// When it was taken, in seconds since the epoch; 0 while written.
    unix_s: AtomicU64,
    cpu_ns: AtomicU64,
    rss_bytes: AtomicU64,
    threads: AtomicU64,
    /// Each mirrored function's calls and errors so far.
    calls: [AtomicU64; MIRRORED_FUNCTIONS],
    errors: [AtomicU64; MIRRORED_FUNCTIONS],
}

impl MirroredSecond {
    const fn new() -> Self {
        MirroredSecond {
            unix_s: AtomicU64::new(0),
            cpu_ns: AtomicU64::new(0),
            rss_bytes: AtomicU64::new(0),
            threads: AtomicU64::new(0),
            calls: [const { AtomicU64::new(0) }; MIRRORED_FUNCTIONS],
            errors: [const { AtomicU64::new(0) }; MIRRORED_FUNCTIONS],
        }
    }
}

static LAST_MINUTE: [MirroredSecond; MIRRORED_SECONDS] =
    [const { MirroredSecond::new() }; MIRRORED_SECONDS];
static NEXT_SECOND: AtomicUsize = AtomicUsize::new(0);
/// The mirrored functions' names, as pointer and length of a `&'static
/// str` (the length stored first, the pointer last).
static MIRRORED_NAMES: [(AtomicPtr<u8>, AtomicUsize); MIRRORED_FUNCTIONS] =
    [const { (AtomicPtr::new(std::ptr::null_mut()), AtomicUsize::new(0)) }; MIRRORED_FUNCTIONS];

/// Each mirrored function's calls and errors so far, naming them in the
/// mirror on the way.
fn mirrored_calls() -> Vec<(u64, u64)> {
    registry::call_stats()
        .into_iter()
        .take(MIRRORED_FUNCTIONS)
        .enumerate()
        .map(|(index, (name, stats))| {
            let (pointer, length) = &MIRRORED_NAMES[index];
            if pointer.load(Ordering::Acquire).is_null() {
                length.store(name.len(), Ordering::Relaxed);
                pointer.store(name.as_ptr().cast_mut(), Ordering::Release);
            }
            let summary = stats.snapshot().summary();
            (summary.calls, summary.errors)
        })
        .collect()
}

/// Writes `point` into the next slot of [`LAST_MINUTE`].
fn mirror(point: &Point, calls: &[(u64, u64)]) {
    let slot = &LAST_MINUTE[NEXT_SECOND.fetch_add(1, Ordering::Relaxed) % MIRRORED_SECONDS];
    slot.unix_s.store(0, Ordering::Release);
    slot.cpu_ns.store(point.cpu_ns, Ordering::Relaxed);
    slot.rss_bytes.store(point.rss_bytes, Ordering::Relaxed);
    slot.threads
        .store(u64::from(point.threads), Ordering::Relaxed);
    for (index, (count, errors)) in calls.iter().enumerate() {
        slot.calls[index].store(*count, Ordering::Relaxed);
        slot.errors[index].store(*errors, Ordering::Relaxed);
    }
    slot.unix_s.store(point.unix_ms / 1000, Ordering::Release);
}

/// What the crash report says of the last minute: for CPU (tenths of a
/// percent of a core), resident memory (tenths of a MiB) and threads, the
/// first, lowest, highest and last values ([`NONE`] where unknown); and
/// each mirrored function's calls and errors over the minute.
pub(crate) struct LastMinute {
    pub(crate) points: u64,
    pub(crate) span_s: u64,
    pub(crate) figures: [[u64; 4]; 3],
    pub(crate) calls: [u64; MIRRORED_FUNCTIONS],
    pub(crate) errors: [u64; MIRRORED_FUNCTIONS],
}

/// An unknown figure in [`LastMinute`].
pub(crate) const NONE: u64 = u64::MAX;

/// The mirrored seconds no older than `since_unix_s`, summed up.
/// Compromised context: atomics and plain loops only (it runs on a small
/// alternate signal stack); a second being written at the crash is left
/// out.
pub(crate) fn last_minute(since_unix_s: u64, into: &mut LastMinute) {
    into.points = 0;
    into.span_s = 0;
    into.figures = [[NONE; 4]; 3];
    into.calls = [0; MIRRORED_FUNCTIONS];
    into.errors = [0; MIRRORED_FUNCTIONS];
    let next = NEXT_SECOND.load(Ordering::Acquire);
    let mut first_at = 0u64;
    let mut before: Option<(u64, u64)> = None;
    let mut offset = 0;
    while offset < MIRRORED_SECONDS {
        let slot = &LAST_MINUTE[(next + offset) % MIRRORED_SECONDS];
        offset += 1;
        let unix_s = slot.unix_s.load(Ordering::Acquire);
        if unix_s == 0 || unix_s < since_unix_s {
            continue;
        }
        let cpu_ns = slot.cpu_ns.load(Ordering::Relaxed);
        let mut values = [NONE; 3];
        if let Some((at, cpu_before)) = before {
            if unix_s > at {
                values[0] = cpu_ns.saturating_sub(cpu_before) / (unix_s - at) / 1_000_000;
            }
        }
        values[1] = slot.rss_bytes.load(Ordering::Relaxed) * 10 / (1024 * 1024);
        values[2] = slot.threads.load(Ordering::Relaxed);
        let mut figure = 0;
        while figure < 3 {
            let value = values[figure];
            let kept = &mut into.figures[figure];
            if value != NONE {
                if kept[0] == NONE {
                    kept[0] = value;
                }
                if kept[1] == NONE || value < kept[1] {
                    kept[1] = value;
                }
                if kept[2] == NONE || value > kept[2] {
                    kept[2] = value;
                }
                kept[3] = value;
            }
            figure += 1;
        }
        let mut function = 0;
        while function < MIRRORED_FUNCTIONS {
            let calls = slot.calls[function].load(Ordering::Relaxed);
            let errors = slot.errors[function].load(Ordering::Relaxed);
            if into.points == 0 {
                // The first point's counts are the base: negative below.
                into.calls[function] = calls;
                into.errors[function] = errors;
            }
            if into.points > 0 {
                LAST_CALLS_SCRATCH[function].store(calls, Ordering::Relaxed);
                LAST_ERRORS_SCRATCH[function].store(errors, Ordering::Relaxed);
            }
            function += 1;
        }
        if into.points == 0 {
            first_at = unix_s;
        }
        into.points += 1;
        into.span_s = unix_s - first_at;
        before = Some((unix_s, cpu_ns));
    }
    // Calls over the minute: the last point's counts less the first's.
    let mut function = 0;
    while function < MIRRORED_FUNCTIONS {
        if into.points > 1 {
            into.calls[function] = LAST_CALLS_SCRATCH[function]
                .load(Ordering::Relaxed)
                .saturating_sub(into.calls[function]);
            into.errors[function] = LAST_ERRORS_SCRATCH[function]
                .load(Ordering::Relaxed)
                .saturating_sub(into.errors[function]);
        } else {
            into.calls[function] = 0;
            into.errors[function] = 0;
        }
        function += 1;
    }
}

/// The newest point's counts while [`last_minute`] walks: static, so that
/// the walk's frame stays small on a small signal stack.
static LAST_CALLS_SCRATCH: [AtomicU64; MIRRORED_FUNCTIONS] =
    [const { AtomicU64::new(0) }; MIRRORED_FUNCTIONS];
static LAST_ERRORS_SCRATCH: [AtomicU64; MIRRORED_FUNCTIONS] =
    [const { AtomicU64::new(0) }; MIRRORED_FUNCTIONS];

/// The name of mirrored function `index`, once it has one. Compromised
/// context: atomics only.
pub(crate) fn mirrored_name(index: usize) -> Option<&'static str> {
    let (pointer, length) = MIRRORED_NAMES.get(index)?;
    let start = pointer.load(Ordering::Acquire);
    if start.is_null() {
        return None;
    }
    let length = length.load(Ordering::Relaxed);
    // SAFETY: `mirrored_calls` stored the pointer and length of a
    // `&'static str`, length first; both stay valid for good.
    Some(unsafe { std::str::from_utf8_unchecked(std::slice::from_raw_parts(start, length)) })
}

/// The number of the newest log event (the `tracing` feature's ring).
fn newest_log() -> u64 {
    #[cfg(feature = "tracing")]
    if let Some(control) = crate::tracing::control() {
        return control.newest();
    }
    0
}

impl Recorder {
    /// Keeps the log's new events at WARN and above, when the `tracing`
    /// layer keeps a log.
    fn keep_warnings(&mut self) {
        #[cfg(feature = "tracing")]
        if let Some(control) = crate::tracing::control() {
            let (records, newest) = control.after(self.log_seen);
            self.log_seen = newest;
            for record in records
                .iter()
                .filter(|record| matches!(record.level(), "WARN" | "ERROR"))
            {
                let unix_ms = (record.time() * 1000.0) as u64;
                let event = Event {
                    at: crate::os::process::rfc3339(record.time()),
                    unix_ms,
                    kind: "log",
                    peer_uid: None,
                    peer_pid: None,
                    what: cut(
                        format!(
                            "{} {}: {}",
                            record.level(),
                            record.target(),
                            record.message()
                        ),
                        256,
                    ),
                    outcome: String::new(),
                };
                self.bytes += event.bytes();
                self.events.push_back(event);
            }
        }
    }

    /// Forgets what is older than `keep`, then the oldest until within
    /// `max_bytes`.
    fn trim(&mut self, now: Instant) {
        while let Some(oldest) = self.points.front() {
            let too_old = now.saturating_duration_since(oldest.at) > self.keep;
            if !too_old && self.bytes <= self.max_bytes {
                break;
            }
            self.bytes -= oldest.bytes();
            self.points.pop_front();
        }
        let horizon = unix_ms().saturating_sub(u64::try_from(self.keep.as_millis()).unwrap_or(0));
        while let Some(oldest) = self.events.front() {
            if oldest.unix_ms >= horizon && self.bytes <= self.max_bytes {
                break;
            }
            self.bytes -= oldest.bytes();
            self.events.pop_front();
        }
    }
}

thread_local! {
    /// The peer of the session this thread serves, for its events.
    static PEER: RefCell<(Option<u32>, Option<i32>)> = const { RefCell::new((None, None)) };
}

/// A session began on this thread for the peer `uid`/`pid`: kept as an
/// event, and as the peer of the session's later events.
pub(crate) fn session_opened(uid: Option<u32>, pid: Option<i32>) {
    PEER.with(|peer| *peer.borrow_mut() = (uid, pid));
    keep_event("connect", String::new(), "ok".to_owned());
}

/// A `set` or `call` of this thread's session, with its outcome.
pub(crate) fn client_acted(kind: &'static str, what: String, outcome: Result<(), String>) {
    keep_event(kind, what, outcome.err().unwrap_or_else(|| "ok".to_owned()));
}

fn keep_event(kind: &'static str, what: String, outcome: String) {
    let mut slot = recorder();
    let Some(kept) = slot.as_mut() else {
        return;
    };
    let (peer_uid, peer_pid) = PEER.with(|peer| *peer.borrow());
    let unix_ms = unix_ms();
    let event = Event {
        at: crate::os::process::rfc3339(unix_ms as f64 / 1000.0),
        unix_ms,
        kind,
        peer_uid,
        peer_pid,
        what: cut(what, 256),
        outcome: cut(outcome, 256),
    };
    kept.bytes += event.bytes();
    kept.events.push_back(event);
    kept.trim(Instant::now());
}

/// An event the process had, not a client: a stall, a panic.
fn happened(at: f64, kind: &'static str, what: String) -> Event {
    Event {
        at: crate::os::process::rfc3339(at),
        unix_ms: (at * 1000.0) as u64,
        kind,
        peer_uid: None,
        peer_pid: None,
        what: cut(what, 256),
        outcome: String::new(),
    }
}

fn cut(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| u64::try_from(since.as_millis()).unwrap_or(0))
}

fn process_cpu_ns() -> u64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `usage` is valid for writes of one `rusage`.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: `getrusage` succeeded and filled it.
    let usage = unsafe { usage.assume_init() };
    let ns = |time: libc::timeval| {
        u64::try_from(time.tv_sec).unwrap_or(0) * 1_000_000_000
            + u64::try_from(time.tv_usec).unwrap_or(0) * 1_000
    };
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|pages| pages.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    pages * page
}

fn open_descriptors() -> u32 {
    std::fs::read_dir("/proc/self/fd")
        .map(|entries| u32::try_from(entries.count().saturating_sub(1)).unwrap_or(u32::MAX))
        .unwrap_or(0)
}

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

    fn recorder(keep: Duration, max_bytes: usize) -> Recorder {
        Recorder {
            keep,
            max_bytes,
            statics: Vec::new(),
            points: VecDeque::new(),
            events: VecDeque::new(),
            bytes: 0,
            runtime: crate::options::Runtime::default(),
            jemalloc: false,
            log_seen: 0,
        }
    }

    fn event(number: usize) -> Event {
        Event {
            at: String::new(),
            unix_ms: unix_ms(),
            kind: "call",
            peer_uid: None,
            peer_pid: None,
            what: format!("call number {number}"),
            outcome: "ok".to_owned(),
        }
    }

    #[test]
    fn memory_stays_within_its_bound_and_the_oldest_goes_first() {
        let mut kept = recorder(Duration::from_secs(600), 64 * 1024);
        let now = Instant::now();
        for number in 0..10_000 {
            let event = event(number);
            kept.bytes += event.bytes();
            kept.events.push_back(event);
            kept.trim(now);
            assert!(kept.bytes <= kept.max_bytes, "{} bytes", kept.bytes);
        }
        assert_eq!(kept.events.back().unwrap().what, "call number 9999");
        assert!(kept.events.len() > 100, "{}", kept.events.len());
        let counted: usize = kept.events.iter().map(Event::bytes).sum();
        assert_eq!(counted, kept.bytes);
    }

    #[test]
    fn points_older_than_the_history_go() {
        let mut kept = recorder(Duration::from_secs(10), 1 << 20);
        let start = Instant::now();
        for second in 0..30 {
            let point = Point {
                at: start + Duration::from_secs(second),
                unix_ms: 0,
                cpu_ns: 0,
                rss_bytes: 0,
                threads: 1,
                fds: 1,
                statics: Box::new([]),
                heap_bytes: None,
                runtime: None,
            };
            kept.bytes += point.bytes();
            kept.points.push_back(point);
            kept.trim(start + Duration::from_secs(second));
        }
        assert_eq!(kept.points.len(), 11);
        assert_eq!(kept.bytes, 11 * kept.points[0].bytes());
    }

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
