#[manhole::inspect]
fn refresh() {}

fn main() {}
