#[manhole::command(name = "reload config")]
fn reload_config() {}

fn main() {}
