//! A [`tracing_subscriber`] layer that the manhole can steer: it is the
//! subscriber's filter, changed live with `log set`, and it keeps the
//! recent events for `log tail` and `log follow`. Needs the `tracing`
//! feature.
//!
//! ```no_run
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracing_subscriber::util::SubscriberInitExt;
//!
//! tracing_subscriber::registry()
//!     .with(manhole::tracing::layer()) // first: it filters for every layer
//!     // .with(tracing_subscriber::fmt::layer())
//!     .init();
//! let _manhole = manhole::Options::new().install();
//! ```
//!
//! # The filter
//!
//! The filter is an [`EnvFilter`]: `info`, `warn,my_app=debug`,
//! `my_app[request{id=7}]=trace`. It starts from `RUST_LOG` when that is
//! set and valid, else from the builder's default (`info`); that starting
//! filter is the *default* that `log reset` goes back to. Placed in a
//! registry, the layer filters globally, as an `EnvFilter` would: an event
//! it turns away reaches no layer. After each change the callsites'
//! cached interest is rebuilt
//! ([`tracing_core::callsite::rebuild_interest_cache`]), so a filter that
//! newly enables `debug` takes effect at once. A timed change (`log set
//! FILTER --for 10m`) is reverted by a short-lived thread,
//! `manhole-log-revert`, which sleeps until then, and ends early when
//! another change supersedes it. Spans entered before a change are not
//! known to the new filter, so span-scoped directives (`[span]=debug`)
//! apply to spans created after it.
//!
//! # The events kept
//!
//! Every event that passes the filter is kept: its time, level, target,
//! message and fields, the last [`DEFAULT_CAPACITY`] of them and at most
//! [`DEFAULT_MAX_BYTES`] (both set with [`Builder`]); a message longer than
//! 16 KiB, or a field longer than 4 KiB, is cut. Keeping one costs a few
//! small allocations and one short lock on the thread that logs it; nothing
//! is kept for an event the filter turns away.

mod events;

use crate::log;
use ::tracing_core::span;
use ::tracing_core::{Event, Interest, LevelFilter, Metadata, Subscriber};
use ::tracing_subscriber::filter::EnvFilter;
use ::tracing_subscriber::layer::Context;
pub(crate) use events::Record;
use events::Ring;
use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, Weak};
use std::time::{Duration, Instant, SystemTime};

/// The filter when `RUST_LOG` is not set and [`Builder::default_filter`]
/// was not called.
pub const DEFAULT_FILTER: &str = "info";
/// How many events are kept unless [`Builder::capacity`] says otherwise.
pub const DEFAULT_CAPACITY: usize = 1000;
/// How many bytes of events are kept unless [`Builder::max_bytes`] says
/// otherwise.
pub const DEFAULT_MAX_BYTES: usize = 1 << 20;

/// The layer with the defaults: the filter from `RUST_LOG`, else `info`;
/// the last 1000 events, at most 1 MiB of them.
///
/// An invalid `RUST_LOG` is reported on stderr and the default used.
#[must_use]
pub fn layer() -> LogLayer {
    Builder::new().build_with_env()
}

/// A filter that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidFilter {
    /// The filter as given.
    pub filter: String,
    /// What the parser said.
    pub message: String,
}

impl fmt::Display for InvalidFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid filter `{}`: {}", self.filter, self.message)
    }
}

impl std::error::Error for InvalidFilter {}

/// Sets up a [`LogLayer`] with another default filter or ring size.
///
/// ```
/// let layer = manhole::tracing::Builder::new()
///     .default_filter("warn,my_app=debug")
///     .capacity(5000)
///     .layer()?;
/// # Ok::<(), manhole::tracing::InvalidFilter>(())
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    default: String,
    capacity: usize,
    max_bytes: usize,
}

impl Default for Builder {
    fn default() -> Self {
        Builder::new()
    }
}

impl Builder {
    /// The defaults: [`DEFAULT_FILTER`], [`DEFAULT_CAPACITY`],
    /// [`DEFAULT_MAX_BYTES`].
    #[must_use]
    pub fn new() -> Self {
        Builder {
            default: DEFAULT_FILTER.to_owned(),
            capacity: DEFAULT_CAPACITY,
            max_bytes: DEFAULT_MAX_BYTES,
        }
    }

    /// The filter used when `RUST_LOG` is not set (or does not parse).
    #[must_use]
    pub fn default_filter(mut self, filter: impl Into<String>) -> Self {
        self.default = filter.into();
        self
    }

    /// How many events are kept (at least one).
    #[must_use]
    pub fn capacity(mut self, events: usize) -> Self {
        self.capacity = events.max(1);
        self
    }

    /// How many bytes of events are kept, counting each event's strings
    /// and a small overhead; the oldest go first.
    #[must_use]
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }

    /// The layer: its filter from `RUST_LOG`, else from the default.
    ///
    /// # Errors
    ///
    /// [`InvalidFilter`] when the default filter does not parse. An
    /// invalid `RUST_LOG` is not an error: it is reported on stderr and the
    /// default used.
    pub fn layer(self) -> Result<LogLayer, InvalidFilter> {
        parse(&self.default)?;
        Ok(self.build_with_env())
    }

    fn build_with_env(self) -> LogLayer {
        let from_env = std::env::var("RUST_LOG")
            .ok()
            .filter(|text| !text.trim().is_empty());
        let (start, filter) = match from_env.as_deref().map(|text| (text, parse(text))) {
            Some((text, Ok(filter))) => (text.to_owned(), filter),
            Some((_, Err(err))) => {
                log::always(format_args!("RUST_LOG ignored: {err}"));
                self.default_parsed()
            }
            None => self.default_parsed(),
        };
        let shared = Arc::new(Shared {
            filter: RwLock::new(filter),
            state: Mutex::new(FilterState {
                current: start.clone(),
                permanent: start.clone(),
                default: start,
                revert: None,
                generation: 0,
            }),
            changed: Condvar::new(),
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                bytes: 0,
                capacity: self.capacity,
                max_bytes: self.max_bytes,
                next_seq: 1,
            }),
        });
        *lock(&NEWEST) = Arc::downgrade(&shared);
        LogLayer { shared }
    }

    fn default_parsed(&self) -> (String, EnvFilter) {
        match parse(&self.default) {
            Ok(filter) => (self.default.clone(), filter),
            Err(err) => {
                // Only `layer()`'s fixed default reaches here unchecked.
                log::always(format_args!("{err}; using `{DEFAULT_FILTER}`"));
                (DEFAULT_FILTER.to_owned(), EnvFilter::new(DEFAULT_FILTER))
            }
        }
    }
}

fn parse(filter: &str) -> Result<EnvFilter, InvalidFilter> {
    let invalid = |message: String| InvalidFilter {
        filter: filter.to_owned(),
        message,
    };
    if filter.trim().is_empty() {
        return Err(invalid(
            "it is empty; give a level such as `info`, or directives such as `warn,my_app=debug`"
                .to_owned(),
        ));
    }
    EnvFilter::builder()
        .parse(filter)
        .map_err(|err| invalid(err.to_string()))
}

/// The most recently built layer's state, for the `log` built-in; weak, so
/// that a layer dropped unused is not kept alive.
static NEWEST: Mutex<Weak<Shared>> = Mutex::new(Weak::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The layer: the subscriber's filter, and the keeper of recent events.
/// Build it with [`layer()`] or [`Builder`]; steer it with [`LogLayer::handle`]
/// or the manhole's `log` command.
pub struct LogLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for LogLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogLayer")
            .field("filter", &lock(&self.shared.state).current)
            .finish_non_exhaustive()
    }
}

impl LogLayer {
    /// A handle that changes this layer's filter from the program itself.
    #[must_use]
    pub fn handle(&self) -> Handle {
        Handle {
            shared: Arc::clone(&self.shared),
        }
    }

    fn filter(&self) -> RwLockReadGuard<'_, EnvFilter> {
        self.shared.filter()
    }
}

/// Changes a [`LogLayer`]'s filter, as `log set` and `log reset` do.
#[derive(Clone)]
pub struct Handle {
    shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// The filter in force.
    #[must_use]
    pub fn filter(&self) -> String {
        lock(&self.shared.state).current.clone()
    }

    /// Puts `filter` in force, for good, or until `revert_after` has passed
    /// (then the filter in force before comes back).
    ///
    /// # Errors
    ///
    /// [`InvalidFilter`] when `filter` does not parse; the filter in force
    /// stays.
    pub fn set(&self, filter: &str, revert_after: Option<Duration>) -> Result<(), InvalidFilter> {
        self.shared.set(filter, revert_after).map(|_| ())
    }

    /// Goes back to the default filter.
    pub fn reset(&self) {
        self.shared.reset();
    }
}

struct Shared {
    filter: RwLock<EnvFilter>,
    state: Mutex<FilterState>,
    /// Wakes a pending revert when the filter changes.
    changed: Condvar,
    ring: Mutex<Ring>,
}

/// The filters by name; `filter` holds the parsed one in force.
struct FilterState {
    current: String,
    /// What a timed filter reverts to: the last filter set for good.
    permanent: String,
    default: String,
    /// When the timed filter in force reverts, and which change set it.
    revert: Option<(Instant, SystemTime, u64)>,
    /// Counts changes, so that a revert knows whether it is still due.
    generation: u64,
}

/// The filter as `log` reports it.
pub(crate) struct Status {
    pub(crate) filter: String,
    pub(crate) default: String,
    pub(crate) previous: Option<String>,
    /// Seconds until a timed filter reverts, and the time it will.
    pub(crate) reverts: Option<(f64, SystemTime, String)>,
}

impl Shared {
    fn filter(&self) -> RwLockReadGuard<'_, EnvFilter> {
        self.filter
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Parses and swaps in `text` (the caller holds the state), then has
    /// every callsite ask the subscriber again.
    fn apply(&self, text: &str) -> Result<(), InvalidFilter> {
        let filter = parse(text)?;
        *self
            .filter
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = filter;
        ::tracing_core::callsite::rebuild_interest_cache();
        Ok(())
    }

    fn status(&self, state: &FilterState, previous: Option<String>) -> Status {
        Status {
            filter: state.current.clone(),
            default: state.default.clone(),
            previous,
            reverts: state.revert.map(|(at, wall, _)| {
                (
                    at.saturating_duration_since(Instant::now()).as_secs_f64(),
                    wall,
                    state.permanent.clone(),
                )
            }),
        }
    }

    fn set(
        self: &Arc<Self>,
        filter: &str,
        revert_after: Option<Duration>,
    ) -> Result<Status, InvalidFilter> {
        let mut state = lock(&self.state);
        self.apply(filter)?;
        let previous = std::mem::replace(&mut state.current, filter.to_owned());
        state.generation += 1;
        match revert_after {
            None => {
                state.permanent = filter.to_owned();
                state.revert = None;
            }
            Some(after) => {
                let generation = state.generation;
                state.revert = Some((
                    Instant::now() + after,
                    SystemTime::now() + after,
                    generation,
                ));
                let shared = Arc::clone(self);
                let spawned = std::thread::Builder::new()
                    .name("manhole-log-revert".to_owned())
                    .spawn(move || shared.revert_when_due(generation));
                if let Err(err) = spawned {
                    // Without the thread nothing would revert it: undo.
                    let permanent = state.permanent.clone();
                    let _ = self.apply(&permanent);
                    state.current = permanent;
                    state.revert = None;
                    return Err(InvalidFilter {
                        filter: filter.to_owned(),
                        message: format!("cannot start the thread that reverts it: {err}"),
                    });
                }
            }
        }
        self.changed.notify_all();
        Ok(self.status(&state, Some(previous)))
    }

    fn reset(&self) -> Status {
        let mut state = lock(&self.state);
        let default = state.default.clone();
        // The default parsed when the layer was built.
        let _ = self.apply(&default);
        let previous = std::mem::replace(&mut state.current, default.clone());
        state.permanent = default;
        state.revert = None;
        state.generation += 1;
        self.changed.notify_all();
        self.status(&state, Some(previous))
    }

    /// The `manhole-log-revert` thread: sleeps until the change numbered
    /// `generation` is due to revert, unless another change comes first.
    fn revert_when_due(&self, generation: u64) {
        let mut state = lock(&self.state);
        loop {
            let due = match state.revert {
                Some((at, _, set_by)) if set_by == generation => at,
                _ => return,
            };
            let left = due.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let permanent = state.permanent.clone();
                // It parsed when it was set.
                let _ = self.apply(&permanent);
                state.current = permanent;
                state.revert = None;
                state.generation += 1;
                return;
            }
            state = self
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    fn record(&self, event: &Event<'_>) {
        // Built before the lock, so that the lock is held for the push only.
        let mut record = Record::from_event(event);
        let mut ring = lock(&self.ring);
        record.seq = ring.next_seq;
        ring.next_seq += 1;
        ring.push(Arc::new(record));
    }
}

/// The newest `count` events, oldest first, for a crash report: no
/// allocation, and each lock taken only when free, never waited for.
/// `false` when a lock was held (perhaps by the crashing thread).
pub(crate) fn each_recent_in_crash(count: usize, each: &mut dyn FnMut(&Record)) -> bool {
    let newest = match NEWEST.try_lock() {
        Ok(newest) => newest,
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return false,
    };
    let Some(shared) = newest.upgrade() else {
        return true;
    };
    drop(newest);
    let ring = match shared.ring.try_lock() {
        Ok(ring) => ring,
        Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
        Err(std::sync::TryLockError::WouldBlock) => return false,
    };
    let skip = ring.events.len().saturating_sub(count);
    for record in ring.events.iter().skip(skip) {
        each(record);
    }
    true
}

/// What the `log` built-in steers: the newest layer built, if it lives.
pub(crate) struct Control {
    shared: Arc<Shared>,
}

/// The newest layer's control, when there is one.
pub(crate) fn control() -> Option<Control> {
    lock(&NEWEST).upgrade().map(|shared| Control { shared })
}

impl Control {
    pub(crate) fn status(&self) -> Status {
        let state = lock(&self.shared.state);
        self.shared.status(&state, None)
    }

    pub(crate) fn set(
        &self,
        filter: &str,
        revert_after: Option<Duration>,
    ) -> Result<Status, InvalidFilter> {
        self.shared.set(filter, revert_after)
    }

    pub(crate) fn reset(&self) -> Status {
        self.shared.reset()
    }

    /// The last `count` events, oldest first.
    pub(crate) fn tail(&self, count: usize) -> Vec<Arc<Record>> {
        let ring = lock(&self.shared.ring);
        let skip = ring.events.len().saturating_sub(count);
        ring.events.iter().skip(skip).cloned().collect()
    }

    /// The events after the one numbered `seq`, oldest first, and the
    /// newest number (`seq` itself when there are none).
    pub(crate) fn after(&self, seq: u64) -> (Vec<Arc<Record>>, u64) {
        let ring = lock(&self.shared.ring);
        let newest = ring.next_seq - 1;
        let events: Vec<_> = ring
            .events
            .iter()
            .filter(|record| record.seq > seq)
            .cloned()
            .collect();
        (events, newest.max(seq))
    }

    /// The number of the newest event so far (0 before the first).
    pub(crate) fn newest(&self) -> u64 {
        lock(&self.shared.ring).next_seq - 1
    }
}

impl<S: Subscriber> ::tracing_subscriber::Layer<S> for LogLayer {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        <EnvFilter as ::tracing_subscriber::Layer<S>>::register_callsite(&self.filter(), metadata)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        <EnvFilter as ::tracing_subscriber::Layer<S>>::max_level_hint(&self.filter())
    }

    fn enabled(&self, metadata: &Metadata<'_>, ctx: Context<'_, S>) -> bool {
        self.filter().enabled(metadata, ctx)
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        self.filter().on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: Context<'_, S>) {
        self.filter().on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.filter().on_enter(id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: Context<'_, S>) {
        self.filter().on_exit(id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: Context<'_, S>) {
        self.filter().on_close(id, ctx);
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        self.shared.record(event);
    }
}

#[cfg(test)]
mod tests {
    use super::events::cut;
    use super::*;

    #[test]
    fn filters_are_checked_and_cut_text_stays_utf8() {
        assert!(parse("info,my_app=debug").is_ok());
        let err = parse("info,my_app=loud").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("invalid filter `info,my_app=loud`: "),
            "{err}"
        );
        assert!(parse("  ").is_err());
        let mut text = "ééé".to_owned();
        cut(&mut text, 3);
        assert_eq!(text, "é…");
    }
}
