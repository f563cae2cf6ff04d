//! The loaded modules: path, load address, the address ranges of their
//! code, and their GNU build id, as a crash report names them and as the
//! symboliser finds each address's file. Read in normal context with
//! `dl_iterate_phdr` (the crash report's at install, so that its handler
//! only reads what is already there).

use super::loader::{each_module, module_name};
use std::fmt::Write as _;

/// One loaded module.
pub(crate) struct Module {
    /// The path as the loader has it; the executable's own path for the
    /// main program.
    pub(crate) path: String,
    /// Where the module's link-time address 0 is in this process.
    pub(crate) bias: u64,
    /// Its executable segments, as run-time addresses.
    pub(crate) code: Vec<std::ops::Range<u64>>,
    /// The GNU build id, in hex; empty when the module has none.
    pub(crate) build_id: String,
}

/// Every module loaded now.
pub(crate) fn loaded() -> Vec<Module> {
    let mut modules = Vec::new();
    each_module(&mut |info| {
        // SAFETY: called from the loader's callback, with its info.
        modules.push(unsafe { describe(info) });
    });
    modules.retain(|module| !module.code.is_empty());
    modules
}

/// # Safety
///
/// Call only from a `dl_iterate_phdr` callback, with the info it was given.
unsafe fn describe(info: &libc::dl_phdr_info) -> Module {
    let bias = info.dlpi_addr;
    let headers = if info.dlpi_phdr.is_null() {
        &[][..]
    } else {
        // SAFETY: the loader's program headers, `dlpi_phnum` of them.
        unsafe { std::slice::from_raw_parts(info.dlpi_phdr, usize::from(info.dlpi_phnum)) }
    };
    let code = headers
        .iter()
        .filter(|header| header.p_type == libc::PT_LOAD && header.p_flags & libc::PF_X != 0)
        .map(|header| bias + header.p_vaddr..bias + header.p_vaddr + header.p_memsz)
        .collect();
    let mut build_id = String::new();
    for header in headers
        .iter()
        .filter(|header| header.p_type == libc::PT_NOTE)
    {
        // SAFETY: a PT_NOTE segment lies inside a mapped, readable segment.
        let notes = unsafe {
            std::slice::from_raw_parts(
                (bias + header.p_vaddr) as usize as *const u8,
                header.p_memsz as usize,
            )
        };
        if let Some(id) = gnu_build_id(notes) {
            for byte in id {
                let _ = write!(build_id, "{byte:02x}");
            }
            break;
        }
    }
    // SAFETY: called from the loader's callback, with its info.
    let name = unsafe { module_name(info) };
    let path = if name.is_empty() {
        std::fs::read_link("/proc/self/exe")
            .map_or_else(|_| "[main]".to_owned(), |path| path.display().to_string())
    } else {
        name
    };
    Module {
        path,
        bias,
        code,
        build_id,
    }
}

/// The descriptor of an `NT_GNU_BUILD_ID` note among `notes`.
fn gnu_build_id(mut notes: &[u8]) -> Option<&[u8]> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let word = |bytes: &[u8], at: usize| -> Option<u32> {
        Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
    };
    let aligned = |len: usize| (len + 3) & !3;
    while notes.len() >= 12 {
        let name_size = word(notes, 0)? as usize;
        let desc_size = word(notes, 4)? as usize;
        let kind = word(notes, 8)?;
        let name_at = 12;
        let desc_at = name_at + aligned(name_size);
        let next = desc_at + aligned(desc_size);
        let name = notes.get(name_at..name_at + name_size)?;
        if kind == NT_GNU_BUILD_ID && name == b"GNU\0" {
            return notes.get(desc_at..desc_at + desc_size);
        }
        notes = notes.get(next..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_executable_is_listed_with_its_code() {
        let modules = loaded();
        let exe = std::fs::read_link("/proc/self/exe").unwrap();
        let own = modules
            .iter()
            .find(|module| module.path == exe.display().to_string())
            .expect("the executable is a module");
        let here = the_executable_is_listed_with_its_code as *const () as usize as u64;
        assert!(own.code.iter().any(|range| range.contains(&here)));
    }
}
