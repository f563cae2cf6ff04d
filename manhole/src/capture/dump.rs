//! Other threads' raw stacks, captured in-process by a signal handler.
//!
//! A dump works like Apache Kudu's stack collector:
//!
//! 1. The capturing thread takes one *slot* per target thread from a pool
//!    that is allocated outside any handler and never freed, arms it with
//!    the dump's generation, and queues the stack signal to the thread with
//!    `rt_tgsigqueueinfo`, carrying the slot's index and the generation.
//! 2. The thread's handler claims its slot with a compare-and-swap from
//!    `ARMED(generation)` to `WRITING(generation)`, stores the interrupted
//!    registers, copies the top of its stack into the slot's buffer with
//!    `process_vm_readv` (which stops at unmapped memory instead of
//!    faulting), marks the slot `DONE` and wakes the capturer through a
//!    futex. It runs no unwinder, allocates nothing, takes no lock, cannot
//!    panic, and saves and restores `errno`.
//! 3. The capturer waits until every slot is done, its thread has exited,
//!    or the deadline passes. A slot still `ARMED` at the deadline is taken
//!    back with a compare-and-swap, so a handler that runs later finds a
//!    different state and writes nothing; a slot whose handler is mid-write
//!    is marked `ABANDONED`, and that handler frees it when it finishes.
//!
//! Only one dump runs at a time; concurrent callers wait their turn. The
//! copies are unwound afterwards by [`crate::capture::unwind`], and the addresses
//! symbolised by [`crate::capture::stacks`], both outside any handler.

use super::outcome::{addresses_of, Capture, Outcome};
use super::quiet::{capture_quietly, known_tails, learn_tail};
use super::samples;
use crate::capture::unwind;
use crate::os::procfs::Tasks;
use crate::os::{interrupted, signals};
use crate::signal_names;
use std::cell::Cell;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How much of each thread's stack is copied, from its stack pointer up.
/// Frames beyond it are cut, and the thread says so.
pub(crate) const STACK_COPY: usize = 32 * 1024;
const CHUNK_SLOTS: usize = 256;
const CHUNKS: usize = 64;
/// The most threads one dump can capture.
pub(crate) const MAX_THREADS: usize = CHUNK_SLOTS * CHUNKS;

const FREE: u32 = 0;
const ARMED: u32 = 1;
const WRITING: u32 = 2;
const DONE: u32 = 3;
const ABANDONED: u32 = 4;

fn state(generation: u32, phase: u32) -> u64 {
    (u64::from(generation) << 32) | u64::from(phase)
}

struct Slot {
    state: AtomicU64,
    tid: AtomicI32,
    /// Into `STACK_COPY` bytes of its chunk's allocation, never freed.
    /// Taken only between the claim and `DONE`; read only after `DONE`.
    copy: interrupted::Copy,
}

impl Slot {
    fn new(stack: *mut u8) -> Self {
        Slot {
            state: AtomicU64::new(0),
            tid: AtomicI32::new(0),
            copy: interrupted::Copy::new(stack, STACK_COPY),
        }
    }
}

/// Slot chunks, allocated on first need and never freed: a late handler
/// can always dereference a slot it was sent.
static CHUNK_TABLE: [AtomicPtr<Slot>; CHUNKS] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS];

/// Handlers still to finish in the current dump: its generation in the
/// high half, the count in the low half. The handler that brings the count
/// to zero wakes the capturer, which sleeps on [`WAKE`].
static REMAINING: AtomicU64 = AtomicU64::new(0);
static WAKE: AtomicU32 = AtomicU32::new(0);

static GENERATION: AtomicU32 = AtomicU32::new(1);

/// One dump at a time, symbolising included: see [`turn`].
static DUMP: Mutex<()> = Mutex::new(());

/// The right to run a dump. Held for the whole of `stacks()`, and across
/// `fork()` by the fork handlers, so that a child never inherits the dump
/// machinery (or the symboliser's lock) mid-use.
pub(crate) fn turn() -> std::sync::MutexGuard<'static, ()> {
    DUMP.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The turn, unless `abandoned` says the dump is no longer wanted (its
/// client hung up) while it waits: sessions queued behind a long dump
/// leave the queue as soon as their clients do, instead of each computing
/// a dump nobody will read.
pub(crate) fn turn_unless(
    abandoned: &dyn Fn() -> bool,
) -> Option<std::sync::MutexGuard<'static, ()>> {
    loop {
        match DUMP.try_lock() {
            Ok(guard) => return Some(guard),
            Err(std::sync::TryLockError::Poisoned(poisoned)) => return Some(poisoned.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => {
                if abandoned() {
                    return None;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }
}

thread_local! {
    static IN_HANDLER: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is inside the stack handler; for tests that
/// check the handler never allocates.
pub(crate) fn in_handler() -> bool {
    IN_HANDLER.with(Cell::get)
}

fn slot(index: usize) -> Option<&'static Slot> {
    let chunk = CHUNK_TABLE
        .get(index / CHUNK_SLOTS)?
        .load(Ordering::Acquire);
    if chunk.is_null() {
        return None;
    }
    // SAFETY: a non-null chunk points at CHUNK_SLOTS slots that are never
    // freed, and the offset is below CHUNK_SLOTS.
    Some(unsafe { &*chunk.add(index % CHUNK_SLOTS) })
}

/// The slot at `index`, allocating its chunk if needed. Called only under
/// the dump lock, never from the handler.
fn slot_or_allocate(index: usize) -> Option<&'static Slot> {
    let entry = CHUNK_TABLE.get(index / CHUNK_SLOTS)?;
    if entry.load(Ordering::Acquire).is_null() {
        // One zeroed allocation for the chunk's stacks: the allocator maps
        // it lazily, so a slot costs only the pages its copies touch.
        let stacks = Box::leak(vec![0u8; CHUNK_SLOTS * STACK_COPY].into_boxed_slice()).as_mut_ptr();
        let chunk: Box<[Slot]> = (0..CHUNK_SLOTS)
            // SAFETY: `index * STACK_COPY` stays inside the allocation.
            .map(|index| Slot::new(unsafe { stacks.add(index * STACK_COPY) }))
            .collect();
        entry.store(Box::leak(chunk).as_mut_ptr(), Ordering::Release);
    }
    slot(index)
}

/// The stack signal's handler, for stack requests and profile ticks alike.
/// Async-signal-safe: atomics and three system calls (`gettid`,
/// `process_vm_readv`, a futex wake) only.
pub(crate) extern "C" fn on_signal(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: errno is thread-local and always readable.
    let saved_errno = unsafe { *libc::__errno_location() };
    IN_HANDLER.with(|flag| flag.set(true));
    // SAFETY: the kernel passes a valid siginfo with SA_SIGINFO.
    let info = unsafe { &*info };
    // Only requests this process queued itself, and its profile timers'
    // ticks; `kill -RTMAX` from outside carries SI_USER and is ignored.
    match info.si_code {
        // SAFETY: si_pid and si_value are valid for a queued signal.
        libc::SI_QUEUE if unsafe { info.si_pid() } == std::process::id() as libc::pid_t => {
            // SAFETY: as above.
            let value = unsafe { info.si_value() }.sival_ptr as usize;
            if samples::is_tick(value) {
                samples::record(value, context, 1);
            } else {
                record(value, context);
            }
        }
        libc::SI_TIMER => {
            // SAFETY: si_value and si_overrun are valid for a timer's signal.
            let (value, overrun) =
                unsafe { (info.si_value().sival_ptr as usize, info.si_overrun()) };
            if samples::is_tick(value) {
                let weight = u32::try_from(overrun).unwrap_or(0).saturating_add(1);
                samples::record(value, context, weight);
            }
        }
        _ => {}
    }
    IN_HANDLER.with(|flag| flag.set(false));
    // SAFETY: restores the interrupted code's errno.
    unsafe { *libc::__errno_location() = saved_errno };
}

fn record(value: usize, context: *mut libc::c_void) {
    let generation = (value >> 32) as u32;
    let Some(slot) = slot(value & 0xffff_ffff) else {
        return;
    };
    let claimed = slot.state.compare_exchange(
        state(generation, ARMED),
        state(generation, WRITING),
        Ordering::Acquire,
        Ordering::Relaxed,
    );
    if claimed.is_err() {
        return;
    }
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as libc::pid_t;
    if slot.tid.load(Ordering::Relaxed) == tid {
        slot.copy.take(context);
    }
    let finished = slot.state.compare_exchange(
        state(generation, WRITING),
        state(generation, DONE),
        Ordering::Release,
        Ordering::Relaxed,
    );
    if finished.is_err() {
        // Abandoned at the deadline: no one will read it, so give it back.
        slot.state.store(state(0, FREE), Ordering::Release);
    }
    count_down(generation);
}

/// Counts one handler of `generation` as finished, and wakes the capturer
/// when it was the last. A late handler of an earlier dump changes nothing.
fn count_down(generation: u32) {
    let mut current = REMAINING.load(Ordering::Acquire);
    loop {
        if (current >> 32) as u32 != generation || current as u32 == 0 {
            return;
        }
        match REMAINING.compare_exchange_weak(
            current,
            current - 1,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => break,
            Err(now) => current = now,
        }
    }
    if current as u32 == 1 {
        WAKE.fetch_add(1, Ordering::Release);
        // SAFETY: a futex wake on a valid, aligned, static word.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                WAKE.as_ptr(),
                libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                1,
            );
        }
    }
}

fn bit(signal: libc::c_int) -> u64 {
    1u64 << (signal - 1)
}

/// Why a thread that was sent nothing cannot answer, if it cannot.
fn cannot_answer(tasks: &Tasks, tid: libc::pid_t, signal: libc::c_int) -> Option<String> {
    let masks = tasks.signal_masks(tid)?;
    let name = signal_names::name(signal);
    if masks.blocked & bit(signal) != 0 {
        Some(format!("no response: the thread blocks {name} (SigBlk)"))
    } else if masks.pending & bit(signal) != 0 {
        Some(format!(
            "no response: an earlier stack request ({name}) is still pending on the thread"
        ))
    } else {
        None
    }
}

/// Why a thread did not answer within the deadline, as `/proc` tells it.
fn silence(
    tasks: &Tasks,
    tid: libc::pid_t,
    signal: libc::c_int,
    timeout: Duration,
) -> Option<String> {
    if let Some(reason) = cannot_answer(tasks, tid, signal) {
        return Some(reason);
    }
    let state = tasks.stat(tid)?.state;
    let within = format!("no response within {} ms", timeout.as_millis());
    Some(match state {
        "disk sleep" => format!("{within}: the thread is in uninterruptible sleep in the kernel"),
        "stopped" | "tracing stop" => format!("{within}: the thread is stopped"),
        _ => within,
    })
}

/// Whether a described thread is asleep, so that it may sit in a system
/// call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Described {
    Running,
    Asleep,
}

/// The first pass over `tids`: each thread described, and, when asleep,
/// taken quietly. `None` where the thread is gone; an outcome where it
/// needs no signal.
///
/// A large dump is shared with helper threads, one per spare core (at
/// most [`MAX_HELPERS`]): the pass is `/proc` reads and copies, each a few
/// microseconds in the kernel, and two cores read two threads' files at
/// once (measured: 1000 threads' `stat`, `schedstat` and `syscall` in
/// 19 ms on one core, 10 ms on two).
fn first_pass<D: Send>(
    tasks: &Tasks,
    tids: &[libc::pid_t],
    describe: &(dyn Fn(libc::pid_t) -> Option<(D, Described)> + Sync),
    known_tails: &[Vec<u64>],
    copy: &mut [u8],
) -> Vec<Option<(D, Described, Option<Outcome>)>> {
    let pass = |tids: &[libc::pid_t], copy: &mut [u8]| -> Vec<_> {
        tids.iter()
            .map(|&tid| {
                let (description, described_as) = describe(tid)?;
                let quiet = match described_as {
                    Described::Asleep => capture_quietly(tasks, tid, copy, known_tails),
                    Described::Running => None,
                };
                Some((description, described_as, quiet))
            })
            .collect()
    };
    let helpers = helpers_for(tids.len());
    if helpers == 0 {
        return pass(tids, copy);
    }
    let share = tids.len().div_ceil(helpers + 1);
    std::thread::scope(|scope| {
        let mut shares = tids.chunks(share);
        let own = shares.next().unwrap_or_default();
        let helping: Vec<_> = shares
            .map(|part| {
                let started = std::thread::Builder::new()
                    .name("manhole-dump".to_owned())
                    .spawn_scoped(scope, move || pass(part, &mut vec![0u8; STACK_COPY]));
                (part, started)
            })
            .collect();
        let mut all = pass(own, copy);
        for (part, started) in helping {
            match started {
                Ok(helper) => all.extend(
                    helper
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                ),
                // No thread to be had: this one does that share too.
                Err(_) => all.extend(pass(part, copy)),
            }
        }
        all
    })
}

/// The most helper threads a dump's first pass takes.
const MAX_HELPERS: usize = 3;
/// Below this many threads a dump is quicker alone than with a helper to
/// start.
const THREADS_PER_HELPER: usize = 128;

fn helpers_for(threads: usize) -> usize {
    let spare = std::thread::available_parallelism().map_or(0, |cores| cores.get() - 1);
    spare.min(MAX_HELPERS).min(threads / THREADS_PER_HELPER)
}

/// Captures the raw stacks of `tids` (never the calling thread), waiting at
/// most `timeout` for them, with each thread's description from
/// `describe` (`None` for a thread that is gone). The caller holds the
/// [`turn`].
///
/// A first pass describes every thread and takes each asleep one that sits
/// in a system call quietly (see [`capture_quietly`]). Every other thread
/// is looked at once more and then sent `signal`, and the signalled ones
/// are waited for.
pub(crate) fn capture<D: Send>(
    tasks: &Tasks,
    tids: &[libc::pid_t],
    signal: libc::c_int,
    timeout: Duration,
    describe: &(dyn Fn(libc::pid_t) -> Option<(D, Described)> + Sync),
) -> Vec<Option<(D, Outcome)>> {
    let known_tails = known_tails();
    let mut copy = vec![0u8; STACK_COPY];
    let first = first_pass(tasks, tids, describe, &known_tails, &mut copy);
    let generation = loop {
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed);
        if generation != 0 {
            break generation;
        }
    };
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(tids.len());
    // (position in tids, slot index)
    let mut waiting: Vec<(usize, usize)> = Vec::with_capacity(tids.len());
    let mut next_slot = 0;
    REMAINING.store(state(generation, 0), Ordering::Release);
    let mut descriptions: Vec<Option<D>> = Vec::with_capacity(tids.len());
    // (position in tids, tid) of threads seen running at the second look.
    let mut settling: Vec<(usize, libc::pid_t)> = Vec::new();
    for (position, (&tid, first)) in tids.iter().zip(first).enumerate() {
        let Some((description, described_as, quiet)) = first else {
            descriptions.push(None);
            outcomes.push(Some(Outcome::Gone));
            continue;
        };
        descriptions.push(Some(description));
        // A thread seen running may have gone to sleep in a system call
        // since: looked at again just before it would be signalled.
        let quiet = match (quiet, described_as) {
            (None, Described::Running) => capture_quietly(tasks, tid, &mut copy, &known_tails),
            (quiet, _) => quiet,
        };
        if let Some(outcome) = quiet {
            outcomes.push(Some(outcome));
            continue;
        }
        // Every signal sent to a thread that blocks it, or has one pending
        // already, would stay queued against the user's RLIMIT_SIGPENDING:
        // such a thread is named, never signalled again.
        if let Some(reason) = cannot_answer(tasks, tid, signal) {
            outcomes.push(Some(Outcome::Missing(reason)));
            continue;
        }
        // A thread that runs now may be on its way out of a system call
        // that a pending signal would still turn into `EINTR` (`select`
        // that timed out, for one): it is given a moment to settle first.
        if tasks.in_syscall(tid).is_none() {
            settling.push((position, tid));
            outcomes.push(None);
            continue;
        }
        match signal_thread(tid, signal, generation, &mut next_slot) {
            Ok(index) => {
                outcomes.push(None);
                waiting.push((position, index));
            }
            Err(outcome) => outcomes.push(Some(outcome)),
        }
    }
    // Each settling thread, with its time on a CPU when first seen running.
    let mut settling: Vec<(usize, libc::pid_t, Option<u64>)> = settling
        .into_iter()
        .map(|(position, tid)| (position, tid, tasks.on_cpu_ns(tid)))
        .collect();
    let settled_by = Instant::now() + MAX_SETTLE;
    while !settling.is_empty() {
        std::thread::sleep(SETTLE_STEP);
        let out_of_time = Instant::now() >= settled_by;
        settling.retain(|&(position, tid, on_cpu)| {
            if let Some(outcome) = capture_quietly(tasks, tid, &mut copy, &known_tails) {
                outcomes[position] = Some(outcome);
                return false;
            }
            // Runnable without having run since: still on its way out of
            // the kernel, perhaps, where a pending signal ends its call
            // with `EINTR`. One that ran computes, and the signal
            // interrupts no call.
            let waiting_for_a_cpu = on_cpu.is_some() && tasks.on_cpu_ns(tid) == on_cpu;
            if waiting_for_a_cpu && !out_of_time {
                return true;
            }
            if let Some(reason) = cannot_answer(tasks, tid, signal) {
                outcomes[position] = Some(Outcome::Missing(reason));
                return false;
            }
            match signal_thread(tid, signal, generation, &mut next_slot) {
                Ok(index) => waiting.push((position, index)),
                Err(outcome) => outcomes[position] = Some(outcome),
            }
            false
        });
    }

    let deadline = Instant::now() + timeout;
    loop {
        let seen = WAKE.load(Ordering::Acquire);
        let all_done = REMAINING.load(Ordering::Acquire) == state(generation, 0);
        if !all_done {
            // Threads that exit before their handler runs never answer.
            waiting.retain(|&(position, index)| {
                let slot = slot(index).expect("armed slots exist");
                if slot.state.load(Ordering::Acquire) != state(generation, DONE)
                    && !signals::thread_exists(tids[position])
                {
                    // It may have answered just before it exited.
                    let answered = release(slot, generation);
                    outcomes[position] = Some(if answered {
                        collect(slot)
                    } else {
                        Outcome::Gone
                    });
                    return false;
                }
                true
            });
        }
        let now = Instant::now();
        let pending = waiting.iter().any(|&(_, index)| {
            slot(index)
                .is_some_and(|slot| slot.state.load(Ordering::Acquire) != state(generation, DONE))
        });
        if !pending || now >= deadline {
            break;
        }
        // Woken by the last handler; otherwise look again every few
        // milliseconds for threads that exited.
        let nap = (deadline - now).min(Duration::from_millis(5));
        let nap = libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::c_long::try_from(nap.as_nanos()).unwrap_or(5_000_000),
        };
        // SAFETY: a futex wait on a valid, aligned, static word with a
        // valid timeout; a changed word or a timeout just returns.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                WAKE.as_ptr(),
                libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                seen,
                &nap as *const libc::timespec,
            );
        }
    }
    for (position, index) in waiting {
        let slot = slot(index).expect("armed slots exist");
        let done = slot.state.load(Ordering::Acquire) == state(generation, DONE)
            || release(slot, generation);
        outcomes[position] = Some(if done {
            collect(slot)
        } else {
            let tid = tids[position];
            match silence(tasks, tid, signal, timeout) {
                Some(reason) => Outcome::Missing(reason),
                None => Outcome::Gone,
            }
        });
    }
    descriptions
        .into_iter()
        .zip(outcomes)
        .map(|(description, outcome)| Some((description?, outcome.unwrap_or(Outcome::Gone))))
        .collect()
}

/// How often threads seen running are looked at again before they are
/// signalled: one that sits in a system call by then is taken quietly, and
/// one that ran on a CPU meanwhile is signalled.
const SETTLE_STEP: Duration = Duration::from_millis(1);
/// How long a thread that stays runnable without running (on a loaded
/// machine, on its way out of a system call) is waited for at most. The
/// dump pays it once, however many such threads there are.
const MAX_SETTLE: Duration = Duration::from_millis(20);

/// Arms a free slot for `tid` and sends it `signal` carrying the slot and
/// `generation`: the slot's index once sent, or the outcome of a thread
/// that cannot be asked.
fn signal_thread(
    tid: libc::pid_t,
    signal: libc::c_int,
    generation: u32,
    next_slot: &mut usize,
) -> Result<usize, Outcome> {
    let Some((index, slot)) = free_slot(next_slot) else {
        return Err(Outcome::Missing(format!(
            "not captured: a dump covers at most {MAX_THREADS} threads"
        )));
    };
    slot.tid.store(tid, Ordering::Relaxed);
    slot.copy.clear();
    slot.state
        .store(state(generation, ARMED), Ordering::Release);
    REMAINING.fetch_add(1, Ordering::AcqRel);
    let value = (usize::try_from(generation).unwrap_or(0) << 32) | index;
    match signals::send_to_thread(signal, tid, value) {
        Ok(()) => Ok(index),
        Err(err) => {
            slot.state.store(state(0, FREE), Ordering::Release);
            count_down(generation);
            Err(if err.raw_os_error() == Some(libc::ESRCH) {
                Outcome::Gone
            } else {
                Outcome::Missing(format!(
                    "not captured: cannot send {}: {err}",
                    signal_names::name(signal)
                ))
            })
        }
    }
}

fn free_slot(next: &mut usize) -> Option<(usize, &'static Slot)> {
    while *next < MAX_THREADS {
        let index = *next;
        *next += 1;
        let slot = slot_or_allocate(index)?;
        // Abandoned slots stay with their late handler until it finishes.
        if slot.state.load(Ordering::Acquire) as u32 == FREE {
            return Some((index, slot));
        }
    }
    None
}

/// Takes a slot back after the deadline. Returns `true` when its handler
/// finished after all, so the slot holds a stack to collect.
fn release(slot: &Slot, generation: u32) -> bool {
    let taken = slot.state.compare_exchange(
        state(generation, ARMED),
        state(0, FREE),
        Ordering::AcqRel,
        Ordering::Acquire,
    );
    match taken {
        Ok(_) => false,
        Err(current) if current == state(generation, DONE) => true,
        Err(current) if current == state(generation, WRITING) => {
            let abandoned = slot.state.compare_exchange(
                current,
                state(generation, ABANDONED),
                Ordering::AcqRel,
                Ordering::Acquire,
            );
            // It may have finished in between.
            abandoned.is_err_and(|now| now == state(generation, DONE))
        }
        Err(_) => false,
    }
}

fn collect(slot: &Slot) -> Outcome {
    // The handler finished (`DONE` was read with acquire ordering) and no
    // other handler can claim the slot before it is freed below.
    let (registers, stack) = slot.copy.read();
    let outcome = if stack.is_empty() {
        Outcome::Missing(
            "not captured: the thread's stack could not be copied (is process_vm_readv allowed?)"
                .to_owned(),
        )
    } else {
        let unwound = unwind::unwind(registers, stack);
        if unwound.complete {
            learn_tail(&unwound.addresses);
        }
        Outcome::Frames {
            addresses: addresses_of(unwound.addresses),
            truncated: unwound.truncated,
            how: Capture::Signal,
        }
    };
    slot.copy.let_pages_go();
    slot.state.store(state(0, FREE), Ordering::Release);
    outcome
}
