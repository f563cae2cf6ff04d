//! A service that logs with `tracing` through `manhole::tracing::layer()`:
//! its filter is changed live with `log set`, and its recent events read
//! with `log tail` or `log follow` (manhole's `tracing` feature).
//!
//! ```text
//! cargo run --example traced --features tracing
//! manhole> log
//! manhole> log set 'info,traced::worker=debug' --for 30s
//! manhole> log follow
//! ```
//!
//! The subscriber is set before the manhole is installed, so that the
//! manhole's own messages (`listening on ...`) go out as tracing events
//! under the target `manhole` too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Work items done by the worker.
#[manhole::inspect]
static DONE: AtomicU64 = AtomicU64::new(0);

/// Emit one event now, at LEVEL (error, warn, info, debug or trace), from
/// the target `traced::command`, with the field `n`.
#[manhole::command]
fn emit(level: String, message: String, n: Option<u64>) -> Result<String, String> {
    let n = n.unwrap_or(0);
    match level.as_str() {
        "error" => tracing::error!(target: "traced::command", n, "{message}"),
        "warn" => tracing::warn!(target: "traced::command", n, "{message}"),
        "info" => tracing::info!(target: "traced::command", n, "{message}"),
        "debug" => tracing::debug!(target: "traced::command", n, "{message}"),
        "trace" => tracing::trace!(target: "traced::command", n, "{message}"),
        other => {
            return Err(format!(
                "unknown level {other:?}; expected error, warn, info, debug or trace"
            ))
        }
    }
    Ok(format!("emitted at {level}"))
}

fn worker() {
    loop {
        let done = DONE.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::debug!(target: "traced::worker", done, "finished an item");
        if done % 20 == 0 {
            tracing::info!(target: "traced::worker", done, "another twenty done");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    tracing_subscriber::registry()
        .with(manhole::tracing::layer())
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
    let handle = match manhole::Options::new().install() {
        Ok(handle) => handle,
        Err(err) => {
            tracing::error!("no manhole: {err}");
            return;
        }
    };
    println!(
        "traced example running as pid {}; connect with: nc -U {}",
        std::process::id(),
        handle.socket_path().display()
    );
    std::thread::Builder::new()
        .name("worker".to_owned())
        .spawn(worker)
        .expect("spawn the worker");
    // Runs until stdin closes, so a test's child never outlives it.
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}
