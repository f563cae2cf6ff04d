//! A library crate with its own manhole items, to show that registration
//! works across crates: any binary that links this crate can call
//! `plugin_status` and read `PLUGIN_EVENTS`.
//!
//! A crate that the binary never refers to is not linked, and its items are
//! then missing. The example service refers to [`start`], which is enough.

use std::sync::atomic::{AtomicU64, Ordering};

/// Events the plugin has seen since it started.
#[manhole::inspect]
pub static PLUGIN_EVENTS: AtomicU64 = AtomicU64::new(0);

/// The plugin's name and version, and how many events it has seen.
#[manhole::command]
pub fn plugin_status() -> String {
    format!(
        "{} {}: {} events",
        env!("CARGO_PKG_NAME"),
        env!("CARGO_PKG_VERSION"),
        PLUGIN_EVENTS.load(Ordering::Relaxed)
    )
}

/// Records one event. The host calls this, which also keeps the crate linked.
pub fn start() {
    PLUGIN_EVENTS.fetch_add(1, Ordering::Relaxed);
}
