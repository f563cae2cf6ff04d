//! [`Heartbeat`]: a loop's proof of life, which the watchdog checks.

use super::clock::{now_ns, tid};
use serde::ser::SerializeStruct as _;
use std::sync::atomic::Ordering::{self, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, AtomicU64};
use std::time::Duration;

/// A loop's heartbeat: the loop calls [`Heartbeat::beat`] each time round,
/// and the manhole's watchdog reports `missed_heartbeat`, with the stack of
/// the thread that beat last, when a beat is later than the period.
///
/// Heartbeats are watched whenever the manhole is installed, whether or not
/// the `watchdog` option is set: a heartbeat is its own opt-in. Mark the
/// static with `#[manhole::inspect]` to give it its name in reports and to
/// read it with `get`, which shows `{"period_ms", "last_beat_ms_ago",
/// "thread"}`.
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
///
/// #[manhole::inspect]
/// static MAIN_LOOP: manhole::Heartbeat = manhole::Heartbeat::new(Duration::from_secs(2));
///
/// # fn work() {}
/// #[manhole::main]
/// fn main() {
///     loop {
///         MAIN_LOOP.beat();
///         work();
///     }
/// }
/// ```
#[derive(Debug)]
pub struct Heartbeat {
    period_ms: u64,
    /// The coarse clock at the last beat, in nanoseconds; 0 before the
    /// first.
    last_ns: AtomicU64,
    /// The thread that beat last.
    thread: AtomicI32,
    /// Whether it is in the list the watchdog walks, and the next in it.
    listed: AtomicBool,
    next: AtomicPtr<Heartbeat>,
}

/// Every heartbeat that has beaten at least once, newest first: an
/// intrusive list of statics, pushed once each and never popped.
static HEARTBEATS: AtomicPtr<Heartbeat> = AtomicPtr::new(std::ptr::null_mut());

impl Heartbeat {
    /// A heartbeat expected at least once every `period`.
    #[must_use]
    pub const fn new(period: Duration) -> Heartbeat {
        let millis = period.as_millis();
        Heartbeat {
            period_ms: if millis > u64::MAX as u128 {
                u64::MAX
            } else {
                millis as u64
            },
            last_ns: AtomicU64::new(0),
            thread: AtomicI32::new(0),
            listed: AtomicBool::new(false),
            next: AtomicPtr::new(std::ptr::null_mut()),
        }
    }

    /// Says the loop is alive: a relaxed store of the coarse clock and of
    /// the thread's cached id, a few nanoseconds. The first beat also puts
    /// the heartbeat in the watchdog's list.
    #[inline]
    pub fn beat(&'static self) {
        self.last_ns.store(now_ns(), Relaxed);
        self.thread.store(tid(), Relaxed);
        if !self.listed.load(Relaxed) {
            self.list();
        }
    }

    #[cold]
    fn list(&'static self) {
        if self.listed.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = std::ptr::from_ref(self).cast_mut();
        let mut head = HEARTBEATS.load(Ordering::Acquire);
        loop {
            self.next.store(head, Ordering::Relaxed);
            match HEARTBEATS.compare_exchange_weak(head, me, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => break,
                Err(now) => head = now,
            }
        }
        let hook = ON_FIRST_BEAT.load(Ordering::Acquire);
        if hook != 0 {
            // SAFETY: only `on_first_beat` stores here, from a `fn()`.
            let hook: fn() = unsafe { std::mem::transmute::<usize, fn()>(hook) };
            hook();
        }
    }

    /// The period the beats are expected within.
    #[must_use]
    pub fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms)
    }

    /// How long since the last beat, if there was one.
    pub(crate) fn since_last(&self) -> Option<Duration> {
        let last = self.last_ns.load(Relaxed);
        (last != 0).then(|| Duration::from_nanos(now_ns().saturating_sub(last)))
    }

    /// The coarse clock at the last beat; 0 before the first.
    pub(crate) fn last_beat_ns(&self) -> u64 {
        self.last_ns.load(Relaxed)
    }

    /// The thread that beat last.
    pub(crate) fn thread(&self) -> i32 {
        self.thread.load(Relaxed)
    }
}

impl serde::Serialize for Heartbeat {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = serializer.serialize_struct("Heartbeat", 3)?;
        fields.serialize_field("period_ms", &self.period_ms)?;
        fields.serialize_field(
            "last_beat_ms_ago",
            &self.since_last().map(|since| since.as_millis() as u64),
        )?;
        let thread = self.thread();
        fields.serialize_field("thread", &(thread != 0).then_some(thread))?;
        fields.end()
    }
}

/// What to call when a heartbeat beats for the first time: the watchdog's
/// start, which a heartbeat needs even with the `watchdog` option off (a
/// `fn()` as an address; 0 for none).
static ON_FIRST_BEAT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Sets what a first beat calls.
pub(crate) fn on_first_beat(hook: fn()) {
    ON_FIRST_BEAT.store(hook as usize, Ordering::Release);
}

/// Every heartbeat that has beaten, for the watchdog.
pub(crate) fn all() -> Vec<&'static Heartbeat> {
    let mut found = Vec::new();
    let mut next = HEARTBEATS.load(Ordering::Acquire);
    while !next.is_null() {
        // SAFETY: only `&'static Heartbeat`s are ever pushed, never popped.
        let heartbeat: &'static Heartbeat = unsafe { &*next };
        found.push(heartbeat);
        next = heartbeat.next.load(Ordering::Acquire);
    }
    found
}
