#[manhole::inspect(writable)]
fn queue_depth() -> usize {
    7
}

fn main() {
    let _ = queue_depth();
}
