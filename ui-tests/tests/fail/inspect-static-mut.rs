#[manhole::inspect]
static mut COUNTER: u64 = 0;

fn main() {}
