struct Pool {
    size: usize,
}

#[manhole::inspect]
static POOL: Pool = Pool { size: 4 };

fn main() {}
