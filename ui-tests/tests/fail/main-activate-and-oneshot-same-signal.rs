#[manhole::main(activate_on = "USR1", oneshot_on = "SIGUSR1")]
fn main() {}
