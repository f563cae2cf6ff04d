//! The watchdog's settings in force: written by install and by the
//! `watchdog` built-in, read by the detector on each look.

use crate::options::{Waits, WatchdogStacks};
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

/// The threshold in force, in milliseconds (0: off), and `stuck_call`.
pub(super) static THRESHOLD_MS: AtomicU64 = AtomicU64::new(0);
pub(super) static STUCK_CALL_MS: AtomicU64 = AtomicU64::new(60_000);
pub(super) static STACK_TIMEOUT_MS: AtomicU64 = AtomicU64::new(200);
/// How much stack a report sends out: 0 short, 1 full, 2 none.
static STACKS_SENT: AtomicU8 = AtomicU8::new(0);

pub(super) fn set_stacks_sent(stacks: WatchdogStacks) {
    let code = match stacks {
        WatchdogStacks::Full => 1,
        WatchdogStacks::None => 2,
        _ => 0,
    };
    STACKS_SENT.store(code, Ordering::Release);
}

/// How much stack a report sends out.
pub(super) fn stacks_sent() -> WatchdogStacks {
    match STACKS_SENT.load(Ordering::Acquire) {
        1 => WatchdogStacks::Full,
        2 => WatchdogStacks::None,
        _ => WatchdogStacks::Short,
    }
}
/// The threshold in force.
pub(crate) fn threshold() -> Option<Duration> {
    match THRESHOLD_MS.load(Ordering::Acquire) {
        0 => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

/// `stuck_call` in force.
pub(crate) fn stuck_call() -> Duration {
    Duration::from_millis(STUCK_CALL_MS.load(Ordering::Acquire))
}

pub(super) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// What the detector's stack captures wait, as `stacks` would.
pub(super) fn waits() -> Waits {
    Waits {
        stacks: Duration::from_millis(STACK_TIMEOUT_MS.load(Ordering::Acquire).max(1)),
        ..Waits::default()
    }
}
