//! What `manhole::tracing::layer()` costs an event, side by side with a
//! plain `EnvFilter` (and, for the reload case, `EnvFilter` under
//! `tracing_subscriber::reload`), each as the only layer of a registry.
//!
//! ```text
//! cargo bench -p manhole --features tracing --bench tracing_layer -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! - `enabled`: an `info!` event with one field under the filter `info`.
//!   The plain filter lets it through and nothing else happens; the
//!   manhole layer also keeps it (formats the message and fields, takes its
//!   ring's lock).
//! - `disabled`: a `debug!` event under `info`, turned away.
//! - `after_reload`: the filter reloaded from `info` to `debug` (the
//!   manhole layer's `Handle::set`, the reload layer's `Handle::reload`),
//!   then a `debug!` event, now enabled.
//!
//! Each subscriber is the scoped default (`with_default`) of the thread
//! while it is measured.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;

fn enabled_event(n: u64) {
    tracing::info!(target: "bench", n, "an event that passes");
}

fn disabled_event(n: u64) {
    tracing::debug!(target: "bench", n, "an event turned away");
}

fn reloaded_event(n: u64) {
    tracing::debug!(target: "bench", n, "an event enabled by a reload");
}

fn layer_with(filter: &str) -> manhole::tracing::LogLayer {
    manhole::tracing::Builder::new()
        .default_filter(filter)
        .layer()
        .expect("a valid filter")
}

fn benches(c: &mut Criterion) {
    // The layers read RUST_LOG first; the comparison is under `info`.
    std::env::remove_var("RUST_LOG");
    let mut group = c.benchmark_group("tracing_layer");
    let mut n = 0u64;

    let plain = tracing_subscriber::registry().with(EnvFilter::new("info"));
    tracing::subscriber::with_default(plain, || {
        group.bench_function("enabled/env_filter", |b| {
            b.iter(|| {
                n += 1;
                enabled_event(black_box(n));
            });
        });
        group.bench_function("disabled/env_filter", |b| {
            b.iter(|| {
                n += 1;
                disabled_event(black_box(n));
            });
        });
    });

    let ours = tracing_subscriber::registry().with(layer_with("info"));
    tracing::subscriber::with_default(ours, || {
        group.bench_function("enabled/manhole_layer", |b| {
            b.iter(|| {
                n += 1;
                enabled_event(black_box(n));
            });
        });
        group.bench_function("disabled/manhole_layer", |b| {
            b.iter(|| {
                n += 1;
                disabled_event(black_box(n));
            });
        });
    });

    let (reloadable, reload) = tracing_subscriber::reload::Layer::new(EnvFilter::new("info"));
    let plain = tracing_subscriber::registry().with(reloadable);
    tracing::subscriber::with_default(plain, || {
        reload
            .reload(EnvFilter::new("debug"))
            .expect("the subscriber is alive");
        tracing::callsite::rebuild_interest_cache();
        group.bench_function("after_reload/env_filter", |b| {
            b.iter(|| {
                n += 1;
                reloaded_event(black_box(n));
            });
        });
    });

    let layer = layer_with("info");
    let handle = layer.handle();
    let ours = tracing_subscriber::registry().with(layer);
    tracing::subscriber::with_default(ours, || {
        handle.set("debug", None).expect("a valid filter");
        group.bench_function("after_reload/manhole_layer", |b| {
            b.iter(|| {
                n += 1;
                reloaded_event(black_box(n));
            });
        });
    });
    group.finish();
}

criterion_group!(tracing_layer, benches);
criterion_main!(tracing_layer);
