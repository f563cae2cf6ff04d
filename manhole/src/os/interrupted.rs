//! What a signal handler may take from the thread it interrupted: its
//! registers, from the signal context, and the top of its stack, copied
//! with `process_vm_readv`. Both are async-signal-safe, and the copy cannot
//! fault: it stops at the first unmapped page. Shared by the stack capture
//! and the profiler, whose handlers do nothing else.

use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

const PAGE: usize = 4096;
/// The most pages one copy reads, one `iovec` each.
const MAX_PAGES: usize = 64;

/// The registers unwinding starts from, as the signal context had them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Registers {
    pub(crate) pc: u64,
    pub(crate) sp: u64,
    pub(crate) fp: u64,
    /// The link register (aarch64); unused on x86_64.
    pub(crate) lr: u64,
}

/// The registers of the interrupted code, from a handler's third argument.
pub(crate) fn registers(context: *mut libc::c_void) -> Registers {
    if context.is_null() {
        return Registers::default();
    }
    // SAFETY: with SA_SIGINFO the third argument is the ucontext_t.
    let context = unsafe { &*(context as *const libc::ucontext_t) };
    #[cfg(target_arch = "x86_64")]
    {
        let gregs = &context.uc_mcontext.gregs;
        Registers {
            pc: gregs[libc::REG_RIP as usize] as u64,
            sp: gregs[libc::REG_RSP as usize] as u64,
            fp: gregs[libc::REG_RBP as usize] as u64,
            lr: 0,
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        let mcontext = &context.uc_mcontext;
        Registers {
            pc: mcontext.pc,
            sp: mcontext.sp,
            fp: mcontext.regs[29],
            lr: mcontext.regs[30],
        }
    }
}

/// Copies up to `len` bytes (at most 63 pages' worth) from `sp` up into
/// `buffer`, one page per element so that the copy stops cleanly at the
/// first unmapped page. Returns how many bytes were copied (0 if none could
/// be).
///
/// `buffer` must be valid for `len` bytes of writes.
pub(crate) fn copy_stack(sp: u64, buffer: *mut u8, len: usize) -> usize {
    let len = len.min((MAX_PAGES - 1) * PAGE);
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut local = [empty; MAX_PAGES];
    let mut remote = [empty; MAX_PAGES];
    let mut offset = 0usize;
    let mut count = 0;
    while offset < len && count < MAX_PAGES {
        let address = sp as usize + offset;
        let chunk = (PAGE - address % PAGE).min(len - offset);
        // SAFETY: `offset + chunk <= len`, inside the caller's buffer.
        local[count].iov_base = unsafe { buffer.add(offset) }.cast();
        local[count].iov_len = chunk;
        remote[count].iov_base = address as *mut libc::c_void;
        remote[count].iov_len = chunk;
        offset += chunk;
        count += 1;
    }
    // SAFETY: each local element lies inside the caller's buffer, valid
    // for `len` bytes of writes (see the loop above).
    let copied = unsafe { read_own(&local[..count], &remote[..count]) };
    match usize::try_from(copied) {
        Ok(copied) => copied,
        // Refused (a seccomp filter without it, or qemu-user, which does
        // not emulate it): the same copy through `/proc/self/mem`.
        Err(_) => copy_through_proc_mem(sp, buffer, len),
    }
}

/// Copies the 4-byte word at each of `addresses` (at most 64) into
/// `words`, in one `process_vm_readv`: words the program writes meanwhile
/// are read as the kernel sees them, never through a reference. Returns
/// how many were copied, in order (fewer when one is unmapped, or the
/// call is refused).
pub(crate) fn copy_words(addresses: &[usize], words: &mut [u32]) -> usize {
    let count = addresses.len().min(words.len()).min(MAX_PAGES);
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut local = [empty; MAX_PAGES];
    let mut remote = [empty; MAX_PAGES];
    for index in 0..count {
        local[index].iov_base = std::ptr::from_mut(&mut words[index]).cast();
        local[index].iov_len = 4;
        remote[index].iov_base = addresses[index] as *mut libc::c_void;
        remote[index].iov_len = 4;
    }
    // SAFETY: each local element is one of `words`, 4 writable bytes.
    let copied = unsafe { read_own(&local[..count], &remote[..count]) };
    usize::try_from(copied).map_or(0, |bytes| bytes / 4)
}

/// `process_vm_readv` of this process: each `remote` range, as far as it
/// is mapped, into the `local` one beside it. Returns the bytes copied, or
/// -1. Async-signal-safe.
///
/// # Safety
///
/// Every `local` element must describe memory valid for writes of its
/// length; the kernel checks the remote side.
unsafe fn read_own(local: &[libc::iovec], remote: &[libc::iovec]) -> isize {
    // SAFETY: both slices are valid arrays of their length, the local
    // elements writable as the caller promises; the kernel checks every
    // remote range and stops at the first unmapped page.
    unsafe {
        libc::process_vm_readv(
            libc::getpid(),
            local.as_ptr(),
            local.len() as libc::c_ulong,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    }
}

/// `/proc/self/mem`, opened by the first copy that needs it; -1 before.
static PROC_MEM: AtomicI32 = AtomicI32::new(-1);

/// [`copy_stack`] with `pread` of `/proc/self/mem`, page by page, up to
/// the first page that cannot be read. `open` and `pread` are
/// async-signal-safe, and a read of an unmapped page fails instead of
/// faulting.
fn copy_through_proc_mem(sp: u64, buffer: *mut u8, len: usize) -> usize {
    let mut fd = PROC_MEM.load(Ordering::Acquire);
    if fd < 0 {
        // SAFETY: a NUL-terminated path.
        let opened =
            unsafe { libc::open(c"/proc/self/mem".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if opened < 0 {
            return 0;
        }
        fd = match PROC_MEM.compare_exchange(-1, opened, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => opened,
            Err(theirs) => {
                // SAFETY: our own descriptor, which lost the race.
                unsafe { libc::close(opened) };
                theirs
            }
        };
    }
    let mut offset = 0usize;
    while offset < len {
        let address = sp as usize + offset;
        let chunk = (PAGE - address % PAGE).min(len - offset);
        let Ok(at) = libc::off_t::try_from(address) else {
            break;
        };
        // SAFETY: `offset + chunk <= len`, inside the caller's buffer.
        let read = unsafe { libc::pread(fd, buffer.add(offset).cast(), chunk, at) };
        if usize::try_from(read) != Ok(chunk) {
            break;
        }
        offset += chunk;
    }
    offset
}

/// A handler's copy of the registers and the top of the stack, into
/// `len` bytes of memory allocated beforehand and never freed.
///
/// Its owner (a dump's slot, a profile's ring slot) says by its own state
/// who may touch it: [`Copy::take`] only between a successful claim and the
/// release that marks it finished, [`Copy::read`] only after an acquire
/// that saw that mark.
pub(crate) struct Copy {
    /// The interrupted pc, sp, fp and lr, from the signal context.
    registers: [AtomicU64; 4],
    /// How many bytes of `stack` the handler filled.
    copied: AtomicUsize,
    stack: *mut u8,
    len: usize,
}

// SAFETY: `stack` is written only by `take` and read only by `read`, which
// the owner's claim and its release/acquire ordering keep apart.
unsafe impl Sync for Copy {}

impl Copy {
    /// A copy into `stack`, which must stay valid for `len` bytes for good.
    pub(crate) fn new(stack: *mut u8, len: usize) -> Copy {
        Copy {
            registers: [const { AtomicU64::new(0) }; 4],
            copied: AtomicUsize::new(0),
            stack,
            len,
        }
    }

    /// Nothing copied, before a new request.
    pub(crate) fn clear(&self) {
        self.copied.store(0, Ordering::Relaxed);
    }

    /// In the handler: the interrupted registers, and the stack from their
    /// sp up. Async-signal-safe.
    pub(crate) fn take(&self, context: *mut libc::c_void) {
        let registers = registers(context);
        for (field, value) in
            self.registers
                .iter()
                .zip([registers.pc, registers.sp, registers.fp, registers.lr])
        {
            field.store(value, Ordering::Relaxed);
        }
        self.copied.store(
            copy_stack(registers.sp, self.stack, self.len),
            Ordering::Relaxed,
        );
    }

    /// After it was read, and before its owner marks it free: gives the
    /// whole pages the copy filled back to the kernel, so that a dump's
    /// copies do not stay resident until the next one. The memory stays
    /// mapped, and reads as zeros until written again.
    pub(crate) fn let_pages_go(&self) {
        let copied = self.copied.load(Ordering::Relaxed).min(self.len);
        // SAFETY: sysconf has no preconditions.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
        let start = (self.stack as usize).next_multiple_of(page);
        let end = (self.stack as usize + copied) & !(page - 1);
        if end > start {
            // SAFETY: whole pages inside this copy's own `len` bytes, which
            // nothing reads or writes until the owner arms it again; for
            // private anonymous memory MADV_DONTNEED only empties them.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
            }
        }
    }

    /// After the handler finished: the registers and the bytes copied.
    pub(crate) fn read(&self) -> (Registers, &[u8]) {
        let [pc, sp, fp, lr] =
            [0, 1, 2, 3].map(|index| self.registers[index].load(Ordering::Relaxed));
        let copied = self.copied.load(Ordering::Relaxed).min(self.len);
        // SAFETY: `stack` is valid for `len` bytes for good, and the owner
        // reads only after the handler's release of the bytes it wrote.
        let stack = unsafe { std::slice::from_raw_parts(self.stack, copied) };
        (Registers { pc, sp, fp, lr }, stack)
    }
}
