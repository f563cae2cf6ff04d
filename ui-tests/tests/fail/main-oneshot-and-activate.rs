#[manhole::main(oneshot_on = "USR2", verbose = false, activate_on = "USR1")]
fn main() {}
