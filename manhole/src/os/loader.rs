//! The dynamic loader's list of loaded modules, walked once per call with
//! `dl_iterate_phdr`.

/// Calls `visit` with each loaded module's info, while the loader holds
/// its lock (so no module can be unloaded meanwhile).
pub(crate) fn each_module(visit: &mut dyn FnMut(&libc::dl_phdr_info)) {
    unsafe extern "C" fn each(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info whose program headers and
        // mapped segments stay in place while it holds its lock, which it
        // does for the whole callback; `data` is the visitor below.
        unsafe {
            let visit = &mut *data.cast::<&mut dyn FnMut(&libc::dl_phdr_info)>();
            visit(&*info);
        }
        0
    }
    let mut visit = visit;
    // SAFETY: the callback only hands each info to the visitor.
    unsafe { libc::dl_iterate_phdr(Some(each), (&raw mut visit).cast()) };
}

/// A module's name as the loader has it: its path, empty for the main
/// program (whose path `/proc/self/exe` gives).
///
/// # Safety
///
/// Call only from a `dl_iterate_phdr` callback, with the info it was given.
pub(crate) unsafe fn module_name(info: &libc::dl_phdr_info) -> String {
    if info.dlpi_name.is_null() {
        return String::new();
    }
    // SAFETY: the loader's NUL-terminated name, valid during the callback.
    let name = unsafe { std::ffi::CStr::from_ptr(info.dlpi_name) };
    // glibc names the program itself "", and musl, in a static binary,
    // "/proc/self/exe", which names whoever reads it: both mean the program.
    if name == c"/proc/self/exe" {
        return String::new();
    }
    name.to_string_lossy().into_owned()
}

/// The loader's counts of loads and unloads, which change whenever the
/// module list does.
pub(crate) fn load_counters() -> (u64, u64) {
    unsafe extern "C" fn first(
        info: *mut libc::dl_phdr_info,
        _size: usize,
        data: *mut libc::c_void,
    ) -> libc::c_int {
        // SAFETY: the loader passes a valid info; `data` is the tuple below.
        unsafe {
            let info = &*info;
            *data.cast::<(u64, u64)>() = (info.dlpi_adds, info.dlpi_subs);
        }
        1
    }
    let mut counters = (0u64, 0u64);
    // SAFETY: the callback only reads the info and writes the tuple.
    unsafe { libc::dl_iterate_phdr(Some(first), (&raw mut counters).cast()) };
    counters
}
