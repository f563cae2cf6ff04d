// A computed inspected item is called on a manhole thread, outside any
// runtime: it cannot be `async`, and the error says what works instead
// (the old hint, `block_on`, panics there).

#[manhole::inspect]
async fn queue_depth() -> usize {
    0
}

fn main() {}
