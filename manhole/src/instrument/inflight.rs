//! The in-flight `async fn`s under `#[inspect(calls)]`: what `tasks` shows.
//!
//! Each instrumented call's future carries its own [`Node`], inline, so
//! following a call allocates nothing: the node is registered (its address
//! put in one of a few sharded lists) on the first poll, when the future is
//! pinned and its address is final, and taken out when the future is
//! dropped, before its memory can go. Every poll stores when it began and on
//! which thread, and makes its node the thread's current one, so a call
//! first polled inside another's poll records that one as its parent: nested
//! calls form a tree, and a spawned task's outermost call is a root.
//!
//! A poll touches only its own node's atomics and a thread-local. A call's
//! start and end take one shard's lock for a push or a swap-remove; a
//! reader takes each shard's lock in turn just long enough to copy its
//! nodes' atomics, so no lock is held while the tree is built or rendered.

use super::clock::{now_ns, tid};
use crate::instrument::calls::CallStats;
use crate::options::DEFAULT_SLOW_POLL;
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::marker::PhantomPinned;
use std::pin::Pin;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, Once};
use std::task::{Context, Poll};
use std::time::Duration;

const SHARDS: usize = 16;

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

/// The addresses of the registered nodes, by shard.
static REGISTERED: [Mutex<Vec<usize>>; SHARDS] = [const { Mutex::new(Vec::new()) }; SHARDS];

thread_local! {
    /// The node being polled on this thread, if any (its address).
    static CURRENT: Cell<usize> = const { Cell::new(0) };
}

fn lock(shard: usize) -> MutexGuard<'static, Vec<usize>> {
    REGISTERED[shard]
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

thread_local! {
    /// Every shard's lock, held by the thread that forks, across the fork.
    static HELD_ACROSS_FORK: RefCell<Vec<MutexGuard<'static, Vec<usize>>>> =
        const { RefCell::new(Vec::new()) };
}

/// Makes `fork` take every shard's lock first and give them back after, in
/// the parent and in the child: a lock held by another thread at the fork
/// would otherwise stay held for good in the child, whose next
/// instrumented call on that shard would hang.
fn hold_shards_across_fork() {
    static REGISTERED_HANDLERS: Once = Once::new();
    REGISTERED_HANDLERS.call_once(|| {
        // SAFETY: the handlers are plain `extern "C" fn()` that never
        // unwind; pthread_atfork only records them.
        let status = unsafe {
            libc::pthread_atfork(
                Some(lock_all_shards),
                Some(unlock_all_shards),
                Some(unlock_all_shards),
            )
        };
        // Without them a fork is as safe as any program's mutex across a
        // fork; nothing else to do.
        let _ = status;
    });
}

extern "C" fn lock_all_shards() {
    let held: Vec<_> = (0..SHARDS).map(lock).collect();
    HELD_ACROSS_FORK.with(|cell| *cell.borrow_mut() = held);
}

extern "C" fn unlock_all_shards() {
    HELD_ACROSS_FORK.with(|cell| cell.borrow_mut().clear());
}

/// One in-flight call, inside its future.
struct Node {
    name: &'static str,
    first_poll_ns: AtomicU64,
    poll_started_ns: AtomicU64,
    thread: AtomicI32,
    parent: AtomicUsize,
    /// Where its address sits in its shard's list, while registered.
    slot: AtomicUsize,
    /// Its shard, plus one; 0 while not registered.
    shard: AtomicUsize,
}

/// An instrumented call's future: `future`, with the node that shows it
/// in `tasks`, and its function's counters, which count its slow polls.
pub struct InFlight<F> {
    future: F,
    node: Node,
    stats: &'static CallStats,
    _pinned: PhantomPinned,
}

impl<F> InFlight<F> {
    pub(crate) fn new(name: &'static str, stats: &'static CallStats, future: F) -> Self {
        stats.mark_async();
        InFlight {
            future,
            stats,
            node: Node {
                name,
                first_poll_ns: AtomicU64::new(0),
                poll_started_ns: AtomicU64::new(0),
                thread: AtomicI32::new(0),
                parent: AtomicUsize::new(0),
                slot: AtomicUsize::new(0),
                shard: AtomicUsize::new(0),
            },
            _pinned: PhantomPinned,
        }
    }
}

/// Ends a poll, on return or unwind: the node is no longer polled, the
/// thread's current node is the one before, and a poll longer than
/// `slow_poll` is counted.
struct Polling<'a> {
    node: &'a Node,
    stats: &'static CallStats,
    started: u64,
    previous: usize,
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.node.poll_started_ns.store(0, Relaxed);
        CURRENT.with(|current| current.set(self.previous));
        if now_ns().saturating_sub(self.started) > SLOW_POLL_NS.load(Relaxed) {
            self.stats.count_slow_poll();
        }
    }
}

impl<F: Future> Future for InFlight<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        // SAFETY: nothing is moved out of `self`: `future` is polled in
        // place, pinned as `self` is, and `node` stays where it is until
        // `drop`, which takes it out of the registry first.
        let this = unsafe { self.get_unchecked_mut() };
        let node = &this.node;
        let address = std::ptr::from_ref(node) as usize;
        let now = now_ns();
        let tid = tid();
        let previous = CURRENT.with(|current| current.replace(address));
        if node.shard.load(Relaxed) == 0 {
            hold_shards_across_fork();
            node.first_poll_ns.store(now, Relaxed);
            node.parent.store(previous, Relaxed);
            let shard = usize::try_from(tid).unwrap_or(0) % SHARDS;
            let mut list = lock(shard);
            node.slot.store(list.len(), Relaxed);
            list.push(address);
            node.shard.store(shard + 1, Relaxed);
        }
        node.thread.store(tid, Relaxed);
        node.poll_started_ns.store(now, Relaxed);
        let _polling = Polling {
            node,
            stats: this.stats,
            started: now,
            previous,
        };
        // SAFETY: `future` is never moved: see above.
        unsafe { Pin::new_unchecked(&mut this.future) }.poll(cx)
    }
}

impl<F> Drop for InFlight<F> {
    fn drop(&mut self) {
        let node = &self.node;
        let Some(shard) = node.shard.load(Relaxed).checked_sub(1) else {
            return;
        };
        let mut list = lock(shard);
        let address = std::ptr::from_ref(node) as usize;
        // Its slot, as kept up to date by every removal; looked for only if
        // that ever went wrong, so that a drop can never panic.
        let slot = node.slot.load(Relaxed);
        let Some(slot) = (list.get(slot) == Some(&address))
            .then_some(slot)
            .or_else(|| list.iter().position(|&listed| listed == address))
        else {
            return;
        };
        list.swap_remove(slot);
        if let Some(&moved) = list.get(slot) {
            // SAFETY: a registered node's address stays valid until its
            // future's `drop` removes it under this same lock, which we
            // hold.
            let moved = unsafe { &*(moved as *const Node) };
            moved.slot.store(slot, Relaxed);
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
}

/// Every in-flight call, read shard by shard; a poll longer than
/// `slow_poll` is blocking its worker.
pub(crate) fn calls(slow_poll: Duration) -> Vec<Call> {
    read(slow_poll, false)
}

/// The in-flight calls being polled now, and nothing of the others: what
/// the watchdog looks at several times per threshold, without copying ten
/// thousand waiting calls each time.
pub(crate) fn polled(slow_poll: Duration) -> Vec<Call> {
    read(slow_poll, true)
}

fn read(slow_poll: Duration, only_polled: bool) -> Vec<Call> {
    let now = now_ns();
    let mut calls = Vec::new();
    for shard in 0..SHARDS {
        let list = lock(shard);
        for &address in list.iter() {
            // SAFETY: as in `drop`: registered, so alive while we hold the
            // shard's lock.
            let node = unsafe { &*(address as *const Node) };
            let since = |ns: u64| Duration::from_nanos(now.saturating_sub(ns));
            let started = node.poll_started_ns.load(Relaxed);
            if only_polled && started == 0 {
                continue;
            }
            let polling = (started != 0).then(|| (node.thread.load(Relaxed), since(started)));
            let first_poll_ns = node.first_poll_ns.load(Relaxed);
            calls.push(Call {
                id: address,
                parent: node.parent.load(Relaxed),
                name: node.name,
                age: since(first_poll_ns),
                polling,
                blocking: polling.is_some_and(|(_, poll)| poll > slow_poll),
                first_poll_ns,
                poll_started_ns: started,
            });
        }
    }
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
}

/// Every registered call, for a crash report: async-signal-safe in
/// practice (no allocation; a shard's lock is taken only when free, never
/// waited for). Returns how many shards were skipped because their lock
/// was held, perhaps by the crashing thread itself.
pub(crate) fn each_in_crash(each: &mut dyn FnMut(CrashView)) -> usize {
    let now = now_ns();
    let mut skipped = 0;
    for shard in &REGISTERED {
        let list = match shard.try_lock() {
            Ok(list) => list,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                skipped += 1;
                continue;
            }
        };
        for &address in list.iter() {
            // SAFETY: as in `calls`: registered, so alive while we hold the
            // shard's lock.
            let node = unsafe { &*(address as *const Node) };
            let started = node.poll_started_ns.load(Relaxed);
            each(CrashView {
                id: address,
                parent: node.parent.load(Relaxed),
                name: node.name,
                age_ns: now.saturating_sub(node.first_poll_ns.load(Relaxed)),
                polling: (started != 0)
                    .then(|| (node.thread.load(Relaxed), now.saturating_sub(started))),
            });
        }
    }
    skipped
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

/// `{"name","age_ms","state","thread","poll_ms","blocking","children"}`,
/// written straight out: ten thousand calls in flight are a megabyte of
/// JSON, which would cost as much again built as a `Value` first.
impl serde::Serialize for Tree {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let call = &self.call;
        let mut node = serializer.serialize_struct("Tree", 7)?;
        node.serialize_field("name", call.name)?;
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
            call.name,
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
        let mut future = Box::pin(InFlight::new(name, &STATS, std::future::pending::<()>()));
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
