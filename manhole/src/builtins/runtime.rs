//! `runtime`: the program's tokio runtime, measured with tokio's stable
//! metrics (workers, alive tasks, the global queue, and each worker's busy
//! time and parks), plus each worker's busy ratio since the previous read.
//!
//! The metrics are plain atomic loads inside tokio: reading them never
//! waits for a worker, so a runtime with a blocked worker still answers.
//! Tokio publishes a worker's busy time and counts when the worker parks,
//! so a worker that has not parked since shows them as of its last park
//! (a worker stuck in one poll shows no busy time growing: `stacks` shows
//! where it is).
//! Without the `tokio` feature, `runtime` says what to enable.

use super::answer::Answer;
use manhole_wire::{Failure, Reason};
use serde::Serialize;

/// One reading of the runtime, as `runtime` answers it.
#[derive(Debug, Serialize)]
pub(crate) struct Reading {
    /// `current_thread` or `multi_thread`, as tokio names it.
    pub(crate) flavor: String,
    pub(crate) workers: usize,
    pub(crate) alive_tasks: usize,
    pub(crate) global_queue_depth: usize,
    /// Seconds since the previous `runtime`, which the busy ratios cover;
    /// `null` on the first read.
    pub(crate) since_previous_s: Option<f64>,
    pub(crate) per_worker: Vec<Worker>,
}

/// One worker's figures; `busy_ms` and the counts are since the runtime
/// started.
#[derive(Debug, Serialize)]
pub(crate) struct Worker {
    pub(crate) worker: usize,
    pub(crate) busy_ms: f64,
    pub(crate) park_count: u64,
    pub(crate) park_unpark_count: u64,
    /// The share of the time since the previous read that this worker spent
    /// busy, from 0 to 1; `null` on the first read.
    pub(crate) busy_ratio: Option<f64>,
}

impl Reading {
    /// The text form: a summary line, then one row per worker.
    pub(crate) fn render(&self) -> String {
        use std::fmt::Write as _;
        let mut text = format!(
            "tokio runtime: {}, {} worker{}, {} alive task{}, global queue {}\n",
            self.flavor,
            self.workers,
            plural(self.workers),
            self.alive_tasks,
            plural(self.alive_tasks),
            self.global_queue_depth
        );
        let _ = writeln!(
            text,
            "{:>6}  {:>12}  {:>6}  {:>10}  {:>12}",
            "WORKER", "BUSY_MS", "BUSY%", "PARKS", "PARK_UNPARKS"
        );
        for worker in &self.per_worker {
            let busy = worker
                .busy_ratio
                .map_or_else(|| "-".to_owned(), |ratio| format!("{:.1}", ratio * 100.0));
            let _ = writeln!(
                text,
                "{:>6}  {:>12.1}  {:>6}  {:>10}  {:>12}",
                worker.worker, worker.busy_ms, busy, worker.park_count, worker.park_unpark_count
            );
        }
        match self.since_previous_s {
            Some(seconds) => {
                let _ = writeln!(
                    text,
                    "BUSY% is over the {seconds:.1} s since the previous read"
                );
            }
            None => text.push_str(
                "BUSY% shows from the next read on: it covers the time between two reads\n",
            ),
        }
        text
    }
}

/// `value` to `digits` decimals, so that the JSON reads as the figure it is.
#[cfg(feature = "tokio")]
fn rounded(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn plural(count: usize) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

/// Reads the runtime that async commands run on.
///
/// # Errors
///
/// [`Reason::NoRuntime`] when the manhole knows no runtime;
/// [`Reason::NotEnabled`] without the `tokio` feature.
#[cfg(feature = "tokio")]
pub(crate) fn read(runtime: &crate::options::Runtime) -> Result<Reading, Failure> {
    use std::time::{Duration, Instant};
    use tokio::runtime::RuntimeFlavor;

    let Some(handle) = &runtime.handle else {
        return Err(Failure::new(
            Reason::NoRuntime,
            format!(
                "the manhole knows no tokio runtime; {}",
                crate::instrument::async_commands::HOW_TO_GIVE_A_RUNTIME
            ),
        ));
    };
    let metrics = handle.metrics();
    let now = Instant::now();
    let busy: Vec<Duration> = (0..metrics.num_workers())
        .map(|worker| metrics.worker_total_busy_duration(worker))
        .collect();
    let mut previous = runtime
        .previous_busy
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let since = previous
        .as_ref()
        .filter(|(_, before)| before.len() == busy.len())
        .map(|(then, before)| (now.duration_since(*then), before.clone()));
    *previous = Some((now, busy.clone()));
    drop(previous);
    let flavor = match handle.runtime_flavor() {
        RuntimeFlavor::CurrentThread => "current_thread".to_owned(),
        RuntimeFlavor::MultiThread => "multi_thread".to_owned(),
        other => format!("{other:?}"),
    };
    let per_worker = busy
        .iter()
        .enumerate()
        .map(|(worker, busy_now)| Worker {
            worker,
            busy_ms: rounded(busy_now.as_secs_f64() * 1000.0, 3),
            park_count: metrics.worker_park_count(worker),
            park_unpark_count: metrics.worker_park_unpark_count(worker),
            busy_ratio: since
                .as_ref()
                .filter(|(elapsed, _)| !elapsed.is_zero())
                .map(|(elapsed, before)| {
                    let gained = busy_now.saturating_sub(before[worker]);
                    rounded((gained.as_secs_f64() / elapsed.as_secs_f64()).min(1.0), 4)
                }),
        })
        .collect();
    Ok(Reading {
        flavor,
        workers: metrics.num_workers(),
        alive_tasks: metrics.num_alive_tasks(),
        global_queue_depth: metrics.global_queue_depth(),
        since_previous_s: since.map(|(elapsed, _)| rounded(elapsed.as_secs_f64(), 3)),
        per_worker,
    })
}

/// Without the `tokio` feature there is no runtime to read: say how to get
/// one, never pretend.
#[cfg(not(feature = "tokio"))]
pub(crate) fn read(_runtime: &crate::options::Runtime) -> Result<Reading, Failure> {
    Err(Failure::new(
        Reason::NotEnabled,
        "`runtime` needs manhole's `tokio` feature: build with `manhole = { version = \"...\", features = [\"tokio\"] }` and install the manhole inside the runtime",
    ))
}

/// `runtime`: one reading, in both forms.
pub(super) fn answer(runtime: &crate::options::Runtime) -> Result<Answer, Failure> {
    let reading = read(runtime)?;
    Ok(Answer {
        text: reading.render(),
        json: serde_json::to_value(&reading).unwrap_or(serde_json::Value::Null),
    })
}
