#[manhole::inspect]
struct Stats {
    hits: u64,
}

fn main() {}
