#[manhole::main]
fn main<T>() {}
