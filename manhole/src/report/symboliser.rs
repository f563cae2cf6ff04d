//! The crash symboliser's work, once [`super::helper`] has proved that
//! its parent really crashed: it stops every thread of the crashed process
//! with `ptrace` (the dying process named this process its tracer with
//! `PR_SET_PTRACER`), reads their registers and copies their stacks,
//! unwinds them with this binary's own unwind tables placed where the
//! crashed process has each module (`/proc/PID/maps`), and symbolises with
//! this binary's own debug info. Sections it cannot improve on (the
//! registers, the in-flight calls, the log, the modules) are kept as the
//! raw report wrote them. It replaces the raw report in the report file,
//! writes the symbolised one to stderr, and tells the dying process it is
//! done by writing its `done` word.
//!
//! Normal context, in a process of its own: it may allocate, and a fault
//! here costs only the symbolised report.

use super::signal_safe as safe;
use super::state::{Shared, FIRST_LINE, LAST_LINE};
use crate::capture::stacks::{self, Frame, Stacks, Symbols, ThreadStack};
use crate::capture::unwind::{Registers, Remote};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The most of each stack copied, from its stack pointer up.
const STACK_COPY: usize = 512 * 1024;
const PAGE: usize = 4096;

/// What the symboliser works on, once [`super::helper`] has verified it.
pub(super) struct Request {
    /// The crashed process: the helper's parent.
    pub(super) pid: libc::pid_t,
    /// Its thread that crashed.
    pub(super) tid: libc::pid_t,
    /// The memory file with the raw report.
    pub(super) scratch_fd: libc::c_int,
    /// The report file, or -1 for stderr only.
    pub(super) file_fd: libc::c_int,
    /// Where the crashed process has its [`Shared`] words.
    pub(super) shared: usize,
}

/// Symbolises the crashed process's report. Normal context.
pub(super) fn run(request: &Request) -> Result<(), String> {
    let raw = read_all(request.scratch_fd)?;
    let shared = read_shared(request)?;
    let maps = Maps::read(request.pid)?;
    // The crashed process's own module list, as its raw report gives it,
    // comes first: its memory map may also hold a file mapped again whole
    // (a symboliser reading its symbols), which the map cannot tell apart.
    let listed = listed_biases(&raw);
    let mut remote = Remote::new(&|name, lowest| {
        let path = if name == "[main]" {
            maps.exe.as_str()
        } else {
            name
        };
        listed
            .get(path)
            .copied()
            .or_else(|| maps.bias_of(name, lowest))
    });
    let tids = thread_ids(request.pid)?;
    let mut threads = Vec::new();
    for &tid in &tids {
        let registers = if tid == request.tid {
            Some(shared)
        } else {
            stop_and_read_registers(tid)
        };
        let stack = registers.map(|registers| copy_stack(request.pid, registers.sp));
        threads.push((tid, registers, stack));
    }
    for &tid in &tids {
        if tid != request.tid {
            // SAFETY: detaching a thread we seized; errors mean it is gone.
            unsafe { libc::ptrace(libc::PTRACE_DETACH, tid, 0, 0) };
        }
    }
    let mut symbols = Symbols::default();
    let mut crashing = None;
    // More of the crashing thread's stack, after its walk: the scanned
    // words when the walk broke off, or the outermost frames when the stack
    // was deeper than the copy. Introduced by a line that says which.
    let mut more: Option<(&str, Vec<Frame>)> = None;
    let mut others = Vec::new();
    for (tid, registers, stack) in threads {
        let (name, mut state) = name_and_state(request.pid, tid);
        if tid == request.tid {
            state = "crashed".to_owned();
        }
        let mut thread = ThreadStack {
            tid,
            name,
            state,
            frames: Vec::new(),
            frames_missing: None,
            captured_with: None,
            polling: None,
            waiting_on: None,
        };
        match (registers, stack) {
            (Some(registers), Some(stack)) => {
                let unwound = remote.unwind(registers, &stack);
                thread.frames = symbolise(&remote, &mut symbols, &unwound.addresses, true);
                // A walk that broke off (code without unwind tables, such
                // as musl's own `abort`) loses the callers: the raw
                // report's scan of the stack still holds them.
                if tid == request.tid && !unwound.complete && !unwound.truncated {
                    let words = scanned_words(&raw);
                    let mut scanned = symbolise(&remote, &mut symbols, &words, false);
                    scanned.retain(|frame| frame.function.is_some());
                    scanned.truncate(MOST_SCANNED);
                    if !scanned.is_empty() {
                        more = Some((SCANNED, scanned));
                    }
                }
                let mut starts_a_thread = |remote: &Remote, address: u64| {
                    symbolise(remote, &mut symbols, &[address], false)
                        .iter()
                        .any(|frame| {
                            frame
                                .function
                                .as_deref()
                                .is_some_and(|name| THREAD_STARTS.contains(&name))
                        })
                };
                let outer = (tid == request.tid && unwound.truncated)
                    .then(|| {
                        outermost_frames(
                            &mut remote,
                            request.pid,
                            registers.sp,
                            &mut starts_a_thread,
                        )
                    })
                    .flatten();
                match outer {
                    Some(addresses) => {
                        more = Some((
                            OUTERMOST,
                            symbolise(&remote, &mut symbols, &addresses, false),
                        ));
                    }
                    None if unwound.truncated => {
                        thread.frames_missing = Some(format!(
                            "(the stack is deeper than the {} KiB copied)",
                            STACK_COPY / 1024
                        ));
                    }
                    None => {}
                }
            }
            _ => thread.frames_missing = Some("(its registers could not be read)".to_owned()),
        }
        if tid == request.tid {
            crashing = Some(thread);
        } else {
            others.push(thread);
        }
    }
    let report = compose(&raw, crashing, more, others);
    if request.file_fd >= 0 {
        // SAFETY: the report file the dying process opened for us.
        unsafe { libc::ftruncate(request.file_fd, 0) };
        pwrite_all(request.file_fd, report.as_bytes())?;
    }
    pwrite_or_write_stderr(report.as_bytes());
    tell_done(request)
}

/// The raw report, from the dying process's memory file.
fn read_all(fd: libc::c_int) -> Result<String, String> {
    let mut bytes = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: reads into `chunk` at the offset read so far.
        let read = unsafe {
            libc::pread(
                fd,
                chunk.as_mut_ptr().cast(),
                chunk.len(),
                bytes.len() as libc::off_t,
            )
        };
        if read < 0 {
            return Err(format!(
                "cannot read the raw report: {}",
                std::io::Error::last_os_error()
            ));
        }
        if read == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..read as usize]);
    }
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn read_shared(request: &Request) -> Result<Registers, String> {
    let mut words = [0u8; 32];
    if safe::read_process_memory(request.pid, request.shared, &mut words) != words.len() {
        return Err(format!(
            "cannot read the crashed process's registers: {}",
            std::io::Error::last_os_error()
        ));
    }
    let word = |index: usize| {
        u64::from_ne_bytes(words[index * 8..index * 8 + 8].try_into().unwrap_or([0; 8]))
    };
    Ok(Registers {
        pc: word(0),
        sp: word(1),
        fp: word(2),
        lr: word(3),
    })
}

fn tell_done(request: &Request) -> Result<(), String> {
    let one = 1u64.to_ne_bytes();
    let local = libc::iovec {
        iov_base: one.as_ptr() as *mut libc::c_void,
        iov_len: 8,
    };
    let remote = libc::iovec {
        iov_base: (request.shared + std::mem::offset_of!(Shared, done)) as *mut libc::c_void,
        iov_len: 8,
    };
    // SAFETY: writes 8 bytes into the `done` word the dying process named.
    let written = unsafe { libc::process_vm_writev(request.pid, &local, 1, &remote, 1, 0) };
    if written == 8 {
        Ok(())
    } else {
        Err(format!(
            "cannot tell the crashed process it is done: {}",
            std::io::Error::last_os_error()
        ))
    }
}

fn thread_ids(pid: libc::pid_t) -> Result<Vec<libc::pid_t>, String> {
    let mut tids: Vec<libc::pid_t> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map_err(|err| format!("cannot list the crashed process's threads: {err}"))?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    Ok(tids)
}

/// Stops `tid` with `PTRACE_SEIZE` and `PTRACE_INTERRUPT`, and reads its
/// registers.
fn stop_and_read_registers(tid: libc::pid_t) -> Option<Registers> {
    // SAFETY: ptrace requests on a thread of the process that allowed us;
    // each fails cleanly if it is not allowed or the thread is gone.
    unsafe {
        if libc::ptrace(libc::PTRACE_SEIZE, tid, 0, 0) != 0 {
            return None;
        }
        if libc::ptrace(libc::PTRACE_INTERRUPT, tid, 0, 0) != 0 {
            return None;
        }
        let mut status = 0;
        if libc::waitpid(tid, &mut status, libc::__WALL) != tid {
            return None;
        }
        let mut regs: libc::user_regs_struct = std::mem::zeroed();
        let mut vector = libc::iovec {
            iov_base: (&raw mut regs).cast(),
            iov_len: std::mem::size_of::<libc::user_regs_struct>(),
        };
        if libc::ptrace(
            libc::PTRACE_GETREGSET,
            tid,
            libc::NT_PRSTATUS as usize,
            &raw mut vector,
        ) != 0
        {
            return None;
        }
        Some(registers_of(&regs))
    }
}

#[cfg(target_arch = "x86_64")]
fn registers_of(regs: &libc::user_regs_struct) -> Registers {
    Registers {
        pc: regs.rip,
        sp: regs.rsp,
        fp: regs.rbp,
        lr: 0,
    }
}

#[cfg(target_arch = "aarch64")]
fn registers_of(regs: &libc::user_regs_struct) -> Registers {
    Registers {
        pc: regs.pc,
        sp: regs.sp,
        fp: regs.regs[29],
        lr: regs.regs[30],
    }
}

/// The stack from `sp` up, page by page, as far as it is mapped (at most
/// [`STACK_COPY`]). A stack pointer in the guard page (an overflow) gives
/// zeroes up to the first mapped page.
fn copy_stack(pid: libc::pid_t, sp: u64) -> Vec<u8> {
    let mut copy = vec![0u8; STACK_COPY];
    let start = sp as usize;
    let mut at = 0;
    let mut started = false;
    while at < STACK_COPY {
        let page_end = ((start + at) / PAGE + 1) * PAGE;
        let len = (page_end - (start + at)).min(STACK_COPY - at);
        let copied = safe::read_process_memory(pid, start + at, &mut copy[at..at + len]);
        if copied < len {
            if started {
                copy.truncate(at + copied);
                return copy;
            }
            // Still below the mapped stack: skip the page.
        } else {
            started = true;
        }
        at += len;
    }
    copy
}

/// Each module's bias (its load address), from the raw report's
/// `modules:` section: `  0xBIAS PATH [build id ID]`.
fn listed_biases(raw: &str) -> HashMap<String, u64> {
    let mut biases = HashMap::new();
    let Some(at) = raw.find("\nmodules:\n") else {
        return biases;
    };
    for line in raw[at + 10..].lines() {
        let Some(rest) = line.strip_prefix("  0x") else {
            break;
        };
        let Some((bias, rest)) = rest.split_once(' ') else {
            continue;
        };
        let path = rest.split(" build id ").next().unwrap_or(rest);
        if let Ok(bias) = u64::from_str_radix(bias, 16) {
            biases.insert(path.to_owned(), bias);
        }
    }
    biases
}

/// The crashed process's memory map: where it has each file mapped.
struct Maps {
    /// The lowest address of each file's mapping at offset 0.
    starts: HashMap<String, u64>,
    exe: String,
}

impl Maps {
    fn read(pid: libc::pid_t) -> Result<Maps, String> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/maps"))
            .map_err(|err| format!("cannot read the crashed process's memory map: {err}"))?;
        let mut starts: HashMap<String, u64> = HashMap::new();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(_perms), Some(offset), Some(_dev), Some(_inode)) = (
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
                fields.next(),
            ) else {
                continue;
            };
            let path = fields.collect::<Vec<_>>().join(" ");
            if path.is_empty() || u64::from_str_radix(offset, 16) != Ok(0) {
                continue;
            }
            let Some(start) = range
                .split('-')
                .next()
                .and_then(|start| u64::from_str_radix(start, 16).ok())
            else {
                continue;
            };
            let entry = starts.entry(path).or_insert(start);
            *entry = (*entry).min(start);
        }
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .map(|path| path.display().to_string())
            .unwrap_or_default();
        Ok(Maps { starts, exe })
    }

    /// A module's bias there, from our name for it.
    fn bias_of(&self, name: &str, lowest: u64) -> Option<u64> {
        let path = match name {
            "[main]" => self.exe.clone(),
            name if name.starts_with("linux-vdso") || name.starts_with("linux-gate") => {
                "[vdso]".to_owned()
            }
            name => std::fs::canonicalize(name).map_or_else(
                |_| name.to_owned(),
                |path: PathBuf| path.display().to_string(),
            ),
        };
        let start = *self.starts.get(&path)?;
        start.checked_sub(lowest & !(PAGE as u64 - 1))
    }
}

/// What the header says when the frames have names but no file:line.
const NO_LINE_TABLES: &str = "note: this binary has no line tables, so its frames have no \
file:line; to have them, build it with line tables, which cost no speed: [profile.release] \
debug = \"line-tables-only\" in Cargo.toml";

/// Whether the frames were named but none has a file: the binary was built
/// without line tables (a plain release build), not a lookup that failed.
fn lacks_line_tables(frames: &[Frame]) -> bool {
    frames.iter().any(|frame| frame.function.is_some())
        && frames.iter().all(|frame| frame.file.is_none())
}

/// What introduces the frames found by scanning the stack, after a walk
/// that broke off.
const SCANNED: &str = "(the walk stopped there; below, words on the stack that point into \
code, from the raw report: the callers, perhaps with stale ones among them)";

/// What introduces the outermost frames of a stack deeper than the copy.
const OUTERMOST: &str = "(the stack goes on past the 512 KiB copied; below, its outermost frames, \
walked from the top of the thread's stack and numbered anew)";

/// The C functions a thread's stack begins with, in glibc and musl.
const THREAD_STARTS: &[&str] = &[
    "_start",
    "__libc_start_main",
    "__libc_start_call_main",
    "libc_start_main_stage2",
    "start_thread",
    "start",
    "clone",
    "clone3",
    "__clone",
];

/// How much of the top of a deep stack is copied for its outermost frames.
const OUTER_COPY: usize = 64 * 1024;

/// The return addresses of the outermost frames of a stack deeper than the
/// copy: the top [`OUTER_COPY`] of the thread's stack mapping is copied and
/// walked from each word in it that is a return address, its frame pointer
/// guessed from the word below it (where a frame record keeps it). The
/// lowest walk that reaches the thread's start is the tail; a walk from
/// lower down that meets that tail, with a guess that was wrong for the
/// frames beyond, is believed up to there, and the tail added.
fn outermost_frames(
    remote: &mut Remote,
    pid: libc::pid_t,
    sp: u64,
    starts_a_thread: &mut dyn FnMut(&Remote, u64) -> bool,
) -> Option<Vec<u64>> {
    let top = stack_top(pid, sp)?;
    let start = top
        .saturating_sub(OUTER_COPY as u64)
        .max(sp.saturating_add(STACK_COPY as u64));
    let mut outer = vec![0u8; usize::try_from(top.checked_sub(start)?).ok()?];
    let copied = safe::read_process_memory(pid, start as usize, &mut outer);
    outer.truncate(copied);
    let word = |at: usize| -> Option<u64> {
        Some(u64::from_ne_bytes(outer.get(at..at + 8)?.try_into().ok()?))
    };
    let mut walks = Vec::new();
    for at in (8..outer.len().saturating_sub(8)).step_by(8) {
        let Some(pc) = word(at).filter(|pc| remote.to_ours(*pc).is_some()) else {
            continue;
        };
        let registers = Registers {
            pc,
            sp: start + at as u64 + 8,
            fp: word(at - 8)?,
            lr: 0,
        };
        let unwound = remote.unwind(registers, &outer[at + 8..]);
        // Believed when every frame is in code, and the walk reached the
        // end of the stack, or a C function that starts a thread (musl's
        // have no unwind tables, so a walk stops in them).
        let in_code = unwound
            .addresses
            .iter()
            .all(|&address| remote.to_ours(address).is_some());
        let ended = unwound.complete
            || (!unwound.truncated
                && unwound
                    .addresses
                    .last()
                    .is_some_and(|&last| starts_a_thread(remote, last)));
        let complete = in_code && ended && unwound.addresses.len() >= 2;
        walks.push(unwound.addresses);
        if complete {
            let tail = walks.pop()?;
            let first = tail[0];
            // The lowest walk that meets the tail, spliced onto it.
            let spliced = walks.iter().find_map(|walk| {
                let meets = walk.iter().position(|&address| address == first)?;
                Some([&walk[..meets], &tail[..]].concat())
            });
            return Some(spliced.unwrap_or(tail));
        }
    }
    None
}

/// The end of the readable mapping that holds the stack above `sp`
/// (which may lie in the guard page below it): the top of the thread's
/// stack.
fn stack_top(pid: libc::pid_t, sp: u64) -> Option<u64> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (start, end) = fields.next()?.split_once('-')?;
            // A guard page is mapped too, without access.
            if !fields.next()?.starts_with('r') {
                return None;
            }
            Some((
                u64::from_str_radix(start, 16).ok()?,
                u64::from_str_radix(end, 16).ok()?,
            ))
        })
        .filter(|&(_, end)| end > sp)
        .min_by_key(|&(start, _)| start)
        .map(|(_, end)| end)
}

/// The most scanned frames a report shows: the callers are near the top,
/// and stale words pile up below them.
const MOST_SCANNED: usize = 32;

/// The return addresses the raw report found by scanning the crashing
/// thread's stack (`  #N 0xADDRESS MODULE+0xOFFSET`), without the pc.
fn scanned_words(raw: &str) -> Vec<u64> {
    let Some(block) = raw
        .split("\n\n")
        .find(|block| block.starts_with("crashing thread"))
    else {
        return Vec::new();
    };
    block
        .lines()
        .filter_map(|line| line.trim_start().strip_prefix('#'))
        .filter_map(|rest| {
            let (index, rest) = rest.split_once(' ')?;
            let address = rest.split_whitespace().next()?.strip_prefix("0x")?;
            (index != "0")
                .then(|| u64::from_str_radix(address, 16).ok())
                .flatten()
        })
        .collect()
}

/// Symbolises a thread's addresses there, with our own debug info: return
/// addresses, the first one being the exact pc when `first_is_pc`.
fn symbolise(
    remote: &Remote,
    symbols: &mut Symbols,
    addresses: &[u64],
    first_is_pc: bool,
) -> Vec<Frame> {
    let mut frames = Vec::new();
    for (index, &address) in addresses.iter().enumerate() {
        let Some(ours) = remote.to_ours(address) else {
            frames.push(Frame {
                function: None,
                file: None,
                line: None,
                address: address as usize,
            });
            continue;
        };
        for mut frame in symbols.frames(&[ours as usize], first_is_pc && index == 0) {
            frame.address = address as usize;
            frames.push(frame);
        }
    }
    stacks::trim_below_entry(&mut frames);
    frames
}

fn name_and_state(pid: libc::pid_t, tid: libc::pid_t) -> (String, String) {
    let name =
        crate::os::procfs::thread_name(&pid.to_string(), tid).unwrap_or_else(|| "?".to_owned());
    let state = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/stat"))
        .ok()
        .and_then(|stat| {
            let close = stat.rfind(')')?;
            stat[close + 1..].trim_start().chars().next()
        })
        .map_or("?", crate::os::procfs::state_word);
    (name, state.to_owned())
}

/// The symbolised report: the raw one with its first line made final and
/// its two stack sections replaced.
fn compose(
    raw: &str,
    crashing: Option<ThreadStack>,
    more: Option<(&str, Vec<Frame>)>,
    others: Vec<ThreadStack>,
) -> String {
    let mut report = String::new();
    for block in raw.split("\n\n") {
        if !report.is_empty() {
            report.push('\n');
        }
        if block.starts_with(FIRST_LINE) {
            let header = block.replacen(" (raw):", ":", 1);
            let without_lines = crashing
                .as_ref()
                .is_some_and(|thread| lacks_line_tables(&thread.frames));
            match header.split_once('\n') {
                // The note comes second, where a reader of the first lines
                // sees it.
                Some((first, rest)) if without_lines => {
                    let _ = write!(report, "{first}\n{NO_LINE_TABLES}\n{rest}");
                }
                _ => report.push_str(&header),
            }
        } else if block.starts_with("crashing thread") {
            match &crashing {
                Some(thread) => {
                    let _ = write!(report, "crashing thread:\n{thread}");
                    if let Some((intro, frames)) = &more {
                        let _ = writeln!(report, "    {intro}");
                        let _ = stacks::write_frames(&mut report, frames);
                    }
                    report.truncate(report.trim_end().len());
                }
                None => report.push_str(block),
            }
        } else if block.starts_with("threads:") {
            let _ = writeln!(report, "threads ({} more):", others.len());
            let stacks = Stacks {
                threads: others.clone(),
            };
            // The other threads in the short form: the program's frames,
            // runtime runs folded; the crashing thread keeps every frame.
            let _ = write!(report, "{}", stacks::Short(&stacks.collapsed()));
            report.truncate(report.trim_end().len());
        } else {
            report.push_str(block);
        }
        report.push('\n');
    }
    report.truncate(report.trim_end().len());
    if !report.ends_with(LAST_LINE) {
        report.push('\n');
        report.push_str(LAST_LINE);
    }
    report.push('\n');
    report
}

fn pwrite_all(fd: libc::c_int, bytes: &[u8]) -> Result<(), String> {
    let mut at = 0;
    while at < bytes.len() {
        // SAFETY: writes from `bytes` at offset `at`.
        let written = unsafe {
            libc::pwrite(
                fd,
                bytes[at..].as_ptr().cast(),
                bytes.len() - at,
                at as libc::off_t,
            )
        };
        if written <= 0 {
            return Err(format!(
                "cannot write the report file: {}",
                std::io::Error::last_os_error()
            ));
        }
        at += written as usize;
    }
    Ok(())
}

fn pwrite_or_write_stderr(bytes: &[u8]) {
    use std::io::Write as _;
    let mut stderr = std::io::stderr().lock();
    let _ = stderr.write_all(bytes);
    let _ = stderr.flush();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scanned_words_are_read_from_the_crashing_threads_block_without_the_pc() {
        let raw = "manhole crash report (raw): SIGABRT\n\
                   \n\
                   crashing thread 7 \"app\" (raw frames: the pc, then words on the stack that point into code)\n\
                   \x20 #0 0x7f00000010 /srv/app+0x10\n\
                   \x20 #1 0x7f00000020 /srv/app+0x20\n\
                   \x20 #2 0x7f00000abc /srv/app+0xabc\n\
                   \n\
                   registers:\n\
                   \x20 #9 0x1 not a frame\n";
        assert_eq!(scanned_words(raw), [0x7f00000020, 0x7f00000abc]);
        assert!(scanned_words("no such block\n").is_empty());
    }
}
