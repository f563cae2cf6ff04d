//! Every thread of the process, with its name, state and frames.
//!
//! Threads are listed from `/proc/self/task`; each one's name and state
//! come from its `stat` file. The calling thread walks its
//! own stack; every other thread is asked for its raw return addresses by
//! the stack signal (see [`crate::capture`]), within a deadline. The
//! addresses are symbolised here, outside any signal handler, with
//! [`backtrace`]: demangled names without the hash, `file:line` where debug
//! info has it, and inlined frames expanded. Each address is resolved once
//! per dump, however many threads share it.

use crate::capture::symbols;
pub use crate::capture::symbols::Frame;
pub(crate) use crate::capture::symbols::{
    repetition_at, trim_below_entry, write_frames, write_frames_from, Symbols,
};
use crate::capture::{self, Capture, Described, Outcome};
use crate::instrument::{inflight, registry};
use crate::options::Waits;
use crate::os::procfs::Tasks;
use crate::os::signals;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

/// A snapshot of every thread, as [`stacks()`](crate::stacks()) returns it.
///
/// Its `Display` form is what the text protocol's `stacks` command prints.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Stacks {
    /// The threads, in tid order (the main thread first).
    pub threads: Vec<ThreadStack>,
}

/// One thread of a [`Stacks`] snapshot.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct ThreadStack {
    /// The kernel's thread id.
    pub tid: i32,
    /// The thread's name, as the kernel knows it (at most 15 bytes).
    pub name: String,
    /// The scheduler state from `/proc`: `running`, `sleeping`,
    /// `disk sleep`, `stopped`, `zombie`, ...
    pub state: String,
    /// The frames, innermost first. Empty when `frames_missing` says why.
    pub frames: Vec<Frame>,
    /// Why there are no frames, when there are none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames_missing: Option<String>,
    /// How the frames were taken, when there are any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub captured_with: Option<CapturedWith>,
    /// The `#[manhole::inspect(calls)] async fn` this thread was polling
    /// when the dump was taken, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polling: Option<Polling>,
    /// The `#[manhole::inspect]` lock static this thread waits on (a
    /// `futex` wait on a word inside it), by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting_on: Option<&'static str>,
}

/// The instrumented async call a thread is inside, in a dump: the innermost
/// one when calls nest.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Polling {
    /// The function's name, as `stats` and `tasks` show it.
    pub name: &'static str,
    /// How long its current poll has run, in milliseconds.
    pub for_ms: f64,
    /// Whether the poll has run long enough to be blocking its worker.
    pub blocking: bool,
}

/// How a thread's frames were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum CapturedWith {
    /// Without a signal: the thread sat in a system call, so its registers
    /// were read from `/proc/self/task/TID/syscall` and its stack copied
    /// from outside it. The thread never noticed: its call was not
    /// interrupted.
    Proc,
    /// By the stack signal, on the thread itself: the thread was running,
    /// or its frames needed a register that `/proc` does not give. A
    /// thread in a system call would see it return `EINTR`.
    Signal,
    /// The thread that asked for the dump walked its own stack.
    Itself,
}

/// Every thread of this process, with its frames, each other thread given
/// `timeout` to answer. [`crate::stacks()`] documents what it gives.
#[cfg(test)]
#[must_use]
pub(crate) fn snapshot(timeout: Duration) -> Stacks {
    let entry = snapshot as *const () as usize;
    let waits = Waits {
        stacks: timeout,
        ..Waits::default()
    };
    snapshot_unless(waits, &|| false, Some(entry)).unwrap_or(Stacks {
        threads: Vec::new(),
    })
}

/// [`snapshot`], or `None` when `abandoned` says, while the dump waits for
/// its turn, that nobody wants it any more. `entry` is the public function
/// that called it, if one did, whose frame is left out of the caller's
/// stack like this one's.
#[inline(never)]
pub(crate) fn snapshot_unless(
    waits: Waits,
    abandoned: &dyn Fn() -> bool,
    entry: Option<usize>,
) -> Option<Stacks> {
    selected_unless(waits, abandoned, entry, &|_| true)
}

/// The thread whose tid is `wanted`, or those whose name starts with it
/// (as `profile --thread` chooses), with [`snapshot_unless`]'s waits.
#[inline(never)]
pub(crate) fn snapshot_of(
    waits: Waits,
    abandoned: &dyn Fn() -> bool,
    wanted: &str,
) -> Option<Stacks> {
    let tasks = Tasks::open()?;
    let chosen: Vec<i32> = match wanted.parse::<i32>() {
        Ok(tid) => tasks
            .tids()
            .into_iter()
            .filter(|&each| each == tid)
            .collect(),
        Err(_) => tasks
            .tids()
            .into_iter()
            .filter(|&tid| {
                tasks
                    .stat(tid)
                    .is_some_and(|stat| stat.name.starts_with(wanted))
            })
            .collect(),
    };
    if chosen.is_empty() {
        return Some(Stacks {
            threads: Vec::new(),
        });
    }
    let entry = Some(snapshot_of as *const () as usize);
    selected_unless(waits, abandoned, entry, &|tid| chosen.contains(&tid))
}

/// The threads among `tids` (those still alive), for the watchdog: each
/// asleep in a system call taken quietly from `/proc`, the others by the
/// stack signal.
#[inline(never)]
pub(crate) fn threads_of(tids: &[i32], waits: Waits) -> Vec<ThreadStack> {
    selected_unless(waits, &|| false, None, &|tid| tids.contains(&tid))
        .map_or_else(Vec::new, |stacks| stacks.threads)
}

/// [`snapshot_unless`], for the threads `select` keeps.
#[inline(never)]
fn selected_unless(
    waits: Waits,
    abandoned: &dyn Fn() -> bool,
    entry: Option<usize>,
    select: &dyn Fn(i32) -> bool,
) -> Option<Stacks> {
    let turn = capture::turn_unless(abandoned)?;
    let caller = nix::unistd::gettid().as_raw();
    // Walked here, directly under `stacks`, so that trimming the walk's own
    // frames leaves the caller as frame #0.
    let walk_own = [
        Some(selected_unless as *const () as usize),
        Some(snapshot_unless as *const () as usize),
        entry,
    ];
    let own = current_addresses(&walk_own.into_iter().flatten().collect::<Vec<_>>());
    capture::learn_tail(
        &own.iter()
            .map(|&address| address as u64)
            .collect::<Vec<_>>(),
    );
    let Some(tasks) = Tasks::open() else {
        return Some(Stacks {
            threads: Vec::new(),
        });
    };
    let tids = tasks.tids();
    let others: Vec<i32> = tids
        .iter()
        .copied()
        .filter(|&tid| tid != caller && select(tid))
        .collect();
    let describe_one = |tid: i32| {
        let stack = describe(&tasks, tid)?;
        let described_as = if matches!(stack.state.as_str(), "sleeping" | "disk sleep") {
            Described::Asleep
        } else {
            Described::Running
        };
        Some((stack, described_as))
    };
    let taken: Vec<Option<(ThreadStack, Outcome)>> =
        match signals::ensure_installed(capture::on_signal) {
            Ok(signal) => capture::capture(&tasks, &others, signal, waits.stacks, &describe_one),
            Err(err) => others
                .iter()
                .map(|&tid| {
                    let (stack, _) = describe_one(tid)?;
                    Some((stack, Outcome::Missing(format!("not captured: {err}"))))
                })
                .collect(),
        };
    let mut symbols = Symbols::default();
    let mine = describe(&tasks, caller)
        .filter(|_| select(caller))
        .map(|stack| {
            let outcome = Outcome::Frames {
                addresses: own,
                truncated: false,
                how: Capture::Signal,
            };
            (stack, outcome)
        });
    let mut threads: Vec<ThreadStack> = taken
        .into_iter()
        .flatten()
        .chain(mine)
        .filter_map(|(mut stack, outcome)| {
            match outcome {
                Outcome::Frames {
                    addresses,
                    truncated,
                    how,
                } => {
                    stack.frames = symbols.frames(&addresses, stack.tid != caller);
                    stack.captured_with = Some(match (how, stack.tid == caller) {
                        (_, true) => CapturedWith::Itself,
                        (Capture::Proc, false) => CapturedWith::Proc,
                        (Capture::Signal, false) => CapturedWith::Signal,
                    });
                    if truncated {
                        stack.frames_missing = Some(format!(
                            "outer frames missing: the stack is deeper than the {} KiB copied",
                            capture::STACK_COPY / 1024
                        ));
                    }
                }
                Outcome::Missing(reason) => stack.frames_missing = Some(reason),
                Outcome::Gone => return None,
            }
            Some(stack)
        })
        .collect();
    threads.sort_by_key(|thread| thread.tid);
    if registry::any_inspected_lock() {
        for thread in threads
            .iter_mut()
            .filter(|thread| thread.state == "sleeping")
        {
            thread.waiting_on = waiting_on(&tasks, thread.tid);
        }
    }
    // The turn is given back before the in-flight calls' locks are taken,
    // so that no thread ever holds one while waiting for the other: `fork`
    // takes both, in an order that depends on which was set up first.
    drop(turn);
    // The innermost instrumented call each thread is polling: of nested
    // polls on one thread, the one begun last.
    for call in inflight::calls(waits.slow_poll) {
        let Some((tid, poll)) = call.polling else {
            continue;
        };
        if let Some(thread) = threads.iter_mut().find(|thread| thread.tid == tid) {
            let for_ms = (poll.as_secs_f64() * 10_000.0).round() / 10.0;
            if thread
                .polling
                .as_ref()
                .is_none_or(|known| for_ms < known.for_ms)
            {
                thread.polling = Some(Polling {
                    name: call.name,
                    for_ms,
                    blocking: call.blocking,
                });
            }
        }
    }
    Some(Stacks { threads })
}

/// The inspected static that `tid` waits on in `futex`, if any.
pub(crate) fn waiting_on(tasks: &Tasks, tid: i32) -> Option<&'static str> {
    let call = tasks.in_syscall(tid)?;
    (call.number == libc::SYS_futex)
        .then(|| registry::static_at(call.first_argument as usize))
        .flatten()
}

/// A thread with its name and state and no frames; `None` once it is gone.
fn describe(tasks: &Tasks, tid: i32) -> Option<ThreadStack> {
    let stat = tasks.stat(tid)?;
    Some(ThreadStack {
        tid,
        name: stat.name,
        state: stat.state.to_owned(),
        frames: Vec::new(),
        frames_missing: None,
        captured_with: None,
        polling: None,
        waiting_on: None,
    })
}

/// Every thread with its name and state, and no frames.
pub(crate) fn thread_list(tasks: &Tasks) -> Vec<ThreadStack> {
    tasks
        .tids()
        .into_iter()
        .filter_map(|tid| describe(tasks, tid))
        .collect()
}

/// Records the outermost frames of a thread of this process, which a quiet
/// capture uses to finish a stack it could not walk to the end. Loads no
/// symbols: those are read on the first request that needs them, for the
/// addresses it asks about, and let go again when unused (see
/// [`crate::capture::symbols`]). The listener thread calls this before it
/// starts accepting.
pub(crate) fn learn_own_tail() {
    // Under the dump's turn, like every walk with `backtrace`, whose lock a
    // fork meanwhile would otherwise leave held in the child.
    let _turn = capture::turn();
    let own = current_addresses(&[]);
    capture::learn_tail(
        &own.iter()
            .map(|&address| address as u64)
            .collect::<Vec<_>>(),
    );
}

/// Reads now the symbols of the calling thread's own stack (the program's
/// and the C library's), and keeps every table read for as long as the
/// guard lives.
pub(crate) fn symbols_kept() -> symbols::Kept {
    let kept = symbols::Kept::new();
    let _turn = capture::turn();
    let own = current_addresses(&[]);
    Symbols::default().frames(&own, false);
    kept
}

/// The calling thread's return addresses, without the walk's own frames:
/// those up to and including the last of the first few whose function
/// starts at one of `own` (the functions between the caller and the walk).
/// Matched by address, not by name, so that it holds in any build.
fn current_addresses(own: &[usize]) -> Vec<usize> {
    let mut addresses = Vec::new();
    let mut last_own = None;
    backtrace::trace(|frame| {
        if addresses.len() < 16 && own.contains(&(frame.symbol_address() as usize)) {
            last_own = Some(addresses.len());
        }
        addresses.push(frame.ip() as usize);
        true
    });
    if let Some(last_own) = last_own {
        addresses.drain(..=last_own);
    }
    addresses
}

impl fmt::Display for Stacks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for thread in &self.threads {
            thread.write(f, false)?;
        }
        Ok(())
    }
}

/// A snapshot, or a collapsed one, shown with the runtime's frames folded
/// (`stacks --short`): see [`short_lines`].
pub(crate) struct Short<'a, T>(pub(crate) &'a T);

impl fmt::Display for Short<'_, Stacks> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for thread in &self.0.threads {
            thread.write(f, true)?;
        }
        Ok(())
    }
}

impl fmt::Display for Short<'_, Collapsed<'_>> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f, true)
    }
}

/// The crates whose frames `--short` folds: what runs under the program's
/// own code. One line per crate, as its name appears in a path (`_`, where
/// a crate's directory may write `-`).
const RUNTIME_CRATES: &[&str] = &[
    "std",
    "core",
    "alloc",
    "tokio",
    "tokio_util",
    "futures",
    "futures_core",
    "futures_util",
    "futures_executor",
    "futures_task",
    "parking_lot",
    "parking_lot_core",
    "lock_api",
    "crossbeam",
    "crossbeam_channel",
    "crossbeam_utils",
    "crossbeam_epoch",
    "crossbeam_deque",
    "mio",
    "hyper",
    "hyper_util",
    "tower",
    "tower_service",
    "manhole",
];

/// Whether a frame belongs to the runtime: its function is in one of
/// [`RUNTIME_CRATES`] or is a C function (the C library's, the vDSO's), or
/// its file is std's own source (`/rustc/…/library/`) or a registry
/// source of one of those crates. The file tells where the name cannot: a
/// build with `debug = "line-tables-only"` names inlined frames briefly
/// (`lock`, `{closure#0}`). An unknown frame is kept: it may be the
/// program's.
pub(crate) fn is_runtime_frame(function: Option<&str>, file: Option<&str>) -> bool {
    if let Some(file) = file {
        if file.starts_with("/rustc/") && file.contains("/library/") {
            return true;
        }
        if let Some(krate) = registry_crate(file) {
            return RUNTIME_CRATES.contains(&krate.as_str());
        }
    }
    is_runtime_function(function)
}

/// The crate a registry source file belongs to:
/// `…/registry/src/INDEX/parking_lot_core-0.9.10/src/…` gives
/// `parking_lot_core`, `…/futures-util-0.3.31/…` gives `futures_util`.
fn registry_crate(file: &str) -> Option<String> {
    let after = &file[file.find("/registry/src/")? + "/registry/src/".len()..];
    let directory = after.split('/').nth(1)?;
    let (name, _version) = directory.rsplit_once('-')?;
    Some(name.replace('-', "_"))
}

/// Whether a function, by its name alone, belongs to the runtime: one of
/// [`RUNTIME_CRATES`], or a C function.
fn is_runtime_function(function: Option<&str>) -> bool {
    let Some(name) = function else {
        return false;
    };
    // `<std::…::Parker>::park`, `<alloc::boxed::Box<F> as …>::call_once`.
    let path = name.trim_start_matches('<');
    match path.find("::") {
        None => true,
        Some(end) => RUNTIME_CRATES.contains(&&path[..end]),
    }
}

/// One line of a shortened stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShortLine {
    /// The frame at this index, kept.
    Kept(usize),
    /// This many runtime frames, folded into one line.
    Folded(usize),
}

/// The lines of a stack whose frames are runtime ones where `runtime` says
/// so: each run of two or more runtime frames folded into one line; the
/// innermost frame (the system call a thread waits in) always kept.
pub(crate) fn short_lines(runtime: &[bool]) -> Vec<ShortLine> {
    fn close(lines: &mut Vec<ShortLine>, start: usize, end: usize) {
        lines.push(if end - start == 1 {
            ShortLine::Kept(start)
        } else {
            ShortLine::Folded(end - start)
        });
    }
    let mut lines = Vec::new();
    let mut run = None;
    for (index, &is_runtime) in runtime.iter().enumerate() {
        if index > 0 && is_runtime {
            run.get_or_insert(index);
            continue;
        }
        if let Some(start) = run.take() {
            close(&mut lines, start, index);
        }
        lines.push(ShortLine::Kept(index));
    }
    if let Some(start) = run {
        close(&mut lines, start, runtime.len());
    }
    lines
}

/// Frames as `stacks --short` prints them.
/// Frames as `stacks --short` prints them: the program's, with runs of
/// runtime frames folded into one line.
pub(crate) fn write_short_frames(f: &mut impl fmt::Write, frames: &[Frame]) -> fmt::Result {
    write_short(f, frames)
}

fn write_short(f: &mut impl fmt::Write, frames: &[Frame]) -> fmt::Result {
    let runtime: Vec<bool> = frames
        .iter()
        .map(|frame| is_runtime_frame(frame.function.as_deref(), frame.file.as_deref()))
        .collect();
    // Kept frames that repeat (the program's own recursion) are folded as
    // in the full form: the run is written once, with its count.
    let mut resume_at = 0;
    for line in short_lines(&runtime) {
        match line {
            ShortLine::Kept(index) if index < resume_at => {}
            ShortLine::Kept(index) => {
                let end = match repetition_at(frames, index) {
                    Some((period, times)) => index + period * times,
                    None => index + 1,
                };
                write_frames_from(f, frames, index, end)?;
                resume_at = end;
            }
            ShortLine::Folded(count) => writeln!(f, "       … {count} runtime frames")?,
        }
    }
    Ok(())
}

impl fmt::Display for ThreadStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

impl ThreadStack {
    /// Its header line, then its frames, all of them or `short`.
    fn write(&self, f: &mut fmt::Formatter<'_>, short: bool) -> fmt::Result {
        write!(f, "thread {} {:?} ({})", self.tid, self.name, self.state)?;
        if let Some(polling) = &self.polling {
            write!(
                f,
                ", polling {} for {}",
                polling.name,
                inflight::human(Duration::from_secs_f64(polling.for_ms / 1000.0))
            )?;
            if polling.blocking {
                f.write_str(": blocking its worker")?;
            }
        }
        if let Some(lock) = self.waiting_on {
            write!(f, ", waiting on {lock}")?;
        }
        writeln!(f)?;
        self.write_frames(f, short)
    }

    fn write_frames(&self, f: &mut fmt::Formatter<'_>, short: bool) -> fmt::Result {
        if let Some(reason) = &self.frames_missing {
            writeln!(f, "    {reason}")?;
        }
        if short {
            write_short(f, &self.frames)
        } else {
            write_frames(f, &self.frames)
        }
    }
}

impl Stacks {
    /// The snapshot with threads that share a state and the very same
    /// frames shown once, in the order of their first thread: a pool of
    /// idle workers becomes one entry. A thread in a poll or waiting on an
    /// inspected lock keeps an entry of its own, since its header says
    /// what no other thread's does. What `stacks --collapse` answers.
    pub(crate) fn collapsed(&self) -> Collapsed<'_> {
        // Equal return addresses mean equal frames: symbolising is a
        // function of the address alone.
        type Place<'a> = (&'a str, Option<&'a str>, Vec<usize>);
        let mut groups: Vec<ThreadGroup<'_>> = Vec::new();
        let mut by_place: HashMap<Place<'_>, usize> = HashMap::new();
        for thread in &self.threads {
            if thread.polling.is_some() || thread.waiting_on.is_some() {
                groups.push(ThreadGroup {
                    first: thread,
                    count: 1,
                    tids: vec![thread.tid],
                    names: vec![&thread.name],
                });
                continue;
            }
            let place = (
                thread.state.as_str(),
                thread.frames_missing.as_deref(),
                thread.frames.iter().map(|frame| frame.address).collect(),
            );
            match by_place.get(&place) {
                Some(&index) => {
                    let group = &mut groups[index];
                    group.count += 1;
                    group.tids.push(thread.tid);
                    group.names.push(&thread.name);
                }
                None => {
                    by_place.insert(place, groups.len());
                    groups.push(ThreadGroup {
                        first: thread,
                        count: 1,
                        tids: vec![thread.tid],
                        names: vec![&thread.name],
                    });
                }
            }
        }
        Collapsed { threads: groups }
    }
}

/// A snapshot with alike threads grouped, from [`Stacks::collapsed`].
/// Its JSON has the shape of [`Stacks`]' with `count`, `tids` and `names`
/// added to each entry; its `Display` form is the text of
/// `stacks --collapse`.
#[derive(Debug, Serialize)]
pub(crate) struct Collapsed<'a> {
    threads: Vec<ThreadGroup<'a>>,
}

/// Threads with the same state and frames; `first` speaks for them all.
#[derive(Debug, Serialize)]
struct ThreadGroup<'a> {
    #[serde(flatten)]
    first: &'a ThreadStack,
    count: usize,
    /// In tid order, as the snapshot lists threads.
    tids: Vec<i32>,
    /// The name of each thread of `tids`, in the same order.
    names: Vec<&'a str>,
}

impl fmt::Display for Collapsed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

impl Collapsed<'_> {
    fn write(&self, f: &mut fmt::Formatter<'_>, short: bool) -> fmt::Result {
        for group in &self.threads {
            let first = group.first;
            if group.count == 1 {
                first.write(f, short)?;
                continue;
            }
            write!(f, "{} threads ", group.count)?;
            if group.names.iter().all(|name| *name == first.name) {
                write!(f, "{:?} ({}):", first.name, first.state)?;
                for tid in &group.tids {
                    write!(f, " {tid}")?;
                }
            } else {
                write!(f, "({}):", first.state)?;
                for (index, (tid, name)) in group.tids.iter().zip(&group.names).enumerate() {
                    let comma = if index == 0 { "" } else { "," };
                    write!(f, "{comma} {tid} {name:?}")?;
                }
            }
            writeln!(f)?;
            first.write_frames(f, short)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_frames_are_known_by_their_file_as_well_as_their_name() {
        let registry = "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f";
        let file = |krate: &str| format!("{registry}/{krate}/src/lib.rs");
        assert!(is_runtime_frame(
            Some("lock"),
            Some(&file("parking_lot_core-0.9.10"))
        ));
        assert!(is_runtime_frame(
            Some("{closure#0}"),
            Some(&file("futures-util-0.3.31"))
        ));
        assert!(is_runtime_frame(
            Some("new"),
            Some("/rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/std/src/sync/mutex.rs")
        ));
        assert!(!is_runtime_frame(Some("handle"), Some(&file("axum-0.8.1"))));
        assert!(!is_runtime_frame(
            Some("kvsvc::handle"),
            Some("/srv/kvsvc/src/main.rs")
        ));
        // Without a file, the name decides.
        assert!(is_runtime_frame(Some("tokio::runtime::park"), None));
        assert!(is_runtime_frame(Some("__GI___poll"), None));
        assert!(!is_runtime_frame(Some("kvsvc::handle"), None));
        assert!(!is_runtime_frame(None, None));
    }

    #[inline(never)]
    fn marked_caller() -> Stacks {
        snapshot(crate::options::DEFAULT_STACK_TIMEOUT)
    }

    #[test]
    fn the_calling_thread_has_real_frames() {
        let snapshot = marked_caller();
        let me = nix::unistd::gettid().as_raw();
        let mine = snapshot
            .threads
            .iter()
            .find(|t| t.tid == me)
            .expect("own thread listed");
        assert!(mine.frames_missing.is_none());
        let first = mine.frames[0].function.as_deref().unwrap_or_default();
        assert!(first.contains("marked_caller"), "frame #0 is {first}");
    }

    #[test]
    fn other_threads_are_captured_by_signal() {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let other = std::thread::Builder::new()
            .name("stack-test".into())
            .spawn(move || {
                ready_tx.send(nix::unistd::gettid().as_raw()).unwrap();
                let _ = done_rx.recv();
            })
            .unwrap();
        let tid = ready_rx.recv().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let snapshot = loop {
            // The thread may still be on its way into `recv`.
            let snapshot = snapshot(crate::options::DEFAULT_STACK_TIMEOUT);
            let state = snapshot
                .threads
                .iter()
                .find(|t| t.tid == tid)
                .map(|t| t.state.clone());
            if state.as_deref() == Some("sleeping") || std::time::Instant::now() > deadline {
                break snapshot;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        done_tx.send(()).unwrap();
        other.join().unwrap();
        let thread = snapshot
            .threads
            .iter()
            .find(|t| t.tid == tid)
            .expect("listed");
        assert_eq!(thread.name, "stack-test");
        assert_eq!(thread.state, "sleeping");
        assert!(
            thread.frames_missing.is_none(),
            "{:?}",
            thread.frames_missing
        );
        assert!(
            thread.frames.iter().any(|frame| frame
                .function
                .as_deref()
                .is_some_and(|f| f.contains("Receiver"))),
            "{thread}"
        );
        assert!(snapshot
            .to_string()
            .contains(&format!("thread {tid} \"stack-test\" (sleeping)")));
    }

    fn parked(tid: i32, name: &str, addresses: &[usize]) -> ThreadStack {
        ThreadStack {
            tid,
            name: name.to_owned(),
            state: "sleeping".to_owned(),
            frames: addresses
                .iter()
                .map(|&address| Frame {
                    function: Some(format!("f{address:x}")),
                    file: None,
                    line: None,
                    address,
                })
                .collect(),
            frames_missing: None,
            captured_with: Some(CapturedWith::Proc),
            polling: None,
            waiting_on: None,
        }
    }

    #[test]
    fn collapsing_groups_alike_threads_in_the_order_of_their_first() {
        let stacks = Stacks {
            threads: vec![
                parked(10, "main", &[0x1, 0x2]),
                parked(11, "pool", &[0x5, 0x6]),
                parked(12, "pool", &[0x5, 0x6]),
                parked(13, "other", &[0x5, 0x6]),
                parked(14, "pool", &[0x5, 0x7]),
            ],
        };
        let collapsed = stacks.collapsed();
        let json = serde_json::to_value(&collapsed).unwrap();
        let threads = json["threads"].as_array().unwrap();
        assert_eq!(threads.len(), 3, "{json}");
        assert_eq!(threads[0]["count"], 1);
        assert_eq!(threads[1]["count"], 3);
        assert_eq!(threads[1]["tid"], 11);
        assert_eq!(threads[1]["tids"], serde_json::json!([11, 12, 13]));
        assert_eq!(
            threads[1]["names"],
            serde_json::json!(["pool", "pool", "other"])
        );
        assert_eq!(threads[1]["frames"][0]["address"], "0x5");
        assert_eq!(threads[2]["tids"], serde_json::json!([14]));
        let text = collapsed.to_string();
        assert!(
            text.starts_with("thread 10 \"main\" (sleeping)\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "3 threads (sleeping): 11 \"pool\", 12 \"pool\", 13 \"other\"\n    0: f5\n"
            ),
            "{text}"
        );
        let pool = Stacks {
            threads: vec![parked(21, "pool", &[0x5]), parked(22, "pool", &[0x5])],
        };
        assert_eq!(
            pool.collapsed().to_string(),
            "2 threads \"pool\" (sleeping): 21 22\n    0: f5\n"
        );
        let mut blocked = Stacks {
            threads: vec![parked(31, "worker", &[0x5]), parked(32, "worker", &[0x5])],
        };
        for thread in &mut blocked.threads {
            thread.polling = Some(Polling {
                name: "compact",
                for_ms: 800.0,
                blocking: true,
            });
        }
        let text = blocked.collapsed().to_string();
        assert_eq!(
            text.matches(", polling compact for 800 ms: blocking its worker")
                .count(),
            2,
            "{text}"
        );
    }
}
