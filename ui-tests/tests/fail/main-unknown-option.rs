#[manhole::main(sokcet_path = "/tmp/app.sock")]
fn main() {}
