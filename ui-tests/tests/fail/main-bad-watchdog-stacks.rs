#[manhole::main(watchdog_ms = 500, watchdog_stacks = "brief")]
fn main() {}
