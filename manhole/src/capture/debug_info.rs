//! One module's DWARF, read in place from a read-only mapping of its file
//! that the symboliser owns, so that the pages a request read can be let go
//! as soon as it is answered.
//!
//! `addr2line` parses the units an address asks about into the heap; the
//! rest of what it reads (names, file names, the unit index's walk over
//! every unit's header) stays in the file's pages, which `VmRSS` counts for
//! as long as they are mapped and touched: 13.8 MiB after one 1000-thread
//! dump of a 17 MB binary. [`DebugInfo::let_pages_go`] drops them from this
//! process (`MADV_DONTNEED`); the kernel keeps them in its page cache, and
//! the next request that needs one takes a minor fault to map it again.

use addr2line::gimli;
use object::{Object as _, ObjectSection as _};
use std::borrow::Cow;
use std::cell::OnceCell;

type Slice = gimli::EndianSlice<'static, gimli::RunTimeEndian>;

/// A module's parsed debug info over its own mapping.
///
/// Field order is drop order: `context` and `symbols` hold slices into
/// `decompressed` and `mapping`, and go first.
pub(crate) struct DebugInfo {
    context: addr2line::Context<Slice>,
    /// The symbol table, built on first need: most frames are named by the
    /// debug info, and a large binary has tens of thousands of symbols.
    symbols: OnceCell<object::SymbolMap<object::SymbolMapName<'static>>>,
    /// Sections the file holds compressed, inflated once.
    _decompressed: Vec<Box<[u8]>>,
    mapping: Mapping,
}

// SAFETY: the slices inside point only into `mapping` and `decompressed`,
// which no one writes, and move with the value (a mapping's address and a
// boxed slice's never change); `OnceCell` is only used under the
// symboliser's lock, which every lookup holds, so `DebugInfo` is `Send` as
// its owned parts are.
unsafe impl Send for DebugInfo {}

impl DebugInfo {
    /// Maps `path` and reads its DWARF; `None` when the file cannot be
    /// mapped or parsed, or has no `.debug_info`.
    pub(crate) fn open(path: &std::path::Path) -> Option<DebugInfo> {
        let mapping = Mapping::of(path)?;
        // SAFETY: the bytes stay mapped, read-only and unchanged (a private
        // mapping of a file nobody writes in place: binaries are replaced
        // by rename) until `mapping` is dropped, which is after every value
        // built from this slice (see the field order above).
        let data: &'static [u8] = unsafe { std::slice::from_raw_parts(mapping.start, mapping.len) };
        let file = object::File::parse(data).ok()?;
        file.section_by_name(".debug_info")?;
        let endian = if file.is_little_endian() {
            gimli::RunTimeEndian::Little
        } else {
            gimli::RunTimeEndian::Big
        };
        let mut decompressed: Vec<Box<[u8]>> = Vec::new();
        let mut dwarf = gimli::Dwarf::load(|id| -> Result<Slice, gimli::Error> {
            let bytes: &'static [u8] = match file
                .section_by_name(id.name())
                .and_then(|section| section.uncompressed_data().ok())
            {
                Some(Cow::Borrowed(bytes)) => bytes,
                Some(Cow::Owned(bytes)) => {
                    let boxed = bytes.into_boxed_slice();
                    // SAFETY: the box is kept in `decompressed`, never
                    // changed, and dropped after the context that reads it.
                    let bytes = unsafe { std::slice::from_raw_parts(boxed.as_ptr(), boxed.len()) };
                    decompressed.push(boxed);
                    bytes
                }
                None => &[],
            };
            Ok(gimli::EndianSlice::new(bytes, endian))
        })
        .ok()?;
        // Units that share an abbreviation table parse it once.
        dwarf.populate_abbreviations_cache(gimli::AbbreviationsCacheStrategy::Duplicates);
        let context = addr2line::Context::from_dwarf(dwarf).ok()?;
        Some(DebugInfo {
            context,
            symbols: OnceCell::new(),
            _decompressed: decompressed,
            mapping,
        })
    }

    pub(crate) fn context(&self) -> &addr2line::Context<Slice> {
        &self.context
    }

    /// The name of the symbol that holds `probe`, from the symbol table.
    pub(crate) fn find_symbol(&self, probe: u64) -> Option<&str> {
        let symbols = self.symbols.get_or_init(|| {
            // SAFETY: as in `open`: the mapping outlives the map built here.
            let data: &'static [u8] =
                unsafe { std::slice::from_raw_parts(self.mapping.start, self.mapping.len) };
            object::File::parse(data).map_or_else(
                |_| object::SymbolMap::new(Vec::new()),
                |file| file.symbol_map(),
            )
        });
        symbols.containing(probe).map(|symbol| symbol.name())
    }

    /// Drops the file's pages from this process; they are mapped again,
    /// from the page cache, when next read.
    pub(crate) fn let_pages_go(&self) {
        self.mapping.let_pages_go();
    }
}

/// A private, read-only mapping of a whole file.
struct Mapping {
    start: *const u8,
    len: usize,
}

impl Mapping {
    fn of(path: &std::path::Path) -> Option<Mapping> {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::File::open(path).ok()?;
        let len = usize::try_from(file.metadata().ok()?.len()).ok()?;
        if len == 0 {
            return None;
        }
        // SAFETY: maps `len` bytes of an open file read-only and private;
        // the result is checked before use, and the descriptor may close
        // once the mapping exists.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if start == libc::MAP_FAILED {
            return None;
        }
        Some(Mapping {
            start: start.cast(),
            len,
        })
    }

    fn let_pages_go(&self) {
        // SAFETY: the range is this mapping, whole; for a read-only private
        // file mapping, MADV_DONTNEED only unmaps the pages, which read the
        // same bytes from the file when touched again.
        unsafe {
            libc::madvise(self.start.cast_mut().cast(), self.len, libc::MADV_DONTNEED);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `of` mapped, once, after every value
        // that read it was dropped.
        unsafe {
            libc::munmap(self.start.cast_mut().cast(), self.len);
        }
    }
}
