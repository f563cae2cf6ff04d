//! Addresses to function names and `file:line`, read lazily and let go.
//!
//! Nothing is read while nobody asks. The first request that symbolises (a
//! dump, a profile, `panics`) opens the files of the modules its addresses
//! fall in, and [`addr2line`] parses their debug info one compilation unit
//! at a time, only the units those addresses are in. A module without debug
//! info (a system library) is named from its symbol table, or from the
//! symbol table of its separate debug file (`/usr/lib/debug/.build-id/…`),
//! whose debug info is not read: distributions compress it, and one look
//! would cost its whole size decompressed (34 MiB for glibc's).
//!
//! The files are read in place from mappings of their own
//! ([`crate::capture::debug_info`]), whose pages leave the resident set as
//! soon as the request is answered. Once no such request has come for
//! `symbol_cache_idle` (a minute by default), a `manhole-symbols` thread
//! drops what was parsed, and the unwinder's tables, and hands the freed
//! heap back to the kernel, then ends, so that an idle manhole neither
//! holds the tables nor wakes.

use crate::capture::debug_info::DebugInfo;
use crate::capture::turn;
use crate::instrument::clock::now_ns;
use crate::options::DEFAULT_SYMBOL_CACHE_IDLE;
use crate::os::loader::load_counters;
use crate::os::modules::{self, Module};
use serde::{Serialize, Serializer};
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// One stack frame. With inlining, several frames can share an address.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Frame {
    /// The demangled function name, when the symbol is known.
    pub function: Option<String>,
    /// The source file, when debug info has it.
    pub file: Option<String>,
    /// The source line, when debug info has it.
    pub line: Option<u32>,
    /// The instruction address.
    #[serde(serialize_with = "hex_address")]
    pub address: usize,
}

fn hex_address<S: Serializer>(address: &usize, serializer: S) -> Result<S::Ok, S::Error> {
    // Written straight into the output: a dump has tens of thousands.
    serializer.collect_str(&format_args!("{address:#x}"))
}

/// Resolved frames per address, shared by every thread of one dump.
#[derive(Default)]
pub(crate) struct Symbols {
    resolved: HashMap<usize, Vec<Frame>>,
}

impl Symbols {
    /// Symbolises one thread's addresses. `interrupted` says the first one
    /// is the exact program counter of a thread stopped by a signal, not a
    /// return address.
    pub(crate) fn frames(&mut self, addresses: &[usize], interrupted: bool) -> Vec<Frame> {
        let mut loaded = loaded();
        let mut frames = Vec::new();
        for (index, &address) in addresses.iter().enumerate() {
            // A return address points after its call: the call itself is
            // the byte before. An exact program counter is looked up as is.
            let probe = if index == 0 && interrupted {
                address
            } else {
                address.saturating_sub(1)
            };
            let resolved = self
                .resolved
                .entry(probe)
                .or_insert_with(|| loaded.resolve(probe, address));
            frames.extend(resolved.iter().cloned());
        }
        trim_below_entry(&mut frames);
        frames.retain(|frame| frame.address != 0);
        frames
    }
}

impl Drop for Symbols {
    /// The request is answered: the pages it read of the modules' files
    /// leave this process's resident set (what it parsed stays, on the
    /// heap, until the tables are let go).
    fn drop(&mut self) {
        if self.resolved.is_empty() {
            return;
        }
        let loaded = LOADED.lock().unwrap_or_else(PoisonError::into_inner);
        for (_, source) in loaded.iter().flat_map(|loaded| &loaded.modules) {
            if let Some(Source::Debug(debug_info)) = source {
                debug_info.let_pages_go();
            }
        }
    }
}

/// Cuts a thread's frames at its entry point: below it lie only the
/// runtime's start-up frames, which std's own short backtraces hide too.
pub(crate) fn trim_below_entry(frames: &mut Vec<Frame>) {
    if let Some(entry) = frames.iter().position(|frame| {
        frame
            .function
            .as_deref()
            .is_some_and(|name| name.ends_with("__rust_begin_short_backtrace"))
    }) {
        frames.truncate(entry);
    }
}

/// Frames as `stacks` prints them: `  N: function`, then `at file:line`.
/// Recursion is folded: a frame repeated at once (or a cycle of up to
/// [`LONGEST_CYCLE`] frames) is printed once, with how many times it
/// repeats (`× 512`), and the numbering goes on from after the run.
pub(crate) fn write_frames(out: &mut impl fmt::Write, frames: &[Frame]) -> fmt::Result {
    write_frames_from(out, frames, 0, frames.len())
}

/// [`write_frames`] for `frames[start..end]`, numbered as in `frames`.
pub(crate) fn write_frames_from(
    out: &mut impl fmt::Write,
    frames: &[Frame],
    start: usize,
    end: usize,
) -> fmt::Result {
    let frames = &frames[..end.min(frames.len())];
    let mut index = start;
    while index < frames.len() {
        match repetition_at(frames, index) {
            Some((1, times)) => {
                write_frame_suffixed(out, index, &frames[index], &format!("   × {times}"))?;
                index += times;
            }
            Some((period, times)) => {
                for offset in 0..period {
                    write_frame(out, index + offset, &frames[index + offset])?;
                }
                writeln!(out, "           (the {period} frames above × {times})")?;
                index += period * times;
            }
            None => {
                write_frame(out, index, &frames[index])?;
                index += 1;
            }
        }
    }
    Ok(())
}

/// The longest cycle of frames that recursion folding looks for.
pub(crate) const LONGEST_CYCLE: usize = 4;

/// Whether frames repeat from `start`: the shortest period (up to
/// [`LONGEST_CYCLE`]) and how many times it comes in a row, when a single
/// frame comes at least twice or a cycle at least three times.
pub(crate) fn repetition_at(frames: &[Frame], start: usize) -> Option<(usize, usize)> {
    let same = |a: &Frame, b: &Frame| {
        a.address == b.address && a.function == b.function && a.line == b.line && a.file == b.file
    };
    (1..=LONGEST_CYCLE).find_map(|period| {
        let block = frames.get(start..start + period)?;
        let times = frames[start..]
            .chunks_exact(period)
            .take_while(|chunk| chunk.iter().zip(block).all(|(a, b)| same(a, b)))
            .count();
        let enough = if period == 1 { 2 } else { 3 };
        (times >= enough).then_some((period, times))
    })
}

/// Frame number `index` as `stacks` prints it.
pub(crate) fn write_frame(out: &mut impl fmt::Write, index: usize, frame: &Frame) -> fmt::Result {
    write_frame_suffixed(out, index, frame, "")
}

/// [`write_frame`], with `suffix` after the function.
fn write_frame_suffixed(
    out: &mut impl fmt::Write,
    index: usize,
    frame: &Frame,
    suffix: &str,
) -> fmt::Result {
    match &frame.function {
        Some(function) => writeln!(out, "  {index:>3}: {function}{suffix}")?,
        None => writeln!(
            out,
            "  {index:>3}: <unknown> at {:#x}{suffix}",
            frame.address
        )?,
    }
    if let (Some(file), Some(line)) = (&frame.file, frame.line) {
        writeln!(out, "           at {file}:{line}")?;
    }
    Ok(())
}

/// The modules and what has been read of them, until released.
static LOADED: Mutex<Option<Loaded>> = Mutex::new(None);

/// Whatever has been read, locked for one thread's lookups, and noted as
/// in use so that it is kept a while longer.
fn loaded() -> LoadedGuard {
    in_use();
    LoadedGuard(LOADED.lock().unwrap_or_else(PoisonError::into_inner))
}

struct LoadedGuard(MutexGuard<'static, Option<Loaded>>);

impl LoadedGuard {
    fn resolve(&mut self, probe: usize, address: usize) -> Vec<Frame> {
        let loaded = self.0.get_or_insert_with(Loaded::now);
        let mut frames = loaded.resolve(probe as u64, address);
        // Perhaps a library loaded since the modules were listed: the
        // loader's counters say whether any was.
        if frames.is_none() && load_counters() != loaded.counters {
            loaded.refresh();
            frames = loaded.resolve(probe as u64, address);
        }
        match frames {
            Some(frames) if !frames.is_empty() => frames,
            _ => vec![Frame {
                function: None,
                file: None,
                line: None,
                address,
            }],
        }
    }
}

/// The loaded modules, each with what has been read of its file.
struct Loaded {
    modules: Vec<(Module, Option<Source>)>,
    /// The loader's load and unload counts when the modules were listed.
    counters: (u64, u64),
}

/// What names the addresses of one module.
enum Source {
    /// Its own debug info, parsed unit by unit as addresses ask.
    Debug(Box<DebugInfo>),
    /// Function names only, from a symbol table.
    Names(SymbolTable),
    /// Nothing could be read.
    Nothing,
}

impl Loaded {
    fn now() -> Loaded {
        Loaded {
            counters: load_counters(),
            modules: modules::loaded()
                .into_iter()
                .map(|module| (module, None))
                .collect(),
        }
    }

    /// Lists the modules again, keeping what was read of those still there.
    fn refresh(&mut self) {
        self.counters = load_counters();
        let mut old = std::mem::take(&mut self.modules);
        self.modules = modules::loaded()
            .into_iter()
            .map(|module| {
                let kept = old
                    .iter()
                    .position(|(known, _)| known.path == module.path && known.bias == module.bias)
                    .and_then(|at| old.swap_remove(at).1);
                (module, kept)
            })
            .collect();
    }

    /// The frames at `probe`, innermost first; `None` when no module holds
    /// the address.
    fn resolve(&mut self, probe: u64, address: usize) -> Option<Vec<Frame>> {
        let (module, source) = self
            .modules
            .iter_mut()
            .find(|(module, _)| module.code.iter().any(|range| range.contains(&probe)))?;
        let relative = probe - module.bias;
        let source = source.get_or_insert_with(|| Source::open(module));
        Some(source.frames(relative, address))
    }
}

impl Source {
    fn open(module: &Module) -> Source {
        if module.path.starts_with("linux-vdso") || module.path.starts_with("linux-gate") {
            return vdso_image(module)
                .and_then(SymbolTable::parse)
                .map_or(Source::Nothing, Source::Names);
        }
        let path = std::path::Path::new(&module.path);
        match DebugInfo::open(path) {
            Some(debug_info) => Source::Debug(Box::new(debug_info)),
            None => {
                let debug_file = (module.build_id.len() > 2).then(|| {
                    let (head, rest) = module.build_id.split_at(2);
                    format!("/usr/lib/debug/.build-id/{head}/{rest}.debug")
                });
                debug_file
                    .and_then(|file| SymbolTable::read(std::path::Path::new(&file)))
                    .or_else(|| SymbolTable::read(path))
                    .map_or(Source::Nothing, Source::Names)
            }
        }
    }

    fn frames(&self, relative: u64, address: usize) -> Vec<Frame> {
        match self {
            Source::Debug(loader) => {
                let mut frames = Vec::new();
                if let Ok(mut found) = loader.context().find_frames(relative).skip_all_loads() {
                    while let Ok(Some(frame)) = found.next() {
                        let function = frame
                            .function
                            .as_ref()
                            .and_then(|function| function.demangle().ok())
                            .map(|name| name.into_owned());
                        let location = frame.location.as_ref();
                        frames.push(Frame {
                            function,
                            file: location.and_then(|at| at.file).map(str::to_owned),
                            line: location.and_then(|at| at.line),
                            address,
                        });
                    }
                }
                let unnamed = frames.iter().all(|frame| frame.function.is_none());
                if unnamed {
                    if let Some(name) = loader.find_symbol(relative) {
                        let name = Some(demangled(name));
                        match frames.first_mut() {
                            Some(frame) => frame.function = name,
                            None => frames.push(Frame {
                                function: name,
                                file: None,
                                line: None,
                                address,
                            }),
                        }
                    }
                }
                // The innermost frame without a place (an address the
                // function records leave out, as some prologues are): the
                // line table alone may still have it.
                if let Some(innermost) = frames.first_mut().filter(|frame| frame.line.is_none()) {
                    if let Ok(Some(location)) = loader.context().find_location(relative) {
                        innermost.file = location.file.map(str::to_owned);
                        innermost.line = location.line;
                    }
                }
                frames
            }
            Source::Names(table) => table
                .find(relative)
                .map(|name| Frame {
                    function: Some(demangled(name)),
                    file: None,
                    line: None,
                    address,
                })
                .into_iter()
                .collect(),
            Source::Nothing => Vec::new(),
        }
    }
}

/// `name` demangled, without a Rust symbol's hash.
fn demangled(name: &str) -> String {
    match rustc_demangle::try_demangle(name) {
        Ok(demangled) => format!("{demangled:#}"),
        Err(_) => name.to_owned(),
    }
}

/// A module's functions by address, with their sizes, so that an address
/// between two functions is not given the name of the one before.
struct SymbolTable {
    /// Start, end and name, by start.
    functions: Vec<(u64, u64, Box<str>)>,
}

/// The kernel's vDSO, whose functions (`clock_gettime`, `gettimeofday`)
/// a busy program calls often: no file holds it, but its whole ELF image,
/// symbol table included, is mapped in every process.
fn vdso_image(module: &Module) -> Option<&'static [u8]> {
    // SAFETY: `getauxval` reads the auxiliary vector, always there.
    let start = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
    let end = module.code.iter().map(|range| range.end).max()?;
    if start == 0 || end <= start || !module.code.iter().any(|range| range.start >= start) {
        return None;
    }
    // The section headers, which hold the symbol table's place, lie past
    // the code: the image runs to the end of them, as the ELF header says
    // (`e_shoff` at 0x28, `e_shentsize` and `e_shnum` at 0x3a and 0x3c).
    // SAFETY: the kernel maps the vDSO, ELF header first, readable for the
    // life of the process.
    let header = unsafe { std::slice::from_raw_parts(start as usize as *const u8, 64) };
    let word = |at: usize| u64::from(u16::from_ne_bytes([header[at], header[at + 1]]));
    let section_headers_at = u64::from_ne_bytes(header[0x28..0x30].try_into().ok()?);
    let image_end = start
        .checked_add(section_headers_at)?
        .checked_add(word(0x3a) * word(0x3c))?;
    // A vDSO is a few pages; a header that says otherwise is not trusted
    // with a read past what is mapped.
    if image_end - start > 64 * 1024 {
        return None;
    }
    let len = usize::try_from(end.max(image_end) - start).ok()?;
    // SAFETY: as above: the whole image is mapped, to its section headers.
    Some(unsafe { std::slice::from_raw_parts(start as usize as *const u8, len) })
}

impl SymbolTable {
    fn read(path: &std::path::Path) -> Option<SymbolTable> {
        Self::parse(&std::fs::read(path).ok()?)
    }

    fn parse(data: &[u8]) -> Option<SymbolTable> {
        use object::{Object as _, ObjectSymbol as _};
        let file = object::File::parse(data).ok()?;
        let mut functions: Vec<(u64, u64, Box<str>)> = file
            .symbols()
            .chain(file.dynamic_symbols())
            .filter(|symbol| symbol.kind() == object::SymbolKind::Text && symbol.size() > 0)
            .filter_map(|symbol| {
                // `clock_nanosleep@GLIBC_2.2.5`: the version is not part of
                // the name people know.
                let name = symbol.name().ok()?.split('@').next()?;
                let start = symbol.address();
                Some((start, start + symbol.size(), name.into()))
            })
            .collect();
        // Of the names one function goes by, people know the plain one
        // (`poll`, not `__GI___poll`): fewest leading underscores first.
        functions.sort_by(|a, b| {
            let underscores = |name: &str| name.len() - name.trim_start_matches('_').len();
            (a.0, underscores(&a.2), a.2.len()).cmp(&(b.0, underscores(&b.2), b.2.len()))
        });
        functions.dedup_by_key(|function| function.0);
        functions.shrink_to_fit();
        (!functions.is_empty()).then_some(SymbolTable { functions })
    }

    fn find(&self, address: u64) -> Option<&str> {
        let at = self
            .functions
            .partition_point(|function| function.0 <= address)
            .checked_sub(1)?;
        let (_, end, name) = &self.functions[at];
        (address < *end).then_some(&**name)
    }
}

// A minute fits a u64 of nanoseconds many times over.
static IDLE_NS: AtomicU64 = AtomicU64::new(DEFAULT_SYMBOL_CACHE_IDLE.as_nanos() as u64);

/// When symbols were last looked up (the coarse clock), 0 before the first.
static LAST_USE_NS: AtomicU64 = AtomicU64::new(0);

/// The `manhole-symbols` thread that will release the tables, and the
/// process it belongs to: a forked child has none, whatever it inherited.
/// Set and taken under the dump's turn, which a fork waits for.
static RELEASER: Mutex<Option<(u32, std::thread::Thread)>> = Mutex::new(None);

/// Set to make the releaser let the tables go now.
static RELEASE_NOW: AtomicBool = AtomicBool::new(false);

/// How many [`Kept`] guards live: while any does, the tables stay.
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// While it lives, the tables read are kept however long they go unused:
/// the watchdog holds one, so that a report names its frames at once
/// instead of waiting for debug info to be read again.
pub(crate) struct Kept(());

impl Kept {
    pub(crate) fn new() -> Kept {
        KEPT.fetch_add(1, Relaxed);
        Kept(())
    }
}

impl Drop for Kept {
    fn drop(&mut self) {
        KEPT.fetch_sub(1, Relaxed);
    }
}

fn releaser() -> MutexGuard<'static, Option<(u32, std::thread::Thread)>> {
    RELEASER.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Keeps the tables for `idle` after their last use, from now on.
pub(crate) fn keep_for(idle: Duration) {
    IDLE_NS.store(u64::try_from(idle.as_nanos()).unwrap_or(u64::MAX), Relaxed);
}

/// Notes that symbols are being looked up, and makes sure a thread will let
/// them go once idle. Called under the dump's turn, as every lookup is.
fn in_use() {
    LAST_USE_NS.store(now_ns(), Relaxed);
    let pid = std::process::id();
    let mut releaser = releaser();
    if releaser.as_ref().is_some_and(|(owner, _)| *owner == pid) {
        return;
    }
    RELEASE_NOW.store(false, Relaxed);
    // A thread that fails to start leaves the tables until the next lookup
    // tries again: memory, not a fault.
    *releaser = std::thread::Builder::new()
        .name("manhole-symbols".to_owned())
        .spawn(release_when_idle)
        .ok()
        .map(|started| (pid, started.thread().clone()));
}

/// Lets the tables go now, and ends the thread that would have: the
/// manhole is being uninstalled.
pub(crate) fn release() {
    RELEASE_NOW.store(true, Relaxed);
    if let Some((owner, thread)) = releaser().as_ref() {
        if *owner == std::process::id() {
            thread.unpark();
        }
    }
}

fn release_when_idle() {
    loop {
        let idle = IDLE_NS.load(Relaxed);
        let since = now_ns().saturating_sub(LAST_USE_NS.load(Relaxed));
        let kept = KEPT.load(Relaxed) > 0;
        if !RELEASE_NOW.load(Relaxed) && (since < idle || kept) {
            let wait = if kept { idle } else { idle - since };
            std::thread::park_timeout(Duration::from_nanos(wait));
            continue;
        }
        // Under the turn, so that no lookup runs while the tables go, and a
        // lookup that comes after sees no releaser and starts one.
        let _turn = turn();
        let idle_now = now_ns().saturating_sub(LAST_USE_NS.load(Relaxed)) >= IDLE_NS.load(Relaxed);
        if (!idle_now || KEPT.load(Relaxed) > 0) && !RELEASE_NOW.load(Relaxed) {
            continue;
        }
        let released = LOADED.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(released);
        crate::capture::unwind::release();
        give_back_freed_heap();
        *releaser() = None;
        return;
    }
}

/// Returns the free pages of the heap to the kernel: the tables are many
/// small allocations, which the allocator would otherwise keep for reuse,
/// and the point of letting them go is the process's resident size.
fn give_back_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only walks glibc's own arenas under their
    // locks; it has no preconditions.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(function: &str, address: usize) -> Frame {
        Frame {
            function: Some(function.to_owned()),
            file: Some("src/main.rs".to_owned()),
            line: Some(address as u32),
            address,
        }
    }

    fn written(frames: &[Frame]) -> String {
        let mut text = String::new();
        write_frames(&mut text, frames).unwrap();
        text
    }

    #[test]
    fn recursion_is_folded_into_one_frame_with_its_count() {
        let mut frames = vec![frame("app::leaf", 1)];
        frames.extend(std::iter::repeat_n(frame("app::recurse", 85), 512));
        frames.push(frame("app::caller", 90));
        let text = written(&frames);
        assert_eq!(
            text,
            "    0: app::leaf\n           at src/main.rs:1\n\
             \x20   1: app::recurse   × 512\n           at src/main.rs:85\n\
             \x20 513: app::caller\n           at src/main.rs:90\n"
        );
    }

    #[test]
    fn a_cycle_of_frames_is_folded_but_a_pair_is_not() {
        let cycle = [frame("app::ping", 10), frame("app::pong", 20)];
        let mut frames: Vec<Frame> = cycle.iter().cycle().take(6).cloned().collect();
        frames.push(frame("main", 30));
        let text = written(&frames);
        assert!(
            text.contains("(the 2 frames above × 3)\n    6: main"),
            "{text}"
        );
        let twice: Vec<Frame> = cycle.iter().cycle().take(4).cloned().collect();
        assert_eq!(written(&twice).lines().count(), 8);
    }

    #[inline(never)]
    fn a_function_to_find() -> usize {
        std::hint::black_box(a_function_to_find as *const () as usize)
    }

    #[test]
    fn a_function_of_this_binary_is_named_with_its_file() {
        let address = a_function_to_find();
        let _turn = turn();
        let frames = Symbols::default().frames(&[address], true);
        let frame = frames.first().expect("a frame");
        assert!(
            frame
                .function
                .as_deref()
                .is_some_and(|name| name.ends_with("a_function_to_find")),
            "{frames:?}"
        );
        assert!(frame
            .file
            .as_deref()
            .is_some_and(|file| file.ends_with("symbols.rs")));
    }

    #[test]
    fn the_vdso_is_named_from_its_image_in_memory() {
        use object::{Object as _, ObjectSymbol as _};
        // SAFETY: reads the auxiliary vector.
        let start = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) } as usize;
        assert_ne!(start, 0, "no vDSO");
        // Its ELF header says how far its sections reach; read once here
        // to find a function, independently of the symboliser.
        // SAFETY: the vDSO image is mapped readable; 8 KiB covers it.
        let image = unsafe { std::slice::from_raw_parts(start as *const u8, 8192) };
        let file = object::File::parse(image).expect("the vDSO parses");
        let lowest = file.segments().next().map(|segment| {
            use object::ObjectSegment as _;
            segment.address()
        });
        let function = file
            .dynamic_symbols()
            .find(|symbol| {
                symbol
                    .name()
                    .is_ok_and(|name| name.contains("clock_gettime"))
            })
            .expect("clock_gettime in the vDSO");
        let address = start + (function.address() - lowest.unwrap_or(0)) as usize + 1;
        let _turn = turn();
        let frames = Symbols::default().frames(&[address], true);
        assert!(
            frames[0]
                .function
                .as_deref()
                .is_some_and(|name| name.contains("clock_gettime")),
            "{frames:?}"
        );
    }

    #[test]
    fn a_libc_function_is_named_and_an_unknown_address_is_not() {
        let address = libc::getpid as *const () as usize;
        let _turn = turn();
        let mut symbols = Symbols::default();
        let frames = symbols.frames(&[address], true);
        assert!(
            frames[0]
                .function
                .as_deref()
                .is_some_and(|name| name.contains("getpid")),
            "{frames:?}"
        );
        let nowhere = symbols.frames(&[16], true);
        assert!(nowhere[0].function.is_none());
    }
}
