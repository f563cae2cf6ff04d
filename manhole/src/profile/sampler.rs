//! `profile`: sampling where the CPU, or the time, goes, from inside.
//!
//! - **CPU mode** gives every thread a POSIX timer on its own CPU clock
//!   (`timer_create` on the thread's `CLOCK_THREAD_CPUTIME_ID`, delivered
//!   to that thread alone with `SIGEV_THREAD_ID`). A thread is sampled in
//!   proportion to the CPU it uses, and an idle thread's timer never fires.
//!   The thread count is read every [`RESCAN`], and the list again when it
//!   changed (or, when it did not, as often as its length allows), so
//!   threads started meanwhile are picked up and those that ended let go.
//! - **Wall mode** looks at every thread `hz` times a second from the
//!   profiling thread. A thread asleep in a system call is never
//!   signalled (the signal would end its `poll` or `nanosleep` with
//!   `EINTR`): its stack is read from outside, as a quiet dump does, or,
//!   when it has not been scheduled since its previous sample, that
//!   sample's stack is counted again without reading anything. A thread
//!   that ran since the previous look gets the signal; one that waits for
//!   a CPU without having run counts its previous stack again.
//!
//! Either way the signal's handler only fills a slot of [`crate::capture::samples`];
//! this thread drains the ring every [`DRAIN`], unwinds the copies, and
//! counts each distinct stack. Symbols are looked up once, at the end.
//! Drains and the wall-mode looks run under the dump's turn, as every use
//! of the unwinder does, so that a `fork` never leaves its lock held in the
//! child; a dump that holds the turn only delays a drain.

use crate::capture::samples;
use crate::capture::unwind;
use crate::capture::{self, Outcome};
use crate::os::procfs::{InSyscall, Tasks};
use crate::os::signals;
use crate::signal_names;
use manhole_wire::{Failure, ProfileMode, ProfileRequest, Reason};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// How often the thread count is read: a change means threads came or
/// went, and the list is read again.
const RESCAN: Duration = Duration::from_millis(100);
/// Threads listed per [`RESCAN`] at most when the count stays the same (a
/// thread started as another ended): a process of up to this many threads
/// is listed every time, one of 1000 every second, since a listing costs
/// in proportion to the threads.
const LISTED_PER_RESCAN: u64 = 100;

/// How often the ring is drained.
const DRAIN: Duration = Duration::from_millis(10);
/// How long handlers still running when sampling ends are given.
const LAST_TICKS: Duration = Duration::from_millis(20);

/// The pid of the process whose profile runs, 0 when none does. A forked
/// child inherits the parent's number and knows it is not its own.
static RUNNING: AtomicU32 = AtomicU32::new(0);

/// Whether a profile is running in this process.
pub(crate) fn in_progress() -> bool {
    RUNNING.load(Ordering::Acquire) == std::process::id()
}

/// A thread some samples came from.
pub(crate) struct SampledThread {
    pub(crate) name: String,
    /// Why it could not be sampled, when it could not.
    pub(crate) unsampled: Option<String>,
}

/// What a profile collected, before symbols.
pub(crate) struct Collected {
    pub(crate) mode: ProfileMode,
    pub(crate) hz: u32,
    /// How long it sampled.
    pub(crate) elapsed: Duration,
    /// Ticks per distinct (tid, return addresses innermost first).
    pub(crate) stacks: HashMap<(i32, Vec<u64>), u64>,
    /// Every thread it looked at.
    pub(crate) threads: HashMap<i32, SampledThread>,
    /// Ticks the handler found no free slot for.
    pub(crate) dropped: u64,
    /// Wall-mode ticks of blocked threads whose stack could not be read
    /// from outside, and that were not signalled.
    pub(crate) skipped: u64,
    /// Of `skipped`, how many per thread.
    pub(crate) skipped_by_thread: HashMap<i32, u64>,
    /// Samples whose stack was deeper than the copy.
    pub(crate) truncated: u64,
}

impl Collected {
    /// Counts a look at thread `tid` that could not be taken.
    fn skip(&mut self, tid: i32) {
        self.skipped += 1;
        *self.skipped_by_thread.entry(tid).or_default() += 1;
    }

    /// Counts `ticks` more on `stack` of thread `tid`.
    fn count(&mut self, tid: i32, stack: Vec<u64>, ticks: u64) {
        *self.stacks.entry((tid, stack)).or_default() += ticks;
    }

    /// Every tick counted.
    pub(crate) fn samples(&self) -> u64 {
        self.stacks.values().sum()
    }
}

/// The right to profile, given back on drop.
struct Running;

impl Running {
    fn take() -> Result<Running, Failure> {
        let pid = std::process::id();
        let mut current = RUNNING.load(Ordering::Acquire);
        loop {
            if current == pid {
                return Err(Failure::new(
                    Reason::Busy,
                    "busy: a profile is already running; one runs at a time, so try again when it ends",
                ));
            }
            // 0, or the number of the parent this process was forked from.
            match RUNNING.compare_exchange(current, pid, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(Running),
                Err(now) => current = now,
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        RUNNING.store(0, Ordering::Release);
    }
}

/// A thread's CPU-clock timer, deleted on drop.
struct Timer(libc::timer_t);

impl Timer {
    /// A timer on thread `tid`'s CPU clock that sends it `signal` carrying
    /// `value` every `period` of its CPU time.
    fn start(
        tid: i32,
        signal: libc::c_int,
        value: usize,
        period: Duration,
    ) -> std::io::Result<Timer> {
        // The kernel's clock id for one thread's CPU time, as glibc's
        // `pthread_getcpuclockid` makes it: the tid inverted and shifted,
        // with the per-thread and scheduler-clock bits.
        let clock: libc::clockid_t = ((!tid) << 3) | 4 | 2;
        // SAFETY: a zeroed sigevent is valid; the fields set are the ones
        // SIGEV_THREAD_ID reads.
        let mut event: libc::sigevent = unsafe { std::mem::zeroed() };
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal;
        event.sigev_value = libc::sigval {
            sival_ptr: value as *mut libc::c_void,
        };
        event.sigev_notify_thread_id = tid;
        let mut timer: libc::timer_t = std::ptr::null_mut();
        // SAFETY: valid pointers to an initialised event and to the id.
        if unsafe { libc::timer_create(clock, &mut event, &mut timer) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let timer = Timer(timer);
        let period = libc::timespec {
            tv_sec: period.as_secs().try_into().unwrap_or(1),
            tv_nsec: libc::c_long::from(period.subsec_nanos()),
        };
        let spec = libc::itimerspec {
            it_interval: period,
            it_value: period,
        };
        // SAFETY: a timer just created, and a valid spec.
        if unsafe { libc::timer_settime(timer.0, 0, &spec, std::ptr::null_mut()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(timer)
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        // SAFETY: a timer this value created and nothing else deleted.
        unsafe { libc::timer_delete(self.0) };
    }
}

/// Which threads a profile covers.
struct Selector<'a> {
    own: i32,
    thread: Option<&'a str>,
}

impl Selector<'_> {
    fn takes(&self, tid: i32, name: &str) -> bool {
        if tid == self.own {
            return false;
        }
        match self.thread {
            // The manhole's own threads (listener, sessions, watchdog) are
            // not the program's work: left out unless asked for by name.
            None => !name.starts_with("manhole"),
            Some(wanted) => match wanted.parse::<i32>() {
                Ok(wanted_tid) => wanted_tid == tid,
                Err(_) => name.starts_with(wanted),
            },
        }
    }
}

/// What wall mode remembers of a thread between two looks.
#[derive(Default)]
struct WallThread {
    /// Where it was blocked at its last quiet read, how many times it had
    /// been scheduled then, and the stack read.
    blocked: Option<(InSyscall, u64, Vec<u64>)>,
    /// Its time on a CPU at the last look.
    on_cpu: Option<u64>,
    /// Whether the last look found it outside any system call.
    running: bool,
    /// Its latest stack, however taken.
    last: Option<Vec<u64>>,
    /// Signals sent since the last sample of it was drained.
    unanswered: u32,
    /// The drain after which its signal masks were last read, and whether
    /// they said it blocks the signal or has one pending: then it is sent
    /// nothing, since each signal would stay queued against the user's
    /// `RLIMIT_SIGPENDING`.
    masks_read: Option<(u64, bool)>,
}

/// Whether a drain waits for the dump's turn.
#[derive(Clone, Copy)]
enum Turn {
    Wait,
    IfFree,
}

/// One profile in progress.
struct Profile<'a> {
    request: &'a ProfileRequest,
    signal: libc::c_int,
    tick: usize,
    selector: Selector<'a>,
    timers: HashMap<i32, Timer>,
    wall: HashMap<i32, WallThread>,
    /// How many times the ring was drained.
    drains: u64,
    /// Threads the selector left out, not looked at again.
    ignored: HashSet<i32>,
    collected: Collected,
}

/// Samples as `request` asks, until its time is up or `abandoned` says the
/// client left (looked at every few milliseconds).
///
/// # Errors
///
/// `busy` while another profile runs; `profile_failed` when the stack
/// signal cannot be installed or the threads cannot be listed.
pub(crate) fn run(
    request: &ProfileRequest,
    abandoned: &dyn Fn() -> bool,
) -> Result<Option<Collected>, Failure> {
    let _running = Running::take()?;
    let signal = signals::ensure_installed(capture::on_signal)
        .map_err(|err| Failure::new(Reason::ProfileFailed, format!("cannot profile: {err}")))?;
    let Some(tasks) = Tasks::open() else {
        return Err(Failure::new(
            Reason::ProfileFailed,
            "cannot profile: /proc/self/task cannot be read",
        ));
    };
    let epoch = samples::start();
    let mut profile = Profile {
        request,
        signal,
        tick: samples::tick_value(epoch),
        selector: Selector {
            own: nix::unistd::gettid().as_raw(),
            thread: request.thread.as_deref(),
        },
        timers: HashMap::new(),
        wall: HashMap::new(),
        drains: 0,
        ignored: HashSet::new(),
        collected: Collected {
            mode: request.mode,
            hz: request.hz,
            elapsed: Duration::ZERO,
            stacks: HashMap::new(),
            threads: HashMap::new(),
            dropped: 0,
            skipped: 0,
            skipped_by_thread: HashMap::new(),
            truncated: 0,
        },
    };
    let started = Instant::now();
    let outcome = profile.sample(&tasks, started, abandoned);
    // Timers first, so no tick comes after the last drain but a late one.
    profile.timers.clear();
    std::thread::sleep(LAST_TICKS);
    profile.drain(Turn::Wait);
    profile.collected.dropped = samples::stop();
    samples::release_pages();
    profile.collected.elapsed = started.elapsed();
    if outcome.is_none() {
        return Ok(None);
    }
    profile.note_unsampled(&tasks);
    Ok(Some(profile.collected))
}

impl Profile<'_> {
    /// The sampling loop; `None` when the client left.
    fn sample(
        &mut self,
        tasks: &Tasks,
        started: Instant,
        abandoned: &dyn Fn() -> bool,
    ) -> Option<()> {
        let ends = started + self.request.duration;
        let period = Duration::from_secs(1) / self.request.hz;
        let mut next_scan = started;
        let mut next_full_scan = started;
        let mut known_count = None;
        let mut next_drain = started + DRAIN;
        let mut next_look = started;
        loop {
            let now = Instant::now();
            if now >= ends {
                return Some(());
            }
            if abandoned() {
                return None;
            }
            if now >= next_scan {
                let count = tasks.count();
                if now >= next_full_scan || count.is_none() || count != known_count {
                    self.scan(tasks);
                    known_count = count;
                    // At most 10 s apart, however many threads there are.
                    let listings_apart = count.map_or(1, |count| {
                        count.div_ceil(LISTED_PER_RESCAN).clamp(1, 100) as u32
                    });
                    next_full_scan = now + RESCAN * listings_apart;
                }
                next_scan = now + RESCAN;
            }
            if self.request.mode == ProfileMode::Wall && now >= next_look {
                self.look(tasks);
                next_look += period;
                if next_look < now {
                    // Fell behind (a dump held the turn): no burst of looks.
                    next_look = now + period;
                }
            }
            if now >= next_drain {
                self.drain(Turn::IfFree);
                next_drain = now + DRAIN;
            }
            let mut wake = next_scan.min(next_drain).min(ends);
            if self.request.mode == ProfileMode::Wall {
                wake = wake.min(next_look);
            }
            std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        }
    }

    /// Reads the thread list: new threads are taken in (and, in CPU mode,
    /// given a timer), gone ones let go.
    fn scan(&mut self, tasks: &Tasks) {
        let tids = tasks.tids();
        self.timers.retain(|tid, _| tids.binary_search(tid).is_ok());
        self.wall.retain(|tid, _| tids.binary_search(tid).is_ok());
        self.ignored.retain(|tid| tids.binary_search(tid).is_ok());
        for &tid in &tids {
            let covered = match self.request.mode {
                ProfileMode::Cpu => self.timers.contains_key(&tid),
                ProfileMode::Wall => self.wall.contains_key(&tid),
            };
            // A thread known without a timer either could not get one
            // (not tried again) or ended, and its tid went to a new one.
            let failed = self
                .collected
                .threads
                .get(&tid)
                .is_some_and(|thread| thread.unsampled.is_some());
            if covered || failed || self.ignored.contains(&tid) {
                continue;
            }
            let Some(stat) = tasks.stat(tid) else {
                continue;
            };
            if !self.selector.takes(tid, &stat.name) {
                self.ignored.insert(tid);
                continue;
            }
            let mut thread = SampledThread {
                name: stat.name,
                unsampled: None,
            };
            match self.request.mode {
                ProfileMode::Cpu => {
                    let period = Duration::from_secs(1) / self.request.hz;
                    match Timer::start(tid, self.signal, self.tick, period) {
                        Ok(timer) => {
                            self.timers.insert(tid, timer);
                        }
                        Err(err) if err.raw_os_error() == Some(libc::EINVAL) => {
                            // The thread ended between the listing and here.
                            continue;
                        }
                        Err(err) => thread.unsampled = Some(format!("no CPU timer: {err}")),
                    }
                }
                ProfileMode::Wall => {
                    self.wall.entry(tid).or_default();
                }
            }
            self.collected.threads.insert(tid, thread);
        }
    }

    /// Wall mode: one look at every thread, as the module describes.
    fn look(&mut self, tasks: &Tasks) {
        let _turn = capture::turn();
        let known_tails = capture::known_tails();
        let mut copy = vec![0u8; samples::SAMPLE_STACK];
        let tids: Vec<i32> = self.wall.keys().copied().collect();
        for tid in tids {
            let Some(state) = self.wall.get_mut(&tid) else {
                continue;
            };
            let scheduled = tasks.times_scheduled(tid);
            let on_cpu = tasks.on_cpu_ns(tid);
            let ran = on_cpu.is_none() || state.on_cpu != on_cpu;
            state.on_cpu = on_cpu;
            if let Some(call) = tasks.in_syscall(tid) {
                state.running = false;
                if let (Some((previous, previous_scheduled, stack)), Some(scheduled)) =
                    (&state.blocked, scheduled)
                {
                    if *previous == call && *previous_scheduled == scheduled {
                        self.collected.count(tid, stack.clone(), 1);
                        continue;
                    }
                }
                match capture::capture_quietly(tasks, tid, &mut copy, &known_tails) {
                    Some(Outcome::Frames {
                        addresses,
                        truncated,
                        ..
                    }) => {
                        let stack: Vec<u64> =
                            addresses.iter().map(|&address| address as u64).collect();
                        if truncated {
                            self.collected.truncated += 1;
                        }
                        if let Some(scheduled) = scheduled {
                            state.blocked = Some((call, scheduled, stack.clone()));
                        }
                        state.last = Some(stack.clone());
                        self.collected.count(tid, stack, 1);
                    }
                    _ => self.collected.skip(tid),
                }
                continue;
            }
            state.blocked = None;
            let was_running = std::mem::replace(&mut state.running, true);
            if !(was_running && ran) {
                // Just out of a system call, or runnable without having
                // run: perhaps still on its way out of the kernel, where a
                // signal would end the call with `EINTR`. It is counted
                // where it was, and signalled from the next look on.
                match &state.last {
                    Some(stack) => self.collected.count(tid, stack.clone(), 1),
                    None => self.collected.skip(tid),
                }
                continue;
            }
            // Unanswered so far: read its masks, once per drain at most.
            if state.unanswered > 0 {
                let deaf = match state.masks_read {
                    Some((drain, deaf)) if drain == self.drains => deaf,
                    _ => {
                        let bit = 1u64 << (self.signal - 1);
                        let deaf = tasks
                            .signal_masks(tid)
                            .is_some_and(|masks| (masks.blocked | masks.pending) & bit != 0);
                        state.masks_read = Some((self.drains, deaf));
                        deaf
                    }
                };
                if deaf {
                    self.collected.skip(tid);
                    continue;
                }
            }
            state.unanswered += 1;
            match signals::send_to_thread(self.signal, tid, self.tick) {
                Ok(()) => {}
                Err(err) if err.raw_os_error() == Some(libc::ESRCH) => {}
                Err(_) => self.collected.skip(tid),
            }
        }
    }

    /// Unwinds and counts every sample in the ring, under the dump's turn:
    /// waiting for it, or only if it is free (the ring holds the samples
    /// until the next drain).
    fn drain(&mut self, turn: Turn) {
        let _turn = match turn {
            Turn::Wait => capture::turn(),
            Turn::IfFree => match capture::turn_unless(&|| true) {
                Some(turn) => turn,
                None => return,
            },
        };
        self.drains += 1;
        let collected = &mut self.collected;
        let wall = &mut self.wall;
        samples::drain(&mut |sample| {
            let unwound = unwind::unwind(sample.registers, sample.stack);
            if unwound.truncated {
                collected.truncated += 1;
            }
            if unwound.complete {
                capture::learn_tail(&unwound.addresses);
            }
            if let Some(state) = wall.get_mut(&sample.tid) {
                state.unanswered = 0;
                state.last = Some(unwound.addresses.clone());
            }
            collected.count(sample.tid, unwound.addresses, u64::from(sample.weight));
        });
    }

    /// Threads that block the stack signal never answer: each is named
    /// with the reason, rather than silently missing.
    fn note_unsampled(&mut self, tasks: &Tasks) {
        let bit = 1u64 << (self.signal - 1);
        let name = signal_names::name(self.signal);
        for (tid, thread) in &mut self.collected.threads {
            if thread.unsampled.is_some() {
                continue;
            }
            if tasks
                .signal_masks(*tid)
                .is_some_and(|masks| masks.blocked & bit != 0)
            {
                thread.unsampled = Some(format!(
                    "the thread blocks {name} (SigBlk), so its running time was not sampled"
                ));
            }
        }
    }
}
