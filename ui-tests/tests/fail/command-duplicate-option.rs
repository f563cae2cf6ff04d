#[manhole::command(name = "reload", name = "refresh")]
fn reload_config() {}

fn main() {}
