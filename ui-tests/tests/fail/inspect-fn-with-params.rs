#[manhole::inspect]
fn depth(queue: usize) -> usize {
    queue
}

fn main() {}
