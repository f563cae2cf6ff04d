//! What following an `async fn` costs: `#[manhole::inspect(calls)]` (call
//! statistics plus the `tasks` node) side by side with the plain `async
//! fn`, async-backtrace's `#[framed]`, and `tracing::Instrument` under a
//! `tracing_subscriber` fmt subscriber that writes to a sink; and how long
//! `tasks` takes with 10,000 calls in flight.
//!
//! ```text
//! cargo bench -p manhole --bench async_calls -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! Each call is driven by a minimal executor (poll until ready, with a
//! no-op waker), so only the future's own work is timed. `ready` finishes
//! in its first poll: the per-call cost. `yields_10` returns `Pending` ten
//! times first: against `ready`, the cost of ten extra polls.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::Instant;
use tracing::Instrument as _;

struct Noop;

impl Wake for Noop {
    fn wake(self: Arc<Self>) {}
}

fn drive<F: Future>(future: F, waker: &Waker) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(waker);
    loop {
        if let Poll::Ready(value) = future.as_mut().poll(&mut context) {
            return value;
        }
    }
}

/// Returns `Pending` `times` times, waking itself, then `Ready`.
struct Yield {
    left: u32,
}

impl Future for Yield {
    type Output = ();
    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.left == 0 {
            return Poll::Ready(());
        }
        self.left -= 1;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

fn work(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15).rotate_left(17)
}

#[inline(never)]
async fn plain(x: u64, yields: u32) -> u64 {
    Yield { left: yields }.await;
    work(x)
}

#[inline(never)]
#[manhole::inspect(calls)]
async fn followed(x: u64, yields: u32) -> u64 {
    Yield { left: yields }.await;
    work(x)
}

#[inline(never)]
#[manhole::inspect(calls, args)]
async fn followed_args(x: u64, yields: u32) -> u64 {
    Yield { left: yields }.await;
    work(x)
}

#[inline(never)]
#[async_backtrace::framed]
async fn framed(x: u64, yields: u32) -> u64 {
    Yield { left: yields }.await;
    work(x)
}

#[inline(never)]
async fn instrumented(x: u64, yields: u32) -> u64 {
    async move {
        Yield { left: yields }.await;
        work(x)
    }
    .instrument(tracing::info_span!("instrumented"))
    .await
}

/// A call that never finishes, kept in flight for the `tasks` case.
#[manhole::inspect(calls)]
async fn stuck() {
    std::future::pending::<()>().await;
}

fn calls(c: &mut Criterion) {
    let subscriber = tracing_subscriber::fmt()
        .with_writer(std::io::sink)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let waker = Waker::from(Arc::new(Noop));
    let mut group = c.benchmark_group("async_calls");
    for yields in [0, 10] {
        let case = if yields == 0 { "ready" } else { "yields_10" };
        group.bench_function(format!("{case}/plain"), |b| {
            b.iter(|| drive(plain(black_box(7), yields), &waker))
        });
        group.bench_function(format!("{case}/manhole"), |b| {
            b.iter(|| drive(followed(black_box(7), yields), &waker))
        });
        group.bench_function(format!("{case}/manhole_args"), |b| {
            b.iter(|| drive(followed_args(black_box(7), yields), &waker))
        });
        group.bench_function(format!("{case}/framed"), |b| {
            b.iter(|| drive(framed(black_box(7), yields), &waker))
        });
        group.bench_function(format!("{case}/tracing"), |b| {
            b.iter(|| drive(instrumented(black_box(7), yields), &waker))
        });
    }
    group.finish();
}

/// `tasks` over JSON-RPC, through the same session code a socket gets, with
/// 10,000 calls in flight; printed as the median of 21 answers.
fn tasks_with_10_000_in_flight(_c: &mut Criterion) {
    let waker = Waker::from(Arc::new(Noop));
    let mut context = Context::from_waker(&waker);
    let mut in_flight: Vec<_> = (0..10_000).map(|_| Box::pin(stuck())).collect();
    for future in &mut in_flight {
        assert!(future.as_mut().poll(&mut context).is_pending());
    }
    let request = br#"{"jsonrpc":"2.0","id":1,"method":"tasks"}
"#;
    let mut times: Vec<f64> = (0..21)
        .map(|_| {
            let started = Instant::now();
            let answer = manhole::__private::serve_bytes(request);
            let took = started.elapsed().as_secs_f64() * 1000.0;
            assert!(answer.len() > 10_000 * 50, "{} bytes", answer.len());
            took
        })
        .collect();
    times.sort_by(f64::total_cmp);
    println!(
        "tasks with 10000 calls in flight: median {:.2} ms (min {:.2}, max {:.2}) over 21 answers",
        times[10], times[0], times[20]
    );
    drop(in_flight);
}

/// The same calls timed a second way: rounds of 20,000 calls of each kind,
/// alternating plain, manhole and `#[framed]` within one loop, 41 rounds;
/// each round's added cost is against the plain round just before it, so
/// that a slow stretch of the machine weighs on both sides of a
/// difference. Prints the medians of the paired differences.
fn paired_rounds(_c: &mut Criterion) {
    const CALLS: u32 = 20_000;
    const ROUNDS: usize = 41;
    let waker = Waker::from(Arc::new(Noop));
    let per_call = |run: &dyn Fn(u64) -> u64| {
        let started = Instant::now();
        let mut sum = 0u64;
        for x in 0..u64::from(CALLS) {
            sum = sum.wrapping_add(run(black_box(x)));
        }
        black_box(sum);
        started.elapsed().as_secs_f64() * 1e9 / f64::from(CALLS)
    };
    for yields in [0, 10] {
        let mut manhole = Vec::with_capacity(ROUNDS);
        let mut with_args = Vec::with_capacity(ROUNDS);
        let mut framed_added = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            let base = per_call(&|x| drive(plain(x, yields), &waker));
            manhole.push(per_call(&|x| drive(followed(x, yields), &waker)) - base);
            with_args.push(per_call(&|x| drive(followed_args(x, yields), &waker)) - base);
            framed_added.push(per_call(&|x| drive(framed(x, yields), &waker)) - base);
        }
        let median = |values: &mut Vec<f64>| {
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        println!(
            "paired rounds, {} pending(s) first: added per call, median of {ROUNDS}: manhole {:.1} ns, with args (two integers) {:.1} ns, #[framed] {:.1} ns",
            yields,
            median(&mut manhole),
            median(&mut with_args),
            median(&mut framed_added),
        );
    }
}

criterion_group!(benches, calls, paired_rounds, tasks_with_10_000_in_flight);
criterion_main!(benches);
