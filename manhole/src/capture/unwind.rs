//! Offline unwinding of a stack that a signal handler copied.
//!
//! The handler in [`crate::capture`] copies only the interrupted registers
//! and the top of the stack; the return addresses are recovered here, in the
//! capturing thread, by [`framehop`] reading the DWARF CFI (`.eh_frame`,
//! indexed by `.eh_frame_hdr`) of every loaded module. Every stack read goes
//! through the copy and is bounds-checked, so a thread caught anywhere —
//! inside the unwinder, an epilogue or hand-written assembly — yields a
//! shorter stack at worst, never a fault.
//!
//! The module list is read with `dl_iterate_phdr`, whose unwind sections
//! are copied while the loader's lock is held (so a concurrent `dlclose`
//! cannot pull them away), and rebuilt only when modules were loaded or
//! unloaded since.

pub(crate) use crate::os::interrupted::Registers;
use crate::os::loader::{each_module, load_counters, module_name};
use framehop::{
    Error as UnwindError, ExplicitModuleSectionInfo, FrameAddress, Module, Unwinder as _,
};
#[cfg(target_arch = "x86_64")]
use std::collections::HashMap;
#[cfg(target_arch = "x86_64")]
use std::sync::LazyLock;
use std::sync::Mutex;

#[cfg(target_arch = "x86_64")]
use framehop::x86_64::{
    CacheX86_64 as Cache, UnwindRegsX86_64 as UnwindRegs, UnwinderX86_64 as ArchUnwinder,
};

#[cfg(target_arch = "aarch64")]
use framehop::aarch64::{
    CacheAarch64 as Cache, UnwindRegsAarch64 as UnwindRegs, UnwinderAarch64 as ArchUnwinder,
};

/// At most this many frames per thread.
const MAX_FRAMES: usize = 512;

struct State {
    unwinder: ArchUnwinder<Vec<u8>>,
    cache: Cache,
    /// `dlpi_adds` and `dlpi_subs` when the module list was read.
    loads: (u64, u64),
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// What unwinding a copied stack gave.
pub(crate) struct Unwound {
    /// Return addresses, innermost first, the first being the exact
    /// program counter.
    pub(crate) addresses: Vec<u64>,
    /// The copy ended before the stack did.
    pub(crate) truncated: bool,
    /// The walk reached the end of the stack.
    pub(crate) complete: bool,
}

/// How a walk ended.
enum End {
    /// At the end of the stack.
    Complete,
    /// At the end of the copy, or at the frame limit.
    CopyEnded,
    /// At a frame whose CFA is based on the frame pointer, which was not
    /// known: `regs` and `address` are that frame's, to resume from (by
    /// the quiet capture, x86_64 only).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    NeedsFramePointer {
        regs: UnwindRegs,
        address: FrameAddress,
    },
    /// Anywhere else: an address without unwind info, a loop.
    Broken,
}

#[cfg(target_arch = "x86_64")]
/// What to give for a frame pointer that is not known: small and nonzero,
/// so that a frame which needs it unwinds to below the copy (or backwards)
/// and says so, where 0 would read as the end of the stack.
const UNKNOWN_FRAME_POINTER: u64 = 8;

/// Runs `body` with the unwinder, rebuilt when modules were loaded or
/// unloaded since it was built.
fn with_unwinder<R>(body: impl FnOnce(&ArchUnwinder<Vec<u8>>, &mut Cache) -> R) -> R {
    let mut state = STATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let loads = load_counters();
    if state.as_ref().is_none_or(|state| state.loads != loads) {
        let mut unwinder = ArchUnwinder::new();
        for module in modules() {
            unwinder.add_module(module);
        }
        *state = Some(State {
            unwinder,
            cache: Cache::new(),
            loads,
        });
    }
    let State {
        unwinder, cache, ..
    } = state.as_mut().expect("just built");
    body(unwinder, cache)
}

/// Lets the unwinder go (its copies of every module's unwind tables, and
/// its cache): the next walk builds it again. Called with the symbol
/// tables, once neither has been used for `symbol_cache_idle`.
pub(crate) fn release() {
    let released = STATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    drop(released);
}

/// Reads 8 bytes of the copy at `address`, which stands for the stack from
/// `base` up.
fn read_copy(stack: &[u8], base: u64, address: u64) -> Result<u64, ()> {
    let offset = usize::try_from(address.checked_sub(base).ok_or(())?).map_err(|_| ())?;
    let bytes: [u8; 8] = stack
        .get(offset..offset.checked_add(8).ok_or(())?)
        .ok_or(())?
        .try_into()
        .map_err(|_| ())?;
    Ok(u64::from_ne_bytes(bytes))
}

/// Walks from the frame at `address` with `regs`, pushing each caller's
/// return address onto `addresses`.
fn walk(
    unwinder: &ArchUnwinder<Vec<u8>>,
    cache: &mut Cache,
    mut regs: UnwindRegs,
    mut address: FrameAddress,
    stack: &[u8],
    base: u64,
    addresses: &mut Vec<u64>,
) -> End {
    let end = base.saturating_add(stack.len() as u64);
    let mut read_stack = |at: u64| read_copy(stack, base, at);
    while addresses.len() < MAX_FRAMES {
        let frame_regs = regs;
        match unwinder.unwind_frame(address, &mut regs, cache, &mut read_stack) {
            Ok(Some(return_address)) => {
                let Some(caller) = FrameAddress::from_return_address(return_address) else {
                    return End::Complete;
                };
                addresses.push(return_address);
                address = caller;
            }
            Ok(None) => return End::Complete,
            Err(UnwindError::CouldNotReadStack(at)) if at >= end => return End::CopyEnded,
            Err(UnwindError::CouldNotReadStack(at)) if at < base => {
                return End::NeedsFramePointer {
                    regs: frame_regs,
                    address,
                }
            }
            Err(UnwindError::FramepointerUnwindingMovedBackwards) => {
                return End::NeedsFramePointer {
                    regs: frame_regs,
                    address,
                }
            }
            Err(_) => return End::Broken,
        }
    }
    End::CopyEnded
}

/// A thread's return addresses from all its registers and its copied stack
/// (which starts at `registers.sp`), as a signal handler saw them.
pub(crate) fn unwind(registers: Registers, stack: &[u8]) -> Unwound {
    with_unwinder(|unwinder, cache| unwind_with(unwinder, cache, registers, stack))
}

/// [`unwind`] with a given unwinder: ours, or one placed for another
/// process ([`Remote`]).
fn unwind_with(
    unwinder: &ArchUnwinder<Vec<u8>>,
    cache: &mut Cache,
    registers: Registers,
    stack: &[u8],
) -> Unwound {
    let mut addresses = vec![registers.pc];
    let end = walk(
        unwinder,
        cache,
        start_registers(registers),
        FrameAddress::from_instruction_pointer(registers.pc),
        stack,
        registers.sp,
        &mut addresses,
    );
    Unwound {
        truncated: matches!(end, End::CopyEnded),
        complete: matches!(end, End::Complete),
        addresses,
    }
}

#[cfg(target_arch = "x86_64")]
/// Whether `address` lies in the program's entry point (`_start`), whose
/// frame is the outermost of the main thread: a return address there
/// follows its call of `__libc_start_main`, a few dozen bytes in.
fn in_program_entry(address: u64) -> bool {
    // SAFETY: `getauxval` reads the auxiliary vector, always there.
    let entry = unsafe { libc::getauxval(libc::AT_ENTRY) };
    entry != 0 && (entry..entry.saturating_add(64)).contains(&address)
}

/// A thread's return addresses from only its pc and sp (all that
/// `/proc/self/task/TID/syscall` gives) and its copied stack.
///
/// Code built with frame pointers (Rust's std is) needs the live frame
/// pointer to unwind the innermost frame that keeps one. When no frame
/// below it saved the register, its value is still that frame's base: its
/// stack pointer plus what its prologue pushed and reserved after the
/// frame record, which is read from the function's own code. It is taken
/// only when the return address in that record follows a call instruction
/// and the walk from it reaches the end of the stack.
///
/// A thread's outermost frames are the same for every thread of a kind:
/// where the walk stops at a frame that `known_tail` has seen near the end
/// of a complete stack, the rest of that stack is taken from there; a walk
/// that ends anywhere else is not believed. Returns
/// the frames and the frame pointer it used, if it needed one, or `None`
/// when the walk cannot be made whole: the caller then uses the signal.
#[cfg(target_arch = "x86_64")]
pub(crate) fn unwind_without_frame_pointer(
    pc: u64,
    sp: u64,
    stack: &[u8],
    known_tail: &dyn Fn(u64) -> Option<Vec<u64>>,
) -> Option<(Unwound, Option<u64>)> {
    with_unwinder(|unwinder, cache| {
        let registers = Registers {
            pc,
            sp,
            fp: UNKNOWN_FRAME_POINTER,
            lr: 0,
        };
        let mut addresses = vec![pc];
        let end = walk(
            unwinder,
            cache,
            start_registers(registers),
            FrameAddress::from_instruction_pointer(pc),
            stack,
            sp,
            &mut addresses,
        );
        // Whether the walk is whole (and then whether it is cut short),
        // with a known tail added where it stopped at one.
        let whole = |end: &End, addresses: &mut Vec<u64>| match end {
            // An end is believed only at a frame seen ending complete
            // stacks: a frame pointer restored as 0 from a register that
            // held data ends a walk early, and looks just like the end.
            // The program's entry point (`_start`) ends the main thread's
            // stack: the kernel says where it is.
            End::Complete => {
                let last = *addresses.last()?;
                known_tail(last)
                    .map(|_| false)
                    .or_else(|| in_program_entry(last).then_some(false))
            }
            End::CopyEnded => Some(true),
            End::NeedsFramePointer { .. } => {
                let tail = known_tail(*addresses.last()?)?;
                addresses.extend(tail);
                Some(false)
            }
            End::Broken => None,
        };
        if let Some(truncated) = whole(&end, &mut addresses) {
            let complete = !truncated;
            return Some((
                Unwound {
                    addresses,
                    truncated,
                    complete,
                },
                None,
            ));
        }
        let End::NeedsFramePointer { regs, address } = end else {
            return None;
        };
        // The frame pointer is this frame's base: its stack pointer plus
        // what its prologue pushed and reserved below the frame record.
        let function = enclosing_function(address.address_for_lookup())?;
        let below_record = frame_size_below_record(function)?;
        let frame_pointer = regs.sp().checked_add(below_record)?;
        let return_address = read_copy(stack, sp, frame_pointer.checked_add(8)?).ok()?;
        if !follows_a_call(return_address) {
            return None;
        }
        let mut resumed = regs;
        resumed.set_bp(frame_pointer);
        let end = walk(unwinder, cache, resumed, address, stack, sp, &mut addresses);
        let truncated = whole(&end, &mut addresses)?;
        Some((
            Unwound {
                addresses,
                truncated,
                complete: !truncated,
            },
            Some(frame_pointer),
        ))
    })
}

/// How far a function's frame record (`push rbp; mov rbp, rsp`) lies above
/// its stack pointer in its body: the registers it pushes after it and the
/// space it reserves, read from its prologue. `None` for a prologue of
/// another shape (a realigned or probed stack, say), whose body may move
/// the stack pointer: the caller then uses the signal.
#[cfg(target_arch = "x86_64")]
fn frame_size_below_record(function: u64) -> Option<u64> {
    static KNOWN: LazyLock<Mutex<HashMap<u64, Option<u64>>>> =
        LazyLock::new(|| Mutex::new(HashMap::new()));
    let mut known = KNOWN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(size) = known.get(&function) {
        return *size;
    }
    let size = read_own::<64>(function).and_then(|code| prologue_frame_size(&code));
    if known.len() >= 4096 {
        known.clear();
    }
    known.insert(function, size);
    size
}

/// The loop of LLVM's inline stack probe, after its `sub $N,%r11`.
#[cfg(target_arch = "x86_64")]
const PROBE_LOOP: [u8; 20] = [
    0x48, 0x81, 0xec, 0x00, 0x10, 0x00, 0x00, // sub $0x1000,%rsp
    0x48, 0xc7, 0x04, 0x24, 0x00, 0x00, 0x00, 0x00, // movq $0,(%rsp)
    0x4c, 0x39, 0xdc, // cmp %r11,%rsp
    0x75, 0xec, // jne back to the sub
];

/// [`frame_size_below_record`] from the prologue's bytes.
#[cfg(target_arch = "x86_64")]
fn prologue_frame_size(code: &[u8]) -> Option<u64> {
    let mut at = 0;
    if code.starts_with(&[0xf3, 0x0f, 0x1e, 0xfa]) {
        at += 4; // endbr64
    }
    // push %rbp; mov %rsp, %rbp
    if code.get(at..at + 4)? != [0x55, 0x48, 0x89, 0xe5] {
        return None;
    }
    at += 4;
    let mut size = 0u64;
    loop {
        match code.get(at..)? {
            // push %r8..%r15
            [0x41, 0x50..=0x57, ..] => {
                size += 8;
                at += 2;
            }
            // push %rax..%rdi but %rsp and %rbp (push %rax reserves 8)
            [0x50..=0x53 | 0x56 | 0x57, ..] => {
                size += 8;
                at += 1;
            }
            // A large frame touched a page at a time (LLVM's inline stack
            // probe): `mov %rsp,%r11; sub $N,%r11`, then a loop of `sub
            // $0x1000,%rsp; movq $0,(%rsp)` down to it.
            [0x49, 0x89, 0xe3, 0x49, 0x81, 0xeb, a, b, c, d, rest @ ..]
                if rest.starts_with(&PROBE_LOOP) =>
            {
                size += u64::from(u32::from_le_bytes([*a, *b, *c, *d]));
                at += 10 + PROBE_LOOP.len();
            }
            // Any other way to move the stack pointer: not understood.
            [0x49, 0x89, 0xe3, ..] | [0x48, 0x83, 0xe4, ..] => return None,
            // sub $imm8, %rsp
            [0x48, 0x83, 0xec, imm, ..] => {
                size += u64::from(*imm);
                return Some(size);
            }
            // sub $imm32, %rsp
            [0x48, 0x81, 0xec, a, b, c, d, ..] => {
                size += u64::from(u32::from_le_bytes([*a, *b, *c, *d]));
                return Some(size);
            }
            _ => return Some(size),
        }
    }
}

/// Whether the instruction that ends just before `return_address` is a
/// call, direct or through a register or memory.
#[cfg(target_arch = "x86_64")]
fn follows_a_call(return_address: u64) -> bool {
    if !(0x1000..USER_SPACE_END).contains(&return_address) {
        return false;
    }
    let Some(code) = return_address.checked_sub(7).and_then(read_own::<7>) else {
        return false;
    };
    // `before(n)` is the byte n before the return address.
    let before = |n: usize| code[7 - n];
    // ModRM of `call *r/m64`: reg field 2, with the given mod.
    let calls = |modrm: u8, mode: u8| modrm & 0xf8 == (mode << 6) | (2 << 3);
    before(5) == 0xe8
        || (before(2) == 0xff && calls(before(1), 3))
        || (before(3) == 0x41 && before(2) == 0xff && calls(before(1), 3))
        || (before(3) == 0xff && calls(before(2), 1))
        || (before(4) == 0x41 && before(3) == 0xff && calls(before(2), 1))
        || (before(6) == 0xff && (before(5) == 0x15 || calls(before(5), 2)))
        || (before(7) == 0x41 && before(6) == 0xff && calls(before(5), 2))
        || (before(3) == 0xff && before(2) == 0x14)
        || (before(4) == 0xff && before(3) == 0x54)
}

/// The start of the function that holds `address`, from the unwind tables
/// (as `_Unwind_FindEnclosingFunction` finds it).
#[cfg(target_arch = "x86_64")]
fn enclosing_function(address: u64) -> Option<u64> {
    extern "C" {
        fn _Unwind_FindEnclosingFunction(pc: *mut libc::c_void) -> *mut libc::c_void;
    }
    // SAFETY: a lookup in the unwinder's tables; any address is allowed,
    // and one outside every module gives null.
    let start = unsafe { _Unwind_FindEnclosingFunction(address as *mut libc::c_void) };
    (!start.is_null()).then_some(start as u64)
}

/// Reads `N` bytes of this process's memory at `address` with
/// `process_vm_readv`, so that a bad address fails instead of faulting.
#[cfg(target_arch = "x86_64")]
fn read_own<const N: usize>(address: u64) -> Option<[u8; N]> {
    let mut bytes = [0u8; N];
    let local = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: N,
    };
    let remote = libc::iovec {
        iov_base: address as *mut libc::c_void,
        iov_len: N,
    };
    // SAFETY: one valid local buffer; the kernel checks the remote range.
    let read = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    (usize::try_from(read).ok() == Some(N)).then_some(bytes)
}

/// Where x86_64 user space ends: no code lies above.
#[cfg(target_arch = "x86_64")]
const USER_SPACE_END: u64 = 0x0000_8000_0000_0000;

#[cfg(target_arch = "x86_64")]
fn start_registers(registers: Registers) -> UnwindRegs {
    UnwindRegs::new(registers.pc, registers.sp, registers.fp)
}

#[cfg(target_arch = "aarch64")]
fn start_registers(registers: Registers) -> UnwindRegs {
    UnwindRegs::new(registers.lr, registers.sp, registers.fp)
}

/// Every loaded module with its unwind sections copied out.
fn modules() -> Vec<Module<Vec<u8>>> {
    placed_modules(&|_, _| None)
        .into_iter()
        .map(|(module, _)| module)
        .collect()
}

/// Where another process has one of our modules: given the module's name
/// (`[main]` for the executable) and its lowest link-time address, the
/// bias it has there; `None` keeps our own.
type Placement<'a> = dyn Fn(&str, u64) -> Option<u64> + 'a;

/// Every loaded module, placed where `placement` says, with the shift from
/// its addresses there to ours: (its range there, ours minus theirs).
fn placed_modules(placement: &Placement<'_>) -> Vec<(Module<Vec<u8>>, Shift)> {
    let mut modules = Vec::new();
    each_module(&mut |info| {
        // SAFETY: called from the loader's callback, with its info.
        if let Some(module) = unsafe { module(info, placement) } {
            modules.push(module);
        }
    });
    modules
}

/// A module's range in another process, and what to add to an address
/// there to get ours.
#[derive(Debug, Clone)]
struct Shift {
    range: std::ops::Range<u64>,
    to_ours: i128,
    /// Whether the placement knew the module (else it is where ours is).
    placed_there: bool,
}

/// An unwinder for another process that runs this same executable with
/// the same libraries (the crash symboliser, which is the crashed binary
/// run again): our own unwind tables, placed where that process has each
/// module.
pub(crate) struct Remote {
    unwinder: ArchUnwinder<Vec<u8>>,
    cache: Cache,
    shifts: Vec<Shift>,
}

impl Remote {
    /// `bias_there(name, lowest)` gives a module's bias in the other
    /// process, from its name (`[main]` for the executable) and its lowest
    /// link-time address; a module it does not have is left out.
    pub(crate) fn new(bias_there: &dyn Fn(&str, u64) -> Option<u64>) -> Remote {
        let mut unwinder = ArchUnwinder::new();
        let mut shifts = Vec::new();
        for (module, shift) in placed_modules(bias_there) {
            if !shift.placed_there {
                continue;
            }
            unwinder.add_module(module);
            shifts.push(shift);
        }
        Remote {
            unwinder,
            cache: Cache::new(),
            shifts,
        }
    }

    /// A thread's return addresses there, from its registers and a copy of
    /// its stack that starts at `registers.sp`.
    pub(crate) fn unwind(&mut self, registers: Registers, stack: &[u8]) -> Unwound {
        unwind_with(&self.unwinder, &mut self.cache, registers, stack)
    }

    /// The address here of `address` there, when it is in a module both
    /// have.
    pub(crate) fn to_ours(&self, address: u64) -> Option<u64> {
        let shift = self
            .shifts
            .iter()
            .find(|shift| shift.range.contains(&address))?;
        u64::try_from(i128::from(address) + shift.to_ours).ok()
    }
}

/// # Safety
///
/// Call only from a `dl_iterate_phdr` callback, with the info it was given.
unsafe fn module(
    info: &libc::dl_phdr_info,
    placement: &Placement<'_>,
) -> Option<(Module<Vec<u8>>, Shift)> {
    if info.dlpi_phdr.is_null() {
        return None;
    }
    let bias: u64 = info.dlpi_addr;
    // SAFETY: the loader's program headers, `dlpi_phnum` of them.
    let headers =
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) };
    let loads: Vec<std::ops::Range<u64>> = headers
        .iter()
        .filter(|header| header.p_type == libc::PT_LOAD)
        .map(|header| header.p_vaddr..header.p_vaddr + header.p_memsz)
        .collect();
    let lowest = loads.iter().map(|range| range.start).min()?;
    let highest = loads.iter().map(|range| range.end).max()?;
    let text_svma = headers
        .iter()
        .find(|header| header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0)
        .map(|header| header.p_vaddr..header.p_vaddr + header.p_memsz);
    let hdr = headers
        .iter()
        .find(|header| header.p_type == libc::PT_GNU_EH_FRAME)?;
    let hdr_svma = hdr.p_vaddr..hdr.p_vaddr + hdr.p_memsz;
    // SAFETY: PT_GNU_EH_FRAME lies inside a mapped, readable segment.
    let hdr_bytes = unsafe { copy(bias + hdr_svma.start, hdr_svma.end - hdr_svma.start) };
    let eh_frame_svma_start = eh_frame_address(&hdr_bytes, hdr_svma.start)?;
    // `.eh_frame_hdr` does not give `.eh_frame`'s length; it cannot run past
    // the segment that holds it.
    let segment = loads
        .iter()
        .find(|range| range.contains(&eh_frame_svma_start))?;
    let eh_frame_svma = eh_frame_svma_start..segment.end;
    // SAFETY: the range lies inside a mapped, readable load segment.
    let eh_frame = unsafe {
        copy(
            bias + eh_frame_svma.start,
            eh_frame_svma.end - eh_frame_svma.start,
        )
    };
    // SAFETY: called from the loader's callback, with its info.
    let name = unsafe { module_name(info) };
    let name = if name.is_empty() {
        "[main]".to_owned()
    } else {
        name
    };
    // Where the module is to be unwound: here, or where another process
    // has it.
    let there = placement(&name, lowest);
    let placed = there.unwrap_or(bias);
    let shift = Shift {
        range: placed + lowest..placed + highest,
        to_ours: i128::from(bias) - i128::from(placed),
        placed_there: there.is_some(),
    };
    let module = Module::new(
        name,
        placed + lowest..placed + highest,
        placed,
        ExplicitModuleSectionInfo {
            base_svma: 0,
            text_svma,
            eh_frame_svma: Some(eh_frame_svma),
            eh_frame: Some(eh_frame),
            eh_frame_hdr_svma: Some(hdr_svma),
            eh_frame_hdr: Some(hdr_bytes),
            ..Default::default()
        },
    );
    Some((module, shift))
}

/// # Safety
///
/// `address..address + len` must be mapped and readable.
unsafe fn copy(address: u64, len: u64) -> Vec<u8> {
    // SAFETY: as the caller promises.
    unsafe { std::slice::from_raw_parts(address as usize as *const u8, len as usize) }.to_vec()
}

/// `.eh_frame`'s link-time address, from the `eh_frame_ptr` field of the
/// `.eh_frame_hdr` at `hdr_svma`. Only the encodings linkers emit are read.
fn eh_frame_address(hdr: &[u8], hdr_svma: u64) -> Option<u64> {
    const PCREL_SDATA4: u8 = 0x1b;
    const PCREL_SDATA8: u8 = 0x1c;
    const UDATA4: u8 = 0x03;
    const UDATA8: u8 = 0x04;
    const SDATA4: u8 = 0x0b;
    let (&version, rest) = hdr.split_first()?;
    if version != 1 {
        return None;
    }
    let encoding = *rest.first()?;
    let field = hdr.get(4..)?;
    let field_svma = hdr_svma + 4;
    let read4 = || {
        Some(i64::from(i32::from_ne_bytes(
            field.get(..4)?.try_into().ok()?,
        )))
    };
    let read8 = || Some(i64::from_ne_bytes(field.get(..8)?.try_into().ok()?));
    match encoding {
        PCREL_SDATA4 => field_svma.checked_add_signed(read4()?),
        PCREL_SDATA8 => field_svma.checked_add_signed(read8()?),
        UDATA4 => Some(u64::from(u32::from_ne_bytes(
            field.get(..4)?.try_into().ok()?,
        ))),
        SDATA4 => u64::try_from(read4()?).ok(),
        UDATA8 => u64::try_from(read8()?).ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn prologues_give_the_frame_below_the_record() {
        let push_rbp = [0x55, 0x48, 0x89, 0xe5];
        let with = |rest: &[u8]| [&push_rbp[..], rest].concat();
        // push %r15; push %r14; push %rbx; sub $0x28,%rsp
        let plain = with(&[0x41, 0x57, 0x41, 0x56, 0x53, 0x48, 0x83, 0xec, 0x28]);
        assert_eq!(prologue_frame_size(&plain), Some(24 + 0x28));
        // endbr64, push %rax (8 bytes reserved), then the body
        let endbr = [&[0xf3, 0x0f, 0x1e, 0xfa][..], &with(&[0x50, 0x89, 0xf8])].concat();
        assert_eq!(prologue_frame_size(&endbr), Some(8));
        // an inline stack probe of 0x10000, then sub $0x188,%rsp
        let probed = [
            &with(&[0x49, 0x89, 0xe3, 0x49, 0x81, 0xeb, 0x00, 0x00, 0x01, 0x00])[..],
            &PROBE_LOOP,
            &[0x48, 0x81, 0xec, 0x88, 0x01, 0x00, 0x00],
        ]
        .concat();
        assert_eq!(prologue_frame_size(&probed), Some(0x10000 + 0x188));
        // a realigned stack (and $-32,%rsp), and no frame record at all
        assert_eq!(prologue_frame_size(&with(&[0x48, 0x83, 0xe4, 0xe0])), None);
        assert_eq!(prologue_frame_size(&[0x53, 0x48, 0x83, 0xec, 0x10]), None);
    }

    #[test]
    fn eh_frame_pointers_decode() {
        // version 1, pcrel|sdata4, udata4 count, datarel|sdata4 table, -16
        let hdr = [1, 0x1b, 0x03, 0x3b, 0xf0, 0xff, 0xff, 0xff];
        assert_eq!(eh_frame_address(&hdr, 0x1000), Some(0x1000 + 4 - 16));
        assert_eq!(eh_frame_address(&[2, 0x1b, 0, 0, 0, 0, 0, 0], 0), None);
        assert_eq!(eh_frame_address(&[1, 0xff, 0, 0, 0, 0, 0, 0], 0), None);
    }

    #[test]
    fn every_loaded_module_with_unwind_info_is_found() {
        let modules = modules();
        assert!(modules.iter().any(|module| module.name() == "[main]"));
        assert!(modules
            .iter()
            .any(|module| module.name().contains("libc.so")));
        let here = every_loaded_module_with_unwind_info_is_found as *const () as usize as u64;
        assert!(modules
            .iter()
            .any(|module| module.avma_range().contains(&here)));
    }
}
