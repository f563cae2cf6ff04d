//! The watchdog's options of `#[manhole::main]`: its threshold, how long a
//! call may be in flight, and how much stack a report sends out.

#[manhole::main(watchdog_ms = 500, stuck_call_ms = 5000, watchdog_stacks = "full")]
fn main() {
    // Expanded to `Options::watchdog_stacks(WatchdogStacks::Full)`, which
    // `install` takes like any other option.
    let _ = manhole::WatchdogStacks::from_name("none");
}
