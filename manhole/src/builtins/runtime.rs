//! `runtime`: the program's tokio runtime, measured with tokio's stable
//! metrics (workers, alive tasks, the global queue, and each worker's busy
//! time and parks), plus each worker's busy ratio since the previous read.
//!
//! The metrics are plain atomic loads inside tokio: reading them never
//! waits for a worker, so a runtime with a blocked worker still answers.
//! Tokio publishes a worker's busy time and counts when the worker parks,
//! so a worker that has not parked since shows them as of its last park
//! (a worker stuck in one poll shows no busy time growing). So a worker
//! whose park/unpark count has not moved since the previous read, and is
//! even (tokio: "an even count means that the worker is currently
//! active"), was busy all along: its ratio is 1, and it is flagged
//! `busy_throughout`, which is how a worker blocked in a poll shows.
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
    /// The worker has not parked since the previous read: it was busy all
    /// that time, without a break, as a worker blocked in a poll is.
    pub(crate) busy_throughout: bool,
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
            let busy = match worker.busy_ratio {
                None => "-".to_owned(),
                Some(_) if worker.busy_throughout => "100.0!".to_owned(),
                Some(ratio) => format!("{:.1}", ratio * 100.0),
            };
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
        if self.per_worker.iter().any(|worker| worker.busy_throughout) {
            text.push_str(
                "! this worker has not parked since the previous read: one poll may be blocking it (see `tasks` and `stacks`)\n",
            );
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
    use crate::options::BusyReading;
    use std::time::Instant;
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
    let workers = metrics.num_workers();
    let reading = BusyReading {
        at: now,
        busy: (0..workers)
            .map(|worker| metrics.worker_total_busy_duration(worker))
            .collect(),
        park_unparks: (0..workers)
            .map(|worker| metrics.worker_park_unpark_count(worker))
            .collect(),
    };
    let mut previous = runtime
        .previous_busy
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let since = previous
        .take()
        .filter(|before| before.busy.len() == workers && before.park_unparks.len() == workers);
    *previous = Some(reading.clone());
    drop(previous);
    let flavor = match handle.runtime_flavor() {
        RuntimeFlavor::CurrentThread => "current_thread".to_owned(),
        RuntimeFlavor::MultiThread => "multi_thread".to_owned(),
        other => format!("{other:?}"),
    };
    let elapsed = since.as_ref().map(|before| now.duration_since(before.at));
    let per_worker = (0..workers)
        .map(|worker| {
            let busy_now = reading.busy[worker];
            let park_unparks = reading.park_unparks[worker];
            let busy_throughout = since.as_ref().is_some_and(|before| {
                before.park_unparks[worker] == park_unparks && park_unparks % 2 == 0
            });
            let busy_ratio = since
                .as_ref()
                .zip(elapsed)
                .filter(|(_, elapsed)| !elapsed.is_zero())
                .map(|(before, elapsed)| {
                    if busy_throughout {
                        return 1.0;
                    }
                    let gained = busy_now.saturating_sub(before.busy[worker]);
                    rounded((gained.as_secs_f64() / elapsed.as_secs_f64()).min(1.0), 4)
                });
            Worker {
                worker,
                busy_ms: rounded(busy_now.as_secs_f64() * 1000.0, 3),
                park_count: metrics.worker_park_count(worker),
                park_unpark_count: park_unparks,
                busy_ratio,
                busy_throughout,
            }
        })
        .collect();
    Ok(Reading {
        flavor,
        workers: metrics.num_workers(),
        alive_tasks: metrics.num_alive_tasks(),
        global_queue_depth: metrics.global_queue_depth(),
        since_previous_s: elapsed.map(|elapsed| rounded(elapsed.as_secs_f64(), 3)),
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
