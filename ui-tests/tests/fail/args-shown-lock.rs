//! A shown parameter whose type is a lock: its `Debug` would try-lock it on
//! every call, so the attribute warns there (an error under `deny`).
#![deny(deprecated)]

use std::sync::{Arc, Mutex};

#[manhole::inspect(calls, args)]
async fn apply(db: Arc<Mutex<Vec<u32>>>, key: u32) -> u32 {
    db.lock().unwrap().push(key);
    key
}

/// Skipped, it is never formatted: no warning.
#[manhole::inspect(calls, args(skip(db)))]
async fn apply_skipped(db: Arc<Mutex<Vec<u32>>>, key: u32) -> u32 {
    db.lock().unwrap().push(key);
    key
}

fn main() {
    drop(apply(Arc::default(), 1));
    drop(apply_skipped(Arc::default(), 1));
}
