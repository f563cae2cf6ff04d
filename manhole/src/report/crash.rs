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

use super::sections;
use super::signal_safe as safe;
use super::state::{
    index_of, Prepared, Shared, FATAL, LAST_LINE, ORIGINAL_CONTEXT, ORIGINAL_INFO, ORIGINAL_SIGNAL,
    OUT, REPORT_PATH, SHARED,
};
use crate::os::modules;
use crate::os::{interrupted, signals};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The environment variable that makes a re-executed binary the symboliser.
pub(crate) const HELPER_VARIABLE: &str = "MANHOLE_CRASH_HELPER";

/// The report's sections, in order; the helper finds them by these titles.
pub(crate) const SECTIONS: [&str; 8] = [
    "first line",
    "header",
    "crashing thread",
    "registers",
    "threads",
    "in-flight calls",
    "recent log events",
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

/// Helper start-up test hook: `MANHOLE_CRASH_HELPER_PATH` names another
/// executable for the helper (a path that does not exist keeps it from
/// running). Read at install.
const HELPER_PATH_VARIABLE: &str = "MANHOLE_CRASH_HELPER_PATH";
static HELPER_PATH: AtomicPtr<CString> = AtomicPtr::new(std::ptr::null_mut());

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
        file: settings.file.as_ref().map(|file| file.as_bytes().to_vec()),
        timeout_ms: u64::try_from(settings.timeout.as_millis()).unwrap_or(u64::MAX),
        socket_path: CString::new(settings.socket_path.as_os_str().as_bytes()).unwrap_or_default(),
        exe: CString::new(exe.as_os_str().as_bytes()).unwrap_or_default(),
        build_id,
        modules,
        uptime_at_install_ms: facts.uptime_s.map_or(0, |s| (s * 1000.0) as u64),
        monotonic_at_install_ms: safe::monotonic_ms(),
    });
    if let Some(path) = std::env::var_os(HELPER_PATH_VARIABLE) {
        let path = Box::new(CString::new(path.as_bytes()).unwrap_or_default());
        HELPER_PATH.store(Box::into_raw(path), Ordering::Release);
    }
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
    die(original, ORIGINAL_INFO.load(Ordering::Acquire));
    safe::set_errno(saved_errno);
}

/// Whether a thread is writing a crash report: the process is dying, and
/// the listener must not put its socket back. Normal context.
pub(crate) fn dying() -> bool {
    CRASHING.load(Ordering::Acquire) != 0
}

/// Puts the previous action back and lets the signal take it. Compromised
/// context.
fn die(signal: libc::c_int, info: *mut libc::siginfo_t) {
    let previous = index_of(signal).map(|index| PREVIOUS[index].load(Ordering::Acquire));
    match previous {
        Some(previous) if !previous.is_null() => {
            // SAFETY: never freed once stored.
            let previous = unsafe { &*previous };
            if signals::runs_a_handler(previous) {
                signals::restore(signal, previous);
            } else {
                signals::restore(signal, &default_action());
            }
        }
        _ => signals::restore(signal, &default_action()),
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
        libc::syscall(libc::SYS_memfd_create, c"manhole-crash".as_ptr(), 0) as libc::c_int
    };
    if scratch >= 0 {
        SCRATCH_FD.store(scratch, Ordering::Release);
        OUT.add(scratch);
    }
    let Some(template) = &prepared.file else {
        return;
    };
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() } as u64;
    // SAFETY: only the reporting thread gets here.
    let path = unsafe { &mut *REPORT_PATH.get() };
    for attempt in 0..100u64 {
        if !fill_template(path, template, pid)
            || (attempt > 0 && !(path.push(b".") && path.push_dec(attempt)))
        {
            path.clear();
            return;
        }
        // SAFETY: a NUL-terminated path; open is async-signal-safe. No
        // O_CLOEXEC: the helper inherits the descriptor to rewrite it.
        let fd = unsafe {
            libc::open(
                path.as_cstr().as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW,
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
    let file = FILE_FD.load(Ordering::Acquire);
    if file >= 0 {
        // SAFETY: our own descriptor; fsync and close are
        // async-signal-safe.
        unsafe {
            libc::fsync(file);
            libc::close(file);
        }
    }
}

/// Removes the socket file, only in the process that created it.
fn remove_socket(prepared: &Prepared) {
    // SAFETY: getpid cannot fail.
    if unsafe { libc::getpid() } == prepared.pid && !prepared.socket_path.is_empty() {
        // SAFETY: a NUL-terminated path; unlink is async-signal-safe.
        unsafe { libc::unlink(prepared.socket_path.as_ptr()) };
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
fn run_helper(prepared: &Prepared) -> bool {
    static ENVIRONMENT: safe::ReporterOnly<[u8; 256]> = safe::ReporterOnly::new([0; 256]);
    static ENVP: safe::ReporterOnly<[*const libc::c_char; 1024]> =
        safe::ReporterOnly::new([std::ptr::null(); 1024]);
    static ARGV: safe::ReporterOnly<[*const libc::c_char; 2]> =
        safe::ReporterOnly::new([std::ptr::null(); 2]);
    let scratch = SCRATCH_FD.load(Ordering::Acquire);
    if scratch < 0 {
        return false;
    }
    static VARIABLE: safe::ReporterOnly<safe::PathBuf<256>> =
        safe::ReporterOnly::new(safe::PathBuf::new());
    // SAFETY: only the reporting thread gets here.
    let variable = unsafe { &mut *VARIABLE.get() };
    variable.clear();
    // SAFETY: getpid cannot fail.
    let pid = unsafe { libc::getpid() } as u64;
    let built = variable.push(HELPER_VARIABLE.as_bytes())
        && variable.push(b"=")
        && variable.push_dec(pid)
        && variable.push(b" ")
        && variable.push_dec(safe::gettid() as u64)
        && variable.push(b" ")
        && variable.push_dec(scratch as u64)
        && variable.push(b" ")
        && push_signed(variable, FILE_FD.load(Ordering::Acquire))
        && variable.push(b" ")
        && variable.push_dec(&SHARED as *const Shared as usize as u64);
    if !built {
        return false;
    }
    let helper_path = HELPER_PATH.load(Ordering::Acquire);
    let program: *const libc::c_char = if helper_path.is_null() {
        c"/proc/self/exe".as_ptr()
    } else {
        // SAFETY: never freed once stored.
        unsafe { (*helper_path).as_ptr() }
    };
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
            if !entry.starts_with(HELPER_VARIABLE.as_bytes()) {
                envp[count] = *inherited;
                count += 1;
            }
            inherited = inherited.add(1);
        }
        envp[count] = std::ptr::null();
        let argv = &mut *ARGV.get();
        argv[0] = prepared.exe.as_ptr();
        argv[1] = std::ptr::null();
    }
    SHARED.done.store(0, Ordering::Release);
    // Any process may trace us while we wait: the helper is our child, not
    // our ancestor, which Yama's default scope would otherwise refuse.
    // SAFETY: prctl is a plain syscall.
    unsafe { libc::prctl(libc::PR_SET_PTRACER, libc::PR_SET_PTRACER_ANY, 0, 0, 0) };
    // A raw clone: no fork handlers run and no lock is taken; the child
    // only calls execve.
    // SAFETY: with only SIGCHLD as flags, clone behaves as fork; the child
    // touches nothing but the statics prepared above before execve.
    let child =
        unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0) };
    if child == 0 {
        // SAFETY: execve with NUL-terminated arrays prepared above; on
        // failure the child ends at once.
        unsafe {
            libc::syscall(
                libc::SYS_execve,
                program,
                ARGV.get().cast::<*const libc::c_char>(),
                ENVP.get().cast::<*const libc::c_char>(),
            );
            libc::syscall(libc::SYS_exit_group, 127);
        }
        return false;
    }
    if child < 0 {
        return false;
    }
    let child = child as libc::pid_t;
    let deadline = safe::monotonic_ms().saturating_add(prepared.timeout_ms);
    loop {
        if SHARED.done.load(Ordering::Acquire) == 1 {
            reap(child);
            return true;
        }
        let mut status = 0;
        // SAFETY: waitpid is async-signal-safe.
        let waited = unsafe { libc::waitpid(child, &mut status, libc::WNOHANG) };
        if waited == child || (waited < 0 && safe::errno() == libc::ECHILD) {
            return SHARED.done.load(Ordering::Acquire) == 1;
        }
        if safe::monotonic_ms() >= deadline {
            // SAFETY: our own child.
            unsafe { libc::kill(child, libc::SIGKILL) };
            reap(child);
            OUT.str("[the symboliser did not finish within crash_timeout]\n");
            return false;
        }
        safe::sleep_ms(5);
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
