use std::sync::Mutex;

struct Pool {
    size: usize,
}

#[manhole::inspect]
static POOL: Mutex<Pool> = Mutex::new(Pool { size: 4 });

fn main() {}
