//! What `#[manhole::inspect(calls)]` adds to a call, side by side with a
//! plain call and with `tracing::instrument` under a `tracing_subscriber`
//! fmt subscriber that writes to a sink.
//!
//! ```text
//! cargo bench -p manhole --bench calls -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Two bodies: `tiny` (a multiply and a rotate, ~1 ns) shows the whole
//! fixed cost, and `small` (FNV-1a over a 16-byte key, ~20 ns) a function
//! small enough that the cost still matters. `two_threads` runs the same
//! function on both cores at once, against the same counters; `one_shard`
//! is the same counters without sharding, written inline here, to show
//! what sharding saves under contention.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

#[inline(never)]
fn tiny_plain(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}

#[inline(never)]
#[manhole::inspect(calls)]
fn tiny_counted(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}

#[inline(never)]
#[tracing::instrument(skip_all)]
fn tiny_traced(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}

fn fnv(key: &[u8; 16]) -> u64 {
    key.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[inline(never)]
fn small_plain(key: &[u8; 16]) -> u64 {
    fnv(key)
}

#[inline(never)]
#[manhole::inspect(calls)]
fn small_counted(key: &[u8; 16]) -> u64 {
    fnv(key)
}

#[inline(never)]
#[tracing::instrument(skip_all)]
fn small_traced(key: &[u8; 16]) -> u64 {
    fnv(key)
}

/// `tracing::instrument` as most people write it: the arguments recorded.
#[inline(never)]
#[tracing::instrument]
fn small_traced_with_args(key: &[u8; 16]) -> u64 {
    fnv(key)
}

/// One set of counters every thread shares: what sharding avoids.
static ONE_SHARD: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

#[inline(never)]
fn tiny_one_shard(x: u64) -> u64 {
    ONE_SHARD[0].fetch_add(1, Relaxed);
    let started = Instant::now();
    let value = x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17);
    let elapsed = started.elapsed().as_nanos() as u64;
    ONE_SHARD[1].fetch_add(elapsed, Relaxed);
    ONE_SHARD[2 + (elapsed > 100) as usize].fetch_add(1, Relaxed);
    value
}

/// Two reads of the clock the counters use, and nothing else: the floor
/// under any per-call timing.
#[inline(never)]
fn two_clock_reads() -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: `rdtsc` exists on every x86-64 CPU and has no
        // preconditions.
        let (start, end) = unsafe { (core::arch::x86_64::_rdtsc(), core::arch::x86_64::_rdtsc()) };
        end.wrapping_sub(start)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let started = Instant::now();
        started.elapsed().as_nanos() as u64
    }
}

fn single_thread(c: &mut Criterion) {
    let key = *b"GET /v1/users/42";
    let mut group = c.benchmark_group("one_thread");
    group.bench_function("floor/two_clock_reads", |b| b.iter(two_clock_reads));
    group.bench_function("tiny/plain", |b| b.iter(|| tiny_plain(black_box(7))));
    group.bench_function("tiny/manhole", |b| b.iter(|| tiny_counted(black_box(7))));
    group.bench_function("tiny/tracing", |b| b.iter(|| tiny_traced(black_box(7))));
    group.bench_function("small/plain", |b| b.iter(|| small_plain(black_box(&key))));
    group.bench_function("small/manhole", |b| {
        b.iter(|| small_counted(black_box(&key)))
    });
    group.bench_function("small/tracing", |b| {
        b.iter(|| small_traced(black_box(&key)))
    });
    group.bench_function("small/tracing_with_args", |b| {
        b.iter(|| small_traced_with_args(black_box(&key)))
    });
    group.finish();
}

/// Runs `call` `iterations` times on each of two threads at once; the time
/// is the wall time over the calls of one thread.
fn on_two_threads(iterations: u64, call: fn(u64) -> u64) -> Duration {
    let barrier = std::sync::Barrier::new(2);
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    let started = Instant::now();
                    for i in 0..iterations {
                        black_box(call(black_box(i)));
                    }
                    started.elapsed()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().unwrap_or_default())
            .max()
            .unwrap_or_default()
    })
}

fn two_threads(c: &mut Criterion) {
    let mut group = c.benchmark_group("two_threads");
    for (name, call) in [
        ("tiny/plain", tiny_plain as fn(u64) -> u64),
        ("tiny/manhole", tiny_counted),
        ("tiny/one_shard", tiny_one_shard),
        ("tiny/tracing", tiny_traced),
    ] {
        group.bench_function(name, |b| {
            b.iter_custom(|iterations| on_two_threads(iterations, call))
        });
    }
    group.finish();
}

fn with_subscriber(c: &mut Criterion) {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    single_thread(c);
    two_threads(c);
}

criterion_group!(benches, with_subscriber);
criterion_main!(benches);
