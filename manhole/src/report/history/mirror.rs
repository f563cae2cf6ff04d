//! The last minute's numbers, mirrored in atomics each second, so that a
//! crash report can read them: the fatal signal's handler takes no lock
//! and allocates nothing, and the recorder's own memory is behind a lock
//! the crash may hold. Written in normal context (the `manhole` thread);
//! read in compromised context.

use crate::instrument::registry;
use std::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

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

/// Each mirrored function's calls and errors so far, from the sample the
/// `manhole` thread took just before, naming them in the mirror on the
/// way.
pub(super) fn mirrored_calls() -> Vec<(u64, u64)> {
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
            stats.sampled_counts().unwrap_or_default()
        })
        .collect()
}

/// Writes one second into the next slot of [`LAST_MINUTE`]: when, and
/// the process's CPU time, resident bytes and threads.
pub(super) fn mirror(unix_s: u64, [cpu_ns, rss_bytes, threads]: [u64; 3], calls: &[(u64, u64)]) {
    let slot = &LAST_MINUTE[NEXT_SECOND.fetch_add(1, Ordering::Relaxed) % MIRRORED_SECONDS];
    slot.unix_s.store(0, Ordering::Release);
    slot.cpu_ns.store(cpu_ns, Ordering::Relaxed);
    slot.rss_bytes.store(rss_bytes, Ordering::Relaxed);
    slot.threads.store(threads, Ordering::Relaxed);
    for (index, (count, errors)) in calls.iter().enumerate() {
        slot.calls[index].store(*count, Ordering::Relaxed);
        slot.errors[index].store(*errors, Ordering::Relaxed);
    }
    slot.unix_s.store(unix_s, Ordering::Release);
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
