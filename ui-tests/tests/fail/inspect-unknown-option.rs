use std::sync::atomic::AtomicU64;

#[manhole::inspect(write)]
static HITS: AtomicU64 = AtomicU64::new(0);

fn main() {}
