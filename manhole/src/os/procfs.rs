//! This process and its threads as `/proc/self/stat` and
//! `/proc/self/task` describe them.
//!
//! A dump reads one small file per thread, so every read goes through one
//! open directory descriptor and a stack buffer: `openat`, `read`, `close`,
//! and nothing else.

use std::os::fd::{AsFd, OwnedFd};

/// `/proc/self/task`, opened once per dump.
pub(crate) struct Tasks {
    dir: OwnedFd,
}

/// A thread's name and scheduler state.
pub(crate) struct TaskStat {
    pub(crate) name: String,
    pub(crate) state: &'static str,
}

/// A thread blocked in a system call, as `<tid>/syscall` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InSyscall {
    pub(crate) number: i64,
    /// The call's first argument: for `futex`, the address waited on.
    pub(crate) first_argument: u64,
    pub(crate) sp: u64,
    pub(crate) pc: u64,
}

/// The numbers of a `stat` line (`/proc/self/stat` or a task's) that the
/// built-ins use. Times are in clock ticks ([`clock_ticks_per_second`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatTimes {
    /// The state letter, as `stat` writes it (`R`, `S`, ...).
    pub(crate) state: char,
    /// Time scheduled in user mode.
    pub(crate) utime: u64,
    /// Time scheduled in kernel mode.
    pub(crate) stime: u64,
    /// Threads in the process.
    pub(crate) num_threads: u64,
    /// When the process (or thread) started, in ticks after boot.
    pub(crate) starttime: u64,
    /// Resident set size, in pages.
    pub(crate) rss_pages: u64,
}

/// The name and the numbers of a `stat` line: `pid (name) S ppid ...`.
/// The name may hold spaces and parentheses, so it ends at the last `)`.
pub(crate) fn parse_stat(line: &str) -> Option<(&str, StatTimes)> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let name = line.get(open + 1..close)?;
    // Field 3 (the state) is the first after the name; `proc(5)` numbers
    // fields from 1.
    let fields: Vec<&str> = line.get(close + 1..)?.split_whitespace().collect();
    let field = |number: usize| fields.get(number - 3).copied();
    let number = |index: usize| field(index)?.parse::<u64>().ok();
    Some((
        name,
        StatTimes {
            state: field(3)?.chars().next()?,
            utime: number(14)?,
            stime: number(15)?,
            num_threads: number(20)?,
            starttime: number(22)?,
            rss_pages: number(24)?,
        },
    ))
}

/// `sysconf(_SC_CLK_TCK)`: the unit of the times in `stat`.
pub(crate) fn clock_ticks_per_second() -> u64 {
    nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .and_then(|ticks| u64::try_from(ticks).ok())
        .filter(|ticks| *ticks > 0)
        .unwrap_or(100)
}

/// A thread's blocked and pending signals, as bit masks (bit `n - 1` for
/// signal `n`).
pub(crate) struct SignalMasks {
    pub(crate) blocked: u64,
    pub(crate) pending: u64,
}

/// How much CPU time thread `tid` of this process has used, in
/// nanoseconds, from its CPU-time clock: one `clock_gettime`, where
/// reading its `stat` file opens, reads and closes a file. `None` once the
/// thread is gone.
pub(crate) fn thread_cpu_ns(tid: i32) -> Option<u64> {
    // The kernel's clock id for a thread's CPU time (its
    // `MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)`): the tid inverted and
    // shifted past the three low bits, which say "per thread" and "sched".
    const PER_THREAD: libc::clockid_t = 4;
    const SCHED: libc::clockid_t = 2;
    let clock = (!tid << 3) | PER_THREAD | SCHED;
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid, writable `timespec`; an unknown or ended
    // thread makes the call fail with EINVAL, nothing else.
    if unsafe { libc::clock_gettime(clock, &mut now) } != 0 {
        return None;
    }
    let seconds = u64::try_from(now.tv_sec).ok()?;
    let nanos = u64::try_from(now.tv_nsec).ok()?;
    Some(seconds * 1_000_000_000 + nanos)
}

/// One thread's `schedstat`, open. (Read by the quiet capture, which is
/// x86_64 only.)
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) struct Scheduling {
    fd: std::os::fd::OwnedFd,
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
impl Scheduling {
    /// How many times the thread has been scheduled onto a CPU: unchanged
    /// across a span means it did not run. `None` once it is gone.
    pub(crate) fn times(&self) -> Option<u64> {
        let mut buffer = [0u8; 128];
        // The file is made anew by each read from its start.
        let len = nix::sys::uio::pread(&self.fd, &mut buffer, 0).ok()?;
        std::str::from_utf8(&buffer[..len])
            .ok()?
            .split_whitespace()
            .nth(2)?
            .parse()
            .ok()
    }
}

impl Tasks {
    pub(crate) fn open() -> Option<Tasks> {
        let dir = nix::fcntl::open(
            "/proc/self/task",
            nix::fcntl::OFlag::O_RDONLY
                | nix::fcntl::OFlag::O_DIRECTORY
                | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        Some(Tasks { dir })
    }

    /// How many threads the process has: the task directory's link count
    /// is two more than its threads. One `fstat`, where listing the threads
    /// reads an entry per thread (and `/proc/self/stat` sums every thread's
    /// times).
    // `st_nlink` is a u64 on x86_64 and a u32 on aarch64.
    #[allow(clippy::useless_conversion)]
    pub(crate) fn count(&self) -> Option<u64> {
        let links = u64::from(nix::sys::stat::fstat(self.dir.as_fd()).ok()?.st_nlink);
        links.checked_sub(2)
    }

    /// Every thread id, in order.
    pub(crate) fn tids(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir("/proc/self/task") else {
            return Vec::new();
        };
        let mut tids: Vec<i32> = entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        tids.sort_unstable();
        tids
    }

    /// Reads `<tid>/<file>` into `buffer`; `None` once the thread is gone.
    fn read<'b>(&self, tid: i32, file: &str, buffer: &'b mut [u8]) -> Option<&'b str> {
        let fd = self.open_file(tid, file)?;
        let len = nix::unistd::read(&fd, buffer).ok()?;
        std::str::from_utf8(&buffer[..len]).ok()
    }

    /// `<tid>/<file>`, open for reading; `None` once the thread is gone.
    fn open_file(&self, tid: i32, file: &str) -> Option<std::os::fd::OwnedFd> {
        nix::fcntl::openat(
            self.dir.as_fd(),
            format!("{tid}/{file}").as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()
    }

    /// Name and state, from `<tid>/stat`.
    pub(crate) fn stat(&self, tid: i32) -> Option<TaskStat> {
        let mut buffer = [0u8; 1024];
        let stat = self.read(tid, "stat", &mut buffer)?;
        // `tid (name) S ...`: the name may hold spaces and parentheses, so
        // it ends at the last `)`.
        let open = stat.find('(')?;
        let close = stat.rfind(')')?;
        let state = stat.get(close + 1..)?.trim_start().chars().next()?;
        Some(TaskStat {
            name: stat.get(open + 1..close)?.to_owned(),
            state: state_word(state),
        })
    }

    /// How many times the thread has been scheduled onto a CPU, from
    /// `<tid>/schedstat`: unchanged across a span means it did not run.
    pub(crate) fn times_scheduled(&self, tid: i32) -> Option<u64> {
        let mut buffer = [0u8; 128];
        let schedstat = self.read(tid, "schedstat", &mut buffer)?;
        schedstat.split_whitespace().nth(2)?.parse().ok()
    }

    /// `<tid>/schedstat`, kept open: how many times the thread has been
    /// scheduled, read again at will with one `pread` and no new `open`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pub(crate) fn scheduling(&self, tid: i32) -> Option<Scheduling> {
        Some(Scheduling {
            fd: self.open_file(tid, "schedstat")?,
        })
    }

    /// How long the thread has run on a CPU, in nanoseconds, from
    /// `<tid>/schedstat`: a thread that waits for a CPU does not add to it.
    pub(crate) fn on_cpu_ns(&self, tid: i32) -> Option<u64> {
        let mut buffer = [0u8; 128];
        let schedstat = self.read(tid, "schedstat", &mut buffer)?;
        schedstat.split_whitespace().next()?.parse().ok()
    }

    /// Where a thread sits in a system call, from `<tid>/syscall`: its
    /// whole line (to compare) and its stack pointer and program counter.
    /// `None` when it is running, or blocked outside a system call.
    pub(crate) fn in_syscall(&self, tid: i32) -> Option<InSyscall> {
        let mut buffer = [0u8; 256];
        let line = self.read(tid, "syscall", &mut buffer)?;
        // `NR arg1 ... arg6 sp pc`; `running`, or `-1 sp pc` outside one.
        let mut fields = line.split_whitespace();
        let number: i64 = fields.next()?.parse().ok()?;
        if number < 0 {
            return None;
        }
        let hex = |field: &str| u64::from_str_radix(field.trim_start_matches("0x"), 16).ok();
        let first_argument = hex(fields.next()?)?;
        let mut rest = fields.skip(5);
        let sp = hex(rest.next()?)?;
        let pc = hex(rest.next()?)?;
        Some(InSyscall {
            number,
            first_argument,
            sp,
            pc,
        })
    }

    /// Blocked and pending signals, from `<tid>/status`.
    pub(crate) fn signal_masks(&self, tid: i32) -> Option<SignalMasks> {
        let mut buffer = [0u8; 4096];
        let status = self.read(tid, "status", &mut buffer)?;
        let mask = |key: &str| {
            status.lines().find_map(|line| {
                let value = line.strip_prefix(key)?.strip_prefix(':')?;
                u64::from_str_radix(value.trim(), 16).ok()
            })
        };
        Some(SignalMasks {
            blocked: mask("SigBlk")?,
            pending: mask("SigPnd")?,
        })
    }
}

/// Thread `tid`'s name (`comm`) in process `pid` (`self` for this one).
pub(crate) fn thread_name(pid: &str, tid: i32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm"))
        .ok()
        .map(|name| name.trim_end().to_owned())
}

/// The state letter of `stat`, as `status` spells it out.
pub(crate) fn state_word(state: char) -> &'static str {
    match state {
        'R' => "running",
        'S' => "sleeping",
        'D' => "disk sleep",
        'T' => "stopped",
        't' => "tracing stop",
        'X' => "dead",
        'Z' => "zombie",
        'P' => "parked",
        'I' => "idle",
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_threads_cpu_clock_counts_its_work_and_an_ended_one_has_none() {
        let tid = nix::unistd::gettid().as_raw();
        // Spin until the thread's own clock (as libc names it) says 10 ms
        // of work, not for a wall time: on a busy machine 30 ms of wall
        // time can be 9 ms of CPU.
        let own_clock = || {
            let mut now = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `now` is a valid, writable `timespec`.
            let read = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
            assert_eq!(read, 0);
            now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
        };
        let before = thread_cpu_ns(tid).expect("this thread's clock");
        let own_start = own_clock();
        while own_clock() - own_start < 10_000_000 {
            std::hint::black_box(0u64);
        }
        let after = thread_cpu_ns(tid).expect("this thread's clock");
        assert!(after - before >= 10_000_000, "{before} then {after}");
        let ended = std::thread::spawn(|| nix::unistd::gettid().as_raw())
            .join()
            .unwrap();
        assert_eq!(thread_cpu_ns(ended), None);
    }

    #[test]
    fn this_thread_is_described() {
        let tasks = Tasks::open().unwrap();
        let me = nix::unistd::gettid().as_raw();
        assert!(tasks.tids().contains(&me));
        let stat = tasks.stat(me).unwrap();
        assert_eq!(stat.state, "running");
        assert!(!stat.name.is_empty());
        let masks = tasks.signal_masks(me).unwrap();
        assert_eq!(masks.pending, 0);
        assert!(tasks.stat(i32::MAX).is_none());
    }

    #[test]
    fn stat_lines_with_odd_names_parse() {
        let line = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0 1234 1000000 250 18446744073709551615";
        let (name, times) = parse_stat(line).unwrap();
        assert_eq!(name, "a (b) c");
        assert_eq!(
            times,
            StatTimes {
                state: 'S',
                utime: 7,
                stime: 3,
                num_threads: 5,
                starttime: 1234,
                rss_pages: 250
            }
        );
        assert!(parse_stat("42 (x) S 1 2").is_none());
    }
}
