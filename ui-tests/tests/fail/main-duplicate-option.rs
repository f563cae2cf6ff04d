#[manhole::main(verbose = false, verbose = true)]
fn main() {}
