//! `mem`: where the process's memory is, as the kernel and the allocator
//! tell it.
//!
//! The kernel's side comes from `/proc/self/smaps_rollup` (Linux 4.14 and
//! later), else from `/proc/self/status`. The allocator's side depends on
//! which allocator serves Rust's global allocator, which is found by
//! asking, not assumed: one block is allocated through the global
//! allocator, and the allocator whose counters move by its size is the one
//! in use.
//!
//! - jemalloc (with this crate's `jemalloc` feature, for a binary whose
//!   `#[global_allocator]` is `tikv_jemallocator::Jemalloc`): its own
//!   statistics, `stats.allocated`, `active`, `resident`, `retained`,
//!   `mapped` and `metadata`, after advancing its epoch.
//! - glibc malloc: `mallinfo2`, looked up at run time (glibc 2.33 and
//!   later), which walks every arena under that arena's lock, as `malloc`
//!   itself would take it: for microseconds, never for a wait.
//!
//! Any other allocator is named `unknown`, with a note that says so.

use manhole_wire::{Failure, Reason};
use serde_json::{json, Value};

/// The kernel's view: resident memory, and how much of it is anonymous
/// (heap, stacks) or backed by files (code, mapped files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Resident {
    pub(crate) rss_bytes: u64,
    pub(crate) anon_bytes: u64,
    pub(crate) file_bytes: u64,
    /// `smaps_rollup` or `status`.
    pub(crate) source: &'static str,
}

/// Reads the kernel's view of this process's memory.
pub(crate) fn resident() -> Option<Resident> {
    if let Some(rollup) = std::fs::read_to_string("/proc/self/smaps_rollup")
        .ok()
        .and_then(|text| parse_smaps_rollup(&text))
    {
        return Some(rollup);
    }
    parse_status(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// A `Key:   123 kB` line's value in bytes.
fn kilobytes(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        let number = value.trim().strip_suffix("kB")?.trim();
        number.parse::<u64>().ok().map(|kb| kb * 1024)
    })
}

/// `smaps_rollup`: `Rss` is everything resident; `Anonymous` is the part
/// not backed by a file; the rest is file-backed (and shared memory).
fn parse_smaps_rollup(text: &str) -> Option<Resident> {
    let rss = kilobytes(text, "Rss")?;
    let anon = kilobytes(text, "Anonymous")?;
    Some(Resident {
        rss_bytes: rss,
        anon_bytes: anon,
        file_bytes: rss.saturating_sub(anon),
        source: "smaps_rollup",
    })
}

/// `status`: `VmRSS`, `RssAnon`, and `RssFile` plus `RssShmem`.
fn parse_status(text: &str) -> Option<Resident> {
    Some(Resident {
        rss_bytes: kilobytes(text, "VmRSS")?,
        anon_bytes: kilobytes(text, "RssAnon")?,
        file_bytes: kilobytes(text, "RssFile")? + kilobytes(text, "RssShmem").unwrap_or(0),
        source: "status",
    })
}

/// How big the probe's block is: large enough to stand out from other
/// threads' traffic, below glibc's smallest mmap threshold (128 KiB), so
/// that glibc serves it from an arena where `mallinfo2` counts it.
const PROBE_BYTES: usize = 96 * 1024;

/// Allocates and frees one [`PROBE_BYTES`] block through the global
/// allocator, calling `measure` before the allocation and while the block
/// is live; returns the two readings.
fn probe<T>(mut measure: impl FnMut() -> Option<T>) -> Option<(T, T)> {
    let before = measure()?;
    let block: Vec<u8> = std::hint::black_box(Vec::with_capacity(PROBE_BYTES));
    let during = measure();
    drop(std::hint::black_box(block));
    Some((before, during?))
}

/// The allocator that serves the global allocator, and its statistics, as
/// `{"name", ...}`.
pub(crate) fn allocator() -> Value {
    #[cfg(feature = "jemalloc")]
    if let Some(stats) = jemalloc::stats() {
        return stats;
    }
    if let Some(stats) = glibc::stats() {
        return stats;
    }
    let jemalloc = if cfg!(feature = "jemalloc") {
        ""
    } else {
        "; for jemalloc, enable manhole's `jemalloc` feature"
    };
    json!({
        "name": "unknown",
        "note": format!(
            "the global allocator is neither glibc malloc nor jemalloc, so its statistics cannot be read{jemalloc}"
        ),
    })
}

mod glibc {
    use super::{probe, PROBE_BYTES};
    use serde_json::{json, Value};
    use std::sync::OnceLock;

    /// glibc's `struct mallinfo2`: every field a `size_t`.
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct MallInfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }

    type MallInfo2Fn = unsafe extern "C" fn() -> MallInfo2;

    /// `mallinfo2`, if this process's C library has it.
    fn mallinfo2_fn() -> Option<MallInfo2Fn> {
        static FOUND: OnceLock<Option<MallInfo2Fn>> = OnceLock::new();
        *FOUND.get_or_init(|| {
            // SAFETY: dlsym with RTLD_DEFAULT and a NUL-terminated name only
            // looks the symbol up; it returns null when there is none.
            let symbol = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"mallinfo2".as_ptr()) };
            if symbol.is_null() {
                return None;
            }
            // SAFETY: glibc's `mallinfo2` has exactly this signature
            // (`struct mallinfo2 mallinfo2(void)`, glibc 2.33 and later),
            // and `MallInfo2` mirrors the struct field for field.
            Some(unsafe { std::mem::transmute::<*mut libc::c_void, MallInfo2Fn>(symbol) })
        })
    }

    fn mallinfo2() -> Option<MallInfo2> {
        let mallinfo2 = mallinfo2_fn()?;
        // SAFETY: the function takes no arguments, returns a plain struct
        // and may be called from any thread at any time.
        Some(unsafe { mallinfo2() })
    }

    /// glibc malloc's statistics, when it serves the global allocator.
    pub(super) fn stats() -> Option<Value> {
        // Another thread may allocate or free meanwhile; three tries make a
        // coincidence that hides the probe unlikely.
        let serves_rust = (0..3).any(|_| {
            probe(|| mallinfo2().map(|info| info.uordblks))
                .is_some_and(|(before, during)| during.saturating_sub(before) >= PROBE_BYTES)
        });
        if !serves_rust {
            return None;
        }
        let info = mallinfo2()?;
        Some(json!({
            "name": "glibc",
            "in_use_bytes": info.uordblks + info.hblkhd,
            "free_bytes": info.fordblks,
            "mmapped_bytes": info.hblkhd,
            "mmapped_regions": info.hblks,
            "arena_bytes": info.arena,
            "free_chunks": info.ordblks,
            "releasable_bytes": info.keepcost,
        }))
    }
}

#[cfg(feature = "jemalloc")]
mod jemalloc {
    use super::{probe, PROBE_BYTES};
    use serde_json::{json, Value};
    use tikv_jemalloc_ctl::{arenas, epoch, stats, thread};

    /// jemalloc's statistics, when it serves the global allocator (its
    /// per-thread allocation counter moves with the probe's block).
    pub(super) fn stats() -> Option<Value> {
        let allocated = thread::allocatedp::read().ok()?;
        let (before, during) = probe(|| Some(allocated.get()))?;
        if during.saturating_sub(before) < PROBE_BYTES as u64 {
            return None;
        }
        epoch::advance().ok()?;
        Some(json!({
            "name": "jemalloc",
            "allocated_bytes": stats::allocated::read().ok()?,
            "active_bytes": stats::active::read().ok()?,
            "resident_bytes": stats::resident::read().ok()?,
            "retained_bytes": stats::retained::read().ok()?,
            "mapped_bytes": stats::mapped::read().ok()?,
            "metadata_bytes": stats::metadata::read().ok()?,
            "arenas": arenas::narenas::read().ok()?,
        }))
    }
}

/// The bytes the program has allocated through jemalloc, when the
/// `jemalloc` feature is on and jemalloc serves the global allocator
/// (`is_jemalloc` says so, found once by the caller with [`allocator`]).
#[cfg(feature = "jemalloc")]
pub(crate) fn jemalloc_allocated() -> Option<u64> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    tikv_jemalloc_ctl::stats::allocated::read()
        .ok()
        .and_then(|bytes| u64::try_from(bytes).ok())
}

/// jemalloc's heap profile, as `mem --heap-profile` answers it:
/// `{"format":"pprof","encoding":"base64","bytes","data"}`.
///
/// # Errors
///
/// [`Reason::NotEnabled`] without the `jemalloc-profiling` feature, when
/// jemalloc does not serve the program, or when it runs without profiling;
/// [`Reason::Busy`] while another heap profile is being written;
/// [`Reason::DumpFailed`] when jemalloc's dump or its conversion fails.
#[cfg(feature = "jemalloc-profiling")]
pub(crate) fn heap_profile() -> Result<Value, Failure> {
    use base64::Engine as _;
    if jemalloc::stats().is_none() {
        return Err(Failure::new(
            Reason::NotEnabled,
            "jemalloc does not serve this program's allocations, so it has no heap profile: make `tikv_jemallocator::Jemalloc` the `#[global_allocator]`",
        ));
    }
    // SAFETY: `opt.prof` is a `bool` that jemalloc documents as readable;
    // jemalloc is built with profiling by this feature, so it exists.
    let profiling: bool = unsafe { tikv_jemalloc_ctl::raw::read(b"opt.prof\0") }.unwrap_or(false);
    // SAFETY: as above, `opt.prof_active` is a readable `bool`.
    let active: bool =
        profiling && unsafe { tikv_jemalloc_ctl::raw::read(b"opt.prof_active\0") }.unwrap_or(false);
    if !active {
        return Err(Failure::new(
            Reason::NotEnabled,
            "jemalloc profiling is off in this process: start it with `_RJEM_MALLOC_CONF=prof:true,prof_active:true` in its environment (`MALLOC_CONF` where jemalloc is built without the `_rjem_` prefix); `lg_prof_sample:19` samples every 512 KiB on average",
        ));
    }
    let Some(control) = jemalloc_pprof::PROF_CTL.as_ref() else {
        return Err(Failure::new(
            Reason::NotEnabled,
            "jemalloc profiling is off in this process",
        ));
    };
    // A session thread is no runtime worker, and another session's dump is
    // the only other holder: refused, never waited for.
    let Ok(mut control) = control.try_lock() else {
        return Err(Failure::new(
            Reason::Busy,
            "another session is writing a heap profile; ask again in a moment",
        ));
    };
    let pprof = control.dump_pprof().map_err(|err| {
        Failure::new(
            Reason::DumpFailed,
            format!("jemalloc could not write its heap profile: {err:#}"),
        )
    })?;
    Ok(json!({
        "format": "pprof",
        "encoding": "base64",
        "bytes": pprof.len(),
        "data": base64::engine::general_purpose::STANDARD.encode(&pprof),
    }))
}

/// Without the `jemalloc-profiling` feature: say how to get it.
///
/// # Errors
///
/// Always [`Reason::NotEnabled`].
#[cfg(not(feature = "jemalloc-profiling"))]
pub(crate) fn heap_profile() -> Result<Value, Failure> {
    Err(Failure::new(
        Reason::NotEnabled,
        "`mem --heap-profile` needs manhole's `jemalloc-profiling` feature, jemalloc as the global allocator, and the program started with `_RJEM_MALLOC_CONF=prof:true,prof_active:true`",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kernel_view_parses_both_files() {
        let rollup = "55d0-7ffc ---p 00000000 00:00 0 [rollup]\nRss:  2048 kB\nPss:  1500 kB\nAnonymous:  512 kB\n";
        assert_eq!(
            parse_smaps_rollup(rollup),
            Some(Resident {
                rss_bytes: 2048 * 1024,
                anon_bytes: 512 * 1024,
                file_bytes: 1536 * 1024,
                source: "smaps_rollup"
            })
        );
        let status =
            "Name:\tx\nVmRSS:\t  300 kB\nRssAnon:\t 100 kB\nRssFile:\t 150 kB\nRssShmem:\t 50 kB\n";
        assert_eq!(
            parse_status(status),
            Some(Resident {
                rss_bytes: 300 * 1024,
                anon_bytes: 100 * 1024,
                file_bytes: 200 * 1024,
                source: "status"
            })
        );
        let this = resident().unwrap();
        assert!(this.rss_bytes > 0 && this.anon_bytes <= this.rss_bytes);
    }

    #[cfg(target_env = "gnu")]
    #[test]
    fn glibc_malloc_is_found_and_read() {
        let allocator = allocator();
        assert_eq!(allocator["name"], "glibc", "{allocator}");
        assert!(allocator["in_use_bytes"].as_u64().unwrap() > 0);
    }
}
