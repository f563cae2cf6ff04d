use std::sync::atomic::AtomicU64;

#[manhole::inspect(calls)]
static REQUESTS: AtomicU64 = AtomicU64::new(0);

fn main() {}
