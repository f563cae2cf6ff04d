//! Crash reports: what the process leaves behind when it dies on a fatal
//! signal (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`, `SIGABRT`, and a stack
//! overflow, which arrives as `SIGSEGV` on the alternate signal stack).
//!
//! # Two contexts
//!
//! [`install`] and [`uninstall`] run in *normal context*: they allocate,
//! read `/proc` and the module list, and build everything the handler will
//! need ([`Prepared`]), which is then never freed while it can be read.
//!
//! [`on_fatal`] runs in *compromised context*: the crash may have happened
//! inside `malloc` with the allocator's lock held, inside a manhole dump,
//! or in two threads at once. From there on the process allocates nothing,
//! takes no lock it could wait on, and calls only async-signal-safe
//! functions (the primitives of [`super::signal_safe`]).
//!
//! # Steps, each bounded
//!
//! 1. The first thread to crash claims the report with a compare-and-swap
//!    on [`CRASHING`]; any other thread that crashes meanwhile waits for
//!    the process to die.
//! 2. The raw report is written, section by section, to the report file
//!    (`O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600, a numbered suffix when
//!    the name is taken) and to an anonymous memory file. It names frames
//!    by address, module and offset only, and its first line says `(raw)`.
//!    A fault inside a section re-enters the handler (`SA_NODEFER`), which
//!    writes `[error while writing SECTION]` and goes on with the next
//!    section; a second fault in the same section gives up.
//! 3. The socket file is unlinked, so no stale socket stays behind.
//! 4. The symboliser is started out of process: a raw `clone` (no fork
//!    handlers, no locks) and `execve` of `/proc/self/exe`, whose start-up
//!    code ([`super::helper`]) sees `MANHOLE_CRASH_HELPER` and, before the
//!    program's `main`, stops every thread with `ptrace`, unwinds and
//!    symbolises them, and replaces the raw report with the symbolised one.
//!    The dying process waits for it at most `crash_timeout`; without it,
//!    the raw report goes to stderr.
//! 5. The process dies as it would have: the action that was there before
//!    the manhole's is put back, and the signal taken again (a hardware
//!    fault simply repeats on return; `SIGABRT` and sent signals are raised
//!    with `tgkill`). std's stack-overflow message, or a reporter the
//!    program installed itself, runs then; without one the default action
//!    kills the process and writes a core dump where the system does.

use super::helper;
use super::sections;
use super::signal_safe as safe;
use super::state::{
    Prepared, ReportFile, FATAL, LAST_LINE, ORIGINAL_CONTEXT, ORIGINAL_INFO, ORIGINAL_SIGNAL, OUT,
    REPORT_PATH, SHARED,
};
use crate::os::modules;
use crate::os::{interrupted, signals};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The report's sections, in order; the helper finds them by these titles.
pub(crate) const SECTIONS: [&str; 9] = [
    "first line",
    "header",
    "crashing thread",
    "registers",
    "threads",
    "in-flight calls",
    "recent log events",
    "the last minute",
    "modules",
];

/// What a crash report is written with, from the installed options.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The report file's path template (`{pid}` is filled in); `None` for
    /// stderr only.
    pub(crate) file: Option<String>,
    /// The longest the dying process waits for the symbolised report.
    pub(crate) timeout: Duration,
    /// The manhole's socket, removed before the process dies.
    pub(crate) socket_path: std::path::PathBuf,
}

/// The action each fatal signal had before ours, while ours is installed.
static PREVIOUS: [AtomicPtr<libc::sigaction>; FATAL.len()] =
    [const { AtomicPtr::new(std::ptr::null_mut()) }; FATAL.len()];
static PREPARED: AtomicPtr<Prepared> = AtomicPtr::new(std::ptr::null_mut());
/// Installs and uninstalls take turns.
static TURN: Mutex<()> = Mutex::new(());

/// The thread writing the report (0: none yet).
static CRASHING: AtomicI32 = AtomicI32::new(0);
/// The section being written, and the last one a fault interrupted.
static SECTION: AtomicU32 = AtomicU32::new(0);
static FAULTED: AtomicU32 = AtomicU32::new(u32::MAX);
/// The report file and the memory file that keeps the raw report for the
/// helper and for stderr.
static FILE_FD: AtomicI32 = AtomicI32::new(-1);
static SCRATCH_FD: AtomicI32 = AtomicI32::new(-1);

/// The socket this process bound, by device and inode; `[0, 0]` while
/// there is none (before the bind, in a dormant manhole, after install
/// failed): a crash unlinks only that file.
static SOCKET_IDENTITY: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];
/// The write end of the pipe that tells the listener the process survived
/// a fatal signal (-1 before the first install).
static SURVIVAL_WRITE: AtomicI32 = AtomicI32::new(-1);
static SURVIVAL_READ: AtomicI32 = AtomicI32::new(-1);
/// The process that made the survival pipe: a forked child makes its own.
static SURVIVAL_PID: AtomicI32 = AtomicI32::new(0);

/// Records the socket file the listener bound (`None` once it is gone),
/// so that a crash removes that file and never one that replaced it.
/// Normal context.
pub(crate) fn socket_bound(identity: Option<(u64, u64)>) {
    let (device, inode) = identity.unwrap_or((0, 0));
    // The device goes to 0 first and is set last: a handler reading in
    // between sees a pair that matches no file, and removes nothing.
    SOCKET_IDENTITY[0].store(0, Ordering::Release);
    SOCKET_IDENTITY[1].store(inode, Ordering::Release);
    SOCKET_IDENTITY[0].store(device, Ordering::Release);
}

/// The read end of the pipe written when the process survives a fatal
/// signal: the listener then puts its socket back. Normal context.
pub(crate) fn survivals() -> Option<std::os::fd::BorrowedFd<'static>> {
    let fd = SURVIVAL_READ.load(Ordering::Acquire);
    // SAFETY: made at install and never closed.
    (fd >= 0).then(|| unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) })
}

/// Empties the survival pipe; `true` when it held anything. Normal
/// context.
pub(crate) fn drain_survivals() -> bool {
    let fd = SURVIVAL_READ.load(Ordering::Acquire);
    let mut any = false;
    let mut buffer = [0u8; 16];
    // SAFETY: reads into `buffer` from our own non-blocking pipe.
    while fd >= 0 && unsafe { libc::read(fd, buffer.as_mut_ptr().cast(), buffer.len()) } > 0 {
        any = true;
    }
    any
}

/// Makes the survival pipe, once per process. Normal context.
fn make_survival_pipe() {
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() };
    if SURVIVAL_PID.load(Ordering::Acquire) == pid {
        return;
    }
    // A forked child's inherited pipe is its parent's too: each process
    // gets its own, so that one's wake-up never reaches the other.
    for end in [&SURVIVAL_WRITE, &SURVIVAL_READ] {
        let fd = end.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: this process's copy of the inherited descriptor.
            unsafe { libc::close(fd) };
        }
    }
    let mut pipe = [-1; 2];
    // SAFETY: pipe2 fills two descriptors.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } == 0 {
        SURVIVAL_WRITE.store(pipe[1], Ordering::Release);
        SURVIVAL_READ.store(pipe[0], Ordering::Release);
        SURVIVAL_PID.store(pid, Ordering::Release);
    }
}

/// Installs the crash handler for every fatal signal. Normal context.
///
/// Installing again (a new manhole) keeps the actions saved the first
/// time, so the chain never loops back to us.
pub(crate) fn install(settings: &Settings) -> std::io::Result<()> {
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let facts = crate::os::process::facts();
    let modules = modules::loaded();
    let exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    let build_id = modules
        .iter()
        .find(|module| Path::new(&module.path) == exe)
        .map(|module| module.build_id.clone())
        .unwrap_or_default();
    let prepared = Box::new(Prepared {
        // SAFETY: getpid cannot fail.
        pid: unsafe { libc::getpid() },
        file: settings.file.as_deref().and_then(report_file),
        timeout_ms: u64::try_from(settings.timeout.as_millis()).unwrap_or(u64::MAX),
        socket_path: CString::new(settings.socket_path.as_os_str().as_bytes()).unwrap_or_default(),
        exe: CString::new(exe.as_os_str().as_bytes()).unwrap_or_default(),
        build_id,
        modules,
        uptime_at_install_ms: facts.uptime_s.map_or(0, |s| (s * 1000.0) as u64),
        monotonic_at_install_ms: safe::monotonic_ms(),
    });
    make_secret();
    make_survival_pipe();
    // The previous `Prepared` may still be read by a handler running now;
    // it is left allocated (a few kilobytes per reinstall).
    PREPARED.store(Box::into_raw(prepared), Ordering::Release);
    for (index, (signal, _)) in FATAL.iter().enumerate() {
        if !PREVIOUS[index].load(Ordering::Acquire).is_null() {
            continue;
        }
        let previous = signals::take_fatal(*signal, on_fatal)?;
        PREVIOUS[index].store(Box::into_raw(Box::new(previous)), Ordering::Release);
    }
    Ok(())
}

/// The directory a report goes to, opened now, and the file's name in it
/// (`{uid}` filled in). The default directory, `/tmp/manhole-crashes-UID/`,
/// is the manhole's own: made 0700 when missing, and used only when it is
/// a real directory of this user that nobody else may write, so that no
/// other user can plant or squat the report's name. Another directory is
/// the user's choice, taken as it is; one that cannot be opened yet is
/// looked up by path at the crash. `None` (stderr only, said on stderr
/// now) when the private directory is not safe. Normal context.
fn report_file(template: &str) -> Option<ReportFile> {
    use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _};
    // SAFETY: geteuid cannot fail.
    let uid = unsafe { libc::geteuid() };
    let template = template.replace("{uid}", &uid.to_string());
    let private = is_private_dir(&template, uid);
    let (dir, name) = match template.rsplit_once('/') {
        Some(("", name)) => ("/", name),
        Some((dir, name)) => (dir, name),
        None => (".", template.as_str()),
    };
    let fallback = || ReportFile {
        dir: libc::AT_FDCWD,
        dir_path: Vec::new(),
        name: template.as_bytes().to_vec(),
    };
    if private {
        let _ = std::fs::DirBuilder::new().mode(0o700).create(dir);
    }
    let Ok(path) = CString::new(dir) else {
        return Some(fallback());
    };
    let mut flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    if private {
        flags |= libc::O_NOFOLLOW;
    }
    // SAFETY: a NUL-terminated path; the descriptor is ours, kept for the
    // life of the process.
    let fd = unsafe { libc::open(path.as_ptr(), flags) };
    if fd < 0 {
        if private {
            crate::log::always(format_args!(
                "crash reports go to stderr only: cannot open {dir}: {}",
                std::io::Error::last_os_error()
            ));
            return None;
        }
        return Some(fallback());
    }
    if private {
        let safe = std::fs::metadata(format!("/proc/self/fd/{fd}"))
            .is_ok_and(|meta| meta.is_dir() && meta.uid() == uid && meta.mode() & 0o022 == 0);
        if !safe {
            // SAFETY: our own descriptor.
            unsafe { libc::close(fd) };
            crate::log::always(format_args!(
                "crash reports go to stderr only: {dir} is not a directory that only uid {uid} may write; remove it, or set crash_file"
            ));
            return None;
        }
    }
    let mut dir_path = dir.as_bytes().to_vec();
    if !dir_path.ends_with(b"/") {
        dir_path.push(b'/');
    }
    Some(ReportFile {
        dir: fd,
        dir_path,
        name: name.as_bytes().to_vec(),
    })
}

/// Whether the report's directory (of `filled`, a template whose `{uid}`
/// is filled in) is the manhole's own private one, the default's.
fn is_private_dir(filled: &str, uid: libc::uid_t) -> bool {
    let private = crate::options::DEFAULT_CRASH_FILE.replace("{uid}", &uid.to_string());
    let private_dir = private.rsplit_once('/').map_or("", |(dir, _)| dir);
    filled.rsplit_once('/').map_or("", |(dir, _)| dir) == private_dir
}

/// Makes the secret a helper must show (once per process image: a forked
/// child keeps its parent's, which it may read anyway). Normal context.
fn make_secret() {
    if SHARED
        .token
        .iter()
        .any(|word| word.load(Ordering::Acquire) != 0)
    {
        return;
    }
    let mut bytes = [0u8; 16];
    // SAFETY: getrandom fills `bytes`; a short or failed read leaves
    // zeroes, checked below.
    let filled = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    // Without randomness no helper can prove itself: the raw report stays.
    if filled != 16 {
        return;
    }
    for (word, chunk) in SHARED.token.iter().zip(bytes.chunks_exact(8)) {
        let value = u64::from_ne_bytes(chunk.try_into().unwrap_or([0; 8]));
        word.store(value, Ordering::Release);
    }
}

/// Gives every fatal signal back the action it had before [`install`].
/// Normal context.
pub(crate) fn uninstall() {
    let _turn = TURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    PREPARED.store(std::ptr::null_mut(), Ordering::Release);
    for (index, (signal, _)) in FATAL.iter().enumerate() {
        let previous = PREVIOUS[index].swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !previous.is_null() {
            // SAFETY: stored by `install` from a Box, and swapped out here
            // once; a handler that read it before the swap only reads it,
            // so it is left allocated.
            signals::restore(*signal, unsafe { &*previous });
        }
    }
}

/// The handler of every fatal signal. Compromised context.
extern "C" fn on_fatal(
    signal: libc::c_int,
    info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    let saved_errno = safe::errno();
    let tid = safe::gettid();
    let prepared = PREPARED.load(Ordering::Acquire);
    if prepared.is_null() {
        die(signal, info);
        safe::set_errno(saved_errno);
        return;
    }
    // SAFETY: never freed once stored (see `install`).
    let prepared = unsafe { &*prepared };
    match CRASHING.compare_exchange(0, tid, Ordering::AcqRel, Ordering::Acquire) {
        Ok(_) => {
            ORIGINAL_SIGNAL.store(signal, Ordering::Release);
            ORIGINAL_INFO.store(info, Ordering::Release);
            ORIGINAL_CONTEXT.store(context, Ordering::Release);
            let registers = interrupted::registers(context);
            SHARED.pc.store(registers.pc, Ordering::Release);
            SHARED.sp.store(registers.sp, Ordering::Release);
            SHARED.fp.store(registers.fp, Ordering::Release);
            SHARED.lr.store(registers.lr, Ordering::Release);
            open_outputs(prepared);
            write_sections(prepared, 0);
            finish(prepared);
        }
        Err(owner) if owner == tid => {
            // A fault inside our own report.
            let section = SECTION.load(Ordering::Acquire);
            if section as usize >= SECTIONS.len() {
                // The report is out and this signal is on the way to death
                // (std's overflow handler aborts, say): it takes its own
                // previous action.
                die(signal, info);
                safe::set_errno(saved_errno);
                return;
            } else if FAULTED.swap(section, Ordering::AcqRel) == section {
                OUT.str("[a second fault while writing ");
                OUT.str(SECTIONS[section as usize % SECTIONS.len()]);
                OUT.str("; giving up]\n");
            } else {
                OUT.str("\n[error while writing ");
                OUT.str(SECTIONS[section as usize % SECTIONS.len()]);
                OUT.str("]\n");
                write_sections(prepared, section as usize + 1);
                finish(prepared);
            }
        }
        Err(_) => {
            // Another thread reports; it ends the process when done, within
            // the timeout. Should it not, die all the same.
            let deadline = safe::monotonic_ms() + prepared.timeout_ms + 5_000;
            while safe::monotonic_ms() < deadline {
                safe::sleep_ms(100);
            }
            die(signal, info);
            safe::set_errno(saved_errno);
            return;
        }
    }
    let original = ORIGINAL_SIGNAL.load(Ordering::Acquire);
    if die(original, ORIGINAL_INFO.load(Ordering::Acquire)) {
        // A sent signal whose chained handler returned: the process lives
        // on, and so does its manhole.
        survived();
    }
    safe::set_errno(saved_errno);
}

/// Takes the fatal signals back and forgets the report, after a fatal
/// signal the process survived; wakes the listener to put its socket back.
/// Compromised context.
fn survived() {
    for (signal, _) in FATAL {
        let _ = signals::take_fatal(signal, on_fatal);
    }
    for descriptor in [&FILE_FD, &SCRATCH_FD] {
        let fd = descriptor.swap(-1, Ordering::AcqRel);
        if fd >= 0 {
            // SAFETY: our own descriptor; close is async-signal-safe.
            unsafe { libc::close(fd) };
        }
    }
    OUT.clear();
    SECTION.store(0, Ordering::Release);
    FAULTED.store(u32::MAX, Ordering::Release);
    CRASHING.store(0, Ordering::Release);
    let wake = SURVIVAL_WRITE.load(Ordering::Acquire);
    if wake >= 0 {
        safe::write_all(wake, b"1");
    }
}

/// Whether a thread is writing a crash report: the process is dying, and
/// the listener must not put its socket back. Normal context.
pub(crate) fn dying() -> bool {
    CRASHING.load(Ordering::Acquire) != 0
}

/// Puts every fatal signal's previous action back and lets the signal
/// take it: the report is out, and a follow-up signal (std's overflow
/// handler aborts) must not run this handler again on top of the first,
/// which would overflow a small alternate stack. Returns `true` when it
/// raised a sent signal again and is still alive. Compromised context.
fn die(signal: libc::c_int, info: *mut libc::siginfo_t) -> bool {
    for (index, (fatal, _)) in FATAL.iter().enumerate() {
        let previous = PREVIOUS[index].load(Ordering::Acquire);
        // SAFETY: never freed once stored.
        match unsafe { previous.as_ref() } {
            Some(previous) if signals::runs_a_handler(previous) => {
                signals::restore(*fatal, previous);
            }
            _ => signals::restore(*fatal, &default_action()),
        }
    }
    // A fault raised by the hardware repeats when the handler returns; an
    // abort or a signal someone sent does not, so it is raised again.
    let sent = info.is_null()
        // SAFETY: the kernel's siginfo for this signal.
        || unsafe { (*info).si_code } <= 0
        || signal == libc::SIGABRT;
    if sent {
        // SAFETY: tgkill to this very thread; async-signal-safe.
        unsafe {
            libc::syscall(libc::SYS_tgkill, libc::getpid(), safe::gettid(), signal);
        }
    }
    sent
}

fn default_action() -> libc::sigaction {
    // SAFETY: all zeroes is a valid sigaction: SIG_DFL, no flags, an empty
    // mask.
    unsafe { std::mem::zeroed() }
}

/// Opens the report file and the memory file. Compromised context.
fn open_outputs(prepared: &Prepared) {
    OUT.clear();
    // SAFETY: memfd_create with a constant name; async-signal-safe syscall.
    let scratch = unsafe {
        libc::syscall(
            libc::SYS_memfd_create,
            c"manhole-crash".as_ptr(),
            libc::MFD_CLOEXEC,
        ) as libc::c_int
    };
    if scratch >= 0 {
        SCRATCH_FD.store(scratch, Ordering::Release);
        OUT.add(scratch);
    }
    let Some(file) = &prepared.file else {
        return;
    };
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() } as u64;
    // SAFETY: only the reporting thread gets here.
    let path = unsafe { &mut *REPORT_PATH.get() };
    static NAME: safe::ReporterOnly<safe::PathBuf<4096>> =
        safe::ReporterOnly::new(safe::PathBuf::new());
    // SAFETY: only the reporting thread gets here.
    let name = unsafe { &mut *NAME.get() };
    for attempt in 0..100u64 {
        if !fill_template(name, &file.name, pid)
            || (attempt > 0 && !(name.push(b".") && name.push_dec(attempt)))
        {
            path.clear();
            return;
        }
        path.clear();
        if !(path.push(&file.dir_path) && path.push(name.as_bytes())) {
            path.clear();
            return;
        }
        // SAFETY: a NUL-terminated name in a directory opened at install;
        // openat is async-signal-safe. Close-on-exec: only the helper gets
        // it, by name, in the child.
        let fd = unsafe {
            libc::openat(
                file.dir,
                name.as_cstr().as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd >= 0 {
            FILE_FD.store(fd, Ordering::Release);
            OUT.add(fd);
            return;
        }
        if safe::errno() != libc::EEXIST && safe::errno() != libc::ELOOP {
            break;
        }
    }
    // No file: the header says so, not a name that was never created.
    path.clear();
}

/// `template` with `{pid}` replaced by `pid`.
fn fill_template<const N: usize>(path: &mut safe::PathBuf<N>, template: &[u8], pid: u64) -> bool {
    path.clear();
    let mut rest = template;
    while !rest.is_empty() {
        if rest.starts_with(b"{pid}") {
            if !path.push_dec(pid) {
                return false;
            }
            rest = &rest[5..];
        } else {
            if !path.push(&rest[..1]) {
                return false;
            }
            rest = &rest[1..];
        }
    }
    true
}

/// Writes the sections from `first` on. Compromised context.
fn write_sections(prepared: &Prepared, first: usize) {
    for section in first..SECTIONS.len() {
        SECTION.store(section as u32, Ordering::Release);
        match section {
            0 => sections::first_line(),
            1 => sections::header(prepared),
            2 => sections::crashing_thread(prepared),
            3 => sections::registers(),
            4 => sections::threads(),
            5 => sections::in_flight_calls(),
            6 => sections::recent_log_events(),
            7 => sections::last_minute(),
            _ => sections::module_list(prepared),
        }
    }
    SECTION.store(SECTIONS.len() as u32, Ordering::Release);
    OUT.str(LAST_LINE);
    OUT.str("\n");
}

/// Removes the socket, runs the helper, and makes sure stderr gets one
/// report. Compromised context.
fn finish(prepared: &Prepared) {
    remove_socket(prepared);
    let symbolised = run_helper(prepared);
    remove_socket(prepared);
    let scratch = SCRATCH_FD.load(Ordering::Acquire);
    if !symbolised && scratch >= 0 {
        copy_to_stderr(scratch);
    }
    // Taken out, so that a survived signal does not close it again.
    let file = FILE_FD.swap(-1, Ordering::AcqRel);
    if file >= 0 {
        // SAFETY: our own descriptor; fsync and close are
        // async-signal-safe.
        unsafe {
            libc::fsync(file);
            libc::close(file);
        }
    }
}

/// Removes the socket file, only in the process that created it, and only
/// while the path still names the socket it bound. Compromised context.
fn remove_socket(prepared: &Prepared) {
    let device = SOCKET_IDENTITY[0].load(Ordering::Acquire);
    let inode = SOCKET_IDENTITY[1].load(Ordering::Acquire);
    // SAFETY: getpid cannot fail.
    if unsafe { libc::getpid() } != prepared.pid
        || prepared.socket_path.is_empty()
        || (device, inode) == (0, 0)
    {
        return;
    }
    // SAFETY: a NUL-terminated path; fstatat and unlinkat are
    // async-signal-safe, and the stat is plain data.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        let path = prepared.socket_path.as_ptr();
        #[allow(clippy::useless_conversion)]
        let same = libc::fstatat(libc::AT_FDCWD, path, &mut stat, libc::AT_SYMLINK_NOFOLLOW) == 0
            && stat.st_mode & libc::S_IFMT == libc::S_IFSOCK
            && (u64::from(stat.st_dev), u64::from(stat.st_ino)) == (device, inode);
        if same {
            libc::unlinkat(libc::AT_FDCWD, path, 0);
        }
    }
}

fn copy_to_stderr(fd: libc::c_int) {
    static BUFFER: safe::ReporterOnly<[u8; 4096]> = safe::ReporterOnly::new([0; 4096]);
    let mut offset: libc::off_t = 0;
    loop {
        // SAFETY: only the reporting thread gets here; pread is
        // async-signal-safe and writes into the static buffer.
        let read = unsafe { libc::pread(fd, BUFFER.get().cast(), 4096, offset) };
        if read <= 0 {
            return;
        }
        // SAFETY: the bytes just read.
        let chunk = unsafe { std::slice::from_raw_parts(BUFFER.get().cast::<u8>(), read as usize) };
        if !safe::write_all(2, chunk) {
            return;
        }
        offset += read as libc::off_t;
    }
}

/// Starts the symboliser and waits for it, at most `crash_timeout`.
/// `true` when it wrote the symbolised report. Compromised context.
///
/// The child gets exactly three descriptors (the raw report's memory file,
/// the report file, the read end of a pipe): every descriptor of the crash
/// path is close-on-exec, and the child clears that flag on these three
/// only, between `clone` and `execve`. Once the child's PID is known, it
/// alone is named this process's tracer, and only then is the secret sent
/// down the pipe: the helper waits for it before it traces anything.
fn run_helper(prepared: &Prepared) -> bool {
    static ENVIRONMENT: safe::ReporterOnly<[u8; 256]> = safe::ReporterOnly::new([0; 256]);
    static ENVP: safe::ReporterOnly<[*const libc::c_char; 1024]> =
        safe::ReporterOnly::new([std::ptr::null(); 1024]);
    static ARGV: safe::ReporterOnly<[*const libc::c_char; 2]> =
        safe::ReporterOnly::new([std::ptr::null(); 2]);
    static VARIABLE: safe::ReporterOnly<safe::PathBuf<256>> =
        safe::ReporterOnly::new(safe::PathBuf::new());
    let scratch = SCRATCH_FD.load(Ordering::Acquire);
    // Taken out, so that a survived signal does not close it again.
    let file = FILE_FD.swap(-1, Ordering::AcqRel);
    if scratch < 0 || prepared.timeout_ms == 0 {
        return false;
    }
    let secret: [u64; 2] = [
        SHARED.token[0].load(Ordering::Acquire),
        SHARED.token[1].load(Ordering::Acquire),
    ];
    if secret == [0, 0] {
        return false;
    }
    let mut pipe = [-1; 2];
    // SAFETY: pipe2 fills two descriptors; async-signal-safe.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return false;
    }
    let [secret_read, secret_write] = pipe;
    // SAFETY: only the reporting thread gets here.
    let variable = unsafe { &mut *VARIABLE.get() };
    variable.clear();
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() } as u64;
    let built = variable.push(helper::VARIABLE.as_bytes())
        && variable.push(b"=")
        && variable.push_dec(pid)
        && variable.push(b" ")
        && variable.push_dec(safe::gettid() as u64)
        && variable.push(b" ")
        && variable.push_dec(scratch as u64)
        && variable.push(b" ")
        && push_signed(variable, file)
        && variable.push(b" ")
        && variable.push_dec(secret_read as u64);
    if !built {
        close_both(pipe);
        return false;
    }
    // SAFETY: only the reporting thread writes these statics, before the
    // clone; the child only reads them for execve.
    unsafe {
        let environment = &mut *ENVIRONMENT.get();
        let bytes = variable.as_bytes();
        environment[..bytes.len()].copy_from_slice(bytes);
        environment[bytes.len()] = 0;
        let envp = &mut *ENVP.get();
        envp[0] = environment.as_ptr().cast();
        let mut count = 1;
        let mut inherited = environ_pointer();
        while !inherited.is_null() && !(*inherited).is_null() && count < envp.len() - 1 {
            let entry = std::ffi::CStr::from_ptr(*inherited).to_bytes();
            if !entry.starts_with(helper::VARIABLE.as_bytes()) {
                envp[count] = *inherited;
                count += 1;
            }
            inherited = inherited.add(1);
        }
        envp[count] = std::ptr::null();
        let argv = &mut *ARGV.get();
        argv[0] = helper::ARGV0.as_ptr();
        argv[1] = std::ptr::null();
    }
    SHARED.done.store(0, Ordering::Release);
    // A raw clone: no fork handlers run and no lock is taken; the child
    // only clears three close-on-exec flags and calls execve.
    // SAFETY: with only SIGCHLD as flags, clone behaves as fork; the child
    // touches nothing but the statics prepared above before execve.
    let child =
        unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0) };
    if child == 0 {
        // SAFETY: fcntl on our own descriptors, then execve with
        // NUL-terminated arrays prepared above; on failure the child ends
        // at once.
        unsafe {
            for fd in [scratch, file, secret_read] {
                if fd >= 0 {
                    libc::syscall(libc::SYS_fcntl, fd, libc::F_SETFD, 0);
                }
            }
            libc::syscall(
                libc::SYS_execve,
                c"/proc/self/exe".as_ptr(),
                ARGV.get().cast::<*const libc::c_char>(),
                ENVP.get().cast::<*const libc::c_char>(),
            );
            libc::syscall(libc::SYS_exit_group, 127);
        }
        return false;
    }
    // SAFETY: our own descriptor; the child has its copy.
    unsafe { libc::close(secret_read) };
    if child < 0 {
        // SAFETY: our own descriptor.
        unsafe { libc::close(secret_write) };
        return false;
    }
    let child = child as libc::pid_t;
    // Only the helper may trace us while we wait: it is our child, not our
    // ancestor, which Yama's scope 1 would otherwise refuse. Without Yama
    // the call fails and nothing needs it.
    // SAFETY: prctl is a plain syscall.
    unsafe { libc::prctl(libc::PR_SET_PTRACER, child as libc::c_ulong, 0, 0, 0) };
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&secret[0].to_ne_bytes());
    bytes[8..].copy_from_slice(&secret[1].to_ne_bytes());
    safe::write_all(secret_write, &bytes);
    // SAFETY: our own descriptor.
    unsafe { libc::close(secret_write) };
    let deadline = safe::monotonic_ms().saturating_add(prepared.timeout_ms);
    let symbolised = loop {
        if SHARED.done.load(Ordering::Acquire) == 1 {
            reap(child);
            break true;
        }
        let mut status = 0;
        // SAFETY: waitpid is async-signal-safe.
        let waited = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if waited == child || (waited < 0 && safe::errno() == libc::ECHILD) {
            break SHARED.done.load(Ordering::Acquire) == 1;
        }
        if safe::monotonic_ms() >= deadline {
            // SAFETY: our own child.
            unsafe { libc::kill(child, libc::SIGKILL) };
            reap(child);
            OUT.str("[the symboliser did not finish within crash_timeout]\n");
            break false;
        }
        safe::sleep_ms(5);
    };
    // SAFETY: prctl is a plain syscall; the helper is gone.
    unsafe { libc::prctl(libc::PR_SET_PTRACER, 0, 0, 0, 0) };
    symbolised
}

fn close_both(pipe: [libc::c_int; 2]) {
    for fd in pipe {
        // SAFETY: our own descriptors; close is async-signal-safe.
        unsafe { libc::close(fd) };
    }
}

fn reap(child: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waits for our own child, which has ended or been killed.
    unsafe { libc::waitpid(child, &mut status, 0) };
}

fn push_signed<const N: usize>(path: &mut safe::PathBuf<N>, value: i32) -> bool {
    if value < 0 {
        path.push(b"-") && path.push_dec(u64::from(value.unsigned_abs()))
    } else {
        path.push_dec(value as u64)
    }
}

fn environ_pointer() -> *const *const libc::c_char {
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: libc's environment pointer; read, never written.
    unsafe { environ }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_takes_the_pid() {
        let mut path = safe::PathBuf::<64>::new();
        assert!(fill_template(&mut path, b"/tmp/crash-{pid}.txt", 42));
        assert_eq!(path.as_bytes(), b"/tmp/crash-42.txt");
        assert!(!fill_template(&mut path, &[b'x'; 80], 1));
    }
}
