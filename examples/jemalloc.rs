//! A service whose global allocator is jemalloc; `mem` shows jemalloc's own
//! statistics (manhole's `jemalloc` feature).
//!
//! ```text
//! cargo run --example jemalloc --features jemalloc
//! echo mem | socat - UNIX-CONNECT:/tmp/manhole-<pid>
//! ```

use std::sync::Mutex;

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Bytes held on purpose, so that the heap is not empty.
static HELD: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Hold `kib` more KiB on the heap; returns how many KiB are held.
#[manhole::command]
fn hold(kib: usize) -> usize {
    let mut held = HELD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    held.push(vec![1u8; kib * 1024]);
    held.iter().map(|block| block.len() / 1024).sum()
}

#[manhole::main]
fn main() {
    println!("jemalloc example running as pid {}", std::process::id());
    // Runs until stdin closes, so a test's child never outlives it.
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}
