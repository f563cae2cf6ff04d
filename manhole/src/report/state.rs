//! What the crash handler and the report's sections share: the signals,
//! what [`super::crash::install`] prepared, where the report goes, and
//! what the first fault left. Written once by the one thread that reports
//! (or at install), read by it and by the helper.

use super::signal_safe::{Out, PathBuf, ReporterOnly};
use crate::os::modules::Module;
use std::ffi::CString;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU64};

/// The fatal signals, by name.
pub(super) const FATAL: [(libc::c_int, &str); 5] = [
    (libc::SIGSEGV, "SIGSEGV"),
    (libc::SIGBUS, "SIGBUS"),
    (libc::SIGILL, "SIGILL"),
    (libc::SIGFPE, "SIGFPE"),
    (libc::SIGABRT, "SIGABRT"),
];

/// The first line of every report starts with this.
pub(crate) const FIRST_LINE: &str = "manhole crash report";
/// The last line of a complete report.
pub(crate) const LAST_LINE: &str = "end of manhole crash report";

/// Everything the handler reads, built in normal context at install.
pub(super) struct Prepared {
    pub(super) pid: libc::pid_t,
    pub(super) file: Option<ReportFile>,
    pub(super) timeout_ms: u64,
    pub(super) socket_path: CString,
    pub(super) exe: CString,
    pub(super) build_id: String,
    pub(super) modules: Vec<Module>,
    pub(super) uptime_at_install_ms: u64,
    pub(super) monotonic_at_install_ms: u64,
}

/// Where the report file goes, opened at install: a directory, and the
/// file's name template in it (`{pid}` filled in at the crash).
pub(super) struct ReportFile {
    /// The directory, open (`O_PATH`); `AT_FDCWD` when it could not be
    /// opened at install, and `name` is then the whole path template.
    pub(super) dir: libc::c_int,
    /// The directory's path and a `/` (empty with `AT_FDCWD`), for the
    /// header's `report file:` line.
    pub(super) dir_path: Vec<u8>,
    pub(super) name: Vec<u8>,
}

/// The first fault's signal, info and context, for the sections written
/// after a second fault and for dying.
pub(super) static ORIGINAL_SIGNAL: AtomicI32 = AtomicI32::new(0);
pub(super) static ORIGINAL_INFO: AtomicPtr<libc::siginfo_t> = AtomicPtr::new(std::ptr::null_mut());
pub(super) static ORIGINAL_CONTEXT: AtomicPtr<libc::c_void> = AtomicPtr::new(std::ptr::null_mut());

pub(super) static OUT: Out = Out::new();
/// What the helper reads from, and writes to, the crashed process: the
/// crashing thread's registers at the fault, whether it finished, and the
/// secret that proves a helper was started by this process's crash.
#[repr(C)]
pub(crate) struct Shared {
    pub(crate) pc: AtomicU64,
    pub(crate) sp: AtomicU64,
    pub(crate) fp: AtomicU64,
    pub(crate) lr: AtomicU64,
    pub(crate) done: AtomicU64,
    /// 128 random bits made at install (zero before): the dying process
    /// sends them through a pipe only its helper gets, and the helper
    /// compares them with these words before it traces anything.
    pub(crate) token: [AtomicU64; 2],
}

pub(super) static SHARED: Shared = Shared {
    pc: AtomicU64::new(0),
    sp: AtomicU64::new(0),
    fp: AtomicU64::new(0),
    lr: AtomicU64::new(0),
    done: AtomicU64::new(0),
    token: [AtomicU64::new(0), AtomicU64::new(0)],
};

/// The report file's path, once opened (empty until then, or for stderr
/// only), for the header. Written only by the reporting thread.
pub(super) static REPORT_PATH: ReporterOnly<PathBuf<4096>> = ReporterOnly::new(PathBuf::new());

pub(super) fn index_of(signal: libc::c_int) -> Option<usize> {
    FATAL.iter().position(|(fatal, _)| *fatal == signal)
}

pub(super) fn signal_name(signal: libc::c_int) -> &'static str {
    index_of(signal).map_or("signal", |index| FATAL[index].1)
}
