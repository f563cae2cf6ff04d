//! What a crash handler may use: raw `write(2)` to a fixed set of file
//! descriptors, numbers and times turned into text without allocating, and
//! memory read through `process_vm_readv`, which returns an error instead
//! of faulting. Breakpad keeps the same kind of helpers apart
//! (`linux_libc_support`); everything here is async-signal-safe.
//!
//! Every function here runs in *compromised context*: the heap, its locks
//! and any Rust value may be broken. None allocates, locks or panics.

use crate::os::process::civil_from_days;
use std::sync::atomic::{AtomicI32, Ordering};

/// How many descriptors one report goes to at once.
const MAX_OUTPUTS: usize = 3;

/// Where a report is written: up to three descriptors, each written whole
/// with raw `write(2)`; a descriptor that fails is dropped and the others go
/// on.
pub(crate) struct Out {
    fds: [AtomicI32; MAX_OUTPUTS],
}

impl Out {
    pub(crate) const fn new() -> Out {
        Out {
            fds: [AtomicI32::new(-1), AtomicI32::new(-1), AtomicI32::new(-1)],
        }
    }

    /// Writes to `fd` too, from now on.
    pub(crate) fn add(&self, fd: libc::c_int) {
        for slot in &self.fds {
            if slot
                .compare_exchange(-1, fd, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return;
            }
        }
    }

    pub(crate) fn clear(&self) {
        for slot in &self.fds {
            slot.store(-1, Ordering::Release);
        }
    }

    pub(crate) fn bytes(&self, bytes: &[u8]) {
        for slot in &self.fds {
            let fd = slot.load(Ordering::Acquire);
            if fd >= 0 && !write_all(fd, bytes) {
                slot.store(-1, Ordering::Release);
            }
        }
    }

    pub(crate) fn str(&self, text: &str) {
        self.bytes(text.as_bytes());
    }

    pub(crate) fn dec(&self, value: u64) {
        let mut digits = [0u8; 20];
        self.bytes(decimal(value, &mut digits));
    }

    /// `0x` and the value in lowercase hex, at least `width` digits.
    pub(crate) fn hex(&self, value: u64, width: usize) {
        let mut digits = [0u8; 18];
        self.bytes(hex(value, width, &mut digits));
    }

    #[cfg_attr(not(feature = "tracing"), allow(dead_code))]
    /// A value's `Display`, formatted piece by piece straight to the
    /// outputs: core's formatting allocates nothing, and neither do the
    /// plain values (numbers, JSON scalars) this is used for.
    pub(crate) fn display(&self, value: &dyn std::fmt::Display) {
        struct Forward<'a>(&'a Out);
        impl std::fmt::Write for Forward<'_> {
            fn write_str(&mut self, text: &str) -> std::fmt::Result {
                self.0.str(text);
                Ok(())
            }
        }
        let _ = std::fmt::Write::write_fmt(&mut Forward(self), format_args!("{value}"));
    }

    /// A UTC time as RFC 3339 with milliseconds: `2026-12-04T03:12:45.123Z`.
    pub(crate) fn time(&self, seconds: i64, millis: u32) {
        let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
        let of_day = seconds.rem_euclid(86_400);
        let mut text = [0u8; 24];
        put(&mut text[0..4], year.clamp(0, 9999) as u64);
        text[4] = b'-';
        put(&mut text[5..7], u64::from(month));
        text[7] = b'-';
        put(&mut text[8..10], u64::from(day));
        text[10] = b'T';
        put(&mut text[11..13], (of_day / 3600) as u64);
        text[13] = b':';
        put(&mut text[14..16], (of_day % 3600 / 60) as u64);
        text[16] = b':';
        put(&mut text[17..19], (of_day % 60) as u64);
        text[19] = b'.';
        put(&mut text[20..23], u64::from(millis.min(999)));
        text[23] = b'Z';
        self.bytes(&text);
    }
}

/// Writes all of `bytes` to `fd`, retrying on `EINTR` and short writes.
/// `false` when the descriptor refuses.
pub(crate) fn write_all(fd: libc::c_int, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: `bytes` is a valid slice; write(2) is async-signal-safe.
        let written = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if written < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return false;
        }
        if written == 0 {
            return false;
        }
        bytes = &bytes[written as usize..];
    }
    true
}

pub(crate) fn errno() -> libc::c_int {
    // SAFETY: the calling thread's errno location is always valid.
    unsafe { *libc::__errno_location() }
}

pub(crate) fn set_errno(value: libc::c_int) {
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = value };
}

/// `value` in decimal, in the tail of `buffer`.
pub(crate) fn decimal(mut value: u64, buffer: &mut [u8; 20]) -> &[u8] {
    let mut at = buffer.len();
    loop {
        at -= 1;
        buffer[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    &buffer[at..]
}

/// `0x` and `value` in hex, at least `width` digits (at most 16).
pub(crate) fn hex(mut value: u64, width: usize, buffer: &mut [u8; 18]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut at = buffer.len();
    let mut written = 0;
    while value != 0 || written < width.clamp(1, 16) {
        at -= 1;
        buffer[at] = DIGITS[(value & 0xf) as usize];
        value >>= 4;
        written += 1;
    }
    at -= 2;
    buffer[at] = b'0';
    buffer[at + 1] = b'x';
    &buffer[at..]
}

/// `value` as exactly `into.len()` decimal digits, zero-padded.
fn put(into: &mut [u8], mut value: u64) {
    for byte in into.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// The wall clock, as seconds and milliseconds since the epoch.
pub(crate) fn now() -> (i64, u32) {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime is async-signal-safe and writes `time`.
    unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut time) };
    (time.tv_sec, (time.tv_nsec / 1_000_000) as u32)
}

/// The monotonic clock in milliseconds.
pub(crate) fn monotonic_ms() -> u64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut time) };
    time.tv_sec as u64 * 1000 + time.tv_nsec as u64 / 1_000_000
}

pub(crate) fn sleep_ms(ms: u64) {
    let time = libc::timespec {
        tv_sec: (ms / 1000).try_into().unwrap_or(1),
        tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: nanosleep is async-signal-safe; an interrupted sleep is
    // simply shorter.
    unsafe { libc::nanosleep(&time, std::ptr::null_mut()) };
}

pub(crate) fn gettid() -> libc::pid_t {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::syscall(libc::SYS_gettid) as libc::pid_t }
}

/// Copies `into.len()` bytes of this process's memory at `address`, or
/// fewer where the memory ends; never faults. Returns how many were copied.
pub(crate) fn read_memory(address: usize, into: &mut [u8]) -> usize {
    // SAFETY: getpid cannot fail.
    read_process_memory(unsafe { libc::getpid() }, address, into)
}

/// Copies `into.len()` bytes of process `pid`'s memory at `address`, as
/// far as they are mapped in one go; never faults. Returns how many were
/// copied.
pub(crate) fn read_process_memory(pid: libc::pid_t, address: usize, into: &mut [u8]) -> usize {
    let local = libc::iovec {
        iov_base: into.as_mut_ptr().cast(),
        iov_len: into.len(),
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: into.len(),
    };
    // SAFETY: both iovecs describe valid ranges for the kernel to check;
    // an unmapped remote range is an error, not a fault.
    let copied = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    copied.max(0) as usize
}

/// Reads a small file (at most `into.len()` bytes) with raw syscalls;
/// `None` when it cannot be opened.
pub(crate) fn read_file<'a>(path: &std::ffi::CStr, into: &'a mut [u8]) -> Option<&'a [u8]> {
    // SAFETY: `path` is NUL-terminated; open, read and close are
    // async-signal-safe.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut filled = 0;
    while filled < into.len() {
        // SAFETY: reads into the unfilled tail of `into`.
        let read =
            unsafe { libc::read(fd, into[filled..].as_mut_ptr().cast(), into.len() - filled) };
        if read < 0 && errno() == libc::EINTR {
            continue;
        }
        if read <= 0 {
            break;
        }
        filled += read as usize;
    }
    // SAFETY: closes the descriptor opened above.
    unsafe { libc::close(fd) };
    Some(&into[..filled])
}

/// A static that only the one thread writing a crash report touches: its
/// buffers live here rather than on the alternate signal stack, which is
/// small.
pub(crate) struct ReporterOnly<T>(std::cell::UnsafeCell<T>);

// SAFETY: only the thread that claimed the report uses it (see `get`).
unsafe impl<T> Sync for ReporterOnly<T> {}

impl<T> ReporterOnly<T> {
    pub(crate) const fn new(value: T) -> Self {
        ReporterOnly(std::cell::UnsafeCell::new(value))
    }

    /// The value, for the reporting thread.
    ///
    /// # Safety
    ///
    /// Only the thread that claimed the report may call this, and it may
    /// hold one reference from it at a time.
    pub(crate) unsafe fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// A NUL-terminated path built in a fixed buffer from parts, for `open`.
pub(crate) struct PathBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> PathBuf<N> {
    pub(crate) const fn new() -> Self {
        PathBuf {
            bytes: [0; N],
            len: 0,
        }
    }

    /// Appends `part`; `false` (and nothing appended) when it does not fit
    /// with the final NUL.
    pub(crate) fn push(&mut self, part: &[u8]) -> bool {
        if self.len + part.len() + 1 > N {
            return false;
        }
        self.bytes[self.len..self.len + part.len()].copy_from_slice(part);
        self.len += part.len();
        self.bytes[self.len] = 0;
        true
    }

    pub(crate) fn push_dec(&mut self, value: u64) -> bool {
        let mut digits = [0u8; 20];
        let digits = decimal(value, &mut digits);
        let mut copy = [0u8; 20];
        copy[..digits.len()].copy_from_slice(digits);
        self.push(&copy[..digits.len()])
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    pub(crate) fn as_cstr(&self) -> &std::ffi::CStr {
        // Always NUL-terminated at `len`, with no NUL before (paths come
        // from C strings and digits).
        std::ffi::CStr::from_bytes_until_nul(&self.bytes[..=self.len]).unwrap_or_default()
    }

    pub(crate) fn clear(&mut self) {
        self.len = 0;
        self.bytes[0] = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_times_are_written_without_allocating() {
        let mut digits = [0u8; 20];
        assert_eq!(decimal(0, &mut digits), b"0");
        assert_eq!(decimal(u64::MAX, &mut digits), b"18446744073709551615");
        let mut digits = [0u8; 18];
        assert_eq!(hex(0xdead, 0, &mut digits), b"0xdead");
        assert_eq!(hex(0x1f, 4, &mut digits), b"0x001f");
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_426), (2025, 12, 4));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn memory_reads_stop_at_unmapped_pages_instead_of_faulting() {
        let value = 0x1234_5678_u64.to_ne_bytes();
        let mut into = [0u8; 8];
        assert_eq!(read_memory(value.as_ptr() as usize, &mut into), 8);
        assert_eq!(into, value);
        assert_eq!(read_memory(8, &mut into), 0);
    }
}
