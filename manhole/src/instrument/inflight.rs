//! The in-flight `async fn`s under `#[inspect(calls)]`: what `tasks` shows.
//!
//! Each instrumented call, on its first poll, claims a slot in a table of
//! fixed-size slots that lives for the whole process, and gives it back
//! when its future is dropped. Every poll stores when it began and on which
//! thread in the slot, and makes the call the thread's current one, so a
//! call first polled inside another's poll records that one as its parent:
//! nested calls form a tree, and a spawned task's outermost call is a root.
//!
//! Nothing is locked on the way and nothing is allocated per call: a
//! thread keeps a small stack of free slots of its own, filled from (and
//! emptied into) a shared pool a few dozen at a time. A reader scans the
//! table without a lock, and tells a slot's call from the next one in the
//! same slot by its generation, read before and after the fields (a
//! seqlock): a call that ended or was replaced meanwhile is left out. The
//! slots never go away, so a reader (the crash handler among them) can
//! never touch freed memory.

mod slot;

/// The atomics and mutex the protocol of [`slot`] runs on: std's here,
/// loom's in the model (`manhole/tests/loom_inflight.rs`).
mod sync {
    pub(super) use std::sync::atomic::{
        fence, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize, Ordering,
    };
    pub(super) use std::sync::{Mutex, MutexGuard};
}

use super::clock::{now_ns, tid};
use crate::instrument::calls::CallStats;
use crate::options::DEFAULT_SLOW_POLL;
use slot::{LocalSlots, Pool, Slot, Started, ARGS_BYTES, ARGS_WORDS};
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicPtr, AtomicU64, AtomicUsize,
    Ordering::{Acquire, Relaxed, Release},
};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

/// Slots per chunk of the table; chunks are allocated as the number of
/// calls in flight at once grows, and never freed.
const CHUNK: usize = 1024;
/// Chunks at most: a million calls in flight at once. A call past that is
/// counted in `stats` but not shown in `tasks`.
const CHUNKS: usize = 1024;
/// Free slots a thread keeps for itself; it trades half of them with the
/// shared pool when it runs out or over.
const LOCAL: usize = 64;

/// The installed manhole's `slow_poll`, in nanoseconds: a poll's end is
/// compared with it to count slow polls in `stats`, without reaching for
/// the installed options on every poll. `install` sets it, `uninstall`
/// puts the default back.
// The default, 100 ms, fits a u64 of nanoseconds many times over.
static SLOW_POLL_NS: AtomicU64 = AtomicU64::new(DEFAULT_SLOW_POLL.as_nanos() as u64);

/// Counts, from now on, the polls longer than `slow_poll` in `stats`.
pub(crate) fn count_polls_longer_than(slow_poll: Duration) {
    let nanos = u64::try_from(slow_poll.as_nanos()).unwrap_or(u64::MAX);
    SLOW_POLL_NS.store(nanos, Relaxed);
}

/// A fresh slot's value, copied once per slot of a new chunk.
#[allow(clippy::declare_interior_mutable_const)]
const FREE_SLOT: Slot = Slot {
    generation: AtomicU64::new(0),
    name_start: AtomicPtr::new(std::ptr::null_mut()),
    name_len: AtomicUsize::new(0),
    first_poll_ns: AtomicU64::new(0),
    poll_started_ns: AtomicU64::new(0),
    thread: AtomicI32::new(0),
    parent: AtomicUsize::new(0),
    args_len: AtomicUsize::new(0),
    args: [const { AtomicU64::new(0) }; ARGS_WORDS],
};

/// The `Debug` text of a call's arguments under `inspect(calls, args)`
/// (`id=7, user="ann"`), written into a fixed buffer when the call starts:
/// at most 96 bytes, a longer text cut with `…`. No allocation.
#[derive(Clone, Copy)]
pub struct CallArgs {
    text: [u8; ARGS_BYTES],
    len: u8,
}

impl CallArgs {
    /// Formats `args`, cutting what does not fit.
    pub fn new(args: std::fmt::Arguments<'_>) -> CallArgs {
        struct Cut {
            text: [u8; ARGS_BYTES],
            len: usize,
            full: bool,
        }
        impl std::fmt::Write for Cut {
            fn write_str(&mut self, part: &str) -> std::fmt::Result {
                let room = ARGS_BYTES - self.len;
                let taken = part.len().min(room);
                self.text[self.len..self.len + taken].copy_from_slice(&part.as_bytes()[..taken]);
                self.len += taken;
                if taken < part.len() {
                    self.full = true;
                    // Nothing more is needed: stop formatting.
                    return Err(std::fmt::Error);
                }
                Ok(())
            }
        }
        let mut cut = Cut {
            text: [0; ARGS_BYTES],
            len: 0,
            full: false,
        };
        let _ = std::fmt::write(&mut cut, args);
        if cut.full {
            const ELLIPSIS: &[u8] = "…".as_bytes();
            // Back to a character's start, leaving room for the ellipsis.
            let mut end = ARGS_BYTES - ELLIPSIS.len();
            while end > 0 && cut.text[end] & 0xC0 == 0x80 {
                end -= 1;
            }
            cut.text[end..end + ELLIPSIS.len()].copy_from_slice(ELLIPSIS);
            cut.len = end + ELLIPSIS.len();
        }
        CallArgs {
            text: cut.text,
            len: u8::try_from(cut.len).unwrap_or(0),
        }
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        let bytes = &self.text[..usize::from(self.len)];
        // Cut at a character's start, so always UTF-8; a torn read
        // elsewhere would show as nothing rather than as garbage.
        std::str::from_utf8(bytes).unwrap_or("")
    }
}

impl std::fmt::Debug for CallArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an instrumented future carries of its call's arguments: nothing
/// ([`NoArgs`]), or their text ([`CallArgs`]).
pub trait ArgsOfCall {
    #[doc(hidden)]
    fn call_args(&self) -> Option<&CallArgs>;
}

/// A call whose arguments are not shown: costs nothing in its future.
#[derive(Clone, Copy)]
pub struct NoArgs;

impl ArgsOfCall for NoArgs {
    #[inline]
    fn call_args(&self) -> Option<&CallArgs> {
        None
    }
}

impl ArgsOfCall for CallArgs {
    #[inline]
    fn call_args(&self) -> Option<&CallArgs> {
        Some(self)
    }
}

static TABLE: [AtomicPtr<[Slot; CHUNK]>; CHUNKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS];
/// Slots handed out at least once: the table's used length.
static USED: AtomicUsize = AtomicUsize::new(0);
/// Free slots no thread holds.
static POOL: Pool = Mutex::new(Vec::new());

/// The slot at `index`, once its chunk exists.
fn slot(index: usize) -> Option<&'static Slot> {
    let chunk = TABLE.get(index / CHUNK)?.load(Acquire);
    // SAFETY: a chunk, once published, is never freed or moved.
    (!chunk.is_null()).then(|| unsafe { &(*chunk)[index % CHUNK] })
}

/// The id of the call in slot `index` in its `generation`: unique while
/// the process lives (the generation's high bits set it apart from the
/// next call in the same slot), never 0.
fn id(index: usize, generation: u64) -> usize {
    ((generation as usize) << 21) ^ (index + 1)
}

fn pool() -> MutexGuard<'static, Vec<u32>> {
    slot::lock(&POOL)
}

/// A thread's own free slots, which it gives back when it ends.
struct ThreadSlots(LocalSlots<LOCAL>);

impl Drop for ThreadSlots {
    fn drop(&mut self) {
        self.0.give_all(&POOL);
    }
}

/// `count` never-used slots from the end of the table, their chunk
/// allocated if it is the first use; `None` once the table is full.
fn fresh_slots(count: usize) -> Option<std::ops::Range<u32>> {
    // Under the pool's lock, so that one thread at a time grows the table.
    let _pool = pool();
    let first = USED.load(Relaxed);
    let end = (first + count).min(CHUNK * CHUNKS);
    if first >= end {
        return None;
    }
    for chunk in &TABLE[first / CHUNK..=(end - 1) / CHUNK] {
        if chunk.load(Relaxed).is_null() {
            let slots: Box<[Slot; CHUNK]> = Box::new([FREE_SLOT; CHUNK]);
            chunk.store(Box::into_raw(slots), Release);
        }
    }
    USED.store(end, Release);
    Some(u32::try_from(first).ok()?..u32::try_from(end).ok()?)
}

thread_local! {
    /// The call being polled on this thread, if any (its id).
    static CURRENT: Cell<usize> = const { Cell::new(0) };
    static FREE_SLOTS: RefCell<ThreadSlots> =
        const { RefCell::new(ThreadSlots(LocalSlots::EMPTY)) };
}

/// A free slot's index, `None` when the table is full (or this thread is
/// ending and the pool is all there is).
fn claim() -> Option<u32> {
    FREE_SLOTS
        .try_with(|slots| slots.borrow_mut().0.take(&POOL, &mut fresh_slots))
        .unwrap_or_else(|_| {
            let from_pool = pool().pop();
            from_pool.or_else(|| fresh_slots(1).map(|range| range.start))
        })
}

fn release(index: u32) {
    if FREE_SLOTS
        .try_with(|slots| slots.borrow_mut().0.give(index, &POOL))
        .is_err()
    {
        pool().push(index);
    }
}

thread_local! {
    /// The pool's lock, held by the thread that forks, across the fork.
    static HELD_ACROSS_FORK: RefCell<Option<MutexGuard<'static, Vec<u32>>>> =
        const { RefCell::new(None) };
}

/// Makes `fork` take the pool's lock first and give it back after, in the
/// parent and in the child: a lock held by another thread at the fork
/// would otherwise stay held for good in the child, whose next thread to
/// run out of free slots would hang.
///
/// Registered by whichever call gets there first, without making the
/// others wait: a `Once` would be seen mid-run by a child forked meanwhile,
/// and wait for good.
fn hold_pool_across_fork() {
    static REGISTERED_HANDLERS: AtomicBool = AtomicBool::new(false);
    if REGISTERED_HANDLERS.load(Relaxed) || REGISTERED_HANDLERS.swap(true, Relaxed) {
        return;
    }
    // SAFETY: the handlers are plain `extern "C" fn()` that never unwind;
    // pthread_atfork only records them.
    let status =
        unsafe { libc::pthread_atfork(Some(lock_pool), Some(unlock_pool), Some(unlock_pool)) };
    // Without them a fork is as safe as any program's mutex across a fork;
    // nothing else to do.
    let _ = status;
}

extern "C" fn lock_pool() {
    let held = pool();
    HELD_ACROSS_FORK.with(|cell| *cell.borrow_mut() = Some(held));
}

extern "C" fn unlock_pool() {
    HELD_ACROSS_FORK.with(|cell| cell.borrow_mut().take());
}

/// An instrumented call's future: `future`, with the slot that shows it
/// in `tasks`, and its function's counters, which count its slow polls.
pub struct InFlight<F, A = NoArgs> {
    future: F,
    name: &'static str,
    stats: &'static CallStats,
    args: A,
    /// Its slot, from the first poll on (none with the table full): the
    /// slot itself, kept so that a poll does not look it up again, its
    /// index, and the generation the call holds it in.
    slot: Option<(&'static Slot, u32, u64)>,
}

impl<F, A: ArgsOfCall> InFlight<F, A> {
    pub(crate) fn new(name: &'static str, stats: &'static CallStats, args: A, future: F) -> Self {
        stats.mark_async();
        InFlight {
            future,
            name,
            stats,
            args,
            slot: None,
        }
    }

    /// Takes a slot for this call, on its first poll.
    #[cold]
    fn start(&mut self, now: u64, parent: usize) -> Option<(&'static Slot, u32, u64)> {
        hold_pool_across_fork();
        let index = claim()?;
        let Some(slot) = slot(index as usize) else {
            release(index);
            return None;
        };
        // The name it is shown by (`get::apply` beside a `set::apply`),
        // once the registry has worked it out at install.
        let name = self.stats.shown_name().unwrap_or(self.name);
        let generation = slot.begin(&Started {
            name,
            first_poll_ns: now,
            parent,
            args: self.args.call_args().map(|args| (args.text, args.len)),
        });
        Some((slot, index, generation))
    }
}

/// Ends a poll, on return or unwind: the call is no longer polled, the
/// thread's current call is the one before, and a poll longer than
/// `slow_poll` is counted.
struct Polling {
    slot: Option<&'static Slot>,
    stats: &'static CallStats,
    started: u64,
    previous: usize,
}

impl Drop for Polling {
    fn drop(&mut self) {
        if let Some(slot) = self.slot {
            slot.poll_started_ns.store(0, Relaxed);
        }
        CURRENT.with(|current| current.set(self.previous));
        if now_ns().saturating_sub(self.started) > SLOW_POLL_NS.load(Relaxed) {
            self.stats.count_slow_poll();
        }
    }
}

impl<F: Future, A: ArgsOfCall> Future for InFlight<F, A> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: nothing is moved out of `self`: `future` is polled in
        // place, pinned as `self` is.
        let this = unsafe { self.get_unchecked_mut() };
        let now = now_ns();
        let tid = tid();
        let previous = CURRENT.with(Cell::get);
        if this.slot.is_none() {
            this.slot = this.start(now, previous);
        }
        if let Some((slot, index, generation)) = this.slot {
            slot.thread.store(tid, Relaxed);
            slot.poll_started_ns.store(now, Relaxed);
            CURRENT.with(|current| current.set(id(index as usize, generation)));
        }
        let _polling = Polling {
            slot: this.slot.map(|(slot, ..)| slot),
            stats: this.stats,
            started: now,
            previous,
        };
        // SAFETY: `future` is never moved: see above.
        unsafe { Pin::new_unchecked(&mut this.future) }.poll(cx)
    }
}

impl<F, A> Drop for InFlight<F, A> {
    fn drop(&mut self) {
        if let Some((slot, index, generation)) = self.slot {
            slot.end(generation);
            release(index);
        }
    }
}

/// One in-flight call as read at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub(crate) id: usize,
    pub(crate) parent: usize,
    pub(crate) name: &'static str,
    pub(crate) age: Duration,
    /// The thread and how long the current poll has run, while polled.
    pub(crate) polling: Option<(i32, Duration)>,
    /// Whether the current poll has run past `slow_poll`.
    pub(crate) blocking: bool,
    /// The coarse clock at the first poll and at the current poll's start
    /// (0 while not polled): what tells one call, or one poll, from the
    /// next at the same address.
    pub(crate) first_poll_ns: u64,
    pub(crate) poll_started_ns: u64,
    /// Its arguments' text, under `inspect(calls, args)`.
    pub(crate) args: Option<CallArgs>,
}

impl Call {
    /// `name`, or `name(args)` when its arguments are shown.
    pub(crate) fn label(&self) -> String {
        match &self.args {
            Some(args) => format!("{}({})", self.name, args.as_str()),
            None => self.name.to_owned(),
        }
    }
}

/// Whether the call `id` (as [`calls`] gave it) is still in flight: its
/// slot still holds the generation the call took it in. One load, for the
/// watchdog's looks at the calls it has reported.
pub(crate) fn still_in_flight(id: usize) -> bool {
    let index = (id & ((1 << 21) - 1)).wrapping_sub(1);
    let generation = (id >> 21) as u64;
    slot(index).is_some_and(|slot| slot.generation.load(Acquire) == generation)
}

/// Every in-flight call; a poll longer than `slow_poll` is blocking its
/// worker.
pub(crate) fn calls(slow_poll: Duration) -> Vec<Call> {
    read(slow_poll, false)
}

/// The in-flight calls being polled now, and nothing of the others: what
/// the watchdog looks at several times per threshold, without copying ten
/// thousand waiting calls each time.
pub(crate) fn polled(slow_poll: Duration) -> Vec<Call> {
    read(slow_poll, true)
}

/// One in-flight call's fields, read consistently: `None` for a free slot,
/// or one whose call ended or changed while it was read.
struct Seen {
    id: usize,
    parent: usize,
    name: &'static str,
    first_poll_ns: u64,
    poll_started_ns: u64,
    thread: i32,
    args: Option<CallArgs>,
}

/// Every in-flight call in the table (or only those being polled), without
/// a lock or an allocation.
fn each_seen(only_polled: bool, each: &mut dyn FnMut(Seen)) {
    let used = USED.load(Acquire);
    for index in 0..used {
        let Some(slot) = slot(index) else {
            break;
        };
        let Some(seen) = slot.read(only_polled) else {
            continue;
        };
        let started = seen.started;
        each(Seen {
            id: id(index, seen.generation),
            parent: started.parent,
            name: started.name,
            first_poll_ns: started.first_poll_ns,
            poll_started_ns: seen.poll_started_ns,
            thread: seen.thread,
            args: started.args.map(|(text, len)| CallArgs { text, len }),
        });
    }
}

fn read(slow_poll: Duration, only_polled: bool) -> Vec<Call> {
    let now = now_ns();
    let since = |ns: u64| Duration::from_nanos(now.saturating_sub(ns));
    let mut calls = Vec::new();
    each_seen(only_polled, &mut |seen| {
        let started = seen.poll_started_ns;
        if only_polled && started == 0 {
            return;
        }
        let polling = (started != 0).then(|| (seen.thread, since(started)));
        calls.push(Call {
            id: seen.id,
            parent: seen.parent,
            name: seen.name,
            age: since(seen.first_poll_ns),
            polling,
            blocking: polling.is_some_and(|(_, poll)| poll > slow_poll),
            first_poll_ns: seen.first_poll_ns,
            poll_started_ns: started,
            args: seen.args,
        });
    });
    calls
}

/// One in-flight call as a crash handler reads it.
pub(crate) struct CrashView {
    pub(crate) id: usize,
    pub(crate) parent: usize,
    pub(crate) name: &'static str,
    pub(crate) age_ns: u64,
    /// The polling thread and how long its poll has run, while polled.
    pub(crate) polling: Option<(i32, u64)>,
    pub(crate) args: Option<CallArgs>,
}

/// Every in-flight call, for a crash report: async-signal-safe (no lock,
/// no allocation).
pub(crate) fn each_in_crash(each: &mut dyn FnMut(CrashView)) {
    let now = now_ns();
    each_seen(false, &mut |seen| {
        let started = seen.poll_started_ns;
        each(CrashView {
            id: seen.id,
            parent: seen.parent,
            name: seen.name,
            age_ns: now.saturating_sub(seen.first_poll_ns),
            polling: (started != 0).then(|| (seen.thread, now.saturating_sub(started))),
            args: seen.args,
        });
    });
}

/// The in-flight calls as a forest, oldest roots first, each node's
/// children oldest first; only roots at least `older_than` old (with all
/// their children). A call whose parent has ended is a root.
pub(crate) fn forest(calls: &[Call], older_than: Duration) -> Vec<Tree> {
    let ids: HashSet<usize> = calls.iter().map(|call| call.id).collect();
    let mut children: HashMap<usize, Vec<&Call>> = HashMap::new();
    let mut roots = Vec::new();
    for call in calls {
        if call.parent != 0 && call.parent != call.id && ids.contains(&call.parent) {
            children.entry(call.parent).or_default().push(call);
        } else {
            roots.push(call);
        }
    }
    fn grow(
        call: &Call,
        children: &std::collections::HashMap<usize, Vec<&Call>>,
        depth: usize,
    ) -> Tree {
        let mut below: Vec<&Call> = children.get(&call.id).cloned().unwrap_or_default();
        below.sort_by_key(|call| std::cmp::Reverse(call.age));
        Tree {
            call: call.clone(),
            // A cycle cannot form from live parents, but a reused address
            // could make one: depth bounds the walk.
            children: if depth < 64 {
                below
                    .iter()
                    .map(|child| grow(child, children, depth + 1))
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
    roots.retain(|root| root.age >= older_than);
    roots.sort_by_key(|call| std::cmp::Reverse(call.age));
    roots.iter().map(|root| grow(root, &children, 0)).collect()
}

/// One call and the calls it polled first.
#[derive(Debug, Clone)]
pub(crate) struct Tree {
    pub(crate) call: Call,
    pub(crate) children: Vec<Tree>,
}

fn millis(duration: Duration) -> f64 {
    (duration.as_secs_f64() * 10_000.0).round() / 10.0
}

/// `{"name","args","age_ms","state","thread","poll_ms","blocking","children"}`,
/// written straight out: ten thousand calls in flight are a megabyte of
/// JSON, which would cost as much again built as a `Value` first.
impl serde::Serialize for Tree {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let call = &self.call;
        let mut node = serializer.serialize_struct("Tree", 8)?;
        node.serialize_field("name", call.name)?;
        node.serialize_field("args", &call.args.as_ref().map(CallArgs::as_str))?;
        node.serialize_field("age_ms", &millis(call.age))?;
        let state = if call.polling.is_some() {
            "polling"
        } else {
            "waiting"
        };
        node.serialize_field("state", state)?;
        node.serialize_field("thread", &call.polling.map(|(thread, _)| thread))?;
        node.serialize_field("poll_ms", &call.polling.map(|(_, poll)| millis(poll)))?;
        node.serialize_field("blocking", &call.blocking)?;
        node.serialize_field("children", &self.children)?;
        node.end()
    }
}

impl Tree {
    /// The JSON form, as a value.
    #[cfg(test)]
    pub(crate) fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_default()
    }

    /// Indented lines, two spaces a level.
    pub(crate) fn render(&self, depth: usize, text: &mut String) {
        use std::fmt::Write as _;
        let call = &self.call;
        let _ = write!(
            text,
            "{:indent$}{}  {}  ",
            "",
            call.label(),
            human(call.age),
            indent = depth * 2
        );
        match call.polling {
            Some((thread, poll)) => {
                let _ = write!(text, "polling on thread {thread} for {}", human(poll));
                if call.blocking {
                    text.push_str(": blocking its worker");
                }
            }
            None => text.push_str("waiting"),
        }
        text.push('\n');
        for child in &self.children {
            child.render(depth + 1, text);
        }
    }
}

/// `850 ms`, `12.3 s`, `4m05s`.
pub(crate) fn human(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds < 1.0 {
        format!("{} ms", duration.as_millis())
    } else if seconds < 60.0 {
        format!("{seconds:.1} s")
    } else {
        let whole = duration.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: usize, parent: usize, name: &'static str, age_ms: u64) -> Call {
        Call {
            id,
            parent,
            name,
            age: Duration::from_millis(age_ms),
            polling: None,
            blocking: false,
            first_poll_ns: 0,
            poll_started_ns: 0,
            args: None,
        }
    }

    #[test]
    fn calls_nest_under_live_parents_oldest_first() {
        let calls = [
            call(1, 0, "young_root", 10),
            call(2, 0, "old_root", 5000),
            call(3, 2, "child_b", 100),
            call(4, 2, "child_a", 4000),
            call(5, 4, "grandchild", 50),
            // Its parent has ended: a root of its own.
            call(6, 99, "orphan", 20),
        ];
        let forest = forest(&calls, Duration::ZERO);
        let names: Vec<&str> = forest.iter().map(|tree| tree.call.name).collect();
        assert_eq!(names, ["old_root", "orphan", "young_root"]);
        let old = &forest[0];
        let children: Vec<&str> = old.children.iter().map(|tree| tree.call.name).collect();
        assert_eq!(children, ["child_a", "child_b"]);
        assert_eq!(old.children[0].children[0].call.name, "grandchild");

        let mut text = String::new();
        old.render(0, &mut text);
        assert_eq!(
            text,
            "old_root  5.0 s  waiting\n  child_a  4.0 s  waiting\n    grandchild  50 ms  waiting\n  child_b  100 ms  waiting\n"
        );
        let json = old.to_json();
        assert_eq!(json["state"], "waiting");
        assert_eq!(json["thread"], serde_json::Value::Null);
        assert_eq!(json["children"][0]["children"][0]["name"], "grandchild");

        let old_only = forest_names(&calls, Duration::from_secs(1));
        assert_eq!(old_only, ["old_root"]);
    }

    fn forest_names(calls: &[Call], older_than: Duration) -> Vec<&'static str> {
        forest(calls, older_than)
            .iter()
            .map(|tree| tree.call.name)
            .collect()
    }

    #[test]
    fn arguments_are_kept_whole_or_cut_with_an_ellipsis() {
        let short = CallArgs::new(format_args!("id={:?}, user={:?}", 7, "ann"));
        assert_eq!(short.as_str(), "id=7, user=\"ann\"");
        let long = CallArgs::new(format_args!("text={:?}", "é".repeat(100)));
        assert!(long.as_str().ends_with('…'), "{}", long.as_str());
        assert!(long.as_str().len() <= ARGS_BYTES);
        assert!(long.as_str().starts_with("text=\"éé"));

        static STATS: CallStats = CallStats::new();
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
        let mut context = Context::from_waker(&waker);
        let mut future = Box::pin(InFlight::new(
            "with_args",
            &STATS,
            short,
            std::future::pending::<()>(),
        ));
        assert!(future.as_mut().poll(&mut context).is_pending());
        let found: Vec<Call> = calls(Duration::from_millis(100))
            .into_iter()
            .filter(|call| call.name == "with_args")
            .collect();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].label(), "with_args(id=7, user=\"ann\")");
        let tree = &forest(&found, Duration::ZERO)[0];
        assert_eq!(tree.to_json()["args"], "id=7, user=\"ann\"");
    }

    #[test]
    fn a_long_poll_blocks_its_worker() {
        let mut blocked = call(1, 0, "compact", 1200);
        blocked.polling = Some((42, Duration::from_millis(1200)));
        blocked.blocking = true;
        let tree = &forest(&[blocked], Duration::ZERO)[0];
        let json = tree.to_json();
        assert_eq!(json["state"], "polling");
        assert_eq!(json["thread"], 42);
        assert_eq!(json["poll_ms"], 1200.0);
        assert_eq!(json["blocking"], true);
        let mut text = String::new();
        tree.render(0, &mut text);
        assert_eq!(
            text,
            "compact  1.2 s  polling on thread 42 for 1.2 s: blocking its worker\n"
        );
    }

    #[test]
    fn a_followed_future_is_listed_while_it_lives() {
        let name = "listed_while_it_lives";
        let listed = || {
            calls(Duration::from_millis(100))
                .iter()
                .filter(|call| call.name == name)
                .count()
        };
        static STATS: CallStats = CallStats::new();
        let mut future = Box::pin(InFlight::new(
            name,
            &STATS,
            NoArgs,
            std::future::pending::<()>(),
        ));
        assert_eq!(listed(), 0, "listed before its first poll");
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
        let mut context = Context::from_waker(&waker);
        assert!(future.as_mut().poll(&mut context).is_pending());
        let found: Vec<Call> = calls(Duration::from_millis(100))
            .into_iter()
            .filter(|call| call.name == name)
            .collect();
        assert_eq!(found.len(), 1);
        assert!(found[0].polling.is_none(), "not polled now");
        drop(future);
        assert_eq!(listed(), 0, "listed after its drop");
    }

    #[test]
    fn calls_started_and_dropped_on_other_threads_are_listed_exactly_once() {
        static STATS: CallStats = CallStats::new();
        const NAME: &str = "handed_between_threads";
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let listed = || {
            let calls = calls(Duration::from_millis(100));
            let ours: Vec<&Call> = calls.iter().filter(|call| call.name == NAME).collect();
            let ids: HashSet<usize> = ours.iter().map(|call| call.id).collect();
            assert_eq!(ids.len(), ours.len(), "a call listed twice");
            ours.len()
        };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A reader scans all the while: it must never see more than were
        // started, nor a torn name.
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    for call in calls(Duration::from_millis(100)) {
                        assert!(!call.name.is_empty() && call.name.is_ascii());
                    }
                }
            })
        };
        let (sender, receiver) = std::sync::mpsc::channel();
        let starters: Vec<_> = (0..4)
            .map(|_| {
                let sender = sender.clone();
                std::thread::spawn(move || {
                    let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
                    let mut context = Context::from_waker(&waker);
                    for _ in 0..300 {
                        let mut future = Box::pin(InFlight::new(
                            NAME,
                            &STATS,
                            NoArgs,
                            std::future::pending::<()>(),
                        ));
                        assert!(future.as_mut().poll(&mut context).is_pending());
                        sender.send(future).unwrap();
                    }
                })
            })
            .collect();
        drop(sender);
        for starter in starters {
            starter.join().unwrap();
        }
        let mut futures: Vec<_> = receiver.iter().collect();
        assert_eq!(listed(), 1200);
        // Ended on another thread than the one that started them.
        let ender = std::thread::spawn(move || {
            futures.truncate(500);
            futures
        });
        let futures = ender.join().unwrap();
        assert_eq!(listed(), 500);
        drop(futures);
        assert_eq!(listed(), 0);
        stop.store(true, Relaxed);
        reader.join().unwrap();
    }

    /// What the loom model (`tests/loom_inflight.rs`) cannot model: a
    /// reader that may stop a writer at any instruction, as the crash
    /// handler does on the writer's own thread. Ten million starts and ends
    /// of calls on the real table, on two threads, with a reader spinning
    /// over the table all the while: every call of ours that it reports
    /// has all its fields from one call.
    #[test]
    fn a_reader_never_sees_two_calls_mixed() {
        const NAMES: [&str; 2] = ["stress_call_even", "stress_call_odd_"];
        const STARTS: u64 = 5_000_000;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let reader = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut checked = 0u64;
                while !stop.load(Relaxed) {
                    each_seen(false, &mut |seen| {
                        let Some(which) = NAMES.iter().position(|name| *name == seen.name) else {
                            return;
                        };
                        let marker = b'a' + which as u8;
                        let args = seen.args.expect("our calls have arguments");
                        // Every field says which call it belongs to: the
                        // thread by its parity, the round by its value.
                        let call = seen.first_poll_ns;
                        let len = usize::from(args.len);
                        assert!(
                            call % 2 == which as u64
                                && seen.parent as u64 == call + 1
                                && len == 40 + which
                                && args.text[..8] == call.to_ne_bytes()
                                && args.text[8..len].iter().all(|byte| *byte == marker),
                            "fields of two calls mixed"
                        );
                        checked += 1;
                    });
                }
                checked
            })
        };
        let writers: Vec<_> = (0..2)
            .map(|which| {
                std::thread::spawn(move || {
                    let mut text = [0u8; ARGS_BYTES];
                    text.fill(b'a' + which as u8);
                    for round in 0..STARTS {
                        let Some(index) = claim() else { continue };
                        let slot = slot(index as usize).expect("a claimed slot exists");
                        let call = round * 2 + which as u64;
                        text[..8].copy_from_slice(&call.to_ne_bytes());
                        let generation = slot.begin(&Started {
                            name: NAMES[which],
                            first_poll_ns: call,
                            parent: call as usize + 1,
                            args: Some((text, 40 + which as u8)),
                        });
                        slot.end(generation);
                        release(index);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        stop.store(true, Relaxed);
        let checked = reader.join().unwrap();
        assert!(checked > 0, "the reader never saw a call");
    }

    #[test]
    fn a_fork_amid_calls_leaves_the_child_free_to_follow_calls() {
        static STATS: CallStats = CallStats::new();
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
        let poll_once = move || {
            let mut context = Context::from_waker(&waker);
            let mut future = Box::pin(InFlight::new(
                "forked_amid",
                &STATS,
                NoArgs,
                std::future::pending::<()>(),
            ));
            let _ = future.as_mut().poll(&mut context);
        };
        let poll_once = std::sync::Arc::new(poll_once);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Another thread takes and gives back the shard locks all the time.
        let churn = {
            let (stop, poll_once) = (stop.clone(), poll_once.clone());
            std::thread::spawn(move || {
                while !stop.load(Relaxed) {
                    poll_once();
                }
            })
        };
        for _ in 0..50 {
            // SAFETY: the child only polls a future, reads the registry
            // and leaves with `_exit`, touching nothing the fork left
            // half-done: the shard locks are handed over by the handlers.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                poll_once();
                let listed = calls(Duration::from_millis(100)).len();
                // SAFETY: `_exit` ends the child without running the
                // parent's exit handlers.
                unsafe { libc::_exit(i32::from(listed > 1_000_000)) };
            }
            assert!(pid > 0, "fork failed");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            let mut status = 0;
            loop {
                // SAFETY: waits for our own child, writing its status.
                let done = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
                if done == pid {
                    break;
                }
                if std::time::Instant::now() > deadline {
                    // SAFETY: our own child, stuck: ended, then reaped.
                    unsafe {
                        libc::kill(pid, libc::SIGKILL);
                        libc::waitpid(pid, &mut status, 0);
                    }
                    stop.store(true, Relaxed);
                    panic!("the forked child hung on a shard lock");
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
        }
        stop.store(true, Relaxed);
        churn.join().unwrap();
    }
}
