#[manhole::command(nmae = "reload")]
fn reload_config() {}

fn main() {}
