//! The crash symboliser's entry, and the proof it asks for before it acts.
//!
//! A dying process starts its symboliser by re-executing its own binary
//! (`/proc/self/exe`) with `MANHOLE_CRASH_HELPER` set; this module's entry
//! sees the variable before anything of the program runs, turns the raw
//! report into a symbolised one ([`super::symboliser`]) and exits.
//!
//! # Nothing of the program runs in the helper
//!
//! The entry sits in `.preinit_array`, which the loader runs before any
//! `.init_array` and before every shared library's constructors: no
//! constructor of the program, of a C or C++ library, or of std runs twice
//! for one crash. What is safe there: the loader has relocated everything,
//! set up thread-local storage and initialised glibc's early state, and
//! the entry gets `argc`, `argv` and `envp` as arguments, so it reads the
//! environment from `envp` and never through `getenv`. `malloc`, `open`,
//! `ptrace` and std's I/O work from there (sanitizers start the same way).
//!
//! Limits: a `.preinit_array` runs only in an executable (a manhole linked
//! into a shared library never acts as the helper: its crashes leave the
//! raw report, which `manhole-cli symbolize` turns into the symbolised one
//! offline). musl runs no `.preinit_array`; there the entry takes the first
//! `.init_array` slot, which in a static binary (Rust's musl default) runs
//! before every other constructor. A dynamically linked musl program runs
//! its libraries' constructors before it.
//!
//! # Trust
//!
//! Anyone may set the variable. The entry always removes it from the
//! environment. A process not started as a helper (its `argv[0]` is not
//! [`ARGV0`], which only a dying process gives) then starts as if it had
//! never been set, having read nothing. One started as a helper acts only
//! when every one of these holds, and otherwise exits at once, in silence,
//! rather than run a second copy of the program beside the dying one:
//! - the program runs without privileges it was given at `exec`
//!   (`getauxval(AT_SECURE)` is 0: not set-user-ID, set-group-ID or with
//!   file capabilities);
//! - the process it is asked about is its parent, runs the same executable
//!   (device and inode of `/proc/PID/exe`), and has the thread it names;
//! - the parent proves the crash is real: it sends the 128-bit secret it
//!   made at install ([`Shared::token`]) through a pipe that only this
//!   child inherits, after it named the child its only tracer
//!   (`PR_SET_PTRACER`), and the helper compares it with the secret it
//!   reads from the parent's memory. The address it reads is not taken
//!   from the variable: it is where this very binary keeps `SHARED`,
//!   moved by the difference of the two processes' entry points (auxv).
//!
//! The variable carries only numbers: the parent's PID, the crashing
//! thread, and the three inherited descriptors. It names no path.

use super::state::{Shared, SHARED};
use super::symboliser::{self, Request};
use std::ffi::{c_char, c_int, CStr};
use std::os::unix::fs::MetadataExt as _;

/// The environment variable that makes a re-executed binary the symboliser.
pub(crate) const VARIABLE: &str = "MANHOLE_CRASH_HELPER";

/// The `argv[0]` a dying process gives its helper. Without it the variable
/// is not even looked at: the program starts normally, and reads nothing.
/// With it, a helper that cannot prove the crash exits at once, in silence,
/// rather than run a second copy of the program beside the dying one.
pub(crate) const ARGV0: &CStr = c"manhole-crash-symboliser";

/// The longest the helper waits for its parent's secret, which the parent
/// sends right after starting it.
const SECRET_WAIT_MS: c_int = 5_000;

/// Runs before every constructor of the program: one scan of `envp`, and
/// nothing more unless the variable is there.
#[cfg(not(target_env = "musl"))]
#[used]
#[link_section = ".preinit_array"]
static START: extern "C" fn(c_int, *const *const c_char, *mut *mut c_char) = start;

/// musl runs no `.preinit_array`, and calls constructors without arguments.
/// The first `.init_array` slot (the linker sorts numbered sections ahead of
/// the rest, lowest first; numbers below 101 are kept for the toolchain's
/// own use, as this is) runs before every constructor of a static binary.
/// musl has set `environ` and `program_invocation_name` by then.
#[cfg(target_env = "musl")]
#[used]
#[link_section = ".init_array.00001"]
static START: extern "C" fn() = start_without_arguments;

#[cfg(target_env = "musl")]
extern "C" fn start_without_arguments() {
    extern "C" {
        static mut environ: *mut *mut c_char;
        static program_invocation_name: *const c_char;
    }
    // SAFETY: musl's own copies of the loader's argv[0] and envp, set
    // before any constructor runs; no other thread exists yet.
    let (argv0, envp) = unsafe { (program_invocation_name, environ) };
    let argv = [argv0, std::ptr::null()];
    start(1, argv.as_ptr(), envp);
}

extern "C" fn start(argc: c_int, argv: *const *const c_char, envp: *mut *mut c_char) {
    // SAFETY: the loader passes the process's environment array, or null.
    let Some(value) = (unsafe { take_variable(envp) }) else {
        return;
    };
    // SAFETY: the loader's argv holds argc NUL-terminated strings.
    let started_as_helper = argc >= 1
        && !argv.is_null()
        && unsafe { !(*argv).is_null() && CStr::from_ptr(*argv) == ARGV0 };
    if !started_as_helper {
        return;
    }
    let Some(request) = verify(&value) else {
        // SAFETY: ends this process without running the program.
        unsafe { libc::_exit(1) };
    };
    let status = match symboliser::run(&request) {
        Ok(()) => 0,
        Err(why) => {
            eprintln!("manhole crash symboliser: {why}; the raw report follows");
            1
        }
    };
    // SAFETY: ends this process without running the program or its exit
    // hooks.
    unsafe { libc::_exit(status) };
}

/// The variable's value, removed from `envp` (every copy of it), so that a
/// program that starts normally never sees it.
///
/// # Safety
///
/// `envp` is null or a null-terminated array of NUL-terminated strings
/// that this thread alone may change (the loader's, before constructors).
unsafe fn take_variable(envp: *mut *mut c_char) -> Option<Vec<u8>> {
    if envp.is_null() {
        return None;
    }
    let mut value = None;
    let mut read = envp;
    let mut write = envp;
    // SAFETY: walks the array up to its null entry, moving the entries that
    // stay down over the removed ones, as unsetenv does.
    unsafe {
        while !(*read).is_null() {
            let entry = CStr::from_ptr(*read).to_bytes();
            match entry
                .strip_prefix(VARIABLE.as_bytes())
                .and_then(|rest| rest.strip_prefix(b"="))
            {
                Some(found) => value = Some(found.to_vec()),
                None => {
                    *write = *read;
                    write = write.add(1);
                }
            }
            read = read.add(1);
        }
        *write = std::ptr::null_mut();
    }
    value
}

/// The request, when every check of the module's doc holds.
fn verify(value: &[u8]) -> Option<Request> {
    // SAFETY: getauxval and getppid cannot fail.
    let (secure, parent) = unsafe { (libc::getauxval(libc::AT_SECURE), libc::getppid()) };
    if secure != 0 {
        return None;
    }
    let value = std::str::from_utf8(value).ok()?;
    let fields: Vec<i64> = value
        .split(' ')
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let &[pid, tid, scratch_fd, file_fd, secret_fd] = fields.as_slice() else {
        return None;
    };
    let pid = libc::pid_t::try_from(pid).ok()?;
    let tid = libc::pid_t::try_from(tid).ok()?;
    let [scratch_fd, file_fd, secret_fd] =
        [scratch_fd, file_fd, secret_fd].map(|fd| c_int::try_from(fd).unwrap_or(-1));
    if pid <= 1 || pid != parent || tid <= 0 {
        return None;
    }
    let same_binary = match (
        std::fs::metadata("/proc/self/exe"),
        std::fs::metadata(format!("/proc/{pid}/exe")),
    ) {
        (Ok(ours), Ok(theirs)) => (ours.dev(), ours.ino()) == (theirs.dev(), theirs.ino()),
        _ => false,
    };
    if !same_binary || !std::path::Path::new(&format!("/proc/{pid}/task/{tid}")).exists() {
        return None;
    }
    let kind_is = |fd: c_int, kind: libc::mode_t| {
        // SAFETY: fstat of a descriptor number into a zeroed struct; a
        // number that is not open fails.
        unsafe {
            let mut stat: libc::stat = std::mem::zeroed();
            libc::fstat(fd, &mut stat) == 0 && stat.st_mode & libc::S_IFMT == kind
        }
    };
    if !kind_is(secret_fd, libc::S_IFIFO)
        || !kind_is(scratch_fd, libc::S_IFREG)
        || (file_fd != -1 && !kind_is(file_fd, libc::S_IFREG))
    {
        return None;
    }
    let sent = read_secret(secret_fd)?;
    let shared = parents_shared(pid)?;
    let mut held = [0u8; 16];
    let at = shared + std::mem::offset_of!(Shared, token);
    if super::signal_safe::read_process_memory(pid, at, &mut held) != held.len() {
        return None;
    }
    let differs = sent
        .iter()
        .zip(&held)
        .fold(0u8, |acc, (sent, held)| acc | (sent ^ held));
    if differs != 0 || held == [0; 16] {
        return None;
    }
    Some(Request {
        pid,
        tid,
        scratch_fd,
        file_fd,
        shared,
    })
}

/// The 16 bytes the parent sends once it has named this process its
/// tracer, or `None` when they do not come in time.
fn read_secret(fd: c_int) -> Option<[u8; 16]> {
    let mut secret = [0u8; 16];
    let mut filled = 0;
    while filled < secret.len() {
        let mut ready = libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll on one descriptor, then a read into the rest of
        // `secret`.
        let read = unsafe {
            if libc::poll(&mut ready, 1, SECRET_WAIT_MS) != 1 {
                return None;
            }
            libc::read(
                fd,
                secret[filled..].as_mut_ptr().cast(),
                secret.len() - filled,
            )
        };
        if read <= 0 {
            return None;
        }
        filled += read as usize;
    }
    Some(secret)
}

/// Where the parent, which runs this same executable, keeps [`SHARED`]:
/// our own address of it, moved by how far its entry point is from ours.
fn parents_shared(pid: libc::pid_t) -> Option<usize> {
    let auxv = std::fs::read(format!("/proc/{pid}/auxv")).ok()?;
    let word = std::mem::size_of::<usize>();
    let theirs = auxv.chunks_exact(2 * word).find_map(|pair| {
        let key = usize::from_ne_bytes(pair[..word].try_into().ok()?);
        let value = usize::from_ne_bytes(pair[word..].try_into().ok()?);
        (key == libc::AT_ENTRY as usize).then_some(value)
    })?;
    // SAFETY: getauxval cannot fail.
    let ours = unsafe { libc::getauxval(libc::AT_ENTRY) } as usize;
    let own_shared = &SHARED as *const Shared as usize;
    Some(own_shared.wrapping_sub(ours).wrapping_add(theirs))
}
