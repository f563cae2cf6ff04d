#[manhole::main(verbose = "no")]
fn main() {}
