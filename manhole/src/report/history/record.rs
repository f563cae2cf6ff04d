//! The recorder itself: its memory, the point it takes every second, and
//! the events it keeps. Normal context.

use super::mirror;
use crate::instrument::registry::{self, InspectKind, Source};
use crate::os::procfs::Tasks;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// One second's reading of the process.
pub(super) struct Point {
    pub(super) at: Instant,
    pub(super) unix_ms: u64,
    /// User and system CPU time since the process started.
    pub(super) cpu_ns: u64,
    pub(super) rss_bytes: u64,
    pub(super) threads: u32,
    pub(super) fds: u32,
    /// The numeric statics, in the order of [`Recorder::statics`].
    pub(super) statics: Box<[f64]>,
    /// jemalloc's allocated bytes, where it serves the program.
    pub(super) heap_bytes: Option<u64>,
    /// The tokio runtime's figures, where there is one.
    pub(super) runtime: Option<RuntimePoint>,
}

/// The tokio runtime at one moment.
#[derive(Clone, Copy)]
pub(super) struct RuntimePoint {
    /// Every worker's busy time so far, summed.
    pub(super) busy_ns: u64,
    pub(super) workers: u32,
    pub(super) global_queue: u64,
    pub(super) alive_tasks: u64,
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
    pub(super) unix_ms: u64,
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
pub(super) struct Recorder {
    pub(super) keep: Duration,
    pub(super) max_bytes: usize,
    /// The inspected statics whose values are numbers, by name.
    pub(super) statics: Vec<(&'static str, ReadStatic)>,
    pub(super) points: VecDeque<Point>,
    pub(super) events: VecDeque<Event>,
    pub(super) bytes: usize,
    /// The runtime whose figures are kept, if any.
    pub(super) runtime: crate::options::Runtime,
    /// Whether jemalloc serves the program, so that its heap is kept.
    pub(super) jemalloc: bool,
    /// The newest log event already looked at (the `tracing` feature's).
    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    pub(super) log_seen: u64,
}

/// How an inspected static's value is read.
type ReadStatic = fn() -> registry::Outcome;

static RECORDER: Mutex<Option<Recorder>> = Mutex::new(None);

pub(super) fn recorder() -> MutexGuard<'static, Option<Recorder>> {
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
    mirror::mirror(
        point.unix_ms / 1000,
        [point.cpu_ns, point.rss_bytes, u64::from(point.threads)],
        &mirror::mirrored_calls(),
    );
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
pub(super) fn happened(at: f64, kind: &'static str, what: String) -> Event {
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

/// `text` as the recorder keeps it: its control characters escaped
/// (`\u{1b}`), since a client sent it and `history` prints it to other
/// clients' terminals, and at most `max` bytes, cut with `…`.
fn cut(text: String, max: usize) -> String {
    let mut text = if text.chars().any(char::is_control) {
        text.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_unicode().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect()
    } else {
        text
    };
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

pub(super) fn unix_ms() -> u64 {
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
}
