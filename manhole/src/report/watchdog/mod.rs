//! The watchdog: a thread, `manhole-watch`, that reports stalls while
//! they happen and nobody is connected.
//!
//! What it watches, each against its own limit:
//!
//! - `slow_poll`: a poll of an `#[inspect(calls)]` async fn running longer
//!   than the threshold (`watchdog`), which blocks its worker;
//! - `stuck_call`: such a call in flight longer than `stuck_call`;
//! - `missed_heartbeat`: a [`Heartbeat`](crate::Heartbeat) later than its
//!   own period (watched whenever the manhole is installed);
//! - `lock_wait`: threads waiting in `futex` on a word inside an inspected
//!   `Mutex` or `RwLock` static for longer than the threshold, with
//!   `possible deadlock` when every such waiter has waited past
//!   `stuck_call`.
//!
//! It reads the in-flight nodes' atomics, the heartbeats and `/proc`; it adds
//! nothing to any poll or call. It wakes four times per threshold (or per
//! heartbeat period), and with the watchdog off and no heartbeat it has no
//! thread at all. Stacks are taken the way `stacks` takes them: quietly from
//! `/proc` for a thread in a system call, by the stack signal for one that
//! computes.
//!
//! Reports are rate-limited as Seastar's stall detector does, for each kind
//! on its own: at most five a minute of each, the rest counted as
//! suppressed; one stall is reported again only at two and four times its
//! limit, and its record gets `ended_after_ms` when it is over. The last 32
//! are kept for `stalls`. Each goes out as a `tracing` WARN event under
//! `manhole::watchdog` where the manhole's tracing layer is installed, and
//! to stderr otherwise, every line starting `manhole watchdog: KIND`.
//!
//! Normal context throughout.

mod detector;
mod kept;
mod settings;

pub(crate) use detector::known_holder;
pub(crate) use kept::kept;
pub(crate) use settings::{stuck_call, threshold};

use crate::instrument::heartbeat::{self, Heartbeat};
use crate::options::{Waits, WatchdogStacks};
use detector::Detector;
use kept::lock;
use settings::{millis, set_stacks_sent, STACK_TIMEOUT_MS, STUCK_CALL_MS, THRESHOLD_MS};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Whether a manhole is installed, so that a first heartbeat may start the
/// thread.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// The thread, while it runs; changes wake it.
struct Control {
    running: bool,
    stop: bool,
    generation: u64,
    thread: Option<std::thread::JoinHandle<()>>,
}

static CONTROL: Mutex<Control> = Mutex::new(Control {
    running: false,
    stop: false,
    generation: 0,
    thread: None,
});
static WAKE: Condvar = Condvar::new();

/// How many heartbeats are watched.
pub(crate) fn heartbeats() -> usize {
    heartbeat::all().len()
}

/// Starts watching, as the installed manhole's options say: a thread when
/// the threshold is set or a heartbeat beats.
pub(crate) fn install(
    threshold: Option<Duration>,
    stuck_call: Duration,
    stacks_sent: WatchdogStacks,
    waits: Waits,
) {
    STUCK_CALL_MS.store(millis(stuck_call).max(1), Ordering::Release);
    set_stacks_sent(stacks_sent);
    STACK_TIMEOUT_MS.store(millis(waits.stacks), Ordering::Release);
    INSTALLED.store(true, Ordering::Release);
    heartbeat::on_first_beat(first_beat);
    set_threshold(threshold);
}

/// Stops watching and joins the thread.
pub(crate) fn uninstall() {
    INSTALLED.store(false, Ordering::Release);
    THRESHOLD_MS.store(0, Ordering::Release);
    let thread = {
        let mut control = lock(&CONTROL);
        control.stop = true;
        WAKE.notify_all();
        control.thread.take()
    };
    if let Some(thread) = thread {
        let _ = thread.join();
    }
    lock(&CONTROL).stop = false;
}

/// In a forked child, which has no watchdog thread: forgets the parent's
/// (a lock held by the parent's watchdog at the fork is left alone), so
/// that a reinstall starts its own.
pub(crate) fn forget_after_fork() {
    INSTALLED.store(false, Ordering::Release);
    THRESHOLD_MS.store(0, Ordering::Release);
    if let Ok(mut control) = CONTROL.try_lock() {
        control.running = false;
        control.stop = false;
        // The parent's thread is not ours to join.
        std::mem::forget(control.thread.take());
    }
}

/// Changes the threshold live (`None`: off), starting the thread if it
/// now has something to watch.
pub(crate) fn set_threshold(threshold: Option<Duration>) {
    THRESHOLD_MS.store(threshold.map_or(0, |t| millis(t).max(1)), Ordering::Release);
    ensure_running();
}

fn first_beat() {
    ensure_running();
}

fn ensure_running() {
    if !INSTALLED.load(Ordering::Acquire) {
        return;
    }
    let mut control = lock(&CONTROL);
    control.generation += 1;
    WAKE.notify_all();
    if control.running || (threshold().is_none() && heartbeat::all().is_empty()) {
        return;
    }
    if let Some(finished) = control.thread.take() {
        let _ = finished.join();
    }
    let spawned = std::thread::Builder::new()
        .name("manhole-watch".to_owned())
        .spawn(watch);
    match spawned {
        Ok(thread) => {
            control.running = true;
            control.thread = Some(thread);
        }
        Err(err) => crate::log::always(format_args!("cannot start the watchdog: {err}")),
    }
}

/// How often to look: four times per the shortest limit watched.
fn interval(threshold: Option<Duration>, beats: &[&'static Heartbeat]) -> Duration {
    let shortest = beats
        .iter()
        .map(|beat| beat.period())
        .chain(threshold)
        .chain(threshold.map(|_| stuck_call()))
        .min()
        .unwrap_or(Duration::from_secs(1));
    (shortest / 4).clamp(Duration::from_millis(2), Duration::from_secs(1))
}

/// The thread's loop.
fn watch() {
    // Read before the first look and kept while the watchdog runs: a report
    // names its thread's frames, and reading debug info at that moment
    // would hold the watchdog past the looks that follow.
    let _symbols = crate::capture::stacks::symbols_kept();
    let mut detector = Detector::default();
    loop {
        let limit = threshold();
        let beats = heartbeat::all();
        let pause = interval(limit, &beats);
        {
            let mut control = lock(&CONTROL);
            if control.stop || (limit.is_none() && beats.is_empty()) {
                control.running = false;
                return;
            }
            let generation = control.generation;
            let deadline = Instant::now() + pause;
            while !control.stop && control.generation == generation {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    break;
                }
                control = WAKE
                    .wait_timeout(control, left)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            if control.stop {
                control.running = false;
                return;
            }
        }
        detector.look(threshold(), &heartbeat::all());
    }
}
