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

use serde::Serialize;
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
        }
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
        }
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
    errors: u64,
    panics: u64,
    cancelled: u64,
    total_ticks: u64,
    max_ticks: u64,
    histogram: Vec<u64>,
}

/// What `get` and `stats` show for one function; durations in nanoseconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) calls: u64,
    pub(crate) in_flight: u64,
    pub(crate) errors: u64,
    pub(crate) panics: u64,
    pub(crate) cancelled: u64,
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
            in_flight: self.calls - self.finished,
            errors: self.errors,
            panics: self.panics,
            cancelled: self.cancelled,
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
