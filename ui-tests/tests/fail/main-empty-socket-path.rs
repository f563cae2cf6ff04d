#[manhole::main(socket_path = "")]
fn main() {}
