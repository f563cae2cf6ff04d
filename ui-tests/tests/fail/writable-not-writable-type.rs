use std::sync::atomic::AtomicPtr;
use std::sync::Mutex;

#[derive(serde::Serialize)]
struct Shown {
    level: u8,
}

/// Serialize but not Deserialize: it can be read, not written.
#[manhole::inspect(writable)]
static LEVEL: Mutex<Shown> = Mutex::new(Shown { level: 1 });

/// A plain value (not behind an atomic or a lock) cannot be replaced.
#[manhole::inspect(writable)]
static LIMIT: u64 = 5;

/// Atomic pointers are not a value a person can type.
#[manhole::inspect(writable)]
static HEAD: AtomicPtr<u8> = AtomicPtr::new(std::ptr::null_mut());

fn main() {}
