//! Generated code must not trip a user's lints: this file expands every
//! attribute under strict rustc lints, and `cargo clippy --all-targets`
//! checks it under `clippy::pedantic`.

#![deny(
    warnings,
    missing_docs,
    unused_qualifications,
    unreachable_pub,
    unused_results,
    unsafe_code,
    clippy::pedantic
)]

use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, RwLock};

/// A counter.
#[manhole::inspect]
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// State behind locks.
#[manhole::inspect]
static STATE: Mutex<Option<String>> = Mutex::new(None);

/// More state.
#[manhole::inspect(name = "limits")]
static LIMITS: RwLock<[u8; 2]> = RwLock::new([1, 2]);

/// Computed.
#[manhole::inspect]
fn computed() -> Result<u64, std::io::Error> {
    std::fs::metadata("/").map(|meta| meta.len())
}

/// An async command, with the `tokio` feature.
#[cfg(feature = "tokio")]
#[manhole::command]
async fn async_command(a: u8, b: Option<u8>) -> Result<u8, String> {
    tokio::task::yield_now().await;
    a.checked_add(b.unwrap_or(0))
        .ok_or_else(|| "overflow".to_owned())
}

/// A command.
#[manhole::command]
fn command(a: u8, b: Option<u8>) -> Result<u8, String> {
    a.checked_add(b.unwrap_or(0))
        .ok_or_else(|| "overflow".to_owned())
}

/// A counted function.
#[manhole::inspect(calls)]
fn counted(mut total: u64, step: u64) -> Result<u64, String> {
    total = total.checked_add(step).ok_or("overflow")?;
    Ok(total)
}

/// A counted function that never returns.
#[manhole::inspect(calls)]
fn counted_never(message: &str) -> ! {
    panic!("{message}")
}

/// A renamed command with nothing to return.
#[manhole::command(name = "do-nothing")]
fn nothing() {}

#[test]
fn items_expand_cleanly() {
    let _ = (&COUNTER, &STATE, &LIMITS);
    assert_eq!(command(1, Some(2)), Ok(3));
    assert!(computed().is_ok());
    nothing();
    assert_eq!(counted(1, 2), Ok(3));
    assert!(std::panic::catch_unwind(|| counted_never("on purpose")).is_err());
}
