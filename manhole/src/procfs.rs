//! This process's threads as `/proc/self/task` describes them.
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
    pub(crate) sp: u64,
    pub(crate) pc: u64,
}

/// A thread's blocked and pending signals, as bit masks (bit `n - 1` for
/// signal `n`).
pub(crate) struct SignalMasks {
    pub(crate) blocked: u64,
    pub(crate) pending: u64,
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
        let fd = nix::fcntl::openat(
            self.dir.as_fd(),
            format!("{tid}/{file}").as_str(),
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .ok()?;
        let len = nix::unistd::read(&fd, buffer).ok()?;
        std::str::from_utf8(&buffer[..len]).ok()
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
        let mut rest = fields.skip(6);
        let hex = |field: &str| u64::from_str_radix(field.trim_start_matches("0x"), 16).ok();
        let sp = hex(rest.next()?)?;
        let pc = hex(rest.next()?)?;
        Some(InSyscall { number, sp, pc })
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

/// The state letter of `stat`, as `status` spells it out.
fn state_word(state: char) -> &'static str {
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
}
