#[manhole::main(activate_on = "SIGKILL")]
fn main() {}
