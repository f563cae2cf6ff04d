//! Call statistics for functions under `#[manhole::inspect(calls)]`.
//!
//! The hot path is a handful of relaxed atomic operations on a shard picked
//! per thread, plus two reads of the CPU's timestamp counter: no lock, no
//! allocation, no system call. Shards are cache-line aligned so that threads
//! on different cores do not fight over one line; a reader sums them.
//!
//! Durations are recorded in clock ticks (TSC ticks on x86-64, nanoseconds
//! elsewhere) and turned into nanoseconds only when read, so the hot path
//! never divides. Each call lands in a log-scale histogram with eight
//! buckets per power of two, which bounds a percentile's error to 1/16 of
//! its value.
//!
//! For `stats --window`, the `manhole` thread samples every function's
//! counters about once a second ([`CallStats::record_sample`]) into a
//! history that only it and readers lock; a window's figures are the
//! counters now less the sample taken the window ago. The call path never
//! sees the history. [`CallStats::reset`] zeroes the counters by
//! subtracting what it read, so that calls in flight, and increments that
//! race with it, are kept.

use serde::Serialize;
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU64, AtomicUsize,
    Ordering::{AcqRel, Acquire, Relaxed},
};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The longest window `stats --window` looks back over.
const MAX_WINDOW: Duration = Duration::from_secs(manhole_wire::MAX_STATS_WINDOW_S);
/// How often the `manhole` thread samples the counters.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// Samples younger than this are all kept; older ones one in ten, up to
/// [`MAX_WINDOW`] and one interval beyond.
const DENSE_HISTORY: Duration = Duration::from_secs(60);

/// Shards per function: enough that a few busy threads rarely share one.
const SHARDS: usize = 8;
const SUB_BUCKET_BITS: u32 = 3;
const SUB_BUCKETS: usize = 1 << SUB_BUCKET_BITS;
/// Ticks below `SUB_BUCKETS` get a bucket each; above, eight per power of
/// two, up to the largest `u64`, so that even hour-long calls keep the
/// 1/16 bound. Buckets a function never reaches are zero pages, never
/// touched.
const BUCKETS: usize = SUB_BUCKETS + (64 - SUB_BUCKET_BITS as usize) * SUB_BUCKETS;

#[repr(align(128))]
struct Shard {
    started: AtomicU64,
    errors: AtomicU64,
    panics: AtomicU64,
    cancelled: AtomicU64,
    total_ticks: AtomicU64,
    max_ticks: AtomicU64,
    /// Finished calls by duration; their sum is the number of finished calls.
    buckets: [AtomicU64; BUCKETS],
}

impl Shard {
    const fn new() -> Self {
        Shard {
            started: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            panics: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            total_ticks: AtomicU64::new(0),
            max_ticks: AtomicU64::new(0),
            buckets: [const { AtomicU64::new(0) }; BUCKETS],
        }
    }
}

/// The counters of one instrumented function. Not public API: generated
/// code declares one per function.
#[doc(hidden)]
pub struct CallStats {
    shards: [Shard; SHARDS],
    /// Samples of the counters for `stats --window`; locked by the sampler
    /// and by readers, never by a call. Boxed and made on first use, so
    /// that a `CallStats` is all zero bits and its static lives in `.bss`:
    /// no bytes in the binary, no memory until touched.
    history: Mutex<Option<Box<History>>>,
    /// Set by every call of an `async fn`: its rows show `slow_polls`.
    followed: AtomicBool,
    /// Polls longer than `slow_poll`; rare, so one counter for all threads.
    slow_polls: AtomicU64,
    /// The name the function is shown by, once the registry has worked it
    /// out (`get::apply` where another module has an `apply` too); null
    /// before, so that the static stays all zero bits.
    shown_name: AtomicPtr<&'static str>,
}

/// Past samples of one function's counters, oldest first.
#[derive(Default)]
struct History {
    samples: VecDeque<Sample>,
    /// When the counters were last reset: a sample of zeros, then.
    zeroed_at: Option<Instant>,
    /// Samples taken so far; every tenth is kept past [`DENSE_HISTORY`].
    taken: u64,
}

/// The counters at one moment, with the histogram's non-zero buckets only.
struct Sample {
    at: Instant,
    number: u64,
    snapshot: Snapshot,
    buckets: Vec<(u16, u64)>,
}

impl Default for CallStats {
    fn default() -> Self {
        Self::new()
    }
}

impl CallStats {
    #[doc(hidden)]
    #[must_use]
    pub const fn new() -> Self {
        CallStats {
            shards: [const { Shard::new() }; SHARDS],
            history: Mutex::new(None),
            followed: AtomicBool::new(false),
            slow_polls: AtomicU64::new(0),
            shown_name: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// The name it is shown by, once [`registry::qualify_names`] has set
    /// it.
    ///
    /// [`registry::qualify_names`]: crate::instrument::registry::qualify_names
    pub(crate) fn shown_name(&self) -> Option<&'static str> {
        let shown = self.shown_name.load(Acquire);
        // SAFETY: only `set_shown_name` stores here, a pointer it leaked
        // from a `Box<&'static str>`, never freed.
        (!shown.is_null()).then(|| unsafe { *shown })
    }

    /// Keeps `name` as the name it is shown by; the first one set stays.
    pub(crate) fn set_shown_name(&self, name: &'static str) {
        if self.shown_name.load(Acquire).is_null() {
            let leaked = Box::into_raw(Box::new(name));
            if self
                .shown_name
                .compare_exchange(std::ptr::null_mut(), leaked, AcqRel, Acquire)
                .is_err()
            {
                // SAFETY: our own allocation, which lost the race and was
                // never shared.
                drop(unsafe { Box::from_raw(leaked) });
            }
        }
    }

    /// Runs `f` on the history, under its lock.
    fn with_history<R>(&self, f: impl FnOnce(&mut History) -> R) -> R {
        let mut slot = self
            .history
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(slot.get_or_insert_with(Box::default))
    }

    /// Adds a sample of the counters, taken `now`, to the history, and
    /// forgets what no window can reach any more.
    pub(crate) fn record_sample(&self, now: Instant) {
        // Read under the history's lock, so that a reset cannot fall
        // between reading the counters and keeping the sample.
        self.with_history(|history| {
            let mut snapshot = self.snapshot();
            let buckets = std::mem::take(&mut snapshot.histogram)
                .into_iter()
                .enumerate()
                .filter(|(_, count)| *count > 0)
                .map(|(bucket, count)| (bucket as u16, count))
                .collect();
            let number = history.taken;
            history.taken += 1;
            history.samples.push_back(Sample {
                at: now,
                number,
                snapshot,
                buckets,
            });
            history.samples.retain(|sample| {
                let age = now.saturating_duration_since(sample.at);
                age <= DENSE_HISTORY
                    || (age <= MAX_WINDOW + SAMPLE_INTERVAL * 10 && sample.number % 10 == 0)
            });
        });
    }

    /// The calls of the last `window`: the counters now, less the newest
    /// sample at least `window` old (or the oldest there is, when the
    /// history is shorter). Calls in flight are those in flight now. The
    /// duration is how long the figures really cover; `None` when they
    /// cover everything since the process started.
    pub(crate) fn window(&self, window: Duration) -> (Snapshot, Option<Duration>) {
        self.with_history(|history| self.window_in(history, window))
    }

    fn window_in(&self, history: &History, window: Duration) -> (Snapshot, Option<Duration>) {
        let now = Instant::now();
        let current = self.snapshot();
        let zero = history.zeroed_at.map(|at| (at, None));
        let candidates = zero
            .into_iter()
            .chain(history.samples.iter().map(|s| (s.at, Some(s))));
        let mut base = None;
        for (at, sample) in candidates {
            if base.is_none() || now.saturating_duration_since(at) >= window {
                base = Some((at, sample));
            } else {
                break;
            }
        }
        let Some((at, sample)) = base else {
            return (current, None);
        };
        let covered = Some(now.saturating_duration_since(at));
        let Some(sample) = sample else {
            // The counters were zeroed then: everything now is in the window.
            return (current, covered);
        };
        let base = &sample.snapshot;
        let mut histogram = current.histogram.clone();
        for &(bucket, count) in &sample.buckets {
            let slot = &mut histogram[usize::from(bucket)];
            *slot = slot.saturating_sub(count);
        }
        let finished: u64 = histogram.iter().sum();
        // The window's longest call is known to its histogram bucket only.
        let max_ticks = histogram
            .iter()
            .rposition(|count| *count > 0)
            .map_or(0, |bucket| {
                (bucket_middle(bucket) as u64).min(current.max_ticks)
            });
        let windowed = Snapshot {
            calls: current.calls.saturating_sub(base.calls),
            finished,
            in_flight: current.in_flight,
            errors: current.errors.saturating_sub(base.errors),
            panics: current.panics.saturating_sub(base.panics),
            cancelled: current.cancelled.saturating_sub(base.cancelled),
            slow_polls: current
                .slow_polls
                .map(|now| now.saturating_sub(base.slow_polls.unwrap_or(0))),
            total_ticks: current.total_ticks.saturating_sub(base.total_ticks),
            max_ticks,
            histogram,
        };
        (windowed, covered)
    }

    /// The calls started and the errors, as of the newest sample: what
    /// the flight recorder mirrors for crash reports each second, right
    /// after the sample is taken, without reading the counters again.
    pub(crate) fn sampled_counts(&self) -> Option<(u64, u64)> {
        self.with_history(|history| {
            history
                .samples
                .back()
                .map(|sample| (sample.snapshot.calls, sample.snapshot.errors))
        })
    }

    /// The calls that finished between `from_ago` and `to_ago` before
    /// `now` (`from_ago` the larger), from the samples nearest at or
    /// before each end; `None` when the samples do not reach back that far
    /// or a reset falls in between. For the flight recorder's series.
    pub(crate) fn figures_between(
        &self,
        now: Instant,
        from_ago: Duration,
        to_ago: Duration,
    ) -> Option<SpanFigures> {
        self.with_history(|history| {
            let at_or_before = |ago: Duration| {
                let moment = now.checked_sub(ago)?;
                history
                    .samples
                    .iter()
                    .rev()
                    .find(|sample| sample.at <= moment)
            };
            let (start, end) = (at_or_before(from_ago)?, at_or_before(to_ago)?);
            if end.number <= start.number
                || history.zeroed_at.is_some_and(|zeroed| zeroed > start.at)
            {
                return None;
            }
            let mut histogram = vec![0u64; BUCKETS];
            for &(bucket, count) in &end.buckets {
                histogram[usize::from(bucket)] = count;
            }
            for &(bucket, count) in &start.buckets {
                let slot = &mut histogram[usize::from(bucket)];
                *slot = slot.saturating_sub(count);
            }
            let finished: u64 = histogram.iter().sum();
            let span = Snapshot {
                calls: end.snapshot.calls.saturating_sub(start.snapshot.calls),
                finished,
                in_flight: 0,
                errors: end.snapshot.errors.saturating_sub(start.snapshot.errors),
                panics: 0,
                cancelled: 0,
                slow_polls: None,
                total_ticks: end
                    .snapshot
                    .total_ticks
                    .saturating_sub(start.snapshot.total_ticks),
                max_ticks: end.snapshot.max_ticks,
                histogram,
            }
            .summary();
            Some(SpanFigures {
                finished,
                errors: span.errors,
                p50_ns: span.p50_ns,
                p99_ns: span.p99_ns,
            })
        })
    }

    /// Zeroes the counters and forgets the history. Each counter is
    /// lowered by what was read from it, so an increment that races with
    /// the reset is kept, and so are the calls in flight, whose start stays
    /// counted until they finish. Returns how many were in flight.
    pub(crate) fn reset(&self) -> u64 {
        self.with_history(|history| {
            self.zero();
            history.samples.clear();
            history.zeroed_at = Some(Instant::now());
        });
        self.snapshot().in_flight
    }

    /// Lowers every counter by what it holds; see [`CallStats::reset`].
    fn zero(&self) {
        for shard in &self.shards {
            let finished: u64 = shard
                .buckets
                .iter()
                .map(|bucket| {
                    let count = bucket.load(Relaxed);
                    bucket.fetch_sub(count, Relaxed);
                    count
                })
                .sum();
            // Every finished call had started on this shard.
            shard.started.fetch_sub(finished, Relaxed);
            for counter in [
                &shard.errors,
                &shard.panics,
                &shard.cancelled,
                &shard.total_ticks,
            ] {
                counter.fetch_sub(counter.load(Relaxed), Relaxed);
            }
            shard.max_ticks.store(0, Relaxed);
        }
        self.slow_polls
            .fetch_sub(self.slow_polls.load(Relaxed), Relaxed);
    }

    /// Marks the function as an `async fn`, whose polls are counted.
    #[inline]
    pub(crate) fn mark_async(&self) {
        self.followed.store(true, Relaxed);
    }

    /// Counts one poll that ran past `slow_poll`.
    pub(crate) fn count_slow_poll(&self) {
        self.slow_polls.fetch_add(1, Relaxed);
    }

    #[inline]
    fn shard(&self) -> &Shard {
        &self.shards[thread_shard()]
    }

    /// Starts timing one call; the returned timer records it when dropped.
    #[doc(hidden)]
    #[inline]
    pub fn start(&'static self) -> CallTimer {
        let shard = self.shard();
        shard.started.fetch_add(1, Relaxed);
        CallTimer {
            shard,
            started_at: ticks(),
            returned: false,
            tracked: false,
        }
    }

    /// Starts timing one call of a sync function, which is also marked in
    /// flight on this thread for the watchdog until the timer drops.
    #[doc(hidden)]
    #[inline]
    pub fn start_sync(&'static self) -> CallTimer {
        let mut timer = self.start();
        timer.tracked = super::sync_calls::enter(std::ptr::from_ref(self) as usize);
        timer
    }

    /// A consistent-enough copy of the counters: each is read once, finished
    /// calls before started ones, so in-flight is never negative.
    pub(crate) fn snapshot(&self) -> Snapshot {
        let mut histogram = [0u64; BUCKETS];
        let mut snapshot = Snapshot::default();
        for shard in &self.shards {
            for (total, bucket) in histogram.iter_mut().zip(&shard.buckets) {
                *total += bucket.load(Relaxed);
            }
            snapshot.errors += shard.errors.load(Relaxed);
            snapshot.panics += shard.panics.load(Relaxed);
            snapshot.cancelled += shard.cancelled.load(Relaxed);
            // Each shard's total wraps after 2^64 ticks of summed call time
            // (centuries of it); the sum saturates instead of overflowing.
            snapshot.total_ticks = snapshot
                .total_ticks
                .saturating_add(shard.total_ticks.load(Relaxed));
            snapshot.max_ticks = snapshot.max_ticks.max(shard.max_ticks.load(Relaxed));
        }
        let finished: u64 = histogram.iter().sum();
        let started: u64 = self
            .shards
            .iter()
            .map(|shard| shard.started.load(Relaxed))
            .sum();
        snapshot.calls = started.max(finished);
        snapshot.finished = finished;
        snapshot.slow_polls = self
            .followed
            .load(Relaxed)
            .then(|| self.slow_polls.load(Relaxed));
        snapshot.in_flight = snapshot.calls - finished;
        snapshot.histogram = histogram.to_vec();
        snapshot
    }
}

/// Times one call of an instrumented function. Dropping it records the
/// call: as a panic when the thread is unwinding, as cancelled when the
/// call never returned otherwise (an `async fn` whose future was dropped).
#[doc(hidden)]
pub struct CallTimer {
    shard: &'static Shard,
    started_at: u64,
    returned: bool,
    /// Marked in flight on this thread (a sync call), to be unmarked.
    tracked: bool,
}

impl CallTimer {
    /// Marks the call as returned, and whether it returned an `Err`.
    #[doc(hidden)]
    #[inline]
    pub fn returned(&mut self, is_err: bool) {
        self.returned = true;
        if is_err {
            self.shard.errors.fetch_add(1, Relaxed);
        }
    }
}

impl Drop for CallTimer {
    #[inline]
    fn drop(&mut self) {
        if self.tracked {
            super::sync_calls::leave();
        }
        let elapsed = ticks().saturating_sub(self.started_at);
        let shard = self.shard;
        shard.total_ticks.fetch_add(elapsed, Relaxed);
        shard.buckets[bucket_of(elapsed)].fetch_add(1, Relaxed);
        if elapsed > shard.max_ticks.load(Relaxed) {
            shard.max_ticks.fetch_max(elapsed, Relaxed);
        }
        if !self.returned {
            let counter = if std::thread::panicking() {
                &shard.panics
            } else {
                &shard.cancelled
            };
            counter.fetch_add(1, Relaxed);
        }
    }
}

/// This thread's shard: threads take shards in turn on their first call.
#[inline]
fn thread_shard() -> usize {
    static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SHARD
        .try_with(|shard| {
            let index = shard.get();
            if index < SHARDS {
                return index;
            }
            let index = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
            shard.set(index);
            index
        })
        // A call made while this thread's locals are being destroyed.
        .unwrap_or(0)
}

fn bucket_of(ticks: u64) -> usize {
    if ticks < SUB_BUCKETS as u64 {
        return ticks as usize;
    }
    let octave = 63 - ticks.leading_zeros();
    let sub = (ticks >> (octave - SUB_BUCKET_BITS)) as usize & (SUB_BUCKETS - 1);
    (octave - SUB_BUCKET_BITS + 1) as usize * SUB_BUCKETS + sub
}

/// The middle of a bucket's range of ticks.
fn bucket_middle(bucket: usize) -> f64 {
    if bucket < SUB_BUCKETS {
        return bucket as f64;
    }
    let octave = (bucket / SUB_BUCKETS) as u32 + SUB_BUCKET_BITS - 1;
    let width = 1u64 << (octave - SUB_BUCKET_BITS);
    let low = (1u64 << octave) + (bucket % SUB_BUCKETS) as u64 * width;
    low as f64 + width as f64 / 2.0
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn ticks() -> u64 {
    // SAFETY: `rdtsc` exists on every x86-64 CPU and has no preconditions.
    unsafe { core::arch::x86_64::_rdtsc() }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn ticks() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let nanos = EPOCH.get_or_init(Instant::now).elapsed().as_nanos();
    u64::try_from(nanos).unwrap_or(u64::MAX)
}

/// Nanoseconds per tick, measured once against the monotonic clock.
fn nanos_per_tick() -> f64 {
    static RATE: OnceLock<f64> = OnceLock::new();
    *RATE.get_or_init(|| {
        if cfg!(not(target_arch = "x86_64")) {
            return 1.0;
        }
        // Each clock reading is taken between two counter readings, so a
        // preemption between them shows as a wide pair and is retried.
        let paired = || {
            let mut best = None;
            for _ in 0..10 {
                let before = ticks();
                let clock = Instant::now();
                let width = ticks().wrapping_sub(before);
                if best.is_none_or(|(_, _, narrowest)| width < narrowest) {
                    best = Some((clock, before + width / 2, width));
                }
            }
            best.map(|(clock, counter, _)| (clock, counter))
        };
        let (Some((start_clock, start_counter)), _) =
            (paired(), std::thread::sleep(Duration::from_millis(20)))
        else {
            return 1.0;
        };
        let Some((end_clock, end_counter)) = paired() else {
            return 1.0;
        };
        let nanos = end_clock.duration_since(start_clock).as_nanos() as f64;
        let elapsed_ticks = end_counter.wrapping_sub(start_counter) as f64;
        if elapsed_ticks > 0.0 {
            nanos / elapsed_ticks
        } else {
            1.0
        }
    })
}

/// The counters of one function at one moment.
#[derive(Debug, Default, Clone)]
pub(crate) struct Snapshot {
    pub(crate) calls: u64,
    finished: u64,
    in_flight: u64,
    errors: u64,
    panics: u64,
    cancelled: u64,
    /// For an `async fn` only.
    slow_polls: Option<u64>,
    total_ticks: u64,
    max_ticks: u64,
    histogram: Vec<u64>,
}

/// One function's calls over a span in the past (see
/// [`CallStats::figures_between`]); durations in nanoseconds.
pub(crate) struct SpanFigures {
    pub(crate) finished: u64,
    pub(crate) errors: u64,
    pub(crate) p50_ns: Option<u64>,
    pub(crate) p99_ns: Option<u64>,
}

/// What `get` and `stats` show for one function; durations in nanoseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) calls: u64,
    pub(crate) in_flight: u64,
    pub(crate) errors: u64,
    pub(crate) panics: u64,
    pub(crate) cancelled: u64,
    /// Polls that ran past `slow_poll`, for an `async fn`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) slow_polls: Option<u64>,
    pub(crate) mean_ns: Option<u64>,
    pub(crate) p50_ns: Option<u64>,
    pub(crate) p99_ns: Option<u64>,
    pub(crate) max_ns: Option<u64>,
    pub(crate) total_ns: u64,
}

impl Snapshot {
    pub(crate) fn summary(&self) -> Summary {
        let rate = if self.finished == 0 {
            1.0
        } else {
            nanos_per_tick()
        };
        let nanos = |ticks: f64| (ticks * rate).round() as u64;
        let max = nanos(self.max_ticks as f64);
        let percentile = |fraction: f64| {
            // The smallest bucket holding at least `fraction` of the calls;
            // its middle, never above the exact maximum.
            let rank = ((self.finished as f64) * fraction).ceil().max(1.0) as u64;
            let mut seen = 0;
            self.histogram
                .iter()
                .enumerate()
                .find_map(|(bucket, count)| {
                    seen += count;
                    (seen >= rank).then(|| nanos(bucket_middle(bucket)).min(max))
                })
        };
        let finished = (self.finished > 0).then_some(());
        Summary {
            calls: self.calls,
            in_flight: self.in_flight,
            errors: self.errors,
            panics: self.panics,
            cancelled: self.cancelled,
            slow_polls: self.slow_polls,
            mean_ns: finished.map(|()| nanos(self.total_ticks as f64 / self.finished as f64)),
            p50_ns: finished.and_then(|()| percentile(0.50)),
            p99_ns: finished.and_then(|()| percentile(0.99)),
            max_ns: finished.map(|()| max),
            total_ns: nanos(self.total_ticks as f64),
        }
    }
}

/// A duration for people: `850ns`, `12.3µs`, `4.56ms`, `1.20s`.
pub(crate) fn human(nanos: Option<u64>) -> String {
    let Some(nanos) = nanos else {
        return "-".to_owned();
    };
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    // Three significant digits; the unit is chosen after rounding, so that
    // 999,999 ns reads `1.00ms`, not `1000µs`.
    let mut value = nanos as f64 / 1e3;
    for unit in ["µs", "ms"] {
        let shown = format!("{value:.0}");
        if value < 999.5 || shown.len() < 4 {
            return three_digits(value, unit);
        }
        value /= 1e3;
    }
    three_digits(value, "s")
}

fn three_digits(value: f64, unit: &str) -> String {
    let digits = if value < 9.995 {
        2
    } else if value < 99.95 {
        1
    } else {
        0
    };
    format!("{value:.digits$}{unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut previous = 0;
        for ticks in (0..4096)
            .chain((12..64).map(|shift| (1u64 << shift) + (1u64 << shift) / 3))
            .chain([u64::MAX])
        {
            let bucket = bucket_of(ticks);
            assert!(bucket >= previous, "{ticks}");
            previous = bucket;
            let middle = bucket_middle(bucket);
            let error = (middle - ticks as f64).abs() / (ticks.max(1) as f64);
            assert!(error <= 1.0 / 16.0 + 1e-9, "{ticks}: {middle}");
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_come_from_the_histogram() {
        static STATS: CallStats = CallStats::new();
        for _ in 0..10 {
            drop(STATS.start());
        }
        let summary = STATS.snapshot().summary();
        assert_eq!((summary.calls, summary.in_flight), (10, 0));
        assert_eq!(summary.cancelled, 10, "timers dropped without returning");
        let (p50, p99, max) = (
            summary.p50_ns.unwrap(),
            summary.p99_ns.unwrap(),
            summary.max_ns.unwrap(),
        );
        assert!(p50 <= p99 && p99 <= max);
    }

    #[test]
    fn a_window_counts_only_its_calls_and_a_reset_keeps_calls_in_flight() {
        static STATS: CallStats = CallStats::new();
        let finish = |count| {
            for _ in 0..count {
                STATS.start().returned(false);
            }
        };
        finish(5);
        let t0 = Instant::now();
        STATS.record_sample(t0);
        finish(3);
        // A window longer than the history covers it all, from the first
        // sample back to the start.
        let (all, covered) = STATS.window(Duration::from_secs(600));
        assert_eq!(all.summary().calls, 3, "counted from the oldest sample");
        assert!(covered.is_some());
        let (recent, _) = STATS.window(Duration::ZERO);
        assert_eq!(recent.summary().calls, 3, "since the newest sample");
        STATS.record_sample(Instant::now());
        let (recent, _) = STATS.window(Duration::ZERO);
        assert_eq!(recent.summary().calls, 0, "nothing since the newest sample");

        let in_flight = STATS.start();
        finish(2);
        assert_eq!(STATS.reset(), 1);
        let summary = STATS.snapshot().summary();
        assert_eq!((summary.calls, summary.in_flight), (1, 1), "{summary:?}");
        assert_eq!(summary.p50_ns, None, "no call finished since the reset");
        drop(in_flight);
        let summary = STATS.snapshot().summary();
        assert_eq!((summary.calls, summary.in_flight), (1, 0), "{summary:?}");
        assert_eq!(summary.cancelled, 1);
        let (since_reset, covered) = STATS.window(Duration::from_secs(10));
        assert_eq!(since_reset.summary().calls, 1);
        assert!(covered.unwrap() < Duration::from_secs(10));
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(Some(850)), "850ns");
        assert_eq!(human(Some(12_345)), "12.3µs");
        assert_eq!(human(Some(4_561_000)), "4.56ms");
        assert_eq!(human(Some(1_200_000_000)), "1.20s");
        assert_eq!(human(None), "-");
        assert_eq!(human(Some(999_999)), "1.00ms");
        assert_eq!(human(Some(9_996)), "10.0µs");
        assert_eq!(human(Some(99_960)), "100µs");
        assert_eq!(human(Some(3_600_000_000_000)), "3600s");
    }
}
