//! Every supported form of the three attributes, compiled under strict
//! lints so that generated code never trips a user's lints.

#![deny(warnings, missing_docs, unused_qualifications, unreachable_pub, unused_results)]

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, RwLock};

/// Hits.
#[manhole::inspect]
static HITS: AtomicU64 = AtomicU64::new(0);

/// A flag.
#[manhole::inspect(name = "ready")]
pub static READY: AtomicBool = AtomicBool::new(false);

/// Names behind a lock.
#[manhole::inspect]
static NAMES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Limits behind a read-write lock.
#[manhole::inspect]
static LIMITS: RwLock<(u32, u32)> = RwLock::new((1, 2));

/// A plain value.
#[manhole::inspect]
static VERSION: &str = "1.0";

/// Computed.
#[manhole::inspect]
fn depth() -> usize {
    3
}

/// Computed, and it can fail.
#[manhole::inspect]
fn maybe() -> Result<u8, String> {
    Ok(1)
}

/// Unit return.
#[manhole::command]
fn nothing() {}

/// Renamed, with optional parameters at the end.
#[manhole::command(name = "resize-window")]
pub fn resize(width: u32, height: Option<u32>, title: Option<String>) -> String {
    format!("{width}x{} {}", height.unwrap_or(width), title.unwrap_or_default())
}

/// A `Result` with an `io::Error`.
#[manhole::command]
fn reload() -> std::io::Result<String> {
    Ok(String::new())
}

/// A parameter with the same name as the function.
#[manhole::command]
fn echo(echo: String) -> String {
    echo
}

/// A raw identifier.
#[manhole::command]
fn r#type(r#in: u8) -> u8 {
    r#in
}

/// `impl Serialize` return.
#[manhole::command]
fn values() -> impl serde::Serialize {
    vec![1, 2, 3]
}

/// A const fn.
#[manhole::command]
const fn answer() -> u32 {
    42
}

#[manhole::main(socket_path = "/tmp/manhole-ui-{pid}", verbose = false)]
fn main() {
    let _ = (&HITS, &READY, &NAMES, &LIMITS, &VERSION);
    let _ = (depth(), maybe(), reload(), echo(String::new()), r#type(1), values(), answer());
    nothing();
    let _ = resize(1, None, None);
}
