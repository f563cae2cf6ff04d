#[manhole::main(activate_on = "USR1", oneshot_on = "USR2")]
fn main() {}
