//! Panics that do not kill the process: a panic hook, chained to the one
//! that was there, keeps the last [`KEPT`] panics (message, location,
//! thread, time and stack) for the `panics` built-in, and the last two in
//! fixed buffers that a crash handler can read, so that an abort that
//! comes from a panic names it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, Once};

/// How many panics are kept.
pub(crate) const KEPT: usize = 32;

/// One panic, as kept.
#[derive(Debug, Clone)]
pub(crate) struct Panic {
    pub(crate) message: String,
    pub(crate) location: String,
    pub(crate) thread: String,
    pub(crate) tid: i32,
    /// Seconds since the epoch.
    pub(crate) at: f64,
    /// The return addresses of the panicking thread, innermost first,
    /// symbolised when asked for.
    pub(crate) addresses: Vec<usize>,
}

static KEPT_PANICS: Mutex<(VecDeque<Panic>, u64)> = Mutex::new((VecDeque::new(), 0));

/// The kept panics, oldest first, and how many there have been in all.
pub(crate) fn kept() -> (Vec<Panic>, u64) {
    let kept = KEPT_PANICS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    (kept.0.iter().cloned().collect(), kept.1)
}

/// Installs the hook, once per process; the hook that was there runs
/// after ours. Normal context.
pub(crate) fn install_hook() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            record(info);
            previous(info);
        }));
    });
}

fn record(info: &std::panic::PanicHookInfo<'_>) {
    let message = if let Some(text) = info.payload().downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = info.payload().downcast_ref::<String>() {
        text.clone()
    } else {
        "(a panic whose payload is not text)".to_owned()
    };
    let location = info.location().map_or_else(String::new, |at| {
        format!("{}:{}:{}", at.file(), at.line(), at.column())
    });
    let thread = std::thread::current()
        .name()
        .unwrap_or("<unnamed>")
        .to_owned();
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::syscall(libc::SYS_gettid) } as i32;
    remember_for_a_crash(tid, &message, &location);
    let mut addresses = Vec::new();
    backtrace::trace(|frame| {
        addresses.push(frame.ip() as usize);
        addresses.len() < 128
    });
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64());
    #[cfg(feature = "tracing")]
    ::tracing::error!(target: "manhole", thread = %thread, tid, location = %location, "panic: {message}");
    let mut kept = KEPT_PANICS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if kept.0.len() == KEPT {
        kept.0.pop_front();
    }
    kept.0.push_back(Panic {
        message,
        location,
        thread,
        tid,
        at,
        addresses,
    });
    kept.1 += 1;
}

/// The last two panics' text, for a crash handler: written in normal
/// context under a sequence number, read without a lock.
struct Fixed {
    sequence: AtomicU64,
    tid: AtomicI32,
    len: AtomicU32,
    text: std::cell::UnsafeCell<[u8; 512]>,
}

// SAFETY: writers take `WRITING` (one at a time) and bump `sequence`
// around each write; a reader that sees it change or odd ignores what it
// read.
unsafe impl Sync for Fixed {}

static LAST: [Fixed; 2] = [const {
    Fixed {
        sequence: AtomicU64::new(0),
        tid: AtomicI32::new(0),
        len: AtomicU32::new(0),
        text: std::cell::UnsafeCell::new([0; 512]),
    }
}; 2];
static NEXT: AtomicU64 = AtomicU64::new(0);
static WRITING: Mutex<()> = Mutex::new(());

fn remember_for_a_crash(tid: i32, message: &str, location: &str) {
    let _writing = WRITING
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let slot = &LAST[(NEXT.fetch_add(1, Ordering::Relaxed) % 2) as usize];
    slot.sequence.fetch_add(1, Ordering::AcqRel);
    let text = format!("'{message}' at {location}");
    let bytes = text.as_bytes();
    let mut len = bytes.len().min(512);
    while !text.is_char_boundary(len) {
        len -= 1;
    }
    // SAFETY: only this writer, under `WRITING`; readers check `sequence`.
    unsafe { (&mut *slot.text.get())[..len].copy_from_slice(&bytes[..len]) };
    slot.len.store(len as u32, Ordering::Release);
    slot.tid.store(tid, Ordering::Release);
    slot.sequence.fetch_add(1, Ordering::AcqRel);
}

/// The text of the panic that led `tid` to abort, if it panicked: the
/// newest of its last two, skipping std's own "panic in a function that
/// cannot unwind", which follows the panic that caused it. Compromised
/// context: reads atomics and a fixed buffer only.
pub(crate) fn last_panic_of(tid: i32, into: &mut [u8; 512]) -> usize {
    let newest = NEXT.load(Ordering::Acquire);
    let mut found = 0;
    for back in 1..=2u64 {
        let Some(index) = newest.checked_sub(back) else {
            break;
        };
        let slot = &LAST[(index % 2) as usize];
        let before = slot.sequence.load(Ordering::Acquire);
        if before % 2 == 1 || slot.tid.load(Ordering::Acquire) != tid {
            continue;
        }
        let len = slot.len.load(Ordering::Acquire) as usize;
        // SAFETY: a plain copy of the buffer; checked against the sequence.
        let text = unsafe { &(&*slot.text.get())[..len] };
        into[..len].copy_from_slice(text);
        if slot.sequence.load(Ordering::Acquire) != before {
            continue;
        }
        found = len;
        if !into[..len].starts_with(b"'panic in a function that cannot unwind'")
            && !into[..len].starts_with(b"'panic in a destructor during cleanup'")
        {
            return len;
        }
    }
    found
}
